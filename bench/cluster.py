#!/usr/bin/python3
"""Emptying a host through the cluster (`make bench-cluster`; docs/bench.md, "Emptying a
host through the cluster", and docs/cluster.md, "Measured").

Three hosts, etcd and a manager, by default as network namespaces on a bridge
(tests/integration/cluster_lab.ClusterNet, 192.0.2.0/24) whose every host port is
shaped to --mbit (1000) Mbit/s each way with tbf, so that the link, as between real
hosts, bounds a move rather than this machine's CPUs (in front of a host's own end
tbf's one FIFO, or with --port-queue pfifo_fast a host's default qdisc, where a pause's
traffic, at a higher socket priority, does not wait behind the other moves' streams); `--link loopback` runs them on
loopback as before. --vms (8) test-guest VMs of --mib MiB (256) on host-a, each with
5/8 of its RAM written once with random pages (`fill`, then that vCPU halts) and a
quarter rewritten with random pages at --mbps MB/s (`memtouch ... random`): all of it
incompressible. host-a enters maintenance with the per-host limit at each of --limits
(1, 2, 8: OpenStack's one at a time, KubeVirt's two per node, vSphere's default) in
turn, side by side in one run; the VMs go back to host-a between the cases. The agents
are told their ports' rate (`--link-mbit`), so that under 10000 Mbit/s a host runs at
most 4 moves whatever the limit, as on a real host of that speed; the table shows such
a case as "8 (4 slots)".

The lower bound of an evacuation is the bytes it moved over the link's bandwidth.
Bytes moved: what the destination VM processes read (/proc/PID/io rchar right after
the evacuation: the migration streams, plus a few KiB of API requests). Bandwidth: one
TCP stream of --link-mib MiB of random bytes from host-a to host-b over the same path,
measured before and after the cases; the faster of the two.

For each case: the evacuation's wall time (command to `in maintenance`, as the CLI's
--wait sees it; "last done": to the last move recorded done) against the bound, against
each VM sending once what it sent alone ("vs once": moves sharing the link send more of
what their guests dirty meanwhile) and against the first case (one at a time); the
time some source was streaming (the union of the moves' streams: from the source's
taking the migrate, in the task's record, for as long as the source says it took, in
its log) and the rest, when the link was idle;
and the manager's share of each move: its start (the slot claimed to the source's
taking the migrate: the destination's receive spawned through its agent), its end (the
source done to the task recorded done) and, one at a time, the gap between a move's end
and the next one's start. etcd requests per move: the gRPC messages etcd received from
every client (leader, agents' load, the CLI's waiting) over the case, per move. The
guests' pauses: each source's own measurement ("completed in N ms (pause P ms)" in its
log), median, 90th percentile and maximum, against the same of --singles single moves
(VMs in turn, each moved alone to host-b and back, both moves counted), a line per case
"pauses vs single: ...". CPU: the machine's busy share over the case (all cores), with
the load average at both ends. Prints tables and, last, the figures as one JSON line;
nothing here is asserted. With --before, each case runs twice in turn, first with
another godwit build and then with this tree's, side by side in one run: the whole
build (managers, agents and the VMs they start, so both ends of every move), or with
--before-parts manager its manager alone (agents and VMs this tree's in both); the
single moves are measured with each.
"""
import argparse
import json
import math
import os
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))

import cluster_lab  # noqa: E402
from cluster_lab import ClusterNet, Lab, etcd_get, wait_until  # noqa: E402
from godwit_vm import GODWIT, TESTGUEST  # noqa: E402

HOSTS = ("host-a", "host-b", "host-c")
DONE = re.compile(r"migration to \S+ completed in (\d+) ms \(pause (\d+) ms\)")
# A source's pause step by step, in us, logged at -v (--vm-verbose) before DONE's line.
STEPS = re.compile(r"pause (\d+) us: vCPUs stopped (\d+), quiesce \+ dirty sync (\d+)"
                   r"(?: \(.*?\))?, last RAM \(\d+ pages\) \+ state sent (\d+)"
                   r"(?: \(RAM \d+, state \d+\))?, "
                   r"(?:destination loaded \(READY\) (\d+)|GO with END), resumed there "
                   r"\(RESUMED\) (\d+)")
