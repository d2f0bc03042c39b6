// SPDX-License-Identifier: GPL-2.0
/*
 * The cost of TLS on a migration stream, without a VM: GIB of incompressible pages go
 * through godwit's stream_io (records of a 24-byte header and 256 separate 4 KiB pages,
 * as RAM records are written), from one thread to another over loopback TCP, plaintext
 * and then over TLS 1.3 (one-time key), side by side in one run, ROUNDS times each.
 * Prints wall time and each side's CPU per GiB. Build (after make):
 *   gcc -O2 -D_GNU_SOURCE -Iinclude bench/limits/tls_stream.c build/libgodwit.a \
 *       -lpthread -lssl -lcrypto -llz4 -lzstd -lxxhash -o build/tls_stream
 * Usage: build/tls_stream [GIB] [ROUNDS]. Used for docs/bench.md, "TLS".
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "godwit/stream.h"
#include "godwit/tls.h"

#define PAGES 256
#define HDR   24

struct side {
	int fd;
	struct tls_ctx *ctx;
	size_t bytes;
	uint8_t *mem;
	double cpu;
	int ret;
};

static double cpu_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static double wall_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static int secure(struct side *s, struct stream_io *io)
{
	struct tls_conn *c;
	char err[256] = "";
	int ret;

	if (!s->ctx)
		return 0;
	ret = tls__conn_new(s->ctx, s->fd, NULL, &c);
	if (!ret)
		ret = tls__handshake(&c, 1, 10000, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "handshake: %s\n", err);
		return ret;
	}
	return stream_io__set_tls(io, 0, c);
}

static void *writer(void *p)
{
	struct side *s = p;
	struct iovec iov[1 + PAGES];
	uint8_t hdr[HDR] = {0};
	struct stream_io io;
	size_t sent = 0, pos = 0;
	double t0;
	int i;

	s->ret = stream_io__init_fd(&io, s->fd);
	if (!s->ret)
		s->ret = secure(s, &io);
	t0 = cpu_now();
	while (!s->ret && sent < s->bytes) {
		iov[0] = (struct iovec){hdr, HDR};
		for (i = 0; i < PAGES; i++, pos = (pos + 4096) % (64 << 20))
			iov[1 + i] = (struct iovec){s->mem + pos, 4096};
		s->ret = stream_io__writev_full(&io, iov, 1 + PAGES);
		sent += HDR + PAGES * 4096;
	}
	s->cpu = cpu_now() - t0;
	stream_io__exit(&io);
	shutdown(s->fd, SHUT_WR);
	return NULL;
}

static void *reader(void *p)
{
	struct side *s = p;
	uint8_t *buf = malloc(HDR + PAGES * 4096);
	struct stream_io io;
	size_t got = 0;
	double t0;

	s->ret = stream_io__init_fd(&io, s->fd);
	if (!s->ret)
		s->ret = secure(s, &io);
	t0 = cpu_now();
	while (!s->ret && got < s->bytes) {
		s->ret = stream_io__read_full(&io, buf, HDR);
		if (!s->ret)
			s->ret = stream_io__read_full(&io, buf + HDR, PAGES * 4096);
		got += HDR + PAGES * 4096;
	}
	s->cpu = cpu_now() - t0;
	stream_io__exit(&io);
	free(buf);
	return NULL;
}

static void tcp_pair(int *a, int *b)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&sa, &len))
		exit(1);
	*a = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(*a, (struct sockaddr *)&sa, sizeof(sa)))
		exit(1);
	*b = accept(l, NULL, NULL);
	close(l);
}

static struct tls_ctx *psk_ctx(bool server)
{
	struct tls_params p = {.has_psk = true, .mode = TLS_MODE_REQUIRED};
	struct tls_ctx *ctx;
	char err[256] = "";

	memset(p.psk, 0x42, sizeof(p.psk));
	if (tls__ctx_new(&p, server, &ctx, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	return ctx;
}

static void one(const char *name, uint8_t *mem, size_t bytes, bool tls)
{
	struct side w = {.bytes = bytes, .mem = mem}, r = {.bytes = bytes};
	double gib = bytes / (double)(1 << 30), t;
	pthread_t tw, tr;

	tcp_pair(&w.fd, &r.fd);
	if (tls) {
		w.ctx = psk_ctx(false);
		r.ctx = psk_ctx(true);
	}
	t = wall_now();
	pthread_create(&tr, NULL, reader, &r);
	pthread_create(&tw, NULL, writer, &w);
	pthread_join(tw, NULL);
	pthread_join(tr, NULL);
	t = wall_now() - t;
	printf("%-9s %.2f GiB/s; CPU per GiB: sender %.3f s, receiver %.3f s%s\n", name, gib / t,
	       w.cpu / gib, r.cpu / gib, w.ret || r.ret ? " (FAILED)" : "");
	close(w.fd);
	close(r.fd);
	tls__ctx_free(w.ctx);
	tls__ctx_free(r.ctx);
}

int main(int argc, char **argv)
{
	size_t bytes = (size_t)((argc > 1 ? atof(argv[1]) : 2) * (double)(1UL << 30));
	int rounds = argc > 2 ? atoi(argv[2]) : 3, i;
	uint8_t *mem = malloc(64 << 20);

	srand(1);
	for (i = 0; i < 64 << 20; i++)
		mem[i] = (uint8_t)rand();
	for (i = 0; i < rounds; i++) {
		one("plaintext", mem, bytes, false);
		one("tls", mem, bytes, true);
	}
	return 0;
}
