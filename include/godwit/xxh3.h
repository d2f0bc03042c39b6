/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_XXH3_H
#define GODWIT_XXH3_H

#include <stddef.h>
#include <stdint.h>

/*
 * XXH3-64 in steps, on a state from XXH3_createState(): libxxhash's function and values,
 * run with its AVX2 code where the CPU has AVX2. Debian's libxxhash is built for any
 * x86-64 (SSE2), and the record checksums were 13-19 % of each side of a move
 * (docs/bench.md).
 */
void util__xxh3_reset(void *state);
void util__xxh3_update(void *state, const void *p, size_t len);
uint64_t util__xxh3_digest(const void *state);

/* The same, built for AVX2 (src/util/xxh3_avx2.c): call only where the CPU has it. */
void util__xxh3_avx2_reset(void *state);
void util__xxh3_avx2_update(void *state, const void *p, size_t len);
uint64_t util__xxh3_avx2_digest(const void *state);

#endif