STEP_NAMES = ("pause", "stopped", "sync", "sent", "loaded", "resumed")
# The destination's part of it, logged at -v when it has sent RESUMED. With the clock's
# readings in both lines, "resumed" splits into the way there (the last bytes on the wire
# and the destination's wake-up), its own steps, and RESUMED's way back.
SENT_AT = re.compile(r"CLOCK_MONOTONIC us: sent (\d+), RESUMED read (\d+)")
HERE = re.compile(r"switchover here (\d+) us: .*CLOCK_MONOTONIC us: STATE read (\d+), "
                  r"RESUMED sent (\d+)")
HERE_NAMES = ("to_there", "there", "back")
# Since this tree, both lines also say how long their thread waited, runnable, for a CPU
# (the source: the pause; the destination: from its last acknowledgement to RESUMED),
# and the destination how long after that acknowledgement STATE came: a late STATE is
# told apart as the network's or a CPU's.
SRC_CPU = re.compile(r"waited for a CPU (\d+);")
HERE_CPU = re.compile(r"from the last acknowledgement to STATE (\d+) \(.*?\), to RESUMED "
                      r"sent waited for a CPU (\d+)")
CPU_NAMES = ("src_cpu", "ack_to_state", "dst_cpu")

# The link's two ends, each a process of its own in its host's namespace. The receiver
# times from the connection's accept to its end; the sender's buffer is random, so
# nothing on the path can shrink it.
RECEIVER = """
import json, socket, sys, time
ls = socket.socket()
ls.bind((sys.argv[1], 0))
ls.listen(1)
ls.settimeout(60)
print(ls.getsockname()[1], flush=True)
conn, _ = ls.accept()
conn.settimeout(120)
buf = bytearray(1 << 20)
got = 0
t0 = time.monotonic()
while True:
    n = conn.recv_into(buf)
    if not n:
        break
    got += n
print(json.dumps({"bytes": got, "s": time.monotonic() - t0}), flush=True)
"""
SENDER = """
import os, socket, sys
buf = os.urandom(1 << 20)
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
for _ in range(int(sys.argv[3])):
    s.sendall(buf)
s.close()
"""


