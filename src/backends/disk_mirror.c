// SPDX-License-Identifier: GPL-2.0
/*
 * A disk image mirrored into a new file while in use (include/godwit/disk_mirror.h).
 *
 * The copy position `copied` only grows. The copy thread claims [copied, claim_end)
 * only while no guest request is in flight, and a guest request waits while it
 * overlaps the claim; so a request either lies where the claim cannot reach it until it
 * has completed on the source (the claim then reads its data), or lies below `copied`
 * and goes to both files. Only the part below `copied` goes to the new file: above it
 * the new file stays all holes until the pass, which skips holes and zero blocks.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "godwit/disk_mirror.h"
#include "godwit/log.h"

#define ZERO_BLOCK 4096
/* What a queued discard or write-zeroes counts against the queue's bound. */
#define ZERO_ENTRY_COST 64
/*
 * A guest write larger than this (its descriptors may alias one buffer many times)
 * is not copied for the queue: the move fails instead, the guest's write succeeds.
 */
#define REMOTE_MAX_REQUEST (64 * MiB)

/* A guest request below the copy's position, for a remote copy. */
struct disk_mirror_entry {
	struct disk_mirror_entry *next;
	uint64_t off, len; /* the range to send: the request's part below `copied` */
	size_t cost;	   /* against queue_max */
	bool zero;	   /* no data: the range reads as zeros */
	uint8_t data[];	   /* the whole request's data (a write) */
};

static bool all_zero(const uint8_t *p, size_t len)
{
	if (len < 16)
		return !len || (p[0] == 0 && !memcmp(p, p + 1, len - 1));
	/* The first 16 bytes zero, and each 16 equal to the 16 before them. */
	for (size_t i = 0; i < 16; i++)
		if (p[i])
			return false;
	return !memcmp(p, p + 16, len - 16);
}

static void remove_dst(struct disk_mirror *m, const char *path)
{
	struct stat st;

	if (!stat(path, &st) && st.st_dev == m->dst_dev && st.st_ino == m->dst_ino && unlink(path))
		pr_warn("cannot remove the partial copy %s: %s", path, strerror(errno));
}

static int make_dst(struct disk_mirror *m, const char *path, const struct stat *src_st, char *err,
		    size_t errlen)
{
	mode_t mode = S_ISREG(src_st->st_mode) ? src_st->st_mode & 0777 : 0600;
	struct stat st;
	int fd, ret;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(-ret));
		return ret;
	}
	if (fstat(fd, &st)) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		close(fd);
		unlink(path);
		return ret;
	}
	m->dst_dev = st.st_dev;
	m->dst_ino = st.st_ino;
	if (fchmod(fd, mode) || ftruncate(fd, (off_t)m->size)) {
		ret = -errno;
		snprintf(err, errlen, "cannot make %s %llu bytes large: %s", path,
			 (unsigned long long)m->size, strerror(-ret));
		close(fd);
		remove_dst(m, path);
		return ret;
	}
	ret = disk__open_fd(&m->dst, fd, path, false, true);
	if (ret) {
		snprintf(err, errlen, "cannot lock %s: %s", path, strerror(-ret));
		remove_dst(m, path);
	}
	return ret;
}

int disk_mirror__create(struct disk_mirror *m, struct disk *src, const char *path, char *err,
			size_t errlen)
{
	struct stat sst, st;
	int ret;

	memset(m, 0, sizeof(*m));
	m->dst.fd = -1;
	m->src = src;
	m->size = src->size;
	if (fstat(src->fd, &sst)) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", src->path, strerror(-ret));
		return ret;
	}
	if (!stat(path, &st)) {
		if (st.st_dev == sst.st_dev && st.st_ino == sst.st_ino) {
			snprintf(err, errlen, "%s is the disk's own image", path);
			return -EINVAL;
		}
		snprintf(err, errlen, "%s exists: the move makes a new file, it overwrites none",
			 path);
		return -EEXIST;
	}
	m->buf = aligned_alloc(ZERO_BLOCK, DISK_MIRROR_CHUNK);
	if (!m->buf) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ret = make_dst(m, path, &sst, err, errlen);
	if (ret)
		goto err_buf;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	return 0;

err_buf:
	free(m->buf);
	m->buf = NULL;
	return ret;
}

int disk_mirror__create_remote(struct disk_mirror *m, struct disk *src,
			       const struct disk_mirror_sink *sink, size_t queue_max, char *err,
			       size_t errlen)
{
	memset(m, 0, sizeof(*m));
	m->dst.fd = -1;
	m->src = src;
	m->size = src->size;
	m->sink = sink;
	m->queue_max = queue_max;
	m->buf = aligned_alloc(ZERO_BLOCK, DISK_MIRROR_CHUNK);
	if (!m->buf) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	return 0;
}

