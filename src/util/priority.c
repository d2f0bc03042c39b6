// SPDX-License-Identifier: GPL-2.0
/*
 * Scheduling for a move: the threads a guest's pause waits on run first; the vCPUs
 * that dirty memory run last while it is copied.
 */
#include <errno.h>
#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "godwit/log.h"
#include "godwit/util.h"

/*
 * SCHED_FIFO at the lowest real-time priority, for the calling thread only (Linux
 * applies sched_setscheduler(0) to the thread): any ordinary thread that wants its CPU
 * waits until it blocks, so no other VM's vCPU, and none of this VM's, stretches the
 * pause. Taken for milliseconds and for bounded work that blocks on the network, never
 * spinning; the kernel's real-time throttling (95 % of each second by default) bounds
 * it anyway. Not inherited by threads it starts (SCHED_RESET_ON_FORK).
 */
int util__thread_realtime(pid_t tid, bool on)
{
	struct sched_param sp = { .sched_priority = on ? 1 : 0 };
	int policy = on ? SCHED_FIFO | SCHED_RESET_ON_FORK : SCHED_OTHER;

	return sched_setscheduler(tid, policy, &sp) ? -errno : 0;
}

bool util__is_realtime(void)
{
	int policy = sched_getscheduler(0);

	if (policy < 0)
		return false;
	policy &= ~SCHED_RESET_ON_FORK;
	return policy == SCHED_FIFO || policy == SCHED_RR;
}

int util__switchover_priority(bool on)
{
	static bool warned;
	int ret = util__thread_realtime(0, on);

	/* Without CAP_SYS_NICE or RLIMIT_RTPRIO: the pause runs at the ordinary priority. */
	if (ret && on && !warned) {
		warned = true;
		pr_debug("no real-time priority for the switchover: %s", strerror(-ret));
	}
	return ret;
}

int util__thread_nice(pid_t tid, int *nice)
{
	int n;

	/* -1 is a nice value too: errno tells it from an error. */
	errno = 0;
	n = getpriority(PRIO_PROCESS, (id_t)tid);
	if (n == -1 && errno)
		return -errno;
	*nice = n;
	return 0;
}

int util__set_thread_nice(pid_t tid, int nice)
{
	return setpriority(PRIO_PROCESS, (id_t)tid, nice) ? -errno : 0;
}

int util__mutex_init_inherit(pthread_mutex_t *lock)
{
	pthread_mutexattr_t attr;
	int ret;

	ret = -pthread_mutexattr_init(&attr);
	if (ret)
		return ret;
	ret = -pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT);
	if (!ret)
		ret = -pthread_mutex_init(lock, &attr);
	pthread_mutexattr_destroy(&attr);
	if (ret) {
		pr_debug("no priority-inheriting lock (%s): an ordinary one", strerror(-ret));
		ret = -pthread_mutex_init(lock, NULL);
	}
	return ret;
}

/*
 * schedstat's second field: the time the thread was runnable but not running, counted
 * when it gets a CPU. So only for a thread that runs when asked (another thread's
 * count also has the wait it was in at the first reading).
 */
uint64_t util__thread_cpu_wait_ns(void)
{
	unsigned long long run, wait;
	FILE *f = fopen("/proc/thread-self/schedstat", "re");
	int n;

	if (!f)
		return 0;
	n = fscanf(f, "%llu %llu", &run, &wait);
	fclose(f);
	return n == 2 ? wait : 0;
}

/* The kernel's can_nice(): CAP_SYS_NICE, or an RLIMIT_NICE of at least 20 - nice. */
bool util__may_lower_nice(int nice)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3];
	struct rlimit rl;

	if (!getrlimit(RLIMIT_NICE, &rl) &&
	    (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (rlim_t)(20 - nice)))
		return true;
	if (syscall(SYS_capget, &hdr, caps))
		return false;
	return caps[CAP_SYS_NICE / 32].effective & (1U << (CAP_SYS_NICE % 32));
}