def options(argv=None):
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vms", type=int, default=int(env("CLUSTER_VMS", "8")),
                   help="VMs on host-a (CLUSTER_VMS, default 8)")
    p.add_argument("--mib", type=int, default=int(env("CLUSTER_MIB", "256")),
                   help="each VM's memory in MiB, even, at least 64 (CLUSTER_MIB, default 256)")
    p.add_argument("--mbps", type=int, default=int(env("CLUSTER_MBPS", "20")),
                   help="each guest's dirtying rate, MB/s (CLUSTER_MBPS, default 20)")
    p.add_argument("--link", choices=("netns", "loopback"),
                   default=env("CLUSTER_LINK", "netns"),
                   help="hosts as namespaces on a shaped bridge, or on loopback "
                        "(CLUSTER_LINK, default netns)")
    p.add_argument("--mbit", type=int, default=int(env("CLUSTER_MBIT", "1000")),
                   help="netns: each host's link, Mbit/s each way; 0: not shaped "
                        "(CLUSTER_MBIT, default 1000)")
    p.add_argument("--port-queue", choices=("fifo", "pfifo_fast"),
                   default=env("CLUSTER_PORT_QUEUE", "fifo"),
                   help="netns, shaped: the queue in front of each host's port: tbf's one "
                        "FIFO, or a Linux host's default qdisc (pfifo_fast: the sockets' "
                        "priority picks one of three FIFOs; in two runs etcd stalled eight "
                        "moves at a time, docs/bench.md) (CLUSTER_PORT_QUEUE, default fifo)")
    p.add_argument("--limits", default=env("CLUSTER_LIMITS", "1,2,8"),
                   help="per-host limits, one case each (CLUSTER_LIMITS, default 1,2,8)")
    p.add_argument("--link-mib", type=int, default=int(env("LINK_MIB", "512")),
                   help="MiB of the link's TCP copy (LINK_MIB, default 512)")
    p.add_argument("--singles", type=int, default=env("CLUSTER_SINGLES"),
                   help="the single moves the pauses are held against: this many VMs in "
                        "turn, each moved alone to host-b and back, both moves counted "
                        "(CLUSTER_SINGLES, default --vms)")
    p.add_argument("--before", metavar="GODWIT",
                   help="run each case twice in turn, first with this godwit binary "
                        "(e.g. main's build), then with this tree's: a change side by side")
    p.add_argument("--before-parts", choices=("all", "manager"), default="all",
                   help="what --before runs of that binary: all (managers, agents and the "
                        "VMs they start: both ends of every move) or the manager alone "
                        "(default all)")
    p.add_argument("--vm-verbose", action="store_true",
                   help="the VMs log at -v (the agents' --vm-verbose; a --before build "
                        "without that option runs without): each pause's steps, median "
                        "and max per case and for the single moves; the last (resumed) "
                        "split into to_there, there and back where both ends log their "
                        "clock's readings")
    p.add_argument("--dir", help="where the cluster's files go (default: a new temporary "
                                 "directory, kept)")
    o = p.parse_args(argv)
    try:
        o.limits = [int(x) for x in o.limits.split(",")]
    except ValueError:
        p.error(f"--limits {o.limits!r}: per-host limits, comma-separated (1,2,8)")
    try:
        o.singles = o.vms if o.singles is None else int(o.singles)
    except ValueError:
        p.error(f"--singles {o.singles!r}: a number of VMs")
    if o.vms < 1 or o.mib < 64 or o.mib % 2 or o.mbps < 1 or o.mbit < 0 or o.link_mib < 1 \
            or not o.limits or min(o.limits) < 1 or o.singles < 1:
        p.error("--vms, --mbps, --link-mib, --singles and each of --limits at least 1, --mib "
                "even and at least 64 (a VM's memory is in 2 MiB steps)")
    if o.before and not os.access(o.before, os.X_OK):
        p.error(f"--before {o.before}: not an executable godwit")
    return o


def in_ns(net, host):
    return ["ip", "netns", "exec", net.ns[host]] if net else []


def link_bandwidth(net, mib):
    """Bytes/s of one TCP stream from host-a to host-b (or over loopback)."""
    addr = net.ip["host-b"] if net else "127.0.0.1"
    rx = subprocess.Popen([*in_ns(net, "host-b"), sys.executable, "-c", RECEIVER, addr],
                          stdout=subprocess.PIPE, text=True)
    tx = None
    try:
        port = rx.stdout.readline().strip()
        tx = subprocess.Popen([*in_ns(net, "host-a"), sys.executable, "-c", SENDER, addr,
                               port, str(mib)])
        tx.wait(timeout=600)
        out, _ = rx.communicate(timeout=60)
    finally:
        for p in (tx, rx):
            if p and p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    r = json.loads(out)
    if tx.returncode or r["bytes"] != mib << 20:
        raise SystemExit(f"the link's copy: sender exit {tx.returncode}, {r['bytes']} bytes")
    return r["bytes"] / r["s"]


