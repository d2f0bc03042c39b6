// SPDX-License-Identifier: GPL-2.0
/*
 * The web console (docs/console.md): the page's files, embedded in the binary, and
 * the gate in front of the managers' API. A request passes with the cluster's client
 * certificate (as before) or with a console session: a cookie that a login with a
 * token of `godwit cluster console-token` made, and the page's own header. Tokens and
 * sessions are kept in etcd by their SHA-256 only, so that any manager checks them
 * and a copy of etcd lets no one in.
 */
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/log.h"
#include "manager.h"

/* Outside K_ROOT: a login is not a change of the cluster the leader should look at. */
#define K_CONSOLE  "/godwit-console/"
#define K_CTOKEN   K_CONSOLE "tokens/"	 /* + SHA-256 of a token: {"created_ms", "expires_ms"} */
#define K_CSESSION K_CONSOLE "sessions/" /* + SHA-256 of a session: ..., "token" */

#define COOKIE	       "__Host-godwit_session"
#define SESSION_S      (12 * 3600)
#define TOKEN_DAYS     30
#define TOKEN_DAYS_MAX 365
#define SECRET_HEX     64 /* 32 random bytes */
#define ID_HEX	       12 /* how events and the CLI name a token: its hash's start */

/*
 * The page's files, as they are in src/cluster/console/, put into .rodata by the
 * assembler when this file is built (the Makefile makes this object depend on them).
 */
#define EMBED(sym, file)                                                                           \
	__asm__(".pushsection .rodata\n"                                                           \
		".balign 16\n" #sym ":\n"                                                          \
		".incbin \"src/cluster/console/" file "\"\n" #sym "_end:\n"                        \
		".popsection\n");                                                                  \
	extern const char sym[], sym##_end[]

EMBED(console_index_html, "index.html");
EMBED(console_js, "console.js");
EMBED(console_css, "console.css");
EMBED(console_icon, "favicon.svg");

static const struct console_file {
	const char *path, *type, *start, *end;
} files[] = {
    {"/console/", "text/html; charset=utf-8", console_index_html, console_index_html_end},
    {"/console/console.js", "text/javascript; charset=utf-8", console_js, console_js_end},
    {"/console/console.css", "text/css; charset=utf-8", console_css, console_css_end},
    {"/console/favicon.svg", "image/svg+xml", console_icon, console_icon_end},
};

/* Nothing but the page's own files; no frame, no inline script, no other site. */
static const char *const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; "
			       "img-src 'self'; connect-src 'self'; form-action 'self'; "
			       "base-uri 'none'; frame-ancestors 'none'";

