// SPDX-License-Identifier: GPL-2.0
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>

#include "godwit/bus.h"

struct fake {
	uint64_t last_offset;
	int calls;
};

static void fake_handle(void *opaque, struct bus_access *a)
{
	struct fake *f = opaque;

	f->calls++;
	f->last_offset = a->offset;
	if (!a->is_write)
		a->data[0] = 0x42;
}

static void test_dispatch_and_unclaimed(void **state)
{
	struct bus bus = { 0 };
	struct fake f = { 0 };
	uint8_t v = 0;
	struct bus_access a = { .addr = 0x3fd, .data = &v, .size = 1 };

	(void)state;
	assert_int_equal(bus__register(&bus, &(struct bus_device){ .base = 0x3f8, .len = 8,
		.handle = fake_handle, .opaque = &f, .name = "com1" }), 0);
	assert_true(bus__dispatch(&bus, &a));
	assert_int_equal(f.last_offset, 5);
	assert_int_equal(v, 0x42);
	a.addr = 0x400;
	assert_false(bus__dispatch(&bus, &a));
	assert_int_equal(v, 0xff);
	assert_int_equal(f.calls, 1);
}

static void test_rejects_overlap_and_wrap(void **state)
{
	struct bus bus = { 0 };
	struct fake f = { 0 };
	struct bus_device d = { .base = 0x3f8, .len = 8, .handle = fake_handle, .opaque = &f,
				.name = "a" };

	(void)state;
	assert_int_equal(bus__register(&bus, &d), 0);
	d.base = 0x3ff;
	assert_int_equal(bus__register(&bus, &d), -EBUSY);
	d.base = UINT64_MAX - 2;
	assert_int_equal(bus__register(&bus, &d), -EINVAL);
	d.base = 0x400;
	d.len = 0;
	assert_int_equal(bus__register(&bus, &d), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dispatch_and_unclaimed),
		cmocka_unit_test(test_rejects_overlap_and_wrap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
