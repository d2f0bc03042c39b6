// SPDX-License-Identifier: GPL-2.0
/*
 * Format 1.8's disks in the stream (migration without shared storage): CONFIG's
 * disk_to and its refusals, the DISK record's encoding and decoding, the order rule
 * (no DISK after device state), and what the destination checks of each DISK
 * (stream_check__disk): a disk CONFIG sends, a range within its announced size without
 * wrapping, one DONE of the whole image, and no END before it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/stream.h"
#include "godwit/stream_check.h"

#define DISK_SIZE (1 * MiB)

static uint8_t cpuid_blob[32] = {1, 2, 3};

static struct stream_config *make_cfg(void)
{
	struct stream_config *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	c->ram_size = 64 * MiB;
	c->nr_vcpus = 1;
	c->machine_version = STREAM_MACHINE_VERSION;
	c->nr_regions = 1;
	c->regions[0] = (struct stream_region){0, 64 * MiB};
	c->cpuid = cpuid_blob;
	c->cpuid_len = sizeof(cpuid_blob);
	c->features = STREAM_FEATURE_DISK_TO;
	c->nr_devices = 3;
	snprintf(c->devices[0].type, sizeof(c->devices[0].type), "serial");
	snprintf(c->devices[1].type, sizeof(c->devices[1].type), "virtio-blk");
	c->devices[1].capacity = DISK_SIZE;
	snprintf(c->devices[1].disk_to, sizeof(c->devices[1].disk_to), "vm.img");
	snprintf(c->devices[2].type, sizeof(c->devices[2].type), "virtio-blk");
	c->devices[2].instance = 1;
	c->devices[2].capacity = DISK_SIZE;
	return c;
}

/* cfg encoded and decoded again: 0, or decode's error. */
static int round_trip(const struct stream_config *cfg, struct stream_config *out)
{
	struct stream_tlv_writer tw;
	char err[256];
	int ret;

	stream__tlv_writer_init(&tw);
	/* The encoder validates too: bypass it for what it would refuse. */
	ret = stream__config_encode(cfg, &tw, err, sizeof(err));
	if (!ret) {
		ret = stream__config_decode(tw.buf, tw.len, out, err, sizeof(err));
		if (!ret)
			stream__config_release(out);
	}
	stream__tlv_writer_exit(&tw);
	return ret;
}

static void test_config_disk_to(void **state)
{
	struct stream_config *c = make_cfg(), *out = calloc(1, sizeof(*out));
	char err[256];

	(void)state;
	assert_non_null(out);
	assert_int_equal(stream__config_validate(c, err, sizeof(err)), 0);
	assert_int_equal(round_trip(c, out), 0);
	assert_string_equal(out->devices[1].disk_to, "vm.img");
	assert_string_equal(out->devices[2].disk_to, "");
	assert_true(out->features & STREAM_FEATURE_DISK_TO);

	/* Only a disk, with a capacity, with the feature offered. */
	c->features = 0;
	assert_int_equal(stream__config_validate(c, err, sizeof(err)), -EBADMSG);
	c->features = STREAM_FEATURE_DISK_TO;
	c->devices[1].capacity = 0;
	assert_int_equal(stream__config_validate(c, err, sizeof(err)), -EBADMSG);
	c->devices[1].capacity = DISK_SIZE;
	snprintf(c->devices[0].disk_to, sizeof(c->devices[0].disk_to), "x");
	assert_int_equal(stream__config_validate(c, err, sizeof(err)), -EBADMSG);
	free(c);
	free(out);
}

static void test_check_wants_disk_in_device_order(void **state)
{
	struct stream_config *c = make_cfg();
	struct stream_check chk;
	char why[256];

	(void)state;
	assert_int_equal(stream_check__config(&chk, c, STREAM_VERSION_MINOR, why, sizeof(why)), 0);
	assert_true(chk.disk_in[0] && !chk.disk_in[1]);
	assert_int_equal(chk.disk_size[0], DISK_SIZE);
	stream_check__exit(&chk);
	/* The disk sent is the VM's second disk but calls itself instance 5. */
	c->devices[1].disk_to[0] = '\0';
	snprintf(c->devices[2].disk_to, sizeof(c->devices[2].disk_to), "vm.img");
	c->devices[2].instance = 5;
	assert_int_equal(stream_check__config(&chk, c, STREAM_VERSION_MINOR, why, sizeof(why)),
			 -EINVAL);
	stream_check__exit(&chk);
	free(c);
}

