"""RESULTS.md and the PNG plots from the run records (see docs/bench.md)."""
import datetime
import hashlib
import os
import platform
import re
import statistics
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (record key, column title, format)
TIME_COLS = [
    ("move_ms", "move ms", "{:.0f}"),
    ("total_ms", "total ms (VMM's)", "{:.0f}"),
    ("downtime_ms", "downtime ms (VMM's)", "{:.0f}"),
    ("pause_ms", "guest pause ms", "{:.0f}"),
    ("pause_guest_ms", "pause in guest clock ms", "{:.0f}"),
    ("max_stall_ms", "longest stall ms", "{:.0f}"),
    ("mb", "MB sent", "{:.0f}"),
    ("guest_mb", "guest MB moved", "{:.0f}"),
    ("rounds", "rounds", "{:.0f}"),
    ("throttle_pct", "max throttle %", "{:.0f}"),
]
PROGRESS_COLS = [
    ("mt_move_pps", "memtouch passes/s across the move", "{:.3g}"),
    ("mt_window_ms", "over ms", "{:.0f}"),
    ("mt_before_pps", "memtouch passes/s before", "{:.3g}"),
    ("mt_pct", "% of before", "{:.0f}"),
]
COST_COLS = [
    ("src_cpu_s", "CPU s source", "{:.2f}"),
    ("src_vmm_cpu_s", "of which not vCPU", "{:.2f}"),
    ("dst_cpu_s", "CPU s destination", "{:.2f}"),
    ("dst_vmm_cpu_s", "of which not vCPU", "{:.2f}"),
    ("src_mem_mib", "own memory MiB source", "{:.1f}"),
    ("dst_mem_mib", "own memory MiB destination", "{:.1f}"),
]


def _cmd(*args):
    try:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=20,
                              cwd=ROOT, stdin=subprocess.DEVNULL).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(godwit, qemu, guest):
    info = {}
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            model = m.group(1) if m else ""
        with open("/proc/meminfo") as f:
            mem_kib = int(re.search(r"^MemTotal:\s*(\d+)", f.read(), re.M).group(1))
    except (OSError, AttributeError):
        mem_kib = 0
    kvm = [m for m in ("kvm_pvm", "kvm_intel", "kvm_amd") if os.path.isdir(f"/sys/module/{m}")]
    info["cpu"] = f"{model}, {os.cpu_count()} CPUs"
    info["memory"] = f"{mem_kib / 2**20:.1f} GiB"
    info["kernel"] = f"{platform.system()} {platform.release()}"
    info["kvm"] = ", ".join(kvm) or "unknown"
    commit = _cmd("git", "rev-parse", "--short=12", "HEAD")
    dirty = _cmd("git", "status", "--porcelain", "--", "src", "include", "Makefile")
    info["godwit"] = f"{godwit} at commit {commit or '?'}" + (" + uncommitted changes" if dirty else "")
    qv = _cmd(qemu, "--version").splitlines()
    pkg = _cmd("dpkg-query", "-W", "-f=${Version}", "qemu-system-x86")
    info["qemu"] = (qv[0] if qv else qemu) + (f" (Debian package {pkg})" if pkg else "")
    try:
        with open(guest, "rb") as f:
            info["guest"] = f"{os.path.relpath(guest, ROOT)} (sha256 {hashlib.sha256(f.read()).hexdigest()[:12]})"
    except OSError:
        info["guest"] = guest
    info["python"] = platform.python_version()
    info["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return info


def _value(rec, key):
    if key == "mb":
        return None if rec.get("bytes") is None else rec["bytes"] / 1e6
    if key == "guest_mb":
        return None if rec.get("guest_bytes") is None else rec["guest_bytes"] / 1e6
    return rec.get(key)


def stats(recs, key):
    vals = [v for v in (_value(r, key) for r in recs) if v is not None]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def cell(st, fmt):
    if st is None:
        return "–"
    med, lo, hi = st
    if lo == hi:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(lo)}–{fmt.format(hi)})"


def cells(recs, cols):
    return [cell(stats(recs, k), f) for k, _, f in cols]


def md_table(head, rows):
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(row) + " |" for row in rows])


def series_key(rec):
    key = rec["vmm"] if rec["vmm"] == "godwit" else f"qemu {rec.get('variant', '')}".strip()
    return key + " +tls" if rec.get("tls") else key


def group(records):
    """[(case, series, [records])] in first-seen order."""
    out = {}
    for r in records:
        out.setdefault((r["case"], series_key(r)), []).append(r)
    return [(c, s, rs) for (c, s), rs in out.items()]


def _mb(b):
    return "?" if b is None else f"{b / 1e6:.0f} MB"


