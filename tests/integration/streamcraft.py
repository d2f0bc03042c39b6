"""Builds and edits godwit migration streams (docs/migration-format.md), byte by byte,
for tests that play a hostile peer. Checksums are XXH3-64 from the system's libxxhash,
the one godwit links."""
import ctypes
import struct

_xxh = ctypes.CDLL("libxxhash.so.0")
_xxh.XXH3_64bits.restype = ctypes.c_uint64
_xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_xxh.XXH3_64bits_withSeed.restype = ctypes.c_uint64
_xxh.XXH3_64bits_withSeed.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]

MAGIC = b"GODWITMS"
CONFIG, RAM, ROUND, STATE, VERIFY, END = 1, 2, 3, 4, 5, 6
ACCEPTED, ROUND_ACK, ERROR = 0x104, 0x105, 0x103
MANDATORY = 1
CFG_FEATURES, CFG_CONNECTIONS = 9, 10
FEATURE_ROUND_ACK = 1 << 1


def xxh3(data, seed=0):
    return _xxh.XXH3_64bits_withSeed(data, len(data), seed)


def header(major=1, minor=5):
    h = MAGIC + struct.pack("<HHIII", major, minor, 4096, 1, 0)
    return h + struct.pack("<Q", xxh3(h))


def record(rtype, payload, flags=MANDATORY):
    h = struct.pack("<IIQ", rtype, flags, len(payload))
    return h + struct.pack("<Q", xxh3(h + payload)) + payload


def split(data):
    """(header bytes, [(type, flags, payload)], bytes after END)."""
    pos, recs = 32, []
    while True:
        rtype, flags, length, _ = struct.unpack_from("<IIQQ", data, pos)
        recs.append((rtype, flags, data[pos + 24:pos + 24 + length]))
        pos += 24 + length
        if rtype == END:
            return data[:32], recs, data[pos:]


def join(hdr, recs):
    """The stream again, each checksum and END recomputed for the records given."""
    out, chain = [hdr], 0
    for rtype, flags, payload in recs:
        if rtype == END:
            payload = struct.pack("<QQ", len(recs) - 1, chain)
        rec = record(rtype, payload, flags)
        out.append(rec)
        chain = xxh3(rec[16:24], chain)
    return b"".join(out)


def tlvs(payload):
    """[(tag, flags, value)] of a TLV list."""
    pos, out = 0, []
    while pos < len(payload):
        tag, flags, length = struct.unpack_from("<HHI", payload, pos)
        out.append((tag, flags, payload[pos + 8:pos + 8 + length]))
        pos += 8 + length
    return out


def tlv_join(fields):
    return b"".join(struct.pack("<HHI", t, f, len(v)) + v for t, f, v in fields)


def config_with(payload, tag, value, flags=None):
    """CONFIG payload with tag's value replaced (or added)."""
    fields = tlvs(payload)
    for i, (t, f, _) in enumerate(fields):
        if t == tag:
            fields[i] = (t, f if flags is None else flags, value)
            return tlv_join(fields)
    return tlv_join(fields + [(tag, 1 if flags is None else flags, value)])


def round_record(n):
    return record(ROUND, struct.pack("<IIQQQQ", n, 0, 0, 0, 0, 0), flags=0)
