// SPDX-License-Identifier: GPL-2.0
/* Save and restore of vCPU and in-kernel device state, for migration and snapshots. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/log.h"
#include "godwit/x86_state.h"

/*
 * The MSRs a guest's correctness depends on. Anything KVM does not list as
 * saveable on this host is dropped from the set by x86__msr_list().
 */
static const uint32_t msr_candidates[] = {
	0x00000010, /* IA32_TSC */
	0x0000003b, /* IA32_TSC_ADJUST */
	0x00000174, 0x00000175, 0x00000176, /* SYSENTER_CS/ESP/EIP */
	0x000001a0, /* IA32_MISC_ENABLE */
	0x00000277, /* IA32_PAT */
	0x000002ff, /* MTRR default type */
	0x00000250, 0x00000258, 0x00000259, /* fixed MTRRs */
	0x00000268, 0x00000269, 0x0000026a, 0x0000026b,
	0x0000026c, 0x0000026d, 0x0000026e, 0x0000026f,
	0x00000200, 0x00000201, 0x00000202, 0x00000203, /* variable MTRRs */
	0x00000204, 0x00000205, 0x00000206, 0x00000207,
	0x00000208, 0x00000209, 0x0000020a, 0x0000020b,
	0x0000020c, 0x0000020d, 0x0000020e, 0x0000020f,
	0x000006e0, /* IA32_TSC_DEADLINE */
	0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, /* STAR LSTAR CSTAR SFMASK */
	0xc0000102, /* KERNEL_GS_BASE */
	0xc0000103, /* TSC_AUX */
	0x00000011, 0x00000012, /* kvmclock (old): wall clock, system time */
	0x4b564d00, 0x4b564d01, /* kvmclock: wall clock, system time */
	/*
	 * The vector of async page faults' "page ready" interrupt, before the MSR that
	 * enables them: enabling queues a wake-up at once, sent with the vector set then.
	 * Left out, a guest (Linux 5.10+) got those interrupts on vector 0 after a move.
	 */
	0x4b564d06, /* async page fault interrupt vector */
	0x4b564d02, /* async page fault */
	0x4b564d03, /* steal time */
	0x4b564d04, /* PV EOI */
	0x4b564d05, /* poll control */
};

int x86__msr_list(struct kvm *kvm, uint32_t *indices, uint32_t *n)
{
	struct kvm_msr_list *list;
	uint32_t i, j, count = 0;
	int ret;

	ret = kvm__msr_index_list(kvm, &list);
	if (ret)
		return ret;
	for (i = 0; i < ARRAY_SIZE(msr_candidates) && count < X86_MAX_MSRS; i++) {
		for (j = 0; j < list->nmsrs; j++) {
			if (list->indices[j] == msr_candidates[i]) {
				indices[count++] = msr_candidates[i];
				break;
			}
		}
	}
	free(list);
	*n = count;
	return 0;
}

static int save_msrs(struct kvm_vcpu_fd *v, const uint32_t *idx, uint32_t n,
		     struct x86_vcpu_state *st)
{
	struct kvm_msrs *m;
	uint32_t i;
	int ret;

	if (n > X86_MAX_MSRS)
		return -E2BIG;
	m = calloc(1, sizeof(*m) + n * sizeof(m->entries[0]));
	if (!m)
		return -ENOMEM;
	m->nmsrs = n;
	for (i = 0; i < n; i++)
		m->entries[i].index = idx[i];
	ret = kvm_vcpu__get_msrs(v, m);
	if (!ret) {
		st->nr_msrs = n;
		for (i = 0; i < n; i++)
			st->msrs[i] = (struct x86_msr){ .index = m->entries[i].index,
							.value = m->entries[i].data };
	}
	free(m);
	return ret;
}

#define MSR_IA32_TSC_DEADLINE 0x000006e0

/*
 * The saved MSRs but TSC_DEADLINE (deadline false), or only it (true). KVM ignores
 * a TSC_DEADLINE write unless the LAPIC timer is in TSC-deadline mode, and
 * KVM_SET_LAPIC clears the deadline when it switches the timer's mode: the deadline
 * goes in after the LAPIC (as QEMU does), or the guest's armed timer is lost and a
 * Linux guest's next tick never comes.
 */
static int restore_msrs(struct kvm_vcpu_fd *v, const struct x86_vcpu_state *st, bool deadline)
{
	struct kvm_msrs *m;
	uint32_t i, n = 0;
	int ret;

	if (st->nr_msrs > X86_MAX_MSRS)
		return -EINVAL;
	m = calloc(1, sizeof(*m) + st->nr_msrs * sizeof(m->entries[0]));
	if (!m)
		return -ENOMEM;
	for (i = 0; i < st->nr_msrs; i++) {
		if ((st->msrs[i].index == MSR_IA32_TSC_DEADLINE) != deadline)
			continue;
		m->entries[n].index = st->msrs[i].index;
		m->entries[n].data = st->msrs[i].value;
		n++;
	}
	m->nmsrs = n;
	ret = n ? kvm_vcpu__set_msrs(v, m) : 0;
	free(m);
	return ret;
}

