"""Moving a running VM's disk to a new image (godwit disk-move, PUT /vm/disks/ID/move;
docs/devices.md, "Moving a disk"). Needs /dev/kvm.

The test guest's blklog writes and flushes numbered records throughout each move over
an image whose other sectors hold known random data: after it, every acknowledged
record is in the new image, and every sector blklog did not reach still holds the data
the old image had. A cancel (SIGINT to the client, or --cancel) and every failure
leave the VM on its image and no new file.
"""
import fcntl
import json
import os
import random
import re
import signal
import struct
import subprocess
import time

import pytest

from godwit_vm import GODWIT, Godwit, api, run_godwit
from test_devices import RECORD, read_records
from test_disk_handover import locked_elsewhere

pytestmark = pytest.mark.kvm

MiB = 1 << 20
FINAL = ("completed", "failed", "cancelled")


def random_image(path, size, seed):
    """An image of `size` bytes of random data from `seed` (read back with the same)."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            f.write(rng.randbytes(MiB))


# blklog's pace in the tests (records a second; 2 MiB/s in batches of 8): unpaced it appends
# as fast as the host flushes, up to 30 MB/s here, and filled a 32 MiB disk before a test's
# end (guest/testguest/README.md). Paced, a 64 MiB disk lasts half a minute and every move
# still mirrors hundreds of its writes a second.
BLKLOG = "blklog 8 4096"


def start_vm(tmp_path, procs, img, cmdline=BLKLOG, name="vm"):
    vm = Godwit.run_testguest(tmp_path, cmdline, name=name, extra=["--disk", str(img)])
    procs.append(vm)
    if cmdline.startswith("blklog"):
        vm.wait_for(r"blklog: acked \d+", count=3, timeout=60)
    return vm


def acked(vm):
    return max(int(n) for n in re.findall(r"blklog: acked (\d+)", vm.output()))


def wait_move(vm, disk=0, timeout=120, until=FINAL):
    deadline = time.monotonic() + timeout
    while True:
        status, st = vm.api("GET", f"/vm/disks/{disk}/move")
        assert status == 200, st
        if st["status"] in until:
            return st
        assert time.monotonic() < deadline, st
        time.sleep(0.05)


def wait_copying(vm, disk=0):
    """Until the pass has copied something (and not yet ended)."""
    deadline = time.monotonic() + 30
    while True:
        st = wait_move(vm, disk, until=("copying",) + FINAL)
        assert st["status"] == "copying", st
        if st["copied_bytes"] > 0:
            return st
        assert time.monotonic() < deadline, st
        time.sleep(0.05)


def more_acks(vm, n=3):
    vm.wait_for(r"blklog: acked \d+", count=len(re.findall(r"blklog: acked", vm.output())) + n,
                timeout=60)


def check_image(path, seed, size, last_acked):
    """Records 0..last_acked are there; past what blklog wrote, the original data."""
    recs = read_records(path)
    assert recs[: last_acked + 1] == list(range(last_acked + 1)), \
        f"{path}: an acknowledged record is missing or out of order"
    rng = random.Random(seed)
    # blklog may have written a batch (8 records) past the last valid one: skip 64 KiB.
    start = (len(recs) * RECORD + 64 * 1024 + MiB - 1) // MiB * MiB
    with open(path, "rb") as f:
        for off in range(0, size, MiB):
            want = rng.randbytes(MiB)
            if off < start:
                continue
            f.seek(off)
            assert f.read(MiB) == want, f"{path}: data at {off} differs from the original"


def test_move_under_blklog_loses_no_acknowledged_write(tmp_path, procs):
    old, new, size = tmp_path / "old.img", tmp_path / "new.img", 128 * MiB
    random_image(old, size, seed=20)
    vm = start_vm(tmp_path, procs, old)
    # Slowed down so that blklog writes, in flight and mirrored, all through the pass.
    res = run_godwit(["disk-move", "--api", vm.api_path, "--disk", "0", "--to", str(new),
                      "--max-bandwidth", "64M", "--json"], timeout=120)
    out = json.loads(res.stdout)
    assert res.returncode == 0 and out["status"] == "completed", res.stdout + res.stderr
    assert out["from"] == str(old) and out["to"] == str(new)
    assert out["copied_bytes"] == size and out["data_bytes"] == size
    assert out["mirrored_requests"] > 0, out
    # The new image is this VM's (locked), the old one nobody's.
    assert locked_elsewhere(new) and not locked_elsewhere(old)
    more_acks(vm)
    assert f"moved to {new}" in vm.stderr()
    vm.stop()
    check_image(new, 20, size, acked(vm))
    assert os.stat(new).st_size == size


def test_cancel_keeps_the_disk_and_removes_the_copy(tmp_path, procs):
    old, new, size = tmp_path / "old.img", tmp_path / "new.img", 64 * MiB
    random_image(old, size, seed=21)
    vm = start_vm(tmp_path, procs, old)

    # SIGINT to the client cancels the move and it reports so (exit 1).
    cli = subprocess.Popen([GODWIT, "disk-move", "--api", vm.api_path, "--disk", "0", "--to",
                            str(new), "--max-bandwidth", "4M", "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_copying(vm)
        assert new.exists()
        cli.send_signal(signal.SIGINT)
        out, err = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    st = json.loads(out)
    assert cli.returncode == 1 and st["status"] == "cancelled", out + err
    assert 0 < st["copied_bytes"] < size
    assert not new.exists()

    # --cancel from another client.
    status, body = vm.api("PUT", "/vm/disks/0/move", {"to": str(new), "max_bandwidth": 4 * MiB})
    assert status == 202, body
    wait_copying(vm)
    res = run_godwit(["disk-move", "--api", vm.api_path, "--disk", "0", "--cancel"])
    assert res.returncode == 0, res.stderr
    assert wait_move(vm)["status"] == "cancelled"
    assert not new.exists()
    res = run_godwit(["disk-move", "--api", vm.api_path, "--disk", "0", "--cancel"])
    assert res.returncode == 1 and "not being moved" in res.stderr

    # The VM writes on, to its own image, which it still holds.
    more_acks(vm)
    assert locked_elsewhere(old)
    vm.stop()
    check_image(old, 21, size, acked(vm))


def test_cancel_once_the_copy_is_done_is_refused_and_the_move_completes(tmp_path, procs,
                                                                        faults):
    """The new image's last sync is held (faults.c) until the test lets it go: the pass
    has ended, the move is `switching`, and a cancel then is refused as too late (a 202
    there once answered for a move that went on to complete)."""
    old, new, size = tmp_path / "old.img", tmp_path / "new.img", 8 * MiB
    gate = tmp_path / "sync-may-go"
    random_image(old, size, seed=22)
    asan = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "verify_asan_link_order=0"]))
    env = ["env", f"LD_PRELOAD={faults}", f"GODWIT_HOLD_SYNC={new}",
           f"GODWIT_SYNC_GATE={gate}", f"ASAN_OPTIONS={asan}"]
    vm = Godwit.run_testguest(tmp_path, "heartbeat 10", extra=["--disk", str(old)],
                              prefix=env)
    procs.append(vm)
    vm.wait_for(r"^hb 3 ")
    status, body = vm.api("PUT", "/vm/disks/0/move", {"to": str(new)})
    assert status == 202, body
    assert wait_move(vm, until=("switching",) + FINAL)["status"] == "switching"
    status, body = vm.api("PUT", "/vm/disks/0/move/cancel")
    assert status == 409 and "too late" in body["error"], body
    res = run_godwit(["disk-move", "--api", vm.api_path, "--disk", "0", "--cancel"])
    assert res.returncode == 1 and "too late" in res.stderr, res.stderr
    gate.touch()
    st = wait_move(vm)
    assert st["status"] == "completed" and st["copied_bytes"] == size, st
    assert locked_elsewhere(new) and not locked_elsewhere(old)
    vm.stop()
    assert new.read_bytes() == old.read_bytes()


def test_mostly_holes_disk_of_several_gib_stays_sparse(tmp_path, procs):
    old, new, size = tmp_path / "old.img", tmp_path / "new.img", 6 << 30
    pieces = {(1 << 30): b"", (3 << 30) + 4096: b"", size - MiB: b""}
    with open(old, "wb") as f:
        f.truncate(size)
        for off in pieces:
            pieces[off] = random.Random(off).randbytes(MiB)
            f.seek(off)
            f.write(pieces[off])
    vm = start_vm(tmp_path, procs, old)
    res = run_godwit(["disk-move", "--api", vm.api_path, "--disk", "0", "--to", str(new),
                      "--json"], timeout=300)
    out = json.loads(res.stdout)
    assert res.returncode == 0 and out["status"] == "completed", res.stdout + res.stderr
    assert out["copied_bytes"] == size
    # The holes were skipped, not read: the pieces and what blklog wrote.
    assert out["data_bytes"] < 64 * MiB, out
    more_acks(vm)
    vm.stop()
    st_old, st_new = os.stat(old), os.stat(new)
    assert st_new.st_size == size
    # Allocated: about what blklog and the pieces take, never the disk's size.
    assert st_new.st_blocks * 512 < 64 * MiB, st_new.st_blocks
    with open(new, "rb") as f:
        for off, data in pieces.items():
            f.seek(off)
            assert f.read(MiB) == data, off
    recs = read_records(new)
    assert recs[: acked(vm) + 1] == list(range(acked(vm) + 1))
    assert st_old.st_blocks > 0


@pytest.fixture
def small_fs(tmp_path):
    """A 16 MiB tmpfs (root only), unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    d = tmp_path / "small"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(d)], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=True)


