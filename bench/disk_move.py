#!/usr/bin/python3
"""Moving a running VM's disk: godwit's mirror against `cp --sparse=always` and QEMU's
blockdev-mirror, side by side in one run (`make bench-disk-move`; docs/devices.md,
"Moving a disk").

The image: --mib MiB (default 1024), in 32 MiB stretches of 24 MiB of random data (it
does not compress, and no block is zero) and an 8 MiB hole; written once, then in the
host's page cache for every copy below.

1. Copy throughput, guest idle (`heartbeat 1000`, the disk attached and untouched):
   `cp --sparse=always` of the image followed by `sync -d` of the copy (godwit's move
   ends with an fdatasync of the new file, so cp's copy is made as durable), against
   `godwit disk-move` of the same image (its total_ms: from the request to the switch
   done; each move goes from the file the last one made), which of the two goes first
   alternating from run to run. MB/s = the image's data bytes (holes excluded) /
   seconds; the ratio is the median of the runs' ratios.
2. Under guest load: the test guest's `blkbench MIB latency` (4 KiB writes, one at a
   time, at random places all over the image) on godwit and on QEMU 7.2 (-accel kvm,
   microvm, virtio-blk-device, cache=writeback, aio=threads). 3 s idle, then the move
   (godwit: PUT /vm/disks/0/move; QEMU: blockdev-add of the new file, blockdev-mirror
   sync=full, block-job-complete at BLOCK_JOB_READY, until BLOCK_JOB_COMPLETED; in its
   default background copy mode and in write-blocking, the mode that mirrors as godwit
   does), then 2 s more. The guest prints a latency histogram per 500 ms of its time;
   windows whose line arrived while the move ran (from 0.5 s after its start) are
   "during", those of the idle seconds before "idle" (the first second skipped).
   p50/p99 from the summed histograms (quarter-octave buckets: +-10 %). The switch:
   godwit's switch_us (its I/O held), and for both the slowest guest write of the
   window the move ended in.

3. Without shared storage (--remote, default on): the same idle guest moved to a
   `godwit receive` on loopback, three ways side by side in each run (their order
   rotating): `cp --sparse=always` + `sync -d` of the image (the device's own limit),
   a migration with the image on "shared storage" (the receiver opens the same file:
   the RAM move alone), and `migrate --disk-to` (the image through the stream into the
   receiver's --disk-dir, then the RAM). The disk's part of the move is the difference
   of the two migrations' total_ms; its MB/s (data bytes / that) is compared with cp's.

4. --ab PATH: a second godwit build (a change's, against build/godwit): under load its
   moves ("godwit-B") alternate with build/godwit's, which goes first alternating from
   run to run; without shared storage its --disk-to move joins the rotation. Same
   image, same load, same run: the way to tell a change's effect on this shared host.

Python standard library only. Every process is started here and stopped by its PID;
every wait is bounded; the work directory is removed at the end.
"""
import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))

import procmon  # noqa: E402
from devices import GODWIT, VM, conditions, qemu_missing  # noqa: E402
from godwit_vm import api, free_port  # noqa: E402
from qmp import QMP  # noqa: E402

MiB = 1 << 20
RESULTS = os.path.join(os.path.dirname(HERE), "bench", "results", "DISK_MOVE.md")
HIST_RX = re.compile(r"^blkbench: lat h((?: \d+:\d+)+)$")
WINDOW_RX = re.compile(r"^blkbench: lat n (\d+) max (\d+) us$")


