/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_STREAM_H
#define GODWIT_STREAM_H

/*
 * The migration stream: one format for live migration over TCP and for snapshot
 * files. docs/migration-format.md is the byte-by-byte description; this header is
 * the C view of it. The destination treats every byte as hostile: each decoder
 * checks lengths before it allocates and ranges before it indexes, and reports
 * what went wrong in a message a person can act on.
 */

#include <endian.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include "godwit/util.h"

struct guest_mem;
struct tls_conn;
struct seal;

/* ---- header ------------------------------------------------------------ */

#define STREAM_MAGIC	     "GODWITMS"
#define STREAM_MAGIC_LEN     8
#define STREAM_VERSION_MAJOR 1
#define STREAM_VERSION_MINOR 8
#define STREAM_PAGE_SIZE     4096U
#define STREAM_ARCH_X86_64   1U
#define STREAM_HEADER_LEN    32

struct stream_header {
	uint16_t major;
	uint16_t minor;
	uint32_t page_size;
	uint32_t arch;
	uint32_t flags;
};

/* ---- records ----------------------------------------------------------- */

#define STREAM_RECORD_HDR_LEN 24

/* Record flags. Every other bit is reserved and rejected. */
#define STREAM_REC_MANDATORY   (1U << 0)
#define STREAM_REC_FLAGS_KNOWN STREAM_REC_MANDATORY

enum stream_type {
	STREAM_REC_INVALID = 0, /* never valid: catches zeroed memory */
	STREAM_REC_CONFIG = 1,
	STREAM_REC_RAM = 2,
	STREAM_REC_ROUND = 3,
	STREAM_REC_STATE = 4,
	STREAM_REC_VERIFY = 5,
	STREAM_REC_END = 6,
	STREAM_REC_RAM_LZ4 = 7, /* a RAM record whose data pages are one LZ4 block (1.2) */
	STREAM_REC_RAM_ZSTD = 8, /* the same with one zstd frame (1.3) */
	STREAM_REC_DISK = 9,	 /* a piece of a disk image sent to the destination (1.8) */
	/* Control messages: only on a control channel (no header, no END). */
	STREAM_REC_GO = 0x100,	    /* source -> destination: you may resume */
	STREAM_REC_READY = 0x101,   /* destination -> source: loaded, verified */
	STREAM_REC_RESUMED = 0x102, /* destination -> source: guest runs here */
	STREAM_REC_ERROR = 0x103,   /* either way: u32 code + message */
	STREAM_REC_ACCEPTED = 0x104, /* destination -> source: VM built, send RAM */
	STREAM_REC_ROUND_ACK = 0x105, /* destination -> source: u32 round, all before it applied */
	STREAM_REC_STRIPE = 0x106, /* source -> destination: u32 n; striped over n connections from here (1.3) */
	STREAM_REC_JOIN = 0x107,   /* source -> destination, alone on an extra connection: token, index */
	STREAM_REC_STRIPE_CHUNKED = 0x108, /* STRIPE with its chunk size: u32 n (1..), u32 chunk (1.4) */
};

/*
 * Several connections (1.3). On a long link TCP's window grows one round trip at a
 * time on each connection; n connections start with n windows. The source offers
 * up to STREAM_MAX_CONNECTIONS in CONFIG with a random token, the destination takes
 * n in ACCEPTED, the source sends JOIN (token, index 1..n-1) alone on each extra
 * connection and STRIPE on the first; after STRIPE every byte from source to
 * destination goes STREAM_STRIPE_CHUNK bytes at a time to connection 0, 1, ... n-1,
 * 0, ... (the stream itself is unchanged). Destination -> source stays on the first.
 * From 1.4, once the destination takes STREAM_FEATURE_STRIPE_CHUNK, the source sends
 * STRIPE_CHUNKED instead, which names the chunk: a power of two from
 * STREAM_STRIPE_CHUNK_MIN to STREAM_STRIPE_CHUNK_MAX.
 */
#define STREAM_MAX_CONNECTIONS 16U
#define STREAM_TOKEN_LEN       16
#define STREAM_JOIN_LEN	       (STREAM_TOKEN_LEN + 4)
#define STREAM_STRIPE_LEN      4
#define STREAM_STRIPE_CHUNK    (64 * KiB) /* STRIPE's (1.3) */
#define STREAM_STRIPE_CHUNKED_LEN 8
#define STREAM_STRIPE_CHUNK_MIN	  (4 * KiB)
#define STREAM_STRIPE_CHUNK_MAX	  (1 * MiB)

