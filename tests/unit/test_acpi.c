// SPDX-License-Identifier: GPL-2.0
/*
 * ACPI tables: structure and checksums of every table, read back from guest RAM,
 * and a second opinion from ACPICA's disassembler (iasl -d) when it is installed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "godwit/acpi.h"
#include "godwit/memory.h"
#include "godwit/x86_layout.h"

#define RAM_SIZE (16 * MiB)

static uint32_t rd32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static uint8_t sum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return s;
}

struct tables {
	struct guest_mem mem;
	const uint8_t *rsdp, *xsdt, *fadt, *madt, *dsdt;
};

static const uint8_t *table_at(struct tables *t, uint64_t gpa, const char *sig)
{
	const uint8_t *p = guest_mem__ptr(&t->mem, gpa, 36);
	uint32_t len;

	assert_non_null(p);
	assert_true(gpa >= ACPI_AREA_START && gpa < ACPI_AREA_END);
	assert_memory_equal(p, sig, 4);
	len = rd32(p + 4);
	assert_true(len >= 36);
	assert_true(gpa + len <= ACPI_AREA_END);
	p = guest_mem__ptr(&t->mem, gpa, len);
	assert_non_null(p);
	assert_int_equal(sum(p, len), 0);
	return p;
}

static void build(struct tables *t, const struct acpi_config *cfg)
{
	uint64_t rsdp = 0;

	memset(t, 0, sizeof(*t));
	assert_int_equal(guest_mem__init(&t->mem, RAM_SIZE), 0);
	assert_int_equal(acpi__build(&t->mem, cfg, &rsdp), 0);
	assert_int_equal(rsdp, ACPI_RSDP_ADDR);
	assert_int_equal(rsdp % 16, 0);

	t->rsdp = guest_mem__ptr(&t->mem, rsdp, 36);
	assert_memory_equal(t->rsdp, "RSD PTR ", 8);
	assert_int_equal(sum(t->rsdp, 20), 0);
	assert_int_equal(sum(t->rsdp, 36), 0);
	assert_int_equal(t->rsdp[15], 2);
	assert_int_equal(rd32(t->rsdp + 20), 36);
	assert_int_equal(rd32(t->rsdp + 16), 0); /* no RSDT */

	t->xsdt = table_at(t, rd64(t->rsdp + 24), "XSDT");
	assert_int_equal(rd32(t->xsdt + 4), 36 + 2 * 8);
	t->fadt = table_at(t, rd64(t->xsdt + 36), "FACP");
	t->madt = table_at(t, rd64(t->xsdt + 44), "APIC");
	t->dsdt = table_at(t, rd64(t->fadt + 140), "DSDT");
}

static void test_fadt(void **state)
{
	struct acpi_config cfg = {.nr_cpus = 1};
	struct tables t;
	const uint8_t *f;

	(void)state;
	build(&t, &cfg);
	f = t.fadt;
	assert_int_equal(rd32(f + 4), 276);
	assert_int_equal(f[8], 6);
	/* 32-bit DSDT equal to X_DSDT. */
	assert_int_equal(rd32(f + 40), rd64(f + 140));
	/* HW_REDUCED_ACPI (bit 20) and RESET_REG_SUP (bit 10). */
	assert_true(rd32(f + 112) & (1U << 20));
	assert_true(rd32(f + 112) & (1U << 10));
	/* No legacy PM blocks. */
	for (unsigned int off = 56; off < 88; off += 4)
		assert_int_equal(rd32(f + off), 0);
	for (unsigned int off = 148; off < 244; off++)
		assert_int_equal(f[off], 0);
	/* RESET_REG: system I/O, 8 bits, byte access, the reset port, and its value. */
	assert_int_equal(f[116], 1);
	assert_int_equal(f[117], 8);
	assert_int_equal(f[119], 1);
	assert_int_equal(rd64(f + 120), ACPI_RESET_PORT);
	assert_int_equal(f[128], ACPI_RESET_VALUE);
	/* Sleep control and status registers. */
	assert_int_equal(f[244], 1);
	assert_int_equal(f[245], 8);
	assert_int_equal(rd64(f + 248), ACPI_SLEEP_CTL_PORT);
	assert_int_equal(f[256], 1);
	assert_int_equal(rd64(f + 260), ACPI_SLEEP_STS_PORT);
	/* The DSDT. */
	assert_int_equal(t.dsdt[8], 2);
	guest_mem__exit(&t.mem);
}

