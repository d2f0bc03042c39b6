// SPDX-License-Identifier: GPL-2.0
/* Placement and the task queue's choice: pure functions (no etcd, no network). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/cluster/sched.h"

static bool fits(const struct sched_host *h, uint64_t memory, int64_t cpus)
{
	return h->up && !h->maintenance && h->mem_used + memory <= h->memory &&
	       h->cpus_used + cpus <= h->cpus;
}

/* a better than b for a VM: more free memory, fewer moves, then name. */
static bool better(const struct sched_host *a, const struct sched_host *b)
{
	uint64_t fa = a->memory - a->mem_used, fb = b->memory - b->mem_used;

	if (fa != fb)
		return fa > fb;
	if (a->slots_used != b->slots_used)
		return a->slots_used < b->slots_used;
	return strcmp(a->name, b->name) < 0;
}

static void mib(uint64_t bytes, char *out, size_t len)
{
	if (bytes >= (1ULL << 30) && !(bytes % (1ULL << 30)))
		snprintf(out, len, "%" PRIu64 " GiB", bytes >> 30);
	else
		snprintf(out, len, "%" PRIu64 " MiB", bytes >> 20);
}

static void explain(const struct sched_host *hosts, size_t n, uint64_t memory, int64_t cpus,
		    int exclude, const bool *allowed, char *why, size_t len)
{
	char need[32], free_mem[32];
	size_t i, used;

	mib(memory, need, sizeof(need));
	used = (size_t)snprintf(why, len, "no host has %s and %" PRId64 " vCPUs free:", need, cpus);
	for (i = 0; i < n && used < len; i++) {
		const struct sched_host *h = &hosts[i];

		if ((int)i == exclude)
			used += (size_t)snprintf(why + used, len - used, "%s %s (the VM's own)",
						 i ? "," : "", h->name);
		else if (allowed && !allowed[i])
			used += (size_t)snprintf(why + used, len - used, "%s %s (ruled out)",
						 i ? "," : "", h->name);
		else if (!h->up)
			used += (size_t)snprintf(why + used, len - used, "%s %s %s", i ? "," : "",
						 h->name, h->state ? h->state : "down");
		else if (h->maintenance)
			used += (size_t)snprintf(why + used, len - used, "%s %s in maintenance",
						 i ? "," : "", h->name);
		else {
			mib(h->mem_used < h->memory ? h->memory - h->mem_used : 0, free_mem,
			    sizeof(free_mem));
			used += (size_t)snprintf(
			    why + used, len - used, "%s %s %s and %" PRId64 " vCPUs", i ? "," : "",
			    h->name, free_mem, h->cpus_used < h->cpus ? h->cpus - h->cpus_used : 0);
		}
	}
	if (!n)
		snprintf(why, len, "no host is up (start a godwit agent on each host)");
}

int sched__place_on(const struct sched_host *hosts, size_t nr_hosts, uint64_t memory, int64_t cpus,
		    int exclude, const bool *allowed, char *why, size_t whylen)
{
	int best = -1;
	size_t i;

	for (i = 0; i < nr_hosts; i++) {
		if ((int)i == exclude || (allowed && !allowed[i]) || !fits(&hosts[i], memory, cpus))
			continue;
		if (best < 0 || better(&hosts[i], &hosts[best]))
			best = (int)i;
	}
	if (best < 0 && why)
		explain(hosts, nr_hosts, memory, cpus, exclude, allowed, why, whylen);
	return best;
}

int sched__place(const struct sched_host *hosts, size_t nr_hosts, uint64_t memory, int64_t cpus,
		 int exclude, char *why, size_t whylen)
{
	return sched__place_on(hosts, nr_hosts, memory, cpus, exclude, NULL, why, whylen);
}

int sched__host_slots(int per_host, int64_t link_mbit)
{
	if (link_mbit > 0 && link_mbit < SCHED_FAST_LINK_MBIT && per_host > SCHED_SLOW_LINK_SLOTS)
		return SCHED_SLOW_LINK_SLOTS;
	return per_host;
}

static bool slot_free(const struct sched_host *h, int per_host)
{
	return h->slots_used < sched__host_slots(per_host, h->link_mbit);
}

/* Like sched__place, among the hosts with a free migration slot. */
static int place_with_slot(const struct sched_host *hosts, size_t n, const struct sched_task *t,
			   int per_host)
{
	int best = -1;
	size_t i;

	for (i = 0; i < n; i++) {
		if ((int)i == t->src || (t->allowed && !t->allowed[i]) ||
		    !fits(&hosts[i], t->memory, t->cpus) || !slot_free(&hosts[i], per_host))
			continue;
		if (best < 0 || better(&hosts[i], &hosts[best]))
			best = (int)i;
	}
	return best;
}

static int decide(struct sched_host *hosts, size_t n, const struct sched_task *t,
		  const struct sched_limits *lim, struct sched_decision *d)
{
	const struct sched_host *dst;

	if (t->dst >= 0) {
		dst = &hosts[t->dst];
		/* A named destination must still be usable; its room is checked when asked. */
		if (!dst->up || dst->maintenance || (t->allowed && !t->allowed[t->dst])) {
			d->verdict = SCHED_NOROOM;
			return 0;
		}
		if (!slot_free(dst, lim->per_host))
			return 0;
		d->dst = t->dst;
	} else {
		d->dst = place_with_slot(hosts, n, t, lim->per_host);
		if (d->dst < 0) {
			if (sched__place_on(hosts, n, t->memory, t->cpus, t->src, t->allowed, NULL,
					    0) < 0)
				d->verdict = SCHED_NOROOM;
			return 0;
		}
	}
	d->verdict = SCHED_START;
	hosts[t->src].slots_used++;
	hosts[d->dst].slots_used++;
	hosts[d->dst].mem_used += t->memory;
	hosts[d->dst].cpus_used += t->cpus;
	return 1;
}

size_t sched__pick(struct sched_host *hosts, size_t nr_hosts, const struct sched_task *tasks,
		   size_t nr_tasks, int cluster_used, const struct sched_limits *limits,
		   struct sched_decision *out)
{
	size_t i, started = 0, *next;
	bool progress = true;

	for (i = 0; i < nr_tasks; i++) {
		out[i].verdict = SCHED_WAIT;
		out[i].dst = -1;
	}
	/* next[h]: the index of source host h's oldest task not yet decided. */
	next = calloc(nr_hosts ? nr_hosts : 1, sizeof(*next));
	if (!next)
		return 0;
	while (progress && cluster_used < limits->cluster) {
		int order[1024];
		size_t nr = 0, k;

		progress = false;
		/* This round's sources: those with a task left, the least busy first. */
		for (i = 0; i < nr_hosts && nr < 1024; i++) {
			while (next[i] < nr_tasks && tasks[next[i]].src != (int)i)
				next[i]++;
			if (next[i] < nr_tasks)
				order[nr++] = (int)i;
		}
		for (k = 1; k < nr; k++) {
			int h = order[k];
			size_t j = k;

			while (j && hosts[order[j - 1]].slots_used > hosts[h].slots_used) {
				order[j] = order[j - 1];
				j--;
			}
			order[j] = h;
		}
		for (k = 0; k < nr && cluster_used < limits->cluster; k++) {
			int h = order[k];
			size_t t = next[h];

			next[h]++;
			progress = true;
			if (!slot_free(&hosts[h], limits->per_host))
				continue;
			if (decide(hosts, nr_hosts, &tasks[t], limits, &out[t])) {
				started++;
				cluster_used++;
			}
		}
	}
	free(next);
	return started;
}
