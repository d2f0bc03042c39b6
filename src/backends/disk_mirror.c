// SPDX-License-Identifier: GPL-2.0
/*
 * A disk image mirrored into a new file while in use (include/godwit/disk_mirror.h).
 *
 * The copy position `copied` only grows. The copy thread claims [copied, claim_end)
 * only while no guest request is in flight; a request queues its part below
 * claim_end, so a request either lies where the claim cannot reach it until it has
 * completed on the source (the claim then reads its data), or is queued after the
 * claim was made and reaches the new file after the claimed piece: the queue is
 * drained by the copy thread between pieces. Only the part below claim_end goes to
 * the new file: above it the new file stays all holes until the pass, which skips
 * holes and zero blocks. On this host, once the pass has ended and the queue is
 * empty, requests go to both files themselves (`sync`): there is no piece left to
 * order them against.
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

enum entry_kind { ENTRY_DATA, ENTRY_DISCARD, ENTRY_ZEROES, ENTRY_ZEROES_UNMAP };

/* A guest request below the copy's position, queued for the new file or the sink. */
struct disk_mirror_entry {
	struct disk_mirror_entry *next;
	uint64_t off, len; /* the range to copy: the request's part below claim_end */
	size_t cost;	   /* against queue_max */
	enum entry_kind kind;
	uint8_t data[]; /* the whole request's data (a write) */
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
	m->queue_max = DISK_MIRROR_QUEUE_MAX;
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
 * The piece's writeback starts now, from the pass, rather than from the kernel's
 * flusher workers or all at once in the sync before the switch: the device writes one
 * piece while the pass reads the next (docs/devices.md, "Moving a disk"). Only a
 * start: a writeback error is the sync's to report, on the same file.
 */
static void start_writeback(struct disk_mirror *m, uint64_t off, size_t len)
{
	(void)sync_file_range(m->dst.fd, (off64_t)off, (off64_t)len, SYNC_FILE_RANGE_WRITE);
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

static const char *dst_name(const struct disk_mirror *m)
{
	return m->sink ? "the copy" : m->dst.path;
}

/*
 * On this host, the pass done: the queue emptied, then the guest's requests go to
 * both files (a request that comes meanwhile waits for the queue to be empty).
 */
static int go_sync(struct disk_mirror *m, char *err, size_t errlen)
{
	int ret;

	pthread_mutex_lock(&m->lock);
	m->sync = true;
	/* A request in flight queues before it completes: wait for it, then drain it. */
	while (m->writing)
		pthread_cond_wait(&m->cond, &m->lock);
	pthread_mutex_unlock(&m->lock);
	ret = disk_mirror__drain(m);
	if (ret)
		snprintf(err, errlen, "cannot write %s: %s", dst_name(m), strerror(-ret));
	return ret;
}

int disk_mirror__copy_step(struct disk_mirror *m, bool *done, char *err, size_t errlen)
{
	uint64_t off, end = 0;
	bool is_data = false;
	int ret;

	ret = disk_mirror__drain(m);
	if (ret) {
		snprintf(err, errlen, "cannot write %s: %s", dst_name(m), strerror(-ret));
		return ret;
	}
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
	if (*done && !m->sink && !m->sync)
		return go_sync(m, err, errlen);
	if (*done || !is_data)
		return 0;

	ret = disk__pread(m->src, m->buf, end - off, off);
	if (ret)
		snprintf(err, errlen, "cannot read %s: %s", m->src->path, strerror(-ret));
	else if ((ret = write_data(m, off, end - off)))
		snprintf(err, errlen, "cannot write %s: %s", dst_name(m), strerror(-ret));
	else if (!m->sink)
		start_writeback(m, off, end - off);
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

/* ---- the queue ------------------------------------------------------------------ */

/* A request's part below the copy's position, to the new file or the sink. */
static int apply(struct disk_mirror *m, enum entry_kind kind, uint64_t off, uint64_t len,
		 const void *data)
{
	int ret;

	if (m->sink)
		return m->sink->put(m->sink->arg, off, len, kind == ENTRY_DATA ? data : NULL);
	switch (kind) {
	case ENTRY_DATA:
		return disk__pwrite(&m->dst, data, len, off);
	case ENTRY_DISCARD:
		ret = disk__discard(&m->dst, off, len);
		/* Without holes the data is left: a hint, as for the guest. */
		return ret == -EOPNOTSUPP ? 0 : ret;
	default:
		return disk__write_zeroes(&m->dst, off, len, kind == ENTRY_ZEROES_UNMAP);
	}
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
		}
		m->applying = e != NULL;
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->lock);
		if (!e)
			return 0;
		ret = apply(m, e->kind, e->off, e->len, e->data);
		free(e);
		if (ret)
			break;
	}
	/* The copy is lost: nothing more is queued, and no request waits for a drain. */
	pthread_mutex_lock(&m->lock);
	m->applying = false;
	m->closed = true;
	if (!m->error)
		m->error = ret;
	free_queue(m);
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return ret;
}

