// SPDX-License-Identifier: GPL-2.0
/*
 * godwit-exit CODE: ends the VM with exit status CODE (0-255), through godwit's exit
 * port: a 32-bit OUT of CODE to I/O port 0xf4. A power-off (ACPI S5) always ends the VM
 * with status 0, so this is how a guest reports its command's status. Needs ring-3 port
 * access: iopl(3), which root may ask for (CONFIG_X86_IOPL_IOPERM). If the OUT returns,
 * no godwit port is there (another VMM, bare metal): exits 1.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>

#define GODWIT_EXIT_PORT 0xf4

int main(int argc, char **argv)
{
	unsigned long code;
	char *end;

	if (argc != 2) {
		fprintf(stderr, "usage: godwit-exit CODE (0-255)\n");
		return 2;
	}
	errno = 0;
	code = strtoul(argv[1], &end, 10);
	if (errno || end == argv[1] || *end || code > 255) {
		fprintf(stderr, "godwit-exit: bad code '%s' (0-255)\n", argv[1]);
		return 2;
	}
	if (iopl(3)) {
		fprintf(stderr, "godwit-exit: iopl: %s\n", strerror(errno));
		return 1;
	}
	outl((unsigned int)code, GODWIT_EXIT_PORT);
	fprintf(stderr, "godwit-exit: still running: no godwit exit port here\n");
	return 1;
}
