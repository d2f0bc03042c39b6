// SPDX-License-Identifier: GPL-2.0
/*
 * Tap backend: frames to and from a Linux tap interface, each with the 12-byte
 * virtio-net v1 header in front (IFF_VNET_HDR + TUNSETVNETHDRSZ 12), so a frame
 * goes between the tap and a virtqueue without reshaping.
 *
 * Offloads start off (TUNSETOFFLOAD 0): the kernel hands us only complete,
 * checksummed frames no larger than the interface MTU, and the virtio-net device
 * offers the guest no checksum or segmentation features to match. Turning them
 * on is one tap__set_offload() call once the device negotiates them.
 *
 * The fd is non-blocking: the device's I/O thread polls it and never waits
 * inside read or write.
 *
 * The kernel writes only the first 10 bytes of the 12-byte header on read (the
 * num_buffers field is left as it was in our buffer), so tap__read zeroes it:
 * the device sets it as virtio requires.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "godwit/log.h"
#include "godwit/tap.h"

#define TUN_PATH "/dev/net/tun"

static bool name_valid(const char *name)
{
	size_t len = name ? strlen(name) : 0;

	if (!len || len >= IFNAMSIZ)
		return false;
	/* What the kernel refuses in an interface name (dev_valid_name). */
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (name[i] == '/' || name[i] == ':' || name[i] == ' ' || name[i] == '\t' ||
		    name[i] == '\n')
			return false;
	}
	return true;
}

static int open_tun_dev(void)
{
	int fd = open(TUN_PATH, O_RDWR | O_NONBLOCK | O_CLOEXEC);

	if (fd >= 0)
		return fd;
	if (errno == ENOENT || errno == ENODEV || errno == ENXIO) {
		pr_err("%s: not available (load the tun module: modprobe tun)", TUN_PATH);
		return -ENOENT;
	}
	pr_err("%s: %s", TUN_PATH, strerror(errno));
	return -errno;
}

/* TUNSETIFF failed with @err: say what to do about it. */
static int setiff_error(const char *name, int err)
{
	switch (err) {
	case EPERM:
		pr_err("tap %s: permission denied; run as root, or create it for this user with "
		       "`ip tuntap add dev %s mode tap vnet_hdr user $USER`",
		       name, name);
		return -EPERM;
	case EBUSY:
		pr_err("tap %s: already in use (another VM or process has it open)", name);
		return -EBUSY;
	case EINVAL:
		pr_err("tap %s: exists but is not a single-queue tap (a tun device, or "
		       "multi_queue?); recreate it with `ip tuntap add dev %s mode tap vnet_hdr`",
		       name, name);
		return -EINVAL;
	default:
		pr_err("tap %s: %s", name, strerror(err));
		return -err;
	}
}

static int tap_ioctl_int(struct tap *tap, unsigned long req, int val, const char *what)
{
	if (ioctl(tap->fd, req, &val) < 0) {
		int err = errno;

		pr_err("tap %s: %s: %s", tap->name, what, strerror(err));
		return -err;
	}
	return 0;
}

int tap__open(struct tap *tap, const char *name, enum tap_open_mode mode)
{
	struct ifreq ifr;
	int ret;

	memset(tap, 0, sizeof(*tap));
	tap->fd = -1;
	if (!name_valid(name)) {
		pr_err("tap name '%s': not a valid interface name (1 to %d characters, no '/', "
		       "':' or spaces)",
		       name ? name : "", IFNAMSIZ - 1);
		return -EINVAL;
	}
	strcpy(tap->name, name);
	tap->created = !if_nametoindex(name);
	if (tap->created && mode == TAP_ATTACH) {
		pr_err("tap %s: no such device; create it with `ip tuntap add dev %s mode tap "
		       "vnet_hdr` and `ip link set %s up` (or attach it to a bridge)",
		       name, name, name);
		return -ENODEV;
	}
	ret = open_tun_dev();
	if (ret < 0)
		return ret;
	tap->fd = ret;

	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, name);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(tap->fd, TUNSETIFF, &ifr) < 0) {
		ret = setiff_error(name, errno);
		goto err_close;
	}
	ret = tap_ioctl_int(tap, TUNSETVNETHDRSZ, NET_BACKEND_HDR_LEN, "TUNSETVNETHDRSZ");
	if (ret)
		goto err_close;
	ret = tap__set_offload(tap, 0);
	if (ret)
		goto err_close;
	return 0;

err_close:
	close(tap->fd);
	tap->fd = -1;
	return ret;
}

void tap__close(struct tap *tap)
{
	if (tap->fd >= 0)
		close(tap->fd);
	tap->fd = -1;
}

int tap__set_offload(struct tap *tap, unsigned int tun_flags)
{
	if (ioctl(tap->fd, TUNSETOFFLOAD, (unsigned long)tun_flags) < 0) {
		int err = errno;

		pr_err("tap %s: TUNSETOFFLOAD 0x%x: %s", tap->name, tun_flags, strerror(err));
		return -err;
	}
	tap->offload = tun_flags;
	return 0;
}

ssize_t tap__read(struct tap *tap, void *buf, size_t len)
{
	ssize_t n;

	if (len < NET_BACKEND_HDR_LEN)
		return -EINVAL;
	do {
		n = read(tap->fd, buf, len);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if (n < NET_BACKEND_HDR_LEN)
		return -EIO;
	/* num_buffers: not written by the kernel (see the top of this file). */
	memset((uint8_t *)buf + 10, 0, 2);
	return n;
}

ssize_t tap__writev(struct tap *tap, const struct iovec *iov, int iovcnt)
{
	ssize_t n;

	do {
		n = writev(tap->fd, iov, iovcnt);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static ssize_t tap_recv(void *opaque, void *buf, size_t len)
{
	return tap__read(opaque, buf, len);
}

static ssize_t tap_send(void *opaque, const struct iovec *iov, int iovcnt)
{
	return tap__writev(opaque, iov, iovcnt);
}

static int tap_poll_fd(void *opaque)
{
	struct tap *tap = opaque;

	return tap->fd;
}

static int tap_set_offload(void *opaque, unsigned int tun_flags)
{
	return tap__set_offload(opaque, tun_flags);
}

static const struct net_backend_ops tap_ops = {
	.recv = tap_recv,
	.send = tap_send,
	.poll_fd = tap_poll_fd,
	.set_offload = tap_set_offload,
};

void tap__backend(struct tap *tap, struct net_backend *be)
{
	be->ops = &tap_ops;
	be->opaque = tap;
}

/* ---- A backend over a datagram fd (tests) ---- */

static ssize_t fd_recv(void *opaque, void *buf, size_t len)
{
	int fd = *(int *)opaque;
	ssize_t n;

	do {
		n = recv(fd, buf, len, MSG_DONTWAIT | MSG_TRUNC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if (n == 0)
		return -EPIPE; /* the peer is gone (a frame is never empty) */
	if ((size_t)n > len)
		return -EMSGSIZE;
	return n;
}

static ssize_t fd_send(void *opaque, const struct iovec *iov, int iovcnt)
{
	struct msghdr msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
	int fd = *(int *)opaque;
	ssize_t n;

	do {
		n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static int fd_poll_fd(void *opaque)
{
	return *(int *)opaque;
}

static const struct net_backend_ops fd_ops = {
	.recv = fd_recv,
	.send = fd_send,
	.poll_fd = fd_poll_fd,
};

void net_backend__from_fd(struct net_backend *be, int *fd)
{
	be->ops = &fd_ops;
	be->opaque = fd;
}
