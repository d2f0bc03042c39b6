// SPDX-License-Identifier: GPL-2.0
/*
 * Completes, for kvm_pvm, the few instructions its emulator cannot run: int3,
 * clac/stac, popcnt, fwait and ldmxcsr (docs/linux-guests.md says why these). 64-bit mode only.
 * A form table says which prefixes each instruction takes; anything else is
 * -ENOTSUP, so the VMM stops with its report rather than guess.
 */
#include <errno.h>
#include <string.h>

#include "godwit/emulate.h"

#define RFLAGS_CF (1ULL << 0)
#define RFLAGS_PF (1ULL << 2)
#define RFLAGS_AF (1ULL << 4)
#define RFLAGS_ZF (1ULL << 6)
#define RFLAGS_SF (1ULL << 7)
#define RFLAGS_TF (1ULL << 8)
#define RFLAGS_OF (1ULL << 11)
#define RFLAGS_RF (1ULL << 16)
#define RFLAGS_AC (1ULL << 18)

#define CR0_MP	 (1ULL << 1)
#define CR0_EM	 (1ULL << 2)
#define CR0_TS	 (1ULL << 3)
#define CR0_PG	 (1ULL << 31)
#define CR4_OSFXSR (1ULL << 9)
#define CR4_LA57 (1ULL << 12)
#define CR4_SMAP (1ULL << 21)
#define EFER_LMA (1ULL << 10)

#define FSW_ES (1u << 7) /* x87 error summary */
/* MXCSR bits 31:16 are reserved on every CPU with SSE (MXCSR_MASK 0xffff or 0xffbf). */
#define MXCSR_RESERVED 0xffff0000u

#define PTE_P	 (1ULL << 0)
#define PTE_US	 (1ULL << 2)
#define PTE_PS	 (1ULL << 7)
#define PTE_ADDR 0x000ffffffffff000ULL /* bits 51:12 */
#define CR3_ADDR PTE_ADDR

/* Legacy prefixes and REX, as bits of a set. */
#define PFX_REP	 (1u << 0) /* F3 */
#define PFX_OPSZ (1u << 1) /* 66 */
#define PFX_FS	 (1u << 2) /* 64 */
#define PFX_GS	 (1u << 3) /* 65 */
#define PFX_REX	 (1u << 4) /* 40-4F */

#define REX_W 0x8
#define REX_R 0x4
#define REX_X 0x2
#define REX_B 0x1

/* The instruction as decoded so far. */
struct insn {
	uint8_t bytes[EMULATE_MAX_INSN];
	unsigned int avail; /* bytes known */
	unsigned int pos;   /* next byte to decode */
	unsigned int prefixes;
	uint8_t rex;
	uint8_t modrm;
	uint8_t sib;
	int64_t disp;
	bool rip_relative;
};

struct insn_form {
	const char *name;
	uint8_t opcode[3];
	unsigned int opcode_len;
	unsigned int need;  /* prefixes that must be there */
	unsigned int allow; /* prefixes that may be there (a superset of need) */
	bool modrm;
	int (*exec)(struct emulate_ctx *ctx, struct insn *in, struct kvm_regs *r);
};

/* ---- guest memory: page-table walk ---------------------------------------- */

static int read_phys_u64(const struct emulate_ctx *ctx, uint64_t gpa, uint64_t *val)
{
	const void *p = guest_mem__ptr(ctx->mem, gpa, sizeof(*val));

	if (!p)
		return -EFAULT;
	memcpy(val, p, sizeof(*val));
	return 0;
}

static bool canonical(uint64_t la, unsigned int bits)
{
	int64_t s = (int64_t)(la << (64 - bits)) >> (64 - bits);

	return (uint64_t)s == la;
}

/*
 * Reserved bits of a large-page entry between the PAT bit (12) and the page's base;
 * set ones make the CPU fault (RSVD), so they do here too.
 */
static bool large_reserved(uint64_t e, unsigned int shift)
{
	uint64_t mask = ((1ULL << shift) - 1) & ~((1ULL << 13) - 1);

	return e & mask;
}

