# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a storage controller exports a volume to the one node that attaches it (ARCHITECTURE §6).

iSCSI through tgt: the userspace target daemon runs under the service manager (in the SC's
namespace in the sandbox); this module only talks to it with ``tgtadm`` over its control socket.
Each volume is one target, ``<iqn prefix>:<vol-id>``, with the volume as LUN 1 and an ACL that
lets in only the attaching node (its address or its initiator name). tgt keeps nothing across a
restart: the exports are rebuilt from the ledger, like everything on a CC, SC or NC.

AoE through vblade, the legacy transport: one vblade per export on the named interface with a MAC
filter (``-m``) for the attaching node, as a program of the host's service manager
(module_utils/supervised.py) whose definition carries the export's record.

Gather -> plan -> apply: plans are lists of command lines, shown in check mode and ``--diff``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json
import os
import re
import shlex
import signal
import time

from ansible_collections.euca.cloud.plugins.module_utils import supervised
from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, EucaError, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.model import names
from ansible_collections.euca.cloud.plugins.module_utils.process import in_namespace, run

DEFAULT_IQN_PREFIX = "iqn.2010-05.cloud.euca"
DEFAULT_TGT_SOCKET = "/var/run/tgtd/socket"
IQN_RE = re.compile(r"^iqn\.\d{4}-\d{2}\.[a-z0-9][a-z0-9.-]*(:[^\s]+)?$")
LUN = 1


class ExportFailed(EucaError):
    """The target daemon or vblade did not do what was asked."""


def check_initiators(transport, initiators):
    """The ACL entries, normalised: IP addresses or iqn names for iSCSI, MAC addresses for AoE."""
    out = []
    for value in initiators or []:
        text = str(value).strip().lower()
        if transport == "aoe":
            if not names.is_mac(text):
                raise InvalidInput("AoE initiators are MAC addresses (the node's interface), not %r" % (value,))
        elif IQN_RE.match(text):
            pass
        else:
            try:
                text = str(ipaddress.ip_address(text))
            except ValueError:
                raise InvalidInput("iSCSI initiator %r is neither an IP address nor an iqn name" % (value,))
        if text not in out:
            out.append(text)
    return sorted(out)


# --------------------------------------------------------------------------------------- tgt
def parse_targets(text):
    """``tgtadm --op show --mode target`` as ``{iqn: {tid, luns, acl, sessions}}``."""
    targets = {}
    current = lun = session = None
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        match = re.match(r"^Target (\d+): (\S+)$", raw)
        if match:
            current = {"tid": int(match.group(1)), "luns": {}, "acl": [], "sessions": []}
            targets[match.group(2)] = current
            section = None
            continue
        if current is None or not line:
            continue
        if line.endswith("information:"):
            section = line
            continue
        if section == "I_T nexus information:":
            if line.startswith("I_T nexus:"):
                session = {"sid": int(line.split(":", 1)[1]), "initiator": None, "connections": []}
                current["sessions"].append(session)
            elif line.startswith("Initiator:") and session is not None:
                session["initiator"] = line.split(":", 1)[1].split(" alias:")[0].strip()
            elif line.startswith("Connection:") and session is not None:
                session["connections"].append({"cid": int(line.split(":", 1)[1]), "ip": None})
            elif line.startswith("IP Address:") and session is not None and session["connections"]:
                session["connections"][-1]["ip"] = line.split(":", 1)[1].strip()
        elif section == "LUN information:":
            if line.startswith("LUN:"):
                lun = {"path": None, "bstype": None}
                current["luns"][int(line.split(":", 1)[1])] = lun
            elif line.startswith("Backing store type:") and lun is not None:
                lun["bstype"] = line.split(":", 1)[1].strip()
            elif line.startswith("Backing store path:") and lun is not None:
                lun["path"] = line.split(":", 1)[1].strip()
        elif section == "ACL information:":
            current["acl"].append(line.lower())
    return targets


