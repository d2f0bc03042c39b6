// SPDX-License-Identifier: GPL-2.0
/*
 * `godwit manager`: any number run, one leads (an etcd lease and a transaction). The
 * leader runs the task queue: migrations within the per-host and cluster limits (slots
 * taken in transactions), maintenance, and restarts of the VMs of dead hosts. It keeps
 * nothing etcd does not have: a new leader continues where the last one stopped
 * (docs/cluster.md, "The manager").
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "godwit/cluster/cluster.h"
#include "godwit/log.h"
#include "godwit/util.h"
#include "manager.h"

#define LEADER_TTL	 5
#define TICK_MS		 500
#define MIN_TICK_MS	 100
#define MAX_ATTEMPTS	 3 /* a failed move is retried at most twice more */
#define RESTART_RETRY_MS 5000
#define TRIM_EVERY_MS	 10000
#define RETRY_BACKOFF_MS 3000
#define SILENT_SOURCE_MS 120000
/*
 * How long a call to a host whose lease is gone may take. Such a host is still asked (a
 * stalled etcd lapses the leases of live hosts), but not for long: one stopped, or cut
 * off, would hold the leader's every tick for the whole usual timeout.
 */
#define DOWN_HOST_TIMEOUT_S 2

int mgr__agent_call(struct mgr *m, const struct s_host *h, const char *method, const char *path,
		    const json_t *req, long timeout_s, long *status, json_t **reply, char *err,
		    size_t errlen)
{
	const char *url = cluster__str(h->rec, "url", NULL);

	*reply = NULL;
	if (!url) {
		snprintf(err, errlen, "host %s has no agent record", h->name);
		return -ENOENT;
	}
	return api_client__url(url, &m->ctls, method, path, req, timeout_s, status, reply, err,
			       errlen);
}

/* ---- leadership ---- */

static void elect(struct mgr *m)
{
	struct etcd_txn t;
	int64_t ttl;
	bool ok = false;
	int ret;

	if (m->leader) {
		ret = etcd__lease_keepalive(&m->loop, m->lease, &ttl);
		if (!ret)
			return;
		pr_warn("manager %s: lost the lead: %s", m->id, m->loop.err);
		m->leader = false;
		if (ret != -ENOENT)
			return;
		m->lease = 0;
	}
	if (!m->lease && etcd__lease_grant(&m->loop, LEADER_TTL, &m->lease))
		return;
	if (etcd__lease_keepalive(&m->loop, m->lease, &ttl)) {
		m->lease = 0;
		return;
	}
	etcd_txn__init(&t);
	ret = etcd_txn__cmp(&t, K_LEADER, ETCD_CREATE, ETCD_EQUAL, 0);
	ret = ret ?: etcd_txn__put(&t, true, K_LEADER, m->id, m->lease);
	ret = ret ?: etcd__txn(&m->loop, &t, &ok);
	etcd_txn__free(&t);
	if (!ret && ok) {
		m->leader = true;
		cluster__event(&m->loop, "manager %s leads", m->id);
	}
}

/*
 * The lease renewed within a tick too: a tick that claims or polls a hundred moves
 * makes hundreds of round trips, which outlast the lease's TTL on a busy machine.
 */
void mgr__hold_lead(struct mgr *m)
{
	int64_t ttl;

	if (!m->leader || cluster__now_ms() - m->held_ms < 1000)
		return;
	m->held_ms = cluster__now_ms();
	/* A lease that is gone: elect() finds out at the next tick, and our writes fail. */
	etcd__lease_keepalive(&m->loop, m->lease, &ttl);
}

int mgr__leader_txn(struct mgr *m, struct etcd_txn *t)
{
	etcd_txn__init(t);
	return etcd_txn__cmp_value(t, K_LEADER, ETCD_EQUAL, m->id);
}

static int commit(struct mgr *m, struct etcd_txn *t, bool *ok)
{
	int ret = etcd__txn(&m->loop, t, ok);

	etcd_txn__free(t);
	if (ret)
		pr_warn("manager %s: %s", m->id, m->loop.err);
	return ret;
}

static int put_task(struct etcd_txn *t, const char *id, json_t *task)
{
	char key[160], *text = json_dumps(task, JSON_COMPACT);
	int ret;

	if (!text)
		return -ENOMEM;
	snprintf(key, sizeof(key), K_TASK "%s", id);
	ret = etcd_txn__put(t, true, key, text, 0);
	free(text);
	return ret;
}

/*
 * A leader's transaction that rewrites a task's record: only if the record is still
 * if_value (NULL: whatever it is). On an error t is freed.
 */
static int task_txn(struct mgr *m, struct etcd_txn *t, const struct s_task *st, json_t *task,
		    const char *if_value)
{
	char key[160];
	int ret = mgr__leader_txn(m, t);

	snprintf(key, sizeof(key), K_TASK "%s", st->id);
	if (if_value)
		ret = ret ?: etcd_txn__cmp_value(t, key, ETCD_EQUAL, if_value);
	ret = ret ?: put_task(t, st->id, task);
	if (ret)
		etcd_txn__free(t);
	return ret;
}

int mgr__update_task(struct mgr *m, const struct s_task *st, json_t *task, const char *if_value)
{
	struct etcd_txn t;
	bool ok;

	return task_txn(m, &t, st, task, if_value) ?: commit(m, &t, &ok) ?: (ok ? 0 : -EAGAIN);
}

static int update_task(struct mgr *m, const struct s_task *st, json_t *task)
{
	return mgr__update_task(m, st, task, NULL);
}

static void release_slots(struct etcd_txn *t, const json_t *task)
{
	const json_t *v;
	size_t i;

	json_array_foreach(json_object_get(task, "slots"), i, v)
	    etcd_txn__delete(t, true, json_string_value(v), false);
}

