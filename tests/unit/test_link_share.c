// SPDX-License-Identifier: GPL-2.0
/* Moves from one host holding back around each other's pauses (link_share.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "godwit/link_share.h"
#include "godwit/util.h"

#define MS 1000000ULL
/* What returning at once may take on a loaded host: well under a claim's 50 ms. */
#define AT_ONCE (LINK_SHARE_MAX_WAIT_NS / 2)

struct lab {
	char dir[64], path[96];
	struct link_share a, b; /* two moves: two open files, as two processes have */
};

static int setup(void **state)
{
	struct lab *l = calloc(1, sizeof(*l));

	if (!l)
		return -1;
	snprintf(l->dir, sizeof(l->dir), "/var/tmp/godwit-share-XXXXXX");
	if (!mkdtemp(l->dir))
		return -1;
	/* A folder that is not there yet: opening makes it. */
	snprintf(l->path, sizeof(l->path), "%s/run/migrations.lock", l->dir);
	link_share__open(&l->a, l->path);
	link_share__open(&l->b, l->path);
	*state = l;
	return 0;
}

static int teardown(void **state)
{
	struct lab *l = *state;
	char run[80];

	link_share__close(&l->a);
	link_share__close(&l->b);
	unlink(l->path);
	snprintf(run, sizeof(run), "%s/run", l->dir);
	rmdir(run);
	rmdir(l->dir);
	free(l);
	return 0;
}

static uint64_t give_way_ns(struct link_share *s, const bool *cancelled)
{
	uint64_t t0 = util__now_ns();

	link_share__give_way(s, cancelled);
	return util__now_ns() - t0;
}

static void *release_later(void *arg)
{
	nanosleep(&(struct timespec){.tv_nsec = 20 * MS}, NULL);
	link_share__release(arg);
	return NULL;
}

static void test_a_claim_holds_the_others_back_until_released(void **state)
{
	struct lab *l = *state;
	pthread_t t;

	assert_true(l->a.fd >= 0 && l->b.fd >= 0);
	assert_true(give_way_ns(&l->b, NULL) < AT_ONCE); /* nobody claims */
	assert_int_equal(l->b.waits, 0);
	link_share__claim(&l->a);
	assert_true(l->a.claimed);
	assert_true(give_way_ns(&l->a, NULL) < AT_ONCE); /* its own claim holds nobody back */
	assert_int_equal(pthread_create(&t, NULL, release_later, &l->a), 0);
	assert_true(give_way_ns(&l->b, NULL) >= 15 * MS);
	pthread_join(t, NULL);
	assert_false(l->a.claimed);
	assert_int_equal(l->b.waits, 1);
	assert_true(l->b.waited_ns >= 15 * MS);
	assert_true(give_way_ns(&l->b, NULL) < AT_ONCE);
}

static void test_a_claim_that_stays_holds_back_once(void **state)
{
	struct lab *l = *state;
	bool cancel = true;

	link_share__claim(&l->a);
	assert_true(give_way_ns(&l->b, NULL) >= LINK_SHARE_MAX_WAIT_NS);
	/* The same claim still there: no more waiting for it. */
	assert_true(give_way_ns(&l->b, NULL) < AT_ONCE);
	assert_int_equal(l->b.waits, 1);
	/* A new claim, after the lane was seen clear: held back again, unless cancelled. */
	link_share__release(&l->a);
	link_share__give_way(&l->b, NULL);
	link_share__claim(&l->a);
	assert_true(give_way_ns(&l->b, &cancel) < AT_ONCE);
	assert_true(give_way_ns(&l->b, NULL) >= LINK_SHARE_MAX_WAIT_NS / 2);
	assert_int_equal(l->b.waits, 2);
}

static void test_a_claim_dies_with_its_file(void **state)
{
	struct lab *l = *state;

	link_share__claim(&l->a);
	link_share__close(&l->a); /* as when its process exits */
	assert_true(give_way_ns(&l->b, NULL) < AT_ONCE);
	assert_int_equal(l->b.waits, 0);
}

/* Each sees the other under way while both are open; a move's presence dies with it. */
static void test_others_under_way(void **state)
{
	struct lab *l = *state;

	assert_true(link_share__others(&l->a));
	assert_true(link_share__others(&l->b));
	link_share__close(&l->b);
	/* a looks again once LOOK_NS has passed since it last looked. */
	nanosleep(&(struct timespec){.tv_nsec = LINK_SHARE_LOOK_NS}, NULL);
	assert_false(link_share__others(&l->a));
	assert_false(link_share__others(&l->b)); /* closed: off */
}

static void test_off(void **state)
{
	struct link_share s;

	(void)state;
	link_share__open(&s, "none");
	assert_int_equal(s.fd, -1);
	link_share__claim(&s);
	assert_false(s.claimed);
	link_share__give_way(&s, NULL);
	assert_false(link_share__others(&s));
	link_share__release(&s);
	link_share__close(&s);
	/* A folder that cannot be made: off, not an error. */
	link_share__open(&s, "/proc/godwit-no-such/migrations.lock");
	assert_int_equal(s.fd, -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_a_claim_holds_the_others_back_until_released,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_claim_that_stays_holds_back_once, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_a_claim_dies_with_its_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_others_under_way, setup, teardown),
	    cmocka_unit_test(test_off),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
