// SPDX-License-Identifier: GPL-2.0
/* The scheduler's placement and its choice of queued moves (pure functions). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "godwit/cluster/sched.h"

#define GiB (1ULL << 30)
#define MiB (1ULL << 20)

static void hosts3(struct sched_host *h)
{
	memset(h, 0, 3 * sizeof(*h));
	h[0] = (struct sched_host){"host-a", true, false, 8, 4 * GiB, 2, 3 * GiB, 0, NULL, 0};
	h[1] = (struct sched_host){"host-b", true, false, 8, 4 * GiB, 2, 1 * GiB, 0, NULL, 0};
	h[2] = (struct sched_host){"host-c", true, false, 8, 4 * GiB, 2, 2 * GiB, 0, NULL, 0};
}

static void test_place_takes_the_most_free_memory(void **state)
{
	struct sched_host h[3];
	char why[256];

	(void)state;
	hosts3(h);
	assert_int_equal(sched__place(h, 3, 1 * GiB, 1, -1, why, sizeof(why)), 1);
	h[1].maintenance = true;
	assert_int_equal(sched__place(h, 3, 1 * GiB, 1, -1, why, sizeof(why)), 2);
	h[2].up = false;
	assert_int_equal(sched__place(h, 3, 1 * GiB, 1, -1, why, sizeof(why)), 0);
	assert_int_equal(sched__place(h, 3, 1 * GiB, 1, 0, why, sizeof(why)), -1);
	/* vCPUs count as well as memory. */
	hosts3(h);
	h[1].cpus_used = 8;
	assert_int_equal(sched__place(h, 3, 1 * GiB, 1, -1, why, sizeof(why)), 2);
}

static void test_place_says_why_nothing_fits(void **state)
{
	struct sched_host h[3];
	char why[256];

	(void)state;
	hosts3(h);
	h[1].maintenance = true;
	h[2].up = false;
	assert_int_equal(sched__place(h, 3, 2 * GiB, 2, -1, why, sizeof(why)), -1);
	assert_string_equal(why, "no host has 2 GiB and 2 vCPUs free: host-a 1 GiB and 6 vCPUs, "
				 "host-b in maintenance, host-c down");
	h[2].state = "in standby";
	assert_int_equal(sched__place(h, 3, 2 * GiB, 2, -1, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "host-c in standby"));
	assert_int_equal(sched__place(h, 0, 2 * GiB, 2, -1, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "no host is up"));
}

static void test_pick_keeps_the_per_host_limit(void **state)
{
	struct sched_limits lim = {.per_host = 1, .cluster = 128};
	struct sched_task t[2] = {{0, 1, 128 * MiB, 1, NULL}, {0, 2, 128 * MiB, 1, NULL}};
	struct sched_decision d[2];
	struct sched_host h[3];

	(void)state;
	hosts3(h);
	assert_int_equal(sched__pick(h, 3, t, 2, 0, &lim, d), 1);
	assert_int_equal(d[0].verdict, SCHED_START);
	assert_int_equal(d[0].dst, 1);
	assert_int_equal(d[1].verdict, SCHED_WAIT);
	assert_int_equal(h[0].slots_used, 1);
	assert_int_equal(h[1].slots_used, 1);
	assert_int_equal(h[1].mem_used, 1 * GiB + 128 * MiB);
	/* Once the first has ended (its slots given back), the second starts. */
	hosts3(h);
	assert_int_equal(sched__pick(h, 3, &t[1], 1, 0, &lim, d), 1);
	assert_int_equal(d[0].dst, 2);
	/* A destination's slot counts too: a busy host-b makes a move to it wait. */
	hosts3(h);
	h[1].slots_used = 1;
	assert_int_equal(sched__pick(h, 3, t, 1, 0, &lim, d), 0);
	assert_int_equal(d[0].verdict, SCHED_WAIT);
}

static void test_a_slow_link_caps_a_hosts_moves_at_4(void **state)
{
	struct sched_limits lim = {.per_host = 8, .cluster = 128};
	struct sched_task t[8];
	struct sched_decision d[8];
	struct sched_host h[3];
	int i;

	(void)state;
	assert_int_equal(sched__host_slots(8, 0), 8);	 /* unknown: the limit */
	assert_int_equal(sched__host_slots(8, 1000), 4); /* 1 GbE */
	assert_int_equal(sched__host_slots(8, 9999), 4);
	assert_int_equal(sched__host_slots(8, 10000), 8); /* 10 GbE */
	assert_int_equal(sched__host_slots(2, 1000), 2);  /* a lower limit stands */
	assert_int_equal(sched__host_slots(16, 25000), 16);
	for (i = 0; i < 8; i++)
		t[i] = (struct sched_task){0, -1, 64 * MiB, 1, NULL};
	/* host-a on 1 GbE: 4 of its 8 moves start, the rest wait. */
	hosts3(h);
	h[0].link_mbit = 1000;
	assert_int_equal(sched__pick(h, 3, t, 8, 0, &lim, d), 4);
	assert_int_equal(h[0].slots_used, 4);
	assert_int_equal(d[4].verdict, SCHED_WAIT);
	/* On 10 GbE all 8, shared between the two destinations. */
	hosts3(h);
	h[0].link_mbit = 10000;
	assert_int_equal(sched__pick(h, 3, t, 8, 0, &lim, d), 8);
	/* A destination on 1 GbE takes 4, the other the rest. */
	hosts3(h);
	h[1].link_mbit = 1000;
	assert_int_equal(sched__pick(h, 3, t, 8, 0, &lim, d), 8);
	assert_int_equal(h[1].slots_used, 4);
	assert_int_equal(h[2].slots_used, 4);
	/* A move named to a full 1 GbE destination waits. */
	hosts3(h);
	h[1].link_mbit = 1000;
	h[1].slots_used = 4;
	t[0].dst = 1;
	assert_int_equal(sched__pick(h, 3, t, 1, 0, &lim, d), 0);
	assert_int_equal(d[0].verdict, SCHED_WAIT);
}

