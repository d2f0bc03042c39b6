/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_CLUSTER_TLS_H
#define GODWIT_CLUSTER_TLS_H

/*
 * The cluster's certificates (OpenSSL) and the HTTPS with mutual TLS that agents,
 * managers and `godwit cluster` speak: a server (libevent's evhttp on
 * bufferevent_openssl) that answers only clients with a certificate of the cluster's
 * CA; the client side is api_client__url() with the same files.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "godwit/api.h"

/* The files `godwit cluster init --dir D` writes, relative to D. */
#define PKI_CA	   "ca"	    /* ca.crt, ca.key */
#define PKI_NODE   "node"   /* agents and managers: server and client */
#define PKI_CLIENT "client" /* godwit cluster and other clients */

struct pki_names {
	const char *ips[16];
	size_t nr_ips;
	const char *dns[16];
	size_t nr_dns;
};

/*
 * Makes a CA in dir and, signed by it, a node and a client certificate (keys EC
 * P-256, mode 0600). Refuses (-EEXIST) a dir that already has a CA.
 */
int pki__init(const char *dir, const struct pki_names *names, int days, char *err, size_t errlen);
/* Another node certificate (name.crt, name.key) from dir's CA, e.g. for a host's own address. */
int pki__issue(const char *dir, const char *name, const struct pki_names *names, int days,
	       char *err, size_t errlen);

/* Where a role's files are: dir/name.crt, dir/name.key, dir/ca.crt. */
struct tls_files {
	char ca[512], cert[512], key[512];
};
int tls_files__set(struct tls_files *f, const char *dir, const char *name, char *err,
		   size_t errlen);

struct https_server;
/* One handler sees every request (method, path, parsed body) and fills resp. */
typedef int (*https_handler)(void *opaque, const struct api_request *req,
			     struct api_response *resp);

/*
 * Listens on HOST:PORT and serves handler from a thread of its own; requests are
 * answered one at a time. -errno with the reason in err.
 */
int https__start(struct https_server **out, const char *listen, const struct tls_files *tls,
		 https_handler handler, void *opaque, char *err, size_t errlen);
/*
 * The same with threads (1..HTTPS_MAX_THREADS) each answering requests, so that one
 * slow request (an agent spawning a VM) does not hold up the others: handler must be
 * safe to run in several threads at once.
 */
#define HTTPS_MAX_THREADS 16
int https__start_threads(struct https_server **out, const char *listen,
			 const struct tls_files *tls, https_handler handler, void *opaque,
			 int threads, char *err, size_t errlen);

/* One request as a gate sees it: its headers, its peer, what else goes in the reply. */
struct https_req;
/* An input header's value, or NULL. */
const char *https__header(const struct https_req *r, const char *name);
/* Whether the client showed a certificate of the cluster's CA (the handshake checked it). */
bool https__client_cert(const struct https_req *r);
/* A header added to the reply (Set-Cookie, Location). */
void https__add_header(struct https_req *r, const char *name, const char *value);
/* The reply is this file (data stays valid: static) instead of the JSON body. */
void https__reply_file(struct https_req *r, const char *type, const void *data, size_t len);

/*
 * A gate sees every request before the handler and returns true when it answered it
 * (in resp, or with a file), false to hand it on. A server with a gate asks clients
 * for a certificate without requiring one: the gate decides who gets what.
 */
typedef bool (*https_gate)(void *opaque, struct https_req *r, const struct api_request *req,
			   struct api_response *resp);
int https__start_gated(struct https_server **out, const char *listen, const struct tls_files *tls,
		       https_handler handler, https_gate gate, void *opaque, char *err,
		       size_t errlen);
void https__stop(struct https_server *srv);

#endif
