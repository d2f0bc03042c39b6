// SPDX-License-Identifier: GPL-2.0
/*
 * The managers' API, which `godwit cluster` speaks (docs/cluster.md, "Manager API"):
 * reads from a snapshot of etcd, writes tasks and records to etcd. Any manager serves
 * it, the leader or not: the leader's loop acts on what is written.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/log.h"
#include "manager.h"

#define EVENTS_MAX  500
#define HISTORY_MAX 100

static json_t *host_json(const struct snap *s, const struct s_host *h)
{
	json_t *j = json_pack(
	    "{s:s, s:s, s:I, s:I, s:I, s:I, s:i, s:i}", "name", h->name, "state",
	    snap__host_state(h), "cpus", (json_int_t)cluster__int(h->rec, "cpus", 0), "memory",
	    (json_int_t)cluster__int(h->rec, "memory", 0), "mem_used", (json_int_t)h->mem_used,
	    "cpus_used", (json_int_t)h->cpus_used, "vms", h->vms, "migrations", h->slots);

	json_object_set_new(j, "migration_slots", json_integer(snap__host_slots(s, h)));
	json_object_set_new(j, "link_mbit", json_integer(snap__link_mbit(h)));
	json_object_set_new(j, "up", json_boolean(h->alive != NULL));
	json_object_set_new(j, "url", json_string(cluster__str(h->rec, "url", "")));
	json_object_set_new(j, "vcpu_time_ns", json_integer(cluster__int(h->alive, "cpu_ns", 0)));
	json_object_set_new(j, "rss", json_integer(cluster__int(h->alive, "rss", 0)));
	if (json_object_get(h->maint, "stuck"))
		json_object_set(j, "stuck", json_object_get(h->maint, "stuck"));
	return j;
}

static json_t *vm_json(const struct snap *s, const struct s_vm *v)
{
	int h = snap__host(s, v->owner);
	const char *state;
	json_t *j;

	if (v->running)
		state = cluster__str(v->running, "state", "unknown");
	else if (h < 0 || !s->hosts[h].alive)
		state = "host down";
	else
		state = "not running";
	j = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "name", v->name, "host", v->owner, "state",
		      state, "memory", (json_int_t)cluster__int(v->spec, "memory", 0), "cpus",
		      (json_int_t)cluster__int(v->spec, "cpus", 0), "restart",
		      cluster__str(v->spec, "restart", "never"));
	json_object_set_new(j, "uptime_ms", json_integer(cluster__int(v->running, "uptime_ms", 0)));
	json_object_set_new(j, "vcpu_time_ns", json_integer(cluster__int(v->running, "cpu_ns", 0)));
	json_object_set_new(j, "task", v->task[0] ? json_string(v->task) : json_null());
	json_object_set(j, "spec", v->spec);
	return j;
}

static int list_hosts(const struct snap *s, struct api_response *resp)
{
	json_t *list = json_array();
	size_t i;

	for (i = 0; i < s->nr_hosts; i++)
		if (s->hosts[i].rec)
			json_array_append_new(list, host_json(s, &s->hosts[i]));
	resp->body = json_pack("{s:o, s:s}", "hosts", list, "leader", s->leader);
	return 0;
}

static int list_vms(const struct snap *s, struct api_response *resp)
{
	json_t *list = json_array();
	size_t i;

	for (i = 0; i < s->nr_vms; i++)
		if (s->vms[i].spec)
			json_array_append_new(list, vm_json(s, &s->vms[i]));
	resp->body = json_pack("{s:o}", "vms", list);
	return 0;
}

static int create_vm(struct mgr *m, const struct snap *s, const json_t *spec,
		     struct api_response *resp)
{
	const char *name = cluster__str(spec, "name", "");
	char err[700], why[600], key[160], okey[160], *text;
	struct sched_host *sh;
	struct etcd_txn t;
	json_t *reply = NULL;
	long status;
	bool ok = false, *allowed;
	int h, ret;

	if (cluster__spec_check(spec, err, sizeof(err))) {
		api__error(resp, 400, "%s", err);
		return 0;
	}
	if (snap__vm(s, name) && snap__vm(s, name)->spec) {
		api__error(resp, 409, "a VM named %s exists already (on %s)", name,
			   snap__vm(s, name)->owner);
		return 0;
	}
	sh = snap__sched_hosts(s);
	if (!sh)
		return -ENOMEM;
	/* Rules may name a VM before it exists: they hold from its creation. */
	allowed = snap__allowed(s, name, NULL, 0);
	h = sched__place_on(sh, s->nr_hosts, (uint64_t)cluster__int(spec, "memory", 0),
			    cluster__int(spec, "cpus", 1), -1, allowed, why, sizeof(why));
	free(allowed);
	free(sh);
	if (h < 0) {
		api__error(resp, 409, "%s", why);
		return 0;
	}
	/* The record first (the name is taken by a transaction), then the VM. */
	snprintf(key, sizeof(key), K_VM "%s", name);
	snprintf(okey, sizeof(okey), K_OWNER "%s", name);
	text = json_dumps(spec, JSON_COMPACT);
	etcd_txn__init(&t);
	ret = text ? 0 : -ENOMEM;
	ret = ret ?: etcd_txn__cmp(&t, key, ETCD_CREATE, ETCD_EQUAL, 0);
	ret = ret ?: etcd_txn__put(&t, true, key, text, 0);
	ret = ret ?: etcd_txn__put(&t, true, okey, s->hosts[h].name, 0);
	ret = ret ?: etcd__txn(&m->api, &t, &ok);
	etcd_txn__free(&t);
	free(text);
	if (ret) {
		api__error(resp, 503, "%s", m->api.err);
		return 0;
	}
	if (!ok) {
		api__error(resp, 409, "a VM named %s exists already", name);
		return 0;
	}
	ret = mgr__agent_call(m, &s->hosts[h], "POST", "/vms", spec, 60, &status, &reply, err,
			      sizeof(err));
	if (ret || status != 201) {
		etcd__delete(&m->api, key, false);
		etcd__delete(&m->api, okey, false);
		api__error(resp, 502, "%s could not start %s: %s", s->hosts[h].name, name,
			   ret ? err : cluster__str(reply, "error", "?"));
		json_decref(reply);
		return 0;
	}
	json_decref(reply);
	cluster__event(&m->api, "%s created on %s", name, s->hosts[h].name);
	resp->status = 201;
	resp->body = json_pack("{s:s, s:s}", "name", name, "host", s->hosts[h].name);
	return 0;
}

