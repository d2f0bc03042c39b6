// SPDX-License-Identifier: GPL-2.0
/*
 * RAM records (runs of data or zero pages) and the VERIFY digest of guest RAM.
 * Every run is checked against the CONFIG's regions before the first one is
 * applied: a bad record changes nothing, so a failed migration leaves nothing
 * half-written that anyone could mistake for guest memory.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lz4.h>
#include <zstd.h>
#include <xxhash.h>

#include "godwit/memory.h"
#include "godwit/stream.h"

static int __attribute__((format(printf, 3, 4)))
ram_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EBADMSG;
}

static bool in_one_region(const struct stream_config *cfg, uint64_t gpa, uint64_t end)
{
	unsigned int i;

	for (i = 0; i < cfg->nr_regions && i < STREAM_MAX_REGIONS; i++) {
		const struct stream_region *rg = &cfg->regions[i];

		if (gpa >= rg->gpa && end - rg->gpa <= rg->size)
			return true;
	}
	return false;
}

static void get_run(const uint8_t *p, struct stream_ram_run *run)
{
	run->gpa = stream_get64(p);
	run->npages = stream_get32(p + 8);
	run->kind = stream_get32(p + 12);
}

/* Checks one run; *prev_end keeps runs ascending and disjoint within a record. */
static int check_run(const struct stream_config *cfg, const struct stream_ram_run *run, uint32_t i,
		     uint64_t *prev_end, char *err, size_t errlen)
{
	uint64_t bytes = (uint64_t)run->npages * STREAM_PAGE_SIZE;

	if (run->kind != STREAM_RAM_DATA && run->kind != STREAM_RAM_ZERO)
		return ram_fail(err, errlen, "run %u: unknown kind %u", i, run->kind);
	if (!run->npages)
		return ram_fail(err, errlen, "run %u: zero pages", i);
	if (run->gpa % STREAM_PAGE_SIZE)
		return ram_fail(err, errlen, "run %u: gpa 0x%llx not page-aligned", i,
				(unsigned long long)run->gpa);
	if (run->gpa > UINT64_MAX - bytes)
		return ram_fail(err, errlen, "run %u: gpa 0x%llx + %u pages wraps around", i,
				(unsigned long long)run->gpa, run->npages);
	if (!in_one_region(cfg, run->gpa, run->gpa + bytes))
		return ram_fail(err, errlen,
				"run %u: 0x%llx + %u pages is not inside one RAM region", i,
				(unsigned long long)run->gpa, run->npages);
	if (run->gpa < *prev_end)
		return ram_fail(err, errlen, "run %u: gpa 0x%llx overlaps or precedes run %u", i,
				(unsigned long long)run->gpa, i - 1);
	*prev_end = run->gpa + bytes;
	return 0;
}

static int check_runs(const struct stream_config *cfg, const uint8_t *runs, uint32_t nr_runs,
		      size_t data_len, char *err, size_t errlen)
{
	uint64_t prev_end = 0, data_pages = 0;
	struct stream_ram_run run;
	uint32_t i;

	for (i = 0; i < nr_runs; i++) {
		get_run(runs + (size_t)i * STREAM_RAM_RUN_LEN, &run);
		if (check_run(cfg, &run, i, &prev_end, err, errlen))
			return -EBADMSG;
		if (run.kind == STREAM_RAM_DATA)
			data_pages += run.npages;
	}
	if (data_pages > STREAM_RAM_MAX_DATA_PAGES)
		return ram_fail(err, errlen, "%llu data pages (at most %u per record)",
				(unsigned long long)data_pages, STREAM_RAM_MAX_DATA_PAGES);
	if (data_pages * STREAM_PAGE_SIZE != data_len)
		return ram_fail(err, errlen,
				"runs announce %llu data pages, payload holds %zu bytes",
				(unsigned long long)data_pages, data_len);
	return 0;
}

