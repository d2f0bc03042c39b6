"""One live migration of the test guest, by godwit or by QEMU, measured the same way.

Both VMMs: the source boots build/guest/testguest.elf with the case's command line,
warms up (heartbeat running, every memtouch vCPU past pass 2), a destination starts,
the migration runs (loopback TCP, or the slow link between two namespaces), and the
run returns one record (a dict): what the VMM reports, what the guest saw, what the
processes cost. Every process is stopped by PID in a finally block.
"""
import json
import os
import random
import re
import socket
import subprocess
import time

import procmon
from qmp import QMP, QMPError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GODWIT = os.environ.get("GODWIT", os.path.join(ROOT, "build", "godwit"))
TESTGUEST = os.environ.get("GODWIT_TESTGUEST",
                           os.path.join(ROOT, "build", "guest", "testguest.elf"))
QEMU = os.environ.get("QEMU", "qemu-system-x86_64")
QEMU_UNLIMITED_BW = 1 << 40  # bytes/s: "unlimited" (QEMU's default is 128 MiB/s)

HB = re.compile(r"^hb (\d+) (\d+)$")
SIZE = re.compile(r"^memtouch (\d+)([KMG])\b")
BAD = re.compile(r"memtouch: ERROR|memtouch: pass \d+ FAILED|testguest: exception|testguest: error")

# QEMU migration capabilities the benchmark can use (the variant names are reported).
# dirty-ring: KVM's dirty ring instead of its dirty bitmap (-accel kvm,dirty-ring-size).
QEMU_VARIANTS = {
    "plain": {"multifd": False, "auto-converge": False},
    "multifd": {"multifd": True, "auto-converge": False},
    "auto-converge": {"multifd": False, "auto-converge": True},
    "multifd+auto-converge": {"multifd": True, "auto-converge": True},
    "multifd+auto-converge+dirty-ring": {"multifd": True, "auto-converge": True,
                                         "dirty-ring": True},
    # multifd-compression=zstd: QEMU's answer to godwit's LZ4 (format 1.2) on slow links.
    "multifd+zstd+auto-converge": {"multifd": True, "auto-converge": True, "zstd": True},
}
NOT_CAPABILITIES = ("dirty-ring", "zstd")


