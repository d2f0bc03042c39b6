"""scripts/test-linux.sh reports every Linux test's outcome, even when the nested VM dies.

The rig is replaced (NESTED_KVM_RUN) by a stand-in that runs the command on this host and,
like scripts/nested-kvm/run.sh when the VM stops without an exit code, exits 125 when the
command dies of a signal; the tests are stand-ins too (GODWIT_LINUX_TESTDIR): one passes,
one fails, one kills its pytest as a dying VM would, one hangs, one comes after them.
"""
import os
import subprocess
import sys

import pytest

from godwit_vm import ROOT

SCRIPT = os.path.join(ROOT, "scripts", "test-linux.sh")
HERE = os.path.dirname(os.path.abspath(__file__))

RIG = """\
import os, signal, subprocess, sys
args = sys.argv[sys.argv.index("--") + 1:]
child = subprocess.Popen(args, start_new_session=True)
def stop(*_):
    os.killpg(child.pid, signal.SIGKILL)
    sys.exit(130)
signal.signal(signal.SIGTERM, stop)
rc = child.wait()
sys.exit(125 if rc < 0 else rc)
"""

TESTS = """\
import os, signal, time
import pytest
linux = pytest.mark.linux
MODE = os.environ["FAKE_MODE"]

@linux
def test_a_passes():
    pass

@linux
def test_b_fails(tmp_path):
    (tmp_path / "b.console").write_text("the console of the failing test")
    print("what the failing test printed")
    assert MODE == "pass", "b failed as asked"

@linux
def test_c_dies():
    if MODE == "die":
        os.kill(os.getpid(), signal.SIGKILL)

@linux
def test_d_hangs():
    if MODE == "hang":
        time.sleep(3600)

@linux
def test_e_after():
    pass

def test_not_in_the_tier():
    pass
"""


def _tier(tmp_path, mode, **env):
    tests = tmp_path / "tests"
    tests.mkdir(exist_ok=True)
    (tests / "pytest.ini").write_text("[pytest]\nmarkers =\n    linux: the Linux tier\n")
    (tests / "conftest.py").write_text(
        f"import sys\nsys.path.insert(0, {HERE!r})\npytest_plugins = ['outcomes']\n")
    (tests / "test_fake.py").write_text(TESTS)
    rig = tmp_path / "rig.py"
    rig.write_text(RIG)
    out = tmp_path / "out"
    # NESTED_KVM_RUN is one program: a wrapper runs the stand-in.
    wrapper = tmp_path / "rig.sh"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {rig} \"$@\"\n")
    wrapper.chmod(0o755)
    full = dict(os.environ, FAKE_MODE=mode, GODWIT_LINUX_TESTDIR=str(tests),
                NESTED_KVM_RUN=str(wrapper), NESTED_KVM_CACHE=str(tmp_path / "cache"),
                GODWIT_LINUX_OUT=str(out), **env)
    res = subprocess.run([SCRIPT], env=full, capture_output=True, text=True, timeout=300)
    return res, out


def _outcome_lines(stdout):
    return [line.split() for line in stdout.splitlines() if line.startswith("  ")
            and "::" in line]


def test_all_passing_tier_exits_0(tmp_path):
    res, _ = _tier(tmp_path, "pass")
    assert res.returncode == 0, res.stdout + res.stderr
    assert [o for o, _ in _outcome_lines(res.stdout)] == ["passed"] * 5, res.stdout
    assert "5 passed, in 1 nested VM(s)" in res.stdout, res.stdout


def test_a_dying_vm_leaves_every_outcome_reported(tmp_path):
    res, out = _tier(tmp_path, "die")
    assert res.returncode == 1, res.stdout + res.stderr
    got = {t.split("::")[1]: o for o, t in _outcome_lines(res.stdout)}
    assert got == {"test_a_passes": "passed", "test_b_fails": "failed",
                   "test_c_dies": "unfinished", "test_d_hangs": "passed",
                   "test_e_after": "passed"}, res.stdout
    assert "did not finish: the nested VM stopped (run.sh status 125)" in res.stdout
    assert "in 2 nested VM(s)" in res.stdout, res.stdout
    # The failed test's report was kept, with what it printed.
    reports = list(out.glob("boot-1/[0-9]*.txt"))
    assert len(reports) == 1, reports
    text = reports[0].read_text()
    assert "b failed as asked" in text and "what the failing test printed" in text, text
    assert f"report: {reports[0]}" in res.stdout, res.stdout
    # And the files it left in its tmp_path (consoles, godwit's stderr).
    kept = out / "boot-1" / (reports[0].stem + "-files") / "b.console"
    assert kept.read_text() == "the console of the failing test"


def test_a_silent_vm_is_stopped_and_the_rest_run(tmp_path):
    res, _ = _tier(tmp_path, "hang", GODWIT_LINUX_STALL="10")
    assert res.returncode == 1, res.stdout + res.stderr
    got = {t.split("::")[1]: o for o, t in _outcome_lines(res.stdout)}
    assert got["test_d_hangs"] == "unfinished" and got["test_e_after"] == "passed", res.stdout
    assert "no test ended for 10s; the nested VM was stopped" in res.stdout, res.stdout


def test_vm_budget_spent_leaves_the_rest_not_run(tmp_path):
    res, _ = _tier(tmp_path, "die", GODWIT_LINUX_BOOTS="1")
    assert res.returncode == 1, res.stdout + res.stderr
    got = {t.split("::")[1]: o for o, t in _outcome_lines(res.stdout)}
    assert got["test_d_hangs"] == "not-run" and got["test_e_after"] == "not-run", res.stdout



def test_an_out_dir_the_nested_vm_cannot_see_is_refused(tmp_path):
    """The real rig gives the nested VM its own /tmp: outcomes written there never reach
    the host, and every test would be reported not-run. The script says so first."""
    env = {k: v for k, v in os.environ.items() if k != "NESTED_KVM_RUN"}
    env.update(GODWIT_NESTED="1", GODWIT_LINUX_OUT=str(tmp_path / "out"))
    pvm = os.path.isdir("/sys/module/kvm_pvm") or not os.path.exists("/dev/kvm")
    if os.getuid() != 0 or not pvm or not str(tmp_path).startswith("/tmp/"):
        pytest.skip("the tier goes nested only as root on a host without usable KVM, and "
                    "this check is about an out dir under /tmp")
    res = subprocess.run([SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "the nested VM cannot write to the host's" in res.stderr, res.stderr
    assert not (tmp_path / "out").exists()
