/*
 * godwit test guest, ring 3: `netecho IP` on the first virtio-net device. Answers ARP
 * requests for IP, ICMP echo requests to IP and echoes UDP datagrams to IP (any port)
 * back to their sender. Polled: receive buffers stay posted, frames are sent one at a
 * time (each waited for in the used ring).
 *
 * `netbench IP` is netecho plus three UDP ports for throughput measurements:
 *   9 (discard): counted (datagrams, payload bytes, guest time of the first and last),
 *     not answered;
 *   10 (stats): answered with 32 bytes, four big-endian u64: discard datagrams, discard
 *     payload bytes, ns from the first to the last discard datagram, frames received;
 *   19 (blast): a request of two big-endian u32, COUNT and SIZE (8..1472), is answered
 *     with COUNT datagrams of SIZE payload bytes from port 19 to the sender, up to
 *     NB_TX_DEPTH frames in the transmit queue at once; payload = big-endian u64 sequence
 *     number (0..COUNT-1), then bytes (seq + i) & 0xff; UDP checksum 0 (none).
 */
#include "virtio.h"

#define VIRTIO_NET_F_MAC (1ULL << 5)

#define NET_HDR_LEN  12 /* struct virtio_net_hdr_v1 with num_buffers */
#define RX_BUF_SIZE  2048
#define RX_QUEUE     0
#define TX_QUEUE     1
#define ETH_HLEN     14
#define ETH_MIN	     60
#define ETH_P_IP     0x0800
#define ETH_P_ARP    0x0806
#define IPPROTO_ICMP 1
#define IPPROTO_UDP  17

#define NB_PORT_DISCARD 9
#define NB_PORT_STATS	10
#define NB_PORT_BLAST	19
#define NB_TX_DEPTH	64
#define NB_MAX_PAYLOAD	1472 /* 1500 - IPv4 - UDP */
#define NB_TIMEOUT	(10 * NS_PER_SEC)

static struct virtq_mem rxq_mem, txq_mem;
static u8 rx_bufs[VIRTQ_MAX][RX_BUF_SIZE] __attribute__((aligned(4096)));
static u8 tx_buf[NET_HDR_LEN + 2048] __attribute__((aligned(64)));
static u8 blast_bufs[NB_TX_DEPTH][NET_HDR_LEN + 1536] __attribute__((aligned(64)));

struct netecho {
	struct vdev dev;
	struct virtq rx, tx;
	u8 mac[6];
	u8 ip[4];
	u64 rx_frames, tx_frames;
	struct cpu *cpu;
	bool bench;			 /* netbench: ports 9, 10, 19 */
	u64 discard_n, discard_bytes;	 /* port 9 */
	u64 discard_first, discard_last; /* guest ns */
};

static u16 get16(const u8 *p)
{
	return (u16)(p[0] << 8 | p[1]);
}

static void put16(u8 *p, u16 v)
{
	p[0] = (u8)(v >> 8);
	p[1] = (u8)v;
}

/* One's complement sum of big-endian 16-bit words, not yet folded. */
static u32 csum_add(u32 sum, const u8 *p, u32 len)
{
	for (; len >= 2; p += 2, len -= 2)
		sum += get16(p);
	if (len)
		sum += (u32)p[0] << 8;
	return sum;
}

static u16 csum_fold(u32 sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (u16)~sum;
}

static void send_frame(struct netecho *n, u32 len)
{
	if (len < ETH_MIN) {
		memset(tx_buf + NET_HDR_LEN + len, 0, ETH_MIN - len);
		len = ETH_MIN;
	}
	memset(tx_buf, 0, NET_HDR_LEN);
	struct virtq_desc *d = &n->tx.mem->desc[0];
	d->addr = (u64)tx_buf;
	d->len = NET_HDR_LEN + len;
	d->flags = 0;
	d->next = 0;
	virtq_push(&n->tx, 0);
	virtq_kick(&n->tx);
	u32 id, ulen;
	virtq_wait_used(&n->tx, &id, &ulen);
	n->tx_frames++;
}

/* Ethernet reply header into tx_buf: back to the sender, from us. */
static u8 *reply_eth(struct netecho *n, const u8 *f, u16 type)
{
	u8 *o = tx_buf + NET_HDR_LEN;
	memcpy(o, f + 6, 6);
	memcpy(o + 6, n->mac, 6);
	put16(o + 12, type);
	return o;
}

