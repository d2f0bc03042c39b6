// SPDX-License-Identifier: GPL-2.0
/* `godwit cluster ...`: the certificates, and a client of the managers' API. */
#include <errno.h>
#include <inttypes.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "godwit/api_client.h"
#include "godwit/cluster/cluster.h"
#include "godwit/cluster/keys.h"
#include "godwit/cluster/tls.h"
#include "godwit/log.h"
#include "godwit/util.h"
#include "cli.h"

#define DEFAULT_DAYS 3650
/* A --wait's patience with a silent manager or etcd, and its bound on one poll. */
#define WAIT_GRACE_S 60
#define WAIT_POLL_S  10

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: godwit cluster [--manager URL[,URL...]] [--pki D] COMMAND [options]\n"
	    "\n"
	    "  init --dir D [--ip A]... [--dns N]...   make the cluster's CA and certificates\n"
	    "  cert --dir D --name N [--ip A]...       one more node certificate from the CA\n"
	    "  hosts                                   name, state, CPUs, memory, VMs, moves\n"
	    "  vms                                     name, host, state, memory, uptime\n"
	    "  create NAME --kernel K --memory M [--cpus N] [--cmdline C] [--disk PATH]...\n"
	    "         [--net tap=T]... [--restart always|never]   place and start a VM\n"
	    "  delete NAME                             stop a VM and forget it\n"
	    "  migrate NAME [--to HOST] [--wait]       move a VM (a task; --wait: progress)\n"
	    "  cancel TASK                             cancel a queued or running task\n"
	    "  tasks [--all]                           queued and running tasks (--all: ended)\n"
	    "  events                                  what happened, newest last\n"
	    "  maintenance enter|exit HOST [--wait]    empty a host / make it usable again\n"
	    "  limits [--per-host N] [--cluster N] [--max-bandwidth B]\n"
	    "                                          moves in flight at most, their cap\n"
	    "  simulate [options]                      balancing and power on a synthetic\n"
	    "                                          cluster (no VM, no manager; --help)\n"
	    "  console-token [--days N] [--revoke-all] a login for the web console\n"
	    "  group add|rm|list [NAME [HOST...]]      host groups (for rules)\n"
	    "  rule add NAME --together|--apart VM...  VMs on one host / on different hosts\n"
	    "  rule add NAME --vm VM... --must|--should [--not] --run-on GROUP\n"
	    "  rule list|rm [NAME]                     the placement rules\n"
	    "  drs config [--automation manual|automatic|off] [--threshold 1..5]\n"
	    "         [--interval S] [--vm VM --automation LEVEL|default]   balancing\n"
	    "  drs recommendations                     the last pass's moves to apply\n"
	    "  drs apply ID|all                        queue them as tasks\n"
	    "  dpm config [--enable|--disable] [--target PCT] [--band PCT] [--window S]\n"
	    "         [--min-hosts N]                  power management\n"
	    "  host standby|wake HOST                  power an empty host off / on again\n"
	    "\n"
	    "Listings take --json. The manager is --manager (or $GODWIT_MANAGER), e.g.\n"
	    "https://192.0.2.1:7400; with several, the first that answers. The client\n"
	    "certificate is D/client.crt and D/client.key, D/ca.crt checks the manager's\n"
	    "(--pki or $GODWIT_PKI, default /etc/godwit/pki). docs/cluster.md has the recipe.\n");
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

/* ---- a client of the managers ---- */

/*
 * One request to the first manager that answers, each bounded by timeout_s: 0 with
 * *status; 1 with the reason printed when the client cannot ask at all; -EAGAIN with the
 * reason in err when no manager answered.
 */
