"""Migration without shared storage: `godwit migrate --disk-to ID=PATH` sends a disk's
image through the migration stream to a new file in the destination's `--disk-dir`
(docs/migration-flow.md, "Disks without shared storage"). Needs /dev/kvm.

The test guest's blklog writes and flushes numbered records throughout each move over
an image whose other sectors hold known random data: after the move every acknowledged
record is in the destination's image, and every sector blklog did not reach still
holds the source's data. A cancel, a destination killed mid-copy and every refusal
leave the VM running on the source, on its own image (locked, written on), and no file
in the destination's directory.
"""
import json
import os
import signal
import subprocess
import time

import pytest

from godwit_vm import GODWIT, Godwit, free_port, run_godwit
from test_disk_handover import locked_elsewhere
from test_devices import RECORD, read_records
from test_disk_move import MiB, acked, check_image, more_acks, random_image, start_vm

pytestmark = pytest.mark.kvm


def receiver(tmp_path, procs, disk_dir, name="dst", extra=()):
    port = free_port()
    args = ["receive", "--listen", f"tcp:127.0.0.1:{port}", "--api",
            str(tmp_path / f"{name}.sock"), "--console", f"file:{tmp_path / (name + '.console')}"]
    if disk_dir is not None:
        args += ["--disk-dir", str(disk_dir)]
    dst = Godwit(tmp_path, [*args, *extra], name)
    procs.append(dst)
    deadline = time.monotonic() + 10
    while "waiting for an incoming migration" not in dst.stderr():
        assert dst.proc.poll() is None and time.monotonic() < deadline, dst.stderr()
        time.sleep(0.05)
    return dst, port


def migrate(vm, port, disk_to, extra=(), timeout=180):
    args = ["migrate", "--api", vm.api_path, "--to", f"tcp:127.0.0.1:{port}", "--json"]
    for d, path in disk_to:
        args += ["--disk-to", f"{d}={path}"]
    res = run_godwit([*args, *extra], timeout=timeout)
    lines = res.stdout.strip().splitlines()
    return res, json.loads(lines[-1]) if lines else None


# An image with room for blklog's appends (2 MiB/s, test_disk_move.BLKLOG) for minutes: a
# test that checks the VM still writes after a failed move must not find its disk full.
ROOMY = 1 << 30


def runs_on(vm, n=3):
    """The VM still runs here, on its own image: blklog acknowledges more records."""
    assert vm.api("GET", "/vm")[1]["state"] == "running"
    more_acks(vm, n)


def test_move_without_shared_storage_loses_no_acknowledged_write(tmp_path, procs):
    src_dir, dst_dir = tmp_path / "a", tmp_path / "b"
    src_dir.mkdir()
    dst_dir.mkdir()
    # Unpaced, blklog appended 12 MB/s and more while the move ran (~11 s) and after it: a
    # 64 MiB image was once full before the destination acknowledged a record.
    img, size = src_dir / "vm.img", 1024 * MiB
    random_image(img, size, seed=30)
    before = img.stat()
    vm = start_vm(tmp_path, procs, img)
    dst, port = receiver(tmp_path, procs, dst_dir)
    # Slowed down so that blklog's writes are mirrored through the pass and the RAM.
    res, out = migrate(vm, port, [(0, "vm.img")], ["--max-bandwidth", "128M"])
    assert res.returncode == 0 and out["status"] == "completed", res.stdout + res.stderr
    assert out["disk_size"] == size and out["disk_copied"] == size
    # The pass sent every (random, non-zero) byte once; blklog's writes were mirrored too.
    assert out["disk_bytes"] > size, out
    assert vm.wait_exit(timeout=60) == 0
    new = dst_dir / "vm.img"
    dst.wait_for(r"blklog: acked \d+", count=3, timeout=60)
    assert locked_elsewhere(new) and not locked_elsewhere(img)
    # Written on there: more records acknowledged than the source ever saw.
    last_src = acked(vm)
    more_acks(dst, 3)
    assert acked(dst) > last_src
    dst.stop()
    check_image(new, 30, size, acked(dst))
    assert new.stat().st_size == size
    # The source's file is as the guest left it there: its records, its original data.
    check_image(img, 30, size, last_src)
    assert (before.st_dev, before.st_ino) == (img.stat().st_dev, img.stat().st_ino)
    same_at_switchover(img, new)


def has_data(f, off, end):
    """Does the file hold data (not a hole) anywhere in [off, end)?"""
    try:
        return os.lseek(f.fileno(), off, os.SEEK_DATA) < end
    except OSError:  # ENXIO: only holes from off on
        return False


