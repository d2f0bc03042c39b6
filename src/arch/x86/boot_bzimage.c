// SPDX-License-Identifier: GPL-2.0
/*
 * Linux bzImage, entered through the 64-bit boot protocol
 * (Documentation/arch/x86/boot.rst): the protected-mode part goes at 1 MiB, the
 * setup header is copied into boot_params, and the vCPU starts in long mode at
 * load address + 0x200.
 */
#include <errno.h>
#include <string.h>

#include "godwit/boot.h"
#include "godwit/log.h"
#include "godwit/x86_layout.h"

/* Setup header fields, as offsets in the file and in boot_params alike. */
#define HDR_START	     0x1f1
#define HDR_SETUP_SECTS	     0x1f1
#define HDR_JUMP	     0x200
#define HDR_VERSION	     0x206
#define HDR_LOADFLAGS	     0x211
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE	     0x234
#define HDR_XLOADFLAGS	     0x236
#define HDR_PREF_ADDRESS     0x258
#define HDR_INIT_SIZE	     0x260
/* Fields up to init_size are needed; a 2.12 header always reaches that far. */
#define HDR_MIN_END 0x264
/* boot_params has room for the header up to 0x290 (then edd_mbr_sig_buffer). */
#define HDR_MAX_END 0x290

#define MIN_PROTOCOL	      0x020c /* 2.12: xloadflags, hence XLF_KERNEL_64 */
#define LOADFLAGS_LOADED_HIGH 0x01
#define XLF_KERNEL_64	      0x0001
#define ENTRY64_OFFSET	      0x200
#define MAX_KERNEL_ALIGNMENT  (1ULL * GiB)

static uint16_t le16(const uint8_t *p)
{
	return p[0] | p[1] << 8;
}

static uint32_t le32(const uint8_t *p)
{
	return le16(p) | (uint32_t)le16(p + 2) << 16;
}

static uint64_t le64(const uint8_t *p)
{
	return le32(p) | (uint64_t)le32(p + 4) << 32;
}

static int check_header(const struct boot_file *f, const uint8_t *hdr, uint64_t *hdr_end)
{
	unsigned int version = le16(hdr + HDR_VERSION);

	if (version < MIN_PROTOCOL) {
		pr_err("%s: bzImage boot protocol %u.%02u is too old, need 2.12 or later", f->path,
		       version >> 8, version & 0xff);
		return -ENOEXEC;
	}
	if (!(hdr[HDR_LOADFLAGS] & LOADFLAGS_LOADED_HIGH)) {
		pr_err("%s: zImage (loaded low) is not supported, need a bzImage", f->path);
		return -ENOEXEC;
	}
	if (!(le16(hdr + HDR_XLOADFLAGS) & XLF_KERNEL_64)) {
		pr_err("%s: bzImage has no 64-bit entry point (XLF_KERNEL_64)", f->path);
		return -ENOEXEC;
	}
	/* The header ends where the short jump at 0x200 lands: 0x202 + its offset. */
	*hdr_end = HDR_JUMP + 2 + hdr[HDR_JUMP + 1];
	if (*hdr_end < HDR_MIN_END) {
		pr_err("%s: bzImage setup header too short (ends at 0x%llx)", f->path,
		       (unsigned long long)*hdr_end);
		return -ENOEXEC;
	}
	*hdr_end = MIN(*hdr_end, HDR_MAX_END);
	return 0;
}

/*
 * Where the kernel runs after decompressing itself: pref_address, or for a
 * relocatable kernel the load address rounded up to kernel_alignment if that is
 * higher; it then needs init_size bytes from there.
 */
static int kernel_footprint(const struct boot_file *f, const uint8_t *hdr, uint64_t pm_size,
			    uint64_t *end)
{
	uint64_t start = KERNEL_LOAD_ADDR, align = le32(hdr + HDR_KERNEL_ALIGNMENT);
	uint64_t pref = le64(hdr + HDR_PREF_ADDRESS);

	if (hdr[HDR_RELOCATABLE]) {
		if (align == 0 || (align & (align - 1)) || align > MAX_KERNEL_ALIGNMENT) {
			pr_err("%s: bad kernel_alignment 0x%llx", f->path,
			       (unsigned long long)align);
			return -ENOEXEC;
		}
		start = ALIGN_UP(start, align);
	}
	if (pref > MEM_HOLE_START) {
		pr_err("%s: pref_address 0x%llx is not in low RAM", f->path,
		       (unsigned long long)pref);
		return -E2BIG;
	}
	start = MAX(start, pref);
	*end = MAX(KERNEL_LOAD_ADDR + pm_size, start + le32(hdr + HDR_INIT_SIZE));
	return 0;
}

int boot__load_bzimage(struct guest_mem *mem, const struct boot_file *f, uint8_t *zero_page,
		       struct boot_setup *out)
{
	uint8_t hdr[HDR_MAX_END] = {0};
	uint64_t hdr_end, setup_size, pm_size, end;
	unsigned int setup_sects;
	int ret;

	ret = boot__file_read(f, 0, hdr, MIN((uint64_t)sizeof(hdr), f->size));
	if (ret)
		return ret;
	ret = check_header(f, hdr, &hdr_end);
	if (ret)
		return ret;
	if (hdr_end > f->size) {
		pr_err("%s: truncated bzImage setup header", f->path);
		return -ENOEXEC;
	}
	/* setup_sects == 0 means 4, for compatibility with ancient images. */
	setup_sects = hdr[HDR_SETUP_SECTS] ? hdr[HDR_SETUP_SECTS] : 4;
	setup_size = (uint64_t)(setup_sects + 1) * 512;
	if (setup_size >= f->size) {
		pr_err("%s: truncated bzImage: no protected-mode code after %llu setup bytes",
		       f->path, (unsigned long long)setup_size);
		return -ENOEXEC;
	}
	pm_size = f->size - setup_size;
	ret = kernel_footprint(f, hdr, pm_size, &end);
	if (ret)
		return ret;
	ret = boot__check_kernel_range(mem, f->path, KERNEL_LOAD_ADDR, end - KERNEL_LOAD_ADDR);
	if (ret)
		return ret;
	ret = boot__file_to_guest(mem, f, setup_size, pm_size, KERNEL_LOAD_ADDR);
	if (ret)
		return ret;
	memcpy(zero_page + HDR_START, hdr + HDR_START, hdr_end - HDR_START);
	out->format = BOOT_FORMAT_BZIMAGE;
	out->mode = BOOT_CPU_LONG64;
	out->is_linux = true;
	out->entry = KERNEL_LOAD_ADDR + ENTRY64_OFFSET;
	out->kernel_start = KERNEL_LOAD_ADDR;
	out->kernel_end = end;
	return 0;
}
