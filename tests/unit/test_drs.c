// SPDX-License-Identifier: GPL-2.0
/* Balancing, rules, placement and power (pure functions), and the simulator's parts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/cluster/drs.h"
#include "godwit/cluster/sim.h"

#define GiB	  (1ULL << 30)
#define MAX_HOSTS 16
#define MAX_VMS	  256

struct lab {
	struct drs_host h[MAX_HOSTS];
	struct drs_vm v[MAX_VMS];
	struct drs_rule r[8];
	int rv[8][8];
	char names[MAX_HOSTS + MAX_VMS][32];
	size_t nh, nv, nr;
	struct drs_model m;
	struct drs_config c;
	struct drs_move moves[MAX_VMS];
};

static void lab_sync(struct lab *l)
{
	l->m = (struct drs_model){l->h, l->nh, l->v, l->nv, l->r, l->nr};
}

/* n hosts of 16 CPUs (32 vCPUs), 64 GiB; the config as the simulator runs it. */
static void lab_init(struct lab *l, size_t n)
{
	size_t i;

	memset(l, 0, sizeof(*l));
	for (i = 0; i < n; i++) {
		snprintf(l->names[i], sizeof(l->names[i]), "host-%zu", i);
		l->h[i] = (struct drs_host){.name = l->names[i],
					    .up = true,
					    .cpus = 32,
					    .cpu_capacity = 16,
					    .memory = 64 * GiB};
	}
	l->nh = n;
	drs__config_default(&l->c);
	l->c.automation = DRS_AUTO_AUTOMATIC;
	lab_sync(l);
}

static int lab_vm(struct lab *l, int host, double demand, uint64_t gib)
{
	int i = (int)l->nv++;

	snprintf(l->names[MAX_HOSTS + i], sizeof(l->names[0]), "vm-%d", i);
	l->v[i] = (struct drs_vm){.name = l->names[MAX_HOSTS + i],
				  .host = host,
				  .vcpus = 2,
				  .memory = gib * GiB,
				  .mem_copy = gib * GiB,
				  .mem_active = gib * GiB / 4,
				  .cpu_demand = demand,
				  .moved_ago = -1};
	lab_sync(l);
	return i;
}

static int lab_rule(struct lab *l, enum drs_rule_kind kind, bool must, int group, int n, ...)
{
	int i = (int)l->nr++, k;
	va_list ap;

	va_start(ap, n);
	for (k = 0; k < n; k++)
		l->rv[i][k] = va_arg(ap, int);
	va_end(ap);
	l->r[i] = (struct drs_rule){"rule", kind, must, group, l->rv[i], (size_t)n};
	lab_sync(l);
	return i;
}

static int recommend(struct lab *l)
{
	char why[256];
	int n = drs__recommend(&l->m, &l->c, l->moves, MAX_VMS, why, sizeof(why));

	if (n < 0)
		fail_msg("drs__recommend: %s", why);
	return n;
}

/* Applies the moves as a manager would; a pass later, every VM moved a pass ago. */
static void apply(struct lab *l, int n)
{
	size_t i;
	int k;

	for (i = 0; i < l->nv; i++)
		if (l->v[i].moved_ago >= 0)
			l->v[i].moved_ago += l->c.pass_seconds;
	for (k = 0; k < n; k++) {
		l->v[l->moves[k].vm].host = l->moves[k].dst;
		l->v[l->moves[k].vm].moved_ago = 0;
	}
}

/* Four hosts, all twelve VMs on host-0: the "all started on one host". */
static void lab_piled(struct lab *l)
{
	int i;

	lab_init(l, 4);
	for (i = 0; i < 12; i++)
		lab_vm(l, 0, 1.0, 2);
}

static void test_balances_a_piled_cluster_within_the_tolerance(void **state)
{
	struct lab l;
	int pass, n;

	(void)state;
	lab_piled(&l);
	assert_true(drs__imbalance(&l.m) > drs__tolerance(3));
	for (pass = 0; pass < 10; pass++) {
		n = recommend(&l);
		for (int k = 0; k < n; k++) {
			assert_int_equal(l.moves[k].reason, DRS_REASON_BALANCE);
			assert_true(l.moves[k].gain > 0);
			assert_true(l.moves[k].automatic);
		}
		apply(&l, n);
	}
	assert_true(drs__imbalance(&l.m) <= drs__tolerance(3));
}