/* Per-type payload limits, checked before anything is allocated. */
#define STREAM_CONFIG_MAX_LEN	  (256 * KiB)
#define STREAM_RAM_MAX_RUNS	  1024U
#define STREAM_RAM_MAX_DATA_PAGES 1024U
#define STREAM_RAM_HDR_LEN	  8
#define STREAM_RAM_RUN_LEN	  16
#define STREAM_RAM_MAX_LEN                                                                         \
	(STREAM_RAM_HDR_LEN + STREAM_RAM_MAX_RUNS * STREAM_RAM_RUN_LEN +                           \
	 (uint64_t)STREAM_RAM_MAX_DATA_PAGES * STREAM_PAGE_SIZE)
/* RAM_LZ4: the RAM header and runs, u32 block length, u32 reserved, the LZ4 block. */
#define STREAM_RAM_LZ4_HDR_LEN 8
#define STREAM_RAM_MAX_DATA_LEN ((uint64_t)STREAM_RAM_MAX_DATA_PAGES * STREAM_PAGE_SIZE)
/* LZ4_COMPRESSBOUND of the most data a record holds (checked against lz4.h). */
#define STREAM_RAM_LZ4_BOUND (STREAM_RAM_MAX_DATA_LEN + STREAM_RAM_MAX_DATA_LEN / 255 + 16)
#define STREAM_RAM_LZ4_MAX_LEN                                                                     \
	(STREAM_RAM_HDR_LEN + STREAM_RAM_MAX_RUNS * STREAM_RAM_RUN_LEN + STREAM_RAM_LZ4_HDR_LEN +  \
	 STREAM_RAM_LZ4_BOUND)
#define STREAM_ROUND_LEN       40
#define STREAM_STATE_MAX_LEN   (1 * MiB)
#define STREAM_VERIFY_MAX_LEN  (16 + 4 * MiB)
#define STREAM_END_LEN	       16
#define STREAM_ERROR_MSG_MAX   256
#define STREAM_ERROR_MAX_LEN   (4 + STREAM_ERROR_MSG_MAX)
#define STREAM_UNKNOWN_MAX_LEN (1 * MiB)
/* DISK: u32 disk, u32 kind, u64 offset, u64 length, then the data of a DATA piece. */
#define STREAM_DISK_HDR_LEN	 24
#define STREAM_DISK_MAX_DATA	 (1 * MiB)
#define STREAM_DISK_MAX_LEN	 (STREAM_DISK_HDR_LEN + STREAM_DISK_MAX_DATA)

/* Which channel a reader or writer serves: decides which types are allowed. */
enum stream_context {
	STREAM_CTX_DATA,    /* header, CONFIG ... END */
	STREAM_CTX_CONTROL, /* GO / READY / RESUMED / ERROR, no header */
};

/* Where a data stream is, for the order rules. */
enum stream_phase {
	STREAM_PHASE_CONFIG,   /* nothing read yet: CONFIG must come */
	STREAM_PHASE_PRECOPY,  /* RAM, ROUND */
	STREAM_PHASE_FINAL,    /* after the first STATE: STATE, RAM */
	STREAM_PHASE_VERIFIED, /* after VERIFY: only END */
	STREAM_PHASE_DONE,     /* after END: nothing */
	STREAM_PHASE_CONTROL,  /* control channel */
};

/* Returns "RAM", "CONFIG", ... or "unknown". */
const char *stream__type_name(uint32_t type);

/* ---- buffered I/O ------------------------------------------------------ */

/*
 * A byte source and sink: an fd (socket or file) or memory. Reads are buffered;
 * read_full and writev_full loop over short transfers and EINTR so the layers
 * above never see a partial record.
 */
struct stream_io {
	int fd; /* -1 for memory */
	/* memory backend */
	const uint8_t *mem_rd;
	size_t mem_rd_len;
	uint8_t *mem_wr;
	size_t mem_wr_len, mem_wr_cap;
	/* read buffer (fd backend) */
	uint8_t *rbuf;
	size_t rbuf_pos, rbuf_len, rbuf_cap;
	uint64_t bytes_read; /* consumed by the caller */
	uint64_t bytes_written;
	/* Striped (stream_io__stripe): one direction over several connections. */
	int stripe_fd[STREAM_MAX_CONNECTIONS];
	unsigned int nr_stripes; /* 0: not striped */
	bool stripe_reads;	 /* the striped direction: reads, else writes */
	uint64_t stripe_pos;	 /* bytes of that direction moved since it was striped */
	uint32_t stripe_chunk;
	/* Reads take exactly what is asked (stream_io__unbuffered): nothing read ahead. */
	bool unbuffered;
	/* stream_io__bound: how long a read or write may wait, and what ends the wait. */
	int wait_ms; /* 0: blocking I/O, no bound */
	int stop_fd; /* readable: give up with -EINTR; -1: none */
	int gave_up;	      /* -ETIMEDOUT or -EINTR: why a bounded wait ended */
	/*
	 * TLS (stream_io__set_tls): the session on each connection, [0] on fd, [i] on
	 * stripe_fd[i]; NULL: plaintext. Owned: stream_io__exit frees them. Writes are
	 * gathered into whole records (wstage) for the connection wstage_conn.
	 */
	struct tls_conn *tls[STREAM_MAX_CONNECTIONS];
	uint8_t *wstage;
	size_t wstage_len;
	unsigned int wstage_conn;
	/* A snapshot file encrypted at rest (stream_io__seal): its bytes go through it. */
	struct seal *seal;
};

