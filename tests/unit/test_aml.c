// SPDX-License-Identifier: GPL-2.0
/* The AML writer: encodings checked byte for byte against the ACPI grammar. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "godwit/aml.h"

static void expect_bytes(const struct aml_buf *b, const uint8_t *want, size_t len)
{
	assert_int_equal(b->err, 0);
	assert_int_equal(b->len, len);
	assert_memory_equal(b->data, want, len);
}

static void test_pkglen_boundaries(void **state)
{
	static const struct {
		uint32_t v;
		int n;
		uint8_t enc[4];
	} cases[] = {
	    {0, 1, {0x00}},
	    {63, 1, {0x3f}},
	    {64, 2, {0x40, 0x04}},
	    {4095, 2, {0x4f, 0xff}},
	    {4096, 3, {0x80, 0x00, 0x01}},
	    {1048575, 3, {0x8f, 0xff, 0xff}},
	    {1048576, 4, {0xc0, 0x00, 0x00, 0x01}},
	    {0x0fffffff, 4, {0xcf, 0xff, 0xff, 0xff}},
	};
	uint8_t enc[4];
	unsigned int i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		memset(enc, 0xaa, sizeof(enc));
		assert_int_equal(aml__encode_pkglen(cases[i].v, enc), cases[i].n);
		assert_memory_equal(enc, cases[i].enc, cases[i].n);
	}
	assert_int_equal(aml__encode_pkglen(0x10000000, enc), -E2BIG);
}

/* A Package's PkgLength counts itself: 62 bytes of content still fit one byte, 63 do not. */
static void test_pkglen_counts_itself(void **state)
{
	struct aml_buf b;
	uint8_t filler[4096];
	size_t mark;

	(void)state;
	memset(filler, 0x01, sizeof(filler));

	aml__init(&b, 1 << 20);
	aml__scope_begin(&b, "\\", &mark); /* 2 bytes of name after the mark */
	aml__bytes(&b, filler, 60);
	assert_int_equal(aml__end(&b, mark), 0);
	assert_int_equal(b.len, 1 + 1 + 62);
	assert_int_equal(b.data[1], 63);
	aml__free(&b);

	aml__init(&b, 1 << 20);
	aml__scope_begin(&b, "\\", &mark);
	aml__bytes(&b, filler, 61); /* content 63: 63 + 2 = 65 */
	assert_int_equal(aml__end(&b, mark), 0);
	assert_int_equal(b.len, 1 + 2 + 63);
	assert_int_equal(b.data[1], 0x41);
	assert_int_equal(b.data[2], 0x04);
	assert_int_equal(b.data[3], 0x5c); /* content moved behind the PkgLength */
	aml__free(&b);

	/* Content 4094: 4094 + 2 = 4096 does not fit 2 bytes, so 4094 + 3 = 4097. */
	aml__init(&b, 1 << 20);
	aml__scope_begin(&b, "\\", &mark);
	aml__bytes(&b, filler, 4092);
	assert_int_equal(aml__end(&b, mark), 0);
	assert_int_equal(b.len, 1 + 3 + 4094);
	assert_int_equal(b.data[1], 0x81);
	assert_int_equal(b.data[2], 0x00);
	assert_int_equal(b.data[3], 0x01);
	aml__free(&b);
}

static void test_integers(void **state)
{
	static const uint8_t want[] = {
	    0x00,						  /* Zero */
	    0x01,						  /* One */
	    0x0a, 0x02,						  /* BytePrefix */
	    0x0a, 0xff,						  /* */
	    0x0b, 0x00, 0x01,					  /* WordPrefix 0x100 */
	    0x0b, 0xff, 0xff,					  /* */
	    0x0c, 0x00, 0x00, 0x01, 0x00,			  /* DWordPrefix 0x10000 */
	    0x0c, 0xff, 0xff, 0xff, 0xff,			  /* */
	    0x0e, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, /* QWord 1 << 32 */
	};
	struct aml_buf b;

	(void)state;
	aml__init(&b, 4096);
	aml__integer(&b, 0);
	aml__integer(&b, 1);
	aml__integer(&b, 2);
	aml__integer(&b, 0xff);
	aml__integer(&b, 0x100);
	aml__integer(&b, 0xffff);
	aml__integer(&b, 0x10000);
	aml__integer(&b, 0xffffffff);
	aml__integer(&b, 1ULL << 32);
	expect_bytes(&b, want, sizeof(want));
	aml__free(&b);
}

