"""A destination facing hostile peers and streams (issue 16, item 11): Python sockets
play the peer; after each, a real source must still be able to move its VM."""
import signal
import socket
import struct
import time

import pytest

import streamcraft as sc
from godwit_vm import run_godwit
from test_migration import Receiver, migrate, start_source

pytestmark = pytest.mark.kvm


def snapshot(tmp_path, procs, name="snapsrc"):
    src = start_source(tmp_path, procs, "heartbeat 10", memory="256M", name=name)
    src.wait_for(r"^hb 2 ")
    snap = tmp_path / f"{name}.snap"
    res, _ = migrate(src, f"file:{snap}")
    assert res.returncode == 0, res.stderr
    data = snap.read_bytes()
    hdr, recs, rest = sc.split(data)
    assert sc.join(hdr, recs) == data and rest == b""
    return hdr, recs


def receive_file(tmp_path, data, name="bad"):
    path = tmp_path / f"{name}.snap"
    path.write_bytes(data)
    res = run_godwit(["receive", "--from", f"file:{path}", "--console",
                      f"file:{tmp_path}/{name}.console"])
    dump = run_godwit(["dump-stream", str(path)])
    return res, dump


def test_unparseable_state_is_named_by_its_record(tmp_path, procs):
    hdr, recs = snapshot(tmp_path, procs)
    i = next(i for i, r in enumerate(recs) if r[0] == sc.STATE)
    recs[i] = (sc.STATE, recs[i][1], b"\xff" * 40)
    res, dump = receive_file(tmp_path, sc.join(hdr, recs))
    assert res.returncode == 1
    # The message names the record, not an id and instance the parse never produced.
    assert f"bad STATE record {i}: " in res.stderr, res.stderr
    assert "bad state section" not in res.stderr
    assert dump.returncode == 1 and f"record {i} (STATE)" in dump.stdout, dump.stdout


def test_bytes_after_end_are_refused(tmp_path, procs):
    hdr, recs = snapshot(tmp_path, procs)
    res, dump = receive_file(tmp_path, sc.join(hdr, recs) + b"\0")
    assert res.returncode == 1 and "bytes after END" in res.stderr, res.stderr
    assert "VM resumed" not in res.stderr
    assert dump.returncode == 1 and "bytes after END" in dump.stdout
    assert "status=ok" not in dump.stdout


def cfg_payload(recs):
    assert recs[0][0] == sc.CONFIG
    return recs[0][2]


@pytest.mark.parametrize("tag,value,why", [
    (7, struct.pack("<I", 2), "machine version 2; this godwit builds version 1"),
    (6, b"", "does not say which CPU features the guest saw"),
    (2, struct.pack("<I", 33), "33 vCPUs"),
])
def test_config_refused_by_both(tmp_path, procs, tag, value, why):
    hdr, recs = snapshot(tmp_path, procs)
    recs[0] = (sc.CONFIG, recs[0][1], sc.config_with(cfg_payload(recs), tag, value))
    res, dump = receive_file(tmp_path, sc.join(hdr, recs))
    assert res.returncode == 1 and why in res.stderr, res.stderr
    assert dump.returncode == 1 and why in dump.stdout, dump.stdout


def test_vm_larger_than_the_host_is_refused(tmp_path, procs):
    meminfo = dict(l.split(":") for l in open("/proc/meminfo"))
    host = (int(meminfo["MemTotal"].split()[0]) + int(meminfo["SwapTotal"].split()[0])) << 10
    size = 1 << 40
    if host >= size:
        pytest.skip("this host has 1 TiB of RAM and swap")
    hdr, recs = snapshot(tmp_path, procs)
    cfg = sc.config_with(cfg_payload(recs), 1, struct.pack("<Q", size))
    cfg = sc.config_with(cfg, 4, struct.pack("<QQ", 0, size))
    recs[0] = (sc.CONFIG, recs[0][1], cfg)
    res, _ = receive_file(tmp_path, sc.join(hdr, recs))
    assert res.returncode == 1, res.stderr
    assert "the incoming VM has 1048576 MiB of RAM; this host has" in res.stderr, res.stderr


def connect(port, data=b""):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if data:
        s.sendall(data)
    return s


def read_record(s):
    hdr = b""
    while len(hdr) < 24:
        try:
            b = s.recv(24 - len(hdr))
        except ConnectionResetError:
            return None
        if not b:
            return None
        hdr += b
    rtype, _, length, _ = struct.unpack("<IIQQ", hdr)
    payload = b""
    while len(payload) < length:
        payload += s.recv(length - len(payload))
    return rtype, payload


