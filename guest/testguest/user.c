/*
 * godwit test guest, ring 3: boot information, ACPI MADT, clock, command line, AP
 * bring-up (INIT/SIPI/SIPI through the user-mapped LAPIC) and the workloads.
 */
#include "testguest.h"

#define MAX_MEMMAP	128
#define LAPIC_ID	0x20
#define LAPIC_EOI	0xb0
#define LAPIC_SVR	0xf0
#define LAPIC_ICR_LO	0x300
#define LAPIC_ICR_HI	0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_ICR 0x380
#define LAPIC_TIMER_CCR 0x390
#define LAPIC_TIMER_DCR 0x3e0

extern u64 lapic_eoi_addr;

static u64 lapic_base = 0xfee00000;
static u32 ncpus = 1;
static char cmdline[4096];
static struct hvm_memmap_entry memmap[MAX_MEMMAP];
static u32 nmemmap;
static u64 ram_bytes;

/* ---- clock: kvmclock, or the TSC calibrated against PIT channel 2 ---- */

static bool use_kvmclock;
static u64 tsc_mult; /* ns = ((tsc - tsc_base) * tsc_mult) >> 32 */
static u64 tsc_base;
static u64 tsc_hz;

static u64 mul_shift32(u64 a, u64 b)
{
	return (u64)(((unsigned __int128)a * b) >> 32);
}

u64 now_ns(struct cpu *c)
{
	if (!use_kvmclock)
		return mul_shift32(rdtsc() - tsc_base, tsc_mult);
	volatile struct pvclock *p = &c->pvclock;
	u32 v;
	u64 ns;
	do {
		v = p->version;
		barrier();
		__asm__ volatile("lfence" ::: "memory");
		u64 delta = rdtsc() - p->tsc_timestamp;
		s8 shift = p->tsc_shift;
		if (shift < 0)
			delta >>= -shift;
		else
			delta <<= shift;
		ns = p->system_time + mul_shift32(delta, p->tsc_to_system_mul);
		barrier();
	} while ((v & 1) || v != p->version);
	return ns;
}

void wait_until(struct cpu *c, u64 t)
{
	while (now_ns(c) < t)
		cpu_relax();
}

void pace_start(struct cpu *c, struct pace *p, u64 unit_num, u64 unit_den, u64 slack_ns)
{
	p->unit_num = unit_num;
	p->unit_den = unit_den;
	p->slack_ns = slack_ns;
	p->base = now_ns(c);
	p->count = 0;
}

/* The count is folded into the base now and then, so that count * unit_num never overflows. */
#define PACE_FOLD (1UL << 20)

void pace_wait(struct cpu *c, struct pace *p, u64 units)
{
	p->count += units;
	u64 due = p->base + p->count * p->unit_num / p->unit_den;
	u64 now = now_ns(c);
	if (now > due + p->slack_ns) {
		p->base = now;
		p->count = 0;
		return;
	}
	wait_until(c, due);
	if (p->count >= PACE_FOLD) {
		p->base = due;
		p->count = 0;
	}
}

static void delay_ns(struct cpu *c, u64 ns)
{
	wait_until(c, now_ns(c) + ns);
}

#define PIT_HZ 1193182UL

/*
 * Fallback: PIT channel 0 as a free-running counter (mode 2, reload 65536), read with
 * latch commands, counts accumulated across reloads until COUNT ticks have passed. Its
 * interrupt (IRQ 0) stays masked in the 8259s and the IOAPIC. Returns 0 on failure.
 */
static u64 calibrate_tsc_pit0(u32 count, u64 *start)
{
	outb(0x43, 0x34); /* channel 0, lo/hi byte, mode 2, binary */
	outb(0x40, 0);
	outb(0x40, 0);
	u32 prev = 0, elapsed = 0;
	u64 t0 = 0, t1 = 0;
	for (u64 i = 0; i < 10000000UL; i++) {
		outb(0x43, 0x00); /* latch channel 0 */
		u32 lo = inb(0x40);
		u32 cur = lo | (u32)inb(0x40) << 8;
		u64 t = rdtsc();
		if (i == 0) {
			t0 = t;
			prev = cur;
			continue;
		}
		elapsed += (prev - cur) & 0xffff;
		prev = cur;
		if (elapsed >= count) {
			t1 = t;
			break;
		}
	}
	if (!t1 || t1 <= t0)
		return 0;
	*start = t0;
	return (t1 - t0) * PIT_HZ / elapsed;
}

