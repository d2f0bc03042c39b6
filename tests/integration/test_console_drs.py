"""The web console's Balancing panel (docs/console.md) in headless chromium: the last DRS
pass's recommendations that still hold, shown as text, and one applied with its button.

The pass's record is written into etcd by the test (the leader's next pass is a day
away), for a VM that exists only in etcd: what is checked is the page and the task the
button queues, not a move (test_cluster_drs.py moves VMs)."""
import json
import time

from cluster_lab import etcd_put, js, ok, wait_until
from test_console import HOSTILE, browser, console_token, errors, log_in, page, shot  # noqa: F401

ROWS = """return Array.from(document.querySelectorAll('#drs tbody tr'), tr =>
    ({id: tr.dataset.id, text: tr.textContent, title: tr.title}));"""


def put_vm(lab, name, owner):
    spec = {"name": name, "kernel": "/nonexistent", "memory": 64 << 20, "cpus": 1,
            "cmdline": "", "disks": [], "nets": [], "restart": "never"}
    etcd_put(lab.etcd.url, f"/godwit/vms/{name}", json.dumps(spec))
    etcd_put(lab.etcd.url, f"/godwit/owner/{name}", owner)


def recommendation(rid, vm, src, dst, why):
    return {"id": rid, "vm": vm, "src": src, "dst": dst, "reason": "balance", "gain": 0.25,
            "bytes": 64 << 20, "seconds": 2.1, "why": why}


def test_console_lists_drs_recommendations_and_applies_one(lab, browser):
    lab.agent("host-a")
    lab.agent("host-b")
    m = lab.manager("m1")
    ok(lab.cluster("drs", "config", "--interval", "86400"))
    wait_until("the leader's first pass", lambda: js(lab, "drs", "recommendations")["pass"])
    put_vm(lab, "web1", "host-a")
    put_vm(lab, "web2", "host-a")
    record = {"pass": 7, "time_ms": int(time.time() * 1000), "automation": "manual",
              "threshold": 3, "tolerance": 0.1, "imbalance": 0.5, "loads": {},
              "applied": [], "recommendations": [
                  recommendation("7-1", "web1", "host-a", "host-b", f"balance: {HOSTILE}"),
                  # web2 runs on host-a, not host-b: stale, not shown.
                  recommendation("7-2", "web2", "host-b", "host-a", "balance: web2")]}
    etcd_put(lab.etcd.url, "/godwit/drs/pass", json.dumps(record))

    log_in(browser, m, console_token(lab))
    rows = wait_until("the recommendation", lambda: page(browser, ROWS), timeout=30)
    assert [r["id"] for r in rows] == ["7-1"], rows
    assert "web1" in rows[0]["text"] and "host-a → host-b" in rows[0]["text"], rows
    assert rows[0]["title"] == f"balance: {HOSTILE}", rows
    assert page(browser, "return document.querySelectorAll('img').length") == 0
    summary = page(browser, "return document.getElementById('drs-summary').textContent")
    assert summary == "manual · imbalance 0.500 (tolerated 0.100)", summary
    shot(browser, "drs")

    browser.find_element("css selector", "#drs tbody tr .apply-button").click()
    task = wait_until("the task the button queued", lambda: next(
        (t for t in js(lab, "tasks")["tasks"] + js(lab, "tasks")["history"]
         if t["vm"] == "web1"), None), timeout=30)
    # A failed attempt (web1 has no process) is retried where the scheduler chooses, as
    # every retry: the destination is the recommendation's until then.
    assert task["reason"] == "drs" and task["src"] == "host-a", task
    assert task["dst"] == "host-b" or (task["attempt"] and task["dst"] == ""), task
    assert any(e["message"].endswith(f"DRS recommendation 7-1 applied: balance: {HOSTILE}")
               for e in js(lab, "events")["events"])
    # Its VM has a task (or its move ended): the recommendation no longer holds.
    wait_until("the row gone", lambda: not page(browser, ROWS), timeout=30)
    assert page(browser, "return document.getElementById('no-drs').hidden") is False
    assert not [e for e in errors(browser) if "drs" in e["message"]], errors(browser)
