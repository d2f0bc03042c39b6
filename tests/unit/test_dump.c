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
#include "godwit/virtio_net.h"
#include "godwit/vmstate.h"

#define PG STREAM_PAGE_SIZE

struct fixture {
	char path[64];
	size_t len;
};

/* What a test stream gets wrong, each a thing a destination refuses. */
struct flaws {
	uint64_t ram_size;	/* 0: 64 MiB */
	uint32_t nr_vcpus;	/* 0: 2 */
	uint32_t machine_version; /* 0: 1 */
	bool no_cpuid, drop_vcpu1, no_msrs, unknown_device, trailing;
};

static void make_cfg(struct stream_config *cfg, const struct flaws *fl)
{
	static const uint8_t cpuid[] = { 1, 2, 3, 4 };

	memset(cfg, 0, sizeof(*cfg));
	cfg->ram_size = fl->ram_size ? fl->ram_size : 64 * MiB;
	cfg->nr_vcpus = fl->nr_vcpus ? fl->nr_vcpus : 2;
	cfg->machine_version = fl->machine_version ? fl->machine_version : 1;
	strcpy(cfg->cmdline, "console=ttyS0 \"quoted\"");
	cfg->nr_regions = 1;
	cfg->regions[0] = (struct stream_region){0, cfg->ram_size};
	cfg->cpuid = fl->no_cpuid ? NULL : (uint8_t *)cpuid;
	cfg->cpuid_len = fl->no_cpuid ? 0 : sizeof(cpuid);
	cfg->nr_devices = 1 + fl->unknown_device;
	strcpy(cfg->devices[0].type, "virtio-net");
	cfg->devices[0].has_mac = true;
	memcpy(cfg->devices[0].mac, "\x52\x54\x00\xab\xcd\xef", 6);
	strcpy(cfg->devices[1].type, "virtio-gpu");
}

/* The final state: every section a destination waits for, zeroed but well-formed. */
static void write_state(struct stream_writer *w, const struct stream_config *cfg,
			const struct flaws *fl)
{
	struct x86_vcpu_state *vcpu = calloc(1, sizeof(*vcpu));
	struct serial8250_state *ser = calloc(1, sizeof(*ser));
	struct virtio_net_state net = { 0 };
	struct x86_vm_state vms = { 0 };
	uint32_t i;

	assert_non_null(vcpu);
	assert_non_null(ser);
	/* A network card the driver has not set up yet. */
	memcpy(net.mac, "\x52\x54\x00\xab\xcd\xef", 6);
	net.transport.device_id = VIRTIO_ID_NET;
	net.transport.nr_queues = VIRTIO_NET_NR_QUEUES;
	vcpu->nr_msrs = fl->no_msrs ? 0 : 1;
	vcpu->msrs[0] = (struct x86_msr){ .index = 0x10, .value = 1 };
	for (i = 0; i < cfg->nr_vcpus; i++)
		if (!(i == 1 && fl->drop_vcpu1))
			assert_int_equal(vmstate__put_vcpu(w, i, vcpu), 0);
	assert_int_equal(vmstate__put_vm(w, &vms), 0);
	assert_int_equal(vmstate__put_serial(w, ser), 0);
	assert_int_equal(vmstate__put_virtio_net(w, 0, &net), 0);
	free(vcpu);
	free(ser);
}

static struct fixture *write_stream(const struct flaws *fl)
{
	static uint8_t page[PG];
	struct stream_ram_run runs[12];
	const uint8_t *data[12];
	struct fixture *f = calloc(1, sizeof(*f));
	struct stream_config cfg;
	struct stream_writer w;
	struct stream_io io;
	uint64_t *digests;
	size_t nd;
	int fd, i;

