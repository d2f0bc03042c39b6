/*
 * godwit test guest, ring 3: `netecho IP` on the first virtio-net device. Answers ARP
 * requests for IP, ICMP echo requests to IP and echoes UDP datagrams to IP (any port)
 * back to their sender. Polled: receive buffers stay posted, frames are sent one at a
 * time (each waited for in the used ring).
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

static struct virtq_mem rxq_mem, txq_mem;
static u8 rx_bufs[VIRTQ_MAX][RX_BUF_SIZE] __attribute__((aligned(4096)));
static u8 tx_buf[NET_HDR_LEN + 2048] __attribute__((aligned(64)));

struct netecho {
	struct vdev dev;
	struct virtq rx, tx;
	u8 mac[6];
	u8 ip[4];
	u64 rx_frames, tx_frames;
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

void netecho(struct cpu *c)
{
	static struct netecho ne;
	struct netecho *n = &ne;
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
	println("netecho: virtio-net at 0x%lx, features 0x%lx, queues rx=%u tx=%u", n->dev.base,
		n->dev.features, n->rx.num, n->tx.num);
	char mac[18];
	for (u32 i = 0; i < 6; i++) {
		mac[3 * i] = "0123456789abcdef"[n->mac[i] >> 4];
		mac[3 * i + 1] = "0123456789abcdef"[n->mac[i] & 15];
		mac[3 * i + 2] = i < 5 ? ':' : 0;
	}
	println("netecho: up mac=%s ip=%u.%u.%u.%u", mac, n->ip[0], n->ip[1], n->ip[2], n->ip[3]);

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
		if (got)
			virtq_kick(&n->rx);
		u64 now = now_ns(c);
		if (now >= next_print) {
			println("netecho: rx %lu tx %lu", n->rx_frames, n->tx_frames);
			next_print += NS_PER_SEC;
			if (next_print < now) /* a stall (paused VM): no burst of lines */
				next_print = now + NS_PER_SEC;
		}
		if ((spin & 0xffff) == 0)
			virtio_check(&n->dev);
		cpu_relax();
	}
}
