// SPDX-License-Identifier: GPL-2.0
/*
 * The leader's balancing pass (docs/drs.md, docs/cluster.md "Balancing"): every
 * `drs config --interval` seconds it fills the scheduler's model from the snapshot (hosts,
 * VMs, the load the agents publish, groups, rules, maintenance and standby), runs
 * drs__recommend, queues the moves it may apply without a user as ordinary tasks and keeps
 * the others in etcd as recommendations, which `godwit cluster drs apply` turns into tasks.
 * A pass replaces the last one's recommendations whole.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/cluster/drs.h"
#include "godwit/log.h"
#include "manager.h"

/* The model of one snapshot: model host i is snapshot host i; VMs only those placed. */
struct drs_build {
	struct drs_model m;
	struct drs_host *hosts;
	struct drs_vm *vms;
	const struct s_vm **svm; /* per model VM: the snapshot's */
	struct drs_rule *rules;
	int *members;
	const char *groups[DRS_MAX_GROUPS];
	size_t nr_groups;
};

static int group_bit(const struct drs_build *b, const char *name)
{
	size_t g;

	for (g = 0; g < b->nr_groups; g++)
		if (!strcmp(b->groups[g], name))
			return (int)g;
	return -1;
}

static int vm_index(const struct drs_build *b, const char *name)
{
	size_t i;

	for (i = 0; name && i < b->m.nr_vms; i++)
		if (!strcmp(b->vms[i].name, name))
			return (int)i;
	return -1;
}

static void build_hosts(struct drs_build *b, const struct snap *s, const char *emptied)
{
	const char *gname;
	json_t *g, *h;
	size_t i, j;

	json_object_foreach(s->groups, gname, g)
	{
		if (b->nr_groups == DRS_MAX_GROUPS)
			break;
		b->groups[b->nr_groups] = gname;
		json_array_foreach(json_object_get(g, "hosts"), j, h)
		{
			int hi = snap__host(s, json_string_value(h) ?: "");

			if (hi >= 0)
				b->hosts[hi].groups |= 1ULL << b->nr_groups;
		}
		b->nr_groups++;
	}
	for (i = 0; i < s->nr_hosts; i++) {
		const struct s_host *sh = &s->hosts[i];
		const json_t *load = json_object_get(sh->alive, "load");
		double cores = json_number_value(json_object_get(load, "cores"));
		struct drs_host *dh = &b->hosts[i];

		dh->name = sh->name;
		dh->up = sh->alive && sh->rec;
		/* A host DPM empties receives nothing, as one entering maintenance. */
		dh->maintenance = sh->maint != NULL || !strcmp(sh->name, emptied);
		dh->standby = sh->power != NULL;
		dh->cpus = cluster__int(sh->rec, "cpus", 0);
		dh->memory = (uint64_t)cluster__int(sh->rec, "memory", 0);
		dh->cpu_capacity = cores >= 1 ? cores : 1;
		/*
		 * The host's own CPU counts in its load; its own memory does not in its room:
		 * --memory is already what it offers to VMs, as placement and the queue count.
		 */
		dh->cpu_own = fmax(0, json_number_value(json_object_get(load, "host_cpu")));
		dh->mem_own = 0;
		dh->slots = snap__host_slots(s, sh);
	}
}

/* {VM: when its last move ended} from the ended tasks, read once per pass. */
static json_t *last_moves(const struct etcd_range *hist)
{
	json_t *ended = json_object();
	size_t i;

	for (i = 0; ended && hist && i < hist->count; i++) {
		json_t *t = cluster__kv_json(&hist->kvs[i]);
		const char *vm = cluster__str(t, "vm", "");

		if (t && *vm && !strcmp(cluster__str(t, "kind", ""), "migrate") &&
		    !strcmp(cluster__str(t, "phase", ""), "done") &&
		    cluster__int(t, "ended_ms", -1) > cluster__int(ended, vm, -1))
			json_object_set_new(ended, vm,
					    json_integer(cluster__int(t, "ended_ms", -1)));
		json_decref(t);
	}
	return ended;
}

