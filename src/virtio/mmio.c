// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-mmio transport, version 2 only (virtio 1.x, 4.2.2).
 *
 * Registers below 0x100 take aligned 32-bit accesses only; the device config
 * space from 0x100 takes 1, 2, 4 and 8-byte naturally aligned accesses. Anything
 * else reads 0 and is ignored, with a debug line.
 *
 * What the model decides where the spec leaves room:
 * - Status bits are sticky until reset: a driver write can add bits, never clear
 *   them (the spec forbids clearing; ignoring it is the safe reading).
 * - FEATURES_OK is refused (left clear for the driver to see) unless the driver's
 *   features are a subset of the offer and include VIRTIO_F_VERSION_1; DRIVER_OK
 *   is ignored until FEATURES_OK holds.
 * - Queue registers are ignored while the selected queue is ready, and a ready
 *   queue stays ready until the device is reset (QueueReady=0 is ignored): so a
 *   device thread never sees a live queue change under it. QueueReady=1 with a
 *   bad size or rings outside RAM puts the device into NEEDS_RESET.
 * - QueueNotify before DRIVER_OK, or for a queue that does not exist, is ignored.
 */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "godwit/bus.h"
#include "godwit/log.h"
#include "godwit/memory.h"
#include "godwit/virtio.h"

#define STATUS_DRIVER_BITS                                                                         \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK |              \
	 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_FAILED)
#define STATUS_ALL_BITS (STATUS_DRIVER_BITS | VIRTIO_STATUS_NEEDS_RESET)

static uint8_t get_status(struct virtio_mmio *vm)
{
	return __atomic_load_n(&vm->status, __ATOMIC_ACQUIRE);
}

static void raise_irq(struct virtio_mmio *vm, uint32_t bit)
{
	__atomic_fetch_or(&vm->interrupt_status, bit, __ATOMIC_SEQ_CST);
	vm->raise(vm->irq_opaque);
}

static bool ops_valid(const struct virtio_dev_ops *ops)
{
	uint16_t max;

	if (!ops || !ops->config_read || !ops->notify || !ops->reset)
		return false;
	if (!(ops->features & VIRTIO_BIT(VIRTIO_F_VERSION_1)))
		return false;
	if (ops->config_size > VIRTIO_MMIO_CONFIG_MAX)
		return false;
	if (!ops->nr_queues || ops->nr_queues > VIRTIO_MAX_QUEUES)
		return false;
	max = ops->queue_max_size;
	return max && !(max & (max - 1)) && max <= VIRTQ_MAX_SIZE;
}

static void reset_queues(struct virtio_mmio *vm)
{
	unsigned int i;

	for (i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		struct virtq *vq = &vm->queues[i];

		vq->mem = vm->mem;
		virtq__reset(vq);
		if (i < vm->ops->nr_queues)
			vq->num = vm->ops->queue_max_size;
	}
}

/*
 * Back to the state after power-on. Status goes to 0 first, so that a device
 * thread starting now finds no live queue; ops->reset then waits for a pass
 * already under way; only then are the queues forgotten.
 */
static void reset_locked(struct virtio_mmio *vm)
{
	__atomic_store_n(&vm->status, 0, __ATOMIC_SEQ_CST);
	vm->ops->reset(vm->opaque);
	reset_queues(vm);
	/* Again: the pass that just ended may have set NEEDS_RESET or raised. */
	__atomic_store_n(&vm->status, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&vm->interrupt_status, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&vm->needs_reset_logged, false, __ATOMIC_RELEASE);
	vm->device_features_sel = 0;
	vm->driver_features_sel = 0;
	vm->driver_features = 0;
	vm->queue_sel = 0;
}

int virtio_mmio__init(struct virtio_mmio *vm, struct guest_mem *mem, const char *name,
		      const struct virtio_dev_ops *ops, void *opaque, void (*raise)(void *irq_opaque),
		      void *irq_opaque)
{
	int ret;

	if (!ops_valid(ops) || !raise || !mem)
		return -EINVAL;
	memset(vm, 0, sizeof(*vm));
	ret = -pthread_mutex_init(&vm->lock, NULL);
	if (ret)
		return ret;
	vm->mem = mem;
	vm->name = name ? name : "virtio";
	vm->ops = ops;
	vm->opaque = opaque;
	vm->raise = raise;
	vm->irq_opaque = irq_opaque;
	reset_queues(vm);
	return 0;
}

