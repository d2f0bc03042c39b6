"""Starting and driving godwit processes from tests.

Every process is started by the test, remembered by PID and stopped by PID in
cleanup; every wait is bounded in time.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KERNEL_TEARDOWN_S = 60
# Kernel functions of a process's release of its VM and guest RAM (Godwit.wait_exit).
KERNEL_RELEASE = ("kvm_vm_release", "kvm_destroy_vm", "shmem_evict_inode", "exit_mmap")
GODWIT = os.environ.get("GODWIT", os.path.join(ROOT, "build", "godwit"))
TESTGUEST = os.environ.get("GODWIT_TESTGUEST", os.path.join(ROOT, "build", "guest", "testguest.elf"))


def kvm_unusable_reason():
    """None if /dev/kvm can be opened, else why not (with what dmesg says)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError as e:
        return f"no usable /dev/kvm on this host: {os.strerror(e.errno)}"
    os.close(fd)
    return None



def free_port():
    """A TCP port on loopback that was free a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def json_exchange(conn, method, path, body=None):
    """One request on conn, then closes it: (status, parsed JSON body or None)."""
    try:
        data = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, (json.loads(raw) if raw else None)
    finally:
        conn.close()


def api(sock_path, method, path, body=None, timeout=10):
    """Returns (status, parsed JSON body or None)."""
    return json_exchange(UnixHTTPConnection(sock_path, timeout), method, path, body)


class Godwit:
    """One `godwit` process; console output goes to a file we can poll."""

    def __init__(self, tmp_path, args, name="vm", stdin=subprocess.DEVNULL, prefix=()):
        """prefix: a command that runs godwit, e.g. `ip netns exec NS`."""
        self.console = tmp_path / f"{name}.console"
        self.stderr_path = tmp_path / f"{name}.stderr"
        self.api_path = str(tmp_path / f"{name}.sock")
        self.args = list(prefix) + [GODWIT] + args
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.args, stdin=stdin, stdout=subprocess.DEVNULL,
                                     stderr=self._stderr)

    @classmethod
    def run_testguest(cls, tmp_path, cmdline, cpus=1, memory="256M", name="vm", extra=(),
                      prefix=()):
        g = cls.__new__(cls)
        api_path = str(tmp_path / f"{name}.sock")
        console = tmp_path / f"{name}.console"
        args = ["run", "--kernel", TESTGUEST, "--memory", memory, "--cpus", str(cpus),
                "--cmdline", cmdline, "--api", api_path, "--console", f"file:{console}",
                *extra]
        cls.__init__(g, tmp_path, args, name, prefix=prefix)
        return g

    def output(self):
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr(self):
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def wait_for(self, pattern, timeout=30, count=1):
        """Waits until `pattern` matches `count` times in the console; returns the matches."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = rx.findall(self.output())
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(
            f"no {count}x /{pattern}/ within {timeout}s (exit {self.proc.poll()});\n"
            f"console tail:\n{self.output()[-2000:]}\nstderr:\n{self.stderr()[-2000:]}")

    def passes(self):
        """Highest memtouch pass reported so far (passes are printed rate-limited)."""
        return max((int(n) for n in re.findall(r"memtouch: pass (\d+) ok", self.output())),
                   default=0)

    def wait_for_pass(self, n, timeout=60):
        """Waits until memtouch reports a pass numbered n or later.

        The first pass touches every page for the first time, which is slow where
        KVM is nested in an emulator (scripts/nested-kvm): callers allow minutes.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.passes() >= n:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(
            f"memtouch did not reach pass {n} within {timeout}s (at {self.passes()}, exit "
            f"{self.proc.poll()});\nconsole tail:\n{self.output()[-2000:]}\n"
            f"stderr:\n{self.stderr()[-2000:]}")

    def api(self, method, path, body=None):
        return api(self.api_path, method, path, body)

    def kernel_stacks(self):
        """{thread: (name, state, kernel stack)} of our process (root only), or {}."""
        out = {}
        base = f"/proc/{self.proc.pid}/task"
        try:
            tids = os.listdir(base)
        except OSError:
            return out
        for tid in tids:
            try:
                with open(f"{base}/{tid}/comm") as f:
                    name = f.read().strip()
                with open(f"{base}/{tid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                with open(f"{base}/{tid}/stack") as f:
                    stack = f.read()
            except OSError:
                continue
            out[tid] = (name, state, stack)
        return out

    def wait_exit(self, timeout=30):
        """The exit status. A process whose own work is done but that the kernel still
        holds in the release of its VM gets KERNEL_TEARDOWN_S more: closing a VM's fd
        waits for KVM's host-wide irqfd clean-up queue (kvm_vm_release), which on the
        2-core kvm_pvm test host once took over 10 s while other VMs ran (a source
        after a completed migration, test_devices). So does one whose kernel is still
        freeing its guest RAM (the memfd's pages, or its mappings): a source after a
        hand-over does that at nice 10 (src/migrate/source.c, teardown_in_background),
        and at load ~17 on 2 cores 512 MiB took over 10 s
        (test_long_link_uses_several_connections_and_no_extra_round_trip). Anything
        else still fails at timeout, with the threads' kernel stacks."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stacks = self.kernel_stacks()
            if any(f in st for f in KERNEL_RELEASE for _, _, st in stacks.values()):
                return self.proc.wait(timeout=KERNEL_TEARDOWN_S)
            raise AssertionError(
                f"{self.args} still running after {timeout}s; its threads: "
                + "; ".join(f"{tid} {n} {s} " + " < ".join(
                    l.split()[-1].split("+")[0] for l in st.splitlines()[:3])
                    for tid, (n, s, st) in stacks.items())
                + f"\nstderr:\n{self.stderr()[-1500:]}")

    def stop(self):
        """Stops our process by PID: SIGTERM, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._stderr.close()


def run_godwit(args, timeout=30, **kw):
    """Runs godwit to completion; returns CompletedProcess with text output."""
    return subprocess.run([GODWIT] + args, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)
