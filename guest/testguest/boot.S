/*
 * godwit test guest: PVH entry, long-mode switch, AP trampoline, interrupt stubs.
 *
 * The PVH loader enters pvh_start32 in 32-bit flat protected mode, paging off,
 * %ebx = physical address of struct hvm_start_info. Every vCPU (the BSP from here,
 * the APs from the 16-bit trampoline) goes through enter_long_mode with its index
 * in %esi, then runs kmain(index) in ring 0 on its own stack.
 */
#include "layout.h"

#define PTE_P 0x001
#define PTE_RW 0x002
#define PTE_US 0x004
#define PTE_PWT 0x008
#define PTE_PCD 0x010
#define PTE_PS 0x080

/* The PVH entry note: XEN_ELFNOTE_PHYS32_ENTRY (18), name "Xen", 8-byte address. */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4
	.long 8
	.long 18
	.asciz "Xen"
	.balign 4
	.quad pvh_start32
	.balign 4

	.section .text.boot, "ax"
	.code32
	.globl pvh_start32
pvh_start32:
	cli
	cld
	movl %ebx, boot_info_pa
	lgdt gdt_ptr
	ljmp $SEL_CODE32, $1f
1:	movl $SEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs

	/* Identity map 0..4 GiB with 2 MiB user pages; the top 32 MiB uncached (MMIO). */
	movl $pml4, %edi
	movl $pdpt, %eax
	orl $(PTE_P | PTE_RW | PTE_US), %eax
	movl %eax, (%edi)
	movl $0, 4(%edi)
	movl $pdpt, %edi
	movl $pd_low, %eax
	orl $(PTE_P | PTE_RW | PTE_US), %eax
	movl $4, %ecx
2:	movl %eax, (%edi)
	movl $0, 4(%edi)
	addl $4096, %eax
	addl $8, %edi
	decl %ecx
	jnz 2b
	movl $pd_low, %edi
	movl $(PTE_P | PTE_RW | PTE_US | PTE_PS), %eax
	xorl %ecx, %ecx
3:	movl %eax, %edx
	cmpl $2032, %ecx /* 0xfe000000 >> 21 */
	jb 4f
	orl $(PTE_PWT | PTE_PCD), %edx
4:	movl %edx, (%edi)
	movl $0, 4(%edi)
	addl $0x200000, %eax
	addl $8, %edi
	incl %ecx
	cmpl $2048, %ecx
	jne 3b

	xorl %esi, %esi /* vCPU 0 */
	jmp enter_long_mode

/* APs arrive here from the trampoline, in 32-bit protected mode. */
	.globl ap_entry32
ap_entry32:
	movl $SEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs
	movl ap_boot_cpu, %esi

/* %esi = vCPU index. */
enter_long_mode:
	movl %cr4, %eax
	orl $0x20, %eax /* PAE */
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx /* EFER */
	rdmsr
	orl $0x100, %eax /* LME */
	wrmsr
	movl %cr0, %eax
	andl $0x9fffffff, %eax /* caches on: clear CD, NW */
	orl $0x80010021, %eax /* PG, WP, NE, PE */
	movl %eax, %cr0
	ljmp $SEL_CODE64, $long_mode

	.code64
long_mode:
	movl $SEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs
	movl %esi, %edi
	/* rsp = kstacks + (index + 1) * KSTACK_SIZE */
	movq %rdi, %rax
	incq %rax
	shlq $13, %rax
	.if (1 << 13) != KSTACK_SIZE
	.error "KSTACK_SIZE changed: fix the shift"
	.endif
	leaq kstacks(%rip), %rsp
	addq %rax, %rsp
	xorl %ebp, %ebp
	call kmain
	jmp halt_forever

/* enter_user(entry, rsp, cpu): iretq to ring 3 with IF=1 and IOPL=0 (ring 3 reaches
 * the ports through kcall, see exc_6: kvm_pvm ignores IOPL in ring 3). */
	.globl enter_user
enter_user:
	movq %rdx, %r8
	pushq $(SEL_UDATA | 3)
	pushq %rsi
	pushq $0x0202
	pushq $(SEL_UCODE | 3)
	pushq %rdi
	movl $(SEL_UDATA | 3), %eax
	movl %eax, %ds
	movl %eax, %es
	movq %r8, %rdi
	xorl %eax, %eax
	xorl %ebx, %ebx
	xorl %ecx, %ecx
	xorl %edx, %edx
	xorl %esi, %esi
	xorl %ebp, %ebp
	xorl %r8d, %r8d
	xorl %r9d, %r9d
	xorl %r10d, %r10d
	xorl %r11d, %r11d
	iretq

	.globl halt_forever
halt_forever:
	cli
1:	hlt
	jmp 1b

/* ---- interrupt and exception stubs ---- */
.macro EXC_NOERR vec
	.globl exc_\vec
