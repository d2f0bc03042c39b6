// SPDX-License-Identifier: GPL-2.0
/*
 * dump-stream: a decoder for captured streams, built on the same reader and
 * decoders as the destination, so "dump-stream accepts it" means "a destination
 * would accept it" (QEMU's analyze-migration.py is a separate parser that can
 * drift; this cannot).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "godwit/dump.h"
#include "godwit/seal.h"
#include "godwit/stream.h"
#include "godwit/stream_check.h"
#include "godwit/tls.h"

#define TEXT_LIST_MAX 8 /* text lines show the first few runs/digests only */
#define EM_DEPTH      6

/*
 * One emitter, two renderings: text "key=value" lines or compact JSON objects,
 * so each record type is described once.
 */
struct emitter {
	FILE *out;
	bool json;
	int depth;
	json_t *stack[EM_DEPTH];
	bool is_list[EM_DEPTH];
	bool first[EM_DEPTH];
};

struct dump {
	struct emitter em;
	struct stream_config cfg;
	bool have_cfg;
	struct stream_check chk; /* what a destination checks, from CONFIG on */
	uint16_t minor;		 /* the header's */
	bool have_chk;
	void *zstd_dctx; /* made for the first RAM_ZSTD record, kept for the others */
	char err[256];
};

static void em_begin(struct emitter *e)
{
	e->depth = 0;
	e->first[0] = true;
	e->is_list[0] = false;
	if (e->json)
		e->stack[0] = json_object();
}

static void em_end(struct emitter *e)
{
	if (e->json) {
		json_dumpf(e->stack[0], e->out, JSON_COMPACT);
		json_decref(e->stack[0]);
		e->stack[0] = NULL;
	}
	fputc('\n', e->out);
}

static void em_text_prefix(struct emitter *e, const char *key)
{
	if (!e->first[e->depth])
		fputc(e->is_list[e->depth] ? ',' : ' ', e->out);
	e->first[e->depth] = false;
	if (key)
		fprintf(e->out, "%s=", key);
}

static void em_json_put(struct emitter *e, const char *key, json_t *v)
{
	json_t *top = e->stack[e->depth];

	if (!v)
		return;
	if (e->is_list[e->depth])
		json_array_append_new(top, v);
	else
		json_object_set_new(top, key ? key : "?", v);
}

enum em_fmt {
	DEC,  /* decimal everywhere */
	ADDR, /* hex in text, a number in JSON */
	HASH, /* hex everywhere: a JSON number could not hold it */
};

static void em_u64(struct emitter *e, const char *key, uint64_t v, enum em_fmt fmt)
{
	char s[32];

	snprintf(s, sizeof(s), fmt == DEC ? "%" PRIu64 : "0x%" PRIx64, v);
	if (!e->json) {
		em_text_prefix(e, key);
		fputs(s, e->out);
		return;
	}
	/* JSON integers are signed 64-bit: larger values and hashes go as strings */
	if (fmt == HASH || v > INT64_MAX)
		em_json_put(e, key, json_string(s));
	else
		em_json_put(e, key, json_integer((json_int_t)v));
}

/* Bytes from the stream: printable ASCII kept, the rest \xHH, so output stays one
 * line of valid UTF-8 whatever the stream holds. */
static void em_bytes_str(struct emitter *e, const char *key, const uint8_t *p, size_t len)
{
	char *s = malloc(len * 4 + 1), *q = s;
	size_t i;

	if (!s)
		return;
	for (i = 0; i < len; i++) {
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\')
			*q++ = (char)p[i];
		else
			q += sprintf(q, "\\x%02x", p[i]);
	}
	*q = '\0';
	if (e->json) {
		em_json_put(e, key, json_string(s));
	} else {
		em_text_prefix(e, key);
		fprintf(e->out, "\"%s\"", s);
	}
	free(s);
}

static void em_str(struct emitter *e, const char *key, const char *s)
{
	if (e->json) {
		em_json_put(e, key, json_string(s));
		return;
	}
	em_text_prefix(e, key);
	fputs(s, e->out);
}

static void em_hex(struct emitter *e, const char *key, const uint8_t *p, size_t len)
{
	char *s = malloc(len * 2 + 1);
	size_t i;

	if (!s)
		return;
	for (i = 0; i < len; i++)
		sprintf(s + i * 2, "%02x", p[i]);
	s[len * 2] = '\0';
	em_str(e, key, s);
	free(s);
}