static int reach(const struct client *c, const char *method, const char *path, const json_t *req,
		 long timeout_s, long *status, json_t **reply, char *err, size_t errlen)
{
	char ca[512], cert[512], key[512], url[256];
	struct api_client_tls tls = {ca, cert, key};
	const char *p, *end;

	*reply = NULL;
	if (!c->managers || !*c->managers) {
		pr_err("which manager? give --manager https://HOST:PORT (or set GODWIT_MANAGER)");
		return 1;
	}
	snprintf(ca, sizeof(ca), "%s/%s.crt", c->pki, PKI_CA);
	snprintf(cert, sizeof(cert), "%s/%s.crt", c->pki, PKI_CLIENT);
	snprintf(key, sizeof(key), "%s/%s.key", c->pki, PKI_CLIENT);
	if (access(cert, R_OK) || access(key, R_OK) || access(ca, R_OK)) {
		pr_err("cannot read the client certificate %s, its key or %s: %s (--pki D names "
		       "the directory godwit cluster init made)",
		       cert, ca, strerror(errno));
		return 1;
	}
	for (p = c->managers; *p; p = *end ? end + 1 : end) {
		end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		snprintf(url, sizeof(url), "%.*s", (int)(end - p), p);
		if (!api_client__url(url, &tls, method, path, req, timeout_s, status, reply, err,
				     errlen))
			return 0;
	}
	return -EAGAIN;
}

/* One request to the first manager that answers; 0 with *status, or 1 with the reason printed. */
static int call(const struct client *c, const char *method, const char *path, const json_t *req,
		long *status, json_t **reply)
{
	char err[600] = "";
	int ret = reach(c, method, path, req, 120, status, reply, err, sizeof(err));

	if (ret == -EAGAIN)
		pr_err("no manager answers: %s (is godwit manager running there?)", err);
	return ret ? 1 : 0;
}

/*
 * A --wait's poll: 0 with *status, or 1 with the reason printed. A manager that does not
 * answer, or answers 503 (it cannot reach etcd), is asked again each second until
 * WAIT_GRACE_S pass without an answer: a new leader takes over within its lease (5 s),
 * and an etcd on a loaded host has stalled for seconds, while the move goes on.
 */
static int poll_call(const struct client *c, const char *path, long *status, json_t **reply)
{
	uint64_t since = util__now_ns();
	char err[600] = "";
	bool told = false;
	int ret;

	for (;;) {
		ret = reach(c, "GET", path, NULL, WAIT_POLL_S, status, reply, err, sizeof(err));
		if (ret == 1)
			return 1;
		if (!ret && *status != 503) {
			if (told)
				pr_info("the manager answers again");
			return 0;
		}
		if (!ret) {
			snprintf(err, sizeof(err), "%s",
				 cluster__str(*reply, "error", "503 Service Unavailable"));
			json_decref(*reply);
			*reply = NULL;
		}
		if (util__now_ns() - since >= WAIT_GRACE_S * 1000000000ull) {
			pr_err("no manager answered for %d s: %s (the cluster goes on without "
			       "this command: godwit cluster tasks, hosts)",
			       WAIT_GRACE_S, err);
			return 1;
		}
		if (!told)
			pr_warn("no answer from the manager (%s): asking again for up to %d s", err,
				WAIT_GRACE_S);
		told = true;
		sleep(1);
	}
}

/* 0 if the answer is the expected one; else the manager's error as the command's own. */
static int expect(long status, long expected, json_t **reply)
{
	if (status == expected)
		return 0;
	pr_err("%s", cluster__str(*reply, "error", "the manager gave no reason"));
	json_decref(*reply);
	*reply = NULL;
	return 1;
}

/* The request, and the error a manager gave as the command's own; 0 if expected came. */
static int ask(const struct client *c, const char *method, const char *path, const json_t *req,
	       long expected, json_t **reply)
{
	long status;

	if (call(c, method, path, req, &status, reply))
		return 1;
	return expect(status, expected, reply);
}

static void print_json(const json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2));

	if (s)
		puts(s);
	free(s);
}

int cluster_cli__ask(const struct client *c, const char *method, const char *path,
		     const json_t *req, long expected, json_t **reply)
{
	return ask(c, method, path, req, expected, reply);
}

void cluster_cli__print_json(const json_t *j)
{
	print_json(j);
}

static bool want_json(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--json"))
			return true;
	return false;
}

static bool has_flag(int argc, char **argv, const char *flag)
{
	int i;

	for (i = 1; i < argc; i++)
		if (!strcmp(argv[i], flag))
			return true;
	return false;
}

