"""Standby and the DRS/DPM settings (docs/cluster.md, "Standby", "Balancing and power
settings"): the leader runs --power-off-cmd and --power-on-cmd with the host's name, here
scripts that stop that host's agent by the PID the test recorded and start it again; the
host goes to standby, comes back, and a command that fails leaves its host in service."""
import os
import signal
import subprocess

from cluster_lab import js, ok, pid_alive, power_scripts, wait_until
from godwit_vm import TESTGUEST

POWER_OFF = """#!/bin/sh
# $1: the host. The test wrote its agent's PID in $1.pid.
echo "powering off $1"
case "$1" in host-c) echo "no BMC answers for $1" >&2; exit 3;; esac
kill "$(cat "{dir}/$1.pid")"
"""

POWER_ON = """#!/bin/sh
# Starts $1's agent again with the command line the test wrote, records its PID.
echo "powering on $1"
setsid sh -c "exec $(cat "{dir}/$1.cmd")" >>"{dir}/$1.log" 2>&1 </dev/null &
echo $! >"{dir}/$1.pid"
"""


def host(lab, name):
    return next(h for h in js(lab, "hosts")["hosts"] if h["name"] == name)


def events(lab):
    return [e["message"] for e in js(lab, "events")["events"]]


def test_standby_and_wake_run_the_power_commands(lab, tmp_path):
    pw = tmp_path / "power"
    pw.mkdir()
    agents = {h: lab.agent(h) for h in ("host-a", "host-b", "host-c")}
    power_scripts(pw, POWER_OFF, POWER_ON, agents)
    lab.manager("m1", "--power-off-cmd", str(pw / "off"), "--power-on-cmd", str(pw / "on"))
    restarted = None
    try:
        r = lab.cluster("host", "standby", "host-z")
        assert r.returncode == 1 and "no host host-z" in r.stderr, r.stderr
        r = lab.cluster("host", "wake", "host-b")
        assert r.returncode == 1 and "host-b is up: only a host in standby wakes" in r.stderr

        ok(lab.cluster("host", "standby", "host-b"))
        r = lab.cluster("host", "standby", "host-b")
        assert r.returncode == 1 and "already" in r.stderr, r.stderr
        wait_until("host-b in standby", lambda: host(lab, "host-b")["state"] == "standby")
        # Its agent was stopped by the command (the lease then expires: still standby, not down).
        wait_until("host-b's agent stopped", lambda: agents["host-b"].proc.poll() is not None)
        wait_until("host-b's lease gone", lambda: not host(lab, "host-b")["up"], timeout=30)
        assert host(lab, "host-b")["state"] == "standby"
        # Placement says why a host in standby takes nothing (it once said "down").
        r = lab.cluster("create", "big", "--kernel", TESTGUEST, "--memory", "5G")
        assert r.returncode == 1 and "host-b in standby" in r.stderr, r.stderr
        assert "host-b: power-off command exited 0: powering off host-b" in events(lab)

        ok(lab.cluster("host", "wake", "host-b"))
        wait_until("host-b back", lambda: host(lab, "host-b")["state"] == "up", timeout=60)
        restarted = int((pw / "host-b.pid").read_text())
        assert restarted != agents["host-b"].proc.pid and pid_alive(restarted)
        ev = events(lab)
        assert "host-b: power-on command exited 0: powering on host-b" in ev, ev
        assert "host-b is back from standby" in ev, ev

        # A power-off that fails: the host stays in service, the output is recorded.
        ok(lab.cluster("host", "standby", "host-c"))
        wait_until("the failure recorded", lambda: "host-c: power-off command exited 3: "
                   "powering off host-c no BMC answers for host-c" in events(lab))
        wait_until("host-c in service", lambda: host(lab, "host-c")["state"] == "up")
        assert agents["host-c"].proc.poll() is None
    finally:
        if restarted and pid_alive(restarted):
            os.kill(restarted, signal.SIGTERM)
            wait_until("the restarted agent stops", lambda: not pid_alive(restarted))


def test_drs_and_dpm_settings(lab):
    lab.agent("host-a")
    lab.manager("m1")
    assert js(lab, "drs", "config") == {"automation": "manual", "threshold": 3, "interval": 60,
                                        "vms": {}}
    assert js(lab, "dpm", "config") == {"enabled": False, "target": 63, "band": 18,
                                        "window": 600, "min_hosts": 2}
    ok(lab.cluster("drs", "config", "--automation", "automatic", "--threshold", "2",
                   "--interval", "30"))
    assert js(lab, "drs", "config")["automation"] == "automatic"
    assert "DRS: automation automatic, threshold 2, every 30 s" in ok(
        lab.cluster("drs", "config"))
    r = lab.cluster("drs", "config", "--threshold", "9")
    assert r.returncode == 2 and "--threshold: 1..5" in r.stderr, r.stderr
    r = lab.cluster("drs", "config", "--automation", "sometimes")
    assert r.returncode == 1 and "automation is manual, automatic or off" in r.stderr
    r = lab.cluster("drs", "config", "--vm", "nosuch", "--automation", "off")
    assert r.returncode == 1 and "no VM nosuch" in r.stderr, r.stderr
    r = lab.cluster("host", "standby", "host-a")
    assert r.returncode == 1 and "no --power-off-cmd" in r.stderr, r.stderr
    ok(lab.cluster("dpm", "config", "--enable", "--target", "70", "--band", "10", "--window",
                   "60", "--min-hosts", "1"))
    assert js(lab, "dpm", "config") == {"enabled": True, "target": 70, "band": 10,
                                        "window": 60, "min_hosts": 1}
    r = lab.cluster("dpm", "config", "--target", "95", "--band", "10")
    assert r.returncode == 1 and "within 0..100" in r.stderr, r.stderr
    ok(lab.cluster("dpm", "config", "--disable"))
    assert js(lab, "dpm", "config")["enabled"] is False
