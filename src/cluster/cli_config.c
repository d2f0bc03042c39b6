// SPDX-License-Identifier: GPL-2.0
/* `godwit cluster group|rule|drs|dpm|host`: what the cluster is told (docs/cluster.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/cluster/keys.h"
#include "godwit/log.h"
#include "godwit/util.h"
#include "cli.h"

static bool flag(int argc, char **argv, const char *f)
{
	int i;

	for (i = 1; i < argc; i++)
		if (!strcmp(argv[i], f))
			return true;
	return false;
}

/* The words of argv from `from` on that are not --json, as a JSON list. */
static json_t *words(int argc, char **argv, int from)
{
	json_t *a = json_array();
	int i;

	for (i = from; i < argc; i++)
		if (strcmp(argv[i], "--json"))
			json_array_append_new(a, json_string(argv[i]));
	return a;
}

static void join(const json_t *list, char *out, size_t len)
{
	const json_t *v;
	size_t i, used = 0;

	out[0] = '\0';
	json_array_foreach(list, i, v)
	{
		if (used < len)
			used += (size_t)snprintf(out + used, len - used, "%s%s", i ? " " : "",
						 json_string_value(v));
	}
}

/* A listing: JSON as is, or one line per record. */
static int listing(const struct client *c, const char *path, const char *field, bool json,
		   void (*line)(const json_t *))
{
	json_t *reply, *r;
	size_t i;

	if (cluster_cli__ask(c, "GET", path, NULL, 200, &reply))
		return 1;
	if (json)
		cluster_cli__print_json(reply);
	else
		json_array_foreach(json_object_get(reply, field), i, r) line(r);
	json_decref(reply);
	return 0;
}

static int drop(const struct client *c, const char *what, const char *name)
{
	char path[160];
	json_t *reply;

	snprintf(path, sizeof(path), "/%ss/%s", what, name);
	if (cluster_cli__ask(c, "DELETE", path, NULL, 204, &reply))
		return 1;
	json_decref(reply);
	printf("%s %s removed\n", what, name);
	return 0;
}

/* `list [--json]` and `rm NAME` of groups and rules; -1 if argv is neither. */
static int list_or_drop(const struct client *c, int argc, char **argv, const char *what,
			void (*line)(const json_t *))
{
	const char *verb = argc > 1 ? argv[1] : "";
	char path[32];

	snprintf(path, sizeof(path), "/%ss", what);
	if (!strcmp(verb, "list") && argc <= 3)
		return listing(c, path, path + 1, flag(argc, argv, "--json"), line);
	if (!strcmp(verb, "rm") && argc == 3 && cluster__name_ok(argv[2]))
		return drop(c, what, argv[2]);
	return -1;
}

/* ---- group ---- */

static void group_line(const json_t *g)
{
	char hosts[1024];

	join(json_object_get(g, "hosts"), hosts, sizeof(hosts));
	printf("%-20s %s\n", cluster__str(g, "name", "?"), hosts);
}

int cluster_cli__group(const struct client *c, int argc, char **argv)
{
	const char *verb = argc > 1 ? argv[1] : "";
	json_t *req, *reply;
	int ret = list_or_drop(c, argc, argv, "group", group_line);

	if (ret >= 0)
		return ret;
	if (!strcmp(verb, "add") && argc >= 4 && cluster__name_ok(argv[2])) {
		req = json_pack("{s:s, s:o}", "name", argv[2], "hosts", words(argc, argv, 3));
		ret = cluster_cli__ask(c, "POST", "/groups", req, 201, &reply);
		json_decref(req);
		if (ret)
			return 1;
		if (flag(argc, argv, "--json"))
			cluster_cli__print_json(reply);
		else
			printf("group %s added\n", argv[2]);
		json_decref(reply);
		return 0;
	}
	pr_err("usage: godwit cluster group add NAME HOST... | rm NAME | list [--json]");
	return 2;
}

