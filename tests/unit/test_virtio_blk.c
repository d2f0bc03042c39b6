// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-blk end to end without KVM: a fake driver in this file brings the
 * device up through its MMIO registers, writes requests into a real guest_mem
 * (descriptors, avail ring), kicks QueueNotify and waits (bounded) for the I/O
 * thread to answer in the used ring. Against a temporary raw image: write, read,
 * flush, get_id, discard, write_zeroes, out-of-range and malformed requests,
 * readonly images, the image lock, quiesce/resume and migration state.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "godwit/bus.h"
#include "godwit/memory.h"
#include "godwit/virtio_blk.h"

#define RAM	  (64 * MiB)
#define IMG_SIZE  (1 * MiB)
#define CAPACITY  (IMG_SIZE / 512)
#define QSIZE	  16
#define DESC_GPA  0x10000ULL
#define AVAIL_GPA 0x11000ULL
#define USED_GPA  0x12000ULL
#define HDR_GPA	  0x200000ULL
#define STAT_GPA  0x201000ULL
#define DATA_GPA  0x300000ULL
#define WAIT_MS	  5000

struct fx {
	struct guest_mem mem;
	struct virtio_blk *blk;
	char path[64];
	uint16_t avail_idx;
	uint16_t used_seen;
	int raises;
};

struct req {
	uint32_t type;
	uint64_t sector;
	uint64_t data_gpa;
	uint32_t data_len;
	bool data_writable;
	uint32_t hdr_len; /* 16 unless testing a short header */
	bool no_status;
};

static void on_raise(void *opaque)
{
	struct fx *f = opaque;

	__atomic_fetch_add(&f->raises, 1, __ATOMIC_SEQ_CST);
}

static uint32_t mmio_rd(struct virtio_blk *b, uint64_t off, unsigned int size)
{
	uint8_t data[8] = { 0 };
	struct bus_access a = { .offset = off, .data = data, .size = size };
	uint64_t v = 0;

	virtio_mmio__access(&b->mmio, &a);
	memcpy(&v, data, size);
	return (uint32_t)le64toh(v);
}

static void mmio_wr(struct virtio_blk *b, uint64_t off, uint32_t val)
{
	uint8_t data[4];
	struct bus_access a = { .offset = off, .data = data, .size = 4, .is_write = true };

	val = htole32(val);
	memcpy(data, &val, 4);
	virtio_mmio__access(&b->mmio, &a);
}

