// SPDX-License-Identifier: GPL-2.0
/* etcd's v3 JSON gateway through libcurl (docs/cluster.md, "etcd"). */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "godwit/api_client.h"
#include "godwit/cluster/etcd.h"

/* Our values are small JSON objects; a listing of a large cluster is a few MiB. */
#define ETCD_MAX_BODY (64u << 20)

char *etcd__b64(const void *data, size_t len)
{
	char *out;

	if (len > (1u << 30))
		return NULL;
	out = malloc(4 * ((len + 2) / 3) + 1);
	if (!out)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

int etcd__unb64(const char *s, char **out, size_t *len)
{
	size_t n = strlen(s), pad = 0;
	unsigned char *buf;
	int got;

	*out = NULL;
	if (n % 4 || n > (1u << 30))
		return -EINVAL;
	if (n && s[n - 1] == '=')
		pad++;
	if (n > 1 && s[n - 2] == '=')
		pad++;
	buf = malloc(n / 4 * 3 + 1);
	if (!buf)
		return -ENOMEM;
	got = n ? EVP_DecodeBlock(buf, (const unsigned char *)s, (int)n) : 0;
	if (got < 0 || (size_t)got < pad) {
		free(buf);
		return -EINVAL;
	}
	got -= (int)pad;
	buf[got] = '\0';
	*out = (char *)buf;
	*len = (size_t)got;
	return 0;
}

char *etcd__prefix_end(const char *prefix)
{
	size_t n = strlen(prefix);
	char *end = strdup(prefix);

	if (!end)
		return NULL;
	/* The first key after every key with this prefix: its last byte that is not 0xff, plus one.
	 */
	while (n) {
		if ((unsigned char)end[n - 1] < 0xff) {
			end[n - 1]++;
			end[n] = '\0';
			return end;
		}
		n--;
	}
	/* All 0xff (or empty): to the end of the keyspace, which etcd spells "\0". */
	end[0] = '\0';
	return end;
}

static int set_b64(json_t *obj, const char *field, const char *s)
{
	char *b = etcd__b64(s, strlen(s));

	if (!b)
		return -ENOMEM;
	if (json_object_set_new(obj, field, json_string(b))) {
		free(b);
		return -ENOMEM;
	}
	free(b);
	return 0;
}

static int set_i64(json_t *obj, const char *field, int64_t v)
{
	char num[24];

	snprintf(num, sizeof(num), "%" PRId64, v);
	return json_object_set_new(obj, field, json_string(num)) ? -ENOMEM : 0;
}

static int set_range_end(json_t *obj, const char *key)
{
	char *end = etcd__prefix_end(key);
	int ret;

	if (!end)
		return -ENOMEM;
	/* etcd reads range_end "\0" (base64 "AA==") as "every key >= key". */
	if (!end[0]) {
		free(end);
		return json_object_set_new(obj, "range_end", json_string("AA==")) ? -ENOMEM : 0;
	}
	ret = set_b64(obj, "range_end", end);
	free(end);
	return ret;
}

json_t *etcd__range_request(const char *key, bool prefix)
{
	json_t *req = json_object();

	if (!req || set_b64(req, "key", key) || (prefix && set_range_end(req, key))) {
		json_decref(req);
		return NULL;
	}
	return req;
}

/* int64s come as decimal strings (proto3 JSON), and are absent when 0. */
static int get_i64(const json_t *obj, const char *field, int64_t *v)
{
	const json_t *j = json_object_get(obj, field);
	const char *s;
	char *end;

	*v = 0;
	if (!j)
		return 0;
	if (json_is_integer(j)) {
		*v = json_integer_value(j);
		return 0;
	}
	s = json_string_value(j);
	if (!s || !*s)
		return -EPROTO;
	errno = 0;
	*v = strtoll(s, &end, 10);
	return errno || *end ? -EPROTO : 0;
}

static int b64_field(const json_t *obj, const char *field, char **out, size_t *len)
{
	const json_t *j = json_object_get(obj, field);
	size_t dummy;

	if (!j) {
		*out = strdup("");
		if (len)
			*len = 0;
		return *out ? 0 : -ENOMEM;
	}
	if (!json_is_string(j))
		return -EPROTO;
	return etcd__unb64(json_string_value(j), out, len ? len : &dummy) ? -EPROTO : 0;
}

static int header_revision(const json_t *resp, int64_t *rev)
{
	const json_t *h = json_object_get(resp, "header");

	*rev = 0;
	return h ? get_i64(h, "revision", rev) : 0;
}

int etcd__range_parse(const json_t *resp, struct etcd_range *r)
{
	const json_t *kvs = json_object_get(resp, "kvs"), *kv;
	size_t i;
	int ret;

	memset(r, 0, sizeof(*r));
	if (!json_is_object(resp))
		return -EPROTO;
	ret = header_revision(resp, &r->revision);
	if (ret)
		return ret;
	if (!kvs)
		return 0;
	if (!json_is_array(kvs))
		return -EPROTO;
	r->kvs = calloc(json_array_size(kvs) + 1, sizeof(*r->kvs));
	if (!r->kvs)
		return -ENOMEM;
	json_array_foreach(kvs, i, kv)
	{
		struct etcd_kv *o = &r->kvs[i];

		r->count = i + 1;
		if (!json_is_object(kv))
			goto bad;
		ret = b64_field(kv, "key", &o->key, NULL);
		if (!ret)
			ret = b64_field(kv, "value", &o->value, &o->value_len);
		if (!ret)
			ret = get_i64(kv, "create_revision", &o->create_rev);
		if (!ret)
			ret = get_i64(kv, "mod_revision", &o->mod_rev);
		if (!ret)
			ret = get_i64(kv, "version", &o->version);
		if (!ret)
			ret = get_i64(kv, "lease", &o->lease);
		if (ret)
			goto bad;
	}
	return 0;
bad:
	etcd_range__free(r);
	return ret ? ret : -EPROTO;
}

void etcd_range__free(struct etcd_range *r)
{
	size_t i;

	for (i = 0; r->kvs && i < r->count; i++) {
		free(r->kvs[i].key);
		free(r->kvs[i].value);
	}
	free(r->kvs);
	memset(r, 0, sizeof(*r));
}

const struct etcd_kv *etcd_range__find(const struct etcd_range *r, const char *key)
{
	size_t i;

	for (i = 0; i < r->count; i++)
		if (!strcmp(r->kvs[i].key, key))
			return &r->kvs[i];
	return NULL;
}

int etcd__error_parse(long http_status, const json_t *resp, char *msg, size_t len)
{
	const char *m = json_string_value(json_object_get(resp, "message"));
	int64_t code = 0;

	if (!m)
		m = json_string_value(json_object_get(resp, "error"));
	get_i64(resp, "code", &code);
	snprintf(msg, len, "etcd: %s (HTTP %ld)", m ? m : "no reason given", http_status);
	/* gRPC status codes: NOT_FOUND, FAILED_PRECONDITION, UNAVAILABLE, DEADLINE_EXCEEDED. */
	switch (code) {
	case 5:
		return -ENOENT;
	case 3:
	case 9:
		return -EINVAL;
	case 14:
	case 4:
		return -EAGAIN;
	default:
		return -EIO;
	}
}

/* ---- transactions ---- */

void etcd_txn__init(struct etcd_txn *t)
{
	t->compare = json_array();
	t->success = json_array();
	t->failure = json_array();
}

void etcd_txn__free(struct etcd_txn *t)
{
	json_decref(t->compare);
	json_decref(t->success);
	json_decref(t->failure);
	memset(t, 0, sizeof(*t));
}

static const char *const targets[] = {"VERSION", "CREATE", "MOD", "VALUE", "LEASE"};
static const char *const target_fields[] = {"version", "create_revision", "mod_revision", "value",
					    "lease"};
static const char *const results[] = {"EQUAL", "NOT_EQUAL", "LESS", "GREATER"};

static json_t *compare(const char *key, enum etcd_target target, enum etcd_result result)
{
	json_t *c = json_object();

	if (!c || set_b64(c, "key", key) ||
	    json_object_set_new(c, "target", json_string(targets[target])) ||
	    json_object_set_new(c, "result", json_string(results[result]))) {
		json_decref(c);
		return NULL;
	}
	return c;
}

int etcd_txn__cmp(struct etcd_txn *t, const char *key, enum etcd_target target,
		  enum etcd_result result, int64_t v)
{
	json_t *c;

	if (target == ETCD_VALUE || target > ETCD_LEASE || result > ETCD_GREATER)
		return -EINVAL;
	c = compare(key, target, result);
	if (!c || set_i64(c, target_fields[target], v) || json_array_append_new(t->compare, c))
		return -ENOMEM;
	return 0;
}

int etcd_txn__cmp_value(struct etcd_txn *t, const char *key, enum etcd_result result,
			const char *value)
{
	json_t *c;

	if (result > ETCD_GREATER)
		return -EINVAL;
	c = compare(key, ETCD_VALUE, result);
	if (!c || set_b64(c, "value", value) || json_array_append_new(t->compare, c))
		return -ENOMEM;
	return 0;
}

int etcd_txn__put(struct etcd_txn *t, bool on_success, const char *key, const char *value,
		  int64_t lease)
{
	json_t *put = json_object(), *op = json_object();

	if (!put || !op || set_b64(put, "key", key) || set_b64(put, "value", value) ||
	    (lease && set_i64(put, "lease", lease)) || json_object_set_new(op, "requestPut", put)) {
		json_decref(put);
		json_decref(op);
		return -ENOMEM;
	}
	return json_array_append_new(on_success ? t->success : t->failure, op) ? -ENOMEM : 0;
}

int etcd_txn__delete(struct etcd_txn *t, bool on_success, const char *key, bool prefix)
{
	json_t *del = json_object(), *op = json_object();

	if (!del || !op || set_b64(del, "key", key) || (prefix && set_range_end(del, key)) ||
	    json_object_set_new(op, "requestDeleteRange", del)) {
		json_decref(del);
		json_decref(op);
		return -ENOMEM;
	}
	return json_array_append_new(on_success ? t->success : t->failure, op) ? -ENOMEM : 0;
}

json_t *etcd__txn_request(const struct etcd_txn *t)
{
	if (!t->compare || !t->success || !t->failure)
		return NULL;
	return json_pack("{s:O, s:O, s:O}", "compare", t->compare, "success", t->success, "failure",
			 t->failure);
}

int etcd__txn_parse(const json_t *resp, bool *succeeded)
{
	const json_t *s;

	if (!json_is_object(resp) || !json_object_get(resp, "header"))
		return -EPROTO;
	s = json_object_get(resp, "succeeded");
	/* proto3 JSON leaves out a false bool. */
	if (s && !json_is_boolean(s))
		return -EPROTO;
	*succeeded = s && json_is_true(s);
	return 0;
}

/* ---- watch ---- */

int etcd__watch_parse(const json_t *msg, int *events, int64_t *rev)
{
	const json_t *res = json_object_get(msg, "result"), *ev;
	int64_t r = 0;

	*events = 0;
	if (!json_is_object(res))
		return -EPROTO;
	if (json_is_true(json_object_get(res, "canceled")))
		return -ECANCELED;
	if (header_revision(res, &r))
		return -EPROTO;
	if (r > *rev)
		*rev = r;
	ev = json_object_get(res, "events");
	if (ev && !json_is_array(ev))
		return -EPROTO;
	*events = ev ? (int)json_array_size(ev) : 0;
	return 0;
}

/* ---- the transport ---- */

int etcd__init(struct etcd *e, const char *urls)
{
	const char *p = urls, *end;
	size_t n;

	memset(e, 0, sizeof(*e));
	do {
		end = strchr(p, ',');
		n = end ? (size_t)(end - p) : strlen(p);
		if ((strncmp(p, "http://", 7) && strncmp(p, "https://", 8)) ||
		    n >= sizeof(e->url) || e->nr_urls == ETCD_MAX_ENDPOINTS) {
			snprintf(
			    e->err, sizeof(e->err),
			    "etcd URL '%.200s' is not http://HOST:PORT (or at most %d of them, "
			    "separated by commas)",
			    urls, ETCD_MAX_ENDPOINTS);
			return -EINVAL;
		}
		memcpy(e->urls[e->nr_urls], p, n);
		while (n && e->urls[e->nr_urls][n - 1] == '/')
			n--;
		e->urls[e->nr_urls++][n] = '\0';
		p = end ? end + 1 : NULL;
	} while (p);
	memcpy(e->url, e->urls[0], sizeof(e->url));
	e->timeout_ms = 5000;
	e->curl = curl_easy_init();
	return e->curl ? 0 : -ENOMEM;
}

bool etcd__tls_option(struct etcd_tls *t, int c, const char *arg)
{
	switch (c) {
	case ETCD_OPT_CA:
		t->ca = arg;
		return true;
	case ETCD_OPT_CERT:
		t->cert = arg;
		return true;
	case ETCD_OPT_KEY:
		t->key = arg;
		return true;
	}
	return false;
}

static int tls_file(struct etcd *e, const char *opt, const char *path, char *dst, size_t len)
{
	if (!path || !*path)
		return 0;
	if (access(path, R_OK) || strlen(path) >= len) {
		snprintf(e->err, sizeof(e->err), "--%s %.300s: %s", opt, path,
			 strlen(path) >= len ? "path too long" : strerror(errno));
		return -EINVAL;
	}
	memcpy(dst, path, strlen(path) + 1);
	return 0;
}

int etcd__open(struct etcd *e, const char *urls, const struct etcd_tls *tls)
{
	bool https = false;
	int i, ret = etcd__init(e, urls);

	if (ret || !tls || (!tls->ca && !tls->cert && !tls->key))
		return ret;
	for (i = 0; i < e->nr_urls; i++)
		https |= !strncmp(e->urls[i], "https://", 8);
	if (!https) {
		snprintf(e->err, sizeof(e->err),
			 "--etcd-ca, --etcd-cert and --etcd-key are for https:// etcd URLs");
		ret = -EINVAL;
	} else if (!tls->cert != !tls->key) {
		snprintf(e->err, sizeof(e->err), "--etcd-cert and --etcd-key go together");
		ret = -EINVAL;
	}
	ret = ret ?: tls_file(e, "etcd-ca", tls->ca, e->cacert, sizeof(e->cacert));
	ret = ret ?: tls_file(e, "etcd-cert", tls->cert, e->cert, sizeof(e->cert));
	ret = ret ?: tls_file(e, "etcd-key", tls->key, e->key, sizeof(e->key));
	return ret;
}

static void next_member(struct etcd *e)
{
	e->cur = (e->cur + 1) % e->nr_urls;
	memcpy(e->url, e->urls[e->cur], sizeof(e->url));
}

void etcd__exit(struct etcd *e)
{
	if (e->curl)
		curl_easy_cleanup(e->curl);
	e->curl = NULL;
}

static void setup(struct etcd *e, const char *path, const char *payload, struct api_client_body *b,
		  long timeout_ms)
{
	char url[320];
	CURL *c = e->curl;

	curl_easy_reset(c);
	snprintf(url, sizeof(url), "%s%s", e->url, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, api_client__collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
	if (e->cacert[0])
		curl_easy_setopt(c, CURLOPT_CAINFO, e->cacert);
	if (e->cert[0])
		curl_easy_setopt(c, CURLOPT_SSLCERT, e->cert);
	if (e->key[0])
		curl_easy_setopt(c, CURLOPT_SSLKEY, e->key);
}

/* POST payload to path once; the parsed answer of a 200 in *resp. */
static int post_once(struct etcd *e, const char *path, const char *payload, json_t **resp)
{
	struct api_client_body b = {.max = ETCD_MAX_BODY};
	char failed[sizeof(e->url)];
	json_error_t jerr;
	json_t *j = NULL;
	long status = 0;
	CURLcode rc = CURLE_OK;
	int ret = 0, tries;

	/*
	 * A member that cannot be reached: the next one. Only a refused connection is
	 * retried (the request never got there); any other failure may have been applied
	 * and is the caller's to judge, but the next call goes to the next member.
	 */
	for (tries = 0; tries < e->nr_urls; tries++) {
		free(b.data);
		b.data = NULL;
		b.len = 0;
		setup(e, path, payload, &b, e->timeout_ms);
		rc = curl_easy_perform(e->curl);
		if (rc == CURLE_OK)
			break;
		memcpy(failed, e->url, sizeof(failed));
		next_member(e);
		if (rc != CURLE_COULDNT_CONNECT)
			break;
	}
	if (rc != CURLE_OK) {
		snprintf(e->err, sizeof(e->err), "etcd at %s: %s", failed, curl_easy_strerror(rc));
		ret = rc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -ECONNREFUSED;
		goto out;
	}
	curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, &status);
	j = b.data ? json_loadb(b.data, b.len, 0, &jerr) : NULL;
	if (status != 200) {
		ret = etcd__error_parse(status, j, e->err, sizeof(e->err));
		goto out;
	}
	if (!j) {
		snprintf(e->err, sizeof(e->err), "etcd at %s answered something that is not JSON",
			 e->url);
		ret = -EPROTO;
		goto out;
	}
	*resp = j;
	j = NULL;
out:
	json_decref(j);
	free(b.data);
	return ret;
}

/*
 * POST req to path; the parsed answer of a 200 in *resp. etcd's "unavailable" (a
 * member electing a new leader, e.g. after the old one died) is waited out, at most
 * about 3 s: every request we make is safe to repeat (puts, deletes and keepalives are
 * idempotent; a transaction's compares fail if its first try was applied).
 */
static int call(struct etcd *e, const char *path, json_t *req, json_t **resp)
{
	char *payload = json_dumps(req, JSON_COMPACT);
	int ret = -ENOMEM, attempt;

	*resp = NULL;
	json_decref(req);
	if (!payload)
		return -ENOMEM;
	for (attempt = 0; attempt < 6; attempt++) {
		ret = post_once(e, path, payload, resp);
		if (ret != -EAGAIN)
			break;
		usleep(100000u << (attempt < 3 ? attempt : 3));
	}
	free(payload);
	return ret;
}

static int range(struct etcd *e, const char *key, bool prefix, struct etcd_range *r)
{
	json_t *req = etcd__range_request(key, prefix), *resp;
	int ret;

	memset(r, 0, sizeof(*r));
	if (!req)
		return -ENOMEM;
	ret = call(e, "/v3/kv/range", req, &resp);
	if (ret)
		return ret;
	ret = etcd__range_parse(resp, r);
	if (ret)
		snprintf(e->err, sizeof(e->err), "etcd: a range answer we cannot read");
	json_decref(resp);
	return ret;
}

int etcd__get(struct etcd *e, const char *key, struct etcd_range *r)
{
	return range(e, key, false, r);
}

int etcd__list(struct etcd *e, const char *prefix, struct etcd_range *r)
{
	return range(e, prefix, true, r);
}

int etcd__put(struct etcd *e, const char *key, const char *value, int64_t lease)
{
	json_t *req = json_object(), *resp;
	int ret;

	if (!req || set_b64(req, "key", key) || set_b64(req, "value", value) ||
	    (lease && set_i64(req, "lease", lease))) {
		json_decref(req);
		return -ENOMEM;
	}
	ret = call(e, "/v3/kv/put", req, &resp);
	json_decref(resp);
	return ret;
}

int etcd__delete(struct etcd *e, const char *key, bool prefix)
{
	json_t *req = etcd__range_request(key, prefix), *resp;
	int ret;

	if (!req)
		return -ENOMEM;
	ret = call(e, "/v3/kv/deleterange", req, &resp);
	json_decref(resp);
	return ret;
}

int etcd__delete_range(struct etcd *e, const char *key, const char *end)
{
	json_t *req = json_object(), *resp;
	int ret;

	if (!req || set_b64(req, "key", key) || set_b64(req, "range_end", end)) {
		json_decref(req);
		return -ENOMEM;
	}
	ret = call(e, "/v3/kv/deleterange", req, &resp);
	json_decref(resp);
	return ret;
}

/* {field: "v"}, the body of every lease request. */
static json_t *one_i64(const char *field, int64_t v)
{
	json_t *req = json_object();

	if (req && set_i64(req, field, v)) {
		json_decref(req);
		return NULL;
	}
	return req;
}

int etcd__lease_grant(struct etcd *e, int64_t ttl_s, int64_t *id)
{
	json_t *req = one_i64("TTL", ttl_s), *resp;
	int ret;

	if (!req)
		return -ENOMEM;
	ret = call(e, "/v3/lease/grant", req, &resp);
	if (ret)
		return ret;
	ret = get_i64(resp, "ID", id);
	if (!ret && !*id)
		ret = -EPROTO;
	json_decref(resp);
	return ret;
}

int etcd__lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl_s)
{
	json_t *req = one_i64("ID", id), *resp;
	int ret;

	if (!req)
		return -ENOMEM;
	ret = call(e, "/v3/lease/keepalive", req, &resp);
	if (ret)
		return ret;
	/* An expired lease answers without a TTL. */
	ret = get_i64(json_object_get(resp, "result"), "TTL", ttl_s);
	if (!ret && *ttl_s <= 0) {
		snprintf(e->err, sizeof(e->err), "etcd: lease %" PRId64 " has expired", id);
		ret = -ENOENT;
	}
	json_decref(resp);
	return ret;
}