/* ---- rule ---- */

static void rule_line(const json_t *r)
{
	const char *kind = cluster__str(r, "kind", "?");
	char vms[1024];

	join(json_object_get(r, "vms"), vms, sizeof(vms));
	if (!strcmp(kind, "host"))
		printf("%-20s %s %s%s run on group %s\n", cluster__str(r, "name", "?"), vms,
		       json_is_true(json_object_get(r, "must")) ? "must" : "should",
		       json_is_true(json_object_get(r, "not")) ? " not" : "",
		       cluster__str(r, "group", "?"));
	else
		printf("%-20s %s %s\n", cluster__str(r, "name", "?"), vms,
		       !strcmp(kind, "apart") ? "apart" : "together");
}

static const char rule_usage[] =
    "usage: godwit cluster rule add NAME --together|--apart VM VM...\n"
    "       godwit cluster rule add NAME --vm VM [--vm VM]... --must|--should [--not] "
    "--run-on GROUP\n"
    "       godwit cluster rule list [--json] | rm NAME";

/* The rule `rule add NAME ...` describes, or NULL with the reason printed. */
static json_t *parse_rule(int argc, char **argv)
{
	json_t *r = json_pack("{s:s}", "name", argv[2]), *vms = json_array();
	const char *kind = NULL, *group = NULL;
	int i, must = -1;
	bool not = false;

	for (i = 3; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--together") || !strcmp(a, "--apart")) {
			kind = a + 2;
		} else if (!strcmp(a, "--must") || !strcmp(a, "--should")) {
			must = !strcmp(a, "--must");
		} else if (!strcmp(a, "--not")) {
			not = true;
		} else if (!strcmp(a, "--vm") && i + 1 < argc) {
			json_array_append_new(vms, json_string(argv[++i]));
		} else if (!strcmp(a, "--run-on") && i + 1 < argc) {
			group = argv[++i];
		} else if (!strcmp(a, "--json")) {
		} else if (a[0] != '-' && kind) {
			json_array_append_new(vms, json_string(a));
		} else {
			goto bad;
		}
	}
	if (kind && must < 0 && !group && !not ) {
		json_object_set_new(r, "kind", json_string(kind));
	} else if (!kind && must >= 0 && group) {
		json_object_set_new(r, "kind", json_string("host"));
		json_object_set_new(r, "group", json_string(group));
		json_object_set_new(r, "must", json_boolean(must));
		json_object_set_new(r, "not", json_boolean(not ));
	} else {
		goto bad;
	}
	json_object_set_new(r, "vms", vms);
	return r;
bad:
	pr_err("%s", rule_usage);
	json_decref(vms);
	json_decref(r);
	return NULL;
}

int cluster_cli__rule(const struct client *c, int argc, char **argv)
{
	const char *verb = argc > 1 ? argv[1] : "";
	json_t *req, *reply;
	int ret = list_or_drop(c, argc, argv, "rule", rule_line);

	if (ret >= 0)
		return ret;
	if (strcmp(verb, "add") || argc < 4 || !cluster__name_ok(argv[2])) {
		pr_err("%s", rule_usage);
		return 2;
	}
	req = parse_rule(argc, argv);
	if (!req)
		return 2;
	ret = cluster_cli__ask(c, "POST", "/rules", req, 201, &reply);
	json_decref(req);
	if (ret)
		return 1;
	if (flag(argc, argv, "--json"))
		cluster_cli__print_json(reply);
	else
		rule_line(reply);
	json_decref(reply);
	return 0;
}

/* ---- drs, dpm ---- */

/* "--name VALUE" pairs into req: integers lo..hi, or strings; false if one is wrong. */
static bool int_opt(json_t *req, const char *opt, const char *field, uint64_t lo, uint64_t hi,
		    const char *value)
{
	uint64_t v;

	if (util__parse_u64(value, lo, hi, &v)) {
		pr_err("%s: %llu..%llu", opt, (unsigned long long)lo, (unsigned long long)hi);
		return false;
	}
	json_object_set_new(req, field, json_integer((json_int_t)v));
	return true;
}

