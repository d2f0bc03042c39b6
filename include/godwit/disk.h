/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_DISK_H
#define GODWIT_DISK_H

/*
 * A raw disk image in a file, the backend of virtio-blk. Ownership of the image
 * between hosts (shared storage, live migration) is an OFD lock on the whole
 * file: a write lock for a read-write disk, a read lock for a readonly one. OFD
 * locks belong to the open file description, so a second open of the same image,
 * even in this process, conflicts, and they are released with the last close.
 * Migration hands the image over with disk__unlock on the source and disk__lock
 * on the destination.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "godwit/util.h"

#define DISK_SECTOR_SIZE 512

struct disk {
	int fd;
	char *path;
	bool readonly;
	bool locked;
	uint64_t size; /* bytes, at open time */
};

/*
 * Opens path (O_RDWR, or O_RDONLY when readonly) and, if lock, takes the lock.
 * -EBUSY with "disk image PATH is in use by another process (locked)" on the log
 * if another open file description holds a conflicting lock; other -errno with a
 * message. An incoming migration opens unlocked and locks at the hand-over.
 */
int __must_check disk__open(struct disk *d, const char *path, bool readonly, bool lock);
/*
 * For an image opened before the VM's disk is known (`godwit receive` opens its
 * --disk images before it listens): path opened read-write, or read-only where this
 * host allows only that, and checked as disk__open does. An fd or -errno (logged).
 */
int __must_check disk__open_image(const char *path);
/*
 * As disk__open, on such an fd, which it takes over (closed on failure too). A disk
 * that is not readonly needs an fd open for writing: -EROFS (logged) otherwise.
 */
int __must_check disk__open_fd(struct disk *d, int fd, const char *path, bool readonly,
			       bool lock);
void disk__close(struct disk *d);

/* Drops the lock (the file stays open). 0 or -errno. */
int __must_check disk__unlock(struct disk *d);
/* Takes the lock again: 0, -EBUSY (logged, as for open) or -errno. */
int __must_check disk__lock(struct disk *d);

/* Makes the disk readonly, its lock (if held) a read lock: one fcntl, never unlocked. */
int __must_check disk__set_readonly(struct disk *d);

/*
 * Whole transfers at byte offset off: short reads and writes are continued, EINTR
 * retried; the iovec array is used as scratch (modified). 0, -EIO at end of file,
 * or -errno.
 */
int __must_check disk__preadv(struct disk *d, struct iovec *iov, int iovcnt, uint64_t off);
int __must_check disk__pwritev(struct disk *d, struct iovec *iov, int iovcnt, uint64_t off);
int __must_check disk__pread(struct disk *d, void *buf, size_t len, uint64_t off);
int __must_check disk__pwrite(struct disk *d, const void *buf, size_t len, uint64_t off);

/*
 * XXH3-64 of the image's first size bytes, holes read as zeros (found with
 * SEEK_DATA/SEEK_HOLE and hashed without reading). 0 or -errno.
 */
int __must_check disk__digest(struct disk *d, uint64_t size, uint64_t *out);
/* fdatasync: everything written before is on stable storage when it returns 0. */
int __must_check disk__flush(struct disk *d);
/* Deallocates [off, off+len) (reads back as zeros). 0, -EOPNOTSUPP or -errno. */
int __must_check disk__discard(struct disk *d, uint64_t off, uint64_t len);
/*
 * Makes [off, off+len) read as zeros: FALLOC_FL_ZERO_RANGE, or a punched hole when
 * may_unmap (or when ZERO_RANGE is not supported), or written zeros as a last resort.
 */
int __must_check disk__write_zeroes(struct disk *d, uint64_t off, uint64_t len, bool may_unmap);

#endif
