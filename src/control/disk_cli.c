// SPDX-License-Identifier: GPL-2.0
/* `godwit disk-move`: a client of PUT/GET /vm/disks/ID/move (docs/api.md). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "godwit/api_client.h"
#include "godwit/log.h"
#include "godwit/vm_api.h"

#define POLL_MS 100

static void usage(FILE *out)
{
	fprintf(out,
		"usage: godwit disk-move --api PATH --disk ID --to NEWPATH [--json]\n"
		"       godwit disk-move --api PATH --disk ID --cancel\n"
		"\n"
		"Moves the image of the running VM's disk ID (0, 1, ... in --disk order) to a\n"
		"new file NEWPATH while the guest keeps using it: one pass copies the image\n"
		"(its holes and zero blocks stay holes), every guest write meanwhile goes to\n"
		"both files, then the disk switches to the new file (its I/O held for a\n"
		"moment; the vCPUs run on). NEWPATH must not exist; the old image is left as\n"
		"it was, for you to delete. Prints progress, then a summary; exits 0 only if\n"
		"the disk now runs on NEWPATH. On any failure, or a cancel, the disk stays on\n"
		"its image and the partial NEWPATH is removed.\n"
		"\n"
		"  --api PATH      the VM's API socket (godwit run --api)\n"
		"  --disk ID       which disk\n"
		"  --to NEWPATH    the new image (a path the VM's process can create)\n"
		"  --max-bandwidth B  the copy's data rate, bytes/s with K/M/G (default: as\n"
		"                  fast as the storage goes)\n"
		"  --json          print the final status as one JSON object instead of text\n"
		"  --cancel        cancel the move under way on that disk, and return\n"
		"  -h, --help      this text\n"
		"\n"
		"SIGINT (Ctrl-C) or SIGTERM while it waits cancels the move and waits for\n"
		"it to end.\n");
}

struct disk_cli {
	const char *api, *to;
	const char *disk;
	bool json, cancel;
	uint64_t max_bandwidth;
	char path[64];
};

static int parse(int argc, char **argv, struct disk_cli *c)
{
	static const struct option opts[] = {
	    {"api", required_argument, NULL, 'a'},
	    {"disk", required_argument, NULL, 'd'},
	    {"to", required_argument, NULL, 't'},
	    {"json", no_argument, NULL, 'j'},
	    {"cancel", no_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},
	    {"max-bandwidth", required_argument, NULL, 'b'},
	    {0},
	};
	uint64_t id;
	int ch;

	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'a':
			c->api = optarg;
			break;
		case 'd':
			c->disk = optarg;
			break;
		case 't':
			c->to = optarg;
			break;
		case 'j':
			c->json = true;
			break;
		case 'c':
			c->cancel = true;
			break;
		case 'b':
			if (util__parse_size(optarg, &c->max_bandwidth) || !c->max_bandwidth ||
			    c->max_bandwidth > INT64_MAX) {
				pr_err("--max-bandwidth '%s': bytes per second, e.g. 100M", optarg);
				return -EINVAL;
			}
			break;
		case 'h':
			return 1;
		case ':':
			pr_err("option %s needs a value", argv[optind - 1]);
			return -EINVAL;
		default:
			pr_err("unknown option '%s' (see godwit disk-move --help)",
			       argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		pr_err("unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (!c->api || !c->disk || !c->to == !c->cancel) {
		pr_err("--api, --disk and one of --to or --cancel are required "
		       "(see godwit disk-move --help)");
		return -EINVAL;
	}
	if (util__parse_u64(c->disk, 0, VM_MAX_DISKS - 1, &id)) {
		pr_err("--disk '%s': a disk ID, 0 to %d", c->disk, VM_MAX_DISKS - 1);
		return -EINVAL;
	}
	if (c->to && !*c->to) {
		pr_err("--to: an empty path");
		return -EINVAL;
	}
	snprintf(c->path, sizeof(c->path), "/vm/disks/%llu/move", (unsigned long long)id);
	return 0;
}

static json_int_t num(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static const char *status_of(const json_t *st)
{
	const char *s = json_string_value(json_object_get(st, "status"));

	return s ? s : "unknown";
}

static bool final(const char *status)
{
	return !strcmp(status, "completed") || !strcmp(status, "failed") ||
	       !strcmp(status, "cancelled") || !strcmp(status, "none");
}

static void print_progress(const json_t *st, bool tty)
{
	double size = (double)num(st, "size_bytes"), copied = (double)num(st, "copied_bytes");
	json_int_t ms = num(st, "total_ms");

	fprintf(stderr,
		"%s%s: %.1f of %.1f MiB (%.0f%%), %.1f MiB of data at %.0f MB/s; "
		"%.1f MiB of guest writes mirrored; %lld ms%s",
		tty ? "\r" : "", status_of(st), copied / MiB, size / MiB,
		size ? 100.0 * copied / size : 100.0, (double)num(st, "data_bytes") / MiB,
		ms ? (double)num(st, "data_bytes") / 1000.0 / (double)ms : 0.0,
		(double)num(st, "mirrored_bytes") / MiB, (long long)ms, tty ? "   " : "\n");
}

static void print_summary(const json_t *st)
{
	const json_t *err = json_object_get(st, "error");

	printf("disk %lld move %s: %s -> %s\n", (long long)num(st, "disk"), status_of(st),
	       json_string_value(json_object_get(st, "from")),
	       json_string_value(json_object_get(st, "to")));
	printf("  total_ms           %lld\n  size_bytes         %lld\n  data_bytes         %lld\n",
	       (long long)num(st, "total_ms"), (long long)num(st, "size_bytes"),
	       (long long)num(st, "data_bytes"));
	printf("  mirrored_bytes     %lld\n  mirrored_requests  %lld\n  switch_us          %lld\n",
	       (long long)num(st, "mirrored_bytes"), (long long)num(st, "mirrored_requests"),
	       (long long)num(st, "switch_us"));
	if (json_is_string(err))
		printf("  error              %s\n", json_string_value(err));
}

/* A PUT whose answer must be 202; false with the reason on stderr. */
static bool put(const struct disk_cli *c, const char *path, json_t *body, const char *what)
{
	json_t *reply = NULL;
	char err[256];
	long status;
	int ret;

	ret = api_client__call(c->api, "PUT", path, body, &status, &reply, err, sizeof(err));
	if (ret || status != 202) {
		pr_err("cannot %s: %s", what,
		       ret ? err : json_string_value(json_object_get(reply, "error")));
		json_decref(reply);
		return false;
	}
	json_decref(reply);
	return true;
}