def parse_portals(text):
    """``tgtadm --op show --mode portal``: the ``host:port`` pairs tgtd listens on."""
    return [line.split(":", 1)[1].strip().rsplit(",", 1)[0] for line in text.splitlines() if line.startswith("Portal:")]


def _session_ips(target):
    return sorted(set(c["ip"] for s in target["sessions"] for c in s["connections"] if c["ip"]))


def _holds(target, entry):
    """Sessions in ``target`` that came in through ACL ``entry`` (an address or an initiator name)."""
    return [s for s in target["sessions"]
            if s["initiator"] == entry or any(c["ip"] == entry for c in s["connections"])]


# Run by sh before it execs tgtd (the pid stays tgtd's): a detached helper waits until the new
# tgtd answers on its control socket, then replays the restore scripts sc_export wrote.
TGTD_RESTORE = (
    'p=$1; d="${TGT_IPC_SOCKET:-%s}.$p.exports"; shift; '
    '( ( i=0; until tgtadm -C "$p" --lld iscsi --op show --mode portal >/dev/null 2>&1; do '
    'i=$((i+1)); [ "$i" -gt 600 ] && exit 1; sleep 0.1; done; '
    'for f in "$d"/*.sh; do [ -f "$f" ] && sh "$f"; done ) </dev/null >/dev/null 2>&1 & ); '
    'exec "$@"' % DEFAULT_TGT_SOCKET)


def tgtd_argv(portal, namespace=None, control_port=0):
    """How a service manager runs tgtd in the foreground (environment: TGT_IPC_SOCKET=<tgt_socket>).

    ``sh`` starts a helper that restores the exports sc_export recorded (``Tgt.records_dir``) once
    tgtd answers, then execs tgtd: the service manager's pid is tgtd's, and a tgtd restarted after a
    crash serves the same targets again.

    tgtd ignores SIGTERM while targets exist; a stop that must not wait asks it to go first with
    ``tgtadm --op delete --mode system`` (after the nodes have let go of their volumes).
    """
    port = str(int(control_port))
    return ["sh", "-c", TGTD_RESTORE, "euca-tgtd", port] + in_namespace(
        ["tgtd", "-f", "-C", port, "--iscsi", "portal=%s" % portal], namespace)


