"""Shared pytest configuration for godwit's integration tests."""
import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def pytest_configure(config):
    config.addinivalue_line("markers", "linux: needs the Linux guest (slow tier, make test-linux)")
    config.addinivalue_line("markers", "slow: long-running test, skipped in the sanitizer pass")
