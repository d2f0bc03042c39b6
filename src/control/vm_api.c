// SPDX-License-Identifier: GPL-2.0
/* The VM's resources on the API socket (docs/api.md). Handlers run on API threads. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/api.h"
#include "godwit/log.h"
#include "godwit/migrate.h"
#include "godwit/virtio_blk.h"
#include "godwit/vm.h"
#include "godwit/vm_api.h"

static json_t *config_json(const struct vm_config *cfg)
{
	return json_pack("{s:s, s:s?, s:s, s:I, s:i, s:s, s:s?}", "kernel", cfg->kernel, "initrd",
			 cfg->initrd, "cmdline", cfg->cmdline ? cfg->cmdline : "", "memory",
			 (json_int_t)cfg->mem_size, "cpus", (int)cfg->nr_cpus, "console",
			 cfg->console == CONSOLE_FILE ? "file" : "stdio", "console_path",
			 cfg->console_path);
}

/* The disks as the guest sees them now: a disk move changes a path. */
static json_t *disks_json(struct vm *vm)
{
	json_t *disks = json_array();
	char path[PATH_MAX];
	struct virtio_blk *b;
	unsigned int id;

	for (id = 0; disks && id < vm->cfg.nr_disks; id++) {
		b = devices__disk(vm, id);
		if (!b)
			continue;
		virtio_blk__path(b, path, sizeof(path));
		json_array_append_new(disks, json_pack("{s:i, s:s, s:b, s:I}", "id", (int)id,
						       "path", path, "readonly", b->disk.readonly,
						       "size", (json_int_t)(b->capacity * 512)));
	}
	return disks;
}

static int get_vm(void *opaque, const struct api_request *req, struct api_response *resp)
{
	struct vm *vm = opaque;
	enum vm_state state;
	json_t *vcpus;
	unsigned int i;

	(void)req;
	pthread_mutex_lock(&vm->lock);
	state = vm->state;
	pthread_mutex_unlock(&vm->lock);
	vcpus = json_array();
	for (i = 0; i < vm->nr_vcpus; i++)
		json_array_append_new(vcpus, json_pack("{s:i, s:I}", "id", (int)i, "exits",
						       (json_int_t)__atomic_load_n(&vm->vcpus[i].exits,
										   __ATOMIC_RELAXED)));
	resp->body = json_pack("{s:s, s:o, s:o, s:o*, s:I, s:b}", "state", vm__state_name(state),
			       "config", config_json(&vm->cfg), "vcpus", vcpus, "disks",
			       disks_json(vm), "uptime_ms",
			       (json_int_t)((util__now_ns() - vm->start_ns) / 1000000),
			       "software_kvm", vm->kvm.is_pvm);
	return resp->body ? 0 : -ENOMEM;
}