def make_pki(directory, host):
    """A CA and one certificate each for the destination (server) and the source (client),
    for `host`, with the openssl CLI: the files QEMU's tls-creds-x509 dir wants (ca-cert,
    server-cert/key, client-cert/key), which godwit's --tls-* options take as well."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=bench-ca", "-keyout", "ca-key.pem",
            "-out", "ca-cert.pem")
    # Without dh-params.pem QEMU's server generates 2048-bit DH parameters as it starts
    # (seconds; on a loaded host past the QMP socket's 10 s): RFC 7919's group instead.
    openssl("genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048",
            "-out", "dh-params.pem")
    for side in ("server", "client"):
        openssl("req", *ec, "-subj", f"/CN=bench-{side}", "-keyout", f"{side}-key.pem",
                "-out", f"{side}.csr")
        with open(os.path.join(directory, f"{side}.ext"), "w") as f:
            f.write(f"subjectAltName=IP:{host}\nextendedKeyUsage=serverAuth,clientAuth\n")
        openssl("x509", "-req", "-in", f"{side}.csr", "-CA", "ca-cert.pem", "-CAkey",
                "ca-key.pem", "-CAcreateserial", "-days", "2", "-extfile", f"{side}.ext",
                "-out", f"{side}-cert.pem")
    return directory
DIRTY_RING_SIZE = 4096  # entries per vCPU


class RunError(Exception):
    """The run could not be measured (the guest did not boot, a VMM did not start...)."""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(pred, timeout, what, procs=(), step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        for p in procs:
            if not p.alive():
                raise RunError(f"{p.name} exited ({p.exit_code}) while waiting for {what}: "
                               f"{p.stderr()[-500:]}")
        time.sleep(step)
    raise RunError(f"timed out after {timeout}s waiting for {what}")


def beats(lines):
    out = []
    for t, text in lines:
        m = HB.match(text)
        if m:
            out.append((t, int(m.group(1)), int(m.group(2))))
    return out


def console_figures(src, dst, period_ms, t0, t1):
    """Guest-observed figures from the two console tails (host time each line was first
    complete in its file: procmon.ConsoleTail, bench/stamper.c).

    pause_ms: the largest host-time gap between consecutive heartbeat lines among the
    last three completed on the source and the first three on the destination, minus
    the period (the switchover as the guest's output shows it); pause_guest_ms: the
    same in the guest's own clock (the NS field); max_stall_ms: the largest gap between
    consecutive heartbeat lines (source then destination) from the start of the
    migration to 1 s after its end or to the destination's third beat if that is later
    (a destination that starts the guest over a second after its VMM reported the end
    still shows its pause here), minus the period (throttling stalls included);
    move_ms: from t0 (the migrate command) to the first heartbeat on the destination."""
    src_lines = list(src.lines)
    dst_lines = list(dst.lines)
    if src.partial and dst_lines:  # a line the pause cut in two goes on at the destination
        t, text = dst_lines[0]
        dst_lines[0] = (t, src.partial.decode(errors="replace") + text)
    bs, bd = beats(src_lines), beats(dst_lines)
    out = {"pause_ms": None, "pause_guest_ms": None, "hb_seq_ok": None, "max_stall_ms": None,
           "move_ms": None}
    if bs and bd:
        # The beats around the switchover: the largest gap among them, in host time and in
        # guest time. (A line cut in two by the pause carries the source's guest time and
        # the destination's arrival time, so the two gaps can fall on different pairs.)
        near = bs[-3:] + bd[:3]
        pairs = list(zip(near, near[1:]))
        out["pause_ms"] = round(max(b[0] - a[0] for a, b in pairs) * 1000 - period_ms, 1)
        out["pause_guest_ms"] = round(max(b[2] - a[2] for a, b in pairs) / 1e6 - period_ms, 1)
        out["hb_seq_ok"] = bd[0][1] == bs[-1][1] + 1
        # The same clock for both VMMs: from the migrate command to the guest's first line
        # on the destination (QEMU's total-time ends before its destination has loaded).
        out["move_ms"] = round((bd[0][0] - t0) * 1000)
    end = max(t1 + 1.0, bd[2][0] if len(bd) > 2 else 0)
    window = [x for x in bs + bd if t0 - 0.001 <= x[0] <= end]
    gaps = [(y[0] - x[0]) * 1000 for x, y in zip(window, window[1:])]
    if gaps:
        out["max_stall_ms"] = round(max(gaps) - period_ms, 1)
    return out


def memtouch_sizes(cmdline):
    """{vCPU: bytes a memtouch pass writes}: the test guest runs the command line's
    ;-separated commands on vCPU 0, 1, ... in order."""
    out = {}
    for cpu, cmd in enumerate(c.strip() for c in cmdline.split(";")):
        m = SIZE.match(cmd)
        if m:
            out[cpu] = int(m.group(1)) << {"K": 10, "M": 20, "G": 30}[m.group(2)]
    return out


def memtouch_figures(src, dst, cmdline, t0):
    """The guest's progress across the move, from its memtouch lines (one at the end of a
    pass, at most every 250 ms; host arrival times; the pass count goes on at the
    destination). mt_move_pps: the passes per second of all memtouch vCPUs together
    from each one's last line before the migrate command (t0) to its first on the
    destination after the guest's first heartbeat there: whole passes over a window
    that holds the move and up to a pass or two on either side (mt_window_ms, the
    longest). mt_before_pps: the same from the rates the guest printed on those last
    lines before t0 (its own MB/s of pages passed over since the line before, over
    the pass size). None where a vCPU has no line on either side."""
    sizes = memtouch_sizes(cmdline)
    out = {"mt_move_pps": None, "mt_window_ms": None, "mt_before_pps": None}
    first_dst_hb = next((t for t, text in dst.lines if HB.match(text)), None)
    if not sizes or first_dst_hb is None:
        return out
    move = before = window = 0.0
    for cpu, size in sizes.items():
        pts = {"src": [], "dst": []}
        for side, tail in (("src", src), ("dst", dst)):
            for t, text in tail.lines:
                m = procmon.PASS_LINE.match(text)
                if m and m.group(3) and int(m.group(2)) == cpu:
                    pts[side].append((t, int(m.group(1)), int(m.group(3))))
        a = [p for p in pts["src"] if p[0] <= t0]
        b = [p for p in pts["dst"] if p[0] >= first_dst_hb]
        if not a or not b or b[0][0] <= a[-1][0]:
            return out
        a, b = a[-1], b[0]
        move += (b[1] - a[1]) / (b[0] - a[0])
        before += a[2] * 1e6 / size
        window = max(window, (b[0] - a[0]) * 1000)
    out.update(mt_move_pps=round(move, 3), mt_window_ms=round(window),
               mt_before_pps=round(before, 3))
    return out


class Migration:
    """Shared skeleton; subclasses start the VMM processes and drive the migration."""

    vmm = None

    def __init__(self, case, workdir, downtime_ms, timeout_s, link=None, tls=False):
        self.case = case
        self.tls = tls
        self.wd = workdir
        self.downtime_ms = downtime_ms
        self.timeout_s = timeout_s
        self.link = link
        self.procs = []
        self.src = self.dst = None
        self.src_tail = procmon.ConsoleTail(os.path.join(workdir, "src.console"))
        self.dst_tail = procmon.ConsoleTail(os.path.join(workdir, "dst.console"))
        self.watcher = procmon.ConsoleWatcher([self.src_tail, self.dst_tail], period=0.02)
        self.monitor = procmon.Monitor()
        if link is None:
            self.host = "127.0.0.1"
            self.port = free_port()
        else:
            self.host = link.ip["b"]
            self.port = random.randint(20000, 40000)
        self.pki = make_pki(workdir, self.host) if tls else None

    def tls_args(self, side):
        """godwit's --tls-* options for the source (client) or the destination (server)."""
        if not self.tls:
            return []
        p = os.path.join(self.pki, "client" if side == "src" else "server")
        return ["--tls-cert", f"{p}-cert.pem", "--tls-key", f"{p}-key.pem",
                "--tls-ca", os.path.join(self.pki, "ca-cert.pem")]

    def prefix(self, side):
        return [] if self.link is None else self.link.prefix(side)

    def spawn(self, args, name):
        p = procmon.Proc(args, name, self.wd)
        self.procs.append(p)
        return p

    # --- the run -------------------------------------------------------------------
    def run(self):
        rec = {"case": self.case.name, "vmm": self.vmm, "settings": self.settings(),
               "status": None, "error": None, "tls": self.tls}
        stamper = procmon.ConsoleStamper([self.src_tail.path, self.dst_tail.path], self.wd)
        try:
            self.watcher.start()
            self.monitor.start()
            self.start_source()
            self.monitor.add("src", self.src, self.vmm, self.case.ram_mib * 1024)
            self.warm_up()
            self.start_destination()
            self.monitor.add("dst", self.dst, self.vmm, self.case.ram_mib * 1024)
            self.watcher.period = 0.001
            cpu0 = {k: self.monitor.sample_cpu(k) for k in ("src", "dst")}
            self.monitor.window = True
            t0 = time.monotonic()
            info = self.migrate()
            t1 = time.monotonic()
            cpu1 = {"dst": self.monitor.sample_cpu("dst")}
            if self.vmm == "godwit" and info["status"] == "completed":
                # The source exits once the VM runs on the destination: its vCPU threads'
                # time is the first sample after they stopped (its last heartbeat line).
                self.src.wait(10)
                self.watcher.sync()
                last_hb = self.src_tail.last_hb_at
                cpu1["src"] = (self.monitor.cpu_after("src", last_hb + 0.003) if last_hb
                               else self.monitor.sample_cpu("src"))
            else:
                cpu1["src"] = self.monitor.sample_cpu("src")
            self.monitor.window = False
            rec.update(info)
            rec["wall_ms"] = round((t1 - t0) * 1000)
            if info["status"] == "completed":
                rec.update(self.check_destination())
            else:
                time.sleep(1.0)  # the source's heartbeat after the failure, for the stall
            self.watcher.sync()
            self.watcher.period = 0.02
            rec.update(console_figures(self.src_tail, self.dst_tail, self.case.period_ms, t0, t1))
            rec.update(memtouch_figures(self.src_tail, self.dst_tail, self.case.cmdline, t0))
            rec.update(self.cpu_figures(cpu0, cpu1))
            for side in ("src", "dst"):
                kib = self.monitor.peak_mem.get(side)
                rec[f"{side}_mem_mib"] = None if kib is None else round(kib / 1024, 1)
        except (RunError, QMPError, OSError, subprocess.SubprocessError, ValueError,
                KeyError, TypeError) as e:
            rec["status"] = "error"
            rec["error"] = f"{type(e).__name__}: {e}"
        finally:
            stamper.stop()
            self.watcher.stop()
            self.monitor.stop()
            if stamper.warning():
                rec["stamper"] = stamper.warning()
            for p in reversed(self.procs):
                p.stop()
            self.cleanup()
        rec["src_console_tail"] = self.src_tail.text()[-3000:]
        rec["dst_console_tail"] = self.dst_tail.text()[-3000:]
        rec["stderr_tail"] = {p.name: p.stderr()[-1500:] for p in self.procs}
        return rec

    def cleanup(self):
        pass

    def warm_up(self):
        case = self.case
        src = self.src_tail
        wait_until(lambda: src.hb_count >= 50, case.boot_timeout_s,
                   "the source's heartbeat", [self.src])
        need = set(case.memtouch_vcpus)
        wait_until(lambda: need <= {c for c, n in src.passes.items() if n >= 2},
                   case.warm_timeout_s, "memtouch pass 2 on every memtouch vCPU", [self.src])

    def check_destination(self):
        """The guest runs on at the destination: heartbeats continue, every memtouch vCPU
        finishes two passes there, and no error line appears. Two: the first can end
        before the destination's first heartbeat line, and memtouch_figures needs a pass
        line after it (a QEMU run of a paced case once had none: no progress figure)."""
        case = self.case
        src_pass = dict(self.src_tail.passes)
        dst = self.dst_tail
        want_beats = max(20, int(300 / case.period_ms))
        out = {"dst_ok": False, "dst_check": None}
        try:
            wait_until(lambda: dst.hb_count >= want_beats,
                       case.check_timeout_s, "heartbeats on the destination", [self.dst])
            wait_until(lambda: all(dst.passes.get(c, 0) > src_pass.get(c, 0) + 1
                                   for c in case.memtouch_vcpus),
                       case.check_timeout_s, "two memtouch passes on the destination",
                       [self.dst])
            out["dst_ok"] = True
        except RunError as e:
            out["dst_check"] = str(e)
        self.watcher.sync()
        bad = [t for _, t in self.dst_tail.lines if BAD.search(t)]
        bad += [t for _, t in self.src_tail.lines if BAD.search(t)]
        out["guest_errors"] = len(bad)
        if bad:
            out["dst_ok"] = False
            out["dst_check"] = f"guest error lines: {bad[:3]}"
        return out

    def cpu_figures(self, cpu0, cpu1):
        """CPU seconds in the migration window, whole process and without vCPU threads."""
        out = {}
        for side, proc in (("src", self.src), ("dst", self.dst)):
            a, b = cpu0.get(side), cpu1.get(side)
            if a is None or b is None:
                out[f"{side}_cpu_s"] = out[f"{side}_vmm_cpu_s"] = None
                continue
            total_end = b[0]
            if proc.exit_code is not None and proc.cpu_at_exit() is not None:
                total_end = max(total_end, proc.cpu_at_exit())
            total = max(0.0, total_end - a[0])
            vcpu = max(0.0, b[1] - a[1])
            out[f"{side}_cpu_s"] = round(total, 3)
            out[f"{side}_vmm_cpu_s"] = round(max(0.0, total - vcpu), 3)
        return out


