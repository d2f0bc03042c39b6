// SPDX-License-Identifier: GPL-2.0
/*
 * libxxhash's XXH3 from its header (XXH_INLINE_ALL), compiled here for AVX2 under other
 * names, so that nothing else in godwit needs AVX2. The state is the library's
 * XXH3_state_t: same header version, same layout.
 */
#if defined(__clang__) /* the fuzz build: clang has no target pragma, and no __AVX2__ */
#include <immintrin.h>
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#else
#pragma GCC target("avx2")
#endif
#define XXH_INLINE_ALL
#define XXH_NAMESPACE godwit_avx2_
#define XXH_VECTOR    XXH_AVX2
#include <xxhash.h>

#include "godwit/xxh3.h"

void util__xxh3_avx2_reset(void *state)
{
	XXH3_64bits_reset(state);
}

void util__xxh3_avx2_update(void *state, const void *p, size_t len)
{
	XXH3_64bits_update(state, p, len);
}

uint64_t util__xxh3_avx2_digest(const void *state)
{
	return XXH3_64bits_digest(state);
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
