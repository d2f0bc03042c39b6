// SPDX-License-Identifier: GPL-2.0
/*
 * The outgoing side: pre-copy rounds until the predicted pause fits, then
 * stop-and-copy and the hand-over. Until the destination says RESUMED the VM
 * belongs to this process: any failure before GO resumes it here.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "godwit/dirtiers.h"
#include "godwit/disk_send.h"
#include "godwit/link_share.h"
#include "godwit/log.h"
#include "godwit/migrate.h"
#include "godwit/ram.h"
#include "godwit/rate.h"
#include "godwit/seal.h"
#include "godwit/stream_check.h"
#include "godwit/vm.h"
#include "godwit/virtio_blk.h"
#include "godwit/virtio_net.h"
#include "godwit/vmstate.h"
#include "godwit/x86.h"

#define HANDSHAKE_TIMEOUT_MS 30000
#define FINAL_ACK_GRACE_MS 10000
#define THROTTLE_FIRST 20
#define THROTTLE_STEP 10
#define THROTTLE_MAX 99
/*
 * The downtime limit is a ceiling, not a goal. Once the pause would fit, each
 * further round that still shrinks the dirty set to at most 3/4 of what it sent
 * shortens the pause for the cost of one short round, so pre-copy goes on until
 * the predicted pause is below PAUSE_FLOOR_US (where the pause's fixed costs,
 * stopping vCPUs and the state, dominate) or the set stops shrinking and the
 * vCPUs that dirty it cannot be slowed more (polish_throttle), at most
 * MAX_POLISH_ROUNDS times. A higher floor left hundreds of pages dirtied in the last
 * round and the wait after it to the pause, for a move no shorter (docs/bench.md,
 * "Measurements behind design choices").
 */
#define PAUSE_FLOOR_US	    250
/* Rounds whose marker is remembered (rounds_in_flight); more unacknowledged is a backlog. */
#define ROUND_RING 64
#define MAX_POLISH_ROUNDS   12
#define POLISH_THROTTLE_MAX 95

/* One outgoing migration's working state (the thread's stack, in effect). */
struct source {
	struct vm *vm;
	struct migration *m;
	struct stream_io io;
	struct stream_writer w;
	struct ram_tracker t;
	struct ram_sender s;
	struct ram_digest digest; /* the VERIFY digests as pages go (format 1.7, --verify) */
	struct dirtiers dirtiers; /* they yield the CPU to the copy, until the pause */
	struct link_share share; /* the host's link, around this and other moves' pauses */
	bool unsent_limited;	 /* transport__limit_unsent on, while others move too */
	bool unsent_ever_limited;
	struct disk_sender disks; /* disks sent through the stream (disk_to) */
	int disk_ret;		  /* the first failure sending the guest's disk writes */
	struct tls_ctx *tls; /* NULL: plaintext */
	bool is_file;
	bool paused; /* we paused the VM for stop-and-copy */
	bool realtime; /* the pause runs at util__switchover_priority */
	bool quiesced;
	bool disks_released;
	uint32_t features; /* STREAM_FEATURE_* the destination took */
	uint8_t token[STREAM_TOKEN_LEN]; /* their JOINs carry it */
	unsigned int offer; /* connections offered in CONFIG (at most): 0 for none */
	unsigned int want;  /* of those, how many the round trip calls for */
	uint32_t last_round;  /* the last ROUND marker sent */
	uint64_t round_pages[ROUND_RING]; /* pages_sent at each round's marker */
	uint32_t acked_round; /* the last the destination acknowledged (ROUND_ACK) */
	uint64_t faults[VM_MAX_VCPUS]; /* each vCPU's KVM page-fault count at the last round */
	unsigned int catch_ups;	       /* extra rounds for what was dirtied while waiting */
	bool link_catch_up;	       /* the one extra round for a wait of the link's (catch_up) */
	bool dest_refused; /* an ERROR came back after GO: it will not run the VM */
	bool go_sent;
	uint64_t deadline_ns;
	uint64_t pause_ns;
	/* When each step of the pause ended (util__now_ns), for the debug log. */
	uint64_t paused_ns, unthrottled_ns, quiesced_ns, disks_ns, synced_ns, sent_ns, ready_ns;
	uint64_t ram_sent_ns, state_sent_ns; /* within the step to sent_ns */
	uint64_t pause_end_ns; /* RESUMED there, or the snapshot synced: the guest's pause ends */
	uint64_t cpu_wait_ns;  /* util__thread_cpu_wait_ns, from before the pause to its end */
	uint64_t final_pages; /* dirty at the final sync */
	uint64_t pause_digests; /* page digests computed before the final sync */
	char err[256];
};

static void fail(struct source *src, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct source *src, const char *fmt, ...)
{
	va_list ap;

	if (src->err[0])
		return; /* the first reason is the one that matters */
	va_start(ap, fmt);
	vsnprintf(src->err, sizeof(src->err), fmt, ap);
	va_end(ap);
}

