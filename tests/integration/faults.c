// SPDX-License-Identifier: GPL-2.0
/*
 * LD_PRELOAD'ed into godwit by the disk tests (conftest.py `faults`): what no real
 * failure produces on cue.
 *
 * GODWIT_FAIL_UNLOCK=PATH: releasing the OFD lock of the image PATH fails (ENOLCK).
 * GODWIT_GRAB_ON_FAIL=PATH: at that moment, another open file description takes a
 * write lock on the image PATH and keeps it (as another process would).
 * GODWIT_HOLD_SYNC=PATH and GODWIT_SYNC_GATE=FILE: fdatasync of the file PATH waits
 * until FILE exists (at most 120 s), as a slow disk would hold it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int fcntl(int fd, int cmd, ...);

static int (*real_fcntl)(int fd, int cmd, ...);

static int is_image(int fd, const char *path)
{
	struct stat a, b;

	return path && !fstat(fd, &a) && !stat(path, &b) && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

static void grab(const char *path)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	int fd = path ? open(path, O_RDWR | O_CLOEXEC) : -1;

	/* Left open on purpose: the lock lasts as long as this process. */
	if (fd >= 0 && real_fcntl(fd, F_OFD_SETLK, &fl))
		close(fd);
}

int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (!real_fcntl)
		real_fcntl = (int (*)(int, int, ...))dlsym(RTLD_NEXT, "fcntl");
	if (cmd == F_OFD_SETLK && ((struct flock *)arg)->l_type == F_UNLCK &&
	    is_image(fd, getenv("GODWIT_FAIL_UNLOCK"))) {
		grab(getenv("GODWIT_GRAB_ON_FAIL"));
		errno = ENOLCK;
		return -1;
	}
	return real_fcntl(fd, cmd, arg);
}

int fdatasync(int fd)
{
	static int (*real_fdatasync)(int fd);
	struct timespec tick = {.tv_nsec = 10 * 1000 * 1000};
	const char *gate = getenv("GODWIT_SYNC_GATE");
	struct stat st;
	int i;

	if (!real_fdatasync)
		real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	if (gate && is_image(fd, getenv("GODWIT_HOLD_SYNC")))
		for (i = 0; i < 12000 && stat(gate, &st); i++)
			nanosleep(&tick, NULL);
	return real_fdatasync(fd);
}
