// SPDX-License-Identifier: GPL-2.0
/*
 * The migration stream: round trips of every record type, and every way a hostile
 * or broken stream must be rejected (never crash, never half-apply).
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "godwit/memory.h"
#include "godwit/stream.h"

#define PG	 STREAM_PAGE_SIZE
#define R0_GPA	 0ULL
#define R0_SIZE	 (32 * KiB)
#define R1_GPA	 (1 * MiB)
#define R1_SIZE	 (32 * KiB)
#define RAM_SIZE (R0_SIZE + R1_SIZE)

static const uint8_t cpuid_blob[32] = {1, 2, 3, 4, 5, 6, 7, 8};

static void make_cfg(struct stream_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->ram_size = RAM_SIZE;
	cfg->nr_vcpus = 2;
	cfg->machine_version = 1;
	strcpy(cfg->cmdline, "console=ttyS0 quiet");
	cfg->nr_regions = 2;
	cfg->regions[0] = (struct stream_region){R0_GPA, R0_SIZE};
	cfg->regions[1] = (struct stream_region){R1_GPA, R1_SIZE};
	memset(cfg->uuid, 0x42, sizeof(cfg->uuid));
	cfg->cpuid = (uint8_t *)cpuid_blob;
	cfg->cpuid_len = sizeof(cpuid_blob);
	cfg->nr_devices = 3;
	strcpy(cfg->devices[0].type, "serial");
	strcpy(cfg->devices[1].type, "virtio-net");
	cfg->devices[1].has_mac = true;
	memcpy(cfg->devices[1].mac, "\x52\x54\x00\x12\x34\x56", 6);
	strcpy(cfg->devices[2].type, "virtio-blk");
	cfg->devices[2].capacity = 8 * MiB;
}

/* A fake guest_mem over a plain buffer, laid out like make_cfg(). */
static void fake_mem(struct guest_mem *mem, uint8_t *ram)
{
	memset(mem, 0, sizeof(*mem));
	mem->memfd = -1;
	mem->size = RAM_SIZE;
	mem->base = ram;
	mem->nr_regions = 2;
	mem->regions[0] = (struct mem_region){R0_GPA, R0_SIZE, 0, ram};
	mem->regions[1] = (struct mem_region){R1_GPA, R1_SIZE, R0_SIZE, ram + R0_SIZE};
	mem->nr_pages = RAM_SIZE / PG;
}

/* ---- writing ------------------------------------------------------------- */

static void begin(struct stream_io *io, struct stream_writer *w)
{
	struct stream_config cfg;

	make_cfg(&cfg);
	stream_io__init_mem_writer(io);
	assert_int_equal(stream__writer_init(w, io, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__write_header(w), 0);
	assert_int_equal(stream__write_config(w, &cfg), 0);
}

static uint8_t page_a[PG], page_b[PG];

/* A stream with every data record type; src gets what the destination must end with. */
static void write_full(struct stream_io *io, uint8_t *src)
{
	struct stream_ram_run r1[] = {{0, 1, STREAM_RAM_DATA}, {PG, 3, STREAM_RAM_ZERO}};
	struct stream_ram_run r2[] = {{R1_GPA, 2, STREAM_RAM_ZERO}};
	struct stream_ram_run r3[] = {{R1_GPA + 2 * PG, 1, STREAM_RAM_DATA}};
	const uint8_t *d1[] = {page_a, NULL}, *d3[] = {page_b};
	struct stream_round rd = {1, 4, 4096, 17, 1000};
	struct stream_tlv_writer body;
	struct stream_writer w;
	struct guest_mem mem;
	uint64_t *dig;
	size_t nd;

	memset(page_a, 0xa5, PG);
	memset(page_b, 0x5a, PG);
	memset(src, 0, RAM_SIZE);
	memcpy(src, page_a, PG);
	memcpy(src + R0_SIZE + 2 * PG, page_b, PG);
	begin(io, &w);
	assert_int_equal(stream__write_ram(&w, r1, 2, d1), 0);
	assert_int_equal(stream__write_round(&w, &rd), 0);
	assert_int_equal(stream__write_ram(&w, r2, 1, NULL), 0);
	stream__tlv_writer_init(&body);
	stream__tlv_put_u64(&body, 1, 0, 0xfff0);
	stream__tlv_put_bytes(&body, 2, STREAM_TLV_OPTIONAL, "0123456789abcdef", 16);
	stream__tlv_put_u32(&body, 3, 0, 7);
	assert_int_equal(stream__write_state(&w, "vcpu", 0, 1, &body), 0);
	assert_int_equal(stream__write_state(&w, "serial", 0, 1, NULL), 0);
	stream__tlv_writer_exit(&body);
	assert_int_equal(stream__write_ram(&w, r3, 1, d3), 0);
	fake_mem(&mem, src);
	assert_int_equal(stream__ram_digest(&mem, &dig, &nd), 0);
	assert_int_equal(nd, 2);
	assert_int_equal(stream__write_verify(&w, dig, nd), 0);
	free(dig);
	assert_int_equal(stream__write_end(&w), 0);
	stream__writer_exit(&w);
}

/* Computes a record the way docs/migration-format.md says, for crafting bad ones. */
static void raw_rec(struct stream_io *io, uint32_t type, uint32_t flags, const void *p,
		    uint64_t len)
{
	uint8_t h[STREAM_RECORD_HDR_LEN];
	XXH3_state_t *st = XXH3_createState();
	struct iovec iov[2] = {{h, sizeof(h)}, {(void *)p, len}};

	stream_put32(h, type);
	stream_put32(h + 4, flags);
	stream_put64(h + 8, len);
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, h, 16);
	XXH3_64bits_update(st, p, len);
	stream_put64(h + 16, XXH3_64bits_digest(st));
	XXH3_freeState(st);
	assert_int_equal(stream_io__writev_full(io, iov, 2), 0);
}

/* ---- reading: a destination-side loader ------------------------------------ */

struct loader {
	struct stream_config cfg;
	bool have_cfg;
	uint8_t ram[RAM_SIZE];
	unsigned int count[8];
	unsigned int applied;
	struct stream_round round;
	char ids[4][STREAM_STATE_ID_LEN];
	uint64_t rip;
	int verify;
	uint64_t bad_gpa;
	char err[256];
	struct stream_header hdr;
};

static int apply(void *opaque, uint64_t gpa, uint32_t npages, uint32_t kind, const uint8_t *data)
{
	struct loader *l = opaque;
	uint64_t off = gpa >= R1_GPA ? gpa - R1_GPA + R0_SIZE : gpa;
	uint64_t len = (uint64_t)npages * PG;

	assert_true(off + len <= RAM_SIZE);
	if (kind == STREAM_RAM_DATA)
		memcpy(l->ram + off, data, len);
	else
		memset(l->ram + off, 0, len);
	l->applied++;
	return 0;
}

static int load_state(struct loader *l, const struct stream_record *rec)
{
	struct stream_state_hdr sh;
	struct stream_tlv_reader tr;
	struct stream_tlv t;
	int ret;

	ret = stream__state_parse(rec->payload, rec->length, &sh, &tr, l->err, sizeof(l->err));
	if (ret)
		return ret;
	if (l->count[STREAM_REC_STATE] < 4)
		strcpy(l->ids[l->count[STREAM_REC_STATE]], sh.id);
	while ((ret = stream__tlv_next(&tr, &t)) > 0)
		if (t.tag == 1 && stream__tlv_u64(&t, &l->rip))
			return -EBADMSG;
	return ret;
}

static int load_verify(struct loader *l, const struct stream_record *rec)
{
	struct guest_mem mem;
	uint64_t *theirs, *ours;
	size_t nt, no;
	int ret;

	ret =
	    stream__verify_decode(rec->payload, rec->length, &theirs, &nt, l->err, sizeof(l->err));
	if (ret)
		return ret;
	fake_mem(&mem, l->ram);
	ret = stream__ram_digest(&mem, &ours, &no);
	if (!ret) {
		l->verify = stream__ram_digest_compare(&l->cfg, theirs, nt, ours, no, &l->bad_gpa);
		free(ours);
	}
	free(theirs);
	return ret;
}

static int load_record(struct loader *l, const struct stream_record *rec)
{
	switch (rec->type) {
	case STREAM_REC_CONFIG:
		l->have_cfg = true;
		return stream__config_decode(rec->payload, rec->length, &l->cfg, l->err,
					     sizeof(l->err));
	case STREAM_REC_RAM:
		return stream__ram_record_parse(&l->cfg, rec->payload, rec->length, apply, l,
						l->err, sizeof(l->err));
	case STREAM_REC_ROUND:
		return stream__round_decode(rec->payload, rec->length, &l->round);
	case STREAM_REC_STATE:
		return load_state(l, rec);
	case STREAM_REC_VERIFY:
		return load_verify(l, rec);
	}
	return 0;
}

/* Loads a whole stream; 0 after a valid END, else the first error (message in l->err). */
static int load(struct loader *l, const uint8_t *buf, size_t len)
{
	struct stream_reader r;
	struct stream_record rec;
	struct stream_io io;
	int ret;

	memset(l, 0, sizeof(*l));
	stream_io__init_mem_reader(&io, buf, len);
	assert_int_equal(stream__reader_init(&r, &io, STREAM_CTX_DATA), 0);
	ret = stream__read_header(&r, &l->hdr);
	while (!ret) {
		ret = stream__read_record(&r, &rec);
		if (ret)
			break;
		ret = load_record(l, &rec);
		if (ret) {
			ret = ret < 0 ? ret : -EBADMSG;
			goto out;
		}
		if (rec.type < 8)
			l->count[rec.type]++;
		if (rec.type == STREAM_REC_END)
			goto out;
	}
	strcpy(l->err, r.err);
out:
	stream__reader_exit(&r);
	stream__config_release(&l->cfg);
	return ret;
}

static struct loader *new_loader(void)
{
	struct loader *l = calloc(1, sizeof(*l));

	assert_non_null(l);
	return l;
}

