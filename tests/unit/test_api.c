// SPDX-License-Identifier: GPL-2.0
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "godwit/api.h"

/* ---- a fake VM behind a fake route table ---- */

struct fake_vm {
	pthread_mutex_t lock;
	bool paused;
	int pauses;
};

static int get_vm(void *opaque, const struct api_request *req, struct api_response *resp)
{
	struct fake_vm *vm = opaque;

	(void)req;
	pthread_mutex_lock(&vm->lock);
	resp->body = json_pack("{s:s, s:i}", "state", vm->paused ? "paused" : "running", "vcpus",
			       2);
	pthread_mutex_unlock(&vm->lock);
	return resp->body ? 0 : -ENOMEM;
}

static int put_pause(void *opaque, const struct api_request *req, struct api_response *resp)
{
	struct fake_vm *vm = opaque;

	(void)req;
	pthread_mutex_lock(&vm->lock);
	vm->paused = !vm->paused;
	vm->pauses++;
	pthread_mutex_unlock(&vm->lock);
	resp->status = 204;
	return 0;
}

static int put_conflict(void *opaque, const struct api_request *req, struct api_response *resp)
{
	(void)opaque;
	(void)req;
	api__error(resp, 409, "VM is %s", "migrating");
	return -EBUSY;
}

static int put_fail(void *opaque, const struct api_request *req, struct api_response *resp)
{
	(void)opaque;
	(void)req;
	(void)resp;
	return -EIO;
}

/* Returns what the server parsed: {"method": ..., "path": ..., "body": <body or null>}. */
static int put_echo(void *opaque, const struct api_request *req, struct api_response *resp)
{
	(void)opaque;
	resp->body = json_pack("{s:s, s:s, s:O?}", "method", req->method, "path", req->path,
			       "body", req->body);
	return resp->body ? 0 : -ENOMEM;
}

static const struct api_route routes[] = {
	{ "GET", "/vm", get_vm },
	{ "PUT", "/vm/pause", put_pause },
	{ "PUT", "/vm/conflict", put_conflict },
	{ "PUT", "/vm/fail", put_fail },
	{ "PUT", "/vm/echo", put_echo },
	{ "POST", "/vm/echo", put_echo },
	{ "PUT", "/vm/things/*/echo", put_echo },
};

struct fixture {
	char dir[64];
	char path[128];
	struct fake_vm vm;
	struct api_server *srv;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	strcpy(f->dir, "/tmp/godwit-test-api-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/vm.sock", f->dir);
	pthread_mutex_init(&f->vm.lock, NULL);
	if (api__start(&f->srv, f->path, routes, sizeof(routes) / sizeof(routes[0]), &f->vm))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	api__stop(f->srv);
	unlink(f->path);
	rmdir(f->dir);
	pthread_mutex_destroy(&f->vm.lock);
	free(f);
	return 0;
}

/* ---- a minimal HTTP client over the unix socket ---- */

struct reply {
	int status;
	char head[2048];
	char body[4096];
};

static int connect_to(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 10 };
	int fd;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* A hung server fails the test instead of hanging it. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	strncpy(addr.sun_path, path, sizeof(addr.sun_path) - 1);
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr))) {
		close(fd);
		return -1;
	}
	return fd;
}

