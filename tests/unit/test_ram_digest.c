// SPDX-License-Identifier: GPL-2.0
/*
 * The VERIFY digests kept up to date as RAM moves (format 1.7, ram_digest.c): what
 * the source hashes as it sends and the destination as it applies must equal the
 * digests of the whole memory computed from scratch, while each step hashes only
 * the pages it touched; a page lost or changed on the way must show in the compare.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "godwit/migrate.h"
#include "godwit/ram.h"
#include "godwit/ram_digest.h"

struct pair {
	struct guest_mem src, dst;
	struct stream_config cfg;
	struct ram_tracker t;
	struct ram_digest sd, dd; /* the source's, the destination's */
	struct stream_io wio;
	struct stream_writer w;
	struct ram_sender s;
};

static void config_from(struct stream_config *cfg, const struct guest_mem *m)
{
	unsigned int i;

	memset(cfg, 0, sizeof(*cfg));
	cfg->ram_size = m->size;
	cfg->nr_vcpus = 1;
	cfg->nr_regions = m->nr_regions;
	for (i = 0; i < m->nr_regions; i++)
		cfg->regions[i] = (struct stream_region){m->regions[i].gpa, m->regions[i].size};
}

/*
 * The format's definition, written out independently of ram_digest.c: per chunk, the
 * XXH3-64 (seed: the chunk's gpa) of its pages' XXH3-64, as little-endian u64s.
 */
static uint64_t *reference(const struct guest_mem *m, size_t *n)
{
	uint64_t *d = calloc(m->size / STREAM_DIGEST_CHUNK + 2, sizeof(*d));
	uint8_t le[8 * 512], *buf = malloc(STREAM_DIGEST_CHUNK);
	unsigned int i, b;
	size_t k = 0;

	assert_non_null(d);
	assert_non_null(buf);
	for (i = 0; i < m->nr_regions; i++) {
		const struct mem_region *rg = &m->regions[i];
		uint64_t off, p;

		for (off = 0; off < rg->size; off += STREAM_DIGEST_CHUNK) {
			uint64_t len = rg->size - off < STREAM_DIGEST_CHUNK ? rg->size - off
									    : STREAM_DIGEST_CHUNK;

			/* pread reads holes as zeros without allocating them. */
			assert_int_equal(pread(m->memfd, buf, len, (off_t)(rg->fd_offset + off)),
					 (ssize_t)len);
			for (p = 0; p < len / 4096; p++) {
				uint64_t h = XXH3_64bits(buf + p * 4096, 4096);

				for (b = 0; b < 8; b++)
					le[p * 8 + b] = (uint8_t)(h >> (8 * b));
			}
			d[k++] = XXH3_64bits_withSeed(le, (len / 4096) * 8, rg->gpa + off);
		}
	}
	free(buf);
	*n = k;
	return d;
}

static void assert_matches(const struct ram_digest *rd, const struct guest_mem *m)
{
	size_t n;
	uint64_t *ref = reference(m, &n);

	assert_int_equal(rd->nr_chunks, n);
	assert_memory_equal(rd->chunk, ref, n * sizeof(*ref));
	free(ref);
}

static void fill(struct guest_mem *m, uint64_t gpa, uint8_t v, uint64_t len)
{
	uint8_t *buf = malloc(len);

	memset(buf, v, len);
	assert_int_equal(guest_mem__write(m, gpa, buf, len), 0);
	free(buf);
}

