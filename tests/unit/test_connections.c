// SPDX-License-Identifier: GPL-2.0
/*
 * Several connections (format 1.3, chunk sizes 1.4): a stream striped over socket
 * pairs arrives whole and in order; how many connections a source opens; which
 * JOINs a destination takes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <linux/pkt_sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "godwit/migrate.h"
#include "godwit/stream.h"

#define N_CONN	3
#define PATTERN (5 * STREAM_STRIPE_CHUNK + 12345)

static const uint8_t token[STREAM_TOKEN_LEN] = "0123456789abcdef";

struct writer_arg {
	int fds[N_CONN];
	uint32_t chunk;
	const uint8_t *data;
	size_t len;
	int ret;
};

static uint8_t pattern_byte(size_t i)
{
	return (uint8_t)(i * 131 + (i >> 9));
}

/* Writes the data striped, in pieces of uneven sizes (a record header, a page...). */
static void *writer(void *p)
{
	struct writer_arg *a = p;
	struct stream_io io;
	size_t off = 0, piece = 1;

	a->ret = stream_io__init_fd(&io, a->fds[0]);
	if (!a->ret)
		a->ret = stream_io__stripe(&io, a->fds, N_CONN, a->chunk, false);
	while (!a->ret && off < a->len) {
		struct iovec iov[2] = { { (void *)(a->data + off), 0 }, { NULL, 0 } };
		size_t n = MIN(piece, a->len - off);

		iov[0].iov_len = n / 2;
		iov[1].iov_base = (void *)(a->data + off + n / 2);
		iov[1].iov_len = n - n / 2;
		a->ret = stream_io__writev_full(&io, iov, 2);
		off += n;
		piece = piece * 3 % 100003 + 7;
	}
	stream_io__exit(&io);
	return NULL;
}

/*
 * chunk bytes at a time; read ahead: the head (what came before STRIPE) is read
 * buffered, so its read takes some of the first chunk too, as a destination reading
 * STRIPE does when the chunk is STRIPE's 64 KiB; else unbuffered, as it reads
 * STRIPE_CHUNKED, whose smaller chunks a read-ahead could run past.
 */
static void striped_stream_arrives_whole(uint32_t chunk, bool read_ahead)
{
	int sp[N_CONN][2], rfds[N_CONN], i;
	struct writer_arg a = { .len = PATTERN, .chunk = chunk };
	uint8_t *data = malloc(PATTERN), *got = malloc(PATTERN), head[100];
	struct stream_io io;
	pthread_t t;
	size_t off;

	assert_non_null(data);
	assert_non_null(got);
	for (off = 0; off < PATTERN; off++)
		data[off] = pattern_byte(off);
	for (i = 0; i < N_CONN; i++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp[i]), 0);
		a.fds[i] = sp[i][0];
		rfds[i] = sp[i][1];
	}
	/* What came before STRIPE on the first connection. */
	memset(head, 0x5a, sizeof(head));
	assert_int_equal(write(a.fds[0], head, sizeof(head)), sizeof(head));
	a.data = data;
	assert_int_equal(pthread_create(&t, NULL, writer, &a), 0);

	/*
	 * Let the first chunk arrive, so that reading the head reads into it: wait until
	 * more than the head is queued (a fixed sleep was too short on a loaded host).
	 */
	for (i = 0; i < 5000; i++) {
		int queued = 0;

		assert_int_equal(ioctl(rfds[0], FIONREAD, &queued), 0);
		if ((size_t)queued > sizeof(head))
			break;
		usleep(1000);
	}
	assert_true(i < 5000);
	assert_int_equal(stream_io__init_fd(&io, rfds[0]), 0);
	if (!read_ahead)
		stream_io__unbuffered(&io, true);
	assert_int_equal(stream_io__read_full(&io, head, sizeof(head)), 0);
	assert_int_equal(head[99], 0x5a);
	assert_int_equal(io.rbuf_len - io.rbuf_pos > 0, read_ahead);
	assert_int_equal(stream_io__stripe(&io, rfds, N_CONN, chunk, true), 0);
	assert_false(io.unbuffered);
	for (off = 0; off < PATTERN;) {
		size_t n = MIN((size_t)(off % 7000) + 1, PATTERN - off);

		assert_int_equal(stream_io__wait_readable(&io, 5000), 0);
		assert_int_equal(stream_io__read_full(&io, got + off, n), 0);
		off += n;
	}
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(a.ret, 0);
	assert_memory_equal(got, data, PATTERN);
	/* Each connection carried its chunks and nothing more. */
	for (i = 0; i < N_CONN; i++) {
		shutdown(a.fds[i], SHUT_WR);
		assert_int_equal(read(rfds[i], head, 1), 0);
	}
	stream_io__exit(&io);
	for (i = 0; i < N_CONN; i++) {
		close(sp[i][0]);
		close(sp[i][1]);
	}
	free(data);
	free(got);
}

