// SPDX-License-Identifier: GPL-2.0
#include <stdbool.h>
#include <xxhash.h>

#include "godwit/xxh3.h"

/* libgcc reads the CPU's features once, before main: this is one load. */
static bool have_avx2(void)
{
	return __builtin_cpu_supports("avx2");
}

void util__xxh3_reset(void *state)
{
	if (have_avx2())
		util__xxh3_avx2_reset(state);
	else
		XXH3_64bits_reset(state);
}

void util__xxh3_update(void *state, const void *p, size_t len)
{
	if (have_avx2())
		util__xxh3_avx2_update(state, p, len);
	else
		XXH3_64bits_update(state, p, len);
}

uint64_t util__xxh3_digest(const void *state)
{
	return have_avx2() ? util__xxh3_avx2_digest(state) : XXH3_64bits_digest(state);
}