/* The RAM header and its runs; *runs_len is where the data (or LZ4 header) starts. */
static int parse_head(const uint8_t *payload, size_t len, uint32_t *nr_runs, size_t *runs_len,
		      char *err, size_t errlen)
{
	if (len < STREAM_RAM_HDR_LEN)
		return ram_fail(err, errlen, "RAM payload of %zu bytes", len);
	*nr_runs = stream_get32(payload);
	if (stream_get32(payload + 4))
		return ram_fail(err, errlen, "reserved field not zero");
	if (!*nr_runs || *nr_runs > STREAM_RAM_MAX_RUNS)
		return ram_fail(err, errlen, "%u runs (1..%u allowed)", *nr_runs,
				STREAM_RAM_MAX_RUNS);
	*runs_len = (size_t)*nr_runs * STREAM_RAM_RUN_LEN;
	if (*runs_len > len - STREAM_RAM_HDR_LEN)
		return ram_fail(err, errlen, "%u runs do not fit in %zu bytes", *nr_runs, len);
	return 0;
}

/* Calls fn per run of checked runs; data holds every DATA run's pages in order. */
static int apply_runs(const uint8_t *runs, uint32_t nr_runs, const uint8_t *data, stream_ram_fn fn,
		      void *opaque)
{
	struct stream_ram_run run;
	uint32_t i;
	int ret;

	for (i = 0; i < nr_runs; i++) {
		get_run(runs + (size_t)i * STREAM_RAM_RUN_LEN, &run);
		ret = fn(opaque, run.gpa, run.npages, run.kind,
			 run.kind == STREAM_RAM_DATA ? data : NULL);
		if (ret)
			return ret;
		if (run.kind == STREAM_RAM_DATA)
			data += (size_t)run.npages * STREAM_PAGE_SIZE;
	}
	return 0;
}

int stream__ram_record_parse(const struct stream_config *cfg, const uint8_t *payload, size_t len,
			     stream_ram_fn fn, void *opaque, char *err, size_t errlen)
{
	const uint8_t *runs = payload + STREAM_RAM_HDR_LEN;
	uint32_t nr_runs;
	size_t runs_len;
	int ret;

	ret = parse_head(payload, len, &nr_runs, &runs_len, err, errlen);
	if (!ret)
		ret = check_runs(cfg, runs, nr_runs, len - STREAM_RAM_HDR_LEN - runs_len, err,
				 errlen);
	return ret ? ret : apply_runs(runs, nr_runs, runs + runs_len, fn, opaque);
}

/* The reader failed: its message, which names the record and the offset. */
static int reader_fail(const struct stream_reader *r, int ret, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s", r->err[0] ? r->err : strerror(-ret));
	return ret;
}

static int read_part(void *ctx, void *dst, size_t len)
{
	struct stream_part *p = ctx;

	return stream__read_part(p->r, p->rec, dst, len);
}

static int receive_data(const uint8_t *runs, uint32_t nr_runs, stream_ram_fill_fn fill,
			void *opaque, struct stream_part *part)
{
	struct stream_ram_run run;
	uint32_t i;
	int ret;

	for (i = 0; i < nr_runs; i++) {
		get_run(runs + (size_t)i * STREAM_RAM_RUN_LEN, &run);
		ret = fill(opaque, run.gpa, run.npages, run.kind == STREAM_RAM_DATA ? read_part : NULL,
			   part);
		if (ret)
			return ret;
	}
	return 0;
}

