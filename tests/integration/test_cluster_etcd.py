"""The cluster's etcd client (src/cluster/etcd.c) against a real etcd: every call,
transactions both ways, leases that expire, watches (tests/cluster/etcd_live.c)."""
import subprocess

from cluster_lab import ETCD_LIVE


def test_etcd_client_against_a_real_etcd(etcd):
    r = subprocess.run([ETCD_LIVE, etcd.url], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all passed" in r.stdout
