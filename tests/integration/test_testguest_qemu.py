"""The test guest, proved on its own: boot build/guest/testguest.elf under QEMU TCG.

These tests do not involve godwit. They check that the guest boots through PVH with
1, 2 and 4 vCPUs, that each workload does what guest/testguest/README.md says, and
that the exit port and the error paths give the documented exit codes. QEMU's
isa-debug-exit turns a write of CODE into the exit status (CODE << 1) | 1.
The virtio workloads (blklog, netecho) run on QEMU's microvm machine, whose virtio-mmio
devices the guest finds by probing; netecho's network is a UDP socket of the test.
"""
import functools
import os
import pathlib
import queue
import re
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
GUEST_ELF = REPO_ROOT / "build" / "guest" / "testguest.elf"
QEMU = shutil.which("qemu-system-x86_64")

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed"),
    pytest.mark.skipif(not GUEST_ELF.exists(), reason=f"{GUEST_ELF} missing: run `make guest`"),
]


def qemu_status(code):
    """QEMU's exit status when the guest writes CODE to isa-debug-exit."""
    return ((code << 1) | 1) & 0xFF


class Guest:
    """One QEMU process running the test guest, its serial console read line by line."""

    def __init__(self, cmdline, smp=1, mem="256M", extra=(), machine="pc"):
        self.lines = []
        self._q = queue.Queue()
        args = [
            QEMU, "-accel", "tcg", "-M", machine, "-cpu", "max", "-smp", str(smp), "-m", mem,
            "-kernel", str(GUEST_ELF), "-append", cmdline, "-display", "none",
            "-serial", "stdio", "-no-reboot", "-nodefaults",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", *extra,
        ]
        self.start = time.monotonic()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, errors="replace")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self._q.put((time.monotonic(), line.rstrip("\n")))
        self._q.put(None)

    def _next(self, deadline):
        """Next console line before deadline, or None at EOF/timeout."""
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            return None
        try:
            item = self._q.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is None:
            self._q.put(None)  # keep EOF visible to later calls
            return None
        self.lines.append(item)
        return item[1]

    def wait_for(self, pattern, timeout=20.0):
        """Returns the match of the first new line matching pattern; fails on timeout."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            line = self._next(deadline)
            if line is None:
                raise AssertionError(f"no line matching {pattern!r} within {timeout}s; "
                                     f"console so far:\n{self.console()}")
            m = rx.search(line)
            if m:
                return m

    def collect_until(self, done, timeout=20.0):
        """Reads lines until done(lines) is true; fails on timeout or EOF."""
        deadline = time.monotonic() + timeout
        while not done([line for _, line in self.lines]):
            if self._next(deadline) is None:
                raise AssertionError(f"condition not met within {timeout}s; console so far:\n"
                                     f"{self.console()}")

    def wait_exit(self, timeout=20.0):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"QEMU still running after {timeout}s; console:\n"
                                 f"{self.console()}")
        self._reader.join(timeout=5)
        while self._next(time.monotonic() + 0.5) is not None:
            pass
        return rc

    def console(self):
        return "\n".join(line for _, line in self.lines)

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, 9)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


@pytest.fixture
def guest():
    started = []

    def start(cmdline, **kw):
        g = Guest(cmdline, **kw)
        started.append(g)
        return g

    yield start
    for g in started:
        g.kill()


def parse(lines, pattern):
    rx = re.compile(pattern)
    return [m for m in (rx.search(line) for line in lines) if m]


def check_header(g, nvcpus, cmdline):
    m = g.wait_for(r"^testguest: (\d+) vcpus, RAM (\d+) MiB, cmdline '(.*)'$", timeout=30)
    assert int(m.group(1)) == nvcpus
    assert 200 <= int(m.group(2)) <= 256
    assert m.group(3) == cmdline
    g.wait_for(r"^testguest: clock=(kvmclock|tsc-pit)", timeout=10)


# One workload per vCPU; each must show it is alive on its own vCPU.
BOOT_CASES = {
    1: "memtouch 16M",
    2: "heartbeat 200; memtouch 16M",
    4: "heartbeat 200 ; ticks 100;memtouch 8M  ;  memtouch 4M 100",
}
ALIVE = {
    "memtouch": r"^memtouch: pass (\d+) ok cpu={cpu}\b",
    "heartbeat": r"^hb (\d+) (\d+)$",  # the line does not name its vCPU
    "ticks": r"^ticks cpu={cpu} count=([1-9]\d*)$",
}


@pytest.mark.parametrize("nvcpus", sorted(BOOT_CASES))
def test_boot_every_vcpu_runs_its_workload(guest, nvcpus):
    cmdline = BOOT_CASES[nvcpus]
    g = guest(cmdline, smp=nvcpus)
    check_header(g, nvcpus, cmdline)
    names = [seg.split()[0] for seg in cmdline.split(";")]
    pats = [re.compile(ALIVE[name].format(cpu=cpu)) for cpu, name in enumerate(names)]
    g.collect_until(lambda lines: all(any(p.search(l) for l in lines) for p in pats), timeout=30)
    assert not parse((l for _, l in g.lines), r"ERROR|exception|error:")


def test_memtouch_passes_without_errors(guest):
    g = guest("memtouch 32M; memtouch 16M 200", smp=2)
    check_header(g, 2, "memtouch 32M; memtouch 16M 200")

    def passes(lines, cpu):
        return [int(m.group(1)) for m in parse(lines, rf"^memtouch: pass (\d+) ok cpu={cpu}\b")]

    g.collect_until(lambda ls: len(passes(ls, 0)) >= 3 and max(passes(ls, 1), default=0) >= 4,
                    timeout=40)
    lines = [l for _, l in g.lines]
    assert not parse(lines, r"ERROR|FAILED|exception")
    for cpu in (0, 1):
        p = passes(lines, cpu)
        assert p == sorted(p) and p[0] == 1
    # The ranges of the two vCPUs are disjoint and above the guest image (1 MiB + ~4 MiB).
    ranges = {int(m.group(1)): (int(m.group(3), 16), int(m.group(2)) * 1024)
              for m in parse(lines, r"^memtouch: cpu=(\d+) (\d+) KiB in \d+ range\(s\) "
                                    r"from 0x([0-9a-f]+)")}
    (s0, n0), (s1, n1) = ranges[0], ranges[1]
    assert n0 == 32 << 20 and n1 == 16 << 20
    assert s0 >= 1 << 20 and s1 >= 1 << 20
    assert s0 + n0 <= s1 or s1 + n1 <= s0
    # The paced vCPU dirties at most about 200 MB/s (generous: scheduling noise).
    rates = [int(m.group(1)) for m in parse(lines, r"^memtouch: pass \d+ ok cpu=1 rate=(\d+) MB/s")]
    assert max(rates[1:] or rates) <= 300, rates


def test_memtouch_random_passes_without_errors(guest):
    g = guest("memtouch 8M random; memtouch 4M 100 random", smp=2)
    check_header(g, 2, "memtouch 8M random; memtouch 4M 100 random")

    def passes(lines, cpu):
        return [int(m.group(1)) for m in parse(lines, rf"^memtouch: pass (\d+) ok cpu={cpu}\b")]

    g.collect_until(lambda ls: max(passes(ls, 0), default=0) >= 3
                    and max(passes(ls, 1), default=0) >= 3, timeout=60)
    lines = [l for _, l in g.lines]
    assert not parse(lines, r"ERROR|FAILED|exception")
    for cpu, how in ((0, "unpaced"), (1, "paced at 100 MB/s")):
        assert parse(lines, rf"^memtouch: cpu={cpu} \d+ KiB in 1 range\(s\) from 0x[0-9a-f]+, "
                            rf"{how}, random pages$"), lines


class GdbStub:
    """Just enough of the GDB remote protocol to write guest memory through QEMU's -gdb."""

    def __init__(self, path, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.buf = b""

    def _recv_packet(self):
        while True:
            start = self.buf.find(b"$")
            end = self.buf.find(b"#", start + 1) if start >= 0 else -1
            if start >= 0 and end >= 0 and len(self.buf) >= end + 3:
                data = self.buf[start + 1:end]
                self.buf = self.buf[end + 3:]
                self.sock.sendall(b"+")
                return data.decode()
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("gdbstub closed the connection")
            self.buf += chunk

    def command(self, data):
        """Sends a packet; returns the first reply that is not a stop notification."""
        csum = sum(data.encode()) & 0xFF
        self.sock.sendall(b"$%s#%02x" % (data.encode(), csum))
        while True:
            reply = self._recv_packet()
            if data == "?" or not reply.startswith(("T", "S")):
                return reply

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("mode,offset", [("", 0), (" random", 1232)])
def test_memtouch_reports_a_corrupted_page(guest, tmp_path, mode, offset):
    """The checker is not vacuous: a page changed behind the guest's back is reported.
    The default pattern checks a page's first and last word; random mode every word,
    so the change goes into the middle of the page there."""
    sock = str(tmp_path / "gdb.sock")
    g = guest(f"memtouch 4M{mode}", extra=("-gdb", f"unix:{sock},server=on,wait=off"))
    m = g.wait_for(r"^memtouch: cpu=0 4096 KiB in 1 range\(s\) from 0x([0-9a-f]+)", timeout=30)
    bad = int(m.group(1), 16) + 100 * 4096 + offset
    g.wait_for(r"^memtouch: pass ([3-9]|\d\d+) ok cpu=0", timeout=30)
    stub = GdbStub(sock)
    try:
        stub.command("?")  # QEMU stops the VM when the debugger attaches
        assert stub.command(f"M{bad:x},8:efbeaddeefbeadde") == "OK"
        assert stub.command("D") == "OK"  # detach: the VM runs on
    finally:
        stub.close()
    m = g.wait_for(r"^memtouch: ERROR gpa=0x([0-9a-f]+) expected 0x([0-9a-f]+) "
                   r"found 0x([0-9a-f]+) cpu=0", timeout=30)
    assert int(m.group(1), 16) == bad
    assert int(m.group(3), 16) == 0xDEADBEEFDEADBEEF
    g.wait_for(r"^memtouch: pass \d+ FAILED errors=1 cpu=0", timeout=30)
    g.wait_for(r"^memtouch: pass \d+ ok cpu=0", timeout=30)  # and it keeps going


def test_heartbeat_rate(guest):
    g = guest("heartbeat 100")
    check_header(g, 1, "heartbeat 100")
    t0 = time.monotonic()
    g.collect_until(lambda ls: len(parse(ls, r"^hb \d+")) >= 21, timeout=30)
    wall = time.monotonic() - t0
    beats = [(int(m.group(1)), int(m.group(2))) for m in parse([l for _, l in g.lines],
                                                                 r"^hb (\d+) (\d+)$")]
    assert [s for s, _ in beats] == list(range(len(beats)))
    ns = [n for _, n in beats]
    assert all(b > a for a, b in zip(ns, ns[1:])), ns
    for seq, n in beats:
        elapsed = n - ns[0]
        # Never early (deadlines are absolute); late by at most a generous margin.
        assert elapsed >= seq * 100e6 * 0.98, (seq, elapsed)
        assert elapsed <= seq * 100e6 * 3 + 1e9, (seq, elapsed)
    # ~2 s of beats (20 periods) should not take wildly longer on the wall clock.
    assert 1.0 <= wall <= 10.0, wall


def test_ticks_count_up(guest):
    g = guest("ticks 100; ticks 50", smp=2)
    check_header(g, 2, "ticks 100; ticks 50")

    def counts(lines, cpu):
        return [int(m.group(1)) for m in parse(lines, rf"^ticks cpu={cpu} count=(\d+)$")]

    g.collect_until(lambda ls: len(counts(ls, 0)) >= 3 and len(counts(ls, 1)) >= 3, timeout=30)
    lines = [l for _, l in g.lines]
    for cpu, hz in ((0, 100), (1, 50)):
        c = counts(lines, cpu)
        assert all(b > a for a, b in zip(c, c[1:])), c
        # One line per second of guest time, so about HZ more per line; generous bounds:
        # TCG drops periodic ticks when the host is busy, and a late line makes one
        # interval longer and the next shorter.
        mean = (c[-1] - c[0]) / (len(c) - 1)
        assert 0.2 * hz <= mean <= 1.5 * hz, (hz, c)


@pytest.mark.parametrize("cmdline,smp,code", [
    ("exit 3", 1, 3),
    ("  exit   0  ", 1, 0),
    ("heartbeat 100; exit 9", 2, 9),  # any vCPU may end the VM
])
def test_exit_port(guest, cmdline, smp, code):
    g = guest(cmdline, smp=smp)
    assert g.wait_exit(timeout=30) == qemu_status(code)
    assert parse([l for _, l in g.lines], rf"^testguest: exit {code} from cpu=\d+$")


@pytest.mark.parametrize("mode", ["iopl", "bitmap", "pvh-tr", "reset-tr"])
def test_ring3_outb(guest, mode):
    """As the SDM says: IOPL 3 lets ring 3 use every port whatever TR holds (no bitmap
    read at all), and with IOPL 0 the TSS's bitmap decides. On kvm_pvm the first and
    the third fault (test_testguest_kvm.py)."""
    g = guest(f"ioport {mode}")
    assert g.wait_exit(timeout=30) == qemu_status(90), [l for _, l in g.lines]


@pytest.mark.parametrize("cmdline,smp,what", [
    ("bogus 1", 1, "unknown workload 'bogus'"),
    ("ioport", 1, "ioport on vcpu 0 takes"),
    ("ioport iopl3", 1, "ioport: unknown mode 'iopl3'"),
    ("memtouch 12X", 1, "bad memtouch size '12X'"),
    ("heartbeat", 1, "heartbeat on vcpu 0 takes"),
    ("heartbeat 0", 1, "bad heartbeat period"),
    ("ticks fast", 1, "bad ticks rate"),
    ("exit 256", 1, "bad exit code '256'"),
    ("memtouch 1M 5 6", 1, "memtouch on vcpu 0 takes"),
    ("memtouch 1M 5 6 random", 1, "memtouch on vcpu 0 takes 1..2 arguments and an optional last word 'random'"),
    ("memtouch 1M random 5", 1, "an optional last word 'random'"),
    ("memtouch random", 1, "bad memtouch size 'random'"),
    ("heartbeat 10; heartbeat 10", 1, "more workloads than vcpus"),
    ("memtouch 64M; memtouch 64M; memtouch 64M", 2, "more workloads than vcpus"),
    ("memtouch 1G", 1, "not enough RAM"),
    ("memtouch 200M; memtouch 100M", 2, "not enough RAM"),
    ("netecho", 1, "netecho on vcpu 0 takes"),
    ("netecho 192.0.2", 1, "bad IPv4 address '192.0.2'"),
    ("netecho 192.0.2.256", 1, "bad IPv4 address"),
    ("netecho 192.0.2.1x", 1, "bad IPv4 address"),
    ("blklog 0", 1, "bad blklog records per write"),
    ("blklog 65", 1, "bad blklog records per write"),
    ("blklog 8 0", 1, "bad blklog records per second"),
    ("blklog 8 100 1", 1, "blklog on vcpu 0 takes 0..2 arguments"),
    ("blkbench", 1, "blkbench on vcpu 0 takes"),
    ("blkbench 0", 1, "bad blkbench size"),
    ("blkbench 4 fast", 1, "the second word is 'latency' or nothing, not 'fast'"),
    ("blkbench 4 latency 2", 1, "blkbench on vcpu 0 takes 1..2 arguments"),
    ("netbench 192.0.2", 1, "bad IPv4 address '192.0.2' for netbench"),
    ("blklog; blkbench 8", 2, "at most one netecho or netbench and one blklog or blkbench"),
    ("netecho 192.0.2.10; netbench 192.0.2.11", 2, "at most one netecho or netbench"),
    ("netecho 192.0.2.10; netecho 192.0.2.11", 2, "at most one netecho"),
    # The pc machine has no virtio-mmio devices: both windows are probed, none found.
    ("netecho 192.0.2.10", 1, "no virtio-net device"),
    ("blklog", 1, "no virtio-blk device"),
])
def test_bad_cmdline_exits_2(guest, cmdline, smp, what):
    g = guest(cmdline, smp=smp)
    assert g.wait_exit(timeout=30) == qemu_status(2)
    errors = parse([l for _, l in g.lines], r"^testguest: error: (.*)$")
    assert len(errors) == 1 and what in errors[0].group(1), g.console()


def test_exception_reports_and_exits_99(guest):
    g = guest("fault")
    assert g.wait_exit(timeout=30) == qemu_status(99)
    m = parse([l for _, l in g.lines], r"^testguest: exception vector=(\d+) \(#PF\) rip=0x[0-9a-f]+ "
                                       r"error=0x([0-9a-f]+) cr2=0x([0-9a-f]+) .*ring=3 cpu=0$")
    assert m, g.console()
    assert int(m[0].group(1)) == 14 and int(m[0].group(3), 16) == 0x8000000000


def test_idle_vcpus_and_time_to_first_line(guest):
    """vCPUs without a workload halt quietly; the first line comes quickly."""
    g = guest("; heartbeat 100", smp=4)
    m = g.wait_for(r"^testguest: 4 vcpus", timeout=30)
    first = g.lines[0][0] - g.start
    assert m and first < 15, first
    g.collect_until(lambda ls: len(parse(ls, r"^hb \d+ \d+$")) >= 3, timeout=30)
    lines = [l for _, l in g.lines]
    assert not parse(lines, r"cpu=[023]\b")
    assert parse(lines, r"^testguest: no workload for vcpu 0")


def test_no_acpi_falls_back_to_one_vcpu(guest):
    """Without an RSDP (rsdp_paddr 0) the guest cannot count vCPUs: it uses only vCPU 0."""
    g = guest("heartbeat 100", smp=2, machine="pc,acpi=off")
    check_header(g, 1, "heartbeat 100")
    g.wait_for(r"^hb 2 \d+$", timeout=30)


# ---- virtio workloads (netecho, blklog) on QEMU's microvm machine ----
#
# microvm boots the same PVH ELF and has virtio-mmio transports at 0xfeb00000 + i * 0x200
# (the guest probes godwit's window 0xd0000000 + i * 0x1000 too). QEMU makes its
# virtio-mmio devices legacy (version 1) unless told otherwise, and by default appends
# "virtio_mmio.device=..." to the command line, which the guest would take for a workload.

MICROVM = "microvm,auto-kernel-cmdline=off"
MODERN = ("-global", "virtio-mmio.force-legacy=false")


@functools.lru_cache(maxsize=None)
def microvm_missing():
    """Why QEMU cannot run the virtio tests here, or None."""
    def out(*args):
        r = subprocess.run([QEMU, *args], stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=30)
        return r.stdout + r.stderr
    if not re.search(r"^microvm\b", out("-machine", "help"), re.M):
        return "QEMU has no microvm machine"
    devices = out("-device", "help")
    for dev in ("virtio-blk-device", "virtio-net-device"):
        if f'"{dev}"' not in devices:
            return f"QEMU has no {dev}"
    if "socket" not in out("-netdev", "help"):
        return "QEMU has no socket netdev"
    return None


@pytest.fixture
def microvm(guest):
    reason = microvm_missing()
    if reason:
        pytest.skip(reason)

    def start(cmdline, extra=(), **kw):
        return guest(cmdline, machine=MICROVM, extra=(*MODERN, *extra), **kw)

    return start


def blk_args(image, n=0):
    return ("-drive", f"if=none,id=d{n},file={image},format=raw,cache=writeback",
            "-device", f"virtio-blk-device,drive=d{n}")


# The record format of guest/testguest/blklog.c (README: `blklog`).
SECTOR = 512
M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def record_valid(buf, k):
    w = struct.unpack("<64Q", buf)
    if w[0] != 0x474F44574C4F4721 or w[1] != k:
        return False
    h = 0xCBF29CE484222325
    for j, x in enumerate(w):
        h = ((h ^ (0 if j == 2 else x)) * 0x100000001B3) & M64
    return h == w[2] and all(w[j] == (k * GOLDEN + j) & M64 for j in range(3, 64))


def check_image(path, acked):
    """Records 0..acked (included) valid and in place; returns the length of the valid
    prefix.

    Nothing after the prefix may have been written: the rest of the image is zeros."""
    data = pathlib.Path(path).read_bytes()
    n = len(data) // SECTOR
    prefix = 0
    while prefix < n and record_valid(data[prefix * SECTOR:(prefix + 1) * SECTOR], prefix):
        prefix += 1
    assert prefix > acked, f"record {acked} acked but only {prefix} records are valid on the disk"
    rest = data[(prefix + 1) * SECTOR:]  # the sector after the prefix may be a torn write
    assert rest.count(0) == len(rest), "data written beyond the record after the prefix"
    return prefix


def acked_numbers(g):
    return [int(m.group(1)) for m in parse([l for _, l in g.lines], r"^blklog: acked (\d+)$")]


def test_blklog_acked_records_are_on_disk(microvm, tmp_path):
    image = tmp_path / "disk.img"
    # 65536 records: TCG has written 5100 in the time this test waits, so the disk cannot
    # fill up before the second run has acked a few batches.
    image.write_bytes(bytes(32 << 20))
    g = microvm("blklog", extra=blk_args(image))
    g.wait_for(r"^blklog: virtio-blk at 0x[0-9a-f]+, features 0x[0-9a-f]+, "
               r"capacity 65536 sectors, flush on$", timeout=30)
    g.wait_for(r"^blklog: found 0 valid records, continuing at record 0$", timeout=30)
    g.collect_until(lambda ls: len(parse(ls, r"^blklog: acked [1-9]")) >= 6, timeout=60)
    g.kill()  # SIGKILL mid-stream: no chance to finish anything
    acked = acked_numbers(g)
    assert acked == sorted(acked) and len(set(acked)) == len(acked), acked
    prefix = check_image(image, acked[-1])
    assert not parse([l for _, l in g.lines], r"error|exception")

    # A second run on the same disk carries on after the records it finds.
    g2 = microvm("blklog 4", extra=blk_args(image))
    m = g2.wait_for(r"^blklog: found (\d+) valid records, continuing at record (\d+)$",
                    timeout=30)
    assert int(m.group(1)) == int(m.group(2)) == prefix
    m = g2.wait_for(r"^blklog: acked (\d+)$", timeout=30)
    assert int(m.group(1)) >= prefix
    g2.collect_until(lambda ls: len(parse(ls, r"^blklog: acked")) >= 3
                     or parse(ls, r"^blklog: disk full"), timeout=60)
    g2.kill()
    check_image(image, acked_numbers(g2)[-1])


def test_blklog_paced_writes_no_faster_than_its_rate(microvm, tmp_path):
    """`blklog 2 200`: at most 200 records a second (unpaced, TCG writes thousands in the
    time this test waits), so never more than the host's elapsed time allows."""
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(8 << 20))
    g = microvm("blklog 2 200", extra=blk_args(image))
    g.wait_for(r"^blklog: found 0 valid records, continuing at record 0$", timeout=30)
    start = time.monotonic()
    g.collect_until(lambda ls: len(parse(ls, r"^blklog: acked")) >= 6, timeout=60)
    elapsed = time.monotonic() - start
    g.kill()
    acked = acked_numbers(g)
    # The first line may have been seen late (a busy host): a second of slack.
    assert acked[-1] + 1 <= 200 * (elapsed + 1), (acked, elapsed)
    check_image(image, acked[-1])


