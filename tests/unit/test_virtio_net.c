// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-net against a fake driver: the test writes descriptors and rings into
 * a real guest_mem, programs the device through its virtio-mmio registers and
 * plays the network on the other end of a SOCK_SEQPACKET socketpair (the
 * device's backend). Most tests drive the device with virtio_net__process()
 * (no thread, deterministic); the threaded ones bound every wait.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "godwit/bus.h"
#include "godwit/memory.h"
#include "godwit/virtio_net.h"

#define QSIZE	  16
#define RING_BASE 0x10000ULL /* queue q: desc, avail, used at +q*0x4000 */
#define BUF_BASE  0x100000ULL
#define BUF_STEP  0x1000ULL /* one page per buffer */
#define HDR	  12

#define FEAT_ALL                                                                                   \
	(VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_NET_F_MAC) |                           \
	 VIRTIO_BIT(VIRTIO_NET_F_STATUS) | VIRTIO_BIT(VIRTIO_NET_F_CTRL_VQ) |                      \
	 VIRTIO_BIT(VIRTIO_NET_F_GUEST_ANNOUNCE))

static const uint8_t test_mac[ETH_ALEN] = { 0x52, 0x54, 0x00, 0x0a, 0x0b, 0x0c };

struct driver_q {
	uint16_t next_desc;
	uint16_t avail_idx;
	uint16_t used_seen;
};

struct fixture {
	struct guest_mem mem;
	int sv[2]; /* sv[0]: the device's backend; sv[1]: the network */
	struct virtio_net *n;
	int irqs;
	struct driver_q q[VIRTIO_NET_NR_QUEUES];
	uint64_t next_buf;
};

static void raise_irq(void *opaque)
{
	struct fixture *f = opaque;

	__atomic_fetch_add(&f->irqs, 1, __ATOMIC_SEQ_CST);
}

/* ---- registers ---- */

static void mmio_write(struct virtio_net *n, uint64_t off, uint32_t val)
{
	struct bus_access a = { .offset = off, .data = (uint8_t *)&val, .size = 4,
				.is_write = true };

	virtio_mmio__access(&n->mmio, &a);
}

static uint32_t mmio_read(struct virtio_net *n, uint64_t off, unsigned int size)
{
	uint64_t val = 0;
	struct bus_access a = { .offset = off, .data = (uint8_t *)&val, .size = size };

	virtio_mmio__access(&n->mmio, &a);
	return (uint32_t)val;
}

