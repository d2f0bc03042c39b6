// SPDX-License-Identifier: GPL-2.0
/*
 * The incoming side. The stream is hostile input: the stream layer checks
 * framing, order and lengths; here every section is checked against the VM
 * being built before anything reaches KVM. Until GO arrives nothing runs, and a
 * failure leaves nothing behind: the process exits non-zero and the source keeps
 * its VM.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "godwit/disk_receive.h"
#include "godwit/log.h"
#include "godwit/migrate.h"
#include "godwit/ram.h"
#include "godwit/ram_receive.h"
#include "godwit/seal.h"
#include "godwit/stream_check.h"
#include "godwit/vm.h"
#include "godwit/vmstate.h"
#include "godwit/x86.h"

#define GO_TIMEOUT_MS 60000
/*
 * What an unknown peer gets to send the stream's header and CONFIG, from its accept (a
 * source sends them in its first flight). One that does not is closed and the
 * listener goes on.
 */
#define HANDSHAKE_TIMEOUT_MS 10000
/* The source's silence (or not reading) that ends a receive: --io-timeout's default. */
#define IO_TIMEOUT_MS 30000
/* From STRIPE, how long the source's extra connections may take to join. */
#define JOIN_TIMEOUT_MS 10000

struct dest {
	const struct receive_params *p;
	int fd;
	int lfd;			/* listening, until the extra connections joined */
	struct connections_waiting waiting; /* accepted, not yet joined */
	struct tls_ctx *tls;		    /* the server's, NULL with --encrypt off */
	int extra_fd[STREAM_MAX_CONNECTIONS]; /* [1..joined-1]: the source's extra ones */
	uint32_t joined;		/* connections open, the first one included */
	bool is_file;
	struct stream_io io;
	struct stream_reader r;
	struct stream_config *cfg;
	struct vm_config vcfg;
	struct vm_preopened pre; /* this host's backends, opened before we listen */
	struct disk_receive disks; /* images that come in the stream (--disk-dir) */
	struct vm *vm;
	bool vm_created;
	struct stream_check chk; /* the STATE sections, checked */
	int stop;		 /* signalfd: SIGINT, SIGTERM end the receive */
	int io_timeout_ms;
	char peer[80];
	bool proven;		/* the first record after ACCEPTED read well */
	bool first_read_failed; /* reading that record failed */
	uint64_t *digests;
	size_t nr_digests;
	bool have_verify;
	/* Format 1.7: the VERIFY digests of our RAM, updated at each ROUND (ram_digest.h). */
	struct ram_digest digest;
	bool paged_verify;
	bool realtime; /* from the first STATE record: util__switchover_priority */
	uint64_t state_ns, end_ns, restored_ns; /* the switchover's steps: log_switchover */
	bool acked; /* a ROUND_ACK was the last thing done: the pause may come next */
	bool realtime_after_ack; /* next_record's priority until STATE or another round */
	uint64_t after_ack;	 /* bytes of records read since the last ROUND_ACK, before STATE */
	bool pause_read_realtime; /* at STATE: whether they were read at real-time priority */
	/* The wait for a record after the last ROUND_ACK: since when, util__thread_cpu_wait_ns */
	uint64_t acked_ns, acked_cpu_wait_ns;
	struct ram_receiver ram; /* plain RAM records, received in place */
	uint8_t *lz4_pages; /* a RAM_LZ4 or RAM_ZSTD record's pages, expanded */
	void *zstd_dctx;
	char err[256];
};

static void fail(struct dest *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct dest *d, const char *fmt, ...)
{
	va_list ap;

	if (d->err[0])
		return;
	va_start(ap, fmt);
	vsnprintf(d->err, sizeof(d->err), fmt, ap);
	va_end(ap);
}

static void name_peer(struct dest *d)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[64], port[8];

	snprintf(d->peer, sizeof(d->peer), "an unknown peer");
	if (getpeername(d->fd, (struct sockaddr *)&ss, &len) ||
	    getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), port, sizeof(port),
			NI_NUMERICHOST | NI_NUMERICSERV))
		return;
	snprintf(d->peer, sizeof(d->peer), "%s port %s", host, port);
}

/* The next connection that sends a stream's opening, within the handshake time. */
static int take_connection(struct dest *d)
{
	uint8_t *opening = NULL;
	size_t len = 0;
	int ret;

	ret = connections__accept_source(d->lfd, &d->waiting, &d->fd, &opening, &len,
					 HANDSHAKE_TIMEOUT_MS, d->stop);
	if (ret == -EINTR)
		fail(d, "stopped by a signal while waiting for a source on %s", d->p->from);
	else if (ret)
		fail(d, "accept on %s: %s", d->p->from, strerror(-ret));
	if (ret)
		return ret;
	name_peer(d);
	ret = stream_io__init_fd(&d->io, d->fd);
	if (!ret && d->waiting.taken_tls)
		ret = stream_io__set_tls(&d->io, 0, d->waiting.taken_tls);
	if (ret)
		tls__conn_free(d->waiting.taken_tls);
	d->waiting.taken_tls = NULL;
	/* accept_source read the header and CONFIG off the connection: they come first. */
	if (!ret)
		ret = stream_io__unread(&d->io, opening, len);
	free(opening);
	if (!ret)
		ret = stream_io__bound(&d->io, d->io_timeout_ms, d->stop);
	if (!ret)
		ret = stream__reader_init(&d->r, &d->io, STREAM_CTX_DATA);
	return ret;
}

