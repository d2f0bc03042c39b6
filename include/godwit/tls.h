/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_TLS_H
#define GODWIT_TLS_H

/*
 * TLS 1.3 on a migration stream's connections (src/migrate/tls.c, OpenSSL). Two ways
 * to authenticate, one per move: X.509 certificates checked both ways against a CA,
 * or a one-time pre-shared key (TLS 1.3 external PSK with an (EC)DHE exchange). The
 * stream above does not change: stream_io reads and writes through a struct
 * tls_conn where a connection has one (docs/migration-format.md, "The channel").
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "godwit/util.h"

enum tls_mode {
	TLS_MODE_DEFAULT = 0, /* not said: required with credentials, else off */
	TLS_MODE_OFF,
	TLS_MODE_OPPORTUNISTIC, /* TLS where the peer speaks it, plaintext (said) where not */
	TLS_MODE_REQUIRED,
};

#define TLS_PSK_LEN  32
#define TLS_PATH_MAX 256

struct tls_params {
	enum tls_mode mode;
	char cert[TLS_PATH_MAX];      /* PEM: this side's certificate (chain) */
	char key[TLS_PATH_MAX];	      /* PEM: its private key */
	char ca[TLS_PATH_MAX];	      /* PEM: the CA(s) the peer's certificate must chain to */
	char peer_name[TLS_PATH_MAX]; /* the name the peer's certificate must carry */
	bool has_psk;
	uint8_t psk[TLS_PSK_LEN];
};

const char *tls__mode_name(enum tls_mode m);
/* "required", "opportunistic" or "off"; -EINVAL for anything else. */
int __must_check tls__mode_parse(const char *s, enum tls_mode *m);
/*
 * Settles the mode (the default: required when a key or certificates are given, else
 * off) and checks that the credentials go together: -EINVAL with why in err.
 */
int __must_check tls__check_params(struct tls_params *p, char *err, size_t errlen);
/* A digest of a key, to remember that it was used without keeping it. */
#define TLS_PSK_DIGEST_LEN 32
void tls__psk_digest(const uint8_t psk[TLS_PSK_LEN], uint8_t out[TLS_PSK_DIGEST_LEN]);
/* 64 hex digits, or a file holding them (whitespace around allowed): 0 or -EINVAL. */
int __must_check tls__psk_parse_hex(const char *hex, uint8_t psk[TLS_PSK_LEN]);
int __must_check tls__psk_read_file(const char *path, uint8_t psk[TLS_PSK_LEN], char *err,
				    size_t errlen);

struct tls_ctx;
struct tls_conn;

/*
 * Loads and checks the credentials (files readable, key matching the certificate,
 * the certificate valid now): -EINVAL, -ENOENT, ... with why in err. p->mode must be
 * settled and not off.
 */
int __must_check tls__ctx_new(const struct tls_params *p, bool server, struct tls_ctx **out,
			      char *err, size_t errlen);
void tls__ctx_free(struct tls_ctx *ctx);
/* How the connections of ctx authenticate: "tls-psk" or "tls-x509". */
const char *tls__ctx_kind(const struct tls_ctx *ctx);
/* A destination's one-time key has served a move: it takes no further connection. */
void tls__ctx_spend_psk(struct tls_ctx *ctx);

/*
 * A TLS session over fd (not owned), a client or a server as ctx is. A client checks
 * the server's certificate for peer (the params' peer_name if set): a DNS name or an
 * IP address; NULL: the name is not checked.
 */
int __must_check tls__conn_new(struct tls_ctx *ctx, int fd, const char *peer,
			       struct tls_conn **out);
void tls__conn_free(struct tls_conn *c);
/*
 * One step of the handshake on a non-blocking fd: 1 when done, 0 when it waits for
 * *events on the fd, or -errno (-EPROTO: refused, -ECONNRESET: the peer closed) with
 * why in err, the certificate's failure first.
 */
int tls__handshake_step(struct tls_conn *c, short *events, char *err, size_t errlen);
/*
 * All n handshakes at once (their fds made non-blocking meanwhile, and back), within
 * timeout_ms: 0 or the first failure, with why in err.
 */
int __must_check tls__handshake(struct tls_conn **c, unsigned int n, int timeout_ms, char *err,
				size_t errlen);
/*
 * Whether a failed handshake got no TLS at all back: the peer closed or answered
 * with something else (a godwit that does not speak TLS); an opportunistic source
 * may then go on without it.
 */
bool tls__peer_silent(const struct tls_conn *c);
/*
 * Bytes moved (> 0), or -EAGAIN with *events what the fd must become for a retry
 * with the same arguments, -ENODATA at the peer's end, -EBADMSG for a record that
 * does not authenticate, or -errno.
 */
ssize_t tls__read(struct tls_conn *c, void *buf, size_t len, short *events);
ssize_t tls__write(struct tls_conn *c, const void *buf, size_t len, short *events);
/* Why a read or write failed with -EBADMSG (an alert, a record that did not authenticate), or NULL.
 */
const char *tls__conn_error(const struct tls_conn *c);
/* Decrypted bytes held that a read returns without the fd. */
bool tls__pending(const struct tls_conn *c);
/* The most plaintext one record carries: what stream_io gathers before a write. */
#define TLS_RECORD_MAX 16384

#endif