def same_at_switchover(src, dst, chunk=16 * MiB):
    """The destination's image is the source's as the guest left it there, plus the
    records blklog appended after the switch: byte for byte up to the source's last
    record's end, and past the destination's last record. Compared a chunk at a time,
    skipping what is a hole in both (a sparse image of several GiB)."""
    a, b = read_records(src), read_records(dst)
    assert b[: len(a)] == a and len(b) >= len(a)
    mine = len(a) * RECORD
    # blklog may have written a batch past its last valid record on either side.
    past = (len(b) + 64) * RECORD
    size = os.path.getsize(src)
    assert os.path.getsize(dst) == size
    with open(src, "rb") as f, open(dst, "rb") as g:
        for off in range(0, size, chunk):
            end = min(off + chunk, size)
            if not has_data(f, off, end) and not has_data(g, off, end):
                continue
            f.seek(off)
            g.seek(off)
            x, y = f.read(end - off), g.read(end - off)
            for lo, hi in ((off, min(end, mine)), (max(off, past), end)):
                if lo < hi:
                    assert x[lo - off:hi - off] == y[lo - off:hi - off], \
                        f"the images differ in [{lo}, {hi})"


def test_sparse_image_stays_sparse(tmp_path, procs):
    """A 4 GiB image with a few MiB of data (and a MiB of written zeros): the copy
    allocates no more than the data, and reads back the same."""
    src_dir, dst_dir = tmp_path / "a", tmp_path / "b"
    src_dir.mkdir()
    dst_dir.mkdir()
    img, size = src_dir / "big.img", 4 << 30
    data = {off: os.urandom(MiB) for off in (0, 1 << 30, 3 << 30, size - MiB)}
    with open(img, "wb") as f:
        f.truncate(size)
        for off, chunk in data.items():
            f.seek(off)
            f.write(chunk)
        f.seek(2 << 30)
        f.write(bytes(MiB))  # allocated, but zeros: a hole in the copy
    vm = start_vm(tmp_path, procs, img)
    dst, port = receiver(tmp_path, procs, dst_dir)
    res, out = migrate(vm, port, [(0, str(dst_dir / "big.img"))])
    assert res.returncode == 0 and out["status"] == "completed", res.stdout + res.stderr
    assert out["disk_size"] == size and out["disk_copied"] == size
    # The data went (4 MiB, and blklog's writes mirrored meanwhile), not the holes.
    assert 4 * MiB <= out["disk_bytes"] < 64 * MiB, out
    assert vm.wait_exit(timeout=60) == 0
    dst.wait_for(r"blklog: acked \d+", count=3, timeout=60)
    dst.stop()
    new = dst_dir / "big.img"
    assert new.stat().st_size == size
    # 4 MiB of data, blklog's appends (2 MiB/s, on both sides), not 4 GiB.
    assert new.stat().st_blocks * 512 < 256 * MiB, new.stat()
    with open(new, "rb") as f:
        for off, chunk in data.items():
            if off == 0:
                continue  # blklog's records are there
            f.seek(off)
            assert f.read(MiB) == chunk, off
        f.seek(2 << 30)
        assert f.read(MiB) == bytes(MiB)
    same_at_switchover(img, new)


def assert_nothing_left(dst_dir):
    assert os.listdir(dst_dir) == [], os.listdir(dst_dir)


def failed_move_leaves_the_vm_here(vm, img, dst, dst_dir):
    assert dst.wait_exit(timeout=60) != 0
    assert "hb " not in dst.output() and "blklog: acked" not in dst.output()
    runs_on(vm)
    assert locked_elsewhere(img)
    if dst_dir is not None:
        assert_nothing_left(dst_dir)


@pytest.mark.parametrize("where", ["outside", "dotdot", "exists", "no-disk-dir"])
def test_destination_refuses(tmp_path, procs, where):
    """A path outside --disk-dir (absolute, or climbing out of it), a file that
    exists, or a receiver without --disk-dir: refused before anything is copied."""
    src_dir, dst_dir, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d in (src_dir, dst_dir, other):
        d.mkdir()
    img = src_dir / "vm.img"
    random_image(img, 16 * MiB, seed=31)
    os.truncate(img, ROOMY)
    vm = start_vm(tmp_path, procs, img)
    to = {"outside": str(other / "vm.img"), "dotdot": "../c/vm.img", "exists": "vm.img",
          "no-disk-dir": "vm.img"}[where]
    if where == "exists":
        (dst_dir / "vm.img").write_bytes(b"not yours")
    dst, port = receiver(tmp_path, procs, None if where == "no-disk-dir" else dst_dir)
    res, out = migrate(vm, port, [(0, to)])
    assert res.returncode != 0 and out["status"] == "failed", res.stdout + res.stderr
    why = {"outside": "only a file name in --disk-dir", "dotdot": "only a file name in",
           "exists": "exists: the move makes a new file", "no-disk-dir": "--disk-dir DIR"}
    assert why[where] in out["error"], out
    assert out["disk_bytes"] == 0
    failed_move_leaves_the_vm_here(vm, img, dst, None)
    assert os.listdir(other) == []
    if where == "exists":
        assert os.listdir(dst_dir) == ["vm.img"]
        assert (dst_dir / "vm.img").read_bytes() == b"not yours"
    else:
        assert_nothing_left(dst_dir)


