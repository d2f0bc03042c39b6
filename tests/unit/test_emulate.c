// SPDX-License-Identifier: GPL-2.0
/* Instruction completion for kvm_pvm: every accepted form and every rejection. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "godwit/emulate.h"

#define P  0x1ULL
#define RW 0x2ULL
#define US 0x4ULL
#define PS 0x80ULL

#define RF_CF (1ULL << 0)
#define RF_PF (1ULL << 2)
#define RF_AF (1ULL << 4)
#define RF_ZF (1ULL << 6)
#define RF_SF (1ULL << 7)
#define RF_TF (1ULL << 8)
#define RF_OF (1ULL << 11)
#define RF_RF (1ULL << 16)
#define RF_AC (1ULL << 18)
#define ARITH (RF_CF | RF_PF | RF_AF | RF_ZF | RF_SF | RF_OF)

/*
 * The test guest's page tables (4-level; 5-level adds PML5 on top):
 *   PML4 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000, PML5 0x5000, PDPT(high) 0x6000
 *   0x400000 + i * 4K  -> 0x100000 + i * 8K (i < 16; pages apart, to test straddling)
 *   0x410000           -> not present;   0x411000 -> 256 MiB (outside the 64 MiB RAM)
 *   0x412000           -> user page
 *   0x600000 (2 MiB)   -> 0x800000;       0x40000000 (1 GiB) -> 0
 *   0xffffffff80000000 (1 GiB, PML4[511] PDPT[510]) -> 0, as Linux maps its kernel
 */
#define LA_4K	   0x400000ULL
#define LA_NP	   0x410000ULL
#define LA_OUTSIDE 0x411000ULL
#define LA_USER	   0x412000ULL
#define LA_2M	   0x600000ULL
#define LA_1G	   0x40000000ULL
#define LA_KERNEL  0xffffffff80000000ULL
#define RIP	   0xc00000ULL /* code: unmapped unless a test maps it */

struct fixture {
	struct guest_mem mem;
	struct emulate_ctx ctx;
};

static void put64(struct guest_mem *m, uint64_t gpa, uint64_t v)
{
	assert_int_equal(guest_mem__write(m, gpa, &v, sizeof(v)), 0);
}

static uint64_t pa_4k(uint64_t la)
{
	return 0x100000 + ((la - LA_4K) >> 12) * 0x2000 + (la & 0xfff);
}

static void build_tables(struct guest_mem *m)
{
	unsigned int i;

	put64(m, 0x1000, 0x2000 | P | RW | US);
	put64(m, 0x1000 + 8 * 511, 0x6000 | P | RW);
	put64(m, 0x2000, 0x3000 | P | RW | US);
	put64(m, 0x2000 + 8 * 1, 0x0 | P | RW | PS);
	put64(m, 0x3000 + 8 * 2, 0x4000 | P | RW | US);
	put64(m, 0x3000 + 8 * 3, 0x800000 | P | RW | PS);
	for (i = 0; i < 16; i++)
		put64(m, 0x4000 + 8 * i, (0x100000 + i * 0x2000ULL) | P | RW);
	put64(m, 0x4000 + 8 * 16, 0x120000 | RW); /* not present */
	put64(m, 0x4000 + 8 * 17, 0x10000000 | P | RW);
	put64(m, 0x4000 + 8 * 18, 0x130000 | P | RW | US);
	put64(m, 0x5000, 0x1000 | P | RW | US);
	put64(m, 0x6000 + 8 * 510, 0x0 | P | RW | PS);
}

static int setup(void **state)
{
	struct fixture *f = test_calloc(1, sizeof(*f));
	struct kvm_sregs *s = &f->ctx.sregs;

	assert_int_equal(guest_mem__init(&f->mem, 64 * MiB), 0);
	build_tables(&f->mem);
	f->ctx.mem = &f->mem;
	s->cr0 = 0x80000011; /* PG, ET, PE */
	s->cr3 = 0x1000;
	s->cr4 = 0x20;	 /* PAE */
	s->efer = 0x500; /* LME, LMA */
	s->cs.l = 1;
	f->ctx.regs.rip = RIP;
	f->ctx.regs.rflags = 0x2;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	guest_mem__exit(&f->mem);
	test_free(f);
	return 0;
}

static int emu(struct emulate_ctx *c, const uint8_t *bytes, unsigned int n)
{
	memset(c->insn, 0, sizeof(c->insn));
	memcpy(c->insn, bytes, n);
	c->insn_len = n;
	return emulate__complete(c);
}

