"""Live migration between two godwit processes on this host (needs /dev/kvm).

The memtouch workload is the integrity oracle: it checks every page it wrote
before rewriting it, so a lost or stale page prints `memtouch: ERROR` at once.
"""
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from godwit_vm import free_port, GODWIT, ROOT, Godwit, run_godwit

sys.path.insert(0, os.path.join(ROOT, "bench"))

import slowlink  # noqa: E402

pytestmark = pytest.mark.kvm


class Receiver(Godwit):
    def __init__(self, tmp_path, name, source="listen", extra=(), prefix=()):
        self.port = free_port()
        where = (["--listen", f"tcp:127.0.0.1:{self.port}"] if source == "listen"
                 else ["--from", source])
        api_path = str(tmp_path / f"{name}.sock")
        console = tmp_path / f"{name}.console"
        super().__init__(tmp_path, ["receive", *where, "--api", api_path,
                                    "--console", f"file:{console}", *extra], name,
                         prefix=prefix)
        if source == "listen":
            deadline = time.monotonic() + 10
            while "waiting for an incoming migration" not in self.stderr():
                assert self.proc.poll() is None, self.stderr()
                assert time.monotonic() < deadline, "receiver did not start listening"
                time.sleep(0.05)

    @property
    def uri(self):
        return f"tcp:127.0.0.1:{self.port}"


def migrate(src, to, *extra, timeout=120):
    res = run_godwit(["migrate", "--api", src.api_path, "--to", to, "--json", *extra],
                     timeout=timeout)
    out = json.loads(res.stdout.strip().splitlines()[-1]) if res.stdout.strip() else None
    return res, out


def start_source(tmp_path, procs, cmdline, cpus=1, memory="512M", name="src", extra=(),
                 prefix=()):
    g = Godwit.run_testguest(tmp_path, cmdline, cpus=cpus, memory=memory, name=name,
                             extra=extra, prefix=prefix)
    procs.append(g)
    return g


def test_busy_guest_moves_with_memory_intact(tmp_path, procs):
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 128M", cpus=2)
    src.wait_for_pass(2, timeout=240)
    dst = Receiver(tmp_path, "dst")
    procs.append(dst)
    res, out = migrate(src, dst.uri, "--verify", "--timeout", "600", timeout=700)
    assert res.returncode == 0, res.stderr
    assert out["status"] == "completed"
    for key in ("total_ms", "downtime_ms", "rounds", "ram_bytes", "bytes_sent", "pages_sent",
                "zero_pages", "throttle_pct"):
        assert key in out or key == "throttle_pct", key
    assert src.wait_exit(timeout=10) == 0
    dst.wait_for_pass(dst.passes() + 2, timeout=60)
    dst.wait_for(r"^hb \d+", count=3)
    assert "ERROR" not in dst.output()


@pytest.mark.parametrize("mode", ["lz4", "zstd", "off", "auto"])
def test_compression_modes_keep_memory_intact(tmp_path, procs, mode):
    """RAM_LZ4 and RAM_ZSTD records (memtouch pages are mostly zeros) restore the same
    memory; auto is LZ4 on loopback."""
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 64M", cpus=2, memory="256M")
    src.wait_for_pass(1, timeout=240)
    dst = Receiver(tmp_path, "dst")
    procs.append(dst)
    res, out = migrate(src, dst.uri, "--verify", "--compress", mode)
    assert res.returncode == 0 and out["status"] == "completed", res.stderr
    packed = "zstd" if mode == "zstd" else "lz4"
    other = "lz4" if mode == "zstd" else "zstd"
    assert out[f"{other}_pages"] == 0 and out[f"{other}_saved_bytes"] == 0, out
    if mode == "off":
        assert out["lz4_pages"] == 0 and out["lz4_saved_bytes"] == 0
    else:
        assert out[f"{packed}_pages"] >= 64 * 256 and out[f"{packed}_saved_bytes"] > 0, out
        assert out["bytes_sent"] < out["pages_sent"] * 4096 // 4, out
    assert src.wait_exit(timeout=10) == 0
    dst.wait_for_pass(dst.passes() + 1, timeout=60)
    assert "ERROR" not in dst.output()


PROGRESS = re.compile(r"^(\w+): round (\d+), guest RAM ([\d.]+) (MiB|GiB) moved \(\d+ MB/s\), "
                      r"([\d.]+) (MiB|GiB) dirty; ([\d.]+) (MiB|GiB) on the wire; "
                      r"throttle \d+%, \d+ ms$")


def progress_lines(stderr):
    """(status, rounds, guest RAM MiB moved, MiB dirty, MiB on the wire) per progress line
    of `godwit migrate` (not a terminal: one line per poll)."""
    out = []
    for line in stderr.splitlines():
        m = PROGRESS.match(line)
        if m:
            mib = [float(m[i]) * (1024 if m[i + 1] == "GiB" else 1) for i in (3, 5, 7)]
            out.append((m[1], int(m[2]), *mib))
    return out


