// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-blk (virtio 1.x, 5.2) on a raw image.
 *
 * A request is a chain: a 16-byte device-readable header {type, reserved,
 * sector}, then data (readable for OUT/DISCARD/WRITE_ZEROES, writable for
 * IN/GET_ID), then one device-writable status byte, the chain's last byte. A
 * chain without 16 readable bytes or without a writable byte cannot be answered:
 * the device goes to NEEDS_RESET. Anything else the driver gets wrong (sectors
 * past the end, data not a multiple of 512 bytes, writes to a readonly disk) is
 * answered IOERR, unknown types UNSUPP.
 *
 * Data moves straight between the image and guest RAM (preadv/pwritev on iovecs
 * from the chain); pages filled by a read are marked dirty for migration.
 *
 * One I/O thread per disk serves the queue, woken by an eventfd. It holds
 * b->busy while it touches the queue; reset, quiesce and exit wait for busy to
 * clear, and a quiesced device leaves its notifications pending on the eventfd.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "godwit/disk_mirror.h"
#include "godwit/log.h"
#include "godwit/memory.h"
#include "godwit/virtio_blk.h"

#define SECTOR_SHIFT 9

struct blk_req_hdr {
	uint32_t type;
	uint64_t sector;
};

static void put_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static void put_le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static void kick(struct virtio_blk *b)
{
	uint64_t one = 1;

	/* Cannot fail short of a counter at 2^64-2: the thread drains it. */
	if (write(b->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		pr_warn("%s: eventfd write: %s", b->name, strerror(errno));
}

/* ---- requests ------------------------------------------------------------------ */

/* Is [sector, sector + bytes/512) inside the disk? No sum can overflow. */
static bool in_range(const struct virtio_blk *b, uint64_t sector, uint64_t bytes)
{
	uint64_t n = bytes >> SECTOR_SHIFT;

	return sector <= b->capacity && n <= b->capacity - sector;
}

/* IN: data is the writable part minus the status byte. Returns the status. */
static uint8_t do_read(struct virtio_blk *b, const struct virtq_chain *c, uint64_t sector,
		       uint32_t *written)
{
	uint64_t len = c->writable_len - 1;
	int n;

	if (len % DISK_SECTOR_SIZE || !in_range(b, sector, len))
		return VIRTIO_BLK_S_IOERR;
	if (!len)
		return VIRTIO_BLK_S_OK;
	n = virtq_chain__iov(c, b->mmio.mem, true, 0, len, b->iov, VIRTQ_MAX_SIZE);
	if (n < 0)
		return VIRTIO_BLK_S_IOERR;
	if (disk__preadv(&b->disk, b->iov, n, sector << SECTOR_SHIFT))
		return VIRTIO_BLK_S_IOERR;
	virtq_chain__mark_dirty(c, b->mmio.mem, 0, len);
	*written = (uint32_t)MIN(len, UINT32_MAX - 1);
	return VIRTIO_BLK_S_OK;
}

/* OUT: data is the readable part after the header. */
static uint8_t do_write(struct virtio_blk *b, const struct virtq_chain *c, uint64_t sector)
{
	uint64_t len = c->readable_len - VIRTIO_BLK_HDR_SIZE;
	int n, ret;

	if (b->disk.readonly || len % DISK_SECTOR_SIZE || !in_range(b, sector, len))
		return VIRTIO_BLK_S_IOERR;
	if (!len)
		return VIRTIO_BLK_S_OK;
	n = virtq_chain__iov(c, b->mmio.mem, false, VIRTIO_BLK_HDR_SIZE, len, b->iov,
			     VIRTQ_MAX_SIZE);
	if (n < 0)
		return VIRTIO_BLK_S_IOERR;
	if (b->mirror)
		ret = disk_mirror__pwritev(b->mirror, b->iov, n, sector << SECTOR_SHIFT);
	else
		ret = disk__pwritev(&b->disk, b->iov, n, sector << SECTOR_SHIFT);
	return ret ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
}

static uint8_t do_get_id(struct virtio_blk *b, const struct virtq_chain *c, uint32_t *written)
{
	uint64_t len = MIN(c->writable_len - 1, (uint64_t)VIRTIO_BLK_ID_BYTES);

	if (virtq_chain__write(c, b->mmio.mem, 0, b->serial, len))
		return VIRTIO_BLK_S_IOERR;
	*written = (uint32_t)len;
	return VIRTIO_BLK_S_OK;
}

/* One DISCARD / WRITE_ZEROES segment. */
static uint8_t do_range(struct virtio_blk *b, uint32_t type, const uint8_t *seg)
{
	uint64_t sector, off, len;
	uint32_t nr, flags, max;
	int ret;

	memcpy(&sector, seg, 8);
	memcpy(&nr, seg + 8, 4);
	memcpy(&flags, seg + 12, 4);
	sector = le64toh(sector);
	nr = le32toh(nr);
	flags = le32toh(flags);
	if (type == VIRTIO_BLK_T_DISCARD ? flags : (flags & ~VIRTIO_BLK_DWZ_F_UNMAP))
		return VIRTIO_BLK_S_UNSUPP;
	max = type == VIRTIO_BLK_T_DISCARD ? VIRTIO_BLK_MAX_DISCARD_SECTORS
					   : VIRTIO_BLK_MAX_WZ_SECTORS;
	if (nr > max || !in_range(b, sector, (uint64_t)nr << SECTOR_SHIFT))
		return VIRTIO_BLK_S_IOERR;
	off = sector << SECTOR_SHIFT;
	len = (uint64_t)nr << SECTOR_SHIFT;
	if (!len)
		return VIRTIO_BLK_S_OK;
	if (type == VIRTIO_BLK_T_DISCARD) {
		ret = b->mirror ? disk_mirror__discard(b->mirror, off, len)
				: disk__discard(&b->disk, off, len);
		/* Discard is a hint: a file system without holes may ignore it. */
		return ret && ret != -EOPNOTSUPP ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
	}
	if (b->mirror)
		ret = disk_mirror__write_zeroes(b->mirror, off, len, flags & VIRTIO_BLK_DWZ_F_UNMAP);
	else
		ret = disk__write_zeroes(&b->disk, off, len, flags & VIRTIO_BLK_DWZ_F_UNMAP);
	return ret ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
}

static uint8_t do_ranges(struct virtio_blk *b, const struct virtq_chain *c, uint32_t type)
{
	uint64_t len = c->readable_len - VIRTIO_BLK_HDR_SIZE;
	uint32_t max_seg = type == VIRTIO_BLK_T_DISCARD ? VIRTIO_BLK_MAX_DISCARD_SEG
							: VIRTIO_BLK_MAX_WZ_SEG;
	uint8_t seg[VIRTIO_BLK_DWZ_SIZE];
	uint64_t i, nr = len / VIRTIO_BLK_DWZ_SIZE;
	uint8_t status;

	if (b->disk.readonly || !nr || len % VIRTIO_BLK_DWZ_SIZE || nr > max_seg)
		return VIRTIO_BLK_S_IOERR;
	for (i = 0; i < nr; i++) {
		if (virtq_chain__read(c, b->mmio.mem, VIRTIO_BLK_HDR_SIZE + i * sizeof(seg), seg,
				      sizeof(seg)))
			return VIRTIO_BLK_S_IOERR;
		status = do_range(b, type, seg);
		if (status != VIRTIO_BLK_S_OK)
			return status;
	}
	return VIRTIO_BLK_S_OK;
}

static uint8_t execute(struct virtio_blk *b, const struct virtq_chain *c,
		       const struct blk_req_hdr *h, uint32_t *written)
{
	switch (h->type) {
	case VIRTIO_BLK_T_IN:
		return do_read(b, c, h->sector, written);
	case VIRTIO_BLK_T_OUT:
		return do_write(b, c, h->sector);
	case VIRTIO_BLK_T_FLUSH:
		if (b->mirror)
			return disk_mirror__flush(b->mirror) ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
		return disk__flush(&b->disk) ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_GET_ID:
		return do_get_id(b, c, written);
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (b->disk.readonly)
			return VIRTIO_BLK_S_IOERR;
		return do_ranges(b, c, h->type);
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

/*
 * Serves one chain. Returns the used length (data written + status byte), or
 * -EINVAL when the chain cannot carry a request at all (the caller resets).
 */
static int64_t handle(struct virtio_blk *b, const struct virtq_chain *c)
{
	uint8_t raw[VIRTIO_BLK_HDR_SIZE];
	struct blk_req_hdr h;
	uint32_t written = 0;
	uint8_t status;

	if (c->readable_len < VIRTIO_BLK_HDR_SIZE) {
		virtio_mmio__set_needs_reset(&b->mmio, "request header shorter than 16 bytes");
		return -EINVAL;
	}
	if (c->writable_len < 1) {
		virtio_mmio__set_needs_reset(&b->mmio, "request without a writable status byte");
		return -EINVAL;
	}
	if (virtq_chain__read(c, b->mmio.mem, 0, raw, sizeof(raw)))
		return -EFAULT;
	memcpy(&h.type, raw, 4);
	memcpy(&h.sector, raw + 8, 8);
	h.type = le32toh(h.type);
	h.sector = le64toh(h.sector);
	status = execute(b, c, &h, &written);
	if (status != VIRTIO_BLK_S_OK)
		written = 0;
	if (virtq_chain__write(c, b->mmio.mem, c->writable_len - 1, &status, 1))
		return -EFAULT;
	return (int64_t)written + 1;
}

/*
 * A quiesce asked for: the pass stops between two requests rather than drain the
 * queue first, so a quiesce waits for one request at most (virtio_blk__resume kicks
 * the thread to look at the queue again).
 */
static bool quiesce_asked(struct virtio_blk *b)
{
	return __atomic_load_n(&b->paused, __ATOMIC_ACQUIRE) != 0;
}

/* Pops and serves until the queue is empty; false if the device broke. */
static bool drain(struct virtio_blk *b)
{
	bool pushed = false;
	int64_t len;
	int ret = 0;

	while (!quiesce_asked(b) && (ret = virtio_mmio__pop(&b->mmio, 0, &b->chain)) > 0) {
		len = handle(b, &b->chain);
		if (len < 0) {
			virtio_mmio__set_needs_reset(&b->mmio, "request could not be answered");
			return false;
		}
		if (virtio_mmio__push(&b->mmio, 0, b->chain.head, (uint32_t)len))
			return false;
		pushed = true;
	}
	if (pushed)
		virtio_mmio__notify_used(&b->mmio, 0);
	return ret == 0;
}

static void serve_queue(struct virtio_blk *b)
{
	struct virtq *vq = virtio_mmio__queue(&b->mmio, 0);

	do {
		if (!virtio_mmio__queue_live(&b->mmio, 0))
			return;
		virtq__disable_notify(vq);
		if (!drain(b))
			return;
	} while (!quiesce_asked(b) && virtio_mmio__queue_live(&b->mmio, 0) &&
		 virtq__enable_notify(vq));
}

/* Waits for a notification; false when the thread must end. Sets busy. */
static bool wait_work(struct virtio_blk *b)
{
	uint64_t v;
	bool stop;

	while (read(b->evfd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&b->lock);
	while (b->paused && !b->stop)
		pthread_cond_wait(&b->cond, &b->lock);
	stop = b->stop;
	b->busy = !stop;
	pthread_mutex_unlock(&b->lock);
	return !stop;
}

static void *io_thread(void *arg)
{
	struct virtio_blk *b = arg;

	while (wait_work(b)) {
		serve_queue(b);
		pthread_mutex_lock(&b->lock);
		b->busy = false;
		pthread_cond_broadcast(&b->cond);
		pthread_mutex_unlock(&b->lock);
	}
	return NULL;
}

/* ---- quiesce -------------------------------------------------------------------- */

static void wait_idle_locked(struct virtio_blk *b)
{
	while (b->busy)
		pthread_cond_wait(&b->cond, &b->lock);
}

void virtio_blk__quiesce(struct virtio_blk *b)
{
	pthread_mutex_lock(&b->lock);
	__atomic_add_fetch(&b->paused, 1, __ATOMIC_RELEASE);
	wait_idle_locked(b);
	pthread_mutex_unlock(&b->lock);
}

void virtio_blk__resume(struct virtio_blk *b)
{
	pthread_mutex_lock(&b->lock);
	if (b->paused)
		__atomic_sub_fetch(&b->paused, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
	/* Look at the queue again: kicks may have come in while paused. */
	kick(b);
}

/* ---- transport callbacks ----------------------------------------------------------- */

static void blk_config_read(void *opaque, uint32_t offset, void *buf, uint32_t len)
{
	struct virtio_blk *b = opaque;

	memcpy(buf, b->config + offset, len);
}

static void blk_notify(void *opaque, unsigned int queue)
{
	(void)queue;
	kick(opaque);
}

static int blk_notify_fd(void *opaque, unsigned int queue)
{
	struct virtio_blk *b = opaque;

	return queue == 0 ? b->evfd : -1;
}

/* The transport has already cleared the status: wait out a pass in progress. */
static void blk_reset(void *opaque)
{
	struct virtio_blk *b = opaque;

	pthread_mutex_lock(&b->lock);
	wait_idle_locked(b);
	pthread_mutex_unlock(&b->lock);
}

static void blk_driver_ok(void *opaque)
{
	/* Buffers may already be queued (the driver need not kick before DRIVER_OK). */
	kick(opaque);
}

/* ---- set-up ---------------------------------------------------------------------- */

static void build_config(struct virtio_blk *b)
{
	uint8_t *c = b->config;

	memset(c, 0, sizeof(b->config));
	put_le64(c + VIRTIO_BLK_CFG_CAPACITY, b->capacity);
	put_le32(c + VIRTIO_BLK_CFG_SEG_MAX, VIRTIO_BLK_QUEUE_SIZE - 2);
	put_le32(c + VIRTIO_BLK_CFG_BLK_SIZE, DISK_SECTOR_SIZE);
	put_le32(c + VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS, VIRTIO_BLK_MAX_DISCARD_SECTORS);
	put_le32(c + VIRTIO_BLK_CFG_MAX_DISCARD_SEG, VIRTIO_BLK_MAX_DISCARD_SEG);
	put_le32(c + VIRTIO_BLK_CFG_DISCARD_ALIGN, VIRTIO_BLK_DISCARD_ALIGN);
	put_le32(c + VIRTIO_BLK_CFG_MAX_WZ_SECTORS, VIRTIO_BLK_MAX_WZ_SECTORS);
	put_le32(c + VIRTIO_BLK_CFG_MAX_WZ_SEG, VIRTIO_BLK_MAX_WZ_SEG);
	c[VIRTIO_BLK_CFG_WZ_MAY_UNMAP] = 1;
}

static void set_ops(struct virtio_blk *b, bool readonly)
{
	uint64_t f = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) |
		     VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) |
		     VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) | VIRTIO_BIT(VIRTIO_BLK_F_FLUSH);

	if (readonly)
		f |= VIRTIO_BIT(VIRTIO_BLK_F_RO);
	else
		f |= VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) | VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
	b->ops = (struct virtio_dev_ops){
		.device_id = VIRTIO_ID_BLK,
		.features = f,
		.config_size = VIRTIO_BLK_CFG_SIZE,
		.nr_queues = 1,
		.queue_max_size = VIRTIO_BLK_QUEUE_SIZE,
		.config_read = blk_config_read,
		.notify = blk_notify,
		.notify_fd = blk_notify_fd,
		.reset = blk_reset,
		.driver_ok = blk_driver_ok,
	};
}

static void set_serial(struct virtio_blk *b, const struct virtio_blk_opts *o)
{
	const char *s = o->serial;
	const char *slash;

	if (!s) {
		slash = strrchr(o->path, '/');
		s = slash ? slash + 1 : o->path;
	}
	/* NUL-padded, not NUL-terminated when all 20 bytes are used. */
	memset(b->serial, 0, sizeof(b->serial));
	memcpy(b->serial, s, MIN(strlen(s), sizeof(b->serial)));
}

static int init_sync(struct virtio_blk *b)
{
	int ret;

	ret = -pthread_mutex_init(&b->lock, NULL);
	if (ret)
		return ret;
	ret = -pthread_cond_init(&b->cond, NULL);
	if (ret)
		goto err_lock;
	ret = -pthread_mutex_init(&b->move.lock, NULL);
	if (ret)
		goto err_cond;
	return 0;

err_cond:
	pthread_cond_destroy(&b->cond);
err_lock:
	pthread_mutex_destroy(&b->lock);
	return ret;
}

int virtio_blk__init(struct virtio_blk *b, struct guest_mem *mem,
		     const struct virtio_blk_opts *opts, void (*raise)(void *irq_opaque),
		     void *irq_opaque)
{
	int ret;

	if (!opts || !opts->path)
		return -EINVAL;
	memset(b, 0, sizeof(*b));
	b->evfd = -1;
	snprintf(b->name, sizeof(b->name), "%s", opts->name ? opts->name : "virtio-blk");
	if (opts->fd) {
		ret = disk__open_fd(&b->disk, *opts->fd, opts->path, opts->readonly,
				    !opts->defer_lock);
		*opts->fd = -1;
	} else {
		ret = disk__open(&b->disk, opts->path, opts->readonly, !opts->defer_lock);
	}
	if (ret)
		return ret;
	b->capacity = b->disk.size / DISK_SECTOR_SIZE;
	set_serial(b, opts);
	build_config(b);
	set_ops(b, opts->readonly);
	b->evfd = eventfd(0, EFD_CLOEXEC);
	if (b->evfd < 0) {
		ret = -errno;
		goto err_disk;
	}
	ret = init_sync(b);
	if (ret)
		goto err_evfd;
	ret = virtio_mmio__init(&b->mmio, mem, b->name, &b->ops, b, raise, irq_opaque);
	if (ret)
		goto err_sync;
	ret = -pthread_create(&b->thread, NULL, io_thread, b);
	if (ret)
		goto err_mmio;
	pthread_setname_np(b->thread, "blk-io");
	b->thread_started = true;
	return 0;

err_mmio:
	virtio_mmio__exit(&b->mmio);
err_sync:
	pthread_mutex_destroy(&b->move.lock);
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
err_evfd:
	close(b->evfd);
	b->evfd = -1;
err_disk:
	disk__close(&b->disk);
	return ret;
}

void virtio_blk__exit(struct virtio_blk *b)
{
	/* Its thread needs the I/O thread to detach the mirror. */
	virtio_blk__move_stop(b);
	if (b->thread_started) {
		pthread_mutex_lock(&b->lock);
		b->stop = true;
		pthread_cond_broadcast(&b->cond);
		pthread_mutex_unlock(&b->lock);
		kick(b);
		pthread_join(b->thread, NULL);
		b->thread_started = false;
	}
	virtio_mmio__exit(&b->mmio);
	pthread_mutex_destroy(&b->move.lock);
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
	close(b->evfd);
	b->evfd = -1;
	disk__close(&b->disk);
}

int virtio_blk__notify_fd(struct virtio_blk *b)
{
	return b->evfd;
}

int virtio_blk__release_lock(struct virtio_blk *b)
{
	return disk__unlock(&b->disk);
}

int virtio_blk__take_lock(struct virtio_blk *b)
{
	return disk__lock(&b->disk);
}

/* ---- migration ------------------------------------------------------------------- */

void virtio_blk__save(struct virtio_blk *b, struct virtio_blk_state *st)
{
	memset(st, 0, sizeof(*st));
	virtio_blk__quiesce(b);
	virtio_mmio__save(&b->mmio, &st->transport);
	st->capacity = b->capacity;
	st->readonly = b->disk.readonly;
	virtio_blk__resume(b);
}

int virtio_blk__load(struct virtio_blk *b, const struct virtio_blk_state *st)
{
	int ret;

	if (st->capacity != b->capacity) {
		pr_err("%s: migration state rejected: disk of %llu sectors, this one has %llu",
		       b->name, (unsigned long long)st->capacity,
		       (unsigned long long)b->capacity);
		return -EINVAL;
	}
	if (st->readonly != b->disk.readonly) {
		pr_err("%s: migration state rejected: readonly=%u, this disk readonly=%u", b->name,
		       st->readonly, b->disk.readonly);
		return -EINVAL;
	}
	virtio_blk__quiesce(b);
	ret = virtio_mmio__load(&b->mmio, &st->transport);
	virtio_blk__resume(b);
	return ret;
}
