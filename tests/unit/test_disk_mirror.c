// SPDX-License-Identifier: GPL-2.0
/*
 * The disk mirror (src/backends/disk_mirror.c) on real files: the pass copies data and
 * leaves holes and zero blocks as holes; guest requests issued by another thread while
 * the pass runs (writes, discards, write-zeroes, flushes, many of them on the piece
 * being copied) leave the two files equal; during the pass a guest write reaches the
 * new file only through the queue, at the copy's next step, and once the pass has
 * ended it goes to both files itself; the refusals (existing file, the image
 * itself, a missing directory); the new file's lock; its removal, and only of the file
 * the mirror made. The remote form (migration without shared storage): a sink that
 * writes into a file stands for the destination; the guest's requests during and after
 * the pass reach it in order through the bounded queue, which makes a request wait
 * when full, and lets none wait once unbound (the pause) or closed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "godwit/disk_mirror.h"

#define SIZE (32 * MiB)

struct fx {
	char dir[64];
	char src_path[96];
	char dst_path[96];
	struct disk src;
	struct disk_mirror m;
};

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: the test's own random numbers, repeatable by seed. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

static void fill_random(uint8_t *p, size_t len, uint64_t *seed)
{
	for (size_t i = 0; i + 8 <= len; i += 8) {
		uint64_t v = rng_next(seed);

		memcpy(p + i, &v, 8);
	}
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/var/tmp/godwit-mirror-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->src_path, sizeof(f->src_path), "%s/src.img", f->dir);
	snprintf(f->dst_path, sizeof(f->dst_path), "%s/dst.img", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	disk__close(&f->src);
	unlink(f->src_path);
	unlink(f->dst_path);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* A sparse source: data at a few places, a written run of zeros, holes elsewhere. */
static void make_src(struct fx *f, bool random_all)
{
	uint8_t *buf = malloc(MiB);
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	int fd = open(f->src_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	uint64_t off;

	assert_non_null(buf);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, SIZE), 0);
	for (off = 0; off < SIZE; off += MiB) {
		if (!random_all && off != 0 && off != 10 * MiB && off != SIZE - MiB)
			continue;
		fill_random(buf, MiB, &seed);
		assert_int_equal(pwrite(fd, buf, MiB, (off_t)off), (ssize_t)MiB);
	}
	if (!random_all) {
		memset(buf, 0, MiB);
		assert_int_equal(pwrite(fd, buf, MiB, 20 * MiB), (ssize_t)MiB);
		/* Zeros inside a data piece too. */
		assert_int_equal(pwrite(fd, buf, 64 * KiB, 10 * MiB + 128 * KiB),
				 (ssize_t)(64 * KiB));
	}
	close(fd);
	free(buf);
	assert_int_equal(disk__open(&f->src, f->src_path, false, true), 0);
}

static void run_pass(struct fx *f)
{
	char err[256];
	bool done = false;
	int steps = 0;

	while (!done) {
		assert_int_equal(disk_mirror__copy_step(&f->m, &done, err, sizeof(err)), 0);
		assert_true(++steps < 100000);
	}
}

static void assert_same(const char *a, const char *b)
{
	uint8_t *x = malloc(MiB), *y = malloc(MiB);
	int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
	struct stat sa, sb;
	ssize_t n;

	assert_true(fa >= 0 && fb >= 0);
	assert_int_equal(fstat(fa, &sa), 0);
	assert_int_equal(fstat(fb, &sb), 0);
	assert_int_equal(sa.st_size, sb.st_size);
	while ((n = read(fa, x, MiB)) > 0) {
		assert_int_equal(read(fb, y, (size_t)n), n);
		assert_memory_equal(x, y, (size_t)n);
	}
	close(fa);
	close(fb);
	free(x);
	free(y);
}

/*
 * disk__digest (--verify of a disk sent in a migration): the same for the sparse source
 * and its copy, and the XXH3-64 of all the bytes, holes read as zeros.
 */
