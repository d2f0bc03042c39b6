"""bench/cluster.py (`make bench-cluster`), so that it cannot rot: one tiny run over
namespace hosts on a shaped bridge, its figures sane (the link held to its rate, every
move and pause seen, the single moves' and each case's pause spread, the guests' random
pages sent whole, one at a time never two at once), and its namespaces and VMs gone
after it, also when it is stopped half-way. Measures nothing worth keeping.
"""
import json
import re
import os
import shutil
import signal
import subprocess
import sys

import pytest

from cluster_lab import ClusterNet, pid_alive, wait_until
from godwit_vm import GODWIT, ROOT, TESTGUEST

pytestmark = [pytest.mark.kvm,
              pytest.mark.skipif(not os.path.exists(TESTGUEST),
                                 reason=f"{TESTGUEST} missing: run make")]

BENCH = os.path.join(ROOT, "bench", "cluster.py")
MIB, MBIT = 64, 100
TINY = ["--vms", "2", "--mib", str(MIB), "--mbps", "2", "--limits", "1,2", "--mbit", str(MBIT),
        "--link-mib", "4", "--singles", "1"]


def namespaces(pid):
    """The network namespaces of the bench run by pid (ClusterNet names them so)."""
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [ln.split()[0] for ln in r.stdout.splitlines()
            if ln.split() and ln.split()[0].endswith(f"-c{pid % 100000}")]


