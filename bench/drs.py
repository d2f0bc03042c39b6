#!/usr/bin/python3
"""Balancing on simulated clusters (`make bench-drs`; docs/drs.md, "Measured").

Runs `godwit cluster simulate` (the real scheduler code, no VM, no etcd) on generated
clusters of DRS_SIZES (default 64 hosts x 2,000 VMs and 1,000 x 30,000), DRS_SEEDS seeds
(default 1), skew DRS_SKEW (0.5), threshold DRS_THRESHOLD (3), with the cost-aware
algorithm and the hbal-style baseline side by side on the same clusters, each until the
imbalance is within the threshold's tolerance (at most DRS_PASSES passes, 50). For each:
the time to compute the slowest pass, the imbalance
reached, the passes, moves and GiB moved to reach it, and the lower bound of the GiB and
moves any scheduler needs (the Lagrangian bound of docs/drs.md). Writes a Markdown
table to stdout and bench/results/DRS.md with the command, the machine's load average
and the date. Nothing here is asserted.
"""
import datetime
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
GODWIT = os.environ.get("GODWIT", str(ROOT / "build" / "godwit"))
ALGORITHMS = ("cost", "baseline")


def sizes(text):
    out = []
    for part in text.split(","):
        hosts, vms = part.lower().split("x")
        out.append((int(hosts), int(vms)))
    return out


def simulate(hosts, vms, algorithm, seed, skew, threshold, passes, godwit=GODWIT):
    cmd = [godwit, "cluster", "simulate", "--hosts", str(hosts), "--vms", str(vms),
           "--seed", str(seed), "--skew", str(skew), "--threshold", str(threshold),
           "--algorithm", algorithm, "--passes", str(passes), "--until-balanced", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)}: {r.stderr.strip()}")
    out = json.loads(r.stdout)
    out["command"] = " ".join(["godwit"] + cmd[1:])
    return out


def summary(run):
    t = run["total"]
    return {
        "first_ms": run["passes"][0]["compute_ms"] if run["passes"] else 0.0,
        "max_ms": t["compute_ms_max"],
        "initial": run["initial_imbalance"],
        "final": t["final_imbalance"],
        "reached": t["reached_pass"],
        "moves": t["moves"],
        "gib": t["gib_moved"],
        "lb_gib": run["lower_bound"]["gib"],
        "lb_moves": run["lower_bound"]["moves"],
        "must_broken": t["must_broken"],
        "move_seconds": sum(p["move_seconds"] for p in run["passes"]),
    }


def ratio(a, b):
    return f"{a / b:.2f}" if b else "-"


def table(rows):
    """rows: [(hosts, vms, seed, {algorithm: summary})] -> Markdown lines."""
    lines = ["| cluster | seed | algorithm | slowest pass | imbalance | passes | moves | "
             "GiB moved | GiB vs baseline | GiB vs lower bound | lower bound GiB, moves | "
             "moves' time |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for hosts, vms, seed, by in rows:
        base = by["baseline"]["gib"]
        for algorithm in ALGORITHMS:
            s = by[algorithm]
            lb, lbm = s["lb_gib"], s["lb_moves"]
            reached = s["reached"] if s["reached"] is not None else "not reached"
            bound = f"{lb:.0f}, {lbm:.0f}" if lb is not None else "-"
            lines.append(
                f"| {hosts} x {vms} | {seed} | {algorithm} | {s['max_ms']:.1f} ms | "
                f"{s['initial']:.3f} -> {s['final']:.3f} | {reached} | {s['moves']} | "
                f"{s['gib']:.0f} | {ratio(s['gib'], base)} | "
                f"{ratio(s['gib'], lb) if lb else '-'} | {bound} | "
                f"{s['move_seconds']:.0f} s |")
    return lines


def main():
    cluster_sizes = sizes(os.environ.get("DRS_SIZES", "64x2000,1000x30000"))
    seeds = [int(s) for s in os.environ.get("DRS_SEEDS", "1").split(",")]
    skew = float(os.environ.get("DRS_SKEW", "0.5"))
    threshold = int(os.environ.get("DRS_THRESHOLD", "3"))
    passes = int(os.environ.get("DRS_PASSES", "50"))
    load_before = os.getloadavg()
    rows, commands = [], []
    for hosts, vms in cluster_sizes:
        for seed in seeds:
            by = {}
            for algorithm in ALGORITHMS:
                run = simulate(hosts, vms, algorithm, seed, skew, threshold, passes)
                commands.append(run["command"])
                by[algorithm] = summary(run)
            rows.append((hosts, vms, seed, by))
    load_after = os.getloadavg()
    lines = [f"# Balancing on simulated clusters ({datetime.date.today()})", "",
             f"Load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
             f"({os.cpu_count()} CPUs); skew {skew}, threshold {threshold}.", ""]
    lines += table(rows)
    lines += ["", "Commands:", ""] + [f"    {c}" for c in commands]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "DRS.md").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