static void duration(int64_t ms, char *out, size_t len)
{
	if (ms < 60000)
		snprintf(out, len, "%" PRId64 "s", ms / 1000);
	else if (ms < 3600000)
		snprintf(out, len, "%" PRId64 "m%02" PRId64 "s", ms / 60000, ms / 1000 % 60);
	else
		snprintf(out, len, "%" PRId64 "h%02" PRId64 "m", ms / 3600000, ms / 60000 % 60);
}

static int cmd_hosts(const struct client *c, int argc, char **argv)
{
	json_t *reply, *h;
	char mem[32], used[32];
	size_t i;

	if (ask(c, "GET", "/hosts", NULL, 200, &reply))
		return 1;
	if (want_json(argc, argv)) {
		print_json(reply);
	} else {
		printf("%-16s %-22s %5s %9s %17s %4s %5s %10s\n", "NAME", "STATE", "CPUS", "VCPUS",
		       "MEMORY USED/ALL", "VMS", "MOVES", "VCPU TIME");
		json_array_foreach(json_object_get(reply, "hosts"), i, h)
		{
			char vcpus[24], memcol[72], moves[24];

			cluster__fmt_size((uint64_t)cluster__int(h, "memory", 0), mem, sizeof(mem));
			cluster__fmt_size((uint64_t)cluster__int(h, "mem_used", 0), used,
					  sizeof(used));
			snprintf(vcpus, sizeof(vcpus), "%" PRId64, cluster__int(h, "cpus_used", 0));
			snprintf(memcol, sizeof(memcol), "%s/%s", used, mem);
			/* In flight, of the host's slots (a slow link has fewer). */
			snprintf(moves, sizeof(moves), "%" PRId64 "/%" PRId64,
				 cluster__int(h, "migrations", 0),
				 cluster__int(h, "migration_slots", 0));
			printf("%-16s %-22s %5" PRId64 " %9s %17s %4" PRId64 " %5s %9.1fs\n",
			       cluster__str(h, "name", ""), cluster__str(h, "state", ""),
			       cluster__int(h, "cpus", 0), vcpus, memcol, cluster__int(h, "vms", 0),
			       moves, (double)cluster__int(h, "vcpu_time_ns", 0) / 1e9);
			if (json_object_get(h, "stuck")) {
				const char *vm;
				json_t *why;

				json_object_foreach(json_object_get(h, "stuck"), vm, why)
				    printf("  %s cannot leave: %s\n", vm, json_string_value(why));
			}
		}
	}
	json_decref(reply);
	return 0;
}

static int cmd_vms(const struct client *c, int argc, char **argv)
{
	json_t *reply, *v;
	char mem[32], up[32];
	size_t i;

	if (ask(c, "GET", "/vms", NULL, 200, &reply))
		return 1;
	if (want_json(argc, argv)) {
		print_json(reply);
	} else {
		printf("%-20s %-16s %-12s %9s %4s %8s %s\n", "NAME", "HOST", "STATE", "MEMORY",
		       "CPUS", "UPTIME", "TASK");
		json_array_foreach(json_object_get(reply, "vms"), i, v)
		{
			cluster__fmt_size((uint64_t)cluster__int(v, "memory", 0), mem, sizeof(mem));
			duration(cluster__int(v, "uptime_ms", 0), up, sizeof(up));
			printf("%-20s %-16s %-12s %9s %4" PRId64 " %8s %s\n",
			       cluster__str(v, "name", ""), cluster__str(v, "host", ""),
			       cluster__str(v, "state", ""), mem, cluster__int(v, "cpus", 0), up,
			       cluster__str(v, "task", "-"));
		}
	}
	json_decref(reply);
	return 0;
}

