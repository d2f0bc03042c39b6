"""virtio-blk and virtio-net state between format 1.5 and this godwit: the godwit of
commit 4ac2b32 (the last before 1.6, whose virtio STATE sections were the x86-64 image
of a C struct) is built from this repository's history. A 1.5 source's live move and
its snapshot load here, read field by field from the old layout; a 1.5 destination
refuses this source's version-2 sections, and the source keeps its VM."""
import re
import time

import pytest

from godwit_vm import TESTGUEST, Godwit, run_godwit
from test_devices import BLKLOG, UdpProbe, lab, read_records, receiver  # noqa: F401
from test_interop import build_godwit, runs

pytestmark = pytest.mark.kvm

OLD_COMMIT = "4ac2b32"


@pytest.fixture(scope="module")
def old_godwit(tmp_path_factory):
    """Path to the 1.5 godwit, built once for the module."""
    return build_godwit(OLD_COMMIT, tmp_path_factory)


def start_vm(tmp_path, lab, procs, cmdline, disk, binary=None, name="a0"):  # noqa: F811
    """A test guest with a disk and a NIC on host-a, run by binary (default: this one)."""
    args = ["run", "--kernel", TESTGUEST, "--memory", "256M", "--cpus", "2",
            "--cmdline", cmdline, "--api", str(tmp_path / f"{name}.sock"),
            "--console", f"file:{tmp_path / f'{name}.console'}",
            "--net", f"tap={lab.tap['host-a']},mac=52:54:00:12:34:56", "--disk", str(disk)]
    prefix = ["ip", "netns", "exec", lab.ns["host-a"]] + (runs(binary) if binary else [])
    g = Godwit(tmp_path, args, name, prefix=prefix)
    procs.append(g)
    return g


def new_disk(tmp_path):
    disk = tmp_path / "shared.img"
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    return disk


def test_from_a_1_5_source(tmp_path, lab, procs, old_godwit):  # noqa: F811
    disk = new_disk(tmp_path)
    vm = start_vm(tmp_path, lab, procs, f"netecho {lab.ip['guest']}", disk, old_godwit)
    vm.wait_for(r"netecho: up mac=52:54:00:12:34:56", timeout=60)
    probe = UdpProbe(lab, 14)
    probe.start()
    time.sleep(3)
    b = receiver(tmp_path, lab, procs, "host-b", "b1", disk=disk)
    res = run_godwit(["migrate", "--api", vm.api_path, "--to",
                      f"tcp:{lab.ip['host-b']}:7777"], timeout=120)
    assert res.returncode == 0, res.stderr + res.stdout
    moved = time.monotonic()
    assert vm.wait_exit(timeout=10) == 0
    probe.join(timeout=60)
    assert any(t > moved + 1 for _, t in probe.replies), "no answer after the move"
    assert b.proc.poll() is None, b.stderr()


def test_a_1_5_snapshot_loads(tmp_path, lab, procs, old_godwit):  # noqa: F811
    disk = new_disk(tmp_path)
    vm = start_vm(tmp_path, lab, procs, BLKLOG, disk, old_godwit)
    vm.wait_for(r"blklog: acked \d+", count=3, timeout=60)
    snap = tmp_path / "old.gws"
    res = run_godwit(["migrate", "--api", vm.api_path, "--to", f"file:{snap}"], timeout=120)
    assert res.returncode == 0, res.stderr + res.stdout
    assert vm.wait_exit(timeout=10) == 0
    dump = run_godwit(["dump-stream", str(snap)], timeout=60)
    assert dump.returncode == 0 and "major=1 minor=5" in dump.stdout, dump.stdout[-2000:]
    assert "id=virtio-blk instance=0 version=1" in dump.stdout
    assert "id=virtio-net instance=0 version=1" in dump.stdout
    g = Godwit(tmp_path, ["receive", "--from", f"file:{snap}", "--disk", str(disk), "--net",
                          f"tap={lab.tap['host-a']}", "--console",
                          f"file:{tmp_path / 'r.console'}"], "r",
               prefix=("ip", "netns", "exec", lab.ns["host-a"]))
    procs.append(g)
    g.wait_for(r"blklog: acked \d+", count=3, timeout=60)
    acked = max(int(n) for n in re.findall(r"blklog: acked (\d+)", g.output()))
    g.stop()
    recs = read_records(disk)
    assert recs[: acked + 1] == list(range(acked + 1)), "a flushed record is missing"


def test_to_a_1_5_destination(tmp_path, lab, procs, old_godwit):  # noqa: F811
    disk = new_disk(tmp_path)
    vm = start_vm(tmp_path, lab, procs, BLKLOG, disk)
    vm.wait_for(r"blklog: acked \d+", count=2, timeout=60)
    b = Godwit(tmp_path, ["receive", "--listen", f"tcp:{lab.ip['host-b']}:7777", "--disk",
                          str(disk), "--net", f"tap={lab.tap['host-b']}", "--console",
                          f"file:{tmp_path / 'b1.console'}"], "b1",
               prefix=["ip", "netns", "exec", lab.ns["host-b"]] + runs(old_godwit))
    procs.append(b)
    deadline = time.monotonic() + 10
    while "waiting for an incoming migration" not in b.stderr():
        assert b.proc.poll() is None and time.monotonic() < deadline, b.stderr()
        time.sleep(0.05)
    res = run_godwit(["migrate", "--api", vm.api_path, "--to",
                      f"tcp:{lab.ip['host-b']}:7777"], timeout=120)
    assert res.returncode != 0
    assert "bad state section 'virtio-" in res.stdout + res.stderr
    assert "version 2, this godwit reads 1" in res.stdout + res.stderr
    # The source took its disk back and goes on writing.
    before = len(re.findall(r"blklog: acked", vm.output()))
    vm.wait_for(r"blklog: acked \d+", count=before + 2, timeout=60)
    assert vm.proc.poll() is None
