// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "godwit/api.h"
#include "godwit/log.h"
#include "socket.h"

/* An idle client is dropped after this long so that it cannot pin a thread forever. */
#define API_IDLE_TIMEOUT_S 60

struct api_server {
	struct MHD_Daemon *daemon;
	struct api_socket sock;
	char *path;
	const struct api_route *routes;
	size_t nr_routes;
	void *opaque;
};

/* One request in flight on a connection: its route and the body read so far. */
struct api_call {
	const struct api_route *route;
	char *body;
	size_t len;
	size_t cap;
	bool too_large;
};

/* JSON strings must be UTF-8; a path from the wire need not be. */
static json_t *message_string(const char *msg)
{
	json_t *str = json_string(msg);
	char *copy;
	size_t i;

	if (str)
		return str;
	copy = strdup(msg);
	if (!copy)
		return NULL;
	for (i = 0; copy[i]; i++) {
		if ((unsigned char)copy[i] < 0x20 || (unsigned char)copy[i] > 0x7e)
			copy[i] = '?';
	}
	str = json_string(copy);
	free(copy);
	return str;
}

static void verror(struct api_response *resp, int status, const char *fmt, va_list ap)
{
	char msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	json_decref(resp->body);
	resp->status = status;
	resp->body = json_object();
	/* Out of memory: the status alone still tells the client what happened. */
	if (resp->body && json_object_set_new(resp->body, "error", message_string(msg))) {
		json_decref(resp->body);
		resp->body = NULL;
	}
}

void api__error(struct api_response *resp, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(resp, status, fmt, ap);
	va_end(ap);
}

