"""The benchmark's machinery (bench/, `make bench`), so that it cannot rot.

One tiny case of each kind (BENCH_QUICK sizes: 256 MiB guests, 32 MiB working sets),
one run each, through godwit and through QEMU on KVM: idle, moderate, heavy, two
dirtying vCPUs, and the far link (only as root; a 5 ms delay instead of 75 ms), each
dirtying one with incompressible pages and as its NAME-compressible twin. Checks that
every run produced sane figures (completed, or reported as not finished with how far it
got) and that RESULTS.md was written. Measures nothing worth keeping.
"""
import json
import os
import shutil
import sys

import pytest

from godwit_vm import GODWIT, ROOT, TESTGUEST

sys.path.insert(0, os.path.join(ROOT, "bench"))

import bench  # noqa: E402
import slowlink  # noqa: E402

pytestmark = [
    pytest.mark.kvm,
    pytest.mark.qemu,
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                       reason="qemu-system-x86_64 is not installed"),
    pytest.mark.skipif(not os.path.exists(TESTGUEST), reason=f"{TESTGUEST} missing: run make"),
]

CASES = {c.name: c for c in bench.make_cases(quick=True)}
VMMS = ["godwit", "qemu"]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    if not os.access(GODWIT, os.X_OK):
        pytest.fail(f"{GODWIT} is not built (run make)")
    out = tmp_path_factory.mktemp("bench")
    log = []
    records = bench.run_bench(str(out), runs=1, quick=True, log=log.append)
    return out, records, log


def find(records, case, vmm):
    return [r for r in records if r["case"] == case and r["vmm"] == vmm]


def test_every_dirtying_case_has_a_compressible_twin():
    dirtying = [c for c in CASES.values() if c.memtouch_vcpus]
    assert dirtying and "idle-256M" in CASES
    for c in dirtying:
        twin = CASES.get(f"{c.name}-compressible") or CASES.get(c.name[:-len("-compressible")])
        assert twin is not None, c.name
        random = not c.name.endswith("-compressible")
        cmds = [w.split() for w in c.cmdline.split(";") if w.split()[0] == "memtouch"]
        assert len(cmds) == len(c.memtouch_vcpus), c.cmdline
        assert all((w[-1] == "random") == random for w in cmds), c.cmdline


