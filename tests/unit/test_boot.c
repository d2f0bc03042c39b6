// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel loading: synthetic PVH ELFs, bzImages and vmlinux images written to temp
 * files, loaded into real guest RAM, and every structure handed to the kernel
 * read back at the offsets the boot protocols define (written out here again,
 * independently of the loader).
 */
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "godwit/boot.h"
#include "godwit/memory.h"
#include "godwit/x86_layout.h"

#define RAM_128M (128 * MiB)
#define RAM_4G5	 (4 * GiB + 512 * MiB)

static uint16_t rd16(const uint8_t *p)
{
	return p[0] | p[1] << 8;
}

static uint32_t rd32(const uint8_t *p)
{
	return rd16(p) | (uint32_t)rd16(p + 2) << 16;
}

static uint64_t rd64(const uint8_t *p)
{
	return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static void wr32(uint8_t *p, uint32_t v)
{
	wr16(p, v);
	wr16(p + 2, v >> 16);
}

static void wr64(uint8_t *p, uint64_t v)
{
	wr32(p, v);
	wr32(p + 4, v >> 32);
}

/* ---- Temp files ---- */

struct tmpfile {
	char path[64];
};

static void tmp_write(struct tmpfile *t, const void *data, size_t len)
{
	int fd;

	strcpy(t->path, "/tmp/godwit-boot-XXXXXX");
	fd = mkstemp(t->path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void tmp_remove(struct tmpfile *t)
{
	unlink(t->path);
}

/* ---- Guest RAM ---- */

static const uint8_t *gptr(struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	const uint8_t *p = guest_mem__ptr(mem, gpa, len);

	assert_non_null(p);
	return p;
}

static void mem_init(struct guest_mem *mem, uint64_t size)
{
	assert_int_equal(guest_mem__init(mem, size), 0);
}

/* ---- ELF images ---- */

#define ELF_PAYLOAD_OFF 0x1000
#define ELF_PAYLOAD_LEN 0x200

struct elf_spec {
	bool is32;
	uint64_t paddr, vaddr, entry;
	uint64_t memsz;
	bool pvh_note;	      /* Xen PHYS32_ENTRY note */
	bool note_in_section; /* in an SHT_NOTE section instead of a PT_NOTE segment */
	uint32_t note_descsz; /* 4 or 8 */
	uint64_t pvh_entry;
	uint64_t filesz; /* 0: ELF_PAYLOAD_LEN */
	bool linux_note; /* Xen GUEST_OS "linux" note before the PVH one, as vmlinux has */
};

/* Notes: a foreign one first, so the scanner must walk past it. */
static size_t make_notes(uint8_t *n, const struct elf_spec *s)
{
	size_t off = 0;

	wr32(n + off, 4);     /* namesz "GNU\0" */
	wr32(n + off + 4, 4); /* descsz */
	wr32(n + off + 8, 3); /* NT_GNU_BUILD_ID */
	memcpy(n + off + 12, "GNU", 4);
	wr32(n + off + 16, 0x12345678);
	off += 20;
	if (s->linux_note) {
		wr32(n + off, 4);
		wr32(n + off + 4, 6);
		wr32(n + off + 8, 6); /* XEN_ELFNOTE_GUEST_OS */
		memcpy(n + off + 12, "Xen", 4);
		memcpy(n + off + 16, "linux", 6);
		off += 24;
	}
	wr32(n + off, 4);
	wr32(n + off + 4, s->note_descsz);
	wr32(n + off + 8, 18); /* XEN_ELFNOTE_PHYS32_ENTRY */
	memcpy(n + off + 12, "Xen", 4);
	if (s->note_descsz == 8)
		wr64(n + off + 16, s->pvh_entry);
	else
		wr32(n + off + 16, s->pvh_entry);
	return off + 16 + ALIGN_UP(s->note_descsz, 4);
}

static size_t make_elf64(uint8_t *img, const struct elf_spec *s)
{
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
	Elf64_Phdr *ph = (Elf64_Phdr *)(img + sizeof(*eh));
	Elf64_Shdr *sh = (Elf64_Shdr *)(img + 0x800);
	size_t note_len = 0;

	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = s->entry;
	eh->e_phoff = sizeof(*eh);
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = 1;
	ph[0] = (Elf64_Phdr){.p_type = PT_LOAD,
			     .p_offset = ELF_PAYLOAD_OFF,
			     .p_vaddr = s->vaddr,
			     .p_paddr = s->paddr,
			     .p_filesz = s->filesz ? s->filesz : ELF_PAYLOAD_LEN,
			     .p_memsz = s->memsz,
			     .p_flags = PF_R | PF_X,
			     .p_align = 0x1000};
	if (s->pvh_note)
		note_len = make_notes(img + 0x400, s);
	if (s->pvh_note && !s->note_in_section) {
		eh->e_phnum = 2;
		ph[1] = (Elf64_Phdr){
		    .p_type = PT_NOTE, .p_offset = 0x400, .p_filesz = note_len, .p_align = 4};
	} else if (s->pvh_note) {
		eh->e_shoff = 0x800;
		eh->e_shentsize = sizeof(*sh);
		eh->e_shnum = 2; /* a null section, then the notes */
		sh[1] = (Elf64_Shdr){.sh_type = SHT_NOTE, .sh_offset = 0x400, .sh_size = note_len};
	}
	return ELF_PAYLOAD_OFF + ELF_PAYLOAD_LEN;
}

static size_t make_elf32(uint8_t *img, const struct elf_spec *s)
{
	Elf32_Ehdr *eh = (Elf32_Ehdr *)img;
	Elf32_Phdr *ph = (Elf32_Phdr *)(img + sizeof(*eh));
	Elf32_Shdr *sh = (Elf32_Shdr *)(img + 0x800);
	size_t note_len = 0;

	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS32;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_386;
	eh->e_version = EV_CURRENT;
	eh->e_entry = s->entry;
	eh->e_phoff = sizeof(*eh);
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = 1;
	ph[0] = (Elf32_Phdr){.p_type = PT_LOAD,
			     .p_offset = ELF_PAYLOAD_OFF,
			     .p_vaddr = s->vaddr,
			     .p_paddr = s->paddr,
			     .p_filesz = ELF_PAYLOAD_LEN,
			     .p_memsz = s->memsz,
			     .p_flags = PF_R | PF_X,
			     .p_align = 0x1000};
	if (s->pvh_note) {
		note_len = make_notes(img + 0x400, s);
		eh->e_shoff = 0x800;
		eh->e_shentsize = sizeof(*sh);
		eh->e_shnum = 2;
		sh[1] = (Elf32_Shdr){.sh_type = SHT_NOTE, .sh_offset = 0x400, .sh_size = note_len};
	}
	return ELF_PAYLOAD_OFF + ELF_PAYLOAD_LEN;
}

/* Writes the image; the payload is bytes 0..ELF_PAYLOAD_LEN-1 counting up. */
static void write_elf(struct tmpfile *t, const struct elf_spec *s, size_t truncate_to)
{
	uint8_t *img = calloc(1, 0x2000);
	size_t len, i;

	assert_non_null(img);
	len = s->is32 ? make_elf32(img, s) : make_elf64(img, s);
	for (i = 0; i < ELF_PAYLOAD_LEN; i++)
		img[ELF_PAYLOAD_OFF + i] = i;
	tmp_write(t, img, truncate_to ? truncate_to : len);
	free(img);
}

static struct elf_spec pvh_spec(void)
{
	return (struct elf_spec){.paddr = 0x100000,
				 .vaddr = 0x100000,
				 .entry = 0x100000,
				 .memsz = 0x3000,
				 .pvh_note = true,
				 .note_descsz = 8,
				 .pvh_entry = 0x100040};
}

/* ---- bzImage ---- */

#define BZ_SETUP_SECTS 2
#define BZ_PM_OFF      ((BZ_SETUP_SECTS + 1) * 512)
#define BZ_PM_LEN      0x1800
#define BZ_HDR_END     0x26c

struct bz_spec {
	uint16_t version;
	uint8_t loadflags;
	uint16_t xloadflags;
	uint32_t initrd_addr_max;
	uint32_t cmdline_size;
	uint32_t init_size;
	uint64_t pref_address;
};

static struct bz_spec bz_default(void)
{
	return (struct bz_spec){.version = 0x020f,
				.loadflags = 0x01,
				.xloadflags = 0x0001,
				.initrd_addr_max = 0x7fffffff,
				.cmdline_size = 2047,
				.init_size = 0x1000000,
				.pref_address = 0x1000000};
}

static uint8_t *make_bzimage(const struct bz_spec *s, size_t *len)
{
	uint8_t *img = calloc(1, BZ_PM_OFF + BZ_PM_LEN);
	size_t i;

	assert_non_null(img);
	img[0x1f1] = BZ_SETUP_SECTS;
	wr16(img + 0x1f2, 1);		   /* root_flags: something to see copied */
	wr32(img + 0x1f4, BZ_PM_LEN / 16); /* syssize */
	wr16(img + 0x1fa, 0xffff);	   /* vid_mode */
	wr16(img + 0x1fe, 0xaa55);
	img[0x200] = 0xeb;
	img[0x201] = BZ_HDR_END - 0x202;
	memcpy(img + 0x202, "HdrS", 4);
	wr16(img + 0x206, s->version);
	wr16(img + 0x20e, 0x1234); /* kernel_version */
	img[0x211] = s->loadflags;
	wr32(img + 0x214, 0x100000); /* code32_start */
	wr32(img + 0x22c, s->initrd_addr_max);
	wr32(img + 0x230, 0x200000); /* kernel_alignment */
	img[0x234] = 1;		     /* relocatable_kernel */
	img[0x235] = 21;	     /* min_alignment */
	wr16(img + 0x236, s->xloadflags);
	wr32(img + 0x238, s->cmdline_size);
	wr64(img + 0x258, s->pref_address);
	wr32(img + 0x260, s->init_size);
	wr32(img + 0x264, 0x190); /* handover_offset */
	for (i = 0; i < BZ_PM_LEN; i++)
		img[BZ_PM_OFF + i] = (uint8_t)(i * 7);
	*len = BZ_PM_OFF + BZ_PM_LEN;
	return img;
}

static void write_bzimage(struct tmpfile *t, const struct bz_spec *s, size_t truncate_to)
{
	size_t len;
	uint8_t *img = make_bzimage(s, &len);

	tmp_write(t, img, truncate_to ? truncate_to : len);
	free(img);
}

static void write_initrd(struct tmpfile *t, size_t len)
{
	uint8_t *d = malloc(len);
	size_t i;

	assert_non_null(d);
	for (i = 0; i < len; i++)
		d[i] = (uint8_t)(i ^ 0x5a);
	tmp_write(t, d, len);
	free(d);
}

static int load(struct guest_mem *mem, const char *kernel, const char *initrd, const char *cmdline,
		struct boot_setup *b)
{
	struct boot_params_in in = {.kernel_path = kernel,
				    .initrd_path = initrd,
				    .cmdline = cmdline,
				    .nr_cpus = 1,
				    .rsdp_gpa = 0xe0000};

	return boot__load_kernel(mem, &in, b);
}

/* ---- Memory maps ---- */

struct map_entry {
	uint64_t addr, size;
	uint32_t type;
};

static void check_map(const struct map_entry *got, unsigned int n, uint64_t ram)
{
	uint64_t low = MIN(ram, MEM_HOLE_START);

	assert_int_equal(n, ram > MEM_HOLE_START ? 4 : 3);
	assert_int_equal(got[0].addr, 0);
	assert_int_equal(got[0].size, 0x9fc00);
	assert_int_equal(got[0].type, 1);
	assert_int_equal(got[1].addr, 0x9fc00);
	assert_int_equal(got[1].size, 0x100000 - 0x9fc00);
	assert_int_equal(got[1].type, 2);
	assert_int_equal(got[2].addr, 0x100000);
	assert_int_equal(got[2].size, low - 0x100000);
	assert_int_equal(got[2].type, 1);
	if (n == 4) {
		assert_int_equal(got[3].addr, 4 * GiB);
		assert_int_equal(got[3].size, ram - MEM_HOLE_START);
		assert_int_equal(got[3].type, 1);
	}
}

static void check_pvh_memmap(struct guest_mem *mem, const uint8_t *si, uint64_t ram)
{
	struct map_entry e[8];
	unsigned int n = rd32(si + 48), i;
	const uint8_t *m;

	assert_true(n <= 8);
	m = gptr(mem, rd64(si + 40), n * 24);
	for (i = 0; i < n; i++)
		e[i] = (struct map_entry){rd64(m + i * 24), rd64(m + i * 24 + 8),
					  rd32(m + i * 24 + 16)};
	check_map(e, n, ram);
}

static void check_e820(struct guest_mem *mem, const uint8_t *bp, uint64_t ram)
{
	struct map_entry e[8];
	unsigned int n = bp[0x1e8], i;

	(void)mem;
	assert_true(n <= 8);
	for (i = 0; i < n; i++) {
		const uint8_t *p = bp + 0x2d0 + i * 20;

		e[i] = (struct map_entry){rd64(p), rd64(p + 8), rd32(p + 16)};
	}
	check_map(e, n, ram);
}

/* ---- PVH ---- */

static void check_pvh(uint64_t ram, bool is32, bool in_section)
{
	struct tmpfile k, rd;
	struct guest_mem mem;
	struct boot_setup b;
	struct elf_spec s = pvh_spec();
	uint8_t junk[0x3000];
	const uint8_t *si, *p, *mod;
	unsigned int i;

	s.is32 = is32;
	s.note_in_section = in_section;
	s.note_descsz = is32 ? 4 : 8;
	write_elf(&k, &s, 0);
	write_initrd(&rd, 10000);
	mem_init(&mem, ram);
	/* The bss must be zeroed even over old contents. */
	memset(junk, 0xcc, sizeof(junk));
	assert_int_equal(guest_mem__write(&mem, 0x100000, junk, sizeof(junk)), 0);

	assert_int_equal(load(&mem, k.path, rd.path, "console=ttyS0 root=/dev/vda", &b), 0);
	assert_int_equal(b.format, BOOT_FORMAT_PVH);
	assert_int_equal(b.mode, BOOT_CPU_PROTECTED32);
	assert_int_equal(b.entry, 0x100040);
	assert_int_equal(b.info_gpa, PVH_START_INFO_ADDR);
	assert_int_equal(b.kernel_start, 0x100000);
	assert_int_equal(b.kernel_end, 0x103000);

	p = gptr(&mem, 0x100000, 0x3000);
	for (i = 0; i < ELF_PAYLOAD_LEN; i++)
		assert_int_equal(p[i], (uint8_t)i);
	for (; i < 0x3000; i++)
		assert_int_equal(p[i], 0);

	si = gptr(&mem, PVH_START_INFO_ADDR, 56);
	assert_int_equal(rd32(si), 0x336ec578);
	assert_int_equal(rd32(si + 4), 1);
	assert_string_equal((const char *)gptr(&mem, rd64(si + 24), 1),
			    "console=ttyS0 root=/dev/vda");
	assert_int_equal(rd64(si + 32), 0xe0000);
	check_pvh_memmap(&mem, si, ram);

	/* Initrd: module 0, page-aligned at the top of low RAM. */
	assert_int_equal(rd32(si + 12), 1);
	mod = gptr(&mem, rd64(si + 16), 32);
	assert_int_equal(rd64(mod), b.initrd_gpa);
	assert_int_equal(rd64(mod + 8), 10000);
	assert_int_equal(b.initrd_gpa % 4096, 0);
	assert_true(b.initrd_gpa + 10000 <= MIN(ram, MEM_HOLE_START));
	assert_true(b.initrd_gpa + 10000 + 4096 > MIN(ram, MEM_HOLE_START));
	p = gptr(&mem, b.initrd_gpa, 10000);
	for (i = 0; i < 10000; i++)
		assert_int_equal(p[i], (uint8_t)(i ^ 0x5a));

	guest_mem__exit(&mem);
	tmp_remove(&k);
	tmp_remove(&rd);
}

static void test_pvh_elf64(void **state)
{
	(void)state;
	check_pvh(RAM_128M, false, false);
	check_pvh(RAM_128M, false, true);
}

static void test_pvh_elf32(void **state)
{
	(void)state;
	check_pvh(RAM_128M, true, true);
}

static void test_pvh_hole(void **state)
{
	(void)state;
	check_pvh(RAM_4G5, false, false);
}

static void test_pvh_no_initrd(void **state)
{
	struct elf_spec s = pvh_spec();
	struct guest_mem mem;
	struct boot_setup b;
	struct tmpfile k;
	const uint8_t *si;

	(void)state;
	write_elf(&k, &s, 0);
	mem_init(&mem, RAM_128M);
	assert_int_equal(load(&mem, k.path, NULL, NULL, &b), 0);
	si = gptr(&mem, PVH_START_INFO_ADDR, 56);
	assert_int_equal(rd32(si + 12), 0);
	assert_int_equal(b.initrd_gpa, 0);
	assert_string_equal((const char *)gptr(&mem, rd64(si + 24), 1), "");
	guest_mem__exit(&mem);
	tmp_remove(&k);
}

/* ---- bzImage ---- */

static void check_bzimage(uint64_t ram, uint32_t initrd_addr_max)
{
	struct bz_spec s = bz_default();
	struct tmpfile k, rd;
	struct guest_mem mem;
	struct boot_setup b;
	const uint8_t *bp, *p;
	uint8_t *file;
	size_t len, i;
	uint64_t top;

	s.initrd_addr_max = initrd_addr_max;
	write_bzimage(&k, &s, 0);
	write_initrd(&rd, 123457);
	mem_init(&mem, ram);
	assert_int_equal(load(&mem, k.path, rd.path, "console=ttyS0", &b), 0);
	assert_int_equal(b.format, BOOT_FORMAT_BZIMAGE);
	assert_int_equal(b.mode, BOOT_CPU_LONG64);
	assert_int_equal(b.entry, 0x100000 + 0x200);
	assert_int_equal(b.info_gpa, BOOT_PARAMS_ADDR);
	/* Decompresses at pref_address (16 MiB) and needs init_size from there. */
	assert_int_equal(b.kernel_end, 0x1000000 + 0x1000000);

	/* Protected-mode code at 1 MiB. */
	p = gptr(&mem, 0x100000, BZ_PM_LEN);
	for (i = 0; i < BZ_PM_LEN; i++)
		assert_int_equal(p[i], (uint8_t)(i * 7));

	/* Setup header copied, apart from the fields the loader writes. */
	bp = gptr(&mem, BOOT_PARAMS_ADDR, 4096);
	file = make_bzimage(&s, &len);
	for (i = 0x1f1; i < BZ_HDR_END; i++) {
		if (i == 0x210 || (i >= 0x218 && i < 0x220) || (i >= 0x228 && i < 0x22c))
			continue;
		if (bp[i] != file[i])
			fail_msg("boot_params byte 0x%zx: 0x%x, file has 0x%x", i, bp[i], file[i]);
	}
	free(file);
	/* Nothing outside the header came from the file. */
	for (i = BZ_HDR_END; i < 0x2d0; i++)
		assert_int_equal(bp[i], 0);

	assert_int_equal(bp[0x210], 0xff); /* type_of_loader */
	assert_int_equal(rd32(bp + 0x228), BOOT_CMDLINE_ADDR);
	assert_int_equal(rd32(bp + 0xc8), 0);
	assert_string_equal((const char *)gptr(&mem, rd32(bp + 0x228), 1), "console=ttyS0");
	assert_int_equal(rd64(bp + 0x70), 0xe0000); /* acpi_rsdp_addr */
	check_e820(&mem, bp, ram);

	/* Initrd: page-aligned, below initrd_addr_max and low RAM, above the kernel. */
	assert_int_equal(rd32(bp + 0x218), b.initrd_gpa);
	assert_int_equal(rd32(bp + 0x21c), 123457);
	assert_int_equal(rd32(bp + 0xc0), 0);
	assert_int_equal(rd32(bp + 0xc4), 0);
	top = MIN(MIN(ram, MEM_HOLE_START), (uint64_t)initrd_addr_max + 1);
	assert_int_equal(b.initrd_gpa % 4096, 0);
	assert_true(b.initrd_gpa + 123457 <= top);
	assert_true(b.initrd_gpa + 123457 + 4096 > top);
	assert_true(b.initrd_gpa >= b.kernel_end);
	p = gptr(&mem, b.initrd_gpa, 123457);
	for (i = 0; i < 123457; i++)
		assert_int_equal(p[i], (uint8_t)(i ^ 0x5a));

	guest_mem__exit(&mem);
	tmp_remove(&k);
	tmp_remove(&rd);
}

static void test_bzimage(void **state)
{
	(void)state;
	check_bzimage(RAM_128M, 0x7fffffff);
	check_bzimage(RAM_128M, 0x3ffffff); /* initrd must end below 64 MiB */
	check_bzimage(RAM_4G5, 0x7fffffff); /* hole in e820; initrd below 2 GiB */
	check_bzimage(RAM_4G5, 0xffffffff); /* initrd below the hole */
}

/* ---- vmlinux ---- */

static void test_vmlinux(void **state)
{
	struct elf_spec s = {.paddr = 0x1000000,
			     .vaddr = 0xffffffff81000000ULL,
			     .entry = 0xffffffff81000040ULL,
			     .memsz = 0x10000};
	struct tmpfile k, rd;
	struct guest_mem mem;
	struct boot_setup b;
	const uint8_t *bp;

	(void)state;
	write_elf(&k, &s, 0);
	write_initrd(&rd, 5000);
	mem_init(&mem, RAM_128M);
	assert_int_equal(load(&mem, k.path, rd.path, "root=/dev/vda", &b), 0);
	assert_int_equal(b.format, BOOT_FORMAT_VMLINUX);
	assert_int_equal(b.mode, BOOT_CPU_LONG64);
	assert_int_equal(b.entry, 0x1000040);
	assert_int_equal(b.info_gpa, BOOT_PARAMS_ADDR);
	assert_int_equal(gptr(&mem, 0x1000000, 1)[5], 5);

	bp = gptr(&mem, BOOT_PARAMS_ADDR, 4096);
	assert_int_equal(rd16(bp + 0x1fe), 0xaa55);
	assert_memory_equal(bp + 0x202, "HdrS", 4);
	assert_true(rd16(bp + 0x206) >= 0x020c);
	assert_int_equal(bp[0x210], 0xff);
	assert_true(bp[0x211] & 1); /* LOADED_HIGH */
	assert_int_equal(rd32(bp + 0x228), BOOT_CMDLINE_ADDR);
	assert_true(rd32(bp + 0x238) >= strlen("root=/dev/vda"));
	assert_true(rd32(bp + 0x230) != 0); /* kernel_alignment */
	assert_string_equal((const char *)gptr(&mem, BOOT_CMDLINE_ADDR, 1), "root=/dev/vda");
	assert_int_equal(rd32(bp + 0x218), b.initrd_gpa);
	assert_int_equal(rd32(bp + 0x21c), 5000);
	assert_int_equal(rd64(bp + 0x70), 0xe0000);
	check_e820(&mem, bp, RAM_128M);
	guest_mem__exit(&mem);
	tmp_remove(&k);
	tmp_remove(&rd);

	/* An entry that is already physical is taken as it is. */
	s.entry = 0x1000080;
	write_elf(&k, &s, 0);
	mem_init(&mem, RAM_128M);
	assert_int_equal(load(&mem, k.path, NULL, NULL, &b), 0);
	assert_int_equal(b.entry, 0x1000080);
	guest_mem__exit(&mem);
	tmp_remove(&k);

	/* An entry in no segment is refused. */
	s.entry = 0xffffffff82000000ULL;
	write_elf(&k, &s, 0);
	mem_init(&mem, RAM_128M);
	assert_int_equal(load(&mem, k.path, NULL, NULL, &b), -ENOEXEC);
	guest_mem__exit(&mem);
	tmp_remove(&k);
}

/* ---- Rejections ---- */

static int load_elf_spec(const struct elf_spec *s, size_t truncate_to, uint64_t ram)
{
	struct guest_mem mem;
	struct boot_setup b;
	struct tmpfile k;
	int ret;

	write_elf(&k, s, truncate_to);
	mem_init(&mem, ram);
	ret = load(&mem, k.path, NULL, "", &b);
	guest_mem__exit(&mem);
	tmp_remove(&k);
	return ret;
}

/* The kvm_pvm options go before a Linux command line, never into a PVH guest's. */
static void test_linux_cmdline_prefix(void **state)
{
	struct elf_spec lx = {.paddr = 0x1000000,
			      .vaddr = 0xffffffff81000000ULL,
			      .entry = 0xffffffff81000040ULL,
			      .memsz = 0x10000};
	struct elf_spec pvh = pvh_spec();
	struct boot_params_in in = {.cmdline = "console=ttyS0 -- sh", .nr_cpus = 1,
				    .linux_cmdline_prefix = "nosmap noxsave"};
	struct tmpfile k;
	struct guest_mem mem;
	struct boot_setup b;

	(void)state;
	write_elf(&k, &lx, 0);
	mem_init(&mem, RAM_128M);
	in.kernel_path = k.path;
	assert_int_equal(boot__load_kernel(&mem, &in, &b), 0);
	assert_string_equal((const char *)gptr(&mem, BOOT_CMDLINE_ADDR, 64),
			    "nosmap noxsave console=ttyS0 -- sh");
	in.cmdline = NULL;
	assert_int_equal(boot__load_kernel(&mem, &in, &b), 0);
	assert_string_equal((const char *)gptr(&mem, BOOT_CMDLINE_ADDR, 64), "nosmap noxsave");
	guest_mem__exit(&mem);
	tmp_remove(&k);

	write_elf(&k, &pvh, 0);
	mem_init(&mem, RAM_128M);
	in.kernel_path = k.path;
	in.cmdline = "heartbeat 10";
	assert_int_equal(boot__load_kernel(&mem, &in, &b), 0);
	assert_int_equal(b.format, BOOT_FORMAT_PVH);
	assert_false(b.is_linux);
	assert_string_equal((const char *)gptr(&mem, BOOT_CMDLINE_ADDR, 64), "heartbeat 10");
	guest_mem__exit(&mem);
	tmp_remove(&k);

	/* A vmlinux with CONFIG_PVH boots through its PVH note and is still Linux. */
	pvh.linux_note = true;
	write_elf(&k, &pvh, 0);
	mem_init(&mem, RAM_128M);
	in.kernel_path = k.path;
	in.cmdline = "console=ttyS0";
	assert_int_equal(boot__load_kernel(&mem, &in, &b), 0);
	assert_int_equal(b.format, BOOT_FORMAT_PVH);
	assert_true(b.is_linux);
	assert_int_equal(b.entry, pvh.pvh_entry);
	assert_string_equal((const char *)gptr(&mem, BOOT_CMDLINE_ADDR, 64),
			    "nosmap noxsave console=ttyS0");
	guest_mem__exit(&mem);
	tmp_remove(&k);
}

static void test_reject_elf(void **state)
{
	struct elf_spec s;

	(void)state;
	s = pvh_spec();
	/* Truncated: program headers cut off, then the payload cut off. */
	assert_int_equal(load_elf_spec(&s, 0x50, RAM_128M), -ENOEXEC);
	assert_int_equal(load_elf_spec(&s, ELF_PAYLOAD_OFF + 0x10, RAM_128M), -ENOEXEC);
	/* Segment beyond RAM, and straddling the end of low RAM. */
	s.paddr = 200 * MiB;
	s.pvh_entry = s.paddr;
	assert_int_equal(load_elf_spec(&s, 0, RAM_128M), -E2BIG);
	s.paddr = RAM_128M - 0x1000;
	s.pvh_entry = s.paddr;
	assert_int_equal(load_elf_spec(&s, 0, RAM_128M), -E2BIG);
	/* In the hole even though RAM continues above it. */
	s.paddr = MEM_HOLE_START + 0x1000;
	s.pvh_entry = s.paddr;
	assert_int_equal(load_elf_spec(&s, 0, RAM_4G5), -E2BIG);
	/* Over the boot structures, and over the EBDA/ACPI area. */
	s.paddr = BOOT_PARAMS_ADDR;
	s.pvh_entry = s.paddr;
	assert_int_equal(load_elf_spec(&s, 0, RAM_128M), -ENOEXEC);
	s.paddr = 0x9f000;
	s.pvh_entry = s.paddr;
	assert_int_equal(load_elf_spec(&s, 0, RAM_128M), -ENOEXEC);
	s.paddr = 0xe0000;
	s.pvh_entry = s.paddr;
	assert_int_equal(load_elf_spec(&s, 0, RAM_128M), -ENOEXEC);
	/* p_filesz > p_memsz. */
	s = pvh_spec();
	s.memsz = 0x100;
	assert_int_equal(load_elf_spec(&s, 0, RAM_128M), -ENOEXEC);
	/* File data past the end of the file. */
	s = pvh_spec();
	s.filesz = 0x10000;
	s.memsz = 0x10000;
	assert_int_equal(load_elf_spec(&s, 0, RAM_128M), -ENOEXEC);
	/* PVH entry outside the image; malformed note size. */
	s = pvh_spec();
	s.pvh_entry = 0x200000;
	assert_int_equal(load_elf_spec(&s, 0, RAM_128M), -ENOEXEC);
	s = pvh_spec();
	s.note_descsz = 2;
	assert_int_equal(load_elf_spec(&s, 0, RAM_128M), -ENOEXEC);
	/* A 32-bit ELF without a PVH note is neither PVH nor vmlinux. */
	s = pvh_spec();
	s.is32 = true;
	s.pvh_note = false;
	assert_int_equal(load_elf_spec(&s, 0, RAM_128M), -ENOEXEC);
}

static int load_bz_spec(const struct bz_spec *s, size_t truncate_to, const char *cmdline,
			const char *initrd, uint64_t ram)
{
	struct guest_mem mem;
	struct boot_setup b;
	struct tmpfile k;
	int ret;

	write_bzimage(&k, s, truncate_to);
	mem_init(&mem, ram);
	ret = load(&mem, k.path, initrd, cmdline, &b);
	guest_mem__exit(&mem);
	tmp_remove(&k);
	return ret;
}

static void test_reject_bzimage(void **state)
{
	struct bz_spec s;
	struct tmpfile rd;
	char *longline;

	(void)state;
	s = bz_default();
	assert_int_equal(load_bz_spec(&s, 0, "", NULL, RAM_128M), 0);
	/* Truncated: inside the header, and with no protected-mode code. */
	assert_int_equal(load_bz_spec(&s, 0x240, "", NULL, RAM_128M), -ENOEXEC);
	assert_int_equal(load_bz_spec(&s, BZ_PM_OFF, "", NULL, RAM_128M), -ENOEXEC);
	/* Protocol too old, zImage, no 64-bit entry. */
	s.version = 0x020b;
	assert_int_equal(load_bz_spec(&s, 0, "", NULL, RAM_128M), -ENOEXEC);
	s = bz_default();
	s.loadflags = 0;
	assert_int_equal(load_bz_spec(&s, 0, "", NULL, RAM_128M), -ENOEXEC);
	s = bz_default();
	s.xloadflags = 0;
	assert_int_equal(load_bz_spec(&s, 0, "", NULL, RAM_128M), -ENOEXEC);
	/* Command line longer than cmdline_size. */
	s = bz_default();
	s.cmdline_size = 8;
	assert_int_equal(load_bz_spec(&s, 0, "12345678", NULL, RAM_128M), 0);
	assert_int_equal(load_bz_spec(&s, 0, "123456789", NULL, RAM_128M), -EINVAL);
	/* Longer than any kernel takes. */
	s = bz_default();
	longline = malloc(BOOT_CMDLINE_MAX + 1);
	assert_non_null(longline);
	memset(longline, 'x', BOOT_CMDLINE_MAX);
	longline[BOOT_CMDLINE_MAX] = '\0';
	s.cmdline_size = 0xffffffff;
	assert_int_equal(load_bz_spec(&s, 0, longline, NULL, RAM_128M), -EINVAL);
	free(longline);
	/* Kernel needs more RAM than there is (init_size). */
	s = bz_default();
	s.init_size = 200 * MiB;
	assert_int_equal(load_bz_spec(&s, 0, "", NULL, RAM_128M), -E2BIG);
	/* Kernel + initrd too big: 100 MiB of initrd above a kernel that ends at 32 MiB. */
	s = bz_default();
	write_initrd(&rd, 100 * MiB);
	assert_int_equal(load_bz_spec(&s, 0, "", rd.path, RAM_128M), -E2BIG);
	assert_int_equal(load_bz_spec(&s, 0, "", rd.path, 256 * MiB), 0);
	/* ...and below an initrd_addr_max that leaves no room. */
	s.initrd_addr_max = 64 * MiB - 1;
	assert_int_equal(load_bz_spec(&s, 0, "", rd.path, 256 * MiB), -E2BIG);
	tmp_remove(&rd);
	/* Missing initrd. */
	s = bz_default();
	assert_int_equal(load_bz_spec(&s, 0, "", "/nonexistent/initrd", RAM_128M), -ENOENT);
}

static void test_reject_files(void **state)
{
	static const char text[] = "#!/bin/sh\necho this is not a kernel\n";
	struct guest_mem mem;
	struct boot_setup b;
	struct tmpfile k;

	(void)state;
	mem_init(&mem, RAM_128M);
	assert_int_equal(load(&mem, "/nonexistent/vmlinuz", NULL, NULL, &b), -ENOENT);
	assert_int_equal(load(&mem, "/tmp", NULL, NULL, &b), -EINVAL);
	tmp_write(&k, text, sizeof(text));
	assert_int_equal(load(&mem, k.path, NULL, NULL, &b), -ENOEXEC);
	tmp_remove(&k);
	tmp_write(&k, "", 0);
	assert_int_equal(load(&mem, k.path, NULL, NULL, &b), -ENOEXEC);
	tmp_remove(&k);
	tmp_write(&k, "\177ELF", 4);
	assert_int_equal(load(&mem, k.path, NULL, NULL, &b), -ENOEXEC);
	tmp_remove(&k);
	guest_mem__exit(&mem);
}

/* ---- Registers, GDT and page tables ---- */

/* Decodes a GDT descriptor from guest RAM and compares it with a segment cache. */
static void check_seg(struct guest_mem *mem, const struct kvm_segment *s)
{
	uint64_t d = rd64(gptr(mem, BOOT_GDT_ADDR + (s->selector & ~7), 8));
	uint32_t limit = (d & 0xffff) | ((d >> 32) & 0xf0000);

	assert_int_equal(s->base, ((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000));
	assert_int_equal(s->g, (d >> 55) & 1);
	assert_int_equal(s->limit, s->g ? (limit << 12) | 0xfff : limit);
	assert_int_equal(s->type, (d >> 40) & 0xf);
	assert_int_equal(s->s, (d >> 44) & 1);
	assert_int_equal(s->dpl, (d >> 45) & 3);
	assert_int_equal(s->present, 1);
	assert_int_equal(s->present, (d >> 47) & 1);
	assert_int_equal(s->l, (d >> 53) & 1);
	assert_int_equal(s->db, (d >> 54) & 1);
	assert_int_equal(s->unusable, 0);
}

static void check_common_segs(struct guest_mem *mem, const struct kvm_sregs *sr)
{
	assert_int_equal(sr->gdt.base, BOOT_GDT_ADDR);
	assert_int_equal(sr->gdt.limit, BOOT_GDT_ENTRIES * 8 - 1);
	check_seg(mem, &sr->cs);
	check_seg(mem, &sr->ds);
	check_seg(mem, &sr->es);
	check_seg(mem, &sr->ss);
	check_seg(mem, &sr->tr);
	assert_int_equal(sr->ds.selector, BOOT_SEL_DATA);
	assert_int_equal(sr->ds.base, 0);
	assert_int_equal(sr->ds.limit, 0xffffffff);
	assert_int_equal(sr->ds.type, 3);
	assert_int_equal(sr->ds.db, 1);
	assert_int_equal(sr->tr.type, 11);
	assert_int_equal(sr->tr.s, 0);
	assert_int_equal(sr->tr.limit, 0x67);
	assert_int_equal(sr->ldt.unusable, 1);
}

static void test_regs_pvh(void **state)
{
	struct elf_spec s = pvh_spec();
	struct kvm_sregs sr;
	struct kvm_regs r;
	struct guest_mem mem;
	struct boot_setup b;
	struct tmpfile k;

	(void)state;
	write_elf(&k, &s, 0);
	mem_init(&mem, RAM_128M);
	assert_int_equal(load(&mem, k.path, NULL, NULL, &b), 0);
	memset(&sr, 0x5a, sizeof(sr));
	sr.apic_base = 0xfee00900;
	boot__bsp_regs(&b, &r, &sr);
	assert_int_equal(r.rip, 0x100040);
	assert_int_equal(r.rbx, PVH_START_INFO_ADDR);
	assert_int_equal(r.rflags & ((1 << 9) | (1 << 8) | (1 << 17)), 0);
	assert_int_equal(r.rflags & 2, 2);
	assert_int_equal(sr.cr0 & 1, 1);
	assert_int_equal(sr.cr0 & (1ULL << 31), 0);
	assert_int_equal(sr.cr4, 0);
	assert_int_equal(sr.efer, 0);
	assert_int_equal(sr.apic_base, 0xfee00900); /* left alone */
	check_common_segs(&mem, &sr);
	assert_int_equal(sr.cs.selector, BOOT_SEL_CODE32);
	assert_int_equal(sr.cs.base, 0);
	assert_int_equal(sr.cs.limit, 0xffffffff);
	assert_int_equal(sr.cs.db, 1);
	assert_int_equal(sr.cs.l, 0);
	assert_int_equal(sr.cs.type, 11);
	guest_mem__exit(&mem);
	tmp_remove(&k);
}

/* Walks the identity page tables in guest RAM. */
static uint64_t translate(struct guest_mem *mem, uint64_t cr3, uint64_t va)
{
	uint64_t pml4e = rd64(gptr(mem, cr3 + ((va >> 39) & 511) * 8, 8));
	uint64_t pdpte, pde;

	assert_true(pml4e & 1);
	pdpte = rd64(gptr(mem, (pml4e & ~0xfffULL) + ((va >> 30) & 511) * 8, 8));
	assert_true(pdpte & 1);
	assert_false(pdpte & 0x80);
	pde = rd64(gptr(mem, (pdpte & ~0xfffULL) + ((va >> 21) & 511) * 8, 8));
	assert_true(pde & 1);
	assert_true(pde & 2);
	assert_true(pde & 0x80); /* 2 MiB page */
	return (pde & ~0x1fffffULL) + (va & 0x1fffff);
}

static void test_regs_long(void **state)
{
	static const uint64_t addrs[] = {
	    0, 0x100200, BOOT_PARAMS_ADDR, 0x7654321, MEM_HOLE_START - 1, 0xfee00000, 0xffffffff};
	struct bz_spec s = bz_default();
	struct kvm_sregs sr;
	struct kvm_regs r;
	struct guest_mem mem;
	struct boot_setup b;
	struct tmpfile k;
	unsigned int i;

	(void)state;
	write_bzimage(&k, &s, 0);
	mem_init(&mem, RAM_128M);
	assert_int_equal(load(&mem, k.path, NULL, NULL, &b), 0);
	memset(&sr, 0, sizeof(sr));
	boot__bsp_regs(&b, &r, &sr);
	assert_int_equal(r.rip, 0x100200);
	assert_int_equal(r.rsi, BOOT_PARAMS_ADDR);
	assert_int_equal(r.rbx, 0);
	assert_int_equal(r.rdi, 0);
	assert_int_equal(r.rbp, 0);
	assert_int_equal(r.rflags & (1 << 9), 0);
	assert_int_equal(sr.cr0 & 1, 1);
	assert_int_equal(sr.cr0 & (1ULL << 31), 1ULL << 31);
	assert_int_equal(sr.cr4 & (1 << 5), 1 << 5);
	assert_int_equal(sr.efer & ((1 << 8) | (1 << 10)), (1 << 8) | (1 << 10));
	assert_int_equal(sr.cr3, BOOT_PML4_ADDR);
	check_common_segs(&mem, &sr);
	/* __BOOT_CS 0x10 64-bit code, __BOOT_DS 0x18. */
	assert_int_equal(sr.cs.selector, 0x10);
	assert_int_equal(sr.cs.l, 1);
	assert_int_equal(sr.cs.db, 0);
	assert_int_equal(sr.ss.selector, 0x18);
	for (i = 0; i < ARRAY_SIZE(addrs); i++)
		assert_int_equal(translate(&mem, sr.cr3, addrs[i]), addrs[i]);
	guest_mem__exit(&mem);
	tmp_remove(&k);
}

static void test_e820_builder(void **state)
{
	struct e820_entry e[4];
	struct guest_mem mem;

	(void)state;
	mem_init(&mem, RAM_4G5);
	assert_int_equal(boot__e820(&mem, e, 4), 4);
	assert_int_equal(boot__e820(&mem, e, 3), -E2BIG);
	assert_int_equal(boot__low_ram_end(&mem), MEM_HOLE_START);
	guest_mem__exit(&mem);
	mem_init(&mem, 3 * GiB);
	assert_int_equal(boot__e820(&mem, e, 4), 3);
	assert_int_equal(e[2].addr + e[2].size, MEM_HOLE_START);
	guest_mem__exit(&mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pvh_elf64),	 cmocka_unit_test(test_pvh_elf32),
	    cmocka_unit_test(test_pvh_hole),	 cmocka_unit_test(test_pvh_no_initrd),
	    cmocka_unit_test(test_bzimage),	 cmocka_unit_test(test_vmlinux), cmocka_unit_test(test_linux_cmdline_prefix),
	    cmocka_unit_test(test_reject_elf),	 cmocka_unit_test(test_reject_bzimage),
	    cmocka_unit_test(test_reject_files), cmocka_unit_test(test_regs_pvh),
	    cmocka_unit_test(test_regs_long),	 cmocka_unit_test(test_e820_builder),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
