/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_VM_API_H
#define GODWIT_VM_API_H

#include <jansson.h>

#include "godwit/migrate.h"
#include "godwit/vm.h"

/*
 * The VM's routes on its API socket (docs/api.md), and with them its outgoing-migration
 * slot: what `godwit run` and `godwit receive` hand to vm__create as the VM's control.
 * Everything outside the process drives the VM only through these routes.
 */
extern const struct vm_control vm_api__control;

/* The progress object of GET /vm/migration and `godwit migrate --json`. */
json_t *vm_api__migration_json(const struct migrate_stats *st);

/* `godwit disk-move`, a client of PUT/GET /vm/disks/ID/move: its exit status. */
int disk_cli__move(int argc, char **argv);

#endif