#define EMU(c, ...)                                                                                \
	({                                                                                         \
		static const uint8_t b_[] = {__VA_ARGS__};                                         \
		emu(c, b_, sizeof(b_));                                                            \
	})

/* ---- int3, clac, stac, fwait -------------------------------------------------- */

static void test_int3_injects_bp_past_it(void **state)
{
	struct fixture *f = *state;
	struct kvm_regs before = f->ctx.regs;

	f->ctx.regs.rflags |= RF_RF;
	assert_int_equal(EMU(&f->ctx, 0xcc, 0x90, 0x90), 0);
	assert_int_equal(f->ctx.regs.rip, RIP + 1);
	assert_int_equal(f->ctx.len, 1);
	assert_string_equal(f->ctx.name, "int3");
	assert_true(f->ctx.exc.valid);
	assert_int_equal(f->ctx.exc.vector, 3);
	assert_false(f->ctx.exc.has_error_code);
	assert_int_equal(f->ctx.regs.rflags, before.rflags); /* RF cleared, rest kept */
	assert_int_equal(f->ctx.regs.rax, before.rax);
}

static void test_clac_stac(void **state)
{
	struct fixture *f = *state;

	f->ctx.regs.rflags = 0x2 | RF_AC | RF_CF;
	assert_int_equal(EMU(&f->ctx, 0x0f, 0x01, 0xca), 0);
	assert_int_equal(f->ctx.regs.rflags, 0x2 | RF_CF);
	assert_int_equal(f->ctx.regs.rip, RIP + 3);
	assert_false(f->ctx.exc.valid);
	assert_string_equal(f->ctx.name, "clac");
	assert_int_equal(EMU(&f->ctx, 0x0f, 0x01, 0xcb), 0);
	assert_int_equal(f->ctx.regs.rflags, 0x2 | RF_AC | RF_CF);
	assert_int_equal(f->ctx.regs.rip, RIP + 6);
	assert_string_equal(f->ctx.name, "stac");
	/* Outside ring 0 the CPU raises #UD: not ours to guess. */
	f->ctx.sregs.cs.dpl = 3;
	assert_int_equal(EMU(&f->ctx, 0x0f, 0x01, 0xca), -ENOTSUP);
	assert_int_equal(EMU(&f->ctx, 0x0f, 0x01, 0xcb), -ENOTSUP);
	assert_int_equal(f->ctx.regs.rip, RIP + 6);
}

static void test_fwait(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(EMU(&f->ctx, 0x9b), 0);
	assert_int_equal(f->ctx.regs.rip, RIP + 1);
	assert_string_equal(f->ctx.name, "fwait");
	f->ctx.fpu.fsw = 0x80; /* ES: #MF pending */
	assert_int_equal(EMU(&f->ctx, 0x9b), -ENOTSUP);
	f->ctx.fpu.fsw = 0;
	f->ctx.sregs.cr0 |= 0xa; /* MP and TS: #NM */
	assert_int_equal(EMU(&f->ctx, 0x9b), -ENOTSUP);
	f->ctx.sregs.cr0 &= ~0x8ULL; /* MP alone */
	assert_int_equal(EMU(&f->ctx, 0x9b), 0);
	assert_int_equal(f->ctx.regs.rip, RIP + 2);
}

/* ---- ldmxcsr ------------------------------------------------------------------- */

