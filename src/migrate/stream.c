// SPDX-License-Identifier: GPL-2.0
/*
 * Stream framing: the header, record framing with XXH3-64 checksums, the order
 * rules, END, ROUND and the control messages. The reader is the destination's
 * first line of defence: it never trusts a length, type or flag before checking
 * it, and it never allocates more than the per-type limit.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "godwit/stream.h"
#include "godwit/xxh3.h"

struct type_info {
	uint32_t type;
	const char *name;
	enum stream_context ctx;
	uint64_t min_len;
	uint64_t max_len;
	uint32_t flags; /* what our writer sets */
};

static const struct type_info type_table[] = {
    {STREAM_REC_CONFIG, "CONFIG", STREAM_CTX_DATA, 0, STREAM_CONFIG_MAX_LEN, STREAM_REC_MANDATORY},
    {STREAM_REC_RAM, "RAM", STREAM_CTX_DATA, STREAM_RAM_HDR_LEN + STREAM_RAM_RUN_LEN,
     STREAM_RAM_MAX_LEN, STREAM_REC_MANDATORY},
    {STREAM_REC_ROUND, "ROUND", STREAM_CTX_DATA, STREAM_ROUND_LEN, STREAM_ROUND_LEN, 0},
    {STREAM_REC_STATE, "STATE", STREAM_CTX_DATA, STREAM_STATE_HDR_LEN, STREAM_STATE_MAX_LEN,
     STREAM_REC_MANDATORY},
    {STREAM_REC_VERIFY, "VERIFY", STREAM_CTX_DATA, 16, STREAM_VERIFY_MAX_LEN, 0},
    {STREAM_REC_END, "END", STREAM_CTX_DATA, STREAM_END_LEN, STREAM_END_LEN, STREAM_REC_MANDATORY},
    {STREAM_REC_RAM_LZ4, "RAM_LZ4", STREAM_CTX_DATA,
     STREAM_RAM_HDR_LEN + STREAM_RAM_RUN_LEN + STREAM_RAM_LZ4_HDR_LEN + 1, STREAM_RAM_LZ4_MAX_LEN,
     STREAM_REC_MANDATORY},
    {STREAM_REC_RAM_ZSTD, "RAM_ZSTD", STREAM_CTX_DATA,
     STREAM_RAM_HDR_LEN + STREAM_RAM_RUN_LEN + STREAM_RAM_LZ4_HDR_LEN + 1, STREAM_RAM_LZ4_MAX_LEN,
     STREAM_REC_MANDATORY},
    {STREAM_REC_DISK, "DISK", STREAM_CTX_DATA, STREAM_DISK_HDR_LEN, STREAM_DISK_MAX_LEN,
     STREAM_REC_MANDATORY},
    {STREAM_REC_GO, "GO", STREAM_CTX_CONTROL, 0, 0, STREAM_REC_MANDATORY},
    {STREAM_REC_READY, "READY", STREAM_CTX_CONTROL, 0, 0, STREAM_REC_MANDATORY},
    {STREAM_REC_RESUMED, "RESUMED", STREAM_CTX_CONTROL, 0, 0, STREAM_REC_MANDATORY},
    {STREAM_REC_ERROR, "ERROR", STREAM_CTX_CONTROL, 4, STREAM_ERROR_MAX_LEN, STREAM_REC_MANDATORY},
    {STREAM_REC_ACCEPTED, "ACCEPTED", STREAM_CTX_CONTROL, 0, 8, STREAM_REC_MANDATORY},
    {STREAM_REC_ROUND_ACK, "ROUND_ACK", STREAM_CTX_CONTROL, 4, 4, STREAM_REC_MANDATORY},
    {STREAM_REC_STRIPE, "STRIPE", STREAM_CTX_CONTROL, STREAM_STRIPE_LEN, STREAM_STRIPE_LEN,
     STREAM_REC_MANDATORY},
    {STREAM_REC_JOIN, "JOIN", STREAM_CTX_CONTROL, STREAM_JOIN_LEN, STREAM_JOIN_LEN,
     STREAM_REC_MANDATORY},
    {STREAM_REC_STRIPE_CHUNKED, "STRIPE_CHUNKED", STREAM_CTX_CONTROL, STREAM_STRIPE_CHUNKED_LEN,
     STREAM_STRIPE_CHUNKED_LEN, STREAM_REC_MANDATORY},
};

static const struct type_info *type_lookup(uint32_t type)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(type_table); i++)
		if (type_table[i].type == type)
			return &type_table[i];
	return NULL;
}

const char *stream__type_name(uint32_t type)
{
	const struct type_info *ti = type_lookup(type);

	return ti ? ti->name : "unknown";
}

uint32_t stream__default_flags(uint32_t type)
{
	const struct type_info *ti = type_lookup(type);

	return ti ? ti->flags : STREAM_REC_MANDATORY;
}