def test_blklog_stops_when_the_disk_is_full(microvm, tmp_path):
    image = tmp_path / "small.img"
    image.write_bytes(bytes(64 * SECTOR))
    g = microvm("blklog 5; heartbeat 200", smp=2, extra=blk_args(image))  # 5 does not divide 64
    g.wait_for(r"^blklog: disk full at 64$", timeout=60)
    assert acked_numbers(g)[-1] == 63
    g.wait_for(r"^hb \d+ \d+$", timeout=30)  # the other vCPU runs on
    g.kill()
    assert check_image(image, 63) == 64
    g2 = microvm("blklog", extra=blk_args(image))
    g2.wait_for(r"^blklog: found 64 valid records, continuing at record 64$", timeout=30)
    g2.wait_for(r"^blklog: disk full at 64$", timeout=10)
    assert not acked_numbers(g2)


def blkbench_image_ok(path, mib, seed):
    """Every word blkbench wrote is in the image (README: `blkbench`)."""
    data = pathlib.Path(path).read_bytes()
    for sector in range(mib * 2048):
        w = struct.unpack_from("<64Q", data, sector * SECTOR)
        if any(w[j] != ((sector * GOLDEN + j) & M64) ^ seed for j in range(64)):
            return False
    return True


def test_blkbench_writes_flushes_and_reads_back(microvm, tmp_path):
    image = tmp_path / "disk.img"
    image.write_bytes(b"\xa5" * (5 << 20))  # stale data: must not pass for the pattern
    g = microvm("blkbench 4", extra=blk_args(image))
    m = g.wait_for(r"^blkbench: virtio-blk at 0x[0-9a-f]+, features 0x[0-9a-f]+, capacity "
                   r"10240 sectors, requests of 128 KiB, depth 16, seed 0x([0-9a-f]+)$",
                   timeout=30)
    seed = int(m.group(1), 16)
    g.wait_for(r"^blkbench: write 4 MiB in \d+ us \(\d+ kicks\)$", timeout=60)
    g.wait_for(r"^blkbench: flush in \d+ us$", timeout=30)
    g.wait_for(r"^blkbench: read 4 MiB in \d+ us \(\d+ kicks\), verified$", timeout=60)
    g.wait_for(r"^blkbench: done$", timeout=10)
    assert g.wait_exit(timeout=30) == qemu_status(0)
    assert blkbench_image_ok(image, 4, seed)
    assert image.read_bytes()[4 << 20:] == b"\xa5" * (1 << 20)  # nothing written beyond