static void test_no_ping_pong_over_ten_passes_of_a_steady_load(void **state)
{
	struct lab l;
	int left[MAX_VMS], pass, n, k, late = 0;
	uint64_t rng = 7;
	size_t i;

	(void)state;
	lab_init(&l, 6);
	for (i = 0; i < 60; i++)
		lab_vm(&l, (int)(i % 2), 0.2 + 0.6 * sim__uniform(&rng), 1 + i % 4);
	for (i = 0; i < l.nv; i++)
		left[i] = -1;
	/* A short residence so that only the gain keeps VMs from going back. */
	l.c.min_residence = 0;
	l.c.threshold = 4;
	for (pass = 0; pass < 10; pass++) {
		n = recommend(&l);
		for (k = 0; k < n; k++) {
			int v = l.moves[k].vm;

			assert_int_not_equal(l.moves[k].dst, left[v]);
			left[v] = l.moves[k].src;
			late += pass >= 6;
		}
		apply(&l, n);
	}
	assert_int_equal(late, 0);
}

static void test_residence_keeps_a_moved_vm_where_it_went(void **state)
{
	struct lab l;
	int n;

	(void)state;
	lab_piled(&l);
	for (size_t i = 0; i < l.nv; i++)
		l.v[i].moved_ago = 30; /* every VM just moved */
	assert_int_equal(recommend(&l), 0);
	l.v[3].moved_ago = 600;
	n = recommend(&l);
	assert_int_equal(n, 1);
	assert_int_equal(l.moves[0].vm, 3);
}

static void test_threshold_1_does_only_rule_moves(void **state)
{
	struct lab l;
	int n;

	(void)state;
	lab_piled(&l);
	lab_rule(&l, DRS_RULE_APART, true, 0, 2, 0, 1);
	l.c.threshold = 1;
	n = recommend(&l);
	assert_int_equal(n, 1);
	assert_int_equal(l.moves[0].reason, DRS_REASON_RULE);
	assert_int_equal(l.moves[0].rule, 0);
	apply(&l, n);
	assert_int_equal(recommend(&l), 0);
}

static void test_apart_pair_is_split_first(void **state)
{
	struct lab l;
	int n, a, b;

	(void)state;
	lab_piled(&l);
	lab_rule(&l, DRS_RULE_APART, false, 0, 3, 4, 5, 6);
	n = recommend(&l);
	assert_true(n >= 2);
	assert_int_equal(l.moves[0].reason, DRS_REASON_RULE);
	assert_int_equal(l.moves[1].reason, DRS_REASON_RULE);
	apply(&l, n);
	for (a = 4; a <= 6; a++)
		for (b = a + 1; b <= 6; b++)
			assert_int_not_equal(l.v[a].host, l.v[b].host);
	/* and balancing never puts them back together */
	for (int pass = 0; pass < 5; pass++)
		apply(&l, recommend(&l));
	for (a = 4; a <= 6; a++)
		for (b = a + 1; b <= 6; b++)
			assert_int_not_equal(l.v[a].host, l.v[b].host);
}

static void test_must_is_never_broken(void **state)
{
	struct lab l;
	int pass, k, n;

	(void)state;
	lab_piled(&l);
	l.h[0].groups = l.h[1].groups = 1 << 3;
	/* VMs 0..3 must stay on group 3; VM 4 is outside it and must come back. */
	lab_rule(&l, DRS_RULE_ON_GROUP, true, 3, 5, 0, 1, 2, 3, 4);
	l.v[4].host = 2;
	for (pass = 0; pass < 10; pass++) {
		n = recommend(&l);
		apply(&l, n);
		for (k = 0; k <= 3; k++)
			assert_true(l.v[k].host == 0 || l.v[k].host == 1);
	}
	assert_true(l.v[4].host == 0 || l.v[4].host == 1);
	/* maintenance of both group hosts: the VMs stay, a must is never broken */
	l.h[0].maintenance = l.h[1].maintenance = true;
	n = recommend(&l);
	for (k = 0; k < n; k++)
		assert_true(l.moves[k].vm > 4);
}