static void test_name_paths(void **state)
{
	static const uint8_t want[] = {
	    '_',  'H',	'I', 'D',				/* single segment */
	    0x5c, '_',	'S', 'B', '_',				/* \_SB */
	    0x5c, 0x2e, '_', 'S', 'B', '_', 'C', 'O', 'M', '1', /* \_SB.COM1 dual */
	    0x2f, 0x03, 'A', '_', '_', '_', 'B', 'C', '_', '_', 'D', 'E', 'F', 'G', /* multi */
	    0x5e, 0x5e, 'X', '_', '_', '_',					    /* ^^X */
	    0x5c, 0x00,								    /* \ alone */
	};
	static const char *const bad[] = {"abcd", "ABCDE", "1ABC", "A..B",
					  "A.",	  "\\A-B", ".A",   "A B"};
	struct aml_buf b;
	unsigned int i;

	(void)state;
	aml__init(&b, 4096);
	aml__name_string(&b, "_HID");
	aml__name_string(&b, "\\_SB");
	aml__name_string(&b, "\\_SB.COM1");
	aml__name_string(&b, "A.BC.DEFG");
	aml__name_string(&b, "^^X");
	aml__name_string(&b, "\\");
	expect_bytes(&b, want, sizeof(want));
	aml__free(&b);

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		aml__init(&b, 4096);
		assert_int_equal(aml__name_string(&b, bad[i]), -EINVAL);
		assert_int_equal(aml__error(&b), -EINVAL);
		/* Sticky: nothing more gets written. */
		assert_int_equal(aml__integer(&b, 5), -EINVAL);
		aml__free(&b);
	}
}

static void test_eisaid(void **state)
{
	uint32_t v;

	(void)state;
	assert_int_equal(aml__eisaid("PNP0501", &v), 0);
	assert_int_equal(v, 0x0105D041);
	assert_int_equal(aml__eisaid("PNP0A03", &v), 0);
	assert_int_equal(v, 0x030AD041);
	assert_int_equal(aml__eisaid("PNP050", &v), -EINVAL);
	assert_int_equal(aml__eisaid("pnp0501", &v), -EINVAL);
	assert_int_equal(aml__eisaid("PNP05G1", &v), -EINVAL);
}

static void test_string_and_name(void **state)
{
	static const uint8_t want[] = {0x08, '_', 'H',	'I',  'D',  0x0d, 'L',	'N', 'R',
				       'O',  '0', '0',	'0',  '5',  0x00, 0x08, '_', 'H',
				       'I',  'D', 0x0c, 0x41, 0xd0, 0x05, 0x01};
	struct aml_buf b;

	(void)state;
	aml__init(&b, 4096);
	aml__name(&b, "_HID");
	aml__string(&b, "LNRO0005");
	aml__name_eisaid(&b, "_HID", "PNP0501");
	expect_bytes(&b, want, sizeof(want));
	assert_int_equal(aml__string(&b, "\xc3\xa9"), -EINVAL);
	aml__free(&b);
}

