// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target: the agent's parsers of /proc text (src/cluster/load.c): a thread's
 * schedstat and stat (whose name field a process chooses, ')' and spaces included),
 * /proc/stat, /proc/meminfo and a tun file's fdinfo. Nothing may crash or read past
 * the text; an interface name it gives must be safe in a /sys path.
 * fuzz/corpus/fuzz_procload/ holds texts of this machine's /proc.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/cluster/load.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), ifname[16];
	uint64_t a, b;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	load__parse_schedstat(text, &a, &b);
	load__parse_task_stat(text, &a);
	if (!load__parse_proc_stat(text, &a, &b) && a > b)
		abort();
	if (!load__parse_meminfo(text, &a, &b) && b > a)
		abort();
	if (!load__parse_fdinfo_iff(text, ifname, sizeof(ifname)) &&
	    (!ifname[0] || strchr(ifname, '/') || strlen(ifname) > 15 || !strcmp(ifname, ".") ||
	     !strcmp(ifname, "..")))
		abort();
	free(text);
	return 0;
}
