"""The leader's DPM pass (docs/drs.md "Power", docs/cluster.md "Balancing").

On four hosts that are network namespaces on a bridge (cluster_lab.ClusterNet,
192.0.2.0/24; the evacuation's streams cross the veths): idle VMs on the four are packed
onto three and the fourth goes to standby through --power-off-cmd; busy VMs then keep the
three above the band and the fourth is powered on again through --power-on-cmd, and DRS
gives it work.

On three loopback hosts with two managers: the leader that chose a host to empty is
stopped mid-emptying; the other, leading next, finds the emptying in etcd and finishes
it (the host goes to standby, its power-off command run once), though its own DPM
would not choose a host now.

The power commands are scripts that stop a host's agent by the PID the test recorded and
start it again with the command line the test recorded (as test_cluster_power.py); for a
namespace host that command line enters its namespace. The agents run with
--shared-machine: all of them measure one machine, whose other work is no host's own."""
import json
import os
import signal

import pytest

from cluster_lab import (TESTGUEST, etcd_get, js, net_lab, ok, pid_alive, power_scripts, vms,
                         wait_until)

pytestmark = pytest.mark.kvm

HOSTS = ("host-a", "host-b", "host-c", "host-d")
EMPTYING = "/godwit/dpm/emptying"

POWER_OFF = """#!/bin/sh
echo "powering off $1"
echo "$1" >>"{dir}/off.ran"
kill "$(cat "{dir}/$1.pid")"
"""

POWER_ON = """#!/bin/sh
echo "powering on $1"
echo "$1" >>"{dir}/on.ran"
setsid sh -c "exec $(cat "{dir}/$1.cmd")" >>"{dir}/$1.log" 2>&1 </dev/null &
echo $! >"{dir}/$1.pid"
"""


@pytest.fixture
def netlab(tmp_path):
    with net_lab(tmp_path, HOSTS) as lab:
        yield lab


def create(lab, name, cmdline, **kw):
    ok(lab.cluster("create", name, "--kernel", TESTGUEST, "--memory", "64M", "--cpus", "1",
                   "--cmdline", cmdline, **kw))


def state(lab, name, **kw):
    return next(h for h in js(lab, "hosts", **kw)["hosts"] if h["name"] == name)["state"]


def power_dir(tmp_path, agents):
    pw = tmp_path / "power"
    pw.mkdir()
    power_scripts(pw, POWER_OFF, POWER_ON, agents)
    return pw


def test_dpm_packs_idle_vms_into_standby_and_wakes_a_host_for_demand(netlab, tmp_path):
    lab = netlab
    agents = {h: lab.agent(h, "--load-window", "5", "--shared-machine", cpus=16, memory="1G")
              for h in HOSTS}
    pw = power_dir(tmp_path, agents)
    lab.manager("m1", "--power-off-cmd", str(pw / "off"), "--power-on-cmd", str(pw / "on"))
    restarted = []
    try:
        ok(lab.cluster("drs", "config", "--automation", "automatic", "--interval", "5"))
        # Placement spreads them: the most free memory first.
        for i in range(len(HOSTS)):
            create(lab, f"idle{i}", "idle")
        assert len({v["host"] for v in vms(lab).values()}) == len(HOSTS), vms(lab)
        ok(lab.cluster("dpm", "config", "--enable", "--window", "10", "--min-hosts", "3"))

        # Every host below 45 % for 10 s: one is emptied and goes to standby.
        off = wait_until("a host in standby", lambda: next(
            (h for h in HOSTS if state(lab, h) == "standby"), None), timeout=180, step=1)
        assert (pw / "off.ran").read_text().split() == [off]
        wait_until(f"{off}'s agent stopped", lambda: agents[off].proc.poll() is not None)
        v = vms(lab)
        assert all(x["host"] != off and x["state"] == "running" for x in v.values()), v
        moves = [t for t in js(lab, "tasks")["history"] if t["reason"] == "dpm"]
        assert moves and all(t["src"] == off for t in moves), moves
        # The evacuation's streams crossed the bridge to their destinations' addresses.
        assert all(t["to"].startswith(f"tcp:{lab.net.ip[t['dst']]}:")
                   for t in moves if t["phase"] == "done" and "to" in t), moves
        ev = [e["message"] for e in js(lab, "events")["events"]]
        assert any(e.startswith("DPM: ") for e in ev), ev
        # Three hosts left, --min-hosts 3: no other goes.
        p = js(lab, "drs", "recommendations")["pass"]
        wait_until("three more passes", lambda: js(lab, "drs", "recommendations")["pass"] >= p + 3,
                   timeout=60, step=1)
        assert sum(state(lab, h) == "standby" for h in HOSTS) == 1

        # Demand rises: six busy VMs (a vCPU each that never halts) on three hosts of the
        # machine's two CPUs: two each, all above 81 %; the standby host is powered on.
        # Not four: they would sit two, one and one, and balancing then trades which host
        # holds two on gains of measurement noise alone (seen: four such moves within
        # 20 s, gains of 0.002..0.006), each move starting its VM's 10-minute residence,
        # so that the woken host could find no VM DRS may move to it for 10 minutes.
        for i in range(6):
            create(lab, f"busy{i}", "memtouch 8M 4")
        wait_until(f"{off} back", lambda: state(lab, off) == "up", timeout=240, step=1)
        restarted.append(int((pw / f"{off}.pid").read_text()))
        assert (pw / "on.ran").read_text().split() == [off]
        wait_until(f"DRS gives {off} work", lambda: any(
            x["host"] == off and x["state"] == "running" for x in vms(lab).values()),
            timeout=240, step=1)
        # Every VM runs. DRS may still be moving one: a VM that has just arrived shows as
        # running once its new host's agent next publishes (every 2 s).
        wait_until("every VM runs", lambda: all(
            x["state"] == "running" for x in vms(lab).values()), timeout=60, step=1)
    finally:
        for pid in restarted:
            if pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
                wait_until("the restarted agent stops", lambda: not pid_alive(pid))


