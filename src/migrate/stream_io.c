// SPDX-License-Identifier: GPL-2.0
/*
 * Buffered byte I/O under the stream: an fd (TCP socket or snapshot file) or a
 * memory buffer (tests, fuzzing, dump of an in-memory capture).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/pkt_sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "godwit/seal.h"
#include "godwit/stream.h"
#include "godwit/tls.h"

#define STREAM_IO_RBUF (64 * KiB)
/* Enough iovecs per writev() to batch a RAM record; we loop for more. */
#define STREAM_IO_IOV_BATCH 64

int stream_io__init_fd(struct stream_io *io, int fd)
{
	memset(io, 0, sizeof(*io));
	io->fd = fd;
	io->rbuf = malloc(STREAM_IO_RBUF);
	if (!io->rbuf)
		return -ENOMEM;
	io->rbuf_cap = STREAM_IO_RBUF;
	return 0;
}

void stream_io__init_mem_reader(struct stream_io *io, const void *data, size_t len)
{
	memset(io, 0, sizeof(*io));
	io->fd = -1;
	io->mem_rd = data;
	io->mem_rd_len = len;
}

void stream_io__init_mem_writer(struct stream_io *io)
{
	memset(io, 0, sizeof(*io));
	io->fd = -1;
}

const uint8_t *stream_io__mem_data(const struct stream_io *io, size_t *len)
{
	*len = io->mem_wr_len;
	return io->mem_wr;
}

int stream_io__mem_to_fd(struct stream_io *io, int fd)
{
	uint64_t written = io->bytes_written;
	int ret;

	if (io->fd >= 0 || io->mem_rd)
		return -EINVAL;
	stream_io__exit(io);
	ret = stream_io__init_fd(io, fd);
	io->bytes_written = written;
	return ret;
}

void stream_io__exit(struct stream_io *io)
{
	unsigned int i;

	for (i = 0; i < STREAM_MAX_CONNECTIONS; i++) {
		tls__conn_free(io->tls[i]);
		io->tls[i] = NULL;
	}
	seal__free(io->seal);
	io->seal = NULL;
	free(io->rbuf);
	free(io->mem_wr);
	free(io->wstage);
	io->rbuf = NULL;
	io->mem_wr = NULL;
	io->wstage = NULL;
}

int stream_io__set_tls(struct stream_io *io, unsigned int i, struct tls_conn *c)
{
	if (io->fd < 0 || i >= STREAM_MAX_CONNECTIONS || io->tls[i] || (i && i >= io->nr_stripes))
		return -EINVAL;
	if (!io->wstage) {
		io->wstage = malloc(TLS_RECORD_MAX);
		if (!io->wstage)
			return -ENOMEM;
	}
	io->tls[i] = c;
	return 0;
}

int stream_io__seal(struct stream_io *io, struct seal *s)
{
	if (io->fd < 0 || io->seal || io->tls[0] || io->nr_stripes) {
		seal__free(s);
		return -EINVAL;
	}
	io->seal = s;
	return 0;
}

int stream_io__finish(struct stream_io *io)
{
	return io->seal ? seal__finish(io->seal) : 0;
}

const char *stream_io__channel_error(const struct stream_io *io)
{
	if (io->seal && seal__error(io->seal))
		return seal__error(io->seal);
	unsigned int i;

	for (i = 0; i < STREAM_MAX_CONNECTIONS; i++)
		if (tls__conn_error(io->tls[i]))
			return tls__conn_error(io->tls[i]);
	return NULL;
}

int stream_io__mem_to_tls(struct stream_io *io, int fd, struct tls_conn *c)
{
	uint64_t written = io->bytes_written;
	struct iovec first;
	int ret;

	if (io->fd >= 0 || io->mem_rd) {
		tls__conn_free(c);
		return -EINVAL;
	}
	first.iov_base = io->mem_wr;
	first.iov_len = io->mem_wr_len;
	io->mem_wr = NULL;
	stream_io__exit(io);
	ret = stream_io__init_fd(io, fd);
	if (!ret)
		ret = stream_io__set_tls(io, 0, c);
	else
		tls__conn_free(c);
	if (!ret)
		ret = stream_io__writev_full(io, &first, 1);
	io->bytes_written = written;
	free(first.iov_base);
	return ret;
}

