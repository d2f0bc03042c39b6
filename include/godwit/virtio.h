/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_VIRTIO_H
#define GODWIT_VIRTIO_H

/*
 * virtio 1.x: split virtqueues and the virtio-mmio (version 2, modern only)
 * transport. A device model (virtio-blk, virtio-net) fills a struct
 * virtio_dev_ops, embeds a struct virtio_mmio and serves its queues with
 * virtio_mmio__pop / push / notify_used. Nothing here knows KVM: notifications
 * from the guest arrive as ops->notify() (the QueueNotify register) or on the
 * device's own eventfd (ops->notify_fd, for KVM's ioeventfd), and interrupts
 * leave through the raise() callback given to virtio_mmio__init (for an irqfd).
 *
 * Everything the guest writes is hostile: a malformed descriptor chain puts the
 * device into NEEDS_RESET (status bit 0x40) with one log line per device until the
 * driver resets it; nothing the guest does can crash the VMM or make it touch
 * memory outside guest RAM. Every device write into guest RAM is marked dirty
 * for migration.
 *
 * Threads: MMIO accesses come from vCPU threads (serialised by the transport's
 * lock); queues are served by device threads, which never take that lock
 * (InterruptStatus and the status bits they set are atomics). The rules for a
 * device thread:
 * - touch a virtq only during a "pass" that began with
 *   virtio_mmio__queue_live() true (virtio_mmio__pop checks it on every call);
 *   a live queue's size and ring addresses never change (the transport ignores
 *   queue register writes while a queue is ready, and a queue stops being ready
 *   only through a device reset);
 * - on reset the transport first sets status to 0 (so no new pass finds a live
 *   queue), then calls ops->reset, which must return only once a pass under way
 *   has ended (e.g. wait for the I/O thread to go idle) and must not call into
 *   the register path; then the transport forgets the queues.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "godwit/util.h"

struct guest_mem;
struct bus_access;

/* ---- spec numbers ---------------------------------------------------------- */

#define VIRTIO_MMIO_MAGIC   0x74726976 /* "virt" */
#define VIRTIO_MMIO_VERSION 2
#define VIRTIO_MMIO_VENDOR  0x54574447 /* "GDWT" */

/* virtio-mmio register offsets (all 32-bit). */
#define VIRTIO_MMIO_MAGIC_VALUE		0x000
#define VIRTIO_MMIO_VERSION_REG		0x004
#define VIRTIO_MMIO_DEVICE_ID		0x008
#define VIRTIO_MMIO_VENDOR_ID		0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES	0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES	0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL		0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX	0x034
#define VIRTIO_MMIO_QUEUE_NUM		0x038
#define VIRTIO_MMIO_QUEUE_READY		0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY	0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS	0x060
#define VIRTIO_MMIO_INTERRUPT_ACK	0x064
#define VIRTIO_MMIO_STATUS		0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW	0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH	0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW	0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH	0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW	0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH	0x0a4
#define VIRTIO_MMIO_SHM_SEL		0x0ac
#define VIRTIO_MMIO_SHM_LEN_LOW		0x0b0
#define VIRTIO_MMIO_SHM_LEN_HIGH	0x0b4
#define VIRTIO_MMIO_SHM_BASE_LOW	0x0b8
#define VIRTIO_MMIO_SHM_BASE_HIGH	0x0bc
#define VIRTIO_MMIO_QUEUE_RESET		0x0c0
#define VIRTIO_MMIO_CONFIG_GENERATION	0x0fc
#define VIRTIO_MMIO_CONFIG		0x100
/* Device config space: VIRTIO_MMIO_CONFIG up to the end of the 4 KiB window. */
#define VIRTIO_MMIO_CONFIG_MAX		(0x1000 - VIRTIO_MMIO_CONFIG)

/* InterruptStatus bits. */
#define VIRTIO_MMIO_INT_VRING  (1U << 0) /* used buffer notification */
#define VIRTIO_MMIO_INT_CONFIG (1U << 1) /* configuration change */

/* Device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER	  0x02
#define VIRTIO_STATUS_DRIVER_OK	  0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED	  0x80

/* Transport feature bits (bit numbers). */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX     29
#define VIRTIO_F_VERSION_1     32
#define VIRTIO_BIT(b)	       (1ULL << (b))

