// SPDX-License-Identifier: GPL-2.0
/*
 * The source's side of migration without shared storage (include/godwit/disk_send.h):
 * a remote mirror per disk whose sink writes DISK records into the migration stream.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "godwit/disk_send.h"
#include "godwit/log.h"
#include "godwit/rate.h"
#include "godwit/virtio_blk.h"
#include "godwit/vm.h"

/* A sleep for --max-bandwidth is cut in slices this long, so that a cancel is seen. */
#define RATE_SLICE_NS (50 * 1000000ULL)

/* The mirror's sink: DATA records of at most STREAM_DISK_MAX_DATA, or one ZERO. */
static int put(void *arg, uint64_t off, uint64_t len, const void *data)
{
	struct disk_send *d = arg;
	const uint8_t *p = data;
	uint64_t n;
	int ret;

	if (!data)
		return stream__write_disk(d->w, d->disk, STREAM_DISK_ZERO, off, len, NULL);
	while (len) {
		n = MIN(len, (uint64_t)STREAM_DISK_MAX_DATA);
		ret = stream__write_disk(d->w, d->disk, STREAM_DISK_DATA, off, n, p);
		if (ret)
			return ret;
		d->bytes += n;
		off += n;
		p += n;
		len -= n;
	}
	return 0;
}

int disk_send__start(struct disk_sender *s, struct vm *vm, const struct migrate_params *p,
		     struct stream_writer *w, char *err, size_t errlen)
{
	unsigned int i;
	int ret;

	memset(s, 0, sizeof(*s));
	s->max_bandwidth = p->max_bandwidth;
	for (i = 0; i < p->nr_disk_to; i++) {
		struct disk_send *d = &s->d[s->n];

		d->b = devices__disk(vm, p->disk_to[i].disk);
		if (!d->b) {
			snprintf(err, errlen, "no disk %u", p->disk_to[i].disk);
			return -ENODEV;
		}
		d->disk = p->disk_to[i].disk;
		d->w = w;
		d->sink = (struct disk_mirror_sink){.put = put, .arg = d};
		ret = disk_mirror__create_remote(&d->m, &d->b->disk, &d->sink, DISK_SEND_QUEUE_MAX,
						 err, errlen);
		if (ret)
			return ret;
		d->created = true;
		s->n++;
	}
	for (i = 0; i < s->n; i++) {
		virtio_blk__set_mirror(s->d[i].b, &s->d[i].m);
		s->d[i].attached = true;
	}
	return 0;
}

int disk_send__drain(struct disk_sender *s, char *err, size_t errlen)
{
	unsigned int i;
	int ret;

	for (i = 0; i < s->n; i++) {
		ret = disk_mirror__drain(&s->d[i].m);
		if (!ret)
			ret = disk_mirror__error(&s->d[i].m);
		if (ret) {
			snprintf(err, errlen, "disk %u: cannot send the guest's writes: %s",
				 s->d[i].disk, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static uint64_t sent(const struct disk_sender *s)
{
	uint64_t n = 0;

	for (unsigned int i = 0; i < s->n; i++)
		n += s->d[i].bytes;
	return n;
}

/* Sleeps while the pass is ahead of --max-bandwidth; false if cancelled meanwhile. */
static bool keep_rate(struct disk_sender *s, uint64_t start_ns, const bool *cancel)
{
	uint64_t due, now;

	if (!s->max_bandwidth)
		return true;
	for (;;) {
		if (__atomic_load_n(cancel, __ATOMIC_RELAXED))
			return false;
		due = start_ns + rate__ns_for(sent(s), s->max_bandwidth);
		now = util__now_ns();
		if (due <= now)
			return true;
		nanosleep(&(struct timespec){.tv_nsec = (long)MIN(due - now, RATE_SLICE_NS)}, NULL);
	}
}

static int copy_one(struct disk_sender *s, struct disk_send *d, const bool *cancel,
		    void (*progress)(void *arg), void *arg, char *err, size_t errlen)
{
	uint64_t start_ns = util__now_ns();
	bool done = false;
	int ret;

	while (!done) {
		if (!keep_rate(s, start_ns, cancel) || __atomic_load_n(cancel, __ATOMIC_RELAXED))
			return -ECANCELED;
		ret = disk_send__drain(s, err, errlen);
		if (ret)
			return ret;
		ret = disk_mirror__copy_step(&d->m, &done, err, errlen);
		if (ret)
			return ret;
		if (progress)
			progress(arg);
	}
	ret = stream__write_disk(d->w, d->disk, STREAM_DISK_DONE, 0, d->m.size, NULL);
	if (ret)
		snprintf(err, errlen, "disk %u: cannot send its end: %s", d->disk, strerror(-ret));
	return ret;
}

int disk_send__copy(struct disk_sender *s, const bool *cancel, void (*progress)(void *arg),
		    void *arg, char *err, size_t errlen)
{
	uint64_t t0 = util__now_ns();
	unsigned int i;
	int ret;

	for (i = 0; i < s->n; i++) {
		ret = copy_one(s, &s->d[i], cancel, progress, arg, err, errlen);
		if (ret)
			return ret;
		pr_debug("disk %u: image sent (%llu MiB of data), its writes mirrored from here",
			 s->d[i].disk, (unsigned long long)(s->d[i].bytes >> 20));
	}
	if (s->n)
		pr_debug("disks: %llu MiB sent in %llu ms", (unsigned long long)(sent(s) >> 20),
			 (unsigned long long)((util__now_ns() - t0) / 1000000));
	return disk_send__drain(s, err, errlen);
}

int disk_send__digests(struct disk_sender *s, char *err, size_t errlen)
{
	uint64_t digest, t0;
	unsigned int i;
	int ret;

	for (i = 0; i < s->n; i++) {
		struct disk_send *d = &s->d[i];

		t0 = util__now_ns();
		ret = disk__digest(&d->b->disk, d->m.size, &digest);
		if (!ret)
			ret = stream__write_disk_digest(d->w, d->disk, d->m.size, digest);
		if (ret) {
			snprintf(err, errlen, "disk %u: cannot send its digest: %s", d->disk,
				 strerror(-ret));
			return ret;
		}
		pr_debug("verify: disk %u hashed in %llu us", d->disk,
			 (unsigned long long)((util__now_ns() - t0) / 1000));
	}
	return 0;
}

void disk_send__unbound(struct disk_sender *s)
{
	for (unsigned int i = 0; i < s->n; i++)
		disk_mirror__unbound(&s->d[i].m);
}

void disk_send__progress(struct disk_sender *s, uint64_t *size, uint64_t *copied, uint64_t *bytes)
{
	struct disk_mirror_progress p;

	*size = *copied = 0;
	for (unsigned int i = 0; i < s->n; i++) {
		disk_mirror__progress(&s->d[i].m, &p);
		*size += p.size;
		*copied += p.copied;
	}
	*bytes = sent(s);
}

void disk_send__stop(struct disk_sender *s)
{
	unsigned int i;

	for (i = 0; i < s->n; i++) {
		struct disk_send *d = &s->d[i];

		/* A request waiting for room in the queue goes on to complete first. */
		disk_mirror__close(&d->m);
		if (d->attached)
			virtio_blk__set_mirror(d->b, NULL);
		if (d->created)
			disk_mirror__destroy(&d->m);
		d->attached = d->created = false;
	}
	s->n = 0;
}
