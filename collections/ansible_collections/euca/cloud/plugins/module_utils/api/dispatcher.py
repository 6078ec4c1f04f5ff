# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The EC2 API's dispatcher: converge what requests queued, by running the project's own playbooks.

``python3 -m ansible_collections.euca.cloud.plugins.module_utils.api.dispatcher --config FILE``

A request changed the ledger and queued a job (ledger/jobs.py) in one transaction; this process
claims every queued job of one cluster at a time, plans them as playbook runs (``jobs.plan``) and
runs each with ``ansible-runner`` scoped to that cluster (``--limit <cluster>:clc:walrus``), then
records the outcome on the jobs (and, for a failed instance job, EC2's state reason on the
instances). What is queued for a cluster while it runs waits and is claimed together afterwards,
so a burst of requests costs one run per cluster. Different clusters run in parallel, up to
``max_parallel``.

It is one thread: runs are child processes polled from the main loop, so the ledger connection,
the signal handlers and the children are never shared between threads.

Crash safety: the queue is the ledger and every playbook is idempotent. A dispatcher killed at any
moment leaves its claimed jobs ``running``; the next one queues them again (``jobs.recover``) and
redoes them. So that a redo never races what is left of the killed run, every process of a run
carries ``EUCA_DISPATCHER=<private_data_dir>`` and ``EUCA_DISPATCH_RUN=<ident>`` in its environment
(Ansible's workers leave the runner's process group and session, so a group kill misses them): a
starting dispatcher kills whatever still carries its directory's mark, and a run that outlives
``run_timeout`` is killed by its ident. SIGTERM (or SIGINT) stops claiming, lets the runs in
progress finish for ``stop_grace`` seconds, then kills them and exits; jobs it did not finish stay
``running`` for the next start.

Configuration: a JSON file::

    {"ledger": "/var/lib/euca/clc/ledger.sqlite",            # what db.Ledger takes
     "dispatcher": {
        "runner": "/usr/bin/ansible-runner",
        "private_data_dir": "/var/lib/euca/dispatcher",      # artifacts/ and this process's run files
        "project_dir": "/srv/euca",                          # the site project: holds playbooks/
        "inventory": "/srv/euca/inventories/site/hosts.yml",
        "extra_vars": {},                                    # given to every run (a run's own win)
        "limit": ["clc", "walrus"],                          # next to the cluster in every --limit
        "poll_interval": 0.5, "run_timeout": 1800, "max_parallel": 2, "stop_grace": 60,
        "env": {"ANSIBLE_CONFIG": "/srv/euca/ansible.cfg"}}} # added to the runner's environment

Each run's extra vars go to their own file (``<private_data_dir>/dispatch/<ident>.json``, given as
``-e @file``), so two runs never race on one; the runner's output is next to it (``<ident>.log``)
and ansible-runner's artifacts in ``<private_data_dir>/artifacts/<ident>``. The newest
``KEEP_RUNS`` of each are kept.

Logs one line per playbook run on stdout: time, cluster, playbook, ident, jobs, rc, seconds (and
the failure's message).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import json
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError
from ansible_collections.euca.cloud.plugins.module_utils.ledger import db, jobs
from ansible_collections.euca.cloud.plugins.module_utils.ledger.schema import now

DEFAULTS = {
    "extra_vars": {},
    "limit": ["clc", "walrus"],
    "poll_interval": 0.5,
    "run_timeout": 1800,
    "max_parallel": 2,
    "stop_grace": 60,
    "env": {},
}
REQUIRED = ("runner", "private_data_dir", "project_dir", "inventory")

#: runs whose artifacts and run files are kept
KEEP_RUNS = 50
#: longest message recorded on a job (and in an instance's state reason)
MAX_MESSAGE = 400
#: seconds to wait for killed processes to be gone
KILL_WAIT = 10

#: what a run takes from the dispatcher's own environment: nothing of Ansible's or Python's (the
#: dispatcher runs under a service manager that may have been started by an Ansible run, whose
#: ANSIBLE_STDOUT_CALLBACK, ANSIBLE_CALLBACK_PLUGINS and PYTHONPATH would break the runner's own)
INHERITED = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "USER", "LOGNAME", "TMPDIR", "SSH_AUTH_SOCK")