static int apply_zero_runs(const uint8_t *runs, uint32_t nr_runs, stream_ram_fn fn, void *opaque)
{
	struct stream_ram_run run;
	uint32_t i;
	int ret;

	for (i = 0; i < nr_runs; i++) {
		get_run(runs + (size_t)i * STREAM_RAM_RUN_LEN, &run);
		if (run.kind != STREAM_RAM_ZERO)
			continue;
		ret = fn(opaque, run.gpa, run.npages, run.kind, NULL);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * The runs failed their checks: the rest of the record is read into scratch and
 * dropped, so that a record damaged on the way is named by its checksum, as it was
 * when records were checked whole before their runs.
 */
static int bad_runs(struct stream_reader *r, const struct stream_record *rec, uint8_t *scratch,
		    size_t cap, int ret, char *err, size_t errlen)
{
	int rd = 0;

	while (!rd && r->open_left)
		rd = stream__read_part(r, rec, scratch, MIN(cap, r->open_left));
	if (!rd)
		rd = stream__read_close(r, rec);
	return rd ? reader_fail(r, rd, err, errlen) : ret;
}

int stream__ram_record_receive(struct stream_reader *r, const struct stream_record *rec,
			       const struct stream_config *cfg, stream_ram_fill_fn fill,
			       stream_ram_fn apply, void *opaque, char *err, size_t errlen)
{
	uint8_t head[STREAM_RAM_HDR_LEN], runs[STREAM_RAM_MAX_RUNS * STREAM_RAM_RUN_LEN];
	struct stream_part part = { .r = r, .rec = rec };
	uint32_t nr_runs;
	size_t runs_len;
	int ret;

	if (rec->type != STREAM_REC_RAM || rec->length < STREAM_RAM_HDR_LEN)
		return ram_fail(err, errlen, "not an open RAM record");
	r->err[0] = 0;
	ret = stream__read_part(r, rec, head, sizeof(head));
	if (ret)
		return reader_fail(r, ret, err, errlen);
	/* parse_head reads the 8 bytes of head and bounds the runs by the record's length. */
	ret = parse_head(head, rec->length, &nr_runs, &runs_len, err, errlen);
	if (ret)
		return ret;
	ret = stream__read_part(r, rec, runs, runs_len);
	if (ret)
		return reader_fail(r, ret, err, errlen);
	ret = check_runs(cfg, runs, nr_runs, rec->length - STREAM_RAM_HDR_LEN - runs_len, err,
			 errlen);
	if (ret)
		return bad_runs(r, rec, runs, sizeof(runs), ret, err, errlen);
	ret = receive_data(runs, nr_runs, fill, opaque, &part);
	if (ret)
		return r->err[0] ? reader_fail(r, ret, err, errlen) : ret;
	ret = stream__read_close(r, rec);
	if (ret)
		return reader_fail(r, ret, err, errlen);
	return apply_zero_runs(runs, nr_runs, apply, opaque);
}

static uint64_t data_pages_of(const uint8_t *runs, uint32_t nr_runs)
{
	struct stream_ram_run run;
	uint64_t pages = 0;
	uint32_t i;

	for (i = 0; i < nr_runs; i++) {
		get_run(runs + (size_t)i * STREAM_RAM_RUN_LEN, &run);
		if (run.kind == STREAM_RAM_DATA)
			pages += run.npages;
	}
	return pages;
}

/* Expands a packed record's block into dst (exactly len bytes): 0 or -1. */
typedef int (*unpack_fn)(void *ctx, const uint8_t *block, uint32_t block_len, uint8_t *dst,
			 uint64_t len);

static int unpack_lz4(void *ctx, const uint8_t *block, uint32_t block_len, uint8_t *dst,
		      uint64_t len)
{
	int n = LZ4_decompress_safe((const char *)block, (char *)dst, (int)block_len, (int)len);

	(void)ctx;
	return n >= 0 && (uint64_t)n == len ? 0 : -1;
}

static int unpack_zstd(void *dctx, const uint8_t *block, uint32_t block_len, uint8_t *dst,
		       uint64_t len)
{
	size_t n = ZSTD_decompressDCtx(dctx, dst, len, block, block_len);

	return !ZSTD_isError(n) && n == len ? 0 : -1;
}

/* RAM_LZ4 and RAM_ZSTD: the runs, u32 block length, u32 reserved, the block. */
static int packed_parse(const char *name, unpack_fn unpack, void *ctx,
			const struct stream_config *cfg, const uint8_t *payload, size_t len,
			uint8_t *scratch, stream_ram_fn fn, void *opaque, char *err, size_t errlen)
{
	const uint8_t *runs = payload + STREAM_RAM_HDR_LEN, *lz;
	uint64_t data_len;
	uint32_t nr_runs, block_len;
	size_t runs_len, rest;
	int ret;

	ret = parse_head(payload, len, &nr_runs, &runs_len, err, errlen);
	if (ret)
		return ret;
	rest = len - STREAM_RAM_HDR_LEN - runs_len;
	if (rest < STREAM_RAM_LZ4_HDR_LEN)
		return ram_fail(err, errlen, "no %s block header after %u runs", name, nr_runs);
	lz = runs + runs_len;
	block_len = stream_get32(lz);
	if (stream_get32(lz + 4))
		return ram_fail(err, errlen, "%s reserved field not zero", name);
	if (block_len != rest - STREAM_RAM_LZ4_HDR_LEN)
		return ram_fail(err, errlen, "%s block of %u bytes, payload holds %zu", name,
				block_len, rest - STREAM_RAM_LZ4_HDR_LEN);
	/* The runs' own checks bound data_len by STREAM_RAM_MAX_DATA_LEN. */
	data_len = data_pages_of(runs, nr_runs) * STREAM_PAGE_SIZE;
	ret = check_runs(cfg, runs, nr_runs, data_len, err, errlen);
	if (ret)
		return ret;
	if (!data_len)
		return ram_fail(err, errlen, "%s record without data pages", name);
	if (unpack(ctx, lz + STREAM_RAM_LZ4_HDR_LEN, block_len, scratch, data_len))
		return ram_fail(err, errlen, "%s block does not expand to the %llu bytes announced",
				name, (unsigned long long)data_len);
	return apply_runs(runs, nr_runs, scratch, fn, opaque);
}

/* A frame may not ask for a window beyond the most a record holds. */
#define ZSTD_WINDOW_LOG_MAX 23

static void *new_zstd_dctx(void)
{
	ZSTD_DCtx *d = ZSTD_createDCtx();

	if (d &&
	    ZSTD_isError(ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, ZSTD_WINDOW_LOG_MAX))) {
		ZSTD_freeDCtx(d);
		return NULL;
	}
	return d;
}

int stream__ram_packed_parse(const struct stream_config *cfg, uint32_t type, const uint8_t *payload,
			     size_t len, uint8_t *scratch, void **zstd_dctx, stream_ram_fn fn,
			     void *opaque, char *err, size_t errlen)
{
	if (type == STREAM_REC_RAM_LZ4)
		return packed_parse("LZ4", unpack_lz4, NULL, cfg, payload, len, scratch, fn, opaque,
				    err, errlen);
	if (type != STREAM_REC_RAM_ZSTD)
		return ram_fail(err, errlen, "%s is not a packed RAM record", stream__type_name(type));
	if (!zstd_dctx)
		return ram_fail(err, errlen, "no zstd context");
	if (!*zstd_dctx && !(*zstd_dctx = new_zstd_dctx()))
		return -ENOMEM;
	return packed_parse("zstd", unpack_zstd, *zstd_dctx, cfg, payload, len, scratch, fn, opaque,
			    err, errlen);
}

/* The RAM header and runs, as RAM and RAM_LZ4 both begin. */
static void put_runs(uint8_t *hdr, const struct stream_ram_run *runs, unsigned int nr_runs)
{
	unsigned int i;

	stream_put32(hdr, nr_runs);
	stream_put32(hdr + 4, 0);
	for (i = 0; i < nr_runs; i++) {
		uint8_t *p = hdr + STREAM_RAM_HDR_LEN + (size_t)i * STREAM_RAM_RUN_LEN;

		stream_put64(p, runs[i].gpa);
		stream_put32(p + 8, runs[i].npages);
		stream_put32(p + 12, runs[i].kind);
	}
}

static int ram_iov(struct iovec *iov, uint8_t *hdr, const struct stream_ram_run *runs,
		   unsigned int nr_runs, const uint8_t *const *data)
{
	uint64_t data_pages = 0;
	unsigned int i;
	int n = 1;

	put_runs(hdr, runs, nr_runs);
	for (i = 0; i < nr_runs; i++) {
		if (runs[i].kind != STREAM_RAM_DATA)
			continue;
		if (!data || !data[i])
			return -EINVAL;
		data_pages += runs[i].npages;
		iov[n].iov_base = (void *)data[i];
		iov[n].iov_len = (size_t)runs[i].npages * STREAM_PAGE_SIZE;
		n++;
	}
	if (data_pages > STREAM_RAM_MAX_DATA_PAGES)
		return -E2BIG;
	iov[0].iov_base = hdr;
	iov[0].iov_len = STREAM_RAM_HDR_LEN + (size_t)nr_runs * STREAM_RAM_RUN_LEN;
	return n;
}

int stream__write_ram(struct stream_writer *w, const struct stream_ram_run *runs,
		      unsigned int nr_runs, const uint8_t *const *data)
{
	struct iovec *iov;
	uint8_t *hdr;
	int n, ret = -ENOMEM;

	if (!nr_runs || nr_runs > STREAM_RAM_MAX_RUNS)
		return -EINVAL;
	hdr = malloc(STREAM_RAM_HDR_LEN + (size_t)nr_runs * STREAM_RAM_RUN_LEN);
	iov = calloc((size_t)nr_runs + 1, sizeof(*iov));
	if (!hdr || !iov)
		goto out;
	n = ram_iov(iov, hdr, runs, nr_runs, data);
	ret = n < 0 ? n : stream__write_record(w, STREAM_REC_RAM, STREAM_REC_MANDATORY, iov, n);
out:
	free(iov);
	free(hdr);
	return ret;
}

_Static_assert(STREAM_RAM_LZ4_BOUND >= LZ4_COMPRESSBOUND(STREAM_RAM_MAX_DATA_LEN),
	       "STREAM_RAM_LZ4_BOUND below LZ4's bound");

int stream__lz4_compress(const uint8_t *data, uint64_t len, uint8_t *cbuf)
{
	int clen;

	if (!len || len > STREAM_RAM_MAX_DATA_LEN)
		return -EINVAL;
	clen = LZ4_compress_default((const char *)data, (char *)cbuf, (int)len,
				    (int)STREAM_RAM_LZ4_BOUND);
	return clen <= 0 || (uint64_t)clen >= len ? -ENOSPC : clen;
}

int stream__write_ram_packed(struct stream_writer *w, uint32_t type,
			     const struct stream_ram_run *runs, unsigned int nr_runs,
			     const uint8_t *block, uint32_t block_len)
{
	struct iovec iov[2];
	size_t hlen;
	uint8_t *hdr;
	int ret;

	if ((type != STREAM_REC_RAM_LZ4 && type != STREAM_REC_RAM_ZSTD) || !nr_runs ||
	    nr_runs > STREAM_RAM_MAX_RUNS || !block_len || block_len > STREAM_RAM_LZ4_BOUND)
		return -EINVAL;
	hlen = STREAM_RAM_HDR_LEN + (size_t)nr_runs * STREAM_RAM_RUN_LEN + STREAM_RAM_LZ4_HDR_LEN;
	hdr = malloc(hlen);
	if (!hdr)
		return -ENOMEM;
	put_runs(hdr, runs, nr_runs);
	stream_put32(hdr + hlen - STREAM_RAM_LZ4_HDR_LEN, block_len);
	stream_put32(hdr + hlen - 4, 0);
	iov[0] = (struct iovec){hdr, hlen};
	iov[1] = (struct iovec){(void *)block, block_len};
	ret = stream__write_record(w, type, STREAM_REC_MANDATORY, iov, 2);
	free(hdr);
	return ret;
}

_Static_assert(STREAM_RAM_LZ4_BOUND >= ZSTD_COMPRESSBOUND(STREAM_RAM_MAX_DATA_LEN),
	       "STREAM_RAM_LZ4_BOUND below zstd's bound");

void *stream__zstd_cctx(void)
{
	ZSTD_CCtx *c = ZSTD_createCCtx();

	if (c && ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 1))) {
		ZSTD_freeCCtx(c);
		return NULL;
	}
	return c;
}

