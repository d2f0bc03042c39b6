"""bench/cluster.py (`make bench-cluster`), so that it cannot rot: one tiny run over
namespace hosts on a shaped bridge, its figures sane (the link held to its rate, every
move and pause seen, the guests' random pages sent whole, one at a time never two at
once), and its namespaces and VMs gone after it, also when it is stopped half-way.
Measures nothing worth keeping.
"""
import json
import os
import signal
import subprocess
import sys

import pytest

from cluster_lab import pid_alive, wait_until
from godwit_vm import ROOT, TESTGUEST

pytestmark = [pytest.mark.kvm,
              pytest.mark.skipif(not os.path.exists(TESTGUEST),
                                 reason=f"{TESTGUEST} missing: run make")]

BENCH = os.path.join(ROOT, "bench", "cluster.py")
MIB, MBIT = 64, 100
TINY = ["--vms", "2", "--mib", str(MIB), "--mbps", "2", "--limits", "1,2", "--mbit", str(MBIT),
        "--link-mib", "4"]


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


def test_tiny_run_has_sane_figures(tmp_path):
    p = subprocess.Popen([sys.executable, BENCH, *TINY, "--dir", str(tmp_path / "lab")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, out[-3000:] + err[-3000:]
    assert namespaces(p.pid) == []
    assert not [pid for pid in vm_pids(tmp_path / "lab") if pid_alive(pid)]
    fig = json.loads(out.strip().splitlines()[-1])
    # The link is the shaped one: one TCP stream never beats the port's rate.
    assert all(0 < bw <= MBIT * 1e6 / 8 * 1.05 for bw in fig["link_runs_Bps"]), fig
    fill = MIB * 5 // 8 << 20
    assert fig["single"]["bytes"] >= fill and fig["single"]["pause_ms"] >= 0, fig["single"]
    assert [c["limit"] for c in fig["cases"]] == [1, 2]
    for c in fig["cases"]:
        assert c["moves"] == 2 and len(c["pauses_ms"]) == 2, c
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
