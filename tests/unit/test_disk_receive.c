// SPDX-License-Identifier: GPL-2.0
/*
 * The destination's images that come in the stream (src/migrate/disk_receive.c): a
 * writer thread applies the DISK records in stream order behind the receiving thread,
 * taking the reader's payload buffer rather than copying it, and its errors fail the
 * move; a helper thread flushes each image while its data comes, so that DONE's
 * fdatasync finds little left, and after DONE the guest's writes a smaller step at a
 * time, so that END's (in the pause) does too; its errors fail the move even though
 * the image's own descriptor's fdatasync succeeds; it stops at the last sync.
 * fdatasync and pwritev are wrapped (-Wl,--wrap) to count the helpers' calls and to
 * make them fail on cue; the flush's effect is read from the page cache (cachestat,
 * Linux 6.5) where the kernel has it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <linux/magic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "godwit/disk_receive.h"
#include "godwit/stream.h"

#define IMAGE_SIZE (64 * MiB)
#define RECORD	   (1 * MiB)

int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);
ssize_t __real_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off);
ssize_t __wrap_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off);

static pid_t test_tid;
static int helper_calls, helper_fail, writer_calls, writer_fail;

/* The writer is any thread but the test's. */
ssize_t __wrap_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	if (gettid() != test_tid) {
		__atomic_add_fetch(&writer_calls, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&writer_fail, __ATOMIC_SEQ_CST)) {
			errno = EIO;
			return -1;
		}
	}
	return __real_pwritev(fd, iov, iovcnt, off);
}

/* The helper is any thread but the test's. */
int __wrap_fdatasync(int fd)
{
	if (gettid() == test_tid)
		return __real_fdatasync(fd);
	__atomic_add_fetch(&helper_calls, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&helper_fail, __ATOMIC_SEQ_CST)) {
		errno = EIO;
		return -1;
	}
	return __real_fdatasync(fd);
}

struct fx {
	char dir[64];
	struct disk_receive r;
	int fd; /* the VM device's descriptor of the image */
	uint8_t *data;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char path[PATH_MAX], why[256];