int etcd__lease_revoke(struct etcd *e, int64_t id)
{
	json_t *req = one_i64("ID", id), *resp;
	int ret;

	if (!req)
		return -ENOMEM;
	ret = call(e, "/v3/lease/revoke", req, &resp);
	json_decref(resp);
	return ret;
}

int etcd__txn(struct etcd *e, const struct etcd_txn *t, bool *succeeded)
{
	json_t *req = etcd__txn_request(t), *resp;
	int ret;

	if (!req)
		return -ENOMEM;
	ret = call(e, "/v3/kv/txn", req, &resp);
	if (ret)
		return ret;
	ret = etcd__txn_parse(resp, succeeded);
	json_decref(resp);
	return ret;
}

struct watch {
	struct api_client_body buf;
	int64_t rev;
	int changed;
	int err;
};

/* The stream is a sequence of JSON objects; stop it at the first with events. */
static size_t watch_collect(char *ptr, size_t size, size_t nmemb, void *opaque)
{
	struct watch *w = opaque;
	size_t n = size * nmemb, used;
	json_error_t jerr;
	json_t *msg;
	int events;

	if (api_client__collect(ptr, size, nmemb, &w->buf) != n)
		return 0;
	for (;;) {
		const char *p = w->buf.data;
		size_t skip = 0;

		while (skip < w->buf.len && (p[skip] == '\n' || p[skip] == ' ' || p[skip] == '\r'))
			skip++;
		if (skip == w->buf.len)
			break;
		msg = json_loadb(p + skip, w->buf.len - skip, JSON_DISABLE_EOF_CHECK, &jerr);
		if (!msg)
			break; /* incomplete: wait for more */
		used = skip + (size_t)jerr.position;
		memmove(w->buf.data, w->buf.data + used, w->buf.len - used + 1);
		w->buf.len -= used;
		w->err = etcd__watch_parse(msg, &events, &w->rev);
		json_decref(msg);
		if (w->err)
			return 0;
		if (events) {
			w->changed = 1;
			return 0;
		}
	}
	return n;
}

