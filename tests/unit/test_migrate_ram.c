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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "godwit/migrate.h"
#include "godwit/ram.h"
#include "godwit/ram_receive.h"

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

/*
 * Reads stream bytes into dst as the destination does: plain RAM records in place,
 * through the receiver (and its helper allocating ahead), packed ones expanded and
 * applied. 0, or the first error with err set.
 */
static int receive(struct pair *p, const struct stream_config *cfg, const uint8_t *data,
		   size_t len, char *err, size_t errlen)
{
	struct ram_receiver rcv;
	struct stream_header hdr;
	struct stream_record rec;
	struct stream_reader r;
	struct stream_io rio;
	int ret;

	stream_io__init_mem_reader(&rio, data, len);
	assert_int_equal(stream__reader_init(&r, &rio, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__read_header(&r, &hdr), 0);
	ram_receiver__start(&rcv, &p->dst);
	for (;;) {
		ret = stream__read_record_open(&r, &rec, STREAM_REC_RAM);
		if (ret == 1)
			ret = stream__ram_record_receive(&r, &rec, cfg, ram_receiver__fill,
							 ram_receiver__apply, &rcv, err, errlen);
		else if (ret)
			snprintf(err, errlen, "%s", r.err);
		if (ret || rec.type == STREAM_REC_END)
			break;
		if (rec.type == STREAM_REC_RAM_LZ4)
			fail_msg("no packed records in these tests");
	}
	ram_receiver__stop(&rcv);
	stream__reader_exit(&r);
	stream_io__exit(&rio);
	return ret;
}

/* Reads everything written so far (it must end with END) into dst. */
static void apply_all(struct pair *p)
{
	const uint8_t *data;
	char err[256] = "";
	size_t len;

	data = stream_io__mem_data(&p->wio, &len);
	assert_int_equal(receive(p, &p->cfg, data, len, err, sizeof(err)), 0);
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

static void count_record(void *arg)
{
	(*(unsigned int *)arg)++;
}

/* 1000 data pages in a row: whole records of 256 pages, or of batch_pages when set. */
static unsigned int records_for(unsigned int batch_pages)
{
	unsigned int records = 0;
	struct ram_sender s;
	struct pair p;
	uint64_t i;

	setup(&p, 16 * MiB);
	for (i = 0; i < 1000; i++)
		fill(&p.src, i * 4096, (uint8_t)(i | 1), 4096);
	s = (struct ram_sender){.t = &p.t,
				.w = &p.w,
				.copy = true,
				.batch_pages = batch_pages,
				.on_record = count_record,
				.on_record_arg = &records};
	assert_int_equal(ram__send_all(&s), 0);
	assert_int_equal(s.pages_sent, 1000);
	assert_int_equal(stream__write_end(&p.w), 0);
	apply_all(&p);
	assert_same_ram(&p);
	teardown(&p);
	return records;
}

static void test_records_as_short_as_asked(void **state)
{
	(void)state;
	assert_int_equal(records_for(0), 4);
	assert_int_equal(records_for(64), 16);
	/* More than a whole record's pages: whole records. */
	assert_int_equal(records_for(4096), 4);
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

static volatile sig_atomic_t alarmed;

static void wake_up(int sig)
{
	(void)sig;
	alarmed = 1;
}

/*
 * At 1 byte/s the wait after the first record is days long: a cancel must end it. Should
 * it not, SIGALRM interrupts the sleep after 10 s so that the test fails, not hangs.
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
	alarmed = 0;
	alarm(10);
	t0 = util__now_ns();
	ret = ram__send_all(&s);
	took_ms = (util__now_ns() - t0) / 1000000;
	alarm(0);
	pthread_join(th, NULL);
	sigaction(SIGALRM, &old, NULL);
	assert_int_equal(ret, -ECANCELED);
	/* The cancel ended the wait, not the alarm (a loaded host may be slow to cancel). */
	assert_false(alarmed);
	assert_true(took_ms >= 100);
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

static bool vmm_dirty(const struct guest_mem *m, uint64_t gpa)
{
	uint64_t pfn = gpa / GUEST_PAGE_SIZE;

	return m->vmm_dirty[pfn / (8 * sizeof(long))] >> (pfn % (8 * sizeof(long))) & 1;
}

/* Two records of 1 MiB each at 1 MiB and 3 MiB; *second: where the second's data starts. */
static uint8_t *two_records(struct pair *p, size_t *len, size_t *second)
{
	struct ram_sender s = { .t = &p->t, .w = &p->w, .copy = true };
	const uint8_t *data;
	uint8_t *copy;

	fill(&p->src, 1 * MiB, 0x11, 1 * MiB);
	fill(&p->src, 3 * MiB, 0x33, 1 * MiB);
	assert_int_equal(ram__send_all(&s), 0);
	assert_int_equal(stream__write_end(&p->w), 0);
	data = stream_io__mem_data(&p->wio, len);
	copy = malloc(*len);
	memcpy(copy, data, *len);
	/* The last RAM record's data ends just before END (24 + 16 bytes). */
	*second = *len - STREAM_RECORD_HDR_LEN - STREAM_END_LEN - 1 * MiB;
	assert_int_equal(copy[*second], 0x33);
	return copy;
}

/*
 * A byte changed in the second record's data: it went into guest RAM before its
 * checksum could be checked, so the receive fails (the destination then fails the
 * move), with every page it wrote marked dirty.
 */
static void test_in_place_receive_fails_on_a_bad_checksum(void **state)
{
	char err[256] = "";
	size_t len, second;
	struct pair p;
	uint8_t *bad;

	(void)state;
	setup(&p, 64 * MiB);
	bad = two_records(&p, &len, &second);
	bad[second + 5000] ^= 0x40;
	assert_int_equal(receive(&p, &p.cfg, bad, len, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "checksum mismatch"));
	assert_memory_equal(p.dst.base + 1 * MiB, p.src.base + 1 * MiB, 1 * MiB);
	assert_int_equal(p.dst.base[3 * MiB + 5000], 0x33 ^ 0x40);
	assert_true(vmm_dirty(&p.dst, 1 * MiB) && vmm_dirty(&p.dst, 4 * MiB - 4096));
	free(bad);
	teardown(&p);
}

/* A run outside the RAM the CONFIG gave: refused before a byte of its record is written. */
static void test_in_place_receive_checks_runs_before_writing(void **state)
{
	struct stream_config small;
	char err[256] = "";
	size_t len, second;
	struct pair p;
	uint8_t *good;

	(void)state;
	setup(&p, 64 * MiB);
	good = two_records(&p, &len, &second);
	small = p.cfg;
	small.regions[0].size = 2 * MiB; /* the record at 3 MiB lies beyond */
	assert_int_equal(receive(&p, &small, good, len, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "not inside one RAM region"));
	assert_int_equal(p.dst.base[1 * MiB], 0x11);
	assert_int_equal(p.dst.base[3 * MiB], 0);
	assert_false(vmm_dirty(&p.dst, 3 * MiB));
	/* Truncated in the middle of the data: a short read, nothing accepted. */
	assert_int_equal(receive(&p, &p.cfg, good, second + 4096, err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "truncated payload"));
	free(good);
	teardown(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_pass_skips_holes_and_zero_pages),
		cmocka_unit_test(test_later_passes_send_vmm_dirty_pages),
		cmocka_unit_test(test_large_guest_across_the_hole),
		cmocka_unit_test(test_many_pages_split_into_bounded_records),
		cmocka_unit_test(test_records_as_short_as_asked),
		cmocka_unit_test(test_bandwidth_wait_ends_on_cancel),
		cmocka_unit_test(test_dirtiers),
		cmocka_unit_test(test_in_place_receive_fails_on_a_bad_checksum),
		cmocka_unit_test(test_in_place_receive_checks_runs_before_writing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
