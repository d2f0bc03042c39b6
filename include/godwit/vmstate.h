/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_VMSTATE_H
#define GODWIT_VMSTATE_H

#include "godwit/serial8250.h"
#include "godwit/stream.h"
#include "godwit/virtio_blk.h"
#include "godwit/virtio_net.h"
#include "godwit/x86_state.h"

/*
 * STATE sections: how each device's plain state struct becomes TLV fields and
 * back. Decoders check every field's presence and exact length; what a field
 * holds is then checked by the device (serial8250__load) or by KVM.
 */
#define VMSTATE_VERSION 1

int __must_check vmstate__put_vcpu(struct stream_writer *w, unsigned int id,
				   const struct x86_vcpu_state *st);
int __must_check vmstate__get_vcpu(struct stream_tlv_reader *body, struct x86_vcpu_state *st,
				   char *err, size_t errlen);
int __must_check vmstate__put_vm(struct stream_writer *w, const struct x86_vm_state *st);
/* The four VM-wide sections arrive separately; each fills its part of st. */
int __must_check vmstate__get_vm(const char *id, uint32_t instance, struct stream_tlv_reader *body,
				 struct x86_vm_state *st, unsigned int *seen, char *err,
				 size_t errlen);
#define VMSTATE_SEEN_VM_ALL 0x1f
int __must_check vmstate__put_serial(struct stream_writer *w, const struct serial8250_state *st);
int __must_check vmstate__get_serial(struct stream_tlv_reader *body, struct serial8250_state *st,
				     char *err, size_t errlen);

/*
 * virtio-blk and virtio-net sections. From format 1.6 (section version 2) every field
 * is written on its own, little-endian, with no padding; a stream of format 1.5 or
 * older carries version 1, the x86-64 image of the state struct as it was then,
 * which is still read, field by field from its known offsets. The decoders check
 * the section version against the stream's minor, the fields' presence and
 * lengths, and every value against what a virtio device can hold at all (queue
 * count and sizes, ring alignment and range, ring indices, known status and
 * interrupt bits, negotiated features a subset of offered ones, booleans, the
 * MAC); the device's load then checks it against itself and the VM's RAM. 0 or
 * -EBADMSG (-EPROTO for a version mismatch) with the reason in err.
 */
#define VMSTATE_VIRTIO_VERSION	   2
#define VMSTATE_VIRTIO_RAW_VERSION 1 /* format <= 1.5 */
#define VMSTATE_VIRTIO_MINOR	   6 /* the first stream minor with version 2 */

/* The version-2 body into tw; -EINVAL (reason in err) if st would not decode. */
int __must_check vmstate__encode_virtio_blk(struct stream_tlv_writer *tw,
					    const struct virtio_blk_state *st, char *err,
					    size_t errlen);
int __must_check vmstate__encode_virtio_net(struct stream_tlv_writer *tw,
					    const struct virtio_net_state *st, char *err,
					    size_t errlen);
/* A whole "virtio-blk" / "virtio-net" STATE record; a refusal's reason is in w->err. */
int __must_check vmstate__put_virtio_blk(struct stream_writer *w, uint32_t instance,
					 const struct virtio_blk_state *st);
int __must_check vmstate__put_virtio_net(struct stream_writer *w, uint32_t instance,
					 const struct virtio_net_state *st);
/* version: the section header's; minor: the stream header's. st is zeroed first. */
int __must_check vmstate__get_virtio_blk(struct stream_tlv_reader *body, uint32_t version,
					 uint16_t minor, struct virtio_blk_state *st, char *err,
					 size_t errlen);
int __must_check vmstate__get_virtio_net(struct stream_tlv_reader *body, uint32_t version,
					 uint16_t minor, struct virtio_net_state *st, char *err,
					 size_t errlen);

#endif
