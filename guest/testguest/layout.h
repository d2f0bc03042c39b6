/* Constants shared by the assembly and the C parts of the test guest. */
#ifndef TESTGUEST_LAYOUT_H
#define TESTGUEST_LAYOUT_H

#define MAX_CPUS    64
#define KSTACK_SIZE 8192  /* ring-0 stack per vCPU, aligned to its size */
#define USTACK_SIZE 32768 /* ring-3 stack per vCPU */
#define NR_HIGH_PDS 64	  /* page directories for RAM above 4 GiB (1 GiB each) */

#define SEL_CODE32  0x08
#define SEL_CODE64  0x10
#define SEL_DATA    0x18
#define SEL_UDATA   0x20
#define SEL_UCODE   0x28
#define SEL_TSS0    0x30 /* 16 bytes per vCPU */
#define GDT_ENTRIES (6 + 2 * MAX_CPUS)

#define VEC_PIC_BASE 0x20 /* the 8259s are remapped here and masked */
#define VEC_TIMER    0x40
#define VEC_SPURIOUS 0xff

#define EXIT_PORT 0xf4

/* The test guest's system call is `ud2` followed by the bytes "kc" (kernel.c). */
#define KCALL_SIGNATURE 0x636b0b0f /* 0f 0b 'k' 'c', little-endian */
#define KCALL_LENGTH	4

/* offsetof(struct cpu, ticks), used by timer_isr; checked in kernel.c. */
#define CPU_TICKS_OFFSET 40

#endif
