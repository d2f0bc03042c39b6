// SPDX-License-Identifier: GPL-2.0
/*
 * `godwit agent`: one per host. Registers the host in etcd under a lease, publishes its
 * load, runs VMs as `godwit run` / `godwit receive` processes of their own (their own
 * sessions: an agent that dies leaves them running) and drives them through their API
 * sockets for the managers, over HTTPS with mutual TLS (docs/cluster.md, "The agent").
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "godwit/api_client.h"
#include "godwit/cluster/cluster.h"
#include "godwit/cluster/keys.h"
#include "godwit/cluster/link.h"
#include "godwit/cluster/load.h"
#include "godwit/cluster/tls.h"
#include "godwit/log.h"
#include "godwit/util.h"

#define AGENT_MAX_VMS  256
#define AGENT_TICK_MS  2000
#define VM_API_TIMEOUT 5
/* How long fence() waits for a received copy's VM to say whether it resumed. */
#define FENCE_RETRY_MS 60000
#define START_WAIT_MS  20000
/*
 * Threads answering the API: a VM's start (spawned and waited for until it listens)
 * holds one, so that the others go on answering (the leader's many starts at once,
 * its polls of moves under way).
 */
#define AGENT_HTTPS_THREADS 8

struct lvm {
	char name[NAME_MAX_LEN + 1];
	pid_t pid;
	bool child;    /* ours to reap; an adopted VM is not */
	bool incoming; /* a `godwit receive` */
	int64_t since_ms;
	/* A received copy: the owner record its move started from ("" and 0: none). */
	char from[NAME_MAX_LEN + 1];
	int64_t owner_rev;
};

struct agent {
	char name[NAME_MAX_LEN + 1];
	char listen[128], address[128], state_dir[256], godwit[PATH_MAX], etcd_url[200];
	struct etcd_tls etcd_tls;
	int64_t cpus, ttl, lease;
	int64_t link_mbit; /* -1 until known: --link-mbit, else the address's interface */
	uint64_t memory;
	struct tls_files tls;
	struct etcd etcd; /* the main loop's; handlers use none */
	struct etcd ka;	  /* the keepalive thread's */
	pthread_t ka_thread;
	int ka_stop[2];
	bool lease_lost; /* set by the keepalive thread, atomically */
	struct https_server *https;
	pthread_mutex_t lock;
	struct lvm vms[AGENT_MAX_VMS];
	size_t nr_vms;
	/* The names being started, one per API thread at most: "" for none. */
	char starting[AGENT_HTTPS_THREADS][NAME_MAX_LEN + 1];
	struct load_tracker load; /* the main loop's */
	bool shared;		  /* --shared-machine: host_cpu and host_memory are not its own */
	bool vm_verbose;	  /* --vm-verbose: its VMs log at -v */
};

/* ---- the VMs on this host ---- */

static void vm_path(const struct agent *a, const char *name, const char *ext, char *out, size_t len)
{
	snprintf(out, len, "%s/%s.%s", a->state_dir, name, ext);
}

static struct lvm *find_vm(struct agent *a, const char *name)
{
	size_t i;

	for (i = 0; i < a->nr_vms; i++)
		if (!strcmp(a->vms[i].name, name))
			return &a->vms[i];
	return NULL;
}

static void drop_vm(struct agent *a, struct lvm *v)
{
	char path[512];

	vm_path(a, v->name, "pid", path, sizeof(path));
	unlink(path);
	*v = a->vms[--a->nr_vms];
}

/* Whether a VM's process has ended (reaping it if it is our child). */
static bool process_gone(pid_t pid, bool child, int *status)
{
	pid_t r;

	*status = -1;
	if (child) {
		r = waitpid(pid, status, WNOHANG);
		return r == pid || (r < 0 && errno == ECHILD);
	}
	return kill(pid, 0) < 0 && errno == ESRCH;
}

static int vm_call(const struct agent *a, const char *name, const char *method, const char *path,
		   const json_t *req, long timeout_s, long *status, json_t **reply, char *err,
		   size_t errlen)
{
	char base[600];

	snprintf(base, sizeof(base), "unix:%s/%s.sock", a->state_dir, name);
	return api_client__url(base, NULL, method, path, req, timeout_s, status, reply, err,
			       errlen);
}