static void em_open(struct emitter *e, const char *key, bool list)
{
	json_t *c = NULL;

	if (e->depth + 1 >= EM_DEPTH)
		return;
	if (e->json) {
		c = list ? json_array() : json_object();
		em_json_put(e, key, json_incref(c));
	} else {
		em_text_prefix(e, key);
		fputc(list ? '[' : '{', e->out);
	}
	e->depth++;
	e->stack[e->depth] = c;
	e->is_list[e->depth] = list;
	e->first[e->depth] = true;
}

static void em_close(struct emitter *e)
{
	if (!e->depth)
		return;
	if (e->json)
		json_decref(e->stack[e->depth]);
	else
		fputc(e->is_list[e->depth] ? ']' : '}', e->out);
	e->depth--;
}

/* ---- records ------------------------------------------------------------- */

static void dump_device(struct emitter *e, const struct stream_device *dev)
{
	em_open(e, NULL, false);
	em_str(e, "type", dev->type);
	em_u64(e, "instance", dev->instance, DEC);
	if (dev->has_mac) {
		char mac[18];

		snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", dev->mac[0],
			 dev->mac[1], dev->mac[2], dev->mac[3], dev->mac[4], dev->mac[5]);
		em_str(e, "mac", mac);
	}
	if (dev->capacity)
		em_u64(e, "capacity", dev->capacity, DEC);
	if (dev->readonly)
		em_str(e, "readonly", "yes");
	if (dev->disk_to[0])
		em_str(e, "disk_to", dev->disk_to);
	em_close(e);
}

static int dump_config(struct dump *d, const struct stream_record *rec)
{
	struct emitter *e = &d->em;
	struct stream_config *c = &d->cfg;
	unsigned int i;

	if (stream__config_decode(rec->payload, rec->length, c, d->err, sizeof(d->err)))
		return -EBADMSG;
	d->have_cfg = true;
	em_u64(e, "ram_size", c->ram_size, ADDR);
	em_u64(e, "nr_vcpus", c->nr_vcpus, DEC);
	em_u64(e, "machine_version", c->machine_version, DEC);
	em_open(e, "regions", true);
	for (i = 0; i < c->nr_regions; i++) {
		em_open(e, NULL, false);
		em_u64(e, "gpa", c->regions[i].gpa, ADDR);
		em_u64(e, "size", c->regions[i].size, ADDR);
		em_close(e);
	}
	em_close(e);
	em_hex(e, "uuid", c->uuid, sizeof(c->uuid));
	em_u64(e, "cpuid_bytes", c->cpuid_len, DEC);
	em_u64(e, "cpuid_hash", XXH3_64bits(c->cpuid, c->cpuid_len), HASH);
	em_bytes_str(e, "cmdline", (const uint8_t *)c->cmdline, strlen(c->cmdline));
	em_open(e, "devices", true);
	for (i = 0; i < c->nr_devices; i++)
		dump_device(e, &c->devices[i]);
	em_close(e);
	d->have_chk = true;
	return stream_check__config(&d->chk, c, d->minor, d->err, sizeof(d->err));
}

struct ram_sum {
	struct emitter *e;
	unsigned int shown;
	uint64_t data_pages, zero_pages;
};

static int ram_run(void *opaque, uint64_t gpa, uint32_t npages, uint32_t kind, const uint8_t *data)
{
	struct ram_sum *s = opaque;

	(void)data;
	if (kind == STREAM_RAM_DATA)
		s->data_pages += npages;
	else
		s->zero_pages += npages;
	if (!s->e->json && s->shown == TEXT_LIST_MAX) {
		em_str(s->e, NULL, "...");
		s->shown++;
	}
	if (!s->e->json && s->shown > TEXT_LIST_MAX)
		return 0;
	s->shown++;
	em_open(s->e, NULL, false);
	em_u64(s->e, "gpa", gpa, ADDR);
	em_u64(s->e, "npages", npages, DEC);
	em_str(s->e, "kind", kind == STREAM_RAM_DATA ? "data" : "zero");
	em_close(s->e);
	return 0;
}

