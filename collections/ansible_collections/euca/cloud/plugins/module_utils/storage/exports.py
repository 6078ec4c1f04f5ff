# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a storage controller exports a volume to the one node that attaches it (ARCHITECTURE §6).

iSCSI through tgt: the userspace target daemon runs under the service manager (in the SC's
namespace in the sandbox); this module only talks to it with ``tgtadm`` over its control socket.
Each volume is one target, ``<iqn prefix>:<vol-id>``, with the volume as LUN 1 and an ACL that
lets in only the attaching node (its address or its initiator name). tgt keeps nothing across a
restart: the exports are rebuilt from the ledger, like everything on a CC, SC or NC.

AoE through vblade, the legacy transport: one vblade process per export, started by this module
on the named interface with a MAC filter (``-m``) for the attaching node; its pid and argv are
kept in a state directory so a later run finds, checks and stops exactly that process.

Gather -> plan -> apply: plans are lists of command lines, shown in check mode and ``--diff``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json
import os
import re
import signal
import subprocess
import time

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, EucaError, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.process import in_namespace, run

DEFAULT_IQN_PREFIX = "iqn.2010-05.cloud.euca"
DEFAULT_TGT_SOCKET = "/var/run/tgtd/socket"
IQN_RE = re.compile(r"^iqn\.\d{4}-\d{2}\.[a-z0-9][a-z0-9.-]*(:[^\s]+)?$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
LUN = 1


class ExportFailed(EucaError):
    """The target daemon or vblade did not do what was asked."""


def check_initiators(transport, initiators):
    """The ACL entries, normalised: IP addresses or iqn names for iSCSI, MAC addresses for AoE."""
    out = []
    for value in initiators or []:
        text = str(value).strip().lower()
        if transport == "aoe":
            if not MAC_RE.match(text):
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


def tgtd_argv(portal, namespace=None, control_port=0):
    """How a service manager runs tgtd in the foreground (environment: TGT_IPC_SOCKET=<tgt_socket>).

    tgtd ignores SIGTERM while targets exist; a stop that must not wait asks it to go first with
    ``tgtadm --op delete --mode system`` (after the nodes have let go of their volumes).
    """
    return in_namespace(["tgtd", "-f", "-C", str(int(control_port)), "--iscsi", "portal=%s" % portal], namespace)


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


# --------------------------------------------------------------------------------------- AoE
class Vblade:
    """vblade processes this module started, one per exported volume, recorded in ``state_dir``."""

    def __init__(self, state_dir, namespace=None):
        self.state_dir = state_dir
        self.namespace = namespace

    def _record(self, volume):
        return os.path.join(self.state_dir, volume + ".json")

    @staticmethod
    def argv(shelf, slot, interface, path, macs):
        return ["vblade"] + (["-m", ",".join(macs)] if macs else []) + [str(shelf), str(slot), interface, path]

    @staticmethod
    def _alive(record):
        try:
            with open("/proc/%d/cmdline" % record["pid"], "rb") as handle:
                cmdline = handle.read().split(b"\0")
        except (IOError, OSError):
            return False
        # "ip netns exec" execs vblade in place: the pid runs the recorded argv (ip's prefix gone)
        return [c.decode("utf-8", "replace") for c in cmdline if c][-len(record["argv"]):] == record["argv"]

    def gather(self):
        """``{volume: record}`` of the exports whose vblade still runs (records of dead ones are dropped)."""
        found = {}
        if not os.path.isdir(self.state_dir):
            return found
        for entry in sorted(os.listdir(self.state_dir)):
            if not entry.endswith(".json"):
                continue
            with open(os.path.join(self.state_dir, entry)) as handle:
                record = json.load(handle)
            record["running"] = self._alive(record)
            found[entry[:-5]] = record
        return found

    def plan(self, exports, volume, path=None, interface=None, shelf=None, slot=None, macs=None, present=True):
        """``(steps, address)``: steps are ("stop", volume) and ("start", volume, record)."""
        have = exports.get(volume)
        steps = []
        if not present:
            if have is not None:
                steps.append(("stop", volume, have))
            return steps, None
        if have is not None and have["running"]:
            same = (have["interface"] == interface and have["path"] == path and have["macs"] == macs and
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
                lines.append("kill %s  # vblade of %s" % (step[2].get("pid"), step[1]))
            else:
                lines.append(" ".join(in_namespace(step[2]["argv"], self.namespace)))
        return lines

    def apply(self, steps):
        for step in steps:
            if step[0] == "stop":
                self._stop(step[1], step[2])
            else:
                self._start(step[1], step[2])

    def _stop(self, volume, record):
        if record.get("running", True) and self._alive(record):
            os.kill(record["pid"], signal.SIGTERM)
            deadline = time.time() + 5
            while self._alive(record) and time.time() < deadline:
                time.sleep(0.05)
            if self._alive(record):
                os.kill(record["pid"], signal.SIGKILL)
        for suffix in (".json", ".log"):
            try:
                os.unlink(os.path.join(self.state_dir, volume + suffix))
            except OSError:
                pass

    def _start(self, volume, record):
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        log_path = os.path.join(self.state_dir, volume + ".log")
        with open(log_path, "ab") as log:
            # its own session: the process outlives this module run, as a daemon would
            proc = subprocess.Popen(in_namespace(record["argv"], self.namespace), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, close_fds=True, start_new_session=True)
        record = dict(record, pid=proc.pid)
        deadline = time.time() + 2
        while time.time() < deadline:
            if proc.poll() is not None:
                with open(log_path, "rb") as handle:
                    tail = handle.read()[-600:].decode("utf-8", "replace").strip()
                raise ExportFailed("vblade for %s exited (rc=%s): %s" % (volume, proc.returncode, tail))
            if self._alive(record):
                break
            time.sleep(0.05)
        partial = self._record(volume) + ".partial"
        with open(partial, "w") as handle:
            json.dump(dict((k, v) for k, v in record.items() if k != "running"), handle)
        os.rename(partial, self._record(volume))
