// SPDX-License-Identifier: GPL-2.0
/*
 * ACPI Machine Language writer (ACPI 6.x, 19.3 AML grammar, 6.4 resource data).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/aml.h"

#define AML_ZERO_OP	  0x00
#define AML_ONE_OP	  0x01
#define AML_NAME_OP	  0x08
#define AML_BYTE_PREFIX	  0x0a
#define AML_WORD_PREFIX	  0x0b
#define AML_DWORD_PREFIX  0x0c
#define AML_STRING_PREFIX 0x0d
#define AML_QWORD_PREFIX  0x0e
#define AML_SCOPE_OP	  0x10
#define AML_BUFFER_OP	  0x11
#define AML_PACKAGE_OP	  0x12
#define AML_DUAL_NAME	  0x2e
#define AML_MULTI_NAME	  0x2f
#define AML_EXT_OP	  0x5b
#define AML_DEVICE_OP	  0x82 /* after AML_EXT_OP */
#define AML_ROOT_CHAR	  0x5c
#define AML_PARENT_CHAR	  0x5e

/* Resource descriptor tags. */
#define RES_IRQ_NOFLAGS 0x22 /* small, type 4, length 2 */
#define RES_IO		0x47 /* small, type 8, length 7 */
#define RES_END		0x79 /* small, type 15, length 1 */
#define RES_MEM32_FIXED 0x86 /* large, type 6 */
#define RES_EXT_IRQ	0x89 /* large, type 9 */

#define AML_INITIAL_CAP 256