static void expect_fail(const uint8_t *buf, size_t len, int err, const char *msg)
{
	struct loader *l = new_loader();
	int ret = load(l, buf, len);

	if (ret != err || !strstr(l->err, msg))
		print_error("got %d \"%s\", expected %d \"%s\"\n", ret, l->err, err, msg);
	assert_int_equal(ret, err);
	assert_non_null(strstr(l->err, msg));
	free(l);
}

/* ---- round trips ------------------------------------------------------------ */

static void test_roundtrip_full(void **state)
{
	static uint8_t src[RAM_SIZE];
	struct loader *l = new_loader();
	struct stream_io io;
	const uint8_t *buf;
	size_t len;

	(void)state;
	write_full(&io, src);
	buf = stream_io__mem_data(&io, &len);
	assert_int_equal(load(l, buf, len), 0);
	assert_int_equal(l->hdr.major, 1);
	assert_int_equal(l->hdr.minor, STREAM_VERSION_MINOR);
	assert_int_equal(l->count[STREAM_REC_CONFIG], 1);
	assert_int_equal(l->count[STREAM_REC_RAM], 3);
	assert_int_equal(l->count[STREAM_REC_ROUND], 1);
	assert_int_equal(l->count[STREAM_REC_STATE], 2);
	assert_int_equal(l->count[STREAM_REC_VERIFY], 1);
	assert_int_equal(l->count[STREAM_REC_END], 1);
	assert_int_equal(l->applied, 4);
	assert_memory_equal(l->ram, src, RAM_SIZE);
	assert_int_equal(l->verify, 0);
	assert_int_equal(l->round.round, 1);
	assert_int_equal(l->round.dirty_pages, 17);
	assert_string_equal(l->ids[0], "vcpu");
	assert_string_equal(l->ids[1], "serial");
	assert_int_equal(l->rip, 0xfff0);
	stream_io__exit(&io);
	free(l);
}

static void test_config_roundtrip(void **state)
{
	struct stream_config in, out;
	struct stream_tlv_writer tw;
	char err[256];
	int i;

	(void)state;
	make_cfg(&in);
	stream__tlv_writer_init(&tw);
	assert_int_equal(stream__config_encode(&in, &tw, err, sizeof(err)), 0);
	assert_int_equal(stream__config_decode(tw.buf, tw.len, &out, err, sizeof(err)), 0);
	assert_int_equal(out.ram_size, in.ram_size);
	assert_int_equal(out.nr_vcpus, 2);
	assert_int_equal(out.machine_version, 1);
	assert_string_equal(out.cmdline, in.cmdline);
	assert_int_equal(out.nr_regions, 2);
	assert_int_equal(out.regions[1].gpa, R1_GPA);
	assert_int_equal(out.regions[1].size, R1_SIZE);
	assert_memory_equal(out.uuid, in.uuid, 16);
	assert_int_equal(out.cpuid_len, sizeof(cpuid_blob));
	assert_memory_equal(out.cpuid, cpuid_blob, sizeof(cpuid_blob));
	assert_int_equal(out.nr_devices, 3);
	assert_string_equal(out.devices[1].type, "virtio-net");
	assert_true(out.devices[1].has_mac);
	assert_memory_equal(out.devices[1].mac, in.devices[1].mac, 6);
	assert_false(out.devices[0].has_mac);
	assert_int_equal(out.devices[2].capacity, 8 * MiB);
	assert_int_equal(out.connections, 0);
	stream__config_release(&out);
	stream__tlv_writer_exit(&tw);

	/* 1.3: connections offered, with the token their JOINs carry */
	in.connections = 16;
	memset(in.token, 0xa5, sizeof(in.token));
	stream__tlv_writer_init(&tw);
	assert_int_equal(stream__config_encode(&in, &tw, err, sizeof(err)), 0);
	assert_int_equal(stream__config_decode(tw.buf, tw.len, &out, err, sizeof(err)), 0);
	assert_int_equal(out.connections, 16);
	assert_memory_equal(out.token, in.token, sizeof(in.token));
	stream__config_release(&out);
	stream__tlv_writer_exit(&tw);
	in.connections = STREAM_MAX_CONNECTIONS + 1;
	stream__tlv_writer_init(&tw);
	assert_int_equal(stream__config_encode(&in, &tw, err, sizeof(err)), -EBADMSG);
	stream__tlv_writer_exit(&tw);

	/* A hostile offer: a byte too many, 1 connection, 17 connections. */
	in.connections = 0;
	for (i = 0; i < 3; i++) {
		uint8_t bad[4 + STREAM_TOKEN_LEN + 1] = { 0 };

		stream__tlv_writer_init(&tw);
		assert_int_equal(stream__config_encode(&in, &tw, err, sizeof(err)), 0);
		stream_put32(bad, i == 1 ? 1 : STREAM_MAX_CONNECTIONS + 1);
		if (i == 0)
			stream_put32(bad, 4);
		stream__tlv_put_bytes(&tw, STREAM_CFG_CONNECTIONS, STREAM_TLV_OPTIONAL, bad,
				      i == 0 ? sizeof(bad) : sizeof(bad) - 1);
		assert_int_equal(stream__config_decode(tw.buf, tw.len, &out, err, sizeof(err)),
				 -EBADMSG);
		assert_non_null(strstr(err, "connections"));
		stream__config_release(&out);
		stream__tlv_writer_exit(&tw);
	}
}

static void test_control_roundtrip(void **state)
{
	static const uint32_t types[] = {STREAM_REC_READY, STREAM_REC_GO, STREAM_REC_ERROR,
					 STREAM_REC_RESUMED, STREAM_REC_ACCEPTED};
	struct stream_writer w;
	struct stream_reader r;
	struct stream_record rec;
	struct stream_io io, in;
	char msg[STREAM_ERROR_MSG_MAX + 1], longmsg[400];
	const uint8_t *buf;
	uint32_t code;
	size_t len, i;

	(void)state;
	memset(longmsg, 'x', sizeof(longmsg) - 1);
	longmsg[sizeof(longmsg) - 1] = '\0';
	stream_io__init_mem_writer(&io);
	assert_int_equal(stream__writer_init(&w, &io, STREAM_CTX_CONTROL), 0);
	assert_int_equal(stream__write_control(&w, STREAM_REC_READY), 0);
	assert_int_equal(stream__write_control(&w, STREAM_REC_GO), 0);
	assert_int_equal(stream__write_error(&w, EIO, longmsg), 0);
	assert_int_equal(stream__write_control(&w, STREAM_REC_RESUMED), 0);
	assert_int_equal(stream__write_control(&w, STREAM_REC_ACCEPTED), 0);
	/* data records are not control messages */
	assert_int_equal(stream__write_record(&w, STREAM_REC_END, 1, NULL, 0), -EPROTO);
	assert_int_equal(stream__write_control(&w, STREAM_REC_ERROR), -EINVAL);
	assert_int_equal(stream__write_header(&w), -EPROTO);
	stream__writer_exit(&w);
	buf = stream_io__mem_data(&io, &len);
	stream_io__init_mem_reader(&in, buf, len);
	assert_int_equal(stream__reader_init(&r, &in, STREAM_CTX_CONTROL), 0);
	for (i = 0; i < ARRAY_SIZE(types); i++) {
		assert_int_equal(stream__read_record(&r, &rec), 0);
		assert_int_equal(rec.type, types[i]);
	}
	/* clean end of the channel is reported, not a crash */
	assert_int_equal(stream__read_record(&r, &rec), -EIO);
	stream__reader_exit(&r);

	stream_io__init_mem_reader(&in, buf, len);
	assert_int_equal(stream__reader_init(&r, &in, STREAM_CTX_CONTROL), 0);
	for (i = 0; i < 3; i++)
		assert_int_equal(stream__read_record(&r, &rec), 0);
	assert_int_equal(stream__error_decode(rec.payload, rec.length, &code, msg), 0);
	assert_int_equal(code, EIO);
	assert_int_equal(strlen(msg), STREAM_ERROR_MSG_MAX);
	assert_int_equal(stream__error_decode((const uint8_t *)"\0\0\0\0a\0b", 7, &code, msg),
			 -EBADMSG);
	assert_int_equal(stream__error_decode((const uint8_t *)"\0\0", 2, &code, msg), -EBADMSG);
	stream__reader_exit(&r);
	stream_io__exit(&io);
}

static void test_control_rejects_data(void **state)
{
	struct stream_io io, in;
	struct stream_reader r;
	struct stream_record rec;
	const uint8_t *buf;
	size_t len;

	(void)state;
	stream_io__init_mem_writer(&io);
	raw_rec(&io, STREAM_REC_CONFIG, 1, "", 0);
	buf = stream_io__mem_data(&io, &len);
	stream_io__init_mem_reader(&in, buf, len);
	assert_int_equal(stream__reader_init(&r, &in, STREAM_CTX_CONTROL), 0);
	assert_int_equal(stream__read_record(&r, &rec), -EPROTO);
	assert_non_null(strstr(r.err, "not allowed on the control channel"));
	stream__reader_exit(&r);
	stream_io__exit(&io);
}

/* ---- header -------------------------------------------------------------------- */

static void header_bytes(uint8_t *h, uint16_t major, uint16_t minor)
{
	memcpy(h, STREAM_MAGIC, 8);
	stream_put16(h + 8, major);
	stream_put16(h + 10, minor);
	stream_put32(h + 12, PG);
	stream_put32(h + 16, STREAM_ARCH_X86_64);
	stream_put32(h + 20, 0);
	stream_put64(h + 24, XXH3_64bits(h, 24));
}

