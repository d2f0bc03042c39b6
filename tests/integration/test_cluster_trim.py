"""The leading manager keeps only the newest ended tasks and events in etcd
(--keep-history, --keep-events; docs/cluster.md, "Keys"): without it they grow forever."""
import json

from cluster_lab import etcd_get, etcd_put, js, ok, wait_until
from godwit_vm import TESTGUEST


def test_manager_keeps_only_the_newest_ended_tasks_and_events(lab):
    lab.agent("host-a")
    lab.agent("host-b")
    lab.manager("m1", "--keep-history", "2", "--keep-events", "3")
    url = lab.etcd.url
    # A VM record without a process (no KVM needed): its moves are queued and cancelled,
    # which ends them into the history. host-b's only slot is held, so none starts.
    spec = {"name": "web1", "kernel": TESTGUEST, "memory": 64 << 20, "cpus": 1,
            "cmdline": "idle"}
    etcd_put(url, "/godwit/vms/web1", json.dumps(spec))
    etcd_put(url, "/godwit/owner/web1", "host-a")
    ok(lab.cluster("limits", "--per-host", "1"))
    etcd_put(url, "/godwit/slots/host/host-b/0", "held-by-test")
    ids = []
    for _ in range(5):
        task = ok(lab.cluster("migrate", "web1", "--to", "host-b")).strip()
        ok(lab.cluster("cancel", task))
        wait_until(f"{task} ends", lambda: not js(lab, "tasks")["tasks"], timeout=30)
        ids.append(task)
    wait_until("the history is trimmed to the newest 2", lambda: set(
        etcd_get(url, "/godwit-history/", prefix=True)) == {f"/godwit-history/{t}"
                                                            for t in ids[-2:]}, timeout=30)
    events = wait_until("the events are trimmed to the newest 3", lambda: (
        e := etcd_get(url, "/godwit-events/", prefix=True)) and len(e) == 3 and e, timeout=30)
    assert ids[-1] in list(events.values())[-1], events
    assert [t["id"] for t in js(lab, "tasks")["history"]] == ids[-2:]