static void handle_arp(struct netecho *n, const u8 *f, u32 len)
{
	const u8 *a = f + ETH_HLEN;
	if (len < ETH_HLEN + 28 || get16(a) != 1 || get16(a + 2) != ETH_P_IP || a[4] != 6 ||
	    a[5] != 4 || get16(a + 6) != 1 || memcmp(a + 24, n->ip, 4) != 0)
		return;
	u8 *o = reply_eth(n, f, ETH_P_ARP);
	u8 *r = o + ETH_HLEN;
	put16(r, 1);
	put16(r + 2, ETH_P_IP);
	r[4] = 6;
	r[5] = 4;
	put16(r + 6, 2);	  /* reply */
	memcpy(r + 8, n->mac, 6); /* sender: us */
	memcpy(r + 14, n->ip, 4);
	memcpy(r + 18, a + 8, 6); /* target: the requester */
	memcpy(r + 24, a + 14, 4);
	send_frame(n, ETH_HLEN + 28);
}

static void put64(u8 *p, u64 v)
{
	for (u32 i = 0; i < 8; i++)
		p[i] = (u8)(v >> (56 - 8 * i));
}

static u32 get32(const u8 *p)
{
	return (u32)p[0] << 24 | (u32)p[1] << 16 | (u32)p[2] << 8 | p[3];
}

/* Reclaims one completed blast frame; false if none completed before DEADLINE. */
static bool blast_reclaim(struct netecho *n, u64 deadline)
{
	u32 id, len;
	if (!virtq_wait_used_until(&n->tx, n->cpu, deadline, &id, &len))
		return false;
	if (id >= NB_TX_DEPTH)
		fail("virtio-net at 0x%lx: used ring returned descriptor %u", n->dev.base, id);
	return true;
}

/*
 * Port 19: COUNT datagrams of SIZE payload bytes back to the sender of request F, up to
 * NB_TX_DEPTH in the queue (descriptor i = buffer i), the device notified only when it
 * asks for it. Every frame is reclaimed before returning.
 */
static void blast(struct netecho *n, const u8 *f, const u8 *ip, u32 ihl, u32 count, u32 size)
{
	const u8 *udp = ip + ihl;
	u32 tot = 20 + 8 + size;
	u64 kicks = 0;
	u64 t0 = now_ns(n->cpu);
	u32 inflight = 0, next_slot = 0;
	bool free_slot[NB_TX_DEPTH];
	for (u32 i = 0; i < NB_TX_DEPTH; i++)
		free_slot[i] = true;
	/* Bounded: each iteration sends a frame or reclaims one (or fails after NB_TIMEOUT). */
	for (u32 seq = 0; seq < count;) {
		if (inflight == NB_TX_DEPTH || !free_slot[next_slot]) {
			u32 id, len;
			if (!virtq_wait_used_until(&n->tx, n->cpu, now_ns(n->cpu) + NB_TIMEOUT, &id,
						   &len))
				fail("netbench: no transmit completed within %lu s (sent %u of %u)",
				     NB_TIMEOUT / NS_PER_SEC, seq, count);
			if (id >= NB_TX_DEPTH || free_slot[id])
				fail("virtio-net at 0x%lx: used ring returned descriptor %u",
				     n->dev.base, id);
			free_slot[id] = true;
			inflight--;
			continue;
		}
		u32 slot = next_slot;
		next_slot = (next_slot + 1) % NB_TX_DEPTH;
		u8 *b = blast_bufs[slot];
		memset(b, 0, NET_HDR_LEN);
		u8 *o = b + NET_HDR_LEN;
		memcpy(o, f + 6, 6);
		memcpy(o + 6, n->mac, 6);
		put16(o + 12, ETH_P_IP);
		u8 *r = o + ETH_HLEN;
		r[0] = 0x45;
		r[1] = 0;
		put16(r + 2, (u16)tot);
		put16(r + 4, (u16)seq);
		put16(r + 6, 0x4000); /* DF */
		r[8] = 64;
		r[9] = IPPROTO_UDP;
		put16(r + 10, 0);
		memcpy(r + 12, n->ip, 4);
		memcpy(r + 16, ip + 12, 4);
		put16(r + 10, csum_fold(csum_add(0, r, 20)));
		u8 *p = r + 20;
		put16(p, NB_PORT_BLAST);
		put16(p + 2, get16(udp)); /* the requester's port */
		put16(p + 4, (u16)(8 + size));
		put16(p + 6, 0);
		put64(p + 8, seq);
		for (u32 i = 8; i < size; i++)
			p[8 + i] = (u8)(seq + i);
		struct virtq_desc *d = &n->tx.mem->desc[slot];
		d->addr = (u64)b;
		d->len = NET_HDR_LEN + ETH_HLEN + tot;
		d->flags = 0;
		d->next = 0;
		free_slot[slot] = false;
		virtq_push(&n->tx, (u16)slot);
		kicks += virtq_kick_if_needed(&n->tx);
		inflight++;
		seq++;
		n->tx_frames++;
	}
	u64 deadline = now_ns(n->cpu) + NB_TIMEOUT;
	for (; inflight; inflight--)
		if (!blast_reclaim(n, deadline))
			fail("netbench: %u transmit frames not completed within %lu s", inflight,
			     NB_TIMEOUT / NS_PER_SEC);
	u64 t = now_ns(n->cpu) - t0;
	println("netbench: sent %u datagrams of %u bytes in %lu us (%lu kicks)", count, size,
		t / 1000, kicks);
}

