// SPDX-License-Identifier: GPL-2.0
/*
 * The VERIFY digests of format 1.7, kept up to date page by page while RAM moves
 * (ram_digest.h; docs/migration-format.md, "VERIFY"). Hashing all touched RAM at
 * the switchover made the pause grow with the guest's memory (docs/bench.md, "--verify
 * in the pause"); this way the pause hashes only the pages it sends (the source) or
 * applies (the destination).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "godwit/ram_digest.h"
#include "godwit/stream.h"
#include "godwit/util.h"

#define BITS_PER_LONG (8 * sizeof(unsigned long))
#define CHUNK_PAGES   (STREAM_DIGEST_CHUNK / GUEST_PAGE_SIZE)

static uint64_t zero_page_digest(void)
{
	static const uint8_t zeros[GUEST_PAGE_SIZE];

	return XXH3_64bits(zeros, sizeof(zeros));
}

static size_t chunks_of(uint64_t size)
{
	return (size_t)((size + STREAM_DIGEST_CHUNK - 1) / STREAM_DIGEST_CHUNK);
}

int ram_digest__init(struct ram_digest *rd, struct guest_mem *mem)
{
	size_t longs;
	unsigned int i;

	memset(rd, 0, sizeof(*rd));
	if (mem->nr_regions > MEM_MAX_REGIONS)
		return -EINVAL;
	for (i = 0; i < mem->nr_regions; i++) {
		rd->first_chunk[i] = rd->nr_chunks;
		rd->nr_chunks += chunks_of(mem->regions[i].size);
	}
	longs = (rd->nr_chunks + BITS_PER_LONG - 1) / BITS_PER_LONG;
	rd->mem = mem;
	rd->zero = zero_page_digest();
	/* calloc'ed: the pages of a large idle guest's entries are never allocated. */
	rd->page = calloc(mem->nr_pages ? mem->nr_pages : 1, sizeof(*rd->page));
	rd->chunk = calloc(rd->nr_chunks ? rd->nr_chunks : 1, sizeof(*rd->chunk));
	rd->stale = malloc((longs ? longs : 1) * sizeof(*rd->stale));
	if (!rd->page || !rd->chunk || !rd->stale) {
		ram_digest__exit(rd);
		return -ENOMEM;
	}
	memset(rd->stale, 0xff, (longs ? longs : 1) * sizeof(*rd->stale));
	return 0;
}

void ram_digest__exit(struct ram_digest *rd)
{
	free(rd->page);
	free(rd->chunk);
	free(rd->stale);
	rd->page = rd->chunk = NULL;
	rd->stale = NULL;
}

/* The chunk holding memfd page pfn, or nr_chunks if it is in no region. */
static size_t chunk_of(const struct ram_digest *rd, uint64_t pfn)
{
	uint64_t off = pfn * GUEST_PAGE_SIZE;
	unsigned int i;

	for (i = 0; i < rd->mem->nr_regions; i++) {
		const struct mem_region *rg = &rd->mem->regions[i];

		if (off >= rg->fd_offset && off - rg->fd_offset < rg->size)
			return rd->first_chunk[i] +
			       (size_t)((off - rg->fd_offset) / STREAM_DIGEST_CHUNK);
	}
	return rd->nr_chunks;
}

void ram_digest__page(struct ram_digest *rd, uint64_t pfn, const uint8_t *data)
{
	size_t c = chunk_of(rd, pfn);

	if (c >= rd->nr_chunks)
		return;
	rd->page[pfn] = data ? XXH3_64bits(data, GUEST_PAGE_SIZE) ^ rd->zero : 0;
	rd->stale[c / BITS_PER_LONG] |= 1UL << (c % BITS_PER_LONG);
	rd->pages++;
}

static void mark_stale(struct ram_digest *rd, uint64_t pfn, uint64_t n)
{
	uint64_t p;

	for (p = pfn; p < pfn + n; p += CHUNK_PAGES - (p % CHUNK_PAGES)) {
		size_t c = chunk_of(rd, p);

		if (c < rd->nr_chunks)
			rd->stale[c / BITS_PER_LONG] |= 1UL << (c % BITS_PER_LONG);
	}
}

#define READ_PAGES 64 /* pages read at once from the memfd: 256 KiB */

/*
 * Pages [pfn, pfn + n) from guest RAM. Through the memfd, not the mapping: a read of
 * a hole (never written, or a zero page given back) then returns zeros without
 * allocating it, and needs no lseek(SEEK_HOLE), which walks a whole data range.
 */