static int send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads until the server closes the connection (every request says Connection: close). */
static ssize_t read_all(int fd, char *buf, size_t size)
{
	size_t len = 0;
	ssize_t n;

	while (len < size - 1) {
		n = read(fd, buf + len, size - 1 - len);
		/* A server that answered early and closed may leave us a reset after the reply. */
		if (n < 0 && errno == ECONNRESET && len > 0)
			break;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return (ssize_t)len;
}

static int parse_reply(const char *raw, struct reply *r)
{
	const char *end = strstr(raw, "\r\n\r\n");

	if (!end || sscanf(raw, "HTTP/1.%*d %d", &r->status) != 1)
		return -1;
	snprintf(r->head, sizeof(r->head), "%.*s", (int)(end - raw), raw);
	snprintf(r->body, sizeof(r->body), "%s", end + 4);
	return 0;
}

static int http_raw(const char *path, const void *req, size_t len, struct reply *r)
{
	static __thread char raw[8192];
	int fd = connect_to(path);
	ssize_t n;

	memset(r, 0, sizeof(*r));
	if (fd < 0)
		return -1;
	/* The server may answer early and close (413): a failed send is not an error yet. */
	send_all(fd, req, len);
	n = read_all(fd, raw, sizeof(raw));
	close(fd);
	if (n < 0)
		return -1;
	return parse_reply(raw, r);
}

static int http(const char *path, const char *method, const char *url, const char *body,
		struct reply *r)
{
	size_t blen = body ? strlen(body) : 0;
	size_t size = blen + 512;
	char *req = malloc(size);
	int n, ret;

	if (!req)
		return -1;
	n = snprintf(req, size,
		     "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
		     "Content-Length: %zu\r\n\r\n%s",
		     method, url, blen, body ? body : "");
	ret = http_raw(path, req, (size_t)n, r);
	free(req);
	return ret;
}

static json_t *reply_json(const struct reply *r)
{
	return json_loads(r->body, JSON_DECODE_ANY, NULL);
}

static void assert_error_contains(const struct reply *r, const char *text)
{
	json_t *j = reply_json(r);
	const char *msg;

	assert_non_null(j);
	msg = json_string_value(json_object_get(j, "error"));
	assert_non_null(msg);
	if (!strstr(msg, text))
		fail_msg("error \"%s\" does not contain \"%s\"", msg, text);
	json_decref(j);
}

/* ---- tests ---- */

static void test_get_returns_json(void **state)
{
	struct fixture *f = *state;
	struct reply r;
	json_t *j;

	assert_int_equal(http(f->path, "GET", "/vm", NULL, &r), 0);
	assert_int_equal(r.status, 200);
	assert_non_null(strcasestr(r.head, "Content-Type: application/json"));
	j = reply_json(&r);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "running");
	assert_int_equal(json_integer_value(json_object_get(j, "vcpus")), 2);
	json_decref(j);
}

static void test_put_changes_state(void **state)
{
	struct fixture *f = *state;
	struct reply r;
	json_t *j;

	assert_int_equal(http(f->path, "PUT", "/vm/pause", NULL, &r), 0);
	assert_int_equal(r.status, 204);
	assert_string_equal(r.body, "");
	assert_int_equal(http(f->path, "GET", "/vm", NULL, &r), 0);
	j = reply_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "paused");
	json_decref(j);
	/* A query string is not part of the path. */
	assert_int_equal(http(f->path, "PUT", "/vm/pause?x=1", NULL, &r), 0);
	assert_int_equal(r.status, 204);
	assert_false(f->vm.paused);
}

static void test_body_reaches_handler(void **state)
{
	struct fixture *f = *state;
	struct reply r;
	json_t *j;

	assert_int_equal(http(f->path, "PUT", "/vm/echo", "{\"a\": [1, 2]}", &r), 0);
	assert_int_equal(r.status, 200);
	j = reply_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "method")), "PUT");
	assert_string_equal(json_string_value(json_object_get(j, "path")), "/vm/echo");
	assert_int_equal(json_array_size(json_object_get(json_object_get(j, "body"), "a")), 2);
	json_decref(j);

	/* No body: the handler sees NULL. */
	assert_int_equal(http(f->path, "POST", "/vm/echo", NULL, &r), 0);
	assert_int_equal(r.status, 200);
	j = reply_json(&r);
	assert_true(json_is_null(json_object_get(j, "body")));
	json_decref(j);
}

static void test_unknown_path_is_404(void **state)
{
	struct fixture *f = *state;
	struct reply r;

	assert_int_equal(http(f->path, "GET", "/x", NULL, &r), 0);
	assert_int_equal(r.status, 404);
	assert_non_null(strcasestr(r.head, "Content-Type: application/json"));
	assert_error_contains(&r, "no such resource: /x");
	/* Not a prefix match. */
	assert_int_equal(http(f->path, "GET", "/vm/", NULL, &r), 0);
	assert_int_equal(r.status, 404);
}

/* A "*" segment matches one non-empty segment; the handler reads it from the path. */
static void test_wildcard_segment(void **state)
{
	static const char *const misses[] = { "/vm/things//echo", "/vm/things/echo",
					      "/vm/things/1/2/echo", "/vm/things/1/echo/",
					      "/vm/things/1/ech" };
	struct fixture *f = *state;
	struct reply r;
	unsigned int i;
	json_t *j;

	assert_int_equal(http(f->path, "PUT", "/vm/things/17/echo", NULL, &r), 0);
	assert_int_equal(r.status, 200);
	j = reply_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "path")), "/vm/things/17/echo");
	json_decref(j);
	for (i = 0; i < ARRAY_SIZE(misses); i++) {
		assert_int_equal(http(f->path, "PUT", misses[i], NULL, &r), 0);
		assert_int_equal(r.status, 404);
	}
	assert_int_equal(http(f->path, "GET", "/vm/things/x/echo", NULL, &r), 0);
	assert_int_equal(r.status, 405);
	assert_non_null(strcasestr(r.head, "\r\nAllow: PUT"));
}

