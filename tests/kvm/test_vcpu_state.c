// SPDX-License-Identifier: GPL-2.0
/*
 * A migration in miniature (the state_test.c idea): the guest counts in
 * registers and reports each step; at every step the vCPU's whole state is
 * saved, the VM destroyed, a new one built from the saved state and RAM, and the
 * guest must carry on counting exactly where it was.
 */
#include "kvm_test.h"
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
	free(st);
	free(ram);
	return 0;
}
