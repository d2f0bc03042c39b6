/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_ACPI_H
#define GODWIT_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "godwit/memory.h"
#include "godwit/util.h"

/*
 * ACPI tables for a hardware-reduced x86 machine: RSDP, XSDT, FADT, MADT, DSDT,
 * in the 0xe0000-0xfffff area (x86_layout.h). The stock Linux kernel we boot has
 * no MP-table parser and takes virtio-mmio devices only from ACPI, so SMP and
 * every virtio device depend on these tables.
 */

#define ACPI_MAX_CPUS	255 /* xAPIC ids 0..254; 255 is the broadcast id */
#define ACPI_MAX_VIRTIO 256 /* device names VR00..VRFF */

/* A virtio-mmio device: DSDT Device "LNRO0005", edge-triggered active-high GSI. */
struct acpi_virtio_mmio {
	uint64_t base; /* register window, must lie below 4 GiB */
	uint64_t size;
	uint32_t gsi; /* IOAPIC pin, < IOAPIC_NR_PINS */
};

struct acpi_config {
	unsigned int nr_cpus; /* 1..ACPI_MAX_CPUS; APIC ids 0..nr_cpus-1 */
	unsigned int nr_virtio_mmio;
	const struct acpi_virtio_mmio *virtio_mmio;
};

/*
 * Writes the tables into guest RAM and returns the RSDP address (ACPI_RSDP_ADDR).
 * 0, -EINVAL (bad config), -E2BIG (tables do not fit the area), -ENOMEM, -EFAULT.
 */
int __must_check acpi__build(struct guest_mem *mem, const struct acpi_config *cfg,
			     uint64_t *rsdp_gpa);

/*
 * Builds the same tables into a host buffer that will be placed at guest address
 * base_gpa (the buffer stands for [base_gpa, base_gpa + size)); *used is the
 * number of bytes written. For acpi__build() and for tests.
 */
int __must_check acpi__build_tables(const struct acpi_config *cfg, uint8_t *buf, size_t size,
				    uint64_t base_gpa, size_t *used);

#endif
