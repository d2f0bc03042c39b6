// SPDX-License-Identifier: GPL-2.0
/* The load agents publish: /proc and /sys read and parsed, rates smoothed (load.h). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "godwit/cluster/load.h"

/* Active memory while a move measures writes: what the guest dirties in this long. */
#define ACTIVE_SPAN_S 60

/* An unsigned decimal at *p, spaces before it skipped; p advanced past it. */
static int number(const char **p, uint64_t *v)
{
	const char *s = *p;
	uint64_t n = 0;

	while (*s == ' ' || *s == '\t')
		s++;
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	for (; isdigit((unsigned char)*s); s++) {
		if (n > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		n = n * 10 + (uint64_t)(*s - '0');
	}
	*p = s;
	*v = n;
	return 0;
}

int load__parse_schedstat(const char *text, uint64_t *run_ns, uint64_t *wait_ns)
{
	const char *p = text;

	if (number(&p, run_ns) || number(&p, wait_ns))
		return -EINVAL;
	return 0;
}

int load__parse_task_stat(const char *text, uint64_t *ticks)
{
	/* The name is in parentheses and may hold spaces and ')': the last ')' ends it. */
	const char *p = strrchr(text, ')');
	uint64_t ut, st;
	int field;

	if (!p)
		return -EINVAL;
	p++;
	/* After the name: state (3), then fields 4..13, utime (14), stime (15). */
	while (*p == ' ')
		p++;
	if (!*p || *p == ' ')
		return -EINVAL;
	p++;
	for (field = 4; field < 14; field++) {
		uint64_t skip;

		while (*p == ' ')
			p++;
		if (*p == '-')
			p++;
		if (number(&p, &skip))
			return -EINVAL;
	}
	if (number(&p, &ut) || number(&p, &st) || ut > UINT64_MAX - st)
		return -EINVAL;
	*ticks = ut + st;
	return 0;
}

int load__parse_proc_stat(const char *text, uint64_t *busy, uint64_t *total)
{
	/* user nice system idle iowait irq softirq steal; guest time is already in user. */
	const char *p = text;
	uint64_t v[8] = {0}, sum = 0;
	int i;

	if (strncmp(p, "cpu ", 4))
		return -EINVAL;
	p += 4;
	for (i = 0; i < 8; i++) {
		if (number(&p, &v[i])) {
			if (i < 4)
				return -EINVAL;
			break;
		}
		if (v[i] > UINT64_MAX / 16)
			return -ERANGE;
		sum += v[i];
	}
	*total = sum;
	*busy = sum - v[3] - v[4];
	return 0;
}

static int meminfo_field(const char *text, const char *name, uint64_t *bytes)
{
	size_t n = strlen(name);
	const char *p = text;
	uint64_t kib;

	while (p && *p) {
		if (!strncmp(p, name, n) && p[n] == ':') {
			p += n + 1;
			if (number(&p, &kib) || kib > UINT64_MAX / 1024)
				return -EINVAL;
			*bytes = kib * 1024;
			return 0;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return -ENOENT;
}

int load__parse_meminfo(const char *text, uint64_t *total, uint64_t *available)
{
	if (meminfo_field(text, "MemTotal", total) ||
	    meminfo_field(text, "MemAvailable", available) || *available > *total)
		return -EINVAL;
	return 0;
}

int load__parse_fdinfo_iff(const char *text, char *ifname, size_t len)
{
	const char *p = text, *end;
	size_t n;

	while (p && *p) {
		if (!strncmp(p, "iff:", 4)) {
			p += 4;
			while (*p == ' ' || *p == '\t')
				p++;
			end = p;
			while (*end && *end != '\n')
				end++;
			n = (size_t)(end - p);
			/* An interface name: 1..15 characters, no '/', not . or .. (a path). */
			if (!n || n > 15 || n >= len || memchr(p, '/', n) ||
			    (p[0] == '.' && (n == 1 || (n == 2 && p[1] == '.'))))
				return -EINVAL;
			memcpy(ifname, p, n);
			ifname[n] = '\0';
			return 0;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return -ENOENT;
}

void load_ewma__add(struct load_ewma *e, double sample, int64_t now_ms, int64_t window_ms)
{
	double a;

	if (!e->primed || window_ms <= 0) {
		e->value = sample;
		e->primed = true;
	} else if (now_ms > e->last_ms) {
		/* A first-order low-pass filter of time constant window: a = dt / (window + dt). */
		a = (double)(now_ms - e->last_ms) / (double)(window_ms + now_ms - e->last_ms);
		e->value += a * (sample - e->value);
	}
	e->last_ms = now_ms;
}

bool load_counter__rate(struct load_counter *c, uint64_t value, int64_t now_ms, double *rate)
{
	bool ok = c->primed && value >= c->last && now_ms > c->last_ms;

	if (ok)
		*rate = (double)(value - c->last) * 1000.0 / (double)(now_ms - c->last_ms);
	c->last = value;
	c->last_ms = now_ms;
	c->primed = true;
	return ok;
}

/* ---- reading /proc and /sys ---- */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int read_text(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return -errno;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = '\0';
	return n ? 0 : -ENODATA;
}

static bool vcpu_thread(pid_t pid, const char *tid)
{
	char path[64], comm[32];

	snprintf(path, sizeof(path), "/proc/%d/task/%.16s/comm", (int)pid, tid);
	return !read_text(path, comm, sizeof(comm)) && !strncmp(comm, "vcpu-", 5);
}

static void sample_threads(pid_t pid, struct load_vm_sample *s)
{
	long tick = sysconf(_SC_CLK_TCK);
	char path[64], text[1024];
	uint64_t run, wait, ticks;
	struct dirent *d;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dir = opendir(path);
	while (dir && (d = readdir(dir))) {
		if (d->d_name[0] == '.' || !vcpu_thread(pid, d->d_name))
			continue;
		s->vcpus++;
		/* schedstat counts in ns what stat counts in ticks; stat where it is missing. */
		snprintf(path, sizeof(path), "/proc/%d/task/%.16s/schedstat", (int)pid, d->d_name);
		if (!read_text(path, text, sizeof(text)) &&
		    !load__parse_schedstat(text, &run, &wait)) {
			s->cpu_ns += run;
			s->wait_ns += wait;
			continue;
		}
		snprintf(path, sizeof(path), "/proc/%d/task/%.16s/stat", (int)pid, d->d_name);
		if (tick > 0 && !read_text(path, text, sizeof(text)) &&
		    !load__parse_task_stat(text, &ticks))
			s->cpu_ns += ticks * (1000000000ULL / (uint64_t)tick);
	}
	if (dir)
		closedir(dir);
}

static uint64_t net_counter(const char *ifname, const char *which)
{
	char path[128], text[32];
	const char *p = text;
	uint64_t v;

	snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/%s", ifname, which);
	if (read_text(path, text, sizeof(text)) || number(&p, &v))
		return 0;
	return v;
}

/* The taps a VM process holds open: their fdinfo names them. */
static void sample_taps(pid_t pid, struct load_vm_sample *s)
{
	char path[64], link[64], text[512], ifname[16];
	struct dirent *d;
	ssize_t n;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	while (dir && (d = readdir(dir))) {
		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fd/%.16s", (int)pid, d->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strcmp(link, "/dev/net/tun"))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fdinfo/%.16s", (int)pid, d->d_name);
		if (read_text(path, text, sizeof(text)) ||
		    load__parse_fdinfo_iff(text, ifname, sizeof(ifname)))
			continue;
		/* The tap's receive is what the guest sent. */
		s->net_tx += net_counter(ifname, "rx_bytes");
		s->net_rx += net_counter(ifname, "tx_bytes");
	}
	if (dir)
		closedir(dir);
}

void load__sample_vm(pid_t pid, struct load_vm_sample *s)
{
	char path[64], text[256];
	const char *p;
	uint64_t pages;
	long page = sysconf(_SC_PAGESIZE);

	memset(s, 0, sizeof(*s));
	s->ms = now_ms();
	sample_threads(pid, s);
	sample_taps(pid, s);
	snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
	p = text;
	if (!read_text(path, text, sizeof(text)) && !number(&p, &pages) && !number(&p, &pages) &&
	    page > 0)
		s->rss = pages * (uint64_t)page;
}

int load__sample_host(struct load_host_sample *s)
{
	static char text[8192];
	uint64_t busy, total;
	long tick = sysconf(_SC_CLK_TCK);
	int ret;

	s->ms = now_ms();
	ret = read_text("/proc/stat", text, sizeof(text));
	ret = ret ?: load__parse_proc_stat(text, &busy, &total);
	if (ret || tick <= 0)
		return ret ?: -EINVAL;
	s->busy_ns = busy * (1000000000ULL / (uint64_t)tick);
	s->total_ns = total * (1000000000ULL / (uint64_t)tick);
	ret = read_text("/proc/meminfo", text, sizeof(text));
	return ret ?: load__parse_meminfo(text, &s->mem_total, &s->mem_available);
}

/* ---- smoothing across samples ---- */

void load_tracker__init(struct load_tracker *t, int64_t window_ms)
{
	memset(t, 0, sizeof(*t));
	t->window_ms = window_ms;
}

void load_tracker__exit(struct load_tracker *t)
{
	free(t->vms);
	memset(t, 0, sizeof(*t));
}

void load_tracker__begin(struct load_tracker *t)
{
	size_t i;

	for (i = 0; i < t->nr; i++)
		t->vms[i].seen = false;
	t->vm_cpu_now = 0;
	t->vm_rss_now = 0;
}

static struct load_vm *track(struct load_tracker *t, const char *name, pid_t pid)
{
	struct load_vm *v;
	size_t i;

	for (i = 0; i < t->nr; i++) {
		v = &t->vms[i];
		if (strcmp(v->name, name))
			continue;
		if (v->pid != pid) {
			/* Another process of that name (moved back, restarted): its counters are
			 * new. */
			memset(v, 0, sizeof(*v));
			snprintf(v->name, sizeof(v->name), "%s", name);
			v->pid = pid;
		}
		return v;
	}
	if (t->nr == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		struct load_vm *n = realloc(t->vms, cap * sizeof(*n));

		if (!n)
			return NULL;
		t->vms = n;
		t->cap = cap;
	}
	v = &t->vms[t->nr++];
	memset(v, 0, sizeof(*v));
	snprintf(v->name, sizeof(v->name), "%s", name);
	v->pid = pid;
	return v;
}

int load_tracker__vm(struct load_tracker *t, const char *name, pid_t pid,
		     const struct load_vm_sample *s, uint64_t memory, uint64_t dirty_rate,
		     int64_t now_ms, struct load_vm_figures *out)
{
	struct load_vm *v = track(t, name, pid);
	uint64_t rss = memory && s->rss > memory ? memory : s->rss;
	double r, active = (double)rss;

	if (!v)
		return -ENOMEM;
	v->seen = true;
	if (load_counter__rate(&v->cpu, s->cpu_ns, now_ms, &r)) {
		load_ewma__add(&v->cpu_s, r / 1e9, now_ms, t->window_ms);
		t->vm_cpu_now += r / 1e9;
	}
	if (load_counter__rate(&v->wait, s->wait_ns, now_ms, &r))
		load_ewma__add(&v->wait_s, r / 1e9, now_ms, t->window_ms);
	if (load_counter__rate(&v->rx, s->net_rx, now_ms, &r))
		load_ewma__add(&v->rx_s, r, now_ms, t->window_ms);
	if (load_counter__rate(&v->tx, s->net_tx, now_ms, &r))
		load_ewma__add(&v->tx_s, r, now_ms, t->window_ms);
	/*
	 * Pages written are seen only while a move tracks them; otherwise what the guest
	 * has touched (its resident memory) stands in, an upper bound.
	 */
	if (dirty_rate && (double)dirty_rate * ACTIVE_SPAN_S < active)
		active = (double)dirty_rate * ACTIVE_SPAN_S;
	load_ewma__add(&v->active_s, active, now_ms, t->window_ms);
	t->vm_rss_now += s->rss;
	out->cpu = v->cpu_s.value;
	out->cpu_wait = v->wait_s.value;
	out->net_rx = v->rx_s.value;
	out->net_tx = v->tx_s.value;
	out->active = (uint64_t)v->active_s.value;
	out->memory = memory;
	out->rss = s->rss;
	out->rated = v->cpu_s.primed;
	return 0;
}

void load_tracker__end(struct load_tracker *t)
{
	size_t i = 0;

	while (i < t->nr) {
		if (t->vms[i].seen)
			i++;
		else
			t->vms[i] = t->vms[--t->nr];
	}
}

void load_tracker__host(struct load_tracker *t, const struct load_host_sample *h, int64_t now_ms,
			double *cpu, uint64_t *memory)
{
	uint64_t used = h->mem_total - h->mem_available;
	double busy, total, own;

	/* The rates of one round are taken together so that the VMs' part matches. */
	if (load_counter__rate(&t->busy, h->busy_ns, now_ms, &busy) &&
	    load_counter__rate(&t->total, h->total_ns, now_ms, &total)) {
		own = busy / 1e9 - t->vm_cpu_now;
		load_ewma__add(&t->host_cpu_s, own > 0 ? own : 0, now_ms, t->window_ms);
	} else {
		t->total.last = h->total_ns;
		t->total.last_ms = now_ms;
		t->total.primed = true;
	}
	*cpu = t->host_cpu_s.value;
	*memory = used > t->vm_rss_now ? used - t->vm_rss_now : 0;
}