static void test_striped_stream_arrives_whole(void **state)
{
	(void)state;
	striped_stream_arrives_whole(STREAM_STRIPE_CHUNK, true);
	striped_stream_arrives_whole(16 * KiB, false);
	striped_stream_arrives_whole(STREAM_STRIPE_CHUNK_MIN, false);
	striped_stream_arrives_whole(STREAM_STRIPE_CHUNK_MAX, true);
}

/* Read ahead past a small chunk's end, the bytes would be in the wrong order: refused. */
static void test_read_ahead_beyond_a_chunk_is_refused(void **state)
{
	static uint8_t buf[8 * KiB];
	int sp[2][2], rfds[2], i;
	struct stream_io io;

	(void)state;
	for (i = 0; i < 2; i++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp[i]), 0);
		rfds[i] = sp[i][1];
	}
	memset(buf, 1, sizeof(buf));
	assert_int_equal(write(sp[0][0], buf, sizeof(buf)), sizeof(buf));
	assert_int_equal(stream_io__init_fd(&io, rfds[0]), 0);
	assert_int_equal(stream_io__read_full(&io, buf, 10), 0);
	assert_true(io.rbuf_len - io.rbuf_pos > STREAM_STRIPE_CHUNK_MIN);
	assert_int_equal(stream_io__stripe(&io, rfds, 2, STREAM_STRIPE_CHUNK_MIN, true), -EINVAL);
	stream_io__exit(&io);
	for (i = 0; i < 2; i++) {
		close(sp[i][0]);
		close(sp[i][1]);
	}
}

static void test_stripe_arguments(void **state)
{
	struct stream_io io;
	int fds[2] = { 3, 4 };

	(void)state;
	stream_io__init_mem_writer(&io);
	assert_int_equal(stream_io__stripe(&io, fds, 2, STREAM_STRIPE_CHUNK, false), -EINVAL); /* memory */
	stream_io__exit(&io);
	assert_int_equal(stream_io__init_fd(&io, 3), 0);
	assert_int_equal(stream_io__stripe(&io, fds, 1, STREAM_STRIPE_CHUNK, false), -EINVAL);
	assert_int_equal(stream_io__stripe(&io, fds, STREAM_MAX_CONNECTIONS + 1, STREAM_STRIPE_CHUNK, false), -EINVAL);
	fds[0] = 5;
	assert_int_equal(stream_io__stripe(&io, fds, 2, 16 * KiB, false), -EINVAL); /* not io's fd first */
	fds[0] = 3;
	assert_int_equal(stream_io__stripe(&io, fds, 2, 0, false), -EINVAL);
	assert_int_equal(stream_io__stripe(&io, fds, 2, 2 * KiB, false), -EINVAL);
	assert_int_equal(stream_io__stripe(&io, fds, 2, 12 * KiB, false), -EINVAL);
	assert_int_equal(stream_io__stripe(&io, fds, 2, 2 * MiB, false), -EINVAL);
	assert_int_equal(stream_io__stripe(&io, fds, 2, 16 * KiB, false), 0);
	assert_int_equal(stream_io__stripe(&io, fds, 2, 16 * KiB, false), -EINVAL); /* twice */
	stream_io__exit(&io);
}

