/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_BOOT_H
#define GODWIT_BOOT_H

#include <stdint.h>

#include <linux/kvm.h>

#include "godwit/memory.h"
#include "godwit/util.h"

/*
 * x86 kernel loading. The kernel format is recognised from the file itself:
 *  - an ELF (32 or 64-bit) with a Xen PVH entry note: loaded by its program headers
 *    and entered in 32-bit protected mode with EBX = struct hvm_start_info;
 *  - a Linux bzImage (boot protocol >= 2.12 with a 64-bit entry): entered in long
 *    mode at load address + 0x200 with RSI = struct boot_params;
 *  - an uncompressed Linux vmlinux (ELF64, no PVH note): entered in long mode at
 *    the physical address of its entry point with RSI = struct boot_params.
 * The ACPI tables are built first (acpi__build()) and their RSDP address passed in.
 */

struct boot_params_in {
	const char *kernel_path;
	const char *initrd_path; /* NULL: no initrd */
	const char *cmdline;	 /* NULL: empty */
	unsigned int nr_cpus;
	uint64_t rsdp_gpa; /* 0: no ACPI */
	/*
	 * Put before the command line of a Linux kernel only (bzImage, vmlinux, or a
	 * PVH ELF whose notes say Linux: boot_setup.is_linux); may be NULL.
	 */
	const char *linux_cmdline_prefix;
};

enum boot_format {
	BOOT_FORMAT_PVH = 1,
	BOOT_FORMAT_BZIMAGE,
	BOOT_FORMAT_VMLINUX,
};

enum boot_cpu_mode {
	BOOT_CPU_PROTECTED32 = 1, /* flat 32-bit protected mode, paging off */
	BOOT_CPU_LONG64,	  /* long mode, identity-mapped 0-4 GiB */
};

/* What was loaded and how the boot vCPU must start. */
struct boot_setup {
	enum boot_format format;
	enum boot_cpu_mode mode;
	bool is_linux; /* bzImage, vmlinux, or a PVH ELF with a Linux note */
	uint64_t entry;	       /* RIP */
	uint64_t info_gpa;     /* PVH: EBX = hvm_start_info; Linux: RSI = boot_params */
	uint64_t kernel_start; /* lowest and highest+1 address the kernel occupies */
	uint64_t kernel_end;
	uint64_t initrd_gpa; /* 0 if none */
	uint64_t initrd_size;
	uint64_t cmdline_gpa;
};

/*
 * Loads the kernel (and initrd) into guest RAM and writes every boot structure
 * (GDT, page tables, start_info or boot_params, command line, memory map).
 * 0, or -ENOENT/-EACCES/-EIO (file), -ENOEXEC (format), -E2BIG (does not fit in
 * RAM), -EINVAL (bad parameters, command line too long), each with a message.
 */
int __must_check boot__load_kernel(struct guest_mem *mem, const struct boot_params_in *in,
				   struct boot_setup *out);

/*
 * Initial state of the boot vCPU. regs is filled entirely. sregs should come from
 * KVM_GET_SREGS: this sets the segment registers, TR, LDT, GDT, IDT, CR0, CR3, CR4
 * and EFER, and leaves CR2, CR8, APIC base and the interrupt bitmap alone. The
 * segment caches are exactly the descriptors written to the GDT in guest RAM.
 */
void boot__bsp_regs(const struct boot_setup *b, struct kvm_regs *regs, struct kvm_sregs *sregs);

/* ---- Memory map, shared by PVH (memmap) and Linux (e820_table) ---- */

#define E820_TYPE_RAM	   1
#define E820_TYPE_RESERVED 2
#define E820_TYPE_ACPI	   3

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};

/*
 * RAM 0-EBDA_START, reserved EBDA_START-1 MiB (EBDA, ROM area, ACPI tables), RAM
 * 1 MiB-end of low RAM, RAM from 4 GiB for what lies above the hole. Returns the
 * number of entries, or -EINVAL if RAM does not start at 0 with at least 2 MiB,
 * -E2BIG if max is too small.
 */
int __must_check boot__e820(const struct guest_mem *mem, struct e820_entry *out, unsigned int max);

/* End of the RAM region that starts at 0 (at most MEM_HOLE_START); 0 if none. */
uint64_t boot__low_ram_end(const struct guest_mem *mem);

/*
 * Internal to the loader (src/arch/x86/boot*.c), exposed for its unit tests.
 */

/* Descriptor i of the boot GDT (BOOT_SEL_* >> 3). */
uint64_t boot__gdt_entry(unsigned int i);
/* Writes the boot GDT at BOOT_GDT_ADDR. */
int __must_check boot__write_gdt(struct guest_mem *mem);
/* Writes the identity page tables at BOOT_PML4_ADDR. */
int __must_check boot__write_page_tables(struct guest_mem *mem);

/* An open kernel or initrd file; reads are bounds-checked against its size. */
struct boot_file {
	int fd;
	uint64_t size;
	const char *path;
};

int __must_check boot__file_read(const struct boot_file *f, uint64_t off, void *buf, uint64_t len);
/* Copies len bytes at file offset off into guest RAM at gpa. */
int __must_check boot__file_to_guest(struct guest_mem *mem, const struct boot_file *f, uint64_t off,
				     uint64_t len, uint64_t gpa);
int __must_check boot__zero_guest(struct guest_mem *mem, uint64_t gpa, uint64_t len);
/*
 * Checks that [gpa, gpa+len) may receive kernel bytes: low RAM, outside the boot
 * structures and the reserved area below 1 MiB. -ENOEXEC or -E2BIG with a message.
 */
int __must_check boot__check_kernel_range(const struct guest_mem *mem, const char *path,
					  uint64_t gpa, uint64_t len);

/* ELF images (boot_elf.c): PVH or vmlinux, decided by the presence of the note. */
int __must_check boot__load_elf(struct guest_mem *mem, const struct boot_file *f,
				struct boot_setup *out);
/* bzImage (boot_bzimage.c): loads the kernel and fills the setup header part. */
int __must_check boot__load_bzimage(struct guest_mem *mem, const struct boot_file *f,
				    uint8_t *zero_page, struct boot_setup *out);

#endif