int __must_check stream_io__init_fd(struct stream_io *io, int fd);
/* Reads from [data, data+len); the memory is not copied and must outlive io. */
void stream_io__init_mem_reader(struct stream_io *io, const void *data, size_t len);
/* Writes into a growing buffer; see stream_io__mem_data(). */
void stream_io__init_mem_writer(struct stream_io *io);
const uint8_t *stream_io__mem_data(const struct stream_io *io, size_t *len);
/*
 * A memory writer goes on over fd: what it holds has been sent by the caller (the
 * first bytes of a connection) and is dropped; the byte count goes on. 0 or -ENOMEM.
 */
int __must_check stream_io__mem_to_fd(struct stream_io *io, int fd);
/*
 * From now on connection i (0: fd, else stripe_fd[i]) goes through the TLS session c,
 * which io owns from here. 0 or -EINVAL, -ENOMEM.
 */
int __must_check stream_io__set_tls(struct stream_io *io, unsigned int i, struct tls_conn *c);
/*
 * stream_io__mem_to_fd for a connection with TLS: the bytes the memory writer holds
 * go out through c (which io owns from here, even on failure) as the first ones.
 */
int __must_check stream_io__mem_to_tls(struct stream_io *io, int fd, struct tls_conn *c);
/*
 * From now on the fd (a snapshot file) is read or written through s (seal.h), which
 * io owns from here; a writer ends with stream_io__finish. 0 or -EINVAL.
 */
int __must_check stream_io__seal(struct stream_io *io, struct seal *s);
/* A sealed writer's last chunk (0 where there is none to write): 0 or -errno. */
int __must_check stream_io__finish(struct stream_io *io);
/* Why the channel failed: TLS on a connection (tls__conn_error) or a sealed file. */
const char *stream_io__channel_error(const struct stream_io *io);
/* Frees the buffers and TLS sessions; never closes the fd (the caller owns it). */
void stream_io__exit(struct stream_io *io);
/* Exactly len bytes: 0, -ENODATA on end of input before len bytes, -errno. */
int __must_check stream_io__read_full(struct stream_io *io, void *buf, size_t len);
/*
 * Waits up to ms for something to read (bytes already buffered count): 0,
 * -ETIMEDOUT or -errno. For the control channel's one-record exchanges.
 */
int __must_check stream_io__wait_readable(struct stream_io *io, int ms);
/* All of the iovec: 0 or -errno. */
int __must_check stream_io__writev_full(struct stream_io *io, const struct iovec *iov, int iovcnt);
/*
 * From now on, reads (or writes) go chunk bytes at a time to fds[0], fds[1], ...
 * fds[n-1], fds[0], ...; fds[0] is io's own fd, and bytes already read ahead from it
 * count as the start of its first chunk (more than a chunk is an error).
 * 2 <= n <= STREAM_MAX_CONNECTIONS, chunk as STRIPE_CHUNKED allows. Ends unbuffered.
 */
int __must_check stream_io__stripe(struct stream_io *io, const int *fds, unsigned int n,
				   uint32_t chunk, bool reads);
/*
 * on: until stream_io__stripe (or off), reads take exactly the bytes asked for, so that
 * a record read just before striping does not read ahead into another connection's chunk.
 */
void stream_io__unbuffered(struct stream_io *io, bool on);
/*
 * Bounds every wait of io's connections (the ones striped over too): a read or write
 * that makes no progress for ms fails with -ETIMEDOUT, and once stop_fd (>= 0; a
 * signalfd) is readable with -EINTR. Sets the connections non-blocking. 0 or -errno.
 */
int __must_check stream_io__bound(struct stream_io *io, int ms, int stop_fd);
/*
 * Puts len bytes already read off io's connection (its opening bytes) back in front of
 * whatever comes next. Only on a fresh io: 0, -ENOMEM or -EINVAL.
 */
int __must_check stream_io__unread(struct stream_io *io, const void *buf, size_t len);
/*
 * TCP_CORK on every connection io writes to (nothing for a file or memory): only full
 * segments leave until it is turned off, which sends the rest at once.
 */
