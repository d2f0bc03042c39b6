// SPDX-License-Identifier: GPL-2.0
/*
 * The etcd client against a real etcd (tests/integration/test_cluster_etcd.py starts
 * it and passes its URL): every call, a transaction both ways, leases that expire, a
 * watch that wakes and one that times out. Exits 0 when all hold.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "godwit/cluster/etcd.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: %s failed (%s)\n", __FILE__, __LINE__, #cond,      \
				e.err);                                                            \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

static struct etcd e;

static void kv(void)
{
	struct etcd_range r;

	CHECK(etcd__put(&e, "/t/a", "{\"x\":1}", 0) == 0);
	CHECK(etcd__put(&e, "/t/b", "", 0) == 0);
	CHECK(etcd__put(&e, "/t0", "outside", 0) == 0);
	CHECK(etcd__get(&e, "/t/a", &r) == 0 && r.count == 1);
	CHECK(!strcmp(r.kvs[0].value, "{\"x\":1}") && r.kvs[0].version == 1);
	etcd_range__free(&r);
	CHECK(etcd__list(&e, "/t/", &r) == 0 && r.count == 2);
	CHECK(!strcmp(r.kvs[0].key, "/t/a") && !strcmp(r.kvs[1].key, "/t/b"));
	CHECK(r.kvs[1].value_len == 0);
	etcd_range__free(&r);
	CHECK(etcd__delete(&e, "/t/", true) == 0);
	CHECK(etcd__list(&e, "/t/", &r) == 0 && r.count == 0);
	etcd_range__free(&r);
	CHECK(etcd__get(&e, "/t0", &r) == 0 && r.count == 1);
	etcd_range__free(&r);
}

static bool create_once(const char *key, const char *value)
{
	struct etcd_txn t;
	bool ok = false;

	etcd_txn__init(&t);
	CHECK(etcd_txn__cmp(&t, key, ETCD_CREATE, ETCD_EQUAL, 0) == 0);
	CHECK(etcd_txn__put(&t, true, key, value, 0) == 0);
	CHECK(etcd__txn(&e, &t, &ok) == 0);
	etcd_txn__free(&t);
	return ok;
}

static void txn(void)
{
	struct etcd_range r;
	struct etcd_txn t;
	bool ok;

	CHECK(create_once("/t/owner", "host-a"));
	CHECK(!create_once("/t/owner", "host-b"));
	/* An owner changes only from the one named. */
	etcd_txn__init(&t);
	CHECK(etcd_txn__cmp_value(&t, "/t/owner", ETCD_EQUAL, "host-b") == 0);
	CHECK(etcd_txn__put(&t, true, "/t/owner", "host-c", 0) == 0);
	CHECK(etcd__txn(&e, &t, &ok) == 0 && !ok);
	etcd_txn__free(&t);
	etcd_txn__init(&t);
	CHECK(etcd_txn__cmp_value(&t, "/t/owner", ETCD_EQUAL, "host-a") == 0);
	CHECK(etcd_txn__put(&t, true, "/t/owner", "host-b", 0) == 0);
	CHECK(etcd_txn__delete(&t, true, "/t0", false) == 0);
	CHECK(etcd__txn(&e, &t, &ok) == 0 && ok);
	etcd_txn__free(&t);
	CHECK(etcd__get(&e, "/t/owner", &r) == 0 && !strcmp(r.kvs[0].value, "host-b"));
	etcd_range__free(&r);
	CHECK(etcd__get(&e, "/t0", &r) == 0 && r.count == 0);
	etcd_range__free(&r);
}

static void lease(void)
{
	struct etcd_range r;
	int64_t id, ttl;
	int i;

	CHECK(etcd__lease_grant(&e, 2, &id) == 0);
	CHECK(etcd__put(&e, "/t/alive", "yes", id) == 0);
	CHECK(etcd__get(&e, "/t/alive", &r) == 0 && r.count == 1 && r.kvs[0].lease == id);
	etcd_range__free(&r);
	CHECK(etcd__lease_keepalive(&e, id, &ttl) == 0 && ttl == 2);
	/* Without keepalives the key goes with the lease (bounded: 10 s). */
	for (i = 0; i < 100; i++) {
		CHECK(etcd__get(&e, "/t/alive", &r) == 0);
		if (!r.count)
			break;
		etcd_range__free(&r);
		usleep(100 * 1000);
	}
	CHECK(r.count == 0);
	etcd_range__free(&r);
	CHECK(etcd__lease_keepalive(&e, id, &ttl) == -ENOENT);
	CHECK(etcd__lease_grant(&e, 30, &id) == 0);
	CHECK(etcd__put(&e, "/t/alive", "yes", id) == 0);
	CHECK(etcd__lease_revoke(&e, id) == 0);
	CHECK(etcd__get(&e, "/t/alive", &r) == 0 && r.count == 0);
	etcd_range__free(&r);
	CHECK(etcd__put(&e, "/t/x", "y", 12345) == -ENOENT);
}

static void watch(void)
{
	struct etcd_range r;
	int64_t rev, seen;
	pid_t pid;

	CHECK(etcd__get(&e, "/w/", &r) == 0);
	rev = r.revision;
	etcd_range__free(&r);
	/* Nothing changes: the wait ends by its timeout. */
	CHECK(etcd__watch(&e, "/w/", rev, 300, &seen) == 0);
	/* A change made before the watch starts, after rev: seen at once. */
	CHECK(etcd__put(&e, "/w/k", "1", 0) == 0);
	CHECK(etcd__watch(&e, "/w/", rev, 5000, &seen) == 1 && seen > rev);
	/* A change made while it waits, by another client. */
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		struct etcd other;

		usleep(300 * 1000);
		if (etcd__init(&other, e.url) || etcd__put(&other, "/w/k", "2", 0))
			_exit(1);
		_exit(0);
	}
	rev = seen;
	CHECK(etcd__watch(&e, "/w/", rev, 10000, &seen) == 1 && seen > rev);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: etcd_live http://HOST:PORT\n");
		return 2;
	}
	if (etcd__init(&e, argv[1]))
		return 2;
	kv();
	txn();
	lease();
	watch();
	etcd__exit(&e);
	CHECK(etcd__init(&e, "http://127.0.0.1:1") == 0);
	CHECK(etcd__put(&e, "/x", "y", 0) == -ECONNREFUSED && strstr(e.err, "127.0.0.1:1"));
	etcd__exit(&e);
	printf("etcd_live: all passed\n");
	return 0;
}