static void hash_pages(struct ram_digest *rd, uint8_t *buf, uint64_t pfn, uint64_t n)
{
	const struct guest_mem *mem = rd->mem;
	uint64_t i;
	ssize_t got = -1;

	if (mem->memfd >= 0)
		got = pread(mem->memfd, buf, n * GUEST_PAGE_SIZE, (off_t)(pfn * GUEST_PAGE_SIZE));
	for (i = 0; i < n; i++) {
		const uint8_t *p = buf + i * GUEST_PAGE_SIZE;

		if (got < (ssize_t)((i + 1) * GUEST_PAGE_SIZE))
			p = mem->base + (pfn + i) * GUEST_PAGE_SIZE;
		ram_digest__page(rd, pfn + i, p);
	}
}

uint64_t ram_digest__refresh(struct ram_digest *rd)
{
	struct guest_mem *mem = rd->mem;
	size_t w, longs = (mem->nr_pages + BITS_PER_LONG - 1) / BITS_PER_LONG;
	uint64_t run = 0, len = 0, n = 0;
	uint8_t *buf = malloc(READ_PAGES * GUEST_PAGE_SIZE);
	static uint8_t one[GUEST_PAGE_SIZE];

	for (w = 0; w < longs; w++) {
		unsigned long bits;

		if (!__atomic_load_n(&mem->vmm_dirty[w], __ATOMIC_RELAXED))
			continue;
		bits = __atomic_exchange_n(&mem->vmm_dirty[w], 0, __ATOMIC_RELAXED);
		while (bits) {
			uint64_t pfn = w * BITS_PER_LONG + (unsigned int)__builtin_ctzl(bits);

			bits &= bits - 1;
			if (pfn >= mem->nr_pages)
				break;
			/* Runs of consecutive pages, READ_PAGES at most, one read each. */
			if (len && (pfn != run + len || len == (buf ? READ_PAGES : 1))) {
				hash_pages(rd, buf ? buf : one, run, len);
				len = 0;
			}
			if (!len)
				run = pfn;
			len++;
			n++;
		}
	}
	if (len)
		hash_pages(rd, buf ? buf : one, run, len);
	free(buf);
	return n;
}

void ram_digest__hash_all(struct ram_digest *rd)
{
	const struct guest_mem *mem = rd->mem;
	uint8_t *buf = malloc(READ_PAGES * GUEST_PAGE_SIZE);
	static uint8_t one[GUEST_PAGE_SIZE];
	uint64_t pfn = 0, end, step = buf ? READ_PAGES : 1;
	off_t data;

	/* The holes, most of a new destination's RAM, without reading them. */
	while (pfn < mem->nr_pages) {
		data = mem->memfd >= 0
			   ? lseek(mem->memfd, (off_t)(pfn * GUEST_PAGE_SIZE), SEEK_DATA)
			   : (off_t)(pfn * GUEST_PAGE_SIZE);
		if (data < 0)
			end = errno == ENXIO ? mem->nr_pages : pfn;
		else
			end = MIN((uint64_t)data / GUEST_PAGE_SIZE, mem->nr_pages);
		if (end > pfn) {
			memset(rd->page + pfn, 0, (end - pfn) * sizeof(*rd->page));
			mark_stale(rd, pfn, end - pfn);
			pfn = end;
			continue;
		}
		end = MIN(pfn + step, mem->nr_pages);
		hash_pages(rd, buf ? buf : one, pfn, end - pfn);
		pfn = end;
	}
	free(buf);
}

static uint64_t combine_chunk(const struct ram_digest *rd, uint64_t first, uint64_t n, uint64_t gpa)
{
	uint8_t le[CHUNK_PAGES * 8];
	uint64_t i;

	for (i = 0; i < n; i++)
		stream_put64(le + i * 8, rd->page[first + i] ^ rd->zero);
	return XXH3_64bits_withSeed(le, n * 8, gpa);
}

size_t ram_digest__combine(struct ram_digest *rd)
{
	const struct guest_mem *mem = rd->mem;
	size_t done = 0, c;
	unsigned int i;

	for (i = 0; i < mem->nr_regions; i++) {
		const struct mem_region *rg = &mem->regions[i];
		size_t n = chunks_of(rg->size);

		for (c = rd->first_chunk[i]; c < rd->first_chunk[i] + n; c++) {
			uint64_t rel = (uint64_t)(c - rd->first_chunk[i]) * STREAM_DIGEST_CHUNK;
			unsigned long *word = &rd->stale[c / BITS_PER_LONG];

			if (!*word) {
				c |= BITS_PER_LONG - 1; /* the next word */
				continue;
			}
			if (!(*word & (1UL << (c % BITS_PER_LONG))))
				continue;
			*word &= ~(1UL << (c % BITS_PER_LONG));
			rd->chunk[c] = combine_chunk(rd, (rg->fd_offset + rel) / GUEST_PAGE_SIZE,
						     MIN(STREAM_DIGEST_CHUNK, rg->size - rel) /
							 GUEST_PAGE_SIZE,
						     rg->gpa + rel);
			done++;
		}
	}
	rd->chunks += done;
	return done;
}
