// SPDX-License-Identifier: GPL-2.0
/*
 * The checks a destination makes of a stream that do not depend on the host, shared
 * with dump-stream (stream_check.h). The stream is hostile input.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/stream_check.h"

static int check_devices(struct stream_check *c, char *why, size_t whylen)
{
	const struct stream_config *cfg = c->cfg;
	unsigned int i, serials = 0;

	for (i = 0; i < cfg->nr_devices; i++) {
		const char *type = cfg->devices[i].type;

		if (!strcmp(type, "virtio-blk") && cfg->devices[i].disk_to[0]) {
			unsigned int n = cfg->devices[i].instance;

			/* DISK records name it by instance: the one the destination builds. */
			if (n != c->nr_disks || n >= VM_MAX_DISKS) {
				snprintf(why, whylen, "disk %u comes in the stream but is disk %u "
					 "of the VM", n, c->nr_disks);
				return -EINVAL;
			}
			c->disk_in[n] = true;
			c->disk_size[n] = cfg->devices[i].capacity;
		}
		if (!strcmp(type, "virtio-blk"))
			c->nr_disks++;
		else if (!strcmp(type, "virtio-net"))
			c->nr_nets++;
		else if (!strcmp(type, "serial"))
			serials++;
		else {
			snprintf(why, whylen, "the VM has a device this godwit does not know: %.31s",
				 type);
			return -EINVAL;
		}
	}
	if (c->nr_disks > VM_MAX_DISKS || c->nr_nets > VM_MAX_NETS || serials > 1) {
		snprintf(why, whylen,
			 "the VM has %u disks, %u network cards and %u serial ports; godwit runs "
			 "at most %u, %u and 1",
			 c->nr_disks, c->nr_nets, serials, VM_MAX_DISKS, VM_MAX_NETS);
		return -EINVAL;
	}
	return 0;
}

