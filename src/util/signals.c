// SPDX-License-Identifier: GPL-2.0
/* Signals the process is asked to stop by (main.c blocks them in every thread). */
#include <signal.h>
#include <sys/signalfd.h>

#include "godwit/util.h"

int util__stop_signal_fd(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	return signalfd(-1, &set, SFD_CLOEXEC);
}