/*
 * Ends a task: its slots given back, the VM free for another, the record moved to the
 * history. With new_owner, the VM's owner changes in the same transaction, and only
 * if it still is the task's source.
 */
static int finish(struct mgr *m, const struct s_task *st, const char *phase, const char *error,
		  const char *new_owner)
{
	json_t *task = json_deep_copy(st->t);
	const char *vm = cluster__str(task, "vm", "");
	char key[160], *text;
	struct etcd_txn t;
	bool ok = false;
	int ret;

	json_object_set_new(task, "phase", json_string(phase));
	json_object_set_new(task, "ended_ms", json_integer(cluster__now_ms()));
	if (error)
		json_object_set_new(task, "error", json_string(error));
	json_object_del(task, "slots");
	text = json_dumps(task, JSON_COMPACT);
	ret = mgr__leader_txn(m, &t);
	if (new_owner) {
		snprintf(key, sizeof(key), K_OWNER "%s", vm);
		ret =
		    ret ?: etcd_txn__cmp_value(&t, key, ETCD_EQUAL, cluster__str(task, "src", ""));
		ret = ret ?: etcd_txn__put(&t, true, key, new_owner, 0);
	}
	release_slots(&t, st->t);
	snprintf(key, sizeof(key), K_VMTASK "%s", vm);
	ret = ret ?: etcd_txn__delete(&t, true, key, false);
	snprintf(key, sizeof(key), K_TASK "%s", st->id);
	ret = ret ?: etcd_txn__delete(&t, true, key, false);
	snprintf(key, sizeof(key), K_CANCEL "%s", st->id);
	ret = ret ?: etcd_txn__delete(&t, true, key, false);
	snprintf(key, sizeof(key), K_HISTORY "%s", st->id);
	ret = ret ?: (text ? etcd_txn__put(&t, true, key, text, 0) : -ENOMEM);
	free(text);
	if (ret) {
		etcd_txn__free(&t);
		json_decref(task);
		return ret;
	}
	ret = commit(m, &t, &ok);
	m->again |= !ret && ok && json_array_size(json_object_get(st->t, "slots"));
	if (!ret && !ok && new_owner)
		pr_warn("manager %s: %s's owner is not %s any more", m->id, vm,
			cluster__str(task, "src", ""));
	if (!ret && ok) {
		if (!strcmp(phase, "done"))
			cluster__event(&m->loop, "%s: %s %s %s -> %s", st->id, vm,
				       !strcmp(cluster__str(task, "kind", ""), "restart")
					   ? "restarted"
					   : "moved",
				       cluster__str(task, "src", ""), new_owner);
		else
			cluster__event(&m->loop, "%s: %s of %s %s%s%s", st->id,
				       cluster__str(task, "kind", ""), vm, phase, error ? ": " : "",
				       error ? error : "");
	}
	json_decref(task);
	return ret ?: (ok ? 0 : -EAGAIN);
}

/*
 * A failed attempt: back to the queue (its slots given back), or failed after the last;
 * if_value as for mgr__update_task.
 */
void mgr__retry(struct mgr *m, const struct s_task *st, const char *error, const char *if_value)
{
	int attempt = (int)cluster__int(st->t, "attempt", 0) + 1;
	json_t *task;
	struct etcd_txn t;
	bool ok;
	int ret;

	if (attempt >= MAX_ATTEMPTS) {
		finish(m, st, "failed", error, NULL);
		return;
	}
	task = json_deep_copy(st->t);
	json_object_set_new(task, "phase", json_string("queued"));
	json_object_set_new(task, "attempt", json_integer(attempt));
	/* Not at once: what failed (a departing copy, a busy host) may pass in a moment. */
	json_object_set_new(task, "next_try_ms",
			    json_integer(cluster__now_ms() + RETRY_BACKOFF_MS * attempt));
	json_object_set_new(task, "error", json_sprintf("attempt %d: %s", attempt, error));
	json_object_del(task, "slots");
	json_object_del(task, "to");
	if (!*cluster__str(task, "want_dst", ""))
		json_object_set_new(task, "dst", json_string(""));
	ret = task_txn(m, &t, st, task, if_value);
	if (ret) {
		pr_warn("manager %s: %s: requeueing: %s", m->id, st->id, strerror(-ret));
	} else {
		release_slots(&t, st->t);
		ret = commit(m, &t, &ok);
		m->again |= !ret && ok && json_array_size(json_object_get(st->t, "slots"));
	}
	if (!ret && ok)
		cluster__event(&m->loop, "%s: %s attempt %d failed: %s", st->id,
			       cluster__str(task, "vm", ""), attempt, error);
	json_decref(task);
}

static void retry(struct mgr *m, const struct s_task *st, const char *error)
{
	mgr__retry(m, st, error, NULL);
}

/* ---- migrations ---- */

static int free_index(const struct etcd_range *slots, const char *prefix, int limit)
{
	char key[200];
	int i;

	for (i = 0; i < limit; i++) {
		snprintf(key, sizeof(key), "%s%d", prefix, i);
		if (!etcd_range__find(slots, key))
			return i;
	}
	return -1;
}

static int host_slots(const struct snap *s, const char *name)
{
	int h = snap__host(s, name);

	return h < 0 ? s->limits.per_host : snap__host_slots(s, &s->hosts[h]);
}

