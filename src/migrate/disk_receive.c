// SPDX-License-Identifier: GPL-2.0
/* The destination's disk images sent through the stream (include/godwit/disk_receive.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "godwit/disk_receive.h"
#include "godwit/log.h"
#include "godwit/stream_check.h"

static void *writer_main(void *arg);

/* DIR without its trailing slashes (a lone "/" stays). */
static void strip_slashes(char *s)
{
	size_t n = strlen(s);

	while (n > 1 && s[n - 1] == '/')
		s[--n] = '\0';
}

int disk_receive__init(struct disk_receive *r, const char *dir)
{
	unsigned int i;

	memset(r, 0, sizeof(*r));
	r->dirfd = -1;
	for (i = 0; i < VM_MAX_DISKS; i++)
		r->d[i].img.fd = r->d[i].flush_fd = -1;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	pthread_cond_init(&r->wcond, NULL);
	pthread_cond_init(&r->room, NULL);
	if (!dir)
		return 0;
	if (strlen(dir) >= sizeof(r->dir) || !realpath(dir, r->real)) {
		pr_err("--disk-dir %s: %s", dir, strerror(errno ? errno : ENAMETOOLONG));
		return -EINVAL;
	}
	snprintf(r->dir, sizeof(r->dir), "%s", dir);
	strip_slashes(r->dir);
	r->dirfd = open(r->real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r->dirfd < 0) {
		pr_err("--disk-dir %s: %s", dir, strerror(errno));
		return -errno;
	}
	return 0;
}

/*
 * The file name disk_to names in our directory, or NULL: a bare name, or DIR/name
 * with DIR the directory as given or resolved. The peer's path is only compared,
 * never resolved: no symlink of its choosing is followed.
 */
