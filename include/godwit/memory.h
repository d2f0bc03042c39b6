/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_MEMORY_H
#define GODWIT_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "godwit/util.h"

#define GUEST_PAGE_SIZE 4096ULL
#define GUEST_PAGE_SHIFT 12

/*
 * Guest RAM: one memfd, mapped shared, split into at most two regions around the
 * 32-bit MMIO hole. Shared memfd mapping is what lets migration read RAM while the
 * vCPUs run and find never-touched pages with SEEK_DATA.
 */
#define MEM_HOLE_START (3ULL * GiB) /* 3 GiB .. 4 GiB: LAPIC, IOAPIC, virtio-mmio */
#define MEM_HOLE_END   (4ULL * GiB)
#define MEM_MAX_REGIONS 2

struct mem_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t fd_offset; /* offset of this region in the memfd */
	uint8_t *hva;
};

struct guest_mem {
	int memfd;
	uint64_t size; /* total RAM bytes */
	uint8_t *base; /* mapping of the whole memfd */
	unsigned int nr_regions;
	struct mem_region regions[MEM_MAX_REGIONS];
	/*
	 * Pages written by the VMM itself (device emulation, boot loading): KVM's
	 * dirty log never sees these. One bit per page of the memfd, set atomically.
	 */
	unsigned long *vmm_dirty;
	uint64_t nr_pages;
};

/* Creates the memfd and maps it; size must be a multiple of 2 MiB. */
int __must_check guest_mem__init(struct guest_mem *mem, uint64_t size);
void guest_mem__exit(struct guest_mem *mem);

/*
 * Translates [gpa, gpa+len) to a host pointer if the whole range is RAM inside
 * one region, else NULL. Never use the result to write: use guest_mem__write().
 */
void *guest_mem__ptr(struct guest_mem *mem, uint64_t gpa, uint64_t len);

/*
 * The one way userspace writes guest RAM: checks the range and marks every page
 * touched in vmm_dirty. 0 or -EFAULT.
 */
int __must_check guest_mem__write(struct guest_mem *mem, uint64_t gpa, const void *src,
				  uint64_t len);
/*
 * The one way a reader fills guest RAM in place (the destination's RAM records, read
 * from the stream straight into the mapping): checks the range, lets read(ctx, dst,
 * len) fill it, and marks every page of it dirty whatever read returned (it may have
 * written part). 0, -EFAULT or read's return value.
 */
int __must_check guest_mem__receive(struct guest_mem *mem, uint64_t gpa, uint64_t len,
				    int (*read)(void *ctx, void *dst, size_t len), void *ctx);
/*
 * Allocates the pages of memfd [offset, offset + len) without changing what they read
 * (a hole reads as zeros, and so does the page allocated for it): no write, so nothing
 * to mark dirty. 0 or -errno.
 */
int __must_check guest_mem__populate(struct guest_mem *mem, uint64_t offset, uint64_t len);
int __must_check guest_mem__read(struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len);

/* Marks [gpa, gpa+len) dirty after writing through a pointer from guest_mem__ptr(). */
void guest_mem__mark_dirty(struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* Memfd offset of a guest physical address, or -1 if it is not RAM. */
int64_t guest_mem__gpa_to_offset(const struct guest_mem *mem, uint64_t gpa);
/* Guest physical address of a memfd offset, or UINT64_MAX past the end of RAM. */
uint64_t guest_mem__offset_to_gpa(const struct guest_mem *mem, uint64_t offset);

#endif
