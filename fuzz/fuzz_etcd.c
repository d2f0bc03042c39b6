// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target: what the cluster reads from etcd's gateway (src/cluster/etcd.c):
 * a range answer (base64 keys and values, int64s as strings), a transaction's, a
 * watch stream's message and an error body; and a value as a VM spec. etcd is not
 * trusted more than the network it answers over: nothing may crash, read out of
 * bounds or leak. fuzz/corpus/fuzz_etcd/ holds answers etcd 3.4 gave.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/cluster/etcd.h"
#include "godwit/cluster/keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct etcd_range r;
	json_t *j = json_loadb((const char *)data, size, 0, NULL);
	int64_t rev = 0;
	char msg[256], err[256], *out;
	size_t len;
	bool ok;
	int events;

	if (etcd__range_parse(j, &r) == 0)
		etcd_range__free(&r);
	etcd__txn_parse(j, &ok);
	etcd__watch_parse(j, &events, &rev);
	etcd__error_parse(500, j, msg, sizeof(msg));
	cluster__spec_check(j, err, sizeof(err));
	json_decref(j);
	/* The base64 decoder on its own, as a NUL-terminated string. */
	out = malloc(size + 1);
	if (out) {
		char *dec;

		memcpy(out, data, size);
		out[size] = '\0';
		if (etcd__unb64(out, &dec, &len) == 0)
			free(dec);
		free(out);
	}
	return 0;
}
