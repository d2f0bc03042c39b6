"""`godwit cluster init` and `godwit agent` (docs/cluster.md): certificates, mutual TLS,
the host in etcd under a lease, VMs started, moved, adopted after the agent's death,
and a copy stopped when another host owns the VM."""
import json
import os
import re
import signal
import ssl
import subprocess
import time

import pytest

from cluster_lab import etcd_get, etcd_put, https_call, passes, pid_alive, wait_until
from godwit_vm import GODWIT, TESTGUEST


def spec(name, memory=128 << 20, cmdline="heartbeat 10 ; memtouch 32M", cpus=2, **kw):
    return {"name": name, "kernel": TESTGUEST, "memory": memory, "cpus": cpus,
            "cmdline": cmdline, **kw}


def move(src, dst, name, **origin):
    """A move through the agents, as the manager makes it: dst receives, src sends.
    origin: from and owner_rev, the owner record the move starts from."""
    status, body = dst.call("POST", f"/vms/{name}/receive", spec(name, **origin))
    assert status == 201, body
    status, body = src.call("POST", f"/vms/{name}/migrate", {"to": body["to"]})
    assert status == 202, body
    wait_until(f"{name} runs on {dst.name}",
               lambda: dst.call("GET", f"/vms/{name}")[1].get("state") == "running", timeout=60)


def fds(pid):
    """What a process's descriptors point to (sockets and pipes by inode)."""
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(("socket:", "pipe:")):
            out.add(target)
    return out