def run_environment(environ, configured):
    """A run's environment: the few variables of ``environ`` named in INHERITED (and LC_*), then ``configured``."""
    env = dict((k, v) for k, v in environ.items() if k in INHERITED or k.startswith("LC_"))
    env.update(dict((str(k), str(v)) for k, v in configured.items()))
    return env


#: the environment marks of a run's processes
MARK_DIR = "EUCA_DISPATCHER"
MARK_RUN = "EUCA_DISPATCH_RUN"


class ConfigError(Exception):
    """The configuration file is missing, unreadable or incomplete."""


def load_config(path):
    """``(ledger url, dispatcher settings with defaults)`` from the JSON file at ``path``."""
    try:
        with open(path) as handle:
            raw = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ConfigError("cannot read the dispatcher's configuration %s: %s" % (path, exc))
    if not isinstance(raw, dict) or not raw.get("ledger") or not isinstance(raw.get("dispatcher"), dict):
        raise ConfigError("%s: give \"ledger\" (what db.Ledger takes) and a \"dispatcher\" object" % path)
    conf = dict(DEFAULTS)
    conf.update(raw["dispatcher"])
    missing = [key for key in REQUIRED if not conf.get(key)]
    if missing:
        raise ConfigError("%s: dispatcher needs %s" % (path, ", ".join(missing)))
    if not os.access(conf["runner"], os.X_OK):
        raise ConfigError("%s: runner %s is not an executable file" % (path, conf["runner"]))
    if not isinstance(conf["limit"], list) or not isinstance(conf["extra_vars"], dict) or not isinstance(conf["env"], dict):
        raise ConfigError("%s: limit is a list of groups, extra_vars and env are objects" % path)
    try:
        for key in ("poll_interval", "run_timeout", "stop_grace"):
            conf[key] = float(conf[key])
        conf["max_parallel"] = max(1, int(conf["max_parallel"]))
    except (TypeError, ValueError) as exc:
        raise ConfigError("%s: poll_interval, run_timeout, stop_grace and max_parallel are numbers: %s" % (path, exc))
    return raw["ledger"], conf


def marked(name, value):
    """Pids of this user's processes whose environment has ``name=value`` (from /proc)."""
    wanted = ("%s=%s" % (name, value)).encode()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:  # pragma: no cover - no procfs: nothing can be found
        return found
    for entry in entries:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as handle:
                environ = handle.read().split(b"\0")
        except OSError:  # gone, or another user's
            continue
        if wanted in environ:
            found.append(int(entry))
    return found


def kill_marked(name, value):
    """SIGKILL every process marked ``name=value`` and wait until they are gone; how many there were.

    Killed again and again until none is left: a run killed while it starts (a short run_timeout) may
    fork or exec one more marked process (ansible-runner starting ansible-playbook) after a scan."""
    killed = set()
    deadline = time.monotonic() + KILL_WAIT
    while True:
        pids = marked(name, value)
        if not pids or time.monotonic() >= deadline:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        time.sleep(0.05)
    return len(killed)


def short(text):
    """One line of at most MAX_MESSAGE characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


def _result_message(res):
    """What a failed task's result says: its msg, else its stderr/stdout, else the result itself."""
    if not isinstance(res, dict):
        return str(res)
    for key in ("msg", "stderr", "stdout", "reason"):
        if res.get(key):
            return res[key]
    nested = res.get("results")
    if isinstance(nested, list):
        for item in nested:
            if isinstance(item, dict) and item.get("failed"):
                return _result_message(item)
    return json.dumps(res, sort_keys=True)