static int state_reply(struct vm *vm, struct api_response *resp)
{
	pthread_mutex_lock(&vm->lock);
	resp->body = json_pack("{s:s}", "state", vm__state_name(vm->state));
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

static int put_pause(void *opaque, const struct api_request *req, struct api_response *resp)
{
	struct vm *vm = opaque;
	int ret;

	(void)req;
	ret = vm__pause(vm);
	if (ret) {
		api__error(resp, 409, "cannot pause: %s", strerror(-ret));
		return 0;
	}
	return state_reply(vm, resp);
}

static bool paused(struct vm *vm)
{
	bool ret;

	pthread_mutex_lock(&vm->lock);
	ret = vm->state == VM_PAUSED;
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

static int put_resume(void *opaque, const struct api_request *req, struct api_response *resp)
{
	struct vm *vm = opaque;
	int ret;

	(void)req;
	/*
	 * A paused VM whose disk locks a migration let go (and could not all take back)
	 * runs again only once they are ours: otherwise it would write to images another
	 * process may own. An incoming VM (created) takes them at the hand-over only.
	 */
	if (paused(vm) && !devices__disks_locked(vm)) {
		ret = devices__take_disks(vm);
		if (ret) {
			api__error(resp, 409, "cannot resume: a disk image is not locked (%s)",
				   strerror(-ret));
			return 0;
		}
	}
	ret = vm__resume(vm);
	if (ret) {
		api__error(resp, 409, "cannot resume: %s", strerror(-ret));
		return 0;
	}
	return state_reply(vm, resp);
}

static int put_shutdown(void *opaque, const struct api_request *req, struct api_response *resp)
{
	struct vm *vm = opaque;

	(void)req;
	vm__request_exit(vm, 0, "shut down through the API");
	resp->status = 202;
	resp->body = json_pack("{s:s}", "state", "stopping");
	return 0;
}

json_t *vm_api__migration_json(const struct migrate_stats *st)
{
	/* Guest RAM, whatever the wire carried (bytes_sent): data and zero pages, each time sent. */
	uint64_t moved = (st->pages_sent + st->zero_pages) * GUEST_PAGE_SIZE;

	return json_pack("{s:s, s:s, s:I, s:I, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
			 "s:I, s:i, s:i, s:I, s:I, s:I, s:I, s:i, s:s?, s:s?, s:I, s:I, s:I}",
			 "status", migrate__status_name(st->status), "to", st->to, "total_ms",
			 (json_int_t)st->total_ms, "downtime_ms", (json_int_t)st->downtime_ms,
			 "rounds", (int)st->rounds, "ram_bytes", (json_int_t)st->ram_bytes,
			 "bytes_sent", (json_int_t)st->bytes_sent, "ram_moved_bytes",
			 (json_int_t)moved, "pages_sent",
			 (json_int_t)st->pages_sent, "zero_pages", (json_int_t)st->zero_pages,
			 "skipped_pages", (json_int_t)st->skipped_pages, "remaining_bytes",
			 (json_int_t)st->remaining_bytes, "bandwidth", (json_int_t)st->bandwidth,
			 "max_bandwidth", (json_int_t)st->max_bandwidth, "dirty_rate", (json_int_t)st->dirty_rate, "throttle_pct",
			 (int)st->throttle_pct, "max_throttle_pct", (int)st->max_throttle_pct,
			 "lz4_pages", (json_int_t)st->lz4_pages, "lz4_saved_bytes",
			 (json_int_t)st->lz4_saved, "zstd_pages", (json_int_t)st->zstd_pages,
			 "zstd_saved_bytes", (json_int_t)st->zstd_saved, "connections",
			 (int)st->connections, "encryption", st->encryption, "error",
			 st->error[0] ? st->error : NULL, "disk_bytes", (json_int_t)st->disk_bytes,
			 "disk_size", (json_int_t)st->disk_size, "disk_copied",
			 (json_int_t)st->disk_copied);
}

/* Reads an optional non-negative integer field; false (and a 400) if it is malformed. */
static bool opt_uint(const json_t *body, const char *key, uint64_t *out,
		     struct api_response *resp)
{
	const json_t *v = json_object_get(body, key);

	if (!v)
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		api__error(resp, 400, "'%s' must be a non-negative integer", key);
		return false;
	}
	*out = (uint64_t)json_integer_value(v);
	return true;
}

/* An optional string field into buf; false (and a 400) if it is not a string that fits. */
static bool opt_str(const json_t *body, const char *key, char *buf, size_t len,
		    struct api_response *resp)
{
	const json_t *v = json_object_get(body, key);

	if (!v)
		return true;
	if (!json_is_string(v) || !json_string_length(v) || json_string_length(v) >= len) {
		api__error(resp, 400, "'%s' must be a string of 1 to %zu characters", key, len - 1);
		return false;
	}
	snprintf(buf, len, "%s", json_string_value(v));
	return true;
}

/* The encryption fields of PUT /vm/migrate into p: false (and a 400) on a malformed one. */
static bool tls_fields(const json_t *body, struct migrate_params *p, struct api_response *resp)
{
	const json_t *mode = json_object_get(body, "encrypt"), *psk = json_object_get(body, "tls_psk");
	const json_t *key = json_object_get(body, "encrypt_key");
	struct tls_params *tp = &p->tls;

	if (mode && (!json_is_string(mode) || tls__mode_parse(json_string_value(mode), &tp->mode))) {
		api__error(resp, 400, "'encrypt' must be \"required\", \"opportunistic\" or \"off\"");
		return false;
	}
	if (psk && (!json_is_string(psk) || tls__psk_parse_hex(json_string_value(psk), tp->psk))) {
		api__error(resp, 400, "'tls_psk' must be a key of 64 hex digits");
		return false;
	}
	tp->has_psk = !!psk;
	if (key && (!json_is_string(key) ||
		    tls__psk_parse_hex(json_string_value(key), p->encrypt_key))) {
		api__error(resp, 400, "'encrypt_key' must be a key of 64 hex digits");
		return false;
	}
	p->has_encrypt_key = !!key;
	return opt_str(body, "tls_cert", tp->cert, sizeof(tp->cert), resp) &&
	       opt_str(body, "tls_key", tp->key, sizeof(tp->key), resp) &&
	       opt_str(body, "tls_ca", tp->ca, sizeof(tp->ca), resp) &&
	       opt_str(body, "tls_peer_name", tp->peer_name, sizeof(tp->peer_name), resp);
}

/*
 * disk_to: [{"disk": ID, "to": PATH}, ...], the disks whose images go through the
 * stream (migration without shared storage). False (and a 400) if malformed.
 */
static bool disk_to_field(const json_t *body, struct migrate_params *p,
			  struct api_response *resp)
{
	const json_t *list = json_object_get(body, "disk_to"), *e;
	size_t i;

	if (!list)
		return true;
	if (!json_is_array(list) || json_array_size(list) > MIGRATE_MAX_DISK_TO)
		goto bad;
	json_array_foreach(list, i, e) {
		const json_t *disk = json_object_get(e, "disk"), *to = json_object_get(e, "to");
		struct migrate_disk_to *d = &p->disk_to[i];

		if (!json_is_integer(disk) || json_integer_value(disk) < 0 ||
		    json_integer_value(disk) >= VM_MAX_DISKS || !json_is_string(to) ||
		    !json_string_length(to) || json_string_length(to) >= sizeof(d->to))
			goto bad;
		d->disk = (uint32_t)json_integer_value(disk);
		snprintf(d->to, sizeof(d->to), "%s", json_string_value(to));
	}
	p->nr_disk_to = (unsigned int)json_array_size(list);
	return true;
bad:
	api__error(resp, 400, "'disk_to' must be a list of at most %d {\"disk\": ID, \"to\": "
			      "PATH} (PATH 1 to %d bytes)", MIGRATE_MAX_DISK_TO, STREAM_DISK_TO_MAX);
	return false;
}

static int put_migrate(void *opaque, const struct api_request *req, struct api_response *resp)
{
	struct migrate_params p = { .downtime_ms = 50 };
	struct vm *vm = opaque;
	const json_t *to, *verify, *compress;
	char err[256];
	int ret;

	to = req->body ? json_object_get(req->body, "to") : NULL;
	if (!json_is_string(to) || strlen(json_string_value(to)) >= sizeof(p.to)) {
		api__error(resp, 400, "body must be {\"to\": \"tcp:HOST:PORT\" or \"file:PATH\", ...}");
		return 0;
	}
	snprintf(p.to, sizeof(p.to), "%s", json_string_value(to));
	if (!opt_uint(req->body, "downtime_ms", &p.downtime_ms, resp) ||
	    !opt_uint(req->body, "max_bandwidth", &p.max_bandwidth, resp) ||
	    !opt_uint(req->body, "timeout_s", &p.timeout_s, resp) ||
	    !opt_uint(req->body, "connections", &p.connections, resp))
		return 0;
	if (p.connections > STREAM_MAX_CONNECTIONS) {
		api__error(resp, 400, "'connections' must be 0 (by the round trip) to %u",
			   STREAM_MAX_CONNECTIONS);
		return 0;
	}
	compress = json_object_get(req->body, "compress");
	if (compress && (!json_is_string(compress) ||
			 migrate__compress_parse(json_string_value(compress), &p.compress))) {
		api__error(resp, 400, "'compress' must be \"auto\", \"lz4\", \"zstd\" or \"off\"");
		return 0;
	}
	verify = json_object_get(req->body, "verify");
	p.verify = json_is_true(verify);
	p.confirm_ready = json_is_true(json_object_get(req->body, "confirm_ready"));
	p.watch = json_is_true(json_object_get(req->body, "watch"));
	if (!tls_fields(req->body, &p, resp) || !disk_to_field(req->body, &p, resp))
		return 0;
	/* A disk that switched files mid-migration would leave the destination on the old. */
	pthread_mutex_lock(&vm->control_lock);
	ret = devices__disk_moving(vm);
	if (ret >= 0) {
		pthread_mutex_unlock(&vm->control_lock);
		explicit_bzero(p.tls.psk, sizeof(p.tls.psk));
		explicit_bzero(p.encrypt_key, sizeof(p.encrypt_key));
		api__error(resp, 409, "disk %d is being moved; migrate once the move has ended", ret);
		return 0;
	}
	ret = migrate__start(vm, &p, err, sizeof(err));
	pthread_mutex_unlock(&vm->control_lock);
	explicit_bzero(p.tls.psk, sizeof(p.tls.psk));
	explicit_bzero(p.encrypt_key, sizeof(p.encrypt_key));
	if (ret) {
		api__error(resp, ret == -EINVAL ? 400 : 409, "%s", err);
		return 0;
	}
	resp->status = 202;
	resp->body = json_pack("{s:s}", "status", "setup");
	return 0;
}

static int get_migration(void *opaque, const struct api_request *req, struct api_response *resp)
{
	struct migrate_stats st;

	(void)req;
	migrate__get_stats(opaque, &st);
	resp->body = vm_api__migration_json(&st);
	return resp->body ? 0 : -ENOMEM;
}

static int put_migrate_cancel(void *opaque, const struct api_request *req,
			      struct api_response *resp)
{
	(void)req;
	if (migrate__cancel(opaque)) {
		api__error(resp, 409, "no migration is running");
		return 0;
	}
	resp->status = 202;
	resp->body = json_pack("{s:s}", "status", "cancelling");
	return 0;
}

static int put_migration_ack(void *opaque, const struct api_request *req,
			     struct api_response *resp)
{
	(void)req;
	if (migrate__ack(opaque))
		api__error(resp, 409, "the migration has not ended");
	else
		resp->status = 204;
	return 0;
}

/* ---- disks ------------------------------------------------------------------------ */

/* The disk a /vm/disks/ID/... path names; NULL with a 404 in resp. */
static struct virtio_blk *path_disk(struct vm *vm, const char *path, unsigned int *id,
				    struct api_response *resp)
{
	const char *s = path + strlen("/vm/disks/");
	struct virtio_blk *b = NULL;
	char *end;
	unsigned long v;

	if (*s >= '0' && *s <= '9' && (s[0] != '0' || s[1] == '/')) {
		v = strtoul(s, &end, 10);
		if (*end == '/' && v < VM_MAX_DISKS) {
			*id = (unsigned int)v;
			b = devices__disk(vm, *id);
		}
	}
	if (!b)
		api__error(resp, 404, "no such disk: %.*s (this VM has %u: IDs 0 up, in --disk order)",
			   (int)strcspn(s, "/"), s, vm->cfg.nr_disks);
	return b;
}

static json_t *disk_move_json(unsigned int id, const struct blk_move_stats *st)
{
	bool started = st->status != BLK_MOVE_NONE;

	return json_pack("{s:i, s:s, s:s?, s:s?, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s?}", "disk",
			 (int)id, "status", virtio_blk__move_status_name(st->status), "from",
			 started ? st->from : NULL, "to", started ? st->to : NULL, "size_bytes",
			 (json_int_t)st->size, "copied_bytes", (json_int_t)st->copied,
			 "data_bytes", (json_int_t)st->data_bytes, "mirrored_bytes",
			 (json_int_t)st->mirrored_bytes, "mirrored_requests",
			 (json_int_t)st->mirrored_requests, "total_ms", (json_int_t)st->total_ms,
			 "switch_us", (json_int_t)st->switch_us, "error",
			 st->error[0] ? st->error : NULL);
}

static bool migrating(struct vm *vm)
{
	struct migrate_stats st;

	migrate__get_stats(vm, &st);
	return st.status != MIG_NONE && !migrate__status_final(st.status);
}

static int put_disk_move(void *opaque, const struct api_request *req, struct api_response *resp)
{
	struct vm *vm = opaque;
	uint64_t max_bandwidth = 0;
	struct virtio_blk *b;
	enum vm_state state;
	const json_t *to;
	unsigned int id;
	char err[256];
	int ret;

	b = path_disk(vm, req->path, &id, resp);
	if (!b)
		return 0;
	to = req->body ? json_object_get(req->body, "to") : NULL;
	if (!json_is_string(to) || !json_string_length(to) ||
	    json_string_length(to) >= sizeof(b->move.stats.to)) {
		api__error(resp, 400, "body must be {\"to\": \"PATH\"}, the new image's path");
		return 0;
	}
	if (!opt_uint(req->body, "max_bandwidth", &max_bandwidth, resp))
		return 0;
	pthread_mutex_lock(&vm->lock);
	state = vm->state;
	pthread_mutex_unlock(&vm->lock);
	if (state != VM_RUNNING && state != VM_PAUSED) {
		api__error(resp, 409, "the VM is %s", vm__state_name(state));
		return 0;
	}
	pthread_mutex_lock(&vm->control_lock);
	if (migrating(vm)) {
		pthread_mutex_unlock(&vm->control_lock);
		api__error(resp, 409, "a migration is under way");
		return 0;
	}
	ret = virtio_blk__move_start(b, json_string_value(to), max_bandwidth, err, sizeof(err));
	pthread_mutex_unlock(&vm->control_lock);
	if (ret) {
		api__error(resp, ret == -EBUSY || ret == -EEXIST ? 409 : ret == -ENOMEM ? 500 : 400,
			   "%s", err);
		return 0;
	}
	resp->status = 202;
	resp->body = json_pack("{s:s}", "status", "copying");
	return 0;
}

static int get_disk_move(void *opaque, const struct api_request *req, struct api_response *resp)
{
	struct blk_move_stats *st;
	struct virtio_blk *b;
	unsigned int id;

	b = path_disk(opaque, req->path, &id, resp);
	if (!b)
		return 0;
	/* Two paths of 4 KiB: not on an API thread's stack. */
	st = malloc(sizeof(*st));
	if (!st)
		return -ENOMEM;
	virtio_blk__move_stats(b, st);
	resp->body = disk_move_json(id, st);
	free(st);
	return resp->body ? 0 : -ENOMEM;
}

static int put_disk_move_cancel(void *opaque, const struct api_request *req,
				struct api_response *resp)
{
	struct virtio_blk *b;
	unsigned int id;

	b = path_disk(opaque, req->path, &id, resp);
	if (!b)
		return 0;
	switch (virtio_blk__move_cancel(b)) {
	case 0:
		break;
	case -EBUSY:
		api__error(resp, 409, "disk %u: too late to cancel, the move is completing", id);
		return 0;
	default:
		api__error(resp, 409, "disk %u is not being moved", id);
		return 0;
	}
	resp->status = 202;
	resp->body = json_pack("{s:s}", "status", "cancelling");
	return 0;
}

static const struct api_route vm_routes[] = {
	{ "GET", "/vm", get_vm },
	{ "PUT", "/vm/pause", put_pause },
	{ "PUT", "/vm/resume", put_resume },
	{ "PUT", "/vm/shutdown", put_shutdown },
	{ "PUT", "/vm/migrate", put_migrate },
	{ "GET", "/vm/migration", get_migration },
	{ "PUT", "/vm/migrate/cancel", put_migrate_cancel },
	{ "PUT", "/vm/migration/ack", put_migration_ack },
	{ "PUT", "/vm/disks/*/move", put_disk_move },
	{ "GET", "/vm/disks/*/move", get_disk_move },
	{ "PUT", "/vm/disks/*/move/cancel", put_disk_move_cancel },
};

/*
 * `godwit receive` opens the API socket before it listens (vm__preopen), so that a bad
 * --api fails at once; its clients wait in the backlog until start() serves them.
 */
static int preopen(struct vm_preopened *pre, const struct vm_config *cfg)
{
	return cfg->api_path ? api__open(&pre->api, cfg->api_path) : 0;
}

static void preclose(struct vm_preopened *pre)
{
	api__stop(pre->api);
	pre->api = NULL;
}

static int serve(struct vm *vm)
{
	struct vm_preopened *pre = vm->cfg.pre;
	int ret;

	if (!vm->cfg.api_path)
		return 0;
	if (!pre || !pre->api)
		return api__start(&vm->api, vm->cfg.api_path, vm_routes, ARRAY_SIZE(vm_routes), vm);
	ret = api__serve(pre->api, vm_routes, ARRAY_SIZE(vm_routes), vm);
	if (!ret) {
		vm->api = pre->api;
		pre->api = NULL;
	}
	return ret;
}

static int start(struct vm *vm)
{
	int ret = migrate__init(vm);

	if (ret)
		return ret;
	ret = serve(vm);
	if (ret)
		migrate__exit(vm);
	return ret;
}

/*
 * The migration ends first, while its watcher can still read the outcome and
 * acknowledge it; the slot goes only once no handler can reach it.
 */
static void stop(struct vm *vm)
{
	migrate__stop(vm);
	api__stop(vm->api);
	vm->api = NULL;
	migrate__exit(vm);
}

const struct vm_control vm_api__control = {
	.preopen = preopen, .preclose = preclose, .start = start, .stop = stop,
};
