/* godwit test guest: definitions shared by the ring-0 and ring-3 parts. */
#ifndef TESTGUEST_H
#define TESTGUEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "layout.h"

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int8_t s8;
typedef int64_t s64;

#define PAGE_SIZE  4096UL
#define MIB	   (1024UL * 1024UL)
#define GIB	   (1024UL * MIB)
#define NS_PER_SEC 1000000000UL
#define NS_PER_MS  1000000UL

/* struct hvm_start_info (Xen public/arch-x86/hvm/start_info.h). */
#define HVM_START_MAGIC 0x336ec578u
struct hvm_start_info {
	u32 magic;
	u32 version;
	u32 flags;
	u32 nr_modules;
	u64 modlist_paddr;
	u64 cmdline_paddr;
	u64 rsdp_paddr;
	u64 memmap_paddr; /* version >= 1 */
	u32 memmap_entries;
	u32 reserved;
};

struct hvm_memmap_entry {
	u64 addr;
	u64 size;
	u32 type;
	u32 reserved;
};
#define MEMMAP_RAM 1

/* The pvclock structure KVM fills in for MSR_KVM_SYSTEM_TIME_NEW. */
struct pvclock {
	u32 version;
	u32 pad0;
	u64 tsc_timestamp;
	u64 system_time;
	u32 tsc_to_system_mul;
	s8 tsc_shift;
	u8 flags;
	u8 pad[2];
} __attribute__((packed));

struct tss64 {
	u32 reserved0;
	u64 rsp[3];
	u64 reserved1;
	u64 ist[7];
	u64 reserved2;
	u16 reserved3;
	u16 iomap_base;
} __attribute__((packed));

enum workload_kind {
	WL_NONE,
	WL_MEMTOUCH,
	WL_HEARTBEAT,
	WL_TICKS,
	WL_EXIT,
	WL_FAULT,
	WL_NETECHO,
	WL_BLKLOG,
	WL_BLKBENCH,
	WL_NETBENCH,
	WL_IOPORT,
	WL_FILL,
};

#define MAX_EXTENTS 16
struct extent {
	u64 start;
	u64 len;
};

struct workload {
	enum workload_kind kind;
	u64 arg1; /* memtouch: bytes; heartbeat: ms; ticks: hz; exit: code; netecho: IPv4
		     (a.b.c.d as a << 24 | ...); blklog: records per write (0: 1);
		     blkbench: MiB; netbench: IPv4 as netecho */
	u64 arg2; /* memtouch: MB/s (0: unpaced); blkbench: 1 for `latency` */
	/* memtouch: pseudo-random page contents (memrand.c) */
	bool random;
	u32 nextents;
	struct extent ext[MAX_EXTENTS];
};

/* One per vCPU. The ring-0 stack of vCPU i holds &cpus[i] in its lowest word. */
struct cpu {
	struct pvclock pvclock __attribute__((aligned(64)));
	u32 index;
	u32 apic_id;
	volatile u64 ticks;   /* LAPIC timer interrupts, counted in ring 0 */
	volatile u32 started; /* set by an AP once it is up */
	struct workload wl;
	struct tss64 tss __attribute__((aligned(16)));
} __attribute__((aligned(64)));

/* Shared state (defined in kernel.c / boot.S). */
extern struct cpu cpus[MAX_CPUS];
extern u32 boot_info_pa;
extern volatile u32 ap_boot_cpu;
extern u32 kvmclock_enabled;
extern u64 mapped_limit;
extern u64 gdt[];
extern u64 pdpt[512];
extern char __image_start[], __image_end[];
extern char tramp_start[], tramp_end[];

/* boot.S */
void enter_user(void (*entry)(struct cpu *), u64 rsp, struct cpu *c) __attribute__((noreturn));
void halt_forever(void) __attribute__((noreturn));

/* user.c: ring-3 entry for every vCPU with a workload. */
void user_main(struct cpu *c) __attribute__((noreturn));
/* user.c: the guest's clock in ns (kvmclock or the calibrated TSC). */
u64 now_ns(struct cpu *c);
/* user.c: spins until the guest's clock reaches t (ns). */
void wait_until(struct cpu *c, u64 t);
/*
 * user.c: a loop held to a rate, a unit taking unit_num / unit_den ns (memtouch's pages,
 * blklog's records). pace_wait() counts what was just done and waits until it is due. A
 * pace that has fallen behind by more than slack_ns starts again from now: the loop does
 * not catch up in a burst.
 */