class Tgt:
    """The iSCSI target daemon behind one control socket."""

    def __init__(self, socket=None, control_port=0):
        self.socket = socket or DEFAULT_TGT_SOCKET
        self.control_port = int(control_port)

    def control_path(self):
        return "%s.%d" % (self.socket, self.control_port)

    def _env(self):
        return dict(os.environ, TGT_IPC_SOCKET=self.socket)

    def argv(self, *args):
        return ["tgtadm", "-C", str(self.control_port), "--lld", "iscsi"] + [str(a) for a in args]

    def _show(self, mode):
        if not os.path.exists(self.control_path()):
            raise ExportFailed("tgtd is not running: no control socket at %s (start the tgt service, or set "
                               "tgt_socket/tgt_control_port to the instance that runs)" % self.control_path())
        rc, out, err = run(self.argv("--op", "show", "--mode", mode), check=False, env=self._env())
        if rc != 0:
            raise ExportFailed("tgtadm cannot reach tgtd at %s: %s" % (self.control_path(), err.strip()))
        return out

    def gather(self):
        """``(targets, portals)`` as tgtd has them."""
        return parse_targets(self._show("target")), parse_portals(self._show("portal"))

    def plan(self, targets, name, path=None, bstype="rdwr", initiators=None, present=True, force=False):
        """Command lines that make target ``name`` exist with LUN 1 on ``path`` and exactly ``initiators``."""
        have = targets.get(name)
        steps = []
        if not present:
            if have is None:
                return steps
            if have["sessions"] and not force:
                raise Conflict("target %s is in use by %s; detach the volume on its node first (or force=true)"
                               % (name, ", ".join(_session_ips(have)) or "an initiator"))
            return [self.argv("--op", "delete", "--mode", "target", "--tid", have["tid"], *(["--force"] if force else []))]
        if have is None:
            tid = 1
            while any(t["tid"] == tid for t in targets.values()):
                tid += 1
            steps.append(self.argv("--op", "new", "--mode", "target", "--tid", tid, "-T", name))
            steps.append(self.argv("--op", "new", "--mode", "logicalunit", "--tid", tid, "--lun", LUN,
                                   "-b", path, "--bstype", bstype))
            current = []
        else:
            tid = have["tid"]
            lun = have["luns"].get(LUN)
            if lun is None or lun["path"] != path:
                if have["sessions"] and not force:
                    raise Conflict("target %s exports %s, not %s, and is in use by %s; detach first (or force=true)"
                                   % (name, lun and lun["path"], path, ", ".join(_session_ips(have))))
                if lun is not None:
                    steps.append(self.argv("--op", "delete", "--mode", "logicalunit", "--tid", tid, "--lun", LUN))
                steps.append(self.argv("--op", "new", "--mode", "logicalunit", "--tid", tid, "--lun", LUN,
                                       "-b", path, "--bstype", bstype))
            current = have["acl"]
        for entry in sorted(set(current) - set(initiators)):
            held = _holds(have, entry) if have else []
            if held and not force:
                raise Conflict("target %s: initiator %s still has a session; detach the volume on that node first "
                               "(or force=true to cut it off)" % (name, entry))
            steps.append(self.argv("--op", "unbind", "--mode", "target", "--tid", tid, *self._acl_args(entry)))
            for session in held:
                for conn in session["connections"]:
                    steps.append(self.argv("--op", "delete", "--mode", "conn", "--tid", tid,
                                           "--sid", session["sid"], "--cid", conn["cid"]))
        for entry in sorted(set(initiators) - set(current)):
            steps.append(self.argv("--op", "bind", "--mode", "target", "--tid", tid, *self._acl_args(entry)))
        return steps

    @staticmethod
    def _acl_args(entry):
        return ["--initiator-name", entry] if entry.startswith("iqn.") else ["-I", entry]

    def apply(self, steps):
        for step in steps:
            rc, out, err = run(step, check=False, env=self._env())
            if rc != 0:
                raise ExportFailed("%s failed (rc=%d): %s" % (" ".join(step), rc, (err or out).strip()))

    # restore scripts: what a restarted tgtd is given back (see tgtd_argv)
    def records_dir(self):
        return "%s.%d.exports" % (self.socket, self.control_port)

    def restore_lines(self, name, target):
        """The tgtadm lines that recreate ``target`` (as gathered) in an empty tgtd, or None."""
        if target is None or LUN not in target["luns"]:
            return None
        tid, lun = target["tid"], target["luns"][LUN]
        steps = [self.argv("--op", "new", "--mode", "target", "--tid", tid, "-T", name),
                 self.argv("--op", "new", "--mode", "logicalunit", "--tid", tid, "--lun", LUN,
                           "-b", lun["path"], "--bstype", lun["bstype"] or "rdwr")]
        steps += [self.argv("--op", "bind", "--mode", "target", "--tid", tid, *self._acl_args(entry))
                  for entry in sorted(target["acl"])]
        # set -e: nothing is bound unless this script made the target (a tid taken since is left alone)
        return "set -e\n" + "".join(" ".join(shlex.quote(a) for a in step) + "\n" for step in steps)

    def save(self, volume, name, target):
        """Keep the restore script of ``volume`` equal to ``target`` (None: remove it). True if it changed."""
        path = os.path.join(self.records_dir(), volume + ".sh")
        text = self.restore_lines(name, target)
        if text is not None:
            text = "# euca.cloud sc_export: recreates the export of %s in a restarted tgtd\n" % volume + text
        try:
            with open(path) as handle:
                have = handle.read()
        except (IOError, OSError):
            have = None
        if have == text:
            return False
        if text is None:
            os.unlink(path)
            return True
        os.makedirs(self.records_dir(), mode=0o700, exist_ok=True)
        with open(path + ".partial", "w") as handle:
            handle.write(text)
        os.rename(path + ".partial", path)
        return True


