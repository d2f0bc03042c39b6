/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_EMULATE_H
#define GODWIT_EMULATE_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "godwit/memory.h"
#include "godwit/util.h"

/*
 * Instruction completion for kvm_pvm (software KVM), whose emulator stops with
 * KVM_EXIT_INTERNAL_ERROR / KVM_INTERNAL_ERROR_EMULATION on a few instructions a Linux
 * kernel executes in ring 0. The VMM completes those it can do exactly (see
 * docs/linux-guests.md) and stops on everything else. Never used on hardware KVM.
 *
 * Nothing here calls KVM: the caller fills the context from the vCPU, calls
 * emulate__complete() and, on 0, writes ctx->regs back (KVM_SET_REGS) and, if
 * ctx->exc.valid, injects that exception (KVM_SET_VCPU_EVENTS).
 */

/*
 * What godwit adds to a Linux guest's command line on a kvm_pvm host, where the guest
 * sees the host's CPUID whatever KVM_SET_CPUID2 says: no XSAVE (xsave/xrstor cannot be
 * emulated), no CMPXCHG16B, no SMAP (takes clac/stac out of every kernel entry), and a
 * fixed loops-per-jiffy and trusted TSC (calibration loops are slow when emulated).
 */
#define EMULATE_PVM_CMDLINE "noxsave clearcpuid=cx16,ssse3,sse4_1,sse4_2,pclmulqdq,aes,sha_ni nosmap lpj=1000000 tsc=reliable no_timer_check nowatchdog nopvspin"

/* The longest x86 instruction. */
#define EMULATE_MAX_INSN 15

#define X86_VEC_UD 6
#define X86_VEC_BP 3
#define X86_VEC_GP 13

struct emulate_exception {
	bool valid;
	bool fault; /* RIP stays on the instruction (a fault); else it moves past it (a trap) */
	bool has_error_code;
	uint8_t vector;
	uint32_t error_code;
};

struct emulate_ctx {
	/* In: the bytes KVM reported (from RIP; fewer than the instruction are fetched). */
	uint8_t insn[EMULATE_MAX_INSN];
	unsigned int insn_len;
	/* In: the vCPU state. regs is also the result (changed only when 0 is returned). */
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	/* In: KVM_GET_FPU (fwait reads fsw). Out, when fpu_changed: for KVM_SET_FPU. */
	struct kvm_fpu fpu;
	bool fpu_changed;
	/* In: guest RAM, read through the guest's page tables for memory operands. */
	struct guest_mem *mem;
	/* Out, on 0: the exception to inject after setting regs, the length and a name. */
	struct emulate_exception exc;
	unsigned int len;
	const char *name;
};

/*
 * Fills ctx from a KVM_EXIT_INTERNAL_ERROR run page: the instruction bytes when KVM
 * gave them (else insn_len 0). Registers and memory are the caller's to set.
 */
void emulate__init_from_run(struct emulate_ctx *ctx, const struct kvm_run *run);

/*
 * Completes the instruction at ctx->regs.rip. Returns 0 (apply ctx->regs, then inject
 * ctx->exc if valid); -ENOTSUP for anything it does not accept exactly (unknown
 * opcode or prefix, LOCK, operand form, truncated bytes, not 64-bit mode, TF set);
 * -EFAULT when a memory operand cannot be read (non-canonical address, page not
 * present, reserved bits, protection, address outside RAM): the VM must stop.
 */
int __must_check emulate__complete(struct emulate_ctx *ctx);

/*
 * Translates a linear address through the guest's page tables (4- or 5-level per
 * CR4.LA57; 2 MiB and 1 GiB pages) as a data read at the context's CPL. 0 or -EFAULT.
 */
int __must_check emulate__translate(const struct emulate_ctx *ctx, uint64_t la, uint64_t *gpa);

#endif
