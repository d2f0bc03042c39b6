"""The test guest, proved on its own: boot build/guest/testguest.elf under QEMU TCG.

These tests do not involve godwit. They check that the guest boots through PVH with
1, 2 and 4 vCPUs, that each workload does what guest/testguest/README.md says, and
that the exit port and the error paths give the documented exit codes. QEMU's
isa-debug-exit turns a write of CODE into the exit status (CODE << 1) | 1.
"""
import os
import pathlib
import queue
import re
import shutil
import socket
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


def test_memtouch_reports_a_corrupted_page(guest, tmp_path):
    """The checker is not vacuous: a page changed behind the guest's back is reported."""
    sock = str(tmp_path / "gdb.sock")
    g = guest("memtouch 4M", extra=("-gdb", f"unix:{sock},server=on,wait=off"))
    m = g.wait_for(r"^memtouch: cpu=0 4096 KiB in 1 range\(s\) from 0x([0-9a-f]+)", timeout=30)
    bad = int(m.group(1), 16) + 100 * 4096
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


@pytest.mark.parametrize("cmdline,smp,what", [
    ("bogus 1", 1, "unknown workload 'bogus'"),
    ("memtouch 12X", 1, "bad memtouch size '12X'"),
    ("heartbeat", 1, "heartbeat on vcpu 0 takes"),
    ("heartbeat 0", 1, "bad heartbeat period"),
    ("ticks fast", 1, "bad ticks rate"),
    ("exit 256", 1, "bad exit code '256'"),
    ("memtouch 1M 5 6", 1, "memtouch on vcpu 0 takes"),
    ("heartbeat 10; heartbeat 10", 1, "more workloads than vcpus"),
    ("memtouch 64M; memtouch 64M; memtouch 64M", 2, "more workloads than vcpus"),
    ("memtouch 1G", 1, "not enough RAM"),
    ("memtouch 200M; memtouch 100M", 2, "not enough RAM"),
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