/* Device IDs. */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLK 2

/* Split virtqueue layout. */
#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY	   1

#define VIRTQ_DESC_SIZE 16
/* Bytes of each ring for a queue of num entries (event-idx fields included). */
#define VIRTQ_DESC_BYTES(num)  ((uint64_t)(num) * VIRTQ_DESC_SIZE)
#define VIRTQ_AVAIL_BYTES(num) (6 + 2 * (uint64_t)(num))
#define VIRTQ_USED_BYTES(num)  (6 + 8 * (uint64_t)(num))

/* Largest queue size this VMM supports (the spec allows 32768). */
#define VIRTQ_MAX_SIZE 1024
/* Queues per device (net: rx/tx pairs plus control). */
#define VIRTIO_MAX_QUEUES 16

/* ---- virtqueue --------------------------------------------------------------- */

/* One buffer of a descriptor chain, already checked to lie inside guest RAM. */
struct virtq_seg {
	uint64_t gpa;
	uint32_t len;
	bool writable; /* device-writable (VIRTQ_DESC_F_WRITE) */
};

/*
 * A popped descriptor chain: device-readable segments first (segs[0..nr_readable)),
 * then device-writable ones. Zero-length descriptors are dropped. ~16 KiB: keep it
 * in the device's struct or on a thread stack, not in a tight stack frame.
 */
struct virtq_chain {
	uint16_t head; /* the id to give back to virtq__push */
	uint16_t nr_segs;
	uint16_t nr_readable;
	uint64_t readable_len; /* sum of the readable segments' lengths */
	uint64_t writable_len;
	struct virtq_seg segs[VIRTQ_MAX_SIZE];
};

/*
 * A split virtqueue. The transport sets it up; a device thread only calls the
 * virtq__ functions (or the virtio_mmio__ wrappers below).
 */
struct virtq {
	struct guest_mem *mem;
	uint16_t num; /* queue size: a power of two, 1..VIRTQ_MAX_SIZE */
	bool ready;   /* accessed atomically: the driver may flip it */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	/* Host pointers to the rings, checked at enable time (RAM never moves). */
	uint8_t *desc, *avail, *used;
	uint16_t last_avail_idx; /* next avail ring slot the device will read */
	uint16_t used_idx;	 /* next used ring slot the device will fill */
	bool event_idx;		 /* VIRTIO_F_EVENT_IDX negotiated */
	bool indirect;		 /* VIRTIO_F_INDIRECT_DESC negotiated */
	bool signalled_valid;	 /* signalled_used holds a value */
	uint16_t signalled_used; /* used_idx when we last decided about an interrupt */
	char err[128];		 /* why the last pop failed */
};

/*
 * Points vq at rings of num entries at the given addresses; checks num (power of
 * two, 1..VIRTQ_MAX_SIZE), alignment (desc 16, avail 2, used 4) and that each ring
 * lies in RAM. Does not set ready. 0 or -EINVAL (reason in vq->err).
 */
int __must_check virtq__setup(struct virtq *vq, struct guest_mem *mem, uint16_t num,
			      uint64_t desc, uint64_t avail, uint64_t used);
/* Forgets everything: not ready, indices 0. */
void virtq__reset(struct virtq *vq);

/*
 * Pops the next available chain into *chain. 1: a chain; 0: the ring is empty;
 * negative: the driver broke the ring (loop, index out of range, address outside
 * RAM, bad indirect table, readable after writable, avail index jump, ...): -EINVAL
 * or -EFAULT with the reason in vq->err. Nothing was consumed on error.
 */
int __must_check virtq__pop(struct virtq *vq, struct virtq_chain *chain);
/* Is a chain waiting (avail idx != last_avail_idx)? */
bool virtq__has_avail(struct virtq *vq);
/*
 * Returns a chain to the driver: used ring entry {head, len} then used->idx, with
 * a release barrier between. len is the number of bytes written into the chain.
 * 0 or -EFAULT.
 */
int __must_check virtq__push(struct virtq *vq, uint16_t head, uint32_t len);
/*
 * After one or more pushes: must the driver be interrupted? Honours
 * VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with VIRTIO_F_EVENT_IDX.
 */