/* The last lines of a VM's log, for an error that says why it did not start. */
static void log_tail(const struct agent *a, const char *name, char *out, size_t len)
{
	char path[512], buf[2048];
	ssize_t n;
	int fd;
	char *p;

	out[0] = '\0';
	vm_path(a, name, "log", path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (lseek(fd, 0, SEEK_END) > (off_t)sizeof(buf) - 1)
		lseek(fd, -(off_t)sizeof(buf) + 1, SEEK_END);
	else
		lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	while (n && buf[n - 1] == '\n')
		buf[--n] = '\0';
	p = strrchr(buf, '\n');
	snprintf(out, len, "%.500s", p ? p + 1 : buf);
}

static int add_arg(char **argv, int *argc, int max, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int add_arg(char **argv, int *argc, int max, const char *fmt, ...)
{
	va_list ap;
	int ret;

	if (*argc >= max - 1)
		return -E2BIG;
	va_start(ap, fmt);
	ret = vasprintf(&argv[*argc], fmt, ap);
	va_end(ap);
	if (ret < 0)
		return -ENOMEM;
	(*argc)++;
	argv[*argc] = NULL;
	return 0;
}

/* The command line of a VM: `godwit run` from its spec, or `godwit receive` at to. */
static int vm_argv(const struct agent *a, const json_t *spec, const char *listen, char **argv,
		   int max)
{
	const char *name = cluster__str(spec, "name", "");
	const json_t *v;
	int argc = 0, ret = 0;
	size_t i;

	argv[0] = NULL;
	ret |= add_arg(argv, &argc, max, "%s", a->godwit);
	ret |= add_arg(argv, &argc, max, listen ? "receive" : "run");
	if (a->vm_verbose)
		ret |= add_arg(argv, &argc, max, "-v");
	if (listen) {
		ret |= add_arg(argv, &argc, max, "--listen");
		ret |= add_arg(argv, &argc, max, "%s", listen);
	} else {
		ret |= add_arg(argv, &argc, max, "--kernel");
		ret |= add_arg(argv, &argc, max, "%s", cluster__str(spec, "kernel", ""));
		ret |= add_arg(argv, &argc, max, "--memory");
		ret |= add_arg(argv, &argc, max, "%" PRId64, cluster__int(spec, "memory", 0));
		ret |= add_arg(argv, &argc, max, "--cpus");
		ret |= add_arg(argv, &argc, max, "%" PRId64, cluster__int(spec, "cpus", 1));
		ret |= add_arg(argv, &argc, max, "--cmdline");
		ret |= add_arg(argv, &argc, max, "%s", cluster__str(spec, "cmdline", ""));
	}
	ret |= add_arg(argv, &argc, max, "--api");
	ret |= add_arg(argv, &argc, max, "%s/%s.sock", a->state_dir, name);
	ret |= add_arg(argv, &argc, max, "--console");
	ret |= add_arg(argv, &argc, max, "file:%s/%s.console", a->state_dir, name);
	json_array_foreach(json_object_get(spec, "disks"), i, v)
	{
		const char *d = json_string_value(v);
		/* receive takes this host's image path only; the rest travels in the stream */
		size_t n = listen && strchr(d, ',') ? (size_t)(strchr(d, ',') - d) : strlen(d);

		ret |= add_arg(argv, &argc, max, "--disk");
		ret |= add_arg(argv, &argc, max, "%.*s", (int)n, d);
	}
	json_array_foreach(json_object_get(spec, "nets"), i, v)
	{
		const char *d = json_string_value(v);
		size_t n =
		    listen && strstr(d, ",mac=") ? (size_t)(strstr(d, ",mac=") - d) : strlen(d);

		ret |= add_arg(argv, &argc, max, "--net");
		ret |= add_arg(argv, &argc, max, "%.*s", (int)n, d);
	}
	return ret ? -E2BIG : 0;
}

static void free_argv(char **argv)
{
	for (; *argv; argv++)
		free(*argv);
}

/* Forks a VM into a session of its own: it outlives the agent (kill -9 included). */
static int spawn(const struct agent *a, const struct lvm *v, char **argv, pid_t *pid)
{
	const char *name = v->name;
	char log_path[512], pid_path[512], num[128];
	sigset_t none;
	int fd, logfd;
	pid_t p;

	vm_path(a, name, "log", log_path, sizeof(log_path));
	logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (logfd < 0)
		return -errno;
	p = fork();
	if (p < 0) {
		close(logfd);
		return -errno;
	}
	if (p == 0) {
		setsid();
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		fd = open("/dev/null", O_RDONLY);
		if (fd < 0 || dup2(fd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
			_exit(127);
		/* Nothing of the agent's (etcd's and the managers' connections) goes along. */
		close_range(3, ~0U, 0);
		execv(argv[0], argv);
		_exit(127);
	}
	close(logfd);
	vm_path(a, name, "pid", pid_path, sizeof(pid_path));
	fd = open(pid_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd >= 0) {
		/* A received copy's origin, for the agent that may adopt it (adopt()). */
		if (v->from[0])
			snprintf(num, sizeof(num), "%d\nfrom %s %" PRId64 "\n", (int)p, v->from,
				 v->owner_rev);
		else
			snprintf(num, sizeof(num), "%d\n", (int)p);
		if (write(fd, num, strlen(num)) < 0)
			pr_warn("%s: cannot write its pid file", name);
		close(fd);
	}
	*pid = p;
	return 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* Waits until a new VM answers on its API (running) or its process ends. */
static int wait_started(struct agent *a, const char *name, pid_t pid, char *err, size_t errlen)
{
	char tail[512], e2[256];
	json_t *reply;
	long status;
	int i, st;

	for (i = 0; i < START_WAIT_MS / 50; i++) {
		if (process_gone(pid, true, &st)) {
			log_tail(a, name, tail, sizeof(tail));
			snprintf(err, errlen, "%s did not start (exit %d): %s", name,
				 WIFEXITED(st) ? WEXITSTATUS(st) : -1, tail);
			return -EIO;
		}
		if (!vm_call(a, name, "GET", "/vm", NULL, 1, &status, &reply, e2, sizeof(e2)) &&
		    status == 200) {
			json_decref(reply);
			return 0;
		}
		json_decref(reply);
		sleep_ms(50);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	snprintf(err, errlen, "%s did not answer on its API within %d s", name,
		 START_WAIT_MS / 1000);
	return -ETIMEDOUT;
}

/* A port on address that was free a moment ago (receive has no port 0). */
static int free_port(const char *address, struct sockaddr_in *sin)
{
	socklen_t len = sizeof(*sin);
	int fd, ret = 0;

	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	if (inet_pton(AF_INET, address, &sin->sin_addr) != 1)
		return -EINVAL;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)sin, sizeof(*sin)) ||
	    getsockname(fd, (struct sockaddr *)sin, &len))
		ret = -errno;
	close(fd);
	return ret;
}

/* Whether a receive listens yet: a connection it will close as not a stream. */
static bool listening(const struct sockaddr_in *sin)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = connect(fd, (const struct sockaddr *)sin, sizeof(*sin)) == 0;
	close(fd);
	return ok;
}

static int wait_listening(struct agent *a, const char *name, pid_t pid,
			  const struct sockaddr_in *sin, char *err, size_t errlen)
{
	char tail[512];
	int i, st;

	for (i = 0; i < START_WAIT_MS / 50; i++) {
		if (process_gone(pid, true, &st)) {
			log_tail(a, name, tail, sizeof(tail));
			snprintf(err, errlen, "receive of %s ended (exit %d): %s", name,
				 WIFEXITED(st) ? WEXITSTATUS(st) : -1, tail);
			return -EIO;
		}
		if (listening(sin))
			return 0;
		sleep_ms(50);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	snprintf(err, errlen, "receive of %s did not listen within %d s", name,
		 START_WAIT_MS / 1000);
	return -ETIMEDOUT;
}

/* v: its name, pid, child, incoming and origin; the agent's copy starts its clock. */
static int add_vm(struct agent *a, const struct lvm *v)
{
	pthread_mutex_lock(&a->lock);
	if (a->nr_vms == AGENT_MAX_VMS) {
		pthread_mutex_unlock(&a->lock);
		return -ENOSPC;
	}
	a->vms[a->nr_vms] = *v;
	a->vms[a->nr_vms++].since_ms = cluster__now_ms();
	pthread_mutex_unlock(&a->lock);
	return 0;
}

/* ---- the HTTPS API (docs/cluster.md, "Agent API") ---- */

/*
 * Whether no copy of name runs here, after waiting (at most 20 s) for one that has
 * handed its VM over to end: a VM that comes back right after it left finds its old
 * source process still tearing down (freeing guest RAM takes seconds under load).
 */
static bool wait_departed(struct agent *a, const char *name)
{
	char err[256];
	struct lvm v, *cur;
	json_t *mig = NULL;
	long status;
	int i, st;
	bool gone = false;

	pthread_mutex_lock(&a->lock);
	cur = find_vm(a, name);
	if (cur)
		v = *cur;
	pthread_mutex_unlock(&a->lock);
	if (!cur)
		return true;
	/* Only a source that has handed over (or no longer answers) is on its way out. */
	if (!vm_call(a, name, "GET", "/vm/migration", NULL, 2, &status, &mig, err, sizeof(err)) &&
	    status == 200 && strcmp(cluster__str(mig, "status", ""), "completed")) {
		json_decref(mig);
		return false;
	}
	json_decref(mig);
	for (i = 0; i < 400 && !gone; i++) {
		gone = process_gone(v.pid, v.child, &st);
		if (!gone)
			sleep_ms(50);
	}
	if (!gone)
		return false;
	pthread_mutex_lock(&a->lock);
	cur = find_vm(a, name);
	if (cur && cur->pid == v.pid)
		drop_vm(a, cur);
	pthread_mutex_unlock(&a->lock);
	return true;
}

/* Claims name for a start: false if a copy runs or another start has it. */
static bool claim_start(struct agent *a, const char *name, bool claim)
{
	bool ok = !claim;
	int i;

	pthread_mutex_lock(&a->lock);
	if (claim && !find_vm(a, name)) {
		ok = true;
		for (i = 0; i < AGENT_HTTPS_THREADS && ok; i++)
			ok = strcmp(a->starting[i], name);
		for (i = 0; i < AGENT_HTTPS_THREADS && ok; i++)
			if (!a->starting[i][0]) {
				snprintf(a->starting[i], sizeof(a->starting[i]), "%s", name);
				break;
			}
		ok = ok && i < AGENT_HTTPS_THREADS;
	}
	for (i = 0; i < AGENT_HTTPS_THREADS && !claim; i++)
		if (!strcmp(a->starting[i], name))
			a->starting[i][0] = '\0';
	pthread_mutex_unlock(&a->lock);
	return ok;
}

static int start_claimed(struct agent *a, const json_t *spec, bool incoming,
			 struct api_response *resp);

static int start_vm(struct agent *a, const json_t *spec, bool incoming, struct api_response *resp)
{
	const char *name = cluster__str(spec, "name", "");
	char err[768] = "";
	int ret;

	if (cluster__spec_check(spec, err, sizeof(err))) {
		api__error(resp, 400, "%s", err);
		return 0;
	}
	if (!wait_departed(a, name) || !claim_start(a, name, true)) {
		api__error(resp, 409, "%s already runs on %s", name, a->name);
		return 0;
	}
	ret = start_claimed(a, spec, incoming, resp);
	claim_start(a, name, false);
	return ret;
}

/* The start itself, name claimed (its process, pid file and log are this start's). */
static int start_claimed(struct agent *a, const json_t *spec, bool incoming,
			 struct api_response *resp)
{
	const char *name = cluster__str(spec, "name", "");
	char err[768] = "", *argv[64], listen[160] = "";
	struct lvm v = {.child = true, .incoming = incoming};
	struct sockaddr_in sin;
	int ret, attempt;
	pid_t pid = 0;

	snprintf(v.name, sizeof(v.name), "%s", name);
	if (incoming) {
		snprintf(v.from, sizeof(v.from), "%s", cluster__str(spec, "from", ""));
		v.owner_rev = cluster__int(spec, "owner_rev", 0);
	}
	/* A port taken between our probe and the receive's bind: try another. */
	for (attempt = 0; attempt < 3; attempt++) {
		if (incoming) {
			ret = free_port(a->address, &sin);
			if (ret) {
				api__error(resp, 500, "no free port on %s: %s", a->address,
					   strerror(-ret));
				return 0;
			}
			snprintf(listen, sizeof(listen), "tcp:%s:%u", a->address,
				 ntohs(sin.sin_port));
		}
		ret = vm_argv(a, spec, incoming ? listen : NULL, argv, 64);
		if (!ret)
			ret = spawn(a, &v, argv, &pid);
		free_argv(argv);
		if (ret) {
			api__error(resp, 500, "cannot start %s: %s", name, strerror(-ret));
			return 0;
		}
		ret = incoming ? wait_listening(a, name, pid, &sin, err, sizeof(err))
			       : wait_started(a, name, pid, err, sizeof(err));
		if (!ret || !incoming)
			break;
	}
	if (ret) {
		api__error(resp, 409, "%s", err);
		return 0;
	}
	v.pid = pid;
	ret = add_vm(a, &v);
	if (ret) {
		kill(pid, SIGKILL);
		api__error(resp, 507, "%s runs %d VMs already", a->name, AGENT_MAX_VMS);
		return 0;
	}
	pr_info("%s: %s %s (pid %d)", a->name, incoming ? "receiving" : "started", name, (int)pid);
	resp->status = 201;
	resp->body = incoming ? json_pack("{s:s, s:s, s:i}", "name", name, "to", listen, "pid", pid)
			      : json_pack("{s:s, s:i}", "name", name, "pid", pid);
	return 0;
}

/* An incoming VM that runs is this host's like any other (its source has handed it over). */
static void settle(struct agent *a, const struct lvm *v)
{
	struct lvm *cur;

	pthread_mutex_lock(&a->lock);
	cur = find_vm(a, v->name);
	if (cur && cur->pid == v->pid)
		cur->incoming = false;
	pthread_mutex_unlock(&a->lock);
}

/* What an agent says of one VM: its process, and its API's state and migration. */
static json_t *vm_info(struct agent *a, const struct lvm *v)
{
	json_t *info = json_pack("{s:s, s:i, s:b, s:I}", "name", v->name, "pid", v->pid, "incoming",
				 v->incoming, "since_ms", (json_int_t)v->since_ms);
	json_t *vm = NULL, *mig = NULL;
	char err[256];
	long status;

	/* An incoming VM's API answers only once a source has connected: do not wait. */
	if (!vm_call(a, v->name, "GET", "/vm", NULL, v->incoming ? 1 : VM_API_TIMEOUT, &status, &vm,
		     err, sizeof(err)) &&
	    status == 200 && json_is_object(vm)) {
		json_object_set(info, "state", json_object_get(vm, "state"));
		if (v->incoming && !strcmp(cluster__str(vm, "state", ""), "running")) {
			settle(a, v);
			json_object_set_new(info, "incoming", json_false());
		}
		json_object_set(info, "uptime_ms", json_object_get(vm, "uptime_ms"));
		json_object_set(info, "memory",
				json_object_get(json_object_get(vm, "config"), "memory"));
		if (!vm_call(a, v->name, "GET", "/vm/migration", NULL, VM_API_TIMEOUT, &status,
			     &mig, err, sizeof(err)) &&
		    status == 200 && json_is_object(mig))
			json_object_set(info, "migration", mig);
	} else {
		json_object_set_new(info, "state",
				    json_string(v->incoming ? "incoming" : "unknown"));
	}
	json_decref(vm);
	json_decref(mig);
	return info;
}

/* Copies a VM's entry so that the lock is not held across API calls. */
static bool get_vm(struct agent *a, const char *name, struct lvm *out)
{
	struct lvm *v;

	pthread_mutex_lock(&a->lock);
	v = find_vm(a, name);
	if (v)
		*out = *v;
	pthread_mutex_unlock(&a->lock);
	return v;
}

static int stop_vm(struct agent *a, const struct lvm *v, struct api_response *resp)
{
	char err[256];
	json_t *reply;
	long status;
	int i, st;

	/* Ask the VM to end; a receive that has no VM yet only ends by signal. */
	if (v->incoming ||
	    vm_call(a, v->name, "PUT", "/vm/shutdown", NULL, 2, &status, &reply, err, sizeof(err)))
		kill(v->pid, SIGTERM);
	else
		json_decref(reply);
	for (i = 0; i < 200; i++) {
		if (process_gone(v->pid, v->child, &st))
			break;
		sleep_ms(50);
	}
	if (i == 200) {
		kill(v->pid, SIGKILL);
		for (i = 0; i < 100 && !process_gone(v->pid, v->child, &st); i++)
			sleep_ms(50);
	}
	pthread_mutex_lock(&a->lock);
	v = find_vm(a, v->name);
	if (v)
		drop_vm(a, (struct lvm *)v);
	pthread_mutex_unlock(&a->lock);
	if (resp)
		resp->status = 204;
	return 0;
}

static int vm_route(struct agent *a, const struct api_request *req, const char *name,
		    const char *verb, struct api_response *resp)
{
	char err[512];
	struct lvm v;
	json_t *reply;
	long status;
	int ret;

	if (!strcmp(verb, "receive") && !strcmp(req->method, "POST")) {
		if (!req->body || strcmp(cluster__str(req->body, "name", ""), name)) {
			api__error(resp, 400, "the body is the VM's spec, with \"name\": \"%s\"",
				   name);
			return 0;
		}
		if ((json_object_get(req->body, "from") ||
		     json_object_get(req->body, "owner_rev")) &&
		    (!cluster__name_ok(cluster__str(req->body, "from", NULL)) ||
		     cluster__int(req->body, "owner_rev", 0) <= 0)) {
			api__error(resp, 400,
				   "\"from\" is a host's name and \"owner_rev\" the "
				   "owner record's revision > 0, both or neither");
			return 0;
		}
		return start_vm(a, req->body, true, resp);
	}
	if (!get_vm(a, name, &v)) {
		api__error(resp, 404, "no VM %s on %s", name, a->name);
		return 0;
	}
	if (!*verb && !strcmp(req->method, "GET")) {
		resp->body = vm_info(a, &v);
		return 0;
	}
	if (!*verb && !strcmp(req->method, "DELETE"))
		return stop_vm(a, &v, resp);
	if ((!strcmp(verb, "migrate") || !strcmp(verb, "cancel")) && !strcmp(req->method, "POST")) {
		ret = vm_call(a, name, "PUT",
			      !strcmp(verb, "migrate") ? "/vm/migrate" : "/vm/migrate/cancel",
			      !strcmp(verb, "migrate") ? req->body : NULL, VM_API_TIMEOUT, &status,
			      &reply, err, sizeof(err));
		if (ret) {
			api__error(resp, 502, "%s", err);
			return 0;
		}
		resp->status = (int)status;
		resp->body = reply;
		return 0;
	}
	api__error(resp, 404, "no such resource: %s %s", req->method, req->path);
	return 0;
}

static int handle(void *opaque, const struct api_request *req, struct api_response *resp)
{
	struct agent *a = opaque;
	char name[NAME_MAX_LEN + 2];
	const char *rest, *slash;
	json_t *list;
	size_t i, n;
	struct lvm copy[AGENT_MAX_VMS];

	if (!strcmp(req->path, "/host") && !strcmp(req->method, "GET")) {
		resp->body = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "name", a->name, "address",
				       a->address, "cpus", (json_int_t)a->cpus, "memory",
				       (json_int_t)a->memory, "lease", (json_int_t)a->lease,
				       "link_mbit", (json_int_t)a->link_mbit);
		return resp->body ? 0 : -ENOMEM;
	}
	if (!strcmp(req->path, "/vms") && !strcmp(req->method, "GET")) {
		pthread_mutex_lock(&a->lock);
		n = a->nr_vms;
		memcpy(copy, a->vms, n * sizeof(copy[0]));
		pthread_mutex_unlock(&a->lock);
		list = json_array();
		for (i = 0; i < n; i++)
			json_array_append_new(list, vm_info(a, &copy[i]));
		resp->body = json_pack("{s:o}", "vms", list);
		return 0;
	}
	if (!strcmp(req->path, "/vms") && !strcmp(req->method, "POST"))
		return start_vm(a, req->body, false, resp);
	if (strncmp(req->path, "/vms/", 5)) {
		api__error(resp, 404, "no such resource: %s", req->path);
		return 0;
	}
	rest = req->path + 5;
	slash = strchr(rest, '/');
	n = slash ? (size_t)(slash - rest) : strlen(rest);
	if (n >= sizeof(name)) {
		api__error(resp, 404, "no such VM");
		return 0;
	}
	memcpy(name, rest, n);
	name[n] = '\0';
	if (!cluster__name_ok(name)) {
		api__error(resp, 404, "no such VM: '%s'", name);
		return 0;
	}
	return vm_route(a, req, name, slash ? slash + 1 : "", resp);
}

/* ---- etcd: registration, load, fencing ---- */

static int register_host(struct agent *a)
{
	char key[128];
	json_t *host;
	int ret;

	int64_t lease;

	ret = etcd__lease_grant(&a->etcd, a->ttl, &lease);
	if (ret)
		return ret;
	__atomic_store_n(&a->lease, lease, __ATOMIC_RELEASE);
	host = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "name", a->name, "url", "", "address",
			 a->address, "cpus", (json_int_t)a->cpus, "memory", (json_int_t)a->memory,
			 "link_mbit", (json_int_t)a->link_mbit);
	json_object_set_new(host, "url", json_sprintf("https://%s", a->listen));
	snprintf(key, sizeof(key), K_HOST "%s", a->name);
	ret = cluster__put_json(&a->etcd, key, host, 0);
	json_decref(host);
	return ret;
}

static json_t *vm_load_json(const struct load_vm_figures *f)
{
	return json_pack("{s:f, s:f, s:I, s:I, s:f, s:f}", "cpu", f->cpu, "cpu_wait", f->cpu_wait,
			 "memory", (json_int_t)f->memory, "active", (json_int_t)f->active, "net_rx",
			 f->net_rx, "net_tx", f->net_tx);
}

/* One VM's process record with its load; adds its vCPU time and memory to the totals. */
static json_t *vm_record(struct agent *a, const struct lvm *v, uint64_t *total_cpu,
			 uint64_t *total_rss, double *demand)
{
	json_t *info = vm_info(a, v), *mig = json_object_get(info, "migration");
	struct load_vm_sample smp;
	struct load_vm_figures f;
	uint64_t dirty = 0;

	load__sample_vm(v->pid, &smp);
	*total_cpu += smp.cpu_ns;
	*total_rss += smp.rss;
	if (!strcmp(cluster__str(mig, "status", ""), "active"))
		dirty = (uint64_t)cluster__int(mig, "dirty_rate", 0);
	json_object_set_new(info, "cpu_ns", json_integer((json_int_t)smp.cpu_ns));
	json_object_set_new(info, "rss", json_integer((json_int_t)smp.rss));
	/* The load is published once two samples gave rates. */
	if (!load_tracker__vm(&a->load, v->name, v->pid, &smp,
			      (uint64_t)cluster__int(info, "memory", 0), dirty, smp.ms, &f) &&
	    f.rated) {
		json_object_set_new(info, "load", vm_load_json(&f));
		*demand += f.cpu;
	}
	json_object_del(info, "migration");
	return info;
}

/* The host's capacity and own use (VMs left out), smoothed like the VMs' load. */
static json_t *host_load_json(struct agent *a, double demand)
{
	struct load_host_sample h;
	uint64_t own_mem = 0;
	double own_cpu = 0;

	if (!load__sample_host(&h))
		load_tracker__host(&a->load, &h, h.ms, &own_cpu, &own_mem);
	/* Other agents' VMs on the same machine would count as this host's own use. */
	if (a->shared) {
		own_cpu = 0;
		own_mem = 0;
	}
	return json_pack("{s:I, s:I, s:I, s:f, s:I, s:f, s:I}", "cpus", (json_int_t)a->cpus,
			 "cores", (json_int_t)sysconf(_SC_NPROCESSORS_ONLN), "memory",
			 (json_int_t)a->memory, "host_cpu", own_cpu, "host_memory",
			 (json_int_t)own_mem, "vm_cpu", demand, "window_s",
			 (json_int_t)(a->load.window_ms / 1000));
}

/* Publishes the host's load and each VM's process under the lease; removes the gone. */
static void publish(struct agent *a)
{
	uint64_t total_cpu = 0, total_rss = 0;
	struct lvm copy[AGENT_MAX_VMS];
	struct etcd_range r;
	char key[256];
	json_t *info, *alive;
	double demand = 0;
	size_t i, n;

	pthread_mutex_lock(&a->lock);
	n = a->nr_vms;
	memcpy(copy, a->vms, n * sizeof(copy[0]));
	pthread_mutex_unlock(&a->lock);
	load_tracker__begin(&a->load);
	for (i = 0; i < n; i++) {
		info = vm_record(a, &copy[i], &total_cpu, &total_rss, &demand);
		snprintf(key, sizeof(key), K_RUNNING "%s/%.63s", a->name, copy[i].name);
		cluster__put_json(&a->etcd, key, info, a->lease);
		json_decref(info);
	}
	load_tracker__end(&a->load);
	snprintf(key, sizeof(key), K_RUNNING "%s/", a->name);
	if (!etcd__list(&a->etcd, key, &r)) {
		for (i = 0; i < r.count; i++) {
			const char *vm = r.kvs[i].key + strlen(key);
			size_t j;

			for (j = 0; j < n && strcmp(copy[j].name, vm); j++)
				;
			if (j == n)
				etcd__delete(&a->etcd, r.kvs[i].key, false);
		}
		etcd_range__free(&r);
	}
	alive = json_pack("{s:i, s:I, s:I, s:I, s:i}", "vms", (int)n, "cpu_ns",
			  (json_int_t)total_cpu, "rss", (json_int_t)total_rss, "time_ms",
			  (json_int_t)cluster__now_ms(), "pid", (int)getpid());
	json_object_set_new(alive, "load", host_load_json(a, demand));
	snprintf(key, sizeof(key), K_ALIVE "%s", a->name);
	if (cluster__put_json(&a->etcd, key, alive, a->lease))
		pr_warn("%s: cannot publish the load: %s", a->name, a->etcd.err);
	json_decref(alive);
}

/* Whether a task moving name to this host is under way (its copy here is the new one). */
static bool incoming_task(struct agent *a, const char *name)
{
	struct etcd_range r, t;
	char key[256];
	json_t *task;
	bool ours = false;

	snprintf(key, sizeof(key), K_VMTASK "%.63s", name);
	if (etcd__get(&a->etcd, key, &r) || !r.count) {
		etcd_range__free(&r);
		return false;
	}
	snprintf(key, sizeof(key), K_TASK "%.100s", r.kvs[0].value);
	etcd_range__free(&r);
	if (etcd__get(&a->etcd, key, &t))
		return false;
	task = t.count ? cluster__kv_json(&t.kvs[0]) : NULL;
	ours = task && !strcmp(cluster__str(task, "dst", ""), a->name);
	json_decref(task);
	etcd_range__free(&t);
	return ours;
}

enum received { NOT_RECEIVED, RECEIVED_KEPT, RECEIVED_UNKNOWN };

/*
 * A copy received from the host etcd still names as the owner, whose move's end was
 * never recorded (its manager gave up while both hosts' leases had lapsed), and which
 * has resumed here, is the VM: a source that said GO never runs its copy again
 * (docs/migration-flow.md, "Hand over"). It becomes this host's, if the owner record is
 * still the one the move started from (docs/cluster.md, "A move whose end was lost").
 */
static enum received keep_received(struct agent *a, const struct lvm *v,
				   const struct etcd_kv *owner, bool last_try)
{
	const char *state;
	char key[160], err[256];
	struct etcd_txn t;
	json_t *vm = NULL;
	bool resumed, ok = false;
	long status;

	if (!v->from[0] || strcmp(owner->value, v->from) || owner->mod_rev != v->owner_rev)
		return NOT_RECEIVED;
	if (vm_call(a, v->name, "GET", "/vm", NULL, VM_API_TIMEOUT, &status, &vm, err,
		    sizeof(err)) ||
	    status != 200) {
		json_decref(vm);
		/*
		 * A loaded host: ask again. A receive whose source never came does not
		 * answer at all: after a minute it is taken for one.
		 */
		return last_try ? NOT_RECEIVED : RECEIVED_UNKNOWN;
	}
	state = cluster__str(vm, "state", "");
	resumed = !strcmp(state, "running") || !strcmp(state, "paused");
	json_decref(vm);
	if (!resumed)
		return NOT_RECEIVED; /* still taking it in, with no move to feed it */
	etcd_txn__init(&t);
	snprintf(key, sizeof(key), K_OWNER "%s", v->name);
	if (etcd_txn__cmp(&t, key, ETCD_MOD, ETCD_EQUAL, v->owner_rev) ||
	    etcd_txn__put(&t, true, key, a->name, 0) || etcd__txn(&a->etcd, &t, &ok)) {
		etcd_txn__free(&t);
		return RECEIVED_UNKNOWN;
	}
	etcd_txn__free(&t);
	if (!ok)
		return NOT_RECEIVED; /* the record changed since: someone else's now */
	cluster__event(&a->etcd,
		       "%s: kept %s, which it had received from %s and runs: the end of that "
		       "move was never recorded; %s owns it now",
		       a->name, v->name, v->from, a->name);
	return RECEIVED_KEPT;
}

/*
 * A host that comes back (a new agent, or a lease that expired) stops the copies of
 * VMs that etcd says another host owns, before anything else: they were restarted
 * elsewhere (docs/cluster.md, "A host that dies"). True if a copy must be looked at
 * again (etcd or its VM did not answer); last_try: a VM that does not answer is stopped.
 */
static bool fence(struct agent *a, bool last_try)
{
	struct lvm copy[AGENT_MAX_VMS];
	struct etcd_range r;
	enum received kept;
	bool again = false;
	char key[256];
	size_t i, n;

	pthread_mutex_lock(&a->lock);
	n = a->nr_vms;
	memcpy(copy, a->vms, n * sizeof(copy[0]));
	pthread_mutex_unlock(&a->lock);
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), K_OWNER "%.63s", copy[i].name);
		if (etcd__get(&a->etcd, key, &r)) {
			again = true;
			continue;
		}
		if (r.count && strcmp(r.kvs[0].value, a->name) && !incoming_task(a, copy[i].name)) {
			kept = keep_received(a, &copy[i], &r.kvs[0], last_try);
			again |= kept == RECEIVED_UNKNOWN;
			if (kept == NOT_RECEIVED) {
				cluster__event(
				    &a->etcd,
				    "%s: stopped its copy of %s, which %s owns now (this "
				    "host had lost its lease)",
				    a->name, copy[i].name, r.kvs[0].value);
				stop_vm(a, &copy[i], NULL);
			}
		}
		etcd_range__free(&r);
	}
	return again;
}

