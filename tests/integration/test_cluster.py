"""The cluster (docs/cluster.md): etcd, agents and managers on loopback ports, the test
guest as VMs. Moves by name, the limits, maintenance, an agent's kill -9, a dead host's
VMs restarted elsewhere (and not while their disks are locked), a manager's failover."""
import json
import os
import signal
import subprocess
import time

import pytest

from cluster_lab import (create, create_on, etcd_delete, etcd_get, etcd_put, history,
                         https_call, js, keeps_running, ok, overlap_max, passes, pid_alive,
                         running_on, vms, wait_until)
from godwit_vm import GODWIT, TESTGUEST

pytestmark = pytest.mark.kvm

def test_create_migrate_cancel_and_refusals(lab):
    a = lab.agent("host-a", memory="1G")
    lab.agent("host-b", memory="1G")
    m = lab.manager("m1")
    host = create(lab, "web1").split()[-1]
    other = "host-b" if host == "host-a" else "host-a"
    wait_until("web1 runs", lambda: running_on(lab, "web1", host))
    ok(lab.cluster("migrate", "web1", "--to", other, "--wait"))
    assert vms(lab)["web1"]["host"] == other
    keeps_running(lab, "web1")
    # A move to where it is, to no host, of no VM; a VM that fits nowhere.
    r = lab.cluster("migrate", "web1", "--to", other)
    assert r.returncode == 1 and f"web1 already runs on {other}" in r.stderr
    r = lab.cluster("migrate", "web1", "--to", "host-z")
    assert r.returncode == 1 and "no host host-z" in r.stderr
    r = lab.cluster("migrate", "nosuch", "--to", host)
    assert r.returncode == 1 and "no VM nosuch" in r.stderr
    r = lab.cluster("create", "big", "--kernel", TESTGUEST, "--memory", "2G")
    assert r.returncode == 1 and "no host has 2 GiB and 1 vCPUs free:" in r.stderr, r.stderr
    assert f"{host} 1 GiB" in r.stderr and f"{other} 960 MiB" in r.stderr, r.stderr
    assert "big" not in vms(lab)
    # A move held by the limit can be cancelled: the VM stays where it is.
    ok(lab.cluster("limits", "--per-host", "1"))
    ok(lab.cluster("maintenance", "enter", host))  # nothing runs there: at once "in"
    wait_until("in maintenance", lambda: any(
        h["name"] == host and h["state"] == "in maintenance" for h in js(lab, "hosts")["hosts"]))
    r = lab.cluster("migrate", "web1", "--to", host)
    assert r.returncode == 1 and "in maintenance" in r.stderr
    ok(lab.cluster("maintenance", "exit", host))
    # Hold the destination's only slot with a fake task's slot key, so the move waits.
    etcd_put(lab.etcd.url, f"/godwit/slots/host/{host}/0", "held-by-test")
    task = ok(lab.cluster("migrate", "web1", "--to", host)).strip()
    r = lab.cluster("migrate", "web1", "--to", host)
    assert r.returncode == 1 and f"web1 has a task already ({task})" in r.stderr
    assert js(lab, "tasks")["tasks"][0]["phase"] == "queued"
    ok(lab.cluster("cancel", task))
    wait_until("the task is cancelled",
               lambda: any(t["id"] == task and t["phase"] == "cancelled" for t in history(lab)))
    assert vms(lab)["web1"]["host"] == other
    # No certificate: the manager answers nothing but 401 (its web console's login is
    # the other way in; test_console.py).
    assert https_call(lab.pki, m.port, "GET", "/hosts", cert=None)[0] == 401
    ok(lab.cluster("delete", "web1"))
    assert vms(lab) == {}
    # The move's source has said it handed over; its process may still be tearing down,
    # and its agent forgets it at the next tick after it ends.
    wait_until("host-a lists no VM", lambda: a.call("GET", "/vms")[1]["vms"] == [],
               timeout=30)


def test_per_host_limit_makes_a_move_wait_then_run(lab):
    lab.agent("host-a")
    lab.agent("host-b")
    lab.manager("m1")
    create_on(lab, "host-a", ["host-b"], ["v1", "v2"])
    ok(lab.cluster("limits", "--per-host", "1"))
    t1 = ok(lab.cluster("migrate", "v1", "--to", "host-b")).strip()
    t2 = ok(lab.cluster("migrate", "v2", "--to", "host-b")).strip()
    wait_until("both moves end", lambda: {t1, t2} <= {t["id"] for t in history(lab)}, timeout=120)
    done = {t["id"]: t for t in history(lab)}
    assert done[t1]["phase"] == "done" and done[t2]["phase"] == "done", done
    # The second started only once the first had ended: one slot on each host.
    assert done[t2]["started_ms"] >= done[t1]["ended_ms"], done
    for n in ("v1", "v2"):
        assert vms(lab)[n]["host"] == "host-b"
        keeps_running(lab, n)