/* A DISK record's payload, crafted. */
static struct stream_record disk_rec(uint8_t *buf, uint32_t disk, uint32_t kind, uint64_t off,
				     uint64_t len, size_t data_len)
{
	stream_put32(buf, disk);
	stream_put32(buf + 4, kind);
	stream_put64(buf + 8, off);
	stream_put64(buf + 16, len);
	memset(buf + STREAM_DISK_HDR_LEN, 0x5a, data_len);
	return (struct stream_record){
	    .type = STREAM_REC_DISK, .length = STREAM_DISK_HDR_LEN + data_len, .payload = buf};
}

static void test_check_disk_records(void **state)
{
	static uint8_t buf[STREAM_DISK_HDR_LEN + 8192];
	struct stream_config *c = make_cfg();
	struct stream_record rec;
	struct stream_check chk;
	struct stream_disk d;
	char why[256];

	(void)state;
	assert_int_equal(stream_check__config(&chk, c, STREAM_VERSION_MINOR, why, sizeof(why)), 0);
	rec = disk_rec(buf, 0, STREAM_DISK_DATA, 4096, 8192, 8192);
	assert_int_equal(stream_check__disk(&chk, &rec, &d, why, sizeof(why)), 0);
	assert_int_equal(d.kind, STREAM_DISK_DATA);
	assert_int_equal(d.offset, 4096);
	assert_int_equal(d.length, 8192);
	assert_ptr_equal(d.data, buf + STREAM_DISK_HDR_LEN);
	/* The last byte of the image, and a zero range up to its end. */
	rec = disk_rec(buf, 0, STREAM_DISK_DATA, DISK_SIZE - 1, 1, 1);
	assert_int_equal(stream_check__disk(&chk, &rec, &d, why, sizeof(why)), 0);
	rec = disk_rec(buf, 0, STREAM_DISK_ZERO, 512, DISK_SIZE - 512, 0);
	assert_int_equal(stream_check__disk(&chk, &rec, &d, why, sizeof(why)), 0);
	assert_null(d.data);

	struct {
		uint32_t disk, kind;
		uint64_t off, len;
		size_t data;
	} bad[] = {
	    {1, STREAM_DISK_DATA, 0, 512, 512},			/* a disk the destination has */
	    {7, STREAM_DISK_DATA, 0, 512, 512},			/* no such disk */
	    {100000, STREAM_DISK_ZERO, 0, 512, 0},		/* far out */
	    {0, STREAM_DISK_DATA, DISK_SIZE, 1, 1},		/* past the end */
	    {0, STREAM_DISK_DATA, DISK_SIZE - 512, 1024, 1024}, /* across it */
	    {0, STREAM_DISK_ZERO, 4096, UINT64_MAX, 0},		/* wraps */
	    {0, STREAM_DISK_ZERO, UINT64_MAX, 2, 0},		/* wraps */
	    {0, STREAM_DISK_DATA, 0, 4096, 512},		/* data shorter than said */
	    {0, STREAM_DISK_DATA, 0, 0, 0},			/* empty */
	    {0, STREAM_DISK_ZERO, 0, 0, 0},			/* empty */
	    {0, STREAM_DISK_ZERO, 0, 512, 512},			/* zero with data */
	    {0, 4, 0, 512, 0},					/* unknown kind */
	    {0, 0, 0, 512, 0},					/* kind 0 */
	    {0, STREAM_DISK_DONE, 0, DISK_SIZE - 1, 0},		/* not the whole image */
	    {0, STREAM_DISK_DONE, 512, DISK_SIZE - 512, 0},	/* not from 0 */
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		rec = disk_rec(buf, bad[i].disk, bad[i].kind, bad[i].off, bad[i].len, bad[i].data);
		assert_int_equal(stream_check__disk(&chk, &rec, &d, why, sizeof(why)), -EBADMSG);
		assert_non_null(strstr(why, "bad DISK record"));
	}
	/* A header alone, shorter than that: refused before a field is read. */
	rec = disk_rec(buf, 0, STREAM_DISK_ZERO, 0, 512, 0);
	rec.length = STREAM_DISK_HDR_LEN - 1;
	assert_int_equal(stream_check__disk(&chk, &rec, &d, why, sizeof(why)), -EBADMSG);

	/* A digest before the image is complete. */
	rec = disk_rec(buf, 0, STREAM_DISK_DIGEST, 0, DISK_SIZE, 8);
	assert_int_equal(stream_check__disk(&chk, &rec, &d, why, sizeof(why)), -EBADMSG);
	/* END without DONE: the image is not complete. */
	assert_int_equal(stream_check__complete(&chk, why, sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, "disk 0"));
	rec = disk_rec(buf, 0, STREAM_DISK_DONE, 0, DISK_SIZE, 0);
	assert_int_equal(stream_check__disk(&chk, &rec, &d, why, sizeof(why)), 0);
	assert_int_equal(stream_check__disk(&chk, &rec, &d, why, sizeof(why)), -EBADMSG);
	/* The guest's writes mirrored after the pass are still taken. */
	rec = disk_rec(buf, 0, STREAM_DISK_DATA, 0, 512, 512);
	assert_int_equal(stream_check__disk(&chk, &rec, &d, why, sizeof(why)), 0);
	/* --verify's digest: one, after DONE, of the whole image, its 8 bytes exactly. */
	rec = disk_rec(buf, 0, STREAM_DISK_DIGEST, 0, DISK_SIZE, 8);
	stream_put64(buf + STREAM_DISK_HDR_LEN, 0x1234567890abcdefULL);
	assert_int_equal(stream_check__disk(&chk, &rec, &d, why, sizeof(why)), 0);
	assert_true(chk.disk_has_digest[0]);
	assert_int_equal(chk.disk_digest[0], 0x1234567890abcdefULL);
	assert_int_equal(stream_check__disk(&chk, &rec, &d, why, sizeof(why)), -EBADMSG);
	rec = disk_rec(buf, 0, STREAM_DISK_DIGEST, 0, DISK_SIZE, 7);
	assert_int_equal(stream_check__disk(&chk, &rec, &d, why, sizeof(why)), -EBADMSG);
	/* Now only the rest of the state is missing. */
	assert_int_equal(stream_check__complete(&chk, why, sizeof(why)), -EBADMSG);
	assert_null(strstr(why, "disk 0"));
	stream_check__exit(&chk);
	free(c);
}