static void test_header(void **state)
{
	static uint8_t src[RAM_SIZE];
	struct loader *l = new_loader();
	struct stream_io io;
	uint8_t *buf, h[STREAM_HEADER_LEN];
	size_t len;

	(void)state;
	write_full(&io, src);
	buf = (uint8_t *)stream_io__mem_data(&io, &len);

	header_bytes(h, 1, 7); /* newer minor: accepted */
	memcpy(buf, h, sizeof(h));
	assert_int_equal(load(l, buf, len), 0);
	assert_int_equal(l->hdr.minor, 7);

	header_bytes(h, 2, 0);
	memcpy(buf, h, sizeof(h));
	expect_fail(buf, len, -EPROTO, "stream format 2.x is newer than this godwit (1.x)");
	header_bytes(h, 0, 9);
	memcpy(buf, h, sizeof(h));
	expect_fail(buf, len, -EPROTO, "too old");

	header_bytes(h, 1, 0);
	memcpy(buf, h, sizeof(h));
	buf[0] = 'X';
	expect_fail(buf, len, -EPROTO, "bad magic");
	buf[0] = 'G';
	buf[13] ^= 1; /* page size, checksum now wrong */
	expect_fail(buf, len, -EBADMSG, "header at offset 0: checksum mismatch");
	stream_put32(h + 12, 8192);
	stream_put64(h + 24, XXH3_64bits(h, 24));
	memcpy(buf, h, sizeof(h));
	expect_fail(buf, len, -EPROTO, "page size 8192");
	header_bytes(h, 1, 0);
	stream_put32(h + 16, 2);
	stream_put64(h + 24, XXH3_64bits(h, 24));
	memcpy(buf, h, sizeof(h));
	expect_fail(buf, len, -EPROTO, "architecture 2");
	header_bytes(h, 1, 0);
	stream_put32(h + 20, 4);
	stream_put64(h + 24, XXH3_64bits(h, 24));
	memcpy(buf, h, sizeof(h));
	expect_fail(buf, len, -EPROTO, "unknown header flags 0x4");
	expect_fail(buf, 10, -EIO, "truncated");
	stream_io__exit(&io);
	free(l);
}

/* ---- framing rejections -------------------------------------------------------- */

static void test_unknown_types(void **state)
{
	struct stream_writer w;
	struct stream_io io;
	struct loader *l = new_loader();
	struct iovec iov = {(void *)"hello", 5};
	const uint8_t *buf;
	size_t len;

	(void)state;
	/* an unknown optional record is checked, counted, skipped */
	begin(&io, &w);
	assert_int_equal(stream__write_record(&w, 0x7777, 0, &iov, 1), 0);
	assert_int_equal(stream__write_end(&w), 0);
	buf = stream_io__mem_data(&io, &len);
	assert_int_equal(load(l, buf, len), 0);
	assert_int_equal(l->count[STREAM_REC_END], 1);
	stream__writer_exit(&w);
	stream_io__exit(&io);

	/* ... the same with MANDATORY is refused */
	begin(&io, &w);
	assert_int_equal(stream__write_record(&w, 0x7777, STREAM_REC_MANDATORY, &iov, 1), 0);
	assert_int_equal(stream__write_end(&w), 0);
	buf = stream_io__mem_data(&io, &len);
	expect_fail(buf, len, -EPROTO, "record 1 (type 0x7777) at offset ");
	expect_fail(buf, len, -EPROTO, "unknown mandatory record type");
	stream__writer_exit(&w);
	stream_io__exit(&io);

	/* type 0 and unknown flag bits */
	begin(&io, &w);
	raw_rec(&io, STREAM_REC_INVALID, 0, "", 0);
	buf = stream_io__mem_data(&io, &len);
	expect_fail(buf, len, -EPROTO, "invalid record type 0");
	stream__writer_exit(&w);
	stream_io__exit(&io);
	begin(&io, &w);
	raw_rec(&io, STREAM_REC_ROUND, 0x2, "", 0);
	buf = stream_io__mem_data(&io, &len);
	expect_fail(buf, len, -EPROTO, "record 1 (ROUND) at offset ");
	expect_fail(buf, len, -EPROTO, "unknown flags 0x2");
	assert_int_equal(stream__write_record(&w, STREAM_REC_ROUND, 0x2, NULL, 0), -EINVAL);
	stream__writer_exit(&w);
	stream_io__exit(&io);
	free(l);
}

static void test_length_limits(void **state)
{
	static const struct {
		uint32_t type;
		uint64_t len;
	} cases[] = {
	    {STREAM_REC_RAM, STREAM_RAM_MAX_LEN + 1},
	    {STREAM_REC_RAM, UINT64_MAX},
	    {STREAM_REC_STATE, STREAM_STATE_MAX_LEN + 1},
	    {STREAM_REC_ROUND, STREAM_ROUND_LEN + 1},
	    {STREAM_REC_VERIFY, STREAM_VERIFY_MAX_LEN + 1},
	    {STREAM_REC_END, 17},
	    {0x9999, STREAM_UNKNOWN_MAX_LEN + 1},
	};
	struct stream_writer w;
	struct stream_reader r;
	struct stream_record rec;
	struct stream_io io, in;
	uint8_t h[STREAM_RECORD_HDR_LEN] = {0};
	struct iovec iov = {h, sizeof(h)};
	const uint8_t *buf;
	size_t len, i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		begin(&io, &w);
		stream_put32(h, cases[i].type);
		stream_put64(h + 8, cases[i].len);
		assert_int_equal(stream_io__writev_full(&io, &iov, 1), 0);
		buf = stream_io__mem_data(&io, &len);
		stream_io__init_mem_reader(&in, buf, len);
		assert_int_equal(stream__reader_init(&r, &in, STREAM_CTX_DATA), 0);
		assert_int_equal(stream__read_header(&r, NULL), 0);
		assert_int_equal(stream__read_record(&r, &rec), 0);
		assert_int_equal(stream__read_record(&r, &rec), -E2BIG);
		assert_non_null(strstr(r.err, "exceeds the limit"));
		/* rejected from the header alone: the buffer never grew for it */
		assert_true(r.buf_cap < STREAM_CONFIG_MAX_LEN);
		stream__reader_exit(&r);
		stream__writer_exit(&w);
		stream_io__exit(&io);
	}
	/* and below the minimum for fixed-size types */
	begin(&io, &w);
	raw_rec(&io, STREAM_REC_ROUND, 0, "abc", 3);
	buf = stream_io__mem_data(&io, &len);
	expect_fail(buf, len, -EBADMSG, "below the minimum 40");
	stream__writer_exit(&w);
	stream_io__exit(&io);
}

static void test_checksum(void **state)
{
	static uint8_t src[RAM_SIZE];
	struct stream_io io;
	uint8_t *buf;
	size_t len, cfg_off = STREAM_HEADER_LEN;

	(void)state;
	write_full(&io, src);
	buf = (uint8_t *)stream_io__mem_data(&io, &len);
	buf[cfg_off + STREAM_RECORD_HDR_LEN + 3] ^= 0x10; /* payload byte */
	expect_fail(buf, len, -EBADMSG, "record 0 (CONFIG) at offset 32: checksum mismatch");
	buf[cfg_off + STREAM_RECORD_HDR_LEN + 3] ^= 0x10;
	buf[cfg_off + 16] ^= 0x01; /* the checksum field itself */
	expect_fail(buf, len, -EBADMSG, "checksum mismatch");
	buf[cfg_off + 16] ^= 0x01;
	buf[cfg_off + 8] ^= 0x01; /* the length: one byte more or less */
	expect_fail(buf, len, -EBADMSG, "checksum mismatch");
	buf[cfg_off + 8] ^= 0x01;
	buf[len - 1] ^= 0x80; /* END's payload */
	expect_fail(buf, len, -EBADMSG, "(END)");
	stream_io__exit(&io);
}

static void test_truncation(void **state)
{
	static uint8_t src[RAM_SIZE];
	struct loader *l = new_loader();
	struct stream_io io;
	const uint8_t *buf;
	uint8_t *copy;
	size_t len, n;

	(void)state;
	write_full(&io, src);
	buf = stream_io__mem_data(&io, &len);
	for (n = 0; n < len; n++) {
		/* a copy of exactly n bytes, so ASan sees any read past the end */
		copy = malloc(n ? n : 1);
		memcpy(copy, buf, n);
		assert_true(load(l, copy, n) < 0);
		assert_true(l->err[0] != '\0');
		free(copy);
	}
	assert_int_equal(load(l, buf, len), 0);
	stream_io__exit(&io);
	free(l);
}

/* ---- order --------------------------------------------------------------------- */

enum { S_CFG = 1, S_RAM, S_ROUND, S_STATE, S_VERIFY, S_END, S_GO, S_UNK, S_ERR, S_BADERR };

/* Writes a sequence with raw records (bypassing the writer's own order check). */
static void write_seq(struct stream_io *io, const int *seq, size_t n)
{
	struct stream_config cfg;
	struct stream_tlv_writer tw;
	uint8_t h[STREAM_HEADER_LEN], ram[8 + 16], round[40] = {0}, state[40] = "pit", verify[32],
						   end[16] = {0};
	char err[128];
	size_t i;

	make_cfg(&cfg);
	stream__tlv_writer_init(&tw);
	assert_int_equal(stream__config_encode(&cfg, &tw, err, sizeof(err)), 0);
	stream_put32(ram, 1);
	stream_put32(ram + 4, 0);
	stream_put64(ram + 8, 0);
	stream_put32(ram + 16, 1);
	stream_put32(ram + 20, STREAM_RAM_ZERO);
	stream_put64(verify, STREAM_DIGEST_CHUNK);
	stream_put64(verify + 8, 2);
	stream_put64(verify + 16, 1);
	stream_put64(verify + 24, 2);
	header_bytes(h, 1, 0);
	stream_io__init_mem_writer(io);
	assert_int_equal(stream_io__writev_full(io, &(struct iovec){h, sizeof(h)}, 1), 0);
	for (i = 0; i < n; i++) {
		switch (seq[i]) {
		case S_CFG:
			raw_rec(io, STREAM_REC_CONFIG, 1, tw.buf, tw.len);
			break;
		case S_RAM:
			raw_rec(io, STREAM_REC_RAM, 1, ram, sizeof(ram));
			break;
		case S_ROUND:
			raw_rec(io, STREAM_REC_ROUND, 0, round, sizeof(round));
			break;
		case S_STATE:
			raw_rec(io, STREAM_REC_STATE, 1, state, sizeof(state));
			break;
		case S_VERIFY:
			raw_rec(io, STREAM_REC_VERIFY, 0, verify, sizeof(verify));
			break;
		case S_END:
			raw_rec(io, STREAM_REC_END, 1, end, sizeof(end));
			break;
		case S_GO:
			raw_rec(io, STREAM_REC_GO, 1, "", 0);
			break;
		case S_UNK:
			raw_rec(io, 0x5555, 0, "x", 1);
			break;
		case S_ERR:
			raw_rec(io, STREAM_REC_ERROR, 1, "\0\0\0\1cancelled", 13);
			break;
		case S_BADERR:
			raw_rec(io, STREAM_REC_ERROR, 1, "\0\0\0\1can\0celled", 14);
			break;
		}
	}
	stream__tlv_writer_exit(&tw);
}

