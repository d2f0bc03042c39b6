// SPDX-License-Identifier: GPL-2.0
/*
 * Stopping auto-converge's timer (migration's pause does) waits for nothing: not for
 * its thread, which may wait long for a CPU on a loaded host, nor for vm->lock. The
 * timer starts again after a stop, and vm__stop_throttle waits for its thread to end.
 * The vCPUs here have no threads, so the timer's kicks reach nobody.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <time.h>

#include "godwit/vm.h"

/* How long a stop may take before it is taken to hang (a bound, not a speed). */
#define HANG_S 10

static struct vm *vm;
static sem_t held, release, stopped;

static int setup(void **state)
{
	(void)state;
	vm = calloc(1, sizeof(*vm));
	assert_non_null(vm);
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	vm->nr_vcpus = 2;
	vm->state = VM_RUNNING;
	assert_int_equal(sem_init(&held, 0, 0), 0);
	assert_int_equal(sem_init(&release, 0, 0), 0);
	assert_int_equal(sem_init(&stopped, 0, 0), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	vm__stop_throttle(vm);
	assert_false(vm->throttle_started);
	sem_destroy(&held);
	sem_destroy(&release);
	sem_destroy(&stopped);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
	return 0;
}

/* Holds vm->lock, as a thread that has it and no CPU does, until released. */
static void *holder(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&vm->lock);
	sem_post(&held);
	sem_wait(&release);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

static void *stopper(void *arg)
{
	(void)arg;
	vm__set_throttle(vm, 0);
	sem_post(&stopped);
	return NULL;
}

static void test_stop_waits_for_no_thread(void **state)
{
	struct timespec until;
	pthread_t h, s;
	int ret;

	(void)state;
	vm__set_vcpu_throttle(vm, 1, 50);
	assert_true(vm->throttle_started);
	/* The timer's thread cannot leave its wait while the lock is held. */
	assert_int_equal(pthread_create(&h, NULL, holder, NULL), 0);
	sem_wait(&held);
	assert_int_equal(pthread_create(&s, NULL, stopper, NULL), 0);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += HANG_S;
	do
		ret = sem_timedwait(&stopped, &until);
	while (ret && errno == EINTR);
	sem_post(&release);
	pthread_join(h, NULL);
	pthread_join(s, NULL);
	assert_int_equal(ret, 0);
	assert_int_equal(vm->throttle_pct, 0);
}

static void test_starts_again_after_a_stop(void **state)
{
	(void)state;
	vm__set_throttle(vm, 75);
	vm__set_throttle(vm, 0);
	vm__set_throttle(vm, 75);
	assert_true(vm->throttle_started);
	assert_int_equal(vm->throttle_pct, 75);
	pthread_mutex_lock(&vm->lock);
	assert_true(vm->throttle_running);
	pthread_mutex_unlock(&vm->lock);
	vm__stop_throttle(vm);
	assert_false(vm->throttle_started);
	assert_false(vm->throttle_running);
	/* And after one that was waited for. */
	vm__set_vcpu_throttle(vm, 0, 50);
	assert_true(vm->throttle_started);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_stop_waits_for_no_thread, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_starts_again_after_a_stop, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
