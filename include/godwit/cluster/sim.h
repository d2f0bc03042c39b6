/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_CLUSTER_SIM_H
#define GODWIT_CLUSTER_SIM_H

/*
 * The synthetic clusters of `godwit cluster simulate` (docs/drs.md, "Simulation"): a
 * generator, a reader of demand traces (JSON), and a lower bound on what balancing
 * must move. The scheduler it drives is drs.h's, unchanged.
 */
#include <stddef.h>
#include <stdint.h>

#include "godwit/cluster/drs.h"

struct sim {
	struct drs_host *hosts;
	size_t nr_hosts;
	struct drs_vm *vms;
	size_t nr_vms;
	struct drs_rule *rules;
	size_t nr_rules;
	double **demand; /* per VM: its CPU demand per pass (the last repeats) */
	size_t *nr_demand;
	char *groups[DRS_MAX_GROUPS]; /* a trace's group names */
};

struct sim_gen {
	size_t hosts, vms;
	double skew; /* 0..1: how much hotter the first quarter of the hosts is */
	uint64_t seed;
	size_t apart;	 /* pairs of VMs under a must APART rule, started on one host */
	size_t pinned;	 /* VMs under a must ON_GROUP rule (group 0: the even hosts) */
	size_t together; /* pairs of VMs under a should TOGETHER rule, started apart */
};

/*
 * Hosts of 64 CPUs offering 128 vCPUs and 512 GiB; VMs of 1..64 GiB with 1..16 vCPUs
 * placed at random where they fit, busy between 5 % and 95 % of their vCPUs, hotter on
 * the first quarter of the hosts by `skew`. 0, -EINVAL (a size that cannot fit) or
 * -ENOMEM.
 */
int sim__generate(struct sim *s, const struct sim_gen *g, char *why, size_t whylen);

/* Reads a trace (the format is in docs/drs.md). 0, or -EINVAL with why, or -ENOMEM. */
int sim__parse_trace(struct sim *s, const char *text, size_t len, char *why, size_t whylen);

/*
 * Sets each VM's cpu_demand for pass `pass` from its trace, times (1 + noise x a
 * normal deviate) drawn from *rng, never below 0.
 */
void sim__set_demand(struct sim *s, size_t pass, double noise, uint64_t *rng);

void sim__model(const struct sim *s, struct drs_model *m);
void sim__free(struct sim *s);

/*
 * A lower bound on what any sequence of moves costs to bring the imbalance to `tol`,
 * each VM that moves costing cost[v] (bytes, or 1 to count moves): the Lagrangian dual
 * of the fractional problem (docs/drs.md, "The lower bound"). Valid when the serving
 * hosts have one CPU capacity and no VM sits on a host that is not serving: -1 otherwise.
 * -ENOMEM as -2.
 */
double sim__lower_bound(const struct drs_model *m, double tol, const double *cost);

/* A deterministic generator (xorshift64*): the next value in [0, 1). */
double sim__uniform(uint64_t *rng);

#endif
