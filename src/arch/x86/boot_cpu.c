// SPDX-License-Identifier: GPL-2.0
/*
 * The boot vCPU's initial state: the GDT and identity page tables in guest RAM,
 * and the registers that point at them. The hidden segment state given to KVM
 * is derived from the very descriptors written to the GDT, so that a guest that
 * reloads a selector gets what it already had.
 */
#include <string.h>

#include "godwit/boot.h"
#include "godwit/x86_layout.h"

#define CR0_PE	 (1ULL << 0)
#define CR0_ET	 (1ULL << 4)
#define CR0_PG	 (1ULL << 31)
#define CR4_PAE	 (1ULL << 5)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)

#define PTE_P  (1ULL << 0)
#define PTE_RW (1ULL << 1)
#define PTE_PS (1ULL << 7)

#define RFLAGS_RESERVED1 (1ULL << 1) /* always set */

#define TSS_LIMIT 0x67

/* Builds a descriptor: flags are G, D/B, L, AVL (bits 3..0 of the high nibble). */
static uint64_t gdt_desc(uint8_t access, uint8_t flags, uint32_t base, uint32_t limit)
{
	return ((uint64_t)(base & 0xff000000) << 32) | ((uint64_t)(flags & 0xf) << 52) |
	       ((uint64_t)(limit & 0xf0000) << 32) | ((uint64_t)access << 40) |
	       ((uint64_t)(base & 0x00ffffff) << 16) | (limit & 0xffff);
}

uint64_t boot__gdt_entry(unsigned int i)
{
	switch (i) {
	case BOOT_SEL_CODE32 >> 3:
		return gdt_desc(0x9b, 0xc, 0, 0xfffff); /* present, code r/x, G, D */
	case BOOT_SEL_CODE64 >> 3:
		return gdt_desc(0x9b, 0xa, 0, 0xfffff); /* present, code r/x, G, L */
	case BOOT_SEL_DATA >> 3:
		return gdt_desc(0x93, 0xc, 0, 0xfffff); /* present, data r/w, G, B */
	case BOOT_SEL_TSS >> 3:
		return gdt_desc(0x8b, 0x0, 0, TSS_LIMIT); /* present, busy TSS */
	default:
		return 0; /* null, and the upper half of the 16-byte TSS descriptor */
	}
}

int boot__write_gdt(struct guest_mem *mem)
{
	uint64_t gdt[BOOT_GDT_ENTRIES];
	unsigned int i;

	for (i = 0; i < BOOT_GDT_ENTRIES; i++)
		gdt[i] = boot__gdt_entry(i);
	return guest_mem__write(mem, BOOT_GDT_ADDR, gdt, sizeof(gdt));
}

int boot__write_page_tables(struct guest_mem *mem)
{
	uint64_t table[512];
	unsigned int i, j;
	int ret;

	memset(table, 0, sizeof(table));
	table[0] = BOOT_PDPT_ADDR | PTE_P | PTE_RW;
	ret = guest_mem__write(mem, BOOT_PML4_ADDR, table, sizeof(table));
	if (ret)
		return ret;
	for (i = 0; i < BOOT_PD_COUNT; i++)
		table[i] = (BOOT_PD_ADDR + i * 4096ULL) | PTE_P | PTE_RW;
	ret = guest_mem__write(mem, BOOT_PDPT_ADDR, table, sizeof(table));
	if (ret)
		return ret;
	for (i = 0; i < BOOT_PD_COUNT; i++) {
		for (j = 0; j < 512; j++)
			table[j] = ((uint64_t)i * GiB + j * 2 * MiB) | PTE_P | PTE_RW | PTE_PS;
		ret = guest_mem__write(mem, BOOT_PD_ADDR + i * 4096ULL, table, sizeof(table));
		if (ret)
			return ret;
	}
	return 0;
}

/* The segment cache KVM loads for a selector of the boot GDT. */
static void seg_from_gdt(struct kvm_segment *s, uint16_t sel)
{
	uint64_t d = boot__gdt_entry(sel >> 3);
	uint32_t limit = (d & 0xffff) | ((d >> 32) & 0xf0000);

	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->base = ((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000);
	s->g = (d >> 55) & 1;
	s->limit = s->g ? (limit << 12) | 0xfff : limit;
	s->type = (d >> 40) & 0xf;
	s->s = (d >> 44) & 1;
	s->dpl = (d >> 45) & 3;
	s->present = (d >> 47) & 1;
	s->avl = (d >> 52) & 1;
	s->l = (d >> 53) & 1;
	s->db = (d >> 54) & 1;
}

void boot__bsp_regs(const struct boot_setup *b, struct kvm_regs *regs, struct kvm_sregs *sregs)
{
	bool long64 = b->mode == BOOT_CPU_LONG64;

	memset(regs, 0, sizeof(*regs));
	regs->rflags = RFLAGS_RESERVED1; /* IF, TF, VM clear */
	regs->rip = b->entry;
	regs->rsp = BOOT_STACK_TOP;
	if (long64)
		regs->rsi = b->info_gpa; /* boot_params; RBP, RDI, RBX stay zero */
	else
		regs->rbx = b->info_gpa; /* hvm_start_info */

	seg_from_gdt(&sregs->cs, long64 ? BOOT_SEL_CODE64 : BOOT_SEL_CODE32);
	seg_from_gdt(&sregs->ds, BOOT_SEL_DATA);
	sregs->es = sregs->ds;
	sregs->fs = sregs->ds;
	sregs->gs = sregs->ds;
	sregs->ss = sregs->ds;
	seg_from_gdt(&sregs->tr, BOOT_SEL_TSS);
	memset(&sregs->ldt, 0, sizeof(sregs->ldt));
	sregs->ldt.unusable = 1;
	sregs->ldt.type = 2; /* LDT, as VMX wants even for an unusable one */

	sregs->gdt.base = BOOT_GDT_ADDR;
	sregs->gdt.limit = BOOT_GDT_ENTRIES * 8 - 1;
	memset(sregs->gdt.padding, 0, sizeof(sregs->gdt.padding));
	/* No IDT: both protocols enter with interrupts off and the kernel loads its own. */
	memset(&sregs->idt, 0, sizeof(sregs->idt));

	if (long64) {
		sregs->cr0 = CR0_PE | CR0_ET | CR0_PG;
		sregs->cr3 = BOOT_PML4_ADDR;
		sregs->cr4 = CR4_PAE;
		sregs->efer = EFER_LME | EFER_LMA;
	} else {
		sregs->cr0 = CR0_PE | CR0_ET;
		sregs->cr3 = 0;
		sregs->cr4 = 0;
		sregs->efer = 0;
	}
}
