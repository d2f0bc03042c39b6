"""Every bad input gets one clear line on stderr and a non-zero exit, never a crash.

These need no KVM: godwit validates everything it can before opening /dev/kvm.
"""
import os
import re
import socket
import subprocess
import time

import pytest

from godwit_vm import GODWIT as GODWIT_PATH, TESTGUEST, run_godwit


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


@pytest.mark.parametrize("cmd", ["run", "migrate", "receive", "dump-stream", "disk-move"])
def test_help_lists_each_option_on_its_own_line(godwit_bin, cmd):
    """A missing newline once ran --connections' text into --json's."""
    res = run_godwit([cmd, "--help"])
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    assert any(line.startswith("  -") for line in lines), res.stdout
    for line in lines:
        assert not re.search(r"\S {2,}--?[a-z]", line.lstrip()), line


@pytest.mark.parametrize("cmd,line", [
    (["hosts"], "  hosts "), (["vms"], "  vms "), (["delete", "web1"], "  delete NAME"),
    (["cancel"], "  cancel TASK"), (["tasks"], "  tasks [--all]"), (["events"], "  events"),
    (["maintenance", "enter"], "  maintenance enter|exit HOST [--wait]"),
    (["console-token"], "  console-token "), (["group"], "  group add|rm|list"),
    (["rule"], "  rule list|rm [NAME]"), (["drs"], "  drs apply ID|all"),
    (["dpm"], "  dpm config"), (["host"], "  host standby|wake HOST")])
def test_every_cluster_command_answers_help_without_a_manager(godwit_bin, cmd, line):
    """No manager is named: --help must not need one (it once asked the manager, or said
    "which manager?")."""
    env = {k: v for k, v in os.environ.items() if k not in ("GODWIT_MANAGER", "GODWIT_PKI")}
    res = run_godwit(["cluster", *cmd, "--help"], env=env)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert res.stdout.startswith(f"usage: godwit cluster [--manager URL[,URL...]] [--pki D] "
                                 f"{cmd[0]} ...\n"), res.stdout
    assert line in res.stdout, res.stdout
    # Only its own lines of the usage: no other command's.
    others = {"hosts", "vms", "delete", "cancel", "tasks", "events", "maintenance",
              "console-token", "group", "rule", "drs", "dpm", "host"} - {cmd[0]}
    assert not [ln for ln in res.stdout.splitlines()
                if ln.startswith("  ") and ln.split()[0] in others], res.stdout


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


@pytest.mark.parametrize("args,needle", [
    ([], "exactly one of --listen"),
    (["--listen", "tcp:127.0.0.1:1", "--from", "file:x"], "exactly one of --listen"),
    (["--listen", "udp:1.2.3.4:5"], "expected tcp:HOST:PORT"),
    (["--listen", "tcp:nohost"], "expected tcp:HOST:PORT"),
    (["--from", "x.snap"], "expected file:PATH"),
    (["--from", "file:x", "--console", "serial"], "expected stdio or file:PATH"),
    (["--from", "file:x", "--io-timeout", "0"], "--io-timeout '0': expected whole seconds"),
    (["--from", "file:x", "--io-timeout", "5s"], "--io-timeout '5s': expected whole seconds"),
])
def test_receive_bad_options(godwit_bin, args, needle):
    res = run_godwit(["receive"] + args)
    assert res.returncode == 2
    one_error_line(res, needle)


@pytest.mark.parametrize("args,code,needle", [
    (["--disk", "{tmp}/none.img"], 1, "disk image {tmp}/none.img: No such file"),
    (["--disk", "{tmp}/ok.img", "--disk", "{tmp}"], 1, "Is a directory"),
    (["--disk", "{tmp}/ok.img,readonly=maybe"], 2, "unknown option 'readonly'"),
    (["--net", "tapp=gw0"], 2, "unknown option 'tapp'"),
    (["--net", "tap=gw0,mac=52:54:zz"], 2, "--net mac=52:54:zz"),
    (["--net", "mac=52:54:00:12:34:56"], 2, "tap=NAME is required"),
    (["--net", "tap=gw-none0"], 1, "tap gw-none0: no such device"),
    (["--console", "file:{tmp}/no/dir/c.log"], 1, "--console file:{tmp}/no/dir/c.log"),
    (["--api", "{tmp}/no/dir/a.sock"], 1, "cannot bind API socket {tmp}/no/dir/a.sock"),
])
def test_receive_checks_its_backends_before_it_listens(godwit_bin, tmp_path, args, code, needle):
    """Every --disk, --net, --console and --api is parsed and opened before the
    receiver listens: a typo ends it at once, not mid-migration once a source has
    connected (it used to wait for one, then fail)."""
    (tmp_path / "ok.img").write_bytes(b"\0" * 65536)
    args = [a.format(tmp=tmp_path) for a in args]
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    res = run_godwit(["receive", "--listen", f"tcp:127.0.0.1:{port}", *args], timeout=10)
    assert res.returncode == code, res.stderr
    one_error_line(res, needle.format(tmp=tmp_path))
    assert "waiting for an incoming migration" not in res.stderr
    assert not os.path.exists(tmp_path / "no")