def failure_message(artifact_dir, log_path=None):
    """The message of a failed run: the last failed task's msg from the runner's job events, else the
    last lines of its stdout (an error before any task ran, e.g. a syntax error or an unknown host)."""
    events_dir = os.path.join(artifact_dir, "job_events")
    found = None
    try:
        names = os.listdir(events_dir)
    except OSError:
        names = []

    def counter(name):
        head = name.split("-", 1)[0]
        return int(head) if head.isdigit() else 0

    for name in sorted((n for n in names if n.endswith(".json")), key=counter):
        try:
            with open(os.path.join(events_dir, name)) as handle:
                event = json.load(handle)
        except (OSError, ValueError):
            continue
        if event.get("event") not in ("runner_on_failed", "runner_on_unreachable"):
            continue
        data = event.get("event_data") or {}
        if data.get("ignore_errors"):
            continue
        found = data
    if found is not None:
        return short(_result_message(found.get("res")))
    for path in (os.path.join(artifact_dir, "stdout"), log_path):
        try:
            with open(path) as handle:
                lines = [line.strip() for line in handle.read().splitlines() if line.strip()]
        except (OSError, TypeError):
            continue
        errors = [line for line in lines if line.startswith(("ERROR!", "[ERROR]", "fatal:"))]
        if errors or lines:
            return short((errors or lines)[-1])
    return "the playbook failed without output"


def record_outcome(txn, run, batch_jobs, ok, message):
    """Finish a run's jobs; for failed instance jobs also give their live instances the reason."""
    jobs.finish(txn, [j["id"] for j in batch_jobs], ok, None if ok else message, run=run)
    if ok:
        return
    instance_ids = sorted(set(r for j in batch_jobs if j["kind"] in jobs.INSTANCE_KINDS
                              for r in j["resources"] if r.startswith("i-")))
    if instance_ids:
        txn.exec("UPDATE instances SET reason = ?, updated_at = ? WHERE state <> 'terminated' AND id IN (%s)"
                 % ", ".join("?" * len(instance_ids)),
                 "Server.InternalError: %s" % short(message), now(), *instance_ids)


class Run:
    """One playbook of a claimed batch, running as an ``ansible-runner`` child."""

    def __init__(self, step, ident, proc, vars_path, log_path):
        self.step = step
        self.ident = ident
        self.proc = proc
        self.vars_path = vars_path
        self.log_path = log_path
        self.started = time.monotonic()
        self.killed = False


class Batch:
    """A cluster's claimed jobs, their planned runs and the run in progress."""

    def __init__(self, cluster, claimed, steps):
        self.cluster = cluster
        self.run = claimed[0]["run"]
        self.by_id = dict((j["id"], j) for j in claimed)
        self.steps = steps
        self.next = 0
        self.current = None
        self.pending = None  # (step, ident, ok, message, rc, seconds): ended, not yet recorded