/* A pid file as spawn() wrote it: the pid, then a received copy's origin. */
static void read_pid_file(const char *path, struct lvm *v)
{
	FILE *f = fopen(path, "re");
	int pid = 0;

	if (!f || fscanf(f, "%d", &pid) != 1)
		pid = 0;
	else if (fscanf(f, " from %63s %" SCNd64, v->from, &v->owner_rev) != 2 ||
		 !cluster__name_ok(v->from) || v->owner_rev <= 0)
		v->owner_rev = 0;
	if (!v->owner_rev)
		v->from[0] = '\0';
	if (f)
		fclose(f);
	v->pid = pid;
}

/* The VMs a previous agent left running: their pid files, checked against /proc. */
static void adopt(struct agent *a)
{
	char path[600], cmd[4096], sock[600];
	struct dirent *d;
	DIR *dir = opendir(a->state_dir);
	FILE *f;
	size_t len, n;
	int pid;

	while (dir && (d = readdir(dir))) {
		struct lvm v = {0};
		char *name = v.name;

		n = strlen(d->d_name);
		if (n < 5 || n - 4 > NAME_MAX_LEN || strcmp(d->d_name + n - 4, ".pid"))
			continue;
		memcpy(name, d->d_name, n - 4);
		name[n - 4] = '\0';
		snprintf(path, sizeof(path), "%s/%s", a->state_dir, d->d_name);
		read_pid_file(path, &v);
		pid = v.pid;
		/* The pid is ours only if that process serves this VM's socket. */
		snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
		snprintf(sock, sizeof(sock), "%s/%s.sock", a->state_dir, name);
		f = pid > 0 ? fopen(path, "re") : NULL;
		len = f ? fread(cmd, 1, sizeof(cmd) - 1, f) : 0;
		if (f)
			fclose(f);
		cmd[len] = '\0';
		for (size_t i = 0; i < len; i++)
			if (!cmd[i])
				cmd[i] = ' ';
		if (!len || !strstr(cmd, sock)) {
			snprintf(path, sizeof(path), "%s/%s", a->state_dir, d->d_name);
			unlink(path);
			continue;
		}
		v.incoming = strstr(cmd, " receive ") != NULL;
		if (add_vm(a, &v))
			break;
		pr_info("%s: adopted %s (pid %d)", a->name, name, pid);
	}
	if (dir)
		closedir(dir);
}