static int open_source(struct dest *d)
{
	const char *from = d->p->from;
	int ret;

	if (!strncmp(from, "file:", 5)) {
		d->is_file = true;
		d->fd = open(from + 5, O_RDONLY | O_CLOEXEC);
		if (d->fd < 0) {
			fail(d, "cannot open %s: %s", from + 5, strerror(errno));
			return -errno;
		}
		ret = stream_io__init_fd(&d->io, d->fd);
		if (!ret)
			ret = seal__attach_reader(&d->io, d->fd, d->p->encrypt_key, d->err,
						  sizeof(d->err));
		return ret ? ret : stream__reader_init(&d->r, &d->io, STREAM_CTX_DATA);
	}
	d->waiting.mode = d->p->tls.mode;
	if (d->p->tls.mode != TLS_MODE_OFF) {
		ret = tls__ctx_new(&d->p->tls, true, &d->tls, d->err, sizeof(d->err));
		if (ret)
			return -EINVAL;
		d->waiting.tls = d->tls;
	}
	ret = transport__listen(from, &d->lfd, d->err, sizeof(d->err));
	if (ret)
		return ret;
	pr_info("waiting for an incoming migration on %s (%s)", from,
		d->tls ? (d->p->tls.mode == TLS_MODE_REQUIRED ? "TLS required" : "TLS if the source speaks it")
		       : "unencrypted");
	return 0;
}

static void send_error(struct dest *d);

/*
 * A read failed: why, the channel's reason (TLS, an encrypted file) first. -ECANCELED:
 * the source gave up and said why; the stream was fine.
 */
static int bad_stream(struct dest *d, int ret)
{
	const char *channel = stream_io__channel_error(&d->io);

	if (ret == -ECANCELED)
		fail(d, "%s", d->r.err);
	else if (channel)
		fail(d, "bad migration stream: %s (%s)", channel, d->r.err);
	else
		fail(d, "bad migration stream: %s", d->r.err[0] ? d->r.err : strerror(-ret));
	return ret;
}

static int read_record(struct dest *d, struct stream_record *rec)
{
	int ret = stream__read_record(&d->r, rec);

	return ret ? bad_stream(d, ret) : 0;
}

/* The CONFIG record: what VM to build. */
static int read_config(struct dest *d)
{
	struct stream_header hdr;
	struct stream_record rec;
	char why[256] = "";
	int ret;

	ret = stream__read_header(&d->r, &hdr);
	if (ret)
		return bad_stream(d, ret);
	ret = read_record(d, &rec);
	if (ret)
		return ret;
	d->cfg = calloc(1, sizeof(*d->cfg));
	if (!d->cfg)
		return -ENOMEM;
	ret = stream__config_decode(rec.payload, rec.length, d->cfg, why, sizeof(why));
	if (ret)
		fail(d, "bad VM configuration in the stream: %s", why);
	return ret;
}

/* Forgets a connection that did not open a stream, keeping the listener. */
static void drop_connection(struct dest *d)
{
	if (d->cfg)
		stream__config_release(d->cfg);
	free(d->cfg);
	d->cfg = NULL;
	stream__reader_exit(&d->r);
	memset(&d->r, 0, sizeof(d->r));
	/* A peer that had the one-time key has had its move: the key serves no other. */
	if (d->io.tls[0])
		tls__ctx_spend_psk(d->tls);
	stream_io__exit(&d->io);
	close(d->fd);
	d->fd = -1;
	d->err[0] = 0;
}

/*
 * Until a connection has sent the magic, a header this godwit reads and a well-formed
 * CONFIG, within the handshake time, it is no source: it is closed (a bad header
 * answered with ERROR, so that a newer source learns why) and the listener goes on.
 * Once one has, it is the source, given --io-timeout from then on.
 */
static int take_source(struct dest *d)
{
	int ret;

	for (;;) {
		ret = take_connection(d);
		if (ret && d->fd < 0)
			return ret; /* a signal, or the listener failed */
		if (!ret)
			ret = read_config(d);
		if (!ret || ret == -ENOMEM || d->io.gave_up == -EINTR)
			break;
		pr_warn("closed the connection from %s: %s", d->peer, d->err);
		if (!d->io.gave_up)
			send_error(d);
		drop_connection(d);
	}
	if (ret)
		return ret;
	if (d->io.tls[0])
		pr_info("receiving a migration from %s over TLS (%s)", d->peer, tls__ctx_kind(d->tls));
	else if (d->tls)
		pr_warn("receiving an UNENCRYPTED migration from %s (--encrypt opportunistic)",
			d->peer);
	else
		pr_info("receiving a migration from %s", d->peer);
	return 0;
}

static int check_layout(struct dest *d)
{
	struct guest_mem *mem = &d->vm->mem;
	unsigned int i;

	if (d->cfg->nr_regions != mem->nr_regions)
		goto bad;
	for (i = 0; i < mem->nr_regions; i++)
		if (d->cfg->regions[i].gpa != mem->regions[i].gpa ||
		    d->cfg->regions[i].size != mem->regions[i].size)
			goto bad;
	return 0;
bad:
	fail(d, "the incoming VM's memory layout differs from this godwit's");
	return -EINVAL;
}

/*
 * Guest RAM is a memfd filled as pages arrive: what the host can never back is
 * refused here, before any of it moves (the source's VM goes on). The rule: the
 * VM's RAM must fit in this host's RAM plus swap (MemTotal + SwapTotal); KVM and
 * the kernel allow more, as the guest may never touch all of it, but a migration
 * writes every page the guest has touched. Less than MemAvailable + SwapFree only
 * warns: that changes by the second.
 */
static int check_host_memory(struct dest *d)
{
	uint64_t total = 0, swap = 0, avail = 0, swap_free = 0, v;
	char line[128], key[64];
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return 0; /* nothing to go by: KVM and the kernel decide */
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63[^:]: %" SCNu64, key, &v) != 2)
			continue;
		v *= KiB;
		if (!strcmp(key, "MemTotal"))
			total = v;
		else if (!strcmp(key, "SwapTotal"))
			swap = v;
		else if (!strcmp(key, "MemAvailable"))
			avail = v;
		else if (!strcmp(key, "SwapFree"))
			swap_free = v;
	}
	fclose(f);
	if (total && d->cfg->ram_size > total + swap) {
		fail(d, "the incoming VM has %llu MiB of RAM; this host has %llu MiB of RAM and "
			"%llu MiB of swap",
		     (unsigned long long)(d->cfg->ram_size >> 20), (unsigned long long)(total >> 20),
		     (unsigned long long)(swap >> 20));
		return -ENOMEM;
	}
	if (avail && d->cfg->ram_size > avail + swap_free)
		pr_warn("the incoming VM has %llu MiB of RAM; %llu MiB are available here now",
			(unsigned long long)(d->cfg->ram_size >> 20),
			(unsigned long long)((avail + swap_free) >> 20));
	return 0;
}

