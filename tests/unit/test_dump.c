// SPDX-License-Identifier: GPL-2.0
/* dump-stream: decodes a small stream written to a file, in text and JSON. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "godwit/dump.h"
#include "godwit/stream.h"

#define PG STREAM_PAGE_SIZE

struct fixture {
	char path[64];
	size_t len;
};

static void make_cfg(struct stream_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->ram_size = 64 * KiB;
	cfg->nr_vcpus = 2;
	cfg->machine_version = 1;
	strcpy(cfg->cmdline, "console=ttyS0 \"quoted\"");
	cfg->nr_regions = 1;
	cfg->regions[0] = (struct stream_region){0, 64 * KiB};
	cfg->nr_devices = 1;
	strcpy(cfg->devices[0].type, "virtio-net");
	cfg->devices[0].has_mac = true;
	memcpy(cfg->devices[0].mac, "\x52\x54\x00\xab\xcd\xef", 6);
}

static int setup(void **state)
{
	static uint8_t page[PG];
	struct stream_ram_run runs[12];
	const uint8_t *data[12];
	struct fixture *f = calloc(1, sizeof(*f));
	struct stream_config cfg;
	struct stream_tlv_writer body;
	struct stream_writer w;
	struct stream_io io;
	int fd, i;

	strcpy(f->path, "/tmp/godwit-dump-XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	make_cfg(&cfg);
	for (i = 0; i < 12; i++) {
		runs[i] = (struct stream_ram_run){(uint64_t)i * PG, 1,
						  i == 0 ? STREAM_RAM_DATA : STREAM_RAM_ZERO};
		data[i] = page;
	}
	assert_int_equal(stream_io__init_fd(&io, fd), 0);
	assert_int_equal(stream__writer_init(&w, &io, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__write_header(&w), 0);
	assert_int_equal(stream__write_config(&w, &cfg), 0);
	assert_int_equal(stream__write_ram(&w, runs, 12, data), 0);
	assert_int_equal(stream__write_round(&w, &(struct stream_round){.round = 3}), 0);
	stream__tlv_writer_init(&body);
	stream__tlv_put_u64(&body, 1, 0, 0xfff0);
	stream__tlv_put_bytes(&body, 2, STREAM_TLV_OPTIONAL, "\x01\x02", 2);
	assert_int_equal(stream__write_state(&w, "vcpu", 1, 1, &body), 0);
	stream__tlv_writer_exit(&body);
	assert_int_equal(stream__write_verify(&w, (const uint64_t[]){0xabcdef}, 1), 0);
	assert_int_equal(stream__write_end(&w), 0);
	f->len = w.bytes;
	stream__writer_exit(&w);
	stream_io__exit(&io);
	close(fd);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	unlink(f->path);
	free(f);
	return 0;
}

/* Runs dump__main and returns its output (malloc'ed). */
static char *run(int *rc, const char *a1, const char *a2)
{
	char *argv[] = {(char *)"dump-stream", (char *)a1, (char *)a2, NULL};
	int argc = 1 + !!a1 + !!a2;
	char *buf = NULL;
	size_t size = 0;
	FILE *out = open_memstream(&buf, &size);

	assert_non_null(out);
	*rc = dump__main(argc, argv, out);
	fclose(out);
	return buf;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void test_text(void **state)
{
	struct fixture *f = *state;
	char hdr[80];
	char *out;
	int rc;

	out = run(&rc, f->path, NULL);
	assert_int_equal(rc, 0);
	assert_int_equal(count_lines(out), 8); /* header, 6 records, summary */
	snprintf(hdr, sizeof(hdr), "type=header major=1 minor=%u page_size=4096 arch=x86_64\n",
		 STREAM_VERSION_MINOR);
	assert_non_null(strstr(out, hdr));
	assert_non_null(strstr(out, "offset=32 record=0 type=CONFIG len="));
	assert_non_null(strstr(out, "nr_vcpus=2"));
	assert_non_null(strstr(out, "regions=[{gpa=0x0 size=0x10000}]"));
	assert_non_null(strstr(out, "cmdline=\"console=ttyS0 \\x22quoted\\x22\""));
	assert_non_null(strstr(out, "mac=52:54:00:ab:cd:ef"));
	assert_non_null(strstr(out, "record=1 type=RAM"));
	assert_non_null(strstr(out, "nr_runs=12 runs=[{gpa=0x0 npages=1 kind=data},{gpa=0x1000"));
	assert_non_null(strstr(out, ",...] data_pages=1 zero_pages=11\n"));
	assert_non_null(strstr(out, "type=ROUND len=40 round=3"));
	assert_non_null(strstr(out, "type=STATE"));
	assert_non_null(strstr(out, "id=vcpu instance=1 version=1 fields=[{tag=1 len=8 u64=0xfff0}"
				    ",{tag=2 optional=1 len=2 hex=0102}]"));
	assert_non_null(strstr(out, "digests=[0xabcdef]"));
	assert_non_null(strstr(out, "record=5 type=END len=16 records=5 checksum=0x"));
	assert_non_null(strstr(out, "type=summary records=6 skipped=0 bytes="));
	assert_non_null(strstr(out, "status=ok\n"));
	free(out);
}

static void test_json(void **state)
{
	struct fixture *f = *state;
	const char *types[] = {"header", "CONFIG", "RAM", "ROUND",
			       "STATE",	 "VERIFY", "END", "summary"};
	char *out, *line, *save = NULL;
	int rc, i = 0;

	out = run(&rc, "--json", f->path);
	assert_int_equal(rc, 0);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), i++) {
		json_error_t jerr;
		json_t *o = json_loads(line, 0, &jerr);

		assert_non_null(o);
		assert_true(i < 8);
		assert_string_equal(json_string_value(json_object_get(o, "type")), types[i]);
		if (i == 2) {
			assert_int_equal(json_array_size(json_object_get(o, "runs")), 12);
			assert_int_equal(json_integer_value(json_object_get(o, "data_pages")), 1);
		}
		if (i == 1)
			assert_int_equal(json_integer_value(json_object_get(o, "nr_vcpus")), 2);
		json_decref(o);
	}
	assert_int_equal(i, 8);
	free(out);
}

static void test_malformed(void **state)
{
	struct fixture *f = *state;
	char *out, *last;
	FILE *fp;
	int rc;

	/* flip one byte of the ROUND payload */
	fp = fopen(f->path, "r+b");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, (long)f->len - (24 + 16) - 10, SEEK_SET), 0);
	fputc(0x77, fp);
	fclose(fp);
	out = run(&rc, f->path, NULL);
	assert_int_equal(rc, 1);
	last = strstr(out, "type=error message=");
	assert_non_null(last);
	assert_non_null(strstr(last, "checksum mismatch"));

	free(out);
	assert_int_equal(truncate(f->path, 100), 0);
	out = run(&rc, "--json", f->path);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(out,
			       "{\"type\":\"error\",\"message\":\"record 0 (CONFIG) at offset 32: "
			       "truncated payload"));
	free(out);
}

static void test_usage(void **state)
{
	char *out;
	int rc;

	(void)state;
	out = run(&rc, "--help", NULL);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "usage: godwit dump-stream [--json] FILE"));
	free(out);
	out = run(&rc, NULL, NULL);
	assert_int_equal(rc, 2);
	free(out);
	out = run(&rc, "--bogus", NULL);
	assert_int_equal(rc, 2);
	free(out);
	out = run(&rc, "/nonexistent/godwit-stream", NULL);
	assert_int_equal(rc, 2);
	assert_non_null(strstr(out, "No such file"));
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_text, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_json, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
	    cmocka_unit_test(test_usage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