def test_progress_shows_guest_ram_apart_from_the_wire(tmp_path, procs):
    """memtouch's pages compress about 100:1: the progress line shows the guest RAM
    moved (it once said "0 MiB sent" of the compressed stream) and the wire's bytes
    apart; so do the summary and the JSON (ram_moved_bytes)."""
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 64M", cpus=2, memory="256M")
    src.wait_for_pass(1, timeout=240)
    dst = Receiver(tmp_path, "dst")
    procs.append(dst)
    res = run_godwit(["migrate", "--api", src.api_path, "--to", dst.uri], timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = progress_lines(res.stderr)
    assert lines and lines[-1][0] == "completed", res.stderr
    status, rounds, moved, dirty, wire = lines[-1]
    assert moved >= 64 and dirty == 0 and wire < moved / 4, res.stderr
    summary = dict(line.split() for line in res.stdout.splitlines()[1:] if line.strip())
    assert int(summary["ram_moved"]) >= 64 << 20, res.stdout
    assert int(summary["ram_moved"]) == (int(summary["pages_sent"]) +
                                         int(summary["zero_pages"])) * 4096, res.stdout
    assert int(summary["bytes_sent"]) < int(summary["ram_moved"]) // 4, res.stdout
    assert src.wait_exit(timeout=10) == 0
    dst.wait_for_pass(dst.passes() + 1, timeout=60)
    assert "ERROR" not in dst.output()


def test_progress_counts_the_first_pass_as_it_goes(tmp_path, procs):
    """The first pass of 64 MiB, held to 20 MiB/s on the wire, takes seconds: the
    progress shows its guest RAM and wire bytes growing record by record, not only once
    a round has ended."""
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 64M", cpus=2, memory="256M")
    src.wait_for_pass(1, timeout=240)
    dst = Receiver(tmp_path, "dst")
    procs.append(dst)
    res = run_godwit(["migrate", "--api", src.api_path, "--to", dst.uri, "--compress", "off",
                      "--max-bandwidth", "20M"], timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    first = [ln for ln in progress_lines(res.stderr) if ln[0] == "active" and ln[1] == 0]
    moved = sorted({ln[2] for ln in first if ln[2] > 0})
    assert len(moved) >= 3, res.stderr
    wire = sorted({ln[4] for ln in first if ln[4] > 0})
    assert len(wire) >= 3, res.stderr
    assert src.wait_exit(timeout=10) == 0


@pytest.mark.parametrize("random", [True, False], ids=["random", "compressible"])
def test_random_memtouch_pages_do_not_compress(tmp_path, procs, random):
    """memtouch's random mode is incompressible, as the benchmark needs: with LZ4 tried
    on every record, what crosses the wire is at least 90 % of the guest memory moved
    (the default pattern: a few percent), and the memory arrives intact."""
    wl = "memtouch 64M 100" + (" random" if random else "")
    src = start_source(tmp_path, procs, f"heartbeat 10 ; {wl}", cpus=2, memory="256M")
    src.wait_for_pass(2, timeout=240)
    dst = Receiver(tmp_path, "dst")
    procs.append(dst)
    res, out = migrate(src, dst.uri, "--compress", "lz4", "--timeout", "300", timeout=400)
    assert res.returncode == 0 and out["status"] == "completed", res.stderr
    moved = out["pages_sent"] * 4096
    assert moved >= 64 << 20, out
    if random:
        assert out["bytes_sent"] >= 0.9 * moved, out
        assert out["lz4_saved_bytes"] < 0.05 * moved, out
    else:
        assert out["bytes_sent"] < 0.05 * moved, out
    assert src.wait_exit(timeout=10) == 0
    dst.wait_for_pass(dst.passes() + 2, timeout=60)
    assert "ERROR" not in dst.output() and "FAILED" not in dst.output()


@pytest.mark.parametrize("connections", [4, 16])
def test_several_connections_keep_memory_intact(tmp_path, procs, connections):
    """The stream striped over several TCP connections (format 1.3) restores the same
    memory (--verify), with --compress off so that many chunks go over each; the
    chunks are 16 KiB (STRIPE_CHUNKED, 1.4), not 1.3's 64 KiB."""
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 64M", cpus=2, memory="256M")
    src.wait_for_pass(1, timeout=240)
    dst = Receiver(tmp_path, "dst", extra=["-v"])
    procs.append(dst)
    res, out = migrate(src, dst.uri, "--verify", "--compress", "off", "--connections",
                       str(connections))
    assert res.returncode == 0 and out["status"] == "completed", res.stderr
    assert out["connections"] == connections, out
    assert out["bytes_sent"] > 64 << 20
    assert src.wait_exit(timeout=10) == 0
    assert f"the stream comes over {connections} connections, 16 KiB at a time" in dst.stderr()
    dst.wait_for_pass(dst.passes() + 1, timeout=60)
    assert "ERROR" not in dst.output()


def test_one_connection_on_a_short_round_trip(tmp_path, procs):
    """Without --connections the source opens one per 10 ms of round trip: one here.
    The pause runs at real-time priority on both sides (as root); once handed over, the
    source ends at a lower priority (nice 10), out of the way of the guest now running
    on the destination."""
    src = start_source(tmp_path, procs, "heartbeat 10", memory="256M", extra=["-v"])
    src.wait_for(r"^hb 3 ")
    dst = Receiver(tmp_path, "dst", extra=["-v"])
    procs.append(dst)
    res, out = migrate(src, dst.uri)
    assert res.returncode == 0 and out["connections"] == 1, (res.stderr, out)
    assert "connections" not in dst.stderr()
    assert src.wait_exit(timeout=10) == 0
    assert "handed over; this process ends at nice 10" in src.stderr()
    if os.geteuid() == 0:
        assert re.search(r"pause \d+ us: .*; at real-time priority", src.stderr())
        assert re.search(r"restore \d+ us: .*; at real-time priority", dst.stderr())
    # Format 1.5: GO went right after END, the destination sent no READY.
    assert re.search(r"pause \d+ us: .*state sent \d+ \(RAM \d+, state \d+\), GO with END, "
                     r"resumed", src.stderr())
    assert "GO follows END (format 1.5): no READY" in dst.stderr()


def test_confirm_ready_keeps_the_ready_go_handshake(tmp_path, procs):
    """--confirm-ready: GO only after READY (the pre-1.5 hand-over), memory intact."""
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 32M", cpus=2, memory="256M",
                       extra=["-v"])
    src.wait_for_pass(1, timeout=240)
    dst = Receiver(tmp_path, "dst", extra=["-v"])
    procs.append(dst)
    res, out = migrate(src, dst.uri, "--verify", "--confirm-ready")
    assert res.returncode == 0 and out["status"] == "completed", res.stderr
    assert src.wait_exit(timeout=10) == 0
    assert re.search(r"pause \d+ us: .*, destination loaded \(READY\) \d+, resumed",
                     src.stderr())
    assert "GO follows END" not in dst.stderr()
    dst.wait_for_pass(dst.passes() + 1, timeout=60)
    assert "ERROR" not in dst.output()


@pytest.mark.parametrize("compress", ["zstd", "lz4"])
def test_long_link_uses_several_connections_and_no_extra_round_trip(tmp_path, procs, compress):
    """Over a 50 ms round trip (netem between two network namespaces, bench/slowlink.py)
    the source opens one connection per 10 ms of it, 5, and stripes the stream over
    them, with zstd records as well; CONFIG goes in the SYN (TCP Fast Open). A wait for
    the destination to catch up is followed by one more round. With LZ4 (twice zstd's bytes: a first round that
    takes several round trips, then more rounds) it is seen that once the pause fits and
    what is not yet acknowledged is only in flight, the source pauses without waiting a
    round trip for the acknowledgements. Memory verified. (Where the link is
    bench/delayline.py, it runs at real-time priority: at the ordinary one, on a loaded
    host, its delay grew by up to 77 ms and the source rightly opened 7-12.)"""
    why = slowlink.unavailable_reason()
    if why:
        pytest.skip(why)
    with slowlink.SlowLink(25, 1_000_000_000) as link:
        src = Godwit.run_testguest(tmp_path, "heartbeat 10 ; memtouch 256M 100", cpus=2,
                                   memory="512M", name="src", extra=["-v"],
                                   prefix=link.prefix("a"))
        procs.append(src)
        src.wait_for_pass(1, timeout=240)
        port = 20000 + os.getpid() % 20000
        dst = Godwit(tmp_path, ["receive", "-v", "--listen", f"tcp:{link.ip['b']}:{port}",
                                "--console", f"file:{tmp_path}/dst.console"], "dst",
                     prefix=link.prefix("b"))
        procs.append(dst)
        deadline = time.monotonic() + 10
        while "waiting for an incoming migration" not in dst.stderr():
            assert dst.proc.poll() is None and time.monotonic() < deadline, dst.stderr()
            time.sleep(0.05)
        res, out = migrate(src, f"tcp:{link.ip['b']}:{port}", "--verify", "--compress",
                           compress, timeout=180)
        assert res.returncode == 0 and out["status"] == "completed", res.stderr
        said = re.search(r"round trip \d+ us \(the handshake's\).*", src.stderr())
        assert out["connections"] == 5, (out, said and said.group(0), link.method)
        assert src.wait_exit(timeout=10) == 0
        # slowlink turns on Fast Open's server side in both namespaces
        assert "the header and CONFIG went in the SYN" in src.stderr()
        # The wait for the destination to catch up (a round trip, or its backlog) is
        # followed by one more round, so what was dirtied during it is not sent inside
        # the pause.
        m = re.search(r"waited \d+ us for the destination \([^)]+\): one more round for "
                      r"what was dirtied meanwhile\n.*round \d+: ", src.stderr())
        assert m, src.stderr()[-3000:]
        if compress == "zstd":
            assert out["zstd_pages"] > 0 and out["lz4_pages"] == 0, out
        else:
            assert "in flight: pausing now" in src.stderr(), src.stderr()[-3000:]
        assert "RAM verified" in dst.stderr()
        dst.wait_for_pass(dst.passes() + 1, timeout=120)
        assert "ERROR" not in dst.output()
        dst.stop()


def test_there_and_back_ten_times(tmp_path, procs):
    cur = start_source(tmp_path, procs, "memtouch 64M", memory="256M", name="hop0")
    cur.wait_for_pass(1, timeout=240)
    for i in range(1, 11):
        nxt = Receiver(tmp_path, f"hop{i}")
        procs.append(nxt)
        res, out = migrate(cur, nxt.uri, "--verify")
        assert res.returncode == 0 and out["status"] == "completed", res.stderr
        assert cur.wait_exit(timeout=10) == 0
        nxt.wait_for_pass(max(nxt.passes(), cur.passes()) + 1, timeout=60)
        assert "ERROR" not in nxt.output(), f"hop {i}"
        cur = nxt


def test_heartbeat_time_continues_without_jump(tmp_path, procs):
    src = start_source(tmp_path, procs, "heartbeat 10")
    src.wait_for(r"^hb 20 ")
    dst = Receiver(tmp_path, "dst")
    procs.append(dst)
    res, out = migrate(src, dst.uri)
    assert res.returncode == 0, res.stderr
    dst.wait_for(r"^hb \d+ ", count=20)
    # One console stream across both hosts: a line the pause cut in two on the source
    # goes on, byte for byte, on the destination.
    text = src.output() + dst.output()
    # The destination is still printing: its last line may be half written.
    text = text[:text.rfind("\n") + 1]
    beats = [(int(s), int(n)) for s, n in re.findall(r"^hb (\d+) (\d+)$", text, re.M)]
    seqs = [s for s, _ in beats]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a beat is missing or repeated"
    gaps_ms = [(b[1] - a[1]) / 1e6 for a, b in zip(beats, beats[1:])]
    # Guest time never goes back, and no gap exceeds the pause plus generous slack.
    assert min(gaps_ms) > 0
    assert max(gaps_ms) < 10 + out["downtime_ms"] + 1000, max(gaps_ms)


def test_ticks_keep_counting(tmp_path, procs):
    src = start_source(tmp_path, procs, "ticks 100")
    src.wait_for(r"ticks cpu=0 count=\d+", count=2)
    dst = Receiver(tmp_path, "dst")
    procs.append(dst)
    res, _ = migrate(src, dst.uri)
    assert res.returncode == 0, res.stderr
    counts = [int(c) for c in re.findall(r"ticks cpu=0 count=(\d+)",
                                         dst.wait_for(r"ticks cpu=0 count=\d+", count=3) and
                                         dst.output())]
    assert counts[-1] > counts[0]


def test_snapshot_to_file_and_resume(tmp_path, procs):
    src = start_source(tmp_path, procs, "memtouch 32M", memory="256M")
    src.wait_for_pass(1, timeout=240)
    snap = tmp_path / "vm.snap"
    res, out = migrate(src, f"file:{snap}", "--verify")
    assert res.returncode == 0 and out["status"] == "completed", res.stderr
    assert src.wait_exit(timeout=10) == 0
    dump = run_godwit(["dump-stream", str(snap)])
    assert dump.returncode == 0 and "END" in dump.stdout
    dst = Receiver(tmp_path, "restored", source=f"file:{snap}")
    procs.append(dst)
    dst.wait_for_pass(src.passes() + 1, timeout=60)
    assert "ERROR" not in dst.output()


def heartbeat_continues(vm, count=5):
    n = len(re.findall(r"^hb ", vm.output(), re.M))
    vm.wait_for(r"^hb ", count=n + count)


def test_connection_refused_leaves_vm_running(tmp_path, procs):
    src = start_source(tmp_path, procs, "heartbeat 10")
    src.wait_for(r"^hb 3 ")
    res, out = migrate(src, f"tcp:127.0.0.1:{free_port()}")
    assert res.returncode != 0 and out["status"] == "failed"
    assert "connect" in out["error"]
    heartbeat_continues(src)
    assert src.api("GET", "/vm/migration")[1]["status"] == "failed"


def test_api_refuses_out_of_range_downtime_and_timeout(tmp_path, procs):
    """PUT /vm/migrate takes the bounds `godwit migrate` has (MIGRATE_DOWNTIME_MS_MAX,
    MIGRATE_TIMEOUT_S_MAX): beyond them it says 400 and why, and starts nothing (a
    timeout_s of 2^62 had wrapped the deadline to now; downtime_ms * 1000 the same).
    The largest values allowed are taken."""
    src = start_source(tmp_path, procs, "heartbeat 10")
    src.wait_for(r"^hb 3 ")
    to = f"tcp:127.0.0.1:{free_port()}"
    for key, val in [("downtime_ms", 0), ("downtime_ms", 3_600_001), ("downtime_ms", 2**62),
                     ("timeout_s", 604_801), ("timeout_s", 2**62)]:
        status, body = src.api("PUT", "/vm/migrate", {"to": to, key: val})
        assert status == 400 and f"'{key}' must be 1 to" in body["error"], (key, val, body)
        assert src.api("GET", "/vm/migration")[1]["status"] == "none", (key, val)
    status, _ = src.api("PUT", "/vm/migrate", {"to": to, "downtime_ms": 3_600_000,
                                            "timeout_s": 604_800})
    assert status == 202
    deadline = time.monotonic() + 30
    while (st := src.api("GET", "/vm/migration")[1])["status"] != "failed":
        assert time.monotonic() < deadline, st
        time.sleep(0.1)
    assert "connect" in st["error"], st
    heartbeat_continues(src)


def test_destination_refusal_comes_before_any_ram(tmp_path, procs):
    """A destination that cannot take the VM (here: a --disk for a VM without disks) says
    so right after CONFIG (format 1.1, ACCEPTED): not a page of RAM moves, the VM runs on."""
    src = start_source(tmp_path, procs, "heartbeat 10; memtouch 64M", cpus=2)
    src.wait_for(r"^hb 3 ")
    image = tmp_path / "other.img"
    image.write_bytes(bytes(1 << 20))
    dst = Receiver(tmp_path, "dst", extra=("--disk", str(image)))
    procs.append(dst)
    res, out = migrate(src, dst.uri)
    assert res.returncode != 0 and out["status"] == "failed", res.stdout + res.stderr
    assert "destination refused the VM" in out["error"] and "--disk" in out["error"], out
    assert out["pages_sent"] == 0 and out["bytes_sent"] < 4096, out
    assert dst.wait_exit(timeout=30) != 0
    heartbeat_continues(src)


@pytest.mark.parametrize("connections", [1, 4])
def test_destination_killed_during_precopy(tmp_path, procs, connections):
    """The VM runs on at the source, whichever of the stream's connections fails first."""
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 256M", cpus=2, memory="1G")
    src.wait_for_pass(1, timeout=240)
    dst = Receiver(tmp_path, "dst")
    procs.append(dst)
    p = subprocess.Popen([GODWIT, "migrate", "--api", src.api_path, "--to", dst.uri, "--json",
                          "--max-bandwidth", "50M", "--compress", "off", "--connections",
                          str(connections)],
                         stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        dst.proc.kill()
        out = json.loads(p.communicate(timeout=60)[0].strip().splitlines()[-1])
    finally:
        if p.poll() is None:
            p.kill()
    assert out["status"] == "failed" and out["connections"] == connections, out
    heartbeat_continues(src)
    dst2 = Receiver(tmp_path, "dst2")
    procs.append(dst2)
    res, out = migrate(src, dst2.uri, "--timeout", "600", timeout=700)
    assert res.returncode == 0, res.stderr


def thread_names(pid):
    names = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except FileNotFoundError:
            pass
    return names


def test_incoming_vcpus_wait_parked_and_cannot_be_resumed_early(tmp_path, procs):
    """The destination starts its vCPU threads parked while RAM still arrives (the
    hand-over only wakes them); meanwhile the VM is 'created', not 'paused', and the
    API cannot resume it before the source says GO."""
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 64M", cpus=2, memory="256M")
    src.wait_for_pass(1, timeout=240)
    dst = Receiver(tmp_path, "dst")
    procs.append(dst)
    p = subprocess.Popen([GODWIT, "migrate", "--api", src.api_path, "--to", dst.uri, "--json",
                          "--max-bandwidth", "20M", "--compress", "off"],
                         stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not {"vcpu-0", "vcpu-1"} <= set(thread_names(dst.proc.pid)):
            assert p.poll() is None and time.monotonic() < deadline, thread_names(dst.proc.pid)
            time.sleep(0.02)
        status, body = dst.api("GET", "/vm")
        assert status == 200 and body["state"] == "created", body
        status, body = dst.api("PUT", "/vm/resume")
        assert status == 409, body
        assert p.poll() is None, "the migration ended before the check"
        assert "hb " not in dst.output()
        out = json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1])
    finally:
        if p.poll() is None:
            p.kill()
    assert out["status"] == "completed", out
    assert src.wait_exit(timeout=10) == 0
    dst.wait_for(r"^hb \d+", count=3)
    dst.wait_for_pass(dst.passes() + 1, timeout=60)
    assert dst.api("GET", "/vm")[1]["state"] == "running"
    assert "ERROR" not in dst.output()


def test_cancel_from_api(tmp_path, procs):
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 256M", cpus=2, memory="1G")
    src.wait_for_pass(1, timeout=240)
    dst = Receiver(tmp_path, "dst")
    procs.append(dst)
    status, _ = src.api("PUT", "/vm/migrate", {"to": dst.uri, "max_bandwidth": 20_000_000,
                                            "compress": "off"})
    assert status == 202
    time.sleep(0.5)
    assert src.api("PUT", "/vm/migrate/cancel")[0] == 202
    deadline = time.monotonic() + 30
    while src.api("GET", "/vm/migration")[1]["status"] not in ("cancelled", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert dst.wait_exit(timeout=30) != 0
    # The destination says why it stopped: the source's reason, not a broken stream.
    assert "incoming migration failed: the sender stopped: cancelled" in dst.stderr(), \
        dst.stderr()
    heartbeat_continues(src)


def test_a_move_holds_back_while_another_from_this_host_pauses(tmp_path, procs):
    """A source in pre-copy holds back its next record while another move from this host
    claims the link for its pause (include/godwit/link_share.h): here the test claims
    it, 30 ms on and 30 ms off, with a lock on the file the source was pointed at, and
    is a move under way throughout (a lock on the file's second byte). The move still
    completes, its memory intact, and its log says how often it held back and that it
    kept few bytes unsent in its socket and its records short meanwhile; with the
    sharing turned off it does neither."""
    lock = tmp_path / "migrations.lock"
    for setting, held in ((str(lock), True), ("none", False)):
        name = "held" if held else "free"
        src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 16M", cpus=2,
                           memory="64M", name=f"src-{name}",
                           prefix=("env", f"GODWIT_MIGRATION_LOCK={setting}"))
        src.wait_for_pass(1, timeout=240)
        dst = Receiver(tmp_path, f"dst-{name}")
        procs.append(dst)
        status, _ = src.api("PUT", "/vm/migrate", {"to": dst.uri, "max_bandwidth": 4_000_000,
                                                "compress": "off"})
        assert status == 202
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, 1)
            # Until the move ends: its VM leaves with it (its API socket too).
            for _ in range(1000):
                if src.proc.poll() is not None:
                    break
                fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, 0)
                time.sleep(0.03)
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
                time.sleep(0.03)
        finally:
            os.close(fd)
        assert src.wait_exit(timeout=60) == 0, src.stderr()[-2000:]
        dst.wait_for_pass(dst.passes() + 1, timeout=120)
        m = re.search(r"held back (\d+) times for (\d+) ms in all", src.stderr())
        limited = ("at most 128 KiB unsent in its socket and 256 KiB of pages a record while "
                   "other moves" in src.stderr())
        if held:
            assert m and int(m.group(1)) >= 1, src.stderr()[-2000:]
            assert limited, src.stderr()[-2000:]
        else:
            assert not m, m.group(0)
            assert not limited


