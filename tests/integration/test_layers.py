"""The layers of docs/design.md ("The parts") hold: a layer includes and calls only
those below it. Read from the sources with the compiler (include closure, gcc -MM)
and from the objects it makes (undefined symbols, nm -u); needs no KVM.
"""
import glob
import os
import re
import subprocess

import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
CFLAGS = ["-std=gnu11", "-D_GNU_SOURCE", "-Iinclude"]

# What the VM (src/core/) must not see: the migration layer and its wire format,
# the API's server and routes, and JSON.
NOT_IN_CORE_HEADERS = {
    "include/godwit/migrate.h", "include/godwit/stream.h", "include/godwit/ram.h",
    "include/godwit/vmstate.h", "include/godwit/dirtiers.h", "include/godwit/dump.h",
    "include/godwit/api.h", "include/godwit/api_client.h", "include/godwit/vm_api.h",
}
NOT_IN_CORE_CALLS = re.compile(r"^(migrate|migrate_cli|stream|stream_io|ram|vmstate|dirtiers|"
                               r"transport|connections|dump|api|api_client|vm_api)__|^json_")


def sources(pattern):
    found = sorted(glob.glob(os.path.join(ROOT, pattern)))
    assert found, f"no file matches {pattern}"
    return [os.path.relpath(f, ROOT) for f in found]


def included(path):
    out = subprocess.run(["gcc", *CFLAGS, "-M", path], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    deps = out.replace("\\\n", " ").split(":", 1)[1].split()
    return {os.path.relpath(os.path.realpath(os.path.join(ROOT, d)), ROOT) if not
            os.path.isabs(d) else d for d in deps}


def undefined(path, tmp_path):
    obj = tmp_path / (os.path.basename(path) + ".o")
    subprocess.run(["gcc", *CFLAGS, "-O0", "-c", "-o", str(obj), path], cwd=ROOT,
                   check=True)
    out = subprocess.run(["nm", "-u", str(obj)], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


@pytest.mark.parametrize("path", sources("src/core/*.c") + ["include/godwit/vm.h"])
def test_core_includes_nothing_of_the_layers_above(path):
    deps = included(path)
    above = sorted(d for d in deps if d in NOT_IN_CORE_HEADERS or d.endswith("/jansson.h"))
    assert not above, f"{path} includes {above}"


@pytest.mark.parametrize("path", sources("src/core/*.c"))
def test_core_calls_nothing_of_the_layers_above(path, tmp_path):
    calls = sorted(s for s in undefined(path, tmp_path) if NOT_IN_CORE_CALLS.match(s))
    assert not calls, f"{path} calls {calls}"


@pytest.mark.parametrize("path", sources("src/migrate/*.c"))
def test_migration_does_not_know_the_api_routes(path, tmp_path):
    assert "include/godwit/vm_api.h" not in included(path)
    calls = sorted(s for s in undefined(path, tmp_path) if s.startswith("vm_api__"))
    assert not calls, f"{path} calls {calls}"


@pytest.mark.parametrize("path", sources("src/api/*.c"))
def test_the_http_server_knows_no_vm(path):
    deps = included(path)
    assert "include/godwit/vm.h" not in deps and "include/godwit/migrate.h" not in deps


# The cluster (src/cluster/) sits above everything and drives VMs only through their
# API: of godwit's own headers it sees its own, the API's client and server types,
# logging and parsing; of godwit's functions it calls no VM's, migration's or route's.
CLUSTER_HEADERS_ALLOWED = {"include/godwit/api.h", "include/godwit/api_client.h",
                           "include/godwit/log.h", "include/godwit/util.h"}
CLUSTER_CALLS_ALLOWED = re.compile(
    r"^(etcd|etcd_txn|etcd_range|cluster|cluster_cli|pki|tls_files|https|sched|snap|mgr|"
    r"agent|manager|api_client|log|util|drs|dpm|sim|simulate|load|load_tracker|rules|power|"
    r"link)__|"
    r"^api__error$")


@pytest.mark.parametrize("path", sources("src/cluster/*.c"))
def test_cluster_uses_only_the_public_api_client(path, tmp_path):
    ours = {d for d in included(path) if d.startswith("include/godwit/")}
    wrong = sorted(d for d in ours if d not in CLUSTER_HEADERS_ALLOWED
                   and not d.startswith("include/godwit/cluster/"))
    assert not wrong, f"{path} includes {wrong}"
    calls = sorted(s for s in undefined(path, tmp_path)
                   if "__" in s and not s.startswith("__") and not CLUSTER_CALLS_ALLOWED.match(s))
    assert not calls, f"{path} calls {calls}"


@pytest.mark.parametrize("path", ["src/cluster/sched.c", "src/cluster/drs.c",
                                  "src/cluster/dpm.c"])
def test_the_scheduler_is_pure(path, tmp_path):
    """No etcd, network, TLS or JSON in the scheduler: a simulator runs the same code."""
    deps = included(path)
    impure = sorted(d for d in deps if re.search(
        r"curl|event2|openssl|jansson|sys/socket|netinet|arpa/|godwit/cluster/(etcd|keys|tls)|"
        r"godwit/api", d))
    assert not impure, f"{path} includes {impure}"
    calls = sorted(s for s in undefined(path, tmp_path) if re.match(
        r"^(etcd|curl|json|SSL|evhttp|socket|connect|send|recv|read|write|open)", s))
    assert not calls, f"{path} calls {calls}"