static void hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static bool is_secret(const char *s)
{
	size_t i;

	for (i = 0; i < SECRET_HEX; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[SECRET_HEX] == '\0';
}

static int new_secret(char out[SECRET_HEX + 1])
{
	unsigned char b[SECRET_HEX / 2];

	if (RAND_bytes(b, sizeof(b)) != 1)
		return -EIO;
	hex(b, sizeof(b), out);
	return 0;
}

/* Where a token or session is kept: prefix + SHA-256 of the secret. */
static int secret_key(const char *prefix, const char *secret, char *key, size_t len)
{
	unsigned char md[32];
	char h[65];

	if (EVP_Digest(secret, strlen(secret), md, NULL, EVP_sha256(), NULL) != 1)
		return -EIO;
	hex(md, sizeof(md), h);
	snprintf(key, len, "%s%s", prefix, h);
	return 0;
}

/* The record at key if it has not expired: 0, -ENOENT, or -EIO (etcd's error in e). */
static int live_record(struct etcd *e, const char *key, json_t **rec)
{
	struct etcd_range r;
	int ret;

	*rec = NULL;
	ret = etcd__get(e, key, &r);
	if (ret)
		return -EIO;
	*rec = r.count ? cluster__kv_json(&r.kvs[0]) : NULL;
	etcd_range__free(&r);
	if (*rec && cluster__int(*rec, "expires_ms", 0) > cluster__now_ms())
		return 0;
	json_decref(*rec);
	*rec = NULL;
	return -ENOENT;
}

bool mgr__console_cookie(const char *cookies, char out[SECRET_HEX + 1])
{
	const char *p = cookies;
	size_t n = strlen(COOKIE);

	while (p && *p) {
		while (*p == ' ')
			p++;
		if (!strncmp(p, COOKIE, n) && p[n] == '=') {
			p += n + 1;
			if (strspn(p, "0123456789abcdef") != SECRET_HEX ||
			    (p[SECRET_HEX] && p[SECRET_HEX] != ';'))
				return false;
			memcpy(out, p, SECRET_HEX);
			out[SECRET_HEX] = '\0';
			return true;
		}
		p = strchr(p, ';');
		if (p)
			p++;
	}
	return false;
}

/*
 * Cross-site requests cannot carry the page's header without a CORS preflight, which
 * nothing here answers; a browser's Origin, when it sends one, must be this server.
 */
static bool from_the_page(const struct https_req *r)
{
	const char *mark = https__header(r, "X-Godwit-Console");
	const char *origin = https__header(r, "Origin"), *host = https__header(r, "Host");

	if (!mark || strcmp(mark, "1"))
		return false;
	return !origin || (host && !strncmp(origin, "https://", 8) && !strcmp(origin + 8, host));
}

static void set_cookie(struct https_req *r, const char *secret, int max_age)
{
	char c[200];

	snprintf(c, sizeof(c), COOKIE "=%s; Path=/; Max-Age=%d; Secure; HttpOnly; SameSite=Strict",
		 secret, max_age);
	https__add_header(r, "Set-Cookie", c);
}

static void login(struct mgr *m, struct https_req *r, const json_t *body, struct api_response *resp)
{
	const char *token = cluster__str(body, "token", "");
	char key[160], skey[160], secret[SECRET_HEX + 1];
	int64_t lease = 0, expires = cluster__now_ms() + SESSION_S * 1000LL;
	json_t *rec;
	int ret;

	if (!from_the_page(r)) {
		api__error(resp, 403, "a login comes from the console's page");
		return;
	}
	if (!is_secret(token)) {
		api__error(resp, 401,
			   "not a console token (godwit cluster console-token makes one)");
		return;
	}
	if (secret_key(K_CTOKEN, token, key, sizeof(key)))
		goto err_crypto;
	ret = live_record(&m->api, key, &rec);
	if (ret == -EIO)
		goto err_etcd;
	json_decref(rec);
	if (ret) {
		pr_warn("console: a login with an unknown or expired token");
		api__error(resp, 401,
			   "unknown or expired token (godwit cluster console-token makes one)");
		return;
	}
	if (new_secret(secret) || secret_key(K_CSESSION, secret, skey, sizeof(skey)))
		goto err_crypto;
	rec = json_pack("{s:I, s:I, s:s#}", "created_ms", (json_int_t)cluster__now_ms(),
			"expires_ms", (json_int_t)expires, "token", key + strlen(K_CTOKEN), ID_HEX);
	/* The lease takes the session out of etcd when it ends. */
	ret = rec ? etcd__lease_grant(&m->api, SESSION_S, &lease) : -ENOMEM;
	ret = ret ?: cluster__put_json(&m->api, skey, rec, lease);
	json_decref(rec);
	if (ret)
		goto err_etcd;
	set_cookie(r, secret, SESSION_S);
	cluster__event(&m->api, "console: a login with token %.*s", ID_HEX, key + strlen(K_CTOKEN));
	resp->body = json_pack("{s:s, s:I}", "auth", "session", "expires_ms", (json_int_t)expires);
	return;
err_crypto:
	api__error(resp, 500, "cannot make a session (OpenSSL)");
	return;
err_etcd:
	api__error(resp, 503, "cannot reach etcd: %s", m->api.err);
}

/* The session this request shows: 0 (its record in *rec), -ENOENT or -EIO. */
static int session_of(struct mgr *m, const struct https_req *r, char *key, size_t len, json_t **rec)
{
	char secret[SECRET_HEX + 1];

	*rec = NULL;
	if (!mgr__console_cookie(https__header(r, "Cookie"), secret))
		return -ENOENT;
	if (secret_key(K_CSESSION, secret, key, len))
		return -EIO;
	return live_record(&m->api, key, rec);
}

static void logout(struct mgr *m, struct https_req *r, struct api_response *resp)
{
	char key[160];
	json_t *rec;

	if (!from_the_page(r)) {
		api__error(resp, 403, "a logout comes from the console's page");
		return;
	}
	if (!session_of(m, r, key, sizeof(key), &rec))
		etcd__delete(&m->api, key, false);
	json_decref(rec);
	set_cookie(r, "", 0);
	resp->status = 204;
}

/* Made and revoked only with the client certificate: a session cannot outlive itself. */
static void tokens(struct mgr *m, const struct api_request *req, struct api_response *resp)
{
	int64_t days = cluster__int(req->body, "days", TOKEN_DAYS), lease = 0, expires;
	char token[SECRET_HEX + 1], key[160];
	json_t *rec;
	int ret;

	if (!strcmp(req->method, "DELETE")) {
		if (etcd__delete(&m->api, K_CTOKEN, true) ||
		    etcd__delete(&m->api, K_CSESSION, true)) {
			api__error(resp, 503, "cannot reach etcd: %s", m->api.err);
			return;
		}
		cluster__event(&m->api, "console: every token and session revoked");
		resp->status = 204;
		return;
	}
	if (days < 1 || days > TOKEN_DAYS_MAX) {
		api__error(resp, 400, "days: 1..%d", TOKEN_DAYS_MAX);
		return;
	}
	if (new_secret(token) || secret_key(K_CTOKEN, token, key, sizeof(key))) {
		api__error(resp, 500, "cannot make a token (OpenSSL)");
		return;
	}
	expires = cluster__now_ms() + days * 86400000LL;
	rec = json_pack("{s:I, s:I}", "created_ms", (json_int_t)cluster__now_ms(), "expires_ms",
			(json_int_t)expires);
	ret = rec ? etcd__lease_grant(&m->api, days * 86400, &lease) : -ENOMEM;
	ret = ret ?: cluster__put_json(&m->api, key, rec, lease);
	json_decref(rec);
	if (ret) {
		api__error(resp, 503, "cannot reach etcd: %s", m->api.err);
		return;
	}
	cluster__event(&m->api, "console: token %.*s made, valid %" PRId64 " days", ID_HEX,
		       key + strlen(K_CTOKEN), days);
	resp->status = 201;
	resp->body = json_pack("{s:s, s:s#, s:I}", "token", token, "id", key + strlen(K_CTOKEN),
			       ID_HEX, "expires_ms", (json_int_t)expires);
}

static const struct console_file *file_of(const char *path)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(files); i++)
		if (!strcmp(path, files[i].path))
			return &files[i];
	return NULL;
}