def vcpu_tid(pid, name):
    """The thread id of a process's vCPU thread ('vcpu-0', ...)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() == name:
                    return tid
        except FileNotFoundError:
            continue
    raise AssertionError(f"no thread {name} in {pid}")


def schedstat(pid, tid):
    """(ns on a CPU, ns waiting for one, times it got one) of a thread, or None once gone."""
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            return tuple(int(x) for x in f.read().split())
    except (FileNotFoundError, ProcessLookupError):
        return None


class CpuSampler:
    """Samples a thread's schedstat every few ms, stamped with CLOCK_MONOTONIC: the
    clock of godwit's -v log, so that a log line's time finds the sample before it."""

    def __init__(self, pid, tid):
        self.pid, self.tid, self.samples, self._stop = pid, tid, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            st = schedstat(self.pid, self.tid)
            if st is None:
                return
            self.samples.append((time.monotonic(), *st))
            time.sleep(0.005)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)

    def at(self, t):
        """The last sample taken at or before monotonic time t."""
        before = [s for s in self.samples if s[0] <= t]
        assert before, f"no sample before {t}"
        return before[-1]

    def between(self, t0, t1):
        """From t0 to t1: wall s, s on a CPU, s runnable (on a CPU or waiting for one),
        and how many times it got a CPU."""
        a, b = self.at(t0), self.at(t1)
        return b[0] - a[0], (b[1] - a[1]) / 1e9, (b[1] - a[1] + b[2] - a[2]) / 1e9, b[3] - a[3]


def vcpu_nices(pid):
    """{'vcpu-0': nice, ...} of a process's vCPU threads (/proc stat field 19)."""
    nices = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        if name.startswith("vcpu-"):
            nices[name] = int(fields[16])
    return nices


