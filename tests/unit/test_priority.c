// SPDX-License-Identifier: GPL-2.0
/*
 * The switchover's real-time priority: on and off for the calling thread only. A
 * thread's nice value, and whether the process may set one back down. A thread's wait
 * for a CPU. A lock whose holder runs at its real-time waiter's priority.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* The kernel's priority of the calling thread now (stat's 18th field): -2 at FIFO 1. */
static long effective_priority(void)
{
	char buf[1024], *p;
	FILE *f = fopen("/proc/thread-self/stat", "r");
	int field;

	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	/* After the command's closing parenthesis: field 3 on. */
	p = strrchr(buf, ')');
	assert_non_null(p);
	p += 2;
	for (field = 3; field < 18 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	assert_non_null(p);
	return strtol(p, NULL, 10);
}

struct holder {
	pthread_mutex_t *lock;
	volatile int held, waited_on;
	long prio_alone, prio_waited_on;
};

static void *hold_the_lock(void *arg)
{
	struct holder *h = arg;

	pthread_mutex_lock(h->lock);
	h->prio_alone = effective_priority();
	__atomic_store_n(&h->held, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&h->waited_on, __ATOMIC_SEQ_CST))
		usleep(1000);
	/* The real-time thread is asleep on the lock, or about to be: give it a moment. */
	usleep(50000);
	h->prio_waited_on = effective_priority();
	pthread_mutex_unlock(h->lock);
	return NULL;
}

/*
 * A real-time thread that waits for the lock lends its priority to the ordinary thread
 * holding it, for as long as it holds it.
 */
static void test_inheriting_lock_lends_the_waiters_priority(void **state)
{
	pthread_mutex_t lock;
	struct holder h = { .lock = &lock };
	pthread_t t;
	int ret;

	(void)state;
	assert_int_equal(util__mutex_init_inherit(&lock), 0);
	assert_int_equal(pthread_create(&t, NULL, hold_the_lock, &h), 0);
	while (!__atomic_load_n(&h.held, __ATOMIC_SEQ_CST))
		usleep(1000);
	ret = util__switchover_priority(true);
	if (ret == -EPERM) {
		__atomic_store_n(&h.waited_on, 1, __ATOMIC_SEQ_CST);
		pthread_join(t, NULL);
		pthread_mutex_destroy(&lock);
		skip();
	}
	assert_int_equal(ret, 0);
	__atomic_store_n(&h.waited_on, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&lock);
	pthread_mutex_unlock(&lock);
	assert_int_equal(util__switchover_priority(false), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	pthread_mutex_destroy(&lock);
	assert_true(h.prio_alone >= 0); /* an ordinary thread: 0-39 (nice -20 to 19) */
	assert_int_equal(h.prio_waited_on, -2);
}

static void *spin_for_a_while(void *arg)
{
	uint64_t end = util__now_ns() + 200000000ULL;

	(void)arg;
	while (util__now_ns() < end)
		;
	return NULL;
}

static void pin_to_cpu0(pthread_t t)
{
	cpu_set_t one;

	CPU_ZERO(&one);
	CPU_SET(0, &one);
	assert_int_equal(pthread_setaffinity_np(t, sizeof(one), &one), 0);
}

/* Two busy threads on one CPU: each waits, runnable, while the other runs. */
static void test_cpu_wait_grows_while_another_thread_has_the_cpu(void **state)
{
	cpu_set_t before;
	pthread_t t;
	uint64_t w0, w1;

	(void)state;
	if (access("/proc/thread-self/schedstat", R_OK))
		skip(); /* a kernel without schedstat counts */
	assert_int_equal(pthread_getaffinity_np(pthread_self(), sizeof(before), &before), 0);
	pin_to_cpu0(pthread_self());
	assert_int_equal(pthread_create(&t, NULL, spin_for_a_while, NULL), 0);
	pin_to_cpu0(t);
	w0 = util__thread_cpu_wait_ns();
	spin_for_a_while(NULL);
	w1 = util__thread_cpu_wait_ns();
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(pthread_setaffinity_np(pthread_self(), sizeof(before), &before), 0);
	/* Sharing a CPU for 200 ms of wall time, it waited for a good part of it. */
	assert_true(w1 - w0 > 20000000ULL);
}

static void *nice_of_new_thread(void *arg)
{
	if (util__thread_nice(0, (int *)arg))
		*(int *)arg = -100;
	return NULL;
}

static void test_thread_nice(void **state)
{
	int before, nice = 99, other = 99;
	pthread_t t;

	(void)state;
	assert_int_equal(util__thread_nice(0, &before), 0);
	if (before >= 19)
		skip();
	/* Raising it takes no privilege; it is this thread's, read back by its id. */
	assert_int_equal(util__set_thread_nice(gettid(), before + 1), 0);
	assert_int_equal(util__thread_nice(0, &nice), 0);
	assert_int_equal(nice, before + 1);
	assert_int_equal(util__thread_nice(gettid(), &nice), 0);
	assert_int_equal(nice, before + 1);
	/* A thread started now inherits it (why the VMM sets each vCPU's by its id). */
	assert_int_equal(pthread_create(&t, NULL, nice_of_new_thread, &other), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(other, before + 1);
	if (!util__may_lower_nice(before))
		skip();
	assert_int_equal(util__set_thread_nice(0, before), 0);
	assert_int_equal(util__thread_nice(0, &nice), 0);
	assert_int_equal(nice, before);
	assert_int_equal(util__thread_nice(-5, &nice), -ESRCH);
}

/* In a child: without CAP_SYS_NICE, RLIMIT_NICE alone decides. 0 when all held. */
static int may_lower_without_cap(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3];
	struct rlimit rl;

	if (syscall(SYS_capget, &hdr, caps))
		return 10;
	caps[CAP_SYS_NICE / 32].effective &= ~(1U << (CAP_SYS_NICE % 32));
	if (syscall(SYS_capset, &hdr, caps) || getrlimit(RLIMIT_NICE, &rl))
		return 11;
	rl.rlim_cur = 0;
	if (setrlimit(RLIMIT_NICE, &rl))
		return 12;
	if (util__may_lower_nice(0) || util__may_lower_nice(19))
		return 1;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 20)
		return 0; /* cannot raise the soft limit to 20 here */
	rl.rlim_cur = 20;
	if (setrlimit(RLIMIT_NICE, &rl))
		return 13;
	/* 20 - nice: back to 0 allowed, below it not. */
	if (!util__may_lower_nice(0) || !util__may_lower_nice(5) || util__may_lower_nice(-1))
		return 2;
	return 0;
}

static void test_may_lower_nice_follows_the_rlimit(void **state)
{
	int status;
	pid_t pid;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (!pid)
		_exit(may_lower_without_cap());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_on_and_off),
		cmocka_unit_test(test_thread_nice),
		cmocka_unit_test(test_may_lower_nice_follows_the_rlimit),
		cmocka_unit_test(test_inheriting_lock_lends_the_waiters_priority),
		cmocka_unit_test(test_cpu_wait_grows_while_another_thread_has_the_cpu),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