static int dump_ram(struct dump *d, const struct stream_record *rec)
{
	struct ram_sum s = {.e = &d->em};
	int ret;

	em_u64(&d->em, "nr_runs", stream_get32(rec->payload), DEC);
	em_open(&d->em, "runs", true);
	ret = stream__ram_record_parse(&d->cfg, rec->payload, rec->length, ram_run, &s, d->err,
				       sizeof(d->err));
	em_close(&d->em);
	if (ret)
		return ret;
	em_u64(&d->em, "data_pages", s.data_pages, DEC);
	em_u64(&d->em, "zero_pages", s.zero_pages, DEC);
	return 0;
}

/* The runs as for RAM, then the block's size; the block is expanded to check it. */
static int dump_ram_packed(struct dump *d, const struct stream_record *rec)
{
	struct ram_sum s = {.e = &d->em};
	uint8_t *pages = malloc(STREAM_RAM_MAX_DATA_LEN);
	int ret;

	if (!pages)
		return -ENOMEM;
	em_u64(&d->em, "nr_runs", stream_get32(rec->payload), DEC);
	em_open(&d->em, "runs", true);
	ret = stream__ram_packed_parse(&d->cfg, rec->type, rec->payload, rec->length, pages,
				       &d->zstd_dctx, ram_run, &s, d->err, sizeof(d->err));
	em_close(&d->em);
	free(pages);
	if (ret)
		return ret;
	em_u64(&d->em, "data_pages", s.data_pages, DEC);
	em_u64(&d->em, "zero_pages", s.zero_pages, DEC);
	/* Parsed: the block is what follows the header and the runs. */
	em_u64(&d->em, rec->type == STREAM_REC_RAM_ZSTD ? "zstd_bytes" : "lz4_bytes",
	       rec->length - STREAM_RAM_HDR_LEN - STREAM_RAM_LZ4_HDR_LEN -
		       (uint64_t)stream_get32(rec->payload) * STREAM_RAM_RUN_LEN,
	       DEC);
	return 0;
}

static int dump_round(struct dump *d, const struct stream_record *rec)
{
	struct stream_round rd;

	if (stream__round_decode(rec->payload, rec->length, &rd)) {
		snprintf(d->err, sizeof(d->err), "reserved field not zero");
		return -EBADMSG;
	}
	em_u64(&d->em, "round", rd.round, DEC);
	em_u64(&d->em, "pages_sent", rd.pages_sent, DEC);
	em_u64(&d->em, "bytes_sent", rd.bytes_sent, DEC);
	em_u64(&d->em, "dirty_pages", rd.dirty_pages, DEC);
	em_u64(&d->em, "duration_ns", rd.duration_ns, DEC);
	return 0;
}

/* DISK: checked as a destination checks it; DATA's bytes are shown by their hash. */
static int dump_disk(struct dump *d, const struct stream_record *rec)
{
	static const char *const kinds[] = {
	    [STREAM_DISK_DATA] = "data",
	    [STREAM_DISK_ZERO] = "zero",
	    [STREAM_DISK_DONE] = "done",
	    [STREAM_DISK_DIGEST] = "digest",
	};
	struct stream_disk sd;
	int ret = stream_check__disk(&d->chk, rec, &sd, d->err, sizeof(d->err));

	if (ret)
		return ret;
	em_u64(&d->em, "disk", sd.disk, DEC);
	em_str(&d->em, "kind", kinds[sd.kind]);
	em_u64(&d->em, "offset", sd.offset, DEC);
	em_u64(&d->em, "length", sd.length, DEC);
	if (sd.data)
		em_u64(&d->em, "data_hash", XXH3_64bits(sd.data, sd.length), HASH);
	if (sd.kind == STREAM_DISK_DIGEST)
		em_u64(&d->em, "digest", sd.digest, HASH);
	return 0;
}

static void dump_field(struct emitter *e, const struct stream_tlv *t)
{
	em_open(e, NULL, false);
	em_u64(e, "tag", t->tag, DEC);
	if (t->flags & STREAM_TLV_OPTIONAL)
		em_str(e, "optional", "1");
	em_u64(e, "len", t->len, DEC);
	if (t->len == 4)
		em_u64(e, "u32", stream_get32(t->value), HASH);
	else if (t->len == 8)
		em_u64(e, "u64", stream_get64(t->value), HASH);
	else if (t->len <= 64)
		em_hex(e, "hex", t->value, t->len);
	em_close(e);
}

