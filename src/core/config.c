// SPDX-License-Identifier: GPL-2.0
/* `godwit run` command line: parsed and validated before anything is created. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/log.h"
#include "godwit/virtio_net.h"
#include "godwit/vm.h"

#define CMDLINE_MAX 4096

void config__usage_run(FILE *out)
{
	fprintf(out,
		"usage: godwit run --kernel PATH [options] [-- CMD ARGS...]\n"
		"\n"
		"Boots a VM and runs it until the guest powers off or exits.\n"
		"\n"
		"  --kernel PATH       ELF with a PVH note, Linux bzImage or vmlinux (detected)\n"
		"  --initrd PATH       initial ramdisk (Linux)\n"
		"  --cmdline TEXT      kernel / test guest command line\n"
		"  --memory SIZE       guest RAM, 64M..1T in multiples of 2M (default 512M)\n"
		"  --cpus N            vCPUs, 1..%d (default 1)\n"
		"  --api PATH          serve the HTTP+JSON API on this unix socket\n"
		"  --console KIND      stdio (default: output to stdout, input from stdin)\n"
		"                      or file:PATH (output appended to PATH)\n"
		"  --disk PATH[,readonly=on]\n"
		"                      a virtio-blk disk on a raw image (locked while in use);\n"
		"                      repeat for more (up to %d)\n"
		"  --net tap=NAME[,mac=MAC]\n"
		"                      a virtio-net card on an existing tap; MAC default random\n"
		"                      52:54:00:xx:xx:xx, kept across migration (up to %d)\n"
		"  -v, --verbose       debug messages on stderr, stamped with CLOCK_MONOTONIC seconds\n"
		"  -h, --help          this text\n"
		"\n"
		"Anything after -- is appended to the kernel command line after \" -- \"\n"
		"(Linux passes it to init).\n"
		"\n"
		"Exit status: the guest's (test guest `exit CODE`: a 32-bit write to port 0xf4;\n"
		"power-off: 0); 2 for bad options; 1 if the VMM fails; 128+N on signal N.\n",
		VM_MAX_VCPUS, VM_MAX_DISKS, VM_MAX_NETS);
}

static int set_memory(struct vm_config *cfg, const char *arg)
{
	uint64_t v;
	int ret = util__parse_size(arg, &v);

	if (ret) {
		pr_err("--memory '%s': not a size (examples: 512M, 1G, 16G)", arg);
		return -EINVAL;
	}
	if (v < VM_MIN_MEMORY || v > VM_MAX_MEMORY || v % (2 * MiB)) {
		pr_err("--memory '%s': must be between 64M and 1T, in multiples of 2M", arg);
		return -EINVAL;
	}
	cfg->mem_size = v;
	return 0;
}

static int set_cpus(struct vm_config *cfg, const char *arg)
{
	uint64_t v;

	if (util__parse_u64(arg, 1, VM_MAX_VCPUS, &v)) {
		pr_err("--cpus '%s': must be a number from 1 to %d", arg, VM_MAX_VCPUS);
		return -EINVAL;
	}
	cfg->nr_cpus = (unsigned int)v;
	return 0;
}

/* Splits "key=value,key=value" in place; returns the value of key or NULL. */
static char *next_kv(char **rest, char **key)
{
	char *item = strsep(rest, ","), *eq;

	if (!item)
		return NULL;
	eq = strchr(item, '=');
	*key = item;
	if (!eq)
		return item + strlen(item); /* a key with no value: "" */
	*eq = '\0';
	return eq + 1;
}

int config__add_disk(struct vm_config *cfg, const char *arg)
{
	char *spec = strdup(arg), *rest = spec, *key, *val, *path;
	struct vm_disk_cfg *d;

	if (!spec)
		return -ENOMEM;
	path = strsep(&rest, ",");
	if (!path || !*path || cfg->nr_disks == VM_MAX_DISKS) {
		free(spec);
		pr_err("--disk %s: expected PATH[,readonly=on], at most %d disks", arg, VM_MAX_DISKS);
		return -EINVAL;
	}
	d = &cfg->disks[cfg->nr_disks++];
	*d = (struct vm_disk_cfg){ .spec = spec, .path = path };
	while ((val = next_kv(&rest, &key))) {
		if (!strcmp(key, "readonly") && (!strcmp(val, "on") || !strcmp(val, "off"))) {
			d->readonly = !strcmp(val, "on");
		} else {
			pr_err("--disk %s: unknown option '%s' (expected readonly=on|off)", path, key);
			return -EINVAL;
		}
	}
	return 0;
}

int config__add_net(struct vm_config *cfg, const char *arg)
{
	char *spec, *rest, *key, *val;
	struct vm_net_cfg *n;

	if (cfg->nr_nets == VM_MAX_NETS) {
		pr_err("--net: at most %d network cards", VM_MAX_NETS);
		return -EINVAL;
	}
	spec = rest = strdup(arg);
	if (!spec)
		return -ENOMEM;
	n = &cfg->nets[cfg->nr_nets++];
	*n = (struct vm_net_cfg){ .spec = spec };
	while ((val = next_kv(&rest, &key))) {
		if (!strcmp(key, "tap") && *val) {
			n->tap = val;
		} else if (!strcmp(key, "mac")) {
			if (virtio_net__parse_mac(val, n->mac)) {
				pr_err("--net mac=%s: expected a unicast MAC like 52:54:00:12:34:56", val);
				return -EINVAL;
			}
			n->have_mac = true;
		} else {
			pr_err("--net: unknown option '%s' (expected tap=NAME[,mac=MAC])", key);
			return -EINVAL;
		}
	}
	if (!n->tap) {
		pr_err("--net: tap=NAME is required");
		return -EINVAL;
	}
	return 0;
}