static enum drs_automation automation_of(const char *a)
{
	if (!a)
		return DRS_AUTO_CLUSTER;
	if (!strcmp(a, "manual"))
		return DRS_AUTO_MANUAL;
	if (!strcmp(a, "automatic"))
		return DRS_AUTO_AUTOMATIC;
	return DRS_AUTO_DISABLED;
}

/* Where a VM will be: a move under way or queued to a named host counts there. */
static int vm_host(const struct snap *s, const struct s_vm *v)
{
	const struct s_task *t = v->task[0] ? snap__task(s, v->task) : NULL;
	const char *dst = cluster__str(t ? t->t : NULL, "dst", "");

	if (t && *dst && !strcmp(cluster__str(t->t, "kind", ""), "migrate") &&
	    snap__host(s, dst) >= 0)
		return snap__host(s, dst);
	return snap__host(s, v->owner);
}

static void build_vms(struct drs_build *b, const struct snap *s, const json_t *settings,
		      const struct etcd_range *hist)
{
	const json_t *per_vm = json_object_get(settings, "vms");
	json_t *ended = last_moves(hist);
	int64_t now = cluster__now_ms();
	size_t i;

	for (i = 0; i < s->nr_vms; i++) {
		const struct s_vm *v = &s->vms[i];
		const json_t *load = json_object_get(v->running, "load");
		struct drs_vm *d = &b->vms[b->m.nr_vms];
		int h = vm_host(s, v);
		uint64_t rss;

		if (!v->spec || h < 0)
			continue;
		b->svm[b->m.nr_vms++] = v;
		d->name = v->name;
		d->host = h;
		d->vcpus = cluster__int(v->spec, "cpus", 1);
		d->memory = (uint64_t)cluster__int(v->spec, "memory", 0);
		rss = (uint64_t)cluster__int(v->running, "rss", 0);
		d->mem_copy = rss && rss < d->memory ? rss : d->memory;
		d->mem_active = load ? (uint64_t)cluster__int(load, "active", 0) : d->memory;
		if (d->mem_active > d->memory)
			d->mem_active = d->memory;
		/*
		 * A VM whose agent has no rates yet (just started or arrived) counts as wanting
		 * all its vCPUs: over-counting only delays a move to its host by a pass, where
		 * under-counting would send it more VMs that the next pass takes back.
		 */
		d->cpu_demand =
		    load ? fmax(0, json_number_value(json_object_get(load, "cpu"))) +
			       fmax(0, json_number_value(json_object_get(load, "cpu_wait")))
			 : (double)d->vcpus;
		d->moved_ago = cluster__int(ended, v->name, -1) < 0
				   ? -1
				   : (double)(now - cluster__int(ended, v->name, 0)) / 1000;
		d->automation = automation_of(cluster__str(per_vm, v->name, NULL));
		d->moving = v->task[0] != '\0';
		/* A VM whose host is down or powering is HA's or DPM's, not the balancer's. */
		if (!b->hosts[h].up || b->hosts[h].standby) {
			d->moving = true;
			d->automation = DRS_AUTO_DISABLED;
		}
	}
	json_decref(ended);
}

static void build_rules(struct drs_build *b, const struct snap *s)
{
	size_t used = 0, j;
	const char *name;
	json_t *r, *v;

	json_object_foreach(s->rules, name, r)
	{
		const char *kind = cluster__str(r, "kind", "");
		struct drs_rule *d = &b->rules[b->m.nr_rules];
		int *vms = b->members + used;
		size_t n = 0;

		json_array_foreach(json_object_get(r, "vms"), j, v)
		{
			int vi = vm_index(b, json_string_value(v));

			if (vi >= 0)
				vms[n++] = vi;
		}
		d->name = name;
		d->vms = vms;
		d->nr_vms = n;
		if (!strcmp(kind, "together") || !strcmp(kind, "apart")) {
			d->kind = !strcmp(kind, "apart") ? DRS_RULE_APART : DRS_RULE_TOGETHER;
			if (n < 2)
				continue;
		} else if (!strcmp(kind, "host")) {
			d->group = group_bit(b, cluster__str(r, "group", ""));
			d->kind = json_is_true(json_object_get(r, "not")) ? DRS_RULE_OFF_GROUP
									  : DRS_RULE_ON_GROUP;
			d->must = json_is_true(json_object_get(r, "must"));
			if (d->group < 0 || !n)
				continue;
		} else {
			continue;
		}
		used += n;
		b->m.nr_rules++;
	}
}