struct pace {
	u64 unit_num, unit_den, slack_ns;
	u64 base;  /* when the count started */
	u64 count; /* units done since base */
};
void pace_start(struct cpu *c, struct pace *p, u64 unit_num, u64 unit_den, u64 slack_ns);
void pace_wait(struct cpu *c, struct pace *p, u64 units);
/* user.c: prints "testguest: error: ..." and exits with code 2. */
void fail(const char *f, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* netecho.c, blklog.c, blkbench.c: the virtio workloads (ring 3, polling drivers in virtio.c). */
void netecho(struct cpu *c);
void blklog(struct cpu *c);
void netbench(struct cpu *c);
void blkbench(struct cpu *c);

/* memtouch: the first word of a page that did not hold what the last pass wrote. */
struct memtouch_miss {
	u64 gpa;
	u64 expected;
	u64 found;
};
/* memrand.c: checks the page at gpa against pass - 1's random contents (from pass 2
 * on), then fills it with pass's; true if it did not match (*miss: the first word). */
bool memrand_page(u64 gpa, u64 pass, struct memtouch_miss *miss);

/* lib.c */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int vfmt(char *buf, size_t size, const char *fmt, va_list ap);
int fmt(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prints one line (a '\n' is added) under the console lock. */
void println(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same, for exception handlers: takes the lock only if it can within a bounded time. */
void println_emergency(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vm_exit(u32 code) __attribute__((noreturn));

/* Port I/O itself: ring 0 only (kernel.c), and ioport.c. kvm_pvm runs ring 3 as host
 * user code and ignores IOPL there: only a TSS I/O bitmap, which ours lacks, would
 * let ring 3 reach a port. */
static inline void raw_outb(u16 port, u8 v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline void raw_outl(u16 port, u32 v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}
static inline u8 raw_inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

/* The test guest's system call (ud_or_kcall in boot.S, kcall_handle in kernel.c). */
enum kcall_op {
	KCALL_INB,
	KCALL_OUTB,
	KCALL_OUTL,
	KCALL_CONSOLE, /* write `value` bytes at `buf` to COM1 */
	KCALL_HALT,    /* park this vCPU for good */
	KCALL_IOPORT,  /* ioport.c: enter ring 3 again, as `value` (the mode) says */
};
u64 kcall_handle(u64 op, u64 port, u64 value, const char *buf);

/* ioport.c: the `ioport MODE` workload, its ring-0 half, its argument. */
void ioport(struct cpu *c);
void ioport_enter(struct cpu *c, u64 mode, u64 rsp);
u64 ioport_mode(const char *name);

/* From any ring: ring 3 through a #UD at `ud2; "kc"`, ring 0 directly. */
static inline u64 kcall(enum kcall_op op, u16 port, u64 value, const void *buf)
{
	u16 cs;
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	if ((cs & 3) == 0)
		return kcall_handle(op, port, value, buf);
	u64 rax = op, rdi = port, rsi = value, rdx = (u64)buf;
	__asm__ volatile("ud2; .byte 'k', 'c'"
			 : "+a"(rax), "+D"(rdi), "+S"(rsi), "+d"(rdx)
			 :
			 : "rcx", "r8", "r9", "r10", "r11", "memory", "cc");
	return rax;
}
static inline void outb(u16 port, u8 v)
{
	kcall(KCALL_OUTB, port, v, 0);
}
static inline void outl(u16 port, u32 v)
{
	kcall(KCALL_OUTL, port, v, 0);
}
static inline u8 inb(u16 port)
{
	return (u8)kcall(KCALL_INB, port, 0, 0);
}
static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}
static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}
static inline void cpuid(u32 leaf, u32 sub, u32 *a, u32 *b, u32 *c, u32 *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}
static inline u32 mmio_read32(u64 addr)
{
	return *(volatile u32 *)addr;
}
static inline void mmio_write32(u64 addr, u32 v)
{
	*(volatile u32 *)addr = v;
}
#define barrier() __asm__ volatile("" ::: "memory")

#endif
