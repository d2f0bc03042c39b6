// SPDX-License-Identifier: GPL-2.0
/*
 * Announce frames (RARP, gratuitous ARP) and their schedule; see announce.h.
 *
 * Both frames are ARP-shaped (RFC 826): Ethernet header, then hardware type 1
 * (Ethernet), protocol type 0x0800 (IPv4), address lengths 6 and 4, opcode,
 * sender MAC + IPv4, target MAC + IPv4; 42 bytes, zero-padded to 60.
 *
 * - RARP (RFC 903), as QEMU's announce-self: to ff:ff:ff:ff:ff:ff from the
 *   guest's MAC, ethertype 0x8035, opcode 3 (request reverse), sender and
 *   target MAC the guest's, both IPv4 addresses 0.
 * - Gratuitous ARP, in the RFC 5227 "ARP announcement" form: to broadcast from
 *   the guest's MAC, ethertype 0x0806, opcode 1 (request), sender and target
 *   IPv4 both the guest's address, target MAC zero.
 */
#include <errno.h>
#include <string.h>

#include "godwit/announce.h"

#define ETH_HDR_LEN 14
#define ARP_LEN	    28
#define ARP_HTYPE_ETHER 1
#define ARP_PTYPE_IPV4	0x0800

static const uint8_t broadcast[ETH_ALEN] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

void announce__default_params(struct announce_params *p)
{
	p->rounds = ANNOUNCE_DEFAULT_ROUNDS;
	p->initial_ms = ANNOUNCE_DEFAULT_INITIAL_MS;
	p->max_ms = ANNOUNCE_DEFAULT_MAX_MS;
}

int announce__check_params(const struct announce_params *p)
{
	if (!p->rounds || p->rounds > ANNOUNCE_MAX_ROUNDS)
		return -EINVAL;
	if (!p->initial_ms || p->initial_ms > ANNOUNCE_MAX_GAP_MS)
		return -EINVAL;
	if (p->max_ms < p->initial_ms || p->max_ms > ANNOUNCE_MAX_GAP_MS)
		return -EINVAL;
	return 0;
}

/* The wait after round @round (0-based) before the next one. */
static uint32_t gap_ms(const struct announce_params *p, unsigned int round)
{
	uint64_t gap = p->initial_ms;

	for (unsigned int i = 0; i < round && gap < p->max_ms; i++)
		gap *= 2;
	return (uint32_t)MIN(gap, (uint64_t)p->max_ms);
}

int announce__schedule_ms(const struct announce_params *p, uint32_t *out, unsigned int n)
{
	uint32_t t = 0;

	if (announce__check_params(p))
		return -EINVAL;
	for (unsigned int i = 0; i < p->rounds && i < n; i++) {
		out[i] = t;
		t += gap_ms(p, i);
	}
	return (int)p->rounds;
}

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* An ARP-shaped frame from @mac to broadcast; the target MAC is left to the caller. */
static void arp_frame(uint8_t *f, uint16_t ethertype, uint16_t op, const uint8_t mac[ETH_ALEN],
		      const uint8_t ipv4[4])
{
	uint8_t *arp = f + ETH_HDR_LEN;

	memset(f, 0, ANNOUNCE_FRAME_LEN);
	memcpy(f, broadcast, ETH_ALEN);
	memcpy(f + ETH_ALEN, mac, ETH_ALEN);
	put_be16(f + 12, ethertype);
	put_be16(arp, ARP_HTYPE_ETHER);
	put_be16(arp + 2, ARP_PTYPE_IPV4);
	arp[4] = ETH_ALEN;
	arp[5] = 4;
	put_be16(arp + 6, op);
	memcpy(arp + 8, mac, ETH_ALEN); /* sender hardware address */
	if (ipv4) {
		memcpy(arp + 14, ipv4, 4); /* sender protocol address */
		memcpy(arp + 24, ipv4, 4); /* target protocol address */
	}
}