void virtio_mmio__exit(struct virtio_mmio *vm)
{
	pthread_mutex_destroy(&vm->lock);
}

void virtio_mmio__reset(struct virtio_mmio *vm)
{
	pthread_mutex_lock(&vm->lock);
	reset_locked(vm);
	pthread_mutex_unlock(&vm->lock);
}

struct virtq *virtio_mmio__queue(struct virtio_mmio *vm, unsigned int q)
{
	return q < vm->ops->nr_queues ? &vm->queues[q] : NULL;
}

int virtio_mmio__queue_notify_fd(struct virtio_mmio *vm, unsigned int q)
{
	if (q >= vm->ops->nr_queues || !vm->ops->notify_fd)
		return -1;
	return vm->ops->notify_fd(vm->opaque, q);
}

bool virtio_mmio__queue_live(struct virtio_mmio *vm, unsigned int q)
{
	uint8_t status = get_status(vm);

	if (q >= vm->ops->nr_queues)
		return false;
	if (!(status & VIRTIO_STATUS_DRIVER_OK) || (status & VIRTIO_STATUS_NEEDS_RESET))
		return false;
	return __atomic_load_n(&vm->queues[q].ready, __ATOMIC_ACQUIRE);
}

uint64_t virtio_mmio__features(struct virtio_mmio *vm)
{
	return vm->driver_features;
}

void virtio_mmio__set_needs_reset(struct virtio_mmio *vm, const char *fmt, ...)
{
	uint8_t old = __atomic_fetch_or(&vm->status, VIRTIO_STATUS_NEEDS_RESET, __ATOMIC_SEQ_CST);
	char msg[256];
	va_list ap;

	/* The notification right after the status, not after the (slow) log line. */
	if (!(old & VIRTIO_STATUS_NEEDS_RESET) && (old & VIRTIO_STATUS_DRIVER_OK))
		raise_irq(vm, VIRTIO_MMIO_INT_CONFIG);
	if (!__atomic_exchange_n(&vm->needs_reset_logged, true, __ATOMIC_SEQ_CST)) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		pr_warn("%s: %s; device needs reset", vm->name, msg);
	}
}

void virtio_mmio__config_changed(struct virtio_mmio *vm)
{
	__atomic_fetch_add(&vm->config_generation, 1, __ATOMIC_SEQ_CST);
	if (get_status(vm) & VIRTIO_STATUS_DRIVER_OK)
		raise_irq(vm, VIRTIO_MMIO_INT_CONFIG);
}

int virtio_mmio__pop(struct virtio_mmio *vm, unsigned int q, struct virtq_chain *chain)
{
	int ret;

	if (!virtio_mmio__queue_live(vm, q))
		return 0;
	ret = virtq__pop(&vm->queues[q], chain);
	if (ret < 0)
		virtio_mmio__set_needs_reset(vm, "queue %u: %s", q, vm->queues[q].err);
	return ret;
}

int virtio_mmio__push(struct virtio_mmio *vm, unsigned int q, uint16_t head, uint32_t len)
{
	int ret;

	if (q >= vm->ops->nr_queues)
		return -EINVAL;
	ret = virtq__push(&vm->queues[q], head, len);
	if (ret)
		virtio_mmio__set_needs_reset(vm, "queue %u: used ring unusable", q);
	return ret;
}

void virtio_mmio__notify_used(struct virtio_mmio *vm, unsigned int q)
{
	if (q < vm->ops->nr_queues && virtq__should_notify(&vm->queues[q]))
		raise_irq(vm, VIRTIO_MMIO_INT_VRING);
}

/* ---- register file ---------------------------------------------------------- */

static struct virtq *sel_queue(struct virtio_mmio *vm)
{
	return vm->queue_sel < vm->ops->nr_queues ? &vm->queues[vm->queue_sel] : NULL;
}

