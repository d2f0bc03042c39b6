// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target: arbitrary bytes through the whole destination-side parse,
 * as a data stream (header, records in order, CONFIG decode, RAM applied into a
 * bounded fake RAM, STATE TLV walk, VERIFY, DISK, END) and as a control channel.
 * Anything the parsers hand out is checked here against the CONFIG, so a parser
 * bug that lets a bad range through traps instead of passing silently.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "godwit/migrate.h"
#include "godwit/stream.h"

/* Fake RAM: pages of guest RAM land here modulo its size; bounds are the check. */
#define FAKE_RAM (64 * 1024)

struct target {
	struct stream_config cfg;
	bool have_cfg;
	uint8_t *ram;
	const uint8_t *payload;
	size_t payload_len;
	void *zstd_dctx; /* for RAM_ZSTD records, made on the first */
	char err[256];
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

/* The offset of gpa in RAM as the CONFIG lays it out, or trap if it is not RAM. */
static uint64_t ram_offset(const struct stream_config *cfg, uint64_t gpa, uint64_t len)
{
	uint64_t base = 0;
	unsigned int i;

	for (i = 0; i < cfg->nr_regions; i++) {
		const struct stream_region *rg = &cfg->regions[i];

		if (gpa >= rg->gpa && gpa - rg->gpa <= rg->size &&
		    len <= rg->size - (gpa - rg->gpa))
			return base + gpa - rg->gpa;
		base += rg->size;
	}
	__builtin_trap();
}

static int apply(void *opaque, uint64_t gpa, uint32_t npages, uint32_t kind, const uint8_t *data)
{
	struct target *t = opaque;
	uint64_t len = (uint64_t)npages * STREAM_PAGE_SIZE;
	uint64_t off = ram_offset(&t->cfg, gpa, len), i;

	if (off % STREAM_PAGE_SIZE || !npages)
		__builtin_trap();
	if (kind == STREAM_RAM_ZERO) {
		if (data)
			__builtin_trap();
		memset(t->ram + off % FAKE_RAM, 0, STREAM_PAGE_SIZE);
		return 0;
	}
	/* the data must lie inside the payload: ASan checks each page copy */
	if (data < t->payload || data + len > t->payload + t->payload_len)
		__builtin_trap();
	for (i = 0; i < npages; i++)
		memcpy(t->ram + (off + i * STREAM_PAGE_SIZE) % FAKE_RAM,
		       data + i * STREAM_PAGE_SIZE, STREAM_PAGE_SIZE);
	return 0;
}

static int load_state(struct target *t, const struct stream_record *rec)
{
	struct stream_state_hdr sh;
	struct stream_tlv_reader tr;
	struct stream_tlv tlv;
	uint64_t v64;
	uint32_t v32;
	int ret;

	ret = stream__state_parse(rec->payload, rec->length, &sh, &tr, t->err, sizeof(t->err));
	if (ret)
		return ret;
	if (strlen(sh.id) >= STREAM_STATE_ID_LEN)
		__builtin_trap();
	while ((ret = stream__tlv_next(&tr, &tlv)) > 0) {
		if (tlv.value + tlv.len > rec->payload + rec->length)
			__builtin_trap();
		if (!stream__tlv_u32(&tlv, &v32) || !stream__tlv_u64(&tlv, &v64))
			continue;
	}
	return ret;
}

static int load_verify(struct target *t, const struct stream_record *rec)
{
	uint64_t *dig, gpa;
	size_t n;
	int ret;

	ret = stream__verify_decode(rec->payload, rec->length, &dig, &n, t->err, sizeof(t->err));
	if (ret)
		return ret;
	if (n == stream__digest_count(&t->cfg) && n)
		(void)stream__ram_digest_compare(&t->cfg, dig, n, dig, n, &gpa);
	free(dig);
	return 0;
}

/* A DISK record's range and data as the decoder hands them out. */
static int load_disk(struct target *t, const struct stream_record *rec)
{
	struct stream_disk d;
	int ret;

	ret = stream__disk_decode(rec->payload, rec->length, &d, t->err, sizeof(t->err));
	if (ret)
		return ret;
	if (d.kind == STREAM_DISK_DATA && (!d.data || d.length > STREAM_DISK_MAX_DATA ||
					   d.data + d.length != rec->payload + rec->length))
		__builtin_trap();
	if (d.kind != STREAM_DISK_DATA &&
	    (d.data || rec->length != STREAM_DISK_HDR_LEN + (d.kind == STREAM_DISK_DIGEST ? 8 : 0)))
		__builtin_trap();
	/* ASan checks every byte of the data lies in the payload. */
	if (d.data)
		(void)XXH3_64bits(d.data, d.length);
	return 0;
}

static int load_record(struct target *t, const struct stream_record *rec)
{
	struct stream_round rd;

	t->payload = rec->payload;
	t->payload_len = rec->length;
	switch (rec->type) {
	case STREAM_REC_CONFIG:
		if (t->have_cfg)
			__builtin_trap(); /* the reader must refuse a second CONFIG */
		if (stream__config_decode(rec->payload, rec->length, &t->cfg, t->err,
					  sizeof(t->err)))
			return -1;
		t->have_cfg = true;
		return 0;
	case STREAM_REC_RAM:
		if (!t->have_cfg)
			__builtin_trap();
		return stream__ram_record_parse(&t->cfg, rec->payload, rec->length, apply, t,
						t->err, sizeof(t->err));
	case STREAM_REC_RAM_LZ4:
	case STREAM_REC_RAM_ZSTD: {
		/* The expanded pages: a fresh buffer each time, so ASan sees any overrun. */
		uint8_t *pages = malloc(STREAM_RAM_MAX_DATA_LEN);
		int ret;

		if (!t->have_cfg)
			__builtin_trap();
		if (!pages)
			return -1;
		/* apply() checks the data lies inside what it was expanded into. */
		t->payload = pages;
		t->payload_len = STREAM_RAM_MAX_DATA_LEN;
		ret = stream__ram_packed_parse(&t->cfg, rec->type, rec->payload, rec->length, pages,
					       &t->zstd_dctx, apply, t, t->err, sizeof(t->err));
		free(pages);
		return ret;
	}
	case STREAM_REC_ROUND:
		return stream__round_decode(rec->payload, rec->length, &rd);
	case STREAM_REC_STATE:
		return load_state(t, rec);
	case STREAM_REC_VERIFY:
		return load_verify(t, rec);
	case STREAM_REC_DISK:
		return load_disk(t, rec);
	}
	return 0;
}

static void fuzz_data(const uint8_t *data, size_t size, uint8_t *ram)
{
	struct target *t = calloc(1, sizeof(*t));
	struct stream_reader r;
	struct stream_record rec;
	struct stream_io io;
	bool loader_err = false;
	int ret;

	if (!t)
		return;
	t->ram = ram;
	stream_io__init_mem_reader(&io, data, size);
	if (stream__reader_init(&r, &io, STREAM_CTX_DATA))
		goto out;
	if (stream__read_header(&r, NULL))
		goto out_reader;
	while (!(ret = stream__read_record(&r, &rec))) {
		if (rec.length && rec.payload + rec.length > r.buf + r.buf_cap)
			__builtin_trap();
		loader_err = load_record(t, &rec) != 0;
		if (loader_err || rec.type == STREAM_REC_END)
			break;
	}
	/* every reader error explains itself; success only ever ends at END */
	if (ret && !r.err[0])
		__builtin_trap();
	if (!ret && !loader_err && (rec.type != STREAM_REC_END || r.phase != STREAM_PHASE_DONE))
		__builtin_trap();
out_reader:
	stream__reader_exit(&r);
out:
	stream__config_release(&t->cfg);
	stream__zstd_free(NULL, t->zstd_dctx);
	free(t);
}

/* What a control record's decoder hands out must be inside its documented range. */
static void check_control(const struct stream_record *rec)
{
	char msg[STREAM_ERROR_MSG_MAX + 1];
	uint8_t token[STREAM_TOKEN_LEN];
	uint32_t v, n;

	switch (rec->type) {
	case STREAM_REC_ERROR:
		if (!stream__error_decode(rec->payload, rec->length, &v, msg) &&
		    strlen(msg) > STREAM_ERROR_MSG_MAX)
			__builtin_trap();
		break;
	case STREAM_REC_ACCEPTED:
		if (!stream__accepted_decode(rec->payload, rec->length, &v, &n) &&
		    ((v & ~STREAM_FEATURES_KNOWN) || !n || n > STREAM_MAX_CONNECTIONS))
			__builtin_trap();
		break;
	case STREAM_REC_STRIPE:
	case STREAM_REC_STRIPE_CHUNKED:
		if (!stream__stripe_decode(rec->type, rec->payload, rec->length, &n, &v) &&
		    (n < (rec->type == STREAM_REC_STRIPE ? 2U : 1U) || n > STREAM_MAX_CONNECTIONS ||
		     v < STREAM_STRIPE_CHUNK_MIN ||
		     v > STREAM_STRIPE_CHUNK_MAX || (v & (v - 1))))
			__builtin_trap();
		break;
	case STREAM_REC_JOIN:
		if (!stream__join_decode(rec->payload, rec->length, token, &v) &&
		    (!v || v >= STREAM_MAX_CONNECTIONS))
			__builtin_trap();
		break;
	}
}

static void fuzz_control(const uint8_t *data, size_t size)
{
	int fds[4] = { 3, -1, -1, -1 }, index;
	struct stream_reader r;
	struct stream_record rec;
	struct stream_io io;

	stream_io__init_mem_reader(&io, data, size);
	if (stream__reader_init(&r, &io, STREAM_CTX_CONTROL))
		return;
	while (!stream__read_record(&r, &rec))
		check_control(&rec);
	stream__reader_exit(&r);
	/* The destination's check of what a new connection sent first. */
	index = connections__join_parse(data, size, (const uint8_t *)"0123456789abcdef", 4, fds);
	if (index >= 0 && (index < 1 || index > 3))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *ram = malloc(FAKE_RAM);

	if (!ram)
		return 0;
	fuzz_data(data, size, ram);
	fuzz_control(data, size);
	free(ram);
	return 0;
}

/*
 * Mutations almost always break a checksum, and then the reader (rightly) stops
 * at the first record: the decoders behind it would never be fuzzed. So after
 * libFuzzer's mutation we usually re-seal the header, record and END checksums;
 * one time in eight we leave the damage for the checksum checks themselves.
 */
/* XXH3 over the 16 header bytes and the payload that follows the 24-byte header. */
static uint64_t record_sum(const uint8_t *h, uint64_t len)
{
	XXH3_state_t *st = XXH3_createState();
	uint64_t sum;

	if (!st)
		return 0;
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, h, 16);
	XXH3_64bits_update(st, h + STREAM_RECORD_HDR_LEN, len);
	sum = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return sum;
}

