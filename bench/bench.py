#!/usr/bin/python3
"""Live migration, godwit vs QEMU 7.2 on KVM, side by side (`make bench`; docs/bench.md).

For each case (guest RAM x workload, and a far link) the same test guest ELF is
migrated by godwit and by QEMU, BENCH_RUNS times each; the runs' records go to
bench/results/runs.json, the summary to bench/results/RESULTS.md, plots to *.png.

Environment:
  BENCH_RUNS=3            runs per case and VMM
  BENCH_CASES=PAT,...     only cases whose name matches a pattern (fnmatch: 'idle-*,far-*';
                          dirtying cases write incompressible pages, their twins
                          NAME-compressible memtouch's default pattern: 'heavy-1G*' both)
  BENCH_QUICK=1           tiny sizes (256 MiB guests, 32 MiB working sets, 5 ms far link,
                          20 s timeout, no large-* cases): checks the machinery, measures
                          nothing worth keeping
  BENCH_VMMS=godwit,qemu  which VMMs
  BENCH_TLS=0             1: each VMM also moves over TLS (x509 both ways, certificates made
                          with the openssl CLI per run; series "... +tls"), side by side;
                          only: over TLS alone
  BENCH_QEMU_VARIANTS=    empty: each case's QEMU capabilities; 'all', or a list of
                          ('case' = the case's own choice; 'case,multifd+zstd+auto-converge'),
                          plain,multifd,auto-converge,multifd+auto-converge,
                          multifd+auto-converge+dirty-ring,
                          multifd+zstd+auto-converge
  BENCH_DOWNTIME_MS=50    downtime limit of both VMMs (godwit's default)
  BENCH_TIMEOUT_S=        override the per-migration timeout (default 60 s + 10 s/GiB)
  BENCH_OUT=bench/results output directory
  GODWIT, QEMU, GODWIT_TESTGUEST   binaries (default build/godwit, qemu-system-x86_64,
                          build/guest/testguest.elf)

The large-2G and large-8G cases (1 GiB of random pages rewritten in a 2 or 8 GiB guest)
run in the full bench only; the loopback TCP and memcpy limits are measured before and
after the cases, in the same run (bench/limits.py).
"""
import contextlib
import dataclasses
import fnmatch
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import limits  # noqa: E402
import report  # noqa: E402
import slowlink  # noqa: E402
import vmms  # noqa: E402

ROOT = os.path.dirname(HERE)