def how_far(r):
    p = r.get("progress") or {}
    bits = [] if str(r.get("error", "")).startswith("not completed") else [f"{r['status']}"]
    if r.get("error"):
        bits.append(str(r["error"])[:200])
    if p:
        bits.append(f"after {p.get('elapsed_s')} s: {p.get('rounds')} rounds, "
                    f"{_mb(p.get('bytes'))} sent, {_mb(p.get('remaining_bytes'))} remaining, "
                    f"throttle up to {p.get('throttle_pct')} %")
    return "; ".join(bits)


def write_results(path, records, cases, meta, plots):
    lines = ["# Live migration: godwit vs QEMU 7.2", ""]
    lines += [f"Generated by `make bench` (`bench/bench.py`) on {meta['machine']['date']}. "
              f"{meta['runs']} run(s) per case and VMM{' (BENCH_QUICK: tiny sizes)' if meta['quick'] else ''}. "
              "Each cell: median (min–max) over the runs that completed. "
              "How each figure is measured: `docs/bench.md`.", ""]
    lines += ["## Machine and versions", ""]
    for k, v in meta["machine"].items():
        lines.append(f"- {k}: {v}")
    lines += ["", "## Settings", ""]
    lines += [f"- Downtime limit **{meta['downtime_ms']} ms** for both (godwit `--downtime-ms`, "
              f"QEMU `downtime-limit`); bandwidth unlimited for both (godwit's default; QEMU "
              f"`max-bandwidth` = 2^40 B/s instead of its 128 MiB/s default).",
              f"- A migration not completed after the timeout (godwit's own default, 60 s + 10 s "
              f"per GiB of guest RAM, passed as `--timeout` to godwit; QEMU is cancelled then) "
              f"is reported as not finished, with how far it got.",
              "- Transport: TCP over loopback, except the far-link case (below).",
              "- Guest memory: the dirtying cases write pseudo-random pages (`memtouch ... "
              "random`), which neither VMM's compression shrinks; their `-compressible` twins "
              "memtouch's default pattern, mostly zeros (~130:1 under LZ4). \"MB sent\" is "
              "what crossed the wire, \"guest MB moved\" the non-zero guest pages sent, "
              "4 KiB each (godwit `pages_sent`, QEMU `normal-bytes`).",
              "- QEMU: `qemu-system-x86_64 -M pc -accel kvm -cpu host,-arch-capabilities "
              "-nodefaults -kernel testguest.elf -append ...` (destination: `-incoming defer`, "
              "then `migrate-incoming`); godwit: `godwit run` / `godwit receive` / "
              "`godwit migrate --json`. Both boot the same ELF; godwit auto-converges by itself "
              "(throttle 20 %, +10 % per step, like QEMU's defaults).", ""]
    lines += ["| case | guest RAM | vCPUs | guest command line | QEMU capabilities |",
              "|---|---|---|---|---|"]
    for c in cases:
        link = (f", over a {c.link[1] / 1e9:g} Gbit/s link with {2 * c.link[0]} ms round trip"
                if c.link else "")
        caps = (f"{c.qemu_variant}{f' ({c.multifd_channels} channels)' if 'multifd' in c.qemu_variant else ''}"
                if not meta.get("qemu_variants") else
                f"BENCH_QEMU_VARIANTS={meta['qemu_variants']} (default: {c.qemu_variant})")
        lines.append(f"| {c.name} | {c.ram} | {c.cpus} | `{c.cmdline}`{link} | {caps} |")
    lines += ["", "Why these QEMU capabilities: an idle guest has almost nothing but zero pages "
              "(QEMU detects those in its main migration thread, so multifd buys nothing); a "
              "dirtying guest needs the copy itself to be fast (multifd channels); a guest "
              "dirtying faster than the link never converges without auto-converge; on the far "
              "link several TCP connections (multifd) fill the window a single one cannot. "
              "`BENCH_QEMU_VARIANTS=all` runs every combination to check these choices.", ""]

    lines += ["## Time, pause, traffic", ""]
    groups = group(records)
    rows = []
    for case, series, recs in groups:
        done = [r for r in recs if r["status"] == "completed"]
        ok = [r for r in done if r.get("dst_ok")]
        comp = f"{len(done)}/{len(recs)}" + ("" if len(ok) == len(done) else f" ({len(done) - len(ok)} bad on dst)")
        rows.append([case, series, comp] + cells(done, TIME_COLS))
    lines += md_table(["case", "VMM", "completed"] + [t for _, t, _ in TIME_COLS], rows)
    lines += ["", "## The guest's progress across the move", ""]
    rows = []
    for case, series, recs in groups:
        done = [dict(r, mt_pct=100 * r["mt_move_pps"] / r["mt_before_pps"])
                if r.get("mt_move_pps") is not None and r.get("mt_before_pps") else r
                for r in recs if r["status"] == "completed"]
        if any(r.get("mt_move_pps") is not None for r in done):
            rows.append([case, series] + cells(done, PROGRESS_COLS))
    lines += md_table(["case", "VMM"] + [t for _, t, _ in PROGRESS_COLS], rows)
    lines += ["", "memtouch passes per second (all memtouch vCPUs together), from each one's "
              "last pass line before the migrate command to its first on the destination "
              "after the guest runs there (whole passes: the window holds the move and up to "
              "a pass or two either side, its length in \"over ms\"), against the rate the "
              "guest printed just before. The dirtiers are throttled for the last rounds: "
              "this is how much work the guest still did.", ""]
    lines += ["## Cost", ""]
    rows = [[case, series] + cells([r for r in recs if r["status"] == "completed"], COST_COLS)
            for case, series, recs in groups]
    lines += md_table(["case", "VMM"] + [t for _, t, _ in COST_COLS], rows)
    lines += ["", "CPU: seconds of CPU (user + system) of each VMM process from the start of the "
              "migration to its end; \"not vCPU\" leaves out the vCPU threads (which run the "
              "guest, and also carry KVM's dirty tracking faults), i.e. what the migration itself "
              "costs. Own memory: the peak, over the process's life, of its resident memory "
              "minus the guest RAM it holds.", ""]

    lines += limits_section(meta.get("limits"))
    lines += goals_section(groups)
    other = [r for r in records if r["status"] != "completed"]
    bad_dst = [r for r in records if r["status"] == "completed" and not r.get("dst_ok")]
    if other or bad_dst:
        lines += ["## Runs that did not complete, or left a broken guest", ""]
        for r in other:
            lines.append(f"- {r['case']}, {series_key(r)}, run {r.get('run')}: {how_far(r)}")
        for r in bad_dst:
            lines.append(f"- {r['case']}, {series_key(r)}, run {r.get('run')}: completed, but on "
                         f"the destination: {r.get('dst_check')}")
        lines.append("")
    if meta.get("links"):
        lines += ["## The far link", ""]
        for name, how in meta["links"].items():
            lines.append(f"- {name}: {how}")
        lines += ["- Both namespaces let TCP autotune buffers up to 64 MiB (the link's "
                  "bandwidth-delay product is 18.75 MB at 1 Gbit/s and 150 ms). A VMM that "
                  "sets SO_SNDBUF/SO_RCVBUF itself is held to net.core.wmem_max/rmem_max.",
                  "- Both namespaces allow TCP Fast Open's server side (net.ipv4.tcp_fastopen=3, "
                  "the default is 1: client only), as a host taking migrations over a long "
                  "link would. godwit sends its header and CONFIG in the SYN; QEMU does not "
                  "use Fast Open.", ""]
    if plots:
        lines += ["## Plots", "", "Bars: median; whiskers: min and max; cases a VMM did not "
                  "finish are marked n/f.", ""]
        for title, fname in plots:
            lines += [f"### {title}", "", f"![{title}]({fname})", ""]
    else:
        lines += ["(No plots: python3-matplotlib is not installed; `make bench` installs it as root.)", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def _span(vals):
    return f"{min(vals):.2f}–{max(vals):.2f}" if vals else "?"


def limits_section(lim):
    if not lim:
        return []
    lines = ["## The physical limits, same run", "",
             "| when | loopback TCP GB/s (one stream, 1 MiB sends) | memcpy GB/s (256 MiB) "
             "| memcpy GB/s (4 KiB pieces) |", "|---|---|---|---|"]
    for when in ("before", "after"):
        m = lim.get(when) or {}
        if "error" in m:
            lines.append(f"| {when} the cases | not measured: {m['error']} | | |")
            continue
        lines.append(f"| {when} the cases | {_span(m.get('tcp_gbs', []))} | "
                     f"{_span(m.get('memcpy_gbs', []))} | {_span(m.get('memcpy_4k_gbs', []))} |")
    return lines + ["", "`bench/limits/tcp_bw.c` and `memcpy_bw.c`, built and run by "
                    "`bench/limits.py` (min–max of the passes).", ""]


def _median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def _cpu_per_gib(r):
    if r.get("src_vmm_cpu_s") is None or r.get("dst_vmm_cpu_s") is None or not r.get("guest_bytes"):
        return None
    return (r["src_vmm_cpu_s"] + r["dst_vmm_cpu_s"]) / (r["guest_bytes"] / 2**30)


def goals_section(groups):
    """Issue 17's goals on the incompressible dirtying cases: godwit against the QEMU
    series with the shortest median move (ratios of medians)."""
    by_case = {}
    for case, series, recs in groups:
        done = [r for r in recs if r["status"] == "completed"]
        if done and not case.endswith("-compressible") and not case.startswith("idle"):
            by_case.setdefault(case, []).append((series, done))
    rows = []
    for case, series_list in by_case.items():
        g = [d for s, d in series_list if s == "godwit"]
        q = [d for s, d in series_list if s != "godwit"]
        if not g:
            continue
        g = g[0]
        rate = _median([r["guest_bytes"] / 1e9 / (r["move_ms"] / 1e3) for r in g
                        if r.get("guest_bytes") and r.get("move_ms")])
        gm, gp = _median([r.get("move_ms") for r in g]), _median([r.get("pause_ms") for r in g])
        gc = _median([_cpu_per_gib(r) for r in g])
        qbest = min(q, key=lambda d: _median([r.get("move_ms") for r in d]) or 1e12) if q else None
        qm = qp = qc = None
        if qbest:
            qm, qp = _median([r.get("move_ms") for r in qbest]), _median([r.get("pause_ms") for r in qbest])
            qc = _median([_cpu_per_gib(r) for r in qbest])

        def ratio(a, b):
            return f"{a / b:.2f}" if a is not None and b else "?"

        def num(v, f="{:.2f}"):
            return "?" if v is None else f.format(v)
        rows.append([case, num(rate), ratio(gm, qm), ratio(gp, qp), f"{num(gc)} / {num(qc)}"])
    if not rows:
        return []
    return ["## Goals (issue 17), incompressible cases", ""] + md_table(
        ["case", "godwit guest GB/s moved (goal ≥ 1.2)", "move, godwit / QEMU (goal ≤ 0.5)",
         "pause, godwit / QEMU (goal ≤ 0.2)", "not-vCPU CPU s per GiB moved, godwit / QEMU"],
        rows) + ["", "Guest GB/s: guest pages moved (4 KiB each) over the move time, median of "
                 "the runs; ratios: of the medians, against the QEMU series with the shortest "
                 "median move.", ""]


PLOTS = [
    ("Guest pause at switchover (ms)", "pause.png", "pause_ms", False),
    ("Move time: migrate command to the guest running on the destination (ms)", "total.png",
     "move_ms", True),
    ("Bytes sent (MB)", "bytes.png", "mb", True),
    ("CPU seconds of the migration, source + destination, vCPU threads left out", "cpu.png",
     "vmm_cpu", False),
]


def write_plots(outdir, records):
    """PNG bar charts; returns [(title, file)] or [] without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    cases = list(dict.fromkeys(r["case"] for r in records))
    # One QEMU variant per case (the default): one QEMU series, its capabilities per case
    # as RESULTS.md states; several (BENCH_QEMU_VARIANTS): one series per variant.
    per_case = {}
    for r in records:
        if r["vmm"] == "qemu":
            per_case.setdefault(r["case"], set()).add(r.get("variant"))
    single = all(len(v) == 1 for v in per_case.values())

    def plot_key(r):
        if r["vmm"] == "qemu" and single:
            return "QEMU (capabilities per case)" + (" +tls" if r.get("tls") else "")
        return series_key(r)
    series = list(dict.fromkeys(plot_key(r) for r in records))
    out = []
    for title, fname, key, log in PLOTS:
        fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(cases) + 2), 4.2))
        width = 0.8 / max(1, len(series))
        for i, s in enumerate(series):
            xs, meds, lo, hi, nf = [], [], [], [], []
            for j, c in enumerate(cases):
                recs = [r for r in records if r["case"] == c and plot_key(r) == s]
                if not recs:
                    continue
                done = [r for r in recs if r["status"] == "completed"]
                if key == "vmm_cpu":
                    vals = [r["src_vmm_cpu_s"] + r["dst_vmm_cpu_s"] for r in done
                            if r.get("src_vmm_cpu_s") is not None and r.get("dst_vmm_cpu_s") is not None]
                else:
                    vals = [v for v in (_value(r, key) for r in done) if v is not None]
                x = j - 0.4 + width * (i + 0.5)
                if not vals:
                    nf.append(x)
                    continue
                m = statistics.median(vals)
                xs.append(x)
                meds.append(m)
                lo.append(m - min(vals))
                hi.append(max(vals) - m)
            ax.bar(xs, meds, width, yerr=[lo, hi], capsize=3, label=s)
            for x in nf:  # y in axes coordinates: works on a log scale too
                ax.text(x, 0.02, "n/f", ha="center", va="bottom", fontsize=8,
                        transform=ax.get_xaxis_transform())
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels(cases, rotation=20, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, fname), dpi=100)
        plt.close(fig)
        out.append((title, fname))
    return out
