// SPDX-License-Identifier: GPL-2.0
/*
 * Guest RAM on the wire: dirty tracking (KVM's log OR the VMM's own bitmap),
 * the first full pass (skipping never-touched holes and zero pages), later
 * passes over dirty pages, and applying RAM records on the destination.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "godwit/log.h"
#include "godwit/ram.h"
#include "godwit/rate.h"
#include "godwit/vm.h"

#define BITS_PER_LONG (8 * sizeof(unsigned long))
#define ARM_CHUNK   (64 * MiB) /* ram__arm's piece: 16384 pages, a 2 KiB clear */

static size_t bitmap_longs(uint64_t nbits)
{
	return (nbits + BITS_PER_LONG - 1) / BITS_PER_LONG;
}

int ram__tracker_init(struct ram_tracker *t, struct guest_mem *mem)
{
	size_t longs = bitmap_longs(mem->nr_pages);

	memset(t, 0, sizeof(*t));
	t->mem = mem;
	t->armed = mem->size; /* nothing to arm until logging starts */
	t->pending = calloc(longs, sizeof(unsigned long));
	t->slot_log = calloc(longs + 1, sizeof(unsigned long));
	t->staging = aligned_alloc(4096, RAM_BATCH_PAGES * GUEST_PAGE_SIZE);
	t->ones = malloc(ARM_CHUNK / GUEST_PAGE_SIZE / 8);
	if (!t->pending || !t->slot_log || !t->staging || !t->ones) {
		ram__tracker_exit(t);
		return -ENOMEM;
	}
	memset(t->ones, 0xff, ARM_CHUNK / GUEST_PAGE_SIZE / 8);
	return 0;
}

void ram__tracker_exit(struct ram_tracker *t)
{
	free(t->pending);
	free(t->slot_log);
	free(t->staging);
	free(t->ones);
	free(t->lz4_block);
	stream__zstd_free(t->zstd_cctx, NULL);
	t->pending = t->slot_log = NULL;
	t->staging = t->lz4_block = NULL;
	t->ones = NULL;
	t->zstd_cctx = NULL;
}

