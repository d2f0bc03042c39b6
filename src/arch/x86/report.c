// SPDX-License-Identifier: GPL-2.0
/* The readable report printed when a vCPU stops in a way godwit cannot continue. */
#include <stdio.h>
#include <string.h>

#include "godwit/log.h"
#include "godwit/x86.h"

static void report_insn(struct kvm_run *run)
{
	char hex[3 * 16 + 1] = "";
	unsigned int i, n;

	if (run->internal.suberror != KVM_INTERNAL_ERROR_EMULATION) {
		pr_err("  suberror %u, %u data words", run->internal.suberror, run->internal.ndata);
		return;
	}
	if (!(run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
		pr_err("  emulation failure; KVM gave no instruction bytes");
		return;
	}
	n = run->emulation_failure.insn_size;
	if (n > sizeof(run->emulation_failure.insn_bytes))
		n = sizeof(run->emulation_failure.insn_bytes);
	for (i = 0; i < n; i++)
		snprintf(hex + 3 * i, sizeof(hex) - 3 * i, "%02x ", run->emulation_failure.insn_bytes[i]);
	pr_err("  emulation failure: KVM cannot execute the instruction: %s", hex);
}

static void report_regs(struct kvm_vcpu_fd *v)
{
	struct kvm_sregs s;
	struct kvm_regs r;

	if (kvm_vcpu__get_regs(v, &r) || kvm_vcpu__get_sregs(v, &s)) {
		pr_err("  (registers unavailable)");
		return;
	}
	pr_err("  rip %016llx rflags %08llx cs %04x (cpl %u) ss %04x", r.rip, r.rflags,
	       s.cs.selector, s.cs.dpl, s.ss.selector);
	pr_err("  rax %016llx rbx %016llx rcx %016llx rdx %016llx", r.rax, r.rbx, r.rcx, r.rdx);
	pr_err("  rsi %016llx rdi %016llx rbp %016llx rsp %016llx", r.rsi, r.rdi, r.rbp, r.rsp);
	pr_err("  r8  %016llx r9  %016llx r10 %016llx r11 %016llx", r.r8, r.r9, r.r10, r.r11);
	pr_err("  r12 %016llx r13 %016llx r14 %016llx r15 %016llx", r.r12, r.r13, r.r14, r.r15);
	pr_err("  cr0 %016llx cr2 %016llx cr3 %016llx cr4 %016llx efer %llx", s.cr0, s.cr2,
	       s.cr3, s.cr4, s.efer);
}

void x86__report_vcpu(struct kvm_vcpu_fd *v, unsigned int id, const char *why)
{
	struct kvm_run *run = v->run;

	pr_err("vCPU %u stopped: %s (exit reason %u)", id, why, run ? run->exit_reason : 0);
	if (run && run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
		report_insn(run);
	if (run && run->exit_reason == KVM_EXIT_FAIL_ENTRY)
		pr_err("  hardware entry failure reason 0x%llx",
		       (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
	report_regs(v);
}
