#!/usr/bin/python3
"""Disk and network throughput of the test guest, with the VMM's CPU cost (`make
bench-devices`; docs/devices.md, "Throughput").

Disk: the test guest's `blkbench MIB` on a fresh sparse raw image: sequential writes
(128 KiB requests, 16 in flight), one FLUSH, sequential reads of the same range, every
word checked. MB/s from the times the guest prints (its kvmclock).

Network: `netbench 192.0.2.50` on a tap in a namespace of tests/integration/netlab.py;
the host side is this script run again inside the host-a namespace (`net-client`), on
the bridge the tap hangs off. Three figures, each counted by the side that receives:
- receive (host -> guest): the host sends 1400-byte UDP datagrams to port 9 as fast as
  it can for N seconds; the guest counts those it received (port 10 tells the host);
  MB/s = guest-counted payload bytes / the host's sending time.
- transmit (guest -> host): the host asks port 19 for K datagrams of 1400 bytes; MB/s =
  payload bytes of the frames the tap received (the host kernel's rx_packets of the
  tap, polled every 2 ms) / host time from the request to the last of them. A Python
  reader cannot keep up with the guest (its socket drops most of them); the datagrams
  that reached the host's UDP layer, read or dropped, are reported as a cross-check.
- echo: the host keeps 64 datagrams of 1400 bytes in flight to port 7 (netecho's echo,
  one frame sent at a time by the guest); MB/s = echoed payload bytes the host received /
  the host's time (each byte crossed the device twice).

CPU: the VMM process's utime + stime from /proc/PID/task/*/stat, split into vCPU
threads (godwit `vcpu-N`, QEMU `CPU N/KVM`) and all others (device I/O threads, main
loop), per phase, as CPU seconds per GB (10^9 bytes) moved through the device. The
guest polls, so its vCPU is busy for the whole phase whatever the device costs.

QEMU (7.2, -accel kvm) runs the same guest side by side on `-M microvm` (virtio-mmio
devices, made modern with force-legacy=false): virtio-blk-device on the same kind of
image (cache=writeback, aio=threads), virtio-net-device on a tap (vhost off).

Python standard library only. Every process is started here and stopped by its PID; the
test network is removed even on failure; every loop and wait is bounded.
"""
import argparse
import errno
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import procmon  # noqa: E402

GODWIT = os.environ.get("GODWIT", os.path.join(ROOT, "build", "godwit"))
TESTGUEST = os.environ.get("GODWIT_TESTGUEST",
                           os.path.join(ROOT, "build", "guest", "testguest.elf"))
QEMU = os.environ.get("QEMU", "qemu-system-x86_64")
RESULTS = os.path.join(ROOT, "bench", "results", "DEVICES.md")

GUEST_IP = "192.0.2.50"
MAC = "52:54:00:12:34:56"
PAYLOAD = 1400
ECHO_WINDOW = 64

WRITE_RX = re.compile(r"^blkbench: write (\d+) MiB in (\d+) us \((\d+) kicks\)")
READ_RX = re.compile(r"^blkbench: read (\d+) MiB in (\d+) us \((\d+) kicks\), verified$")
FLUSH_RX = re.compile(r"^blkbench: flush in (\d+) us$")
START_RX = re.compile(r"^blkbench: virtio-blk at 0x[0-9a-f]+, features 0x[0-9a-f]+, "
                      r"capacity (\d+) sectors, requests of (\d+) KiB, depth (\d+), "
                      r"seed 0x([0-9a-f]+)$")
SENT_RX = re.compile(r"^netbench: sent (\d+) datagrams of (\d+) bytes in (\d+) us")


# ---- VMs ----

