// SPDX-License-Identifier: GPL-2.0
/*
 * The dirty-log oracle: the guest writes a generation number into pseudo-random
 * pages of a 16 MiB area, one batch per run. After each batch the host reads
 * and clears the dirty log through godwit's RAM tracker and checks: a page whose
 * bit is clear must hold exactly what it held at the previous check, and every
 * page that changed must have its bit set. Where KVM's log starts all set, the area
 * straddles the first 64 MiB piece the first pass arms: before the rest is armed,
 * every page of it reads dirty; after, only what was written.
 */
#include "kvm_test.h"
#include "godwit/ram.h"

#define AREA_GPA 0x3800000U /* 56 MiB: 8 MiB below the first armed piece's end */
#define AREA_PAGES 4096U
#define MAILBOX_GPA 0x90000U
#define BATCHES 200

/* Each run: 500 writes of the generation (from the mailbox) to LCG-chosen pages. */
__asm__(".pushsection .rodata\n"
	".globl writer_guest, writer_guest_end\n"
	"writer_guest:\n"
	".code32\n"
	"  mov $12345, %esi\n" /* LCG state */
	"1:\n"
	"  mov 0x90000, %edi\n" /* generation */
	"  mov $500, %ecx\n"
	"2:\n"
	"  imul $1103515245, %esi, %esi\n"
	"  add $12345, %esi\n"
	"  mov %esi, %eax\n"
	"  shr $8, %eax\n"
	"  and $4095, %eax\n"
	"  shl $12, %eax\n"
	"  add $0x3800000, %eax\n"
	"  mov %edi, (%eax)\n"
	"  dec %ecx\n"
	"  jnz 2b\n"
	"  mov $0xf4, %dx\n"
	"  mov %edi, %eax\n"
	"  out %eax, %dx\n"
	"  jmp 1b\n"
	".code64\n"
	"writer_guest_end:\n"
	".popsection\n");
extern const uint8_t writer_guest[], writer_guest_end[];

static bool bit(const unsigned long *b, uint64_t n)
{
	return (b[n / (8 * sizeof(long))] >> (n % (8 * sizeof(long)))) & 1;
}

/* Only [0, 64 MiB) armed (as after the first pass's first piece), the rest not. */
static void check_armed_below_64m(struct ram_tracker *t, struct test_vm *vm, const uint32_t *area,
				  const uint32_t *before)
{
	uint64_t armed = 0, unarmed = 0;
	uint32_t p;

	CHECK(t->armed == 64 * MiB, "armed to %llu, not 64 MiB", (unsigned long long)t->armed);
	CHECK(ram__sync(t, false) >= 0, "sync without rearm");
	for (p = 0; p < AREA_PAGES; p++) {
		uint64_t gpa = AREA_GPA + (uint64_t)p * 4096;
		bool d = bit(t->pending, gpa / 4096);

		if (gpa >= 64 * MiB)
			CHECK(d, "page %u above the armed piece reads clean", p);
		else
			CHECK(d == (area[p * 1024] != before[p]), "armed page %u: dirty %d", p, d);
		armed += gpa < 64 * MiB && d;
		unarmed += gpa >= 64 * MiB;
	}
	CHECK(armed > 0 && armed < 2048 && unarmed == 2048, "armed dirty %llu, unarmed %llu",
	      (unsigned long long)armed, (unsigned long long)unarmed);
	memset(t->pending, 0, (vm->mem.nr_pages + 63) / 64 * 8);
}

int main(void)
{
	uint32_t *before = calloc(AREA_PAGES, sizeof(uint32_t));
	uint64_t dirty_seen = 0, changed = 0;
	struct ram_tracker t;
	struct test_vm vm;
	uint32_t gen, p;

	skip_without_kvm();
	test_vm__create(&vm, 128 * MiB, writer_guest, (size_t)(writer_guest_end - writer_guest), 0);
	CHECK(ram__tracker_init(&t, &vm.mem) == 0, "tracker");
	CHECK(ram__log_start(&t, &vm.kvm) == 0, "log start");
	/* What the first pass does before it reads its first page. */
	CHECK(ram__arm(&t, 1) == 0, "arm");
	for (gen = 1; gen <= BATCHES; gen++) {
		uint32_t *area = (uint32_t *)guest_mem__ptr(&vm.mem, AREA_GPA, AREA_PAGES * 4096ULL);

		/* Written through the pointer on purpose: the VMM bitmap must not mask KVM's log. */
		*(volatile uint32_t *)guest_mem__ptr(&vm.mem, MAILBOX_GPA, 4) = gen;
		CHECK(test_vm__run_to_out(&vm) == gen, "guest did not finish batch %u", gen);
		memset(t.pending, 0, (vm.mem.nr_pages + 63) / 64 * 8);
		if (gen == 1 && vm.kvm.dirty_log_init_set)
			check_armed_below_64m(&t, &vm, area, before);
		/* Every third sync does not rearm, as at the pause: nothing is lost by it. */
		CHECK(ram__sync(&t, gen % 3 != 0) >= 0, "sync");
		for (p = 0; p < AREA_PAGES; p++) {
			uint32_t now = area[p * 1024];
			bool d = bit(t.pending, AREA_GPA / 4096 + p);

			CHECK(d || now == before[p],
			      "gen %u: page %u changed (%u -> %u) with its dirty bit clear", gen, p,
			      before[p], now);
			CHECK(!d || now == gen || now == before[p],
			      "gen %u: page %u dirty but holds %u", gen, p, now);
			dirty_seen += d;
			changed += now != before[p];
			before[p] = now;
		}
	}
	CHECK(changed > BATCHES * 100, "the guest changed only %llu pages", (unsigned long long)changed);
	printf("dirty_log: %u batches, %llu page changes, %llu dirty bits, no page changed "
	       "unseen\n", BATCHES, (unsigned long long)changed, (unsigned long long)dirty_seen);
	ram__tracker_exit(&t);
	test_vm__destroy(&vm);
	free(before);
	return 0;
}
