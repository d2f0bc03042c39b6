// SPDX-License-Identifier: GPL-2.0
/*
 * The start of a move, off the leader's thread: the destination's `godwit receive`
 * spawned through its agent and waited for, then the source's migrate. One after
 * another these took about 0.9 s a move on a busy machine, so 20 s moves never
 * overlapped more than about 40 (docs/cluster.md, "Scale"). A pool of workers makes
 * those calls for many moves at once.
 *
 * The leader keeps every write to etcd: it claims a move's slots before it hands the
 * move over (so the limits hold whatever the workers do) and records what came of it
 * at its next tick (mgr__start_settle), only if the task's record is still the one it
 * claimed. Until then the leader leaves the task alone (mgr__start_busy). A manager that
 * stops or loses the lead meanwhile leaves the task "starting", which the next leader
 * recovers from what the source says, as before.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/cluster/cluster.h"
#include "godwit/log.h"
#include "manager.h"

/*
 * Each blocks in one agent call at a time; more than the moves one tick starts on a
 * few hosts would only queue at the agents, which answer one request at a time.
 */
#define START_WORKERS 16
#define START_CALL_S  30

enum start_state { START_QUEUED, START_RUNNING, START_DONE };

struct start_job {
	struct start_job *next;
	enum start_state state;
	char id[80];
	char vm[NAME_MAX_LEN + 1], src[NAME_MAX_LEN + 1], dst[NAME_MAX_LEN + 1];
	char src_url[256], dst_url[256];
	json_t *task;	      /* the record as claimed */
	char *claimed;	      /* its text in etcd: what settle compares against */
	json_t *spec;	      /* the VM's */
	json_t *to;	      /* the receive's stream address, once it listens */
	int64_t bandwidth;    /* the stream's cap (bytes/s), 0: none */
	bool ok;	      /* both agents took their part */
	char err[600];	      /* else why not */
	int64_t migrating_ms; /* when the source took the migrate */
};

struct start_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t threads[START_WORKERS];
	int nr_threads;
	bool stop;
	struct start_job *jobs; /* newest first, whatever their state */
};

static void job_free(struct start_job *j)
{
	json_decref(j->task);
	json_decref(j->spec);
	json_decref(j->to);
	free(j->claimed);
	free(j);
}

/* method on /vms/VM, then what (a verb, or nothing). */
static int call(struct mgr *m, const char *url, const char *method, const char *vm,
		const char *what, const json_t *req, long *status, json_t **reply, char *err,
		size_t errlen)
{
	char path[160];

	snprintf(path, sizeof(path), "/vms/%s%s", vm, what);
	return api_client__url(url, &m->ctls, method, path, req, START_CALL_S, status, reply, err,
			       errlen);
}

/* The destination's receive, then the source's migrate; on failure nothing is left behind. */
static void run(struct mgr *m, struct start_job *j)
{
	json_t *reply = NULL, *req;
	char scratch[300];
	long status = 0;
	int ret;

	ret = call(m, j->dst_url, "POST", j->vm, "/receive", j->spec, &status, &reply, j->err,
		   sizeof(j->err));
	if (!ret && status != 201)
		snprintf(j->err, sizeof(j->err), "%s: %s", j->dst,
			 cluster__str(reply, "error", "?"));
	if (ret || status != 201 || !json_is_string(json_object_get(reply, "to"))) {
		if (!ret && status == 201)
			snprintf(j->err, sizeof(j->err), "%s: a receive without an address",
				 j->dst);
		json_decref(reply);
		return;
	}
	j->to = json_incref(json_object_get(reply, "to"));
	json_decref(reply);
	req = json_pack("{s:O}", "to", j->to);
	if (!req) {
		snprintf(j->err, sizeof(j->err), "out of memory");
		goto undo;
	}
	if (j->bandwidth > 0)
		json_object_set_new(req, "max_bandwidth", json_integer((json_int_t)j->bandwidth));
	ret = call(m, j->src_url, "POST", j->vm, "/migrate", req, &status, &reply, j->err,
		   sizeof(j->err));
	json_decref(req);
	if (!ret && status != 202)
		snprintf(j->err, sizeof(j->err), "%s: %s", j->src,
			 cluster__str(reply, "error", "?"));
	json_decref(reply);
	if (!ret && status == 202) {
		j->ok = true;
		j->migrating_ms = cluster__now_ms();
		return;
	}
undo:
	/* The receive would wait for a stream that never comes: end it now. */
	call(m, j->dst_url, "DELETE", j->vm, "", NULL, &status, &reply, scratch, sizeof(scratch));
	json_decref(reply);
}

