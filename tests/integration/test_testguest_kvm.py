"""The test guest on godwit (needs /dev/kvm): boot, workloads, API, exit codes."""
import os
import re
import signal
import struct
import time

import pytest

from godwit_vm import TESTGUEST, run_godwit

pytestmark = pytest.mark.kvm


@pytest.mark.parametrize("cpus", [1, 2, 4])
def test_every_vcpu_runs_its_workload(vms, cpus):
    workloads = ["heartbeat 20"] + ["memtouch 8M"] * (cpus - 1)
    vm = vms(" ; ".join(workloads), cpus=cpus)
    vm.wait_for(rf"testguest: {cpus} vcpus")
    vm.wait_for(r"^hb 3 ", timeout=30)
    if cpus > 1:
        vm.wait_for(r"memtouch: pass \d+ ok", count=cpus - 1, timeout=240)
    assert "ERROR" not in vm.output()


def test_memtouch_runs_clean(vms):
    vm = vms("memtouch 64M", memory="256M")
    vm.wait_for_pass(5, timeout=240)
    assert "memtouch: ERROR" not in vm.output()


def guest_ram_address(pid, gpa):
    """Where godwit maps guest physical address gpa (below the 3 GiB hole) in its
    address space: its guest RAM is one shared mapping of a memfd, offset = gpa."""
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            if "memfd:godwit-ram" in line:
                span, _, offset = line.split()[:3]
                assert int(offset, 16) == 0, line
                return int(span.split("-")[0], 16) + gpa
    raise AssertionError(f"no guest RAM mapping in /proc/{pid}/maps")


M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def memrand_page(gpa, npass):
    """The 512 words memtouch's random mode writes at gpa in pass npass, as
    guest/testguest/README.md specifies them."""
    seed = mix64(gpa ^ mix64((npass * GOLDEN) & M64))
    out = []
    for i in range(512):
        y = (seed + (i + 1) * GOLDEN) & M64
        z = ((y ^ (y >> 32)) * 0xD6E8FEB86659FD93) & M64
        out.append(z ^ (z >> 32))
    return out


def test_memtouch_random_runs_and_reports_a_changed_byte(vms):
    """Random mode: every word of a page is checked, so one byte changed in the middle
    of a page behind the guest's back (through /proc/PID/mem, with the VM paused so
    the change cannot race the vCPU) is reported at its word, and the pass fails."""
    vm = vms("heartbeat 100 ; memtouch 16M random", cpus=2, memory="256M")
    m = vm.wait_for(r"^memtouch: cpu=1 16384 KiB in 1 range\(s\) from 0x([0-9a-f]+), "
                    r"unpaced, random pages$", timeout=60)
    vm.wait_for_pass(3, timeout=240)
    assert "ERROR" not in vm.output() and "FAILED" not in vm.output()
    word = int(m[0], 16) + 100 * 4096 + 1232  # word 154 of page 100
    assert vm.api("PUT", "/vm/pause")[0] == 200
    with open(f"/proc/{vm.proc.pid}/mem", "r+b", buffering=0) as mem:
        # The page holds what the README's formula gives for the pass that wrote it.
        page = word & ~4095
        mem.seek(guest_ram_address(vm.proc.pid, page))
        got = list(struct.unpack("<512Q", mem.read(4096)))
        npass = next(p for p in range(1, vm.passes() + 10000)
                     if memrand_page(page, p)[0] == got[0])
        assert got == memrand_page(page, npass), npass
        addr = guest_ram_address(vm.proc.pid, word) + 2
        mem.seek(addr)
        old = mem.read(1)[0]
        mem.seek(addr)
        mem.write(bytes([old ^ 0xFF]))
    assert vm.api("PUT", "/vm/resume")[0] == 200
    err = vm.wait_for(r"^memtouch: ERROR gpa=0x([0-9a-f]+) expected 0x([0-9a-f]+) "
                      r"found 0x([0-9a-f]+) cpu=1 pass=\d+$", timeout=60)
    assert len(err) == 1, err
    gpa, expected, found = (int(x, 16) for x in err[0])
    assert gpa == word
    assert expected ^ found == 0xFF << 16
    vm.wait_for(r"^memtouch: pass \d+ FAILED errors=1 cpu=1$", timeout=60)
    failed = vm.output().index("FAILED")
    vm.wait_for_pass(vm.passes() + 2, timeout=60)  # and it goes on, clean
    assert re.search(r"^memtouch: pass \d+ ok", vm.output()[failed:], re.M)
    assert vm.output().count("memtouch: ERROR") == 1


def test_fill_writes_its_range_once_and_halts(vms):
    """fill: every page of its range holds pass 1 of the random pattern (checked in
    guest RAM, first and last page and one between), written once: a second read a
    moment later finds the same bytes, and nothing more is printed."""
    vm = vms("heartbeat 100 ; fill 2M", cpus=2, memory="128M")
    m = vm.wait_for(r"^fill: cpu=1 2048 KiB written in 1 range\(s\) from 0x([0-9a-f]+), "
                    r"halting$", timeout=60)
    start = int(m[0], 16)
    pages = [start, start + 255 * 4096, start + 511 * 4096]

    def read():
        with open(f"/proc/{vm.proc.pid}/mem", "rb", buffering=0) as mem:
            out = []
            for gpa in pages:
                mem.seek(guest_ram_address(vm.proc.pid, gpa))
                out.append(list(struct.unpack("<512Q", mem.read(4096))))
            return out

    first = read()
    assert first == [memrand_page(gpa, 1) for gpa in pages]
    vm.wait_for(r"^hb 10 ", timeout=30)
    assert read() == first
    assert vm.output().count("fill:") == 1 and "ERROR" not in vm.output()


