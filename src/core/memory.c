// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "godwit/log.h"
#include "godwit/memory.h"

#define BITS_PER_LONG (8 * sizeof(unsigned long))

static void layout_regions(struct guest_mem *mem)
{
	uint64_t low = MIN(mem->size, MEM_HOLE_START);

	mem->nr_regions = 1;
	mem->regions[0] = (struct mem_region){
		.gpa = 0, .size = low, .fd_offset = 0, .hva = mem->base
	};
	if (mem->size > low) {
		mem->nr_regions = 2;
		mem->regions[1] = (struct mem_region){
			.gpa = MEM_HOLE_END,
			.size = mem->size - low,
			.fd_offset = low,
			.hva = mem->base + low,
		};
	}
}

int guest_mem__init(struct guest_mem *mem, uint64_t size)
{
	size_t bitmap_longs;
	int ret;

	memset(mem, 0, sizeof(*mem));
	mem->memfd = -1;
	if (size == 0 || size % (2 * MiB)) {
		pr_err("guest memory size %llu is not a non-zero multiple of 2 MiB",
		       (unsigned long long)size);
		return -EINVAL;
	}
	mem->memfd = memfd_create("godwit-ram", MFD_CLOEXEC);
	if (mem->memfd < 0) {
		ret = -errno;
		pr_err("memfd_create: %s", strerror(errno));
		return ret;
	}
	if (ftruncate(mem->memfd, (off_t)size) < 0) {
		ret = -errno;
		pr_err("cannot size guest RAM to %llu bytes: %s", (unsigned long long)size,
		       strerror(errno));
		goto err_close;
	}
	/* MAP_NORESERVE: never-touched pages stay holes in the memfd (migration skips them). */
	mem->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			 mem->memfd, 0);
	if (mem->base == MAP_FAILED) {
		ret = -errno;
		pr_err("cannot map %llu bytes of guest RAM: %s", (unsigned long long)size,
		       strerror(errno));
		mem->base = NULL;
		goto err_close;
	}
	mem->size = size;
	mem->nr_pages = size / GUEST_PAGE_SIZE;
	bitmap_longs = (mem->nr_pages + BITS_PER_LONG - 1) / BITS_PER_LONG;
	mem->vmm_dirty = calloc(bitmap_longs, sizeof(unsigned long));
	if (!mem->vmm_dirty) {
		ret = -ENOMEM;
		goto err_unmap;
	}
	layout_regions(mem);
	return 0;

err_unmap:
	munmap(mem->base, size);
	mem->base = NULL;
err_close:
	close(mem->memfd);
	mem->memfd = -1;
	return ret;
}

void guest_mem__exit(struct guest_mem *mem)
{
	free(mem->vmm_dirty);
	mem->vmm_dirty = NULL;
	if (mem->base)
		munmap(mem->base, mem->size);
	mem->base = NULL;
	if (mem->memfd >= 0)
		close(mem->memfd);
	mem->memfd = -1;
}

static const struct mem_region *find_region(const struct guest_mem *mem, uint64_t gpa,
					    uint64_t len)
{
	unsigned int i;

	for (i = 0; i < mem->nr_regions; i++) {
		const struct mem_region *r = &mem->regions[i];

		/* Written so that no sum can overflow, whatever gpa and len are. */
		if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
			return r;
	}
	return NULL;
}

void *guest_mem__ptr(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	const struct mem_region *r = find_region(mem, gpa, len);

	return r ? r->hva + (gpa - r->gpa) : NULL;
}

int64_t guest_mem__gpa_to_offset(const struct guest_mem *mem, uint64_t gpa)
{
	const struct mem_region *r = find_region(mem, gpa, 1);

	return r ? (int64_t)(r->fd_offset + (gpa - r->gpa)) : -1;
}

uint64_t guest_mem__offset_to_gpa(const struct guest_mem *mem, uint64_t offset)
{
	unsigned int i;

	for (i = 0; i < mem->nr_regions; i++) {
		const struct mem_region *r = &mem->regions[i];

		if (offset >= r->fd_offset && offset - r->fd_offset < r->size)
			return r->gpa + (offset - r->fd_offset);
	}
	return UINT64_MAX;
}

void guest_mem__mark_dirty(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	int64_t off = guest_mem__gpa_to_offset(mem, gpa);
	uint64_t first, last, pfn;

	if (off < 0 || len == 0)
		return;
	first = (uint64_t)off >> GUEST_PAGE_SHIFT;
	last = ((uint64_t)off + len - 1) >> GUEST_PAGE_SHIFT;
	for (pfn = first; pfn <= last && pfn < mem->nr_pages; pfn++)
		__atomic_fetch_or(&mem->vmm_dirty[pfn / BITS_PER_LONG], 1UL << (pfn % BITS_PER_LONG),
				  __ATOMIC_RELAXED);
}

/*
 * A large write goes through the memfd, not the mapping: for pages not yet
 * allocated (a destination filling its RAM) the kernel then allocates and fills
 * them without a page fault and a zeroing each (about half the time of a copy).
 * Whatever pwrite does not take is copied.
 */
#define WRITE_VIA_FD_MIN (64 * 1024)

static uint64_t write_via_fd(struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len)
{
	int64_t off = guest_mem__gpa_to_offset(mem, gpa);
	uint64_t done = 0;
	ssize_t n;

	if (off < 0 || len < WRITE_VIA_FD_MIN || mem->memfd < 0)
		return 0;
	while (done < len) {
		n = pwrite(mem->memfd, (const uint8_t *)src + done, len - done, off + (off_t)done);
		if (n <= 0)
			break;
		done += (uint64_t)n;
	}
	return done;
}

int guest_mem__write(struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len)
{
	uint8_t *dst = guest_mem__ptr(mem, gpa, len);
	uint64_t done;

	if (!dst)
		return -EFAULT;
	done = write_via_fd(mem, gpa, src, len);
	memcpy(dst + done, (const uint8_t *)src + done, len - done);
	guest_mem__mark_dirty(mem, gpa, len);
	return 0;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

int guest_mem__populate(struct guest_mem *mem, uint64_t offset, uint64_t len)
{
	if (offset > mem->size || len > mem->size - offset)
		return -EINVAL;
	if (!len || !madvise(mem->base + offset, len, MADV_POPULATE_WRITE))
		return 0;
	if (mem->memfd >= 0 &&
	    !fallocate(mem->memfd, FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len))
		return 0;
	return -errno;
}

int guest_mem__receive(struct guest_mem *mem, uint64_t gpa, uint64_t len,
		       int (*read)(void *ctx, void *dst, size_t len), void *ctx)
{
	uint8_t *dst = guest_mem__ptr(mem, gpa, len);
	int ret;

	if (!dst || !len)
		return -EFAULT;
	ret = read(ctx, dst, len);
	guest_mem__mark_dirty(mem, gpa, len);
	return ret;
}

int guest_mem__read(struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len)
{
	const void *src = guest_mem__ptr(mem, gpa, len);

	if (!src)
		return -EFAULT;
	memcpy(dst, src, len);
	return 0;
}
