// SPDX-License-Identifier: GPL-2.0
/*
 * The destination's STATE decoders on arbitrary section bodies: the first byte
 * picks the section kind, the rest is the TLV body. None may crash, read out of
 * bounds or leak, whatever the bytes.
 */
#include <stdint.h>
#include <stdlib.h>

#include "godwit/vmstate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const vm_ids[] = { "pic", "ioapic", "pit", "kvmclock" };
	struct x86_vcpu_state *vcpu;
	struct serial8250_state *ser;
	struct stream_tlv_reader tr;
	struct x86_vm_state vms;
	unsigned int seen = 0;
	char err[256];

	if (size < 1)
		return 0;
	stream__tlv_reader_init(&tr, data + 1, size - 1);
	switch (data[0] % 6) {
	case 0:
		vcpu = malloc(sizeof(*vcpu));
		if (vcpu && vmstate__get_vcpu(&tr, vcpu, err, sizeof(err)) == 0 &&
		    vcpu->nr_msrs > X86_MAX_MSRS)
			abort();
		free(vcpu);
		break;
	case 1:
		ser = malloc(sizeof(*ser));
		if (ser && vmstate__get_serial(&tr, ser, err, sizeof(err)) == 0 &&
		    ser->rx_len > sizeof(ser->rx))
			abort();
		free(ser);
		break;
	default:
		(void)vmstate__get_vm(vm_ids[data[0] % 4], (data[0] >> 4) & 1, &tr, &vms, &seen, err,
				      sizeof(err));
		break;
	}
	return 0;
}
