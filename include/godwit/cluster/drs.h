/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_CLUSTER_DRS_H
#define GODWIT_CLUSTER_DRS_H

/*
 * Balancing (DRS), power (DPM) and rule-aware placement: pure functions from a model of
 * the cluster to recommendations, with no I/O, like sched.h, so that `godwit cluster
 * simulate` runs the very same code on a thousand synthetic hosts (docs/drs.md).
 *
 * The caller (the manager's leader, or the simulator) fills a struct drs_model from its
 * snapshot: hosts and VMs are arrays, and everything refers to them by index. Nothing is
 * kept between calls except what the caller passes back (struct dpm_state). The model is
 * checked (drs__check) before any decision: a bad index is -EINVAL with the reason, never
 * a crash, whatever etcd held.
 *
 * Units: CPU in CPUs (CPU-seconds per second: 1.5 is one and a half cores busy), memory
 * in bytes, rates in bytes per second, times in seconds.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Host groups a rule can name: bit g of drs_host.groups. */
#define DRS_MAX_GROUPS 64

/* Per VM; DRS_AUTO_CLUSTER takes the cluster's (drs_config.automation). */
enum drs_automation {
	DRS_AUTO_CLUSTER = 0,
	DRS_AUTO_MANUAL,    /* recommended, applied only when a user says so */
	DRS_AUTO_AUTOMATIC, /* applied each pass */
	DRS_AUTO_DISABLED,  /* never moved by DRS (maintenance still empties its host) */
};

struct drs_host {
	const char *name;
	bool up;	  /* its agent holds its lease; a down host is HA's, not DRS's */
	bool maintenance; /* entering or in: emptied, receives nothing, not balanced */
	bool standby;	  /* powered off by DPM: holds no VM, receives nothing */
	int64_t cpus; /* vCPUs offered to VMs: the room for drs_vm.vcpus (no overcommit past it) */
	double cpu_capacity; /* CPUs of compute (cores x threads): the denominator of its load */
	uint64_t memory;     /* bytes offered to VMs: the room for drs_vm.memory */
	double cpu_own;	     /* CPUs the host itself uses outside its VMs */
	uint64_t mem_own;    /* bytes the host itself uses outside its VMs (counts in its room) */
	uint64_t groups;     /* bit g set: member of host group g (g < DRS_MAX_GROUPS) */
	int slots; /* moves it runs at once (sched__host_slots: 4 on a link under 10 Gbit/s);
		      0: drs_config.host_slots */
};

struct drs_vm {
	const char *name;
	int host;	     /* index into the model's hosts; -1: not placed (drs__place) */
	int64_t vcpus;	     /* vCPUs it reserves on its host */
	uint64_t memory;     /* bytes configured: what it reserves on its host */
	uint64_t mem_copy;   /* bytes a move copies (its resident memory, at most memory) */
	uint64_t mem_active; /* bytes it actively uses (DPM's memory utilisation) */
	double cpu_demand;   /* CPUs it wants, smoothed over minutes: used + run-queue wait */
	double dirty_rate;   /* bytes per second it writes while running (the cost of its move) */
	double moved_ago;    /* seconds since its last move ended; < 0: never or unknown */
	enum drs_automation automation;
	bool moving; /* a task is queued or running for it: left alone this pass */
};

enum drs_rule_kind {
	DRS_RULE_TOGETHER, /* the rule's VMs on one host (affinity) */
	DRS_RULE_APART,	   /* no two of the rule's VMs on one host (anti-affinity) */
	DRS_RULE_ON_GROUP, /* each of the rule's VMs on a host of `group` */
	DRS_RULE_OFF_GROUP /* none of the rule's VMs on a host of `group` */
};

/*
 * A rule. `must`: never broken, by DRS, DPM, maintenance or placement (a VM that has no
 * legal host stays where it is, or is not placed). Not `must` ("should"): DRS and DPM
 * never break it and fix it first; placement and maintenance break it only when no host
 * keeps it. Anti-affinity wins: a TOGETHER rule two of whose VMs are in one APART rule
 * is ignored.
 */
struct drs_rule {
	const char *name;
	enum drs_rule_kind kind;
	bool must;
	int group;	/* ON_GROUP, OFF_GROUP: the bit in drs_host.groups */
	const int *vms; /* indices into the model's VMs */
	size_t nr_vms;
};

struct drs_model {
	const struct drs_host *hosts;
	size_t nr_hosts;
	const struct drs_vm *vms;
	size_t nr_vms;
	const struct drs_rule *rules;
	size_t nr_rules;
};

/* How drs__recommend chooses among the moves that reduce the imbalance. */
enum drs_algorithm {
	DRS_ALGO_COST = 0, /* the most imbalance removed per byte copied (the default) */
	DRS_ALGO_GREEDY,   /* the most imbalance removed, no cost, no caps: a baseline in the
			      style of Ganeti's hbal, for the simulator's comparisons */
};

