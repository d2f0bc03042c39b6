// SPDX-License-Identifier: GPL-2.0
/* The VM's outgoing-migration slot: start, cancel, progress, for the API. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "godwit/log.h"
#include "godwit/migrate.h"
#include "godwit/virtio_blk.h"
#include "godwit/vm.h"

const char *migrate__status_name(enum migrate_status s)
{
	static const char *const names[] = {
		[MIG_NONE] = "none",	       [MIG_SETUP] = "setup",
		[MIG_ACTIVE] = "active",       [MIG_COMPLETING] = "completing",
		[MIG_COMPLETED] = "completed", [MIG_FAILED] = "failed",
		[MIG_CANCELLED] = "cancelled",
	};

	return (unsigned int)s < ARRAY_SIZE(names) ? names[s] : "unknown";
}

static const char *const compress_names[] = {
	[MIGRATE_COMPRESS_AUTO] = "auto",
	[MIGRATE_COMPRESS_LZ4] = "lz4",
	[MIGRATE_COMPRESS_OFF] = "off",
	[MIGRATE_COMPRESS_ZSTD] = "zstd",
};

const char *migrate__compress_name(enum migrate_compress c)
{
	return (unsigned int)c < ARRAY_SIZE(compress_names) ? compress_names[c] : "unknown";
}

int migrate__compress_parse(const char *s, enum migrate_compress *c)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(compress_names); i++) {
		if (!strcmp(s, compress_names[i])) {
			*c = (enum migrate_compress)i;
			return 0;
		}
	}
	return -EINVAL;
}

/*
 * With dirty logging on, the first write to a page after each sync is a fault KVM
 * fixes, so the count follows the pages a vCPU dirtied (in one round, tens of thousands
 * for a vCPU that writes memory, a handful for one that does not). A vCPU
 * with at least half of an even share (total / 2n) dirties; below DIRTIER_MIN_FAULTS
 * in all, nobody does (a round that short says nothing).
 */
#define DIRTIER_MIN_FAULTS 64

unsigned int migrate__find_dirtiers(const uint64_t *faults, unsigned int n, bool *dirtier)
{
	uint64_t total = 0;
	unsigned int i, found = 0;

	for (i = 0; i < n; i++)
		total += faults[i];
	for (i = 0; i < n; i++) {
		dirtier[i] = total >= DIRTIER_MIN_FAULTS && faults[i] * 2 * n >= total;
		found += dirtier[i];
	}
	return found;
}

bool migrate__status_final(enum migrate_status s)
{
	return s == MIG_COMPLETED || s == MIG_FAILED || s == MIG_CANCELLED;
}

bool migrate__status_final_name(const char *name)
{
	return name && (!strcmp(name, "completed") || !strcmp(name, "failed") ||
			!strcmp(name, "cancelled"));
}

int migrate__init(struct vm *vm)
{
	struct migration *m = calloc(1, sizeof(*m));
	int ret;

	if (!m)
		return -ENOMEM;
	/* The source's pause takes it at real-time priority (its counts, its status). */
	ret = util__mutex_init_inherit(&m->lock);
	if (ret) {
		free(m);
		return ret;
	}
	pthread_cond_init(&m->cond, NULL);
	m->fd = -1;
	vm->mig = m;
	return 0;
}

/* Joins a finished migration thread; the caller holds no lock. */
static void reap(struct migration *m)
{
	bool join;

	pthread_mutex_lock(&m->lock);
	join = m->running && migrate__status_final(m->stats.status);
	if (join)
		m->running = false;
	pthread_mutex_unlock(&m->lock);
	if (join)
		pthread_join(m->thread, NULL);
}

void migrate__stop(struct vm *vm)
{
	struct migration *m = vm->mig;
	unsigned int i;
	bool running;

	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	running = m->running;
	m->running = false; /* joined here, not by a later reap() */
	m->cancel = true;
	/* Unblocks a send or receive stuck on a dead peer. */
	if (m->fd >= 0)
		shutdown(m->fd, SHUT_RDWR);
	for (i = 0; i < m->nr_extra; i++)
		shutdown(m->extra_fd[i], SHUT_RDWR);
	pthread_mutex_unlock(&m->lock);
	if (running)
		pthread_join(m->thread, NULL);
}

void migrate__exit(struct vm *vm)
{
	struct migration *m = vm->mig;

	if (!m)
		return;
	migrate__stop(vm);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m);
	vm->mig = NULL;
}

static uint64_t default_timeout_s(uint64_t ram_bytes)
{
	/* A minute, plus ten seconds per GiB of RAM (and of the disks sent). */
	return 60 + 10 * (ram_bytes / GiB);
}

