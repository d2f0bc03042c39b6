/*
 * memtouch's random mode: every word of a page is pseudo-random, so the pages do not
 * compress (LZ4 and zstd find no repeats in them) as real guest memory often does not,
 * and yet the guest can check each page: its contents are a function of its address
 * and of the pass that wrote it, recomputed when the next pass checks it.
 */
#include "testguest.h"

#define GOLDEN 0x9e3779b97f4a7c15UL

/* splitmix64's output function: a bijection of 64 bits whose outputs for consecutive
 * inputs look independent. */
static inline u64 mix64(u64 z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9UL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebUL;
	return z ^ (z >> 31);
}

/* Once per page and pass: neighbouring pages and passes get unrelated seeds. */
static inline u64 page_seed(u64 gpa, u64 pass)
{
	return mix64(gpa ^ mix64(pass * GOLDEN));
}

/*
 * Word i of a page: seed + (i + 1) * GOLDEN through a one-multiply mixer. Weaker than
 * mix64 as a generator, but compressors find nothing to shrink in its output, and at
 * half the cost per word the guest dirties memory faster, which is what the benchmark
 * needs. Each word is computed on its own, so several are in flight.
 */
static inline u64 word(u64 seed, u32 i)
{
	u64 z = seed + (u64)(i + 1) * GOLDEN;
	z = (z ^ (z >> 32)) * 0xd6e8feb86659fd93UL;
	return z ^ (z >> 32);
}

bool memrand_page(u64 gpa, u64 pass, struct memtouch_miss *miss)
{
	volatile u64 *p = (volatile u64 *)gpa;
	u64 next = page_seed(gpa, pass);
	bool bad = false;

	if (pass > 1) {
		u64 prev = page_seed(gpa, pass - 1);
		for (u32 i = 0; i < PAGE_SIZE / 8; i++) {
			u64 want = word(prev, i), got = p[i];
			if (got != want && !bad) {
				bad = true;
				miss->gpa = gpa + i * 8;
				miss->expected = want;
				miss->found = got;
			}
			p[i] = word(next, i);
		}
		return bad;
	}
	for (u32 i = 0; i < PAGE_SIZE / 8; i++)
		p[i] = word(next, i);
	return false;
}
