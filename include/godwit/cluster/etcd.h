/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_CLUSTER_ETCD_H
#define GODWIT_CLUSTER_ETCD_H

/*
 * A client of etcd's v3 JSON gateway (the kv, lease and watch endpoints) over libcurl.
 * Keys and values are strings to us (our values are JSON text); on the wire both are
 * base64 and int64s are decimal strings. One struct etcd per thread: it keeps one
 * curl handle (and its connection) across calls.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ETCD_MAX_ENDPOINTS 8

struct etcd {
	char urls[ETCD_MAX_ENDPOINTS][200]; /* the members' client URLs, no trailing slash */
	int nr_urls, cur;
	char url[200];			       /* the one in use: urls[cur] */
	char cacert[512], cert[512], key[512]; /* for https://, all optional */
	long timeout_ms;
	void *curl;
	char err[512]; /* why the last call failed */
};

struct etcd_kv {
	char *key;
	char *value; /* NUL-terminated; value_len bytes before it */
	size_t value_len;
	int64_t create_rev, mod_rev, version, lease;
};

struct etcd_range {
	struct etcd_kv *kvs;
	size_t count;
	int64_t revision; /* the store's revision when it answered */
};

enum etcd_target { ETCD_VERSION, ETCD_CREATE, ETCD_MOD, ETCD_VALUE, ETCD_LEASE };
enum etcd_result { ETCD_EQUAL, ETCD_NOT_EQUAL, ETCD_LESS, ETCD_GREATER };

/* A transaction: if every compare holds, the success ops, else the failure ops. */
struct etcd_txn {
	json_t *compare, *success, *failure;
};

/*
 * urls: http://HOST:PORT or https://HOST:PORT, or several separated by commas (the
 * members of one etcd cluster): a call that cannot connect to one goes to the next.
 * -EINVAL for anything else.
 */
int etcd__init(struct etcd *e, const char *url);
void etcd__exit(struct etcd *e);

/*
 * etcd's own TLS, for https:// URLs: ca is the file of the CA that signed etcd's
 * certificate (NULL: the system's), cert and key our client certificate, which an etcd
 * started with --client-cert-auth requires. godwit agent and manager take them as
 * --etcd-ca, --etcd-cert and --etcd-key (ETCD_TLS_OPTIONS).
 */
struct etcd_tls {
	const char *ca, *cert, *key;
};

/*
 * etcd__init, then the TLS files. -EINVAL, e->err saying why, for a file that cannot
 * be read, a certificate without its key (or the reverse), or any of them with an
 * http:// URL.
 */
int etcd__open(struct etcd *e, const char *urls, const struct etcd_tls *tls);

enum { ETCD_OPT_CA = 0x1e0, ETCD_OPT_CERT, ETCD_OPT_KEY };
/* getopt_long's rows of the three options */
/* clang-format off */
#define ETCD_TLS_OPTIONS                                       \
	{"etcd-ca", required_argument, NULL, ETCD_OPT_CA},     \
	{"etcd-cert", required_argument, NULL, ETCD_OPT_CERT}, \
	{"etcd-key", required_argument, NULL, ETCD_OPT_KEY}
/* clang-format on */
/* Their lines of --help, the text at column 21 plus pad (a string of spaces). */
#define ETCD_TLS_USAGE(pad)                                                                        \
	"  --etcd-ca F        " pad "for https:// etcd URLs: the CA that signed etcd's\n"          \
	"                     " pad "certificate (default: the system's)\n"                        \
	"  --etcd-cert F, --etcd-key F\n"                                                          \
	"                     " pad "the client certificate and key etcd requires with\n"          \
	"                     " pad "--client-cert-auth (e.g. the cluster's node.crt, .key)\n"
/* Takes getopt's option c into t if it is one of ETCD_TLS_OPTIONS: true if it was. */
bool etcd__tls_option(struct etcd_tls *t, int c, const char *arg);

int etcd__get(struct etcd *e, const char *key, struct etcd_range *r);
/* Every key that starts with prefix, in key order. */
int etcd__list(struct etcd *e, const char *prefix, struct etcd_range *r);
void etcd_range__free(struct etcd_range *r);
/* The value of key in a range, or NULL. */
const struct etcd_kv *etcd_range__find(const struct etcd_range *r, const char *key);

int etcd__put(struct etcd *e, const char *key, const char *value, int64_t lease);
int etcd__delete(struct etcd *e, const char *key, bool prefix);
/* Every key from key (included) to end (excluded). */
int etcd__delete_range(struct etcd *e, const char *key, const char *end);

int etcd__lease_grant(struct etcd *e, int64_t ttl_s, int64_t *id);
/* -ENOENT once the lease has expired (or was revoked). */
int etcd__lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl_s);
int etcd__lease_revoke(struct etcd *e, int64_t id);

void etcd_txn__init(struct etcd_txn *t);
void etcd_txn__free(struct etcd_txn *t);
int etcd_txn__cmp(struct etcd_txn *t, const char *key, enum etcd_target target,
		  enum etcd_result result, int64_t v);
int etcd_txn__cmp_value(struct etcd_txn *t, const char *key, enum etcd_result result,
			const char *value);
int etcd_txn__put(struct etcd_txn *t, bool on_success, const char *key, const char *value,
		  int64_t lease);
int etcd_txn__delete(struct etcd_txn *t, bool on_success, const char *key, bool prefix);
int etcd__txn(struct etcd *e, const struct etcd_txn *t, bool *succeeded);

/*
 * Waits until a key under prefix changes at a revision after `after` (1), or
 * timeout_ms passes (0). Both ways *rev is the newest revision seen.
 */
int etcd__watch(struct etcd *e, const char *prefix, int64_t after, long timeout_ms, int64_t *rev);

/* The pure parts, exported for the unit tests. */
char *etcd__b64(const void *data, size_t len);
/* -EINVAL if s is not base64; *out is NUL-terminated. */
int etcd__unb64(const char *s, char **out, size_t *len);
/* The range_end that makes [prefix, end) every key starting with prefix. */
char *etcd__prefix_end(const char *prefix);
json_t *etcd__range_request(const char *key, bool prefix);
int etcd__range_parse(const json_t *resp, struct etcd_range *r);
json_t *etcd__txn_request(const struct etcd_txn *t);
int etcd__txn_parse(const json_t *resp, bool *succeeded);
/*
 * One object of the watch stream: -EPROTO if not one, -ECANCELED if etcd ended
 * the watch (compacted revision); else 0, with *events set and *rev advanced.
 */
int etcd__watch_parse(const json_t *msg, int *events, int64_t *rev);
/* A gateway error body ({"error", "code"}) as -errno and a message. */
int etcd__error_parse(long http_status, const json_t *resp, char *msg, size_t len);

#endif