/* The disks sent through the stream: known, each once, over tcp:. Their total size. */
static int check_disk_to(struct vm *vm, const struct migrate_params *p, uint64_t *bytes,
			 char *err, size_t errlen)
{
	struct virtio_blk *b;
	unsigned int i, j;

	*bytes = 0;
	if (p->nr_disk_to > MIGRATE_MAX_DISK_TO)
		goto err_many;
	if (p->nr_disk_to && strncmp(p->to, "tcp:", 4)) {
		snprintf(err, errlen, "disk_to is for tcp: moves; a snapshot file holds no disk");
		return -EINVAL;
	}
	for (i = 0; i < p->nr_disk_to; i++) {
		const struct migrate_disk_to *d = &p->disk_to[i];

		b = devices__disk(vm, d->disk);
		if (!b) {
			snprintf(err, errlen, "disk_to: no disk %u (this VM has %u: IDs 0 up)", d->disk,
				 vm->cfg.nr_disks);
			return -EINVAL;
		}
		if (!d->to[0] || strnlen(d->to, sizeof(d->to)) >= sizeof(d->to)) {
			snprintf(err, errlen, "disk_to: disk %u needs a path of 1 to %d bytes",
				 d->disk, STREAM_DISK_TO_MAX);
			return -EINVAL;
		}
		for (j = 0; j < i; j++)
			if (p->disk_to[j].disk == d->disk) {
				snprintf(err, errlen, "disk_to: disk %u named twice", d->disk);
				return -EINVAL;
			}
		*bytes += b->disk.size;
	}
	return 0;
err_many:
	snprintf(err, errlen, "disk_to: at most %d disks", MIGRATE_MAX_DISK_TO);
	return -EINVAL;
}

int migrate__check_params(const struct migrate_params *p, char *err, size_t errlen)
{
	if (!p->downtime_ms || p->downtime_ms > MIGRATE_DOWNTIME_MS_MAX) {
		snprintf(err, errlen, "'downtime_ms' must be 1 to %llu (an hour)",
			 MIGRATE_DOWNTIME_MS_MAX);
		return -EINVAL;
	}
	if (p->timeout_s > MIGRATE_TIMEOUT_S_MAX) {
		snprintf(err, errlen, "'timeout_s' must be 1 to %llu (a week), or 0 for the default",
			 MIGRATE_TIMEOUT_S_MAX);
		return -EINVAL;
	}
	return 0;
}

static bool psk_spent(const struct migration *m, const uint8_t *digest)
{
	unsigned int i;

	for (i = 0; i < MIN(m->nr_spent_psk, (unsigned int)MIGRATE_SPENT_PSKS); i++)
		if (!memcmp(m->spent_psk[i], digest, TLS_PSK_DIGEST_LEN))
			return true;
	return false;
}

/*
 * The move's TLS context, from credentials checked now so that a bad file or a key
 * used before is a 400, not a failed move: *ctx (NULL for plaintext), 0 or -EINVAL.
 */
static int make_tls(struct migration *m, struct tls_params *tp, const char *to, bool p_key,
		    struct tls_ctx **ctx, char *err, size_t errlen)
{
	uint8_t digest[TLS_PSK_DIGEST_LEN];
	char why[200] = "";
	bool spent;
	int ret;

	*ctx = NULL;
	ret = tls__check_params(tp, why, sizeof(why));
	if (!ret && tp->mode != TLS_MODE_OFF && !strncmp(to, "file:", 5)) {
		snprintf(why, sizeof(why), "TLS is for tcp: streams; a snapshot file is written "
					   "as it is");
		ret = -EINVAL;
	}
	if (!ret && p_key && strncmp(to, "file:", 5)) {
		snprintf(why, sizeof(why), "encrypt_key is for file: snapshots; a tcp: stream is "
					   "encrypted with TLS");
		ret = -EINVAL;
	}
	if (ret) {
		snprintf(err, errlen, "%s", why);
		return ret;
	}
	if (tp->mode == TLS_MODE_OFF)
		return 0;
	if (tp->has_psk) {
		tls__psk_digest(tp->psk, digest);
		pthread_mutex_lock(&m->lock);
		spent = psk_spent(m, digest);
		pthread_mutex_unlock(&m->lock);
		if (spent) {
			snprintf(err, errlen, "this one-time key has served a move from here already: "
					      "each move needs a new one");
			return -EINVAL;
		}
	}
	ret = tls__ctx_new(tp, false, ctx, why, sizeof(why));
	if (ret) {
		snprintf(err, errlen, "%s", why);
		return -EINVAL;
	}
	return 0;
}

