# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One daemon of a module under the host's service manager, so it comes back after kill -9.

systemd where systemd is PID 1, supervisord otherwise: the same choice as roles/common
(manager.yml), with the same file locations by default. A module that runs a daemon renders
its definition (a systemd unit or a supervisord program file), compares it with the one on
disk like any other file it owns, and asks the manager to load, start, restart or drop it.
The daemon runs in the foreground as the manager's own child (``ip netns exec`` execs the
program, so the manager's pid is the daemon's pid).

Nothing here signals a process: reloads and the pid checks stay with the module, which knows
what its daemon looks like in /proc.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re
import time

from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.process import CommandFailed, run

NONE, AUTO, SYSTEMD, SUPERVISORD = "none", "auto", "systemd", "supervisord"
MANAGERS = (NONE, AUTO, SYSTEMD, SUPERVISORD)

DEFAULT_SUPERVISOR_CONF = "/etc/supervisor/supervisord.conf"
DEFAULT_SUPERVISOR_PROGRAMS_DIR = "/etc/supervisor/conf.d"
DEFAULT_SYSTEMD_UNITS_DIR = "/etc/systemd/system"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SAFE = re.compile(r"^[A-Za-z0-9_./=:,+@%-]+$")


def detect():
    """systemd when it is PID 1, supervisord otherwise (what roles/common's manager.yml decides)."""
    try:
        with open("/proc/1/comm") as handle:
            return SYSTEMD if handle.read().strip() == "systemd" else SUPERVISORD
    except (IOError, OSError):
        return SUPERVISORD


def _quote(arg):
    """One argument for a supervisord command= or systemd ExecStart= line."""
    if _SAFE.match(arg):
        return arg
    return '"%s"' % arg.replace("\\", "\\\\").replace('"', '\\"')


def _systemd_escape(text):
    """systemd expands %-specifiers and $VARIABLES in ExecStart=, even inside quotes."""
    return text.replace("%", "%%").replace("$", "$$")


def _absolute(program):
    """``program`` as an absolute path (systemd wants one; supervisord's PATH may be short)."""
    if os.path.isabs(program):
        return program
    for directory in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]:
        candidate = os.path.join(directory, program)
        if directory and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return program


class Service:
    """The definition of one program for one manager, and the manager's verbs for it.

    ``comment``: lines kept as comments in the definition (a module's own record of what it runs);
    ``log``: a file for the program's output (supervisord; systemd keeps it in the journal);
    ``kill_group``: stop and kill the program's whole process group (supervisord; systemd's
    KillMode=mixed does that anyway).
    """

    manager = None

    def __init__(self, name, argv, description, comment=None, log=None, kill_group=False):
        if not _NAME.match(name or ""):
            raise InvalidInput("service name %r is not usable (letters, digits, '_', '.', '-'; at most 64)" % (name,))
        self.name = name
        self.argv = [_absolute(argv[0])] + [str(a) for a in argv[1:]]
        self.description = description
        self.comment = comment
        self.log = log
        self.kill_group = kill_group

    def _comment_lines(self, mark):
        return ["%s %s" % (mark, line) for line in (self.comment or "").splitlines()]

    def read_definition(self):
        try:
            with open(self.definition_path) as handle:
                return handle.read()
        except (IOError, OSError):
            return None

    def describe(self):
        return "%s %s" % (self.manager, self.name)

    def write(self):
        """Put render() at definition_path (atomically); True if the file changed."""
        text = self.render()
        if self.read_definition() == text:
            return False
        path = self.definition_path
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory)
        with open(path + ".partial", "w") as handle:
            handle.write(text)
        os.chmod(path + ".partial", 0o644)
        os.rename(path + ".partial", path)
        return True


def _listed(directory, prefix, suffix):
    """{name: definition text} of the files ``<prefix>*<suffix>`` in ``directory``."""
    found = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(directory), glob.escape(prefix) + "*" + suffix))):
        try:
            with open(path) as handle:
                found[os.path.basename(path)[:-len(suffix)]] = handle.read()
        except (IOError, OSError):
            pass
    return found


