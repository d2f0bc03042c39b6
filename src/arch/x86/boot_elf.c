// SPDX-License-Identifier: GPL-2.0
/*
 * ELF kernels: an ELF with a Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY), or an
 * uncompressed Linux vmlinux. Both are loaded by their PT_LOAD program headers at
 * the physical addresses (p_paddr); the note decides how the vCPU starts.
 *
 * A Linux vmlinux built with CONFIG_PVH (Debian's kernels are) carries the PVH
 * note too and boots through it; its other notes (Xen GUEST_OS "linux", or any
 * note owned by "Linux") say it is Linux, so that it still gets the Linux-only
 * command-line options (boot_params_in.linux_cmdline_prefix).
 */
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/boot.h"
#include "godwit/log.h"
#include "godwit/x86_layout.h"

#define XEN_ELFNOTE_GUEST_OS	 6
#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* Bounds that no real kernel comes near; they keep allocations small. */
#define ELF_MAX_PHDRS	 128
#define ELF_MAX_SHDRS	 1024
#define ELF_MAX_NOTE_LEN (64 * KiB)

/* One program or section header, whatever the ELF class. */
struct elf_seg {
	uint32_t type;
	uint64_t offset;
	uint64_t paddr;
	uint64_t vaddr;
	uint64_t filesz;
	uint64_t memsz;
};

struct elf_image {
	const struct boot_file *f;
	bool is64;
	uint64_t entry;
	unsigned int nr_phdrs;
	struct elf_seg *phdrs;
	uint64_t shoff;
	unsigned int shnum, shentsize;
	bool is_linux; /* a note says the image is a Linux kernel */
};

static int parse_ehdr(struct elf_image *img, uint64_t *phoff, unsigned int *phentsize)
{
	const struct boot_file *f = img->f;
	Elf64_Ehdr e64;
	Elf32_Ehdr e32;
	unsigned char ident[EI_NIDENT];
	unsigned int machine, type, phnum, min_phent;
	int ret;

	ret = boot__file_read(f, 0, ident, sizeof(ident));
	if (ret)
		return ret;
	if (ident[EI_DATA] != ELFDATA2LSB ||
	    (ident[EI_CLASS] != ELFCLASS32 && ident[EI_CLASS] != ELFCLASS64)) {
		pr_err("%s: not a little-endian 32 or 64-bit ELF", f->path);
		return -ENOEXEC;
	}
	img->is64 = ident[EI_CLASS] == ELFCLASS64;
	if (img->is64) {
		ret = boot__file_read(f, 0, &e64, sizeof(e64));
		if (ret)
			return ret;
		machine = e64.e_machine;
		type = e64.e_type;
		img->entry = e64.e_entry;
		*phoff = e64.e_phoff;
		*phentsize = e64.e_phentsize;
		phnum = e64.e_phnum;
		img->shoff = e64.e_shoff;
		img->shnum = e64.e_shnum;
		img->shentsize = e64.e_shentsize;
		min_phent = sizeof(Elf64_Phdr);
	} else {
		ret = boot__file_read(f, 0, &e32, sizeof(e32));
		if (ret)
			return ret;
		machine = e32.e_machine;
		type = e32.e_type;
		img->entry = e32.e_entry;
		*phoff = e32.e_phoff;
		*phentsize = e32.e_phentsize;
		phnum = e32.e_phnum;
		img->shoff = e32.e_shoff;
		img->shnum = e32.e_shnum;
		img->shentsize = e32.e_shentsize;
		min_phent = sizeof(Elf32_Phdr);
	}
	if ((machine != EM_X86_64 && machine != EM_386) || type != ET_EXEC) {
		pr_err("%s: not an x86 executable ELF (machine %u, type %u)", f->path, machine,
		       type);
		return -ENOEXEC;
	}
	if (phnum == 0 || phnum > ELF_MAX_PHDRS || *phentsize < min_phent) {
		pr_err("%s: bad ELF program headers (%u of %u bytes)", f->path, phnum, *phentsize);
		return -ENOEXEC;
	}
	img->nr_phdrs = phnum;
	return 0;
}

static int read_phdr(struct elf_image *img, uint64_t off, struct elf_seg *s)
{
	Elf64_Phdr p64;
	Elf32_Phdr p32;
	int ret;

	if (img->is64) {
		ret = boot__file_read(img->f, off, &p64, sizeof(p64));
		if (ret)
			return ret;
		*s = (struct elf_seg){p64.p_type,  p64.p_offset, p64.p_paddr,
				      p64.p_vaddr, p64.p_filesz, p64.p_memsz};
	} else {
		ret = boot__file_read(img->f, off, &p32, sizeof(p32));
		if (ret)
			return ret;
		*s = (struct elf_seg){p32.p_type,  p32.p_offset, p32.p_paddr,
				      p32.p_vaddr, p32.p_filesz, p32.p_memsz};
	}
	return 0;
}