	assert_non_null(f);
	test_tid = gettid();
	helper_calls = helper_fail = writer_calls = writer_fail = 0;
	snprintf(f->dir, sizeof(f->dir), "/var/tmp/godwit-diskrecv-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(disk_receive__init(&f->r, f->dir), 0);
	assert_int_equal(disk_receive__create(&f->r, 0, "vm.img", IMAGE_SIZE, &f->fd, path,
					      sizeof(path), why, sizeof(why)),
			 0);
	f->data = malloc(RECORD);
	assert_non_null(f->data);
	for (size_t i = 0; i < RECORD; i++)
		f->data[i] = (uint8_t)(i * 7 + 1);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	disk_receive__exit(&f->r);
	close(f->fd);
	rmdir(f->dir);
	free(f->data);
	free(f);
	return 0;
}

/* A data stream in memory, up to its CONFIG (empty: the reader leaves it to its caller). */
static void begin_stream(struct stream_io *out, struct stream_writer *w)
{
	struct iovec none = {NULL, 0};

	stream_io__init_mem_writer(out);
	assert_int_equal(stream__writer_init(w, out, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__write_header(w), 0);
	assert_int_equal(stream__write_record(w, STREAM_REC_CONFIG, STREAM_REC_MANDATORY, &none, 1),
			 0);
}

/* rd reads what begin_stream and the records after it wrote into out, past CONFIG. */
static void read_past_config(struct stream_io *out, struct stream_io *in, struct stream_reader *rd)
{
	struct stream_record rec;
	const uint8_t *bytes;
	size_t len;

	bytes = stream_io__mem_data(out, &len);
	stream_io__init_mem_reader(in, bytes, len);
	assert_int_equal(stream__reader_init(rd, in, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__read_header(rd, NULL), 0);
	assert_int_equal(stream__read_record(rd, &rec), 0);
}

/*
 * d applied as the destination applies it: a DATA record read back through a stream
 * reader, whose buffer the receive takes.
 */
static int apply_read(struct fx *f, const struct stream_disk *d)
{
	struct stream_io out, in;
	struct stream_writer w;
	struct stream_reader rd;
	struct stream_record rec;
	struct stream_disk got;
	char why[256];
	int ret;

	if (d->kind != STREAM_DISK_DATA)
		return disk_receive__apply(&f->r, d, NULL);
	begin_stream(&out, &w);
	assert_int_equal(stream__write_disk(&w, d->disk, d->kind, d->offset, d->length, d->data),
			 0);
	stream__writer_exit(&w);
	read_past_config(&out, &in, &rd);
	assert_int_equal(stream__read_record(&rd, &rec), 0);
	assert_int_equal(stream__disk_decode(rec.payload, rec.length, &got, why, sizeof(why)), 0);
	ret = disk_receive__apply(&f->r, &got, &rd);
	stream__reader_exit(&rd);
	stream_io__exit(&out);
	return ret;
}

static int put(struct fx *f, uint64_t off)
{
	struct stream_disk d = {
	    .disk = 0, .kind = STREAM_DISK_DATA, .offset = off, .length = RECORD, .data = f->data};

	return apply_read(f, &d);
}

static void write_range(struct fx *f, uint64_t from, uint64_t to)
{
	for (uint64_t off = from; off < to; off += RECORD)
		assert_int_equal(put(f, off), 0);
}

static void sleep_ms(long ms)
{
	nanosleep(&(struct timespec){.tv_nsec = ms * 1000000L}, NULL);
}

/* Dirty pages of the image in [off, off+len): -1 where the kernel cannot tell. */
static long dirty_pages(int fd, uint64_t off, uint64_t len)
{
	/* include/uapi/linux/mman.h, Linux 6.5; Debian 12's headers predate it */
	struct {
		uint64_t off, len;
	} range = {off, len};
	struct {
		uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
	} cs;
	struct statfs fs;

	/* tmpfs has nothing to write back to: its pages stay dirty */
	if (fstatfs(fd, &fs) || fs.f_type == TMPFS_MAGIC || syscall(451, fd, &range, &cs, 0))
		return -1;
	return (long)cs.nr_dirty;
}

/*
 * Waits (up to 10 s) for the helper to have flushed [off, off+len) after calls_before
 * flushes; where the kernel cannot count dirty pages (no cachestat), for a flush.
 */
static bool flushed_soon(struct fx *f, uint64_t off, uint64_t len, int calls_before)
{
	long dirty = -1;
	int i;

	for (i = 0; i < 1000; i++) {
		dirty = dirty_pages(f->fd, off, len);
		if (__atomic_load_n(&helper_calls, __ATOMIC_SEQ_CST) > calls_before && dirty <= 0)
			return true;
		sleep_ms(10);
	}
	return dirty < 0 && __atomic_load_n(&helper_calls, __ATOMIC_SEQ_CST) > calls_before;
}

static void test_flushed_while_it_comes(void **state)
{
	struct fx *f = *state;
	char why[256];

	write_range(f, 0, 4 * DISK_RECEIVE_FLUSH_STEP);
	/*
	 * Whatever the helper leaves unflushed is less than a step, at the end: the first
	 * three steps are clean once it has caught up (the kernel's own writeback would
	 * wait 30 s for them, this at most 10).
	 */
	assert_true(flushed_soon(f, 0, 3 * DISK_RECEIVE_FLUSH_STEP, 0));
	assert_true(f->r.flusher_running);
	assert_int_equal(disk_receive__sync(&f->r, true, why, sizeof(why)), 0);
}

/*
 * After DONE the guest's own writes still come until the pause: the helper flushes
 * them a smaller step at a time, so that END's fdatasync (in the pause) finds at most
 * a step left; it stops only at the last sync.
 */
static void test_helper_flushes_the_guests_writes_after_done(void **state)
{
	struct fx *f = *state;
	struct stream_disk done = {
	    .disk = 0, .kind = STREAM_DISK_DONE, .offset = 0, .length = IMAGE_SIZE};
	uint64_t tail = 2 * DISK_RECEIVE_FLUSH_STEP;
	char why[256];
	int calls;

	write_range(f, 0, tail);
	assert_true(f->r.flusher_running);
	assert_int_equal(disk_receive__apply(&f->r, &done, NULL), 0);
	assert_int_equal(disk_receive__sync(&f->r, false, why, sizeof(why)), 0);
	assert_true(f->r.flusher_running);
	/* Less than a pass's step, more than the tail's: flushed before any END. */
	calls = __atomic_load_n(&helper_calls, __ATOMIC_SEQ_CST);
	write_range(f, tail, tail + 2 * RECORD);
	assert_true(2 * RECORD < DISK_RECEIVE_FLUSH_STEP && RECORD >= DISK_RECEIVE_TAIL_STEP);
	assert_true(flushed_soon(f, tail, 2 * RECORD, calls));
	assert_true(f->r.flusher_running);
	assert_int_equal(disk_receive__sync(&f->r, true, why, sizeof(why)), 0);
	assert_false(f->r.flusher_running);
}

/*
 * The helper's fdatasync fails: the next record's write says so, and so does the sync
 * at DONE, though the fdatasync there (the image's own descriptor) succeeds.
 */
static void test_helper_error_fails_the_image(void **state)
{
	struct fx *f = *state;
	uint64_t off = 0;
	char why[256];
	int ret = 0, i;

	__atomic_store_n(&helper_fail, 1, __ATOMIC_SEQ_CST);
	for (i = 0; i < 2000 && !ret; i++) {
		ret = put(f, off);
		off = (off + RECORD) % IMAGE_SIZE;
		if (!ret && __atomic_load_n(&helper_calls, __ATOMIC_SEQ_CST))
			sleep_ms(5);
	}
	assert_int_equal(ret, -EIO);
	assert_int_equal(put(f, 0), -EIO);
	why[0] = '\0';
	assert_int_equal(disk_receive__sync(&f->r, true, why, sizeof(why)), -EIO);
	assert_non_null(strstr(why, "disk 0: cannot sync its image"));
}

static void put_fill(struct fx *f, uint32_t kind, uint64_t off, uint64_t len, uint8_t byte)
{
	struct stream_disk d = {.disk = 0, .kind = kind, .offset = off, .length = len};

	if (kind == STREAM_DISK_DATA) {
		assert_true(len <= RECORD);
		memset(f->data, byte, len);
		d.data = f->data;
	}
	assert_int_equal(apply_read(f, &d), 0);
}

static void assert_bytes(struct fx *f, uint64_t off, uint64_t len, uint8_t byte)
{
	uint8_t *buf = malloc(len);

	assert_non_null(buf);
	assert_int_equal(pread(f->fd, buf, len, (off_t)off), (ssize_t)len);
	for (uint64_t i = 0; i < len; i++)
		if (buf[i] != byte)
			fail_msg("byte %llu is 0x%x, not 0x%x", (unsigned long long)(off + i),
				 buf[i], byte);
	free(buf);
}

/*
 * More records than the queue holds, later ones over earlier ones: the image is as the
 * stream said, in its order, once the sync has waited for the writer; by the writer.
 */
static void test_writes_in_stream_order(void **state)
{
	struct fx *f = *state;
	char why[256];
	int i;

	for (i = 0; i < 3 * DISK_RECEIVE_QUEUE; i++)
		put_fill(f, STREAM_DISK_DATA, (uint64_t)i * RECORD, RECORD, (uint8_t)(i + 1));
	put_fill(f, STREAM_DISK_ZERO, RECORD / 2, 2 * RECORD, 0);
	put_fill(f, STREAM_DISK_DATA, RECORD, 4096, 0xee);
	put_fill(f, STREAM_DISK_DATA, 5 * RECORD + 512, 512, 0xdd);
	assert_int_equal(disk_receive__sync(&f->r, true, why, sizeof(why)), 0);
	assert_true(writer_calls >= 3 * DISK_RECEIVE_QUEUE + 2);
	assert_bytes(f, 0, RECORD / 2, 1);
	assert_bytes(f, RECORD / 2, RECORD / 2, 0);
	assert_bytes(f, RECORD, 4096, 0xee);
	assert_bytes(f, RECORD + 4096, RECORD - 4096, 0);
	assert_bytes(f, 2 * RECORD + RECORD / 2, RECORD / 2, 3);
	assert_bytes(f, 5 * RECORD, 512, 6);
	assert_bytes(f, 5 * RECORD + 512, 512, 0xdd);
	assert_bytes(f, 5 * RECORD + 1024, RECORD - 1024, 6);
	assert_bytes(f, (3 * DISK_RECEIVE_QUEUE - 1) * RECORD, RECORD, 3 * DISK_RECEIVE_QUEUE);
	/* Named after the hand-over: the writer has nothing left to do and ends. */
	assert_true(f->r.writer_running);
	assert_int_equal(disk_receive__link(&f->r, why, sizeof(why)), 0);
	assert_false(f->r.writer_running);
}

/* A write that fails in the writer: a later record and the sync say so. */
static void test_write_error_fails_the_image(void **state)
{
	struct fx *f = *state;
	char why[256] = "";
	int ret = 0, i;

	__atomic_store_n(&writer_fail, 1, __ATOMIC_SEQ_CST);
	for (i = 0; i < 1000 && !ret; i++) {
		ret = put(f, (uint64_t)(i % 8) * RECORD);
		if (!ret)
			sleep_ms(5);
	}
	assert_int_equal(ret, -EIO);
	assert_int_equal(disk_receive__sync(&f->r, true, why, sizeof(why)), -EIO);
	assert_non_null(strstr(why, "disk 0: cannot write its image"));
}

/*
 * With the reader given, the payload buffer the record was read into is the one
 * written from: the reader reads the next record into another.
 */
static void test_takes_the_readers_buffer(void **state)
{
	struct fx *f = *state;
	struct stream_io out, in;
	struct stream_writer w;
	struct stream_reader rd;
	struct stream_record rec;
	struct stream_disk d;
	char why[256];

	begin_stream(&out, &w);
	memset(f->data, 0x11, RECORD);
	assert_int_equal(stream__write_disk(&w, 0, STREAM_DISK_DATA, 0, RECORD, f->data), 0);
	memset(f->data, 0x22, RECORD);
	assert_int_equal(stream__write_disk(&w, 0, STREAM_DISK_DATA, RECORD, RECORD, f->data), 0);
	stream__writer_exit(&w);
	read_past_config(&out, &in, &rd);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(stream__read_record(&rd, &rec), 0);
		assert_int_equal(stream__disk_decode(rec.payload, rec.length, &d, why, sizeof(why)),
				 0);
		assert_int_equal(disk_receive__apply(&f->r, &d, &rd), 0);
		/* The reader has another buffer now: the one the record is in is the writer's. */
		assert_ptr_not_equal(rd.buf, rec.payload);
	}
	assert_int_equal(disk_receive__sync(&f->r, true, why, sizeof(why)), 0);
	stream__reader_exit(&rd);
	stream_io__exit(&out);
	assert_bytes(f, 0, RECORD, 0x11);
	assert_bytes(f, RECORD, RECORD, 0x22);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_flushed_while_it_comes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_helper_flushes_the_guests_writes_after_done, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_helper_error_fails_the_image, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_writes_in_stream_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_error_fails_the_image, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_takes_the_readers_buffer, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
