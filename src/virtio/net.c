// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-net device model (see virtio_net.h for what it offers).
 *
 * Receive: a frame is read from the backend only once a receive chain is known
 * to be waiting, so a guest without buffers leaves frames in the backend (the
 * tap's queue) instead of having them read and dropped here. While no buffer is
 * posted the backend fd is taken out of the epoll set and guest notifications
 * are enabled: the guest's next kick brings the device back. A frame larger
 * than the chain it lands in is dropped (the chain goes back with length 0, as
 * a driver that posted a short buffer expects nothing better).
 *
 * Transmit: each chain is copied out whole (header + frame) before it is sent,
 * so the guest cannot change a frame after it was checked. The header sent to
 * the backend is rebuilt as all zeros: no offload was negotiated, so any flag
 * the guest set is meaningless. A chain shorter than the header is a broken
 * driver: NEEDS_RESET. A frame the backend has no room for is dropped
 * (counted): that is what a congested link does, and it keeps the thread from
 * holding guest chains across waits.
 *
 * The I/O thread processes at most BUDGET frames per queue per wake-up, then
 * re-kicks itself, so receive and transmit share it fairly and a quiesce
 * request waits at most one frame.
 *
 * Nothing the guest or the network sends can crash the VMM: chains come from
 * the core already checked against guest RAM, every copy is bounds-checked,
 * and every write into guest RAM goes through the core (marked dirty).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "godwit/log.h"
#include "godwit/memory.h"
#include "godwit/virtio_net.h"

#define HDR_LEN	   ((uint64_t)sizeof(struct virtio_net_hdr_v1))
#define BUDGET	   64
#define MAX_EVENTS 8

/* Tags of epoll events: queue index, or these. */
#define TAG_BACKEND 100
#define TAG_CTL	    101
#define TAG_TIMER   102

#define OFFERED_FEATURES                                                                           \
	(VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) |                         \
	 VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_NET_F_MAC) |                       \
	 VIRTIO_BIT(VIRTIO_NET_F_STATUS) | VIRTIO_BIT(VIRTIO_NET_F_CTRL_VQ) |                      \
	 VIRTIO_BIT(VIRTIO_NET_F_GUEST_ANNOUNCE))

#define STAT_INC(n, field) __atomic_fetch_add(&(n)->stats.field, 1, __ATOMIC_RELAXED)

_Static_assert(sizeof(struct virtio_net_hdr_v1) == NET_BACKEND_HDR_LEN, "virtio-net v1 header");

/* ---- MAC addresses ---- */

