"""Encrypted, authenticated migration: TLS 1.3 on every connection of the stream
(src/migrate/tls.c; docs/encryption.md). Each test makes its own CAs, certificates and
one-time keys in its tmp dir (tlscerts.py); the man in the middle is a Python relay on
loopback (Relay below)."""
import os
import re
import socket
import subprocess
import ssl
import threading
import time

import pytest

from godwit_vm import Godwit, free_port
from test_migration import Receiver, migrate, slowlink, start_source
from tlscerts import Credentials, psk_file

pytestmark = pytest.mark.kvm

APPLICATION_DATA = 0x17


@pytest.fixture
def creds(tmp_path):
    return Credentials(tmp_path / "pki")


class Relay:
    """Sits between source and destination on loopback: forwards every connection both
    ways, keeps what the source sent on each (captured), and on the first connection
    flips one bit of the TCP payload, either at byte flip_at or inside the body of its
    flip_record-th TLS application-data record. Its threads end when it is closed."""

    def __init__(self, target_port, flip_at=None, flip_record=None):
        self.target = target_port
        self.flip_at, self.flip_record = flip_at, flip_record
        self.flipped = False
        self.captured = []
        self.socks = []
        self.stop = threading.Event()
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(32)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    @property
    def uri(self):
        return f"tcp:127.0.0.1:{self.port}"

    def _accept(self):
        while not self.stop.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            c.settimeout(None)
            s.settimeout(None)
            self.socks += [c, s]
            first = not self.captured
            buf = bytearray()
            self.captured.append(buf)
            for args in ((c, s, buf, first), (s, c, None, False)):
                t = threading.Thread(target=self._pump, args=args, daemon=True)
                t.start()
                self.threads.append(t)

    def _tamper(self, data, pos, rec):
        """Flips the chosen bit in data (which starts pos bytes into the connection);
        rec is the TLS record parser's state: [bytes left in header, header, body left,
        application-data records seen]."""
        if self.flip_at is not None and pos <= self.flip_at < pos + len(data):
            data[self.flip_at - pos] ^= 0x01
            self.flipped = True
        if self.flip_record is None:
            return
        i = 0
        while i < len(data) and not self.flipped:
            if rec[0]:
                take = min(rec[0], len(data) - i)
                rec[1] += data[i:i + take]
                rec[0] -= take
                i += take
                if not rec[0]:
                    rec[2] = int.from_bytes(rec[1][3:5], "big")
                    rec[3] += rec[1][0] == APPLICATION_DATA
                continue
            take = min(rec[2], len(data) - i)
            if rec[3] == self.flip_record and take:
                data[i + take // 2] ^= 0x01
                self.flipped = True
            rec[2] -= take
            i += take
            if not rec[2]:
                rec[0], rec[1] = 5, bytearray()

    def _pump(self, a, b, capture, tamper):
        """Blocking both ways (a timeout on a send cannot say how much went); a closed
        relay, or the other direction's end, wakes it with a shutdown."""
        pos, rec = 0, [5, bytearray(), 0, 0]
        while not self.stop.is_set():
            try:
                data = bytearray(a.recv(65536))
            except OSError:
                break
            if not data:
                break
            if tamper:
                self._tamper(data, pos, rec)
            if capture is not None:
                capture += data
            pos += len(data)
            try:
                b.sendall(data)
            except OSError:
                break
        # Shut down, to wake the other direction; then closed, so that what the other
        # end still sends meets a reset rather than a full window.
        for s in (a, b):
            self._shutdown(s)
        for s in (a, b):
            s.close()

    @staticmethod
    def _shutdown(s):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self):
        self.stop.set()
        for s in self.socks:
            self._shutdown(s)
        for t in self.threads:
            t.join(timeout=5)
        self.lsock.close()


@pytest.fixture
def relays():
    made = []
    yield made
    for r in made:
        r.close()


def moved(src, dst, out, res):
    assert res.returncode == 0 and out["status"] == "completed", (res.stderr, dst.stderr())
    assert src.wait_exit(timeout=10) == 0
    dst.wait_for_pass(dst.passes() + 1, timeout=60)
    assert "ERROR" not in dst.output()