static uint64_t device_features(struct virtio_net *n)
{
	uint64_t f;

	mmio_write(n, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	f = mmio_read(n, VIRTIO_MMIO_DEVICE_FEATURES, 4);
	mmio_write(n, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	return f | (uint64_t)mmio_read(n, VIRTIO_MMIO_DEVICE_FEATURES, 4) << 32;
}

static uint64_t desc_gpa(unsigned int q)
{
	return RING_BASE + q * 0x4000ULL;
}

static uint64_t avail_gpa(unsigned int q)
{
	return desc_gpa(q) + 0x1000;
}

static uint64_t used_gpa(unsigned int q)
{
	return desc_gpa(q) + 0x2000;
}

/* Negotiates @features; returns the status the device shows afterwards. */
static uint32_t negotiate(struct fixture *f, uint64_t features)
{
	struct virtio_net *n = f->n;

	mmio_write(n, VIRTIO_MMIO_STATUS, 0);
	mmio_write(n, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	mmio_write(n, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	mmio_write(n, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	mmio_write(n, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
	mmio_write(n, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	mmio_write(n, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
	mmio_write(n, VIRTIO_MMIO_STATUS,
		   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	return mmio_read(n, VIRTIO_MMIO_STATUS, 4);
}

/* A whole driver start-up: features, all three queues, DRIVER_OK. */
static void driver_init(struct fixture *f, uint64_t features)
{
	struct virtio_net *n = f->n;
	uint8_t zero[0x3000] = { 0 };

	assert_true(negotiate(f, features) & VIRTIO_STATUS_FEATURES_OK);
	for (unsigned int q = 0; q < VIRTIO_NET_NR_QUEUES; q++) {
		assert_int_equal(guest_mem__write(&f->mem, desc_gpa(q), zero, sizeof(zero)), 0);
		mmio_write(n, VIRTIO_MMIO_QUEUE_SEL, q);
		assert_int_equal(mmio_read(n, VIRTIO_MMIO_QUEUE_NUM_MAX, 4), VIRTIO_NET_QUEUE_SIZE);
		mmio_write(n, VIRTIO_MMIO_QUEUE_NUM, QSIZE);
		mmio_write(n, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc_gpa(q));
		mmio_write(n, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
		mmio_write(n, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)avail_gpa(q));
		mmio_write(n, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, 0);
		mmio_write(n, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)used_gpa(q));
		mmio_write(n, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 0);
		mmio_write(n, VIRTIO_MMIO_QUEUE_READY, 1);
		assert_int_equal(mmio_read(n, VIRTIO_MMIO_QUEUE_READY, 4), 1);
	}
	memset(f->q, 0, sizeof(f->q));
	mmio_write(n, VIRTIO_MMIO_STATUS,
		   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
			   VIRTIO_STATUS_DRIVER_OK);
	assert_true(mmio_read(n, VIRTIO_MMIO_STATUS, 4) & VIRTIO_STATUS_DRIVER_OK);
}

/* ---- rings, as a driver writes them ---- */

static void put16(struct fixture *f, uint64_t gpa, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

	assert_int_equal(guest_mem__write(&f->mem, gpa, b, 2), 0);
}

static uint16_t get16(struct fixture *f, uint64_t gpa)
{
	uint8_t b[2];

	assert_int_equal(guest_mem__read(&f->mem, gpa, b, 2), 0);
	return (uint16_t)(b[0] | b[1] << 8);
}

static uint32_t get32(struct fixture *f, uint64_t gpa)
{
	uint8_t b[4];

	assert_int_equal(guest_mem__read(&f->mem, gpa, b, 4), 0);
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

static void write_desc(struct fixture *f, unsigned int q, uint16_t i, const struct seg *s,
		       uint16_t flags, uint16_t next)
{
	uint8_t d[16];

	for (int b = 0; b < 8; b++)
		d[b] = (uint8_t)(s->gpa >> (8 * b));
	for (int b = 0; b < 4; b++)
		d[8 + b] = (uint8_t)(s->len >> (8 * b));
	d[12] = (uint8_t)flags;
	d[13] = (uint8_t)(flags >> 8);
	d[14] = (uint8_t)next;
	d[15] = (uint8_t)(next >> 8);
	assert_int_equal(guest_mem__write(&f->mem, desc_gpa(q) + 16ULL * i, d, 16), 0);
}

/* Makes a chain available (no kick); returns its head. */
static uint16_t add_chain(struct fixture *f, unsigned int q, const struct seg *segs, int nr)
{
	struct driver_q *dq = &f->q[q];
	uint16_t head = dq->next_desc % QSIZE;

	for (int i = 0; i < nr; i++) {
		uint16_t idx = (uint16_t)((head + i) % QSIZE);
		uint16_t flags = (segs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
				 (i + 1 < nr ? VIRTQ_DESC_F_NEXT : 0);

		write_desc(f, q, idx, &segs[i], flags, (uint16_t)((idx + 1) % QSIZE));
	}
	dq->next_desc = (uint16_t)(dq->next_desc + nr);
	put16(f, avail_gpa(q) + 4 + 2ULL * (dq->avail_idx % QSIZE), head);
	dq->avail_idx++;
	put16(f, avail_gpa(q) + 2, dq->avail_idx);
	return head;
}

static void kick(struct fixture *f, unsigned int q)
{
	mmio_write(f->n, VIRTIO_MMIO_QUEUE_NOTIFY, q);
}

static uint16_t used_idx(struct fixture *f, unsigned int q)
{
	return get16(f, used_gpa(q) + 2);
}

/* The next used element: asserts there is one. */
static void take_used(struct fixture *f, unsigned int q, uint16_t *id, uint32_t *len)
{
	struct driver_q *dq = &f->q[q];
	uint64_t e = used_gpa(q) + 4 + 8ULL * (dq->used_seen % QSIZE);

	assert_true(used_idx(f, q) != dq->used_seen);
	*id = (uint16_t)get32(f, e);
	*len = get32(f, e + 4);
	dq->used_seen++;
}

static uint64_t alloc_buf(struct fixture *f)
{
	uint64_t gpa = f->next_buf;

	f->next_buf += BUF_STEP;
	return gpa;
}

static bool needs_reset(struct fixture *f)
{
	return mmio_read(f->n, VIRTIO_MMIO_STATUS, 4) & VIRTIO_STATUS_NEEDS_RESET;
}

/* ---- the network side ---- */

static size_t make_frame(uint8_t *fr, const uint8_t *dst, const uint8_t *src, uint8_t fill,
			 size_t len)
{
	memcpy(fr, dst, 6);
	memcpy(fr + 6, src, 6);
	fr[12] = 0x88;
	fr[13] = 0xb5;
	memset(fr + 14, fill, len - 14);
	return len;
}

static void net_send(struct fixture *f, const uint8_t *hdr, const uint8_t *frame, size_t len)
{
	uint8_t zero[HDR] = { 0 };
	struct iovec iov[2] = { { .iov_base = (void *)(hdr ? hdr : zero), .iov_len = HDR },
				{ .iov_base = (void *)frame, .iov_len = len } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };

	assert_int_equal(sendmsg(f->sv[1], &m, 0), (ssize_t)(HDR + len));
}

/* Receives one frame from the device within ms; its length (header included) or -1. */
static ssize_t net_recv(struct fixture *f, uint8_t *buf, size_t len, int ms)
{
	struct pollfd p = { .fd = f->sv[1], .events = POLLIN };

	if (poll(&p, 1, ms) != 1)
		return -1;
	return recv(f->sv[1], buf, len, MSG_DONTWAIT);
}

/* ---- fixture ---- */

static int make_dev(struct fixture *f, struct virtio_net **out, const uint8_t *mac)
{
	struct virtio_net_params p = { 0 };
	struct virtio_net *n = calloc(1, sizeof(*n));

	if (!n)
		return -1;
	net_backend__from_fd(&p.backend, &f->sv[0]);
	if (mac) {
		p.have_mac = true;
		memcpy(p.mac, mac, ETH_ALEN);
	}
	if (virtio_net__init(n, &f->mem, "virtio-net-test", &p, raise_irq, f)) {
		free(n);
		return -1;
	}
	*out = n;
	return 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || guest_mem__init(&f->mem, 64 * MiB))
		return -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, f->sv))
		return -1;
	if (make_dev(f, &f->n, test_mac))
		return -1;
	f->next_buf = BUF_BASE;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	virtio_net__exit(f->n);
	free(f->n);
	close(f->sv[0]);
	close(f->sv[1]);
	guest_mem__exit(&f->mem);
	free(f);
	return 0;
}

/* ---- tests ---- */

static void test_features_and_config(void **state)
{
	struct fixture *f = *state;
	struct virtio_net *n = f->n;
	uint64_t feat = device_features(n), v1;
	uint8_t mac[ETH_ALEN];

	assert_int_equal(mmio_read(n, VIRTIO_MMIO_DEVICE_ID, 4), VIRTIO_ID_NET);
	assert_true(feat & VIRTIO_BIT(VIRTIO_F_VERSION_1));
	assert_true(feat & VIRTIO_BIT(VIRTIO_NET_F_MAC));
	assert_true(feat & VIRTIO_BIT(VIRTIO_NET_F_STATUS));
	assert_true(feat & VIRTIO_BIT(VIRTIO_NET_F_CTRL_VQ));
	assert_true(feat & VIRTIO_BIT(VIRTIO_NET_F_GUEST_ANNOUNCE));
	assert_true(feat & VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
	/* No offloads, no mergeable buffers, no multiqueue. */
	assert_int_equal(feat & 0xffffffULL & ~(VIRTIO_BIT(VIRTIO_NET_F_MAC) |
						VIRTIO_BIT(VIRTIO_NET_F_STATUS) |
						VIRTIO_BIT(VIRTIO_NET_F_CTRL_VQ) |
						VIRTIO_BIT(VIRTIO_NET_F_GUEST_ANNOUNCE)),
			 0);

	/* Config space: MAC byte by byte, status LINK_UP, one queue pair. */
	for (int i = 0; i < ETH_ALEN; i++)
		mac[i] = (uint8_t)mmio_read(n, VIRTIO_MMIO_CONFIG + i, 1);
	assert_memory_equal(mac, test_mac, ETH_ALEN);
	assert_int_equal(mmio_read(n, VIRTIO_MMIO_CONFIG + 6, 2), VIRTIO_NET_S_LINK_UP);
	assert_int_equal(mmio_read(n, VIRTIO_MMIO_CONFIG + 8, 2), 1);
	assert_int_equal(mmio_read(n, VIRTIO_MMIO_CONFIG + 10, 2), 0); /* past the end */
	/* Config writes (the MAC is read-only in virtio 1.x) change nothing. */
	{
		uint8_t b = 0xee;
		struct bus_access a = { .offset = VIRTIO_MMIO_CONFIG, .data = &b, .size = 1,
					.is_write = true };

		virtio_mmio__access(&n->mmio, &a);
		assert_int_equal(mmio_read(n, VIRTIO_MMIO_CONFIG, 1), test_mac[0]);
	}

	/* GUEST_ANNOUNCE needs CTRL_VQ: refused at FEATURES_OK. */
	v1 = VIRTIO_BIT(VIRTIO_F_VERSION_1);
	assert_false(negotiate(f, v1 | VIRTIO_BIT(VIRTIO_NET_F_GUEST_ANNOUNCE)) &
		     VIRTIO_STATUS_FEATURES_OK);
	assert_true(negotiate(f, FEAT_ALL) & VIRTIO_STATUS_FEATURES_OK);
	assert_true(negotiate(f, v1) & VIRTIO_STATUS_FEATURES_OK);
	assert_true(negotiate(f, v1 | VIRTIO_BIT(VIRTIO_NET_F_CTRL_VQ)) & VIRTIO_STATUS_FEATURES_OK);
}

static void test_mac_parse_and_random(void **state)
{
	uint8_t mac[ETH_ALEN], m2[ETH_ALEN];

	(void)state;
	assert_int_equal(virtio_net__parse_mac("52:54:00:0A:0b:0c", mac), 0);
	assert_memory_equal(mac, test_mac, ETH_ALEN);
	assert_int_equal(virtio_net__parse_mac("01:00:5e:00:00:01", mac), -EINVAL); /* multicast */
	assert_int_equal(virtio_net__parse_mac("00:00:00:00:00:00", mac), -EINVAL);
	assert_int_equal(virtio_net__parse_mac("52:54:00:0a:0b", mac), -EINVAL);
	assert_int_equal(virtio_net__parse_mac("52:54:00:0a:0b:0c:", mac), -EINVAL);
	assert_int_equal(virtio_net__parse_mac("52-54-00-0a-0b-0c", mac), -EINVAL);
	assert_int_equal(virtio_net__parse_mac("52:54:00:0a:0b:0g", mac), -EINVAL);
	assert_int_equal(virtio_net__parse_mac(NULL, mac), -EINVAL);
	assert_memory_equal(mac, test_mac, ETH_ALEN); /* untouched on error */

	assert_int_equal(virtio_net__random_mac(mac), 0);
	assert_int_equal(mac[0], 0x52);
	assert_int_equal(mac[1], 0x54);
	assert_int_equal(mac[2], 0x00);
	/* Two draws of 24 random bits: equal once in 16 million. Try three times. */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(virtio_net__random_mac(m2), 0);
		if (memcmp(mac, m2, ETH_ALEN))
			return;
	}
	fail_msg("random MACs keep coming out the same");
}

/* Without --net mac= the device makes one up and keeps it. */
static void test_generated_mac(void **state)
{
	struct fixture *f = *state;
	struct virtio_net *n2;
	uint8_t a[ETH_ALEN], b[ETH_ALEN];

	assert_int_equal(make_dev(f, &n2, NULL), 0);
	virtio_net__get_mac(n2, a);
	assert_int_equal(a[0], 0x52);
	for (int i = 0; i < ETH_ALEN; i++)
		b[i] = (uint8_t)mmio_read(n2, VIRTIO_MMIO_CONFIG + i, 1);
	assert_memory_equal(a, b, ETH_ALEN);
	virtio_net__exit(n2);
	free(n2);
}

static void test_tx(void **state)
{
	struct fixture *f = *state;
	uint8_t hdr[HDR], frame[100], buf[256];
	uint64_t h = alloc_buf(f), b = alloc_buf(f);
	struct seg segs[2] = { { h, HDR, false }, { b, 100, false } };
	uint8_t zero[HDR] = { 0 };
	struct virtio_net_stats st;
	uint16_t head, id;
	uint32_t len;

	driver_init(f, FEAT_ALL);
	/* Garbage in the header: no offload was negotiated, so it must not leak out. */
	memset(hdr, 0x5a, sizeof(hdr));
	make_frame(frame, (const uint8_t[]){ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, test_mac, 0x77,
		   sizeof(frame));
	assert_int_equal(guest_mem__write(&f->mem, h, hdr, HDR), 0);
	assert_int_equal(guest_mem__write(&f->mem, b, frame, sizeof(frame)), 0);
	head = add_chain(f, VIRTIO_NET_Q_TX, segs, 2);
	kick(f, VIRTIO_NET_Q_TX);
	f->irqs = 0;
	virtio_net__process(f->n);

	assert_int_equal(net_recv(f, buf, sizeof(buf), 0), HDR + sizeof(frame));
	assert_memory_equal(buf, zero, HDR);
	assert_memory_equal(buf + HDR, frame, sizeof(frame));
	take_used(f, VIRTIO_NET_Q_TX, &id, &len);
	assert_int_equal(id, head);
	assert_int_equal(len, 0);
	assert_true(f->irqs > 0);
	assert_true(mmio_read(f->n, VIRTIO_MMIO_INTERRUPT_STATUS, 4) & VIRTIO_MMIO_INT_VRING);

	/* Frames shorter than an Ethernet header are dropped, the chain returned. */
	segs[1].len = 5;
	head = add_chain(f, VIRTIO_NET_Q_TX, segs, 2);
	virtio_net__process(f->n);
	take_used(f, VIRTIO_NET_Q_TX, &id, &len);
	assert_int_equal(id, head);
	assert_int_equal(net_recv(f, buf, sizeof(buf), 0), -1);
	virtio_net__get_stats(f->n, &st);
	assert_int_equal(st.tx_frames, 1);
	assert_int_equal(st.tx_dropped, 1);
	assert_false(needs_reset(f));
}

/* The guest's own ARP teaches the device its IPv4 address, which then travels. */
static void test_tx_learns_ipv4(void **state)
{
	struct fixture *f = *state;
	static const uint8_t ip[4] = { 192, 0, 2, 77 };
	uint8_t frame[ANNOUNCE_FRAME_LEN], buf[256];
	uint64_t b = alloc_buf(f);
	struct seg seg = { b, HDR + ANNOUNCE_FRAME_LEN, false };
	struct virtio_net_state *st = calloc(1, sizeof(*st));

	driver_init(f, FEAT_ALL);
	announce__garp(frame, test_mac, ip);
	assert_int_equal(guest_mem__write(&f->mem, b + HDR, frame, sizeof(frame)), 0);
	add_chain(f, VIRTIO_NET_Q_TX, &seg, 1); /* header and frame in one buffer */
	virtio_net__process(f->n);
	assert_int_equal(net_recv(f, buf, sizeof(buf), 0), HDR + ANNOUNCE_FRAME_LEN);
	virtio_net__save(f->n, st);
	assert_int_equal(st->have_ipv4, 1);
	assert_memory_equal(st->ipv4, ip, 4);
	free(st);
}

static bool page_dirty(struct guest_mem *m, uint64_t gpa)
{
	uint64_t pfn = gpa / GUEST_PAGE_SIZE;

	return m->vmm_dirty[pfn / (8 * sizeof(long))] & (1UL << (pfn % (8 * sizeof(long))));
}

static void test_rx(void **state)
{
	struct fixture *f = *state;
	uint8_t frame[200], got[HDR + 200], nethdr[HDR];
	uint64_t b = alloc_buf(f);
	struct seg seg = { b, 1526, true };
	struct virtio_net_stats st;
	uint16_t head, id;
	uint32_t len;

	driver_init(f, FEAT_ALL);
	head = add_chain(f, VIRTIO_NET_Q_RX, &seg, 1);
	kick(f, VIRTIO_NET_Q_RX);
	/* The backend's header says "data valid": the guest did not ask, it gets zeros. */
	memset(nethdr, 0, sizeof(nethdr));
	nethdr[0] = 2;
	make_frame(frame, test_mac, (const uint8_t[]){ 0x52, 0x54, 0, 1, 2, 3 }, 0x42,
		   sizeof(frame));
	net_send(f, nethdr, frame, sizeof(frame));
	memset(f->mem.vmm_dirty, 0, (f->mem.nr_pages + 7) / 8);
	f->irqs = 0;
	virtio_net__process(f->n);

	take_used(f, VIRTIO_NET_Q_RX, &id, &len);
	assert_int_equal(id, head);
	assert_int_equal(len, HDR + sizeof(frame));
	assert_int_equal(guest_mem__read(&f->mem, b, got, sizeof(got)), 0);
	/* flags, gso_type, hdr_len, gso_size, csum_start, csum_offset 0; num_buffers 1 */
	assert_memory_equal(got, ((const uint8_t[HDR]){ [10] = 1 }), HDR);
	assert_memory_equal(got + HDR, frame, sizeof(frame));
	assert_true(page_dirty(&f->mem, b));		     /* migration sees the frame */
	assert_true(page_dirty(&f->mem, used_gpa(0)));	     /* and the used ring */
	assert_true(f->irqs > 0);
	virtio_net__get_stats(f->n, &st);
	assert_int_equal(st.rx_frames, 1);
}

/* A buffer split across several descriptors (header apart from the data). */
static void test_rx_scattered(void **state)
{
	struct fixture *f = *state;
	uint8_t frame[300], got[300];
	uint64_t b1 = alloc_buf(f), b2 = alloc_buf(f), b3 = alloc_buf(f);
	struct seg segs[3] = { { b1, HDR, true }, { b2, 100, true }, { b3, 1500, true } };
	uint16_t id;
	uint32_t len;

	driver_init(f, FEAT_ALL);
	add_chain(f, VIRTIO_NET_Q_RX, segs, 3);
	make_frame(frame, test_mac, test_mac, 0x33, sizeof(frame));
	net_send(f, NULL, frame, sizeof(frame));
	virtio_net__process(f->n);
	take_used(f, VIRTIO_NET_Q_RX, &id, &len);
	assert_int_equal(len, HDR + sizeof(frame));
	assert_int_equal(get16(f, b1 + 10), 1);
	assert_int_equal(guest_mem__read(&f->mem, b2, got, 100), 0);
	assert_int_equal(guest_mem__read(&f->mem, b3, got + 100, 200), 0);
	assert_memory_equal(got, frame, sizeof(frame));
}

/* No receive buffer: frames wait in the backend, none is lost, and none spins. */
static void test_rx_backpressure(void **state)
{
	struct fixture *f = *state;
	uint8_t frame[80], got[HDR + 80];
	struct virtio_net_stats st;
	uint64_t bufs[3];
	uint16_t id;
	uint32_t len;

	driver_init(f, FEAT_ALL);
	for (int i = 0; i < 3; i++) {
		make_frame(frame, test_mac, test_mac, (uint8_t)(0x10 + i), sizeof(frame));
		net_send(f, NULL, frame, sizeof(frame));
	}
	virtio_net__process(f->n);
	virtio_net__process(f->n);
	assert_false(f->n->backend_polled); /* out of the epoll set: no busy loop */
	assert_int_equal(used_idx(f, VIRTIO_NET_Q_RX), 0);
	/* The device asked to be kicked when buffers come. */
	assert_int_equal(get16(f, used_gpa(VIRTIO_NET_Q_RX)) & VIRTQ_USED_F_NO_NOTIFY, 0);

	/* One buffer: exactly one frame moves, the first. */
	bufs[0] = alloc_buf(f);
	add_chain(f, VIRTIO_NET_Q_RX, &(struct seg){ bufs[0], 1526, true }, 1);
	kick(f, VIRTIO_NET_Q_RX);
	virtio_net__process(f->n);
	take_used(f, VIRTIO_NET_Q_RX, &id, &len);
	assert_int_equal(len, HDR + sizeof(frame));
	assert_int_equal(used_idx(f, VIRTIO_NET_Q_RX), 1);
	assert_false(f->n->backend_polled);

	/* Two more: the other two, in order. */
	for (int i = 1; i < 3; i++) {
		bufs[i] = alloc_buf(f);
		add_chain(f, VIRTIO_NET_Q_RX, &(struct seg){ bufs[i], 1526, true }, 1);
	}
	kick(f, VIRTIO_NET_Q_RX);
	virtio_net__process(f->n);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(guest_mem__read(&f->mem, bufs[i], got, sizeof(got)), 0);
		assert_int_equal(got[HDR + 14], 0x10 + i);
	}
	assert_int_equal(used_idx(f, VIRTIO_NET_Q_RX), 3);
	virtio_net__get_stats(f->n, &st);
	assert_int_equal(st.rx_frames, 3);
	assert_int_equal(st.rx_dropped, 0);
}

/* A frame bigger than the posted buffer is dropped; the buffer comes back empty. */
static void test_rx_too_big(void **state)
{
	struct fixture *f = *state;
	uint8_t frame[1000];
	uint64_t b = alloc_buf(f);
	struct virtio_net_stats st;
	uint16_t id;
	uint32_t len;

	driver_init(f, FEAT_ALL);
	add_chain(f, VIRTIO_NET_Q_RX, &(struct seg){ b, 500, true }, 1);
	make_frame(frame, test_mac, test_mac, 1, sizeof(frame));
	net_send(f, NULL, frame, sizeof(frame));
	virtio_net__process(f->n);
	take_used(f, VIRTIO_NET_Q_RX, &id, &len);
	assert_int_equal(len, 0);
	virtio_net__get_stats(f->n, &st);
	assert_int_equal(st.rx_dropped, 1);
	assert_false(needs_reset(f));
}

static void test_tx_malformed(void **state)
{
	struct fixture *f = *state;
	uint64_t b = alloc_buf(f);

	driver_init(f, FEAT_ALL);
	/* Shorter than the virtio-net header. */
	add_chain(f, VIRTIO_NET_Q_TX, &(struct seg){ b, 4, false }, 1);
	virtio_net__process(f->n);
	assert_true(needs_reset(f));

	/* Reset and start again: the device works. */
	driver_init(f, FEAT_ALL);
	assert_false(needs_reset(f));
	/* A descriptor that chains to itself. */
	write_desc(f, VIRTIO_NET_Q_TX, 0, &(struct seg){ b, 64, false }, VIRTQ_DESC_F_NEXT, 0);
	put16(f, avail_gpa(VIRTIO_NET_Q_TX) + 4, 0);
	put16(f, avail_gpa(VIRTIO_NET_Q_TX) + 2, 1);
	virtio_net__process(f->n);
	assert_true(needs_reset(f));
	assert_true(mmio_read(f->n, VIRTIO_MMIO_INTERRUPT_STATUS, 4) & VIRTIO_MMIO_INT_CONFIG);

	/* A buffer outside guest RAM, on the receive queue. */
	driver_init(f, FEAT_ALL);
	add_chain(f, VIRTIO_NET_Q_RX, &(struct seg){ 0xf0000000ULL, 1526, true }, 1);
	{
		uint8_t frame[64];

		make_frame(frame, test_mac, test_mac, 0, sizeof(frame));
		net_send(f, NULL, frame, sizeof(frame));
	}
	virtio_net__process(f->n);
	assert_true(needs_reset(f));
	/* The device stays quiet until reset. */
	virtio_net__process(f->n);
	assert_int_equal(used_idx(f, VIRTIO_NET_Q_RX), 0);
}

/* Sends a control command; returns the ack byte. */
static uint8_t ctrl(struct fixture *f, uint8_t class, uint8_t cmd, const uint8_t *data,
		    uint32_t dlen)
{
	uint64_t b = alloc_buf(f), a = alloc_buf(f);
	uint8_t hdr[2] = { class, cmd }, ack = 0xee;
	struct seg segs[3] = { { b, 2, false }, { b + 64, dlen, false }, { a, 1, true } };
	uint16_t id;
	uint32_t len;

	assert_int_equal(guest_mem__write(&f->mem, b, hdr, 2), 0);
	assert_int_equal(guest_mem__write(&f->mem, a, &ack, 1), 0);
	if (dlen) {
		assert_int_equal(guest_mem__write(&f->mem, b + 64, data, dlen), 0);
		add_chain(f, VIRTIO_NET_Q_CTRL, segs, 3);
	} else {
		segs[1] = segs[2];
		add_chain(f, VIRTIO_NET_Q_CTRL, segs, 2);
	}
	kick(f, VIRTIO_NET_Q_CTRL);
	virtio_net__process(f->n);
	take_used(f, VIRTIO_NET_Q_CTRL, &id, &len);
	assert_int_equal(len, 1);
	assert_int_equal(guest_mem__read(&f->mem, a, &ack, 1), 0);
	return ack;
}

static void test_ctrl_and_announce(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[256], on = 1;
	uint32_t gen;

	driver_init(f, FEAT_ALL);
	/* Anything but ANNOUNCE_ACK: VIRTIO_NET_ERR (RX mode promisc, MAC table, ...). */
	assert_int_equal(ctrl(f, 0, 0, &on, 1), VIRTIO_NET_ERR);
	assert_int_equal(ctrl(f, VIRTIO_NET_CTRL_ANNOUNCE, 1, NULL, 0), VIRTIO_NET_ERR);
	assert_int_equal(ctrl(f, 0xff, 0xff, NULL, 0), VIRTIO_NET_ERR);

	gen = mmio_read(f->n, VIRTIO_MMIO_CONFIG_GENERATION, 4);
	mmio_write(f->n, VIRTIO_MMIO_INTERRUPT_ACK, 3);
	virtio_net__announce(f->n);
	assert_int_equal(mmio_read(f->n, VIRTIO_MMIO_CONFIG + 6, 2),
			 VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE);
	assert_true(mmio_read(f->n, VIRTIO_MMIO_INTERRUPT_STATUS, 4) & VIRTIO_MMIO_INT_CONFIG);
	assert_true(mmio_read(f->n, VIRTIO_MMIO_CONFIG_GENERATION, 4) != gen);

	/* The host-side round 0 goes out on the next pass: a RARP from the guest's MAC. */
	virtio_net__process(f->n);
	assert_int_equal(net_recv(f, buf, sizeof(buf), 0), HDR + ANNOUNCE_FRAME_LEN);
	assert_memory_equal(buf + HDR + 6, test_mac, ETH_ALEN);
	assert_int_equal(buf[HDR + 12], 0x80);
	assert_int_equal(buf[HDR + 13], 0x35);

	assert_int_equal(ctrl(f, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, NULL, 0),
			 VIRTIO_NET_OK);
	assert_int_equal(mmio_read(f->n, VIRTIO_MMIO_CONFIG + 6, 2), VIRTIO_NET_S_LINK_UP);
	assert_false(needs_reset(f));

	/* Malformed: no writable byte for the ack. */
	add_chain(f, VIRTIO_NET_Q_CTRL, &(struct seg){ alloc_buf(f), 2, false }, 1);
	virtio_net__process(f->n);
	assert_true(needs_reset(f));
}

/* Without GUEST_ANNOUNCE the guest is not asked; the host-side frames still go. */
static void test_announce_without_guest_announce(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[256];

	driver_init(f, VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_NET_F_MAC) |
			       VIRTIO_BIT(VIRTIO_NET_F_CTRL_VQ));
	mmio_write(f->n, VIRTIO_MMIO_INTERRUPT_ACK, 3);
	virtio_net__announce(f->n);
	assert_int_equal(virtio_net__status(f->n), VIRTIO_NET_S_LINK_UP);
	assert_int_equal(mmio_read(f->n, VIRTIO_MMIO_INTERRUPT_STATUS, 4), 0);
	virtio_net__process(f->n);
	assert_int_equal(net_recv(f, buf, sizeof(buf), 0), HDR + ANNOUNCE_FRAME_LEN);
	/* ANNOUNCE_ACK was not negotiated either: an error. */
	assert_int_equal(ctrl(f, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, NULL, 0),
			 VIRTIO_NET_ERR);
}

static void test_link_status(void **state)
{
	struct fixture *f = *state;

	driver_init(f, FEAT_ALL);
	mmio_write(f->n, VIRTIO_MMIO_INTERRUPT_ACK, 3);
	virtio_net__set_link(f->n, false);
	assert_int_equal(mmio_read(f->n, VIRTIO_MMIO_CONFIG + 6, 2), 0);
	assert_true(mmio_read(f->n, VIRTIO_MMIO_INTERRUPT_STATUS, 4) & VIRTIO_MMIO_INT_CONFIG);
	virtio_net__set_link(f->n, true);
	assert_int_equal(mmio_read(f->n, VIRTIO_MMIO_CONFIG + 6, 2), VIRTIO_NET_S_LINK_UP);
}

/* Save on one device, load into another: the second carries on where the first stopped. */
static void test_save_load(void **state)
{
	struct fixture *f = *state;
	static const uint8_t ip[4] = { 198, 51, 100, 9 };
	struct virtio_net_state *st = calloc(1, sizeof(*st)), *st2 = calloc(1, sizeof(*st2));
	uint8_t frame[ANNOUNCE_FRAME_LEN], buf[256], mac[ETH_ALEN];
	static const uint8_t other_mac[ETH_ALEN] = { 0x52, 0x54, 0x00, 0xde, 0xad, 0x01 };
	uint64_t b = alloc_buf(f);
	struct virtio_net *n2;
	uint16_t id;
	uint32_t len;

	driver_init(f, FEAT_ALL);
	announce__garp(frame, test_mac, ip);
	assert_int_equal(guest_mem__write(&f->mem, b + HDR, frame, sizeof(frame)), 0);
	add_chain(f, VIRTIO_NET_Q_TX, &(struct seg){ b, HDR + sizeof(frame), false }, 1);
	virtio_net__process(f->n);
	assert_true(net_recv(f, buf, sizeof(buf), 0) > 0);
	take_used(f, VIRTIO_NET_Q_TX, &id, &len);
	virtio_net__announce(f->n);
	virtio_net__save(f->n, st);
	assert_memory_equal(st->mac, test_mac, ETH_ALEN);
	assert_int_equal(st->status, VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE);
	assert_int_equal(st->transport.driver_features, FEAT_ALL);
	assert_int_equal(st->transport.queues[VIRTIO_NET_Q_TX].used_idx, 1);

	/* The destination device was made with another MAC: the guest's wins. */
	assert_int_equal(make_dev(f, &n2, other_mac), 0);
	assert_int_equal(virtio_net__load(n2, st), 0);
	virtio_net__get_mac(n2, mac);
	assert_memory_equal(mac, test_mac, ETH_ALEN);
	assert_int_equal(virtio_net__status(n2), VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE);
	virtio_net__save(n2, st2);
	assert_memory_equal(st2, st, sizeof(*st));

	/* It transmits the next chain the driver adds. */
	virtio_net__exit(f->n);
	free(f->n);
	f->n = n2;
	add_chain(f, VIRTIO_NET_Q_TX, &(struct seg){ b, HDR + sizeof(frame), false }, 1);
	kick(f, VIRTIO_NET_Q_TX);
	virtio_net__process(n2);
	assert_int_equal(net_recv(f, buf, sizeof(buf), 0), HDR + sizeof(frame));
	take_used(f, VIRTIO_NET_Q_TX, &id, &len);
	assert_int_equal(used_idx(f, VIRTIO_NET_Q_TX), 2);
	free(st);
	free(st2);
}

static void test_load_rejects(void **state)
{
	struct fixture *f = *state;
	struct virtio_net_state *good = calloc(1, sizeof(*good)), *bad = calloc(1, sizeof(*bad));
	static const uint8_t other_mac[ETH_ALEN] = { 0x52, 0x54, 0x00, 0xde, 0xad, 0x02 };
	uint8_t mac[ETH_ALEN];
	struct virtio_net *n2;

	driver_init(f, FEAT_ALL);
	virtio_net__save(f->n, good);
	assert_int_equal(make_dev(f, &n2, other_mac), 0);

	*bad = *good;
	bad->mac[0] = 0x01; /* multicast */
	assert_int_equal(virtio_net__load(n2, bad), -EINVAL);
	*bad = *good;
	memset(bad->mac, 0, ETH_ALEN);
	assert_int_equal(virtio_net__load(n2, bad), -EINVAL);
	*bad = *good;
	bad->status = 0x80;
	assert_int_equal(virtio_net__load(n2, bad), -EINVAL);
	*bad = *good;
	bad->have_ipv4 = 7;
	assert_int_equal(virtio_net__load(n2, bad), -EINVAL);
	*bad = *good;
	bad->status |= VIRTIO_NET_S_ANNOUNCE;
	bad->transport.driver_features &= ~VIRTIO_BIT(VIRTIO_NET_F_GUEST_ANNOUNCE);
	assert_int_equal(virtio_net__load(n2, bad), -EINVAL);
	*bad = *good;
	bad->transport.driver_features &= ~VIRTIO_BIT(VIRTIO_NET_F_CTRL_VQ);
	assert_int_equal(virtio_net__load(n2, bad), -EINVAL);
	/* The transport's own checks: another device type, a feature never offered. */
	*bad = *good;
	bad->transport.device_id = VIRTIO_ID_BLK;
	assert_int_equal(virtio_net__load(n2, bad), -EINVAL);
	*bad = *good;
	bad->transport.driver_features |= VIRTIO_BIT(0); /* VIRTIO_NET_F_CSUM */
	assert_int_equal(virtio_net__load(n2, bad), -EINVAL);
	*bad = *good;
	bad->transport.queues[VIRTIO_NET_Q_RX].num = 3;
	assert_int_equal(virtio_net__load(n2, bad), -EINVAL);

	/* Untouched by all of that. */
	virtio_net__get_mac(n2, mac);
	assert_memory_equal(mac, other_mac, ETH_ALEN);
	assert_int_equal(mmio_read(n2, VIRTIO_MMIO_STATUS, 4), 0);
	assert_int_equal(virtio_net__load(n2, good), 0);
	virtio_net__exit(n2);
	free(n2);
	free(good);
	free(bad);
}

/* ---- with the I/O thread ---- */

static bool wait_used(struct fixture *f, unsigned int q, uint16_t want, int ms)
{
	for (int i = 0; i < ms; i++) {
		if (used_idx(f, q) == want)
			return true;
		usleep(1000);
	}
	return used_idx(f, q) == want;
}

static void test_thread(void **state)
{
	struct fixture *f = *state;
	uint8_t frame[120], buf[256];
	uint64_t tb = alloc_buf(f);

	driver_init(f, FEAT_ALL);
	assert_int_equal(virtio_net__start(f->n), 0);

	/* TX through a kick. */
	make_frame(frame, test_mac, test_mac, 0x99, sizeof(frame));
	assert_int_equal(guest_mem__write(&f->mem, tb + HDR, frame, sizeof(frame)), 0);
	add_chain(f, VIRTIO_NET_Q_TX, &(struct seg){ tb, HDR + sizeof(frame), false }, 1);
	kick(f, VIRTIO_NET_Q_TX);
	assert_int_equal(net_recv(f, buf, sizeof(buf), 2000), HDR + sizeof(frame));
	assert_true(wait_used(f, VIRTIO_NET_Q_TX, 1, 2000));

	/* RX: a frame arrives before any buffer; the buffer's kick brings it in. */
	net_send(f, NULL, frame, sizeof(frame));
	usleep(20000);
	assert_int_equal(used_idx(f, VIRTIO_NET_Q_RX), 0);
	add_chain(f, VIRTIO_NET_Q_RX, &(struct seg){ alloc_buf(f), 1526, true }, 1);
	add_chain(f, VIRTIO_NET_Q_RX, &(struct seg){ alloc_buf(f), 1526, true }, 1);
	kick(f, VIRTIO_NET_Q_RX);
	assert_true(wait_used(f, VIRTIO_NET_Q_RX, 1, 2000));

	/* Quiesced: a frame from the network stays out of guest RAM until resume. */
	virtio_net__quiesce(f->n);
	virtio_net__quiesce(f->n); /* nests */
	net_send(f, NULL, frame, sizeof(frame));
	usleep(50000);
	assert_int_equal(used_idx(f, VIRTIO_NET_Q_RX), 1);
	virtio_net__resume(f->n);
	usleep(20000);
	assert_int_equal(used_idx(f, VIRTIO_NET_Q_RX), 1);
	virtio_net__resume(f->n);
	assert_true(wait_used(f, VIRTIO_NET_Q_RX, 2, 2000));

	/* Announce: five RARPs on the default schedule (0, 50, 150, 350, 750 ms). */
	{
		struct timespec t0, t1;
		int rarps = 0;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		virtio_net__announce(f->n);
		while (rarps < 5 && net_recv(f, buf, sizeof(buf), 2000) > 0) {
			if (buf[HDR + 12] == 0x80 && buf[HDR + 13] == 0x35)
				rarps++;
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		assert_int_equal(rarps, 5);
		assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >=
			    700);
		assert_int_equal(net_recv(f, buf, sizeof(buf), 300), -1); /* and no more */
	}

	/* A driver reset with the thread running, then the device works again. */
	mmio_write(f->n, VIRTIO_MMIO_STATUS, 0);
	driver_init(f, FEAT_ALL);
	add_chain(f, VIRTIO_NET_Q_TX, &(struct seg){ tb, HDR + sizeof(frame), false }, 1);
	kick(f, VIRTIO_NET_Q_TX);
	assert_int_equal(net_recv(f, buf, sizeof(buf), 2000), HDR + sizeof(frame));
}

static uint64_t cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* Idle, and with the network side hung up: the thread sleeps (no busy loop). */
static void test_backend_hangup(void **state)
{
	struct fixture *f = *state;
	struct virtio_net_stats st;
	uint64_t cpu;

	driver_init(f, FEAT_ALL);
	add_chain(f, VIRTIO_NET_Q_RX, &(struct seg){ alloc_buf(f), 1526, true }, 1);
	assert_int_equal(virtio_net__start(f->n), 0);
	cpu = cpu_us();
	usleep(200000);
	assert_true(cpu_us() - cpu < 50000);

	close(f->sv[1]);
	f->sv[1] = socket(AF_UNIX, SOCK_SEQPACKET, 0); /* for teardown */
	usleep(50000);
	cpu = cpu_us();
	usleep(200000);
	assert_true(cpu_us() - cpu < 50000);
	virtio_net__get_stats(f->n, &st);
	assert_int_equal(st.backend_errors, 1);
	assert_true(f->n->backend_broken);
	assert_int_equal(used_idx(f, VIRTIO_NET_Q_RX), 0);
}

/* With EVENT_IDX the device asks for kicks through avail_event, not the flags. */
static void test_event_idx(void **state)
{
	struct fixture *f = *state;
	uint64_t avail_event = used_gpa(VIRTIO_NET_Q_RX) + 4 + 8ULL * QSIZE;
	uint8_t frame[64];
	uint16_t id;
	uint32_t len;

	driver_init(f, FEAT_ALL | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) |
			       VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
	make_frame(frame, test_mac, test_mac, 5, sizeof(frame));
	net_send(f, NULL, frame, sizeof(frame));
	net_send(f, NULL, frame, sizeof(frame));
	add_chain(f, VIRTIO_NET_Q_RX, &(struct seg){ alloc_buf(f), 1526, true }, 1);
	/* The driver wants an interrupt for the first used entry. */
	put16(f, avail_gpa(VIRTIO_NET_Q_RX) + 4 + 2ULL * QSIZE, 0);
	f->irqs = 0;
	virtio_net__process(f->n);
	take_used(f, VIRTIO_NET_Q_RX, &id, &len);
	assert_int_equal(len, HDR + sizeof(frame));
	assert_int_equal(f->irqs, 1);
	/* Out of buffers with a frame waiting: kick me when avail passes 1. */
	assert_int_equal(get16(f, avail_event), 1);
	assert_false(f->n->backend_polled);
	add_chain(f, VIRTIO_NET_Q_RX, &(struct seg){ alloc_buf(f), 1526, true }, 1);
	kick(f, VIRTIO_NET_Q_RX);
	/* used_event still 0: the second used entry wants no interrupt. */
	virtio_net__process(f->n);
	take_used(f, VIRTIO_NET_Q_RX, &id, &len);
	assert_int_equal(len, HDR + sizeof(frame));
	assert_int_equal(f->irqs, 1);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_features_and_config),
		cmocka_unit_test(test_mac_parse_and_random),
		T(test_generated_mac),
		T(test_tx),
		T(test_tx_learns_ipv4),
		T(test_rx),
		T(test_rx_scattered),
		T(test_rx_backpressure),
		T(test_rx_too_big),
		T(test_tx_malformed),
		T(test_ctrl_and_announce),
		T(test_announce_without_guest_announce),
		T(test_link_status),
		T(test_save_load),
		T(test_load_rejects),
		T(test_event_idx),
		T(test_thread),
		T(test_backend_hangup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
