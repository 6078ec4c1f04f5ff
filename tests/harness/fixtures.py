"""pytest fixtures of the harness; tests/conftest.py imports them all."""

from __future__ import annotations

import pytest

from . import netns as _netns
from .postgres import PostgresServer, PostgresUnavailable, TEST_DATABASE
from . import runner as _runner
from . import guest_image as _guest_image
from .supervisor import Supervisor
from . import ceph as _ceph

__all__ = ["netns", "netns_session_guard", "postgres_server", "postgres_dsn", "pg_database",
           "ansible_runner_dir", "guest_image", "supervisor", "ceph_cluster"]


@pytest.fixture(scope="session", autouse=True)
def netns_session_guard():
    """Safety net: at the end of the session delete every eut-* namespace this run made."""
    yield
    _netns.sweep_leftovers()


@pytest.fixture
def netns():
    """Factory of throwaway namespaces: ``a = netns(); b = netns()``.

    Each is deleted at teardown (its processes killed by pid first), pass or fail.
    """
    reason = _netns.can_use_netns()
    if reason:
        pytest.skip(reason)
    pool = _netns.NetnsPool()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the whole session (unix socket only), stopped at the end."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server) -> str:
    """DSN (psycopg 3 / libpq URI) of the session's ``euca_test`` database."""
    return postgres_server.dsn(TEST_DATABASE)


@pytest.fixture
def pg_database(postgres_server) -> str:
    """DSN of a fresh, empty database for one test; dropped afterwards."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.dsn(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def ansible_runner_dir(tmp_path):
    """A private_data_dir for ansible-runner that is kept with the test's tmp_path."""
    path = tmp_path / "runner"
    path.mkdir()
    return str(path)


@pytest.fixture(scope="session")
def guest_image() -> dict:
    """The guest image of roles/test_image (built or found in the cache): paths, checksums, sizes."""
    return _guest_image.guest_image_paths()


@pytest.fixture
def supervisor(tmp_path):
    """A private supervisord (started by the first role that needs it), shut down at teardown."""
    sup = Supervisor(tmp_path / "supervisor")
    yield sup
    sup.stop()


@pytest.fixture(scope="session")
def ceph_cluster():
    """A throwaway Ceph (one mon, mgr and bluestore OSD) in a namespace of its own for the whole
    session (a worker's), with the pools ``volumes`` and ``images``, listening on 10.98.0.1 of a storage
    network that ``ceph_cluster.link(ns)`` joins a test's namespace to; stopped and removed at the end.
    Tests use unique image names; nothing restarts it."""
    reason = _ceph.missing()
    if reason:
        pytest.skip(reason)
    ns = _netns.Netns.create()
    try:
        cluster = _ceph.start_in(ns, pools=("volumes", "images"), storage_network="10.98.0.1/24")
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        ns.delete()
