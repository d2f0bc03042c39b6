/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_CLUSTER_MANAGER_H
#define GODWIT_CLUSTER_MANAGER_H

/* The manager's parts: a snapshot of etcd, tasks, the leader's loop, the API. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "godwit/api.h"
#include "godwit/api_client.h"
#include "godwit/cluster/drs.h"
#include "godwit/cluster/etcd.h"
#include "godwit/cluster/keys.h"
#include "godwit/cluster/sched.h"
#include "godwit/cluster/tls.h"

/* Balancing's and power management's settings when none are stored (docs/cluster.md). */
#define DRS_AUTOMATION_DEFAULT "manual"
#define DRS_THRESHOLD_DEFAULT  3
#define DRS_INTERVAL_DEFAULT   60
#define DPM_TARGET_DEFAULT     63
#define DPM_BAND_DEFAULT       18
#define DPM_WINDOW_DEFAULT     600
#define DPM_MIN_HOSTS_DEFAULT  2

/* The power command the leader runs, one at a time (power.c). */
struct power_job {
	pid_t pid; /* 0: none */
	int out;   /* the file its output goes to */
	bool on;
	char host[NAME_MAX_LEN + 1];
	int64_t started_ms;
};

struct mgr {
	char id[NAME_MAX_LEN + 1], listen[128], etcd_url[200];
	struct etcd_tls etcd_tls;
	struct tls_files tls;
	struct api_client_tls ctls;
	struct etcd loop; /* the leader loop's etcd client */
	struct etcd api;  /* the API thread's */
	struct https_server *https;
	int64_t lease;
	bool leader;
	int64_t grace_ms;		      /* before a VM without disks is restarted elsewhere */
	char power_off[1024], power_on[1024]; /* the commands, "" if not given */
	struct power_job job;
	size_t keep_history, keep_events;
	int64_t trimmed_ms;
	int64_t drs_ms; /* when this leader's last DRS pass ran (manager_drs.c) */
	struct dpm_state dpm;
	int64_t dpm_ms;		   /* when DPM last decided */
	struct start_pool *starts; /* the moves' starts under way (manager_start.c) */
	int64_t held_ms;	   /* when the lease was last renewed within a tick */
	bool again;		   /* this tick gave slots back or queued moves */
	bool moving;		   /* it polled moves under way */
};

struct s_host {
	char name[NAME_MAX_LEN + 1];
	json_t *rec;   /* its record, or NULL (only its lease or VMs name it) */
	json_t *alive; /* its load under the lease, or NULL: down */
	json_t *maint; /* its maintenance record, or NULL */
	int64_t maint_rev;
	json_t *power; /* its power record (standby and the ways there), or NULL */
	int64_t power_rev;
	int slots;
	uint64_t mem_used;
	int64_t cpus_used;
	int vms;
};

struct s_vm {
	char name[NAME_MAX_LEN + 1];
	json_t *spec;
	char owner[NAME_MAX_LEN + 1];
	int64_t owner_rev; /* the owner record's mod revision */
	char task[80];
	json_t *running; /* what its owner's agent says of it, or NULL */
};

struct s_task {
	char id[80];
	json_t *t;
	int64_t mod_rev;
	bool cancel;
};

struct snap {
	struct s_host *hosts;
	size_t nr_hosts;
	struct s_vm *vms;
	size_t nr_vms;
	struct s_task *tasks; /* oldest first */
	size_t nr_tasks;
	int cluster_used;
	struct sched_limits limits;
	int64_t move_bandwidth; /* bytes/s every move is held to, 0: none */
	json_t *groups, *rules; /* {NAME: record}, never NULL once read */
	json_t *drs, *dpm;	/* their settings as stored, or NULL */
	json_t *emptying;	/* the host DPM empties for standby (K_EMPTYING), or NULL */
	int64_t emptying_rev;
	char leader[NAME_MAX_LEN + 1];
	int64_t revision;
};