/*
 * What the part of a request below the copy's position costs against the queue's
 * bound: its data, or ZERO_ENTRY_COST; 0 when nothing is queued.
 */
static size_t cost_of(const struct disk_mirror *m, uint64_t below, uint64_t len, bool data)
{
	if (!below || m->sync)
		return 0;
	return data ? (size_t)len : ZERO_ENTRY_COST;
}

/* m->lock held: a request costing cost may go now. */
static bool may_go(const struct disk_mirror *m, size_t cost)
{
	if (m->closed)
		return true;
	if (m->sync)
		return !m->head && !m->applying;
	return !cost || !m->head || (m->queued <= m->queue_max && cost <= m->queue_max - m->queued);
}

/*
 * Waits until the request may go (room in the queue for its part below the copy's
 * position; once in sync, an empty queue) and marks it in flight. Returns how many
 * bytes from off lie below the copy's position (to mirror); *sync: they go to the
 * new file now, not through the queue.
 */
static uint64_t begin(struct disk_mirror *m, uint64_t off, uint64_t len, bool data, bool *sync)
{
	uint64_t below;
	bool waited = false;

	pthread_mutex_lock(&m->lock);
	for (;;) {
		below = off < m->claim_end ? MIN(len, m->claim_end - off) : 0;
		if (may_go(m, cost_of(m, below, len, data)))
			break;
		waited = true;
		pthread_cond_wait(&m->cond, &m->lock);
	}
	m->queue_waits += waited && !m->sync;
	m->writing = true;
	*sync = m->sync;
	pthread_mutex_unlock(&m->lock);
	return below;
}

/* m->lock held. */
static void record_error(struct disk_mirror *m, int dst_ret)
{
	if (dst_ret && !m->error) {
		pr_err("%s: a guest request could not be mirrored: %s", dst_name(m),
		       strerror(-dst_ret));
		m->error = dst_ret;
	}
}

/*
 * The request has completed on the source (ret); e, if any, joins the queue in the
 * same step as the request leaves flight, so that go_sync's drain finds it.
 */