int emulate__translate(const struct emulate_ctx *ctx, uint64_t la, uint64_t *gpa)
{
	const struct kvm_sregs *s = &ctx->sregs;
	unsigned int levels = (s->cr4 & CR4_LA57) ? 5 : 4;
	unsigned int shift = 12 + 9 * (levels - 1); /* 48 or 39: the top level's */
	uint64_t table = s->cr3 & CR3_ADDR, e = 0;
	bool user = true;
	unsigned int level;

	if (!(s->cr0 & CR0_PG) || !(s->efer & EFER_LMA) || !ctx->mem)
		return -EFAULT;
	if (!canonical(la, shift + 9))
		return -EFAULT;
	for (level = levels; level >= 1; level--, shift -= 9) {
		if (read_phys_u64(ctx, table + 8 * ((la >> shift) & 0x1ff), &e))
			return -EFAULT;
		if (!(e & PTE_P))
			return -EFAULT;
		user = user && (e & PTE_US);
		if (level == 1)
			break;
		if (e & PTE_PS) {
			/* 1 GiB at level 3, 2 MiB at level 2; PS is reserved above. */
			if (level > 3 || large_reserved(e, shift))
				return -EFAULT;
			break;
		}
		table = e & PTE_ADDR;
	}
	/* A supervisor read of a user page faults under SMAP unless RFLAGS.AC. */
	if (user && ctx->sregs.cs.dpl < 3 && (s->cr4 & CR4_SMAP) && !(ctx->regs.rflags & RFLAGS_AC))
		return -EFAULT;
	if (!user && ctx->sregs.cs.dpl == 3)
		return -EFAULT;
	*gpa = (e & PTE_ADDR & ~((1ULL << shift) - 1)) | (la & ((1ULL << shift) - 1));
	return 0;
}

/* Reads len bytes at a linear address, page by page (an operand may straddle two). */
static int read_linear(const struct emulate_ctx *ctx, uint64_t la, void *buf, unsigned int len)
{
	uint8_t *out = buf;

	while (len) {
		unsigned int chunk = MIN(len, (unsigned int)(GUEST_PAGE_SIZE - (la & 0xfff)));
		uint64_t gpa;
		const void *p;

		if (emulate__translate(ctx, la, &gpa))
			return -EFAULT;
		p = guest_mem__ptr(ctx->mem, gpa, chunk);
		if (!p)
			return -EFAULT;
		memcpy(out, p, chunk);
		out += chunk;
		la += chunk;
		len -= chunk;
	}
	return 0;
}

/* ---- decoding --------------------------------------------------------------- */

/*
 * KVM reports the bytes it fetched: normally 15, fewer at the end of a page. The rest
 * is read from CS:RIP (CS base is 0 in 64-bit mode), one byte at a time so that a
 * missing next page only matters if the instruction really reaches into it.
 */
static int insn_byte(const struct emulate_ctx *ctx, struct insn *in, uint8_t *b)
{
	if (in->pos >= EMULATE_MAX_INSN)
		return -ENOTSUP;
	if (in->pos >= in->avail) {
		if (in->pos != in->avail || read_linear(ctx, ctx->regs.rip + in->pos, b, 1))
			return -ENOTSUP;
		in->bytes[in->avail++] = *b;
	}
	*b = in->bytes[in->pos++];
	return 0;
}

static int insn_disp(const struct emulate_ctx *ctx, struct insn *in, unsigned int size)
{
	uint8_t b[4];
	unsigned int i;

	for (i = 0; i < size; i++)
		if (insn_byte(ctx, in, &b[i]))
			return -ENOTSUP;
	if (size == 1)
		in->disp = (int8_t)b[0];
	else
		in->disp = (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
				     (uint32_t)b[3] << 24);
	return 0;
}

static unsigned int prefix_bit(uint8_t b)
{
	switch (b) {
	case 0xf3:
		return PFX_REP;
	case 0x66:
		return PFX_OPSZ;
	case 0x64:
		return PFX_FS;
	case 0x65:
		return PFX_GS;
	default:
		return 0;
	}
}

/*
 * Legacy prefixes (only those some form takes; each at most once, one segment), then
 * an optional REX right before the opcode. LOCK (F0), REPNE (F2), the address-size
 * prefix (67), the other segment overrides and a second REX all stop decoding.
 */