static void build_free(struct drs_build *b)
{
	free(b->hosts);
	free(b->vms);
	free(b->svm);
	free(b->rules);
	free(b->members);
}

static int build(struct drs_build *b, const struct snap *s, const json_t *settings,
		 const struct etcd_range *hist, const char *emptied)
{
	size_t members = 0;
	const char *name;
	json_t *r;

	memset(b, 0, sizeof(*b));
	json_object_foreach(s->rules, name, r) members +=
	    json_array_size(json_object_get(r, "vms"));
	b->hosts = calloc(s->nr_hosts + 1, sizeof(*b->hosts));
	b->vms = calloc(s->nr_vms + 1, sizeof(*b->vms));
	b->svm = calloc(s->nr_vms + 1, sizeof(*b->svm));
	b->rules = calloc(json_object_size(s->rules) + 1, sizeof(*b->rules));
	b->members = calloc(members + 1, sizeof(*b->members));
	if (!b->hosts || !b->vms || !b->svm || !b->rules || !b->members) {
		build_free(b);
		return -ENOMEM;
	}
	build_hosts(b, s, emptied);
	build_vms(b, s, settings, hist);
	build_rules(b, s);
	b->m.hosts = b->hosts;
	b->m.nr_hosts = s->nr_hosts;
	b->m.vms = b->vms;
	b->m.rules = b->rules;
	return 0;
}

static const char *reason_name(enum drs_reason r)
{
	static const char *const names[] = {"balance", "rule", "maintenance", "power-off"};

	return r <= DRS_REASON_POWER_OFF ? names[r] : "?";
}

static json_t *move_json(const struct drs_build *b, const struct drs_move *mv, const char *id)
{
	json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:f, s:I, s:f, s:s}", "id", id, "vm",
			      b->vms[mv->vm].name, "src", b->hosts[mv->src].name, "dst",
			      b->hosts[mv->dst].name, "gain", mv->gain, "bytes",
			      (json_int_t)mv->bytes, "seconds", mv->seconds, "why", mv->why);

	json_object_set_new(j, "reason", json_string(reason_name(mv->reason)));
	if (mv->rule >= 0 && (size_t)mv->rule < b->m.nr_rules)
		json_object_set_new(j, "rule", json_string(b->rules[mv->rule].name));
	return j;
}

/* Writes the pass's record if this manager still leads. */
static void put_record(struct mgr *m, const json_t *rec)
{
	char *text = json_dumps(rec, JSON_COMPACT);
	struct etcd_txn t;
	bool ok;
	int ret;

	if (!text)
		return;
	ret = mgr__leader_txn(m, &t);
	ret = ret ?: etcd_txn__put(&t, true, K_DRS_PASS, text, 0);
	ret = ret ?: etcd__txn(&m->loop, &t, &ok);
	etcd_txn__free(&t);
	free(text);
	if (ret)
		pr_warn("manager %s: cannot keep the DRS pass: %s", m->id, m->loop.err);
}

/* The last pass's number, so that a new leader's ids do not repeat its predecessor's. */
static int64_t last_pass(struct mgr *m)
{
	struct etcd_range r;
	int64_t n = 0;
	json_t *rec;

	if (etcd__get(&m->loop, K_DRS_PASS, &r))
		return 0;
	rec = r.count ? cluster__kv_json(&r.kvs[0]) : NULL;
	n = cluster__int(rec, "pass", 0);
	json_decref(rec);
	etcd_range__free(&r);
	return n;
}

static void config_of(struct drs_config *c, const struct snap *s, const json_t *settings)
{
	drs__config_default(c);
	c->threshold = (int)cluster__int(settings, "threshold", DRS_THRESHOLD_DEFAULT);
	c->automation = strcmp(cluster__str(settings, "automation", ""), "automatic")
			    ? DRS_AUTO_MANUAL
			    : DRS_AUTO_AUTOMATIC;
	c->pass_seconds = (double)cluster__int(settings, "interval", DRS_INTERVAL_DEFAULT);
	c->host_slots = s->limits.per_host > 0 ? s->limits.per_host : 1;
}

