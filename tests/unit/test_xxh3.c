// SPDX-License-Identifier: GPL-2.0
/* util__xxh3_*: libxxhash's XXH3-64 values, whichever code runs them, fed whole or in pieces. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <xxhash.h>

#include "godwit/xxh3.h"

static const size_t lens[] = {0, 1, 16, 17, 128, 129, 240, 241, 1024, 4096, 65537, 1 << 20};

static uint64_t in_pieces(void (*reset)(void *), void (*update)(void *, const void *, size_t),
			  uint64_t (*digest)(const void *), const uint8_t *p, size_t len,
			  size_t piece)
{
	XXH3_state_t *s = XXH3_createState();
	size_t off;
	uint64_t h;

	reset(s);
	for (off = 0; off < len; off += piece)
		update(s, p + off, len - off < piece ? len - off : piece);
	h = digest(s);
	XXH3_freeState(s);
	return h;
}

static void test_same_values_as_the_library(void **state)
{
	uint8_t *buf = malloc((1 << 20) + 3);
	size_t i, k;

	(void)state;
	for (i = 0; i < (1 << 20) + 3; i++)
		buf[i] = (uint8_t)(i * 2654435761u >> 13);
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		/* Unaligned too: the stream's data follows a 24-byte header. */
		const uint8_t *p = buf + (i % 4);
		uint64_t want = XXH3_64bits(p, lens[i]);

		for (k = 1; k <= 4096; k *= 64) {
			size_t piece = lens[i] ? lens[i] / k + 1 : 1;

			assert_int_equal(in_pieces(util__xxh3_reset, util__xxh3_update,
						   util__xxh3_digest, p, lens[i], piece),
					 want);
			if (__builtin_cpu_supports("avx2"))
				assert_int_equal(
				    in_pieces(util__xxh3_avx2_reset, util__xxh3_avx2_update,
					      util__xxh3_avx2_digest, p, lens[i], piece),
				    want);
		}
	}
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_same_values_as_the_library),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
