/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_RAM_RECEIVE_H
#define GODWIT_RAM_RECEIVE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "godwit/memory.h"
#include "godwit/stream.h"

/*
 * The destination's guest RAM as plain RAM records fill it in place
 * (stream__ram_record_receive), with a helper thread allocating the memfd's pages
 * ahead of them in the first round.
 */
struct ram_receiver {
	struct guest_mem *mem;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool running; /* the helper thread */
	bool stop;
	uint64_t seen;	 /* memfd offset: the end of the furthest run received */
	uint64_t done;	 /* the helper allocated from seen up to here */
	uint64_t wasted; /* bytes it allocated that the records then skipped */
	uint64_t allocated;
};

/* Starts the helper (none if the thread cannot be made: the records still fault pages in). */
void ram_receiver__start(struct ram_receiver *r, struct guest_mem *mem);
/* Ends the helper; the next rounds rewrite pages that exist. Safe to call again. */
void ram_receiver__stop(struct ram_receiver *r);
/* stream__ram_record_receive's fill and apply, with opaque a struct ram_receiver. */
int ram_receiver__fill(void *opaque, uint64_t gpa, uint32_t npages, stream_part_fn part,
		       void *part_ctx);
int ram_receiver__apply(void *opaque, uint64_t gpa, uint32_t npages, uint32_t kind,
			const uint8_t *data);

#endif
