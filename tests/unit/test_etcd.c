// SPDX-License-Identifier: GPL-2.0
/* The etcd gateway client's requests and its reading of etcd's answers (no etcd). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/cluster/etcd.h"

static void test_base64_round_trip(void **state)
{
	const char *in[] = {"", "f", "fo", "foo", "/godwit/vms/web1", "\xff\x00x"};
	size_t lens[] = {0, 1, 2, 3, 16, 3};
	size_t i, len;
	char *b, *out;

	(void)state;
	for (i = 0; i < 6; i++) {
		b = etcd__b64(in[i], lens[i]);
		assert_non_null(b);
		assert_int_equal(etcd__unb64(b, &out, &len), 0);
		assert_int_equal(len, lens[i]);
		assert_memory_equal(out, in[i], len);
		assert_int_equal(out[len], '\0');
		free(b);
		free(out);
	}
	b = etcd__b64("foo", 3);
	assert_string_equal(b, "Zm9v");
	free(b);
	assert_int_equal(etcd__unb64("Zm9", &out, &len), -EINVAL);
	assert_int_equal(etcd__unb64("Zm9*", &out, &len), -EINVAL);
	assert_null(out);
}

static void test_prefix_end(void **state)
{
	char *e;

	(void)state;
	e = etcd__prefix_end("/godwit/hosts/");
	assert_string_equal(e, "/godwit/hosts0");
	free(e);
	e = etcd__prefix_end("a\xff");
	assert_string_equal(e, "b");
	free(e);
	e = etcd__prefix_end("\xff\xff");
	assert_string_equal(e, "");
	free(e);
}

static void test_range_request(void **state)
{
	json_t *r;

	(void)state;
	r = etcd__range_request("foo", false);
	assert_string_equal(json_string_value(json_object_get(r, "key")), "Zm9v");
	assert_null(json_object_get(r, "range_end"));
	json_decref(r);
	r = etcd__range_request("foo", true);
	assert_string_equal(json_string_value(json_object_get(r, "range_end")), "Zm9w"); /* "fop" */
	json_decref(r);
}

static json_t *parse(const char *s)
{
	json_error_t err;
	json_t *j = json_loads(s, 0, &err);

	assert_non_null(j);
	return j;
}

static void test_range_parse(void **state)
{
	struct etcd_range r;
	json_t *j;

	(void)state;
	/* What etcd 3.4 answers: int64s as strings, zero fields left out. */
	j = parse("{\"header\":{\"revision\":\"7\"},\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":"
		  "\"2\",\"mod_revision\":\"5\",\"version\":\"3\",\"value\":\"YmFy\",\"lease\":"
		  "\"99\"},{\"key\":\"Zm9w\",\"create_revision\":\"6\",\"mod_revision\":\"6\","
		  "\"version\":\"1\"}],\"count\":\"2\"}");
	assert_int_equal(etcd__range_parse(j, &r), 0);
	assert_int_equal(r.revision, 7);
	assert_int_equal(r.count, 2);
	assert_string_equal(r.kvs[0].key, "foo");
	assert_string_equal(r.kvs[0].value, "bar");
	assert_int_equal(r.kvs[0].value_len, 3);
	assert_int_equal(r.kvs[0].mod_rev, 5);
	assert_int_equal(r.kvs[0].lease, 99);
	assert_string_equal(r.kvs[1].value, ""); /* an empty value is left out */
	assert_int_equal(r.kvs[1].lease, 0);
	assert_non_null(etcd_range__find(&r, "fop"));
	assert_null(etcd_range__find(&r, "fo"));
	etcd_range__free(&r);
	json_decref(j);

	j = parse("{\"header\":{\"revision\":\"4\"}}"); /* nothing found */
	assert_int_equal(etcd__range_parse(j, &r), 0);
	assert_int_equal(r.count, 0);
	etcd_range__free(&r);
	json_decref(j);
}

static void test_range_parse_rejects(void **state)
{
	const char *bad[] = {
	    "[]",
	    "{\"header\":{\"revision\":\"x\"}}",
	    "{\"kvs\":{}}",
	    "{\"kvs\":[1]}",
	    "{\"kvs\":[{\"key\":\"!!!!\"}]}",
	    "{\"kvs\":[{\"key\":\"Zm9v\",\"value\":5}]}",
	    "{\"kvs\":[{\"key\":\"Zm9v\",\"mod_revision\":\"12a\"}]}",
	};
	struct etcd_range r;
	size_t i;
	json_t *j;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		j = parse(bad[i]);
		assert_int_equal(etcd__range_parse(j, &r), -EPROTO);
		assert_int_equal(r.count, 0);
		assert_null(r.kvs);
		json_decref(j);
	}
}

