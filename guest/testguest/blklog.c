/*
 * godwit test guest, ring 3: `blklog [BATCH [RATE]]` on the first virtio-blk device.
 * Appends numbered 512-byte records, record k in sector k, BATCH records per write request,
 * each write followed by a FLUSH, at most RATE records a second when given; "blklog: acked N" means
 * records 0..N (N included) were written and a flush after them completed. At start it scans the
 * disk from sector 0 for the valid records already there and continues after the last one, so the
 * count carries on across a guest restart on the same disk (and, trivially, across a migration,
 * which keeps the guest's memory).
 *
 * Record k (little-endian 64-bit words w[0..63]):
 *   w[0] = 0x474f44574c4f4721 (the bytes "!GOLWDOG"), w[1] = k, w[2] = checksum,
 *   w[j] = k * 0x9e3779b97f4a7c15 + j for j = 3..63 (filler);
 *   checksum = FNV-1a over the 64 words with w[2] taken as 0:
 *   h = 0xcbf29ce484222325; for each word: h = (h ^ w) * 0x100000001b3 (mod 2^64).
 */
#include "virtio.h"

#define SECTOR		 512
#define SCAN_SECTORS	 128 /* sectors read per request while scanning */
#define BLKLOG_MAX_BATCH 64

#define PRINT_MIN_NS (250 * NS_PER_MS)

static struct virtq_mem blkq_mem;
static u8 data_buf[SCAN_SECTORS * SECTOR] __attribute__((aligned(4096)));

struct blk_req_hdr {
	u32 type;
	u32 reserved;
	u64 sector;
};

static struct blk_req_hdr req_hdr __attribute__((aligned(16)));
static volatile u8 req_status;

struct blk {
	struct vdev dev;
	struct virtq q;
	u64 capacity; /* sectors */
	bool flush;
};

#define RECORD_MAGIC 0x474f44574c4f4721UL

static u64 record_sum(const u64 *w)
{
	u64 h = 0xcbf29ce484222325UL;
	for (u32 j = 0; j < SECTOR / 8; j++)
		h = (h ^ (j == 2 ? 0 : w[j])) * 0x100000001b3UL;
	return h;
}

static void record_make(u8 *p, u64 k)
{
	u64 *w = (u64 *)p;
	w[0] = RECORD_MAGIC;
	w[1] = k;
	w[2] = 0;
	for (u32 j = 3; j < SECTOR / 8; j++)
		w[j] = k * 0x9e3779b97f4a7c15UL + j;
	w[2] = record_sum(w);
}

static bool record_valid(const u8 *p, u64 k)
{
	const u64 *w = (const u64 *)p;
	return w[0] == RECORD_MAGIC && w[1] == k && w[2] == record_sum(w);
}

/* One request, waited for: header, optional data, status. Returns the status byte. */
static u8 blk_request(struct blk *b, u32 type, u64 sector, void *buf, u32 len)
{
	struct virtq_desc *d = b->q.mem->desc;
	req_hdr.type = type;
	req_hdr.reserved = 0;
	req_hdr.sector = sector;
	req_status = 0xff;
	d[0].addr = (u64)&req_hdr;
	d[0].len = sizeof(req_hdr);
	d[0].flags = VIRTQ_DESC_F_NEXT;
	d[0].next = len ? 1 : 2;
	d[1].addr = (u64)buf;
	d[1].len = len;
	d[1].flags = VIRTQ_DESC_F_NEXT | (type == VIRTIO_BLK_T_IN ? VIRTQ_DESC_F_WRITE : 0);
	d[1].next = 2;
	d[2].addr = (u64)&req_status;
	d[2].len = 1;
	d[2].flags = VIRTQ_DESC_F_WRITE;
	d[2].next = 0;
	virtq_push(&b->q, 0);
	virtq_kick(&b->q);
	u32 id, ulen;
	virtq_wait_used(&b->q, &id, &ulen);
	if (id != 0)
		fail("virtio-blk at 0x%lx: used ring returned descriptor %u", b->dev.base, id);
	barrier();
	return req_status;
}

