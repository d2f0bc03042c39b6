// SPDX-License-Identifier: GPL-2.0
/*
 * Several TCP connections for one migration stream (format 1.3, stream.h): how
 * many, in what chunks, the JOIN an extra connection opens with, and the
 * destination's side: telling the source's first connection from the others, and
 * taking those in. The stream is striped over them by stream_io.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "godwit/log.h"
#include "godwit/migrate.h"

/*
 * On a long link each connection's congestion window starts at ten segments and
 * doubles once per round trip, so a first round of a few MB waits on round trips,
 * not on the link, and n connections open n windows at once. On a short link extra
 * connections only cost sockets. Hence one per RTT_PER_CONNECTION_NS of round trip,
 * at most 16.
 */
#define RTT_PER_CONNECTION_NS 10000000ULL
/*
 * Connections that do not join are closed and let go, up to this many: the ones a
 * source offered beyond what was taken (it closes them, and they come as empty), and
 * a few strays.
 */
#define JOIN_MAX_STRAYS (STREAM_MAX_CONNECTIONS + 8)
/*
 * A fresh connection's first flight is ten segments, ~14 KB. With 64 KiB chunks (1.3)
 * a burst smaller than n chunks (a last round, the final state) went to a few
 * connections and each needed several round trips to pass it, while the others sat
 * idle: on a long link a round trip more of pause. Chunks of about one first flight
 * spread every burst over all the windows there are.
 */
#define STRIPE_CHUNK (16 * KiB)

unsigned int connections__wanted(uint64_t asked, uint64_t rtt_ns)
{
	if (asked)
		return (unsigned int)MIN(asked, (uint64_t)STREAM_MAX_CONNECTIONS);
	return (unsigned int)MIN(MAX(rtt_ns / RTT_PER_CONNECTION_NS, 1ULL),
				 (uint64_t)STREAM_MAX_CONNECTIONS);
}

uint32_t connections__stripe_chunk(uint32_t features)
{
	return features & STREAM_FEATURE_STRIPE_CHUNK ? STRIPE_CHUNK : 0;
}

/* The first byte of a TLS connection: a handshake record (the ClientHello). */
#define TLS_HANDSHAKE_BYTE 0x16

int connections__send_join(int fd, struct tls_conn *tls, const uint8_t *token, uint32_t index)
{
	struct stream_writer w;
	struct stream_io io;
	int ret;

	ret = stream_io__init_fd(&io, fd);
	if (!ret && tls)
		ret = stream_io__set_tls(&io, 0, tls);
	if (!ret)
		ret = stream__writer_init(&w, &io, STREAM_CTX_CONTROL);
	if (!ret) {
		ret = stream__write_join(&w, token, index);
		stream__writer_exit(&w);
	}
	io.tls[0] = NULL; /* the caller's */
	stream_io__exit(&io);
	return ret;
}

/*
 * What waiting connection i has sent, at most len, never waiting: bytes read,
 * -EAGAIN (w->events[i] then says for what), -ENODATA at its end, or -errno.
 */
static ssize_t conn_recv(struct connections_waiting *w, unsigned int i, void *buf, size_t len)
{
	ssize_t n;

	if (w->conn[i])
		return tls__read(w->conn[i], buf, len, &w->events[i]);
	w->events[i] = POLLIN;
	n = recv(w->fd[i], buf, len, MSG_DONTWAIT);
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? -EAGAIN : -errno;
	return n ? n : -ENODATA;
}

/*
 * What a waiting connection sent of its first len bytes, never more (a JOIN is read
 * alone, never ahead into stripes) and never waiting: 1 once all came, 0 for not yet,
 * or -errno. A peer that trickles them holds up no other connection.
 */
static int read_first(struct connections_waiting *w, unsigned int i, size_t len)
{
	ssize_t n;

	if (!w->opening[i]) {
		w->opening[i] = malloc(len);
		if (!w->opening[i])
			return -ENOMEM;
	}
	while (w->got[i] < len) {
		n = conn_recv(w, i, w->opening[i] + w->got[i], len - w->got[i]);
		if (n == -EAGAIN)
			return 0;
		if (n < 0)
			return (int)n;
		w->got[i] += (size_t)n;
	}
	return 1;
}

/* "ADDRESS port N" of a connection's peer, for the log. */
static const char *peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[64], port[8];

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) ||
	    getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port, sizeof(port),
			NI_NUMERICHOST | NI_NUMERICSERV))
		snprintf(buf, len, "an unknown peer");
	else
		snprintf(buf, len, "%s port %s", host, port);
	return buf;
}