/* Forgets the VMs whose processes ended; a VM's exit is an event. */
static void reap(struct agent *a)
{
	size_t i;
	int st;

	pthread_mutex_lock(&a->lock);
	for (i = 0; i < a->nr_vms;) {
		struct lvm *v = &a->vms[i];

		if (!process_gone(v->pid, v->child, &st)) {
			i++;
			continue;
		}
		pr_info("%s: %s (pid %d) ended", a->name, v->name, (int)v->pid);
		drop_vm(a, v);
	}
	pthread_mutex_unlock(&a->lock);
}

/*
 * The lease is kept alive by a thread of its own, every third of its TTL: slow VM APIs
 * in the main loop's publishing must never make a live host look dead (HA would
 * restart its VMs elsewhere).
 */
static void *keepalive(void *arg)
{
	struct agent *a = arg;
	struct pollfd pfd = {.fd = a->ka_stop[0], .events = POLLIN};
	int ms = (int)MAX(a->ttl * 1000 / 3, 500);
	int64_t ttl;
	int ret;

	pthread_setname_np(pthread_self(), "keepalive");
	while (poll(&pfd, 1, ms) == 0) {
		ret = etcd__lease_keepalive(&a->ka, __atomic_load_n(&a->lease, __ATOMIC_ACQUIRE),
					    &ttl);
		if (ret == -ENOENT)
			__atomic_store_n(&a->lease_lost, true, __ATOMIC_RELEASE);
		else if (ret)
			pr_warn("%s: keepalive: %s", a->name, a->ka.err);
	}
	return NULL;
}

