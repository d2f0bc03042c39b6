// SPDX-License-Identifier: GPL-2.0
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/memory.h"

static int dirty(struct guest_mem *m, uint64_t pfn)
{
	return !!(m->vmm_dirty[pfn / (8 * sizeof(long))] & (1UL << (pfn % (8 * sizeof(long)))));
}

static void test_rejects_bad_sizes(void **state)
{
	struct guest_mem m;

	(void)state;
	assert_int_equal(guest_mem__init(&m, 0), -EINVAL);
	assert_int_equal(guest_mem__init(&m, 3 * MiB), -EINVAL);
}

static void test_small_layout_is_one_region(void **state)
{
	struct guest_mem m;

	(void)state;
	assert_int_equal(guest_mem__init(&m, 64 * MiB), 0);
	assert_int_equal(m.nr_regions, 1);
	assert_int_equal(m.regions[0].gpa, 0);
	assert_int_equal(m.regions[0].size, 64 * MiB);
	assert_non_null(guest_mem__ptr(&m, 64 * MiB - 4096, 4096));
	assert_null(guest_mem__ptr(&m, 64 * MiB - 4096, 4097));
	assert_null(guest_mem__ptr(&m, UINT64_MAX, 2));
	assert_null(guest_mem__ptr(&m, 4096, UINT64_MAX));
	guest_mem__exit(&m);
}

static void test_large_layout_skips_hole(void **state)
{
	struct guest_mem m;
	uint8_t b = 0x5a;

	(void)state;
	/* memfd is sparse: 5 GiB costs nothing until touched. */
	assert_int_equal(guest_mem__init(&m, 5 * GiB), 0);
	assert_int_equal(m.nr_regions, 2);
	assert_int_equal(m.regions[1].gpa, MEM_HOLE_END);
	assert_int_equal(m.regions[1].size, 2 * GiB);
	assert_null(guest_mem__ptr(&m, MEM_HOLE_START, 1));
	assert_null(guest_mem__ptr(&m, MEM_HOLE_START - 1, 2));
	assert_int_equal(guest_mem__write(&m, MEM_HOLE_START, &b, 1), -EFAULT);
	assert_int_equal(guest_mem__write(&m, MEM_HOLE_END, &b, 1), 0);
	assert_int_equal(guest_mem__gpa_to_offset(&m, MEM_HOLE_END), MEM_HOLE_START);
	assert_int_equal(guest_mem__offset_to_gpa(&m, MEM_HOLE_START), MEM_HOLE_END);
	assert_int_equal(guest_mem__offset_to_gpa(&m, 4096), 4096);
	assert_true(dirty(&m, MEM_HOLE_START / 4096));
	assert_int_equal(guest_mem__gpa_to_offset(&m, MEM_HOLE_START + 4096), -1);
	guest_mem__exit(&m);
}

static void test_write_marks_every_touched_page(void **state)
{
	struct guest_mem m;
	uint8_t buf[8192 + 2];
	uint8_t back[sizeof(buf)];
	uint64_t pfn;

	(void)state;
	memset(buf, 0xab, sizeof(buf));
	assert_int_equal(guest_mem__init(&m, 64 * MiB), 0);
	/* Starts one byte before a page boundary: touches pages 4, 5, 6 and 7. */
	assert_int_equal(guest_mem__write(&m, 5 * 4096 - 1, buf, sizeof(buf)), 0);
	for (pfn = 0; pfn < 16; pfn++)
		assert_int_equal(dirty(&m, pfn), pfn >= 4 && pfn <= 7);
	assert_int_equal(guest_mem__read(&m, 5 * 4096 - 1, back, sizeof(back)), 0);
	assert_memory_equal(buf, back, sizeof(buf));
	assert_int_equal(guest_mem__read(&m, 64 * MiB - 1, back, 2), -EFAULT);
	assert_int_equal(guest_mem__write(&m, 64 * MiB, buf, 1), -EFAULT);
	guest_mem__exit(&m);
}

/* A large write takes the memfd path: the mapping must see it, and it is marked dirty. */
static void test_large_write_is_seen_through_the_mapping(void **state)
{
	const uint64_t len = 256 * 1024 + 100, gpa = MEM_HOLE_END + 3 * 4096 + 7;
	struct guest_mem m;
	uint8_t *buf = malloc(len);
	const uint8_t *p;
	uint64_t i, first = gpa / 4096, last = (gpa + len - 1) / 4096, pfn;

	(void)state;
	assert_non_null(buf);
	for (i = 0; i < len; i++)
		buf[i] = (uint8_t)(i * 7 + 1);
	assert_int_equal(guest_mem__init(&m, 5 * GiB), 0);
	/* Half of the range already mapped and written through the mapping. */
	memset(guest_mem__ptr(&m, gpa, len / 2), 0x55, len / 2);
	assert_int_equal(guest_mem__write(&m, gpa, buf, len), 0);
	p = guest_mem__ptr(&m, gpa, len);
	assert_non_null(p);
	assert_memory_equal(p, buf, len);
	for (pfn = first - 1; pfn <= last + 1; pfn++)
		assert_int_equal(dirty(&m, guest_mem__gpa_to_offset(&m, pfn * 4096) / 4096),
				 pfn >= first && pfn <= last);
	guest_mem__exit(&m);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rejects_bad_sizes),
		cmocka_unit_test(test_small_layout_is_one_region),
		cmocka_unit_test(test_large_layout_skips_hole),
		cmocka_unit_test(test_write_marks_every_touched_page),
		cmocka_unit_test(test_large_write_is_seen_through_the_mapping),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