void stream_io__cork(struct stream_io *io, bool on);
/*
 * The pause's traffic from here on, both directions of every connection: ahead of
 * bulk traffic in this host's queues (SO_PRIORITY TC_PRIO_INTERACTIVE: pfifo_fast's
 * first band; prio and htb classify by it). Nothing for a file or memory; a refusal
 * only leaves the connection as it was.
 */
void stream_io__urgent(struct stream_io *io);

/* ---- reader ------------------------------------------------------------ */

struct stream_record {
	uint32_t type;
	uint32_t flags;
	uint64_t length;
	uint64_t checksum;
	uint64_t index;		/* 0 for the first record after the header */
	uint64_t offset;	/* byte offset of the record header in the stream */
	const uint8_t *payload; /* owned by the reader, valid until the next read */
};

struct stream_reader {
	struct stream_io *io;
	enum stream_context ctx;
	enum stream_phase phase;
	struct stream_header hdr;
	bool have_header;
	uint64_t nr_records; /* records accepted so far, skipped ones included */
	uint64_t running;    /* chained checksum of their checksums (see END) */
	void *xxh;	     /* XXH3_state_t */
	uint8_t *buf;
	size_t buf_cap;
	uint64_t nr_skipped;
	/* A record opened by stream__read_record_open: its payload is read in parts. */
	bool open;
	enum stream_phase open_next; /* the phase once it is closed */
	uint64_t open_left, open_start;
	char err[256];
};

int __must_check stream__reader_init(struct stream_reader *r, struct stream_io *io,
				     enum stream_context ctx);
void stream__reader_exit(struct stream_reader *r);
/* Data context only: must be called before the first record. */
int __must_check stream__read_header(struct stream_reader *r, struct stream_header *hdr);
/*
 * Reads the next record the caller must handle: unknown types without the
 * MANDATORY flag are checked and skipped here. Validates type, flags, the
 * per-type length limit (before allocating), checksum, order, and for END the
 * record count and chained checksum. 0, or -EPROTO (order, type, flags),
 * -E2BIG (length), -EBADMSG (checksum, END mismatch), -EIO (truncated or I/O),
 * -ENOMEM; r->err then says which record, at which offset, and why.
 */
int __must_check stream__read_record(struct stream_reader *r, struct stream_record *rec);
/*
 * As stream__read_record, except that a record of type `type` is only opened (1): its
 * header is checked (type, flags, length, order) but its payload is left on the wire,
 * for the caller to read in parts with stream__read_part, straight to where it belongs,
 * and to end with stream__read_close, which checks the checksum over all of it. Until
 * then nothing else is read. What the parts wrote is unchecked until the close says
 * 0: a caller writing it in place must throw it all away on any error (the
 * destination fails the move). 0 as stream__read_record when another record came.
 */
int __must_check stream__read_record_open(struct stream_reader *r, struct stream_record *rec,
					  uint32_t type);
/* The next len bytes of the open record's payload into dst. 0, -EBADMSG, -EIO. */
int __must_check stream__read_part(struct stream_reader *r, const struct stream_record *rec,
				   void *dst, size_t len);
/* The whole payload was read: 0, or -EBADMSG (bytes left, checksum mismatch). */
int __must_check stream__read_close(struct stream_reader *r, const struct stream_record *rec);
/*
 * The buffer the last record's payload was read into (rec->payload points into it),
 * handed over to the caller, who frees it; buf (cap bytes, from malloc) takes its
 * place for the records to come. *old_cap: the size of the one returned.
 */
uint8_t *stream__reader_swap_buf(struct stream_reader *r, uint8_t *buf, size_t cap,
				 size_t *old_cap);

/* ---- writer ------------------------------------------------------------ */

struct stream_writer {
	struct stream_io *io;
	enum stream_context ctx;
	enum stream_phase phase;
	bool have_header;
	uint64_t nr_records;
	uint64_t running;
	void *xxh;
	uint64_t bytes; /* header and records written */
	char err[256];
};

int __must_check stream__writer_init(struct stream_writer *w, struct stream_io *io,
				     enum stream_context ctx);
void stream__writer_exit(struct stream_writer *w);
int __must_check stream__write_header(struct stream_writer *w);
/*
 * Frames and writes one record whose payload is the concatenation of iov, so RAM
 * pages go from guest memory to the socket without a copy. The writer applies the
 * same order and length rules as the reader (a bug here would only be found by
 * the destination otherwise): -EPROTO, -E2BIG, -EINVAL, or an I/O error.
 */
int __must_check stream__write_record(struct stream_writer *w, uint32_t type, uint32_t flags,
				      const struct iovec *iov, int iovcnt);