size_t announce__rarp(uint8_t frame[ANNOUNCE_FRAME_LEN], const uint8_t mac[ETH_ALEN])
{
	arp_frame(frame, ETH_P_RARP, ANNOUNCE_RARP_REQUEST, mac, NULL);
	memcpy(frame + ETH_HDR_LEN + 18, mac, ETH_ALEN); /* target hardware address */
	return ANNOUNCE_FRAME_LEN;
}

size_t announce__garp(uint8_t frame[ANNOUNCE_FRAME_LEN], const uint8_t mac[ETH_ALEN],
		      const uint8_t ipv4[4])
{
	arp_frame(frame, ETH_P_ARP, ANNOUNCE_ARP_REQUEST, mac, ipv4);
	return ANNOUNCE_FRAME_LEN;
}

bool announce__learn_ipv4(const uint8_t *frame, size_t len, const uint8_t mac[ETH_ALEN],
			  uint8_t ipv4[4])
{
	const uint8_t *arp = frame + ETH_HDR_LEN;
	static const uint8_t zero[4];
	uint16_t op;

	if (!frame || len < ETH_HDR_LEN + ARP_LEN || get_be16(frame + 12) != ETH_P_ARP)
		return false;
	if (get_be16(arp) != ARP_HTYPE_ETHER || get_be16(arp + 2) != ARP_PTYPE_IPV4 ||
	    arp[4] != ETH_ALEN || arp[5] != 4)
		return false;
	op = get_be16(arp + 6);
	if (op != ANNOUNCE_ARP_REQUEST && op != ANNOUNCE_ARP_REPLY)
		return false;
	/* From the guest itself, about itself; 0.0.0.0 is an RFC 5227 probe. */
	if (memcmp(frame + ETH_ALEN, mac, ETH_ALEN) || memcmp(arp + 8, mac, ETH_ALEN))
		return false;
	if (!memcmp(arp + 14, zero, 4))
		return false;
	memcpy(ipv4, arp + 14, 4);
	return true;
}

void announcer__init(struct announcer *a)
{
	memset(a, 0, sizeof(*a));
	announce__default_params(&a->params);
}

int announcer__start(struct announcer *a, const struct announce_params *p,
		     const uint8_t mac[ETH_ALEN], const uint8_t *ipv4, uint64_t now_ns)
{
	if (announce__check_params(p))
		return -EINVAL;
	a->params = *p;
	memcpy(a->mac, mac, ETH_ALEN);
	announcer__set_ipv4(a, ipv4);
	a->round = 0;
	a->due_ns = now_ns;
	a->active = true;
	return 0;
}

void announcer__cancel(struct announcer *a)
{
	a->active = false;
}

void announcer__set_ipv4(struct announcer *a, const uint8_t *ipv4)
{
	a->have_ipv4 = ipv4 != NULL;
	if (ipv4)
		memcpy(a->ipv4, ipv4, 4);
	else
		memset(a->ipv4, 0, 4);
}

static void send_one(struct announcer *a, const uint8_t *frame, size_t len,
		     int (*send)(void *opaque, const uint8_t *frame, size_t len), void *opaque)
{
	if (send(opaque, frame, len))
		a->send_errors++;
	else
		a->frames_sent++;
}

uint64_t announcer__run(struct announcer *a, uint64_t now_ns,
			int (*send)(void *opaque, const uint8_t *frame, size_t len), void *opaque)
{
	uint8_t frame[ANNOUNCE_FRAME_LEN];

	if (!a->active)
		return ANNOUNCER_IDLE;
	if (now_ns < a->due_ns)
		return a->due_ns;
	send_one(a, frame, announce__rarp(frame, a->mac), send, opaque);
	if (a->have_ipv4)
		send_one(a, frame, announce__garp(frame, a->mac, a->ipv4), send, opaque);
	if (++a->round >= a->params.rounds) {
		a->active = false;
		return ANNOUNCER_IDLE;
	}
	a->due_ns = now_ns + (uint64_t)gap_ms(&a->params, a->round - 1) * 1000000ULL;
	return a->due_ns;
}
