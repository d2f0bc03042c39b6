// SPDX-License-Identifier: GPL-2.0
/*
 * The HTTPS server of agents and managers: libevent's evhttp on bufferevent_openssl,
 * mutual TLS from the cluster's CA (docs/cluster.md, "Why libevent": Debian builds
 * libmicrohttpd on GnuTLS and the project's TLS is OpenSSL).
 */
#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "godwit/cluster/tls.h"
#include "godwit/log.h"

#define HTTPS_MAX_BODY (1 << 20)

/* One thread's event loop; every loop accepts on the same listening socket. */
struct https_loop {
	struct event_base *base;
	struct evhttp *http;
	struct event *stop_ev;
	pthread_t thread;
	bool running;
};

struct https_server {
	struct https_loop loops[HTTPS_MAX_THREADS];
	int nr_loops;
	SSL_CTX *ctx;
	int stop_pipe[2];
	https_handler handler;
	https_gate gate;
	void *opaque;
};

struct https_req {
	struct evhttp_request *r;
	const char *type; /* a file's, or NULL: JSON */
	const void *data;
	size_t len;
};

const char *https__header(const struct https_req *r, const char *name)
{
	return evhttp_find_header(evhttp_request_get_input_headers(r->r), name);
}

bool https__client_cert(const struct https_req *r)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(r->r);
	struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
	SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;

	/* Verified by the handshake, which a bad one ended; checked again all the same. */
	return ssl && SSL_get0_peer_certificate(ssl) && SSL_get_verify_result(ssl) == X509_V_OK;
}

void https__add_header(struct https_req *r, const char *name, const char *value)
{
	evhttp_add_header(evhttp_request_get_output_headers(r->r), name, value);
}

void https__reply_file(struct https_req *r, const char *type, const void *data, size_t len)
{
	r->type = type;
	r->data = data;
	r->len = len;
}

static const char *method_name(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	default:
		return NULL;
	}
}

static void reply(struct https_req *hr, struct api_response *resp)
{
	struct evhttp_request *r = hr->r;
	struct evbuffer *out = evbuffer_new();
	char *text = resp->body && !hr->type ? json_dumps(resp->body, JSON_COMPACT) : NULL;

	evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type",
			  hr->type ? hr->type : "application/json");
	if (out && hr->type)
		evbuffer_add_reference(out, hr->data, hr->len, NULL, NULL);
	else if (out && text)
		evbuffer_add(out, text, strlen(text));
	evhttp_send_reply(r, resp->status, NULL, out);
	if (out)
		evbuffer_free(out);
	free(text);
	json_decref(resp->body);
}

static void on_request(struct evhttp_request *r, void *arg)
{
	struct https_server *srv = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(r);
	struct evbuffer *in = evhttp_request_get_input_buffer(r);
	struct api_response resp = {.status = 200};
	struct https_req hr = {.r = r};
	struct api_request req = {0};
	size_t len = evbuffer_get_length(in);
	json_error_t jerr = {.text = ""};
	json_t *body = NULL;
	int ret;

	req.method = method_name(evhttp_request_get_command(r));
	req.path = uri ? evhttp_uri_get_path(uri) : NULL;
	if (!req.method || !req.path) {
		api__error(&resp, 405, "only GET, POST, PUT and DELETE are served");
		goto out;
	}
	if (len)
		body = json_loadb((const char *)evbuffer_pullup(in, -1), len,
				  JSON_REJECT_DUPLICATES, &jerr);
	req.body = body;
	/* The gate first: a stranger learns nothing, not even that the body was bad. */
	if (srv->gate && srv->gate(srv->opaque, &hr, &req, &resp))
		goto out;
	if (len && !body) {
		api__error(&resp, 400, "invalid JSON body: %s", jerr.text);
		goto out;
	}
	ret = srv->handler(srv->opaque, &req, &resp);
	if (ret < 0 && resp.status < 400)
		api__error(&resp, 500, "%s", strerror(-ret));
out:
	json_decref(body);
	reply(&hr, &resp);
}

static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
	struct https_server *srv = arg;
	SSL *ssl = SSL_new(srv->ctx);

	if (!ssl)
		return NULL;
	return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
					      BEV_OPT_CLOSE_ON_FREE);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct https_loop *l = arg;

	(void)fd;
	(void)what;
	event_base_loopbreak(l->base);
}

static void *serve(void *arg)
{
	struct https_loop *l = arg;

	pthread_setname_np(pthread_self(), "https");
	event_base_dispatch(l->base);
	return NULL;
}

static SSL_CTX *make_ctx(const struct tls_files *tls, bool cert_optional, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	STACK_OF(X509_NAME) * cas;
	const char *what = "cannot set up TLS";

	if (!ctx)
		goto err;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	what = tls->cert;
	if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert) != 1)
		goto err;
	what = tls->key;
	if (SSL_CTX_use_PrivateKey_file(ctx, tls->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1)
		goto err;
	what = tls->ca;
	if (SSL_CTX_load_verify_locations(ctx, tls->ca, NULL) != 1)
		goto err;
	cas = SSL_load_client_CA_file(tls->ca);
	if (!cas)
		goto err;
	SSL_CTX_set_client_CA_list(ctx, cas);
	/*
	 * Mutual TLS: a client without a certificate from this cluster's CA gets nothing;
	 * with a gate, one without any gets as far as the gate lets it (a browser's login).
	 * Another CA's certificate still fails the handshake.
	 */
	SSL_CTX_set_verify(
	    ctx, SSL_VERIFY_PEER | (cert_optional ? 0 : SSL_VERIFY_FAIL_IF_NO_PEER_CERT), NULL);
	/* Resumed sessions (browsers resume) keep their verified peer only with a context id. */
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"godwit", 6);
	return ctx;
