// SPDX-License-Identifier: GPL-2.0
/* TLV encodings of the STATE sections (docs/migration-format.md, "STATE sections"). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "godwit/vmstate.h"

enum vcpu_tag {
	VCPU_REGS = 1,
	VCPU_SREGS,
	VCPU_FPU,
	VCPU_XSAVE,
	VCPU_XCRS,
	VCPU_LAPIC,
	VCPU_EVENTS,
	VCPU_DEBUGREGS,
	VCPU_MP_STATE,
	VCPU_MSRS,
	VCPU_NR_TAGS,
};

/* A field that is copied as it is: where it lives in the struct and its size. */
struct blob_field {
	uint16_t tag;
	size_t offset;
	size_t size;
};

#define BLOB(tag, type, member) { tag, offsetof(type, member), sizeof(((type *)0)->member) }

static const struct blob_field vcpu_fields[] = {
	BLOB(VCPU_REGS, struct x86_vcpu_state, regs),
	BLOB(VCPU_SREGS, struct x86_vcpu_state, sregs),
	BLOB(VCPU_FPU, struct x86_vcpu_state, fpu),
	BLOB(VCPU_XSAVE, struct x86_vcpu_state, xsave),
	BLOB(VCPU_XCRS, struct x86_vcpu_state, xcrs),
	BLOB(VCPU_LAPIC, struct x86_vcpu_state, lapic),
	BLOB(VCPU_EVENTS, struct x86_vcpu_state, events),
	BLOB(VCPU_DEBUGREGS, struct x86_vcpu_state, debugregs),
	BLOB(VCPU_MP_STATE, struct x86_vcpu_state, mp_state),
};

static int put_blobs(struct stream_tlv_writer *tw, const struct blob_field *f, size_t n,
		     const void *st)
{
	size_t i;

	for (i = 0; i < n; i++)
		stream__tlv_put_bytes(tw, f[i].tag, 0, (const uint8_t *)st + f[i].offset, f[i].size);
	return tw->err;
}

static int finish(struct stream_writer *w, const char *id, uint32_t instance,
		  struct stream_tlv_writer *tw)
{
	int ret = tw->err ? tw->err : stream__write_state(w, id, instance, VMSTATE_VERSION, tw);

	stream__tlv_writer_exit(tw);
	return ret;
}

int vmstate__put_vcpu(struct stream_writer *w, unsigned int id, const struct x86_vcpu_state *st)
{
	struct stream_tlv_writer tw;
	uint8_t msrs[X86_MAX_MSRS * 12];
	uint32_t i;

	stream__tlv_writer_init(&tw);
	put_blobs(&tw, vcpu_fields, ARRAY_SIZE(vcpu_fields), st);
	for (i = 0; i < st->nr_msrs && i < X86_MAX_MSRS; i++) {
		stream_put32(msrs + 12 * i, st->msrs[i].index);
		stream_put64(msrs + 12 * i + 4, st->msrs[i].value);
	}
	stream__tlv_put_bytes(&tw, VCPU_MSRS, 0, msrs, 12 * (size_t)i);
	return finish(w, "vcpu", id, &tw);
}

static const struct blob_field *find_field(const struct blob_field *f, size_t n, uint16_t tag)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (f[i].tag == tag)
			return &f[i];
	return NULL;
}

/*
 * Walks a section's fields: blobs land in st after an exact length check; other
 * tags go to extra(). Every blob must appear exactly once.
 */
static int get_blobs(struct stream_tlv_reader *body, const struct blob_field *f, size_t n,
		     void *st, int (*extra)(const struct stream_tlv *t, void *st), char *err,
		     size_t errlen)
{
	uint32_t seen = 0;
	struct stream_tlv t;
	size_t i;
	int ret;

	while ((ret = stream__tlv_next(body, &t)) == 1) {
		const struct blob_field *b = find_field(f, n, t.tag);

		if (!b) {
			ret = extra ? extra(&t, st) : -ENOENT;
			if (ret == -ENOENT && (t.flags & STREAM_TLV_OPTIONAL))
				continue;
			if (ret) {
				snprintf(err, errlen, "field %u: %s", t.tag,
					 ret == -ENOENT ? "unknown required field" : "bad value");
				return -EBADMSG;
			}
			continue;
		}
		if (t.len != b->size || (seen & (1U << t.tag))) {
			snprintf(err, errlen, "field %u: length %u, expected %zu once", t.tag, t.len,
				 b->size);
			return -EBADMSG;
		}
		seen |= 1U << t.tag;
		memcpy((uint8_t *)st + b->offset, t.value, b->size);
	}
	if (ret < 0) {
		snprintf(err, errlen, "malformed field list");
		return -EBADMSG;
	}
	for (i = 0; i < n; i++) {
		if (!(seen & (1U << f[i].tag))) {
			snprintf(err, errlen, "field %u missing", f[i].tag);
			return -EBADMSG;
		}
	}
	return 0;
}

static int vcpu_msrs(const struct stream_tlv *t, void *opaque)
{
	struct x86_vcpu_state *st = opaque;
	uint32_t i, n;

	if (t->tag != VCPU_MSRS)
		return -ENOENT;
	if (t->len % 12 || t->len / 12 > X86_MAX_MSRS)
		return -EBADMSG;
	n = t->len / 12;
	for (i = 0; i < n; i++) {
		st->msrs[i].index = stream_get32(t->value + 12 * i);
		st->msrs[i].value = stream_get64(t->value + 12 * i + 4);
	}
	st->nr_msrs = n;
	return 0;
}

