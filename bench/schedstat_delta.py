#!/usr/bin/python3
"""CPU time and run-queue wait per thread over a move, from the schedstat.log that
bench/profile_incompressible.sh writes (lines: time pid tid comm run_ns wait_ns slices).

    bench/schedstat_delta.py OUTDIR/schedstat.log

A thread seen in the first round of samples counts from that sample; one born later
(the migration thread, the destination's vCPUs) from zero.
"""
import sys

first_t = None
first, last = {}, {}
block, in_block = 0, set()
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) != 7:
        continue
    t, pid, tid, comm, run, wait, sl = float(f[0]), f[1], f[2], f[3], int(f[4]), int(f[5]), int(f[6])
    if first_t is None:
        first_t = t
    key = (pid, tid, comm)
    if key in in_block:  # a thread seen again: the next round of samples
        block, in_block = block + 1, set()
    in_block.add(key)
    if key not in first:
        first[key] = (t, run, wait, sl) if block == 0 else (t, 0, 0, 0)
    last[key] = (t, run, wait, sl)
span = max(v[0] for v in last.values()) - first_t
print(f"span {span:.2f} s")
print(f"{'pid':>7} {'tid':>7} {'thread':16} {'cpu ms':>8} {'wait ms':>8} {'slices':>7} {'cpu%':>5} {'wait%':>5}")
for key in sorted(last, key=lambda k: (k[0], -(last[k][1] - first[k][1]))):
    a, b = first[key], last[key]
    run, wait, sl = (b[1] - a[1]) / 1e6, (b[2] - a[2]) / 1e6, b[3] - a[3]
    if run < 1 and wait < 1:
        continue
    print(f"{key[0]:>7} {key[1]:>7} {key[2]:16} {run:8.0f} {wait:8.0f} {sl:7d} "
          f"{run / 10 / span:5.0f} {wait / 10 / span:5.0f}")
