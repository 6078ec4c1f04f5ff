"""Shared pytest configuration for euca.cloud's unit and integration tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO_ROOT = TESTS.parent

# `import ansible_collections.euca.cloud.plugins.module_utils...` from this checkout,
# and `import harness...`
for path in (REPO_ROOT / "collections", TESTS):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from harness.fixtures import *  # noqa: E402,F401,F403  (fixtures)

MARKERS = {
    "integration": "drives real components (namespaces, daemons, databases); tests/integration",
    "slow": "takes more than a few seconds",
    "root": "needs root (network namespaces, daemons); skipped otherwise",
    "postgres": "needs a PostgreSQL server (the postgres_dsn / pg_database fixtures)",
}


def pytest_configure(config):
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")


# Minutes each of the longest test files takes alone on an idle 2-core machine (measured). `make test`
# runs pytest-xdist with three workers, one test file at a time each (--dist loadfile), handing out
# files in collection order: the longest go first, so the workers end about together.
LONGEST_FIRST = {
    "test_crash_sweep.py": 12, "test_multinode.py": 7, "test_tenants.py": 6, "test_api_session.py": 6,
    "test_demo_playbook.py": 4, "test_observed_state.py": 3, "test_daemon_recovery.py": 3, "test_cloud_image.py": 2,
    "test_role_api.py": 2, "test_dispatcher.py": 1.5, "test_guest_image.py": 1.5,
}


def pytest_collection_modifyitems(config, items):
    integration_dir = TESTS / "integration"
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(integration_dir):
            item.add_marker(pytest.mark.integration)
    # stable: within a file, and among the rest, the collection order stays
    items.sort(key=lambda item: -LONGEST_FIRST.get(Path(str(item.fspath)).name, 0))


def pytest_runtest_setup(item):
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces / runs daemons")