class Supervisord(Service):
    """A [program:<name>] file in supervisord's include directory."""

    manager = SUPERVISORD

    def __init__(self, name, argv, description, conf=DEFAULT_SUPERVISOR_CONF,
                 programs_dir=DEFAULT_SUPERVISOR_PROGRAMS_DIR, timeout=30.0, **kwargs):
        Service.__init__(self, name, argv, description, **kwargs)
        self.conf = conf or DEFAULT_SUPERVISOR_CONF
        self.programs_dir = programs_dir or DEFAULT_SUPERVISOR_PROGRAMS_DIR
        self.timeout = timeout

    @property
    def definition_path(self):
        return os.path.join(self.programs_dir, "%s.conf" % self.name)

    @staticmethod
    def definitions(prefix, programs_dir=None):
        """{name: text} of the program files whose names start with ``prefix``."""
        return _listed(programs_dir or DEFAULT_SUPERVISOR_PROGRAMS_DIR, prefix, ".conf")

    def render(self):
        command = " ".join(_quote(a) for a in self.argv).replace("%", "%%")
        group = ["stopasgroup=true", "killasgroup=true"] if self.kill_group else []
        log = ["stdout_logfile=%s" % self.log.replace("%", "%%"), "stdout_logfile_maxbytes=1MB",
               "stdout_logfile_backups=1"] if self.log else []
        return "\n".join([
            "; Managed by euca.cloud: %s. Edits are overwritten on the next apply." % self.description,
        ] + self._comment_lines(";") + [
            "[program:%s]" % self.name,
            "command=%s" % command,
            "autostart=true",
            "autorestart=true",
            "startsecs=1",
            # a respawn that fails at once is tried again (back-off 1, 2, 3 ... s) before FATAL, as
            # roles/common does; the next apply starts a FATAL program again
            "startretries=20",
            "stopwaitsecs=10",
            "stopsignal=TERM",
        ] + group + [
            "redirect_stderr=true",
        ] + log) + "\n"

    def ctl(self, *args):
        return run(["supervisorctl", "-c", self.conf] + list(args), check=False, timeout=self.timeout + 30)

    def _ensure_running(self):
        """Start supervisord when it does not answer (as roles/common does); it reads our file."""
        rc, out, err = self.ctl("pid")
        if rc == 0 and out.strip().isdigit():
            return False
        try:
            run(["supervisord", "-c", self.conf], timeout=self.timeout)
        except CommandFailed as exc:
            raise EucaError("cannot start supervisord -c %s: %s" % (self.conf, exc.msg))
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            rc, out, err = self.ctl("pid")
            if rc == 0 and out.strip().isdigit():
                return True
            time.sleep(0.1)
        raise EucaError("supervisord -c %s did not answer within %ss" % (self.conf, self.timeout))

    def status(self):
        """``(running, pid, down)``: RUNNING with its pid; down when it is not coming up by itself
        (FATAL, BACKOFF, EXITED, STOPPED, or unknown to supervisord)."""
        rc, out, err = self.ctl("status", self.name)
        fields = out.split()
        state = fields[1] if len(fields) >= 2 and fields[0] == self.name else None
        match = re.search(r"pid (\d+)", out)
        pid = int(match.group(1)) if match else 0
        if not pid and state == "STARTING":
            pid = self.pid() or 0  # status shows no pid while STARTING; "supervisorctl pid" does
        return state == "RUNNING", pid, state in ("FATAL", "BACKOFF", "EXITED", "STOPPED", None)

    def render_remove(self):
        return "supervisorctl -c %s stop %s; rm %s" % (self.conf, self.name, self.definition_path)

    def pid(self):
        """The program's pid as supervisord knows it (None: not running, unknown, or no supervisord)."""
        rc, out, err = self.ctl("pid", self.name)
        out = out.strip()
        return int(out) if out.isdigit() and out != "0" else None

    def load(self):
        """Make supervisord (re)read our definition: adds and starts it, or restarts it when it changed."""
        if self._ensure_running():
            return  # a new supervisord read every program file and autostarts them
        rc, out, err = self.ctl("update", self.name)
        if rc != 0 or "ERROR" in out:
            raise EucaError("supervisorctl -c %s update %s failed: %s" % (self.conf, self.name, (out + err).strip()))

    def start(self):
        if self._ensure_running():
            return
        rc, out, err = self.ctl("start", self.name)
        if rc != 0 and "already started" not in out:
            if "no such process" in out:
                self.load()
                return
            raise EucaError("supervisorctl start %s failed: %s" % (self.name, (out + err).strip()))

    def restart(self):
        if self._ensure_running():
            return
        rc, out, err = self.ctl("restart", self.name)
        if rc != 0:
            raise EucaError("supervisorctl restart %s failed: %s" % (self.name, (out + err).strip()))

    def remove(self):
        """Stop the program and forget it (the definition file is removed first)."""
        try:
            os.unlink(self.definition_path)
        except OSError:
            pass
        rc, out, err = self.ctl("pid")
        if rc == 0 and out.strip().isdigit():
            self.ctl("update", self.name)