/*
 * The order rules, shared by reader and writer. Returns NULL and moves *phase on,
 * or the reason the record may not come here. ti is NULL for an unknown
 * (optional) type.
 */
static const char *order_step(enum stream_phase *phase, uint32_t type, const struct type_info *ti)
{
	if (*phase == STREAM_PHASE_CONTROL)
		return ti && ti->ctx != STREAM_CTX_CONTROL ? "not allowed on the control channel"
							   : NULL;
	if (ti && ti->ctx == STREAM_CTX_CONTROL)
		return "control message not allowed in the migration stream";
	switch (*phase) {
	case STREAM_PHASE_CONFIG:
		if (type != STREAM_REC_CONFIG)
			return "the first record must be CONFIG";
		*phase = STREAM_PHASE_PRECOPY;
		return NULL;
	case STREAM_PHASE_DONE:
		return "record after END";
	default:
		break;
	}
	if (!ti)
		return NULL; /* unknown optional: anywhere between CONFIG and END */
	switch (type) {
	case STREAM_REC_CONFIG:
		return "second CONFIG";
	case STREAM_REC_END:
		*phase = STREAM_PHASE_DONE;
		return NULL;
	case STREAM_REC_VERIFY:
		if (*phase == STREAM_PHASE_VERIFIED)
			return "second VERIFY";
		*phase = STREAM_PHASE_VERIFIED;
		return NULL;
	}
	if (*phase == STREAM_PHASE_VERIFIED)
		return "only END may follow VERIFY";
	if (type == STREAM_REC_STATE) {
		*phase = STREAM_PHASE_FINAL;
		return NULL;
	}
	if (type == STREAM_REC_ROUND && *phase == STREAM_PHASE_FINAL)
		return "ROUND after device state (the final phase has no rounds)";
	/* The disks' last writes are in before the VM's state: the guest is paused then. */
	if (type == STREAM_REC_DISK && *phase == STREAM_PHASE_FINAL)
		return "DISK after device state";
	return NULL; /* RAM in either phase, ROUND and DISK in pre-copy */
}

static uint64_t chain(uint64_t running, uint64_t checksum)
{
	uint8_t le[8];

	stream_put64(le, checksum);
	return XXH3_64bits_withSeed(le, sizeof(le), running);
}

static void encode_rec_hdr(uint8_t *hdr, uint32_t type, uint32_t flags, uint64_t length)
{
	stream_put32(hdr, type);
	stream_put32(hdr + 4, flags);
	stream_put64(hdr + 8, length);
}

/* ---- reader ------------------------------------------------------------ */

int stream__reader_init(struct stream_reader *r, struct stream_io *io, enum stream_context ctx)
{
	memset(r, 0, sizeof(*r));
	r->io = io;
	r->ctx = ctx;
	r->phase = ctx == STREAM_CTX_CONTROL ? STREAM_PHASE_CONTROL : STREAM_PHASE_CONFIG;
	r->xxh = XXH3_createState();
	if (!r->xxh)
		return -ENOMEM;
	return 0;
}

void stream__reader_exit(struct stream_reader *r)
{
	XXH3_freeState(r->xxh);
	free(r->buf);
	r->xxh = NULL;
	r->buf = NULL;
	r->buf_cap = 0;
}

static int __attribute__((format(printf, 3, 4)))
hdr_fail(struct stream_reader *r, int err, const char *fmt, ...)
{
	int n = snprintf(r->err, sizeof(r->err), "header at offset 0: ");
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->err + n, sizeof(r->err) - (size_t)n, fmt, ap);
	va_end(ap);
	return err;
}

static int check_version(struct stream_reader *r, const uint8_t *h)
{
	uint16_t major = stream_get16(h + 8), minor = stream_get16(h + 10);

	r->hdr.major = major;
	r->hdr.minor = minor;
	if (major > STREAM_VERSION_MAJOR)
		return hdr_fail(r, -EPROTO, "stream format %u.x is newer than this godwit (%u.x)",
				major, STREAM_VERSION_MAJOR);
	if (major < STREAM_VERSION_MAJOR)
		return hdr_fail(r, -EPROTO,
				"stream format %u.%u is too old (this godwit reads %u.x)", major,
				minor, STREAM_VERSION_MAJOR);
	return 0;
}

/* The magic and version come first: they must never move, so a future major
 * version may change everything after them and still be told apart. */
