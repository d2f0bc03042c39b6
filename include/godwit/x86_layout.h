/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_X86_LAYOUT_H
#define GODWIT_X86_LAYOUT_H

/*
 * The fixed guest physical layout of an x86 godwit VM, and the I/O ports the VMM
 * emulates. Everything here is guest ABI: a migrated VM keeps running on a
 * destination that must use the very same numbers, so change none of them without
 * a new machine version.
 *
 *   0x00000000 - 0x00000fff  real-mode IVT / BDA area, left zero
 *   0x00001000 - 0x0002ffff  boot structures written by the loader (below)
 *   0x00030000 - 0x0009fbff  RAM
 *   0x0009fc00 - 0x000fffff  reserved: "EBDA", legacy ROM area, ACPI tables
 *   0x00100000 - 3 GiB       RAM, the kernel is loaded at 1 MiB
 *   3 GiB      - 4 GiB       MMIO hole (MEM_HOLE_START/END in memory.h):
 *                              0xd0000000 virtio-mmio window
 *                              0xfec00000 IOAPIC
 *                              0xfee00000 LAPIC
 *   4 GiB      - ...         the rest of RAM
 */

/* ---- Boot structures, all in low RAM below the EBDA ---- */

/*
 * Everything from here to BOOT_STRUCT_END belongs to the loader: a kernel segment
 * that would land here is rejected. Page 0 is left alone because Linux reads the
 * BIOS data area (EBDA pointer at 0x40e) from it and must find zeros.
 */
#define BOOT_STRUCT_START 0x00001000ULL
#define BOOT_STRUCT_END	  0x00030000ULL

/*
 * GDT used at entry: 0x08 32-bit flat code (PVH entry), 0x10 64-bit code and 0x18
 * flat data (the selectors the Linux 64-bit boot protocol mandates: __BOOT_CS and
 * __BOOT_DS), 0x20 a 16-byte TSS descriptor (TR must hold a usable TSS).
 */
#define BOOT_GDT_ADDR	 0x00001000ULL
#define BOOT_GDT_ENTRIES 6
#define BOOT_SEL_CODE32	 0x08
#define BOOT_SEL_CODE64	 0x10
#define BOOT_SEL_DATA	 0x18
#define BOOT_SEL_TSS	 0x20

/* PVH: struct hvm_start_info, then its e820-style memory map, then the module list. */
#define PVH_START_INFO_ADDR 0x00002000ULL
#define PVH_MEMMAP_ADDR	    0x00002040ULL
#define PVH_MEMMAP_MAX	    32 /* 24-byte entries: ends at 0x2340 */
#define PVH_MODLIST_ADDR    0x00002800ULL

/* Linux: struct boot_params, the "zero page". */
#define BOOT_PARAMS_ADDR 0x00003000ULL

/*
 * Identity page tables for the 64-bit entry: one PML4, one PDPT and four page
 * directories of 2 MiB pages mapping 0-4 GiB. 2 MiB pages need no CPUID check
 * (1 GiB pages do), and 4 GiB covers the kernel, boot_params, the command line
 * and the initrd wherever they are in low RAM.
 */
#define BOOT_PML4_ADDR 0x00004000ULL
#define BOOT_PDPT_ADDR 0x00005000ULL
#define BOOT_PD_ADDR   0x00006000ULL /* 4 pages: 0x6000 - 0x9fff */
#define BOOT_PD_COUNT  4

/*
 * A stack for the boot vCPU. Neither boot protocol promises one (the kernel sets
 * its own), but giving RSP a harmless value costs nothing.
 */
#define BOOT_STACK_TOP 0x00010000ULL

/* Kernel command line (PVH and Linux), at most BOOT_CMDLINE_MAX bytes with its NUL. */
#define BOOT_CMDLINE_ADDR 0x00020000ULL
#define BOOT_CMDLINE_MAX  4096ULL

/* ---- Legacy low-memory holes ---- */