static void set_status(struct migration *m, enum migrate_status st)
{
	pthread_mutex_lock(&m->lock);
	m->stats.status = st;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

/* What has gone out so far; the caller holds the migration's lock. */
static void copy_counts(struct source *src)
{
	struct migrate_stats *st = &src->m->stats;

	st->bytes_sent = src->w.bytes;
	st->pages_sent = src->s.pages_sent;
	st->zero_pages = src->s.zero_pages;
	st->skipped_pages = src->s.skipped_pages;
	st->lz4_pages = src->s.lz4_pages;
	st->lz4_saved = src->s.lz4_saved;
	st->zstd_pages = src->s.zstd_pages;
	st->zstd_saved = src->s.zstd_saved;
	disk_send__progress(&src->disks, &st->disk_size, &st->disk_copied, &st->disk_bytes);
}

static void update_stats(struct source *src, uint64_t remaining, uint64_t bw, uint64_t dirty_rate)
{
	struct migrate_stats *st = &src->m->stats;

	pthread_mutex_lock(&src->m->lock);
	copy_counts(src);
	st->remaining_bytes = remaining;
	if (bw)
		st->bandwidth = bw;
	st->dirty_rate = dirty_rate;
	st->total_ms = (util__now_ns() - st->start_ns) / 1000000;
	pthread_mutex_unlock(&src->m->lock);
}

/*
 * CONFIG goes out in the first connection's SYN (transport.c), before its round trip
 * is known, so it offers what --connections asked or the most; how many are used is
 * decided by the round trip once connected (connect_target) and, with a 1.4
 * destination, said in STRIPE_CHUNKED.
 */
static void make_offer(struct source *src)
{
	uint64_t asked = src->m->params.connections;

	if (asked == 1)
		return;
	if (getrandom(src->token, sizeof(src->token), 0) != sizeof(src->token)) {
		pr_warn("migration: no random token for more connections; using one");
		return;
	}
	src->offer = connections__wanted(asked, UINT64_MAX);
}

/* Starts connections until there are want, counting the first. */
static int add_connections(struct source *src, unsigned int want)
{
	int efd, ret = 0;

	pthread_mutex_lock(&src->m->lock);
	while (src->m->nr_extra + 1 < want && !(ret = transport__connect_more(src->m->fd, &efd)))
		src->m->extra_fd[src->m->nr_extra++] = efd;
	pthread_mutex_unlock(&src->m->lock);
	return ret;
}

/* Closes the extra connections from index keep on. */
static void close_connections(struct source *src, unsigned int keep)
{
	pthread_mutex_lock(&src->m->lock);
	while (src->m->nr_extra > keep)
		close(src->m->extra_fd[--src->m->nr_extra]);
	pthread_mutex_unlock(&src->m->lock);
}

/* The host part of a tcp: target, which its certificate must name (tls.h). */
static void target_host(const struct source *src, char *host, size_t len)
{
	char port[16];

	if (transport__parse_tcp(src->m->params.to, host, len, port, sizeof(port)))
		host[0] = '\0';
}

/* With TLS, the extra connections' handshakes, all at once: tls[1..n-1]. */
static int secure_extra(struct source *src, const int *fds, unsigned int n,
			struct tls_conn **tls)
{
	char host[256], why[200] = "";
	unsigned int i;
	int ret = 0;

	if (!src->tls || n < 2)
		return 0;
	target_host(src, host, sizeof(host));
	for (i = 1; i < n && !ret; i++)
		ret = tls__conn_new(src->tls, fds[i], host, &tls[i]);
	if (!ret)
		ret = tls__handshake(tls + 1, n - 1, HANDSHAKE_TIMEOUT_MS, why, sizeof(why));
	if (ret && why[0])
		fail(src, "TLS on an extra connection to %s failed: %s", src->m->params.to, why);
	return ret;
}

static int send_stripe(struct source *src, uint32_t n, uint32_t chunk)
{
	struct stream_writer cw;
	int ret = stream__writer_init(&cw, &src->io, STREAM_CTX_CONTROL);

	if (!ret) {
		ret = stream__write_stripe(&cw, n, chunk);
		stream__writer_exit(&cw);
	}
	return ret;
}

/*
 * The destination took some of the connections offered: JOIN on each extra one used,
 * STRIPE (or STRIPE_CHUNKED), then striped. A 1.4 destination is told how many of
 * them are used (those the round trip called for, maybe one); a 1.3 one expects all
 * it took, and the missing ones are started now.
 */
static int join_connections(struct source *src, uint32_t taken)
{
	uint32_t chunk = connections__stripe_chunk(src->features), n, i;
	struct tls_conn *tls[STREAM_MAX_CONNECTIONS] = { NULL };
	int fds[STREAM_MAX_CONNECTIONS];
	int ret = 0;

	if (!chunk)
		ret = add_connections(src, taken);
	n = MIN(src->m->nr_extra + 1, chunk ? MIN(src->want, taken) : taken);
	close_connections(src, n - 1);
	fds[0] = src->m->fd;
	for (i = 1; i < n && !ret; i++) {
		fds[i] = src->m->extra_fd[i - 1];
		ret = transport__connect_finish(fds[i]);
	}
	/*
	 * The destination reads STRIPE before it takes the extra connections, so it
	 * answers their TLS handshakes only after it: with TLS, STRIPE goes first.
	 */
	if (!ret && src->tls)
		ret = send_stripe(src, n, chunk);
	if (!ret)
		ret = secure_extra(src, fds, n, tls);
	for (i = 1; i < n && !ret; i++)
		ret = connections__send_join(fds[i], tls[i], src->token, i);
	if (!ret && !src->tls)
		ret = send_stripe(src, n, chunk);
	if (!ret && n > 1)
		ret = stream_io__stripe(&src->io, fds, n, chunk ? chunk : STREAM_STRIPE_CHUNK, false);
	for (i = 1; i < n && !ret && tls[i]; i++) {
		ret = stream_io__set_tls(&src->io, i, tls[i]);
		tls[i] = NULL;
	}
	for (i = 1; i < n; i++)
		tls__conn_free(tls[i]);
	if (ret) {
		fail(src, "cannot open %u connections to the destination: %s", n, strerror(-ret));
		return ret;
	}
	if (n < 2)
		return 0;
	pthread_mutex_lock(&src->m->lock);
	src->m->stats.connections = n;
	pthread_mutex_unlock(&src->m->lock);
	pr_debug("migration: the stream goes over %u connections, %u KiB at a time", n,
		 (unsigned int)(src->io.stripe_chunk / KiB));
	return 0;
}

/* A snapshot encrypted at rest: the stream goes through a seal (seal.h). */
static int seal_target(struct source *src, int fd)
{
	struct migrate_params *p = &src->m->params;
	struct seal *s;
	int ret;

	ret = seal__writer(fd, p->encrypt_key, &s);
	explicit_bzero(p->encrypt_key, sizeof(p->encrypt_key));
	if (!ret)
		ret = stream_io__seal(&src->io, s);
	if (ret)
		fail(src, "cannot start the encrypted snapshot: %s", strerror(-ret));
	return ret;
}

/*
 * A file is opened here; over TCP the header and CONFIG are written to memory first,
 * to go out with the connection (connect_target).
 */
static int open_target(struct source *src)
{
	const char *to = src->m->params.to;
	int fd, ret;

	if (strncmp(to, "file:", 5)) {
		make_offer(src);
		stream_io__init_mem_writer(&src->io);
		return stream__writer_init(&src->w, &src->io, STREAM_CTX_DATA);
	}
	src->is_file = true;
	fd = open(to + 5, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		fail(src, "cannot create %s: %s", to + 5, strerror(-ret));
		return ret;
	}
	pthread_mutex_lock(&src->m->lock);
	src->m->fd = fd;
	pthread_mutex_unlock(&src->m->lock);
	ret = stream_io__init_fd(&src->io, fd);
	if (!ret && src->m->params.has_encrypt_key)
		ret = seal_target(src, fd);
	if (!ret)
		ret = stream__writer_init(&src->w, &src->io, STREAM_CTX_DATA);
	return ret;
}

/*
 * Connects, sending what was written so far (header, CONFIG) as the first bytes; the
 * connections offered start with it, so that their handshakes overlap ACCEPTED. Those
 * the round trip does not call for are closed once ACCEPTED says what the destination
 * took: a 1.3 destination uses all it took, and opening them again would find its
 * listen backlog full of the closed ones (it accepts them only after STRIPE).
 */
static void close_all(int *fds, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/*
 * With TLS the header and CONFIG wait for the first connection's handshake (no Fast
 * Open: the SYN could only carry them in the clear). 0 with *c, 1 for a destination
 * that does not speak TLS where plaintext is allowed (nothing left open), or -errno.
 */
static int connect_tls(struct source *src, unsigned int n, int *fds, struct tls_conn **c,
		       uint64_t *rtt)
{
	enum tls_mode mode = src->m->params.tls.mode;
	const char *to = src->m->params.to;
	char host[256], why[200] = "";
	int ret;

	ret = transport__connect(to, NULL, 0, n, fds, src->err, sizeof(src->err));
	if (ret)
		return ret;
	/* The link's, from TCP's handshake: the TLS one adds the peer's crypto to it. */
	*rtt = transport__rtt_ns(fds[0]);
	target_host(src, host, sizeof(host));
	ret = tls__conn_new(src->tls, fds[0], host, c);
	if (!ret)
		ret = tls__handshake(c, 1, HANDSHAKE_TIMEOUT_MS, why, sizeof(why));
	if (!ret)
		return 0;
	if (ret == -ECONNRESET && mode == TLS_MODE_OPPORTUNISTIC) {
		pr_warn("migration: %s does not speak TLS (%s): this move goes UNENCRYPTED "
			"(--encrypt opportunistic)", to, why);
		ret = 1;
	} else {
		fail(src, "TLS with %s failed, nothing was sent: %s", to, why[0] ? why :
			  strerror(-ret));
	}
	tls__conn_free(*c);
	*c = NULL;
	close_all(fds, n);
	return ret;
}

static int connect_target(struct source *src)
{
	int fds[STREAM_MAX_CONNECTIONS];
	unsigned int i, n = MAX(src->offer, 1U);
	struct tls_conn *tls = NULL;
	const uint8_t *first;
	uint64_t rtt = 0;
	size_t len;
	int ret = 1;

	first = stream_io__mem_data(&src->io, &len);
	if (src->tls)
		ret = connect_tls(src, n, fds, &tls, &rtt);
	if (ret == 1) {
		tls__ctx_free(src->tls);
		src->tls = NULL;
		ret = transport__connect(src->m->params.to, first, len, n, fds, src->err,
					 sizeof(src->err));
	}
	if (ret)
		return ret;
	pthread_mutex_lock(&src->m->lock);
	src->m->fd = fds[0];
	src->m->stats.connections = 1;
	src->m->stats.encryption = src->tls ? tls__ctx_kind(src->tls) : "none";
	for (i = 1; i < n; i++)
		if (fds[i] >= 0)
			src->m->extra_fd[src->m->nr_extra++] = fds[i];
	pthread_mutex_unlock(&src->m->lock);
	if (transport__fast_opened(fds[0]))
		pr_debug("migration: the header and CONFIG went in the SYN (TCP Fast Open)");
	if (!tls)
		rtt = transport__rtt_ns(fds[0]);
	src->want = connections__wanted(src->m->params.connections, rtt);
	pr_debug("migration: round trip %llu us (the handshake's): %u connection(s) wanted",
		 (unsigned long long)(rtt / 1000), src->want);
	if (tls)
		return stream_io__mem_to_tls(&src->io, fds[0], tls);
	return stream_io__mem_to_fd(&src->io, fds[0]);
}

/* Where disk `instance` goes on the destination, or "" (it has the image). */
static const char *disk_to(const struct migrate_params *p, uint32_t instance)
{
	for (unsigned int i = 0; i < p->nr_disk_to; i++)
		if (p->disk_to[i].disk == instance)
			return p->disk_to[i].to;
	return "";
}

/*
 * What the guest sees of its devices; the destination maps them onto its own backends.
 * A disk sent through the stream says where it goes there (disk_to).
 */
static void describe_devices(struct vm *vm, const struct migrate_params *p,
			     struct stream_config *c)
{
	unsigned int i;

	snprintf(c->devices[0].type, sizeof(c->devices[0].type), "serial");
	c->nr_devices = 1;
	for (i = 0; i < vm->nr_vdevs && c->nr_devices < STREAM_MAX_DEVICES; i++) {
		struct stream_device *sd = &c->devices[c->nr_devices++];
		struct vdev *d = &vm->vdevs[i];

		sd->instance = d->instance;
		if (d->blk) {
			snprintf(sd->type, sizeof(sd->type), "virtio-blk");
			sd->capacity = d->blk->disk.size;
			sd->readonly = d->blk->disk.readonly;
			snprintf(sd->disk_to, sizeof(sd->disk_to), "%s", disk_to(p, d->instance));
		} else {
			snprintf(sd->type, sizeof(sd->type), "virtio-net");
			virtio_net__get_mac(d->net, sd->mac);
			sd->has_mac = true;
		}
	}
}

static int send_config(struct source *src)
{
	struct vm *vm = src->vm;
	struct stream_config *c = calloc(1, sizeof(*c));
	unsigned int i;
	int ret;

	if (!c)
		return -ENOMEM;
	c->ram_size = vm->mem.size;
	c->nr_vcpus = vm->nr_vcpus;
	c->machine_version = STREAM_MACHINE_VERSION;
	snprintf(c->cmdline, sizeof(c->cmdline), "%s", vm->cfg.cmdline ? vm->cfg.cmdline : "");
	c->nr_regions = vm->mem.nr_regions;
	for (i = 0; i < vm->mem.nr_regions; i++)
		c->regions[i] = (struct stream_region){ vm->mem.regions[i].gpa,
							vm->mem.regions[i].size };
	memcpy(c->uuid, vm->uuid, sizeof(c->uuid));
	ret = x86__cpu_signature(&vm->kvm, &c->cpuid, &c->cpuid_len);
	if (!ret) {
		describe_devices(vm, &src->m->params, c);
		c->features = src->is_file ? 0
					   : STREAM_FEATURE_ROUND_ACK | STREAM_FEATURE_STRIPE_CHUNK;
		if (!src->is_file && !src->m->params.confirm_ready)
			c->features |= STREAM_FEATURE_GO_WITH_END;
		if (src->m->params.compress != MIGRATE_COMPRESS_OFF)
			c->features |= STREAM_FEATURE_RAM_LZ4 | STREAM_FEATURE_RAM_ZSTD;
		if (!src->is_file && src->m->params.verify)
			c->features |= STREAM_FEATURE_VERIFY_PAGES;
		if (src->m->params.nr_disk_to)
			c->features |= STREAM_FEATURE_DISK_TO;
		c->connections = src->offer;
		memcpy(c->token, src->token, sizeof(c->token));
		ret = stream__write_config(&src->w, c);
	}
	if (ret)
		fail(src, "cannot send the VM's configuration: %s",
		     src->w.err[0] ? src->w.err : strerror(-ret));
	stream__config_release(c);
	free(c);
	return ret;
}

static int send_round_marker(struct source *src, uint32_t round, uint64_t dirty, uint64_t ns,
			     uint64_t pages_before, uint64_t bytes_before)
{
	struct stream_round rd = {
		.round = round,
		.pages_sent = src->s.pages_sent - pages_before,
		.bytes_sent = src->w.bytes - bytes_before,
		.dirty_pages = dirty,
		.duration_ns = ns,
	};

	return stream__write_round(&src->w, &rd);
}

static bool cancelled(struct source *src)
{
	return __atomic_load_n(&src->m->cancel, __ATOMIC_RELAXED);
}

/* Raises the throttle of the dirtiers (all vCPUs if none is known) to at least pct. */
static void throttle(struct source *src, const bool *dirtier, int nr_dirtiers, uint32_t pct)
{
	struct vm *vm = src->vm;
	unsigned int i;
	char who[160] = "";
	size_t len = 0;

	for (i = 0; i < vm->nr_vcpus; i++) {
		uint32_t cur = __atomic_load_n(&vm->vcpus[i].throttle_pct, __ATOMIC_RELAXED);

		if (nr_dirtiers > 0 && !dirtier[i])
			continue;
		vm__set_vcpu_throttle(vm, i, MAX(cur, pct));
		if (len < sizeof(who))
			len += (size_t)snprintf(who + len, sizeof(who) - len, " %u", i);
	}
	pthread_mutex_lock(&src->m->lock);
	src->m->stats.throttle_pct = vm->throttle_pct;
	src->m->stats.max_throttle_pct = MAX(src->m->stats.max_throttle_pct, vm->throttle_pct);
	pthread_mutex_unlock(&src->m->lock);
	pr_info("migration: vCPU%s throttled to %u%%", who, pct);
}

/*
 * Auto-converge, as vMotion's SDPS and QEMU's auto-converge do it: when a round
 * does not shrink the dirty set by a tenth, slow the vCPUs that dirty it (QEMU's
 * dirty-limit; the others run on). The step is at least THROTTLE_STEP, and enough
 * at once for the guest's unthrottled dirty rate to fall to half the measured
 * bandwidth, so a guest that dirties far faster than the link is brought down in
 * one or two rounds, not ten.
 */
static void converge(struct source *src, uint64_t dirty, uint64_t prev_dirty, uint64_t dirty_rate,
		     uint64_t bw, const bool *dirtier, int nr_dirtiers)
{
	struct vm *vm = src->vm;
	uint32_t pct = __atomic_load_n(&vm->throttle_pct, __ATOMIC_RELAXED), want;
	uint64_t unthrottled;

	if (!prev_dirty || dirty * 10 < prev_dirty * 9)
		return;
	unthrottled = dirty_rate * 100 / (100 - pct);
	want = unthrottled > bw / 2 ? (uint32_t)(100 - (bw / 2) * 100 / MAX(unthrottled, 1ULL)) : 0;
	pct = MIN(MAX(MAX(pct ? pct + THROTTLE_STEP : THROTTLE_FIRST, want), pct), THROTTLE_MAX);
	pr_info("migration: not converging (%llu MB/s dirtied, %llu MB/s sent)",
		(unsigned long long)(dirty_rate / 1000000), (unsigned long long)(bw / 1000000));
	throttle(src, dirtier, nr_dirtiers, pct);
}

/*
 * Once the pause fits but a round no longer shrinks the dirty set, the vCPUs that
 * dirty it are slowed (50 %, then +25 % per round up to POLISH_THROTTLE_MAX) while
 * the others, a heartbeat or a request loop, run on: the set then shrinks to what
 * they dirty, and the pause with it. False when that cannot help: no dirtier known
 * (slowing every vCPU would stall the guest as much as the pause it saves), or
 * they are at the maximum already.
 */
static bool polish_throttle(struct source *src, const bool *dirtier, int nr_dirtiers)
{
	uint32_t cur = 0;
	unsigned int i;

	if (nr_dirtiers <= 0)
		return false;
	for (i = 0; i < src->vm->nr_vcpus; i++)
		if (dirtier[i])
			cur = MAX(cur, __atomic_load_n(&src->vm->vcpus[i].throttle_pct,
						       __ATOMIC_RELAXED));
	if (cur >= POLISH_THROTTLE_MAX)
		return false;
	throttle(src, dirtier, nr_dirtiers, cur ? MIN(cur + 25, POLISH_THROTTLE_MAX) : 50);
	return true;
}

static int read_acks(struct source *src, bool wait_all);
static int wait_caught_up(struct source *src);

/*
 * Before the pause the destination catches up (wait_caught_up). What the vCPUs
 * dirtied meanwhile would all fall into the pause: when the wait took
 * longer than two round trips and CATCH_UP_SLACK_NS, the destination was behind and
 * one more round sends it first (*again), at most CATCH_UP_ROUNDS times. A wait of
 * a round trip or two is the link's, not a backlog, and the next round's would be
 * as long, unless that round need not wait (rounds_in_flight): on a long link it
 * need not, so the first such wait gets one more round too: otherwise the pages
 * dirtied during a long link's wait cross that link inside the pause.
 */
#define CATCH_UP_SLACK_NS 1000000ULL
#define CATCH_UP_ROUNDS	  3

static int catch_up(struct source *src, bool *again)
{
	uint64_t t0 = util__now_ns(), waited;
	int ret = wait_caught_up(src);
	bool backlog, link;

	waited = util__now_ns() - t0;
	backlog = waited > 2 * transport__rtt_ns(src->m->fd) + CATCH_UP_SLACK_NS;
	link = !backlog && waited > CATCH_UP_SLACK_NS && !src->link_catch_up;
	*again = !ret && (backlog || link) && src->catch_ups++ < CATCH_UP_ROUNDS;
	src->link_catch_up |= link;
	if (*again)
		pr_debug("waited %llu us for the destination (%s): one more round for what was "
			 "dirtied meanwhile", (unsigned long long)(waited / 1000),
			 backlog ? "it was behind" : "the link's round trip");
	return ret;
}

/*
 * On a long link the wait for the last rounds' acknowledgements is a round trip even
 * when nothing is behind (150 ms on the far link). It keeps out of the pause only
 * what the destination has still to do, and that is small when no connection has
 * more queued than its congestion window (the rest is on the wire, and arrives before
 * the final state as fast as it would before an acknowledgement) and the pages sent
 * since the last acknowledged round take the destination under half a round trip at
 * the measured rate. Never while round 1 is unacknowledged: the measured rate is how
 * fast the sockets took it, and the destination applying all touched RAM takes
 * longer. Then the pause comes at once: at most a little longer, a round trip
 * shorter a move.
 *
 * The round trip is the link's smallest, not the smoothed one: queueing on a busy
 * host inflates that to several ms even on loopback, enough to let milliseconds of
 * unapplied pages into the pause. Only the link's delay is saved by not waiting; on
 * loopback only a last round of a few pages goes without the wait.
 */
static bool rounds_in_flight(struct source *src, uint64_t bw)
{
	uint64_t rtt = transport__min_rtt_ns(src->m->fd), pages, behind_ns;
	unsigned int i;

	if (!rtt || !bw || !src->acked_round || src->last_round - src->acked_round >= ROUND_RING)
		return false;
	pages = src->s.pages_sent - src->round_pages[src->acked_round % ROUND_RING];
	behind_ns = rate__ns_for(pages * GUEST_PAGE_SIZE, bw);
	if (behind_ns >= rtt / 2) {
		pr_debug("not pausing before the acknowledgements: %llu pages take %llu us to "
			 "apply, half the round trip or more (%llu us)", (unsigned long long)pages,
			 (unsigned long long)(behind_ns / 1000), (unsigned long long)(rtt / 1000));
		return false;
	}
	for (i = 0; i <= src->m->nr_extra; i++)
		if (!transport__all_in_window(i ? src->m->extra_fd[i - 1] : src->m->fd)) {
			pr_debug("not pausing before the acknowledgements: connection %u has more "
				 "queued than its congestion window", i);
			return false;
		}
	pr_debug("the rounds not yet acknowledged are in flight: pausing now (%llu pages, "
		 "%llu us to apply, round trip %llu us)",
		 (unsigned long long)pages, (unsigned long long)(behind_ns / 1000),
		 (unsigned long long)(rtt / 1000));
	return true;
}

/*
 * The pause fits: 1 to go to it now, 0 for another round (polishing: the set still
 * shrinks, or its dirtiers can be slowed more; or the catch-up left too much), -errno.
 */
static int time_to_pause(struct source *src, uint64_t predicted_us, uint64_t bw, bool stalled,
			 const bool *dirtier, int nr_dirtiers, uint32_t polish)
{
	bool again;
	int ret;

	/*
	 * The other moves from this host hold back from the first round the pause fits,
	 * polishing rounds included: what they have in flight, on this host and in the
	 * ports' queues on the way, needs those rounds' time to drain before the pause's
	 * bytes go (docs/bench.md, "Unsent bytes"). A claim holds each of the others back
	 * at most LINK_SHARE_MAX_WAIT_NS.
	 */
	link_share__claim(&src->share);
	if (predicted_us > PAUSE_FLOOR_US && polish < MAX_POLISH_ROUNDS &&
	    (!stalled || polish_throttle(src, dirtier, nr_dirtiers)))
		return 0;
	/*
	 * A destination still applying rounds before the last is behind: the wait for it
	 * will be long (up to seconds on a busy host after a large first round), and what
	 * the dirtiers write meanwhile only adds to what it must apply. They are slowed
	 * while it catches up, as when polishing.
	 */
	if (src->features & STREAM_FEATURE_ROUND_ACK) {
		ret = read_acks(src, false);
		if (ret)
			return ret;
		pr_debug("the pause fits; the destination has applied round %u of %u",
			 src->acked_round, src->last_round);
		if (rounds_in_flight(src, bw))
			return 1;
		if (src->acked_round + 1 < src->last_round)
			polish_throttle(src, dirtier, nr_dirtiers);
	}
	ret = catch_up(src, &again);
	if (!ret && again)
		link_share__release(&src->share);
	return ret ? ret : !again;
}

/* What the guest wrote to the disks sent through the stream since the last drain. */
static int send_disk_writes(struct source *src)
{
	char why[200];
	int ret = disk_send__drain(&src->disks, why, sizeof(why));

	if (ret)
		fail(src, "%s", why);
	return ret;
}

/* Pre-copy: round 1 sends all touched RAM, then dirty pages until the pause fits. */
static int precopy(struct source *src)
{
	struct migrate_params *p = &src->m->params;
	uint64_t prev_dirty = 0, bw = 0, synced_at;
	uint32_t round = 1, polish = 0;
	bool dirtier[VM_MAX_VCPUS] = { false }, found[VM_MAX_VCPUS];
	int ret, nr_found, nr_dirtiers = 0;

	ret = ram__log_start(&src->t, &src->vm->kvm);
	if (ret) {
		fail(src, "cannot start dirty logging: %s", strerror(-ret));
		return ret;
	}
	src->s.copy = true;
	/* Their fault counts from here on say which vCPUs dirty memory. */
	dirtiers__yield(&src->dirtiers);
	synced_at = util__now_ns();
	/* Each vCPU's fault count from here on is its share of the dirtying. */
	dirtiers__since(src->vm, src->faults, found);
	for (;;) {
		uint64_t t0 = util__now_ns(), pages0 = src->s.pages_sent, bytes0 = src->w.bytes;
		uint64_t now, ns, dirty_bytes, predicted_us, sent, dirty_rate, since_sync;
		int64_t dirty;
		bool fits;

		ret = round == 1 ? ram__send_all(&src->s) : ram__send_pending(&src->s);
		if (ret)
			return ret;
		if (src->s.digest)
			ram_digest__combine(src->s.digest);
		ret = src->disk_ret ? src->disk_ret : send_disk_writes(src);
		if (ret)
			return ret;
		dirty = ram__sync(&src->t, true);
		if (dirty < 0)
			return (int)dirty;
		now = util__now_ns();
		ns = MAX(now - t0, 1ULL);
		/*
		 * The set was dirtied since the last sync, which may be long before this round
		 * began (a catch-up wait for a far link to drain): its rate is over that time.
		 */
		since_sync = MAX(now - synced_at, 1ULL);
		synced_at = now;
		sent = src->s.pages_sent - pages0;
		bw = rate__bandwidth(bw, sent * GUEST_PAGE_SIZE, ns);
		dirty_bytes = (uint64_t)dirty * GUEST_PAGE_SIZE;
		dirty_rate = rate__per_s(dirty_bytes, since_sync);
		predicted_us = rate__ns_for(dirty_bytes, bw) / 1000;
		ret = send_round_marker(src, round, (uint64_t)dirty, ns, pages0, bytes0);
		if (ret)
			return ret;
		src->last_round = round;
		src->round_pages[round % ROUND_RING] = src->s.pages_sent;
		pthread_mutex_lock(&src->m->lock);
		src->m->stats.rounds = round;
		pthread_mutex_unlock(&src->m->lock);
		update_stats(src, dirty_bytes, bw, dirty_rate);
		pr_debug("round %u: %llu pages sent, %llu dirty, bw %llu MB/s, predicted pause %llu us",
			 round, (unsigned long long)sent, (unsigned long long)dirty,
			 (unsigned long long)(bw / 1000000), (unsigned long long)predicted_us);
		if (src->is_file)
			return 0;
		/* A round too short to tell (a few pages) keeps what the last one found. */
		nr_found = dirtiers__since(src->vm, src->faults, found);
		if (nr_found) {
			nr_dirtiers = nr_found;
			memcpy(dirtier, found, sizeof(dirtier));
		}
		fits = predicted_us <= p->downtime_ms * 1000;
		if (fits) {
			ret = time_to_pause(src, predicted_us, bw, (uint64_t)dirty * 4 > sent * 3,
					    dirtier, nr_dirtiers, polish++);
			if (ret)
				return ret < 0 ? ret : 0;
		} else {
			link_share__release(&src->share);
		}
		if (cancelled(src))
			return -ECANCELED;
		if (util__now_ns() > src->deadline_ns) {
			fail(src, "did not converge within %llu s (last round: %llu MiB dirty, "
				  "%llu MB/s); the VM keeps running here",
			     (unsigned long long)p->timeout_s, (unsigned long long)(dirty_bytes >> 20),
			     (unsigned long long)(bw / 1000000));
			return -ETIMEDOUT;
		}
		if (!fits)
			converge(src, (uint64_t)dirty, prev_dirty, dirty_rate, bw, dirtier, nr_dirtiers);
		prev_dirty = (uint64_t)dirty;
		round++;
	}
}

static int send_device_state(struct source *src)
{
	struct vm *vm = src->vm;
	unsigned int i;
	int ret = 0;

	for (i = 0; !ret && i < vm->nr_vdevs; i++) {
		struct vdev *d = &vm->vdevs[i];

		if (d->blk) {
			struct virtio_blk_state st;

			virtio_blk__save(d->blk, &st);
			ret = vmstate__put_virtio_blk(&src->w, d->instance, &st);
		} else {
			struct virtio_net_state st;

			virtio_net__save(d->net, &st);
			ret = vmstate__put_virtio_net(&src->w, d->instance, &st);
		}
	}
	return ret;
}

static int send_state(struct source *src)
{
	struct vm *vm = src->vm;
	struct serial8250_state *ser = malloc(sizeof(*ser));
	struct x86_vcpu_state *vs = malloc(sizeof(*vs));
	struct x86_vm_state vms;
	unsigned int i;
	int ret;

	if (!ser || !vs) {
		ret = -ENOMEM;
		goto out;
	}
	ret = x86__vm_save(&vm->kvm, &vms);
	if (!ret)
		ret = vmstate__put_vm(&src->w, &vms);
	for (i = 0; !ret && i < vm->nr_vcpus; i++) {
		ret = x86__vcpu_save(&vm->vcpus[i].kfd, vm->msr_indices, vm->nr_msr_indices, vs);
		if (!ret)
			ret = vmstate__put_vcpu(&src->w, i, vs);
	}
	if (!ret) {
		serial8250__save(&vm->serial, ser);
		ret = vmstate__put_serial(&src->w, ser);
	}
	if (!ret)
		ret = send_device_state(src);
out:
	if (ret)
		fail(src, "cannot save the VM's state: %s", src->w.err[0] ? src->w.err : strerror(-ret));
	free(ser);
	free(vs);
	return ret;
}

/*
 * Format 1.7 (the destination took STREAM_FEATURE_VERIFY_PAGES): the page digests
 * are up to date (each page was hashed as it was sent, the last ones just now), and
 * only the chunks those last pages are in need their digest again.
 */
static int send_verify_pages(struct source *src, uint64_t t0)
{
	struct ram_digest *rd = src->s.digest;
	size_t chunks = ram_digest__combine(rd);
	int ret;

	ret = stream__write_verify(&src->w, rd->chunk, rd->nr_chunks);
	pr_debug("verify: %llu page digests from the last RAM, %zu of %zu chunk digests "
		 "recomputed, %llu us",
		 (unsigned long long)(rd->pages - src->pause_digests),
		 chunks, rd->nr_chunks, (unsigned long long)((util__now_ns() - t0) / 1000));
	return ret;
}

static int send_verify(struct source *src)
{
	uint64_t *digests, t0 = util__now_ns();
	size_t n;
	int ret;

	if (src->s.digest)
		return send_verify_pages(src, t0);
	/* Hashing all of RAM is no short, bounded step: not at real-time priority. */
	util__switchover_priority(false);
	ret = stream__ram_digest(&src->vm->mem, &digests, &n);
	if (src->realtime)
		util__switchover_priority(true);
	if (ret)
		return ret;
	ret = stream__write_verify(&src->w, digests, n);
	free(digests);
	pr_debug("verify: all %zu chunks of RAM hashed in the pause, %llu us", n,
		 (unsigned long long)((util__now_ns() - t0) / 1000));
	return ret;
}

/*
 * GO: the VM is the destination's from here on. The disks' locks move with it: the
 * destination takes them on GO, so they are released first.
 */
static int send_go(struct source *src)
{
	struct stream_writer cw;
	int ret;

	ret = devices__release_disks(src->vm);
	if (ret) {
		/* An image left unlocked keeps the VM paused here (take_back). */
		src->disks_released = !devices__disks_locked(src->vm);
		fail(src, "cannot release the disk locks: %s%s", strerror(-ret),
		     src->disks_released ? "; a disk image could not be locked again" : "");
		return ret;
	}
	src->disks_released = true;
	ret = stream__writer_init(&cw, &src->io, STREAM_CTX_CONTROL);
	if (ret)
		return ret;
	src->go_sent = true; /* from here, a lost connection leaves the outcome unknown */
	ret = stream__write_control(&cw, STREAM_REC_GO);
	if (ret)
		fail(src, "cannot send GO: %s", strerror(-ret));
	stream__writer_exit(&cw);
	return ret;
}

/*
 * --verify with disks sent: their digests. Reading whole images is no short, bounded
 * step: not at real-time priority.
 */
static int send_disk_digests(struct source *src)
{
	char why[200];
	int ret;

	if (!src->disks.n)
		return 0;
	util__switchover_priority(false);
	ret = disk_send__digests(&src->disks, why, sizeof(why));
	if (src->realtime)
		util__switchover_priority(true);
	if (ret)
		fail(src, "%s", why);
	return ret;
}

/* The pause: last dirty pages, every piece of state, the digest, END (and GO, 1.5). */
static int stop_and_copy(struct source *src)
{
	int64_t dirty;
	int ret;

	set_status(src->m, MIG_COMPLETING);
	dirtiers__restore(&src->dirtiers);
	/* Until the hand-over (finish()): no other thread on this host delays the pause. */
	src->realtime = !src->is_file && !util__switchover_priority(true);
	stream_io__urgent(&src->io);
	src->cpu_wait_ns = util__thread_cpu_wait_ns();
	src->pause_ns = util__now_ns();
	ret = vm__pause(src->vm);
	if (ret) {
		fail(src, "cannot pause the VM: %s", strerror(-ret));
		return ret;
	}
	src->paused = true;
	src->paused_ns = util__now_ns();
	vm__drop_throttle(src->vm);
	src->unthrottled_ns = util__now_ns();
	/* A disk request waiting for room in its queue would hold up the quiesce. */
	disk_send__unbound(&src->disks);
	/* In-flight device I/O completes now, its guest writes in the final sync. */
	devices__quiesce(src->vm);
	src->quiesced = true;
	src->quiesced_ns = util__now_ns();
	/* The disks' last writes, before the state: the destination's images are complete. */
	ret = send_disk_writes(src);
	if (!ret && src->m->params.verify)
		ret = send_disk_digests(src);
	if (ret)
		return ret;
	src->disks_ns = util__now_ns();
	dirty = ram__sync(&src->t, false);
	if (dirty < 0)
		return (int)dirty;
	src->synced_ns = util__now_ns();
	src->final_pages = (uint64_t)dirty;
	src->pause_digests = src->digest.pages;
	src->s.copy = false; /* nothing writes guest RAM now: send straight from it */
	stream_io__cork(&src->io, true);
	ret = ram__send_pending(&src->s);
	src->ram_sent_ns = util__now_ns();
	if (!ret)
		ret = send_state(src);
	src->state_sent_ns = util__now_ns();
	if (!ret && src->m->params.verify)
		ret = send_verify(src);
	if (!ret)
		ret = stream__write_end(&src->w);
	if (!ret && (src->features & STREAM_FEATURE_GO_WITH_END))
		ret = send_go(src);
	stream_io__cork(&src->io, false);
	src->sent_ns = util__now_ns();
	update_stats(src, 0, 0, 0);
	return ret;
}

/* The destination's ERROR: why it will not take the VM. */
static void refused(struct source *src, const struct stream_record *rec)
{
	char msg[STREAM_ERROR_MSG_MAX + 1];
	uint32_t code;

	if (stream__error_decode(rec->payload, rec->length, &code, msg))
		snprintf(msg, sizeof(msg), "(unreadable error message)");
	fail(src, "destination refused the VM: %s", msg);
}

/* Reads the next control record, which must be want; *out (if given) is valid until the next read. */
static int expect_record(struct source *src, struct stream_reader *r, uint32_t want,
			 struct stream_record *out)
{
	struct stream_record rec;
	int ret;

	ret = stream_io__wait_readable(&src->io, HANDSHAKE_TIMEOUT_MS);
	if (!ret)
		ret = stream__read_record(r, &rec);
	if (ret) {
		const char *tls = stream_io__channel_error(&src->io);

		fail(src, "destination went away before %s: %s", stream__type_name(want),
		     ret == -ETIMEDOUT ? "timed out" : tls ? tls : r->err[0] ? r->err :
		     strerror(-ret));
		return ret;
	}
	if (rec.type == STREAM_REC_ERROR) {
		refused(src, &rec);
		src->dest_refused = true;
		return -EREMOTEIO;
	}
	if (rec.type != want) {
		fail(src, "destination sent %s, expected %s", stream__type_name(rec.type),
		     stream__type_name(want));
		return -EPROTO;
	}
	if (out)
		*out = rec;
	return 0;
}

static int expect(struct source *src, struct stream_reader *r, uint32_t want)
{
	return expect_record(src, r, want, NULL);
}

/*
 * A send that failed because the destination hung up: a destination that gives up
 * (a full disk, a record it refused) says why in an ERROR before it closes, and that
 * reason, not the EPIPE or reset it left here, is what the user needs. Reads what the
 * control channel still holds, past round acknowledgements, for at most a second.
 */
static void peer_reason(struct source *src, int ret)
{
	uint64_t deadline = util__now_ns() + 1000000000ULL;
	struct stream_record rec;
	struct stream_reader r;
	int i;

	if (src->err[0] || (ret != -EPIPE && ret != -ECONNRESET))
		return;
	if (stream__reader_init(&r, &src->io, STREAM_CTX_CONTROL))
		return;
	for (i = 0; i < 4096 && util__now_ns() < deadline; i++) {
		if (stream_io__wait_readable(&src->io,
					     (int)((deadline - util__now_ns()) / 1000000) + 1) ||
		    stream__read_record(&r, &rec))
			break;
		if (rec.type == STREAM_REC_ROUND_ACK)
			continue;
		if (rec.type == STREAM_REC_ERROR)
			refused(src, &rec);
		break;
	}
	stream__reader_exit(&r);
}


/* Where the pause went: what to cut first when it is too long. */
static void log_pause(struct source *src)
{
	uint64_t now = src->pause_end_ns;
	char loaded[64] = "GO with END";

	if (src->ready_ns)
		snprintf(loaded, sizeof(loaded), "destination loaded (READY) %llu",
			 util__us(src->sent_ns, src->ready_ns));
	/* The clock's readings let the destination's line split the last step. */
	pr_debug("pause %llu us: vCPUs stopped %llu, quiesce + dirty sync %llu (throttle off "
		 "%llu, devices %llu, disk writes %llu, dirty log %llu), last RAM (%llu pages) + "
		 "state sent %llu (RAM %llu, state %llu), %s, resumed there (RESUMED) %llu%s, "
		 "waited for a CPU %llu; "
		 "CLOCK_MONOTONIC us: sent %llu, RESUMED read %llu",
		 util__us(src->pause_ns, now), util__us(src->pause_ns, src->paused_ns),
		 util__us(src->paused_ns, src->synced_ns),
		 util__us(src->paused_ns, src->unthrottled_ns),
		 util__us(src->unthrottled_ns, src->quiesced_ns),
		 util__us(src->quiesced_ns, src->disks_ns), util__us(src->disks_ns, src->synced_ns),
		 (unsigned long long)src->final_pages, util__us(src->synced_ns, src->sent_ns),
		 util__us(src->synced_ns, src->ram_sent_ns),
		 util__us(src->ram_sent_ns, src->state_sent_ns), loaded,
		 util__us(src->ready_ns ? src->ready_ns : src->sent_ns, now),
		 src->realtime ? "; at real-time priority" : "", util__us(0, src->cpu_wait_ns),
		 util__us(0, src->sent_ns), util__us(0, now));
}

/*
 * The destination says ACCEPTED once it has built the VM (registering guest RAM with KVM
 * alone takes ~8 ms per GiB on kvm_pvm). Waiting for it before any RAM is sent keeps
 * that out of the pause of a short migration, and a refusal (CPU, devices) arrives
 * before a byte of RAM has moved.
 */
static int wait_accepted(struct source *src)
{
	struct stream_record rec;
	struct stream_reader r;
	uint32_t taken;
	int ret;

	ret = stream__reader_init(&r, &src->io, STREAM_CTX_CONTROL);
	if (ret)
		return ret;
	ret = expect_record(src, &r, STREAM_REC_ACCEPTED, &rec);
	if (!ret && (stream__accepted_decode(rec.payload, rec.length, &src->features, &taken) ||
		     taken > MAX(src->offer, 1U))) {
		fail(src, "destination accepted features or connections this godwit did not offer");
		ret = -EPROTO;
	}
	stream__reader_exit(&r);
	if (ret)
		return ret;
	if (taken < 2) {
		close_connections(src, 0);
		return 0;
	}
	return join_connections(src, taken);
}

/*
 * Reads the destination's ROUND_ACKs: those that came, or (wait_all) until every
 * round is acknowledged, at most HANDSHAKE_TIMEOUT_MS for each.
 */
static int read_acks(struct source *src, bool wait_all)
{
	struct stream_record rec;
	struct stream_reader r;
	uint32_t acked;
	int ret;

	if (!(src->features & STREAM_FEATURE_ROUND_ACK) || src->acked_round >= src->last_round)
		return 0;
	ret = stream__reader_init(&r, &src->io, STREAM_CTX_CONTROL);
	if (ret)
		return ret;
	while (!ret && src->acked_round < src->last_round) {
		if (!wait_all && stream_io__wait_readable(&src->io, 0))
			break;
		ret = expect_record(src, &r, STREAM_REC_ROUND_ACK, &rec);
		if (!ret && (stream__round_ack_decode(rec.payload, rec.length, &acked) ||
			     acked != src->acked_round + 1)) {
			fail(src, "destination acknowledged round %u, expected %u", acked,
			     src->acked_round + 1);
			ret = -EPROTO;
		}
		if (!ret)
			src->acked_round = acked;
	}
	stream__reader_exit(&r);
	return ret;
}

/*
 * Before the pause, the destination catches up: it acknowledges each round once
 * everything before it is in guest RAM. Without this wait, what it had not yet
 * applied (compressed records arrive faster than fresh RAM fills) fell inside the
 * pause, several milliseconds of it. Rounds already acknowledged are not waited for.
 */
static int wait_caught_up(struct source *src)
{
	return read_acks(src, true);
}

/*
 * READY, then GO, then RESUMED; or only RESUMED when GO went with END (format 1.5).
 * The VM is the destination's from GO on.
 */
static int handover(struct source *src)
{
	struct stream_reader r;
	int ret;

	/* Rounds paused on while in flight (rounds_in_flight) are acknowledged first. */
	ret = read_acks(src, true);
	if (ret)
		return ret;
	ret = stream__reader_init(&r, &src->io, STREAM_CTX_CONTROL);
	if (ret)
		return ret;
	if (!src->go_sent) {
		ret = expect(src, &r, STREAM_REC_READY);
		if (ret || cancelled(src))
			goto out;
		src->ready_ns = util__now_ns();
		ret = send_go(src);
		if (ret)
			goto out;
	}
	ret = expect(src, &r, STREAM_REC_RESUMED);
	if (!ret) {
		src->pause_end_ns = util__now_ns();
		src->cpu_wait_ns = util__thread_cpu_wait_ns() - src->cpu_wait_ns;
		log_pause(src);
	}
out:
	stream__reader_exit(&r);
	if (!ret && cancelled(src) && !src->go_sent)
		ret = -ECANCELED;
	return ret;
}

/* Tells the destination why we stop, so it exits with a reason, not just EOF. */
static void send_abort(struct source *src)
{
	struct stream_writer cw;

	if (src->is_file || src->m->fd < 0 || stream__writer_init(&cw, &src->io, STREAM_CTX_CONTROL))
		return;
	if (stream__write_error(&cw, 1, src->err[0] ? src->err : "migration cancelled"))
		pr_debug("could not tell the destination why the migration stopped");
	stream__writer_exit(&cw);
}

/*
 * zstd only when asked for (--compress zstd) and taken. It leaves fewer bytes than
 * LZ4 at a third of its speed, but auto does not pick it: even on a long link its
 * smaller first round did not shorten the move (docs/bench.md, "Measurements behind
 * design choices").
 */
static bool use_zstd(struct source *src)
{
	return src->s.compress == MIGRATE_COMPRESS_ZSTD &&
	       (src->is_file || (src->features & STREAM_FEATURE_RAM_ZSTD));
}

/*
 * Data pages per RAM record while other moves leave this host: a source holds back for
 * another's pause between records, so the record it is writing still goes ahead of
 * that pause's last bytes. 256 KiB take 2 ms at 1 Gbit/s, a whole record 8.4.
 */
#define SHARED_BATCH_PAGES 64
#define SHARED_BATCH_KIB   ((unsigned int)(SHARED_BATCH_PAGES * GUEST_PAGE_SIZE / 1024))

/*
 * While other moves leave this host too, few bytes wait unsent in the socket and the
 * records are short: holding back for another's pause (link_share__give_way) stops
 * what this one sends, not only what it writes. Alone, the kernel's default and whole
 * records: the limit slowed a single move (docs/bench.md, "Unsent bytes"). A striped
 * stream (a long link's) keeps the default: one thread writes its connections in
 * turn, and with the limit it would wait on each while the others run dry.
 */
static void share_the_socket(struct source *src)
{
	bool others = link_share__others(&src->share);

	if (others == src->unsent_limited || src->io.nr_stripes)
		return;
	transport__limit_unsent(src->m->fd, others);
	src->s.batch_pages = others ? SHARED_BATCH_PAGES : 0;
	src->unsent_limited = others;
	src->unsent_ever_limited |= others;
	if (others)
		pr_debug("migration: other moves leave this host too: at most %u KiB wait unsent, "
			 "%u KiB of pages a record",
			 TRANSPORT_NOTSENT_LOWAT / 1024, SHARED_BATCH_KIB);
	else
		pr_debug("migration: the only move from this host: unsent bytes unlimited");
}

/*
 * After each RAM record sent while the guest runs: the dirtiers yield, and the
 * progress counts what went out (a first pass of a large guest takes seconds).
 */
static void on_record(void *arg)
{
	struct source *src = arg;

	dirtiers__yield(&src->dirtiers);
	link_share__give_way(&src->share, &src->m->cancel);
	share_the_socket(src);
	/* The guest's disk writes wait for room in their queue: they go between records. */
	if (!src->disk_ret && src->disks.n)
		src->disk_ret = send_disk_writes(src);
	pthread_mutex_lock(&src->m->lock);
	copy_counts(src);
	pthread_mutex_unlock(&src->m->lock);
}

static void on_disk_piece(void *arg)
{
	struct source *src = arg;

	link_share__give_way(&src->share, &src->m->cancel);
	share_the_socket(src);
	pthread_mutex_lock(&src->m->lock);
	copy_counts(src);
	pthread_mutex_unlock(&src->m->lock);
}

/*
 * Migration without shared storage: the disks named in disk_to go first, each in one
 * pass with the guest's writes below its position mirrored into the stream, and stay
 * mirrored until the pause (disk_send.h).
 */
static int send_disks(struct source *src)
{
	const struct migrate_params *p = &src->m->params;
	char why[200] = "";
	int ret;

	if (!p->nr_disk_to)
		return 0;
	if (!(src->features & STREAM_FEATURE_DISK_TO)) {
		fail(src, "the destination cannot receive disk images (a godwit older than "
			  "format 1.8)");
		return -EPROTO;
	}
	ret = disk_send__start(&src->disks, src->vm, p, &src->w, why, sizeof(why));
	if (!ret)
		ret = disk_send__copy(&src->disks, &src->m->cancel, on_disk_piece, src, why,
				      sizeof(why));
	if (ret == -ECANCELED)
		return ret;
	if (ret) {
		peer_reason(src, ret);
		fail(src, "%s", src->w.err[0] ? src->w.err : why);
	}
	/* The RAM's --max-bandwidth counts from its own start. */
	src->s.bw_start_ns = util__now_ns();
	src->s.lz4_win.start_ns = src->s.bw_start_ns;
	return ret;
}

static int run(struct source *src)
{
	int ret;

	ret = open_target(src);
	if (!src->is_file)
		link_share__open(&src->share, NULL);
	if (!ret)
		ret = stream__write_header(&src->w);
	if (!ret)
		ret = send_config(src);
	if (!ret && !src->is_file)
		ret = connect_target(src);
	if (!ret && !src->is_file)
		ret = wait_accepted(src);
	if (!ret)
		ret = ram__tracker_init(&src->t, &src->vm->mem);
	if (ret)
		return ret;
	src->s = (struct ram_sender){ .t = &src->t, .w = &src->w, .cancelled = &src->m->cancel,
				      .max_bandwidth = src->m->params.max_bandwidth,
				      .bw_start_ns = util__now_ns(),
				      .on_record = on_record, .on_record_arg = src };
	/* A file is read back by this format's reader; a destination must have taken it. */
	src->s.compress = src->is_file || (src->features & STREAM_FEATURE_RAM_LZ4)
				  ? src->m->params.compress
				  : MIGRATE_COMPRESS_OFF;
	src->s.lz4_every = src->s.compress == MIGRATE_COMPRESS_OFF ? 0 : 1;
	src->s.lz4_win.start_ns = util__now_ns();
	src->s.zstd = use_zstd(src);
	if (src->m->params.verify && (src->features & STREAM_FEATURE_VERIFY_PAGES)) {
		ret = ram_digest__init(&src->digest, &src->vm->mem);
		if (ret)
			return ret;
		src->s.digest = &src->digest;
	}
	set_status(src->m, MIG_ACTIVE);
	ret = send_disks(src);
	if (!ret)
		ret = precopy(src);
	if (!ret && cancelled(src))
		ret = -ECANCELED;
	if (!ret)
		ret = stop_and_copy(src);
	if (!ret && src->is_file)
		ret = stream_io__finish(&src->io);
	if (!ret && src->is_file)
		ret = fsync(src->m->fd) ? -errno : 0;
	else if (!ret)
		ret = handover(src);
	if (!ret && src->is_file)
		src->pause_end_ns = util__now_ns();
	return ret;
}

/*
 * After a failure: may the VM run here again? Before GO, yes, once every disk is
 * locked again (a release that failed half-way may have left one not). After GO, only if
 * the destination said it refused, or if we get the disk locks back: the
 * destination takes them before it resumes, so holding them proves it cannot.
 * Without disks and without an answer the outcome is unknown: never two copies.
 */
static bool take_back(struct source *src)
{
	int i, ret = 0;

	if (!src->disks_released)
		return true;
	/* The destination may still be closing its copy of the images: a short retry. */
	for (i = 0; i < 20 && (ret = devices__take_disks(src->vm)) == -EBUSY; i++)
		nanosleep(&(struct timespec){ .tv_nsec = 100 * 1000 * 1000 }, NULL);
	if (ret) {
		pr_err("cannot take the disk locks back: %s", strerror(-ret));
		return false;
	}
	return !src->go_sent || src->dest_refused || src->vm->cfg.nr_disks > 0;
}

static void finish(struct source *src, int ret)
{
	struct migration *m = src->m;
	enum migrate_status st;

	util__switchover_priority(false);
	if (src->share.waits)
		pr_info("held back %llu times for %llu ms in all while other moves from this host "
			"paused their guests", (unsigned long long)src->share.waits,
			(unsigned long long)(src->share.waited_ns / 1000000));
	if (src->unsent_ever_limited)
		pr_info(
		    "sent with at most %u KiB unsent in its socket and %u KiB of pages a record "
		    "while other moves from this host ran",
		    TRANSPORT_NOTSENT_LOWAT / 1024, SHARED_BATCH_KIB);
	link_share__close(&src->share);
	dirtiers__restore(&src->dirtiers);
	dirtiers__report(&src->dirtiers);
	/* The guest's disk writes go to its own images alone again; they never stopped. */
	pthread_mutex_lock(&src->m->lock);
	copy_counts(src);
	pthread_mutex_unlock(&src->m->lock);
	disk_send__stop(&src->disks);
	/*
	 * Dirty logging stays on through the hand-over: turning it off re-registers
	 * guest RAM with KVM (~8 ms per GiB on kvm_pvm), which inside the pause delayed
	 * GO. A VM that moved exits here, so only a VM that stays needs it off.
	 */
	if (ret && src->t.pending)
		ram__log_stop(&src->t);
	vm__set_throttle(src->vm, 0);
	if (ret == -ECANCELED) {
		fail(src, "cancelled");
	} else if (ret) {
		peer_reason(src, ret);
		fail(src, "%s", src->w.err[0] ? src->w.err : strerror(-ret));
	}
	if (ret && !src->go_sent)
		send_abort(src);
	close_connections(src, 0);
	pthread_mutex_lock(&m->lock);
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	pthread_mutex_unlock(&m->lock);
	stream__writer_exit(&src->w);
	stream_io__exit(&src->io);
	tls__ctx_free(src->tls);
	src->tls = NULL;
	ram__tracker_exit(&src->t);
	ram_digest__exit(&src->digest);

	st = !ret ? MIG_COMPLETED : ret == -ECANCELED ? MIG_CANCELLED : MIG_FAILED;
	pthread_mutex_lock(&m->lock);
	migrate__times(&m->stats, ret ? 0 : src->pause_ns, src->pause_end_ns, util__now_ns());
	snprintf(m->stats.error, sizeof(m->stats.error), "%s", ret ? src->err : "");
	/* Once it is over, throttle_pct reports the highest throttle the move needed. */
	m->stats.throttle_pct = m->stats.max_throttle_pct;
	pthread_mutex_unlock(&m->lock);
	set_status(m, st);

	if (!ret) {
		pr_info("migration to %s completed in %llu ms (pause %llu ms)", m->params.to,
			(unsigned long long)m->stats.total_ms, (unsigned long long)m->stats.downtime_ms);
		return;
	}
	pr_err("migration to %s failed: %s", m->params.to, src->err);
	if (!take_back(src)) {
		pr_err(src->go_sent ? "the destination may have resumed the VM; it stays paused here"
				    : "a disk image is not locked: the VM stays paused here");
		return;
	}
	if (src->quiesced)
		devices__resume(src->vm);
	if (src->paused && vm__resume(src->vm))
		pr_err("cannot resume the VM after the failed migration");
	else if (src->paused)
		pr_info("the VM runs on here");
}

/*
 * The guest runs on the destination now; what is left here (stopping the vCPU
 * threads, KVM tearing down the VM's shadow pages, freeing its memory: milliseconds
 * for a large guest) should yield to what runs, on this host the other VMs' vCPUs.
 * The main thread, whose TID is the PID, does it, and this thread ends: both go to
 * nice TEARDOWN_NICE (about a tenth of a CPU against busy threads, so that the
 * process still ends soon; SCHED_IDLE could starve it for seconds). On a host where
 * both ends share CPUs the teardown had delayed the resumed guest's first steps.
 */
#define TEARDOWN_NICE 10

static void teardown_in_background(void)
{
	int ret = util__set_thread_nice(getpid(), TEARDOWN_NICE);

	if (!ret)
		ret = util__set_thread_nice(gettid(), TEARDOWN_NICE);
	if (ret)
		pr_debug("migration: cannot lower the teardown's priority: %s", strerror(-ret));
	else
		pr_debug("migration: handed over; this process ends at nice %d", TEARDOWN_NICE);
}

static void *migration_thread(void *arg)
{
	struct vm *vm = arg;
	struct source *src = calloc(1, sizeof(*src));
	int ret;

	if (!src) {
		set_status(vm->mig, MIG_FAILED);
		return NULL;
	}
	/* Not the name of the API thread that started it (perf, top, /proc). */
	pthread_setname_np(pthread_self(), "migration");
	src->vm = vm;
	src->m = vm->mig;
	src->share.fd = -1;
	pthread_mutex_lock(&src->m->lock);
	src->tls = src->m->tls;
	src->m->tls = NULL;
	pthread_mutex_unlock(&src->m->lock);
	dirtiers__init(&src->dirtiers, vm);
	src->deadline_ns = util__now_ns() + src->m->params.timeout_s * 1000000000ULL;
	ret = run(src);
	finish(src, ret);
	if (!ret) {
		migrate__wait_ack(src->m, FINAL_ACK_GRACE_MS);
		if (!src->is_file)
			teardown_in_background();
		vm__request_exit(vm, 0, src->is_file ? "saved to a snapshot file" :
						       "migrated to the destination");
	}
	free(src);
	return NULL;
}

int migrate__launch(struct vm *vm)
{
	return -pthread_create(&vm->mig->thread, NULL, migration_thread, vm);
}
