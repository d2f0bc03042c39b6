/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_DISK_RECEIVE_H
#define GODWIT_DISK_RECEIVE_H

/*
 * Migration without shared storage, the destination's side: the images of the disks
 * CONFIG says come in the stream (disk_to), each created in the directory this host
 * allows (`godwit receive --disk-dir DIR`) and nowhere else. A disk_to is a file name,
 * or a path whose directory is DIR as given (or as resolved); the file must not exist.
 * It is made unnamed (O_TMPFILE) in DIR and gets its name only once the source has
 * handed the VM over (GO): a receive that fails, or is killed, leaves no file behind.
 * The name is then taken with linkat, which fails if someone made the file meanwhile:
 * never an overwrite (docs/migration-flow.md, "Disks without shared storage").
 */

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "godwit/disk.h"
#include "godwit/stream.h"
#include "godwit/vm.h"

/*
 * Once this much data has been written into an image since its last flush, a helper
 * thread flushes it (fdatasync) while the stream brings the rest, so that DONE's
 * fdatasync finds little left (docs/migration-flow.md, "Figures").
 */
#define DISK_RECEIVE_FLUSH_STEP (8 * MiB)
/*
 * Once an image's pass is DONE, what comes is the guest's own writes, mirrored until
 * the pause: flushed as each much of them has come, so that the fdatasync in the pause
 * (END) finds little left. Left for END, a writing guest's second of them cost a
 * ~100 ms pause (docs/bench.md, "The three disk goals at a lower load").
 */
#define DISK_RECEIVE_TAIL_STEP (256 * KiB)
/*
 * DISK records whose writes wait for the writer thread, at most: the receiving thread
 * reads and checks the next ones while it writes (docs/migration-flow.md, "Figures").
 */
#define DISK_RECEIVE_QUEUE 8

struct disk_incoming {
	bool in;
	bool done;	    /* its DONE came: the pass is over, what follows is the guest's */
	struct disk img;    /* our own descriptor of the image (the device has another) */
	int flush_fd;	    /* the helper's own open of the image (-1: none), see flusher_main */
	uint64_t unflushed; /* data bytes written since the helper's last flush began */
	int flush_err;	    /* the helper's fdatasync failed: the image cannot be trusted */
	char name[NAME_MAX + 1];
	char path[PATH_MAX];
	bool linked;
	dev_t dev;
	ino_t ino;
};

/* A record's write, in the writer thread's queue. */
struct disk_write {
	struct disk_incoming *in;
	uint32_t kind; /* STREAM_DISK_DATA or _ZERO */
	uint64_t offset, length;
	uint8_t *buf; /* DATA: the record's payload buffer, ours now */
	size_t cap;
	const uint8_t *data; /* DATA: length bytes in buf */
};

struct disk_receive {
	int dirfd; /* --disk-dir, -1: none */
	char dir[PATH_MAX], real[PATH_MAX];
	bool keep; /* the VM runs here on them: the files stay */
	struct disk_incoming d[VM_MAX_DISKS];
	pthread_mutex_t lock; /* everything below, and each disk's done, unflushed, flush_err */
	/* the flushing helper: started once a step of data waits, stopped at the last sync */
	pthread_t flusher;
	pthread_cond_t cond;
	bool flusher_running, flusher_failed, flusher_stop;
	uint64_t flushes; /* the helper's fdatasyncs (logged) */
	/* the writer: started with the first image, applies the queue in stream order */
	pthread_t writer;
	pthread_cond_t wcond; /* the writer waits for work */
	pthread_cond_t room;  /* the receiving thread waits for a place in the queue */
	bool writer_running, writer_stop;
	struct disk_write q[DISK_RECEIVE_QUEUE];
	unsigned int q_head, q_len; /* an entry leaves the queue once written */
	int write_err;		    /* the first write that failed: the rest are dropped */
	uint32_t write_err_disk;
	struct {
		uint8_t *buf;
		size_t cap;
	} spare[DISK_RECEIVE_QUEUE + 1]; /* payload buffers to give the reader */
	unsigned int nr_spare;
};

/* Before any source: DIR (NULL: no disk may come). 0 or -errno (logged). */
int __must_check disk_receive__init(struct disk_receive *r, const char *dir);
/*
 * Disk `disk` of size bytes comes in the stream, to disk_to: checked against the
 * directory, then made (unnamed, all holes). *fd is a descriptor for the VM's device,
 * path its name to be. -EPERM (outside the directory), -EEXIST, other -errno; why says it.
 */
int __must_check disk_receive__create(struct disk_receive *r, uint32_t disk, const char *disk_to,
				      uint64_t size, int *fd, char *path, size_t pathlen, char *why,
				      size_t whylen);
/*
 * One DISK record (checked by stream_check__disk, its checksum too): queued for the
 * writer, in stream order. rd: the reader whose buffer a DATA record's d->data points
 * into, which is taken (the reader gets a spare) rather than copied. Waits
 * while the queue is full. 0 or -errno: an earlier write or flush that failed.
 */
struct stream_reader;
int __must_check disk_receive__apply(struct disk_receive *r, const struct stream_disk *d,
				     struct stream_reader *rd);
/*
 * Waits for the queued writes, then fdatasync of every incoming image; the writer's
 * and the flushing helper's errors. last: nothing more comes (the stream's END), the
 * helper is stopped first. 0 or -errno (why).
 */
int __must_check disk_receive__sync(struct disk_receive *r, bool last, char *why, size_t whylen);
/*
 * --verify: each image whose source sent a digest (chk) hashed here and compared. 0,
 * -EBADMSG (why names the disk) or -errno.
 */
struct stream_check;
int __must_check disk_receive__verify(struct disk_receive *r, const struct stream_check *chk,
				      char *why, size_t whylen);
/* Whether disk_receive__verify has an image to hash. */
bool disk_receive__verifies(const struct disk_receive *r, const struct stream_check *chk);
/* After GO: each image takes its name, and the directory is synced. 0 or -errno (why). */
int __must_check disk_receive__link(struct disk_receive *r, char *why, size_t whylen);
/* Closes them; unless keep, the names taken are removed again (the files go). */
void disk_receive__exit(struct disk_receive *r);

#endif