static void test_connections_wanted(void **state)
{
	(void)state;
	assert_int_equal(connections__wanted(0, 0), 1);	       /* a file, or no TCP_INFO */
	assert_int_equal(connections__wanted(0, 50000), 1);    /* loopback: 50 us */
	assert_int_equal(connections__wanted(0, 9999999), 1);  /* just under 10 ms */
	assert_int_equal(connections__wanted(0, 20000000), 2); /* 20 ms */
	assert_int_equal(connections__wanted(0, 150000000), 15);
	assert_int_equal(connections__wanted(0, 2000000000), STREAM_MAX_CONNECTIONS);
	assert_int_equal(connections__wanted(4, 150000000), 4); /* asked for */
	assert_int_equal(connections__wanted(1, 150000000), 1);
	assert_int_equal(connections__wanted(99, 0), STREAM_MAX_CONNECTIONS);
}

/* A JOIN message as a source writes it. */
static size_t join_msg(uint8_t *buf, size_t cap, const uint8_t *tok, uint32_t index)
{
	struct stream_writer w;
	struct stream_io io;
	const uint8_t *data;
	size_t len;

	stream_io__init_mem_writer(&io);
	assert_int_equal(stream__writer_init(&w, &io, STREAM_CTX_CONTROL), 0);
	assert_int_equal(stream__write_join(&w, tok, index), 0);
	stream__writer_exit(&w);
	data = stream_io__mem_data(&io, &len);
	assert_int_equal(len, STREAM_RECORD_HDR_LEN + STREAM_JOIN_LEN);
	assert_true(len <= cap);
	memcpy(buf, data, len);
	stream_io__exit(&io);
	return len;
}

static void test_join_parse(void **state)
{
	uint8_t msg[STREAM_RECORD_HDR_LEN + STREAM_JOIN_LEN], other[STREAM_TOKEN_LEN];
	int fds[4] = { 10, -1, -1, -1 };
	size_t len;

	(void)state;
	len = join_msg(msg, sizeof(msg), token, 2);
	assert_int_equal(connections__join_parse(msg, len, token, 4, fds), 2);
	/* index 2 already joined */
	fds[2] = 11;
	assert_int_equal(connections__join_parse(msg, len, token, 4, fds), -EBADMSG);
	/* beyond the connections taken */
	assert_int_equal(connections__join_parse(msg, len, token, 2, fds), -EBADMSG);
	/* another migration's token */
	memcpy(other, token, sizeof(other));
	other[15] ^= 1;
	len = join_msg(msg, sizeof(msg), other, 1);
	assert_int_equal(connections__join_parse(msg, len, token, 4, fds), -EBADMSG);
	/* a flipped bit: the record's checksum fails */
	len = join_msg(msg, sizeof(msg), token, 1);
	msg[len - 1] ^= 0x10;
	assert_true(connections__join_parse(msg, len, token, 4, fds) < 0);
	/* not a JOIN at all */
	memset(msg, 0, sizeof(msg));
	assert_true(connections__join_parse(msg, len, token, 4, fds) < 0);
	/* index 0 cannot be written, nor decoded */
	assert_int_equal(stream__join_decode(msg, STREAM_JOIN_LEN, other, &(uint32_t){ 0 }),
			 -EBADMSG);
}