static int read_phdrs(struct elf_image *img)
{
	uint64_t phoff;
	unsigned int phentsize, i;
	int ret;

	ret = parse_ehdr(img, &phoff, &phentsize);
	if (ret)
		return ret;
	img->phdrs = calloc(img->nr_phdrs, sizeof(*img->phdrs));
	if (!img->phdrs)
		return -ENOMEM;
	for (i = 0; i < img->nr_phdrs; i++) {
		/* phoff is from the file: i * phentsize is small, the sum may wrap. */
		uint64_t off = phoff + (uint64_t)i * phentsize;

		if (off < phoff) {
			pr_err("%s: bad ELF program header offset", img->f->path);
			return -ENOEXEC;
		}
		ret = read_phdr(img, off, &img->phdrs[i]);
		if (ret)
			return ret;
	}
	return 0;
}

/* A note that says "this is Linux": Xen GUEST_OS "linux", or one owned by "Linux". */
static bool note_says_linux(const uint8_t *name, uint32_t namesz, uint32_t type,
			    const uint8_t *desc, uint32_t descsz)
{
	if (namesz == 6 && !memcmp(name, "Linux", 6))
		return true;
	return namesz == 4 && !memcmp(name, "Xen", 4) && type == XEN_ELFNOTE_GUEST_OS &&
	       descsz >= 5 && !memcmp(desc, "linux", 5) && (descsz == 5 || desc[5] == 0);
}

/*
 * Scans one note area for the PVH entry (and for a note saying Linux: sets
 * img->is_linux). Returns 1 and sets *entry when the PVH entry is found, 0 when
 * not, -errno on a malformed area.
 */
static int find_pvh_in_notes(struct elf_image *img, uint64_t off, uint64_t len, uint64_t *entry)
{
	const struct boot_file *f = img->f;
	uint8_t *buf;
	uint64_t pos = 0;
	int ret, found = 0;

	if (len == 0)
		return 0;
	if (len > ELF_MAX_NOTE_LEN) {
		pr_err("%s: ELF note area too large (%llu bytes)", f->path,
		       (unsigned long long)len);
		return -ENOEXEC;
	}
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	ret = boot__file_read(f, off, buf, len);
	while (!ret && pos + 12 <= len) {
		uint32_t namesz, descsz, type;
		uint64_t name, desc, next;

		memcpy(&namesz, buf + pos, 4);
		memcpy(&descsz, buf + pos + 4, 4);
		memcpy(&type, buf + pos + 8, 4);
		name = pos + 12;
		desc = name + ALIGN_UP((uint64_t)namesz, 4);
		next = desc + ALIGN_UP((uint64_t)descsz, 4);
		if (desc > len || desc + descsz > len) {
			pr_err("%s: truncated ELF note", f->path);
			ret = -ENOEXEC;
			break;
		}
		if (note_says_linux(buf + name, namesz, type, buf + desc, descsz))
			img->is_linux = true;
		if (!found && type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 &&
		    !memcmp(buf + name, "Xen", 4)) {
			uint64_t v = 0;

			if (descsz != 4 && descsz != 8) {
				pr_err("%s: PVH entry note has %u bytes, not 4 or 8", f->path,
				       descsz);
				ret = -ENOEXEC;
				break;
			}
			memcpy(&v, buf + desc, descsz);
			*entry = v;
			found = 1;
		}
		pos = next;
	}
	free(buf);
	return ret ? ret : found;
}

static int find_pvh_in_sections(struct elf_image *img, uint64_t *entry)
{
	unsigned int i, min = img->is64 ? sizeof(Elf64_Shdr) : sizeof(Elf32_Shdr);
	int ret;

	if (img->shoff == 0 || img->shnum == 0)
		return 0;
	if (img->shnum > ELF_MAX_SHDRS || img->shentsize < min) {
		pr_err("%s: bad ELF section headers", img->f->path);
		return -ENOEXEC;
	}
	for (i = 0; i < img->shnum; i++) {
		uint64_t off = img->shoff + (uint64_t)i * img->shentsize, noff, nlen;
		uint32_t type;

		if (off < img->shoff)
			return -ENOEXEC;
		if (img->is64) {
			Elf64_Shdr s;

			ret = boot__file_read(img->f, off, &s, sizeof(s));
			type = s.sh_type;
			noff = s.sh_offset;
			nlen = s.sh_size;
		} else {
			Elf32_Shdr s;

			ret = boot__file_read(img->f, off, &s, sizeof(s));
			type = s.sh_type;
			noff = s.sh_offset;
			nlen = s.sh_size;
		}
		if (ret)
			return ret;
		if (type != SHT_NOTE)
			continue;
		ret = find_pvh_in_notes(img, noff, nlen, entry);
		if (ret)
			return ret;
	}
	return 0;
}