static void test_txn_request(void **state)
{
	struct etcd_txn t;
	char *s;
	json_t *j;

	(void)state;
	etcd_txn__init(&t);
	assert_int_equal(etcd_txn__cmp(&t, "foo", ETCD_CREATE, ETCD_EQUAL, 0), 0);
	assert_int_equal(etcd_txn__cmp_value(&t, "foo", ETCD_NOT_EQUAL, "bar"), 0);
	assert_int_equal(etcd_txn__cmp(&t, "foo", ETCD_VALUE, ETCD_EQUAL, 1), -EINVAL);
	assert_int_equal(etcd_txn__put(&t, true, "foo", "bar", 12), 0);
	assert_int_equal(etcd_txn__delete(&t, false, "fo", true), 0);
	j = etcd__txn_request(&t);
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(
	    s, "{\"compare\":[{\"create_revision\":\"0\",\"key\":\"Zm9v\",\"result\":\"EQUAL\","
	       "\"target\":\"CREATE\"},{\"key\":\"Zm9v\",\"result\":\"NOT_EQUAL\",\"target\":"
	       "\"VALUE\",\"value\":\"YmFy\"}],\"failure\":[{\"requestDeleteRange\":{\"key\":"
	       "\"Zm8=\",\"range_end\":\"ZnA=\"}}],\"success\":[{\"requestPut\":{\"key\":\"Zm9v\","
	       "\"lease\":\"12\",\"value\":\"YmFy\"}}]}");
	free(s);
	json_decref(j);
	etcd_txn__free(&t);
}

static void test_txn_parse(void **state)
{
	bool ok = true;
	json_t *j;

	(void)state;
	j = parse("{\"header\":{\"revision\":\"3\"},\"succeeded\":true,\"responses\":[]}");
	assert_int_equal(etcd__txn_parse(j, &ok), 0);
	assert_true(ok);
	json_decref(j);
	/* A failed compare: "succeeded" is left out, not false. */
	j = parse("{\"header\":{\"revision\":\"3\"},\"responses\":[]}");
	assert_int_equal(etcd__txn_parse(j, &ok), 0);
	assert_false(ok);
	json_decref(j);
	j = parse("{\"header\":{},\"succeeded\":\"yes\"}");
	assert_int_equal(etcd__txn_parse(j, &ok), -EPROTO);
	json_decref(j);
	j = parse("{\"error\":\"x\"}");
	assert_int_equal(etcd__txn_parse(j, &ok), -EPROTO);
	json_decref(j);
}

static void test_watch_parse(void **state)
{
	int64_t rev = 3;
	int events = -1;
	json_t *j;

	(void)state;
	j = parse("{\"result\":{\"header\":{\"revision\":\"3\"},\"created\":true}}");
	assert_int_equal(etcd__watch_parse(j, &events, &rev), 0);
	assert_int_equal(events, 0);
	json_decref(j);
	j = parse("{\"result\":{\"header\":{\"revision\":\"9\"},\"events\":[{\"kv\":{}},{}]}}");
	assert_int_equal(etcd__watch_parse(j, &events, &rev), 0);
	assert_int_equal(events, 2);
	assert_int_equal(rev, 9);
	json_decref(j);
	j = parse("{\"result\":{\"canceled\":true}}");
	assert_int_equal(etcd__watch_parse(j, &events, &rev), -ECANCELED);
	json_decref(j);
	j = parse("{\"error\":{\"grpc_code\":14}}");
	assert_int_equal(etcd__watch_parse(j, &events, &rev), -EPROTO);
	json_decref(j);
}

static void test_error_parse(void **state)
{
	char msg[128];
	json_t *j;

	(void)state;
	j = parse("{\"error\":\"etcdserver: requested lease not found\",\"message\":\"etcdserver: "
		  "requested lease not found\",\"code\":5}");
	assert_int_equal(etcd__error_parse(404, j, msg, sizeof(msg)), -ENOENT);
	assert_string_equal(msg, "etcd: etcdserver: requested lease not found (HTTP 404)");
	json_decref(j);
	assert_int_equal(etcd__error_parse(502, NULL, msg, sizeof(msg)), -EIO);
	assert_string_equal(msg, "etcd: no reason given (HTTP 502)");
}

static void test_init_checks_the_url(void **state)
{
	struct etcd e;

	(void)state;
	assert_int_equal(etcd__init(&e, "127.0.0.1:2379"), -EINVAL);
	assert_non_null(strstr(e.err, "is not http://HOST:PORT"));
	assert_int_equal(etcd__init(&e, "http://127.0.0.1:2379/"), 0);
	assert_string_equal(e.url, "http://127.0.0.1:2379");
	etcd__exit(&e);
	/* The members of one cluster, tried in turn. */
	assert_int_equal(etcd__init(&e, "http://192.0.2.1:2379,https://192.0.2.2:2379/"), 0);
	assert_int_equal(e.nr_urls, 2);
	assert_string_equal(e.url, "http://192.0.2.1:2379");
	assert_string_equal(e.urls[1], "https://192.0.2.2:2379");
	etcd__exit(&e);
	assert_int_equal(etcd__init(&e, "http://192.0.2.1:2379,"), -EINVAL);
	assert_int_equal(etcd__init(&e, "http://a:1,http://a:2,http://a:3,http://a:4,http://a:5,"
					"http://a:6,http://a:7,http://a:8,http://a:9"),
			 -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_base64_round_trip),	cmocka_unit_test(test_prefix_end),
	    cmocka_unit_test(test_range_request),	cmocka_unit_test(test_range_parse),
	    cmocka_unit_test(test_range_parse_rejects), cmocka_unit_test(test_txn_request),
	    cmocka_unit_test(test_txn_parse),		cmocka_unit_test(test_watch_parse),
	    cmocka_unit_test(test_error_parse),		cmocka_unit_test(test_init_checks_the_url),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