static void test_maintenance_empties_a_host(void **state)
{
	struct lab l;
	int n, k;

	(void)state;
	lab_init(&l, 3);
	for (k = 0; k < 6; k++)
		lab_vm(&l, k % 3, 0.5, 2);
	l.h[1].maintenance = true;
	l.c.threshold = 1;
	l.v[4].automation = DRS_AUTO_DISABLED; /* maintenance moves it all the same */
	/* VM 1 should run on host-0, the busier: it goes there rather than where the load
	   would have it */
	l.v[0].cpu_demand = 3;
	l.h[0].groups = 1 << 2;
	lab_rule(&l, DRS_RULE_ON_GROUP, false, 2, 1, 1);
	n = recommend(&l);
	assert_int_equal(n, 2);
	for (k = 0; k < n; k++) {
		assert_int_equal(l.moves[k].reason, DRS_REASON_MAINTENANCE);
		assert_int_equal(l.moves[k].src, 1);
		assert_int_equal(l.moves[k].dst, l.moves[k].vm == 1 ? 0 : 2);
		assert_true(l.moves[k].automatic);
	}
}

static void test_together_gathers_unless_apart_says_otherwise(void **state)
{
	struct lab l;
	int n;

	(void)state;
	lab_init(&l, 3);
	lab_vm(&l, 0, 1, 8); /* the expensive one stays */
	lab_vm(&l, 1, 1, 1);
	lab_vm(&l, 2, 1, 1);
	lab_rule(&l, DRS_RULE_TOGETHER, false, 0, 3, 0, 1, 2);
	l.c.threshold = 1;
	n = recommend(&l);
	assert_int_equal(n, 2);
	apply(&l, n);
	assert_int_equal(l.v[1].host, 0);
	assert_int_equal(l.v[2].host, 0);
	/* anti-affinity wins */
	lab_rule(&l, DRS_RULE_APART, true, 0, 2, 1, 2);
	n = recommend(&l);
	assert_int_equal(n, 1);
	assert_int_equal(l.moves[0].rule, 1);
	apply(&l, n);
	assert_int_equal(recommend(&l), 0);
}

/* Four hosts, forty 1 GiB VMs on host-0 (load 1), the strictest threshold. */
static void lab_crowded(struct lab *l)
{
	int k;

	lab_init(l, 4);
	for (k = 0; k < 40; k++)
		lab_vm(l, 0, 0.4, 1);
	l->h[0].cpus = 100;
	l->c.threshold = 5;
}

static void test_caps_per_pass_and_per_host(void **state)
{
	struct lab l;
	int n, k, per[4] = {0};

	(void)state;
	lab_crowded(&l);
	l.c.max_host_moves = 3;
	n = recommend(&l);
	assert_int_equal(n, 3); /* host-0 takes part in every move */
	l.c.max_host_moves = 100;
	l.c.max_moves = 5;
	assert_int_equal(recommend(&l), 5);
	/* moves longer than a pass: one per host and pass */
	l.c.max_moves = 100;
	l.c.bandwidth = 1 << 20;
	n = recommend(&l);
	assert_int_equal(n, 1);
	for (k = 0; k < n; k++)
		per[l.moves[k].dst]++;
	assert_true(per[1] <= 1 && per[2] <= 1 && per[3] <= 1);
}

/* A host on a slow link (fewer slots) gets fewer moves per pass, as source and as destination. */
static void test_a_hosts_own_slots_cap_its_moves(void **state)
{
	struct lab l;
	int n, k, per[4] = {0};
	char why[256];

	(void)state;
	lab_crowded(&l);
	l.c.max_host_moves = 100;
	/* 8 s a move, plus 2 s fixed: 6 fit in a slot's 60 s pass */
	l.c.bandwidth = GiB / 8;
	assert_true(recommend(&l) > 24); /* 8 slots: all the balance wants */
	l.h[0].slots = 4;
	assert_int_equal(recommend(&l), 24);
	l.h[0].slots = 1;
	assert_int_equal(recommend(&l), 6);
	assert_int_equal(drs__host_slots(&l.m, &l.c, 0), 1);
	assert_int_equal(drs__host_slots(&l.m, &l.c, 1), 8);
	l.h[0].slots = 0;
	l.h[1].slots = 1;
	n = recommend(&l);
	for (k = 0; k < n; k++)
		per[l.moves[k].dst]++;
	assert_int_equal(per[1], 6);
	assert_true(per[2] > 6 && per[3] > 6);
	l.h[1].slots = -1;
	assert_int_equal(drs__recommend(&l.m, &l.c, l.moves, MAX_VMS, why, sizeof(why)), -EINVAL);
}