/* Conventional memory ends where a PC's EBDA starts; up to 1 MiB is reserved. */
#define EBDA_START     0x0009fc00ULL
#define HIGH_MEM_START 0x00100000ULL

/*
 * ACPI tables. In the BIOS ROM area so that a guest that does not get the RSDP
 * address handed over (or ignores it) still finds it with the legacy scan of
 * 0xe0000-0xfffff on 16-byte boundaries. RSDP first, then the tables.
 */
#define ACPI_AREA_START 0x000e0000ULL
#define ACPI_AREA_END	0x00100000ULL
#define ACPI_RSDP_ADDR	ACPI_AREA_START

/* ---- Kernel ---- */

/* bzImage protected-mode code and PVH/vmlinux images are expected here. */
#define KERNEL_LOAD_ADDR HIGH_MEM_START

/* ---- MMIO hole ---- */

#define IOAPIC_ADDR 0xfec00000ULL
#define LAPIC_ADDR  0xfee00000ULL

/*
 * The in-kernel IOAPIC of KVM has 24 pins; its ID after reset is 0, and the MADT
 * says 0 as well (64-bit Linux keeps IOAPIC IDs apart from APIC IDs).
 */
#define IOAPIC_ID      0
#define IOAPIC_NR_PINS 24

/*
 * virtio-mmio devices: device i at VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_SIZE,
 * interrupt GSI VIRTIO_MMIO_GSI_BASE + i (edge, active high), so at most
 * IOAPIC_NR_PINS - VIRTIO_MMIO_GSI_BASE devices.
 */
#define VIRTIO_MMIO_BASE     0xd0000000ULL
#define VIRTIO_MMIO_SIZE     0x1000ULL
#define VIRTIO_MMIO_GSI_BASE 5
#define VIRTIO_MMIO_MAX	     (IOAPIC_NR_PINS - VIRTIO_MMIO_GSI_BASE)

/* ---- I/O ports ---- */

/* First 8250 UART, the guest console. */
#define COM1_PORT 0x3f8
#define COM1_LEN  8
#define COM1_IRQ  4

/*
 * Exit port: a 32-bit OUT of CODE to this port ends the VM with exit status CODE
 * (the port QEMU's isa-debug-exit is usually put at). The test guest uses it.
 */
#define EXIT_PORT 0xf4

/*
 * ACPI hardware-reduced sleep and reset registers (FADT SLEEP_CONTROL_REG,
 * SLEEP_STATUS_REG, RESET_REG), one byte each in system I/O space. Free ports on
 * a PC (QEMU's q35 puts its PM block at the same base, never in our machine).
 *
 * Sleep control: bits 2-4 SLP_TYP, bit 5 SLP_EN. Writing SLP_TYP=ACPI_S5_SLP_TYP
 * together with SLP_EN (the byte ACPI_SLEEP_CTL_POWEROFF) is power off; the DSDT's
 * \_S5 package tells the guest to use ACPI_S5_SLP_TYP.
 * Sleep status: bit 7 WAK_STS; the VMM can return 0 on read and ignore writes.
 * Reset: writing ACPI_RESET_VALUE reboots the VM.
 */
#define ACPI_SLEEP_CTL_PORT	     0x600
#define ACPI_SLEEP_STS_PORT	     0x601
#define ACPI_RESET_PORT		     0x602
#define ACPI_SLEEP_CTL_SLP_TYP_SHIFT 2
#define ACPI_SLEEP_CTL_SLP_TYP_MASK  (7U << 2)
#define ACPI_SLEEP_CTL_SLP_EN	     (1U << 5)
#define ACPI_SLEEP_STS_WAK_STS	     (1U << 7)
#define ACPI_S5_SLP_TYP		     5
#define ACPI_SLEEP_CTL_POWEROFF                                                                    \
	((ACPI_S5_SLP_TYP << ACPI_SLEEP_CTL_SLP_TYP_SHIFT) | ACPI_SLEEP_CTL_SLP_EN)
#define ACPI_RESET_VALUE 0x01

#endif