static const char *name_in_dir(const struct disk_receive *r, const char *disk_to)
{
	const char *slash = strrchr(disk_to, '/'), *name = slash ? slash + 1 : disk_to;
	size_t dirlen = slash ? (size_t)(slash - disk_to) : 0;
	const char *p;

	if (!*name || !strcmp(name, ".") || !strcmp(name, "..") || strlen(name) > NAME_MAX)
		return NULL;
	for (p = name; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return NULL;
	if (!slash)
		return name;
	/* "/name" names a file in "/" */
	if (!dirlen)
		return !strcmp(r->dir, "/") || !strcmp(r->real, "/") ? name : NULL;
	if ((strlen(r->dir) == dirlen && !strncmp(r->dir, disk_to, dirlen)) ||
	    (strlen(r->real) == dirlen && !strncmp(r->real, disk_to, dirlen)))
		return name;
	return NULL;
}

/*
 * The helper flushes through a description of its own: each open file description is
 * told of a writeback error once, so an error its fdatasync sees is still reported to
 * DONE's on the image's own descriptor. -1 if /proc is not there (no helper then).
 */
static int open_again(int fd)
{
	char proc[64];
	int ret;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	ret = open(proc, O_RDONLY | O_CLOEXEC);
	if (ret < 0)
		pr_debug("no early flush of the image: %s: %s", proc, strerror(errno));
	return ret;
}

int disk_receive__create(struct disk_receive *r, uint32_t disk, const char *disk_to, uint64_t size,
			 int *fd, char *path, size_t pathlen, char *why, size_t whylen)
{
	struct disk_incoming *in = &r->d[disk];
	const char *name;
	struct stat st;
	int ret, dup_fd;

	if (r->dirfd < 0) {
		snprintf(why, whylen,
			 "disk %u's image comes in the stream (to %s): this host "
			 "takes disk images only with --disk-dir DIR",
			 disk, disk_to);
		return -EPERM;
	}
	name = name_in_dir(r, disk_to);
	if (disk >= VM_MAX_DISKS || in->in || !name) {
		snprintf(why, whylen,
			 "disk %u's image may not go to %s: only a file name in "
			 "--disk-dir %s",
			 disk, disk_to, r->dir);
		return -EPERM;
	}
	snprintf(path, pathlen, "%s/%s", r->real, name);
	if (!r->writer_running) {
		ret = -pthread_create(&r->writer, NULL, writer_main, r);
		if (ret) {
			snprintf(why, whylen,
				 "disk %u: cannot start the thread that writes its "
				 "image: %s",
				 disk, strerror(-ret));
			return ret;
		}
		pthread_setname_np(r->writer, "disk-write");
		r->writer_running = true;
	}
	if (!fstatat(r->dirfd, name, &st, AT_SYMLINK_NOFOLLOW)) {
		snprintf(why, whylen,
			 "disk %u: %s exists: the move makes a new file, it "
			 "overwrites none",
			 disk, path);
		return -EEXIST;
	}
	*fd = openat(r->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (*fd < 0) {
		ret = -errno;
		snprintf(why, whylen, "disk %u: cannot create its image in %s: %s", disk, r->real,
			 strerror(-ret));
		return ret;
	}
	if (ftruncate(*fd, (off_t)size) || fstat(*fd, &st) || (dup_fd = dup(*fd)) < 0) {
		ret = -errno;
		snprintf(why, whylen, "disk %u: cannot make its image %llu bytes large: %s", disk,
			 (unsigned long long)size, strerror(-ret));
		close(*fd);
		return ret;
	}
	*in = (struct disk_incoming){.in = true,
				     .dev = st.st_dev,
				     .ino = st.st_ino,
				     .img = {.fd = dup_fd, .size = size},
				     .flush_fd = open_again(dup_fd)};
	snprintf(in->name, sizeof(in->name), "%s", name);
	snprintf(in->path, sizeof(in->path), "%s", path);
	in->img.path = in->path;
	return 0;
}

/* ---- the flushing helper -------------------------------------------------------- */

/*
 * Measured on the 2-core host (docs/migration-flow.md, "Figures"): fdatasync of an
 * image whose pages are already written back still takes most of the time a cold one
 * does, so the device's cache flush, not the writeback, is what DONE waited for, and
 * starting writeback early (sync_file_range) alone left DONE's wait as long. Flushed
 * again and again from another thread while the stream comes, the device works on one
 * part while the next arrives.
 */
/* With the lock: in's data waiting for a flush is worth one now. */
static bool flush_due(const struct disk_incoming *in)
{
	return in->in && !in->flush_err && in->flush_fd >= 0 &&
	       in->unflushed >= (in->done ? DISK_RECEIVE_TAIL_STEP : DISK_RECEIVE_FLUSH_STEP);
}

static void *flusher_main(void *arg)
{
	struct disk_receive *r = arg;
	struct disk_incoming *in;
	unsigned int i;
	int ret;

	pthread_mutex_lock(&r->lock);
	while (!r->flusher_stop) {
		for (i = 0, in = NULL; i < VM_MAX_DISKS && !in; i++)
			if (flush_due(&r->d[i]))
				in = &r->d[i];
		if (!in) {
			pthread_cond_wait(&r->cond, &r->lock);
			continue;
		}
		in->unflushed = 0;
		pthread_mutex_unlock(&r->lock);
		do
			ret = fdatasync(in->flush_fd) ? -errno : 0;
		while (ret == -EINTR);
		pthread_mutex_lock(&r->lock);
		r->flushes++;
		if (ret) {
			pr_debug("%s: cannot flush it: %s", in->path, strerror(-ret));
			in->flush_err = ret;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* One of the two helpers is told to end once its work is done, and waited for. */
static void join_helper(struct disk_receive *r, pthread_t t, bool *stop, pthread_cond_t *wake,
			bool *running)
{
	if (!*running)
		return;
	pthread_mutex_lock(&r->lock);
	*stop = true;
	pthread_cond_signal(wake);
	pthread_mutex_unlock(&r->lock);
	pthread_join(t, NULL);
	*running = false;
}

static void stop_flusher(struct disk_receive *r)
{
	bool ran = r->flusher_running;

	join_helper(r, r->flusher, &r->flusher_stop, &r->cond, &r->flusher_running);
	if (ran)
		pr_debug("disks: flushed %llu times while they came",
			 (unsigned long long)r->flushes);
}

/* len bytes of data written into in: the helper is told once a step's worth waits. */
static void written(struct disk_receive *r, struct disk_incoming *in, uint64_t len)
{
	pthread_mutex_lock(&r->lock);
	in->unflushed += len;
	if (flush_due(in) && !r->flusher_stop) {
		if (!r->flusher_running && !r->flusher_failed) {
			r->flusher_running = !pthread_create(&r->flusher, NULL, flusher_main, r);
			r->flusher_failed = !r->flusher_running;
			if (r->flusher_running)
				pthread_setname_np(r->flusher, "disk-flush");
			else
				pr_debug("no flushing helper: the images are flushed at DONE");
		}
		pthread_cond_signal(&r->cond);
	}
	pthread_mutex_unlock(&r->lock);
}

/* ---- the writer ----------------------------------------------------------------- */

/*
 * The receiving thread reads, hashes and checks a record while this one writes the
 * records before it into the page cache: on the 2-core host shared with other work
 * the receiving thread was the slower side, runnable but waiting for a CPU most of the
 * move, and the write was 44 % of its CPU (docs/migration-flow.md, "Figures").
 */
static int write_one(struct disk_receive *r, const struct disk_write *e)
{
	int ret;

	if (e->kind == STREAM_DISK_ZERO)
		return disk__write_zeroes(&e->in->img, e->offset, e->length, true);
	ret = disk__pwrite(&e->in->img, e->data, e->length, e->offset);
	if (!ret)
		written(r, e->in, e->length);
	return ret;
}

/*
 * With the lock: a payload buffer done with is kept for the reader, or freed (one the
 * reader had grown for a larger record too: the spares stay a record's size).
 */
static void give_back(struct disk_receive *r, uint8_t *buf, size_t cap)
{
	if (buf && cap <= STREAM_DISK_MAX_LEN + 1 && r->nr_spare < ARRAY_SIZE(r->spare)) {
		r->spare[r->nr_spare].buf = buf;
		r->spare[r->nr_spare++].cap = cap;
	} else {
		free(buf);
	}
}

static void *writer_main(void *arg)
{
	struct disk_receive *r = arg;
	struct disk_write e;
	int ret;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		while (!r->q_len && !r->writer_stop)
			pthread_cond_wait(&r->wcond, &r->lock);
		if (!r->q_len)
			break;
		e = r->q[r->q_head];
		/* After a failed write the rest are dropped: the move fails anyway. */
		ret = r->write_err;
		pthread_mutex_unlock(&r->lock);
		ret = ret ? 0 : write_one(r, &e);
		pthread_mutex_lock(&r->lock);
		if (ret && !r->write_err) {
			r->write_err = ret;
			r->write_err_disk = (uint32_t)(e.in - r->d);
		}
		give_back(r, e.buf, e.cap);
		r->q_head = (r->q_head + 1) % DISK_RECEIVE_QUEUE;
		r->q_len--;
		pthread_cond_broadcast(&r->room);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* What is queued is written (the writer goes on to the end of the queue first). */
static void stop_writer(struct disk_receive *r)
{
	join_helper(r, r->writer, &r->writer_stop, &r->wcond, &r->writer_running);
}

static void drain(struct disk_receive *r)
{
	pthread_mutex_lock(&r->lock);
	while (r->q_len)
		pthread_cond_wait(&r->room, &r->lock);
	pthread_mutex_unlock(&r->lock);
}

/* With the lock: e gets d's data in the reader's buffer; rd gets a spare in its place. */
static int take_data(struct disk_receive *r, struct disk_write *e, const struct stream_disk *d,
		     struct stream_reader *rd)
{
	size_t cap = STREAM_DISK_MAX_LEN + 1, have = 0;
	uint8_t *buf = NULL, *p;

	if (!rd)
		return -EINVAL;
	if (r->nr_spare) {
		buf = r->spare[--r->nr_spare].buf;
		have = r->spare[r->nr_spare].cap;
	}
	if (have < cap) {
		p = realloc(buf, cap);
		if (!p) {
			give_back(r, buf, have);
			return -ENOMEM;
		}
		buf = p;
	}
	e->buf = stream__reader_swap_buf(rd, buf, cap, &e->cap);
	e->data = d->data;
	if (!e->buf || (uintptr_t)d->data < (uintptr_t)e->buf || d->length > e->cap ||
	    (uintptr_t)d->data - (uintptr_t)e->buf > e->cap - d->length) {
		/* Not the reader's buffer: a caller's bug, never the peer's doing. */
		stream__reader_swap_buf(rd, e->buf, e->cap, &cap);
		give_back(r, buf, cap);
		return -EINVAL;
	}
	return 0;
}

static int enqueue(struct disk_receive *r, struct disk_incoming *in, const struct stream_disk *d,
		   struct stream_reader *rd)
{
	struct disk_write *e;
	int ret;

	pthread_mutex_lock(&r->lock);
	while (r->q_len == DISK_RECEIVE_QUEUE && !r->write_err)
		pthread_cond_wait(&r->room, &r->lock);
	ret = r->write_err ? r->write_err : in->flush_err;
	e = &r->q[(r->q_head + r->q_len) % DISK_RECEIVE_QUEUE];
	if (!ret) {
		*e = (struct disk_write){
		    .in = in, .kind = d->kind, .offset = d->offset, .length = d->length};
		if (d->kind == STREAM_DISK_DATA)
			ret = take_data(r, e, d, rd);
	}
	if (!ret) {
		r->q_len++;
		pthread_cond_signal(&r->wcond);
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int disk_receive__apply(struct disk_receive *r, const struct stream_disk *d,
			struct stream_reader *rd)
{
	struct disk_incoming *in;

	if (d->disk >= VM_MAX_DISKS || !r->d[d->disk].in)
		return -EINVAL;
	in = &r->d[d->disk];
	switch (d->kind) {
	case STREAM_DISK_DATA:
	case STREAM_DISK_ZERO:
		return enqueue(r, in, d, rd);
	case STREAM_DISK_DONE:
		pthread_mutex_lock(&r->lock);
		in->done = true;
		pthread_mutex_unlock(&r->lock);
		return 0;
	default:
		return 0;
	}
}

/* Each incoming image's fdatasync on its own descriptor, then the helper's errors. */
static int sync_images(struct disk_receive *r, bool last, char *why, size_t whylen)
{
	unsigned int i;
	int ret;

	for (i = 0; i < VM_MAX_DISKS; i++) {
		if (r->d[i].in && (ret = disk__flush(&r->d[i].img))) {
			snprintf(why, whylen, "disk %u: cannot sync its image: %s", i,
				 strerror(-ret));
			return ret;
		}
	}
	/*
	 * Stopped only now: a flush of its own still under way is joined by ours above
	 * instead of waited for before it (at END, in the pause).
	 */
	if (last)
		stop_flusher(r);
	for (i = 0; i < VM_MAX_DISKS; i++) {
		pthread_mutex_lock(&r->lock);
		ret = r->d[i].in ? r->d[i].flush_err : 0;
		pthread_mutex_unlock(&r->lock);
		if (ret) {
			snprintf(why, whylen, "disk %u: cannot sync its image: %s", i,
				 strerror(-ret));
			return ret;
		}
	}
	return 0;
}

int disk_receive__sync(struct disk_receive *r, bool last, char *why, size_t whylen)
{
	unsigned int i;
	int ret;

	drain(r);
	pthread_mutex_lock(&r->lock);
	ret = r->write_err;
	i = r->write_err_disk;
	pthread_mutex_unlock(&r->lock);
	if (ret) {
		snprintf(why, whylen, "disk %u: cannot write its image: %s", i, strerror(-ret));
		return ret;
	}
	return sync_images(r, last, why, whylen);
}

bool disk_receive__verifies(const struct disk_receive *r, const struct stream_check *chk)
{
	for (unsigned int i = 0; i < VM_MAX_DISKS; i++)
		if (r->d[i].in && chk->disk_has_digest[i])
			return true;
	return false;
}

int disk_receive__verify(struct disk_receive *r, const struct stream_check *chk, char *why,
			 size_t whylen)
{
	uint64_t digest;
	unsigned int i;
	int ret;

	for (i = 0; i < VM_MAX_DISKS; i++) {
		if (!r->d[i].in || !chk->disk_has_digest[i])
			continue;
		ret = disk__digest(&r->d[i].img, r->d[i].img.size, &digest);
		if (ret) {
			snprintf(why, whylen, "disk %u: cannot hash its image: %s", i,
				 strerror(-ret));
			return ret;
		}
		if (digest != chk->disk_digest[i]) {
			snprintf(why, whylen,
				 "disk %u verification failed: its image differs from "
				 "the source's",
				 i);
			return -EBADMSG;
		}
		pr_info("disk %u verified: its image matches the source's", i);
	}
	return 0;
}

/* An unnamed file gets its name: linkat fails with EEXIST rather than replace one. */
static int link_one(struct disk_receive *r, struct disk_incoming *in)
{
	char proc[64];

	if (!linkat(in->img.fd, "", r->dirfd, in->name, AT_EMPTY_PATH))
		return 0;
	if (errno != ENOENT && errno != EPERM)
		return -errno;
	/* Without CAP_DAC_READ_SEARCH: through /proc, as the kernel documents for O_TMPFILE. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", in->img.fd);
	return linkat(AT_FDCWD, proc, r->dirfd, in->name, AT_SYMLINK_FOLLOW) ? -errno : 0;
}

int disk_receive__link(struct disk_receive *r, char *why, size_t whylen)
{
	unsigned int i;
	int ret;

	/* After END: no record is left to write, and the VM may run here for long. */
	stop_writer(r);
	for (i = 0; i < VM_MAX_DISKS; i++) {
		struct disk_incoming *in = &r->d[i];

		if (!in->in)
			continue;
		ret = link_one(r, in);
		if (ret) {
			snprintf(why, whylen, "disk %u: cannot name its image %s: %s", i, in->path,
				 strerror(-ret));
			return ret;
		}
		in->linked = true;
	}
	if (r->dirfd >= 0 && fsync(r->dirfd)) {
		ret = -errno;
		snprintf(why, whylen, "cannot sync %s: %s", r->real, strerror(-ret));
		return ret;
	}
	return 0;
}

void disk_receive__exit(struct disk_receive *r)
{
	unsigned int i;
	struct stat st;

	stop_writer(r);
	stop_flusher(r);
	while (r->nr_spare)
		free(r->spare[--r->nr_spare].buf);
	for (i = 0; i < VM_MAX_DISKS; i++) {
		struct disk_incoming *in = &r->d[i];

		/* Only the file we made: the name may have been given to another since. */
		if (in->linked && !r->keep &&
		    !fstatat(r->dirfd, in->name, &st, AT_SYMLINK_NOFOLLOW) &&
		    st.st_dev == in->dev && st.st_ino == in->ino && unlinkat(r->dirfd, in->name, 0))
			pr_warn("cannot remove %s: %s", in->path, strerror(errno));
		if (in->img.fd >= 0)
			close(in->img.fd);
		if (in->flush_fd >= 0)
			close(in->flush_fd);
		in->img.fd = in->flush_fd = -1;
		in->in = in->linked = false;
	}
	if (r->dirfd >= 0)
		close(r->dirfd);
	r->dirfd = -1;
	pthread_cond_destroy(&r->room);
	pthread_cond_destroy(&r->wcond);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
}