def cpu_times():
    """(busy, total) jiffies of all CPUs."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)


def etcd_messages(lab):
    """gRPC messages etcd has received from all its clients so far."""
    url = lab.etcd.url + "/metrics"
    r = subprocess.run([*in_ns(lab.net, "client"), "curl", "-s", "-m", "10", url],
                       capture_output=True, text=True, timeout=30)
    return sum(float(ln.rsplit(None, 1)[1]) for ln in r.stdout.splitlines()
               if ln.startswith("grpc_server_msg_received_total{"))


def vm_logs(lab):
    return [p for h in HOSTS for p in (lab.dir / f"h-{h}").glob("*.log")]


def log_sizes(lab):
    """The VMs' logs on every host, and how long each is now."""
    return {p: p.stat().st_size for p in vm_logs(lab)}


def moves_since(lab, sizes):
    """{vm: (ms, pause ms, steps)} of the moves that ended since log_sizes() in the VMs'
    logs (those begun since included), as each source measured them (the last, if a VM
    moved twice); steps: {STEP_NAMES: us} of its pause when its VM logs at -v, else None;
    with HERE_NAMES too when both ends logged their clock's readings."""
    out, here = {}, {}
    for p in vm_logs(lab):
        with open(p, errors="replace") as f:
            f.seek(sizes.get(p, 0))
            text = f.read()
        steps, at = None, None
        for line in text.splitlines():
            if m := STEPS.search(line):
                steps = {k: int(v or 0) for k, v in zip(STEP_NAMES, m.groups())}
                at = SENT_AT.search(line)
                if c := SRC_CPU.search(line):
                    steps["src_cpu"] = int(c.group(1))
            elif m := DONE.search(line):
                out[p.stem] = (int(m.group(1)), int(m.group(2)), steps, at)
                steps, at = None, None
            elif m := HERE.search(line):
                c = HERE_CPU.search(line)
                here[p.stem] = (int(m.group(2)), int(m.group(3)),
                                tuple(map(int, c.groups())) if c else None)
    done = {}
    for vm, (ms, pause, steps, at) in out.items():
        if steps and at and vm not in here:
            continue  # the destination's line is still to come
        if steps and at:
            (read, sent, cpu), (sent_at, read_at) = here[vm], map(int, at.groups())
            steps.update(to_there=read - sent_at, there=sent - read, back=read_at - sent)
            if cpu:
                steps.update(ack_to_state=cpu[0], dst_cpu=cpu[1])
        done[vm] = (ms, pause, steps)
    return done


def step_spread(steps):
    """{step: (median, max) us} over the moves' pause steps (those logged; the
    destination's split where every one has it)."""
    got = [s for s in steps if s]
    names = STEP_NAMES + (HERE_NAMES if all("back" in s for s in got) else ())
    names += tuple(k for k in CPU_NAMES if all(k in s for s in got))
    return {k: (median([s[k] for s in got]), max(s[k] for s in got))
            for k in names} if got else {}


def vm_pid(lab, host, name):
    return int((lab.dir / f"h-{host}" / f"{name}.pid").read_text().split()[0])


def bytes_read(lab, names):
    """rchar of the VM processes of names where they run now (their pid files there)."""
    where = {v["name"]: v["host"] for v in js(lab, "vms")["vms"]}
    total = 0
    for n in names:
        with open(f"/proc/{vm_pid(lab, where[n], n)}/io") as f:
            total += int(next(ln for ln in f if ln.startswith("rchar:")).split()[1])
    return total


def vm_exes(lab, host, names):
    """The executables of the VM processes of names on host: whose build they are."""
    return sorted({os.readlink(f"/proc/{vm_pid(lab, host, n)}/exe") for n in names})


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


def union_s(spans):
    """Seconds covered by the (start, end) spans together."""
    total, reach = 0.0, None
    for a, b in sorted(spans):
        if reach is None or a > reach:
            total += b - a
            reach = b
        elif b > reach:
            total += b - reach
            reach = b
    return total


