#!/usr/bin/python3
"""Where one process's CPU samples went, per thread, in the buckets of docs/bench.md
("Where the time goes on an incompressible move"), from a system-wide `perf record -a -g`
(bench/profile_incompressible.sh TOOL=perf).

    bench/perf_breakdown.py OUTDIR/perf.data PID [PID...]

A sample goes to the first bucket whose test matches its call chain (leaf first), so
the order of BUCKETS matters: e.g. a copy inside tcp_sendmsg counts as the send, not as
a copy. perf on this kvm_pvm host samples no guest time: the vCPU threads' CPU comes
from /proc schedstat (bench/schedstat_delta.py), not from here.
"""
import collections
import subprocess
import sys


def has(*names):
    return lambda leaf, stack: any(n in stack for n in names)


def leaf_is(*names):
    return lambda leaf, stack: any(leaf.startswith(n) for n in names)


BUCKETS = [
    ("xxhash (record checksum)", lambda leaf, stack: "XXH" in leaf or "xxhash" in leaf),
    ("lz4 (compression attempts)", lambda leaf, stack: "LZ4" in leaf or "lz4" in leaf),
    ("zstd", lambda leaf, stack: "ZSTD" in leaf),
    ("send: writev/send into TCP (copy + stack)", has("tcp_sendmsg", "sock_write_iter")),
    ("recv: read from TCP (copy + stack)", has("tcp_recvmsg", "sock_read_iter", "sock_recvmsg")),
    ("pwrite into the memfd (dest's copy into guest RAM)", has("shmem_file_write_iter",
                                                              "__x64_sys_pwrite64")),
    ("lseek SEEK_DATA/SEEK_HOLE on the memfd", has("ksys_lseek", "shmem_file_llseek")),
    ("dirty log ioctls (KVM_GET/CLEAR_DIRTY_LOG)", has("kvm_vm_ioctl_get_dirty_log",
                                                       "kvm_vm_ioctl_clear_dirty_log",
                                                       "kvm_get_dirty_log_protect",
                                                       "kvm_clear_dirty_log_protect")),
    ("KVM_RUN / other KVM ioctls", has("kvm_vcpu_ioctl", "kvm_vm_ioctl")),
    ("fallocate (zero runs)", has("__x64_sys_fallocate")),
    ("add_page: zero check + 4 KiB copy to staging (inlined)", leaf_is("add_page")),
    ("bitmap work (ram__sync, send_pending, merge)", leaf_is("ram__sync", "merge_words",
                                                             "ram__send_pending",
                                                             "ram__arm")),
    ("libc memcpy/memmove (user)", leaf_is("__memmove", "__memcpy", "memcpy")),
    ("page faults", has("asm_exc_page_fault", "exc_page_fault")),
    ("futex / scheduler / poll", has("__x64_sys_futex", "do_sys_poll", "schedule",
                                     "__x64_sys_sched_yield")),
    ("other kernel", lambda leaf, stack: stack and stack[0].startswith("[k]")),
    ("other user", lambda leaf, stack: True),
]


# The kernel's and libc's byte copies (a leaf in one of these is moving bytes)
def COPY(leaf):
    return leaf.startswith(("rep_movs_alternative", "copy_folio_from_iter", "_copy_to_iter",
                            "_copy_from_iter", "__memmove", "__memcpy", "copy_user"))


def samples(data):
    out = subprocess.run(["perf", "script", "-i", data, "-F", "comm,pid,tid,ip,sym,dso"],
                         capture_output=True, text=True, check=True).stdout
    for block in out.split("\n\n"):
        lines = [l for l in block.strip("\n").splitlines() if l.strip()]
        if not lines:
            continue
        head = lines[0].split()
        comm, pidtid = " ".join(head[:-1]), head[-1]
        if "/" not in pidtid:
            continue
        pid, tid = pidtid.split("/")
        frames = []
        for l in lines[1:]:
            parts = l.split(None, 1)
            if len(parts) < 2:
                continue
            sym, _, dso = parts[1].rpartition(" (")
            dso = dso.rstrip(")")
            k = "[k] " if "kernel.kallsyms" in dso else ""
            frames.append(k + (sym if sym != "[unknown]" else dso))
        yield pid, tid, comm, frames


def main():
    data, pids = sys.argv[1], set(sys.argv[2:])
    per = collections.defaultdict(collections.Counter)
    leaves = collections.defaultdict(collections.Counter)
    copies = collections.defaultdict(collections.Counter)
    comms = {}
    for pid, tid, comm, frames in samples(data):
        if pid not in pids or not frames:
            continue
        comms[(pid, tid)] = comm
        leaf = frames[0].removeprefix("[k] ")
        for name, test in BUCKETS:
            if test(leaf, stack_view(frames)):
                per[(pid, tid)][name] += 1
                if COPY(leaf):
                    copies[(pid, tid)][name] += 1
                break
        leaves[(pid, tid)][frames[0]] += 1
    for key in sorted(per, key=lambda k: -sum(per[k].values())):
        n = sum(per[key].values())
        print(f"pid {key[0]} thread {key[1]} {comms[key]}: {n} samples (~{n} ms at 999 Hz)")
        for name, c in per[key].most_common():
            k = copies[key][name]
            print(f"  {100 * c / n:5.1f}%  {name}" +
                  (f"  (of which the byte copy: {100 * k / n:.1f}%)" if k else ""))
        print("  top leaf functions: " + ", ".join(
            f"{s} {100 * c / n:.1f}%" for s, c in leaves[key].most_common(8)))


class stack_view(list):
    """The frames, where `"name" in stack` matches a frame by substring and stack[0] keeps
    its "[k] " mark."""

    def __contains__(self, name):
        return any(name in f for f in self)


if __name__ == "__main__":
    main()
