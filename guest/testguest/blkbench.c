/*
 * godwit test guest, ring 3: `blkbench MIB [latency]` on the first virtio-blk device
 * (with `latency`: see latency() below). Writes MIB
 * MiB sequentially from sector 0 in requests of BB_REQ bytes with up to BB_DEPTH requests
 * in the queue at once, then one FLUSH, then reads the same range back the same way and
 * checks every 64-bit word; prints the time of each phase (guest clock) and exits 0.
 *
 * Sector s, word j (j = 0..63), little-endian: (s * 0x9e3779b97f4a7c15 + j) ^ seed, with
 * seed taken from the clock at start (printed, never 0), so data left on the disk by an
 * earlier run does not pass for this run's.
 */
#include "virtio.h"

#define SECTOR	   512
#define BB_REQ	   (128 * 1024) /* bytes per read or write request */
#define BB_DEPTH   16		/* requests in flight; 3 descriptors each */
#define BB_TIMEOUT (30 * NS_PER_SEC)
#define GOLDEN	   0x9e3779b97f4a7c15UL

_Static_assert(BB_DEPTH * 3 <= VIRTQ_MAX, "descriptors for BB_DEPTH requests");

struct bb_req_hdr {
	u32 type;
	u32 reserved;
	u64 sector;
};

static struct virtq_mem bbq_mem;
static u8 bb_buf[BB_DEPTH][BB_REQ] __attribute__((aligned(4096)));
static struct bb_req_hdr bb_hdr[BB_DEPTH] __attribute__((aligned(16)));
static volatile u8 bb_status[BB_DEPTH];
static u64 bb_sector[BB_DEPTH]; /* first sector of the request in slot i */
static u32 bb_len[BB_DEPTH];

struct blkbench {
	struct vdev dev;
	struct virtq q;
	u64 capacity; /* sectors */
	u64 seed;
	u64 kicks;
};

static const char *status_name(u8 s)
{
	return s == 1 ? "IOERR" : s == 2 ? "UNSUPP" : s == 0xff ? "not written" : "unknown";
}

static void fill(u64 *w, u64 sector, u32 len, u64 seed)
{
	for (u32 i = 0; i < len / SECTOR; i++, sector++)
		for (u32 j = 0; j < SECTOR / 8; j++)
			*w++ = (sector * GOLDEN + j) ^ seed;
}

static void check(const u64 *w, u64 sector, u32 len, u64 seed)
{
	for (u32 i = 0; i < len / SECTOR; i++, sector++)
		for (u32 j = 0; j < SECTOR / 8; j++, w++)
			if (*w != ((sector * GOLDEN + j) ^ seed))
				fail("blkbench: read back sector %lu word %u: expected 0x%lx found "
				     "0x%lx",
				     sector, j, (sector * GOLDEN + j) ^ seed, *w);
}

/* Queues the request of slot I (descriptors 3i..3i+2); the caller kicks. */
static void submit(struct blkbench *b, u32 i, u32 type, u64 sector, u32 len)
{
	struct virtq_desc *d = &b->q.mem->desc[3 * i];
	u16 head = (u16)(3 * i);
	bb_hdr[i].type = type;
	bb_hdr[i].reserved = 0;
	bb_hdr[i].sector = sector;
	bb_status[i] = 0xff;
	bb_sector[i] = sector;
	bb_len[i] = len;
	d[0].addr = (u64)&bb_hdr[i];
	d[0].len = sizeof(bb_hdr[i]);
	d[0].flags = VIRTQ_DESC_F_NEXT;
	d[0].next = len ? head + 1 : head + 2;
	d[1].addr = (u64)bb_buf[i];
	d[1].len = len;
	d[1].flags = VIRTQ_DESC_F_NEXT | (type == VIRTIO_BLK_T_IN ? VIRTQ_DESC_F_WRITE : 0);
	d[1].next = head + 2;
	d[2].addr = (u64)&bb_status[i];
	d[2].len = 1;
	d[2].flags = VIRTQ_DESC_F_WRITE;
	d[2].next = 0;
	virtq_push(&b->q, head);
}