static int cmd_create(const struct client *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"kernel", required_argument, NULL, 'k'},  {"memory", required_argument, NULL, 'm'},
	    {"cpus", required_argument, NULL, 'c'},    {"cmdline", required_argument, NULL, 'l'},
	    {"disk", required_argument, NULL, 'd'},    {"net", required_argument, NULL, 'n'},
	    {"restart", required_argument, NULL, 'r'}, {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},	       {NULL, 0, NULL, 0},
	};
	json_t *spec = json_object(), *disks = json_array(), *nets = json_array(), *reply;
	char err[512], abs[4096];
	uint64_t v;
	int o, ret = 2;

	json_object_set_new(spec, "cpus", json_integer(1));
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'k':
			/* Every host must find the kernel at this path. */
			json_object_set_new(spec, "kernel",
					    json_string(realpath(optarg, abs) ? abs : optarg));
			break;
		case 'm':
			if (util__parse_size(optarg, &v)) {
				pr_err("--memory: a size such as 512M or 2G");
				goto out;
			}
			json_object_set_new(spec, "memory", json_integer((json_int_t)v));
			break;
		case 'c':
			if (util__parse_u64(optarg, 1, 32, &v)) {
				pr_err("--cpus: 1..32");
				goto out;
			}
			json_object_set_new(spec, "cpus", json_integer((json_int_t)v));
			break;
		case 'l':
			json_object_set_new(spec, "cmdline", json_string(optarg));
			break;
		case 'd':
			json_array_append_new(disks, json_string(optarg));
			break;
		case 'n':
			json_array_append_new(nets, json_string(optarg));
			break;
		case 'r':
			json_object_set_new(spec, "restart", json_string(optarg));
			break;
		case 'j':
			break;
		case 'h':
			printf(
			    "usage: godwit cluster create NAME --kernel K --memory M [--cpus N]\n"
			    "       [--cmdline C] [--disk PATH]... [--net tap=T]... [--restart "
			    "always|never]\n"
			    "\n"
			    "Places a VM on the host with the most free memory (up, not in\n"
			    "maintenance, with room for its memory and vCPUs) and starts it\n"
			    "there. Paths (kernel, disks) must be the same on every host: disks\n"
			    "on shared storage. --restart always: restarted elsewhere when its\n"
			    "host dies even without a disk (docs/cluster.md says the risk).\n");
			ret = 0;
			goto out;
		default:
			goto out;
		}
	}
	if (optind != argc - 1) {
		pr_err("cluster create NAME --kernel K --memory M ... (see --help)");
		goto out;
	}
	json_object_set_new(spec, "name", json_string(argv[optind]));
	if (json_array_size(disks))
		json_object_set(spec, "disks", disks);
	if (json_array_size(nets))
		json_object_set(spec, "nets", nets);
	if (!json_object_get(spec, "memory"))
		json_object_set_new(spec, "memory", json_integer(512 << 20));
	if (cluster__spec_check(spec, err, sizeof(err))) {
		pr_err("%s", err);
		goto out;
	}
	ret = ask(c, "POST", "/vms", spec, 201, &reply);
	if (!ret) {
		if (want_json(argc, argv))
			print_json(reply);
		else
			printf("%s runs on %s\n", cluster__str(reply, "name", ""),
			       cluster__str(reply, "host", ""));
		json_decref(reply);
	}
out:
	json_decref(spec);
	json_decref(disks);
	json_decref(nets);
	return ret;
}

static int cmd_delete(const struct client *c, int argc, char **argv)
{
	char path[160];
	json_t *reply;

	if (argc != 2 || !cluster__name_ok(argv[1])) {
		pr_err("usage: godwit cluster delete NAME");
		return 2;
	}
	snprintf(path, sizeof(path), "/vms/%s", argv[1]);
	if (ask(c, "DELETE", path, NULL, 204, &reply))
		return 1;
	printf("%s stopped and deleted\n", argv[1]);
	return 0;
}

static void task_line(const json_t *t)
{
	const json_t *p = json_object_get(t, "progress");
	int64_t total = cluster__int(p, "ram_bytes", 0),
		moved = cluster__int(p, "ram_moved_bytes", 0);
	char pct[16] = "-", mbps[16] = "-";

	if (p && total) {
		snprintf(pct, sizeof(pct), "%" PRId64 "%%", moved * 100 / total);
		snprintf(mbps, sizeof(mbps), "%.0f",
			 (double)cluster__int(p, "bandwidth", 0) / (1 << 20));
	}
	if (!strcmp(cluster__str(t, "phase", ""), "done"))
		snprintf(pct, sizeof(pct), "100%%");
	printf("%-22s %-16s %-8s %-12s %-12s %-10s %5s %6s %d %s\n", cluster__str(t, "id", ""),
	       cluster__str(t, "vm", ""), cluster__str(t, "kind", ""), cluster__str(t, "src", ""),
	       *cluster__str(t, "dst", "") ? cluster__str(t, "dst", "") : "(any)",
	       cluster__str(t, "phase", ""), pct, mbps, (int)cluster__int(t, "attempt", 0),
	       cluster__str(t, "error", ""));
}