def test_a_new_leader_finishes_the_emptying_its_predecessor_began(lab, tmp_path):
    hosts = HOSTS[:3]
    agents = {h: lab.agent(h, "--load-window", "5", "--shared-machine", cpus=16, memory="1G")
              for h in hosts}
    pw = power_dir(tmp_path, agents)
    power = ("--power-off-cmd", str(pw / "off"), "--power-on-cmd", str(pw / "on"))
    managers = {"m1": lab.manager("m1", *power)}
    wait_until("m1 leads", lambda: js(lab, "hosts")["leader"] == "m1")
    managers["m2"] = lab.manager("m2", *power)
    # Passes 30 s apart: the pass that records the emptying and the one that could end it
    # are far enough apart for the test to stop its manager in between.
    ok(lab.cluster("drs", "config", "--automation", "automatic", "--interval", "30"))
    for i in range(len(hosts)):
        create(lab, f"idle{i}", "idle")
    assert len({v["host"] for v in vms(lab).values()}) == len(hosts), vms(lab)
    ok(lab.cluster("dpm", "config", "--enable", "--window", "10", "--min-hosts", "2"))

    rec = json.loads(wait_until("DPM records the host it empties", lambda: etcd_get(
        lab.etcd.url, EMPTYING).get(EMPTYING), timeout=180, step=0.2))
    off, by = rec["host"], rec["by"]
    managers[by].stop(signal.SIGKILL)
    other = managers["m2" if by == "m1" else "m1"]
    # Mid-emptying: the host is not on its way to standby yet.
    assert not etcd_get(lab.etcd.url, f"/godwit/power/{off}"), off
    # From now on no fresh decision of the next leader's DPM could power a host off
    # within the test: only the recorded emptying can.
    ok(lab.cluster("dpm", "config", "--window", "3600", manager=other))

    wait_until(f"{off} in standby", lambda: state(lab, off, manager=other) == "standby",
               timeout=180, step=1)
    assert js(lab, "hosts", manager=other)["leader"] == other.name
    assert (pw / "off.ran").read_text().split() == [off]
    wait_until(f"{off}'s agent stopped", lambda: agents[off].proc.poll() is not None)
    assert EMPTYING not in etcd_get(lab.etcd.url, EMPTYING)
    v = vms(lab, manager=other)
    assert all(x["host"] != off and x["state"] == "running" for x in v.values()), v
    ev = [e["message"] for e in js(lab, "events", manager=other)["events"]]
    assert f"DPM: {off} is empty, going to standby" in ev, ev
    assert sum(state(lab, h, manager=other) == "standby" for h in hosts) == 1
