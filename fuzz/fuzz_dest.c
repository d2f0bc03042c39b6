// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target: what the destination does with a stream's content once the
 * framing holds (fuzz_stream covers the framing). The input is a list of records,
 * each { u32 type; u32 flags; u32 len; payload }; the target seals them into a
 * stream (header, checksums, END) so that mutations reach the payloads instead of
 * dying at a checksum, then reads it back as the destination does: CONFIG through
 * stream_check__config, every STATE through stream_check__state, END through
 * stream_check__complete and stream_check__file_ends, every DISK through
 * stream_check__disk (within the disk CONFIG sends), every plain RAM record through
 * stream__ram_record_receive into a 64 MiB guest RAM in place (the checks of its runs
 * against CONFIG's regions and the RAM's own). A stream that passes has its
 * UART state loaded into a real 8250 (serial8250__load) and each disk's and network
 * card's transport state into a virtio-mmio device built as blk.c and net.c build
 * theirs (virtio_mmio__load). Nothing may crash, read out of bounds or leak.
 * fuzz/corpus/fuzz_dest/ holds seeds made by fuzz/dest_seeds.py from snapshots.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "godwit/log.h"
#include "godwit/memory.h"
#include "godwit/ram_receive.h"
#include "godwit/stream_check.h"
#include "godwit/virtio.h"

#define IN_HDR_LEN 12

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void no_irq(void *opaque, int level)
{
	(void)opaque;
	(void)level;
}

static void no_out(void *opaque, const uint8_t *buf, size_t len)
{
	(void)opaque;
	(void)buf;
	(void)len;
}

static void no_raise(void *opaque)
{
	(void)opaque;
}

static void config_zero(void *opaque, uint32_t off, void *buf, uint32_t len)
{
	(void)opaque;
	(void)off;
	memset(buf, 0, len);
}

static void no_notify(void *opaque, unsigned int q)
{
	(void)opaque;
	(void)q;
}

static void no_reset(void *opaque)
{
	(void)opaque;
}

/* Seals the input's records into a stream; 0, or -1 for input that makes none. */
static int seal(const uint8_t *data, size_t size, struct stream_io *out)
{
	struct stream_writer w;
	int ret;

	stream_io__init_mem_writer(out);
	if (stream__writer_init(&w, out, STREAM_CTX_DATA))
		return -1;
	ret = stream__write_header(&w);
	while (!ret && size >= IN_HDR_LEN) {
		uint32_t type = stream_get32(data), flags = stream_get32(data + 4);
		uint32_t len = stream_get32(data + 8);
		struct iovec iov = { .iov_base = (void *)(data + IN_HDR_LEN), .iov_len = len };

		if (len > size - IN_HDR_LEN || type == STREAM_REC_END)
			break;
		ret = stream__write_record(&w, type, flags, &iov, 1);
		data += IN_HDR_LEN + len;
		size -= IN_HDR_LEN + len;
	}
	/* The writer refuses what breaks the order rules: the stream ends there. */
	if (stream__write_end(&w))
		ret = 0;
	stream__writer_exit(&w);
	return ret ? -1 : 0;
}

static struct guest_mem *fuzz_mem(void)
{
	static struct guest_mem mem;
	static int state; /* 0 not yet, 1 ready, -1 failed */

	if (!state)
		state = guest_mem__init(&mem, 64 * MiB) ? -1 : 1;
	return state > 0 ? &mem : NULL;
}

static void load_transport(const struct virtio_mmio_state *st, bool blk)
{
	struct virtio_dev_ops ops = {
		.device_id = blk ? VIRTIO_ID_BLK : VIRTIO_ID_NET,
		/* Everything offered: the driver's choice is then checked only by load. */
		.features = ~0ULL,
		.config_size = blk ? VIRTIO_BLK_CFG_SIZE : VIRTIO_NET_CFG_SIZE,
		.nr_queues = blk ? 1 : VIRTIO_NET_NR_QUEUES,
		.queue_max_size = blk ? VIRTIO_BLK_QUEUE_SIZE : VIRTIO_NET_QUEUE_SIZE,
		.config_read = config_zero,
		.notify = no_notify,
		.reset = no_reset,
	};
	struct guest_mem *mem = fuzz_mem();
	struct virtio_mmio vm;

	if (!mem || virtio_mmio__init(&vm, mem, "fuzz", &ops, NULL, no_raise, NULL))
		return;
	(void)virtio_mmio__load(&vm, st);
	virtio_mmio__exit(&vm);
}