def runs_on(src, res, out):
    """The move failed and said why; the VM still runs at the source."""
    assert res.returncode != 0
    assert out is None or out["status"] == "failed", out
    status, vm = src.api("GET", "/vm")
    assert status == 200 and vm["state"] == "running", vm
    beats = len(re.findall(r"^hb \d+ ", src.output(), re.M))
    src.wait_for(r"^hb \d+ ", count=beats + 2)
    return out["error"] if out else res.stderr


def busy_source(tmp_path, procs, name="src"):
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 32M", cpus=2, memory="128M",
                       name=name)
    src.wait_for_pass(1, timeout=240)
    return src


@pytest.mark.parametrize("connections", ["1", "4"])
def test_certificates_both_ways(tmp_path, procs, creds, connections):
    """Mutual X.509: each side shows its certificate and checks the other's against the
    CA, the destination's for the name in --to (127.0.0.1); striped moves have TLS on
    every connection."""
    src = busy_source(tmp_path, procs)
    dst = Receiver(tmp_path, "dst", extra=[*creds.dest_args(), "--tls-peer-name", "src.test"])
    procs.append(dst)
    res, out = migrate(src, dst.uri, "--verify", "--connections", connections,
                       *creds.source_args())
    moved(src, dst, out, res)
    assert out["encryption"] == "tls-x509" and out["connections"] == int(connections)
    assert "over TLS (tls-x509)" in dst.stderr()


@pytest.mark.parametrize("connections", ["1", "3"])
def test_one_time_key(tmp_path, procs, connections):
    """The pre-shared key way, over one connection and striped; the source will not use
    the key for a second move."""
    key = psk_file(tmp_path)
    src = busy_source(tmp_path, procs)
    dst = Receiver(tmp_path, "dst", extra=["--tls-psk-file", key])
    procs.append(dst)
    res, out = migrate(src, dst.uri, "--verify", "--connections", connections,
                       "--tls-psk-file", key)
    moved(src, dst, out, res)
    assert out["encryption"] == "tls-psk" and out["connections"] == int(connections)
    again = busy_source(tmp_path, procs, name="src2")
    dead = f"tcp:127.0.0.1:{free_port()}"
    res, out = migrate(again, dead, "--tls-psk-file", key)
    assert res.returncode != 0 and "cannot connect" in out["error"], out
    res, out = migrate(again, dead, "--tls-psk-file", key)
    assert res.returncode != 0 and "served a move from here already" in res.stderr