/* Takes a slot on both hosts and in the cluster, in one transaction with the task's start. */
static int take_slots(struct mgr *m, const struct snap *s, const struct s_task *st, const char *src,
		      const char *dst, json_t *task)
{
	char keys[3][200], prefix[160];
	const char *hosts[2] = {src, dst};
	struct etcd_range slots;
	struct etcd_txn t;
	json_t *list;
	bool ok = false;
	int i, idx, ret;

	ret = etcd__list(&m->loop, K_ROOT "slots/", &slots);
	if (ret)
		return ret;
	for (i = 0; i < 3; i++) {
		if (i < 2)
			snprintf(prefix, sizeof(prefix), K_SLOT_HOST "%s/", hosts[i]);
		else
			snprintf(prefix, sizeof(prefix), K_SLOT_CLUST);
		idx =
		    free_index(&slots, prefix, i < 2 ? host_slots(s, hosts[i]) : s->limits.cluster);
		if (idx < 0) {
			etcd_range__free(&slots);
			return -EAGAIN;
		}
		snprintf(keys[i], sizeof(keys[i]), "%s%d", prefix, idx);
	}
	etcd_range__free(&slots);
	list = json_pack("[s, s, s]", keys[0], keys[1], keys[2]);
	json_object_set_new(task, "slots", list);
	ret = mgr__leader_txn(m, &t);
	snprintf(prefix, sizeof(prefix), K_TASK "%s", st->id);
	ret = ret ?: etcd_txn__cmp(&t, prefix, ETCD_MOD, ETCD_EQUAL, st->mod_rev);
	for (i = 0; i < 3 && !ret; i++) {
		ret = etcd_txn__cmp(&t, keys[i], ETCD_CREATE, ETCD_EQUAL, 0);
		ret = ret ?: etcd_txn__put(&t, true, keys[i], st->id, 0);
	}
	ret = ret ?: put_task(&t, st->id, task);
	if (ret) {
		etcd_txn__free(&t);
		return ret;
	}
	ret = commit(m, &t, &ok);
	return ret ?: (ok ? 0 : -EAGAIN);
}

/*
 * The move's own cap and the cluster's (config/limits), the lower of those set: read at
 * each start, so a cap set while moves wait in the queue holds for them too.
 */
static int64_t move_bandwidth(const struct snap *s, const json_t *task)
{
	int64_t own = cluster__int(task, "max_bandwidth", 0);

	if (own <= 0)
		return s->move_bandwidth;
	return s->move_bandwidth && s->move_bandwidth < own ? s->move_bandwidth : own;
}

/*
 * Claims the move's slots (here, in the leader's thread: the claims of one tick are
 * serial, so the limits hold however many starts run), then hands the calls to the
 * agents to the start workers (manager_start.c).
 */
static void start_migration(struct mgr *m, const struct snap *s, const struct s_task *st,
			    const char *dst_name)
{
	const char *src_name = cluster__str(st->t, "src", "");
	json_t *task = json_deep_copy(st->t);
	struct s_task now = *st;

	json_object_set_new(task, "phase", json_string("starting"));
	json_object_set_new(task, "dst", json_string(dst_name));
	json_object_set_new(task, "started_ms", json_integer(cluster__now_ms()));
	if (take_slots(m, s, st, src_name, dst_name, task)) {
		json_decref(task);
		return; /* someone took a slot first: next tick */
	}
	/* From here the task holds its slots: every way out gives them back. */
	now.t = task;
	if (mgr__start_submit(m, s, &now, move_bandwidth(s, task)))
		retry(m, &now, "the manager is out of memory");
	json_decref(task);
}

static bool host_up(const struct snap *s, const char *name)
{
	int h = snap__host(s, name);

	return h >= 0 && s->hosts[h].alive;
}

static long host_timeout(const struct s_host *h, long up_s)
{
	return h->alive ? up_s : DOWN_HOST_TIMEOUT_S;
}

/* What an agent says of the VM: 200 and its state, 404, or -errno (unreachable). */
static int vm_on(struct mgr *m, const struct snap *s, const char *host, const char *vm,
		 json_t **info)
{
	char path[160], err[300];
	long status;
	int h = snap__host(s, host), ret;

	*info = NULL;
	if (h < 0)
		return -ENOENT;
	snprintf(path, sizeof(path), "/vms/%s", vm);
	ret = mgr__agent_call(m, &s->hosts[h], "GET", path, NULL, host_timeout(&s->hosts[h], 10),
			      &status, info, err, sizeof(err));
	if (ret)
		return ret;
	return (int)status;
}

static void drop_on(struct mgr *m, const struct snap *s, const char *host, const char *vm)
{
	char path[160], err[300];
	json_t *reply;
	long status;
	int h = snap__host(s, host);

	if (h < 0)
		return;
	snprintf(path, sizeof(path), "/vms/%s", vm);
	mgr__agent_call(m, &s->hosts[h], "DELETE", path, NULL, host_timeout(&s->hosts[h], 30),
			&status, &reply, err, sizeof(err));
	json_decref(reply);
}

/*
 * Whether both hosts of a move have been down (their leases gone) for the HA grace
 * period; the first time, when that started goes into the task.
 */
static bool down_past_grace(struct mgr *m, const struct s_task *st)
{
	int64_t since = cluster__int(st->t, "hosts_down_ms", 0);
	json_t *task;

	if (since)
		return cluster__now_ms() - since >= m->grace_ms;
	task = json_deep_copy(st->t);
	json_object_set_new(task, "hosts_down_ms", json_integer(cluster__now_ms()));
	update_task(m, st, task);
	json_decref(task);
	return false;
}