int x86__vcpu_save(struct kvm_vcpu_fd *v, const uint32_t *msr_indices, uint32_t nr_msrs,
		   struct x86_vcpu_state *st)
{
	int ret;

	memset(st, 0, sizeof(*st));
	ret = kvm_vcpu__get_mp_state(v, &st->mp_state);
	if (!ret)
		ret = kvm_vcpu__get_regs(v, &st->regs);
	if (!ret)
		ret = kvm_vcpu__get_sregs(v, &st->sregs);
	if (!ret)
		ret = kvm_vcpu__get_fpu(v, &st->fpu);
	if (!ret)
		ret = kvm_vcpu__get_xsave(v, (struct kvm_xsave *)st->xsave);
	if (!ret)
		ret = kvm_vcpu__get_xcrs(v, &st->xcrs);
	if (!ret)
		ret = save_msrs(v, msr_indices, nr_msrs, st);
	if (!ret)
		ret = kvm_vcpu__get_lapic(v, &st->lapic);
	if (!ret)
		ret = kvm_vcpu__get_events(v, &st->events);
	if (!ret)
		ret = kvm_vcpu__get_debugregs(v, &st->debugregs);
	return ret;
}

/*
 * The order KVM needs: control state before MSRs, the LAPIC before the TSC deadline
 * and before pending events.
 */
int x86__vcpu_restore(struct kvm_vcpu_fd *v, const struct x86_vcpu_state *st)
{
	struct kvm_vcpu_events ev = st->events;
	int ret;

	ret = kvm_vcpu__set_regs(v, &st->regs);
	if (!ret)
		ret = kvm_vcpu__set_xsave(v, (const struct kvm_xsave *)st->xsave);
	if (!ret)
		ret = kvm_vcpu__set_xcrs(v, &st->xcrs);
	if (!ret)
		ret = kvm_vcpu__set_sregs(v, &st->sregs);
	if (!ret)
		ret = restore_msrs(v, st, false);
	if (!ret)
		ret = kvm_vcpu__set_mp_state(v, &st->mp_state);
	if (!ret)
		ret = kvm_vcpu__set_lapic(v, &st->lapic);
	if (!ret)
		ret = restore_msrs(v, st, true);
	if (!ret) {
		/* Restore NMI and SIPI state too, which KVM only takes when asked to. */
		ev.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
		ret = kvm_vcpu__set_events(v, &ev);
	}
	if (!ret)
		ret = kvm_vcpu__set_debugregs(v, &st->debugregs);
	return ret;
}

int x86__vm_save(struct kvm *kvm, struct x86_vm_state *st)
{
	int ret;

	memset(st, 0, sizeof(*st));
	st->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	st->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	st->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	ret = kvm__get_irqchip(kvm, &st->pic_master);
	if (!ret)
		ret = kvm__get_irqchip(kvm, &st->pic_slave);
	if (!ret)
		ret = kvm__get_irqchip(kvm, &st->ioapic);
	if (!ret)
		ret = kvm__get_pit(kvm, &st->pit);
	if (!ret)
		ret = kvm__get_clock(kvm, &st->clock);
	return ret;
}

int x86__vm_restore(struct kvm *kvm, const struct x86_vm_state *st)
{
	struct kvm_irqchip chips[3] = { st->pic_master, st->pic_slave, st->ioapic };
	static const uint32_t ids[3] = { KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
					 KVM_IRQCHIP_IOAPIC };
	struct kvm_pit_state2 pit = st->pit;
	struct kvm_clock_data clock = st->clock;
	int i, ret;

	for (i = 0; i < 3; i++) {
		if (chips[i].chip_id != ids[i])
			return -EINVAL;
		ret = kvm__set_irqchip(kvm, &chips[i]);
		if (ret)
			return ret;
	}
	ret = kvm__set_pit(kvm, &pit);
	if (ret)
		return ret;
	/*
	 * With KVM_CLOCK_REALTIME, KVM advances the clock by the host real time that
	 * passed since the save: guest time neither jumps back nor stalls over the
	 * pause. Without it (older kernels) the guest clock resumes where it stopped.
	 */
	clock.flags &= KVM_CLOCK_REALTIME;
	ret = kvm__set_clock(kvm, &clock);
	if (ret == -EINVAL && clock.flags) {
		clock.flags = 0;
		ret = kvm__set_clock(kvm, &clock);
	}
	return ret;
}
