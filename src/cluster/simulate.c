// SPDX-License-Identifier: GPL-2.0
/*
 * `godwit cluster simulate`: the real balancing and power code (drs.c, dpm.c) on a
 * synthetic cluster, pass after pass, with moves modelled as memory over bandwidth
 * (docs/drs.md, "Simulation").
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/cluster/cluster.h"
#include "godwit/cluster/sim.h"
#include "godwit/log.h"
#include "godwit/util.h"

#define MAX_TRACE_BYTES (256 * MiB)

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: godwit cluster simulate [options]\n"
	    "\n"
	    "Runs the cluster's balancing (DRS) and power (DPM) code on a synthetic cluster: no\n"
	    "VM, no etcd. Each pass computes the moves, applies them all and models their time\n"
	    "as bytes to copy over --bandwidth, with --slots moves at once per host.\n"
	    "\n"
	    "The cluster, from a generator:\n"
	    "  --hosts N          hosts of 64 CPUs, 128 vCPUs, 512 GiB (default 16)\n"
	    "  --vms N            VMs of 1..64 GiB and 1..16 vCPUs (default 20 per host)\n"
	    "  --skew S           0..1: how much busier the first quarter of hosts is (0.5)\n"
	    "  --seed N           the generator's seed (1)\n"
	    "  --apart N          N pairs of VMs under a must-apart rule, started together\n"
	    "  --pinned N         N VMs that must run on the even hosts (host group 0)\n"
	    "  --together N       N pairs under a should-together rule, started apart\n"
	    "or from a file:\n"
	    "  --trace FILE       hosts, VMs with their demand per pass, rules (JSON; the\n"
	    "                     format is in docs/drs.md)\n"
	    "\n"
	    "The scheduler:\n"
	    "  --algorithm A      cost (default: imbalance removed per byte copied) or\n"
	    "                     baseline (hbal-style: the largest gain, no cost, no caps)\n"
	    "  --threshold T      1..5 (3): the tolerated imbalance; 1 moves only for rules\n"
	    "  --max-moves N      balancing moves per pass (1024)\n"
	    "  --host-moves N     moves per pass in and out of one host (8)\n"
	    "  --slots N          moves a host runs at once (8)\n"
	    "  --bandwidth RATE   bytes per second a move copies at, e.g. 1G (1G)\n"
	    "  --pass-seconds S   time between passes (60)\n"
	    "  --min-gain G       minimum gain, as a fraction of tolerance^2 (0.1)\n"
	    "  --dpm              also run power management (DPM) each pass\n"
	    "\n"
	    "The run:\n"
	    "  --passes N         passes (10)\n"
	    "  --until-balanced   stop after the first pass that ends within the tolerance\n"
	    "  --noise F          each pass, every VM's demand times 1 + F x a normal deviate\n"
	    "  --moves            print every move with its reason\n"
	    "  --json             one JSON object instead of the table\n"
	    "\n"
	    "Per pass: the imbalance before and after (standard deviation of host loads), the\n"
	    "moves (for rules, maintenance, balance), GiB moved (memory copied once) and the\n"
	    "modelled time of the pass's moves; at the end the rules broken (must, should), VMs\n"
	    "moved back where they came from, and a lower bound of the GiB and moves any\n"
	    "scheduler needs to reach the tolerance (hosts of one capacity only).\n");
}

struct opts {
	struct sim_gen gen;
	const char *trace;
	struct drs_config cfg;
	size_t passes;
	bool until, dpm, json, moves;
	double noise;
};

enum {
	O_HOSTS = 256,
	O_VMS,
	O_SKEW,
	O_SEED,
	O_APART,
	O_PINNED,
	O_TOGETHER,
	O_TRACE,
	O_ALGO,
	O_THRESHOLD,
	O_MAX_MOVES,
	O_HOST_MOVES,
	O_SLOTS,
	O_BANDWIDTH,
	O_PASS_SECONDS,
	O_MIN_GAIN,
	O_DPM,
	O_PASSES,
	O_UNTIL,
	O_NOISE,
	O_MOVES,
	O_JSON,
	O_HELP,
};

static int number(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	if (!util__parse_u64(s, min, max, out))
		return 0;
	pr_err("--%s takes a whole number in %llu..%llu, not '%s'", opt, (unsigned long long)min,
	       (unsigned long long)max, s);
	return -EINVAL;
}

static int real(const char *opt, const char *s, double min, double max, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	if (!errno && end != s && !*end && *out >= min && *out <= max)
		return 0;
	pr_err("--%s takes a number in %g..%g, not '%s'", opt, min, max, s);
	return -EINVAL;
}

static int parse_one(struct opts *o, int c, const char *arg, bool *vms_set)
{
	uint64_t u;
	int ret = 0;

	switch (c) {
	case O_HOSTS:
		ret = number("hosts", arg, 1, 100000, &u);
		o->gen.hosts = u;
		break;
	case O_VMS:
		ret = number("vms", arg, 0, 1000000, &u);
		o->gen.vms = u;
		*vms_set = true;
		break;
	case O_SKEW:
		ret = real("skew", arg, 0, 1, &o->gen.skew);
		break;
	case O_SEED:
		ret = number("seed", arg, 0, UINT64_MAX, &o->gen.seed);
		break;
	case O_APART:
		ret = number("apart", arg, 0, 1000000, &u);
		o->gen.apart = u;
		break;
	case O_PINNED:
		ret = number("pinned", arg, 0, 1000000, &u);
		o->gen.pinned = u;
		break;
	case O_TOGETHER:
		ret = number("together", arg, 0, 1000000, &u);
		o->gen.together = u;
		break;
	case O_TRACE:
		o->trace = arg;
		break;
	case O_ALGO:
		if (!strcmp(arg, "cost"))
			o->cfg.algorithm = DRS_ALGO_COST;
		else if (!strcmp(arg, "baseline"))
			o->cfg.algorithm = DRS_ALGO_GREEDY;
		else {
			pr_err("--algorithm is cost or baseline, not '%s'", arg);
			ret = -EINVAL;
		}
		break;
	case O_THRESHOLD:
		ret = number("threshold", arg, 1, 5, &u);
		o->cfg.threshold = (int)u;
		break;
	case O_MAX_MOVES:
		ret = number("max-moves", arg, 0, 1000000, &u);
		o->cfg.max_moves = (int)u;
		break;
	case O_HOST_MOVES:
		ret = number("host-moves", arg, 1, 10000, &u);
		o->cfg.max_host_moves = (int)u;
		break;
	case O_SLOTS:
		ret = number("slots", arg, 1, 10000, &u);
		o->cfg.host_slots = (int)u;
		break;
	case O_BANDWIDTH:
		if (util__parse_size(arg, &u) || !u) {
			pr_err("--bandwidth takes bytes per second, e.g. 1G or 500M, not '%s'",
			       arg);
			ret = -EINVAL;
		}
		o->cfg.bandwidth = (double)u;
		break;
	case O_PASS_SECONDS:
		ret = real("pass-seconds", arg, 1e-3, 1e6, &o->cfg.pass_seconds);
		break;
	case O_MIN_GAIN:
		ret = real("min-gain", arg, 0, 1e6, &o->cfg.min_gain);
		break;
	case O_DPM:
		o->dpm = true;
		break;
	case O_PASSES:
		ret = number("passes", arg, 1, 100000, &u);
		o->passes = u;
		break;
	case O_UNTIL:
		o->until = true;
		break;
	case O_NOISE:
		ret = real("noise", arg, 0, 10, &o->noise);
		break;
	case O_MOVES:
		o->moves = true;
		break;
	case O_JSON:
		o->json = true;
		break;
	default:
		ret = -EINVAL;
	}
	return ret;
}

static int parse_opts(struct opts *o, int argc, char **argv)
{
	static const struct option long_opts[] = {
	    {"hosts", required_argument, NULL, O_HOSTS},
	    {"vms", required_argument, NULL, O_VMS},
	    {"skew", required_argument, NULL, O_SKEW},
	    {"seed", required_argument, NULL, O_SEED},
	    {"apart", required_argument, NULL, O_APART},
	    {"pinned", required_argument, NULL, O_PINNED},
	    {"together", required_argument, NULL, O_TOGETHER},
	    {"trace", required_argument, NULL, O_TRACE},
	    {"algorithm", required_argument, NULL, O_ALGO},
	    {"threshold", required_argument, NULL, O_THRESHOLD},
	    {"max-moves", required_argument, NULL, O_MAX_MOVES},
	    {"host-moves", required_argument, NULL, O_HOST_MOVES},
	    {"slots", required_argument, NULL, O_SLOTS},
	    {"bandwidth", required_argument, NULL, O_BANDWIDTH},
	    {"pass-seconds", required_argument, NULL, O_PASS_SECONDS},
	    {"min-gain", required_argument, NULL, O_MIN_GAIN},
	    {"dpm", no_argument, NULL, O_DPM},
	    {"passes", required_argument, NULL, O_PASSES},
	    {"until-balanced", no_argument, NULL, O_UNTIL},
	    {"noise", required_argument, NULL, O_NOISE},
	    {"moves", no_argument, NULL, O_MOVES},
	    {"json", no_argument, NULL, O_JSON},
	    {"help", no_argument, NULL, O_HELP},
	    {NULL, 0, NULL, 0},
	};
	bool vms_set = false;
	int c;

	memset(o, 0, sizeof(*o));
	o->gen = (struct sim_gen){.hosts = 16, .skew = 0.5, .seed = 1};
	drs__config_default(&o->cfg);
	o->cfg.automation = DRS_AUTO_AUTOMATIC;
	o->passes = 10;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		if (c == O_HELP || c == 'h') {
			usage(stdout);
			return 1;
		}
		if (c == '?' || parse_one(o, c, optarg, &vms_set)) {
			fprintf(stderr, "see godwit cluster simulate --help\n");
			return -EINVAL;
		}
	}
	if (optind < argc) {
		pr_err("unexpected '%s' (see godwit cluster simulate --help)", argv[optind]);
		return -EINVAL;
	}
	if (!vms_set)
		o->gen.vms = o->gen.hosts * 20;
	return 0;
}

static int load_trace(struct sim *s, const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL, why[256];
	size_t len = 0, n;
	int ret = -EINVAL;

	if (!f) {
		ret = -errno;
		pr_err("cannot open the trace %s: %s", path, strerror(-ret));
		return ret;
	}
	buf = malloc(MAX_TRACE_BYTES);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	while ((n = fread(buf + len, 1, MAX_TRACE_BYTES - len, f)) > 0)
		len += n;
	if (ferror(f))
		pr_err("cannot read the trace %s: %s", path, strerror(errno));
	else if (len == MAX_TRACE_BYTES)
		pr_err("the trace %s is larger than 256 MiB", path);
	else if ((ret = sim__parse_trace(s, buf, len, why, sizeof(why))))
		pr_err("%s: %s", path, why);
	free(buf);
	fclose(f);
	return ret;
}

/* The rules broken in the model, counted independently of drs.c's own bookkeeping. */
static void broken_rules(const struct drs_model *m, int *must, int *should)
{
	size_t r, a, b, q;

	*must = *should = 0;
	for (r = 0; r < m->nr_rules; r++) {
		const struct drs_rule *x = &m->rules[r];
		bool ok = true;

		for (a = 0; a < x->nr_vms && ok; a++) {
			int h = m->vms[x->vms[a]].host;

			if (h < 0)
				continue;
			if (x->kind == DRS_RULE_ON_GROUP || x->kind == DRS_RULE_OFF_GROUP)
				ok = !((m->hosts[h].groups >> x->group) & 1) ==
				     (x->kind == DRS_RULE_OFF_GROUP);
			for (b = 0; b < x->nr_vms && ok; b++) {
				int g = m->vms[x->vms[b]].host;

				if (x->vms[a] == x->vms[b] || g < 0)
					continue;
				if (x->kind == DRS_RULE_APART)
					ok = g != h;
				if (x->kind == DRS_RULE_TOGETHER)
					ok = g == h;
			}
		}
		/* A TOGETHER that an APART overrides is not kept, by design. */
		for (q = 0; !ok && x->kind == DRS_RULE_TOGETHER && q < m->nr_rules; q++) {
			size_t in = 0;

			if (m->rules[q].kind != DRS_RULE_APART)
				continue;
			for (a = 0; a < m->rules[q].nr_vms; a++)
				for (b = 0; b < x->nr_vms; b++)
					in += m->rules[q].vms[a] == x->vms[b];
			ok = in >= 2;
		}
		if (!ok)
			++*(x->must ? must : should);
	}
}

