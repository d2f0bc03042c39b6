// SPDX-License-Identifier: GPL-2.0
/* TLV encodings of the STATE sections (docs/migration-format.md, "STATE sections"). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "godwit/vmstate.h"

enum vcpu_tag {
	VCPU_REGS = 1,
	VCPU_SREGS,
	VCPU_FPU,
	VCPU_XSAVE,
	VCPU_XCRS,
	VCPU_LAPIC,
	VCPU_EVENTS,
	VCPU_DEBUGREGS,
	VCPU_MP_STATE,
	VCPU_MSRS,
	VCPU_NR_TAGS,
};

/* A field that is copied as it is: where it lives in the struct and its size. */
struct blob_field {
	uint16_t tag;
	size_t offset;
	size_t size;
};

#define BLOB(tag, type, member) { tag, offsetof(type, member), sizeof(((type *)0)->member) }

static const struct blob_field vcpu_fields[] = {
	BLOB(VCPU_REGS, struct x86_vcpu_state, regs),
	BLOB(VCPU_SREGS, struct x86_vcpu_state, sregs),
	BLOB(VCPU_FPU, struct x86_vcpu_state, fpu),
	BLOB(VCPU_XSAVE, struct x86_vcpu_state, xsave),
	BLOB(VCPU_XCRS, struct x86_vcpu_state, xcrs),
	BLOB(VCPU_LAPIC, struct x86_vcpu_state, lapic),
	BLOB(VCPU_EVENTS, struct x86_vcpu_state, events),
	BLOB(VCPU_DEBUGREGS, struct x86_vcpu_state, debugregs),
	BLOB(VCPU_MP_STATE, struct x86_vcpu_state, mp_state),
};

static int put_blobs(struct stream_tlv_writer *tw, const struct blob_field *f, size_t n,
		     const void *st)
{
	size_t i;

	for (i = 0; i < n; i++)
		stream__tlv_put_bytes(tw, f[i].tag, 0, (const uint8_t *)st + f[i].offset, f[i].size);
	return tw->err;
}

static int finish(struct stream_writer *w, const char *id, uint32_t instance,
		  struct stream_tlv_writer *tw)
{
	int ret = tw->err ? tw->err : stream__write_state(w, id, instance, VMSTATE_VERSION, tw);

	stream__tlv_writer_exit(tw);
	return ret;
}

int vmstate__put_vcpu(struct stream_writer *w, unsigned int id, const struct x86_vcpu_state *st)
{
	struct stream_tlv_writer tw;
	uint8_t msrs[X86_MAX_MSRS * 12];
	uint32_t i;

	stream__tlv_writer_init(&tw);
	put_blobs(&tw, vcpu_fields, ARRAY_SIZE(vcpu_fields), st);
	for (i = 0; i < st->nr_msrs && i < X86_MAX_MSRS; i++) {
		stream_put32(msrs + 12 * i, st->msrs[i].index);
		stream_put64(msrs + 12 * i + 4, st->msrs[i].value);
	}
	stream__tlv_put_bytes(&tw, VCPU_MSRS, 0, msrs, 12 * (size_t)i);
	return finish(w, "vcpu", id, &tw);
}

static const struct blob_field *find_field(const struct blob_field *f, size_t n, uint16_t tag)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (f[i].tag == tag)
			return &f[i];
	return NULL;
}

/*
 * Walks a section's fields: blobs land in st after an exact length check; other
 * tags go to extra(). Every blob must appear exactly once.
 */