int stream_check__config(struct stream_check *c, const struct stream_config *cfg, uint16_t minor,
			 char *why, size_t whylen)
{
	memset(c, 0, sizeof(*c));
	c->cfg = cfg;
	c->minor = minor;
	if (cfg->nr_vcpus < 1 || cfg->nr_vcpus > VM_MAX_VCPUS || cfg->ram_size < VM_MIN_MEMORY ||
	    cfg->ram_size > VM_MAX_MEMORY || cfg->ram_size % (2 * MiB)) {
		snprintf(why, whylen,
			 "the incoming VM (%u vCPUs, %llu MiB) is outside what godwit runs (1..%u "
			 "vCPUs, %llu MiB..%llu GiB in 2 MiB steps)",
			 cfg->nr_vcpus, (unsigned long long)(cfg->ram_size >> 20), VM_MAX_VCPUS,
			 (unsigned long long)(VM_MIN_MEMORY >> 20),
			 (unsigned long long)(VM_MAX_MEMORY >> 30));
		return -EINVAL;
	}
	if (cfg->machine_version != STREAM_MACHINE_VERSION) {
		snprintf(why, whylen, "machine version %u; this godwit builds version %u",
			 cfg->machine_version, STREAM_MACHINE_VERSION);
		return -EINVAL;
	}
	/* Without the CPUID the guest saw there is nothing to check this host's CPU against. */
	if (!cfg->cpuid_len) {
		snprintf(why, whylen, "the stream does not say which CPU features the guest saw");
		return -EINVAL;
	}
	if (check_devices(c, why, whylen))
		return -EINVAL;
	c->vcpus = calloc(cfg->nr_vcpus, sizeof(*c->vcpus));
	c->serial = calloc(1, sizeof(*c->serial));
	if (!c->vcpus || !c->serial) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

static int take_device(struct stream_check *c, const struct stream_state_hdr *hdr,
		       struct stream_tlv_reader *body, char *why, size_t whylen)
{
	bool blk = !strcmp(hdr->id, "virtio-blk");
	unsigned int n = blk ? c->nr_disks : c->nr_nets;
	bool *seen = blk ? c->blk_seen : c->net_seen;
	int ret;

	if (hdr->instance >= n || seen[hdr->instance]) {
		snprintf(why, whylen, "no such device, or sent twice");
		return -EBADMSG;
	}
	ret = blk ? vmstate__get_virtio_blk(body, hdr->version, c->minor, &c->blk[hdr->instance],
					    why, whylen)
		  : vmstate__get_virtio_net(body, hdr->version, c->minor, &c->net[hdr->instance],
					    why, whylen);
	seen[hdr->instance] = !ret;
	return ret;
}

static int take_vcpu(struct stream_check *c, const struct stream_state_hdr *hdr,
		     struct stream_tlv_reader *body, char *why, size_t whylen)
{
	struct x86_vcpu_state *st;
	int ret;

	if (hdr->instance >= c->cfg->nr_vcpus || c->vcpu_seen[hdr->instance]) {
		snprintf(why, whylen, "vCPU %u unexpected", hdr->instance);
		return -EBADMSG;
	}
	st = &c->vcpus[hdr->instance];
	ret = vmstate__get_vcpu(body, st, why, whylen);
	/* A source saves at least the TSC: a vCPU without MSRs would run with KVM's reset values. */
	if (!ret && !st->nr_msrs) {
		snprintf(why, whylen, "a vCPU without MSRs");
		ret = -EBADMSG;
	}
	c->vcpu_seen[hdr->instance] = !ret;
	return ret;
}

int stream_check__state(struct stream_check *c, const struct stream_record *rec, char *why,
			size_t whylen)
{
	struct stream_state_hdr hdr;
	struct stream_tlv_reader body;
	char what[200] = "";
	bool virtio;
	int ret;

	ret = stream__state_parse(rec->payload, rec->length, &hdr, &body, what, sizeof(what));
	if (ret) {
		/* No header to name: it is what failed to parse. */
		snprintf(why, whylen, "bad STATE record %llu: %s", (unsigned long long)rec->index,
			 what[0] ? what : strerror(-ret));
		return ret < 0 ? ret : -EBADMSG;
	}
	virtio = !strcmp(hdr.id, "virtio-blk") || !strcmp(hdr.id, "virtio-net");
	/* virtio sections have versions of their own, checked against the stream's minor. */
	if (!virtio && hdr.version != VMSTATE_VERSION) {
		snprintf(what, sizeof(what), "version %u, this godwit reads %u", hdr.version,
			 VMSTATE_VERSION);
		ret = -EPROTO;
	} else if (!strcmp(hdr.id, "vcpu")) {
		ret = take_vcpu(c, &hdr, &body, what, sizeof(what));
	} else if (virtio) {
		ret = take_device(c, &hdr, &body, what, sizeof(what));
	} else if (!strcmp(hdr.id, "serial") && hdr.instance == 0 && !c->serial_seen) {
		ret = vmstate__get_serial(&body, c->serial, what, sizeof(what));
		c->serial_seen = !ret;
	} else {
		ret = vmstate__get_vm(hdr.id, hdr.instance, &body, &c->vms, &c->vm_seen, what,
				      sizeof(what));
		if (ret == -ENOENT)
			snprintf(what, sizeof(what), "unknown or repeated section");
	}
	if (!ret)
		return 0;
	snprintf(why, whylen, "bad state section '%.31s'/%u (record %llu): %s", hdr.id,
		 hdr.instance, (unsigned long long)rec->index, what);
	return ret < 0 ? ret : -EBADMSG;
}

int stream_check__disk(struct stream_check *c, const struct stream_record *rec,
		       struct stream_disk *d, char *why, size_t whylen)
{
	char bad[160] = "";
	uint64_t size;

	if (stream__disk_decode(rec->payload, rec->length, d, bad, sizeof(bad)))
		goto err;
	if (d->disk >= VM_MAX_DISKS || !c->disk_in[d->disk]) {
		snprintf(bad, sizeof(bad), "disk %u is not one whose image the stream carries",
			 d->disk);
		goto err;
	}
	size = c->disk_size[d->disk];
	/* Compared without adding the peer's numbers: no wrap-around. */
	if (d->offset > size || d->length > size - d->offset) {
		snprintf(bad, sizeof(bad), "disk %u: %llu bytes at %llu, past its size %llu",
			 d->disk, (unsigned long long)d->length, (unsigned long long)d->offset,
			 (unsigned long long)size);
		goto err;
	}
	if (d->kind == STREAM_DISK_DONE) {
		if (d->offset || d->length != size || c->disk_done[d->disk]) {
			snprintf(bad, sizeof(bad), "disk %u: a second DONE, or one not of the "
				 "whole image", d->disk);
			goto err;
		}
		c->disk_done[d->disk] = true;
	}
	if (d->kind == STREAM_DISK_DIGEST) {
		if (d->offset || d->length != size || !c->disk_done[d->disk] ||
		    c->disk_has_digest[d->disk]) {
			snprintf(bad, sizeof(bad),
				 "disk %u: a digest before DONE, a second one, or one not of "
				 "the whole image", d->disk);
			goto err;
		}
		c->disk_has_digest[d->disk] = true;
		c->disk_digest[d->disk] = d->digest;
	}
	return 0;
err:
	snprintf(why, whylen, "bad DISK record %llu: %s", (unsigned long long)rec->index, bad);
	return -EBADMSG;
}

int stream_check__complete(const struct stream_check *c, char *why, size_t whylen)
{
	unsigned int i;

	for (i = 0; i < VM_MAX_DISKS; i++) {
		if (c->disk_in[i] && !c->disk_done[i]) {
			snprintf(why, whylen, "the stream ended before disk %u's image was "
				 "complete (no DONE)", i);
			return -EBADMSG;
		}
	}

	for (i = 0; i < c->cfg->nr_vcpus; i++) {
		if (!c->vcpu_seen[i]) {
			snprintf(why, whylen, "the stream ended without the state of vCPU %u", i);
			return -EBADMSG;
		}
	}
	if (c->vm_seen != VMSTATE_SEEN_VM_ALL || !c->serial_seen) {
		snprintf(why, whylen, "the stream ended without the interrupt controller, timer, "
				      "clock or serial state");
		return -EBADMSG;
	}
	for (i = 0; i < c->nr_disks + c->nr_nets; i++) {
		bool blk = i < c->nr_disks;
		unsigned int n = blk ? i : i - c->nr_disks;

		if (!(blk ? c->blk_seen[n] : c->net_seen[n])) {
			snprintf(why, whylen, "the stream ended without the state of %s %u",
				 blk ? "disk" : "network card", n);
			return -EBADMSG;
		}
	}
	return 0;
}

int stream_check__file_ends(struct stream_io *io, char *why, size_t whylen)
{
	uint8_t b;
	int ret = stream_io__read_full(io, &b, 1);

	if (ret == -ENODATA)
		return 0;
	if (ret) {
		snprintf(why, whylen, "read after END: %s", strerror(-ret));
		return ret;
	}
	snprintf(why, whylen, "bytes after END (at offset %llu)",
		 (unsigned long long)(io->bytes_read - 1));
	return -EBADMSG;
}

void stream_check__exit(struct stream_check *c)
{
	free(c->vcpus);
	free(c->serial);
	c->vcpus = NULL;
	c->serial = NULL;
}