static int check_cpu(struct dest *d)
{
	uint8_t *mine;
	size_t len;
	int ret;

	ret = x86__cpu_signature(&d->vm->kvm, &mine, &len);
	if (ret) {
		fail(d, "cannot read this host's CPU features: %s", strerror(-ret));
		return ret;
	}
	ret = x86__cpu_compatible(d->cfg->cpuid, d->cfg->cpuid_len, mine, len, d->err,
				  sizeof(d->err));
	free(mine);
	return ret;
}

/*
 * This host's side of the VM, from our options, before we listen: a bad --disk, --net,
 * --console or --api fails at once, not once a source has connected. -EINVAL for a
 * malformed option; every error is logged.
 */
static int open_backends(struct dest *d)
{
	const struct receive_params *p = d->p;
	unsigned int i;
	int ret = 0;

	d->vcfg = (struct vm_config){
		.kernel = "(incoming migration)",
		.api_path = p->api_path,
		.console = p->console_kind,
		.console_path = p->console_path,
		.incoming = true,
		.pre = &d->pre,
	};
	for (i = 0; !ret && i < p->nr_disks; i++)
		ret = config__add_disk(&d->vcfg, p->disks[i]);
	for (i = 0; !ret && i < p->nr_nets; i++)
		ret = config__add_net(&d->vcfg, p->nets[i]);
	if (!ret)
		ret = disk_receive__init(&d->disks, p->disk_dir);
	if (!ret)
		ret = vm__preopen(&d->pre, &d->vcfg, p->control);
	if (ret)
		config__free(&d->vcfg);
	return ret;
}

/*
 * Disk n of the stream, whose image comes in it: made in --disk-dir, in place of a
 * --disk (into disks[n], fds[n]).
 */
static int incoming_disk(struct dest *d, const struct stream_device *sd, unsigned int n,
			 struct vm_disk_cfg *disks, int *fds)
{
	char path[PATH_MAX], why[sizeof(d->err)];
	int ret;

	ret = disk_receive__create(&d->disks, sd->instance, sd->disk_to, sd->capacity, &fds[n],
				   path, sizeof(path), why, sizeof(why));
	if (ret) {
		fail(d, "%s", why);
		return ret;
	}
	disks[n] = (struct vm_disk_cfg){ .spec = strdup(path), .readonly = sd->readonly };
	disks[n].path = disks[n].spec;
	pr_info("disk %u: its image comes in the stream, to %s", sd->instance, path);
	return disks[n].spec ? 0 : -ENOMEM;
}

/*
 * The VM's devices come from the stream; this host's backends from our options,
 * in device order: the n-th disk in the stream uses the n-th --disk, unless its
 * image comes in the stream (disk_to), made in --disk-dir.
 */
static int map_devices(struct dest *d)
{
	struct vm_disk_cfg disks[VM_MAX_DISKS] = { 0 };
	bool made[VM_MAX_DISKS] = { false };
	int fds[VM_MAX_DISKS];
	unsigned int i, n = 0, given = 0, nets = 0;
	int ret = 0;

	for (i = 0; i < d->cfg->nr_devices && !ret; i++) {
		const struct stream_device *sd = &d->cfg->devices[i];

		if (!strcmp(sd->type, "virtio-blk")) {
			fds[n] = -1;
			if (n == VM_MAX_DISKS) {
				ret = -EINVAL; /* stream_check__config counted them */
			} else if (sd->disk_to[0]) {
				made[n] = true;
				ret = incoming_disk(d, sd, n++, disks, fds);
			} else if (given >= d->vcfg.nr_disks) {
				fail(d, "the VM has a disk %u: give --disk PATH for each of its disks, "
					"in order", n);
				ret = -EINVAL;
			} else {
				disks[n] = d->vcfg.disks[given];
				disks[n].readonly = sd->readonly;
				fds[n++] = d->pre.disk_fd[given++];
			}
		} else if (!strcmp(sd->type, "virtio-net")) {
			if (nets >= d->vcfg.nr_nets) {
				fail(d, "the VM has a network card %u: give --net tap=NAME for each, "
					"in order", nets);
				ret = -EINVAL;
				break;
			}
			memcpy(d->vcfg.nets[nets].mac, sd->mac, 6);
			d->vcfg.nets[nets++].have_mac = sd->has_mac;
		}
	}
	if (!ret && (given != d->vcfg.nr_disks || nets != d->vcfg.nr_nets)) {
		fail(d, "the VM has %u disks (%u of them sent in the stream) and %u network cards; "
			"%u --disk and %u --net given", n, n - given, nets, d->vcfg.nr_disks,
			d->vcfg.nr_nets);
		ret = -EINVAL;
	}
	if (ret) {
		/* What we made goes; the --disk images stay in vcfg and pre. */
		for (i = 0; i < n; i++) {
			if (!made[i])
				continue;
			free(disks[i].spec);
			if (fds[i] >= 0)
				close(fds[i]);
		}
		return ret;
	}
	memcpy(d->vcfg.disks, disks, sizeof(disks));
	memcpy(d->pre.disk_fd, fds, sizeof(fds));
	for (i = n; i < VM_MAX_DISKS; i++)
		d->pre.disk_fd[i] = -1;
	d->vcfg.nr_disks = n;
	return 0;
}