static bool mac_usable(const uint8_t mac[ETH_ALEN])
{
	static const uint8_t zero[ETH_ALEN];

	return !(mac[0] & 1) && memcmp(mac, zero, ETH_ALEN);
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int virtio_net__parse_mac(const char *s, uint8_t mac[ETH_ALEN])
{
	uint8_t out[ETH_ALEN];

	if (!s || strlen(s) != 3 * ETH_ALEN - 1)
		return -EINVAL;
	for (int i = 0; i < ETH_ALEN; i++) {
		int hi = hex_digit(s[3 * i]), lo = hex_digit(s[3 * i + 1]);

		if (hi < 0 || lo < 0 || (i < ETH_ALEN - 1 && s[3 * i + 2] != ':'))
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	if (!mac_usable(out))
		return -EINVAL;
	memcpy(mac, out, ETH_ALEN);
	return 0;
}

int virtio_net__random_mac(uint8_t mac[ETH_ALEN])
{
	uint8_t r[3];
	ssize_t got = getrandom(r, sizeof(r), 0);

	if (got < 0)
		return -errno;
	if (got != (ssize_t)sizeof(r))
		return -EIO;
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	memcpy(mac + 3, r, sizeof(r));
	return 0;
}

/* ---- small helpers ---- */

static bool negotiated(struct virtio_net *n, unsigned int bit)
{
	return virtio_mmio__features(&n->mmio) & VIRTIO_BIT(bit);
}

static bool quiesce_wanted(struct virtio_net *n)
{
	return __atomic_load_n(&n->quiesce_depth, __ATOMIC_ACQUIRE) != 0;
}

static void eventfd_signal(int fd)
{
	uint64_t one = 1;

	/* Only fails when the counter would overflow: then it is signalled anyway. */
	if (write(fd, &one, sizeof(one)) < 0)
		return;
}

static void eventfd_drain(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0)
		return;
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

/* ---- config space and transport callbacks ---- */

static void net_config_read(void *opaque, uint32_t offset, void *buf, uint32_t len)
{
	struct virtio_net *n = opaque;
	uint8_t cfg[VIRTIO_NET_CFG_SIZE];

	pthread_mutex_lock(&n->lock);
	memcpy(cfg + VIRTIO_NET_CFG_MAC, n->mac, ETH_ALEN);
	put_le16(cfg + VIRTIO_NET_CFG_STATUS, n->status);
	pthread_mutex_unlock(&n->lock);
	put_le16(cfg + VIRTIO_NET_CFG_MAX_PAIRS, 1);
	/* The transport checked offset + len against config_size. */
	if (offset <= sizeof(cfg) && len <= sizeof(cfg) - offset)
		memcpy(buf, cfg + offset, len);
	else
		memset(buf, 0, len);
}

static int net_features_ok(void *opaque, uint64_t features)
{
	(void)opaque;
	/* "GUEST_ANNOUNCE requires CTRL_VQ": a driver must not accept it alone. */
	if ((features & VIRTIO_BIT(VIRTIO_NET_F_GUEST_ANNOUNCE)) &&
	    !(features & VIRTIO_BIT(VIRTIO_NET_F_CTRL_VQ)))
		return -EINVAL;
	return 0;
}

/* The driver set DRIVER_OK (transport lock held): release a reset's hold. */
static void net_driver_ok(void *opaque)
{
	struct virtio_net *n = opaque;
	bool held;

	pthread_mutex_lock(&n->lock);
	held = n->reset_hold;
	n->reset_hold = false;
	pthread_mutex_unlock(&n->lock);
	if (held)
		virtio_net__resume(n);
	eventfd_signal(n->ctl_fd);
}

static void net_notify(void *opaque, unsigned int queue)
{
	struct virtio_net *n = opaque;

	if (queue < VIRTIO_NET_NR_QUEUES)
		eventfd_signal(n->kick_fd[queue]);
}

static int net_notify_fd(void *opaque, unsigned int queue)
{
	struct virtio_net *n = opaque;

	return queue < VIRTIO_NET_NR_QUEUES ? n->kick_fd[queue] : -1;
}

/*
 * The driver reset the device (transport lock held). The transport forgets the
 * queues only after this returns, so the thread stays parked until the driver
 * sets DRIVER_OK again (net_driver_ok), not just until we return.
 */
static void net_reset(void *opaque)
{
	struct virtio_net *n = opaque;
	bool hold;

	pthread_mutex_lock(&n->lock);
	hold = !n->reset_hold;
	n->reset_hold = true;
	pthread_mutex_unlock(&n->lock);
	if (hold)
		virtio_net__quiesce(n);
	pthread_mutex_lock(&n->lock);
	n->status &= (uint16_t)~VIRTIO_NET_S_ANNOUNCE;
	pthread_mutex_unlock(&n->lock);
}

/* ---- backend polling ---- */

static void poll_backend(struct virtio_net *n, bool on)
{
	struct epoll_event ev = { .events = on ? EPOLLIN : 0, .data.u32 = TAG_BACKEND };

	if (n->backend_polled == on || n->backend_broken)
		return;
	if (epoll_ctl(n->epoll_fd, EPOLL_CTL_MOD, n->be.ops->poll_fd(n->be.opaque), &ev) == 0)
		n->backend_polled = on;
}

/* The backend cannot deliver frames any more: stop polling it for good. */
static void backend_failed(struct virtio_net *n, const char *what, ssize_t err)
{
	STAT_INC(n, backend_errors);
	if (n->backend_broken)
		return;
	pr_err("%s: backend %s: %s; the device receives nothing more", n->name, what,
	       strerror((int)-err));
	/* EPOLLHUP/EPOLLERR are reported whatever the event mask: remove the fd. */
	epoll_ctl(n->epoll_fd, EPOLL_CTL_DEL, n->be.ops->poll_fd(n->be.opaque), NULL);
	n->backend_polled = false;
	n->backend_broken = true;
}

/* ---- receive ---- */

/*
 * Is a receive buffer waiting? If not, enables guest notifications (and checks
 * once more, for a buffer that came in between) so that the next one kicks us.
 */
static bool rx_buffer_waiting(struct virtq *vq)
{
	if (virtq__has_avail(vq))
		return true;
	if (virtq__enable_notify(vq))
		return true;
	return false;
}

/* Delivers the frame in n->buf (len bytes, header first) into a popped chain. */
static int rx_deliver(struct virtio_net *n, size_t len)
{
	struct virtio_net_hdr_v1 hdr = { .num_buffers = 1 };
	struct virtq_chain *c = &n->chain;
	uint32_t used = 0;
	int ret;

	/* No offloads: flags and GSO fields must be zero; num_buffers is 1 (LE). */
	memcpy(n->buf, &hdr, sizeof(hdr));
	if (c->writable_len >= len) {
		ret = virtq_chain__write(c, n->mem, 0, n->buf, len);
		if (ret) {
			virtio_mmio__set_needs_reset(&n->mmio, "rx: cannot write chain %u",
						     c->head);
			return ret;
		}
		used = (uint32_t)len;
		STAT_INC(n, rx_frames);
	} else {
		STAT_INC(n, rx_dropped);
	}
	return virtio_mmio__push(&n->mmio, VIRTIO_NET_Q_RX, c->head, used);
}

/*
 * Moves frames from the backend into receive chains. Returns true when it
 * stopped with work left (budget used up).
 */
static bool rx_process(struct virtio_net *n)
{
	struct virtq *vq = virtio_mmio__queue(&n->mmio, VIRTIO_NET_Q_RX);
	unsigned int done = 0, seen = 0;
	bool more = false;

	if (n->backend_broken || !virtio_mmio__queue_live(&n->mmio, VIRTIO_NET_Q_RX)) {
		poll_backend(n, false);
		return false;
	}
	/* Kicks are only wanted while we wait for buffers (rx_buffer_waiting). */
	virtq__disable_notify(vq);
	while (!quiesce_wanted(n)) {
		ssize_t len;

		/* Dropped frames count too: a flood of runts must not hog the thread. */
		if (seen++ == BUDGET) {
			more = true;
			break;
		}
		if (!rx_buffer_waiting(vq)) {
			/* Backpressure: frames stay in the backend until the guest kicks. */
			poll_backend(n, false);
			goto out;
		}
		len = n->be.ops->recv(n->be.opaque, n->buf, NET_BACKEND_MAX_FRAME);
		if (len == -EAGAIN)
			break;
		if (len == -EMSGSIZE || (len >= 0 && (size_t)len < HDR_LEN + ETH_HLEN)) {
			STAT_INC(n, rx_dropped);
			continue;
		}
		if (len < 0) {
			backend_failed(n, "read", len);
			goto out;
		}
		if (virtio_mmio__pop(&n->mmio, VIRTIO_NET_Q_RX, &n->chain) <= 0) {
			/* A broken ring (now NEEDS_RESET): this frame is lost. */
			STAT_INC(n, rx_dropped);
			goto out;
		}
		if (rx_deliver(n, (size_t)len))
			goto out;
		done++;
	}
	poll_backend(n, true);
out:
	if (done)
		virtio_mmio__notify_used(&n->mmio, VIRTIO_NET_Q_RX);
	return more;
}

/* ---- transmit ---- */

static void tx_learn(struct virtio_net *n, const uint8_t *frame, size_t len)
{
	uint8_t ip[4];
	bool changed;

	if (!announce__learn_ipv4(frame, len, n->mac, ip))
		return;
	pthread_mutex_lock(&n->lock);
	changed = !n->have_ipv4 || memcmp(n->ipv4, ip, sizeof(ip));
	n->have_ipv4 = true;
	memcpy(n->ipv4, ip, sizeof(ip));
	pthread_mutex_unlock(&n->lock);
	if (changed) {
		pr_debug("%s: guest IPv4 %u.%u.%u.%u (from its ARP)", n->name, ip[0], ip[1], ip[2],
			 ip[3]);
		announcer__set_ipv4(&n->announcer, ip);
	}
}

/* Sends one popped chain. 0, or <0 when the device is now in NEEDS_RESET. */
static int tx_one(struct virtio_net *n)
{
	struct virtq_chain *c = &n->chain;
	struct iovec iov;
	ssize_t sent;

	if (c->readable_len < HDR_LEN) {
		virtio_mmio__set_needs_reset(&n->mmio,
					     "tx: chain %u has %llu readable bytes, less than the "
					     "%llu-byte header",
					     c->head, (unsigned long long)c->readable_len,
					     (unsigned long long)HDR_LEN);
		return -EINVAL;
	}
	if (c->readable_len > NET_BACKEND_MAX_FRAME || c->readable_len < HDR_LEN + ETH_HLEN) {
		STAT_INC(n, tx_dropped);
		return virtio_mmio__push(&n->mmio, VIRTIO_NET_Q_TX, c->head, 0);
	}
	if (virtq_chain__read(c, n->mem, 0, n->buf, c->readable_len)) {
		virtio_mmio__set_needs_reset(&n->mmio, "tx: cannot read chain %u", c->head);
		return -EFAULT;
	}
	memset(n->buf, 0, HDR_LEN);
	tx_learn(n, n->buf + HDR_LEN, c->readable_len - HDR_LEN);
	iov.iov_base = n->buf;
	iov.iov_len = c->readable_len;
	sent = n->be.ops->send(n->be.opaque, &iov, 1);
	if (sent < 0)
		STAT_INC(n, tx_dropped);
	else
		STAT_INC(n, tx_frames);
	return virtio_mmio__push(&n->mmio, VIRTIO_NET_Q_TX, c->head, 0);
}

static bool tx_process(struct virtio_net *n)
{
	struct virtq *vq = virtio_mmio__queue(&n->mmio, VIRTIO_NET_Q_TX);
	unsigned int done = 0;
	bool more = false;

	if (!virtio_mmio__queue_live(&n->mmio, VIRTIO_NET_Q_TX))
		return false;
	virtq__disable_notify(vq);
	for (;;) {
		int ret;

		if (quiesce_wanted(n))
			break;
		if (done == BUDGET) {
			more = true;
			break;
		}
		ret = virtio_mmio__pop(&n->mmio, VIRTIO_NET_Q_TX, &n->chain);
		if (ret < 0)
			break;
		if (ret == 0) {
			if (virtq__enable_notify(vq)) {
				virtq__disable_notify(vq);
				continue;
			}
			break;
		}
		done++;
		if (tx_one(n))
			break;
	}
	if (done)
		virtio_mmio__notify_used(&n->mmio, VIRTIO_NET_Q_TX);
	return more;
}

/* ---- control queue ---- */

static uint8_t ctrl_command(struct virtio_net *n, uint8_t class, uint8_t cmd)
{
	bool cleared = false;

	if (class != VIRTIO_NET_CTRL_ANNOUNCE || cmd != VIRTIO_NET_CTRL_ANNOUNCE_ACK ||
	    !negotiated(n, VIRTIO_NET_F_GUEST_ANNOUNCE))
		return VIRTIO_NET_ERR;
	pthread_mutex_lock(&n->lock);
	if (n->status & VIRTIO_NET_S_ANNOUNCE) {
		n->status &= (uint16_t)~VIRTIO_NET_S_ANNOUNCE;
		cleared = true;
	}
	pthread_mutex_unlock(&n->lock);
	if (cleared)
		virtio_mmio__config_changed(&n->mmio);
	return VIRTIO_NET_OK;
}

static int ctrl_one(struct virtio_net *n)
{
	struct virtq_chain *c = &n->chain;
	uint8_t hdr[2], ack;

	if (c->readable_len < sizeof(hdr) || c->writable_len < 1 ||
	    virtq_chain__read(c, n->mem, 0, hdr, sizeof(hdr))) {
		virtio_mmio__set_needs_reset(&n->mmio,
					     "ctrl: chain %u is not {class, command, ..., ack}",
					     c->head);
		return -EINVAL;
	}
	STAT_INC(n, ctrl_cmds);
	ack = ctrl_command(n, hdr[0], hdr[1]);
	/* ack is the last device-writable byte (results, if any, come before it). */
	if (virtq_chain__write(c, n->mem, c->writable_len - 1, &ack, 1)) {
		virtio_mmio__set_needs_reset(&n->mmio, "ctrl: cannot write the ack");
		return -EFAULT;
	}
	return virtio_mmio__push(&n->mmio, VIRTIO_NET_Q_CTRL, c->head,
				 (uint32_t)MIN(c->writable_len, (uint64_t)UINT32_MAX));
}

static bool ctrl_process(struct virtio_net *n)
{
	unsigned int done = 0;
	bool more = false;

	if (!virtio_mmio__queue_live(&n->mmio, VIRTIO_NET_Q_CTRL))
		return false;
	while (!quiesce_wanted(n)) {
		if (done == BUDGET) {
			more = true;
			break;
		}
		if (virtio_mmio__pop(&n->mmio, VIRTIO_NET_Q_CTRL, &n->chain) <= 0)
			break;
		done++;
		if (ctrl_one(n))
			break;
	}
	if (done)
		virtio_mmio__notify_used(&n->mmio, VIRTIO_NET_Q_CTRL);
	return more;
}

/* ---- announce ---- */

static int announce_send(void *opaque, const uint8_t *frame, size_t len)
{
	struct virtio_net *n = opaque;
	uint8_t hdr[NET_BACKEND_HDR_LEN] = { 0 };
	struct iovec iov[2] = {
		{ .iov_base = hdr, .iov_len = sizeof(hdr) },
		{ .iov_base = (void *)frame, .iov_len = len },
	};
	ssize_t ret = n->be.ops->send(n->be.opaque, iov, 2);

	return ret < 0 ? (int)ret : 0;
}

static void arm_timer(struct virtio_net *n, uint64_t due_ns)
{
	struct itimerspec its = { 0 };

	if (due_ns != ANNOUNCER_IDLE) {
		/* An absolute time of 0 would disarm: a due time is never 0 here. */
		its.it_value.tv_sec = (time_t)(due_ns / 1000000000ULL);
		its.it_value.tv_nsec = (long)(due_ns % 1000000000ULL);
		if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
			its.it_value.tv_nsec = 1;
	}
	timerfd_settime(n->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void announce_process(struct virtio_net *n)
{
	struct announce_params p;
	bool start;
	uint8_t mac[ETH_ALEN], ip[4];
	bool have_ip;
	uint64_t due;

	pthread_mutex_lock(&n->lock);
	start = n->announce_pending;
	n->announce_pending = false;
	p = n->announce_params;
	memcpy(mac, n->mac, ETH_ALEN);
	memcpy(ip, n->ipv4, sizeof(ip));
	have_ip = n->have_ipv4;
	pthread_mutex_unlock(&n->lock);
	if (start && announcer__start(&n->announcer, &p, mac, have_ip ? ip : NULL,
				      util__now_ns()))
		pr_warn("%s: announce: bad schedule parameters", n->name);
	if (n->backend_broken)
		announcer__cancel(&n->announcer);
	due = announcer__run(&n->announcer, util__now_ns(), announce_send, n);
	if (due != n->timer_due)
		arm_timer(n, due);
	n->timer_due = due;
}

/* ---- the I/O thread ---- */

void virtio_net__process(struct virtio_net *n)
{
	bool more = false;

	more |= tx_process(n);
	more |= rx_process(n);
	more |= ctrl_process(n);
	announce_process(n);
	/* Work left after a full budget: come back after one epoll round. */
	if (more && !quiesce_wanted(n))
		eventfd_signal(n->ctl_fd);
}

/* Parks while a quiesce is asked for; returns true when the thread must end. */
static bool park(struct virtio_net *n)
{
	bool stop;

	pthread_mutex_lock(&n->lock);
	while (n->quiesce_depth && !n->stop) {
		if (!n->parked) {
			n->parked = true;
			pthread_cond_broadcast(&n->cond);
		}
		pthread_cond_wait(&n->cond, &n->lock);
	}
	n->parked = false;
	stop = n->stop;
	pthread_mutex_unlock(&n->lock);
	return stop;
}

static void drain_events(struct virtio_net *n, const struct epoll_event *ev, int nr)
{
	for (int i = 0; i < nr; i++) {
		uint32_t tag = ev[i].data.u32;

		if (tag < VIRTIO_NET_NR_QUEUES)
			eventfd_drain(n->kick_fd[tag]);
		else if (tag == TAG_CTL)
			eventfd_drain(n->ctl_fd);
		else if (tag == TAG_TIMER)
			eventfd_drain(n->timer_fd); /* a timerfd reads like an eventfd */
		else if (tag == TAG_BACKEND && (ev[i].events & (EPOLLHUP | EPOLLERR)))
			backend_failed(n, "hang-up", -EPIPE);
	}
}

static void *io_thread(void *arg)
{
	struct virtio_net *n = arg;
	struct epoll_event ev[MAX_EVENTS];

	while (!park(n)) {
		int nr;

		virtio_net__process(n);
		nr = epoll_wait(n->epoll_fd, ev, MAX_EVENTS, -1);
		if (nr < 0 && errno != EINTR) {
			pr_err("%s: epoll_wait: %s", n->name, strerror(errno));
			break;
		}
		drain_events(n, ev, nr > 0 ? nr : 0);
	}
	return NULL;
}

void virtio_net__quiesce(struct virtio_net *n)
{
	pthread_mutex_lock(&n->lock);
	__atomic_add_fetch(&n->quiesce_depth, 1, __ATOMIC_RELEASE);
	if (n->thread_started) {
		eventfd_signal(n->ctl_fd);
		while (!n->parked && !n->stop)
			pthread_cond_wait(&n->cond, &n->lock);
	}
	pthread_mutex_unlock(&n->lock);
}

void virtio_net__resume(struct virtio_net *n)
{
	pthread_mutex_lock(&n->lock);
	if (n->quiesce_depth && !__atomic_sub_fetch(&n->quiesce_depth, 1, __ATOMIC_RELEASE))
		pthread_cond_broadcast(&n->cond);
	pthread_mutex_unlock(&n->lock);
	eventfd_signal(n->ctl_fd);
}

/* ---- set-up ---- */

static int epoll_add(struct virtio_net *n, int fd, uint32_t events, uint32_t tag)
{
	struct epoll_event ev = { .events = events, .data.u32 = tag };

	if (epoll_ctl(n->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	return 0;
}

static void close_fds(struct virtio_net *n)
{
	int *fds[] = { &n->kick_fd[0], &n->kick_fd[1], &n->kick_fd[2],
		       &n->ctl_fd,     &n->timer_fd,   &n->epoll_fd };

	for (size_t i = 0; i < ARRAY_SIZE(fds); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

static int open_fds(struct virtio_net *n)
{
	int ret;

	n->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	n->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	n->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	for (int q = 0; q < VIRTIO_NET_NR_QUEUES; q++)
		n->kick_fd[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (n->epoll_fd < 0 || n->ctl_fd < 0 || n->timer_fd < 0 || n->kick_fd[0] < 0 ||
	    n->kick_fd[1] < 0 || n->kick_fd[2] < 0)
		return -errno;
	for (uint32_t q = 0; q < VIRTIO_NET_NR_QUEUES; q++) {
		ret = epoll_add(n, n->kick_fd[q], EPOLLIN, q);
		if (ret)
			return ret;
	}
	ret = epoll_add(n, n->ctl_fd, EPOLLIN, TAG_CTL);
	if (!ret)
		ret = epoll_add(n, n->timer_fd, EPOLLIN, TAG_TIMER);
	if (!ret)
		ret = epoll_add(n, n->be.ops->poll_fd(n->be.opaque), 0, TAG_BACKEND);
	return ret;
}

static int check_params(const struct virtio_net_params *p, struct announce_params *ap)
{
	static const struct announce_params none;

	if (!p->backend.ops || !p->backend.ops->recv || !p->backend.ops->send ||
	    !p->backend.ops->poll_fd)
		return -EINVAL;
	if (p->have_mac && !mac_usable(p->mac))
		return -EINVAL;
	if (!memcmp(&p->announce, &none, sizeof(none)))
		announce__default_params(ap);
	else
		*ap = p->announce;
	return announce__check_params(ap);
}

static void init_fields(struct virtio_net *n, struct guest_mem *mem, const char *name,
			const struct virtio_net_params *p)
{
	memset(n, 0, offsetof(struct virtio_net, chain));
	memset(&n->stats, 0, sizeof(n->stats));
	n->mem = mem;
	n->be = p->backend;
	snprintf(n->name, sizeof(n->name), "%s", name ? name : "virtio-net");
	n->status = VIRTIO_NET_S_LINK_UP;
	n->have_ipv4 = p->have_ipv4;
	memcpy(n->ipv4, p->ipv4, sizeof(n->ipv4));
	n->epoll_fd = n->ctl_fd = n->timer_fd = -1;
	for (int q = 0; q < VIRTIO_NET_NR_QUEUES; q++)
		n->kick_fd[q] = -1;
	announcer__init(&n->announcer);
	n->timer_due = ANNOUNCER_IDLE;
	n->ops = (struct virtio_dev_ops){
		.device_id = VIRTIO_ID_NET,
		.features = OFFERED_FEATURES,
		.config_size = VIRTIO_NET_CFG_SIZE,
		.nr_queues = VIRTIO_NET_NR_QUEUES,
		.queue_max_size = VIRTIO_NET_QUEUE_SIZE,
		.config_read = net_config_read,
		.features_ok = net_features_ok,
		.driver_ok = net_driver_ok,
		.notify = net_notify,
		.notify_fd = net_notify_fd,
		.reset = net_reset,
	};
}

int virtio_net__init(struct virtio_net *n, struct guest_mem *mem, const char *name,
		     const struct virtio_net_params *p, void (*raise)(void *irq_opaque),
		     void *irq_opaque)
{
	struct announce_params ap;
	int ret;

	ret = check_params(p, &ap);
	if (ret)
		return ret;
	init_fields(n, mem, name, p);
	n->announce_params = ap;
	if (p->have_mac)
		memcpy(n->mac, p->mac, ETH_ALEN);
	else
		ret = virtio_net__random_mac(n->mac);
	if (ret)
		return ret;
	ret = -pthread_mutex_init(&n->lock, NULL);
	if (ret)
		return ret;
	ret = -pthread_cond_init(&n->cond, NULL);
	if (ret)
		goto err_mutex;
	n->buf = malloc(NET_BACKEND_MAX_FRAME);
	if (!n->buf) {
		ret = -ENOMEM;
		goto err_cond;
	}
	ret = open_fds(n);
	if (ret)
		goto err_fds;
	ret = virtio_mmio__init(&n->mmio, mem, n->name, &n->ops, n, raise, irq_opaque);
	if (ret)
		goto err_fds;
	return 0;

err_fds:
	close_fds(n);
	free(n->buf);
	n->buf = NULL;
err_cond:
	pthread_cond_destroy(&n->cond);
err_mutex:
	pthread_mutex_destroy(&n->lock);
	return ret;
}

int virtio_net__start(struct virtio_net *n)
{
	int ret;

	if (n->thread_started)
		return -EBUSY;
	ret = -pthread_create(&n->thread, NULL, io_thread, n);
	if (ret)
		return ret;
	pthread_mutex_lock(&n->lock);
	n->thread_started = true;
	pthread_mutex_unlock(&n->lock);
	return 0;
}

void virtio_net__exit(struct virtio_net *n)
{
	if (n->thread_started) {
		pthread_mutex_lock(&n->lock);
		n->stop = true;
		pthread_cond_broadcast(&n->cond);
		pthread_mutex_unlock(&n->lock);
		eventfd_signal(n->ctl_fd);
		pthread_join(n->thread, NULL);
		n->thread_started = false;
	}
	virtio_mmio__exit(&n->mmio);
	close_fds(n);
	free(n->buf);
	n->buf = NULL;
	pthread_cond_destroy(&n->cond);
	pthread_mutex_destroy(&n->lock);
}

/* ---- status, announce ---- */

void virtio_net__announce(struct virtio_net *n)
{
	bool guest = negotiated(n, VIRTIO_NET_F_GUEST_ANNOUNCE) &&
		     (__atomic_load_n(&n->mmio.status, __ATOMIC_ACQUIRE) &
		      VIRTIO_STATUS_DRIVER_OK);

	pthread_mutex_lock(&n->lock);
	n->announce_pending = true;
	if (guest)
		n->status |= VIRTIO_NET_S_ANNOUNCE;
	pthread_mutex_unlock(&n->lock);
	if (guest)
		virtio_mmio__config_changed(&n->mmio);
	eventfd_signal(n->ctl_fd);
}

void virtio_net__set_link(struct virtio_net *n, bool up)
{
	bool changed;

	pthread_mutex_lock(&n->lock);
	changed = !!(n->status & VIRTIO_NET_S_LINK_UP) != up;
	if (up)
		n->status |= VIRTIO_NET_S_LINK_UP;
	else
		n->status &= (uint16_t)~VIRTIO_NET_S_LINK_UP;
	pthread_mutex_unlock(&n->lock);
	if (changed && negotiated(n, VIRTIO_NET_F_STATUS))
		virtio_mmio__config_changed(&n->mmio);
}

void virtio_net__get_mac(struct virtio_net *n, uint8_t mac[ETH_ALEN])
{
	pthread_mutex_lock(&n->lock);
	memcpy(mac, n->mac, ETH_ALEN);
	pthread_mutex_unlock(&n->lock);
}

uint16_t virtio_net__status(struct virtio_net *n)
{
	uint16_t s;

	pthread_mutex_lock(&n->lock);
	s = n->status;
	pthread_mutex_unlock(&n->lock);
	return s;
}

void virtio_net__get_stats(struct virtio_net *n, struct virtio_net_stats *st)
{
	const uint64_t *src = (const uint64_t *)&n->stats;
	uint64_t *dst = (uint64_t *)st;

	for (size_t i = 0; i < sizeof(*st) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

/* ---- migration ---- */

void virtio_net__save(struct virtio_net *n, struct virtio_net_state *st)
{
	memset(st, 0, sizeof(*st));
	virtio_net__quiesce(n);
	pthread_mutex_lock(&n->lock);
	memcpy(st->mac, n->mac, ETH_ALEN);
	st->status = n->status;
	st->have_ipv4 = n->have_ipv4;
	memcpy(st->ipv4, n->ipv4, sizeof(st->ipv4));
	pthread_mutex_unlock(&n->lock);
	virtio_mmio__save(&n->mmio, &st->transport);
	virtio_net__resume(n);
}

static int state_check(const struct virtio_net *n, const struct virtio_net_state *st)
{
	uint64_t f = st->transport.driver_features;

	if (!mac_usable(st->mac)) {
		pr_err("%s: state: MAC %02x:%02x:%02x:%02x:%02x:%02x is not a unicast address",
		       n->name, st->mac[0], st->mac[1], st->mac[2], st->mac[3], st->mac[4],
		       st->mac[5]);
		return -EINVAL;
	}
	if (st->status & ~(VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE)) {
		pr_err("%s: state: unknown status bits 0x%x", n->name, st->status);
		return -EINVAL;
	}
	if (st->have_ipv4 > 1) {
		pr_err("%s: state: have_ipv4 is %u", n->name, st->have_ipv4);
		return -EINVAL;
	}
	if ((st->status & VIRTIO_NET_S_ANNOUNCE) &&
	    !(f & VIRTIO_BIT(VIRTIO_NET_F_GUEST_ANNOUNCE))) {
		pr_err("%s: state: announce pending without GUEST_ANNOUNCE", n->name);
		return -EINVAL;
	}
	if (net_features_ok(NULL, f)) {
		pr_err("%s: state: GUEST_ANNOUNCE negotiated without CTRL_VQ", n->name);
		return -EINVAL;
	}
	return 0;
}

int virtio_net__load(struct virtio_net *n, const struct virtio_net_state *st)
{
	bool release = false;
	int ret = state_check(n, st);

	if (ret)
		return ret;
	virtio_net__quiesce(n);
	ret = virtio_mmio__load(&n->mmio, &st->transport);
	if (!ret) {
		pthread_mutex_lock(&n->lock);
		memcpy(n->mac, st->mac, ETH_ALEN);
		n->status = st->status;
		n->have_ipv4 = st->have_ipv4;
		memcpy(n->ipv4, st->ipv4, sizeof(n->ipv4));
		/* A device held since a reset here runs again if the state says it runs. */
		release = n->reset_hold && (st->transport.status & VIRTIO_STATUS_DRIVER_OK);
		if (release)
			n->reset_hold = false;
		pthread_mutex_unlock(&n->lock);
		announcer__set_ipv4(&n->announcer, st->have_ipv4 ? st->ipv4 : NULL);
	}
	if (release)
		virtio_net__resume(n);
	virtio_net__resume(n);
	return ret;
}