static void calibrate_tsc(void)
{
	const u32 count = 59659; /* 50 ms */
	u8 p61 = inb(0x61) & ~0x03;
	outb(0x61, p61);  /* gate 2 low, speaker off */
	outb(0x43, 0xb0); /* channel 2, lo/hi byte, mode 0, binary */
	outb(0x42, count & 0xff);
	outb(0x42, count >> 8);
	bool out_early = (inb(0x61) & 0x20) != 0; /* mode 0: OUT is low until the count ends */
	u64 t0 = rdtsc();
	outb(0x61, p61 | 0x01); /* gate high: count */
	u64 t1 = t0;
	for (u64 i = 0; i < 100000000UL; i++) {
		if (inb(0x61) & 0x20)
			break;
		t1 = rdtsc();
	}
	t1 = rdtsc();
	outb(0x61, p61);
	tsc_hz = (t1 - t0) * PIT_HZ / count;
	/* Port 0x61 without its PIT gate/output (QEMU microvm has no pcspk) reads junk:
	 * the output shows up at once, giving an absurd rate. Then use channel 0. */
	if (out_early || tsc_hz < 100000000UL)
		tsc_hz = calibrate_tsc_pit0(count, &t0);
	if (tsc_hz < 1000000) {
		println("testguest: warning: TSC calibration failed, assuming 1 GHz");
		tsc_hz = 1000000000UL;
	}
	tsc_mult = (NS_PER_SEC << 32) / tsc_hz;
	tsc_base = t0;
}

/* ---- ACPI: count vCPUs from the MADT ---- */

static bool acpi_sig(u64 pa, const char *sig)
{
	return pa && memcmp((const void *)pa, sig, 4) == 0;
}

static void parse_madt(u64 rsdp_pa)
{
	u32 bsp_apic = mmio_read32(lapic_base + LAPIC_ID) >> 24;
	cpus[0].apic_id = bsp_apic;
	if (!rsdp_pa || memcmp((const void *)rsdp_pa, "RSD PTR ", 8) != 0)
		return;
	const u8 *rsdp = (const u8 *)rsdp_pa;
	u64 sdt;
	u32 esize;
	if (rsdp[15] >= 2 && *(const u64 *)(rsdp + 24)) {
		sdt = *(const u64 *)(rsdp + 24);
		esize = 8;
	} else {
		sdt = *(const u32 *)(rsdp + 16);
		esize = 4;
	}
	if (!sdt)
		return;
	u32 len = *(const u32 *)(sdt + 4);
	u64 madt = 0;
	for (u32 off = 36; off + esize <= len; off += esize) {
		u64 t = esize == 8 ? *(const u64 *)(sdt + off) : *(const u32 *)(sdt + off);
		if (acpi_sig(t, "APIC")) {
			madt = t;
			break;
		}
	}
	if (!madt)
		return;
	u32 mlen = *(const u32 *)(madt + 4);
	lapic_base = *(const u32 *)(madt + 36);
	lapic_eoi_addr = lapic_base + LAPIC_EOI;
	u32 n = 1;
	for (u32 off = 44; off + 2 <= mlen;) {
		const u8 *e = (const u8 *)(madt + off);
		u32 type = e[0], elen = e[1];
		if (elen < 2)
			break;
		u32 id = ~0u, flags = 0;
		if (type == 0 && elen >= 8) { /* processor local APIC */
			id = e[3];
			flags = *(const u32 *)(e + 4);
		} else if (type == 9 && elen >= 16) { /* processor local x2APIC */
			id = *(const u32 *)(e + 4);
			flags = *(const u32 *)(e + 8);
		}
		if (id != ~0u && (flags & 1) && id != bsp_apic && n < MAX_CPUS)
			cpus[n++].apic_id = id;
		off += elen;
	}
	ncpus = n;
}