static void test_ldmxcsr(void **state)
{
	struct fixture *f = *state;
	struct kvm_regs *r = &f->ctx.regs;
	const uint64_t la = LA_4K + 0x1004;
	uint32_t v = 0x9fc0; /* FTZ, DAZ, all masked */

	f->ctx.sregs.cr4 |= 0x200; /* OSFXSR */
	f->ctx.fpu.mxcsr = 0x1f80;
	assert_int_equal(guest_mem__write(&f->mem, pa_4k(la), &v, sizeof(v)), 0);
	r->rsp = la - 4;
	assert_int_equal(EMU(&f->ctx, 0x0f, 0xae, 0x54, 0x24, 0x04), 0); /* ldmxcsr 4(%rsp) */
	assert_string_equal(f->ctx.name, "ldmxcsr");
	assert_true(f->ctx.fpu_changed);
	assert_int_equal(f->ctx.fpu.mxcsr, 0x9fc0);
	assert_int_equal(r->rip, RIP + 5);
	assert_false(f->ctx.exc.valid);

	/* Reserved bits: #GP(0), RIP on the instruction, MXCSR unchanged. */
	v = 0x10000 | 0x1f80;
	assert_int_equal(guest_mem__write(&f->mem, pa_4k(la), &v, sizeof(v)), 0);
	assert_int_equal(EMU(&f->ctx, 0x0f, 0xae, 0x54, 0x24, 0x04), 0);
	assert_true(f->ctx.exc.valid && f->ctx.exc.fault);
	assert_int_equal(f->ctx.exc.vector, 13);
	assert_true(f->ctx.exc.has_error_code);
	assert_int_equal(f->ctx.exc.error_code, 0);
	assert_false(f->ctx.fpu_changed);
	assert_int_equal(f->ctx.fpu.mxcsr, 0x9fc0);
	assert_int_equal(r->rip, RIP + 5);

	/* Not ldmxcsr: stmxcsr (/3), a register form, a 66 prefix; no OSFXSR; CR0.TS. */
	assert_int_equal(EMU(&f->ctx, 0x0f, 0xae, 0x5c, 0x24, 0x04), -ENOTSUP);
	assert_int_equal(EMU(&f->ctx, 0x0f, 0xae, 0xd0), -ENOTSUP);
	assert_int_equal(EMU(&f->ctx, 0x66, 0x0f, 0xae, 0x54, 0x24, 0x04), -ENOTSUP);
	f->ctx.sregs.cr0 |= 0x8;
	assert_int_equal(EMU(&f->ctx, 0x0f, 0xae, 0x54, 0x24, 0x04), -ENOTSUP);
	f->ctx.sregs.cr0 &= ~0x8ULL;
	f->ctx.sregs.cr4 &= ~0x200ULL;
	assert_int_equal(EMU(&f->ctx, 0x0f, 0xae, 0x54, 0x24, 0x04), -ENOTSUP);
	assert_false(f->ctx.fpu_changed);
	assert_null(f->ctx.name);
	assert_int_equal(r->rip, RIP + 5);
}

/* ---- popcnt with a register source -------------------------------------------- */

static void test_popcnt_r32(void **state)
{
	struct fixture *f = *state;
	struct kvm_regs *r = &f->ctx.regs;

	r->rax = 0xdeadbeefffffffffULL;
	r->rcx = 0xffffffff0000000fULL;
	r->rflags = 0x2 | ARITH | RF_AC;
	assert_int_equal(EMU(&f->ctx, 0xf3, 0x0f, 0xb8, 0xc1), 0); /* popcnt eax, ecx */
	assert_int_equal(r->rax, 4);				   /* zero-extended */
	assert_int_equal(r->rcx, 0xffffffff0000000fULL);
	assert_int_equal(r->rflags, 0x2 | RF_AC);
	assert_int_equal(r->rip, RIP + 4);
	assert_int_equal(f->ctx.len, 4);
	assert_false(f->ctx.exc.valid);
	assert_string_equal(f->ctx.name, "popcnt");
}

static void test_popcnt_r64(void **state)
{
	struct fixture *f = *state;
	struct kvm_regs *r = &f->ctx.regs;

	r->rcx = 0xffffffff0000000fULL;
	assert_int_equal(EMU(&f->ctx, 0xf3, 0x48, 0x0f, 0xb8, 0xc1), 0); /* popcnt rax, rcx */
	assert_int_equal(r->rax, 36);
	assert_int_equal(r->rip, RIP + 5);
	/* REX.WRB: popcnt r9, r8 */
	r->r8 = ~0ULL;
	r->r9 = 5;
	assert_int_equal(EMU(&f->ctx, 0xf3, 0x4d, 0x0f, 0xb8, 0xc8), 0);
	assert_int_equal(r->r9, 64);
	assert_int_equal(r->r8, ~0ULL);
	/* popcnt rsp, rsp: register 4 is RSP in the r/m and reg fields */
	r->rsp = 0x7;
	assert_int_equal(EMU(&f->ctx, 0xf3, 0x48, 0x0f, 0xb8, 0xe4), 0);
	assert_int_equal(r->rsp, 3);
}