static void test_stripe_record(void **state)
{
	uint8_t p[STREAM_STRIPE_CHUNKED_LEN];
	struct stream_record rec;
	struct stream_reader r;
	struct stream_writer w;
	struct stream_io io, rio;
	uint32_t n, chunk;
	const uint8_t *buf;
	size_t len;

	(void)state;
	stream_put32(p, 8);
	assert_int_equal(stream__stripe_decode(STREAM_REC_STRIPE, p, STREAM_STRIPE_LEN, &n, &chunk), 0);
	assert_int_equal(n, 8);
	assert_int_equal(chunk, STREAM_STRIPE_CHUNK);
	stream_put32(p, 1);
	assert_int_equal(stream__stripe_decode(STREAM_REC_STRIPE, p, STREAM_STRIPE_LEN, &n, &chunk),
			 -EBADMSG);
	stream_put32(p, STREAM_MAX_CONNECTIONS + 1);
	assert_int_equal(stream__stripe_decode(STREAM_REC_STRIPE, p, STREAM_STRIPE_LEN, &n, &chunk),
			 -EBADMSG);
	assert_int_equal(stream__stripe_decode(STREAM_REC_STRIPE, p, 3, &n, &chunk), -EBADMSG);
	/* STRIPE_CHUNKED: the chunk a power of two, 4 KiB .. 1 MiB; the 1.3 length is not it */
	stream_put32(p, 3);
	stream_put32(p + 4, 16 * KiB);
	assert_int_equal(stream__stripe_decode(STREAM_REC_STRIPE_CHUNKED, p, sizeof(p), &n, &chunk), 0);
	assert_int_equal(n, 3);
	assert_int_equal(chunk, 16 * KiB);
	assert_int_equal(stream__stripe_decode(STREAM_REC_STRIPE_CHUNKED, p, STREAM_STRIPE_LEN, &n,
					       &chunk),
			 -EBADMSG);
	assert_int_equal(stream__stripe_decode(STREAM_REC_STRIPE, p, sizeof(p), &n, &chunk), -EBADMSG);
	/* one: the source's round trip called for a single connection after all */
	stream_put32(p, 1);
	assert_int_equal(stream__stripe_decode(STREAM_REC_STRIPE_CHUNKED, p, sizeof(p), &n, &chunk), 0);
	assert_int_equal(n, 1);
	stream_put32(p, 0);
	assert_int_equal(stream__stripe_decode(STREAM_REC_STRIPE_CHUNKED, p, sizeof(p), &n, &chunk),
			 -EBADMSG);
	stream_put32(p, STREAM_MAX_CONNECTIONS + 1);
	assert_int_equal(stream__stripe_decode(STREAM_REC_STRIPE_CHUNKED, p, sizeof(p), &n, &chunk),
			 -EBADMSG);
	stream_put32(p, 3);
	assert_int_equal(stream__stripe_decode(STREAM_REC_JOIN, p, sizeof(p), &n, &chunk), -EBADMSG);
	for (chunk = 0; chunk < 4; chunk++) {
		static const uint32_t bad[] = { 0, 2 * KiB, 24 * KiB, 2 * MiB };

		stream_put32(p + 4, bad[chunk]);
		assert_int_equal(stream__stripe_decode(STREAM_REC_STRIPE_CHUNKED, p, sizeof(p), &n,
						       &n),
				 -EBADMSG);
	}
	/* Written and read back, both forms; a bad chunk is not written. */
	stream_io__init_mem_writer(&io);
	assert_int_equal(stream__writer_init(&w, &io, STREAM_CTX_CONTROL), 0);
	assert_int_equal(stream__write_stripe(&w, 5, 0), 0);
	assert_int_equal(stream__write_stripe(&w, 16, STREAM_STRIPE_CHUNK_MIN), 0);
	assert_int_equal(stream__write_stripe(&w, 16, 5000), -EINVAL);
	assert_int_equal(stream__write_stripe(&w, 1, 0), -EINVAL);
	assert_int_equal(stream__write_stripe(&w, 0, 16 * KiB), -EINVAL);
	stream__writer_exit(&w);
	buf = stream_io__mem_data(&io, &len);
	stream_io__init_mem_reader(&rio, buf, len);
	assert_int_equal(stream__reader_init(&r, &rio, STREAM_CTX_CONTROL), 0);
	assert_int_equal(stream__read_record(&r, &rec), 0);
	assert_int_equal(rec.type, STREAM_REC_STRIPE);
	assert_int_equal(stream__stripe_decode(rec.type, rec.payload, rec.length, &n, &chunk), 0);
	assert_int_equal(n * 100000 + chunk, 5 * 100000 + STREAM_STRIPE_CHUNK);
	assert_int_equal(stream__read_record(&r, &rec), 0);
	assert_int_equal(rec.type, STREAM_REC_STRIPE_CHUNKED);
	assert_int_equal(stream__stripe_decode(rec.type, rec.payload, rec.length, &n, &chunk), 0);
	assert_int_equal(n * 100000 + chunk, 16 * 100000 + STREAM_STRIPE_CHUNK_MIN);
	assert_int_not_equal(stream__read_record(&r, &rec), 0);
	stream__reader_exit(&r);
	stream_io__exit(&rio);
	stream_io__exit(&io);
}