static uint32_t read_reg(struct virtio_mmio *vm, uint64_t off)
{
	struct virtq *vq = sel_queue(vm);

	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION_REG:
		return VIRTIO_MMIO_VERSION;
	case VIRTIO_MMIO_DEVICE_ID:
		return vm->ops->device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return VIRTIO_MMIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		if (vm->device_features_sel > 1)
			return 0;
		return (uint32_t)(vm->ops->features >> (32 * vm->device_features_sel));
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		return vq ? vm->ops->queue_max_size : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		return vq ? __atomic_load_n(&vq->ready, __ATOMIC_ACQUIRE) : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		return __atomic_load_n(&vm->interrupt_status, __ATOMIC_ACQUIRE);
	case VIRTIO_MMIO_STATUS:
		return get_status(vm);
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return __atomic_load_n(&vm->config_generation, __ATOMIC_ACQUIRE);
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
	case VIRTIO_MMIO_SHM_BASE_LOW:
	case VIRTIO_MMIO_SHM_BASE_HIGH:
		return 0xffffffff; /* no shared memory regions: length -1 */
	case VIRTIO_MMIO_QUEUE_RESET:
		return 0;
	default:
		pr_debug("%s: read of write-only or unknown register 0x%llx", vm->name,
			 (unsigned long long)off);
		return 0;
	}
}

static bool features_acceptable(struct virtio_mmio *vm)
{
	uint64_t f = vm->driver_features;

	if (f & ~vm->ops->features) {
		pr_debug("%s: driver wants features 0x%llx not offered", vm->name,
			 (unsigned long long)(f & ~vm->ops->features));
		return false;
	}
	if (!(f & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
		pr_debug("%s: driver did not accept VIRTIO_F_VERSION_1", vm->name);
		return false;
	}
	return !vm->ops->features_ok || vm->ops->features_ok(vm->opaque, f) == 0;
}

static void write_status(struct virtio_mmio *vm, uint32_t val)
{
	uint8_t old = get_status(vm);
	uint8_t add;

	if (!val) {
		reset_locked(vm);
		return;
	}
	add = (uint8_t)(val & STATUS_DRIVER_BITS) & ~old;
	if ((add & VIRTIO_STATUS_FEATURES_OK) && !features_acceptable(vm))
		add &= ~VIRTIO_STATUS_FEATURES_OK;
	if ((add & VIRTIO_STATUS_DRIVER_OK) &&
	    !((old | add) & VIRTIO_STATUS_FEATURES_OK)) {
		pr_debug("%s: DRIVER_OK without FEATURES_OK ignored", vm->name);
		add &= ~VIRTIO_STATUS_DRIVER_OK;
	}
	__atomic_fetch_or(&vm->status, add, __ATOMIC_SEQ_CST);
	if ((add & VIRTIO_STATUS_DRIVER_OK) && vm->ops->driver_ok)
		vm->ops->driver_ok(vm->opaque);
}

static void write_driver_features(struct virtio_mmio *vm, uint32_t val)
{
	uint8_t status = get_status(vm);
	unsigned int shift;

	if (!(status & VIRTIO_STATUS_DRIVER) || (status & VIRTIO_STATUS_FEATURES_OK) ||
	    vm->driver_features_sel > 1) {
		pr_debug("%s: DriverFeatures write ignored (status 0x%x, sel %u)", vm->name,
			 status, vm->driver_features_sel);
		return;
	}
	shift = 32 * vm->driver_features_sel;
	vm->driver_features &= ~(0xffffffffULL << shift);
	vm->driver_features |= (uint64_t)val << shift;
}

static void enable_queue(struct virtio_mmio *vm, struct virtq *vq)
{
	uint64_t desc = vq->desc_gpa, avail = vq->avail_gpa, used = vq->used_gpa;

	if (!(get_status(vm) & VIRTIO_STATUS_FEATURES_OK)) {
		pr_debug("%s: QueueReady before FEATURES_OK ignored", vm->name);
		return;
	}
	if (vq->num > vm->ops->queue_max_size) {
		virtio_mmio__set_needs_reset(vm, "queue %u: size %u larger than QueueNumMax %u",
					     vm->queue_sel, vq->num, vm->ops->queue_max_size);
		return;
	}
	if (virtq__setup(vq, vm->mem, vq->num, desc, avail, used)) {
		virtio_mmio__set_needs_reset(vm, "queue %u: %s", vm->queue_sel, vq->err);
		return;
	}
	vq->last_avail_idx = 0;
	vq->used_idx = 0;
	vq->event_idx = vm->driver_features & VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
	vq->indirect = vm->driver_features & VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC);
	__atomic_store_n(&vq->ready, true, __ATOMIC_RELEASE);
}

