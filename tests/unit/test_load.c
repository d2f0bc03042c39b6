// SPDX-License-Identifier: GPL-2.0
/* The agent's load: /proc parsers, counters' rates and the smoothing (src/cluster/load.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "godwit/cluster/load.h"

static void test_schedstat(void **state)
{
	uint64_t run, wait;

	(void)state;
	assert_int_equal(load__parse_schedstat("1842864 3780412 19\n", &run, &wait), 0);
	assert_int_equal(run, 1842864);
	assert_int_equal(wait, 3780412);
	assert_int_not_equal(load__parse_schedstat("", &run, &wait), 0);
	assert_int_not_equal(load__parse_schedstat("12\n", &run, &wait), 0);
	assert_int_not_equal(load__parse_schedstat("-1 2 3\n", &run, &wait), 0);
	assert_int_not_equal(load__parse_schedstat("99999999999999999999999 1 1", &run, &wait), 0);
}

static void test_task_stat_takes_utime_and_stime_after_any_name(void **state)
{
	uint64_t ticks;

	(void)state;
	assert_int_equal(
	    load__parse_task_stat("123 (vcpu-0) R 1 2 3 4 -1 4194560 5 6 7 8 42 17 0 0 "
				  "20 0 1 0 100 0 0\n",
				  &ticks),
	    0);
	assert_int_equal(ticks, 59);
	/* A name with spaces and a ')' of its own: the last ')' ends it. */
	assert_int_equal(
	    load__parse_task_stat("123 (a) b ) c) S 1 2 3 4 -1 0 5 6 7 8 100 1 0 0\n", &ticks), 0);
	assert_int_equal(ticks, 101);
	assert_int_not_equal(load__parse_task_stat("123 (x) S 1 2 3", &ticks), 0);
	assert_int_not_equal(load__parse_task_stat("no parenthesis 1 2", &ticks), 0);
	assert_int_not_equal(load__parse_task_stat("1 (x)", &ticks), 0);
}

static void test_proc_stat_leaves_idle_and_iowait_out(void **state)
{
	uint64_t busy, total;

	(void)state;
	assert_int_equal(
	    load__parse_proc_stat("cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 1 2 3 4\n", &busy, &total),
	    0);
	assert_int_equal(total, 1180);
	assert_int_equal(busy, 160);
	/* Old kernels have only four fields. */
	assert_int_equal(load__parse_proc_stat("cpu  1 2 3 4\n", &busy, &total), 0);
	assert_int_equal(busy, 6);
	assert_int_not_equal(load__parse_proc_stat("cpu0 1 2 3 4\n", &busy, &total), 0);
	assert_int_not_equal(load__parse_proc_stat("cpu  1 2 3\n", &busy, &total), 0);
}

static void test_meminfo(void **state)
{
	uint64_t total, avail;

	(void)state;
	assert_int_equal(load__parse_meminfo("MemTotal:       24000000 kB\nMemFree:  1 kB\n"
					     "MemAvailable:   12000000 kB\n",
					     &total, &avail),
			 0);
	assert_int_equal(total, 24000000ULL * 1024);
	assert_int_equal(avail, 12000000ULL * 1024);
	assert_int_not_equal(load__parse_meminfo("MemTotal: 10 kB\n", &total, &avail), 0);
	/* MemTotalX is not MemTotal; more available than there is is refused. */
	assert_int_not_equal(
	    load__parse_meminfo("MemTotalX: 10 kB\nMemAvailable: 5 kB\n", &total, &avail), 0);
	assert_int_not_equal(
	    load__parse_meminfo("MemTotal: 10 kB\nMemAvailable: 50 kB\n", &total, &avail), 0);
}

static void test_fdinfo_names_a_safe_interface(void **state)
{
	char ifname[16];

	(void)state;
	assert_int_equal(
	    load__parse_fdinfo_iff("pos:\t0\nflags:\t02\niff:\ttap0\n", ifname, sizeof(ifname)), 0);
	assert_string_equal(ifname, "tap0");
	assert_int_equal(load__parse_fdinfo_iff("pos:\t0\nflags:\t02\n", ifname, sizeof(ifname)),
			 -ENOENT);
	assert_int_not_equal(load__parse_fdinfo_iff("iff:\t../../x\n", ifname, sizeof(ifname)), 0);
	assert_int_not_equal(load__parse_fdinfo_iff("iff:\t..\n", ifname, sizeof(ifname)), 0);
	assert_int_not_equal(
	    load__parse_fdinfo_iff("iff:\t0123456789abcdef\n", ifname, sizeof(ifname)), 0);
}

