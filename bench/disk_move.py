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
   run to run; without shared storage (3. and 5.) its --disk-to move joins the
   rotation. Same image, same load, same run: the way to tell a change's effect on this
   shared host.

5. Without shared storage, under guest load (--remote-load, default on;
   --only-remote-load): `blkbench MIB latency` as in 2., then the VM moves with its
   disk to a second process on loopback, each VMM in every run, their order rotating:
   godwit: `godwit receive --disk-dir DIR` and `godwit migrate --disk-to 0=moved.img`;
   QEMU 7.2 as docs/interop/live-block-operations.rst has it: the destination
   (-incoming defer, -S) on its own empty image of the same size exports it over NBD
   (nbd-server-start, nbd-server-add writable), the source blockdev-adds an NBD node
   for it and runs blockdev-mirror sync=full (background and write-blocking), migrates
   the RAM at BLOCK_JOB_READY (downtime-limit 50 ms, godwit's default, bandwidth
   unlimited), and once in postmigrate ends the mirror (block-job-cancel, which
   completes a READY mirror); the destination stops its NBD server and `cont`s.
   Figures: time to finish (first command to the destination running), the image
   across (godwit's pass done; QEMU's READY) and its MB/s, guest write p50/p99 during
   against idle (the windows of 2.), the pause (the slowest write of the first window
   at the destination, the guest's output gap across the move, the VMM's own downtime).
   Every moved image is compared with the source's (compare_images).

Python standard library only. Every process is started here and stopped by its PID;
every wait is bounded; the work directory is removed at the end.
"""
import argparse
import http.client
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))

import procmon  # noqa: E402
from devices import GODWIT, START_RX, VM, conditions, qemu_missing  # noqa: E402
from godwit_vm import api, free_port  # noqa: E402
from qmp import QMP, QMPError  # noqa: E402
from vmms import QEMU_UNLIMITED_BW  # noqa: E402

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


def wait_until(pred, timeout, what, step=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout} s")
        time.sleep(step)


# How often godwit_move asks how the move goes: as `godwit disk-move` does
# (src/control/disk_cli.c). Every 20 ms, the bench's requests and the VMM's threads
# answering them took the CPUs from the guest's writes: p99 during/idle 8.0x and 16x
# against 5.9x and 6.9x at 200 ms (docs/bench.md, "The bench's own polling").
MOVE_POLL_S = 0.1


def godwit_move(sock, to):
    """Moves disk 0; returns its final status object."""
    status, body = api(sock, "PUT", "/vm/disks/0/move", {"to": to})
    if status != 202:
        raise RuntimeError(f"disk move: {status} {body}")

    def done():
        st = api(sock, "GET", "/vm/disks/0/move")[1]
        return st if st["status"] in ("completed", "failed", "cancelled") else None
    st = wait_until(done, 600, "godwit disk move", MOVE_POLL_S)
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
    """[(host time the window's last line came, histogram {bucket: n}, max us, writes,
    index of that line)] of a VM's console."""
    return windows_in(list(vm.tail.lines))


def windows_in(lines):
    out, hist = [], {}
    for i, (t, text) in enumerate(lines):
        m = HIST_RX.match(text)
        if m:
            for pair in m.group(1).split():
                b, n = pair.split(":")
                hist[int(b)] = hist.get(int(b), 0) + int(n)
            continue
        m = WINDOW_RX.match(text)
        if m:
            out.append((t, hist, int(m.group(2)), int(m.group(1)), i))
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
    for w in ws:
        for b, n in w[1].items():
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
            # The move's own time (the request to the switch done), not the poll's.
            t2 = t0 + st["total_ms"] / 1000
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


# --- 5. Without shared storage, under guest write load ----------------------------------

GOLDEN = 0x9E3779B97F4A7C15
M64 = (1 << 64) - 1
QEMU_DOWNTIME_MS = 50  # godwit migrate's default --downtime-ms, asked of QEMU too


