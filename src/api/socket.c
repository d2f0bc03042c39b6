// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "godwit/log.h"
#include "socket.h"

#define API_LISTEN_BACKLOG 16

static int fill_addr(struct sockaddr_un *addr, const char *path)
{
	size_t len = strlen(path);

	if (len == 0) {
		pr_err("API socket path is empty");
		return -EINVAL;
	}
	/* sun_path must hold the terminating NUL too: no abstract or unterminated names. */
	if (len >= sizeof(addr->sun_path)) {
		pr_err("API socket path %s is too long (%zu bytes, at most %zu)", path, len,
		       sizeof(addr->sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	memcpy(addr->sun_path, path, len + 1);
	return 0;
}

/*
 * A socket file at @path: is anyone serving on it? A successful connect() says
 * yes; ECONNREFUSED says the file was left behind by a process that is gone.
 */
static int probe_existing(const struct sockaddr_un *addr, const char *path)
{
	int fd, ret;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ret = connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) ? -errno : 0;
	close(fd);
	if (ret == 0) {
		pr_err("API socket %s is in use by another process", path);
		return -EADDRINUSE;
	}
	if (ret != -ECONNREFUSED) {
		pr_err("API socket %s exists and cannot be probed: %s", path, strerror(-ret));
		return ret;
	}
	pr_debug("API socket %s is stale, replacing it", path);
	if (unlink(path) && errno != ENOENT) {
		ret = -errno;
		pr_err("cannot remove stale API socket %s: %s", path, strerror(-ret));
		return ret;
	}
	return 0;
}

static int clear_path(const struct sockaddr_un *addr, const char *path)
{
	struct stat st;
	int ret;

	if (lstat(path, &st)) {
		if (errno == ENOENT)
			return 0;
		ret = -errno;
		pr_err("API socket %s: %s", path, strerror(-ret));
		return ret;
	}
	/* Never unlink a file that is not a socket: it may be the user's data. */
	if (!S_ISSOCK(st.st_mode)) {
		pr_err("API socket path %s exists and is not a socket", path);
		return -EEXIST;
	}
	return probe_existing(addr, path);
}

static int bind_private(int fd, const struct sockaddr_un *addr, const char *path)
{
	int ret;

	if (bind(fd, (const struct sockaddr *)addr, sizeof(*addr))) {
		ret = -errno;
		if (ret == -EADDRINUSE)
			pr_err("API socket %s is in use by another process", path);
		else
			pr_err("cannot bind API socket %s: %s", path, strerror(-ret));
		return ret;
	}
	/*
	 * bind() creates the file with the process umask. Tighten it before listen():
	 * until then every connect() is refused, so nobody gets in through the gap.
	 * chmod, not umask(): umask is process-wide and other threads create files.
	 */
	if (chmod(path, 0600)) {
		ret = -errno;
		pr_err("cannot set mode of API socket %s: %s", path, strerror(-ret));
		unlink(path);
		return ret;
	}
	return 0;
}

int api_socket__listen(struct api_socket *sock, const char *path)
{
	struct sockaddr_un addr;
	struct stat st;
	int fd, ret;

	ret = fill_addr(&addr, path);
	if (ret)
		return ret;
	ret = clear_path(&addr, path);
	if (ret)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		ret = -errno;
		pr_err("cannot create API socket: %s", strerror(-ret));
		return ret;
	}
	ret = bind_private(fd, &addr, path);
	if (ret)
		goto err_close;
	if (stat(path, &st) || listen(fd, API_LISTEN_BACKLOG)) {
		ret = -errno;
		pr_err("cannot listen on API socket %s: %s", path, strerror(-ret));
		goto err_unlink;
	}
	sock->fd = fd;
	sock->dev = st.st_dev;
	sock->ino = st.st_ino;
	return 0;

err_unlink:
	unlink(path);
err_close:
	close(fd);
	return ret;
}

void api_socket__close(struct api_socket *sock, const char *path)
{
	struct stat st;

	if (sock->fd < 0)
		return;
	close(sock->fd);
	sock->fd = -1;
	/* Another process may have taken the path over since: leave its socket alone. */
	if (!stat(path, &st) && st.st_dev == sock->dev && st.st_ino == sock->ino)
		unlink(path);
}
