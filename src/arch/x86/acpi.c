// SPDX-License-Identifier: GPL-2.0
/*
 * ACPI tables (ACPI 6.x): a hardware-reduced machine, so no PM1/GPE blocks and
 * no SCI; power off and reset go through the FADT sleep control and reset
 * registers, which the VMM emulates on I/O ports (x86_layout.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/acpi.h"
#include "godwit/aml.h"
#include "godwit/log.h"
#include "godwit/x86_layout.h"

#define RSDP_LEN      36
#define RSDP_V1_LEN   20
#define SDT_HDR_LEN   36
#define SDT_CHECKSUM  9
#define XSDT_ENTRIES  2 /* FADT, MADT; the DSDT hangs off the FADT */
#define FADT_LEN      276
#define FADT_REVISION 6
#define FADT_MINOR    0 /* ACPI 6.0 layout, unchanged since */
#define MADT_REVISION 5
#define DSDT_REVISION 2 /* 2 and up: 64-bit AML integers */
#define XSDT_REVISION 1
#define TABLE_ALIGN   16

/* FADT field offsets (ACPI 6.x table 5.9). */
#define FADT_DSDT	    40
#define FADT_IAPC_BOOT_ARCH 109
#define FADT_FLAGS	    112
#define FADT_RESET_REG	    116
#define FADT_RESET_VALUE    128
#define FADT_MINOR_VERSION  131
#define FADT_X_DSDT	    140
#define FADT_SLEEP_CTL_REG  244
#define FADT_SLEEP_STS_REG  256
#define FADT_HYPERVISOR_ID  268

#define FADT_F_PWR_BUTTON	  (1U << 4)
#define FADT_F_SLP_BUTTON	  (1U << 5)
#define FADT_F_RESET_REG_SUP	  (1U << 10)
#define FADT_F_HW_REDUCED_ACPI	  (1U << 20)
#define IAPC_VGA_NOT_PRESENT	  (1U << 2)
#define IAPC_CMOS_RTC_NOT_PRESENT (1U << 5)

#define GAS_SYSTEM_IO	1
#define GAS_ACCESS_BYTE 1

#define MADT_PCAT_COMPAT   1
#define MADT_LAPIC	   0
#define MADT_IOAPIC	   1
#define MADT_ISO	   2
#define MADT_LAPIC_LEN	   8
#define MADT_IOAPIC_LEN	   12
#define MADT_ISO_LEN	   10
#define MADT_LAPIC_ENABLED 1

#define OEM_ID	     "GODWIT"
#define OEM_TABLE_ID "GODWITVM"
#define CREATOR_ID   "GDWT"

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v);
	put16(p + 2, v >> 16);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, v);
	put32(p + 4, v >> 32);
}

static uint8_t checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	while (len--)
		sum += *p++;
	return (uint8_t)-sum;
}

static void sdt_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	put32(t + 4, len);
	t[8] = rev;
	memcpy(t + 10, OEM_ID, 6);
	memcpy(t + 16, OEM_TABLE_ID, 8);
	put32(t + 24, 1);
	memcpy(t + 28, CREATOR_ID, 4);
	put32(t + 32, 1);
}

static void sdt_checksum(uint8_t *t, size_t len)
{
	t[SDT_CHECKSUM] = 0;
	t[SDT_CHECKSUM] = checksum(t, len);
}

/* A one-byte register in system I/O space. */
static void gas_io8(uint8_t *g, uint16_t port)
{
	g[0] = GAS_SYSTEM_IO;
	g[1] = 8; /* bit width */
	g[2] = 0; /* bit offset */
	g[3] = GAS_ACCESS_BYTE;
	put64(g + 4, port);
}

static void build_fadt(uint8_t *t, uint64_t dsdt)
{
	sdt_header(t, "FACP", FADT_LEN, FADT_REVISION);
	/* Both DSDT fields, equal: old parsers read the 32-bit one. */
	put32(t + FADT_DSDT, dsdt);
	put64(t + FADT_X_DSDT, dsdt);
	/*
	 * No VGA, no CMOS RTC (the clock comes from kvmclock); no legacy devices or
	 * 8042 bits, so the guest does not probe for them.
	 */
	put16(t + FADT_IAPC_BOOT_ARCH, IAPC_VGA_NOT_PRESENT | IAPC_CMOS_RTC_NOT_PRESENT);
	put32(t + FADT_FLAGS, FADT_F_HW_REDUCED_ACPI | FADT_F_RESET_REG_SUP | FADT_F_PWR_BUTTON |
				  FADT_F_SLP_BUTTON);
	gas_io8(t + FADT_RESET_REG, ACPI_RESET_PORT);
	t[FADT_RESET_VALUE] = ACPI_RESET_VALUE;
	t[FADT_MINOR_VERSION] = FADT_MINOR;
	gas_io8(t + FADT_SLEEP_CTL_REG, ACPI_SLEEP_CTL_PORT);
	gas_io8(t + FADT_SLEEP_STS_REG, ACPI_SLEEP_STS_PORT);
	memcpy(t + FADT_HYPERVISOR_ID, "GODWIT\0\0", 8);
	sdt_checksum(t, FADT_LEN);
}

