// SPDX-License-Identifier: GPL-2.0
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>

#include "godwit/x86.h"

static void test_patch_sets_apic_ids(void **state)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 3 * sizeof(c->entries[0]));

	(void)state;
	c->nent = 3;
	c->entries[0] = (struct kvm_cpuid_entry2){ .function = 1, .ebx = 0xaabb1234, .ecx = 1 };
	c->entries[1] = (struct kvm_cpuid_entry2){ .function = 0xb, .index = 1, .edx = 77 };
	c->entries[2] = (struct kvm_cpuid_entry2){ .function = 7, .ebx = 0x55 };
	x86__cpuid_patch(c, 5, 8);
	assert_int_equal(c->entries[0].ebx >> 24, 5);
	assert_int_equal((c->entries[0].ebx >> 16) & 0xff, 8);
	assert_int_equal(c->entries[0].ebx & 0xffff, 0x1234);
	assert_int_equal(c->entries[0].ecx, 1U | (1U << 31));
	assert_int_equal(c->entries[1].edx, 5);
	assert_int_equal(c->entries[2].ebx, 0x55);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_patch_sets_apic_ids),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