struct drs_config {
	int threshold; /* 1..5, default 3: the tolerated imbalance (drs__tolerance) */
	enum drs_automation automation; /* the cluster's: MANUAL (default) or AUTOMATIC */
	enum drs_algorithm algorithm;
	int max_moves;	      /* balancing moves per pass in the cluster (default 1024) */
	int max_host_moves;   /* moves per pass in and out of one host (default 8) */
	int host_slots;	      /* moves a host runs at once unless drs_host.slots says (the
				 cluster's per-host limit, 8) */
	double pass_seconds;  /* time between passes (default 60): a host gets no more moves
				 than its slots finish in that time (at least one) */
	double min_gain;      /* a balancing move removes at least min_gain x tolerance^2 from
				 the sum of squared deviations of host loads (default 0.1) */
	double min_residence; /* seconds a VM stays after a move before DRS moves it again
				 for balance (default 600): no ping-pong */
	double bandwidth;     /* bytes per second a move copies at (measured; default 1 GiB/s) */
	double move_seconds;  /* fixed cost of any move (setup, switch-over; default 2 s) */
	double dpm_target;    /* DPM's target utilisation (default 0.63) */
	double dpm_tolerance; /* DPM's band is target +- this (default 0.18) */
	double dpm_window;    /* seconds a host stays out of the band before DPM acts (300) */
	int dpm_reserve;      /* host failures whose VMs the others must be able to restart
				 (default 1: N+1) */
};

/* The defaults above. */
void drs__config_default(struct drs_config *c);

/*
 * 0 if every index in the model is in range (VM hosts, rule VMs and groups), no host
 * has a capacity of 0 while holding VMs, and the config's values are in range;
 * -EINVAL with the reason in why otherwise ("rule web-apart: VM index 7 of 5").
 */
int drs__check(const struct drs_model *m, const struct drs_config *c, char *why, size_t whylen);

/* The moves host h runs at once: its slots, or the config's host_slots. */
int drs__host_slots(const struct drs_model *m, const struct drs_config *c, int h);

/* A host's load: (cpu_own + its VMs' cpu_demand) / cpu_capacity. */
double drs__host_load(const struct drs_model *m, int host);

/*
 * The imbalance: the standard deviation of the loads of the hosts that are up, in
 * service and not in standby (0 for fewer than two).
 */
double drs__imbalance(const struct drs_model *m);

/* The imbalance threshold 1..5 tolerates: 1 none is acted on (INFINITY), 5 the least. */
double drs__tolerance(int threshold);

enum drs_reason {
	DRS_REASON_BALANCE,	/* reduces the imbalance */
	DRS_REASON_RULE,	/* fixes a broken rule (`rule`) */
	DRS_REASON_MAINTENANCE, /* empties a host in maintenance */
	DRS_REASON_POWER_OFF,	/* empties a host DPM puts in standby */
};

struct drs_move {
	int vm, src, dst;
	enum drs_reason reason;
	int rule;	/* DRS_REASON_RULE: the rule's index; else -1 */
	double gain;	/* imbalance (standard deviation) removed, in the model */
	uint64_t bytes; /* bytes expected to be copied (memory and what it dirties) */
	double seconds; /* expected duration at the configured bandwidth */
	bool automatic; /* its VM's automation is AUTOMATIC: apply it without a user */
	char why[160];	/* a sentence for users */
};

/*
 * This pass's moves, in the order to queue them: rule and maintenance moves first, then
 * balancing moves while the imbalance is above the tolerance, each legal after the ones
 * before it (room, rules). Fills out[0..max_out); returns how many, or -EINVAL (why says
 * what is wrong in the model) or -ENOMEM. A VM appears at most once.
 */
int drs__recommend(const struct drs_model *m, const struct drs_config *c, struct drs_move *out,
		   size_t max_out, char *why, size_t whylen);

/*
 * Initial placement of VM `vm` (its host is ignored): the host, up, in service and with
 * room, whose load after placing it leaves the cluster the most balanced, keeping every
 * must rule and, if any host allows, every should rule; `exclude` (-1: none) is never
 * chosen. The host's index, -1 with why ("no host has room: ...") or -EINVAL.
 */
int drs__place(const struct drs_model *m, const struct drs_config *c, int vm, int exclude,
	       char *why, size_t whylen);

/* What DPM keeps between passes (the caller keeps it; zero it at start). */
struct dpm_state {
	double below_for; /* seconds every host has been below the band */
	double above_for; /* seconds some host has been above it */
};

enum dpm_action {
	DPM_NONE,
	DPM_POWER_OFF, /* empty `host` with `moves`, then run its power-off command */
	DPM_POWER_ON,  /* run `host`'s power-on command: DRS fills it once it is up */
};

struct dpm_decision {
	enum dpm_action action;
	int host;
	struct drs_move *moves; /* the caller's array of at least nr_vms entries */
	size_t nr_moves;
	char why[200];
};

/* A host's utilisation for DPM: the larger of its CPU load and its active memory share. */
double dpm__host_utilisation(const struct drs_model *m, int host);

/*
 * One DPM decision for a pass `elapsed` seconds after the last (state updated). Power
 * off when every serving host has been below target - tolerance for dpm_window: the
 * host whose VMs leave at the least cost, if they all fit elsewhere with every host
 * left at or below the target, rules kept, and dpm_reserve hosts' VMs could still be
 * restarted on the rest. Power on when some host has been above target + tolerance for
 * dpm_window (or the reserve is not met): the standby host with the most capacity.
 * 0, -EINVAL (why) or -ENOMEM; d->moves must hold nr_vms moves.
 */
int dpm__recommend(const struct drs_model *m, const struct drs_config *c, struct dpm_state *s,
		   double elapsed, struct dpm_decision *d, char *why, size_t whylen);

#endif
