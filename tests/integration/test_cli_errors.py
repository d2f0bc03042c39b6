"""Every bad input gets one clear line on stderr and a non-zero exit, never a crash.

These need no KVM: godwit validates everything it can before opening /dev/kvm.
"""
import os
import socket

import pytest

from godwit_vm import TESTGUEST, run_godwit


def one_error_line(res, *needles):
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("godwit: error:")]
    assert len(errors) == 1, f"expected one error line, got:\n{res.stderr}"
    for n in needles:
        assert n in errors[0], f"{n!r} not in {errors[0]!r}"
    assert "Sanitizer" not in res.stderr and "runtime error" not in res.stderr


@pytest.fixture
def guest():
    if not os.path.exists(TESTGUEST):
        pytest.fail(f"{TESTGUEST} is not built (run make)")
    return TESTGUEST


def test_help_and_version(godwit_bin):
    res = run_godwit(["help"])
    assert res.returncode == 0 and "run" in res.stdout and "dump-stream" in res.stdout
    res = run_godwit(["run", "--help"])
    assert res.returncode == 0
    for opt in ("--kernel", "--memory", "--cpus", "--api", "--console", "--initrd", "port 0xf4"):
        assert opt in res.stdout
    res = run_godwit(["version"])
    assert res.returncode == 0 and res.stdout.startswith("godwit ")


def test_no_command_and_unknown_command(godwit_bin):
    assert run_godwit([]).returncode == 2
    res = run_godwit(["fly"])
    assert res.returncode == 2
    one_error_line(res, "unknown command 'fly'")


@pytest.mark.parametrize("args,needle", [
    (["--memory", "lots"], "not a size"),
    (["--memory", "32M"], "between 64M and 1T"),
    (["--memory", "2T"], "between 64M and 1T"),
    (["--memory", "99M"], "multiples of 2M"),
    (["--cpus", "0"], "from 1 to 32"),
    (["--cpus", "33"], "from 1 to 32"),
    (["--cpus", "x"], "from 1 to 32"),
    (["--console", "tcp:x"], "expected stdio or file:PATH"),
    (["--frobnicate"], "unknown option"),
])
def test_bad_options(godwit_bin, guest, args, needle):
    res = run_godwit(["run", "--kernel", guest] + args)
    assert res.returncode == 2
    one_error_line(res, needle)


def test_missing_kernel_option(godwit_bin):
    res = run_godwit(["run", "--memory", "1G"])
    assert res.returncode == 2
    one_error_line(res, "--kernel is required")


def test_missing_kernel_file(godwit_bin, tmp_path):
    path = str(tmp_path / "nope.elf")
    res = run_godwit(["run", "--kernel", path])
    assert res.returncode != 0
    one_error_line(res, path)


def test_unrecognised_kernel_file(godwit_bin, tmp_path):
    path = tmp_path / "junk.bin"
    path.write_bytes(b"this is not a kernel\n" * 100)
    res = run_godwit(["run", "--kernel", str(path)])
    assert res.returncode == 2
    one_error_line(res, "junk.bin")


def test_console_file_unwritable(godwit_bin, guest, tmp_path):
    res = run_godwit(["run", "--kernel", guest, "--console", f"file:{tmp_path}/no/such/dir/log"])
    assert res.returncode == 1
    one_error_line(res, "no/such/dir/log")


def test_api_socket_in_use(godwit_bin, guest, tmp_path):
    path = str(tmp_path / "busy.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    try:
        res = run_godwit(["run", "--kernel", guest, "--api", path],
                         env=dict(os.environ, GODWIT_KVM_DEVICE="/nonexistent/kvm"))
        assert res.returncode == 1
        one_error_line(res, "in use")
    finally:
        srv.close()


def test_no_kvm(godwit_bin, guest, tmp_path):
    res = run_godwit(["run", "--kernel", guest],
                     env=dict(os.environ, GODWIT_KVM_DEVICE=str(tmp_path / "kvm")))
    assert res.returncode == 1
    one_error_line(res, "no KVM on this host")