static void test_popcnt_r16(void **state)
{
	struct fixture *f = *state;
	struct kvm_regs *r = &f->ctx.regs;

	r->rax = 0x1111222233334444ULL;
	r->rcx = 0xffffffffffff000fULL;
	assert_int_equal(EMU(&f->ctx, 0x66, 0xf3, 0x0f, 0xb8, 0xc1), 0); /* popcnt ax, cx */
	assert_int_equal(r->rax, 0x1111222233330004ULL);		 /* upper bits kept */
	assert_int_equal(r->rip, RIP + 5);
	/* Prefixes in either order; REX.W wins over 66. */
	assert_int_equal(EMU(&f->ctx, 0xf3, 0x66, 0x0f, 0xb8, 0xc1), 0);
	assert_int_equal(r->rax, 0x1111222233330004ULL);
	assert_int_equal(EMU(&f->ctx, 0x66, 0xf3, 0x48, 0x0f, 0xb8, 0xc1), 0);
	assert_int_equal(r->rax, 52);
}

static void test_popcnt_zero_sets_zf(void **state)
{
	struct fixture *f = *state;
	struct kvm_regs *r = &f->ctx.regs;

	r->rax = 99;
	r->rcx = 0xffffffff00000000ULL; /* zero as a 32-bit source */
	r->rflags = 0x2 | RF_CF | RF_SF;
	assert_int_equal(EMU(&f->ctx, 0xf3, 0x0f, 0xb8, 0xc1), 0);
	assert_int_equal(r->rax, 0);
	assert_int_equal(r->rflags, 0x2 | RF_ZF);
}

/* ---- popcnt with a memory source ---------------------------------------------- */

struct mem_case {
	const char *what;
	uint8_t bytes[12];
	unsigned int len;
	uint64_t rbx, rcx;
	uint64_t la;	 /* where the operand is */
	uint64_t expect; /* in RAX */
};

static void run_mem_case(struct fixture *f, const struct mem_case *c, uint64_t gpa)
{
	struct kvm_regs *r = &f->ctx.regs;
	uint64_t v = 0x00ff00ff0f0f0f0fULL; /* 16 in the low 32 bits, 48 in all 64 */

	put64(&f->mem, gpa, v);
	r->rip = RIP;
	r->rax = 0x1234555555555555ULL;
	r->rbx = c->rbx;
	r->rcx = c->rcx;
	if (emu(&f->ctx, c->bytes, c->len))
		fail_msg("%s: not completed", c->what);
	if (r->rax != c->expect || r->rip != RIP + c->len)
		fail_msg("%s: rax %llu rip +%llu", c->what, (unsigned long long)r->rax,
			 (unsigned long long)(r->rip - RIP));
	put64(&f->mem, gpa, 0);
}

static void test_popcnt_memory_forms(void **state)
{
	struct fixture *f = *state;
	const uint64_t la = LA_4K + 0x1010; /* in the second page */
	const struct mem_case cases[] = {
	    {"[rbx]", {0xf3, 0x0f, 0xb8, 0x03}, 4, la, 0, la, 16},
	    {"[rbx] 64-bit", {0xf3, 0x48, 0x0f, 0xb8, 0x03}, 5, la, 0, la, 32},
	    {"[rbx] 16-bit", {0x66, 0xf3, 0x0f, 0xb8, 0x03}, 5, la, 0, la, 0x1234555555550008ULL},
	    {"[rbx+disp8]", {0xf3, 0x0f, 0xb8, 0x43, 0xf0}, 5, la + 0x10, 0, la, 16},
	    {"[rbx+disp32]", {0xf3, 0x0f, 0xb8, 0x83, 0x10, 0x10, 0x00, 0x00}, 8, LA_4K, 0, la, 16},
	    {"[rbx+rcx*8]", {0xf3, 0x48, 0x0f, 0xb8, 0x04, 0xcb}, 6, LA_4K, 0x1010 / 8, la, 32},
	    {"[rbx+rcx*2+disp8]", {0xf3, 0x0f, 0xb8, 0x44, 0x4b, 0x08}, 6, LA_4K, 0x804, la, 16},
	    {"[disp32] (SIB, no base, no index)",
	     {0xf3, 0x0f, 0xb8, 0x04, 0x25, 0x10, 0x10, 0x40, 0x00},
	     9,
	     0,
	     0,
	     la,
	     16},
	    {"[rcx*4+disp32] (SIB, no base)",
	     {0xf3, 0x0f, 0xb8, 0x04, 0x8d, 0x00, 0x00, 0x40, 0x00},
	     9,
	     0,
	     0x1010 / 4,
	     la,
	     16},
	    /* Next RIP is RIP+8: disp = la - (RIP + 8), a negative 32-bit number (0xff801008). */
	    {"[rip+disp32]", {0xf3, 0x0f, 0xb8, 0x05, 0x08, 0x10, 0x80, 0xff}, 8, 0, 0, la, 16},
	    /* mod=0, base=5 with REX.B is still "no base" in SIB, and rm=5 RIP-relative. */
	    {"[rip+disp32] with REX.B",
	     {0xf3, 0x41, 0x0f, 0xb8, 0x05, 0x07, 0x10, 0x80, 0xff},
	     9,
	     0,
	     0,
	     la,
	     16},
	    {"[rbx+r12] (REX.X index 4 is r12)",
	     {0xf3, 0x42, 0x0f, 0xb8, 0x04, 0x23},
	     6,
	     LA_4K,
	     0,
	     la,
	     16},
	};
	unsigned int i;

	/* r12 for the REX.X case */
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		f->ctx.regs.r12 = 0x1010;
		run_mem_case(f, &cases[i], pa_4k(cases[i].la));
	}
}