static void assert_digest_is_of_the_bytes(struct fx *f)
{
	uint8_t *all = malloc(SIZE);
	uint64_t a, b;
	struct disk dst;

	assert_non_null(all);
	assert_int_equal(disk__pread(&f->src, all, SIZE, 0), 0);
	assert_int_equal(disk__digest(&f->src, SIZE, &a), 0);
	assert_int_equal(a, XXH3_64bits(all, SIZE));
	dst = (struct disk){.fd = open(f->dst_path, O_RDONLY), .readonly = true, .size = SIZE};
	assert_true(dst.fd >= 0);
	assert_int_equal(disk__digest(&dst, SIZE, &b), 0);
	assert_int_equal(a, b);
	all[SIZE - 1] ^= 1;
	assert_int_not_equal(a, XXH3_64bits(all, SIZE));
	close(dst.fd);
	free(all);
}

static void test_pass_copies_data_and_keeps_holes(void **state)
{
	struct fx *f = *state;
	struct disk_mirror_progress p;
	struct stat st;
	char err[256];
	int fd;

	make_src(f, false);
	assert_int_equal(disk_mirror__create(&f->m, &f->src, f->dst_path, err, sizeof(err)), 0);
	run_pass(f);
	assert_int_equal(disk_mirror__sync(&f->m, err, sizeof(err)), 0);
	disk_mirror__progress(&f->m, &p);
	assert_int_equal(p.copied, SIZE);
	/* Only the data pieces were read: 3 MiB of data and the 1 MiB of written zeros. */
	assert_true(p.data_bytes <= 4 * MiB);
	assert_same(f->src_path, f->dst_path);
	assert_digest_is_of_the_bytes(f);

	fd = open(f->dst_path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	/* 3 MiB of data less the 64 KiB of zeros in it, in 512-byte blocks. */
	assert_true((uint64_t)st.st_blocks * 512 <= 3 * MiB);
	assert_true(lseek(fd, 20 * MiB, SEEK_DATA) >= (off_t)(SIZE - MiB));
	assert_true(lseek(fd, 10 * MiB + 128 * KiB, SEEK_DATA) >= (off_t)(10 * MiB + 192 * KiB));
	close(fd);
	disk_mirror__destroy(&f->m);
	/* Not taken: the copy is removed. */
	assert_int_equal(access(f->dst_path, F_OK), -1);
}

struct writer {
	struct fx *f;
	bool stop;
	unsigned int ops;
	bool waited; /* step_with_writer's wait at the middle of the pass is over */
};

/* The I/O thread's part: requests at random, half of them next to the pass's position. */
static void *writer_thread(void *arg)
{
	struct writer *w = arg;
	struct disk_mirror *m = &w->f->m;
	struct disk_mirror_progress p;
	uint64_t seed = 12345, off, len, r;
	uint8_t *buf = malloc(256 * KiB);
	struct iovec iov[3];
	unsigned int after = 0;

	assert_non_null(buf);
	while (after < 200) {
		if (__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE))
			after++;
		disk_mirror__progress(m, &p);
		r = rng_next(&seed);
		len = ((r % 64) + 1) * 512;
		off = (rng_next(&seed) % (SIZE / 512)) * 512;
		if (!(r & 1))
			off = (p.copied + off % (2 * MiB)) & ~511ULL;
		if (off >= MiB && !(r & 1))
			off -= MiB;
		off = MIN(off, SIZE - 64 * KiB);
		switch ((r >> 8) % 8) {
		case 0:
			assert_int_equal(disk_mirror__discard(m, off & ~4095ULL, 64 * KiB), 0);
			break;
		case 1:
			assert_int_equal(disk_mirror__write_zeroes(m, off, len, r & 0x1000), 0);
			break;
		case 2:
			assert_int_equal(disk_mirror__flush(m), 0);
			break;
		default:
			fill_random(buf, (size_t)len, &seed);
			/* Three segments of uneven lengths. */
			iov[0] = (struct iovec){buf, 512};
			iov[1] = (struct iovec){buf + 512, len > 1024 ? len - 1024 : 0};
			iov[2] =
			    (struct iovec){buf + 512 + iov[1].iov_len, len - 512 - iov[1].iov_len};
			assert_int_equal(disk_mirror__pwritev(m, iov, 3, off), 0);
		}
		__atomic_add_fetch(&w->ops, 1, __ATOMIC_RELEASE);
	}
	free(buf);
	return NULL;
}