static void test_counter_rate(void **state)
{
	struct load_counter c = {0};
	double r = -1;

	(void)state;
	assert_false(load_counter__rate(&c, 1000, 10000, &r)); /* the first sample */
	assert_true(load_counter__rate(&c, 3000, 12000, &r));
	assert_true(r > 999.9 && r < 1000.1);
	/* A counter that went back (a new process) gives no rate, then counts from there. */
	assert_false(load_counter__rate(&c, 10, 14000, &r));
	assert_true(load_counter__rate(&c, 410, 16000, &r));
	assert_true(r > 199.9 && r < 200.1);
}

static void test_smoothing_follows_minutes_not_seconds(void **state)
{
	struct load_ewma e = {0};
	int64_t t = 0;
	int i;

	(void)state;
	load_ewma__add(&e, 0.0, t, 300000);
	/* A 10 s spike of one CPU moves a 5-minute average by a few percent only. */
	for (i = 0; i < 5; i++)
		load_ewma__add(&e, 1.0, t += 2000, 300000);
	assert_true(e.value > 0.02 && e.value < 0.05);
	/* Fifteen minutes of it (three windows): most of the way there. */
	for (i = 0; i < 450; i++)
		load_ewma__add(&e, 1.0, t += 2000, 300000);
	assert_true(e.value > 0.9 && e.value <= 1.0);
	/* A short window follows at once. */
	load_ewma__add(&e, 0.0, t += 2000, 1);
	assert_true(e.value < 0.001);
}

static void test_tracker_smooths_each_vm_and_forgets_the_gone(void **state)
{
	struct load_vm_sample s = {.cpu_ns = 0, .wait_ns = 0, .rss = 100 << 20};
	struct load_host_sample h = {
	    .busy_ns = 0, .total_ns = 0, .mem_total = 8ULL << 30, .mem_available = 6ULL << 30};
	struct load_vm_figures f;
	struct load_tracker t;
	uint64_t mem;
	double cpu;

	(void)state;
	load_tracker__init(&t, 1); /* no smoothing: the figures are the last rates */
	load_tracker__begin(&t);
	assert_int_equal(load_tracker__vm(&t, "web1", 100, &s, 1ULL << 30, 0, 1000, &f), 0);
	assert_false(f.rated); /* one sample: no rate yet */
	load_tracker__end(&t);
	load_tracker__host(&t, &h, 1000, &cpu, &mem);
	/* Two seconds: 3 s of vCPU time ran, 1 s was wanted and waited for. */
	s.cpu_ns = 3000000000ULL;
	s.wait_ns = 1000000000ULL;
	s.net_tx = 2000000;
	h.busy_ns = 4000000000ULL;
	h.total_ns = 8000000000ULL;
	load_tracker__begin(&t);
	assert_int_equal(load_tracker__vm(&t, "web1", 100, &s, 1ULL << 30, 0, 3000, &f), 0);
	load_tracker__end(&t);
	assert_true(f.rated);
	assert_true(f.cpu > 1.49 && f.cpu < 1.51);
	assert_true(f.cpu_wait > 0.49 && f.cpu_wait < 0.51);
	assert_true(f.net_tx > 999999 && f.net_tx < 1000001);
	assert_int_equal(f.active, 100 << 20); /* no move: the resident memory */
	load_tracker__host(&t, &h, 3000, &cpu, &mem);
	assert_true(cpu > 0.49 && cpu < 0.51); /* 2 CPUs busy, 1.5 of them the VM's */
	assert_int_equal(mem, (2ULL << 30) - (100 << 20));
	/* While a move measures 1 MB/s of writes: a minute of them. */
	load_tracker__begin(&t);
	assert_int_equal(load_tracker__vm(&t, "web1", 100, &s, 1ULL << 30, 1000000, 5000, &f), 0);
	assert_true(f.active > 59900000 && f.active < 60100000);
	/* The same name, another process: its counters start again. */
	assert_int_equal(load_tracker__vm(&t, "web1", 200, &s, 1ULL << 30, 0, 7000, &f), 0);
	load_tracker__end(&t);
	assert_int_equal(t.nr, 1);
	assert_int_equal(t.vms[0].pid, 200);
	load_tracker__begin(&t);
	load_tracker__end(&t);
	assert_int_equal(t.nr, 0);
	load_tracker__exit(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_schedstat),
	    cmocka_unit_test(test_task_stat_takes_utime_and_stime_after_any_name),
	    cmocka_unit_test(test_proc_stat_leaves_idle_and_iowait_out),
	    cmocka_unit_test(test_meminfo),
	    cmocka_unit_test(test_fdinfo_names_a_safe_interface),
	    cmocka_unit_test(test_counter_rate),
	    cmocka_unit_test(test_smoothing_follows_minutes_not_seconds),
	    cmocka_unit_test(test_tracker_smooths_each_vm_and_forgets_the_gone),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