static void task_header(void)
{
	printf("%-22s %-16s %-8s %-12s %-12s %-10s %5s %6s %s %s\n", "ID", "VM", "KIND", "FROM",
	       "TO", "PHASE", "%", "MiB/s", "A", "ERROR");
}

static bool ended(const json_t *t)
{
	const char *p = cluster__str(t, "phase", "");

	return !strcmp(p, "done") || !strcmp(p, "failed") || !strcmp(p, "cancelled");
}

/* Polls a task until it ends, printing each change; 0 if it is done. */
static int wait_task(const struct client *c, const char *id, bool json)
{
	char path[160], last[256] = "", now[256];
	json_t *t;
	long status;

	snprintf(path, sizeof(path), "/tasks/%.100s", id);
	if (!json)
		task_header();
	for (;;) {
		if (poll_call(c, path, &status, &t))
			return 1;
		if (status != 200) {
			pr_err("%s", cluster__str(t, "error", "the task is gone"));
			json_decref(t);
			return 1;
		}
		snprintf(now, sizeof(now), "%s %" PRId64 " %s", cluster__str(t, "phase", ""),
			 cluster__int(json_object_get(t, "progress"), "ram_moved_bytes", 0),
			 cluster__str(t, "dst", ""));
		if (!json && strcmp(now, last))
			task_line(t);
		snprintf(last, sizeof(last), "%s", now);
		if (ended(t)) {
			int ret = strcmp(cluster__str(t, "phase", ""), "done") ? 1 : 0;

			if (json)
				print_json(t);
			else if (ret)
				pr_err("%s %s: %s", id, cluster__str(t, "phase", ""),
				       cluster__str(t, "error", "no reason recorded"));
			json_decref(t);
			return ret;
		}
		json_decref(t);
		usleep(300 * 1000);
	}
}

static int cmd_migrate(const struct client *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"to", required_argument, NULL, 't'},
	    {"wait", no_argument, NULL, 'w'},
	    {"max-bandwidth", required_argument, NULL, 'b'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *to = "";
	bool wait = false, json = false;
	uint64_t bw = 0;
	char path[160];
	json_t *req, *reply;
	int o, ret;

	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 't':
			to = optarg;
			break;
		case 'w':
			wait = true;
			break;
		case 'b':
			if (util__parse_size(optarg, &bw)) {
				pr_err("--max-bandwidth: bytes/s such as 100M");
				return 2;
			}
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			printf(
			    "usage: godwit cluster migrate NAME [--to HOST] [--max-bandwidth B]\n"
			    "       [--wait] [--json]\n"
			    "\n"
			    "Queues a live migration of VM NAME (to HOST, or where the most\n"
			    "memory is free) and prints its task id. The move waits in the queue\n"
			    "while a limit is reached (godwit cluster limits); a failed move is\n"
			    "retried twice, then the task fails and the VM runs on where it\n"
			    "was. --max-bandwidth caps its stream (bytes/s; K, M, G).\n"
			    "--wait prints progress until the task ends: exit 0 if the VM "
			    "moved.\n"
			    "It rides out up to %d s of a manager or etcd that does not answer.\n",
			    WAIT_GRACE_S);
			return 0;
		default:
			return 2;
		}
	}
	if (optind != argc - 1 || !cluster__name_ok(argv[optind])) {
		pr_err("usage: godwit cluster migrate NAME [--to HOST] [--wait]");
		return 2;
	}
	snprintf(path, sizeof(path), "/vms/%s/migrate", argv[optind]);
	req = json_pack("{s:s, s:I}", "to", to, "max_bandwidth", (json_int_t)bw);
	ret = ask(c, "POST", path, req, 202, &reply);
	json_decref(req);
	if (ret)
		return 1;
	if (!wait) {
		if (json)
			print_json(reply);
		else
			printf("%s\n", cluster__str(reply, "task", ""));
		json_decref(reply);
		return 0;
	}
	snprintf(path, sizeof(path), "%s", cluster__str(reply, "task", ""));
	json_decref(reply);
	return wait_task(c, path, json);
}

