// SPDX-License-Identifier: GPL-2.0
/*
 * A finished move's total and downtime (migrate__times): the guest's pause ends at
 * the destination's RESUMED, not when the source has cleaned up after it. In an
 * evacuation on a busy host one source reported a pause of 212 ms whose RESUMED had
 * come 0.85 ms after the vCPUs stopped (docs/bench.md, "Emptying a host through the
 * cluster").
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdint.h>

#include "godwit/migrate.h"

#define MS 1000000ULL

static void test_pause_ends_at_resumed_not_after_cleanup(void **state)
{
	struct migrate_stats st = {.start_ns = 5000 * MS};

	(void)state;
	/* Paused at 8 s, RESUMED 30.4 ms later, the source done 211 ms after that. */
	migrate__times(&st, 8000 * MS, 8030 * MS + 400000, 8241 * MS + 400000);
	assert_int_equal(st.downtime_ms, 30);
	assert_int_equal(st.total_ms, 3241);
}

static void test_sub_millisecond_pause(void **state)
{
	struct migrate_stats st = {.start_ns = 1};

	(void)state;
	migrate__times(&st, 2000 * MS, 2000 * MS + 850000, 2212 * MS);
	assert_int_equal(st.downtime_ms, 0);
	assert_int_equal(st.total_ms, 2211);
}

/* A move that never paused the guest, or whose pause never ended there, has no downtime. */
static void test_no_pause_no_downtime(void **state)
{
	struct migrate_stats st = {.start_ns = 0};

	(void)state;
	migrate__times(&st, 0, 0, 700 * MS);
	assert_int_equal(st.downtime_ms, 0);
	assert_int_equal(st.total_ms, 700);
	migrate__times(&st, 600 * MS, 0, 700 * MS);
	assert_int_equal(st.downtime_ms, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pause_ends_at_resumed_not_after_cleanup),
	    cmocka_unit_test(test_sub_millisecond_pause),
	    cmocka_unit_test(test_no_pause_no_downtime),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
