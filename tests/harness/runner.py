"""Run modules and playbooks through ansible-runner, the way AWX would, for tests.

Ansible finds this checkout's collection and configuration: ANSIBLE_CONFIG points at the
repository's ansible.cfg and ANSIBLE_COLLECTIONS_PATH at its ``collections`` folder. The
``ansible-playbook`` used is the one next to the running interpreter (the project venv).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO_ROOT / "collections"
ANSIBLE_CFG = REPO_ROOT / "ansible.cfg"

# events that carry a task's final result for one host
RESULT_EVENTS = ("runner_on_ok", "runner_on_failed", "runner_on_unreachable",
                 "runner_on_skipped")


@contextlib.contextmanager
def build_lock(directory):
    """Hold an exclusive lock beside ``directory`` (``<directory>.lock``): processes that build the same
    cached artefact (pytest-xdist workers, a bench beside the tests) take turns; the second finds it built."""
    path = Path(str(directory) + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def envvars(extra: Optional[dict] = None) -> dict:
    """Environment for ansible-runner: this checkout's config, collection and venv."""
    bindir = str(Path(sys.executable).parent)
    env = {
        "ANSIBLE_CONFIG": str(ANSIBLE_CFG),
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_ROLES_PATH": str(REPO_ROOT / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "PATH": os.pathsep.join([bindir, os.environ.get("PATH", "/usr/bin:/bin")]),
    }
    env.update(extra or {})
    return env


def local_inventory(host: str = "localhost") -> str:
    """An INI inventory with one local host that uses the running interpreter."""
    return f"{host} ansible_connection=local ansible_python_interpreter={sys.executable}\n"


@dataclass
class Run:
    """What a run produced: exit code, status, every event, recap stats and stdout."""

    rc: int
    status: str
    events: list = field(repr=False)
    stats: Optional[dict] = None
    stdout: str = field(default="", repr=False)

    def task_events(self, name: str, host: Optional[str] = None) -> list:
        """Final result events of the task(s) with this name (optionally for one host)."""
        found = []
        for ev in self.events:
            if ev.get("event") not in RESULT_EVENTS:
                continue
            data = ev.get("event_data", {})
            if data.get("task") != name and data.get("task_action") != name:
                continue
            if host is not None and data.get("host") != host:
                continue
            found.append(ev)
        return found

    def task_results(self, name: str, host: Optional[str] = None) -> list:
        """The result dicts (``res``) of the task(s) with this name."""
        return [ev["event_data"].get("res", {}) for ev in self.task_events(name, host)]

    def task_result(self, name: str, host: Optional[str] = None) -> dict:
        """The one result of the task with this name; AssertionError unless exactly one."""
        results = self.task_results(name, host)
        if len(results) != 1:
            raise AssertionError(f"expected one result for task {name!r}, got {len(results)}:\n"
                                 f"{self.stdout[-3000:]}")
        return results[0]


@dataclass
class ModuleRun(Run):
    """A single module invocation: ``result`` is the module's result dict."""

    result: dict = field(default_factory=dict)
    event: Optional[str] = None

    @property
    def failed(self) -> bool:
        return self.event in ("runner_on_failed", "runner_on_unreachable") or bool(self.result.get("failed"))

    @property
    def changed(self) -> bool:
        return bool(self.result.get("changed"))


def _execute(playbook: dict | list | str, *, inventory: Optional[str], extravars: Optional[dict],
             check: bool, diff: bool, env: Optional[dict], verbosity: int,
             private_data_dir: Optional[str], limit: Optional[str]) -> Run:
    import ansible_runner

    own_dir = private_data_dir is None
    pdd = Path(private_data_dir or tempfile.mkdtemp(prefix="eut-runner-"))
    try:
        project = pdd / "project"
        project.mkdir(parents=True, exist_ok=True)
        if isinstance(playbook, (dict, list)):
            playbook_path = project / "generated.yml"
            playbook_path.write_text(json.dumps(playbook if isinstance(playbook, list) else [playbook]))
        else:
            playbook_path = Path(playbook).resolve()
        cmdline = []
        if check:
            cmdline.append("--check")
        if diff:
            cmdline.append("--diff")
        kwargs: dict[str, Any] = {}
        if inventory is not None:
            kwargs["inventory"] = inventory
        if extravars:
            kwargs["extravars"] = extravars
        if limit:
            kwargs["limit"] = limit
        if cmdline:
            kwargs["cmdline"] = " ".join(cmdline)
        if verbosity:
            kwargs["verbosity"] = verbosity
        r = ansible_runner.run(
            private_data_dir=str(pdd),
            playbook=str(playbook_path),
            envvars=envvars(env),
            quiet=True,
            **kwargs,
        )
        events = list(r.events)
        stdout = r.stdout.read() if r.stdout else ""
        return Run(rc=r.rc, status=r.status, events=events, stats=r.stats, stdout=stdout)
    finally:
        if own_dir:
            shutil.rmtree(pdd, ignore_errors=True)


def run_playbook(path: str | os.PathLike, extravars: Optional[dict] = None,
                 inventory: Optional[str] = None, check: bool = False, diff: bool = False,
                 env: Optional[dict] = None, limit: Optional[str] = None, verbosity: int = 0,
                 private_data_dir: Optional[str] = None) -> Run:
    """Run a playbook file. Without inventory, ansible.cfg's (the sandbox) applies.

    inventory may be a path or inventory text (as ansible-runner takes it).
    """
    return _execute(str(path), inventory=inventory, extravars=extravars, check=check, diff=diff,
                    env=env, verbosity=verbosity, private_data_dir=private_data_dir, limit=limit)


def run_module(module_fqcn: str, args: Optional[dict] = None, check: bool = False,
               diff: bool = False, host: str = "localhost", inventory: Optional[str] = None,
               env: Optional[dict] = None, extravars: Optional[dict] = None, verbosity: int = 0,
               private_data_dir: Optional[str] = None) -> ModuleRun:
    """Run one module on one host and return its result.

    Without inventory the host is local and uses the running interpreter. Arguments are
    passed as structured data (lists and dicts stay what they are); Jinja in string values
    is templated as in any task.
    """
    play = {
        "name": "run_module",
        "hosts": host,
        "gather_facts": False,
        "tasks": [{"name": "run_module", module_fqcn: dict(args or {})}],
    }
    run = _execute(play, inventory=inventory if inventory is not None else local_inventory(host),
                   extravars=extravars, check=check, diff=diff, env=env, verbosity=verbosity,
                   private_data_dir=private_data_dir, limit=None)
    events = run.task_events("run_module", host)
    event = events[-1] if events else None
    return ModuleRun(rc=run.rc, status=run.status, events=run.events, stats=run.stats,
                     stdout=run.stdout,
                     result=event["event_data"].get("res", {}) if event else {},
                     event=event["event"] if event else None)