static void reseal(uint8_t *data, size_t size)
{
	uint64_t running = 0, count = 0;
	size_t pos = 0;
	uint8_t le[8];

	if (size >= STREAM_HEADER_LEN && !memcmp(data, STREAM_MAGIC, STREAM_MAGIC_LEN)) {
		stream_put64(data + 24, XXH3_64bits(data, 24));
		pos = STREAM_HEADER_LEN;
	}
	while (size - pos >= STREAM_RECORD_HDR_LEN) {
		uint8_t *h = data + pos;
		uint64_t len = stream_get64(h + 8), sum;

		if (len > size - pos - STREAM_RECORD_HDR_LEN)
			break;
		if (stream_get32(h) == STREAM_REC_END && len == STREAM_END_LEN) {
			stream_put64(h + STREAM_RECORD_HDR_LEN, count);
			stream_put64(h + STREAM_RECORD_HDR_LEN + 8, running);
		}
		sum = record_sum(h, len);
		if (!sum)
			return;
		stream_put64(h + 16, sum);
		stream_put64(le, sum);
		running = XXH3_64bits_withSeed(le, sizeof(le), running);
		count++;
		pos += STREAM_RECORD_HDR_LEN + len;
	}
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
	size = LLVMFuzzerMutate(data, size, max_size);
	if (seed % 8)
		reseal(data, size);
	return size;
}
