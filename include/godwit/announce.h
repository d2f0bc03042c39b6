/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_ANNOUNCE_H
#define GODWIT_ANNOUNCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/if_ether.h>

#include "godwit/util.h"

/*
 * Telling the network where a guest's MAC now lives, after migration: switches
 * learn the new port from the frames' source address.
 *
 * Frames: a RARP reverse request (what QEMU's announce-self sends, so switches
 * and tools that look for it see the same thing) and, when the guest's IPv4
 * address is known, a gratuitous ARP (an RFC 5227 ARP announcement), which also
 * refreshes the neighbours' ARP caches. Both are padded to the 60-byte Ethernet
 * minimum (the FCS is the NIC's job).
 *
 * Schedule: ANNOUNCE_DEFAULT_ROUNDS rounds; the first at once, then gaps of
 * initial_ms, doubling each time, capped at max_ms: 0, 50, 150, 350, 750 ms
 * by default. A gap is measured from when the previous round went out, so a
 * late round never causes a burst. Each round sends the RARP, then the
 * gratuitous ARP if the address is known.
 *
 * struct announcer is the schedule as a state machine, with no thread or clock
 * of its own: its owner (the virtio-net I/O thread) calls announcer__run() when
 * the time it returned has come. Cancel is announcer__cancel(), bounded by
 * construction.
 */

#define ANNOUNCE_FRAME_LEN ETH_ZLEN /* 60 */

/* ARP opcodes (RFC 826, RFC 903). */
#define ANNOUNCE_ARP_REQUEST  1
#define ANNOUNCE_ARP_REPLY    2
#define ANNOUNCE_RARP_REQUEST 3 /* "request reverse" */

#define ANNOUNCE_DEFAULT_ROUNDS	    5
#define ANNOUNCE_DEFAULT_INITIAL_MS 50
#define ANNOUNCE_DEFAULT_MAX_MS	    1000
#define ANNOUNCE_MAX_ROUNDS	    100
#define ANNOUNCE_MAX_GAP_MS	    60000

struct announce_params {
	unsigned int rounds;  /* 1 .. ANNOUNCE_MAX_ROUNDS */
	uint32_t initial_ms;  /* gap after the first round: 1 .. ANNOUNCE_MAX_GAP_MS */
	uint32_t max_ms;      /* cap on a gap: initial_ms .. ANNOUNCE_MAX_GAP_MS */
};

/* Fills the defaults above. */
void announce__default_params(struct announce_params *p);
/* 0 or -EINVAL. */
int __must_check announce__check_params(const struct announce_params *p);

/*
 * When each round goes out, in ms from the first (out[0] = 0), for a schedule
 * whose rounds are never late. Writes min(rounds, n) entries; returns rounds,
 * or -EINVAL for bad params.
 */
int announce__schedule_ms(const struct announce_params *p, uint32_t *out, unsigned int n);

/* Builds the frames; each is ANNOUNCE_FRAME_LEN bytes, the value returned. */
size_t announce__rarp(uint8_t frame[ANNOUNCE_FRAME_LEN], const uint8_t mac[ETH_ALEN]);
size_t announce__garp(uint8_t frame[ANNOUNCE_FRAME_LEN], const uint8_t mac[ETH_ALEN],
		      const uint8_t ipv4[4]);

/*
 * If @frame (an Ethernet frame the guest sent) is an ARP request or reply from
 * @mac with a non-zero sender IPv4 address, copies that address to @ipv4 and
 * returns true. Any bytes at all are safe to pass.
 */
bool announce__learn_ipv4(const uint8_t *frame, size_t len, const uint8_t mac[ETH_ALEN],
			  uint8_t ipv4[4]);

struct announcer {
	struct announce_params params;
	uint8_t mac[ETH_ALEN];
	bool have_ipv4;
	uint8_t ipv4[4];
	bool active;
	unsigned int round;  /* next round to send */
	uint64_t due_ns;     /* when it is due (monotonic) */
	uint64_t frames_sent;
	uint64_t send_errors;
};

#define ANNOUNCER_IDLE UINT64_MAX

void announcer__init(struct announcer *a);
/* Starts (or restarts from round 0) a schedule; the first round is due at @now_ns. */
int __must_check announcer__start(struct announcer *a, const struct announce_params *p,
				  const uint8_t mac[ETH_ALEN], const uint8_t *ipv4,
				  uint64_t now_ns);
void announcer__cancel(struct announcer *a);
/* Sets (or with NULL forgets) the IPv4 address later rounds announce. */
void announcer__set_ipv4(struct announcer *a, const uint8_t *ipv4);
/*
 * Sends the round due at @now_ns, if one is, through @send (0 or -errno; a
 * failed frame is counted and the schedule goes on). Returns the monotonic time
 * the next round is due, or ANNOUNCER_IDLE when the schedule is over (or off).
 */
uint64_t announcer__run(struct announcer *a, uint64_t now_ns,
			int (*send)(void *opaque, const uint8_t *frame, size_t len), void *opaque);

#endif