/* The flags the writer uses for a known type (MANDATORY except ROUND/VERIFY). */
uint32_t stream__default_flags(uint32_t type);
/* Writes END with the count and chained checksum of everything before it. */
int __must_check stream__write_end(struct stream_writer *w);

/* ---- TLV (CONFIG and STATE bodies) -------------------------------------- */

#define STREAM_TLV_HDR_LEN  8
#define STREAM_TLV_OPTIONAL (1U << 0)

struct stream_tlv_writer {
	uint8_t *buf;
	size_t len, cap;
	int err; /* sticky: the first failure, so callers check once at the end */
};

struct stream_tlv {
	uint16_t tag;
	uint16_t flags;
	uint32_t len;
	const uint8_t *value;
};

struct stream_tlv_reader {
	const uint8_t *p;
	size_t len, pos;
};

void stream__tlv_writer_init(struct stream_tlv_writer *tw);
void stream__tlv_writer_exit(struct stream_tlv_writer *tw);
int stream__tlv_put_bytes(struct stream_tlv_writer *tw, uint16_t tag, uint16_t flags,
			  const void *val, size_t len);
int stream__tlv_put_u32(struct stream_tlv_writer *tw, uint16_t tag, uint16_t flags, uint32_t v);
int stream__tlv_put_u64(struct stream_tlv_writer *tw, uint16_t tag, uint16_t flags, uint64_t v);
int stream__tlv_put_str(struct stream_tlv_writer *tw, uint16_t tag, uint16_t flags, const char *s);

void stream__tlv_reader_init(struct stream_tlv_reader *tr, const void *buf, size_t len);
/* 1 and *t filled, 0 at the clean end, -EBADMSG on a field that runs past the end
 * or has unknown flag bits. */
int __must_check stream__tlv_next(struct stream_tlv_reader *tr, struct stream_tlv *t);
/* Exact-size accessors: -EBADMSG unless t->len is 4 / 8. */
int __must_check stream__tlv_u32(const struct stream_tlv *t, uint32_t *v);
int __must_check stream__tlv_u64(const struct stream_tlv *t, uint64_t *v);

/* ---- CONFIG -------------------------------------------------------------- */

#define STREAM_CMDLINE_MAX  4096
#define STREAM_CPUID_MAX    (64 * KiB)
#define STREAM_MAX_REGIONS  2
#define STREAM_MAX_VCPUS    255
#define STREAM_MAX_DEVICES  16
#define STREAM_DEV_TYPE_MAX 31
#define STREAM_GPA_LIMIT    (1ULL << 52) /* x86-64 physical address width */

enum stream_config_tag {
	STREAM_CFG_RAM_SIZE = 1,	/* u64 */
	STREAM_CFG_NR_VCPUS = 2,	/* u32 */
	STREAM_CFG_CMDLINE = 3,		/* bytes, no NUL, <= 4096 */
	STREAM_CFG_REGION = 4,		/* u64 gpa, u64 size; 1..2 times */
	STREAM_CFG_UUID = 5,		/* 16 bytes */
	STREAM_CFG_CPUID = 6,		/* opaque blob <= 64 KiB */
	STREAM_CFG_MACHINE_VERSION = 7, /* u32 */
	STREAM_CFG_DEVICE = 8,		/* nested TLV (below); 0..16 times */
	STREAM_CFG_FEATURES = 9,	/* u32 STREAM_FEATURE_* the source can use; optional */
	STREAM_CFG_CONNECTIONS = 10,	/* u32 n (2..16) + token: connections offered; optional */
};

/*
 * Stream features a source offers in CONFIG and a destination takes in ACCEPTED.
 * A source uses one only once the destination has taken it, so either side may
 * be older.
 */
#define STREAM_FEATURE_RAM_LZ4	 (1U << 0)
#define STREAM_FEATURE_ROUND_ACK (1U << 1) /* ROUND_ACK after each ROUND */
#define STREAM_FEATURE_RAM_ZSTD	 (1U << 2) /* format 1.3 */
#define STREAM_FEATURE_STRIPE_CHUNK (1U << 3) /* format 1.4: STRIPE_CHUNKED */
/* format 1.5: GO follows END at once; the destination sends no READY */
#define STREAM_FEATURE_GO_WITH_END (1U << 4)
/* format 1.7: VERIFY carries chunk digests of page digests (ram_digest.h), not of the bytes */
#define STREAM_FEATURE_VERIFY_PAGES (1U << 5)
/* format 1.8: disks whose CONFIG entry names a disk_to come in DISK records */
#define STREAM_FEATURE_DISK_TO (1U << 6)
#define STREAM_FEATURES_KNOWN                                                                      \
	(STREAM_FEATURE_RAM_LZ4 | STREAM_FEATURE_ROUND_ACK | STREAM_FEATURE_RAM_ZSTD |             \
	 STREAM_FEATURE_STRIPE_CHUNK | STREAM_FEATURE_GO_WITH_END | STREAM_FEATURE_VERIFY_PAGES |  \
	 STREAM_FEATURE_DISK_TO)