static int decode_prefixes(const struct emulate_ctx *ctx, struct insn *in)
{
	unsigned int bit;
	uint8_t b;

	for (;;) {
		if (insn_byte(ctx, in, &b))
			return -ENOTSUP;
		bit = prefix_bit(b);
		if (!bit)
			break;
		if ((in->prefixes & bit) ||
		    ((bit & (PFX_FS | PFX_GS)) && (in->prefixes & (PFX_FS | PFX_GS))))
			return -ENOTSUP;
		in->prefixes |= bit;
	}
	if ((b & 0xf0) == 0x40) {
		in->prefixes |= PFX_REX;
		in->rex = b;
		if (insn_byte(ctx, in, &b) || (b & 0xf0) == 0x40)
			return -ENOTSUP;
	}
	in->pos--; /* the opcode's first byte: read again by match_form */
	return 0;
}

/* Mod/RM, SIB and displacement: only 64-bit addressing (no 67 prefix is accepted). */
static int decode_modrm(const struct emulate_ctx *ctx, struct insn *in)
{
	unsigned int mod, rm;

	if (insn_byte(ctx, in, &in->modrm))
		return -ENOTSUP;
	mod = in->modrm >> 6;
	rm = in->modrm & 7;
	if (mod == 3)
		return 0;
	if (rm == 4 && insn_byte(ctx, in, &in->sib))
		return -ENOTSUP;
	if (rm == 4) {
		/* No base: a 32-bit displacement instead. */
		if (mod == 0 && (in->sib & 7) == 5)
			return insn_disp(ctx, in, 4);
	} else if (mod == 0 && rm == 5) {
		in->rip_relative = true;
		return insn_disp(ctx, in, 4);
	}
	if (mod == 1)
		return insn_disp(ctx, in, 1);
	if (mod == 2)
		return insn_disp(ctx, in, 4);
	return 0;
}

static bool match_opcode(const struct emulate_ctx *ctx, struct insn *in, const struct insn_form *f)
{
	unsigned int i;
	uint8_t b;

	for (i = 0; i < f->opcode_len; i++)
		if (insn_byte(ctx, in, &b) || b != f->opcode[i])
			return false;
	return true;
}

/* ---- operands ----------------------------------------------------------------- */

static __u64 *gpr(struct kvm_regs *r, unsigned int n)
{
	__u64 *regs[16] = {
	    &r->rax, &r->rcx, &r->rdx, &r->rbx, &r->rsp, &r->rbp, &r->rsi, &r->rdi,
	    &r->r8,  &r->r9,  &r->r10, &r->r11, &r->r12, &r->r13, &r->r14, &r->r15,
	};

	return regs[n & 15];
}

static unsigned int operand_size(const struct insn *in)
{
	if (in->rex & REX_W)
		return 8;
	return (in->prefixes & PFX_OPSZ) ? 2 : 4;
}

/* The linear address of the memory operand: base + index * scale + disp (+ FS/GS). */
static uint64_t operand_address(const struct emulate_ctx *ctx, const struct insn *in,
				struct kvm_regs *r)
{
	unsigned int mod = in->modrm >> 6, rm = in->modrm & 7;
	uint64_t la = (uint64_t)in->disp;

	if (in->rip_relative) {
		/* Relative to the next instruction: the whole instruction is decoded now. */
		la += r->rip + in->pos;
	} else if (rm == 4) {
		uint8_t sib = in->sib;
		unsigned int base = (sib & 7) | ((in->rex & REX_B) ? 8 : 0);
		unsigned int index = ((sib >> 3) & 7) | ((in->rex & REX_X) ? 8 : 0);

		if (index != 4)
			la += *gpr(r, index) << (sib >> 6);
		if (!(mod == 0 && (sib & 7) == 5))
			la += *gpr(r, base);
	} else {
		la += *gpr(r, rm | ((in->rex & REX_B) ? 8 : 0));
	}
	if (in->prefixes & PFX_FS)
		la += ctx->sregs.fs.base;
	else if (in->prefixes & PFX_GS)
		la += ctx->sregs.gs.base;
	return la;
}

