/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_X86_H
#define GODWIT_X86_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

#include "godwit/kvm.h"

/*
 * Sets the vCPU's CPUID from KVM_GET_SUPPORTED_CPUID with its own APIC ID. Hardware
 * KVM honours it; kvm_pvm ignores KVM_SET_CPUID2 (the guest sees the host's CPUID).
 */
int __must_check x86__setup_cpuid(struct kvm *kvm, struct kvm_vcpu_fd *v, unsigned int id,
				  unsigned int nr_vcpus);
/* The per-vCPU fix-ups, apart so they can be unit-tested. */
void x86__cpuid_patch(struct kvm_cpuid2 *c, unsigned int id, unsigned int nr_vcpus);

/* What the guest sees of the CPU, for the migration stream's CONFIG (malloc'ed). */
int __must_check x86__cpu_signature(struct kvm *kvm, uint8_t **out, size_t *len);
/* 0 if a guest that saw src can run where dst is seen; else why not, in err. */
int __must_check x86__cpu_compatible(const uint8_t *src, size_t src_len, const uint8_t *dst,
				     size_t dst_len, char *err, size_t errlen);

/* Prints the vCPU's registers and, for emulation failures, the instruction bytes. */
void x86__report_vcpu(struct kvm_vcpu_fd *v, unsigned int id, const char *why);

#endif
