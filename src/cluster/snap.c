// SPDX-License-Identifier: GPL-2.0
/* A snapshot of the cluster's live state: one range over /godwit/ at one revision. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "godwit/cluster/rules.h"
#include "manager.h"

static bool take(const char *key, const char *prefix, const char **rest)
{
	size_t n = strlen(prefix);

	if (strncmp(key, prefix, n))
		return false;
	*rest = key + n;
	return true;
}

int snap__host(const struct snap *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->nr_hosts; i++)
		if (!strcmp(s->hosts[i].name, name))
			return (int)i;
	return -1;
}

/* The host of that name, added if new (a host named only by a VM, a lease or a slot). */
static struct s_host *host_get(struct snap *s, const char *name, size_t len)
{
	char n[NAME_MAX_LEN + 1];
	int i;

	if (!len || len > NAME_MAX_LEN)
		return NULL;
	memcpy(n, name, len);
	n[len] = '\0';
	i = snap__host(s, n);
	if (i >= 0)
		return &s->hosts[i];
	memcpy(s->hosts[s->nr_hosts].name, n, len + 1);
	return &s->hosts[s->nr_hosts++];
}

struct s_vm *snap__vm(const struct snap *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->nr_vms; i++)
		if (!strcmp(s->vms[i].name, name))
			return &s->vms[i];
	return NULL;
}

static struct s_vm *vm_get(struct snap *s, const char *name)
{
	struct s_vm *v = snap__vm(s, name);

	if (v || !cluster__name_ok(name))
		return v;
	v = &s->vms[s->nr_vms++];
	snprintf(v->name, sizeof(v->name), "%s", name);
	return v;
}

struct s_task *snap__task(const struct snap *s, const char *id)
{
	size_t i;

	for (i = 0; i < s->nr_tasks; i++)
		if (!strcmp(s->tasks[i].id, id))
			return &s->tasks[i];
	return NULL;
}

static void one(struct snap *s, const struct etcd_kv *kv, json_t **running_of)
{
	const char *rest, *slash;
	struct s_host *h;
	struct s_vm *v;

	if (take(kv->key, K_HOST, &rest)) {
		h = host_get(s, rest, strlen(rest));
		if (h) {
			json_decref(h->rec);
			h->rec = cluster__kv_json(kv);
		}
	} else if (take(kv->key, K_ALIVE, &rest)) {
		h = host_get(s, rest, strlen(rest));
		if (h)
			h->alive = cluster__kv_json(kv);
	} else if (take(kv->key, K_MAINT, &rest)) {
		h = host_get(s, rest, strlen(rest));
		if (h) {
			h->maint = cluster__kv_json(kv);
			h->maint_rev = kv->mod_rev;
		}
	} else if (take(kv->key, K_POWER, &rest)) {
		h = host_get(s, rest, strlen(rest));
		if (h) {
			h->power = cluster__kv_json(kv);
			h->power_rev = kv->mod_rev;
		}
	} else if (take(kv->key, K_GROUP, &rest) || take(kv->key, K_RULE, &rest)) {
		json_t *rec = cluster__kv_json(kv);

		if (rec && cluster__name_ok(rest))
			json_object_set_new(strncmp(kv->key, K_GROUP, strlen(K_GROUP)) ? s->rules
										       : s->groups,
					    rest, rec);
		else
			json_decref(rec);
	} else if (!strcmp(kv->key, K_DRS)) {
		s->drs = cluster__kv_json(kv);
	} else if (!strcmp(kv->key, K_DPM)) {
		s->dpm = cluster__kv_json(kv);
	} else if (!strcmp(kv->key, K_EMPTYING)) {
		s->emptying = cluster__kv_json(kv);
		s->emptying_rev = kv->mod_rev;
	} else if (take(kv->key, K_VM, &rest)) {
		v = vm_get(s, rest);
		if (v)
			v->spec = cluster__kv_json(kv);
	} else if (take(kv->key, K_OWNER, &rest)) {
		v = vm_get(s, rest);
		if (v) {
			snprintf(v->owner, sizeof(v->owner), "%.63s", kv->value);
			v->owner_rev = kv->mod_rev;
		}
	} else if (take(kv->key, K_VMTASK, &rest)) {
		v = vm_get(s, rest);
		if (v)
			snprintf(v->task, sizeof(v->task), "%.79s", kv->value);
	} else if (take(kv->key, K_TASK, &rest)) {
		struct s_task *t = &s->tasks[s->nr_tasks];

		t->t = cluster__kv_json(kv);
		if (!t->t || strlen(rest) >= sizeof(t->id))
			return;
		snprintf(t->id, sizeof(t->id), "%s", rest);
		t->mod_rev = kv->mod_rev;
		s->nr_tasks++;
	} else if (take(kv->key, K_SLOT_HOST, &rest)) {
		slash = strchr(rest, '/');
		h = slash ? host_get(s, rest, (size_t)(slash - rest)) : NULL;
		if (h)
			h->slots++;
	} else if (take(kv->key, K_SLOT_CLUST, &rest)) {
		s->cluster_used++;
	} else if (take(kv->key, K_RUNNING, &rest)) {
		/* Kept by key until the owners are known. */
		*running_of = cluster__kv_json(kv);
		if (*running_of)
			json_object_set_new(*running_of, "_key", json_string(rest));
	} else if (!strcmp(kv->key, K_LIMITS)) {
		json_t *l = cluster__kv_json(kv);

		s->limits.per_host = (int)cluster__int(l, "per_host", LIMIT_HOST_DEFAULT);
		s->limits.cluster = (int)cluster__int(l, "cluster", LIMIT_CLUSTER_DEFAULT);
		s->move_bandwidth = cluster__int(l, "max_bandwidth", 0);
		if (s->move_bandwidth < 0)
			s->move_bandwidth = 0;
		json_decref(l);
	} else if (!strcmp(kv->key, K_LEADER)) {
		snprintf(s->leader, sizeof(s->leader), "%.63s", kv->value);
	}
}