/* A move under way: done once the destination runs the VM; progress meanwhile. */
static void poll_migration(struct mgr *m, const struct snap *s, const struct s_task *st)
{
	const char *vm = cluster__str(st->t, "vm", ""), *src = cluster__str(st->t, "src", ""),
		   *dst = cluster__str(st->t, "dst", "");
	json_t *d = NULL, *sv = NULL, *mig, *task, *prog;
	const char *status;
	int64_t since;
	int ds, ss;

	m->moving = true;
	ds = vm_on(m, s, dst, vm, &d);
	if (ds == 200 && !strcmp(cluster__str(d, "state", ""), "running")) {
		/* The destination said RESUMED (it runs): now, and only now, the owner changes. */
		finish(m, st, "done", NULL, dst);
		goto out;
	}
	if (!host_up(s, src) && ds == 404) {
		/*
		 * The source host died and the destination has no VM (a receive that lost
		 * its source ends by its --io-timeout): HA restarts the VM once the task is
		 * gone. A destination still loading, or whose agent does not answer for
		 * now, is waited for: it may yet resume.
		 */
		finish(m, st, "failed", "the source host died during the move", NULL);
		goto out;
	}
	if (!host_up(s, src) && !host_up(s, dst)) {
		/*
		 * Both leases gone: two deaths, or etcd stalled past the leases while the
		 * move ended, its destination perhaps running the VM already. Failing now
		 * would leave the owner at a source that has handed over: wait for either
		 * agent to come back, for the HA grace period (docs/cluster.md, "A move
		 * whose end was lost").
		 */
		if (down_past_grace(m, st))
			finish(m, st, "failed", "both hosts went down during the move", NULL);
		goto out;
	}
	ss = vm_on(m, s, src, vm, &sv);
	if (ss == 404 && !host_up(s, dst)) {
		/*
		 * The source has handed over and the destination's lease is gone: the VM is
		 * that host's now, running there behind a lapsed lease or lost with it. It
		 * is waited for as above, on the same clock; past the grace it becomes that
		 * host's in the record, so that HA restarts it by its own rules (a disk's
		 * lock, `restart: always`), or that host's agent, back, keeps it.
		 */
		if (down_past_grace(m, st))
			finish(m, st, "failed",
			       "the destination host went down after the source handed the VM over",
			       dst);
		goto out;
	}
	if (ss < 0 && !host_up(s, dst))
		goto out; /* the source's agent, back, does not answer yet: the clock runs on */
	if (json_object_get(st->t, "hosts_down_ms")) {
		/*
		 * Nothing is waited for any more (the hosts are back, or the source has not
		 * handed over): an outage after this one gets a grace period of its own.
		 */
		task = json_deep_copy(st->t);
		json_object_del(task, "hosts_down_ms");
		update_task(m, st, task);
		json_decref(task);
		goto out;
	}
	/*
	 * An agent is unreachable (restarting?): ask again next tick. A destination whose
	 * host is down is not waited for before the hand-over: the source's migration
	 * fails without it, and its retry fails at once.
	 */
	if (ss < 0 || (ds < 0 && host_up(s, dst)))
		goto out;
	if (ss == 404) {
		/* The source has handed over: the destination resumes soon. */
		if (ds == 404)
			finish(m, st, "failed", "the VM is on neither host any more", NULL);
		goto out;
	}
	mig = json_object_get(sv, "migration");
	/*
	 * No migration in the answer: the VM's API did not answer its agent in time (a
	 * loaded host), which says nothing of the move unless it lasts. Since: when the
	 * source took the migrate (its start may have waited for a worker).
	 */
	status = cluster__str(mig, "status", mig ? "none" : "unknown");
	since = cluster__now_ms() -
		cluster__int(st->t, "migrating_ms", cluster__int(st->t, "started_ms", 0));
	if (!strcmp(status, "failed") || !strcmp(status, "cancelled") ||
	    (!strcmp(status, "none") && since > 30000) ||
	    (!strcmp(status, "unknown") && since > SILENT_SOURCE_MS)) {
		char why[600];

		snprintf(why, sizeof(why), "%s",
			 mig ? cluster__str(mig, "error", status)
			     : "the source's VM did not answer its agent for 120 s");
		drop_on(m, s, dst, vm);
		if (st->cancel || !strcmp(status, "cancelled"))
			finish(m, st, "cancelled", NULL, NULL);
		else
			retry(m, st, why);
		goto out;
	}
	if (st->cancel && !json_is_true(json_object_get(st->t, "cancelling"))) {
		char path[160], err[300];
		json_t *reply = NULL;
		long code;
		int h = snap__host(s, src);

		snprintf(path, sizeof(path), "/vms/%s/cancel", vm);
		if (h >= 0)
			mgr__agent_call(m, &s->hosts[h], "POST", path, NULL,
					host_timeout(&s->hosts[h], 10), &code, &reply, err,
					sizeof(err));
		json_decref(reply);
		task = json_deep_copy(st->t);
		json_object_set_new(task, "cancelling", json_true());
		update_task(m, st, task);
		json_decref(task);
		goto out;
	}
	if (mig && cluster__now_ms() - cluster__int(st->t, "progress_ms", 0) >= 1000) {
		int64_t total = cluster__int(mig, "ram_bytes", 0),
			moved = cluster__int(mig, "ram_moved_bytes", 0),
			left = cluster__int(mig, "remaining_bytes", 0),
			bw = cluster__int(mig, "bandwidth", 0);

		prog =
		    json_pack("{s:s, s:I, s:I, s:I, s:i}", "status", status, "ram_bytes",
			      (json_int_t)total, "ram_moved_bytes", (json_int_t)moved, "bandwidth",
			      (json_int_t)bw, "rounds", (int)cluster__int(mig, "rounds", 0));
		if (cluster__int(mig, "max_bandwidth", 0) > 0)
			json_object_set(prog, "max_bandwidth",
					json_object_get(mig, "max_bandwidth"));
		/* Holes the guest never touched are not sent: they count as moved. */
		json_object_set_new(prog, "skipped_bytes",
				    json_integer(cluster__int(mig, "skipped_pages", 0) * 4096));
		/* What the source's own pause decision weighs: dirty RAM at its bandwidth. */
		if (left > 0 && bw > 0) {
			json_object_set_new(prog, "remaining_bytes", json_integer(left));
			json_object_set_new(prog, "predicted_pause_ms",
					    json_integer(left * 1000 / bw));
		}
		task = json_deep_copy(st->t);
		json_object_set_new(task, "progress_ms", json_integer(cluster__now_ms()));
		json_object_set_new(task, "progress", prog);
		update_task(m, st, task);
		json_decref(task);
	}
out:
	json_decref(d);
	json_decref(sv);
}

