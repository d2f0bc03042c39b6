#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""mkcpio.py ROOT [--nod PATH:MODE:c|b:MAJOR:MINOR]... > out.cpio

Writes ROOT as a newc ("070701") cpio archive on stdout, reproducibly: entries in
sorted order (every directory before what it holds), owner root, mtime 0 (or
SOURCE_DATE_EPOCH), inode numbers counted from 1, file modes as in ROOT, no hard
links. --nod adds a device node that ROOT need not (cannot, unprivileged) hold.
"""
import os
import stat
import sys


def header(ino, mode, nlink, mtime, size, rdev, name):
    fields = [ino, mode, 0, 0, nlink, mtime, size, 0, 0, rdev[0], rdev[1],
              len(name) + 1, 0]
    return b"070701" + b"".join(b"%08X" % f for f in fields)


def pad4(n):
    return b"\0" * (-n % 4)


def entry(out, ino, mode, mtime, data, name, rdev=(0, 0)):
    nlink = 2 if stat.S_ISDIR(mode) else 1
    hdr = header(ino, mode, nlink, mtime, len(data), rdev, name)
    raw = hdr + name.encode() + b"\0"
    out.write(raw + pad4(len(raw)))
    out.write(data + pad4(len(data)))


def walk(root):
    """Yields (archive name, path) for everything under root, sorted."""
    items = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        for n in dirnames + filenames:
            name = n if rel == "." else os.path.join(rel, n)
            items.append((name, os.path.join(dirpath, n)))
    return sorted(items)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    root = argv[1]
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    nodes = {}
    args = argv[2:]
    while args:
        if args[0] != "--nod" or len(args) < 2:
            sys.exit("mkcpio.py: bad arguments: %s" % " ".join(args))
        path, mode, kind, major, minor = args[1].split(":")
        fmt = stat.S_IFCHR if kind == "c" else stat.S_IFBLK
        nodes[path.lstrip("/")] = (fmt | int(mode, 8), (int(major), int(minor)))
        args = args[2:]
    entries = [(name, path, None) for name, path in walk(root)]
    entries += [(name, None, node) for name, node in nodes.items()]
    out = sys.stdout.buffer
    for ino, (name, path, node) in enumerate(sorted(entries), start=1):
        if node:
            entry(out, ino, node[0], mtime, b"", name, node[1])
            continue
        st = os.lstat(path)
        mode = stat.S_IFMT(st.st_mode) | stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            data = os.readlink(path).encode()
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                data = f.read()
        elif stat.S_ISDIR(st.st_mode):
            data = b""
        else:
            sys.exit("mkcpio.py: %s: not a file, directory or symlink" % path)
        entry(out, ino, mode, mtime, data, name)
    entry(out, 0, 0, 0, b"", "TRAILER!!!")


if __name__ == "__main__":
    main(sys.argv)
