// SPDX-License-Identifier: GPL-2.0
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "godwit/announce.h"

static const uint8_t mac[ETH_ALEN] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t ip[4] = { 192, 0, 2, 10 };

/* The RARP frame byte for byte: QEMU's announce-self layout. */
static void test_rarp_bytes(void **state)
{
	static const uint8_t want[ANNOUNCE_FRAME_LEN] = {
		/* Ethernet: broadcast <- guest MAC, RARP */
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x80, 0x35,
		/* htype 1, ptype 0x0800, hlen 6, plen 4, op 3 (request reverse) */
		0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x03,
		/* sender MAC, sender IP 0 */
		0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x00, 0x00, 0x00, 0x00,
		/* target MAC, target IP 0 */
		0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x00, 0x00, 0x00, 0x00,
		/* padding to 60: 18 zero bytes (the array's tail) */
	};
	uint8_t f[ANNOUNCE_FRAME_LEN];

	(void)state;
	memset(f, 0xaa, sizeof(f));
	assert_int_equal(announce__rarp(f, mac), 60);
	assert_memory_equal(f, want, sizeof(want));
}

/* The gratuitous ARP (RFC 5227 announcement) byte for byte. */
static void test_garp_bytes(void **state)
{
	static const uint8_t want[ANNOUNCE_FRAME_LEN] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06,
		/* htype 1, ptype 0x0800, hlen 6, plen 4, op 1 (request) */
		0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
		/* sender MAC, sender IP */
		0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 192, 0, 2, 10,
		/* target MAC 0, target IP = sender IP */
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 192, 0, 2, 10,
	};
	uint8_t f[ANNOUNCE_FRAME_LEN];

	(void)state;
	memset(f, 0xaa, sizeof(f));
	assert_int_equal(announce__garp(f, mac, ip), 60);
	assert_memory_equal(f, want, sizeof(want));
}

static void test_schedule_default(void **state)
{
	struct announce_params p;
	uint32_t t[8];

	(void)state;
	announce__default_params(&p);
	assert_int_equal(p.rounds, 5);
	memset(t, 0xff, sizeof(t));
	assert_int_equal(announce__schedule_ms(&p, t, 8), 5);
	assert_int_equal(t[0], 0);
	assert_int_equal(t[1], 50);
	assert_int_equal(t[2], 150);
	assert_int_equal(t[3], 350);
	assert_int_equal(t[4], 750);
	assert_int_equal(t[5], 0xffffffff); /* untouched past rounds */
}

static void test_schedule_cap(void **state)
{
	struct announce_params p = { .rounds = 8, .initial_ms = 100, .max_ms = 300 };
	static const uint32_t want[8] = { 0, 100, 300, 600, 900, 1200, 1500, 1800 };
	uint32_t t[8];

	(void)state;
	assert_int_equal(announce__schedule_ms(&p, t, 8), 8);
	assert_memory_equal(t, want, sizeof(want));
	/* A short output array gets only what fits. */
	memset(t, 0, sizeof(t));
	assert_int_equal(announce__schedule_ms(&p, t, 2), 8);
	assert_int_equal(t[1], 100);
	assert_int_equal(t[2], 0);
}

static void test_params_rejected(void **state)
{
	struct announce_params bad[] = {
		{ .rounds = 0, .initial_ms = 50, .max_ms = 100 },
		{ .rounds = ANNOUNCE_MAX_ROUNDS + 1, .initial_ms = 50, .max_ms = 100 },
		{ .rounds = 1, .initial_ms = 0, .max_ms = 100 },
		{ .rounds = 1, .initial_ms = 200, .max_ms = 100 },
		{ .rounds = 1, .initial_ms = 50, .max_ms = ANNOUNCE_MAX_GAP_MS + 1 },
	};
	uint32_t t[1];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(announce__check_params(&bad[i]), -EINVAL);
		assert_int_equal(announce__schedule_ms(&bad[i], t, 1), -EINVAL);
	}
}

/* What the announcer sent, and when. */
struct sink {
	unsigned int frames;
	unsigned int rarp, garp;
	int fail;
};

static int sink_send(void *opaque, const uint8_t *frame, size_t len)
{
	struct sink *s = opaque;

	assert_int_equal(len, ANNOUNCE_FRAME_LEN);
	s->frames++;
	if (frame[12] == 0x80 && frame[13] == 0x35)
		s->rarp++;
	else if (frame[12] == 0x08 && frame[13] == 0x06)
		s->garp++;
	return s->fail;
}

#define MS 1000000ULL

