// SPDX-License-Identifier: GPL-2.0
/*
 * x86 kernel loader: format detection, command line, initrd, memory map, and the
 * structures handed to the kernel (PVH hvm_start_info or Linux boot_params).
 * The kernel and initrd files are untrusted input: every offset and length read
 * from them is checked before use.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "godwit/boot.h"
#include "godwit/log.h"
#include "godwit/x86_layout.h"

/* struct hvm_start_info (Xen public arch-x86/hvm/start_info.h), version 1. */
#define HVM_START_MAGIC	  0x336ec578U
#define HVM_START_VERSION 1
#define HVM_SI_SIZE	  56
#define HVM_SI_MAGIC	  0
#define HVM_SI_VERSION	  4
#define HVM_SI_NR_MODULES 12
#define HVM_SI_MODLIST	  16
#define HVM_SI_CMDLINE	  24
#define HVM_SI_RSDP	  32
#define HVM_SI_MEMMAP	  40
#define HVM_SI_MEMMAP_NR  48
#define HVM_MEMMAP_ENTRY  24 /* addr, size, type, reserved */
#define HVM_MODLIST_ENTRY 32 /* paddr, size, cmdline_paddr, reserved */

/* struct boot_params offsets (Documentation/arch/x86/zero-page.rst, boot.rst). */
#define BP_ACPI_RSDP_ADDR    0x070
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE  0x0c4
#define BP_EXT_CMD_LINE_PTR  0x0c8
#define BP_E820_ENTRIES	     0x1e8
#define BP_BOOT_FLAG	     0x1fe
#define BP_HEADER	     0x202
#define BP_VERSION	     0x206
#define BP_TYPE_OF_LOADER    0x210
#define BP_LOADFLAGS	     0x211
#define BP_RAMDISK_IMAGE     0x218
#define BP_RAMDISK_SIZE	     0x21c
#define BP_CMD_LINE_PTR	     0x228
#define BP_INITRD_ADDR_MAX   0x22c
#define BP_KERNEL_ALIGNMENT  0x230
#define BP_CMDLINE_SIZE	     0x238
#define BP_E820_TABLE	     0x2d0
#define BP_E820_MAX	     128
#define BP_E820_ENTRY	     20
#define BP_SIZE		     4096

#define LOADER_TYPE_UNDEFINED 0xff
#define LOADFLAGS_LOADED_HIGH 0x01

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = v & 0xff;
	p[1] = v >> 8;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	put_le16(p, v & 0xffff);
	put_le16(p + 2, v >> 16);
}

static void put_le64(uint8_t *p, uint64_t v)
{
	put_le32(p, v & 0xffffffff);
	put_le32(p + 4, v >> 32);
}

static uint32_t get_le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- Files ---- */

static int file_open(struct boot_file *f, const char *path, const char *what)
{
	struct stat st;
	int ret;

	f->path = path;
	f->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0) {
		ret = -errno;
		pr_err("cannot open %s %s: %s", what, path, strerror(errno));
		return ret;
	}
	if (fstat(f->fd, &st) < 0) {
		ret = -errno;
		pr_err("cannot stat %s %s: %s", what, path, strerror(errno));
		goto err_close;
	}
	if (!S_ISREG(st.st_mode)) {
		pr_err("%s %s is not a regular file", what, path);
		ret = -EINVAL;
		goto err_close;
	}
	f->size = st.st_size;
	return 0;

err_close:
	close(f->fd);
	f->fd = -1;
	return ret;
}