def test_heartbeat_ticks_at_its_rate(vms):
    vm = vms("heartbeat 50")
    beats = vm.wait_for(r"^hb (\d+) (\d+)$", count=20, timeout=30)
    seqs = [int(s) for s, _ in beats]
    ns = [int(n) for _, n in beats]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    gaps = [(b - a) / 1e6 for a, b in zip(ns, ns[1:])]
    # Guest-timed: the mean period is the asked one (a late beat is followed by a
    # shorter gap, so single gaps vary on a noisy host); time never stalls long.
    mean = (ns[-1] - ns[0]) / 1e6 / (len(ns) - 1)
    assert 45 <= mean <= 60, (mean, gaps)
    assert all(0 < g <= 500 for g in gaps), gaps


def test_ticks_count_timer_interrupts(vms):
    vm = vms("ticks 100")
    counts = vm.wait_for(r"ticks cpu=0 count=(\d+)", count=3, timeout=30)
    c = [int(x) for x in counts]
    assert c[-1] > c[0] > 0


def test_api_pause_stops_heartbeat_and_resume_restarts(vms):
    vm = vms("heartbeat 10")
    vm.wait_for(r"^hb 5 ")
    status, body = vm.api("GET", "/vm")
    assert status == 200 and body["state"] == "running"
    assert body["config"]["cpus"] == 1
    status, body = vm.api("PUT", "/vm/pause")
    assert status == 200 and body["state"] == "paused"
    time.sleep(0.2)
    n = len(re.findall(r"^hb ", vm.output(), re.M))
    time.sleep(0.5)
    assert len(re.findall(r"^hb ", vm.output(), re.M)) == n
    status, body = vm.api("PUT", "/vm/resume")
    assert status == 200 and body["state"] == "running"
    vm.wait_for(r"^hb ", count=n + 5)


def test_bad_api_requests_keep_vm_running(vms):
    vm = vms("heartbeat 10")
    vm.wait_for(r"^hb 2 ")
    assert vm.api("GET", "/nope")[0] == 404
    assert vm.api("DELETE", "/vm")[0] == 405
    assert vm.api("PUT", "/vm/pause", body="{not json")[0] == 400
    n = len(re.findall(r"^hb ", vm.output(), re.M))
    vm.wait_for(r"^hb ", count=n + 3)


def test_api_shutdown_ends_process(vms):
    vm = vms("heartbeat 10")
    vm.wait_for(r"^hb 1 ")
    assert vm.api("PUT", "/vm/shutdown")[0] == 202
    assert vm.wait_exit(timeout=10) == 0


def test_exit_code_passes_through(tmp_path):
    res = run_godwit(["run", "--kernel", TESTGUEST, "--cmdline", "exit 3"], timeout=60)
    assert res.returncode == 3, res.stderr


# kvm_pvm runs guest ring 3 as host user code: its IOPL does not count there, only the
# TSS's I/O bitmap does (docs/design.md, "The machines we build on").
PVM = os.path.isdir("/sys/module/kvm_pvm")


@pytest.mark.parametrize("mode,on_pvm", [
    ("bitmap", "exit"),        # IOPL 0, a bitmap that allows the ports
    ("iopl", "#GP"),           # IOPL 3, no bitmap
    ("pvh-tr", "triple"),      # IOPL 3, TR as godwit's PVH entry gives it (base 0, 0x67)
    ("reset-tr", "exit"),      # IOPL 3, TR as QEMU's PVH entry leaves it (base 0, 0xffff)
])
def test_ring3_outb(tmp_path, mode, on_pvm):
    """outb from ring 3: exit code 90 where it is allowed (with IOPL 3 it always is on
    KVM with VMX or SVM); on kvm_pvm a #GP (exit 99) where the bitmap refuses, and a
    triple fault where that #GP must be delivered through a TSS at address 0."""
    res = run_godwit(["run", "--kernel", TESTGUEST, "--cmdline", f"ioport {mode}"],
                     timeout=60)
    expect = on_pvm if PVM else "exit"
    if expect == "exit":
        assert res.returncode == 90, (res.stdout, res.stderr)
    elif expect == "#GP":
        assert res.returncode == 99, (res.stdout, res.stderr)
        assert re.search(r"exception vector=13 \(#GP\) .* ring=3", res.stdout), res.stdout
    else:
        assert res.returncode == 1 and "triple fault" in res.stderr, (res.stdout, res.stderr)


def test_malformed_guest_cmdline(tmp_path):
    res = run_godwit(["run", "--kernel", TESTGUEST, "--cmdline", "dance 5"], timeout=60)
    assert res.returncode == 2
    assert "testguest: error:" in res.stdout


def test_sigterm_ends_cleanly(vms):
    vm = vms("heartbeat 10")
    vm.wait_for(r"^hb 1 ")
    vm.proc.send_signal(signal.SIGTERM)
    assert vm.wait_exit(timeout=10) == 128 + signal.SIGTERM
    assert "stopped by" in vm.stderr()