/*
 * An automatic cluster with a manual VM, the cheapest to move: it is recommended, and
 * the moves applied without it balance the cluster (they do not count on it).
 */
static void test_an_automatic_cluster_balances_around_a_manual_vm(void **state)
{
	struct lab l;
	int n, k, applied = 0, manual = 0;

	(void)state;
	lab_piled(&l);
	l.v[0].memory = l.v[0].mem_copy = GiB;
	l.v[0].automation = DRS_AUTO_MANUAL;
	l.c.threshold = 5;
	l.c.max_host_moves = 100;
	n = recommend(&l);
	for (k = 0; k < n; k++) {
		if (l.moves[k].vm == 0) {
			assert_false(l.moves[k].automatic);
			manual++;
			continue;
		}
		assert_true(l.moves[k].automatic);
		l.moves[applied++] = l.moves[k];
	}
	assert_int_equal(manual, 1);
	apply(&l, applied);
	assert_int_equal(l.v[0].host, 0);
	assert_true(drs__imbalance(&l.m) <= drs__tolerance(l.c.threshold));
	/* The next pass finds the cluster in balance: not even the manual move is left. */
	assert_int_equal(recommend(&l), 0);
}

/* A busy 32 GiB VM or eight small ones carry the same load: the cost model takes the small. */
static void test_cost_prefers_cheap_moves_to_the_baseline(void **state)
{
	struct lab l;
	double cost = 0, greedy = 0;
	int n, k;

	(void)state;
	lab_init(&l, 2);
	lab_vm(&l, 0, 4, 32);
	for (k = 0; k < 8; k++)
		lab_vm(&l, 0, 0.5, 1);
	n = recommend(&l);
	for (k = 0; k < n; k++)
		cost += (double)l.moves[k].bytes;
	l.c.algorithm = DRS_ALGO_GREEDY;
	n = recommend(&l);
	for (k = 0; k < n; k++)
		greedy += (double)l.moves[k].bytes;
	assert_true(cost > 0);
	assert_true(cost < greedy);
}

static void test_place_keeps_balance_and_rules(void **state)
{
	struct lab l;
	char why[256];
	int v, w;

	(void)state;
	lab_init(&l, 3);
	lab_vm(&l, 0, 8, 4);
	lab_vm(&l, 1, 4, 4);
	lab_vm(&l, 2, 6, 4);
	v = lab_vm(&l, -1, 2, 4);
	assert_int_equal(drs__place(&l.m, &l.c, v, -1, why, sizeof(why)), 1);
	assert_int_equal(drs__place(&l.m, &l.c, v, 1, why, sizeof(why)), 2);
	/* apart from VM 1 (on host-1): the next best */
	lab_rule(&l, DRS_RULE_APART, true, 0, 2, 1, v);
	assert_int_equal(drs__place(&l.m, &l.c, v, -1, why, sizeof(why)), 2);
	/* a should rule gives way when nothing else fits, a must does not */
	l.h[0].memory = l.h[2].memory = 6 * GiB;
	assert_int_equal(drs__place(&l.m, &l.c, v, -1, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "2 without room, 1 against a must rule"));
	l.r[0].must = false;
	assert_int_equal(drs__place(&l.m, &l.c, v, -1, why, sizeof(why)), 1);
	w = lab_vm(&l, -1, 1, 100);
	assert_int_equal(drs__place(&l.m, &l.c, w, -1, why, sizeof(why)), -1);
}

