// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target: the Cookie header a browser, or anyone, sends to a manager
 * (src/cluster/manager_console.c), read before any authentication. Nothing may crash or
 * read past the header; what comes out is 64 hex digits or nothing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/cluster/manager.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *header = malloc(size + 1), out[65];
	size_t i;

	if (!header)
		return 0;
	memcpy(header, data, size);
	header[size] = '\0';
	if (mgr__console_cookie(header, out)) {
		if (strlen(out) != 64)
			abort();
		for (i = 0; i < 64; i++)
			if (!strchr("0123456789abcdef", out[i]))
				abort();
	}
	free(header);
	return 0;
}
