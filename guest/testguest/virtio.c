/*
 * godwit test guest, ring 3: virtio-mmio (version 2) device discovery and bring-up,
 * split virtqueues, polled. See virtio.h.
 *
 * Ordering: x86 keeps stores in order and loads in order (TSO), and MMIO here is
 * uncached or trapping, so compiler barriers between the ring writes and the index
 * write (and between reading used->idx and the used element) are all the protocol
 * needs; the registers themselves are volatile accesses.
 */
#include "virtio.h"

_Static_assert(sizeof(struct virtq_mem) == 2 * PAGE_SIZE, "virtq_mem is two pages");

struct window {
	u64 base, stride;
	u32 count;
	const char *what;
};

static const struct window windows[] = {
    {0xd0000000UL, 0x1000, 19, "godwit"},      /* x86_layout.h: VIRTIO_MMIO_BASE/SIZE/MAX */
    {0xfeb00000UL, 0x200, 24, "qemu-microvm"}, /* QEMU microvm: VIRTIO_MMIO_BASE, 512 B each */
};

static u32 rd(struct vdev *d, u32 off)
{
	return mmio_read32(d->base + off);
}

static void wr(struct vdev *d, u32 off, u32 v)
{
	mmio_write32(d->base + off, v);
}

void virtio_find(struct vdev *d, u32 device_id, const char *name)
{
	for (u32 w = 0; w < sizeof(windows) / sizeof(windows[0]); w++) {
		for (u32 i = 0; i < windows[w].count; i++) {
			u64 base = windows[w].base + i * windows[w].stride;
			if (mmio_read32(base + VIRTIO_MMIO_MAGIC) != VIRTIO_MMIO_MAGIC_VALUE ||
			    mmio_read32(base + VIRTIO_MMIO_DEVICE_ID) != device_id)
				continue;
			u32 version = mmio_read32(base + VIRTIO_MMIO_VERSION);
			if (version != 2)
				fail("%s at 0x%lx is virtio-mmio version %u (legacy); only version "
				     "2 "
				     "(virtio 1.x) is supported",
				     name, base, version);
			d->base = base;
			d->device_id = device_id;
			d->name = name;
			return;
		}
	}
	fail("no %s device (probed virtio-mmio at 0xd0000000 + i*0x1000, i < 19, and "
	     "0xfeb00000 + i*0x200, i < 24)",
	     name);
}

void virtio_check(struct vdev *d)
{
	u32 s = rd(d, VIRTIO_MMIO_STATUS);
	if (s & VIRTIO_STATUS_NEEDS_RESET)
		fail("%s at 0x%lx: device needs reset (status 0x%x)", d->name, d->base, s);
	if (s & VIRTIO_STATUS_FAILED)
		fail("%s at 0x%lx: device status FAILED (0x%x)", d->name, d->base, s);
}