static bool serve_file(struct https_req *r, const char *path, struct api_response *resp)
{
	const struct console_file *f = file_of(path);

	if (!strcmp(path, "/") || !strcmp(path, "/console")) {
		https__add_header(r, "Location", "/console/");
		resp->status = 302;
		return true;
	}
	if (!f)
		return false;
	https__add_header(r, "Content-Security-Policy", CSP);
	https__add_header(r, "Referrer-Policy", "no-referrer");
	https__add_header(r, "X-Frame-Options", "DENY");
	https__reply_file(r, f->type, f->start, (size_t)(f->end - f->start));
	return true;
}

bool mgr__console_gate(void *opaque, struct https_req *r, const struct api_request *req,
		       struct api_response *resp)
{
	struct mgr *m = opaque;
	bool get = !strcmp(req->method, "GET"), post = !strcmp(req->method, "POST");
	bool is_tokens = !strcmp(req->path, "/console/tokens");
	bool is_session = get && !strcmp(req->path, "/console/session");
	char key[160];
	json_t *rec;
	int ret;

	https__add_header(r, "X-Content-Type-Options", "nosniff");
	https__add_header(r, "Cache-Control", "no-store");
	/* The page holds no data: it asks for it, and shows the login when refused. */
	if (get && serve_file(r, req->path, resp))
		return true;
	if (post && !strcmp(req->path, "/console/login")) {
		login(m, r, req->body, resp);
		return true;
	}
	if (post && !strcmp(req->path, "/console/logout")) {
		logout(m, r, resp);
		return true;
	}
	if (https__client_cert(r)) {
		if (is_session)
			resp->body = json_pack("{s:s}", "auth", "certificate");
		else if (is_tokens && (post || !strcmp(req->method, "DELETE")))
			tokens(m, req, resp);
		else
			return false;
		return true;
	}
	ret = session_of(m, r, key, sizeof(key), &rec);
	if (ret == -EIO) {
		api__error(resp, 503, "cannot check the session: %s", m->api.err);
		return true;
	}
	if (is_session) {
		/* Asked by the page before it knows: not logged in is an answer, not an error. */
		resp->body = rec ? json_pack("{s:s, s:O}", "auth", "session", "expires_ms",
					     json_object_get(rec, "expires_ms"))
				 : json_pack("{s:n}", "auth");
		json_decref(rec);
		return true;
	}
	json_decref(rec);
	if (ret) {
		api__error(resp, 401,
			   "present the cluster's client certificate, or log in at /console/ with "
			   "a token of godwit cluster console-token (docs/console.md)");
		return true;
	}
	if (!from_the_page(r)) {
		api__error(resp, 403,
			   "a console session's requests come from the console's page (its "
			   "X-Godwit-Console header, same origin)");
		return true;
	}
	if (is_tokens) {
		api__error(resp, 403,
			   "tokens are made with the client certificate (godwit cluster "
			   "console-token), not from a console session");
		return true;
	}
	return false;
}
