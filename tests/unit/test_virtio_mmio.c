// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-mmio v2 register protocol with a fake device: a driver bringing the
 * device up (features, FEATURES_OK, queues, DRIVER_OK), notifications both ways,
 * accesses of bad size or alignment, reset, NEEDS_RESET from a broken ring, and
 * the migration state: save -> load round trip and every rejection of load.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/bus.h"
#include "godwit/memory.h"
#include "godwit/virtio.h"

#define RAM	     (64 * MiB)
#define NR_QUEUES    2
#define QMAX	     64
#define FAKE_FEATURE 3 /* a device-specific bit the fake offers */
#define DESC_GPA     0x10000ULL
#define AVAIL_GPA    0x11000ULL
#define USED_GPA     0x12000ULL

struct fake {
	uint8_t config[12];
	int notified[NR_QUEUES];
	int resets;
	int driver_oks;
	int raises;
	int refuse_features;
};

struct fx {
	struct guest_mem mem;
	struct fake dev;
	struct virtio_mmio vm;
	struct virtio_dev_ops ops;
	struct virtq_chain chain;
};

static void fake_config_read(void *opaque, uint32_t off, void *buf, uint32_t len)
{
	struct fake *d = opaque;

	memcpy(buf, d->config + off, len);
}

static void fake_config_write(void *opaque, uint32_t off, const void *buf, uint32_t len)
{
	struct fake *d = opaque;

	memcpy(d->config + off, buf, len);
}

static int fake_features_ok(void *opaque, uint64_t features)
{
	struct fake *d = opaque;

	(void)features;
	return d->refuse_features ? -EINVAL : 0;
}

static void fake_driver_ok(void *opaque)
{
	struct fake *d = opaque;

	d->driver_oks++;
}

static void fake_notify(void *opaque, unsigned int q)
{
	struct fake *d = opaque;

	d->notified[q]++;
}

static void fake_reset(void *opaque)
{
	struct fake *d = opaque;

	d->resets++;
}

static void fake_raise(void *opaque)
{
	struct fake *d = opaque;

	d->raises++;
}

static const uint64_t offered = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) |
				VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) | VIRTIO_BIT(FAKE_FEATURE);

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	unsigned int i;

	if (!f || guest_mem__init(&f->mem, RAM))
		return -1;
	for (i = 0; i < sizeof(f->dev.config); i++)
		f->dev.config[i] = (uint8_t)(0x10 + i);
	f->ops = (struct virtio_dev_ops){
		.device_id = 42,
		.features = offered,
		.config_size = sizeof(f->dev.config),
		.nr_queues = NR_QUEUES,
		.queue_max_size = QMAX,
		.config_read = fake_config_read,
		.config_write = fake_config_write,
		.features_ok = fake_features_ok,
		.driver_ok = fake_driver_ok,
		.notify = fake_notify,
		.reset = fake_reset,
	};
	if (virtio_mmio__init(&f->vm, &f->mem, "fake", &f->ops, &f->dev, fake_raise, &f->dev))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	virtio_mmio__exit(&f->vm);
	guest_mem__exit(&f->mem);
	free(f);
	return 0;
}

static uint64_t rd(struct fx *f, uint64_t off, unsigned int size)
{
	uint8_t data[8];
	struct bus_access a = { .offset = off, .data = data, .size = size };
	uint64_t v = 0;

	memset(data, 0xee, sizeof(data));
	virtio_mmio__access(&f->vm, &a);
	memcpy(&v, data, size);
	return le64toh(v);
}

static uint32_t rd32(struct fx *f, uint64_t off)
{
	return (uint32_t)rd(f, off, 4);
}

static void wr(struct fx *f, uint64_t off, uint64_t val, unsigned int size)
{
	uint8_t data[8];
	struct bus_access a = { .offset = off, .data = data, .size = size, .is_write = true };

	val = htole64(val);
	memcpy(data, &val, 8);
	virtio_mmio__access(&f->vm, &a);
}

static void wr32(struct fx *f, uint64_t off, uint32_t val)
{
	wr(f, off, val, 4);
}