int config__parse_console(const char *arg, enum console_kind *kind, const char **path)
{
	if (!strcmp(arg, "stdio")) {
		*kind = CONSOLE_STDIO;
		return 0;
	}
	if (!strncmp(arg, "file:", 5) && arg[5]) {
		*kind = CONSOLE_FILE;
		*path = arg + 5;
		return 0;
	}
	pr_err("--console '%s': expected stdio or file:PATH", arg);
	return -EINVAL;
}

static int append(char *buf, size_t *len, const char *s)
{
	size_t n = strlen(s);

	if (*len + n >= CMDLINE_MAX)
		return -E2BIG;
	memcpy(buf + *len, s, n + 1);
	*len += n;
	return 0;
}

/* Joins --cmdline and the words after "--"; words with blanks are double-quoted. */
static int build_cmdline(struct vm_config *cfg, const char *base, int argc, char **argv)
{
	size_t len = 0;
	int i, ret = 0;

	cfg->cmdline = calloc(1, CMDLINE_MAX);
	if (!cfg->cmdline)
		return -ENOMEM;
	if (base)
		ret = append(cfg->cmdline, &len, base);
	if (!ret && argc > 0)
		ret = append(cfg->cmdline, &len, len ? " --" : "--");
	for (i = 0; !ret && i < argc; i++) {
		bool quote = strpbrk(argv[i], " \t") != NULL;

		if (strchr(argv[i], '"')) {
			pr_err("argument '%s' after --: double quotes cannot be passed to the guest",
			       argv[i]);
			return -EINVAL;
		}
		ret = append(cfg->cmdline, &len, quote ? " \"" : " ");
		if (!ret)
			ret = append(cfg->cmdline, &len, argv[i]);
		if (!ret && quote)
			ret = append(cfg->cmdline, &len, "\"");
	}
	if (ret == -E2BIG)
		pr_err("kernel command line longer than %d bytes", CMDLINE_MAX - 1);
	return ret;
}

static int parse_run(int argc, char **argv, struct vm_config *cfg)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "cmdline", required_argument, NULL, 'c' },
		{ "memory", required_argument, NULL, 'm' },
		{ "cpus", required_argument, NULL, 'n' },
		{ "api", required_argument, NULL, 'a' },
		{ "console", required_argument, NULL, 'C' },
		{ "disk", required_argument, NULL, 'D' },
		{ "net", required_argument, NULL, 'N' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *cmdline = NULL;
	int c, ret = 0;

	*cfg = (struct vm_config){ .mem_size = 512 * MiB, .nr_cpus = 1 };
	optind = 1;
	opterr = 0;
	while (!ret && (c = getopt_long(argc, argv, "+:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'k': cfg->kernel = optarg; break;
		case 'i': cfg->initrd = optarg; break;
		case 'c': cmdline = optarg; break;
		case 'm': ret = set_memory(cfg, optarg); break;
		case 'n': ret = set_cpus(cfg, optarg); break;
		case 'a': cfg->api_path = optarg; break;
		case 'C': ret = config__parse_console(optarg, &cfg->console, &cfg->console_path); break;
		case 'D': ret = config__add_disk(cfg, optarg); break;
		case 'N': ret = config__add_net(cfg, optarg); break;
		case 'v': log__set_level(LOG_DEBUG); break;
		case 'h': return 1;
		case ':':
			pr_err("option %s needs a value", argv[optind - 1]);
			return -EINVAL;
		default:
			pr_err("unknown option '%s' (see godwit run --help)", argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (ret)
		return ret;
	if (optind < argc && strcmp(argv[optind - 1], "--")) {
		pr_err("unexpected argument '%s' (guest arguments go after --)", argv[optind]);
		return -EINVAL;
	}
	if (!cfg->kernel) {
		pr_err("--kernel is required (see godwit run --help)");
		return -EINVAL;
	}
	ret = build_cmdline(cfg, cmdline, argc - optind, argv + optind);
	return ret == -ENOMEM || !ret ? ret : -EINVAL;
}

/* 0: run; 1: --help was printed; -EINVAL: bad options (one line on stderr already). */
int config__parse_run(int argc, char **argv, struct vm_config *cfg)
{
	int ret = parse_run(argc, argv, cfg);

	if (ret)
		config__free(cfg);
	return ret;
}

void config__free(struct vm_config *cfg)
{
	unsigned int i;

	for (i = 0; i < cfg->nr_disks; i++)
		free(cfg->disks[i].spec);
	for (i = 0; i < cfg->nr_nets; i++)
		free(cfg->nets[i].spec);
	cfg->nr_disks = cfg->nr_nets = 0;
	free(cfg->cmdline);
	cfg->cmdline = NULL;
}