def test_blkbench_latency_counts_every_write_it_makes(microvm, tmp_path):
    """`blkbench MIB latency`: each window's histogram holds its n writes, and every 4 KiB
    block of the first MIB MiB is either untouched or holds blkbench's pattern."""
    image = tmp_path / "disk.img"
    image.write_bytes(b"\xa5" * (5 << 20))
    g = microvm("blkbench 4 latency", extra=blk_args(image))
    m = g.wait_for(r"^blkbench: virtio-blk at .* seed 0x([0-9a-f]+)$", timeout=30)
    seed = int(m.group(1), 16)
    for _ in range(3):
        g.wait_for(r"^blkbench: lat n \d+ max \d+ us$", timeout=60)
    g.kill()
    total, windows = 0, 0
    for _, line in g.lines:
        h = re.match(r"^blkbench: lat h((?: \d+:\d+)+)$", line)
        if h:
            total += sum(int(p.split(":")[1]) for p in h.group(1).split())
        w = re.match(r"^blkbench: lat n (\d+) max (\d+) us$", line)
        if w:
            assert total == int(w.group(1)) > 0, g.console()
            total, windows = 0, windows + 1
    assert windows >= 3
    data = image.read_bytes()
    written = 0
    for blk in range(1024):
        chunk = data[blk * 4096:(blk + 1) * 4096]
        if chunk == b"\xa5" * 4096:
            continue
        for k in range(8):
            sector = blk * 8 + k
            w = struct.unpack_from("<64Q", chunk, k * SECTOR)
            assert all(w[j] == ((sector * GOLDEN + j) & M64) ^ seed for j in range(64)), blk
        written += 1
    assert written > 0
    assert data[4 << 20:] == b"\xa5" * (1 << 20)


