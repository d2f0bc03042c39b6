// SPDX-License-Identifier: GPL-2.0
/*
 * Raw disk images: a plain file, read and written in place, owned through an
 * OFD lock on the whole file (see include/godwit/disk.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "godwit/disk.h"
#include "godwit/log.h"

#define ZERO_CHUNK (64 * KiB)

static int set_lock(struct disk *d, short type)
{
	struct flock fl = {
		.l_type = type,
		.l_whence = SEEK_SET,
		.l_start = 0,
		.l_len = 0, /* to the end of the file, whatever its size */
	};
	int err;

	if (fcntl(d->fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	err = errno;
	if (err == EAGAIN || err == EACCES) {
		pr_err("disk image %s is in use by another process (locked)", d->path);
		return -EBUSY;
	}
	pr_err("disk image %s: cannot %s: %s", d->path, type == F_UNLCK ? "unlock" : "lock",
	       strerror(err));
	return -err;
}

int disk__lock(struct disk *d)
{
	int ret;

	if (d->locked)
		return 0;
	ret = set_lock(d, d->readonly ? F_RDLCK : F_WRLCK);
	if (!ret)
		d->locked = true;
	return ret;
}

int disk__unlock(struct disk *d)
{
	int ret;

	if (!d->locked)
		return 0;
	ret = set_lock(d, F_UNLCK);
	if (!ret)
		d->locked = false;
	return ret;
}

int disk__set_readonly(struct disk *d)
{
	d->readonly = true;
	/* F_OFD_SETLK on a lock we hold converts it in place. */
	return d->locked ? set_lock(d, F_RDLCK) : 0;
}

/* fd, if it is a disk image: a regular file or block device. fd, or -errno (logged, closed). */
static int check_image(int fd, const char *path)
{
	struct stat st;
	int err;

	if (fd < 0) {
		err = errno;
		pr_err("disk image %s: %s", path, strerror(err));
		return -err;
	}
	if (fstat(fd, &st)) {
		err = errno;
		pr_err("disk image %s: %s", path, strerror(err));
		close(fd);
		return -err;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		pr_err("disk image %s: not a regular file or block device", path);
		close(fd);
		return -EINVAL;
	}
	return fd;
}

int disk__open_image(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);

	/* Read-only here: enough for a readonly disk, which only the stream can tell. */
	if (fd < 0 && (errno == EACCES || errno == EROFS || errno == EPERM))
		fd = open(path, O_RDONLY | O_CLOEXEC);
	return check_image(fd, path);
}

static int image_size(struct disk *d, uint64_t *size)
{
	struct stat st;
	off_t end;

	if (fstat(d->fd, &st))
		return -errno;
	if (!S_ISBLK(st.st_mode)) {
		*size = (uint64_t)st.st_size;
		return 0;
	}
	end = lseek(d->fd, 0, SEEK_END);
	if (end < 0)
		return -errno;
	*size = (uint64_t)end;
	return 0;
}

int disk__open_fd(struct disk *d, int fd, const char *path, bool readonly, bool lock)
{
	int flags, ret;

	memset(d, 0, sizeof(*d));
	d->fd = fd;
	d->readonly = readonly;
	d->path = strdup(path);
	if (!d->path) {
		ret = -ENOMEM;
		goto err_close;
	}
	flags = fcntl(fd, F_GETFL);
	if (flags < 0) {
		ret = -errno;
		goto err_close;
	}
	if (!readonly && (flags & O_ACCMODE) == O_RDONLY) {
		pr_err("disk image %s can only be read here, and the VM writes to it", path);
		ret = -EROFS;
		goto err_close;
	}
	ret = lock ? disk__lock(d) : 0;
	if (!ret)
		ret = image_size(d, &d->size);
	if (ret)
		goto err_close;
	return 0;

err_close:
	close(d->fd);
	d->fd = -1;
	d->locked = false;
	free(d->path);
	d->path = NULL;
	return ret;
}

int disk__open(struct disk *d, const char *path, bool readonly, bool lock)
{
	int fd = check_image(open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC), path);

	if (fd < 0) {
		memset(d, 0, sizeof(*d));
		d->fd = -1;
		return fd;
	}
	return disk__open_fd(d, fd, path, readonly, lock);
}

void disk__close(struct disk *d)
{
	if (d->fd >= 0)
		close(d->fd); /* also drops the OFD lock */
	d->fd = -1;
	d->locked = false;
	free(d->path);
	d->path = NULL;
}

/* Drops n transferred bytes from the front of the iovec array. */
static void iov_advance(struct iovec **iov, int *cnt, size_t n)
{
	while (*cnt && n >= (*iov)->iov_len) {
		n -= (*iov)->iov_len;
		(*iov)++;
		(*cnt)--;
	}
	if (*cnt && n) {
		(*iov)->iov_base = (uint8_t *)(*iov)->iov_base + n;
		(*iov)->iov_len -= n;
	}
}