bool virtq__should_notify(struct virtq *vq);
/*
 * Guest->device notification suppression while the device is busy with the
 * queue: disable, drain with pop, then enable; enable returns true if buffers
 * arrived in between (pop again, or a notification may be lost).
 */
void virtq__disable_notify(struct virtq *vq);
bool __must_check virtq__enable_notify(struct virtq *vq);

/*
 * Scatter/gather copies over a popped chain, bounds-checked: read copies len
 * bytes starting at byte off of the readable part, write copies into the
 * writable part (through guest_mem, so the pages are marked dirty). 0, or
 * -ENOSPC if the part is shorter than off + len, or -EFAULT.
 */
int __must_check virtq_chain__read(const struct virtq_chain *c, struct guest_mem *mem,
				   uint64_t off, void *buf, size_t len);
int __must_check virtq_chain__write(const struct virtq_chain *c, struct guest_mem *mem,
				    uint64_t off, const void *buf, size_t len);
/*
 * Maps bytes [off, off+len) of the readable (writable=false) or writable part to
 * host iovecs, for preadv/pwritev/readv/writev straight into guest RAM. Returns
 * the number of iovecs (≤ max_iov) or -ENOSPC / -EFAULT / -E2BIG (more than
 * max_iov needed). After filling writable iovecs from the host, call
 * virtq_chain__mark_dirty on the same range.
 */
int __must_check virtq_chain__iov(const struct virtq_chain *c, struct guest_mem *mem,
				  bool writable, uint64_t off, uint64_t len, struct iovec *iov,
				  int max_iov);
void virtq_chain__mark_dirty(const struct virtq_chain *c, struct guest_mem *mem, uint64_t off,
			     uint64_t len);

/* ---- virtio-mmio transport ----------------------------------------------------- */

/* What a device model gives the transport. Callbacks get the opaque of init. */
struct virtio_dev_ops {
	uint32_t device_id;	 /* VIRTIO_ID_* */
	uint64_t features;	 /* offered; must include VIRTIO_F_VERSION_1 */
	uint32_t config_size;	 /* bytes of device config space (≤ VIRTIO_MMIO_CONFIG_MAX) */
	unsigned int nr_queues;	 /* 1..VIRTIO_MAX_QUEUES */
	uint16_t queue_max_size; /* power of two, ≤ VIRTQ_MAX_SIZE */
	/* Config space access, offset+len ≤ config_size already checked; len 1, 2, 4 or 8. */
	void (*config_read)(void *opaque, uint32_t offset, void *buf, uint32_t len);
	/* Optional: writes are ignored without it. */
	void (*config_write)(void *opaque, uint32_t offset, const void *buf, uint32_t len);
	/*
	 * Optional: the driver set FEATURES_OK with these (already a subset of
	 * features, VERSION_1 included): 0 accepts, anything else refuses.
	 */
	int (*features_ok)(void *opaque, uint64_t features);
	/* Optional: the driver set DRIVER_OK. Called with the transport lock held. */
	void (*driver_ok)(void *opaque);
	/* The driver wrote queue to QueueNotify (vCPU thread, transport lock held). */
	void (*notify)(void *opaque, unsigned int queue);
	/*
	 * Optional: an eventfd that means the same as notify(queue), for KVM's
	 * ioeventfd; -1 if none.
	 */
	int (*notify_fd)(void *opaque, unsigned int queue);
	/*
	 * The driver reset the device (status 0), or virtio_mmio__reset. Return only
	 * when the device no longer touches its queues; the transport then forgets
	 * the queues. Transport lock held.
	 */
	void (*reset)(void *opaque);
};

struct virtio_mmio {
	pthread_mutex_t lock; /* the register file (vCPU threads) */
	const struct virtio_dev_ops *ops;
	void *opaque;
	void (*raise)(void *irq_opaque); /* pulse the device's interrupt */
	void *irq_opaque;
	struct guest_mem *mem;
	const char *name; /* for log lines, e.g. "virtio-blk0" */

	uint8_t status;		    /* atomic: device threads set NEEDS_RESET */
	uint32_t interrupt_status;  /* atomic */
	uint32_t config_generation; /* atomic */
	uint32_t device_features_sel;
	uint32_t driver_features_sel;
	uint64_t driver_features;
	uint32_t queue_sel;
	bool needs_reset_logged; /* one log line per device until reset */
	struct virtq queues[VIRTIO_MAX_QUEUES];
};