static int dump_state(struct dump *d, const struct stream_record *rec)
{
	struct stream_state_hdr sh;
	struct stream_tlv_reader tr;
	struct stream_tlv t;
	int ret;

	ret = stream__state_parse(rec->payload, rec->length, &sh, &tr, d->err, sizeof(d->err));
	if (ret)
		return ret;
	em_str(&d->em, "id", sh.id);
	em_u64(&d->em, "instance", sh.instance, DEC);
	em_u64(&d->em, "version", sh.version, DEC);
	em_open(&d->em, "fields", true);
	while ((ret = stream__tlv_next(&tr, &t)) > 0)
		dump_field(&d->em, &t);
	em_close(&d->em);
	if (ret < 0) {
		snprintf(d->err, sizeof(d->err), "STATE field at byte %zu runs past the end",
			 STREAM_STATE_HDR_LEN + tr.pos);
		return ret;
	}
	return stream_check__state(&d->chk, rec, d->err, sizeof(d->err));
}

static int dump_verify(struct dump *d, const struct stream_record *rec)
{
	uint64_t *dig;
	size_t n, i, shown;
	int ret;

	ret = stream__verify_decode(rec->payload, rec->length, &dig, &n, d->err, sizeof(d->err));
	if (ret)
		return ret;
	em_u64(&d->em, "chunk", STREAM_DIGEST_CHUNK, DEC);
	em_u64(&d->em, "nr_digests", n, DEC);
	shown = d->em.json ? n : MIN(n, TEXT_LIST_MAX);
	em_open(&d->em, "digests", true);
	for (i = 0; i < shown; i++)
		em_u64(&d->em, NULL, dig[i], HASH);
	if (shown < n)
		em_str(&d->em, NULL, "...");
	em_close(&d->em);
	free(dig);
	if (d->have_cfg && n != stream__digest_count(&d->cfg)) {
		snprintf(d->err, sizeof(d->err), "%zu digests for a layout of %zu chunks", n,
			 stream__digest_count(&d->cfg));
		return -EBADMSG;
	}
	return 0;
}

static int dump_payload(struct dump *d, const struct stream_record *rec)
{
	switch (rec->type) {
	case STREAM_REC_CONFIG:
		return dump_config(d, rec);
	case STREAM_REC_RAM:
		return dump_ram(d, rec);
	case STREAM_REC_RAM_LZ4:
	case STREAM_REC_RAM_ZSTD:
		return dump_ram_packed(d, rec);
	case STREAM_REC_ROUND:
		return dump_round(d, rec);
	case STREAM_REC_STATE:
		return dump_state(d, rec);
	case STREAM_REC_VERIFY:
		return dump_verify(d, rec);
	case STREAM_REC_DISK:
		return dump_disk(d, rec);
	case STREAM_REC_END:
		em_u64(&d->em, "records", stream_get64(rec->payload), DEC);
		em_u64(&d->em, "checksum", stream_get64(rec->payload + 8), HASH);
		return stream_check__complete(&d->chk, d->err, sizeof(d->err));
	}
	return 0;
}

static int dump_record(struct dump *d, const struct stream_record *rec)
{
	int ret;

	em_begin(&d->em);
	em_u64(&d->em, "offset", rec->offset, DEC);
	em_u64(&d->em, "record", rec->index, DEC);
	em_str(&d->em, "type", stream__type_name(rec->type));
	em_u64(&d->em, "len", rec->length, DEC);
	ret = dump_payload(d, rec);
	while (d->em.depth)
		em_close(&d->em);
	em_end(&d->em);
	return ret;
}

static void dump_error(struct dump *d, const char *msg)
{
	em_begin(&d->em);
	em_str(&d->em, "type", "error");
	em_bytes_str(&d->em, "message", (const uint8_t *)msg, strlen(msg));
	em_end(&d->em);
}

static void dump_header(struct dump *d, const struct stream_header *h)
{
	em_begin(&d->em);
	em_str(&d->em, "type", "header");
	em_u64(&d->em, "major", h->major, DEC);
	em_u64(&d->em, "minor", h->minor, DEC);
	em_u64(&d->em, "page_size", h->page_size, DEC);
	em_str(&d->em, "arch", "x86_64");
	em_end(&d->em);
}

