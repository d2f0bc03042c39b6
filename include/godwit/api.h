/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_API_H
#define GODWIT_API_H

#include <stddef.h>

#include <jansson.h>

#include "godwit/util.h"

/*
 * The control API: HTTP/1.1 with JSON bodies on a unix socket (docs/api.md).
 *
 * The server core knows nothing about VMs: it owns the socket, parses requests,
 * dispatches them through a table of routes and turns handler results into
 * responses. New endpoints are new rows in a route table, nothing else.
 *
 * Threading: libmicrohttpd runs one thread per connection, so handlers run on
 * server threads, possibly several at once (one per client). Whatever a handler
 * touches on the VM side must be locked there; the server holds no lock around
 * a handler.
 */

/* Bodies larger than this are refused with 413 before a handler sees them. */
#define API_MAX_BODY (64 * 1024)

/* How long api__stop lets open connections finish their replies. */
#define API_DRAIN_MS 1000

/* At most this many clients at a time; more wait in the listen backlog. */
#define API_MAX_CONNECTIONS 32

struct api_request {
	const char *method; /* "GET", "PUT", ... */
	const char *path;   /* "/vm/pause": the URL path, without query string */
	const json_t *body; /* parsed JSON body; NULL if the request had none */
};

struct api_response {
	int status;   /* HTTP status; 200 unless the handler sets it */
	json_t *body; /* owned by the response (the server decrefs it); NULL: empty body */
};

/*
 * A handler fills @resp and returns 0, also for errors it reported with
 * api__error(). A negative errno return with no error status in @resp becomes
 * 500 {"error": strerror(-ret)}: a handler never leaves a request unanswered.
 */
struct api_route {
	const char *method;
	const char *path; /* matched exactly */
	int (*handler)(void *opaque, const struct api_request *req, struct api_response *resp);
};

struct api_server;

/*
 * Creates the socket at @socket_path (mode 0600) and serves @routes on it.
 * @routes must stay valid until api__stop(); @opaque is passed to every handler.
 * A path that exists is taken over only if nothing listens on it (a socket left
 * behind by a crash); a live server there gives -EADDRINUSE, a non-socket file
 * -EEXIST, a path too long for sun_path -ENAMETOOLONG. Errors are logged.
 */
int __must_check api__start(struct api_server **out, const char *socket_path,
			    const struct api_route *routes, size_t nr_routes, void *opaque);
/*
 * api__start in two steps: api__open creates the socket (errors as above), on which
 * clients then wait in the listen backlog until api__serve starts answering them.
 * A server that api__serve failed on is still api__stop'ed.
 */
int __must_check api__open(struct api_server **out, const char *socket_path);
int __must_check api__serve(struct api_server *srv, const struct api_route *routes,
			    size_t nr_routes, void *opaque);

/*
 * Stops the server: closes every connection, waits for running handlers, closes
 * the socket and unlinks its path (unless someone else has replaced it). NULL is a no-op.
 */
void api__stop(struct api_server *srv);

/* Sets @resp to @status with body {"error": "<formatted message>"}. */
void api__error(struct api_response *resp, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
