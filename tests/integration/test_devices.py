"""Devices that move with the VM (needs /dev/kvm and root for the test network).

netecho answers UDP from a client namespace while the VM moves host-a -> host-b ->
host-a; blklog appends flushed records to a disk on "shared storage" (a file both
hosts open) through the same moves; a locked image refuses a second VM.
"""
import os
import re
import struct
import subprocess
import threading
import time

import pytest

from godwit_vm import TESTGUEST, Godwit, run_godwit
from netlab import NetLab

pytestmark = pytest.mark.kvm

RECORD = 512
MAGIC = 0x474F44574C4F4721  # what blklog writes first in each record (see its README)
# blklog at 512 KiB/s (a record a request): unpaced it appends as fast as the host flushes
# and can fill these 16-64 MiB disks before a test ends; paced they last 30 s and more.
BLKLOG = "blklog 1 1024"


@pytest.fixture
def lab():
    if os.geteuid() != 0:
        pytest.skip("the test network needs root")
    net = NetLab()
    try:
        yield net.up()
    finally:
        net.down()


def NsGodwit(tmp_path, lab, ns, args, name):
    """A godwit process inside a namespace (still stopped by its own PID)."""
    return Godwit(tmp_path, args, name, prefix=("ip", "netns", "exec", lab.ns[ns]))


def start_vm(tmp_path, lab, procs, cmdline, disk=None, net=True, name="a0"):
    api = str(tmp_path / f"{name}.sock")
    console = tmp_path / f"{name}.console"
    args = ["run", "--kernel", TESTGUEST, "--memory", "256M", "--cpus", "2", "--cmdline",
            cmdline, "--api", api, "--console", f"file:{console}"]
    if net:
        args += ["--net", f"tap={lab.tap['host-a']},mac=52:54:00:12:34:56"]
    if disk:
        args += ["--disk", str(disk)]
    g = NsGodwit(tmp_path, lab, "host-a", args, name)
    procs.append(g)
    return g


def receiver(tmp_path, lab, procs, side, name, disk=None, net=True, extra=(), timeout=10):
    api = str(tmp_path / f"{name}.sock")
    console = tmp_path / f"{name}.console"
    args = ["receive", "--listen", f"tcp:{lab.ip[side]}:7777", "--api", api,
            "--console", f"file:{console}", *extra]
    if net:
        args += ["--net", f"tap={lab.tap[side]}"]
    if disk:
        args += ["--disk", str(disk)]
    g = NsGodwit(tmp_path, lab, side, args, name)
    procs.append(g)
    deadline = time.monotonic() + timeout
    while "waiting for an incoming migration" not in g.stderr():
        assert g.proc.poll() is None and time.monotonic() < deadline, g.stderr()
        time.sleep(0.05)
    return g


def migrate(src, lab, side, extra=(), timeout=120):
    res = run_godwit(["migrate", "--api", src.api_path, "--to", f"tcp:{lab.ip[side]}:7777",
                      "--json", *extra], timeout=timeout)
    assert res.returncode == 0, res.stderr + res.stdout
    assert src.wait_exit(timeout=10) == 0


class UdpProbe(threading.Thread):
    """Sends a numbered UDP request every millisecond from the client namespace."""

    SCRIPT = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
dst = (sys.argv[1], 7)
seq, end = 0, time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    s.sendto(struct.pack("!Q", seq), dst)
    seq += 1
    t = time.monotonic() + 0.001
    while time.monotonic() < t:
        try:
            data, src = s.recvfrom(64)
            if src[0] == dst[0] and len(data) == 8:
                print(struct.unpack("!Q", data)[0], time.monotonic(), flush=True)
        except BlockingIOError:
            pass
