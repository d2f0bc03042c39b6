/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_LOG_H
#define GODWIT_LOG_H

/*
 * Logging. Every message is one line on stderr prefixed with "godwit: " so that a
 * user (and a test) can tell our messages from the guest's console output.
 */

/* LOG_QUIET: nothing at all, errors included (fuzz targets, whose inputs fail by the million). */
enum log_level { LOG_QUIET = -1, LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log__set_level(enum log_level level);
void log__printf(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pr_err(...)   log__printf(LOG_ERR, __VA_ARGS__)
#define pr_warn(...)  log__printf(LOG_WARN, __VA_ARGS__)
#define pr_info(...)  log__printf(LOG_INFO, __VA_ARGS__)
#define pr_debug(...) log__printf(LOG_DEBUG, __VA_ARGS__)

#endif