enum stream_device_tag {
	STREAM_DEV_TYPE = 1,	 /* string, 1..31 bytes */
	STREAM_DEV_INSTANCE = 2, /* u32 */
	STREAM_DEV_MAC = 3,	 /* 6 bytes, optional */
	STREAM_DEV_CAPACITY = 4, /* u64 bytes, optional */
	STREAM_DEV_READONLY = 5, /* u32 0/1, optional */
	STREAM_DEV_DISK_TO = 6,	 /* bytes: where the image goes on the destination, optional (1.8) */
};

/* A disk_to's length: a file name, or a path in the destination's --disk-dir. */
#define STREAM_DISK_TO_MAX 1023

struct stream_region {
	uint64_t gpa;
	uint64_t size;
};

struct stream_device {
	char type[STREAM_DEV_TYPE_MAX + 1];
	uint32_t instance;
	bool has_mac;
	uint8_t mac[6];
	uint64_t capacity;
	bool readonly;
	char disk_to[STREAM_DISK_TO_MAX + 1]; /* "": the destination has the image (--disk) */
};

struct stream_config {
	uint64_t ram_size;
	uint32_t nr_vcpus;
	uint32_t machine_version;
	char cmdline[STREAM_CMDLINE_MAX + 1];
	unsigned int nr_regions;
	struct stream_region regions[STREAM_MAX_REGIONS];
	uint8_t uuid[16];
	uint8_t *cpuid; /* malloc'ed by decode; freed by stream__config_release() */
	size_t cpuid_len;
	unsigned int nr_devices;
	struct stream_device devices[STREAM_MAX_DEVICES];
	uint32_t features; /* STREAM_FEATURE_* offered; unknown bits are ignored */
	uint32_t connections; /* offered (0: one, no offer) */
	uint8_t token[STREAM_TOKEN_LEN]; /* what the extra connections' JOIN carries */
};

/* Semantic checks shared by encode and decode; err gets the reason. */
int __must_check stream__config_validate(const struct stream_config *cfg, char *err, size_t errlen);
/* Appends the CONFIG payload to tw (after validating cfg). */
int __must_check stream__config_encode(const struct stream_config *cfg,
				       struct stream_tlv_writer *tw, char *err, size_t errlen);
/* Fills cfg (zeroed first); -EBADMSG with the reason in err. */
int __must_check stream__config_decode(const uint8_t *payload, size_t len,
				       struct stream_config *cfg, char *err, size_t errlen);
void stream__config_release(struct stream_config *cfg);
int __must_check stream__write_config(struct stream_writer *w, const struct stream_config *cfg);

/* ---- RAM ----------------------------------------------------------------- */

enum stream_ram_kind {
	STREAM_RAM_DATA = 1, /* npages pages of data follow */
	STREAM_RAM_ZERO = 2, /* npages pages are zero; no data */
};

struct stream_ram_run {
	uint64_t gpa;
	uint32_t npages;
	uint32_t kind;
};

/* Called once per run; data is NULL for ZERO runs. Non-zero return stops. */
typedef int (*stream_ram_fn)(void *opaque, uint64_t gpa, uint32_t npages, uint32_t kind,
			     const uint8_t *data);

/*
 * Validates every run of a RAM payload against cfg's regions, then calls fn per
 * run. Nothing is applied unless the whole record is valid. -EBADMSG (with err)
 * or fn's return value.
 */
int __must_check stream__ram_record_parse(const struct stream_config *cfg, const uint8_t *payload,
					  size_t len, stream_ram_fn fn, void *opaque, char *err,
					  size_t errlen);
/* Reads the next len bytes of a payload into dst: 0 or -errno. */
typedef int (*stream_part_fn)(void *ctx, void *dst, size_t len);
struct stream_part {
	struct stream_reader *r;
	const struct stream_record *rec;
};
/*
 * Receives a checked DATA run's npages pages in place by calling part(part_ctx, ...);
 * called for ZERO runs too, in their order, with part NULL (nothing to read).
 */
typedef int (*stream_ram_fill_fn)(void *opaque, uint64_t gpa, uint32_t npages,
				  stream_part_fn part, void *part_ctx);
/*
 * A plain RAM record opened by stream__read_record_open(r, rec, STREAM_REC_RAM), read
 * off the wire without a copy in between: its runs are read and checked against cfg's
 * regions as stream__ram_record_parse does, before any data is read; then fill gets
 * each run in order (a DATA run's pages to read), the checksum is checked, and only
 * then apply is called for each ZERO run. A run that fails its checks writes nothing, but pages
 * filled before a checksum mismatch (or a short read) hold what came: the caller must
 * then give up all it received (the destination fails the move). -EBADMSG, -EIO (with
 * err) or fill's or apply's return value.
 */
