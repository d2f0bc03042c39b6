// SPDX-License-Identifier: GPL-2.0
/* What agents, managers and the CLI share: names, specs, values in etcd, events. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "godwit/cluster/keys.h"
#include "godwit/log.h"

bool cluster__name_ok(const char *name)
{
	size_t i, n = name ? strlen(name) : 0;

	if (!n || n > NAME_MAX_LEN)
		return false;
	for (i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
	}
	return true;
}

int64_t cluster__now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

json_t *cluster__kv_json(const struct etcd_kv *kv)
{
	json_t *j;

	if (!kv)
		return NULL;
	j = json_loadb(kv->value, kv->value_len, 0, NULL);
	if (j && !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

int cluster__put_json(struct etcd *e, const char *key, const json_t *v, int64_t lease)
{
	char *s = json_dumps(v, JSON_COMPACT);
	int ret;

	if (!s)
		return -ENOMEM;
	ret = etcd__put(e, key, s, lease);
	free(s);
	return ret;
}

int64_t cluster__int(const json_t *obj, const char *field, int64_t dflt)
{
	const json_t *j = json_object_get(obj, field);

	return json_is_integer(j) ? json_integer_value(j) : dflt;
}

const char *cluster__str(const json_t *obj, const char *field, const char *dflt)
{
	const char *s = json_string_value(json_object_get(obj, field));

	return s ? s : dflt;
}

void cluster__fmt_size(uint64_t bytes, char *out, size_t len)
{
	if (bytes >= (1ULL << 30) && bytes % (1ULL << 30))
		snprintf(out, len, "%.1f GiB", (double)bytes / (1ULL << 30));
	else if (bytes >= (1ULL << 30))
		snprintf(out, len, "%" PRIu64 " GiB", bytes >> 30);
	else
		snprintf(out, len, "%" PRIu64 " MiB", bytes >> 20);
}

static int check_strings(const json_t *spec, const char *field, size_t max, char *err,
			 size_t errlen)
{
	const json_t *a = json_object_get(spec, field), *v;
	size_t i;

	if (!a)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > max) {
		snprintf(err, errlen, "%s: a list of at most %zu strings", field, max);
		return -EINVAL;
	}
	json_array_foreach(a, i, v)
	{
		if (!json_is_string(v) || !json_string_length(v) || json_string_length(v) > 1000) {
			snprintf(err, errlen, "%s: a list of non-empty strings", field);
			return -EINVAL;
		}
	}
	return 0;
}

int cluster__spec_check(const json_t *spec, char *err, size_t errlen)
{
	const char *name = cluster__str(spec, "name", NULL);
	const char *kernel = cluster__str(spec, "kernel", NULL);
	const char *restart = cluster__str(spec, "restart", "never");
	int64_t mem = cluster__int(spec, "memory", -1), cpus = cluster__int(spec, "cpus", -1);

	if (!json_is_object(spec)) {
		snprintf(err, errlen, "a VM is a JSON object");
		return -EINVAL;
	}
	if (!cluster__name_ok(name)) {
		snprintf(err, errlen, "VM name '%s': use 1..63 letters, digits, '-' or '_'",
			 name ? name : "");
		return -EINVAL;
	}
	if (!kernel || !*kernel || strlen(kernel) > 1000) {
		snprintf(err, errlen, "%s: --kernel PATH is required (a path on every host)", name);
		return -EINVAL;
	}
	if (mem < (int64_t)(64 << 20) || mem % (2 << 20) || mem > (1LL << 40)) {
		snprintf(err, errlen, "%s: memory 64M..1T in multiples of 2M", name);
		return -EINVAL;
	}
	if (cpus < 1 || cpus > 32) {
		snprintf(err, errlen, "%s: cpus 1..32", name);
		return -EINVAL;
	}
	if (strlen(cluster__str(spec, "cmdline", "")) > 4000) {
		snprintf(err, errlen, "%s: cmdline too long", name);
		return -EINVAL;
	}
	if (strcmp(restart, "never") && strcmp(restart, "always")) {
		snprintf(err, errlen, "%s: restart is 'never' or 'always'", name);
		return -EINVAL;
	}
	if (check_strings(spec, "disks", 8, err, errlen) ||
	    check_strings(spec, "nets", 8, err, errlen))
		return -EINVAL;
	return 0;
}

void cluster__event(struct etcd *e, const char *fmt, ...)
{
	static unsigned int seq;
	char key[128], msg[512];
	json_t *ev;
	va_list ap;
	int64_t now = cluster__now_ms();

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pr_info("%s", msg);
	/* Time first so that keys sort oldest first; pid and a count keep them apart. */
	snprintf(key, sizeof(key), K_EVENT "%016" PRId64 "-%d-%u", now, (int)getpid(),
		 __atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED));
	ev = json_pack("{s:I, s:s}", "time_ms", (json_int_t)now, "message", msg);
	if (!ev || cluster__put_json(e, key, ev, 0))
		pr_warn("cannot record the event '%s': %s", msg, e->err);
	json_decref(ev);
}
