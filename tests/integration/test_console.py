"""The web console (docs/console.md) in a real browser: Debian's chromium, headless,
driven by python3-selenium through chromium-driver, against a cluster on loopback
(cluster_lab.py). The browser trusts the cluster's CA (an NSS database in its own HOME,
made with certutil), not --ignore-certificate-errors. It runs with --no-sandbox: the
tests run as root, and chromium refuses to start its sandbox as root.

Screenshots of each view go to the test's tmp_path/screenshots."""
import http.client
import json
import os
import shutil
import ssl
import subprocess

import pytest

from cluster_lab import create_on, etcd_get, etcd_put, js, ok, running_on, vms, wait_until
from godwit_vm import GODWIT

HOSTILE = "<img src=x onerror=alert(1)>"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

try:
    from selenium import webdriver
except ImportError:  # the browser fixture says what is missing
    webdriver = None


def request(port, method, path, body=None, headers=None, cert=None, pki=None):
    """(status, headers, parsed body) of one HTTPS request to a manager; no client
    certificate unless cert names one of pki's."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    try:
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        conn.request(method, path, body=data, headers=headers or {})
        r = conn.getresponse()
        raw = r.read()
        ctype = r.getheader("Content-Type", "")
        parsed = json.loads(raw) if raw and ctype == "application/json" else raw
        return r.status, r, parsed
    finally:
        conn.close()


def console_token(lab):
    r = lab.cluster("console-token")
    assert r.returncode == 0, r.stderr
    assert "console token" in r.stderr and "valid until" in r.stderr, r.stderr
    return r.stdout.strip()


@pytest.fixture
def browser(lab, tmp_path):
    """A headless chromium that trusts the lab's CA, quit at the end. Its log (console
    messages) is kept for the test to read."""
    for tool in (CHROMIUM, CHROMEDRIVER, shutil.which("certutil")):
        if not webdriver or not tool or not os.access(tool, os.X_OK):
            pytest.fail("chromium, chromium-driver, python3-selenium and libnss3-tools are "
                        "needed (make deps)")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.remote.remote_connection import RemoteConnection
    RemoteConnection.set_timeout(120)  # every command to the driver, bounded
    home = tmp_path / "browser-home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True,
                   capture_output=True, timeout=30)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "godwit-ca",
                    "-i", str(lab.pki / "ca.crt")], check=True, capture_output=True,
                   timeout=30)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,800", f"--user-data-dir={home / 'profile'}",
              "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    env = dict(os.environ, HOME=str(home))
    service = Service(CHROMEDRIVER, log_path=str(tmp_path / "chromedriver.log"), env=env)
    driver = webdriver.Chrome(service=service, options=opts)
    try:
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(30)
        driver.shots = tmp_path / "screenshots"
        driver.shots.mkdir()
        yield driver
    finally:
        driver.quit()


def errors(driver):
    """The browser's console messages at level SEVERE since the last call, but for the
    browser's own note of a 503: the manager answers that while etcd does not answer it
    (on a loaded machine etcd can stall past its timeout; seen once in CI), and the page
    says "no answer" and polls again (console.js, poll()); the tests' later waits see it
    come back. Any other status, and every script error, counts."""
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and not (
        e.get("source") == "network" and e["message"].endswith(
            "the server responded with a status of 503 (Service Unavailable)"))]


def shot(driver, name):
    driver.save_screenshot(str(driver.shots / f"{name}.png"))


def page(driver, script, *args):
    return driver.execute_script(script, *args)


def log_in(driver, manager, token):
    driver.get(f"{manager.url}/console/")
    wait_until("the login form", lambda: page(
        driver, "return !document.getElementById('login-view').hidden"), timeout=30)
    driver.find_element("id", "token").send_keys(token)
    driver.find_element("css selector", "#login-form button[type=submit]").click()
    wait_until("the dashboard", lambda: page(driver, """
        return !document.getElementById('dash').hidden &&
               document.querySelectorAll('#hosts .host').length > 0"""), timeout=30)


def host_card(driver, name):
    """What the page shows of a host: its name, state, VM chips, button."""
    return page(driver, """
        for (const e of document.querySelectorAll('#hosts .host'))
          if (e.querySelector('.host-name').textContent === arguments[0])
            return {state: e.querySelector('.badge').textContent,
                    vms: Array.from(e.querySelectorAll('.chip'), c => c.textContent),
                    button: e.querySelector('.maint-button').textContent};
        return null;""", name)


def test_console_refuses_strangers_and_shows_hostile_names_as_text(lab, browser, tmp_path):
    lab.agent("host-a")
    m = lab.manager("m1")
    pki = lab.pki
    # The page itself holds no data and loads without credentials, locked down.
    status, r, body = request(m.port, "GET", "/console/", pki=pki)
    assert status == 200 and r.getheader("Content-Type").startswith("text/html")
    assert "script-src 'self'" in r.getheader("Content-Security-Policy")
    assert b"host-a" not in body
    # No data and no action without the certificate or a session.
    before = etcd_get(lab.etcd.url, "/godwit/", prefix=True)
    for method, path, b in [("GET", "/hosts", None), ("GET", "/vms", None),
                            ("GET", "/tasks", None), ("GET", "/events", None),
                            ("GET", "/limits", None), ("GET", "/vms/x", None),
                            ("GET", "/tasks/t1", None), ("GET", "/favicon.ico", None),
                            ("POST", "/hosts/host-a/maintenance", {"action": "enter"}),
                            ("POST", "/vms", {"name": "x"}), ("DELETE", "/vms/x", None),
                            ("POST", "/vms/x/migrate", {}), ("POST", "/tasks/t1/cancel", None),
                            ("PUT", "/limits", {"per_host": 1}),
                            ("POST", "/console/tokens", {}), ("DELETE", "/console/tokens", None),
                            ("POST", "/hosts/host-a/maintenance", "{not json")]:
        status, _, reply = request(m.port, method, path, b, pki=pki)
        assert status == 401, (method, path, status, reply)
        assert set(reply) == {"error"}, reply
    assert etcd_get(lab.etcd.url, "/godwit/", prefix=True).keys() == before.keys()
    # A certificate of another CA still fails the handshake.
    other = tmp_path / "other"
    subprocess.run([GODWIT, "cluster", "init", "--dir", str(other)], check=True,
                   capture_output=True, timeout=30)
    (other / "ca.crt").unlink()
    (other / "ca.crt").symlink_to(pki / "ca.crt")  # trusts our server, has its own cert
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        request(m.port, "GET", "/hosts", cert="client", pki=other)
    assert request(m.port, "GET", "/console/session", pki=pki)[2] == {"auth": None}
    # Logins: a token godwit cluster console-token made, from the page (its header).
    page_hdr = {"X-Godwit-Console": "1", "Content-Type": "application/json"}
    token = console_token(lab)
    for t in ("0" * 64, "nonsense", token.upper()):
        assert request(m.port, "POST", "/console/login", {"token": t}, page_hdr,
                       pki=pki)[0] == 401
    assert request(m.port, "POST", "/console/login", {"token": token},
                   {"Content-Type": "application/json"}, pki=pki)[0] == 403
    status, r, reply = request(m.port, "POST", "/console/login", {"token": token}, page_hdr,
                               pki=pki)
    assert status == 200 and reply["auth"] == "session", reply
    cookie = r.getheader("Set-Cookie")
    for attr in ("__Host-godwit_session=", "Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert attr in cookie, cookie
    jar = {"Cookie": cookie.split(";")[0]}
    # Tokens and sessions are in etcd only as hashes.
    stored = etcd_get(lab.etcd.url, "/godwit-console/", prefix=True)
    assert not any(token in k + v or jar["Cookie"].split("=")[1] in k + v
                   for k, v in stored.items()), stored
    assert request(m.port, "GET", "/hosts", None, {**jar, **page_hdr}, pki=pki)[0] == 200
    # The cookie alone is not enough (CSRF): the page's header, the page's origin.
    assert request(m.port, "GET", "/hosts", None, jar, pki=pki)[0] == 403
    assert request(m.port, "POST", "/hosts/host-a/maintenance", {"action": "enter"},
                   {**jar, **page_hdr, "Origin": "https://evil.example"}, pki=pki)[0] == 403
    # A session cannot make itself a lasting token.
    assert request(m.port, "POST", "/console/tokens", {}, {**jar, **page_hdr}, pki=pki)[0] == 403
    assert "/godwit/maintenance/host-a" not in etcd_get(lab.etcd.url, "/godwit/", prefix=True)
    assert request(m.port, "POST", "/console/logout", None, {**jar, **page_hdr}, pki=pki)[0] == 204
    assert request(m.port, "GET", "/hosts", None, {**jar, **page_hdr}, pki=pki)[0] == 401

    # The browser: login page, dashboard, no error in its console.
    browser.get(f"{m.url}/console/")
    wait_until("the login form", lambda: page(
        browser, "return !document.getElementById('login-view').hidden"), timeout=30)
    shot(browser, "login")
    log_in(browser, m, token)
    wait_until("host-a shown up", lambda: (host_card(browser, "host-a") or {}).get("state") == "up",
               timeout=30)
    assert errors(browser) == []
    shot(browser, "dashboard")

    # Names the API refuses can still reach etcd (by hand, an older or hostile writer):
    # the page shows them as text and runs nothing.
    status, _, reply = request(m.port, "POST", "/vms", {"name": HOSTILE, "kernel": "/k",
                                                        "memory": 1 << 26},
                               {"Content-Type": "application/json"}, cert="client", pki=pki)
    assert status == 400 and "name" in reply["error"], reply
    etcd_put(lab.etcd.url, f"/godwit/hosts/{HOSTILE}",
             json.dumps({"name": HOSTILE, "url": "https://192.0.2.9:7401", "cpus": 2,
                         "memory": 1 << 30}))
    etcd_put(lab.etcd.url, f"/godwit/maintenance/{HOSTILE}",
             json.dumps({"state": "in", "stuck": {"vm1": HOSTILE}}))
    etcd_put(lab.etcd.url, "/godwit-events/9999999999999-1-1",
             json.dumps({"time_ms": 1700000000000, "message": f"{HOSTILE} said hello"}))
    wait_until("the hostile host shown", lambda: host_card(browser, HOSTILE), timeout=30)
    card = host_card(browser, HOSTILE)
    assert card["state"] == "in maintenance", card
    shown = page(browser, """
        return {imgs: document.querySelectorAll('img').length,
                stuck: Array.from(document.querySelectorAll('.stuck li'), e => e.textContent),
                events: Array.from(document.querySelectorAll('#events span'),
                                   e => e.textContent)};""")
    assert shown["imgs"] == 0, shown
    assert f"vm1 cannot leave: {HOSTILE}" in shown["stuck"], shown
    assert f"{HOSTILE} said hello" in shown["events"], shown
    with pytest.raises(Exception, match="no such alert"):
        browser.switch_to.alert.text
    assert errors(browser) == []
    shot(browser, "hostile-names")


def moves_seen(driver):
    return page(driver, "return window.__moves")


@pytest.mark.kvm
def test_console_empties_a_host_and_moves_and_cancels_from_the_page(lab, browser):
    for h in ("host-a", "host-b", "host-c"):
        lab.agent(h)
    m = lab.manager("m1")
    names = [f"vm{i}" for i in range(4)]
    # 32 MiB of random bytes, rewritten at 2 MB/s: moves at a few MB/s take seconds.
    create_on(lab, "host-a", ["host-b", "host-c"], names, memory="128M",
              cmdline="heartbeat 10 ; memtouch 32M 2 random")
    # One move at a time, each held to 8 MiB/s: the 32 MiB take seconds to cross even on
    # an idle machine, where unbounded moves ended between two of the page's polls.
    ok(lab.cluster("limits", "--per-host", "1", "--max-bandwidth", "8M"))
    log_in(browser, m, console_token(lab))
    wait_until("4 VMs on host-a shown", lambda: sorted(
        (host_card(browser, "host-a") or {}).get("vms", [])) == names, timeout=30)
    # Every state the moves' table goes through, recorded in the page as it changes.
    page(browser, """
        window.__moves = [];
        const last = new Map();
        const rec = () => {
          for (const tr of document.querySelectorAll('#moves tbody tr')) {
            const m = {task: tr.dataset.task, vm: tr.querySelector('.vm').textContent,
                       phase: tr.querySelector('.phase').textContent,
                       pct: Number(tr.querySelector('.bar').getAttribute('aria-valuenow'))};
            const sig = JSON.stringify(m);
            if (last.get(m.task) !== sig) {
              last.set(m.task, sig);
              window.__moves.push(m);
            }
          }
        };
        new MutationObserver(rec).observe(document.getElementById('moves'),
            {subtree: true, childList: true, attributes: true, characterData: true});""")

    # Maintenance of host-a, by clicking its button and the confirmation.
    browser.find_element("css selector", '#hosts .host[data-host="host-a"] .maint-button').click()
    wait_until("the confirmation", lambda: page(
        browser, "return document.getElementById('confirm-dialog').open"), timeout=10)
    browser.find_element("id", "confirm-go").click()
    wait_until("a move shown", lambda: moves_seen(browser), timeout=60)
    shot(browser, "maintenance-moves")
    wait_until("host-a empty and in maintenance on the page", lambda: host_card(
        browser, "host-a") == {"state": "in maintenance", "vms": [], "button": "Exit maintenance"},
        timeout=300)
    hosts = {h["name"]: h for h in js(lab, "hosts")["hosts"]}
    assert hosts["host-a"]["state"] == "in maintenance" and hosts["host-a"]["vms"] == 0
    seen = moves_seen(browser)
    # One at a time (limit 1): the page showed the queue and moves under way.
    assert len({s["vm"] for s in seen}) >= 2, seen
    assert "queued" in {s["phase"] for s in seen}, seen
    assert {"starting", "migrating"} & {s["phase"] for s in seen}, seen
    assert all(v["host"] in ("host-b", "host-c") for v in vms(lab).values())

    # host-a back in service; a move there, slowed by its bandwidth limit, from the
    # migrate dialog: its bar grows while the page polls.
    browser.find_element("css selector", '#hosts .host[data-host="host-a"] .maint-button').click()
    wait_until("host-a up on the page",
               lambda: (host_card(browser, "host-a") or {}).get("state") == "up", timeout=30)

    def migrate_from_page(vm, mbps):
        browser.find_element("css selector", f'#vms tr[data-vm="{vm}"] .migrate-button').click()
        wait_until("the migrate dialog", lambda: page(
            browser, "return document.getElementById('migrate-dialog').open"), timeout=10)
        assert page(browser, """const s = document.getElementById('migrate-to');
                                s.value = 'host-a'; return s.value;""") == "host-a"
        browser.find_element("id", "migrate-bw").send_keys(str(mbps))
        shot(browser, "migrate-dialog")
        browser.find_element("id", "migrate-go").click()

    def bar_of(vm):
        return page(browser, """
            for (const tr of document.querySelectorAll('#moves tbody tr'))
              if (tr.querySelector('.vm').textContent === arguments[0])
                return {task: tr.dataset.task, phase: tr.querySelector('.phase').textContent,
                        pct: Number(tr.querySelector('.bar').getAttribute('aria-valuenow')),
                        rate: tr.querySelector('.rate').textContent};
            return null;""", vm)

    # 4 MB/s: the 32 MiB take 8 s or more, several of the page's polls even when the
    # leader's progress reads come late (at 8 MB/s one run of ten, a core busy, saw the
    # move end before its bar had grown).
    migrate_from_page("vm0", 4)
    first = wait_until("vm0's bar above 0", lambda: (
        (b := bar_of("vm0")) and b["phase"] == "migrating" and b["pct"] > 0 and b), timeout=120)
    wait_until("vm0's bar grows, its MB/s shown", lambda: (
        (b := bar_of("vm0")) and b["pct"] > first["pct"] and b["rate"]), timeout=120)
    page(browser, "window.scrollTo(0, 0);")
    shot(browser, "move-progress")
    wait_until("vm0 runs on host-a", lambda: running_on(lab, "vm0", "host-a"), timeout=180)

    # A slow move cancelled from the page: the VM stays where it was.
    src = vms(lab)["vm1"]["host"]
    migrate_from_page("vm1", 2)
    wait_until("vm1 migrating", lambda: (
        (b := bar_of("vm1")) and b["phase"] == "migrating" and b["pct"] > 0), timeout=120)
    task = bar_of("vm1")["task"]
    browser.find_element("css selector", f'#moves tr[data-task="{task}"] .cancel-button').click()
    wait_until("the move cancelled", lambda: any(
        t["id"] == task and t["phase"] == "cancelled" for t in js(lab, "tasks")["history"]),
        timeout=120)
    wait_until("vm1 runs where it was", lambda: running_on(lab, "vm1", src), timeout=60)
    wait_until("the page shows it ended", lambda: page(browser, """
        return Array.from(document.querySelectorAll('#ended tbody tr'),
                          tr => tr.children[3].textContent).includes('cancelled');"""),
               timeout=30)
    assert errors(browser) == []