def limit_col(r):
    """The case's per-host limit, and host-a's slots where its link allows fewer."""
    slots = r.get("slots", r["limit"])
    return str(r["limit"]) if slots == r["limit"] else f"{r['limit']} ({slots} slots)"


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def evacuate(lab, limit, names):
    seen = {t["id"] for t in js(lab, "tasks")["history"]}
    run(lab, "limits", "--per-host", str(limit))
    # What host-a may run at once: the limit, or fewer on a slow link (docs/cluster.md).
    slots = next((h.get("migration_slots", limit) for h in js(lab, "hosts")["hosts"]
                  if h["name"] == "host-a"), limit)
    logs = log_sizes(lab)
    exes = vm_exes(lab, "host-a", names)
    load0, cpu0, etcd0 = os.getloadavg()[0], cpu_times(), etcd_messages(lab)
    t0_ms = time.time() * 1000
    t0 = time.monotonic()
    run(lab, "maintenance", "enter", "host-a", "--wait")
    wall = time.monotonic() - t0
    cpu1, etcd1, load1 = cpu_times(), etcd_messages(lab), os.getloadavg()[0]
    moved = bytes_read(lab, names)
    new = [t for t in js(lab, "tasks")["history"] if t["id"] not in seen]
    # Each destination logs its part as it sends RESUMED, while its source goes on.
    ended = {t["vm"] for t in new if t["phase"] == "done"}
    deadline = time.monotonic() + 30
    while not ended <= set(src := moves_since(lab, logs)) and time.monotonic() < deadline:
        time.sleep(0.5)
    # A task that never started (its host seen down, say) moved nothing: counted apart.
    tasks = sorted((t for t in new if t["phase"] == "done"), key=lambda t: t["started_ms"])
    last_end = max((t["ended_ms"] for t in tasks), default=t0_ms)
    streams, starts, ends, timeline = [], [], [], []
    for t in tasks:
        mig = t.get("migrating_ms", t["started_ms"])
        done = mig + src[t["vm"]][0] if t["vm"] in src else None
        starts.append((mig - t["started_ms"]) / 1000)
        if done:
            streams.append((mig / 1000, done / 1000))
            ends.append((t["ended_ms"] - done) / 1000)
        # Its marks in s from the command: claimed, the source's migrate taken, the
        # source's own end, recorded done.
        timeline.append([t["vm"], t["dst"], *(round((x - t0_ms) / 1000, 3) if x else None
                                              for x in (t["started_ms"], mig, done,
                                                        t["ended_ms"]))])
    # One at a time: a move's end to the next one's start (the slot free, unused).
    gaps = [(b["started_ms"] - a["ended_ms"]) / 1000 for a, b in zip(tasks, tasks[1:])]
    streaming = union_s(streams)
    return {"timeline": timeline, "last_end_s": (last_end - t0_ms) / 1000, "vm_exes": exes,
            "limit": limit, "slots": slots, "wall_s": wall, "moves": len(tasks), "bytes": moved,
            "not_done": len(new) - len(tasks),
            "streaming_s": streaming, "idle_s": wall - streaming,
            "first_start_s": (tasks[0]["started_ms"] - t0_ms) / 1000 if tasks else None,
            "move_s": median([(t["ended_ms"] - t["started_ms"]) / 1000 for t in tasks]),
            "source_s": median([s[0] / 1000 for s in src.values()]),
            "start_s": median(starts), "end_s": median(ends),
            "gap_s": median(gaps) if limit == 1 else None,
            "pauses_ms": [s[1] for s in src.values()],
            "pause_by_vm": {vm: s[1] for vm, s in src.items()},
            "pause": spread([s[1] for s in src.values()]),
            "steps_us": step_spread([s[2] for s in src.values()]),
            "etcd_per_move": (etcd1 - etcd0) / max(1, len(tasks)),
            "cpu_busy": (cpu1[0] - cpu0[0]) / max(1, cpu1[1] - cpu0[1]),
            "load": [load0, load1]}


