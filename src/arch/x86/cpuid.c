// SPDX-License-Identifier: GPL-2.0
#include <cpuid.h>
#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/x86.h"

#define CPUID_1_ECX_HYPERVISOR (1U << 31)

void x86__cpuid_patch(struct kvm_cpuid2 *c, unsigned int id, unsigned int nr_vcpus)
{
	uint32_t i;

	for (i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 1:
			/* Initial APIC ID and the logical processor count of the package. */
			e->ebx = (e->ebx & 0x0000ffffU) | (id << 24) | ((nr_vcpus & 0xff) << 16);
			e->ecx |= CPUID_1_ECX_HYPERVISOR;
			break;
		case 0xb:
		case 0x1f:
			/* x2APIC ID of this vCPU, on every sub-leaf. */
			e->edx = id;
			break;
		default:
			break;
		}
	}
}

int x86__setup_cpuid(struct kvm *kvm, struct kvm_vcpu_fd *v, unsigned int id,
		     unsigned int nr_vcpus)
{
	struct kvm_cpuid2 *c;
	int ret;

	ret = kvm__supported_cpuid(kvm, &c);
	if (ret)
		return ret;
	x86__cpuid_patch(c, id, nr_vcpus);
	ret = kvm_vcpu__set_cpuid(v, c);
	free(c);
	return ret;
}

/*
 * The CPU features a guest can see, as 24-byte records {function, index, eax,
 * ebx, ecx, edx}. On kvm_pvm the guest sees the host's own CPUID whatever KVM
 * was told, so that is what is recorded; on hardware KVM it is what godwit set.
 */
static const struct {
	uint32_t function, index;
} feature_leaves[] = {
	{ 0x1, 0 }, { 0x7, 0 }, { 0x7, 1 }, { 0xd, 1 }, { 0x80000001, 0 }, { 0x80000007, 0 },
	{ 0x80000008, 0 },
};

#define CPU_RECORD_LEN 24

static void put_record(uint8_t *p, const uint32_t r[6])
{
	int i;

	for (i = 0; i < 6; i++) {
		uint32_t v = htole32(r[i]);

		memcpy(p + 4 * i, &v, 4);
	}
}

static void get_record(const uint8_t *p, uint32_t r[6])
{
	int i;

	for (i = 0; i < 6; i++) {
		memcpy(&r[i], p + 4 * i, 4);
		r[i] = le32toh(r[i]);
	}
}

static void leaf_from_kvm(const struct kvm_cpuid2 *c, uint32_t f, uint32_t idx, uint32_t r[6])
{
	uint32_t i;

	r[0] = f;
	r[1] = idx;
	r[2] = r[3] = r[4] = r[5] = 0;
	for (i = 0; c && i < c->nent; i++) {
		if (c->entries[i].function == f && c->entries[i].index == idx) {
			r[2] = c->entries[i].eax;
			r[3] = c->entries[i].ebx;
			r[4] = c->entries[i].ecx;
			r[5] = c->entries[i].edx;
		}
	}
}

int x86__cpu_signature(struct kvm *kvm, uint8_t **out, size_t *len)
{
	size_t i, n = ARRAY_SIZE(feature_leaves);
	struct kvm_cpuid2 *c = NULL;
	uint8_t *buf;
	int ret;

	if (!kvm->is_pvm) {
		ret = kvm__supported_cpuid(kvm, &c);
		if (ret)
			return ret;
	}
	buf = calloc(n, CPU_RECORD_LEN);
	if (!buf) {
		free(c);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		uint32_t r[6] = { feature_leaves[i].function, feature_leaves[i].index };

		if (c)
			leaf_from_kvm(c, r[0], r[1], r);
		else
			__cpuid_count(r[0], r[1], r[2], r[3], r[4], r[5]);
		if (r[0] == 1)
			r[3] &= 0x0000ffffU; /* APIC ID and CPU count differ per vCPU */
		put_record(buf + i * CPU_RECORD_LEN, r);
	}
	free(c);
	*out = buf;
	*len = n * CPU_RECORD_LEN;
	return 0;
}

/*
 * Every feature bit the source's guest could see must be there on the
 * destination. EAX holds flags only in leaf 7.1 (elsewhere: model, sizes, max
 * sub-leaf), so it is compared there alone. Names the first missing bit.
 */
int x86__cpu_compatible(const uint8_t *src, size_t src_len, const uint8_t *dst, size_t dst_len,
			char *err, size_t errlen)
{
	static const char *const regs[] = { "eax", "ebx", "ecx", "edx" };
	uint32_t a[6], b[6];
	size_t i, j;
	int k;

	if (src_len % CPU_RECORD_LEN || dst_len % CPU_RECORD_LEN) {
		snprintf(err, errlen, "malformed CPU description");
		return -EINVAL;
	}
	for (i = 0; i < src_len / CPU_RECORD_LEN; i++) {
		bool found = false;

		get_record(src + i * CPU_RECORD_LEN, a);
		for (j = 0; j < dst_len / CPU_RECORD_LEN && !found; j++) {
			get_record(dst + j * CPU_RECORD_LEN, b);
			found = a[0] == b[0] && a[1] == b[1];
		}
		if (!found)
			b[2] = b[3] = b[4] = b[5] = 0;
		for (k = (a[0] == 7 && a[1] == 1) ? 0 : 1; k < 4; k++) {
			uint32_t missing = a[2 + k] & ~b[2 + k];

			if (a[0] == 1 && k == 1)
				missing &= 0xffff0000U; /* brand index, CLFLUSH size: not features */
			if (missing) {
				snprintf(err, errlen,
					 "the destination CPU lacks features the guest sees: CPUID "
					 "leaf 0x%x.%u %s bit %d (mask 0x%08x)",
					 a[0], a[1], regs[k], __builtin_ctz(missing), missing);
				return -EOPNOTSUPP;
			}
		}
	}
	return 0;
}
