// SPDX-License-Identifier: GPL-2.0
/*
 * The vCPUs that dirty memory yield the CPU to the move that copies it: from the
 * first pass on, their threads run at DIRTIER_NICE, the guest's other vCPUs and the
 * migration's threads as before. On a host with CPU to spare nothing changes; on a
 * busy one what the dirtiers give up is what the move needed, and a shorter move is
 * less dirtying and less throttling. The throttle (source.c) still decides how much
 * of the time they run at all; this decides who runs first when the CPU is short.
 *
 * Lowering the dirtiers rather than raising the migration's threads: a raised
 * migration thread moves faster still but starves the vCPUs that do not dirty as
 * well (docs/bench.md, "Measurements behind design choices").
 * A nice value decides how often a thread gets a shared CPU, not for how long: the
 * dirtiers also leave it every millisecond (vcpu__share_cpu, core/vcpu.c).
 */
#include <errno.h>
#include <string.h>

#include "godwit/dirtiers.h"
#include "godwit/log.h"
#include "godwit/migrate.h"
#include "godwit/util.h"

#define DIRTIER_NICE	 10
#define DIRTIER_CHECK_NS (10 * 1000000ULL)

int dirtiers__since(struct vm *vm, uint64_t *faults, bool *dirtier)
{
	uint64_t delta[VM_MAX_VCPUS], now;
	unsigned int i, n = vm->nr_vcpus;

	for (i = 0; i < n; i++) {
		if (vcpu__faults(&vm->vcpus[i], &now))
			return -ENOENT;
		delta[i] = now - faults[i];
		faults[i] = now;
	}
	return (int)migrate__find_dirtiers(delta, n, dirtier);
}

void dirtiers__init(struct dirtiers *d, struct vm *vm)
{
	*d = (struct dirtiers){ .vm = vm };
}

/* 0 once yielded, -errno; a vCPU already at DIRTIER_NICE or above is left alone. */
static int yield_one(struct dirtiers *d, unsigned int i)
{
	struct vcpu *v = &d->vm->vcpus[i];
	int nice, ret;

	ret = vcpu__nice(v, &nice);
	if (ret || nice >= DIRTIER_NICE)
		return ret ? ret : -EALREADY;
	/* Without the right to set it back, a VM that stays here would stay slowed. */
	if (!util__may_lower_nice(nice)) {
		pr_debug("migration: the dirtying vCPUs keep their priority (no CAP_SYS_NICE)");
		d->off = true;
		return -EPERM;
	}
	ret = vcpu__set_nice(v, DIRTIER_NICE);
	if (ret)
		return ret;
	/* A lower priority alone still lets it keep a shared CPU for a whole tick. */
	ret = vcpu__share_cpu(v, true);
	if (ret)
		pr_debug("migration: vCPU %u keeps its CPU between ticks: %s", i, strerror(-ret));
	d->yielded[i] = true;
	d->nice[i] = nice;
	d->yield_start_ns[i] = util__now_ns();
	return 0;
}

void dirtiers__yield(struct dirtiers *d)
{
	unsigned int i, n = d->vm->nr_vcpus;
	uint64_t now = util__now_ns();
	bool dirtier[VM_MAX_VCPUS];
	char who[160] = "";
	size_t len = 0;
	int found;

	if (d->off || (d->primed && now - d->checked_ns < DIRTIER_CHECK_NS))
		return;
	d->checked_ns = now;
	found = dirtiers__since(d->vm, d->faults, dirtier);
	if (found < 0) {
		d->off = true;
		return;
	}
	if (!d->primed) {
		d->primed = true;
		return;
	}
	for (i = 0; i < n && found && !d->off; i++) {
		if (!dirtier[i] || d->yielded[i] || yield_one(d, i))
			continue;
		if (len < sizeof(who))
			len += (size_t)snprintf(who + len, sizeof(who) - len, " %u", i);
	}
	if (len)
		pr_info("migration: vCPU%s yield the CPU to the move (nice %d)", who, DIRTIER_NICE);
}

void dirtiers__restore(struct dirtiers *d)
{
	unsigned int i;
	int ret;

	for (i = 0; i < d->vm->nr_vcpus; i++) {
		struct vcpu *v = &d->vm->vcpus[i];

		if (!d->yielded[i])
			continue;
		d->yielded[i] = false;
		/* Logged later (dirtiers__report): this may be the start of the pause. */
		d->yield_ns[i] = util__now_ns() - d->yield_start_ns[i];
		d->to_report[i] = true;
		ret = vcpu__share_cpu(v, false);
		if (ret)
			pr_warn("migration: vCPU %u still leaves its CPU every ms: %s", i,
				strerror(-ret));
		ret = vcpu__set_nice(v, d->nice[i]);
		if (ret)
			pr_warn("migration: vCPU %u stays at nice %d: %s", i, DIRTIER_NICE,
				strerror(-ret));
	}
}

void dirtiers__report(struct dirtiers *d)
{
	unsigned int i;

	for (i = 0; i < d->vm->nr_vcpus; i++) {
		if (!d->to_report[i])
			continue;
		d->to_report[i] = false;
		pr_debug("migration: vCPU %u left its CPU %llu times in the %llu ms it yielded", i,
			 (unsigned long long)__atomic_load_n(&d->vm->vcpus[i].cpu_shares,
							     __ATOMIC_RELAXED),
			 (unsigned long long)d->yield_ns[i] / 1000000);
	}
}