int etcd__watch(struct etcd *e, const char *prefix, int64_t after, long timeout_ms, int64_t *rev)
{
	json_t *create = etcd__range_request(prefix, true), *req;
	struct watch w = {.buf.max = ETCD_MAX_BODY, .rev = after};
	char *payload;
	CURLcode rc;

	*rev = after;
	if (!create || set_i64(create, "start_revision", after + 1)) {
		json_decref(create);
		return -ENOMEM;
	}
	req = json_pack("{s:o}", "create_request", create);
	payload = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!payload)
		return -ENOMEM;
	setup(e, "/v3/watch", payload, &w.buf, timeout_ms);
	curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, watch_collect);
	curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, &w);
	rc = curl_easy_perform(e->curl);
	free(payload);
	free(w.buf.data);
	*rev = w.rev;
	if (w.changed)
		return 1;
	if (w.err) {
		snprintf(e->err, sizeof(e->err), "etcd watch on %s: %s", prefix,
			 w.err == -ECANCELED ? "cancelled by etcd (compacted)" : "bad message");
		return w.err;
	}
	if (rc == CURLE_OPERATION_TIMEDOUT)
		return 0;
	snprintf(e->err, sizeof(e->err), "etcd watch at %s: %s", e->url, curl_easy_strerror(rc));
	next_member(e);
	return -ECONNREFUSED;
}