int stream__read_header(struct stream_reader *r, struct stream_header *hdr)
{
	uint8_t h[STREAM_HEADER_LEN];
	int ret;

	if (r->ctx != STREAM_CTX_DATA || r->have_header)
		return hdr_fail(r, -EPROTO, "header not expected here");
	ret = stream_io__read_full(r->io, h, sizeof(h));
	if (ret)
		return hdr_fail(r, -EIO, "%s",
				ret == -ENODATA ? "truncated (stream shorter than the header)"
						: strerror(-ret));
	if (memcmp(h, STREAM_MAGIC, STREAM_MAGIC_LEN))
		return hdr_fail(r, -EPROTO, "bad magic: not a godwit migration stream");
	ret = check_version(r, h);
	if (ret)
		return ret;
	if (XXH3_64bits(h, 24) != stream_get64(h + 24))
		return hdr_fail(r, -EBADMSG, "checksum mismatch");
	r->hdr.page_size = stream_get32(h + 12);
	r->hdr.arch = stream_get32(h + 16);
	r->hdr.flags = stream_get32(h + 20);
	if (r->hdr.page_size != STREAM_PAGE_SIZE)
		return hdr_fail(r, -EPROTO, "page size %u, this godwit needs %u", r->hdr.page_size,
				STREAM_PAGE_SIZE);
	if (r->hdr.arch != STREAM_ARCH_X86_64)
		return hdr_fail(r, -EPROTO, "architecture %u, this godwit runs x86_64 (%u)",
				r->hdr.arch, STREAM_ARCH_X86_64);
	if (r->hdr.flags)
		return hdr_fail(r, -EPROTO, "unknown header flags 0x%x", r->hdr.flags);
	r->have_header = true;
	if (hdr)
		*hdr = r->hdr;
	return 0;
}

static int __attribute__((format(printf, 4, 5)))
rec_fail(struct stream_reader *r, const struct stream_record *rec, int err, const char *fmt, ...)
{
	char name[24];
	va_list ap;
	int n;

	/* type 0 also stands for "header not read yet" */
	if (type_lookup(rec->type))
		snprintf(name, sizeof(name), " (%s)", stream__type_name(rec->type));
	else if (rec->type)
		snprintf(name, sizeof(name), " (type 0x%x)", rec->type);
	else
		name[0] = '\0';
	n = snprintf(r->err, sizeof(r->err),
		     "record %llu%s at offset %llu: ", (unsigned long long)rec->index, name,
		     (unsigned long long)rec->offset);
	va_start(ap, fmt);
	vsnprintf(r->err + n, sizeof(r->err) - (size_t)n, fmt, ap);
	va_end(ap);
	return err;
}

static int read_rec_hdr(struct stream_reader *r, struct stream_record *rec)
{
	uint8_t h[STREAM_RECORD_HDR_LEN];
	uint64_t before = r->io->bytes_read;
	int ret;

	memset(rec, 0, sizeof(*rec));
	rec->index = r->nr_records;
	rec->offset = before;
	rec->type = STREAM_REC_INVALID;
	ret = stream_io__read_full(r->io, h, sizeof(h));
	if (ret == -ENODATA && r->io->bytes_read == before)
		return rec_fail(r, rec, -EIO, "%s",
				r->ctx == STREAM_CTX_DATA ? "end of stream before END"
							  : "end of stream");
	if (ret == -ENODATA)
		return rec_fail(r, rec, -EIO, "truncated record header");
	if (ret)
		return rec_fail(r, rec, -EIO, "read: %s", strerror(-ret));
	rec->type = stream_get32(h);
	rec->flags = stream_get32(h + 4);
	rec->length = stream_get64(h + 8);
	rec->checksum = stream_get64(h + 16);
	return 0;
}

/* Everything that can be decided from the 24-byte header, before any payload. */
static int check_rec_hdr(struct stream_reader *r, const struct stream_record *rec,
			 const struct type_info *ti, enum stream_phase *phase)
{
	uint64_t max = ti ? ti->max_len : STREAM_UNKNOWN_MAX_LEN;
	const char *why;

	if (rec->flags & ~STREAM_REC_FLAGS_KNOWN)
		return rec_fail(r, rec, -EPROTO, "unknown flags 0x%x", rec->flags);
	if (rec->type == STREAM_REC_INVALID)
		return rec_fail(r, rec, -EPROTO, "invalid record type 0");
	if (!ti && (rec->flags & STREAM_REC_MANDATORY))
		return rec_fail(r, rec, -EPROTO, "unknown mandatory record type");
	if (r->ctx == STREAM_CTX_DATA && !r->have_header)
		return rec_fail(r, rec, -EPROTO, "record before the stream header");
	why = order_step(phase, rec->type, ti);
	if (why)
		return rec_fail(r, rec, -EPROTO, "out of order: %s", why);
	if (rec->length > max)
		return rec_fail(r, rec, -E2BIG, "length %llu exceeds the limit %llu",
				(unsigned long long)rec->length, (unsigned long long)max);
	if (ti && rec->length < ti->min_len)
		return rec_fail(r, rec, -EBADMSG, "length %llu is below the minimum %llu",
				(unsigned long long)rec->length, (unsigned long long)ti->min_len);
	return 0;
}

