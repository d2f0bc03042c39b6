/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_CLUSTER_SCHED_H
#define GODWIT_CLUSTER_SCHED_H

/*
 * The scheduler: pure functions from a snapshot of the cluster to decisions, with no
 * I/O (no etcd, no network), so that a simulator can run the very same code on
 * synthetic clusters (docs/cluster.md, "Placement and the queue").
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sched_host {
	const char *name;
	bool up;	  /* its agent holds its lease */
	bool maintenance; /* entering or in: no new VM goes there */
	int64_t cpus;	  /* vCPUs offered */
	uint64_t memory;  /* bytes offered */
	int64_t cpus_used;
	uint64_t mem_used; /* VMs it owns, and those on their way to it */
	int slots_used;	   /* migrations in flight in and out */
	const char *state; /* why not up, for messages ("in standby"...); NULL: "down" */
	int64_t link_mbit; /* its migration link's speed, Mbit/s; 0: unknown */
};

struct sched_limits {
	int per_host; /* migrations in flight per host, in and out together */
	int cluster;  /* migrations in flight in the cluster */
};

/*
 * vSphere's network cost of a migration: a host on a link slower than 10 Gbit/s runs at
 * most 4 at once (8 on 10 GbE). Moves that share a 1 Gbit/s link while their guests write
 * send more and take longer than fewer at a time (docs/cluster.md, "Limits").
 */
#define SCHED_FAST_LINK_MBIT  10000
#define SCHED_SLOW_LINK_SLOTS 4

/* The migrations a host runs at once: per_host, capped by its link (link_mbit 0: unknown). */
int sched__host_slots(int per_host, int64_t link_mbit);

struct sched_task {
	int src;	 /* host index */
	int dst;	 /* host index, or -1: the scheduler chooses */
	uint64_t memory; /* what the VM needs */
	int64_t cpus;
	const bool *allowed; /* per host: the VM's "must" rules let it run there; NULL: all */
};

enum sched_verdict {
	SCHED_WAIT,   /* over a limit now: stays queued */
	SCHED_START,  /* start it, to dst */
	SCHED_NOROOM, /* no host can take it even with every slot free */
};

struct sched_decision {
	enum sched_verdict verdict;
	int dst;
};

/*
 * The host a new VM goes to: up, not in maintenance, not `exclude` (-1: none), with
 * room for its memory and vCPUs; of those the one with the most free memory (then the
 * fewest VMs moving, then name order). -1 if none, with why listing each host's room
 * ("no host has 1 GiB and 2 vCPUs free: host-a 512 MiB, host-b in maintenance").
 */
int sched__place(const struct sched_host *hosts, size_t nr_hosts, uint64_t memory, int64_t cpus,
		 int exclude, char *why, size_t whylen);
/* The same among the hosts allowed[i] (a VM's "must" rules; NULL: every host). */
int sched__place_on(const struct sched_host *hosts, size_t nr_hosts, uint64_t memory, int64_t cpus,
		    int exclude, const bool *allowed, char *why, size_t whylen);

/*
 * Which queued tasks (oldest first) start now, within the limits. Tasks are taken
 * round-robin between source hosts, the least busy first, so that one host's
 * evacuation cannot take every cluster slot. hosts' slots_used, mem_used and
 * cpus_used are updated for each start (the caller's copy). cluster_used: migrations
 * in flight now. Fills out[nr_tasks]; returns how many start.
 */
size_t sched__pick(struct sched_host *hosts, size_t nr_hosts, const struct sched_task *tasks,
		   size_t nr_tasks, int cluster_used, const struct sched_limits *limits,
		   struct sched_decision *out);

#endif
