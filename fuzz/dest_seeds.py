#!/usr/bin/env python3
"""dest_seeds.py SNAPSHOT OUT: fuzz_dest's input from a godwit snapshot: its records
up to END, each as {u32 type; u32 flags; u32 len; payload}, RAM records left out (the
target seals the rest again; fuzz_stream covers RAM). Seeds in fuzz/corpus/fuzz_dest/
were made from snapshots of the test guest (`migrate --to file:`), with and without a
disk."""
import struct
import sys

RAM_TYPES = {2, 7, 8}
END = 6


def records(data):
    pos = 32
    while pos + 24 <= len(data):
        rtype, flags, length, _ = struct.unpack_from("<IIQQ", data, pos)
        if rtype == END:
            return
        yield rtype, flags, data[pos + 24:pos + 24 + length]
        pos += 24 + length


def main():
    data = open(sys.argv[1], "rb").read()
    out = b"".join(struct.pack("<III", t, f, len(p)) + p
                   for t, f, p in records(data) if t not in RAM_TYPES)
    open(sys.argv[2], "wb").write(out)


if __name__ == "__main__":
    main()
