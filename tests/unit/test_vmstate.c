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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vcpu_round_trip),
		cmocka_unit_test(test_vm_and_serial_round_trip),
		cmocka_unit_test(test_vcpu_rejections),
		cmocka_unit_test(test_vm_section_twice_and_unknown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