static void test_check_refuses_a_bad_model(void **state)
{
	struct lab l;
	char why[256];

	(void)state;
	lab_piled(&l);
	lab_rule(&l, DRS_RULE_APART, true, 0, 2, 0, 99);
	assert_int_equal(drs__recommend(&l.m, &l.c, l.moves, MAX_VMS, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "VM index 99"));
	l.rv[0][1] = 1;
	l.r[0].kind = DRS_RULE_ON_GROUP;
	l.r[0].group = 64;
	assert_int_equal(drs__check(&l.m, &l.c, why, sizeof(why)), -EINVAL);
	l.r[0].group = 1;
	l.v[2].cpu_demand = NAN;
	assert_int_equal(drs__check(&l.m, &l.c, why, sizeof(why)), -EINVAL);
	l.v[2].cpu_demand = 1;
	l.v[2].host = 4;
	assert_int_equal(drs__check(&l.m, &l.c, why, sizeof(why)), -EINVAL);
	l.v[2].host = 0;
	l.h[1].cpu_capacity = 0;
	assert_int_equal(drs__check(&l.m, &l.c, why, sizeof(why)), -EINVAL);
	l.h[1].cpu_capacity = 16;
	l.c.threshold = 6;
	assert_int_equal(drs__place(&l.m, &l.c, 0, -1, why, sizeof(why)), -EINVAL);
	l.c.threshold = 3;
	assert_int_equal(drs__check(&l.m, &l.c, why, sizeof(why)), 0);
}

/* Four idle hosts of two VMs each. */
static void lab_idle(struct lab *l)
{
	int k;

	lab_init(l, 4);
	for (k = 0; k < 8; k++)
		lab_vm(l, k % 4, 0.5, 4 + (uint64_t)k % 4 * 4);
	l->c.dpm_window = 120;
}

static void test_dpm_powers_off_after_the_window_and_keeps_n_plus_1(void **state)
{
	struct drs_move moves[MAX_VMS];
	struct dpm_decision d = {.moves = moves};
	struct dpm_state s = {0};
	struct lab l;
	char why[256];
	size_t k;

	(void)state;
	lab_idle(&l);
	assert_int_equal(dpm__recommend(&l.m, &l.c, &s, 60, &d, why, sizeof(why)), 0);
	assert_int_equal(d.action, DPM_NONE); /* not yet the window */
	assert_int_equal(dpm__recommend(&l.m, &l.c, &s, 60, &d, why, sizeof(why)), 0);
	assert_int_equal(d.action, DPM_POWER_OFF);
	/* the cheapest host: host-0 holds the smallest VMs */
	assert_int_equal(d.host, 0);
	assert_int_equal(d.nr_moves, 2);
	for (k = 0; k < d.nr_moves; k++) {
		assert_int_equal(moves[k].src, 0);
		assert_int_not_equal(moves[k].dst, 0);
		l.v[moves[k].vm].host = moves[k].dst;
	}
	l.h[0].standby = true;
	/* the window starts again */
	assert_int_equal(dpm__recommend(&l.m, &l.c, &s, 60, &d, why, sizeof(why)), 0);
	assert_int_equal(d.action, DPM_NONE);
	/* N+1: four hosts of 40 GiB with three 8 GiB VMs each. Emptying one leaves three
	   hosts of 32 GiB, with 16 GiB free between two of them: not enough to restart the
	   third's VMs. */
	lab_init(&l, 4);
	for (k = 0; k < 12; k++)
		lab_vm(&l, (int)(k % 4), 0.5, 8);
	for (k = 0; k < 4; k++)
		l.h[k].memory = 40 * GiB;
	l.c.dpm_window = 0;
	assert_int_equal(dpm__recommend(&l.m, &l.c, &s, 60, &d, why, sizeof(why)), 0);
	assert_int_equal(d.action, DPM_NONE);
	l.c.dpm_reserve = 0;
	assert_int_equal(dpm__recommend(&l.m, &l.c, &s, 60, &d, why, sizeof(why)), 0);
	assert_int_equal(d.action, DPM_POWER_OFF);
	assert_int_equal(d.nr_moves, 3);
}

/* A VM set to manual on its own keeps its host up: DPM empties another. */
static void test_dpm_leaves_the_host_of_a_manual_vm(void **state)
{
	struct drs_move moves[MAX_VMS];
	struct dpm_decision d = {.moves = moves};
	struct dpm_state s = {0};
	struct lab l;
	char why[256];
	size_t k;

	(void)state;
	lab_idle(&l);
	l.c.dpm_window = 0;
	l.v[0].automation = DRS_AUTO_MANUAL; /* on host-0, the cheapest to empty */
	assert_int_equal(dpm__recommend(&l.m, &l.c, &s, 60, &d, why, sizeof(why)), 0);
	assert_int_equal(d.action, DPM_POWER_OFF);
	assert_int_not_equal(d.host, 0);
	for (k = 0; k < d.nr_moves; k++)
		assert_int_not_equal(moves[k].vm, 0);
}