/* seq: up to max steps, 0-terminated when shorter. */
static void expect_seq_fail(const int *seq, size_t max, int err, const char *msg)
{
	struct stream_io io;
	const uint8_t *buf;
	size_t len, n = 0;

	while (n < max && seq[n])
		n++;
	write_seq(&io, seq, n);
	buf = stream_io__mem_data(&io, &len);
	expect_fail(buf, len, err, msg);
	stream_io__exit(&io);
}

static void test_order(void **state)
{
	static const struct {
		int seq[6];
		const char *msg;
	} cases[] = {
	    {{S_RAM}, "record 0 (RAM) at offset 32: out of order: the first record must be CONFIG"},
	    {{S_END}, "the first record must be CONFIG"},
	    {{S_STATE}, "the first record must be CONFIG"},
	    {{S_UNK}, "the first record must be CONFIG"},
	    {{S_CFG, S_RAM, S_CFG}, "record 2 (CONFIG) at offset "},
	    {{S_CFG, S_RAM, S_CFG}, "second CONFIG"},
	    {{S_CFG, S_STATE, S_ROUND}, "ROUND after device state"},
	    {{S_CFG, S_VERIFY, S_RAM}, "only END may follow VERIFY"},
	    {{S_CFG, S_VERIFY, S_STATE}, "only END may follow VERIFY"},
	    {{S_CFG, S_VERIFY, S_VERIFY}, "second VERIFY"},
	    {{S_CFG, S_GO}, "control message not allowed in the migration stream"},
	    {{S_CFG, S_RAM}, "end of stream before END"},
	};
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(cases); i++)
		expect_seq_fail(cases[i].seq, 6, cases[i].msg[0] == 'e' ? -EIO : -EPROTO,
				cases[i].msg);
}

/* A sender that gives up mid-stream says why; the reader's error is that reason. */
static void test_error_mid_stream(void **state)
{
	static const struct {
		int seq[3];
		int err;
		const char *msg;
	} cases[] = {
	    {{S_CFG, S_RAM, S_ERR}, -ECANCELED, "the sender stopped: cancelled"},
	    {{S_CFG, S_BADERR}, -EBADMSG, "record 1 (ERROR) at offset "},
	    {{S_CFG, S_BADERR}, -EBADMSG, "an unreadable ERROR"},
	    {{S_ERR}, -ECANCELED, "the sender stopped: cancelled"},
	};
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(cases); i++)
		expect_seq_fail(cases[i].seq, 3, cases[i].err, cases[i].msg);
}