class Systemd(Service):
    """A unit <name>.service in systemd's unit directory."""

    manager = SYSTEMD

    def __init__(self, name, argv, description, units_dir=DEFAULT_SYSTEMD_UNITS_DIR, timeout=30.0, **kwargs):
        Service.__init__(self, name, argv, description, **kwargs)
        self.units_dir = units_dir or DEFAULT_SYSTEMD_UNITS_DIR
        self.timeout = timeout

    @property
    def definition_path(self):
        return os.path.join(self.units_dir, "%s.service" % self.name)

    @staticmethod
    def definitions(prefix, units_dir=None):
        """{name: text} of the unit files whose names start with ``prefix``."""
        return _listed(units_dir or DEFAULT_SYSTEMD_UNITS_DIR, prefix, ".service")

    def render(self):
        return "\n".join([
            "# Managed by euca.cloud: %s. Edits are overwritten on the next apply." % self.description,
        ] + self._comment_lines("#") + [
            "[Unit]",
            "Description=euca.cloud %s" % self.description,
            "After=network-online.target",
            # never give up restarting
            "StartLimitIntervalSec=0",
            "",
            "[Service]",
            "ExecStart=%s" % _systemd_escape(" ".join(_quote(a) for a in self.argv)),
            "Restart=always",
            "RestartSec=1",
            "KillMode=mixed",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
        ]) + "\n"

    def _systemctl(self, *args):
        try:
            run(["systemctl"] + list(args), timeout=self.timeout + 30)
        except CommandFailed as exc:
            raise EucaError("systemctl %s failed: %s" % (" ".join(args), exc.msg))

    def pid(self):
        rc, out, err = run(["systemctl", "show", "--property=MainPID", "--value", "%s.service" % self.name],
                           check=False, timeout=self.timeout)
        out = out.strip()
        return int(out) if rc == 0 and out.isdigit() and out != "0" else None

    def status(self):
        """``(running, pid, down)`` as systemctl shows the unit (down: failed or inactive)."""
        rc, out, err = run(["systemctl", "show", "-p", "ActiveState", "-p", "SubState", "-p", "MainPID",
                            "%s.service" % self.name], check=False, timeout=self.timeout)
        values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        pid = int(values.get("MainPID") or 0) if (values.get("MainPID") or "0").isdigit() else 0
        return values.get("SubState") == "running" and pid > 0, pid, values.get("ActiveState") in ("failed", "inactive")

    def render_remove(self):
        return "systemctl disable --now %s.service; rm %s" % (self.name, self.definition_path)

    def load(self):
        self._systemctl("daemon-reload")
        self._systemctl("enable", "%s.service" % self.name)
        self._systemctl("restart", "%s.service" % self.name)

    def start(self):
        self._systemctl("enable", "--now", "%s.service" % self.name)

    def restart(self):
        self._systemctl("restart", "%s.service" % self.name)

    def remove(self):
        run(["systemctl", "disable", "--now", "%s.service" % self.name], check=False, timeout=self.timeout + 30)
        try:
            os.unlink(self.definition_path)
        except OSError:
            pass
        run(["systemctl", "daemon-reload"], check=False, timeout=self.timeout + 30)