static void write_queue_ready(struct virtio_mmio *vm, struct virtq *vq, uint32_t val)
{
	bool ready = __atomic_load_n(&vq->ready, __ATOMIC_ACQUIRE);

	/*
	 * Without VIRTIO_F_RING_RESET a queue stops only with the device: a ready
	 * queue is never pulled from under a device thread (Linux writes 0 here only
	 * after a reset, when the queue is already off).
	 */
	if (val && !ready)
		enable_queue(vm, vq);
	else if (!val && ready)
		pr_debug("%s: QueueReady=0 on a live queue ignored (reset the device)", vm->name);
}

static void set_half(uint64_t *v, bool high, uint32_t val)
{
	if (high)
		*v = (*v & 0xffffffffULL) | ((uint64_t)val << 32);
	else
		*v = (*v & ~0xffffffffULL) | val;
}

/* Registers of the selected queue; true if off was one of them. */
static bool write_queue_reg(struct virtio_mmio *vm, uint64_t off, uint32_t val)
{
	struct virtq *vq = sel_queue(vm);

	switch (off) {
	case VIRTIO_MMIO_QUEUE_NUM:
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
	case VIRTIO_MMIO_QUEUE_READY:
		break;
	default:
		return false;
	}
	if (!vq) {
		pr_debug("%s: write to queue %u that does not exist", vm->name, vm->queue_sel);
		return true;
	}
	if (off == VIRTIO_MMIO_QUEUE_READY) {
		write_queue_ready(vm, vq, val);
		return true;
	}
	if (__atomic_load_n(&vq->ready, __ATOMIC_ACQUIRE)) {
		pr_debug("%s: queue %u register 0x%llx written while ready: ignored", vm->name,
			 vm->queue_sel, (unsigned long long)off);
		return true;
	}
	switch (off) {
	case VIRTIO_MMIO_QUEUE_NUM:
		/* An invalid size is kept (0 if it does not fit): QueueReady refuses it. */
		vq->num = val <= UINT16_MAX ? (uint16_t)val : 0;
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		set_half(&vq->desc_gpa, off == VIRTIO_MMIO_QUEUE_DESC_HIGH, val);
		break;
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
		set_half(&vq->avail_gpa, off == VIRTIO_MMIO_QUEUE_DRIVER_HIGH, val);
		break;
	default:
		set_half(&vq->used_gpa, off == VIRTIO_MMIO_QUEUE_DEVICE_HIGH, val);
		break;
	}
	return true;
}

static void queue_notify(struct virtio_mmio *vm, uint32_t q)
{
	if (q >= vm->ops->nr_queues || !(get_status(vm) & VIRTIO_STATUS_DRIVER_OK)) {
		pr_debug("%s: notify of queue %u ignored", vm->name, q);
		return;
	}
	vm->ops->notify(vm->opaque, q);
}

static void write_reg(struct virtio_mmio *vm, uint64_t off, uint32_t val)
{
	if (write_queue_reg(vm, off, val))
		return;
	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		vm->device_features_sel = val;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		write_driver_features(vm, val);
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		vm->driver_features_sel = val;
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		vm->queue_sel = val;
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		queue_notify(vm, val);
		break;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		__atomic_fetch_and(&vm->interrupt_status, ~val, __ATOMIC_SEQ_CST);
		break;
	case VIRTIO_MMIO_STATUS:
		write_status(vm, val);
		break;
	case VIRTIO_MMIO_SHM_SEL:
		break;
	default:
		pr_debug("%s: write of read-only or unknown register 0x%llx", vm->name,
			 (unsigned long long)off);
		break;
	}
}

