// SPDX-License-Identifier: GPL-2.0
/*
 * TLS 1.3 under the migration stream (include/godwit/tls.h): OpenSSL contexts built
 * from the credentials, the handshake, and record I/O for stream_io.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "godwit/tls.h"

/*
 * AES-128-GCM first: with AES-NI it is the cheapest AEAD per byte, and a 128-bit key
 * is no weakness for a stream that lives minutes; a peer that prefers AES-256-GCM
 * gets it.
 */
#define TLS_CIPHERS "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384"
/* The PSK's identity names the key by a hash of it, so a wrong key is told as such. */
#define PSK_ID_PREFIX "godwit-move-"
#define PSK_ID_LEN    (sizeof(PSK_ID_PREFIX) - 1 + 16)

struct tls_ctx {
	SSL_CTX *ssl;
	bool server;
	bool psk;
	bool psk_spent;
	uint8_t psk_key[TLS_PSK_LEN];
	char psk_id[PSK_ID_LEN + 1];
	char peer_name[TLS_PATH_MAX];
};

struct tls_conn {
	SSL *ssl;
	struct tls_ctx *ctx;
	bool heard;	  /* a handshake message or alert came from the peer */
	char why[160];	  /* a refusal of ours the OpenSSL error does not say */
	char failed[160]; /* why a read or write after the handshake failed */
};

const char *tls__mode_name(enum tls_mode m)
{
	switch (m) {
	case TLS_MODE_OFF:
		return "off";
	case TLS_MODE_OPPORTUNISTIC:
		return "opportunistic";
	case TLS_MODE_REQUIRED:
		return "required";
	default:
		return "default";
	}
}

int tls__mode_parse(const char *s, enum tls_mode *m)
{
	if (!strcmp(s, "off"))
		*m = TLS_MODE_OFF;
	else if (!strcmp(s, "opportunistic"))
		*m = TLS_MODE_OPPORTUNISTIC;
	else if (!strcmp(s, "required"))
		*m = TLS_MODE_REQUIRED;
	else
		return -EINVAL;
	return 0;
}

int tls__check_params(struct tls_params *p, char *err, size_t errlen)
{
	bool certs = p->cert[0] || p->key[0] || p->ca[0];

	if (certs && !(p->cert[0] && p->key[0] && p->ca[0])) {
		snprintf(err, errlen,
			 "certificates need all three of tls-cert, tls-key and tls-ca");
		return -EINVAL;
	}
	if (certs && p->has_psk) {
		snprintf(err, errlen, "give either a pre-shared key or certificates, not both");
		return -EINVAL;
	}
	if (p->peer_name[0] && !certs) {
		snprintf(err, errlen,
			 "tls-peer-name checks a certificate: give tls-cert, tls-key "
			 "and tls-ca too");
		return -EINVAL;
	}
	if (p->mode == TLS_MODE_DEFAULT)
		p->mode = certs || p->has_psk ? TLS_MODE_REQUIRED : TLS_MODE_OFF;
	if (p->mode != TLS_MODE_OFF && !certs && !p->has_psk) {
		snprintf(err, errlen,
			 "encrypt %s needs credentials: tls-cert, tls-key and tls-ca, "
			 "or a pre-shared key",
			 tls__mode_name(p->mode));
		return -EINVAL;
	}
	return 0;
}

static int hexval(char c)
{
	return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

int tls__psk_parse_hex(const char *hex, uint8_t psk[TLS_PSK_LEN])
{
	const char *p;
	unsigned int i;

	while (isspace((unsigned char)*hex))
		hex++;
	for (i = 0; i < 2 * TLS_PSK_LEN; i++)
		if (!isxdigit((unsigned char)hex[i]))
			return -EINVAL;
	for (p = hex + i; *p; p++)
		if (!isspace((unsigned char)*p))
			return -EINVAL;
	for (i = 0; i < TLS_PSK_LEN; i++)
		psk[i] = (uint8_t)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
	return 0;
}

void tls__psk_digest(const uint8_t psk[TLS_PSK_LEN], uint8_t out[TLS_PSK_DIGEST_LEN])
{
	unsigned int len = TLS_PSK_DIGEST_LEN;

	if (!EVP_Digest(psk, TLS_PSK_LEN, out, &len, EVP_sha256(), NULL))
		memset(out, 0, TLS_PSK_DIGEST_LEN);
}

int tls__psk_read_file(const char *path, uint8_t psk[TLS_PSK_LEN], char *err, size_t errlen)
{
	char buf[4 * TLS_PSK_LEN];
	size_t n;
	FILE *f;

	f = fopen(path, "re");
	if (!f) {
		snprintf(err, errlen, "cannot read the key file %s: %s", path, strerror(errno));
		return -errno;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if (tls__psk_parse_hex(buf, psk)) {
		snprintf(err, errlen, "%s: expected a key of 64 hex digits (openssl rand -hex 32)",
			 path);
		return -EINVAL;
	}
	return 0;
}

/* The first error OpenSSL queued, as text, or fallback; the queue is emptied. */
static void ssl_error(char *err, size_t errlen, const char *what, const char *fallback)
{
	unsigned long e = ERR_peek_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;

	snprintf(err, errlen, "%s: %s", what, reason ? reason : fallback);
	ERR_clear_error();
}

static bool cert_time_ok(SSL_CTX *ssl, const char *path, char *err, size_t errlen)
{
	X509 *x = SSL_CTX_get0_certificate(ssl);

	if (!x)
		return true;
	if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
		snprintf(err, errlen, "the certificate in %s has expired", path);
		return false;
	}
	if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
		snprintf(err, errlen, "the certificate in %s is not valid yet", path);
		return false;
	}
	return true;
}

