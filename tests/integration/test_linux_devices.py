"""Devices that move with a Linux guest (issue: devices; needs Linux user space, so KVM
with hardware-backed or nested virtualization: `GODWIT_NESTED=1 make test-linux` on a
kvm_pvm host, see docs/linux-guests.md).

While a Linux guest moves host-a -> host-b -> host-a over the test network: it appends
fsynced records to a file on ext4 on virtio-blk, the disk image being "shared storage"
(one file both hosts open), and every record it acknowledged is in the file afterwards,
in order, with `e2fsck -n` clean; or it serves a TCP connection from the client
namespace, one request a second, which survives both moves with its MAC and IP.
"""
import re
import subprocess
import time

import pytest

from test_devices import NsGodwit, lab, migrate, receiver  # noqa: F401 (fixtures)
from test_linux import CMDLINE, INITRD, STEP_TIMEOUT, TIMEOUT, VMLINUX, _need_image

pytestmark = [pytest.mark.linux, pytest.mark.kvm]

# How long the guest writes (guest clock, s): long enough for two moves in the nested VM.
WRITE_SECONDS = 60
# Two moves that each send the 64 MiB image too: in the rig, with the host busy, 60 s ran
# out during the first (the writer acknowledged one record on the second host).
WRITE_SECONDS_DISK_TO = 150
# init's arguments cannot hold double quotes (docs/linux-guests.md), so none here.
# `sync FILE` is fsync(2) in busybox; "acked N" only once record N is on the disk.
RECORDS = ("n=0; while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done; "
           "[ -b /dev/vda ] || { dmesg | grep -i -e virtio -e vda -e mmio; ls /sys/bus/virtio/devices; exit 2; }; "
           "mkdir -p /mnt; mount -t ext4 /dev/vda /mnt || exit 3; "
           "end=$(($(date +%s)+@SECONDS@)); i=0; "
           "while [ $(date +%s) -lt $end ]; do "
           "echo rec $i >> /mnt/log; sync /mnt/log || exit 4; echo acked $i; "
           "i=$((i+1)); sleep 0.1; done; "
           "umount /mnt || exit 5; echo written $i")


def _acked(*vms):
    """The records acknowledged on the consoles of vms, one guest moved from each to the
    next: their output joined, as a move can cut a line (`acked 2` on one host, `2` on
    the next), and only complete lines counted."""
    text = "".join(vm.output() for vm in vms)
    return [int(n) for n in re.findall(r"^acked (\d+)\r?\n", text, re.M)]


def _start_writer(tmp_path, lab, procs, image, seconds=WRITE_SECONDS):  # noqa: F811
    """A fresh ext4 on image and the Linux guest appending records to it on host-a for
    `seconds`, once it has acknowledged a few."""
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, timeout=60)

    api = str(tmp_path / "a0.sock")
    a0 = NsGodwit(tmp_path, lab, "host-a",
                  ["run", "--kernel", VMLINUX, "--initrd", INITRD, "--cmdline", CMDLINE,
                   "--memory", "512M", "--cpus", "2", "--disk", str(image), "--api", api,
                   "--console", f"file:{tmp_path / 'a0.console'}", "--", "sh", "-c",
                   RECORDS.replace("@SECONDS@", str(seconds))], "a0")
    procs.append(a0)
    a0.wait_for(r"^acked 3\r?$", timeout=TIMEOUT)
    return a0