static int settings(const struct client *c, const char *path, json_t *req, bool json,
		    void (*show)(const json_t *))
{
	bool put = json_object_size(req) > 0;
	json_t *reply;
	int ret;

	ret = cluster_cli__ask(c, put ? "PUT" : "GET", path, put ? req : NULL, 200, &reply);
	json_decref(req);
	if (ret)
		return 1;
	if (json)
		cluster_cli__print_json(reply);
	else
		show(reply);
	json_decref(reply);
	return 0;
}

static void drs_show(const json_t *d)
{
	const json_t *vms = json_object_get(d, "vms"), *v;
	const char *vm;

	printf("DRS: automation %s, threshold %d, every %d s\n", cluster__str(d, "automation", "?"),
	       (int)cluster__int(d, "threshold", 0), (int)cluster__int(d, "interval", 0));
	json_object_foreach((json_t *)vms, vm, v) printf("  %s: %s\n", vm, json_string_value(v));
}

static void drs_recommendation(const json_t *r)
{
	char size[32];

	cluster__fmt_size((uint64_t)cluster__int(r, "bytes", 0), size, sizeof(size));
	printf("%-8s %-11s %s %s -> %s, gain %.4f, %s to copy\n    %s\n",
	       cluster__str(r, "id", "?"), cluster__str(r, "reason", "?"), cluster__str(r, "vm", "?"),
	       cluster__str(r, "src", "?"), cluster__str(r, "dst", "?"),
	       json_number_value(json_object_get(r, "gain")), size, cluster__str(r, "why", ""));
}

static int drs_recommendations(const struct client *c, bool json)
{
	json_t *reply, *r;
	size_t i;

	if (cluster_cli__ask(c, "GET", "/drs/recommendations", NULL, 200, &reply))
		return 1;
	if (json) {
		cluster_cli__print_json(reply);
	} else if (!cluster__int(reply, "pass", 0)) {
		printf("no DRS pass has run yet\n");
	} else {
		printf("DRS pass %d (automation %s): imbalance %.4f, tolerated %.4f\n",
		       (int)cluster__int(reply, "pass", 0), cluster__str(reply, "automation", "?"),
		       json_number_value(json_object_get(reply, "imbalance")),
		       json_number_value(json_object_get(reply, "tolerance")));
		json_array_foreach(json_object_get(reply, "recommendations"), i, r)
			drs_recommendation(r);
		if (!json_array_size(json_object_get(reply, "recommendations")))
			printf("no recommendation\n");
	}
	json_decref(reply);
	return 0;
}

static int drs_apply(const struct client *c, const char *id)
{
	json_t *req = json_pack("{s:s}", "id", id), *reply, *t;
	size_t i;
	int ret;

	ret = cluster_cli__ask(c, "POST", "/drs/apply", req, 202, &reply);
	json_decref(req);
	if (ret)
		return 1;
	json_array_foreach(json_object_get(reply, "tasks"), i, t)
		printf("%s: %s: %s from %s to %s\n", cluster__str(t, "id", "?"),
		       cluster__str(t, "task", "?"), cluster__str(t, "vm", "?"),
		       cluster__str(t, "src", "?"), cluster__str(t, "dst", "?"));
	if (!json_array_size(json_object_get(reply, "tasks")))
		printf("no recommendation to apply\n");
	json_decref(reply);
	return 0;
}

