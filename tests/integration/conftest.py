"""Shared pytest configuration for godwit's integration tests (markers: pytest.ini)."""
import os
import pathlib
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from godwit_vm import GODWIT, Godwit, kvm_unusable_reason  # noqa: E402

# Each test's outcome on disk as it ends, when GODWIT_TEST_RESULTS is set.
pytest_plugins = ["outcomes"]

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config, items):
    """Tests marked `kvm` are skipped, with the reason, where /dev/kvm cannot be opened."""
    reason = kvm_unusable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "kvm" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def godwit_bin():
    if not os.access(GODWIT, os.X_OK):
        pytest.fail(f"{GODWIT} is not built (run make)")
    return GODWIT


@pytest.fixture
def vms(tmp_path):
    """Factory of godwit processes, all stopped by PID at the end of the test."""
    started = []

    def start(*args, **kw):
        g = Godwit.run_testguest(tmp_path, *args, **kw)
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()


@pytest.fixture(scope="session")
def faults(tmp_path_factory):
    """faults.c built as a library to LD_PRELOAD into godwit (its header says what it does)."""
    so = tmp_path_factory.mktemp("faults") / "faults.so"
    subprocess.run(["cc", "-std=gnu11", "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o",
                    str(so), os.path.join(os.path.dirname(__file__), "faults.c"), "-ldl"],
                   check=True)
    return str(so)


@pytest.fixture
def procs():
    """godwit processes a test started (append them), stopped by PID at its end."""
    started = []
    yield started
    for p in started:
        p.stop()


@pytest.fixture
def etcd(tmp_path):
    """A real etcd (Debian's etcd-server) on free loopback ports, stopped by PID."""
    from cluster_lab import Etcd
    e = Etcd(tmp_path)
    yield e
    e.stop()


@pytest.fixture
def lab(tmp_path):
    """A cluster on loopback (cluster_lab.Lab): etcd, certificates, agents, managers."""
    from cluster_lab import Lab
    lb = Lab(tmp_path)
    yield lb
    lb.stop()
