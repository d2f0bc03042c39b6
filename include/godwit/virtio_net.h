/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_VIRTIO_NET_H
#define GODWIT_VIRTIO_NET_H

#include <linux/if_ether.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "godwit/announce.h"
#include "godwit/tap.h"
#include "godwit/util.h"
#include "godwit/virtio.h"

/*
 * virtio-net over virtio-mmio: one receive queue, one transmit queue and a
 * control queue, a MAC, link status, and guest-side announce after migration.
 *
 * Offered features: VERSION_1, MAC, STATUS, CTRL_VQ, GUEST_ANNOUNCE (which needs
 * CTRL_VQ: a driver that accepts one without the other is refused at
 * FEATURES_OK), EVENT_IDX and INDIRECT_DESC (served by the virtio core). No
 * checksum or segmentation offload, no mergeable buffers: every frame is one
 * complete Ethernet frame behind a 12-byte header that is zero except
 * num_buffers = 1. The control queue answers VIRTIO_NET_CTRL_ANNOUNCE_ACK and
 * replies VIRTIO_NET_ERR to every other command.
 *
 * Threads: one I/O thread per device (virtio_net__start) polls the backend, the
 * three queue-notify eventfds (also usable as KVM ioeventfds), a control eventfd
 * and the announce timer. Receive stops reading the backend while the guest has
 * no receive buffer posted (frames wait in the backend: the tap's own queue), so
 * nothing spins and nothing the backend still holds is lost. Config space reads
 * come from vCPU threads under the device's own small lock.
 *
 * Migration: virtio_net__save/load carry the MAC, link/announce status, the
 * learned guest IPv4 address and the transport state (negotiated features and
 * queues are in it). virtio_net__quiesce parks the I/O thread between frames
 * (for stop-and-copy); virtio_net__resume lets it go on. After the guest runs on
 * the destination, virtio_net__announce() announces its MAC (see there).
 */

/* Feature bits (bit numbers). */
#define VIRTIO_NET_F_MAC	    5
#define VIRTIO_NET_F_STATUS	    16
#define VIRTIO_NET_F_CTRL_VQ	    17
#define VIRTIO_NET_F_GUEST_ANNOUNCE 21

/* Config space status bits. */
#define VIRTIO_NET_S_LINK_UP  1
#define VIRTIO_NET_S_ANNOUNCE 2

/* Config space: mac[6], status le16, max_virtqueue_pairs le16 (always 1). */
#define VIRTIO_NET_CFG_MAC	 0
#define VIRTIO_NET_CFG_STATUS	 6
#define VIRTIO_NET_CFG_MAX_PAIRS 8
#define VIRTIO_NET_CFG_SIZE	 10

/* Queues. */
#define VIRTIO_NET_Q_RX	      0
#define VIRTIO_NET_Q_TX	      1
#define VIRTIO_NET_Q_CTRL     2
#define VIRTIO_NET_NR_QUEUES  3
#define VIRTIO_NET_QUEUE_SIZE 256

/* Control queue: class, command, data (readable); ack, the last writable byte. */
#define VIRTIO_NET_OK		     0
#define VIRTIO_NET_ERR		     1
#define VIRTIO_NET_CTRL_ANNOUNCE     3
#define VIRTIO_NET_CTRL_ANNOUNCE_ACK 0

/* The virtio-net v1 header: little-endian, 12 bytes, in front of every frame. */
struct virtio_net_hdr_v1 {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;
};

/* What `--net` asked for. */
struct virtio_net_params {
	struct net_backend backend; /* required; must outlive the device */
	bool have_mac;		    /* false: a random 52:54:00:xx:xx:xx */
	uint8_t mac[ETH_ALEN];
	bool have_ipv4; /* the guest's IPv4 address, if known: adds gratuitous ARP */
	uint8_t ipv4[4];
	struct announce_params announce; /* all zero: the defaults */
};

struct virtio_net_stats {
	uint64_t rx_frames;
	uint64_t rx_dropped;  /* too short, or larger than the guest's buffer */
	uint64_t tx_frames;
	uint64_t tx_dropped;  /* too short or too long, or the backend had no room */
	uint64_t backend_errors;
	uint64_t ctrl_cmds;
};

/* Migration state of the device-specific part; the transport's travels inside. */
struct virtio_net_state {
	uint8_t mac[ETH_ALEN];
	uint16_t status; /* VIRTIO_NET_S_* */
	uint8_t have_ipv4;
	uint8_t ipv4[4];
	struct virtio_mmio_state transport;
};

