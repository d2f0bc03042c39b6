// SPDX-License-Identifier: GPL-2.0
/*
 * The managers' API for what the cluster is told rather than what it runs: host groups,
 * placement rules, the balancer's (DRS) and power manager's (DPM) settings, and a
 * host's standby (docs/cluster.md, "Rules", "Balancing and power settings", "Standby").
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/cluster/rules.h"
#include "godwit/log.h"
#include "manager.h"

static int put_new(struct mgr *m, const char *key, const json_t *rec, bool *created)
{
	char *text = json_dumps(rec, JSON_COMPACT);
	struct etcd_txn t;
	int ret;

	if (!text)
		return -ENOMEM;
	etcd_txn__init(&t);
	ret = etcd_txn__cmp(&t, key, ETCD_CREATE, ETCD_EQUAL, 0);
	ret = ret ?: etcd_txn__put(&t, true, key, text, 0);
	ret = ret ?: etcd__txn(&m->api, &t, created);
	etcd_txn__free(&t);
	free(text);
	return ret;
}

static int list_of(const json_t *obj, const char *field, struct api_response *resp)
{
	json_t *a = json_array();
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v) json_array_append(a, v);
	resp->body = json_pack("{s:o}", field, a);
	return 0;
}

/*
 * Creates prefix+name with rec (taken) unless it exists: 201 with rec, else the error.
 * what: "group" or "rule", as users name it.
 */
static int create(struct mgr *m, const char *prefix, const char *name, json_t *rec,
		  const char *what, struct api_response *resp)
{
	char key[160];
	bool created = false;
	int ret;

	snprintf(key, sizeof(key), "%s%s", prefix, name);
	ret = put_new(m, key, rec, &created);
	if (ret || !created) {
		json_decref(rec);
		if (ret)
			api__error(resp, 503, "%s", m->api.err);
		else
			api__error(resp, 409,
				   "a %s %s exists already (godwit cluster %s rm %s first)", what,
				   name, what, name);
		return 0;
	}
	cluster__event(&m->api, "%s %s added", what, name);
	resp->status = 201;
	resp->body = rec;
	return 0;
}

/* Removes prefix+name: 204, or the error. */
static int remove_key(struct mgr *m, const char *prefix, const char *name, const char *what,
		      struct api_response *resp)
{
	char key[160];

	snprintf(key, sizeof(key), "%s%s", prefix, name);
	if (etcd__delete(&m->api, key, false)) {
		api__error(resp, 503, "%s", m->api.err);
		return 0;
	}
	cluster__event(&m->api, "%s %s removed", what, name);
	resp->status = 204;
	return 0;
}

/* ---- host groups ---- */

static int add_group(struct mgr *m, const struct snap *s, const json_t *body,
		     struct api_response *resp)
{
	const char *name = cluster__str(body, "name", "");
	char err[300];
	const json_t *h;
	json_t *rec;
	size_t i;

	if (rules__check_group(body, err, sizeof(err))) {
		api__error(resp, 400, "%s", err);
		return 0;
	}
	json_array_foreach(json_object_get(body, "hosts"), i, h)
	{
		int hi = snap__host(s, json_string_value(h));

		if (hi < 0 || !s->hosts[hi].rec) {
			api__error(resp, 404,
				   "no host %s in the cluster (godwit cluster hosts lists them)",
				   json_string_value(h));
			return 0;
		}
	}
	rec = json_pack("{s:s, s:O}", "name", name, "hosts", json_object_get(body, "hosts"));
	return create(m, K_GROUP, name, rec, "group", resp);
}

static int rm_group(struct mgr *m, const struct snap *s, const char *name,
		    struct api_response *resp)
{
	const char *user = rules__group_user(s->rules, name);

	if (!json_object_get(s->groups, name)) {
		api__error(resp, 404, "no host group %s (godwit cluster group list)", name);
		return 0;
	}
	if (user) {
		api__error(resp, 409,
			   "rule %s uses group %s: remove it first (godwit cluster rule rm %s)",
			   user, name, user);
		return 0;
	}
	return remove_key(m, K_GROUP, name, "group", resp);
}

/* ---- rules ---- */

static int add_rule(struct mgr *m, const struct snap *s, const json_t *body,
		    struct api_response *resp)
{
	const char *name = cluster__str(body, "name", "");
	char err[400];
	const json_t *v;
	const struct s_vm *vm;
	json_t *rec;
	size_t i;
	int ret;