/*
 * Queues the moves that need no user, keeps the others; the record of the pass. The
 * manager's maintenance already moves maintenance's VMs: those moves are left to it.
 */
static json_t *act(struct mgr *m, const struct drs_build *b, const struct drs_move *mv, size_t n,
		   int64_t pass)
{
	json_t *recs = json_array(), *applied = json_array(), *rec;
	char id[40], task[80], err[600];
	size_t i;

	for (i = 0; i < n; i++) {
		const struct s_vm *v = b->svm[mv[i].vm];

		if (mv[i].reason == DRS_REASON_MAINTENANCE)
			continue;
		snprintf(id, sizeof(id), "%" PRId64 "-%zu", pass, i + 1);
		rec = move_json(b, &mv[i], id);
		if (!mv[i].automatic) {
			json_array_append_new(recs, rec);
			continue;
		}
		if (mgr__create_task(&m->loop, v, "migrate", "drs", b->hosts[mv[i].dst].name, 0,
				     task, sizeof(task), err, sizeof(err))) {
			json_decref(rec);
			continue;
		}
		json_object_set_new(rec, "task", json_string(task));
		json_array_append_new(applied, rec);
		cluster__event(&m->loop, "%s: DRS: %s", task, mv[i].why);
	}
	return json_pack("{s:o, s:o}", "recommendations", recs, "applied", applied);
}

/* {host: its load}, or {host: its migration slots}, for the hosts in service. */
static json_t *per_host(const struct drs_build *b, const struct drs_config *c, bool slots)
{
	json_t *l = json_object();
	size_t i;

	for (i = 0; i < b->m.nr_hosts; i++)
		if (b->hosts[i].up && !b->hosts[i].maintenance && !b->hosts[i].standby)
			json_object_set_new(l, b->hosts[i].name,
					    slots ? json_integer(drs__host_slots(&b->m, c, (int)i))
						  : json_real(drs__host_load(&b->m, (int)i)));
	return l;
}

/* ---- power (DPM) ---- */

/*
 * The host being emptied is kept in etcd (K_EMPTYING), not in the leader's memory: a
 * manager that takes the lead mid-emptying follows it through. Each change goes in one
 * leader-guarded transaction with what it depends on, as the snapshot had it.
 */

/* Commits t (ret: an error building it); whether it took. */
static bool dpm_commit(struct mgr *m, struct etcd_txn *t, int ret)
{
	bool ok = false;

	ret = ret ?: etcd__txn(&m->loop, t, &ok);
	etcd_txn__free(t);
	if (ret)
		pr_warn("manager %s: DPM: %s", m->id,
			ret == -ENOMEM ? "out of memory" : m->loop.err);
	return !ret && ok;
}

/*
 * Adds power/H = state to t, as `host standby|wake` write it, if the record is as the
 * snapshot had it (rev 0: absent); power.c runs the command.
 */
static int power_put(struct etcd_txn *t, const struct s_host *h, const char *state)
{
	json_t *rec = json_pack("{s:s, s:I, s:s}", "state", state, "since_ms",
				(json_int_t)cluster__now_ms(), "by", "dpm");
	char key[160], *text = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
	int ret;

	json_decref(rec);
	if (!text)
		return -ENOMEM;
	snprintf(key, sizeof(key), K_POWER "%s", h->name);
	ret = h->power_rev ? etcd_txn__cmp(t, key, ETCD_MOD, ETCD_EQUAL, h->power_rev)
			   : etcd_txn__cmp(t, key, ETCD_CREATE, ETCD_EQUAL, 0);
	ret = ret ?: etcd_txn__put(t, true, key, text, 0);
	free(text);
	return ret;
}

