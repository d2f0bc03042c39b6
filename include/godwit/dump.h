/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_DUMP_H
#define GODWIT_DUMP_H

#include <stdio.h>

/*
 * `godwit dump-stream [--json] FILE`: decodes a captured migration stream or
 * snapshot and prints one line per record on out (text, or one JSON object per
 * line with --json). argv[0] is the subcommand name. Returns 0 for a complete,
 * valid stream, 1 for a malformed one (after printing the reader's error), 2 for
 * a usage or I/O error.
 */
int dump__main(int argc, char **argv, FILE *out);

#endif