static void config_access(struct virtio_mmio *vm, struct bus_access *a)
{
	uint64_t off = a->offset - VIRTIO_MMIO_CONFIG;
	unsigned int size = a->size;

	if ((size != 1 && size != 2 && size != 4 && size != 8) || off % size ||
	    off + size > vm->ops->config_size) {
		pr_debug("%s: bad config access at 0x%llx size %u", vm->name,
			 (unsigned long long)off, size);
		if (!a->is_write)
			memset(a->data, 0, size);
		return;
	}
	if (!a->is_write)
		vm->ops->config_read(vm->opaque, (uint32_t)off, a->data, size);
	else if (vm->ops->config_write)
		vm->ops->config_write(vm->opaque, (uint32_t)off, a->data, size);
}

void virtio_mmio__access(void *opaque, struct bus_access *a)
{
	struct virtio_mmio *vm = opaque;
	uint32_t val;

	if (!a->data || !a->size || a->size > 8)
		return;
	pthread_mutex_lock(&vm->lock);
	if (a->offset >= VIRTIO_MMIO_CONFIG) {
		config_access(vm, a);
	} else if (a->size != 4 || a->offset % 4) {
		pr_debug("%s: bad register access at 0x%llx size %u", vm->name,
			 (unsigned long long)a->offset, a->size);
		if (!a->is_write)
			memset(a->data, 0, a->size);
	} else if (a->is_write) {
		memcpy(&val, a->data, 4);
		write_reg(vm, a->offset, le32toh(val));
	} else {
		val = htole32(read_reg(vm, a->offset));
		memcpy(a->data, &val, 4);
	}
	pthread_mutex_unlock(&vm->lock);
}

/* ---- migration -------------------------------------------------------------- */

void virtio_mmio__save(struct virtio_mmio *vm, struct virtio_mmio_state *st)
{
	unsigned int i;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&vm->lock);
	st->device_id = vm->ops->device_id;
	st->nr_queues = vm->ops->nr_queues;
	st->status = get_status(vm);
	st->interrupt_status = __atomic_load_n(&vm->interrupt_status, __ATOMIC_ACQUIRE);
	st->config_generation = __atomic_load_n(&vm->config_generation, __ATOMIC_ACQUIRE);
	st->device_features_sel = vm->device_features_sel;
	st->driver_features_sel = vm->driver_features_sel;
	st->device_features = vm->ops->features;
	st->driver_features = vm->driver_features;
	st->queue_sel = vm->queue_sel;
	for (i = 0; i < vm->ops->nr_queues; i++) {
		const struct virtq *vq = &vm->queues[i];
		struct virtq_state *qs = &st->queues[i];

		qs->num = vq->num;
		qs->ready = __atomic_load_n(&vq->ready, __ATOMIC_ACQUIRE);
		qs->desc = vq->desc_gpa;
		qs->driver = vq->avail_gpa;
		qs->device = vq->used_gpa;
		qs->last_avail_idx = vq->last_avail_idx;
		qs->used_idx = vq->used_idx;
	}
	pthread_mutex_unlock(&vm->lock);
}

static int __attribute__((format(printf, 2, 3))) load_err(struct virtio_mmio *vm, const char *fmt,
							  ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pr_err("%s: migration state rejected: %s", vm->name, msg);
	return -EINVAL;
}

static int check_status(struct virtio_mmio *vm, const struct virtio_mmio_state *st)
{
	uint8_t s = st->status;

	if (s & ~STATUS_ALL_BITS)
		return load_err(vm, "unknown status bits 0x%x", s);
	if ((s & VIRTIO_STATUS_DRIVER_OK) && !(s & VIRTIO_STATUS_FEATURES_OK))
		return load_err(vm, "status 0x%x: DRIVER_OK without FEATURES_OK", s);
	if ((s & VIRTIO_STATUS_FEATURES_OK) && !(s & VIRTIO_STATUS_DRIVER))
		return load_err(vm, "status 0x%x: FEATURES_OK without DRIVER", s);
	if ((s & VIRTIO_STATUS_DRIVER) && !(s & VIRTIO_STATUS_ACKNOWLEDGE))
		return load_err(vm, "status 0x%x: DRIVER without ACKNOWLEDGE", s);
	if (st->driver_features & ~vm->ops->features)
		return load_err(vm, "driver features 0x%llx not offered here (0x%llx)",
				(unsigned long long)st->driver_features,
				(unsigned long long)vm->ops->features);
	if ((s & VIRTIO_STATUS_FEATURES_OK) &&
	    !(st->driver_features & VIRTIO_BIT(VIRTIO_F_VERSION_1)))
		return load_err(vm, "FEATURES_OK without VIRTIO_F_VERSION_1");
	if (st->interrupt_status & ~(VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG))
		return load_err(vm, "interrupt status 0x%x", st->interrupt_status);
	return 0;
}