err:
	snprintf(err, errlen, "TLS: %s: %s", what, ERR_reason_error_string(ERR_get_error()));
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

static int split_listen(const char *listen, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon = strrchr(listen, ':');
	char *end;
	long p;

	if (!colon || colon == listen || (size_t)(colon - listen) >= hostlen)
		return -EINVAL;
	p = strtol(colon + 1, &end, 10);
	if (*end || p < 1 || p > 65535 || end == colon + 1)
		return -EINVAL;
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	*port = (uint16_t)p;
	return 0;
}

/*
 * A loop's base and evhttp, on the socket of fd_from, or (fd_from NULL) on a socket it
 * binds, returned in bound.
 */
static int loop_init(struct https_server *srv, struct https_loop *l, const char *host,
		     uint16_t port, struct evhttp_bound_socket *fd_from,
		     struct evhttp_bound_socket **bound)
{
	evutil_socket_t fd;

	l->base = event_base_new();
	l->http = l->base ? evhttp_new(l->base) : NULL;
	if (!l->http)
		return -ENOMEM;
	l->stop_ev = event_new(l->base, srv->stop_pipe[0], EV_READ, on_stop, l);
	if (!l->stop_ev || event_add(l->stop_ev, NULL))
		return -ENOMEM;
	evhttp_set_bevcb(l->http, make_bev, srv);
	evhttp_set_gencb(l->http, on_request, srv);
	evhttp_set_max_body_size(l->http, HTTPS_MAX_BODY);
	evhttp_set_timeout(l->http, 60);
	evhttp_set_allowed_methods(l->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
						EVHTTP_REQ_DELETE);
	if (!fd_from) {
		*bound = evhttp_bind_socket_with_handle(l->http, host, port);
		return *bound ? 0 : -EADDRINUSE;
	}
	/* Its own descriptor of the one socket: each evhttp closes the one it has. */
	fd = fcntl(evhttp_bound_socket_get_fd(fd_from), F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (!evhttp_accept_socket_with_handle(l->http, fd)) {
		close(fd);
		return -ENOMEM;
	}
	return 0;
}

static int start(struct https_server **out, const char *listen, const struct tls_files *tls,
		 https_handler handler, https_gate gate, void *opaque, int threads, char *err,
		 size_t errlen)
{
	struct https_server *srv;
	struct evhttp_bound_socket *bound = NULL;
	char host[256];
	uint16_t port;
	int i, ret = -ENOMEM;

	*out = NULL;
	if (threads < 1 || threads > HTTPS_MAX_THREADS) {
		snprintf(err, errlen, "1..%d threads serve HTTPS, not %d", HTTPS_MAX_THREADS,
			 threads);
		return -EINVAL;
	}
	if (split_listen(listen, host, sizeof(host), &port)) {
		snprintf(err, errlen, "listen address '%s' is not HOST:PORT", listen);
		return -EINVAL;
	}
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->stop_pipe[0] = srv->stop_pipe[1] = -1;
	srv->handler = handler;
	srv->gate = gate;
	srv->opaque = opaque;
	srv->ctx = make_ctx(tls, gate != NULL, err, errlen);
	if (!srv->ctx) {
		ret = -EINVAL;
		goto err;
	}
	if (pipe2(srv->stop_pipe, O_CLOEXEC))
		goto err;
	for (i = 0; i < threads; i++) {
		ret = loop_init(srv, &srv->loops[i], host, port, i ? bound : NULL, &bound);
		srv->nr_loops = i + 1;
		if (ret == -EADDRINUSE)
			snprintf(err, errlen, "cannot listen on %s: %s", listen, strerror(errno));
		if (ret)
			goto err;
	}
	for (i = 0; i < srv->nr_loops; i++) {
		ret = -pthread_create(&srv->loops[i].thread, NULL, serve, &srv->loops[i]);
		if (ret)
			goto err;
		srv->loops[i].running = true;
	}
	*out = srv;
	return 0;
err:
	if (ret == -ENOMEM && !err[0])
		snprintf(err, errlen, "cannot set up the HTTPS server");
	https__stop(srv);
	return ret;
}

int https__start(struct https_server **out, const char *listen, const struct tls_files *tls,
		 https_handler handler, void *opaque, char *err, size_t errlen)
{
	return https__start_threads(out, listen, tls, handler, opaque, 1, err, errlen);
}

int https__start_threads(struct https_server **out, const char *listen, const struct tls_files *tls,
			 https_handler handler, void *opaque, int threads, char *err, size_t errlen)
{
	return start(out, listen, tls, handler, NULL, opaque, threads, err, errlen);
}

int https__start_gated(struct https_server **out, const char *listen, const struct tls_files *tls,
		       https_handler handler, https_gate gate, void *opaque, char *err,
		       size_t errlen)
{
	return start(out, listen, tls, handler, gate, opaque, 1, err, errlen);
}

void https__stop(struct https_server *srv)
{
	int i;

	if (!srv)
		return;
	/* The pipe stays readable: every loop sees it. */
	if (srv->stop_pipe[1] >= 0 && write(srv->stop_pipe[1], "x", 1) != 1)
		pr_warn("https: cannot wake the server to stop it");
	for (i = 0; i < srv->nr_loops; i++) {
		struct https_loop *l = &srv->loops[i];

		if (l->running)
			pthread_join(l->thread, NULL);
		if (l->stop_ev)
			event_free(l->stop_ev);
		if (l->http)
			evhttp_free(l->http);
		if (l->base)
			event_base_free(l->base);
	}
	SSL_CTX_free(srv->ctx);
	if (srv->stop_pipe[0] >= 0)
		close(srv->stop_pipe[0]);
	if (srv->stop_pipe[1] >= 0)
		close(srv->stop_pipe[1]);
	free(srv);
}
