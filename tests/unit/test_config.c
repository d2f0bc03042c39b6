// SPDX-License-Identifier: GPL-2.0
/* `godwit run` argument parsing and the size parser behind --memory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "godwit/vm.h"

/* getopt wants char **; it does not write the strings ("+" stops permutation too). */
static int parse(struct vm_config *cfg, int argc, const char *const *args)
{
	char *argv[32];
	int i;

	argv[0] = (char *)"run";
	for (i = 0; i < argc && i < 30; i++)
		argv[i + 1] = (char *)args[i];
	argv[i + 1] = NULL;
	return config__parse_run(i + 1, argv, cfg);
}

#define PARSE(cfg, ...)                                                                        \
	parse(cfg, (int)(sizeof((const char *[]){ __VA_ARGS__ }) / sizeof(char *)),             \
	      (const char *[]){ __VA_ARGS__ })

static void test_sizes(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(util__parse_size("512M", &v), 0);
	assert_int_equal(v, 512 * MiB);
	assert_int_equal(util__parse_size("1g", &v), 0);
	assert_int_equal(v, GiB);
	assert_int_equal(util__parse_size("16GiB", &v), 0);
	assert_int_equal(v, 16 * GiB);
	assert_int_equal(util__parse_size("4k", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(util__parse_size("65536", &v), 0);
	assert_int_equal(v, 65536);
	assert_int_equal(util__parse_size("", &v), -EINVAL);
	assert_int_equal(util__parse_size("M", &v), -EINVAL);
	assert_int_equal(util__parse_size("-1G", &v), -EINVAL);
	assert_int_equal(util__parse_size("1.5G", &v), -EINVAL);
	assert_int_equal(util__parse_size("1X", &v), -EINVAL);
	assert_int_equal(util__parse_size("1Mi", &v), -EINVAL);
	assert_int_equal(util__parse_size("99999999999T", &v), -ERANGE);
	assert_int_equal(util__parse_size("99999999999999999999999", &v), -ERANGE);
}

static void test_defaults_and_full(void **state)
{
	struct vm_config cfg;

	(void)state;
	assert_int_equal(PARSE(&cfg, "--kernel", "k.elf"), 0);
	assert_string_equal(cfg.kernel, "k.elf");
	assert_int_equal(cfg.mem_size, 512 * MiB);
	assert_int_equal(cfg.nr_cpus, 1);
	assert_int_equal(cfg.console, CONSOLE_STDIO);
	assert_string_equal(cfg.cmdline, "");
	config__free(&cfg);

	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--memory", "1G", "--cpus", "32", "--cmdline",
			       "heartbeat 10 ; memtouch 256M", "--api", "vm.sock", "--console",
			       "file:vm.log", "--initrd", "i.gz"),
			 0);
	assert_int_equal(cfg.mem_size, GiB);
	assert_int_equal(cfg.nr_cpus, 32);
	assert_string_equal(cfg.cmdline, "heartbeat 10 ; memtouch 256M");
	assert_string_equal(cfg.api_path, "vm.sock");
	assert_int_equal(cfg.console, CONSOLE_FILE);
	assert_string_equal(cfg.console_path, "vm.log");
	assert_string_equal(cfg.initrd, "i.gz");
	config__free(&cfg);
}

static void test_guest_args_after_dashdash(void **state)
{
	struct vm_config cfg;

	(void)state;
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--cmdline", "console=ttyS0", "--", "sh",
			       "-c", "grep -c ^processor /proc/cpuinfo"),
			 0);
	assert_string_equal(cfg.cmdline,
			    "console=ttyS0 -- sh -c \"grep -c ^processor /proc/cpuinfo\"");
	config__free(&cfg);
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--", "true"), 0);
	assert_string_equal(cfg.cmdline, "-- true");
	config__free(&cfg);
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--", "echo", "a\"b"), -EINVAL);
}

static void test_disks_and_nets(void **state)
{
	struct vm_config cfg;

	(void)state;
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--disk", "/s/a.img", "--disk",
			       "/s/b.img,readonly=on", "--net", "tap=tap0,mac=52:54:00:12:34:56",
			       "--net", "tap=tap1"),
			 0);
	assert_int_equal(cfg.nr_disks, 2);
	assert_string_equal(cfg.disks[0].path, "/s/a.img");
	assert_false(cfg.disks[0].readonly);
	assert_string_equal(cfg.disks[1].path, "/s/b.img");
	assert_true(cfg.disks[1].readonly);
	assert_int_equal(cfg.nr_nets, 2);
	assert_string_equal(cfg.nets[0].tap, "tap0");
	assert_true(cfg.nets[0].have_mac);
	assert_int_equal(cfg.nets[0].mac[5], 0x56);
	assert_string_equal(cfg.nets[1].tap, "tap1");
	assert_false(cfg.nets[1].have_mac);
	config__free(&cfg);

	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--disk", ""), -EINVAL);
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--disk", "a.img,readonly=maybe"), -EINVAL);
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--disk", "a.img,cache=none"), -EINVAL);
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--net", "mac=52:54:00:12:34:56"), -EINVAL);
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--net", "tap=t,mac=01:00:00:00:00:01"),
			 -EINVAL);
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--net", "tap=t,vhost=on"), -EINVAL);
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--net", "tap="), -EINVAL);
}

static void test_rejects_bad_input(void **state)
{
	struct vm_config cfg;
	char big[5000];

	(void)state;
	assert_int_equal(PARSE(&cfg, "--memory", "1G"), -EINVAL); /* no kernel */
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--memory", "lots"), -EINVAL);
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--memory", "32M"), -EINVAL);
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--memory", "2T"), -EINVAL);
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--memory", "65M"), -EINVAL);
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--cpus", "0"), -EINVAL);
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--cpus", "33"), -EINVAL);
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--cpus", "two"), -EINVAL);
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--console", "tcp:1"), -EINVAL);
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--console", "file:"), -EINVAL);
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--bogus"), -EINVAL);
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "stray"), -EINVAL);
	assert_int_equal(PARSE(&cfg, "--kernel"), -EINVAL);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(PARSE(&cfg, "--kernel", "k", "--cmdline", big), -EINVAL);
	assert_int_equal(PARSE(&cfg, "--help"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_defaults_and_full),
		cmocka_unit_test(test_guest_args_after_dashdash),
		cmocka_unit_test(test_disks_and_nets),
		cmocka_unit_test(test_rejects_bad_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
