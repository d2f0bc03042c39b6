/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_STREAM_CHECK_H
#define GODWIT_STREAM_CHECK_H

#include "godwit/stream.h"
#include "godwit/virtio_blk.h"
#include "godwit/virtio_net.h"
#include "godwit/vm.h"
#include "godwit/vmstate.h"

/* CONFIG's machine_version: the one machine (board, layout, devices) godwit builds. */
#define STREAM_MACHINE_VERSION 1

/*
 * What a destination checks of a stream beyond its framing, wherever it runs: the
 * VM CONFIG asks for, and the STATE sections decoded into what the restore loads.
 * The destination (dest.c) and dump-stream both go through it, so that a stream
 * dump-stream accepts is one a destination accepts, unless this host cannot give
 * what it asks (memory, CPU features, backends) or KVM or a device's load refuses a
 * value.
 */
struct stream_check {
	const struct stream_config *cfg;
	uint16_t minor; /* the stream header's: which virtio section versions it may carry */
	unsigned int nr_disks, nr_nets;
	struct x86_vcpu_state *vcpus; /* [cfg->nr_vcpus] */
	bool vcpu_seen[VM_MAX_VCPUS];
	struct x86_vm_state vms;
	unsigned int vm_seen;
	struct serial8250_state *serial;
	bool serial_seen;
	struct virtio_blk_state blk[VM_MAX_DISKS];
	struct virtio_net_state net[VM_MAX_NETS];
	bool blk_seen[VM_MAX_DISKS], net_seen[VM_MAX_NETS];
	/* Disks whose image comes in the stream (CONFIG's disk_to), by instance. */
	bool disk_in[VM_MAX_DISKS];
	uint64_t disk_size[VM_MAX_DISKS]; /* the capacity CONFIG announced */
	bool disk_done[VM_MAX_DISKS];	  /* its DONE came */
	bool disk_has_digest[VM_MAX_DISKS]; /* --verify: its DIGEST came (after DONE) */
	uint64_t disk_digest[VM_MAX_DISKS];
};

/*
 * Checks cfg against what godwit runs (vCPUs, memory, machine version, CPUID, known
 * devices) and readies c for the STATE sections of a stream of this minor version;
 * cfg must outlive c. 0 or -errno with why set.
 */
int __must_check stream_check__config(struct stream_check *c, const struct stream_config *cfg,
				      uint16_t minor, char *why, size_t whylen);
/* One STATE record: decoded into c, or -errno with why set (the record is named). */
int __must_check stream_check__state(struct stream_check *c, const struct stream_record *rec,
				     char *why, size_t whylen);
/*
 * One DISK record, decoded into *d: the disk is one whose image comes in the stream,
 * the range lies within the size CONFIG announced, DONE once per disk and before the
 * final phase. 0 or -errno with why set.
 */
int __must_check stream_check__disk(struct stream_check *c, const struct stream_record *rec,
				    struct stream_disk *d, char *why, size_t whylen);
/* At END: every vCPU, VM-wide section, the UART and every device came, every incoming disk
 * complete (DONE). 0 or -EBADMSG. */
int __must_check stream_check__complete(const struct stream_check *c, char *why, size_t whylen);
/* After END in a file: nothing may follow. 0, or -EBADMSG / -errno with why set. */
int __must_check stream_check__file_ends(struct stream_io *io, char *why, size_t whylen);
void stream_check__exit(struct stream_check *c);

#endif
