"""Debian's stock cloud kernel on godwit (needs /dev/kvm and `make guest-linux`).

Each test boots build/guest/vmlinux with build/guest/initramfs.cpio.gz; the init runs
the command that follows ` -- ` and ends the VM with its exit status (docs/linux-guests.md).
A boot takes ~20 s under nested KVM (scripts/nested-kvm), a few seconds on hardware KVM;
every godwit process is bounded by a timeout and stopped by its PID.
"""
import os
import re
import signal
import subprocess

import pytest

from godwit_vm import GODWIT, ROOT

pytestmark = [pytest.mark.linux, pytest.mark.kvm]

VMLINUX = os.path.join(ROOT, "build", "guest", "vmlinux")
INITRD = os.path.join(ROOT, "build", "guest", "initramfs.cpio.gz")
# Whole-boot bound (boot + command + exit); raise it on a slow host.
TIMEOUT = float(os.environ.get("GODWIT_LINUX_TIMEOUT", "300"))
# What the tests boot with (docs/linux-guests.md, "Boot time": each option measured).
CMDLINE = os.environ.get(
    "GODWIT_LINUX_CMDLINE",
    "console=ttyS0 quiet pci=off 8250.nr_uarts=1 cryptomgr.notests")

# What must never be in the kernel log of a healthy boot.
BAD_DMESG = re.compile(r"Oops|BUG:|soft lockup|hard LOCKUP|Kernel panic|general protection|"
                       r"rcu_sched detected stalls|rcu: INFO: .* stall|blocked for more than")


def _need_image():
    for path in (VMLINUX, INITRD):
        if not os.path.exists(path):
            pytest.skip(f"{path} is missing: run `make guest-linux`")
    if not os.access(GODWIT, os.X_OK):
        pytest.fail(f"{GODWIT} is not built (run make)")


def boot(tmp_path, command, cpus=2, memory="512M", name="linux", timeout=TIMEOUT):
    """Boots Linux running `command` (a list: init's argv): (status, console, godwit's stderr).

    The console goes to a file; godwit is waited for at most `timeout` seconds, then
    stopped by its PID (SIGTERM, then SIGKILL) and the test fails with the console tail.
    """
    _need_image()
    console = tmp_path / f"{name}.console"
    stderr_path = tmp_path / f"{name}.stderr"
    args = [GODWIT, "run", "--kernel", VMLINUX, "--initrd", INITRD, "--cmdline", CMDLINE,
            "--memory", memory, "--cpus", str(cpus), "--console", f"file:{console}",
            "--", *command]
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err)
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            status = None
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
    text = console.read_text(errors="replace") if console.exists() else ""
    stderr = stderr_path.read_text(errors="replace")
    if status is None:
        raise AssertionError(
            f"Linux did not finish within {timeout}s;\nconsole tail:\n{text[-3000:]}\n"
            f"stderr:\n{stderr[-2000:]}")
    return status, text, stderr


# One boot answers several questions: the command prints what the tests check between
# markers (init's arguments cannot hold quotes, so the script avoids them).
PROBE = ("echo cpus=$(grep -c ^processor /proc/cpuinfo); "
         "echo online=$(cat /sys/devices/system/cpu/online); "
         "echo DMESG-BEGIN; dmesg; echo DMESG-END; exit 7")


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """(status, console) of one 2-vCPU boot running PROBE."""
    return boot(tmp_path_factory.mktemp("linux"), ["sh", "-c", PROBE])


def _section(text, begin, end):
    m = re.search(rf"^{begin}\r?$(.*?)^{end}\r?$", text, re.M | re.S)
    assert m, f"no {begin}..{end} in the console:\n{text[-3000:]}"
    return m.group(1)


def test_command_output_and_exit_status_come_back(probe):
    status, text, _ = probe
    assert re.search(r"^cpus=\d+\r?$", text, re.M), text[-3000:]
    assert status == 7, f"exit status {status};\n{text[-3000:]}"


def test_two_vcpus_online(probe):
    _, text, _ = probe
    assert re.search(r"^cpus=2\r?$", text, re.M), text[-3000:]
    assert re.search(r"^online=0-1\r?$", text, re.M), text[-3000:]
    dmesg = _section(text, "DMESG-BEGIN", "DMESG-END")
    assert "smp: Brought up 1 node, 2 CPUs" in dmesg, dmesg[-3000:]


def test_dmesg_has_no_oops_bug_or_lockup(probe):
    _, text, _ = probe
    dmesg = _section(text, "DMESG-BEGIN", "DMESG-END")
    bad = [line for line in dmesg.splitlines() if BAD_DMESG.search(line)]
    assert not bad, "\n".join(bad)


def test_single_command_output_on_the_console(tmp_path):
    """The issue's own example: the output is on the console, the status is the command's."""
    status, text, _ = boot(tmp_path, ["sh", "-c", "grep -c ^processor /proc/cpuinfo"])
    assert status == 0, text[-3000:]
    assert re.search(r"^2\r?$", text, re.M), text[-3000:]


def test_acpi_poweroff_ends_godwit_with_status_0(tmp_path):
    """busybox `poweroff -f`: ACPI S5 through the FADT sleep control register."""
    status, text, stderr = boot(tmp_path, ["poweroff", "-f"], cpus=1)
    assert status == 0, f"exit status {status};\n{text[-3000:]}\n{stderr[-2000:]}"
    # The power-off itself, not init's exit port (which would also say 0).
    assert "powered off" in stderr, stderr[-2000:]