static void check_madt(unsigned int n)
{
	struct acpi_config cfg = {.nr_cpus = n};
	unsigned int lapics = 0, ioapics = 0, isos = 0;
	struct tables t;
	const uint8_t *m, *e, *end;

	build(&t, &cfg);
	m = t.madt;
	assert_int_equal(m[8], 5);
	assert_int_equal(rd32(m + 36), LAPIC_ADDR);
	assert_int_equal(rd32(m + 40) & 1, 1); /* PCAT_COMPAT */
	end = m + rd32(m + 4);
	for (e = m + 44; e < end; e += e[1]) {
		assert_true(e[1] >= 2 && e + e[1] <= end);
		switch (e[0]) {
		case 0:
			assert_int_equal(e[1], 8);
			assert_int_equal(e[2], lapics); /* UID */
			assert_int_equal(e[3], lapics); /* APIC id */
			assert_int_equal(rd32(e + 4) & 1, 1);
			lapics++;
			break;
		case 1:
			assert_int_equal(e[1], 12);
			assert_int_equal(e[2], IOAPIC_ID);
			assert_int_equal(rd32(e + 4), IOAPIC_ADDR);
			assert_int_equal(rd32(e + 8), 0);
			ioapics++;
			break;
		case 2:
			assert_int_equal(e[1], 10);
			assert_int_equal(e[2], 0);
			assert_int_equal(e[3], 0);
			assert_int_equal(rd32(e + 4), 2);
			isos++;
			break;
		default:
			fail_msg("unexpected MADT entry type %u", e[0]);
		}
	}
	assert_ptr_equal(e, end);
	assert_int_equal(lapics, n);
	assert_int_equal(ioapics, 1);
	assert_int_equal(isos, 1);
	guest_mem__exit(&t.mem);
}

static void test_madt(void **state)
{
	(void)state;
	check_madt(1);
	check_madt(2);
	check_madt(32);
	check_madt(ACPI_MAX_CPUS);
}

static void test_bad_config(void **state)
{
	struct acpi_virtio_mmio v = {.base = VIRTIO_MMIO_BASE, .size = 0x1000, .gsi = 5};
	struct acpi_config cfg = {.nr_cpus = 0};
	static uint8_t buf[128 * 1024];
	size_t used;

	(void)state;
	assert_int_equal(acpi__build_tables(&cfg, buf, sizeof(buf), 0xe0000, &used), -EINVAL);
	cfg.nr_cpus = ACPI_MAX_CPUS + 1;
	assert_int_equal(acpi__build_tables(&cfg, buf, sizeof(buf), 0xe0000, &used), -EINVAL);
	cfg.nr_cpus = 1;
	cfg.nr_virtio_mmio = 1;
	cfg.virtio_mmio = &v;
	assert_int_equal(acpi__build_tables(&cfg, buf, sizeof(buf), 0xe0000, &used), 0);
	v.gsi = IOAPIC_NR_PINS;
	assert_int_equal(acpi__build_tables(&cfg, buf, sizeof(buf), 0xe0000, &used), -EINVAL);
	v.gsi = 5;
	v.base = 0x100000000ULL;
	assert_int_equal(acpi__build_tables(&cfg, buf, sizeof(buf), 0xe0000, &used), -EINVAL);
	v.base = 0xfffff000;
	v.size = 0x2000;
	assert_int_equal(acpi__build_tables(&cfg, buf, sizeof(buf), 0xe0000, &used), -EINVAL);
	v.size = 0x1000;
	cfg.virtio_mmio = NULL;
	assert_int_equal(acpi__build_tables(&cfg, buf, sizeof(buf), 0xe0000, &used), -EINVAL);
	/* Too small an area. */
	cfg.virtio_mmio = &v;
	assert_int_equal(acpi__build_tables(&cfg, buf, 300, 0xe0000, &used), -E2BIG);
	cfg.nr_cpus = ACPI_MAX_CPUS;
	assert_int_equal(acpi__build_tables(&cfg, buf, 2048, 0xe0000, &used), -E2BIG);
}

/* ---- iasl ---- */