@pytest.mark.parametrize("vmm", VMMS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_run_has_sane_figures(bench_run, case, vmm):
    _, records, log = bench_run
    kind = CASES[case].kind
    if kind == "far" and slowlink.unavailable_reason():
        pytest.skip(f"far link: {slowlink.unavailable_reason()}")
    recs = find(records, case, vmm)
    assert len(recs) == 1, "\n".join(log)
    r = recs[0]
    detail = json.dumps({k: v for k, v in r.items() if k != "vmm_report"}, default=str)[:4000]
    assert r["status"] in ("completed", "not finished", "failed"), detail
    if r["status"] != "completed":
        # Not finished is a result, as long as it says how far it got.
        assert r["progress"]["bytes"] > 0 and r["progress"]["rounds"], detail
        assert r["max_stall_ms"] is not None, detail
        return
    assert r["bytes"] > 0 and r["rounds"] >= 1, detail
    if kind != "idle":
        # The guest pages moved; the incompressible ones cross whole (the point of the
        # random mode: the bench must not flatter compression).
        assert r["guest_bytes"] >= 32 << 20, detail
        if vmm == "godwit" and not case.endswith("-compressible"):
            assert r["bytes"] >= 0.9 * r["guest_bytes"], detail
    assert r["total_ms"] > 0 and r["downtime_ms"] is not None, detail
    # A pause was measured from the guest's heartbeat across the two consoles.
    assert r["pause_ms"] is not None and -5 < r["pause_ms"] < 30000, detail
    assert r["pause_guest_ms"] is not None and r["max_stall_ms"] >= r["pause_ms"] - 1, detail
    assert r["hb_seq_ok"], detail
    # The move ends when the guest runs on the destination: after the pause began.
    assert r["move_ms"] is not None and r["move_ms"] >= r["pause_ms"] - 5, detail
    for side in ("src", "dst"):
        assert r[f"{side}_cpu_s"] is not None and r[f"{side}_cpu_s"] >= 0, detail
        assert 0 <= r[f"{side}_vmm_cpu_s"] <= r[f"{side}_cpu_s"] + 1e-9, detail
        assert r[f"{side}_mem_mib"] is not None and 0 < r[f"{side}_mem_mib"] < 1024, detail
    if kind == "idle":
        assert r["mt_move_pps"] is None, detail
    elif r["dst_ok"]:
        # The guest's memtouch progress across the move: whole passes over a window that
        # holds the move, and the rate it printed before.
        assert r["mt_move_pps"] is not None and r["mt_move_pps"] >= 0, detail
        assert r["mt_window_ms"] >= r["move_ms"] - 1, detail
        assert r["mt_before_pps"] > 0, detail
    if vmm == "godwit":
        # Our own migration must leave a working guest (QEMU's outcome is reported).
        assert r["dst_ok"] and r["guest_errors"] == 0, detail
    else:
        assert r["dst_ok"] or r["dst_check"], detail


def test_results_written(bench_run):
    out, records, log = bench_run
    text = (out / "RESULTS.md").read_text()
    for case in {r["case"] for r in records}:
        assert f"| {case} | godwit |" in text and f"| {case} | qemu " in text, case
    assert "kvm" in text and "QEMU emulator version" in text
    assert "## The guest's progress across the move" in text
    for case in (n for n, c in CASES.items() if c.memtouch_vcpus and c.kind != "far"):
        row = [l for l in text.splitlines()
               if l.startswith(f"| {case} | godwit |") and l.count("|") == 7]
        assert row and "–" not in row[0], (case, row)
    assert "guest MB moved" in text and "`-compressible` twins" in text
    data = json.loads((out / "runs.json").read_text())
    assert len(data["records"]) == len(records) >= 14
    assert all(r["status"] != "error" for r in records), "\n".join(log)


class ReplayedQMP:
    """The answers a QEMU 7.2 source gave in CI, in order: COMPLETED read before the
    migration thread had filled in its times (total-time and downtime 0)."""

    def __init__(self):
        self.states = ["finish-migrate", "finish-migrate", "postmigrate"]
        self.asked = []

    def command(self, name, **_):
        self.asked.append(name)
        if name == "query-status":
            return {"status": self.states.pop(0)}
        done = not self.states
        return {"status": "completed", "total-time": 3547 if done else 0,
                "downtime": 36 if done else 0, "ram": {"transferred": 291152901}}


def test_qemu_figures_are_read_after_postmigrate():
    import vmms
    q = ReplayedQMP()
    early = q.command("query-migrate")
    assert early["total-time"] == 0
    final = vmms.QemuMigration.figures(vmms.QemuMigration.settled(q, early))
    assert final["total_ms"] == 3547 and final["downtime_ms"] == 36
    assert q.asked.count("query-status") == 3


def test_tls_runs_side_by_side(tmp_path):
    """BENCH_TLS=1: each VMM moves the same case in the clear and over TLS (x509 both
    ways), and the TLS runs are their own rows."""
    if not os.access(GODWIT, os.X_OK):
        pytest.fail(f"{GODWIT} is not built (run make)")
    log = []
    records = bench.run_bench(str(tmp_path), runs=1, quick=True, patterns="heavy-256M",
                              log=log.append, tls_modes=(False, True))
    assert len(records) == 4, "\n".join(log)
    for vmm in VMMS:
        recs = {r["tls"]: r for r in find(records, "heavy-256M", vmm)}
        assert set(recs) == {False, True}, "\n".join(log)
        assert recs[True]["status"] == "completed", "\n".join(log)
        assert "TLS" in recs[True]["settings"] and "TLS" not in recs[False]["settings"]
        assert bench.report.series_key(recs[True]).endswith(" +tls")
        if vmm == "godwit":
            assert recs[True]["vmm_report"]["encryption"] == "tls-x509", recs[True]
            assert recs[False]["vmm_report"]["encryption"] == "none", recs[False]
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| heavy-256M | godwit +tls |" in text, text
