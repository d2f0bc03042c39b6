"""Processes the benchmark starts, and what it measures of them.

- Proc: a child process, reaped with os.wait4 (exit status and rusage), stopped by PID.
- cpu_snapshot: CPU seconds of a live process, whole and of its vCPU threads only
  (/proc/PID/stat and /proc/PID/task/TID/stat, utime + stime, clock ticks).
- own_memory_kib: the VMM's own resident memory, guest RAM left out:
  godwit: VmRSS - RssShmem (guest RAM is a memfd, i.e. shared memory);
  QEMU: VmRSS - Rss of its guest RAM mapping (anonymous, found in /proc/PID/smaps as
  the private anonymous mapping whose size is the guest RAM size).
- Monitor: a thread sampling CPU and memory of some processes, keeping the last CPU
  sample and the peak of the memory figure.
- ConsoleTail / ConsoleWatcher: console files read as they grow, each complete line
  stamped with the host's monotonic clock when it was first complete: by the stamps of
  ConsoleStamper (bench/stamper.c, a process of its own) when it saw it first, else
  when the watcher did.
"""
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
STAMP = struct.Struct("<dq")  # bench/stamper.c's records
VCPU_THREAD = {"godwit": re.compile(r"^vcpu-\d+$"), "qemu": re.compile(r"^CPU \d+/KVM$")}


