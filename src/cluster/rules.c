// SPDX-License-Identifier: GPL-2.0
/* Host groups and placement rules: checks and questions, no I/O (rules.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "godwit/cluster/keys.h"
#include "godwit/cluster/rules.h"

/* A non-empty list of at most RULES_MAX_MEMBERS distinct names. */
static int check_names(const json_t *list, const char *what, size_t min, char *err, size_t errlen)
{
	const json_t *v, *w;
	size_t i, j;

	if (!json_is_array(list) || json_array_size(list) < min ||
	    json_array_size(list) > RULES_MAX_MEMBERS) {
		snprintf(err, errlen, "give %zu..%d %s", min, RULES_MAX_MEMBERS, what);
		return -EINVAL;
	}
	json_array_foreach(list, i, v)
	{
		if (!cluster__name_ok(json_string_value(v))) {
			snprintf(err, errlen, "%s: names of 1..63 letters, digits, '-' or '_'",
				 what);
			return -EINVAL;
		}
		for (j = 0; j < i; j++) {
			w = json_array_get(list, j);
			if (!strcmp(json_string_value(v), json_string_value(w))) {
				snprintf(err, errlen, "%s named twice", json_string_value(v));
				return -EINVAL;
			}
		}
	}
	return 0;
}

static bool has(const json_t *list, const char *name)
{
	const json_t *v;
	size_t i;

	json_array_foreach(list, i, v)
	{
		if (!strcmp(json_string_value(v) ? json_string_value(v) : "", name))
			return true;
	}
	return false;
}

int rules__check_group(const json_t *group, char *err, size_t errlen)
{
	const char *name = cluster__str(group, "name", NULL);

	if (!cluster__name_ok(name)) {
		snprintf(err, errlen, "group name '%s': use 1..63 letters, digits, '-' or '_'",
			 name ? name : "");
		return -EINVAL;
	}
	return check_names(json_object_get(group, "hosts"), "hosts", 1, err, errlen);
}

static bool is_bool(const json_t *o, const char *field)
{
	return json_is_boolean(json_object_get(o, field));
}

static int check_shape(const json_t *rule, const json_t *groups, char *err, size_t errlen)
{
	const char *name = cluster__str(rule, "name", NULL);
	const char *kind = cluster__str(rule, "kind", "");
	const json_t *vms = json_object_get(rule, "vms");

	if (!cluster__name_ok(name)) {
		snprintf(err, errlen, "rule name '%s': use 1..63 letters, digits, '-' or '_'",
			 name ? name : "");
		return -EINVAL;
	}
	if (!strcmp(kind, "together") || !strcmp(kind, "apart"))
		return check_names(vms, "VMs (at least two)", 2, err, errlen);
	if (strcmp(kind, "host")) {
		snprintf(err, errlen, "%s: kind is \"together\", \"apart\" or \"host\"", name);
		return -EINVAL;
	}
	if (check_names(vms, "VMs", 1, err, errlen))
		return -EINVAL;
	if (!is_bool(rule, "must") || !is_bool(rule, "not")) {
		snprintf(err, errlen, "%s: \"must\" and \"not\" are true or false", name);
		return -EINVAL;
	}
	if (!json_object_get(groups, cluster__str(rule, "group", ""))) {
		snprintf(err, errlen,
			 "%s: no host group '%s' (godwit cluster group add NAME HOST... makes one)",
			 name, cluster__str(rule, "group", ""));
		return -ENOENT;
	}
	return 0;
}

/* Two VMs that one rule keeps together and the other apart. */
static bool opposed(const json_t *a, const json_t *b)
{
	const json_t *va = json_object_get(a, "vms"), *vb = json_object_get(b, "vms"), *v;
	const char *ka = cluster__str(a, "kind", ""), *kb = cluster__str(b, "kind", "");
	size_t i, shared = 0;

	if (strcmp(ka, "host") == 0 || strcmp(kb, "host") == 0 || !strcmp(ka, kb))
		return false;
	json_array_foreach(va, i, v)
	{
		if (has(vb, json_string_value(v)))
			shared++;
	}
	return shared >= 2;
}

static bool must_rule_of(const json_t *r, const char *vm)
{
	return !strcmp(cluster__str(r, "kind", ""), "host") &&
	       json_is_true(json_object_get(r, "must")) && has(json_object_get(r, "vms"), vm);
}