/* A listener on a free loopback port; uri says where. */
/* A source's first bytes: header and CONFIG, then "more" (malloc'ed). */
static uint8_t *opening(size_t *len, size_t *more_at)
{
	struct stream_config cfg = { .ram_size = 64 * MiB, .nr_vcpus = 1, .nr_regions = 1 };
	struct stream_writer w;
	struct stream_io io;
	const uint8_t *data;
	uint8_t *buf;

	cfg.regions[0] = (struct stream_region){ 0, 64 * MiB };
	stream_io__init_mem_writer(&io);
	assert_int_equal(stream__writer_init(&w, &io, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__write_header(&w), 0);
	assert_int_equal(stream__write_config(&w, &cfg), 0);
	data = stream_io__mem_data(&io, len);
	buf = malloc(*len + 4);
	assert_non_null(buf);
	memcpy(buf, data, *len);
	memcpy(buf + *len, "more", 4);
	*more_at = *len;
	*len += 4;
	stream__writer_exit(&w);
	stream_io__exit(&io);
	return buf;
}

/* accept_source's answer is the whole opening, and the connection goes on after it. */
static int take_source(int lfd, struct connections_waiting *w, int *fd, int timeout_ms)
{
	size_t len, want, more_at;
	uint8_t *got = NULL, *expect = opening(&want, &more_at);
	int ret = connections__accept_source(lfd, w, fd, &got, &len, timeout_ms, -1);

	if (!ret) {
		assert_int_equal(len, more_at);
		assert_memory_equal(got, expect, len);
	}
	free(got);
	free(expect);
	return ret;
}

static int listen_on_loopback(char uri[64])
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char err[128];
	int lfd;

	assert_int_equal(transport__listen("tcp:127.0.0.1:0", &lfd, err, sizeof(err)), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&ss, &sl), 0);
	snprintf(uri, 64, "tcp:127.0.0.1:%u", ntohs(((struct sockaddr_in *)&ss)->sin_port));
	return lfd;
}

/* The destination's side over a real listener: a stray is closed, the JOINs are taken. */
static void test_accept_joins(void **state)
{
	struct connections_waiting w = { .n = 0 };
	char uri[64], err[128];
	int lfd, fds[3], c[3], stray, i;
	uint8_t msg[STREAM_RECORD_HDR_LEN + STREAM_JOIN_LEN], *op;
	size_t len, more_at;

	(void)state;
	lfd = listen_on_loopback(uri);
	op = opening(&len, &more_at);
	assert_int_equal(transport__connect(uri, op, more_at, 1, &c[0], err, sizeof(err)), 0);
	free(op);
	assert_int_equal(take_source(lfd, &w, &fds[0], 10000), 0);
	assert_int_equal(w.n, 0);
	/* A stray that sends garbage, then the two extra connections (index 2 first). */
	assert_int_equal(transport__connect_more(c[0], &stray), 0);
	assert_int_equal(transport__connect_finish(stray), 0);
	memset(msg, 0x77, sizeof(msg));
	assert_int_equal(write(stray, msg, sizeof(msg)), sizeof(msg));
	for (i = 2; i >= 1; i--) {
		assert_int_equal(transport__connect_more(c[0], &c[i]), 0);
		assert_int_equal(transport__connect_finish(c[i]), 0);
		assert_int_equal(connections__send_join(c[i], NULL, token, (uint32_t)i), 0);
	}
	assert_int_equal(connections__accept(lfd, &w, token, 3, fds, 5000, -1), 0);
	for (i = 1; i <= 2; i++) {
		len = (size_t)write(c[i], "x", 1);
		assert_int_equal(len, 1);
		assert_int_equal(read(fds[i], msg, 1), 1); /* fds[i] is c[i]'s other end */
		close(fds[i]);
		close(c[i]);
	}
	/* The stray was closed. */
	assert_int_equal(read(stray, msg, 1), 0);
	close(stray);
	/* Nobody else comes: a timeout, nothing left open. */
	assert_int_equal(connections__accept(lfd, &w, token, 2, fds, 50, -1), -ETIMEDOUT);
	connections__close_waiting(&w);
	close(fds[0]);
	close(c[0]);
	close(lfd);
}

