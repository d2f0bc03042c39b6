// SPDX-License-Identifier: GPL-2.0
/* Host groups and placement rules: their checks, conflicts and where "must" lets a VM run. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "godwit/cluster/rules.h"

static json_t *groups(void)
{
	return json_pack("{s:{s:s, s:[s, s]}, s:{s:s, s:[s]}, s:{s:s, s:[s, s]}}", "ab", "name",
			 "ab", "hosts", "host-a", "host-b", "c", "name", "c", "hosts", "host-c",
			 "bc", "name", "bc", "hosts", "host-b", "host-c");
}

static json_t *host_rule(const char *name, const char *vm, const char *group, bool must, bool not )
{
	return json_pack("{s:s, s:s, s:[s], s:s, s:b, s:b}", "name", name, "kind", "host", "vms",
			 vm, "group", group, "must", must, "not", not );
}

static int check(json_t *rule, json_t *g, json_t *rules)
{
	char err[300];
	int ret = rules__check(rule, g, rules, err, sizeof(err));

	if (!ret)
		json_object_set(rules, json_string_value(json_object_get(rule, "name")), rule);
	json_decref(rule);
	return ret;
}

static void test_group_records(void **state)
{
	char err[200];
	json_t *g;

	(void)state;
	g = json_pack("{s:s, s:[s, s]}", "name", "rack1", "hosts", "host-a", "host-b");
	assert_int_equal(rules__check_group(g, err, sizeof(err)), 0);
	json_decref(g);
	g = json_pack("{s:s, s:[s, s]}", "name", "rack1", "hosts", "host-a", "host-a");
	assert_int_equal(rules__check_group(g, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "named twice"));
	json_decref(g);
	g = json_pack("{s:s, s:[]}", "name", "rack1", "hosts");
	assert_int_equal(rules__check_group(g, err, sizeof(err)), -EINVAL);
	json_decref(g);
	g = json_pack("{s:s, s:[s]}", "name", "../x", "hosts", "host-a");
	assert_int_equal(rules__check_group(g, err, sizeof(err)), -EINVAL);
	json_decref(g);
}

static void test_rule_shapes(void **state)
{
	json_t *g = groups(), *rules = json_object();

	(void)state;
	assert_int_equal(check(json_pack("{s:s, s:s, s:[s, s]}", "name", "web", "kind", "apart",
					 "vms", "w1", "w2"),
			       g, rules),
			 0);
	/* One VM is no pair; an unknown kind; a group that does not exist. */
	assert_int_equal(
	    check(json_pack("{s:s, s:s, s:[s]}", "name", "x", "kind", "apart", "vms", "w1"), g,
		  rules),
	    -EINVAL);
	assert_int_equal(
	    check(json_pack("{s:s, s:s, s:[s, s]}", "name", "x", "kind", "near", "vms", "w1", "w2"),
		  g, rules),
	    -EINVAL);
	assert_int_equal(check(host_rule("x", "w1", "nowhere", true, false), g, rules), -ENOENT);
	/* A name used already. */
	assert_int_equal(check(json_pack("{s:s, s:s, s:[s, s]}", "name", "web", "kind", "together",
					 "vms", "w3", "w4"),
			       g, rules),
			 -EEXIST);
	json_decref(g);
	json_decref(rules);
}

static void test_conflicts(void **state)
{
	json_t *g = groups(), *rules = json_object();

	(void)state;
	assert_int_equal(check(json_pack("{s:s, s:s, s:[s, s, s]}", "name", "spread", "kind",
					 "apart", "vms", "w1", "w2", "w3"),
			       g, rules),
			 0);
	/* Two of them together: against "spread". One of them with another VM: fine. */
	assert_int_equal(check(json_pack("{s:s, s:s, s:[s, s]}", "name", "pair", "kind", "together",
					 "vms", "w3", "w1"),
			       g, rules),
			 -EEXIST);
	assert_int_equal(check(json_pack("{s:s, s:s, s:[s, s]}", "name", "pair", "kind", "together",
					 "vms", "w3", "db"),
			       g, rules),
			 0);
	/* Must run on {a, b} and must run on {c}: nowhere. On {b, c}: host-b is left. */
	assert_int_equal(check(host_rule("db-ab", "db", "ab", true, false), g, rules), 0);
	assert_int_equal(check(host_rule("db-c", "db", "c", true, false), g, rules), -EEXIST);
	assert_int_equal(check(host_rule("db-bc", "db", "bc", true, false), g, rules), 0);
	/* Must not run on {b, c} then leaves nothing; should not (a preference) is no conflict. */
	assert_int_equal(check(host_rule("db-not-bc", "db", "bc", true, true), g, rules), -EEXIST);
	assert_int_equal(check(host_rule("db-pref", "db", "bc", false, true), g, rules), 0);
	assert_string_equal(rules__group_user(rules, "bc"), "db-bc");
	assert_null(rules__group_user(rules, "c"));
	json_decref(g);
	json_decref(rules);
}

static void test_must_hosts(void **state)
{
	const char *hosts[] = {"host-a", "host-b", "host-c", "host-d"};
	json_t *g = groups(), *rules = json_object();
	bool allowed[4];
	char why[200];

	(void)state;
	assert_int_equal(rules__must_hosts(rules, g, "db", hosts, 4, allowed, why, sizeof(why)), 0);
	assert_true(allowed[0] && allowed[1] && allowed[2] && allowed[3]);
	assert_int_equal(check(host_rule("db-ab", "db", "ab", true, false), g, rules), 0);
	assert_int_equal(check(host_rule("db-not-c", "db", "c", true, true), g, rules), 0);
	assert_int_equal(check(host_rule("db-pref", "db", "bc", false, false), g, rules), 0);
	assert_int_equal(rules__must_hosts(rules, g, "db", hosts, 4, allowed, why, sizeof(why)), 2);
	assert_true(allowed[0] && allowed[1] && !allowed[2] && !allowed[3]);
	assert_non_null(strstr(why, "db must"));
	/* A VM no rule names runs anywhere; "must not" alone bars only its group. */
	assert_int_equal(check(host_rule("w-not-c", "w1", "c", true, true), g, rules), 0);
	assert_int_equal(rules__must_hosts(rules, g, "w1", hosts, 4, allowed, NULL, 0), 1);
	assert_true(allowed[0] && allowed[1] && !allowed[2] && allowed[3]);
	assert_int_equal(rules__must_hosts(rules, g, "w9", hosts, 4, allowed, NULL, 0), 0);
	json_decref(g);
	json_decref(rules);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_group_records),
	    cmocka_unit_test(test_rule_shapes),
	    cmocka_unit_test(test_conflicts),
	    cmocka_unit_test(test_must_hosts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
