// SPDX-License-Identifier: GPL-2.0
/* The migration link's speed: sysfs's text, and the interface that holds an address. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "godwit/cluster/link.h"

static void test_speed_text(void **state)
{
	(void)state;
	assert_int_equal(link__parse_speed("1000\n"), 1000);
	assert_int_equal(link__parse_speed("10000"), 10000);
	assert_int_equal(link__parse_speed("-1\n"), 0); /* a link down, or no speed */
	assert_int_equal(link__parse_speed("0\n"), 0);
	assert_int_equal(link__parse_speed("unknown\n"), 0);
	assert_int_equal(link__parse_speed(""), 0);
	assert_int_equal(link__parse_speed("100x"), 0);
	assert_int_equal(link__parse_speed("999999999999"), 0);
}

static void test_the_interface_of_an_address(void **state)
{
	char ifname[32];

	(void)state;
	/* Loopback has no speed: unknown, but the interface is found. */
	assert_int_equal(link__mbit("127.0.0.1", ifname, sizeof(ifname)), 0);
	assert_string_equal(ifname, "lo");
	/* Not an IPv4 address: nothing. */
	assert_int_equal(link__mbit("not an address", ifname, sizeof(ifname)), 0);
	assert_string_equal(ifname, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_speed_text),
	    cmocka_unit_test(test_the_interface_of_an_address),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
