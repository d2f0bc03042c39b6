/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_API_CLIENT_H
#define GODWIT_API_CLIENT_H

#include <jansson.h>
#include <stddef.h>

/*
 * One request to a godwit API socket (libcurl). *reply is the parsed JSON body
 * or NULL; 0 with *status set, or -errno with the reason in err.
 */
int api_client__call(const char *socket_path, const char *method, const char *path,
		     const json_t *req, long *status, json_t **reply, char *err, size_t errlen);

/*
 * A libcurl write callback that gathers a body into data (NUL-terminated), stopping
 * the transfer past max bytes; free data afterwards.
 */
struct api_client_body {
	char *data;
	size_t len, max;
};
size_t api_client__collect(char *ptr, size_t size, size_t nmemb, void *body);

/* The files of a client certificate, its key and the CA that signs the server's. */
struct api_client_tls {
	const char *ca, *cert, *key;
};

/*
 * One request to base + path (http:// or, with tls, https:// and mutual TLS; or
 * unix:SOCKET for a VM's API socket), the whole exchange bounded by timeout_s;
 * results as api_client__call's.
 */
int api_client__url(const char *base, const struct api_client_tls *tls, const char *method,
		    const char *path, const json_t *req, long timeout_s, long *status,
		    json_t **reply, char *err, size_t errlen);

#endif