/*
 * Before anything of a waiting connection is read: its TLS handshake, if its first
 * byte starts one. 1 once it may be read (handshake done, or plaintext), 0 while it
 * waits, -EPROTO (said on the log) or -EBADMSG for a connection that goes. Nothing it
 * sends is taken before its peer is authenticated.
 */
static int secure(struct connections_waiting *w, unsigned int i)
{
	char why[200] = "", peer[96];
	uint8_t first;
	ssize_t n;
	int r;

	if (w->secured[i] || (!w->conn[i] && w->got[i]))
		return 1;
	if (!w->conn[i]) {
		n = recv(w->fd[i], &first, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n <= 0)
			return -EBADMSG;
		if (first != TLS_HANDSHAKE_BYTE)
			return 1;
		if (!w->tls) {
			pr_warn("closed the incoming connection from %s: it starts a TLS handshake, "
				"and this receive has no TLS credentials (--encrypt off)",
				peer_name(w->fd[i], peer, sizeof(peer)));
			return -EPROTO;
		}
		if (tls__conn_new(w->tls, w->fd[i], NULL, &w->conn[i]))
			return -EBADMSG;
	}
	r = tls__handshake_step(w->conn[i], &w->events[i], why, sizeof(why));
	if (r < 0) {
		pr_warn("closed the incoming connection from %s: TLS refused: %s",
			peer_name(w->fd[i], peer, sizeof(peer)), why);
		return -EPROTO;
	}
	if (!r)
		return 0;
	w->secured[i] = true;
	w->events[i] = POLLIN;
	return 1;
}

/*
 * A plaintext connection where TLS is required: refused with an ERROR the source
 * shows (it sent its opening in the clear and reads the answer in the clear).
 */
static void refuse_plaintext(struct connections_waiting *w, unsigned int i)
{
	static const char msg[] = "this destination takes only encrypted migrations "
				  "(--encrypt required): give the source TLS credentials";
	struct stream_writer sw;
	struct stream_io io;
	char peer[96];

	pr_warn("refused an unencrypted migration stream from %s (--encrypt required)",
		peer_name(w->fd[i], peer, sizeof(peer)));
	if (stream_io__init_fd(&io, w->fd[i]))
		return;
	if (!stream__writer_init(&sw, &io, STREAM_CTX_CONTROL)) {
		if (stream__write_error(&sw, 1, msg))
			pr_debug("could not send the refusal");
		stream__writer_exit(&sw);
	}
	stream_io__exit(&io);
}

int connections__join_parse(const uint8_t *msg, size_t len, const uint8_t *token, uint32_t n,
			    const int *fds)
{
	uint8_t got[STREAM_TOKEN_LEN];
	struct stream_record rec;
	struct stream_reader r;
	struct stream_io io;
	uint32_t index;
	int ret;

	stream_io__init_mem_reader(&io, msg, len);
	ret = stream__reader_init(&r, &io, STREAM_CTX_CONTROL);
	if (ret)
		return ret;
	ret = stream__read_record(&r, &rec);
	if (!ret && (rec.type != STREAM_REC_JOIN ||
		     stream__join_decode(rec.payload, rec.length, got, &index)))
		ret = -EBADMSG;
	/* Another migration's, a second connection for one index, or one too many. */
	if (!ret && (memcmp(got, token, STREAM_TOKEN_LEN) || index >= n || fds[index] >= 0))
		ret = -EBADMSG;
	stream__reader_exit(&r);
	stream_io__exit(&io);
	return ret ? ret : (int)index;
}

void connections__close_waiting(struct connections_waiting *w)
{
	while (w->n) {
		w->n--;
		close(w->fd[w->n]);
		free(w->opening[w->n]);
		tls__conn_free(w->conn[w->n]);
	}
}

/* w's slot i goes; the last one takes its place. */
static void forget_waiting(struct connections_waiting *w, unsigned int i)
{
	w->n--;
	w->fd[i] = w->fd[w->n];
	w->since_ns[i] = w->since_ns[w->n];
	w->opening[i] = w->opening[w->n];
	w->got[i] = w->got[w->n];
	w->conn[i] = w->conn[w->n];
	w->secured[i] = w->secured[w->n];
	w->events[i] = w->events[w->n];
}

/*
 * What a connection sent that was not read goes before it is closed: a close with
 * bytes unread is a reset, which can overtake the TLS alert that says why it goes.
 */