def test_dirtiers_yield_the_cpu_until_the_move_ends(tmp_path, procs):
    """While memory is copied, the vCPU that dirties it (memtouch on vCPU 1) runs at
    nice 10 and leaves its CPU every millisecond (a timer signals it out of KVM_RUN,
    it calls sched_yield; -v counts how often), the one that does not (vCPU 0) runs
    as before; a cancelled move gives the dirtier its priority back and the VM runs
    on. The link is slowed so that the move lasts until it is cancelled."""
    if os.geteuid() != 0:
        pytest.skip("setting a nice value back needs CAP_SYS_NICE")
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 64M", cpus=2,
                       memory="256M", extra=["-v"])
    src.wait_for_pass(1, timeout=240)
    pid = src.proc.pid
    assert vcpu_nices(pid) == {"vcpu-0": 0, "vcpu-1": 0}
    dst = Receiver(tmp_path, "dst")
    procs.append(dst)
    sampler = CpuSampler(pid, vcpu_tid(pid, "vcpu-1"))
    status, _ = src.api("PUT", "/vm/migrate", {"to": dst.uri, "max_bandwidth": 8_000_000,
                                            "compress": "off"})
    assert status == 202
    deadline = time.monotonic() + 30
    while vcpu_nices(pid).get("vcpu-1") != 10:
        assert time.monotonic() < deadline, (vcpu_nices(pid), src.stderr()[-2000:])
        time.sleep(0.05)
    assert vcpu_nices(pid)["vcpu-0"] == 0
    assert "migration: vCPU 1 yield the CPU to the move (nice 10)" in src.stderr()
    time.sleep(0.5)
    assert src.api("GET", "/vm/migration")[1]["status"] == "active"
    assert src.api("PUT", "/vm/migrate/cancel")[0] == 202
    deadline = time.monotonic() + 30
    while src.api("GET", "/vm/migration")[1]["status"] != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert vcpu_nices(pid) == {"vcpu-0": 0, "vcpu-1": 0}
    sampler.stop()
    log = src.stderr()
    left = re.findall(r"vCPU (\d+) left its CPU (\d+) times in the (\d+) ms it yielded", log)
    assert [v for v, _, _ in left] == ["1"], log[-2000:]
    times, ms = int(left[0][1]), int(left[0][2])
    since = float(re.search(r"\[(\d+\.\d+)\] migration: vCPU 1 yield the CPU", log).group(1))
    _, ran, _, _ = sampler.between(since, since + ms / 1000)
    # One per ms it runs, at most one per ms: a busy host gives a vCPU at nice 10 little
    # CPU (both cores busy: 26 ms in 650), and a pending signal is not queued twice.
    assert ms >= 500 and ran * 1000 // 4 <= times <= ms + 10, (left, f"{ran * 1000:.1f} ms on a CPU")
    assert dst.wait_exit(timeout=30) != 0
    heartbeat_continues(src)


