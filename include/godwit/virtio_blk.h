/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_VIRTIO_BLK_H
#define GODWIT_VIRTIO_BLK_H

/*
 * virtio-blk over virtio-mmio, backed by a raw image (struct disk). One request
 * queue, served by an I/O thread per disk that sleeps on an eventfd: the
 * QueueNotify register writes it, and so can KVM's ioeventfd
 * (virtio_blk__notify_fd). Requests: IN, OUT, FLUSH, GET_ID, DISCARD,
 * WRITE_ZEROES; everything else is answered UNSUPP.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "godwit/disk.h"
#include "godwit/virtio.h"

/* Feature bits. */
#define VIRTIO_BLK_F_SEG_MAX	  2
#define VIRTIO_BLK_F_RO		  5
#define VIRTIO_BLK_F_BLK_SIZE	  6
#define VIRTIO_BLK_F_FLUSH	  9
#define VIRTIO_BLK_F_DISCARD	  13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types. */
#define VIRTIO_BLK_T_IN		  0
#define VIRTIO_BLK_T_OUT	  1
#define VIRTIO_BLK_T_FLUSH	  4
#define VIRTIO_BLK_T_GET_ID	  8
#define VIRTIO_BLK_T_DISCARD	  11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

/* Status byte. */
#define VIRTIO_BLK_S_OK	    0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_ID_BYTES    20
#define VIRTIO_BLK_HDR_SIZE    16 /* le32 type, le32 reserved, le64 sector */
#define VIRTIO_BLK_DWZ_SIZE    16 /* le64 sector, le32 num_sectors, le32 flags */
#define VIRTIO_BLK_DWZ_F_UNMAP 1

/* Config space layout (offsets into struct virtio_blk_config). */
#define VIRTIO_BLK_CFG_CAPACITY		    0
#define VIRTIO_BLK_CFG_SEG_MAX		    12
#define VIRTIO_BLK_CFG_BLK_SIZE		    20
#define VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS  36
#define VIRTIO_BLK_CFG_MAX_DISCARD_SEG	    40
#define VIRTIO_BLK_CFG_DISCARD_ALIGN	    44
#define VIRTIO_BLK_CFG_MAX_WZ_SECTORS	    48
#define VIRTIO_BLK_CFG_MAX_WZ_SEG	    52
#define VIRTIO_BLK_CFG_WZ_MAY_UNMAP	    56
#define VIRTIO_BLK_CFG_SIZE		    60

/* What the device advertises. */
#define VIRTIO_BLK_QUEUE_SIZE	       256
#define VIRTIO_BLK_MAX_DISCARD_SECTORS (1U << 21) /* 1 GiB per segment */
#define VIRTIO_BLK_MAX_DISCARD_SEG     16
#define VIRTIO_BLK_DISCARD_ALIGN       8 /* sectors: 4 KiB */
#define VIRTIO_BLK_MAX_WZ_SECTORS      (1U << 21)
#define VIRTIO_BLK_MAX_WZ_SEG	       1

struct virtio_blk_opts {
	const char *path;
	bool readonly;
	const char *serial; /* up to 20 bytes; default: the image's file name */
	const char *name;   /* for log lines; default "virtio-blk" */
	bool defer_lock;    /* incoming migration: take the lock at the hand-over */
	int *fd;	    /* the image opened already (disk__open_image): taken, *fd = -1 */
};

struct disk_mirror;

/* A disk move (virtio_blk__move_start): where it is and how it went. */
enum blk_move_status {
	BLK_MOVE_NONE,
	BLK_MOVE_COPYING,  /* the pass, guest writes mirrored */
	BLK_MOVE_SWITCHING, /* the pass is done: syncing, then the switch */
	BLK_MOVE_COMPLETED,
	BLK_MOVE_FAILED,
	BLK_MOVE_CANCELLED,
};

struct blk_move_stats {
	enum blk_move_status status;
	char from[4096], to[4096];
	uint64_t size;		    /* bytes */
	uint64_t copied;	    /* the pass's position, holes included */
	uint64_t data_bytes;	    /* read and written by the pass */
	uint64_t mirrored_bytes;    /* guest writes that went to both files */
	uint64_t mirrored_requests;
	uint64_t start_ns, total_ms;
	uint64_t switch_us; /* the device's I/O held for the switch (the guest's vCPUs run on) */
	char error[256];
};

struct blk_move {
	pthread_mutex_t lock; /* the fields below */
	bool running;	      /* the thread exists (joined at the next start or at exit) */
	bool cancel;
	uint64_t max_bandwidth; /* bytes/s of the pass's data; 0: as fast as it goes */
	pthread_t thread;
	struct disk_mirror *mirror; /* while the thread may use it */
	struct blk_move_stats stats;
};