static void test_popcnt_memory_reg_operands(void **state)
{
	struct fixture *f = *state;
	struct kvm_regs *r = &f->ctx.regs;

	/* popcnt r10, [r13+disp8]: REX.WRB, mod=1 rm=5 (r13 base, not RIP-relative) */
	put64(&f->mem, pa_4k(LA_4K + 0x20), 0xffULL);
	r->r13 = LA_4K + 0x10;
	assert_int_equal(EMU(&f->ctx, 0xf3, 0x4d, 0x0f, 0xb8, 0x55, 0x10), 0);
	assert_int_equal(r->r10, 8);
	/* popcnt eax, [rsp+8]: SIB with base RSP */
	r->rsp = LA_4K + 0x18;
	assert_int_equal(EMU(&f->ctx, 0xf3, 0x0f, 0xb8, 0x44, 0x24, 0x08), 0);
	assert_int_equal(r->rax, 8);
}

static void test_popcnt_large_pages(void **state)
{
	struct fixture *f = *state;
	struct kvm_regs *r = &f->ctx.regs;
	uint64_t gpa;

	put64(&f->mem, 0x800123, 0x7);
	r->rbx = LA_2M + 0x123;
	assert_int_equal(EMU(&f->ctx, 0xf3, 0x0f, 0xb8, 0x03), 0);
	assert_int_equal(r->rax, 3);
	assert_int_equal(emulate__translate(&f->ctx, LA_2M + 0x1fffff, &gpa), 0);
	assert_int_equal(gpa, 0x800000 + 0x1fffff);

	put64(&f->mem, 0x2345678, 0xf);
	r->rbx = LA_1G + 0x2345678;
	assert_int_equal(EMU(&f->ctx, 0xf3, 0x0f, 0xb8, 0x03), 0);
	assert_int_equal(r->rax, 4);

	/* Linux's kernel mapping: upper half, sign-extended. */
	put64(&f->mem, 0x300000, 0x1f);
	r->rbx = LA_KERNEL + 0x300000;
	assert_int_equal(EMU(&f->ctx, 0xf3, 0x0f, 0xb8, 0x03), 0);
	assert_int_equal(r->rax, 5);
}

static void test_popcnt_five_level(void **state)
{
	struct fixture *f = *state;
	struct kvm_regs *r = &f->ctx.regs;
	uint64_t gpa;

	f->ctx.sregs.cr4 |= 1ULL << 12; /* LA57 */
	f->ctx.sregs.cr3 = 0x5000;
	put64(&f->mem, pa_4k(LA_4K + 0x2008), 0x3);
	r->rbx = LA_4K + 0x2008;
	assert_int_equal(EMU(&f->ctx, 0xf3, 0x0f, 0xb8, 0x03), 0);
	assert_int_equal(r->rax, 2);
	/* 48-bit canonical is not 57-bit canonical: 0xffff800000000000 has PML5 index 511. */
	assert_int_equal(emulate__translate(&f->ctx, 0xffff800000000000ULL, &gpa), -EFAULT);
	/* Canonical in 57 bits, not present at PML5[1]. */
	assert_int_equal(emulate__translate(&f->ctx, 1ULL << 48, &gpa), -EFAULT);
	/* Not canonical in 57 bits. */
	assert_int_equal(emulate__translate(&f->ctx, 1ULL << 57, &gpa), -EFAULT);
}