static int build_vm(struct dest *d)
{
	char why[256] = "";
	int ret;

	ret = stream_check__config(&d->chk, d->cfg, d->r.hdr.minor, why, sizeof(why));
	if (ret) {
		fail(d, "%s", why);
		return ret;
	}
	ret = check_host_memory(d);
	if (ret)
		return ret;
	d->vcfg.mem_size = d->cfg->ram_size;
	d->vcfg.nr_cpus = d->cfg->nr_vcpus;
	d->vcfg.cmdline = strdup(d->cfg->cmdline);
	ret = map_devices(d);
	if (ret)
		return ret;
	d->vm = calloc(1, sizeof(*d->vm));
	if (!d->vm || !d->vcfg.cmdline)
		return -ENOMEM;
	ret = vm__create(d->vm, &d->vcfg, d->p->control);
	if (ret) {
		fail(d, "cannot create the incoming VM: %s", strerror(-ret));
		return ret;
	}
	d->vm_created = true;
	ret = check_layout(d);
	if (!ret)
		ret = check_cpu(d);
	return ret;
}

static void close_listener(struct dest *d)
{
	if (d->lfd >= 0)
		close(d->lfd);
	d->lfd = -1;
	connections__close_waiting(&d->waiting);
}

/*
 * The source offered more connections (CONFIG) and we took them, taken (ACCEPTED): it
 * sends STRIPE or STRIPE_CHUNKED on this one once its extra connections have each sent
 * their JOIN; from then on its bytes come striped over all of them (stream.h).
 */
static int join_connections(struct dest *d, uint32_t taken)
{
	struct stream_record rec;
	struct stream_reader r;
	uint32_t n = 0, chunk = 0, i;
	int ret;

	ret = stream__reader_init(&r, &d->io, STREAM_CTX_CONTROL);
	if (ret)
		return ret;
	stream_io__unbuffered(&d->io, true);
	ret = stream__read_record(&r, &rec);
	d->first_read_failed = !!ret;
	d->proven = !ret;
	/*
	 * STRIPE_CHUNKED only once taken, and it may use fewer than taken (the round trip
	 * was not known when CONFIG offered them); a 1.3 source's STRIPE uses all.
	 */
	if (!ret && ((rec.type == STREAM_REC_STRIPE_CHUNKED &&
		      !(d->cfg->features & STREAM_FEATURE_STRIPE_CHUNK)) ||
		     stream__stripe_decode(rec.type, rec.payload, rec.length, &n, &chunk) ||
		     n > taken || (rec.type == STREAM_REC_STRIPE && n != taken)))
		ret = -EPROTO;
	stream__reader_exit(&r);
	if (ret) {
		fail(d, "the source did not stripe its stream over the %u connections agreed",
		     taken);
		return ret;
	}
	if (n == 1) {
		close_listener(d);
		stream_io__unbuffered(&d->io, false);
		return 0;
	}
	d->extra_fd[0] = d->fd;
	ret = connections__accept(d->lfd, &d->waiting, d->cfg->token, n, d->extra_fd,
				  JOIN_TIMEOUT_MS, d->stop);
	if (ret == -EINTR)
		d->io.gave_up = -EINTR;
	close_listener(d);
	if (ret) {
		fail(d, "the source's %u connections did not all join: %s", n, strerror(-ret));
		return ret;
	}
	d->joined = n;
	ret = stream_io__stripe(&d->io, d->extra_fd, n, chunk, true);
	for (i = 1; i < n; i++) {
		if (!ret && d->waiting.join_tls[i])
			ret = stream_io__set_tls(&d->io, i, d->waiting.join_tls[i]);
		else
			tls__conn_free(d->waiting.join_tls[i]);
		d->waiting.join_tls[i] = NULL;
	}
	if (!ret)
		pr_debug("the stream comes over %u connections, %u KiB at a time", n,
			 (unsigned int)(chunk / KiB));
	return ret;
}

/* The VM is built: the source may start sending RAM (source.c, wait_accepted). */
static int send_accepted(struct dest *d)
{
	/*
	 * All offered are taken: a 1.3 source offered what its round trip called for, a
	 * 1.4 one says in STRIPE_CHUNKED how many of them it uses.
	 */
	uint32_t taken = d->cfg->connections;
	struct stream_writer cw;
	int ret;

	ret = stream__writer_init(&cw, &d->io, STREAM_CTX_CONTROL);
	if (ret)
		return ret;
	/* Features go back only to a source that offered some (an older one expects none). */
	if ((d->cfg->features & STREAM_FEATURES_KNOWN) || taken)
		ret = stream__write_accepted(&cw, d->cfg->features & STREAM_FEATURES_KNOWN, taken);
	else
		ret = stream__write_control(&cw, STREAM_REC_ACCEPTED);
	if (ret)
		fail(d, "cannot tell the source the VM is accepted: %s", strerror(-ret));
	stream__writer_exit(&cw);
	return ret || taken < 2 ? ret : join_connections(d, taken);
}

static int start_parked(struct dest *d)
{
	int ret = vm__start_parked(d->vm);

	if (ret)
		fail(d, "cannot start the vCPU threads: %s", strerror(-ret));
	return ret;
}

static int take_state(struct dest *d, const struct stream_record *rec)
{
	char why[256] = "";
	int ret = stream_check__state(&d->chk, rec, why, sizeof(why));

	if (ret)
		fail(d, "%s", why);
	return ret;
}

/*
 * Everything before this ROUND is in guest RAM: tell the source, which waits for
 * it before pausing so that the pause does not include our backlog.
 */
static int ack_round(struct dest *d, const struct stream_record *rec)
{
	struct stream_writer cw;
	struct stream_round rd;
	int ret;

	if (!(d->cfg->features & STREAM_FEATURE_ROUND_ACK) || d->is_file)
		return 0;
	if (stream__round_decode(rec->payload, rec->length, &rd)) {
		fail(d, "bad ROUND record %llu", (unsigned long long)rec->index);
		return -EBADMSG;
	}
	ret = stream__writer_init(&cw, &d->io, STREAM_CTX_CONTROL);
	if (ret)
		return ret;
	ret = stream__write_round_ack(&cw, rd.round);
	if (ret)
		fail(d, "cannot acknowledge round %u: %s", rd.round, strerror(-ret));
	d->acked = !ret;
	stream__writer_exit(&cw);
	return ret;
}

