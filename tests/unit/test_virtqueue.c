// SPDX-License-Identifier: GPL-2.0
/*
 * Split virtqueue walking over a real guest_mem: well-formed chains (direct,
 * indirect), every malformed chain the walker must refuse (each refused without
 * consuming the chain and without writing a byte of guest RAM), the used ring,
 * notification suppression with and without VIRTIO_F_EVENT_IDX, and the 16-bit
 * indices wrapping.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/memory.h"
#include "godwit/virtio.h"

#define RAM	   (64 * MiB)
#define QSIZE	   16
#define DESC_GPA   0x10000ULL
#define AVAIL_GPA  0x11000ULL
#define USED_GPA   0x12000ULL
#define INDIR_GPA  0x14000ULL
#define INDIR2_GPA 0x15000ULL
#define BUF_GPA	   0x100000ULL

struct fx {
	struct guest_mem mem;
	struct virtq vq;
	struct virtq_chain chain;
	uint16_t avail_idx;
};

static void put16(struct fx *f, uint64_t gpa, uint16_t v)
{
	v = htole16(v);
	assert_int_equal(guest_mem__write(&f->mem, gpa, &v, 2), 0);
}

static uint16_t get16(struct fx *f, uint64_t gpa)
{
	uint16_t v;

	assert_int_equal(guest_mem__read(&f->mem, gpa, &v, 2), 0);
	return le16toh(v);
}

static uint32_t get32(struct fx *f, uint64_t gpa)
{
	uint32_t v;

	assert_int_equal(guest_mem__read(&f->mem, gpa, &v, 4), 0);
	return le32toh(v);
}

static void set_desc_at(struct fx *f, uint64_t table, uint16_t i, uint64_t addr, uint32_t len,
			uint16_t flags, uint16_t next)
{
	uint8_t raw[16];
	uint64_t a = htole64(addr);
	uint32_t l = htole32(len);
	uint16_t fl = htole16(flags), n = htole16(next);

	memcpy(raw, &a, 8);
	memcpy(raw + 8, &l, 4);
	memcpy(raw + 12, &fl, 2);
	memcpy(raw + 14, &n, 2);
	assert_int_equal(guest_mem__write(&f->mem, table + 16ULL * i, raw, 16), 0);
}

static void set_desc(struct fx *f, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	set_desc_at(f, DESC_GPA, i, addr, len, flags, next);
}

/* Makes head available (the driver side of 2.7.13). */
static void offer(struct fx *f, uint16_t head)
{
	put16(f, AVAIL_GPA + 4 + 2 * (f->avail_idx % QSIZE), head);
	f->avail_idx++;
	put16(f, AVAIL_GPA + 2, f->avail_idx);
}

static void clear_dirty(struct fx *f)
{
	memset(f->mem.vmm_dirty, 0, (f->mem.nr_pages + 7) / 8);
}

static bool any_dirty(struct fx *f)
{
	uint64_t i;

	for (i = 0; i < f->mem.nr_pages; i++)
		if (f->mem.vmm_dirty[i / (8 * sizeof(long))] & (1UL << (i % (8 * sizeof(long)))))
			return true;
	return false;
}

static bool page_dirty(struct fx *f, uint64_t gpa)
{
	uint64_t pfn = gpa >> GUEST_PAGE_SHIFT;

	return f->mem.vmm_dirty[pfn / (8 * sizeof(long))] & (1UL << (pfn % (8 * sizeof(long))));
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f || guest_mem__init(&f->mem, RAM))
		return -1;
	f->vq.mem = &f->mem;
	virtq__reset(&f->vq);
	if (virtq__setup(&f->vq, &f->mem, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA))
		return -1;
	f->vq.indirect = true;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	guest_mem__exit(&f->mem);
	free(f);
	return 0;
}

/* Pop must fail, consume nothing and write nothing. */
static void expect_bad(struct fx *f, int err)
{
	uint16_t last = f->vq.last_avail_idx;

	clear_dirty(f);
	assert_int_equal(virtq__pop(&f->vq, &f->chain), err);
	assert_int_equal(f->vq.last_avail_idx, last);
	assert_false(any_dirty(f));
	assert_true(strlen(f->vq.err) > 0);
	/* Still broken on the next try: the ring did not change. */
	assert_int_equal(virtq__pop(&f->vq, &f->chain), err);
}

