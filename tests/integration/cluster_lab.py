"""A cluster on one machine for tests: a real etcd, agents and managers on loopback ports.

Every process is started here, remembered by PID and stopped by PID; every wait is
bounded in time. VMs are started by agents (not by the test), in their own sessions so
that they outlive an agent: `Lab.stop` ends them too, by the PIDs their agents wrote.
"""
import json
import os
import shutil
import signal
import subprocess
import time

from godwit_vm import GODWIT, ROOT, free_port

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
    """One etcd member on free loopback ports with its data in tmp_path."""

    def __init__(self, tmp_path, name="etcd"):
        self.dir = tmp_path / name
        self.dir.mkdir()
        self.port = free_port()
        self.peer_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(self.dir / "log", "wb")
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.proc = subprocess.Popen(
            [ETCD, "--name", name, "--data-dir", str(self.dir / "data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"{name}={peer}"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
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

    def stop(self):
        stop_pid(self.proc)
        self.log.close()