/*
 * Checks ops and prepares the transport. raise(irq_opaque) is called (from any
 * thread) each time InterruptStatus gains a bit; the platform turns it into an
 * edge on the device's GSI. 0 or -EINVAL.
 */
int __must_check virtio_mmio__init(struct virtio_mmio *vm, struct guest_mem *mem, const char *name,
				   const struct virtio_dev_ops *ops, void *opaque,
				   void (*raise)(void *irq_opaque), void *irq_opaque);
void virtio_mmio__exit(struct virtio_mmio *vm);

/* The bus handler: struct bus_device.handle with opaque = the struct virtio_mmio. */
void virtio_mmio__access(void *opaque, struct bus_access *a);

/* Resets the device as if the driver wrote 0 to Status. */
void virtio_mmio__reset(struct virtio_mmio *vm);

/* Queue q (NULL if q ≥ nr_queues). */
struct virtq *virtio_mmio__queue(struct virtio_mmio *vm, unsigned int q);
/* The eventfd of ops->notify_fd for queue q, or -1. */
int virtio_mmio__queue_notify_fd(struct virtio_mmio *vm, unsigned int q);
/* DRIVER_OK set, NEEDS_RESET clear and queue q ready: may the device serve it? */
bool virtio_mmio__queue_live(struct virtio_mmio *vm, unsigned int q);

/*
 * Device-thread helpers. pop: 1 chain, 0 nothing to do (empty, queue not live),
 * <0 the ring is broken: the device is already in NEEDS_RESET (logged once).
 * push: 0, or <0 and NEEDS_RESET. notify_used: sets InterruptStatus bit 0 and
 * raises if the driver wants an interrupt (event idx / NO_INTERRUPT).
 */
int __must_check virtio_mmio__pop(struct virtio_mmio *vm, unsigned int q,
				  struct virtq_chain *chain);
int virtio_mmio__push(struct virtio_mmio *vm, unsigned int q, uint16_t head, uint32_t len);
void virtio_mmio__notify_used(struct virtio_mmio *vm, unsigned int q);

/* Config space changed (e.g. link status): bump ConfigGeneration, interrupt bit 1. */
void virtio_mmio__config_changed(struct virtio_mmio *vm);
/*
 * The device hit an error only a reset can clear: sets NEEDS_RESET, logs why
 * (once per device until reset) and, after DRIVER_OK, sends a config interrupt.
 */
void virtio_mmio__set_needs_reset(struct virtio_mmio *vm, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Negotiated features (valid once FEATURES_OK is set). */
uint64_t virtio_mmio__features(struct virtio_mmio *vm);

/* ---- migration ------------------------------------------------------------------ */

struct virtq_state {
	uint16_t num;
	uint8_t ready;
	uint64_t desc;	 /* QueueDesc */
	uint64_t driver; /* QueueDriver: the avail ring */
	uint64_t device; /* QueueDevice: the used ring */
	uint16_t last_avail_idx;
	uint16_t used_idx;
};

/*
 * The transport's state: plain data. Save with the device quiesced (no chain
 * popped and not pushed). A device saves its own state struct around this one.
 */
struct virtio_mmio_state {
	uint32_t device_id;
	uint32_t nr_queues;
	uint8_t status;
	uint32_t interrupt_status;
	uint32_t config_generation;
	uint32_t device_features_sel;
	uint32_t driver_features_sel;
	uint64_t device_features; /* what the source offered (informational) */
	uint64_t driver_features;
	uint32_t queue_sel;
	struct virtq_state queues[VIRTIO_MAX_QUEUES];
};

void virtio_mmio__save(struct virtio_mmio *vm, struct virtio_mmio_state *st);
/*
 * Validates st as hostile input (device id and queue count match, status bits
 * consistent, driver features a subset of what this device offers, queue sizes
 * powers of two ≤ max, ready rings aligned and inside RAM, in-flight count ≤ num)
 * and only then applies it. 0, or -EINVAL with a log line saying what is wrong.
 */
int __must_check virtio_mmio__load(struct virtio_mmio *vm, const struct virtio_mmio_state *st);

#endif
