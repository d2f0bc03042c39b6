#!/usr/bin/python3
"""A user-space far link between two TUN devices: a fixed one-way delay and a rate.

Used by bench/slowlink.py where the kernel has no `sch_netem` (CONFIG_NET_SCH_NETEM
unset, as on our kvm_pvm machines). Creates the TUN devices A and B (IFF_TUN, no
packet info), prints "ready" on stdout, then forwards every IP packet read from one to
the other: each direction is a serial link of RATE bit/s (a packet leaves when the
previous one has been serialised) followed by DELAY ms of propagation; a packet that
would make the queue exceed LIMIT bytes is dropped (a router buffer). The caller moves
the devices into their namespaces and configures them (the open descriptors stay
attached). Runs until SIGTERM/SIGINT or until stdin closes; the devices vanish with
the process.

It runs at real-time priority (SCHED_FIFO 2, above godwit's migration threads at 1)
where it may: a wire's delay does not grow with the hosts' load, and on a busy host a
user-space link at the ordinary priority waited on the run queue at each wake-up (load
~16 on 2 cores: TCP handshakes across a 50 ms link measured 52-127 ms).

Usage: delayline.py TUN_A TUN_B DELAY_MS RATE_BPS LIMIT_BYTES
"""
import collections
import fcntl
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class Direction:
    """One way of the link: read from `src`, deliver to `dst`."""

    def __init__(self, src, dst, delay_s, rate_bps, limit):
        self.src, self.dst = src, dst
        self.delay, self.rate, self.limit = delay_s, rate_bps, limit
        self.queue = collections.deque()  # (deliver_at, packet), deliver_at increasing
        self.queued = 0
        self.link_free = 0.0
        self.dropped = 0

    def receive(self, now):
        for _ in range(256):  # bounded batch per wake-up
            try:
                pkt = os.read(self.src, 65536)
            except BlockingIOError:
                return
            if not pkt:
                return
            if self.queued + len(pkt) > self.limit:
                self.dropped += 1
                continue
            self.link_free = max(now, self.link_free) + len(pkt) * 8 / self.rate
            self.queue.append((self.link_free + self.delay, pkt))
            self.queued += len(pkt)

    def deliver(self, now):
        while self.queue and self.queue[0][0] <= now:
            _, pkt = self.queue.popleft()
            self.queued -= len(pkt)
            try:
                os.write(self.dst, pkt)
            except OSError:
                self.dropped += 1  # the far side is not up (yet): lost, as on a wire

    def next_due(self):
        return self.queue[0][0] if self.queue else None


def realtime():
    """SCHED_FIFO 2 if allowed (root or RLIMIT_RTPRIO); otherwise the ordinary priority."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(2))
    except OSError:
        pass


def main():
    name_a, name_b = sys.argv[1], sys.argv[2]
    delay_s = float(sys.argv[3]) / 1000
    rate = float(sys.argv[4])
    limit = int(sys.argv[5])
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    realtime()
    a, b = open_tun(name_a), open_tun(name_b)
    ab = Direction(a, b, delay_s, rate, limit)
    ba = Direction(b, a, delay_s, rate, limit)
    print("ready", flush=True)
    stdin = sys.stdin.fileno()
    while not stop:
        now = time.monotonic()
        dues = [d for d in (ab.next_due(), ba.next_due()) if d is not None]
        timeout = max(0.0, min(dues) - now) if dues else 0.5
        try:
            ready, _, _ = select.select([a, b, stdin], [], [], min(timeout, 0.5))
        except InterruptedError:
            continue
        if stdin in ready and not os.read(stdin, 4096):
            break
        now = time.monotonic()
        if a in ready:
            ab.receive(now)
        if b in ready:
            ba.receive(now)
        ab.deliver(now)
        ba.deliver(now)
    print(f"dropped {ab.dropped} {ba.dropped}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