static size_t madt_len(unsigned int nr_cpus)
{
	return SDT_HDR_LEN + 8 + nr_cpus * MADT_LAPIC_LEN + MADT_IOAPIC_LEN + MADT_ISO_LEN;
}

static void build_madt(uint8_t *t, unsigned int nr_cpus)
{
	size_t len = madt_len(nr_cpus);
	uint8_t *e = t + SDT_HDR_LEN + 8;
	unsigned int i;

	sdt_header(t, "APIC", len, MADT_REVISION);
	put32(t + SDT_HDR_LEN, (uint32_t)LAPIC_ADDR);
	/* PCAT_COMPAT: the 8259 pair is there too (KVM's in-kernel irqchip has one). */
	put32(t + SDT_HDR_LEN + 4, MADT_PCAT_COMPAT);
	for (i = 0; i < nr_cpus; i++, e += MADT_LAPIC_LEN) {
		e[0] = MADT_LAPIC;
		e[1] = MADT_LAPIC_LEN;
		e[2] = i; /* ACPI processor UID */
		e[3] = i; /* APIC id: KVM gives vCPU i APIC id i */
		put32(e + 4, MADT_LAPIC_ENABLED);
	}
	e[0] = MADT_IOAPIC;
	e[1] = MADT_IOAPIC_LEN;
	e[2] = IOAPIC_ID;
	e[3] = 0;
	put32(e + 4, (uint32_t)IOAPIC_ADDR);
	put32(e + 8, 0); /* GSI base */
	e += MADT_IOAPIC_LEN;
	/* The PIT's IRQ 0 is wired to IOAPIC pin 2, as on every PC (and in KVM). */
	e[0] = MADT_ISO;
	e[1] = MADT_ISO_LEN;
	e[2] = 0; /* ISA bus */
	e[3] = 0; /* IRQ 0 */
	put32(e + 4, 2);
	put16(e + 8, 0); /* bus-conformant polarity and trigger */
	sdt_checksum(t, len);
}

static void dsdt_com1(struct aml_buf *b)
{
	struct aml_buf res;
	size_t dev;

	aml__device_begin(b, "COM1", &dev);
	aml__name_eisaid(b, "_HID", "PNP0501");
	aml__name(b, "_UID");
	aml__integer(b, 0);
	aml__init(&res, 256);
	aml__res_io(&res, COM1_PORT, COM1_LEN);
	aml__res_irq(&res, COM1_IRQ);
	if (aml__res_end(&res) && !b->err)
		b->err = res.err;
	aml__name(b, "_CRS");
	aml__buffer(b, res.data, res.len);
	aml__free(&res);
	aml__end(b, dev);
}

/*
 * virtio-mmio interrupts are edge-triggered, active high: the VMM raises them by
 * a pulse (irqfd), and the driver acknowledges through the device's
 * InterruptACK register, so there is no level to hold or resample.
 */
static void dsdt_virtio(struct aml_buf *b, unsigned int i, const struct acpi_virtio_mmio *v)
{
	struct aml_buf res;
	char name[5];
	size_t dev;

	snprintf(name, sizeof(name), "VR%02X", i & 0xff);
	aml__device_begin(b, name, &dev);
	aml__name(b, "_HID");
	aml__string(b, "LNRO0005");
	aml__name(b, "_UID");
	aml__integer(b, i);
	aml__init(&res, 256);
	aml__res_mem32_fixed(&res, v->base, v->size, true);
	aml__res_ext_irq(&res, v->gsi, true, false, false);
	if (aml__res_end(&res) && !b->err)
		b->err = res.err;
	aml__name(b, "_CRS");
	aml__buffer(b, res.data, res.len);
	aml__free(&res);
	aml__end(b, dev);
}

/* Builds the DSDT (header included) into b. */
static int build_dsdt(struct aml_buf *b, const struct acpi_config *cfg)
{
	uint8_t hdr[SDT_HDR_LEN] = {0};
	size_t scope, pkg;
	unsigned int i;

	aml__bytes(b, hdr, sizeof(hdr));
	aml__scope_begin(b, "\\_SB", &scope);
	dsdt_com1(b);
	for (i = 0; i < cfg->nr_virtio_mmio; i++)
		dsdt_virtio(b, i, &cfg->virtio_mmio[i]);
	aml__end(b, scope);
	/* \_S5: SLP_TYPa (what the sleep control register takes), SLP_TYPb, reserved. */
	aml__name(b, "\\_S5");
	aml__package_begin(b, 4, &pkg);
	aml__integer(b, ACPI_S5_SLP_TYP);
	aml__integer(b, 0);
	aml__integer(b, 0);
	aml__integer(b, 0);
	aml__end(b, pkg);
	if (b->err)
		return b->err;
	sdt_header(b->data, "DSDT", b->len, DSDT_REVISION);
	sdt_checksum(b->data, b->len);
	return 0;
}

