// SPDX-License-Identifier: GPL-2.0
/* Where a stream goes: tcp:HOST:PORT sockets (the file: kind is opened by callers). */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "godwit/migrate.h"
#include "godwit/stream.h"

#define CONNECT_TIMEOUT_MS 10000

/* "tcp:HOST:PORT", HOST may be [v6]. */
int transport__parse_tcp(const char *uri, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *h, *colon, *end;
	size_t n;

	if (strncmp(uri, "tcp:", 4))
		return -EINVAL;
	h = uri + 4;
	if (*h == '[') {
		end = strchr(h, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		h++;
		colon = end + 1;
	} else {
		colon = strrchr(h, ':');
		end = colon;
	}
	if (!colon || end == h)
		return -EINVAL;
	n = (size_t)(end - h);
	if (n >= hostlen || strlen(colon + 1) >= portlen || !colon[1])
		return -EINVAL;
	memcpy(host, h, n);
	host[n] = '\0';
	strcpy(port, colon + 1);
	for (h = port; *h; h++)
		if (*h < '0' || *h > '9')
			return -EINVAL;
	return 0;
}

/*
 * No SO_SNDBUF/SO_RCVBUF: setting them turns off the kernel's buffer autotuning, which
 * grows the window to the path's bandwidth-delay product (net.ipv4.tcp_rmem/wmem); a
 * fixed size held a long link's stream to less than half of that, and did not help on
 * loopback.
 */
static void tune(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/*
 * Without a low-water mark a socket takes up to tcp_wmem's 4 MiB of bytes not yet
 * sent, and those go out whatever its writer does next. 0 is the kernel's default.
 */
void transport__limit_unsent(int fd, bool on)
{
	int lowat = on ? TRANSPORT_NOTSENT_LOWAT : 0;

	setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
}

static int resolve(const char *uri, int passive, struct addrinfo **ai, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0 };
	char host[256], port[16];
	int r;

	if (transport__parse_tcp(uri, host, sizeof(host), port, sizeof(port))) {
		snprintf(err, errlen, "'%s': expected tcp:HOST:PORT", uri);
		return -EINVAL;
	}
	r = getaddrinfo(host, port, &hints, ai);
	if (r) {
		snprintf(err, errlen, "%s: %s", uri, gai_strerror(r));
		return -EHOSTUNREACH;
	}
	return 0;
}

/* Waits for a non-blocking connect to finish: 0 or -errno. */
static int connect_done(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	socklen_t sl = sizeof(int);
	int soerr = 0, r;

	do {
		r = poll(&p, 1, CONNECT_TIMEOUT_MS);
	} while (r < 0 && errno == EINTR);
	if (r <= 0)
		return r ? -errno : -ETIMEDOUT;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		return -errno;
	return -soerr;
}

/* Blocking from here on; the migration thread owns the socket. */
static void make_blocking(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	tune(fd);
}

/*
 * TCP Fast Open: the first bytes (the stream's header and CONFIG) ride in the SYN, so
 * the destination starts building the VM half a round trip after the source connects
 * instead of one and a half; on a long link the move is a round trip shorter. Without
 * a cookie, so that a first migration to a host gains too: the destination's kernel
 * takes such data only where its admin allowed it (net.ipv4.tcp_fastopen with bit 0x2,
 * e.g. 3); elsewhere the SYN's bytes are dropped and sent again after the handshake,
 * as without Fast Open. Failures here only mean no Fast Open.
 */
static void fast_open(int fd, bool listener)
{
	int one = 1, qlen = 1 + STREAM_MAX_CONNECTIONS;

	if (listener)
		setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN, &qlen, sizeof(qlen));
	else
		setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, &one, sizeof(one));
}

/* All of len bytes on a blocking socket: 0 or -errno. */
static int send_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Starts connecting fd (non-blocking), with as much of first as the SYN takes (Fast
 * Open): the bytes sent, or -errno.
 */
static ssize_t connect_start(int fd, const struct sockaddr *sa, socklen_t salen,
			     const uint8_t *first, size_t len)
{
	ssize_t n;

	if (len)
		fast_open(fd, false);
	if (connect(fd, sa, salen) < 0 && errno != EINPROGRESS)
		return -errno;
	if (!len)
		return 0;
	/* Connected already, deferred to this send (Fast Open), or in progress (EAGAIN). */
	n = send(fd, first, len, MSG_NOSIGNAL);
	if (n < 0 && errno != EINPROGRESS && errno != EAGAIN)
		return -errno;
	return MAX(n, 0);
}

/*
 * n connections to one address: fds[0] carries first; fds[1..] are started right
 * after it, so that all handshakes overlap (-1 for one that could not start).
 */
