/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_MIGRATE_H
#define GODWIT_MIGRATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "godwit/console.h"
#include "godwit/stream.h"
#include "godwit/tls.h"
#include "godwit/util.h"

struct vm;
struct vm_control;

/* ---- parameters and progress (source side) ---- */

enum migrate_compress {
	MIGRATE_COMPRESS_AUTO, /* LZ4 while it pays (ram.c: lz4_decide) */
	MIGRATE_COMPRESS_LZ4,  /* every RAM record that LZ4 shrinks */
	MIGRATE_COMPRESS_OFF,
	MIGRATE_COMPRESS_ZSTD, /* every RAM record that zstd shrinks (LZ4 if it is not taken) */
};

const char *migrate__compress_name(enum migrate_compress c);
/* "auto", "lz4", "zstd" or "off"; -EINVAL for anything else. */
int __must_check migrate__compress_parse(const char *s, enum migrate_compress *c);

/* Migration without shared storage: a disk whose image goes through the stream. */
#define MIGRATE_MAX_DISK_TO 8
struct migrate_disk_to {
	uint32_t disk; /* the disk's ID (in --disk order) */
	/* On the destination: a file name in its --disk-dir, or a path in that directory */
	char to[STREAM_DISK_TO_MAX + 1];
};

struct migrate_params {
	char to[256];		/* tcp:HOST:PORT or file:PATH */
	uint64_t downtime_ms;	/* the pause the user accepts */
	uint64_t max_bandwidth; /* bytes/s, 0 = unlimited */
	uint64_t timeout_s;	/* 0 = scale with memory size */
	enum migrate_compress compress;
	uint64_t connections; /* TCP connections, 1..16; 0 = by the round trip (source.c) */
	bool verify;
	/*
	 * GO only after the destination's READY (formats before 1.5 always): a round trip
	 * more of pause, but a destination that fails silently while loading leaves the VM
	 * running here instead of paused with the outcome unknown.
	 */
	bool confirm_ready;
	bool watch; /* the caller follows it and acknowledges the end (godwit migrate) */
	struct tls_params tls; /* tcp: only; the key is wiped once the move has taken it */
	/* file: only: the snapshot is encrypted at rest with this key (seal.h) */
	bool has_encrypt_key;
	uint8_t encrypt_key[32];
	unsigned int nr_disk_to;
	struct migrate_disk_to disk_to[MIGRATE_MAX_DISK_TO];
};

/*
 * What a migration may be asked, from `godwit migrate` and PUT /vm/migrate alike: a
 * pause of up to an hour and a timeout of up to a week. Far beyond them the source's
 * deadline (timeout_s in ns) and pause budget (downtime_ms in us) wrap: a timeout_s
 * of 2^62 put the deadline in the past.
 */
#define MIGRATE_DOWNTIME_MS_MAX 3600000ULL
#define MIGRATE_TIMEOUT_S_MAX	(7 * 86400ULL)

enum migrate_status {
	MIG_NONE,
	MIG_SETUP,
	MIG_ACTIVE,
	MIG_COMPLETING, /* vCPUs paused, last pages and state on the wire */
	MIG_COMPLETED,
	MIG_FAILED,
	MIG_CANCELLED,
};

struct migrate_stats {
	enum migrate_status status;
	uint64_t start_ns;
	uint64_t total_ms;
	uint64_t downtime_ms;
	uint32_t rounds;
	uint64_t ram_bytes;
	uint64_t bytes_sent;
	uint64_t pages_sent;
	uint64_t zero_pages;
	uint64_t skipped_pages; /* never touched: holes in the memfd */
	uint64_t lz4_pages;	/* data pages sent LZ4-compressed */
	uint64_t lz4_saved;	/* bytes compression kept off the wire */
	uint64_t zstd_pages;	/* data pages sent zstd-compressed */
	uint64_t zstd_saved;
	uint64_t remaining_bytes;
	uint64_t bandwidth;	/* bytes/s, last estimate */
	uint64_t max_bandwidth; /* bytes/s the stream is held to, 0: none */
	uint64_t dirty_rate;	/* bytes/s, last estimate */
	uint32_t throttle_pct;
	uint32_t max_throttle_pct;
	uint32_t connections; /* TCP connections the stream went over */
	/* Disk images sent through the stream (disk_to): their size, the pass's position
	 * summed over them, the image bytes sent (pass and guest writes) */
	uint64_t disk_size, disk_copied, disk_bytes;
	const char *encryption; /* "none", "tls-x509" or "tls-psk": what the stream went over */
	char to[256];
	char error[256];
};

#define MIGRATE_SPENT_PSKS 64

struct migration {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct migrate_params params;
	struct migrate_stats stats;
	bool running; /* the thread exists and has not been joined */
	bool cancel;
	bool watched; /* a client (godwit migrate) follows it and will acknowledge the end */
	bool acked;   /* that client has read the final status */
	pthread_t thread;
	int fd; /* the stream's socket or file, -1 when none */
	int extra_fd[STREAM_MAX_CONNECTIONS - 1]; /* more connections (source.c) */
	unsigned int nr_extra;
	struct tls_ctx *tls; /* the move's, from migrate__start; the thread frees it */
	/* Digests of the one-time keys moves from here have used: none serves twice. */
	uint8_t spent_psk[MIGRATE_SPENT_PSKS][TLS_PSK_DIGEST_LEN];
	unsigned int nr_spent_psk;
};

