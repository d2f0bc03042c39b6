// SPDX-License-Identifier: GPL-2.0
/*
 * The destination's side of plain RAM records: each DATA run is read from the stream
 * straight into guest RAM (no copy in a buffer, no pwrite from it). What that leaves is
 * shmem allocating the memfd's pages, one fault per page under the copy, which costs
 * as much as the copy and the checksum together (docs/bench.md, "Receiving into guest
 * memory"). The source's first pass walks guest RAM in ascending order, so in the first
 * round a helper thread allocates the pages just ahead of the records, on the other
 * core, and the receiving thread only copies into them. Allocating changes no byte of
 * guest RAM (a hole and a fresh page both read as zeros), so the helper races with
 * nothing. It guesses: pages it allocates past where the source's data ends are never
 * sent, and once those add up to PREFILL_WASTE_MAX it stops guessing.
 */
#include <errno.h>
#include <string.h>

#include "godwit/log.h"
#include "godwit/ram.h"
#include "godwit/ram_receive.h"

#define PREFILL_AHEAD	  (32 * MiB) /* allocated ahead of the furthest run received */
#define PREFILL_CHUNK	  (2 * MiB)  /* per call, so that a stop waits for one only */
#define PREFILL_WASTE_MAX (64 * MiB)

static void *prefill_main(void *arg)
{
	struct ram_receiver *r = arg;
	uint64_t at, end, len;
	int ret;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		end = MIN(r->seen + PREFILL_AHEAD, r->mem->size);
		if (r->stop)
			break;
		if (MAX(r->done, r->seen) >= end) {
			pthread_cond_wait(&r->cond, &r->lock);
			continue;
		}
		at = MAX(r->done, r->seen);
		len = MIN(PREFILL_CHUNK, end - at);
		pthread_mutex_unlock(&r->lock);
		ret = guest_mem__populate(r->mem, at, len);
		pthread_mutex_lock(&r->lock);
		if (ret) {
			pr_debug("receive: allocating guest RAM ahead stopped: %s", strerror(-ret));
			break;
		}
		r->done = at + len;
		r->allocated += len;
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

void ram_receiver__start(struct ram_receiver *r, struct guest_mem *mem)
{
	memset(r, 0, sizeof(*r));
	r->mem = mem;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	r->running = !pthread_create(&r->thread, NULL, prefill_main, r);
	if (r->running)
		pthread_setname_np(r->thread, "ram-prefill");
}

void ram_receiver__stop(struct ram_receiver *r)
{
	if (!r->running)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->thread, NULL);
	r->running = false;
	pr_debug("receive: %llu MiB of guest RAM allocated ahead of the records, %llu MiB of it "
		 "never sent",
		 (unsigned long long)(r->allocated >> 20), (unsigned long long)(r->wasted >> 20));
}

/* A run at memfd [off, off + len) came: the helper follows; a gap it filled is waste. */
static void received(struct ram_receiver *r, uint64_t off, uint64_t len)
{
	if (!r->running)
		return;
	pthread_mutex_lock(&r->lock);
	if (off > r->seen && r->done > r->seen)
		r->wasted += MIN(off, r->done) - r->seen;
	if (r->wasted >= PREFILL_WASTE_MAX)
		r->stop = true;
	if (off + len > r->seen) {
		r->seen = off + len;
		pthread_cond_signal(&r->cond);
	}
	pthread_mutex_unlock(&r->lock);
}

/*
 * Not exempt from marking the pages dirty (guest_mem__receive does) although no vCPU
 * runs here yet: the paged VERIFY (ram_digest.h) rehashes at each ROUND the pages
 * marked since the last.
 */
int ram_receiver__fill(void *opaque, uint64_t gpa, uint32_t npages, stream_part_fn part,
		       void *part_ctx)
{
	struct ram_receiver *r = opaque;
	uint64_t len = (uint64_t)npages * GUEST_PAGE_SIZE;
	int64_t off = guest_mem__gpa_to_offset(r->mem, gpa);

	if (off < 0 || !guest_mem__ptr(r->mem, gpa, len))
		return -EFAULT;
	received(r, (uint64_t)off, len);
	return part ? guest_mem__receive(r->mem, gpa, len, part, part_ctx) : 0;
}

int ram_receiver__apply(void *opaque, uint64_t gpa, uint32_t npages, uint32_t kind,
			const uint8_t *data)
{
	struct ram_receiver *r = opaque;

	return ram__apply_run(r->mem, gpa, npages, kind, data);
}