static void test_wrong_method_is_405(void **state)
{
	struct fixture *f = *state;
	struct reply r;

	assert_int_equal(http(f->path, "DELETE", "/vm", NULL, &r), 0);
	assert_int_equal(r.status, 405);
	assert_non_null(strcasestr(r.head, "\r\nAllow: GET"));
	assert_error_contains(&r, "DELETE");

	assert_int_equal(http(f->path, "GET", "/vm/echo", NULL, &r), 0);
	assert_int_equal(r.status, 405);
	assert_non_null(strcasestr(r.head, "\r\nAllow: PUT, POST"));
}

static void test_malformed_json_is_400(void **state)
{
	struct fixture *f = *state;
	struct reply r;

	assert_int_equal(http(f->path, "PUT", "/vm/echo", "{\"a\": 1,,}", &r), 0);
	assert_int_equal(r.status, 400);
	assert_error_contains(&r, "invalid JSON body");
	assert_error_contains(&r, "line 1, column 9");

	assert_int_equal(http(f->path, "PUT", "/vm/echo", "{\"a\": 1, \"a\": 2}", &r), 0);
	assert_int_equal(r.status, 400);
	assert_error_contains(&r, "duplicate");
}

static void test_large_body_is_413(void **state)
{
	struct fixture *f = *state;
	size_t n = API_MAX_BODY + 10;
	char *body = malloc(n + 1);
	struct reply r;

	assert_non_null(body);
	memset(body, ' ', n);
	body[n] = '\0';
	body[0] = '1';
	assert_int_equal(http(f->path, "PUT", "/vm/echo", body, &r), 0);
	assert_int_equal(r.status, 413);
	assert_error_contains(&r, "larger than");

	/* Exactly at the limit is fine. */
	body[API_MAX_BODY] = '\0';
	assert_int_equal(http(f->path, "PUT", "/vm/echo", body, &r), 0);
	assert_int_equal(r.status, 200);
	free(body);
}

/* Chunked bodies declare no length; the server must count. */
static void test_large_chunked_body_is_413(void **state)
{
	static const char head[] = "PUT /vm/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
				   "Transfer-Encoding: chunked\r\n\r\n";
	struct fixture *f = *state;
	char chunk[4096 + 16];
	char raw[2048];
	struct reply r;
	int fd, i, len;

	fd = connect_to(f->path);
	assert_true(fd >= 0);
	assert_int_equal(send_all(fd, head, strlen(head)), 0);
	len = snprintf(chunk, sizeof(chunk), "1000\r\n");
	memset(chunk + len, ' ', 4096);
	memcpy(chunk + len + 4096, "\r\n", 2);
	len += 4096 + 2;
	for (i = 0; i < 20; i++)
		assert_int_equal(send_all(fd, chunk, (size_t)len), 0);
	assert_int_equal(send_all(fd, "0\r\n\r\n", 5), 0);
	assert_true(read_all(fd, raw, sizeof(raw)) > 0);
	close(fd);
	assert_int_equal(parse_reply(raw, &r), 0);
	assert_int_equal(r.status, 413);
}

static void test_handler_status_passes_through(void **state)
{
	struct fixture *f = *state;
	struct reply r;

	assert_int_equal(http(f->path, "PUT", "/vm/conflict", NULL, &r), 0);
	assert_int_equal(r.status, 409);
	assert_error_contains(&r, "VM is migrating");

	assert_int_equal(http(f->path, "PUT", "/vm/fail", NULL, &r), 0);
	assert_int_equal(r.status, 500);
	assert_error_contains(&r, strerror(EIO));
}