/* netbench's ports; true if the datagram was one of them (handled, no echo). */
static bool bench_udp(struct netecho *n, const u8 *f, const u8 *ip, u32 ihl, u32 plen)
{
	const u8 *udp = ip + ihl;
	u16 port = get16(udp + 2);
	if (port == NB_PORT_DISCARD) {
		u64 now = now_ns(n->cpu);
		if (n->discard_n == 0)
			n->discard_first = now;
		n->discard_last = now;
		n->discard_n++;
		n->discard_bytes += plen - 8;
		return true;
	}
	if (port == NB_PORT_STATS) {
		u8 *o = reply_eth(n, f, ETH_P_IP);
		u8 *r = o + ETH_HLEN;
		u32 tot = 20 + 8 + 32;
		memcpy(r, ip, 20);
		r[0] = 0x45;
		put16(r + 2, (u16)tot);
		put16(r + 6, 0);
		r[8] = 64;
		memcpy(r + 12, ip + 16, 4);
		memcpy(r + 16, ip + 12, 4);
		put16(r + 10, 0);
		put16(r + 10, csum_fold(csum_add(0, r, 20)));
		u8 *p = r + 20;
		put16(p, NB_PORT_STATS);
		put16(p + 2, get16(udp));
		put16(p + 4, 8 + 32);
		put16(p + 6, 0);
		put64(p + 8, n->discard_n);
		put64(p + 16, n->discard_bytes);
		put64(p + 24, n->discard_n ? n->discard_last - n->discard_first : 0);
		put64(p + 32, n->rx_frames);
		send_frame(n, ETH_HLEN + tot);
		return true;
	}
	if (port == NB_PORT_BLAST) {
		if (plen < 8 + 8)
			return true;
		u32 count = get32(udp + 8), size = get32(udp + 12);
		if (size < 8 || size > NB_MAX_PAYLOAD || count == 0) {
			println("netbench: blast request ignored (count %u, size %u: want count "
				">= 1, size 8..%u)",
				count, size, NB_MAX_PAYLOAD);
			return true;
		}
		blast(n, f, ip, ihl, count, size);
		return true;
	}
	return false;
}

static void handle_ip(struct netecho *n, const u8 *f, u32 len)
{
	const u8 *ip = f + ETH_HLEN;
	if (len < ETH_HLEN + 20 || (ip[0] >> 4) != 4)
		return;
	u32 ihl = (ip[0] & 15) * 4u, tot = get16(ip + 2);
	if (ihl < 20 || tot < ihl || ETH_HLEN + tot > len ||
	    tot > sizeof(tx_buf) - NET_HDR_LEN - ETH_HLEN)
		return;
	if (memcmp(ip + 16, n->ip, 4) != 0 || csum_fold(csum_add(0, ip, ihl)) != 0)
		return;
	if (get16(ip + 6) & 0x3fff) /* a fragment (MF or an offset): not handled */
		return;
	u32 plen = tot - ihl;
	u8 proto = ip[9];
	if (proto == IPPROTO_ICMP) {
		if (plen < 8 || ip[ihl] != 8 || ip[ihl + 1] != 0) /* echo request */
			return;
	} else if (proto == IPPROTO_UDP) {
		if (plen < 8 || get16(ip + ihl + 4) < 8 || get16(ip + ihl + 4) > plen)
			return;
		plen = get16(ip + ihl + 4);
		tot = ihl + plen; /* drop any padding beyond the UDP length */
		if (n->bench && bench_udp(n, f, ip, ihl, plen))
			return;
	} else {
		return;
	}
	u8 *o = reply_eth(n, f, ETH_P_IP);
	u8 *r = o + ETH_HLEN;
	memcpy(r, ip, tot);
	put16(r + 2, (u16)tot);
	memcpy(r + 12, ip + 16, 4); /* from us */
	memcpy(r + 16, ip + 12, 4); /* to the sender */
	r[8] = 64;		    /* TTL */
	put16(r + 10, 0);
	put16(r + 10, csum_fold(csum_add(0, r, ihl)));
	u8 *p = r + ihl;
	if (proto == IPPROTO_ICMP) {
		p[0] = 0; /* echo reply, same id, sequence and payload */
		put16(p + 2, 0);
		put16(p + 2, csum_fold(csum_add(0, p, plen)));
	} else {
		bool had_csum = get16(p + 6) != 0;
		put16(p, get16(ip + ihl + 2)); /* ports swapped */
		put16(p + 2, get16(ip + ihl));
		put16(p + 6, 0);
		if (had_csum) { /* with the pseudo header; 0 is sent as 0xffff */
			u32 s = csum_add(0, r + 12, 8) + IPPROTO_UDP + plen;
			u16 c = csum_fold(csum_add(s, p, plen));
			put16(p + 6, c ? c : 0xffff);
		}
	}
	send_frame(n, ETH_HLEN + tot);
}