/* A task some leader left in "starting": find out how far it got. */
static void recover_start(struct mgr *m, const struct snap *s, const struct s_task *st)
{
	const char *vm = cluster__str(st->t, "vm", ""), *src = cluster__str(st->t, "src", ""),
		   *dst = cluster__str(st->t, "dst", "");
	json_t *sv = NULL, *dv = NULL, *task;
	const char *status;
	int ss = vm_on(m, s, src, vm, &sv);

	if (ss < 0 && host_up(s, src))
		goto out; /* its agent does not answer for now */
	if (ss < 0 && vm_on(m, s, dst, vm, &dv) == 404) {
		finish(m, st, "failed", "the source host died as the move started", NULL);
		goto out;
	}
	status = cluster__str(json_object_get(sv, "migration"), "status", "none");
	if (ss == 200 && strcmp(status, "none") && strcmp(status, "failed") &&
	    strcmp(status, "cancelled")) {
		task = json_deep_copy(st->t);
		json_object_set_new(task, "phase", json_string("migrating"));
		/* The stream's address, which the lost "migrating" record would have had. */
		if (json_is_string(json_object_get(json_object_get(sv, "migration"), "to")))
			json_object_set(task, "to",
					json_object_get(json_object_get(sv, "migration"), "to"));
		update_task(m, st, task);
		json_decref(task);
	} else if (ss == 200) {
		drop_on(m, s, dst, vm);
		retry(m, st, "the manager that started it stopped");
	} else {
		/* Source gone, or its host down: the destination's state decides. */
		task = json_deep_copy(st->t);
		json_object_set_new(task, "phase", json_string("migrating"));
		update_task(m, st, task);
		json_decref(task);
	}
out:
	json_decref(sv);
	json_decref(dv);
}

/* ---- restarts of the VMs of dead hosts (HA) ---- */

static void run_restart(struct mgr *m, const struct snap *s, const struct s_task *st,
			struct sched_host *sh)
{
	const struct s_vm *vm = snap__vm(s, cluster__str(st->t, "vm", ""));
	const char *src = cluster__str(st->t, "src", "");
	int srci = snap__host(s, src), dst;
	char why[600] = "", err[600];
	json_t *task, *reply = NULL;
	bool *allowed;
	long status;
	int ret;

	if (st->cancel) {
		finish(m, st, "cancelled", NULL, NULL);
		return;
	}
	if (srci >= 0 && s->hosts[srci].alive) {
		finish(m, st, "cancelled", "its host is up again", NULL);
		return;
	}
	if (strcmp(vm->owner, src)) {
		/* A host that had received it kept it (docs/cluster.md, "A move whose end was
		 * lost"). */
		char reason[160];

		snprintf(reason, sizeof(reason), "%s runs it now", vm->owner);
		finish(m, st, "cancelled", reason, NULL);
		return;
	}
	if (cluster__now_ms() < cluster__int(st->t, "next_try_ms", 0))
		return;
	/* Without disks no lock proves the old copy gone: only after a grace period. */
	if (!json_array_size(json_object_get(vm->spec, "disks")) &&
	    cluster__now_ms() - cluster__int(st->t, "created_ms", 0) < m->grace_ms)
		return;
	/* A "must" rule holds for HA too: no allowed host, the task waits with the reason. */
	allowed = snap__allowed(s, vm->name, NULL, 0);
	dst = sched__place_on(sh, s->nr_hosts, (uint64_t)cluster__int(vm->spec, "memory", 0),
			      cluster__int(vm->spec, "cpus", 1), srci, allowed, why, sizeof(why));
	free(allowed);
	if (dst >= 0) {
		ret = mgr__agent_call(m, &s->hosts[dst], "POST", "/vms", vm->spec, 30, &status,
				      &reply, err, sizeof(err));
		if (!ret && status == 201) {
			json_decref(reply);
			task = json_deep_copy(st->t);
			json_object_set_new(task, "dst", json_string(s->hosts[dst].name));
			struct s_task now = *st;
			now.t = task;
			if (finish(m, &now, "done", NULL, s->hosts[dst].name))
				drop_on(m, s, s->hosts[dst].name, vm->name);
			json_decref(task);
			sh[dst].mem_used += (uint64_t)cluster__int(vm->spec, "memory", 0);
			sh[dst].cpus_used += cluster__int(vm->spec, "cpus", 1);
			return;
		}
		/* A disk still locked: the old copy may run (a host cut off, not dead). */
		snprintf(why, sizeof(why), "%s: %.500s", s->hosts[dst].name,
			 ret ? err : cluster__str(reply, "error", "?"));
		json_decref(reply);
	}
	task = json_deep_copy(st->t);
	json_object_set_new(task, "error", json_string(why));
	json_object_set_new(task, "next_try_ms",
			    json_integer(cluster__now_ms() + RESTART_RETRY_MS));
	update_task(m, st, task);
	json_decref(task);
}

/* ---- the leader's tick ---- */

/*
 * A host's maintenance record as the leader changes it, only if nobody changed it
 * since the snapshot (a `maintenance exit` meanwhile wins).
 */