/* Waits for the next completion; returns its slot, its status checked. */
static u32 complete(struct blkbench *b, struct cpu *c, const char *what)
{
	u32 id, len;
	if (!virtq_wait_used_until(&b->q, c, now_ns(c) + BB_TIMEOUT, &id, &len))
		fail("blkbench: virtio-blk at 0x%lx: no %s completed within %lu s", b->dev.base,
		     what, BB_TIMEOUT / NS_PER_SEC);
	if (id % 3 != 0 || id / 3 >= BB_DEPTH)
		fail("blkbench: virtio-blk at 0x%lx: used ring returned descriptor %u",
		     b->dev.base, id);
	u32 i = id / 3;
	barrier();
	if (bb_status[i] != 0)
		fail("blkbench: %s of sectors %lu..%lu failed: status %u (%s)", what,
		     bb_sector[i], bb_sector[i] + bb_len[i] / SECTOR - 1, bb_status[i],
		     status_name(bb_status[i]));
	return i;
}

/* Puts the next request of a pass (from sector *next, at most BB_REQ) in slot i. */
static void issue(struct blkbench *b, u32 i, u32 type, u64 *next, u64 sectors)
{
	u64 n = sectors - *next < BB_REQ / SECTOR ? sectors - *next : BB_REQ / SECTOR;
	if (type == VIRTIO_BLK_T_OUT)
		fill((u64 *)bb_buf[i], *next, (u32)(n * SECTOR), b->seed);
	submit(b, i, type, *next, (u32)(n * SECTOR));
	*next += n;
}

/*
 * One pass over SECTORS sectors from 0, reads or writes, BB_DEPTH requests in flight.
 * Returns the time it took (ns, first submission to last completion).
 */
static u64 pass(struct blkbench *b, struct cpu *c, u32 type, u64 sectors)
{
	const char *what = type == VIRTIO_BLK_T_IN ? "read" : "write";
	u64 next = 0, done = 0;
	u32 inflight = 0;
	u64 t0 = now_ns(c);
	for (u32 i = 0; i < BB_DEPTH && next < sectors; i++) {
		issue(b, i, type, &next, sectors);
		inflight++;
	}
	b->kicks += virtq_kick_if_needed(&b->q);
	/* Bounded: each round completes one request or fails after BB_TIMEOUT. */
	while (inflight) {
		u32 i = complete(b, c, what);
		inflight--;
		done += bb_len[i] / SECTOR;
		if (type == VIRTIO_BLK_T_IN)
			check((const u64 *)bb_buf[i], bb_sector[i], bb_len[i], b->seed);
		if (next < sectors) {
			issue(b, i, type, &next, sectors);
			inflight++;
			b->kicks += virtq_kick_if_needed(&b->q);
		}
	}
	if (done != sectors)
		fail("blkbench: %s pass completed %lu of %lu sectors", what, done, sectors);
	return now_ns(c) - t0;
}

/*
 * Latency histogram buckets: a quarter of an octave each, bucket 4 * msb + the next two
 * bits of the time in ns (so bucket b starts at (4 + b % 4) << (b / 4 - 2) ns).
 */
#define BB_BUCKETS	256
#define BB_WINDOW	(500 * 1000 * 1000UL) /* ns of guest time per printed window */
#define BB_LAT_PER_LINE 16

static u32 lat_bucket(u64 ns)
{
	if (ns < 4)
		return (u32)ns;
	u32 msb = 63 - (u32)__builtin_clzl(ns);
	return msb * 4 + (u32)((ns >> (msb - 2)) & 3);
}

static void print_window(u64 *hist, u64 n, u64 max_ns)
{
	char line[400];
	u32 used = 0, k = 0;
	for (u32 i = 0; i < BB_BUCKETS; i++) {
		if (!hist[i])
			continue;
		used += (u32)fmt(line + used, sizeof(line) - used, " %u:%lu", i, hist[i]);
		hist[i] = 0;
		if (++k == BB_LAT_PER_LINE) {
			println("blkbench: lat h%s", line);
			used = k = 0;
		}
	}
	if (k)
		println("blkbench: lat h%s", line);
	println("blkbench: lat n %lu max %lu us", n, max_ns / 1000);
}

