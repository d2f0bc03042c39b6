// SPDX-License-Identifier: GPL-2.0
/*
 * The progress of an outgoing migration as `godwit migrate` shows it: from the
 * source's figures through the API's JSON (vm_api__migration_json) to the line the
 * client prints. Guest RAM moved and still dirty, and the bytes on the wire, apart:
 * compressed pages once made a move of 33,424 pages read "0 MiB sent".
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "godwit/migrate.h"
#include "godwit/vm_api.h"

static void line_of(const struct migrate_stats *st, char *buf, size_t len)
{
	json_t *j = vm_api__migration_json(st);

	assert_non_null(j);
	migrate_cli__progress(j, buf, len);
	json_decref(j);
}

static void assert_contains(const char *line, const char *want)
{
	if (!strstr(line, want))
		fail_msg("'%s' not in '%s'", want, line);
}

/* make demo's move: 33,424 pages of which LZ4 kept all but 757 KB off the wire. */
static void test_compressed_move_shows_guest_ram(void **state)
{
	struct migrate_stats st = {
		.status = MIG_COMPLETED, .rounds = 4, .ram_bytes = GiB, .bytes_sent = 757000,
		.pages_sent = 33424, .zero_pages = 0, .lz4_pages = 33424, .bandwidth = 1500000000,
		.total_ms = 421,
	};
	char line[256];
	json_t *j;

	(void)state;
	j = vm_api__migration_json(&st);
	assert_non_null(j);
	/* The API says it too: 33,424 pages of 4 KiB. */
	assert_int_equal(json_integer_value(json_object_get(j, "ram_moved_bytes")),
			 33424ULL * 4096);
	assert_int_equal(json_integer_value(json_object_get(j, "bytes_sent")), 757000);
	json_decref(j);

	line_of(&st, line, sizeof(line));
	assert_contains(line, "completed: round 4");
	assert_contains(line, "guest RAM 130.6 MiB moved");
	assert_contains(line, "0.0 MiB dirty");
	assert_contains(line, "0.7 MiB on the wire");
	assert_contains(line, "moved (1500 MB/s)");
}

/* While it runs: zero pages moved too (as ZERO runs), and the set still dirty. */
static void test_active_move_shows_dirty_guest_ram(void **state)
{
	struct migrate_stats st = {
		.status = MIG_ACTIVE, .rounds = 2, .bytes_sent = 3 * MiB / 2,
		.pages_sent = 256, .zero_pages = 256, .remaining_bytes = 12 * MiB + 200 * KiB,
		.throttle_pct = 20, .total_ms = 77,
	};
	char line[256];

	(void)state;
	line_of(&st, line, sizeof(line));
	assert_contains(line, "active: round 2");
	assert_contains(line, "guest RAM 2.0 MiB moved");
	assert_contains(line, "12.2 MiB dirty");
	assert_contains(line, "1.5 MiB on the wire");
	assert_contains(line, "throttle 20%");
	assert_contains(line, "77 ms");
}

/* Large moves read in GiB. */
static void test_large_move_in_gib(void **state)
{
	struct migrate_stats st = {
		.status = MIG_ACTIVE, .rounds = 1, .bytes_sent = 500 * GiB + 1,
		.pages_sent = 100 * GiB / 4096, .zero_pages = 28 * GiB / 4096,
		.remaining_bytes = 20 * GiB,
	};
	char line[256];

	(void)state;
	line_of(&st, line, sizeof(line));
	assert_contains(line, "guest RAM 128.0 GiB moved");
	assert_contains(line, "20.0 GiB dirty");
	assert_contains(line, "500.0 GiB on the wire");
}

/* A source older than ram_moved_bytes: the client counts its pages. */
static void test_older_source_without_ram_moved(void **state)
{
	json_t *st = json_pack("{s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:i, s:I}", "status",
			       "active", "rounds", 1, "bytes_sent", (json_int_t)300000,
			       "pages_sent", (json_int_t)1024, "zero_pages", (json_int_t)256,
			       "remaining_bytes", (json_int_t)0, "bandwidth", (json_int_t)0,
			       "throttle_pct", 0, "total_ms", (json_int_t)5);
	char line[256];

	(void)state;
	assert_non_null(st);
	migrate_cli__progress(st, line, sizeof(line));
	json_decref(st);
	assert_contains(line, "guest RAM 5.0 MiB moved");
	assert_contains(line, "0.3 MiB on the wire");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_compressed_move_shows_guest_ram),
		cmocka_unit_test(test_active_move_shows_dirty_guest_ram),
		cmocka_unit_test(test_large_move_in_gib),
		cmocka_unit_test(test_older_source_without_ram_moved),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
