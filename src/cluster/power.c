// SPDX-License-Identifier: GPL-2.0
/*
 * Standby (docs/cluster.md, "Standby"): the leader runs --power-off-cmd or
 * --power-on-cmd with the host's name as its argument, one at a time and without
 * holding up its passes, records their exit status and output in events, and moves
 * the host's power record along: powering-off -> standby -> powering-on -> (gone: the
 * host's agent is up again).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "godwit/log.h"
#include "manager.h"

#define POWER_TIMEOUT_MS 300000 /* a command that runs longer is killed and failed */
#define POWER_OUTPUT_MAX 1000	/* of its output, the end goes into the event */

/* The record changes only if nobody changed it since the snapshot. */
static bool put_power(struct mgr *m, const struct s_host *h, const json_t *rec)
{
	char key[160], *text = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
	struct etcd_txn t;
	bool ok = false;
	int ret;

	if (rec && !text)
		return false;
	snprintf(key, sizeof(key), K_POWER "%s", h->name);
	ret = mgr__leader_txn(m, &t);
	ret = ret ?: etcd_txn__cmp(&t, key, ETCD_MOD, ETCD_EQUAL, h->power_rev);
	ret = ret
		  ?: (text ? etcd_txn__put(&t, true, key, text, 0)
			   : etcd_txn__delete(&t, true, key, false));
	ret = ret ?: etcd__txn(&m->loop, &t, &ok);
	etcd_txn__free(&t);
	free(text);
	return !ret && ok;
}

static int spawn(struct mgr *m, const char *host, bool on)
{
	char tmpl[] = "/tmp/godwit-power-XXXXXX", script[1100];
	const char *cmd = on ? m->power_on : m->power_off;
	sigset_t none;
	pid_t pid;
	int fd;

	fd = mkostemp(tmpl, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	unlink(tmpl);
	/* The command is the operator's shell text; the host name comes as "$1". */
	snprintf(script, sizeof(script), "%s \"$1\"", cmd);
	pid = fork();
	if (pid < 0) {
		close(fd);
		return -errno;
	}
	if (!pid) {
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		setpgid(0, 0);
		if (dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(127);
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0)
			dup2(fd, 0);
		/* Nothing of the manager's (etcd's and the API's sockets) goes to the command. */
		close_range(3, ~0U, 0);
		execl("/bin/sh", "sh", "-c", script, "sh", host, (char *)NULL);
		_exit(127);
	}
	m->job.pid = pid;
	m->job.out = fd;
	m->job.on = on;
	m->job.started_ms = cluster__now_ms();
	snprintf(m->job.host, sizeof(m->job.host), "%s", host);
	return 0;
}

/* The end of the command's output, on one line. */
static void output(int fd, char *out, size_t len)
{
	off_t size = lseek(fd, 0, SEEK_END), from;
	ssize_t n;
	size_t i;

	from = size > (off_t)len - 1 ? size - (off_t)len + 1 : 0;
	n = pread(fd, out, len - 1, from);
	out[n > 0 ? n : 0] = '\0';
	for (i = 0; out[i]; i++)
		if (out[i] == '\n' || out[i] == '\r' || out[i] == '\t')
			out[i] = ' ';
	while (i && out[i - 1] == ' ')
		out[--i] = '\0';
}

/* The command has ended (status as waitpid gives it, or -1: killed for its time). */
static void ended(struct mgr *m, const struct snap *s, int status)
{
	int hi = snap__host(s, m->job.host), code;
	const char *what = m->job.on ? "power-on" : "power-off";
	char out[POWER_OUTPUT_MAX + 1];
	json_t *rec;

	output(m->job.out, out, sizeof(out));
	close(m->job.out);
	m->job.pid = 0;
	code = status < 0 ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	cluster__event(&m->loop, "%s: %s command %s %d%s%s", m->job.host, what,
		       status < 0 ? "killed after its time, status" : "exited", code,
		       *out ? ": " : "", out);
	if (hi < 0 || !s->hosts[hi].power)
		return;
	rec = json_deep_copy(s->hosts[hi].power);
	json_object_del(rec, "running");
	json_object_set_new(rec, "exit", json_integer(code));
	json_object_set_new(rec, "output", json_string(out));
	if (!m->job.on && code) {
		/* Not powered off: the host stays in service. */
		json_decref(rec);
		rec = NULL;
	} else if (!m->job.on) {
		json_object_set_new(rec, "state", json_string("standby"));
		json_object_set_new(rec, "since_ms", json_integer(cluster__now_ms()));
	} else if (code) {
		json_object_set_new(rec, "state", json_string("standby"));
	}
	if (put_power(m, &s->hosts[hi], rec) && !rec)
		cluster__event(&m->loop, "%s did not go to standby: it stays in service",
			       m->job.host);
	json_decref(rec);
}

static void follow(struct mgr *m, const struct snap *s)
{
	int status;
	pid_t r = waitpid(m->job.pid, &status, WNOHANG);

	if (r == m->job.pid) {
		ended(m, s, status);
	} else if (cluster__now_ms() - m->job.started_ms > POWER_TIMEOUT_MS) {
		kill(-m->job.pid, SIGKILL);
		waitpid(m->job.pid, &status, 0);
		ended(m, s, -1);
	}
}

/* Starts a host's command: marked running in its record first, so that it runs once. */
static void start(struct mgr *m, const struct s_host *h, bool on)
{
	json_t *rec = json_deep_copy(h->power);
	int ret;

	json_object_set_new(rec, "running", json_true());
	if (!put_power(m, h, rec)) {
		json_decref(rec);
		return;
	}
	json_decref(rec);
	ret = spawn(m, h->name, on);
	if (ret)
		cluster__event(&m->loop, "%s: cannot run the power-%s command: %s", h->name,
			       on ? "on" : "off", strerror(-ret));
}

void power__tick(struct mgr *m, const struct snap *s)
{
	size_t i;

	if (m->job.pid) {
		follow(m, s);
		return;
	}
	for (i = 0; i < s->nr_hosts; i++) {
		const struct s_host *h = &s->hosts[i];
		const char *state = cluster__str(h->power, "state", "");

		if (!strcmp(state, "powering-on") && h->alive) {
			/* Its agent registered again: back in service. */
			if (put_power(m, h, NULL))
				cluster__event(&m->loop, "%s is back from standby", h->name);
			continue;
		}
		/*
		 * "running" with no command of ours: a leader died while it ran; the
		 * commands are run again (they must be safe to repeat).
		 */
		if (!strcmp(state, "powering-off") && m->power_off[0]) {
			start(m, h, false);
			return;
		}
		if (!strcmp(state, "powering-on") && !json_object_get(h->power, "exit") &&
		    m->power_on[0]) {
			start(m, h, true);
			return;
		}
	}
}

void power__exit(struct mgr *m)
{
	int status;

	/* A command under way is left to finish; its end is seen by no one. */
	if (m->job.pid && waitpid(m->job.pid, &status, WNOHANG) == 0)
		pr_warn("power command for %s still running (pid %d)", m->job.host,
			(int)m->job.pid);
	if (m->job.pid)
		close(m->job.out);
	m->job.pid = 0;
}