static int load_certs(struct tls_ctx *ctx, const struct tls_params *p, char *err, size_t errlen)
{
	if (SSL_CTX_use_certificate_chain_file(ctx->ssl, p->cert) != 1) {
		ssl_error(err, errlen, p->cert, "cannot load the certificate");
		return -EINVAL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx->ssl, p->key, SSL_FILETYPE_PEM) != 1) {
		if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
			goto mismatch;
		ssl_error(err, errlen, p->key, "cannot load the private key");
		return -EINVAL;
	}
	if (SSL_CTX_check_private_key(ctx->ssl) != 1)
		goto mismatch;
	if (SSL_CTX_load_verify_locations(ctx->ssl, p->ca, NULL) != 1) {
		ssl_error(err, errlen, p->ca, "cannot load the CA certificates");
		return -EINVAL;
	}
	if (!cert_time_ok(ctx->ssl, p->cert, err, errlen))
		return -EINVAL;
	SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	snprintf(ctx->peer_name, sizeof(ctx->peer_name), "%s", p->peer_name);
	return 0;
mismatch:
	snprintf(err, errlen, "the key in %s does not match the certificate in %s", p->key,
		 p->cert);
	ERR_clear_error();
	return -EINVAL;
}

/* A session that carries the key, as TLS 1.3 external PSKs are given to OpenSSL. */
static SSL_SESSION *psk_session(SSL *ssl, const uint8_t *key)
{
	static const unsigned char aes128gcm_sha256[] = {0x13, 0x01};
	const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, aes128gcm_sha256);
	SSL_SESSION *s = SSL_SESSION_new();

	if (!s || !cipher || !SSL_SESSION_set1_master_key(s, key, TLS_PSK_LEN) ||
	    !SSL_SESSION_set_cipher(s, cipher) ||
	    !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
		SSL_SESSION_free(s);
		return NULL;
	}
	return s;
}

static struct tls_ctx *ctx_of(SSL *ssl)
{
	return SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
}

static int psk_use(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
		   SSL_SESSION **sess)
{
	struct tls_ctx *ctx = ctx_of(ssl);
	SSL_SESSION *s = psk_session(ssl, ctx->psk_key);

	*sess = NULL;
	*id = NULL;
	*idlen = 0;
	if (!s)
		return 0;
	/* After a HelloRetryRequest the suite's hash is fixed: ours must be it. */
	if (md && EVP_MD_get_type(md) != EVP_MD_get_type(SSL_CIPHER_get_handshake_digest(
					     SSL_SESSION_get0_cipher(s)))) {
		SSL_SESSION_free(s);
		return 1;
	}
	*sess = s;
	*id = (const unsigned char *)ctx->psk_id;
	*idlen = strlen(ctx->psk_id);
	return 1;
}

static int psk_find(SSL *ssl, const unsigned char *id, size_t idlen, SSL_SESSION **sess)
{
	struct tls_ctx *ctx = ctx_of(ssl);
	struct tls_conn *c = SSL_get_app_data(ssl);

	*sess = NULL;
	if (idlen != strlen(ctx->psk_id) || memcmp(id, ctx->psk_id, idlen)) {
		snprintf(c->why, sizeof(c->why), "the peer's pre-shared key is not ours");
		return 0;
	}
	if (ctx->psk_spent) {
		snprintf(c->why, sizeof(c->why),
			 "the one-time pre-shared key has served a move already");
		return 0;
	}
	*sess = psk_session(ssl, ctx->psk_key);
	return *sess != NULL;
}