static void drain(int fd)
{
	uint8_t sink[4096];
	int i;

	for (i = 0; i < 64 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
		;
}

static void drop_waiting(struct connections_waiting *w, unsigned int i)
{
	if (w->conn[i])
		drain(w->fd[i]);
	close(w->fd[i]);
	free(w->opening[i]);
	tls__conn_free(w->conn[i]);
	forget_waiting(w, i);
}

/* Accepts one more into w; with w full, the one waiting longest is closed. 0 or -errno. */
static int accept_waiting(int lfd, struct connections_waiting *w)
{
	unsigned int i, oldest = 0;
	int fd, ret = transport__accept(lfd, &fd);

	if (ret)
		return ret;
	if (w->n == ARRAY_SIZE(w->fd)) {
		pr_warn("closed the incoming connection waiting longest: too many are waiting");
		for (i = 1; i < w->n; i++)
			if (w->since_ns[i] < w->since_ns[oldest])
				oldest = i;
		drop_waiting(w, oldest);
	}
	/* A TLS handshake is stepped as bytes come: it must never block the listener. */
	if (w->tls && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		close(fd);
		return 0;
	}
	w->fd[w->n] = fd;
	w->since_ns[w->n] = util__now_ns();
	w->opening[w->n] = NULL;
	w->conn[w->n] = NULL;
	w->secured[w->n] = false;
	w->events[w->n] = POLLIN;
	w->got[w->n++] = 0;
	return 0;
}

/*
 * Waits until lfd or one of w's connections is readable, before the deadline (0: no
 * deadline): -1 for lfd, the index in w, -EINTR when stop_fd (if >= 0) is readable,
 * or -errno.
 */
static int wait_any(int lfd, const struct connections_waiting *w, uint64_t deadline_ns,
		    int stop_fd)
{
	struct pollfd p[2 + ARRAY_SIZE(w->fd)];
	unsigned int i;
	int r, ms = -1;

	p[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
	for (i = 0; i < w->n; i++)
		p[1 + i] = (struct pollfd){ .fd = w->fd[i], .events = w->events[i] };
	p[1 + w->n] = (struct pollfd){ .fd = stop_fd, .events = POLLIN };
	for (;;) {
		if (deadline_ns) {
			uint64_t now = util__now_ns();

			if (now >= deadline_ns)
				return -ETIMEDOUT;
			ms = (int)MIN((deadline_ns - now) / 1000000 + 1, 60000ULL);
		}
		r = poll(p, 2 + w->n, ms);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r > 0 && p[1 + w->n].revents)
			return -EINTR;
		for (i = 0; r > 0 && i < w->n; i++)
			if (p[1 + i].revents)
				return (int)i;
		if (r > 0)
			return -1;
	}
}

#define OPENING_HDR_LEN (STREAM_HEADER_LEN + STREAM_RECORD_HDR_LEN)

/* The opening's length as far as its got bytes tell; 0 for a first record too long. */
static size_t opening_len(const uint8_t *buf, size_t got)
{
	uint64_t len;

	if (got < OPENING_HDR_LEN)
		return OPENING_HDR_LEN;
	len = stream_get64(buf + STREAM_HEADER_LEN + 8);
	return len > STREAM_CONFIG_MAX_LEN ? 0 : OPENING_HDR_LEN + (size_t)len;
}

/*
 * Reads what a readable waiting connection sent of the opening (after its TLS
 * handshake, if it speaks TLS), never more and never waiting: 1 once all of it came,
 * 0 for not yet, -EBADMSG for anything else (the magic is checked as it comes, the
 * rest by the stream reader) or its end, -EPROTO for a refused handshake.
 */
static int opens_a_stream(struct connections_waiting *w, unsigned int i)
{
	int ret = secure(w, i);

	while (ret > 0) {
		size_t got = w->got[i], want = opening_len(w->opening[i], got);
		uint8_t *p;
		ssize_t n;

		if (!want)
			return -EBADMSG;
		p = realloc(w->opening[i], want);
		if (!p)
			return -EBADMSG;
		w->opening[i] = p;
		n = conn_recv(w, i, p + got, want - got);
		if (n == -EAGAIN)
			return 0;
		if (n <= 0 ||
		    (got < STREAM_MAGIC_LEN &&
		     memcmp(p + got, &STREAM_MAGIC[got], MIN((size_t)n, STREAM_MAGIC_LEN - got))))
			return -EBADMSG;
		w->got[i] = got + (size_t)n;
		want = opening_len(p, w->got[i]);
		if (!want)
			return -EBADMSG;
		if (w->got[i] == want)
			return 1;
	}
	return ret;
}

/* Closes the waiting connections older than timeout_ms; the next such deadline, or 0. */
static uint64_t expire_waiting(struct connections_waiting *w, int timeout_ms)
{
	uint64_t now = util__now_ns(), limit = (uint64_t)timeout_ms * 1000000ULL, next = 0;
	unsigned int i = 0;

	while (i < w->n) {
		if (now - w->since_ns[i] >= limit) {
			pr_warn("closed an incoming connection that did not send a stream's header "
				"and CONFIG within %d ms", timeout_ms);
			drop_waiting(w, i);
			continue;
		}
		if (!next || w->since_ns[i] + limit < next)
			next = w->since_ns[i] + limit;
		i++;
	}
	return next;
}

int connections__accept_source(int lfd, struct connections_waiting *w, int *out,
			       uint8_t **opening, size_t *len, int timeout_ms, int stop_fd)
{
	int i, ret;

	for (;;) {
		i = wait_any(lfd, w, expire_waiting(w, timeout_ms), stop_fd);
		if (i == -ETIMEDOUT)
			continue;
		ret = i < -1 ? i : i == -1 ? accept_waiting(lfd, w) : opens_a_stream(w, (unsigned int)i);
		if (ret > 0 && w->mode == TLS_MODE_REQUIRED && !w->conn[i]) {
			refuse_plaintext(w, (unsigned int)i);
			drop_waiting(w, (unsigned int)i);
		} else if (ret < 0 && i >= 0) {
			if (ret != -EPROTO)
				pr_warn("closed an incoming connection that is not a migration stream");
			/* Its peer had the one-time key: that was its move. */
			if (w->secured[i])
				tls__ctx_spend_psk(w->tls);
			drop_waiting(w, (unsigned int)i);
		} else if (ret < 0 || (ret && i >= 0)) {
			break;
		}
	}
	if (ret > 0) {
		*out = w->fd[i];
		*opening = w->opening[i];
		*len = w->got[i];
		w->taken_tls = w->conn[i];
		w->conn[i] = NULL;
		forget_waiting(w, (unsigned int)i);
		ret = 0;
	}
	return ret;
}

/*
 * The JOIN a readable waiting connection sends (after its TLS handshake): it goes into
 * fds, or is closed; 1 while it has not come whole.
 */
static int take_join(struct connections_waiting *w, unsigned int i, const uint8_t *token,
		     uint32_t n, int *fds)
{
	const size_t len = STREAM_RECORD_HDR_LEN + STREAM_JOIN_LEN;
	int fd = w->fd[i], index = secure(w, i);

	if (index > 0 && w->mode == TLS_MODE_REQUIRED && !w->conn[i])
		index = -EPROTO;
	if (index > 0)
		index = read_first(w, i, len);
	if (!index)
		return 1;
	if (index > 0)
		index = connections__join_parse(w->opening[i], len, token, n, fds);
	if (index < 0) {
		drop_waiting(w, i);
		pr_warn("closed an incoming connection that is not this migration's (%s)",
			strerror(-index));
		return index;
	}
	fds[index] = fd;
	w->join_tls[index] = w->conn[i];
	w->conn[i] = NULL;
	free(w->opening[i]);
	forget_waiting(w, i);
	return 0;
}

int connections__accept(int lfd, struct connections_waiting *w, const uint8_t *token, uint32_t n,
			int *fds, int timeout_ms, int stop_fd)
{
	uint64_t deadline = util__now_ns() + (uint64_t)timeout_ms * 1000000ULL;
	unsigned int joined = 1, strays = 0, i;
	int ret = 0;

	for (i = 1; i < n; i++) {
		fds[i] = -1;
		w->join_tls[i] = NULL;
	}
	while (joined < n) {
		int which = wait_any(lfd, w, deadline, stop_fd);

		if (which < -1) {
			ret = which;
			break;
		}
		if (which == -1) {
			ret = accept_waiting(lfd, w);
			if (ret)
				break;
			continue;
		}
		ret = take_join(w, (unsigned int)which, token, n, fds);
		if (!ret) {
			joined++;
		} else if (ret < 0 && ++strays > JOIN_MAX_STRAYS) {
			ret = -EPROTO;
			break;
		}
		ret = 0;
	}
	if (ret)
		for (i = 1; i < n; i++) {
			if (fds[i] >= 0)
				close(fds[i]);
			tls__conn_free(w->join_tls[i]);
			w->join_tls[i] = NULL;
		}
	return ret;
}