static int reserve(struct stream_reader *r, size_t len)
{
	uint8_t *p;

	if (len <= r->buf_cap)
		return 0;
	p = realloc(r->buf, len);
	if (!p)
		return -ENOMEM;
	r->buf = p;
	r->buf_cap = len;
	return 0;
}

static int read_payload(struct stream_reader *r, struct stream_record *rec)
{
	uint64_t start = r->io->bytes_read;
	uint8_t h[16];
	int ret;

	/* +1 so that an empty payload still has a valid, non-NULL pointer */
	if (reserve(r, rec->length + 1))
		return rec_fail(r, rec, -ENOMEM, "out of memory for %llu bytes",
				(unsigned long long)rec->length);
	ret = stream_io__read_full(r->io, r->buf, rec->length);
	if (ret == -ENODATA)
		return rec_fail(r, rec, -EIO, "truncated payload (%llu of %llu bytes)",
				(unsigned long long)(r->io->bytes_read - start),
				(unsigned long long)rec->length);
	if (ret)
		return rec_fail(r, rec, -EIO, "read: %s", strerror(-ret));
	encode_rec_hdr(h, rec->type, rec->flags, rec->length);
	util__xxh3_reset(r->xxh);
	util__xxh3_update(r->xxh, h, sizeof(h));
	util__xxh3_update(r->xxh, r->buf, rec->length);
	if (util__xxh3_digest(r->xxh) != rec->checksum)
		return rec_fail(r, rec, -EBADMSG, "checksum mismatch");
	rec->payload = r->buf;
	return 0;
}

static int check_end(struct stream_reader *r, const struct stream_record *rec)
{
	uint64_t count = stream_get64(rec->payload);
	uint64_t sum = stream_get64(rec->payload + 8);

	if (count != r->nr_records)
		return rec_fail(r, rec, -EBADMSG, "END counts %llu records, %llu were read",
				(unsigned long long)count, (unsigned long long)r->nr_records);
	if (sum != r->running)
		return rec_fail(r, rec, -EBADMSG,
				"END chained checksum 0x%016llx, computed 0x%016llx",
				(unsigned long long)sum, (unsigned long long)r->running);
	return 0;
}

/* After a record's payload: the order and the chain move on. */
static void accept_record(struct stream_reader *r, const struct stream_record *rec,
			  enum stream_phase phase)
{
	r->phase = phase;
	r->nr_records++;
	r->running = chain(r->running, rec->checksum);
}

/* The payload of rec is left to the caller (stream__read_part); its hash starts here. */
static int open_payload(struct stream_reader *r, const struct stream_record *rec,
			enum stream_phase phase)
{
	uint8_t h[16];

	encode_rec_hdr(h, rec->type, rec->flags, rec->length);
	util__xxh3_reset(r->xxh);
	util__xxh3_update(r->xxh, h, sizeof(h));
	r->open = true;
	r->open_next = phase;
	r->open_left = rec->length;
	r->open_start = r->io->bytes_read;
	return 1;
}

/*
 * The peer's ERROR in the data stream: it gave up mid-stream (the source's abort, on
 * the one connection) and says why. The reason, not "out of order", is the error.
 */
static int peer_error(struct stream_reader *r, struct stream_record *rec)
{
	char msg[STREAM_ERROR_MSG_MAX + 1];
	uint32_t code;
	int ret;

	if (rec->length > STREAM_ERROR_MAX_LEN)
		return rec_fail(r, rec, -E2BIG, "length %llu exceeds the limit %u",
				(unsigned long long)rec->length, STREAM_ERROR_MAX_LEN);
	ret = read_payload(r, rec);
	if (ret)
		return ret;
	if (stream__error_decode(rec->payload, rec->length, &code, msg))
		return rec_fail(r, rec, -EBADMSG, "an unreadable ERROR");
	snprintf(r->err, sizeof(r->err), "the sender stopped: %.200s", msg);
	return -ECANCELED;
}

/*
 * One record off the wire; *known tells whether the caller must see it. A record of
 * type open_type is opened (1), not read.
 */
static int read_one(struct stream_reader *r, struct stream_record *rec, bool *known,
		    uint32_t open_type)
{
	enum stream_phase phase = r->phase;
	const struct type_info *ti;
	int ret;

	ret = read_rec_hdr(r, rec);
	if (ret)
		return ret;
	if (r->ctx == STREAM_CTX_DATA && r->have_header && rec->type == STREAM_REC_ERROR &&
	    r->phase != STREAM_PHASE_DONE)
		return peer_error(r, rec);
	ti = type_lookup(rec->type);
	ret = check_rec_hdr(r, rec, ti, &phase);
	if (ret)
		return ret;
	*known = ti != NULL;
	if (ti && rec->type == open_type)
		return open_payload(r, rec, phase);
	ret = read_payload(r, rec);
	if (ret)
		return ret;
	if (rec->type == STREAM_REC_END) {
		ret = check_end(r, rec);
		if (ret)
			return ret;
	}
	accept_record(r, rec, phase);
	return 0;
}

