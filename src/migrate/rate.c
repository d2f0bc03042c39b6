// SPDX-License-Identifier: GPL-2.0
/*
 * Rates of a move: bandwidth, dirty rate, the time an amount takes (rate.h).
 *
 * Amounts over a whole move are large: bytes x 10^9 passes 2^64 at about 17 GiB, so
 * the product is taken in 128 bits, where any 64-bit amount times 10^9 fits and the
 * quotient is exact (dividing first would round away up to a second's worth; a
 * double's 53 bits would round byte counts past 8 PiB and ns past 104 days). A
 * quotient that does not fit in 64 bits saturates: a wait or a rate that large means
 * "never" or "at once", not a small number.
 */
#include "godwit/rate.h"
#include "godwit/util.h"

#define NS_PER_S 1000000000ULL

static uint64_t mul_div(uint64_t a, uint64_t b, uint64_t d)
{
	unsigned __int128 q = (unsigned __int128)a * b / d;

	return q > UINT64_MAX ? UINT64_MAX : (uint64_t)q;
}

uint64_t rate__per_s(uint64_t amount, uint64_t ns)
{
	return mul_div(amount, NS_PER_S, MAX(ns, 1ULL));
}

uint64_t rate__ns_for(uint64_t amount, uint64_t per_s)
{
	return per_s ? mul_div(amount, NS_PER_S, per_s) : UINT64_MAX;
}

/* Guest RAM a round moved over how long it took, EWMA 1/2; rounds under 4 MiB say little. */
uint64_t rate__bandwidth(uint64_t bw, uint64_t moved, uint64_t ns)
{
	uint64_t now_bw = rate__per_s(moved, ns);

	if (bw && moved <= 4 * MiB)
		return bw;
	/* Pages, not wire bytes: compression makes those fewer than the pages. */
	return MAX(bw ? bw / 2 + now_bw / 2 + (bw & now_bw & 1) : now_bw, 1ULL);
}
