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

#endif