int __must_check stream__ram_record_receive(struct stream_reader *r,
					    const struct stream_record *rec,
					    const struct stream_config *cfg,
					    stream_ram_fill_fn fill, stream_ram_fn apply,
					    void *opaque, char *err, size_t errlen);
/* data[i] points at runs[i].npages pages for DATA runs (ignored for ZERO). */
int __must_check stream__write_ram(struct stream_writer *w, const struct stream_ram_run *runs,
				   unsigned int nr_runs, const uint8_t *const *data);

/*
 * Packed RAM records, RAM_LZ4 (1.2) and RAM_ZSTD (1.3): the same runs, with the data
 * pages as one LZ4 block or one zstd frame (level 1: half LZ4's bytes on the test
 * guest's pages, at a third of its speed). Compress fills cbuf (STREAM_RAM_LZ4_BOUND
 * bytes) and returns the block's length, or -ENOSPC when it would not be smaller
 * than the pages (send a plain RAM record then). zstd's context (ZSTD_CCtx) comes
 * from stream__zstd_cctx and is reused; stream__zstd_free frees both kinds.
 */
int stream__lz4_compress(const uint8_t *data, uint64_t len, uint8_t *cbuf);
void *stream__zstd_cctx(void);
void stream__zstd_free(void *cctx, void *dctx);
int stream__zstd_compress(void *cctx, const uint8_t *data, uint64_t len, uint8_t *cbuf);
/* type: STREAM_REC_RAM_LZ4 or STREAM_REC_RAM_ZSTD. */
int __must_check stream__write_ram_packed(struct stream_writer *w, uint32_t type,
					  const struct stream_ram_run *runs, unsigned int nr_runs,
					  const uint8_t *block, uint32_t block_len);
/*
 * Validates a RAM_LZ4 or RAM_ZSTD payload like stream__ram_record_parse, then expands
 * its block into scratch (STREAM_RAM_MAX_DATA_LEN bytes), which must give exactly the
 * pages the runs announce, then calls fn per run. *zstd_dctx is the caller's zstd
 * context (ZSTD_DCtx), made here on first need and reused; NULL refuses RAM_ZSTD.
 */
int __must_check stream__ram_packed_parse(const struct stream_config *cfg, uint32_t type,
					  const uint8_t *payload, size_t len, uint8_t *scratch,
					  void **zstd_dctx, stream_ram_fn fn, void *opaque,
					  char *err, size_t errlen);

/* ---- ROUND --------------------------------------------------------------- */

struct stream_round {
	uint32_t round;
	uint64_t pages_sent;
	uint64_t bytes_sent;
	uint64_t dirty_pages; /* left dirty when the round ended */
	uint64_t duration_ns;
};

int __must_check stream__write_round(struct stream_writer *w, const struct stream_round *rd);
int __must_check stream__round_decode(const uint8_t *payload, size_t len, struct stream_round *rd);

/*
 * DISK (format 1.8): a piece of disk `disk`'s image (migration without shared
 * storage). DATA carries length bytes for [offset, offset+length); ZERO says the range
 * reads as zeros (a guest discard or write-zeroes); DONE (offset 0, length the image
 * size) says the copy's pass has covered the whole image. Checked against CONFIG by
 * stream_check__disk.
 */
enum stream_disk_kind {
	STREAM_DISK_DATA = 1,
	STREAM_DISK_ZERO = 2,
	STREAM_DISK_DONE = 3,
	STREAM_DISK_DIGEST = 4, /* --verify: offset 0, length the size, data the u64 digest */
};

struct stream_disk {
	uint32_t disk;
	uint32_t kind;
	uint64_t offset;
	uint64_t length;
	const uint8_t *data; /* DATA: into the payload */
	uint64_t digest;     /* DIGEST */
};

/* DATA when data is not NULL (length at most STREAM_DISK_MAX_DATA), else kind. */
int __must_check stream__write_disk(struct stream_writer *w, uint32_t disk, uint32_t kind,
				    uint64_t offset, uint64_t length, const void *data);
/* DIGEST: the image's disk__digest at the switchover (--verify). */
int __must_check stream__write_disk_digest(struct stream_writer *w, uint32_t disk, uint64_t size,
					   uint64_t digest);
/* The layout alone (kind, lengths); -EBADMSG with why set. */
int __must_check stream__disk_decode(const uint8_t *payload, size_t len, struct stream_disk *d,
				     char *why, size_t whylen);