static enum MHD_Result send_response(struct MHD_Connection *conn, struct api_response *resp,
				     const char *allow)
{
	struct MHD_Response *r;
	enum MHD_Result ret, ok;
	char *text = NULL;
	int status = resp->status;

	if (resp->body) {
		text = json_dumps(resp->body, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!text)
			status = MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
	r = MHD_create_response_from_buffer(text ? strlen(text) : 0, text, MHD_RESPMEM_MUST_COPY);
	free(text);
	if (!r)
		return MHD_NO;
	ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (ok == MHD_YES && allow)
		ok = MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	if (ok != MHD_YES) {
		MHD_destroy_response(r);
		return MHD_NO;
	}
	ret = MHD_queue_response(conn, (unsigned int)status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *conn, int status, const char *allow,
				  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static enum MHD_Result send_error(struct MHD_Connection *conn, int status, const char *allow,
				  const char *fmt, ...)
{
	struct api_response resp = { .status = status, .body = NULL };
	enum MHD_Result ret;
	va_list ap;

	va_start(ap, fmt);
	verror(&resp, status, fmt, ap);
	va_end(ap);
	ret = send_response(conn, &resp, allow);
	json_decref(resp.body);
	return ret;
}

/*
 * Does @path match the route's @pattern? A "*" segment of the pattern matches one
 * non-empty segment of the path (a disk's ID in /vm/disks/ * /move); the rest matches
 * exactly.
 */
static bool path_matches(const char *pattern, const char *path)
{
	size_t n;

	while (*pattern && *path) {
		if (pattern[0] == '*' && (pattern[1] == '/' || !pattern[1])) {
			n = strcspn(path, "/");
			if (!n)
				return false;
			pattern++;
			path += n;
			continue;
		}
		if (*pattern++ != *path++)
			return false;
	}
	return !*pattern && !*path;
}

/* "GET, PUT": every method some route serves on @path, each once. */
static void allowed_methods(const struct api_server *srv, const char *path, char *buf, size_t size)
{
	size_t i, j, used = 0;

	buf[0] = '\0';
	for (i = 0; i < srv->nr_routes; i++) {
		if (!path_matches(srv->routes[i].path, path))
			continue;
		for (j = 0; j < i; j++) {
			if (path_matches(srv->routes[j].path, path) &&
			    !strcmp(srv->routes[j].method, srv->routes[i].method))
				break;
		}
		if (j < i || used >= size)
			continue;
		used += snprintf(buf + used, size - used, "%s%s", used ? ", " : "",
				 srv->routes[i].method);
	}
}

/*
 * Finds the route for @method @path, or answers 404/405 itself (the caller then
 * returns what it queued). Done before any body is read: a client is told at once.
 */
static const struct api_route *find_route(const struct api_server *srv,
					  struct MHD_Connection *conn, const char *method,
					  const char *path, enum MHD_Result *queued)
{
	char allow[128];
	bool path_known = false;
	size_t i;

	for (i = 0; i < srv->nr_routes; i++) {
		if (!path_matches(srv->routes[i].path, path))
			continue;
		path_known = true;
		if (!strcmp(srv->routes[i].method, method))
			return &srv->routes[i];
	}
	if (!path_known) {
		*queued = send_error(conn, MHD_HTTP_NOT_FOUND, NULL, "no such resource: %s", path);
		return NULL;
	}
	allowed_methods(srv, path, allow, sizeof(allow));
	*queued = send_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, allow,
			     "method %s not allowed on %s (allowed: %s)", method, path, allow);
	return NULL;
}

static bool declared_too_large(struct MHD_Connection *conn)
{
	const char *len = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						      MHD_HTTP_HEADER_CONTENT_LENGTH);
	unsigned long long v;
	char *end;

	if (!len)
		return false;
	errno = 0;
	v = strtoull(len, &end, 10);
	return errno == ERANGE || v > API_MAX_BODY;
}

/* Chunked bodies declare no length: count as they come, keep only up to the limit. */
static int append_body(struct api_call *call, const char *data, size_t len)
{
	size_t cap;
	char *p;

	if (call->too_large || len > API_MAX_BODY - call->len) {
		call->too_large = true;
		return 0;
	}
	if (call->len + len > call->cap) {
		cap = MAX(call->cap * 2, (size_t)1024);
		cap = MIN(MAX(cap, call->len + len), (size_t)API_MAX_BODY);
		p = realloc(call->body, cap);
		if (!p)
			return -ENOMEM;
		call->body = p;
		call->cap = cap;
	}
	memcpy(call->body + call->len, data, len);
	call->len += len;
	return 0;
}

static void run_handler(struct api_server *srv, const struct api_route *route, const char *method,
			const char *path, const json_t *body, struct api_response *resp)
{
	struct api_request req = { .method = method, .path = path, .body = body };
	int ret;

	ret = route->handler(srv->opaque, &req, resp);
	if (ret < 0 && resp->status < 400)
		api__error(resp, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s", strerror(-ret));
	if (resp->status < 100 || resp->status > 599) {
		pr_warn("API handler for %s %s returned status %d", method, path, resp->status);
		api__error(resp, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error: bad status %d",
			   resp->status);
	}
}

static enum MHD_Result complete_call(struct api_server *srv, struct MHD_Connection *conn,
				     const char *method, const char *path, struct api_call *call)
{
	struct api_response resp = { .status = MHD_HTTP_OK, .body = NULL };
	enum MHD_Result ret;
	json_error_t err;
	json_t *body = NULL;

	if (call->too_large)
		return send_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
				  "request body larger than %d bytes", API_MAX_BODY);
	if (call->len) {
		body = json_loadb(call->body, call->len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
				  &err);
		if (!body)
			return send_error(conn, MHD_HTTP_BAD_REQUEST, NULL,
					  "invalid JSON body: %s (line %d, column %d, byte %d)",
					  err.text, err.line, err.column, err.position);
	}
	run_handler(srv, call->route, method, path, body, &resp);
	json_decref(body);
	ret = send_response(conn, &resp, NULL);
	json_decref(resp.body);
	return ret;
}

/*
 * libmicrohttpd calls this several times per request: once when the headers are
 * in (*con_cls still NULL), once per piece of body, and once more with no data
 * when the request is complete.
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct api_server *srv = cls;
	struct api_call *call = *con_cls;
	enum MHD_Result queued = MHD_NO;

	(void)version;
	if (!call) {
		call = calloc(1, sizeof(*call));
		if (!call)
			return MHD_NO;
		*con_cls = call;
		call->route = find_route(srv, conn, method, url, &queued);
		if (!call->route)
			return queued;
		if (declared_too_large(conn))
			return send_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
					  "request body larger than %d bytes", API_MAX_BODY);
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (append_body(call, upload_data, *upload_data_size))
			return MHD_NO;
		*upload_data_size = 0;
		return MHD_YES;
	}
	return complete_call(srv, conn, method, url, call);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct api_call *call = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (!call)
		return;
	free(call->body);
	free(call);
	*con_cls = NULL;
}

/* libmicrohttpd's complaints (malformed requests, mostly) are for debugging only. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[256];
	size_t len;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	len = strlen(msg);
	while (len && msg[len - 1] == '\n')
		msg[--len] = '\0';
	pr_debug("api: %s", msg);
}

static struct MHD_Daemon *start_daemon(struct api_server *srv)
{
	/*
	 * A thread per connection: a slow handler (or a slow client) then never
	 * holds up another client, e.g. `godwit status` during a migration. ITC
	 * lets api__stop() take the listen socket back (MHD_quiesce_daemon).
	 */
	unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			     MHD_USE_ITC | MHD_USE_ERROR_LOG;

	return MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv,
				MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,
				MHD_OPTION_LISTEN_SOCKET, (MHD_socket)srv->sock.fd,
				MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned int)API_MAX_CONNECTIONS,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)API_IDLE_TIMEOUT_S,
				MHD_OPTION_END);
}

