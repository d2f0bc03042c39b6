// SPDX-License-Identifier: GPL-2.0
/*
 * Split virtqueues (virtio 1.x, 2.7): the device side.
 *
 * The driver runs on other CPUs while the device walks the rings, and it is
 * hostile. So:
 * - every descriptor is copied out of guest RAM once and only the copy is
 *   looked at (no double fetch);
 * - every buffer is checked with guest_mem__ptr, which refuses ranges outside RAM
 *   whatever the sum of address and length;
 * - a chain is bounded by the queue size (a loop in the NEXT links shows up as a
 *   chain that is too long); indirect tables are one level deep;
 * - the avail index is read with acquire semantics before the ring slots it
 *   covers, and the used index is written with release semantics after the used
 *   element; full barriers separate publishing our index from reading the
 *   driver's suppression fields (the classic lost-notification race);
 * - every write into the rings is marked in the VMM dirty bitmap, after the
 *   write, so a migration round never misses it.
 */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "godwit/memory.h"
#include "godwit/virtio.h"

/* Offsets inside the rings. */
#define AVAIL_FLAGS	0
#define AVAIL_IDX	2
#define AVAIL_RING	4
#define USED_FLAGS	0
#define USED_IDX	2
#define USED_RING	4
#define USED_ELEM_SIZE	8

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

static bool is_pow2(uint32_t n)
{
	return n && !(n & (n - 1));
}

static uint16_t load16(const uint8_t *p, int order)
{
	return le16toh(__atomic_load_n((const uint16_t *)p, order));
}

static void store16(uint8_t *p, uint16_t v, int order)
{
	__atomic_store_n((uint16_t *)p, htole16(v), order);
}

static void read_desc(const uint8_t *table, uint16_t i, struct desc *d)
{
	uint8_t raw[VIRTQ_DESC_SIZE];

	/* One copy out of guest memory; only the copy is looked at afterwards. */
	memcpy(raw, table + (size_t)i * VIRTQ_DESC_SIZE, sizeof(raw));
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	memcpy(&d->addr, raw, 8);
	memcpy(&d->len, raw + 8, 4);
	memcpy(&d->flags, raw + 12, 2);
	memcpy(&d->next, raw + 14, 2);
	d->addr = le64toh(d->addr);
	d->len = le32toh(d->len);
	d->flags = le16toh(d->flags);
	d->next = le16toh(d->next);
}

void virtq__reset(struct virtq *vq)
{
	struct guest_mem *mem = vq->mem;

	memset(vq, 0, sizeof(*vq));
	vq->mem = mem;
}

static int setup_fail(struct virtq *vq, const char *what, uint64_t gpa, uint64_t len)
{
	snprintf(vq->err, sizeof(vq->err), "%s ring at 0x%llx (+0x%llx) %s", what,
		 (unsigned long long)gpa, (unsigned long long)len,
		 guest_mem__ptr(vq->mem, gpa, len) ? "misaligned" : "outside guest RAM");
	return -EINVAL;
}

int virtq__setup(struct virtq *vq, struct guest_mem *mem, uint16_t num, uint64_t desc,
		 uint64_t avail, uint64_t used)
{
	vq->mem = mem;
	if (!is_pow2(num) || num > VIRTQ_MAX_SIZE) {
		snprintf(vq->err, sizeof(vq->err), "queue size %u is not a power of two <= %u",
			 num, VIRTQ_MAX_SIZE);
		return -EINVAL;
	}
	vq->desc = guest_mem__ptr(mem, desc, VIRTQ_DESC_BYTES(num));
	vq->avail = guest_mem__ptr(mem, avail, VIRTQ_AVAIL_BYTES(num));
	vq->used = guest_mem__ptr(mem, used, VIRTQ_USED_BYTES(num));
	if (!vq->desc || desc % 16)
		return setup_fail(vq, "descriptor", desc, VIRTQ_DESC_BYTES(num));
	if (!vq->avail || avail % 2)
		return setup_fail(vq, "available", avail, VIRTQ_AVAIL_BYTES(num));
	if (!vq->used || used % 4)
		return setup_fail(vq, "used", used, VIRTQ_USED_BYTES(num));
	vq->num = num;
	vq->desc_gpa = desc;
	vq->avail_gpa = avail;
	vq->used_gpa = used;
	vq->signalled_valid = false;
	return 0;
}

