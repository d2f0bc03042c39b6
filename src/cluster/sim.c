// SPDX-License-Identifier: GPL-2.0
/* Synthetic clusters for `godwit cluster simulate`: generator, traces, a lower bound. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/cluster/sim.h"
#include "godwit/util.h"

#define MAX_HOSTS 100000
#define MAX_VMS	  1000000
#define MAX_TRACE 100000

static int fail(char *why, size_t len, int ret, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *why, size_t len, int ret, const char *fmt, ...)
{
	va_list ap;

	if (why && len) {
		va_start(ap, fmt);
		vsnprintf(why, len, fmt, ap);
		va_end(ap);
	}
	return ret;
}

double sim__uniform(uint64_t *rng)
{
	uint64_t x = *rng ? *rng : 0x9e3779b97f4a7c15ULL;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*rng = x;
	return (double)((x * 0x2545f4914f6cdd1dULL) >> 11) / (double)(1ULL << 53);
}

static double gauss(uint64_t *rng)
{
	double u = sim__uniform(rng), v = sim__uniform(rng);

	return sqrt(-2 * log(u > 0 ? u : 1e-300)) * cos(2 * M_PI * v);
}

void sim__free(struct sim *s)
{
	size_t i;

	for (i = 0; s->hosts && i < s->nr_hosts; i++)
		free((char *)s->hosts[i].name);
	for (i = 0; s->vms && i < s->nr_vms; i++) {
		free((char *)s->vms[i].name);
		if (s->demand)
			free(s->demand[i]);
	}
	for (i = 0; s->rules && i < s->nr_rules; i++) {
		free((char *)s->rules[i].name);
		free((int *)s->rules[i].vms);
	}
	for (i = 0; i < DRS_MAX_GROUPS; i++)
		free(s->groups[i]);
	free(s->hosts);
	free(s->vms);
	free(s->rules);
	free(s->demand);
	free(s->nr_demand);
	memset(s, 0, sizeof(*s));
}

void sim__model(const struct sim *s, struct drs_model *m)
{
	*m = (struct drs_model){s->hosts, s->nr_hosts, s->vms, s->nr_vms, s->rules, s->nr_rules};
}

static int alloc_sim(struct sim *s, size_t hosts, size_t vms, size_t rules)
{
	memset(s, 0, sizeof(*s));
	s->hosts = calloc(hosts ? hosts : 1, sizeof(*s->hosts));
	s->vms = calloc(vms ? vms : 1, sizeof(*s->vms));
	s->rules = calloc(rules ? rules : 1, sizeof(*s->rules));
	s->demand = calloc(vms ? vms : 1, sizeof(*s->demand));
	s->nr_demand = calloc(vms ? vms : 1, sizeof(*s->nr_demand));
	if (!s->hosts || !s->vms || !s->rules || !s->demand || !s->nr_demand)
		return -ENOMEM;
	return 0;
}

static char *name(const char *prefix, int digits, size_t i)
{
	char buf[40];

	snprintf(buf, sizeof(buf), "%.16s%0*zu", prefix, digits, i);
	return strdup(buf);
}

/* The generator */

static const uint64_t gen_gib[] = {1, 2, 4, 8, 16, 32, 64};
static const int64_t gen_vcpus[] = {1, 1, 2, 4, 4, 8, 16};
static const double gen_weight[] = {0.20, 0.25, 0.25, 0.15, 0.08, 0.05, 0.02};

static bool fits(const struct sim *s, const uint64_t *mem, const int64_t *cpus, size_t h,
		 const struct drs_vm *vm)
{
	return mem[h] + vm->memory <= s->hosts[h].memory && cpus[h] + vm->vcpus <= s->hosts[h].cpus;
}

/* A host for vm from `start` on (every other host if `step` is 2) where it fits. */
static int gen_place(struct sim *s, uint64_t *mem, int64_t *cpus, size_t start, size_t step,
		     struct drs_vm *vm)
{
	size_t k, h;