int snap__read(struct etcd *e, struct snap *s);
void snap__free(struct snap *s);
int snap__host(const struct snap *s, const char *name);
struct s_vm *snap__vm(const struct snap *s, const char *name);
struct s_task *snap__task(const struct snap *s, const char *id);
/* The scheduler's view of the hosts (names point into s). */
struct sched_host *snap__sched_hosts(const struct snap *s);
/* The host's migration link, Mbit/s, from its record (0: unknown). */
int64_t snap__link_mbit(const struct s_host *h);
/* The moves the host may run at once: the per-host limit, capped by its link. */
int snap__host_slots(const struct snap *s, const struct s_host *h);
/* "up", "down", "entering maintenance", "in maintenance", "standby", "powering off|on" */
const char *snap__host_state(const struct s_host *h);
/*
 * Where vm's "must" rules let it run (one flag per snapshot host, to free), or NULL if
 * no rule names it. why: the first rule that bars a host.
 */
bool *snap__allowed(const struct snap *s, const char *vm, char *why, size_t whylen);

/*
 * Queues a task for vm (one per VM: -EBUSY if it has one, with its id in err).
 * kind "migrate" or "restart"; dst "" lets the scheduler choose; max_bandwidth
 * (bytes/s, 0: unlimited) goes to the VM's migration.
 */
int mgr__create_task(struct etcd *e, const struct s_vm *vm, const char *kind, const char *reason,
		     const char *dst, int64_t max_bandwidth, char *id, size_t idlen, char *err,
		     size_t errlen);

/* The HTTPS API of godwit cluster (manager_api.c). */
int mgr__handle(void *opaque, const struct api_request *req, struct api_response *resp);
/* In front of it: the web console's files, its logins, who may pass (manager_console.c). */
bool mgr__console_gate(void *opaque, struct https_req *r, const struct api_request *req,
		       struct api_response *resp);
/* The console's session secret (64 hex digits) in a Cookie header, or false. */
bool mgr__console_cookie(const char *cookies, char out[65]);
/* Its groups, rules, settings and standby (manager_config.c); 1 if not one of those. */
int mgr__config_route(struct mgr *m, const struct snap *s, const struct api_request *req,
		      struct api_response *resp);
/* The DRS and DPM settings, the defaults filled in. */
json_t *mgr__drs_settings(const struct snap *s);
json_t *mgr__dpm_settings(const struct snap *s);

/* The leader's part of standby: runs the power commands and follows them (power.c). */
void power__tick(struct mgr *m, const struct snap *s);
void power__exit(struct mgr *m);

/* The leader's DRS pass, every `drs config --interval` (manager_drs.c). */
void mgr__drs_tick(struct mgr *m, const struct snap *s);
/* GET /drs/recommendations, POST /drs/apply; 1 if not one of those. */
int mgr__drs_route(struct mgr *m, const struct snap *s, const struct api_request *req,
		   struct api_response *resp);

/*
 * A task's record written by the leader; with if_value only if the record is still
 * that text. mgr__retry: a failed attempt, back to the queue or failed after the last.
 */
int mgr__update_task(struct mgr *m, const struct s_task *st, json_t *task, const char *if_value);
/* A transaction that holds only while m leads: a deposed leader's writes fail. */
int mgr__leader_txn(struct mgr *m, struct etcd_txn *t);
void mgr__retry(struct mgr *m, const struct s_task *st, const char *error, const char *if_value);

/*
 * Moves' starts (the agents' receive and migrate) run by a pool of workers
 * (manager_start.c): submit a task whose slots are claimed (its stream held to
 * bandwidth bytes/s, 0: not); busy while its outcome is not recorded; settle records
 * the finished ones (the leader's thread, each tick).
 */
int mgr__start_init(struct mgr *m, char *err, size_t errlen);
int mgr__start_submit(struct mgr *m, const struct snap *s, const struct s_task *st,
		      int64_t bandwidth);
bool mgr__start_busy(struct mgr *m, const char *task_id);
void mgr__start_settle(struct mgr *m);
void mgr__start_exit(struct mgr *m);

/* Renews the leader's lease if a second has passed: called within long passes. */
void mgr__hold_lead(struct mgr *m);

/* One request to a host's agent. */
int mgr__agent_call(struct mgr *m, const struct s_host *h, const char *method, const char *path,
		    const json_t *req, long timeout_s, long *status, json_t **reply, char *err,
		    size_t errlen);

#endif