int stream__read_record_open(struct stream_reader *r, struct stream_record *rec, uint32_t type)
{
	bool known = false;
	int ret;

	if (r->open || r->phase == STREAM_PHASE_DONE) {
		snprintf(r->err, sizeof(r->err), "%s",
			 r->open ? "a record is still open" : "read past END");
		return -EPROTO;
	}
	do {
		ret = read_one(r, rec, &known, type);
		if (ret < 0)
			return ret;
		if (!known)
			r->nr_skipped++;
	} while (!known);
	return ret;
}

int stream__read_record(struct stream_reader *r, struct stream_record *rec)
{
	/* STREAM_REC_INVALID never gets past check_rec_hdr: nothing is opened. */
	return stream__read_record_open(r, rec, STREAM_REC_INVALID);
}

int stream__read_part(struct stream_reader *r, const struct stream_record *rec, void *dst,
		      size_t len)
{
	int ret;

	if (!r->open || len > r->open_left)
		return rec_fail(r, rec, -EBADMSG, "payload read past its %llu bytes",
				(unsigned long long)rec->length);
	ret = stream_io__read_full(r->io, dst, len);
	if (ret == -ENODATA)
		return rec_fail(r, rec, -EIO, "truncated payload (%llu of %llu bytes)",
				(unsigned long long)(r->io->bytes_read - r->open_start),
				(unsigned long long)rec->length);
	if (ret)
		return rec_fail(r, rec, -EIO, "read: %s", strerror(-ret));
	util__xxh3_update(r->xxh, dst, len);
	r->open_left -= len;
	return 0;
}

int stream__read_close(struct stream_reader *r, const struct stream_record *rec)
{
	if (!r->open || r->open_left)
		return rec_fail(r, rec, -EBADMSG, "%llu payload bytes left unread",
				(unsigned long long)r->open_left);
	r->open = false;
	if (util__xxh3_digest(r->xxh) != rec->checksum)
		return rec_fail(r, rec, -EBADMSG, "checksum mismatch");
	accept_record(r, rec, r->open_next);
	return 0;
}

uint8_t *stream__reader_swap_buf(struct stream_reader *r, uint8_t *buf, size_t cap,
				 size_t *old_cap)
{
	uint8_t *old = r->buf;

	*old_cap = r->buf_cap;
	r->buf = buf;
	r->buf_cap = cap;
	return old;
}

/* ---- writer ------------------------------------------------------------ */

int stream__writer_init(struct stream_writer *w, struct stream_io *io, enum stream_context ctx)
{
	memset(w, 0, sizeof(*w));
	w->io = io;
	w->ctx = ctx;
	w->phase = ctx == STREAM_CTX_CONTROL ? STREAM_PHASE_CONTROL : STREAM_PHASE_CONFIG;
	w->xxh = XXH3_createState();
	if (!w->xxh)
		return -ENOMEM;
	return 0;
}

void stream__writer_exit(struct stream_writer *w)
{
	XXH3_freeState(w->xxh);
	w->xxh = NULL;
}

int stream__write_header(struct stream_writer *w)
{
	uint8_t h[STREAM_HEADER_LEN] = {0};
	struct iovec iov = {h, sizeof(h)};
	int ret;

	if (w->ctx != STREAM_CTX_DATA || w->have_header) {
		snprintf(w->err, sizeof(w->err), "header not allowed here");
		return -EPROTO;
	}
	memcpy(h, STREAM_MAGIC, STREAM_MAGIC_LEN);
	stream_put16(h + 8, STREAM_VERSION_MAJOR);
	stream_put16(h + 10, STREAM_VERSION_MINOR);
	stream_put32(h + 12, STREAM_PAGE_SIZE);
	stream_put32(h + 16, STREAM_ARCH_X86_64);
	stream_put32(h + 20, 0);
	stream_put64(h + 24, XXH3_64bits(h, 24));
	ret = stream_io__writev_full(w->io, &iov, 1);
	if (ret)
		return ret;
	w->have_header = true;
	w->bytes += sizeof(h);
	return 0;
}

static int __attribute__((format(printf, 4, 5)))
wr_fail(struct stream_writer *w, uint32_t type, int err, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(w->err, sizeof(w->err),
		     "writing record %llu (%s): ", (unsigned long long)w->nr_records,
		     stream__type_name(type));
	va_start(ap, fmt);
	vsnprintf(w->err + n, sizeof(w->err) - (size_t)n, fmt, ap);
	va_end(ap);
	return err;
}