REFUSALS = {
    # case: (source's credentials, destination's, what the source says, what the destination says)
    "destination from another CA": (
        lambda c, k: c.source_args(), lambda c, k: c.dest_args(pair=c.stranger),
        "certificate: unable to get local issuer certificate", "alert unknown ca"),
    "source from another CA": (
        lambda c, k: c.source_args(pair=c.stranger), lambda c, k: c.dest_args(),
        "alert unknown ca", "certificate: unable to get local issuer certificate"),
    "destination name": (
        lambda c, k: [*c.source_args(), "--tls-peer-name", "other.test"],
        lambda c, k: c.dest_args(), "certificate: hostname mismatch", "TLS refused"),
    "source name": (
        lambda c, k: c.source_args(),
        lambda c, k: [*c.dest_args(), "--tls-peer-name", "other.test"],
        "TLS", "certificate: hostname mismatch"),
    "plaintext source": (
        lambda c, k: [], lambda c, k: c.dest_args(),
        "takes only encrypted migrations", "refused an unencrypted migration stream"),
    "plaintext destination": (
        lambda c, k: c.source_args(), lambda c, k: [],
        "does not speak TLS", "no TLS credentials"),
    "wrong key": (
        lambda c, k: ["--tls-psk-file", k[0]], lambda c, k: ["--tls-psk-file", k[1]],
        "TLS handshake", "pre-shared key is not ours"),
    "certificates against a key": (
        lambda c, k: c.source_args(), lambda c, k: ["--tls-psk-file", k[1]],
        "TLS handshake", "TLS refused"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refused_before_any_memory_moves(tmp_path, procs, creds, case):
    """Each refusal is said on both sides before a byte of RAM moved; the VM runs on at
    the source and the destination goes on listening."""
    src_args, dst_args, src_says, dst_says = REFUSALS[case]
    keys = [psk_file(tmp_path, "a.key"), psk_file(tmp_path, "b.key")]
    src = busy_source(tmp_path, procs)
    dst = Receiver(tmp_path, "dst", extra=dst_args(creds, keys))
    procs.append(dst)
    res, out = migrate(src, dst.uri, *src_args(creds, keys))
    why = runs_on(src, res, out)
    assert src_says in why, why
    assert out["pages_sent"] == 0 and out["zero_pages"] == 0, out
    deadline = time.monotonic() + 10
    while dst_says not in dst.stderr():
        assert time.monotonic() < deadline, dst.stderr()
        time.sleep(0.05)
    assert dst.proc.poll() is None, dst.stderr()
    assert "VM resumed here" not in dst.stderr()


def test_expired_certificates(tmp_path, procs, creds):
    """An expired certificate of our own is refused before anything listens or moves;
    a peer that shows one is refused in the handshake."""
    res = Godwit(tmp_path, ["receive", "--listen", f"tcp:127.0.0.1:{free_port()}",
                            *creds.dest_args(pair=creds.dst_expired)], "expired")
    procs.append(res)
    assert res.proc.wait(timeout=10) != 0
    assert "has expired" in res.stderr()

    src = busy_source(tmp_path, procs)
    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv.minimum_version = ssl.TLSVersion.TLSv1_3
    srv.load_cert_chain(*creds.dst_expired)
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(30)
    told = []

    def serve():
        try:
            conn, _ = lsock.accept()
            with srv.wrap_socket(conn, server_side=True) as s:
                s.recv(1)
        except (ssl.SSLError, OSError) as e:
            told.append(str(e))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        res, out = migrate(src, f"tcp:127.0.0.1:{lsock.getsockname()[1]}",
                           *creds.source_args())
        why = runs_on(src, res, out)
        assert "certificate: certificate has expired" in why, why
        t.join(timeout=10)
        assert told and "CERTIFICATE_EXPIRED" in told[0].upper(), told
    finally:
        lsock.close()


def test_opportunistic_says_when_it_is_unencrypted(tmp_path, procs, creds):
    """opportunistic: TLS where the peer speaks it; where it does not, the move goes in
    the clear, said on the log and in the status, never silently."""
    src = busy_source(tmp_path, procs)
    dst = Receiver(tmp_path, "dst")
    procs.append(dst)
    res, out = migrate(src, dst.uri, "--encrypt", "opportunistic", *creds.source_args())
    moved(src, dst, out, res)
    assert out["encryption"] == "none"
    assert "this move goes UNENCRYPTED" in src.stderr()

    src = busy_source(tmp_path, procs, name="src2")
    dst = Receiver(tmp_path, "dst2", extra=["--encrypt", "opportunistic", *creds.dest_args()])
    procs.append(dst)
    res, out = migrate(src, dst.uri)
    moved(src, dst, out, res)
    assert "receiving an UNENCRYPTED migration" in dst.stderr()


def test_a_captured_move_does_not_replay(tmp_path, procs, relays, creds):
    """A recording of a TLS move, sent again to a fresh destination with the same
    credentials, is refused there: its handshake answers a nonce (the server's random
    and key share) the recording never saw."""
    src = busy_source(tmp_path, procs)
    dst = Receiver(tmp_path, "dst", extra=creds.dest_args())
    procs.append(dst)
    relay = Relay(dst.port)
    relays.append(relay)
    res, out = migrate(src, relay.uri, "--connections", "1", "--compress", "off",
                       "--tls-peer-name", "dst.test", *creds.source_args())
    moved(src, dst, out, res)
    capture = bytes(relay.captured[0])
    assert len(capture) > 1 << 20 and b"GODWITMS" not in capture

    fresh = Receiver(tmp_path, "fresh", extra=creds.dest_args())
    procs.append(fresh)
    with socket.create_connection(("127.0.0.1", fresh.port), timeout=10) as s:
        try:
            s.sendall(capture)
            while s.recv(65536):
                pass
        except OSError:
            pass
    deadline = time.monotonic() + 10
    while "TLS refused" not in fresh.stderr():
        assert time.monotonic() < deadline, fresh.stderr()
        time.sleep(0.05)
    assert fresh.proc.poll() is None and "receiving a migration" not in fresh.stderr()


@pytest.mark.parametrize("way", ["x509", "psk"])
def test_a_flipped_bit_in_flight_ends_the_move(tmp_path, procs, relays, creds, way):
    """A man in the middle flips one bit of the TCP payload 8 MiB into the stream (RAM
    going over, the source proven by its first records): that TLS record does not
    authenticate, the destination ends, and the VM runs on at the source."""
    key = psk_file(tmp_path)
    args = (["--tls-psk-file", key] if way == "psk" else creds.dest_args())
    src = busy_source(tmp_path, procs)
    dst = Receiver(tmp_path, "dst", extra=args)
    procs.append(dst)
    relay = Relay(dst.port, flip_at=8 << 20)
    relays.append(relay)
    res, out = migrate(src, relay.uri, "--connections", "1", "--compress", "off",
                       *(["--tls-psk-file", key] if way == "psk" else
                         ["--tls-peer-name", "dst.test", *creds.source_args()]))
    runs_on(src, res, out)
    assert relay.flipped
    assert dst.proc.wait(timeout=30) != 0
    assert "decryption failed or bad record mac" in dst.stderr()
    assert "incoming migration failed" in dst.stderr()
    assert "VM resumed here" not in dst.stderr()


def test_a_key_opens_one_move_only(tmp_path, procs, relays):
    """A source with the key whose opening is tampered with in flight is dropped, and
    its key is spent: a second source with the same key is refused, the first VM runs on."""
    key = psk_file(tmp_path)
    dst = Receiver(tmp_path, "dst", extra=["--tls-psk-file", key])
    procs.append(dst)
    relay = Relay(dst.port, flip_record=2)  # 1: the client's Finished; 2: header and CONFIG
    relays.append(relay)
    src = busy_source(tmp_path, procs)
    res, out = migrate(src, relay.uri, "--tls-psk-file", key)
    runs_on(src, res, out)
    assert relay.flipped
    other = busy_source(tmp_path, procs, name="src2")
    res, out = migrate(other, dst.uri, "--tls-psk-file", key)
    why = runs_on(other, res, out)
    assert "TLS handshake" in why, why
    assert "has served a move already" in dst.stderr()
    assert dst.proc.poll() is None


def test_far_link_with_tls(tmp_path, procs):
    """Over a 50 ms round trip the stream is striped over 5 connections or more, each
    with its own TLS session, their handshakes at once."""
    why = slowlink.unavailable_reason()
    if why:
        pytest.skip(why)
    key = psk_file(tmp_path)
    with slowlink.SlowLink(25, 1_000_000_000) as link:
        src = Godwit.run_testguest(tmp_path, "heartbeat 10 ; memtouch 64M", cpus=2,
                                   memory="256M", name="src", extra=["-v"],
                                   prefix=link.prefix("a"))
        procs.append(src)
        src.wait_for_pass(1, timeout=240)
        port = 20000 + os.getpid() % 20000
        dst = Godwit(tmp_path, ["receive", "--listen", f"tcp:{link.ip['b']}:{port}",
                                "--console", f"file:{tmp_path}/dst.console",
                                "--tls-psk-file", key], "dst", prefix=link.prefix("b"))
        procs.append(dst)
        deadline = time.monotonic() + 10
        while "waiting for an incoming migration" not in dst.stderr():
            assert dst.proc.poll() is None and time.monotonic() < deadline, dst.stderr()
            time.sleep(0.05)
        res, out = migrate(src, f"tcp:{link.ip['b']}:{port}", "--verify",
                           "--tls-psk-file", key, timeout=180)
        assert res.returncode == 0 and out["status"] == "completed", res.stderr
        said = re.search(r"round trip \d+ us \(the handshake's\).*", src.stderr())
        # One per 10 ms of round trip: 5 here, more where the delay line runs late.
        assert out["connections"] >= 5 and out["encryption"] == "tls-psk", (
            out, said and said.group(0), link.method)
        assert src.wait_exit(timeout=10) == 0
        dst.wait_for_pass(dst.passes() + 1, timeout=120)
        assert "ERROR" not in dst.output()
        dst.stop()


def openssl(cwd, *args):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60,
                   stdin=subprocess.DEVNULL)


def test_the_docs_recipe(tmp_path, procs):
    """The certificates docs/encryption.md tells a user to make with the openssl CLI
    move a VM."""
    pki = tmp_path / "recipe"
    pki.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl(pki, "req", "-x509", *ec, "-days", "3650", "-subj", "/CN=godwit-migration-ca",
            "-keyout", "ca.key", "-out", "ca.pem")
    for h in ("host-a.example", "host-b.example"):
        openssl(pki, "req", *ec, "-subj", f"/CN={h}", "-keyout", f"{h}.key", "-out",
                f"{h}.csr")
        (pki / f"{h}.ext").write_text(f"subjectAltName=DNS:{h},IP:127.0.0.1\n"
                                      "extendedKeyUsage=serverAuth,clientAuth\n")
        openssl(pki, "x509", "-req", "-in", f"{h}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "365", "-extfile", f"{h}.ext", "-out", f"{h}.crt")

    def args(h):
        return ["--tls-cert", str(pki / f"{h}.crt"), "--tls-key", str(pki / f"{h}.key"),
                "--tls-ca", str(pki / "ca.pem")]

    src = busy_source(tmp_path, procs)
    dst = Receiver(tmp_path, "dst", extra=[*args("host-b.example"), "--tls-peer-name",
                                           "host-a.example"])
    procs.append(dst)
    res, out = migrate(src, dst.uri, "--verify", *args("host-a.example"))
    moved(src, dst, out, res)
    assert out["encryption"] == "tls-x509"


def test_snapshot_encrypted_at_rest(tmp_path, procs):
    """migrate --to file: --encrypt-key: nothing of the stream is in the clear in the
    file; dump-stream and receive read it back with the key, and refuse it without, with
    another key, changed or cut short; TLS options are for tcp: streams only."""
    from godwit_vm import run_godwit
    key, other = psk_file(tmp_path, "snap.key"), psk_file(tmp_path, "other.key")
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 16M", cpus=2, memory="128M")
    src.wait_for_pass(1, timeout=240)
    res, out = migrate(src, f"tcp:127.0.0.1:{free_port()}", "--encrypt-key", key)
    assert res.returncode != 0 and "encrypt_key is for file: snapshots" in res.stderr
    res, out = migrate(src, f"file:{tmp_path}/x.snap", "--tls-psk-file", key)
    assert res.returncode != 0 and "TLS is for tcp: streams" in res.stderr
    snap = tmp_path / "vm.snap"
    res, out = migrate(src, f"file:{snap}", "--encrypt-key", key)
    assert res.returncode == 0 and out["status"] == "completed", res.stderr
    data = snap.read_bytes()
    assert data.startswith(b"GODWITSE") and b"GODWITMS" not in data and b"memtouch" not in data

    dump = run_godwit(["dump-stream", str(snap)])
    assert dump.returncode != 0 and "the snapshot is encrypted" in dump.stdout, dump.stdout
    dump = run_godwit(["dump-stream", "--encrypt-key", key, str(snap)], timeout=120)
    assert dump.returncode == 0 and "CONFIG" in dump.stdout and "END" in dump.stdout, dump.stdout

    def receive(name, path, *extra):
        return run_godwit(["receive", "--from", f"file:{path}", "--console",
                           f"file:{tmp_path}/{name}.console", *extra], timeout=60)

    res = receive("nokey", snap)
    assert res.returncode != 0 and "the snapshot is encrypted" in res.stderr
    res = receive("other", snap, "--encrypt-key", other)
    assert res.returncode != 0 and "does not open with this key" in res.stderr
    changed = tmp_path / "changed.snap"
    changed.write_bytes(data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 1])
                        + data[len(data) // 2 + 1:])
    res = receive("changed", changed, "--encrypt-key", key)
    assert res.returncode != 0 and "does not open with this key" in res.stderr
    cut = tmp_path / "cut.snap"
    cut.write_bytes(data[:-100])
    res = receive("cut", cut, "--encrypt-key", key)
    assert res.returncode != 0 and "cut short" in res.stderr

    dst = Godwit(tmp_path, ["receive", "--from", f"file:{snap}", "--encrypt-key", key,
                            "--console", f"file:{tmp_path}/dst.console"], "dst")
    procs.append(dst)
    dst.wait_for_pass(dst.passes() + 1, timeout=60)
    assert "ERROR" not in dst.output()
