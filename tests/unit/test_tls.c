// SPDX-License-Identifier: GPL-2.0
/*
 * TLS under the stream (src/migrate/tls.c): the options, the one-time key's
 * handshakes (a wrong key, a spent key), a stream striped over three TLS connections
 * arriving whole, and a record changed in flight refused. Certificates are proven by
 * tests/integration/test_tls.py.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "godwit/stream.h"
#include "godwit/tls.h"

#define N_CONN 3
#define LEN    (700 * 1024 + 123)

static const char key_hex[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

static void test_modes_and_params(void **state)
{
	struct tls_params p = {0};
	enum tls_mode m;
	char err[256];

	(void)state;
	assert_int_equal(tls__mode_parse("required", &m), 0);
	assert_int_equal(m, TLS_MODE_REQUIRED);
	assert_int_equal(tls__mode_parse("opportunistic", &m), 0);
	assert_int_equal(tls__mode_parse("off", &m), 0);
	assert_int_equal(m, TLS_MODE_OFF);
	assert_int_equal(tls__mode_parse("on", &m), -EINVAL);

	/* Nothing given: off; credentials given: required. */
	assert_int_equal(tls__check_params(&p, err, sizeof(err)), 0);
	assert_int_equal(p.mode, TLS_MODE_OFF);
	p = (struct tls_params){.has_psk = true};
	assert_int_equal(tls__check_params(&p, err, sizeof(err)), 0);
	assert_int_equal(p.mode, TLS_MODE_REQUIRED);

	p = (struct tls_params){.mode = TLS_MODE_REQUIRED};
	assert_int_equal(tls__check_params(&p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "needs credentials"));
	p = (struct tls_params){.cert = "a.crt", .key = "a.key"};
	assert_int_equal(tls__check_params(&p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "all three"));
	p = (struct tls_params){.cert = "a", .key = "b", .ca = "c", .has_psk = true};
	assert_int_equal(tls__check_params(&p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not both"));
	p = (struct tls_params){.peer_name = "x", .has_psk = true};
	assert_int_equal(tls__check_params(&p, err, sizeof(err)), -EINVAL);
}

static void test_psk_hex(void **state)
{
	uint8_t k[TLS_PSK_LEN];
	char buf[100];

	(void)state;
	assert_int_equal(tls__psk_parse_hex(key_hex, k), 0);
	assert_int_equal(k[0], 0);
	assert_int_equal(k[31], 0x1f);
	snprintf(buf, sizeof(buf), "  %s\n", key_hex);
	assert_int_equal(tls__psk_parse_hex(buf, k), 0);
	assert_int_equal(tls__psk_parse_hex("0011", k), -EINVAL);
	snprintf(buf, sizeof(buf), "%s00", key_hex);
	assert_int_equal(tls__psk_parse_hex(buf, k), -EINVAL);
	snprintf(buf, sizeof(buf), "%s", key_hex);
	buf[7] = 'g';
	assert_int_equal(tls__psk_parse_hex(buf, k), -EINVAL);
}

static struct tls_ctx *psk_ctx(bool server, const char *hex)
{
	struct tls_params p = {.has_psk = true};
	struct tls_ctx *ctx = NULL;
	char err[256] = "";

	assert_int_equal(tls__psk_parse_hex(hex, p.psk), 0);
	assert_int_equal(tls__check_params(&p, err, sizeof(err)), 0);
	assert_int_equal(tls__ctx_new(&p, server, &ctx, err, sizeof(err)), 0);
	return ctx;
}

static void nonblocking(int fd)
{
	assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

/*
 * A client and a server on two socket pairs joined by pump(), which moves the bytes
 * between cli_peer and srv_peer (and may change them on the way).
 */
struct link {
	int cli, cli_peer, srv, srv_peer;
	struct tls_conn *c, *s;
};

static void link_open(struct link *l, struct tls_ctx *cctx, struct tls_ctx *sctx)
{
	int a[2], b[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
	l->cli = a[0];
	l->cli_peer = a[1];
	l->srv = b[0];
	l->srv_peer = b[1];
	nonblocking(l->cli);
	nonblocking(l->cli_peer);
	nonblocking(l->srv);
	nonblocking(l->srv_peer);
	assert_int_equal(tls__conn_new(cctx, l->cli, NULL, &l->c), 0);
	assert_int_equal(tls__conn_new(sctx, l->srv, NULL, &l->s), 0);
}

static void link_close(struct link *l)
{
	tls__conn_free(l->c);
	tls__conn_free(l->s);
	close(l->cli);
	close(l->cli_peer);
	close(l->srv);
	close(l->srv_peer);
}

static void pump(int from, int to)
{
	uint8_t buf[65536];
	ssize_t n;

	while ((n = read(from, buf, sizeof(buf))) > 0)
		assert_int_equal(write(to, buf, (size_t)n), n);
}

/* Both handshakes, stepped in turn: 0, or the server's (else the client's) failure. */
static int handshake(struct link *l, char *err, size_t errlen)
{
	int rc = 0, rs = 0, i;
	short ev;

	for (i = 0; i < 100 && (rc != 1 || rs != 1); i++) {
		if (rc != 1)
			rc = tls__handshake_step(l->c, &ev, err, errlen);
		pump(l->cli_peer, l->srv_peer);
		if (rs != 1)
			rs = tls__handshake_step(l->s, &ev, err, errlen);
		pump(l->srv_peer, l->cli_peer);
		if (rs < 0 || rc < 0)
			return rs < 0 ? rs : rc;
	}
	return rc == 1 && rs == 1 ? 0 : -ETIMEDOUT;
}

static void test_one_time_key(void **state)
{
	struct tls_ctx *cctx = psk_ctx(false, key_hex), *sctx = psk_ctx(true, key_hex);
	struct tls_ctx *wrong =
	    psk_ctx(false, "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
	char err[256] = "", msg[6] = "";
	struct link l;
	short ev;

	(void)state;
	link_open(&l, cctx, sctx);
	assert_int_equal(handshake(&l, err, sizeof(err)), 0);
	assert_int_equal(tls__write(l.c, "hello", 5, &ev), 5);
	pump(l.cli_peer, l.srv_peer);
	assert_int_equal(tls__read(l.s, msg, 5, &ev), 5);
	assert_memory_equal(msg, "hello", 5);
	assert_string_equal(tls__ctx_kind(sctx), "tls-psk");
	link_close(&l);

	link_open(&l, wrong, sctx);
	assert_int_equal(handshake(&l, err, sizeof(err)), -EPROTO);
	assert_non_null(strstr(err, "pre-shared key is not ours"));
	link_close(&l);

	tls__ctx_spend_psk(sctx);
	link_open(&l, cctx, sctx);
	assert_int_equal(handshake(&l, err, sizeof(err)), -EPROTO);
	assert_non_null(strstr(err, "served a move already"));
	link_close(&l);

	tls__ctx_free(cctx);
	tls__ctx_free(wrong);
	tls__ctx_free(sctx);
}

static void test_changed_record_is_refused(void **state)
{
	struct tls_ctx *cctx = psk_ctx(false, key_hex), *sctx = psk_ctx(true, key_hex);
	uint8_t buf[4096], out[2000];
	char err[256] = "";
	struct link l;
	ssize_t n;
	short ev;

	(void)state;
	link_open(&l, cctx, sctx);
	assert_int_equal(handshake(&l, err, sizeof(err)), 0);
	memset(buf, 0x5a, sizeof(out));
	assert_int_equal(tls__write(l.c, buf, sizeof(out), &ev), (ssize_t)sizeof(out));
	n = read(l.cli_peer, buf, sizeof(buf));
	assert_true(n > (ssize_t)sizeof(out));
	buf[n / 2] ^= 1;
	assert_int_equal(write(l.srv_peer, buf, (size_t)n), n);
	assert_int_equal(tls__read(l.s, out, sizeof(out), &ev), -EBADMSG);
	assert_non_null(strstr(tls__conn_error(l.s), "bad record mac"));
	link_close(&l);
	tls__ctx_free(cctx);
	tls__ctx_free(sctx);
}

/* Three TLS connections over socket pairs, their handshakes done together. */
struct striped {
	int w[N_CONN], r[N_CONN];
	struct tls_conn *wc[N_CONN], *rc[N_CONN];
	struct tls_ctx *cctx, *sctx;
};

struct side {
	struct tls_conn **c;
	int ret;
	char err[256];
};

static void *server_handshakes(void *p)
{
	struct side *s = p;

	s->ret = tls__handshake(s->c, N_CONN, 10000, s->err, sizeof(s->err));
	return NULL;
}

static void striped_open(struct striped *st)
{
	struct side srv = {.c = st->rc};
	char err[256] = "";
	pthread_t t;
	int i, sv[2];

	st->cctx = psk_ctx(false, key_hex);
	st->sctx = psk_ctx(true, key_hex);
	for (i = 0; i < N_CONN; i++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		st->w[i] = sv[0];
		st->r[i] = sv[1];
		assert_int_equal(tls__conn_new(st->cctx, st->w[i], NULL, &st->wc[i]), 0);
		assert_int_equal(tls__conn_new(st->sctx, st->r[i], NULL, &st->rc[i]), 0);
	}
	assert_int_equal(pthread_create(&t, NULL, server_handshakes, &srv), 0);
	assert_int_equal(tls__handshake(st->wc, N_CONN, 10000, err, sizeof(err)), 0);
	pthread_join(t, NULL);
	assert_int_equal(srv.ret, 0);
}

struct writer_arg {
	struct striped *st;
	const uint8_t *data;
	int ret;
};

/* Writes the data striped, in pieces of uneven sizes (a record header, pages...). */
static void *writer(void *p)
{
	struct writer_arg *a = p;
	struct stream_io io;
	size_t off = 0, piece = 1;
	int i;

	a->ret = stream_io__init_fd(&io, a->st->w[0]);
	if (!a->ret)
		a->ret = stream_io__stripe(&io, a->st->w, N_CONN, 16 * KiB, false);
	for (i = 0; i < N_CONN && !a->ret; i++)
		a->ret = stream_io__set_tls(&io, (unsigned int)i, a->st->wc[i]);
	while (!a->ret && off < LEN) {
		struct iovec iov[2] = {{(void *)(a->data + off), 0}, {NULL, 0}};
		size_t n = MIN(piece, LEN - off);

		iov[0].iov_len = n / 3;
		iov[1].iov_base = (void *)(a->data + off + n / 3);
		iov[1].iov_len = n - n / 3;
		a->ret = stream_io__writev_full(&io, iov, 2);
		off += n;
		piece = piece * 7 % 70001 + 24;
	}
	stream_io__exit(&io);
	return NULL;
}

static void test_striped_stream_over_tls(void **state)
{
	struct striped st = {0};
	struct writer_arg a = {.st = &st};
	uint8_t *data = malloc(LEN), *got = malloc(LEN);
	struct stream_io io;
	pthread_t t;
	size_t i;

	(void)state;
	assert_non_null(data);
	assert_non_null(got);
	for (i = 0; i < LEN; i++)
		data[i] = (uint8_t)(i * 131 + (i >> 9));
	a.data = data;
	striped_open(&st);
	assert_int_equal(pthread_create(&t, NULL, writer, &a), 0);
	assert_int_equal(stream_io__init_fd(&io, st.r[0]), 0);
	assert_int_equal(stream_io__stripe(&io, st.r, N_CONN, 16 * KiB, true), 0);
	for (i = 0; i < N_CONN; i++)
		assert_int_equal(stream_io__set_tls(&io, (unsigned int)i, st.rc[i]), 0);
	assert_int_equal(stream_io__read_full(&io, got, LEN), 0);
	pthread_join(t, NULL);
	assert_int_equal(a.ret, 0);
	assert_memory_equal(got, data, LEN);
	stream_io__exit(&io);
	for (i = 0; i < N_CONN; i++) {
		close(st.w[i]);
		close(st.r[i]);
	}
	tls__ctx_free(st.cctx);
	tls__ctx_free(st.sctx);
	free(data);
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_modes_and_params),
	    cmocka_unit_test(test_psk_hex),
	    cmocka_unit_test(test_one_time_key),
	    cmocka_unit_test(test_changed_record_is_refused),
	    cmocka_unit_test(test_striped_stream_over_tls),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