	ret = rules__check(body, s->groups, s->rules, err, sizeof(err));
	if (ret) {
		api__error(resp, ret == -EEXIST ? 409 : ret == -ENOENT ? 404 : 400, "%s", err);
		return 0;
	}
	json_array_foreach(json_object_get(body, "vms"), i, v)
	{
		vm = snap__vm(s, json_string_value(v));
		if (!vm || !vm->spec) {
			api__error(resp, 404,
				   "no VM %s in the cluster (godwit cluster vms lists them)",
				   json_string_value(v));
			return 0;
		}
	}
	/* What is stored is what was checked, nothing more. */
	rec = json_pack("{s:s, s:s, s:O}", "name", name, "kind", cluster__str(body, "kind", ""),
			"vms", json_object_get(body, "vms"));
	if (!strcmp(cluster__str(body, "kind", ""), "host")) {
		json_object_set_new(rec, "group", json_string(cluster__str(body, "group", "")));
		json_object_set(rec, "must", json_object_get(body, "must"));
		json_object_set(rec, "not", json_object_get(body, "not"));
	}
	return create(m, K_RULE, name, rec, "rule", resp);
}

static int rm_rule(struct mgr *m, const struct snap *s, const char *name, struct api_response *resp)
{
	if (!json_object_get(s->rules, name)) {
		api__error(resp, 404, "no rule %s (godwit cluster rule list)", name);
		return 0;
	}
	return remove_key(m, K_RULE, name, "rule", resp);
}

/* ---- DRS and DPM settings ---- */

static bool automation_ok(const char *a)
{
	return !strcmp(a, "manual") || !strcmp(a, "automatic") || !strcmp(a, "off");
}

/* The stored settings with the defaults filled in. */
json_t *mgr__drs_settings(const struct snap *s)
{
	json_t *vms = json_object_get(s->drs, "vms");

	return json_pack("{s:s, s:I, s:I, s:o}", "automation",
			 cluster__str(s->drs, "automation", DRS_AUTOMATION_DEFAULT), "threshold",
			 (json_int_t)cluster__int(s->drs, "threshold", DRS_THRESHOLD_DEFAULT),
			 "interval",
			 (json_int_t)cluster__int(s->drs, "interval", DRS_INTERVAL_DEFAULT), "vms",
			 json_is_object(vms) ? json_deep_copy(vms) : json_object());
}

json_t *mgr__dpm_settings(const struct snap *s)
{
	return json_pack("{s:b, s:I, s:I, s:I, s:I}", "enabled",
			 json_is_true(json_object_get(s->dpm, "enabled")), "target",
			 (json_int_t)cluster__int(s->dpm, "target", DPM_TARGET_DEFAULT), "band",
			 (json_int_t)cluster__int(s->dpm, "band", DPM_BAND_DEFAULT), "window",
			 (json_int_t)cluster__int(s->dpm, "window", DPM_WINDOW_DEFAULT),
			 "min_hosts",
			 (json_int_t)cluster__int(s->dpm, "min_hosts", DPM_MIN_HOSTS_DEFAULT));
}

/* An integer field of body in lo..hi into rec; false with a 400 if it is not one. */
static bool take_int(json_t *rec, const json_t *body, const char *field, int64_t lo, int64_t hi,
		     struct api_response *resp)
{
	const json_t *v = json_object_get(body, field);

	if (!v)
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
		api__error(resp, 400, "%s: %" PRId64 "..%" PRId64, field, lo, hi);
		return false;
	}
	json_object_set(rec, field, (json_t *)v);
	return true;
}

static int put_settings(struct mgr *m, const char *key, json_t *rec, const char *what,
			struct api_response *resp)
{
	if (cluster__put_json(&m->api, key, rec, 0)) {
		json_decref(rec);
		api__error(resp, 503, "%s", m->api.err);
		return 0;
	}
	cluster__event(&m->api, "%s settings changed", what);
	resp->body = rec;
	return 0;
}

static int drs(struct mgr *m, const struct snap *s, const struct api_request *req,
	       struct api_response *resp)
{
	const char *vm = cluster__str(req->body, "vm", NULL);
	const char *a = cluster__str(req->body, "automation", NULL);
	json_t *rec;

