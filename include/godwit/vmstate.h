/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_VMSTATE_H
#define GODWIT_VMSTATE_H

#include "godwit/serial8250.h"
#include "godwit/stream.h"
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
 * virtio devices: one blob field, the device's own plain state struct, checked
 * for its exact size here and validated as hostile input by the device's load.
 */
int __must_check vmstate__put_blob(struct stream_writer *w, const char *id, uint32_t instance,
				   const void *st, size_t size);
int __must_check vmstate__get_blob(struct stream_tlv_reader *body, void *st, size_t size,
				   char *err, size_t errlen);

#endif
