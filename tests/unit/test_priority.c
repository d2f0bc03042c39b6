// SPDX-License-Identifier: GPL-2.0
/* The switchover's real-time priority: on and off for the calling thread only. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>

#include "godwit/util.h"

static void *policy_of_new_thread(void *arg)
{
	*(int *)arg = sched_getscheduler(0);
	return NULL;
}

static int new_thread_policy(void)
{
	pthread_t t;
	int policy = -1;

	assert_int_equal(pthread_create(&t, NULL, policy_of_new_thread, &policy), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	return policy;
}

static void test_on_and_off(void **state)
{
	int ret = util__switchover_priority(true);

	(void)state;
	if (ret == -EPERM)
		skip(); /* neither CAP_SYS_NICE nor RLIMIT_RTPRIO here */
	assert_int_equal(ret, 0);
	/* SCHED_RESET_ON_FORK shows in the policy read back. */
	assert_int_equal(sched_getscheduler(0) & ~SCHED_RESET_ON_FORK, SCHED_FIFO);
	/* A thread started meanwhile (a vCPU's) runs at the ordinary policy. */
	assert_int_equal(new_thread_policy(), SCHED_OTHER);
	assert_int_equal(util__switchover_priority(false), 0);
	assert_int_equal(sched_getscheduler(0), SCHED_OTHER);
	/* Off when already off is no error: the destination turns it off on every path. */
	assert_int_equal(util__switchover_priority(false), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_on_and_off),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