static void test_pick_is_fair_between_hosts(void **state)
{
	struct sched_limits lim = {.per_host = 8, .cluster = 4};
	struct sched_task t[11];
	struct sched_decision d[11];
	struct sched_host h[6];
	int i, from_b = 0;

	(void)state;
	memset(h, 0, sizeof(h));
	for (i = 0; i < 6; i++)
		h[i] = (struct sched_host){"h", true, false, 64, 64 * GiB, 0, 0, 0, NULL, 0};
	h[0].name = "host-a";
	h[1].name = "host-b";
	/* host-a's evacuation queued first, with 10 moves; then one from host-b. */
	for (i = 0; i < 10; i++)
		t[i] = (struct sched_task){0, -1, 64 * MiB, 1, NULL};
	t[10] = (struct sched_task){1, -1, 64 * MiB, 1, NULL};
	assert_int_equal(sched__pick(h, 6, t, 11, 0, &lim, d), 4);
	from_b = d[10].verdict == SCHED_START;
	assert_true(from_b);
	/* The cluster limit counts what already runs. */
	for (i = 0; i < 6; i++)
		h[i].slots_used = 0;
	assert_int_equal(sched__pick(h, 6, t, 11, 3, &lim, d), 1);
	assert_int_equal(sched__pick(h, 6, t, 11, 4, &lim, d), 0);
}

static void test_pick_reports_a_move_that_fits_nowhere(void **state)
{
	struct sched_limits lim = {.per_host = 8, .cluster = 128};
	struct sched_task t[2] = {{0, -1, 8 * GiB, 1, NULL}, {0, 1, 128 * MiB, 1, NULL}};
	struct sched_decision d[2];
	struct sched_host h[3];

	(void)state;
	hosts3(h);
	h[1].maintenance = true;
	assert_int_equal(sched__pick(h, 3, t, 2, 0, &lim, d), 0);
	assert_int_equal(d[0].verdict, SCHED_NOROOM);
	assert_int_equal(d[1].verdict, SCHED_NOROOM); /* host-b is in maintenance */
}

static void test_must_rules_bar_hosts(void **state)
{
	struct sched_limits lim = {8, 128};
	bool allowed[3] = {true, false, true};
	struct sched_decision d[2];
	struct sched_task t[2];
	struct sched_host h[3];
	char why[256];

	(void)state;
	hosts3(h);
	/* host-b has the most room, but the rule keeps the VM off it. */
	assert_int_equal(sched__place_on(h, 3, 1 * GiB, 1, -1, allowed, why, sizeof(why)), 2);
	/* Leaving host-a (the rule's only other host): nowhere, and the reason says so. */
	allowed[2] = false;
	assert_int_equal(sched__place_on(h, 3, 1 * GiB, 1, 0, allowed, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "host-b (ruled out)"));
	assert_non_null(strstr(why, "host-c (ruled out)"));
	t[0] = (struct sched_task){0, -1, 64 * MiB, 1, allowed};
	t[1] = (struct sched_task){0, 1, 64 * MiB, 1, allowed};
	assert_int_equal(sched__pick(h, 3, t, 2, 0, &lim, d), 0);
	assert_int_equal(d[0].verdict, SCHED_NOROOM);
	assert_int_equal(d[1].verdict, SCHED_NOROOM); /* a named destination it may not use */
	allowed[2] = true;
	assert_int_equal(sched__pick(h, 3, t, 1, 0, &lim, d), 1);
	assert_int_equal(d[0].dst, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_place_takes_the_most_free_memory),
	    cmocka_unit_test(test_place_says_why_nothing_fits),
	    cmocka_unit_test(test_pick_keeps_the_per_host_limit),
	    cmocka_unit_test(test_a_slow_link_caps_a_hosts_moves_at_4),
	    cmocka_unit_test(test_pick_is_fair_between_hosts),
	    cmocka_unit_test(test_pick_reports_a_move_that_fits_nowhere),
	    cmocka_unit_test(test_must_rules_bar_hosts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