/* ---- the command ---- */

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: godwit agent --etcd URL --name H --listen HOST:PORT --state-dir D [options]\n"
	    "\n"
	    "Runs this host's part of a cluster (docs/cluster.md): registers host H in etcd\n"
	    "under a lease, publishes its load, and starts, moves and stops VMs for the\n"
	    "managers, which reach it at https://HOST:PORT (mutual TLS). VMs are processes\n"
	    "of their own with their API sockets, consoles and logs in D: stopping or\n"
	    "killing the agent leaves them running, and the next agent adopts them.\n"
	    "\n"
	    "  --etcd URL[,URL]   etcd's client URLs (http:// or https://HOST:PORT), one per\n"
	    "                     member\n");
	fputs(ETCD_TLS_USAGE(""), out);
	fprintf(out,
		"  --name H           this host's name in the cluster\n"
		"  --listen HOST:PORT the agent's HTTPS address\n"
		"  --state-dir D      where the VMs' sockets, consoles and logs go\n"
		"  --pki D            the cluster's certificates (default /etc/godwit/pki;\n"
		"                     D/ca.crt and D/node.crt, D/node.key: godwit cluster init)\n"
		"  --cert NAME        use D/NAME.crt and D/NAME.key (default node)\n"
		"  --address A        the IPv4 address incoming migrations listen on (default\n"
		"                     HOST of --listen)\n"
		"  --cpus N           CPUs offered to VMs (default: this host's)\n"
		"  --memory SIZE      memory offered to VMs (default: this host's)\n"
		"  --link-mbit N      the migration link's speed, 0..100000000 Mbit/s\n"
		"                     (default: the speed of the interface that holds\n"
		"                     --address; 0: unknown). Under 10000 the host runs at\n"
		"                     most 4 moves at once, whatever the per-host limit\n"
		"  --ttl S            the host's lease, 2..60 s (default 10): a host whose agent\n"
		"                     is silent this long is dead to the managers\n"
		"  --load-window S    the time constant of the published load's smoothing,\n"
		"                     1..86400 s (default 300): the balancer sees minutes\n"
		"  --shared-machine   other agents run on this machine (a lab): publish its use\n"
		"                     outside this agent's VMs as 0, since it is not this host's\n"
		"  --vm-verbose       the VMs it starts or receives from now on log at -v (in\n"
		"                     D/NAME.log): each move's rounds, its pause's steps\n"
		"  -h, --help         this text\n");
}