/*
 * A source starts its extra connections with its first; accepted before the first
 * (a network that reorders), they wait, silent, and join later. Connections that
 * close or send something else before the stream's first bytes are dropped.
 */
static void test_extra_connections_before_the_first(void **state)
{
	struct connections_waiting w = { .n = 0 };
	char uri[64], err[128];
	int lfd, fds[3], c[3], gone, garbage, first, i;
	size_t len, more_at;
	uint8_t b, *op;

	(void)state;
	lfd = listen_on_loopback(uri);
	/* Two extras, one that goes away, one with garbage, and only then the first. */
	for (i = 1; i <= 2; i++)
		assert_int_equal(transport__connect(uri, NULL, 0, 1, &c[i], err, sizeof(err)), 0);
	assert_int_equal(transport__connect(uri, NULL, 0, 1, &gone, err, sizeof(err)), 0);
	close(gone);
	assert_int_equal(transport__connect(uri, "GODWITXX", 8, 1, &garbage, err, sizeof(err)), 0);
	usleep(20000);
	op = opening(&len, &more_at);
	assert_int_equal(transport__connect(uri, op, len, 1, &c[0], err, sizeof(err)), 0);
	free(op);
	assert_int_equal(take_source(lfd, &w, &first, 10000), 0);
	assert_int_equal(w.n, 2); /* the extras; the one gone and the garbage are closed */
	assert_int_equal(read(first, &b, 1), 1); /* header and CONFIG were read off it */
	assert_int_equal(b, 'm');
	assert_true(read(garbage, &b, 1) <= 0); /* closed, maybe reset: its bytes were unread */
	close(garbage);
	for (i = 1; i <= 2; i++)
		assert_int_equal(connections__send_join(c[i], NULL, token, (uint32_t)i), 0);
	fds[0] = first;
	assert_int_equal(connections__accept(lfd, &w, token, 3, fds, 5000, -1), 0);
	assert_int_equal(w.n, 0);
	for (i = 0; i <= 2; i++) {
		assert_int_equal(write(c[i], "y", 1), 1);
		assert_int_equal(read(i ? fds[i] : first, &b, 1), 1);
		close(fds[i]);
		close(c[i]);
	}
	close(lfd);
}

/*
 * Peers that send part of the opening and hold their connection cost the source no
 * wait: the source's connection is taken at once, each stalled one keeps only its
 * place in w, and each goes at its deadline; so does one whose CONFIG is too long.
 */
