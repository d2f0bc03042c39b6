/*
 * godwit test guest, ring 0: per-vCPU GDT/TSS/IDT, page tables for RAM above 4 GiB,
 * kvmclock registration, exception reports. Kept small: under kvm_pvm every ring-0
 * instruction is emulated.
 */
#include "testguest.h"

_Static_assert(__builtin_offsetof(struct cpu, ticks) == CPU_TICKS_OFFSET, "CPU_TICKS_OFFSET");

struct cpu cpus[MAX_CPUS];
u32 boot_info_pa;
volatile u32 ap_boot_cpu;
u32 kvmclock_enabled;
/* RAM below this is mapped: 0..4 GiB by boot.S, the rest by map_high_ram(). */
u64 mapped_limit = 4 * GIB + (u64)NR_HIGH_PDS * GIB;
u64 lapic_eoi_addr = 0xfee000b0;

struct idt_entry {
	u16 off_lo;
	u16 sel;
	u8 ist;
	u8 type;
	u16 off_mid;
	u32 off_hi;
	u32 reserved;
} __attribute__((packed));

static struct idt_entry idt[256] __attribute__((aligned(16)));
static u64 high_pds[NR_HIGH_PDS][512] __attribute__((aligned(4096)));
static char ustacks[MAX_CPUS * USTACK_SIZE] __attribute__((aligned(4096)));

extern char kstacks[];
extern char exc_0[], exc_1[], exc_2[], exc_3[], exc_4[], exc_5[], exc_6[], exc_7[];
extern char exc_8[], exc_9[], exc_10[], exc_11[], exc_12[], exc_13[], exc_14[], exc_15[];
extern char exc_16[], exc_17[], exc_18[], exc_19[], exc_20[], exc_21[], exc_22[], exc_23[];
extern char exc_24[], exc_25[], exc_26[], exc_27[], exc_28[], exc_29[], exc_30[], exc_31[];
extern char timer_isr[], ignore_isr[];

static char *const exc_stubs[32] = {
    exc_0,  exc_1,  exc_2,  exc_3,  exc_4,  exc_5,  exc_6,  exc_7,  exc_8,  exc_9,  exc_10,
    exc_11, exc_12, exc_13, exc_14, exc_15, exc_16, exc_17, exc_18, exc_19, exc_20, exc_21,
    exc_22, exc_23, exc_24, exc_25, exc_26, exc_27, exc_28, exc_29, exc_30, exc_31,
};

void kmain(u32 index);
void exception_report(u64 *frame);

static void set_gate(int vec, const void *handler, int dpl)
{
	u64 a = (u64)handler;
	struct idt_entry *e = &idt[vec];
	e->off_lo = (u16)a;
	e->sel = SEL_CODE64;
	e->ist = 0;
	e->type = (u8)(0x8e | (dpl << 5)); /* present, 64-bit interrupt gate */
	e->off_mid = (u16)(a >> 16);
	e->off_hi = (u32)(a >> 32);
	e->reserved = 0;
}

static void build_idt(void)
{
	for (int i = 0; i < 32; i++)
		set_gate(i, exc_stubs[i], 0);
	for (int i = 0; i < 16; i++)
		set_gate(VEC_PIC_BASE + i, ignore_isr, 0);
	set_gate(VEC_TIMER, timer_isr, 0);
	set_gate(VEC_SPURIOUS, ignore_isr, 0);
}

/* Remap both 8259s away from the exception vectors and mask every line. */
static void pic_disable(void)
{
	raw_outb(0x20, 0x11);
	raw_outb(0xa0, 0x11);
	raw_outb(0x21, VEC_PIC_BASE);
	raw_outb(0xa1, VEC_PIC_BASE + 8);
	raw_outb(0x21, 4);
	raw_outb(0xa1, 2);
	raw_outb(0x21, 1);
	raw_outb(0xa1, 1);
	raw_outb(0x21, 0xff);
	raw_outb(0xa1, 0xff);
}

/* The boot code maps 0..4 GiB; map the RAM above it from the PVH memory map. */
static void map_high_ram(const struct hvm_start_info *si)
{
	if (si->magic != HVM_START_MAGIC || si->version < 1 || !si->memmap_paddr)
		return;
	const struct hvm_memmap_entry *mm = (const void *)si->memmap_paddr;
	u32 used = 0;
	u64 limit = mapped_limit;
	for (u32 i = 0; i < si->memmap_entries && i < 128; i++) {
		if (mm[i].type != MEMMAP_RAM)
			continue;
		u64 start = mm[i].addr & ~(2 * MIB - 1);
		u64 end = mm[i].addr + mm[i].size;
		if (start < 4 * GIB)
			start = 4 * GIB;
		if (end > limit)
			end = limit;
		for (u64 a = start; a < end; a += 2 * MIB) {
			u64 gi = a >> 30;
			if (!pdpt[gi]) {
				if (used == NR_HIGH_PDS)
					return;
				pdpt[gi] = (u64)high_pds[used++] | 7;
			}
			u64 *pd = (u64 *)(pdpt[gi] & ~0xfffUL);
			pd[(a >> 21) & 511] = a | 0x87;
		}
	}
}

