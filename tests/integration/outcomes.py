"""pytest plugin (tests/integration/conftest.py loads it): with GODWIT_TEST_RESULTS=DIR,
each test's outcome is appended to DIR/outcomes the moment the test ends ("start\tNODEID"
when it begins, then "OUTCOME\tNODEID", each line fsynced), and the report of a test that
did not pass goes to DIR/NNN.txt, with the test's own small files (consoles, godwit's
stderr: what is under its tmp_path, which in the rig is on the VM's tmpfs and is lost
with it) copied to DIR/NNN-files/. A run whose machine dies part-way (the nested-KVM rig:
scripts/test-linux.sh) thus still tells which tests passed, which failed and why, and
which one was running."""
import os
import shutil

import pytest

RESULTS_DIR = os.environ.get("GODWIT_TEST_RESULTS")
_RANK = {"passed": 0, "skipped": 1, "xfailed": 1, "xpassed": 2, "failed": 3, "error": 3}
_outcomes = {}
# Files a failed test left larger than this (snapshots, disk images) are not kept.
_KEEP_MAX = 4 << 20


def _record(name, text):
    fd = os.open(os.path.join(RESULTS_DIR, name), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                 0o644)
    try:
        os.write(fd, text.encode("utf-8", "replace"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _phase_outcome(report):
    if report.failed:
        return "failed" if report.when == "call" else "error"
    if report.skipped:
        return "xfailed" if hasattr(report, "wasxfail") else "skipped"
    if report.when == "call":
        return "xpassed" if hasattr(report, "wasxfail") else "passed"
    return None


def pytest_runtest_logstart(nodeid, location):
    if RESULTS_DIR:
        _outcomes[nodeid] = ("passed", [])
        _record("outcomes", f"start\t{nodeid}\n")


def pytest_runtest_logreport(report):
    if not RESULTS_DIR:
        return
    outcome, texts = _outcomes.setdefault(report.nodeid, ("passed", []))
    phase = _phase_outcome(report)
    if phase is not None and _RANK[phase] >= _RANK[outcome]:
        outcome = phase
    if report.failed:
        texts.append(f"---- {report.when}: {report.longreprtext}\n")
        texts += [f"---- {title}\n{body}\n" for title, body in report.sections]
    _outcomes[report.nodeid] = (outcome, texts)


def _keep_files(tmp_path, dest):
    for root, _, names in os.walk(tmp_path):
        for name in names:
            path = os.path.join(root, name)
            try:
                if not os.path.isfile(path) or os.path.getsize(path) > _KEEP_MAX:
                    continue
                rel = os.path.relpath(path, tmp_path)
                os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
                shutil.copyfile(path, os.path.join(dest, rel))
            except OSError:
                continue


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if RESULTS_DIR and report.failed and tmp_path is not None:
        _keep_files(str(tmp_path), os.path.join(RESULTS_DIR, f"{len(_outcomes):03d}-files"))


def pytest_runtest_logfinish(nodeid, location):
    if not RESULTS_DIR:
        return
    outcome, texts = _outcomes.get(nodeid, ("passed", []))
    if texts:
        _record(f"{len(_outcomes):03d}.txt", f"{outcome} {nodeid}\n" + "".join(texts))
    _record("outcomes", f"{outcome}\t{nodeid}\n")