static void link_from_address(struct agent *a)
{
	char ifname[IF_NAMESIZE + 1];

	a->link_mbit = link__mbit(a->address, ifname, sizeof(ifname));
	if (a->link_mbit)
		pr_info("%s: migrations cross %s, %" PRId64 " Mbit/s", a->name, ifname,
			a->link_mbit);
	else
		pr_info("%s: the speed of %s's link is not known (--link-mbit sets it)", a->name,
			a->address);
}

static int parse(struct agent *a, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"etcd", required_argument, NULL, 'e'},
	    {"name", required_argument, NULL, 'n'},
	    {"listen", required_argument, NULL, 'l'},
	    {"state-dir", required_argument, NULL, 's'},
	    {"pki", required_argument, NULL, 'p'},
	    {"cert", required_argument, NULL, 'c'},
	    {"address", required_argument, NULL, 'a'},
	    {"cpus", required_argument, NULL, 'C'},
	    {"memory", required_argument, NULL, 'M'},
	    {"link-mbit", required_argument, NULL, 'L'},
	    {"ttl", required_argument, NULL, 't'},
	    {"load-window", required_argument, NULL, 'w'},
	    {"shared-machine", no_argument, NULL, 'S'},
	    {"vm-verbose", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    ETCD_TLS_OPTIONS,
	    {NULL, 0, NULL, 0},
	};
	const char *pki = "/etc/godwit/pki", *cert = PKI_NODE;
	char err[600] = "";
	uint64_t v;
	int c;

	a->ttl = 10;
	a->link_mbit = -1;
	load_tracker__init(&a->load, LOAD_WINDOW_DEFAULT_S * 1000);
	a->cpus = sysconf(_SC_NPROCESSORS_ONLN);
	a->memory = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (etcd__tls_option(&a->etcd_tls, c, optarg))
			continue;
		switch (c) {
		case 'e':
			snprintf(a->etcd_url, sizeof(a->etcd_url), "%s", optarg);
			break;
		case 'n':
			if (!cluster__name_ok(optarg)) {
				pr_err("--name '%s': use 1..63 letters, digits, '-' or '_'",
				       optarg);
				return 2;
			}
			snprintf(a->name, sizeof(a->name), "%s", optarg);
			break;
		case 'l':
			snprintf(a->listen, sizeof(a->listen), "%s", optarg);
			break;
		case 's':
			if (strlen(optarg) > 80) {
				pr_err(
				    "--state-dir: at most 80 characters (the VMs' API sockets go "
				    "in it)");
				return 2;
			}
			snprintf(a->state_dir, sizeof(a->state_dir), "%s", optarg);
			break;
		case 'p':
			pki = optarg;
			break;
		case 'c':
			cert = optarg;
			break;
		case 'a':
			snprintf(a->address, sizeof(a->address), "%s", optarg);
			break;
		case 'C':
			if (util__parse_u64(optarg, 1, 4096, &v)) {
				pr_err("--cpus: 1..4096");
				return 2;
			}
			a->cpus = (int64_t)v;
			break;
		case 'M':
			if (util__parse_size(optarg, &v) || v < (64 << 20)) {
				pr_err("--memory: a size such as 8G (at least 64M)");
				return 2;
			}
			a->memory = v;
			break;
		case 'L':
			if (util__parse_u64(optarg, 0, 100000000, &v)) {
				pr_err("--link-mbit: 0..100000000 (Mbit/s; 0: unknown)");
				return 2;
			}
			a->link_mbit = (int64_t)v;
			break;
		case 't':
			if (util__parse_u64(optarg, 2, 60, &v)) {
				pr_err("--ttl: 2..60 seconds");
				return 2;
			}
			a->ttl = (int64_t)v;
			break;
		case 'w':
			if (util__parse_u64(optarg, 1, 86400, &v)) {
				pr_err("--load-window: 1..86400 seconds");
				return 2;
			}
			a->load.window_ms = (int64_t)v * 1000;
			break;
		case 'S':
			a->shared = true;
			break;
		case 'V':
			a->vm_verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || !a->etcd_url[0] || !a->name[0] || !a->listen[0] || !a->state_dir[0]) {
		pr_err("agent needs --etcd, --name, --listen and --state-dir (see godwit agent "
		       "--help)");
		return 2;
	}
	if (!a->address[0]) {
		const char *colon = strrchr(a->listen, ':');

		snprintf(a->address, sizeof(a->address), "%.*s",
			 colon ? (int)(colon - a->listen) : 0, a->listen);
	}
	if (a->link_mbit < 0)
		link_from_address(a);
	if (tls_files__set(&a->tls, pki, cert, err, sizeof(err))) {
		pr_err("%s", err);
		return 2;
	}
	return 0;
}