# --------------------------------------------------------------------------------------- AoE
class Vblade:
    """vblade programs of the service manager, one per exported volume (``euca-vblade-<volume>``).

    ``state_dir`` holds their logs, and records of vblade processes an earlier version of this module
    started by itself (``<volume>.json`` with a pid): those are stopped and replaced by a program.
    """

    PREFIX = "euca-vblade-"
    MARK = "euca.cloud-aoe-export: "

    def __init__(self, state_dir, namespace=None, manager=supervised.AUTO, supervisor_conf=None,
                 supervisor_programs_dir=None, systemd_units_dir=None, timeout=15.0):
        self.state_dir = state_dir
        self.namespace = namespace
        self.manager = supervised.resolve(manager)
        if self.manager == supervised.NONE:
            raise InvalidInput("vblade runs under a service manager (systemd or supervisord), not %r" % manager)
        self.where = dict(supervisor_conf=supervisor_conf, supervisor_programs_dir=supervisor_programs_dir,
                          systemd_units_dir=systemd_units_dir, timeout=timeout)

    def program(self, volume):
        return self.PREFIX + volume

    def service(self, volume, record):
        """The program of ``volume`` running ``record`` (its argv, in its namespace)."""
        keep = dict((k, v) for k, v in record.items() if k not in ("running", "pid", "legacy"))
        return supervised.service(
            self.manager, self.program(volume), in_namespace(record["argv"], record.get("namespace")),
            "sc_export: the AoE export of %s" % volume,
            comment="%s%s" % (self.MARK, json.dumps(keep, sort_keys=True)),
            log=os.path.join(self.state_dir, volume + ".log"), kill_group=True, **self.where)

    @staticmethod
    def argv(shelf, slot, interface, path, macs):
        return ["vblade"] + (["-m", ",".join(macs)] if macs else []) + [str(shelf), str(slot), interface, path]

    @staticmethod
    def _alive(record):
        try:
            with open("/proc/%d/cmdline" % record["pid"], "rb") as handle:
                cmdline = handle.read().split(b"\0")
        except (IOError, OSError, TypeError, KeyError):
            return False
        # "ip netns exec" execs vblade in place: the pid runs the recorded argv (ip's prefix gone);
        # vblade may have been given by its absolute path (the manager's program without a namespace)
        argv = record["argv"]
        have = [c.decode("utf-8", "replace") for c in cmdline if c][-len(argv):]
        return len(have) == len(argv) and have[1:] == argv[1:] and \
            os.path.basename(have[0]) == os.path.basename(argv[0])

    def _parse(self, text):
        for line in (text or "").splitlines():
            body = line.lstrip(";# ")
            if body.startswith(self.MARK):
                return json.loads(body[len(self.MARK):])
        return None

    def gather(self):
        """``{volume: record}`` of the exports defined as programs (``running``, ``pid`` as the manager says),
        and of the processes of earlier versions still running (``legacy``)."""
        found = {}
        programs = supervised.definitions(self.manager, self.PREFIX, self.where["supervisor_programs_dir"],
                                          self.where["systemd_units_dir"])
        for name, text in sorted(programs.items()):
            record = self._parse(text)
            if record is None:
                continue
            volume = name[len(self.PREFIX):]
            # STARTING with our process (the manager bringing it back after a crash) counts as running:
            # restarting it again would only interrupt the initiators once more
            _running, pid, down = self.service(volume, record).status()
            record.update(pid=pid or None, running=bool(pid) and not down and self._alive(dict(record, pid=pid)))
            found[volume] = record
        if os.path.isdir(self.state_dir):
            for entry in sorted(os.listdir(self.state_dir)):
                if not entry.endswith(".json") or entry[:-5] in found:
                    continue
                with open(os.path.join(self.state_dir, entry)) as handle:
                    record = json.load(handle)
                record.update(running=self._alive(record), legacy=True)
                found[entry[:-5]] = record
        return found

    def plan(self, exports, volume, path=None, interface=None, shelf=None, slot=None, macs=None, present=True):
        """``(steps, address)``: steps are ("stop", volume, record) and ("start", volume, record)."""
        have = exports.get(volume)
        steps = []
        if not present:
            if have is not None:
                steps.append(("stop", volume, have))
            return steps, None
        if have is not None and have["running"] and not have.get("legacy"):
            same = (have["interface"] == interface and have["path"] == path and have["macs"] == macs and
                    have.get("namespace", self.namespace) == self.namespace and
                    (shelf is None or have["shelf"] == shelf) and (slot is None or have["slot"] == slot))
            if same:
                return steps, (have["shelf"], have["slot"])
        if have is not None:
            steps.append(("stop", volume, have))
        shelf = 0 if shelf is None else shelf
        if slot is None:
            used = set(r["slot"] for v, r in exports.items()
                       if v != volume and r["running"] and r["shelf"] == shelf and r["interface"] == interface)
            free = [s for s in range(256) if s not in used]
            if not free:
                raise Conflict("AoE shelf %d on %s has no free slot" % (shelf, interface))
            slot = free[0]
        else:
            for other, record in exports.items():
                if other != volume and record["running"] and (record["shelf"], record["slot"]) == (shelf, slot) \
                        and record["interface"] == interface:
                    raise Conflict("AoE address e%d.%d on %s is taken by %s" % (shelf, slot, interface, other))
        record = {"shelf": shelf, "slot": slot, "interface": interface, "path": path, "macs": macs,
                  "namespace": self.namespace, "argv": self.argv(shelf, slot, interface, path, macs)}
        steps.append(("start", volume, record))
        return steps, (shelf, slot)

    def render(self, steps):
        lines = []
        for step in steps:
            if step[0] == "stop":
                if step[2].get("legacy"):
                    lines.append("kill %s  # vblade of %s (started by an earlier version)" % (step[2].get("pid"), step[1]))
                else:
                    lines.append(self.service(step[1], step[2]).render_remove())
            else:
                lines.append(" ".join(in_namespace(step[2]["argv"], self.namespace)))
        return lines

    def apply(self, steps, timeout=15):
        for step in steps:
            if step[0] == "stop":
                self._stop(step[1], step[2])
            else:
                self._start(step[1], step[2], timeout)

    def _stop(self, volume, record):
        if record.get("legacy"):
            if record.get("running", True) and self._alive(record):
                os.kill(record["pid"], signal.SIGTERM)
                deadline = time.time() + 5
                while self._alive(record) and time.time() < deadline:
                    time.sleep(0.05)
                if self._alive(record):
                    os.kill(record["pid"], signal.SIGKILL)
            suffixes = (".json", ".log")
        else:
            self.service(volume, record).remove()
            suffixes = (".log",)
        for suffix in suffixes:
            try:
                os.unlink(os.path.join(self.state_dir, volume + suffix))
            except OSError:
                pass

    def _log_tail(self, volume):
        try:
            with open(os.path.join(self.state_dir, volume + ".log"), "rb") as handle:
                return handle.read()[-600:].decode("utf-8", "replace").strip()
        except (IOError, OSError):
            return ""

    def _start(self, volume, record, timeout):
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        program = self.service(volume, record)
        program.write()
        program.load()
        # running once it has stayed up for the program's start time (supervisord's startsecs)
        deadline = time.time() + timeout
        while True:
            running, pid, down = program.status()
            if running and self._alive(dict(record, pid=pid)):
                return
            if down or time.time() > deadline:
                tail = self._log_tail(volume)
                program.remove()
                raise ExportFailed("vblade for %s did not stay up under %s: %s" % (volume, self.manager, tail))
            time.sleep(0.1)