def test_a_host_on_a_slow_link_runs_at_most_4_moves_at_once(lab):
    """A host whose agent says its link is 1 Gbit/s (--link-mbit 1000) gets 4 migration
    slots, whatever the per-host limit (8 by default); hosts of unknown speed (loopback)
    keep the limit. Emptying it of 6 VMs runs 4 moves at once, then the other 2."""
    for bad in ("fast", "-1", "100000001"):
        r = subprocess.run([GODWIT, "agent", "--link-mbit", bad], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 2 and "--link-mbit: 0..100000000" in r.stderr, r.stderr
    lab.agent("host-a", "--link-mbit", "1000", cpus=16)
    lab.agent("host-b", cpus=16)
    lab.agent("host-c", cpus=16)
    lab.manager("m1")
    names = [f"vm{i}" for i in range(6)]
    # 4 MiB of random pages at 1 MB/s: each move lasts seconds, so that they overlap.
    create_on(lab, "host-a", ["host-b", "host-c"], names, cmdline="heartbeat 10 ; fill 4M")
    hosts = {h["name"]: h for h in js(lab, "hosts")["hosts"]}
    assert (hosts["host-a"]["link_mbit"], hosts["host-a"]["migration_slots"]) == (1000, 4)
    assert (hosts["host-b"]["link_mbit"], hosts["host-b"]["migration_slots"]) == (0, 8)
    (line,) = [ln for ln in ok(lab.cluster("hosts")).splitlines() if ln.startswith("host-a ")]
    assert " 0/4 " in line, line
    ok(lab.cluster("limits", "--max-bandwidth", "1M"))
    ok(lab.cluster("maintenance", "enter", "host-a", "--wait", timeout=300))
    tasks = history(lab)
    assert len(tasks) == 6 and all(t["phase"] == "done" for t in tasks), tasks
    assert overlap_max(tasks, "host-a") == 4, tasks


def test_bandwidth_cap_holds_every_move_unless_a_move_asks_for_less(lab):
    lab.agent("host-a")
    lab.agent("host-b")
    m = lab.manager("m1")
    # 8 MiB of random bytes (incompressible) rewritten at 1 MB/s: a move held to 2 or
    # 4 MiB/s lasts seconds and converges.
    create_on(lab, "host-a", ["host-b"], ["v1", "v2"],
              cmdline="heartbeat 10 ; memtouch 8M 1 random")
    for bad in ("fast", "-1", "1Q"):
        r = lab.cluster("limits", "--max-bandwidth", bad)
        assert r.returncode == 2 and "--max-bandwidth" in r.stderr, r.stderr
    for body in ({"max_bandwidth": "4M"}, {"max_bandwidth": -1}, {"per_host": "2"}):
        status, reply = https_call(lab.pki, m.port, "PUT", "/limits", body)
        assert status == 400, (body, status, reply)
    assert "no bandwidth cap" in ok(lab.cluster("limits"))
    assert "each move at most 4.0 MiB/s" in ok(lab.cluster("limits", "--max-bandwidth", "4M"))
    # Setting another limit keeps the cap.
    assert js(lab, "limits", "--per-host", "4") == {"per_host": 4, "cluster": 128,
                                                    "max_bandwidth": 4 << 20}
    t1 = ok(lab.cluster("migrate", "v1", "--to", "host-b")).strip()
    t2 = ok(lab.cluster("migrate", "v2", "--to", "host-b", "--max-bandwidth", "2M")).strip()
    caps = {}

    def caps_seen():
        for t in js(lab, "tasks")["tasks"] + history(lab):
            cap = (t.get("progress") or {}).get("max_bandwidth")
            if cap:
                caps[t["id"]] = cap
        return t1 in caps and t2 in caps

    # What each source was asked for, as its own API reports it while the move runs.
    wait_until("both moves under way with their caps", caps_seen, timeout=120)
    assert caps == {t1: 4 << 20, t2: 2 << 20}, caps
    wait_until("both moves end", lambda: {t1, t2} <= {t["id"] for t in history(lab)}, timeout=180)
    assert all(t["phase"] == "done" for t in history(lab) if t["id"] in (t1, t2))
    assert "no bandwidth cap" in ok(lab.cluster("limits", "--max-bandwidth", "0"))
    for n in ("v1", "v2"):
        assert vms(lab)[n]["host"] == "host-b"
        keeps_running(lab, n)


def test_maintenance_empties_a_host_while_its_vms_run(lab):
    lab.agent("host-a")
    lab.agent("host-b")
    lab.agent("host-c")
    lab.manager("m1")
    for h in ("host-b", "host-c"):
        ok(lab.cluster("maintenance", "enter", h))
    names = [f"vm{i}" for i in range(4)]
    for n in names:
        create(lab, n)
    for h in ("host-b", "host-c"):
        ok(lab.cluster("maintenance", "exit", h))
    wait_until("all run on host-a", lambda: all(running_on(lab, n, "host-a") for n in names))
    pids = set(lab.vm_pids())
    ok(lab.cluster("limits", "--per-host", "2"))
    ok(lab.cluster("maintenance", "enter", "host-a", "--wait", timeout=300))
    hosts = {h["name"]: h for h in js(lab, "hosts")["hosts"]}
    assert hosts["host-a"]["state"] == "in maintenance" and hosts["host-a"]["vms"] == 0
    now = vms(lab)
    assert all(now[n]["host"] in ("host-b", "host-c") for n in names), now
    for n in names:
        keeps_running(lab, n)
    # The old processes ended after their hand-over; nothing runs twice.
    wait_until("host-a's processes end", lambda: not any(pid_alive(p) for p in pids))
    assert len(lab.vm_pids()) == len(names)
    tasks = history(lab)
    assert len(tasks) == len(names) and all(t["phase"] == "done" for t in tasks), tasks
    assert overlap_max(tasks, "host-a") <= 2
    # No new VM goes to a host in maintenance; leaving it makes the host usable again.
    r = lab.cluster("migrate", "vm0", "--to", "host-a")
    assert r.returncode == 1 and "host-a is in maintenance" in r.stderr
    ok(lab.cluster("maintenance", "exit", "host-a"))
    ok(lab.cluster("migrate", "vm0", "--to", "host-a", "--wait"))


def test_maintenance_reports_a_vm_that_fits_nowhere(lab):
    lab.agent("host-a", memory="1G")
    lab.agent("host-b", memory="256M")
    lab.manager("m1")
    create_on(lab, "host-a", ["host-b"], ["big"], memory="512M")
    r = lab.cluster("maintenance", "enter", "host-a", "--wait")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "big cannot leave host-a: no host has 512 MiB" in r.stderr
    assert "host-b 256 MiB" in r.stderr
    wait_until("big runs on host-a, no task left", lambda: running_on(lab, "big", "host-a"))


def test_agent_kill9_and_restart_keeps_and_adopts_its_vms(lab):
    a = lab.agent("host-a")
    lab.agent("host-b")
    lab.manager("m1")
    create_on(lab, "host-a", ["host-b"], ["web1"])
    (pid,) = lab.vm_pids()
    a.stop(signal.SIGKILL)
    assert pid_alive(pid)
    keeps_running(lab, "web1")
    a.start()
    status, body = a.call("GET", "/vms/web1")
    assert status == 200 and body["pid"] == pid
    ok(lab.cluster("migrate", "web1", "--to", "host-b", "--wait"))
    keeps_running(lab, "web1")


def test_dead_host_vms_restart_elsewhere_only_once_their_disks_are_free(lab, tmp_path):
    a = lab.agent("host-a")
    lab.agent("host-b")
    lab.manager("m1")
    disk = tmp_path / "shared-web1.img"
    disk.write_bytes(b"\0" * (1 << 20))
    create_on(lab, "host-a", ["host-b"], ["web1"], "--disk", str(disk))
    (pid,) = lab.vm_pids()
    # Host-a cut off: its agent is gone, its VM still runs and holds its disk's lock.
    a.stop(signal.SIGKILL)
    wait_until("a restart is tried and refused by the lock", lambda: any(
        "locked" in (t.get("error") or "") for t in js(lab, "tasks")["tasks"]), timeout=60)
    assert vms(lab)["web1"]["host"] == "host-a" and pid_alive(pid)
    assert len(lab.vm_pids()) == 1
    # Host-a dies for good (its VM too): the lock is free, web1 boots on host-b.
    os.kill(pid, signal.SIGKILL)
    wait_until("web1 restarted on host-b", lambda: running_on(lab, "web1", "host-b"),
               timeout=60)
    console = lab.dir / "h-host-b" / "web1.console"
    wait_until("it booted again", lambda: passes(console) > 0)
    assert any("restarted host-a -> host-b" in e["message"] for e in js(lab, "events")["events"])


def test_manager_failover_continues_a_queued_task(lab):
    lab.agent("host-a")
    lab.agent("host-b")
    m1 = lab.manager("m1")
    wait_until("m1 leads", lambda: js(lab, "hosts", manager=m1)["leader"] == "m1")
    m2 = lab.manager("m2")
    create_on(lab, "host-a", ["host-b"], ["web1"], manager=m2)
    m1.stop(signal.SIGKILL)
    # No leader until m1's lease expires: the move waits in etcd's queue meanwhile.
    task = ok(lab.cluster("migrate", "web1", "--to", "host-b", manager=m2)).strip()
    wait_until("m2 takes over and finishes it",
               lambda: any(t["id"] == task and t["phase"] == "done"
                           for t in js(lab, "tasks", manager=m2)["history"]), timeout=60)
    assert js(lab, "hosts", manager=m2)["leader"] == "m2"
    keeps_running(lab, "web1")


def test_source_agent_kill9_mid_evacuation(lab):
    a = lab.agent("host-a")
    lab.agent("host-b")
    lab.manager("m1")
    names = ["vm0", "vm1", "vm2"]
    create_on(lab, "host-a", ["host-b"], names)
    ok(lab.cluster("limits", "--per-host", "1"))
    ok(lab.cluster("maintenance", "enter", "host-a"))
    wait_until("the first move has ended", lambda: len(history(lab)) >= 1, timeout=120)
    a.stop(signal.SIGKILL)
    a.start()
    ok(lab.cluster("maintenance", "enter", "host-a", "--wait", timeout=300))
    now = vms(lab)
    assert all(now[n]["host"] == "host-b" for n in names), now
    for n in names:
        keeps_running(lab, n)
    assert len(lab.vm_pids()) == len(names)


def test_dead_host_without_disks_restarts_only_vms_marked_restart_always(lab):
    a = lab.agent("host-a")
    lab.agent("host-b")
    lab.manager("m1", "--ha-grace", "1")
    ok(lab.cluster("maintenance", "enter", "host-b"))
    create(lab, "always", "--restart", "always")
    create(lab, "never")
    ok(lab.cluster("maintenance", "exit", "host-b"))
    wait_until("both run", lambda: running_on(lab, "always", "host-a")
               and running_on(lab, "never", "host-a"))
    pids = list(lab.vm_pids())
    # The whole host dies: its agent and its VMs.
    a.stop(signal.SIGKILL)
    for p in pids:
        os.kill(p, signal.SIGKILL)
    wait_until("'always' restarted on host-b", lambda: running_on(lab, "always", "host-b"),
               timeout=60)
    now = vms(lab)
    assert now["never"]["host"] == "host-a" and now["never"]["state"] == "host down", now
    assert now["never"]["task"] is None
    assert len(lab.vm_pids()) == 1  # 'always' once, on host-b


def migrate_under_way(lab, vm, dst, max_bandwidth):
    """Moves vm to dst at max_bandwidth; returns the task once its record says it copies."""
    task = ok(lab.cluster("migrate", vm, "--to", dst, "--max-bandwidth", max_bandwidth)).strip()
    wait_until("the move is under way", lambda: any(
        t["id"] == task and t["phase"] == "migrating" and t.get("progress")
        for t in js(lab, "tasks")["tasks"]), timeout=60)
    return task


def hosts_up(lab):
    """The hosts whose lease holds: their alive keys in etcd."""
    return {k.rsplit("/", 1)[1] for k in etcd_get(lab.etcd.url, "/godwit/alive/", prefix=True)}


def test_cancel_of_a_move_under_way_leaves_the_vm_where_it_was(lab):
    lab.agent("host-a")
    b = lab.agent("host-b")
    lab.manager("m1")
    create_on(lab, "host-a", ["host-b"], ["web1"], cmdline="heartbeat 10 ; memtouch 16M random")
    # 1 MB/s for 16 MiB of random bytes written over and over: a move that takes a while.
    task = migrate_under_way(lab, "web1", "host-b", "1M")
    ok(lab.cluster("cancel", task))
    wait_until("the task is cancelled", lambda: any(
        t["id"] == task and t["phase"] == "cancelled" for t in history(lab)), timeout=60)
    assert running_on(lab, "web1", "host-a")
    keeps_running(lab, "web1")
    wait_until("host-b's receive is gone", lambda: b.call("GET", "/vms")[1]["vms"] == [])
    assert len(lab.vm_pids()) == 1


def test_leading_manager_kill9_mid_evacuation(lab):
    lab.agent("host-a")
    lab.agent("host-b")
    m1 = lab.manager("m1")
    wait_until("m1 leads", lambda: js(lab, "hosts", manager=m1)["leader"] == "m1")
    m2 = lab.manager("m2")
    names = ["vm0", "vm1", "vm2"]
    create_on(lab, "host-a", ["host-b"], names, manager=m2)
    ok(lab.cluster("limits", "--per-host", "1", manager=m2))
    ok(lab.cluster("maintenance", "enter", "host-a", manager=m2))
    wait_until("the first move has ended", lambda: len(js(lab, "tasks", manager=m2)["history"])
               >= 1, timeout=120)
    m1.stop(signal.SIGKILL)
    ok(lab.cluster("maintenance", "enter", "host-a", "--wait", manager=m2, timeout=300))
    assert js(lab, "hosts", manager=m2)["leader"] == "m2"
    now = {v["name"]: v for v in js(lab, "vms", manager=m2)["vms"]}
    assert all(now[n]["host"] == "host-b" for n in names), now
    for n in names:
        keeps_running(lab, n)
    assert len(lab.vm_pids()) == len(names)


def test_maintenance_wait_rides_out_a_manager_that_does_not_answer(lab):
    lab.agent("host-a")
    lab.agent("host-b")
    m = lab.manager("m1")
    create_on(lab, "host-a", ["host-b"], ["web1"])
    ok(lab.cluster("limits", "--per-host", "1"))
    # host-b's only slot is held, so the evacuation waits while the manager is away.
    slot = "/godwit/slots/host/host-b/0"
    etcd_put(lab.etcd.url, slot, "held-by-test")
    waiter = subprocess.Popen(lab.cluster_args("maintenance", "enter", "host-a", "--wait"),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_until("host-a is entering maintenance", lambda: any(
            h["name"] == "host-a" and h["state"] == "entering maintenance"
            for h in js(lab, "hosts")["hosts"]))
        # The only manager dies: every poll is refused until it is back on its port.
        m.stop(signal.SIGKILL)
        time.sleep(3)
        assert waiter.poll() is None, waiter.communicate()
        m.start()
        etcd_delete(lab.etcd.url, slot)
        out, err = waiter.communicate(timeout=180)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert waiter.returncode == 0, err
    assert "host-a is in maintenance" in out
    assert "asking again for up to 60 s" in err and "the manager answers again" in err, err
    assert vms(lab)["web1"]["host"] == "host-b"
    keeps_running(lab, "web1")


def test_one_etcd_member_of_three_dies_and_the_cluster_goes_on(tmp_path):
    from cluster_lab import Lab
    lab = Lab(tmp_path, etcd_members=3)
    try:
        lab.agent("host-a")
        lab.agent("host-b")
        lab.manager("m1")
        create_on(lab, "host-a", ["host-b"], ["web1"])
        # The member every agent and manager talks to first.
        lab.etcd.members[0].stop(signal.SIGKILL)
        ok(lab.cluster("migrate", "web1", "--to", "host-b", "--wait"))
        keeps_running(lab, "web1")
        # The hosts kept their leases through the other members: none was seen dead.
        hosts = js(lab, "hosts")["hosts"]
        assert all(h["state"] == "up" for h in hosts), hosts
        assert not any("down" in e["message"] for e in js(lab, "events")["events"])
        assert len(lab.vm_pids()) == 1
    finally:
        lab.stop()


def move_ends_while_the_leader_is_held(lab, m, a, b, stopped):
    """Moves vm0 from agent a's host to agent b's while the leader m is held (SIGSTOP) so
    that it cannot record the end; m is appended to stopped (the caller resumes it).
    Returns the task and the pid of vm0 on b's host."""
    task = migrate_under_way(lab, "vm0", b.name, "4M")
    os.kill(m.proc.pid, signal.SIGSTOP)
    stopped.append(m)
    wait_until(f"vm0 resumed on {b.name}",
               lambda: b.call("GET", "/vms/vm0")[1].get("state") == "running", timeout=60)
    wait_until(f"{a.name}'s copy is gone", lambda: a.call("GET", "/vms/vm0")[0] == 404)
    return task, b.call("GET", "/vms/vm0")[1]["pid"]


def move_ends_unrecorded(lab, m, a, b, stopped):
    """As move_ends_while_the_leader_is_held, then holds both agents until their leases
    lapse (appended to stopped too)."""
    task, pid = move_ends_while_the_leader_is_held(lab, m, a, b, stopped)
    for n in (a, b):
        os.kill(n.proc.pid, signal.SIGSTOP)
        stopped.append(n)
    wait_until("both hosts are down", lambda: not {a.name, b.name} & hosts_up(lab), timeout=30)
    return task, pid


def vm0_on_host_a(lab, fill, *manager_args):
    """Agents on host-a and host-b, a leader m1 (with manager_args), and vm0 running on
    host-a: `fill` of memory that does not compress, then its vCPU halts (a move of
    fill / bandwidth). Returns the two agents and the leader."""
    a = lab.agent("host-a")
    b = lab.agent("host-b")
    m = lab.manager("m1", *manager_args)
    ok(lab.cluster("maintenance", "enter", "host-b"))
    create(lab, "vm0", cmdline=f"heartbeat 10 ; fill {fill}")
    ok(lab.cluster("maintenance", "exit", "host-b"))
    wait_until("vm0 runs", lambda: running_on(lab, "vm0", "host-a"))
    return a, b, m


def down_mark(lab, task):
    """When the leader found the hosts of a move down (hosts_down_ms), if it did."""
    key = f"/godwit/tasks/{task}"
    value = etcd_get(lab.etcd.url, key).get(key)
    return value and json.loads(value).get("hosts_down_ms")


def move_ended_done(lab, task, b, pid, timeout=60):
    """The move ends done and vm0 runs on agent b's host, the process it resumed in."""
    wait_until("the move ends", lambda: any(t["id"] == task for t in history(lab)),
               timeout=timeout)
    (end,) = [t for t in history(lab) if t["id"] == task]
    assert end["phase"] == "done", end
    wait_until("vm0 runs on host-b", lambda: running_on(lab, "vm0", "host-b"), timeout=30)
    assert b.call("GET", "/vms/vm0")[1]["pid"] == pid


def test_a_move_whose_hosts_both_lose_their_leases_as_it_ends_keeps_its_vm(lab):
    """A move ends while the leader cannot record it, and then both its hosts lose their
    leases (as when etcd stalls past them): the destination runs the VM, the source's
    copy is gone. The leader waits for the hosts instead of failing the move, so the
    destination's agent, coming back, keeps its copy; the move ends done."""
    a, b, m = vm0_on_host_a(lab, "16M")  # a move of a few seconds at 4 MB/s
    stopped = []
    try:
        task, pid = move_ends_unrecorded(lab, m, a, b, stopped)
        # The leader comes back to both hosts down, host-b's agent not answering.
        os.kill(m.proc.pid, signal.SIGCONT)
        stopped.remove(m)
        wait_until("the leader saw both hosts down", lambda: down_mark(lab, task), timeout=60)
    finally:
        for n in stopped:
            os.kill(n.proc.pid, signal.SIGCONT)
    move_ended_done(lab, task, b, pid)
    assert not any("stopped its copy" in e["message"] for e in js(lab, "events")["events"])


def test_a_second_outage_of_a_moves_hosts_gets_a_grace_of_its_own(lab):
    """Both hosts of a move lose their leases while it copies; host-a (the source, still
    migrating) comes back alone, stays up past the HA grace, then goes down again. The
    grace runs from the second outage, not from the first: the move is not failed at
    once, and once both hosts are back it ends done."""
    grace = 5
    a, b, _ = vm0_on_host_a(lab, "40M", "--ha-grace", str(grace))  # at 1 MB/s, 40 s
    task = migrate_under_way(lab, "vm0", "host-b", "1M")
    pid = b.call("GET", "/vms/vm0")[1]["pid"]
    stopped = []
    try:
        for n in (a, b):
            os.kill(n.proc.pid, signal.SIGSTOP)
            stopped.append(n)
        wait_until("the leader saw both hosts down", lambda: down_mark(lab, task),
                   timeout=60)
        first = down_mark(lab, task)
        os.kill(a.proc.pid, signal.SIGCONT)
        stopped.remove(a)
        wait_until("the leader saw host-a back", lambda: not down_mark(lab, task),
                   timeout=30)
        time.sleep(max(0.0, first / 1000 + grace + 1 - time.time()))
        os.kill(a.proc.pid, signal.SIGSTOP)
        stopped.append(a)
        wait_until("host-a is down again", lambda: "host-a" not in hosts_up(lab), timeout=30)
        wait_until("the leader saw both hosts down again",
                   lambda: (down_mark(lab, task) or 0) > first or not etcd_get(
                       lab.etcd.url, f"/godwit/tasks/{task}"),
                   timeout=30)
        assert not [t for t in history(lab) if t["id"] == task], \
            "the move was failed at once, on the first outage's grace"
    finally:
        for n in stopped:
            os.kill(n.proc.pid, signal.SIGCONT)
    move_ended_done(lab, task, b, pid, timeout=120)


def test_a_source_back_alone_after_the_hand_over_waits_for_its_destination(lab):
    """As above (the move ended unrecorded, both hosts down), but host-a, whose copy is
    gone, comes back alone: the VM is host-b's, so the leader goes on waiting for host-b
    on the same clock instead of failing the move at once; host-b, back within the
    grace, ends it done, the same process."""
    grace = 40
    a, b, m = vm0_on_host_a(lab, "16M", "--ha-grace", str(grace))
    stopped = []
    try:
        task, pid = move_ends_unrecorded(lab, m, a, b, stopped)
        os.kill(m.proc.pid, signal.SIGCONT)
        stopped.remove(m)
        wait_until("the leader saw both hosts down", lambda: down_mark(lab, task),
                   timeout=60)
        first = down_mark(lab, task)
        os.kill(a.proc.pid, signal.SIGCONT)
        stopped.remove(a)
        wait_until("host-a is up again", lambda: "host-a" in hosts_up(lab), timeout=30)
        # A few of the leader's ticks with host-a up and answering 404 (each also asks
        # host-b, held, for up to 2 s).
        wait_until("host-a answers", lambda: a.call("GET", "/vms/vm0")[0] == 404)
        time.sleep(12)
        assert not [t for t in history(lab) if t["id"] == task], \
            "the move was failed while host-b was within its grace"
        assert down_mark(lab, task) == first, "the grace started over while host-b stayed down"
    finally:
        for n in stopped:
            os.kill(n.proc.pid, signal.SIGCONT)
    move_ended_done(lab, task, b, pid)


def test_a_move_given_up_after_the_grace_keeps_its_vm_where_it_resumed(lab, tmp_path):
    """As above, but the hosts stay down past the HA grace: the leader fails the move and
    HA tries to restart the VM on host-c, which its disk's lock refuses (host-b's copy
    holds it). host-b's agent, coming back, keeps the copy it received and takes the
    owner record; the restart ends cancelled. Host-a stays down throughout."""
    a = lab.agent("host-a")
    b = lab.agent("host-b")
    lab.agent("host-c")
    m = lab.manager("m1", "--ha-grace", "3")
    disk = tmp_path / "shared-vm0.img"
    disk.write_bytes(b"\0" * (1 << 20))
    create_on(lab, "host-a", ["host-b", "host-c"], ["vm0"], "--disk", str(disk),
              cmdline="heartbeat 10 ; fill 16M")
    stopped = []
    try:
        task, pid = move_ends_unrecorded(lab, m, a, b, stopped)
        os.kill(m.proc.pid, signal.SIGCONT)
        stopped.remove(m)
        wait_until("the move is given up", lambda: any(
            t["id"] == task and t["phase"] == "failed"
            and "both hosts went down" in t["error"] for t in history(lab)), timeout=60)
        wait_until("a restart on host-c is refused by the lock", lambda: any(
            t["kind"] == "restart" and "locked" in (t.get("error") or "")
            for t in js(lab, "tasks")["tasks"]), timeout=60)
        os.kill(b.proc.pid, signal.SIGCONT)
        stopped.remove(b)
        wait_until("vm0 runs on host-b", lambda: running_on(lab, "vm0", "host-b"), timeout=60)
    finally:
        for n in stopped:
            os.kill(n.proc.pid, signal.SIGCONT)
    assert b.call("GET", "/vms/vm0")[1]["pid"] == pid
    (restart,) = [t for t in history(lab) if t["kind"] == "restart"]
    assert restart["phase"] == "cancelled" and "host-b runs it now" in restart["error"], restart
    events = [e["message"] for e in js(lab, "events")["events"]]
    assert any("host-b: kept vm0, which it had received from host-a" in e for e in events)
    assert not any("stopped its copy" in e for e in events), events


def test_a_start_left_by_a_dead_leader_whose_source_host_is_down_keeps_its_vm(lab):
    """A leader died with a move in `starting`, the move went through (vm0 runs on
    host-b, its source's copy gone) and the source host is down too: the next leader
    follows the move instead of stopping the destination's copy, and it ends done."""
    a = lab.agent("host-a")
    b = lab.agent("host-b")
    spec = {"name": "vm0", "kernel": TESTGUEST, "memory": 64 << 20, "cpus": 2,
            "cmdline": "heartbeat 10"}
    etcd_put(lab.etcd.url, "/godwit/vms/vm0", json.dumps(spec))
    rev = etcd_put(lab.etcd.url, "/godwit/owner/vm0", "host-a")
    assert a.call("POST", "/vms", spec)[0] == 201
    # The move as the dead leader's start made it: the destination receives, the
    # source sends; then host-a's agent dies with the task still `starting`.
    status, body = b.call("POST", "/vms/vm0/receive", {**spec, "from": "host-a",
                                                        "owner_rev": rev})
    assert status == 201, body
    assert a.call("POST", "/vms/vm0/migrate", {"to": body["to"]})[0] == 202
    wait_until("vm0 runs on host-b",
               lambda: b.call("GET", "/vms/vm0")[1].get("state") == "running", timeout=60)
    pid = b.call("GET", "/vms/vm0")[1]["pid"]
    now = int(time.time() * 1000)
    task = {"id": "t-left", "vm": "vm0", "kind": "migrate", "reason": "user", "src": "host-a",
            "dst": "host-b", "phase": "starting", "attempt": 0, "created_ms": now,
            "started_ms": now}
    etcd_put(lab.etcd.url, "/godwit/tasks/t-left", json.dumps(task))
    etcd_put(lab.etcd.url, "/godwit/vmtask/vm0", "t-left")
    a.stop(signal.SIGKILL)
    wait_until("host-a is down", lambda: "host-a" not in hosts_up(lab), timeout=30)
    lab.manager("m1")
    wait_until("the move ends", lambda: any(t["id"] == "t-left" for t in history(lab)),
               timeout=60)
    (end,) = [t for t in history(lab) if t["id"] == "t-left"]
    assert end["phase"] == "done", end
    assert running_on(lab, "vm0", "host-b")
    assert b.call("GET", "/vms/vm0")[1]["pid"] == pid


def test_destination_host_dies_mid_move_and_the_vm_runs_on_at_the_source(lab):
    """The destination's host dies (its agent and the receiving VM) while the move runs:
    the source's VM runs on, the task ends instead of waiting for that host forever, and
    the VM can be moved again."""
    lab.agent("host-a")
    b = lab.agent("host-b")
    lab.agent("host-c")
    lab.manager("m1")
    create_on(lab, "host-a", ["host-b", "host-c"], ["vm0"],
              cmdline="heartbeat 10 ; memtouch 16M random")
    (pid,) = lab.vm_pids()
    task = migrate_under_way(lab, "vm0", "host-b", "1M")
    receiving = b.call("GET", "/vms/vm0")[1]["pid"]
    # Host-b dies: its agent and the receiving VM.
    b.stop(signal.SIGKILL)
    os.kill(receiving, signal.SIGKILL)
    wait_until("the move ends", lambda: any(t["id"] == task for t in history(lab)),
               timeout=90)
    (end,) = [t for t in history(lab) if t["id"] == task]
    assert end["phase"] == "failed" and end["error"] == "host-b is down", end
    assert running_on(lab, "vm0", "host-a")
    assert list(lab.vm_pids()) == [pid]
    again = ok(lab.cluster("migrate", "vm0", "--to", "host-c")).strip()
    wait_until("the next move ends", lambda: any(t["id"] == again for t in history(lab)),
               timeout=90)
    assert [t["phase"] for t in history(lab) if t["id"] == again] == ["done"]


def test_destination_host_dies_after_the_hand_over_and_ha_restarts_the_vm(lab):
    """The move ends (host-b runs the VM) while the leader cannot record it, and then
    host-b dies. The source has handed over, so the VM was host-b's: the move ends
    failed with the VM in host-b's record, and HA restarts it elsewhere (it is
    `restart: always`) instead of the task waiting for host-b forever."""
    a = lab.agent("host-a")
    b = lab.agent("host-b")
    lab.agent("host-c")
    m = lab.manager("m1", "--ha-grace", "1")
    create_on(lab, "host-a", ["host-b", "host-c"], ["vm0"], "--restart", "always",
              cmdline="heartbeat 10 ; fill 16M")
    stopped = []
    try:
        task, moved = move_ends_while_the_leader_is_held(lab, m, a, b, stopped)
        # Host-b dies: its agent and the VM it had just taken.
        b.stop(signal.SIGKILL)
        os.kill(moved, signal.SIGKILL)
    finally:
        for n in stopped:
            os.kill(n.proc.pid, signal.SIGCONT)
    wait_until("the move ends", lambda: any(t["id"] == task for t in history(lab)),
               timeout=60)
    (end,) = [t for t in history(lab) if t["id"] == task]
    assert end["phase"] == "failed" and "handed the VM over" in end["error"], end
    wait_until("vm0 restarted on host-a or host-c", lambda: any(
        running_on(lab, "vm0", h) for h in ("host-a", "host-c")), timeout=60)
    assert len(lab.vm_pids()) == 1


def test_source_host_dies_mid_move_and_its_vm_restarts_elsewhere(lab, tmp_path):
    a = lab.agent("host-a")
    lab.agent("host-b")
    lab.manager("m1")
    disk = tmp_path / "shared-web1.img"
    disk.write_bytes(b"\0" * (1 << 20))
    ok(lab.cluster("maintenance", "enter", "host-b"))
    create(lab, "web1", "--disk", str(disk), cmdline="heartbeat 10 ; memtouch 16M random")
    ok(lab.cluster("maintenance", "exit", "host-b"))
    wait_until("web1 runs", lambda: running_on(lab, "web1", "host-a"))
    (pid,) = lab.vm_pids()
    task = migrate_under_way(lab, "web1", "host-b", "1M")
    # Host-a dies: its agent and its VM.
    a.stop(signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    wait_until("the move fails", lambda: any(
        t["id"] == task and t["phase"] == "failed" for t in history(lab)), timeout=60)
    wait_until("web1 restarted on host-b", lambda: running_on(lab, "web1", "host-b"),
               timeout=60)
    console = lab.dir / "h-host-b" / "web1.console"
    wait_until("it booted again", lambda: passes(console) > 0)
    assert len(lab.vm_pids()) == 1