def single_moves(lab, names, n):
    """n VMs in turn, each moved alone to host-b and back: each move's time, bytes (the
    destination's rchar) and pause, as its source measured them."""
    moves = []
    for name in (names[i % len(names)] for i in range(n)):
        for src, dst in (("host-a", "host-b"), ("host-b", "host-a")):
            logs = log_sizes(lab)
            t0 = time.monotonic()
            run(lab, "migrate", name, "--to", dst, "--wait")
            wall = time.monotonic() - t0
            wait_until(f"{name} runs on {dst}, its source's end logged",
                       lambda: name in on(lab, dst) and name in moves_since(lab, logs),
                       timeout=120)
            took, pause, steps = moves_since(lab, logs)[name]
            moves.append({"vm": name, "to": dst, "wall_s": wall,
                          "bytes": bytes_read(lab, [name]), "source_s": took / 1000,
                          "pause_ms": pause, "steps": steps})
    pauses = [m["pause_ms"] for m in moves]
    # The medians stand for "one VM moved alone" in the bound's and vs once's figures.
    return {"moves": moves, "wall_s": median([m["wall_s"] for m in moves]),
            "bytes": median([m["bytes"] for m in moves]),
            "source_s": median([m["source_s"] for m in moves]),
            "pause_ms": median(pauses), "pause": spread(pauses),
            "steps_us": step_spread([m["steps"] for m in moves])}


def spread(xs):
    """Median, 90th percentile (nearest rank) and maximum of xs."""
    s = sorted(xs)
    if not s:
        return {"median": None, "p90": None, "max": None}
    return {"median": median(s), "p90": s[math.ceil(0.9 * len(s)) - 1], "max": s[-1]}


def use_manager(lab, binary, name):
    """The running manager stopped (it hands the lead over), `name` started from binary;
    once it leads."""
    for n in lab.nodes:
        if n.kind == "manager" and n.proc.poll() is None:
            n.stop()
    # Node takes its binary from cluster_lab's GODWIT.
    cluster_lab.GODWIT = binary
    try:
        lab.manager(name)
    finally:
        cluster_lab.GODWIT = GODWIT
    ns = lab.net.ns["client"] if lab.net else None
    wait_until(f"{name} leads", lambda: etcd_get(lab.etcd.url, "/godwit/leader", ns=ns).get(
        "/godwit/leader") == name, timeout=60)


def start_agents(lab, o, binary):
    """An agent from binary on every host, each in place of the one running (the VMs
    run on, adopted): the VMs it starts from then on, receives included, are binary's
    (at -v with --vm-verbose, if binary's agent has that option)."""
    for n in lab.nodes:
        if n.kind == "agent" and n.proc.poll() is None:
            n.stop()
    # The options this build's agent has (an older one lacks some).
    options = subprocess.run([binary, "agent", "--help"], capture_output=True, text=True,
                             timeout=30).stdout
    verbose = ["--vm-verbose"] if o.vm_verbose and "--vm-verbose" in options else []
    # The shaped ports' rate, which sysfs does not show: the agents' slots follow it
    # (an older build without the option gets the limit alone).
    link = (["--link-mbit", str(o.mbit)]
            if o.link == "netns" and "--link-mbit" in options else [])
    cluster_lab.GODWIT = binary
    try:
        for h in HOSTS:
            # The agents' default lease (the lab's 4 s expired under a loaded machine's
            # moves).
            lab.agent(h, "--ttl", "10", *verbose, *link, memory=f"{(o.vms + 1) * o.mib}M",
                      cpus=4 * o.vms)
    finally:
        cluster_lab.GODWIT = GODWIT


def back_to_a(lab, names):
    run(lab, "limits", "--per-host", "8")
    run(lab, "maintenance", "exit", "host-a")
    for n in names:
        run(lab, "migrate", n, "--to", "host-a")
    wait_until("all back on host-a", lambda: len(on(lab, "host-a")) == len(names),
               timeout=900, step=1)