static int connect_all(const struct addrinfo *a, const uint8_t *first, size_t len,
		       unsigned int n, int *fds)
{
	ssize_t sent;
	unsigned int i;
	int ret;

	for (i = 0; i < n; i++)
		fds[i] = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	sent = fds[0] < 0 ? -EMFILE : connect_start(fds[0], a->ai_addr, a->ai_addrlen, first, len);
	for (i = 1; i < n && sent >= 0; i++)
		if (fds[i] >= 0 && connect_start(fds[i], a->ai_addr, a->ai_addrlen, NULL, 0) < 0) {
			close(fds[i]);
			fds[i] = -1;
		}
	ret = sent < 0 ? (int)sent : transport__connect_finish(fds[0]);
	if (!ret && len)
		ret = send_all(fds[0], first + sent, len - (size_t)sent);
	if (ret)
		for (i = 0; i < n; i++)
			if (fds[i] >= 0)
				close(fds[i]);
	return ret;
}

int transport__connect_more(int fd, int *out)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int nfd, ret;

	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	nfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (nfd < 0)
		return -errno;
	ret = (int)connect_start(nfd, (struct sockaddr *)&ss, len, NULL, 0);
	if (ret) {
		close(nfd);
		return ret;
	}
	*out = nfd;
	return 0;
}

int transport__connect_finish(int fd)
{
	int ret = connect_done(fd);

	if (!ret)
		make_blocking(fd);
	return ret;
}

int transport__connect(const char *uri, const void *first, size_t len, unsigned int n, int *fds,
		       char *err, size_t errlen)
{
	struct addrinfo *ai, *a;
	int ret;

	ret = resolve(uri, 0, &ai, err, errlen);
	if (ret)
		return ret;
	ret = -ECONNREFUSED;
	for (a = ai; a; a = a->ai_next) {
		ret = connect_all(a, first, len, n, fds);
		if (!ret)
			break;
	}
	freeaddrinfo(ai);
	if (ret)
		snprintf(err, errlen, "cannot connect to %s: %s", uri, strerror(-ret));
	return ret;
}

int transport__listen(const char *uri, int *out, char *err, size_t errlen)
{
	struct addrinfo *ai;
	int fd, one = 1, ret;

	ret = resolve(uri, 1, &ai, err, errlen);
	if (ret)
		return ret;
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	fast_open(fd, true);
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1 + STREAM_MAX_CONNECTIONS) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot listen on %s: %s", uri, strerror(errno));
		close(fd);
		goto out;
	}
	*out = fd;
out:
	freeaddrinfo(ai);
	if (ret && !err[0])
		snprintf(err, errlen, "cannot listen on %s: %s", uri, strerror(-ret));
	return ret;
}

int transport__accept(int lfd, int *out)
{
	int fd;

	do {
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return -errno;
	tune(fd);
	*out = fd;
	return 0;
}

/*
 * The kernel's TCP_INFO for fd: true when it filled everything up to and including the
 * field that ends at need (an older kernel returns a shorter struct than the header's).
 */
static bool tcp_info_has(int fd, struct tcp_info *ti, size_t need)
{
	socklen_t len = sizeof(*ti);

	memset(ti, 0, sizeof(*ti));
	return !getsockopt(fd, IPPROTO_TCP, TCP_INFO, ti, &len) && len >= need;
}

#define TCP_INFO_HAS(fd, ti, field) \
	tcp_info_has(fd, ti, offsetof(struct tcp_info, field) + sizeof((ti)->field))

bool transport__all_in_window(int fd)
{
	struct tcp_info ti;
	int queued;

	if (ioctl(fd, SIOCOUTQ, &queued) || !TCP_INFO_HAS(fd, &ti, tcpi_snd_cwnd))
		return false;
	return (uint64_t)queued <= (uint64_t)ti.tcpi_snd_cwnd * ti.tcpi_snd_mss;
}

bool transport__fast_opened(int fd)
{
	struct tcp_info ti;

	return TCP_INFO_HAS(fd, &ti, tcpi_options) && (ti.tcpi_options & TCPI_OPT_SYN_DATA);
}

uint64_t transport__rtt_ns(int fd)
{
	struct tcp_info ti;

	return TCP_INFO_HAS(fd, &ti, tcpi_rtt) ? (uint64_t)ti.tcpi_rtt * 1000 : 0;
}

uint64_t transport__min_rtt_ns(int fd)
{
	struct tcp_info ti;

	return TCP_INFO_HAS(fd, &ti, tcpi_min_rtt) ? (uint64_t)ti.tcpi_min_rtt * 1000 : 0;
}
