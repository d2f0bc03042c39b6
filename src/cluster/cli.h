/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_CLUSTER_CLI_H
#define GODWIT_CLUSTER_CLI_H

/* `godwit cluster`'s parts: the client of the managers (cli.c) and its commands. */
#include <jansson.h>

struct client {
	const char *managers; /* comma-separated URLs */
	const char *pki;
};

/* One request; the manager's error printed as the command's own; 0 if `expected` came. */
int cluster_cli__ask(const struct client *c, const char *method, const char *path,
		     const json_t *req, long expected, json_t **reply);
void cluster_cli__print_json(const json_t *j);
/*
 * `VERB HOST` where VERB is a or b: POST /hosts/HOST/resource {"action": VERB}. 0 once
 * the manager took it, 1 if it refused (its reason printed), 2 (usage printed) for bad
 * arguments.
 */
int cluster_cli__host_action(const struct client *c, int argc, char **argv, const char *resource,
			     const char *a, const char *b, const char *usage);

/* Groups, rules, DRS and DPM settings, standby (cli_config.c). */
int cluster_cli__group(const struct client *c, int argc, char **argv);
int cluster_cli__rule(const struct client *c, int argc, char **argv);
int cluster_cli__drs(const struct client *c, int argc, char **argv);
int cluster_cli__dpm(const struct client *c, int argc, char **argv);
int cluster_cli__host(const struct client *c, int argc, char **argv);

#endif