static int run(const char *cmd)
{
	int st = system(cmd);

	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool have_iasl(void)
{
	return run("command -v iasl >/dev/null 2>&1") == 0;
}

static void dump(const char *dir, const char *name, const uint8_t *t)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.dat", dir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(t, 1, rd32(t + 4), f), rd32(t + 4));
	assert_int_equal(fclose(f), 0);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *s;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	s = calloc(1, n + 1);
	assert_non_null(s);
	assert_int_equal(fread(s, 1, n, f), (size_t)n);
	fclose(f);
	return s;
}

/* Disassembles one table; fails on a non-zero exit or any error in its output. */
static char *disassemble(const char *dir, const char *name)
{
	char cmd[1024], path[512];
	char *log;
	int rc;

	snprintf(cmd, sizeof(cmd), "cd %s && iasl -d %s.dat >%s.log 2>&1", dir, name, name);
	rc = run(cmd);
	snprintf(path, sizeof(path), "%s/%s.log", dir, name);
	log = slurp(path);
	if (rc != 0 || strstr(log, "Error") || strstr(log, "error"))
		fail_msg("iasl -d %s failed (%d):\n%s", name, rc, log);
	free(log);
	snprintf(path, sizeof(path), "%s/%s.dsl", dir, name);
	return slurp(path);
}

static void test_iasl(void **state)
{
	struct acpi_virtio_mmio v[3];
	struct acpi_config cfg = {.nr_cpus = 4, .nr_virtio_mmio = 3, .virtio_mmio = v};
	/*
	 * Not the RSDP: iasl 20200925 refuses a lone RSDP in a binary file ("does
	 * not contain a valid ACPI table"); build() checks it field by field.
	 */
	static const char *const names[] = {"xsdt", "facp", "apic", "dsdt"};
	char dir[] = "/tmp/godwit-acpi-XXXXXX", cmd[600];
	struct tables t;
	char *dsl;
	unsigned int i;

	(void)state;
	if (!have_iasl()) {
		print_message("iasl not installed (Debian acpica-tools): skipping disassembly\n");
		skip();
	}
	for (i = 0; i < 3; i++)
		v[i] = (struct acpi_virtio_mmio){VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_SIZE,
						 VIRTIO_MMIO_SIZE, VIRTIO_MMIO_GSI_BASE + i};
	build(&t, &cfg);
	assert_non_null(mkdtemp(dir));
	dump(dir, "xsdt", t.xsdt);
	dump(dir, "facp", t.fadt);
	dump(dir, "apic", t.madt);
	dump(dir, "dsdt", t.dsdt);
	for (i = 0; i < ARRAY_SIZE(names); i++) {
		dsl = disassemble(dir, names[i]);
		if (!strcmp(names[i], "dsdt")) {
			assert_non_null(strstr(dsl, "PNP0501"));
			assert_non_null(strstr(dsl, "Device (COM1)"));
			assert_non_null(strstr(dsl, "Device (VR00)"));
			assert_non_null(strstr(dsl, "Device (VR02)"));
			assert_non_null(strstr(dsl, "LNRO0005"));
			assert_non_null(strstr(dsl, "0xD0002000"));
			assert_non_null(strstr(dsl, "_S5"));
			assert_non_null(strstr(dsl, "0x03F8"));
		} else if (!strcmp(names[i], "facp")) {
			assert_non_null(strstr(dsl, "Hardware Reduced (V5) : 1"));
		}
		free(dsl);
	}
	guest_mem__exit(&t.mem);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	run(cmd);
}

/* Without devices, the DSDT still has COM1 and no virtio device. */
static void test_iasl_no_virtio(void **state)
{
	struct acpi_config cfg = {.nr_cpus = 1};
	char dir[] = "/tmp/godwit-acpi-XXXXXX", cmd[600];
	struct tables t;
	char *dsl;

	(void)state;
	if (!have_iasl()) {
		print_message("iasl not installed (Debian acpica-tools): skipping disassembly\n");
		skip();
	}
	build(&t, &cfg);
	assert_non_null(mkdtemp(dir));
	dump(dir, "dsdt", t.dsdt);
	dsl = disassemble(dir, "dsdt");
	assert_non_null(strstr(dsl, "PNP0501"));
	assert_null(strstr(dsl, "LNRO0005"));
	free(dsl);
	guest_mem__exit(&t.mem);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	run(cmd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fadt),	   cmocka_unit_test(test_madt),
	    cmocka_unit_test(test_bad_config),	   cmocka_unit_test(test_iasl),
	    cmocka_unit_test(test_iasl_no_virtio),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