def _check_records(a0, b, a1, image, seconds=WRITE_SECONDS):
    """Once the writer has ended on a1: every record it acknowledged on a0, b and a1 is in
    image's /log, in order, and e2fsck finds image clean."""
    m = a1.wait_for(r"^written (\d+)\r?$", timeout=seconds + STEP_TIMEOUT)
    written = int(m[0])
    # The writer's status from init's console line: the VM's exit status is 0 either way
    # in the nested rig, where a moved guest's godwit-exit faults and init powers off
    # (docs/linux-guests.md, "Exit status").
    a1.wait_exit(timeout=STEP_TIMEOUT)
    assert re.search(r"^init: the command ended with status 0\r?$", a1.output(), re.M), \
        a1.output()[-2000:] + a1.stderr()[-2000:]

    acked = _acked(a0, b, a1)
    assert acked and acked == sorted(set(acked)), acked
    assert acked[-1] == written - 1, (acked[-5:], written)
    # Each side of each move acknowledged records: the moves happened while it wrote.
    assert _acked(b) and _acked(a1), (len(_acked(a0)), len(_acked(b)), len(_acked(a1)))

    fsck = subprocess.run(["e2fsck", "-n", "-f", str(image)], capture_output=True, text=True,
                          timeout=60)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    log = subprocess.run(["debugfs", "-R", "cat /log", str(image)], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert log.splitlines() == [f"rec {i}" for i in range(written)], log[-500:]


def test_ext4_records_survive_two_moves_and_fsck_is_clean(tmp_path, lab, procs):  # noqa: F811
    _need_image()
    image = tmp_path / "shared.img"
    a0 = _start_writer(tmp_path, lab, procs, image)

    b = receiver(tmp_path, lab, procs, "host-b", "b", disk=image, net=False)
    migrate(a0, lab, "host-b")
    b.wait_for(r"^acked \d+\r?$", timeout=STEP_TIMEOUT, count=3)

    a1 = receiver(tmp_path, lab, procs, "host-a", "a1", disk=image, net=False)
    migrate(b, lab, "host-a")
    _check_records(a0, b, a1, image)


def test_ext4_moves_with_its_disk_between_hosts_that_share_none(tmp_path, lab, procs):  # noqa: F811
    """The same writer, moved host-a -> host-b -> host-a with `--disk-to`: each move
    sends the image through the stream into the destination's own --disk-dir (a new
    file each time), mirroring the guest's writes meanwhile. The last copy holds every
    acknowledged record, in order, and e2fsck finds it clean."""
    _need_image()
    dirs = {n: tmp_path / n for n in ("a", "b", "a2")}
    for d in dirs.values():
        d.mkdir()
    image = dirs["a"] / "vm.img"
    a0 = _start_writer(tmp_path, lab, procs, image, WRITE_SECONDS_DISK_TO)

    # Started while the guest runs: in the nested VM on a busy host that took over 10 s.
    b = receiver(tmp_path, lab, procs, "host-b", "b", net=False,
                 extra=["--disk-dir", str(dirs["b"])], timeout=STEP_TIMEOUT)
    migrate(a0, lab, "host-b", ["--disk-to", "0=vm.img"], timeout=STEP_TIMEOUT)
    b.wait_for(r"^acked \d+\r?$", timeout=STEP_TIMEOUT, count=3)

    a1 = receiver(tmp_path, lab, procs, "host-a", "a1", net=False,
                  extra=["--disk-dir", str(dirs["a2"])], timeout=STEP_TIMEOUT)
    migrate(b, lab, "host-a", ["--disk-to", "0=vm.img"], timeout=STEP_TIMEOUT)
    _check_records(a0, b, a1, dirs["a2"] / "vm.img", WRITE_SECONDS_DISK_TO)
    # Each source's file was left as it was: the first holds the records written before
    # the first move, a prefix of the last copy's.
    first = subprocess.run(["debugfs", "-R", "cat /log", str(image)], capture_output=True,
                           text=True, timeout=60).stdout.splitlines()
    assert first == [f"rec {i}" for i in range(len(first))], first[-5:]


# The guest's TCP server: busybox nc echoing one connection (docs/linux-guests.md).
SERVER = ("n=0; while ! ip link show eth0 >/dev/null 2>&1 && [ $n -lt 100 ]; do sleep 0.1; "
          "n=$((n+1)); done; ip addr add {ip}/24 dev eth0 && ip link set eth0 up || exit 2; "
          "echo net up; nc -l -p 7000 -e cat; echo server done")


class TcpProbe:
    """From the client namespace: one TCP connection to the guest, a numbered line a
    second, each answered before the next; prints "N SECONDS" per answer, "error ..." and
    exits 1 on anything else."""

    SCRIPT = r"""
import socket, sys, time
dst, count = (sys.argv[1], 7000), int(sys.argv[2])
deadline = time.monotonic() + 60
while True:
    try:
        s = socket.create_connection(dst, timeout=2)
        break
    except OSError as e:
        if time.monotonic() > deadline:
            print("error connect", e, flush=True); sys.exit(1)
        time.sleep(0.2)
s.settimeout(60)
f = s.makefile("rb")
for i in range(count):
    t = time.monotonic()
    s.sendall(b"req %d\n" % i)
    line = f.readline()
    if line != b"req %d\n" % i:
        print("error reply", i, line, flush=True); sys.exit(1)
    print(i, time.monotonic() - t, flush=True)
    time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))
"""

    def __init__(self, lab, count):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.ns["client"], "/usr/bin/python3", "-c", self.SCRIPT,
             lab.ip["guest"], str(count)], stdout=subprocess.PIPE, text=True)
        self.lines = []

    def wait_answers(self, n, timeout):
        """Reads lines until n answers in all (False on error, exit or timeout)."""
        deadline = time.monotonic() + timeout
        while len(self.answers()) < n and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                return False
            self.lines.append(line.strip())
            if line.startswith("error"):
                return False
        return len(self.answers()) >= n

    def answers(self):
        return [(int(a), float(b)) for a, b in
                (l.split() for l in self.lines if not l.startswith("error"))]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def test_tcp_connection_survives_two_moves(tmp_path, lab, procs):  # noqa: F811
    _need_image()
    mac = "52:54:00:12:34:56"
    a0 = NsGodwit(tmp_path, lab, "host-a",
                  ["run", "--kernel", VMLINUX, "--initrd", INITRD, "--cmdline", CMDLINE,
                   "--memory", "512M", "--cpus", "2", "--net",
                   f"tap={lab.tap['host-a']},mac={mac}", "--api", str(tmp_path / "a0.sock"),
                   "--console", f"file:{tmp_path / 'a0.console'}", "--", "sh", "-c",
                   SERVER.format(ip=lab.ip["guest"])], "a0")
    procs.append(a0)
    a0.wait_for(r"^net up\r?$", timeout=TIMEOUT)
    probe = TcpProbe(lab, 40)
    try:
        assert probe.wait_answers(3, STEP_TIMEOUT), probe.lines
        b = receiver(tmp_path, lab, procs, "host-b", "b")
        migrate(a0, lab, "host-b")
        assert probe.wait_answers(len(probe.answers()) + 3, STEP_TIMEOUT), probe.lines
        a1 = receiver(tmp_path, lab, procs, "host-a", "a1")
        migrate(b, lab, "host-a")
        assert probe.wait_answers(len(probe.answers()) + 3, STEP_TIMEOUT), probe.lines
    finally:
        probe.stop()
    answers = probe.answers()
    assert [i for i, _ in answers] == list(range(len(answers))), probe.lines
    assert a1.proc.poll() is None, a1.stderr()[-2000:]
    longest = max(s for _, s in answers)
    print(f"TCP: {len(answers)} requests over two moves, longest answer {longest * 1000:.0f} ms")
