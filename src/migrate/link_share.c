// SPDX-License-Identifier: GPL-2.0
/*
 * The host's migrations sharing its link around each other's pauses
 * (include/godwit/link_share.h). OFD locks, not a counter in shared memory: the
 * kernel drops a claim when its holder exits or closes the file, whatever killed it.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "godwit/link_share.h"
#include "godwit/log.h"
#include "godwit/util.h"

#define STEP_NS 1000000L

void link_share__open(struct link_share *l, const char *path)
{
	char dir[PATH_MAX];

	*l = (struct link_share){.fd = -1};
	if (!path)
		path = getenv(LINK_SHARE_ENV);
	if (!path || !*path)
		path = LINK_SHARE_DEFAULT_PATH;
	if (!strcmp(path, "none") || strlen(path) >= sizeof(dir))
		return;
	strcpy(dir, path);
	if (mkdir(dirname(dir), 0755) && errno != EEXIST) {
		pr_debug("migrations here do not share the link: %s: %s", dir, strerror(errno));
		return;
	}
	l->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (l->fd < 0)
		pr_debug("migrations here do not share the link: %s: %s", path, strerror(errno));
}

void link_share__close(struct link_share *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	l->claimed = false;
}

static int lock(struct link_share *l, short type)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};

	return fcntl(l->fd, F_OFD_SETLK, &fl) ? -errno : 0;
}

void link_share__claim(struct link_share *l)
{
	if (l->fd >= 0 && !l->claimed)
		l->claimed = !lock(l, F_RDLCK);
}

void link_share__release(struct link_share *l)
{
	if (l->fd >= 0 && l->claimed && !lock(l, F_UNLCK))
		l->claimed = false;
}

/* Whether another open file (another source) holds a claim. */
static bool claimed_elsewhere(struct link_share *l)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};

	return !fcntl(l->fd, F_OFD_GETLK, &fl) && fl.l_type != F_UNLCK;
}

void link_share__give_way(struct link_share *l, const bool *cancelled)
{
	uint64_t now, t0 = 0;

	if (l->fd < 0 || l->claimed)
		return;
	while (claimed_elsewhere(l)) {
		now = util__now_ns();
		if (!l->held_back_since)
			l->held_back_since = now;
		if (now - l->held_back_since >= LINK_SHARE_MAX_WAIT_NS ||
		    (cancelled && __atomic_load_n(cancelled, __ATOMIC_RELAXED)))
			goto out;
		if (!t0) {
			t0 = now;
			l->waits++;
		}
		nanosleep(&(struct timespec){.tv_nsec = STEP_NS}, NULL);
	}
	l->held_back_since = 0;
out:
	if (t0)
		l->waited_ns += util__now_ns() - t0;
}