/* The key is taken by this move: remembered as spent, and forgotten. */
static void spend_psk(struct migration *m)
{
	struct tls_params *tp = &m->params.tls;

	if (!tp->has_psk)
		return;
	tls__psk_digest(tp->psk, m->spent_psk[m->nr_spent_psk++ % MIGRATE_SPENT_PSKS]);
	explicit_bzero(tp->psk, sizeof(tp->psk));
}

int migrate__start(struct vm *vm, const struct migrate_params *p, char *err, size_t errlen)
{
	struct migration *m = vm->mig;
	struct tls_params tp = p->tls;
	struct tls_ctx *tls;
	uint64_t disk_bytes;
	int ret;

	ret = migrate__check_params(p, err, errlen);
	if (!ret)
		ret = check_disk_to(vm, p, &disk_bytes, err, errlen);
	if (!ret)
		ret = make_tls(m, &tp, p->to, p->has_encrypt_key, &tls, err, errlen);
	explicit_bzero(tp.psk, sizeof(tp.psk));
	if (ret)
		return ret;
	reap(m);
	pthread_mutex_lock(&vm->lock);
	ret = vm->state == VM_RUNNING ? 0 : -EBUSY;
	pthread_mutex_unlock(&vm->lock);
	if (ret) {
		snprintf(err, errlen, "the VM is not running");
		goto err_tls;
	}
	if (strncmp(p->to, "tcp:", 4) && strncmp(p->to, "file:", 5)) {
		snprintf(err, errlen, "'%s': expected tcp:HOST:PORT or file:PATH", p->to);
		ret = -EINVAL;
		goto err_tls;
	}
	pthread_mutex_lock(&m->lock);
	if (m->running) {
		pthread_mutex_unlock(&m->lock);
		snprintf(err, errlen, "a migration is already running");
		ret = -EBUSY;
		goto err_tls;
	}
	m->params = *p;
	m->params.tls.mode = tp.mode;
	m->tls = tls;
	spend_psk(m);
	if (!m->params.timeout_s)
		m->params.timeout_s = default_timeout_s(vm->mem.size + disk_bytes);
	memset(&m->stats, 0, sizeof(m->stats));
	m->stats.status = MIG_SETUP;
	m->stats.encryption = "none";
	m->stats.start_ns = util__now_ns();
	m->stats.ram_bytes = vm->mem.size;
	m->stats.max_bandwidth = m->params.max_bandwidth;
	snprintf(m->stats.to, sizeof(m->stats.to), "%s", p->to);
	m->cancel = false;
	m->watched = p->watch;
	m->acked = false;
	ret = migrate__launch(vm);
	if (!ret)
		m->running = true;
	else
		m->tls = NULL;
	pthread_mutex_unlock(&m->lock);
	if (!ret)
		return 0;
	snprintf(err, errlen, "cannot start the migration thread: %s", strerror(-ret));
err_tls:
	tls__ctx_free(tls);
	return ret;
}

int migrate__cancel(struct vm *vm)
{
	struct migration *m = vm->mig;
	int ret = 0;

	pthread_mutex_lock(&m->lock);
	if (!m->running || migrate__status_final(m->stats.status))
		ret = -ENOENT;
	else
		m->cancel = true;
	pthread_mutex_unlock(&m->lock);
	return ret;
}

void migrate__get_stats(struct vm *vm, struct migrate_stats *out)
{
	struct migration *m = vm->mig;

	pthread_mutex_lock(&m->lock);
	*out = m->stats;
	if (!migrate__status_final(out->status) && out->status != MIG_NONE)
		out->total_ms = (util__now_ns() - out->start_ns) / 1000000;
	pthread_mutex_unlock(&m->lock);
}

void migrate__times(struct migrate_stats *st, uint64_t pause_ns, uint64_t pause_end_ns,
		    uint64_t end_ns)
{
	st->total_ms = (end_ns - st->start_ns) / 1000000;
	if (pause_ns && pause_end_ns >= pause_ns)
		st->downtime_ms = (pause_end_ns - pause_ns) / 1000000;
}

int migrate__ack(struct vm *vm)
{
	struct migration *m = vm->mig;
	int ret = -ENOENT;

	pthread_mutex_lock(&m->lock);
	if (migrate__status_final(m->stats.status)) {
		m->acked = true;
		pthread_cond_broadcast(&m->cond);
		ret = 0;
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}

/*
 * After a successful migration the source process exits; a client that follows
 * the migration (godwit migrate) first gets to read the final figures, and says
 * so with PUT /vm/migration/ack. Bounded: a client that went away holds no one.
 */
void migrate__wait_ack(struct migration *m, unsigned int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&m->lock);
	while (m->watched && !m->acked)
		if (pthread_cond_timedwait(&m->cond, &m->lock, &ts))
			break;
	pthread_mutex_unlock(&m->lock);
}
