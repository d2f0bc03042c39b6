// SPDX-License-Identifier: GPL-2.0
/*
 * The tap backend against the real kernel. Everything happens in a network
 * namespace of our own (unshare(CLONE_NEWNET)): the taps we create die with
 * it when the test ends, however it ends, and nothing touches the host's
 * interfaces. Frames cross the tap both ways through an AF_PACKET socket bound
 * to the interface. Skips (77) only when /dev/net/tun cannot be opened.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "godwit/tap.h"
#include "godwit/util.h"

#define TEST_ETHERTYPE 0x88b5 /* IEEE 802 local experimental */
#define HDR NET_BACKEND_HDR_LEN

static void ifname(char *buf, const char *prefix)
{
	snprintf(buf, IFNAMSIZ, "%s%d", prefix, (int)getpid() % 100000);
}

/* What `ip tuntap add` does: a persistent interface nobody has open. */
static void make_persistent(const char *name, short type)
{
	struct ifreq ifr = { 0 };
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	assert_true(fd >= 0);
	strcpy(ifr.ifr_name, name);
	ifr.ifr_flags = type | IFF_NO_PI;
	assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
	assert_int_equal(ioctl(fd, TUNSETPERSIST, 1), 0);
	close(fd);
}

static void remove_persistent(const char *name, short type)
{
	struct ifreq ifr = { 0 };
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	assert_true(fd >= 0);
	strcpy(ifr.ifr_name, name);
	ifr.ifr_flags = type | IFF_NO_PI;
	assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
	assert_int_equal(ioctl(fd, TUNSETPERSIST, 0), 0);
	close(fd);
	assert_int_equal(if_nametoindex(name), 0);
}

/*
 * Up, without IPv6: else the kernel sends router solicitations and MLD reports into
 * the tap at moments of its choosing (a 98-byte frame once failed the "nothing
 * queued" check below on a busy host).
 */