int api__open(struct api_server **out, const char *socket_path)
{
	struct api_server *srv;
	int ret;

	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->sock.fd = -1;
	srv->path = strdup(socket_path);
	if (!srv->path) {
		ret = -ENOMEM;
		goto err_free;
	}
	ret = api_socket__listen(&srv->sock, socket_path);
	if (ret)
		goto err_free;
	*out = srv;
	return 0;

err_free:
	free(srv->path);
	free(srv);
	return ret;
}

int api__serve(struct api_server *srv, const struct api_route *routes, size_t nr_routes,
	       void *opaque)
{
	srv->routes = routes;
	srv->nr_routes = nr_routes;
	srv->opaque = opaque;
	srv->daemon = start_daemon(srv);
	if (!srv->daemon) {
		pr_err("cannot start the API server on %s", srv->path);
		return -EIO;
	}
	return 0;
}

int api__start(struct api_server **out, const char *socket_path, const struct api_route *routes,
	       size_t nr_routes, void *opaque)
{
	struct api_server *srv;
	int ret;

	ret = api__open(&srv, socket_path);
	if (ret)
		return ret;
	ret = api__serve(srv, routes, nr_routes, opaque);
	if (ret) {
		api__stop(srv);
		return ret;
	}
	*out = srv;
	return 0;
}

/*
 * Lets connections still open finish their exchange (a reply to PUT
 * /vm/shutdown, a migration's final status) before they are cut, for a bounded
 * time: a client that keeps an idle connection open does not hold us up long.
 */
static void drain(struct api_server *srv)
{
	struct timespec tick = { .tv_nsec = 10 * 1000 * 1000 };
	const union MHD_DaemonInfo *info;
	int i;

	for (i = 0; i < API_DRAIN_MS / 10; i++) {
		info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
		if (!info || info->num_connections == 0)
			return;
		nanosleep(&tick, NULL);
	}
}

void api__stop(struct api_server *srv)
{
	if (!srv)
		return;
	/* Quiesce first: the listen socket is ours, and closing it is ours to do. */
	if (srv->daemon) {
		MHD_quiesce_daemon(srv->daemon);
		drain(srv);
		MHD_stop_daemon(srv->daemon);
	}
	api_socket__close(&srv->sock, srv->path);
	free(srv->path);
	free(srv);
}