def closed_within(s, seconds):
    s.settimeout(seconds)
    try:
        while s.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_listener_outlives_hostile_peers_and_a_source_still_moves(tmp_path, procs):
    hdr, recs = snapshot(tmp_path, procs)
    config = sc.record(sc.CONFIG, cfg_payload(recs))
    dst = Receiver(tmp_path, "dst", extra=["--io-timeout", "2"])
    procs.append(dst)

    # The magic, 24 junk bytes and a record header: ERROR back, and the listener goes on.
    s = connect(dst.port, sc.MAGIC + b"\x66" * 24 + b"\x01" + b"\0" * 23)
    assert read_record(s)[0] == sc.ERROR
    assert closed_within(s, 5)
    assert dst.proc.poll() is None, dst.stderr()
    assert "stream format" in dst.stderr()

    # A header and the real CONFIG, then silence: ACCEPTED, then dropped at --io-timeout.
    s = connect(dst.port, sc.header() + config)
    assert read_record(s)[0] == sc.ACCEPTED
    t0 = time.monotonic()
    assert closed_within(s, 10)
    assert 1.5 < time.monotonic() - t0 < 8
    assert dst.proc.poll() is None, dst.stderr()

    # Offers connections, never sends STRIPE: the same.
    cfg = sc.config_with(cfg_payload(recs), sc.CFG_CONNECTIONS,
                         struct.pack("<I", 2) + b"t" * 16)
    s = connect(dst.port, sc.header() + sc.record(sc.CONFIG, cfg))
    rec = read_record(s)
    assert rec and rec[0] == sc.ACCEPTED, dst.stderr()
    assert struct.unpack_from("<I", rec[1], 4)[0] == 2
    assert closed_within(s, 10)
    assert dst.proc.poll() is None, dst.stderr()

    # Only the magic; and 100 connections holding part of it: none may hold the source up.
    magic_only = connect(dst.port, sc.MAGIC)
    held = [connect(dst.port, sc.MAGIC[:3]) for _ in range(100)]
    src = start_source(tmp_path, procs, "heartbeat 10", memory="256M")
    src.wait_for(r"^hb 2 ")
    t0 = time.monotonic()
    res, out = migrate(src, dst.uri)
    took = time.monotonic() - t0
    assert res.returncode == 0 and out["status"] == "completed", res.stderr
    assert took < 8, f"the move took {took:.1f} s"
    dst.wait_for(r"^hb \d+ ", count=2)
    for s in held + [magic_only]:
        s.close()


FEATURES_TAG, ROUND_ACK = 9, 1 << 1  # STREAM_CFG_FEATURES, STREAM_FEATURE_ROUND_ACK


def stalled_receiver(tmp_path, procs, name, extra=()):
    hdr, recs = snapshot(tmp_path, procs, name=f"{name}src")
    dst = Receiver(tmp_path, name, extra=list(extra))
    procs.append(dst)
    # A snapshot's CONFIG asks for no ROUND_ACK (a file cannot answer); a live source
    # does, and then every ROUND is answered.
    cfg = sc.config_with(cfg_payload(recs), FEATURES_TAG, struct.pack("<I", ROUND_ACK), flags=1)
    s = connect(dst.port, sc.header() + sc.record(sc.CONFIG, cfg))
    assert read_record(s)[0] == sc.ACCEPTED
    s.sendall(sc.round_record(1))  # the first record: this peer is the source now
    return dst, s


def test_stalled_source_ends_at_the_io_timeout(tmp_path, procs):
    dst, s = stalled_receiver(tmp_path, procs, "dst", ["--io-timeout", "2"])
    t0 = time.monotonic()
    assert dst.wait_exit(timeout=20) == 1
    assert time.monotonic() - t0 < 10
    assert "for 2 s (--io-timeout); the VM was not started" in dst.stderr(), dst.stderr()
    s.close()


def test_sigterm_ends_a_receive_with_a_source_connected(tmp_path, procs):
    dst, s = stalled_receiver(tmp_path, procs, "dst")
    time.sleep(0.5)
    dst.proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert dst.wait_exit(timeout=20) == 1
    assert time.monotonic() - t0 < 5
    assert "stopped by a signal; the VM was not started" in dst.stderr(), dst.stderr()
    s.close()


def test_source_that_does_not_read_ends_at_the_io_timeout(tmp_path, procs):
    dst, s = stalled_receiver(tmp_path, procs, "dst", ["--io-timeout", "2"])
    s.settimeout(1)
    burst = sc.round_record(2) * 4096
    t0 = time.monotonic()
    try:
        while dst.proc.poll() is None and time.monotonic() - t0 < 60:
            s.sendall(burst)  # each provokes a ROUND_ACK that is never read
    except (socket.timeout, OSError):
        pass
    assert time.monotonic() - t0 < 60, "the receiver kept reading without its answers read"
    assert dst.wait_exit(timeout=30) == 1
    assert "read nothing we sent, for 2 s" in dst.stderr(), dst.stderr()
    s.close()