@pytest.mark.parametrize("args,needle", [
    (["--to", "tcp:127.0.0.1:1"], "--api and --to are required"),
    (["--api", "x.sock"], "--api and --to are required"),
    (["--api", "x.sock", "--to", "t", "--downtime-ms", "0"], "--downtime-ms"),
    (["--api", "x.sock", "--to", "t", "--max-bandwidth", "fast"], "--max-bandwidth"),
    (["--api", "x.sock", "--to", "t", "--timeout", "-1"], "--timeout"),
])
def test_migrate_bad_options(godwit_bin, args, needle):
    res = run_godwit(["migrate"] + args)
    assert res.returncode == 2
    one_error_line(res, needle)


def test_migrate_without_a_vm(godwit_bin, tmp_path):
    res = run_godwit(["migrate", "--api", str(tmp_path / "none.sock"), "--to", "tcp:127.0.0.1:1"])
    assert res.returncode == 1
    one_error_line(res, "cannot start the migration")


def test_receive_missing_snapshot(godwit_bin, tmp_path):
    res = run_godwit(["receive", "--from", f"file:{tmp_path}/none.snap"])
    assert res.returncode == 1
    one_error_line(res, "none.snap")


def test_verbose_lines_carry_the_monotonic_clock(godwit_bin, tmp_path):
    """-v stamps every line with CLOCK_MONOTONIC, one clock for every process on the
    host, so the source's and the destination's logs of one migration interleave."""
    before = time.monotonic()
    res = run_godwit(["receive", "-v", "--from", f"file:{tmp_path}/none.snap"])
    after = time.monotonic()
    assert res.returncode == 1
    line = [l for l in res.stderr.splitlines() if "none.snap" in l][0]
    m = re.match(r"^godwit: \[(\d+)\.(\d{6})\] error: ", line)
    assert m, line
    assert before - 0.001 <= int(m.group(1)) + int(m.group(2)) / 1e6 <= after + 0.001, line


@pytest.mark.parametrize("content,needle", [
    (b"", "bad migration stream"),
    (b"GODWITMS" + b"\x00" * 100, "bad migration stream"),
    (b"not a stream at all, just text\n" * 10, "bad migration stream"),
])
def test_receive_rejects_garbage(godwit_bin, tmp_path, content, needle):
    snap = tmp_path / "junk.snap"
    snap.write_bytes(content)
    res = run_godwit(["receive", "--from", f"file:{snap}"])
    assert res.returncode == 1
    one_error_line(res, needle)