def test_timeout_that_cannot_be_met(tmp_path, procs):
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 256M", cpus=2, memory="1G")
    src.wait_for_pass(1, timeout=240)
    dst = Receiver(tmp_path, "dst")
    procs.append(dst)
    res, out = migrate(src, dst.uri, "--timeout", "1", "--max-bandwidth", "10M",
                       "--compress", "off")
    assert res.returncode != 0 and out["status"] == "failed"
    assert "converge" in out["error"]
    heartbeat_continues(src)


def test_throttled_vcpu_runs_and_the_pause_wakes_it(tmp_path, procs):
    """A throttled vCPU still gets its share of time: the link is slowed
    (--max-bandwidth) so that the memtouch vCPU is throttled up to the polishing
    maximum (95 %: it may run 10 ms of every 200), and in the rounds at 95 % its thread
    must be runnable (on a CPU or waiting for one, /proc schedstat) at least half of
    its 5 %: one 10 ms timer for all vCPUs once woke a 75 % vCPU at the tick that sent
    it back to sleep, so it ran ~1 %. How much CPU it gets while runnable is the
    host's to give (at nice 10 while it yields, docs/design.md), so the pages it
    dirties are only required not to be none. The working set is small (1 MiB) so that
    even a vCPU that gets little CPU dirties all of it in a round and the throttle
    climbs. And the pause wakes a sleeping vCPU instead of waiting for its sleep to
    end: the source's -v log says how long stopping the vCPUs took. Asleep it stays
    asleep: the timer that makes a yielding vCPU leave its CPU every ms once woke it
    ~1000 times a second through its sleep (each a trip through the run queue).
    The downtime limit is wide so the move completes."""
    src = start_source(tmp_path, procs, "memtouch 1M", cpus=1, memory="256M", extra=["-v"])
    src.wait_for_pass(1, timeout=240)
    dst = Receiver(tmp_path, "dst")
    procs.append(dst)
    sampler = CpuSampler(src.proc.pid, vcpu_tid(src.proc.pid, "vcpu-0"))
    try:
        res, out = migrate(src, dst.uri, "--max-bandwidth", "512K", "--compress", "off",
                           "--downtime-ms", "5000", "--timeout", "120", timeout=180)
    finally:
        sampler.stop()
    log = src.stderr()
    assert res.returncode == 0 and out["status"] == "completed", res.stderr
    assert out["max_throttle_pct"] >= 90, (out, log[-3000:])
    assert src.wait_exit(timeout=10) == 0
    events = re.findall(r"\[(\d+\.\d+)\] (?:debug: )?(?:round \d+: \d+ pages sent, (\d+) dirty|"
                        r"migration: vCPU 0 throttled to (\d+)%)", log)
    at_max = [i for i, (_, _, pct) in enumerate(events) if pct and int(pct) >= 90][0]
    rounds = [(float(t), int(d)) for t, d, _ in events[at_max + 1:] if d]
    assert rounds, log[-3000:]
    wall, ran, runnable, oncpu = sampler.between(float(events[at_max][0]), rounds[-1][0])
    report = (f"{len(rounds)} rounds at 95 %: {wall * 1000:.0f} ms, the vCPU on a CPU "
              f"{ran * 1000:.1f} ms, runnable {runnable * 1000:.1f} ms, got a CPU {oncpu} "
              f"times; dirty {[d for _, d in rounds]}")
    assert wall >= 1.0, report
    assert runnable >= 0.025 * wall, report
    # A 10 ms slice every 200 ms, leaving the CPU every ms of it: ~11 times a cycle.
    assert oncpu <= wall * 1000 / 4, report
    assert sum(d for _, d in rounds) > 0, report
    m = re.search(r"pause \d+ us: vCPUs stopped (\d+),", log)
    assert m, log[-2000:]
    assert int(m.group(1)) < 100000, m.group(0)
    dst.wait_for_pass(dst.passes() + 1, timeout=120)
    assert "ERROR" not in dst.output()