void aml__init(struct aml_buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void aml__free(struct aml_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

static int fail(struct aml_buf *b, int err)
{
	if (!b->err)
		b->err = err;
	return b->err;
}

/* Makes room for n more bytes. */
static int reserve(struct aml_buf *b, size_t n)
{
	size_t cap;
	uint8_t *p;

	if (b->err)
		return b->err;
	if (n > b->max || b->len > b->max - n)
		return fail(b, -E2BIG);
	if (b->len + n <= b->cap)
		return 0;
	cap = b->cap ? b->cap : AML_INITIAL_CAP;
	while (cap < b->len + n)
		cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
	cap = MIN(cap, b->max);
	p = realloc(b->data, cap);
	if (!p)
		return fail(b, -ENOMEM);
	b->data = p;
	b->cap = cap;
	return 0;
}

int aml__bytes(struct aml_buf *b, const void *p, size_t len)
{
	int ret = reserve(b, len);

	if (ret)
		return ret;
	if (len)
		memcpy(b->data + b->len, p, len);
	b->len += len;
	return 0;
}

int aml__byte(struct aml_buf *b, uint8_t v)
{
	return aml__bytes(b, &v, 1);
}

static int put_le(struct aml_buf *b, uint64_t v, unsigned int n)
{
	uint8_t tmp[8];
	unsigned int i;

	for (i = 0; i < n; i++)
		tmp[i] = v >> (8 * i);
	return aml__bytes(b, tmp, n);
}

int aml__encode_pkglen(uint32_t value, uint8_t out[4])
{
	unsigned int n, i;

	if (value > AML_PKGLEN_MAX)
		return -E2BIG;
	if (value < 0x40) {
		out[0] = value;
		return 1;
	}
	/* Lead byte: count of following bytes in bits 7-6, the low 4 bits in 3-0. */
	n = value < (1U << 12) ? 2 : value < (1U << 20) ? 3 : 4;
	out[0] = ((n - 1) << 6) | (value & 0xf);
	for (i = 1; i < n; i++)
		out[i] = value >> (4 + 8 * (i - 1));
	return n;
}

static bool seg_char_ok(char c, bool first)
{
	return (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
}

/* Parses one segment of up to 4 characters at *p into seg, padding with '_'. */
static int parse_seg(const char **p, char seg[4])
{
	unsigned int n = 0;

	while (**p && **p != '.') {
		if (n == 4 || !seg_char_ok(**p, n == 0))
			return -EINVAL;
		seg[n++] = *(*p)++;
	}
	if (n == 0)
		return -EINVAL;
	while (n < 4)
		seg[n++] = '_';
	if (**p == '.')
		(*p)++;
	return 0;
}

int aml__name_string(struct aml_buf *b, const char *path)
{
	char segs[255][4];
	unsigned int nr = 0;
	const char *p = path;
	int ret;

	if (b->err)
		return b->err;
	if (*p == '\\') {
		ret = aml__byte(b, AML_ROOT_CHAR);
		p++;
	} else {
		for (ret = 0; !ret && *p == '^'; p++)
			ret = aml__byte(b, AML_PARENT_CHAR);
	}
	if (ret)
		return ret;
	while (*p) {
		if (nr == ARRAY_SIZE(segs) || parse_seg(&p, segs[nr]))
			return fail(b, -EINVAL);
		nr++;
		if (!*p && p[-1] == '.')
			return fail(b, -EINVAL); /* trailing dot */
	}
	if (nr == 0)
		return aml__byte(b, 0x00); /* NullName: "\\" alone */
	if (nr == 2)
		aml__byte(b, AML_DUAL_NAME);
	else if (nr > 2) {
		aml__byte(b, AML_MULTI_NAME);
		aml__byte(b, nr);
	}
	return aml__bytes(b, segs, nr * 4);
}

int aml__integer(struct aml_buf *b, uint64_t v)
{
	if (v == 0)
		return aml__byte(b, AML_ZERO_OP);
	if (v == 1)
		return aml__byte(b, AML_ONE_OP);
	if (v <= UINT8_MAX) {
		aml__byte(b, AML_BYTE_PREFIX);
		return put_le(b, v, 1);
	}
	if (v <= UINT16_MAX) {
		aml__byte(b, AML_WORD_PREFIX);
		return put_le(b, v, 2);
	}
	if (v <= UINT32_MAX) {
		aml__byte(b, AML_DWORD_PREFIX);
		return put_le(b, v, 4);
	}
	aml__byte(b, AML_QWORD_PREFIX);
	return put_le(b, v, 8);
}

int aml__string(struct aml_buf *b, const char *s)
{
	size_t i, len = strlen(s);

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] > 0x7f)
			return fail(b, -EINVAL);
	aml__byte(b, AML_STRING_PREFIX);
	return aml__bytes(b, s, len + 1);
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int aml__eisaid(const char *id, uint32_t *out)
{
	uint32_t v = 0;
	unsigned int i;

	if (strlen(id) != 7)
		return -EINVAL;
	/* Three letters of 5 bits each ('A' = 1), then 16 bits of product id... */
	for (i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z')
			return -EINVAL;
		v = (v << 5) | (id[i] - 'A' + 1);
	}
	for (i = 3; i < 7; i++) {
		int d = hex_digit(id[i]);

		if (d < 0)
			return -EINVAL;
		v = (v << 4) | d;
	}
	/* ...stored big-endian, read back as a little-endian DWord. */
	*out = __builtin_bswap32(v);
	return 0;
}

int aml__name(struct aml_buf *b, const char *name)
{
	aml__byte(b, AML_NAME_OP);
	return aml__name_string(b, name);
}

int aml__name_eisaid(struct aml_buf *b, const char *name, const char *id)
{
	uint32_t v;

	if (aml__eisaid(id, &v))
		return fail(b, -EINVAL);
	aml__name(b, name);
	return aml__integer(b, v);
}

int aml__scope_begin(struct aml_buf *b, const char *path, size_t *mark)
{
	aml__byte(b, AML_SCOPE_OP);
	*mark = b->len;
	return aml__name_string(b, path);
}

int aml__device_begin(struct aml_buf *b, const char *name, size_t *mark)
{
	aml__byte(b, AML_EXT_OP);
	aml__byte(b, AML_DEVICE_OP);
	*mark = b->len;
	return aml__name_string(b, name);
}

int aml__package_begin(struct aml_buf *b, uint8_t nr_elements, size_t *mark)
{
	aml__byte(b, AML_PACKAGE_OP);
	*mark = b->len;
	return aml__byte(b, nr_elements);
}

int aml__end(struct aml_buf *b, size_t mark)
{
	uint8_t enc[4];
	size_t content;
	unsigned int n;
	int ret;

	if (b->err)
		return b->err;
	if (mark > b->len)
		return fail(b, -EINVAL);
	content = b->len - mark;
	/* The PkgLength counts its own bytes, so its size depends on itself. */
	for (n = 1; n <= 4; n++) {
		if (content > AML_PKGLEN_MAX - n)
			return fail(b, -E2BIG);
		if (aml__encode_pkglen(content + n, enc) == (int)n)
			break;
	}
	if (n > 4)
		return fail(b, -E2BIG);
	ret = reserve(b, n);
	if (ret)
		return ret;
	memmove(b->data + mark + n, b->data + mark, content);
	memcpy(b->data + mark, enc, n);
	b->len += n;
	return 0;
}

int aml__buffer(struct aml_buf *b, const uint8_t *data, size_t len)
{
	size_t mark;

	aml__byte(b, AML_BUFFER_OP);
	mark = b->len;
	aml__integer(b, len);
	aml__bytes(b, data, len);
	return aml__end(b, mark);
}

int aml__res_io(struct aml_buf *r, uint16_t base, uint8_t len)
{
	uint8_t d[8] = {RES_IO,	   0x01 /* 16-bit decode */, base & 0xff, base >> 8, base & 0xff,
			base >> 8, 0x01 /* alignment */,     len};

	return aml__bytes(r, d, sizeof(d));
}

int aml__res_irq(struct aml_buf *r, unsigned int irq)
{
	uint16_t mask;

	if (irq > 15)
		return fail(r, -EINVAL);
	mask = 1U << irq;
	aml__byte(r, RES_IRQ_NOFLAGS);
	return put_le(r, mask, 2);
}

int aml__res_mem32_fixed(struct aml_buf *r, uint32_t base, uint32_t size, bool writable)
{
	aml__byte(r, RES_MEM32_FIXED);
	put_le(r, 9, 2); /* length of what follows */
	aml__byte(r, writable ? 1 : 0);
	put_le(r, base, 4);
	return put_le(r, size, 4);
}

int aml__res_ext_irq(struct aml_buf *r, uint32_t gsi, bool edge, bool active_low, bool shared)
{
	/* Flags: bit 0 consumer, bit 1 edge, bit 2 active low, bit 3 shared. */
	uint8_t flags = 0x01 | (edge ? 0x02 : 0) | (active_low ? 0x04 : 0) | (shared ? 0x08 : 0);

	aml__byte(r, RES_EXT_IRQ);
	put_le(r, 6, 2); /* flags, count, one DWord */
	aml__byte(r, flags);
	aml__byte(r, 1);
	return put_le(r, gsi, 4);
}

int aml__res_end(struct aml_buf *r)
{
	uint8_t sum = RES_END;
	size_t i;
	int ret;

	ret = reserve(r, 2);
	if (ret)
		return ret;
	for (i = 0; i < r->len; i++)
		sum += r->data[i];
	aml__byte(r, RES_END);
	return aml__byte(r, (uint8_t)-sum);
}
