// SPDX-License-Identifier: GPL-2.0
/*
 * Power (DPM): which host to empty and put in standby, which to power on. Pure, on the
 * same model and plan as drs.c (docs/drs.md, "Power").
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drs_plan.h"

static double util(const struct drs_plan *p, int h, double demand, double active)
{
	const struct drs_host *host = &p->m->hosts[h];
	double cpu = (p->demand[h] + demand) / host->cpu_capacity;
	double mem = host->memory ? (p->active[h] + active) / (double)host->memory : 0;

	return cpu > mem ? cpu : mem;
}

double dpm__host_utilisation(const struct drs_model *m, int host)
{
	const struct drs_host *h = &m->hosts[host];
	double active = (double)h->mem_own, mem;
	size_t i;

	for (i = 0; i < m->nr_vms; i++)
		if (m->vms[i].host == host)
			active += (double)m->vms[i].mem_active;
	mem = h->memory ? active / (double)h->memory : 0;
	return fmax(drs__host_load(m, host), mem);
}

/* A serving host other than `skip` holding the most VM memory, not yet in `failed`. */
static int largest(const struct drs_plan *p, int skip, const bool *failed)
{
	int best = -1;
	size_t h;

	for (h = 0; h < p->m->nr_hosts; h++) {
		if (!p->serving[h] || (int)h == skip || failed[h])
			continue;
		if (best < 0 || p->mem_used[h] - p->m->hosts[h].mem_own >
				    p->mem_used[best] - p->m->hosts[best].mem_own)
			best = (int)h;
	}
	return best;
}

/*
 * Whether, with `skip` gone (-1: none), the VMs of the dpm_reserve hosts holding the
 * most VM memory would fit in what the other serving hosts have free (memory and vCPUs
 * summed over them: a first check, not a packing).
 */
static int reserve_ok(const struct drs_plan *p, int skip, bool *ok)
{
	const struct drs_model *m = p->m;
	bool *failed = calloc(m->nr_hosts ? m->nr_hosts : 1, sizeof(*failed));
	uint64_t need_mem = 0, free_mem = 0;
	int64_t need_cpus = 0, free_cpus = 0;
	size_t h;
	int k;

	if (!failed)
		return -ENOMEM;
	for (k = 0; k < p->c->dpm_reserve; k++) {
		int f = largest(p, skip, failed);

		if (f < 0)
			break;
		failed[f] = true;
		need_mem += p->mem_used[f] - m->hosts[f].mem_own;
		need_cpus += p->cpus_used[f];
	}
	for (h = 0; h < m->nr_hosts; h++) {
		if (!p->serving[h] || (int)h == skip || failed[h])
			continue;
		if (p->mem_used[h] < m->hosts[h].memory)
			free_mem += m->hosts[h].memory - p->mem_used[h];
		if (p->cpus_used[h] < m->hosts[h].cpus)
			free_cpus += m->hosts[h].cpus - p->cpus_used[h];
	}
	free(failed);
	*ok = need_mem <= free_mem && need_cpus <= free_cpus;
	return 0;
}

/*
 * Whether DPM may move the VMs of host h at all. A VM set to manual on its own moves
 * only when a user applies its move, so its host stays up: power saving is not worth
 * overriding what the user asked of that VM.
 */
static bool evacuable(const struct drs_plan *p, int h)
{
	size_t a;

	for (a = p->vm_start[h]; a < p->vm_start[h + 1]; a++) {
		int v = p->vm_of[a];

		if (p->m->vms[v].moving || p->m->vms[v].automation == DRS_AUTO_MANUAL ||
		    drs__automation(p->c, &p->m->vms[v]) == DRS_AUTO_DISABLED ||
		    drs__plan_in_together(p, v))
			return false;
	}
	return true;
}

struct cand {
	int host;
	double bytes;
	size_t vms;
};

static int by_cost(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;

	if (x->bytes != y->bytes)
		return x->bytes < y->bytes ? -1 : 1;
	if (x->vms != y->vms)
		return x->vms < y->vms ? -1 : 1;
	return x->host - y->host;
}

static int by_memory(const void *a, const void *b, void *arg)
{
	const struct drs_vm *vms = arg;
	const int *x = a, *y = b;

	if (vms[*x].memory != vms[*y].memory)
		return vms[*x].memory > vms[*y].memory ? -1 : 1;
	return *x - *y;
}

/* The serving host other than h where v leaves the lowest utilisation, at most the target. */
static int destination(const struct drs_plan *p, int v, int h)
{
	const struct drs_vm *vm = &p->m->vms[v];
	double best_u = INFINITY;
	int best = -1;
	size_t g;

	for (g = 0; g < p->m->nr_hosts; g++) {
		double u;

		if ((int)g == h || !drs__plan_legal(p, v, (int)g, -1, true))
			continue;
		u = util(p, (int)g, vm->cpu_demand, (double)vm->mem_active);
		if (u <= p->c->dpm_target && u < best_u) {
			best_u = u;
			best = (int)g;
		}
	}
	return best;
}