static void test_empty(void **state)
{
	struct fx *f = *state;

	assert_false(virtq__has_avail(&f->vq));
	assert_int_equal(virtq__pop(&f->vq, &f->chain), 0);
}

static void test_direct_chain(void **state)
{
	struct fx *f = *state;
	struct virtq_chain *c = &f->chain;

	set_desc(f, 3, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 7);
	set_desc(f, 7, BUF_GPA + 0x1000, 512, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, BUF_GPA + 0x2000, 1, VIRTQ_DESC_F_WRITE, 0);
	offer(f, 3);
	assert_true(virtq__has_avail(&f->vq));
	assert_int_equal(virtq__pop(&f->vq, c), 1);
	assert_int_equal(c->head, 3);
	assert_int_equal(c->nr_segs, 3);
	assert_int_equal(c->nr_readable, 2);
	assert_int_equal(c->readable_len, 528);
	assert_int_equal(c->writable_len, 1);
	assert_int_equal(c->segs[1].gpa, BUF_GPA + 0x1000);
	assert_false(c->segs[1].writable);
	assert_true(c->segs[2].writable);
	assert_int_equal(virtq__pop(&f->vq, c), 0);
}

static void test_zero_length_dropped(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA, 0, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, BUF_GPA, 8, 0, 0);
	offer(f, 0);
	assert_int_equal(virtq__pop(&f->vq, &f->chain), 1);
	assert_int_equal(f->chain.nr_segs, 1);
	assert_int_equal(f->chain.readable_len, 8);
}

static void test_indirect(void **state)
{
	struct fx *f = *state;
	struct virtq_chain *c = &f->chain;

	set_desc_at(f, INDIR_GPA, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 2);
	set_desc_at(f, INDIR_GPA, 2, BUF_GPA + 0x1000, 4096, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
		    1);
	set_desc_at(f, INDIR_GPA, 1, BUF_GPA + 0x3000, 1, VIRTQ_DESC_F_WRITE, 0);
	set_desc(f, 5, INDIR_GPA, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 5);
	assert_int_equal(virtq__pop(&f->vq, c), 1);
	assert_int_equal(c->head, 5);
	assert_int_equal(c->nr_segs, 3);
	assert_int_equal(c->nr_readable, 1);
	assert_int_equal(c->writable_len, 4097);
	assert_int_equal(c->segs[2].gpa, BUF_GPA + 0x3000);
}