exc_\vec:
	pushq $0
	pushq $\vec
	jmp exc_common
.endm
.macro EXC_ERR vec
	.globl exc_\vec
exc_\vec:
	pushq $\vec
	jmp exc_common
.endm

	.balign 16
EXC_NOERR 0
EXC_NOERR 1
EXC_NOERR 2
EXC_NOERR 3
EXC_NOERR 4
EXC_NOERR 5
	.globl exc_6
exc_6:
	jmp ud_or_kcall
EXC_NOERR 7
EXC_ERR 8
EXC_NOERR 9
EXC_ERR 10
EXC_ERR 11
EXC_ERR 12
EXC_ERR 13
EXC_ERR 14
EXC_NOERR 15
EXC_NOERR 16
EXC_ERR 17
EXC_NOERR 18
EXC_NOERR 19
EXC_NOERR 20
EXC_ERR 21
EXC_NOERR 22
EXC_NOERR 23
EXC_NOERR 24
EXC_NOERR 25
EXC_NOERR 26
EXC_NOERR 27
EXC_NOERR 28
EXC_ERR 29
EXC_ERR 30
EXC_NOERR 31

/* Stack: vector, error code, rip, cs, rflags, rsp, ss. Never returns. */
exc_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	movq %rsp, %rdi
	andq $-16, %rsp
	call exception_report
	jmp halt_forever

/*
 * #UD. From ring 3 at `ud2; "kc"` it is a kcall (testguest.h): %eax = op, %edi = port,
 * %rsi = value or length, %rdx = buffer; result in %rax. kvm_pvm delivers exceptions from
 * ring 3 to this IDT but turns `int n` and `syscall` into something else (#UD; a jump
 * to MSR_LSTAR still in ring 3), so a fault is the one way in. The caller treats every
 * caller-saved register as clobbered.
 */
ud_or_kcall:
	testb $3, 8(%rsp) /* CS of the frame */
	jz 1f
	pushq %rax
	movq 8(%rsp), %rax /* RIP */
	cmpl $KCALL_SIGNATURE, (%rax)
	popq %rax
	jne 1f
	addq $KCALL_LENGTH, (%rsp)
	pushq %rbp
	movq %rsp, %rbp
	andq $-16, %rsp
	movq %rdx, %rcx
	movq %rsi, %rdx
	movq %rdi, %rsi
	movq %rax, %rdi
	call kcall_handle
	movq %rbp, %rsp
	popq %rbp
	iretq
1:	pushq $0
	pushq $6
	jmp exc_common

/* LAPIC timer: count in the per-vCPU struct (pointer at the base of this stack), EOI. */
	.globl timer_isr
timer_isr:
	pushq %rax
	movq %rsp, %rax
	andq $-KSTACK_SIZE, %rax
	movq (%rax), %rax
	lock incq CPU_TICKS_OFFSET(%rax)
	movq lapic_eoi_addr(%rip), %rax
	movl $0, (%rax)
	popq %rax
	iretq

/* 8259 vectors (masked; only spurious IRQ 7/15 can arrive) and the LAPIC spurious vector. */
	.globl ignore_isr
ignore_isr:
	iretq

/* ---- 16-bit AP trampoline, copied below 1 MiB at run time ---- */
	.section .text.tramp, "ax"
	.code16
	.globl tramp_start, tramp_end
tramp_start:
	cli
	cld
	movw %cs, %ax
	movw %ax, %ds
	lgdtl (tramp_gdtr - tramp_start)
	movl %cr0, %eax
	andl $0x9fffffff, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $SEL_CODE32, $ap_entry32
	.balign 8
tramp_gdtr:
	.word GDT_ENTRIES * 8 - 1
	.long gdt
tramp_end:

	.section .data
	.balign 8
gdt_ptr:
	.word GDT_ENTRIES * 8 - 1
	.long gdt
	.long 0

	.balign 16
	.globl gdt
gdt:
	.quad 0
	.quad 0x00cf9a000000ffff /* 0x08 code32 */
	.quad 0x00af9a000000ffff /* 0x10 code64 */
	.quad 0x00cf92000000ffff /* 0x18 data */
	.quad 0x00cff2000000ffff /* 0x20 user data */
	.quad 0x00affa000000ffff /* 0x28 user code64 */
	.fill 2 * MAX_CPUS, 8, 0 /* 0x30: one 16-byte TSS descriptor per vCPU */

	.section .bss
	.balign 4096
	.globl pml4, pdpt, pd_low
pml4:	.skip 4096
pdpt:	.skip 4096
pd_low:	.skip 4 * 4096
	.balign KSTACK_SIZE
	.globl kstacks
kstacks: .skip MAX_CPUS * KSTACK_SIZE

	.section .note.GNU-stack, "", @progbits