static void test_partial_openings_stall_nothing(void **state)
{
	struct connections_waiting w = { .n = 0 };
	char uri[64], err[128];
	int lfd, first, src, stall[16], i;
	size_t len, more_at;
	uint8_t b, *op;
	uint64_t t0;

	(void)state;
	lfd = listen_on_loopback(uri);
	op = opening(&len, &more_at);
	for (i = 0; i < (int)ARRAY_SIZE(stall); i++)
		assert_int_equal(transport__connect(uri, op, i < 8 ? 3 : more_at - 1, 1, &stall[i],
						     err, sizeof(err)),
				 0);
	assert_int_equal(transport__connect(uri, op, len, 1, &src, err, sizeof(err)), 0);
	t0 = util__now_ns();
	assert_int_equal(take_source(lfd, &w, &first, 10000), 0);
	assert_true(util__now_ns() - t0 < 500000000ULL);
	assert_int_equal(read(first, &b, 1), 1);
	assert_int_equal(b, 'm');
	close(first);
	close(src);
	/* One that trickles its opening is taken once it is whole. */
	assert_int_equal(transport__connect(uri, op, 5, 1, &src, err, sizeof(err)), 0);
	usleep(10000);
	assert_int_equal(write(src, op + 5, len - 5), (ssize_t)(len - 5));
	assert_int_equal(take_source(lfd, &w, &first, 200), 0);
	close(first);
	close(src);
	/* A first record longer than any CONFIG is no source. */
	stream_put64(op + STREAM_HEADER_LEN + 8, STREAM_CONFIG_MAX_LEN + 1);
	assert_int_equal(transport__connect(uri, op, more_at, 1, &first, err, sizeof(err)), 0);
	/* The stalled ones expire; the wait goes on for a source. */
	usleep(250000);
	stream_put64(op + STREAM_HEADER_LEN + 8, more_at - STREAM_HEADER_LEN - STREAM_RECORD_HDR_LEN);
	assert_int_equal(transport__connect(uri, op, len, 1, &src, err, sizeof(err)), 0);
	assert_int_equal(take_source(lfd, &w, &i, 200), 0);
	assert_int_equal(w.n, 0);
	assert_true(read(first, &b, 1) <= 0);
	close(first);
	close(i);
	for (i = 0; i < (int)ARRAY_SIZE(stall); i++) {
		assert_true(read(stall[i], &b, 1) <= 0);
		close(stall[i]);
	}
	close(src);
	close(lfd);
	free(op);
}

static int sockopt(int fd, int level, int name)
{
	int v = -1;
	socklen_t l = sizeof(v);

	assert_int_equal(getsockopt(fd, level, name, &v, &l), 0);
	return v;
}

/* Two connections over loopback: c[] the connecting ends, a[] the accepted ones. */
static int two_connections(int c[2], int a[2])
{
	char uri[64], err[128];
	int lfd, i;

	lfd = listen_on_loopback(uri);
	assert_int_equal(transport__connect(uri, NULL, 0, 2, c, err, sizeof(err)), 0);
	assert_int_equal(transport__connect_finish(c[1]), 0);
	for (i = 0; i < 2; i++)
		assert_int_equal(transport__accept(lfd, &a[i]), 0);
	return lfd;
}

static void close_all(int lfd, int c[2], int a[2])
{
	int i;

	for (i = 0; i < 2; i++) {
		close(a[i]);
		close(c[i]);
	}
	close(lfd);
}

/* The final state is corked: every connection the stream is written over. */
static void test_cork_every_connection(void **state)
{
	int lfd, c[2], a[2];
	struct stream_io io;

	(void)state;
	lfd = two_connections(c, a);
	assert_int_equal(stream_io__init_fd(&io, c[0]), 0);
	assert_int_equal(stream_io__stripe(&io, c, 2, 16 * KiB, false), 0);
	stream_io__cork(&io, true);
	assert_int_equal(
	    sockopt(c[0], IPPROTO_TCP, TCP_CORK) + sockopt(c[1], IPPROTO_TCP, TCP_CORK), 2);
	stream_io__cork(&io, false);
	assert_int_equal(
	    sockopt(c[0], IPPROTO_TCP, TCP_CORK) + sockopt(c[1], IPPROTO_TCP, TCP_CORK), 0);
	stream_io__exit(&io);
	close_all(lfd, c, a);
}

