/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_KVM_H
#define GODWIT_KVM_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "godwit/util.h"

/* The device node; GODWIT_KVM_DEVICE overrides it (tests point it at missing paths). */
#define KVM_DEVICE_DEFAULT "/dev/kvm"

struct kvm {
	int sys_fd;
	int vm_fd;
	int vcpu_mmap_size;
	int max_vcpus;
	int is_pvm; /* /dev/kvm is kvm_pvm: KVM in software, ring 0 emulated */
	/* KVM_DIRTY_LOG_INITIALLY_SET: logging starts all set, armed by clearing it */
	bool dirty_log_init_set;
};

struct kvm_vcpu_fd {
	int fd;
	struct kvm_run *run;
	int mmap_size;
};

/*
 * True when this host's KVM is kvm_pvm (KVM in software: guest ring 0 emulated),
 * known from sysfs without opening the device.
 */
bool kvm__host_is_pvm(void);

/* Opens the device, checks the API version and the capabilities godwit needs. */
int __must_check kvm__open(struct kvm *kvm);
void kvm__close(struct kvm *kvm);
/* In-kernel LAPIC/IOAPIC/PIC and PIT, as the VM's interrupt controllers and timer. */
int __must_check kvm__create_irqchip(struct kvm *kvm);
int __must_check kvm__set_memory(struct kvm *kvm, uint32_t slot, uint64_t gpa, uint64_t size,
				 void *hva, int log_dirty);
int __must_check kvm__irq_line(struct kvm *kvm, uint32_t irq, int level);
/* A write to eventfd fd raises an edge on gsi (KVM_IRQFD). */
int __must_check kvm__irqfd(struct kvm *kvm, int fd, uint32_t gsi);
/* A guest write of datamatch (len bytes) at MMIO addr signals fd without an exit. */
int __must_check kvm__ioeventfd(struct kvm *kvm, int fd, uint64_t addr, uint32_t len,
				uint64_t datamatch);
int __must_check kvm__get_dirty_log(struct kvm *kvm, uint32_t slot, unsigned long *bitmap);
int __must_check kvm__clear_dirty_log(struct kvm *kvm, uint32_t slot, uint64_t first_page,
				      uint32_t num_pages, unsigned long *bitmap);
int __must_check kvm__supported_cpuid(struct kvm *kvm, struct kvm_cpuid2 **out);
/* The MSRs this KVM can save and restore (KVM_GET_MSR_INDEX_LIST); free() it. */
int __must_check kvm__msr_index_list(struct kvm *kvm, struct kvm_msr_list **out);

int __must_check kvm__get_irqchip(struct kvm *kvm, struct kvm_irqchip *chip);
int __must_check kvm__set_irqchip(struct kvm *kvm, struct kvm_irqchip *chip);
int __must_check kvm__get_pit(struct kvm *kvm, struct kvm_pit_state2 *pit);
int __must_check kvm__set_pit(struct kvm *kvm, struct kvm_pit_state2 *pit);
int __must_check kvm__get_clock(struct kvm *kvm, struct kvm_clock_data *clock);
int __must_check kvm__set_clock(struct kvm *kvm, struct kvm_clock_data *clock);

/* One counter of a vCPU's binary statistics (KVM_GET_STATS_FD), found by its name. */
struct kvm_vcpu_stat {
	int fd; /* -1: not available */
	uint64_t offset;
};

/* -ENOENT when this KVM has no such counter, -errno when it has no statistics. */
int __must_check kvm_vcpu__stat_open(struct kvm_vcpu_fd *v, const char *name,
				     struct kvm_vcpu_stat *st);
int __must_check kvm_vcpu__stat_read(const struct kvm_vcpu_stat *st, uint64_t *val);
void kvm_vcpu__stat_close(struct kvm_vcpu_stat *st);
int __must_check kvm__create_vcpu(struct kvm *kvm, unsigned int id, struct kvm_vcpu_fd *vcpu);
void kvm__destroy_vcpu(struct kvm_vcpu_fd *vcpu);
/* KVM_RUN; returns 0, -EINTR when a signal kicked the vCPU out, or another -errno. */
int kvm_vcpu__run(struct kvm_vcpu_fd *vcpu);
/*
 * Finishes an I/O or MMIO access KVM left pending at the last exit (it completes
 * them on the next KVM_RUN: an OUT's RIP advance, an IN's or MMIO read's result)
 * without entering the guest. Needed before the vCPU's state is saved.
 */
int __must_check kvm_vcpu__complete_pending(struct kvm_vcpu_fd *vcpu);
/*
 * KVM_KVMCLOCK_CTRL: marks the guest's kvmclock "stopped by the host", so a guest
 * that was paused (migrated, restored) does not take the gap for a lockup.
 * Best effort: a guest without kvmclock makes KVM refuse it, which is fine.
 */
void kvm_vcpu__clock_stopped(struct kvm_vcpu_fd *vcpu);
int __must_check kvm_vcpu__get_regs(struct kvm_vcpu_fd *v, struct kvm_regs *regs);
int __must_check kvm_vcpu__set_regs(struct kvm_vcpu_fd *v, const struct kvm_regs *regs);
int __must_check kvm_vcpu__get_sregs(struct kvm_vcpu_fd *v, struct kvm_sregs *sregs);
int __must_check kvm_vcpu__set_sregs(struct kvm_vcpu_fd *v, const struct kvm_sregs *sregs);
int __must_check kvm_vcpu__set_cpuid(struct kvm_vcpu_fd *v, struct kvm_cpuid2 *cpuid);
int __must_check kvm_vcpu__get_fpu(struct kvm_vcpu_fd *v, struct kvm_fpu *fpu);
int __must_check kvm_vcpu__set_fpu(struct kvm_vcpu_fd *v, const struct kvm_fpu *fpu);
int __must_check kvm_vcpu__get_xsave(struct kvm_vcpu_fd *v, struct kvm_xsave *xsave);
int __must_check kvm_vcpu__set_xsave(struct kvm_vcpu_fd *v, const struct kvm_xsave *xsave);
int __must_check kvm_vcpu__get_xcrs(struct kvm_vcpu_fd *v, struct kvm_xcrs *xcrs);
int __must_check kvm_vcpu__set_xcrs(struct kvm_vcpu_fd *v, const struct kvm_xcrs *xcrs);
int __must_check kvm_vcpu__get_msrs(struct kvm_vcpu_fd *v, struct kvm_msrs *msrs);
int __must_check kvm_vcpu__set_msrs(struct kvm_vcpu_fd *v, const struct kvm_msrs *msrs);
int __must_check kvm_vcpu__get_lapic(struct kvm_vcpu_fd *v, struct kvm_lapic_state *lapic);
int __must_check kvm_vcpu__set_lapic(struct kvm_vcpu_fd *v, const struct kvm_lapic_state *lapic);
int __must_check kvm_vcpu__get_events(struct kvm_vcpu_fd *v, struct kvm_vcpu_events *ev);
int __must_check kvm_vcpu__set_events(struct kvm_vcpu_fd *v, const struct kvm_vcpu_events *ev);
int __must_check kvm_vcpu__get_debugregs(struct kvm_vcpu_fd *v, struct kvm_debugregs *dr);
int __must_check kvm_vcpu__set_debugregs(struct kvm_vcpu_fd *v, const struct kvm_debugregs *dr);
int __must_check kvm_vcpu__get_mp_state(struct kvm_vcpu_fd *v, struct kvm_mp_state *mp);
int __must_check kvm_vcpu__set_mp_state(struct kvm_vcpu_fd *v, const struct kvm_mp_state *mp);

#endif
