// SPDX-License-Identifier: GPL-2.0
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "godwit/log.h"

/*
 * The one piece of process-wide state: the log level is a property of the
 * process (its stderr), not of a VM.
 */
static enum log_level current_level = LOG_INFO;

void log__set_level(enum log_level level)
{
	current_level = level;
}

void log__printf(enum log_level level, const char *fmt, ...)
{
	static const char *const prefix[] = {
		[LOG_ERR] = "error: ",
		[LOG_WARN] = "warning: ",
		[LOG_INFO] = "",
		[LOG_DEBUG] = "debug: ",
	};
	char line[1024], stamp[32] = "";
	va_list ap;

	if (level > current_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (current_level == LOG_DEBUG) {
		/*
		 * -v: CLOCK_MONOTONIC, one clock for every process on the host, so that the
		 * source's and the destination's logs of one migration interleave in order.
		 */
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		snprintf(stamp, sizeof(stamp), "[%lld.%06ld] ", (long long)ts.tv_sec,
			 ts.tv_nsec / 1000);
	}
	/* One write per line so that lines from several threads never interleave. */
	fprintf(stderr, "godwit: %s%s%s\n", stamp, prefix[level], line);
}
