/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_X86_STATE_H
#define GODWIT_X86_STATE_H

#include <linux/kvm.h>
#include <stdint.h>

#include "godwit/kvm.h"

/*
 * The whole architectural state of one vCPU, as KVM exposes it. The KVM structs
 * are fixed-layout kernel ABI, so they travel as they are; their lengths are
 * checked exactly on the way in and KVM validates their contents.
 */
#define X86_MAX_MSRS 64

struct x86_msr {
	uint32_t index;
	uint32_t pad;
	uint64_t value;
};

struct x86_vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	/* struct kvm_xsave ends in a flexible array, so the 4 KiB region is kept bare. */
	uint32_t xsave[1024];
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_debugregs debugregs;
	struct kvm_mp_state mp_state;
	uint32_t nr_msrs;
	struct x86_msr msrs[X86_MAX_MSRS];
};

/* The VM-wide in-kernel devices: PIC (two), IOAPIC, PIT, and the kvmclock. */
struct x86_vm_state {
	struct kvm_irqchip pic_master;
	struct kvm_irqchip pic_slave;
	struct kvm_irqchip ioapic;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
};

/* Which MSRs this KVM saves, from the candidates godwit knows; called once per VM. */
int __must_check x86__msr_list(struct kvm *kvm, uint32_t *indices, uint32_t *n);

int __must_check x86__vcpu_save(struct kvm_vcpu_fd *v, const uint32_t *msr_indices,
				uint32_t nr_msrs, struct x86_vcpu_state *st);
int __must_check x86__vcpu_restore(struct kvm_vcpu_fd *v, const struct x86_vcpu_state *st);
int __must_check x86__vm_save(struct kvm *kvm, struct x86_vm_state *st);
/* Restores the clock advanced by the host real time since the save, where KVM can. */
int __must_check x86__vm_restore(struct kvm *kvm, const struct x86_vm_state *st);

#endif