static const char *status_name(u8 s)
{
	return s == 1 ? "IOERR" : s == 2 ? "UNSUPP" : s == 0xff ? "not written" : "unknown";
}

/* The number of valid records at the start of the disk. */
static u64 scan(struct blk *b)
{
	for (u64 s = 0; s < b->capacity; s += SCAN_SECTORS) {
		u64 n = b->capacity - s < SCAN_SECTORS ? b->capacity - s : SCAN_SECTORS;
		u8 st = blk_request(b, VIRTIO_BLK_T_IN, s, data_buf, (u32)(n * SECTOR));
		if (st != 0)
			fail("blklog: read of sectors %lu..%lu failed: status %u (%s)", s,
			     s + n - 1, st, status_name(st));
		for (u64 i = 0; i < n; i++)
			if (!record_valid(data_buf + i * SECTOR, s + i))
				return s + i;
	}
	return b->capacity;
}

void blklog(struct cpu *c)
{
	static struct blk bk;
	struct blk *b = &bk;
	u64 batch = c->wl.arg1 ? c->wl.arg1 : 1;
	u64 rate = c->wl.arg2;

	virtio_find(&b->dev, VIRTIO_ID_BLK, "virtio-blk");
	virtio_negotiate(&b->dev, VIRTIO_BLK_F_FLUSH, 0);
	if (b->dev.offered & VIRTIO_BLK_F_RO)
		fail("blklog: virtio-blk at 0x%lx is read-only", b->dev.base);
	b->flush = (b->dev.features & VIRTIO_BLK_F_FLUSH) != 0;
	b->capacity = virtio_config64(&b->dev, 0);
	virtq_setup(&b->dev, &b->q, 0, 8, &blkq_mem);
	if (b->q.num < 4)
		fail("blklog: virtio-blk queue of %u entries is too small", b->q.num);
	virtio_driver_ok(&b->dev);
	println("blklog: virtio-blk at 0x%lx, features 0x%lx, capacity %lu sectors, flush %s",
		b->dev.base, b->dev.features, b->capacity,
		b->flush ? "on" : "off (not offered: writes are durable when completed)");

	u64 next = scan(b);
	println("blklog: found %lu valid records, continuing at record %lu", next, next);

	/* "acked N" names the last record flushed: next - 1 once anything was written. */
	bool any = false, printed = true;
	u64 last_print = now_ns(c);
	/* Paced, a test's small disk lasts for as long as the test, however fast the host's
	 * flushes are. */
	struct pace pace;
	if (rate)
		pace_start(c, &pace, NS_PER_SEC, rate, NS_PER_SEC);
	while (next < b->capacity) {
		u64 n = b->capacity - next < batch ? b->capacity - next : batch;
		for (u64 i = 0; i < n; i++)
			record_make(data_buf + i * SECTOR, next + i);
		u8 st = blk_request(b, VIRTIO_BLK_T_OUT, next, data_buf, (u32)(n * SECTOR));
		if (st != 0)
			fail("blklog: write of records %lu..%lu failed: status %u (%s)", next,
			     next + n - 1, st, status_name(st));
		if (b->flush) {
			st = blk_request(b, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
			if (st != 0)
				fail("blklog: flush after record %lu failed: status %u (%s)",
				     next + n - 1, st, status_name(st));
		}
		next += n;
		any = true;
		if (rate)
			pace_wait(c, &pace, n);
		printed = false;
		u64 now = now_ns(c);
		if (now - last_print >= PRINT_MIN_NS) {
			println("blklog: acked %lu", next - 1);
			printed = true;
			last_print = now;
		}
	}
	if (any && !printed)
		println("blklog: acked %lu", next - 1);
	println("blklog: disk full at %lu", next);
}