int cluster_cli__drs(const struct client *c, int argc, char **argv)
{
	json_t *req;
	int i;

	if (argc >= 2 && !strcmp(argv[1], "recommendations") &&
	    (argc == 2 || (argc == 3 && !strcmp(argv[2], "--json"))))
		return drs_recommendations(c, argc == 3);
	if (argc == 3 && !strcmp(argv[1], "apply"))
		return drs_apply(c, argv[2]);
	if (argc < 2 || strcmp(argv[1], "config"))
		goto usage;
	req = json_object();
	for (i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--json"))
			continue;
		if (!v)
			goto bad;
		if (!strcmp(a, "--automation"))
			json_object_set_new(req, "automation", json_string(v));
		else if (!strcmp(a, "--vm"))
			json_object_set_new(req, "vm", json_string(v));
		else if (!strcmp(a, "--threshold")) {
			if (!int_opt(req, a, "threshold", 1, 5, v))
				goto err;
		} else if (!strcmp(a, "--interval")) {
			if (!int_opt(req, a, "interval", 5, 86400, v))
				goto err;
		} else {
			goto bad;
		}
		i++;
	}
	if (json_object_get(req, "vm") && !json_object_get(req, "automation")) {
		pr_err("--vm VM needs --automation manual|automatic|off|default");
		goto err;
	}
	return settings(c, "/drs", req, flag(argc, argv, "--json"), drs_show);
bad:
	json_decref(req);
usage:
	pr_err("usage: godwit cluster drs config [--automation manual|automatic|off] "
	       "[--threshold 1..5] [--interval S] [--vm VM --automation LEVEL|default] [--json]\n"
	       "       godwit cluster drs recommendations [--json]\n"
	       "       godwit cluster drs apply ID|all");
	return 2;
err:
	json_decref(req);
	return 2;
}

static void dpm_show(const json_t *d)
{
	printf("DPM: %s, target %d %% +- %d %%, window %d s, at least %d hosts on\n",
	       json_is_true(json_object_get(d, "enabled")) ? "enabled" : "disabled",
	       (int)cluster__int(d, "target", 0), (int)cluster__int(d, "band", 0),
	       (int)cluster__int(d, "window", 0), (int)cluster__int(d, "min_hosts", 0));
}

int cluster_cli__dpm(const struct client *c, int argc, char **argv)
{
	static const struct {
		const char *opt, *field;
		uint64_t lo, hi;
	} ints[] = {{"--target", "target", 1, 100},
		    {"--band", "band", 0, 100},
		    {"--window", "window", 10, 86400},
		    {"--min-hosts", "min_hosts", 1, 100000}};
	json_t *req;
	size_t k;
	int i;

	if (argc < 2 || strcmp(argv[1], "config"))
		goto usage;
	req = json_object();
	for (i = 2; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--json"))
			continue;
		if (!strcmp(a, "--enable") || !strcmp(a, "--disable")) {
			json_object_set_new(req, "enabled", json_boolean(!strcmp(a, "--enable")));
			continue;
		}
		for (k = 0; k < ARRAY_SIZE(ints) && strcmp(a, ints[k].opt); k++)
			;
		if (k == ARRAY_SIZE(ints) || i + 1 >= argc) {
			json_decref(req);
			goto usage;
		}
		if (!int_opt(req, a, ints[k].field, ints[k].lo, ints[k].hi, argv[++i])) {
			json_decref(req);
			return 2;
		}
	}
	return settings(c, "/dpm", req, flag(argc, argv, "--json"), dpm_show);
usage:
	pr_err("usage: godwit cluster dpm config [--enable|--disable] [--target PCT] [--band PCT] "
	       "[--window S] [--min-hosts N] [--json]");
	return 2;
}

/* ---- host standby|wake ---- */

int cluster_cli__host(const struct client *c, int argc, char **argv)
{
	int ret = cluster_cli__host_action(c, argc, argv, "power", "standby", "wake",
					   "usage: godwit cluster host standby|wake HOST");

	if (ret)
		return ret;
	printf(!strcmp(argv[1], "standby")
		   ? "%s is going to standby (the leader runs its power-off command)\n"
		   : "%s is waking (the leader runs its power-on command)\n",
	       argv[2]);
	return 0;
}