static void load_psk(struct tls_ctx *ctx, const struct tls_params *p)
{
	uint8_t md[TLS_PSK_DIGEST_LEN];
	unsigned int i;
	char *at;

	tls__psk_digest(p->psk, md);
	memcpy(ctx->psk_key, p->psk, TLS_PSK_LEN);
	at = ctx->psk_id + snprintf(ctx->psk_id, sizeof(ctx->psk_id), PSK_ID_PREFIX);
	for (i = 0; i < 8; i++)
		at += sprintf(at, "%02x", md[i]);
	if (ctx->server)
		SSL_CTX_set_psk_find_session_callback(ctx->ssl, psk_find);
	else
		SSL_CTX_set_psk_use_session_callback(ctx->ssl, psk_use);
	ctx->psk = true;
}

int tls__ctx_new(const struct tls_params *p, bool server, struct tls_ctx **out, char *err,
		 size_t errlen)
{
	struct tls_ctx *ctx = calloc(1, sizeof(*ctx));
	int ret = -ENOMEM;

	if (!ctx)
		return -ENOMEM;
	ctx->server = server;
	ctx->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx->ssl)
		goto err;
	SSL_CTX_set_app_data(ctx->ssl, ctx);
	if (!SSL_CTX_set_min_proto_version(ctx->ssl, TLS1_3_VERSION) ||
	    !SSL_CTX_set_ciphersuites(ctx->ssl, TLS_CIPHERS))
		goto err;
	/* One connection, one session: no tickets to resume it (nor to replay it with). */
	SSL_CTX_set_num_tickets(ctx->ssl, 0);
	SSL_CTX_set_options(ctx->ssl, SSL_OP_NO_TICKET);
	SSL_CTX_set_mode(ctx->ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	ret = 0;
	if (p->has_psk)
		load_psk(ctx, p);
	else
		ret = load_certs(ctx, p, err, errlen);
	if (ret)
		goto err;
	*out = ctx;
	return 0;
err:
	if (!err[0])
		ssl_error(err, errlen, "TLS", strerror(-ret));
	tls__ctx_free(ctx);
	return ret;
}

void tls__ctx_free(struct tls_ctx *ctx)
{
	if (!ctx)
		return;
	SSL_CTX_free(ctx->ssl);
	OPENSSL_cleanse(ctx->psk_key, sizeof(ctx->psk_key));
	free(ctx);
}

const char *tls__ctx_kind(const struct tls_ctx *ctx)
{
	return ctx->psk ? "tls-psk" : "tls-x509";
}

void tls__ctx_spend_psk(struct tls_ctx *ctx)
{
	if (ctx)
		ctx->psk_spent = true;
}

static void heard(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl,
		  void *arg)
{
	struct tls_conn *c = arg;

	(void)version;
	(void)buf;
	(void)len;
	(void)ssl;
	if (!write_p && (content_type == SSL3_RT_HANDSHAKE || content_type == SSL3_RT_ALERT))
		c->heard = true;
}

/* The name the peer's certificate must carry: a DNS name or an IP address. */
static int expect_name(SSL *ssl, const char *name)
{
	X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
	unsigned char addr[16];

	if (inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1)
		return X509_VERIFY_PARAM_set1_ip_asc(vp, name) == 1 ? 0 : -EINVAL;
	X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	return X509_VERIFY_PARAM_set1_host(vp, name, 0) == 1 ? 0 : -EINVAL;
}

int tls__conn_new(struct tls_ctx *ctx, int fd, const char *peer, struct tls_conn **out)
{
	struct tls_conn *c = calloc(1, sizeof(*c));
	const char *name = ctx->peer_name[0] ? ctx->peer_name : peer;

	if (!c)
		return -ENOMEM;
	c->ctx = ctx;
	c->ssl = SSL_new(ctx->ssl);
	if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1)
		goto err;
	SSL_set_app_data(c->ssl, c);
	SSL_set_msg_callback(c->ssl, heard);
	SSL_set_msg_callback_arg(c->ssl, c);
	if (!ctx->psk && name && name[0] && expect_name(c->ssl, name))
		goto err;
	if (ctx->server)
		SSL_set_accept_state(c->ssl);
	else
		SSL_set_connect_state(c->ssl);
	*out = c;
	return 0;
err:
	ERR_clear_error();
	tls__conn_free(c);
	return -ENOMEM;
}

void tls__conn_free(struct tls_conn *c)
{
	if (!c)
		return;
	SSL_free(c->ssl);
	free(c);
}

bool tls__peer_silent(const struct tls_conn *c)
{
	return !c->heard;
}

