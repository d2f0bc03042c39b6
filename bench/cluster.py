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
migration's.

Against the link: the lower bound of an evacuation is the bytes it moved over the
link's bandwidth. Bytes moved: what the destination VM processes read
(/proc/PID/io rchar right after the evacuation: the migration streams, plus a few KiB
of API requests). Bandwidth: one TCP stream of LINK_MIB (512) MiB of random bytes over
the same loopback between two processes, measured before and after the cases (the
faster of the two is the bound). The guests' pauses: each source's own measurement
("migration to ... completed in N ms (pause P ms)" in its log), against the pause of
one VM moved alone on the same cluster first. Prints tables; nothing here is asserted.
"""
import json
import os
import pathlib
import re
import socket
import statistics
import subprocess
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
LINK_MIB = int(os.environ.get("LINK_MIB", "512"))
PAUSE = re.compile(r"migration to \S+ completed in (\d+) ms \(pause (\d+) ms\)")

# The link's sender, in a process of its own (the receiver is this one): random bytes,
# so nothing on the path can shrink them.
SENDER = """
import os, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
buf = os.urandom(1 << 20)
for _ in range(int(sys.argv[2])):
    s.sendall(buf)
s.close()
"""


def link_bandwidth():
    """Bytes/s of one TCP stream over loopback between two processes."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    sender = subprocess.Popen([sys.executable, "-c", SENDER, str(ls.getsockname()[1]),
                               str(LINK_MIB)])
    try:
        conn, _ = ls.accept()
        buf = bytearray(1 << 20)
        got = 0
        t0 = time.monotonic()
        while True:
            n = conn.recv_into(buf)
            if not n:
                break
            got += n
        elapsed = time.monotonic() - t0
        conn.close()
    finally:
        ls.close()
        sender.wait(timeout=120)
    assert got == LINK_MIB << 20, got
    return got / elapsed


def log_sizes(lab, host):
    d = lab.dir / f"h-{host}"
    return {p: p.stat().st_size for p in d.glob("*.log")}


def pauses_since(sizes):
    """The pauses (ms) of the moves that ended since log_sizes() in those logs."""
    out = []
    for p, size in sizes.items():
        with open(p, errors="replace") as f:
            f.seek(size)
            out += [int(m.group(2)) for m in PAUSE.finditer(f.read())]
    return out


def bytes_read(lab, names):
    """rchar of the VM processes of names where they run now (their pid files there)."""
    where = {v["name"]: v["host"] for v in js(lab, "vms")["vms"]}
    total = 0
    for n in names:
        pidf = lab.dir / f"h-{where[n]}" / f"{n}.pid"
        pid = int(pidf.read_text().split()[0])
        with open(f"/proc/{pid}/io") as f:
            total += int(next(ln for ln in f if ln.startswith("rchar:")).split()[1])
    return total


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


def evacuate(lab, limit, names):
    seen = {t["id"] for t in js(lab, "tasks")["history"]}
    run(lab, "limits", "--per-host", str(limit))
    logs = log_sizes(lab, "host-a")
    t0 = time.monotonic()
    run(lab, "maintenance", "enter", "host-a", "--wait")
    wall = time.monotonic() - t0
    moved = bytes_read(lab, names)
    tasks = [t for t in js(lab, "tasks")["history"] if t["id"] not in seen]
    moves = [(t["ended_ms"] - t["started_ms"]) / 1000 for t in tasks]
    waits = [(t["started_ms"] - t["created_ms"]) / 1000 for t in tasks]
    return {"wall": wall, "moves": moves, "wait": min(waits), "n": len(tasks),
            "bytes": moved, "pauses": pauses_since(logs)}


def single_move(lab, name):
    """One VM moved alone to host-b and back: the pause of the move there."""
    logs = log_sizes(lab, "host-a")
    t0 = time.monotonic()
    run(lab, "migrate", name, "--to", "host-b", "--wait")
    wall = time.monotonic() - t0
    pause = pauses_since(logs)
    moved = bytes_read(lab, [name])
    run(lab, "migrate", name, "--to", "host-a", "--wait")
    wait_until("it is back on host-a", lambda: name in on(lab, "host-a"), timeout=120)
    return wall, pause, moved


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
        load0 = os.getloadavg()[0]
        bw = [link_bandwidth()]
        one_wall, one_pause, one_bytes = single_move(lab, names[0])
        results = {}
        for limit in (1, 2, 8):
            results[limit] = evacuate(lab, limit, names)
            if limit != 8:
                back_to_a(lab, names)
        bw.append(link_bandwidth())
        link = max(bw)
        print(f"{VMS} VMs of {MIB} MiB on host-a, memtouch {MIB // 4}M at {MBPS} MB/s "
              f"(random pages), loopback, {os.cpu_count()} CPUs, load average "
              f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
        print(f"link: one TCP stream over loopback, {bw[0] / 1e6:.0f} MB/s before the cases, "
              f"{bw[1] / 1e6:.0f} MB/s after")
        print(f"one VM moved alone: {one_wall:.2f} s (command to done), "
              f"{one_bytes / 1e6:.1f} MB, pause {one_pause} ms")
        print(f"{'per-host limit':>14} {'evacuation s':>12} {'vs limit 1':>10} "
              f"{'MB moved':>9} {'lower bound s':>13} {'vs bound':>8} "
              f"{'move s (median, max)':>20} {'pause ms (median, max)':>22} "
              f"{'queue to start s (min)':>22}")
        base = results[1]["wall"]
        for limit, r in results.items():
            bound = r["bytes"] / link
            pauses = r["pauses"] or [0]
            print(f"{limit:>14} {r['wall']:>12.1f} {r['wall'] / base:>10.2f} "
                  f"{r['bytes'] / 1e6:>9.1f} {bound:>13.2f} {r['wall'] / bound:>8.0f} "
                  f"{statistics.median(r['moves']):>11.2f}, {max(r['moves']):>6.2f} "
                  f"{statistics.median(pauses):>13.0f}, {max(pauses):>6} "
                  f"{r['wait']:>22.2f}   ({r['n']} moves, {len(r['pauses'])} pauses)")
    finally:
        lab.stop()


if __name__ == "__main__":
    main()