static void free_queue(struct disk_mirror *m)
{
	struct disk_mirror_entry *e;

	while ((e = m->head)) {
		m->head = e->next;
		free(e);
	}
	m->tail = NULL;
	m->queued = 0;
}

void disk_mirror__unbound(struct disk_mirror *m)
{
	pthread_mutex_lock(&m->lock);
	m->queue_max = SIZE_MAX;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

void disk_mirror__close(struct disk_mirror *m)
{
	pthread_mutex_lock(&m->lock);
	m->closed = true;
	free_queue(m);
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

void disk_mirror__destroy(struct disk_mirror *m)
{
	free_queue(m);
	if (m->dst.fd >= 0) {
		remove_dst(m, m->dst.path);
		disk__close(&m->dst);
	}
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m->buf);
	m->buf = NULL;
}

void disk_mirror__take(struct disk_mirror *m, struct disk *out)
{
	*out = m->dst;
	m->dst.fd = -1;
	m->dst.path = NULL;
	m->dst.locked = false;
}

/* ---- the pass ------------------------------------------------------------------ */

/* Writes the piece's non-zero blocks; the new file is a hole under the rest. */
static int write_data(struct disk_mirror *m, uint64_t off, size_t len)
{
	size_t pos = 0, run, blk;
	int ret;

	while (pos < len) {
		blk = MIN((size_t)ZERO_BLOCK, len - pos);
		if (all_zero(m->buf + pos, blk)) {
			pos += blk;
			continue;
		}
		run = blk;
		while (pos + run < len) {
			blk = MIN((size_t)ZERO_BLOCK, len - pos - run);
			if (all_zero(m->buf + pos + run, blk))
				break;
			run += blk;
		}
		ret = m->sink ? m->sink->put(m->sink->arg, off + pos, run, m->buf + pos)
			      : disk__pwrite(&m->dst, m->buf + pos, run, off + pos);
		if (ret)
			return ret;
		pos += run;
	}
	return 0;
}

/*
 * With no guest request in flight, where the next piece is: [off, *end) of data, or
 * a hole up to *end (0 returned, *end > off, *is_data false). A file system without
 * SEEK_DATA (or a block device) is all data.
 */
static int next_piece(struct disk_mirror *m, uint64_t off, uint64_t *end, bool *is_data)
{
	off_t data, hole;

	data = lseek(m->src->fd, (off_t)off, SEEK_DATA);
	if (data < 0 && errno == ENXIO) {
		*is_data = false;
		*end = m->size;
		return 0;
	}
	if (data < 0 && errno != EINVAL)
		return -errno;
	if (data >= 0 && (uint64_t)data > off) {
		*is_data = false;
		*end = MIN((uint64_t)data, m->size);
		return 0;
	}
	hole = data < 0 ? -1 : lseek(m->src->fd, (off_t)off, SEEK_HOLE);
	*is_data = true;
	*end = hole > (off_t)off ? MIN((uint64_t)hole, m->size) : m->size;
	*end = MIN(*end, off + DISK_MIRROR_CHUNK);
	return 0;
}

int disk_mirror__copy_step(struct disk_mirror *m, bool *done, char *err, size_t errlen)
{
	uint64_t off, end = 0;
	bool is_data = false;
	int ret;

	pthread_mutex_lock(&m->lock);
	while (m->writing)
		pthread_cond_wait(&m->cond, &m->lock);
	off = m->copied;
	*done = off >= m->size;
	ret = *done ? 0 : next_piece(m, off, &end, &is_data);
	if (!ret && !*done) {
		if (is_data)
			m->claim_end = end;
		else
			m->copied = m->claim_end = end;
	}
	pthread_mutex_unlock(&m->lock);
	if (ret) {
		snprintf(err, errlen, "%s: cannot find its data: %s", m->src->path, strerror(-ret));
		return ret;
	}
	if (*done || !is_data)
		return 0;

	ret = disk__pread(m->src, m->buf, end - off, off);
	if (ret)
		snprintf(err, errlen, "cannot read %s: %s", m->src->path, strerror(-ret));
	else if ((ret = write_data(m, off, end - off)))
		snprintf(err, errlen, "cannot write %s: %s", m->sink ? "the copy" : m->dst.path,
			 strerror(-ret));
	pthread_mutex_lock(&m->lock);
	if (!ret) {
		m->copied = end;
		m->data_bytes += end - off;
	}
	m->claim_end = m->copied;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return ret;
}

int disk_mirror__sync(struct disk_mirror *m, char *err, size_t errlen)
{
	char dir[PATH_MAX];
	int ret, fd;

	ret = disk__flush(&m->dst);
	if (ret) {
		snprintf(err, errlen, "cannot sync %s: %s", m->dst.path, strerror(-ret));
		return ret;
	}
	snprintf(dir, sizeof(dir), "%s", m->dst.path);
	fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd)) {
		ret = -errno;
		snprintf(err, errlen, "cannot sync the directory of %s: %s", m->dst.path,
			 strerror(-ret));
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

/* ---- the guest's requests ------------------------------------------------------- */

/*
 * Waits until [off, off+len) is clear of the piece being copied and marks a request in
 * flight. Returns how many bytes from off lie below the copy's position (to mirror).
 */
static uint64_t begin(struct disk_mirror *m, uint64_t off, uint64_t len)
{
	uint64_t below;

	pthread_mutex_lock(&m->lock);
	while (off < m->claim_end && off + len > m->copied)
		pthread_cond_wait(&m->cond, &m->lock);
	m->writing = true;
	below = off < m->copied ? MIN(len, m->copied - off) : 0;
	pthread_mutex_unlock(&m->lock);
	return below;
}

/* m->lock held. */
static void record_error(struct disk_mirror *m, int dst_ret)
{
	if (dst_ret && !m->error) {
		pr_err("%s: a guest request could not be mirrored: %s",
		       m->sink ? "the copy" : m->dst.path, strerror(-dst_ret));
		m->error = dst_ret;
	}
}

static void end(struct disk_mirror *m, uint64_t mirrored, int dst_ret)
{
	pthread_mutex_lock(&m->lock);
	m->writing = false;
	if (mirrored && !dst_ret) {
		m->mirrored_bytes += mirrored;
		m->mirrored_requests++;
	}
	record_error(m, dst_ret);
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

/* The first len bytes of iov into m->iov; their count, or -EINVAL if too many. */
static int iov_prefix(struct disk_mirror *m, const struct iovec *iov, int iovcnt, uint64_t len)
{
	int n = 0;

	for (; len && n < iovcnt; n++) {
		if (n == DISK_MIRROR_MAX_IOV)
			return -EINVAL;
		m->iov[n].iov_base = iov[n].iov_base;
		m->iov[n].iov_len = MIN(iov[n].iov_len, len);
		len -= m->iov[n].iov_len;
	}
	return n;
}

static uint64_t iov_bytes(const struct iovec *iov, int iovcnt)
{
	uint64_t n = 0;

	for (int i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	return n;
}

/* ---- a remote copy: the queue ------------------------------------------------- */

/*
 * Queues e once there is room (or the queue is empty): the order of the queue is
 * the order of the guest's requests, which the drain keeps.
 */
static void enqueue(struct disk_mirror *m, struct disk_mirror_entry *e)
{
	bool waited = false;

	pthread_mutex_lock(&m->lock);
	while (!m->closed && m->head &&
	       (m->queued > m->queue_max || e->cost > m->queue_max - m->queued)) {
		waited = true;
		pthread_cond_wait(&m->cond, &m->lock);
	}
	if (m->closed) {
		free(e);
	} else {
		e->next = NULL;
		if (m->tail)
			m->tail->next = e;
		else
			m->head = e;
		m->tail = e;
		m->queued += e->cost;
		m->queue_waits += waited;
	}
	pthread_mutex_unlock(&m->lock);
}

int disk_mirror__drain(struct disk_mirror *m)
{
	struct disk_mirror_entry *e;
	int ret = 0;

	for (;;) {
		pthread_mutex_lock(&m->lock);
		e = m->head;
		if (e) {
			m->head = e->next;
			if (!m->head)
				m->tail = NULL;
			m->queued -= e->cost;
			pthread_cond_broadcast(&m->cond);
		}
		pthread_mutex_unlock(&m->lock);
		if (!e)
			return 0;
		if (!ret)
			ret = m->sink->put(m->sink->arg, e->off, e->len, e->zero ? NULL : e->data);
		free(e);
		if (ret)
			return ret;
	}
}

static struct disk_mirror_entry *new_entry(uint64_t off, uint64_t len, size_t data_len)
{
	struct disk_mirror_entry *e = malloc(sizeof(*e) + data_len);

	if (e)
		*e = (struct disk_mirror_entry){.off = off,
						.len = len,
						.zero = !data_len,
						.cost = data_len ? data_len : ZERO_ENTRY_COST};
	return e;
}

/*
 * The write goes to the source from the entry's copy of the guest's buffers, so that
 * both sides get the same bytes even if the guest changes them meanwhile.
 */
static int remote_pwritev(struct disk_mirror *m, struct iovec *iov, int iovcnt, uint64_t off)
{
	uint64_t len = iov_bytes(iov, iovcnt), below = begin(m, off, len), pos = 0;
	bool fits = len <= REMOTE_MAX_REQUEST;
	struct disk_mirror_entry *e = below && fits ? new_entry(off, below, len) : NULL;
	int ret;

	if (e) {
		for (int i = 0; i < iovcnt; i++) {
			memcpy(e->data + pos, iov[i].iov_base, iov[i].iov_len);
			pos += iov[i].iov_len;
		}
		ret = disk__pwrite(m->src, e->data, len, off);
	} else {
		ret = disk__pwritev(m->src, iov, iovcnt, off);
	}
	end(m, ret ? 0 : below, below && !e ? (fits ? -ENOMEM : -E2BIG) : 0);
	if (e && !ret)
		enqueue(m, e);
	else
		free(e);
	return ret;
}

/* A discard or write-zeroes done on the source: the range below `copied` reads as zeros. */
static void remote_zero(struct disk_mirror *m, uint64_t off, uint64_t below, int ret)
{
	struct disk_mirror_entry *e = !ret && below ? new_entry(off, below, 0) : NULL;

	end(m, ret ? 0 : below, !ret && below && !e ? -ENOMEM : 0);
	if (e)
		enqueue(m, e);
}

/* ---- the guest's requests, continued ---------------------------------------------- */

int disk_mirror__pwritev(struct disk_mirror *m, struct iovec *iov, int iovcnt, uint64_t off)
{
	uint64_t below;
	int n, ret, dst_ret = 0;

	if (m->sink)
		return remote_pwritev(m, iov, iovcnt, off);
	below = begin(m, off, iov_bytes(iov, iovcnt));
	n = below ? iov_prefix(m, iov, iovcnt, below) : 0;

	/* Copied before the source's write uses iov as scratch. */
	ret = disk__pwritev(m->src, iov, iovcnt, off);
	if (!ret && below)
		dst_ret = n < 0 ? n : disk__pwritev(&m->dst, m->iov, n, off);
	end(m, below, dst_ret);
	return ret;
}

int disk_mirror__discard(struct disk_mirror *m, uint64_t off, uint64_t len)
{
	uint64_t below = begin(m, off, len);
	int ret, dst_ret = 0;

	ret = disk__discard(m->src, off, len);
	if (m->sink) {
		remote_zero(m, off, below, ret);
		return ret;
	}
	if (!ret && below) {
		dst_ret = disk__discard(&m->dst, off, below);
		/* Without holes the data is left: a hint, as for the guest. */
		if (dst_ret == -EOPNOTSUPP)
			dst_ret = 0;
	}
	end(m, below, dst_ret);
	return ret;
}

int disk_mirror__write_zeroes(struct disk_mirror *m, uint64_t off, uint64_t len, bool may_unmap)
{
	uint64_t below = begin(m, off, len);
	int ret, dst_ret = 0;

	ret = disk__write_zeroes(m->src, off, len, may_unmap);
	if (m->sink) {
		remote_zero(m, off, below, ret);
		return ret;
	}
	if (!ret && below)
		dst_ret = disk__write_zeroes(&m->dst, off, below, may_unmap);
	end(m, below, dst_ret);
	return ret;
}

/*
 * A flush covers both files: once the move switches, the new one is the disk. What
 * lies above the copy's position reaches the new file through the pass, which
 * disk_mirror__sync makes stable before the switch.
 */
int disk_mirror__flush(struct disk_mirror *m)
{
	int ret = disk__flush(m->src);
	/* A remote copy is made stable by its receiver before it becomes the disk. */
	int dst_ret = ret || m->sink ? 0 : disk__flush(&m->dst);

	pthread_mutex_lock(&m->lock);
	record_error(m, dst_ret);
	pthread_mutex_unlock(&m->lock);
	return ret;
}

int disk_mirror__error(struct disk_mirror *m)
{
	int ret;

	pthread_mutex_lock(&m->lock);
	ret = m->error;
	pthread_mutex_unlock(&m->lock);
	return ret;
}

void disk_mirror__progress(struct disk_mirror *m, struct disk_mirror_progress *p)
{
	pthread_mutex_lock(&m->lock);
	*p = (struct disk_mirror_progress){.size = m->size,
					   .copied = m->copied,
					   .data_bytes = m->data_bytes,
					   .mirrored_bytes = m->mirrored_bytes,
					   .mirrored_requests = m->mirrored_requests,
					   .queue_waits = m->queue_waits};
	pthread_mutex_unlock(&m->lock);
}
