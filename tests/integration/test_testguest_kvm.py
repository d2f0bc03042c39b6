"""The test guest on godwit (needs /dev/kvm): boot, workloads, API, exit codes."""
import os
import re
import signal
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