def test_blkbench_larger_than_the_disk_exits_2(microvm, tmp_path):
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(1 << 20))
    g = microvm("blkbench 2", extra=blk_args(image))
    assert g.wait_exit(timeout=30) == qemu_status(2)
    errors = parse([l for _, l in g.lines], r"^testguest: error: (.*)$")
    assert len(errors) == 1 and "do not fit on the disk" in errors[0].group(1), g.console()


def test_virtio_legacy_device_is_refused(guest, tmp_path):
    """Legacy (version 1) transports, QEMU's default: exit 2 with a clear error."""
    reason = microvm_missing()
    if reason:
        pytest.skip(reason)
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(1 << 20))
    g = guest("blklog", machine=MICROVM,
              extra=("-global", "virtio-mmio.force-legacy=true", *blk_args(image)))
    assert g.wait_exit(timeout=30) == qemu_status(2)
    errors = parse([l for _, l in g.lines], r"^testguest: error: (.*)$")
    assert len(errors) == 1 and "version 1 (legacy)" in errors[0].group(1), g.console()


# netecho: QEMU's socket netdev in UDP mode carries each Ethernet frame as one datagram,
# so the test is the other end of the wire on loopback; no privileges needed.

GUEST_MAC = bytes.fromhex("525400123456")
GUEST_IP = socket.inet_aton("192.0.2.10")
PEER_MAC = bytes.fromhex("020000000001")
PEER_IP = socket.inet_aton("192.0.2.1")
BROADCAST = b"\xff" * 6