static int wr_check(struct stream_writer *w, uint32_t type, uint32_t flags, uint64_t len,
		    enum stream_phase *phase)
{
	const struct type_info *ti = type_lookup(type);
	uint64_t max = ti ? ti->max_len : STREAM_UNKNOWN_MAX_LEN;
	const char *why;

	if (flags & ~STREAM_REC_FLAGS_KNOWN)
		return wr_fail(w, type, -EINVAL, "unknown flags 0x%x", flags);
	if (type == STREAM_REC_INVALID)
		return wr_fail(w, type, -EINVAL, "type 0");
	if (w->ctx == STREAM_CTX_DATA && !w->have_header)
		return wr_fail(w, type, -EPROTO, "no header written");
	why = order_step(phase, type, ti);
	if (why)
		return wr_fail(w, type, -EPROTO, "out of order: %s", why);
	if (len > max || (ti && len < ti->min_len))
		return wr_fail(w, type, -E2BIG, "length %llu outside [%llu, %llu]",
			       (unsigned long long)len, (unsigned long long)(ti ? ti->min_len : 0),
			       (unsigned long long)max);
	return 0;
}

/* Header, then the caller's iovecs, in one writev batch. */
static int wr_frame(struct stream_writer *w, uint8_t *hdr, const struct iovec *iov, int iovcnt)
{
	struct iovec small[16], *all = small;
	int ret;

	if (iovcnt + 1 > (int)ARRAY_SIZE(small)) {
		all = calloc((size_t)iovcnt + 1, sizeof(*all));
		if (!all)
			return -ENOMEM;
	}
	all[0].iov_base = hdr;
	all[0].iov_len = STREAM_RECORD_HDR_LEN;
	if (iovcnt)
		memcpy(all + 1, iov, (size_t)iovcnt * sizeof(*iov));
	ret = stream_io__writev_full(w->io, all, iovcnt + 1);
	if (all != small)
		free(all);
	return ret;
}