static int get_blobs(struct stream_tlv_reader *body, const struct blob_field *f, size_t n,
		     void *st, int (*extra)(const struct stream_tlv *t, void *st), char *err,
		     size_t errlen)
{
	uint32_t seen = 0;
	struct stream_tlv t;
	size_t i;
	int ret;

	while ((ret = stream__tlv_next(body, &t)) == 1) {
		const struct blob_field *b = find_field(f, n, t.tag);

		if (!b) {
			ret = extra ? extra(&t, st) : -ENOENT;
			if (ret == -ENOENT && (t.flags & STREAM_TLV_OPTIONAL))
				continue;
			if (ret) {
				snprintf(err, errlen, "field %u: %s", t.tag,
					 ret == -ENOENT ? "unknown required field" : "bad value");
				return -EBADMSG;
			}
			continue;
		}
		if (t.len != b->size || (seen & (1U << t.tag))) {
			snprintf(err, errlen, "field %u: length %u, expected %zu once", t.tag, t.len,
				 b->size);
			return -EBADMSG;
		}
		seen |= 1U << t.tag;
		memcpy((uint8_t *)st + b->offset, t.value, b->size);
	}
	if (ret < 0) {
		snprintf(err, errlen, "malformed field list");
		return -EBADMSG;
	}
	for (i = 0; i < n; i++) {
		if (!(seen & (1U << f[i].tag))) {
			snprintf(err, errlen, "field %u missing", f[i].tag);
			return -EBADMSG;
		}
	}
	return 0;
}

static int vcpu_msrs(const struct stream_tlv *t, void *opaque)
{
	struct x86_vcpu_state *st = opaque;
	uint32_t i, n;

	if (t->tag != VCPU_MSRS)
		return -ENOENT;
	if (t->len % 12 || t->len / 12 > X86_MAX_MSRS)
		return -EBADMSG;
	n = t->len / 12;
	for (i = 0; i < n; i++) {
		st->msrs[i].index = stream_get32(t->value + 12 * i);
		st->msrs[i].value = stream_get64(t->value + 12 * i + 4);
	}
	st->nr_msrs = n;
	return 0;
}

int vmstate__get_vcpu(struct stream_tlv_reader *body, struct x86_vcpu_state *st, char *err,
		      size_t errlen)
{
	memset(st, 0, sizeof(*st));
	return get_blobs(body, vcpu_fields, ARRAY_SIZE(vcpu_fields), st, vcpu_msrs, err, errlen);
}

/* VM-wide sections: one blob each. */
static const struct {
	const char *id;
	uint32_t instance;
	struct blob_field f;
} vm_sections[] = {
	{ "pic", 0, BLOB(1, struct x86_vm_state, pic_master) },
	{ "pic", 1, BLOB(1, struct x86_vm_state, pic_slave) },
	{ "ioapic", 0, BLOB(1, struct x86_vm_state, ioapic) },
	{ "pit", 0, BLOB(1, struct x86_vm_state, pit) },
	{ "kvmclock", 0, BLOB(1, struct x86_vm_state, clock) },
};

int vmstate__put_vm(struct stream_writer *w, const struct x86_vm_state *st)
{
	struct stream_tlv_writer tw;
	size_t i;
	int ret;

	for (i = 0; i < ARRAY_SIZE(vm_sections); i++) {
		stream__tlv_writer_init(&tw);
		put_blobs(&tw, &vm_sections[i].f, 1, st);
		ret = finish(w, vm_sections[i].id, vm_sections[i].instance, &tw);
		if (ret)
			return ret;
	}
	return 0;
}

int vmstate__get_vm(const char *id, uint32_t instance, struct stream_tlv_reader *body,
		    struct x86_vm_state *st, unsigned int *seen, char *err, size_t errlen)
{
	size_t i;
	int ret;

	for (i = 0; i < ARRAY_SIZE(vm_sections); i++) {
		if (strcmp(id, vm_sections[i].id) || instance != vm_sections[i].instance)
			continue;
		if (*seen & (1U << i)) {
			snprintf(err, errlen, "section %s/%u twice", id, instance);
			return -EBADMSG;
		}
		ret = get_blobs(body, &vm_sections[i].f, 1, st, NULL, err, errlen);
		if (!ret)
			*seen |= 1U << i;
		return ret;
	}
	return -ENOENT;
}

enum serial_tag {
	SERIAL_REGS = 1, /* ier lcr mcr lsr msr scr dll dlm fcr thr_ipending rbr */
	SERIAL_RX = 2,	 /* pending input, oldest first */
};

