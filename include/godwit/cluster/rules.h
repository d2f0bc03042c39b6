/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_CLUSTER_RULES_H
#define GODWIT_CLUSTER_RULES_H

/*
 * Host groups and placement rules (docs/cluster.md, "Rules"), as etcd holds them:
 * groups {NAME: {"name", "hosts": [H...]}}, rules {NAME: rule}, a rule being
 *   {"name", "kind": "together"|"apart", "vms": [VM...]}          VM-VM
 *   {"name", "kind": "host", "vms": [VM...], "group": G,
 *    "must": true|false, "not": true|false}                      VM-host: (must|should)
 *                                                                 [not] run on G
 * These functions check records and answer questions about them; they do no I/O.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define RULES_MAX_MEMBERS 64

/* A group's record as given: name and 1..64 host names. */
int rules__check_group(const json_t *group, char *err, size_t errlen);

/*
 * A rule's record as given, and against the groups and the rules there are: its group
 * must exist; a name already used, VMs both together and apart, or "must" rules that
 * leave a VM no host of the groups are conflicts (-EEXIST, with both rules named).
 */
int rules__check(const json_t *rule, const json_t *groups, const json_t *rules, char *err,
		 size_t errlen);

/* The first rule that names group, or NULL (a group in use is not removed). */
const char *rules__group_user(const json_t *rules, const char *group);

/*
 * Where the "must" rules let vm run: allowed[i] for hosts[i]. Returns how many must
 * rules name vm (0: everywhere). why: the rule that bars a host, for messages.
 */
int rules__must_hosts(const json_t *rules, const json_t *groups, const char *vm,
		      const char *const *hosts, size_t nr_hosts, bool *allowed, char *why,
		      size_t whylen);

#endif