class GodwitMigration(Migration):
    vmm = "godwit"

    def settings(self):
        return (f"downtime {self.downtime_ms} ms, bandwidth unlimited, timeout {self.timeout_s} s"
                + (", TLS 1.3 x509 (OpenSSL)" if self.tls else ""))

    def start_source(self):
        c = self.case
        self.src = self.spawn(self.prefix("a") + [
            GODWIT, "run", "--kernel", TESTGUEST, "--memory", c.ram, "--cpus", str(c.cpus),
            "--cmdline", c.cmdline, "--api", os.path.join(self.wd, "src.sock"),
            "--console", f"file:{self.src_tail.path}"], "godwit-src")

    def start_destination(self):
        self.dst = self.spawn(self.prefix("b") + [
            GODWIT, "receive", "--listen", f"tcp:{self.host}:{self.port}",
            "--api", os.path.join(self.wd, "dst.sock"),
            "--console", f"file:{self.dst_tail.path}", *self.tls_args("dst")], "godwit-dst")
        wait_until(lambda: "waiting" in self.dst.stderr(), 15, "godwit receive to listen",
                   [self.dst])

    def migrate(self):
        args = [GODWIT, "migrate", "--api", os.path.join(self.wd, "src.sock"),
                "--to", f"tcp:{self.host}:{self.port}", "--json",
                "--downtime-ms", str(self.downtime_ms), "--timeout", str(self.timeout_s),
                *self.tls_args("src")]
        res = subprocess.run(args, capture_output=True, text=True, timeout=self.timeout_s + 60,
                             stdin=subprocess.DEVNULL)
        lines = [l for l in res.stdout.strip().splitlines() if l.startswith("{")]
        if not lines:
            raise RunError(f"godwit migrate printed no JSON (exit {res.returncode}): "
                           f"{res.stderr[-500:]}")
        o = json.loads(lines[-1])
        info = {"status": o.get("status"), "error": o.get("error"),
                "total_ms": o.get("total_ms"), "downtime_ms": o.get("downtime_ms"),
                "bytes": o.get("bytes_sent"), "rounds": o.get("rounds"),
                "guest_bytes": None if o.get("pages_sent") is None else o["pages_sent"] * 4096,
                "throttle_pct": o.get("max_throttle_pct", o.get("throttle_pct")),
                "vmm_report": o}
        if info["status"] != "completed":
            info["progress"] = {"elapsed_s": round((o.get("total_ms") or 0) / 1000, 1),
                                "rounds": o.get("rounds"), "bytes": o.get("bytes_sent"),
                                "remaining_bytes": o.get("remaining_bytes"),
                                "throttle_pct": info["throttle_pct"]}
            if info["status"] == "failed" and "did not converge" in str(o.get("error", "")):
                info["status"] = "not finished"
        return info