/* Whether vm's must rules, `extra` among them, leave it a host of the groups. */
static bool must_leaves_a_host(const json_t *rules, const json_t *extra, const json_t *groups,
			       const char *vm)
{
	const json_t *first = NULL, *r, *h;
	const char *key;
	size_t i;

	if (must_rule_of(extra, vm) && !json_is_true(json_object_get(extra, "not")))
		first = extra;
	json_object_foreach((json_t *)rules, key, r)
	{
		if (!first && must_rule_of(r, vm) && !json_is_true(json_object_get(r, "not")))
			first = r;
	}
	if (!first)
		return true;
	json_array_foreach(
	    json_object_get(json_object_get(groups, cluster__str(first, "group", "")), "hosts"), i,
	    h)
	{
		const char *host = json_string_value(h);
		bool ok = true;

		json_object_foreach((json_t *)rules, key, r)
		{
			const json_t *g = json_object_get(groups, cluster__str(r, "group", ""));

			if (must_rule_of(r, vm) && has(json_object_get(g, "hosts"), host) ==
						       json_is_true(json_object_get(r, "not")))
				ok = false;
		}
		if (must_rule_of(extra, vm)) {
			const json_t *g = json_object_get(groups, cluster__str(extra, "group", ""));

			if (has(json_object_get(g, "hosts"), host) ==
			    json_is_true(json_object_get(extra, "not")))
				ok = false;
		}
		if (ok)
			return true;
	}
	return false;
}

int rules__check(const json_t *rule, const json_t *groups, const json_t *rules, char *err,
		 size_t errlen)
{
	const char *name = cluster__str(rule, "name", ""), *key;
	const json_t *r, *v;
	size_t i;
	int ret;

	ret = check_shape(rule, groups, err, errlen);
	if (ret)
		return ret;
	if (json_object_get(rules, name)) {
		snprintf(err, errlen, "a rule %s exists already (godwit cluster rule rm %s first)",
			 name, name);
		return -EEXIST;
	}
	json_object_foreach((json_t *)rules, key, r)
	{
		if (opposed(rule, r)) {
			snprintf(
			    err, errlen, "%s conflicts with rule %s: it keeps two of these VMs %s",
			    name, key,
			    !strcmp(cluster__str(r, "kind", ""), "apart") ? "apart" : "together");
			return -EEXIST;
		}
	}
	json_array_foreach(json_object_get(rule, "vms"), i, v)
	{
		if (!must_leaves_a_host(rules, rule, groups, json_string_value(v))) {
			snprintf(
			    err, errlen,
			    "%s conflicts with the must rules of %s: together they leave it no "
			    "host (godwit cluster rule list)",
			    name, json_string_value(v));
			return -EEXIST;
		}
	}
	return 0;
}

const char *rules__group_user(const json_t *rules, const char *group)
{
	const char *key;
	const json_t *r;

	json_object_foreach((json_t *)rules, key, r)
	{
		if (!strcmp(cluster__str(r, "group", ""), group))
			return key;
	}
	return NULL;
}

int rules__must_hosts(const json_t *rules, const json_t *groups, const char *vm,
		      const char *const *hosts, size_t nr_hosts, bool *allowed, char *why,
		      size_t whylen)
{
	const char *key;
	const json_t *r;
	size_t i;
	int n = 0;

	for (i = 0; i < nr_hosts; i++)
		allowed[i] = true;
	if (why && whylen)
		why[0] = '\0';
	json_object_foreach((json_t *)rules, key, r)
	{
		const json_t *g = json_object_get(groups, cluster__str(r, "group", ""));
		bool not = json_is_true(json_object_get(r, "not"));

		if (!must_rule_of(r, vm))
			continue;
		n++;
		for (i = 0; i < nr_hosts; i++) {
			if (allowed[i] && has(json_object_get(g, "hosts"), hosts[i]) == not ) {
				allowed[i] = false;
				if (why && whylen && !why[0])
					snprintf(why, whylen, "rule %s: %s must%s run on group %s",
						 key, vm, not ? " not" : "",
						 cluster__str(r, "group", ""));
			}
		}
	}
	return n;
}
