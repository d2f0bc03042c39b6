/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Selftests-style KVM tests: a tiny 32-bit guest assembled into the test binary,
 * run on one vCPU through godwit's own KVM, memory and state layers. Guests talk
 * to the test with `out` to port 0xf4 (eax = value). Exit 77 = skipped (no KVM).
 */
#ifndef GODWIT_TESTS_KVM_TEST_H
#define GODWIT_TESTS_KVM_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "godwit/boot.h"
#include "godwit/kvm.h"
#include "godwit/memory.h"
#include "godwit/x86_layout.h"

#define GUEST_CODE_GPA 0x100000ULL
#define TEST_SKIP 77

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: FAILED: %s: ", __FILE__, __LINE__, #cond);         \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

struct test_vm {
	struct kvm kvm;
	struct guest_mem mem;
	struct kvm_vcpu_fd vcpu;
};

static inline void skip_without_kvm(void)
{
	const char *p = getenv("GODWIT_KVM_DEVICE");
	int fd = open(p && *p ? p : KVM_DEVICE_DEFAULT, O_RDWR);

	if (fd < 0) {
		printf("SKIP: no usable /dev/kvm: %s\n", strerror(errno));
		exit(TEST_SKIP);
	}
	close(fd);
}

/* A VM with `size` bytes of RAM and one vCPU about to run code at GUEST_CODE_GPA. */
static inline void test_vm__create(struct test_vm *t, uint64_t size, const void *code,
				   size_t code_len, int log_dirty)
{
	struct boot_setup b = { .mode = BOOT_CPU_PROTECTED32, .entry = GUEST_CODE_GPA };
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	unsigned int i;

	CHECK(kvm__open(&t->kvm) == 0, "kvm__open");
	/* The LAPIC (saved with the vCPU) exists only with the in-kernel irqchip. */
	CHECK(kvm__create_irqchip(&t->kvm) == 0, "irqchip");
	CHECK(guest_mem__init(&t->mem, size) == 0, "guest_mem__init");
	for (i = 0; i < t->mem.nr_regions; i++)
		CHECK(kvm__set_memory(&t->kvm, i, t->mem.regions[i].gpa, t->mem.regions[i].size,
				      t->mem.regions[i].hva, log_dirty) == 0,
		      "set memory");
	CHECK(boot__write_gdt(&t->mem) == 0, "gdt");
	CHECK(guest_mem__write(&t->mem, GUEST_CODE_GPA, code, code_len) == 0, "code");
	CHECK(kvm__create_vcpu(&t->kvm, 0, &t->vcpu) == 0, "vcpu");
	CHECK(kvm_vcpu__get_sregs(&t->vcpu, &sregs) == 0, "get sregs");
	boot__bsp_regs(&b, &regs, &sregs);
	CHECK(kvm_vcpu__set_sregs(&t->vcpu, &sregs) == 0, "set sregs");
	CHECK(kvm_vcpu__set_regs(&t->vcpu, &regs) == 0, "set regs");
}

static inline void test_vm__destroy(struct test_vm *t)
{
	kvm__destroy_vcpu(&t->vcpu);
	kvm__close(&t->kvm);
	guest_mem__exit(&t->mem);
}

/* Runs until the guest's next `out` to the exit port; returns eax's value. */
static inline uint32_t test_vm__run_to_out(struct test_vm *t)
{
	struct kvm_run *run = t->vcpu.run;
	uint32_t v;
	int ret;

	for (;;) {
		ret = kvm_vcpu__run(&t->vcpu);
		CHECK(ret == 0 || ret == -EINTR, "KVM_RUN: %s", strerror(-ret));
		if (ret)
			continue;
		CHECK(run->exit_reason == KVM_EXIT_IO, "exit reason %u", run->exit_reason);
		if (run->io.port != EXIT_PORT)
			continue;
		CHECK(run->io.size == 4, "out size %u", run->io.size);
		memcpy(&v, (uint8_t *)run + run->io.data_offset, 4);
		return v;
	}
}

#endif
