"""A cluster on one machine for tests: a real etcd, agents and managers on loopback ports.

Every process is started here, remembered by PID and stopped by PID; every wait is
bounded in time. VMs are started by agents (not by the test), in their own sessions so
that they outlive an agent: `Lab.stop` ends them too, by the PIDs their agents wrote.
"""
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time

from godwit_vm import GODWIT, TESTGUEST, free_port, json_exchange

# What the cluster tests' VMs run: the test guest, its memory checked by memtouch.
CMDLINE = "heartbeat 10 ; memtouch 16M"

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCD_LIVE = os.path.join(os.path.dirname(GODWIT), "tests", "cluster", "etcd_live")


def stop_pid(proc, sig=signal.SIGTERM, timeout=10):
    """Stops a Popen we started: sig, then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def passes(console):
    """Highest memtouch pass in a VM's console file (passes are printed rate-limited);
    fails on a memtouch error."""
    try:
        text = console.read_text(errors="replace")
    except FileNotFoundError:
        return 0
    assert "FAIL" not in text, text[-2000:]
    return max((int(n) for n in re.findall(r"memtouch: pass (\d+) ok", text)), default=0)


def pid_alive(pid):
    """Whether a process runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_until(what, check, timeout=30, step=0.1):
    """Polls check() until it returns something true; fails with `what` after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


def free_ports(n):
    """n distinct TCP ports on loopback that were free a moment ago (all held while
    choosing: free_port() twice may give the same one)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Etcd:
    """One etcd member on free loopback ports with its data in tmp_path; with
    `cluster` (name=peer URL for every member), one member of that cluster."""

    def __init__(self, tmp_path, name="etcd", port=None, peer_port=None, cluster=None, ns=None,
                 address="127.0.0.1", tls=None):
        """tls: a `godwit cluster init` directory: etcd serves https:// with its node
        certificate and requires a client certificate of its CA (--client-cert-auth)."""
        self.dir = tmp_path / name
        self.dir.mkdir()
        two = free_ports(2) if not ns else (2379, 2380)
        self.port = port or two[0]
        self.peer_port = peer_port or two[1]
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://{address}:{self.port}"
        self.ns = ns
        self.log = open(self.dir / "log", "wb")
        peer = f"http://{address}:{self.peer_port}"
        prefix = ["ip", "netns", "exec", ns] if ns else []
        tls_args = ["--cert-file", str(tls / "node.crt"), "--key-file", str(tls / "node.key"),
                    "--trusted-ca-file", str(tls / "ca.crt"), "--client-cert-auth"] if tls else []
        self.proc = subprocess.Popen(
            [*prefix, ETCD, "--name", name, "--data-dir", str(self.dir / "data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", cluster or f"{name}={peer}", *tls_args],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        if not cluster:
            self.wait()

    def wait(self):
        try:
            wait_until("etcd answers", self.healthy, timeout=30)
        except AssertionError:
            self.stop()
            raise

    def healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"etcd exited {self.proc.returncode}: "
                                 f"{(self.dir / 'log').read_text()[-2000:]}")
        prefix = ["ip", "netns", "exec", self.ns] if self.ns else []
        r = subprocess.run([*prefix, "curl", "-s", "-m", "2", *curl_tls(self.tls), "-X", "POST",
                            self.url + "/v3/kv/range", "-d", '{"key":"AA=="}'],
                           capture_output=True, text=True)
        return r.returncode == 0 and '"header"' in r.stdout

    def stop(self, sig=signal.SIGTERM):
        stop_pid(self.proc, sig)
        if not self.log.closed:
            self.log.close()


class EtcdCluster:
    """n etcd members of one cluster; `url` names them all, comma-separated."""

    def __init__(self, tmp_path, n):
        # A port taken by another process between our choice and etcd's bind: choose
        # again (bounded), in fresh directories.
        for attempt in range(3):
            ports = free_ports(2 * n)
            cluster = ",".join(f"e{i}=http://127.0.0.1:{ports[2 * i + 1]}" for i in range(n))
            self.members = []
            try:
                for i in range(n):
                    self.members.append(Etcd(tmp_path / f"try{attempt}" if attempt else tmp_path,
                                             f"e{i}", ports[2 * i], ports[2 * i + 1], cluster))
                for m in self.members:
                    m.wait()
                break
            except AssertionError as e:
                self.stop()
                if "address already in use" not in str(e) or attempt == 2:
                    raise
                (tmp_path / f"try{attempt + 1}").mkdir()
            except BaseException:
                self.stop()
                raise
        self.url = ",".join(m.url for m in self.members)

    def stop(self):
        for m in self.members:
            m.stop()


def curl_tls(pki, cert="node"):
    """curl's options for an etcd with TLS (Etcd's tls): its CA and a client certificate."""
    if not pki:
        return []
    return ["--cacert", str(pki / "ca.crt"), *(["--cert", str(pki / f"{cert}.crt"), "--key",
                                                 str(pki / f"{cert}.key")] if cert else [])]


def etcd_get(url, key, prefix=False, ns=None, tls=None):
    """{key: value} of a key (or every key under a prefix) read straight from etcd
    (from network namespace ns if given; tls: as Etcd's)."""
    import base64
    body = {"key": base64.b64encode(key.encode()).decode()}
    if prefix:
        end = key[:-1] + chr(ord(key[-1]) + 1)
        body["range_end"] = base64.b64encode(end.encode()).decode()
    prefix_cmd = ["ip", "netns", "exec", ns] if ns else []
    r = subprocess.run([*prefix_cmd, "curl", "-s", "-m", "5", *curl_tls(tls), "-X", "POST",
                        url.split(",")[0] + "/v3/kv/range", "-d", json.dumps(body)],
                       capture_output=True, text=True, check=True)
    out = {}
    for kv in json.loads(r.stdout).get("kvs", []):
        out[base64.b64decode(kv["key"]).decode()] = base64.b64decode(
            kv.get("value", "")).decode()
    return out


def etcd_write(url, op, key, value=None):
    """One write straight to etcd's v3 gateway: op put (key = value) or deleterange (key).
    Returns the store's revision after it (a put's key has it as its mod revision)."""
    import base64
    body = {"key": base64.b64encode(key.encode()).decode()}
    if value is not None:
        body["value"] = base64.b64encode(value.encode()).decode()
    r = subprocess.run(["curl", "-s", "-m", "5", "-X", "POST", f"{url}/v3/kv/{op}", "-d",
                        json.dumps(body)], capture_output=True, text=True, check=True)
    return int(json.loads(r.stdout)["header"]["revision"])


def etcd_put(url, key, value):
    return etcd_write(url, "put", key, value)


def etcd_delete(url, key):
    etcd_write(url, "deleterange", key)


class Node:
    """A godwit agent or manager process we started."""

    def __init__(self, lab, kind, name, args, ns=None, address="127.0.0.1"):
        """ns: the network namespace it runs in (a host of a ClusterNet), at address."""
        self.lab = lab
        self.kind = kind
        self.name = name
        self.address = address
        self.port = free_port() if not ns else 7400
        self.url = f"https://{address}:{self.port}"
        self.log_path = lab.dir / f"{kind}-{name}.log"
        prefix = ["ip", "netns", "exec", ns] if ns else []
        tls = getattr(lab.etcd, "tls", None)
        etcd_tls = ["--etcd-ca", str(tls / "ca.crt"), "--etcd-cert", str(tls / "node.crt"),
                    "--etcd-key", str(tls / "node.key")] if tls else []
        self.args = [*prefix, GODWIT, kind, "--etcd", lab.etcd.url, *etcd_tls, "--listen",
                     f"{address}:{self.port}", "--pki", str(lab.pki), *args]
        self.start()

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log)
        wait_until(f"{self.kind} {self.name} answers", self.answers, timeout=30)

    def answers(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.kind} {self.name} exited {self.proc.returncode}: "
                                 f"{self.logs()[-2000:]}")
        try:
            self.call("GET", "/host" if self.kind == "agent" else "/hosts")
        except OSError:
            return False
        if self.kind != "agent":
            return True
        # An agent is ready once its host is up in etcd, not only serving.
        key = f"/godwit/alive/{self.name}"
        return key in etcd_get(self.lab.etcd.url, key,
                               ns=self.lab.net.ns["client"] if self.lab.net else None,
                               tls=getattr(self.lab.etcd, "tls", None))

    def logs(self):
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def call(self, method, path, body=None, cert="client", timeout=60):
        """(status, parsed body) of one request with a certificate of the cluster."""
        if self.lab.net:
            return self.lab.net.https_call(self.lab.pki, self.url, method, path, body, timeout)
        return https_call(self.lab.pki, self.port, method, path, body, cert, timeout)

    def stop(self, sig=signal.SIGTERM):
        stop_pid(self.proc, sig)
        self.log.close()