static void test_order_ok_and_after_end(void **state)
{
	static const int seq[] = {S_CFG, S_RAM, S_ROUND, S_UNK, S_RAM, S_STATE, S_RAM, S_STATE};
	struct stream_reader r;
	struct stream_record rec;
	struct stream_writer w;
	struct stream_io io, in;
	uint8_t end[16];
	const uint8_t *buf;
	size_t len, i;

	(void)state;
	write_seq(&io, seq, ARRAY_SIZE(seq));
	buf = stream_io__mem_data(&io, &len);
	stream_io__init_mem_reader(&in, buf, len);
	assert_int_equal(stream__reader_init(&r, &in, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__read_header(&r, NULL), 0);
	for (i = 0; i < ARRAY_SIZE(seq) - 1; i++)
		assert_int_equal(stream__read_record(&r, &rec), 0);
	assert_int_equal(r.nr_skipped, 1);
	/* END with the right count and chained checksum, then one more record */
	stream_put64(end, r.nr_records);
	stream_put64(end + 8, r.running);
	raw_rec(&io, STREAM_REC_END, 1, end, sizeof(end));
	raw_rec(&io, STREAM_REC_RAM, 1, "", 0);
	buf = stream_io__mem_data(&io, &len);
	stream_io__init_mem_reader(&in, buf, len);
	stream__reader_exit(&r);
	assert_int_equal(stream__reader_init(&r, &in, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__read_header(&r, NULL), 0);
	for (i = 0; i < ARRAY_SIZE(seq) - 1; i++)
		assert_int_equal(stream__read_record(&r, &rec), 0);
	assert_int_equal(stream__read_record(&r, &rec), 0);
	assert_int_equal(rec.type, STREAM_REC_END);
	assert_int_equal(stream__read_record(&r, &rec), -EPROTO);
	assert_non_null(strstr(r.err, "read past END"));
	stream__reader_exit(&r);
	stream_io__exit(&io);

	/* the writer keeps the same rules */
	begin(&io, &w);
	assert_int_equal(stream__write_state(&w, "pit", 0, 1, NULL), 0);
	assert_int_equal(stream__write_round(&w, &(struct stream_round){0}), -EPROTO);
	assert_non_null(strstr(w.err, "ROUND after device state"));
	assert_int_equal(stream__write_end(&w), 0);
	assert_int_equal(stream__write_end(&w), -EPROTO);
	stream__writer_exit(&w);
	stream_io__exit(&io);
	stream_io__init_mem_writer(&io);
	assert_int_equal(stream__writer_init(&w, &io, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__write_end(&w), -EPROTO);
	stream__writer_exit(&w);
	stream_io__exit(&io);
}

static void test_end_mismatch(void **state)
{
	struct stream_writer w;
	struct stream_io io;
	uint8_t end[16];
	const uint8_t *buf;
	size_t len;

	(void)state;
	begin(&io, &w);
	stream_put64(end, w.nr_records + 1);
	stream_put64(end + 8, w.running);
	raw_rec(&io, STREAM_REC_END, 1, end, sizeof(end));
	buf = stream_io__mem_data(&io, &len);
	expect_fail(buf, len, -EBADMSG, "END counts 2 records, 1 were read");
	stream__writer_exit(&w);
	stream_io__exit(&io);

	begin(&io, &w);
	stream_put64(end, w.nr_records);
	stream_put64(end + 8, w.running ^ 1);
	raw_rec(&io, STREAM_REC_END, 1, end, sizeof(end));
	buf = stream_io__mem_data(&io, &len);
	expect_fail(buf, len, -EBADMSG, "END chained checksum");
	stream__writer_exit(&w);
	stream_io__exit(&io);
}

/* ---- RAM records --------------------------------------------------------------- */

struct ram_case {
	uint32_t nr_runs, reserved;
	struct stream_ram_run runs[3];
	int nr; /* runs actually encoded */
	long data_pages;
	const char *msg;
};

static int count_cb(void *opaque, uint64_t gpa, uint32_t npages, uint32_t kind, const uint8_t *data)
{
	(void)gpa, (void)npages, (void)kind, (void)data;
	(*(int *)opaque)++;
	return 0;
}

static int parse_case(const struct ram_case *c, char *err, int *calls)
{
	struct stream_config cfg;
	size_t len = 8 + (size_t)c->nr * 16 + (size_t)c->data_pages * PG;
	uint8_t *p = calloc(1, len);
	int i, ret;

	make_cfg(&cfg);
	stream_put32(p, c->nr_runs);
	stream_put32(p + 4, c->reserved);
	for (i = 0; i < c->nr; i++) {
		stream_put64(p + 8 + i * 16, c->runs[i].gpa);
		stream_put32(p + 16 + i * 16, c->runs[i].npages);
		stream_put32(p + 20 + i * 16, c->runs[i].kind);
	}
	*calls = 0;
	ret = stream__ram_record_parse(&cfg, p, len, count_cb, calls, err, 256);
	free(p);
	return ret;
}

static void test_ram_runs(void **state)
{
	const uint32_t D = STREAM_RAM_DATA, Z = STREAM_RAM_ZERO;
	static const uint64_t R0_END = R0_GPA + R0_SIZE;
	const struct ram_case cases[] = {
	    {2, 0, {{0, 1, D}, {R1_GPA, 8, Z}}, 2, 1, NULL},
	    {1, 0, {{R0_END - PG, 1, D}}, 1, 1, NULL},
	    {0, 0, {{0}}, 0, 0, "0 runs"},
	    {STREAM_RAM_MAX_RUNS + 1, 0, {{0}}, 0, 0, "runs (1..1024 allowed)"},
	    {3, 0, {{0, 1, Z}}, 1, 0, "3 runs do not fit"},
	    {1, 1, {{0, 1, Z}}, 1, 0, "reserved field not zero"},
	    {1, 0, {{100, 1, Z}}, 1, 0, "not page-aligned"},
	    {1, 0, {{0, 0, Z}}, 1, 0, "zero pages"},
	    {1, 0, {{0, 1, 3}}, 1, 0, "unknown kind 3"},
	    {1, 0, {{0, 1, 0}}, 1, 0, "unknown kind 0"},
	    {1, 0, {{R0_END, 1, Z}}, 1, 0, "not inside one RAM region"},
	    {1, 0, {{R0_END - PG, 2, Z}}, 1, 0, "not inside one RAM region"},
	    {1, 0, {{R1_GPA - PG, 2, Z}}, 1, 0, "not inside one RAM region"},
	    {1, 0, {{0, 0xffffffffU, Z}}, 1, 0, "not inside one RAM region"},
	    {1, 0, {{UINT64_MAX - PG + 1, 2, Z}}, 1, 0, "wraps around"},
	    {1, 0, {{1ULL << 60, 1, Z}}, 1, 0, "not inside one RAM region"},
	    {1, 0, {{0, 2, D}}, 1, 1, "announce 2 data pages, payload holds 4096"},
	    {1, 0, {{0, 1, D}}, 1, 2, "announce 1 data pages, payload holds 8192"},
	    {1, 0, {{0, 1, Z}}, 1, 1, "announce 0 data pages"},
	    {2, 0, {{PG, 1, Z}, {0, 1, Z}}, 2, 0, "overlaps or precedes"},
	    {2, 0, {{0, 2, Z}, {PG, 1, Z}}, 2, 0, "overlaps or precedes"},
	    /* a valid first run must not be applied when a later one is bad */
	    {2, 0, {{0, 1, D}, {R1_GPA + R1_SIZE, 1, Z}}, 2, 1, "run 1:"},
	    {1, 0, {{0, 8, D}}, 1, 8, NULL},
	    {1, 0, {{R1_GPA, R1_SIZE / PG, Z}}, 1, 0, NULL},
	};
	char err[256];
	size_t i;
	int calls;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		int ret;

		err[0] = '\0';
		ret = parse_case(&cases[i], err, &calls);
		if (!cases[i].msg) {
			assert_int_equal(ret, 0);
			assert_int_equal(calls, cases[i].nr);
			continue;
		}
		if (ret != -EBADMSG || !strstr(err, cases[i].msg))
			print_error("case %zu: %d \"%s\"\n", i, ret, err);
		assert_int_equal(ret, -EBADMSG);
		assert_non_null(strstr(err, cases[i].msg));
		assert_int_equal(calls, 0);
	}
}

static int stop_cb(void *opaque, uint64_t gpa, uint32_t npages, uint32_t kind, const uint8_t *data)
{
	(void)opaque, (void)gpa, (void)npages, (void)kind, (void)data;
	return -ENOSPC;
}

static void test_ram_writer(void **state)
{
	struct stream_ram_run runs[2] = {{0, 1, STREAM_RAM_DATA}, {PG, 1, STREAM_RAM_ZERO}};
	struct stream_config cfg;
	struct stream_writer w;
	struct stream_io io;
	char err[256];
	uint8_t p[8 + 16] = {1};

	(void)state;
	begin(&io, &w);
	assert_int_equal(stream__write_ram(&w, runs, 2, NULL), -EINVAL);
	assert_int_equal(stream__write_ram(&w, runs, 0, NULL), -EINVAL);
	runs[0].npages = STREAM_RAM_MAX_DATA_PAGES + 1;
	assert_int_equal(stream__write_ram(&w, runs, 1, (const uint8_t *const[]){page_a}), -E2BIG);
	stream__writer_exit(&w);
	stream_io__exit(&io);
	/* the callback's error stops the walk and comes back */
	make_cfg(&cfg);
	stream_put32(p + 12 + 4, 1);
	stream_put32(p + 20, STREAM_RAM_ZERO);
	assert_int_equal(stream__ram_record_parse(&cfg, p, sizeof(p), stop_cb, NULL, err, 256),
			 -ENOSPC);
}

/* ---- RAM_LZ4 --------------------------------------------------------------------- */

struct lz4_sink {
	uint8_t ram[RAM_SIZE];
	int calls;
};

static int lz4_apply(void *opaque, uint64_t gpa, uint32_t npages, uint32_t kind,
		     const uint8_t *data)
{
	struct lz4_sink *k = opaque;
	uint64_t off = gpa >= R1_GPA ? R0_SIZE + gpa - R1_GPA : gpa;

	k->calls++;
	if (kind == STREAM_RAM_DATA)
		memcpy(k->ram + off, data, (size_t)npages * PG);
	else
		memset(k->ram + off, 0, (size_t)npages * PG);
	return 0;
}

/* An LZ4 record payload: 2 data pages at 0, 1 zero page, 1 data page in region 1. */
static size_t lz4_payload(uint8_t *p, const uint8_t *pages, uint8_t *cbuf, int *clen)
{
	const struct stream_ram_run runs[3] = {
	    {0, 2, STREAM_RAM_DATA}, {2 * PG, 1, STREAM_RAM_ZERO}, {R1_GPA, 1, STREAM_RAM_DATA}};
	size_t off = 8 + 3 * 16;
	int i;

	*clen = stream__lz4_compress(pages, 3 * PG, cbuf);
	assert_true(*clen > 0);
	stream_put32(p, 3);
	stream_put32(p + 4, 0);
	for (i = 0; i < 3; i++) {
		stream_put64(p + 8 + i * 16, runs[i].gpa);
		stream_put32(p + 16 + i * 16, runs[i].npages);
		stream_put32(p + 20 + i * 16, runs[i].kind);
	}
	stream_put32(p + off, (uint32_t)*clen);
	stream_put32(p + off + 4, 0);
	memcpy(p + off + 8, cbuf, (size_t)*clen);
	return off + 8 + (size_t)*clen;
}

/* A RAM_LZ4 payload through the packed parser into k; err holds 256 bytes. */
static int parse_lz4(const struct stream_config *cfg, const uint8_t *p, size_t len,
		     uint8_t *scratch, struct lz4_sink *k, char *err)
{
	return stream__ram_packed_parse(cfg, STREAM_REC_RAM_LZ4, p, len, scratch, NULL, lz4_apply,
					k, err, 256);
}

static void test_ram_lz4(void **state)
{
	uint8_t *pages = calloc(3, PG), *cbuf = malloc(STREAM_RAM_LZ4_BOUND);
	uint8_t *p = malloc(8 + 3 * 16 + 8 + STREAM_RAM_LZ4_BOUND), *scratch;
	struct lz4_sink *k = calloc(1, sizeof(*k));
	struct stream_config cfg;
	char err[256];
	size_t len;
	int clen, i;

	(void)state;
	scratch = malloc(STREAM_RAM_MAX_DATA_LEN);
	make_cfg(&cfg);
	for (i = 0; i < 3 * (int)PG; i += 64)
		pages[i] = (uint8_t)(i / 64 + 1); /* compressible, not trivial */
	len = lz4_payload(p, pages, cbuf, &clen);
	memset(k->ram, 0xee, sizeof(k->ram));
	assert_int_equal(parse_lz4(&cfg, p, len, scratch, k, err), 0);
	assert_int_equal(k->calls, 3);
	assert_memory_equal(k->ram, pages, 2 * PG);
	assert_true(k->ram[2 * PG] == 0 && k->ram[3 * PG - 1] == 0);
	assert_memory_equal(k->ram + R0_SIZE, pages + 2 * PG, PG);

	/* Every malformed variant is refused before anything is applied. */
	k->calls = 0;
	stream_put32(p + 8 + 3 * 16 + 4, 1);
	assert_int_equal(parse_lz4(&cfg, p, len, scratch, k, err), -EBADMSG);
	assert_non_null(strstr(err, "LZ4 reserved"));
	stream_put32(p + 8 + 3 * 16 + 4, 0);
	assert_int_equal(parse_lz4(&cfg, p, len - 1, scratch, k, err), -EBADMSG);
	assert_non_null(strstr(err, "LZ4 block of"));
	/* One data page fewer announced: the block expands to more than the runs say. */
	stream_put32(p + 16, 1);
	assert_int_equal(parse_lz4(&cfg, p, len, scratch, k, err), -EBADMSG);
	assert_non_null(strstr(err, "does not expand"));
	stream_put32(p + 16, 2);
	/* A corrupt block (a literal length running past the end). */
	memset(p + 8 + 3 * 16 + 8, 0xff, (size_t)clen);
	assert_int_equal(parse_lz4(&cfg, p, len, scratch, k, err), -EBADMSG);
	/* Runs are checked as in RAM records; no header for the block at all. */
	assert_int_equal(parse_lz4(&cfg, p, 8 + 3 * 16 + 4, scratch, k, err), -EBADMSG);
	assert_non_null(strstr(err, "no LZ4 block header"));
	len = lz4_payload(p, pages, cbuf, &clen);
	stream_put64(p + 8 + 2 * 16, R1_GPA + R1_SIZE);
	assert_int_equal(parse_lz4(&cfg, p, len, scratch, k, err), -EBADMSG);
	assert_non_null(strstr(err, "not inside one RAM region"));
	assert_int_equal(k->calls, 0);

	/* Incompressible pages are not worth a block; the writer's own checks. */
	for (i = 0; i < 3 * (int)PG; i++)
		pages[i] = (uint8_t)(XXH64(&i, sizeof(i), 7) >> 13);
	assert_int_equal(stream__lz4_compress(pages, 3 * PG, cbuf), -ENOSPC);
	assert_int_equal(stream__lz4_compress(pages, 0, cbuf), -EINVAL);
	free(scratch);
	free(k);
	free(p);
	free(cbuf);
	free(pages);
}

/* RAM_ZSTD: the same layout with a zstd frame; the same refusals, and zstd's own. */
static void test_ram_zstd(void **state)
{
	uint8_t *pages = calloc(3, PG), *cbuf = malloc(STREAM_RAM_LZ4_BOUND);
	uint8_t *p = malloc(8 + 3 * 16 + 8 + STREAM_RAM_LZ4_BOUND), *scratch;
	struct lz4_sink *k = calloc(1, sizeof(*k));
	void *cctx = stream__zstd_cctx(), *dctx = NULL;
	const size_t off = 8 + 3 * 16;
	struct stream_config cfg;
	char err[256];
	size_t len;
	int clen, lz4_len, i;

	(void)state;
	assert_non_null(cctx);
	scratch = malloc(STREAM_RAM_MAX_DATA_LEN);
	make_cfg(&cfg);
	for (i = 0; i < 3 * (int)PG; i += 64)
		pages[i] = (uint8_t)(i / 64 + 1);
	/* The LZ4 payload's runs, with the block swapped for a zstd frame. */
	len = lz4_payload(p, pages, cbuf, &lz4_len);
	clen = stream__zstd_compress(cctx, pages, 3 * PG, cbuf);
	assert_true(clen > 0 && clen < lz4_len);
	stream_put32(p + off, (uint32_t)clen);
	memcpy(p + off + 8, cbuf, (size_t)clen);
	len = off + 8 + (size_t)clen;
	memset(k->ram, 0xee, sizeof(k->ram));
	assert_int_equal(stream__ram_packed_parse(&cfg, STREAM_REC_RAM_ZSTD, p, len, scratch, &dctx,
						  lz4_apply, k, err, 256),
			 0);
	assert_non_null(dctx); /* made by the first RAM_ZSTD record, kept for the next */
	assert_int_equal(k->calls, 3);
	assert_memory_equal(k->ram, pages, 2 * PG);
	assert_memory_equal(k->ram + R0_SIZE, pages + 2 * PG, PG);

	k->calls = 0;
	/* Without a place for its context a RAM_ZSTD record is refused. */
	assert_int_equal(stream__ram_packed_parse(&cfg, STREAM_REC_RAM_ZSTD, p, len, scratch, NULL,
						  lz4_apply, k, err, 256),
			 -EBADMSG);
	stream_put32(p + 16, 1); /* one data page fewer announced than the frame holds */
	assert_int_equal(stream__ram_packed_parse(&cfg, STREAM_REC_RAM_ZSTD, p, len, scratch, &dctx,
						  lz4_apply, k, err, 256),
			 -EBADMSG);
	assert_non_null(strstr(err, "does not expand"));
	stream_put32(p + 16, 2);
	stream_put32(p + off + 4, 1);
	assert_int_equal(stream__ram_packed_parse(&cfg, STREAM_REC_RAM_ZSTD, p, len, scratch, &dctx,
						  lz4_apply, k, err, 256),
			 -EBADMSG);
	assert_non_null(strstr(err, "zstd reserved"));
	stream_put32(p + off + 4, 0);
	p[off + 8] ^= 0xff; /* not a zstd frame (its magic) */
	assert_int_equal(stream__ram_packed_parse(&cfg, STREAM_REC_RAM_ZSTD, p, len, scratch, &dctx,
						  lz4_apply, k, err, 256),
			 -EBADMSG);
	assert_int_equal(k->calls, 0);
	/* Incompressible pages are not worth a frame; the compressor's own checks. */
	for (i = 0; i < 3 * (int)PG; i++)
		pages[i] = (uint8_t)(XXH64(&i, sizeof(i), 7) >> 13);
	assert_int_equal(stream__zstd_compress(cctx, pages, 3 * PG, cbuf), -ENOSPC);
	assert_int_equal(stream__zstd_compress(cctx, pages, 0, cbuf), -EINVAL);
	assert_int_equal(stream__zstd_compress(NULL, pages, PG, cbuf), -EINVAL);
	stream__zstd_free(cctx, dctx);
	free(scratch);
	free(k);
	free(p);
	free(cbuf);
	free(pages);
}

static void test_accepted_and_round_ack(void **state)
{
	uint8_t b[8];
	uint32_t v, n;

	(void)state;
	assert_int_equal(stream__accepted_decode(NULL, 0, &v, &n), 0);
	assert_int_equal(v, 0);
	assert_int_equal(n, 1);
	stream_put32(b, STREAM_FEATURE_RAM_LZ4 | STREAM_FEATURE_ROUND_ACK);
	assert_int_equal(stream__accepted_decode(b, 4, &v, &n), 0);
	assert_int_equal(v, STREAM_FEATURE_RAM_LZ4 | STREAM_FEATURE_ROUND_ACK);
	assert_int_equal(n, 1);
	/* 1.3: the connections taken follow the features */
	stream_put32(b + 4, 8);
	assert_int_equal(stream__accepted_decode(b, 8, &v, &n), 0);
	assert_int_equal(n, 8);
	stream_put32(b + 4, 0);
	assert_int_equal(stream__accepted_decode(b, 8, &v, &n), -EBADMSG);
	stream_put32(b + 4, STREAM_MAX_CONNECTIONS + 1);
	assert_int_equal(stream__accepted_decode(b, 8, &v, &n), -EBADMSG);
	assert_int_equal(stream__accepted_decode(b, 6, &v, &n), -EBADMSG);
	stream_put32(b, 1U << 31);
	assert_int_equal(stream__accepted_decode(b, 4, &v, &n), -EBADMSG);
	assert_int_equal(stream__accepted_decode(b, 3, &v, &n), -EBADMSG);
	stream_put32(b, 7);
	assert_int_equal(stream__round_ack_decode(b, 4, &v), 0);
	assert_int_equal(v, 7);
	assert_int_equal(stream__round_ack_decode(b, 5, &v), -EBADMSG);
}

/* ---- CONFIG validation ----------------------------------------------------------- */

/* Encodes without validating, so decode's own validation is what is tested. */
static void raw_encode(const struct stream_config *c, struct stream_tlv_writer *tw)
{
	struct stream_tlv_writer d;
	unsigned int i;
	uint8_t rg[16];

	stream__tlv_put_u64(tw, STREAM_CFG_RAM_SIZE, 0, c->ram_size);
	stream__tlv_put_u32(tw, STREAM_CFG_NR_VCPUS, 0, c->nr_vcpus);
	stream__tlv_put_str(tw, STREAM_CFG_CMDLINE, 0, c->cmdline);
	for (i = 0; i < c->nr_regions; i++) {
		stream_put64(rg, c->regions[i].gpa);
		stream_put64(rg + 8, c->regions[i].size);
		stream__tlv_put_bytes(tw, STREAM_CFG_REGION, 0, rg, 16);
	}
	stream__tlv_put_bytes(tw, STREAM_CFG_UUID, 0, c->uuid, 16);
	stream__tlv_put_bytes(tw, STREAM_CFG_CPUID, 0, c->cpuid, c->cpuid_len);
	stream__tlv_put_u32(tw, STREAM_CFG_MACHINE_VERSION, 0, c->machine_version);
	for (i = 0; i < c->nr_devices; i++) {
		stream__tlv_writer_init(&d);
		stream__tlv_put_str(&d, STREAM_DEV_TYPE, 0, c->devices[i].type);
		stream__tlv_put_u32(&d, STREAM_DEV_INSTANCE, 0, c->devices[i].instance);
		stream__tlv_put_bytes(tw, STREAM_CFG_DEVICE, 0, d.buf, d.len);
		stream__tlv_writer_exit(&d);
	}
}

/* Both the encoder (validate) and the decoder must refuse the mutated config. */
static int decode_with(void (*mutate)(struct stream_config *), char *err)
{
	struct stream_tlv_writer tw;
	struct stream_config cfg, out;
	char err2[256];
	int ret;

	make_cfg(&cfg);
	mutate(&cfg);
	stream__tlv_writer_init(&tw);
	assert_int_equal(stream__config_encode(&cfg, &tw, err2, sizeof(err2)), -EBADMSG);
	assert_int_equal(tw.len, 0);
	raw_encode(&cfg, &tw);
	assert_int_equal(tw.err, 0);
	ret = stream__config_decode(tw.buf, tw.len, &out, err, 256);
	assert_null(out.cpuid);
	stream__tlv_writer_exit(&tw);
	return ret;
}

static void m_vcpus0(struct stream_config *c)
{
	c->nr_vcpus = 0;
}
static void m_vcpus256(struct stream_config *c)
{
	c->nr_vcpus = 256;
}
static void m_overlap(struct stream_config *c)
{
	c->regions[1].gpa = R0_SIZE - PG;
}
static void m_unaligned(struct stream_config *c)
{
	c->regions[1].gpa += 512;
}
static void m_total(struct stream_config *c)
{
	c->ram_size += PG;
}
static void m_noregion(struct stream_config *c)
{
	c->nr_regions = 0;
}
static void m_empty(struct stream_config *c)
{
	c->regions[1].size = 0;
	c->ram_size = R0_SIZE;
}
static void m_beyond(struct stream_config *c)
{
	c->regions[1].gpa = STREAM_GPA_LIMIT - PG;
}
static void m_order(struct stream_config *c)
{
	struct stream_region t = c->regions[0];

	c->regions[0] = c->regions[1];
	c->regions[1] = t;
}
static void m_devdup(struct stream_config *c)
{
	strcpy(c->devices[1].type, "serial");
}
static void m_devtype(struct stream_config *c)
{
	strcpy(c->devices[1].type, "Virtio Net");
}
static void m_ramsize(struct stream_config *c)
{
	c->ram_size = 0;
}

static void test_config_validation(void **state)
{
	static const struct {
		void (*mutate)(struct stream_config *);
		const char *msg;
	} cases[] = {
	    {m_vcpus0, "nr_vcpus 0"},
	    {m_vcpus256, "nr_vcpus 256"},
	    {m_overlap, "overlaps"},
	    {m_unaligned, "unaligned"},
	    {m_total, "regions add up to"},
	    {m_noregion, "region"},
	    {m_empty, "empty"},
	    {m_beyond, "beyond 2^52"},
	    {m_order, "overlaps or precedes"},
	    {m_devdup, "serial.0 listed twice"},
	    {m_devtype, "bad type"},
	    {m_ramsize, "ram_size 0x0"},
	};
	char err[256];
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		err[0] = '\0';
		assert_int_equal(decode_with(cases[i].mutate, err), -EBADMSG);
		if (!strstr(err, cases[i].msg))
			print_error("case %zu: \"%s\"\n", i, err);
		assert_non_null(strstr(err, cases[i].msg));
	}
}

/* Builds a CONFIG payload field by field to break its TLV structure. */
static int decode_tlv(void (*build)(struct stream_tlv_writer *), char *err)
{
	struct stream_tlv_writer tw;
	struct stream_config out;
	int ret;

	stream__tlv_writer_init(&tw);
	build(&tw);
	ret = stream__config_decode(tw.buf, tw.len, &out, err, 256);
	stream__config_release(&out);
	stream__tlv_writer_exit(&tw);
	return ret;
}

static void base_fields(struct stream_tlv_writer *tw, bool cpuid)
{
	uint8_t rg[16];

	stream__tlv_put_u64(tw, STREAM_CFG_RAM_SIZE, 0, 64 * KiB);
	stream__tlv_put_u32(tw, STREAM_CFG_NR_VCPUS, 0, 1);
	stream__tlv_put_str(tw, STREAM_CFG_CMDLINE, 0, "");
	stream_put64(rg, 0);
	stream_put64(rg + 8, 64 * KiB);
	stream__tlv_put_bytes(tw, STREAM_CFG_REGION, 0, rg, 16);
	stream__tlv_put_bytes(tw, STREAM_CFG_UUID, 0, "0123456789abcdef", 16);
	if (cpuid)
		stream__tlv_put_bytes(tw, STREAM_CFG_CPUID, 0, "", 0);
	stream__tlv_put_u32(tw, STREAM_CFG_MACHINE_VERSION, 0, 1);
}

static void b_ok(struct stream_tlv_writer *tw)
{
	base_fields(tw, true);
}
static void b_missing(struct stream_tlv_writer *tw)
{
	base_fields(tw, false);
}
static void b_unknown_req(struct stream_tlv_writer *tw)
{
	base_fields(tw, true);
	stream__tlv_put_u32(tw, 99, 0, 1);
}
static void b_unknown_opt(struct stream_tlv_writer *tw)
{
	base_fields(tw, true);
	stream__tlv_put_u32(tw, 99, STREAM_TLV_OPTIONAL, 1);
	stream__tlv_put_u32(tw, 40000, STREAM_TLV_OPTIONAL, 1);
}
static void b_dup(struct stream_tlv_writer *tw)
{
	base_fields(tw, true);
	stream__tlv_put_u32(tw, STREAM_CFG_NR_VCPUS, 0, 1);
}
static void b_three_regions(struct stream_tlv_writer *tw)
{
	uint8_t rg[16] = {0};

	base_fields(tw, true);
	stream__tlv_put_bytes(tw, STREAM_CFG_REGION, 0, rg, 16);
	stream__tlv_put_bytes(tw, STREAM_CFG_REGION, 0, rg, 16);
}
static void b_nul_cmdline(struct stream_tlv_writer *tw)
{
	stream__tlv_put_bytes(tw, STREAM_CFG_CMDLINE, 0, "a\0b", 3);
}
static void b_long_cmdline(struct stream_tlv_writer *tw)
{
	static char big[STREAM_CMDLINE_MAX + 1];

	memset(big, 'a', sizeof(big));
	stream__tlv_put_bytes(tw, STREAM_CFG_CMDLINE, 0, big, sizeof(big));
}
static void b_short_u64(struct stream_tlv_writer *tw)
{
	stream__tlv_put_u32(tw, STREAM_CFG_RAM_SIZE, 0, 1);
}
static void b_past_end(struct stream_tlv_writer *tw)
{
	base_fields(tw, true);
	stream_put32(tw->buf + 4, 1000); /* first field's length beyond the payload */
}
static void b_trailing(struct stream_tlv_writer *tw)
{
	base_fields(tw, true);
	tw->len += 3; /* a partial field header (buffer has room) */
}
static void b_badflags(struct stream_tlv_writer *tw)
{
	base_fields(tw, true);
	stream_put16(tw->buf + 2, 0x8000);
}
static void b_bad_device(struct stream_tlv_writer *tw)
{
	base_fields(tw, true);
	stream__tlv_put_bytes(tw, STREAM_CFG_DEVICE, 0, "\x01\0\0\0\x09\0\0\0abc", 11);
}

static void test_config_tlv(void **state)
{
	static const struct {
		void (*build)(struct stream_tlv_writer *);
		const char *msg;
	} cases[] = {
	    {b_ok, NULL},
	    {b_unknown_opt, NULL},
	    {b_missing, "missing field cpuid"},
	    {b_unknown_req, "unknown required field tag 99"},
	    {b_dup, "field tag 2 twice"},
	    {b_three_regions, "more than 2 regions"},
	    {b_nul_cmdline, "cmdline of 3 bytes or with a NUL"},
	    {b_long_cmdline, "cmdline of 4097 bytes"},
	    {b_short_u64, "ram_size"},
	    {b_past_end, "length past end"},
	    {b_trailing, "length past end"},
	    {b_badflags, "malformed field"},
	    {b_bad_device, "device: malformed field"},
	};
	char err[256];
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		int ret;

		err[0] = '\0';
		ret = decode_tlv(cases[i].build, err);
		if (!cases[i].msg) {
			if (ret)
				print_error("case %zu: %s\n", i, err);
			assert_int_equal(ret, 0);
			continue;
		}
		if (!strstr(err, cases[i].msg))
			print_error("case %zu: \"%s\"\n", i, err);
		assert_int_equal(ret, -EBADMSG);
		assert_non_null(strstr(err, cases[i].msg));
	}
}

