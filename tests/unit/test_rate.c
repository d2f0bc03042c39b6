// SPDX-License-Identifier: GPL-2.0
/*
 * The rate arithmetic of a move over sizes where bytes x 10^9 no longer fits in
 * 64 bits (past about 17 GiB): the --max-bandwidth wait, the bandwidth and dirty-rate
 * estimates, the predicted pause and the destination's backlog.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdint.h>

#include "godwit/ram.h"
#include "godwit/rate.h"

#define NS_PER_S 1000000000ULL

static const uint64_t sizes_gib[] = { 20, 100, 500 };

/*
 * --max-bandwidth 100M (100 MiB/s): 20 GiB are due after 204.8 s, 100 GiB after
 * 1024 s, 500 GiB after 5120 s. A sender that is ahead waits the difference; one on
 * time or late does not.
 */
static void test_bandwidth_limit_holds_past_17_gib(void **state)
{
	const uint64_t max = 100 * MiB, start = 12345;
	unsigned int i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(sizes_gib); i++) {
		struct ram_sender s = { .max_bandwidth = max, .bw_start_ns = start,
					.bw_bytes = sizes_gib[i] * GiB };
		uint64_t due = sizes_gib[i] * 1024 / 100 * NS_PER_S +
			       sizes_gib[i] * 1024 % 100 * (NS_PER_S / 100);

		assert_int_equal(ram__bandwidth_wait_ns(&s, start), due);
		assert_int_equal(ram__bandwidth_wait_ns(&s, start + due - NS_PER_S), NS_PER_S);
		assert_int_equal(ram__bandwidth_wait_ns(&s, start + due / 2), due - due / 2);
		assert_int_equal(ram__bandwidth_wait_ns(&s, start + due), 0);
		assert_int_equal(ram__bandwidth_wait_ns(&s, start + 2 * due), 0);
	}
}

/* A fast link: 500 GiB at 10 GiB/s are due after 50 s; unlimited never waits. */
static void test_bandwidth_limit_fast_link_and_unlimited(void **state)
{
	struct ram_sender s = { .max_bandwidth = 10 * GiB, .bw_bytes = 500 * GiB };

	(void)state;
	assert_int_equal(ram__bandwidth_wait_ns(&s, 20 * NS_PER_S), 30 * NS_PER_S);
	s.max_bandwidth = 0;
	assert_int_equal(ram__bandwidth_wait_ns(&s, 0), 0);
}

/* Round 1 of a large guest: the estimate is what it moved over how long it took. */
static void test_bandwidth_estimate_of_large_rounds(void **state)
{
	unsigned int i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(sizes_gib); i++) {
		/* At 2 GiB/s: 10, 50 and 250 s. */
		uint64_t moved = sizes_gib[i] * GiB, ns = sizes_gib[i] / 2 * NS_PER_S;

		assert_int_equal(rate__bandwidth(0, moved, ns), 2 * GiB);
		/* EWMA 1/2 with an estimate of 1 GiB/s before. */
		assert_int_equal(rate__bandwidth(1 * GiB, moved, ns), 3 * GiB / 2);
	}
	/* A round of 4 MiB or less keeps the estimate; the first one sets it. */
	assert_int_equal(rate__bandwidth(7 * MiB, 4 * MiB, NS_PER_S), 7 * MiB);
	assert_int_equal(rate__bandwidth(0, 4 * MiB, NS_PER_S), 4 * MiB);
}

/* The dirty rate: dirty bytes over the time since the last sync. */
static void test_dirty_rate_of_large_sets(void **state)
{
	unsigned int i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(sizes_gib); i++) {
		uint64_t dirty = sizes_gib[i] * GiB;

		assert_int_equal(rate__per_s(dirty, 4 * NS_PER_S), dirty / 4);
		assert_int_equal(rate__per_s(dirty, 100 * NS_PER_S), dirty / 100);
		/* Page counts wrap the same way: pages x 10^9 past 18 G pages. */
		assert_int_equal(rate__per_s(dirty, NS_PER_S / 2), dirty * 2);
	}
	/* No time at all is taken as 1 ns. */
	assert_int_equal(rate__per_s(5, 0), 5 * NS_PER_S);
}

/*
 * The predicted pause (dirty bytes at the bandwidth, in us) and the destination's
 * backlog (pages not yet acknowledged, in ns) of large sets.
 */
static void test_time_to_move_large_sets(void **state)
{
	unsigned int i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(sizes_gib); i++) {
		uint64_t bytes = sizes_gib[i] * GiB;
		uint64_t pages = bytes / GUEST_PAGE_SIZE;

		assert_int_equal(rate__ns_for(bytes, 2 * GiB), sizes_gib[i] / 2 * NS_PER_S);
		assert_int_equal(rate__ns_for(bytes, 2 * GiB) / 1000, sizes_gib[i] / 2 * 1000000);
		assert_int_equal(rate__ns_for(pages * GUEST_PAGE_SIZE, 10 * GiB),
				 sizes_gib[i] * NS_PER_S / 10);
	}
	/* Rounding: down, as integer division. */
	assert_int_equal(rate__ns_for(1, 3), 333333333);
	assert_int_equal(rate__per_s(1, 3), 333333333);
}

/* What does not fit in 64 bits saturates instead of wrapping to a small number. */
static void test_saturates(void **state)
{
	(void)state;
	assert_int_equal(rate__ns_for(100 * GiB, 0), UINT64_MAX);
	/* 20 GiB at 1 byte/s: 6.8e8 years in ns does not fit. */
	assert_int_equal(rate__ns_for(20 * GiB, 1), UINT64_MAX);
	assert_int_equal(rate__per_s(UINT64_MAX, 1), UINT64_MAX);
	assert_int_equal(rate__per_s(UINT64_MAX, NS_PER_S), UINT64_MAX);
	assert_int_equal(rate__bandwidth(0, UINT64_MAX, 1), UINT64_MAX);
	/* The EWMA of two saturated estimates does not wrap either. */
	assert_int_equal(rate__bandwidth(UINT64_MAX, UINT64_MAX, 1), UINT64_MAX);
	assert_int_equal(rate__bandwidth(UINT64_MAX - 2, UINT64_MAX, 1), UINT64_MAX - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bandwidth_limit_holds_past_17_gib),
		cmocka_unit_test(test_bandwidth_limit_fast_link_and_unlimited),
		cmocka_unit_test(test_bandwidth_estimate_of_large_rounds),
		cmocka_unit_test(test_dirty_rate_of_large_sets),
		cmocka_unit_test(test_time_to_move_large_sets),
		cmocka_unit_test(test_saturates),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