void stream__zstd_free(void *cctx, void *dctx)
{
	ZSTD_freeCCtx(cctx);
	ZSTD_freeDCtx(dctx);
}

int stream__zstd_compress(void *cctx, const uint8_t *data, uint64_t len, uint8_t *cbuf)
{
	size_t clen;

	if (!cctx || !len || len > STREAM_RAM_MAX_DATA_LEN)
		return -EINVAL;
	clen = ZSTD_compress2(cctx, cbuf, STREAM_RAM_LZ4_BOUND, data, len);
	return ZSTD_isError(clen) || clen >= len ? -ENOSPC : (int)clen;
}

/* ---- VERIFY -------------------------------------------------------------- */

static size_t chunks_of(uint64_t size)
{
	return (size_t)((size + STREAM_DIGEST_CHUNK - 1) / STREAM_DIGEST_CHUNK);
}

/*
 * True when [off, off + len) of the memfd is one hole (never written): reading it
 * through the mapping would fault in, and on a shared memfd allocate, every page of it.
 */
static bool memfd_hole(int fd, uint64_t off, uint64_t len)
{
	off_t data = lseek(fd, (off_t)off, SEEK_DATA);

	if (data < 0)
		return errno == ENXIO; /* no data from off to the end */
	return (uint64_t)data >= off + len;
}