int vmstate__put_serial(struct stream_writer *w, const struct serial8250_state *st)
{
	uint8_t regs[11] = { st->ier, st->lcr, st->mcr, st->lsr, st->msr, st->scr,
			     st->dll, st->dlm, st->fcr, st->thr_ipending, st->rbr };
	struct stream_tlv_writer tw;

	stream__tlv_writer_init(&tw);
	stream__tlv_put_bytes(&tw, SERIAL_REGS, 0, regs, sizeof(regs));
	stream__tlv_put_bytes(&tw, SERIAL_RX, 0, st->rx, MIN(st->rx_len, sizeof(st->rx)));
	return finish(w, "serial", 0, &tw);
}

int vmstate__get_serial(struct stream_tlv_reader *body, struct serial8250_state *st, char *err,
			size_t errlen)
{
	unsigned int seen = 0;
	struct stream_tlv t;
	int ret;

	memset(st, 0, sizeof(*st));
	while ((ret = stream__tlv_next(body, &t)) == 1) {
		if (t.tag == SERIAL_REGS && t.len == 11 && !(seen & 1)) {
			const uint8_t *r = t.value;

			*st = (struct serial8250_state){ .ier = r[0], .lcr = r[1], .mcr = r[2],
				.lsr = r[3], .msr = r[4], .scr = r[5], .dll = r[6], .dlm = r[7],
				.fcr = r[8], .thr_ipending = r[9], .rbr = r[10] };
			seen |= 1;
		} else if (t.tag == SERIAL_RX && t.len <= sizeof(st->rx) && (seen & 1) &&
			   !(seen & 2)) {
			memcpy(st->rx, t.value, t.len);
			st->rx_len = t.len;
			seen |= 2;
		} else if (!(t.flags & STREAM_TLV_OPTIONAL)) {
			snprintf(err, errlen, "serial: field %u unexpected here", t.tag);
			return -EBADMSG;
		}
	}
	if (ret < 0 || seen != 3) {
		snprintf(err, errlen, "serial: %s", ret < 0 ? "malformed fields" : "fields missing");
		return -EBADMSG;
	}
	return 0;
}

/* ---- virtio-blk and virtio-net ---------------------------------------------------- */

enum virtio_tag {
	VIRTIO_TRANSPORT = 1, /* the transport's registers */
	VIRTIO_QUEUES = 2,    /* nr_queues entries of QUEUE_LEN bytes */
	VIRTIO_DEVICE = 3,    /* the device's own part */
};

#define TRANSPORT_LEN 45
#define QUEUE_LEN     31
#define BLK_LEN	      9
#define NET_LEN	      13

#define STATUS_KNOWN                                                                               \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK |              \
	 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)
#define BLK_CAPACITY_MAX (UINT64_MAX >> 9) /* sectors whose bytes fit in a u64 */

/*
 * Section version 1 (format <= 1.5) is gcc's x86-64 image of the structs of then;
 * these are its offsets (the padding between them is ignored).
 */
#define RAW_LEN		  712
#define RAW_QUEUES	  56
#define RAW_QUEUE_LEN	  40
#define RAW_BLK_CAPACITY  696
#define RAW_BLK_READONLY  704
#define RAW_NET_TRANSPORT 16

static void encode_transport(uint8_t *p, const struct virtio_mmio_state *t)
{
	stream_put32(p, t->device_id);
	stream_put32(p + 4, t->nr_queues);
	stream_put64(p + 8, t->device_features);
	stream_put64(p + 16, t->driver_features);
	stream_put32(p + 24, t->device_features_sel);
	stream_put32(p + 28, t->driver_features_sel);
	stream_put32(p + 32, t->queue_sel);
	stream_put32(p + 36, t->interrupt_status);
	stream_put32(p + 40, t->config_generation);
	p[44] = t->status;
}

static void decode_transport(const uint8_t *p, struct virtio_mmio_state *t)
{
	t->device_id = stream_get32(p);
	t->nr_queues = stream_get32(p + 4);
	t->device_features = stream_get64(p + 8);
	t->driver_features = stream_get64(p + 16);
	t->device_features_sel = stream_get32(p + 24);
	t->driver_features_sel = stream_get32(p + 28);
	t->queue_sel = stream_get32(p + 32);
	t->interrupt_status = stream_get32(p + 36);
	t->config_generation = stream_get32(p + 40);
	t->status = p[44];
}