struct virtio_net {
	struct virtio_mmio mmio; /* the transport; its bus handler is virtio_mmio__access */
	struct virtio_dev_ops ops;
	struct guest_mem *mem;
	struct net_backend be;
	char name[32];

	/* lock protects the fields up to the next blank line; cond signals them. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint8_t mac[ETH_ALEN];
	uint16_t status;
	bool have_ipv4;
	uint8_t ipv4[4];
	unsigned int quiesce_depth;
	bool parked;	       /* the I/O thread is parked for quiesce */
	bool reset_hold;       /* quiesced by a driver reset until the next DRIVER_OK */
	bool stop;
	bool announce_pending; /* start the host-side announce rounds */
	struct announce_params announce_params;

	/* The I/O thread's own (or process()'s caller's when there is no thread). */
	int kick_fd[VIRTIO_NET_NR_QUEUES];
	int ctl_fd;
	int timer_fd;
	int epoll_fd;
	pthread_t thread;
	bool thread_started;
	bool backend_polled;  /* backend fd registered for EPOLLIN */
	bool backend_broken;  /* backend failed: no more reads (logged once) */
	struct announcer announcer;
	uint64_t timer_due;   /* what timer_fd is armed for (ANNOUNCER_IDLE: not) */
	uint8_t *buf;	      /* NET_BACKEND_MAX_FRAME bytes, one frame in flight */
	struct virtq_chain chain;

	struct virtio_net_stats stats; /* updated atomically */
};

/*
 * Parses "52:54:00:12:34:56" (hex pairs, ':' separated); rejects multicast and
 * all-zero addresses. 0 or -EINVAL.
 */
int __must_check virtio_net__parse_mac(const char *s, uint8_t mac[ETH_ALEN]);
/* A random locally administered unicast MAC: 52:54:00:xx:xx:xx. 0 or -errno. */
int __must_check virtio_net__random_mac(uint8_t mac[ETH_ALEN]);

/*
 * Sets the device up (thread not started): transport, eventfds, buffers. raise
 * is the interrupt callback given to virtio_mmio__init. 0 or -errno.
 */
int __must_check virtio_net__init(struct virtio_net *n, struct guest_mem *mem, const char *name,
				  const struct virtio_net_params *p,
				  void (*raise)(void *irq_opaque), void *irq_opaque);
/* Starts the I/O thread. */
int __must_check virtio_net__start(struct virtio_net *n);
/* Stops the thread (if started) and frees everything; the backend stays open. */
void virtio_net__exit(struct virtio_net *n);

/*
 * One round of what the I/O thread does on each wake-up (receive, transmit,
 * control, announce). Only for a caller that did not start the thread (tests).
 */
void virtio_net__process(struct virtio_net *n);

/*
 * Parks the I/O thread between frames and returns once it is parked (nests:
 * each quiesce needs a resume). While quiesced the device touches neither guest
 * RAM nor the backend. The vCPUs must be paused too for a consistent save.
 */
void virtio_net__quiesce(struct virtio_net *n);
void virtio_net__resume(struct virtio_net *n);

/*
 * After migration, with the guest running: sends the host-side announce rounds
 * (RARP, plus gratuitous ARP if the guest's IPv4 is known) on the I/O thread
 * and, if the driver negotiated GUEST_ANNOUNCE, sets VIRTIO_NET_S_ANNOUNCE and
 * raises a config-change interrupt so the guest announces itself too (all its
 * addresses, VLANs included); the guest clears the bit with ANNOUNCE_ACK.
 */
void virtio_net__announce(struct virtio_net *n);

/* Link status (VIRTIO_NET_S_LINK_UP); a change raises a config interrupt. */
void virtio_net__set_link(struct virtio_net *n, bool up);

void virtio_net__get_mac(struct virtio_net *n, uint8_t mac[ETH_ALEN]);
uint16_t virtio_net__status(struct virtio_net *n);
void virtio_net__get_stats(struct virtio_net *n, struct virtio_net_stats *st);

/* Save quiesces the device around itself. */
void virtio_net__save(struct virtio_net *n, struct virtio_net_state *st);
/*
 * Checks @st as hostile input (unicast non-zero MAC, status bits known,
 * ANNOUNCE only with GUEST_ANNOUNCE negotiated, GUEST_ANNOUNCE only with
 * CTRL_VQ), then the transport part (virtio_mmio__load), and only then applies
 * it; the device adopts the MAC in @st. 0 or -EINVAL with the device untouched.
 */
int __must_check virtio_net__load(struct virtio_net *n, const struct virtio_net_state *st);

#endif
