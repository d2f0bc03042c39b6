"""`godwit cluster simulate`: the scheduler's invariants on small synthetic clusters, its
JSON, its errors, and the machinery of bench/drs.py. Needs no KVM and no etcd.
"""
import json
import os
import subprocess
import sys

import pytest

from godwit_vm import GODWIT, ROOT

sys.path.insert(0, os.path.join(ROOT, "bench"))

import drs as bench_drs  # noqa: E402

PASS_KEYS = {"pass", "imbalance_before", "imbalance_after", "moves", "balance_moves",
             "rule_moves", "maintenance_moves", "power_off_moves", "gib_moved", "gib_copied",
             "move_seconds", "compute_ms"}


def simulate(*args, check=True):
    r = subprocess.run([GODWIT, "cluster", "simulate", *args], capture_output=True, text=True,
                       timeout=120)
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    if check:
        assert r.returncode == 0, r.stderr
    return r


def simulate_json(*args):
    return json.loads(simulate(*args, "--json").stdout)


def test_rules_kept_and_balanced_within_the_tolerance():
    out = simulate_json("--hosts", "8", "--vms", "160", "--apart", "3", "--pinned", "4",
                        "--together", "2", "--passes", "10", "--seed", "5")
    assert out["hosts"] == 8 and out["vms"] == 160 and out["rules"] == 3 + 1 + 2
    assert out["tolerance"] == 0.1 and out["algorithm"] == "cost"
    passes, total = out["passes"], out["total"]
    assert len(passes) == 10
    for i, p in enumerate(passes):
        assert PASS_KEYS <= set(p), p
        assert p["pass"] == i + 1
        assert p["moves"] == p["balance_moves"] + p["rule_moves"] + p["maintenance_moves"] + \
            p["power_off_moves"]
    # the three apart pairs start on one host each and the together pairs apart: fixed first
    assert passes[0]["rule_moves"] == 3 + 2
    assert sum(p["rule_moves"] for p in passes[1:]) == 0
    assert total["must_broken"] == 0 and total["should_broken"] == 0
    assert out["initial_imbalance"] > out["tolerance"]
    assert total["final_imbalance"] <= out["tolerance"]
    assert total["reached_pass"] is not None and total["reached_pass"] <= 3
    assert total["moved_back"] == 0
    assert total["moves"] == sum(p["moves"] for p in passes)
    assert abs(total["gib_moved"] - sum(p["gib_moved"] for p in passes)) < 1e-6
    # once balanced, a steady load moves nothing more
    assert all(p["moves"] == 0 for p in passes[total["reached_pass"]:])
    assert out["lower_bound"]["gib"] <= total["gib_moved"]


def test_no_ping_pong_under_a_noisy_load():
    out = simulate_json("--hosts", "8", "--vms", "160", "--passes", "10", "--noise", "0.1")
    assert out["total"]["moved_back"] == 0
    assert out["total"]["final_imbalance"] <= out["tolerance"]


def test_baseline_reaches_the_tolerance_above_the_lower_bound():
    for algorithm in ("cost", "baseline"):
        out = simulate_json("--hosts", "16", "--vms", "320", "--algorithm", algorithm,
                            "--passes", "20", "--until-balanced")
        assert out["algorithm"] == algorithm
        assert out["total"]["final_imbalance"] <= out["tolerance"]
        assert out["lower_bound"]["gib"] <= out["total"]["gib_moved"]
        assert out["lower_bound"]["moves"] <= out["total"]["moves"]
        assert out["passes"][-1]["pass"] == out["total"]["reached_pass"]


def test_threshold_1_moves_only_for_rules():
    out = simulate_json("--hosts", "8", "--vms", "160", "--apart", "2", "--threshold", "1",
                        "--passes", "3")
    assert out["tolerance"] is None
    assert out["total"]["moves"] == 2
    assert sum(p["balance_moves"] for p in out["passes"]) == 0
    assert out["total"]["must_broken"] == 0