class QemuMigration(Migration):
    vmm = "qemu"

    def __init__(self, case, workdir, downtime_ms, timeout_s, link=None, variant=None,
                 multifd_channels=None, tls=False):
        super().__init__(case, workdir, downtime_ms, timeout_s, link, tls=tls)
        self.variant = variant or case.qemu_variant
        self.caps = {k: on for k, on in QEMU_VARIANTS[self.variant].items()
                     if k not in NOT_CAPABILITIES}
        self.dirty_ring = QEMU_VARIANTS[self.variant].get("dirty-ring", False)
        self.zstd = QEMU_VARIANTS[self.variant].get("zstd", False)
        self.channels = multifd_channels or case.multifd_channels
        self.qmp_src = self.qmp_dst = None

    def settings(self):
        s = "no capabilities" if self.variant == "plain" else self.variant
        if self.caps["multifd"]:
            s += f" ({self.channels} channels)"
        if self.dirty_ring:
            s += f", dirty-ring-size={DIRTY_RING_SIZE}"
        if self.zstd:
            s += ", multifd-compression=zstd"
        if self.tls:
            s += ", TLS x509 (tls-creds-x509, GnuTLS)"
        return (f"{s}; downtime-limit {self.downtime_ms} ms, max-bandwidth "
                f"{QEMU_UNLIMITED_BW} B/s, cancelled after {self.timeout_s} s")

    def args(self, side, console):
        c = self.case
        return self.prefix("a" if side == "src" else "b") + [
            QEMU, "-M", "pc", "-accel",
            f"kvm,dirty-ring-size={DIRTY_RING_SIZE}" if self.dirty_ring else "kvm",
            "-cpu", "host,-arch-capabilities",
            "-m", c.ram, "-smp", str(c.cpus), "-name", f"bench-{side},debug-threads=on",
            "-kernel", TESTGUEST, "-append", c.cmdline, "-display", "none", "-nodefaults",
            "-serial", f"file:{console}", "-no-reboot",
            "-qmp", f"unix:{os.path.join(self.wd, side + '.qmp')},server=on,wait=off"] + (
            ["-object", f"tls-creds-x509,id=tls0,dir={self.pki},verify-peer=on,endpoint="
             + ("client" if side == "src" else "server")] if self.tls else [])

    def start_source(self):
        self.src = self.spawn(self.args("src", self.src_tail.path), "qemu-src")

    def start_destination(self):
        self.dst = self.spawn(self.args("dst", self.dst_tail.path) + ["-incoming", "defer"],
                              "qemu-dst")
        self.qmp_src = QMP(os.path.join(self.wd, "src.qmp"))
        self.qmp_dst = QMP(os.path.join(self.wd, "dst.qmp"))
        caps = [{"capability": k, "state": v} for k, v in self.caps.items()]
        self.qmp_src.command("migrate-set-capabilities", capabilities=caps)
        self.qmp_dst.command("migrate-set-capabilities",
                             capabilities=[{"capability": "multifd",
                                            "state": self.caps["multifd"]}])
        params = {"downtime-limit": self.downtime_ms, "max-bandwidth": QEMU_UNLIMITED_BW}
        if self.tls:
            params.update({"tls-creds": "tls0", "tls-hostname": self.host})
            self.qmp_dst.command("migrate-set-parameters", **{"tls-creds": "tls0"})
        if self.caps["multifd"]:
            params["multifd-channels"] = self.channels
            dst_params = {"multifd-channels": self.channels}
            if self.zstd:
                params["multifd-compression"] = dst_params["multifd-compression"] = "zstd"
            self.qmp_dst.command("migrate-set-parameters", **dst_params)
        self.qmp_src.command("migrate-set-parameters", **params)
        self.qmp_dst.command("migrate-incoming", uri=f"tcp:{self.host}:{self.port}")

    def migrate(self):
        q = self.qmp_src
        q.command("migrate", uri=f"tcp:{self.host}:{self.port}")
        deadline = time.monotonic() + self.timeout_s
        last = {}
        status = None
        max_throttle = 0
        while time.monotonic() < deadline:
            q.wait_event("MIGRATION", 0.05)
            last = q.command("query-migrate") or {}
            status = last.get("status")
            max_throttle = max(max_throttle, last.get("cpu-throttle-percentage", 0))
            if status in ("completed", "failed", "cancelled"):
                break
            if not self.src.alive():
                raise RunError(f"QEMU source exited ({self.src.exit_code}) during migration")
        if status == "completed":
            last = self.settled(q, last)
        info = self.figures(last)
        info["throttle_pct"] = max_throttle
        if status == "completed":
            info["status"] = "completed"
            return info
        if status in ("failed", "cancelled"):
            info["status"] = "failed"
            info["error"] = last.get("error-desc", status)
        else:
            info["status"] = "not finished"
            info["error"] = f"not completed after {self.timeout_s} s (QEMU status {status})"
            try:
                q.command("migrate_cancel")
                end = time.monotonic() + 15
                while time.monotonic() < end:
                    if (q.command("query-migrate") or {}).get("status") in ("cancelled",
                                                                           "failed"):
                        break
                    time.sleep(0.1)
            except QMPError:
                pass
        ram = last.get("ram", {})
        info["progress"] = {"elapsed_s": round((last.get("total-time") or 0) / 1000, 1),
                            "rounds": ram.get("dirty-sync-count"),
                            "bytes": ram.get("transferred"),
                            "remaining_bytes": ram.get("remaining"),
                            "throttle_pct": max_throttle,
                            "dirty_pages_rate": ram.get("dirty-pages-rate")}
        return info

    @staticmethod
    def settled(q, last):
        """The final query-migrate, once QEMU has filled in its times.

        QEMU 7.2 sets COMPLETED in the migration thread and computes total-time and
        downtime later, in migration_iteration_finish under the BQL, right before it
        sets the run state to postmigrate; a query in between reads both as 0 (fixed
        upstream by computing them first). Waiting for postmigrate closes the window.
        """
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if (q.command("query-status") or {}).get("status") == "postmigrate":
                return q.command("query-migrate") or last
            time.sleep(0.02)
        raise RunError("QEMU source said completed but never reached postmigrate in 10 s")

    @staticmethod
    def figures(q):
        ram = q.get("ram", {})
        return {"total_ms": q.get("total-time"), "downtime_ms": q.get("downtime"),
                "bytes": ram.get("transferred"), "rounds": ram.get("dirty-sync-count"),
                "guest_bytes": ram.get("normal-bytes"), "vmm_report": q}

    def cleanup(self):
        for q in (self.qmp_src, self.qmp_dst):
            if q is not None:
                q.close()