/* The loads the destination's restore makes that need no KVM. */
static void load_devices(const struct stream_check *c)
{
	static const struct serial8250_ops sops = { .set_irq = no_irq, .write_out = no_out };
	struct serial8250 uart;
	unsigned int i;

	if (!serial8250__init(&uart, &sops, NULL)) {
		(void)serial8250__load(&uart, c->serial);
		serial8250__exit(&uart);
	}
	for (i = 0; i < c->nr_disks; i++)
		load_transport(&c->blk[i].transport, true);
	for (i = 0; i < c->nr_nets; i++)
		load_transport(&c->net[i].transport, false);
}

/* A plain RAM record, into guest RAM in place as the destination takes it (no helper). */
static int receive_ram(struct stream_reader *r, const struct stream_record *rec,
		       const struct stream_config *cfg)
{
	struct ram_receiver rcv = { .mem = fuzz_mem() };
	char why[256];

	if (!rcv.mem)
		return -1;
	return stream__ram_record_receive(r, rec, cfg, ram_receiver__fill, ram_receiver__apply,
					  &rcv, why, sizeof(why));
}

/* What stream_check__disk lets through lies within an incoming disk the CONFIG announced. */
static int check_disk(struct stream_check *c, const struct stream_record *rec)
{
	struct stream_disk d;
	char why[256];

	if (stream_check__disk(c, rec, &d, why, sizeof(why)))
		return -1;
	if (d.disk >= VM_MAX_DISKS || !c->disk_in[d.disk] || d.offset > c->disk_size[d.disk] ||
	    d.length > c->disk_size[d.disk] - d.offset ||
	    (d.data && d.data + d.length != rec->payload + rec->length))
		__builtin_trap();
	return 0;
}

static void receive(struct stream_reader *r, struct stream_io *io)
{
	struct stream_config cfg = { 0 };
	struct stream_check c = { 0 };
	struct stream_header hdr;
	struct stream_record rec;
	char why[256];
	bool have_chk = false;

	if (stream__read_header(r, &hdr) || stream__read_record(r, &rec) ||
	    stream__config_decode(rec.payload, rec.length, &cfg, why, sizeof(why)))
		goto out;
	have_chk = true;
	if (stream_check__config(&c, &cfg, hdr.minor, why, sizeof(why)))
		goto out;
	while (stream__read_record_open(r, &rec, STREAM_REC_RAM) >= 0) {
		if (rec.type == STREAM_REC_RAM && receive_ram(r, &rec, &cfg))
			break;
		if (rec.type == STREAM_REC_STATE && stream_check__state(&c, &rec, why, sizeof(why)))
			break;
		if (rec.type == STREAM_REC_DISK && check_disk(&c, &rec))
			break;
		if (rec.type != STREAM_REC_END)
			continue;
		if (!stream_check__complete(&c, why, sizeof(why)) &&
		    !stream_check__file_ends(io, why, sizeof(why)))
			load_devices(&c);
		break;
	}
out:
	if (have_chk)
		stream_check__exit(&c);
	stream__config_release(&cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	struct stream_io out, in;
	struct stream_reader r;
	const uint8_t *stream;
	size_t len;

	if (!quiet) {
		log__set_level(LOG_QUIET);
		quiet = true;
	}
	if (seal(data, size, &out))
		goto out;
	stream = stream_io__mem_data(&out, &len);
	stream_io__init_mem_reader(&in, stream, len);
	if (!stream__reader_init(&r, &in, STREAM_CTX_DATA)) {
		receive(&r, &in);
		stream__reader_exit(&r);
	}
out:
	stream_io__exit(&out);
	return 0;
}