static int delete_vm(struct mgr *m, const struct snap *s, const struct s_vm *v,
		     struct api_response *resp)
{
	char err[600], path[160], key[160];
	int h = snap__host(s, v->owner);
	json_t *reply = NULL;
	long status = 0;

	if (v->task[0]) {
		api__error(resp, 409,
			   "%s has task %s under way: cancel it first (godwit cluster "
			   "cancel %s)",
			   v->name, v->task, v->task);
		return 0;
	}
	if (h >= 0 && s->hosts[h].alive) {
		snprintf(path, sizeof(path), "/vms/%s", v->name);
		if (mgr__agent_call(m, &s->hosts[h], "DELETE", path, NULL, 30, &status, &reply, err,
				    sizeof(err)) ||
		    (status != 204 && status != 404)) {
			api__error(resp, 502, "%s could not stop %s: %s", v->owner, v->name,
				   status ? cluster__str(reply, "error", "?") : err);
			json_decref(reply);
			return 0;
		}
		json_decref(reply);
	}
	snprintf(key, sizeof(key), K_VM "%s", v->name);
	etcd__delete(&m->api, key, false);
	snprintf(key, sizeof(key), K_OWNER "%s", v->name);
	etcd__delete(&m->api, key, false);
	cluster__event(&m->api, "%s deleted (it ran on %s)", v->name, v->owner);
	resp->status = 204;
	return 0;
}

static int migrate_vm(struct mgr *m, const struct snap *s, const struct s_vm *v, const json_t *body,
		      struct api_response *resp)
{
	const char *to = cluster__str(body, "to", "");
	int64_t bw = cluster__int(body, "max_bandwidth", 0);
	char id[80], err[600], why[600];
	struct sched_host *sh;
	int dst = -1, src = snap__host(s, v->owner);
	bool *allowed;
	int ret;