static int rw_full(struct disk *d, struct iovec *iov, int cnt, uint64_t off, bool write)
{
	ssize_t n;

	/* Skip empty entries so that "0 bytes" below really means end of file. */
	iov_advance(&iov, &cnt, 0);
	while (cnt) {
		if (write)
			n = pwritev(d->fd, iov, cnt, (off_t)off);
		else
			n = preadv(d->fd, iov, cnt, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		off += (uint64_t)n;
		iov_advance(&iov, &cnt, (size_t)n);
	}
	return 0;
}

int disk__preadv(struct disk *d, struct iovec *iov, int iovcnt, uint64_t off)
{
	return rw_full(d, iov, iovcnt, off, false);
}

int disk__pwritev(struct disk *d, struct iovec *iov, int iovcnt, uint64_t off)
{
	if (d->readonly)
		return -EROFS;
	return rw_full(d, iov, iovcnt, off, true);
}

int disk__pread(struct disk *d, void *buf, size_t len, uint64_t off)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };

	return disk__preadv(d, &iov, 1, off);
}

int disk__pwrite(struct disk *d, const void *buf, size_t len, uint64_t off)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return disk__pwritev(d, &iov, 1, off);
}

int disk__flush(struct disk *d)
{
	while (fdatasync(d->fd)) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

static int falloc(struct disk *d, int mode, uint64_t off, uint64_t len)
{
	if (d->readonly)
		return -EROFS;
	while (fallocate(d->fd, mode, (off_t)off, (off_t)len)) {
		if (errno != EINTR)
			return errno == ENOSYS ? -EOPNOTSUPP : -errno;
	}
	return 0;
}

int disk__discard(struct disk *d, uint64_t off, uint64_t len)
{
	return falloc(d, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
}

static int write_zero_buffers(struct disk *d, uint64_t off, uint64_t len)
{
	uint8_t *zeros = calloc(1, ZERO_CHUNK);
	uint64_t n;
	int ret = 0;

	if (!zeros)
		return -ENOMEM;
	while (len && !ret) {
		n = MIN(len, ZERO_CHUNK);
		ret = disk__pwrite(d, zeros, n, off);
		off += n;
		len -= n;
	}
	free(zeros);
	return ret;
}

int disk__write_zeroes(struct disk *d, uint64_t off, uint64_t len, bool may_unmap)
{
	int ret = -EOPNOTSUPP;

	if (d->readonly)
		return -EROFS;
	if (!may_unmap)
		ret = falloc(d, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len);
	if (ret == -EOPNOTSUPP)
		ret = disk__discard(d, off, len);
	if (ret == -EOPNOTSUPP)
		ret = write_zero_buffers(d, off, len);
	return ret;
}

#define DIGEST_STEP (1 * MiB)

/* [off, end) of the image into the hash: data read, holes as zeros. */
static int digest_range(struct disk *d, XXH3_state_t *st, uint8_t *buf, const uint8_t *zeros,
			uint64_t off, uint64_t end, bool data)
{
	uint64_t n;
	int ret;

	for (; off < end; off += n) {
		n = MIN(end - off, (uint64_t)DIGEST_STEP);
		if (data && (ret = disk__pread(d, buf, n, off)))
			return ret;
		XXH3_64bits_update(st, data ? buf : zeros, n);
	}
	return 0;
}

int disk__digest(struct disk *d, uint64_t size, uint64_t *out)
{
	uint8_t *buf = malloc(DIGEST_STEP), *zeros = calloc(1, DIGEST_STEP);
	XXH3_state_t *st = XXH3_createState();
	uint64_t off = 0, end;
	off_t data, hole;
	int ret = -ENOMEM;

	if (!buf || !zeros || !st)
		goto out;
	XXH3_64bits_reset(st);
	ret = 0;
	while (!ret && off < size) {
		/* No SEEK_DATA here (EINVAL): all of it is data. */
		data = lseek(d->fd, (off_t)off, SEEK_DATA);
		if (data < 0 && errno != ENXIO && errno != EINVAL) {
			ret = -errno;
			break;
		}
		if (data < 0 && errno == ENXIO)
			data = (off_t)size;
		if (data < 0 || (uint64_t)data <= off) {
			hole = data < 0 ? -1 : lseek(d->fd, (off_t)off, SEEK_HOLE);
			end = hole > (off_t)off ? MIN((uint64_t)hole, size) : size;
			ret = digest_range(d, st, buf, zeros, off, end, true);
		} else {
			end = MIN((uint64_t)data, size);
			ret = digest_range(d, st, buf, zeros, off, end, false);
		}
		off = end;
	}
	if (!ret)
		*out = XXH3_64bits_digest(st);
out:
	XXH3_freeState(st);
	free(zeros);
	free(buf);
	return ret;
}