# ---------------------------------------------------------------- many programs of one manager at once
# (a CC runs dozens of DHCP shards: one supervisorctl or systemctl call for all of them, not one each)
def pids(services):
    """{name: pid or None} of ``services`` (all of one manager), asked once."""
    if not services:
        return {}
    first = services[0]
    names = [svc.name for svc in services]
    out = dict((name, None) for name in names)
    if first.manager == SUPERVISORD:
        rc, text, _err = first.ctl("status", *names)
        for line in text.splitlines():
            words = line.split()
            if len(words) >= 4 and words[0] in out and words[1] == "RUNNING" and words[2] == "pid":
                pid = words[3].rstrip(",")
                out[words[0]] = int(pid) if pid.isdigit() else None
        return out
    rc, text, _err = run(["systemctl", "show", "--property=MainPID", "--value"] + ["%s.service" % n for n in names],
                         check=False, timeout=first.timeout)
    values = [v.strip() for v in text.splitlines() if v.strip()]
    if rc == 0 and len(values) == len(names):
        for name, value in zip(names, values):
            out[name] = int(value) if value.isdigit() and value != "0" else None
    return out


def _units(group):
    return ["%s.service" % svc.name for svc in group]


def apply_all(load, restart, start):
    """Load changed definitions (starting or restarting those programs), restart and start the
    others: three lists of services of one manager, one call each."""
    services = load + restart + start
    if not services:
        return
    first = services[0]
    if first.manager == SUPERVISORD:
        if first._ensure_running():
            return  # a new supervisord read every program file and autostarts them
        for verb, group in (("update", load), ("restart", restart), ("start", start)):
            if not group:
                continue
            rc, out, err = first.ctl(verb, *[svc.name for svc in group])
            bad = [line for line in out.splitlines() if "ERROR" in line and "already started" not in line]
            missing = [line.split(":")[0] for line in bad if "no such process" in line]
            if missing and verb != "update":
                rc2, out2, err2 = first.ctl("update", *missing)
                bad = [line for line in bad if line.split(":")[0] not in missing] + \
                    [line for line in out2.splitlines() if "ERROR" in line]
            if bad:
                raise EucaError("supervisorctl -c %s %s failed: %s" % (first.conf, verb, " | ".join(bad)))
        return
    if load:
        first._systemctl("daemon-reload")
        first._systemctl("enable", *_units(load))
        first._systemctl("restart", *_units(load))
    if restart:
        first._systemctl("restart", *_units(restart))
    if start:
        first._systemctl("enable", "--now", *_units(start))


def resolve(manager):
    """``manager`` checked, ``auto`` made the detected one."""
    if manager not in MANAGERS:
        raise InvalidInput("service_manager must be one of %s, not %r" % (", ".join(MANAGERS), manager))
    return detect() if manager == AUTO else manager


def service(manager, name, argv, description, supervisor_conf=None, supervisor_programs_dir=None,
            systemd_units_dir=None, timeout=30.0, **kwargs):
    """The Service for ``manager`` (auto: detected), or None for ``none`` (the module runs the daemon itself).
    ``kwargs``: Service's comment, log and kill_group."""
    manager = resolve(manager)
    if manager == NONE:
        return None
    if manager == SYSTEMD:
        return Systemd(name, argv, description, units_dir=systemd_units_dir, timeout=timeout, **kwargs)
    return Supervisord(name, argv, description, conf=supervisor_conf, programs_dir=supervisor_programs_dir,
                       timeout=timeout, **kwargs)


def definitions(manager, prefix, supervisor_programs_dir=None, systemd_units_dir=None):
    """{name: definition text} of the programs of ``manager`` (auto: detected) whose names start with
    ``prefix``: how a module finds the programs it made earlier."""
    manager = resolve(manager)
    if manager == SYSTEMD:
        return Systemd.definitions(prefix, systemd_units_dir)
    if manager == SUPERVISORD:
        return Supervisord.definitions(prefix, supervisor_programs_dir)
    return {}
