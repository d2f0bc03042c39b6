// SPDX-License-Identifier: GPL-2.0
/* Rates of a move: bandwidth, dirty rate, the time an amount takes (rate.h). */
#include "godwit/rate.h"
#include "godwit/util.h"

#define NS_PER_S 1000000000ULL

uint64_t rate__per_s(uint64_t amount, uint64_t ns)
{
	return amount * NS_PER_S / MAX(ns, 1ULL);
}

uint64_t rate__ns_for(uint64_t amount, uint64_t per_s)
{
	return per_s ? amount * NS_PER_S / per_s : UINT64_MAX;
}

/* Guest RAM a round moved over how long it took, EWMA 1/2; rounds under 4 MiB say little. */
uint64_t rate__bandwidth(uint64_t bw, uint64_t moved, uint64_t ns)
{
	uint64_t now_bw = rate__per_s(moved, ns);

	if (bw && moved <= 4 * MiB)
		return bw;
	/* Pages, not wire bytes: compression makes those fewer than the pages. */
	return MAX(bw ? (bw + now_bw) / 2 : now_bw, 1ULL);
}
