/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_CLUSTER_DRS_PLAN_H
#define GODWIT_CLUSTER_DRS_PLAN_H

/*
 * The working copy drs.c and dpm.c plan on: where each VM would be after the moves
 * planned so far, and what that leaves on each host. Private to the scheduler.
 */
#include "godwit/cluster/drs.h"

struct drs_plan {
	const struct drs_model *m;
	const struct drs_config *c;
	int *host;	    /* per VM: its host after the planned moves */
	bool *moved;	    /* per VM: planned to move this pass */
	double *demand;	    /* per host: cpu_own + its VMs' demand (CPUs) */
	double *active;	    /* per host: mem_own + its VMs' active memory (bytes) */
	uint64_t *mem_used; /* per host: mem_own + its VMs' memory */
	int64_t *cpus_used; /* per host: its VMs' vCPUs */
	int *nr_moves;	    /* per host: planned moves in and out */
	double *busy;	    /* per host: planned seconds of moves in and out */
	bool *serving;	    /* per host: up, in service, not in standby */
	size_t nr_serving;
	double s1, s2;	    /* sum of the serving hosts' loads and of their squares */
	size_t *rule_start; /* per VM: its rules are rule_of[rule_start[v]..rule_start[v+1]) */
	int *rule_of;
	bool *rule_off;	  /* per rule: a TOGETHER that an APART overrides */
	size_t *vm_start; /* per host: its VMs (at the start) are vm_of[vm_start[h]..) */
	int *vm_of;
};

int drs__plan_init(struct drs_plan *p, const struct drs_model *m, const struct drs_config *c);
void drs__plan_free(struct drs_plan *p);
double drs__plan_load(const struct drs_plan *p, int h);
/* The sum of squared deviations of the serving hosts' loads. */
double drs__plan_ssd(const struct drs_plan *p);
void drs__plan_apply(struct drs_plan *p, int v, int dst, double seconds);
bool drs__plan_room(const struct drs_plan *p, int v, int h);
/*
 * Whether VM v may go to host h without breaking a rule it keeps now (a must rule is
 * never broken, even one already broken elsewhere). `fixing` (-1: none) is the rule a
 * move fixes: it must hold on h, except a TOGETHER, which holds only once all its
 * members arrived. should=false ignores should rules.
 */
bool drs__plan_legal(const struct drs_plan *p, int v, int h, int fixing, bool should);
bool drs__plan_in_together(const struct drs_plan *p, int v);
uint64_t drs__move_bytes(const struct drs_config *c, const struct drs_vm *vm);
double drs__move_seconds(const struct drs_config *c, const struct drs_vm *vm);
enum drs_automation drs__automation(const struct drs_config *c, const struct drs_vm *vm);
void drs__plan_move(struct drs_plan *p, struct drs_move *mv, int v, int dst, enum drs_reason reason,
		    int rule);

#endif