int vmstate__get_vcpu(struct stream_tlv_reader *body, struct x86_vcpu_state *st, char *err,
		      size_t errlen)
{
	memset(st, 0, sizeof(*st));
	return get_blobs(body, vcpu_fields, ARRAY_SIZE(vcpu_fields), st, vcpu_msrs, err, errlen);
}

/* VM-wide sections: one blob each. */
static const struct {
	const char *id;
	uint32_t instance;
	struct blob_field f;
} vm_sections[] = {
	{ "pic", 0, BLOB(1, struct x86_vm_state, pic_master) },
	{ "pic", 1, BLOB(1, struct x86_vm_state, pic_slave) },
	{ "ioapic", 0, BLOB(1, struct x86_vm_state, ioapic) },
	{ "pit", 0, BLOB(1, struct x86_vm_state, pit) },
	{ "kvmclock", 0, BLOB(1, struct x86_vm_state, clock) },
};

int vmstate__put_vm(struct stream_writer *w, const struct x86_vm_state *st)
{
	struct stream_tlv_writer tw;
	size_t i;
	int ret;

	for (i = 0; i < ARRAY_SIZE(vm_sections); i++) {
		stream__tlv_writer_init(&tw);
		put_blobs(&tw, &vm_sections[i].f, 1, st);
		ret = finish(w, vm_sections[i].id, vm_sections[i].instance, &tw);
		if (ret)
			return ret;
	}
	return 0;
}

int vmstate__get_vm(const char *id, uint32_t instance, struct stream_tlv_reader *body,
		    struct x86_vm_state *st, unsigned int *seen, char *err, size_t errlen)
{
	size_t i;
	int ret;

	for (i = 0; i < ARRAY_SIZE(vm_sections); i++) {
		if (strcmp(id, vm_sections[i].id) || instance != vm_sections[i].instance)
			continue;
		if (*seen & (1U << i)) {
			snprintf(err, errlen, "section %s/%u twice", id, instance);
			return -EBADMSG;
		}
		ret = get_blobs(body, &vm_sections[i].f, 1, st, NULL, err, errlen);
		if (!ret)
			*seen |= 1U << i;
		return ret;
	}
	return -ENOENT;
}

enum serial_tag {
	SERIAL_REGS = 1, /* ier lcr mcr lsr msr scr dll dlm fcr thr_ipending rbr */
	SERIAL_RX = 2,	 /* pending input, oldest first */
};

int vmstate__put_serial(struct stream_writer *w, const struct serial8250_state *st)
{
	uint8_t regs[11] = { st->ier, st->lcr, st->mcr, st->lsr, st->msr, st->scr,
			     st->dll, st->dlm, st->fcr, st->thr_ipending, st->rbr };
	struct stream_tlv_writer tw;

	stream__tlv_writer_init(&tw);
	stream__tlv_put_bytes(&tw, SERIAL_REGS, 0, regs, sizeof(regs));
	stream__tlv_put_bytes(&tw, SERIAL_RX, 0, st->rx, MIN(st->rx_len, sizeof(st->rx)));
	return finish(w, "serial", 0, &tw);
}

int vmstate__get_serial(struct stream_tlv_reader *body, struct serial8250_state *st, char *err,
			size_t errlen)
{
	unsigned int seen = 0;
	struct stream_tlv t;
	int ret;

	memset(st, 0, sizeof(*st));
	while ((ret = stream__tlv_next(body, &t)) == 1) {
		if (t.tag == SERIAL_REGS && t.len == 11 && !(seen & 1)) {
			const uint8_t *r = t.value;

			*st = (struct serial8250_state){ .ier = r[0], .lcr = r[1], .mcr = r[2],
				.lsr = r[3], .msr = r[4], .scr = r[5], .dll = r[6], .dlm = r[7],
				.fcr = r[8], .thr_ipending = r[9], .rbr = r[10] };
			seen |= 1;
		} else if (t.tag == SERIAL_RX && t.len <= sizeof(st->rx) && (seen & 1) &&
			   !(seen & 2)) {
			memcpy(st->rx, t.value, t.len);
			st->rx_len = t.len;
			seen |= 2;
		} else if (!(t.flags & STREAM_TLV_OPTIONAL)) {
			snprintf(err, errlen, "serial: field %u unexpected here", t.tag);
			return -EBADMSG;
		}
	}
	if (ret < 0 || seen != 3) {
		snprintf(err, errlen, "serial: %s", ret < 0 ? "malformed fields" : "fields missing");
		return -EBADMSG;
	}
	return 0;
}

int vmstate__put_blob(struct stream_writer *w, const char *id, uint32_t instance, const void *st,
		      size_t size)
{
	struct stream_tlv_writer tw;

	stream__tlv_writer_init(&tw);
	stream__tlv_put_bytes(&tw, 1, 0, st, size);
	return finish(w, id, instance, &tw);
}

int vmstate__get_blob(struct stream_tlv_reader *body, void *st, size_t size, char *err,
		      size_t errlen)
{
	const struct blob_field f = { 1, 0, size };

	return get_blobs(body, &f, 1, st, NULL, err, errlen);
}