/* ---- command line ---- */

void fail(const char *f, ...)
{
	char buf[400];
	va_list ap;
	va_start(ap, f);
	vfmt(buf, sizeof(buf), f, ap);
	va_end(ap);
	println("testguest: error: %s", buf);
	vm_exit(2);
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Splits s in place into whitespace-separated words. */
static u32 split_words(char *s, char **w, u32 max)
{
	u32 n = 0;
	for (;;) {
		while (is_space(*s))
			*s++ = 0;
		if (!*s)
			return n;
		if (n == max)
			return max + 1;
		w[n++] = s;
		while (*s && !is_space(*s))
			s++;
	}
}

/* Decimal number with an optional binary suffix (K, M, G, T) when 'suffix'. */
static bool parse_num(const char *s, bool suffix, u64 *out)
{
	u64 v = 0;
	const char *p = s;
	if (*p < '0' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (~0UL - 9) / 10)
			return false;
		v = v * 10 + (u64)(*p - '0');
	}
	if (*p && suffix) {
		u32 shift;
		switch (*p) {
		case 'k':
		case 'K':
			shift = 10;
			break;
		case 'm':
		case 'M':
			shift = 20;
			break;
		case 'g':
		case 'G':
			shift = 30;
			break;
		case 't':
		case 'T':
			shift = 40;
			break;
		default:
			return false;
		}
		if (v > (~0UL >> shift))
			return false;
		v <<= shift;
		p++;
	}
	if (*p)
		return false;
	*out = v;
	return true;
}

static u64 need_num(const char *s, bool suffix, u64 min, u64 max, const char *what)
{
	u64 v;
	if (!parse_num(s, suffix, &v) || v < min || v > max)
		fail("bad %s '%s' (want %lu..%lu%s)", what, s, min, max,
		     suffix ? ", K/M/G/T suffixes allowed" : "");
	return v;
}

/* Dotted quad a.b.c.d, each 0..255, into a << 24 | b << 16 | c << 8 | d. */
static bool parse_ipv4(const char *s, u64 *out)
{
	u64 v = 0;
	for (int i = 0; i < 4; i++) {
		u32 part = 0, digits = 0;
		for (; *s >= '0' && *s <= '9' && digits < 4; s++, digits++)
			part = part * 10 + (u32)(*s - '0');
		if (!digits || part > 255 || *s != (i < 3 ? '.' : 0))
			return false;
		if (i < 3)
			s++;
		v = v << 8 | part;
	}
	*out = v;
	return true;
}

