/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_UTIL_H
#define GODWIT_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define __must_check __attribute__((warn_unused_result))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((__typeof__(x))(a)-1))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define KiB (1ULL << 10)
#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

/*
 * Parses "512M", "1G", "65536", "4k" (binary units, case-insensitive, optional
 * trailing "iB"/"B"). Returns 0 or -EINVAL on anything else, -ERANGE on overflow.
 */
int __must_check util__parse_size(const char *s, uint64_t *out);

/* Parses a whole decimal number in [min, max]; 0, -EINVAL or -ERANGE. */
int __must_check util__parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Monotonic clock in nanoseconds. */
uint64_t util__now_ns(void);

/* Microseconds from one util__now_ns() reading to a later one; 0 if not later. */
unsigned long long util__us(uint64_t from, uint64_t to);

/*
 * A signalfd (close-on-exec) that reads SIGINT and SIGTERM, which main.c blocks in
 * every thread: how a wait learns it is asked to stop. The fd, or -1 with errno.
 */
int util__stop_signal_fd(void);

/*
 * Real-time priority (SCHED_FIFO 1) for the calling thread while on, for the few
 * milliseconds a guest is paused by a migration; back to the ordinary policy when off.
 * 0 or -errno (without the privilege: -EPERM, and the thread keeps its priority).
 */
int util__switchover_priority(bool on);

/*
 * The same for a thread of this process by its id (0: the calling thread), without
 * the one-time log line. 0 or -errno.
 */
int util__thread_realtime(pid_t tid, bool on);

/* Whether the calling thread runs at real-time priority (SCHED_FIFO or SCHED_RR). */
bool util__is_realtime(void);

/* A thread's nice value (Linux keeps one per thread; tid 0: the calling thread). */
int util__thread_nice(pid_t tid, int *nice);
int util__set_thread_nice(pid_t tid, int nice);

/*
 * A lock that a thread at real-time priority takes (the switchover's): its holder runs
 * at that priority until it lets go. Without it an ordinary holder preempted on a busy
 * host keeps the real-time thread waiting until the scheduler gets back to it. Where
 * the kernel has no such lock, an ordinary one. 0 or -errno.
 */
int util__mutex_init_inherit(pthread_mutex_t *lock);

/*
 * How long the calling thread has waited, runnable, for a CPU since it started (ns;
 * 0 where the kernel does not count it): told apart from the network in a pause's log.
 */
uint64_t util__thread_cpu_wait_ns(void);

/*
 * Whether this process may set a thread's nice value down to `nice` (back, after
 * raising it): lowering one takes CAP_SYS_NICE or an RLIMIT_NICE of 20 - nice.
 */
bool util__may_lower_nice(int nice);

#endif