/*
 * A source that verifies (format 1.7) has the digests of the pages it sent; ours are
 * of what we hold, from our RAM. Every write into guest RAM marks its page in the VMM's
 * bitmap (guest_mem__write), a later round's included; at each ROUND we rehash the pages
 * marked since the last, before acknowledging it, so that after END only the last
 * pages are left to hash, in the pause.
 */
static int start_digests(struct dest *d)
{
	int ret;

	if (d->is_file || !(d->cfg->features & STREAM_FEATURE_VERIFY_PAGES))
		return 0;
	ret = ram_digest__init(&d->digest, &d->vm->mem);
	if (ret)
		return ret;
	/* What our RAM holds before the first record: nothing, usually (all holes). */
	ram_digest__hash_all(&d->digest);
	d->paged_verify = true;
	return 0;
}

static void update_digests(struct dest *d)
{
	if (!d->paged_verify)
		return;
	ram_digest__refresh(&d->digest);
	ram_digest__combine(&d->digest);
}

/* RAM_LZ4 or RAM_ZSTD: expanded into d->lz4_pages, then applied. */
static int take_ram_packed(struct dest *d, const struct stream_record *rec)
{
	char why[200] = "";
	int ret;

	if (!d->lz4_pages && !(d->lz4_pages = malloc(STREAM_RAM_MAX_DATA_LEN)))
		return -ENOMEM;
	ret =
	    stream__ram_packed_parse(d->cfg, rec->type, rec->payload, rec->length, d->lz4_pages,
				     &d->zstd_dctx, ram__apply_run, &d->vm->mem, why, sizeof(why));
	if (ret)
		fail(d, "bad %s record %llu: %s", stream__type_name(rec->type),
		     (unsigned long long)rec->index, why[0] ? why : strerror(-ret));
	return ret;
}

/* SIGINT or SIGTERM came: a source that never lets the reads block is stopped too. */
static bool stopped(struct dest *d)
{
	struct pollfd p = { .fd = d->stop, .events = POLLIN };

	if (d->stop < 0 || poll(&p, 1, 0) <= 0)
		return false;
	d->io.gave_up = -EINTR;
	return true;
}

/*
 * A plain RAM record goes from the stream straight into guest RAM, with no copy in a
 * buffer and no pwrite from it: nothing runs here before GO, so pages a record wrote
 * before its checksum failed are never used (the move fails, the VM is thrown away).
 */
static int receive_ram(struct dest *d, const struct stream_record *rec)
{
	char why[STREAM_ERROR_MSG_MAX] = "";
	int ret;

	ret = stream__ram_record_receive(&d->r, rec, d->cfg, ram_receiver__fill,
					 ram_receiver__apply, &d->ram, why, sizeof(why));
	if (ret && stream_io__channel_error(&d->io))
		fail(d, "bad RAM record %llu: %s (%s)", (unsigned long long)rec->index,
		     stream_io__channel_error(&d->io), why);
	else if (ret)
		fail(d, "bad RAM record %llu: %s", (unsigned long long)rec->index,
		     why[0] ? why : strerror(-ret));
	return ret;
}

/* A piece of a disk image that comes in the stream, into its file. */
static int take_disk(struct dest *d, const struct stream_record *rec)
{
	char why[200] = "";
	struct stream_disk sd;
	int ret;

	ret = stream_check__disk(&d->chk, rec, &sd, why, sizeof(why));
	if (ret) {
		fail(d, "%s", why);
		return ret;
	}
	ret = disk_receive__apply(&d->disks, &sd, &d->r);
	if (ret) {
		fail(d, "disk %u: cannot write its image: %s", sd.disk, strerror(-ret));
		return ret;
	}
	/* The image is whole: it is made stable now, so that the pause syncs only the rest. */
	if (sd.kind == STREAM_DISK_DONE) {
		ret = disk_receive__sync(&d->disks, false, why, sizeof(why));
		if (ret)
			fail(d, "%s", why);
	}
	return ret;
}

/*
 * After a ROUND_ACK the pause may come next: the last disk writes and pages, then STATE.
 * Up to this many bytes of records after an acknowledgement are read at real-time
 * priority; beyond them it is another round. At 1 Gbit/s they take 34 ms to arrive,
 * most of the 50 ms a pause is allowed by default: a pause whose last pages are more
 * (a faster link, a longer pause) has the rest of them read at the ordinary priority.
 */
#define PAUSE_READ_MAX (4 * MiB)

/*
 * The next record; a RAM record is received in place here, whole. What may be the
 * pause's is waited for and read at real-time priority, so that the paused guest does
 * not wait for this thread to get a CPU; another round's RAM (past PAUSE_READ_MAX, or
 * at its ROUND) at the ordinary priority again.
 */
static int next_record(struct dest *d, struct stream_record *rec)
{
	int ret;

	if (d->acked) {
		d->acked = false;
		d->after_ack = 0;
		d->acked_cpu_wait_ns = util__thread_cpu_wait_ns();
		d->acked_ns = util__now_ns();
		if (!d->realtime && !d->realtime_after_ack && !d->is_file)
			d->realtime_after_ack = !util__switchover_priority(true);
	}
	ret = stream__read_record_open(&d->r, rec, STREAM_REC_RAM);
	if (ret >= 0 && rec->type == STREAM_REC_STATE && !d->state_ns)
		d->pause_read_realtime = d->realtime_after_ack;
	if (ret >= 0 && rec->type != STREAM_REC_STATE && !d->state_ns)
		d->after_ack += rec->length;
	if (d->realtime_after_ack &&
	    (ret < 0 || rec->type == STREAM_REC_STATE || rec->type == STREAM_REC_ROUND ||
	     d->after_ack > PAUSE_READ_MAX)) {
		/* At STATE the pause's priority is d->realtime's from now on. */
		if (ret < 0 || rec->type != STREAM_REC_STATE)
			util__switchover_priority(false);
		d->realtime_after_ack = false;
	}
	if (ret == 1)
		return receive_ram(d, rec);
	return ret ? bad_stream(d, ret) : 0;
}

