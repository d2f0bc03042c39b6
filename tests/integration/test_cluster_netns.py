"""The cluster with hosts as network namespaces on a bridge (cluster_lab.ClusterNet,
192.0.2.0/24): migration streams cross the veths between hosts; a host cut off the
bridge has nothing restarted while its VM holds its disk's lock, and keeps its VM when
it comes back."""

import pytest

from cluster_lab import (ClusterNet, Lab, create_on, js, keeps_running, ok, pid_alive,
                         running_on, vms, wait_until)

pytestmark = pytest.mark.kvm


@pytest.fixture
def netlab(tmp_path):
    net = ClusterNet().up()
    lab = None
    try:
        lab = Lab(tmp_path, net=net)
        yield lab
    finally:
        if lab:
            lab.stop()
        net.down()


def test_moves_cross_the_bridge_and_a_cut_off_host_keeps_its_vm(netlab, tmp_path):
    lab = netlab
    a = lab.agent("host-a")
    lab.agent("host-b")
    lab.manager("m1")
    disk = tmp_path / "shared-web1.img"
    disk.write_bytes(b"\0" * (1 << 20))
    create_on(lab, "host-a", ["host-b"], ["web1"], "--disk", str(disk))
    # There and back, host to host across the bridge (the receive listens on the host's
    # own address).
    ok(lab.cluster("migrate", "web1", "--to", "host-b", "--wait"))
    to = [t["to"] for t in js(lab, "tasks")["history"]][-1]
    assert to.startswith("tcp:192.0.2.12:"), to
    keeps_running(lab, "web1")
    ok(lab.cluster("migrate", "web1", "--to", "host-a", "--wait"))
    keeps_running(lab, "web1")
    (pid,) = lab.vm_pids()

    # host-a off the bridge: its lease expires, a restart on host-b is refused by the lock.
    lab.net.cut("host-a")
    wait_until("a restart is tried and refused by the lock", lambda: any(
        "locked" in (t.get("error") or "") for t in js(lab, "tasks")["tasks"]), timeout=60)
    v = vms(lab)["web1"]
    assert v["host"] == "host-a" and v["state"] == "host down", v
    assert pid_alive(pid) and len(lab.vm_pids()) == 1
    keeps_running(lab, "web1")

    # Back on the bridge: the agent registers again and keeps its VM (still its own);
    # the restart is called off.
    lab.net.cut("host-a", up=True)
    wait_until("web1 runs on host-a again", lambda: running_on(lab, "web1", "host-a"),
               timeout=60)
    hist = js(lab, "tasks")["history"]
    assert any(t["kind"] == "restart" and t["phase"] == "cancelled" for t in hist), hist
    assert pid_alive(pid) and len(lab.vm_pids()) == 1
    assert a.proc.poll() is None
