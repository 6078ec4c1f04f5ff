"""Unit self-tests of the harness: no root, no daemons."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from harness import netns, postgres, runner

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_collection_is_importable_from_the_checkout():
    spec = importlib.util.find_spec("ansible_collections.euca.cloud")
    assert spec is not None
    locations = [Path(p).resolve() for p in spec.submodule_search_locations]
    assert REPO_ROOT / "collections" / "ansible_collections" / "euca" / "cloud" in locations


def test_namespace_names_are_unique_short_and_prefixed():
    names = {netns.new_name() for _ in range(200)}
    assert len(names) == 200
    for name in names:
        assert name.startswith(f"eut-{netns.RUN_TAG}-")
        assert len(name) <= netns.IFNAMSIZ


@pytest.mark.parametrize("bad", ["", "x" * 16, "a/b", "a b"])
def test_bad_interface_names_are_refused(bad):
    with pytest.raises(ValueError):
        netns._check_ifname(bad)


def test_create_refuses_names_outside_the_test_prefix():
    with pytest.raises(ValueError):
        netns.Netns.create("not-a-test-ns")


def test_command_error_names_command_and_stderr():
    with pytest.raises(netns.CommandError) as info:
        netns.run("sh", "-c", "echo to-stdout; echo oops-on-stderr >&2; exit 3")
    msg = str(info.value)
    assert "rc=3" in msg and "oops-on-stderr" in msg and "sh -c" in msg
    assert info.value.returncode == 3
    assert netns.run("sh", "-c", "exit 4", check=False).returncode == 4


def _fake_pg(root: Path, version: str) -> Path:
    bindir = root / version / "bin"
    bindir.mkdir(parents=True)
    for prog in ("postgres", "initdb"):
        (bindir / prog).write_text("#!/bin/sh\n")
    return bindir


def test_find_bindir_takes_the_newest_version(tmp_path):
    _fake_pg(tmp_path, "9.6")
    newest = _fake_pg(tmp_path, "16")
    _fake_pg(tmp_path, "15")
    (tmp_path / "17" / "bin").mkdir(parents=True)  # no server in it
    assert postgres.find_bindir(tmp_path) == newest


def test_find_bindir_explains_when_absent(tmp_path):
    with pytest.raises(postgres.PostgresUnavailable, match="postgresql"):
        postgres.find_bindir(tmp_path)


def test_dsn_uses_the_socket_directory():
    assert (postgres.dsn("/tmp/eut-pg-x", "euca_test")
            == "postgresql://postgres@/euca_test?host=/tmp/eut-pg-x")


def test_runner_environment_points_at_this_checkout():
    env = runner.envvars({"EXTRA": "1"})
    assert Path(env["ANSIBLE_CONFIG"]) == REPO_ROOT / "ansible.cfg"
    assert Path(env["ANSIBLE_CONFIG"]).is_file()
    assert Path(env["ANSIBLE_COLLECTIONS_PATH"]) == REPO_ROOT / "collections"
    assert (Path(env["ANSIBLE_COLLECTIONS_PATH"]) / "ansible_collections" / "euca" / "cloud"
            / "galaxy.yml").is_file()
    first = env["PATH"].split(os.pathsep)[0]
    assert (Path(first) / "ansible-playbook").exists()
    assert env["EXTRA"] == "1"


def test_run_result_lookup_by_task_name():
    events = [
        {"event": "runner_on_start", "event_data": {"task": "a", "host": "h1"}},
        {"event": "runner_on_ok", "event_data": {"task": "a", "host": "h1", "res": {"x": 1}}},
        {"event": "runner_on_failed", "event_data": {"task": "a", "host": "h2", "res": {"failed": True}}},
        {"event": "runner_on_ok", "event_data": {"task": "b", "host": "h1", "res": {"y": 2}}},
    ]
    run = runner.Run(rc=2, status="failed", events=events)
    assert run.task_results("a") == [{"x": 1}, {"failed": True}]
    assert run.task_result("a", host="h1") == {"x": 1}
    assert run.task_result("b") == {"y": 2}
    with pytest.raises(AssertionError):
        run.task_result("a")
    with pytest.raises(AssertionError):
        run.task_result("missing")