def vm_pids(lab_dir):
    pids = []
    for f in lab_dir.glob("h-*/*.pid"):
        try:
            pids.append(int(f.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            pass
    return pids


def sane_spread(p, pauses):
    """The median, p90 and max of pauses, each one a pause in ms or between two."""
    return (sorted(p) == ["max", "median", "p90"] and p["max"] == max(pauses)
            and min(pauses) <= p["median"] <= p["p90"] <= p["max"] and p["p90"] in pauses)


def run_bench(tmp_path, *args):
    """The stdout of a bench run that succeeded and left no namespace behind."""
    p = subprocess.Popen([sys.executable, BENCH, *args, "--dir", str(tmp_path / "lab")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, out[-3000:] + err[-3000:]
    assert namespaces(p.pid) == []
    return out


def test_tiny_run_has_sane_figures(tmp_path):
    out = run_bench(tmp_path, *TINY)
    assert not [pid for pid in vm_pids(tmp_path / "lab") if pid_alive(pid)]
    fig = json.loads(out.strip().splitlines()[-1])
    # The link is the shaped one: one TCP stream never beats the port's rate.
    assert all(0 < bw <= MBIT * 1e6 / 8 * 1.05 for bw in fig["link_runs_Bps"]), fig
    fill = MIB * 5 // 8 << 20
    # One VM moved alone to host-b and back: two single moves, each its own pause.
    single = fig["single"]
    assert fig["singles"] == {"": single}
    assert [(m["vm"], m["to"]) for m in single["moves"]] == [("vm0", "host-b"), ("vm0", "host-a")]
    assert all(m["bytes"] >= fill and m["pause_ms"] >= 0 for m in single["moves"]), single
    assert single["bytes"] >= fill and single["pause_ms"] >= 0, single
    assert sane_spread(single["pause"], [m["pause_ms"] for m in single["moves"]]), single
    assert [c["limit"] for c in fig["cases"]] == [1, 2]
    # The agents knew their 100 Mbit/s ports: at most 4 slots, so these limits stand.
    assert [c["slots"] for c in fig["cases"]] == [1, 2]
    for c in fig["cases"]:
        assert c["moves"] == 2 and len(c["pauses_ms"]) == 2, c
        assert sorted(c["pause_by_vm"]) == ["vm0", "vm1"], c
        assert sane_spread(c["pause"], c["pauses_ms"]), c
        assert c["vm_exes"] == [os.path.realpath(GODWIT)], c
        # Random pages cannot shrink: each VM's filled RAM crossed the link whole.
        assert c["bytes"] >= 2 * fill, c
        assert 0 < c["streaming_s"] <= c["wall_s"] and c["last_end_s"] <= c["wall_s"], c
        for vm, dst, started, migrating, _, ended in c["timeline"]:
            assert dst in ("host-b", "host-c") and started <= migrating <= ended, c
    (a, b) = sorted(fig["cases"][0]["timeline"], key=lambda t: t[2])
    assert a[5] <= b[2], fig["cases"][0]["timeline"]  # one at a time
    lines = out.splitlines()
    assert any(ln.startswith("link: one TCP stream host-a -> host-b") for ln in lines), out
    assert sum(ln.startswith("| - | ") for ln in lines) == 2, out
    assert any(ln.startswith("single moves: 2 moves alone") for ln in lines), out
    for c in fig["cases"]:
        p, s = c["pause"], single["pause"]
        assert (f"limit {c['limit']}: pauses vs single: median {p['median']:.0f} vs "
                f"{s['median']:.0f}, p90 {p['p90']:.0f} vs {s['p90']:.0f}, max {p['max']:.0f} "
                f"vs {s['max']:.0f} ms (2 moves against 2;") in out, out


def test_before_runs_each_case_with_the_other_build_first(tmp_path):
    """--before: a case with another build (a copy of this one: another path), its VMs
    that build's processes, then with this tree's; the single moves with each. With
    --vm-verbose, the steps of every pause."""
    other = tmp_path / "godwit-before"
    shutil.copy2(GODWIT, other)
    args = [*TINY[:TINY.index("--limits")], "--limits", "2", *TINY[TINY.index("--limits") + 2:]]
    out = run_bench(tmp_path, *args, "--before", str(other), "--vm-verbose")
    fig = json.loads(out.strip().splitlines()[-1])
    assert [(c["manager"], c["moves"], c["vm_exes"]) for c in fig["cases"]] == [
        ("before", 2, [os.path.realpath(other)]),
        ("after", 2, [os.path.realpath(GODWIT)])], fig["cases"]
    assert sorted(fig["singles"]) == ["after", "before"], fig["singles"]
    assert fig["single"] == fig["singles"]["after"], fig
    assert all(len(s["moves"]) == 2 for s in fig["singles"].values()), fig["singles"]
    for label in ("before", "after"):
        assert f"limit 2 ({label}): pauses vs single: median " in out, out
        # --vm-verbose: each pause step by step, its whole as the source reported it.
        assert f"limit 2 ({label}): pause steps, us median/max: pause " in out, out
        assert f"single moves ({label}): pause steps, us median/max: pause " in out, out
        for m in fig["singles"][label]["moves"]:
            st = m["steps"]
            assert st["pause"] // 1000 == m["pause_ms"], m
            assert sum(st[k] for k in ("stopped", "sync", "sent", "loaded", "resumed")) <= \
                st["pause"], m
            # The last step split by both ends' clock readings: there, its part, back.
            assert abs(st["to_there"] + st["there"] + st["back"] - st["resumed"]) <= 1, m
            assert st["there"] > 0 and st["back"] >= 0, m
            # Both ends' waits for a CPU, and the destination's for STATE after its last
            # acknowledgement: parts of the pause, or of the time from that ack on.
            assert 0 <= st["src_cpu"] <= st["pause"], m
            assert 0 <= st["dst_cpu"] <= st["ack_to_state"] + st["there"] + 2, m
        assert f"single moves ({label}): pause steps, us median/max: " in out and \
            ", to_there " in out and ", dst_cpu " in out, out


def test_a_stopped_run_leaves_no_namespace_or_vm(tmp_path):
    lab = tmp_path / "lab"
    p = subprocess.Popen([sys.executable, BENCH, *TINY, "--dir", str(lab)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # Stopped once its VMs run (the cluster, its namespaces and qdiscs all up).
        wait_until("the bench's VMs run", lambda: len(vm_pids(lab)) == 2 or p.poll() is not None,
                   timeout=300, step=0.5)
        assert p.poll() is None, p.stderr.read()[-3000:]
        assert len(namespaces(p.pid)) == 5
        pids = vm_pids(lab)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode != 0
    assert namespaces(p.pid) == []
    wait_until("the VMs are gone", lambda: not [pid for pid in pids if pid_alive(pid)],
               timeout=60)


@pytest.mark.parametrize("queue", ["pfifo_fast", "fifo"])
def test_port_queue_in_front_of_each_hosts_end(queue):
    """--port-queue: tbf on both ends of every host's veth; with pfifo_fast that qdisc
    under the host's own tbf (its class 1:1), the bridge's end one FIFO as a switch
    port's; with fifo no other queue anywhere."""
    net = ClusterNet().up()
    try:
        with pytest.raises(ValueError):
            net.shape(MBIT, "red")
        net.shape(MBIT, queue)
        for h in net.hosts:
            host = net.run(h, "tc", "qdisc", "show", "dev", net.veth[h]).stdout
            port = net.run("fabric", "tc", "qdisc", "show", "dev", net.port[h]).stdout
            assert "qdisc tbf 1: root" in host and "qdisc tbf 1: root" in port, (host, port)
            assert ("qdisc pfifo_fast 10: parent 1:1" in host) == (queue == "pfifo_fast"), host
            assert "pfifo_fast" not in port, port
            link = net.run(h, "ip", "link", "show", "dev", net.veth[h]).stdout
            # As deep as tbf's 20 ms in 64 KiB packets, not a veth's 1000 packets.
            assert bool(re.search(r"qlen 8\b", link)) == (queue == "pfifo_fast"), link
    finally:
        net.down()