/* ---- TLV, STATE, VERIFY --------------------------------------------------------- */

static void test_tlv_bounds(void **state)
{
	struct stream_tlv_writer tw;
	struct stream_tlv_reader tr;
	struct stream_tlv t;
	uint32_t v32;
	uint64_t v64;
	size_t cut;

	(void)state;
	stream__tlv_writer_init(&tw);
	assert_int_equal(stream__tlv_put_u32(&tw, 1, 0, 0xdeadbeef), 0);
	assert_int_equal(stream__tlv_put_u64(&tw, 2, STREAM_TLV_OPTIONAL, 1ULL << 40), 0);
	assert_int_equal(stream__tlv_put_bytes(&tw, 3, 0, NULL, 0), 0);
	assert_int_equal(stream__tlv_put_u32(&tw, 4, 0x4, 0), -EINVAL);
	assert_int_equal(tw.err, -EINVAL); /* sticky */
	assert_int_equal(stream__tlv_put_u32(&tw, 5, 0, 0), -EINVAL);
	tw.err = 0;

	stream__tlv_reader_init(&tr, tw.buf, tw.len);
	assert_int_equal(stream__tlv_next(&tr, &t), 1);
	assert_int_equal(stream__tlv_u32(&t, &v32), 0);
	assert_int_equal(v32, 0xdeadbeef);
	assert_int_equal(stream__tlv_u64(&t, &v64), -EBADMSG);
	assert_int_equal(stream__tlv_next(&tr, &t), 1);
	assert_int_equal(t.flags, STREAM_TLV_OPTIONAL);
	assert_int_equal(stream__tlv_u64(&t, &v64), 0);
	assert_int_equal(v64, 1ULL << 40);
	assert_int_equal(stream__tlv_next(&tr, &t), 1);
	assert_int_equal(t.len, 0);
	assert_int_equal(stream__tlv_next(&tr, &t), 0);

	/* every cut inside a field is an error, never a read past the end */
	for (cut = 1; cut < tw.len; cut++) {
		uint8_t *copy = malloc(cut);
		int ret;

		memcpy(copy, tw.buf, cut);
		stream__tlv_reader_init(&tr, copy, cut);
		while ((ret = stream__tlv_next(&tr, &t)) > 0)
			;
		if (cut != 12 && cut != 28)
			assert_int_equal(ret, -EBADMSG);
		free(copy);
	}
	/* a length of 0xffffffff must not wrap the bounds check */
	stream_put32(tw.buf + 4, 0xffffffff);
	stream__tlv_reader_init(&tr, tw.buf, tw.len);
	assert_int_equal(stream__tlv_next(&tr, &t), -EBADMSG);
	stream__tlv_writer_exit(&tw);
}