def test_polishing_goes_on_until_the_predicted_pause_is_a_quarter_ms(tmp_path, procs):
    """Once the pause fits, pre-copy goes on while rounds shrink until the predicted
    pause is at most 250 us (at 1 ms, a guest dirtying 50 MB/s paused with the few
    hundred pages its last round left). The round the source paused after says so,
    and the pause's own log counts the pages it sent."""
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 32M 50", cpus=2,
                       memory="256M", extra=["-v"])
    src.wait_for_pass(1, timeout=240)
    dst = Receiver(tmp_path, "dst")
    procs.append(dst)
    res, out = migrate(src, dst.uri)
    assert res.returncode == 0 and out["status"] == "completed", res.stderr
    assert src.wait_exit(timeout=10) == 0
    log = src.stderr()
    rounds = [int(p) for p in re.findall(r"round \d+: \d+ pages sent, \d+ dirty, bw \d+ MB/s, "
                                         r"predicted pause (\d+) us", log)]
    assert len(rounds) >= 2 and rounds[-1] <= 250, log[-3000:]
    assert re.search(r"last RAM \(\d+ pages\) \+ state sent \d+", log), log[-2000:]
    dst.wait_for_pass(dst.passes() + 1, timeout=60)
    assert "ERROR" not in dst.output()


def test_the_destination_reads_the_pauses_last_pages_at_real_time_priority(tmp_path, procs):
    """After acknowledging a round the destination waits at real-time priority: what
    comes next may be the pause's, its last pages as well as STATE. Dropping it at the
    first page record left STATE to be read behind every ordinary thread of a busy host
    (up to 7 ms of a pause in bench/cluster.py). Root only (real-time priority); up to
    three moves, until one sends pages in its pause."""
    if os.geteuid() != 0:
        pytest.skip("real-time priority needs root")
    for attempt in range(3):
        where = tmp_path / f"move{attempt}"
        where.mkdir()
        src = start_source(where, procs, "heartbeat 10 ; memtouch 32M", cpus=2,
                           memory="256M", extra=["-v"])
        src.wait_for_pass(1, timeout=240)
        dst = Receiver(where, "dst", extra=["-v"])
        procs.append(dst)
        res, out = migrate(src, dst.uri)
        assert res.returncode == 0 and out["status"] == "completed", res.stderr
        assert src.wait_exit(timeout=10) == 0
        final = re.search(r"last RAM \((\d+) pages\) \+ state sent", src.stderr())
        assert final, src.stderr()[-2000:]
        dst.wait_for_pass(dst.passes() + 1, timeout=60)
        if int(final.group(1)):
            break
    else:
        pytest.fail("three moves sent no page in their pause:\n" + src.stderr()[-2000:])
    here = re.search(r"from the last acknowledgement to STATE \d+ \((\d+) bytes before it, at "
                     r"(real-time|the ordinary) priority\), to RESUMED sent waited for a CPU "
                     r"\d+", dst.stderr())
    assert here, dst.stderr()[-2000:]
    assert int(here.group(1)) > 0 and here.group(2) == "real-time", (final[0], here[0])


def move_with_the_destination_stopped(tmp_path, procs):
    """A 2-vCPU guest dirtying 64 MiB moves to a destination stopped (SIGSTOP) for 0.5 s
    from the source's first round on; the source's log."""
    tmp_path.mkdir()
    src = start_source(tmp_path, procs, "heartbeat 5 ; memtouch 64M", cpus=2, extra=["-v"])
    src.wait_for_pass(1, timeout=240)
    dst = Receiver(tmp_path, "dst")
    procs.append(dst)
    result = {}
    mover = threading.Thread(target=lambda: result.update(
        zip(("res", "out"), migrate(src, dst.uri, "--verify", "--timeout", "120", timeout=180))))
    mover.start()
    stopped = False
    try:
        deadline = time.monotonic() + 60
        while not re.search(r"round 1: ", src.stderr()) and mover.is_alive():
            assert time.monotonic() < deadline, src.stderr()[-2000:]
            time.sleep(0.001)
        dst.proc.send_signal(signal.SIGSTOP)
        stopped = True
        time.sleep(0.5)
    finally:
        if stopped:
            dst.proc.send_signal(signal.SIGCONT)
        mover.join(timeout=200)
    res, out = result["res"], result["out"]
    assert res.returncode == 0 and out["status"] == "completed", res.stderr
    assert src.wait_exit(timeout=10) == 0
    dst.wait_for_pass(dst.passes() + 1, timeout=120)
    assert "ERROR" not in dst.output()
    return src.stderr()