/* Plans h's evacuation into d->moves; false (the plan undone) if some VM fits nowhere. */
static int try_evacuate(struct drs_plan *p, int h, struct dpm_decision *d, bool *done)
{
	size_t n = p->vm_start[h + 1] - p->vm_start[h], i;
	int *vms = malloc((n ? n : 1) * sizeof(*vms)), ret = 0;
	bool ok = true;

	if (!vms)
		return -ENOMEM;
	memcpy(vms, &p->vm_of[p->vm_start[h]], n * sizeof(*vms));
	qsort_r(vms, n, sizeof(*vms), by_memory, (void *)p->m->vms);
	d->nr_moves = 0;
	for (i = 0; i < n && ok; i++) {
		int dst = destination(p, vms[i], h);

		if (dst < 0) {
			ok = false;
			break;
		}
		drs__plan_move(p, &d->moves[d->nr_moves++], vms[i], dst, DRS_REASON_POWER_OFF, -1);
	}
	if (ok)
		ret = reserve_ok(p, h, &ok);
	if (!ok || ret)
		while (d->nr_moves) {
			struct drs_move *mv = &d->moves[--d->nr_moves];

			drs__plan_apply(p, mv->vm, h, 0);
			p->moved[mv->vm] = false;
		}
	free(vms);
	*done = ok && !ret;
	return ret;
}

static int power_off(struct drs_plan *p, struct dpm_decision *d)
{
	const struct drs_model *m = p->m;
	struct cand *c = malloc((m->nr_hosts ? m->nr_hosts : 1) * sizeof(*c));
	size_t n = 0, h, a;
	bool done = false;
	double bytes = 0;
	int ret = 0;

	if (!c)
		return -ENOMEM;
	for (h = 0; h < m->nr_hosts; h++) {
		if (!p->serving[h] || !evacuable(p, (int)h))
			continue;
		c[n] = (struct cand){(int)h, 0, p->vm_start[h + 1] - p->vm_start[h]};
		for (a = p->vm_start[h]; a < p->vm_start[h + 1]; a++)
			c[n].bytes += (double)drs__move_bytes(p->c, &m->vms[p->vm_of[a]]);
		n++;
	}
	qsort(c, n, sizeof(*c), by_cost);
	for (h = 0; h < n && !done && !ret; h++) {
		ret = try_evacuate(p, c[h].host, d, &done);
		if (done)
			d->host = c[h].host;
	}
	free(c);
	if (ret || !done)
		return ret;
	d->action = DPM_POWER_OFF;
	for (a = 0; a < d->nr_moves; a++) {
		struct drs_move *mv = &d->moves[a];

		mv->automatic = p->c->automation == DRS_AUTO_AUTOMATIC;
		bytes += (double)mv->bytes;
		snprintf(mv->why, sizeof(mv->why), "power: %s goes to standby: %s to %s",
			 m->hosts[d->host].name, m->vms[mv->vm].name, m->hosts[mv->dst].name);
	}
	snprintf(d->why, sizeof(d->why),
		 "every host below %.0f%% for %.0f s: %s to standby, %zu VMs move (%.1f GiB)",
		 (p->c->dpm_target - p->c->dpm_tolerance) * 100, p->c->dpm_window,
		 m->hosts[d->host].name, d->nr_moves, bytes / (1024.0 * 1024 * 1024));
	return 0;
}

/* The standby host with the most CPU capacity, then memory. */
static int power_on_host(const struct drs_model *m)
{
	int best = -1;
	size_t h;

	for (h = 0; h < m->nr_hosts; h++) {
		const struct drs_host *x = &m->hosts[h];

		if (!x->standby || x->maintenance)
			continue;
		if (best < 0 || x->cpu_capacity > m->hosts[best].cpu_capacity ||
		    (x->cpu_capacity == m->hosts[best].cpu_capacity &&
		     x->memory > m->hosts[best].memory))
			best = (int)h;
	}
	return best;
}

int dpm__recommend(const struct drs_model *m, const struct drs_config *c, struct dpm_state *s,
		   double elapsed, struct dpm_decision *d, char *why, size_t whylen)
{
	double lo = c->dpm_target - c->dpm_tolerance, hi = c->dpm_target + c->dpm_tolerance;
	bool below = true, above = false, reserve;
	struct drs_plan p;
	size_t h;
	int ret, on;

	d->action = DPM_NONE;
	d->host = -1;
	d->nr_moves = 0;
	d->why[0] = 0;
	ret = drs__check(m, c, why, whylen);
	if (ret)
		return ret;
	if (!isfinite(elapsed) || elapsed < 0) {
		snprintf(why, whylen, "elapsed time must be >= 0");
		return -EINVAL;
	}
	if (drs__plan_init(&p, m, c))
		goto err_nomem;
	for (h = 0; h < m->nr_hosts; h++) {
		double u;

		if (!p.serving[h])
			continue;
		u = util(&p, (int)h, 0, 0);
		below = below && u < lo;
		above = above || u > hi;
	}
	s->below_for = below && p.nr_serving ? s->below_for + elapsed : 0;
	s->above_for = above ? s->above_for + elapsed : 0;
	if (reserve_ok(&p, -1, &reserve))
		goto err_plan;
	on = power_on_host(m);
	if (on >= 0 && (!reserve || s->above_for >= c->dpm_window)) {
		d->action = DPM_POWER_ON;
		d->host = on;
		if (!reserve)
			snprintf(d->why, sizeof(d->why),
				 "the hosts up could not restart the VMs of %d failed host(s): %s "
				 "powers on",
				 c->dpm_reserve, m->hosts[on].name);
		else
			snprintf(d->why, sizeof(d->why),
				 "a host above %.0f%% for %.0f s: %s powers on", hi * 100,
				 c->dpm_window, m->hosts[on].name);
		s->above_for = 0;
	} else if (s->below_for >= c->dpm_window && p.nr_serving > 1 && reserve) {
		if (power_off(&p, d))
			goto err_plan;
		if (d->action == DPM_POWER_OFF)
			s->below_for = 0;
	}
	drs__plan_free(&p);
	return 0;

err_plan:
	drs__plan_free(&p);
err_nomem:
	snprintf(why, whylen, "out of memory");
	return -ENOMEM;
}
