"""The cluster with hosts as network namespaces on a bridge (cluster_lab.ClusterNet,
192.0.2.0/24): migration streams cross the veths between hosts; a host cut off the
bridge has nothing restarted while its VM holds its disk's lock, and keeps its VM when
it comes back."""
import json

import pytest

from cluster_lab import ClusterNet, Lab, passes, pid_alive, wait_until
from godwit_vm import TESTGUEST

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


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def js(lab, *args):
    return json.loads(ok(lab.cluster(*args, "--json")))


def vm(lab, name):
    return {v["name"]: v for v in js(lab, "vms")["vms"]}.get(name)


def running_on(lab, name, host):
    v = vm(lab, name)
    return v and v["host"] == host and v["state"] == "running" and v["task"] is None


def keeps_running(lab, name, host):
    console = lab.dir / f"h-{host}" / f"{name}.console"
    n = passes(console)
    wait_until(f"{name} passes on {host}", lambda: passes(console) > n, timeout=60)


def test_moves_cross_the_bridge_and_a_cut_off_host_keeps_its_vm(netlab, tmp_path):
    lab = netlab
    a = lab.agent("host-a")
    lab.agent("host-b")
    lab.manager("m1")
    disk = tmp_path / "shared-web1.img"
    disk.write_bytes(b"\0" * (1 << 20))
    ok(lab.cluster("maintenance", "enter", "host-b"))
    ok(lab.cluster("create", "web1", "--kernel", TESTGUEST, "--memory", "64M", "--cpus", "2",
                   "--cmdline", "heartbeat 10 ; memtouch 16M", "--disk", str(disk)))
    ok(lab.cluster("maintenance", "exit", "host-b"))
    wait_until("web1 runs on host-a", lambda: running_on(lab, "web1", "host-a"))
    # There and back, host to host across the bridge (the receive listens on the host's
    # own address).
    ok(lab.cluster("migrate", "web1", "--to", "host-b", "--wait"))
    to = [t["to"] for t in js(lab, "tasks")["history"]][-1]
    assert to.startswith("tcp:192.0.2.12:"), to
    keeps_running(lab, "web1", "host-b")
    ok(lab.cluster("migrate", "web1", "--to", "host-a", "--wait"))
    keeps_running(lab, "web1", "host-a")
    (pid,) = lab.vm_pids()

    # host-a off the bridge: its lease expires, a restart on host-b is refused by the lock.
    lab.net.cut("host-a")
    wait_until("a restart is tried and refused by the lock", lambda: any(
        "locked" in (t.get("error") or "") for t in js(lab, "tasks")["tasks"]), timeout=60)
    v = vm(lab, "web1")
    assert v["host"] == "host-a" and v["state"] == "host down", v
    assert pid_alive(pid) and len(lab.vm_pids()) == 1
    keeps_running(lab, "web1", "host-a")

    # Back on the bridge: the agent registers again and keeps its VM (still its own);
    # the restart is called off.
    lab.net.cut("host-a", up=True)
    wait_until("web1 runs on host-a again", lambda: running_on(lab, "web1", "host-a"),
               timeout=60)
    hist = js(lab, "tasks")["history"]
    assert any(t["kind"] == "restart" and t["phase"] == "cancelled" for t in hist), hist
    assert pid_alive(pid) and len(lab.vm_pids()) == 1
    assert a.proc.poll() is None