	if (!strcmp(req->method, "GET")) {
		resp->body = mgr__drs_settings(s);
		return 0;
	}
	rec = mgr__drs_settings(s);
	if (vm) {
		const struct s_vm *v = snap__vm(s, vm);

		if (!v || !v->spec) {
			json_decref(rec);
			api__error(resp, 404,
				   "no VM %s in the cluster (godwit cluster vms lists them)", vm);
			return 0;
		}
		if (!a || (strcmp(a, "default") && !automation_ok(a))) {
			json_decref(rec);
			api__error(resp, 400,
				   "a VM's automation is manual, automatic, off or default (the "
				   "cluster's)");
			return 0;
		}
		if (!strcmp(a, "default"))
			json_object_del(json_object_get(rec, "vms"), vm);
		else
			json_object_set_new(json_object_get(rec, "vms"), vm, json_string(a));
	} else if (a && !automation_ok(a)) {
		json_decref(rec);
		api__error(resp, 400, "automation is manual, automatic or off");
		return 0;
	} else if (a) {
		json_object_set_new(rec, "automation", json_string(a));
	}
	if (!take_int(rec, req->body, "threshold", 1, 5, resp) ||
	    !take_int(rec, req->body, "interval", 5, 86400, resp)) {
		json_decref(rec);
		return 0;
	}
	return put_settings(m, K_DRS, rec, "DRS", resp);
}

static int dpm(struct mgr *m, const struct snap *s, const struct api_request *req,
	       struct api_response *resp)
{
	const json_t *en = json_object_get(req->body, "enabled");
	json_t *rec;

	if (!strcmp(req->method, "GET")) {
		resp->body = mgr__dpm_settings(s);
		return 0;
	}
	rec = mgr__dpm_settings(s);
	if (en && !json_is_boolean(en)) {
		json_decref(rec);
		api__error(resp, 400, "enabled is true or false");
		return 0;
	}
	if (en)
		json_object_set(rec, "enabled", (json_t *)en);
	if (!take_int(rec, req->body, "target", 1, 100, resp) ||
	    !take_int(rec, req->body, "band", 0, 100, resp) ||
	    !take_int(rec, req->body, "window", 10, 86400, resp) ||
	    !take_int(rec, req->body, "min_hosts", 1, 100000, resp)) {
		json_decref(rec);
		return 0;
	}
	if (cluster__int(rec, "target", 0) - cluster__int(rec, "band", 0) < 0 ||
	    cluster__int(rec, "target", 0) + cluster__int(rec, "band", 0) > 100) {
		json_decref(rec);
		api__error(resp, 400, "target - band .. target + band must lie within 0..100 %%");
		return 0;
	}
	return put_settings(m, K_DPM, rec, "DPM", resp);
}

/* ---- standby ---- */

/* VMs the host owns or is receiving. */
static int host_vms(const struct snap *s, const struct s_host *h)
{
	int n = h->vms;
	size_t i;

	for (i = 0; i < s->nr_tasks; i++)
		if (!strcmp(cluster__str(s->tasks[i].t, "dst", ""), h->name) &&
		    strcmp(cluster__str(s->tasks[i].t, "phase", ""), "queued"))
			n++;
	return n;
}

static int standby(struct mgr *m, const struct snap *s, const struct s_host *h,
		   struct api_response *resp)
{
	char key[160];
	json_t *rec;
	bool created = false;
	int ret, n = host_vms(s, h);

	if (!m->power_off[0]) {
		api__error(resp, 409,
			   "this manager has no --power-off-cmd: start the managers with the "
			   "commands that power hosts off and on");
		return 0;
	}
	if (h->power) {
		api__error(resp, 409, "%s is %s already", h->name, snap__host_state(h));
		return 0;
	}
	if (!h->alive) {
		api__error(resp, 409, "%s is down: only a host that is up goes to standby",
			   h->name);
		return 0;
	}
	if (n) {
		api__error(resp, 409,
			   "%s runs %d VMs: empty it first (godwit cluster maintenance enter %s "
			   "--wait)",
			   h->name, n, h->name);
		return 0;
	}
	rec = json_pack("{s:s, s:I}", "state", "powering-off", "since_ms",
			(json_int_t)cluster__now_ms());
	snprintf(key, sizeof(key), K_POWER "%s", h->name);
	ret = put_new(m, key, rec, &created);
	json_decref(rec);
	if (ret || !created) {
		api__error(resp, ret ? 503 : 409, "%s",
			   ret ? m->api.err : "changed meanwhile: try again");
		return 0;
	}
	cluster__event(&m->api, "%s is going to standby", h->name);
	return 0;
}