/*
 * `blkbench MIB latency`: 4 KiB writes, one at a time (no flush), at pseudo-random
 * 4 KiB-aligned places in the first MIB MiB, until the VM is stopped; every BB_WINDOW of
 * guest time the latencies of that window's writes (submission to completion seen) as
 * a histogram. For the write latency a disk move costs the guest (bench/disk_move.py).
 */
static void latency(struct blkbench *b, struct cpu *c, u64 mib)
{
	static u64 hist[BB_BUCKETS];
	u64 blocks = mib * MIB / 4096, x = b->seed, n = 0, max_ns = 0;
	u64 window_end = now_ns(c) + BB_WINDOW;
	for (;;) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		u64 sector = (x % blocks) * (4096 / SECTOR);
		fill((u64 *)bb_buf[0], sector, 4096, b->seed);
		u64 t0 = now_ns(c);
		submit(b, 0, VIRTIO_BLK_T_OUT, sector, 4096);
		b->kicks += virtq_kick_if_needed(&b->q);
		complete(b, c, "write");
		u64 t1 = now_ns(c), d = t1 - t0;
		hist[lat_bucket(d)]++;
		n++;
		max_ns = d > max_ns ? d : max_ns;
		if (t1 >= window_end) {
			print_window(hist, n, max_ns);
			n = max_ns = 0;
			window_end = t1 + BB_WINDOW;
		}
	}
}

void blkbench(struct cpu *c)
{
	static struct blkbench bb;
	struct blkbench *b = &bb;
	u64 mib = c->wl.arg1;
	u64 sectors = mib * MIB / SECTOR;

	virtio_find(&b->dev, VIRTIO_ID_BLK, "virtio-blk");
	virtio_negotiate(&b->dev, VIRTIO_BLK_F_FLUSH, 0);
	if (b->dev.offered & VIRTIO_BLK_F_RO)
		fail("blkbench: virtio-blk at 0x%lx is read-only", b->dev.base);
	b->capacity = virtio_config64(&b->dev, 0);
	virtq_setup(&b->dev, &b->q, 0, VIRTQ_MAX, &bbq_mem);
	if (b->q.num < 3 * BB_DEPTH)
		fail("blkbench: virtio-blk queue of %u entries is too small (want %u)", b->q.num,
		     3 * BB_DEPTH);
	virtio_driver_ok(&b->dev);
	if (sectors > b->capacity)
		fail("blkbench: %lu MiB do not fit on the disk (%lu sectors)", mib, b->capacity);
	b->seed = now_ns(c) * GOLDEN | 1;
	println("blkbench: virtio-blk at 0x%lx, features 0x%lx, capacity %lu sectors, "
		"requests of %u KiB, depth %u, seed 0x%lx",
		b->dev.base, b->dev.features, b->capacity, BB_REQ / 1024, BB_DEPTH, b->seed);
	if (c->wl.arg2)
		latency(b, c, mib);

	b->kicks = 0;
	u64 t = pass(b, c, VIRTIO_BLK_T_OUT, sectors);
	println("blkbench: write %lu MiB in %lu us (%lu kicks)", mib, t / 1000, b->kicks);

	if (b->dev.features & VIRTIO_BLK_F_FLUSH) {
		u64 t0 = now_ns(c);
		submit(b, 0, VIRTIO_BLK_T_FLUSH, 0, 0);
		virtq_kick(&b->q);
		complete(b, c, "flush");
		println("blkbench: flush in %lu us", (now_ns(c) - t0) / 1000);
	} else {
		println("blkbench: flush not offered");
	}

	b->kicks = 0;
	t = pass(b, c, VIRTIO_BLK_T_IN, sectors);
	println("blkbench: read %lu MiB in %lu us (%lu kicks), verified", mib, t / 1000,
		b->kicks);
	println("blkbench: done");
	vm_exit(0);
}