class Dispatcher:
    """The claim / plan / run / record loop (see the module's docstring)."""

    def __init__(self, ledger_url, conf, out=None):
        self.ledger_url = ledger_url
        self.conf = conf
        self.out = out or sys.stdout
        self.ledger = None
        self.batches = {}
        self.stopping = None
        self.pdd = os.path.abspath(conf["private_data_dir"])
        self.artifacts = os.path.join(self.pdd, "artifacts")
        self.files = os.path.join(self.pdd, "dispatch")

    # -- output and ledger -------------------------------------------------------------------
    def log(self, text):
        self.out.write("%s %s\n" % (now(), text))
        self.out.flush()

    def _ledger(self):
        if self.ledger is None:
            self.ledger = db.Ledger(self.ledger_url)
        return self.ledger

    def _ledger_error(self, exc):
        """Whether ``exc`` is the ledger's (locked too long, connection lost...): a retry, not a crash."""
        if isinstance(exc, (EucaError, OSError, sqlite3.Error)):
            return True
        psycopg = db.load_psycopg() if db.is_postgres_url(self.ledger_url) else None
        return psycopg is not None and isinstance(exc, psycopg.Error)

    def _ledger_failed(self, exc):
        """A ledger error: drop the connection (the next use reconnects) and say so."""
        self.log("ledger error (retrying): %s" % short(exc))
        if self.ledger is not None:
            try:
                self.ledger.close()
            except Exception:  # pylint: disable=broad-except  # the connection may already be gone
                pass
            self.ledger = None

    # -- the loop ---------------------------------------------------------------------------
    def start(self):
        """Kill what is left of a killed dispatcher's runs, queue their jobs again, prepare the directories."""
        for path in (self.artifacts, self.files):
            if not os.path.isdir(path):
                os.makedirs(path, 0o750)
        orphans = kill_marked(MARK_DIR, self.pdd)
        with self._ledger().write() as txn:
            recovered = jobs.recover(txn)
        self.log("dispatcher started (pid %d): %d job(s) left running by the last one queued again, "
                 "%d process(es) of its runs killed" % (os.getpid(), recovered, orphans))

    def request_stop(self, signum, _frame=None):
        if self.stopping is None:
            self.stopping = time.monotonic()
            self.log("signal %d: no new claims; waiting up to %ss for %d run(s)"
                     % (signum, self.conf["stop_grace"], len(self.batches)))

    def serve(self):
        """Run until asked to stop and the runs in progress are over (or the grace has passed)."""
        self.start()
        while True:
            try:
                self.tick()
            except Exception as exc:  # pylint: disable=broad-except
                if not self._ledger_error(exc):
                    raise
                self._ledger_failed(exc)
            if self.stopping is not None:
                if not self.batches:
                    break
                if time.monotonic() - self.stopping > self.conf["stop_grace"]:
                    self.abandon()
                    break
            time.sleep(self.conf["poll_interval"])
        self.log("dispatcher stopped")

    def tick(self):
        """One pass: advance every batch, then claim clusters while there is room."""
        for cluster in list(self.batches):
            self.advance(self.batches[cluster])
        while self.stopping is None and len(self.batches) < self.conf["max_parallel"]:
            if not self.claim():
                break

    def claim(self):
        """Claim one cluster's queued jobs and start its first run; False when there is none."""
        ledger = self._ledger()
        with ledger.read() as txn:
            free = [c for c in jobs.claimable(txn) if c not in self.batches]
        if not free:
            return False
        with ledger.write() as txn:
            cluster, claimed = jobs.claim(txn, free[0])
            if not claimed:
                return True  # taken or finished meanwhile: look again
            try:
                steps = jobs.plan(claimed)
            except EucaError as exc:
                # a job no playbook can run (written by hand?): fail it, keep the loop going
                jobs.finish(txn, [j["id"] for j in claimed], False, short(exc), run=claimed[0]["run"])
                self.log("%s: cannot plan %d job(s): %s" % (cluster, len(claimed), short(exc)))
                return True
        batch = Batch(cluster, claimed, steps)
        self.batches[cluster] = batch
        self.advance(batch)
        return True

    def advance(self, batch):
        """Record a finished run, check the one in progress, start the next; drop a finished batch."""
        if batch.current is not None:
            self.check(batch)
        if batch.pending is not None:
            step, ident, ok, message, rc, seconds = batch.pending
            with self._ledger().write() as txn:
                record_outcome(txn, batch.run, [batch.by_id[i] for i in step["jobs"]], ok, message)
            batch.pending = None
            self.log("%s %s run %s jobs=%d [%s] rc=%s %.1fs%s" % (
                batch.cluster, step["playbook"], ident, len(step["jobs"]), _id_range(step["jobs"]),
                rc, seconds, "" if ok else " failed: " + message))
            self.prune()
        if batch.current is None:
            if batch.next >= len(batch.steps) or self.stopping is not None:
                del self.batches[batch.cluster]
                return
            self.launch(batch)

    def launch(self, batch):
        """Start the batch's next planned run."""
        step = batch.steps[batch.next]
        ident = "%s-%d" % (batch.run, batch.next + 1)
        extra = dict(self.conf["extra_vars"])
        extra.update(step["extra_vars"])
        vars_path = os.path.join(self.files, ident + ".json")
        log_path = os.path.join(self.files, ident + ".log")
        with open(vars_path, "w") as handle:  # an OSError here (disk full) is retried at the next tick
            json.dump(extra, handle)
        batch.next += 1
        command = [
            self.conf["runner"], "run", self.pdd,
            "--project-dir", os.path.abspath(self.conf["project_dir"]),
            "-p", os.path.join("playbooks", step["playbook"]),
            "--inventory", os.path.abspath(self.conf["inventory"]),
            "--limit", ":".join([batch.cluster] + list(self.conf["limit"])),
            "--ident", ident,
            "--cmdline", "-e @%s" % shlex.quote(vars_path),
        ]
        env = run_environment(os.environ, self.conf["env"])
        env.update({MARK_DIR: self.pdd, MARK_RUN: ident})
        try:
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        env=env, cwd=self.pdd, start_new_session=True)
        except OSError as exc:
            batch.pending = (step, ident, False, short("cannot start %s: %s" % (self.conf["runner"], exc)), None, 0.0)
            return
        batch.current = Run(step, ident, proc, vars_path, log_path)

    def check(self, batch):
        """If the current run has ended (or outlived run_timeout), note its outcome."""
        run = batch.current
        rc = run.proc.poll()
        elapsed = time.monotonic() - run.started
        if rc is None:
            if elapsed > self.conf["run_timeout"]:
                self.kill(run)
            return
        ok = rc == 0 and not run.killed
        if ok:
            message = None
        elif run.killed:
            message = "the run took longer than %ds and was stopped" % self.conf["run_timeout"]
        else:
            message = failure_message(os.path.join(self.artifacts, run.ident), run.log_path)
        batch.pending = (run.step, run.ident, ok, message, rc, elapsed)
        batch.current = None
        try:
            os.unlink(run.vars_path)
        except OSError:
            pass

    def kill(self, run):
        """Kill every process of ``run``: the runner, the playbook and its workers (and local modules)."""
        run.killed = True
        kill_marked(MARK_RUN, run.ident)
        run.proc.wait()

    def abandon(self):
        """After the stop grace: kill the runs still going; their jobs stay running (recover() at the next start)."""
        for batch in self.batches.values():
            run = batch.current
            if run is None:
                continue
            self.kill(run)
            self.log("%s %s run %s left running after the stop grace: it is redone at the next start"
                     % (batch.cluster, run.step["playbook"], run.ident))
        self.batches = {}

    def prune(self):
        """Keep the newest KEEP_RUNS artifact directories and run files (never a running one's)."""
        busy = set(b.current.ident for b in self.batches.values() if b.current is not None)
        # artifacts/<ident>/ directories, dispatch/<ident>.json and <ident>.log files
        for root, suffixed in ((self.artifacts, False), (self.files, True)):
            try:
                names = os.listdir(root)
            except OSError:
                continue
            idents = {}
            for name in names:
                ident = name.rsplit(".", 1)[0] if suffixed else name
                try:
                    mtime = os.stat(os.path.join(root, name)).st_mtime
                except OSError:
                    continue
                idents.setdefault(ident, []).append((mtime, name))
            ordered = sorted(idents, key=lambda i: max(m for m, _n in idents[i]), reverse=True)
            for ident in ordered[KEEP_RUNS:]:
                if ident in busy:
                    continue
                for _mtime, name in idents[ident]:
                    path = os.path.join(root, name)
                    if os.path.isdir(path):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        try:
                            os.unlink(path)
                        except OSError:
                            pass


def _id_range(ids):
    """Job ids for the log: all of a few, the first and last of many."""
    return ",".join(str(i) for i in ids) if len(ids) <= 5 else "%d..%d" % (ids[0], ids[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run the playbooks that converge the EC2 API's queued jobs.")
    parser.add_argument("--config", required=True, help="the JSON configuration file")
    args = parser.parse_args(argv)
    try:
        ledger_url, conf = load_config(args.config)
    except ConfigError as exc:
        sys.stderr.write("%s\n" % exc)
        return 2
    dispatcher = Dispatcher(ledger_url, conf)
    signal.signal(signal.SIGTERM, dispatcher.request_stop)
    signal.signal(signal.SIGINT, dispatcher.request_stop)
    try:
        dispatcher.serve()
    except EucaError as exc:
        sys.stderr.write("dispatcher: %s\n" % exc)
        return 1
    return 0


if __name__ == "__main__":
    # a program (the dispatcher service), not a module: its exit status is the service manager's to see
    sys.exit(main())  # pylint: disable=ansible-bad-function