static void test_popcnt_segment_base(void **state)
{
	struct fixture *f = *state;
	struct kvm_regs *r = &f->ctx.regs;

	put64(&f->mem, pa_4k(LA_4K + 0x3040), 0x3f);
	f->ctx.sregs.fs.base = LA_4K + 0x3000;
	f->ctx.sregs.gs.base = LA_4K + 0x3000 - 0x40;
	f->ctx.sregs.ds.base = 0x123456; /* ignored in 64-bit mode */
	r->rbx = 0x40;
	assert_int_equal(EMU(&f->ctx, 0x64, 0xf3, 0x0f, 0xb8, 0x03), 0); /* fs: */
	assert_int_equal(r->rax, 6);
	r->rbx = 0x80;
	assert_int_equal(EMU(&f->ctx, 0xf3, 0x65, 0x0f, 0xb8, 0x03), 0); /* gs: */
	assert_int_equal(r->rax, 6);
	/* Two segment overrides: not accepted. */
	assert_int_equal(EMU(&f->ctx, 0x64, 0x65, 0xf3, 0x0f, 0xb8, 0x03), -ENOTSUP);
}

static void test_popcnt_straddles_pages(void **state)
{
	struct fixture *f = *state;
	struct kvm_regs *r = &f->ctx.regs;
	uint64_t lo = 0xffffffff00000000ULL, hi = 0xf;

	/* 8 bytes at 0x400ffc: 4 in the first page, 4 in the second (not adjacent in RAM). */
	assert_int_equal(guest_mem__write(&f->mem, pa_4k(LA_4K + 0xffc), (uint8_t *)&lo + 4, 4), 0);
	assert_int_equal(guest_mem__write(&f->mem, pa_4k(LA_4K + 0x1000), &hi, 4), 0);
	r->rbx = LA_4K + 0xffc;
	assert_int_equal(EMU(&f->ctx, 0xf3, 0x48, 0x0f, 0xb8, 0x03), 0);
	assert_int_equal(r->rax, 36);
}

/* Fewer bytes than the instruction from KVM: the rest comes from CS:RIP in memory. */
static void test_short_bytes_fetched_from_rip(void **state)
{
	struct fixture *f = *state;
	struct kvm_regs *r = &f->ctx.regs;
	static const uint8_t code[] = {0xf3, 0x48, 0x0f, 0xb8, 0xc1};

	assert_int_equal(guest_mem__write(&f->mem, pa_4k(LA_4K + 0x5000), code, sizeof(code)), 0);
	r->rip = LA_4K + 0x5000;
	r->rcx = 0xff;
	assert_int_equal(emu(&f->ctx, code, 2), 0);
	assert_int_equal(r->rax, 8);
	assert_int_equal(r->rip, LA_4K + 0x5005);
	r->rip = LA_4K + 0x5000;
	r->rax = 0;
	assert_int_equal(emu(&f->ctx, code, 0), 0);
	assert_int_equal(r->rax, 8);
}

/* ---- rejections ---------------------------------------------------------------- */

static void expect_rejected(struct fixture *f, const uint8_t *b, unsigned int n, int err)
{
	struct kvm_regs before = f->ctx.regs;

	assert_int_equal(emu(&f->ctx, b, n), err);
	assert_memory_equal(&before, &f->ctx.regs, sizeof(before));
	assert_false(f->ctx.exc.valid);
}

#define REJECT(f, err, ...)                                                                        \
	do {                                                                                       \
		static const uint8_t b_[] = {__VA_ARGS__};                                         \
		expect_rejected(f, b_, sizeof(b_), err);                                           \
	} while (0)