static int cmd_cancel(const struct client *c, int argc, char **argv)
{
	char path[160];
	json_t *reply;

	if (argc != 2 || strlen(argv[1]) > 64 || strchr(argv[1], '/')) {
		pr_err("usage: godwit cluster cancel TASK (godwit cluster tasks lists them)");
		return 2;
	}
	snprintf(path, sizeof(path), "/tasks/%s/cancel", argv[1]);
	if (ask(c, "POST", path, NULL, 202, &reply))
		return 1;
	json_decref(reply);
	printf("%s: cancellation asked (a move under way stops; the VM runs on where it was)\n",
	       argv[1]);
	return 0;
}

static int cmd_tasks(const struct client *c, int argc, char **argv)
{
	json_t *reply, *t;
	size_t i;

	if (ask(c, "GET", "/tasks", NULL, 200, &reply))
		return 1;
	if (want_json(argc, argv)) {
		print_json(reply);
	} else {
		printf("%d of %d migrations in flight (at most %d per host)\n",
		       (int)cluster__int(reply, "in_flight", 0),
		       (int)cluster__int(json_object_get(reply, "limits"), "cluster", 0),
		       (int)cluster__int(json_object_get(reply, "limits"), "per_host", 0));
		task_header();
		if (has_flag(argc, argv, "--all"))
			json_array_foreach(json_object_get(reply, "history"), i, t) task_line(t);
		json_array_foreach(json_object_get(reply, "tasks"), i, t) task_line(t);
	}
	json_decref(reply);
	return 0;
}

static int cmd_events(const struct client *c, int argc, char **argv)
{
	json_t *reply, *e;
	char when[32];
	size_t i;

	if (ask(c, "GET", "/events", NULL, 200, &reply))
		return 1;
	if (want_json(argc, argv)) {
		print_json(reply);
	} else {
		json_array_foreach(json_object_get(reply, "events"), i, e)
		{
			time_t t = (time_t)(cluster__int(e, "time_ms", 0) / 1000);
			struct tm tm;

			gmtime_r(&t, &tm);
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
			printf("%s  %s\n", when, cluster__str(e, "message", ""));
		}
	}
	json_decref(reply);
	return 0;
}

/* Polls the host until it is in maintenance (0) or reports VMs that cannot leave (1). */
static int wait_maintenance(const struct client *c, const char *host)
{
	json_t *reply, *h;
	long status;
	size_t i;

	for (;;) {
		if (poll_call(c, "/hosts", &status, &reply) || expect(status, 200, &reply))
			return 1;
		json_array_foreach(json_object_get(reply, "hosts"), i, h)
		{
			const char *vm;
			json_t *why;

			if (strcmp(cluster__str(h, "name", ""), host))
				continue;
			if (!strcmp(cluster__str(h, "state", ""), "in maintenance")) {
				printf("%s is in maintenance\n", host);
				json_decref(reply);
				return 0;
			}
			if (json_object_get(h, "stuck")) {
				json_object_foreach(json_object_get(h, "stuck"), vm, why) pr_err(
				    "%s cannot leave %s: %s", vm, host, json_string_value(why));
				pr_err(
				    "%s stays entering maintenance: make room, then enter again, "
				    "or exit maintenance",
				    host);
				json_decref(reply);
				return 1;
			}
			if (strcmp(cluster__str(h, "state", ""), "entering maintenance")) {
				pr_err("%s is %s now (maintenance was left)", host,
				       cluster__str(h, "state", ""));
				json_decref(reply);
				return 1;
			}
		}
		json_decref(reply);
		usleep(500 * 1000);
	}
}

int cluster_cli__host_action(const struct client *c, int argc, char **argv, const char *resource,
			     const char *a, const char *b, const char *usage)
{
	char path[160];
	json_t *req, *reply;
	int ret;

	if (argc < 3 || (strcmp(argv[1], a) && strcmp(argv[1], b)) || !cluster__name_ok(argv[2])) {
		pr_err("%s", usage);
		return 2;
	}
	snprintf(path, sizeof(path), "/hosts/%s/%s", argv[2], resource);
	req = json_pack("{s:s}", "action", argv[1]);
	ret = ask(c, "POST", path, req, 202, &reply);
	json_decref(req);
	if (ret)
		return 1;
	json_decref(reply);
	return 0;
}