/* Adds the end of the emptying to t, if its record is still the snapshot's. */
static int emptying_end(struct etcd_txn *t, const struct snap *s)
{
	return etcd_txn__cmp(t, K_EMPTYING, ETCD_MOD, ETCD_EQUAL, s->emptying_rev)
		   ?: etcd_txn__delete(t, true, K_EMPTYING, false);
}

/* The host is DPM's no longer: back in service as it is. */
static void emptying_release(struct mgr *m, const struct snap *s)
{
	struct etcd_txn t;

	dpm_commit(m, &t, mgr__leader_txn(m, &t) ?: emptying_end(&t, s));
}

/* Records that DPM empties h, if no emptying is recorded; whether it is now. */
static bool emptying_start(struct mgr *m, const struct s_host *h)
{
	json_t *rec = json_pack("{s:s, s:I, s:s}", "host", h->name, "since_ms",
				(json_int_t)cluster__now_ms(), "by", m->id);
	char *text = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
	struct etcd_txn t;
	bool ok;
	int ret;

	json_decref(rec);
	ret = mgr__leader_txn(m, &t);
	if (!ret && !text)
		ret = -ENOMEM;
	ret = ret ?: etcd_txn__cmp(&t, K_EMPTYING, ETCD_CREATE, ETCD_EQUAL, 0);
	ret = ret ?: etcd_txn__put(&t, true, K_EMPTYING, text, 0);
	ok = dpm_commit(m, &t, ret);
	free(text);
	return ok;
}

/* Whether a host still runs a VM or has one on its way in or out. */
static bool host_busy(const struct snap *s, const struct s_host *h)
{
	size_t i;

	if (h->vms)
		return true;
	for (i = 0; i < s->nr_tasks; i++)
		if (!strcmp(cluster__str(s->tasks[i].t, "dst", ""), h->name) ||
		    !strcmp(cluster__str(s->tasks[i].t, "src", ""), h->name))
			return true;
	return false;
}

/*
 * The host DPM empties: requeue what failed to leave; to standby once it is empty (the
 * power record written and the emptying's removed in one transaction).
 */
static void dpm_follow(struct mgr *m, const struct snap *s, const char *name, json_t *out)
{
	int hi = snap__host(s, name);
	const struct s_host *h = hi >= 0 ? &s->hosts[hi] : NULL;
	char id[80], err[600];
	struct etcd_txn t;
	size_t i;

	json_object_set_new(out, "emptying", json_string(name));
	/* Gone, down, or taken in hand by a user (maintenance, standby): no longer DPM's. */
	if (!h || !h->alive || h->maint || h->power) {
		emptying_release(m, s);
		return;
	}
	if (host_busy(s, h)) {
		for (i = 0; i < s->nr_vms; i++)
			if (s->vms[i].spec && !s->vms[i].task[0] &&
			    !strcmp(s->vms[i].owner, h->name))
				mgr__create_task(&m->loop, &s->vms[i], "migrate", "dpm", "", 0, id,
						 sizeof(id), err, sizeof(err));
		return;
	}
	if (!m->power_off[0]) {
		/* Kept empty for a leader that has the command. */
		json_object_set_new(out, "held", json_string("no --power-off-cmd"));
		return;
	}
	if (dpm_commit(m, &t,
		       mgr__leader_txn(m, &t) ?: emptying_end(&t, s)
						     ?: power_put(&t, h, "powering-off")))
		cluster__event(&m->loop, "DPM: %s is empty, going to standby", h->name);
}

static void dpm_settings(struct drs_config *c, const json_t *d)
{
	c->dpm_target = (double)cluster__int(d, "target", DPM_TARGET_DEFAULT) / 100;
	c->dpm_tolerance = (double)cluster__int(d, "band", DPM_BAND_DEFAULT) / 100;
	c->dpm_window = (double)cluster__int(d, "window", DPM_WINDOW_DEFAULT);
}

static size_t serving(const struct drs_build *b)
{
	size_t i, n = 0;

	for (i = 0; i < b->m.nr_hosts; i++)
		n += b->hosts[i].up && !b->hosts[i].maintenance && !b->hosts[i].standby;
	return n;
}

