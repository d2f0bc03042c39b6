"""A slow, far link between two network namespaces, removed even when a run fails.

    ns gwb-a-TAG (198.51.100.1) ──link: RATE, DELAY one way── ns gwb-b-TAG (198.51.100.2)

The link is a veth pair with `tc netem delay D rate R` on both ends where the kernel
has sch_netem; otherwise (our kvm_pvm machines' kernel has no netem) two TUN devices
joined by bench/delayline.py, a user-space delay line with the same model (serial link
at RATE, then DELAY, a queue of about one bandwidth-delay product) and an MTU of 65000
(like netem on a veth with GSO, where a packet is up to 64 KiB). Addresses only from
198.51.100.0/24 (TEST-NET-2); names carry a per-run tag (gwb- prefix).

Both namespaces let TCP autotune its buffers up to 64 MiB (net.ipv4.tcp_rmem/tcp_wmem
are per namespace): the link's bandwidth-delay product at 1 Gbit/s and 150 ms is
18.75 MB, more than the default 6 MiB / 4 MiB maxima. Both turn on TCP Fast Open's
server side (net.ipv4.tcp_fastopen=3; fast_open=False leaves the default, client only).
Global sysctls are not touched.
"""
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NET = "198.51.100"
TCP_MEM = {"net.ipv4.tcp_rmem": "4096 131072 67108864",
           "net.ipv4.tcp_wmem": "4096 16384 67108864"}
# TCP Fast Open, client and server (the default is client only): a host that takes
# migrations over a long link turns it on (docs/migration-format.md); godwit's CONFIG
# then rides in the SYN. QEMU does not use Fast Open, so this changes nothing for it.
FAST_OPEN = {"net.ipv4.tcp_fastopen": "3"}


def sh(*args, check=True):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=20,
                          stdin=subprocess.DEVNULL)


def unavailable_reason():
    """None if a slow link can be built here, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip, tc)"
    if shutil.which("tc") is None and not os.path.exists("/dev/net/tun"):
        return "needs tc (netem) or /dev/net/tun"
    return None


class SlowLink:
    """Context manager; `.prefix(side)` runs a command in namespace 'a' or 'b'."""

    def __init__(self, delay_ms, rate_bps, tag=None, fast_open=True):
        self.delay_ms = delay_ms
        self.sysctls = {**TCP_MEM, **(FAST_OPEN if fast_open else {})}
        self.rate_bps = rate_bps
        self.tag = tag or f"{os.getpid() % 100000}{int(time.monotonic() * 1000) % 1000}"
        self.ns = {"a": f"gwb-a-{self.tag}", "b": f"gwb-b-{self.tag}"}
        self.ip = {"a": f"{NET}.1", "b": f"{NET}.2"}
        self.dev = {"a": f"gwba{self.tag}"[:15], "b": f"gwbb{self.tag}"[:15]}
        self.method = None
        self.delayline = None
        self._made = []

    def prefix(self, side):
        return ["ip", "netns", "exec", self.ns[side]]

    def run(self, side, *cmd, check=True):
        return sh("ip", "netns", "exec", self.ns[side], *cmd, check=check)

    def bdp_bytes(self):
        return int(self.rate_bps / 8 * 2 * self.delay_ms / 1000)

    def __enter__(self):
        try:
            for side in ("a", "b"):
                sh("ip", "netns", "add", self.ns[side])
                self._made.append(self.ns[side])
                self.run(side, "ip", "link", "set", "lo", "up")
                for key, val in self.sysctls.items():
                    self.run(side, "sysctl", "-q", "-w", f"{key}={val}")
            if not self._netem():
                self._tun_delayline()
            self._check()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _netem(self):
        """veth + netem on both ends; False (and nothing left) if netem is missing."""
        if shutil.which("tc") is None:
            return False
        a, b = self.dev["a"], self.dev["b"]
        sh("ip", "link", "add", a, "netns", self.ns["a"], "type", "veth", "peer", "name", b,
           "netns", self.ns["b"])
        limit = max(1000, self.bdp_bytes() // 1500)
        for side in ("a", "b"):
            r = self.run(side, "tc", "qdisc", "add", "dev", self.dev[side], "root", "netem",
                         "delay", f"{self.delay_ms}ms", "rate", f"{self.rate_bps}bit",
                         "limit", str(limit), check=False)
            if r.returncode != 0:
                self.run("a", "ip", "link", "del", a, check=False)
                return False
        self._addresses(mtu=None)
        self.method = (f"veth + tc netem (delay {self.delay_ms} ms and rate "
                       f"{self.rate_bps / 1e9:g} Gbit/s on each end, limit {limit} packets)")
        return True

    def _tun_delayline(self):
        limit = max(1 << 20, self.bdp_bytes())
        self.delayline = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "delayline.py"), self.dev["a"], self.dev["b"],
             str(self.delay_ms), str(self.rate_bps), str(limit)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.delayline.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"delay line did not start: {line!r} "
                               f"{self.delayline.stderr.read() if self.delayline.poll() is not None else ''}")
        for side in ("a", "b"):
            sh("ip", "link", "set", self.dev[side], "netns", self.ns[side])
            self.run(side, "ip", "link", "set", self.dev[side], "txqueuelen", "10000")
        self._addresses(mtu=65000)
        self.method = (f"TUN devices + bench/delayline.py (this kernel has no sch_netem): "
                       f"{self.delay_ms} ms one way, {self.rate_bps / 1e9:g} Gbit/s each way, "
                       f"queue {limit // 1024} KiB, MTU 65000")

    def _addresses(self, mtu):
        for side in ("a", "b"):
            dev = self.dev[side]
            if mtu:
                self.run(side, "ip", "link", "set", dev, "mtu", str(mtu))
            self.run(side, "ip", "addr", "add", f"{self.ip[side]}/24", "dev", dev)
            self.run(side, "ip", "link", "set", dev, "up")

    def _check(self):
        """A TCP connect across the link, bounded: the link works before VMs use it."""
        code = ("import socket,sys\n"
                "s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=5)\n"
                "s.close()\n")
        srv = subprocess.Popen(
            self.prefix("b") + [sys.executable, "-c",
                                "import socket,sys\n"
                                "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                                "s.bind((sys.argv[1],0));s.listen();print(s.getsockname()[1],flush=True)\n"
                                "s.settimeout(10);c,_=s.accept();c.close()\n", self.ip["b"]],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        try:
            port = srv.stdout.readline().strip()
            t0 = time.monotonic()
            r = self.run("a", sys.executable, "-c", code, self.ip["b"], port, check=False)
            if r.returncode != 0:
                raise RuntimeError(f"slow link does not carry TCP: {r.stderr.strip()[-300:]}")
            self.connect_s = time.monotonic() - t0
        finally:
            if srv.poll() is None:
                srv.kill()
            srv.wait(timeout=10)
            srv.stdout.close()
            srv.stderr.close()

    def __exit__(self, *exc):
        if self.delayline is not None:
            if self.delayline.poll() is None:
                self.delayline.terminate()
                try:
                    self.delayline.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.delayline.kill()
                    self.delayline.wait(timeout=10)
            for f in (self.delayline.stdin, self.delayline.stdout, self.delayline.stderr):
                try:
                    f.close()
                except OSError:
                    pass
            self.delayline = None
        for ns in reversed(self._made):
            sh("ip", "netns", "del", ns, check=False)
        self._made = []
        return False