static int receive_records(struct dest *d)
{
	struct stream_record rec;
	char why[200] = "";
	int ret;

	for (;;) {
		ret = next_record(d, &rec);
		if (!d->proven) {
			d->first_read_failed = !!ret;
			d->proven = !ret;
			if (!ret)
				close_listener(d);
		}
		if (ret)
			return ret;
		if (stopped(d))
			return -EINTR;
		switch (rec.type) {
		case STREAM_REC_RAM:
			break; /* in guest RAM already */
		case STREAM_REC_RAM_LZ4:
		case STREAM_REC_RAM_ZSTD:
			ret = take_ram_packed(d, &rec);
			break;
		case STREAM_REC_DISK:
			ret = take_disk(d, &rec);
			break;
		case STREAM_REC_ROUND:
			ram_receiver__stop(&d->ram);
			update_digests(d);
			ret = ack_round(d, &rec);
			break;
		case STREAM_REC_STATE:
			/* The source is paused: the guest waits on us until we resume it. */
			if (!d->is_file && !d->realtime) {
				/* Already at it when its last pages were read at it. */
				d->realtime =
				    d->pause_read_realtime || !util__switchover_priority(true);
				stream_io__urgent(&d->io);
			}
			if (!d->state_ns)
				d->state_ns = util__now_ns();
			ret = take_state(d, &rec);
			break;
		case STREAM_REC_VERIFY:
			ret = stream__verify_decode(rec.payload, rec.length, &d->digests,
						    &d->nr_digests, why, sizeof(why));
			d->have_verify = !ret;
			if (ret)
				fail(d, "bad VERIFY record: %s", why);
			break;
		case STREAM_REC_END:
			d->end_ns = util__now_ns();
			ram_receiver__stop(&d->ram);
			ret = stream_check__complete(&d->chk, why, sizeof(why));
			if (!ret && d->is_file)
				ret = stream_check__file_ends(&d->io, why, sizeof(why));
			/* What the guest wrote since DONE, before it runs on these images. */
			if (!ret)
				ret = disk_receive__sync(&d->disks, true, why, sizeof(why));
			if (ret)
				fail(d, "%s", why);
			return ret;
		default:
			fail(d, "record %llu: %s has no place in a data stream",
			     (unsigned long long)rec.index, stream__type_name(rec.type));
			return -EPROTO;
		}
		if (ret)
			return ret;
	}
}

static int restore_devices(struct dest *d)
{
	struct vm *vm = d->vm;
	unsigned int i;
	int ret;

	for (i = 0; i < vm->nr_vdevs; i++) {
		struct vdev *v = &vm->vdevs[i];

		ret = v->blk ? virtio_blk__load(v->blk, &d->chk.blk[v->instance])
			     : virtio_net__load(v->net, &d->chk.net[v->instance]);
		if (ret) {
			fail(d, "invalid state for %s %u in the stream (see the log)",
			     v->blk ? "disk" : "network card", v->instance);
			return ret;
		}
	}
	return 0;
}

static int restore(struct dest *d)
{
	struct vm *vm = d->vm;
	uint64_t t0 = util__now_ns(), t_vcpus, t_devices, t_vm, t_end;
	unsigned int i;
	int ret;

	for (i = 0; i < d->cfg->nr_vcpus; i++) {
		ret = x86__vcpu_restore(&vm->vcpus[i].kfd, &d->chk.vcpus[i]);
		if (ret) {
			fail(d, "KVM refused the state of vCPU %u: %s", i, strerror(-ret));
			return ret;
		}
	}
	t_vcpus = util__now_ns();
	ret = serial8250__load(&vm->serial, d->chk.serial);
	if (ret) {
		fail(d, "invalid serial port state in the stream");
		return ret;
	}
	ret = restore_devices(d);
	if (ret)
		return ret;
	t_devices = util__now_ns();
	ret = x86__vm_restore(&vm->kvm, &d->chk.vms);
	if (ret) {
		fail(d, "KVM refused the interrupt controller, timer or clock state: %s",
		     strerror(-ret));
		return ret;
	}
	t_vm = util__now_ns();
	/* Tell a kvmclock guest it was stopped, so the time it lost is no soft lockup. */
	for (i = 0; i < d->cfg->nr_vcpus; i++)
		kvm_vcpu__clock_stopped(&vm->vcpus[i].kfd);
	t_end = util__now_ns();
	pr_debug("restore %llu us: vCPUs %llu, devices %llu, VM state %llu, kvmclock %llu%s",
		 util__us(t0, t_end), util__us(t0, t_vcpus), util__us(t_vcpus, t_devices),
		 util__us(t_devices, t_vm), util__us(t_vm, t_end),
		 d->realtime ? "; at real-time priority" : "");
	return 0;
}

/* Format 1.7: only the pages written since the last ROUND are hashed now. */
static int verify_pages(struct dest *d, uint64_t *bad_gpa)
{
	uint64_t t0 = util__now_ns(), pages = ram_digest__refresh(&d->digest);
	size_t chunks = ram_digest__combine(&d->digest);
	int ret;

	ret = stream__ram_digest_compare(d->cfg, d->digests, d->nr_digests, d->digest.chunk,
					 d->digest.nr_chunks, bad_gpa);
	pr_debug("verify: %llu pages hashed since the last round, %zu of %zu chunk digests "
		 "recomputed, %llu us", (unsigned long long)pages, chunks, d->digest.nr_chunks,
		 (unsigned long long)((util__now_ns() - t0) / 1000));
	return ret;
}