static void setup(struct pair *p, uint64_t size)
{
	memset(p, 0, sizeof(*p));
	assert_int_equal(guest_mem__init(&p->src, size), 0);
	assert_int_equal(guest_mem__init(&p->dst, size), 0);
	config_from(&p->cfg, &p->src);
	assert_int_equal(ram__tracker_init(&p->t, &p->src), 0);
	assert_int_equal(ram_digest__init(&p->sd, &p->src), 0);
	assert_int_equal(ram_digest__init(&p->dd, &p->dst), 0);
	ram_digest__hash_all(&p->dd);
	stream_io__init_mem_writer(&p->wio);
	assert_int_equal(stream__writer_init(&p->w, &p->wio, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__write_header(&p->w), 0);
	assert_int_equal(stream__write_config(&p->w, &p->cfg), 0);
	p->s = (struct ram_sender){.t = &p->t, .w = &p->w, .copy = true, .digest = &p->sd};
}

static void teardown(struct pair *p)
{
	stream__writer_exit(&p->w);
	stream_io__exit(&p->wio);
	ram__tracker_exit(&p->t);
	ram_digest__exit(&p->sd);
	ram_digest__exit(&p->dd);
	guest_mem__exit(&p->src);
	guest_mem__exit(&p->dst);
}

/*
 * Ends the stream written so far and applies its RAM records but record `skip` (~0:
 * none) to the destination; the next step writes a new stream.
 */
static void apply(struct pair *p, uint64_t skip)
{
	struct stream_header hdr;
	struct stream_record rec;
	struct stream_reader r;
	struct stream_io rio;
	const uint8_t *data;
	char err[256];
	size_t len;

	assert_int_equal(stream__write_end(&p->w), 0);
	data = stream_io__mem_data(&p->wio, &len);
	stream_io__init_mem_reader(&rio, data, len);
	assert_int_equal(stream__reader_init(&r, &rio, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__read_header(&r, &hdr), 0);
	for (;;) {
		assert_int_equal(stream__read_record(&r, &rec), 0);
		if (rec.type == STREAM_REC_END)
			break;
		if (rec.type != STREAM_REC_RAM || rec.index == skip)
			continue;
		assert_int_equal(stream__ram_record_parse(&p->cfg, rec.payload, rec.length,
							  ram__apply_run, &p->dst, err,
							  sizeof(err)),
				 0);
	}
	stream__reader_exit(&r);
	stream_io__exit(&rio);
	stream__writer_exit(&p->w);
	stream_io__exit(&p->wio);
	stream_io__init_mem_writer(&p->wio);
	assert_int_equal(stream__writer_init(&p->w, &p->wio, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__write_header(&p->w), 0);
	assert_int_equal(stream__write_config(&p->w, &p->cfg), 0);
}

static void test_untouched_and_loaded_memory(void **state)
{
	struct guest_mem m;
	struct ram_digest rd;

	(void)state;
	/* Two regions, either side of the MMIO hole. */
	assert_int_equal(guest_mem__init(&m, 4 * GiB + 64 * MiB), 0);
	assert_int_equal(ram_digest__init(&rd, &m), 0);
	assert_int_equal(ram_digest__combine(&rd), rd.nr_chunks);
	assert_matches(&rd, &m);
	assert_int_equal(ram_digest__combine(&rd), 0);
	fill(&m, 0x100000, 0x5a, 3 * 4096);
	fill(&m, MEM_HOLE_START - 4096, 0x44, 4096);
	fill(&m, MEM_HOLE_END + 2 * MiB, 0x55, 4096);
	ram_digest__hash_all(&rd);
	ram_digest__combine(&rd);
	assert_matches(&rd, &m);
	/* What was never written is not read (a shared memfd would allocate it). */
	assert_true(lseek(m.memfd, 0x200000, SEEK_DATA) > 0x200000);
	ram_digest__exit(&rd);
	guest_mem__exit(&m);
}

/* Source: the digests of the pages as sent; destination: of the pages as written. */
static void test_digests_follow_the_rounds(void **state)
{
	struct pair p;
	static const uint8_t zero[4096];
	uint64_t pages, hashed;

	(void)state;
	setup(&p, 64 * MiB);
	fill(&p.src, 0, 0x11, 1 * MiB);
	fill(&p.src, 8 * MiB, 0x22, 4096);
	assert_int_equal(guest_mem__write(&p.src, 9 * MiB, zero, sizeof(zero)), 0);
	assert_int_equal(ram__log_start(&p.t, NULL), 0);
	assert_int_equal(ram__send_all(&p.s), 0);
	assert_int_equal(p.sd.pages, 256 + 2);
	ram_digest__combine(&p.sd);
	assert_matches(&p.sd, &p.src);
	apply(&p, ~0ULL);
	assert_int_equal(ram_digest__refresh(&p.dd), 256 + 2);
	ram_digest__combine(&p.dd);
	assert_matches(&p.dd, &p.dst);
	assert_memory_equal(p.sd.chunk, p.dd.chunk, p.sd.nr_chunks * 8);

	/* A later round rewrites three pages in two chunks, one of them twice. */
	fill(&p.src, 0x3000, 0x33, 4096);
	fill(&p.src, 0x3000, 0x34, 4096);
	fill(&p.src, 0x200800, 0x35, 4096);
	assert_int_equal(ram__sync(&p.t, true), 3);
	p.s.copy = false;
	pages = p.sd.pages;
	assert_int_equal(ram__send_pending(&p.s), 0);
	assert_int_equal(p.sd.pages - pages, 3);
	assert_int_equal(ram_digest__combine(&p.sd), 2);
	assert_matches(&p.sd, &p.src);
	apply(&p, ~0ULL);
	hashed = ram_digest__refresh(&p.dd);
	assert_int_equal(hashed, 3);
	assert_int_equal(ram_digest__combine(&p.dd), 2);
	assert_matches(&p.dd, &p.dst);
	assert_memory_equal(p.sd.chunk, p.dd.chunk, p.sd.nr_chunks * 8);
	/* Nothing written since: nothing to hash. */
	assert_int_equal(ram_digest__refresh(&p.dd), 0);
	assert_int_equal(ram_digest__combine(&p.dd), 0);
	teardown(&p);
}

/* A page that becomes zero is a hole again on the destination, and stays one. */
static void test_zero_page_read_as_hole(void **state)
{
	struct pair p;

	(void)state;
	setup(&p, 16 * MiB);
	fill(&p.dst, 4 * MiB, 0x66, 4096);
	ram_digest__refresh(&p.dd);
	assert_int_equal(ram__apply_run(&p.dst, 4 * MiB, 1, STREAM_RAM_ZERO, NULL), 0);
	assert_int_equal(ram_digest__refresh(&p.dd), 1);
	ram_digest__combine(&p.dd);
	assert_matches(&p.dd, &p.dst);
	assert_true(lseek(p.dst.memfd, 4 * MiB, SEEK_DATA) != 4 * MiB);
	teardown(&p);
}

static void compare(struct pair *p, int want, uint64_t want_gpa)
{
	uint64_t bad = 0;

	ram_digest__refresh(&p->dd);
	ram_digest__combine(&p->dd);
	ram_digest__combine(&p->sd);
	assert_int_equal(stream__ram_digest_compare(&p->cfg, p->sd.chunk, p->sd.nr_chunks,
						    p->dd.chunk, p->dd.nr_chunks, &bad),
			 want);
	if (want)
		assert_int_equal(bad, want_gpa);
}

/* A RAM record lost on the way: its chunk differs. */
static void test_lost_record_detected(void **state)
{
	struct pair p;

	(void)state;
	setup(&p, 64 * MiB);
	fill(&p.src, 0, 0x11, 1 * MiB);		  /* record 1 */
	fill(&p.src, 6 * MiB + 8192, 0x12, 4096); /* record 2: batches are 256 pages */
	assert_int_equal(ram__send_all(&p.s), 0);
	apply(&p, 2);
	compare(&p, -EBADMSG, 6 * MiB);
	teardown(&p);
}

/* A page changed on the destination after it was applied, by a later write. */
static void test_overwritten_page_detected(void **state)
{
	struct pair p;

	(void)state;
	setup(&p, 64 * MiB);
	fill(&p.src, 10 * MiB, 0x11, 64 * 4096);
	assert_int_equal(ram__send_all(&p.s), 0);
	apply(&p, ~0ULL);
	compare(&p, 0, 0);
	fill(&p.dst, 10 * MiB + 5 * 4096, 0x12, 1);
	compare(&p, -EBADMSG, 10 * MiB);
	teardown(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_untouched_and_loaded_memory),
	    cmocka_unit_test(test_digests_follow_the_rounds),
	    cmocka_unit_test(test_zero_page_read_as_hole),
	    cmocka_unit_test(test_lost_record_detected),
	    cmocka_unit_test(test_overwritten_page_detected),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
