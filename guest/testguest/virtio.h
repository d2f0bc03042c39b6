/*
 * godwit test guest: a minimal polling driver core for virtio-mmio version 2 (virtio
 * 1.x "modern") devices and split virtqueues, run from ring 3. No interrupts: the
 * driver sets VIRTQ_AVAIL_F_NO_INTERRUPT and polls the used rings.
 */
#ifndef TESTGUEST_VIRTIO_H
#define TESTGUEST_VIRTIO_H

#include "testguest.h"

/* Register offsets (virtio 1.x, 4.2.2). */
#define VIRTIO_MMIO_MAGIC	      0x000
#define VIRTIO_MMIO_VERSION	      0x004
#define VIRTIO_MMIO_DEVICE_ID	      0x008
#define VIRTIO_MMIO_VENDOR_ID	      0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES   0x010
#define VIRTIO_MMIO_DEVICE_FEAT_SEL   0x014
#define VIRTIO_MMIO_DRIVER_FEATURES   0x020
#define VIRTIO_MMIO_DRIVER_FEAT_SEL   0x024
#define VIRTIO_MMIO_QUEUE_SEL	      0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX     0x034
#define VIRTIO_MMIO_QUEUE_NUM	      0x038
#define VIRTIO_MMIO_QUEUE_READY	      0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY      0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS  0x060
#define VIRTIO_MMIO_INTERRUPT_ACK     0x064
#define VIRTIO_MMIO_STATUS	      0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW    0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH   0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW  0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW  0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG	      0x100

#define VIRTIO_MMIO_MAGIC_VALUE 0x74726976u /* "virt" */

#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLK 2

#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER	  2
#define VIRTIO_STATUS_DRIVER_OK	  4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED	  0x80

#define VIRTIO_F_VERSION_1 (1ULL << 32)

#define VIRTQ_DESC_F_NEXT	   1
#define VIRTQ_DESC_F_WRITE	   2
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY	   1

/* Largest queue this driver uses: rings of 128 entries fit two pages. */
#define VIRTQ_MAX 128

struct virtq_desc {
	u64 addr;
	u32 len;
	u16 flags;
	u16 next;
};

struct virtq_avail {
	u16 flags;
	u16 idx;
	u16 ring[VIRTQ_MAX];
	u16 used_event;
};

struct virtq_used_elem {
	u32 id;
	u32 len;
};

struct virtq_used {
	u16 flags;
	u16 idx;
	struct virtq_used_elem ring[VIRTQ_MAX];
	u16 avail_event;
};

/* The memory of one queue: descriptor table + avail ring in page 0, used ring in page 1. */
struct virtq_mem {
	struct virtq_desc desc[VIRTQ_MAX];
	struct virtq_avail avail;
	u8 pad0[PAGE_SIZE - VIRTQ_MAX * 16 - sizeof(struct virtq_avail)];
	struct virtq_used used;
	u8 pad1[PAGE_SIZE - sizeof(struct virtq_used)];
} __attribute__((aligned(4096)));

struct vdev {
	u64 base; /* MMIO base of the transport */
	u32 device_id;
	const char *name; /* "virtio-net", "virtio-blk" */
	u64 offered;	  /* device features */
	u64 features;	  /* negotiated */
};

struct virtq {
	struct vdev *dev;
	u32 index;
	u32 num; /* power of two <= VIRTQ_MAX */
	struct virtq_mem *mem;
	u16 next_avail; /* the driver's avail idx */
	u16 last_used;	/* used entries consumed so far */
};

/*
 * Finds the first virtio-mmio device with DEVICE_ID, probing godwit's window
 * (0xd0000000 + i * 0x1000, i < 19), then QEMU microvm's (0xfeb00000 + i * 0x200,
 * i < 24). Fails (exit 2) if there is none or it is not version 2.
 */
void virtio_find(struct vdev *d, u32 device_id, const char *name);
/*
 * Reset, ACKNOWLEDGE, DRIVER, features: accepts VERSION_1 plus the bits of WANT the
 * device offers; fails unless the device offers VERSION_1 and every bit of NEED.
 * FEATURES_OK is checked to have stuck.
 */
void virtio_negotiate(struct vdev *d, u64 want, u64 need);
/* Sets up queue INDEX with at most WANT entries in MEM (zeroed here). */
void virtq_setup(struct vdev *d, struct virtq *q, u32 index, u32 want, struct virtq_mem *mem);
/* DRIVER_OK, then checks that the device did not fail. */
void virtio_driver_ok(struct vdev *d);
/* Fails with a clear error if the device has set NEEDS_RESET (or FAILED). */
void virtio_check(struct vdev *d);

u8 virtio_config8(struct vdev *d, u32 off);
u32 virtio_config32(struct vdev *d, u32 off);
u64 virtio_config64(struct vdev *d, u32 off); /* two 32-bit reads, generation-checked */

/* Makes descriptor chain HEAD available (does not notify). */
void virtq_push(struct virtq *q, u16 head);
/* Notifies the device of new available buffers. */
void virtq_kick(struct virtq *q);
/*
 * Same, unless the device has said it needs no notification (VIRTQ_USED_F_NO_NOTIFY:
 * it is draining the queue and will see the new index). A full fence orders the avail
 * index store before the flags load. Returns whether it notified.
 */
bool virtq_kick_if_needed(struct virtq *q);
/*
 * Waits (polling, NEEDS_RESET checked) for the next used element until the guest clock
 * reaches DEADLINE (ns); false on timeout.
 */
bool virtq_wait_used_until(struct virtq *q, struct cpu *c, u64 deadline, u32 *id, u32 *len);
/* Takes the next used element if there is one. */
bool virtq_pop_used(struct virtq *q, u32 *id, u32 *len);
/* Waits (polling, NEEDS_RESET checked) for the next used element. */
void virtq_wait_used(struct virtq *q, u32 *id, u32 *len);

/* virtio-blk (blklog, blkbench) */
#define VIRTIO_BLK_F_RO	   (1ULL << 5)
#define VIRTIO_BLK_F_FLUSH (1ULL << 9)

#define VIRTIO_BLK_T_IN	   0
#define VIRTIO_BLK_T_OUT   1
#define VIRTIO_BLK_T_FLUSH 4

#endif
