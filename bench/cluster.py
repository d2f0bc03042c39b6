#!/usr/bin/python3
"""Emptying a host through the cluster (`make bench-cluster`; docs/cluster.md, "Measured").

One etcd, three agents and a manager on loopback (tests/integration/cluster_lab.py),
CLUSTER_VMS test-guest VMs (default 8) of CLUSTER_MIB MiB (256) on host-a, each running
`memtouch` over a quarter of its RAM with random (incompressible) pages at a moderate
CLUSTER_MBPS (20 MB/s). host-a enters maintenance with the per-host limit set to 1
(OpenStack's default of one at a time), 2 (KubeVirt's per node) and 8 (the default,
vSphere's), in turn and side by side in one run: the VMs go back to host-a between
cases. For each case: the evacuation's wall time (command to `in maintenance`), its
ratio to the limit-1 case, the moves' own times (a task's start to its end, from the
tasks' records), and the manager's overhead per move: the time from a task's creation
to its start, and its end to the next task's start on a freed slot, are not the
migration's. Prints a table; nothing here is asserted.
"""
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))

from cluster_lab import Lab, wait_until  # noqa: E402
from godwit_vm import TESTGUEST  # noqa: E402

VMS = int(os.environ.get("CLUSTER_VMS", "8"))
MIB = int(os.environ.get("CLUSTER_MIB", "256"))
MBPS = int(os.environ.get("CLUSTER_MBPS", "20"))


def js(lab, *args):
    r = lab.cluster(*args, "--json", timeout=600)
    if r.returncode:
        raise SystemExit(f"godwit cluster {' '.join(args)}: {r.stderr}")
    return json.loads(r.stdout)


def run(lab, *args):
    r = lab.cluster(*args, timeout=900)
    if r.returncode:
        raise SystemExit(f"godwit cluster {' '.join(args)}: {r.stderr}")
    return r.stdout


def on(lab, host):
    return [v["name"] for v in js(lab, "vms")["vms"]
            if v["host"] == host and v["state"] == "running" and v["task"] is None]


def evacuate(lab, limit):
    seen = {t["id"] for t in js(lab, "tasks")["history"]}
    run(lab, "limits", "--per-host", str(limit))
    t0 = time.monotonic()
    run(lab, "maintenance", "enter", "host-a", "--wait")
    wall = time.monotonic() - t0
    tasks = [t for t in js(lab, "tasks")["history"] if t["id"] not in seen]
    moves = [(t["ended_ms"] - t["started_ms"]) / 1000 for t in tasks]
    waits = [(t["started_ms"] - t["created_ms"]) / 1000 for t in tasks]
    return wall, moves, min(waits), len(tasks)


def back_to_a(lab, names):
    run(lab, "maintenance", "exit", "host-a")
    for n in names:
        run(lab, "migrate", n, "--to", "host-a", "--wait")
    wait_until("all back on host-a", lambda: len(on(lab, "host-a")) == len(names), timeout=120)


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="godwit-bench-cluster."))
    lab = Lab(tmp)
    try:
        for h in ("host-a", "host-b", "host-c"):
            lab.agent(h, memory=f"{(VMS + 1) * MIB}M", cpus=4 * VMS)
        lab.manager("m1")
        for h in ("host-b", "host-c"):
            run(lab, "maintenance", "enter", h)
        names = [f"vm{i}" for i in range(VMS)]
        for n in names:
            run(lab, "create", n, "--kernel", TESTGUEST, "--memory", f"{MIB}M", "--cpus", "2",
                "--cmdline", f"heartbeat 10 ; memtouch {MIB // 4}M {MBPS} random")
        for h in ("host-b", "host-c"):
            run(lab, "maintenance", "exit", h)
        wait_until("all run on host-a", lambda: len(on(lab, "host-a")) == VMS, timeout=120)
        print(f"{VMS} VMs of {MIB} MiB on host-a, memtouch {MIB // 4}M at {MBPS} MB/s "
              f"(random pages), loopback, {os.cpu_count()} CPUs")
        print(f"{'per-host limit':>14} {'evacuation s':>12} {'vs limit 1':>10} "
              f"{'move s (median, max)':>22} {'queue to start s (min)':>23}")
        base = None
        for limit in (1, 2, 8):
            wall, moves, wait, n = evacuate(lab, limit)
            base = base or wall
            print(f"{limit:>14} {wall:>12.1f} {wall / base:>10.2f} "
                  f"{statistics.median(moves):>12.2f}, {max(moves):>7.2f} {wait:>23.2f}"
                  f"   ({n} moves)")
            if limit != 8:
                back_to_a(lab, names)
    finally:
        lab.stop()


if __name__ == "__main__":
    main()
