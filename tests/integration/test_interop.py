"""Peers that speak format 1.3: the godwit of commit b10c0d6 (the last before 1.4),
built from this repository's history, and this one, migrating to each other both
ways. A 1.4 source offers 16 connections when not told how many (CONFIG leaves before
the round trip is known); a 1.3 destination takes them all and expects STRIPE over
all of them, 64 KiB at a time; a 1.3 source is taken as before."""
import os
import shutil
import subprocess

import pytest

from godwit_vm import ROOT
from test_migration import Receiver, migrate, start_source

OLD_COMMIT = "b10c0d6"


def build_godwit(commit, tmp_path_factory):
    """Path to the godwit of an earlier commit, built from this clone's history (or a
    skip when the clone does not have it)."""
    have = subprocess.run(["git", "-C", ROOT, "cat-file", "-e", f"{commit}^{{commit}}"],
                          capture_output=True)
    if have.returncode or shutil.which("make") is None:
        pytest.skip(f"commit {commit} is not in this clone's history")
    tree = tmp_path_factory.mktemp(f"godwit-{commit}")
    archive = subprocess.run(["git", "-C", ROOT, "archive", commit],
                             capture_output=True, check=True, timeout=120)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True,
                   timeout=120)
    build = tree / "build"
    subprocess.run(["make", "-s", "-C", str(tree), f"-j{os.cpu_count() or 2}",
                    f"BUILD={build}", f"{build}/godwit"], check=True, capture_output=True,
                   timeout=900)
    return str(build / "godwit")


@pytest.fixture(scope="module")
def old_godwit(tmp_path_factory):
    """Path to the 1.3 godwit, built once for the module."""
    return build_godwit(OLD_COMMIT, tmp_path_factory)


def runs(binary):
    """A command prefix that runs binary in place of this tree's godwit."""
    return ["/bin/sh", "-c", f'shift; exec "{binary}" "$@"', "sh"]


@pytest.mark.parametrize("connections", [None, 4])
def test_to_a_1_3_destination(tmp_path, procs, old_godwit, connections):  # noqa: F811
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 64M", cpus=2,
                       memory="256M")
    src.wait_for_pass(1, timeout=240)
    dst = Receiver(tmp_path, "dst", extra=["-v"], prefix=runs(old_godwit))
    procs.append(dst)
    extra = ["--connections", str(connections)] if connections else []
    res, out = migrate(src, dst.uri, "--verify", *extra)
    assert res.returncode == 0 and out["status"] == "completed", res.stderr
    # It took every connection offered: 16 by default, here on loopback too.
    assert out["connections"] == (connections or 16), out
    assert src.wait_exit(timeout=10) == 0
    assert "RAM verified" in dst.stderr()
    dst.wait_for_pass(dst.passes() + 1, timeout=60)
    assert "ERROR" not in dst.output()


def test_from_a_1_3_source(tmp_path, procs, old_godwit):  # noqa: F811
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 64M", cpus=2,
                       memory="256M", prefix=runs(old_godwit))
    src.wait_for_pass(1, timeout=240)
    dst = Receiver(tmp_path, "dst", extra=["-v"])
    procs.append(dst)
    res, out = migrate(src, dst.uri, "--verify", "--connections", "4")
    assert res.returncode == 0 and out["status"] == "completed", res.stderr
    assert src.wait_exit(timeout=10) == 0
    assert "the stream comes over 4 connections, 64 KiB at a time" in dst.stderr()
    assert "RAM verified" in dst.stderr()
    dst.wait_for_pass(dst.passes() + 1, timeout=60)
    assert "ERROR" not in dst.output()