static void put_maint(struct mgr *m, const struct s_host *h, const json_t *rec)
{
	char key[160], *text = json_dumps(rec, JSON_COMPACT);
	struct etcd_txn t;
	bool ok;
	int ret;

	if (!text)
		return;
	snprintf(key, sizeof(key), K_MAINT "%s", h->name);
	ret = mgr__leader_txn(m, &t);
	ret = ret ?: etcd_txn__cmp(&t, key, ETCD_MOD, ETCD_EQUAL, h->maint_rev);
	ret = ret ?: etcd_txn__put(&t, true, key, text, 0);
	free(text);
	if (ret)
		etcd_txn__free(&t);
	else
		commit(m, &t, &ok);
}

static void scan_maintenance(struct mgr *m, const struct snap *s)
{
	char id[80], err[600];
	size_t i, j;

	for (i = 0; i < s->nr_hosts; i++) {
		const struct s_host *h = &s->hosts[i];
		json_t *stuck = json_object_get(h->maint, "stuck");
		int left = 0;

		if (strcmp(cluster__str(h->maint, "state", ""), "entering"))
			continue;
		for (j = 0; j < s->nr_vms; j++) {
			const struct s_vm *v = &s->vms[j];

			if (strcmp(v->owner, h->name) || !v->spec)
				continue;
			left++;
			if (v->task[0] || json_object_get(stuck, v->name))
				continue;
			m->again |= !mgr__create_task(&m->loop, v, "migrate", "maintenance", "", 0,
						      id, sizeof(id), err, sizeof(err));
		}
		if (!left) {
			json_t *rec = json_pack("{s:s, s:I}", "state", "in", "since_ms",
						(json_int_t)cluster__now_ms());

			put_maint(m, h, rec);
			json_decref(rec);
			cluster__event(&m->loop, "%s is in maintenance (it runs no VM)", h->name);
		}
	}
}

/* A VM that cannot leave a host entering maintenance: reported on the host, not retried. */
static void mark_stuck(struct mgr *m, const struct snap *s, const struct s_task *st,
		       const char *why)
{
	int h = snap__host(s, cluster__str(st->t, "src", ""));
	json_t *rec;

	finish(m, st, "failed", why, NULL);
	if (h < 0 || strcmp(cluster__str(st->t, "reason", ""), "maintenance"))
		return;
	rec = json_deep_copy(s->hosts[h].maint);
	if (!json_is_object(json_object_get(rec, "stuck")))
		json_object_set_new(rec, "stuck", json_object());
	json_object_set_new(json_object_get(rec, "stuck"), cluster__str(st->t, "vm", ""),
			    json_string(why));
	put_maint(m, &s->hosts[h], rec);
	json_decref(rec);
}

static void scan_dead_hosts(struct mgr *m, const struct snap *s)
{
	char id[80], err[600];
	size_t i;

	for (i = 0; i < s->nr_vms; i++) {
		const struct s_vm *v = &s->vms[i];
		int h = snap__host(s, v->owner);

		if (!v->spec || !v->owner[0] || v->task[0] || (h >= 0 && s->hosts[h].alive))
			continue;
		if (!json_array_size(json_object_get(v->spec, "disks")) &&
		    strcmp(cluster__str(v->spec, "restart", "never"), "always"))
			continue;
		if (!mgr__create_task(&m->loop, v, "restart", "ha", "", 0, id, sizeof(id), err,
				      sizeof(err)))
			cluster__event(&m->loop,
				       "%s: %s's host %s is down: restarting it elsewhere", id,
				       v->name, v->owner);
	}
}

/* Why a move can go nowhere: its destination's state, a rule, or every host's room. */
static void noroom_why(const struct snap *s, const struct sched_host *sh,
		       const struct sched_task *q, const struct s_task *st, char *why, size_t len)
{
	char rule[300] = "", room[600];
	bool *allowed = snap__allowed(s, cluster__str(st->t, "vm", ""), rule, sizeof(rule));

	free(allowed);
	if (q->dst >= 0 && (!q->allowed || q->allowed[q->dst])) {
		snprintf(why, len, "%s is %s", s->hosts[q->dst].name,
			 snap__host_state(&s->hosts[q->dst]));
		return;
	}
	if (q->dst >= 0) {
		snprintf(why, len, "%s", rule);
		return;
	}
	sched__place_on(sh, s->nr_hosts, q->memory, q->cpus, q->src, q->allowed, room,
			sizeof(room));
	/* The rule first: a cut, if any, takes the end of the hosts' list. */
	if (snprintf(why, len, "%s%s%s", rule, *rule ? "; " : "", room) >= (int)len)
		why[len - 1] = '\0';
}