void virtio_negotiate(struct vdev *d, u64 want, u64 need)
{
	wr(d, VIRTIO_MMIO_STATUS, 0);
	for (u32 i = 0; rd(d, VIRTIO_MMIO_STATUS) != 0; i++) {
		if (i == 1000000)
			fail("%s at 0x%lx: reset did not complete", d->name, d->base);
		cpu_relax();
	}
	wr(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(d, VIRTIO_MMIO_DEVICE_FEAT_SEL, 0);
	u64 f = rd(d, VIRTIO_MMIO_DEVICE_FEATURES);
	wr(d, VIRTIO_MMIO_DEVICE_FEAT_SEL, 1);
	f |= (u64)rd(d, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	d->offered = f;
	need |= VIRTIO_F_VERSION_1;
	if ((f & need) != need) {
		wr(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_FAILED);
		fail("%s at 0x%lx: feature negotiation failed: device offers 0x%lx, "
		     "driver needs 0x%lx",
		     d->name, d->base, f, need);
	}
	u64 drv = f & (want | need);
	wr(d, VIRTIO_MMIO_DRIVER_FEAT_SEL, 0);
	wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (u32)drv);
	wr(d, VIRTIO_MMIO_DRIVER_FEAT_SEL, 1);
	wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (u32)(drv >> 32));
	wr(d, VIRTIO_MMIO_STATUS,
	   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	if (!(rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK)) {
		wr(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_FAILED);
		fail("%s at 0x%lx: feature negotiation failed: device refused features 0x%lx "
		     "(FEATURES_OK did not stick)",
		     d->name, d->base, drv);
	}
	d->features = drv;
}

void virtq_setup(struct vdev *d, struct virtq *q, u32 index, u32 want, struct virtq_mem *mem)
{
	wr(d, VIRTIO_MMIO_QUEUE_SEL, index);
	if (rd(d, VIRTIO_MMIO_QUEUE_READY))
		fail("%s at 0x%lx: queue %u is already live after reset", d->name, d->base, index);
	u32 max = rd(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
	if (max == 0)
		fail("%s at 0x%lx: queue %u does not exist", d->name, d->base, index);
	u32 num = want < max ? want : max;
	if (num > VIRTQ_MAX)
		num = VIRTQ_MAX;
	while (num & (num - 1)) /* round down to a power of two */
		num &= num - 1;
	memset(mem, 0, sizeof(*mem));
	mem->avail.flags = VIRTQ_AVAIL_F_NO_INTERRUPT; /* we poll */
	q->dev = d;
	q->index = index;
	q->num = num;
	q->mem = mem;
	q->next_avail = 0;
	q->last_used = 0;
	u64 desc = (u64)mem->desc, avail = (u64)&mem->avail, used = (u64)&mem->used;
	wr(d, VIRTIO_MMIO_QUEUE_NUM, num);
	wr(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (u32)desc);
	wr(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, (u32)(desc >> 32));
	wr(d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (u32)avail);
	wr(d, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (u32)(avail >> 32));
	wr(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (u32)used);
	wr(d, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (u32)(used >> 32));
	barrier();
	wr(d, VIRTIO_MMIO_QUEUE_READY, 1);
	virtio_check(d);
	if (rd(d, VIRTIO_MMIO_QUEUE_READY) != 1)
		fail("%s at 0x%lx: queue %u did not become ready (size %u)", d->name, d->base,
		     index, num);
}

void virtio_driver_ok(struct vdev *d)
{
	wr(d, VIRTIO_MMIO_STATUS,
	   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
	       VIRTIO_STATUS_DRIVER_OK);
	virtio_check(d);
}

/* Config space: reads repeated until ConfigGeneration is the same before and after. */
u8 virtio_config8(struct vdev *d, u32 off)
{
	u32 g;
	u8 v;
	do {
		g = rd(d, VIRTIO_MMIO_CONFIG_GENERATION);
		v = *(volatile u8 *)(d->base + VIRTIO_MMIO_CONFIG + off);
	} while (g != rd(d, VIRTIO_MMIO_CONFIG_GENERATION));
	return v;
}

u32 virtio_config32(struct vdev *d, u32 off)
{
	u32 g, v;
	do {
		g = rd(d, VIRTIO_MMIO_CONFIG_GENERATION);
		v = rd(d, VIRTIO_MMIO_CONFIG + off);
	} while (g != rd(d, VIRTIO_MMIO_CONFIG_GENERATION));
	return v;
}

u64 virtio_config64(struct vdev *d, u32 off)
{
	u32 g, lo, hi;
	do {
		g = rd(d, VIRTIO_MMIO_CONFIG_GENERATION);
		lo = rd(d, VIRTIO_MMIO_CONFIG + off);
		hi = rd(d, VIRTIO_MMIO_CONFIG + off + 4);
	} while (g != rd(d, VIRTIO_MMIO_CONFIG_GENERATION));
	return ((u64)hi << 32) | lo;
}

void virtq_push(struct virtq *q, u16 head)
{
	volatile struct virtq_avail *a = &q->mem->avail;
	a->ring[q->next_avail & (q->num - 1)] = head;
	barrier(); /* descriptors and ring entry before the index */
	q->next_avail++;
	a->idx = q->next_avail;
}

void virtq_kick(struct virtq *q)
{
	barrier(); /* the avail index before the notification */
	wr(q->dev, VIRTIO_MMIO_QUEUE_NOTIFY, q->index);
}

bool virtq_kick_if_needed(struct virtq *q)
{
	__asm__ volatile("mfence" ::: "memory"); /* avail idx visible before reading flags */
	if (((volatile struct virtq_used *)&q->mem->used)->flags & VIRTQ_USED_F_NO_NOTIFY)
		return false;
	wr(q->dev, VIRTIO_MMIO_QUEUE_NOTIFY, q->index);
	return true;
}

bool virtq_pop_used(struct virtq *q, u32 *id, u32 *len)
{
	volatile struct virtq_used *u = &q->mem->used;
	if (u->idx == q->last_used)
		return false;
	barrier(); /* the index before the element */
	volatile struct virtq_used_elem *e = &u->ring[q->last_used & (q->num - 1)];
	*id = e->id;
	*len = e->len;
	q->last_used++;
	return true;
}

void virtq_wait_used(struct virtq *q, u32 *id, u32 *len)
{
	for (u64 i = 1; !virtq_pop_used(q, id, len); i++) {
		if ((i & 0xffff) == 0)
			virtio_check(q->dev);
		cpu_relax();
	}
}

bool virtq_wait_used_until(struct virtq *q, struct cpu *c, u64 deadline, u32 *id, u32 *len)
{
	for (u64 i = 1; !virtq_pop_used(q, id, len); i++) {
		if ((i & 0xfff) == 0 && now_ns(c) >= deadline)
			return virtq_pop_used(q, id, len);
		if ((i & 0xffff) == 0)
			virtio_check(q->dev);
		cpu_relax();
	}
	return true;
}