def test_dirtiers_slowed_while_a_destination_behind_catches_up(tmp_path, procs):
    """When the pause fits but the destination is still applying older rounds, the
    vCPUs that dirty memory are slowed while it catches up (what they write meanwhile
    only adds to its backlog: 150-400 MB in a 2-vCPU bench case). The destination is
    stopped (SIGSTOP) from the source's first round on for 0.5 s, so it is behind. If
    the guest dirtied so little during round 1 that the pause fit with one round in
    flight (the source then waits for the destination, nothing to slow), the move did
    not set the case up: it is made again, at most three times in all."""
    behind = r"the pause fits; the destination has applied round (\d+) of (\d+)"
    for attempt in range(3):
        log = move_with_the_destination_stopped(tmp_path / f"move{attempt}", procs)
        if any(int(m.group(1)) + 1 < int(m.group(2)) for m in re.finditer(behind, log)):
            break
    else:
        pytest.fail("in three moves the destination was never two rounds behind when the "
                    "pause fit:\n" + log[-3000:])
    m = re.search(behind + r"\n.*migration: vCPU 1 throttled to \d+%", log)
    assert m and int(m.group(1)) + 1 < int(m.group(2)), log[-3000:]


def test_verify_hashes_only_the_last_pages_in_the_pause(tmp_path, procs):
    """--verify (format 1.7) keeps the digests up to date as pages go: in the pause
    each side hashes only the pages sent after the last round and recomputes only the
    chunks they are in, not all touched RAM (that had been ~220 ms of a 1 GiB guest's
    pause). Counts, not timings: the host is shared."""
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 64M", cpus=2, memory="512M",
                       extra=["-v"])
    src.wait_for_pass(1, timeout=240)
    dst = Receiver(tmp_path, "dst", extra=["-v"])
    procs.append(dst)
    res, out = migrate(src, dst.uri, "--verify")
    assert res.returncode == 0 and out["status"] == "completed", res.stderr
    assert src.wait_exit(timeout=10) == 0
    log, dlog = src.stderr(), dst.stderr()
    final = re.search(r"last RAM \((\d+) pages\) \+ state sent", log)
    sv = re.search(r"verify: (\d+) page digests from the last RAM, (\d+) of (\d+) chunk "
                   r"digests recomputed, \d+ us", log)
    dv = re.search(r"verify: (\d+) pages hashed since the last round, (\d+) of (\d+) chunk "
                   r"digests recomputed, \d+ us", dlog)
    assert final and sv and dv, (log[-3000:], dlog[-3000:])
    pages = int(final.group(1))
    assert int(sv.group(1)) == pages and int(dv.group(1)) == pages, (final[0], sv[0], dv[0])
    chunks = int(sv.group(2))
    assert int(sv.group(3)) == int(dv.group(3)) == 256, (sv[0], dv[0])
    assert chunks == int(dv.group(2)) and chunks <= pages and chunks < 256, (sv[0], dv[0])
    assert "RAM verified: 256 chunks match the source" in dlog
    dst.wait_for_pass(dst.passes() + 1, timeout=60)
    assert "ERROR" not in dst.output()


_xxh = None


def xxh3(data, seed=0):
    """XXH3-64, from the libxxhash godwit links with."""
    global _xxh
    if _xxh is None:
        import ctypes
        _xxh = ctypes.CDLL("libxxhash.so.0").XXH3_64bits_withSeed
        _xxh.restype = ctypes.c_uint64
        _xxh.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]
    return _xxh(bytes(data), len(data), seed)


class CorruptingProxy:
    """Forwards one migration stream and changes a byte of one guest page in every
    plain RAM record that carries it, with the record checksums and END's chain made
    to match: a page corrupted where no checksum can see it (a bad NIC, a bug in the
    sender or the apply path); only --verify can."""

    def __init__(self, to_port, reseal=True, skip=0):
        self.to_port = to_port
        self.reseal = reseal  # False: the record checksums are left as sent
        self.skip = skip  # plain RAM records with data to pass on unchanged first
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.gpa = None
        self.changed = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def _read(sock, n):
        buf = bytearray()
        while len(buf) < n:
            got = sock.recv(n - len(buf))
            if not got:
                raise EOFError
            buf += got
        return buf

    def _corrupt(self, payload):
        nr_runs = int.from_bytes(payload[0:4], "little")
        if self.skip and any(int.from_bytes(payload[20 + i * 16:24 + i * 16], "little") == 1
                             for i in range(nr_runs)):
            self.skip -= 1
            return False
        data = 8 + nr_runs * 16
        for i in range(nr_runs):
            run = payload[8 + i * 16:24 + i * 16]
            gpa, npages = int.from_bytes(run[0:8], "little"), int.from_bytes(run[8:12], "little")
            if int.from_bytes(run[12:16], "little") != 1:  # ZERO: no data
                continue
            if self.gpa is None:
                self.gpa = gpa
            if gpa <= self.gpa < gpa + npages * 4096:
                payload[data + self.gpa - gpa + 100] ^= 0x40
                self.changed += 1
                return True
            data += npages * 4096
        return False

    def _pump_back(self, a, b):
        try:
            while True:
                got = a.recv(65536)
                if not got:
                    break
                b.sendall(got)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _run(self):
        src, _ = self.lsock.accept()
        dst = socket.create_connection(("127.0.0.1", self.to_port))
        threading.Thread(target=self._pump_back, args=(dst, src), daemon=True).start()
        try:
            dst.sendall(self._read(src, 32))
            chain, count = 0, 0
            while True:
                hdr = self._read(src, 24)
                rtype, length = int.from_bytes(hdr[0:4], "little"), int.from_bytes(hdr[8:16], "little")
                payload = self._read(src, length)
                if rtype == 6:  # END: the chain of the checksums as sent on
                    assert int.from_bytes(payload[0:8], "little") == count
                    payload[8:16] = chain.to_bytes(8, "little")
                changed = rtype == 2 and self._corrupt(payload)
                if (changed and self.reseal) or rtype == 6:
                    hdr[16:24] = xxh3(hdr[0:16] + payload).to_bytes(8, "little")
                chain = xxh3(hdr[16:24], chain)
                count += 1
                dst.sendall(hdr + payload)
                if rtype == 6:
                    break
            self._pump_back(src, dst)
        except (OSError, EOFError):
            for s in (src, dst):
                s.close()