static void test_direct_then_indirect(void **state)
{
	struct fx *f = *state;

	set_desc_at(f, INDIR_GPA, 0, BUF_GPA + 0x1000, 1, VIRTQ_DESC_F_WRITE, 0);
	set_desc(f, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, INDIR_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	assert_int_equal(virtq__pop(&f->vq, &f->chain), 1);
	assert_int_equal(f->chain.nr_segs, 2);
	assert_int_equal(f->chain.nr_readable, 1);
}

static void test_bad_indirect_not_negotiated(void **state)
{
	struct fx *f = *state;

	f->vq.indirect = false;
	set_desc_at(f, INDIR_GPA, 0, BUF_GPA, 16, 0, 0);
	set_desc(f, 0, INDIR_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_bad(f, -EINVAL);
}

static void test_bad_nested_indirect(void **state)
{
	struct fx *f = *state;

	set_desc_at(f, INDIR2_GPA, 0, BUF_GPA, 16, 0, 0);
	set_desc_at(f, INDIR_GPA, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc_at(f, INDIR_GPA, 1, INDIR2_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	set_desc(f, 0, INDIR_GPA, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_bad(f, -EINVAL);
}

static void test_bad_indirect_len(void **state)
{
	static const uint32_t lens[] = { 0, 8, 17, 16 * (QSIZE + 1), 0xfffffff0 };
	struct fx *f = *state;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(lens); i++) {
		virtq__reset(&f->vq);
		assert_int_equal(virtq__setup(&f->vq, &f->mem, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA),
				 0);
		f->vq.indirect = true;
		f->avail_idx = 0;
		set_desc(f, 0, INDIR_GPA, lens[i], VIRTQ_DESC_F_INDIRECT, 0);
		offer(f, 0);
		expect_bad(f, -EINVAL);
	}
}

static void test_bad_indirect_with_next(void **state)
{
	struct fx *f = *state;

	set_desc_at(f, INDIR_GPA, 0, BUF_GPA, 16, 0, 0);
	set_desc(f, 0, INDIR_GPA, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, BUF_GPA, 16, 0, 0);
	offer(f, 0);
	expect_bad(f, -EINVAL);
}

static void test_bad_indirect_outside_ram(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, RAM - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_bad(f, -EFAULT);
}

static void test_bad_loop(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 0);
	offer(f, 0);
	expect_bad(f, -EINVAL);
}

static void test_bad_self_loop_zero_len(void **state)
{
	struct fx *f = *state;

	set_desc(f, 4, 0, 0, VIRTQ_DESC_F_NEXT, 4);
	offer(f, 4);
	expect_bad(f, -EINVAL);
}

static void test_bad_loop_in_indirect(void **state)
{
	struct fx *f = *state;

	set_desc_at(f, INDIR_GPA, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc_at(f, INDIR_GPA, 1, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 0);
	set_desc(f, 0, INDIR_GPA, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_bad(f, -EINVAL);
}

static void test_full_length_chain_ok(void **state)
{
	struct fx *f = *state;
	uint16_t i;

	/* Exactly QSIZE descriptors is allowed; one more is not. */
	for (i = 0; i < QSIZE; i++)
		set_desc(f, i, BUF_GPA + 64 * i, 64, i + 1 < QSIZE ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	offer(f, 0);
	assert_int_equal(virtq__pop(&f->vq, &f->chain), 1);
	assert_int_equal(f->chain.nr_segs, QSIZE);
}

static void test_bad_next_index(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, QSIZE);
	offer(f, 0);
	expect_bad(f, -EINVAL);
}

static void test_bad_indirect_next_index(void **state)
{
	struct fx *f = *state;

	set_desc_at(f, INDIR_GPA, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 2);
	set_desc(f, 0, INDIR_GPA, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_bad(f, -EINVAL);
}

static void test_bad_head_index(void **state)
{
	struct fx *f = *state;

	offer(f, QSIZE);
	expect_bad(f, -EINVAL);
	f->avail_idx = 0;
	offer(f, 0xffff);
	expect_bad(f, -EINVAL);
}

static void test_bad_buffer_outside_ram(void **state)
{
	static const struct {
		uint64_t addr;
		uint32_t len;
	} bad[] = {
		{ RAM, 1 },			 /* just past the end */
		{ RAM - 8, 16 },		 /* straddles the end */
		{ UINT64_MAX - 7, 16 },		 /* address + length overflows */
		{ 0xfffffffffffff000ULL, 0x2000 }, /* ditto, page-sized */
		{ MEM_HOLE_START, 4096 },	 /* MMIO hole */
	};
	struct fx *f = *state;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		virtq__reset(&f->vq);
		assert_int_equal(virtq__setup(&f->vq, &f->mem, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA),
				 0);
		f->avail_idx = 0;
		set_desc(f, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
		set_desc(f, 1, bad[i].addr, bad[i].len, VIRTQ_DESC_F_WRITE, 0);
		offer(f, 0);
		expect_bad(f, -EFAULT);
	}
}

static void test_bad_direction_order(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, BUF_GPA + 16, 16, 0, 0);
	offer(f, 0);
	expect_bad(f, -EINVAL);
}

static void test_bad_avail_jump(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA, 16, 0, 0);
	put16(f, AVAIL_GPA + 2, QSIZE + 1);
	expect_bad(f, -EINVAL);
	/* Exactly QSIZE pending is fine. */
	put16(f, AVAIL_GPA + 2, QSIZE);
	assert_int_equal(virtq__pop(&f->vq, &f->chain), 1);
}

static void test_setup_rejects(void **state)
{
	struct fx *f = *state;
	struct virtq vq = { .mem = &f->mem };

	assert_int_equal(virtq__setup(&vq, &f->mem, 0, DESC_GPA, AVAIL_GPA, USED_GPA), -EINVAL);
	assert_int_equal(virtq__setup(&vq, &f->mem, 12, DESC_GPA, AVAIL_GPA, USED_GPA), -EINVAL);
	assert_int_equal(virtq__setup(&vq, &f->mem, 2048, DESC_GPA, AVAIL_GPA, USED_GPA), -EINVAL);
	assert_int_equal(virtq__setup(&vq, &f->mem, 16, DESC_GPA + 8, AVAIL_GPA, USED_GPA),
			 -EINVAL);
	assert_int_equal(virtq__setup(&vq, &f->mem, 16, DESC_GPA, AVAIL_GPA + 1, USED_GPA),
			 -EINVAL);
	assert_int_equal(virtq__setup(&vq, &f->mem, 16, DESC_GPA, AVAIL_GPA, USED_GPA + 2),
			 -EINVAL);
	assert_int_equal(virtq__setup(&vq, &f->mem, 16, RAM - 16, AVAIL_GPA, USED_GPA), -EINVAL);
	assert_int_equal(virtq__setup(&vq, &f->mem, 16, DESC_GPA, RAM - 8, USED_GPA), -EINVAL);
	assert_int_equal(virtq__setup(&vq, &f->mem, 16, DESC_GPA, AVAIL_GPA, UINT64_MAX - 3),
			 -EINVAL);
	assert_int_equal(virtq__setup(&vq, &f->mem, 1024, DESC_GPA, AVAIL_GPA, USED_GPA), 0);
}

static void test_push(void **state)
{
	struct fx *f = *state;

	set_desc(f, 9, BUF_GPA, 16, 0, 0);
	offer(f, 9);
	assert_int_equal(virtq__pop(&f->vq, &f->chain), 1);
	clear_dirty(f);
	assert_int_equal(virtq__push(&f->vq, f->chain.head, 77), 0);
	assert_int_equal(get16(f, USED_GPA + 2), 1);
	assert_int_equal(get32(f, USED_GPA + 4), 9);
	assert_int_equal(get32(f, USED_GPA + 8), 77);
	assert_true(page_dirty(f, USED_GPA));
	assert_false(page_dirty(f, DESC_GPA));
}

static void test_notify_flags(void **state)
{
	struct fx *f = *state;

	assert_int_equal(virtq__push(&f->vq, 0, 0), 0);
	assert_true(virtq__should_notify(&f->vq));
	put16(f, AVAIL_GPA, VIRTQ_AVAIL_F_NO_INTERRUPT);
	assert_int_equal(virtq__push(&f->vq, 0, 0), 0);
	assert_false(virtq__should_notify(&f->vq));

	virtq__disable_notify(&f->vq);
	assert_int_equal(get16(f, USED_GPA), VIRTQ_USED_F_NO_NOTIFY);
	assert_false(virtq__enable_notify(&f->vq));
	assert_int_equal(get16(f, USED_GPA), 0);
	set_desc(f, 0, BUF_GPA, 16, 0, 0);
	offer(f, 0);
	virtq__disable_notify(&f->vq);
	assert_true(virtq__enable_notify(&f->vq));
}

static void test_event_idx(void **state)
{
	struct fx *f = *state;
	const uint64_t used_event = AVAIL_GPA + 4 + 2 * QSIZE;
	const uint64_t avail_event = USED_GPA + 4 + 8 * QSIZE;
	int i;

	f->vq.event_idx = true;
	/* The flag is ignored with event idx. */
	put16(f, AVAIL_GPA, VIRTQ_AVAIL_F_NO_INTERRUPT);
	/* First decision always interrupts (nothing known about the driver yet). */
	assert_int_equal(virtq__push(&f->vq, 0, 0), 0);
	assert_true(virtq__should_notify(&f->vq));
	/* Driver wants an interrupt once used idx passes 3 (i.e. after entry 3). */
	put16(f, used_event, 3);
	assert_int_equal(virtq__push(&f->vq, 0, 0), 0); /* used 2 */
	assert_false(virtq__should_notify(&f->vq));
	assert_int_equal(virtq__push(&f->vq, 0, 0), 0); /* used 3 */
	assert_false(virtq__should_notify(&f->vq));
	assert_int_equal(virtq__push(&f->vq, 0, 0), 0); /* used 4: crossed */
	assert_true(virtq__should_notify(&f->vq));
	/* Several pushes crossing the event in one batch interrupt once. */
	put16(f, used_event, 5);
	for (i = 0; i < 3; i++)
		assert_int_equal(virtq__push(&f->vq, 0, 0), 0); /* used 7 */
	assert_true(virtq__should_notify(&f->vq));
	assert_false(virtq__should_notify(&f->vq)); /* nothing new */

	/* Device side: enable_notify publishes avail_event = last_avail_idx. */
	set_desc(f, 0, BUF_GPA, 16, 0, 0);
	offer(f, 0);
	offer(f, 0);
	assert_int_equal(virtq__pop(&f->vq, &f->chain), 1);
	virtq__disable_notify(&f->vq);
	assert_true(virtq__enable_notify(&f->vq));
	assert_int_equal(get16(f, avail_event), 1);
	assert_int_equal(virtq__pop(&f->vq, &f->chain), 1);
	assert_false(virtq__enable_notify(&f->vq));
	assert_int_equal(get16(f, avail_event), 2);
}

static void test_wraparound(void **state)
{
	struct fx *f = *state;
	int i;

	/* Both indices start just below 2^16, as after a long uptime. */
	f->vq.last_avail_idx = 65533;
	f->vq.used_idx = 65533;
	f->avail_idx = 65533;
	set_desc(f, 2, BUF_GPA, 16, 0, 0);
	for (i = 0; i < 6; i++) {
		offer(f, 2);
		assert_int_equal(virtq__pop(&f->vq, &f->chain), 1);
		assert_int_equal(f->chain.head, 2);
		assert_int_equal(virtq__push(&f->vq, 2, (uint32_t)i), 0);
	}
	assert_int_equal(f->vq.last_avail_idx, 3);
	assert_int_equal(f->vq.used_idx, 3);
	assert_int_equal(get16(f, USED_GPA + 2), 3);
	/* Entry for used idx 65535 sits in slot 65535 % 16 = 15, then 0. */
	assert_int_equal(get32(f, USED_GPA + 4 + 8 * 15 + 4), 2);
	assert_int_equal(get32(f, USED_GPA + 4 + 8 * 0 + 4), 3);
	/* avail idx wrapping with a jump still counts as a jump. */
	put16(f, AVAIL_GPA + 2, (uint16_t)(3 + QSIZE + 1));
	expect_bad(f, -EINVAL);
	/* Event idx across the wrap. */
	f->vq.event_idx = true;
	f->vq.signalled_valid = true;
	f->vq.signalled_used = 65534;
	f->vq.used_idx = 65535;
	put16(f, AVAIL_GPA + 4 + 2 * QSIZE, 65535);
	f->vq.used_idx = 1;
	assert_true(virtq__should_notify(&f->vq));
}

static void fill(struct fx *f, uint64_t gpa, uint8_t start, size_t len)
{
	uint8_t buf[256];
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = (uint8_t)(start + i);
	assert_int_equal(guest_mem__write(&f->mem, gpa, buf, len), 0);
}

static void test_copy_helpers(void **state)
{
	struct fx *f = *state;
	uint8_t buf[64], out[32];
	struct iovec iov[4];
	int i, n;

	fill(f, BUF_GPA, 0, 10);
	fill(f, BUF_GPA + 0x1000, 10, 20);
	set_desc(f, 0, BUF_GPA, 10, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, BUF_GPA + 0x1000, 20, VIRTQ_DESC_F_NEXT, 2);
	set_desc(f, 2, BUF_GPA + 0x2000, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3);
	set_desc(f, 3, BUF_GPA + 0x3000, 8, VIRTQ_DESC_F_WRITE, 0);
	offer(f, 0);
	assert_int_equal(virtq__pop(&f->vq, &f->chain), 1);

	/* Read across the segment boundary, at an offset. */
	assert_int_equal(virtq_chain__read(&f->chain, &f->mem, 5, buf, 20), 0);
	for (i = 0; i < 20; i++)
		assert_int_equal(buf[i], 5 + i);
	assert_int_equal(virtq_chain__read(&f->chain, &f->mem, 0, buf, 30), 0);
	assert_int_equal(virtq_chain__read(&f->chain, &f->mem, 0, buf, 31), -ENOSPC);
	assert_int_equal(virtq_chain__read(&f->chain, &f->mem, 31, buf, 0), -ENOSPC);
	assert_int_equal(virtq_chain__read(&f->chain, &f->mem, UINT64_MAX, buf, 2), -ENOSPC);

	/* Write across the writable segments; dirty pages follow. */
	for (i = 0; i < 16; i++)
		out[i] = (uint8_t)(0xa0 + i);
	clear_dirty(f);
	assert_int_equal(virtq_chain__write(&f->chain, &f->mem, 2, out, 14), 0);
	assert_true(page_dirty(f, BUF_GPA + 0x2000));
	assert_true(page_dirty(f, BUF_GPA + 0x3000));
	assert_int_equal(guest_mem__read(&f->mem, BUF_GPA + 0x3000, buf, 8), 0);
	assert_int_equal(buf[0], 0xa0 + 6);
	assert_int_equal(buf[7], 0xa0 + 13);
	assert_int_equal(virtq_chain__write(&f->chain, &f->mem, 2, out, 15), -ENOSPC);

	/* iovecs over both parts. */
	n = virtq_chain__iov(&f->chain, &f->mem, false, 8, 4, iov, 4);
	assert_int_equal(n, 2);
	assert_int_equal(iov[0].iov_len, 2);
	assert_int_equal(iov[1].iov_len, 2);
	assert_ptr_equal(iov[1].iov_base, guest_mem__ptr(&f->mem, BUF_GPA + 0x1000, 1));
	assert_int_equal(virtq_chain__iov(&f->chain, &f->mem, true, 0, 16, iov, 1), -E2BIG);
	assert_int_equal(virtq_chain__iov(&f->chain, &f->mem, true, 0, 16, iov, 2), 2);
	assert_int_equal(virtq_chain__iov(&f->chain, &f->mem, true, 0, 17, iov, 4), -ENOSPC);
}

static void test_not_set_up(void **state)
{
	struct fx *f = *state;
	struct virtq vq = { .mem = &f->mem };

	assert_int_equal(virtq__pop(&vq, &f->chain), 0);
	assert_int_equal(virtq__push(&vq, 0, 0), -EFAULT);
	assert_false(virtq__should_notify(&vq));
	assert_false(virtq__enable_notify(&vq));
	virtq__disable_notify(&vq);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_empty),
		T(test_direct_chain),
		T(test_zero_length_dropped),
		T(test_indirect),
		T(test_direct_then_indirect),
		T(test_bad_indirect_not_negotiated),
		T(test_bad_nested_indirect),
		T(test_bad_indirect_len),
		T(test_bad_indirect_with_next),
		T(test_bad_indirect_outside_ram),
		T(test_bad_loop),
		T(test_bad_self_loop_zero_len),
		T(test_bad_loop_in_indirect),
		T(test_full_length_chain_ok),
		T(test_bad_next_index),
		T(test_bad_indirect_next_index),
		T(test_bad_head_index),
		T(test_bad_buffer_outside_ram),
		T(test_bad_direction_order),
		T(test_bad_avail_jump),
		T(test_setup_rejects),
		T(test_push),
		T(test_notify_flags),
		T(test_event_idx),
		T(test_wraparound),
		T(test_copy_helpers),
		T(test_not_set_up),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