static void handle_frame(struct netecho *n, const u8 *f, u32 len)
{
	static const u8 bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	if (len < ETH_HLEN || (memcmp(f, n->mac, 6) != 0 && memcmp(f, bcast, 6) != 0))
		return;
	u16 type = get16(f + 12);
	if (type == ETH_P_ARP)
		handle_arp(n, f, len);
	else if (type == ETH_P_IP)
		handle_ip(n, f, len);
}

static void post_rx(struct netecho *n, u16 id)
{
	struct virtq_desc *d = &n->rx.mem->desc[id];
	d->addr = (u64)rx_bufs[id];
	d->len = RX_BUF_SIZE;
	d->flags = VIRTQ_DESC_F_WRITE;
	d->next = 0;
	virtq_push(&n->rx, id);
}

static void net_run(struct cpu *c, bool bench)
{
	static struct netecho ne;
	struct netecho *n = &ne;
	const char *name = bench ? "netbench" : "netecho";
	n->cpu = c;
	n->bench = bench;
	u32 ip = (u32)c->wl.arg1;
	n->ip[0] = (u8)(ip >> 24);
	n->ip[1] = (u8)(ip >> 16);
	n->ip[2] = (u8)(ip >> 8);
	n->ip[3] = (u8)ip;

	virtio_find(&n->dev, VIRTIO_ID_NET, "virtio-net");
	virtio_negotiate(&n->dev, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MAC);
	for (u32 i = 0; i < 6; i++)
		n->mac[i] = virtio_config8(&n->dev, i);
	virtq_setup(&n->dev, &n->rx, RX_QUEUE, VIRTQ_MAX, &rxq_mem);
	virtq_setup(&n->dev, &n->tx, TX_QUEUE, VIRTQ_MAX, &txq_mem);
	virtio_driver_ok(&n->dev);
	for (u32 i = 0; i < n->rx.num; i++)
		post_rx(n, (u16)i);
	virtq_kick(&n->rx);
	println("%s: virtio-net at 0x%lx, features 0x%lx, queues rx=%u tx=%u", name,
		n->dev.base, n->dev.features, n->rx.num, n->tx.num);
	char mac[18];
	for (u32 i = 0; i < 6; i++) {
		mac[3 * i] = "0123456789abcdef"[n->mac[i] >> 4];
		mac[3 * i + 1] = "0123456789abcdef"[n->mac[i] & 15];
		mac[3 * i + 2] = i < 5 ? ':' : 0;
	}
	println("%s: up mac=%s ip=%u.%u.%u.%u", name, mac, n->ip[0], n->ip[1], n->ip[2],
		n->ip[3]);

	u64 next_print = now_ns(c) + NS_PER_SEC;
	for (u64 spin = 1;; spin++) {
		u32 id, len;
		bool got = false;
		while (virtq_pop_used(&n->rx, &id, &len)) {
			if (id >= n->rx.num)
				fail("virtio-net at 0x%lx: used ring returned descriptor %u",
				     n->dev.base, id);
			n->rx_frames++;
			if (len > NET_HDR_LEN && len <= RX_BUF_SIZE)
				handle_frame(n, rx_bufs[id] + NET_HDR_LEN, len - NET_HDR_LEN);
			post_rx(n, (u16)id);
			got = true;
		}
		if (got && bench)
			virtq_kick_if_needed(&n->rx);
		else if (got)
			virtq_kick(&n->rx);
		u64 now = now_ns(c);
		if (now >= next_print) {
			println("%s: rx %lu tx %lu", name, n->rx_frames, n->tx_frames);
			next_print += NS_PER_SEC;
			if (next_print < now) /* a stall (paused VM): no burst of lines */
				next_print = now + NS_PER_SEC;
		}
		if ((spin & 0xffff) == 0)
			virtio_check(&n->dev);
		cpu_relax();
	}
}

void netecho(struct cpu *c)
{
	net_run(c, false);
}

void netbench(struct cpu *c)
{
	net_run(c, true);
}
