"""The disks' locks at the hand-over when one cannot be released (needs /dev/kvm).

faults.c, LD_PRELOAD'ed into the source, makes releasing one image's lock fail,
and can let "another process" take an image the source had already released. The
source must then hold every lock again and run on, or, where one cannot be taken
back, keep its VM paused rather than let the guest write to an image it does not own.
"""
import fcntl
import json
import os
import re
import struct
import time

import pytest

from godwit_vm import free_port, Godwit, run_godwit

pytestmark = pytest.mark.kvm


def locked_elsewhere(path):
    """Does another open file description find the image locked (an OFD write lock)?"""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhxxxxqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def move_that_fails_to_release(tmp_path, procs, faults, grab):
    """A source with two disks whose second image's lock cannot be released (and, with
    grab, whose first image another process takes meanwhile) migrates to a receiver."""
    imgs = [tmp_path / f"disk{i}.img" for i in range(2)]
    for img in imgs:
        with open(img, "wb") as f:
            f.truncate(16 << 20)
    asan = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "verify_asan_link_order=0"]))
    env = ["env", f"LD_PRELOAD={faults}", f"GODWIT_FAIL_UNLOCK={imgs[1]}",
           f"ASAN_OPTIONS={asan}"]
    if grab:
        env.append(f"GODWIT_GRAB_ON_FAIL={imgs[0]}")
    disks = [a for img in imgs for a in ("--disk", str(img))]
    src = Godwit.run_testguest(tmp_path, "heartbeat 10", name="src", extra=disks, prefix=env)
    procs.append(src)
    src.wait_for(r"^hb 3 ")
    assert all(locked_elsewhere(img) for img in imgs)
    port = free_port()
    dst = Godwit(tmp_path, ["receive", "--listen", f"tcp:127.0.0.1:{port}", "--api",
                            str(tmp_path / "dst.sock"), "--console",
                            f"file:{tmp_path / 'dst.console'}", *disks], "dst")
    procs.append(dst)
    deadline = time.monotonic() + 10
    while "waiting for an incoming migration" not in dst.stderr():
        assert dst.proc.poll() is None and time.monotonic() < deadline, dst.stderr()
        time.sleep(0.05)
    res = run_godwit(["migrate", "--api", src.api_path, "--to", f"tcp:127.0.0.1:{port}",
                      "--json"], timeout=120)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert res.returncode != 0 and out["status"] == "failed", res.stdout + res.stderr
    assert "cannot release the disk locks" in out["error"], out
    assert dst.wait_exit(timeout=30) != 0
    assert "hb " not in dst.output()
    return src, imgs, out


def test_lock_that_cannot_be_released_leaves_every_lock_held(tmp_path, procs, faults):
    """The first image's lock was released before the second's failed: it is taken
    back, and the VM runs on with both images locked."""
    src, imgs, _ = move_that_fails_to_release(tmp_path, procs, faults, grab=False)
    n = len(re.findall(r"^hb ", src.output(), re.M))
    src.wait_for(r"^hb ", count=n + 5)
    assert src.api("GET", "/vm")[1]["state"] == "running"
    assert locked_elsewhere(imgs[0]) and locked_elsewhere(imgs[1])


def test_lock_that_cannot_be_taken_back_keeps_the_vm_paused(tmp_path, procs, faults):
    """Another process took the first image once the source had released it: the source
    cannot own it again, so its VM stays paused (the destination never got GO)."""
    src, imgs, out = move_that_fails_to_release(tmp_path, procs, faults, grab=True)
    assert "could not be locked again" in out["error"], out
    deadline = time.monotonic() + 10
    while "the VM stays paused here" not in src.stderr():
        assert time.monotonic() < deadline, src.stderr()
        time.sleep(0.05)
    assert "a disk image is not locked" in src.stderr()
    assert src.api("GET", "/vm")[1]["state"] == "paused"
    n = len(re.findall(r"^hb ", src.output(), re.M))
    time.sleep(1)
    assert len(re.findall(r"^hb ", src.output(), re.M)) == n
    assert src.proc.poll() is None
    # The other process still holds the image: the API does not resume the VM either.
    status, body = src.api("PUT", "/vm/resume")
    assert status == 409 and "a disk image is not locked" in body["error"], body
    assert src.api("GET", "/vm")[1]["state"] == "paused"