static int mem_read(struct stream_io *io, void *buf, size_t len)
{
	size_t left = io->mem_rd_len - io->bytes_read;

	if (len > left) {
		io->bytes_read += left;
		return -ENODATA;
	}
	memcpy(buf, io->mem_rd + io->bytes_read, len);
	io->bytes_read += len;
	return 0;
}

/* The connection of the striped direction's current chunk; *room: the bytes left in it. */
static unsigned int stripe_conn(const struct stream_io *io, size_t *room)
{
	uint64_t chunk = io->stripe_pos / io->stripe_chunk;

	*room = io->stripe_chunk - (size_t)(io->stripe_pos % io->stripe_chunk);
	return (unsigned int)(chunk % io->nr_stripes);
}

static int conn_fd(const struct stream_io *io, unsigned int i)
{
	return i ? io->stripe_fd[i] : io->fd;
}

static bool striped(const struct stream_io *io, bool reads)
{
	return io->nr_stripes && io->stripe_reads == reads;
}

/* The connection to read from next; *max is cut to the current chunk when reads are striped. */
static unsigned int read_conn(const struct stream_io *io, size_t *max)
{
	size_t room;
	unsigned int i;

	if (!striped(io, true))
		return 0;
	i = stripe_conn(io, &room);
	*max = MIN(*max, room);
	return i;
}

/*
 * A bounded io's fd would block: waits for it (events) for up to io->wait_ms, or until
 * io->stop_fd is readable. 0, -ETIMEDOUT, -EINTR (stop) or -errno.
 */