struct virtio_blk {
	struct virtio_mmio mmio; /* the bus handler's opaque is &mmio */
	struct virtio_dev_ops ops;
	struct disk disk;
	char name[64];
	uint8_t config[VIRTIO_BLK_CFG_SIZE];
	char serial[VIRTIO_BLK_ID_BYTES];
	uint64_t capacity; /* sectors */

	int evfd; /* notifications: QueueNotify, ioeventfd, resume, exit */
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock; /* the fields below */
	pthread_cond_t cond;
	unsigned int paused; /* quiesce depth */
	bool busy;	     /* the I/O thread is serving the queue */
	bool stop;

	/* Set and cleared with the I/O thread quiesced: the guest's writes go through it. */
	struct disk_mirror *mirror;
	struct blk_move move;

	/* I/O thread scratch. */
	struct virtq_chain chain;
	struct iovec iov[VIRTQ_MAX_SIZE];
};

/*
 * Opens and locks the image (see disk__open; -EBUSY if another process holds
 * it), sets up the transport and starts the I/O thread. raise() as for
 * virtio_mmio__init. 0 or -errno.
 */
int __must_check virtio_blk__init(struct virtio_blk *b, struct guest_mem *mem,
				  const struct virtio_blk_opts *opts,
				  void (*raise)(void *irq_opaque), void *irq_opaque);
void virtio_blk__exit(struct virtio_blk *b);

/* The eventfd the I/O thread sleeps on (for KVM_IOEVENTFD on QueueNotify, queue 0). */
int virtio_blk__notify_fd(struct virtio_blk *b);

/*
 * Waits until no request is in flight and keeps new ones from starting (their
 * notifications wait) until virtio_blk__resume. Nests. Every request completed
 * before it returns is in guest RAM and the used ring; a flushed write is on
 * stable storage.
 */
void virtio_blk__quiesce(struct virtio_blk *b);
void virtio_blk__resume(struct virtio_blk *b);

/* Migration hand-over of the image: see disk__unlock / disk__lock. */
int __must_check virtio_blk__release_lock(struct virtio_blk *b);
int __must_check virtio_blk__take_lock(struct virtio_blk *b);

/*
 * blk_move.c: moves the image to a new file at path while the guest runs (a mirror,
 * include/godwit/disk_mirror.h), then switches the device to it and closes the old one
 * (left as it was; the new file's lock is taken before the old one's goes). Checks and
 * creates the file here (-EEXIST, -EINVAL for the image itself, -EBUSY for a move
 * under way, other -errno; err says it), then copies in a thread of its own, at most
 * max_bandwidth bytes of data a second (0: no limit). On a
 * failure or a cancel the device stays on its image and the new file is removed.
 */
int __must_check virtio_blk__move_start(struct virtio_blk *b, const char *path,
					uint64_t max_bandwidth, char *err, size_t errlen);
/*
 * From now on the guest's writes, discards and write-zeroes go through m (NULL: no
 * longer): the device's I/O is held for the swap, between two requests. Migration
 * without shared storage attaches its remote mirror so (src/migrate/disk_send.c).
 */
void virtio_blk__set_mirror(struct virtio_blk *b, struct disk_mirror *m);
/*
 * -ENOENT if no move is under way, -EBUSY once its pass has ended (the move
 * completes); 0: the move ends cancelled.
 */
int virtio_blk__move_cancel(struct virtio_blk *b);
void virtio_blk__move_stats(struct virtio_blk *b, struct blk_move_stats *st);
bool virtio_blk__moving(struct virtio_blk *b);
const char *virtio_blk__move_status_name(enum blk_move_status s);
bool virtio_blk__move_status_final(enum blk_move_status s);
/* Cancels a move under way and waits for its thread (removing the partial file). */
void virtio_blk__move_stop(struct virtio_blk *b);
/* The image's path now (a move's switch changes it), as a string in buf. */
void virtio_blk__path(struct virtio_blk *b, char *buf, size_t len);

struct virtio_blk_state {
	struct virtio_mmio_state transport;
	uint64_t capacity; /* sectors: the destination's image must be as large */
	uint8_t readonly;
};

/* Quiesces around the copy. */
void virtio_blk__save(struct virtio_blk *b, struct virtio_blk_state *st);
/* Validates (capacity and readonly must match this disk, then the transport) and applies. */
int __must_check virtio_blk__load(struct virtio_blk *b, const struct virtio_blk_state *st);

#endif