static int check_config(const struct acpi_config *cfg)
{
	unsigned int i;

	if (cfg->nr_cpus < 1 || cfg->nr_cpus > ACPI_MAX_CPUS) {
		pr_err("ACPI: %u vCPUs, must be 1 to %u", cfg->nr_cpus, ACPI_MAX_CPUS);
		return -EINVAL;
	}
	if (cfg->nr_virtio_mmio > ACPI_MAX_VIRTIO || (cfg->nr_virtio_mmio && !cfg->virtio_mmio)) {
		pr_err("ACPI: bad virtio-mmio device list (%u devices)", cfg->nr_virtio_mmio);
		return -EINVAL;
	}
	for (i = 0; i < cfg->nr_virtio_mmio; i++) {
		const struct acpi_virtio_mmio *v = &cfg->virtio_mmio[i];

		if (v->size == 0 || v->base > UINT32_MAX || v->size > UINT32_MAX - v->base + 1 ||
		    v->gsi >= IOAPIC_NR_PINS) {
			pr_err("ACPI: virtio-mmio device %u: window 0x%llx+0x%llx or GSI %u out of "
			       "range",
			       i, (unsigned long long)v->base, (unsigned long long)v->size, v->gsi);
			return -EINVAL;
		}
	}
	return 0;
}

struct acpi_layout {
	size_t xsdt, fadt, madt, dsdt, end;
};

static int place(size_t *off, size_t len, size_t size, size_t *at)
{
	*at = ALIGN_UP(*off, (size_t)TABLE_ALIGN);
	if (*at > size || len > size - *at)
		return -E2BIG;
	*off = *at + len;
	return 0;
}

static int layout_tables(struct acpi_layout *l, size_t size, unsigned int nr_cpus, size_t dsdt_len)
{
	size_t off = RSDP_LEN;
	int ret;

	if (size < RSDP_LEN)
		return -E2BIG;
	ret = place(&off, SDT_HDR_LEN + XSDT_ENTRIES * 8, size, &l->xsdt);
	if (!ret)
		ret = place(&off, FADT_LEN, size, &l->fadt);
	if (!ret)
		ret = place(&off, madt_len(nr_cpus), size, &l->madt);
	if (!ret)
		ret = place(&off, dsdt_len, size, &l->dsdt);
	l->end = off;
	return ret;
}

static void build_rsdp(uint8_t *r, uint64_t xsdt)
{
	memcpy(r, "RSD PTR ", 8);
	memcpy(r + 9, OEM_ID, 6);
	r[15] = 2;	  /* revision: ACPI 2.0+, XSDT */
	put32(r + 16, 0); /* no RSDT */
	put32(r + 20, RSDP_LEN);
	put64(r + 24, xsdt);
	r[8] = checksum(r, RSDP_V1_LEN);
	r[32] = checksum(r, RSDP_LEN);
}

int acpi__build_tables(const struct acpi_config *cfg, uint8_t *buf, size_t size, uint64_t base_gpa,
		       size_t *used)
{
	struct acpi_layout l;
	struct aml_buf dsdt;
	uint8_t *x;
	int ret;

	ret = check_config(cfg);
	if (ret)
		return ret;
	aml__init(&dsdt, size);
	ret = build_dsdt(&dsdt, cfg);
	if (!ret)
		ret = layout_tables(&l, size, cfg->nr_cpus, dsdt.len);
	if (ret) {
		pr_err("ACPI tables do not fit in %zu bytes: %s", size, strerror(-ret));
		goto out;
	}
	memset(buf, 0, l.end);
	memcpy(buf + l.dsdt, dsdt.data, dsdt.len);
	build_madt(buf + l.madt, cfg->nr_cpus);
	build_fadt(buf + l.fadt, base_gpa + l.dsdt);
	x = buf + l.xsdt;
	sdt_header(x, "XSDT", SDT_HDR_LEN + XSDT_ENTRIES * 8, XSDT_REVISION);
	put64(x + SDT_HDR_LEN, base_gpa + l.fadt);
	put64(x + SDT_HDR_LEN + 8, base_gpa + l.madt);
	sdt_checksum(x, SDT_HDR_LEN + XSDT_ENTRIES * 8);
	build_rsdp(buf, base_gpa + l.xsdt);
	*used = l.end;
out:
	aml__free(&dsdt);
	return ret;
}

int acpi__build(struct guest_mem *mem, const struct acpi_config *cfg, uint64_t *rsdp_gpa)
{
	size_t size = ACPI_AREA_END - ACPI_AREA_START, used;
	uint8_t *buf;
	int ret;

	buf = calloc(1, size);
	if (!buf)
		return -ENOMEM;
	ret = acpi__build_tables(cfg, buf, size, ACPI_AREA_START, &used);
	if (ret)
		goto out;
	/* The whole area, so that no stale table from an earlier build survives. */
	ret = guest_mem__write(mem, ACPI_AREA_START, buf, size);
	if (ret) {
		pr_err("cannot write the ACPI tables to guest RAM at 0x%llx",
		       (unsigned long long)ACPI_AREA_START);
		goto out;
	}
	*rsdp_gpa = ACPI_RSDP_ADDR;
out:
	free(buf);
	return ret;
}