/* The state machine follows the schedule, and gaps count from when a round went out. */
static void test_announcer_runs(void **state)
{
	struct announce_params p;
	struct announcer a;
	struct sink s = { 0 };
	uint64_t t0 = 1000 * MS, due;

	(void)state;
	announce__default_params(&p);
	announcer__init(&a);
	assert_int_equal(announcer__run(&a, t0, sink_send, &s), ANNOUNCER_IDLE);
	assert_int_equal(announcer__start(&a, &p, mac, NULL, t0), 0);

	due = announcer__run(&a, t0, sink_send, &s);
	assert_int_equal(s.rarp, 1);
	assert_int_equal(s.garp, 0);
	assert_int_equal(due, t0 + 50 * MS);
	/* Early: nothing is sent, same due time. */
	assert_int_equal(announcer__run(&a, t0 + 10 * MS, sink_send, &s), t0 + 50 * MS);
	assert_int_equal(s.frames, 1);
	/* Late by 30 ms: the next gap (100 ms) starts from now. */
	due = announcer__run(&a, t0 + 80 * MS, sink_send, &s);
	assert_int_equal(due, t0 + 180 * MS);
	/* The address became known: gratuitous ARP from now on. */
	announcer__set_ipv4(&a, ip);
	due = announcer__run(&a, due, sink_send, &s);
	assert_int_equal(due, t0 + 380 * MS);
	assert_int_equal(s.garp, 1);
	due = announcer__run(&a, due, sink_send, &s);
	assert_int_equal(due, t0 + 780 * MS);
	due = announcer__run(&a, due, sink_send, &s);
	assert_int_equal(due, ANNOUNCER_IDLE);
	assert_int_equal(s.rarp, 5);
	assert_int_equal(s.garp, 3);
	assert_int_equal(a.frames_sent, 8);
	assert_false(a.active);
	assert_int_equal(announcer__run(&a, due, sink_send, &s), ANNOUNCER_IDLE);
	assert_int_equal(s.frames, 8);
}

static void test_announcer_cancel_and_errors(void **state)
{
	struct announce_params p = { .rounds = 3, .initial_ms = 10, .max_ms = 10 };
	struct announcer a;
	struct sink s = { .fail = -EIO };

	(void)state;
	announcer__init(&a);
	assert_int_equal(announcer__start(&a, &p, mac, ip, 0), 0);
	assert_int_equal(announcer__run(&a, 0, sink_send, &s), 10 * MS);
	assert_int_equal(a.send_errors, 2); /* RARP and gratuitous ARP both failed */
	announcer__cancel(&a);
	assert_int_equal(announcer__run(&a, 10 * MS, sink_send, &s), ANNOUNCER_IDLE);
	assert_int_equal(s.frames, 2);
	/* Bad parameters never start a schedule. */
	p.rounds = 0;
	assert_int_equal(announcer__start(&a, &p, mac, NULL, 0), -EINVAL);
	assert_false(a.active);
}

static void test_learn_ipv4(void **state)
{
	uint8_t f[ANNOUNCE_FRAME_LEN], got[4] = { 0 };
	static const uint8_t other[ETH_ALEN] = { 0x52, 0x54, 0x00, 0x99, 0x99, 0x99 };

	(void)state;
	announce__garp(f, mac, ip);
	assert_true(announce__learn_ipv4(f, sizeof(f), mac, got));
	assert_memory_equal(got, ip, 4);
	/* An ARP reply from the guest counts too. */
	f[21] = 2;
	assert_true(announce__learn_ipv4(f, sizeof(f), mac, got));
	/* Not from this MAC, truncated, a probe (sender IP 0), RARP, garbage opcode. */
	assert_false(announce__learn_ipv4(f, sizeof(f), other, got));
	assert_false(announce__learn_ipv4(f, 41, mac, got));
	assert_false(announce__learn_ipv4(NULL, 0, mac, got));
	memset(f + 28, 0, 4);
	assert_false(announce__learn_ipv4(f, sizeof(f), mac, got));
	announce__rarp(f, mac);
	assert_false(announce__learn_ipv4(f, sizeof(f), mac, got));
	announce__garp(f, mac, ip);
	f[21] = 9;
	assert_false(announce__learn_ipv4(f, sizeof(f), mac, got));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rarp_bytes),
		cmocka_unit_test(test_garp_bytes),
		cmocka_unit_test(test_schedule_default),
		cmocka_unit_test(test_schedule_cap),
		cmocka_unit_test(test_params_rejected),
		cmocka_unit_test(test_announcer_runs),
		cmocka_unit_test(test_announcer_cancel_and_errors),
		cmocka_unit_test(test_learn_ipv4),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