static void *worker(void *arg)
{
	struct mgr *m = arg;
	struct start_pool *p = m->starts;
	struct start_job *j;

	pthread_setname_np(pthread_self(), "start");
	pthread_mutex_lock(&p->lock);
	for (;;) {
		/* The oldest queued job: the list is newest first. */
		struct start_job *pick = NULL;

		for (j = p->jobs; j; j = j->next)
			if (j->state == START_QUEUED)
				pick = j;
		/* Stopping: what has not begun is left "starting" for the next leader. */
		if (p->stop)
			break;
		if (!pick) {
			pthread_cond_wait(&p->cond, &p->lock);
			continue;
		}
		pick->state = START_RUNNING;
		pthread_mutex_unlock(&p->lock);
		run(m, pick);
		pthread_mutex_lock(&p->lock);
		pick->state = START_DONE;
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int mgr__start_init(struct mgr *m, char *err, size_t errlen)
{
	struct start_pool *p = calloc(1, sizeof(*p));
	int ret;

	if (!p) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	m->starts = p;
	for (p->nr_threads = 0; p->nr_threads < START_WORKERS; p->nr_threads++) {
		ret = -pthread_create(&p->threads[p->nr_threads], NULL, worker, m);
		if (ret) {
			snprintf(err, errlen, "cannot start the start workers: %s", strerror(-ret));
			mgr__start_exit(m);
			return ret;
		}
	}
	return 0;
}

bool mgr__start_busy(struct mgr *m, const char *task_id)
{
	struct start_pool *p = m->starts;
	struct start_job *j;
	bool busy = false;

	pthread_mutex_lock(&p->lock);
	for (j = p->jobs; j && !busy; j = j->next)
		busy = !strcmp(j->id, task_id);
	pthread_mutex_unlock(&p->lock);
	return busy;
}

static int host_url(const struct snap *s, const char *name, char *url, size_t len)
{
	int h = snap__host(s, name);
	const char *u = h >= 0 ? cluster__str(s->hosts[h].rec, "url", NULL) : NULL;

	if (!u || strlen(u) >= len)
		return -ENOENT;
	snprintf(url, len, "%s", u);
	return 0;
}

int mgr__start_submit(struct mgr *m, const struct snap *s, const struct s_task *st,
		      int64_t bandwidth)
{
	const struct s_vm *vm = snap__vm(s, cluster__str(st->t, "vm", ""));
	struct start_pool *p = m->starts;
	struct start_job *j = calloc(1, sizeof(*j));

	if (!j)
		return -ENOMEM;
	snprintf(j->id, sizeof(j->id), "%s", st->id);
	snprintf(j->vm, sizeof(j->vm), "%s", vm ? vm->name : "");
	snprintf(j->src, sizeof(j->src), "%s", cluster__str(st->t, "src", ""));
	snprintf(j->dst, sizeof(j->dst), "%s", cluster__str(st->t, "dst", ""));
	/* The text put_task wrote: the same object dumped the same way. */
	j->claimed = json_dumps(st->t, JSON_COMPACT);
	j->task = json_deep_copy(st->t);
	j->spec = vm ? json_deep_copy(vm->spec) : NULL;
	/*
	 * What lets the destination keep its copy if the end of the move is never recorded:
	 * the owner record the move started from (docs/cluster.md, "A move whose end was lost").
	 */
	if (j->spec && !strcmp(vm->owner, j->src) &&
	    (json_object_set_new(j->spec, "from", json_string(j->src)) ||
	     json_object_set_new(j->spec, "owner_rev", json_integer(vm->owner_rev)))) {
		json_decref(j->spec);
		j->spec = NULL;
	}
	if (!j->claimed || !j->task || !j->spec) {
		job_free(j);
		return -ENOMEM;
	}
	j->state = START_QUEUED;
	j->bandwidth = bandwidth;
	if (host_url(s, j->dst, j->dst_url, sizeof(j->dst_url)) ||
	    host_url(s, j->src, j->src_url, sizeof(j->src_url))) {
		snprintf(j->err, sizeof(j->err), "host %s or %s has no agent record", j->src,
			 j->dst);
		j->state = START_DONE;
	}
	pthread_mutex_lock(&p->lock);
	j->next = p->jobs;
	p->jobs = j;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

/* What a finished start came to, in etcd: "migrating" and the stream's address, or a retry. */
static void record(struct mgr *m, const struct start_job *j)
{
	struct s_task st = {.t = j->task};
	json_t *task;

	snprintf(st.id, sizeof(st.id), "%s", j->id);
	if (!j->ok) {
		mgr__retry(m, &st, j->err, j->claimed);
		return;
	}
	task = json_deep_copy(j->task);
	if (!task)
		return; /* left "starting": the source's migration tells the next tick */
	json_object_set_new(task, "phase", json_string("migrating"));
	json_object_set(task, "to", j->to);
	json_object_set_new(task, "migrating_ms", json_integer(j->migrating_ms));
	if (mgr__update_task(m, &st, task, j->claimed))
		pr_warn("manager %s: %s: the start of %s not recorded (the task changed or the "
			"lead was lost)",
			m->id, j->id, j->vm);
	json_decref(task);
}

void mgr__start_settle(struct mgr *m)
{
	struct start_pool *p = m->starts;
	struct start_job **pp, *done = NULL, *j;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	for (pp = &p->jobs; *pp;) {
		j = *pp;
		if (j->state != START_DONE) {
			pp = &j->next;
			continue;
		}
		*pp = j->next;
		j->next = done;
		done = j;
	}
	pthread_mutex_unlock(&p->lock);
	/* Oldest first, as they were handed over. */
	while (done) {
		j = done;
		done = j->next;
		mgr__hold_lead(m);
		record(m, j);
		job_free(j);
	}
}

void mgr__start_exit(struct mgr *m)
{
	struct start_pool *p = m->starts;
	struct start_job *j;
	int i;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < p->nr_threads; i++)
		pthread_join(p->threads[i], NULL);
	/* While it still may lead: what the running starts came to. */
	mgr__start_settle(m);
	while (p->jobs) {
		j = p->jobs;
		p->jobs = j->next;
		job_free(j);
	}
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
	m->starts = NULL;
}