static void file_close(struct boot_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

int boot__file_read(const struct boot_file *f, uint64_t off, void *buf, uint64_t len)
{
	uint8_t *p = buf;

	if (off > f->size || len > f->size - off) {
		pr_err("%s: truncated (needs %llu bytes at offset %llu, file has %llu)", f->path,
		       (unsigned long long)len, (unsigned long long)off,
		       (unsigned long long)f->size);
		return -ENOEXEC;
	}
	while (len) {
		ssize_t n = pread(f->fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			pr_err("%s: read error at offset %llu: %s", f->path,
			       (unsigned long long)off, n < 0 ? strerror(errno) : "file shrank");
			return -EIO;
		}
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* Bounce buffer size: big enough to amortise syscalls, small enough for the stack-less heap. */
#define COPY_CHUNK (1ULL * MiB)

int boot__file_to_guest(struct guest_mem *mem, const struct boot_file *f, uint64_t off,
			uint64_t len, uint64_t gpa)
{
	uint8_t *buf;
	int ret = 0;

	buf = malloc(MIN(len, COPY_CHUNK) + 1);
	if (!buf)
		return -ENOMEM;
	while (len) {
		uint64_t n = MIN(len, COPY_CHUNK);

		ret = boot__file_read(f, off, buf, n);
		if (ret)
			break;
		ret = guest_mem__write(mem, gpa, buf, n);
		if (ret) {
			pr_err("%s: cannot write guest RAM at 0x%llx", f->path,
			       (unsigned long long)gpa);
			break;
		}
		off += n;
		gpa += n;
		len -= n;
	}
	free(buf);
	return ret;
}

int boot__zero_guest(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	static const uint8_t zeros[4096];
	int ret;

	while (len) {
		uint64_t n = MIN(len, sizeof(zeros));

		ret = guest_mem__write(mem, gpa, zeros, n);
		if (ret)
			return ret;
		gpa += n;
		len -= n;
	}
	return 0;
}

/* ---- Memory map ---- */

uint64_t boot__low_ram_end(const struct guest_mem *mem)
{
	unsigned int i;

	for (i = 0; i < mem->nr_regions && i < MEM_MAX_REGIONS; i++)
		if (mem->regions[i].gpa == 0)
			return MIN(mem->regions[i].size, MEM_HOLE_START);
	return 0;
}

static int e820_add(struct e820_entry *out, unsigned int max, unsigned int *n, uint64_t addr,
		    uint64_t size, uint32_t type)
{
	if (*n >= max)
		return -E2BIG;
	out[*n].addr = addr;
	out[*n].size = size;
	out[*n].type = type;
	(*n)++;
	return 0;
}

int boot__e820(const struct guest_mem *mem, struct e820_entry *out, unsigned int max)
{
	uint64_t low_end = boot__low_ram_end(mem);
	unsigned int n = 0, i;
	int ret;

	/* The kernel goes at 1 MiB: below 2 MiB there is no room for any. */
	if (low_end < 2 * MiB)
		return -EINVAL;
	ret = e820_add(out, max, &n, 0, EBDA_START, E820_TYPE_RAM);
	if (!ret)
		ret = e820_add(out, max, &n, EBDA_START, HIGH_MEM_START - EBDA_START,
			       E820_TYPE_RESERVED);
	if (!ret)
		ret =
		    e820_add(out, max, &n, HIGH_MEM_START, low_end - HIGH_MEM_START, E820_TYPE_RAM);
	for (i = 0; !ret && i < mem->nr_regions && i < MEM_MAX_REGIONS; i++) {
		const struct mem_region *r = &mem->regions[i];

		if (r->gpa != 0 && r->size)
			ret = e820_add(out, max, &n, r->gpa, r->size, E820_TYPE_RAM);
	}
	return ret ? ret : (int)n;
}

/* ---- Placement checks ---- */

int boot__check_kernel_range(const struct guest_mem *mem, const char *path, uint64_t gpa,
			     uint64_t len)
{
	uint64_t low_end = boot__low_ram_end(mem);
	uint64_t end = gpa + len;

	if (end < gpa || end > low_end) {
		pr_err(
		    "%s: kernel does not fit in RAM: [0x%llx, 0x%llx) but low RAM ends at 0x%llx",
		    path, (unsigned long long)gpa, (unsigned long long)end,
		    (unsigned long long)low_end);
		return -E2BIG;
	}
	if (gpa < BOOT_STRUCT_END) {
		pr_err("%s: segment at 0x%llx overlaps the boot structures below 0x%llx", path,
		       (unsigned long long)gpa, (unsigned long long)BOOT_STRUCT_END);
		return -ENOEXEC;
	}
	if (gpa < HIGH_MEM_START && end > EBDA_START) {
		pr_err("%s: segment [0x%llx, 0x%llx) overlaps the reserved area 0x%llx-0x%llx",
		       path, (unsigned long long)gpa, (unsigned long long)end,
		       (unsigned long long)EBDA_START, (unsigned long long)HIGH_MEM_START);
		return -ENOEXEC;
	}
	return 0;
}

/* ---- Command line and initrd ---- */

static int write_cmdline(struct guest_mem *mem, const char *cmdline, uint64_t limit)
{
	size_t len = strlen(cmdline);

	if (len > limit) {
		pr_err("kernel command line too long: %zu bytes, at most %llu", len,
		       (unsigned long long)limit);
		return -EINVAL;
	}
	return guest_mem__write(mem, BOOT_CMDLINE_ADDR, cmdline, len + 1);
}

/*
 * The initrd goes page-aligned at the top of low RAM (or below the kernel's
 * initrd_addr_max), as far as possible from the kernel, which decompresses
 * upwards from its load address.
 */
static int load_initrd(struct guest_mem *mem, const char *path, uint64_t top,
		       struct boot_setup *out)
{
	struct boot_file f;
	uint64_t gpa;
	int ret;

	ret = file_open(&f, path, "initrd");
	if (ret)
		return ret;
	top &= ~(GUEST_PAGE_SIZE - 1);
	if (f.size > top || ((top - f.size) & ~(GUEST_PAGE_SIZE - 1)) < out->kernel_end) {
		pr_err("initrd %s (%llu bytes) does not fit in RAM between the kernel end 0x%llx "
		       "and 0x%llx",
		       path, (unsigned long long)f.size, (unsigned long long)out->kernel_end,
		       (unsigned long long)top);
		ret = -E2BIG;
		goto out_close;
	}
	gpa = (top - f.size) & ~(GUEST_PAGE_SIZE - 1);
	ret = boot__file_to_guest(mem, &f, 0, f.size, gpa);
	if (ret)
		goto out_close;
	out->initrd_gpa = gpa;
	out->initrd_size = f.size;
out_close:
	file_close(&f);
	return ret;
}

/* ---- PVH ---- */

static int write_pvh_info(struct guest_mem *mem, const struct boot_params_in *in,
			  const struct boot_setup *b)
{
	struct e820_entry e820[PVH_MEMMAP_MAX];
	uint8_t si[HVM_SI_SIZE] = {0};
	uint8_t map[PVH_MEMMAP_MAX * HVM_MEMMAP_ENTRY] = {0};
	uint8_t mod[HVM_MODLIST_ENTRY] = {0};
	int n, i, ret;

	n = boot__e820(mem, e820, PVH_MEMMAP_MAX);
	if (n < 0)
		return n;
	for (i = 0; i < n; i++) {
		put_le64(map + i * HVM_MEMMAP_ENTRY, e820[i].addr);
		put_le64(map + i * HVM_MEMMAP_ENTRY + 8, e820[i].size);
		put_le32(map + i * HVM_MEMMAP_ENTRY + 16, e820[i].type);
	}
	put_le32(si + HVM_SI_MAGIC, HVM_START_MAGIC);
	put_le32(si + HVM_SI_VERSION, HVM_START_VERSION);
	put_le64(si + HVM_SI_CMDLINE, BOOT_CMDLINE_ADDR);
	put_le64(si + HVM_SI_RSDP, in->rsdp_gpa);
	put_le64(si + HVM_SI_MEMMAP, PVH_MEMMAP_ADDR);
	put_le32(si + HVM_SI_MEMMAP_NR, n);
	if (b->initrd_size) {
		/* The initrd is module 0, as Linux's PVH entry expects. */
		put_le64(mod, b->initrd_gpa);
		put_le64(mod + 8, b->initrd_size);
		put_le32(si + HVM_SI_NR_MODULES, 1);
		put_le64(si + HVM_SI_MODLIST, PVH_MODLIST_ADDR);
		ret = guest_mem__write(mem, PVH_MODLIST_ADDR, mod, sizeof(mod));
		if (ret)
			return ret;
	}
	ret = guest_mem__write(mem, PVH_MEMMAP_ADDR, map, (size_t)n * HVM_MEMMAP_ENTRY);
	if (ret)
		return ret;
	return guest_mem__write(mem, PVH_START_INFO_ADDR, si, sizeof(si));
}

/* ---- Linux boot_params ---- */

/* vmlinux has no setup header: make the fields a 64-bit entry reads. */
static void make_setup_header(uint8_t *zp)
{
	put_le16(zp + BP_BOOT_FLAG, 0xaa55);
	memcpy(zp + BP_HEADER, "HdrS", 4);
	put_le16(zp + BP_VERSION, 0x020f);
	zp[BP_LOADFLAGS] = LOADFLAGS_LOADED_HIGH;
	put_le32(zp + BP_KERNEL_ALIGNMENT, 2 * MiB);
	put_le32(zp + BP_INITRD_ADDR_MAX, MEM_HOLE_START - 1);
	put_le32(zp + BP_CMDLINE_SIZE, BOOT_CMDLINE_MAX - 1);
}

static int write_boot_params(struct guest_mem *mem, const struct boot_params_in *in,
			     const struct boot_setup *b, uint8_t *zp)
{
	struct e820_entry e820[BP_E820_MAX];
	int n, i;

	n = boot__e820(mem, e820, BP_E820_MAX);
	if (n < 0)
		return n;
	zp[BP_TYPE_OF_LOADER] = LOADER_TYPE_UNDEFINED;
	put_le32(zp + BP_CMD_LINE_PTR, (uint32_t)BOOT_CMDLINE_ADDR);
	put_le32(zp + BP_EXT_CMD_LINE_PTR, 0);
	put_le32(zp + BP_RAMDISK_IMAGE, (uint32_t)b->initrd_gpa);
	put_le32(zp + BP_RAMDISK_SIZE, (uint32_t)b->initrd_size);
	put_le32(zp + BP_EXT_RAMDISK_IMAGE, b->initrd_gpa >> 32);
	put_le32(zp + BP_EXT_RAMDISK_SIZE, b->initrd_size >> 32);
	put_le64(zp + BP_ACPI_RSDP_ADDR, in->rsdp_gpa);
	zp[BP_E820_ENTRIES] = n;
	for (i = 0; i < n; i++) {
		uint8_t *e = zp + BP_E820_TABLE + i * BP_E820_ENTRY;

		put_le64(e, e820[i].addr);
		put_le64(e + 8, e820[i].size);
		put_le32(e + 16, e820[i].type);
	}
	return guest_mem__write(mem, BOOT_PARAMS_ADDR, zp, BP_SIZE);
}

/* ---- Entry ---- */

static int load_image(struct guest_mem *mem, const struct boot_file *f, uint8_t *zp,
		      struct boot_setup *out)
{
	uint8_t magic[BP_HEADER + 4];

	if (f->size >= 4) {
		if (boot__file_read(f, 0, magic, 4))
			return -EIO;
		if (!memcmp(magic, "\177ELF", 4))
			return boot__load_elf(mem, f, out);
	}
	if (f->size >= sizeof(magic)) {
		if (boot__file_read(f, 0, magic, sizeof(magic)))
			return -EIO;
		if (!memcmp(magic + BP_HEADER, "HdrS", 4))
			return boot__load_bzimage(mem, f, zp, out);
	}
	pr_err("%s: not an ELF with a PVH note, a bzImage or a vmlinux", f->path);
	return -ENOEXEC;
}

/* "PREFIX CMDLINE": host-imposed options first, so a " -- " in the user's part stays last. */
static int write_prefixed_cmdline(struct guest_mem *mem, const char *prefix, const char *cmdline,
				  uint64_t limit)
{
	char *buf;
	int ret;

	if (asprintf(&buf, "%s%s%s", prefix, *cmdline ? " " : "", cmdline) < 0)
		return -ENOMEM;
	ret = write_cmdline(mem, buf, limit);
	free(buf);
	return ret;
}

static int check_input(struct guest_mem *mem, const struct boot_params_in *in)
{
	if (!in->kernel_path) {
		pr_err("no kernel given");
		return -EINVAL;
	}
	if (in->cmdline && strlen(in->cmdline) > BOOT_CMDLINE_MAX - 1) {
		pr_err("kernel command line too long: %zu bytes, at most %llu", strlen(in->cmdline),
		       BOOT_CMDLINE_MAX - 1);
		return -EINVAL;
	}
	if (boot__low_ram_end(mem) < 2 * MiB) {
		pr_err("guest RAM too small to boot: needs at least 2 MiB at address 0");
		return -E2BIG;
	}
	return 0;
}

static int finish_boot(struct guest_mem *mem, const struct boot_params_in *in,
		       struct boot_setup *out, uint8_t *zp)
{
	const char *cmdline = in->cmdline ? in->cmdline : "";
	uint64_t limit = BOOT_CMDLINE_MAX - 1, initrd_top = boot__low_ram_end(mem);
	int ret;

	if (out->format == BOOT_FORMAT_BZIMAGE) {
		/* The kernel says how long a command line and how high an initrd it takes. */
		limit = MIN(limit, get_le32(zp + BP_CMDLINE_SIZE));
		initrd_top = MIN(initrd_top, (uint64_t)get_le32(zp + BP_INITRD_ADDR_MAX) + 1);
	} else if (out->format == BOOT_FORMAT_VMLINUX) {
		make_setup_header(zp);
	}
	if (out->is_linux && in->linux_cmdline_prefix)
		ret = write_prefixed_cmdline(mem, in->linux_cmdline_prefix, cmdline, limit);
	else
		ret = write_cmdline(mem, cmdline, limit);
	if (ret)
		return ret;
	out->cmdline_gpa = BOOT_CMDLINE_ADDR;
	if (in->initrd_path) {
		ret = load_initrd(mem, in->initrd_path, initrd_top, out);
		if (ret)
			return ret;
	}
	ret = boot__write_gdt(mem);
	if (!ret)
		ret = boot__write_page_tables(mem);
	if (ret)
		return ret;
	if (out->format == BOOT_FORMAT_PVH) {
		out->info_gpa = PVH_START_INFO_ADDR;
		return write_pvh_info(mem, in, out);
	}
	out->info_gpa = BOOT_PARAMS_ADDR;
	return write_boot_params(mem, in, out, zp);
}

int boot__load_kernel(struct guest_mem *mem, const struct boot_params_in *in,
		      struct boot_setup *out)
{
	struct boot_file f;
	uint8_t *zp;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = check_input(mem, in);
	if (ret)
		return ret;
	zp = calloc(1, BP_SIZE);
	if (!zp)
		return -ENOMEM;
	ret = file_open(&f, in->kernel_path, "kernel");
	if (ret)
		goto out_free;
	ret = load_image(mem, &f, zp, out);
	file_close(&f);
	if (ret)
		goto out_free;
	ret = finish_boot(mem, in, out, zp);
	if (ret)
		goto out_free;
	pr_debug("loaded %s: format %d, entry 0x%llx, kernel 0x%llx-0x%llx, initrd 0x%llx+%llu",
		 in->kernel_path, out->format, (unsigned long long)out->entry,
		 (unsigned long long)out->kernel_start, (unsigned long long)out->kernel_end,
		 (unsigned long long)out->initrd_gpa, (unsigned long long)out->initrd_size);
out_free:
	free(zp);
	return ret;
}
