"""A cluster on one machine for tests: a real etcd, agents and managers on loopback ports.

Every process is started here, remembered by PID and stopped by PID; every wait is
bounded in time. VMs are started by agents (not by the test), in their own sessions so
that they outlive an agent: `Lab.stop` ends them too, by the PIDs their agents wrote.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import time

from godwit_vm import GODWIT, free_port

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


class Etcd:
    """One etcd member on free loopback ports with its data in tmp_path; with
    `cluster` (name=peer URL for every member), one member of that cluster."""

    def __init__(self, tmp_path, name="etcd", port=None, peer_port=None, cluster=None):
        self.dir = tmp_path / name
        self.dir.mkdir()
        self.port = port or free_port()
        self.peer_port = peer_port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(self.dir / "log", "wb")
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.proc = subprocess.Popen(
            [ETCD, "--name", name, "--data-dir", str(self.dir / "data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", cluster or f"{name}={peer}"],
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
        r = subprocess.run(["curl", "-s", "-m", "2", "-X", "POST", self.url + "/v3/kv/range",
                            "-d", '{"key":"AA=="}'], capture_output=True, text=True)
        return r.returncode == 0 and '"header"' in r.stdout

    def stop(self, sig=signal.SIGTERM):
        stop_pid(self.proc, sig)
        if not self.log.closed:
            self.log.close()


class EtcdCluster:
    """n etcd members of one cluster; `url` names them all, comma-separated."""

    def __init__(self, tmp_path, n):
        ports = [(free_port(), free_port()) for _ in range(n)]
        cluster = ",".join(f"e{i}=http://127.0.0.1:{pp}" for i, (_, pp) in enumerate(ports))
        self.members = []
        try:
            for i, (cp, pp) in enumerate(ports):
                self.members.append(Etcd(tmp_path, f"e{i}", cp, pp, cluster))
            for m in self.members:
                m.wait()
        except BaseException:
            self.stop()
            raise
        self.url = ",".join(m.url for m in self.members)

    def stop(self):
        for m in self.members:
            m.stop()


def etcd_get(url, key, prefix=False):
    """{key: value} of a key (or every key under a prefix) read straight from etcd."""
    import base64
    body = {"key": base64.b64encode(key.encode()).decode()}
    if prefix:
        end = key[:-1] + chr(ord(key[-1]) + 1)
        body["range_end"] = base64.b64encode(end.encode()).decode()
    r = subprocess.run(["curl", "-s", "-m", "5", "-X", "POST", url + "/v3/kv/range", "-d",
                        json.dumps(body)], capture_output=True, text=True, check=True)
    out = {}
    for kv in json.loads(r.stdout).get("kvs", []):
        out[base64.b64decode(kv["key"]).decode()] = base64.b64decode(
            kv.get("value", "")).decode()
    return out


def etcd_put(url, key, value):
    import base64
    body = {"key": base64.b64encode(key.encode()).decode(),
            "value": base64.b64encode(value.encode()).decode()}
    subprocess.run(["curl", "-s", "-m", "5", "-X", "POST", url + "/v3/kv/put", "-d",
                    json.dumps(body)], capture_output=True, check=True)


class Node:
    """A godwit agent or manager process we started."""

    def __init__(self, lab, kind, name, args):
        self.lab = lab
        self.kind = kind
        self.name = name
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.log_path = lab.dir / f"{kind}-{name}.log"
        self.args = [GODWIT, kind, "--etcd", lab.etcd.url, "--listen", f"127.0.0.1:{self.port}",
                     "--pki", str(lab.pki), *args]
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
            return True
        except OSError:
            return False

    def logs(self):
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def call(self, method, path, body=None, cert="client", timeout=60):
        """(status, parsed body) of one request with a certificate of the cluster."""
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
    try:
        data = None if body is None else json.dumps(body)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, (json.loads(raw) if raw else None)
    finally:
        conn.close()


class Lab:
    """etcd, the cluster's certificates, agents and managers; all stopped by PID."""

    def __init__(self, tmp_path, etcd_members=1):
        self.dir = tmp_path
        self.pki = tmp_path / "pki"
        self.nodes = []
        self.state_dirs = []
        self.etcd = Etcd(tmp_path) if etcd_members == 1 else EtcdCluster(tmp_path, etcd_members)
        r = subprocess.run([GODWIT, "cluster", "init", "--dir", str(self.pki)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr

    def agent(self, name, *args, memory="4G", cpus=8, state_dir=None):
        sd = state_dir or self.dir / f"h-{name}"
        if sd not in self.state_dirs:
            self.state_dirs.append(sd)
        n = Node(self, "agent", name, ["--name", name, "--state-dir", str(sd), "--memory",
                                       memory, "--cpus", str(cpus), "--ttl", "4", *args])
        n.state_dir = sd
        self.nodes.append(n)
        return n

    def manager(self, name="m1", *args):
        n = Node(self, "manager", name, ["--id", name, *args])
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

    def cluster(self, *args, manager=None, timeout=120):
        m = manager or next(n for n in self.nodes if n.kind == "manager"
                            and n.proc.poll() is None)
        return subprocess.run([GODWIT, "cluster", "--manager", m.url, "--pki", str(self.pki),
                               *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

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