static int find_pvh_entry(struct elf_image *img, uint64_t *entry)
{
	unsigned int i;
	int ret;

	for (i = 0; i < img->nr_phdrs; i++) {
		const struct elf_seg *s = &img->phdrs[i];

		if (s->type != PT_NOTE)
			continue;
		ret = find_pvh_in_notes(img, s->offset, s->filesz, entry);
		if (ret)
			return ret;
	}
	return find_pvh_in_sections(img, entry);
}

static int load_segments(struct guest_mem *mem, struct elf_image *img, struct boot_setup *out)
{
	uint64_t lo = UINT64_MAX, hi = 0;
	unsigned int i, loaded = 0;
	int ret;

	for (i = 0; i < img->nr_phdrs; i++) {
		const struct elf_seg *s = &img->phdrs[i];

		if (s->type != PT_LOAD || s->memsz == 0)
			continue;
		if (s->filesz > s->memsz) {
			pr_err("%s: segment %u has p_filesz > p_memsz", img->f->path, i);
			return -ENOEXEC;
		}
		ret = boot__check_kernel_range(mem, img->f->path, s->paddr, s->memsz);
		if (ret)
			return ret;
		ret = boot__file_to_guest(mem, img->f, s->offset, s->filesz, s->paddr);
		if (ret)
			return ret;
		ret = boot__zero_guest(mem, s->paddr + s->filesz, s->memsz - s->filesz);
		if (ret)
			return ret;
		lo = MIN(lo, s->paddr);
		hi = MAX(hi, s->paddr + s->memsz);
		loaded++;
	}
	if (!loaded) {
		pr_err("%s: ELF has no loadable segment", img->f->path);
		return -ENOEXEC;
	}
	out->kernel_start = lo;
	out->kernel_end = hi;
	return 0;
}

/*
 * vmlinux's e_entry may be virtual (0xffffffff81000000-based) or already
 * physical: translate through the segment that contains it.
 */
static int vmlinux_entry(struct elf_image *img, uint64_t *entry)
{
	unsigned int i;

	for (i = 0; i < img->nr_phdrs; i++) {
		const struct elf_seg *s = &img->phdrs[i];

		if (s->type != PT_LOAD)
			continue;
		if (img->entry >= s->vaddr && img->entry - s->vaddr < s->memsz) {
			*entry = img->entry - s->vaddr + s->paddr;
			return 0;
		}
	}
	for (i = 0; i < img->nr_phdrs; i++) {
		const struct elf_seg *s = &img->phdrs[i];

		if (s->type == PT_LOAD && img->entry >= s->paddr &&
		    img->entry - s->paddr < s->memsz) {
			*entry = img->entry;
			return 0;
		}
	}
	pr_err("%s: ELF entry 0x%llx is in no loadable segment", img->f->path,
	       (unsigned long long)img->entry);
	return -ENOEXEC;
}

int boot__load_elf(struct guest_mem *mem, const struct boot_file *f, struct boot_setup *out)
{
	struct elf_image img = {.f = f};
	uint64_t entry = 0;
	int ret;

	ret = read_phdrs(&img);
	if (ret)
		goto out;
	ret = find_pvh_entry(&img, &entry);
	if (ret < 0)
		goto out;
	if (ret == 1) {
		out->format = BOOT_FORMAT_PVH;
		out->mode = BOOT_CPU_PROTECTED32;
		out->is_linux = img.is_linux;
		if (entry > UINT32_MAX) {
			pr_err("%s: PVH entry 0x%llx is above 4 GiB", f->path,
			       (unsigned long long)entry);
			ret = -ENOEXEC;
			goto out;
		}
	} else {
		if (!img.is64) {
			pr_err("%s: not an ELF with a PVH note, a bzImage or a vmlinux (32-bit ELF "
			       "without PVH note)",
			       f->path);
			ret = -ENOEXEC;
			goto out;
		}
		out->format = BOOT_FORMAT_VMLINUX;
		out->mode = BOOT_CPU_LONG64;
		out->is_linux = true;
		ret = vmlinux_entry(&img, &entry);
		if (ret)
			goto out;
	}
	ret = load_segments(mem, &img, out);
	if (ret)
		goto out;
	if (entry < out->kernel_start || entry >= out->kernel_end) {
		pr_err("%s: entry point 0x%llx is outside the loaded kernel", f->path,
		       (unsigned long long)entry);
		ret = -ENOEXEC;
		goto out;
	}
	out->entry = entry;
out:
	free(img.phdrs);
	return ret;
}