int stream__ram_digest(struct guest_mem *mem, uint64_t **digests, size_t *n)
{
	/* What a hole reads as; .bss, so its pages are the shared zero page. */
	static uint8_t zeros[STREAM_DIGEST_CHUNK];
	size_t total = 0, k = 0;
	unsigned int i;
	uint64_t *d;

	if (mem->nr_regions > MEM_MAX_REGIONS)
		return -EINVAL;
	for (i = 0; i < mem->nr_regions; i++)
		total += chunks_of(mem->regions[i].size);
	d = calloc(total ? total : 1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	for (i = 0; i < mem->nr_regions; i++) {
		const struct mem_region *rg = &mem->regions[i];
		const uint8_t *base = mem->base + rg->fd_offset;
		uint64_t off;

		for (off = 0; off < rg->size; off += STREAM_DIGEST_CHUNK) {
			uint64_t len = MIN(STREAM_DIGEST_CHUNK, rg->size - off);
			const uint8_t *p = base + off;

			if (mem->memfd >= 0 && memfd_hole(mem->memfd, rg->fd_offset + off, len))
				p = zeros;
			d[k++] = XXH3_64bits_withSeed(p, len, rg->gpa + off);
		}
	}
	*digests = d;
	*n = total;
	return 0;
}

size_t stream__digest_count(const struct stream_config *cfg)
{
	size_t total = 0;
	unsigned int i;

	for (i = 0; i < cfg->nr_regions && i < STREAM_MAX_REGIONS; i++)
		total += chunks_of(cfg->regions[i].size);
	return total;
}

int stream__digest_chunk_gpa(const struct stream_config *cfg, size_t idx, uint64_t *gpa)
{
	unsigned int i;

	for (i = 0; i < cfg->nr_regions && i < STREAM_MAX_REGIONS; i++) {
		size_t c = chunks_of(cfg->regions[i].size);

		if (idx < c) {
			*gpa = cfg->regions[i].gpa + (uint64_t)idx * STREAM_DIGEST_CHUNK;
			return 0;
		}
		idx -= c;
	}
	return -EINVAL;
}

int stream__ram_digest_compare(const struct stream_config *cfg, const uint64_t *a, size_t na,
			       const uint64_t *b, size_t nb, uint64_t *bad_gpa)
{
	size_t i;

	if (na != nb || na != stream__digest_count(cfg))
		return -EINVAL;
	for (i = 0; i < na; i++) {
		if (a[i] == b[i])
			continue;
		if (stream__digest_chunk_gpa(cfg, i, bad_gpa))
			return -EINVAL;
		return -EBADMSG;
	}
	return 0;
}

int stream__write_verify(struct stream_writer *w, const uint64_t *digests, size_t n)
{
	uint8_t hdr[16];
	struct iovec iov[2];
	uint64_t *le;
	size_t i;
	int ret;

	if (n > (STREAM_VERIFY_MAX_LEN - 16) / 8)
		return -E2BIG;
	le = malloc(n ? n * 8 : 1);
	if (!le)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		stream_put64((uint8_t *)&le[i], digests[i]);
	stream_put64(hdr, STREAM_DIGEST_CHUNK);
	stream_put64(hdr + 8, n);
	iov[0] = (struct iovec){hdr, sizeof(hdr)};
	iov[1] = (struct iovec){le, n * 8};
	ret = stream__write_record(w, STREAM_REC_VERIFY, stream__default_flags(STREAM_REC_VERIFY),
				   iov, 2);
	free(le);
	return ret;
}

int stream__verify_decode(const uint8_t *payload, size_t len, uint64_t **digests, size_t *n,
			  char *err, size_t errlen)
{
	uint64_t chunk, count;
	uint64_t *d;
	size_t i;

	if (len < 16 || len > STREAM_VERIFY_MAX_LEN)
		return ram_fail(err, errlen, "VERIFY payload of %zu bytes", len);
	chunk = stream_get64(payload);
	count = stream_get64(payload + 8);
	if (chunk != STREAM_DIGEST_CHUNK)
		return ram_fail(err, errlen, "VERIFY chunk size %llu, expected %llu",
				(unsigned long long)chunk, (unsigned long long)STREAM_DIGEST_CHUNK);
	if ((len - 16) % 8 || (len - 16) / 8 != count)
		return ram_fail(err, errlen, "VERIFY announces %llu digests in %zu bytes",
				(unsigned long long)count, len - 16);
	d = calloc(count ? count : 1, sizeof(*d));
	if (!d)
		return ram_fail(err, errlen, "out of memory");
	for (i = 0; i < count; i++)
		d[i] = stream_get64(payload + 16 + i * 8);
	*digests = d;
	*n = count;
	return 0;
}