static void end(struct disk_mirror *m, uint64_t mirrored, struct disk_mirror_entry *e, int ret,
		int dst_ret)
{
	pthread_mutex_lock(&m->lock);
	m->writing = false;
	if (e && !ret && !m->closed) {
		e->next = NULL;
		if (m->tail)
			m->tail->next = e;
		else
			m->head = e;
		m->tail = e;
		m->queued += e->cost;
		e = NULL;
	}
	if (mirrored && !ret && !dst_ret) {
		m->mirrored_bytes += mirrored;
		m->mirrored_requests++;
	}
	record_error(m, dst_ret);
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	free(e);
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

static struct disk_mirror_entry *new_entry(enum entry_kind kind, uint64_t off, uint64_t len,
					   size_t data_len)
{
	struct disk_mirror_entry *e = malloc(sizeof(*e) + data_len);

	if (e)
		*e = (struct disk_mirror_entry){.off = off,
						.len = len,
						.kind = kind,
						.cost = data_len ? data_len : ZERO_ENTRY_COST};
	return e;
}

/* ---- the guest's requests --------------------------------------------------------- */

/* In sync: the source, then the new file, before the guest hears of it. */
static int pwritev_both(struct disk_mirror *m, struct iovec *iov, int iovcnt, uint64_t off,
			uint64_t below)
{
	int n = iov_prefix(m, iov, iovcnt, below), ret, dst_ret = 0;

	/* Copied before the source's write uses iov as scratch. */
	ret = disk__pwritev(m->src, iov, iovcnt, off);
	if (!ret)
		dst_ret = n < 0 ? n : disk__pwritev(&m->dst, m->iov, n, off);
	end(m, below, NULL, ret, dst_ret);
	return ret;
}

/*
 * Queued: the write goes to the source from the entry's copy of the guest's buffers,
 * not from guest memory again, so that a guest changing its buffer during the request
 * cannot leave the two images different.
 */
int disk_mirror__pwritev(struct disk_mirror *m, struct iovec *iov, int iovcnt, uint64_t off)
{
	uint64_t len = iov_bytes(iov, iovcnt), pos = 0, below;
	bool fits = len <= REMOTE_MAX_REQUEST, sync;
	struct disk_mirror_entry *e = NULL;
	int ret;

	below = begin(m, off, len, true, &sync);
	if (below && sync)
		return pwritev_both(m, iov, iovcnt, off, below);
	if (below && fits)
		e = new_entry(ENTRY_DATA, off, below, len);
	if (e) {
		for (int i = 0; i < iovcnt; i++) {
			memcpy(e->data + pos, iov[i].iov_base, iov[i].iov_len);
			pos += iov[i].iov_len;
		}
		ret = disk__pwrite(m->src, e->data, len, off);
	} else {
		ret = disk__pwritev(m->src, iov, iovcnt, off);
	}
	end(m, below, e, ret, below && !e ? (fits ? -ENOMEM : -E2BIG) : 0);
	return ret;
}

/* A discard or write-zeroes done on the source (ret): the same below the copy's position. */
static int zero_end(struct disk_mirror *m, enum entry_kind kind, uint64_t off, uint64_t below,
		    bool sync, int ret)
{
	struct disk_mirror_entry *e = NULL;
	int dst_ret = 0;

	if (!ret && below && sync) {
		dst_ret = apply(m, kind, off, below, NULL);
	} else if (!ret && below) {
		e = new_entry(kind, off, below, 0);
		dst_ret = e ? 0 : -ENOMEM;
	}
	end(m, below, e, ret, dst_ret);
	return ret;
}

int disk_mirror__discard(struct disk_mirror *m, uint64_t off, uint64_t len)
{
	bool sync;
	uint64_t below = begin(m, off, len, false, &sync);

	return zero_end(m, ENTRY_DISCARD, off, below, sync, disk__discard(m->src, off, len));
}

int disk_mirror__write_zeroes(struct disk_mirror *m, uint64_t off, uint64_t len, bool may_unmap)
{
	bool sync;
	uint64_t below = begin(m, off, len, false, &sync);

	return zero_end(m, may_unmap ? ENTRY_ZEROES_UNMAP : ENTRY_ZEROES, off, below, sync,
			disk__write_zeroes(m->src, off, len, may_unmap));
}

/*
 * A flush covers the new file too once the pass has ended: from the switch on it is
 * the disk. Before, what the guest writes reaches it through the queue, and
 * disk_mirror__sync makes it stable before the switch.
 */
int disk_mirror__flush(struct disk_mirror *m)
{
	int ret = disk__flush(m->src), dst_ret = 0;
	bool sync;

	pthread_mutex_lock(&m->lock);
	sync = m->sync;
	pthread_mutex_unlock(&m->lock);
	if (!ret && sync)
		dst_ret = disk__flush(&m->dst);
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