static int fd_wait(struct stream_io *io, int fd, short events)
{
	struct pollfd p[2] = {
		{ .fd = fd, .events = events },
		{ .fd = io->stop_fd, .events = POLLIN },
	};
	int r;

	do {
		r = poll(p, io->stop_fd >= 0 ? 2 : 1, io->wait_ms);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (!r || (io->stop_fd >= 0 && p[1].revents)) {
		io->gave_up = r ? -EINTR : -ETIMEDOUT;
		return io->gave_up;
	}
	return 0;
}

/*
 * A TLS session asked for events on fd before it can go on: a bounded io waits as
 * fd_wait does, an unbounded one as long as it takes (its fd blocks otherwise).
 */
static int tls_wait(struct stream_io *io, int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };

	if (io->wait_ms)
		return fd_wait(io, fd, events);
	while (poll(&p, 1, -1) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

/* One read of at most len from connection i: bytes read, -ENODATA at EOF, -errno. */
static ssize_t conn_read(struct stream_io *io, unsigned int i, void *dst, size_t len)
{
	int fd = conn_fd(io, i);
	short events = POLLIN;
	ssize_t n;

	for (;;) {
		if (io->tls[i]) {
			n = tls__read(io->tls[i], dst, len, &events);
			if (n != -EAGAIN)
				return n;
			n = tls_wait(io, fd, events);
			if (n)
				return n;
			continue;
		}
		n = read(fd, dst, len);
		if (n > 0)
			return n;
		if (n == 0)
			return -ENODATA;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN || !io->wait_ms)
			return -errno;
		n = fd_wait(io, fd, POLLIN);
		if (n)
			return n;
	}
}

/* One read of at most len: bytes read, -ENODATA at EOF, -errno. */
static ssize_t fd_read_some(struct stream_io *io, void *dst, size_t len)
{
	unsigned int i;
	ssize_t n;

	if (io->seal)
		return seal__read(io->seal, dst, len);
	i = read_conn(io, &len);
	n = conn_read(io, i, dst, len);

	if (n < 0)
		return n;
	if (striped(io, true))
		io->stripe_pos += (uint64_t)n;
	return n;
}

/* One read into the buffer; 0 on data, -ENODATA at EOF, -errno. */
static int fd_fill(struct stream_io *io)
{
	ssize_t n = fd_read_some(io, io->rbuf, io->rbuf_cap);

	if (n < 0)
		return (int)n;
	io->rbuf_pos = 0;
	io->rbuf_len = (size_t)n;
	return 0;
}

/* Large reads skip the buffer so RAM payloads are copied once. */
static int fd_read_direct(struct stream_io *io, uint8_t *dst, size_t len)
{
	while (len) {
		ssize_t n = fd_read_some(io, dst, len);

		if (n < 0)
			return (int)n;
		dst += n;
		len -= (size_t)n;
		io->bytes_read += (uint64_t)n;
	}
	return 0;
}

static int fd_read(struct stream_io *io, uint8_t *dst, size_t len)
{
	while (len) {
		size_t avail = io->rbuf_len - io->rbuf_pos;
		size_t take;
		int ret;

		if (!avail) {
			if (len >= io->rbuf_cap || io->unbuffered)
				return fd_read_direct(io, dst, len);
			ret = fd_fill(io);
			if (ret)
				return ret;
			continue;
		}
		take = MIN(avail, len);
		memcpy(dst, io->rbuf + io->rbuf_pos, take);
		io->rbuf_pos += take;
		io->bytes_read += take;
		dst += take;
		len -= take;
	}
	return 0;
}

int stream_io__read_full(struct stream_io *io, void *buf, size_t len)
{
	if (io->fd < 0)
		return mem_read(io, buf, len);
	return fd_read(io, buf, len);
}

static int mem_grow(struct stream_io *io, size_t need)
{
	size_t cap = io->mem_wr_cap ? io->mem_wr_cap : 4096;
	uint8_t *p;

	if (need > SIZE_MAX / 2)
		return -ENOMEM;
	while (cap < need)
		cap *= 2;
	p = realloc(io->mem_wr, cap);
	if (!p)
		return -ENOMEM;
	io->mem_wr = p;
	io->mem_wr_cap = cap;
	return 0;
}

static int mem_writev(struct stream_io *io, const struct iovec *iov, int iovcnt)
{
	int i, ret;

	for (i = 0; i < iovcnt; i++) {
		size_t len = iov[i].iov_len;

		if (!len)
			continue;
		if (io->mem_wr_len + len > io->mem_wr_cap) {
			ret = mem_grow(io, io->mem_wr_len + len);
			if (ret)
				return ret;
		}
		memcpy(io->mem_wr + io->mem_wr_len, iov[i].iov_base, len);
		io->mem_wr_len += len;
		io->bytes_written += len;
	}
	return 0;
}

/*
 * Builds the next batch from iov[*idx] starting *off bytes in, so a short write
 * resumes exactly where the kernel stopped without modifying the caller's array.
 */
static int fill_batch(struct iovec *batch, const struct iovec *iov, int iovcnt, int idx, size_t off)
{
	int n = 0;

	for (; idx < iovcnt && n < STREAM_IO_IOV_BATCH; idx++, off = 0) {
		if (iov[idx].iov_len == off)
			continue;
		batch[n].iov_base = (uint8_t *)iov[idx].iov_base + off;
		batch[n].iov_len = iov[idx].iov_len - off;
		n++;
	}
	return n;
}

/* Advances (*idx, *off) past n written bytes. */
static void advance(const struct iovec *iov, int iovcnt, int *idx, size_t *off, size_t n)
{
	while (n && *idx < iovcnt) {
		size_t left = iov[*idx].iov_len - *off;

		if (n < left) {
			*off += n;
			return;
		}
		n -= left;
		(*idx)++;
		*off = 0;
	}
	while (*idx < iovcnt && iov[*idx].iov_len == 0)
		(*idx)++;
}

/* Cuts a batch to its first room bytes (room > 0); returns its new count. */
static int trim_batch(struct iovec *batch, int n, size_t room)
{
	int i;

	for (i = 0; i < n; i++) {
		if (batch[i].iov_len >= room) {
			batch[i].iov_len = room;
			return i + 1;
		}
		room -= batch[i].iov_len;
	}
	return n;
}

/* All of len bytes through connection i's TLS session. */
static int tls_write_all(struct stream_io *io, unsigned int i, const uint8_t *p, size_t len)
{
	short events = POLLOUT;

	while (len) {
		ssize_t n = tls__write(io->tls[i], p, len, &events);

		if (n == -EAGAIN) {
			int ret = tls_wait(io, conn_fd(io, i), events);

			if (ret)
				return ret;
			continue;
		}
		if (n < 0)
			return (int)n;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int tls_flush(struct stream_io *io)
{
	size_t len = io->wstage_len;

	io->wstage_len = 0;
	return len ? tls_write_all(io, io->wstage_conn, io->wstage, len) : 0;
}

/*
 * len bytes that all go to connection i (within its chunk when striped). Small pieces
 * (a record's header, a page) are gathered into one TLS record rather than each
 * paying a record's framing, tag and write(2); a piece of a record or more, with
 * nothing gathered before it, goes straight to OpenSSL, which cuts it into records.
 */
static int tls_put(struct stream_io *io, unsigned int i, const uint8_t *p, size_t len)
{
	int ret;

	if (io->wstage_len && io->wstage_conn != i) {
		ret = tls_flush(io);
		if (ret)
			return ret;
	}
	io->wstage_conn = i;
	while (len) {
		size_t take;

		if (!io->wstage_len && len >= TLS_RECORD_MAX)
			return tls_write_all(io, i, p, len);
		take = MIN(len, TLS_RECORD_MAX - io->wstage_len);
		memcpy(io->wstage + io->wstage_len, p, take);
		io->wstage_len += take;
		p += take;
		len -= take;
		if (io->wstage_len == TLS_RECORD_MAX) {
			ret = tls_flush(io);
			if (ret)
				return ret;
		}
	}
	return 0;
}

/* fd_writev's TLS twin: every piece through its connection's session, then flushed. */
static int tls_writev(struct stream_io *io, const struct iovec *iov, int iovcnt)
{
	int k, ret = 0;

	for (k = 0; k < iovcnt && !ret; k++) {
		const uint8_t *p = iov[k].iov_base;
		size_t len = iov[k].iov_len;

		while (len && !ret) {
			size_t n = len, room;
			unsigned int i = 0;

			if (striped(io, false)) {
				i = stripe_conn(io, &room);
				n = MIN(n, room);
			}
			ret = tls_put(io, i, p, n);
			io->bytes_written += n;
			if (striped(io, false))
				io->stripe_pos += n;
			p += n;
			len -= n;
		}
	}
	return ret ? ret : tls_flush(io);
}

static int seal_writev(struct stream_io *io, const struct iovec *iov, int iovcnt)
{
	int i, ret = 0;

	for (i = 0; i < iovcnt && !ret; i++) {
		ret = seal__write(io->seal, iov[i].iov_base, iov[i].iov_len);
		if (!ret)
			io->bytes_written += iov[i].iov_len;
	}
	return ret;
}

static int fd_writev(struct stream_io *io, const struct iovec *iov, int iovcnt)
{
	struct iovec batch[STREAM_IO_IOV_BATCH];
	size_t off = 0, room;
	int idx = 0, fd = io->fd;

	if (io->tls[0])
		return tls_writev(io, iov, iovcnt);
	if (io->seal)
		return seal_writev(io, iov, iovcnt);

	for (;;) {
		int n = fill_batch(batch, iov, iovcnt, idx, off);
		ssize_t w;

		if (!n)
			return 0;
		if (striped(io, false)) {
			fd = conn_fd(io, stripe_conn(io, &room));
			n = trim_batch(batch, n, room);
		}
		w = writev(fd, batch, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN && io->wait_ms) {
			int ret = fd_wait(io, fd, POLLOUT);

			if (ret)
				return ret;
			continue;
		}
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		io->bytes_written += (uint64_t)w;
		if (striped(io, false))
			io->stripe_pos += (uint64_t)w;
		advance(iov, iovcnt, &idx, &off, (size_t)w);
	}
}

int stream_io__stripe(struct stream_io *io, const int *fds, unsigned int n, uint32_t chunk,
		      bool reads)
{
	size_t ahead = io->rbuf_len - io->rbuf_pos;

	if (io->fd < 0 || n < 2 || n > STREAM_MAX_CONNECTIONS || fds[0] != io->fd ||
	    io->nr_stripes || !stream__stripe_chunk_valid(chunk) || (reads && ahead > chunk))
		return -EINVAL;
	memcpy(io->stripe_fd, fds, n * sizeof(*fds));
	io->nr_stripes = n;
	io->stripe_chunk = chunk;
	io->stripe_reads = reads;
	io->stripe_pos = reads ? ahead : 0;
	io->unbuffered = false;
	return io->wait_ms ? stream_io__bound(io, io->wait_ms, io->stop_fd) : 0;
}

static int set_nonblocking(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

int stream_io__bound(struct stream_io *io, int ms, int stop_fd)
{
	unsigned int i;
	int ret;

	if (io->fd < 0 || ms <= 0)
		return -EINVAL;
	io->wait_ms = ms;
	io->stop_fd = stop_fd;
	ret = set_nonblocking(io->fd);
	for (i = 1; !ret && i < io->nr_stripes; i++)
		ret = set_nonblocking(io->stripe_fd[i]);
	return ret;
}

int stream_io__unread(struct stream_io *io, const void *buf, size_t len)
{
	if (io->fd < 0 || io->rbuf_len || io->bytes_read)
		return -EINVAL;
	if (len > io->rbuf_cap) {
		uint8_t *p = realloc(io->rbuf, len);

		if (!p)
			return -ENOMEM;
		io->rbuf = p;
		io->rbuf_cap = len;
	}
	memcpy(io->rbuf, buf, len);
	io->rbuf_pos = 0;
	io->rbuf_len = len;
	return 0;
}

void stream_io__cork(struct stream_io *io, bool on)
{
	int v = on, i;

	if (io->fd < 0)
		return;
	setsockopt(io->fd, IPPROTO_TCP, TCP_CORK, &v, sizeof(v));
	for (i = 1; !io->stripe_reads && i < (int)io->nr_stripes; i++)
		setsockopt(io->stripe_fd[i], IPPROTO_TCP, TCP_CORK, &v, sizeof(v));
}

/*
 * Without it a pause's last bytes and the destination's RESUMED queued behind the
 * bulk streams of the other moves on the same port (an evacuation eight at a time:
 * 13 ms median, docs/bench.md).
 */
void stream_io__urgent(struct stream_io *io)
{
	int prio = TC_PRIO_INTERACTIVE;
	unsigned int i;

	if (io->fd < 0)
		return;
	setsockopt(io->fd, SOL_SOCKET, SO_PRIORITY, &prio, sizeof(prio));
	for (i = 1; i < io->nr_stripes; i++)
		setsockopt(io->stripe_fd[i], SOL_SOCKET, SO_PRIORITY, &prio, sizeof(prio));
}

void stream_io__unbuffered(struct stream_io *io, bool on)
{
	io->unbuffered = on;
}

int stream_io__writev_full(struct stream_io *io, const struct iovec *iov, int iovcnt)
{
	if (iovcnt < 0)
		return -EINVAL;
	if (io->fd < 0)
		return mem_writev(io, iov, iovcnt);
	return fd_writev(io, iov, iovcnt);
}

int stream_io__wait_readable(struct stream_io *io, int ms)
{
	size_t max = 1;
	unsigned int i = io->fd < 0 ? 0 : read_conn(io, &max);
	struct pollfd p[2] = {
		{ .fd = conn_fd(io, i), .events = POLLIN },
		{ .fd = io->stop_fd, .events = POLLIN },
	};
	int r, n = io->wait_ms && io->stop_fd >= 0 ? 2 : 1;

	if (io->fd < 0 || io->rbuf_pos < io->rbuf_len || (io->tls[i] && tls__pending(io->tls[i])))
		return 0;
	do {
		r = poll(p, (nfds_t)n, ms);
	} while (r < 0 && errno == EINTR);
	if (r > 0 && n == 2 && p[1].revents) {
		io->gave_up = -EINTR;
		return -EINTR;
	}
	return r > 0 ? 0 : r == 0 ? -ETIMEDOUT : -errno;
}