struct run {
	struct opts *o;
	struct sim s;
	struct drs_model m;
	struct drs_move *moves;
	int *prev_host; /* per VM: the host it left in its last move, -1 */
	struct dpm_state dpm;
	json_t *passes;
	double tol;
	size_t nr_moves, moved_back, reached;
	double gib, gib_copied, compute_max;
};

static double gib(double bytes)
{
	return bytes / (double)GiB;
}

/* Applies the moves; returns their modelled time (slots per host run at once). */
static double apply(struct run *r, const struct drs_move *mv, size_t n, int counts[4],
		    double *moved, double *copied)
{
	double *busy = calloc(r->s.nr_hosts, sizeof(*busy)), longest = 0, t = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		struct drs_vm *vm = &r->s.vms[mv[i].vm];

		counts[mv[i].reason]++;
		*moved += (double)vm->mem_copy;
		*copied += (double)mv[i].bytes;
		if (r->prev_host[mv[i].vm] == mv[i].dst)
			r->moved_back++;
		r->prev_host[mv[i].vm] = vm->host;
		vm->host = mv[i].dst;
		vm->moved_ago = 0;
		longest = fmax(longest, mv[i].seconds);
		if (busy) {
			busy[mv[i].src] += mv[i].seconds;
			busy[mv[i].dst] += mv[i].seconds;
		}
		if (r->o->moves && !r->o->json)
			printf("    %s%s\n", mv[i].why, mv[i].automatic ? "" : " (manual)");
	}
	for (i = 0; busy && i < r->s.nr_hosts; i++)
		t = fmax(t, busy[i] / drs__host_slots(&r->m, &r->o->cfg, (int)i));
	free(busy);
	return fmax(t, longest);
}