def inet_csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def eth(dst, ethertype, payload, src=PEER_MAC):
    return dst + src + struct.pack("!H", ethertype) + payload


def arp_request(target_ip, sender_ip=PEER_IP):
    return eth(BROADCAST, 0x0806, struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + PEER_MAC +
               sender_ip + b"\0" * 6 + target_ip)


def ipv4(proto, payload, dst=GUEST_IP, src=PEER_IP, ident=0x4242):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, proto,
                      0, src, dst)
    hdr = hdr[:10] + struct.pack("!H", inet_csum(hdr)) + hdr[12:]
    return eth(GUEST_MAC, 0x0800, hdr + payload)


def icmp_echo(ident, seq, data, **kw):
    msg = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
    msg = msg[:2] + struct.pack("!H", inet_csum(msg)) + msg[4:]
    return ipv4(1, msg, **kw)


def udp(sport, dport, data, with_csum=True, dst=GUEST_IP, src=PEER_IP):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    if with_csum:
        c = inet_csum(src + dst + struct.pack("!BBH", 0, 17, len(seg)) + seg) or 0xFFFF
        seg = seg[:6] + struct.pack("!H", c) + seg[8:]
    return ipv4(17, seg, dst=dst, src=src)


def parse_ipv4_reply(frame):
    """Checks the Ethernet and IPv4 headers of a reply to us; returns (proto, payload)."""
    assert frame[0:6] == PEER_MAC and frame[6:12] == GUEST_MAC, frame.hex()
    assert struct.unpack("!H", frame[12:14])[0] == 0x0800
    ip = frame[14:]
    ihl = (ip[0] & 15) * 4
    assert ip[0] >> 4 == 4 and ihl == 20
    assert inet_csum(ip[:ihl]) == 0, "bad IPv4 header checksum"
    total = struct.unpack("!H", ip[2:4])[0]
    assert ip[12:16] == GUEST_IP and ip[16:20] == PEER_IP
    return ip[9], ip[ihl:total]