/* Written, read back through the reader with its framing; refused after device state. */
static void test_disk_records_in_the_stream(void **state)
{
	struct stream_config *c = make_cfg();
	static uint8_t data[STREAM_DISK_MAX_DATA + 1];
	struct stream_writer w;
	struct stream_reader r;
	struct stream_record rec;
	struct stream_io io, in;
	struct stream_disk d;
	const uint8_t *bytes;
	char why[256];
	size_t len;

	(void)state;
	memset(data, 0xa5, sizeof(data));
	stream_io__init_mem_writer(&io);
	assert_int_equal(stream__writer_init(&w, &io, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__write_header(&w), 0);
	assert_int_equal(stream__write_config(&w, c), 0);
	assert_int_equal(stream__write_disk(&w, 0, STREAM_DISK_DATA, 0, STREAM_DISK_MAX_DATA, data),
			 0);
	/* One byte over a record's most: refused on the writing side. */
	assert_int_equal(stream__write_disk(&w, 0, STREAM_DISK_DATA, 0, sizeof(data), data),
			 -EINVAL);
	assert_int_equal(stream__write_disk(&w, 0, STREAM_DISK_ZERO, 4096, 4096, NULL), 0);
	assert_int_equal(stream__write_disk(&w, 0, STREAM_DISK_DONE, 0, DISK_SIZE, NULL), 0);
	assert_int_equal(stream__write_state(&w, "serial", 0, 1, NULL), 0);
	assert_int_equal(stream__write_disk(&w, 0, STREAM_DISK_ZERO, 0, 4096, NULL), -EPROTO);
	stream__writer_exit(&w);

	bytes = stream_io__mem_data(&io, &len);
	stream_io__init_mem_reader(&in, bytes, len);
	assert_int_equal(stream__reader_init(&r, &in, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__read_header(&r, NULL), 0);
	assert_int_equal(stream__read_record(&r, &rec), 0);
	assert_int_equal(rec.type, STREAM_REC_CONFIG);
	assert_int_equal(stream__read_record(&r, &rec), 0);
	assert_int_equal(rec.type, STREAM_REC_DISK);
	assert_int_equal(rec.flags, STREAM_REC_MANDATORY);
	assert_int_equal(stream__disk_decode(rec.payload, rec.length, &d, why, sizeof(why)), 0);
	assert_int_equal(d.length, STREAM_DISK_MAX_DATA);
	assert_memory_equal(d.data, data, STREAM_DISK_MAX_DATA);
	assert_int_equal(stream__read_record(&r, &rec), 0);
	assert_int_equal(stream__disk_decode(rec.payload, rec.length, &d, why, sizeof(why)), 0);
	assert_int_equal(d.kind, STREAM_DISK_ZERO);
	assert_int_equal(stream__read_record(&r, &rec), 0);
	assert_int_equal(stream__disk_decode(rec.payload, rec.length, &d, why, sizeof(why)), 0);
	assert_int_equal(d.kind, STREAM_DISK_DONE);
	stream__reader_exit(&r);
	stream_io__exit(&io);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_config_disk_to),
	    cmocka_unit_test(test_check_wants_disk_in_device_order),
	    cmocka_unit_test(test_check_disk_records),
	    cmocka_unit_test(test_disk_records_in_the_stream),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
