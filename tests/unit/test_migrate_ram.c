// SPDX-License-Identifier: GPL-2.0
/*
 * The RAM half of migration without KVM: pages go from one guest_mem through
 * the real sender, stream writer, reader, record parser and apply function into
 * another, which must end up byte-identical, with holes and zero pages kept off
 * the wire and VMM-side writes (the dirty bitmap) caught in later passes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "godwit/migrate.h"
#include "godwit/ram.h"

struct pair {
	struct guest_mem src, dst;
	struct stream_config cfg;
	struct ram_tracker t;
	struct stream_io wio;
	struct stream_writer w;
};

static void config_from(struct stream_config *cfg, const struct guest_mem *m)
{
	unsigned int i;

	memset(cfg, 0, sizeof(*cfg));
	cfg->ram_size = m->size;
	cfg->nr_vcpus = 1;
	cfg->nr_regions = m->nr_regions;
	for (i = 0; i < m->nr_regions; i++)
		cfg->regions[i] = (struct stream_region){ m->regions[i].gpa, m->regions[i].size };
}

static void setup(struct pair *p, uint64_t size)
{
	assert_int_equal(guest_mem__init(&p->src, size), 0);
	assert_int_equal(guest_mem__init(&p->dst, size), 0);
	config_from(&p->cfg, &p->src);
	assert_int_equal(ram__tracker_init(&p->t, &p->src), 0);
	stream_io__init_mem_writer(&p->wio);
	assert_int_equal(stream__writer_init(&p->w, &p->wio, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__write_header(&p->w), 0);
	assert_int_equal(stream__write_config(&p->w, &p->cfg), 0);
}

static void teardown(struct pair *p)
{
	stream__writer_exit(&p->w);
	stream_io__exit(&p->wio);
	ram__tracker_exit(&p->t);
	guest_mem__exit(&p->src);
	guest_mem__exit(&p->dst);
}

/* Reads everything written so far (it must end with END) into dst. */
static void apply_all(struct pair *p)
{
	struct stream_header hdr;
	struct stream_record rec;
	struct stream_reader r;
	struct stream_io rio;
	const uint8_t *data;
	char err[256];
	size_t len;

	data = stream_io__mem_data(&p->wio, &len);
	stream_io__init_mem_reader(&rio, data, len);
	assert_int_equal(stream__reader_init(&r, &rio, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__read_header(&r, &hdr), 0);
	for (;;) {
		assert_int_equal(stream__read_record(&r, &rec), 0);
		if (rec.type == STREAM_REC_END)
			break;
		if (rec.type != STREAM_REC_RAM)
			continue;
		assert_int_equal(stream__ram_record_parse(&p->cfg, rec.payload, rec.length,
							  ram__apply_run, &p->dst, err, sizeof(err)),
				 0);
	}
	stream__reader_exit(&r);
	stream_io__exit(&rio);
}

static void assert_same_ram(struct pair *p)
{
	assert_memory_equal(p->src.base, p->dst.base, p->src.size);
}

static void fill(struct guest_mem *m, uint64_t gpa, uint8_t v, uint64_t len)
{
	uint8_t *buf = malloc(len);

	memset(buf, v, len);
	assert_int_equal(guest_mem__write(m, gpa, buf, len), 0);
	free(buf);
}

static void test_first_pass_skips_holes_and_zero_pages(void **state)
{
	struct pair p;
	struct ram_sender s;
	static const uint8_t zero[4096];

	(void)state;
	setup(&p, 64 * MiB);
	fill(&p.src, 0x100000, 0xab, 3 * 4096);
	fill(&p.src, 0x800000, 0xcd, 4096);
	/* Touched but zero: read, sent as a ZERO run. */
	assert_int_equal(guest_mem__write(&p.src, 0x900000, zero, sizeof(zero)), 0);
	/* Garbage on the destination that a zero page must clear. */
	fill(&p.dst, 0x900000, 0x77, 4096);
	s = (struct ram_sender){ .t = &p.t, .w = &p.w, .copy = true };
	assert_int_equal(ram__send_all(&s), 0);
	assert_int_equal(s.pages_sent, 4);
	assert_int_equal(s.zero_pages, 1);
	assert_int_equal(s.skipped_pages, 64 * MiB / 4096 - 5);
	assert_int_equal(stream__write_end(&p.w), 0);
	apply_all(&p);
	assert_same_ram(&p);
	teardown(&p);
}

static void test_later_passes_send_vmm_dirty_pages(void **state)
{
	struct pair p;
	struct ram_sender s;
	int64_t n;

	(void)state;
	setup(&p, 64 * MiB);
	fill(&p.src, 0, 0x11, 1 * MiB);
	s = (struct ram_sender){ .t = &p.t, .w = &p.w, .copy = true };
	assert_int_equal(ram__log_start(&p.t, NULL), 0);
	assert_int_equal(ram__send_all(&s), 0);
	/* A device writes three pages (one straddling a boundary) after the pass. */
	fill(&p.src, 0x3000, 0x22, 4096);
	fill(&p.src, 0x200800, 0x33, 4096);
	n = ram__sync(&p.t, true);
	assert_int_equal(n, 3);
	s.copy = false;
	assert_int_equal(ram__send_pending(&s), 0);
	assert_int_equal(ram__sync(&p.t, true), 0);
	assert_int_equal(stream__write_end(&p.w), 0);
	apply_all(&p);
	assert_same_ram(&p);
	teardown(&p);
}

static void test_large_guest_across_the_hole(void **state)
{
	struct pair p;
	struct ram_sender s;

	(void)state;
	setup(&p, 4 * GiB + 64 * MiB);
	fill(&p.src, MEM_HOLE_START - 4096, 0x44, 4096);
	fill(&p.src, MEM_HOLE_END, 0x55, 8192);
	s = (struct ram_sender){ .t = &p.t, .w = &p.w, .copy = true };
	assert_int_equal(ram__send_all(&s), 0);
	assert_int_equal(s.pages_sent, 3);
	assert_int_equal(stream__write_end(&p.w), 0);
	apply_all(&p);
	assert_memory_equal(guest_mem__ptr(&p.dst, MEM_HOLE_END, 8192),
			    guest_mem__ptr(&p.src, MEM_HOLE_END, 8192), 8192);
	assert_memory_equal(guest_mem__ptr(&p.dst, MEM_HOLE_START - 4096, 4096),
			    guest_mem__ptr(&p.src, MEM_HOLE_START - 4096, 4096), 4096);
	teardown(&p);
}

static void test_many_pages_split_into_bounded_records(void **state)
{
	struct pair p;
	struct ram_sender s;
	uint64_t i;

	(void)state;
	setup(&p, 64 * MiB);
	/* Alternate data and zero pages: many runs per record. */
	for (i = 0; i < 3000; i++)
		fill(&p.src, i * 4096, (i % 2) ? (uint8_t)(i | 1) : 0, 4096);
	s = (struct ram_sender){ .t = &p.t, .w = &p.w, .copy = true };
	assert_int_equal(ram__send_all(&s), 0);
	assert_int_equal(s.pages_sent, 1500);
	assert_int_equal(s.zero_pages, 1500);
	assert_int_equal(stream__write_end(&p.w), 0);
	apply_all(&p);
	assert_same_ram(&p);
	teardown(&p);
}

/* Throttling falls on the vCPUs with half an even share of a round's faults or more. */
struct cancel_later {
	bool *flag;
	unsigned int ms;
};

static void *cancel_later(void *arg)
{
	struct cancel_later *c = arg;

	nanosleep(&(struct timespec){ .tv_sec = c->ms / 1000, .tv_nsec = c->ms % 1000 * 1000000L },
		  NULL);
	__atomic_store_n(c->flag, true, __ATOMIC_RELAXED);
	return NULL;
}

static void wake_up(int sig)
{
	(void)sig;
}

/*
 * At 1 byte/s the wait after the first record is days long: a cancel must end it. Should
 * it not, SIGALRM interrupts the sleep after 3 s so that the test fails, not hangs.
 */
static void test_bandwidth_wait_ends_on_cancel(void **state)
{
	struct sigaction sa = { .sa_handler = wake_up }, old;
	bool cancel = false;
	struct cancel_later c = { &cancel, 100 };
	struct ram_sender s;
	struct pair p;
	pthread_t th;
	uint64_t t0, took_ms;
	int ret;

	(void)state;
	setup(&p, 64 * MiB);
	fill(&p.src, 0x100000, 0xab, 2 * MiB);
	s = (struct ram_sender){ .t = &p.t, .w = &p.w, .cancelled = &cancel,
				 .compress = MIGRATE_COMPRESS_OFF, .max_bandwidth = 1,
				 .bw_start_ns = util__now_ns() };
	assert_int_equal(sigaction(SIGALRM, &sa, &old), 0);
	assert_int_equal(pthread_create(&th, NULL, cancel_later, &c), 0);
	alarm(3);
	t0 = util__now_ns();
	ret = ram__send_all(&s);
	took_ms = (util__now_ns() - t0) / 1000000;
	alarm(0);
	pthread_join(th, NULL);
	sigaction(SIGALRM, &old, NULL);
	assert_int_equal(ret, -ECANCELED);
	assert_true(took_ms >= 100 && took_ms < 1000);
	/* The first record went out; the wait after it ended the pass. */
	assert_int_equal(s.pages_sent, 256);
	teardown(&p);
}

static void test_dirtiers(void **state)
{
	const uint64_t one[3] = { 11, 140236, 39924 }, two[4] = { 5, 900, 1000, 200 };
	const uint64_t quiet[3] = { 20, 20, 20 }, even[2] = { 500, 500 };
	bool d[4];

	(void)state;
	assert_int_equal(migrate__find_dirtiers(one, 3, d), 2);
	assert_false(d[0]);
	assert_true(d[1] && d[2]);
	assert_int_equal(migrate__find_dirtiers(two, 4, d), 2);
	/* 200 of 2105 is below half an even share (263). */
	assert_true(!d[0] && d[1] && d[2] && !d[3]);
	/* A round with too few faults in all names nobody. */
	assert_int_equal(migrate__find_dirtiers(quiet, 3, d), 0);
	assert_true(!d[0] && !d[1] && !d[2]);
	assert_int_equal(migrate__find_dirtiers(even, 2, d), 2);
	assert_int_equal(migrate__find_dirtiers(even, 0, d), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_pass_skips_holes_and_zero_pages),
		cmocka_unit_test(test_later_passes_send_vmm_dirty_pages),
		cmocka_unit_test(test_large_guest_across_the_hole),
		cmocka_unit_test(test_many_pages_split_into_bounded_records),
		cmocka_unit_test(test_bandwidth_wait_ends_on_cancel),
		cmocka_unit_test(test_dirtiers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