	strcpy(f->path, "/tmp/godwit-dump-XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	make_cfg(&cfg, fl);
	for (i = 0; i < 12; i++) {
		runs[i] = (struct stream_ram_run){(uint64_t)i * PG, 1,
						  i == 0 ? STREAM_RAM_DATA : STREAM_RAM_ZERO};
		data[i] = page;
	}
	nd = stream__digest_count(&cfg);
	digests = calloc(nd, sizeof(*digests));
	assert_non_null(digests);
	digests[0] = 0xabcdef;
	assert_int_equal(stream_io__init_fd(&io, fd), 0);
	assert_int_equal(stream__writer_init(&w, &io, STREAM_CTX_DATA), 0);
	assert_int_equal(stream__write_header(&w), 0);
	assert_int_equal(stream__write_config(&w, &cfg), 0);
	assert_int_equal(stream__write_ram(&w, runs, 12, data), 0);
	assert_int_equal(stream__write_round(&w, &(struct stream_round){.round = 3}), 0);
	write_state(&w, &cfg, fl);
	if (nd * sizeof(*digests) <= 4 * MiB) /* VERIFY's limit: not for a 2 TiB VM */
		assert_int_equal(stream__write_verify(&w, digests, nd), 0);
	assert_int_equal(stream__write_end(&w), 0);
	f->len = w.bytes;
	stream__writer_exit(&w);
	stream_io__exit(&io);
	if (fl->trailing)
		assert_int_equal(write(fd, "x", 1), 1);
	close(fd);
	free(digests);
	return f;
}

static int setup(void **state)
{
	*state = write_stream(&(struct flaws){ 0 });
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
	/* header; CONFIG, RAM, ROUND, 2 vCPUs, 5 VM sections, UART, NIC, VERIFY, END; summary */
	assert_int_equal(count_lines(out), 16);
	snprintf(hdr, sizeof(hdr), "type=header major=1 minor=%u page_size=4096 arch=x86_64\n",
		 STREAM_VERSION_MINOR);
	assert_non_null(strstr(out, hdr));
	assert_non_null(strstr(out, "offset=32 record=0 type=CONFIG len="));
	assert_non_null(strstr(out, "nr_vcpus=2"));
	assert_non_null(strstr(out, "regions=[{gpa=0x0 size=0x4000000}]"));
	assert_non_null(strstr(out, "cmdline=\"console=ttyS0 \\x22quoted\\x22\""));
	assert_non_null(strstr(out, "mac=52:54:00:ab:cd:ef"));
	assert_non_null(strstr(out, "record=1 type=RAM"));
	assert_non_null(strstr(out, "nr_runs=12 runs=[{gpa=0x0 npages=1 kind=data},{gpa=0x1000"));
	assert_non_null(strstr(out, ",...] data_pages=1 zero_pages=11\n"));
	assert_non_null(strstr(out, "type=ROUND len=40 round=3"));
	assert_non_null(strstr(out, "type=STATE"));
	assert_non_null(strstr(out, "id=vcpu instance=1 version=1 fields=[{tag=1 len="));
	assert_non_null(strstr(out, "id=serial instance=0"));
	assert_non_null(strstr(out, "digests=[0xabcdef,0x0,"));
	assert_non_null(strstr(out, "record=13 type=END len=16 records=13 checksum=0x"));
	assert_non_null(strstr(out, "type=summary records=14 skipped=0 bytes="));
	assert_non_null(strstr(out, "status=ok\n"));
	free(out);
}

static void test_json(void **state)
{
	struct fixture *f = *state;
	const char *types[] = {"header", "CONFIG", "RAM", "ROUND", "STATE", "STATE",
			       "STATE",	 "STATE",  "STATE", "STATE", "STATE", "STATE",
			       "STATE",	 "VERIFY", "END",   "summary"};
	char *out, *line, *save = NULL;
	int rc, i = 0;

	out = run(&rc, "--json", f->path);
	assert_int_equal(rc, 0);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), i++) {
		json_error_t jerr;
		json_t *o = json_loads(line, 0, &jerr);

		assert_non_null(o);
		assert_true(i < 16);
		assert_string_equal(json_string_value(json_object_get(o, "type")), types[i]);
		if (i == 2) {
			assert_int_equal(json_array_size(json_object_get(o, "runs")), 12);
			assert_int_equal(json_integer_value(json_object_get(o, "data_pages")), 1);
		}
		if (i == 1)
			assert_int_equal(json_integer_value(json_object_get(o, "nr_vcpus")), 2);
		json_decref(o);
	}
	assert_int_equal(i, 16);
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

/* Streams every destination refuses: dump-stream refuses them too, for the same reason. */
static void test_refused_like_a_destination(void **state)
{
	static const struct {
		struct flaws fl;
		const char *why;
	} cases[] = {
		{ { .ram_size = 2048ULL * GiB }, "outside what godwit runs" },
		{ { .nr_vcpus = 33 }, "33 vCPUs" },
		{ { .machine_version = 2 }, "machine version 2" },
		{ { .no_cpuid = true }, "which CPU features" },
		{ { .unknown_device = true }, "does not know: virtio-gpu" },
		{ { .drop_vcpu1 = true }, "without the state of vCPU 1" },
		{ { .no_msrs = true }, "without MSRs" },
		{ { .trailing = true }, "bytes after END" },
	};
	struct fixture *f;
	char *out, *err;
	size_t i;
	int rc;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		f = write_stream(&cases[i].fl);
		out = run(&rc, f->path, NULL);
		err = strstr(out, "type=error message=");
		if (rc != 1 || !err || !strstr(err, cases[i].why))
			fail_msg("case %zu (%s): rc %d, output:\n%s", i, cases[i].why, rc, out);
		assert_null(strstr(out, "status=ok"));
		free(out);
		teardown((void **)&f);
	}
}

static void test_usage(void **state)
{
	char *out;
	int rc;

	(void)state;
	out = run(&rc, "--help", NULL);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "usage: godwit dump-stream [--json] [--encrypt-key KEYFILE] FILE"));
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
	    cmocka_unit_test(test_refused_like_a_destination),
	    cmocka_unit_test(test_usage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
