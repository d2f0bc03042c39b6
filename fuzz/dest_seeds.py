#!/usr/bin/env python3
"""dest_seeds.py SNAPSHOT OUT: fuzz_dest's input from a godwit snapshot: its records
up to END, each as {u32 type; u32 flags; u32 len; payload}, RAM records left out (the
target seals the rest again; fuzz_stream covers RAM). Seeds in fuzz/corpus/fuzz_dest/
were made from snapshots of the test guest (`migrate --to file:`), with and without a
disk.

dest_seeds.py --disk-to SEED OUT: a seed whose first disk's image comes in the stream
(format 1.8, migration without shared storage: a snapshot never has one): CONFIG's
device gets a disk_to and the DISK_TO feature, and DISK records (data, zero, done)
follow CONFIG. disk_to.bin was made so from disk.bin."""
import struct
import sys

RAM_TYPES = {2, 7, 8}
END = 6
CONFIG, DISK = 1, 9
CFG_DEVICE, CFG_FEATURES, DEV_TYPE, DEV_CAPACITY, DEV_DISK_TO = 8, 9, 1, 4, 6
FEATURE_DISK_TO = 1 << 6
OPTIONAL = 1


def records(data):
    pos = 32
    while pos + 24 <= len(data):
        rtype, flags, length, _ = struct.unpack_from("<IIQQ", data, pos)
        if rtype == END:
            return
        yield rtype, flags, data[pos + 24:pos + 24 + length]
        pos += 24 + length


def tlvs(payload):
    pos = 0
    while pos + 8 <= len(payload):
        tag, flags, length = struct.unpack_from("<HHI", payload, pos)
        yield tag, flags, payload[pos + 8:pos + 8 + length]
        pos += 8 + length


def tlv(tag, flags, value):
    return struct.pack("<HHI", tag, flags, len(value)) + value


def disk_config(payload):
    """CONFIG with the first disk sent in the stream; that disk's capacity."""
    out, capacity, features = b"", None, 0
    for tag, flags, value in tlvs(payload):
        if tag == CFG_FEATURES:
            features = struct.unpack("<I", value)[0]
            continue
        if tag == CFG_DEVICE and capacity is None:
            fields = dict((t, v) for t, _, v in tlvs(value))
            if fields.get(DEV_TYPE) == b"virtio-blk":
                capacity = struct.unpack("<Q", fields[DEV_CAPACITY])[0]
                value += tlv(DEV_DISK_TO, OPTIONAL, b"vm.img")
        out += tlv(tag, flags, value)
    out += tlv(CFG_FEATURES, OPTIONAL, struct.pack("<I", features | FEATURE_DISK_TO))
    return out, capacity


def disk_records(capacity):
    def rec(kind, off, length, data=b""):
        return struct.pack("<III", DISK, 1, 24 + len(data)) + \
            struct.pack("<IIQQ", 0, kind, off, length) + data
    return (rec(1, 0, 4096, bytes(range(256)) * 16) + rec(2, 8192, 4096) +
            rec(3, 0, capacity) + rec(1, capacity - 512, 512, b"\x5a" * 512))


def add_disk_to(seed):
    pos, out = 0, b""
    while pos + 12 <= len(seed):
        rtype, flags, length = struct.unpack_from("<III", seed, pos)
        payload = seed[pos + 12:pos + 12 + length]
        pos += 12 + length
        if rtype == CONFIG:
            payload, capacity = disk_config(payload)
            out += struct.pack("<III", rtype, flags, len(payload)) + payload
            out += disk_records(capacity)
            continue
        out += struct.pack("<III", rtype, flags, length) + payload
    return out


def main():
    if sys.argv[1] == "--disk-to":
        open(sys.argv[3], "wb").write(add_disk_to(open(sys.argv[2], "rb").read()))
        return
    data = open(sys.argv[1], "rb").read()
    out = b"".join(struct.pack("<III", t, f, len(p)) + p
                   for t, f, p in records(data) if t not in RAM_TYPES)
    open(sys.argv[2], "wb").write(out)


if __name__ == "__main__":
    main()