def test_dpm_puts_an_idle_host_in_standby():
    out = simulate_json("--hosts", "6", "--vms", "40", "--skew", "0", "--dpm", "--pinned",
                        "3", "--passes", "8")
    offs = [p for p in out["passes"] if p["dpm"]["action"] == "power-off"]
    assert offs, [p["dpm"] for p in out["passes"]]
    assert offs[0]["pass"] >= 5  # the window: 300 s of 60 s passes
    assert offs[0]["power_off_moves"] >= 1
    assert out["total"]["must_broken"] == 0


def test_trace_file(tmp_path):
    trace = {
        "hosts": [{"name": "a", "cpus": 16, "cpu_capacity": 8, "memory": "32G",
                   "groups": ["ssd"]},
                  {"name": "b", "cpus": 16, "cpu_capacity": 8, "memory": "32G"},
                  {"name": "c", "cpus": 16, "cpu_capacity": 8, "memory": "32G",
                   "groups": ["ssd"]}],
        "vms": [{"name": f"vm{i}", "host": "a", "vcpus": 1, "memory": "2G",
                 "demand": [1.0, 1.0, 0.2]} for i in range(6)],
        "rules": [{"name": "pair", "kind": "apart", "must": True, "vms": ["vm0", "vm1"]},
                  {"name": "fast", "kind": "on-group", "group": "ssd", "must": True,
                   "vms": ["vm2", "vm3"]}],
    }
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(trace))
    out = simulate_json("--trace", str(path), "--passes", "3", "--moves")
    assert out["hosts"] == 3 and out["vms"] == 6
    assert out["passes"][0]["rule_moves"] == 1 and out["passes"][0]["balance_moves"] >= 1
    assert out["total"]["must_broken"] == 0
    text = simulate("--trace", str(path), "--passes", "3", "--moves").stdout
    assert "rule pair (must): vm" in text and "balance: vm" in text and "total:" in text


@pytest.mark.parametrize("args,needle", [
    (["--threshold", "9"], "--threshold takes a whole number in 1..5"),
    (["--algorithm", "magic"], "--algorithm is cost or baseline"),
    (["--bandwidth", "fast"], "--bandwidth takes bytes per second"),
    (["--hosts", "2", "--vms", "5000"], "do not fit"),
    (["--trace", "/nonexistent/trace.json"], "cannot open the trace"),
    (["stray"], "unexpected 'stray'"),
])
def test_bad_input_is_one_clear_error(args, needle):
    r = simulate(*args, check=False)
    assert r.returncode in (1, 2)
    assert needle in r.stderr, r.stderr


def test_bad_trace_names_the_field(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"hosts": [{"name": "a", "cpus": 4, "memroy": "1G"}],
                                "vms": []}))
    r = simulate("--trace", str(path), check=False)
    assert r.returncode == 1
    assert 'host a: unknown field "memroy"' in r.stderr


def test_help():
    r = simulate("--help")
    for word in ("--trace", "--algorithm", "--threshold", "--dpm", "--json", "docs/drs.md"):
        assert word in r.stdout
    assert "simulate" in subprocess.run([GODWIT, "cluster", "--help"], capture_output=True,
                                        text=True).stdout


def test_bench_machinery():
    rows = []
    by = {a: bench_drs.summary(bench_drs.simulate(8, 160, a, 1, 0.5, 3, 10, godwit=GODWIT))
          for a in bench_drs.ALGORITHMS}
    rows.append((8, 160, 1, by))
    lines = bench_drs.table(rows)
    assert len(lines) == 2 + len(bench_drs.ALGORITHMS)
    assert all(line.count("|") == 13 for line in lines)
    assert "| 8 x 160 | 1 | baseline |" in lines[3] and "| 1.00 |" in lines[3]
    assert bench_drs.sizes("64x2000,1000X30000") == [(64, 2000), (1000, 30000)]
