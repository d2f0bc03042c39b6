// SPDX-License-Identifier: GPL-2.0
/*
 * The virtqueue walker on arbitrary rings. Input: 4 control bytes (queue size
 * exponent, feature flags, starting index), then bytes copied to the start of
 * guest RAM, where the descriptor table, the avail ring and the used ring live
 * (so every address in the descriptors is fuzzed; for big queues the rings
 * overlap, as a hostile driver may make them). Chains are popped until the
 * ring is empty or broken; each chain is checked to lie in RAM, copied out and
 * filled in, and pushed back. Nothing may crash, and no chain may describe
 * memory outside RAM.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/memory.h"
#include "godwit/virtio.h"

#define RAM	  (2 * MiB)
#define DESC_GPA  0x0ULL
#define AVAIL_GPA 0x100ULL
#define USED_GPA  0x200ULL
#define MAX_INPUT 0x8000ULL
#define COPY_MAX  4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ctx {
	struct guest_mem mem;
	struct virtq vq;
	struct virtq_chain chain;
	uint8_t buf[COPY_MAX];
	struct iovec iov[VIRTQ_MAX_SIZE];
};

static struct ctx *get_ctx(void)
{
	static struct ctx *c;

	if (!c) {
		c = calloc(1, sizeof(*c));
		if (!c || guest_mem__init(&c->mem, RAM))
			abort();
	}
	return c;
}

static void check_chain(struct ctx *c)
{
	const struct virtq_chain *ch = &c->chain;
	uint64_t rd = 0, wr = 0;
	unsigned int i;

	if (ch->nr_segs > c->vq.num || ch->nr_readable > ch->nr_segs || ch->head >= c->vq.num)
		abort();
	for (i = 0; i < ch->nr_segs; i++) {
		const struct virtq_seg *s = &ch->segs[i];

		if (!guest_mem__ptr(&c->mem, s->gpa, s->len) || s->writable != (i >= ch->nr_readable))
			abort();
		if (s->writable)
			wr += s->len;
		else
			rd += s->len;
	}
	if (rd != ch->readable_len || wr != ch->writable_len)
		abort();
}

static void use_chain(struct ctx *c)
{
	const struct virtq_chain *ch = &c->chain;
	size_t n;

	n = (size_t)(ch->readable_len < COPY_MAX ? ch->readable_len : COPY_MAX);
	if (virtq_chain__read(ch, &c->mem, 0, c->buf, n))
		abort();
	n = (size_t)(ch->writable_len < COPY_MAX ? ch->writable_len : COPY_MAX);
	if (virtq_chain__write(ch, &c->mem, 0, c->buf, n))
		abort();
	(void)virtq_chain__iov(ch, &c->mem, false, 0, ch->readable_len, c->iov, VIRTQ_MAX_SIZE);
	(void)virtq_chain__iov(ch, &c->mem, true, 1, ch->writable_len, c->iov, 3);
	if (virtq__push(&c->vq, ch->head, (uint32_t)n))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctx *c = get_ctx();
	uint16_t num;
	unsigned int i;

	if (size < 4)
		return 0;
	memset(c->mem.base, 0, RAM);
	memcpy(c->mem.base, data + 4, size - 4 < MAX_INPUT ? size - 4 : MAX_INPUT);
	num = (uint16_t)(1u << (data[0] % 11)); /* 1..1024 */
	memset(&c->vq, 0, sizeof(c->vq));
	if (virtq__setup(&c->vq, &c->mem, num, DESC_GPA, AVAIL_GPA, USED_GPA))
		return 0;
	c->vq.indirect = data[1] & 1;
	c->vq.event_idx = data[1] & 2;
	c->vq.last_avail_idx = (uint16_t)(data[2] | data[3] << 8);
	c->vq.used_idx = c->vq.last_avail_idx;
	for (i = 0; i < 2u * num + 2; i++) {
		if (virtq__pop(&c->vq, &c->chain) <= 0)
			break;
		check_chain(c);
		use_chain(c);
		(void)virtq__should_notify(&c->vq);
	}
	virtq__disable_notify(&c->vq);
	(void)virtq__enable_notify(&c->vq);
	return 0;
}