static int cmd_maintenance(const struct client *c, int argc, char **argv)
{
	int ret = cluster_cli__host_action(c, argc, argv, "maintenance", "enter", "exit",
					   "usage: godwit cluster maintenance enter|exit HOST "
					   "[--wait]");

	if (ret)
		return ret;
	if (!strcmp(argv[1], "enter") && has_flag(argc, argv, "--wait"))
		return wait_maintenance(c, argv[2]);
	printf(!strcmp(argv[1], "enter") ? "%s is entering maintenance: its VMs move away\n"
					 : "%s is out of maintenance\n",
	       argv[2]);
	return 0;
}

static int limits_opts(int argc, char **argv, json_t *req, bool *json)
{
	static const struct option opts[] = {
	    {"per-host", required_argument, NULL, 'p'},
	    {"cluster", required_argument, NULL, 'c'},
	    {"max-bandwidth", required_argument, NULL, 'b'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	uint64_t v;
	int o;

	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'p':
		case 'c':
			if (util__parse_u64(optarg, 1, LIMIT_MAX, &v)) {
				pr_err("--%s: 1..%d", o == 'p' ? "per-host" : "cluster", LIMIT_MAX);
				return 2;
			}
			json_object_set_new(req, o == 'p' ? "per_host" : "cluster",
					    json_integer((json_int_t)v));
			break;
		case 'b':
			if (util__parse_size(optarg, &v) || v > INT64_MAX) {
				pr_err("--max-bandwidth: bytes/s such as 100M, 0 for no cap");
				return 2;
			}
			json_object_set_new(req, "max_bandwidth", json_integer((json_int_t)v));
			break;
		case 'j':
			*json = true;
			break;
		case 'h':
			printf("usage: godwit cluster limits [--per-host N] [--cluster N]\n"
			       "       [--max-bandwidth B] [--json]\n"
			       "\n"
			       "Shows, or with options sets, what holds every move.\n"
			       "--per-host: moves at once on one host, in and out together\n"
			       "(default 8); --cluster: moves at once in the cluster (default\n"
			       "128); a move over a limit waits in the queue.\n"
			       "--max-bandwidth: the stream of every move is held to B bytes/s\n"
			       "(K, M, G; 0: no cap, the default); a move asked with a lower\n"
			       "cap keeps its own. Moves that start afterwards, queued ones\n"
			       "included, obey the new values; running ones keep theirs.\n");
			return 1;
		default:
			return 2;
		}
	}
	if (optind != argc) {
		pr_err("usage: godwit cluster limits [--per-host N] [--cluster N] "
		       "[--max-bandwidth B] [--json]");
		return 2;
	}
	return 0;
}

static int cmd_limits(const struct client *c, int argc, char **argv)
{
	json_t *req = json_object(), *reply;
	bool json = false;
	int64_t bw;
	int ret;

	ret = limits_opts(argc, argv, req, &json);
	if (ret) {
		json_decref(req);
		return ret == 1 ? 0 : ret;
	}
	ret = ask(c, json_object_size(req) ? "PUT" : "GET", "/limits",
		  json_object_size(req) ? req : NULL, 200, &reply);
	json_decref(req);
	if (ret)
		return 1;
	bw = cluster__int(reply, "max_bandwidth", 0);
	if (json) {
		print_json(reply);
	} else {
		printf("at most %d migrations per host (in and out), %d in the cluster; ",
		       (int)cluster__int(reply, "per_host", 0),
		       (int)cluster__int(reply, "cluster", 0));
		if (bw)
			printf("each move at most %.1f MiB/s\n", (double)bw / (1 << 20));
		else
			printf("no bandwidth cap\n");
	}
	json_decref(reply);
	return 0;
}