static int check_queue(struct virtio_mmio *vm, const struct virtio_mmio_state *st, unsigned int i,
		       struct virtq *vq)
{
	const struct virtq_state *qs = &st->queues[i];
	uint16_t max = vm->ops->queue_max_size;

	vq->mem = vm->mem;
	if (qs->ready > 1)
		return load_err(vm, "queue %u: ready %u", i, qs->ready);
	if (qs->num > max || (qs->num & (qs->num - 1)) || (qs->ready && !qs->num))
		return load_err(vm, "queue %u: size %u (max %u, power of two)", i, qs->num, max);
	vq->num = qs->num;
	vq->desc_gpa = qs->desc;
	vq->avail_gpa = qs->driver;
	vq->used_gpa = qs->device;
	if (!qs->ready)
		return 0;
	if (!(st->status & VIRTIO_STATUS_FEATURES_OK))
		return load_err(vm, "queue %u ready before FEATURES_OK", i);
	if (virtq__setup(vq, vm->mem, qs->num, qs->desc, qs->driver, qs->device))
		return load_err(vm, "queue %u: %s", i, vq->err);
	if ((uint16_t)(qs->last_avail_idx - qs->used_idx) > qs->num)
		return load_err(vm, "queue %u: %u chains in flight (size %u)", i,
				(uint16_t)(qs->last_avail_idx - qs->used_idx), qs->num);
	vq->last_avail_idx = qs->last_avail_idx;
	vq->used_idx = qs->used_idx;
	vq->event_idx = st->driver_features & VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
	vq->indirect = st->driver_features & VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC);
	vq->ready = true;
	return 0;
}

static bool queue_state_zero(const struct virtq_state *qs)
{
	return !qs->num && !qs->ready && !qs->desc && !qs->driver && !qs->device &&
	       !qs->last_avail_idx && !qs->used_idx;
}

int virtio_mmio__load(struct virtio_mmio *vm, const struct virtio_mmio_state *st)
{
	struct virtq vqs[VIRTIO_MAX_QUEUES];
	unsigned int i;
	int ret;

	memset(vqs, 0, sizeof(vqs));
	if (st->device_id != vm->ops->device_id)
		return load_err(vm, "device id %u, expected %u", st->device_id,
				vm->ops->device_id);
	if (st->nr_queues != vm->ops->nr_queues)
		return load_err(vm, "%u queues, expected %u", st->nr_queues, vm->ops->nr_queues);
	ret = check_status(vm, st);
	if (ret)
		return ret;
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		if (i >= st->nr_queues) {
			if (!queue_state_zero(&st->queues[i]))
				return load_err(vm, "state for queue %u that does not exist", i);
			vqs[i].mem = vm->mem;
			continue;
		}
		ret = check_queue(vm, st, i, &vqs[i]);
		if (ret)
			return ret;
	}
	pthread_mutex_lock(&vm->lock);
	memcpy(vm->queues, vqs, sizeof(vqs));
	__atomic_store_n(&vm->status, st->status, __ATOMIC_RELEASE);
	__atomic_store_n(&vm->interrupt_status, st->interrupt_status, __ATOMIC_RELEASE);
	__atomic_store_n(&vm->config_generation, st->config_generation, __ATOMIC_RELEASE);
	__atomic_store_n(&vm->needs_reset_logged, !!(st->status & VIRTIO_STATUS_NEEDS_RESET),
			 __ATOMIC_RELEASE);
	vm->device_features_sel = st->device_features_sel;
	vm->driver_features_sel = st->driver_features_sel;
	vm->driver_features = st->driver_features;
	vm->queue_sel = st->queue_sel;
	pthread_mutex_unlock(&vm->lock);
	return 0;
}