static void test_rejects_unknown_and_prefixed(void **state)
{
	struct fixture *f = *state;

	f->ctx.regs.rcx = 1;
	f->ctx.regs.rbx = LA_4K;
	REJECT(f, -ENOTSUP, 0xf0, 0xf3, 0x0f, 0xb8, 0xc1);	 /* LOCK */
	REJECT(f, -ENOTSUP, 0xf3, 0xf0, 0x0f, 0xb8, 0xc1);	 /* LOCK after F3 */
	REJECT(f, -ENOTSUP, 0x0f, 0xb8, 0xc1);			 /* no F3 */
	REJECT(f, -ENOTSUP, 0xf2, 0x0f, 0xb8, 0xc1);		 /* F2, not F3 */
	REJECT(f, -ENOTSUP, 0xf3, 0xf3, 0x0f, 0xb8, 0xc1);	 /* F3 twice */
	REJECT(f, -ENOTSUP, 0x67, 0xf3, 0x0f, 0xb8, 0x03);	 /* address size */
	REJECT(f, -ENOTSUP, 0x2e, 0xf3, 0x0f, 0xb8, 0x03);	 /* CS override */
	REJECT(f, -ENOTSUP, 0x48, 0xf3, 0x0f, 0xb8, 0xc1);	 /* REX not last */
	REJECT(f, -ENOTSUP, 0xf3, 0x48, 0x48, 0x0f, 0xb8, 0xc1); /* two REX */
	REJECT(f, -ENOTSUP, 0x66, 0xcc);			 /* prefixed int3 */
	REJECT(f, -ENOTSUP, 0x48, 0xcc);
	REJECT(f, -ENOTSUP, 0xf3, 0x9b);
	REJECT(f, -ENOTSUP, 0x66, 0x0f, 0x01, 0xca);
	REJECT(f, -ENOTSUP, 0x0f, 0x01, 0xcc);	     /* not clac/stac */
	REJECT(f, -ENOTSUP, 0x48, 0x0f, 0xc7, 0x0e); /* cmpxchg16b */
	REJECT(f, -ENOTSUP, 0x0f, 0xae, 0x2f);	     /* xrstor */
	REJECT(f, -ENOTSUP, 0x90);		     /* nop: KVM's own */
	REJECT(f, -ENOTSUP, 0xcd, 0x03);	     /* int 3, not int3 */
	REJECT(f, -ENOTSUP, 0x66, 0x66, 0x66, 0x66, 0x66);
}

static void test_rejects_truncated(void **state)
{
	struct fixture *f = *state;

	/* RIP is not mapped: the missing bytes cannot be fetched. */
	REJECT(f, -ENOTSUP, 0xf3, 0x0f, 0xb8);
	REJECT(f, -ENOTSUP, 0xf3, 0x0f, 0xb8, 0x83, 0x10, 0x10); /* half a disp32 */
	REJECT(f, -ENOTSUP, 0xf3, 0x0f, 0xb8, 0x04);		 /* no SIB */
	REJECT(f, -ENOTSUP, 0x0f, 0x01);
	REJECT(f, -ENOTSUP, 0xf3);
	expect_rejected(f, (const uint8_t *)"", 0, -ENOTSUP);
	/* The instruction runs into a page that is not present. */
	f->ctx.regs.rip = LA_NP - 2;
	REJECT(f, -ENOTSUP, 0xf3, 0x0f);
}

static void test_rejects_bad_memory(void **state)
{
	struct fixture *f = *state;
	struct kvm_regs *r = &f->ctx.regs;

	r->rbx = LA_NP;
	REJECT(f, -EFAULT, 0xf3, 0x0f, 0xb8, 0x03); /* PTE not present */
	r->rbx = 0xa00000;
	REJECT(f, -EFAULT, 0xf3, 0x0f, 0xb8, 0x03); /* PDE not present */
	r->rbx = 0x8000000000ULL;
	REJECT(f, -EFAULT, 0xf3, 0x0f, 0xb8, 0x03); /* PML4E not present */
	r->rbx = LA_OUTSIDE;
	REJECT(f, -EFAULT, 0xf3, 0x0f, 0xb8, 0x03); /* page outside RAM */
	r->rbx = 0x0000800000000000ULL;
	REJECT(f, -EFAULT, 0xf3, 0x0f, 0xb8, 0x03); /* not canonical */
	r->rbx = LA_4K + 0xffc + 0xf000;
	REJECT(f, -EFAULT, 0xf3, 0x48, 0x0f, 0xb8, 0x03); /* second half not present */
	/* A page table outside RAM. */
	f->ctx.sregs.cr3 = 0x7ff0000000ULL;
	r->rbx = LA_4K;
	REJECT(f, -EFAULT, 0xf3, 0x0f, 0xb8, 0x03);
	f->ctx.sregs.cr3 = 0x1000;
	/* Paging off: no walk. */
	f->ctx.sregs.cr0 &= ~0x80000000ULL;
	REJECT(f, -EFAULT, 0xf3, 0x0f, 0xb8, 0x03);
}

static void test_rejects_bad_entries(void **state)
{
	struct fixture *f = *state;
	struct kvm_regs *r = &f->ctx.regs;

	/* PS in a PML4 entry is reserved. */
	put64(&f->mem, 0x1000 + 8 * 2, 0x0 | P | PS);
	r->rbx = 2ULL << 39;
	REJECT(f, -EFAULT, 0xf3, 0x0f, 0xb8, 0x03);
	/* A 2 MiB entry with reserved bits 20:13 set. */
	put64(&f->mem, 0x3000 + 8 * 4, 0xa02000 | P | PS);
	r->rbx = 0x800000;
	REJECT(f, -EFAULT, 0xf3, 0x0f, 0xb8, 0x03);
	/* A 1 GiB entry with reserved bits 29:13 set. */
	put64(&f->mem, 0x2000 + 8 * 2, 0x40100000 | P | PS);
	r->rbx = 2 * GiB;
	REJECT(f, -EFAULT, 0xf3, 0x0f, 0xb8, 0x03);
}