static void test_dpm_powers_on_when_hot_or_short_of_reserve(void **state)
{
	struct drs_move moves[MAX_VMS];
	struct dpm_decision d = {.moves = moves};
	struct dpm_state s = {0};
	struct lab l;
	char why[256];

	(void)state;
	lab_piled(&l);
	for (size_t k = 0; k < l.nv; k++)
		l.v[k].cpu_demand = 1.2; /* host-0 at 90 % */
	l.h[3].standby = true;
	l.c.dpm_window = 120;
	assert_int_equal(dpm__recommend(&l.m, &l.c, &s, 60, &d, why, sizeof(why)), 0);
	assert_int_equal(d.action, DPM_NONE);
	assert_int_equal(dpm__recommend(&l.m, &l.c, &s, 60, &d, why, sizeof(why)), 0);
	assert_int_equal(d.action, DPM_POWER_ON);
	assert_int_equal(d.host, 3);
	/* cool, but host-1 and host-2 could not take host-0's VMs if it failed */
	lab_piled(&l);
	l.h[3].standby = true;
	l.h[1].memory = l.h[2].memory = 8 * GiB;
	for (size_t k = 0; k < l.nv; k++)
		l.v[k].cpu_demand = 0.1;
	memset(&s, 0, sizeof(s));
	assert_int_equal(dpm__recommend(&l.m, &l.c, &s, 60, &d, why, sizeof(why)), 0);
	assert_int_equal(d.action, DPM_POWER_ON);
	assert_non_null(strstr(d.why, "could not restart"));
}

static void test_trace_is_read_strictly(void **state)
{
	static const char good[] =
	    "{\"hosts\": [{\"name\": \"a\", \"cpus\": 8, \"memory\": \"16G\", \"groups\": "
	    "[\"ssd\"]}, {\"name\": \"b\", \"cpus\": 8, \"memory\": 17179869184}],"
	    " \"vms\": [{\"name\": \"x\", \"host\": \"a\", \"memory\": \"1G\", \"demand\": [1, 2]},"
	    " {\"name\": \"y\", \"host\": \"a\", \"memory\": \"1G\", \"demand\": 3}],"
	    " \"rules\": [{\"name\": \"r\", \"kind\": \"on-group\", \"group\": \"ssd\", \"must\": "
	    "true, \"vms\": [\"x\"]}]}";
	static const char *const bad[] = {
	    "[]",
	    "{\"hosts\": [], \"vms\": []}",
	    "{\"hosts\": [{\"name\": \"a\", \"cpus\": 8, \"memory\": \"16G\", \"x\": 1}], "
	    "\"vms\": []}",
	    "{\"hosts\": [{\"name\": \"a\", \"cpus\": 8}], \"vms\": [{\"name\": \"x\", \"host\": "
	    "\"b\", \"memory\": 1, \"demand\": 1}]}",
	    "{\"hosts\": [{\"name\": \"a\", \"cpus\": 8}, {\"name\": \"a\", \"cpus\": 8}], "
	    "\"vms\": []}",
	    "{\"hosts\": [{\"name\": \"a\", \"cpus\": 8}], \"vms\": [{\"name\": \"x\", "
	    "\"memory\": 1, \"demand\": -1}]}",
	    "{\"hosts\": [{\"name\": \"a\", \"cpus\": 8}], \"vms\": [], \"rules\": [{\"name\": "
	    "\"r\", \"kind\": \"apart\", \"vms\": [\"nobody\"]}]}",
	};
	struct sim s;
	char why[256];
	size_t i;

	(void)state;
	assert_int_equal(sim__parse_trace(&s, good, strlen(good), why, sizeof(why)), 0);
	assert_int_equal(s.nr_hosts, 2);
	assert_int_equal(s.hosts[0].memory, 16 * GiB);
	assert_true(s.hosts[0].groups == 1 && s.hosts[1].groups == 0);
	assert_true(s.hosts[0].cpu_capacity == 8);
	assert_int_equal(s.vms[1].host, 0);
	assert_true(s.vms[0].cpu_demand == 1);
	sim__set_demand(&s, 5, 0, NULL);
	assert_true(s.vms[0].cpu_demand == 2 && s.vms[1].cpu_demand == 3);
	assert_true(s.rules[0].must && s.rules[0].kind == DRS_RULE_ON_GROUP);
	sim__free(&s);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(sim__parse_trace(&s, bad[i], strlen(bad[i]), why, sizeof(why)),
				 -EINVAL);
		assert_true(strlen(why) > 5);
	}
}