def test_refusals_and_failures_leave_the_disk_where_it_is(tmp_path, procs, small_fs):
    old, size = tmp_path / "old.img", 32 * MiB
    random_image(old, size, seed=22)
    # 1 MiB/s: the 32 MiB disk lasts well past the test's end.
    vm = start_vm(tmp_path, procs, old, cmdline="blklog 8 2048")

    def put(path, body):
        return api(vm.api_path, "PUT", path, body)

    # No such disk (one disk: ID 0 only).
    for path in ("/vm/disks/1/move", "/vm/disks/x/move", "/vm/disks/01/move"):
        status, body = put(path, {"to": str(tmp_path / "n.img")})
        assert status == 404 and "no such disk" in body["error"], (path, body)
    assert vm.api("GET", "/vm/disks/3/move")[0] == 404
    # Malformed bodies.
    for body in (None, {}, {"to": ""}, {"to": 7}, {"to": "x", "max_bandwidth": -1}):
        status, reply = put("/vm/disks/0/move", body)
        assert status == 400, (body, reply)
    # The target exists: refused, and left as it was.
    exists = tmp_path / "exists.img"
    exists.write_bytes(b"mine")
    status, body = put("/vm/disks/0/move", {"to": str(exists)})
    assert status == 409 and "exists" in body["error"], body
    assert exists.read_bytes() == b"mine"
    # The image itself, by its name and by another link to it.
    os.link(old, tmp_path / "link.img")
    for same in (old, tmp_path / "link.img"):
        status, body = put("/vm/disks/0/move", {"to": str(same)})
        assert status == 400 and "own image" in body["error"], body
    # A directory that does not exist.
    status, body = put("/vm/disks/0/move", {"to": str(tmp_path / "no" / "dir.img")})
    assert status == 400 and "cannot create" in body["error"], body
    assert put("/vm/disks/0/move/cancel", None)[0] == 409

    # No space left: the move fails, the partial file goes, the disk stays.
    target = small_fs / "new.img"
    res = run_godwit(["disk-move", "--api", vm.api_path, "--disk", "0", "--to", str(target),
                      "--json"], timeout=120)
    out = json.loads(res.stdout)
    assert res.returncode == 1 and out["status"] == "failed", res.stdout + res.stderr
    assert "No space left" in out["error"], out
    assert not target.exists() and os.listdir(small_fs) == []

    # No migration while a disk moves.
    status, body = put("/vm/disks/0/move", {"to": str(tmp_path / "slow.img"),
                                            "max_bandwidth": 1 * MiB})
    assert status == 202, body
    wait_copying(vm)
    status, body = put("/vm/disks/0/move", {"to": str(tmp_path / "other.img")})
    assert status == 409 and "being moved" in body["error"], body
    status, body = put("/vm/migrate", {"to": f"file:{tmp_path / 'snap'}"})
    assert status == 409 and "being moved" in body["error"], body
    assert put("/vm/disks/0/move/cancel", None)[0] == 202
    assert wait_move(vm)["status"] == "cancelled"

    more_acks(vm)
    assert locked_elsewhere(old)
    vm.stop()
    check_image(old, 22, size, acked(vm))
    assert sorted(p.name for p in tmp_path.glob("*.img")) == ["exists.img", "link.img",
                                                             "old.img"]



