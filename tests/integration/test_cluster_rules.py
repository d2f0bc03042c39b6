"""Load, rules and host groups on a cluster (docs/cluster.md, "Load", "Rules"): what an
agent publishes of a busy VM, the rules' commands and their refusals, and a "must run
on" VM that neither a move nor maintenance takes out of its group."""
import json
import os

import pytest

from cluster_lab import create_on, etcd_get, js, keeps_running, ok, running_on, vms, wait_until

pytestmark = pytest.mark.kvm

# One vCPU writes memory without pause: a VM that wants a CPU.
BUSY = "heartbeat 10 ; memtouch 16M"


def load_of(lab, host, name):
    rec = etcd_get(lab.etcd.url, f"/godwit/running/{host}/{name}")
    return json.loads(next(iter(rec.values()))).get("load") if rec else None


def test_load_rules_and_a_must_rule_kept_by_moves_and_maintenance(lab):
    # A short smoothing window: the published figures follow the last samples.
    for h in ("host-a", "host-b", "host-c"):
        lab.agent(h, "--load-window", "1")
    lab.manager("m1")
    create_on(lab, "host-a", ["host-b", "host-c"], ["web1", "db"], cmdline=BUSY)

    # The agent's load: CPU demand of a VM that keeps a vCPU busy, its memory, its
    # resident (active) memory; the host's capacity and its own use.
    # Its busy vCPU runs or waits for a CPU all the time, however loaded the machine.
    load = wait_until("web1's CPU demand is published", lambda: (
        l := load_of(lab, "host-a", "web1")) and l["cpu"] + l["cpu_wait"] > 0.5 and l)
    assert load["memory"] == 64 << 20 and 0 < load["active"] <= 64 << 20, load
    assert load["cpu_wait"] >= 0 and load["net_rx"] == 0 and load["net_tx"] == 0, load
    # The host's record follows its VMs' in each round: the next one has web1's figures.
    alive = wait_until("host-a's load counts web1", lambda: (a := json.loads(etcd_get(
        lab.etcd.url, "/godwit/alive/host-a")["/godwit/alive/host-a"])) and
        a["load"]["vm_cpu"] > 0 and a)
    assert alive["load"]["cpus"] == 8 and alive["load"]["memory"] == 4 << 30, alive
    assert alive["load"]["cores"] == os.cpu_count(), alive
    # Its own use outside the VMs: at most every CPU it has.
    assert 0 <= alive["load"]["host_cpu"] <= os.cpu_count() + 0.5, alive
    assert alive["load"]["host_memory"] > 0, alive

    # Groups and rules, and what they refuse.
    ok(lab.cluster("group", "add", "rack-a", "host-a"))
    ok(lab.cluster("group", "add", "rack-b", "host-b"))
    r = lab.cluster("group", "add", "rack-z", "host-z")
    assert r.returncode == 1 and "no host host-z" in r.stderr, r.stderr
    r = lab.cluster("group", "add", "rack-a", "host-b")
    assert r.returncode == 1 and "a group rack-a exists already" in r.stderr, r.stderr
    ok(lab.cluster("rule", "add", "pin-db", "--vm", "db", "--must", "--run-on", "rack-a"))
    r = lab.cluster("rule", "add", "pin-x", "--vm", "nosuch", "--must", "--run-on", "rack-a")
    assert r.returncode == 1 and "no VM nosuch" in r.stderr, r.stderr
    r = lab.cluster("rule", "add", "db-b", "--vm", "db", "--must", "--run-on", "rack-b")
    assert r.returncode == 1 and "conflicts with the must rules of db" in r.stderr, r.stderr
    r = lab.cluster("rule", "add", "db-c", "--vm", "db", "--must", "--run-on", "rack-c")
    assert r.returncode == 1 and "no host group 'rack-c'" in r.stderr, r.stderr
    ok(lab.cluster("rule", "add", "spread", "--apart", "web1", "db"))
    r = lab.cluster("rule", "add", "close", "--together", "db", "web1")
    assert r.returncode == 1 and "conflicts with rule spread" in r.stderr, r.stderr
    r = lab.cluster("rule", "add", "bad", "--apart", "web1", "--must")
    assert r.returncode == 2 and "usage" in r.stderr, r.stderr
    rules = {x["name"]: x for x in js(lab, "rule", "list")["rules"]}
    assert rules["pin-db"] == {"name": "pin-db", "kind": "host", "vms": ["db"],
                               "group": "rack-a", "must": True, "not": False}
    assert rules["spread"]["kind"] == "apart" and set(rules) == {"pin-db", "spread"}
    assert "db must run on group rack-a" in ok(lab.cluster("rule", "list"))
    r = lab.cluster("group", "rm", "rack-a")
    assert r.returncode == 1 and "rule pin-db uses group rack-a" in r.stderr, r.stderr

    # A move out of its group is refused; maintenance moves web1 and reports db stuck.
    r = lab.cluster("migrate", "db", "--to", "host-b")
    assert r.returncode == 1 and "rule pin-db: db must run on group rack-a" in r.stderr, r.stderr
    r = lab.cluster("maintenance", "enter", "host-a", "--wait", timeout=180)
    assert r.returncode == 1 and "db cannot leave host-a: rule pin-db" in r.stderr, r.stderr
    host = next(h for h in js(lab, "hosts")["hosts"] if h["name"] == "host-a")
    assert "host-b (ruled out)" in host["stuck"]["db"], host
    dst = wait_until("web1 leaves host-a", lambda: next(
        (h for h in ("host-b", "host-c") if running_on(lab, "web1", h)), None), timeout=120)
    assert vms(lab)["db"]["host"] == "host-a" and dst != "host-a"
    keeps_running(lab, "db")
    keeps_running(lab, "web1")
    ok(lab.cluster("maintenance", "exit", "host-a"))

    # Without the rule, db may leave; the groups go once no rule uses them.
    ok(lab.cluster("rule", "rm", "pin-db"))
    r = lab.cluster("rule", "rm", "pin-db")
    assert r.returncode == 1 and "no rule pin-db" in r.stderr, r.stderr
    ok(lab.cluster("migrate", "db", "--to", "host-c", "--wait", timeout=180))
    ok(lab.cluster("group", "rm", "rack-a"))
    assert [g["name"] for g in js(lab, "group", "list")["groups"]] == ["rack-b"]