/* Carries out a decision; what held it back, if anything, goes into out. */
static void dpm_act(struct mgr *m, const struct snap *s, const struct drs_build *b,
		    const struct dpm_decision *d, int64_t min_hosts, json_t *out)
{
	const struct s_host *h = &s->hosts[d->host];
	char task[80], err[600];
	struct etcd_txn t;
	size_t i;

	json_object_set_new(out, "action",
			    json_string(d->action == DPM_POWER_OFF ? "power-off" : "power-on"));
	json_object_set_new(out, "host", json_string(h->name));
	json_object_set_new(out, "why", json_string(d->why));
	if (d->action == DPM_POWER_ON) {
		if (!m->power_on[0])
			json_object_set_new(out, "held", json_string("no --power-on-cmd"));
		else if (strcmp(cluster__str(h->power, "state", ""), "standby"))
			json_object_set_new(out, "held", json_string("not in standby"));
		else if (dpm_commit(m, &t,
				    mgr__leader_txn(m, &t) ?: power_put(&t, h, "powering-on")))
			cluster__event(&m->loop, "DPM: %s", d->why);
		return;
	}
	if (!m->power_off[0]) {
		json_object_set_new(out, "held", json_string("no --power-off-cmd"));
		return;
	}
	if ((int64_t)serving(b) - 1 < min_hosts) {
		json_object_set_new(out, "held", json_string("dpm config --min-hosts"));
		return;
	}
	if (!emptying_start(m, h)) {
		json_object_set_new(out, "held", json_string("cannot record the emptying"));
		return;
	}
	cluster__event(&m->loop, "DPM: %s", d->why);
	for (i = 0; i < d->nr_moves; i++)
		if (!mgr__create_task(&m->loop, b->svm[d->moves[i].vm], "migrate", "dpm",
				      b->hosts[d->moves[i].dst].name, 0, task, sizeof(task), err,
				      sizeof(err)))
			cluster__event(&m->loop, "%s: DPM: %s", task, d->moves[i].why);
}

/* One DPM decision; `moved`: DRS queued moves this pass (DPM waits for their end). */
static json_t *dpm_pass(struct mgr *m, const struct snap *s, const struct drs_build *b,
			struct drs_config *c, bool moved)
{
	json_t *settings = mgr__dpm_settings(s), *out = json_object();
	struct dpm_decision d = {0};
	int64_t now = cluster__now_ms();
	char why[300] = "";
	size_t i;

	if (!json_is_true(json_object_get(settings, "enabled"))) {
		memset(&m->dpm, 0, sizeof(m->dpm));
		m->dpm_ms = 0;
		if (s->emptying)
			emptying_release(m, s);
		json_decref(out);
		json_decref(settings);
		return NULL;
	}
	dpm_settings(c, settings);
	if (s->emptying) {
		dpm_follow(m, s, cluster__str(s->emptying, "host", ""), out);
		goto out;
	}
	/* One power change at a time: a command running, or a host on its way. */
	for (i = 0; i < s->nr_hosts; i++)
		if (s->hosts[i].power &&
		    strcmp(cluster__str(s->hosts[i].power, "state", ""), "standby"))
			goto out;
	if (moved)
		goto out;
	d.moves = calloc(b->m.nr_vms + 1, sizeof(*d.moves));
	if (!d.moves ||
	    dpm__recommend(&b->m, c, &m->dpm, m->dpm_ms ? (double)(now - m->dpm_ms) / 1000 : 0, &d,
			   why, sizeof(why))) {
		json_object_set_new(out, "error", json_string(d.moves ? why : "out of memory"));
		goto out;
	}
	m->dpm_ms = now;
	if (d.action != DPM_NONE && d.host >= 0 && (size_t)d.host < s->nr_hosts)
		dpm_act(m, s, b, &d, cluster__int(settings, "min_hosts", DPM_MIN_HOSTS_DEFAULT),
			out);
out:
	json_object_set_new(out, "below_s", json_real(m->dpm.below_for));
	json_object_set_new(out, "above_s", json_real(m->dpm.above_for));
	free(d.moves);
	json_decref(settings);
	return out;
}

