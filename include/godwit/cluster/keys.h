/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_CLUSTER_KEYS_H
#define GODWIT_CLUSTER_KEYS_H

/*
 * The cluster's keys in etcd (docs/cluster.md, "Keys"), and what agents, managers and
 * the CLI share: names, VM specs, time, JSON values.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "godwit/cluster/etcd.h"

#define K_ROOT	     "/godwit/"
#define K_HOST	     K_ROOT "hosts/"	     /* + H: the host's record (the agent's) */
#define K_ALIVE	     K_ROOT "alive/"	     /* + H: under the agent's lease: up, and its load */
#define K_RUNNING    K_ROOT "running/"	     /* + H/NAME: under the agent's lease: a VM process */
#define K_MAINT	     K_ROOT "maintenance/"   /* + H: {"state": "entering"|"in", "stuck"} */
#define K_VM	     K_ROOT "vms/"	     /* + NAME: the VM's spec */
#define K_OWNER	     K_ROOT "owner/"	     /* + NAME: the host that owns it */
#define K_VMTASK     K_ROOT "vmtask/"	     /* + NAME: its one task's id */
#define K_TASK	     K_ROOT "tasks/"	     /* + ID: a task */
#define K_SLOT_HOST  K_ROOT "slots/host/"    /* + H/I: a migration slot of a host */
#define K_SLOT_CLUST K_ROOT "slots/cluster/" /* + I: a slot of the cluster */
#define K_CANCEL     K_ROOT "cancel/"	     /* + ID: a task's cancellation was asked */
/* Outside K_ROOT, so that a snapshot of the live state does not read the history. */
#define K_EVENT	     "/godwit-events/"	     /* + time-pid-seq: what happened */
#define K_HISTORY    "/godwit-history/"	     /* + ID: a task that has ended */
#define K_LEADER     K_ROOT "leader"	     /* under the leading manager's lease */
#define K_LIMITS     K_ROOT "config/limits"
#define K_GROUP	     K_ROOT "config/groups/" /* + G: a host group */
#define K_RULE	     K_ROOT "config/rules/"  /* + NAME: a placement rule */
#define K_DRS	     K_ROOT "config/drs"     /* balancing's settings */
#define K_DPM	     K_ROOT "config/dpm"     /* power management's settings */
#define K_DRS_PASS   K_ROOT "drs/pass"	     /* the last DRS pass: loads, recommendations */
#define K_POWER	     K_ROOT "power/"	     /* + H: {"state": "powering-off"|"standby"|...} */
#define K_EMPTYING   K_ROOT "dpm/emptying"   /* {"host", "since_ms", "by"}: DPM empties it */

#define NAME_MAX_LEN	      63
#define LIMIT_HOST_DEFAULT    8
#define LIMIT_CLUSTER_DEFAULT 128
#define LIMIT_MAX	      1024

/* 1..63 of [A-Za-z0-9_-]: host and VM names (they go into keys and paths). */
bool cluster__name_ok(const char *name);

/* Wall clock in milliseconds (what records and events carry). */
int64_t cluster__now_ms(void);

/* A JSON object from an etcd value, or NULL. */
json_t *cluster__kv_json(const struct etcd_kv *kv);
/* Writes a JSON value as key's value (optionally under a lease). */
int cluster__put_json(struct etcd *e, const char *key, const json_t *v, int64_t lease);

/* A field of a JSON object, or a default. */
int64_t cluster__int(const json_t *obj, const char *field, int64_t dflt);
const char *cluster__str(const json_t *obj, const char *field, const char *dflt);

/* "512 MiB", "2.0 GiB" */
void cluster__fmt_size(uint64_t bytes, char *out, size_t len);

/*
 * Checks a VM spec as `godwit cluster create` and the manager take it: name, kernel,
 * memory (bytes), cpus, cmdline, disks, nets, restart. The reason in err.
 */
int cluster__spec_check(const json_t *spec, char *err, size_t errlen);

/* Adds an event (what happened, newest last). */
void cluster__event(struct etcd *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