class Wire:
    """Our end of QEMU's `-netdev socket,udp=...`: raw Ethernet frames as UDP datagrams."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        self.qemu_port = probe.getsockname()[1]  # free now; QEMU binds it next
        probe.close()
        self.sent = 0

    def netdev_args(self):
        port = self.sock.getsockname()[1]
        return ("-netdev", f"socket,id=n0,udp=127.0.0.1:{port},localaddr=127.0.0.1:"
                           f"{self.qemu_port}",
                "-device", f"virtio-net-device,netdev=n0,mac={GUEST_MAC.hex(':')}")

    def send(self, frame):
        self.sock.sendto(frame, ("127.0.0.1", self.qemu_port))
        self.sent += 1

    def recv(self, timeout):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            return self.sock.recv(65536)
        except (socket.timeout, ConnectionRefusedError):
            return None

    def exchange(self, frame, timeout=20.0, resend=2.0):
        """Sends frame (again every `resend` s) until a frame comes back; returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send(frame)
            until = min(deadline, time.monotonic() + resend)
            reply = self.recv(until - time.monotonic())
            if reply is not None:
                return reply
        raise AssertionError(f"no reply within {timeout}s to {frame.hex()}")

    def close(self):
        self.sock.close()


@pytest.fixture
def wire():
    w = Wire()
    yield w
    w.close()


