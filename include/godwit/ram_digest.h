/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_RAM_DIGEST_H
#define GODWIT_RAM_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "godwit/memory.h"

/*
 * The VERIFY digests of format 1.7 (STREAM_FEATURE_VERIFY_PAGES), kept up to date
 * while RAM moves so that the pause computes only what its last pages changed: a
 * digest per page (XXH3-64 of its 4096 bytes), and per 2 MiB chunk, in VERIFY order,
 * the XXH3-64 of its pages' digests (little-endian u64s, in page order) seeded with
 * the chunk's gpa. A page's digest changes through ram_digest__page (the source,
 * from the bytes it sends) or ram_digest__refresh (the destination, from its RAM,
 * for the pages its VMM bitmap says were written); either marks the page's chunk
 * stale, and ram_digest__combine recomputes the stale chunks.
 */
struct ram_digest {
	struct guest_mem *mem;
	/* Per memfd page: its digest XOR a zero page's, so that untouched memory reads 0. */
	uint64_t *page;
	uint64_t zero;	      /* a zero page's digest */
	uint64_t *chunk;      /* per chunk, the VERIFY digests */
	unsigned long *stale; /* chunks with a page changed since chunk[] was computed */
	size_t nr_chunks;
	size_t first_chunk[MEM_MAX_REGIONS]; /* index of each region's first chunk */
	uint64_t pages;			     /* page digests computed so far */
	uint64_t chunks;		     /* chunk digests computed so far */
};

/* Every page reads as zeros, every chunk stale. 0 or -ENOMEM / -EINVAL. */
int __must_check ram_digest__init(struct ram_digest *rd, struct guest_mem *mem);
void ram_digest__exit(struct ram_digest *rd);
/* Page pfn (memfd page number) now holds data (4096 bytes), or zeros if data is NULL. */
void ram_digest__page(struct ram_digest *rd, uint64_t pfn, const uint8_t *data);
/*
 * Destination: rehashes, from guest RAM, each page marked in mem->vmm_dirty, clearing
 * its bit; never-written pages (memfd holes) are zeros and are not read. Returns the
 * pages rehashed. Nothing may write guest RAM meanwhile.
 */
uint64_t ram_digest__refresh(struct ram_digest *rd);
/* Every page from guest RAM, as ram_digest__refresh, whatever the bitmap says. */
void ram_digest__hash_all(struct ram_digest *rd);
/* Recomputes the stale chunks' digests; returns how many. */
size_t ram_digest__combine(struct ram_digest *rd);

#endif
