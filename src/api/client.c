// SPDX-License-Identifier: GPL-2.0
/*
 * The client side of the API: a VM's unix socket for the godwit commands that drive a
 * VM, and HTTPS with a client certificate for the cluster's agents and managers.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/api_client.h"
#include "godwit/log.h"

/* No godwit API answers this much: stop. */
#define API_CLIENT_MAX_BODY (16u << 20)

size_t api_client__collect(char *ptr, size_t size, size_t nmemb, void *body)
{
	struct api_client_body *b = body;
	size_t n = size * nmemb;
	char *p;

	if (b->len + n > b->max)
		return 0;
	p = realloc(b->data, b->len + n + 1);
	if (!p)
		return 0;
	memcpy(p + b->len, ptr, n);
	b->data = p;
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/* c has its URL (and transport) set; the rest is common. */
static int perform(CURL *c, const char *where, const char *method, const json_t *req,
		   long timeout_s, long *status, json_t **reply, char *err, size_t errlen)
{
	struct curl_slist *hdrs = NULL;
	struct api_client_body b = {.max = API_CLIENT_MAX_BODY};
	char *payload = NULL;
	json_error_t jerr;
	CURLcode rc;
	int ret = 0;

	*reply = NULL;
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, api_client__collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	if (req) {
		payload = json_dumps(req, JSON_COMPACT);
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload ? payload : "{}");
	}
	rc = curl_easy_perform(c);
	if (rc != CURLE_OK) {
		snprintf(err, errlen, "%s: %s", where, curl_easy_strerror(rc));
		ret = rc == CURLE_COULDNT_CONNECT ? -ECONNREFUSED : -EIO;
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	if (b.len) {
		*reply = json_loads(b.data, 0, &jerr);
		if (!*reply) {
			snprintf(err, errlen, "%s answered something that is not JSON: %s", where,
				 jerr.text);
			ret = -EBADMSG;
		}
	}
out:
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	free(payload);
	free(b.data);
	return ret;
}

int api_client__call(const char *socket_path, const char *method, const char *path,
		     const json_t *req, long *status, json_t **reply, char *err, size_t errlen)
{
	char url[256], where[300];
	CURL *c;

	*reply = NULL;
	c = curl_easy_init();
	if (!c)
		return -ENOMEM;
	snprintf(url, sizeof(url), "http://localhost%s", path);
	snprintf(where, sizeof(where), "API socket %s", socket_path);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket_path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	return perform(c, where, method, req, 30L, status, reply, err, errlen);
}

int api_client__url(const char *base, const struct api_client_tls *tls, const char *method,
		    const char *path, const json_t *req, long timeout_s, long *status,
		    json_t **reply, char *err, size_t errlen)
{
	char url[512];
	CURL *c;

	*reply = NULL;
	if (snprintf(url, sizeof(url), "%s%s", base, path) >= (int)sizeof(url)) {
		snprintf(err, errlen, "URL %s%s is too long", base, path);
		return -ENAMETOOLONG;
	}
	c = curl_easy_init();
	if (!c)
		return -ENOMEM;
	if (!strncmp(base, "unix:", 5)) {
		snprintf(url, sizeof(url), "http://localhost%s", path);
		curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, base + 5);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
	if (tls) {
		curl_easy_setopt(c, CURLOPT_CAINFO, tls->ca);
		curl_easy_setopt(c, CURLOPT_SSLCERT, tls->cert);
		curl_easy_setopt(c, CURLOPT_SSLKEY, tls->key);
	}
	return perform(c, base, method, req, timeout_s, status, reply, err, errlen);
}
