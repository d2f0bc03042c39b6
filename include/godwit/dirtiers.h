/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_DIRTIERS_H
#define GODWIT_DIRTIERS_H

#include <stdbool.h>
#include <stdint.h>

#include "godwit/vm.h"

/*
 * While a move copies memory, the vCPUs that dirty it yield the CPU to it: their
 * threads run at a higher nice value until the pause (or the end of a failed move).
 */
struct dirtiers {
	struct vm *vm;
	bool off;    /* KVM counts no faults, or the nice values could not be set back */
	bool primed; /* faults[] holds a first count */
	uint64_t checked_ns;
	uint64_t faults[VM_MAX_VCPUS];
	bool yielded[VM_MAX_VCPUS];
	int nice[VM_MAX_VCPUS]; /* a yielded vCPU's nice value before */
	uint64_t yield_start_ns[VM_MAX_VCPUS];
	uint64_t yield_ns[VM_MAX_VCPUS]; /* how long it yielded, once restored */
	bool to_report[VM_MAX_VCPUS];	 /* restored, its vcpu.cpu_shares not yet logged */
};

/*
 * Which vCPUs dirtied memory since faults[] was taken (migrate__find_dirtiers over
 * the faults KVM fixed for each), and faults[] set to now: how many, or -ENOENT when
 * KVM does not count them (the throttle then falls on every vCPU).
 */
int dirtiers__since(struct vm *vm, uint64_t *faults, bool *dirtier);

void dirtiers__init(struct dirtiers *d, struct vm *vm);
/* Cheap when called often: looks at most every few milliseconds. */
void dirtiers__yield(struct dirtiers *d);
/* Every yielded vCPU back to its nice value, and to keeping its CPU between ticks. */
void dirtiers__restore(struct dirtiers *d);
/* -v: how often each vCPU that yielded left its CPU (after the pause: it writes a log). */
void dirtiers__report(struct dirtiers *d);

#endif