	if (*to) {
		dst = snap__host(s, to);
		if (dst < 0 || !s->hosts[dst].rec) {
			api__error(resp, 404,
				   "no host %s in the cluster (godwit cluster hosts lists "
				   "them)",
				   to);
			return 0;
		}
		if (!strcmp(to, v->owner)) {
			api__error(resp, 409, "%s already runs on %s", v->name, to);
			return 0;
		}
		if (s->hosts[dst].maint || s->hosts[dst].power || !s->hosts[dst].alive) {
			api__error(resp, 409, "%s is %s: choose another host", to,
				   snap__host_state(&s->hosts[dst]));
			return 0;
		}
	}
	allowed = snap__allowed(s, v->name, why, sizeof(why));
	if (allowed && dst >= 0 && !allowed[dst]) {
		api__error(resp, 409, "%s cannot move to %s: %s", v->name, to, why);
		free(allowed);
		return 0;
	}
	if (src < 0 || !s->hosts[src].alive) {
		api__error(resp, 409,
			   "%s's host %s is down: it is restarted elsewhere if its "
			   "disks allow (docs/cluster.md, \"A host that dies\")",
			   v->name, v->owner);
		return 0;
	}
	sh = snap__sched_hosts(s);
	if (!sh) {
		free(allowed);
		return -ENOMEM;
	}
	if (dst >= 0) {
		/* Only this host counts: the VM must fit on it. */
		struct sched_host one = sh[dst];

		ret = sched__place(&one, 1, (uint64_t)cluster__int(v->spec, "memory", 0),
				   cluster__int(v->spec, "cpus", 1), -1, why, sizeof(why));
	} else {
		ret = sched__place_on(sh, s->nr_hosts, (uint64_t)cluster__int(v->spec, "memory", 0),
				      cluster__int(v->spec, "cpus", 1), src, allowed, why,
				      sizeof(why));
	}
	free(allowed);
	free(sh);
	if (ret < 0) {
		api__error(resp, 409, "%s cannot move: %s", v->name, why);
		return 0;
	}
	if (bw < 0) {
		api__error(resp, 400, "max_bandwidth: bytes per second, 0 for no limit");
		return 0;
	}
	ret = mgr__create_task(&m->api, v, "migrate", "user", to, bw, id, sizeof(id), err,
			       sizeof(err));
	if (ret == -EBUSY) {
		api__error(resp, 409, "%s", err);
		return 0;
	}
	if (ret) {
		api__error(resp, 503, "%s", err);
		return 0;
	}
	resp->status = 202;
	resp->body = json_pack("{s:s, s:s, s:s}", "task", id, "vm", v->name, "to", to);
	return 0;
}

static json_t *history(struct etcd *e, size_t keep)
{
	struct etcd_range r;
	json_t *list = json_array();
	size_t i;

	if (etcd__list(e, K_HISTORY, &r))
		return list;
	for (i = r.count > keep ? r.count - keep : 0; i < r.count; i++) {
		json_t *t = cluster__kv_json(&r.kvs[i]);

		if (t)
			json_array_append_new(list, t);
	}
	etcd_range__free(&r);
	return list;
}

static int list_tasks(struct mgr *m, const struct snap *s, struct api_response *resp)
{
	json_t *list = json_array();
	size_t i;

	for (i = 0; i < s->nr_tasks; i++) {
		json_t *t = json_deep_copy(s->tasks[i].t);

		json_object_set_new(t, "cancel_asked", json_boolean(s->tasks[i].cancel));
		json_array_append_new(list, t);
	}
	resp->body = json_pack("{s:o, s:o, s:{s:i, s:i, s:I}, s:i}", "tasks", list, "history",
			       history(&m->api, HISTORY_MAX), "limits", "per_host",
			       s->limits.per_host, "cluster", s->limits.cluster, "max_bandwidth",
			       (json_int_t)s->move_bandwidth, "in_flight", s->cluster_used);
	return 0;
}

static int get_task(struct mgr *m, const struct snap *s, const char *id, struct api_response *resp)
{
	const struct s_task *t = snap__task(s, id);
	struct etcd_range r;
	char key[160];

	if (t) {
		resp->body = json_deep_copy(t->t);
		json_object_set_new(resp->body, "cancel_asked", json_boolean(t->cancel));
		return 0;
	}
	snprintf(key, sizeof(key), K_HISTORY "%s", id);
	if (!etcd__get(&m->api, key, &r) && r.count)
		resp->body = cluster__kv_json(&r.kvs[0]);
	else
		api__error(resp, 404, "no task %s (godwit cluster tasks lists them)", id);
	etcd_range__free(&r);
	return 0;
}

