"""The device throughput benchmark (bench/devices.py, `make bench-devices`), small, so
that it cannot rot: the same code path with tiny sizes, through godwit and through QEMU
on KVM. Checks correctness only (data read back, the image's content, datagrams that
arrived, lines that parse), never a timing.
"""
import os
import sys

import pytest

from godwit_vm import GODWIT, ROOT, TESTGUEST
from test_devices import lab  # noqa: F401 (fixture)

sys.path.insert(0, os.path.join(ROOT, "bench"))

import devices  # noqa: E402

pytestmark = [
    pytest.mark.kvm,
    pytest.mark.skipif(not os.path.exists(TESTGUEST), reason=f"{TESTGUEST} missing: run make"),
]


def vmm_params():
    params = ["godwit"]
    why = devices.qemu_missing()
    params.append(pytest.param("qemu", marks=pytest.mark.skipif(why is not None,
                                                                 reason=why or "")))
    return params


@pytest.fixture
def built():
    if not os.access(GODWIT, os.X_OK):
        pytest.fail(f"{GODWIT} is not built (run make)")


@pytest.mark.parametrize("kind", vmm_params())
def test_blkbench_figures(built, tmp_path, kind):
    rows, console = devices.run_disk(kind, str(tmp_path), 8, verify_image=True, timeout=120)
    assert [r["phase"] for r in rows] == ["disk write", "disk flush", "disk read"]
    assert "blkbench: done" in console and "verified" in console
    for r in rows:
        assert r["vmm"] == kind and r["seconds"] > 0
        assert r["cpu_vcpu"] >= 0 and r["cpu_other"] >= 0
    assert rows[0]["bytes"] == rows[2]["bytes"] == 8 << 20
    assert rows[0]["mbps"] > 0 and rows[2]["mbps"] > 0
    assert not list(tmp_path.glob("*.img")), "the image is removed after the run"
    table = devices.table(rows)
    assert table.count("\n") == 4 and f"| disk read | {kind} |" in table


@pytest.mark.parametrize("kind", vmm_params())
def test_netbench_figures(built, tmp_path, lab, kind):
    rows, raw = devices.run_net(kind, str(tmp_path), lab, 0.5)
    assert [r["phase"] for r in rows] == ["net receive", "net transmit", "net echo"]
    rx, tx, echo = raw["rx"], raw["tx"], raw["echo"]
    # Receive: the guest counted datagrams of the right size, no more than were sent.
    assert 0 < rx["guest_datagrams"] <= rx["sent"]
    assert rx["guest_bytes"] == rx["guest_datagrams"] * devices.PAYLOAD
    # Transmit: frames the host kernel saw on the tap, valid UDP datagrams to our socket.
    assert 0 < tx["frames"] <= tx["requested"]
    assert tx["udp_arrived"] > 0
    assert f"netbench: sent {tx['requested']} datagrams of {devices.PAYLOAD} bytes" in \
        raw["tx_guest_line"]
    # Echo: answers came back, each the size that was sent.
    assert 0 < echo["echoed"] <= echo["sent"]
    assert echo["bytes"] == echo["echoed"] * devices.PAYLOAD
    for r in rows:
        assert r["bytes"] > 0 and r["seconds"] > 0 and r["mbps"] > 0
