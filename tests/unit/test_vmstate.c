// SPDX-License-Identifier: GPL-2.0
/* STATE sections: encode/decode round trips and the decoder's rejections. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/vmstate.h"

static void randomize(void *p, size_t n, unsigned int seed)
{
	uint8_t *b = p;
	size_t i;

	srand(seed);
	for (i = 0; i < n; i++)
		b[i] = (uint8_t)rand();
}

/* Writes one section with put(), reads it back and parses its header. */
struct section {
	struct stream_io wio, rio;
	struct stream_writer w;
	struct stream_reader r;
	struct stream_record rec;
	struct stream_state_hdr hdr;
	struct stream_tlv_reader body;
};

static void open_writer(struct section *s)
{
	struct stream_config cfg = { .ram_size = 64 << 20, .nr_vcpus = 1, .nr_regions = 1,
				     .regions = { { 0, 64 << 20 } } };

	stream_io__init_mem_writer(&s->wio);
	assert_int_equal(stream__writer_init(&s->w, &s->wio, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__write_header(&s->w), 0);
	assert_int_equal(stream__write_config(&s->w, &cfg), 0);
}

static void read_back(struct section *s)
{
	struct stream_header hdr;
	const uint8_t *data;
	char err[256];
	size_t len;

	data = stream_io__mem_data(&s->wio, &len);
	stream_io__init_mem_reader(&s->rio, data, len);
	assert_int_equal(stream__reader_init(&s->r, &s->rio, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__read_header(&s->r, &hdr), 0);
	assert_int_equal(stream__read_record(&s->r, &s->rec), 0); /* CONFIG */
	assert_int_equal(stream__read_record(&s->r, &s->rec), 0);
	assert_int_equal(s->rec.type, STREAM_REC_STATE);
	assert_int_equal(stream__state_parse(s->rec.payload, s->rec.length, &s->hdr, &s->body, err,
					     sizeof(err)),
			 0);
}

static void close_section(struct section *s)
{
	stream__reader_exit(&s->r);
	stream_io__exit(&s->rio);
	stream__writer_exit(&s->w);
	stream_io__exit(&s->wio);
}

static void test_vcpu_round_trip(void **state)
{
	struct x86_vcpu_state *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct section s;
	char err[256];
	uint32_t i;

	(void)state;
	randomize(a, offsetof(struct x86_vcpu_state, nr_msrs), 1);
	a->nr_msrs = X86_MAX_MSRS;
	for (i = 0; i < a->nr_msrs; i++)
		a->msrs[i] = (struct x86_msr){ .index = 0x4b564d00 + i, .value = 0x1122334455667788ULL * i };
	open_writer(&s);
	assert_int_equal(vmstate__put_vcpu(&s.w, 3, a), 0);
	read_back(&s);
	assert_string_equal(s.hdr.id, "vcpu");
	assert_int_equal(s.hdr.instance, 3);
	assert_int_equal(vmstate__get_vcpu(&s.body, b, err, sizeof(err)), 0);
	assert_memory_equal(a, b, sizeof(*a));
	close_section(&s);
	free(a);
	free(b);
}

static void test_vm_and_serial_round_trip(void **state)
{
	struct x86_vm_state a, b = { 0 };
	struct serial8250_state *sa = calloc(1, sizeof(*sa)), *sb = calloc(1, sizeof(*sb));
	struct section s;
	unsigned int seen = 0, n;
	char err[256];

	(void)state;
	randomize(&a, sizeof(a), 2);
	open_writer(&s);
	assert_int_equal(vmstate__put_vm(&s.w, &a), 0);
	read_back(&s);
	/* Five sections: the first is already parsed, the others follow. */
	for (n = 0; n < 5; n++) {
		if (n) {
			assert_int_equal(stream__read_record(&s.r, &s.rec), 0);
			assert_int_equal(stream__state_parse(s.rec.payload, s.rec.length, &s.hdr,
							     &s.body, err, sizeof(err)),
					 0);
		}
		assert_int_equal(vmstate__get_vm(s.hdr.id, s.hdr.instance, &s.body, &b, &seen, err,
						 sizeof(err)),
				 0);
	}
	assert_int_equal(seen, VMSTATE_SEEN_VM_ALL);
	assert_memory_equal(&a, &b, sizeof(a));
	close_section(&s);

	*sa = (struct serial8250_state){ .ier = 1, .lcr = 3, .mcr = 8, .lsr = 0x61, .fcr = 0xc1,
					 .rx_len = 5 };
	memcpy(sa->rx, "hello", 5);
	open_writer(&s);
	assert_int_equal(vmstate__put_serial(&s.w, sa), 0);
	read_back(&s);
	assert_int_equal(vmstate__get_serial(&s.body, sb, err, sizeof(err)), 0);
	assert_memory_equal(sa, sb, sizeof(*sa));
	close_section(&s);
	free(sa);
	free(sb);
}

/* Builds a vcpu body by hand to hit each rejection. */
static int decode_vcpu_body(void (*build)(struct stream_tlv_writer *tw), char *err, size_t n)
{
	struct x86_vcpu_state *st = calloc(1, sizeof(*st));
	struct stream_tlv_writer tw;
	struct stream_tlv_reader tr;
	int ret;

	stream__tlv_writer_init(&tw);
	build(&tw);
	stream__tlv_reader_init(&tr, tw.buf, tw.len);
	ret = vmstate__get_vcpu(&tr, st, err, n);
	stream__tlv_writer_exit(&tw);
	free(st);
	return ret;
}

static void put_all_but(struct stream_tlv_writer *tw, uint16_t skip)
{
	static uint8_t zeros[8192];
	static const size_t sizes[] = { 0, sizeof(struct kvm_regs), sizeof(struct kvm_sregs),
					sizeof(struct kvm_fpu), 4096,
					sizeof(struct kvm_xcrs), sizeof(struct kvm_lapic_state),
					sizeof(struct kvm_vcpu_events), sizeof(struct kvm_debugregs),
					sizeof(struct kvm_mp_state) };
	uint16_t t;

	for (t = 1; t <= 9; t++)
		if (t != skip)
			stream__tlv_put_bytes(tw, t, 0, zeros, sizes[t]);
}

static void body_missing_regs(struct stream_tlv_writer *tw)
{
	put_all_but(tw, 1);
}

static void body_short_sregs(struct stream_tlv_writer *tw)
{
	static uint8_t z[16];

	put_all_but(tw, 2);
	stream__tlv_put_bytes(tw, 2, 0, z, sizeof(z));
}

static void body_duplicate(struct stream_tlv_writer *tw)
{
	put_all_but(tw, 0);
	put_all_but(tw, 0);
}

static void body_unknown_required(struct stream_tlv_writer *tw)
{
	put_all_but(tw, 0);
	stream__tlv_put_u32(tw, 77, 0, 1);
}

static void body_unknown_optional(struct stream_tlv_writer *tw)
{
	put_all_but(tw, 0);
	stream__tlv_put_u32(tw, 77, STREAM_TLV_OPTIONAL, 1);
}

static void body_bad_msrs(struct stream_tlv_writer *tw)
{
	static uint8_t z[12 * 65];

	put_all_but(tw, 0);
	stream__tlv_put_bytes(tw, 10, 0, z, sizeof(z)); /* 65 MSRs: over the limit */
}

static void body_ragged_msrs(struct stream_tlv_writer *tw)
{
	static uint8_t z[13];

	put_all_but(tw, 0);
	stream__tlv_put_bytes(tw, 10, 0, z, sizeof(z));
}

static void test_vcpu_rejections(void **state)
{
	char err[256];

	(void)state;
	assert_int_equal(decode_vcpu_body(body_missing_regs, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "missing"));
	assert_int_equal(decode_vcpu_body(body_short_sregs, err, sizeof(err)), -EBADMSG);
	assert_int_equal(decode_vcpu_body(body_duplicate, err, sizeof(err)), -EBADMSG);
	assert_int_equal(decode_vcpu_body(body_unknown_required, err, sizeof(err)), -EBADMSG);
	assert_int_equal(decode_vcpu_body(body_unknown_optional, err, sizeof(err)), 0);
	assert_int_equal(decode_vcpu_body(body_bad_msrs, err, sizeof(err)), -EBADMSG);
	assert_int_equal(decode_vcpu_body(body_ragged_msrs, err, sizeof(err)), -EBADMSG);
}

static void test_vm_section_twice_and_unknown(void **state)
{
	struct stream_tlv_writer tw;
	struct stream_tlv_reader tr;
	struct x86_vm_state st;
	unsigned int seen = 0;
	char err[256];

	(void)state;
	stream__tlv_writer_init(&tw);
	stream__tlv_put_bytes(&tw, 1, 0, &st.pit, sizeof(st.pit));
	stream__tlv_reader_init(&tr, tw.buf, tw.len);
	assert_int_equal(vmstate__get_vm("pit", 0, &tr, &st, &seen, err, sizeof(err)), 0);
	stream__tlv_reader_init(&tr, tw.buf, tw.len);
	assert_int_equal(vmstate__get_vm("pit", 0, &tr, &st, &seen, err, sizeof(err)), -EBADMSG);
	assert_int_equal(vmstate__get_vm("pic", 7, &tr, &st, &seen, err, sizeof(err)), -ENOENT);
	assert_int_equal(vmstate__get_vm("gpu", 0, &tr, &st, &seen, err, sizeof(err)), -ENOENT);
	/* The right section with a wrong-sized blob. */
	stream__tlv_reader_init(&tr, tw.buf, tw.len);
	assert_int_equal(vmstate__get_vm("kvmclock", 0, &tr, &st, &seen, err, sizeof(err)),
			 -EBADMSG);
	stream__tlv_writer_exit(&tw);
}

/* ---- virtio-blk and virtio-net ---------------------------------------------------- */

static void blk_state(struct virtio_blk_state *st)
{
	memset(st, 0, sizeof(*st));
	st->transport = (struct virtio_mmio_state){
		.device_id = VIRTIO_ID_BLK,
		.nr_queues = 1,
		.status = 0x0f,
		.interrupt_status = 1,
		.config_generation = 0x01020304,
		.device_features_sel = 1,
		.driver_features_sel = 2,
		.device_features = 0x130000220ULL,
		.driver_features = 0x120000200ULL,
		.queue_sel = 3,
	};
	st->transport.queues[0] = (struct virtq_state){ .num = 256, .ready = 1, .desc = 0x123000,
							.driver = 0x124000, .device = 0x125000,
							.last_avail_idx = 0x1234,
							.used_idx = 0x1230 };
	st->capacity = 1ULL << 21;
	st->readonly = 1;
}

static void net_state(struct virtio_net_state *st)
{
	static const uint8_t mac[] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
	static const uint8_t ip[] = { 192, 0, 2, 15 };
	unsigned int q;

	memset(st, 0, sizeof(*st));
	memcpy(st->mac, mac, sizeof(mac));
	st->status = VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE;
	st->have_ipv4 = 1;
	memcpy(st->ipv4, ip, sizeof(ip));
	st->transport = (struct virtio_mmio_state){
		.device_id = VIRTIO_ID_NET,
		.nr_queues = 3,
		.status = 0x0f,
		.config_generation = 7,
		.device_features = 0x1302300a0ULL,
		.driver_features = 0x100230020ULL,
		.queue_sel = 2,
	};
	for (q = 0; q < 3; q++)
		st->transport.queues[q] = (struct virtq_state){
			.num = 256, .ready = 1, .desc = 0x200000 + 0x10000 * q,
			.driver = 0x201000 + 0x10000 * q, .device = 0x202000 + 0x10000 * q,
			.last_avail_idx = (uint16_t)(0xfff0 + q), .used_idx = (uint16_t)(0xffe0 + q)
		};
}

/* blk_state()'s version-2 body, byte by byte as docs/migration-format.md lays it out. */
static const uint8_t blk_golden[] = {
	/* field 1, transport: 45 bytes */
	0x01, 0x00, 0x00, 0x00, 0x2d, 0x00, 0x00, 0x00,
	0x02, 0x00, 0x00, 0x00,				/* device id */
	0x01, 0x00, 0x00, 0x00,				/* queues */
	0x20, 0x02, 0x00, 0x30, 0x01, 0x00, 0x00, 0x00, /* device features */
	0x00, 0x02, 0x00, 0x20, 0x01, 0x00, 0x00, 0x00, /* driver features */
	0x01, 0x00, 0x00, 0x00,				/* DeviceFeaturesSel */
	0x02, 0x00, 0x00, 0x00,				/* DriverFeaturesSel */
	0x03, 0x00, 0x00, 0x00,				/* QueueSel */
	0x01, 0x00, 0x00, 0x00,				/* InterruptStatus */
	0x04, 0x03, 0x02, 0x01,				/* ConfigGeneration */
	0x0f,						/* Status */
	/* field 2, queues: 31 bytes each */
	0x02, 0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00,
	0x00, 0x01,					/* size */
	0x01,						/* ready */
	0x34, 0x12,					/* last_avail_idx */
	0x30, 0x12,					/* used_idx */
	0x00, 0x30, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, /* descriptor table */
	0x00, 0x40, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, /* driver (avail) ring */
	0x00, 0x50, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, /* device (used) ring */
	/* field 3, disk: 9 bytes */
	0x03, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, /* capacity, sectors */
	0x01,						/* readonly */
};

/* Where blk_golden's values start. */
#define GOLD_TRANSPORT 8
#define GOLD_QUEUE     61
#define GOLD_DISK      100

static int decode_blk(const uint8_t *body, size_t len, uint32_t version, uint16_t minor,
		      struct virtio_blk_state *st, char *err, size_t errlen)
{
	struct stream_tlv_reader tr;

	stream__tlv_reader_init(&tr, body, len);
	return vmstate__get_virtio_blk(&tr, version, minor, st, err, errlen);
}

static int decode_net(const uint8_t *body, size_t len, uint32_t version, uint16_t minor,
		      struct virtio_net_state *st, char *err, size_t errlen)
{
	struct stream_tlv_reader tr;

	stream__tlv_reader_init(&tr, body, len);
	return vmstate__get_virtio_net(&tr, version, minor, st, err, errlen);
}

static void test_virtio_blk_golden_bytes(void **state)
{
	struct virtio_blk_state *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct stream_tlv_writer tw;
	char err[256] = "";

	(void)state;
	blk_state(a);
	stream__tlv_writer_init(&tw);
	assert_int_equal(vmstate__encode_virtio_blk(&tw, a, err, sizeof(err)), 0);
	assert_int_equal(tw.len, sizeof(blk_golden));
	assert_memory_equal(tw.buf, blk_golden, sizeof(blk_golden));
	stream__tlv_writer_exit(&tw);
	assert_int_equal(decode_blk(blk_golden, sizeof(blk_golden), VMSTATE_VIRTIO_VERSION,
				    STREAM_VERSION_MINOR, b, err, sizeof(err)),
			 0);
	assert_memory_equal(a, b, sizeof(*a));
	free(a);
	free(b);
}

static void test_virtio_net_golden_bytes(void **state)
{
	static const uint8_t dev[] = {
		0x03, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x00, 0x00, /* field 3, 13 bytes */
		0x52, 0x54, 0x00, 0x12, 0x34, 0x56,		/* MAC */
		0x03, 0x00,					/* link status */
		0x01,						/* have_ipv4 */
		0xc0, 0x00, 0x02, 0x0f,				/* 192.0.2.15 */
	};
	static const uint8_t queue2[] = {
		0x00, 0x01, 0x01, 0xf2, 0xff, 0xe2, 0xff,
		0x00, 0x00, 0x22, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x10, 0x22, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x20, 0x22, 0x00, 0x00, 0x00, 0x00, 0x00,
	};
	struct virtio_net_state *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct stream_tlv_writer tw;
	char err[256] = "";

	(void)state;
	net_state(a);
	stream__tlv_writer_init(&tw);
	assert_int_equal(vmstate__encode_virtio_net(&tw, a, err, sizeof(err)), 0);
	/* transport (8 + 45), three queues (8 + 93), the device's field (8 + 13) */
	assert_int_equal(tw.len, 175);
	assert_memory_equal(tw.buf + 53, "\x02\x00\x00\x00\x5d\x00\x00\x00", 8);
	assert_memory_equal(tw.buf + 61 + 2 * 31, queue2, sizeof(queue2));
	assert_memory_equal(tw.buf + 154, dev, sizeof(dev));
	assert_int_equal(decode_net(tw.buf, tw.len, VMSTATE_VIRTIO_VERSION, STREAM_VERSION_MINOR,
				    b, err, sizeof(err)),
			 0);
	assert_memory_equal(a, b, sizeof(*a));
	/* Without have_ipv4 the address goes as zeros and comes back as zeros. */
	a->have_ipv4 = 0;
	stream__tlv_writer_exit(&tw);
	stream__tlv_writer_init(&tw);
	assert_int_equal(vmstate__encode_virtio_net(&tw, a, err, sizeof(err)), 0);
	assert_memory_equal(tw.buf + 154 + 8 + 9, "\0\0\0\0", 4);
	assert_int_equal(decode_net(tw.buf, tw.len, VMSTATE_VIRTIO_VERSION, STREAM_VERSION_MINOR,
				    b, err, sizeof(err)),
			 0);
	assert_int_equal(b->have_ipv4, 0);
	assert_memory_equal(b->ipv4, "\0\0\0\0", 4);
	stream__tlv_writer_exit(&tw);
	free(a);
	free(b);
}

static void test_virtio_round_trip_through_a_stream(void **state)
{
	struct virtio_blk_state *ba = calloc(1, sizeof(*ba)), *bb = calloc(1, sizeof(*bb));
	struct virtio_net_state *na = calloc(1, sizeof(*na)), *nb = calloc(1, sizeof(*nb));
	struct section s;
	char err[256] = "";

	(void)state;
	blk_state(ba);
	open_writer(&s);
	assert_int_equal(vmstate__put_virtio_blk(&s.w, 1, ba), 0);
	read_back(&s);
	assert_string_equal(s.hdr.id, "virtio-blk");
	assert_int_equal(s.hdr.instance, 1);
	assert_int_equal(s.hdr.version, VMSTATE_VIRTIO_VERSION);
	assert_int_equal(s.r.hdr.minor, STREAM_VERSION_MINOR);
	assert_int_equal(vmstate__get_virtio_blk(&s.body, s.hdr.version, s.r.hdr.minor, bb, err,
						 sizeof(err)),
			 0);
	assert_memory_equal(ba, bb, sizeof(*ba));
	close_section(&s);

	net_state(na);
	open_writer(&s);
	assert_int_equal(vmstate__put_virtio_net(&s.w, 0, na), 0);
	read_back(&s);
	assert_string_equal(s.hdr.id, "virtio-net");
	assert_int_equal(vmstate__get_virtio_net(&s.body, s.hdr.version, s.r.hdr.minor, nb, err,
						 sizeof(err)),
			 0);
	assert_memory_equal(na, nb, sizeof(*na));
	close_section(&s);
	free(ba);
	free(bb);
	free(na);
	free(nb);
}

/* The encoder refuses what the decoder would, and says why in the writer's err. */
static void test_virtio_encoder_refuses_bad_state(void **state)
{
	struct virtio_blk_state *b = calloc(1, sizeof(*b));
	struct virtio_net_state *n = calloc(1, sizeof(*n));
	struct section s;

	(void)state;
	blk_state(b);
	b->transport.nr_queues = VIRTIO_MAX_QUEUES + 1;
	open_writer(&s);
	assert_int_equal(vmstate__put_virtio_blk(&s.w, 0, b), -EINVAL);
	assert_non_null(strstr(s.w.err, "virtio-blk 0: 17 queues"));
	stream__writer_exit(&s.w);
	stream_io__exit(&s.wio);

	net_state(n);
	n->have_ipv4 = 2;
	open_writer(&s);
	assert_int_equal(vmstate__put_virtio_net(&s.w, 2, n), -EINVAL);
	assert_non_null(strstr(s.w.err, "virtio-net 2: have_ipv4 is 2"));
	stream__writer_exit(&s.w);
	stream_io__exit(&s.wio);
	free(b);
	free(n);
}

static void test_virtio_truncated_bodies(void **state)
{
	struct virtio_blk_state *st = calloc(1, sizeof(*st));
	char err[256];
	size_t len;

	(void)state;
	for (len = 0; len < sizeof(blk_golden); len++) {
		err[0] = 0;
		assert_int_equal(decode_blk(blk_golden, len, VMSTATE_VIRTIO_VERSION,
					    STREAM_VERSION_MINOR, st, err, sizeof(err)),
				 -EBADMSG);
		assert_true(err[0]);
	}
	free(st);
}

struct patch {
	size_t off;
	uint8_t len;
	uint64_t val; /* little-endian over len bytes */
	const char *why;
};

static void test_virtio_blk_bad_values(void **state)
{
	static const struct patch patches[] = {
		{ GOLD_TRANSPORT + 0, 4, VIRTIO_ID_NET, "device id 1, expected 2" },
		{ GOLD_TRANSPORT + 4, 4, 0, "0 queues" },
		{ GOLD_TRANSPORT + 4, 4, 17, "17 queues" },
		{ GOLD_TRANSPORT + 4, 4, 2, "queue field of 31 bytes for 2 queues" },
		{ GOLD_TRANSPORT + 4, 4, 0x80000001, "queues" },
		{ GOLD_TRANSPORT + 16, 1, 0x01, "not all offered" },
		{ GOLD_TRANSPORT + 36, 4, 4, "interrupt status 0x4" },
		{ GOLD_TRANSPORT + 44, 1, 0x1f, "unknown status bits" },
		{ GOLD_QUEUE + 0, 2, 3, "queue 0: size 3" },
		{ GOLD_QUEUE + 0, 2, 2048, "queue 0: size 2048" },
		{ GOLD_QUEUE + 0, 2, 0, "queue 0: ready with size 0" },
		{ GOLD_QUEUE + 2, 1, 2, "queue 0: ready is 2" },
		{ GOLD_QUEUE + 2, 1, 0, "queue 0: not ready, with ring indices" },
		{ GOLD_QUEUE + 5, 2, 0x1000, "queue 0: 564 chains in flight" },
		{ GOLD_QUEUE + 7, 1, 0x08, "misaligned or out of range" },
		{ GOLD_QUEUE + 15, 1, 0x01, "misaligned or out of range" },
		{ GOLD_QUEUE + 23, 1, 0x02, "misaligned or out of range" },
		{ GOLD_QUEUE + 7 + 6, 1, 0x10, "misaligned or out of range" },
		{ GOLD_QUEUE + 23, 8, 0x000ffffffffffc00ULL, "misaligned or out of range" },
		{ GOLD_QUEUE + 23, 8, 0xfffffffffffffc00ULL, "misaligned or out of range" },
		{ GOLD_DISK + 0, 8, UINT64_MAX, "capacity of" },
		{ GOLD_DISK + 8, 1, 2, "readonly is 2" },
		{ 4, 4, 44, "malformed" },
		{ 4, 4, 46, "malformed" },
		{ GOLD_DISK - 4, 4, 10, "malformed" },
		{ GOLD_DISK - 8, 2, 1, "field 1 twice" },
		{ GOLD_DISK - 8, 2, 9, "field 9: unknown required" },
		{ GOLD_DISK - 6, 2, 2, "malformed" },
	};
	struct virtio_blk_state *st = calloc(1, sizeof(*st));
	uint8_t body[sizeof(blk_golden)];
	char err[256];
	size_t i, k;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(patches); i++) {
		memcpy(body, blk_golden, sizeof(body));
		for (k = 0; k < patches[i].len; k++)
			body[patches[i].off + k] = (uint8_t)(patches[i].val >> (8 * k));
		err[0] = 0;
		if (decode_blk(body, sizeof(body), VMSTATE_VIRTIO_VERSION, STREAM_VERSION_MINOR,
			       st, err, sizeof(err)) != -EBADMSG ||
		    !strstr(err, patches[i].why))
			fail_msg("patch %zu: \"%s\" does not say \"%s\"", i, err, patches[i].why);
	}
	/* An unknown field marked optional is skipped. */
	memcpy(body, blk_golden, sizeof(body));
	body[GOLD_DISK - 8] = 9;
	body[GOLD_DISK - 6] = STREAM_TLV_OPTIONAL;
	assert_int_equal(decode_blk(body, sizeof(body), VMSTATE_VIRTIO_VERSION,
				    STREAM_VERSION_MINOR, st, err, sizeof(err)),
			 -EBADMSG);
	assert_non_null(strstr(err, "field 3 missing"));
	/* Well-formed fields of the wrong size. */
	for (i = 0; i < 3; i++) {
		static const size_t at[] = { 8, 61, 100 }, len[] = { 45, 31, 9 };
		struct stream_tlv_writer tw;

		stream__tlv_writer_init(&tw);
		for (k = 0; k < 3; k++)
			stream__tlv_put_bytes(&tw, (uint16_t)(k + 1), 0, blk_golden + at[k],
					      len[k] - (k == i));
		assert_int_equal(decode_blk(tw.buf, tw.len, VMSTATE_VIRTIO_VERSION,
					    STREAM_VERSION_MINOR, st, err, sizeof(err)),
				 -EBADMSG);
		assert_non_null(strstr(err, i == 0 ? "transport field of 44 bytes" :
					    i == 1 ? "queue field of 30 bytes for 1 queues" :
						     "device field of 8 bytes"));
		stream__tlv_writer_exit(&tw);
	}
	free(st);
}

static void test_virtio_net_bad_values(void **state)
{
	struct virtio_net_state *good = calloc(1, sizeof(*good)), *st = calloc(1, sizeof(*st));
	static const struct patch patches[] = {
		{ 0, 1, 0x53, "not a unicast address" },
		{ 0, 6, 0, "not a unicast address" },
		{ 6, 2, 4, "unknown link status bits 0x4" },
		{ 8, 1, 2, "have_ipv4 is 2" },
		{ 8, 1, 0, "an IPv4 address without have_ipv4" },
	};
	struct stream_tlv_writer tw;
	char err[256];
	size_t i, k;

	(void)state;
	net_state(good);
	stream__tlv_writer_init(&tw);
	assert_int_equal(vmstate__encode_virtio_net(&tw, good, err, sizeof(err)), 0);
	for (i = 0; i < ARRAY_SIZE(patches); i++) {
		uint8_t *body = malloc(tw.len);

		memcpy(body, tw.buf, tw.len);
		for (k = 0; k < patches[i].len; k++)
			body[162 + patches[i].off + k] = (uint8_t)(patches[i].val >> (8 * k));
		err[0] = 0;
		if (decode_net(body, tw.len, VMSTATE_VIRTIO_VERSION, STREAM_VERSION_MINOR, st, err,
			       sizeof(err)) != -EBADMSG ||
		    !strstr(err, patches[i].why))
			fail_msg("patch %zu: \"%s\" does not say \"%s\"", i, err, patches[i].why);
		free(body);
	}
	/* A blk body is no net body. */
	assert_int_equal(decode_net(blk_golden, sizeof(blk_golden), VMSTATE_VIRTIO_VERSION,
				    STREAM_VERSION_MINOR, st, err, sizeof(err)),
			 -EBADMSG);
	stream__tlv_writer_exit(&tw);
	free(good);
	free(st);
}

static void test_virtio_version_follows_the_stream_minor(void **state)
{
	struct virtio_blk_state *st = calloc(1, sizeof(*st));
	char err[256];

	(void)state;
	/* A version-2 body in a stream that says 1.5 (which wrote version 1). */
	assert_int_equal(decode_blk(blk_golden, sizeof(blk_golden), VMSTATE_VIRTIO_VERSION,
				    VMSTATE_VIRTIO_MINOR - 1, st, err, sizeof(err)),
			 -EPROTO);
	assert_non_null(strstr(err, "section version 2 in a format 1.5 stream"));
	assert_int_equal(decode_blk(blk_golden, sizeof(blk_golden), VMSTATE_VIRTIO_RAW_VERSION,
				    VMSTATE_VIRTIO_MINOR, st, err, sizeof(err)),
			 -EPROTO);
	assert_int_equal(decode_blk(blk_golden, sizeof(blk_golden), 3, STREAM_VERSION_MINOR, st,
				    err, sizeof(err)),
			 -EPROTO);
	assert_int_equal(decode_blk(blk_golden, sizeof(blk_golden), VMSTATE_VIRTIO_VERSION,
				    VMSTATE_VIRTIO_MINOR + 7, st, err, sizeof(err)),
			 0);
	free(st);
}

/*
 * Format <= 1.5: one field of 712 bytes, the x86-64 image of the struct of then. Built
 * here at the documented offsets, with every padding byte 0xee (which is ignored).
 */
static void put_raw(uint8_t *p, size_t off, unsigned int len, uint64_t v)
{
	unsigned int k;

	for (k = 0; k < len; k++)
		p[off + k] = (uint8_t)(v >> (8 * k));
}

static void raw_transport(uint8_t *p, const struct virtio_mmio_state *t)
{
	unsigned int i;

	put_raw(p, 0, 4, t->device_id);
	put_raw(p, 4, 4, t->nr_queues);
	put_raw(p, 8, 1, t->status);
	put_raw(p, 12, 4, t->interrupt_status);
	put_raw(p, 16, 4, t->config_generation);
	put_raw(p, 20, 4, t->device_features_sel);
	put_raw(p, 24, 4, t->driver_features_sel);
	put_raw(p, 32, 8, t->device_features);
	put_raw(p, 40, 8, t->driver_features);
	put_raw(p, 48, 4, t->queue_sel);
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		const struct virtq_state *q = &t->queues[i];
		size_t o = 56 + 40 * i;

		put_raw(p, o, 2, q->num);
		put_raw(p, o + 2, 1, q->ready);
		put_raw(p, o + 8, 8, q->desc);
		put_raw(p, o + 16, 8, q->driver);
		put_raw(p, o + 24, 8, q->device);
		put_raw(p, o + 32, 2, q->last_avail_idx);
		put_raw(p, o + 34, 2, q->used_idx);
	}
}