const char *migrate__status_name(enum migrate_status s);
bool migrate__status_final(enum migrate_status s);
/* The same, for the name a client read from the API. */
bool migrate__status_final_name(const char *name);

/*
 * The VM's outgoing-migration slot (vm->mig), made and torn down by what serves the
 * routes that start migrations (src/control/). migrate__stop cancels a migration and
 * waits for its thread, leaving the final status readable; migrate__exit does that too
 * and frees the slot.
 */
int __must_check migrate__init(struct vm *vm);
void migrate__stop(struct vm *vm);
void migrate__exit(struct vm *vm);
/*
 * -EINVAL, with why in err, if p asks for a pause of 0 or over
 * MIGRATE_DOWNTIME_MS_MAX, or a timeout over MIGRATE_TIMEOUT_S_MAX (0: the default).
 */
int __must_check migrate__check_params(const struct migrate_params *p, char *err,
				       size_t errlen);
/* Starts an outgoing migration on its own thread; -EBUSY if one runs, -EINVAL for bad p. */
int __must_check migrate__start(struct vm *vm, const struct migrate_params *p, char *err,
				size_t errlen);
int __must_check migrate__cancel(struct vm *vm);
void migrate__get_stats(struct vm *vm, struct migrate_stats *out);
/*
 * A move's times once it ended at end_ns: total_ms from its start, and, when it
 * paused the guest at pause_ns (0: it did not), downtime_ms to pause_end_ns: the
 * destination's RESUMED, or a snapshot's last byte synced. The source's own cleanup
 * after that, at the ordinary priority on a busy host, is no pause of the guest's.
 */
void migrate__times(struct migrate_stats *st, uint64_t pause_ns, uint64_t pause_end_ns,
		    uint64_t end_ns);
/* The watching client has the final status: the source may exit. -ENOENT if not final. */
int migrate__ack(struct vm *vm);
/* Internal to src/migrate: the thread, and the source's wait before it exits. */
int __must_check migrate__launch(struct vm *vm);
void migrate__wait_ack(struct migration *m, unsigned int ms);

/* ---- destination ---- */

struct receive_params {
	char from[256];	    /* tcp:HOST:PORT (listen) or file:PATH */
	const char *api_path;
	enum console_kind console_kind;
	const char *console_path;
	/* This host's backends for the VM's devices, in device order. */
	unsigned int nr_disks, nr_nets;
	const char *disks[8];
	const char *nets[8];
	const struct vm_control *control; /* what drives the VM once it runs here (its API) */
	/* How long the source may send nothing (or not read) once it is taken; 0: default. */
	int io_timeout_ms;
	struct tls_params tls; /* settled by tls__check_params */
	const uint8_t *encrypt_key; /* file: only: the snapshot's key, NULL: a plain one */
	/* Where disk images sent through the stream may be created (NULL: nowhere) */
	const char *disk_dir;
};

/*
 * Receives a VM and runs it: returns the process exit status (the guest's when
 * it ends, non-zero if the incoming migration failed: nothing is left behind).
 */
int migrate__receive(const struct receive_params *p);

/*
 * The vCPUs that dirty memory, from the page faults KVM fixed for each over a round
 * (faults[i]); marks them in dirtier[] and returns how many. Used to throttle those
 * and no other vCPU.
 */
unsigned int migrate__find_dirtiers(const uint64_t *faults, unsigned int n, bool *dirtier);

/* The commands (cli.c): return the process exit status. */
int migrate_cli__migrate(int argc, char **argv);
int migrate_cli__receive(int argc, char **argv, const struct vm_control *control);
/* The progress line `godwit migrate` prints for a GET /vm/migration answer, into buf. */
struct json_t;
void migrate_cli__progress(const struct json_t *st, char *buf, size_t len);

/* ---- pieces, shared by both sides and the tests ---- */

/* Parses "tcp:HOST:PORT"; 0 or -EINVAL. */
int __must_check transport__parse_tcp(const char *uri, char *host, size_t hostlen, char *port,
				      size_t portlen);
/*
 * Opens n (>= 1) connections to tcp:HOST:PORT: fds[0] connected and blocking, the len
 * bytes at first sent on it, in its SYN where the destination allows TCP Fast Open
 * (transport.c); fds[1..n-1] started at the same time (transport__connect_finish), or
 * -1 for one that could not be. 0, or -errno with nothing left open.
 */
int __must_check transport__connect(const char *uri, const void *first, size_t len,
				    unsigned int n, int *fds, char *err, size_t errlen);
int __must_check transport__listen(const char *uri, int *fd, char *err, size_t errlen);
int __must_check transport__accept(int lfd, int *fd);
/*
 * Starts one more connection to fd's peer (non-blocking; several connections):
 * 0 with *out set, or -errno. transport__connect_finish waits for it (at most the
 * connect timeout) and makes it blocking: 0 or -errno.
 */