class Receiver:
    """A `godwit receive` and its console, read every 10 ms by a thread of its own so
    that each line carries the host time it came (a VM does this for its console)."""

    def __init__(self, godwit, workdir, name, port, disk_dir):
        self.api = os.path.join(workdir, f"{name}.sock")
        console = os.path.join(workdir, f"{name}.console")
        self.proc = procmon.Proc([godwit, "receive", "--listen", f"tcp:127.0.0.1:{port}",
                                  "--api", self.api, "--disk-dir", disk_dir,
                                  "--console", f"file:{console}"], name, workdir)
        self.tail = procmon.ConsoleTail(console)
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._halt.wait(0.01):
            self.tail.poll(time.monotonic())

    def stop(self):
        self._halt.set()
        self._thread.join(timeout=5)
        self.proc.stop()
        self.tail.close()


def lines_across(src, dst):
    """The guest's console lines across the move, the source's then the destination's
    (a line the pause cut in two goes on there, stamped there); and how many are the
    source's."""
    a, b = list(src.lines), list(dst.lines)
    if src.partial and b:
        b[0] = (b[0][0], src.partial.decode(errors="replace") + b[0][1])
    return a + b, len(a)


def blkbench_block(block, seed):
    """The 4 KiB `blkbench MIB latency` writes at 4 KiB block `block` (blkbench.c fill)."""
    s0 = block * 8
    return struct.pack("<512Q", *(((s * GOLDEN + j) & M64) ^ seed
                                  for s in range(s0, s0 + 8) for j in range(64)))