static const uint8_t raw_padding[][2] = {
	{ 9, 3 }, { 28, 4 }, { 52, 4 } /* transport */, { 3, 5 }, { 36, 4 } /* each queue */
};

static void pad_raw(uint8_t *p)
{
	unsigned int i, q;

	for (i = 0; i < 3; i++)
		memset(p + raw_padding[i][0], 0xee, raw_padding[i][1]);
	for (q = 0; q < VIRTIO_MAX_QUEUES; q++)
		for (i = 3; i < 5; i++)
			memset(p + 56 + 40 * q + raw_padding[i][0], 0xee, raw_padding[i][1]);
}

static size_t raw_body(uint8_t *body, const uint8_t *raw)
{
	memcpy(body, "\x01\x00\x00\x00\xc8\x02\x00\x00", 8); /* field 1, 712 bytes */
	memcpy(body + 8, raw, 712);
	return 720;
}

static void test_virtio_reads_the_raw_layout_of_format_1_5(void **state)
{
	struct virtio_blk_state *blk = calloc(1, sizeof(*blk)), *b2 = calloc(1, sizeof(*b2));
	struct virtio_net_state *net = calloc(1, sizeof(*net)), *n2 = calloc(1, sizeof(*n2));
	uint8_t raw[712], body[720];
	char err[256] = "";
	size_t len;

	(void)state;
	blk_state(blk);
	memset(raw, 0, sizeof(raw));
	raw_transport(raw, &blk->transport);
	pad_raw(raw);
	put_raw(raw, 696, 8, blk->capacity);
	put_raw(raw, 704, 1, blk->readonly);
	memset(raw + 705, 0xee, 7);
	len = raw_body(body, raw);
	assert_int_equal(decode_blk(body, len, VMSTATE_VIRTIO_RAW_VERSION, 5, b2, err,
				    sizeof(err)),
			 0);
	assert_memory_equal(blk, b2, sizeof(*blk));
	/* The same checks hold: a bad queue size, a cut field. */
	put_raw(raw, 56, 2, 3);
	raw_body(body, raw);
	assert_int_equal(decode_blk(body, len, VMSTATE_VIRTIO_RAW_VERSION, 5, b2, err,
				    sizeof(err)),
			 -EBADMSG);
	assert_non_null(strstr(err, "queue 0: size 3"));
	assert_int_equal(decode_blk(body, len - 1, VMSTATE_VIRTIO_RAW_VERSION, 5, b2, err,
				    sizeof(err)),
			 -EBADMSG);
	/* A queue past nr_queues must be empty. */
	put_raw(raw, 56, 2, 256);
	put_raw(raw, 56 + 40 * 5 + 8, 8, 0x1000);
	raw_body(body, raw);
	assert_int_equal(decode_blk(body, len, VMSTATE_VIRTIO_RAW_VERSION, 5, b2, err,
				    sizeof(err)),
			 -EBADMSG);
	assert_non_null(strstr(err, "state for queue 5 that does not exist"));

	net_state(net);
	memset(raw, 0, sizeof(raw));
	memcpy(raw, net->mac, 6);
	put_raw(raw, 6, 2, net->status);
	put_raw(raw, 8, 1, net->have_ipv4);
	memcpy(raw + 9, net->ipv4, 4);
	memset(raw + 13, 0xee, 3);
	raw_transport(raw + 16, &net->transport);
	pad_raw(raw + 16);
	len = raw_body(body, raw);
	assert_int_equal(decode_net(body, len, VMSTATE_VIRTIO_RAW_VERSION, 5, n2, err,
				    sizeof(err)),
			 0);
	assert_memory_equal(net, n2, sizeof(*net));
	/* Format 1.5 copied the address whatever have_ipv4 said: dropped without it. */
	put_raw(raw, 8, 1, 0);
	raw_body(body, raw);
	assert_int_equal(decode_net(body, len, VMSTATE_VIRTIO_RAW_VERSION, 5, n2, err,
				    sizeof(err)),
			 0);
	assert_int_equal(n2->have_ipv4, 0);
	assert_memory_equal(n2->ipv4, "\0\0\0\0", 4);
	put_raw(raw, 16, 4, VIRTIO_ID_BLK);
	raw_body(body, raw);
	assert_int_equal(decode_net(body, len, VMSTATE_VIRTIO_RAW_VERSION, 5, n2, err,
				    sizeof(err)),
			 -EBADMSG);
	assert_non_null(strstr(err, "device id 2, expected 1"));
	free(blk);
	free(b2);
	free(net);
	free(n2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vcpu_round_trip),
		cmocka_unit_test(test_vm_and_serial_round_trip),
		cmocka_unit_test(test_vcpu_rejections),
		cmocka_unit_test(test_vm_section_twice_and_unknown),
		cmocka_unit_test(test_virtio_blk_golden_bytes),
		cmocka_unit_test(test_virtio_net_golden_bytes),
		cmocka_unit_test(test_virtio_round_trip_through_a_stream),
		cmocka_unit_test(test_virtio_encoder_refuses_bad_state),
		cmocka_unit_test(test_virtio_truncated_bodies),
		cmocka_unit_test(test_virtio_blk_bad_values),
		cmocka_unit_test(test_virtio_net_bad_values),
		cmocka_unit_test(test_virtio_version_follows_the_stream_minor),
		cmocka_unit_test(test_virtio_reads_the_raw_layout_of_format_1_5),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
