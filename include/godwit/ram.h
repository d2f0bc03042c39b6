/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_RAM_H
#define GODWIT_RAM_H

#include <stdbool.h>
#include <stdint.h>

#include "godwit/kvm.h"
#include "godwit/memory.h"
#include "godwit/migrate.h"
#include "godwit/ram_digest.h"
#include "godwit/stream.h"

/* Dirty pages waiting to be sent, in memfd page numbers. */
struct ram_tracker {
	struct guest_mem *mem;
	struct kvm *kvm; /* from ram__log_start (NULL: tests without KVM) */
	uint64_t armed;	 /* memfd offset below which KVM's log records writes */
	unsigned long *ones; /* a clear of one ARM_CHUNK */
	unsigned long *pending;
	unsigned long *slot_log; /* scratch for one slot's KVM log */
	uint8_t *staging;	 /* copies of data pages while the guest runs */
	uint8_t *lz4_block;	 /* STREAM_RAM_LZ4_BOUND bytes, allocated on first use */
	void *zstd_cctx;	 /* reused, created on first use */
};

/* What LZ4 did over the records of one decision window. */
struct ram_lz4_window {
	uint64_t start_ns, wire_start;
	uint64_t in, out, ns; /* bytes given to the compressor, bytes it gave back, its time */
	unsigned int records;
};

#define RAM_BATCH_PAGES 256U /* data pages per RAM record: 1 MiB */

/* Batches pages into RAM records on one stream. */
struct ram_sender {
	struct ram_tracker *t;
	struct stream_writer *w;
	bool copy; /* vCPUs running: copy pages before checksumming them */
	const bool *cancelled;
	/* Called after each record while vCPUs run (NULL: none), with on_record_arg. */
	void (*on_record)(void *arg);
	void *on_record_arg;
	uint64_t max_bandwidth; /* bytes/s, 0 = unlimited */
	/*
	 * Data pages per record, at most RAM_BATCH_PAGES (0: that many): on_record comes
	 * between records, and another move's pause waits for the record being written.
	 */
	unsigned int batch_pages;
	uint64_t bw_start_ns, bw_bytes;
	unsigned int nr_runs, nr_data;
	struct stream_ram_run runs[STREAM_RAM_MAX_RUNS];
	const uint8_t *direct[STREAM_RAM_MAX_RUNS];
	uint64_t pages_sent, zero_pages, skipped_pages;
	/* Set by the caller: MIGRATE_COMPRESS_OFF unless the destination takes RAM_LZ4. */
	enum migrate_compress compress;
	unsigned int lz4_every; /* compress one record in this many (1: all) */
	unsigned int lz4_count;
	struct ram_lz4_window lz4_win;
	uint64_t lz4_pages; /* data pages sent in RAM_LZ4 records */
	uint64_t lz4_saved; /* bytes LZ4 kept off the wire */
	bool zstd; /* records are compressed with zstd (RAM_ZSTD), not LZ4 */
	uint64_t zstd_pages, zstd_saved;
	struct ram_digest *digest; /* each page sent is hashed into it (NULL: not verifying) */
};

int __must_check ram__tracker_init(struct ram_tracker *t, struct guest_mem *mem);
void ram__tracker_exit(struct ram_tracker *t);
int __must_check ram__log_start(struct ram_tracker *t, struct kvm *kvm);
void ram__log_stop(struct ram_tracker *t);
int64_t ram__sync(struct ram_tracker *t, bool rearm);
/* Arms KVM's log below memfd offset off (see ram.c); 0 or -errno. */
int __must_check ram__arm(struct ram_tracker *t, uint64_t off);
int __must_check ram__send_all(struct ram_sender *s);
int __must_check ram__send_pending(struct ram_sender *s);
int __must_check ram__flush(struct ram_sender *s);
/*
 * How long the sender must wait at now_ns to keep to s->max_bandwidth over the
 * move (bw_bytes since bw_start_ns): 0 when it may send on.
 */
uint64_t ram__bandwidth_wait_ns(const struct ram_sender *s, uint64_t now_ns);
int ram__apply_run(void *opaque, uint64_t gpa, uint32_t npages, uint32_t kind,
		   const uint8_t *data);

#endif
