"""bench/disk_move.py (`make bench-disk-move`), so that it cannot rot: one tiny run (64
MiB image) through godwit and QEMU's blockdev-mirror in both copy modes, and the move
without shared storage (migrate --disk-to) against cp and the RAM move alone, with sane
figures and DISK_MOVE.md written; the move without shared storage under guest load
against QEMU's NBD mirror (32 MiB); its reading of blkbench's latency buckets, and its
check of a moved image. Measures nothing worth keeping.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from godwit_vm import ROOT, TESTGUEST

sys.path.insert(0, os.path.join(ROOT, "bench"))

import disk_move  # noqa: E402


def guest_bucket(ns):
    """blkbench's bucket of a time in ns (guest/testguest/README.md, `blkbench MIB latency`)."""
    if ns < 4:
        return ns
    msb = ns.bit_length() - 1
    return msb * 4 + ((ns >> (msb - 2)) & 3)


def test_bucket_middles_are_within_the_bucket():
    for ns in (5, 999, 4096, 53_000, 61_440, 2_883_584, 10**9 + 7):
        us = disk_move.bucket_us(guest_bucket(ns))
        assert abs(us * 1000 - ns) <= 0.125 * ns + 1, (ns, us)
    hist = {guest_bucket(50_000): 98, guest_bucket(5_000_000): 2}
    assert abs(disk_move.percentile(hist, 0.5) - 50) < 6
    assert abs(disk_move.percentile(hist, 0.99) - 5000) < 600


@pytest.mark.kvm
@pytest.mark.qemu
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                    reason="qemu-system-x86_64 is not installed")
@pytest.mark.skipif(not os.path.exists(TESTGUEST), reason=f"{TESTGUEST} missing: run make")
def test_tiny_run_has_sane_figures(tmp_path):
    out = tmp_path / "DISK_MOVE.md"
    res = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "disk_move.py"),
                          "--mib", "64", "--runs", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    figures = json.loads(res.stdout.strip().splitlines()[-1])
    (tp,) = figures["throughput"]
    assert tp["cp_mbps"] > 0 and tp["move_mbps"] > 0 and tp["data_bytes"] == 48 << 20
    assert sorted(r["vmm"] for r in figures["load"]) == ["godwit #1", "qemu-background #1",
                                                        "qemu-write-blocking #1"]
    for r in figures["load"]:
        assert r["move_s"] > 0 and r["idle_n"] > 0 and r["idle_p99"] >= r["idle_p50"] > 0, r
    (rm,) = figures["remote"]
    assert rm["disk_bytes"] == 48 << 20, rm
    assert rm["cp_s"] > 0 and rm["ram_s"] > 0 and rm["disk_s"] > 0 and rm["disk_mbps"] > 0, rm
    text = out.read_text()
    assert "## Copy throughput" in text and "| godwit |" not in text and "godwit #1" in text
    assert "## Without shared storage" in text


def test_moved_image_check_allows_only_the_guests_own_blocks(tmp_path):
    seed = 0x1234567890ABCDEF
    src, dst = tmp_path / "src.img", tmp_path / "dst.img"
    data = bytearray(os.urandom(4 << 20))
    src.write_bytes(data)
    data[5 * 4096:6 * 4096] = disk_move.blkbench_block(5, seed)
    data[700 * 4096:701 * 4096] = disk_move.blkbench_block(700, seed)
    dst.write_bytes(data)
    assert disk_move.compare_images(str(src), str(dst), seed) == (4 << 20, 2)
    data[9 * 4096 + 17] ^= 1
    dst.write_bytes(data)
    with pytest.raises(RuntimeError, match="differs"):
        disk_move.compare_images(str(src), str(dst), seed)
    # Another block's pattern at this block is not the guest's write here.
    data[9 * 4096:10 * 4096] = disk_move.blkbench_block(10, seed)
    dst.write_bytes(data)
    with pytest.raises(RuntimeError, match="differs"):
        disk_move.compare_images(str(src), str(dst), seed)


@pytest.mark.kvm
@pytest.mark.qemu
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                    reason="qemu-system-x86_64 is not installed")
@pytest.mark.skipif(not os.path.exists(TESTGUEST), reason=f"{TESTGUEST} missing: run make")
def test_tiny_run_without_shared_storage_under_load(tmp_path):
    out = tmp_path / "DISK_MOVE.md"
    res = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "disk_move.py"),
                          "--mib", "32", "--runs", "1", "--only-remote-load", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    figures = json.loads(res.stdout.strip().splitlines()[-1])
    assert not figures["throughput"] and not figures["load"] and not figures["remote"]
    rows = figures["remote_load"]
    assert sorted(r["vmm"] for r in rows) == ["godwit #1", "qemu-background #1",
                                              "qemu-write-blocking #1"]
    for r in rows:
        if r["vmm"].startswith("qemu") and "BDRV_O_INACTIVE" in r.get("error", ""):
            # QEMU 7.2's own abort at the mirror's end after the migration (docs/bench.md,
            # "A move without shared storage against QEMU's"): reported, not our failure.
            continue
        assert "error" not in r, r
        assert 0 < r["disk_s"] <= r["move_s"] and r["disk_mbps"] > 0, r
        assert r["idle_n"] > 0 and r["idle_p99"] >= r["idle_p50"] > 0, r
        # The guest wrote on at the destination, and its first window there was seen.
        assert r["switch_window_max_us"] is not None and r["output_gap_ms"] is not None, r
        assert r["vmm_downtime_ms"] is not None and r["vmm_downtime_ms"] >= 0, r
        # The moved image is the source's, but for what the guest wrote there.
        assert r["compared_bytes"] == 32 << 20, r
        assert 0 <= r["rewritten_blocks"] <= r["rewritten_bound"], r
    (gw,) = [r for r in rows if r["vmm"] == "godwit #1"]
    assert gw["disk_bytes_sent"] >= 24 << 20, gw
    text = out.read_text()
    assert "## Without shared storage, under guest write load" in text
    assert "over godwit's in the same run" in text and "## Copy throughput" not in text