class Proc:
    """A process we started. Never waited for by anyone else: we reap it with wait4."""

    def __init__(self, args, name, workdir, env=None):
        self.name = name
        self.args = list(args)
        self.stdout_path = os.path.join(workdir, f"{name}.stdout")
        self.stderr_path = os.path.join(workdir, f"{name}.stderr")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=err, env=env)
        self.pid = self.popen.pid
        self.exit_code = None
        self.rusage = None
        self.exited_at = None
        # A sampling thread polls too: without the lock, the thread that lost the race to
        # reap the child got ChildProcessError and reported exit -1 for a VM that exited 0.
        self._reap = threading.Lock()

    def poll(self):
        with self._reap:
            if self.exit_code is not None:
                return self.exit_code
            try:
                pid, status, ru = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.exit_code = -1
                return self.exit_code
            if pid == 0:
                return None
            self.exited_at = time.monotonic()
            self.exit_code = os.waitstatus_to_exitcode(status)
            self.rusage = ru
            self.popen.returncode = self.exit_code  # so Popen never waits for it again
            return self.exit_code

    def alive(self):
        return self.poll() is None

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.poll() is not None:
                return self.exit_code
            time.sleep(0.01)
        return self.poll()

    def cpu_at_exit(self):
        """utime + stime of the whole process from its rusage, once it has exited."""
        if self.rusage is None:
            return None
        return self.rusage.ru_utime + self.rusage.ru_stime

    def stop(self):
        """SIGTERM, then SIGKILL if it lingers; by PID, only if it has not been reaped."""
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self.wait(10) is None:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.wait(10)

    def stderr(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


def _stat_cpu(path):
    """utime + stime in seconds from a /proc stat file, None if it is gone."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


_VCPU_TIDS = {}  # pid -> {tid: is a vCPU thread}


def cpu_snapshot(pid, kind):
    """(whole process, vCPU threads) CPU seconds and the number of vCPU threads seen;
    None if the process is gone."""
    total = _stat_cpu(f"/proc/{pid}/stat")
    if total is None:
        return None
    vcpu = 0.0
    nvcpu = 0
    rx = VCPU_THREAD[kind]
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    known = _VCPU_TIDS.setdefault(pid, {})
    for tid in tids:
        if tid not in known:  # a thread's name is read once (QEMU and godwit name them at start)
            try:
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            if not comm.startswith(("qemu-system", "godwit")):
                known[tid] = bool(rx.match(comm))
        if known.get(tid):
            t = _stat_cpu(f"/proc/{pid}/task/{tid}/stat")
            if t is not None:
                vcpu += t
                nvcpu += 1
    return total, vcpu, nvcpu


def _status_kib(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssShmem", "RssAnon", "VmHWM"):
                    out[k] = int(v.split()[0])
    except OSError:
        return None
    return out


def _qemu_ram_rss_kib(pid, ram_kib):
    """Rss of QEMU's guest RAM mapping (anonymous, Size == guest RAM), or None."""
    best = None
    cur_anon = False
    size = None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                    parts = line.split()
                    cur_anon = len(parts) == 5 and parts[1].startswith("rw")
                    size = None
                elif line.startswith("Size:"):
                    size = int(line.split()[1])
                elif line.startswith("Rss:") and cur_anon and size is not None:
                    if size == ram_kib or (best is None and ram_kib <= size <= ram_kib + 4096):
                        rss = int(line.split()[1])
                        if size == ram_kib:
                            return rss
                        best = rss
    except OSError:
        return None
    return best


def own_memory_kib(pid, kind, ram_kib):
    st = _status_kib(pid)
    if not st or "VmRSS" not in st:
        return None
    if kind == "godwit":
        return st["VmRSS"] - st.get("RssShmem", 0)
    ram = _qemu_ram_rss_kib(pid, ram_kib)
    if ram is None:
        return None
    return st["VmRSS"] - ram


class Monitor(threading.Thread):
    """Samples own memory of some processes every `mem_every` s (keeping the peak) and,
    while `window` is set, their CPU every `cpu_every` s (keeping the history)."""

    def __init__(self, cpu_every=0.01, mem_every=0.2):
        super().__init__(daemon=True)
        self.cpu_every, self.mem_every = cpu_every, mem_every
        self.lock = threading.Lock()
        self.procs = {}  # key -> (Proc, kind, ram_kib)
        self.cpu_hist = {}  # key -> [(monotonic time, total s, vCPU s, vCPU threads)]
        self.peak_mem = {}
        self.window = False
        self._halt = threading.Event()

    def add(self, key, proc, kind, ram_kib):
        with self.lock:
            self.procs[key] = (proc, kind, ram_kib)
            self.cpu_hist[key] = []
            _VCPU_TIDS.pop(proc.pid, None)  # a PID seen before belonged to another process
        self.sample_mem(key)

    def sample_cpu(self, key):
        """Samples now; returns the latest complete sample (total, vcpu, n) or None."""
        with self.lock:
            entry = self.procs.get(key)
            hist = self.cpu_hist.get(key)
            if entry is None:
                return None
            snap = (None if entry[0].exit_code is not None
                    else cpu_snapshot(entry[0].pid, entry[1]))
            # A process on its way out (vCPU threads gone, not yet reaped) keeps its last
            # complete sample.
            if snap is not None and (not hist or snap[2] >= hist[-1][3]):
                hist.append((time.monotonic(), *snap))
            return hist[-1][1:] if hist else None

    def cpu_after(self, key, t):
        """The first sample taken at or after t (else the last one): (total, vcpu, n)."""
        hist = self.cpu_hist.get(key) or []
        for h in hist:
            if h[0] >= t:
                return h[1:]
        return hist[-1][1:] if hist else None

    def sample_mem(self, key):
        with self.lock:
            entry = self.procs.get(key)
        if entry is None or entry[0].exit_code is not None:
            return
        kib = own_memory_kib(entry[0].pid, entry[1], entry[2])
        if kib is not None and kib > self.peak_mem.get(key, -1):
            self.peak_mem[key] = kib

    def run(self):
        next_mem = 0.0
        while not self._halt.wait(self.cpu_every):
            keys = list(self.procs)
            if self.window:
                for k in keys:
                    self.sample_cpu(k)
            if time.monotonic() >= next_mem:
                for k in keys:
                    self.sample_mem(k)
                next_mem = time.monotonic() + self.mem_every

    def stop(self):
        self._halt.set()
        if self.is_alive():
            self.join(timeout=5)


PASS_LINE = re.compile(r"^memtouch: pass (\d+) ok cpu=(\d+)(?: rate=(\d+) MB/s)?")


class ConsoleTail:
    """A console file read as it grows; lines stamped when first seen complete.
    Keeps count of heartbeat lines and of each vCPU's highest memtouch pass."""

    def __init__(self, path):
        self.path = path
        self.fd = None
        self.lines = []  # (host monotonic time, text)
        self.partial = b""
        self.offset = 0  # bytes of the file read so far
        self.stamps = StampReader(path + ".stamps")
        self.hb_count = 0
        self.last_hb_at = None
        self.passes = {}  # cpu -> highest pass reported

    def poll(self, now):
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return
        for _ in range(64):  # bounded: 64 x 64 KiB per poll
            data = os.read(self.fd, 65536)
            if not data:
                break
            start = self.offset - len(self.partial)  # file offset of data[0]
            self.offset += len(data)
            data = self.partial + data
            *complete, self.partial = data.split(b"\n")
            for raw in complete:
                start += len(raw) + 1
                text = raw.decode(errors="replace")
                self.lines.append((self.stamps.time_of(start, now), text))
                if text.startswith("hb "):
                    self.hb_count += 1
                    self.last_hb_at = now
                elif text.startswith("memtouch: pass"):
                    m = PASS_LINE.match(text)
                    if m:
                        cpu, n = int(m.group(2)), int(m.group(1))
                        self.passes[cpu] = max(self.passes.get(cpu, 0), n)

    def text(self):
        return "\n".join(t for _, t in self.lines) + "\n" + self.partial.decode(errors="replace")

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.stamps.close()


class StampReader:
    """The (time, size) stamps bench/stamper.c appends to FILE.stamps as FILE grows."""

    def __init__(self, path):
        self.path = path
        self.fd = None
        self.buf = b""
        self.stamps = []  # (monotonic time, file size), sizes increasing
        self.i = 0  # the first stamp that may still cover a line not yet stamped

    def _read(self):
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return
        while True:
            data = os.read(self.fd, 65536)
            if not data:
                break
            self.buf += data
        n = len(self.buf) // STAMP.size
        self.stamps += STAMP.iter_unpack(self.buf[:n * STAMP.size])
        self.buf = self.buf[n * STAMP.size:]

    def time_of(self, end, seen):
        """When the file first held `end` bytes: the stamper's time if it saw it by
        `seen` (when the reader did), else `seen`."""
        if self.i >= len(self.stamps) or self.stamps[-1][1] < end:
            self._read()
        while self.i < len(self.stamps) and self.stamps[self.i][1] < end:
            self.i += 1
        if self.i < len(self.stamps):
            return min(self.stamps[self.i][0], seen)
        return seen

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


STAMPER = os.environ.get("BENCH_STAMPER", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "bench", "stamper"))