static uint64_t device_features(struct virtio_blk *b)
{
	uint64_t v;

	mmio_wr(b, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	v = mmio_rd(b, VIRTIO_MMIO_DEVICE_FEATURES, 4);
	mmio_wr(b, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	return v | (uint64_t)mmio_rd(b, VIRTIO_MMIO_DEVICE_FEATURES, 4) << 32;
}

/* What a Linux driver does at probe, accepting every offered feature. */
static void driver_bring_up(struct fx *f, struct virtio_blk *b)
{
	uint64_t feat = device_features(b);
	uint32_t s = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;

	mmio_wr(b, VIRTIO_MMIO_STATUS, 0);
	mmio_wr(b, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	mmio_wr(b, VIRTIO_MMIO_STATUS, s);
	mmio_wr(b, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	mmio_wr(b, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)feat);
	mmio_wr(b, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	mmio_wr(b, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(feat >> 32));
	s |= VIRTIO_STATUS_FEATURES_OK;
	mmio_wr(b, VIRTIO_MMIO_STATUS, s);
	assert_int_equal(mmio_rd(b, VIRTIO_MMIO_STATUS, 4), s);
	/* Linux zeroes the rings before handing them over. */
	assert_int_equal(guest_mem__write(&f->mem, AVAIL_GPA, (uint8_t[0x2000]){ 0 }, 0x2000), 0);
	mmio_wr(b, VIRTIO_MMIO_QUEUE_SEL, 0);
	assert_int_equal(mmio_rd(b, VIRTIO_MMIO_QUEUE_NUM_MAX, 4), VIRTIO_BLK_QUEUE_SIZE);
	mmio_wr(b, VIRTIO_MMIO_QUEUE_NUM, QSIZE);
	mmio_wr(b, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)DESC_GPA);
	mmio_wr(b, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
	mmio_wr(b, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)AVAIL_GPA);
	mmio_wr(b, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, 0);
	mmio_wr(b, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)USED_GPA);
	mmio_wr(b, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 0);
	mmio_wr(b, VIRTIO_MMIO_QUEUE_READY, 1);
	mmio_wr(b, VIRTIO_MMIO_STATUS, s | VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(mmio_rd(b, VIRTIO_MMIO_STATUS, 4), s | VIRTIO_STATUS_DRIVER_OK);
	f->avail_idx = 0;
	f->used_seen = 0;
}

static int make_image(char *path, size_t pathlen)
{
	int fd;

	snprintf(path, pathlen, "/tmp/godwit-blk-XXXXXX");
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	if (ftruncate(fd, IMG_SIZE)) {
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static int start(struct fx *f, bool readonly)
{
	struct virtio_blk_opts o = {
		.path = f->path, .readonly = readonly, .serial = "godwit-test-serial-0123456"
	};

	f->blk = calloc(1, sizeof(*f->blk));
	if (!f->blk || virtio_blk__init(f->blk, &f->mem, &o, on_raise, f))
		return -1;
	driver_bring_up(f, f->blk);
	return 0;
}

static int setup_common(void **state, bool readonly)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f || guest_mem__init(&f->mem, RAM) || make_image(f->path, sizeof(f->path)))
		return -1;
	*state = f;
	return start(f, readonly);
}

static int setup(void **state)
{
	return setup_common(state, false);
}

static int setup_ro(void **state)
{
	return setup_common(state, true);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->blk) {
		virtio_blk__exit(f->blk);
		free(f->blk);
	}
	unlink(f->path);
	guest_mem__exit(&f->mem);
	free(f);
	return 0;
}

static void put_desc(struct fx *f, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	uint8_t raw[16];

	addr = htole64(addr);
	len = htole32(len);
	flags = htole16(flags);
	next = htole16(next);
	memcpy(raw, &addr, 8);
	memcpy(raw + 8, &len, 4);
	memcpy(raw + 12, &flags, 2);
	memcpy(raw + 14, &next, 2);
	assert_int_equal(guest_mem__write(&f->mem, DESC_GPA + 16ULL * i, raw, 16), 0);
}

static void put16(struct fx *f, uint64_t gpa, uint16_t v)
{
	v = htole16(v);
	assert_int_equal(guest_mem__write(&f->mem, gpa, &v, 2), 0);
}

static uint16_t get16(struct fx *f, uint64_t gpa)
{
	uint16_t v = 0;

	assert_int_equal(guest_mem__read(&f->mem, gpa, &v, 2), 0);
	return le16toh(v);
}

/* Builds the chain (data split in two descriptors when it is large) and kicks. */
static void submit(struct fx *f, const struct req *r)
{
	uint16_t dflags = r->data_writable ? VIRTQ_DESC_F_WRITE : 0;
	uint8_t hdr[16] = { 0 };
	uint32_t t = htole32(r->type), first;
	uint64_t s = htole64(r->sector);
	uint16_t n = 0;

	memcpy(hdr, &t, 4);
	memcpy(hdr + 8, &s, 8);
	assert_int_equal(guest_mem__write(&f->mem, HDR_GPA, hdr, 16), 0);
	put_desc(f, n, HDR_GPA, r->hdr_len ? r->hdr_len : 16, VIRTQ_DESC_F_NEXT, n + 1);
	n++;
	if (r->data_len >= 1024) {
		first = r->data_len / 2;
		put_desc(f, n, r->data_gpa, first, dflags | VIRTQ_DESC_F_NEXT, n + 1);
		n++;
		put_desc(f, n, r->data_gpa + first, r->data_len - first, dflags | VIRTQ_DESC_F_NEXT,
			 n + 1);
		n++;
	} else if (r->data_len) {
		put_desc(f, n, r->data_gpa, r->data_len, dflags | VIRTQ_DESC_F_NEXT, n + 1);
		n++;
	}
	if (r->no_status) {
		put_desc(f, n - 1, n == 1 ? HDR_GPA : r->data_gpa, n == 1 ? 16 : r->data_len, 0, 0);
	} else {
		assert_int_equal(guest_mem__write(&f->mem, STAT_GPA, (uint8_t[]){ 0xee }, 1), 0);
		put_desc(f, n, STAT_GPA, 1, VIRTQ_DESC_F_WRITE, 0);
	}
	put16(f, AVAIL_GPA + 4 + 2 * (f->avail_idx % QSIZE), 0);
	f->avail_idx++;
	put16(f, AVAIL_GPA + 2, f->avail_idx);
	mmio_wr(f->blk, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

/* Waits (bounded) for the next used entry; returns false on timeout. */
static bool wait_used(struct fx *f, uint32_t *used_len)
{
	uint32_t len;
	int i;

	for (i = 0; i < WAIT_MS; i++) {
		if (__atomic_load_n((uint16_t *)guest_mem__ptr(&f->mem, USED_GPA + 2, 2),
				    __ATOMIC_ACQUIRE) != htole16(f->used_seen))
			break;
		usleep(1000);
	}
	if (i == WAIT_MS)
		return false;
	assert_int_equal(guest_mem__read(&f->mem, USED_GPA + 4 + 8 * (f->used_seen % QSIZE) + 4,
					 &len, 4),
			 0);
	f->used_seen++;
	if (used_len)
		*used_len = le32toh(len);
	return true;
}

/* Submits, waits, returns the status byte. */
static uint8_t run(struct fx *f, const struct req *r, uint32_t *used_len)
{
	uint8_t status = 0xee;

	submit(f, r);
	assert_true(wait_used(f, used_len));
	assert_int_equal(guest_mem__read(&f->mem, STAT_GPA, &status, 1), 0);
	return status;
}

static void fill_pattern(struct fx *f, uint64_t gpa, size_t len, uint8_t seed)
{
	uint8_t *p = guest_mem__ptr(&f->mem, gpa, len);
	size_t i;

	assert_non_null(p);
	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

static void read_image(struct fx *f, void *buf, size_t len, off_t off)
{
	int fd = open(f->path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

static bool page_dirty(struct fx *f, uint64_t gpa)
{
	uint64_t pfn = gpa >> GUEST_PAGE_SHIFT;

	return f->mem.vmm_dirty[pfn / (8 * sizeof(long))] & (1UL << (pfn % (8 * sizeof(long))));
}

static void test_config(void **state)
{
	struct fx *f = *state;
	struct virtio_blk *b = f->blk;
	uint64_t feat = device_features(b);

	assert_int_equal(mmio_rd(b, VIRTIO_MMIO_DEVICE_ID, 4), VIRTIO_ID_BLK);
	assert_true(feat & VIRTIO_BIT(VIRTIO_F_VERSION_1));
	assert_true(feat & VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
	assert_true(feat & VIRTIO_BIT(VIRTIO_BLK_F_FLUSH));
	assert_true(feat & VIRTIO_BIT(VIRTIO_BLK_F_DISCARD));
	assert_true(feat & VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES));
	assert_true(feat & VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX));
	assert_true(feat & VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE));
	assert_false(feat & VIRTIO_BIT(VIRTIO_BLK_F_RO));
	assert_int_equal(mmio_rd(b, VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_CAPACITY, 4), CAPACITY);
	assert_int_equal(mmio_rd(b, VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_CAPACITY + 4, 4), 0);
	assert_int_equal(mmio_rd(b, VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_SEG_MAX, 4),
			 VIRTIO_BLK_QUEUE_SIZE - 2);
	assert_int_equal(mmio_rd(b, VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_BLK_SIZE, 4), 512);
	assert_int_equal(mmio_rd(b, VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_MAX_DISCARD_SEG, 4),
			 VIRTIO_BLK_MAX_DISCARD_SEG);
	assert_int_equal(mmio_rd(b, VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_WZ_MAY_UNMAP, 1), 1);
	assert_int_equal(virtio_blk__notify_fd(b), virtio_mmio__queue_notify_fd(&b->mmio, 0));
	assert_true(virtio_blk__notify_fd(b) >= 0);
}

static void test_write_read(void **state)
{
	struct fx *f = *state;
	uint8_t img[8192], back[8192];
	uint32_t used_len;
	struct req w = { .type = VIRTIO_BLK_T_OUT, .sector = 5, .data_gpa = DATA_GPA,
			 .data_len = 8192 };
	struct req r = { .type = VIRTIO_BLK_T_IN, .sector = 5, .data_gpa = DATA_GPA + 0x10000,
			 .data_len = 8192, .data_writable = true };

	fill_pattern(f, DATA_GPA, 8192, 3);
	assert_int_equal(run(f, &w, &used_len), VIRTIO_BLK_S_OK);
	assert_int_equal(used_len, 1);
	read_image(f, img, sizeof(img), 5 * 512);
	assert_memory_equal(img, guest_mem__ptr(&f->mem, DATA_GPA, 8192), 8192);

	memset(f->mem.vmm_dirty, 0, (f->mem.nr_pages + 7) / 8);
	assert_int_equal(run(f, &r, &used_len), VIRTIO_BLK_S_OK);
	assert_int_equal(used_len, 8193);
	assert_int_equal(guest_mem__read(&f->mem, DATA_GPA + 0x10000, back, 8192), 0);
	assert_memory_equal(back, img, 8192);
	/* Device writes are visible to migration: data, status and used ring. */
	assert_true(page_dirty(f, DATA_GPA + 0x10000));
	assert_true(page_dirty(f, DATA_GPA + 0x11000));
	assert_true(page_dirty(f, STAT_GPA));
	assert_true(page_dirty(f, USED_GPA));
	assert_false(page_dirty(f, DATA_GPA));
	/* With EVENT_IDX and used_event 0, the first completion interrupted. */
	assert_true(__atomic_load_n(&f->raises, __ATOMIC_SEQ_CST) >= 1);
	/* Zero-length transfers are fine. */
	r.data_len = 0;
	assert_int_equal(run(f, &r, &used_len), VIRTIO_BLK_S_OK);
	assert_int_equal(used_len, 1);
}

static void test_flush(void **state)
{
	struct fx *f = *state;
	struct req r = { .type = VIRTIO_BLK_T_FLUSH };

	assert_int_equal(run(f, &r, NULL), VIRTIO_BLK_S_OK);
}

static void test_get_id(void **state)
{
	struct fx *f = *state;
	char id[VIRTIO_BLK_ID_BYTES];
	uint32_t used_len;
	struct req r = { .type = VIRTIO_BLK_T_GET_ID, .data_gpa = DATA_GPA,
			 .data_len = VIRTIO_BLK_ID_BYTES, .data_writable = true };

	assert_int_equal(run(f, &r, &used_len), VIRTIO_BLK_S_OK);
	assert_int_equal(used_len, 21);
	assert_int_equal(guest_mem__read(&f->mem, DATA_GPA, id, sizeof(id)), 0);
	/* Truncated to 20 bytes, no terminator. */
	assert_memory_equal(id, "godwit-test-serial-0", 20);
}

static void put_range(struct fx *f, uint64_t gpa, uint64_t sector, uint32_t n, uint32_t flags)
{
	uint8_t seg[16];

	sector = htole64(sector);
	n = htole32(n);
	flags = htole32(flags);
	memcpy(seg, &sector, 8);
	memcpy(seg + 8, &n, 4);
	memcpy(seg + 12, &flags, 4);
	assert_int_equal(guest_mem__write(&f->mem, gpa, seg, 16), 0);
}

static bool image_zero(struct fx *f, off_t off, size_t len)
{
	uint8_t buf[8192];
	size_t i;

	assert_true(len <= sizeof(buf));
	read_image(f, buf, len, off);
	for (i = 0; i < len; i++)
		if (buf[i])
			return false;
	return true;
}

static void write_pattern(struct fx *f, uint64_t sector, uint32_t len)
{
	struct req w = { .type = VIRTIO_BLK_T_OUT, .sector = sector, .data_gpa = DATA_GPA,
			 .data_len = len };

	fill_pattern(f, DATA_GPA, len, 1);
	assert_int_equal(run(f, &w, NULL), VIRTIO_BLK_S_OK);
	assert_false(image_zero(f, (off_t)sector * 512, len));
}

static void test_discard(void **state)
{
	struct fx *f = *state;
	struct req r = { .type = VIRTIO_BLK_T_DISCARD, .data_gpa = DATA_GPA + 0x10000,
			 .data_len = 32 };

	write_pattern(f, 0, 8192);
	put_range(f, DATA_GPA + 0x10000, 0, 8, 0);
	put_range(f, DATA_GPA + 0x10010, 8, 8, 0);
	assert_int_equal(run(f, &r, NULL), VIRTIO_BLK_S_OK);
	assert_true(image_zero(f, 0, 8192));
	/* The unmap flag is reserved for discard. */
	put_range(f, DATA_GPA + 0x10000, 0, 8, VIRTIO_BLK_DWZ_F_UNMAP);
	r.data_len = 16;
	assert_int_equal(run(f, &r, NULL), VIRTIO_BLK_S_UNSUPP);
	/* Not a whole number of segments, or none at all. */
	r.data_len = 20;
	assert_int_equal(run(f, &r, NULL), VIRTIO_BLK_S_IOERR);
	r.data_len = 0;
	assert_int_equal(run(f, &r, NULL), VIRTIO_BLK_S_IOERR);
}

static void test_write_zeroes(void **state)
{
	struct fx *f = *state;
	struct req r = { .type = VIRTIO_BLK_T_WRITE_ZEROES, .data_gpa = DATA_GPA + 0x10000,
			 .data_len = 16 };

	write_pattern(f, 16, 8192);
	put_range(f, DATA_GPA + 0x10000, 16, 8, 0);
	assert_int_equal(run(f, &r, NULL), VIRTIO_BLK_S_OK);
	assert_true(image_zero(f, 16 * 512, 4096));
	assert_false(image_zero(f, 24 * 512, 4096));
	put_range(f, DATA_GPA + 0x10000, 24, 8, VIRTIO_BLK_DWZ_F_UNMAP);
	assert_int_equal(run(f, &r, NULL), VIRTIO_BLK_S_OK);
	assert_true(image_zero(f, 16 * 512, 8192));
	/* Reserved flag bits. */
	put_range(f, DATA_GPA + 0x10000, 24, 8, 2);
	assert_int_equal(run(f, &r, NULL), VIRTIO_BLK_S_UNSUPP);
	/* More segments than max_write_zeroes_seg. */
	put_range(f, DATA_GPA + 0x10010, 0, 1, 0);
	r.data_len = 32;
	assert_int_equal(run(f, &r, NULL), VIRTIO_BLK_S_IOERR);
}

static void test_out_of_range(void **state)
{
	struct fx *f = *state;
	struct req r = { .type = VIRTIO_BLK_T_IN, .data_gpa = DATA_GPA, .data_len = 512,
			 .data_writable = true };
	struct req w = { .type = VIRTIO_BLK_T_OUT, .data_gpa = DATA_GPA, .data_len = 1024 };
	struct req d = { .type = VIRTIO_BLK_T_DISCARD, .data_gpa = DATA_GPA + 0x10000,
			 .data_len = 16 };
	uint32_t used_len;

	r.sector = CAPACITY - 1;
	assert_int_equal(run(f, &r, &used_len), VIRTIO_BLK_S_OK);
	assert_int_equal(used_len, 513);
	r.sector = CAPACITY;
	assert_int_equal(run(f, &r, &used_len), VIRTIO_BLK_S_IOERR);
	assert_int_equal(used_len, 1);
	r.sector = UINT64_MAX;
	assert_int_equal(run(f, &r, NULL), VIRTIO_BLK_S_IOERR);
	r.sector = UINT64_MAX / 512 + 1; /* sector * 512 would overflow */
	assert_int_equal(run(f, &r, NULL), VIRTIO_BLK_S_IOERR);
	w.sector = CAPACITY - 1; /* the second sector is past the end */
	assert_int_equal(run(f, &w, NULL), VIRTIO_BLK_S_IOERR);
	/* Data not a multiple of 512 bytes. */
	r.sector = 0;
	r.data_len = 100;
	assert_int_equal(run(f, &r, NULL), VIRTIO_BLK_S_IOERR);
	put_range(f, DATA_GPA + 0x10000, CAPACITY - 4, 8, 0);
	assert_int_equal(run(f, &d, NULL), VIRTIO_BLK_S_IOERR);
	put_range(f, DATA_GPA + 0x10000, UINT64_MAX - 1, 8, 0);
	assert_int_equal(run(f, &d, NULL), VIRTIO_BLK_S_IOERR);
	put_range(f, DATA_GPA + 0x10000, 0, VIRTIO_BLK_MAX_DISCARD_SECTORS + 1, 0);
	assert_int_equal(run(f, &d, NULL), VIRTIO_BLK_S_IOERR);
	/* The device is still fine. */
	assert_false(mmio_rd(f->blk, VIRTIO_MMIO_STATUS, 4) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_unsupported(void **state)
{
	struct fx *f = *state;
	struct req r = { .type = 0x77 };

	assert_int_equal(run(f, &r, NULL), VIRTIO_BLK_S_UNSUPP);
	r.type = 10; /* GET_LIFETIME: not offered */
	assert_int_equal(run(f, &r, NULL), VIRTIO_BLK_S_UNSUPP);
}

/* Waits (bounded) until the device thread has set bits of register reg. */
static bool wait_bits(struct fx *f, uint64_t reg, uint32_t bits)
{
	int i;

	for (i = 0; i < WAIT_MS; i++) {
		if (mmio_rd(f->blk, reg, 4) & bits)
			return true;
		usleep(1000);
	}
	return false;
}

static bool wait_needs_reset(struct fx *f)
{
	return wait_bits(f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_NEEDS_RESET);
}

/* The device thread sets the status, then the interrupt: the second may lag the first. */
static bool wait_config_interrupt(struct fx *f)
{
	return wait_bits(f, VIRTIO_MMIO_INTERRUPT_STATUS, VIRTIO_MMIO_INT_CONFIG);
}

static void test_malformed_header(void **state)
{
	struct fx *f = *state;
	struct req r = { .type = VIRTIO_BLK_T_IN, .hdr_len = 8 };

	submit(f, &r);
	assert_true(wait_needs_reset(f));
	assert_int_equal(get16(f, USED_GPA + 2), 0);
	assert_true(wait_config_interrupt(f));
	/* After a reset and a new bring-up the disk works again. */
	driver_bring_up(f, f->blk);
	r.hdr_len = 0;
	r.type = VIRTIO_BLK_T_FLUSH;
	assert_int_equal(run(f, &r, NULL), VIRTIO_BLK_S_OK);
}

static void test_no_status_byte(void **state)
{
	struct fx *f = *state;
	struct req r = { .type = VIRTIO_BLK_T_FLUSH, .no_status = true };

	submit(f, &r);
	assert_true(wait_needs_reset(f));
	assert_int_equal(get16(f, USED_GPA + 2), 0);
}

static void test_broken_ring(void **state)
{
	struct fx *f = *state;

	put_desc(f, 0, HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 0); /* a loop */
	put16(f, AVAIL_GPA + 4, 0);
	put16(f, AVAIL_GPA + 2, 1);
	mmio_wr(f->blk, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_true(wait_needs_reset(f));
}

static void test_readonly(void **state)
{
	struct fx *f = *state;
	uint64_t feat = device_features(f->blk);
	struct req w = { .type = VIRTIO_BLK_T_OUT, .data_gpa = DATA_GPA, .data_len = 512 };
	struct req r = { .type = VIRTIO_BLK_T_IN, .data_gpa = DATA_GPA, .data_len = 512,
			 .data_writable = true };
	struct req d = { .type = VIRTIO_BLK_T_WRITE_ZEROES, .data_gpa = DATA_GPA + 0x10000,
			 .data_len = 16 };

	assert_true(feat & VIRTIO_BIT(VIRTIO_BLK_F_RO));
	assert_false(feat & VIRTIO_BIT(VIRTIO_BLK_F_DISCARD));
	assert_false(feat & VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES));
	assert_int_equal(run(f, &w, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(run(f, &r, NULL), VIRTIO_BLK_S_OK);
	put_range(f, DATA_GPA + 0x10000, 0, 1, 0);
	assert_int_equal(run(f, &d, NULL), VIRTIO_BLK_S_IOERR);
	d.type = VIRTIO_BLK_T_DISCARD;
	assert_int_equal(run(f, &d, NULL), VIRTIO_BLK_S_IOERR);
}

/* Runs fn with stderr going to a file; returns what was written. */
static void capture_stderr(char *out, size_t outlen, int (*fn)(struct fx *), struct fx *f,
			   int *ret)
{
	FILE *tmp = tmpfile();
	int saved = dup(2);
	size_t n;

	assert_non_null(tmp);
	fflush(stderr);
	dup2(fileno(tmp), 2);
	*ret = fn(f);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(tmp);
	n = fread(out, 1, outlen - 1, tmp);
	out[n] = 0;
	fclose(tmp);
}

static int open_second(struct fx *f)
{
	struct disk d;
	int ret = disk__open(&d, f->path, false, true);

	if (!ret)
		disk__close(&d);
	return ret;
}

static int open_second_blk(struct fx *f)
{
	struct virtio_blk *b = calloc(1, sizeof(*b));
	struct virtio_blk_opts o = { .path = f->path };
	int ret;

	assert_non_null(b);
	ret = virtio_blk__init(b, &f->mem, &o, on_raise, f);
	if (!ret)
		virtio_blk__exit(b);
	free(b);
	return ret;
}

static void test_lock(void **state)
{
	struct fx *f = *state;
	char msg[512], want[256];
	struct disk other;
	int ret;

	snprintf(want, sizeof(want), "disk image %s is in use by another process (locked)",
		 f->path);
	capture_stderr(msg, sizeof(msg), open_second, f, &ret);
	assert_int_equal(ret, -EBUSY);
	assert_non_null(strstr(msg, want));
	capture_stderr(msg, sizeof(msg), open_second_blk, f, &ret);
	assert_int_equal(ret, -EBUSY);
	assert_non_null(strstr(msg, want));
	/* A readonly open is refused too: the writer holds it. */
	assert_int_equal(disk__open(&other, f->path, true, true), -EBUSY);

	/* Hand-over: release, the other side takes it, we cannot take it back... */
	assert_int_equal(virtio_blk__release_lock(f->blk), 0);
	assert_int_equal(disk__open(&other, f->path, false, true), 0);
	assert_int_equal(virtio_blk__take_lock(f->blk), -EBUSY);
	/* ...until the other side lets go. */
	disk__close(&other);
	assert_int_equal(virtio_blk__take_lock(f->blk), 0);
	assert_int_equal(open_second(f), -EBUSY);
	assert_int_equal(virtio_blk__take_lock(f->blk), 0); /* idempotent */
}

static void test_readonly_shared(void **state)
{
	struct fx *f = *state;
	struct disk a, b;

	/* Two readonly users may share an image; a writer may not join them. */
	assert_int_equal(disk__open(&a, f->path, true, true), 0);
	assert_int_equal(disk__open(&b, f->path, false, true), -EBUSY);
	disk__close(&a);
	assert_int_equal(disk__open(&a, "/nonexistent/godwit.img", false, true), -ENOENT);
}

/* An incoming migration opens the image while the source still holds it. */
static void test_deferred_lock(void **state)
{
	struct fx *f = *state;
	struct disk d;

	/* The fixture's device holds the write lock. */
	assert_int_equal(disk__open(&d, f->path, false, false), 0);
	assert_int_equal(disk__lock(&d), -EBUSY);
	assert_int_equal(virtio_blk__release_lock(f->blk), 0);
	assert_int_equal(disk__lock(&d), 0);
	assert_int_equal(virtio_blk__take_lock(f->blk), -EBUSY);
	disk__close(&d);
	assert_int_equal(virtio_blk__take_lock(f->blk), 0);
}

static void test_quiesce(void **state)
{
	struct fx *f = *state;
	struct req r = { .type = VIRTIO_BLK_T_FLUSH };
	uint8_t status;

	virtio_blk__quiesce(f->blk);
	virtio_blk__quiesce(f->blk); /* nests */
	submit(f, &r);
	usleep(50 * 1000);
	assert_int_equal(get16(f, USED_GPA + 2), 0);
	virtio_blk__resume(f->blk);
	usleep(20 * 1000);
	assert_int_equal(get16(f, USED_GPA + 2), 0);
	virtio_blk__resume(f->blk);
	assert_true(wait_used(f, NULL));
	assert_int_equal(guest_mem__read(&f->mem, STAT_GPA, &status, 1), 0);
	assert_int_equal(status, VIRTIO_BLK_S_OK);
}

static void test_save_load(void **state)
{
	struct fx *f = *state;
	struct virtio_blk_state st, bad;
	struct virtio_blk *b2 = calloc(1, sizeof(*b2));
	struct virtio_blk_opts o = { .path = f->path };
	struct req w = { .type = VIRTIO_BLK_T_OUT, .sector = 9, .data_gpa = DATA_GPA,
			 .data_len = 512 };
	struct req r = { .type = VIRTIO_BLK_T_IN, .sector = 9, .data_gpa = DATA_GPA + 0x10000,
			 .data_len = 512, .data_writable = true };

	assert_non_null(b2);
	fill_pattern(f, DATA_GPA, 512, 9);
	assert_int_equal(run(f, &w, NULL), VIRTIO_BLK_S_OK);
	virtio_blk__save(f->blk, &st);
	assert_int_equal(st.capacity, CAPACITY);
	assert_int_equal(st.transport.queues[0].last_avail_idx, 1);
	assert_int_equal(st.transport.queues[0].used_idx, 1);

	/* The destination: takes the image once the source lets go, loads, serves. */
	assert_int_equal(virtio_blk__release_lock(f->blk), 0);
	assert_int_equal(virtio_blk__init(b2, &f->mem, &o, on_raise, f), 0);
	bad = st;
	bad.capacity++;
	assert_int_equal(virtio_blk__load(b2, &bad), -EINVAL);
	bad = st;
	bad.readonly = 1;
	assert_int_equal(virtio_blk__load(b2, &bad), -EINVAL);
	bad = st;
	bad.transport.queues[0].num = 3;
	assert_int_equal(virtio_blk__load(b2, &bad), -EINVAL);
	assert_int_equal(virtio_blk__load(b2, &st), 0);

	virtio_blk__exit(f->blk);
	free(f->blk);
	f->blk = b2;
	assert_int_equal(run(f, &r, NULL), VIRTIO_BLK_S_OK);
	assert_memory_equal(guest_mem__ptr(&f->mem, DATA_GPA + 0x10000, 512),
			    guest_mem__ptr(&f->mem, DATA_GPA, 512), 512);
	assert_int_equal(get16(f, USED_GPA + 2), 2);
}

#define T(fn)  cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define TR(fn) cmocka_unit_test_setup_teardown(fn, setup_ro, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_config),
		T(test_write_read),
		T(test_flush),
		T(test_get_id),
		T(test_discard),
		T(test_write_zeroes),
		T(test_out_of_range),
		T(test_unsupported),
		T(test_malformed_header),
		T(test_no_status_byte),
		T(test_broken_ring),
		TR(test_readonly),
		T(test_lock),
		TR(test_readonly_shared),
		TR(test_deferred_lock),
		T(test_quiesce),
		T(test_save_load),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