/* Two hosts of capacity 1, four VMs of 0.25 on one: the bound by hand. */
static void test_lower_bound(void **state)
{
	double cost[4] = {1, 1, 1, 1}, lb;
	struct lab l;
	int k;

	(void)state;
	lab_init(&l, 2);
	l.h[0].cpu_capacity = l.h[1].cpu_capacity = 1;
	for (k = 0; k < 4; k++)
		lab_vm(&l, 0, 0.25, 1);
	/* exactly balanced: half the load moves, two VMs */
	lb = sim__lower_bound(&l.m, 0, cost);
	assert_true(fabs(lb - 2) < 1e-3);
	/* within 0.1: host-0 at most sqrt(2) x 0.1 above the mean, 0.3586 shed */
	lb = sim__lower_bound(&l.m, 0.1, cost);
	assert_true(fabs(lb - 4 * (0.5 - sqrt(0.02))) < 1e-3);
	/* what the scheduler does costs at least that */
	l.c.threshold = 3;
	assert_true(recommend(&l) >= lb);
	l.h[1].cpu_capacity = 2;
	assert_true(sim__lower_bound(&l.m, 0.1, cost) == -1);
}

static void test_generator_is_reproducible(void **state)
{
	struct sim_gen g = {
	    .hosts = 8, .vms = 160, .skew = 0.5, .seed = 3, .apart = 2, .pinned = 3, .together = 1};
	struct sim a, b;
	char why[256];
	size_t i;

	(void)state;
	assert_int_equal(sim__generate(&a, &g, why, sizeof(why)), 0);
	assert_int_equal(sim__generate(&b, &g, why, sizeof(why)), 0);
	assert_int_equal(a.nr_rules, 4);
	for (i = 0; i < a.nr_vms; i++) {
		assert_int_equal(a.vms[i].host, b.vms[i].host);
		assert_true(a.vms[i].cpu_demand == b.vms[i].cpu_demand);
	}
	assert_int_equal(a.vms[0].host, a.vms[1].host); /* an apart pair, started together */
	for (i = 4; i < 7; i++)
		assert_int_equal(a.vms[i].host % 2, 0); /* pinned to the even hosts */
	sim__free(&a);
	sim__free(&b);
	g.vms = 100000;
	assert_int_equal(sim__generate(&a, &g, why, sizeof(why)), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_balances_a_piled_cluster_within_the_tolerance),
	    cmocka_unit_test(test_no_ping_pong_over_ten_passes_of_a_steady_load),
	    cmocka_unit_test(test_residence_keeps_a_moved_vm_where_it_went),
	    cmocka_unit_test(test_threshold_1_does_only_rule_moves),
	    cmocka_unit_test(test_apart_pair_is_split_first),
	    cmocka_unit_test(test_must_is_never_broken),
	    cmocka_unit_test(test_maintenance_empties_a_host),
	    cmocka_unit_test(test_together_gathers_unless_apart_says_otherwise),
	    cmocka_unit_test(test_caps_per_pass_and_per_host),
	    cmocka_unit_test(test_a_hosts_own_slots_cap_its_moves),
	    cmocka_unit_test(test_an_automatic_cluster_balances_around_a_manual_vm),
	    cmocka_unit_test(test_cost_prefers_cheap_moves_to_the_baseline),
	    cmocka_unit_test(test_place_keeps_balance_and_rules),
	    cmocka_unit_test(test_check_refuses_a_bad_model),
	    cmocka_unit_test(test_dpm_powers_off_after_the_window_and_keeps_n_plus_1),
	    cmocka_unit_test(test_dpm_leaves_the_host_of_a_manual_vm),
	    cmocka_unit_test(test_dpm_powers_on_when_hot_or_short_of_reserve),
	    cmocka_unit_test(test_trace_is_read_strictly),
	    cmocka_unit_test(test_lower_bound),
	    cmocka_unit_test(test_generator_is_reproducible),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