static void run_queue(struct mgr *m, const struct snap *s)
{
	struct sched_host *sh = snap__sched_hosts(s);
	struct sched_task *q = calloc(s->nr_tasks + 1, sizeof(*q));
	struct sched_decision *d = calloc(s->nr_tasks + 1, sizeof(*d));
	const struct s_task **qt = calloc(s->nr_tasks + 1, sizeof(*qt));
	size_t i, nq = 0;
	char why[600];

	if (!sh || !q || !d || !qt)
		goto out;
	for (i = 0; i < s->nr_tasks; i++) {
		const struct s_task *st = &s->tasks[i];
		const char *phase = cluster__str(st->t, "phase", "");
		const struct s_vm *vm = snap__vm(s, cluster__str(st->t, "vm", ""));

		mgr__hold_lead(m);
		/* Its start is under way in this manager: its record is the worker's. */
		if (mgr__start_busy(m, st->id))
			continue;
		if (!vm || !vm->spec) {
			finish(m, st, "failed", "the VM was deleted", NULL);
			continue;
		}
		if (!strcmp(cluster__str(st->t, "kind", ""), "restart")) {
			run_restart(m, s, st, sh);
			continue;
		}
		if (!strcmp(phase, "starting")) {
			recover_start(m, s, st);
			continue;
		}
		if (!strcmp(phase, "migrating")) {
			poll_migration(m, s, st);
			continue;
		}
		if (st->cancel) {
			finish(m, st, "cancelled", NULL, NULL);
			continue;
		}
		if (cluster__now_ms() < cluster__int(st->t, "next_try_ms", 0))
			continue;
		if (strcmp(vm->owner, cluster__str(st->t, "src", ""))) {
			finish(m, st, "failed", "the VM's owner changed", NULL);
			continue;
		}
		q[nq].src = snap__host(s, vm->owner);
		q[nq].dst = *cluster__str(st->t, "dst", "")
				? snap__host(s, cluster__str(st->t, "dst", ""))
				: -1;
		q[nq].memory = (uint64_t)cluster__int(vm->spec, "memory", 0);
		q[nq].cpus = cluster__int(vm->spec, "cpus", 1);
		/* A "must" rule is never broken by a move, maintenance's included. */
		q[nq].allowed = snap__allowed(s, vm->name, NULL, 0);
		if (q[nq].src < 0 || !s->hosts[q[nq].src].alive) {
			/* Its host is down: HA decides once the task is gone. */
			finish(m, st, "failed", "the VM's host is down", NULL);
			free((bool *)q[nq].allowed);
			continue;
		}
		qt[nq++] = st;
	}
	sched__pick(sh, s->nr_hosts, q, nq, s->cluster_used, &s->limits, d);
	for (i = 0; i < nq; i++) {
		mgr__hold_lead(m);
		if (d[i].verdict == SCHED_START) {
			start_migration(m, s, qt[i], s->hosts[d[i].dst].name);
		} else if (d[i].verdict == SCHED_NOROOM) {
			noroom_why(s, sh, &q[i], qt[i], why, sizeof(why));
			mark_stuck(m, s, qt[i], why);
		}
	}
	for (i = 0; i < nq; i++)
		free((bool *)q[i].allowed);
out:
	free(sh);
	free(q);
	free(d);
	free(qt);
}

/*
 * Ended tasks and events beyond the newest `keep`, oldest first: their keys sort by
 * time (a task's id by its creation), so what goes is one range.
 */
static void trim(struct mgr *m, const char *prefix, size_t keep)
{
	struct etcd_range r;

	if (etcd__list(&m->loop, prefix, &r))
		return;
	if (r.count > keep && etcd__delete_range(&m->loop, r.kvs[0].key, r.kvs[r.count - keep].key))
		pr_warn("manager %s: cannot trim %s: %s", m->id, prefix, m->loop.err);
	etcd_range__free(&r);
}

/* One pass of the leader over the cluster; the revision it read, or 0. */
static int64_t tick(struct mgr *m)
{
	int64_t rev;
	struct snap s;

	m->again = m->moving = false;
	elect(m);
	/* Before the snapshot, so that it has what the workers' starts came to. */
	mgr__start_settle(m);
	if (!m->leader || snap__read(&m->loop, &s))
		return 0;
	rev = s.revision;
	/* A deposed leader (its lease expired while it was stuck) does nothing. */
	if (strcmp(s.leader, m->id)) {
		m->leader = false;
		snap__free(&s);
		return 0;
	}
	scan_maintenance(m, &s);
	scan_dead_hosts(m, &s);
	run_queue(m, &s);
	power__tick(m, &s);
	mgr__drs_tick(m, &s);
	snap__free(&s);
	if (cluster__now_ms() - m->trimmed_ms >= TRIM_EVERY_MS) {
		trim(m, K_HISTORY, m->keep_history);
		trim(m, K_EVENT, m->keep_events);
		m->trimmed_ms = cluster__now_ms();
	}
	return rev;
}