/* Why a handshake failed, the most telling reason first. */
static int handshake_failed(struct tls_conn *c, int sslerr, char *err, size_t errlen)
{
	long v = SSL_get_verify_result(c->ssl);
	int saved = errno;

	if (c->why[0]) {
		snprintf(err, errlen, "%s", c->why);
	} else if (v != X509_V_OK) {
		snprintf(err, errlen, "the peer's certificate: %s",
			 X509_verify_cert_error_string(v));
	} else if (!c->heard) {
		snprintf(err, errlen, "the peer does not speak TLS: it %s",
			 sslerr == SSL_ERROR_SSL ? "answered in plaintext"
						 : "closed the connection");
		ERR_clear_error();
		return -ECONNRESET;
	} else if (ERR_peek_error()) {
		ssl_error(err, errlen, "TLS handshake", "");
	} else {
		snprintf(err, errlen, "TLS handshake: %s",
			 saved ? strerror(saved) : "the peer closed the connection");
	}
	ERR_clear_error();
	return -EPROTO;
}

int tls__handshake_step(struct tls_conn *c, short *events, char *err, size_t errlen)
{
	int r, e;

	ERR_clear_error();
	errno = 0;
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		/* Only the handshake's messages are listened to: not every record's. */
		SSL_set_msg_callback(c->ssl, NULL);
		return 1;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		*events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
		return 0;
	}
	return handshake_failed(c, e, err, errlen);
}

static int set_flags(int fd, bool nonblock)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	fl = nonblock ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
	return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

/* Steps every unfinished handshake once; how many still wait (their pollfds in p). */
static int step_all(struct tls_conn **c, unsigned int n, bool *done, struct pollfd *p, char *err,
		    size_t errlen)
{
	unsigned int i, waiting = 0;
	short ev = 0;
	int r;

	for (i = 0; i < n; i++) {
		if (done[i])
			continue;
		r = tls__handshake_step(c[i], &ev, err, errlen);
		if (r < 0)
			return r;
		done[i] = r;
		if (!r)
			p[waiting++] = (struct pollfd){.fd = SSL_get_fd(c[i]->ssl), .events = ev};
	}
	return (int)waiting;
}

int tls__handshake(struct tls_conn **c, unsigned int n, int timeout_ms, char *err, size_t errlen)
{
	uint64_t deadline = util__now_ns() + (uint64_t)timeout_ms * 1000000ULL;
	struct pollfd p[64];
	bool done[64] = {false};
	unsigned int i;
	int ret = 0, waiting;

	if (n > ARRAY_SIZE(p))
		return -EINVAL;
	for (i = 0; i < n && !ret; i++)
		ret = set_flags(SSL_get_fd(c[i]->ssl), true);
	while (!ret) {
		uint64_t now = util__now_ns();

		waiting = step_all(c, n, done, p, err, errlen);
		if (waiting <= 0) {
			ret = waiting;
			break;
		}
		if (now >= deadline) {
			snprintf(err, errlen, "TLS handshake: no answer within %d ms", timeout_ms);
			ret = -ETIMEDOUT;
			break;
		}
		if (poll(p, (nfds_t)waiting, (int)((deadline - now) / 1000000 + 1)) < 0 &&
		    errno != EINTR)
			ret = -errno;
	}
	for (i = 0; i < n; i++)
		if (set_flags(SSL_get_fd(c[i]->ssl), false) && !ret)
			ret = -EIO;
	return ret;
}

/* A failed read or write: -EAGAIN with the events to wait for, or why it ended. */
static ssize_t io_failed(struct tls_conn *c, int r, short *events)
{
	int saved = errno;

	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		*events = POLLIN;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		*events = POLLOUT;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return -ENODATA;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		return saved ? -saved : -ENODATA;
	default:
		break;
	}
	if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
		ERR_clear_error();
		return -ENODATA;
	}
	ssl_error(c->failed, sizeof(c->failed), "TLS", "a record did not authenticate");
	return -EBADMSG;
}

ssize_t tls__read(struct tls_conn *c, void *buf, size_t len, short *events)
{
	size_t n;
	int r;

	ERR_clear_error();
	errno = 0;
	r = SSL_read_ex(c->ssl, buf, MIN(len, (size_t)INT_MAX), &n);
	return r == 1 ? (ssize_t)n : io_failed(c, r, events);
}

ssize_t tls__write(struct tls_conn *c, const void *buf, size_t len, short *events)
{
	size_t n;
	int r;

	ERR_clear_error();
	errno = 0;
	r = SSL_write_ex(c->ssl, buf, MIN(len, (size_t)INT_MAX), &n);
	return r == 1 ? (ssize_t)n : io_failed(c, r, events);
}

const char *tls__conn_error(const struct tls_conn *c)
{
	return c && c->failed[0] ? c->failed : NULL;
}

bool tls__pending(const struct tls_conn *c)
{
	return SSL_pending(c->ssl) > 0;
}