"""

    def __init__(self, lab, seconds):
        super().__init__(daemon=True)
        self.cmd = ["ip", "netns", "exec", lab.ns["client"], "/usr/bin/python3", "-c",
                    self.SCRIPT, lab.ip["guest"], str(seconds)]
        self.seconds = seconds
        self.replies = []

    def run(self):
        out = subprocess.run(self.cmd, capture_output=True, text=True,
                             timeout=self.seconds + 30).stdout
        self.replies = [(int(a), float(b)) for a, b in (l.split() for l in out.splitlines())]

    def longest_gap_ms(self):
        times = [t for _, t in self.replies]
        return max((b - a for a, b in zip(times, times[1:])), default=0) * 1000


def test_netecho_keeps_answering_across_moves(tmp_path, lab, procs):
    vm = start_vm(tmp_path, lab, procs, f"netecho {lab.ip['guest']}")
    vm.wait_for(r"netecho: up mac=52:54:00:12:34:56", timeout=60)
    probe = UdpProbe(lab, 30)
    probe.start()
    time.sleep(4)
    b = receiver(tmp_path, lab, procs, "host-b", "b1")
    migrate(vm, lab, "host-b")
    moved_b = time.monotonic()
    time.sleep(4)
    a = receiver(tmp_path, lab, procs, "host-a", "a2")
    migrate(b, lab, "host-a")
    moved_a = time.monotonic()
    probe.join(timeout=90)
    # Same MAC and IP: answers keep coming after each move, from the new host.
    assert any(t > moved_b + 1 and t < moved_a for _, t in probe.replies), "none from host-b"
    assert any(t > moved_a + 1 for _, t in probe.replies), "none after moving back"
    print(f"longest reply gap across two moves: {probe.longest_gap_ms():.1f} ms")
    assert a.proc.poll() is None


def read_records(path):
    data = open(path, "rb").read()
    recs = []
    for k in range(len(data) // RECORD):
        magic, n = struct.unpack_from("<QQ", data, k * RECORD)
        if magic != MAGIC:
            break
        recs.append(n)
    return recs


def test_blklog_loses_no_acknowledged_record(tmp_path, lab, procs):
    disk = tmp_path / "shared.img"
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    vm = start_vm(tmp_path, lab, procs, BLKLOG, disk=disk, net=False)
    vm.wait_for(r"blklog: acked \d+", count=3, timeout=60)
    b = receiver(tmp_path, lab, procs, "host-b", "b1", disk=disk, net=False)
    migrate(vm, lab, "host-b")
    b.wait_for(r"blklog: acked \d+", count=3, timeout=60)
    a = receiver(tmp_path, lab, procs, "host-a", "a2", disk=disk, net=False)
    migrate(b, lab, "host-a")
    a.wait_for(r"blklog: acked \d+", count=3, timeout=60)
    acked = max(int(n) for n in re.findall(r"blklog: acked (\d+)", a.output()))
    a.stop()
    recs = read_records(disk)
    assert recs[: acked + 1] == list(range(acked + 1)), "a flushed record is missing or out of order"


def test_locked_image_refuses_a_second_vm(tmp_path, lab, procs):
    disk = tmp_path / "shared.img"
    with open(disk, "wb") as f:
        f.truncate(16 << 20)
    vm = start_vm(tmp_path, lab, procs, BLKLOG, disk=disk, net=False)
    vm.wait_for(r"blklog: acked \d+", timeout=60)
    res = run_godwit(["run", "--kernel", TESTGUEST, "--disk", str(disk)], timeout=30)
    assert res.returncode != 0
    assert "in use by another process" in res.stderr


def test_failed_migration_keeps_the_lock_and_the_writes(tmp_path, lab, procs):
    disk = tmp_path / "shared.img"
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    vm = start_vm(tmp_path, lab, procs, BLKLOG, disk=disk, net=False)
    vm.wait_for(r"blklog: acked \d+", timeout=60)
    # Nobody listens on host-b: the migration fails, the VM and its lock stay here.
    res = run_godwit(["migrate", "--api", vm.api_path, "--to", f"tcp:{lab.ip['host-b']}:7777"],
                     timeout=60)
    assert res.returncode != 0
    n = len(re.findall(r"blklog: acked", vm.output()))
    vm.wait_for(r"blklog: acked \d+", count=n + 3, timeout=60)
    res = run_godwit(["run", "--kernel", TESTGUEST, "--disk", str(disk)], timeout=30)
    assert "in use by another process" in res.stderr