/* ---- the command ---- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: godwit manager --etcd URL --listen HOST:PORT [options]\n"
		"\n"
		"The cluster's brain (docs/cluster.md). Run any number: one leads (an etcd\n"
		"lease), the others wait and take over when it stops. Every manager serves the\n"
		"API of godwit cluster at https://HOST:PORT (mutual TLS); the leader runs the\n"
		"task queue, maintenance and restarts of the VMs of dead hosts. All state is in\n"
		"etcd.\n"
		"\n"
		"  --etcd URL[,URL]    etcd's client URLs (http:// or https://HOST:PORT), one per\n"
		"                      member\n");
	fputs(ETCD_TLS_USAGE(" "), out);
	fprintf(out,
		"  --listen HOST:PORT  the API's address\n"
		"  --id NAME           this manager's name (default: host name and pid)\n"
		"  --pki D             the cluster's certificates (default /etc/godwit/pki)\n"
		"  --cert NAME         use D/NAME.crt and D/NAME.key (default node)\n"
		"  --ha-grace S        seconds a dead host's VM without disks waits before it is\n"
		"                      restarted elsewhere, if its spec says restart: always\n"
		"                      (default 30; see docs/cluster.md for the risk); also\n"
		"                      how long a move whose two hosts are both down waits\n"
		"                      for either to come back before it fails\n"
		"  --power-off-cmd CMD shell command that powers a host off, run by the leader\n"
		"                      with the host's name as its argument (\"$1\") when it\n"
		"                      goes to standby (godwit cluster host standby H)\n"
		"  --power-on-cmd CMD  the same to power it on (godwit cluster host wake H);\n"
		"                      give every manager the same commands\n"
		"  --keep-history N    ended tasks kept in etcd, the newest (default 1000)\n"
		"  --keep-events N     events kept in etcd, the newest (default 1000)\n"
		"  -h, --help          this text\n");
}

static int parse(struct mgr *m, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"etcd", required_argument, NULL, 'e'},
	    {"listen", required_argument, NULL, 'l'},
	    {"id", required_argument, NULL, 'i'},
	    {"pki", required_argument, NULL, 'p'},
	    {"cert", required_argument, NULL, 'c'},
	    {"ha-grace", required_argument, NULL, 'g'},
	    {"power-off-cmd", required_argument, NULL, 'O'},
	    {"power-on-cmd", required_argument, NULL, 'N'},
	    {"keep-history", required_argument, NULL, 'H'},
	    {"keep-events", required_argument, NULL, 'E'},
	    {"help", no_argument, NULL, 'h'},
	    ETCD_TLS_OPTIONS,
	    {NULL, 0, NULL, 0},
	};
	const char *pki = "/etc/godwit/pki", *cert = PKI_NODE;
	char err[600], host[64];
	uint64_t v;
	int c;

	m->grace_ms = 30000;
	m->keep_history = m->keep_events = 1000;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (etcd__tls_option(&m->etcd_tls, c, optarg))
			continue;
		switch (c) {
		case 'e':
			snprintf(m->etcd_url, sizeof(m->etcd_url), "%s", optarg);
			break;
		case 'l':
			snprintf(m->listen, sizeof(m->listen), "%s", optarg);
			break;
		case 'i':
			if (!cluster__name_ok(optarg)) {
				pr_err("--id '%s': use 1..63 letters, digits, '-' or '_'", optarg);
				return 2;
			}
			snprintf(m->id, sizeof(m->id), "%s", optarg);
			break;
		case 'p':
			pki = optarg;
			break;
		case 'c':
			cert = optarg;
			break;
		case 'g':
			if (util__parse_u64(optarg, 0, 86400, &v)) {
				pr_err("--ha-grace: 0..86400 seconds");
				return 2;
			}
			m->grace_ms = (int64_t)v * 1000;
			break;
		case 'O':
		case 'N':
			if (!*optarg || strlen(optarg) >= sizeof(m->power_off) - 8) {
				pr_err("--power-%s-cmd: a shell command of 1..1000 characters",
				       c == 'O' ? "off" : "on");
				return 2;
			}
			snprintf(c == 'O' ? m->power_off : m->power_on, sizeof(m->power_off), "%s",
				 optarg);
			break;
		case 'H':
		case 'E':
			if (util__parse_u64(optarg, 1, 1000000, &v)) {
				pr_err("--keep-%s: 1..1000000", c == 'H' ? "history" : "events");
				return 2;
			}
			*(c == 'H' ? &m->keep_history : &m->keep_events) = (size_t)v;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || !m->etcd_url[0] || !m->listen[0]) {
		pr_err("manager needs --etcd and --listen (see godwit manager --help)");
		return 2;
	}
	if (!m->id[0]) {
		if (gethostname(host, sizeof(host)))
			snprintf(host, sizeof(host), "manager");
		host[40] = '\0';
		snprintf(m->id, sizeof(m->id), "%.40s-%d", host, (int)getpid());
		if (!cluster__name_ok(m->id))
			snprintf(m->id, sizeof(m->id), "manager-%d", (int)getpid());
	}
	if (tls_files__set(&m->tls, pki, cert, err, sizeof(err))) {
		pr_err("%s", err);
		return 2;
	}
	m->ctls.ca = m->tls.ca;
	m->ctls.cert = m->tls.cert;
	m->ctls.key = m->tls.key;
	return 0;
}

int manager__main(int argc, char **argv)
{
	struct mgr *m = calloc(1, sizeof(*m));
	char err[600] = "";
	struct pollfd pfd;
	sigset_t set;
	int ret, sfd;

	if (!m)
		return 1;
	ret = parse(m, argc, argv);
	if (ret) {
		free(m);
		return ret == 1 ? 0 : ret;
	}
	ret = 1;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (etcd__open(&m->loop, m->etcd_url, &m->etcd_tls) ||
	    etcd__open(&m->api, m->etcd_url, &m->etcd_tls)) {
		pr_err("%s", m->loop.err[0] ? m->loop.err : m->api.err);
		goto out;
	}
	if (mgr__start_init(m, err, sizeof(err))) {
		pr_err("%s", err);
		goto out;
	}
	if (https__start_gated(&m->https, m->listen, &m->tls, mgr__handle, mgr__console_gate, m,
			       err, sizeof(err))) {
		pr_err("%s", err);
		goto out;
	}
	pr_info("manager %s: API at https://%s, console at https://%s/console/", m->id, m->listen,
		m->listen);
	pfd.fd = sfd;
	pfd.events = POLLIN;
	for (;;) {
		int64_t rev = tick(m), seen;

		/*
		 * A tick that gave slots back or queued moves is followed at once, by one that
		 * starts them; moves under way are asked about every MIN_TICK_MS, since their
		 * end changes nothing in etcd. Waiting for a change instead left a host's link
		 * idle 0.6 to 1 s between one-at-a-time moves (docs/bench.md, "Emptying a
		 * host"). Otherwise the leader acts as soon as anything changes.
		 */
		if (poll(&pfd, 1, !rev ? TICK_MS : m->again ? 0 : MIN_TICK_MS) > 0)
			break;
		if (!rev || m->again || m->moving)
			continue;
		if (etcd__watch(&m->loop, K_ROOT, rev, TICK_MS, &seen) < 0 &&
		    poll(&pfd, 1, TICK_MS) > 0)
			break;
	}
	https__stop(m->https);
	mgr__start_exit(m);
	power__exit(m);
	/* Hand the lead over at once rather than after the lease's TTL. */
	if (m->leader)
		etcd__lease_revoke(&m->loop, m->lease);
	ret = 0;
out:
	mgr__start_exit(m);
	etcd__exit(&m->loop);
	etcd__exit(&m->api);
	if (sfd >= 0)
		close(sfd);
	free(m);
	return ret;
}
