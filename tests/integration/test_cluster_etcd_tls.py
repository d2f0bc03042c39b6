"""etcd over TLS (docs/cluster.md, "etcd's own TLS"): Debian's etcd serving https:// with
the cluster's node certificate and requiring client certificates of the cluster's CA; the
agent and the manager reach it with --etcd-ca, --etcd-cert and --etcd-key, and a client
without a certificate is refused."""
import subprocess

from cluster_lab import Lab, curl_tls, etcd_get, js, wait_until
from godwit_vm import GODWIT, free_port


def agent_cmd(lab, tmp_path, name, *tls):
    return [GODWIT, "agent", "--etcd", lab.etcd.url, *tls, "--name", name, "--listen",
            f"127.0.0.1:{free_port()}", "--state-dir", str(tmp_path / f"h-{name}"), "--pki",
            str(lab.pki), "--memory", "1G", "--cpus", "2", "--ttl", "4"]


def test_agent_and_manager_use_an_etcd_that_requires_tls(tmp_path):
    lab = Lab(tmp_path, etcd_tls=True)
    try:
        assert lab.etcd.url.startswith("https://")
        # Lab gives both --etcd-ca, --etcd-cert and --etcd-key (the cluster's node files).
        lab.agent("host-a")
        lab.manager("m1")
        wait_until("m1 leads and sees host-a up", lambda: (
            (h := js(lab, "hosts"))["leader"] == "m1"
            and [(x["name"], x["state"]) for x in h["hosts"]] == [("host-a", "up")]))
        assert "/godwit/hosts/host-a" in etcd_get(lab.etcd.url, "/godwit/hosts/host-a",
                                                  tls=lab.pki)

        # etcd refuses a client without a certificate: curl, and an agent given only the CA.
        r = subprocess.run(["curl", "-s", "-m", "5", *curl_tls(lab.pki, cert=None), "-X",
                            "POST", lab.etcd.url + "/v3/kv/range", "-d", '{"key":"AA=="}'],
                           capture_output=True, text=True)
        assert r.returncode != 0 and '"header"' not in r.stdout, r
        r = subprocess.run(agent_cmd(lab, tmp_path, "host-x", "--etcd-ca",
                                     str(lab.pki / "ca.crt")),
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 1, r.stderr
        assert "host-x: cannot register in etcd: etcd at " + lab.etcd.url in r.stderr, r.stderr
        # Without --etcd-ca the system's CAs do not know the cluster's: refused too.
        r = subprocess.run(agent_cmd(lab, tmp_path, "host-y", "--etcd-cert",
                                     str(lab.pki / "node.crt"), "--etcd-key",
                                     str(lab.pki / "node.key")),
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 1 and "cannot register in etcd" in r.stderr, r.stderr
        hosts = etcd_get(lab.etcd.url, "/godwit/hosts/", prefix=True, tls=lab.pki)
        assert set(hosts) == {"/godwit/hosts/host-a"}, hosts
    finally:
        lab.stop()


def test_etcd_tls_options_are_checked(tmp_path):
    lab = Lab(tmp_path)  # plain http:// etcd
    try:
        pki = lab.pki
        for tls, msg in [
            (["--etcd-ca", str(pki / "ca.crt")], "are for https:// etcd URLs"),
        ]:
            r = subprocess.run(agent_cmd(lab, tmp_path, "host-a", *tls), capture_output=True,
                               text=True, timeout=30, stdin=subprocess.DEVNULL)
            assert r.returncode == 1 and msg in r.stderr, r.stderr
        https = lab.etcd.url.replace("http://", "https://")
        for tls, msg in [
            (["--etcd-cert", str(pki / "node.crt")], "--etcd-cert and --etcd-key go together"),
            (["--etcd-ca", str(tmp_path / "nosuch.crt")], "--etcd-ca " + str(tmp_path)),
        ]:
            for kind, extra in (("agent", ["--name", "host-a", "--state-dir",
                                           str(tmp_path / "h")]), ("manager", [])):
                r = subprocess.run([GODWIT, kind, "--etcd", https, *tls, "--listen",
                                    f"127.0.0.1:{free_port()}", "--pki", str(pki), *extra],
                                   capture_output=True, text=True, timeout=30,
                                   stdin=subprocess.DEVNULL)
                assert r.returncode == 1 and msg in r.stderr, (kind, r.stderr)
        for kind in ("agent", "manager"):
            r = subprocess.run([GODWIT, kind, "--help"], capture_output=True, text=True,
                               timeout=10)
            assert r.returncode == 0 and "--etcd-ca F" in r.stdout and "--etcd-key" in r.stdout
    finally:
        lab.stop()
