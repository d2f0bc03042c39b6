// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target: `godwit cluster simulate --trace FILE` reads a user's JSON
 * (src/cluster/sim.c), and whatever it accepts goes to the scheduler: balancing,
 * placement and power decisions must then neither crash nor break their own rules
 * (a must rule kept, a VM moved at most once, moves only to serving hosts).
 * fuzz/corpus/fuzz_drs_trace/ holds small traces.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/cluster/drs.h"
#include "godwit/cluster/sim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_moves(const struct drs_model *m, const struct drs_move *mv, int n)
{
	char *seen = calloc(m->nr_vms ? m->nr_vms : 1, 1);
	int k;

	if (!seen)
		return;
	for (k = 0; k < n; k++) {
		const struct drs_host *dst = &m->hosts[mv[k].dst];

		if (seen[mv[k].vm]++ || !dst->up || dst->maintenance || dst->standby ||
		    mv[k].src != m->vms[mv[k].vm].host)
			abort();
	}
	free(seen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct drs_config c;
	struct drs_model m;
	struct dpm_state st = {0};
	struct dpm_decision d;
	struct drs_move *mv;
	struct sim s;
	char why[256];
	size_t v;
	int n;

	if (sim__parse_trace(&s, (const char *)data, size, why, sizeof(why)))
		return 0;
	sim__model(&s, &m);
	drs__config_default(&c);
	c.threshold = 5;
	c.dpm_window = 0;
	mv = calloc(m.nr_vms ? m.nr_vms : 1, sizeof(*mv));
	if (mv && m.nr_vms <= 200 && m.nr_hosts <= 64) {
		n = drs__recommend(&m, &c, mv, m.nr_vms, why, sizeof(why));
		if (n > 0)
			check_moves(&m, mv, n);
		d.moves = mv;
		if (!dpm__recommend(&m, &c, &st, 1, &d, why, sizeof(why)) &&
		    d.action == DPM_POWER_OFF)
			check_moves(&m, mv, (int)d.nr_moves);
		for (v = 0; v < m.nr_vms; v++)
			drs__place(&m, &c, (int)v, -1, why, sizeof(why));
		drs__imbalance(&m);
	}
	free(mv);
	sim__free(&s);
	return 0;
}