int stream__write_record(struct stream_writer *w, uint32_t type, uint32_t flags,
			 const struct iovec *iov, int iovcnt)
{
	enum stream_phase phase = w->phase;
	uint8_t hdr[STREAM_RECORD_HDR_LEN];
	uint64_t len = 0, sum;
	int i, ret;

	if (iovcnt < 0 || (iovcnt && !iov))
		return wr_fail(w, type, -EINVAL, "bad iovec");
	for (i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	ret = wr_check(w, type, flags, len, &phase);
	if (ret)
		return ret;
	encode_rec_hdr(hdr, type, flags, len);
	util__xxh3_reset(w->xxh);
	util__xxh3_update(w->xxh, hdr, 16);
	for (i = 0; i < iovcnt; i++)
		util__xxh3_update(w->xxh, iov[i].iov_base, iov[i].iov_len);
	sum = util__xxh3_digest(w->xxh);
	stream_put64(hdr + 16, sum);
	ret = wr_frame(w, hdr, iov, iovcnt);
	if (ret)
		return wr_fail(w, type, ret, "%s", strerror(-ret));
	w->phase = phase;
	w->nr_records++;
	w->running = chain(w->running, sum);
	w->bytes += STREAM_RECORD_HDR_LEN + len;
	return 0;
}

int stream__write_end(struct stream_writer *w)
{
	uint8_t p[STREAM_END_LEN];
	struct iovec iov = {p, sizeof(p)};

	stream_put64(p, w->nr_records);
	stream_put64(p + 8, w->running);
	return stream__write_record(w, STREAM_REC_END, STREAM_REC_MANDATORY, &iov, 1);
}

/* ---- ROUND ------------------------------------------------------------- */

int stream__write_round(struct stream_writer *w, const struct stream_round *rd)
{
	uint8_t p[STREAM_ROUND_LEN];
	struct iovec iov = {p, sizeof(p)};

	stream_put32(p, rd->round);
	stream_put32(p + 4, 0);
	stream_put64(p + 8, rd->pages_sent);
	stream_put64(p + 16, rd->bytes_sent);
	stream_put64(p + 24, rd->dirty_pages);
	stream_put64(p + 32, rd->duration_ns);
	return stream__write_record(w, STREAM_REC_ROUND, stream__default_flags(STREAM_REC_ROUND),
				    &iov, 1);
}

int stream__write_disk(struct stream_writer *w, uint32_t disk, uint32_t kind, uint64_t offset,
		       uint64_t length, const void *data)
{
	uint8_t p[STREAM_DISK_HDR_LEN];
	struct iovec iov[2] = {{p, sizeof(p)}, {(void *)data, data ? length : 0}};

	if (data && (!length || length > STREAM_DISK_MAX_DATA))
		return -EINVAL;
	stream_put32(p, disk);
	stream_put32(p + 4, data ? STREAM_DISK_DATA : kind);
	stream_put64(p + 8, offset);
	stream_put64(p + 16, length);
	return stream__write_record(w, STREAM_REC_DISK, stream__default_flags(STREAM_REC_DISK), iov,
				    data ? 2 : 1);
}

int stream__write_disk_digest(struct stream_writer *w, uint32_t disk, uint64_t size,
			      uint64_t digest)
{
	uint8_t p[STREAM_DISK_HDR_LEN + 8];
	struct iovec iov = {p, sizeof(p)};

	stream_put32(p, disk);
	stream_put32(p + 4, STREAM_DISK_DIGEST);
	stream_put64(p + 8, 0);
	stream_put64(p + 16, size);
	stream_put64(p + 24, digest);
	return stream__write_record(w, STREAM_REC_DISK, stream__default_flags(STREAM_REC_DISK), &iov,
				    1);
}

int stream__disk_decode(const uint8_t *payload, size_t len, struct stream_disk *d, char *why,
			size_t whylen)
{
	if (len < STREAM_DISK_HDR_LEN) {
		snprintf(why, whylen, "DISK of %zu bytes", len);
		return -EBADMSG;
	}
	d->disk = stream_get32(payload);
	d->kind = stream_get32(payload + 4);
	d->offset = stream_get64(payload + 8);
	d->length = stream_get64(payload + 16);
	d->data = payload + STREAM_DISK_HDR_LEN;
	d->digest = 0;
	switch (d->kind) {
	case STREAM_DISK_DATA:
		if (!d->length || d->length > STREAM_DISK_MAX_DATA ||
		    d->length != len - STREAM_DISK_HDR_LEN) {
			snprintf(why, whylen, "DISK data of %llu bytes in a record of %zu",
				 (unsigned long long)d->length, len);
			return -EBADMSG;
		}
		return 0;
	case STREAM_DISK_ZERO:
	case STREAM_DISK_DONE:
		if (len != STREAM_DISK_HDR_LEN || !d->length) {
			snprintf(why, whylen, "DISK %s of %llu bytes in a record of %zu",
				 d->kind == STREAM_DISK_ZERO ? "zero" : "done",
				 (unsigned long long)d->length, len);
			return -EBADMSG;
		}
		d->data = NULL;
		return 0;
	case STREAM_DISK_DIGEST:
		if (len != STREAM_DISK_HDR_LEN + 8 || !d->length) {
			snprintf(why, whylen, "DISK digest in a record of %zu bytes", len);
			return -EBADMSG;
		}
		d->digest = stream_get64(d->data);
		d->data = NULL;
		return 0;
	}
	snprintf(why, whylen, "DISK of unknown kind %u", d->kind);
	return -EBADMSG;
}

int stream__round_decode(const uint8_t *payload, size_t len, struct stream_round *rd)
{
	if (len != STREAM_ROUND_LEN || stream_get32(payload + 4))
		return -EBADMSG;
	rd->round = stream_get32(payload);
	rd->pages_sent = stream_get64(payload + 8);
	rd->bytes_sent = stream_get64(payload + 16);
	rd->dirty_pages = stream_get64(payload + 24);
	rd->duration_ns = stream_get64(payload + 32);
	return 0;
}

/* ---- control ----------------------------------------------------------- */

int stream__write_control(struct stream_writer *w, uint32_t type)
{
	if (type != STREAM_REC_GO && type != STREAM_REC_READY && type != STREAM_REC_RESUMED &&
	    type != STREAM_REC_ACCEPTED)
		return wr_fail(w, type, -EINVAL, "not an empty control message");
	return stream__write_record(w, type, STREAM_REC_MANDATORY, NULL, 0);
}

int stream__write_accepted(struct stream_writer *w, uint32_t features, uint32_t connections)
{
	uint8_t f[8];
	struct iovec iov = { f, connections ? 8 : 4 };

	if (features & ~STREAM_FEATURES_KNOWN)
		return wr_fail(w, STREAM_REC_ACCEPTED, -EINVAL, "unknown features 0x%x", features);
	if (connections > STREAM_MAX_CONNECTIONS)
		return wr_fail(w, STREAM_REC_ACCEPTED, -EINVAL, "%u connections", connections);
	stream_put32(f, features);
	stream_put32(f + 4, connections);
	return stream__write_record(w, STREAM_REC_ACCEPTED, STREAM_REC_MANDATORY, &iov, 1);
}

bool stream__stripe_chunk_valid(uint64_t chunk)
{
	return chunk >= STREAM_STRIPE_CHUNK_MIN && chunk <= STREAM_STRIPE_CHUNK_MAX &&
	       !(chunk & (chunk - 1));
}

/* STRIPE_CHUNKED may say one: the round trip called for fewer than were offered. */
static uint32_t stripe_min(uint32_t type)
{
	return type == STREAM_REC_STRIPE_CHUNKED ? 1 : 2;
}

int stream__write_stripe(struct stream_writer *w, uint32_t n, uint32_t chunk)
{
	uint32_t type = chunk ? STREAM_REC_STRIPE_CHUNKED : STREAM_REC_STRIPE;
	uint8_t p[STREAM_STRIPE_CHUNKED_LEN];
	struct iovec iov = { p, chunk ? STREAM_STRIPE_CHUNKED_LEN : STREAM_STRIPE_LEN };

	if (n < stripe_min(type) || n > STREAM_MAX_CONNECTIONS)
		return wr_fail(w, type, -EINVAL, "%u connections", n);
	if (chunk && !stream__stripe_chunk_valid(chunk))
		return wr_fail(w, type, -EINVAL, "chunks of %u bytes", chunk);
	stream_put32(p, n);
	stream_put32(p + 4, chunk);
	return stream__write_record(w, type, STREAM_REC_MANDATORY, &iov, 1);
}

int stream__stripe_decode(uint32_t type, const uint8_t *payload, size_t len, uint32_t *n,
			  uint32_t *chunk)
{
	if (type == STREAM_REC_STRIPE && len == STREAM_STRIPE_LEN)
		*chunk = STREAM_STRIPE_CHUNK;
	else if (type == STREAM_REC_STRIPE_CHUNKED && len == STREAM_STRIPE_CHUNKED_LEN)
		*chunk = stream_get32(payload + 4);
	else
		return -EBADMSG;
	*n = stream_get32(payload);
	return *n < stripe_min(type) || *n > STREAM_MAX_CONNECTIONS ||
			       !stream__stripe_chunk_valid(*chunk)
		       ? -EBADMSG
		       : 0;
}

int stream__write_join(struct stream_writer *w, const uint8_t *token, uint32_t index)
{
	uint8_t p[STREAM_JOIN_LEN];
	struct iovec iov = { p, sizeof(p) };

	if (!index || index >= STREAM_MAX_CONNECTIONS)
		return wr_fail(w, STREAM_REC_JOIN, -EINVAL, "connection index %u", index);
	memcpy(p, token, STREAM_TOKEN_LEN);
	stream_put32(p + STREAM_TOKEN_LEN, index);
	return stream__write_record(w, STREAM_REC_JOIN, STREAM_REC_MANDATORY, &iov, 1);
}

int stream__join_decode(const uint8_t *payload, size_t len, uint8_t token[STREAM_TOKEN_LEN],
			uint32_t *index)
{
	if (len != STREAM_JOIN_LEN)
		return -EBADMSG;
	memcpy(token, payload, STREAM_TOKEN_LEN);
	*index = stream_get32(payload + STREAM_TOKEN_LEN);
	return !*index || *index >= STREAM_MAX_CONNECTIONS ? -EBADMSG : 0;
}

int stream__write_round_ack(struct stream_writer *w, uint32_t round)
{
	uint8_t r[4];
	struct iovec iov = { r, sizeof(r) };

	stream_put32(r, round);
	return stream__write_record(w, STREAM_REC_ROUND_ACK, STREAM_REC_MANDATORY, &iov, 1);
}

int stream__round_ack_decode(const uint8_t *payload, size_t len, uint32_t *round)
{
	if (len != 4)
		return -EBADMSG;
	*round = stream_get32(payload);
	return 0;
}

int stream__accepted_decode(const uint8_t *payload, size_t len, uint32_t *features,
			    uint32_t *connections)
{
	*features = 0;
	*connections = 1;
	if (!len)
		return 0;
	if (len != 4 && len != 8)
		return -EBADMSG;
	*features = stream_get32(payload);
	if (len == 8)
		*connections = stream_get32(payload + 4);
	return *features & ~STREAM_FEATURES_KNOWN || !*connections ||
			       *connections > STREAM_MAX_CONNECTIONS
		       ? -EBADMSG
		       : 0;
}

int stream__write_error(struct stream_writer *w, uint32_t code, const char *msg)
{
	size_t mlen = strnlen(msg, STREAM_ERROR_MSG_MAX);
	uint8_t c[4];
	struct iovec iov[2] = {{c, sizeof(c)}, {(void *)msg, mlen}};

	stream_put32(c, code);
	return stream__write_record(w, STREAM_REC_ERROR, STREAM_REC_MANDATORY, iov, 2);
}

int stream__error_decode(const uint8_t *payload, size_t len, uint32_t *code,
			 char msg[STREAM_ERROR_MSG_MAX + 1])
{
	size_t mlen;

	if (len < 4 || len > STREAM_ERROR_MAX_LEN)
		return -EBADMSG;
	mlen = len - 4;
	if (memchr(payload + 4, '\0', mlen))
		return -EBADMSG;
	*code = stream_get32(payload);
	memcpy(msg, payload + 4, mlen);
	msg[mlen] = '\0';
	return 0;
}