def https_call(pki, port, method, path, body=None, cert="client", timeout=60):
    import http.client
    import ssl
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout)
    return json_exchange(conn, method, path, body)


class Lab:
    """etcd, the cluster's certificates, agents and managers; all stopped by PID."""

    def __init__(self, tmp_path, etcd_members=1, net=None, etcd_tls=False):
        """net: a ClusterNet whose namespaces the hosts, etcd and the manager run in;
        etcd_tls: etcd serves https:// and requires the cluster's certificates."""
        self.dir = tmp_path
        self.pki = tmp_path / "pki"
        self.nodes = []
        self.state_dirs = []
        self.net = net
        # With namespaces the node certificate names the fabric (the managers); each
        # host gets its own (agent), as many hosts as a test wants.
        ips = ["--ip", net.ip["fabric"]] if net else []
        r = subprocess.run([GODWIT, "cluster", "init", "--dir", str(self.pki), *ips],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        if net:
            self.etcd = Etcd(tmp_path, ns=net.ns["fabric"], address=net.ip["fabric"])
        elif etcd_members == 1:
            self.etcd = Etcd(tmp_path, tls=self.pki if etcd_tls else None)
        else:
            self.etcd = EtcdCluster(tmp_path, etcd_members)

    def agent(self, name, *args, memory="4G", cpus=8, state_dir=None):
        sd = state_dir or self.dir / f"h-{name}"
        if sd not in self.state_dirs:
            self.state_dirs.append(sd)
        ns = self.net.ns[name] if self.net else None
        addr = self.net.ip[name] if self.net else "127.0.0.1"
        if self.net and not (self.pki / f"{name}.crt").exists():
            r = subprocess.run([GODWIT, "cluster", "cert", "--dir", str(self.pki), "--name", name,
                                "--ip", addr], capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stderr
        if self.net:
            args = ("--cert", name, *args)
        n = Node(self, "agent", name, ["--name", name, "--state-dir", str(sd), "--memory",
                                       memory, "--cpus", str(cpus), "--ttl", "4", *args],
                 ns, addr)
        n.state_dir = sd
        self.nodes.append(n)
        return n

    def manager(self, name="m1", *args):
        n = Node(self, "manager", name, ["--id", name, *args],
                 self.net.ns["fabric"] if self.net else None,
                 self.net.ip["fabric"] if self.net else "127.0.0.1")
        self.nodes.append(n)
        return n

    def vm_pids(self):
        """{pid: state dir} of the VM processes the agents started, from their pid files."""
        out = {}
        for sd in self.state_dirs:
            for f in sd.glob("*.pid") if sd.exists() else []:
                try:
                    pid = int(f.read_text().split()[0])
                    with open(f"/proc/{pid}/cmdline", "rb") as c:
                        if str(sd).encode() in c.read():
                            out[pid] = sd
                except (OSError, ValueError, IndexError):
                    pass
        return out

    def cluster_args(self, *args, manager=None):
        """The command line of godwit cluster args, asking manager (or the first that runs)."""
        m = manager or next(n for n in self.nodes if n.kind == "manager"
                            and n.proc.poll() is None)
        prefix = ["ip", "netns", "exec", self.net.ns["client"]] if self.net else []
        return [*prefix, GODWIT, "cluster", "--manager", m.url, "--pki", str(self.pki), *args]

    def cluster(self, *args, manager=None, timeout=120):
        return subprocess.run(self.cluster_args(*args, manager=manager), capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def stop(self):
        for n in self.nodes:
            stop_pid(n.proc, signal.SIGKILL) if n.proc.poll() is None else None
            n.log.close()
        # The VMs outlive their agents by design: end them by the PIDs the agents wrote.
        pids = self.vm_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 60
        while pids and time.monotonic() < deadline:
            pids = {p for p in pids if pid_alive(p)}
            time.sleep(0.1)
        self.etcd.stop()


class ClusterNet:
    """Hosts as network namespaces on one bridge, built by the test and removed even
    when it fails (only 192.0.2.0/24):

        fabric (bridge br0, 192.0.2.1: etcd, the manager)
          ├─veth── host-a (192.0.2.11: its agent and VMs)
          ├─veth── host-b (192.0.2.12)
          └─veth── client (192.0.2.100: godwit cluster, the test's requests)

    Migration streams go from one host's namespace to another's across the bridge.
    """

    def __init__(self, hosts=("host-a", "host-b")):
        self.tag = f"c{os.getpid() % 100000}"
        self.hosts = list(hosts)
        self.ns = {n: f"{n}-{self.tag}" for n in ["fabric", "client", *self.hosts]}
        self.ip = {"fabric": "192.0.2.1", "client": "192.0.2.100"}
        for i, h in enumerate(self.hosts):
            self.ip[h] = f"192.0.2.{11 + i}"
        self.veth = {}
        self.port = {}

    def sh(self, *args, check=True):
        return subprocess.run(list(args), check=check, capture_output=True, text=True,
                              timeout=20)

    def run(self, n, *cmd, check=True):
        return self.sh("ip", "netns", "exec", self.ns[n], *cmd, check=check)

    def up(self):
        try:
            for ns in self.ns.values():
                self.sh("ip", "netns", "add", ns)
            self.run("fabric", "ip", "link", "add", "br0", "type", "bridge")
            self.run("fabric", "ip", "addr", "add", f"{self.ip['fabric']}/24", "dev", "br0")
            self.run("fabric", "ip", "link", "set", "br0", "up")
            for n in ["fabric", "client", *self.hosts]:
                self.run(n, "ip", "link", "set", "lo", "up")
            for i, n in enumerate(["client", *self.hosts]):
                a, b = f"v{i}{self.tag}"[:15], f"f{i}{self.tag}"[:15]
                self.sh("ip", "link", "add", a, "netns", self.ns[n], "type", "veth", "peer",
                        "name", b, "netns", self.ns["fabric"])
                self.run("fabric", "ip", "link", "set", b, "master", "br0", "up")
                self.run(n, "ip", "addr", "add", f"{self.ip[n]}/24", "dev", a)
                self.run(n, "ip", "link", "set", a, "up")
                self.veth[n] = a
                self.port[n] = b
        except BaseException:
            self.down()
            raise
        return self

    def shape(self, mbit, queue="fifo"):
        """Each host's link to the bridge at mbit Mbit/s each way, as a switch port's (tbf
        on both ends of its veth: what the host sends, and what the bridge sends it). The
        queue in front of a host's own end: "fifo" (tbf's own) or "pfifo_fast" (a Linux
        host's default qdisc: three FIFOs served by the sockets' priority); the bridge's
        end stays one FIFO, as a switch port's. The qdiscs go with the veths when the
        namespaces are removed."""
        if queue not in ("fifo", "pfifo_fast"):
            raise ValueError(f"queue {queue!r}: fifo or pfifo_fast")
        # A burst of 1 ms at the rate (at least 64 KiB): larger bursts let a short copy
        # run faster than the rate; tbf splits larger GSO packets itself.
        burst = f"{max(64 << 10, mbit * 1000 // 8)}b"
        for h in self.hosts:
            for n, dev in ((h, self.veth[h]), ("fabric", self.port[h])):
                self.run(n, "tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "tbf",
                         "rate", f"{mbit}mbit", "burst", burst, "latency", "20ms")
            if queue == "pfifo_fast":
                # Its bands hold txqueuelen packets each (1000 for a veth: 64 MiB of
                # 64 KiB GSO packets, half a second at 1 Gbit/s, where tbf's own FIFO
                # holds its 20 ms): about as deep as that in 64 KiB packets.
                qlen = max(8, mbit * 1000 * 1000 // 8 * 20 // 1000 // (64 << 10))
                self.run(h, "ip", "link", "set", "dev", self.veth[h], "txqueuelen", str(qlen))
                self.run(h, "tc", "qdisc", "add", "dev", self.veth[h], "parent", "1:1",
                         "handle", "10:", "pfifo_fast")
        return self

    def cut(self, host, up=False):
        """Takes a host off the bridge (its veth down), or puts it back."""
        self.run(host, "ip", "link", "set", self.veth[host], "up" if up else "down")

    def https_call(self, pki, url, method, path, body=None, timeout=60):
        """(status, parsed body) of a request from the client namespace (curl)."""
        args = ["curl", "-s", "-m", str(timeout), "-X", method, "--cacert", str(pki / "ca.crt"),
                "--cert", str(pki / "client.crt"), "--key", str(pki / "client.key"),
                "-w", "\n%{http_code}", url + path]
        if body is not None:
            args += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
        r = self.run("client", *args, check=False)
        if r.returncode:
            raise ConnectionError(f"curl {url}{path}: exit {r.returncode}")
        text, _, code = r.stdout.rpartition("\n")
        return int(code), (json.loads(text) if text.strip() else None)

    def down(self):
        for ns in self.ns.values():
            self.sh("ip", "netns", "del", ns, check=False)


@contextlib.contextmanager
def net_lab(tmp_path, hosts):
    """A Lab whose hosts are the namespaces of a ClusterNet of those hosts; the lab
    stopped and the namespaces removed on the way out, even on failure."""
    net = ClusterNet(hosts=hosts).up()
    lab = None
    try:
        lab = Lab(tmp_path, net=net)
        yield lab
    finally:
        try:
            if lab:
                lab.stop()
        finally:
            net.down()


# ---- the cluster tests' shared steps, through godwit cluster ----

def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def js(lab, *args, **kw):
    return json.loads(ok(lab.cluster(*args, "--json", **kw)))


def vms(lab, **kw):
    return {v["name"]: v for v in js(lab, "vms", **kw)["vms"]}


def history(lab, **kw):
    return js(lab, "tasks", **kw)["history"]


def create(lab, name, *extra, memory="64M", cmdline=CMDLINE, **kw):
    return ok(lab.cluster("create", name, "--kernel", TESTGUEST, "--memory", memory, "--cpus",
                          "2", "--cmdline", cmdline, *extra, **kw))


def running_on(lab, name, host, **kw):
    v = vms(lab, **kw).get(name)
    return v and v["host"] == host and v["state"] == "running" and v["task"] is None


def create_on(lab, host, others, names, *extra, manager=None, **create_kw):
    """VMs created on host (the other hosts held in maintenance meanwhile), running."""
    kw = {"manager": manager} if manager else {}
    for h in others:
        ok(lab.cluster("maintenance", "enter", h, **kw))
    for n in names:
        create(lab, n, *extra, **create_kw, **kw)
    for h in others:
        ok(lab.cluster("maintenance", "exit", h, **kw))
    wait_until(f"{names} run on {host}",
               lambda: all(running_on(lab, n, host, **kw) for n in names))


def overlap_max(tasks, host=None):
    """Most moves in flight at once, from the tasks' own start and end times (a task holds
    its slots from its start to its end): of one host (as source or destination), or of
    the whole cluster (host None)."""
    marks = []
    for t in tasks:
        if (host is None or host in (t["src"], t["dst"])) and "started_ms" in t:
            marks += [(t["started_ms"], 1), (t["ended_ms"], -1)]
    cur = peak = 0
    # An end and a start at the same millisecond: the end first (the slot was free).
    for _, d in sorted(marks):
        cur += d
        peak = max(peak, cur)
    return peak


def power_scripts(pw, off, on, agents):
    """Writes the power-off and power-on scripts (their text's {dir} is pw) and, for each
    host of agents ({name: Node}), its agent's PID and command line, which they use."""
    for name, text in (("off", off), ("on", on)):
        (pw / name).write_text(text.replace("{dir}", str(pw)))
        os.chmod(pw / name, 0o755)
    for h, a in agents.items():
        (pw / f"{h}.pid").write_text(str(a.proc.pid))
        (pw / f"{h}.cmd").write_text(shlex.join(a.args))


def keeps_running(lab, name):
    """The VM's memtouch goes on passing on the host that owns it now."""
    v = vms(lab)[name]
    console = lab.dir / f"h-{v['host']}" / f"{name}.console"
    n = passes(console)
    wait_until(f"{name} passes on {v['host']}", lambda: passes(console) > n, timeout=60)