static int run_dpm(struct run *r, json_t *pass, int counts[4], double *moved, double *copied,
		   double *seconds)
{
	struct dpm_decision d = {.moves = r->moves};
	static const char *const actions[] = {"none", "power-off", "power-on"};
	char why[256];
	int ret;

	ret = dpm__recommend(&r->m, &r->o->cfg, &r->dpm, r->o->cfg.pass_seconds, &d, why,
			     sizeof(why));
	if (ret) {
		pr_err("DPM: %s", why);
		return ret;
	}
	if (d.action == DPM_POWER_OFF) {
		*seconds += apply(r, d.moves, d.nr_moves, counts, moved, copied);
		r->s.hosts[d.host].standby = true;
	} else if (d.action == DPM_POWER_ON) {
		r->s.hosts[d.host].standby = false;
	}
	if (d.action != DPM_NONE && !r->o->json)
		printf("    DPM: %s\n", d.why);
	json_object_set_new(pass, "dpm",
			    json_pack("{s:s, s:s?, s:s}", "action", actions[d.action], "host",
				      d.host >= 0 ? r->s.hosts[d.host].name : NULL, "why", d.why));
	return 0;
}

static int run_pass(struct run *r, size_t pass, uint64_t *rng)
{
	double before, after, moved = 0, copied = 0, seconds, ms;
	int counts[4] = {0}, n;
	char why[256];
	uint64_t t0;
	json_t *j, *stats;
	size_t i;

	sim__set_demand(&r->s, pass, r->o->noise, rng);
	before = drs__imbalance(&r->m);
	t0 = util__now_ns();
	n = drs__recommend(&r->m, &r->o->cfg, r->moves, r->s.nr_vms, why, sizeof(why));
	ms = (double)(util__now_ns() - t0) / 1e6;
	if (n < 0) {
		pr_err("%s", why);
		return n;
	}
	r->compute_max = fmax(r->compute_max, ms);
	seconds = apply(r, r->moves, (size_t)n, counts, &moved, &copied);
	j = json_object();
	if (r->o->dpm && run_dpm(r, j, counts, &moved, &copied, &seconds)) {
		json_decref(j);
		return -EINVAL;
	}
	after = drs__imbalance(&r->m);
	for (i = 0; i < r->s.nr_vms; i++)
		if (r->s.vms[i].moved_ago >= 0)
			r->s.vms[i].moved_ago += r->o->cfg.pass_seconds;
	r->nr_moves += (size_t)(counts[0] + counts[1] + counts[2] + counts[3]);
	r->gib += gib(moved);
	r->gib_copied += gib(copied);
	if (!r->reached && after <= r->tol)
		r->reached = pass + 1;
	stats =
	    json_pack("{s:I, s:f, s:f, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:f, "
		      "s:f}",
		      "pass", (json_int_t)pass + 1, "imbalance_before", before, "imbalance_after",
		      after, "moves", counts[0] + counts[1] + counts[2] + counts[3],
		      "balance_moves", counts[0], "rule_moves", counts[1], "maintenance_moves",
		      counts[2], "power_off_moves", counts[3], "gib_moved", gib(moved),
		      "gib_copied", gib(copied), "move_seconds", seconds, "compute_ms", ms);
	json_object_update(j, stats);
	json_decref(stats);
	json_array_append_new(r->passes, j);
	if (!r->o->json)
		printf("%4zu  %9.4f  %9.4f  %5d  %4d/%d/%d/%d  %9.1f  %9.1f  %10.2f\n", pass + 1,
		       before, after, counts[0] + counts[1] + counts[2] + counts[3], counts[1],
		       counts[2], counts[0], counts[3], gib(moved), seconds, ms);
	return 0;
}