/* ---- STATE --------------------------------------------------------------- */

#define STREAM_STATE_ID_LEN  32
#define STREAM_STATE_HDR_LEN 40

struct stream_state_hdr {
	char id[STREAM_STATE_ID_LEN]; /* NUL-terminated, 1..31 chars of [a-z0-9._-] */
	uint32_t instance;
	uint32_t version;
};

int __must_check stream__write_state(struct stream_writer *w, const char *id, uint32_t instance,
				     uint32_t version, const struct stream_tlv_writer *body);
/* Checks the section header and points body at the TLV fields. */
int __must_check stream__state_parse(const uint8_t *payload, size_t len,
				     struct stream_state_hdr *hdr, struct stream_tlv_reader *body,
				     char *err, size_t errlen);

/* ---- VERIFY -------------------------------------------------------------- */

#define STREAM_DIGEST_CHUNK (2 * MiB)

/*
 * XXH3-64 of each 2 MiB chunk of guest RAM (seeded with the chunk's gpa), region
 * by region in order; the last chunk of a region may be shorter. *digests is
 * malloc'ed.
 */
int __must_check stream__ram_digest(struct guest_mem *mem, uint64_t **digests, size_t *n);
/* Same chunking, from a config's layout: how many digests to expect, and where. */
size_t stream__digest_count(const struct stream_config *cfg);
int __must_check stream__digest_chunk_gpa(const struct stream_config *cfg, size_t idx,
					  uint64_t *gpa);
/*
 * 0 if equal; -EBADMSG with *bad_gpa = first differing chunk; -EINVAL if the
 * counts differ from the layout.
 */
int __must_check stream__ram_digest_compare(const struct stream_config *cfg, const uint64_t *a,
					    size_t na, const uint64_t *b, size_t nb,
					    uint64_t *bad_gpa);
int __must_check stream__write_verify(struct stream_writer *w, const uint64_t *digests, size_t n);
/* Allocates *digests (n may be 0). */
int __must_check stream__verify_decode(const uint8_t *payload, size_t len, uint64_t **digests,
				       size_t *n, char *err, size_t errlen);

/* ---- control ------------------------------------------------------------- */

int __must_check stream__write_error(struct stream_writer *w, uint32_t code, const char *msg);
int __must_check stream__error_decode(const uint8_t *payload, size_t len, uint32_t *code,
				      char msg[STREAM_ERROR_MSG_MAX + 1]);
/* Empty-payload messages: GO, READY, RESUMED, and ACCEPTED without features. */
int __must_check stream__write_control(struct stream_writer *w, uint32_t type);
int __must_check stream__write_round_ack(struct stream_writer *w, uint32_t round);
int __must_check stream__round_ack_decode(const uint8_t *payload, size_t len, uint32_t *round);
/*
 * ACCEPTED carrying the STREAM_FEATURE_* the destination takes (the source offered
 * some) and, if the source offered connections (else 0), how many it takes (1..16).
 */
int __must_check stream__write_accepted(struct stream_writer *w, uint32_t features,
					uint32_t connections);
/*
 * An ACCEPTED payload: empty, a u32 of features, or features + connections taken
 * (*connections 1 when absent); unknown bits or 0 or more than 16 connections are errors.
 */
int __must_check stream__accepted_decode(const uint8_t *payload, size_t len, uint32_t *features,
					 uint32_t *connections);
/* STRIPE (chunk 0: STREAM_STRIPE_CHUNK, the 1.3 form) or STRIPE_CHUNKED. */
int __must_check stream__write_stripe(struct stream_writer *w, uint32_t n, uint32_t chunk);
/*
 * A STRIPE or STRIPE_CHUNKED payload (type says which): n in 2..STREAM_MAX_CONNECTIONS
 * (STRIPE_CHUNKED: 1.., one meaning the stream stays on the first connection), *chunk
 * STREAM_STRIPE_CHUNK for STRIPE, else a power of two in the allowed range.
 */
int __must_check stream__stripe_decode(uint32_t type, const uint8_t *payload, size_t len,
				       uint32_t *n, uint32_t *chunk);
bool stream__stripe_chunk_valid(uint64_t chunk);
int __must_check stream__write_join(struct stream_writer *w, const uint8_t *token, uint32_t index);
/* index in 1..STREAM_MAX_CONNECTIONS-1 (the first connection never joins). */
int __must_check stream__join_decode(const uint8_t *payload, size_t len,
				     uint8_t token[STREAM_TOKEN_LEN], uint32_t *index);

/* ---- little-endian helpers ----------------------------------------------- */

static inline uint16_t stream_get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static inline uint32_t stream_get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static inline uint64_t stream_get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static inline void stream_put16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

static inline void stream_put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static inline void stream_put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

#endif
