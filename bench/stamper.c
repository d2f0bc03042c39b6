// SPDX-License-Identifier: GPL-2.0
/*
 * Stamps the growth of console files for the benchmark (bench/procmon.py,
 * ConsoleStamper), as a process of its own.
 *
 * The heartbeat lines the guest-observed pause is measured by are stamped with the time
 * they were first seen complete. Every INTERVAL_US this looks at each file's size and,
 * when it grew, appends (CLOCK_MONOTONIC seconds as a little-endian double, the size as
 * a little-endian int64) to FILE.stamps. A stamp is late by up to one interval: the
 * Python stamper it replaces looked every 500 us (a look cost it ~25 us of CPU), so
 * godwit's sub-millisecond pauses read as 0.1, 0.6, 1.1 or 1.6 ms; this one looks every
 * 100 us for a few us each. It asks for SCHED_FIFO priority 1, so that a busy CPU-bound
 * thread does not delay it (as a latency tester does); without the privilege it runs
 * as a normal process and says so on stderr. Both VMMs' runs are stamped alike.
 *
 * usage: stamper INTERVAL_US MAX_SECONDS FILE...
 * It ends after MAX_SECONDS, on SIGTERM, or when its parent is gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_FILES 16

struct watched {
	const char *path;
	int fd;	 /* O_PATH, once the file exists */
	int out; /* FILE.stamps */
	int64_t size;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int open_stamps(struct watched *w)
{
	char name[4096];

	if (snprintf(name, sizeof(name), "%s.stamps", w->path) >= (int)sizeof(name))
		return -ENAMETOOLONG;
	w->out = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	return w->out < 0 ? -errno : 0;
}

/* The x86-64 layout is the record's: little-endian double, then int64. */
static void look(struct watched *w)
{
	unsigned char rec[sizeof(double) + sizeof(int64_t)];
	struct stat st;
	double t;

	if (w->fd < 0)
		w->fd = open(w->path, O_PATH | O_CLOEXEC);
	if (w->fd < 0 || fstat(w->fd, &st) || st.st_size <= w->size)
		return;
	t = now_s();
	w->size = st.st_size;
	memcpy(rec, &t, sizeof(t));
	memcpy(rec + sizeof(t), &w->size, sizeof(w->size));
	if (write(w->out, rec, sizeof(rec)) != (ssize_t)sizeof(rec))
		fprintf(stderr, "stamper: cannot write %s.stamps: %s\n", w->path, strerror(errno));
}

int main(int argc, char **argv)
{
	struct sched_param sp = { .sched_priority = 1 };
	struct watched w[MAX_FILES];
	double max_s;
	long interval_us;
	struct timespec nap;
	pid_t parent = getppid();
	double end;
	int i, n;

	if (argc < 4 || argc - 3 > MAX_FILES) {
		fprintf(stderr, "usage: stamper INTERVAL_US MAX_SECONDS FILE... (at most %d)\n",
			MAX_FILES);
		return 2;
	}
	interval_us = strtol(argv[1], NULL, 10);
	max_s = strtod(argv[2], NULL);
	if (interval_us < 10 || interval_us > 1000000 || !(max_s > 0)) {
		fprintf(stderr, "stamper: INTERVAL_US must be 10..1000000, MAX_SECONDS above 0\n");
		return 2;
	}
	n = argc - 3;
	for (i = 0; i < n; i++) {
		w[i] = (struct watched){ .path = argv[3 + i], .fd = -1, .out = -1 };
		if (open_stamps(&w[i])) {
			fprintf(stderr, "stamper: cannot create %s.stamps: %s\n", w[i].path,
				strerror(errno));
			return 1;
		}
	}
	if (sched_setscheduler(0, SCHED_FIFO, &sp))
		fprintf(stderr, "stamper: no SCHED_FIFO (%s); stamps may come late\n",
			strerror(errno));
	nap = (struct timespec){ .tv_sec = interval_us / 1000000,
				 .tv_nsec = (interval_us % 1000000) * 1000 };
	end = now_s() + max_s;
	while (now_s() < end && getppid() == parent) {
		for (i = 0; i < n; i++)
			look(&w[i]);
		nanosleep(&nap, NULL);
	}
	return 0;
}