def test_source_refuses_an_unknown_disk_and_a_file(tmp_path, procs):
    img = tmp_path / "vm.img"
    random_image(img, 16 * MiB, seed=32)
    os.truncate(img, ROOMY)
    vm = start_vm(tmp_path, procs, img)
    res = run_godwit(["migrate", "--api", vm.api_path, "--to", "tcp:127.0.0.1:9",
                      "--disk-to", "3=vm.img"])
    assert res.returncode != 0 and "no disk 3" in res.stderr, res.stderr
    res = run_godwit(["migrate", "--api", vm.api_path, "--to", f"file:{tmp_path / 'snap'}",
                      "--disk-to", "0=vm.img"])
    assert res.returncode != 0 and "tcp: moves" in res.stderr, res.stderr
    for bad in ("0", "=x", "x=vm.img", "0="):
        res = run_godwit(["migrate", "--api", vm.api_path, "--to", "tcp:127.0.0.1:9",
                          "--disk-to", bad])
        assert res.returncode == 2 and "--disk-to" in res.stderr, (bad, res.stderr)
    status, body = vm.api("PUT", "/vm/migrate", {"to": "tcp:127.0.0.1:9",
                                                  "disk_to": [{"disk": 0}]})
    assert status == 400 and "disk_to" in body["error"], body
    status, body = vm.api("PUT", "/vm/migrate", {"to": "tcp:127.0.0.1:9", "disk_to": [
        {"disk": 0, "to": "a"}, {"disk": 0, "to": "b"}]})
    assert status == 400 and "named twice" in body["error"], body
    runs_on(vm)
    assert not (tmp_path / "snap").exists()


def copying(vm, timeout=60):
    """Until the disk's pass has sent something (and not finished)."""
    deadline = time.monotonic() + timeout
    while True:
        status, st = vm.api("GET", "/vm/migration")
        assert status == 200, st
        if st["disk_copied"] > 0:
            assert st["disk_copied"] < st["disk_size"], st
            return st
        # "none": the client's request is not in yet.
        assert st["status"] in ("none", "setup", "active"), st
        assert time.monotonic() < deadline, st
        time.sleep(0.02)