static void test_user_pages_and_smap(void **state)
{
	struct fixture *f = *state;
	struct kvm_regs *r = &f->ctx.regs;

	put64(&f->mem, 0x130000, 1);
	r->rbx = LA_USER;
	assert_int_equal(EMU(&f->ctx, 0xf3, 0x0f, 0xb8, 0x03), 0); /* no SMAP */
	assert_int_equal(r->rax, 1);
	r->rip = RIP;
	f->ctx.sregs.cr4 |= 1ULL << 21;
	REJECT(f, -EFAULT, 0xf3, 0x0f, 0xb8, 0x03);
	r->rflags |= RF_AC;
	assert_int_equal(EMU(&f->ctx, 0xf3, 0x0f, 0xb8, 0x03), 0);
	/* Ring 3 cannot read a supervisor page. */
	r->rip = RIP;
	f->ctx.sregs.cs.dpl = 3;
	r->rbx = LA_4K;
	REJECT(f, -EFAULT, 0xf3, 0x0f, 0xb8, 0x03);
	r->rbx = LA_USER;
	assert_int_equal(EMU(&f->ctx, 0xf3, 0x0f, 0xb8, 0x03), 0);
}

static void test_rejects_mode_and_tf(void **state)
{
	struct fixture *f = *state;

	f->ctx.regs.rflags |= RF_TF;
	REJECT(f, -ENOTSUP, 0xcc);
	f->ctx.regs.rflags &= ~RF_TF;
	f->ctx.sregs.cs.l = 0; /* compatibility mode */
	REJECT(f, -ENOTSUP, 0xcc);
	f->ctx.sregs.cs.l = 1;
	f->ctx.sregs.efer = 0;
	REJECT(f, -ENOTSUP, 0x9b);
}

static void test_init_from_run(void **state)
{
	struct kvm_run run;
	struct emulate_ctx c;

	(void)state;
	memset(&run, 0, sizeof(run));
	memset(&c, 0, sizeof(c));
	run.exit_reason = KVM_EXIT_INTERNAL_ERROR;
	run.emulation_failure.suberror = KVM_INTERNAL_ERROR_EMULATION;
	run.emulation_failure.ndata = 3;
	run.emulation_failure.flags = KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES;
	run.emulation_failure.insn_size = 200; /* clamped */
	memset(run.emulation_failure.insn_bytes, 0xcc, sizeof(run.emulation_failure.insn_bytes));
	emulate__init_from_run(&c, &run);
	assert_int_equal(c.insn_len, 15);
	assert_int_equal(c.insn[14], 0xcc);
	run.emulation_failure.insn_size = 3;
	emulate__init_from_run(&c, &run);
	assert_int_equal(c.insn_len, 3);
	run.emulation_failure.flags = 0;
	emulate__init_from_run(&c, &run);
	assert_int_equal(c.insn_len, 0);
	run.emulation_failure.flags = KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES;
	run.emulation_failure.suberror = 2;
	emulate__init_from_run(&c, &run);
	assert_int_equal(c.insn_len, 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_int3_injects_bp_past_it),
	    T(test_clac_stac),
	    T(test_fwait),
	    T(test_ldmxcsr),
	    T(test_popcnt_r32),
	    T(test_popcnt_r64),
	    T(test_popcnt_r16),
	    T(test_popcnt_zero_sets_zf),
	    T(test_popcnt_memory_forms),
	    T(test_popcnt_memory_reg_operands),
	    T(test_popcnt_large_pages),
	    T(test_popcnt_five_level),
	    T(test_popcnt_segment_base),
	    T(test_popcnt_straddles_pages),
	    T(test_short_bytes_fetched_from_rip),
	    T(test_rejects_unknown_and_prefixed),
	    T(test_rejects_truncated),
	    T(test_rejects_bad_memory),
	    T(test_rejects_bad_entries),
	    T(test_user_pages_and_smap),
	    T(test_rejects_mode_and_tf),
	    cmocka_unit_test(test_init_from_run),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