static void dump_summary(struct dump *d, const struct stream_reader *r)
{
	em_begin(&d->em);
	em_str(&d->em, "type", "summary");
	em_u64(&d->em, "records", r->nr_records, DEC);
	em_u64(&d->em, "skipped", r->nr_skipped, DEC);
	em_u64(&d->em, "bytes", r->io->bytes_read, DEC);
	em_str(&d->em, "status", "ok");
	em_end(&d->em);
}

/* Why a read failed: an encrypted file's reason first (it says more than the reader's). */
static const char *why(const struct stream_reader *r)
{
	const char *channel = stream_io__channel_error(r->io);

	return channel ? channel : r->err;
}

/* Reads the whole stream; 0 if it ended with a valid END, 1 otherwise. */
static int dump_stream(struct dump *d, struct stream_reader *r)
{
	struct stream_header hdr;
	struct stream_record rec;
	char msg[600];

	if (stream__read_header(r, &hdr)) {
		dump_error(d, why(r));
		return 1;
	}
	dump_header(d, &hdr);
	d->minor = hdr.minor;
	for (;;) {
		if (stream__read_record(r, &rec)) {
			dump_error(d, why(r));
			return 1;
		}
		if (dump_record(d, &rec)) {
			snprintf(msg, sizeof(msg), "record %llu (%s) at offset %llu: %s",
				 (unsigned long long)rec.index, stream__type_name(rec.type),
				 (unsigned long long)rec.offset, d->err);
			dump_error(d, msg);
			return 1;
		}
		if (rec.type == STREAM_REC_END)
			break;
	}
	if (stream_check__file_ends(r->io, d->err, sizeof(d->err))) {
		dump_error(d, d->err);
		return 1;
	}
	dump_summary(d, r);
	return 0;
}

static void usage(FILE *out)
{
	fputs("usage: godwit dump-stream [--json] [--encrypt-key KEYFILE] FILE\n"
	      "\n"
	      "Decodes a godwit migration stream or snapshot file and prints one line per\n"
	      "record: offset, record number, type, length and the decoded payload (CONFIG\n"
	      "fields, RAM runs, STATE fields, END totals). The stream is checked exactly as a\n"
	      "destination checks it; the first problem is printed and the exit status is 1.\n"
	      "\n"
	      "  --json     one JSON object per line instead of key=value text\n"
	      "  --encrypt-key KEYFILE\n"
	      "             the key of a snapshot encrypted at rest (migrate --encrypt-key)\n"
	      "  -h, --help this text\n",
	      out);
}

static int run_file(const char *path, const uint8_t *key, bool json, FILE *out)
{
	struct dump *d = calloc(1, sizeof(*d));
	struct stream_reader r;
	struct stream_io io;
	char err[256];
	int fd, ret = 2;

	if (!d)
		return 2;
	d->em = (struct emitter){.out = out, .json = json};
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(out, "dump-stream: %s: %s\n", path, strerror(errno));
		goto err_free;
	}
	if (stream_io__init_fd(&io, fd))
		goto err_close;
	if (seal__attach_reader(&io, fd, key, err, sizeof(err))) {
		fprintf(out, "dump-stream: %s: %s\n", path, err);
		goto err_io;
	}
	if (stream__reader_init(&r, &io, STREAM_CTX_DATA))
		goto err_io;
	ret = dump_stream(d, &r);
	stream__reader_exit(&r);
err_io:
	stream_io__exit(&io);
err_close:
	close(fd);
err_free:
	if (d->have_chk)
		stream_check__exit(&d->chk);
	stream__config_release(&d->cfg);
	stream__zstd_free(NULL, d->zstd_dctx);
	free(d);
	return ret;
}

int dump__main(int argc, char **argv, FILE *out)
{
	const char *path = NULL;
	uint8_t key[SEAL_KEY_LEN];
	bool json = false, has_key = false;
	char err[256];
	int i, ret;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "--encrypt-key") && i + 1 < argc) {
			if (tls__psk_read_file(argv[++i], key, err, sizeof(err))) {
				fprintf(out, "dump-stream: --encrypt-key: %s\n", err);
				return 2;
			}
			has_key = true;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(out);
			return 0;
		} else if (argv[i][0] == '-' || path) {
			usage(out);
			return 2;
		} else {
			path = argv[i];
		}
	}
	if (!path) {
		usage(out);
		return 2;
	}
	ret = run_file(path, has_key ? key : NULL, json, out);
	explicit_bzero(key, sizeof(key));
	return ret;
}
