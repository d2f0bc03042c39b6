// SPDX-License-Identifier: GPL-2.0
/*
 * The `ioport MODE` workload: `outb` straight from ring 3, not through the kcall, to
 * show what allows it. Ring 0 loads TR as MODE says and enters ring 3 with the IOPL it
 * says; ring 3 then writes the 8250's scratch register and the exit port (code
 * IOPORT_EXIT_CODE). An outb that is refused is a #GP, reported as any exception
 * (exit 99), except where TR's TSS is at address 0: its RSP0 is no stack, and the #GP
 * cannot be delivered (a triple fault).
 *
 *   iopl      IOPL 3; the vCPU's own TSS, which has no I/O bitmap (its map base is
 *             past its limit)
 *   bitmap    IOPL 0; a TSS whose I/O bitmap allows the two ports and no other
 *   pvh-tr    IOPL 3; TR as the PVH boot ABI gives it (base 0, limit 0x67)
 *   reset-tr  IOPL 3; TR as a CPU reset leaves it (base 0, limit 0xffff)
 */
#include "testguest.h"

#define IOPORT_EXIT_CODE 90
#define COM1_SCRATCH	 0x3ff
#define RFLAGS_IF	 0x200
#define RFLAGS_RESERVED1 0x2
#define RFLAGS_IOPL3	 0x3000
#define IOMAP_PORTS	 0x400 /* covers both ports */

enum ioport_mode { IOPORT_IOPL = 1, IOPORT_BITMAP, IOPORT_PVH_TR, IOPORT_RESET_TR };

struct io_tss {
	struct tss64 tss;
	u8 map[IOMAP_PORTS / 8];
	u8 end; /* the CPU may read a byte past the map: all ones, as the SDM asks */
} __attribute__((packed));

static struct io_tss io_tss[MAX_CPUS] __attribute__((aligned(16)));

u64 ioport_mode(const char *name)
{
	if (!memcmp(name, "iopl", 5))
		return IOPORT_IOPL;
	if (!memcmp(name, "bitmap", 7))
		return IOPORT_BITMAP;
	if (!memcmp(name, "pvh-tr", 7))
		return IOPORT_PVH_TR;
	if (!memcmp(name, "reset-tr", 9))
		return IOPORT_RESET_TR;
	fail("ioport: unknown mode '%s' (iopl, bitmap, pvh-tr, reset-tr)", name);
}

/* Loads TR from this vCPU's GDT slot, rewritten as an available 64-bit TSS. */
static void load_tr(const struct cpu *c, u64 base, u64 limit)
{
	u32 slot = SEL_TSS0 / 8 + 2 * c->index;

	gdt[slot] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89UL << 40) |
		    ((limit >> 16) << 48) | (((base >> 24) & 0xff) << 56);
	gdt[slot + 1] = base >> 32;
	__asm__ volatile("ltr %w0" : : "r"(SEL_TSS0 + 16 * c->index));
}

static void allow(struct io_tss *t, u16 port)
{
	t->map[port / 8] &= (u8) ~(1u << (port % 8));
}

static void ioport_ring3(void)
{
	raw_outb(COM1_SCRATCH, IOPORT_EXIT_CODE);
	raw_outb(EXIT_PORT, IOPORT_EXIT_CODE);
	for (;;)
		cpu_relax();
}

/* Ring 0 (the KCALL_IOPORT kcall): never returns to its caller. */
void ioport_enter(struct cpu *c, u64 mode, u64 rsp)
{
	u64 rflags = RFLAGS_IF | RFLAGS_RESERVED1 | RFLAGS_IOPL3;
	struct io_tss *t = &io_tss[c->index];

	switch (mode) {
	case IOPORT_IOPL:
		break;
	case IOPORT_BITMAP:
		t->tss = c->tss;
		t->tss.iomap_base = sizeof(t->tss);
		memset(t->map, 0xff, sizeof(t->map));
		t->end = 0xff;
		allow(t, COM1_SCRATCH);
		allow(t, EXIT_PORT);
		load_tr(c, (u64)t, sizeof(*t) - 1);
		rflags &= ~(u64)RFLAGS_IOPL3;
		break;
	case IOPORT_PVH_TR:
		load_tr(c, 0, 0x67);
		break;
	case IOPORT_RESET_TR:
		load_tr(c, 0, 0xffff);
		break;
	default:
		return;
	}
	__asm__ volatile("pushq %[ss]\n\t"
			 "pushq %[rsp]\n\t"
			 "pushq %[rflags]\n\t"
			 "pushq %[cs]\n\t"
			 "pushq %[rip]\n\t"
			 "iretq"
			 :
			 : [ss] "i"(SEL_UDATA | 3), [rsp] "r"(rsp), [rflags] "r"(rflags),
			   [cs] "i"(SEL_UCODE | 3), [rip] "r"((u64)ioport_ring3)
			 : "memory");
	__builtin_unreachable();
}

void ioport(struct cpu *c)
{
	static const char *const names[] = {"", "iopl", "bitmap", "pvh-tr", "reset-tr"};
	u64 rsp;

	println("testguest: ioport %s: cpu=%u outb from ring 3 to ports 0x%x and 0x%x",
		names[c->wl.arg1], c->index, COM1_SCRATCH, EXIT_PORT);
	__asm__ volatile("mov %%rsp, %0" : "=r"(rsp));
	kcall(KCALL_IOPORT, 0, c->wl.arg1, (const void *)((rsp - 256) & ~15UL));
}