static int cancel_task(struct mgr *m, const struct snap *s, const char *id,
		       struct api_response *resp)
{
	char key[160];

	if (!snap__task(s, id)) {
		api__error(resp, 404, "no task %s under way (godwit cluster tasks lists them)", id);
		return 0;
	}
	snprintf(key, sizeof(key), K_CANCEL "%s", id);
	if (etcd__put(&m->api, key, "1", 0)) {
		api__error(resp, 503, "%s", m->api.err);
		return 0;
	}
	resp->status = 202;
	resp->body = json_pack("{s:s}", "task", id);
	return 0;
}

static int events(struct mgr *m, struct api_response *resp)
{
	struct etcd_range r;
	json_t *list = json_array();
	size_t i;

	if (etcd__list(&m->api, K_EVENT, &r)) {
		api__error(resp, 503, "%s", m->api.err);
		json_decref(list);
		return 0;
	}
	for (i = r.count > EVENTS_MAX ? r.count - EVENTS_MAX : 0; i < r.count; i++) {
		json_t *e = cluster__kv_json(&r.kvs[i]);

		if (e)
			json_array_append_new(list, e);
	}
	etcd_range__free(&r);
	resp->body = json_pack("{s:o}", "events", list);
	return 0;
}

static int maintenance(struct mgr *m, const struct snap *s, const char *host, const json_t *body,
		       struct api_response *resp)
{
	const char *action = cluster__str(body, "action", "");
	int h = snap__host(s, host);
	char key[160];
	json_t *rec;
	size_t i;

	if (h < 0 || !s->hosts[h].rec) {
		api__error(resp, 404, "no host %s in the cluster (godwit cluster hosts lists them)",
			   host);
		return 0;
	}
	snprintf(key, sizeof(key), K_MAINT "%s", host);
	if (!strcmp(action, "enter")) {
		/* Entering again forgets the VMs that could not leave: they are tried again. */
		rec = json_pack("{s:s, s:I}", "state", "entering", "since_ms",
				(json_int_t)cluster__now_ms());
		if (cluster__put_json(&m->api, key, rec, 0)) {
			json_decref(rec);
			api__error(resp, 503, "%s", m->api.err);
			return 0;
		}
		json_decref(rec);
		cluster__event(&m->api, "%s is entering maintenance", host);
	} else if (!strcmp(action, "exit")) {
		if (etcd__delete(&m->api, key, false)) {
			api__error(resp, 503, "%s", m->api.err);
			return 0;
		}
		/* Leaving maintenance cancels its evacuation's moves that have not started. */
		for (i = 0; i < s->nr_tasks; i++) {
			const json_t *t = s->tasks[i].t;

			if (!strcmp(cluster__str(t, "reason", ""), "maintenance") &&
			    !strcmp(cluster__str(t, "src", ""), host) &&
			    !strcmp(cluster__str(t, "phase", ""), "queued")) {
				snprintf(key, sizeof(key), K_CANCEL "%s", s->tasks[i].id);
				etcd__put(&m->api, key, "1", 0);
			}
		}
		cluster__event(&m->api, "%s left maintenance", host);
	} else {
		api__error(resp, 400, "action is \"enter\" or \"exit\"");
		return 0;
	}
	resp->status = 202;
	resp->body = json_pack("{s:s, s:s}", "host", host, "action", action);
	return 0;
}

static int limits(struct mgr *m, const struct snap *s, const struct api_request *req,
		  struct api_response *resp)
{
	int64_t ph = cluster__int(req->body, "per_host", s->limits.per_host);
	int64_t cl = cluster__int(req->body, "cluster", s->limits.cluster);
	int64_t bw = cluster__int(req->body, "max_bandwidth", s->move_bandwidth);
	static const char *const fields[] = {"per_host", "cluster", "max_bandwidth"};
	json_t *rec;
	size_t i;

