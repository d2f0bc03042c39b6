// SPDX-License-Identifier: GPL-2.0
/* godwit: the command line. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "godwit/cluster/cluster.h"
#include "godwit/dump.h"
#include "godwit/log.h"
#include "godwit/migrate.h"
#include "godwit/vm.h"
#include "godwit/vm_api.h"

#define GODWIT_VERSION "0.1.0"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: godwit COMMAND [options]\n"
		"\n"
		"A virtual machine monitor on Linux KVM built for live migration.\n"
		"\n"
		"commands:\n"
		"  run           boot a VM (godwit run --help)\n"
		"  migrate       move a running VM to another host, or save it (godwit migrate --help)\n"
		"  receive       accept a migrating VM, or resume a snapshot (godwit receive --help)\n"
		"  disk-move     move a running VM's disk to a new image file (godwit disk-move --help)\n"
		"  dump-stream   decode a migration stream or snapshot file (godwit dump-stream --help)\n"
		"  cluster       certificates; hosts, VMs, moves of a cluster (godwit cluster --help)\n"
		"  agent         run a host's part of a cluster (godwit agent --help)\n"
		"  manager       run a cluster's manager (godwit manager --help)\n"
		"  help          this text\n"
		"  version       print the version\n");
}

/*
 * Signals: the main thread takes SIGINT/SIGTERM through a signalfd, vCPU threads
 * take SIGUSR1 as a kick; every thread starts with all three blocked.
 */
static void block_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static int cmd_run(int argc, char **argv)
{
	struct vm_config cfg;
	struct vm *vm;
	int ret;

	ret = config__parse_run(argc, argv, &cfg);
	if (ret == 1) {
		config__usage_run(stdout);
		return 0;
	}
	if (ret)
		return 2;
	block_signals();
	vm = calloc(1, sizeof(*vm));
	if (!vm) {
		config__free(&cfg);
		return 1;
	}
	ret = vm__create(vm, &cfg, &vm_api__control);
	if (ret) {
		free(vm);
		config__free(&cfg);
		return ret == -EINVAL || ret == -ENOEXEC || ret == -E2BIG ? 2 : 1;
	}
	if (vm__start(vm) == 0)
		pr_debug("VM started with %u vCPUs", vm->nr_vcpus);
	ret = vm__wait(vm);
	pr_info("%s (exit status %d)", vm->exit.reason, ret);
	vm__destroy(vm);
	free(vm);
	config__free(&cfg);
	return ret;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "migrate"))
		return migrate_cli__migrate(argc - 1, argv + 1);
	if (!strcmp(argv[1], "receive")) {
		block_signals();
		return migrate_cli__receive(argc - 1, argv + 1, &vm_api__control);
	}
	if (!strcmp(argv[1], "disk-move"))
		return disk_cli__move(argc - 1, argv + 1);
	if (!strcmp(argv[1], "cluster"))
		return cluster_cli__main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "agent"))
		return agent__main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "manager"))
		return manager__main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "dump-stream"))
		return dump__main(argc - 1, argv + 1, stdout);
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("godwit %s\n", GODWIT_VERSION);
		return 0;
	}
	pr_err("unknown command '%s' (see godwit help)", argv[1]);
	return 2;
}