def start_slow_move(tmp_path, procs, size=64 * MiB):
    src_dir, dst_dir = tmp_path / "a", tmp_path / "b"
    src_dir.mkdir()
    dst_dir.mkdir()
    img = src_dir / "vm.img"
    random_image(img, size, seed=33)
    os.truncate(img, ROOMY)
    vm = start_vm(tmp_path, procs, img)
    dst, port = receiver(tmp_path, procs, dst_dir)
    cli = subprocess.Popen([GODWIT, "migrate", "--api", vm.api_path, "--to",
                            f"tcp:127.0.0.1:{port}", "--disk-to", "0=vm.img",
                            "--max-bandwidth", "4M", "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        copying(vm)
    except BaseException:
        stop_cli(cli)
        raise
    return vm, img, dst, dst_dir, cli


def stop_cli(cli):
    if cli.poll() is None:
        cli.kill()
        cli.wait()


def finish_cli(cli):
    try:
        out, err = cli.communicate(timeout=60)
    finally:
        stop_cli(cli)
    return json.loads(out.strip().splitlines()[-1]), err


def test_cancel_mid_copy(tmp_path, procs):
    vm, img, dst, dst_dir, cli = start_slow_move(tmp_path, procs)
    try:
        # The image is not in the directory while it comes: no name before the hand-over.
        assert_nothing_left(dst_dir)
        status, body = vm.api("PUT", "/vm/migrate/cancel")
        assert status in (200, 202), body
    finally:
        out, err = finish_cli(cli)
    assert cli.returncode == 1 and out["status"] == "cancelled", (out, err)
    assert 0 < out["disk_copied"] < out["disk_size"]
    failed_move_leaves_the_vm_here(vm, img, dst, dst_dir)


def test_destination_killed_mid_copy(tmp_path, procs):
    vm, img, dst, dst_dir, cli = start_slow_move(tmp_path, procs)
    try:
        os.kill(dst.proc.pid, signal.SIGKILL)
    finally:
        out, err = finish_cli(cli)
    assert cli.returncode == 1 and out["status"] == "failed", (out, err)
    assert 0 < out["disk_copied"] < out["disk_size"]
    failed_move_leaves_the_vm_here(vm, img, dst, dst_dir)
    # And the VM can move afterwards, to a receiver that lives.
    dst2, port = receiver(tmp_path, procs, dst_dir, name="dst2")
    res, out = migrate(vm, port, [(0, "vm.img")])
    assert res.returncode == 0 and out["status"] == "completed", res.stdout + res.stderr
    dst2.wait_for(r"blklog: acked \d+", count=3, timeout=60)
    last_src = acked(vm)
    more_acks(dst2, 3)
    dst2.stop()
    check_image(dst_dir / "vm.img", 33, 64 * MiB, acked(dst2))
    assert acked(dst2) > last_src


def test_verify_covers_the_disks(tmp_path, procs):
    src_dir, dst_dir = tmp_path / "a", tmp_path / "b"
    src_dir.mkdir()
    dst_dir.mkdir()
    img = src_dir / "vm.img"
    random_image(img, 32 * MiB, seed=34)
    # 1 MiB/s: unpaced, blklog filled the 32 MiB before the destination's acks
    # (CI, 2026-12-07).
    vm = start_vm(tmp_path, procs, img, cmdline="blklog 8 2048")
    dst, port = receiver(tmp_path, procs, dst_dir)
    res, out = migrate(vm, port, [(0, "vm.img")], ["--verify"])
    assert res.returncode == 0 and out["status"] == "completed", res.stdout + res.stderr
    assert "disk 0 verified" in dst.stderr()
    dst.wait_for(r"blklog: acked \d+", count=3, timeout=60)
    dst.stop()
    same_at_switchover(img, dst_dir / "vm.img")


def unnamed_image_fd(pid, dst_dir):
    """The receiver's descriptor of the image it is making (unnamed: "... (deleted)")."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(dst_dir) + "/") and target.endswith("(deleted)"):
            return f"/proc/{pid}/fd/{fd}"
    return None


def test_verify_refuses_a_damaged_copy(tmp_path, procs):
    """Bytes written into the destination's image where the source has a hole (the pass
    sends nothing there, and blklog, writing from the start, does not get that far):
    --verify sees the images differ, the destination refuses to resume, the VM runs on
    at the source, nothing is left. The pass runs at 32 MB/s, well above what blklog
    appends (2 MiB/s): at 8 MB/s the pass chased blklog's appends up the 1 GiB image and
    the move outlived the test's 60 s."""
    src_dir, dst_dir = tmp_path / "a", tmp_path / "b"
    src_dir.mkdir()
    dst_dir.mkdir()
    img, size = src_dir / "vm.img", 1 << 30
    random_image(img, 32 * MiB, seed=35)
    os.truncate(img, size)
    vm = start_vm(tmp_path, procs, img)
    dst, port = receiver(tmp_path, procs, dst_dir)
    cli = subprocess.Popen([GODWIT, "migrate", "--api", vm.api_path, "--to",
                            f"tcp:127.0.0.1:{port}", "--disk-to", "0=vm.img", "--verify",
                            "--max-bandwidth", "32M", "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        copying(vm)
        path = unnamed_image_fd(dst.proc.pid, dst_dir)
        assert path, os.listdir(f"/proc/{dst.proc.pid}/fd")
        with open(path, "r+b") as f:
            f.seek(size - MiB + 4096)
            f.write(b"not the source's")
    finally:
        out, err = finish_cli(cli)
    assert cli.returncode == 1 and out["status"] == "failed", (out, err, dst.stderr())
    assert "disk 0 verification failed" in out["error"], out
    failed_move_leaves_the_vm_here(vm, img, dst, dst_dir)


def test_destination_disk_full_reported_at_the_source(tmp_path, procs):
    """The destination's --disk-dir fills up part-way through the image: the
    destination's reason (no space) comes back to the source, which said 'Broken pipe'
    before; the VM runs on at the source and nothing is left there."""
    src_dir, dst_dir = tmp_path / "a", tmp_path / "b"
    src_dir.mkdir()
    dst_dir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "godwit-test", str(dst_dir)],
                   check=True)
    try:
        img = src_dir / "vm.img"
        random_image(img, 32 * MiB, seed=36)
        os.truncate(img, ROOMY)
        vm = start_vm(tmp_path, procs, img)
        dst, port = receiver(tmp_path, procs, dst_dir)
        res, out = migrate(vm, port, [(0, "vm.img")])
        assert res.returncode != 0 and out["status"] == "failed", res.stdout + res.stderr
        assert "destination" in out["error"] and "No space left" in out["error"], out
        failed_move_leaves_the_vm_here(vm, img, dst, dst_dir)
    finally:
        # Lazy: a receiver left running by a failure (the procs fixture stops it after
        # this) would keep a plain unmount busy.
        subprocess.run(["umount", "-l", str(dst_dir)], check=True)