/* One GET, tried a few times: a loaded host can fail one call. */
static json_t *get_status(const struct disk_cli *c)
{
	struct timespec pause = {.tv_nsec = 100 * 1000 * 1000};
	json_t *st;
	char err[256];
	long status;
	int i;

	for (i = 0; i < 3; i++) {
		st = NULL;
		if (!api_client__call(c->api, "GET", c->path, NULL, &status, &st, err,
				      sizeof(err)) &&
		    status == 200 && st)
			return st;
		json_decref(st);
		nanosleep(&pause, NULL);
	}
	return NULL;
}

/*
 * Polls until the move ends; SIGINT/SIGTERM (blocked, and waited for between polls)
 * cancel it once. The last status, or NULL if the API went away.
 */
static json_t *watch(const struct disk_cli *c, char *cancel_path)
{
	struct timespec delay = {.tv_nsec = POLL_MS * 1000000L};
	bool tty = isatty(STDERR_FILENO), cancelled = false;
	json_t *st = NULL, *last = NULL;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	while ((st = get_status(c))) {
		json_decref(last);
		last = st;
		if (!c->json)
			print_progress(st, tty);
		if (final(status_of(st)))
			break;
		if (sigtimedwait(&set, NULL, &delay) > 0 && !cancelled) {
			cancelled = true;
			put(c, cancel_path, NULL, "cancel the move");
		}
	}
	if (!c->json && tty)
		fputc('\n', stderr);
	return last;
}

int disk_cli__move(int argc, char **argv)
{
	struct disk_cli c = {0};
	char cancel_path[80];
	json_t *body, *st;
	int ret;

	ret = parse(argc, argv, &c);
	if (ret) {
		if (ret == 1)
			usage(stdout);
		return ret == 1 ? 0 : 2;
	}
	snprintf(cancel_path, sizeof(cancel_path), "%s/cancel", c.path);
	if (c.cancel)
		return put(&c, cancel_path, NULL, "cancel the move") ? 0 : 1;
	body = json_pack("{s:s}", "to", c.to);
	if (c.max_bandwidth)
		json_object_set_new(body, "max_bandwidth",
				    json_integer((json_int_t)c.max_bandwidth));
	if (!put(&c, c.path, body, "start the move")) {
		json_decref(body);
		return 1;
	}
	json_decref(body);
	st = watch(&c, cancel_path);
	if (!st || !final(status_of(st))) {
		pr_err("lost the VM's API before the move ended; its outcome is unknown");
		json_decref(st);
		return 1;
	}
	if (c.json) {
		json_dumpf(st, stdout, JSON_COMPACT);
		putchar('\n');
	} else {
		print_summary(st);
	}
	ret = strcmp(status_of(st), "completed") ? 1 : 0;
	json_decref(st);
	return ret;
}
