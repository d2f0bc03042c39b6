// SPDX-License-Identifier: GPL-2.0
/*
 * The destination's STATE decoders on arbitrary section bodies: the first byte
 * picks the section kind (and for virtio the section version and the stream's
 * minor), the rest is the TLV body. None may crash, read out of bounds or leak,
 * whatever the bytes; a virtio state they accept must hold the limits a device
 * relies on and come back unchanged through the encoder.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/vmstate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_transport(const struct virtio_mmio_state *t)
{
	unsigned int i;

	if (!t->nr_queues || t->nr_queues > VIRTIO_MAX_QUEUES ||
	    (t->driver_features & ~t->device_features) || (t->status & 0x30) ||
	    (t->interrupt_status & ~3U))
		abort();
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		const struct virtq_state *q = &t->queues[i];

		if (i >= t->nr_queues && (q->num || q->ready || q->desc || q->driver || q->device))
			abort();
		if (q->ready > 1 || q->num > VIRTQ_MAX_SIZE || (q->num & (q->num - 1)))
			abort();
		if (q->ready && (!q->num || (q->desc & 15) || (q->driver & 1) || (q->device & 3) ||
				 q->desc >= STREAM_GPA_LIMIT || q->driver >= STREAM_GPA_LIMIT ||
				 q->device >= STREAM_GPA_LIMIT ||
				 (uint16_t)(q->last_avail_idx - q->used_idx) > q->num))
			abort();
	}
}

/* Encodes st again (version 2) and decodes that: the same state must come back. */
static void round_trip(const void *st, size_t size, bool blk)
{
	struct stream_tlv_writer tw;
	struct stream_tlv_reader tr;
	char err[256];
	void *again = malloc(size);
	int ret;

	if (!again)
		return;
	stream__tlv_writer_init(&tw);
	ret = blk ? vmstate__encode_virtio_blk(&tw, st, err, sizeof(err)) :
		    vmstate__encode_virtio_net(&tw, st, err, sizeof(err));
	if (ret == -ENOMEM)
		goto out;
	if (ret)
		abort();
	stream__tlv_reader_init(&tr, tw.buf, tw.len);
	ret = blk ? vmstate__get_virtio_blk(&tr, VMSTATE_VIRTIO_VERSION, STREAM_VERSION_MINOR,
					    again, err, sizeof(err)) :
		    vmstate__get_virtio_net(&tr, VMSTATE_VIRTIO_VERSION, STREAM_VERSION_MINOR,
					    again, err, sizeof(err));
	if (ret || memcmp(st, again, size))
		abort();
out:
	stream__tlv_writer_exit(&tw);
	free(again);
}

static void fuzz_virtio(uint8_t sel, struct stream_tlv_reader *tr)
{
	uint32_t version = sel & 8 ? VMSTATE_VIRTIO_VERSION : VMSTATE_VIRTIO_RAW_VERSION;
	uint16_t minor = sel & 16 ? STREAM_VERSION_MINOR : VMSTATE_VIRTIO_MINOR - 1;
	struct virtio_blk_state *blk;
	struct virtio_net_state *net;
	char err[256];

	if ((sel & 7) == 6) {
		blk = malloc(sizeof(*blk));
		if (blk && !vmstate__get_virtio_blk(tr, version, minor, blk, err, sizeof(err))) {
			check_transport(&blk->transport);
			if (blk->readonly > 1 || blk->transport.device_id != VIRTIO_ID_BLK)
				abort();
			round_trip(blk, sizeof(*blk), true);
		}
		free(blk);
	} else {
		net = malloc(sizeof(*net));
		if (net && !vmstate__get_virtio_net(tr, version, minor, net, err, sizeof(err))) {
			check_transport(&net->transport);
			if (net->have_ipv4 > 1 || (net->mac[0] & 1) || (net->status & ~3U) ||
			    net->transport.device_id != VIRTIO_ID_NET)
				abort();
			round_trip(net, sizeof(*net), false);
		}
		free(net);
	}
}

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
	switch (data[0] % 8) {
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
	case 6:
	case 7:
		fuzz_virtio(data[0], &tr);
		break;
	default:
		(void)vmstate__get_vm(vm_ids[data[0] % 4], (data[0] >> 4) & 1, &tr, &vms, &seen, err,
				      sizeof(err));
		break;
	}
	return 0;
}