static void pass(struct mgr *m, const struct snap *s, const json_t *settings)
{
	const char *automation = cluster__str(settings, "automation", DRS_AUTOMATION_DEFAULT);
	struct drs_move *mv = NULL;
	struct etcd_range hist, *h = NULL;
	struct drs_config c;
	struct drs_build b;
	char why[300] = "";
	json_t *rec, *dpm;
	int64_t nr = last_pass(m) + 1;
	int n = 0;

	config_of(&c, s, settings);
	if (!etcd__list(&m->loop, K_HISTORY, &hist))
		h = &hist;
	if (build(&b, s, settings, h, cluster__str(s->emptying, "host", ""))) {
		if (h)
			etcd_range__free(h);
		return;
	}
	if (h)
		etcd_range__free(h);
	if (strcmp(automation, "off")) {
		mv = calloc(b.m.nr_vms + 1, sizeof(*mv));
		n = mv ? drs__recommend(&b.m, &c, mv, b.m.nr_vms + 1, why, sizeof(why)) : -ENOMEM;
	}
	rec = n >= 0 ? act(m, &b, mv, (size_t)n, nr)
		     : json_pack("{s:[], s:[]}", "recommendations", "applied");
	json_object_set_new(rec, "pass", json_integer(nr));
	json_object_set_new(rec, "time_ms", json_integer(cluster__now_ms()));
	json_object_set_new(rec, "automation", json_string(automation));
	json_object_set_new(rec, "threshold", json_integer(c.threshold));
	json_object_set_new(
	    rec, "tolerance",
	    json_real(isfinite(drs__tolerance(c.threshold)) ? drs__tolerance(c.threshold) : -1));
	json_object_set_new(rec, "imbalance", json_real(drs__imbalance(&b.m)));
	json_object_set_new(rec, "loads", per_host(&b, &c, false));
	json_object_set_new(rec, "slots", per_host(&b, &c, true));
	dpm = dpm_pass(m, s, &b, &c, json_array_size(json_object_get(rec, "applied")) > 0 || n < 0);
	if (dpm)
		json_object_set_new(rec, "dpm", dpm);
	if (n < 0) {
		json_object_set_new(rec, "error",
				    json_string(n == -ENOMEM ? "out of memory" : why));
		pr_warn("manager %s: DRS pass: %s", m->id, n == -ENOMEM ? "out of memory" : why);
	}
	put_record(m, rec);
	json_decref(rec);
	free(mv);
	build_free(&b);
}

void mgr__drs_tick(struct mgr *m, const struct snap *s)
{
	json_t *settings = mgr__drs_settings(s);
	int64_t now = cluster__now_ms();
	struct snap fresh;

	if (!settings ||
	    now - m->drs_ms < cluster__int(settings, "interval", DRS_INTERVAL_DEFAULT) * 1000) {
		json_decref(settings);
		return;
	}
	json_decref(settings);
	m->drs_ms = now;
	/*
	 * The tick's snapshot is older than what its queue did meanwhile (a move ended, its
	 * task gone): a task made from it could name a source the VM has left.
	 */
	if (snap__read(&m->loop, &fresh))
		return;
	settings = mgr__drs_settings(&fresh);
	if (settings && !strcmp(fresh.leader, m->id))
		pass(m, &fresh, settings);
	json_decref(settings);
	snap__free(&fresh);
}

/* ---- the API: recommendations and apply ---- */

/* Why a recommendation no longer holds ("" if it does). */
static void stale_why(const struct snap *s, const json_t *r, char *why, size_t len)
{
	const struct s_vm *v = snap__vm(s, cluster__str(r, "vm", ""));
	int dst = snap__host(s, cluster__str(r, "dst", ""));

	why[0] = '\0';
	if (!v || !v->spec)
		snprintf(why, len, "%s was deleted", cluster__str(r, "vm", ""));
	else if (strcmp(v->owner, cluster__str(r, "src", "")))
		snprintf(why, len, "%s moved to %s since", v->name, v->owner);
	else if (v->task[0])
		snprintf(why, len, "%s has a task already (%s)", v->name, v->task);
	else if (dst < 0 || !s->hosts[dst].alive || s->hosts[dst].maint || s->hosts[dst].power)
		snprintf(why, len, "%s is %s", cluster__str(r, "dst", ""),
			 dst < 0 ? "gone" : snap__host_state(&s->hosts[dst]));
}