static void link_up(const char *name)
{
	struct ifreq ifr = { 0 };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", name);
	f = fopen(path, "w");
	if (f) {
		fputs("1", f);
		fclose(f);
	}
	assert_true(s >= 0);
	strcpy(ifr.ifr_name, name);
	assert_int_equal(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP;
	assert_int_equal(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
	close(s);
}

static int packet_socket(const char *name)
{
	struct sockaddr_ll sll = {
		.sll_family = AF_PACKET,
		.sll_protocol = htons(TEST_ETHERTYPE),
		.sll_ifindex = (int)if_nametoindex(name),
	};
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(TEST_ETHERTYPE));

	assert_true(s >= 0);
	assert_true(sll.sll_ifindex > 0);
	assert_int_equal(bind(s, (struct sockaddr *)&sll, sizeof(sll)), 0);
	return s;
}

static size_t test_frame(uint8_t *f, const char *text)
{
	static const uint8_t dst[6] = { 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc };
	static const uint8_t src[6] = { 0x52, 0x54, 0x00, 0x11, 0x22, 0x33 };
	size_t len = 14 + strlen(text);

	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = TEST_ETHERTYPE >> 8;
	f[13] = TEST_ETHERTYPE & 0xff;
	memcpy(f + 14, text, strlen(text));
	/* Pad to the Ethernet minimum so nobody on the way pads it for us. */
	if (len < 60) {
		memset(f + len, 0, 60 - len);
		len = 60;
	}
	return len;
}

/* Waits up to 2 s for a frame of TEST_ETHERTYPE on the tap; its length with header. */
static ssize_t tap_read_test_frame(struct tap *tap, uint8_t *buf, size_t len)
{
	uint64_t end = util__now_ns() + 2000000000ULL;

	while (util__now_ns() < end) {
		struct pollfd pfd = { .fd = tap->fd, .events = POLLIN };
		ssize_t n;

		poll(&pfd, 1, 100);
		n = tap__read(tap, buf, len);
		if (n == -EAGAIN)
			continue;
		assert_true(n >= 0);
		/* Skip what the kernel sends by itself (IPv6 DAD, router solicitations). */
		if (n >= HDR + 14 && buf[HDR + 12] == (TEST_ETHERTYPE >> 8) &&
		    buf[HDR + 13] == (TEST_ETHERTYPE & 0xff))
			return n;
	}
	return -ETIMEDOUT;
}

static void test_bad_names(void **state)
{
	struct tap tap;

	(void)state;
	assert_int_equal(tap__open(&tap, "", TAP_ATTACH_OR_CREATE), -EINVAL);
	assert_int_equal(tap__open(&tap, NULL, TAP_ATTACH_OR_CREATE), -EINVAL);
	assert_int_equal(tap__open(&tap, "a/b", TAP_ATTACH_OR_CREATE), -EINVAL);
	assert_int_equal(tap__open(&tap, "0123456789abcdef", TAP_ATTACH_OR_CREATE), -EINVAL);
	assert_int_equal(tap.fd, -1);
}

static void test_attach_missing(void **state)
{
	char name[IFNAMSIZ];
	struct tap tap;

	(void)state;
	ifname(name, "gwnone");
	assert_int_equal(tap__open(&tap, name, TAP_ATTACH), -ENODEV);
	assert_int_equal(tap.fd, -1);
	assert_int_equal(if_nametoindex(name), 0); /* and nothing was created */
}

/* Create mode: the interface appears with our flags and disappears on close. */
static void test_create_flags(void **state)
{
	char name[IFNAMSIZ];
	struct ifreq ifr = { 0 };
	struct tap tap;
	uint8_t buf[256];
	int sz = 0;

	(void)state;
	ifname(name, "gwtest");
	assert_int_equal(tap__open(&tap, name, TAP_ATTACH_OR_CREATE), 0);
	assert_true(tap.created);
	assert_true(if_nametoindex(name) > 0);
	assert_int_equal(ioctl(tap.fd, TUNGETIFF, &ifr), 0);
	assert_string_equal(ifr.ifr_name, name);
	assert_int_equal(ifr.ifr_flags & (IFF_TAP | IFF_TUN | IFF_NO_PI | IFF_VNET_HDR),
			 IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
	assert_int_equal(ioctl(tap.fd, TUNGETVNETHDRSZ, &sz), 0);
	assert_int_equal(sz, 12);
	assert_true(fcntl(tap.fd, F_GETFL) & O_NONBLOCK);
	assert_int_equal(tap.offload, 0);
	/* Nothing to read: -EAGAIN at once, never a block. */
	assert_int_equal(tap__read(&tap, buf, sizeof(buf)), -EAGAIN);
	assert_int_equal(tap__read(&tap, buf, 4), -EINVAL);
	tap__close(&tap);
	assert_int_equal(tap.fd, -1);
	assert_int_equal(if_nametoindex(name), 0);
}

/* Attach mode on an interface made beforehand (as `ip tuntap add` would), busy, wrong kind. */
static void test_attach_existing(void **state)
{
	char name[IFNAMSIZ], tun_name[IFNAMSIZ];
	struct tap tap, second;

	(void)state;
	ifname(name, "gwpers");
	ifname(tun_name, "gwtun");
	make_persistent(name, IFF_TAP);
	make_persistent(tun_name, IFF_TUN);

	assert_int_equal(tap__open(&tap, name, TAP_ATTACH), 0);
	assert_false(tap.created);
	assert_int_equal(tap__open(&second, name, TAP_ATTACH), -EBUSY);
	assert_int_equal(second.fd, -1);
	tap__close(&tap);
	assert_true(if_nametoindex(name) > 0); /* persistent: still there */
	assert_int_equal(tap__open(&second, tun_name, TAP_ATTACH), -EINVAL);

	remove_persistent(name, IFF_TAP);
	remove_persistent(tun_name, IFF_TUN);
}

/* Frames both ways, with the 12-byte header in front, through the real kernel. */
static void test_round_trip(void **state)
{
	char name[IFNAMSIZ];
	struct tap tap;
	uint8_t frame[128], buf[2048], zero_hdr[HDR] = { 0 };
	struct iovec iov[2];
	size_t flen;
	ssize_t n;
	int ps;

	(void)state;
	ifname(name, "gwtest");
	assert_int_equal(tap__open(&tap, name, TAP_ATTACH_OR_CREATE), 0);
	link_up(name);
	ps = packet_socket(name);

	/* Host -> tap: the kernel transmits on the interface, we read it with a header. */
	flen = test_frame(frame, "godwit: host to guest");
	assert_int_equal(send(ps, frame, flen, 0), (ssize_t)flen);
	memset(buf, 0xee, sizeof(buf));
	n = tap_read_test_frame(&tap, buf, sizeof(buf));
	assert_int_equal(n, (ssize_t)(HDR + flen));
	assert_memory_equal(buf, zero_hdr, HDR); /* no offloads: an all-zero header */
	assert_memory_equal(buf + HDR, frame, flen);

	/* Tap -> host: what we write comes out of the interface as received. */
	flen = test_frame(frame, "godwit: guest to host");
	iov[0] = (struct iovec){ .iov_base = zero_hdr, .iov_len = HDR };
	iov[1] = (struct iovec){ .iov_base = frame, .iov_len = flen };
	assert_int_equal(tap__writev(&tap, iov, 2), (ssize_t)(HDR + flen));
	for (int tries = 0; tries < 20; tries++) {
		struct pollfd pfd = { .fd = ps, .events = POLLIN };
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);

		assert_true(poll(&pfd, 1, 2000) == 1);
		n = recvfrom(ps, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		assert_true(n > 0);
		if (from.sll_pkttype == PACKET_OUTGOING)
			continue;
		break;
	}
	assert_int_equal(n, (ssize_t)flen);
	assert_memory_equal(buf, frame, flen);

	/* The same through the backend ops. */
	{
		struct net_backend be;

		tap__backend(&tap, &be);
		assert_int_equal(be.ops->poll_fd(be.opaque), tap.fd);
		assert_int_equal(be.ops->set_offload(be.opaque, 0), 0);
		assert_int_equal(be.ops->recv(be.opaque, buf, sizeof(buf)), -EAGAIN);
		assert_int_equal(be.ops->send(be.opaque, iov, 2), (ssize_t)(HDR + flen));
	}
	close(ps);
	tap__close(&tap);
}

/* Offloads can be switched on (what a device that negotiated csum would do). */
static void test_offload(void **state)
{
	char name[IFNAMSIZ];
	struct tap tap;

	(void)state;
	ifname(name, "gwtest");
	assert_int_equal(tap__open(&tap, name, TAP_ATTACH_OR_CREATE), 0);
	assert_int_equal(tap__set_offload(&tap, TUN_F_CSUM | TUN_F_TSO4), 0);
	assert_int_equal(tap.offload, TUN_F_CSUM | TUN_F_TSO4);
	assert_int_equal(tap__set_offload(&tap, 0), 0);
	/* TSO without CSUM is refused by the kernel. */
	assert_true(tap__set_offload(&tap, TUN_F_TSO4) < 0);
	tap__close(&tap);
}

/* The datagram-fd backend the device tests use. */
static void test_fd_backend(void **state)
{
	struct net_backend be;
	uint8_t buf[64], big[200] = { 0 };
	struct iovec iov = { .iov_base = big, .iov_len = sizeof(big) };
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	net_backend__from_fd(&be, &sv[0]);
	assert_int_equal(be.ops->poll_fd(be.opaque), sv[0]);
	assert_int_equal(be.ops->recv(be.opaque, buf, sizeof(buf)), -EAGAIN);
	assert_int_equal(write(sv[1], big, 20), 20);
	assert_int_equal(be.ops->recv(be.opaque, buf, sizeof(buf)), 20);
	/* Too big for the buffer: reported, and the frame is gone. */
	assert_int_equal(write(sv[1], big, sizeof(big)), (ssize_t)sizeof(big));
	assert_int_equal(be.ops->recv(be.opaque, buf, sizeof(buf)), -EMSGSIZE);
	assert_int_equal(be.ops->recv(be.opaque, buf, sizeof(buf)), -EAGAIN);
	assert_int_equal(be.ops->send(be.opaque, &iov, 1), (ssize_t)sizeof(big));
	assert_int_equal(read(sv[1], big, sizeof(big)), (ssize_t)sizeof(big));
	/* Peer gone. */
	close(sv[1]);
	assert_true(be.ops->recv(be.opaque, buf, sizeof(buf)) < 0);
	assert_true(be.ops->send(be.opaque, &iov, 1) < 0);
	close(sv[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_names),     cmocka_unit_test(test_attach_missing),
		cmocka_unit_test(test_create_flags),  cmocka_unit_test(test_attach_existing),
		cmocka_unit_test(test_round_trip),    cmocka_unit_test(test_offload),
		cmocka_unit_test(test_fd_backend),
	};
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "test_tap: SKIP: /dev/net/tun: %s\n", strerror(errno));
		return 77;
	}
	close(fd);
	/* Our own network namespace: every interface we make dies with the process. */
	if (unshare(CLONE_NEWNET)) {
		fprintf(stderr, "test_tap: unshare(CLONE_NEWNET): %s (needs CAP_SYS_ADMIN)\n",
			strerror(errno));
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