@dataclasses.dataclass
class Case:
    name: str
    kind: str
    ram: str
    ram_mib: int
    cpus: int
    cmdline: str
    memtouch_vcpus: tuple
    qemu_variant: str
    multifd_channels: int = 2
    period_ms: int = 1
    link: tuple = None  # (one-way delay ms, rate bit/s)
    boot_timeout_s: int = 90
    warm_timeout_s: int = 180
    check_timeout_s: int = 20

    def timeout_s(self):
        """godwit's default migration timeout: 60 s + 10 s per GiB."""
        return 60 + 10 * max(1, self.ram_mib // 1024)


# The dirtying cases write pseudo-random pages (memtouch's `random` mode), which no
# compressor shrinks, as most real guest memory barely shrinks; each has a twin named
# NAME-compressible with memtouch's default pattern (mostly zeros, ~130:1 under LZ4).
PAGE_MODES = (("", " random"), ("-compressible", ""))


def make_cases(quick=False):
    sizes = ["256M"] if quick else ["1G", "8G"]
    mt = "32M" if quick else "256M"
    hb = "heartbeat 1"
    workloads = [  # kind, memtouch commands, vCPUs, memtouch vCPUs, QEMU capabilities
        ("idle", [], 2, (), "plain"),
        ("moderate", [f"memtouch {mt} 100"], 2, (1,), "multifd"),
        ("heavy", [f"memtouch {mt}"], 2, (1,), "multifd+auto-converge"),
        ("2vcpu", [f"memtouch {mt}"] * 2, 3, (1, 2), "multifd+auto-converge"),
    ]
    extra = dict(boot_timeout_s=60, warm_timeout_s=60, check_timeout_s=10) if quick else {}

    def variants(mts):
        """(name suffix, command line) per page mode; one plain one without memtouch."""
        if not mts:
            return [("", hb)]
        return [(suffix, " ; ".join([hb] + [m + mode for m in mts]))
                for suffix, mode in PAGE_MODES]

    cases = []
    for size in sizes:
        mib = int(size[:-1]) * (1024 if size.endswith("G") else 1)
        for kind, mts, cpus, mtv, variant in workloads:
            for suffix, cmd in variants(mts):
                cases.append(Case(f"{kind}-{size}{suffix}", kind, size, mib, cpus, cmd, mtv,
                                  variant, **extra))
    if not quick:
        # The large case: a 1 GiB working set of random pages in a 2 GiB and in an
        # 8 GiB guest (incompressible only; the cases above have the compressible twins).
        for size in ("2G", "8G"):
            cases.append(Case(f"large-{size}", "large", size, int(size[:-1]) * 1024, 2,
                              f"{hb} ; memtouch 1G random", (1,), "multifd+auto-converge"))
    far_size = sizes[0]
    far_mib = int(far_size[:-1]) * (1024 if far_size.endswith("G") else 1)
    for suffix, cmd in variants([f"memtouch {mt} 100"]):
        cases.append(Case(f"far-moderate-{far_size}{suffix}", "far", far_size, far_mib, 2,
                          cmd, (1,), "multifd+zstd+auto-converge", multifd_channels=16,
                          link=(5 if quick else 75, 1_000_000_000), **extra))
    return cases


def select_cases(cases, patterns):
    if not patterns:
        return cases
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    return [c for c in cases if any(fnmatch.fnmatch(c.name, p) for p in pats)]


def qemu_variants(case, spec):
    if not spec:
        return [case.qemu_variant]
    if spec == "all":
        return list(vmms.QEMU_VARIANTS)
    names = [v.strip() for v in spec.split(",") if v.strip()]
    # "case": the case's own choice, so "case,multifd+zstd+auto-converge" adds one variant.
    names = list(dict.fromkeys(case.qemu_variant if v == "case" else v for v in names))
    for v in names:
        if v not in vmms.QEMU_VARIANTS:
            raise SystemExit(f"bench: unknown QEMU variant {v!r} (have {', '.join(vmms.QEMU_VARIANTS)})")
    return names


def one_line(rec):
    def f(key, unit=""):
        v = rec.get(key)
        return "?" if v is None else f"{v}{unit}"
    s = f"{rec['status']}"
    if rec["status"] == "completed":
        s += (f": move {f('move_ms', ' ms')}, total {f('total_ms', ' ms')}, downtime {f('downtime_ms', ' ms')}, "
              f"pause {f('pause_ms', ' ms')} (guest clock {f('pause_guest_ms', ' ms')}), "
              f"{(rec.get('bytes') or 0) / 1e6:.0f} MB ({(rec.get('guest_bytes') or 0) / 1e6:.0f} "
              f"MB of guest pages), {f('rounds')} rounds, "
              f"cpu src/dst {f('src_cpu_s')}/{f('dst_cpu_s')} s "
              f"(not vCPU {f('src_vmm_cpu_s')}/{f('dst_vmm_cpu_s')}), own mem "
              f"{f('src_mem_mib')}/{f('dst_mem_mib')} MiB"
              + ("" if rec.get("dst_ok") else f", DESTINATION: {rec.get('dst_check')}"))
    else:
        s = report.how_far(rec)
    return s


def save_log(outdir, rec):
    """Consoles and stderr of a run that did not go well, for a look afterwards."""
    os.makedirs(os.path.join(outdir, "logs"), exist_ok=True)
    name = f"{rec['case']}-{report.series_key(rec).replace(' ', '-')}-run{rec.get('run')}.txt"
    with open(os.path.join(outdir, "logs", name), "w") as f:
        f.write(json.dumps({k: v for k, v in rec.items() if not k.endswith("_tail")},
                           indent=1, default=str))
        f.write("\n\n== source console (tail)\n" + rec.get("src_console_tail", ""))
        f.write("\n\n== destination console (tail)\n" + rec.get("dst_console_tail", ""))
        for p, t in (rec.get("stderr_tail") or {}).items():
            f.write(f"\n\n== {p} stderr (tail)\n{t}")


def run_bench(outdir, runs=3, quick=False, patterns=None, vmm_list=("godwit", "qemu"),
              variants_spec="", downtime_ms=50, timeout_s=None, log=None, tls_modes=(False,)):
    """Runs the selected cases; writes runs.json, RESULTS.md, plots; returns the records."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    cases = select_cases(make_cases(quick), patterns)
    if not cases:
        raise SystemExit(f"bench: no case matches BENCH_CASES={patterns!r}")
    os.makedirs(outdir, exist_ok=True)
    for stale in ("logs",):
        shutil.rmtree(os.path.join(outdir, stale), ignore_errors=True)
    records, links = [], {}
    # The physical limits, before and after the cases: the same run's figures.
    limits_before = limits.measure(quick)
    log(f"bench: limits before: {limits_before}")
    plan = len(tls_modes) * sum(runs * sum(len(qemu_variants(c, variants_spec)) if v == "qemu"
                                           else 1 for v in vmm_list) for c in cases)
    n = 0
    for case in cases:
        tmo = timeout_s or (20 if quick else case.timeout_s())
        if case.link:
            why = slowlink.unavailable_reason()
            if why:
                log(f"bench: {case.name}: skipped: {why}")
                links[case.name] = f"not run: {why}"
                continue
            link_cm = slowlink.SlowLink(*case.link)
        else:
            link_cm = contextlib.nullcontext()
        try:
            with link_cm as link:
                if link is not None:
                    links[case.name] = link.method
                for i in range(runs):
                    order = list(vmm_list) if i % 2 == 0 else list(reversed(vmm_list))
                    runs_of = [(vmm, variant, tls) for vmm in order
                               for variant in (qemu_variants(case, variants_spec)
                                               if vmm == "qemu" else [None])
                               for tls in (tls_modes if i % 2 == 0 else tls_modes[::-1])]
                    for vmm, variant, tls in runs_of:
                        n += 1
                        wd = tempfile.mkdtemp(prefix="godwit-bench-")
                        try:
                            if vmm == "godwit":
                                m = vmms.GodwitMigration(case, wd, downtime_ms, tmo, link,
                                                         tls=tls)
                            else:
                                m = vmms.QemuMigration(case, wd, downtime_ms, tmo, link,
                                                       variant=variant, tls=tls)
                            rec = m.run()
                        finally:
                            shutil.rmtree(wd, ignore_errors=True)
                        rec["run"] = i + 1
                        rec["variant"] = variant
                        log(f"[{n}/{plan}] {case.name} {report.series_key(rec)} run {i + 1}: "
                            f"{one_line(rec)}")
                        if rec["status"] != "completed" or not rec.get("dst_ok"):
                            save_log(outdir, rec)
                        records.append(rec)
                        time.sleep(0.5)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:  # the far link failed
            log(f"bench: {case.name}: the far link failed: {e}")
            links[case.name] = f"failed: {e}"
    limits_after = limits.measure(quick)
    log(f"bench: limits after: {limits_after}")
    meta = {"runs": runs, "quick": quick, "downtime_ms": downtime_ms, "links": links,
            "limits": {"before": limits_before, "after": limits_after},
            "tls": list(tls_modes),
            "qemu_variants": variants_spec,
            "machine": report.machine_info(vmms.GODWIT, vmms.QEMU, vmms.TESTGUEST)}
    with open(os.path.join(outdir, "runs.json"), "w") as f:
        json.dump({"meta": meta, "cases": [dataclasses.asdict(c) for c in cases],
                   "records": [{k: v for k, v in r.items() if not k.endswith("_tail")}
                               for r in records]}, f, indent=1, default=str)
    plots = report.write_plots(outdir, records) if records else []
    report.write_results(os.path.join(outdir, "RESULTS.md"), records, cases, meta, plots)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    log(f"bench: wrote {os.path.join(outdir, 'RESULTS.md')} (the benchmark's own CPU: "
        f"{ru.ru_utime + ru.ru_stime:.1f} s)")
    return records


def preflight(vmm_list):
    missing = []
    if "godwit" in vmm_list and not os.access(vmms.GODWIT, os.X_OK):
        missing.append(f"{vmms.GODWIT} (run make)")
    if not os.path.exists(vmms.TESTGUEST):
        missing.append(f"{vmms.TESTGUEST} (run make)")
    if "qemu" in vmm_list and shutil.which(vmms.QEMU) is None:
        missing.append(f"{vmms.QEMU} (apt-get install qemu-system-x86)")
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError as e:
        missing.append(f"a usable /dev/kvm ({e.strerror})")
    if missing:
        raise SystemExit("bench: missing: " + "; ".join(missing))


def main():
    if len(sys.argv) > 1:
        # Settings come from the environment; any argument (--help included) gets the text.
        print(__doc__)
        raise SystemExit(0 if sys.argv[1] in ("-h", "--help") else 2)
    env = os.environ
    vmm_list = tuple(v.strip() for v in env.get("BENCH_VMMS", "godwit,qemu").split(",") if v.strip())
    for v in vmm_list:
        if v not in ("godwit", "qemu"):
            raise SystemExit(f"bench: unknown VMM {v!r} in BENCH_VMMS")
    preflight(vmm_list)

    def on_signal(signum, _frame):  # unwind through the finally blocks: stop, clean up
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    quick = env.get("BENCH_QUICK", "0") not in ("", "0")
    tls_modes = {"0": (False,), "": (False,), "1": (False, True),
                 "only": (True,)}.get(env.get("BENCH_TLS", "0"))
    if tls_modes is None:
        raise SystemExit("bench: BENCH_TLS must be 0, 1 or only")
    timeout = env.get("BENCH_TIMEOUT_S")
    run_bench(env.get("BENCH_OUT", os.path.join(HERE, "results")),
              runs=int(env.get("BENCH_RUNS", "3")), quick=quick,
              patterns=env.get("BENCH_CASES"), vmm_list=vmm_list,
              variants_spec=env.get("BENCH_QEMU_VARIANTS", ""),
              downtime_ms=int(env.get("BENCH_DOWNTIME_MS", "50")),
              timeout_s=int(timeout) if timeout else None,
              tls_modes=tls_modes)


if __name__ == "__main__":
    main()