class ConsoleStamper:
    """build/bench/stamper (bench/stamper.c, built by `make`) as a child process for some
    console files (stopped by PID): it stamps their growth every 100 us."""

    def __init__(self, paths, workdir, interval_us=None, max_s=900):
        if interval_us is None:
            interval_us = int(os.environ.get("BENCH_STAMP_US", "100"))
        if not os.access(STAMPER, os.X_OK):
            raise FileNotFoundError(f"{STAMPER} is missing: run make (bench/stamper.c)")
        self.proc = Proc([STAMPER, str(interval_us), str(max_s), *paths], "stamper", workdir)

    def warning(self):
        return self.proc.stderr().strip()

    def stop(self):
        self.proc.stop()


class ConsoleWatcher(threading.Thread):
    """Polls some ConsoleTails every `period` s (changed with .fast(); 1 ms at best)."""

    def __init__(self, tails, period=0.02):
        super().__init__(daemon=True)
        self.tails = list(tails)
        self.period = period
        self.lock = threading.Lock()
        self._halt = threading.Event()

    def add(self, tail):
        with self.lock:
            self.tails.append(tail)

    def run(self):
        while not self._halt.wait(self.period):
            now = time.monotonic()
            with self.lock:
                for t in self.tails:
                    t.poll(now)

    def sync(self):
        """One poll now, from the caller's thread."""
        now = time.monotonic()
        with self.lock:
            for t in self.tails:
                t.poll(now)

    def stop(self):
        self._halt.set()
        if self.is_alive():
            self.join(timeout=5)
        with self.lock:
            for t in self.tails:
                t.close()