/* A login for the web console (docs/console.md): made only with the client certificate. */
static int cmd_console_token(const struct client *c, int argc, char **argv)
{
	json_t *req, *reply;
	uint64_t days = 30;
	char when[32];
	time_t t;
	struct tm tm;

	if (argc == 2 && !strcmp(argv[1], "--revoke-all")) {
		if (ask(c, "DELETE", "/console/tokens", NULL, 204, &reply))
			return 1;
		json_decref(reply);
		printf("every console token and session is revoked\n");
		return 0;
	}
	if (argc != 1 &&
	    (argc != 3 || strcmp(argv[1], "--days") || util__parse_u64(argv[2], 1, 365, &days))) {
		pr_err("usage: godwit cluster console-token [--days N (1..365, default 30)] | "
		       "--revoke-all");
		return 2;
	}
	req = json_pack("{s:I}", "days", (json_int_t)days);
	if (ask(c, "POST", "/console/tokens", req, 201, &reply)) {
		json_decref(req);
		return 1;
	}
	json_decref(req);
	t = (time_t)(cluster__int(reply, "expires_ms", 0) / 1000);
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", &tm);
	printf("%s\n", cluster__str(reply, "token", ""));
	fprintf(stderr,
		"console token %s, valid until %s: paste it into the login of "
		"https://MANAGER/console/ (keep it secret; --revoke-all ends every one)\n",
		cluster__str(reply, "id", ""), when);
	json_decref(reply);
	return 0;
}

static const struct {
	const char *name;
	int (*fn)(const struct client *c, int argc, char **argv);
	bool own_help; /* it answers --help itself, at length */
} commands[] = {
    {"hosts", cmd_hosts, false},
    {"vms", cmd_vms, false},
    {"create", cmd_create, true},
    {"delete", cmd_delete, false},
    {"migrate", cmd_migrate, true},
    {"cancel", cmd_cancel, false},
    {"tasks", cmd_tasks, false},
    {"events", cmd_events, false},
    {"maintenance", cmd_maintenance, false},
    {"limits", cmd_limits, true},
    {"console-token", cmd_console_token, false},
    {"group", cluster_cli__group, false},
    {"rule", cluster_cli__rule, false},
    {"drs", cluster_cli__drs, false},
    {"dpm", cluster_cli__dpm, false},
    {"host", cluster_cli__host, false},
};

/*
 * `godwit cluster CMD --help` for a command without a help of its own: its lines of
 * the usage (and their continuations), without asking any manager.
 */
static int command_help(const char *name)
{
	char *text = NULL, *line, *save = NULL;
	bool mine = false;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return 1;
	usage(f);
	fclose(f);
	printf("usage: godwit cluster [--manager URL[,URL...]] [--pki D] %s ...\n\n", name);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		/* A command's line starts "  NAME "; its continuations with more blanks. */
		if (!strncmp(line, "   ", 3))
			mine = mine && line[strspn(line, " ")];
		else
			mine = !strncmp(line, "  ", 2) && !strncmp(line + 2, name, strlen(name)) &&
			       line[2 + strlen(name)] == ' ';
		if (mine)
			printf("%s\n", line);
	}
	printf("\nThe manager and the certificates: godwit cluster --help.\n");
	free(text);
	return 0;
}

int cluster_cli__main(int argc, char **argv)
{
	struct client c = {getenv("GODWIT_MANAGER"), getenv("GODWIT_PKI")};
	size_t i;

	while (argc > 2 && (!strcmp(argv[1], "--manager") || !strcmp(argv[1], "--pki"))) {
		if (!strcmp(argv[1], "--manager"))
			c.managers = argv[2];
		else
			c.pki = argv[2];
		argc -= 2;
		argv += 2;
	}
	if (!c.pki)
		c.pki = "/etc/godwit/pki";
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
	if (!strcmp(argv[1], "simulate"))
		return simulate__main(argc - 1, argv + 1);
	for (i = 0; i < ARRAY_SIZE(commands); i++) {
		if (strcmp(argv[1], commands[i].name))
			continue;
		if (!commands[i].own_help &&
		    (has_flag(argc - 1, argv + 1, "--help") || has_flag(argc - 1, argv + 1, "-h")))
			return command_help(commands[i].name);
		return commands[i].fn(&c, argc - 1, argv + 1);
	}
	pr_err("unknown cluster command '%s' (see godwit cluster --help)", argv[1]);
	return 2;
}