static void usage(struct snap *s, json_t **running, size_t nr_running)
{
	size_t i;
	int h;

	for (i = 0; i < s->nr_vms; i++) {
		struct s_vm *v = &s->vms[i];
		char key[160];
		size_t j;

		if (!v->owner[0] || !v->spec)
			continue;
		h = snap__host(s, v->owner);
		if (h >= 0) {
			s->hosts[h].mem_used += (uint64_t)cluster__int(v->spec, "memory", 0);
			s->hosts[h].cpus_used += cluster__int(v->spec, "cpus", 0);
			s->hosts[h].vms++;
		}
		snprintf(key, sizeof(key), "%s/%s", v->owner, v->name);
		for (j = 0; j < nr_running; j++)
			if (running[j] && !strcmp(cluster__str(running[j], "_key", ""), key))
				v->running = json_incref(running[j]);
	}
	/* A VM on its way to a host counts there from the start. */
	for (i = 0; i < s->nr_tasks; i++) {
		const json_t *t = s->tasks[i].t;
		const char *phase = cluster__str(t, "phase", "");
		struct s_vm *v = snap__vm(s, cluster__str(t, "vm", ""));

		if (!v || !v->spec || (strcmp(phase, "starting") && strcmp(phase, "migrating")))
			continue;
		h = snap__host(s, cluster__str(t, "dst", ""));
		if (h >= 0) {
			s->hosts[h].mem_used += (uint64_t)cluster__int(v->spec, "memory", 0);
			s->hosts[h].cpus_used += cluster__int(v->spec, "cpus", 0);
		}
	}
}

int snap__read(struct etcd *e, struct snap *s)
{
	struct etcd_range r;
	json_t **running;
	size_t i, nr_running = 0;
	int ret;

	memset(s, 0, sizeof(*s));
	s->limits.per_host = LIMIT_HOST_DEFAULT;
	s->limits.cluster = LIMIT_CLUSTER_DEFAULT;
	ret = etcd__list(e, K_ROOT, &r);
	if (ret)
		return ret;
	s->revision = r.revision;
	/* No kind of record can be more than the keys read. */
	s->hosts = calloc(r.count + 1, sizeof(*s->hosts));
	s->vms = calloc(r.count + 1, sizeof(*s->vms));
	s->tasks = calloc(r.count + 1, sizeof(*s->tasks));
	running = calloc(r.count + 1, sizeof(*running));
	s->groups = json_object();
	s->rules = json_object();
	if (!s->hosts || !s->vms || !s->tasks || !running || !s->groups || !s->rules) {
		free(running);
		etcd_range__free(&r);
		snap__free(s);
		return -ENOMEM;
	}
	for (i = 0; i < r.count; i++) {
		json_t *run = NULL;

		one(s, &r.kvs[i], &run);
		if (run)
			running[nr_running++] = run;
	}
	for (i = 0; i < s->nr_tasks; i++) {
		char key[160];

		snprintf(key, sizeof(key), K_CANCEL "%s", s->tasks[i].id);
		s->tasks[i].cancel = etcd_range__find(&r, key) != NULL;
	}
	usage(s, running, nr_running);
	for (i = 0; i < nr_running; i++)
		json_decref(running[i]);
	free(running);
	etcd_range__free(&r);
	return 0;
}

void snap__free(struct snap *s)
{
	size_t i;

	for (i = 0; s->hosts && i < s->nr_hosts; i++) {
		json_decref(s->hosts[i].rec);
		json_decref(s->hosts[i].alive);
		json_decref(s->hosts[i].maint);
		json_decref(s->hosts[i].power);
	}
	for (i = 0; s->vms && i < s->nr_vms; i++) {
		json_decref(s->vms[i].spec);
		json_decref(s->vms[i].running);
	}
	for (i = 0; s->tasks && i < s->nr_tasks; i++)
		json_decref(s->tasks[i].t);
	json_decref(s->groups);
	json_decref(s->rules);
	json_decref(s->drs);
	json_decref(s->dpm);
	json_decref(s->emptying);
	free(s->hosts);
	free(s->vms);
	free(s->tasks);
	memset(s, 0, sizeof(*s));
}

