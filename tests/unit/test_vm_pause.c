// SPDX-License-Identifier: GPL-2.0
/*
 * vm__pause from a thread at real-time priority (migration's switchover) lends it to
 * the vCPU threads until they park, and takes it back before it returns, their nice
 * values unchanged; from an ordinary thread (the API's pause) it lends nothing. The
 * vCPU threads here park as src/core/vcpu.c's do, without KVM.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "godwit/util.h"
#include "godwit/vm.h"

#define NR_VCPUS 2
#define NICE	 10

struct parker {
	struct vm *vm;
	unsigned int id;
	int policy_parked; /* sched_getscheduler() when it parked */
	int nice_parked;
};

struct lab {
	struct vm *vm;
	struct parker p[NR_VCPUS];
	pthread_t t[NR_VCPUS];
	bool stop;
};

static struct lab lab;

static void *parker_thread(void *arg)
{
	struct parker *p = arg;
	struct vm *vm = p->vm;

	pthread_mutex_lock(&vm->lock);
	__atomic_store_n(&vm->vcpus[p->id].tid, gettid(), __ATOMIC_RELEASE);
	vm->nr_running++;
	pthread_cond_broadcast(&vm->cond);
	while (!lab.stop) {
		if (!vm->pause_requested) {
			pthread_cond_wait(&vm->cond, &vm->lock);
			continue;
		}
		p->policy_parked = sched_getscheduler(0) & ~SCHED_RESET_ON_FORK;
		if (util__thread_nice(0, &p->nice_parked))
			p->nice_parked = -100;
		vm->nr_paused++;
		pthread_cond_broadcast(&vm->cond);
		while (vm->pause_requested && !lab.stop)
			pthread_cond_wait(&vm->cond, &vm->lock);
		vm->nr_paused--;
		pthread_cond_broadcast(&vm->cond);
	}
	__atomic_store_n(&vm->vcpus[p->id].tid, 0, __ATOMIC_RELEASE);
	vm->nr_running--;
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

static int setup(void **state)
{
	unsigned int i;

	(void)state;
	lab.stop = false;
	lab.vm = calloc(1, sizeof(*lab.vm));
	assert_non_null(lab.vm);
	pthread_mutex_init(&lab.vm->lock, NULL);
	pthread_cond_init(&lab.vm->cond, NULL);
	lab.vm->nr_vcpus = NR_VCPUS;
	lab.vm->state = VM_RUNNING;
	for (i = 0; i < NR_VCPUS; i++) {
		lab.vm->vcpus[i].vm = lab.vm;
		lab.vm->vcpus[i].id = i;
		lab.p[i] = (struct parker){.vm = lab.vm, .id = i, .policy_parked = -1};
		assert_int_equal(pthread_create(&lab.t[i], NULL, parker_thread, &lab.p[i]), 0);
	}
	pthread_mutex_lock(&lab.vm->lock);
	while (lab.vm->nr_running < NR_VCPUS)
		pthread_cond_wait(&lab.vm->cond, &lab.vm->lock);
	pthread_mutex_unlock(&lab.vm->lock);
	/* A dirtier's nice (src/migrate/dirtiers.c) must survive the loan. */
	for (i = 0; i < NR_VCPUS; i++)
		assert_int_equal(vcpu__set_nice(&lab.vm->vcpus[i], NICE), 0);
	return 0;
}

static int teardown(void **state)
{
	unsigned int i;

	(void)state;
	util__switchover_priority(false);
	pthread_mutex_lock(&lab.vm->lock);
	lab.stop = true;
	pthread_cond_broadcast(&lab.vm->cond);
	pthread_mutex_unlock(&lab.vm->lock);
	for (i = 0; i < NR_VCPUS; i++)
		pthread_join(lab.t[i], NULL);
	pthread_cond_destroy(&lab.vm->cond);
	pthread_mutex_destroy(&lab.vm->lock);
	free(lab.vm);
	return 0;
}

static void test_realtime_pauser_lends_until_parked(void **state)
{
	unsigned int i;
	int nice;

	(void)state;
	if (util__switchover_priority(true) == -EPERM)
		skip(); /* neither CAP_SYS_NICE nor RLIMIT_RTPRIO here */
	assert_true(util__is_realtime());
	assert_int_equal(vm__pause(lab.vm), 0);
	for (i = 0; i < NR_VCPUS; i++) {
		pid_t tid = lab.vm->vcpus[i].tid;

		assert_int_equal(lab.p[i].policy_parked, SCHED_FIFO);
		assert_int_equal(lab.p[i].nice_parked, NICE);
		/* Back before vm__pause returns: the resumed guest runs at its own priority. */
		assert_int_equal(sched_getscheduler(tid), SCHED_OTHER);
		assert_int_equal(vcpu__nice(&lab.vm->vcpus[i], &nice), 0);
		assert_int_equal(nice, NICE);
	}
	/* The pauser keeps its own. */
	assert_true(util__is_realtime());
	assert_int_equal(vm__resume(lab.vm), 0);
}

static void test_ordinary_pauser_lends_nothing(void **state)
{
	unsigned int i;

	(void)state;
	assert_int_equal(util__switchover_priority(false), 0);
	assert_false(util__is_realtime());
	assert_int_equal(vm__pause(lab.vm), 0);
	for (i = 0; i < NR_VCPUS; i++)
		assert_int_equal(lab.p[i].policy_parked, SCHED_OTHER);
	assert_int_equal(vm__resume(lab.vm), 0);
}

/* A vCPU thread that has ended has no id to lend to (its tid may be another's by now). */
static void test_ended_thread_gets_nothing(void **state)
{
	(void)state;
	assert_int_equal(vcpu__set_realtime(&lab.vm->vcpus[NR_VCPUS], true), -ESRCH);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_realtime_pauser_lends_until_parked, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_ordinary_pauser_lends_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ended_thread_gets_nothing, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
