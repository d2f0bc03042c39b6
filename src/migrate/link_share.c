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
/* One byte of the file each: a pausing move's claim, every open move's presence. */
#define CLAIM_BYTE   0
#define PRESENT_BYTE 1

static int lock(struct link_share *l, short type, off_t byte)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};

	return fcntl(l->fd, F_OFD_SETLK, &fl) ? -errno : 0;
}

/* Whether another open file (another source) holds a lock on byte. */
static bool held_elsewhere(struct link_share *l, off_t byte)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};

	return !fcntl(l->fd, F_OFD_GETLK, &fl) && fl.l_type != F_UNLCK;
}

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
	else if (lock(l, F_RDLCK, PRESENT_BYTE))
		pr_debug("other moves from this host will not see this one: %s", strerror(errno));
}

void link_share__close(struct link_share *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	l->claimed = false;
}

void link_share__claim(struct link_share *l)
{
	if (l->fd >= 0 && !l->claimed)
		l->claimed = !lock(l, F_RDLCK, CLAIM_BYTE);
}

void link_share__release(struct link_share *l)
{
	if (l->fd >= 0 && l->claimed && !lock(l, F_UNLCK, CLAIM_BYTE))
		l->claimed = false;
}

void link_share__give_way(struct link_share *l, const bool *cancelled)
{
	uint64_t now, t0 = 0;

	if (l->fd < 0 || l->claimed)
		return;
	while (held_elsewhere(l, CLAIM_BYTE)) {
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

bool link_share__others(struct link_share *l)
{
	uint64_t now;

	if (l->fd < 0)
		return false;
	now = util__now_ns();
	if (!l->looked_at || now - l->looked_at >= LINK_SHARE_LOOK_NS) {
		l->looked_at = now;
		l->others = held_elsewhere(l, PRESENT_BYTE);
	}
	return l->others;
}