const char *snap__host_state(const struct s_host *h)
{
	const char *m = cluster__str(h->maint, "state", "");
	const char *p = cluster__str(h->power, "state", "");

	if (!strcmp(p, "standby"))
		return "standby";
	if (!strcmp(p, "powering-off"))
		return "powering off";
	if (!strcmp(p, "powering-on"))
		return "powering on";
	if (!strcmp(m, "entering"))
		return "entering maintenance";
	if (!strcmp(m, "in"))
		return "in maintenance";
	return h->alive ? "up" : "down";
}

int64_t snap__link_mbit(const struct s_host *h)
{
	return cluster__int(h->rec, "link_mbit", 0);
}

int snap__host_slots(const struct snap *s, const struct s_host *h)
{
	return sched__host_slots(s->limits.per_host, snap__link_mbit(h));
}

struct sched_host *snap__sched_hosts(const struct snap *s)
{
	struct sched_host *out = calloc(s->nr_hosts + 1, sizeof(*out));
	size_t i;

	for (i = 0; out && i < s->nr_hosts; i++) {
		const struct s_host *h = &s->hosts[i];

		out[i].name = h->name;
		/* A host without a record has never registered: nothing goes there. */
		out[i].up = h->alive && h->rec && !h->power;
		if (h->power) {
			const char *st = snap__host_state(h);

			out[i].state = strcmp(st, "standby") ? st : "in standby";
		}
		out[i].maintenance = h->maint != NULL;
		out[i].cpus = cluster__int(h->rec, "cpus", 0);
		out[i].memory = (uint64_t)cluster__int(h->rec, "memory", 0);
		out[i].cpus_used = h->cpus_used;
		out[i].mem_used = h->mem_used;
		out[i].slots_used = h->slots;
		out[i].link_mbit = snap__link_mbit(h);
	}
	return out;
}

bool *snap__allowed(const struct snap *s, const char *vm, char *why, size_t whylen)
{
	const char **names = calloc(s->nr_hosts + 1, sizeof(*names));
	bool *allowed = calloc(s->nr_hosts + 1, sizeof(*allowed));
	size_t i;

	if (!names || !allowed)
		goto none;
	for (i = 0; i < s->nr_hosts; i++)
		names[i] = s->hosts[i].name;
	if (!rules__must_hosts(s->rules, s->groups, vm, names, s->nr_hosts, allowed, why, whylen))
		goto none;
	free(names);
	return allowed;
none:
	free(names);
	free(allowed);
	return NULL;
}

int mgr__create_task(struct etcd *e, const struct s_vm *vm, const char *kind, const char *reason,
		     const char *dst, int64_t max_bandwidth, char *id, size_t idlen, char *err,
		     size_t errlen)
{
	char key[160], vmtask[160], *text;
	struct etcd_range r;
	struct etcd_txn t;
	struct timespec ts;
	json_t *task;
	bool ok = false;
	int ret;

	clock_gettime(CLOCK_REALTIME, &ts);
	/* Sortable by creation; the nanoseconds keep two of one millisecond apart. */
	snprintf(id, idlen, "t%013" PRId64 "%06ld",
		 (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, ts.tv_nsec % 1000000);
	task = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:I}", "id", id, "vm", vm->name,
			 "kind", kind, "reason", reason, "src", vm->owner, "dst", dst, "phase",
			 "queued", "attempt", 0, "created_ms", (json_int_t)cluster__now_ms());
	if (task && max_bandwidth > 0)
		json_object_set_new(task, "max_bandwidth", json_integer(max_bandwidth));
	/* Asked for by name: a retry goes there again, not where the scheduler likes. */
	if (task && *dst)
		json_object_set_new(task, "want_dst", json_string(dst));
	text = task ? json_dumps(task, JSON_COMPACT) : NULL;
	json_decref(task);
	if (!text)
		return -ENOMEM;
	snprintf(vmtask, sizeof(vmtask), K_VMTASK "%s", vm->name);
	snprintf(key, sizeof(key), K_TASK "%s", id);
	etcd_txn__init(&t);
	/* One task per VM, by the store, not by anyone's memory. */
	ret = etcd_txn__cmp(&t, vmtask, ETCD_CREATE, ETCD_EQUAL, 0);
	ret = ret ?: etcd_txn__put(&t, true, vmtask, id, 0);
	ret = ret ?: etcd_txn__put(&t, true, key, text, 0);
	ret = ret ?: etcd__txn(e, &t, &ok);
	etcd_txn__free(&t);
	free(text);
	if (ret) {
		snprintf(err, errlen, "%s", e->err);
		return ret;
	}
	if (!ok) {
		if (!etcd__get(e, vmtask, &r)) {
			snprintf(err, errlen,
				 "%s has a task already (%.80s): wait for it, or cancel it with "
				 "godwit cluster cancel %.80s",
				 vm->name, r.count ? r.kvs[0].value : "?",
				 r.count ? r.kvs[0].value : "TASK");
			etcd_range__free(&r);
		}
		return -EBUSY;
	}
	return 0;
}