	if (!strcmp(req->method, "GET")) {
		resp->body =
		    json_pack("{s:i, s:i, s:I}", "per_host", s->limits.per_host, "cluster",
			      s->limits.cluster, "max_bandwidth", (json_int_t)s->move_bandwidth);
		return 0;
	}
	for (i = 0; i < 3; i++) {
		if (json_object_get(req->body, fields[i]) &&
		    !json_is_integer(json_object_get(req->body, fields[i]))) {
			api__error(resp, 400, "%s: a whole number", fields[i]);
			return 0;
		}
	}
	if (ph < 1 || ph > LIMIT_MAX || cl < 1 || cl > LIMIT_MAX) {
		api__error(resp, 400, "per_host and cluster: 1..%d", LIMIT_MAX);
		return 0;
	}
	if (bw < 0) {
		api__error(resp, 400, "max_bandwidth: bytes per second, 0 for no limit");
		return 0;
	}
	rec = json_pack("{s:I, s:I, s:I}", "per_host", (json_int_t)ph, "cluster", (json_int_t)cl,
			"max_bandwidth", (json_int_t)bw);
	if (cluster__put_json(&m->api, K_LIMITS, rec, 0)) {
		json_decref(rec);
		api__error(resp, 503, "%s", m->api.err);
		return 0;
	}
	resp->body = rec;
	return 0;
}

/* "/vms/NAME/verb" into its name and verb ("" when none). */
static bool split(const char *path, const char *prefix, char *name, size_t len, const char **verb)
{
	size_t n = strlen(prefix), k;
	const char *rest, *slash;

	if (strncmp(path, prefix, n))
		return false;
	rest = path + n;
	slash = strchr(rest, '/');
	k = slash ? (size_t)(slash - rest) : strlen(rest);
	if (!k || k >= len)
		return false;
	memcpy(name, rest, k);
	name[k] = '\0';
	*verb = slash ? slash + 1 : "";
	return true;
}

static int route(struct mgr *m, const struct snap *s, const struct api_request *req,
		 struct api_response *resp)
{
	bool get = !strcmp(req->method, "GET"), post = !strcmp(req->method, "POST");
	char name[80];
	const char *verb;
	struct s_vm *v;
	int ret;

	ret = mgr__config_route(m, s, req, resp);
	if (ret <= 0)
		return ret;
	if (!strcmp(req->path, "/hosts") && get)
		return list_hosts(s, resp);
	if (!strcmp(req->path, "/vms") && get)
		return list_vms(s, resp);
	if (!strcmp(req->path, "/vms") && post)
		return create_vm(m, s, req->body, resp);
	if (!strcmp(req->path, "/tasks") && get)
		return list_tasks(m, s, resp);
	if (!strcmp(req->path, "/events") && get)
		return events(m, resp);
	if (!strcmp(req->path, "/limits"))
		return limits(m, s, req, resp);
	if (split(req->path, "/tasks/", name, sizeof(name), &verb)) {
		if (!*verb && get)
			return get_task(m, s, name, resp);
		if (!strcmp(verb, "cancel") && post)
			return cancel_task(m, s, name, resp);
	}
	if (split(req->path, "/hosts/", name, sizeof(name), &verb) &&
	    !strcmp(verb, "maintenance") && post)
		return maintenance(m, s, name, req->body, resp);
	if (split(req->path, "/vms/", name, sizeof(name), &verb)) {
		v = snap__vm(s, name);
		if (!v || !v->spec) {
			api__error(resp, 404,
				   "no VM %s in the cluster (godwit cluster vms lists them)", name);
			return 0;
		}
		if (!*verb && get) {
			resp->body = vm_json(s, v);
			return 0;
		}
		if (!*verb && !strcmp(req->method, "DELETE"))
			return delete_vm(m, s, v, resp);
		if (!strcmp(verb, "migrate") && post)
			return migrate_vm(m, s, v, req->body, resp);
	}
	api__error(resp, 404, "no such resource: %s %s", req->method, req->path);
	return 0;
}

int mgr__handle(void *opaque, const struct api_request *req, struct api_response *resp)
{
	struct mgr *m = opaque;
	struct snap s;
	int ret;

	if (snap__read(&m->api, &s)) {
		api__error(resp, 503, "cannot read the cluster's state: %s", m->api.err);
		return 0;
	}
	ret = route(m, &s, req, resp);
	snap__free(&s);
	return ret;
}