static void encode_queue(uint8_t *p, const struct virtq_state *q)
{
	stream_put16(p, q->num);
	p[2] = q->ready;
	stream_put16(p + 3, q->last_avail_idx);
	stream_put16(p + 5, q->used_idx);
	stream_put64(p + 7, q->desc);
	stream_put64(p + 15, q->driver);
	stream_put64(p + 23, q->device);
}

static void decode_queue(const uint8_t *p, struct virtq_state *q)
{
	q->num = stream_get16(p);
	q->ready = p[2];
	q->last_avail_idx = stream_get16(p + 3);
	q->used_idx = stream_get16(p + 5);
	q->desc = stream_get64(p + 7);
	q->driver = stream_get64(p + 15);
	q->device = stream_get64(p + 23);
}

static void decode_raw_transport(const uint8_t *p, struct virtio_mmio_state *t)
{
	unsigned int i;

	t->device_id = stream_get32(p);
	t->nr_queues = stream_get32(p + 4);
	t->status = p[8];
	t->interrupt_status = stream_get32(p + 12);
	t->config_generation = stream_get32(p + 16);
	t->device_features_sel = stream_get32(p + 20);
	t->driver_features_sel = stream_get32(p + 24);
	t->device_features = stream_get64(p + 32);
	t->driver_features = stream_get64(p + 40);
	t->queue_sel = stream_get32(p + 48);
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		const uint8_t *q = p + RAW_QUEUES + RAW_QUEUE_LEN * i;
		struct virtq_state *qs = &t->queues[i];

		qs->num = stream_get16(q);
		qs->ready = q[2];
		qs->desc = stream_get64(q + 8);
		qs->driver = stream_get64(q + 16);
		qs->device = stream_get64(q + 24);
		qs->last_avail_idx = stream_get16(q + 32);
		qs->used_idx = stream_get16(q + 34);
	}
}

static int bad(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EBADMSG;
}

/* Aligned, and all of it below the largest x86-64 physical address. */
static bool ring_ok(uint64_t gpa, uint64_t align, uint64_t len)
{
	return !(gpa & (align - 1)) && gpa < STREAM_GPA_LIMIT && len <= STREAM_GPA_LIMIT - gpa;
}

static bool queue_zero(const struct virtq_state *q)
{
	return !q->num && !q->ready && !q->desc && !q->driver && !q->device && !q->last_avail_idx &&
	       !q->used_idx;
}

static int check_queue(const struct virtq_state *q, unsigned int i, char *err, size_t errlen)
{
	uint16_t in_flight = (uint16_t)(q->last_avail_idx - q->used_idx);

	if (q->ready > 1)
		return bad(err, errlen, "queue %u: ready is %u", i, q->ready);
	if (q->num > VIRTQ_MAX_SIZE || (q->num & (q->num - 1)))
		return bad(err, errlen, "queue %u: size %u (a power of two up to %u)", i, q->num,
			   VIRTQ_MAX_SIZE);
	/*
	 * A queue leaves ready only through a reset, which clears its indices; its
	 * addresses are whatever the driver wrote, checked when it enables the queue.
	 */
	if (!q->ready) {
		if (q->last_avail_idx || q->used_idx)
			return bad(err, errlen, "queue %u: not ready, with ring indices", i);
		return 0;
	}
	if (!q->num)
		return bad(err, errlen, "queue %u: ready with size 0", i);
	if (!ring_ok(q->desc, 16, VIRTQ_DESC_BYTES(q->num)) ||
	    !ring_ok(q->driver, 2, VIRTQ_AVAIL_BYTES(q->num)) ||
	    !ring_ok(q->device, 4, VIRTQ_USED_BYTES(q->num)))
		return bad(err, errlen,
			   "queue %u: rings at 0x%llx/0x%llx/0x%llx misaligned or out of range", i,
			   (unsigned long long)q->desc, (unsigned long long)q->driver,
			   (unsigned long long)q->device);
	if (in_flight > q->num)
		return bad(err, errlen, "queue %u: %u chains in flight (size %u)", i, in_flight,
			   q->num);
	return 0;
}

