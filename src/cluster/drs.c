// SPDX-License-Identifier: GPL-2.0
/*
 * Balancing (DRS) and rule-aware placement: pure functions (no etcd, no network). The
 * metric and the choices are explained in docs/drs.md.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drs_plan.h"

#define GIB (1024.0 * 1024 * 1024)
/* Bounds that keep every per-host sum within 64 bits, whatever the model holds. */
#define MAX_ITEMS     (1 << 20)
#define MAX_VCPUS     (1 << 20)
#define MAX_VM_MEMORY (1ULL << 43)

void drs__config_default(struct drs_config *c)
{
	*c = (struct drs_config){
	    .threshold = 3,
	    .automation = DRS_AUTO_MANUAL,
	    .algorithm = DRS_ALGO_COST,
	    .max_moves = 1024,
	    .max_host_moves = 8,
	    .host_slots = 8,
	    .pass_seconds = 60,
	    .min_gain = 0.1,
	    .min_residence = 600,
	    .bandwidth = GIB,
	    .move_seconds = 2,
	    .dpm_target = 0.63,
	    .dpm_tolerance = 0.18,
	    .dpm_window = 300,
	    .dpm_reserve = 1,
	};
}

static int bad(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int bad(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (why && len) {
		va_start(ap, fmt);
		vsnprintf(why, len, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static bool nonneg(double x)
{
	return isfinite(x) && x >= 0;
}

static int check_config(const struct drs_config *c, char *why, size_t len)
{
	if (c->threshold < 1 || c->threshold > 5)
		return bad(why, len, "the migration threshold is 1..5, not %d", c->threshold);
	if (c->automation != DRS_AUTO_MANUAL && c->automation != DRS_AUTO_AUTOMATIC)
		return bad(why, len, "the cluster's automation is manual or automatic");
	if (c->algorithm != DRS_ALGO_COST && c->algorithm != DRS_ALGO_GREEDY)
		return bad(why, len, "unknown balancing algorithm");
	if (c->max_moves < 0 || c->max_host_moves < 1 || c->host_slots < 1)
		return bad(why, len, "moves per pass >= 0, per host >= 1, slots per host >= 1");
	if (!(c->pass_seconds > 0) || !isfinite(c->pass_seconds) || !nonneg(c->min_gain) ||
	    !nonneg(c->min_residence) || !(c->bandwidth > 0) || !isfinite(c->bandwidth) ||
	    !nonneg(c->move_seconds))
		return bad(why, len,
			   "pass time and bandwidth > 0; minimum gain, residence and "
			   "move time >= 0");
	if (!(c->dpm_target > 0 && c->dpm_target <= 1) || !nonneg(c->dpm_tolerance) ||
	    c->dpm_tolerance >= c->dpm_target || c->dpm_target + c->dpm_tolerance > 2 ||
	    !nonneg(c->dpm_window) || c->dpm_reserve < 0)
		return bad(why, len,
			   "DPM's target is in (0, 1], its tolerance below it, its "
			   "window and reserve >= 0");
	return 0;
}

static int check_rule(const struct drs_model *m, size_t i, char *why, size_t len)
{
	const struct drs_rule *r = &m->rules[i];
	const char *name = r->name ? r->name : "?";
	size_t k;

	if (!r->name)
		return bad(why, len, "rule %zu has no name", i);
	if (r->kind > DRS_RULE_OFF_GROUP)
		return bad(why, len, "rule %s: unknown kind", name);
	if ((r->kind == DRS_RULE_ON_GROUP || r->kind == DRS_RULE_OFF_GROUP) &&
	    (r->group < 0 || r->group >= DRS_MAX_GROUPS))
		return bad(why, len, "rule %s: host group %d is not in 0..%d", name, r->group,
			   DRS_MAX_GROUPS - 1);
	if (r->nr_vms && !r->vms)
		return bad(why, len, "rule %s: no VM list", name);
	for (k = 0; k < r->nr_vms; k++)
		if (r->vms[k] < 0 || (size_t)r->vms[k] >= m->nr_vms)
			return bad(why, len, "rule %s: VM index %d of %zu", name, r->vms[k],
				   m->nr_vms);
	return 0;
}

int drs__check(const struct drs_model *m, const struct drs_config *c, char *why, size_t len)
{
	size_t i;
	int ret;

	if (c && (ret = check_config(c, why, len)))
		return ret;
	if (m->nr_hosts > MAX_ITEMS || m->nr_vms > MAX_ITEMS || (m->nr_hosts && !m->hosts) ||
	    (m->nr_vms && !m->vms) || (m->nr_rules && !m->rules))
		return bad(why, len, "the model's arrays are missing or too large");
	for (i = 0; i < m->nr_hosts; i++) {
		const struct drs_host *h = &m->hosts[i];

		if (!h->name)
			return bad(why, len, "host %zu has no name", i);
		if (!(h->cpu_capacity > 0) || !isfinite(h->cpu_capacity) || !nonneg(h->cpu_own) ||
		    h->cpus < 0 || h->cpus > (int64_t)MAX_ITEMS * MAX_VCPUS ||
		    h->mem_own > MAX_VM_MEMORY || h->slots < 0)
			return bad(why, len,
				   "host %s: CPU capacity must be > 0, its own use, "
				   "vCPUs and slots >= 0",
				   h->name);
	}
	for (i = 0; i < m->nr_vms; i++) {
		const struct drs_vm *v = &m->vms[i];

		if (!v->name)
			return bad(why, len, "VM %zu has no name", i);
		if (v->host < -1 || (v->host >= 0 && (size_t)v->host >= m->nr_hosts))
			return bad(why, len, "VM %s: host index %d of %zu", v->name, v->host,
				   m->nr_hosts);
		if (!nonneg(v->cpu_demand) || !nonneg(v->dirty_rate) || isnan(v->moved_ago) ||
		    v->vcpus < 0 || v->vcpus > MAX_VCPUS || v->automation > DRS_AUTO_DISABLED)
			return bad(why, len, "VM %s: demand, dirty rate and vCPUs must be >= 0",
				   v->name);
		if (v->memory > MAX_VM_MEMORY || v->mem_copy > MAX_VM_MEMORY ||
		    v->mem_active > MAX_VM_MEMORY)
			return bad(why, len, "VM %s: more than 8 TiB of memory", v->name);
	}
	for (i = 0; i < m->nr_rules; i++)
		if ((ret = check_rule(m, i, why, len)))
			return ret;
	return 0;
}

double drs__tolerance(int threshold)
{
	static const double t[] = {INFINITY, 0.20, 0.10, 0.05, 0.025};

	if (threshold < 1 || threshold > 5)
		return INFINITY;
	return t[threshold - 1];
}

static bool host_serving(const struct drs_host *h)
{
	return h->up && !h->maintenance && !h->standby;
}

int drs__host_slots(const struct drs_model *m, const struct drs_config *c, int h)
{
	return m->hosts[h].slots > 0 ? m->hosts[h].slots : c->host_slots;
}

double drs__host_load(const struct drs_model *m, int host)
{
	double d;
	size_t i;

	if (host < 0 || (size_t)host >= m->nr_hosts)
		return NAN;
	d = m->hosts[host].cpu_own;
	for (i = 0; i < m->nr_vms; i++)
		if (m->vms[i].host == host)
			d += m->vms[i].cpu_demand;
	return d / m->hosts[host].cpu_capacity;
}

static double ssd_of(double s1, double s2, size_t n)
{
	double v = n ? s2 - s1 * s1 / (double)n : 0;

	return v > 0 ? v : 0;
}

static double sigma(double ssd, size_t n)
{
	return n > 1 ? sqrt(ssd / (double)n) : 0;
}

double drs__imbalance(const struct drs_model *m)
{
	double *d = calloc(m->nr_hosts ? m->nr_hosts : 1, sizeof(*d));
	double s1 = 0, s2 = 0;
	size_t i, n = 0;

	if (!d)
		return NAN;
	for (i = 0; i < m->nr_vms; i++)
		if (m->vms[i].host >= 0)
			d[m->vms[i].host] += m->vms[i].cpu_demand;
	for (i = 0; i < m->nr_hosts; i++) {
		double l;

		if (!host_serving(&m->hosts[i]))
			continue;
		l = (d[i] + m->hosts[i].cpu_own) / m->hosts[i].cpu_capacity;
		s1 += l;
		s2 += l * l;
		n++;
	}
	free(d);
	return sigma(ssd_of(s1, s2, n), n);
}

/* The plan */

double drs__plan_load(const struct drs_plan *p, int h)
{
	return p->demand[h] / p->m->hosts[h].cpu_capacity;
}

double drs__plan_ssd(const struct drs_plan *p)
{
	return ssd_of(p->s1, p->s2, p->nr_serving);
}

static bool together_overridden(const struct drs_model *m, const struct drs_rule *t)
{
	size_t r, a, b, k;

	for (r = 0; r < m->nr_rules; r++) {
		const struct drs_rule *ap = &m->rules[r];
		size_t in = 0;

		if (ap->kind != DRS_RULE_APART)
			continue;
		for (a = 0; a < ap->nr_vms && in < 2; a++)
			for (b = 0; b < t->nr_vms; b++)
				if (ap->vms[a] == t->vms[b]) {
					/* the same VM listed twice counts once */
					for (k = 0; k < a; k++)
						if (ap->vms[k] == ap->vms[a])
							break;
					in += k == a;
					break;
				}
		if (in >= 2)
			return true;
	}
	return false;
}

static int index_rules(struct drs_plan *p)
{
	const struct drs_model *m = p->m;
	size_t r, k, total = 0, *fill;

	p->rule_start = calloc(m->nr_vms + 1, sizeof(*p->rule_start));
	p->rule_off = calloc(m->nr_rules ? m->nr_rules : 1, sizeof(*p->rule_off));
	if (!p->rule_start || !p->rule_off)
		return -ENOMEM;
	for (r = 0; r < m->nr_rules; r++) {
		p->rule_off[r] =
		    m->rules[r].kind == DRS_RULE_TOGETHER && together_overridden(m, &m->rules[r]);
		for (k = 0; k < m->rules[r].nr_vms; k++)
			p->rule_start[m->rules[r].vms[k] + 1]++;
		total += m->rules[r].nr_vms;
	}
	for (k = 0; k < m->nr_vms; k++)
		p->rule_start[k + 1] += p->rule_start[k];
	p->rule_of = malloc((total ? total : 1) * sizeof(*p->rule_of));
	fill = malloc((m->nr_vms ? m->nr_vms : 1) * sizeof(*fill));
	if (!p->rule_of || !fill) {
		free(fill);
		return -ENOMEM;
	}
	memcpy(fill, p->rule_start, m->nr_vms * sizeof(*fill));
	for (r = 0; r < m->nr_rules; r++)
		for (k = 0; k < m->rules[r].nr_vms; k++)
			p->rule_of[fill[m->rules[r].vms[k]]++] = (int)r;
	free(fill);
	return 0;
}

static int index_hosts(struct drs_plan *p)
{
	const struct drs_model *m = p->m;
	size_t i, *fill;

	p->vm_start = calloc(m->nr_hosts + 1, sizeof(*p->vm_start));
	p->vm_of = malloc((m->nr_vms ? m->nr_vms : 1) * sizeof(*p->vm_of));
	fill = malloc((m->nr_hosts ? m->nr_hosts : 1) * sizeof(*fill));
	if (!p->vm_start || !p->vm_of || !fill) {
		free(fill);
		return -ENOMEM;
	}
	for (i = 0; i < m->nr_vms; i++)
		if (m->vms[i].host >= 0)
			p->vm_start[m->vms[i].host + 1]++;
	for (i = 0; i < m->nr_hosts; i++)
		p->vm_start[i + 1] += p->vm_start[i];
	memcpy(fill, p->vm_start, m->nr_hosts * sizeof(*fill));
	for (i = 0; i < m->nr_vms; i++)
		if (m->vms[i].host >= 0)
			p->vm_of[fill[m->vms[i].host]++] = (int)i;
	free(fill);
	return 0;
}

int drs__plan_init(struct drs_plan *p, const struct drs_model *m, const struct drs_config *c)
{
	size_t nh = m->nr_hosts ? m->nr_hosts : 1, nv = m->nr_vms ? m->nr_vms : 1, i;

	memset(p, 0, sizeof(*p));
	p->m = m;
	p->c = c;
	p->host = malloc(nv * sizeof(*p->host));
	p->moved = calloc(nv, sizeof(*p->moved));
	p->demand = calloc(nh, sizeof(*p->demand));
	p->active = calloc(nh, sizeof(*p->active));
	p->mem_used = calloc(nh, sizeof(*p->mem_used));
	p->cpus_used = calloc(nh, sizeof(*p->cpus_used));
	p->nr_moves = calloc(nh, sizeof(*p->nr_moves));
	p->busy = calloc(nh, sizeof(*p->busy));
	p->serving = calloc(nh, sizeof(*p->serving));
	if (!p->host || !p->moved || !p->demand || !p->active || !p->mem_used || !p->cpus_used ||
	    !p->nr_moves || !p->busy || !p->serving || index_rules(p) || index_hosts(p)) {
		drs__plan_free(p);
		return -ENOMEM;
	}
	for (i = 0; i < m->nr_hosts; i++) {
		p->demand[i] = m->hosts[i].cpu_own;
		p->active[i] = (double)m->hosts[i].mem_own;
		p->mem_used[i] = m->hosts[i].mem_own;
	}
	for (i = 0; i < m->nr_vms; i++) {
		const struct drs_vm *v = &m->vms[i];

		p->host[i] = v->host;
		if (v->host < 0)
			continue;
		p->demand[v->host] += v->cpu_demand;
		p->active[v->host] += (double)v->mem_active;
		p->mem_used[v->host] += v->memory;
		p->cpus_used[v->host] += v->vcpus;
	}
	for (i = 0; i < m->nr_hosts; i++) {
		double l;

		p->serving[i] = host_serving(&m->hosts[i]);
		if (!p->serving[i])
			continue;
		l = drs__plan_load(p, (int)i);
		p->s1 += l;
		p->s2 += l * l;
		p->nr_serving++;
	}
	return 0;
}

void drs__plan_free(struct drs_plan *p)
{
	free(p->host);
	free(p->moved);
	free(p->demand);
	free(p->active);
	free(p->mem_used);
	free(p->cpus_used);
	free(p->nr_moves);
	free(p->busy);
	free(p->serving);
	free(p->rule_start);
	free(p->rule_of);
	free(p->rule_off);
	free(p->vm_start);
	free(p->vm_of);
	memset(p, 0, sizeof(*p));
}

/* Moves host h's demand by delta, keeping the sums of loads. */
static void shift(struct drs_plan *p, int h, double delta)
{
	double before = drs__plan_load(p, h), after;

	p->demand[h] += delta;
	if (!p->serving[h])
		return;
	after = drs__plan_load(p, h);
	p->s1 += after - before;
	p->s2 += after * after - before * before;
}

void drs__plan_apply(struct drs_plan *p, int v, int dst, double seconds)
{
	const struct drs_vm *vm = &p->m->vms[v];
	int src = p->host[v];

	if (src >= 0) {
		shift(p, src, -vm->cpu_demand);
		p->active[src] -= (double)vm->mem_active;
		p->mem_used[src] -= vm->memory;
		p->cpus_used[src] -= vm->vcpus;
		p->nr_moves[src]++;
		p->busy[src] += seconds;
	}
	shift(p, dst, vm->cpu_demand);
	p->active[dst] += (double)vm->mem_active;
	p->mem_used[dst] += vm->memory;
	p->cpus_used[dst] += vm->vcpus;
	p->nr_moves[dst]++;
	p->busy[dst] += seconds;
	p->host[v] = dst;
}

bool drs__plan_room(const struct drs_plan *p, int v, int h)
{
	const struct drs_vm *vm = &p->m->vms[v];
	const struct drs_host *host = &p->m->hosts[h];

	return p->mem_used[h] <= host->memory && vm->memory <= host->memory - p->mem_used[h] &&
	       p->cpus_used[h] + vm->vcpus <= host->cpus;
}

/* Whether rule r holds for VM v if v were on host h (the others where the plan has them). */
static bool rule_holds(const struct drs_plan *p, int r, int v, int h)
{
	const struct drs_rule *rule = &p->m->rules[r];
	bool in = false;
	size_t k;

	if (h >= 0 && (rule->kind == DRS_RULE_ON_GROUP || rule->kind == DRS_RULE_OFF_GROUP))
		in = (p->m->hosts[h].groups >> rule->group) & 1;

	switch (rule->kind) {
	case DRS_RULE_ON_GROUP:
		return h >= 0 && in;
	case DRS_RULE_OFF_GROUP:
		return h >= 0 && !in;
	case DRS_RULE_APART:
		for (k = 0; k < rule->nr_vms; k++)
			if (rule->vms[k] != v && p->host[rule->vms[k]] == h)
				return false;
		return true;
	case DRS_RULE_TOGETHER:
		if (p->rule_off[r])
			return true;
		for (k = 0; k < rule->nr_vms; k++)
			if (rule->vms[k] != v && p->host[rule->vms[k]] >= 0 &&
			    p->host[rule->vms[k]] != h)
				return false;
		return true;
	}
	return true;
}

bool drs__plan_legal(const struct drs_plan *p, int v, int h, int fixing, bool should)
{
	size_t k;

	if (!p->serving[h] || h == p->host[v] || !drs__plan_room(p, v, h))
		return false;
	for (k = p->rule_start[v]; k < p->rule_start[v + 1]; k++) {
		int r = p->rule_of[k];
		const struct drs_rule *rule = &p->m->rules[r];

		if (r == fixing) {
			/* the rule being fixed must hold there, but a gathering's does only once
			   all its members arrived */
			if (rule->kind != DRS_RULE_TOGETHER && !rule_holds(p, r, v, h))
				return false;
			continue;
		}
		if ((!rule->must && !should) || rule_holds(p, r, v, h))
			continue;
		/* A should rule already broken where the VM is may stay broken. */
		if (!rule->must && !rule_holds(p, r, v, p->host[v]))
			continue;
		return false;
	}
	return true;
}

bool drs__plan_in_together(const struct drs_plan *p, int v)
{
	size_t k;

	for (k = p->rule_start[v]; k < p->rule_start[v + 1]; k++) {
		int r = p->rule_of[k];

		if (p->m->rules[r].kind == DRS_RULE_TOGETHER && !p->rule_off[r] &&
		    p->m->rules[r].nr_vms > 1)
			return true;
	}
	return false;
}

/*
 * Pre-copy sends the memory, then what was dirtied meanwhile, and so on: about
 * memory / (1 - dirty/bandwidth) bytes. A VM dirtying at 90 % of the link or more
 * converges only by throttling, which costs as much as that.
 */
uint64_t drs__move_bytes(const struct drs_config *c, const struct drs_vm *vm)
{
	double ratio = vm->dirty_rate / c->bandwidth;

	if (ratio > 0.9)
		ratio = 0.9;
	return (uint64_t)((double)vm->mem_copy / (1 - ratio));
}

double drs__move_seconds(const struct drs_config *c, const struct drs_vm *vm)
{
	return (double)drs__move_bytes(c, vm) / c->bandwidth + c->move_seconds;
}

enum drs_automation drs__automation(const struct drs_config *c, const struct drs_vm *vm)
{
	return vm->automation == DRS_AUTO_CLUSTER ? c->automation : vm->automation;
}

/* The sum of squared deviations if d CPUs went from src to dst (-1: nowhere). */
static double ssd_if(const struct drs_plan *p, int src, int dst, double d)
{
	double s1 = p->s1, s2 = p->s2, l, x;

	if (src >= 0 && p->serving[src]) {
		l = drs__plan_load(p, src);
		x = d / p->m->hosts[src].cpu_capacity;
		s1 -= x;
		s2 += (l - x) * (l - x) - l * l;
	}
	if (dst >= 0 && p->serving[dst]) {
		l = drs__plan_load(p, dst);
		x = d / p->m->hosts[dst].cpu_capacity;
		s1 += x;
		s2 += (l + x) * (l + x) - l * l;
	}
	return ssd_of(s1, s2, p->nr_serving);
}

void drs__plan_move(struct drs_plan *p, struct drs_move *mv, int v, int dst, enum drs_reason reason,
		    int rule)
{
	const struct drs_vm *vm = &p->m->vms[v];
	size_t n = p->nr_serving;
	double before = sigma(drs__plan_ssd(p), n);

	*mv = (struct drs_move){
	    .vm = v,
	    .src = p->host[v],
	    .dst = dst,
	    .reason = reason,
	    .rule = rule,
	    .bytes = drs__move_bytes(p->c, vm),
	    .seconds = drs__move_seconds(p->c, vm),
	};
	mv->automatic =
	    reason == DRS_REASON_MAINTENANCE || drs__automation(p->c, vm) == DRS_AUTO_AUTOMATIC;
	if (reason == DRS_REASON_BALANCE && !mv->automatic &&
	    p->c->automation == DRS_AUTO_AUTOMATIC) {
		/*
		 * An automatic cluster's plan is what it applies. A manual VM's move waits
		 * for a user who may never come: the moves after it must balance without it.
		 */
		mv->gain = before - sigma(ssd_if(p, mv->src, dst, vm->cpu_demand), n);
		p->moved[v] = true;
		return;
	}
	drs__plan_apply(p, v, dst, mv->seconds);
	p->moved[v] = true;
	mv->gain = before - sigma(drs__plan_ssd(p), n);
}

static uint64_t free_memory(const struct drs_plan *p, int h)
{
	uint64_t mem = p->m->hosts[h].memory;

	return mem > p->mem_used[h] ? mem - p->mem_used[h] : 0;
}

/* Should rules v would break on h, or -1 if it would break a must rule. */
static int broken_on(const struct drs_plan *p, int v, int h)
{
	size_t k;
	int n = 0;

	for (k = p->rule_start[v]; k < p->rule_start[v + 1]; k++) {
		int r = p->rule_of[k];

		if (rule_holds(p, r, v, h))
			continue;
		if (p->m->rules[r].must)
			return -1;
		n++;
	}
	return n;
}

/*
 * The legal host for v that breaks the fewest should rules, then leaves the least sum of
 * squared deviations: a VM that must move anyway goes where its rules hold if it can.
 */
static int best_host(const struct drs_plan *p, int v, int fixing, bool should)
{
	double best_ssd = INFINITY;
	int best = -1, best_broken = INT_MAX;
	size_t h;

	for (h = 0; h < p->m->nr_hosts; h++) {
		double ssd;
		int broken;

		if (!drs__plan_legal(p, v, (int)h, fixing, should))
			continue;
		broken = broken_on(p, v, (int)h);
		if (broken < 0)
			continue;
		ssd = ssd_if(p, p->host[v], (int)h, p->m->vms[v].cpu_demand);
		if (best < 0 || broken < best_broken ||
		    (broken == best_broken && ssd < best_ssd - 1e-12) ||
		    (broken == best_broken && ssd <= best_ssd + 1e-12 &&
		     free_memory(p, (int)h) > free_memory(p, best))) {
			best = (int)h;
			best_broken = broken;
			best_ssd = ssd;
		}
	}
	return best;
}

/* Recommending */

struct rec {
	struct drs_plan p;
	struct drs_move *out;
	size_t nr, max;
};

static bool rule_movable(const struct rec *r, int v)
{
	const struct drs_vm *vm = &r->p.m->vms[v];
	int h = r->p.host[v];

	return h >= 0 && r->p.m->hosts[h].up && !vm->moving && !r->p.moved[v] &&
	       drs__automation(r->p.c, vm) != DRS_AUTO_DISABLED;
}

static void emit(struct rec *r, int v, int dst, enum drs_reason reason, int rule)
{
	struct drs_move *mv = &r->out[r->nr++];
	const struct drs_model *m = r->p.m;
	const char *vm = m->vms[v].name, *from = m->hosts[r->p.host[v]].name,
		   *to = m->hosts[dst].name;
	double lf = drs__plan_load(&r->p, r->p.host[v]), lt = drs__plan_load(&r->p, dst);

	drs__plan_move(&r->p, mv, v, dst, reason, rule);
	switch (reason) {
	case DRS_REASON_MAINTENANCE:
		snprintf(mv->why, sizeof(mv->why), "%s is in maintenance: %s to %s", from, vm, to);
		break;
	case DRS_REASON_RULE:
		snprintf(mv->why, sizeof(mv->why), "rule %s (%s): %s from %s to %s",
			 m->rules[rule].name, m->rules[rule].must ? "must" : "should", vm, from,
			 to);
		break;
	default:
		snprintf(mv->why, sizeof(mv->why),
			 "balance: %s from %s (load %.0f%% to %.0f%%) to %s (%.0f%% to %.0f%%), "
			 "imbalance -%.4f, %.1f GiB to copy",
			 vm, from, lf * 100, drs__plan_load(&r->p, mv->src) * 100, to, lt * 100,
			 drs__plan_load(&r->p, dst) * 100, mv->gain, (double)mv->bytes / GIB);
	}
}

static void evacuate_maintenance(struct rec *r)
{
	const struct drs_model *m = r->p.m;
	size_t h, k;

	for (h = 0; h < m->nr_hosts && r->nr < r->max; h++) {
		if (!m->hosts[h].up || !m->hosts[h].maintenance)
			continue;
		for (k = r->p.vm_start[h]; k < r->p.vm_start[h + 1] && r->nr < r->max; k++) {
			int v = r->p.vm_of[k], dst;

			if (m->vms[v].moving || r->p.moved[v])
				continue;
			dst = best_host(&r->p, v, -1, true);
			if (dst < 0) /* a should rule gives way to maintenance, a must never */
				dst = best_host(&r->p, v, -1, false);
			if (dst >= 0)
				emit(r, v, dst, DRS_REASON_MAINTENANCE, -1);
		}
	}
}

static void fix_group_rule(struct rec *r, int ri)
{
	const struct drs_rule *rule = &r->p.m->rules[ri];
	size_t k;

	for (k = 0; k < rule->nr_vms && r->nr < r->max; k++) {
		int v = rule->vms[k], dst;

		if (!rule_movable(r, v) || rule_holds(&r->p, ri, v, r->p.host[v]))
			continue;
		dst = best_host(&r->p, v, ri, true);
		if (dst >= 0)
			emit(r, v, dst, DRS_REASON_RULE, ri);
	}
}

/* Every VM of the rule that shares a host with an earlier one moves, the cheapest first. */
static void fix_apart(struct rec *r, int ri)
{
	const struct drs_rule *rule = &r->p.m->rules[ri];
	size_t a, b;

	for (a = 0; a < rule->nr_vms && r->nr < r->max; a++) {
		int v = rule->vms[a], keep = -1, dst;

		if (rule_holds(&r->p, ri, v, r->p.host[v]) || r->p.host[v] < 0)
			continue;
		/* Of the VMs sharing v's host, the most expensive to move stays. */
		for (b = 0; b < rule->nr_vms; b++) {
			int w = rule->vms[b];

			if (r->p.host[w] != r->p.host[v])
				continue;
			if (keep < 0 || !rule_movable(r, w) ||
			    (rule_movable(r, keep) &&
			     drs__move_bytes(r->p.c, &r->p.m->vms[w]) >
				 drs__move_bytes(r->p.c, &r->p.m->vms[keep])))
				keep = w;
		}
		if (keep == v || !rule_movable(r, v))
			continue;
		dst = best_host(&r->p, v, ri, true);
		if (dst >= 0)
			emit(r, v, dst, DRS_REASON_RULE, ri);
	}
}

/* Whether every member of TOGETHER rule ri not on h can legally go there, all of them. */
static bool can_gather(const struct rec *r, int ri, int h)
{
	const struct drs_rule *rule = &r->p.m->rules[ri];
	const struct drs_host *host = &r->p.m->hosts[h];
	uint64_t mem = 0;
	int64_t cpus = 0;
	size_t k, n = 0;

	for (k = 0; k < rule->nr_vms; k++) {
		int v = rule->vms[k];

		if (r->p.host[v] == h || r->p.host[v] < 0)
			continue;
		if (!rule_movable(r, v) || !drs__plan_legal(&r->p, v, h, ri, true))
			return false;
		mem += r->p.m->vms[v].memory;
		cpus += r->p.m->vms[v].vcpus;
		n++;
	}
	return n <= r->max - r->nr && r->p.mem_used[h] + mem <= host->memory &&
	       r->p.cpus_used[h] + cpus <= host->cpus;
}

static double staying_bytes(const struct rec *r, const struct drs_rule *rule, int h)
{
	double stay = 0;
	size_t k;

	for (k = 0; k < rule->nr_vms; k++)
		if (r->p.host[rule->vms[k]] == h)
			stay += (double)drs__move_bytes(r->p.c, &r->p.m->vms[rule->vms[k]]);
	return stay;
}

/*
 * The members gather on the host where those already there cost the most to move, if
 * all the others can legally go there; otherwise the next such host.
 */
static void fix_together(struct rec *r, int ri)
{
	const struct drs_rule *rule = &r->p.m->rules[ri];
	int target = -1;
	double best = -1;
	size_t a, k;

	if (r->p.rule_off[ri] || rule->nr_vms < 2 ||
	    rule_holds(&r->p, ri, rule->vms[0], r->p.host[rule->vms[0]]))
		return;
	for (a = 0; a < rule->nr_vms; a++) {
		int h = r->p.host[rule->vms[a]];
		double stay;

		if (h < 0 || !r->p.serving[h])
			continue;
		stay = staying_bytes(r, rule, h);
		if (stay > best && can_gather(r, ri, h)) {
			best = stay;
			target = h;
		}
	}
	if (target < 0)
		return;
	for (k = 0; k < rule->nr_vms; k++) {
		int v = rule->vms[k];

		if (r->p.host[v] != target && r->p.host[v] >= 0 && !r->p.moved[v])
			emit(r, v, target, DRS_REASON_RULE, ri);
	}
}

/* Must rules first, then should rules; host rules, then apart, then together. */
static void fix_rules(struct rec *r)
{
	static const enum drs_rule_kind order[] = {DRS_RULE_ON_GROUP, DRS_RULE_OFF_GROUP,
						   DRS_RULE_APART, DRS_RULE_TOGETHER};
	const struct drs_model *m = r->p.m;
	size_t pass, o, i;

	for (pass = 0; pass < 2; pass++)
		for (o = 0; o < 4; o++)
			for (i = 0; i < m->nr_rules && r->nr < r->max; i++) {
				const struct drs_rule *rule = &m->rules[i];

				if (rule->must != !pass || rule->kind != order[o])
					continue;
				if (rule->kind == DRS_RULE_APART)
					fix_apart(r, (int)i);
				else if (rule->kind == DRS_RULE_TOGETHER)
					fix_together(r, (int)i);
				else
					fix_group_rule(r, (int)i);
			}
}

/* Balancing */

struct order {
	int *host;	/* the serving hosts, least loaded first */
	int *pos;	/* per host: where in host[], -1 if not serving */
	int *src, *dst; /* search()'s candidates */
	size_t n;
};

static int order_init(struct order *o, const struct drs_plan *p)
{
	size_t i, j, nh = p->m->nr_hosts ? p->m->nr_hosts : 1;

	o->host = malloc(nh * sizeof(*o->host));
	o->pos = malloc(nh * sizeof(*o->pos));
	o->src = malloc(nh * sizeof(*o->src));
	o->dst = malloc(nh * sizeof(*o->dst));
	o->n = 0;
	if (!o->host || !o->pos || !o->src || !o->dst)
		return -ENOMEM;
	for (i = 0; i < p->m->nr_hosts; i++) {
		o->pos[i] = -1;
		if (!p->serving[i])
			continue;
		/* insertion sort: run once per pass, then kept sorted move by move */
		for (j = o->n; j && drs__plan_load(p, o->host[j - 1]) > drs__plan_load(p, (int)i);
		     j--)
			o->host[j] = o->host[j - 1];
		o->host[j] = (int)i;
		o->n++;
	}
	for (i = 0; i < o->n; i++)
		o->pos[o->host[i]] = (int)i;
	return 0;
}

static void order_free(struct order *o)
{
	free(o->host);
	free(o->pos);
	free(o->src);
	free(o->dst);
}

static void order_swap(struct order *o, size_t i, size_t j)
{
	int t = o->host[i];

	o->host[i] = o->host[j];
	o->host[j] = t;
	o->pos[o->host[i]] = (int)i;
	o->pos[o->host[j]] = (int)j;
}

static void order_fix(struct order *o, const struct drs_plan *p, int h)
{
	size_t i = (size_t)o->pos[h];
	double l = drs__plan_load(p, h);

	while (i > 0 && drs__plan_load(p, o->host[i - 1]) > l) {
		order_swap(o, i, i - 1);
		i--;
	}
	while (i + 1 < o->n && drs__plan_load(p, o->host[i + 1]) < l) {
		order_swap(o, i, i + 1);
		i++;
	}
}

static bool budget(const struct drs_plan *p, int h, double seconds)
{
	const struct drs_config *c = p->c;

	if (c->algorithm == DRS_ALGO_GREEDY)
		return true;
	if (p->nr_moves[h] >= c->max_host_moves)
		return false;
	return !p->nr_moves[h] ||
	       p->busy[h] + seconds <= c->pass_seconds * drs__host_slots(p->m, c, h);
}

static bool balance_movable(const struct rec *r, int v)
{
	const struct drs_vm *vm = &r->p.m->vms[v];

	return rule_movable(r, v) && r->p.serving[r->p.host[v]] && vm->cpu_demand > 0 &&
	       (vm->moved_ago < 0 || vm->moved_ago >= r->p.c->min_residence) &&
	       !drs__plan_in_together(&r->p, v);
}

struct cand {
	int v, dst;
	double score;
};

/*
 * The best move from one of the k most loaded hosts above the mean to one of the m
 * least loaded below it. *all: those were all the hosts on both sides.
 */
static struct cand search(const struct rec *r, const struct order *o, size_t k, size_t m,
			  double min_gain, bool *all)
{
	const struct drs_plan *p = &r->p;
	const struct drs_config *c = p->c;
	double mean = p->s1 / (double)p->nr_serving, ssd = drs__plan_ssd(p);
	double fixed = c->bandwidth * c->move_seconds;
	struct cand best = {-1, -1, 0};
	size_t i, j, ns = 0, nd = 0, a;
	int *src = o->src, *dst = o->dst;

	for (i = o->n; i-- > 0 && ns < k;) {
		int h = o->host[i];

		if (drs__plan_load(p, h) <= mean)
			break;
		if (budget(p, h, 0))
			src[ns++] = h;
	}
	*all = ns < k;
	for (i = 0; i < o->n && nd < m; i++) {
		int h = o->host[i];

		if (drs__plan_load(p, h) >= mean)
			break;
		if (budget(p, h, 0))
			dst[nd++] = h;
	}
	*all = *all && nd < m;
	for (i = 0; i < ns; i++)
		for (a = p->vm_start[src[i]]; a < p->vm_start[src[i] + 1]; a++) {
			int v = p->vm_of[a];
			const struct drs_vm *vm = &p->m->vms[v];
			double secs, bytes;

			if (p->host[v] != src[i] || !balance_movable(r, v))
				continue;
			secs = drs__move_seconds(c, vm);
			if (!budget(p, src[i], secs))
				continue;
			bytes = (double)drs__move_bytes(c, vm);
			for (j = 0; j < nd; j++) {
				double gain = ssd - ssd_if(p, src[i], dst[j], vm->cpu_demand),
				       score;

				if (gain < min_gain || gain <= 0 || !budget(p, dst[j], secs))
					continue;
				score =
				    c->algorithm == DRS_ALGO_GREEDY ? gain : gain / (bytes + fixed);
				if (score <= best.score || !drs__plan_legal(p, v, dst[j], -1, true))
					continue;
				best = (struct cand){v, dst[j], score};
			}
		}
	return best;
}

static int balance(struct rec *r)
{
	const struct drs_config *c = r->p.c;
	double tol = drs__tolerance(c->threshold), min_gain = c->min_gain * tol * tol;
	size_t k = 8, moves = 0,
	       cap = c->algorithm == DRS_ALGO_GREEDY ? SIZE_MAX : (size_t)c->max_moves;
	struct order o;

	if (!isfinite(tol) || r->p.nr_serving < 2)
		return 0;
	if (order_init(&o, &r->p)) {
		order_free(&o);
		return -ENOMEM;
	}
	while (r->nr < r->max && moves < cap &&
	       sigma(drs__plan_ssd(&r->p), r->p.nr_serving) > tol) {
		bool all;
		struct cand best = search(r, &o, k, k, min_gain, &all);
		int src;

		if (best.v < 0) {
			if (all)
				break;
			k *= 4; /* none among the extremes: look further in */
			continue;
		}
		src = r->p.host[best.v];
		emit(r, best.v, best.dst, DRS_REASON_BALANCE, -1);
		order_fix(&o, &r->p, src);
		order_fix(&o, &r->p, best.dst);
		moves++;
		k = 8;
	}
	order_free(&o);
	return 0;
}

int drs__recommend(const struct drs_model *m, const struct drs_config *c, struct drs_move *out,
		   size_t max_out, char *why, size_t whylen)
{
	struct rec r = {.out = out, .max = max_out > INT_MAX ? INT_MAX : max_out};
	int ret;

	ret = drs__check(m, c, why, whylen);
	if (ret)
		return ret;
	if (drs__plan_init(&r.p, m, c))
		goto err_nomem;
	evacuate_maintenance(&r);
	fix_rules(&r);
	if (balance(&r))
		goto err_plan;
	drs__plan_free(&r.p);
	return (int)r.nr;

err_plan:
	drs__plan_free(&r.p);
err_nomem:
	snprintf(why, whylen, "out of memory");
	return -ENOMEM;
}

/* Placement */

static void unplace(struct drs_plan *p, int v)
{
	const struct drs_vm *vm = &p->m->vms[v];
	int h = p->host[v];

	if (h < 0)
		return;
	shift(p, h, -vm->cpu_demand);
	p->active[h] -= (double)vm->mem_active;
	p->mem_used[h] -= vm->memory;
	p->cpus_used[h] -= vm->vcpus;
	p->host[v] = -1;
}

static void explain_place(const struct drs_plan *p, int v, int exclude, int noroom, int rules,
			  char *why, size_t len)
{
	const struct drs_model *m = p->m;
	size_t h;
	int out = 0;

	for (h = 0; h < m->nr_hosts; h++)
		out += !p->serving[h] || (int)h == exclude;
	snprintf(why, len,
		 "no host can take %s (%.1f GiB, %lld vCPUs): %d without room, %d against a "
		 "must rule, %d down, in maintenance or standby%s",
		 m->vms[v].name, (double)m->vms[v].memory / GIB, (long long)m->vms[v].vcpus, noroom,
		 rules, out, m->nr_hosts ? "" : " (no host at all)");
}

int drs__place(const struct drs_model *m, const struct drs_config *c, int vm, int exclude,
	       char *why, size_t whylen)
{
	struct drs_plan p;
	double best_ssd = INFINITY;
	int best = -1, best_broken = INT_MAX, noroom = 0, rules = 0, ret;
	size_t h;

	ret = drs__check(m, c, why, whylen);
	if (ret)
		return ret;
	if (vm < 0 || (size_t)vm >= m->nr_vms)
		return bad(why, whylen, "VM index %d of %zu", vm, m->nr_vms);
	if (drs__plan_init(&p, m, c)) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	unplace(&p, vm);
	for (h = 0; h < m->nr_hosts; h++) {
		double ssd;
		int broken;

		if (!p.serving[h] || (int)h == exclude)
			continue;
		if (!drs__plan_room(&p, vm, (int)h)) {
			noroom++;
			continue;
		}
		broken = broken_on(&p, vm, (int)h);
		if (broken < 0) {
			rules++;
			continue;
		}
		ssd = ssd_if(&p, -1, (int)h, m->vms[vm].cpu_demand);
		if (best < 0 || broken < best_broken ||
		    (broken == best_broken && ssd < best_ssd - 1e-12) ||
		    (broken == best_broken && ssd <= best_ssd + 1e-12 &&
		     free_memory(&p, (int)h) > free_memory(&p, best))) {
			best = (int)h;
			best_broken = broken;
			best_ssd = ssd;
		}
	}
	if (best < 0 && why)
		explain_place(&p, vm, exclude, noroom, rules, why, whylen);
	drs__plan_free(&p);
	return best;
}
