// SPDX-License-Identifier: GPL-2.0
/*
 * Moving a virtio-blk disk's image to a new file while the guest runs
 * (docs/devices.md, "Moving a disk"): a thread per move runs the mirror's pass
 * (src/backends/disk_mirror.c), syncs the new file, then holds the device's I/O
 * for as long as it takes to swap the images. The vCPUs run throughout; a request
 * the guest makes meanwhile waits in the queue.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "godwit/disk_mirror.h"
#include "godwit/log.h"
#include "godwit/virtio_blk.h"

const char *virtio_blk__move_status_name(enum blk_move_status s)
{
	static const char *const names[] = {
	    [BLK_MOVE_NONE] = "none",		[BLK_MOVE_COPYING] = "copying",
	    [BLK_MOVE_SWITCHING] = "switching", [BLK_MOVE_COMPLETED] = "completed",
	    [BLK_MOVE_FAILED] = "failed",	[BLK_MOVE_CANCELLED] = "cancelled",
	};

	return (unsigned int)s < ARRAY_SIZE(names) ? names[s] : "unknown";
}

bool virtio_blk__move_status_final(enum blk_move_status s)
{
	return s == BLK_MOVE_COMPLETED || s == BLK_MOVE_FAILED || s == BLK_MOVE_CANCELLED;
}

/* The I/O thread sees b->mirror change only between its passes. */
void virtio_blk__set_mirror(struct virtio_blk *b, struct disk_mirror *m)
{
	virtio_blk__quiesce(b);
	b->mirror = m;
	virtio_blk__resume(b);
}

static void take_progress(struct blk_move *mv)
{
	struct disk_mirror_progress p;

	disk_mirror__progress(mv->mirror, &p);
	mv->stats.copied = p.copied;
	mv->stats.data_bytes = p.data_bytes;
	mv->stats.mirrored_bytes = p.mirrored_bytes;
	mv->stats.mirrored_requests = p.mirrored_requests;
}

/*
 * Whether the move is cancelled; if not and the pass is done, it is switching from now
 * on, in the same step: a cancel answered "cancelling" is always kept, and one after
 * is refused (virtio_blk__move_cancel).
 */
static bool cancelled(struct blk_move *mv, bool pass_done)
{
	bool ret;

	pthread_mutex_lock(&mv->lock);
	ret = mv->cancel;
	if (!ret && pass_done)
		mv->stats.status = BLK_MOVE_SWITCHING;
	pthread_mutex_unlock(&mv->lock);
	return ret;
}

/*
 * With the device's I/O held: the new image replaces the old, whose lock goes only
 * once the new one's is held (it has been since its creation).
 */
static int switch_over(struct virtio_blk *b, struct disk_mirror *m, char *err, size_t errlen)
{
	struct disk old;
	uint64_t t0, t1;
	int ret, prio;

	/*
	 * Held from when the request in flight (which a request behind it waits for
	 * anyway: one at a time) has completed to the resume; at real-time priority where
	 * allowed, so that a busy host does not preempt the hold (40 ms, once, with this
	 * thread at nice 10 on a loaded host).
	 */
	prio = util__switchover_priority(true);
	virtio_blk__quiesce(b);
	t0 = util__now_ns();
	ret = disk_mirror__error(m);
	if (ret)
		snprintf(err, errlen, "a guest write could not be mirrored to %s: %s", m->dst.path,
			 strerror(-ret));
	else if (b->disk.readonly && (ret = disk__set_readonly(&m->dst)))
		snprintf(err, errlen, "cannot make the lock on %s a read lock: %s", m->dst.path,
			 strerror(-ret));
	if (!ret) {
		/* Under the move's lock: the API reads the disk's path (virtio_blk__path). */
		pthread_mutex_lock(&b->move.lock);
		old = b->disk;
		disk_mirror__take(m, &b->disk);
		pthread_mutex_unlock(&b->move.lock);
		b->mirror = NULL;
	}
	virtio_blk__resume(b);
	t1 = util__now_ns();
	if (!prio)
		(void)util__switchover_priority(false);
	if (ret)
		return ret;
	pthread_mutex_lock(&b->move.lock);
	b->move.stats.switch_us = (t1 - t0) / 1000;
	pthread_mutex_unlock(&b->move.lock);
	disk__close(&old);
	return 0;
}