static int check_transport(const struct virtio_mmio_state *t, uint32_t device_id, char *err,
			   size_t errlen)
{
	unsigned int i;
	int ret;

	if (t->device_id != device_id)
		return bad(err, errlen, "device id %u, expected %u", t->device_id, device_id);
	if (!t->nr_queues || t->nr_queues > VIRTIO_MAX_QUEUES)
		return bad(err, errlen, "%u queues (1..%u)", t->nr_queues, VIRTIO_MAX_QUEUES);
	if (t->status & ~STATUS_KNOWN)
		return bad(err, errlen, "unknown status bits 0x%x", t->status);
	if (t->interrupt_status & ~(VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG))
		return bad(err, errlen, "interrupt status 0x%x", t->interrupt_status);
	if (t->driver_features & ~t->device_features)
		return bad(err, errlen, "driver features 0x%llx not all offered (0x%llx)",
			   (unsigned long long)t->driver_features,
			   (unsigned long long)t->device_features);
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		if (i >= t->nr_queues) {
			if (!queue_zero(&t->queues[i]))
				return bad(err, errlen, "state for queue %u that does not exist",
					   i);
			continue;
		}
		ret = check_queue(&t->queues[i], i, err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}

static int check_blk(const struct virtio_blk_state *st, char *err, size_t errlen)
{
	if (st->capacity > BLK_CAPACITY_MAX)
		return bad(err, errlen, "capacity of %llu sectors",
			   (unsigned long long)st->capacity);
	if (st->readonly > 1)
		return bad(err, errlen, "readonly is %u", st->readonly);
	return check_transport(&st->transport, VIRTIO_ID_BLK, err, errlen);
}

static int check_net(const struct virtio_net_state *st, char *err, size_t errlen)
{
	static const uint8_t zero[ETH_ALEN];

	if ((st->mac[0] & 1) || !memcmp(st->mac, zero, ETH_ALEN))
		return bad(err, errlen,
			   "MAC %02x:%02x:%02x:%02x:%02x:%02x is not a unicast address", st->mac[0],
			   st->mac[1], st->mac[2], st->mac[3], st->mac[4], st->mac[5]);
	if (st->status & ~(VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE))
		return bad(err, errlen, "unknown link status bits 0x%x", st->status);
	if (st->have_ipv4 > 1)
		return bad(err, errlen, "have_ipv4 is %u", st->have_ipv4);
	return check_transport(&st->transport, VIRTIO_ID_NET, err, errlen);
}

static void put_transport(struct stream_tlv_writer *tw, const struct virtio_mmio_state *t)
{
	uint8_t b[TRANSPORT_LEN], q[VIRTIO_MAX_QUEUES * QUEUE_LEN];
	unsigned int i, n = MIN(t->nr_queues, VIRTIO_MAX_QUEUES); /* check_transport: equal */

	encode_transport(b, t);
	for (i = 0; i < n; i++)
		encode_queue(q + QUEUE_LEN * i, &t->queues[i]);
	stream__tlv_put_bytes(tw, VIRTIO_TRANSPORT, 0, b, sizeof(b));
	stream__tlv_put_bytes(tw, VIRTIO_QUEUES, 0, q, QUEUE_LEN * (size_t)n);
}

int vmstate__encode_virtio_blk(struct stream_tlv_writer *tw, const struct virtio_blk_state *st,
			       char *err, size_t errlen)
{
	uint8_t b[BLK_LEN];

	if (check_blk(st, err, errlen))
		return -EINVAL;
	put_transport(tw, &st->transport);
	stream_put64(b, st->capacity);
	b[8] = st->readonly;
	return stream__tlv_put_bytes(tw, VIRTIO_DEVICE, 0, b, sizeof(b));
}

int vmstate__encode_virtio_net(struct stream_tlv_writer *tw, const struct virtio_net_state *st,
			       char *err, size_t errlen)
{
	uint8_t b[NET_LEN] = { 0 };

	if (check_net(st, err, errlen))
		return -EINVAL;
	put_transport(tw, &st->transport);
	memcpy(b, st->mac, ETH_ALEN);
	stream_put16(b + 6, st->status);
	b[8] = st->have_ipv4;
	/* The address means nothing without have_ipv4: zero then, so it can be checked. */
	if (st->have_ipv4)
		memcpy(b + 9, st->ipv4, 4);
	return stream__tlv_put_bytes(tw, VIRTIO_DEVICE, 0, b, sizeof(b));
}

static int finish_virtio(struct stream_writer *w, const char *id, uint32_t instance,
			 struct stream_tlv_writer *tw, int ret, const char *why)
{
	if (ret == -EINVAL && why[0])
		snprintf(w->err, sizeof(w->err), "%s %u: %s", id, instance, why);
	if (ret) {
		stream__tlv_writer_exit(tw);
		return ret;
	}
	ret = stream__write_state(w, id, instance, VMSTATE_VIRTIO_VERSION, tw);
	stream__tlv_writer_exit(tw);
	return ret;
}

int vmstate__put_virtio_blk(struct stream_writer *w, uint32_t instance,
			    const struct virtio_blk_state *st)
{
	struct stream_tlv_writer tw;
	char why[160] = "";
	int ret;

	stream__tlv_writer_init(&tw);
	ret = vmstate__encode_virtio_blk(&tw, st, why, sizeof(why));
	return finish_virtio(w, "virtio-blk", instance, &tw, ret, why);
}

int vmstate__put_virtio_net(struct stream_writer *w, uint32_t instance,
			    const struct virtio_net_state *st)
{
	struct stream_tlv_writer tw;
	char why[160] = "";
	int ret;

	stream__tlv_writer_init(&tw);
	ret = vmstate__encode_virtio_net(&tw, st, why, sizeof(why));
	return finish_virtio(w, "virtio-net", instance, &tw, ret, why);
}

static int check_version(uint32_t version, uint16_t minor, char *err, size_t errlen)
{
	uint32_t want = minor < VMSTATE_VIRTIO_MINOR ? VMSTATE_VIRTIO_RAW_VERSION :
						       VMSTATE_VIRTIO_VERSION;

	if (version == want)
		return 0;
	snprintf(err, errlen,
		 "section version %u in a format 1.%u stream, which carries version %u", version,
		 minor, want);
	return -EPROTO;
}

/* The fields of a section, each required once; unknown optional ones are skipped. */
struct virtio_fields {
	const uint8_t *v[VIRTIO_DEVICE + 1];
	uint32_t len[VIRTIO_DEVICE + 1];
};

static int collect(struct stream_tlv_reader *body, uint16_t last_tag, struct virtio_fields *f,
		   char *err, size_t errlen)
{
	struct stream_tlv t;
	unsigned int i;
	int ret;

	memset(f, 0, sizeof(*f));
	while ((ret = stream__tlv_next(body, &t)) == 1) {
		if (t.tag < 1 || t.tag > last_tag) {
			if (t.flags & STREAM_TLV_OPTIONAL)
				continue;
			return bad(err, errlen, "field %u: unknown required field", t.tag);
		}
		if (f->v[t.tag])
			return bad(err, errlen, "field %u twice", t.tag);
		f->v[t.tag] = t.value;
		f->len[t.tag] = t.len;
	}
	if (ret < 0)
		return bad(err, errlen, "malformed field list");
	for (i = 1; i <= last_tag; i++)
		if (!f->v[i])
			return bad(err, errlen, "field %u missing", i);
	return 0;
}

/* Version 2: the transport's two fields, and the device's one of dev_len bytes. */
static int get_fields(struct stream_tlv_reader *body, struct virtio_mmio_state *t,
		      uint32_t dev_len, const uint8_t **dev, char *err, size_t errlen)
{
	struct virtio_fields f;
	unsigned int i;
	int ret = collect(body, VIRTIO_DEVICE, &f, err, errlen);

	if (ret)
		return ret;
	if (f.len[VIRTIO_TRANSPORT] != TRANSPORT_LEN)
		return bad(err, errlen, "transport field of %u bytes, expected %u",
			   f.len[VIRTIO_TRANSPORT], TRANSPORT_LEN);
	if (f.len[VIRTIO_DEVICE] != dev_len)
		return bad(err, errlen, "device field of %u bytes, expected %u",
			   f.len[VIRTIO_DEVICE], dev_len);
	decode_transport(f.v[VIRTIO_TRANSPORT], t);
	if (!t->nr_queues || t->nr_queues > VIRTIO_MAX_QUEUES)
		return bad(err, errlen, "%u queues (1..%u)", t->nr_queues, VIRTIO_MAX_QUEUES);
	if (f.len[VIRTIO_QUEUES] != QUEUE_LEN * t->nr_queues)
		return bad(err, errlen, "queue field of %u bytes for %u queues of %u",
			   f.len[VIRTIO_QUEUES], t->nr_queues, QUEUE_LEN);
	for (i = 0; i < t->nr_queues; i++)
		decode_queue(f.v[VIRTIO_QUEUES] + QUEUE_LEN * i, &t->queues[i]);
	*dev = f.v[VIRTIO_DEVICE];
	return 0;
}

/* Version 1: one field, the RAW_LEN-byte image. */
static int get_raw(struct stream_tlv_reader *body, const uint8_t **raw, char *err, size_t errlen)
{
	struct virtio_fields f;
	int ret = collect(body, 1, &f, err, errlen);

	if (ret)
		return ret;
	if (f.len[1] != RAW_LEN)
		return bad(err, errlen, "field 1: length %u, expected %u", f.len[1], RAW_LEN);
	*raw = f.v[1];
	return 0;
}

int vmstate__get_virtio_blk(struct stream_tlv_reader *body, uint32_t version, uint16_t minor,
			    struct virtio_blk_state *st, char *err, size_t errlen)
{
	const uint8_t *p;
	int ret;

	memset(st, 0, sizeof(*st));
	ret = check_version(version, minor, err, errlen);
	if (ret)
		return ret;
	if (version == VMSTATE_VIRTIO_RAW_VERSION) {
		ret = get_raw(body, &p, err, errlen);
		if (ret)
			return ret;
		decode_raw_transport(p, &st->transport);
		st->capacity = stream_get64(p + RAW_BLK_CAPACITY);
		st->readonly = p[RAW_BLK_READONLY];
	} else {
		ret = get_fields(body, &st->transport, BLK_LEN, &p, err, errlen);
		if (ret)
			return ret;
		st->capacity = stream_get64(p);
		st->readonly = p[8];
	}
	return check_blk(st, err, errlen);
}

int vmstate__get_virtio_net(struct stream_tlv_reader *body, uint32_t version, uint16_t minor,
			    struct virtio_net_state *st, char *err, size_t errlen)
{
	static const uint8_t zero[4];
	const uint8_t *p;
	int ret;

	memset(st, 0, sizeof(*st));
	ret = check_version(version, minor, err, errlen);
	if (ret)
		return ret;
	if (version == VMSTATE_VIRTIO_RAW_VERSION) {
		ret = get_raw(body, &p, err, errlen);
		if (ret)
			return ret;
		decode_raw_transport(p + RAW_NET_TRANSPORT, &st->transport);
	} else {
		ret = get_fields(body, &st->transport, NET_LEN, &p, err, errlen);
		if (ret)
			return ret;
		/* Version 2 writes the address only with have_ipv4 (version 1 copied it). */
		if (!p[8] && memcmp(p + 9, zero, 4))
			return bad(err, errlen, "an IPv4 address without have_ipv4");
	}
	/* Both versions have the MAC, status, have_ipv4 and address at bytes 0, 6, 8, 9. */
	memcpy(st->mac, p, ETH_ALEN);
	st->status = stream_get16(p + 6);
	st->have_ipv4 = p[8];
	if (st->have_ipv4 == 1)
		memcpy(st->ipv4, p + 9, 4);
	return check_net(st, err, errlen);
}