/* The lower bounds of GiB and moves to reach the tolerance, from the first pass's state. */
static void bounds(const struct run *r, double *lb_gib, double *lb_moves)
{
	double *cost = malloc((r->s.nr_vms ? r->s.nr_vms : 1) * sizeof(*cost));
	size_t i;

	*lb_gib = *lb_moves = -1;
	if (!cost || !isfinite(r->tol)) {
		free(cost);
		return;
	}
	for (i = 0; i < r->s.nr_vms; i++)
		cost[i] = gib((double)r->s.vms[i].mem_copy);
	*lb_gib = sim__lower_bound(&r->m, r->tol, cost);
	for (i = 0; i < r->s.nr_vms; i++)
		cost[i] = 1;
	*lb_moves = sim__lower_bound(&r->m, r->tol, cost);
	free(cost);
}

static json_t *maybe(double x)
{
	return x >= 0 ? json_real(x) : json_null();
}

static void report(struct run *r, double initial, double lb_gib, double lb_moves)
{
	int must, should;
	json_t *out;

	broken_rules(&r->m, &must, &should);
	if (!r->o->json) {
		printf("total: %zu moves, %.1f GiB moved (%.1f GiB copied with what the VMs "
		       "dirtied), imbalance %.4f -> %.4f",
		       r->nr_moves, r->gib, r->gib_copied, initial, drs__imbalance(&r->m));
		if (r->reached)
			printf(", within %.3f after pass %zu\n", r->tol, r->reached);
		else
			printf(", not within %.3f\n", r->tol);
		printf("rules broken at the end: %d must, %d should; VMs moved back where they "
		       "came from: %zu; slowest pass computed in %.2f ms\n",
		       must, should, r->moved_back, r->compute_max);
		if (lb_gib >= 0)
			printf("lower bound to reach %.3f: %.1f GiB, %.1f moves\n", r->tol, lb_gib,
			       lb_moves);
		return;
	}
	out = json_pack("{s:I, s:I, s:I, s:i, s:o, s:s, s:f, s:o, s:{s:I, s:f, s:f, s:f, s:o, "
			"s:i, s:i, s:I, s:f}, s:{s:o, s:o}}",
			"hosts", (json_int_t)r->s.nr_hosts, "vms", (json_int_t)r->s.nr_vms, "rules",
			(json_int_t)r->s.nr_rules, "threshold", r->o->cfg.threshold, "tolerance",
			maybe(isfinite(r->tol) ? r->tol : -1), "algorithm",
			r->o->cfg.algorithm == DRS_ALGO_GREEDY ? "baseline" : "cost",
			"initial_imbalance", initial, "passes", r->passes, "total", "moves",
			(json_int_t)r->nr_moves, "gib_moved", r->gib, "gib_copied", r->gib_copied,
			"final_imbalance", drs__imbalance(&r->m), "reached_pass",
			r->reached ? json_integer((json_int_t)r->reached) : json_null(),
			"must_broken", must, "should_broken", should, "moved_back",
			(json_int_t)r->moved_back, "compute_ms_max", r->compute_max, "lower_bound",
			"gib", maybe(lb_gib), "moves", maybe(lb_moves));
	r->passes = NULL; /* owned by out now */
	if (out) {
		json_dumpf(out, stdout, JSON_INDENT(1));
		putchar('\n');
	}
	json_decref(out);
}

