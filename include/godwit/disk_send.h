/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_DISK_SEND_H
#define GODWIT_DISK_SEND_H

/*
 * Migration without shared storage, the source's side (docs/migration-flow.md,
 * "Disks without shared storage"): each disk named in disk_to gets a remote mirror
 * (disk_mirror.h) whose copy is DISK records in the migration stream. The pass runs
 * before the RAM; the guest's writes below its position are queued and go into the
 * stream, in order, whenever the migration thread drains them, until the pause.
 * Everything here runs on the migration thread, except the guest's requests that
 * queue (the disks' I/O threads).
 */

#include <stdbool.h>
#include <stdint.h>

#include "godwit/disk_mirror.h"
#include "godwit/migrate.h"
#include "godwit/stream.h"

struct vm;
struct virtio_blk;

/* What the guest's writes may hold queued, per disk, before a write waits. */
#define DISK_SEND_QUEUE_MAX (16 * MiB)

struct disk_send {
	struct virtio_blk *b;
	uint32_t disk;
	struct disk_mirror m;
	struct disk_mirror_sink sink;
	struct stream_writer *w;
	uint64_t bytes; /* image bytes sent: the pass's data and the guest's writes */
	bool created, attached;
};

struct disk_sender {
	struct disk_send d[MIGRATE_MAX_DISK_TO];
	unsigned int n;
	uint64_t max_bandwidth; /* bytes/s of the pass, 0: unlimited */
};

/*
 * Makes the mirrors of p's disk_to disks, writing into w, and attaches them: from
 * here every guest write below a pass's position is queued. 0 or -errno (err).
 */
int __must_check disk_send__start(struct disk_sender *s, struct vm *vm,
				  const struct migrate_params *p, struct stream_writer *w,
				  char *err, size_t errlen);
/*
 * Each disk's pass, then its DONE; the queues drained between pieces. *cancel (read
 * atomically) ends it with -ECANCELED; progress(arg) after each piece. 0 or -errno.
 */
int __must_check disk_send__copy(struct disk_sender *s, const bool *cancel,
				 void (*progress)(void *arg), void *arg, char *err, size_t errlen);
/* Sends what the guest's writes queued. 0 or -errno (err). */
int __must_check disk_send__drain(struct disk_sender *s, char *err, size_t errlen);
/*
 * The pause: the VM is paused, and the device is about to be quiesced (which waits for
 * a request that may be waiting for room in the queue): requests queue without limit.
 */
void disk_send__unbound(struct disk_sender *s);
/*
 * --verify, in the pause once the last writes are sent: a DIGEST of each image as the
 * guest left it (a read of all its data). 0 or -errno (err).
 */
int __must_check disk_send__digests(struct disk_sender *s, char *err, size_t errlen);
/* The figures for migrate_stats. */
void disk_send__progress(struct disk_sender *s, uint64_t *size, uint64_t *copied, uint64_t *bytes);
/* Detaches the mirrors (the guest's writes go to its image alone) and frees them. */
void disk_send__stop(struct disk_sender *s);

#endif