static int wake(struct mgr *m, const struct s_host *h, struct api_response *resp)
{
	const char *state = cluster__str(h->power, "state", "");
	char key[160], *text;
	struct etcd_txn t;
	json_t *rec;
	bool ok = false;
	int ret;

	if (!m->power_on[0]) {
		api__error(resp, 409,
			   "this manager has no --power-on-cmd: start the managers with the "
			   "commands that power hosts off and on");
		return 0;
	}
	/* A power-on that ran and did not bring the host back may be asked again. */
	if (strcmp(state, "standby") &&
	    (strcmp(state, "powering-on") || json_object_get(h->power, "running"))) {
		api__error(resp, 409, "%s is %s: only a host in standby wakes", h->name,
			   snap__host_state(h));
		return 0;
	}
	rec = json_pack("{s:s, s:I}", "state", "powering-on", "since_ms",
			(json_int_t)cluster__now_ms());
	text = json_dumps(rec, JSON_COMPACT);
	json_decref(rec);
	snprintf(key, sizeof(key), K_POWER "%s", h->name);
	etcd_txn__init(&t);
	ret = text ? 0 : -ENOMEM;
	ret = ret ?: etcd_txn__cmp(&t, key, ETCD_MOD, ETCD_EQUAL, h->power_rev);
	ret = ret ?: etcd_txn__put(&t, true, key, text, 0);
	ret = ret ?: etcd__txn(&m->api, &t, &ok);
	etcd_txn__free(&t);
	free(text);
	if (ret || !ok) {
		api__error(resp, ret ? 503 : 409, "%s",
			   ret ? m->api.err : "changed meanwhile: try again");
		return 0;
	}
	cluster__event(&m->api, "%s is waking from standby", h->name);
	return 0;
}

static int power(struct mgr *m, const struct snap *s, const char *host, const json_t *body,
		 struct api_response *resp)
{
	const char *action = cluster__str(body, "action", "");
	int h = snap__host(s, host);

	if (h < 0 || !s->hosts[h].rec) {
		api__error(resp, 404, "no host %s in the cluster (godwit cluster hosts lists them)",
			   host);
		return 0;
	}
	if (!strcmp(action, "standby"))
		standby(m, s, &s->hosts[h], resp);
	else if (!strcmp(action, "wake"))
		wake(m, &s->hosts[h], resp);
	else
		api__error(resp, 400, "action is \"standby\" or \"wake\"");
	if (!resp->body) {
		resp->status = 202;
		resp->body = json_pack("{s:s, s:s}", "host", host, "action", action);
	}
	return 0;
}

int mgr__config_route(struct mgr *m, const struct snap *s, const struct api_request *req,
		      struct api_response *resp)
{
	bool get = !strcmp(req->method, "GET"), post = !strcmp(req->method, "POST");
	bool del = !strcmp(req->method, "DELETE"), put = !strcmp(req->method, "PUT");
	const char *p = req->path;

	if (!strcmp(p, "/groups") && get)
		return list_of(s->groups, "groups", resp);
	if (!strcmp(p, "/groups") && post)
		return add_group(m, s, req->body, resp);
	if (!strncmp(p, "/groups/", 8) && del)
		return rm_group(m, s, p + 8, resp);
	if (!strcmp(p, "/rules") && get)
		return list_of(s->rules, "rules", resp);
	if (!strcmp(p, "/rules") && post)
		return add_rule(m, s, req->body, resp);
	if (!strncmp(p, "/rules/", 7) && del)
		return rm_rule(m, s, p + 7, resp);
	if (!strncmp(p, "/drs/", 5))
		return mgr__drs_route(m, s, req, resp);
	if (!strcmp(p, "/drs") && (get || put))
		return drs(m, s, req, resp);
	if (!strcmp(p, "/dpm") && (get || put))
		return dpm(m, s, req, resp);
	if (!strncmp(p, "/hosts/", 7) && post && strlen(p) > 13 &&
	    !strcmp(p + strlen(p) - 6, "/power")) {
		char host[NAME_MAX_LEN + 1];
		size_t n = strlen(p) - 13;

		if (n > NAME_MAX_LEN)
			return 1;
		memcpy(host, p + 7, n);
		host[n] = '\0';
		return power(m, s, host, req->body, resp);
	}
	return 1;
}
