// SPDX-License-Identifier: GPL-2.0
/*
 * hb MS [COUNT]: a heartbeat for the migration tests. Every MS milliseconds (on an
 * absolute CLOCK_MONOTONIC schedule, so no drift) prints "hb SEQ NS", where NS is
 * CLOCK_MONOTONIC in nanoseconds when the line is written; stops after COUNT lines
 * (default 0: never). A migration's pause shows up as one long gap between lines.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int parse(const char *s, unsigned long max, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || *out > max)
		return -1;
	return 0;
}

static uint64_t ts_ns(const struct timespec *ts)
{
	return (uint64_t)ts->tv_sec * 1000000000ULL + (uint64_t)ts->tv_nsec;
}

int main(int argc, char **argv)
{
	unsigned long ms, count = 0, seq;
	struct timespec next, now;
	uint64_t t;

	if (argc < 2 || argc > 3 || parse(argv[1], 3600000, &ms) || !ms ||
	    (argc == 3 && parse(argv[2], ~0UL, &count))) {
		fprintf(stderr, "usage: hb MS [COUNT]  (MS 1-3600000; COUNT 0 = forever)\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	clock_gettime(CLOCK_MONOTONIC, &next);
	for (seq = 1; !count || seq <= count; seq++) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (printf("hb %lu %llu\n", seq, (unsigned long long)ts_ns(&now)) < 0)
			return 1;
		t = ts_ns(&next) + ms * 1000000ULL;
		next.tv_sec = (time_t)(t / 1000000000ULL);
		next.tv_nsec = (long)(t % 1000000000ULL);
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
			;
	}
	return 0;
}