static void test_state_parse(void **state)
{
	struct stream_state_hdr sh;
	struct stream_tlv_reader tr;
	uint8_t p[48] = {0};
	char err[256];

	(void)state;
	memcpy(p, "irqchip.ioapic", 14);
	stream_put32(p + 32, 3);
	stream_put32(p + 36, 2);
	assert_int_equal(stream__state_parse(p, sizeof(p), &sh, &tr, err, sizeof(err)), 0);
	assert_string_equal(sh.id, "irqchip.ioapic");
	assert_int_equal(sh.instance, 3);
	assert_int_equal(sh.version, 2);
	assert_int_equal(tr.len, 8);
	p[20] = 'x'; /* garbage after the NUL */
	assert_int_equal(stream__state_parse(p, sizeof(p), &sh, &tr, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "NUL-padded"));
	memset(p, 'a', 32); /* no terminator */
	assert_int_equal(stream__state_parse(p, sizeof(p), &sh, &tr, err, sizeof(err)), -EBADMSG);
	memset(p, 0, 32);
	assert_int_equal(stream__state_parse(p, sizeof(p), &sh, &tr, err, sizeof(err)), -EBADMSG);
	memcpy(p, "VCPU", 4);
	assert_int_equal(stream__state_parse(p, sizeof(p), &sh, &tr, err, sizeof(err)), -EBADMSG);
	assert_int_equal(stream__state_parse(p, 39, &sh, &tr, err, sizeof(err)), -EBADMSG);
}

/* A chunk that is a hole in the memfd hashes like one full of zeros, without reading it. */
static void test_digest_of_holes(void **state)
{
	static const uint8_t zero_page[PG], one = 1;
	struct guest_mem holes, zeros;
	uint64_t *a, *b;
	size_t na, nb, i;

	(void)state;
	assert_int_equal(guest_mem__init(&holes, 8 * MiB), 0);
	assert_int_equal(guest_mem__init(&zeros, 8 * MiB), 0);
	for (i = 0; i < 8 * MiB; i += PG)
		assert_int_equal(guest_mem__write(&zeros, i, zero_page, PG), 0);
	assert_int_equal(stream__ram_digest(&holes, &a, &na), 0);
	assert_int_equal(stream__ram_digest(&zeros, &b, &nb), 0);
	assert_int_equal(na, nb);
	assert_memory_equal(a, b, na * sizeof(*a));
	free(a);
	free(b);
	/* One byte written in the third chunk: only that digest changes. */
	assert_int_equal(guest_mem__write(&holes, 2 * STREAM_DIGEST_CHUNK + 7, &one, 1), 0);
	assert_int_equal(stream__ram_digest(&holes, &a, &na), 0);
	assert_int_equal(stream__ram_digest(&zeros, &b, &nb), 0);
	for (i = 0; i < na; i++)
		assert_true((a[i] != b[i]) == (i == 2));
	free(a);
	free(b);
	guest_mem__exit(&holes);
	guest_mem__exit(&zeros);
}