/* Sleeps while the pass is ahead of max_bandwidth, 50 ms at a time so that a cancel ends it. */
static void keep_rate(struct blk_move *mv)
{
	uint64_t due_ns, now, step;
	struct timespec ts;

	pthread_mutex_lock(&mv->lock);
	due_ns = mv->max_bandwidth
		     ? mv->stats.start_ns + (uint64_t)((double)mv->stats.data_bytes * 1e9 /
						       (double)mv->max_bandwidth)
		     : 0;
	pthread_mutex_unlock(&mv->lock);
	now = util__now_ns();
	if (due_ns <= now)
		return;
	step = MIN(due_ns - now, 50000000ULL);
	ts = (struct timespec){.tv_sec = 0, .tv_nsec = (long)step};
	nanosleep(&ts, NULL);
}

/* The pass, then the sync: 0, or -errno with err filled in (-ECANCELED: cancelled). */
static int copy_all(struct virtio_blk *b, struct disk_mirror *m, char *err, size_t errlen)
{
	bool done = false;
	int ret = 0;

	for (;;) {
		if (cancelled(&b->move, done)) {
			snprintf(err, errlen, "cancelled");
			return -ECANCELED;
		}
		if (done)
			break;
		ret = disk_mirror__copy_step(m, &done, err, errlen);
		if (!ret && (ret = disk_mirror__error(m)))
			snprintf(err, errlen, "a guest write could not be mirrored to %s: %s",
				 m->dst.path, strerror(-ret));
		pthread_mutex_lock(&b->move.lock);
		take_progress(&b->move);
		pthread_mutex_unlock(&b->move.lock);
		if (ret)
			return ret;
		keep_rate(&b->move);
	}
	return disk_mirror__sync(m, err, errlen);
}

static void finish(struct virtio_blk *b, int ret, const char *err)
{
	struct blk_move *mv = &b->move;
	struct disk_mirror *m = mv->mirror;

	if (ret) {
		/* A request waiting for room in the queue goes on (the move is over). */
		disk_mirror__close(m);
		virtio_blk__set_mirror(b, NULL);
	}
	pthread_mutex_lock(&mv->lock);
	take_progress(mv);
	mv->mirror = NULL;
	mv->stats.total_ms = (util__now_ns() - mv->stats.start_ns) / 1000000;
	mv->stats.status = !ret		       ? BLK_MOVE_COMPLETED
			   : ret == -ECANCELED ? BLK_MOVE_CANCELLED
					       : BLK_MOVE_FAILED;
	if (ret)
		snprintf(mv->stats.error, sizeof(mv->stats.error), "%s", err);
	pthread_mutex_unlock(&mv->lock);
	disk_mirror__destroy(m);
	free(m);
	if (!ret)
		pr_info("%s: moved to %s (I/O held %llu us for the switch)", b->name, b->disk.path,
			(unsigned long long)mv->stats.switch_us);
	else if (ret != -ECANCELED)
		pr_err("%s: the move failed, the disk stays on %s: %s", b->name, b->disk.path, err);
}

static void *move_thread(void *arg)
{
	struct virtio_blk *b = arg;
	struct disk_mirror *m = b->move.mirror;
	char err[sizeof(b->move.stats.error)] = "";
	int ret;

	virtio_blk__set_mirror(b, m);
	ret = copy_all(b, m, err, sizeof(err));
	if (!ret)
		ret = switch_over(b, m, err, sizeof(err));
	finish(b, ret, err);
	return NULL;
}

/* Joins a move thread that has ended; the caller holds no lock. */
static void reap(struct blk_move *mv)
{
	bool join;

	pthread_mutex_lock(&mv->lock);
	join = mv->running && virtio_blk__move_status_final(mv->stats.status);
	if (join)
		mv->running = false;
	pthread_mutex_unlock(&mv->lock);
	if (join)
		pthread_join(mv->thread, NULL);
}