static bool rings_set(const struct virtq *vq)
{
	return vq->num && vq->desc && vq->avail && vq->used;
}

bool virtq__has_avail(struct virtq *vq)
{
	if (!rings_set(vq))
		return false;
	return load16(vq->avail + AVAIL_IDX, __ATOMIC_ACQUIRE) != vq->last_avail_idx;
}

/* Walks one chain; the caller has checked head < num. */
struct walk {
	const uint8_t *table; /* descriptor table being walked */
	uint32_t count;	      /* entries in it */
	bool in_indirect;
	bool seen_writable;
	uint32_t visited; /* buffer descriptors so far, direct and indirect */
};

static int __attribute__((format(printf, 2, 3))) walk_err(struct virtq *vq, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(vq->err, sizeof(vq->err), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int enter_indirect(struct virtq *vq, struct walk *w, const struct desc *d)
{
	if (w->in_indirect)
		return walk_err(vq, "indirect descriptor inside an indirect table");
	if (!vq->indirect)
		return walk_err(vq, "indirect descriptor without VIRTIO_F_INDIRECT_DESC");
	if (d->flags & VIRTQ_DESC_F_NEXT)
		return walk_err(vq, "indirect descriptor with NEXT set");
	if (!d->len || d->len % VIRTQ_DESC_SIZE || d->len / VIRTQ_DESC_SIZE > vq->num)
		return walk_err(vq, "indirect table of %u bytes (queue size %u)", d->len, vq->num);
	w->table = guest_mem__ptr(vq->mem, d->addr, d->len);
	if (!w->table) {
		snprintf(vq->err, sizeof(vq->err), "indirect table at 0x%llx (+0x%x) outside RAM",
			 (unsigned long long)d->addr, d->len);
		return -EFAULT;
	}
	w->count = d->len / VIRTQ_DESC_SIZE;
	w->in_indirect = true;
	return 0;
}

static int add_seg(struct virtq *vq, struct walk *w, struct virtq_chain *c, const struct desc *d)
{
	bool writable = d->flags & VIRTQ_DESC_F_WRITE;
	struct virtq_seg *s;

	if (++w->visited > vq->num)
		return walk_err(vq, "descriptor chain longer than the queue size %u (loop?)",
				vq->num);
	if (!d->len)
		return 0;
	if (!guest_mem__ptr(vq->mem, d->addr, d->len)) {
		snprintf(vq->err, sizeof(vq->err), "buffer at 0x%llx (+0x%x) outside guest RAM",
			 (unsigned long long)d->addr, d->len);
		return -EFAULT;
	}
	if (!writable && w->seen_writable)
		return walk_err(vq, "device-readable descriptor after a device-writable one");
	w->seen_writable |= writable;
	s = &c->segs[c->nr_segs++];
	s->gpa = d->addr;
	s->len = d->len;
	s->writable = writable;
	if (writable) {
		c->writable_len += d->len;
	} else {
		c->nr_readable++;
		c->readable_len += d->len;
	}
	return 0;
}

static int walk_chain(struct virtq *vq, uint16_t head, struct virtq_chain *c)
{
	struct walk w = { .table = vq->desc, .count = vq->num };
	uint32_t i = head;
	struct desc d;
	int ret;

	c->head = head;
	c->nr_segs = 0;
	c->nr_readable = 0;
	c->readable_len = 0;
	c->writable_len = 0;
	for (;;) {
		read_desc(w.table, (uint16_t)i, &d);
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			ret = enter_indirect(vq, &w, &d);
			if (ret)
				return ret;
			i = 0;
			continue;
		}
		ret = add_seg(vq, &w, c, &d);
		if (ret)
			return ret;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		i = d.next;
		if (i >= w.count)
			return walk_err(vq, "descriptor index %u out of range (%u entries)", i,
					w.count);
	}
}

int virtq__pop(struct virtq *vq, struct virtq_chain *chain)
{
	uint16_t avail_idx, pending, head;
	int ret;

	if (!rings_set(vq))
		return 0;
	avail_idx = load16(vq->avail + AVAIL_IDX, __ATOMIC_ACQUIRE);
	pending = (uint16_t)(avail_idx - vq->last_avail_idx);
	if (!pending)
		return 0;
	if (pending > vq->num)
		return walk_err(vq, "available index jumped by %u (queue size %u)", pending,
				vq->num);
	head = load16(vq->avail + AVAIL_RING + 2 * (vq->last_avail_idx & (vq->num - 1)),
		      __ATOMIC_RELAXED);
	if (head >= vq->num)
		return walk_err(vq, "head descriptor index %u out of range (queue size %u)", head,
				vq->num);
	ret = walk_chain(vq, head, chain);
	if (ret)
		return ret;
	vq->last_avail_idx++;
	return 1;
}

int virtq__push(struct virtq *vq, uint16_t head, uint32_t len)
{
	uint32_t slot, elem[2];

	if (!rings_set(vq))
		return -EFAULT;
	slot = vq->used_idx & (vq->num - 1);
	elem[0] = htole32(head);
	elem[1] = htole32(len);
	memcpy(vq->used + USED_RING + (size_t)slot * USED_ELEM_SIZE, elem, sizeof(elem));
	guest_mem__mark_dirty(vq->mem, vq->used_gpa + USED_RING + (uint64_t)slot * USED_ELEM_SIZE,
			      USED_ELEM_SIZE);
	vq->used_idx++;
	/* The element is visible before the index that hands it over. */
	store16(vq->used + USED_IDX, vq->used_idx, __ATOMIC_RELEASE);
	guest_mem__mark_dirty(vq->mem, vq->used_gpa + USED_IDX, 2);
	return 0;
}

/* The driver asked to be interrupted when used idx passes event (2.7.10). */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

bool virtq__should_notify(struct virtq *vq)
{
	uint16_t old, used_event;
	bool valid;

	if (!rings_set(vq))
		return false;
	/* Our used idx store must be visible before we read the driver's wishes. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx)
		return !(load16(vq->avail + AVAIL_FLAGS, __ATOMIC_RELAXED) &
			 VIRTQ_AVAIL_F_NO_INTERRUPT);
	used_event = load16(vq->avail + AVAIL_RING + 2 * (size_t)vq->num, __ATOMIC_RELAXED);
	old = vq->signalled_used;
	valid = vq->signalled_valid;
	vq->signalled_used = vq->used_idx;
	vq->signalled_valid = true;
	return !valid || need_event(used_event, vq->used_idx, old);
}

static void set_used_flags(struct virtq *vq, uint16_t flags)
{
	store16(vq->used + USED_FLAGS, flags, __ATOMIC_RELAXED);
	guest_mem__mark_dirty(vq->mem, vq->used_gpa + USED_FLAGS, 2);
}

void virtq__disable_notify(struct virtq *vq)
{
	/* With event idx, an avail_event left behind suppresses further kicks. */
	if (rings_set(vq) && !vq->event_idx)
		set_used_flags(vq, VIRTQ_USED_F_NO_NOTIFY);
}

bool virtq__enable_notify(struct virtq *vq)
{
	uint64_t off;

	if (!rings_set(vq))
		return false;
	if (vq->event_idx) {
		off = USED_RING + (uint64_t)vq->num * USED_ELEM_SIZE;
		store16(vq->used + off, vq->last_avail_idx, __ATOMIC_RELAXED);
		guest_mem__mark_dirty(vq->mem, vq->used_gpa + off, 2);
	} else {
		set_used_flags(vq, 0);
	}
	/* Publish before looking again, or a buffer added meanwhile goes unnoticed. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return virtq__has_avail(vq);
}

/* ---- scatter/gather over a chain --------------------------------------------- */

/*
 * Calls fn on each piece of bytes [off, off+len) of one part of the chain.
 * -ENOSPC if the part is too short, or what fn returns.
 */
static int for_range(const struct virtq_chain *c, bool writable, uint64_t off, uint64_t len,
		     int (*fn)(void *arg, uint64_t gpa, uint64_t n, uint64_t done), void *arg)
{
	unsigned int i = writable ? c->nr_readable : 0;
	unsigned int end = writable ? c->nr_segs : c->nr_readable;
	uint64_t done = 0, n;
	int ret;

	if (off > (writable ? c->writable_len : c->readable_len) ||
	    len > (writable ? c->writable_len : c->readable_len) - off)
		return -ENOSPC;
	for (; i < end && done < len; i++) {
		const struct virtq_seg *s = &c->segs[i];

		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		n = MIN(s->len - off, len - done);
		ret = fn(arg, s->gpa + off, n, done);
		if (ret)
			return ret;
		done += n;
		off = 0;
	}
	return done == len ? 0 : -ENOSPC;
}

struct copy_arg {
	struct guest_mem *mem;
	uint8_t *buf;
};

static int copy_from(void *arg, uint64_t gpa, uint64_t n, uint64_t done)
{
	struct copy_arg *a = arg;

	return guest_mem__read(a->mem, gpa, a->buf + done, n);
}

static int copy_to(void *arg, uint64_t gpa, uint64_t n, uint64_t done)
{
	struct copy_arg *a = arg;

	return guest_mem__write(a->mem, gpa, a->buf + done, n);
}

int virtq_chain__read(const struct virtq_chain *c, struct guest_mem *mem, uint64_t off, void *buf,
		      size_t len)
{
	struct copy_arg a = { .mem = mem, .buf = buf };

	return for_range(c, false, off, len, copy_from, &a);
}

int virtq_chain__write(const struct virtq_chain *c, struct guest_mem *mem, uint64_t off,
		       const void *buf, size_t len)
{
	struct copy_arg a = { .mem = mem, .buf = (uint8_t *)buf };

	return for_range(c, true, off, len, copy_to, &a);
}

struct iov_arg {
	struct guest_mem *mem;
	struct iovec *iov;
	int max, nr;
};

static int add_iov(void *arg, uint64_t gpa, uint64_t n, uint64_t done)
{
	struct iov_arg *a = arg;
	void *p = guest_mem__ptr(a->mem, gpa, n);

	(void)done;
	if (!p)
		return -EFAULT;
	if (a->nr >= a->max)
		return -E2BIG;
	a->iov[a->nr].iov_base = p;
	a->iov[a->nr].iov_len = n;
	a->nr++;
	return 0;
}

int virtq_chain__iov(const struct virtq_chain *c, struct guest_mem *mem, bool writable,
		     uint64_t off, uint64_t len, struct iovec *iov, int max_iov)
{
	struct iov_arg a = { .mem = mem, .iov = iov, .max = max_iov };
	int ret = for_range(c, writable, off, len, add_iov, &a);

	return ret ? ret : a.nr;
}

static int dirty_piece(void *arg, uint64_t gpa, uint64_t n, uint64_t done)
{
	(void)done;
	guest_mem__mark_dirty(arg, gpa, n);
	return 0;
}

void virtq_chain__mark_dirty(const struct virtq_chain *c, struct guest_mem *mem, uint64_t off,
			     uint64_t len)
{
	(void)for_range(c, true, off, len, dirty_piece, mem);
}