static int verify(struct dest *d)
{
	uint64_t *mine, bad_gpa = 0;
	size_t n = d->nr_digests;
	int ret;

	if (!d->have_verify)
		return 0;
	if (d->paged_verify) {
		ret = verify_pages(d, &bad_gpa);
		goto out;
	}
	/* Hashing all of RAM is no short, bounded step: not at real-time priority. */
	util__switchover_priority(false);
	ret = stream__ram_digest(&d->vm->mem, &mine, &n);
	if (d->realtime)
		util__switchover_priority(true);
	if (ret)
		return ret;
	ret = stream__ram_digest_compare(d->cfg, d->digests, d->nr_digests, mine, n, &bad_gpa);
	free(mine);
out:
	if (ret == -EBADMSG)
		fail(d, "RAM verification failed: the 2 MiB chunk at gpa 0x%llx differs from the "
			"source's", (unsigned long long)bad_gpa);
	else if (ret)
		fail(d, "RAM verification failed: %zu digests from the source, %zu expected",
		     d->nr_digests, stream__digest_count(d->cfg));
	else
		pr_info("RAM verified: %zu chunks match the source", n);
	return ret;
}

/*
 * --verify with disks sent: not at real-time priority (a read of whole images). Without
 * such a disk the priority stays: dropping it lets this thread wait for a CPU behind
 * every ordinary one while the guest is paused.
 */
static int verify_disks(struct dest *d)
{
	char why[sizeof(d->err)];
	int ret;

	if (!disk_receive__verifies(&d->disks, &d->chk))
		return 0;
	util__switchover_priority(false);
	ret = disk_receive__verify(&d->disks, &d->chk, why, sizeof(why));
	if (d->realtime)
		util__switchover_priority(true);
	if (ret)
		fail(d, "%s", why);
	return ret;
}

static int wait_go(struct dest *d, struct stream_reader *cr)
{
	char msg[STREAM_ERROR_MSG_MAX + 1];
	struct stream_record rec;
	uint32_t code;
	int ret;

	if (stream_io__wait_readable(&d->io, GO_TIMEOUT_MS)) {
		fail(d, "the source did not hand the VM over (no GO)");
		return -ETIMEDOUT;
	}
	ret = stream__read_record(cr, &rec);
	if (ret) {
		fail(d, "the source went away before handing the VM over: %s",
		     cr->err[0] ? cr->err : strerror(-ret));
		return ret;
	}
	if (rec.type == STREAM_REC_ERROR) {
		if (stream__error_decode(rec.payload, rec.length, &code, msg))
			snprintf(msg, sizeof(msg), "(unreadable)");
		fail(d, "the source aborted the migration: %s", msg);
		return -ECANCELED;
	}
	if (rec.type != STREAM_REC_GO) {
		fail(d, "the source sent %s instead of GO", stream__type_name(rec.type));
		return -EPROTO;
	}
	return 0;
}

/*
 * The disks are ours before the guest can write them, or not at all; the images that
 * came in the stream get their names now (the source has let go).
 */
static int take_disks(struct dest *d)
{
	char why[sizeof(d->err)];
	int ret = devices__take_disks(d->vm);

	if (ret) {
		fail(d, "cannot take the disk images' locks: %s", strerror(-ret));
		return ret;
	}
	ret = disk_receive__link(&d->disks, why, sizeof(why));
	if (ret)
		fail(d, "%s", why);
	return ret;
}

/*
 * This side's part of the guest's pause, step by step, at -v. With the clock's readings
 * in the source's "pause" line: what the way here and back took. The time this thread
 * waited for a CPU from the last acknowledgement on tells a STATE late for a CPU from
 * one late on the network.
 */
static void log_switchover(const struct dest *d, uint64_t go_ns)
{
	uint64_t now = util__now_ns();
	uint64_t cpu_wait = util__thread_cpu_wait_ns() - d->acked_cpu_wait_ns;

	pr_debug("switchover here %llu us: STATE read to END %llu, verify + restore %llu, GO "
		 "%llu, disks + run + RESUMED sent %llu; from the last acknowledgement to "
		 "STATE %llu (%llu bytes before it, at %s priority), to RESUMED sent waited for a "
		 "CPU %llu; CLOCK_MONOTONIC us: STATE read %llu, RESUMED sent %llu",
		 util__us(d->state_ns, now), util__us(d->state_ns, d->end_ns),
		 util__us(d->end_ns, d->restored_ns), util__us(d->restored_ns, go_ns),
		 util__us(go_ns, now), util__us(d->acked_ns, d->state_ns),
		 (unsigned long long)d->after_ack,
		 d->pause_read_realtime ? "real-time" : "the ordinary", util__us(0, cpu_wait),
		 util__us(0, d->state_ns), util__us(0, now));
}

/*
 * READY, wait for GO, run, RESUMED. With format 1.5's GO_WITH_END the source sent GO
 * right after END, at no round trip's cost: no READY, GO is read at once.
 */
static int handover(struct dest *d)
{
	struct stream_writer cw;
	struct stream_reader cr;
	uint64_t go_ns = 0;
	int ret;

	ret = stream__writer_init(&cw, &d->io, STREAM_CTX_CONTROL);
	if (ret)
		return ret;
	ret = stream__reader_init(&cr, &d->io, STREAM_CTX_CONTROL);
	if (ret)
		goto out_writer;
	if (!(d->cfg->features & STREAM_FEATURE_GO_WITH_END)) {
		ret = stream__write_control(&cw, STREAM_REC_READY);
		if (ret)
			fail(d, "cannot tell the source we are ready: %s", strerror(-ret));
	} else {
		pr_debug("GO follows END (format 1.5): no READY");
	}
	if (!ret)
		ret = wait_go(d, &cr);
	go_ns = util__now_ns();
	if (!ret)
		ret = take_disks(d);
	if (!ret)
		ret = vm__run_parked(d->vm);
	if (!ret) {
		devices__kick(d->vm);
		devices__announce(d->vm);
	}
	if (!ret && stream__write_control(&cw, STREAM_REC_RESUMED))
		pr_warn("the VM runs here, but the source was not told (it keeps its copy paused)");
	else if (!ret)
		log_switchover(d, go_ns);
	stream__reader_exit(&cr);
out_writer:
	stream__writer_exit(&cw);
	return ret;
}