def _receiver_and_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = subprocess.Popen([GODWIT_PATH, "receive", "--listen", f"tcp:127.0.0.1:{port}"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    return p, port


def _connect(p, port):
    deadline = time.monotonic() + 10
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=1)
        except OSError:
            assert time.monotonic() < deadline and p.poll() is None
            time.sleep(0.05)


@pytest.mark.parametrize("junk", [b"GET / HTTP/1.1\r\n\r\n" * 4, b""])
def test_receive_listener_drops_what_is_not_a_stream(godwit_bin, junk):
    """A peer that sends junk, or connects and goes, is closed: the receiver keeps
    waiting for the source (a scanner or a health check does not end it)."""
    p, port = _receiver_and_port()
    try:
        c = _connect(p, port)
        c.sendall(junk)
        c.close()
        time.sleep(0.5)
        assert p.poll() is None
        p.terminate()
        _, err = p.communicate(timeout=20)
        assert "closed an incoming connection that is not a migration stream" in err
        assert "stopped by a signal while waiting for a source" in err
        assert p.returncode == 1
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_receive_listener_outlives_a_bad_stream(godwit_bin):
    """A peer that opens like a stream and then sends junk is closed; the receiver
    waits on for its source (tests/integration/test_hostile_streams.py has more)."""
    p, port = _receiver_and_port()
    try:
        c = _connect(p, port)
        c.sendall(b"GODWITMS" + b"\xff" * 100)
        c.close()
        time.sleep(0.5)
        assert p.poll() is None
        p.terminate()
        _, err = p.communicate(timeout=20)
        assert "closed an incoming connection that is not a migration stream" in err
        assert p.returncode == 1
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_kvm_device_that_is_not_a_device(godwit_bin, guest, tmp_path):
    fake = tmp_path / "kvm"
    fake.write_bytes(b"")
    res = run_godwit(["run", "--kernel", guest], env=dict(os.environ, GODWIT_KVM_DEVICE=str(fake)))
    assert res.returncode == 1
    one_error_line(res, "not a KVM device")


def test_disk_move_checks_its_options(godwit_bin):
    for args, needle in ((["--disk", "0", "--to", "x"], "required"),
                         (["--api", "s", "--to", "x"], "required"),
                         (["--api", "s", "--disk", "0"], "required"),
                         (["--api", "s", "--disk", "0", "--to", "x", "--cancel"], "required"),
                         (["--api", "s", "--disk", "9", "--to", "x"], "0 to 7"),
                         (["--api", "s", "--disk", "x", "--to", "x"], "0 to 7"),
                         (["--api", "s", "--disk", "0", "--to", "x", "--max-bandwidth", "0"],
                          "bytes per second"),
                         (["--frob"], "unknown option")):
        res = run_godwit(["disk-move", *args])
        assert res.returncode == 2 and needle in res.stderr, (args, res.stderr)


@pytest.mark.parametrize("args,code,needle", [
    (["--encrypt", "maybe"], 2, "--encrypt 'maybe': expected required, opportunistic or off"),
    (["--encrypt", "required"], 2, "encrypt required needs credentials"),
    (["--tls-cert", "{tmp}/none.crt"], 2, "--tls-cert '{tmp}/none.crt': No such file"),
    (["--tls-cert", "{tmp}/src.crt", "--tls-key", "{tmp}/src.key"], 2, "all three"),
    (["--tls-peer-name", "src.test"], 2, "tls-peer-name checks a certificate"),
    (["--tls-psk-file", "{tmp}/short.key"], 2, "expected a key of 64 hex digits"),
    (["--tls-psk-file", "{tmp}/good.key", "--tls-cert", "{tmp}/src.crt", "--tls-key",
      "{tmp}/src.key", "--tls-ca", "{tmp}/ca.pem"], 2, "not both"),
    (["--tls-cert", "{tmp}/src.crt", "--tls-key", "{tmp}/dst.key", "--tls-ca",
      "{tmp}/ca.pem"], 1, "does not match the certificate"),
    (["--tls-cert", "{tmp}/short.key", "--tls-key", "{tmp}/src.key", "--tls-ca",
      "{tmp}/ca.pem"], 1, "{tmp}/short.key: no start line"),
    (["--tls-cert", "{tmp}/expired.crt", "--tls-key", "{tmp}/expired.key", "--tls-ca",
      "{tmp}/ca.pem"], 1, "the certificate in {tmp}/expired.crt has expired"),
])
def test_receive_checks_its_credentials_before_it_listens(godwit_bin, tmp_path, args, code,
                                                         needle):
    """Bad TLS options and credentials end a receive before it listens (tlscerts.py
    makes the certificates)."""
    from tlscerts import CA, psk_file
    ca = CA(tmp_path, "ca")
    for name in ("src", "dst"):
        ca.issue(name, dns=[f"{name}.test"])
    ca.issue("expired", dns=["dst.test"], expired=True)
    psk_file(tmp_path, "good.key")
    (tmp_path / "short.key").write_text("00112233\n")
    args = [a.format(tmp=tmp_path) for a in args]
    res = run_godwit(["receive", "--listen", "tcp:127.0.0.1:1", *args], timeout=10)
    assert res.returncode == code, res.stderr
    one_error_line(res, needle.format(tmp=tmp_path))
    assert "waiting for an incoming migration" not in res.stderr


@pytest.mark.parametrize("args,needle", [
    (["--encrypt", "yes"], "--encrypt 'yes'"),
    (["--tls-psk-file", "{tmp}/none.key"], "cannot read the key file {tmp}/none.key"),
    (["--encrypt", "opportunistic"], "encrypt opportunistic needs credentials"),
])
def test_migrate_bad_tls_options(godwit_bin, tmp_path, args, needle):
    args = [a.format(tmp=tmp_path) for a in args]
    res = run_godwit(["migrate", "--api", "x.sock", "--to", "tcp:127.0.0.1:1", *args])
    assert res.returncode == 2
    one_error_line(res, needle.format(tmp=tmp_path))


def test_receive_from_a_file_has_no_tls(godwit_bin, tmp_path):
    from tlscerts import psk_file
    res = run_godwit(["receive", "--from", "file:x.snap", "--tls-psk-file", psk_file(tmp_path)])
    assert res.returncode == 2
    one_error_line(res, "TLS is for --listen")


def test_encrypt_key_is_for_snapshot_files(godwit_bin, tmp_path):
    from tlscerts import psk_file
    key = psk_file(tmp_path)
    res = run_godwit(["receive", "--listen", "tcp:127.0.0.1:1", "--encrypt-key", key])
    assert res.returncode == 2
    one_error_line(res, "--encrypt-key is for --from file:PATH")
    (tmp_path / "bad.key").write_text("xyz\n")
    res = run_godwit(["dump-stream", "--encrypt-key", str(tmp_path / "bad.key"), "x.snap"])
    assert res.returncode == 2 and "expected a key of 64 hex digits" in res.stdout
