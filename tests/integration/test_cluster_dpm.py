"""The leader's DPM pass (docs/drs.md "Power", docs/cluster.md "Balancing"): idle VMs on
three hosts are packed onto two and the third goes to standby through --power-off-cmd;
busy VMs then keep the two above the band and the third is powered on again through
--power-on-cmd, and DRS gives it work.

The power commands are scripts that stop a host's agent by the PID the test recorded and
start it again (as test_cluster_power.py). The agents run with --shared-machine: all of
them measure one machine, whose other work is no host's own load."""
import os
import signal

import pytest

from cluster_lab import TESTGUEST, js, ok, pid_alive, power_scripts, vms, wait_until

pytestmark = pytest.mark.kvm

HOSTS = ("host-a", "host-b", "host-c")

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


def create(lab, name, cmdline):
    ok(lab.cluster("create", name, "--kernel", TESTGUEST, "--memory", "64M", "--cpus", "1",
                   "--cmdline", cmdline))


def state(lab, name):
    return next(h for h in js(lab, "hosts")["hosts"] if h["name"] == name)["state"]


def test_dpm_packs_idle_vms_into_standby_and_wakes_a_host_for_demand(lab, tmp_path):
    pw = tmp_path / "power"
    pw.mkdir()
    agents = {h: lab.agent(h, "--load-window", "5", "--shared-machine", cpus=16, memory="1G")
              for h in HOSTS}
    power_scripts(pw, POWER_OFF, POWER_ON, agents)
    lab.manager("m1", "--power-off-cmd", str(pw / "off"), "--power-on-cmd", str(pw / "on"))
    restarted = []
    try:
        ok(lab.cluster("drs", "config", "--automation", "automatic", "--interval", "5"))
        # Placement spreads them: the most free memory first.
        for i in range(3):
            create(lab, f"idle{i}", "idle")
        assert len({v["host"] for v in vms(lab).values()}) == 3, vms(lab)
        ok(lab.cluster("dpm", "config", "--enable", "--window", "10", "--min-hosts", "2"))

        # Every host below 45 % for 10 s: one is emptied and goes to standby.
        off = wait_until("a host in standby", lambda: next(
            (h for h in HOSTS if state(lab, h) == "standby"), None), timeout=180, step=1)
        assert (pw / "off.ran").read_text().split() == [off]
        wait_until(f"{off}'s agent stopped", lambda: agents[off].proc.poll() is not None)
        v = vms(lab)
        assert all(x["host"] != off and x["state"] == "running" for x in v.values()), v
        assert any(t["reason"] == "dpm" for t in js(lab, "tasks")["history"])
        ev = [e["message"] for e in js(lab, "events")["events"]]
        assert any(e.startswith("DPM: ") for e in ev), ev
        # Two hosts left, --min-hosts 2: no other goes.
        p = js(lab, "drs", "recommendations")["pass"]
        wait_until("three more passes", lambda: js(lab, "drs", "recommendations")["pass"] >= p + 3,
                   timeout=60, step=1)
        assert sum(state(lab, h) == "standby" for h in HOSTS) == 1

        # Demand rises: four busy VMs (a vCPU each that never halts) on two hosts of
        # the machine's two CPUs: both above 81 %; the standby host is powered on.
        for i in range(4):
            create(lab, f"busy{i}", "memtouch 8M 4")
        wait_until(f"{off} back", lambda: state(lab, off) == "up", timeout=240, step=1)
        restarted.append(int((pw / f"{off}.pid").read_text()))
        assert (pw / "on.ran").read_text().split() == [off]
        wait_until(f"DRS gives {off} work", lambda: any(
            x["host"] == off and x["state"] == "running" for x in vms(lab).values()),
            timeout=240, step=1)
        assert all(x["state"] == "running" for x in vms(lab).values()), vms(lab)
    finally:
        for pid in restarted:
            if pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
                wait_until("the restarted agent stops", lambda: not pid_alive(pid))