def make_image(path, mib):
    """24 MiB of random data, then an 8 MiB hole, repeated; returns the data bytes."""
    rng = random.Random(20)
    data = 0
    with open(path, "wb") as f:
        f.truncate(mib * MiB)
        for off in range(0, mib * MiB, 32 * MiB):
            f.seek(off)
            for _ in range(min(24, mib - off // MiB)):
                f.write(rng.randbytes(MiB))
                data += MiB
    return data


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def godwit_move(sock, to):
    """Moves disk 0; returns its final status object."""
    status, body = api(sock, "PUT", "/vm/disks/0/move", {"to": to})
    if status != 202:
        raise RuntimeError(f"disk move: {status} {body}")

    def done():
        st = api(sock, "GET", "/vm/disks/0/move")[1]
        return st if st["status"] in ("completed", "failed", "cancelled") else None
    st = wait_until(done, 600, "godwit disk move")
    if st["status"] != "completed":
        raise RuntimeError(f"disk move: {st}")
    return st


def throughput(workdir, image, data_bytes, runs):
    rows = []
    sock = os.path.join(workdir, "idle.sock")
    vm = VM("godwit", workdir, "idle", "heartbeat 1000", disk=image, extra=["--api", sock])
    try:
        wait_until(lambda: os.path.exists(sock), 30, "godwit's API socket")
        cur = image
        for run in range(runs):
            # Which goes first alternates: the host's load drifts.
            for first in ((True, False) if run % 2 == 0 else (False, True)):
                if first:
                    dst = os.path.join(workdir, f"cp{run}.img")
                    t0 = time.monotonic()
                    subprocess.run(["cp", "--sparse=always", image, dst], check=True)
                    subprocess.run(["sync", "-d", dst], check=True)
                    cp_s = time.monotonic() - t0
                    os.unlink(dst)
                    continue
                dst = os.path.join(workdir, f"moved{run}.img")
                st = godwit_move(sock, dst)
                if cur != image:
                    os.unlink(cur)
                cur = dst
                mv_s = st["total_ms"] / 1000
            rows.append({"run": run + 1, "cp_s": cp_s, "move_s": mv_s,
                         "cp_mbps": data_bytes / 1e6 / cp_s, "move_mbps": data_bytes / 1e6 / mv_s,
                         "data_bytes": st["data_bytes"], "switch_us": st["switch_us"]})
            print(f"copy run {run + 1}: cp {cp_s:.3f} s, godwit {mv_s:.3f} s", flush=True)
    finally:
        vm.stop()
    return rows


def migrate_once(workdir, image, name, disk_to, godwit=None):
    """The idle guest on image moved to a receiver on loopback; its migration status.
    disk_to: the image goes through the stream into a --disk-dir, else the receiver
    opens the same file (shared storage). godwit: the build (default GODWIT)."""
    sock = os.path.join(workdir, f"{name}-src.sock")
    vm = VM("godwit", workdir, f"{name}-src", "heartbeat 1000", disk=image,
            extra=["--api", sock], godwit=godwit)
    ddir = os.path.join(workdir, f"{name}-dir")
    os.mkdir(ddir)
    port = free_port()
    disk = ["--disk-dir", ddir] if disk_to else ["--disk", image]
    dst = procmon.Proc([godwit or GODWIT, "receive", "--listen", f"tcp:127.0.0.1:{port}", "--console",
                        f"file:{os.path.join(workdir, name + '-dst.console')}", *disk],
                       f"{name}-dst", workdir)
    try:
        wait_until(lambda: os.path.exists(sock), 30, "godwit's API socket")
        wait_until(lambda: api(sock, "GET", "/vm")[1].get("state") == "running", 30,
                   "the guest running")
        wait_until(lambda: "waiting for an incoming" in dst.stderr(), 30, "the receiver")
        # watch: the source waits for our ack of the final status before it exits.
        req = {"to": f"tcp:127.0.0.1:{port}", "watch": True}
        if disk_to:
            req["disk_to"] = [{"disk": 0, "to": "moved.img"}]
        status, body = api(sock, "PUT", "/vm/migrate", req)
        if status != 202:
            raise RuntimeError(f"migrate: {status} {body}")
        st = {}

        def done():
            nonlocal st
            st = api(sock, "GET", "/vm/migration")[1]
            return st.get("status") in ("completed", "failed", "cancelled")
        wait_until(done, 600, "the migration")
        api(sock, "PUT", "/vm/migration/ack")
        if st.get("status") != "completed":
            raise RuntimeError(f"migrate: {st} {dst.stderr()[-500:]}")
        return st
    finally:
        vm.stop()
        dst.stop()
        shutil.rmtree(ddir, ignore_errors=True)


def remote(workdir, image, data_bytes, runs, ab=None):
    """cp, the RAM move alone and the move with --disk-to (and with build ab's), side by
    side per run."""
    rows = []
    for run in range(runs):
        row = {"run": run + 1}
        order = ["cp", "ram", "disk"] + (["diskB"] if ab else [])
        for what in order[run % len(order):] + order[:run % len(order)]:
            if what == "cp":
                dst = os.path.join(workdir, f"rcp{run}.img")
                t0 = time.monotonic()
                subprocess.run(["cp", "--sparse=always", image, dst], check=True)
                subprocess.run(["sync", "-d", dst], check=True)
                row["cp_s"] = time.monotonic() - t0
                os.unlink(dst)
            elif what == "ram":
                st = migrate_once(workdir, image, f"ram{run}", False)
                row["ram_s"] = st["total_ms"] / 1000
            elif what == "diskB":
                st = migrate_once(workdir, image, f"diskB{run}", True, ab)
                row["diskB_s"] = st["total_ms"] / 1000
            else:
                st = migrate_once(workdir, image, f"disk{run}", True)
                row["disk_s"] = st["total_ms"] / 1000
                row["disk_bytes"] = st["disk_bytes"]
                row["pause_ms"] = st["downtime_ms"]
        row["cp_mbps"] = data_bytes / 1e6 / row["cp_s"]
        for k in ("disk", "diskB"):
            if k + "_s" in row:
                row[k + "_part_s"] = max(row[k + "_s"] - row["ram_s"], 1e-3)
                row[k + "_mbps"] = data_bytes / 1e6 / row[k + "_part_s"]
        rows.append(row)
        print(f"remote run {run + 1}: cp {row['cp_s']:.3f} s, RAM move {row['ram_s']:.3f} s, "
              f"--disk-to move {row['disk_s']:.3f} s"
              + (f", with --ab's build {row['diskB_s']:.3f} s" if ab else ""), flush=True)
    return rows


def windows(vm):
    """[(host time the window's last line came, histogram {bucket: n}, max us)]."""
    out, hist = [], {}
    for t, text in list(vm.tail.lines):
        m = HIST_RX.match(text)
        if m:
            for pair in m.group(1).split():
                b, n = pair.split(":")
                hist[int(b)] = hist.get(int(b), 0) + int(n)
            continue
        m = WINDOW_RX.match(text)
        if m:
            out.append((t, hist, int(m.group(2))))
            hist = {}
    return out


def bucket_us(b):
    """The middle of quarter-octave bucket b (ns buckets, as blkbench counts them)."""
    lo = b if b < 4 else (4 + b % 4) << (b // 4 - 2)
    hi = b + 1 if b < 4 else (5 + b % 4) << (b // 4 - 2)
    return (lo + hi) / 2 / 1000


def percentile(hist, q):
    total = sum(hist.values())
    if not total:
        return 0.0
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= q * total:
            return bucket_us(b)
    return bucket_us(max(hist))


def summed(ws):
    h = {}
    for _, hist, _ in ws:
        for b, n in hist.items():
            h[b] = h.get(b, 0) + n
    return h


def qemu_mirror(vm, qmp, dst, size, mode):
    """blockdev-mirror of drive d0 to dst; returns (start, ready, end) monotonic times."""
    with open(dst, "wb") as f:
        f.truncate(size)
    qmp.command("blockdev-add", driver="raw", **{"node-name": "t0"},
                file={"driver": "file", "filename": dst})
    t0 = time.monotonic()
    qmp.command("blockdev-mirror", **{"job-id": "m0", "copy-mode": mode}, device="d0",
                target="t0", sync="full")
    if qmp.wait_event("BLOCK_JOB_READY", 600) is None:
        raise RuntimeError("QEMU: no BLOCK_JOB_READY within 600 s")
    t1 = time.monotonic()
    qmp.command("block-job-complete", device="m0")
    ev = qmp.wait_event("BLOCK_JOB_COMPLETED", 120)
    if ev is None or ev["data"].get("error"):
        raise RuntimeError(f"QEMU mirror: {ev}")
    return t0, t1, time.monotonic()


def under_load(kind, workdir, image, mib, run, mode=None, godwit=None):
    """One move under `blkbench MIB latency`; returns a row of figures. godwit: the
    build (default GODWIT), mode "B" names --ab's."""
    name = f"{kind}-{mode}-{run}" if mode else f"{kind}-{run}"
    work = os.path.join(workdir, f"{name}.img")
    subprocess.run(["cp", "--sparse=always", image, work], check=True)
    dst = os.path.join(workdir, f"{name}-moved.img")
    sock = os.path.join(workdir, f"{name}.sock")
    extra = ["--api", sock] if kind == "godwit" else ["-qmp", f"unix:{sock},server=on,wait=off"]
    vm = VM(kind, workdir, name, f"blkbench {mib} latency", disk=work, extra=extra,
            godwit=godwit)
    qmp = None
    try:
        wait_until(lambda: len(windows(vm)) >= 8, 60, f"{name}: latency windows")
        if kind == "godwit":
            t0 = time.monotonic()
            st = godwit_move(sock, dst)
            t2 = time.monotonic()
            t1, switch_us = t2, st["switch_us"]
        else:
            qmp = QMP(sock)
            t0, t1, t2 = qemu_mirror(vm, qmp, dst, mib * MiB, mode)
            switch_us = None
        time.sleep(2)
        ws = windows(vm)
    finally:
        if qmp:
            qmp.close()
        vm.stop()
        for p in (work, dst):
            if os.path.exists(p):
                os.unlink(p)
    idle = [w for w in ws if w[0] < t0 and w[0] > ws[0][0] + 1]
    during = [w for w in ws if t0 + 0.5 < w[0] <= t2]
    last = [w for w in ws if w[0] >= t2][:1]
    hi, hd = summed(idle), summed(during)
    return {"vmm": f"{kind}-{mode}" if mode else kind, "move_s": t2 - t0, "ready_s": t1 - t0,
            "idle_n": sum(hi.values()), "during_n": sum(hd.values()),
            "idle_p50": percentile(hi, 0.5), "idle_p99": percentile(hi, 0.99),
            "during_p50": percentile(hd, 0.5), "during_p99": percentile(hd, 0.99),
            "during_max_us": max((w[2] for w in during), default=None),
            "switch_window_max_us": last[0][2] if last else None, "switch_us": switch_us}


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else 0.0


def report_remote(rows):
    if not rows:
        return []
    ratio = median([r["disk_mbps"] / r["cp_mbps"] for r in rows])
    ab = [r for r in rows if "diskB_s" in r]
    lines = ["", "## Without shared storage (migrate --disk-to, loopback, guest idle)", "",
             "| run | cp --sparse=always + sync | RAM move alone (shared storage) | "
             "move with --disk-to | its disk part | disk MB/s | cp MB/s | ratio | "
             "pause ms | image bytes sent |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['cp_s']:.3f} s | {r['ram_s']:.3f} s | "
                     f"{r['disk_s']:.3f} s | {r['disk_part_s']:.3f} s | {r['disk_mbps']:.0f} | "
                     f"{r['cp_mbps']:.0f} | {r['disk_mbps'] / r['cp_mbps']:.2f} | "
                     f"{r['pause_ms']} | {r['disk_bytes']} |")
    lines += ["", f"Median ratio of the disk part's throughput to cp's: **{ratio:.2f}x cp**. "
              "The disk part is the --disk-to move's total_ms less the RAM move's, each "
              "from the request to the hand-over."]
    if ab:
        lines += ["", "--ab's build in the same runs: "
                  + ", ".join(f"run {r['run']} {r['diskB_s']:.3f} s (its disk part "
                              f"{r['diskB_mbps']:.0f} MB/s, {r['diskB_mbps'] / r['cp_mbps']:.2f}x "
                              "cp)" for r in ab)
                  + f"; median **{median([r['diskB_mbps'] / r['cp_mbps'] for r in ab]):.2f}x cp**."]
    return lines


def report(args, tp, loads, skipped, load0, remote_rows=()):
    flags = "".join(f" {f}" for f, on in (("--only-remote", args.only_remote),
                                          ("--only-load", args.only_load)) if on)
    flags += f" --ab {args.ab}" if args.ab else ""
    head = ["# Moving a disk (bench/disk_move.py)", "",
            f"`bench/disk_move.py --mib {args.mib} --runs {args.runs}{flags}`, "
            f"{time.strftime('%Y-%m-%d %H:%M')}; {conditions()}; load average before: "
            f"{load0}; after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}."]
    if args.only_remote:
        return "\n".join(head + report_remote(remote_rows) + [""] + skipped) + "\n"
    cp = median([r["cp_mbps"] for r in tp])
    mv = median([r["move_mbps"] for r in tp])
    ratio = median([r["move_mbps"] / r["cp_mbps"] for r in tp])
    lines = list(head)
    if tp:
        lines += ["", "## Copy throughput, guest idle", "",
                  "| run | cp --sparse=always + sync | MB/s | godwit disk-move | MB/s | ratio |",
                  "|---|---|---|---|---|---|"]
    for r in tp:
        lines.append(f"| {r['run']} | {r['cp_s']:.3f} s | {r['cp_mbps']:.0f} | "
                     f"{r['move_s']:.3f} s | {r['move_mbps']:.0f} | "
                     f"{r['move_mbps'] / r['cp_mbps']:.2f} |")
    if tp:
        lines += ["", f"Medians: cp {cp:.0f} MB/s, godwit {mv:.0f} MB/s; ratio "
                  f"**{ratio:.2f}x cp** (goal >= 0.8x)."]
    lines += ["", "## Under guest write load (blkbench latency: 4 KiB writes, one at a time)", "",
              "| VMM | move s | idle p50 us | idle p99 us | during p50 us | during p99 us | "
              "p99 during/idle | writes idle/during | slowest write during (us) | "
              "slowest write, switch window (us) | I/O held for the switch (us) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in loads:
        p99_ratio = r["during_p99"] / r["idle_p99"] if r["idle_p99"] else 0
        lines.append(f"| {r['vmm']} | {r['move_s']:.2f} | {r['idle_p50']:.0f} | "
                     f"{r['idle_p99']:.0f} | {r['during_p50']:.0f} | {r['during_p99']:.0f} | "
                     f"{p99_ratio:.2f} | {r['idle_n']}/{r['during_n']} | {r['during_max_us']} | "
                     f"{r['switch_window_max_us']} | "
                     f"{r['switch_us'] if r['switch_us'] is not None else '-'} |")
    by_vmm = {}
    for r in loads:
        if r["idle_p99"]:
            by_vmm.setdefault(r["vmm"].split(" #")[0], []).append(r["during_p99"] / r["idle_p99"])
    lines += ["", "Median p99 during/idle: " + ", ".join(
        f"{v} **{median(xs):.2f}x** ({' '.join(f'{x:.1f}' for x in xs)})"
        for v, xs in by_vmm.items()) + " (goal <= 2x)."]
    lines += ["", "QEMU's move time runs from blockdev-mirror to BLOCK_JOB_COMPLETED "
              "(block-job-complete sent at BLOCK_JOB_READY); godwit's from the PUT to the "
              "switch done. Percentiles are quarter-octave bucket middles (+-10 %)."]
    lines += report_remote(remote_rows)
    lines += [""] + skipped
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=int(os.environ.get("DISK_MOVE_MIB", "1024")))
    ap.add_argument("--runs", type=int, default=int(os.environ.get("DISK_MOVE_RUNS", "3")),
                    help="copies (each cp and a move) and moves under load per VMM")
    ap.add_argument("--vmms", default=os.environ.get("DISK_MOVE_VMMS", "godwit,qemu"))
    ap.add_argument("--out", default=RESULTS)
    ap.add_argument("--remote", default=os.environ.get("DISK_MOVE_REMOTE", "1"),
                    help="1: also the move without shared storage (3.), 0: not")
    ap.add_argument("--only-remote", action="store_true",
                    help="only the move without shared storage (3.)")
    ap.add_argument("--ab", metavar="GODWIT", help="a second godwit build whose moves "
                    "alternate with build/godwit's run by run (4.)")
    ap.add_argument("--only-load", action="store_true",
                    help="only the moves under guest load (2.)")
    args = ap.parse_args()
    skipped = []
    vmms = [v for v in args.vmms.split(",") if v]
    if "qemu" in vmms and qemu_missing():
        skipped.append(f"QEMU skipped: {qemu_missing()}")
        vmms.remove("qemu")
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    workdir = tempfile.mkdtemp(prefix="godwit-disk-move-", dir="/var/tmp")
    try:
        image = os.path.join(workdir, "image.img")
        data = make_image(image, args.mib)
        tp, loads, rem = [], [], []
        if (args.remote == "1" or args.only_remote) and not args.only_load:
            rem = remote(workdir, image, data, args.runs, args.ab)
        if not args.only_remote and not args.only_load:
            tp = throughput(workdir, image, data, args.runs)
        for run in range(0 if args.only_remote else args.runs):
            for kind in vmms:
                modes = ("background", "write-blocking")
                if kind == "godwit":
                    # Which build goes first alternates: the host's load drifts.
                    modes = (None, "B")[::1 if run % 2 == 0 else -1] if args.ab else (None,)
                for mode in modes:
                    print(f"under load: {kind} {mode or ''} run {run + 1}", flush=True)
                    row = under_load(kind, workdir, image, args.mib, run + 1, mode,
                                     args.ab if mode == "B" else None)
                    row["vmm"] += f" #{run + 1}"
                    loads.append(row)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = report(args, tp, loads, skipped, load0, rem)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    print(json.dumps({"throughput": tp, "load": loads, "remote": rem}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