def ms(x):
    return "-" if x is None else f"{x:.0f}"


def report(o, fig):
    one, link = fig["single"], fig["link_Bps"]
    where = (f"namespace hosts on a bridge, each port {o.mbit} Mbit/s each way (tbf; "
             f"{o.port_queue} in front of each host's)"
             if o.link == "netns" and o.mbit else
             "namespace hosts on a bridge, not shaped" if o.link == "netns" else "loopback")
    print(f"{o.vms} VMs of {o.mib} MiB on host-a: {fig['cmdline']!r} (random pages), {where}, "
          f"{os.cpu_count()} CPUs, load average {fig['load'][0]:.1f} at the start, "
          f"{fig['load'][1]:.1f} at the end")
    path = "host-a -> host-b" if o.link == "netns" else "over loopback"
    print(f"link: one TCP stream {path}, {fig['link_runs_Bps'][0] / 1e6:.1f} MB/s "
          f"before the cases, {fig['link_runs_Bps'][1] / 1e6:.1f} MB/s after")
    for label, sg in fig["singles"].items():
        p = sg["pause"]
        print(f"single moves{f' ({label})' if label else ''}: {len(sg['moves'])} moves "
              f"alone (host-a -> host-b and back), medians {sg['wall_s']:.2f} s command to "
              f"done, {sg['bytes'] / 1e6:.1f} MB, {sg['source_s']:.2f} s streaming, bound "
              f"{sg['bytes'] / link:.2f} s; pause ms median {ms(p['median'])}, p90 "
              f"{ms(p['p90'])}, max {ms(p['max'])} (each: "
              f"{', '.join(str(m['pause_ms']) for m in sg['moves'])}); load "
              f"{sg['load'][0]:.1f}-{sg['load'][1]:.1f}")
    once = one["bytes"] * o.vms / link
    print(f"each VM sent once what one sent alone (the median): "
          f"{one['bytes'] * o.vms / 1e6:.0f} MB, {once:.1f} s at the link's rate")
    head = ("build" if o.before_parts == "all" else "manager", "limit", "evacuation s",
            "vs first", "last done s", "MB moved", "bound s", "vs bound", "vs once",
            "streaming s", "idle s", "move s", "source s", "start s", "end s", "gap s",
            "pause ms (median, p90, max)", "etcd/move", "CPU busy", "load")
    print("| " + " | ".join(head) + " |")
    base = {}
    for r in fig["cases"]:
        base.setdefault(r["manager"], r["wall_s"])
        bound = r["bytes"] / link
        p = r["pause"]
        gap = f"{r['gap_s']:.2f}" if r["gap_s"] is not None else "-"
        print("| " + " | ".join([
            r["manager"] or "-", limit_col(r), f"{r['wall_s']:.1f}",
            f"{r['wall_s'] / base[r['manager']]:.2f}", f"{r['last_end_s']:.1f}",
            f"{r['bytes'] / 1e6:.0f}", f"{bound:.1f}", f"{r['wall_s'] / bound:.2f}",
            f"{r['wall_s'] / once:.2f}", f"{r['streaming_s']:.1f}", f"{r['idle_s']:.1f}",
            f"{r['move_s']:.2f}", f"{r['source_s']:.2f}", f"{r['start_s']:.2f}",
            f"{r['end_s']:.2f}", gap, f"{ms(p['median'])}, {ms(p['p90'])}, {ms(p['max'])}",
            f"{r['etcd_per_move']:.0f}", f"{r['cpu_busy'] * 100:.0f}%",
            f"{r['load'][0]:.1f}-{r['load'][1]:.1f}"]) + " |" +
              (f" ({r['not_done']} tasks not done)" if r["not_done"] else ""))
    for r in fig["cases"]:
        p, sg = r["pause"], fig["singles"][r["manager"]]
        sp = sg["pause"]
        each = ", ".join(f"{vm} {x}" for vm, x in sorted(r["pause_by_vm"].items()))
        print(f"limit {r['limit']}" + (f" ({r['manager']})" if r["manager"] else "") +
              f": pauses vs single: median {ms(p['median'])} vs {ms(sp['median'])}, "
              f"p90 {ms(p['p90'])} vs {ms(sp['p90'])}, max {ms(p['max'])} vs "
              f"{ms(sp['max'])} ms ({len(r['pauses_ms'])} moves against "
              f"{len(sg['moves'])}; each: {each}; load {r['load'][0]:.1f}-{r['load'][1]:.1f})")
    for label, what in [(f"single moves ({k})" if k else "single moves", v)
                        for k, v in fig["singles"].items()] + \
            [(f"limit {r['limit']}" + (f" ({r['manager']})" if r["manager"] else ""), r)
             for r in fig["cases"]]:
        if what["steps_us"]:
            print(f"{label}: pause steps, us median/max: " + ", ".join(
                f"{k} {a:.0f}/{b}" for k, (a, b) in what["steps_us"].items()))
    print(json.dumps(fig))