def compare_images(src, dst, seed, chunk=MiB):
    """The destination's image against the source's as the guest left it there: equal
    but for 4 KiB blocks that hold exactly what blkbench writes there (the guest wrote
    them after it resumed on the destination, and goes on until it is stopped). Raises
    at the first other difference; returns (bytes compared, such blocks)."""
    size = os.path.getsize(src)
    if os.path.getsize(dst) != size:
        raise RuntimeError(f"{dst} is {os.path.getsize(dst)} bytes, {src} {size}")
    rewritten = 0
    with open(src, "rb") as f, open(dst, "rb") as g:
        for off in range(0, size, chunk):
            a, b = f.read(chunk), g.read(chunk)
            if a == b:
                continue
            for i in range(0, len(a), 4096):
                if a[i:i + 4096] == b[i:i + 4096]:
                    continue
                if b[i:i + 4096] != blkbench_block((off + i) // 4096, seed):
                    raise RuntimeError(f"the moved image differs from the source's at byte "
                                       f"{off + i} (not a block the guest wrote there)")
                rewritten += 1
    return size, rewritten


def poll_api(sock, path):
    """GET path's JSON, {} if there is none (yet, or any more)."""
    try:
        return api(sock, "GET", path, timeout=2)[1] or {}
    except (OSError, ValueError, http.client.HTTPException):
        return {}


def godwit_remote(name, workdir, sock, port, godwit):
    """`godwit migrate --disk-to` of the VM's (API sock) disk 0 to a receiver on port; the
    receiver, its --disk-dir, the times the command started, the image was across and
    the destination ran, and the command's JSON."""
    ddir = os.path.join(workdir, f"{name}-dir")
    os.mkdir(ddir)
    dst = Receiver(godwit, workdir, f"{name}-dst", port, ddir)
    try:
        wait_until(lambda: "waiting for an incoming" in dst.proc.stderr(), 30, "the receiver")
        # Its progress lines go to a file: a pipe read only at the end fills on a long move.
        out_path = os.path.join(workdir, f"{name}-migrate.out")
        with open(out_path, "w") as out_f:
            t0 = time.monotonic()
            cli = subprocess.Popen([godwit, "migrate", "--api", sock, "--to",
                                    f"tcp:127.0.0.1:{port}", "--disk-to", "0=moved.img",
                                    "--json"], stdin=subprocess.DEVNULL, stdout=out_f,
                                   stderr=subprocess.STDOUT, text=True)
        t_disk = None
        try:
            # The source's word that the image is across (its pass done, before the RAM),
            # asked as often as `godwit migrate` asks: to the nearest MOVE_POLL_S. Every
            # 10 ms, both VMMs' HTTP threads took the CPUs from the guest's writes.
            while cli.poll() is None and time.monotonic() < t0 + 600:
                if t_disk is None:
                    st = poll_api(sock, "/vm/migration")
                    if st.get("disk_size") and st.get("disk_copied") == st["disk_size"]:
                        t_disk = time.monotonic()
                time.sleep(MOVE_POLL_S)
            cli.wait(timeout=60)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
        with open(out_path) as f:
            out = f.read()
        os.unlink(out_path)
        lines = [x for x in out.splitlines() if x.startswith("{")]
        st = json.loads(lines[-1]) if lines else {}
        if st.get("status") != "completed":
            raise RuntimeError(f"godwit migrate --disk-to: {st or out[-800:]} "
                               f"{dst.proc.stderr()[-500:]}")
        # The move's own time: the request to the destination's word that it runs. The
        # image was across before that, whenever the poll saw it (after, on a short move).
        t_run = t0 + st["total_ms"] / 1000
        return dst, ddir, t0, min(t_disk or t_run, t_run), t_run, st
    except BaseException:
        dst.stop()
        raise


def qemu_remote(vm, qmp, qdst, port, nport, mode):
    """QEMU's move without shared storage (docs/interop/live-block-operations.rst): the
    destination (-incoming defer, -S) exports its empty image over NBD, the source
    mirrors its drive to it, migrates the RAM once the mirror is READY, ends the mirror
    (block-job-cancel of a READY mirror completes it) once it is in postmigrate; the
    destination stops its NBD server and runs. Times from the first command on the
    source: the mirror READY, the destination running; and QEMU's query-migrate."""
    t0 = time.monotonic()
    qmp.command("blockdev-add", driver="nbd", export="d0", **{"node-name": "t0"},
                server={"type": "inet", "host": "127.0.0.1", "port": str(nport)})
    qmp.command("blockdev-mirror", **{"job-id": "m0", "copy-mode": mode}, device="d0",
                target="t0", sync="full")
    if qmp.wait_event("BLOCK_JOB_READY", 600) is None:
        raise RuntimeError("QEMU: no BLOCK_JOB_READY within 600 s")
    t_ready = time.monotonic()
    # The job's len counts what it copied, chunks the guest dirtied again included.
    jobs = qmp.command("query-block-jobs") or [{}]
    qmp.command("migrate", uri=f"tcp:127.0.0.1:{port}")
    deadline = time.monotonic() + 600
    while True:
        st = qmp.command("query-migrate") or {}
        if st.get("status") == "completed":
            break
        if st.get("status") in ("failed", "cancelled") or time.monotonic() > deadline:
            raise RuntimeError(f"QEMU migrate: {st}")
        time.sleep(0.01)
    # 7.2 says completed a moment before its run state is postmigrate (vmms.py, settled).
    deadline = time.monotonic() + 10
    while (qmp.command("query-status") or {}).get("status") != "postmigrate":
        if time.monotonic() > deadline:
            raise RuntimeError("QEMU's source completed but is not in postmigrate")
        time.sleep(0.005)
    qmp.command("block-job-cancel", device="m0")
    ev = qmp.wait_event("BLOCK_JOB_COMPLETED", 120)
    if ev is None or ev["data"].get("error"):
        raise RuntimeError(f"QEMU mirror's end: {ev}")
    qdst.command("nbd-server-stop")
    qdst.command("cont")
    t_run = time.monotonic()
    return t0, t_ready, t_run, qmp.command("query-migrate") or {}, jobs[0].get("len")


def under_load_remote(kind, workdir, image, mib, data_bytes, run, mode=None, godwit=None):
    """One move to a second process on loopback, its disk with it, under `blkbench MIB
    latency`; a row of figures. kind godwit (mode "B": --ab's build) or qemu (mode: the
    mirror's copy mode)."""
    name = f"r{kind}-{mode}-{run}" if mode else f"r{kind}-{run}"
    src_img = os.path.join(workdir, f"{name}.img")
    subprocess.run(["cp", "--sparse=always", image, src_img], check=True)
    # On disk before the guest starts: QEMU flushes the image when it stops the VM for
    # the switch, and the copy's own dirty pages would lengthen its pause.
    subprocess.run(["sync", "-d", src_img], check=True)
    sock = os.path.join(workdir, f"{name}.sock")
    port, nport = free_port(), free_port()
    while nport == port:
        nport = free_port()
    cmd = f"blkbench {mib} latency"
    vm = dst = qmp = qdst = None
    dst_img = os.path.join(workdir, f"{name}-dst.img")
    ddir = None
    try:
        if kind == "godwit":
            vm = VM(kind, workdir, name, cmd, disk=src_img, extra=["--api", sock],
                    godwit=godwit)
        else:
            with open(dst_img, "wb") as f:
                f.truncate(mib * MiB)
            dsock = os.path.join(workdir, f"{name}-dst.qmp")
            vm = VM(kind, workdir, name, cmd, disk=src_img,
                    extra=["-qmp", f"unix:{sock},server=on,wait=off"])
            dst = VM(kind, workdir, f"{name}-dst", cmd, disk=dst_img,
                     extra=["-qmp", f"unix:{dsock},server=on,wait=off", "-incoming", "defer",
                            "-S"])
            qmp, qdst = QMP(sock), QMP(dsock)
            qdst.command("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
            qdst.command("nbd-server-start", addr={"type": "inet", "data": {
                "host": "127.0.0.1", "port": str(nport)}})
            qdst.command("nbd-server-add", device="d0", writable=True)
            qmp.command("migrate-set-parameters", **{"downtime-limit": QEMU_DOWNTIME_MS,
                                                     "max-bandwidth": QEMU_UNLIMITED_BW})
        wait_until(lambda: len(windows(vm)) >= 8, 60, f"{name}: latency windows")
        if kind == "godwit":
            dst, ddir, t0, t_disk, t_end, st = godwit_remote(name, workdir, sock, port,
                                                             godwit or GODWIT)
            dst_img = os.path.join(ddir, "moved.img")
            downtime, disk_sent = st["downtime_ms"], st["disk_bytes"]
        else:
            t0, t_disk, t_end, st, disk_sent = qemu_remote(vm, qmp, qdst, port, nport, mode)
            downtime = st.get("downtime")
        time.sleep(2)
        seed = vm.line_at(START_RX)
    except (RuntimeError, QMPError, OSError, ValueError, KeyError) as e:
        # What the VMM processes said goes with the error: a VMM that died says why.
        raise RuntimeError(f"{type(e).__name__}: {e}; " + "; ".join(
            f"{v.proc.name} (exit {v.proc.poll()}): {v.proc.stderr()[-800:]!r}"
            for v in (vm, dst) if v)) from e
    finally:
        for q in (qmp, qdst):
            if q:
                q.close()
        for v in (vm, dst):
            if v:
                v.stop()
    if seed is None:
        raise RuntimeError(f"{name}: no blkbench seed line")
    lines, n_src = lines_across(vm.tail, dst.tail)
    try:
        compared, rewritten = compare_images(src_img, dst_img, int(seed[1].group(4), 16))
    finally:
        for p in (src_img, dst_img):
            if os.path.exists(p):
                os.unlink(p)
        if ddir:
            shutil.rmtree(ddir, ignore_errors=True)
    ws = windows_in(lines)
    src_ws, dst_ws = [w for w in ws if w[4] < n_src], [w for w in ws if w[4] >= n_src]
    # Blocks the guest wrote on the destination: at most the writes its windows there
    # counted, and one window's worth more (the one the stop cut short).
    bound = sum(w[3] for w in dst_ws) + max((w[3] for w in ws), default=0)
    if rewritten > bound:
        raise RuntimeError(f"{name}: {rewritten} blocks differ, but the guest made at most "
                           f"{bound} writes on the destination")
    idle = [w for w in src_ws if ws[0][0] + 1 < w[0] < t0]
    during = [w for w in src_ws if t0 + 0.5 < w[0]]
    hi, hd = summed(idle), summed(during)
    # The pause as the guest's writes saw it (the slowest of the first window at the
    # destination) needs a guest clock that counts the pause; its output shows it
    # whatever the clock: the gap between the guest's last window line at the source
    # and its first at the destination, less the 500 ms a window lasts.
    gap = ((dst_ws[0][0] - src_ws[-1][0]) * 1000 - 500) if src_ws and dst_ws else None
    sw = dst_ws[0][2] if dst_ws else None
    return {"vmm": f"{kind}-{mode}" if mode else kind, "move_s": t_end - t0,
            "disk_s": t_disk - t0, "disk_mbps": data_bytes / 1e6 / max(t_disk - t0, 1e-3),
            "idle_n": sum(hi.values()), "during_n": sum(hd.values()),
            "idle_p50": percentile(hi, 0.5), "idle_p99": percentile(hi, 0.99),
            "during_p50": percentile(hd, 0.5), "during_p99": percentile(hd, 0.99),
            "during_max_us": max((w[2] for w in during), default=None),
            "switch_window_max_us": sw, "output_gap_ms": gap,
            "pause_seen_ms": max(x for x in (gap, sw / 1000 if sw is not None else None, 0)
                                 if x is not None),
            "vmm_downtime_ms": downtime, "disk_bytes_sent": disk_sent,
            "compared_bytes": compared, "rewritten_blocks": rewritten,
            "rewritten_bound": bound}


def remote_load(workdir, image, data_bytes, mib, runs, vmms, ab=None):
    """Each VMM's move without shared storage under load, side by side in every run,
    their order rotating from run to run."""
    order = []
    if "godwit" in vmms:
        order += [("godwit", None)] + ([("godwit", "B")] if ab else [])
    if "qemu" in vmms:
        order += [("qemu", "background"), ("qemu", "write-blocking")]
    rows = []
    for run in range(runs):
        for kind, mode in order[run % len(order):] + order[:run % len(order)]:
            print(f"without shared storage, under load: {kind} {mode or ''} run {run + 1}",
                  flush=True)
            label = f"{kind}-{mode}" if mode else kind
            try:
                row = under_load_remote(kind, workdir, image, mib, data_bytes, run + 1, mode,
                                        ab if mode == "B" else None)
            except RuntimeError as e:
                # A move that failed is a result too (reported, left out of the medians).
                print(f"  failed: {e}", flush=True)
                row = {"vmm": label, "error": str(e)[:3000]}
            row["vmm"] += f" #{run + 1}"
            rows.append(row)
    return rows


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


LATENCY_HEAD = ("idle p50 us | idle p99 us | during p50 us | during p99 us | p99 during/idle | "
                "writes idle/during | slowest write during (us)")


def latency_cells(r):
    """A row's guest write latency figures, the cells under LATENCY_HEAD."""
    p99_ratio = r["during_p99"] / r["idle_p99"] if r["idle_p99"] else 0
    return (f"{r['idle_p50']:.0f} | {r['idle_p99']:.0f} | {r['during_p50']:.0f} | "
            f"{r['during_p99']:.0f} | {p99_ratio:.2f} | {r['idle_n']}/{r['during_n']} | "
            f"{r['during_max_us']}")


def report_remote_load(rows):
    if not rows:
        return []
    failed = [r for r in rows if "error" in r]
    rows = [r for r in rows if "error" not in r]
    lines = ["", "## Without shared storage, under guest write load (loopback; blkbench "
             "latency: 4 KiB writes, one at a time)", "",
             f"| VMM | move s | image across s | disk MB/s | {LATENCY_HEAD} | "
             "slowest write, switch window (us) | guest output gap at the switch (ms) | "
             "VMM's downtime (ms) | image MiB sent | blocks the guest rewrote at the "
             "destination |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gap = "-" if r["output_gap_ms"] is None else f"{r['output_gap_ms']:.0f}"
        sent = "-" if r["disk_bytes_sent"] is None else f"{r['disk_bytes_sent'] / MiB:.0f}"
        lines.append(f"| {r['vmm']} | {r['move_s']:.2f} | {r['disk_s']:.2f} | "
                     f"{r['disk_mbps']:.0f} | {latency_cells(r)} | "
                     f"{r['switch_window_max_us']} | {gap} | {r['vmm_downtime_ms']} | "
                     f"{sent} | {r['rewritten_blocks']} |")
    by_vmm, runs = {}, {}
    for r in rows:
        v, run = r["vmm"].split(" #")
        by_vmm.setdefault(v, []).append(r)
        runs.setdefault(run, {})[v] = r
    lines += [] if not by_vmm else ["", "Medians: " + "; ".join(
        f"{v} move {median([r['move_s'] for r in rs]):.2f} s, image across "
        f"{median([r['disk_s'] for r in rs]):.2f} s ({median([r['disk_mbps'] for r in rs]):.0f}"
        f" MB/s), p99 during/idle "
        f"{median([r['during_p99'] / r['idle_p99'] for r in rs if r['idle_p99']]):.2f}x, pause "
        f"seen {median([r['pause_seen_ms'] for r in rs]):.0f} ms"
        for v, rs in by_vmm.items()) + "."]
    ratios = {}
    for rs in runs.values():
        if "godwit" in rs:
            for v, r in rs.items():
                if v != "godwit":
                    ratios.setdefault(v, []).append(r["move_s"] / rs["godwit"]["move_s"])
    if ratios:
        lines += ["", "Each run's time to finish over godwit's in the same run (above 1: "
                  "godwit faster): " + ", ".join(
                      f"{v} **{median(xs):.2f}x** ({' '.join(f'{x:.2f}' for x in xs)})"
                      for v, xs in ratios.items()) + "."]
    for r in failed:
        lines += ["", f"**{r['vmm']} failed**: {r['error']}"]
    lines += ["", "Time to finish: from the first command (godwit: `migrate --disk-to`; QEMU: "
              "blockdev-add of the NBD target on the source, the destination's NBD export "
              "set up before) to the destination running (godwit: the move's own total_ms, "
              "to the destination's word that it runs; QEMU: its `cont` returned). Image "
              "across: godwit's pass done (disk_copied = disk_size, polled every 100 ms, as "
              "`godwit migrate` asks), QEMU's BLOCK_JOB_READY; MB/s = the "
              "image's data bytes / that. Pause seen: the larger of the slowest guest write "
              "of the first window at the destination and the gap between the guest's "
              "last window line at the source and its first at the destination less "
              "500 ms (a guest clock that did not count the pause would hide it from the "
              "writes, not from the output). Each moved image was compared with the "
              "source's: equal but for blocks holding exactly what the guest writes there, "
              "at most as many as it wrote at the destination. Image MiB sent: godwit's "
              "disk_bytes (the pass and the mirrored writes; holes and zero blocks are not "
              "sent), QEMU's mirror job len at READY (what it copied, chunks the guest "
              "dirtied again included)."]
    return lines


def report(args, tp, loads, skipped, load0, remote_rows=(), rl_rows=()):
    flags = "".join(f" {f}" for f, on in (("--only-remote", args.only_remote),
                                          ("--only-load", args.only_load),
                                          ("--only-remote-load", args.only_remote_load))
                    if on)
    flags += f" --ab {args.ab}" if args.ab else ""
    head = ["# Moving a disk (bench/disk_move.py)", "",
            f"`bench/disk_move.py --mib {args.mib} --runs {args.runs}{flags}`, "
            f"{time.strftime('%Y-%m-%d %H:%M')}; {conditions()}; load average before: "
            f"{load0}; after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}."]
    if args.only_remote or args.only_remote_load:
        return "\n".join(head + report_remote(remote_rows) + report_remote_load(rl_rows)
                         + [""] + skipped) + "\n"
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
              f"| VMM | move s | {LATENCY_HEAD} | "
              "slowest write, switch window (us) | I/O held for the switch (us) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in loads:
        lines.append(f"| {r['vmm']} | {r['move_s']:.2f} | {latency_cells(r)} | "
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
    lines += report_remote(remote_rows) + report_remote_load(rl_rows)
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
    ap.add_argument("--remote-load", default=os.environ.get("DISK_MOVE_REMOTE_LOAD", "1"),
                    help="1: also the move without shared storage under guest load "
                    "against QEMU's (5.), 0: not")
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--only-remote", action="store_true",
                      help="only the move without shared storage, guest idle (3.)")
    only.add_argument("--only-load", action="store_true",
                      help="only the moves under guest load (2.)")
    only.add_argument("--only-remote-load", action="store_true",
                      help="only the move without shared storage under guest load (5.)")
    ap.add_argument("--ab", metavar="GODWIT", help="a second godwit build whose moves "
                    "alternate with build/godwit's run by run (4.)")
    args = ap.parse_args()
    some = args.only_remote or args.only_load or args.only_remote_load
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
        tp, loads, rem, rl = [], [], [], []
        if (args.remote == "1" and not some) or args.only_remote:
            rem = remote(workdir, image, data, args.runs, args.ab)
        if not some:
            tp = throughput(workdir, image, data, args.runs)
        for run in range(args.runs if not some or args.only_load else 0):
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
        if (args.remote_load == "1" and not some) or args.only_remote_load:
            rl = remote_load(workdir, image, data, args.mib, args.runs, vmms, args.ab)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = report(args, tp, loads, skipped, load0, rem, rl)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    print(json.dumps({"throughput": tp, "load": loads, "remote": rem, "remote_load": rl}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