static int launch(struct virtio_blk *b, const char *path, uint64_t max_bandwidth, char *err,
		  size_t errlen)
{
	struct blk_move *mv = &b->move;
	struct disk_mirror *m = calloc(1, sizeof(*m));
	int ret;

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ret = disk_mirror__create(m, &b->disk, path, err, errlen);
	if (ret) {
		free(m);
		return ret;
	}
	memset(&mv->stats, 0, sizeof(mv->stats));
	mv->stats.status = BLK_MOVE_COPYING;
	mv->stats.start_ns = util__now_ns();
	mv->stats.size = m->size;
	snprintf(mv->stats.from, sizeof(mv->stats.from), "%s", b->disk.path);
	snprintf(mv->stats.to, sizeof(mv->stats.to), "%s", path);
	mv->mirror = m;
	mv->cancel = false;
	mv->max_bandwidth = max_bandwidth;
	ret = -pthread_create(&mv->thread, NULL, move_thread, b);
	if (ret) {
		snprintf(err, errlen, "cannot start the move's thread: %s", strerror(-ret));
		mv->mirror = NULL;
		mv->stats.status = BLK_MOVE_NONE;
		disk_mirror__destroy(m);
		free(m);
		return ret;
	}
	pthread_setname_np(mv->thread, "disk-move");
	mv->running = true;
	return 0;
}

int virtio_blk__move_start(struct virtio_blk *b, const char *path, uint64_t max_bandwidth,
			   char *err, size_t errlen)
{
	struct blk_move *mv = &b->move;
	int ret;

	reap(mv);
	pthread_mutex_lock(&mv->lock);
	if (mv->running) {
		snprintf(err, errlen, "%s is being moved already (to %s)", b->name, mv->stats.to);
		ret = -EBUSY;
	} else {
		ret = launch(b, path, max_bandwidth, err, errlen);
	}
	pthread_mutex_unlock(&mv->lock);
	return ret;
}

int virtio_blk__move_cancel(struct virtio_blk *b)
{
	struct blk_move *mv = &b->move;
	int ret = 0;

	pthread_mutex_lock(&mv->lock);
	if (!mv->running || virtio_blk__move_status_final(mv->stats.status))
		ret = -ENOENT;
	else if (mv->stats.status == BLK_MOVE_SWITCHING)
		ret = -EBUSY;
	else
		mv->cancel = true;
	pthread_mutex_unlock(&mv->lock);
	return ret;
}

void virtio_blk__move_stats(struct virtio_blk *b, struct blk_move_stats *st)
{
	struct blk_move *mv = &b->move;

	pthread_mutex_lock(&mv->lock);
	if (mv->mirror)
		take_progress(mv);
	*st = mv->stats;
	if (!virtio_blk__move_status_final(st->status) && st->status != BLK_MOVE_NONE)
		st->total_ms = (util__now_ns() - st->start_ns) / 1000000;
	pthread_mutex_unlock(&mv->lock);
}

bool virtio_blk__moving(struct virtio_blk *b)
{
	bool ret;

	pthread_mutex_lock(&b->move.lock);
	ret = b->move.running && !virtio_blk__move_status_final(b->move.stats.status);
	pthread_mutex_unlock(&b->move.lock);
	return ret;
}

void virtio_blk__move_stop(struct virtio_blk *b)
{
	struct blk_move *mv = &b->move;
	bool running;

	pthread_mutex_lock(&mv->lock);
	running = mv->running;
	mv->running = false;
	mv->cancel = true;
	pthread_mutex_unlock(&mv->lock);
	if (running)
		pthread_join(mv->thread, NULL);
}

void virtio_blk__path(struct virtio_blk *b, char *buf, size_t len)
{
	pthread_mutex_lock(&b->move.lock);
	snprintf(buf, len, "%s", b->disk.path ? b->disk.path : "");
	pthread_mutex_unlock(&b->move.lock);
}