/*
 * One piece of the pass; at its middle, until the writer has made 50 requests more (at
 * most 30 s): requests land during the pass however the threads are scheduled (a
 * loaded host once ran the whole pass before the writer's first). drain: the remote
 * form's queue, which the writer may wait on.
 */
static void step_with_writer(struct fx *f, struct writer *w, bool *done, bool drain)
{
	struct disk_mirror_progress p;
	unsigned int want;
	time_t deadline;
	char err[256];

	disk_mirror__progress(&f->m, &p);
	assert_int_equal(disk_mirror__copy_step(&f->m, done, err, sizeof(err)), 0);
	if (p.copied >= SIZE / 2 || w->waited)
		return;
	disk_mirror__progress(&f->m, &p);
	if (p.copied < SIZE / 2)
		return;
	w->waited = true;
	want = __atomic_load_n(&w->ops, __ATOMIC_ACQUIRE) + 50;
	deadline = time(NULL) + 30;
	while (__atomic_load_n(&w->ops, __ATOMIC_ACQUIRE) < want && time(NULL) < deadline) {
		if (drain)
			assert_int_equal(disk_mirror__drain(&f->m), 0);
		sched_yield();
	}
}

static void test_guest_requests_during_the_pass(void **state)
{
	struct fx *f = *state;
	struct writer w = {.f = f};
	struct disk_mirror_progress p;
	pthread_t t;
	char err[256];
	bool done = false;

	make_src(f, true);
	assert_int_equal(disk_mirror__create(&f->m, &f->src, f->dst_path, err, sizeof(err)), 0);
	assert_int_equal(pthread_create(&t, NULL, writer_thread, &w), 0);
	while (!done)
		step_with_writer(f, &w, &done, false);
	__atomic_store_n(&w.stop, true, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	assert_int_equal(disk_mirror__error(&f->m), 0);
	disk_mirror__progress(&f->m, &p);
	assert_true(p.mirrored_requests > 0);
	assert_true(w.ops > 200);
	assert_same(f->src_path, f->dst_path);
	disk_mirror__destroy(&f->m);
}

static void pwrite_byte(struct disk_mirror *m, uint8_t byte, uint64_t off)
{
	static uint8_t buf[8 * KiB];
	struct iovec iov = {buf, sizeof(buf)};

	memset(buf, byte, sizeof(buf));
	assert_int_equal(disk_mirror__pwritev(m, &iov, 1, off), 0);
}

static uint8_t dst_byte(struct fx *f, uint64_t off)
{
	uint8_t b = 0;

	assert_int_equal(pread(f->m.dst.fd, &b, 1, (off_t)off), 1);
	return b;
}

/*
 * The I/O thread never writes the new file while the pass runs: a write below the
 * copy's position is queued (and the source has it when the request returns); the
 * copy's next step applies it, and the queue is empty when the pass has ended. From
 * then on a write goes to both files before it returns.
 */
static void test_writes_queue_during_the_pass(void **state)
{
	struct fx *f = *state;
	struct disk_mirror_progress p;
	char err[256];
	bool done = false;
	uint8_t b = 0;

	make_src(f, true);
	assert_int_equal(disk_mirror__create(&f->m, &f->src, f->dst_path, err, sizeof(err)), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(disk_mirror__copy_step(&f->m, &done, err, sizeof(err)), 0);
	disk_mirror__progress(&f->m, &p);
	assert_true(p.copied >= 16 * KiB && p.copied < SIZE);

	pwrite_byte(&f->m, 'q', 0);
	assert_int_equal(f->m.queued, 8 * KiB);
	assert_int_equal(pread(f->src.fd, &b, 1, 0), 1);
	assert_int_equal(b, 'q');
	assert_int_not_equal(dst_byte(f, 0), 'q');
	assert_int_equal(disk_mirror__copy_step(&f->m, &done, err, sizeof(err)), 0);
	assert_int_equal(f->m.queued, 0);
	assert_int_equal(dst_byte(f, 0), 'q');

	pwrite_byte(&f->m, 'r', 0);
	while (!done)
		assert_int_equal(disk_mirror__copy_step(&f->m, &done, err, sizeof(err)), 0);
	assert_null(f->m.head);
	assert_int_equal(dst_byte(f, 0), 'r');
	pwrite_byte(&f->m, 's', SIZE - 8 * KiB);
	assert_int_equal(f->m.queued, 0);
	assert_int_equal(dst_byte(f, SIZE - 8 * KiB), 's');
	assert_int_equal(disk_mirror__error(&f->m), 0);
	assert_same(f->src_path, f->dst_path);
	disk_mirror__destroy(&f->m);
}

static void test_refusals(void **state)
{
	struct fx *f = *state;
	char err[256], link_path[128], missing[128];
	int fd;

	make_src(f, false);
	fd = open(f->dst_path, O_RDWR | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "keep", 4), 4);
	close(fd);
	assert_int_equal(disk_mirror__create(&f->m, &f->src, f->dst_path, err, sizeof(err)),
			 -EEXIST);
	assert_non_null(strstr(err, "exists"));
	assert_int_equal(access(f->dst_path, F_OK), 0);
	unlink(f->dst_path);

	/* The image itself, under another name. */
	snprintf(link_path, sizeof(link_path), "%s/same.img", f->dir);
	assert_int_equal(link(f->src_path, link_path), 0);
	assert_int_equal(disk_mirror__create(&f->m, &f->src, link_path, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "own image"));
	unlink(link_path);

	snprintf(missing, sizeof(missing), "%s/no/such/dir.img", f->dir);
	assert_int_equal(disk_mirror__create(&f->m, &f->src, missing, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cannot create"));
}

static void test_lock_take_and_removal(void **state)
{
	struct fx *f = *state;
	char err[256], moved[128];
	struct disk other, taken;
	int fd;

	make_src(f, false);
	assert_int_equal(disk_mirror__create(&f->m, &f->src, f->dst_path, err, sizeof(err)), 0);
	/* Locked from its creation: nobody else can use the new image. */
	assert_int_equal(disk__open(&other, f->dst_path, false, true), -EBUSY);
	run_pass(f);
	disk_mirror__take(&f->m, &taken);
	disk_mirror__destroy(&f->m);
	assert_int_equal(access(f->dst_path, F_OK), 0);
	assert_true(taken.locked);
	assert_int_equal(disk__open(&other, f->dst_path, false, true), -EBUSY);
	disk__close(&taken);
	unlink(f->dst_path);

	/* A file that replaced the partial copy is not removed. */
	assert_int_equal(disk_mirror__create(&f->m, &f->src, f->dst_path, err, sizeof(err)), 0);
	snprintf(moved, sizeof(moved), "%s/moved.img", f->dir);
	assert_int_equal(rename(f->dst_path, moved), 0);
	fd = open(f->dst_path, O_RDWR | O_CREAT, 0644);
	assert_true(fd >= 0);
	close(fd);
	disk_mirror__destroy(&f->m);
	assert_int_equal(access(f->dst_path, F_OK), 0);
	unlink(moved);
}

/* ---- the remote form ---------------------------------------------------------- */

struct sink {
	int fd; /* the destination's file */
	struct disk_mirror *m;
	uint64_t puts, data_bytes;
	size_t max_queued;    /* the most the queue held, seen at each put */
	uint64_t last_off[4]; /* the offsets of the last puts, newest last */
};

static int sink_put(void *arg, uint64_t off, uint64_t len, const void *data)
{
	struct sink *s = arg;

	pthread_mutex_lock(&s->m->lock);
	s->max_queued = MAX(s->max_queued, s->m->queued);
	pthread_mutex_unlock(&s->m->lock);
	memmove(s->last_off, s->last_off + 1, sizeof(s->last_off) - sizeof(s->last_off[0]));
	s->last_off[3] = off;
	s->puts++;
	if (!data)
		return fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
				 (off_t)len)
			   ? -errno
			   : 0;
	s->data_bytes += len;
	return pwrite(s->fd, data, len, (off_t)off) == (ssize_t)len ? 0 : -EIO;
}

static void remote_start(struct fx *f, struct sink *s, struct disk_mirror_sink *ops,
			 size_t queue_max)
{
	char err[256];

	s->fd = open(f->dst_path, O_RDWR | O_CREAT | O_EXCL, 0644);
	assert_true(s->fd >= 0);
	assert_int_equal(ftruncate(s->fd, SIZE), 0);
	s->m = &f->m;
	*ops = (struct disk_mirror_sink){.put = sink_put, .arg = s};
	assert_int_equal(
	    disk_mirror__create_remote(&f->m, &f->src, ops, queue_max, err, sizeof(err)), 0);
}

/*
 * As test_guest_requests_during_the_pass, the copy a sink's: every request the writer
 * makes while the pass runs and after it has ended reaches the copy, in order (a
 * sector written many times ends with its last data), through a queue of 256 KiB.
 */
static void test_remote_requests_during_the_pass(void **state)
{
	struct fx *f = *state;
	struct writer w = {.f = f};
	struct disk_mirror_sink ops;
	struct disk_mirror_progress p;
	struct sink s = {0};
	pthread_t t;
	bool done = false;

	make_src(f, true);
	remote_start(f, &s, &ops, 256 * KiB);
	assert_int_equal(pthread_create(&t, NULL, writer_thread, &w), 0);
	while (!done) {
		assert_int_equal(disk_mirror__drain(&f->m), 0);
		step_with_writer(f, &w, &done, true);
	}
	__atomic_store_n(&w.stop, true, __ATOMIC_RELEASE);
	/* The writer's last requests wait for room: drained until it has made them all. */
	while (pthread_tryjoin_np(t, NULL) == EBUSY)
		assert_int_equal(disk_mirror__drain(&f->m), 0);
	assert_int_equal(disk_mirror__drain(&f->m), 0);
	assert_int_equal(disk_mirror__error(&f->m), 0);
	disk_mirror__progress(&f->m, &p);
	assert_int_equal(p.copied, SIZE);
	assert_true(p.mirrored_requests > 0);
	assert_true(w.ops > 200);
	assert_true(s.max_queued <= 256 * KiB);
	assert_same(f->src_path, f->dst_path);
	disk_mirror__destroy(&f->m);
	close(s.fd);
	/* The remote form makes no file of its own: the sink's is left alone. */
	assert_int_equal(access(f->dst_path, F_OK), 0);
}

struct blocked_writer {
	struct disk_mirror *m;
	int n;	 /* writes of 8 KiB at 0, 8 KiB, ..., each with its own byte */
	int ret; /* the first failure */
	bool finished;
};

static void *blocked_writer_thread(void *arg)
{
	struct blocked_writer *b = arg;
	static uint8_t buf[8 * KiB];
	struct iovec iov;

	for (int i = 0; i < b->n && !b->ret; i++) {
		memset(buf, 'a' + i, sizeof(buf));
		iov = (struct iovec){buf, sizeof(buf)};
		b->ret = disk_mirror__pwritev(b->m, &iov, 1, (uint64_t)i * sizeof(buf));
	}
	__atomic_store_n(&b->finished, true, __ATOMIC_RELEASE);
	return NULL;
}

/* Bounded: a few seconds at most, in small sleeps. */
static void wait_queued(struct disk_mirror *m, size_t bytes)
{
	for (int i = 0; i < 5000; i++) {
		size_t q;

		pthread_mutex_lock(&m->lock);
		q = m->queued;
		pthread_mutex_unlock(&m->lock);
		if (q >= bytes)
			return;
		usleep(1000);
	}
	fail_msg("the queue never held %zu bytes", bytes);
}

/*
 * A full queue holds a write back (the guest's request does not complete) until the
 * queue is drained; the copy then gets the writes in the order they were made. Once
 * closed, nothing waits: the writes go to the source alone.
 */
static void test_remote_queue_bound_and_close(void **state)
{
	struct fx *f = *state;
	struct blocked_writer b = {.m = &f->m, .n = 4};
	struct disk_mirror_sink ops;
	struct disk_mirror_progress p;
	struct sink s = {0};
	uint8_t got[8 * KiB];
	char err[256];
	bool done = false;
	pthread_t t;

	make_src(f, false);
	remote_start(f, &s, &ops, 16 * KiB);
	while (!done)
		assert_int_equal(disk_mirror__copy_step(&f->m, &done, err, sizeof(err)), 0);
	assert_int_equal(disk_mirror__drain(&f->m), 0);
	assert_int_equal(pthread_create(&t, NULL, blocked_writer_thread, &b), 0);
	/* Two writes fill it; the third waits. */
	wait_queued(&f->m, 16 * KiB);
	assert_false(__atomic_load_n(&b.finished, __ATOMIC_ACQUIRE));
	while (!__atomic_load_n(&b.finished, __ATOMIC_ACQUIRE))
		assert_int_equal(disk_mirror__drain(&f->m), 0);
	pthread_join(t, NULL);
	assert_int_equal(b.ret, 0);
	assert_int_equal(disk_mirror__drain(&f->m), 0);
	disk_mirror__progress(&f->m, &p);
	assert_true(p.queue_waits >= 1);
	assert_true(s.max_queued <= 16 * KiB);
	assert_int_equal(s.last_off[0], 0);
	assert_int_equal(s.last_off[3], 24 * KiB);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pread(s.fd, got, sizeof(got), (off_t)i * 8 * KiB), sizeof(got));
		assert_int_equal(got[0], 'a' + i);
		assert_int_equal(got[sizeof(got) - 1], 'a' + i);
	}

	/* Unbound (the pause): the writes queue past the bound without waiting for a drain. */
	disk_mirror__unbound(&f->m);
	b = (struct blocked_writer){.m = &f->m, .n = 4};
	blocked_writer_thread(&b);
	assert_int_equal(b.ret, 0);
	assert_int_equal(f->m.queued, 32 * KiB);
	assert_int_equal(disk_mirror__drain(&f->m), 0);

	/* Closed (the move failed): writes no longer queue, nor wait, nor reach the copy. */
	disk_mirror__close(&f->m);
	b = (struct blocked_writer){.m = &f->m, .n = 8};
	blocked_writer_thread(&b);
	assert_int_equal(b.ret, 0);
	assert_null(f->m.head);
	assert_int_equal(pread(s.fd, got, sizeof(got), 0), sizeof(got));
	assert_int_equal(got[0], 'a');
	assert_int_equal(pread(f->src.fd, got, sizeof(got), 56 * KiB), sizeof(got));
	assert_int_equal(got[0], 'h');
	disk_mirror__destroy(&f->m);
	close(s.fd);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_pass_copies_data_and_keeps_holes),
	    T(test_guest_requests_during_the_pass),
	    T(test_writes_queue_during_the_pass),
	    T(test_refusals),
	    T(test_lock_take_and_removal),
	    T(test_remote_requests_during_the_pass),
	    T(test_remote_queue_bound_and_close),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
