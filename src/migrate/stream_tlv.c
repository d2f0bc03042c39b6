// SPDX-License-Identifier: GPL-2.0
/*
 * TLV fields {u16 tag; u16 flags; u32 len; value} for CONFIG and STATE bodies,
 * and STATE section framing. The reader hands out only fields that lie entirely
 * inside its buffer, so device code receives bounded, already-checked values.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/stream.h"

void stream__tlv_writer_init(struct stream_tlv_writer *tw)
{
	memset(tw, 0, sizeof(*tw));
}

void stream__tlv_writer_exit(struct stream_tlv_writer *tw)
{
	free(tw->buf);
	memset(tw, 0, sizeof(*tw));
}

static int tlv_grow(struct stream_tlv_writer *tw, size_t need)
{
	size_t cap = tw->cap ? tw->cap : 256;
	uint8_t *p;

	while (cap < need) {
		if (cap > SIZE_MAX / 2)
			return -ENOMEM;
		cap *= 2;
	}
	p = realloc(tw->buf, cap);
	if (!p)
		return -ENOMEM;
	tw->buf = p;
	tw->cap = cap;
	return 0;
}

int stream__tlv_put_bytes(struct stream_tlv_writer *tw, uint16_t tag, uint16_t flags,
			  const void *val, size_t len)
{
	size_t need;
	uint8_t *p;

	if (tw->err)
		return tw->err;
	if (len > UINT32_MAX || (flags & ~STREAM_TLV_OPTIONAL)) {
		tw->err = -EINVAL;
		return tw->err;
	}
	need = tw->len + STREAM_TLV_HDR_LEN + len;
	if (need > tw->cap && tlv_grow(tw, need)) {
		tw->err = -ENOMEM;
		return tw->err;
	}
	p = tw->buf + tw->len;
	stream_put16(p, tag);
	stream_put16(p + 2, flags);
	stream_put32(p + 4, (uint32_t)len);
	if (len)
		memcpy(p + STREAM_TLV_HDR_LEN, val, len);
	tw->len = need;
	return 0;
}

int stream__tlv_put_u32(struct stream_tlv_writer *tw, uint16_t tag, uint16_t flags, uint32_t v)
{
	uint8_t b[4];

	stream_put32(b, v);
	return stream__tlv_put_bytes(tw, tag, flags, b, sizeof(b));
}

int stream__tlv_put_u64(struct stream_tlv_writer *tw, uint16_t tag, uint16_t flags, uint64_t v)
{
	uint8_t b[8];

	stream_put64(b, v);
	return stream__tlv_put_bytes(tw, tag, flags, b, sizeof(b));
}

int stream__tlv_put_str(struct stream_tlv_writer *tw, uint16_t tag, uint16_t flags, const char *s)
{
	return stream__tlv_put_bytes(tw, tag, flags, s, strlen(s));
}

void stream__tlv_reader_init(struct stream_tlv_reader *tr, const void *buf, size_t len)
{
	tr->p = buf;
	tr->len = len;
	tr->pos = 0;
}

int stream__tlv_next(struct stream_tlv_reader *tr, struct stream_tlv *t)
{
	size_t left = tr->len - tr->pos;
	const uint8_t *h = tr->p + tr->pos;

	if (!left)
		return 0;
	if (left < STREAM_TLV_HDR_LEN)
		return -EBADMSG;
	t->tag = stream_get16(h);
	t->flags = stream_get16(h + 2);
	t->len = stream_get32(h + 4);
	if (t->flags & ~STREAM_TLV_OPTIONAL)
		return -EBADMSG;
	/* compare against what is left, never add to the untrusted length */
	if (t->len > left - STREAM_TLV_HDR_LEN)
		return -EBADMSG;
	t->value = h + STREAM_TLV_HDR_LEN;
	tr->pos += STREAM_TLV_HDR_LEN + t->len;
	return 1;
}

int stream__tlv_u32(const struct stream_tlv *t, uint32_t *v)
{
	if (t->len != 4)
		return -EBADMSG;
	*v = stream_get32(t->value);
	return 0;
}

int stream__tlv_u64(const struct stream_tlv *t, uint64_t *v)
{
	if (t->len != 8)
		return -EBADMSG;
	*v = stream_get64(t->value);
	return 0;
}

/* ---- STATE --------------------------------------------------------------- */

static bool id_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* 1..max chars from [a-z0-9._-]: ids end up in messages and JSON as they are. */
static bool name_ok(const char *s, size_t len, size_t max)
{
	size_t i;

	if (!len || len > max)
		return false;
	for (i = 0; i < len; i++)
		if (!id_char_ok(s[i]))
			return false;
	return true;
}

int stream__write_state(struct stream_writer *w, const char *id, uint32_t instance,
			uint32_t version, const struct stream_tlv_writer *body)
{
	uint8_t h[STREAM_STATE_HDR_LEN] = {0};
	struct iovec iov[2];
	size_t idlen = strnlen(id, STREAM_STATE_ID_LEN);

	if (!name_ok(id, idlen, STREAM_STATE_ID_LEN - 1))
		return -EINVAL;
	if (body && body->err)
		return body->err;
	memcpy(h, id, idlen);
	stream_put32(h + 32, instance);
	stream_put32(h + 36, version);
	iov[0] = (struct iovec){h, sizeof(h)};
	iov[1] = (struct iovec){body ? body->buf : NULL, body ? body->len : 0};
	return stream__write_record(w, STREAM_REC_STATE, STREAM_REC_MANDATORY, iov, 2);
}

int stream__state_parse(const uint8_t *payload, size_t len, struct stream_state_hdr *hdr,
			struct stream_tlv_reader *body, char *err, size_t errlen)
{
	const char *id = (const char *)payload;
	size_t idlen, i;

	if (len < STREAM_STATE_HDR_LEN) {
		snprintf(err, errlen, "STATE shorter than its %d-byte header",
			 STREAM_STATE_HDR_LEN);
		return -EBADMSG;
	}
	idlen = strnlen(id, STREAM_STATE_ID_LEN);
	for (i = idlen; i < STREAM_STATE_ID_LEN; i++)
		if (payload[i]) {
			snprintf(err, errlen, "STATE id not NUL-padded");
			return -EBADMSG;
		}
	if (!name_ok(id, idlen, STREAM_STATE_ID_LEN - 1)) {
		snprintf(err, errlen, "STATE id is empty, unterminated or not [a-z0-9._-]");
		return -EBADMSG;
	}
	memset(hdr, 0, sizeof(*hdr));
	memcpy(hdr->id, id, idlen);
	hdr->instance = stream_get32(payload + 32);
	hdr->version = stream_get32(payload + 36);
	stream__tlv_reader_init(body, payload + STREAM_STATE_HDR_LEN, len - STREAM_STATE_HDR_LEN);
	return 0;
}
