/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_CLUSTER_LOAD_H
#define GODWIT_CLUSTER_LOAD_H

/*
 * The load an agent publishes (docs/cluster.md, "Load"): per VM its CPU demand (vCPU
 * threads' CPU time and run-queue wait per second), memory, active memory and network
 * bytes per second; per host its capacity and its own use. Rates are smoothed
 * exponentially over a window of minutes so that the balancer does not chase seconds.
 * The /proc parsers are pure (fuzz/fuzz_procload.c); the samplers read /proc and /sys.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LOAD_WINDOW_DEFAULT_S 300

/* "RUN_NS WAIT_NS SLICES" of /proc/PID/task/TID/schedstat. */
int load__parse_schedstat(const char *text, uint64_t *run_ns, uint64_t *wait_ns);
/* utime + stime (clock ticks) of /proc/PID/task/TID/stat; the name may hold anything. */
int load__parse_task_stat(const char *text, uint64_t *ticks);
/* The "cpu " line of /proc/stat: busy ticks (all but idle and iowait) and all ticks. */
int load__parse_proc_stat(const char *text, uint64_t *busy, uint64_t *total);
/* MemTotal and MemAvailable of /proc/meminfo, in bytes. */
int load__parse_meminfo(const char *text, uint64_t *total, uint64_t *available);
/* The interface of a tun/tap file's /proc/PID/fdinfo/N ("iff:\tNAME"); -ENOENT if none. */
int load__parse_fdinfo_iff(const char *text, char *ifname, size_t len);

/* An exponentially smoothed value: a sample dt after the last weighs dt / (window + dt). */
struct load_ewma {
	double value;
	int64_t last_ms;
	bool primed;
};
void load_ewma__add(struct load_ewma *e, double sample, int64_t now_ms, int64_t window_ms);

/* A counter's rate per second between two samples; false for the first or if it went back. */
struct load_counter {
	uint64_t last;
	int64_t last_ms;
	bool primed;
};
bool load_counter__rate(struct load_counter *c, uint64_t value, int64_t now_ms, double *rate);

/* What one read of a VM process gives. */
struct load_vm_sample {
	uint64_t cpu_ns;  /* vCPU threads' CPU time */
	uint64_t wait_ns; /* their time runnable but not running */
	uint64_t rss;
	uint64_t net_rx, net_tx; /* bytes, as the guest sees them, over its taps */
	int vcpus;
	int64_t ms; /* when it was read (CLOCK_MONOTONIC): rates span the reads' interval */
};
void load__sample_vm(pid_t pid, struct load_vm_sample *s);

struct load_host_sample {
	uint64_t busy_ns, total_ns; /* all CPUs, since boot */
	uint64_t mem_total, mem_available;
	int64_t ms; /* when it was read (CLOCK_MONOTONIC) */
};
int load__sample_host(struct load_host_sample *s);

/* A VM's smoothed load, as an agent tracks it between samples. */
struct load_vm {
	char name[64];
	pid_t pid;
	struct load_counter cpu, wait, rx, tx;
	struct load_ewma cpu_s, wait_s, rx_s, tx_s, active_s;
	bool seen;
};

struct load_tracker {
	int64_t window_ms;
	struct load_vm *vms;
	size_t nr, cap;
	struct load_counter busy, total;
	struct load_ewma host_cpu_s; /* CPUs the host uses itself, VMs' vCPUs left out */
	double vm_cpu_now;	     /* the VMs' vCPU CPUs of this round, unsmoothed */
	uint64_t vm_rss_now;
};

/*
 * A sample's smoothed figures, in CPUs (1.0 = one CPU busy), bytes and bytes per second;
 * `rated` once two samples gave rates (a VM's first sample has none).
 */
struct load_vm_figures {
	double cpu, cpu_wait, net_rx, net_tx;
	uint64_t memory, active, rss;
	bool rated;
};

void load_tracker__init(struct load_tracker *t, int64_t window_ms);
void load_tracker__exit(struct load_tracker *t);
/* Starts a round: every VM not updated before load_tracker__end() is forgotten. */
void load_tracker__begin(struct load_tracker *t);
/*
 * Adds a VM's sample (memory: its configured size; dirty_rate: bytes/s written while a
 * migration measures it, else 0) and gives its smoothed figures. A new pid under the
 * same name starts afresh. -ENOMEM if it cannot be tracked.
 */
int load_tracker__vm(struct load_tracker *t, const char *name, pid_t pid,
		     const struct load_vm_sample *s, uint64_t memory, uint64_t dirty_rate,
		     int64_t now_ms, struct load_vm_figures *out);
void load_tracker__end(struct load_tracker *t);
/* The host's own CPU use (CPUs, smoothed) and memory (bytes, now), VMs left out. */
void load_tracker__host(struct load_tracker *t, const struct load_host_sample *h, int64_t now_ms,
			double *cpu, uint64_t *memory);

#endif