static void parse_one(char *seg, u32 cpu)
{
	char *w[5];
	u32 n = split_words(seg, w, 4);
	struct workload *wl = &cpus[cpu].wl;
	if (n == 0)
		return;
	if (cpu >= ncpus)
		fail("more workloads than vcpus: '%s' for vcpu %u but only %u vcpus", w[0], cpu,
		     ncpus);
	const char *name = w[0];
	u32 maxargs = 0, minargs = 0;
	if (!memcmp(name, "memtouch", 9)) {
		minargs = 1, maxargs = 2;
		wl->kind = WL_MEMTOUCH;
		/* A trailing mode word, so that SIZE [MBPS] keep their places. */
		wl->random = n > 2 && n <= 4 && !memcmp(w[n - 1], "random", 7);
		n -= wl->random;
	} else if (!memcmp(name, "fill", 5)) {
		minargs = maxargs = 1;
		wl->kind = WL_FILL;
	} else if (!memcmp(name, "heartbeat", 10)) {
		minargs = maxargs = 1;
		wl->kind = WL_HEARTBEAT;
	} else if (!memcmp(name, "ticks", 6)) {
		minargs = maxargs = 1;
		wl->kind = WL_TICKS;
	} else if (!memcmp(name, "exit", 5)) {
		minargs = maxargs = 1;
		wl->kind = WL_EXIT;
	} else if (!memcmp(name, "idle", 5)) {
		wl->kind = WL_NONE;
	} else if (!memcmp(name, "fault", 6)) {
		wl->kind = WL_FAULT;
	} else if (!memcmp(name, "netecho", 8)) {
		minargs = maxargs = 1;
		wl->kind = WL_NETECHO;
	} else if (!memcmp(name, "blklog", 7)) {
		minargs = 0, maxargs = 2;
		wl->kind = WL_BLKLOG;
	} else if (!memcmp(name, "netbench", 9)) {
		minargs = maxargs = 1;
		wl->kind = WL_NETBENCH;
	} else if (!memcmp(name, "blkbench", 9)) {
		minargs = 1, maxargs = 2;
		wl->kind = WL_BLKBENCH;
	} else if (!memcmp(name, "ioport", 7)) {
		minargs = maxargs = 1;
		wl->kind = WL_IOPORT;
	} else {
		fail("unknown workload '%s' for vcpu %u", name, cpu);
	}
	if (n - 1 < minargs || n - 1 > maxargs)
		fail("%s on vcpu %u takes %u..%u arguments%s", name, cpu, minargs, maxargs,
		     wl->kind == WL_MEMTOUCH ? " and an optional last word 'random'" : "");
	switch (wl->kind) {
	case WL_MEMTOUCH:
		wl->arg1 = need_num(w[1], true, PAGE_SIZE, 1UL << 46, "memtouch size");
		wl->arg1 = (wl->arg1 + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
		if (n > 2)
			wl->arg2 = need_num(w[2], false, 1, 1000000, "memtouch MB/s");
		break;
	case WL_FILL:
		wl->arg1 = need_num(w[1], true, PAGE_SIZE, 1UL << 46, "fill size");
		wl->arg1 = (wl->arg1 + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
		break;
	case WL_HEARTBEAT:
		wl->arg1 = need_num(w[1], false, 1, 3600000, "heartbeat period (ms)");
		break;
	case WL_TICKS:
		wl->arg1 = need_num(w[1], false, 1, 10000, "ticks rate (Hz)");
		break;
	case WL_EXIT:
		wl->arg1 = need_num(w[1], false, 0, 255, "exit code");
		break;
	case WL_NETECHO:
	case WL_NETBENCH:
		if (!parse_ipv4(w[1], &wl->arg1))
			fail("bad IPv4 address '%s' for %s (want a.b.c.d)", w[1], name);
		break;
	case WL_BLKBENCH:
		wl->arg1 = need_num(w[1], false, 1, 1UL << 20, "blkbench size (MiB)");
		if (n > 2 && memcmp(w[2], "latency", 8))
			fail("blkbench: the second word is 'latency' or nothing, not '%s'", w[2]);
		wl->arg2 = n > 2;
		break;
	case WL_IOPORT:
		wl->arg1 = ioport_mode(w[1]);
		break;
	case WL_BLKLOG:
		if (n > 1)
			wl->arg1 = need_num(w[1], false, 1, 64, "blklog records per write");
		if (n > 2)
			wl->arg2 = need_num(w[2], false, 1, 10000000, "blklog records per second");
		break;
	default:
		break;
	}
}

static void parse_cmdline(void)
{
	static char copy[sizeof(cmdline)];
	memcpy(copy, cmdline, sizeof(copy));
	char *s = copy;
	u32 cpu = 0;
	for (;;) {
		char *e = s;
		while (*e && *e != ';')
			e++;
		bool last = !*e;
		*e = 0;
		parse_one(s, cpu++);
		if (last)
			break;
		s = e + 1;
	}
	/* Each driver resets its device: two workloads must not share one. */
	u32 nnet = 0, nblk = 0;
	for (u32 i = 0; i < ncpus; i++) {
		nnet += cpus[i].wl.kind == WL_NETECHO || cpus[i].wl.kind == WL_NETBENCH;
		nblk += cpus[i].wl.kind == WL_BLKLOG || cpus[i].wl.kind == WL_BLKBENCH;
	}
	if (nnet > 1 || nblk > 1)
		fail("at most one netecho or netbench and one blklog or blkbench workload (they "
		     "drive the first virtio-net and virtio-blk device)");
}

/* ---- memory: disjoint ranges for memtouch, from RAM above the image ---- */

static void sort_memmap(void)
{
	for (u32 i = 1; i < nmemmap; i++)
		for (u32 j = i; j > 0 && memmap[j - 1].addr > memmap[j].addr; j--) {
			struct hvm_memmap_entry t = memmap[j];
			memmap[j] = memmap[j - 1];
			memmap[j - 1] = t;
		}
}

static void alloc_ranges(void)
{
	u32 idx = 0;
	u64 cur = ((u64)__image_end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	u64 free_total = 0;
	for (u32 i = 0; i < nmemmap; i++) {
		if (memmap[i].type != MEMMAP_RAM)
			continue;
		u64 s = (memmap[i].addr + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
		u64 e = (memmap[i].addr + memmap[i].size) & ~(PAGE_SIZE - 1);
		if (s < cur)
			s = cur;
		if (e > mapped_limit)
			e = mapped_limit;
		if (e > s)
			free_total += e - s;
	}
	for (u32 c = 0; c < ncpus; c++) {
		struct workload *wl = &cpus[c].wl;
		if (wl->kind != WL_MEMTOUCH && wl->kind != WL_FILL)
			continue;
		u64 need = wl->arg1;
		while (need) {
			if (idx >= nmemmap || wl->nextents == MAX_EXTENTS)
				fail("not enough RAM for %s %lu MiB on vcpu %u (%lu MiB free "
				     "for all memtouch and fill ranges)",
				     wl->kind == WL_FILL ? "fill" : "memtouch", wl->arg1 / MIB, c,
				     free_total / MIB);
			struct hvm_memmap_entry *m = &memmap[idx];
			u64 s = (m->addr + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
			u64 e = (m->addr + m->size) & ~(PAGE_SIZE - 1);
			if (e > mapped_limit)
				e = mapped_limit;
			if (s < cur)
				s = cur;
			if (m->type != MEMMAP_RAM || s >= e) {
				idx++;
				continue;
			}
			u64 take = e - s < need ? e - s : need;
			wl->ext[wl->nextents].start = s;
			wl->ext[wl->nextents].len = take;
			wl->nextents++;
			need -= take;
			cur = s + take;
		}
	}
}

/* ---- AP bring-up ---- */

static bool overlaps(u64 a, u64 len, u64 b, u64 blen)
{
	return b && a < b + blen && b < a + len;
}

/* The highest RAM page below the EBDA that holds none of the boot information. */
static u64 tramp_page(const struct hvm_start_info *si)
{
	for (u64 a = 0x9e000; a >= 0x1000; a -= PAGE_SIZE) {
		bool ram = false;
		for (u32 i = 0; i < nmemmap; i++)
			if (memmap[i].type == MEMMAP_RAM && memmap[i].addr <= a &&
			    memmap[i].addr + memmap[i].size >= a + PAGE_SIZE)
				ram = true;
		if (!ram || overlaps(a, PAGE_SIZE, (u64)si, sizeof(*si)) ||
		    overlaps(a, PAGE_SIZE, si->memmap_paddr,
			     (u64)si->memmap_entries * sizeof(struct hvm_memmap_entry)) ||
		    overlaps(a, PAGE_SIZE, si->cmdline_paddr, strlen(cmdline) + 1))
			continue;
		return a;
	}
	return 0;
}

static void lapic_icr(u32 apic_id, u32 lo)
{
	mmio_write32(lapic_base + LAPIC_ICR_HI, apic_id << 24);
	mmio_write32(lapic_base + LAPIC_ICR_LO, lo);
	for (u32 i = 0; i < 1000000 && (mmio_read32(lapic_base + LAPIC_ICR_LO) & (1u << 12)); i++)
		cpu_relax();
}

/*
 * Software-enables this CPU's local APIC (SVR bit 8). Real CPUs send IPIs from a
 * disabled APIC, but KVM's in-kernel APIC does not deliver them, and the timer
 * needs it anyway: every CPU does this first.
 */
static void lapic_enable(void)
{
	mmio_write32(lapic_base + LAPIC_SVR, 0x100 | VEC_SPURIOUS);
}

static void start_aps(struct cpu *bsp, const struct hvm_start_info *si)
{
	lapic_enable();
	if (ncpus < 2)
		return;
	u64 tp = tramp_page(si);
	if (!tp)
		fail("no RAM page below 640 KiB for the AP trampoline");
	memcpy((void *)tp, tramp_start, (size_t)(tramp_end - tramp_start));
	for (u32 i = 1; i < ncpus; i++) {
		struct cpu *c = &cpus[i];
		ap_boot_cpu = i;
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		lapic_icr(c->apic_id, 0x4500); /* INIT, assert */
		delay_ns(bsp, 10 * NS_PER_MS);
		for (int k = 0; k < 2 && !c->started; k++) {
			lapic_icr(c->apic_id, 0x4600 | (u32)(tp >> 12)); /* STARTUP */
			delay_ns(bsp, 200000);
		}
		u64 deadline = now_ns(bsp) + 10 * NS_PER_SEC;
		while (!__atomic_load_n(&c->started, __ATOMIC_ACQUIRE)) {
			if (now_ns(bsp) > deadline)
				fail("vcpu %u (apic id %u) did not start", i, c->apic_id);
			cpu_relax();
		}
	}
}

/* ---- workloads ---- */

#define MEMTOUCH_MAX_ERRORS 16
#define PRINT_INTERVAL_NS   (250 * NS_PER_MS)

static inline u64 tail_tag(u64 gpa, u64 pass)
{
	return gpa ^ (pass * 0x9e3779b97f4a7c15UL);
}

/* The default pattern: two words per page, so a pass is quick and its pages compress. */
static bool memtouch_pattern_page(u64 gpa, u64 pass, struct memtouch_miss *miss)
{
	volatile u64 *p = (volatile u64 *)gpa;
	bool bad = false;
	if (pass > 1) {
		u64 h = p[0], t = p[511];
		u64 eh = pass - 1, et = tail_tag(gpa, pass - 1);
		if (h != eh || t != et) {
			bad = true;
			miss->gpa = gpa;
			miss->expected = h != eh ? eh : et;
			miss->found = h != eh ? h : t;
		}
	}
	p[0] = pass;
	p[511] = tail_tag(gpa, pass);
	return bad;
}

static void memtouch(struct cpu *c)
{
	struct workload *wl = &c->wl;
	u64 pages_total = wl->arg1 / PAGE_SIZE;
	u64 mbps = wl->arg2;
	u64 errors_printed = 0, pass_errors;
	u64 start = now_ns(c), last_print = 0, last_print_pages = 0, pages_done = 0;
	struct pace pace;
	const char *mode = wl->random ? ", random pages" : "";
	if (mbps) {
		/* A page of 4096 B at mbps * 1e6 B/s takes 4096 * 1000 / mbps ns. */
		pace_start(c, &pace, PAGE_SIZE * 1000, mbps, 100 * NS_PER_MS);
		println("memtouch: cpu=%u %lu KiB in %u range(s) from 0x%lx, paced at %lu MB/s%s",
			c->index, wl->arg1 / 1024, wl->nextents, wl->ext[0].start, mbps, mode);
	} else {
		println("memtouch: cpu=%u %lu KiB in %u range(s) from 0x%lx, unpaced%s", c->index,
			wl->arg1 / 1024, wl->nextents, wl->ext[0].start, mode);
	}
	for (u64 pass = 1;; pass++) {
		pass_errors = 0;
		for (u32 x = 0; x < wl->nextents; x++) {
			u64 end = wl->ext[x].start + wl->ext[x].len;
			for (u64 gpa = wl->ext[x].start; gpa < end; gpa += PAGE_SIZE) {
				struct memtouch_miss miss;
				bool bad = wl->random ? memrand_page(gpa, pass, &miss)
						      : memtouch_pattern_page(gpa, pass, &miss);
				if (bad) {
					pass_errors++;
					if (errors_printed < MEMTOUCH_MAX_ERRORS) {
						errors_printed++;
						println("memtouch: ERROR gpa=0x%lx expected 0x%lx "
							"found 0x%lx cpu=%u pass=%lu%s",
							miss.gpa, miss.expected, miss.found,
							c->index, pass,
							errors_printed == MEMTOUCH_MAX_ERRORS
							    ? " (further errors not printed)"
							    : "");
					}
				}
				pages_done++;
				if (mbps && (pages_done & 15) == 0)
					pace_wait(c, &pace, 16);
			}
		}
		u64 now = now_ns(c);
		if (pass == 1 || pass_errors || now - last_print >= PRINT_INTERVAL_NS) {
			u64 dt = now - (pass == 1 ? start : last_print);
			u64 bytes = (pages_done - last_print_pages) * PAGE_SIZE;
			u64 rate = dt ? bytes * 1000 / dt : 0; /* bytes/ns*1000 = MB/s */
			if (pass_errors)
				println("memtouch: pass %lu FAILED errors=%lu cpu=%u", pass,
					pass_errors, c->index);
			else
				println("memtouch: pass %lu ok cpu=%u rate=%lu MB/s", pass,
					c->index, rate);
			last_print = now;
			last_print_pages = pages_done;
		}
		(void)pages_total;
	}
}

/*
 * Dirties its range once with incompressible pages, then the vCPU halts: a migration
 * has that much to send, paced as slowly as it likes, while the guest takes no CPU.
 */
static void fill(struct cpu *c)
{
	struct workload *wl = &c->wl;
	struct memtouch_miss miss;

	for (u32 x = 0; x < wl->nextents; x++)
		for (u64 gpa = wl->ext[x].start; gpa < wl->ext[x].start + wl->ext[x].len;
		     gpa += PAGE_SIZE)
			memrand_page(gpa, 1, &miss);
	println("fill: cpu=%u %lu KiB written in %u range(s) from 0x%lx, halting", c->index,
		wl->arg1 / 1024, wl->nextents, wl->ext[0].start);
}

static void heartbeat(struct cpu *c)
{
	u64 period = c->wl.arg1 * NS_PER_MS;
	u64 next = now_ns(c);
	for (u64 seq = 0;; seq++) {
		wait_until(c, next);
		u64 now = now_ns(c);
		println("hb %lu %lu", seq, now);
		next += period;
		if (next < now) /* missed whole periods (the VM was paused): no catch-up burst */
			next = now + period;
	}
}

static void ticks(struct cpu *c)
{
	u64 hz = c->wl.arg1;
	mmio_write32(lapic_base + LAPIC_LVT_TIMER, (1u << 16) | VEC_TIMER); /* masked */
	mmio_write32(lapic_base + LAPIC_TIMER_DCR, 0x3);		    /* divide by 16 */
	/* Count over ~20 ms, each end bracketed by two clock reads; retry if a bracket is
	 * wide (the vCPU was descheduled in it), keep the best try. */
	u64 freq = 0, best = ~0UL;
	for (int try = 0; try < 8 && best > 200000; try++) {
		u64 a0 = now_ns(c);
		mmio_write32(lapic_base + LAPIC_TIMER_ICR, 0xffffffff);
		u64 a1 = now_ns(c);
		delay_ns(c, 20 * NS_PER_MS);
		u64 b0 = now_ns(c);
		u32 ccr = mmio_read32(lapic_base + LAPIC_TIMER_CCR);
		u64 b1 = now_ns(c);
		u64 width = (a1 - a0) + (b1 - b0);
		u64 elapsed = (b0 + b1) / 2 - (a0 + a1) / 2;
		if (width < best && elapsed) {
			best = width;
			freq = (0xffffffffUL - ccr) * NS_PER_SEC / elapsed; /* after the divider */
		}
	}
	if (freq < hz)
		fail("LAPIC timer of vcpu %u does not count (%lu Hz)", c->index, freq);
	u64 initial = freq / hz;
	if (initial == 0)
		initial = 1;
	if (initial > 0xffffffffUL)
		initial = 0xffffffffUL;
	println("ticks: cpu=%u hz=%lu lapic_timer=%lu Hz (divided by 16) initial_count=%lu",
		c->index, hz, freq, initial);
	mmio_write32(lapic_base + LAPIC_TIMER_ICR, 0);
	mmio_write32(lapic_base + LAPIC_LVT_TIMER, (1u << 17) | VEC_TIMER); /* periodic */
	mmio_write32(lapic_base + LAPIC_TIMER_ICR, (u32)initial);
	u64 next = now_ns(c) + NS_PER_SEC;
	for (;;) {
		wait_until(c, next);
		println("ticks cpu=%u count=%lu", c->index, c->ticks);
		next += NS_PER_SEC;
		u64 now = now_ns(c);
		if (next < now)
			next = now + NS_PER_SEC;
	}
}

static void run_workload(struct cpu *c)
{
	switch (c->wl.kind) {
	case WL_MEMTOUCH:
		memtouch(c);
		break;
	case WL_FILL:
		fill(c);
		break;
	case WL_HEARTBEAT:
		heartbeat(c);
		break;
	case WL_TICKS:
		ticks(c);
		break;
	case WL_EXIT:
		println("testguest: exit %lu from cpu=%u", c->wl.arg1, c->index);
		vm_exit((u32)c->wl.arg1);
	case WL_NETECHO:
		netecho(c);
		break;
	case WL_BLKLOG:
		blklog(c);
		break;
	case WL_NETBENCH:
		netbench(c);
		break;
	case WL_BLKBENCH:
		blkbench(c);
		break;
	case WL_IOPORT:
		ioport(c);
		break;
	case WL_FAULT:
		println("testguest: fault: cpu=%u writes to an unmapped address", c->index);
		*(volatile u64 *)0x8000000000UL = 1; /* 512 GiB: never mapped */
		break;
	case WL_NONE:
		if (c->index == 0)
			println("testguest: no workload for vcpu 0, it halts");
		break;
	}
	kcall(KCALL_HALT, 0, 0, 0);
	for (;;)
		cpu_relax();
}

static void bsp_main(struct cpu *c)
{
	const struct hvm_start_info *si = (const struct hvm_start_info *)(u64)boot_info_pa;
	if (si->magic != HVM_START_MAGIC)
		fail("no PVH start info (magic 0x%x at 0x%x)", si->magic, boot_info_pa);
	if (si->cmdline_paddr) {
		const char *s = (const char *)si->cmdline_paddr;
		size_t n = 0;
		while (n + 1 < sizeof(cmdline) && s[n]) {
			cmdline[n] = s[n];
			n++;
		}
		cmdline[n] = 0;
	}
	if (si->version >= 1 && si->memmap_paddr) {
		const struct hvm_memmap_entry *m = (const void *)si->memmap_paddr;
		for (u32 i = 0; i < si->memmap_entries && nmemmap < MAX_MEMMAP; i++)
			memmap[nmemmap++] = m[i];
	}
	sort_memmap();
	for (u32 i = 0; i < nmemmap; i++)
		if (memmap[i].type == MEMMAP_RAM)
			ram_bytes += memmap[i].size;
	parse_madt(si->rsdp_paddr);
	println("testguest: %u vcpus, RAM %lu MiB, cmdline '%s'", ncpus, ram_bytes / MIB, cmdline);
	if (!nmemmap)
		fail("no memory map in the PVH start info (version %u)", si->version);

	use_kvmclock = kvmclock_enabled && (c->pvclock.tsc_to_system_mul != 0);
	if (!use_kvmclock)
		calibrate_tsc();
	if (use_kvmclock)
		println("testguest: clock=kvmclock");
	else
		println("testguest: clock=tsc-pit tsc=%lu kHz", tsc_hz / 1000);
	for (u32 i = 0; i < nmemmap; i++) {
		if (memmap[i].type == MEMMAP_RAM &&
		    memmap[i].addr + memmap[i].size > mapped_limit) {
			println("testguest: warning: RAM above %lu GiB is not mapped, not used",
				mapped_limit / GIB);
			break;
		}
	}
	parse_cmdline();
	alloc_ranges();
	start_aps(c, si);
	run_workload(c);
}

void user_main(struct cpu *c)
{
	if (c->index == 0)
		bsp_main(c);
	else
		lapic_enable();
	run_workload(c);
	for (;;)
		;
}