/* The r/m operand of an operand_size()-byte instruction, zero-extended. */
static int read_rm(const struct emulate_ctx *ctx, const struct insn *in, struct kvm_regs *r,
		   uint64_t *val)
{
	unsigned int size = operand_size(in);
	uint64_t mask = size == 8 ? ~0ULL : (1ULL << (8 * size)) - 1;
	uint64_t v = 0;

	if ((in->modrm >> 6) == 3) {
		*val = *gpr(r, (in->modrm & 7) | ((in->rex & REX_B) ? 8 : 0)) & mask;
		return 0;
	}
	if (read_linear(ctx, operand_address(ctx, in, r), &v, size))
		return -EFAULT;
	*val = v & mask; /* x86 and the host are both little-endian */
	return 0;
}

/* Writes the reg operand as the CPU does: 32-bit zero-extends, 16-bit merges. */
static void write_reg(const struct insn *in, struct kvm_regs *r, uint64_t val)
{
	__u64 *dst = gpr(r, ((in->modrm >> 3) & 7) | ((in->rex & REX_R) ? 8 : 0));

	switch (operand_size(in)) {
	case 8:
		*dst = val;
		break;
	case 4:
		*dst = (uint32_t)val;
		break;
	default:
		*dst = (*dst & ~0xffffULL) | (val & 0xffff);
		break;
	}
}

/* ---- the instructions ------------------------------------------------------------ */

static int exec_int3(struct emulate_ctx *ctx, struct insn *in, struct kvm_regs *r)
{
	(void)in;
	(void)r;
	/* A trap: delivered with RIP already past the int3, as the CPU does. */
	ctx->exc = (struct emulate_exception){.valid = true, .vector = X86_VEC_BP};
	return 0;
}

/*
 * fwait raises #NM when CR0.MP and CR0.TS are both set, and #MF when an unmasked x87
 * exception is pending (FSW.ES): Linux does neither in ring 0, so both stop the VM.
 */
static int exec_fwait(struct emulate_ctx *ctx, struct insn *in, struct kvm_regs *r)
{
	(void)in;
	(void)r;
	if ((ctx->sregs.cr0 & (CR0_MP | CR0_TS)) == (CR0_MP | CR0_TS) || (ctx->fpu.fsw & FSW_ES))
		return -ENOTSUP;
	return 0;
}

/* clac/stac are ring-0 instructions: anywhere else the CPU would have raised #UD. */
static int exec_clac(struct emulate_ctx *ctx, struct insn *in, struct kvm_regs *r)
{
	(void)in;
	if (ctx->sregs.cs.dpl != 0)
		return -ENOTSUP;
	r->rflags &= ~RFLAGS_AC;
	return 0;
}

static int exec_stac(struct emulate_ctx *ctx, struct insn *in, struct kvm_regs *r)
{
	(void)in;
	if (ctx->sregs.cs.dpl != 0)
		return -ENOTSUP;
	r->rflags |= RFLAGS_AC;
	return 0;
}

static int exec_popcnt(struct emulate_ctx *ctx, struct insn *in, struct kvm_regs *r)
{
	uint64_t src;
	int ret;

	ret = read_rm(ctx, in, r, &src);
	if (ret)
		return ret;
	write_reg(in, r, (uint64_t)__builtin_popcountll(src));
	r->rflags &= ~(RFLAGS_OF | RFLAGS_SF | RFLAGS_ZF | RFLAGS_AF | RFLAGS_CF | RFLAGS_PF);
	if (!src)
		r->rflags |= RFLAGS_ZF;
	return 0;
}

/*
 * ldmxcsr m32 (0F AE /2): Linux's kernel_fpu_begin() resets MXCSR with it. #UD/#NM
 * conditions (no OSFXSR, CR0.EM, CR0.TS) stop the VM; reserved bits raise #GP(0) as on
 * the CPU.
 */
static int exec_ldmxcsr(struct emulate_ctx *ctx, struct insn *in, struct kvm_regs *r)
{
	uint32_t v;

	if (((in->modrm >> 3) & 7) != 2 || (in->modrm >> 6) == 3)
		return -ENOTSUP;
	if (!(ctx->sregs.cr4 & CR4_OSFXSR) || (ctx->sregs.cr0 & (CR0_EM | CR0_TS)))
		return -ENOTSUP;
	if (read_linear(ctx, operand_address(ctx, in, r), &v, sizeof(v)))
		return -EFAULT;
	if (v & MXCSR_RESERVED) {
		ctx->exc = (struct emulate_exception){
		    .valid = true, .fault = true, .vector = X86_VEC_GP, .has_error_code = true};
		return 0;
	}
	ctx->fpu.mxcsr = v;
	ctx->fpu_changed = true;
	return 0;
}

