/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_CONSOLE_H
#define GODWIT_CONSOLE_H

/* Where the guest's serial console goes: stdout (with stdin as input) or a file. */
enum console_kind { CONSOLE_STDIO, CONSOLE_FILE };

#endif
