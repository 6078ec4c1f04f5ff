"""Run ansible-playbook with an event stream and SIGKILL its process group at a chosen point.

The callback plugin callback_plugins/crash_events.py writes one JSON line per event (task
``start``, loop ``item``, task ``end`` per host) to a pipe and waits for a byte back before
Ansible goes on. ``run(...)`` reads the stream; at the kill point it sends SIGKILL to
ansible-playbook's process group and to every process below it (its workers leave the group with
setsid, and the modules they run are their children) while the callback is still blocked, so
"right after task N ended" is exact. A ``delay`` kills that many seconds after the point
instead (the task's module is then in flight), or right after the task's end if that comes first.
Without a kill point the playbook runs to its end and the events are its stream, from which a test
picks its kill points.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .runner import envvars

CALLBACKS = Path(__file__).resolve().parent / "callback_plugins"


class KillPointMissed(AssertionError):
    """The playbook ended without reaching the kill point (a task renamed or skipped?)."""


@dataclass(frozen=True)
class KillPoint:
    """Kill when the ``nth`` event of ``kind`` (start, item, end) for the task named ``task`` arrives,
    or ``delay`` seconds after it (at the latest right after that task's end)."""

    kind: str
    task: str
    nth: int = 1
    delay: float = 0.0

    def __str__(self):
        where = "%s-of[%s]" % (self.kind, self.task) + ("#%d" % self.nth if self.nth != 1 else "")
        return where + ("+%gs" % self.delay if self.delay else "")


@dataclass
class Outcome:
    rc: int
    events: list = field(repr=False)
    log: str = field(repr=False)
    killed: bool = False
    seconds: float = 0.0
    landed: Optional[str] = None  # where the kill landed: start, end, or in flight (a delayed kill)

    def tasks(self, kind="end"):
        return [e["task"] for e in self.events if e["kind"] == kind]


def run(playbook, inventory, extravars: dict, kill: Optional[KillPoint] = None, timeout: float = 600,
        log_dir: Optional[str] = None) -> Outcome:
    """Run ``playbook``; kill it at ``kill`` (None: run to the end). Returns the events seen."""
    ev_r, ev_w = os.pipe()
    ack_r, ack_w = os.pipe()
    varsfile = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="eut-vars-", delete=False)
    json.dump(extravars, varsfile)
    varsfile.close()
    logf = tempfile.NamedTemporaryFile("w+", suffix=".log", prefix="eut-play-", dir=log_dir, delete=False)
    env = dict(os.environ, **envvars({
        "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACKS),
        "ANSIBLE_CALLBACKS_ENABLED": "crash_events",
        "EUCA_EVENTS_FD": str(ev_w), "EUCA_ACK_FD": str(ack_r),
    }))
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), "-e", "@" + varsfile.name,
            str(playbook)]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=env,
                            pass_fds=(ev_w, ack_r), start_new_session=True)
    os.close(ev_w)
    os.close(ack_r)
    events, seen, killed, kill_at, landed = [], 0, False, None, None
    buf = b""
    try:
        while True:
            wait = timeout - (time.monotonic() - start)
            if kill_at is not None:
                wait = min(wait, max(0.0, kill_at - time.monotonic()))
            if wait <= 0 and kill_at is None:
                raise TimeoutError("%s did not finish within %ds" % (playbook, timeout))
            ready, _, _ = select.select([ev_r], [], [], max(wait, 0))
            if kill_at is not None and time.monotonic() >= kill_at:
                _kill(proc)
                killed, landed = True, "in flight"
                break
            if not ready:
                continue
            chunk = os.read(ev_r, 65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                event = json.loads(line)
                event["t"] = time.monotonic() - start
                events.append(event)
                if (kill_at is not None and event["kind"] == "end" and event["task"] == kill.task
                        and event.get("host") is not None):
                    # the task ended before the delay ran out: kill right after it, not later
                    _kill(proc)
                    killed = landed = "end"
                    break
                if (kill is not None and not killed and kill_at is None and event["kind"] == kill.kind
                        and event["task"] == kill.task):
                    seen += 1
                    if seen == kill.nth:
                        if not kill.delay:
                            _kill(proc)
                            killed, landed = True, kill.kind
                            break
                        kill_at = time.monotonic() + kill.delay
                try:
                    os.write(ack_w, b"g")
                except BrokenPipeError:
                    pass
            if killed:
                break
        rc = proc.wait(timeout=max(5, timeout - (time.monotonic() - start)))
    finally:
        if proc.poll() is None:
            _kill(proc)
            proc.wait(timeout=30)
        os.close(ev_r)
        os.close(ack_w)
        os.unlink(varsfile.name)
    logf.seek(0)
    log = logf.read()
    logf.close()
    if log_dir is None:
        os.unlink(logf.name)
    if kill is not None and not killed:
        raise KillPointMissed("%s ended (rc=%s) without reaching %s; its tasks: %s\n%s"
                              % (playbook, rc, kill, [e["task"] for e in events if e["kind"] == "start"], log[-3000:]))
    if killed and rc != -signal.SIGKILL:
        raise AssertionError("%s was to die of SIGKILL at %s but exited %s" % (playbook, kill, rc))
    return Outcome(rc=rc, events=events, log=log, killed=bool(killed), seconds=time.monotonic() - start,
                   landed=landed)


def _children():
    """parent pid -> child pids, of every process now."""
    tree = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open("/proc/%s/stat" % entry).read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _kill(proc):
    """SIGKILL ansible-playbook, its process group and every process below it.

    ansible-core's workers leave the group (each calls setsid), and the modules they run are their
    children: they are stopped first (SIGSTOP, walked until no new process appears, so none forks or
    is reparented away meanwhile), then all are killed at once."""
    stopped = set()
    while True:
        tree = _children()
        todo, found = [proc.pid], set()
        while todo:
            pid = todo.pop()
            if pid in found:
                continue
            found.add(pid)
            todo.extend(tree.get(pid, ()))
        new = found - stopped
        if not new:
            break
        for pid in new:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        stopped |= new
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(os.path.exists("/proc/%d" % pid) and not _zombie(pid) for pid in stopped):
        if time.monotonic() > deadline:
            raise AssertionError("processes of %s survived SIGKILL" % sorted(stopped))
        time.sleep(0.05)


def _zombie(pid):
    try:
        return open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