def ofd_lock_taken(path, kind):
    """Can another open file description take an OFD lock of this kind on path?"""
    fd = os.open(path, os.O_RDONLY if kind == fcntl.F_RDLCK else os.O_RDWR)
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhxxxxqqi4x", kind, 0, 0, 0, 0))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def test_readonly_disk_moves_and_stays_shared(tmp_path, procs):
    """A readonly disk moves too; its new image is read-locked, as the old one was."""
    log, ro, new = tmp_path / "log.img", tmp_path / "ro.img", tmp_path / "ro-new.img"
    with open(log, "wb") as f:
        f.truncate(16 * MiB)
    random_image(ro, 16 * MiB, seed=23)
    # 512 KiB/s: the 16 MiB log lasts half a minute.
    vm = Godwit.run_testguest(tmp_path, "blklog 1 1024", extra=["--disk", str(log), "--disk",
                                                         f"{ro},readonly=on"])
    procs.append(vm)
    vm.wait_for(r"blklog: acked \d+", count=3, timeout=60)
    before = [{"id": 0, "path": str(log), "readonly": False, "size": 16 * MiB},
              {"id": 1, "path": str(ro), "readonly": True, "size": 16 * MiB}]
    assert vm.api("GET", "/vm")[1]["disks"] == before
    res = run_godwit(["disk-move", "--api", vm.api_path, "--disk", "1", "--to", str(new),
                      "--json"], timeout=120)
    out = json.loads(res.stdout)
    assert res.returncode == 0 and out["status"] == "completed", res.stdout + res.stderr
    assert new.read_bytes() == ro.read_bytes()
    # The VM's description names the image it uses now.
    assert vm.api("GET", "/vm")[1]["disks"] == [before[0], dict(before[1], path=str(new))]
    # Readers may share it, no writer may take it; the old image is nobody's now.
    assert ofd_lock_taken(new, fcntl.F_RDLCK) and not ofd_lock_taken(new, fcntl.F_WRLCK)
    assert ofd_lock_taken(ro, fcntl.F_WRLCK)
    # Disk 0 was not touched.
    assert vm.api("GET", "/vm/disks/0/move")[1]["status"] == "none"
    more_acks(vm)