static void test_verify(void **state)
{
	static uint8_t ram[RAM_SIZE];
	struct stream_config cfg;
	struct guest_mem mem;
	uint64_t *a, *b, *d, gpa = 0;
	size_t na, nb, nd;
	char err[256];
	uint8_t p[24];

	(void)state;
	make_cfg(&cfg);
	fake_mem(&mem, ram);
	memset(ram, 0x11, sizeof(ram));
	assert_int_equal(stream__ram_digest(&mem, &a, &na), 0);
	assert_int_equal(na, stream__digest_count(&cfg));
	ram[R0_SIZE + 5] ^= 1; /* a byte in the second region */
	assert_int_equal(stream__ram_digest(&mem, &b, &nb), 0);
	assert_int_equal(stream__ram_digest_compare(&cfg, a, na, a, na, &gpa), 0);
	assert_int_equal(stream__ram_digest_compare(&cfg, a, na, b, nb, &gpa), -EBADMSG);
	assert_int_equal(gpa, R1_GPA);
	assert_int_equal(stream__ram_digest_compare(&cfg, a, na, b, nb - 1, &gpa), -EINVAL);

	stream_put64(p, STREAM_DIGEST_CHUNK);
	stream_put64(p + 8, 1);
	stream_put64(p + 16, 77);
	assert_int_equal(stream__verify_decode(p, 24, &d, &nd, err, sizeof(err)), 0);
	assert_int_equal(nd, 1);
	assert_int_equal(d[0], 77);
	free(d);
	stream_put64(p + 8, 2);
	assert_int_equal(stream__verify_decode(p, 24, &d, &nd, err, sizeof(err)), -EBADMSG);
	stream_put64(p + 8, UINT64_MAX / 4);
	assert_int_equal(stream__verify_decode(p, 24, &d, &nd, err, sizeof(err)), -EBADMSG);
	stream_put64(p, 4096);
	assert_int_equal(stream__verify_decode(p, 24, &d, &nd, err, sizeof(err)), -EBADMSG);
	assert_int_equal(stream__verify_decode(p, 23, &d, &nd, err, sizeof(err)), -EBADMSG);
	free(a);
	free(b);
}

/* ---- fd I/O ------------------------------------------------------------------- */

static void test_fd_io(void **state)
{
	static uint8_t big[STREAM_RAM_MAX_DATA_PAGES * PG];
	char path[] = "/tmp/godwit-stream-XXXXXX";
	struct stream_ram_run run = {0, R0_SIZE / PG, STREAM_RAM_DATA};
	const uint8_t *data[] = {big};
	struct loader *l = new_loader();
	struct stream_config cfg;
	struct stream_writer w;
	struct stream_reader r;
	struct stream_record rec;
	struct stream_io io;
	char err[256];
	int fd, calls = 0;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7);
	make_cfg(&cfg);
	cfg.regions[0].size = 4 * MiB;
	cfg.regions[1].gpa = 8 * MiB;
	cfg.ram_size = 4 * MiB + R1_SIZE;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(stream_io__init_fd(&io, fd), 0);
	assert_int_equal(stream__writer_init(&w, &io, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__write_header(&w), 0);
	assert_int_equal(stream__write_config(&w, &cfg), 0);
	for (i = 0; i < 3; i++) {
		run.npages = i == 1 ? STREAM_RAM_MAX_DATA_PAGES : 1 + (uint32_t)i;
		assert_int_equal(stream__write_ram(&w, &run, 1, data), 0);
	}
	assert_int_equal(stream__write_end(&w), 0);
	assert_int_equal(io.bytes_written, w.bytes);
	stream__writer_exit(&w);
	stream_io__exit(&io);

	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(stream_io__init_fd(&io, fd), 0);
	assert_int_equal(stream__reader_init(&r, &io, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__read_header(&r, NULL), 0);
	assert_int_equal(stream__read_record(&r, &rec), 0);
	for (i = 0; i < 3; i++) {
		assert_int_equal(stream__read_record(&r, &rec), 0);
		assert_int_equal(rec.type, STREAM_REC_RAM);
		assert_int_equal(stream__ram_record_parse(&cfg, rec.payload, rec.length, count_cb,
							  &calls, err, sizeof(err)),
				 0);
		assert_memory_equal(rec.payload + 24, big, rec.length - 24);
	}
	assert_int_equal(stream__read_record(&r, &rec), 0);
	assert_int_equal(rec.type, STREAM_REC_END);
	assert_int_equal(calls, 3);
	stream__reader_exit(&r);
	stream_io__exit(&io);
	close(fd);
	free(l);
}

/*
 * GODWIT_WRITE_SEEDS=DIR writes the fuzzer's seed corpus (small valid streams) into
 * DIR: `GODWIT_WRITE_SEEDS=fuzz/corpus/fuzz_stream build/tests/unit/test_stream`.
 */
static void write_seed(const char *dir, const char *name, const uint8_t *buf, size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	fclose(f);
}

static void test_write_seeds(void **state)
{
	struct stream_ram_run run = {R1_GPA, 1, STREAM_RAM_DATA};
	static const int seq[] = {S_CFG, S_RAM, S_ROUND, S_UNK, S_STATE, S_VERIFY};
	const char *dir = getenv("GODWIT_WRITE_SEEDS");
	struct stream_writer w;
	struct stream_reader r;
	struct stream_record rec;
	struct stream_io io, in;
	const uint8_t *buf;
	uint8_t end[16];
	size_t len, i;

	(void)state;
	if (!dir)
		skip();
	/* one data page: the RAM apply path */
	memset(page_a, 0xa5, PG);
	begin(&io, &w);
	assert_int_equal(stream__write_ram(&w, &run, 1, (const uint8_t *const[]){page_a}), 0);
	assert_int_equal(stream__write_state(&w, "vcpu", 0, 1, NULL), 0);
	assert_int_equal(stream__write_end(&w), 0);
	stream__writer_exit(&w);
	buf = stream_io__mem_data(&io, &len);
	write_seed(dir, "one_page.bin", buf, len);
	stream_io__exit(&io);

	/* the same page as an LZ4 block and as a zstd frame: the RAM_LZ4 and RAM_ZSTD paths */
	for (i = 0; i < 2; i++) {
		uint8_t *cbuf = malloc(STREAM_RAM_LZ4_BOUND);
		void *cctx = i ? stream__zstd_cctx() : NULL;
		int clen;

		assert_non_null(cbuf);
		clen = i ? stream__zstd_compress(cctx, page_a, PG, cbuf)
			 : stream__lz4_compress(page_a, PG, cbuf);
		assert_true(clen > 0);
		begin(&io, &w);
		assert_int_equal(stream__write_ram_packed(&w, i ? STREAM_REC_RAM_ZSTD : STREAM_REC_RAM_LZ4,
							  &run, 1, cbuf, (uint32_t)clen),
				 0);
		assert_int_equal(stream__write_end(&w), 0);
		stream__writer_exit(&w);
		buf = stream_io__mem_data(&io, &len);
		write_seed(dir, i ? "one_page_zstd.bin" : "one_page_lz4.bin", buf, len);
		stream_io__exit(&io);
		stream__zstd_free(cctx, NULL);
		free(cbuf);
	}

	/* every record type but without data pages, plus an unknown optional record */
	write_seq(&io, seq, ARRAY_SIZE(seq));
	buf = stream_io__mem_data(&io, &len);
	stream_io__init_mem_reader(&in, buf, len);
	assert_int_equal(stream__reader_init(&r, &in, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__read_header(&r, NULL), 0);
	for (i = 0; i + 1 < ARRAY_SIZE(seq); i++)
		assert_int_equal(stream__read_record(&r, &rec), 0);
	stream_put64(end, r.nr_records);
	stream_put64(end + 8, r.running);
	stream__reader_exit(&r);
	raw_rec(&io, STREAM_REC_END, 1, end, sizeof(end));
	buf = stream_io__mem_data(&io, &len);
	write_seed(dir, "small.bin", buf, len);
	stream_io__exit(&io);

	stream_io__init_mem_writer(&io);
	assert_int_equal(stream__writer_init(&w, &io, STREAM_CTX_CONTROL), 0);
	assert_int_equal(stream__write_control(&w, STREAM_REC_READY), 0);
	assert_int_equal(stream__write_accepted(&w, STREAM_FEATURE_RAM_LZ4, 0), 0);
	assert_int_equal(stream__write_accepted(&w, STREAM_FEATURE_RAM_LZ4, 4), 0);
	assert_int_equal(stream__write_stripe(&w, 4, 0), 0);
	assert_int_equal(stream__write_stripe(&w, 4, 16 * KiB), 0);
	assert_int_equal(stream__write_join(&w, (const uint8_t *)"0123456789abcdef", 3), 0);
	assert_int_equal(stream__write_round_ack(&w, 3), 0);
	assert_int_equal(stream__write_error(&w, 5, "no disk"), 0);
	stream__writer_exit(&w);
	buf = stream_io__mem_data(&io, &len);
	write_seed(dir, "control.bin", buf, len);
	stream_io__exit(&io);

	/* what an extra connection sends first (format 1.3) */
	stream_io__init_mem_writer(&io);
	assert_int_equal(stream__writer_init(&w, &io, STREAM_CTX_CONTROL), 0);
	assert_int_equal(stream__write_join(&w, (const uint8_t *)"0123456789abcdef", 2), 0);
	stream__writer_exit(&w);
	buf = stream_io__mem_data(&io, &len);
	write_seed(dir, "join.bin", buf, len);
	stream_io__exit(&io);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip_full),
	    cmocka_unit_test(test_config_roundtrip),
	    cmocka_unit_test(test_ram_zstd),
	    cmocka_unit_test(test_control_roundtrip),
	    cmocka_unit_test(test_control_rejects_data),
	    cmocka_unit_test(test_header),
	    cmocka_unit_test(test_unknown_types),
	    cmocka_unit_test(test_length_limits),
	    cmocka_unit_test(test_checksum),
	    cmocka_unit_test(test_truncation),
	    cmocka_unit_test(test_order),
	    cmocka_unit_test(test_error_mid_stream),
	    cmocka_unit_test(test_order_ok_and_after_end),
	    cmocka_unit_test(test_end_mismatch),
	    cmocka_unit_test(test_ram_runs),
	    cmocka_unit_test(test_ram_writer),
	    cmocka_unit_test(test_ram_lz4),
	    cmocka_unit_test(test_accepted_and_round_ack),
	    cmocka_unit_test(test_config_validation),
	    cmocka_unit_test(test_config_tlv),
	    cmocka_unit_test(test_tlv_bounds),
	    cmocka_unit_test(test_state_parse),
	    cmocka_unit_test(test_verify),
	    cmocka_unit_test(test_digest_of_holes),
	    cmocka_unit_test(test_fd_io),
	    cmocka_unit_test(test_write_seeds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