static int start_from_file(struct dest *d)
{
	int ret = take_disks(d);

	if (ret)
		return ret;
	ret = vm__run_parked(d->vm);
	if (!ret) {
		devices__kick(d->vm);
		devices__announce(d->vm);
	}
	return ret;
}

static void send_error(struct dest *d)
{
	struct stream_writer cw;

	if (d->is_file || d->fd < 0 || stream__writer_init(&cw, &d->io, STREAM_CTX_CONTROL))
		return;
	if (stream__write_error(&cw, 1, d->err))
		pr_debug("could not send the error to the source");
	stream__writer_exit(&cw);
}

static void close_connections(struct dest *d)
{
	uint32_t i;

	close_listener(d);
	for (i = 1; i < d->joined; i++)
		close(d->extra_fd[i]);
	d->joined = 0;
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
}

/* All of one connection's attempt, the VM included; the listener stays. */
static void cleanup_attempt(struct dest *d)
{
	uint32_t i;

	ram_receiver__stop(&d->ram);
	if (d->vm_created)
		vm__destroy(d->vm);
	free(d->vm);
	disk_receive__exit(&d->disks);
	vm__preopened_close(&d->pre);
	config__free(&d->vcfg);
	if (d->cfg)
		stream__config_release(d->cfg);
	free(d->cfg);
	stream_check__exit(&d->chk);
	free(d->digests);
	ram_digest__exit(&d->digest);
	free(d->lz4_pages);
	stream__zstd_free(NULL, d->zstd_dctx);
	stream__reader_exit(&d->r);
	stream_io__exit(&d->io);
	for (i = 1; i < d->joined; i++)
		close(d->extra_fd[i]);
	if (d->fd >= 0)
		close(d->fd);
}

static void cleanup(struct dest *d)
{
	cleanup_attempt(d);
	d->fd = -1;
	d->joined = 0;
	close_connections(d);
	tls__ctx_free(d->tls);
	if (d->stop >= 0)
		close(d->stop);
}

/*
 * The connection had its CONFIG accepted but then sent nothing usable: it goes, the
 * VM built for it too, and the listener takes the next.
 */
static int next_attempt(struct dest *d)
{
	struct dest fresh = { .p = d->p, .fd = -1, .lfd = d->lfd, .waiting = d->waiting,
			      .tls = d->tls, .stop = d->stop, .io_timeout_ms = d->io_timeout_ms };
	unsigned int i;

	pr_warn("closed the connection from %s: nothing usable came after ACCEPTED (%s)",
		d->peer, d->err);
	if (!d->io.gave_up)
		send_error(d);
	if (d->io.tls[0])
		tls__ctx_spend_psk(d->tls);
	cleanup_attempt(d);
	*d = fresh;
	/* The VM had taken this host's backends: open them again for the next one. */
	d->pre.console_fd = -1;
	for (i = 0; i < VM_MAX_DISKS; i++)
		d->pre.disk_fd[i] = -1;
	for (i = 0; i < VM_MAX_NETS; i++)
		d->pre.tap[i].fd = -1;
	return open_backends(d);
}

/* A bounded wait ended the receive: say so, over whatever the read or write said. */
static void gave_up(struct dest *d)
{
	d->err[0] = 0;
	if (d->io.gave_up == -EINTR)
		fail(d, "stopped by a signal; the VM was not started");
	else
		fail(d, "%s sent nothing, or read nothing we sent, for %d s (--io-timeout); the "
			"VM was not started", d->peer, d->io_timeout_ms / 1000);
}

int migrate__receive(const struct receive_params *p)
{
	struct dest d = { .p = p, .fd = -1, .lfd = -1, .stop = util__stop_signal_fd() };
	int ret, status;

	d.io_timeout_ms = p->io_timeout_ms ? p->io_timeout_ms : IO_TIMEOUT_MS;
	ret = open_backends(&d);
	if (ret) {
		if (d.stop >= 0)
			close(d.stop);
		return ret == -EINVAL ? 2 : 1;
	}
	ret = open_source(&d);
	while (!ret) {
		ret = d.is_file ? read_config(&d) : take_source(&d);
		if (!ret)
			ret = build_vm(&d);
		if (!ret)
			ret = start_digests(&d);
		if (!ret && !d.is_file)
			ret = send_accepted(&d);
		if (!ret)
			ret = start_parked(&d);
		if (!ret) {
			ram_receiver__start(&d.ram, &d.vm->mem);
			ret = receive_records(&d);
		}
		if (!ret || d.is_file || !d.first_read_failed || d.io.gave_up == -EINTR)
			break;
		ret = next_attempt(&d);
	}
	/* Verify first: restoring the vCPUs makes KVM write guest RAM (kvmclock). */
	if (!ret)
		ret = verify(&d);
	if (!ret)
		ret = verify_disks(&d);
	if (!ret)
		ret = restore(&d);
	d.restored_ns = util__now_ns();
	if (!ret)
		ret = d.is_file ? start_from_file(&d) : handover(&d);
	util__switchover_priority(false);
	if (ret && d.io.gave_up)
		gave_up(&d);
	if (ret) {
		if (!d.err[0])
			fail(&d, "%s", strerror(-ret));
		pr_err("incoming migration failed: %s", d.err);
		send_error(&d);
		cleanup(&d);
		return 1;
	}
	d.disks.keep = true;
	pr_info("VM resumed here (%u vCPUs, %llu MiB)", d.cfg->nr_vcpus,
		(unsigned long long)(d.cfg->ram_size >> 20));
	close_connections(&d);
	status = vm__wait(d.vm);
	pr_info("%s (exit status %d)", d.vm->exit.reason, status);
	cleanup(&d);
	return status;
}