	for (k = 0; k < s->nr_hosts; k += step) {
		h = (start + k) % s->nr_hosts;
		if (fits(s, mem, cpus, h, vm)) {
			mem[h] += vm->memory;
			cpus[h] += vm->vcpus;
			vm->host = (int)h;
			return 0;
		}
	}
	return -EINVAL;
}

static void gen_vm(struct sim *s, size_t i, uint64_t *rng)
{
	struct drs_vm *vm = &s->vms[i];
	double x = sim__uniform(rng), acc = 0;
	size_t k;

	for (k = 0; k + 1 < ARRAY_SIZE(gen_weight); k++) {
		acc += gen_weight[k];
		if (x < acc)
			break;
	}
	vm->vcpus = gen_vcpus[k];
	vm->memory = gen_gib[k] * GiB;
	vm->mem_copy = (uint64_t)((double)vm->memory * (0.5 + 0.5 * sim__uniform(rng)));
	vm->mem_active = (uint64_t)((double)vm->memory * (0.1 + 0.4 * sim__uniform(rng)));
	x = sim__uniform(rng);
	vm->dirty_rate = x * x * 256.0 * MiB;
	vm->moved_ago = -1;
	vm->automation = DRS_AUTO_CLUSTER;
}

/* Busy 5..95 % of its vCPUs, scaled by how hot its host is. */
static void gen_demand(struct sim *s, size_t i, double skew, uint64_t *rng)
{
	struct drs_vm *vm = &s->vms[i];
	size_t hot = (s->nr_hosts + 3) / 4;
	double u = 0.05 + 0.9 * sim__uniform(rng);

	u *= (size_t)vm->host < hot ? 1 + 2 * skew : 1 - 0.5 * skew;
	if (u > 1)
		u = 1;
	s->demand[i][0] = u * (double)vm->vcpus;
	s->nr_demand[i] = 1;
}

static int gen_rule(struct sim *s, size_t r, const char *prefix, enum drs_rule_kind kind, bool must,
		    size_t first, size_t n)
{
	struct drs_rule *rule = &s->rules[r];
	int *vms = malloc(n * sizeof(*vms));
	size_t k;

	rule->name = name(prefix, 0, r);
	if (!vms || !rule->name) {
		free(vms);
		return -ENOMEM;
	}
	for (k = 0; k < n; k++)
		vms[k] = (int)(first + k);
	*rule = (struct drs_rule){rule->name, kind, must, 0, vms, n};
	return 0;
}

static int gen_rules(struct sim *s, const struct sim_gen *g)
{
	size_t r = 0, k, first = 0;

	for (k = 0; k < g->apart; k++, first += 2)
		if (gen_rule(s, r++, "apart-", DRS_RULE_APART, true, first, 2))
			return -ENOMEM;
	if (g->pinned && gen_rule(s, r++, "pinned-", DRS_RULE_ON_GROUP, true, first, g->pinned))
		return -ENOMEM;
	first += g->pinned;
	for (k = 0; k < g->together; k++, first += 2)
		if (gen_rule(s, r++, "together-", DRS_RULE_TOGETHER, false, first, 2))
			return -ENOMEM;
	s->nr_rules = r;
	return 0;
}

/* The rules' VMs first: apart pairs on one host, pinned VMs on even hosts, together apart. */
static int gen_place_all(struct sim *s, const struct sim_gen *g, uint64_t *rng)
{
	uint64_t *mem = calloc(s->nr_hosts, sizeof(*mem));
	int64_t *cpus = calloc(s->nr_hosts, sizeof(*cpus));
	size_t i, pinned = 2 * g->apart, together = pinned + g->pinned;
	int ret = 0;

	if (!mem || !cpus) {
		ret = -ENOMEM;
		goto out;
	}
	for (i = 0; i < s->nr_hosts; i++) {
		mem[i] = s->hosts[i].mem_own;
		cpus[i] = 0;
	}
	for (i = 0; i < s->nr_vms && !ret; i++) {
		size_t start = (size_t)(sim__uniform(rng) * (double)s->nr_hosts), step = 1;

		if (i < pinned && i % 2) {
			start = (size_t)s->vms[i - 1].host;
		} else if (i >= pinned && i < together) {
			start &= ~(size_t)1;
			step = 2;
		} else if (i >= together && i < together + 2 * g->together && (i - together) % 2) {
			start = (size_t)s->vms[i - 1].host + 1;
		}
		ret = gen_place(s, mem, cpus, start, step, &s->vms[i]);
	}
out:
	free(mem);
	free(cpus);
	return ret;
}