static void test_device_and_package(void **state)
{
	static const uint8_t want[] = {
	    0x5b, 0x82, 0x10, 'D',  'E',  'V',	'0', /* Device (DEV0), PkgLength 16 */
	    0x08, '_',	'S',  '5',  '_',	     /* Name (_S5, */
	    0x12, 0x05, 0x02, 0x0a, 0x05, 0x00,	     /* Package (2) { 5, 0 }) */
	};
	struct aml_buf b;
	size_t dev, pkg;

	(void)state;
	aml__init(&b, 4096);
	aml__device_begin(&b, "DEV0", &dev);
	aml__name(&b, "_S5");
	aml__package_begin(&b, 2, &pkg);
	aml__integer(&b, 5);
	aml__integer(&b, 0);
	aml__end(&b, pkg);
	assert_int_equal(aml__end(&b, dev), 0);
	expect_bytes(&b, want, sizeof(want));
	aml__free(&b);
}

static void test_resource_template(void **state)
{
	static const uint8_t want_res[] = {
	    0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08, /* IO */
	    0x22, 0x10, 0x00,				    /* IRQNoFlags {4} */
	    0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x10, 0x00, 0x00, /* Mem32Fixed */
	    0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00, /* Interrupt {5} */
	};
	struct aml_buf r, b;
	uint8_t sum = 0;
	size_t i;

	(void)state;
	aml__init(&r, 4096);
	aml__res_io(&r, 0x3f8, 8);
	aml__res_irq(&r, 4);
	aml__res_mem32_fixed(&r, 0xd0000000, 0x1000, true);
	aml__res_ext_irq(&r, 5, true, false, false);
	assert_int_equal(aml__res_end(&r), 0);
	assert_int_equal(r.len, sizeof(want_res) + 2);
	assert_memory_equal(r.data, want_res, sizeof(want_res));
	/* End tag 0x79 and a checksum that zeroes the sum of the template. */
	assert_int_equal(r.data[r.len - 2], 0x79);
	for (i = 0; i < r.len; i++)
		sum += r.data[i];
	assert_int_equal(sum, 0);

	/* Buffer (size) { template }: BufferOp, PkgLength, BytePrefix size, bytes. */
	aml__init(&b, 4096);
	assert_int_equal(aml__buffer(&b, r.data, r.len), 0);
	assert_int_equal(b.data[0], 0x11);
	assert_int_equal(b.data[1], 1 + 2 + r.len);
	assert_int_equal(b.data[2], 0x0a);
	assert_int_equal(b.data[3], r.len);
	assert_memory_equal(b.data + 4, r.data, r.len);
	aml__free(&b);
	aml__free(&r);

	aml__init(&r, 4096);
	assert_int_equal(aml__res_irq(&r, 16), -EINVAL);
	aml__free(&r);
}

static void test_limits(void **state)
{
	uint8_t big[100] = {0};
	struct aml_buf b;

	(void)state;
	aml__init(&b, 64);
	assert_int_equal(aml__bytes(&b, big, 64), 0);
	assert_int_equal(aml__byte(&b, 1), -E2BIG);
	assert_int_equal(aml__error(&b), -E2BIG);
	assert_int_equal(aml__integer(&b, 0), -E2BIG);
	assert_int_equal(b.len, 64);
	aml__free(&b);

	/* Growing past the initial capacity keeps the contents. */
	aml__init(&b, 1 << 20);
	for (unsigned int i = 0; i < 1000; i++)
		aml__integer(&b, 0x1234);
	assert_int_equal(aml__error(&b), 0);
	assert_int_equal(b.len, 3000);
	assert_int_equal(b.data[2997], 0x0b);
	assert_int_equal(b.data[2998], 0x34);
	aml__free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pkglen_boundaries),
	    cmocka_unit_test(test_pkglen_counts_itself),
	    cmocka_unit_test(test_integers),
	    cmocka_unit_test(test_name_paths),
	    cmocka_unit_test(test_eisaid),
	    cmocka_unit_test(test_string_and_name),
	    cmocka_unit_test(test_device_and_package),
	    cmocka_unit_test(test_resource_template),
	    cmocka_unit_test(test_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