def test_verify_catches_a_page_corrupted_on_the_way(tmp_path, procs):
    """A guest page changed between the source and the destination, past every record
    checksum: the destination's digests (of what it applied, format 1.7) differ from
    the source's (of what it sent), it refuses the VM, and the guest runs on at the
    source."""
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 32M", cpus=2, memory="256M",
                       extra=["-v"])
    src.wait_for_pass(1, timeout=240)
    dst = Receiver(tmp_path, "dst", extra=["-v"])
    procs.append(dst)
    proxy = CorruptingProxy(dst.port)
    res, out = migrate(src, f"tcp:127.0.0.1:{proxy.port}", "--verify", "--compress", "off",
                       "--connections", "1")
    assert res.returncode != 0 and out["status"] == "failed", (res.stderr, out)
    assert proxy.changed >= 1 and proxy.gpa is not None
    chunk = proxy.gpa & ~(2 * 1024 * 1024 - 1)
    assert f"RAM verification failed: the 2 MiB chunk at gpa {chunk:#x} differs" in \
        out["error"], out
    assert re.search(r"verify: \d+ pages hashed since the last round", dst.stderr()), \
        dst.stderr()[-2000:]
    assert dst.wait_exit(timeout=30) != 0
    beats = len(src.wait_for(r"^hb \d+ "))
    src.wait_for(r"^hb \d+ ", count=beats + 3)
    assert src.proc.poll() is None


def test_ram_record_damaged_mid_stream_fails_the_move(tmp_path, procs):
    """A byte of a plain RAM record's pages changed in flight, many records into the
    first round: the destination receives RAM records straight into guest RAM, so the
    page is there before the record's checksum is checked; the mismatch must still fail
    the move, the destination exit without running the VM, and the guest run on at the
    source with its memory intact."""
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 32M random", cpus=2,
                       memory="256M")
    src.wait_for_pass(1, timeout=240)
    dst = Receiver(tmp_path, "dst", extra=["-v"])
    procs.append(dst)
    proxy = CorruptingProxy(dst.port, reseal=False, skip=10)
    res, out = migrate(src, f"tcp:127.0.0.1:{proxy.port}", "--compress", "off",
                       "--connections", "1")
    assert res.returncode != 0 and out["status"] == "failed", (res.stderr, out)
    assert proxy.changed == 1, proxy.changed
    assert dst.wait_exit(timeout=30) != 0
    assert re.search(r"incoming migration failed: bad RAM record \d+: .*checksum mismatch",
                     dst.stderr()), dst.stderr()[-2000:]
    assert "VM resumed here" not in dst.stderr()
    src.wait_for(r"^hb \d+ ", count=len(src.wait_for(r"^hb \d+ ")) + 3)
    src.wait_for_pass(src.passes() + 1, timeout=240)
    assert "ERROR" not in src.output() and src.proc.poll() is None


def corrupt_stream_test(tmp_path, procs, flip_at, compress="off"):
    """Saves a snapshot, flips a byte found by flip_at(dump lines), restores: must fail."""
    src = start_source(tmp_path, procs, "heartbeat 10")
    src.wait_for(r"^hb 3 ")
    snap = tmp_path / "vm.snap"
    res, _ = migrate(src, f"file:{snap}", "--compress", compress)
    assert res.returncode == 0
    dump = run_godwit(["dump-stream", "--json", str(snap)]).stdout.splitlines()
    offset = flip_at([json.loads(l) for l in dump])
    data = bytearray(snap.read_bytes())
    data[offset] ^= 0x40
    bad = tmp_path / "bad.snap"
    bad.write_bytes(bytes(data))
    res = run_godwit(["receive", "--from", f"file:{bad}", "--console", f"file:{tmp_path}/x"])
    assert res.returncode != 0
    assert "incoming migration failed" in res.stderr
    return res


def _record_offset(records, rtype):
    for r in records:
        if r.get("type") == rtype:
            return r["offset"] + 40
    raise AssertionError(f"no {rtype} record")


def test_corrupted_ram_record_rejected(tmp_path, procs):
    res = corrupt_stream_test(tmp_path, procs, lambda recs: _record_offset(recs, "RAM"))
    assert "checksum" in res.stderr


def test_corrupted_lz4_record_rejected(tmp_path, procs):
    res = corrupt_stream_test(tmp_path, procs, lambda recs: _record_offset(recs, "RAM_LZ4"),
                              compress="lz4")
    assert "checksum" in res.stderr


def test_corrupted_zstd_record_rejected(tmp_path, procs):
    res = corrupt_stream_test(tmp_path, procs, lambda recs: _record_offset(recs, "RAM_ZSTD"),
                              compress="zstd")
    assert "checksum" in res.stderr


def test_corrupted_state_record_rejected(tmp_path, procs):
    res = corrupt_stream_test(tmp_path, procs, lambda recs: _record_offset(recs, "STATE"))
    assert "checksum" in res.stderr


def test_truncated_stream_rejected(tmp_path, procs):
    src = start_source(tmp_path, procs, "heartbeat 10")
    src.wait_for(r"^hb 3 ")
    snap = tmp_path / "vm.snap"
    assert migrate(src, f"file:{snap}")[0].returncode == 0
    data = snap.read_bytes()
    for cut in (len(data) // 3, len(data) - 10):
        bad = tmp_path / f"cut{cut}.snap"
        bad.write_bytes(data[:cut])
        res = run_godwit(["receive", "--from", f"file:{bad}", "--console", f"file:{tmp_path}/x"])
        assert res.returncode != 0 and "incoming migration failed" in res.stderr


def test_migration_while_the_guest_boots(tmp_path, procs):
    """The move starts as soon as the VM does: the guest's SMP bring-up and first
    lines may happen on either side, and it must finish booting on the destination."""
    dst = Receiver(tmp_path, "dst")
    procs.append(dst)
    src = start_source(tmp_path, procs, "heartbeat 10 ; memtouch 16M ; heartbeat 20 ; idle",
                       cpus=4)
    deadline = time.monotonic() + 30
    while True:  # as soon as the API answers: the vCPUs have just been started
        try:
            if src.api("GET", "/vm")[1]["state"] == "running":
                break
        except OSError:
            pass
        assert time.monotonic() < deadline and src.proc.poll() is None, src.stderr()
        time.sleep(0.01)
    res, out = migrate(src, dst.uri, "--verify", "--timeout", "600", timeout=700)
    assert res.returncode == 0 and out["status"] == "completed", res.stderr
    text = src.output()
    dst.wait_for(r"^hb \d+ ", count=5, timeout=120)
    dst.wait_for_pass(1, timeout=240)
    assert "testguest: 4 vcpus" in text + dst.output()
    assert "ERROR" not in text + dst.output() and "error" not in dst.output()