def bench(o, lab):
    builds = [("before", o.before), ("after", GODWIT)] if o.before else [("", None)]
    whole = o.before and o.before_parts == "all"
    # The VMs created first are the first build's.
    start_agents(lab, o, builds[0][1] if whole else GODWIT)
    lab.manager("m1")
    for h in HOSTS[1:]:
        run(lab, "maintenance", "enter", h)
    names = [f"vm{i}" for i in range(o.vms)]
    cmdline = f"memtouch {o.mib // 4}M {o.mbps} random ; fill {o.mib * 5 // 8}M"
    for n in names:
        run(lab, "create", n, "--kernel", TESTGUEST, "--memory", f"{o.mib}M", "--cpus", "2",
            "--cmdline", cmdline)
    for h in HOSTS[1:]:
        run(lab, "maintenance", "exit", h)
    wait_until("all run on host-a", lambda: len(on(lab, "host-a")) == o.vms, timeout=300,
               step=1)
    load0 = os.getloadavg()[0]
    bw = [link_bandwidth(lab.net, o.link_mib)]
    singles, cases, agents = {}, [], builds[0][1] if whole else GODWIT
    for limit in o.limits:
        for label, binary in builds:
            if cases:
                # The VMs are off host-a: they come back as receives of host-a's agent,
                # so a new build's agents make them that build's VMs.
                if whole and agents != binary:
                    start_agents(lab, o, binary)
                    agents = binary
                back_to_a(lab, names)
            if binary:
                use_manager(lab, binary, f"m-{label}")
            if label not in singles:
                load = os.getloadavg()[0]
                singles[label] = {**single_moves(lab, names, o.singles),
                                  "load": [load, os.getloadavg()[0]]}
            cases.append({**evacuate(lab, limit, names), "manager": label})
    bw.append(link_bandwidth(lab.net, o.link_mib))
    report(o, {"cmdline": cmdline, "link": o.link, "mbit": o.mbit, "link_runs_Bps": bw,
               "link_Bps": max(bw), "single": singles[builds[-1][0]], "singles": singles,
               "cases": cases, "load": [load0, os.getloadavg()[0]]})


def main(argv=None):
    o = options(argv)
    # A SIGTERM ends the bench through its cleanup, as an error does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = pathlib.Path(o.dir or tempfile.mkdtemp(prefix="godwit-bench-cluster."))
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"files in {tmp}", file=sys.stderr)
    net = lab = None
    try:
        if o.link == "netns":
            net = ClusterNet(hosts=HOSTS).up()
            if o.mbit:
                net.shape(o.mbit, o.port_queue)
        lab = Lab(tmp, net=net)
        bench(o, lab)
    finally:
        if lab:
            lab.stop()
        if net:
            net.down()


if __name__ == "__main__":
    main()
