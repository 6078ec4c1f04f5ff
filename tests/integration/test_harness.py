"""Integration self-tests of the harness: real namespaces, packets, a real PostgreSQL and
real ansible-runner runs. Each can fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness import netns as netns_mod
from harness.runner import run_module, run_playbook

TESTS = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    return netns_mod._pid_alive(pid)


# ------------------------------------------------------------------ namespaces
@pytest.mark.root
def test_veth_between_two_namespaces_carries_ping(netns):
    a, b = netns(), netns()
    a.veth(b, "eut-a0", "eut-b0")
    a.addr("eut-a0", "198.51.100.1/24")
    b.addr("eut-b0", "198.51.100.2/24")
    assert a.ping("198.51.100.2", count=2)
    assert b.ping("198.51.100.1")
    # nobody has .3: the check can fail
    assert not a.ping("198.51.100.3", wait=1)
    # the links live in the namespaces, not in the root namespace
    assert "eut-a0" in a.run("ip", "-o", "link", "show").stdout
    root_links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert "eut-a0" not in root_links and "eut-b0" not in root_links


@pytest.mark.root
def test_bridge_joins_two_namespaces(netns):
    hub, x, y = netns(), netns(), netns()
    hub.bridge("br0")
    hub.veth(x, "px", "eth0")
    hub.veth(y, "py", "eth0")
    hub.enslave("px", "br0")
    hub.enslave("py", "br0")
    x.addr("eth0", "203.0.113.11/24")
    y.addr("eth0", "203.0.113.12/24")
    assert x.ping("203.0.113.12", count=2)


@pytest.mark.root
def test_pool_deletes_namespaces_and_kills_processes_even_on_error():
    with pytest.raises(RuntimeError, match="boom"):
        with netns_mod.NetnsPool() as pool:
            a, b = pool(), pool()
            daemon = a.spawn(["sleep", "600"])
            # a process that ignores SIGTERM and one that forked into the background
            stubborn = b.spawn(["sh", "-c", "trap '' TERM; while :; do sleep 1; done"])
            bg = int(b.run("sh", "-c", "sleep 600 >/dev/null 2>&1 </dev/null & echo $!").stdout)
            names = [a.name, b.name]
            assert set(names) <= set(netns_mod.list_namespaces())
            assert _alive(daemon.pid) and _alive(stubborn.pid) and _alive(bg)
            assert daemon.pid in a.ns_pids()
            raise RuntimeError("boom")
    assert not set(names) & set(netns_mod.list_namespaces())
    assert daemon.poll() is not None and stubborn.poll() is not None
    assert not _alive(daemon.pid) and not _alive(stubborn.pid) and not _alive(bg)


@pytest.mark.root
def test_fixture_teardown_after_a_failing_test(tmp_path):
    """Run a failing test that uses the fixture in a separate pytest; nothing may be left."""
    record = tmp_path / "record.json"
    (tmp_path / "conftest.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from harness.fixtures import *
    """))
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(f"""
        import json
        def test_fails(netns):
            a, b = netns(), netns()
            a.veth(b, "ia", "ib")
            proc = a.spawn(["sleep", "600"])
            with open({str(record)!r}, "w") as f:
                json.dump({{"names": [a.name, b.name], "pid": proc.pid}}, f)
            assert False, "this inner test fails on purpose"
    """))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "fails on purpose" in proc.stdout
    data = json.loads(record.read_text())
    assert not set(data["names"]) & set(netns_mod.list_namespaces())
    assert not _alive(data["pid"])


# ------------------------------------------------------------------ postgres
@pytest.mark.postgres
def test_postgres_answers_a_real_query(postgres_dsn):
    import psycopg

    with psycopg.connect(postgres_dsn) as conn:
        db, fsync, listen = conn.execute(
            "select current_database(), current_setting('fsync'), current_setting('listen_addresses')"
        ).fetchone()
        assert (db, fsync, listen) == ("euca_test", "on", "")
        conn.execute("create temporary table t (id serial primary key, name text unique)")
        conn.execute("insert into t (name) values ('a'), ('b')")
        assert conn.execute("select count(*) from t").fetchone()[0] == 2
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("insert into t (name) values ('a')")


@pytest.mark.postgres
def test_pg_database_is_fresh_and_dropped(postgres_server, pg_database):
    import psycopg

    with psycopg.connect(pg_database, autocommit=True) as conn:
        name = conn.execute("select current_database()").fetchone()[0]
        assert name.startswith("t_")
        tables = conn.execute(
            "select count(*) from information_schema.tables where table_schema = 'public'").fetchone()[0]
        assert tables == 0
        conn.execute("create table ledger (id int)")
    # the server runs as the postgres user, not root, and only on its socket
    pid = postgres_server.proc.pid
    assert os.stat(f"/proc/{pid}").st_uid == postgres_server.pw.pw_uid
    assert (postgres_server.socket_dir / ".s.PGSQL.5432").is_socket()


# ------------------------------------------------------------------ ansible-runner
def test_run_module_command_returns_stdout():
    r = run_module("ansible.builtin.command", {"argv": ["echo", "hello from euca"]})
    assert r.rc == 0 and not r.failed
    assert r.result["stdout"] == "hello from euca"
    assert r.event == "runner_on_ok"


def test_run_module_reports_failure_and_check_mode():
    r = run_module("ansible.builtin.command", {"argv": ["false"]})
    assert r.failed and r.rc != 0 and r.result["rc"] == 1
    r = run_module("ansible.builtin.command", {"cmd": "touch /nonexistent/x", "creates": "/"}, check=True)
    assert not r.failed and not r.changed  # creates= exists: skipped in check mode too
    assert run_module("ansible.builtin.ping").result["ping"] == "pong"


def test_run_playbook_results_by_task_name(tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(textwrap.dedent("""
        - name: Harness self-test
          hosts: clc
          gather_facts: false
          tasks:
            - name: Ping
              ansible.builtin.ping:
            - name: Echo a variable
              ansible.builtin.command:
                argv: [echo, "{{ word }}"]
              changed_when: false
    """))
    r = run_playbook(playbook, extravars={"word": "converged"})
    assert r.rc == 0, r.stdout
    assert r.task_result("Ping", host="localhost")["ping"] == "pong"
    assert r.task_result("Echo a variable")["stdout"] == "converged"
    assert r.stats["ok"]["localhost"] == 2
    assert r.stats["failures"] == {}