def test_netecho_answers_arp_icmp_and_udp(microvm, wire):
    g = microvm("netecho 192.0.2.10", extra=wire.netdev_args())
    g.wait_for(r"^netecho: virtio-net at 0x[0-9a-f]+, features 0x[0-9a-f]+, "
               r"queues rx=\d+ tx=\d+$", timeout=30)
    g.wait_for(r"^netecho: up mac=52:54:00:12:34:56 ip=192\.0\.2\.10$", timeout=30)

    # ARP: who-has 192.0.2.10 (the first exchange also waits for the link to work).
    r = wire.exchange(arp_request(GUEST_IP))
    assert len(r) >= 60 and r[0:6] == PEER_MAC and r[6:12] == GUEST_MAC, r.hex()
    assert struct.unpack("!H", r[12:14])[0] == 0x0806
    assert r[14:22] == struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2)
    assert r[22:28] == GUEST_MAC and r[28:32] == GUEST_IP
    assert r[32:38] == PEER_MAC and r[38:42] == PEER_IP

    # Frames the guest must ignore: ARP for another address, IPv4 to another address,
    # a bad IPv4 header checksum, an ICMP that is not an echo request. The next reply
    # must then be the one to the UDP datagram sent after them.
    bad_csum = bytearray(udp(1, 2, b"bad"))
    bad_csum[24] ^= 0xFF
    for f in (arp_request(socket.inet_aton("192.0.2.99")),
              udp(1, 2, b"x", dst=socket.inet_aton("192.0.2.99")),
              icmp_echo(1, 1, b"y", dst=socket.inet_aton("192.0.2.99")),
              bytes(bad_csum),
              ipv4(1, struct.pack("!BBHI", 0, 0, 0xFFFF, 0))):  # an echo *reply*
        wire.send(f)
    proto, seg = parse_ipv4_reply(wire.exchange(udp(4000, 5000, b"marker")))
    assert proto == 17 and seg[8:] == b"marker", seg

    # ICMP echo: same id, sequence and payload, valid checksums.
    payload = bytes(range(256)) * 4 + b"odd"
    for seq in range(1, 4):
        proto, msg = parse_ipv4_reply(wire.exchange(icmp_echo(0x1234, seq, payload)))
        assert proto == 1
        assert msg[:2] == b"\0\0", msg[:4].hex()  # type 0 (echo reply), code 0
        assert inet_csum(msg) == 0, "bad ICMP checksum"
        assert struct.unpack("!HH", msg[4:8]) == (0x1234, seq)
        assert msg[8:] == payload

    # UDP to any port comes back from that port, with a valid checksum (or none if the
    # request had none); small and MTU-sized datagrams.
    cases = [(5555, 7, b"hello", True), (40000, 12345, b"x" * 1472, True),
             (1, 65535, b"", True), (6000, 9, b"no checksum", False)]
    for sport, dport, data, with_csum in cases:
        proto, seg = parse_ipv4_reply(wire.exchange(udp(sport, dport, data, with_csum)))
        assert proto == 17
        rs, rd, rlen, rcsum = struct.unpack("!HHHH", seg[:8])
        assert (rs, rd, rlen) == (dport, sport, 8 + len(data))
        assert seg[8:] == data
        if with_csum:
            assert rcsum != 0
            assert inet_csum(GUEST_IP + PEER_IP + struct.pack("!BBH", 0, 17, rlen) + seg) == 0
        else:
            assert rcsum == 0

    # The once-a-second counters: everything we sent was received (duplicates from
    # resends included), one reply per answered frame.
    answered = 1 + 1 + 3 + len(cases)

    def counters(lines):
        return [(int(m.group(1)), int(m.group(2)))
                for m in parse(lines, r"^netecho: rx (\d+) tx (\d+)$")]

    g.collect_until(lambda ls: any(rx >= wire.sent and tx >= answered
                                   for rx, tx in counters(ls)), timeout=30)
    c = counters([l for _, l in g.lines])
    assert all(b[0] >= a[0] and b[1] >= a[1] for a, b in zip(c, c[1:])), c
    assert max(tx for _, tx in c) <= max(rx for rx, _ in c)
    assert not parse([l for _, l in g.lines], r"error|exception")