int sim__generate(struct sim *s, const struct sim_gen *g, char *why, size_t whylen)
{
	uint64_t rng = g->seed * 0x9e3779b97f4a7c15ULL + 1;
	size_t i, rules = g->apart + (g->pinned ? 1 : 0) + g->together;
	int ret;

	if (!g->hosts || g->hosts > MAX_HOSTS || g->vms > MAX_VMS || !(g->skew >= 0) ||
	    g->skew > 1 || 2 * g->apart + g->pinned + 2 * g->together > g->vms)
		return fail(why, whylen, -EINVAL,
			    "hosts 1..%d, VMs up to %d, skew 0..1, and VMs enough for the rules",
			    MAX_HOSTS, MAX_VMS);
	if (alloc_sim(s, g->hosts, g->vms, rules))
		goto err_nomem;
	s->nr_hosts = g->hosts;
	for (i = 0; i < g->hosts; i++) {
		s->hosts[i] = (struct drs_host){
		    .up = true,
		    .cpus = 128,
		    .cpu_capacity = 64,
		    .memory = 512 * GiB,
		    .cpu_own = 0.5,
		    .mem_own = 8 * GiB,
		    .groups = i % 2 ? 0 : 1,
		};
		s->hosts[i].name = name("h", 4, i);
		if (!s->hosts[i].name)
			goto err_nomem;
	}
	s->nr_vms = g->vms;
	for (i = 0; i < g->vms; i++) {
		gen_vm(s, i, &rng);
		s->vms[i].name = name("vm", 5, i);
		s->demand[i] = malloc(sizeof(double));
		if (!s->vms[i].name || !s->demand[i])
			goto err_nomem;
	}
	if (gen_rules(s, g))
		goto err_nomem;
	ret = gen_place_all(s, g, &rng);
	if (ret == -ENOMEM)
		goto err_nomem;
	if (ret) {
		sim__free(s);
		return fail(why, whylen, -EINVAL, "%zu VMs do not fit on %zu hosts", g->vms,
			    g->hosts);
	}
	for (i = 0; i < g->vms; i++)
		gen_demand(s, i, g->skew, &rng);
	sim__set_demand(s, 0, 0, &rng);
	return 0;

err_nomem:
	sim__free(s);
	return fail(why, whylen, -ENOMEM, "out of memory");
}

void sim__set_demand(struct sim *s, size_t pass, double noise, uint64_t *rng)
{
	size_t i;

	for (i = 0; i < s->nr_vms; i++) {
		size_t n = s->nr_demand[i];
		double d = n ? s->demand[i][pass < n ? pass : n - 1] : 0;

		if (noise > 0)
			d *= 1 + noise * gauss(rng);
		s->vms[i].cpu_demand = d > 0 ? d : 0;
	}
}

/* Traces */

struct names {
	const char **name; /* sorted */
	int *index;
	size_t n;
};

static const char *const *sort_base;

static int by_name(const void *a, const void *b)
{
	return strcmp(sort_base[*(const int *)a], sort_base[*(const int *)b]);
}

/* Sorted names for lookups; -EEXIST on a duplicate (its index in *dup). */
static int names_index(struct names *ix, const char **names, size_t n, size_t *dup)
{
	size_t i;

	ix->index = malloc((n ? n : 1) * sizeof(*ix->index));
	ix->name = names;
	ix->n = n;
	if (!ix->index)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		ix->index[i] = (int)i;
	sort_base = names;
	qsort(ix->index, n, sizeof(*ix->index), by_name);
	for (i = 1; i < n; i++)
		if (!strcmp(names[ix->index[i]], names[ix->index[i - 1]])) {
			*dup = (size_t)ix->index[i];
			return -EEXIST;
		}
	return 0;
}