int agent__main(int argc, char **argv)
{
	struct agent *a = calloc(1, sizeof(*a));
	char err[600] = "";
	struct pollfd pfd;
	sigset_t set;
	bool ka_started = false, fence_again;
	int64_t fence_since = 0; /* when fence() began to be retried */
	int ret, sfd = -1;
	ssize_t n;

	if (!a)
		return 1;
	a->ka_stop[0] = a->ka_stop[1] = -1;
	ret = parse(a, argc, argv);
	if (ret) {
		free(a);
		return ret == 1 ? 0 : ret;
	}
	ret = 1;
	pthread_mutex_init(&a->lock, NULL);
	n = readlink("/proc/self/exe", a->godwit, sizeof(a->godwit) - 1);
	if (n <= 0)
		goto out;
	a->godwit[n] = '\0';
	if (mkdir(a->state_dir, 0700) && errno != EEXIST) {
		pr_err("cannot create %s: %s", a->state_dir, strerror(errno));
		goto out;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (etcd__open(&a->etcd, a->etcd_url, &a->etcd_tls)) {
		pr_err("%s", a->etcd.err);
		goto out;
	}
	adopt(a);
	if (register_host(a)) {
		pr_err("%s: cannot register in etcd: %s", a->name, a->etcd.err);
		goto out;
	}
	/* The lease kept alive first: asking a received copy's VM may outlast its TTL. */
	if (etcd__open(&a->ka, a->etcd_url, &a->etcd_tls) || pipe2(a->ka_stop, O_CLOEXEC) ||
	    pthread_create(&a->ka_thread, NULL, keepalive, a)) {
		pr_err("%s: cannot start the lease's keepalive", a->name);
		goto out;
	}
	ka_started = true;
	fence_again = fence(a, false);
	if (https__start_threads(&a->https, a->listen, &a->tls, handle, a, AGENT_HTTPS_THREADS, err,
				 sizeof(err))) {
		pr_err("%s", err);
		goto out;
	}
	publish(a);
	cluster__event(&a->etcd, "%s: agent up at https://%s (%zu VMs running)", a->name, a->listen,
		       a->nr_vms);
	pfd.fd = sfd;
	pfd.events = POLLIN;
	for (;;) {
		if (poll(&pfd, 1, AGENT_TICK_MS) > 0)
			break;
		if (__atomic_exchange_n(&a->lease_lost, false, __ATOMIC_ACQ_REL)) {
			/* Dead to the cluster for a while: its VMs may run elsewhere now. */
			pr_warn("%s: lease expired; registering again", a->name);
			if (register_host(a)) {
				__atomic_store_n(&a->lease_lost, true, __ATOMIC_RELEASE);
				continue;
			}
			fence_again = true;
		}
		if (fence_again) {
			fence_since = fence_since ?: cluster__now_ms();
			fence_again = fence(a, cluster__now_ms() - fence_since >= FENCE_RETRY_MS);
			fence_since = fence_again ? fence_since : 0;
		}
		reap(a);
		publish(a);
	}
	/*
	 * A stopped agent leaves its VMs running. Its lease is left to expire, not revoked:
	 * an agent restarted within the TTL is never seen as a dead host.
	 */
	pr_info("%s: agent stopping; its %zu VMs keep running", a->name, a->nr_vms);
	https__stop(a->https);
	ret = 0;
out:
	if (ka_started) {
		if (write(a->ka_stop[1], "x", 1) != 1)
			pr_warn("%s: cannot stop the keepalive thread", a->name);
		pthread_join(a->ka_thread, NULL);
	}
	if (a->ka_stop[0] >= 0) {
		close(a->ka_stop[0]);
		close(a->ka_stop[1]);
	}
	etcd__exit(&a->ka);
	etcd__exit(&a->etcd);
	if (sfd >= 0)
		close(sfd);
	pthread_mutex_destroy(&a->lock);
	load_tracker__exit(&a->load);
	free(a);
	return ret;
}
