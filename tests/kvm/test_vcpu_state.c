// SPDX-License-Identifier: GPL-2.0
/*
 * A migration in miniature (the state_test.c idea): the guest counts in
 * registers and reports each step; at every step the vCPU's whole state is
 * saved, the VM destroyed, a new one built from the saved state and RAM, and the
 * guest must carry on counting exactly where it was.
 */
#include "kvm_test.h"
#include "godwit/x86.h"
#include "godwit/x86_state.h"

/* eax counts, ebx = eax*3, esi/edi/ebp carry fixed patterns, the stack holds one. */
__asm__(".pushsection .rodata\n"
	".globl counter_guest, counter_guest_end\n"
	"counter_guest:\n"
	".code32\n"
	"  mov $0x80000, %esp\n"
	"  push $0x5eed5eed\n"
	"  xor %eax, %eax\n"
	"  xor %ebx, %ebx\n"
	"  mov $0x12345678, %esi\n"
	"  mov $0x9abcdef0, %edi\n"
	"  mov $0x0badf00d, %ebp\n"
	"1:\n"
	"  inc %eax\n"
	"  add $3, %ebx\n"
	"  lea (%eax,%eax,2), %ecx\n"
	"  cmp %ecx, %ebx\n"
	"  jne 2f\n"
	"  cmp $0x12345678, %esi\n"
	"  jne 2f\n"
	"  cmp $0x9abcdef0, %edi\n"
	"  jne 2f\n"
	"  cmp $0x0badf00d, %ebp\n"
	"  jne 2f\n"
	"  cmpl $0x5eed5eed, (%esp)\n"
	"  jne 2f\n"
	"  mov $0xf4, %dx\n"
	"  out %eax, %dx\n"
	"  jmp 1b\n"
	"2:\n"
	"  mov $0xdeadbeef, %eax\n"
	"  mov $0xf4, %dx\n"
	"  out %eax, %dx\n"
	"  hlt\n"
	".code64\n"
	"counter_guest_end:\n"
	".popsection\n");
extern const uint8_t counter_guest[], counter_guest_end[];

#define STEPS 20
#define RAM (64 * MiB)

#define MSR_IA32_TSC	      0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0
#define APIC_SPIV	      0xf0
#define APIC_LVTT	      0x320
#define APIC_LVT_TSCDEADLINE  (2u << 17)

static uint64_t msr_get(struct kvm_vcpu_fd *v, uint32_t index)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m = { .h.nmsrs = 1, .e.index = index };

	CHECK(kvm_vcpu__get_msrs(v, &m.h) == 0, "get MSR 0x%x", index);
	return m.e.data;
}

static void msr_set(struct kvm_vcpu_fd *v, uint32_t index, uint64_t value)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m = { .h.nmsrs = 1, .e.index = index, .e.data = value };

	CHECK(kvm_vcpu__set_msrs(v, &m.h) == 0, "set MSR 0x%x", index);
}

static void apic_reg_set(struct kvm_lapic_state *l, unsigned int off, uint32_t value)
{
	memcpy(l->regs + off, &value, sizeof(value));
}

/*
 * A guest's armed TSC-deadline timer (how Linux ticks) survives a save and restore
 * into a new VM: the deadline reads back unchanged. KVM ignores the MSR unless the
 * LAPIC timer is in TSC-deadline mode, so a restore that writes it before the LAPIC
 * loses it. Returns false when this KVM has no TSC-deadline timer.
 */
static bool tsc_deadline_survives(uint32_t *msrs, uint32_t nr_msrs, struct x86_vcpu_state *st)
{
	struct kvm_lapic_state lapic;
	struct test_vm a, b;
	uint64_t deadline;

	test_vm__create(&a, RAM, "\xf4", 1, 0);
	CHECK(x86__setup_cpuid(&a.kvm, &a.vcpu, 0, 1) == 0, "cpuid");
	CHECK(kvm_vcpu__get_lapic(&a.vcpu, &lapic) == 0, "get lapic");
	apic_reg_set(&lapic, APIC_SPIV, 0x1ff);
	apic_reg_set(&lapic, APIC_LVTT, APIC_LVT_TSCDEADLINE | 0xec);
	CHECK(kvm_vcpu__set_lapic(&a.vcpu, &lapic) == 0, "set lapic");
	deadline = msr_get(&a.vcpu, MSR_IA32_TSC) + (1ULL << 40);
	msr_set(&a.vcpu, MSR_IA32_TSC_DEADLINE, deadline);
	if (msr_get(&a.vcpu, MSR_IA32_TSC_DEADLINE) != deadline) {
		test_vm__destroy(&a);
		return false;
	}
	CHECK(x86__vcpu_save(&a.vcpu, msrs, nr_msrs, st) == 0, "save");
	test_vm__destroy(&a);
	test_vm__create(&b, RAM, "\xf4", 1, 0);
	CHECK(x86__setup_cpuid(&b.kvm, &b.vcpu, 0, 1) == 0, "cpuid");
	CHECK(x86__vcpu_restore(&b.vcpu, st) == 0, "restore");
	CHECK(msr_get(&b.vcpu, MSR_IA32_TSC_DEADLINE) == deadline,
	      "the armed TSC deadline 0x%llx came back as 0x%llx", (unsigned long long)deadline,
	      (unsigned long long)msr_get(&b.vcpu, MSR_IA32_TSC_DEADLINE));
	test_vm__destroy(&b);
	return true;
}

int main(void)
{
	struct x86_vcpu_state *st = calloc(1, sizeof(*st));
	uint32_t msrs[64], nr_msrs, step, v;
	struct test_vm a, b;
	uint8_t *ram = malloc(RAM);

	skip_without_kvm();
	test_vm__create(&a, RAM, counter_guest, (size_t)(counter_guest_end - counter_guest), 0);
	CHECK(x86__msr_list(&a.kvm, msrs, &nr_msrs) == 0, "msr list");
	for (step = 1; step <= STEPS; step++) {
		v = test_vm__run_to_out(&a);
		CHECK(v == step, "step %u: guest reported 0x%x", step, v);
		CHECK(kvm_vcpu__complete_pending(&a.vcpu) == 0, "complete the OUT");
		CHECK(x86__vcpu_save(&a.vcpu, msrs, nr_msrs, st) == 0, "save");
		memcpy(ram, a.mem.base, RAM);
		test_vm__destroy(&a);

		/* A new VM whose vCPU starts from garbage until the state is loaded. */
		test_vm__create(&b, RAM, "\xf4", 1, 0);
		memcpy(b.mem.base, ram, RAM);
		CHECK(x86__vcpu_restore(&b.vcpu, st) == 0, "restore");
		a = b;
	}
	v = test_vm__run_to_out(&a);
	CHECK(v == STEPS + 1, "after %u round trips the guest reported 0x%x", STEPS, v);
	test_vm__destroy(&a);
	printf("vcpu_state: %u save/destroy/restore round trips, guest continued exactly\n", STEPS);
	if (tsc_deadline_survives(msrs, nr_msrs, st))
		printf("vcpu_state: an armed TSC-deadline timer survived a save and restore\n");
	else
		printf("vcpu_state: no TSC-deadline timer on this KVM, its check not run\n");
	free(st);
	free(ram);
	return 0;
}