static void kvmclock_detect(void)
{
	u32 a, b, c, d;
	cpuid(1, 0, &a, &b, &c, &d);
	if (!(c & (1u << 31)))
		return;
	cpuid(0x40000000, 0, &a, &b, &c, &d);
	if (b != 0x4b4d564b || c != 0x564b4d56 || d != 0x4d || a < 0x40000001)
		return;
	cpuid(0x40000001, 0, &a, &b, &c, &d);
	if (a & (1u << 3)) /* KVM_FEATURE_CLOCKSOURCE2 */
		kvmclock_enabled = 1;
}

static inline void wrmsr(u32 msr, u64 v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}

static void load_tss(struct cpu *c)
{
	struct tss64 *t = &c->tss;
	u64 base = (u64)t;
	u64 limit = sizeof(*t) - 1;
	t->rsp[0] = (u64)kstacks + (u64)(c->index + 1) * KSTACK_SIZE;
	t->iomap_base = sizeof(*t);
	u32 slot = SEL_TSS0 / 8 + 2 * c->index;
	gdt[slot] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89UL << 40) |
		    ((limit >> 16) << 48) | (((base >> 24) & 0xff) << 56);
	gdt[slot + 1] = base >> 32;
	__asm__ volatile("ltr %w0" : : "r"(SEL_TSS0 + 16 * c->index));
}

/* Ring 0 entry of every vCPU, on its own stack. */
void kmain(u32 index)
{
	struct cpu *c = &cpus[index];
	struct {
		u16 limit;
		u64 base;
	} __attribute__((packed)) idtr = {sizeof(idt) - 1, (u64)idt};

	*(struct cpu **)(kstacks + (u64)index * KSTACK_SIZE) = c;
	c->index = index;
	if (index == 0) {
		build_idt();
		pic_disable();
		map_high_ram((const struct hvm_start_info *)(u64)boot_info_pa);
		kvmclock_detect();
	}
	load_tss(c);
	__asm__ volatile("lidt %0" : : "m"(idtr));
	if (kvmclock_enabled)
		wrmsr(0x4b564d01, (u64)&c->pvclock | 1);
	if (index != 0) {
		__atomic_store_n(&c->started, 1, __ATOMIC_RELEASE);
		if (c->wl.kind == WL_NONE)
			halt_forever();
	}
	enter_user(user_main, (u64)ustacks + (u64)(index + 1) * USTACK_SIZE, c);
}

#define COM1 0x3f8

static void serial_putc(char c)
{
	for (u32 i = 0; i < 100000 && !(raw_inb(COM1 + 5) & 0x20); i++)
		cpu_relax();
	raw_outb(COM1, (u8)c);
}

/*
 * Ring 3 reaches the ports only through here. A whole console line is one call: under
 * kvm_pvm each call costs a trip through emulated ring 0.
 */
u64 kcall_handle(u64 op, u64 port, u64 value, const char *buf)
{
	switch (op) {
	case KCALL_INB:
		return raw_inb((u16)port);
	case KCALL_OUTB:
		raw_outb((u16)port, (u8)value);
		return 0;
	case KCALL_OUTL:
		raw_outl((u16)port, (u32)value);
		return 0;
	case KCALL_CONSOLE:
		for (u64 i = 0; i < value; i++)
			serial_putc(buf[i]);
		return 0;
	case KCALL_HALT:
		halt_forever();
	case KCALL_IOPORT:
		/* This vCPU's struct cpu is at the base of its ring-0 stack. */
		ioport_enter(*(struct cpu **)((u64)&op & ~(u64)(KSTACK_SIZE - 1)), value, (u64)buf);
		break;
	}
	return ~0UL;
}

static const char *const exc_names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "?",	  "#TS",
    "#NP", "#SS", "#GP", "#PF", "?",   "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

/* frame: rbp rdi rsi rdx rcx rbx rax vector error rip cs rflags rsp ss */
void exception_report(u64 *frame)
{
	u64 vec = frame[7], err = frame[8], rip = frame[9], cs = frame[10], rsp = frame[12];
	u64 cr2;
	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	u64 base = (u64)frame & ~(u64)(KSTACK_SIZE - 1);
	struct cpu *c = *(struct cpu **)base;
	const char *name = vec < 32 && exc_names[vec] ? exc_names[vec] : "?";
	println_emergency("testguest: exception vector=%lu (%s) rip=0x%lx error=0x%lx cr2=0x%lx "
			  "rsp=0x%lx ring=%lu cpu=%u",
			  vec, name, rip, err, cr2, rsp, cs & 3, c ? c->index : 0);
	vm_exit(99);
}