def test_init_makes_a_ca_and_certificates_it_signed(tmp_path):
    d = tmp_path / "pki"
    r = subprocess.run([GODWIT, "cluster", "init", "--dir", str(d), "--ip", "192.0.2.7"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    v = subprocess.run(["openssl", "verify", "-CAfile", str(d / "ca.crt"), str(d / "node.crt"),
                        str(d / "client.crt")], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr
    text = subprocess.run(["openssl", "x509", "-in", str(d / "node.crt"), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "IP Address:192.0.2.7" in text and "IP Address:127.0.0.1" in text
    for key in ("ca.key", "node.key", "client.key"):
        assert os.stat(d / key).st_mode & 0o077 == 0
    again = subprocess.run([GODWIT, "cluster", "init", "--dir", str(d)], capture_output=True,
                           text=True, timeout=30)
    assert again.returncode == 1 and "already has a cluster CA" in again.stderr
    r = subprocess.run([GODWIT, "cluster", "cert", "--dir", str(d), "--name", "host-b",
                        "--ip", "198.51.100.2"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    v = subprocess.run(["openssl", "verify", "-CAfile", str(d / "ca.crt"), str(d / "host-b.crt")],
                       capture_output=True, text=True)
    assert v.returncode == 0


def test_agent_registers_under_a_lease_and_refuses_strangers(lab, tmp_path):
    a = lab.agent("host-a", memory="3G", cpus=4)
    host = json.loads(etcd_get(lab.etcd.url, "/godwit/hosts/host-a")["/godwit/hosts/host-a"])
    assert host["memory"] == 3 << 30 and host["cpus"] == 4 and host["url"] == a.url
    assert "/godwit/alive/host-a" in etcd_get(lab.etcd.url, "/godwit/alive/host-a")
    status, body = a.call("GET", "/host")
    assert status == 200 and body["name"] == "host-a"
    # No certificate, or one of another cluster's CA: no answer from the agent or a
    # manager.
    m = lab.manager("m1")
    assert https_call(lab.pki, m.port, "GET", "/hosts")[0] == 200
    other = tmp_path / "other"
    subprocess.run([GODWIT, "cluster", "init", "--dir", str(other)], check=True,
                   capture_output=True, timeout=30)
    (other / "ca.crt").unlink()
    (other / "ca.crt").symlink_to(lab.pki / "ca.crt")  # trusts our server, has its own cert
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        https_call(lab.pki, a.port, "GET", "/host", cert=None)
    # The manager lets a client without a certificate finish the handshake (its web
    # console's login, docs/console.md) and answers its API requests 401.
    status, body = https_call(lab.pki, m.port, "GET", "/hosts", cert=None)
    assert status == 401 and "hosts" not in (body or {}), body
    for node, path in ((a, "/host"), (m, "/hosts")):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            https_call(other, node.port, "GET", path)
    # A killed agent's host goes from etcd with its lease (TTL 4 s here).
    a.stop(signal.SIGKILL)
    wait_until("host-a's lease expires",
               lambda: not etcd_get(lab.etcd.url, "/godwit/alive/host-a"), timeout=20)


@pytest.mark.kvm
def test_agent_runs_moves_and_adopts_vms(lab):
    a = lab.agent("host-a")
    b = lab.agent("host-b")
    status, body = a.call("POST", "/vms", spec("web1"))
    assert status == 201, body
    pid = body["pid"]
    console_a = a.state_dir / "web1.console"
    wait_until("web1 runs", lambda: passes(console_a) > 0)
    # The VM holds none of the agent's descriptors (its etcd and HTTPS connections).
    shared = fds(pid) & fds(a.proc.pid)
    assert not shared, f"the VM inherited the agent's {shared}"
    # A second VM of that name on that host is refused; a bad spec says what is wrong.
    assert a.call("POST", "/vms", spec("web1"))[0] == 409
    status, body = a.call("POST", "/vms", spec("bad", memory=1000))
    assert status == 400 and "memory" in body["error"]

    # kill -9 of the agent: the VM runs on; a new agent adopts it (same process).
    a.stop(signal.SIGKILL)
    assert pid_alive(pid)
    a.start()
    status, body = a.call("GET", "/vms/web1")
    assert status == 200 and body["pid"] == pid and body["state"] == "running", body

    move(a, b, "web1")
    wait_until("host-a forgets web1", lambda: a.call("GET", "/vms/web1")[0] == 404, timeout=30)
    console_b = b.state_dir / "web1.console"
    n = passes(console_b)
    wait_until("web1 keeps passing on host-b", lambda: passes(console_b) > n, timeout=30)
    wait_until("etcd shows web1 on host-b only", lambda: set(
        etcd_get(lab.etcd.url, "/godwit/running/", prefix=True)) == {"/godwit/running/host-b/web1"},
        timeout=15)
    assert b.call("DELETE", "/vms/web1")[0] == 204
    assert b.call("GET", "/vms/web1")[0] == 404


@pytest.mark.kvm
def test_agent_stops_its_copy_of_a_vm_another_host_owns(lab):
    a = lab.agent("host-a")
    status, body = a.call("POST", "/vms", spec("web1"))
    assert status == 201, body
    pid = body["pid"]
    etcd_put(lab.etcd.url, "/godwit/owner/web1", "host-a")
    a.stop(signal.SIGKILL)
    a.start()
    assert pid_alive(pid)  # still its own: kept
    # Meanwhile the cluster gave web1 to another host: the agent that comes back stops it.
    etcd_put(lab.etcd.url, "/godwit/owner/web1", "host-b")
    a.stop(signal.SIGKILL)
    a.start()
    wait_until("the old copy ends", lambda: not pid_alive(pid), timeout=20)
    assert a.call("GET", "/vms/web1")[0] == 404


@pytest.mark.kvm
def test_agent_keeps_a_copy_it_received_whose_moves_end_was_never_recorded(lab):
    """A move ended (the copy resumed on host-b, host-a's is gone) but no manager changed
    the owner: host-b's agent, coming back, keeps the VM and takes the owner record, as
    long as that record is the one the move started from; otherwise it stops its copy."""
    a = lab.agent("host-a")
    b = lab.agent("host-b")
    for name in ("web1", "web2"):
        assert a.call("POST", "/vms", spec(name))[0] == 201
        wait_until(f"{name} runs", lambda: passes(a.state_dir / f"{name}.console") > 0)
    rev1 = etcd_put(lab.etcd.url, "/godwit/owner/web1", "host-a")
    rev2 = etcd_put(lab.etcd.url, "/godwit/owner/web2", "host-a")
    assert b.call("POST", "/vms/web1/receive", spec("web1", **{"from": "host-a"}))[0] == 400
    move(a, b, "web1", **{"from": "host-a", "owner_rev": rev1})
    move(a, b, "web2", **{"from": "host-a", "owner_rev": rev2})
    pid1, pid2 = (b.call("GET", f"/vms/{n}")[1]["pid"] for n in ("web1", "web2"))
    # web2's record changed after its move began (another host got it meanwhile, then
    # it came back to host-a): host-b's copy is not the VM the record speaks of.
    etcd_put(lab.etcd.url, "/godwit/owner/web2", "host-c")
    etcd_put(lab.etcd.url, "/godwit/owner/web2", "host-a")
    # The agent that comes back (its origin read from the pid files it adopts).
    b.stop(signal.SIGKILL)
    b.start()
    wait_until("web2's copy ends", lambda: not pid_alive(pid2), timeout=20)
    assert pid_alive(pid1)
    assert etcd_get(lab.etcd.url, "/godwit/owner/web1") == {"/godwit/owner/web1": "host-b"}
    assert etcd_get(lab.etcd.url, "/godwit/owner/web2") == {"/godwit/owner/web2": "host-a"}
    n = passes(b.state_dir / "web1.console")
    wait_until("web1 keeps passing on host-b",
               lambda: passes(b.state_dir / "web1.console") > n, timeout=30)
    events = list(etcd_get(lab.etcd.url, "/godwit-events/", prefix=True).values())
    assert any("host-b: kept web1, which it had received from host-a" in e for e in events), \
        events
    assert any("host-b: stopped its copy of web2" in e for e in events), events


@pytest.mark.kvm
def test_agent_stops_a_received_copy_whose_source_never_came(lab):
    """A receive that names the owner record it was started from, but whose source
    never connected (its move never began): the agent that comes back cannot learn from
    it whether it resumed (a receive answers only once its source is there), keeps it
    while it asks again, and stops it after a minute."""
    b = lab.agent("host-b")
    rev = etcd_put(lab.etcd.url, "/godwit/owner/web1", "host-a")
    status, body = b.call("POST", "/vms/web1/receive",
                          spec("web1", **{"from": "host-a", "owner_rev": rev}))
    assert status == 201, body
    pid = body["pid"]
    b.stop(signal.SIGKILL)
    b.start()
    time.sleep(10)
    assert pid_alive(pid)  # asked again, not stopped at the first silence
    wait_until("the receive is stopped", lambda: not pid_alive(pid), timeout=120)
    events = list(etcd_get(lab.etcd.url, "/godwit-events/", prefix=True).values())
    assert any("host-b: stopped its copy of web1, which host-a owns now" in e
               for e in events), events


@pytest.mark.kvm
def test_vm_verbose_logs_the_steps_of_each_moves_pause(lab):
    a = lab.agent("host-a", "--vm-verbose")
    b = lab.agent("host-b", "--vm-verbose")
    assert a.call("POST", "/vms", spec("web1"))[0] == 201
    wait_until("web1 runs", lambda: passes(a.state_dir / "web1.console") > 0)
    move(a, b, "web1")
    # Both ends' -v lines, on the clock they share: the source's pause, the destination's
    # restore, step by step.
    wait_until("the source logs its pause", lambda: re.search(
        r"\[\d+\.\d+\] debug: pause \d+ us: vCPUs stopped \d+",
        (a.state_dir / "web1.log").read_text(errors="replace")), timeout=30)
    assert re.search(r"\[\d+\.\d+\] debug: restore \d+ us: vCPUs \d+",
                     (b.state_dir / "web1.log").read_text(errors="replace"))
    assert b.call("DELETE", "/vms/web1")[0] == 204
