// SPDX-License-Identifier: GPL-2.0
/* `godwit cluster ...`: the certificates, and a client of the managers' API. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/cluster/cluster.h"
#include "godwit/cluster/tls.h"
#include "godwit/log.h"

#define DEFAULT_DAYS 3650

static void usage(FILE *out)
{
	fprintf(out,
		"usage: godwit cluster COMMAND [options]\n"
		"\n"
		"  init --dir D [--ip A]... [--dns N]...   make the cluster's CA and certificates\n"
		"  cert --dir D --name N [--ip A]... [--dns N]...   one more node certificate\n"
		"\n"
		"godwit cluster COMMAND --help says more; docs/cluster.md has the recipe.\n");
}

static int parse_names(int argc, char **argv, const char *cmd, const char **dir, const char **name,
		       struct pki_names *names, int *days)
{
	static const struct option opts[] = {
	    {"dir", required_argument, NULL, 'd'},
	    {"name", required_argument, NULL, 'n'},
	    {"ip", required_argument, NULL, 'i'},
	    {"dns", required_argument, NULL, 's'},
	    {"days", required_argument, NULL, 'y'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	memset(names, 0, sizeof(*names));
	*dir = NULL;
	*days = DEFAULT_DAYS;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			*dir = optarg;
			break;
		case 'n':
			if (!name)
				goto bad;
			*name = optarg;
			break;
		case 'i':
			if (names->nr_ips == 16) {
				pr_err("at most 16 --ip");
				return 2;
			}
			names->ips[names->nr_ips++] = optarg;
			break;
		case 's':
			if (names->nr_dns == 16) {
				pr_err("at most 16 --dns");
				return 2;
			}
			names->dns[names->nr_dns++] = optarg;
			break;
		case 'y':
			*days = atoi(optarg);
			if (*days < 1 || *days > 36500) {
				pr_err("--days: 1..36500");
				return 2;
			}
			break;
		case 'h':
			printf(
			    "usage: godwit cluster %s --dir D%s [--ip A]... [--dns N]... [--days "
			    "N]\n"
			    "\n"
			    "%s\n"
			    "Every node certificate names 127.0.0.1 and localhost, and the\n"
			    "addresses (--ip) and host names (--dns) given, which are what\n"
			    "clients may reach its agent or manager as. Keys are EC P-256,\n"
			    "mode 0600; certificates last --days (default %d).\n",
			    cmd, name ? " --name N" : "",
			    name
				? "Issues D/N.crt and D/N.key from the CA in D, for an agent or a\n"
				  "manager (server and client)."
				: "Makes D/ca.{crt,key} (the cluster's CA), D/node.{crt,key} for\n"
				  "agents and managers (server and client) and D/client.{crt,key}\n"
				  "for godwit cluster. Copy ca.crt and the node files to every\n"
				  "host; keep ca.key where certificates are made.",
			    DEFAULT_DAYS);
			return 1;
		default:
			goto bad;
		}
	}
	if (optind < argc || !*dir || (name && !*name)) {
		pr_err("cluster %s needs --dir D%s (see --help)", cmd, name ? " and --name N" : "");
		return 2;
	}
	return 0;
bad:
	pr_err("cluster %s: unknown option (see --help)", cmd);
	return 2;
}

static int cmd_init(int argc, char **argv)
{
	struct pki_names names;
	const char *dir;
	char err[512] = "";
	int days, ret;

	ret = parse_names(argc, argv, "init", &dir, NULL, &names, &days);
	if (ret)
		return ret == 1 ? 0 : ret;
	ret = pki__init(dir, &names, days, err, sizeof(err));
	if (ret) {
		pr_err("%s", err);
		return 1;
	}
	printf("cluster CA and certificates in %s: ca.crt, node.crt/.key (agents, managers), "
	       "client.crt/.key (godwit cluster)\n",
	       dir);
	return 0;
}

static int cmd_cert(int argc, char **argv)
{
	const char *dir, *name = NULL;
	struct pki_names names;
	char err[512] = "";
	int days, ret;

	ret = parse_names(argc, argv, "cert", &dir, &name, &names, &days);
	if (ret)
		return ret == 1 ? 0 : ret;
	ret = pki__issue(dir, name, &names, days, err, sizeof(err));
	if (ret) {
		pr_err("%s", err);
		return 1;
	}
	printf("%s/%s.crt and %s/%s.key\n", dir, name, dir, name);
	return 0;
}

int cluster_cli__main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "init"))
		return cmd_init(argc - 1, argv + 1);
	if (!strcmp(argv[1], "cert"))
		return cmd_cert(argc - 1, argv + 1);
	pr_err("unknown cluster command '%s' (see godwit cluster --help)", argv[1]);
	return 2;
}