/* The last pass's record with only the recommendations that still hold. */
static json_t *current(struct mgr *m, const struct snap *s, int *err)
{
	json_t *rec, *kept = json_array(), *r;
	struct etcd_range range;
	char why[200];
	size_t i;

	*err = etcd__get(&m->api, K_DRS_PASS, &range);
	if (*err)
		return NULL;
	rec = range.count ? cluster__kv_json(&range.kvs[0]) : NULL;
	etcd_range__free(&range);
	if (!rec)
		rec = json_pack("{s:I, s:[], s:[]}", "pass", (json_int_t)0, "recommendations",
				"applied");
	json_array_foreach(json_object_get(rec, "recommendations"), i, r)
	{
		stale_why(s, r, why, sizeof(why));
		if (!why[0])
			json_array_append(kept, r);
	}
	json_object_set_new(rec, "recommendations", kept);
	return rec;
}

static int apply(struct mgr *m, const struct snap *s, const char *id, struct api_response *resp)
{
	json_t *rec, *tasks = json_array(), *r, *all;
	struct etcd_range range;
	char why[200], task[80], err[600];
	bool any = !strcmp(id, "all"), found = false;
	size_t i;

	if (etcd__get(&m->api, K_DRS_PASS, &range)) {
		json_decref(tasks);
		api__error(resp, 503, "%s", m->api.err);
		return 0;
	}
	rec = range.count ? cluster__kv_json(&range.kvs[0]) : NULL;
	etcd_range__free(&range);
	all = json_object_get(rec, "recommendations");
	json_array_foreach(all, i, r)
	{
		const struct s_vm *v;

		if (!any && strcmp(cluster__str(r, "id", ""), id))
			continue;
		found = true;
		stale_why(s, r, why, sizeof(why));
		if (why[0]) {
			if (any)
				continue;
			api__error(resp, 409,
				   "recommendation %s no longer holds: %s (godwit cluster drs "
				   "recommendations lists the current ones)",
				   id, why);
			goto out;
		}
		v = snap__vm(s, cluster__str(r, "vm", ""));
		if (mgr__create_task(&m->api, v, "migrate", "drs", cluster__str(r, "dst", ""), 0,
				     task, sizeof(task), err, sizeof(err))) {
			if (any)
				continue;
			api__error(resp, 409, "%s", err);
			goto out;
		}
		cluster__event(&m->api, "%s: DRS recommendation %s applied: %s", task,
			       cluster__str(r, "id", ""), cluster__str(r, "why", ""));
		json_array_append_new(tasks, json_pack("{s:s, s:s, s:s, s:s, s:s}", "id",
						       cluster__str(r, "id", ""), "vm", v->name,
						       "src", v->owner, "dst",
						       cluster__str(r, "dst", ""), "task", task));
	}
	if (!found && !any) {
		api__error(
		    resp, 404,
		    "no recommendation %s (a newer pass may have replaced it: godwit cluster "
		    "drs recommendations)",
		    id);
		goto out;
	}
	resp->status = 202;
	resp->body = json_pack("{s:O}", "tasks", tasks);
out:
	json_decref(tasks);
	json_decref(rec);
	return 0;
}

int mgr__drs_route(struct mgr *m, const struct snap *s, const struct api_request *req,
		   struct api_response *resp)
{
	int err;

	if (!strcmp(req->path, "/drs/recommendations") && !strcmp(req->method, "GET")) {
		resp->body = current(m, s, &err);
		if (!resp->body)
			api__error(resp, 503, "%s", err == -ENOMEM ? "out of memory" : m->api.err);
		return 0;
	}
	if (!strcmp(req->path, "/drs/apply") && !strcmp(req->method, "POST")) {
		const char *id = cluster__str(req->body, "id", "");

		if (!*id) {
			api__error(resp, 400, "id: a recommendation's id, or \"all\"");
			return 0;
		}
		return apply(m, s, id, resp);
	}
	return 1;
}
