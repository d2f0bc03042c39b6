/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_DISK_MIRROR_H
#define GODWIT_DISK_MIRROR_H

/*
 * A disk image copied to a new file while the guest uses it, the mirror of ESX's
 * Storage vMotion (Mashtizadeh et al., USENIX ATC 2011): one pass copies the image
 * front to back, and every guest write (and discard, write-zeroes) that lands below
 * the copy's position is applied to the source and queued, with a copy of its data,
 * before the guest hears of it; the thread that copies applies the queue to the new
 * file, oldest first, between two pieces of the pass. Once the pass has reached the
 * end the queue is emptied and from then on the guest's requests go to both files
 * themselves. So the two files end equal and stay so: the move always converges,
 * whatever the guest writes (docs/devices.md, "Moving a disk"). The queue keeps the
 * new file's locks out of the guest's requests during the pass: only the copying
 * thread writes there, and a guest request never waits for a piece being copied.
 *
 * The new file stays sparse: the pass skips the source's holes (SEEK_DATA/SEEK_HOLE)
 * and the all-zero blocks of its data, and no guest write above the copy's position
 * reaches the new file, so what the pass skips is a hole there.
 *
 * One thread copies (disk_mirror__copy_step); one thread (the disk's I/O thread)
 * issues the guest's requests through disk_mirror__pwritev etc. Neither may be
 * called once disk_mirror__destroy has begun.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "godwit/disk.h"

/* The copy's step, between two drains of the queue. */
#define DISK_MIRROR_CHUNK (512 * KiB)
/* A move on this host: the most its queue holds before a guest request waits for room. */
#define DISK_MIRROR_QUEUE_MAX (16 * MiB)
/* The guest's requests have at most this many segments. */
#define DISK_MIRROR_MAX_IOV 1024

/*
 * Where the copy goes when it is not a file on this host (migration without shared
 * storage): put() gets the pass's data, and in order the guest's writes below the copy's
 * position (data NULL: the range reads as zeros), always on the one thread that calls
 * disk_mirror__copy_step and disk_mirror__drain. 0 or -errno (the move fails).
 */
struct disk_mirror_sink {
	int (*put)(void *arg, uint64_t off, uint64_t len, const void *data);
	void *arg;
};

struct disk_mirror_entry;

struct disk_mirror {
	struct disk *src;		     /* the device's image, not owned */
	const struct disk_mirror_sink *sink; /* a remote copy: dst is not used */
	struct disk dst;		     /* the new image, created here and locked */
	dev_t dst_dev; /* the new file as created: removed only if the path still names it */
	ino_t dst_ino;
	uint64_t size;
	uint8_t *buf; /* DISK_MIRROR_CHUNK, for the copy thread */

	pthread_mutex_t lock; /* the fields below */
	pthread_cond_t cond;
	uint64_t copied;	 /* [0, copied) is in dst, but for what is queued */
	uint64_t claim_end;	 /* > copied: [copied, claim_end) is being copied */
	bool writing;		 /* a guest request is in flight */
	bool sync;		 /* on this host, the pass done: requests go to both files */
	bool applying;		 /* the drain applies an entry it took from the queue */
	int error;		 /* the first failure on dst: the move fails */
	uint64_t data_bytes;	 /* the pass read from src and wrote to dst */
	uint64_t mirrored_bytes; /* guest writes (data, discards, zeroes) sent to dst too */
	uint64_t mirrored_requests;
	/*
	 * The guest's writes below claim_end, oldest first, waiting for
	 * disk_mirror__drain. A request is queued before the guest hears it completed; one
	 * that would take the queue past queue_max waits for a drain (one larger than
	 * queue_max goes alone), so memory stays bounded and a copy slower than the
	 * guest's writes (a slow link) slows them, as a slow disk would.
	 */
	struct disk_mirror_entry *head, *tail;
	size_t queued, queue_max;
	bool closed; /* disk_mirror__close or a failed drain: nothing is queued, no one waits */
	uint64_t queue_waits; /* requests that waited for room */

	struct iovec iov[DISK_MIRROR_MAX_IOV]; /* the I/O thread's: the guest's data for dst */
};

/*
 * Creates path (O_EXCL, the source's permission bits, as large as the source, all
 * holes) and takes its OFD write lock. -EEXIST if path exists, -EINVAL if it is the
 * source itself, other -errno; err says it in a sentence.
 */
int __must_check disk_mirror__create(struct disk_mirror *m, struct disk *src, const char *path,
				     char *err, size_t errlen);
/*
 * A mirror with no new file: the copy goes to sink (above), the guest's writes below
 * the copy's position through a queue of at most queue_max bytes.
 */
int __must_check disk_mirror__create_remote(struct disk_mirror *m, struct disk *src,
					    const struct disk_mirror_sink *sink, size_t queue_max,
					    char *err, size_t errlen);
/*
 * Applies what is queued to the new file or hands it to the sink, oldest first, and
 * wakes a request waiting for room. 0, or the write's or the sink's -errno: the move
 * fails, and the mirror is closed (what is queued is dropped).
 */
int __must_check disk_mirror__drain(struct disk_mirror *m);
/*
 * Remote: from now on requests queue without waiting for room. For the pause: the
 * vCPUs are stopped, so only what the device still holds comes, and the thread that
 * drains is about to wait for the device to be idle.
 */
void disk_mirror__unbound(struct disk_mirror *m);
/* The move has ended (failed or done): requests no longer queue or wait. */
void disk_mirror__close(struct disk_mirror *m);
/* Closes the new file and removes it (unless the path now names another file). */
void disk_mirror__destroy(struct disk_mirror *m);
/*
 * Hands the new file over: *out is the open, locked image (the caller closes it), and
 * destroy then only frees what is left.
 */
void disk_mirror__take(struct disk_mirror *m, struct disk *out);

/*
 * Drains the queue, then copies the next piece of data or skips the next hole. *done
 * once the pass has reached the end; on this host the queue is then empty and the
 * guest's requests go to both files from here. 0, or -errno of the read or write
 * that failed (err says which).
 */
int __must_check disk_mirror__copy_step(struct disk_mirror *m, bool *done, char *err,
					size_t errlen);
/* fdatasync of the new file and fsync of its directory: the copy survives a crash. */
int __must_check disk_mirror__sync(struct disk_mirror *m, char *err, size_t errlen);

/*
 * The guest's requests, as disk__pwritev etc. on the source, each also queued for the
 * new file (or applied to it, once the pass has ended) where it lies below the copy's
 * position. The result is the source's: a failure on the new file only fails the move
 * (disk_mirror__error), never the guest. The iovec array is used as scratch, as
 * disk__pwritev does. A flush syncs the new file too once the pass has ended; before,
 * disk_mirror__sync does it before the new file becomes the disk.
 */
int __must_check disk_mirror__pwritev(struct disk_mirror *m, struct iovec *iov, int iovcnt,
				      uint64_t off);
int __must_check disk_mirror__discard(struct disk_mirror *m, uint64_t off, uint64_t len);
int __must_check disk_mirror__write_zeroes(struct disk_mirror *m, uint64_t off, uint64_t len,
					   bool may_unmap);
int __must_check disk_mirror__flush(struct disk_mirror *m);

/* The first failure on the new file (0: none). */
int disk_mirror__error(struct disk_mirror *m);

struct disk_mirror_progress {
	uint64_t size, copied, data_bytes, mirrored_bytes, mirrored_requests, queue_waits;
};
void disk_mirror__progress(struct disk_mirror *m, struct disk_mirror_progress *p);

#endif