int __must_check transport__connect_more(int fd, int *out);
int __must_check transport__connect_finish(int fd);
/*
 * on: at most TRANSPORT_NOTSENT_LOWAT bytes wait unsent in fd's socket
 * (TCP_NOTSENT_LOWAT), so that a writer that stops stops sending soon after; off: the
 * kernel's default. A source sets it while other moves leave its host (source.c).
 */
#define TRANSPORT_NOTSENT_LOWAT (128 * 1024)
void transport__limit_unsent(int fd, bool on);

/* Several connections (connections.c; format 1.3, stream.h). */
/* How many a source uses: asked (--connections) if not 0, else by the round trip. */
unsigned int connections__wanted(uint64_t asked, uint64_t rtt_ns);
/* The chunk a source stripes in, given the features the destination took (0: STRIPE's). */
uint32_t connections__stripe_chunk(uint32_t features);
/* The JOIN an extra connection opens with (through tls unless NULL): 0 or -errno. */
int __must_check connections__send_join(int fd, struct tls_conn *tls, const uint8_t *token,
					uint32_t index);
/*
 * A JOIN read from a new connection: the index it joins as, or -EBADMSG if it is
 * not this migration's (token), out of 1..n-1, or for an index fds[] already has.
 */
int connections__join_parse(const uint8_t *msg, size_t len, const uint8_t *token, uint32_t n,
			    const int *fds);
/*
 * A destination's accepted connections that have not yet shown what they are: a
 * source starts its extra connections with its first, and over a network that
 * reorders they may be accepted before it; they speak (JOIN) only after ACCEPTED.
 */
struct connections_waiting {
	int fd[STREAM_MAX_CONNECTIONS + 8];
	uint64_t since_ns[STREAM_MAX_CONNECTIONS + 8]; /* accepted at */
	uint8_t *opening[STREAM_MAX_CONNECTIONS + 8];  /* what it sent of header and CONFIG */
	size_t got[STREAM_MAX_CONNECTIONS + 8];
	/* With TLS: each one's session, made when its first byte says it speaks TLS. */
	struct tls_conn *conn[STREAM_MAX_CONNECTIONS + 8];
	bool secured[STREAM_MAX_CONNECTIONS + 8]; /* its handshake is done */
	short events[STREAM_MAX_CONNECTIONS + 8]; /* what its handshake waits for */
	unsigned int n;
	/*
	 * Set by the caller: what a connection must be. With mode required a plaintext
	 * opening is refused (ERROR), with off a TLS one is closed; tls is the server's
	 * context (NULL with off). The session of the connection taken goes to taken_tls
	 * (connections__accept_source) or join_tls[index] (connections__accept); the
	 * caller owns it from there.
	 */
	enum tls_mode mode;
	struct tls_ctx *tls;
	struct tls_conn *taken_tls;
	struct tls_conn *join_tls[STREAM_MAX_CONNECTIONS];
};
/*
 * Accepts on lfd until a connection has sent a stream's opening: the magic, the rest
 * of the header and a whole first record (CONFIG, at most STREAM_CONFIG_MAX_LEN): *fd,
 * and those bytes, read off it, in *opening (*len; the caller frees it); 0. Connections
 * still silent wait in w; those that send anything but the magic first, close, or have
 * not sent the whole opening within timeout_ms of their accept are closed; with w
 * full, the one waiting longest is. Never waits on one connection: a peer that trickles
 * bytes holds only its place in w. -EINTR once stop_fd (>= 0) is readable, or -errno.
 */
int __must_check connections__accept_source(int lfd, struct connections_waiting *w, int *fd,
					    uint8_t **opening, size_t *len, int timeout_ms,
					    int stop_fd);
/*
 * Takes JOINs from w's connections and new ones on lfd until fds[1..n-1] hold the
 * source's extra connections (fds[0] is the first); others are closed (at most a
 * few), all within timeout_ms. 0, or -errno (-EINTR once stop_fd, if >= 0, is
 * readable) with fds[1..n-1] closed.
 */
int __must_check connections__accept(int lfd, struct connections_waiting *w,
				     const uint8_t *token, uint32_t n, int *fds, int timeout_ms,
				     int stop_fd);
void connections__close_waiting(struct connections_waiting *w);
/* The kernel's smoothed round-trip time of a TCP connection; 0 when it has none (a file). */
uint64_t transport__rtt_ns(int fd);
/*
 * The smallest round trip the connection has seen: the link's own delay, without the
 * queueing that inflates the smoothed one on a busy host (loopback: 10s of us against
 * several ms smoothed). 0 when it has none.
 */
uint64_t transport__min_rtt_ns(int fd);
/* Did the destination take the first bytes in the SYN (TCP Fast Open)? */
bool transport__fast_opened(int fd);
/*
 * Whether all a TCP connection holds to send fits in its congestion window: nothing
 * waits for the window, what is queued is on the wire or about to be (false if unknown).
 */
bool transport__all_in_window(int fd);

#endif