static const struct insn_form forms[] = {
    {"int3", {0xcc}, 1, 0, 0, false, exec_int3},
    {"fwait", {0x9b}, 1, 0, 0, false, exec_fwait},
    {"clac", {0x0f, 0x01, 0xca}, 3, 0, 0, false, exec_clac},
    {"stac", {0x0f, 0x01, 0xcb}, 3, 0, 0, false, exec_stac},
    {"popcnt",
     {0x0f, 0xb8},
     2,
     PFX_REP,
     PFX_REP | PFX_OPSZ | PFX_FS | PFX_GS | PFX_REX,
     true,
     exec_popcnt},
    /* 0F AE is a group (fxsave, stmxcsr, fences, ...): exec_ldmxcsr takes /2 only. */
    {"ldmxcsr", {0x0f, 0xae}, 2, 0, PFX_FS | PFX_GS | PFX_REX, true, exec_ldmxcsr},
};

/* Decodes the instruction against one form; 0 when it is exactly that form. */
static int decode_form(const struct emulate_ctx *ctx, struct insn *in, const struct insn_form *f)
{
	unsigned int start = in->pos;

	if ((in->prefixes & f->need) != f->need || (in->prefixes & ~f->allow))
		return -ENOTSUP;
	if (!match_opcode(ctx, in, f)) {
		in->pos = start;
		return -ENOTSUP;
	}
	if (f->modrm)
		return decode_modrm(ctx, in);
	/* Segment and REX prefixes on these forms are not accepted (need/allow say so). */
	return 0;
}

static bool long_mode_64(const struct kvm_sregs *s)
{
	return (s->efer & EFER_LMA) && s->cs.l;
}

int emulate__complete(struct emulate_ctx *ctx)
{
	struct insn in = {.avail = MIN(ctx->insn_len, (unsigned int)EMULATE_MAX_INSN)};
	struct kvm_regs r = ctx->regs;
	const struct insn_form *f = NULL;
	unsigned int i, start;
	int ret;

	ctx->exc = (struct emulate_exception){0};
	ctx->len = 0;
	ctx->name = NULL;
	ctx->fpu_changed = false;
	/* Single-stepping would owe the guest a #DB after the instruction: not done. */
	if (!long_mode_64(&ctx->sregs) || (r.rflags & RFLAGS_TF))
		return -ENOTSUP;
	memcpy(in.bytes, ctx->insn, in.avail);
	if (decode_prefixes(ctx, &in))
		return -ENOTSUP;
	start = in.pos;
	for (i = 0; i < ARRAY_SIZE(forms) && !f; i++) {
		in.pos = start;
		if (!decode_form(ctx, &in, &forms[i]))
			f = &forms[i];
	}
	if (!f)
		return -ENOTSUP;
	ret = f->exec(ctx, &in, &r);
	if (ret) {
		ctx->exc = (struct emulate_exception){0};
		ctx->fpu_changed = false;
		return ret;
	}
	/* Completed, or trapped: RIP moves past the instruction and RF clears, as on the CPU. */
	if (!ctx->exc.fault) {
		r.rip += in.pos;
		r.rflags &= ~RFLAGS_RF;
	}
	ctx->regs = r;
	ctx->len = in.pos;
	ctx->name = f->name;
	return 0;
}

void emulate__init_from_run(struct emulate_ctx *ctx, const struct kvm_run *run)
{
	unsigned int n;

	ctx->insn_len = 0;
	if (run->exit_reason != KVM_EXIT_INTERNAL_ERROR ||
	    run->emulation_failure.suberror != KVM_INTERNAL_ERROR_EMULATION ||
	    run->emulation_failure.ndata < 3 ||
	    !(run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES))
		return;
	n = MIN((unsigned int)run->emulation_failure.insn_size,
		(unsigned int)sizeof(run->emulation_failure.insn_bytes));
	n = MIN(n, (unsigned int)EMULATE_MAX_INSN);
	memcpy(ctx->insn, run->emulation_failure.insn_bytes, n);
	ctx->insn_len = n;
}
