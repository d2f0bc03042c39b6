/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_AML_H
#define GODWIT_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "godwit/util.h"

/*
 * A small ACPI Machine Language writer, for the subset a DSDT of ours needs:
 * names, scopes, devices, integers, strings, packages, buffers and resource
 * templates (ACPI 6.x, chapters 19.3 and 20).
 *
 * The buffer grows as needed up to a maximum. The first failure (-ENOMEM, -E2BIG,
 * -EINVAL) is remembered: later calls do nothing and return it, so a caller can
 * write a whole table and check once, with aml__error() or the last call.
 *
 * Objects with a PkgLength (Scope, Device, Package) are opened with *_begin(),
 * which returns a mark, and closed with aml__end(mark) once their contents are
 * written: only then is their length known.
 */

struct aml_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t max;
	int err;
};

/* Largest PkgLength value (4-byte encoding: 28 bits). */
#define AML_PKGLEN_MAX 0x0fffffffU

void aml__init(struct aml_buf *b, size_t max);
void aml__free(struct aml_buf *b);
static inline int aml__error(const struct aml_buf *b)
{
	return b->err;
}

int aml__byte(struct aml_buf *b, uint8_t v);
int aml__bytes(struct aml_buf *b, const void *p, size_t len);

/* Encodes a PkgLength value (which counts its own bytes) into out: 1-4 bytes, or -E2BIG. */
int aml__encode_pkglen(uint32_t value, uint8_t out[4]);

/*
 * A NameString: "\\" root prefix, "^" parent prefixes, then segments of 1-4
 * characters ([A-Z_][A-Z0-9_]*, padded with '_') separated by '.'. "\\_SB.COM1".
 */
int aml__name_string(struct aml_buf *b, const char *path);

/* Integers with the shortest encoding: Zero, One, Byte, Word, DWord or QWord. */
int aml__integer(struct aml_buf *b, uint64_t v);
/* A String: ASCII 0x01-0x7f only. */
int aml__string(struct aml_buf *b, const char *s);
/* Compressed EISA id of "PNP0501"-style ids (3 letters, 4 hex digits): 0 or -EINVAL. */
int aml__eisaid(const char *id, uint32_t *out);

/* Name (name, ...): write the object right after. */
int aml__name(struct aml_buf *b, const char *name);
/* Name (name, EisaId (id)). */
int aml__name_eisaid(struct aml_buf *b, const char *name, const char *id);

int aml__scope_begin(struct aml_buf *b, const char *path, size_t *mark);
int aml__device_begin(struct aml_buf *b, const char *name, size_t *mark);
int aml__package_begin(struct aml_buf *b, uint8_t nr_elements, size_t *mark);
/* Closes what *_begin() opened at mark: inserts its PkgLength. */
int aml__end(struct aml_buf *b, size_t mark);

/* Buffer () { data }. */
int aml__buffer(struct aml_buf *b, const uint8_t *data, size_t len);

/*
 * Resource template descriptors, written into their own aml_buf, closed with
 * aml__res_end() and then wrapped with aml__buffer().
 */
/* IO (Decode16, base, base, 1, len). */
int aml__res_io(struct aml_buf *r, uint16_t base, uint8_t len);
/* IRQNoFlags () { irq }: ISA, edge, active high; irq < 16. */
int aml__res_irq(struct aml_buf *r, unsigned int irq);
/* Memory32Fixed (ReadWrite or ReadOnly, base, size). */
int aml__res_mem32_fixed(struct aml_buf *r, uint32_t base, uint32_t size, bool writable);
/* Interrupt (ResourceConsumer, edge/level, high/low, exclusive/shared) { gsi }. */
int aml__res_ext_irq(struct aml_buf *r, uint32_t gsi, bool edge, bool active_low, bool shared);
/* End tag, with the checksum that makes the whole template sum to zero. */
int aml__res_end(struct aml_buf *r);

#endif