static void test_garbage_does_not_kill_server(void **state)
{
#define G(s) { s, sizeof(s) - 1 }
	static const struct {
		const char *s;
		size_t len;
	} garbage[] = {
		G("\x00\x01\x02\xff\xfe garbage\r\n\r\n"),
		G("GET\r\n\r\n"),
		G("GET /vm HTTP/9.9\r\n\r\n"),
		G("PUT /vm/echo HTTP/1.1\r\nContent-Length: -5\r\n\r\n"),
		G("PUT /vm/echo HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
		G("GET /\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
		G("PUT /vm/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
	};
#undef G
	struct fixture *f = *state;
	struct reply r;
	char raw[2048];
	size_t i;
	int fd;

	for (i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		fd = connect_to(f->path);
		assert_true(fd >= 0);
		send_all(fd, garbage[i].s, garbage[i].len);
		shutdown(fd, SHUT_WR);
		read_all(fd, raw, sizeof(raw));
		close(fd);
	}
	/* A client that connects and goes away without a word. */
	fd = connect_to(f->path);
	assert_true(fd >= 0);
	close(fd);

	assert_int_equal(http(f->path, "GET", "/vm", NULL, &r), 0);
	assert_int_equal(r.status, 200);
}

static void test_keep_alive_serves_several_requests(void **state)
{
	static const char reqs[] = "GET /vm HTTP/1.1\r\nHost: x\r\n\r\n"
				   "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	struct fixture *f = *state;
	char raw[4096];
	int fd;

	fd = connect_to(f->path);
	assert_true(fd >= 0);
	assert_int_equal(send_all(fd, reqs, strlen(reqs)), 0);
	assert_true(read_all(fd, raw, sizeof(raw)) > 0);
	close(fd);
	assert_non_null(strstr(raw, "HTTP/1.1 200"));
	assert_non_null(strstr(raw, "HTTP/1.1 404"));
}

struct client_arg {
	const char *path;
	int ok;
};

static void *client_thread(void *p)
{
	struct client_arg *arg = p;
	struct reply r;
	int i;

	for (i = 0; i < 25; i++) {
		if (http(arg->path, "GET", "/vm", NULL, &r) == 0 && r.status == 200)
			arg->ok++;
		if (http(arg->path, "PUT", "/vm/echo", "[1, 2, 3]", &r) == 0 && r.status == 200)
			arg->ok++;
	}
	return NULL;
}

static void test_concurrent_clients(void **state)
{
	struct fixture *f = *state;
	struct client_arg args[8];
	pthread_t threads[8];
	int i;

	for (i = 0; i < 8; i++) {
		args[i].path = f->path;
		args[i].ok = 0;
		assert_int_equal(pthread_create(&threads[i], NULL, client_thread, &args[i]), 0);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(threads[i], NULL);
		assert_int_equal(args[i].ok, 50);
	}
}

/* While one client sits idle on its connection, others are still served. */
static void test_idle_client_does_not_block_others(void **state)
{
	struct fixture *f = *state;
	struct reply r;
	int fd;

	fd = connect_to(f->path);
	assert_true(fd >= 0);
	assert_int_equal(send_all(fd, "GET /vm HTTP/1.1\r\n", 18), 0);
	assert_int_equal(http(f->path, "GET", "/vm", NULL, &r), 0);
	assert_int_equal(r.status, 200);
	close(fd);
}

static void test_socket_mode_is_0600(void **state)
{
	struct fixture *f = *state;
	struct stat st;

	assert_int_equal(stat(f->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_live_socket_is_in_use(void **state)
{
	struct fixture *f = *state;
	struct api_server *srv2 = NULL;
	struct reply r;

	assert_int_equal(api__start(&srv2, f->path, routes, 1, NULL), -EADDRINUSE);
	assert_null(srv2);
	/* The first server is untouched. */
	assert_int_equal(http(f->path, "GET", "/vm", NULL, &r), 0);
	assert_int_equal(r.status, 200);
}

static void test_stale_socket_is_replaced(void **state)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char dir[] = "/tmp/godwit-test-api-XXXXXX";
	struct fake_vm vm = { .paused = false };
	struct api_server *srv;
	struct reply r;
	char path[128];
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/stale.sock", dir);
	/* What a crashed process leaves behind: a bound socket file with no listener. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	strcpy(addr.sun_path, path);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	close(fd);

	pthread_mutex_init(&vm.lock, NULL);
	assert_int_equal(api__start(&srv, path, routes, 1, &vm), 0);
	assert_int_equal(http(path, "GET", "/vm", NULL, &r), 0);
	assert_int_equal(r.status, 200);
	api__stop(srv);
	pthread_mutex_destroy(&vm.lock);
	assert_int_equal(rmdir(dir), 0);
}

static void test_stop_unlinks_socket(void **state)
{
	char dir[] = "/tmp/godwit-test-api-XXXXXX";
	struct api_server *srv;
	char path[128];

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.sock", dir);
	assert_int_equal(api__start(&srv, path, routes, 1, NULL), 0);
	assert_int_equal(access(path, F_OK), 0);
	api__stop(srv);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(connect_to(path), -1);
	api__stop(NULL);
	assert_int_equal(rmdir(dir), 0);
}

/* A client that holds its connection open does not keep api__stop() waiting. */
static void test_stop_with_client_connected(void **state)
{
	char dir[] = "/tmp/godwit-test-api-XXXXXX";
	struct timespec t0, t1;
	struct api_server *srv;
	char path[128], buf[64];
	int idle, partial;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.sock", dir);
	assert_int_equal(api__start(&srv, path, routes, 1, NULL), 0);
	idle = connect_to(path);
	partial = connect_to(path);
	assert_true(idle >= 0 && partial >= 0);
	assert_int_equal(send_all(partial, "GET /vm HTTP/1.1\r\nHo", 20), 0);
	usleep(100 * 1000); /* let the server pick both up */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	api__stop(srv);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	/* Not waiting for the clients (that would be forever); wide for a loaded host. */
	assert_true(t1.tv_sec - t0.tv_sec < 20);
	/* Both connections were closed by the server. */
	assert_true(read(idle, buf, sizeof(buf)) <= 0);
	assert_true(read(partial, buf, sizeof(buf)) <= 0);
	close(idle);
	close(partial);
	assert_int_equal(rmdir(dir), 0);
}

static void test_long_path_is_rejected(void **state)
{
	struct sockaddr_un addr;
	struct api_server *srv = NULL;
	char path[sizeof(addr.sun_path) + 8];

	(void)state;
	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	assert_int_equal(api__start(&srv, path, routes, 1, NULL), -ENAMETOOLONG);
	path[sizeof(addr.sun_path)] = '\0'; /* one byte too long: no room for the NUL */
	assert_int_equal(api__start(&srv, path, routes, 1, NULL), -ENAMETOOLONG);
	assert_int_equal(api__start(&srv, "", routes, 1, NULL), -EINVAL);
	assert_null(srv);
}

static void test_regular_file_is_not_replaced(void **state)
{
	char path[] = "/tmp/godwit-test-api-XXXXXX";
	struct api_server *srv = NULL;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "data", 4), 4);
	close(fd);
	assert_int_equal(api__start(&srv, path, routes, 1, NULL), -EEXIST);
	assert_int_equal(access(path, F_OK), 0);
	unlink(path);
}

static void test_error_helper(void **state)
{
	struct api_response resp = { .status = 200, .body = json_object() };

	(void)state;
	api__error(&resp, 400, "bad %s %d", "thing", 7);
	assert_int_equal(resp.status, 400);
	assert_string_equal(json_string_value(json_object_get(resp.body, "error")), "bad thing 7");
	/* Not UTF-8: still a valid JSON string. */
	api__error(&resp, 404, "no such resource: /\xff");
	assert_string_equal(json_string_value(json_object_get(resp.body, "error")),
			    "no such resource: /?");
	json_decref(resp.body);
}

#define SERVER_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		SERVER_TEST(test_get_returns_json),
		SERVER_TEST(test_put_changes_state),
		SERVER_TEST(test_body_reaches_handler),
		SERVER_TEST(test_unknown_path_is_404),
		SERVER_TEST(test_wrong_method_is_405),
		SERVER_TEST(test_wildcard_segment),
		SERVER_TEST(test_malformed_json_is_400),
		SERVER_TEST(test_large_body_is_413),
		SERVER_TEST(test_large_chunked_body_is_413),
		SERVER_TEST(test_handler_status_passes_through),
		SERVER_TEST(test_garbage_does_not_kill_server),
		SERVER_TEST(test_keep_alive_serves_several_requests),
		SERVER_TEST(test_concurrent_clients),
		SERVER_TEST(test_idle_client_does_not_block_others),
		SERVER_TEST(test_socket_mode_is_0600),
		SERVER_TEST(test_live_socket_is_in_use),
		cmocka_unit_test(test_stale_socket_is_replaced),
		cmocka_unit_test(test_stop_unlinks_socket),
		cmocka_unit_test(test_stop_with_client_connected),
		cmocka_unit_test(test_long_path_is_rejected),
		cmocka_unit_test(test_regular_file_is_not_replaced),
		cmocka_unit_test(test_error_helper),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