class VM:
    """A godwit or QEMU process running the test guest, its console tailed and its CPU
    sampled every 10 ms (the last sample before it exits is what a phase ending with the
    guest's exit is charged)."""

    def __init__(self, kind, workdir, name, cmdline, disk=None, tap=None, netns=None,
                 memory="256M", extra=(), godwit=None):
        self.kind = kind
        self.console = os.path.join(workdir, f"{name}.console")
        prefix = ["ip", "netns", "exec", netns] if netns else []
        if kind == "godwit":
            args = [godwit or GODWIT, "run", "--kernel", TESTGUEST, "--memory", memory, "--cpus", "1",
                    "--cmdline", cmdline, "--console", f"file:{self.console}"]
            if disk:
                args += ["--disk", disk]
            if tap:
                args += ["--net", f"tap={tap},mac={MAC}"]
        else:
            args = [QEMU, "-accel", "kvm", "-M", "microvm,auto-kernel-cmdline=off",
                    "-cpu", "host,-arch-capabilities", "-m", memory, "-smp", "1",
                    "-name", f"{name},debug-threads=on", "-kernel", TESTGUEST,
                    "-append", cmdline, "-display", "none", "-nodefaults", "-no-reboot",
                    "-serial", f"file:{self.console}",
                    "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                    "-global", "virtio-mmio.force-legacy=false"]
            if disk:
                args += ["-drive", f"if=none,id=d0,file={disk},format=raw,cache=writeback,"
                         "aio=threads", "-device", "virtio-blk-device,drive=d0"]
            if tap:
                args += ["-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no,"
                         "vhost=off", "-device", f"virtio-net-device,netdev=n0,mac={MAC}"]
        args += list(extra)
        self.proc = procmon.Proc(prefix + args, name, workdir)
        self.tail = procmon.ConsoleTail(self.console)
        self.samples = []  # (monotonic, total s, vcpu s)
        self.lock = threading.Lock()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._halt.wait(0.01):
            self.sample()

    def sample(self):
        with self.lock:
            now = time.monotonic()
            if self.proc.exit_code is None:
                snap = procmon.cpu_snapshot(self.proc.pid, self.kind)
                # A process on its way out (vCPU threads gone) keeps its last full sample.
                if snap is not None and snap[2] >= 1:
                    self.samples.append((now, snap[0], snap[1]))
            self.tail.poll(now)
            self.proc.poll()
            return self.samples[-1] if self.samples else None

    def cpu_at(self, t):
        """(total, vcpu) of the last sample taken at or before t (else the first)."""
        with self.lock:
            best = self.samples[0] if self.samples else (t, 0.0, 0.0)
            for s in self.samples:
                if s[0] > t:
                    break
                best = s
            return best[1], best[2]

    def line_at(self, rx):
        """(host time first seen, match) of the first console line matching rx, or None."""
        with self.lock:
            for t, text in self.tail.lines:
                m = rx.match(text)
                if m:
                    return t, m
        return None

    def wait_line(self, rx, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.line_at(rx)
            if found:
                return found
            if self.proc.poll() is not None:
                self.sample()
                found = self.line_at(rx)
                if found:
                    return found
                break
            time.sleep(0.01)
        raise RuntimeError(f"{self.kind}: no console line /{rx.pattern}/ within {timeout} s "
                           f"(exit {self.proc.poll()});\nconsole:\n{self.tail.text()[-2000:]}"
                           f"\nstderr:\n{self.proc.stderr()[-2000:]}")

    def exit_code(self, timeout):
        code = self.proc.wait(timeout)
        if code is None:
            raise RuntimeError(f"{self.kind} still running after {timeout} s")
        if self.kind == "qemu":  # isa-debug-exit: (CODE << 1) | 1
            return code >> 1 if code & 1 else -1
        return code

    def stop(self):
        self._halt.set()
        self._thread.join(timeout=5)
        self.proc.stop()
        self.tail.close()


def phase(name, vmm, bytes_moved, seconds, cpu0, cpu1, note=""):
    # Clock ticks: round away the float noise of the differences. The process's total and
    # its threads' are read one after the other, so "other" can come out a tick below 0.
    total, vcpu = round(cpu1[0] - cpu0[0], 6), round(cpu1[1] - cpu0[1], 6)
    total = max(total, vcpu)
    gb = bytes_moved / 1e9
    return {"phase": name, "vmm": vmm, "bytes": bytes_moved, "seconds": seconds,
            "mbps": bytes_moved / 1e6 / seconds if seconds > 0 else 0.0,
            "cpu_vcpu": vcpu, "cpu_other": round(total - vcpu, 6),
            "vcpu_per_gb": vcpu / gb if gb else 0.0,
            "other_per_gb": round(total - vcpu, 6) / gb if gb else 0.0, "note": note}


# ---- disk ----

def check_image(path, mib, seed):
    """Every word blkbench wrote is in the image (the host's own check of the write)."""
    golden, m64 = 0x9E3779B97F4A7C15, (1 << 64) - 1
    with open(path, "rb") as f:
        for sector in range(mib * 2048):
            want = struct.pack("<64Q", *(((sector * golden + j) & m64) ^ seed
                                         for j in range(64)))
            if f.read(512) != want:
                raise AssertionError(f"image sector {sector} is not what blkbench wrote")


def run_disk(kind, workdir, mib, verify_image=False, timeout=600, run=1):
    """blkbench MIB on a fresh sparse image of MIB + 16 MiB; returns (phases, console)."""
    image = os.path.join(workdir, f"{kind}-disk.img")
    with open(image, "wb") as f:
        f.truncate((mib + 16) << 20)
    vm = VM(kind, workdir, f"{kind}-blk-{run}", f"blkbench {mib}", disk=image)
    try:
        start_t, start = vm.wait_line(START_RX, 60)
        write_t, w = vm.wait_line(WRITE_RX, timeout)
        flush_t, fl = vm.wait_line(FLUSH_RX, timeout)
        read_t, r = vm.wait_line(READ_RX, timeout)
        code = vm.exit_code(30)
        vm.sample()
        if code != 0:
            raise RuntimeError(f"{kind}: blkbench exit code {code}:\n{vm.tail.text()[-2000:]}")
        if int(w.group(1)) != mib or int(r.group(1)) != mib:
            raise RuntimeError(f"{kind}: blkbench moved {w.group(1)}/{r.group(1)} MiB, "
                               f"not {mib}")
        seed = int(start.group(4), 16)
        if verify_image:
            check_image(image, mib, seed)
        nbytes = mib << 20
        out = [phase("disk write", kind, nbytes, int(w.group(2)) / 1e6, vm.cpu_at(start_t),
                     vm.cpu_at(write_t),
                     f"{start.group(2)} KiB requests, depth {start.group(3)}, to the host "
                     f"page cache of a sparse file; {w.group(3)} kicks"),
               phase("disk flush", kind, 0, int(fl.group(1)) / 1e6, vm.cpu_at(write_t),
                     vm.cpu_at(flush_t), "fdatasync of the written range"),
               phase("disk read", kind, nbytes, int(r.group(2)) / 1e6, vm.cpu_at(flush_t),
                     vm.cpu_at(read_t + 1e9),
                     f"from the host page cache, every word checked; {r.group(3)} kicks")]
        return out, vm.tail.text()
    finally:
        vm.stop()
        os.unlink(image)


# ---- network: the host side (run in the namespace, prints one JSON line) ----

def _sock(rcvbuf=32 << 20):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt, name in ((rcvbuf, "SO_RCVBUFFORCE"), (8 << 20, "SO_SNDBUFFORCE")):
        try:
            s.setsockopt(socket.SOL_SOCKET, getattr(socket, name),  opt)
        except (OSError, AttributeError):
            pass
    s.bind(("0.0.0.0", 0))
    return s


def _stats(s, ip):
    """The guest's port-10 counters: (datagrams, bytes, span ns, frames); None if no answer."""
    s.settimeout(0.5)
    for _ in range(10):
        s.sendto(b"stats", (ip, 10))
        try:
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                data, src = s.recvfrom(2048)
                if src == (ip, 10) and len(data) == 32:
                    return struct.unpack("!4Q", data)
        except socket.timeout:
            continue
    return None


def client_rx(ip, seconds):
    s = _sock()
    before = _stats(s, ip)
    if before is None:
        return {"error": "no answer from port 10 (stats)"}
    payload = bytearray(PAYLOAD)
    sent = dropped = 0
    t0 = time.monotonic()
    end = t0 + seconds
    s.setblocking(True)
    while True:
        for _ in range(256):
            struct.pack_into("!Q", payload, 0, sent)
            try:
                s.sendto(payload, (ip, 9))
                sent += 1
            except OSError as e:
                if e.errno not in (errno.ENOBUFS, errno.EAGAIN):
                    raise
                dropped += 1
        if time.monotonic() >= end:
            break
    t1 = time.monotonic()
    time.sleep(0.2)  # let what is queued towards the guest arrive
    after = _stats(s, ip)
    if after is None:
        return {"error": "no answer from port 10 (stats) after sending"}
    return {"sent": sent, "send_errors": dropped, "seconds": t1 - t0, "t0": t0, "t1": t1,
            "guest_datagrams": after[0] - before[0], "guest_bytes": after[1] - before[1],
            "guest_span_ns": after[2]}


def _udp_counters():
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return dict(zip(rows[0][1:], (int(x) for x in rows[1][1:])))


def _tap_rx(tap):
    with open(f"/sys/class/net/{tap}/statistics/rx_packets") as f:
        return int(f.read())


def client_tx(ip, count, tap, size=PAYLOAD):
    """Counted by the host kernel: frames the VMM wrote to the tap (its rx_packets),
    polled every 2 ms from the request until all COUNT arrived or none came for a second;
    and the datagrams that reached UDP for our socket (read or dropped for a full receive
    buffer: a Python reader is slower than the guest)."""
    s = _sock(rcvbuf=1 << 20)
    if _stats(s, ip) is None:
        return {"error": "no answer from port 10 (stats)"}
    udp0 = _udp_counters()
    base = _tap_rx(tap)
    t0 = time.monotonic()
    s.sendto(struct.pack("!II", count, size), (ip, 19))
    seen, last, stalled_at = 0, t0, t0
    deadline = t0 + 600
    while seen < count and time.monotonic() < deadline:
        time.sleep(0.002)
        n = _tap_rx(tap) - base
        now = time.monotonic()
        if n > seen:
            seen, last, stalled_at = n, now, now
        elif now - stalled_at > 1.0:
            break
    time.sleep(0.1)
    s.setblocking(False)
    for _ in range(100000):  # what still waits in the socket: InDatagrams counts reads
        try:
            s.recvfrom(4096)
        except BlockingIOError:
            break
    udp1 = _udp_counters()
    arrived = (udp1["InDatagrams"] - udp0["InDatagrams"]
               + udp1["RcvbufErrors"] - udp0["RcvbufErrors"])
    return {"requested": count, "frames": min(seen, count), "bytes": min(seen, count) * size,
            "udp_arrived": arrived, "seconds": last - t0, "t0": t0, "t1": last}


def client_echo(ip, seconds, window=ECHO_WINDOW):
    s = _sock()
    if _stats(s, ip) is None:
        return {"error": "no answer from port 10 (stats)"}
    s.setblocking(False)
    payload = bytearray(PAYLOAD)
    seq = echoed = nbytes = 0
    inflight = 0
    last_reply = t0 = time.monotonic()
    end = t0 + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        while inflight < window:
            struct.pack_into("!Q", payload, 0, seq)
            try:
                s.sendto(payload, (ip, 7))
            except BlockingIOError:
                break
            seq += 1
            inflight += 1
        progressed = False
        for _ in range(window):
            try:
                data, src = s.recvfrom(4096)
            except BlockingIOError:
                break
            if src == (ip, 7):
                echoed += 1
                nbytes += len(data)
                inflight = max(0, inflight - 1)
                progressed = True
        if progressed:
            last_reply = now
        elif now - last_reply > 0.2:  # the rest of the window was lost
            inflight = 0
            last_reply = now
    t1 = time.monotonic()
    return {"sent": seq, "echoed": echoed, "bytes": nbytes, "seconds": t1 - t0, "t0": t0,
            "t1": t1}


def net_client(argv):
    mode, ip, arg = argv[0], argv[1], float(argv[2])
    if mode == "rx":
        res = client_rx(ip, arg)
    elif mode == "tx":
        res = client_tx(ip, int(arg), argv[3])
    elif mode == "echo":
        res = client_echo(ip, arg)
    else:
        res = {"error": f"unknown mode {mode}"}
    print(json.dumps(res), flush=True)


# ---- network: the host side, driven from here ----

def client(lab, mode, arg, timeout):
    cmd = ["ip", "netns", "exec", lab.ns["host-a"], sys.executable, os.path.abspath(__file__),
           "net-client", mode, GUEST_IP, str(arg), lab.tap["host-a"]]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    if res.returncode != 0 or not res.stdout.strip():
        raise RuntimeError(f"net-client {mode}: exit {res.returncode}: {res.stderr[-2000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    if "error" in out:
        raise RuntimeError(f"net-client {mode}: {out['error']}")
    return out


def run_net(kind, workdir, lab, seconds, run=1):
    """netbench on a tap in host-a: receive, transmit and echo; returns (phases, raw)."""
    vm = VM(kind, workdir, f"{kind}-net-{run}", f"netbench {GUEST_IP}", tap=lab.tap["host-a"],
            netns=lab.ns["host-a"])
    raw = {}
    try:
        vm.wait_line(re.compile(r"^netbench: up mac="), 60)
        out = []
        # CLOCK_MONOTONIC is the same in every network namespace: the client's window
        # (t0, t1) picks the VMM's CPU samples.

        def cpu(r):
            time.sleep(0.05)  # a sample after t1
            return vm.cpu_at(r["t0"]), vm.cpu_at(r["t1"])

        rx = client(lab, "rx", seconds, seconds + 60)
        raw["rx"] = rx
        out.append(phase("net receive", kind, rx["guest_bytes"], rx["seconds"], *cpu(rx),
                         f"{rx['guest_datagrams']} of {rx['sent']} datagrams "
                         f"({PAYLOAD} B) reached the guest"))
        # Transmit: a short blast to size the real one at about `seconds`.
        probe = client(lab, "tx", 50000, 60)
        rate = probe["frames"] / max(probe["seconds"], 1e-3)
        count = int(max(20000, min(rate * seconds, 2_000_000)))
        vm.wait_line(SENT_RX, 10)
        n_sent = len([1 for _, t in vm.tail.lines if SENT_RX.match(t)])
        tx = client(lab, "tx", count, seconds * 10 + 60)
        raw["tx"] = tx
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = [t for _, t in vm.tail.lines if SENT_RX.match(t)]
            if len(lines) > n_sent:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{kind}: no second 'netbench: sent' line; tx {tx};\n"
                               f"console:\n{vm.tail.text()[-2000:]}")
        m = re.search(r"in (\d+) us \((\d+) kicks\)", lines[-1])
        raw["tx_guest_line"] = lines[-1]
        out.append(phase("net transmit", kind, tx["bytes"], tx["seconds"], *cpu(tx),
                         f"{tx['frames']} of {tx['requested']} datagrams ({PAYLOAD} B) "
                         f"reached the tap, {tx['udp_arrived']} the host's UDP; guest: sent "
                         f"in {int(m.group(1)) / 1e6:.2f} s, {m.group(2)} kicks"))
        echo = client(lab, "echo", seconds, seconds + 60)
        raw["echo"] = echo
        out.append(phase("net echo", kind, 2 * echo["bytes"], echo["seconds"], *cpu(echo),
                         f"{echo['echoed']} of {echo['sent']} datagrams ({PAYLOAD} B) "
                         f"echoed, {ECHO_WINDOW} in flight; MB/s counts both directions"))
        if vm.proc.poll() is not None:
            raise RuntimeError(f"{kind} exited during the network run:\n{vm.tail.text()}")
        return out, raw
    finally:
        vm.stop()


# ---- report ----

def summarize(rows):
    """One row per (phase, VMM): the run with the median MB/s (its CPU figures and notes),
    with the lowest and highest MB/s of all runs."""
    groups = {}
    for r in rows:
        groups.setdefault((r["phase"], r["vmm"]), []).append(r)
    out = []
    for runs in groups.values():
        key = "mbps" if runs[0]["bytes"] else "seconds"
        runs = sorted(runs, key=lambda r: r[key])
        mid = dict(runs[(len(runs) - 1) // 2])
        mid["runs"] = len(runs)
        mid["range"] = (runs[0][key], runs[-1][key])
        out.append(mid)
    return out


def table(rows):
    lines = ["| phase | VMM | MB/s (median) | lowest..highest | CPU s/GB: vCPU threads | "
             "CPU s/GB: other threads | s | notes (median run) |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lo, hi = r.get("range", (None, None))
        if r["bytes"]:
            per = (f"{r['vcpu_per_gb']:.2f}", f"{r['other_per_gb']:.2f}")
            rng = f"{lo:.0f}..{hi:.0f}" if lo is not None else ""
            mbps = f"{r['mbps']:.0f}"
        else:  # flush: no bytes, CPU seconds and times instead
            per = (f"({r['cpu_vcpu']:.2f} s)", f"({r['cpu_other']:.2f} s)")
            rng = f"{lo:.3f}..{hi:.3f} s" if lo is not None else ""
            mbps = "-"
        lines.append(f"| {r['phase']} | {r['vmm']} | {mbps} | {rng} | {per[0]} | {per[1]} | "
                     f"{r['seconds']:.3f} | {r['note']} |")
    return "\n".join(lines)


def qemu_missing():
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed"
    r = subprocess.run([QEMU, "-machine", "help"], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    if not re.search(r"^microvm\b", r.stdout, re.M):
        return "QEMU has no microvm machine"
    return None


def conditions():
    def first(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                               stdin=subprocess.DEVNULL)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "?"
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    kvm = "kvm_pvm" if os.path.exists("/sys/module/kvm_pvm") else "kvm"
    return (f"host: {os.cpu_count()} CPUs ({model}), kernel {os.uname().release}, /dev/kvm "
            f"from {kvm}; {first([QEMU, '--version'])}; guest: 1 vCPU, 256 MiB")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "net-client":
        net_client(sys.argv[2:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--disk-mib", type=int, default=int(os.environ.get("DEVICES_DISK_MIB",
                                                                       "1024")))
    ap.add_argument("--net-seconds", type=float,
                    default=float(os.environ.get("DEVICES_NET_SECONDS", "5")))
    ap.add_argument("--vmms", default=os.environ.get("DEVICES_VMMS", "godwit,qemu"))
    ap.add_argument("--runs", type=int, default=int(os.environ.get("DEVICES_RUNS", "3")))
    ap.add_argument("--out", default=RESULTS)
    ap.add_argument("--no-net", action="store_true")
    ap.add_argument("--no-disk", action="store_true")
    args = ap.parse_args()

    vmms = [v for v in args.vmms.split(",") if v]
    skipped = []
    if "qemu" in vmms:
        why = qemu_missing()
        if why:
            vmms.remove("qemu")
            skipped.append(f"QEMU skipped: {why}")
    rows = []
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    workdir = tempfile.mkdtemp(prefix="godwit-devices-")
    try:
        if not args.no_disk:
            for run in range(args.runs):
                for kind in vmms:
                    print(f"disk: {kind}, blkbench {args.disk_mib}, run {run + 1}", flush=True)
                    rows += run_disk(kind, workdir, args.disk_mib, run=run + 1)[0]
        if not args.no_net:
            if os.geteuid() != 0:
                skipped.append("network skipped: the test network needs root")
            else:
                from netlab import NetLab
                lab = NetLab()
                try:
                    lab.up()
                    for run in range(args.runs):
                        for kind in vmms:
                            print(f"network: {kind}, {args.net_seconds} s per figure, run "
                                  f"{run + 1}", flush=True)
                            rows += run_net(kind, workdir, lab, args.net_seconds,
                                            run=run + 1)[0]
                finally:
                    lab.down()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    text = ("# Device throughput (bench/devices.py)\n\n"
            f"`bench/devices.py --disk-mib {args.disk_mib} --net-seconds {args.net_seconds} "
            f"--runs {args.runs}`, {time.strftime('%Y-%m-%d %H:%M')}; {conditions()}; "
            f"load average before: {load0}.\n\n" + table(summarize(rows)) + "\n\n"
            "MB = 10^6 bytes, GB = 10^9 bytes. CPU: utime + stime of the VMM's threads over "
            "the phase; the guest polls, so its vCPU thread is busy for the whole phase.\n")
    for s in skipped:
        text += f"\n{s}\n"
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
