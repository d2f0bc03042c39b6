/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_TAP_H
#define GODWIT_TAP_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "godwit/util.h"

/*
 * Network frame backends.
 *
 * A virtio-net device talks to the outside through a struct net_backend: whole
 * Ethernet frames, each preceded by the 12-byte virtio-net v1 header (struct
 * virtio_net_hdr_v1 in virtio_net.h), one frame per call. The tap is the real
 * backend; tests plug in a socketpair through the same ops.
 */

/* Bytes of the per-frame header on the backend: the virtio-net v1 header. */
#define NET_BACKEND_HDR_LEN 12

/* A frame read from a backend never exceeds this (header included). */
#define NET_BACKEND_MAX_FRAME (NET_BACKEND_HDR_LEN + 65535)

struct net_backend_ops {
	/*
	 * Reads one frame (header first) into buf. Returns its length, -EAGAIN
	 * when none is waiting, -EMSGSIZE if it was longer than len (that frame is
	 * gone), or another -errno.
	 */
	ssize_t (*recv)(void *opaque, void *buf, size_t len);
	/* Sends one frame (header first); its length or -errno (-EAGAIN: no room now). */
	ssize_t (*send)(void *opaque, const struct iovec *iov, int iovcnt);
	/* An fd that polls readable (EPOLLIN) while recv has a frame to give. */
	int (*poll_fd)(void *opaque);
	/* Optional: which offloads (TUN_F_* bits) the receiver accepts; 0 = none. */
	int (*set_offload)(void *opaque, unsigned int tun_flags);
};

struct net_backend {
	const struct net_backend_ops *ops;
	void *opaque;
};

/*
 * A tap interface opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, header size
 * NET_BACKEND_HDR_LEN, non-blocking, no offloads (TUNSETOFFLOAD 0: the kernel
 * checksums and segments everything before we read it, so every frame fits an
 * MTU-sized buffer and needs no header flags).
 */
struct tap {
	int fd;
	char name[IFNAMSIZ];
	bool created; /* the interface did not exist before tap__open */
	unsigned int offload;
};

enum tap_open_mode {
	TAP_ATTACH,	   /* the interface must exist (e.g. made by `ip tuntap add`) */
	TAP_ATTACH_OR_CREATE, /* create a non-persistent tap if it does not (CAP_NET_ADMIN) */
};

/*
 * Opens tap @name. Errors are logged with what to do about them: -EINVAL (bad
 * name), -ENODEV (no such interface in TAP_ATTACH mode), -EBUSY (already in use),
 * -EPERM, -ENOENT (/dev/net/tun missing), or another -errno.
 */
int __must_check tap__open(struct tap *tap, const char *name, enum tap_open_mode mode);
void tap__close(struct tap *tap);

/* TUN_F_* offloads the reader accepts (TUNSETOFFLOAD); 0 or -errno. */
int __must_check tap__set_offload(struct tap *tap, unsigned int tun_flags);

/* One frame with its header: as net_backend_ops recv/send. */
ssize_t tap__read(struct tap *tap, void *buf, size_t len);
ssize_t tap__writev(struct tap *tap, const struct iovec *iov, int iovcnt);

/* Points @be at @tap (which must outlive it). */
void tap__backend(struct tap *tap, struct net_backend *be);

/*
 * A backend over any fd that keeps frame boundaries (a SOCK_SEQPACKET or
 * SOCK_DGRAM socket, a tap fd): what tests use. The fd stays the caller's.
 */
void net_backend__from_fd(struct net_backend *be, int *fd);

#endif
