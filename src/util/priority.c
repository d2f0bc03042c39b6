// SPDX-License-Identifier: GPL-2.0
/* The switchover's priority: the threads a guest's pause waits on run first. */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <string.h>

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
int util__switchover_priority(bool on)
{
	struct sched_param sp = { .sched_priority = on ? 1 : 0 };
	int policy = on ? SCHED_FIFO | SCHED_RESET_ON_FORK : SCHED_OTHER;
	static bool warned;

	if (!sched_setscheduler(0, policy, &sp))
		return 0;
	/* Without CAP_SYS_NICE or RLIMIT_RTPRIO: the pause runs at the ordinary priority. */
	if (on && !warned) {
		warned = true;
		pr_debug("no real-time priority for the switchover: %s", strerror(errno));
	}
	return -errno;
}