static int names_find(const struct names *ix, const char *name)
{
	size_t lo = 0, hi = ix->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(name, ix->name[ix->index[mid]]);

		if (!c)
			return ix->index[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -1;
}

struct parse {
	struct sim *s;
	char *why;
	size_t len;
	const char *what; /* "host h1", "VM web1", "rule r1" for messages */
	char what_buf[96];
};

static int perr(struct parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int perr(struct parse *p, const char *fmt, ...)
{
	char msg[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return fail(p->why, p->len, -EINVAL, "%s: %s", p->what, msg);
}

static int only_keys(struct parse *p, const json_t *obj, const char *const *keys)
{
	const char *k;
	const json_t *v;
	size_t i;

	json_object_foreach((json_t *)obj, k, v)
	{
		for (i = 0; keys[i] && strcmp(keys[i], k); i++)
			;
		if (!keys[i])
			return perr(p, "unknown field \"%.60s\"", k);
	}
	return 0;
}

static int get_size(struct parse *p, const json_t *obj, const char *f, uint64_t dflt, uint64_t *out)
{
	const json_t *j = json_object_get(obj, f);

	*out = dflt;
	if (!j)
		return 0;
	if (json_is_integer(j) && json_integer_value(j) >= 0) {
		*out = (uint64_t)json_integer_value(j);
		return 0;
	}
	if (json_is_string(j) && !util__parse_size(json_string_value(j), out))
		return 0;
	return perr(p, "%s is a size: bytes, or a string like \"4G\"", f);
}

static int get_number(struct parse *p, const json_t *obj, const char *f, double dflt, double max,
		      double *out)
{
	const json_t *j = json_object_get(obj, f);

	*out = dflt;
	if (!j)
		return 0;
	if (json_is_number(j) && json_number_value(j) >= 0 && json_number_value(j) <= max) {
		*out = json_number_value(j);
		return 0;
	}
	return perr(p, "%s must be a number >= 0 and not absurdly large", f);
}

static int get_bool(struct parse *p, const json_t *obj, const char *f, bool dflt, bool *out)
{
	const json_t *j = json_object_get(obj, f);

	*out = j ? json_is_true(j) : dflt;
	if (j && !json_is_boolean(j))
		return perr(p, "%s must be true or false", f);
	return 0;
}

static int get_name(struct parse *p, const json_t *obj, const char *kind, size_t i, char **out)
{
	const char *n = json_string_value(json_object_get(obj, "name"));

	if (!json_is_object(obj))
		return fail(p->why, p->len, -EINVAL, "%s %zu is not an object", kind, i);
	if (!n || !*n || strlen(n) > 64)
		return fail(p->why, p->len, -EINVAL, "%s %zu needs a \"name\" of 1..64 characters",
			    kind, i);
	*out = strdup(n);
	if (!*out)
		return fail(p->why, p->len, -ENOMEM, "out of memory");
	snprintf(p->what_buf, sizeof(p->what_buf), "%s %s", kind, n);
	p->what = p->what_buf;
	return 0;
}

/* The bit of group `g`, added to the trace's groups if new. */
static int group_bit(struct parse *p, const char *g)
{
	int i;

	for (i = 0; i < DRS_MAX_GROUPS && p->s->groups[i]; i++)
		if (!strcmp(p->s->groups[i], g))
			return i;
	if (i == DRS_MAX_GROUPS)
		return perr(p, "more than %s host groups", "64");
	p->s->groups[i] = strdup(g);
	return p->s->groups[i] ? i : -ENOMEM;
}

static int parse_host(struct parse *p, const json_t *j, size_t i)
{
	static const char *const keys[] = {
	    "name",   "cpus", "cpu_capacity", "memory",	 "cpu_own", "mem_own",
	    "groups", "up",   "maintenance",  "standby", NULL};
	struct drs_host *h = &p->s->hosts[i];
	const json_t *cpus = json_object_get(j, "cpus"), *groups, *g;
	double cap;
	size_t k;
	int ret;

	if ((ret = get_name(p, j, "host", i, (char **)&h->name)) || (ret = only_keys(p, j, keys)))
		return ret;
	if (!json_is_integer(cpus) || json_integer_value(cpus) < 1 ||
	    json_integer_value(cpus) > 1000000)
		return perr(p, "%s (vCPUs offered) must be an integer 1..1000000", "cpus");
	h->cpus = json_integer_value(cpus);
	if ((ret = get_number(p, j, "cpu_capacity", (double)h->cpus, 1e6, &cap)) ||
	    (ret = get_size(p, j, "memory", 0, &h->memory)) ||
	    (ret = get_number(p, j, "cpu_own", 0, 1e6, &h->cpu_own)) ||
	    (ret = get_size(p, j, "mem_own", 0, &h->mem_own)) ||
	    (ret = get_bool(p, j, "up", true, &h->up)) ||
	    (ret = get_bool(p, j, "maintenance", false, &h->maintenance)) ||
	    (ret = get_bool(p, j, "standby", false, &h->standby)))
		return ret;
	if (!(cap > 0))
		return perr(p, "%s must be > 0", "cpu_capacity");
	h->cpu_capacity = cap;
	groups = json_object_get(j, "groups");
	if (groups && !json_is_array(groups))
		return perr(p, "%s is a list of group names", "groups");
	json_array_foreach((json_t *)groups, k, g)
	{
		if (!json_is_string(g) || !json_string_length(g))
			return perr(p, "%s is a list of group names", "groups");
		ret = group_bit(p, json_string_value(g));
		if (ret < 0)
			return ret;
		h->groups |= 1ULL << ret;
	}
	return 0;
}

static int parse_demand(struct parse *p, const json_t *j, size_t i)
{
	const json_t *d = json_object_get(j, "demand"), *x;
	size_t n = json_is_array(d) ? json_array_size(d) : 1, k;

	if (!d || (!json_is_number(d) && !json_is_array(d)) || !n || n > MAX_TRACE)
		return perr(p, "%s is a number of CPUs, or a list of them (one per pass)",
			    "demand");
	p->s->demand[i] = malloc(n * sizeof(double));
	if (!p->s->demand[i])
		return -ENOMEM;
	p->s->nr_demand[i] = n;
	for (k = 0; k < n; k++) {
		x = json_is_array(d) ? json_array_get(d, k) : d;
		if (!json_is_number(x) || !(json_number_value(x) >= 0) ||
		    json_number_value(x) > 1e6)
			return perr(p, "%s values are CPUs, >= 0", "demand");
		p->s->demand[i][k] = json_number_value(x);
	}
	return 0;
}

static int parse_vm(struct parse *p, const json_t *j, size_t i, const struct names *hosts)
{
	static const char *const keys[] = {"name",	 "host",       "vcpus",	     "memory",
					   "mem_copy",	 "mem_active", "dirty_rate", "demand",
					   "automation", "moved_ago",  NULL};
	static const char *const autos[] = {"cluster", "manual", "automatic", "disabled", NULL};
	struct drs_vm *vm = &p->s->vms[i];
	const json_t *host = json_object_get(j, "host"), *vcpus = json_object_get(j, "vcpus");
	const char *a = json_string_value(json_object_get(j, "automation"));
	uint64_t rate;
	int ret, k;

	if ((ret = get_name(p, j, "VM", i, (char **)&vm->name)) || (ret = only_keys(p, j, keys)))
		return ret;
	vm->host = -1;
	if (host && !json_is_null(host)) {
		vm->host = json_is_string(host) ? names_find(hosts, json_string_value(host)) : -1;
		if (vm->host < 0)
			return perr(p, "%s names no host of the trace", "host");
	}
	vm->vcpus = 1;
	if (vcpus && (!json_is_integer(vcpus) || json_integer_value(vcpus) < 1 ||
		      json_integer_value(vcpus) > 100000))
		return perr(p, "%s must be an integer >= 1", "vcpus");
	if (vcpus)
		vm->vcpus = json_integer_value(vcpus);
	if ((ret = get_size(p, j, "memory", 0, &vm->memory)) ||
	    (ret = get_size(p, j, "mem_copy", vm->memory, &vm->mem_copy)) ||
	    (ret = get_size(p, j, "mem_active", vm->memory, &vm->mem_active)) ||
	    (ret = get_size(p, j, "dirty_rate", 0, &rate)) ||
	    (ret = get_number(p, j, "moved_ago", -1, 1e12, &vm->moved_ago)) ||
	    (ret = parse_demand(p, j, i)))
		return ret;
	if (!vm->memory)
		return perr(p, "%s is required and > 0", "memory");
	vm->dirty_rate = (double)rate;
	if (json_object_get(j, "automation")) {
		for (k = 0; a && autos[k] && strcmp(autos[k], a); k++)
			;
		if (!a || !autos[k])
			return perr(p, "%s is cluster, manual, automatic or disabled",
				    "automation");
		vm->automation = (enum drs_automation)k;
	}
	return 0;
}

static int parse_rule(struct parse *p, const json_t *j, size_t i, const struct names *vms)
{
	static const char *const keys[] = {"name", "kind", "must", "group", "vms", NULL};
	static const char *const kinds[] = {"together", "apart", "on-group", "off-group", NULL};
	struct drs_rule *r = &p->s->rules[i];
	const char *kind = json_string_value(json_object_get(j, "kind"));
	const char *group = json_string_value(json_object_get(j, "group"));
	const json_t *list = json_object_get(j, "vms"), *v;
	int *out, ret, k;
	size_t n;

	if ((ret = get_name(p, j, "rule", i, (char **)&r->name)) || (ret = only_keys(p, j, keys)) ||
	    (ret = get_bool(p, j, "must", false, &r->must)))
		return ret;
	for (k = 0; kind && kinds[k] && strcmp(kinds[k], kind); k++)
		;
	if (!kind || !kinds[k])
		return perr(p, "%s is together, apart, on-group or off-group", "kind");
	r->kind = (enum drs_rule_kind)k;
	if (r->kind == DRS_RULE_ON_GROUP || r->kind == DRS_RULE_OFF_GROUP) {
		if (!group || !*group)
			return perr(p, "%s (a host group's name) is required", "group");
		ret = group_bit(p, group);
		if (ret < 0)
			return ret;
		r->group = ret;
	} else if (group) {
		return perr(p, "%s is only for on-group and off-group", "group");
	}
	if (!json_is_array(list) || !json_array_size(list))
		return perr(p, "%s is a list of VM names", "vms");
	out = malloc(json_array_size(list) * sizeof(*out));
	if (!out)
		return -ENOMEM;
	r->vms = out;
	json_array_foreach(list, n, v)
	{
		out[n] = json_is_string(v) ? names_find(vms, json_string_value(v)) : -1;
		if (out[n] < 0)
			return perr(p, "%s names a VM not in the trace", "vms");
		r->nr_vms = n + 1;
	}
	return 0;
}

/* Sorted names; two alike are an error naming them. */
static int name_index(struct parse *p, struct names *ix, const char **names, size_t n,
		      const char *kind)
{
	size_t dup;
	int ret = names_index(ix, names, n, &dup);

	if (ret == -EEXIST)
		return fail(p->why, p->len, -EINVAL, "two %s are named %s", kind, names[dup]);
	return ret;
}

/* Each element of list (none if absent) by fn, counting them in *count as they are read. */
static int parse_list(struct parse *p, const json_t *list, size_t *count, const struct names *ix,
		      int (*fn)(struct parse *p, const json_t *j, size_t i, const struct names *ix))
{
	const json_t *x;
	size_t i;
	int ret;

	json_array_foreach(list, i, x)
	{
		*count = i + 1;
		ret = fn(p, x, i, ix);
		if (ret)
			return ret;
	}
	return 0;
}

static int parse_all(struct parse *p, const json_t *root)
{
	static const char *const keys[] = {"hosts", "vms", "rules", NULL};
	const json_t *hosts = json_object_get(root, "hosts"), *vms = json_object_get(root, "vms"),
		     *rules = json_object_get(root, "rules"), *x;
	struct names ix = {0};
	const char **hn, **vn;
	size_t i;
	int ret;

	p->what = "the trace";
	if (!json_is_object(root) || (ret = only_keys(p, root, keys)))
		return fail(p->why, p->len, -EINVAL,
			    "the trace is an object with \"hosts\", "
			    "\"vms\" and \"rules\" (docs/drs.md)");
	if (!json_is_array(hosts) || !json_array_size(hosts) ||
	    json_array_size(hosts) > MAX_HOSTS || !json_is_array(vms) ||
	    json_array_size(vms) > MAX_VMS ||
	    (rules && (!json_is_array(rules) || json_array_size(rules) > MAX_VMS)))
		return fail(p->why, p->len, -EINVAL,
			    "the trace needs \"hosts\" (1..%d) and "
			    "\"vms\" lists; \"rules\" is a list",
			    MAX_HOSTS);
	if (alloc_sim(p->s, json_array_size(hosts), json_array_size(vms), json_array_size(rules)))
		return -ENOMEM;
	json_array_foreach(hosts, i, x)
	{
		p->s->nr_hosts = i + 1;
		if ((ret = parse_host(p, x, i)))
			return ret;
	}
	hn = malloc(p->s->nr_hosts * sizeof(*hn));
	if (!hn)
		return -ENOMEM;
	for (i = 0; i < p->s->nr_hosts; i++)
		hn[i] = p->s->hosts[i].name;
	ret = name_index(p, &ix, hn, p->s->nr_hosts, "hosts");
	if (!ret)
		ret = parse_list(p, vms, &p->s->nr_vms, &ix, parse_vm);
	free(ix.index);
	free(hn);
	if (ret)
		return ret;
	vn = malloc((p->s->nr_vms ? p->s->nr_vms : 1) * sizeof(*vn));
	if (!vn)
		return -ENOMEM;
	for (i = 0; i < p->s->nr_vms; i++)
		vn[i] = p->s->vms[i].name;
	ret = name_index(p, &ix, vn, p->s->nr_vms, "VMs");
	if (!ret)
		ret = parse_list(p, rules, &p->s->nr_rules, &ix, parse_rule);
	free(ix.index);
	free(vn);
	return ret;
}

int sim__parse_trace(struct sim *s, const char *text, size_t len, char *why, size_t whylen)
{
	struct parse p = {s, why, whylen, "the trace", ""};
	json_error_t err;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
	int ret;

	memset(s, 0, sizeof(*s));
	if (!root)
		return fail(why, whylen, -EINVAL, "the trace is not JSON: %s (line %d)", err.text,
			    err.line);
	ret = parse_all(&p, root);
	json_decref(root);
	if (ret == -ENOMEM)
		fail(why, whylen, ret, "out of memory");
	if (ret)
		sim__free(s);
	else
		sim__set_demand(s, 0, 0, NULL);
	return ret;
}

/* The lower bound */

/*
 * Host h must shed load x (the VMs it started with, fractionally, cheapest per unit of
 * load first): pieces of width w and cost per load s, ascending in s.
 */
struct piece {
	double w, s;
};

static int by_slope(const void *a, const void *b)
{
	const struct piece *x = a, *y = b;

	return x->s < y->s ? -1 : x->s > y->s;
}

struct bound_host {
	double a; /* load above the mean */
	struct piece *p;
	size_t n;
};

/* min over e in [0, a] of K(a - e) + mu e^2, where K is the host's piecewise cost. */
static double host_dual(const struct bound_host *h, double mu)
{
	double best = INFINITY, x0 = 0, k0 = 0;
	size_t j;

	for (j = 0; j < h->n && x0 < h->a; j++) {
		double x1 = fmin(x0 + h->p[j].w, h->a), x = h->a - h->p[j].s / (2 * mu), v;

		x = fmin(fmax(x, x0), x1);
		v = k0 + h->p[j].s * (x - x0) + mu * (h->a - x) * (h->a - x);
		best = fmin(best, v);
		k0 += h->p[j].s * (x1 - x0);
		x0 = x1;
	}
	/* shedding nothing at all */
	return fmin(best, mu * h->a * h->a);
}

static double dual(const struct bound_host *hs, size_t n, double budget, double mu)
{
	double g = -mu * budget;
	size_t i;

	for (i = 0; i < n; i++)
		g += host_dual(&hs[i], mu);
	return g;
}

static bool serving(const struct drs_host *h)
{
	return h->up && !h->maintenance && !h->standby;
}

/* The hosts' loads, or false if the bound does not hold for this model. */
static bool bound_loads(const struct drs_model *m, double *load, double *cap)
{
	size_t h, v;

	*cap = -1;
	for (v = 0; v < m->nr_vms; v++) {
		int at = m->vms[v].host;

		if (at < 0)
			continue;
		if (!serving(&m->hosts[at]))
			return false;
		load[at] += m->vms[v].cpu_demand;
	}
	for (h = 0; h < m->nr_hosts; h++) {
		if (!serving(&m->hosts[h]))
			continue;
		if (*cap >= 0 && m->hosts[h].cpu_capacity != *cap)
			return false;
		*cap = m->hosts[h].cpu_capacity;
		load[h] = (load[h] + m->hosts[h].cpu_own) / *cap;
	}
	return *cap > 0;
}

/* The hosts above the mean and their pieces (in one array, host by host). */
static size_t bound_pieces(const struct drs_model *m, const double *load, double cap, double mean,
			   const double *cost, struct bound_host *hs, struct piece *pieces)
{
	size_t h, v, nh = 0, np = 0;

	for (h = 0; h < m->nr_hosts; h++) {
		if (!serving(&m->hosts[h]) || load[h] <= mean)
			continue;
		hs[nh] = (struct bound_host){load[h] - mean, &pieces[np], 0};
		for (v = 0; v < m->nr_vms; v++) {
			double w = m->vms[v].cpu_demand / cap;

			if (m->vms[v].host != (int)h || !(w > 0))
				continue;
			pieces[np++] = (struct piece){w, cost[v] / w};
			hs[nh].n++;
		}
		qsort(hs[nh].p, hs[nh].n, sizeof(*hs[nh].p), by_slope);
		nh++;
	}
	return nh;
}

/* The dual is concave in mu: a coarse log grid, then golden sections around its best. */
static double maximise(const struct bound_host *hs, size_t n, double budget)
{
	double best = 0, best_mu = 0, lo, hi;
	int k, it;

	for (k = -120; k <= 200; k++) {
		double mu = pow(10, k / 10.0), g = dual(hs, n, budget, mu);

		if (g > best) {
			best = g;
			best_mu = mu;
		}
	}
	if (best_mu <= 0)
		return best;
	lo = best_mu / pow(10, 0.1);
	hi = best_mu * pow(10, 0.1);
	for (it = 0; it < 60; it++) {
		double a = lo + 0.381966 * (hi - lo), b = hi - 0.381966 * (hi - lo);
		double ga = dual(hs, n, budget, a), gb = dual(hs, n, budget, b);

		best = fmax(best, fmax(ga, gb));
		if (ga < gb)
			lo = a;
		else
			hi = b;
	}
	return best;
}

double sim__lower_bound(const struct drs_model *m, double tol, const double *cost)
{
	double *load = calloc(m->nr_hosts ? m->nr_hosts : 1, sizeof(*load));
	struct bound_host *hs = calloc(m->nr_hosts ? m->nr_hosts : 1, sizeof(*hs));
	struct piece *pieces = calloc(m->nr_vms ? m->nr_vms : 1, sizeof(*pieces));
	double cap, s1 = 0, s2 = 0, mean, ret = -1;
	size_t h, n = 0, nh;

	if (!load || !hs || !pieces) {
		ret = -2;
		goto out;
	}
	if (!bound_loads(m, load, &cap))
		goto out;
	for (h = 0; h < m->nr_hosts; h++)
		if (serving(&m->hosts[h])) {
			s1 += load[h];
			s2 += load[h] * load[h];
			n++;
		}
	mean = s1 / (double)n;
	ret = 0;
	if (n < 2 || s2 - s1 * mean <= (double)n * tol * tol)
		goto out;
	nh = bound_pieces(m, load, cap, mean, cost, hs, pieces);
	ret = maximise(hs, nh, (double)n * tol * tol);
out:
	free(load);
	free(hs);
	free(pieces);
	return ret;
}
