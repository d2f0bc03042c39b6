/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_RATE_H
#define GODWIT_RATE_H

#include <stdint.h>

/*
 * The rate arithmetic of a move (src/migrate/rate.c): amounts are bytes or pages,
 * times nanoseconds, rates per second.
 */

/* How much a second: amount moved in ns (0 taken as 1). */
uint64_t rate__per_s(uint64_t amount, uint64_t ns);

/* How many ns amount takes at per_s a second; UINT64_MAX for a rate of 0. */
uint64_t rate__ns_for(uint64_t amount, uint64_t per_s);

/*
 * The bandwidth estimate (bytes/s of guest RAM) after a round that moved `moved`
 * bytes in ns, from the estimate before it (0: none).
 */
uint64_t rate__bandwidth(uint64_t bw, uint64_t moved, uint64_t ns);

#endif
