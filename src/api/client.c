// SPDX-License-Identifier: GPL-2.0
/* The client side of the API socket, for the godwit commands that drive a VM. */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/api_client.h"
#include "godwit/log.h"

struct body {
	char *data;
	size_t len;
};

static size_t collect(char *ptr, size_t size, size_t nmemb, void *opaque)
{
	struct body *b = opaque;
	size_t n = size * nmemb;
	char *p;

	if (b->len + n > 1024 * 1024)
		return 0; /* our API never answers this much: stop */
	p = realloc(b->data, b->len + n + 1);
	if (!p)
		return 0;
	memcpy(p + b->len, ptr, n);
	b->data = p;
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

int api_client__call(const char *socket_path, const char *method, const char *path,
		     const json_t *req, long *status, json_t **reply, char *err, size_t errlen)
{
	struct curl_slist *hdrs = NULL;
	struct body b = { 0 };
	char url[256], *payload = NULL;
	json_error_t jerr;
	CURLcode rc;
	CURL *c;
	int ret = 0;

	*reply = NULL;
	c = curl_easy_init();
	if (!c)
		return -ENOMEM;
	snprintf(url, sizeof(url), "http://localhost%s", path);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket_path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	if (req) {
		payload = json_dumps(req, JSON_COMPACT);
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload ? payload : "{}");
	}
	rc = curl_easy_perform(c);
	if (rc != CURLE_OK) {
		snprintf(err, errlen, "API socket %s: %s", socket_path, curl_easy_strerror(rc));
		ret = rc == CURLE_COULDNT_CONNECT ? -ECONNREFUSED : -EIO;
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	if (b.len) {
		*reply = json_loads(b.data, 0, &jerr);
		if (!*reply) {
			snprintf(err, errlen, "API answered something that is not JSON: %s", jerr.text);
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
