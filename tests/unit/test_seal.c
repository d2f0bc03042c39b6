// SPDX-License-Identifier: GPL-2.0
/*
 * Snapshot files encrypted at rest (src/migrate/seal.c): a stream of several chunks
 * written in uneven pieces reads back whole through stream_io; another key, a changed
 * byte, a file cut short and bytes after the final chunk are each refused.
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

#include "godwit/seal.h"
#include "godwit/stream.h"

#define LEN (2 * SEAL_CHUNK + 4321)

static const uint8_t key[SEAL_KEY_LEN] = "0123456789abcdef0123456789abcdef";

static uint8_t *pattern(void)
{
	uint8_t *p = malloc(LEN);
	size_t i;

	assert_non_null(p);
	for (i = 0; i < LEN; i++)
		p[i] = (uint8_t)(i * 7 + (i >> 11));
	return p;
}

/* The pattern, sealed into a fresh file: its fd. */
static int sealed_file(const uint8_t *data)
{
	FILE *f = tmpfile();
	struct stream_io io;
	struct seal *s;
	size_t off = 0, piece = 3;
	int fd;

	assert_non_null(f);
	fd = dup(fileno(f));
	fclose(f);
	assert_int_equal(stream_io__init_fd(&io, fd), 0);
	assert_int_equal(seal__writer(fd, key, &s), 0);
	assert_int_equal(stream_io__seal(&io, s), 0);
	while (off < LEN) {
		struct iovec iov = {(void *)(data + off), MIN(piece, (size_t)LEN - off)};

		assert_int_equal(stream_io__writev_full(&io, &iov, 1), 0);
		off += iov.iov_len;
		piece = piece * 5 % 300007 + 1;
	}
	assert_int_equal(stream_io__finish(&io), 0);
	stream_io__exit(&io);
	return fd;
}

/* Reads the file back through stream_io: 0 with all of it in got, or the failure. */
static int read_back(int fd, const uint8_t *k, uint8_t *got, char *why, size_t whylen)
{
	struct stream_io io;
	char err[256] = "";
	uint8_t extra;
	int ret;

	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(stream_io__init_fd(&io, fd), 0);
	ret = seal__attach_reader(&io, fd, k, err, sizeof(err));
	if (!ret)
		ret = stream_io__read_full(&io, got, LEN);
	if (!ret && stream_io__read_full(&io, &extra, 1) != -ENODATA)
		ret = -EBADMSG;
	snprintf(why, whylen, "%s", stream_io__channel_error(&io) ?: err);
	stream_io__exit(&io);
	return ret;
}

static void test_round_trip(void **state)
{
	uint8_t *data = pattern(), *got = malloc(LEN), magic[8];
	int fd = sealed_file(data);
	char why[256];

	(void)state;
	assert_int_equal(pread(fd, magic, 8, 0), 8);
	assert_memory_equal(magic, SEAL_MAGIC, 8);
	assert_int_equal(lseek(fd, 0, SEEK_END),
			 SEAL_HEADER_LEN + 3 * (SEAL_CHUNK_HDR_LEN + SEAL_TAG_LEN) + LEN);
	assert_int_equal(read_back(fd, key, got, why, sizeof(why)), 0);
	assert_memory_equal(got, data, LEN);
	assert_int_equal(read_back(fd, NULL, got, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "the snapshot is encrypted"));
	close(fd);
	free(data);
	free(got);
}

static void test_refusals(void **state)
{
	uint8_t *data = pattern(), *got = malloc(LEN), other[SEAL_KEY_LEN], b;
	int fd = sealed_file(data);
	off_t end = lseek(fd, 0, SEEK_END), at = SEAL_HEADER_LEN + SEAL_CHUNK + 100;
	char why[256];

	(void)state;
	memcpy(other, key, sizeof(other));
	other[0] ^= 1;
	assert_int_equal(read_back(fd, other, got, why, sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, "chunk 0: it does not open"));

	assert_int_equal(pread(fd, &b, 1, at), 1);
	b ^= 0x80;
	assert_int_equal(pwrite(fd, &b, 1, at), 1);
	assert_int_equal(read_back(fd, key, got, why, sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, "chunk 1: it does not open"));
	b ^= 0x80;
	assert_int_equal(pwrite(fd, &b, 1, at), 1);

	assert_int_equal(pwrite(fd, "x", 1, end), 1);
	assert_int_equal(read_back(fd, key, got, why, sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, "bytes after the final chunk"));

	/* Cut at the end of a whole chunk: the final one is missing. */
	assert_int_equal(
	    ftruncate(fd, SEAL_HEADER_LEN + 2 * (SEAL_CHUNK_HDR_LEN + SEAL_CHUNK + SEAL_TAG_LEN)),
	    0);
	assert_int_equal(read_back(fd, key, got, why, sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, "cut short"));
	close(fd);
	free(data);
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