/* The pause's traffic jumps the host's queue on every connection, either way striped. */
static void test_urgent_every_connection(void **state)
{
	struct stream_io wio, rio;
	int lfd, c[2], a[2], i;

	(void)state;
	lfd = two_connections(c, a);
	assert_int_equal(stream_io__init_fd(&wio, c[0]), 0);
	assert_int_equal(stream_io__stripe(&wio, c, 2, 16 * KiB, false), 0);
	assert_int_equal(stream_io__init_fd(&rio, a[0]), 0);
	assert_int_equal(stream_io__stripe(&rio, a, 2, 16 * KiB, true), 0);
	for (i = 0; i < 2; i++)
		assert_int_equal(sockopt(c[i], SOL_SOCKET, SO_PRIORITY) +
				     sockopt(a[i], SOL_SOCKET, SO_PRIORITY),
				 0);
	stream_io__urgent(&wio);
	stream_io__urgent(&rio);
	for (i = 0; i < 2; i++) {
		assert_int_equal(sockopt(c[i], SOL_SOCKET, SO_PRIORITY), TC_PRIO_INTERACTIVE);
		assert_int_equal(sockopt(a[i], SOL_SOCKET, SO_PRIORITY), TC_PRIO_INTERACTIVE);
	}
	stream_io__exit(&wio);
	stream_io__exit(&rio);
	close_all(lfd, c, a);
}

/* The unsent limit a source sets while other moves leave its host, and takes off. */
static void test_unsent_limit_on_and_off(void **state)
{
	int lfd, c[2], a[2];

	(void)state;
	lfd = two_connections(c, a);
	assert_int_equal(sockopt(c[0], IPPROTO_TCP, TCP_NOTSENT_LOWAT), 0);
	transport__limit_unsent(c[0], true);
	assert_int_equal(sockopt(c[0], IPPROTO_TCP, TCP_NOTSENT_LOWAT), TRANSPORT_NOTSENT_LOWAT);
	transport__limit_unsent(c[0], false);
	assert_int_equal(sockopt(c[0], IPPROTO_TCP, TCP_NOTSENT_LOWAT), 0);
	close_all(lfd, c, a);
}

/* Round trips read from the kernel's TCP_INFO (a field the kernel did fill); none on a pipe. */
static void test_round_trips(void **state)
{
	int lfd, c, a, i, p[2];
	char uri[64], err[128], buf[64] = { 0 };

	(void)state;
	lfd = listen_on_loopback(uri);
	assert_int_equal(transport__connect(uri, NULL, 0, 1, &c, err, sizeof(err)), 0);
	assert_int_equal(transport__accept(lfd, &a), 0);
	for (i = 0; i < 20; i++) {
		assert_int_equal(write(c, buf, sizeof(buf)), sizeof(buf));
		assert_int_equal(read(a, buf, sizeof(buf)), sizeof(buf));
		assert_int_equal(write(a, buf, sizeof(buf)), sizeof(buf));
		assert_int_equal(read(c, buf, sizeof(buf)), sizeof(buf));
	}
	assert_true(transport__min_rtt_ns(c) > 0);
	assert_true(transport__rtt_ns(c) > 0);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(transport__min_rtt_ns(p[0]), 0);
	assert_int_equal(transport__rtt_ns(p[0]), 0);
	close(p[0]);
	close(p[1]);
	close(a);
	close(c);
	close(lfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_striped_stream_arrives_whole),
	    cmocka_unit_test(test_read_ahead_beyond_a_chunk_is_refused),
	    cmocka_unit_test(test_stripe_arguments),
	    cmocka_unit_test(test_connections_wanted),
	    cmocka_unit_test(test_join_parse),
	    cmocka_unit_test(test_stripe_record),
	    cmocka_unit_test(test_accept_joins),
	    cmocka_unit_test(test_extra_connections_before_the_first),
	    cmocka_unit_test(test_partial_openings_stall_nothing),
	    cmocka_unit_test(test_cork_every_connection),
	    cmocka_unit_test(test_urgent_every_connection),
	    cmocka_unit_test(test_unsent_limit_on_and_off),
	    cmocka_unit_test(test_round_trips),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