static uint64_t read_features(struct fx *f)
{
	uint64_t v;

	wr32(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	v = rd32(f, VIRTIO_MMIO_DEVICE_FEATURES);
	wr32(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	return v | (uint64_t)rd32(f, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
}

static void write_features(struct fx *f, uint64_t v)
{
	wr32(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr32(f, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)v);
	wr32(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr32(f, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(v >> 32));
}

/* Steps 1-6 of 3.1.1; returns the status read back after FEATURES_OK. */
static uint32_t negotiate(struct fx *f, uint64_t features)
{
	wr32(f, VIRTIO_MMIO_STATUS, 0);
	wr32(f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr32(f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	write_features(f, features);
	wr32(f, VIRTIO_MMIO_STATUS,
	     VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	return rd32(f, VIRTIO_MMIO_STATUS);
}

static void setup_queue(struct fx *f, uint32_t q, uint32_t num, uint64_t desc, uint64_t avail,
			uint64_t used)
{
	wr32(f, VIRTIO_MMIO_QUEUE_SEL, q);
	wr32(f, VIRTIO_MMIO_QUEUE_NUM, num);
	wr32(f, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	wr32(f, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	wr32(f, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)avail);
	wr32(f, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(avail >> 32));
	wr32(f, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)used);
	wr32(f, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(used >> 32));
	wr32(f, VIRTIO_MMIO_QUEUE_READY, 1);
}

static const uint32_t status_running = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				       VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK;

static void bring_up(struct fx *f)
{
	assert_true(negotiate(f, offered) & VIRTIO_STATUS_FEATURES_OK);
	setup_queue(f, 0, 32, DESC_GPA, AVAIL_GPA, USED_GPA);
	setup_queue(f, 1, QMAX, DESC_GPA + 0x10000, AVAIL_GPA + 0x10000, USED_GPA + 0x10000);
	wr32(f, VIRTIO_MMIO_STATUS, status_running);
	assert_int_equal(rd32(f, VIRTIO_MMIO_STATUS), status_running);
}

static void test_identity(void **state)
{
	struct fx *f = *state;

	assert_int_equal(rd32(f, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	assert_int_equal(rd32(f, VIRTIO_MMIO_VERSION_REG), 2);
	assert_int_equal(rd32(f, VIRTIO_MMIO_DEVICE_ID), 42);
	assert_int_equal(rd32(f, VIRTIO_MMIO_VENDOR_ID), VIRTIO_MMIO_VENDOR);
	assert_int_equal(read_features(f), offered);
	wr32(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
	assert_int_equal(rd32(f, VIRTIO_MMIO_DEVICE_FEATURES), 0);
	assert_int_equal(rd32(f, VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(rd32(f, VIRTIO_MMIO_SHM_LEN_LOW), 0xffffffff);
	assert_int_equal(rd32(f, VIRTIO_MMIO_QUEUE_NUM_MAX), QMAX);
	wr32(f, VIRTIO_MMIO_QUEUE_SEL, NR_QUEUES);
	assert_int_equal(rd32(f, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	assert_int_equal(rd32(f, VIRTIO_MMIO_QUEUE_READY), 0);
}

static void test_bring_up(void **state)
{
	struct fx *f = *state;
	struct virtq *vq;

	bring_up(f);
	assert_int_equal(f->dev.driver_oks, 1);
	assert_int_equal(virtio_mmio__features(&f->vm), offered);
	wr32(f, VIRTIO_MMIO_QUEUE_SEL, 0);
	assert_int_equal(rd32(f, VIRTIO_MMIO_QUEUE_READY), 1);
	vq = virtio_mmio__queue(&f->vm, 0);
	assert_non_null(vq);
	assert_int_equal(vq->num, 32);
	assert_int_equal(vq->desc_gpa, DESC_GPA);
	assert_int_equal(vq->avail_gpa, AVAIL_GPA);
	assert_int_equal(vq->used_gpa, USED_GPA);
	assert_true(vq->event_idx);
	assert_true(vq->indirect);
	assert_true(virtio_mmio__queue_live(&f->vm, 0));
	assert_true(virtio_mmio__queue_live(&f->vm, 1));
	assert_false(virtio_mmio__queue_live(&f->vm, 2));
	assert_null(virtio_mmio__queue(&f->vm, 2));
	assert_int_equal(virtio_mmio__queue_notify_fd(&f->vm, 0), -1);

	wr32(f, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	assert_int_equal(f->dev.notified[1], 1);
	wr32(f, VIRTIO_MMIO_QUEUE_NOTIFY, 7); /* no such queue */
	assert_int_equal(f->dev.notified[0] + f->dev.notified[1], 1);
}

static void test_feature_negotiation_refused(void **state)
{
	struct fx *f = *state;

	/* No VERSION_1: a legacy driver, refused. */
	assert_false(negotiate(f, VIRTIO_BIT(FAKE_FEATURE)) & VIRTIO_STATUS_FEATURES_OK);
	/* A bit the device does not offer. */
	assert_false(negotiate(f, offered | VIRTIO_BIT(40)) & VIRTIO_STATUS_FEATURES_OK);
	/* The device model says no. */
	f->dev.refuse_features = 1;
	assert_false(negotiate(f, offered) & VIRTIO_STATUS_FEATURES_OK);
	f->dev.refuse_features = 0;
	assert_true(negotiate(f, VIRTIO_BIT(VIRTIO_F_VERSION_1)) & VIRTIO_STATUS_FEATURES_OK);
	/* Features are frozen once FEATURES_OK is set. */
	write_features(f, offered);
	assert_int_equal(virtio_mmio__features(&f->vm), VIRTIO_BIT(VIRTIO_F_VERSION_1));
}

static void test_features_need_driver_bit(void **state)
{
	struct fx *f = *state;

	write_features(f, offered); /* status 0: ignored */
	assert_int_equal(virtio_mmio__features(&f->vm), 0);
}

static void test_driver_ok_needs_features_ok(void **state)
{
	struct fx *f = *state;

	wr32(f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					    VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(rd32(f, VIRTIO_MMIO_STATUS),
			 VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	assert_int_equal(f->dev.driver_oks, 0);
	/* The driver cannot set NEEDS_RESET itself. */
	wr32(f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_ACKNOWLEDGE);
	assert_false(rd32(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_notify_before_driver_ok_ignored(void **state)
{
	struct fx *f = *state;

	negotiate(f, offered);
	setup_queue(f, 0, 32, DESC_GPA, AVAIL_GPA, USED_GPA);
	wr32(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_int_equal(f->dev.notified[0], 0);
	assert_false(virtio_mmio__queue_live(&f->vm, 0));
}

static void test_queue_regs_frozen_while_ready(void **state)
{
	struct fx *f = *state;
	struct virtq *vq = virtio_mmio__queue(&f->vm, 0);

	bring_up(f);
	wr32(f, VIRTIO_MMIO_QUEUE_SEL, 0);
	wr32(f, VIRTIO_MMIO_QUEUE_NUM, 8);
	wr32(f, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x40000);
	wr32(f, VIRTIO_MMIO_QUEUE_READY, 0);
	assert_int_equal(vq->num, 32);
	assert_int_equal(vq->desc_gpa, DESC_GPA);
	assert_int_equal(rd32(f, VIRTIO_MMIO_QUEUE_READY), 1);
}

static void test_queue_ready_bad_setup(void **state)
{
	static const struct {
		uint32_t num;
		uint64_t desc, avail, used;
	} bad[] = {
		{ 0, DESC_GPA, AVAIL_GPA, USED_GPA },
		{ 24, DESC_GPA, AVAIL_GPA, USED_GPA },
		{ QMAX * 2, DESC_GPA, AVAIL_GPA, USED_GPA },
		{ 0x10010, DESC_GPA, AVAIL_GPA, USED_GPA },
		{ 16, DESC_GPA + 4, AVAIL_GPA, USED_GPA },
		{ 16, DESC_GPA, RAM, USED_GPA },
		{ 16, DESC_GPA, AVAIL_GPA, 0xfffffffffffffff0ULL },
	};
	struct fx *f = *state;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_true(negotiate(f, offered) & VIRTIO_STATUS_FEATURES_OK);
		setup_queue(f, 0, bad[i].num, bad[i].desc, bad[i].avail, bad[i].used);
		assert_int_equal(rd32(f, VIRTIO_MMIO_QUEUE_READY), 0);
		assert_true(rd32(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	}
	/* QueueReady before FEATURES_OK does nothing at all. */
	wr32(f, VIRTIO_MMIO_STATUS, 0);
	setup_queue(f, 0, 16, DESC_GPA, AVAIL_GPA, USED_GPA);
	assert_int_equal(rd32(f, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_int_equal(rd32(f, VIRTIO_MMIO_STATUS), 0);
}

static void test_bad_accesses(void **state)
{
	struct fx *f = *state;

	/* Registers: 32-bit aligned only. */
	assert_int_equal(rd(f, VIRTIO_MMIO_MAGIC_VALUE, 2), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_MAGIC_VALUE, 1), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_MAGIC_VALUE, 8), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_MAGIC_VALUE + 1, 4), 0);
	wr(f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE, 1);
	wr(f, VIRTIO_MMIO_STATUS + 2, VIRTIO_STATUS_ACKNOWLEDGE, 4);
	assert_int_equal(rd32(f, VIRTIO_MMIO_STATUS), 0);
	/* Unknown, write-only and read-only registers. */
	assert_int_equal(rd32(f, 0x0e0), 0);
	assert_int_equal(rd32(f, VIRTIO_MMIO_QUEUE_NOTIFY), 0);
	wr32(f, VIRTIO_MMIO_MAGIC_VALUE, 0);
	wr32(f, VIRTIO_MMIO_INTERRUPT_STATUS, 3);
	assert_int_equal(rd32(f, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	/* Zero-size and oversize accesses. */
	assert_int_equal(rd(f, VIRTIO_MMIO_MAGIC_VALUE, 0), 0);
	{
		uint8_t data[16] = { 0 };
		struct bus_access a = { .offset = 0, .data = data, .size = 16 };

		virtio_mmio__access(&f->vm, &a);
		assert_int_equal(data[0], 0);
	}
}

static void test_config_space(void **state)
{
	struct fx *f = *state;

	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG, 1), 0x10);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG + 2, 2), 0x1312);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG + 4, 4), 0x17161514);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG, 8), 0x1716151413121110ULL);
	/* Misaligned, past the end, odd size: 0. */
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG + 1, 2), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG + 8, 8), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG + 12, 1), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG + 0xefc, 4), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG, 3), 0);
	wr(f, VIRTIO_MMIO_CONFIG + 8, 0xabcd, 2);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG + 8, 2), 0xabcd);
	wr(f, VIRTIO_MMIO_CONFIG + 11, 0xff, 2);
	assert_int_equal(f->dev.config[11], 0x1b);

	assert_int_equal(rd32(f, VIRTIO_MMIO_CONFIG_GENERATION), 0);
	virtio_mmio__config_changed(&f->vm);
	assert_int_equal(rd32(f, VIRTIO_MMIO_CONFIG_GENERATION), 1);
	assert_int_equal(f->dev.raises, 0); /* not before DRIVER_OK */
	bring_up(f);
	virtio_mmio__config_changed(&f->vm);
	assert_int_equal(f->dev.raises, 1);
	assert_int_equal(rd32(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	wr32(f, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(rd32(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
}

static void put16(struct fx *f, uint64_t gpa, uint16_t v)
{
	v = htole16(v);
	assert_int_equal(guest_mem__write(&f->mem, gpa, &v, 2), 0);
}

static void put_desc(struct fx *f, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	uint8_t raw[16];

	addr = htole64(addr);
	len = htole32(len);
	flags = htole16(flags);
	next = htole16(next);
	memcpy(raw, &addr, 8);
	memcpy(raw + 8, &len, 4);
	memcpy(raw + 12, &flags, 2);
	memcpy(raw + 14, &next, 2);
	assert_int_equal(guest_mem__write(&f->mem, DESC_GPA + 16ULL * i, raw, 16), 0);
}

static void test_used_interrupt(void **state)
{
	struct fx *f = *state;

	bring_up(f);
	put_desc(f, 0, 0x100000, 8, VIRTQ_DESC_F_WRITE, 0);
	put16(f, AVAIL_GPA + 4, 0);
	put16(f, AVAIL_GPA + 2, 1);
	assert_int_equal(virtio_mmio__pop(&f->vm, 0, &f->chain), 1);
	assert_int_equal(virtio_mmio__push(&f->vm, 0, f->chain.head, 8), 0);
	virtio_mmio__notify_used(&f->vm, 0);
	assert_int_equal(f->dev.raises, 1);
	assert_int_equal(rd32(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	wr32(f, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	assert_int_equal(rd32(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	assert_int_equal(virtio_mmio__push(&f->vm, 5, 0, 0), -EINVAL);
}

static void test_broken_ring_needs_reset(void **state)
{
	struct fx *f = *state;

	bring_up(f);
	put_desc(f, 0, 0x100000, 8, VIRTQ_DESC_F_NEXT, 0); /* loops on itself */
	put16(f, AVAIL_GPA + 4, 0);
	put16(f, AVAIL_GPA + 2, 1);
	assert_true(virtio_mmio__pop(&f->vm, 0, &f->chain) < 0);
	assert_true(rd32(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(rd32(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(f->dev.raises, 1);
	assert_true(f->vm.needs_reset_logged);
	/* The queue is dead until reset: nothing more is popped, no second interrupt. */
	assert_int_equal(virtio_mmio__pop(&f->vm, 0, &f->chain), 0);
	virtio_mmio__set_needs_reset(&f->vm, "again");
	assert_int_equal(f->dev.raises, 1);
	/* Reset clears it, and the next failure logs again. */
	wr32(f, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(rd32(f, VIRTIO_MMIO_STATUS), 0);
	assert_false(f->vm.needs_reset_logged);
}

static void test_reset(void **state)
{
	struct fx *f = *state;

	bring_up(f);
	virtio_mmio__config_changed(&f->vm);
	wr32(f, VIRTIO_MMIO_QUEUE_SEL, 1);
	wr32(f, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(f->dev.resets, 2); /* negotiate() reset once too */
	assert_int_equal(rd32(f, VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(rd32(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	assert_int_equal(virtio_mmio__features(&f->vm), 0);
	assert_int_equal(rd32(f, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_false(virtio_mmio__queue_live(&f->vm, 0));
	assert_int_equal(virtio_mmio__queue(&f->vm, 0)->num, QMAX);
	assert_int_equal(virtio_mmio__queue(&f->vm, 0)->desc_gpa, 0);
	/* And it comes up again. */
	bring_up(f);
	virtio_mmio__reset(&f->vm);
	assert_int_equal(rd32(f, VIRTIO_MMIO_STATUS), 0);
}

static void test_init_rejects(void **state)
{
	struct fx *f = *state;
	struct virtio_dev_ops ops = f->ops;
	struct virtio_mmio vm;

	ops.features &= ~VIRTIO_BIT(VIRTIO_F_VERSION_1);
	assert_int_equal(virtio_mmio__init(&vm, &f->mem, "x", &ops, NULL, fake_raise, NULL),
			 -EINVAL);
	ops = f->ops;
	ops.queue_max_size = 100;
	assert_int_equal(virtio_mmio__init(&vm, &f->mem, "x", &ops, NULL, fake_raise, NULL),
			 -EINVAL);
	ops = f->ops;
	ops.nr_queues = VIRTIO_MAX_QUEUES + 1;
	assert_int_equal(virtio_mmio__init(&vm, &f->mem, "x", &ops, NULL, fake_raise, NULL),
			 -EINVAL);
	ops = f->ops;
	ops.config_size = VIRTIO_MMIO_CONFIG_MAX + 1;
	assert_int_equal(virtio_mmio__init(&vm, &f->mem, "x", &ops, NULL, fake_raise, NULL),
			 -EINVAL);
	assert_int_equal(virtio_mmio__init(&vm, &f->mem, "x", &f->ops, NULL, NULL, NULL), -EINVAL);
}

/* A running device with some history, saved. */
static void running_state(struct fx *f, struct virtio_mmio_state *st)
{
	bring_up(f);
	put_desc(f, 0, 0x100000, 8, VIRTQ_DESC_F_WRITE, 0);
	put16(f, AVAIL_GPA + 4, 0);
	put16(f, AVAIL_GPA + 6, 0);
	put16(f, AVAIL_GPA + 2, 2);
	assert_int_equal(virtio_mmio__pop(&f->vm, 0, &f->chain), 1);
	assert_int_equal(virtio_mmio__push(&f->vm, 0, 0, 8), 0);
	assert_int_equal(virtio_mmio__pop(&f->vm, 0, &f->chain), 1);
	assert_int_equal(virtio_mmio__push(&f->vm, 0, 0, 8), 0);
	virtio_mmio__notify_used(&f->vm, 0);
	virtio_mmio__config_changed(&f->vm);
	wr32(f, VIRTIO_MMIO_QUEUE_SEL, 1);
	virtio_mmio__save(&f->vm, st);
}

static void test_save_load_round_trip(void **state)
{
	struct fx *f = *state;
	struct virtio_mmio_state st, st2;
	struct virtio_mmio vm2;
	struct fake dev2 = { 0 };

	running_state(f, &st);
	assert_int_equal(st.status, status_running);
	assert_int_equal(st.queues[0].num, 32);
	assert_int_equal(st.queues[0].last_avail_idx, 2);
	assert_int_equal(st.queues[0].used_idx, 2);
	assert_int_equal(st.queue_sel, 1);
	assert_int_equal(st.config_generation, 1);

	assert_int_equal(virtio_mmio__init(&vm2, &f->mem, "dst", &f->ops, &dev2, fake_raise, &dev2),
			 0);
	assert_int_equal(virtio_mmio__load(&vm2, &st), 0);
	virtio_mmio__save(&vm2, &st2);
	assert_memory_equal(&st, &st2, sizeof(st));
	assert_true(virtio_mmio__queue_live(&vm2, 0));
	assert_true(vm2.queues[0].event_idx);
	/* The loaded queue carries on where the source stopped. */
	put16(f, AVAIL_GPA + 8, 0);
	put16(f, AVAIL_GPA + 2, 3);
	assert_int_equal(virtio_mmio__pop(&vm2, 0, &f->chain), 1);
	assert_int_equal(vm2.queues[0].last_avail_idx, 3);
	virtio_mmio__exit(&vm2);
}

static void expect_load_fails(struct fx *f, const struct virtio_mmio_state *st)
{
	struct virtio_mmio_state before, after;

	virtio_mmio__save(&f->vm, &before);
	assert_int_equal(virtio_mmio__load(&f->vm, st), -EINVAL);
	virtio_mmio__save(&f->vm, &after);
	assert_memory_equal(&before, &after, sizeof(before)); /* nothing applied */
}

static void test_load_rejects(void **state)
{
	struct fx *f = *state;
	struct virtio_mmio_state good, st;

	running_state(f, &good);
	assert_int_equal(virtio_mmio__load(&f->vm, &good), 0);
	wr32(f, VIRTIO_MMIO_STATUS, 0);

#define BAD(stmt)                                                                                  \
	do {                                                                                       \
		st = good;                                                                         \
		stmt;                                                                              \
		expect_load_fails(f, &st);                                                         \
	} while (0)
	BAD(st.device_id = 1);
	BAD(st.nr_queues = 1);
	BAD(st.nr_queues = VIRTIO_MAX_QUEUES + 1);
	BAD(st.status |= 0x20);
	BAD(st.status &= ~VIRTIO_STATUS_FEATURES_OK);
	BAD(st.status = VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_ACKNOWLEDGE);
	BAD(st.status = VIRTIO_STATUS_DRIVER);
	BAD(st.driver_features |= VIRTIO_BIT(40));
	BAD(st.driver_features &= ~VIRTIO_BIT(VIRTIO_F_VERSION_1));
	BAD(st.interrupt_status = 4);
	BAD(st.queues[0].num = 48);
	BAD(st.queues[0].num = QMAX * 2);
	BAD(st.queues[0].num = 0);
	BAD(st.queues[0].ready = 2);
	BAD(st.queues[0].desc = RAM - 16);
	BAD(st.queues[0].desc = DESC_GPA + 8);
	BAD(st.queues[0].driver = UINT64_MAX - 1);
	BAD(st.queues[0].device = USED_GPA + 2);
	BAD(st.queues[0].device = RAM);
	BAD(st.queues[0].last_avail_idx = (uint16_t)(st.queues[0].used_idx + 33));
	BAD(st.queues[0].used_idx = (uint16_t)(st.queues[0].last_avail_idx + 1));
	BAD(st.queues[2].num = 16);
	BAD(st.queues[VIRTIO_MAX_QUEUES - 1].desc = 1);
	BAD(st.status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
#undef BAD
	/* A queue that is not ready may hold any addresses (the driver was setting up). */
	st = good;
	st.queues[1].ready = 0;
	st.queues[1].desc = UINT64_MAX;
	assert_int_equal(virtio_mmio__load(&f->vm, &st), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_identity),
		T(test_bring_up),
		T(test_feature_negotiation_refused),
		T(test_features_need_driver_bit),
		T(test_driver_ok_needs_features_ok),
		T(test_notify_before_driver_ok_ignored),
		T(test_queue_regs_frozen_while_ready),
		T(test_queue_ready_bad_setup),
		T(test_bad_accesses),
		T(test_config_space),
		T(test_used_interrupt),
		T(test_broken_ring_needs_reset),
		T(test_reset),
		T(test_init_rejects),
		T(test_save_load_round_trip),
		T(test_load_rejects),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