static int set_logging(struct kvm *kvm, struct guest_mem *mem, int on)
{
	unsigned int i;
	int ret;

	for (i = 0; i < mem->nr_regions; i++) {
		ret = kvm__set_memory(kvm, i, mem->regions[i].gpa, mem->regions[i].size,
				      mem->regions[i].hva, on);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * From here on every guest write is logged. Where KVM's log starts all set
 * (kvm->dirty_log_init_set) turning it on write-protects nothing and the first pass
 * arms it (ram__arm); otherwise KVM write-protects the slots now, in one walk of all
 * guest RAM with the vCPUs waiting on it (milliseconds for a large guest, as long as an
 * idle guest's whole pause or longer). The VMM's own bitmap is reset, because the
 * first pass sends all of RAM anyway. kvm may be NULL (tests without KVM).
 */
int ram__log_start(struct ram_tracker *t, struct kvm *kvm)
{
	size_t i, longs = bitmap_longs(t->mem->nr_pages);
	int ret;

	for (i = 0; i < longs; i++)
		__atomic_store_n(&t->mem->vmm_dirty[i], 0, __ATOMIC_RELAXED);
	t->kvm = kvm;
	t->armed = kvm && kvm->dirty_log_init_set ? 0 : t->mem->size;
	if (!kvm)
		return 0;
	ret = set_logging(kvm, t->mem, 1);
	if (ret)
		pr_err("cannot start dirty logging: %s", strerror(-ret));
	return ret;
}

/*
 * Arms KVM's log below memfd offset `off` (rounded up to ARM_CHUNK within a region):
 * clearing a piece of an all-set log write-protects its pages, so a write after it
 * is logged. The first pass arms each piece before it reads the piece's pages: what
 * was written before is what it sends. Each clear holds KVM's MMU lock for one piece.
 */
int ram__arm(struct ram_tracker *t, uint64_t off)
{
	struct guest_mem *mem = t->mem;
	uint64_t rel, end;
	unsigned int i;
	int ret;

	/* Below mem->size only once logging started on KVM (ram__log_start): t->kvm is set. */
	while (t->armed < MIN(off, mem->size)) {
		for (i = 0; i < mem->nr_regions; i++)
			if (t->armed < mem->regions[i].fd_offset + mem->regions[i].size)
				break;
		if (i == mem->nr_regions)
			return -EINVAL;
		rel = t->armed - mem->regions[i].fd_offset;
		end = MIN(mem->regions[i].size, rel + ARM_CHUNK);

		ret = kvm__clear_dirty_log(t->kvm, i, rel / GUEST_PAGE_SIZE,
					   (uint32_t)((end - rel) / GUEST_PAGE_SIZE), t->ones);
		if (ret) {
			pr_err("cannot arm KVM's dirty log: %s", strerror(-ret));
			return ret;
		}
		t->armed = mem->regions[i].fd_offset + end;
	}
	return 0;
}

void ram__log_stop(struct ram_tracker *t)
{
	if (t->kvm && set_logging(t->kvm, t->mem, 0))
		pr_warn("cannot stop dirty logging");
}

/*
 * pending |= log (KVM's for these words, or NULL) | the VMM's bitmap, over words
 * [w0, w0 + n), in one pass (an 8 GiB guest's bitmaps are 256 KiB each: the separate
 * OR, swap and count passes were most of the final sync). Words found zero are only
 * read. Returns the pages now pending there.
 */
static uint64_t merge_words(struct ram_tracker *t, size_t w0, const unsigned long *log,
			    size_t n)
{
	unsigned long *vmm = t->mem->vmm_dirty;
	uint64_t count = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		size_t w = w0 + i;
		unsigned long v = t->pending[w] | (log ? log[i] : 0);

		if (__atomic_load_n(&vmm[w], __ATOMIC_RELAXED))
			v |= __atomic_exchange_n(&vmm[w], 0, __ATOMIC_RELAXED);
		if (v != t->pending[w])
			t->pending[w] = v;
		count += (uint64_t)__builtin_popcountl(v);
	}
	return count;
}

/*
 * Moves everything dirtied since the last sync into t->pending: KVM's log for
 * each slot (fetched, then cleared so new writes are caught again, unless rearm is
 * false: at the pause nothing runs after the last sync, and write-protecting the
 * pages again would only lengthen it) and the VMM's bitmap (swapped out word by
 * word, the words found zero left alone: an atomic swap of each of an 8 GiB guest's
 * 32768 words cost more than the rest of the sync). Returns pages pending, or
 * -errno. Logging started without KVM (tests): only the VMM's bitmap is taken then.
 * Regions start on 2 MiB boundaries and follow each other in the memfd, so each
 * region's log covers whole words of the bitmap and together they cover it all.
 */
int64_t ram__sync(struct ram_tracker *t, bool rearm)
{
	struct guest_mem *mem = t->mem;
	struct kvm *kvm = t->kvm;
	uint64_t pending = 0;
	unsigned int i;
	int ret;

	if (!kvm)
		return (int64_t)merge_words(t, 0, NULL, bitmap_longs(mem->nr_pages));
	for (i = 0; i < mem->nr_regions; i++) {
		uint64_t pages = mem->regions[i].size / GUEST_PAGE_SIZE;
		uint64_t first = mem->regions[i].fd_offset / GUEST_PAGE_SIZE;

		/* KVM writes the whole bitmap. */
		ret = kvm__get_dirty_log(kvm, i, t->slot_log);
		if (!ret && rearm)
			ret = kvm__clear_dirty_log(kvm, i, 0, (uint32_t)pages, t->slot_log);
		if (ret) {
			pr_err("cannot read KVM's dirty log: %s", strerror(-ret));
			return ret;
		}
		pending += merge_words(t, first / BITS_PER_LONG, t->slot_log, bitmap_longs(pages));
	}
	/* A piece not yet armed read as all dirty, and clearing what was read armed it. */
	if (rearm)
		t->armed = mem->size;
	return (int64_t)pending;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)p;
	size_t i;

	for (i = 0; i < GUEST_PAGE_SIZE / sizeof(uint64_t); i += 4)
		if (q[i] | q[i + 1] | q[i + 2] | q[i + 3])
			return false;
	return true;
}

uint64_t ram__bandwidth_wait_ns(const struct ram_sender *s, uint64_t now_ns)
{
	uint64_t elapsed, due;

	if (!s->max_bandwidth)
		return 0;
	elapsed = now_ns - s->bw_start_ns;
	due = rate__ns_for(s->bw_bytes, s->max_bandwidth);
	return due > elapsed ? due - elapsed : 0;
}

static bool sender_cancelled(const struct ram_sender *s)
{
	return s->cancelled && __atomic_load_n(s->cancelled, __ATOMIC_RELAXED);
}

/*
 * At a low --max-bandwidth one record's wait is long (a 1 MiB record at 1 KB/s: 17
 * minutes), so it is slept in slices of at most BANDWIDTH_SLICE_NS, and a cancel (or
 * the VM's end) ends it within one.
 */
#define BANDWIDTH_SLICE_NS (50 * 1000000ULL)

static void throttle_bandwidth(struct ram_sender *s)
{
	uint64_t wait;

	while ((wait = ram__bandwidth_wait_ns(s, util__now_ns())) && !sender_cancelled(s))
		nanosleep(&(struct timespec){ .tv_nsec = (long)MIN(wait, BANDWIDTH_SLICE_NS) },
			  NULL);
}

/*
 * Auto compression decides every LZ4_WINDOW records: LZ4 for every record while
 * it shrinks what it is given to at most 9/10 and compresses faster than the
 * stream went out over the window (the link is slower than the compressor);
 * otherwise one record in LZ4_SAMPLE, to notice when the data or the link change.
 * Once on, the stream's own rate is of compressed bytes and the rule keeps it on
 * while the data compresses: on a link faster than LZ4 (10 Gbit/s and up) pass
 * --compress off. A record LZ4 cannot shrink goes plain whatever the mode. With
 * --compress zstd every record is offered to zstd (MIGRATE_COMPRESS_ZSTD is not auto).
 */
#define LZ4_WINDOW 16
#define LZ4_SAMPLE 16

static void lz4_decide(struct ram_sender *s)
{
	struct ram_lz4_window *win = &s->lz4_win;
	uint64_t now = util__now_ns(), wire_rate, lz4_rate;

	if (s->compress != MIGRATE_COMPRESS_AUTO || ++win->records < LZ4_WINDOW)
		return;
	if (win->in) {
		wire_rate = rate__per_s(s->w->bytes - win->wire_start, now - win->start_ns);
		lz4_rate = rate__per_s(win->in, win->ns);
		s->lz4_every = win->out * 10 <= win->in * 9 && lz4_rate > wire_rate ? 1 : LZ4_SAMPLE;
	}
	*win = (struct ram_lz4_window){ .start_ns = now, .wire_start = s->w->bytes };
}

/* Data pages of the batch, contiguous: staged copies, or gathered from guest RAM. */
static const uint8_t *batch_data(struct ram_sender *s)
{
	unsigned int i, page = 0;

	if (s->copy)
		return s->t->staging;
	for (i = 0; i < s->nr_runs; i++) {
		if (s->runs[i].kind != STREAM_RAM_DATA)
			continue;
		memcpy(s->t->staging + (size_t)page * GUEST_PAGE_SIZE, s->direct[i],
		       (size_t)s->runs[i].npages * GUEST_PAGE_SIZE);
		page += s->runs[i].npages;
	}
	return s->t->staging;
}

/* 1 when the batch went out as RAM_LZ4 or RAM_ZSTD, 0 when it is to go plain, or -errno. */
static int flush_packed(struct ram_sender *s)
{
	uint64_t len = (uint64_t)s->nr_data * GUEST_PAGE_SIZE, t0, *pages, *saved;
	int clen, ret;

	if (s->compress == MIGRATE_COMPRESS_OFF || !s->nr_data || !s->lz4_every ||
	    s->lz4_count++ % s->lz4_every)
		return 0;
	if (!s->t->lz4_block && !(s->t->lz4_block = malloc(STREAM_RAM_LZ4_BOUND)))
		return 0; /* plain records need no more memory */
	if (s->zstd && !s->t->zstd_cctx && !(s->t->zstd_cctx = stream__zstd_cctx()))
		s->zstd = false;
	t0 = util__now_ns();
	clen = s->zstd ? stream__zstd_compress(s->t->zstd_cctx, batch_data(s), len,
					       s->t->lz4_block)
		       : stream__lz4_compress(batch_data(s), len, s->t->lz4_block);
	s->lz4_win.ns += util__now_ns() - t0;
	s->lz4_win.in += len;
	s->lz4_win.out += clen > 0 ? (uint64_t)clen : len;
	if (clen <= 0)
		return 0;
	ret = stream__write_ram_packed(s->w, s->zstd ? STREAM_REC_RAM_ZSTD : STREAM_REC_RAM_LZ4,
				       s->runs, s->nr_runs, s->t->lz4_block, (uint32_t)clen);
	if (ret)
		return ret;
	pages = s->zstd ? &s->zstd_pages : &s->lz4_pages;
	saved = s->zstd ? &s->zstd_saved : &s->lz4_saved;
	*pages += s->nr_data;
	*saved += len - (uint64_t)clen;
	return 1;
}

static int flush_plain(struct ram_sender *s)
{
	const uint8_t *data[STREAM_RAM_MAX_RUNS];
	unsigned int i, page = 0;

	for (i = 0; i < s->nr_runs; i++) {
		data[i] = NULL;
		if (s->runs[i].kind == STREAM_RAM_DATA) {
			data[i] = s->copy ? s->t->staging + (size_t)page * GUEST_PAGE_SIZE
					  : s->direct[i];
			page += s->runs[i].npages;
		}
	}
	return stream__write_ram(s->w, s->runs, s->nr_runs, data);
}

int ram__flush(struct ram_sender *s)
{
	uint64_t before = s->w->bytes;
	int ret;

	if (!s->nr_runs)
		return 0;
	ret = flush_packed(s);
	if (!ret)
		ret = flush_plain(s);
	else if (ret > 0)
		ret = 0;
	lz4_decide(s);
	s->nr_runs = 0;
	s->nr_data = 0;
	s->bw_bytes += s->w->bytes - before;
	if (ret)
		return ret;
	throttle_bandwidth(s);
	if (s->copy && s->on_record)
		s->on_record(s->on_record_arg);
	if (sender_cancelled(s))
		return -ECANCELED;
	return 0;
}

static unsigned int batch_pages(const struct ram_sender *s)
{
	return s->batch_pages ? MIN(s->batch_pages, RAM_BATCH_PAGES) : RAM_BATCH_PAGES;
}

/* Adds one page to the batch, extending the last run when it continues it. */
static int add_page(struct ram_sender *s, uint64_t gpa, const uint8_t *hva)
{
	uint32_t kind = page_is_zero(hva) ? STREAM_RAM_ZERO : STREAM_RAM_DATA;
	struct stream_ram_run *last = s->nr_runs ? &s->runs[s->nr_runs - 1] : NULL;
	int ret;

	if (kind == STREAM_RAM_DATA && s->nr_data >= batch_pages(s)) {
		ret = ram__flush(s);
		if (ret)
			return ret;
		last = NULL;
	}
	if (last && last->kind == kind && last->gpa + (uint64_t)last->npages * GUEST_PAGE_SIZE == gpa &&
	    (s->copy || kind == STREAM_RAM_ZERO ||
	     s->direct[s->nr_runs - 1] + (size_t)last->npages * GUEST_PAGE_SIZE == hva)) {
		last->npages++;
	} else {
		if (s->nr_runs == STREAM_RAM_MAX_RUNS) {
			ret = ram__flush(s);
			if (ret)
				return ret;
		}
		s->direct[s->nr_runs] = hva;
		s->runs[s->nr_runs++] = (struct stream_ram_run){ .gpa = gpa, .npages = 1, .kind = kind };
	}
	if (kind == STREAM_RAM_DATA) {
		uint8_t *copy = s->t->staging + (size_t)s->nr_data * GUEST_PAGE_SIZE;

		/* While vCPUs run, a page is copied first: its checksum must match what is sent. */
		if (s->copy)
			memcpy(copy, hva, GUEST_PAGE_SIZE);
		/* The digest, too: of the bytes sent, which the destination will hold. */
		if (s->digest)
			ram_digest__page(s->digest, (uint64_t)(hva - s->t->mem->base) / GUEST_PAGE_SIZE,
					 s->copy ? copy : hva);
		s->nr_data++;
		s->pages_sent++;
	} else {
		if (s->digest)
			ram_digest__page(s->digest, (uint64_t)(hva - s->t->mem->base) / GUEST_PAGE_SIZE,
					 NULL);
		s->zero_pages++;
	}
	return 0;
}

static int send_offset(struct ram_sender *s, uint64_t off)
{
	struct guest_mem *mem = s->t->mem;

	return add_page(s, guest_mem__offset_to_gpa(mem, off), mem->base + off);
}

/*
 * Sends the pages of memfd offsets [from, to) that hold data. *data_end is the end of
 * the last data range found, which may lie past `to`: SEEK_HOLE walks a whole range,
 * so asking again in each piece walked a long range once per piece (quadratic in the
 * memory written). Data stays data: nothing punches holes in a source's memfd. Holes
 * are looked for again in each piece, after it is armed (ram__send_all).
 */
static int send_written(struct ram_sender *s, uint64_t from, uint64_t to, uint64_t *data_end,
			uint64_t *touched)
{
	struct guest_mem *mem = s->t->mem;
	uint64_t pos = from, off, stop;
	off_t found;
	int ret;

	while (pos < to) {
		if (pos >= *data_end) {
			found = lseek(mem->memfd, (off_t)pos, SEEK_DATA);
			if (found < 0)
				return errno == ENXIO ? 0 : -errno;
			if ((uint64_t)found >= to)
				return 0;
			pos = (uint64_t)found & ~(GUEST_PAGE_SIZE - 1);
			found = lseek(mem->memfd, found, SEEK_HOLE);
			*data_end = found < 0 || (uint64_t)found > mem->size ? mem->size
									     : (uint64_t)found;
		}
		stop = MIN(*data_end, to);
		for (off = pos; off < stop; off += GUEST_PAGE_SIZE) {
			ret = send_offset(s, off);
			if (ret)
				return ret;
			(*touched)++;
		}
		pos = stop;
	}
	return 0;
}

/*
 * The first pass: every page that was ever written. Holes in the memfd (found
 * with SEEK_DATA/SEEK_HOLE) were never touched and are not even read. Each piece
 * of KVM's log is armed before its holes are looked for: a hole found before the
 * arm could be written by the guest in between, and the arm would then clear the
 * only trace of that write.
 */
int ram__send_all(struct ram_sender *s)
{
	struct guest_mem *mem = s->t->mem;
	uint64_t pos, piece_end, data_end = 0, touched = 0;
	int ret;

	for (pos = 0; pos < mem->size; pos = piece_end) {
		ret = ram__arm(s->t, pos + 1);
		if (ret)
			return ret;
		piece_end = MIN(MAX(s->t->armed, pos + GUEST_PAGE_SIZE), mem->size);
		ret = send_written(s, pos, piece_end, &data_end, &touched);
		if (ret)
			return ret;
	}
	s->skipped_pages = mem->nr_pages - touched;
	return ram__flush(s);
}

/* Sends and clears every page pending in the tracker. */
int ram__send_pending(struct ram_sender *s)
{
	struct ram_tracker *t = s->t;
	size_t w, longs = bitmap_longs(t->mem->nr_pages);
	int ret;

	for (w = 0; w < longs; w++) {
		unsigned long bits = t->pending[w];

		if (!bits)
			continue;
		t->pending[w] = 0;
		while (bits) {
			unsigned int b = (unsigned int)__builtin_ctzl(bits);
			uint64_t pfn = w * BITS_PER_LONG + b;

			bits &= bits - 1;
			if (pfn >= t->mem->nr_pages)
				break;
			ret = send_offset(s, pfn * GUEST_PAGE_SIZE);
			if (ret)
				return ret;
		}
	}
	return ram__flush(s);
}

/* Destination: one validated run of a RAM record. */
int ram__apply_run(void *opaque, uint64_t gpa, uint32_t npages, uint32_t kind, const uint8_t *data)
{
	struct guest_mem *mem = opaque;
	uint64_t len = (uint64_t)npages * GUEST_PAGE_SIZE;
	int64_t off;

	if (kind == STREAM_RAM_DATA)
		return guest_mem__write(mem, gpa, data, len);
	/* A zero run: give the pages back to the memfd, which reads them as zeros. */
	off = guest_mem__gpa_to_offset(mem, gpa);
	if (off < 0 || !guest_mem__ptr(mem, gpa, len))
		return -EFAULT;
	if (fallocate(mem->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, (off_t)len) < 0)
		memset(guest_mem__ptr(mem, gpa, len), 0, len);
	guest_mem__mark_dirty(mem, gpa, len);
	return 0;
}