static int setup(struct run *r)
{
	char why[256];
	int ret;
	size_t i;

	if (r->o->trace)
		ret = load_trace(&r->s, r->o->trace);
	else if ((ret = sim__generate(&r->s, &r->o->gen, why, sizeof(why))))
		pr_err("%s", why);
	if (ret)
		return ret;
	sim__model(&r->s, &r->m);
	if ((ret = drs__check(&r->m, &r->o->cfg, why, sizeof(why)))) {
		pr_err("%s", why);
		return ret;
	}
	r->moves = calloc(r->s.nr_vms ? r->s.nr_vms : 1, sizeof(*r->moves));
	r->prev_host = malloc((r->s.nr_vms ? r->s.nr_vms : 1) * sizeof(*r->prev_host));
	r->passes = json_array();
	if (!r->moves || !r->prev_host || !r->passes)
		return -ENOMEM;
	for (i = 0; i < r->s.nr_vms; i++)
		r->prev_host[i] = -1;
	r->tol = drs__tolerance(r->o->cfg.threshold);
	return 0;
}

int simulate__main(int argc, char **argv)
{
	struct opts o;
	struct run r = {.o = &o};
	double initial, lb_gib, lb_moves;
	uint64_t rng;
	size_t pass;
	int ret = parse_opts(&o, argc, argv);

	if (ret)
		return ret > 0 ? 0 : 2;
	rng = o.gen.seed ^ 0x5bd1e995ULL;
	ret = setup(&r);
	if (ret)
		goto out;
	initial = drs__imbalance(&r.m);
	bounds(&r, &lb_gib, &lb_moves);
	if (!o.json)
		printf("%zu hosts, %zu VMs, %zu rules; threshold %d (tolerance %.3f), algorithm "
		       "%s\npass  imbalance      after  moves  rule/maint/bal/power  GiB moved  "
		       "move time s  compute ms\n",
		       r.s.nr_hosts, r.s.nr_vms, r.s.nr_rules, o.cfg.threshold, r.tol,
		       o.cfg.algorithm == DRS_ALGO_GREEDY ? "baseline" : "cost");
	for (pass = 0; pass < o.passes && !ret; pass++) {
		ret = run_pass(&r, pass, &rng);
		if (o.until && r.reached)
			break;
	}
	if (!ret)
		report(&r, initial, lb_gib, lb_moves);
out:
	json_decref(r.passes);
	free(r.moves);
	free(r.prev_host);
	sim__free(&r.s);
	return ret ? 1 : 0;
}
