"""Stamps the growth of console files, as a process of its own (procmon.ConsoleStamper).

The heartbeat lines the pause is measured by are stamped with the time they were first
seen complete. A thread of the benchmark's own process saw them late: on a 2-core host
the VMMs' busy threads and the benchmark's other threads (and Python's GIL) held it up
to 5 ms, so lines the guest wrote 1 ms apart were stamped at once and a 1 ms pause read
as 4. This process does nothing else: every INTERVAL it looks at each file's size and,
when it grew, appends (CLOCK_MONOTONIC seconds, size) to FILE.stamps (struct '<dq').
It asks for SCHED_FIFO priority 1, so that a busy CPU-bound thread does not delay it
(as a latency tester does); each look costs a few microseconds, taken from whichever
thread is running, the same for both VMMs. Without the privilege it runs as a normal
process and says so on stderr.

usage: stamper.py INTERVAL_S MAX_SECONDS FILE...
It ends after MAX_SECONDS, on SIGTERM, or when its parent is gone.
"""
import os
import signal
import sys
import time

from procmon import STAMP


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__.split("\n\n")[-2])
    interval, max_s, paths = float(argv[0]), float(argv[1]), argv[2:]
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError as e:
        print(f"stamper: no SCHED_FIFO ({e.strerror}); stamps may come late", file=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    parent = os.getppid()
    sizes = [0] * len(paths)
    outs = [os.open(p + ".stamps", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            for p in paths]
    end = time.monotonic() + max_s
    while time.monotonic() < end and os.getppid() == parent:
        now = time.monotonic()
        for i, p in enumerate(paths):
            try:
                size = os.stat(p).st_size
            except FileNotFoundError:
                continue
            if size > sizes[i]:
                sizes[i] = size
                os.write(outs[i], STAMP.pack(now, size))
        time.sleep(interval)


if __name__ == "__main__":
    main(sys.argv[1:])
