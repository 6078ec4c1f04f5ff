# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The EC2 instance metadata service of a CC: its snapshot, its daemon, its nft table.

The CC keeps nothing of its own: every converge hands the module the instances of this CC
(from the ledger) and the module

- writes them as one JSON snapshot (atomically, 0600, only when the content differs); the
  daemon (roles/cc/files/euca-metadata) re-reads it when its inode/mtime/size change;
- keeps the daemon running: under the service manager (supervisord or systemd: it comes back
  after kill -9) or, with ``none``, started by the module itself (pid file beside the snapshot);
  a changed command line restarts it;
- converges the nft table ``ip euca_metadata`` in the namespace: port 80 of 169.254.169.254 on
  the segment interfaces is redirected to the daemon's port (the redirect rewrites the
  destination to the interface's primary address, the segment's gateway, which is how the
  daemon tells segments apart), and port ``port`` is dropped unless the connection came through
  that redirect from an (interface, IP, MAC) of the snapshot: an address taken over on the
  segment, or a segment's address used on another, gets nothing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import signal
import subprocess
import time

from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.model import addressing, names
from ansible_collections.euca.cloud.plugins.module_utils.model import keys as keys_model
from ansible_collections.euca.cloud.plugins.module_utils.process import CommandFailed, in_namespace, run
from ansible_collections.euca.cloud.plugins.module_utils import files, supervised

METADATA_ADDRESS = "169.254.169.254"
DEFAULT_SNAPSHOT = "/var/lib/euca/cc/metadata/snapshot.json"
DEFAULT_SERVER_PATH = "/usr/local/lib/euca/euca-metadata"
#: the interpreter of the daemon: the host's own Python 3 (managed hosts have no other)
PYTHON = "/usr/bin/python3"
DEFAULT_PORT = 8775
DEFAULT_SERVICE_NAME = "euca-metadata"
DEFAULT_LISTEN = "0.0.0.0"
TABLE = "euca_metadata"
SNAPSHOT_FORMAT = 1
USER_DATA_MAX = 16384
HTTP_TOKENS = ("optional", "required")
HEADER = "Managed by euca.cloud.cc_metadata: edits are overwritten on the next apply."

# files beside the snapshot
TABLE_FILE = "metadata.nft"
PID_FILE = "euca-metadata.pid"
LOG_FILE = "euca-metadata.log"
KEY_FILE = "token.key"

START, RESTART, STOP, NOTHING = "start", "restart", "stop", "none"

FIELDS = ("id", "gateway", "interface", "private_ip", "mac", "image_id", "kernel_id", "ramdisk_id", "instance_type",
          "reservation_id", "launch_index", "hostname", "local_hostname", "public_ip", "public_hostname",
          "availability_zone", "region", "account", "security_groups", "public_keys", "user_data", "launched_at",
          "http_tokens", "architecture", "manifest_path")
_HOSTNAME = re.compile(r"^(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\Z",
                       re.IGNORECASE)
_TEXT = re.compile(r"^[^\x00-\x1f\x7f]{1,1024}\Z")
_ARCH = ("x86_64", "i386", "arm64")


def _text(inst, field, what, required=True, pattern=_TEXT, rule="printable text on one line"):
    value = inst.get(field)
    if value in (None, ""):
        if required:
            raise InvalidInput("%s: %s is required" % (what, field))
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput("%s: %s %r is not %s" % (what, field, value, rule))
    value = str(value)
    if not pattern.match(value):
        raise InvalidInput("%s: %s %r is not %s" % (what, field, value, rule))
    return value


def _address(inst, field, what, required=True):
    value = inst.get(field)
    if value in (None, ""):
        if required:
            raise InvalidInput("%s: %s is required" % (what, field))
        return None
    return str(addressing.parse_address(value, "%s: %s" % (what, field)))


def _opt_id(kind, inst, field, what):
    value = inst.get(field)
    if value in (None, ""):
        return None
    return names.check_id(kind, value, "%s: %s" % (what, field))


def normalize_instance(raw):
    """One instance as the snapshot holds it; InvalidInput naming the instance and the field."""
    if not isinstance(raw, dict):
        raise InvalidInput("each metadata instance must be a dict (id, gateway, interface, private_ip, ...), not %r"
                           % (raw,))
    unknown = set(raw) - set(FIELDS)
    if unknown:
        raise InvalidInput("metadata instance %s: unknown field(s) %s" % (raw.get("id"), ", ".join(sorted(unknown))))
    inst_id = names.check_id("instance", raw.get("id"), "metadata instance id")
    what = "metadata instance %s" % inst_id
    out = {"id": inst_id}
    out["gateway"] = _address(raw, "gateway", what)
    out["interface"] = names.check_ifname(raw.get("interface"), "%s: interface" % what)
    out["private_ip"] = _address(raw, "private_ip", what)
    if out["private_ip"] == out["gateway"]:
        raise InvalidInput("%s: private_ip %s is the segment's gateway" % (what, out["private_ip"]))
    out["mac"] = names.check_unicast_mac(names.normalize_mac(raw.get("mac"), "%s: mac" % what), "%s: mac" % what)
    out["image_id"] = names.check_id("machine", raw.get("image_id"), "%s: image_id" % what)
    out["kernel_id"] = _opt_id("kernel", raw, "kernel_id", what)
    out["ramdisk_id"] = _opt_id("ramdisk", raw, "ramdisk_id", what)
    out["instance_type"] = names.check_name("%s: instance_type" % what, raw.get("instance_type"))
    out["reservation_id"] = names.check_id("reservation", raw.get("reservation_id"), "%s: reservation_id" % what)
    index = raw.get("launch_index", 0)
    if isinstance(index, bool) or not str(index).isdigit():
        raise InvalidInput("%s: launch_index %r is not a non-negative integer" % (what, index))
    out["launch_index"] = int(index)
    rule = "a DNS name (labels of letters, digits and '-')"
    out["hostname"] = _text(raw, "hostname", what, pattern=_HOSTNAME, rule=rule)
    out["local_hostname"] = _text(raw, "local_hostname", what, required=False, pattern=_HOSTNAME, rule=rule) \
        or out["hostname"]
    out["public_ip"] = _address(raw, "public_ip", what, required=False)
    out["public_hostname"] = _text(raw, "public_hostname", what, required=False, pattern=_HOSTNAME, rule=rule)
    if out["public_hostname"] and not out["public_ip"]:
        raise InvalidInput("%s: public_hostname %s without a public_ip" % (what, out["public_hostname"]))
    out["availability_zone"] = names.check_name("%s: availability_zone" % what, raw.get("availability_zone"))
    out["region"] = names.check_name("%s: region" % what, raw.get("region"))
    out["account"] = names.check_name("%s: account" % what, str(raw.get("account")) if raw.get("account") not in (
        None, "") else None)
    groups = raw.get("security_groups") or []
    if not isinstance(groups, list):
        raise InvalidInput("%s: security_groups must be a list of names" % what)
    out["security_groups"] = [names.check_name("%s: security group" % what, g) for g in groups]
    keys = []
    for key in raw.get("public_keys") or []:
        if not isinstance(key, dict) or set(key) - set(("name", "key")):
            raise InvalidInput("%s: each public key must be a dict with name and key" % what)
        try:
            name = keys_model.check_key_name(key.get("name"))
        except InvalidInput as exc:
            raise InvalidInput("%s: %s" % (what, exc.msg))
        text = key.get("key")
        if not isinstance(text, str) or not text.strip() or len(text) > 16384 or \
                "\n" in text.strip() or "\r" in text or "\0" in text:
            raise InvalidInput("%s: public key %s is not one line of OpenSSH public key text" % (what, name))
        keys.append({"name": name, "key": text.strip()})
    out["public_keys"] = keys
    data = raw.get("user_data")
    if data is not None:
        if not isinstance(data, str):
            raise InvalidInput("%s: user_data must be text (up to %d bytes)" % (what, USER_DATA_MAX))
        size = len(data.encode("utf-8"))
        if size > USER_DATA_MAX:
            raise InvalidInput("%s: user_data is %d bytes; EC2's limit is %d" % (what, size, USER_DATA_MAX))
    out["user_data"] = data
    launched = raw.get("launched_at")
    out["launched_at"] = None if launched in (None, "") else _text(raw, "launched_at", what, rule="a timestamp")
    tokens = raw.get("http_tokens") or "optional"
    if tokens not in HTTP_TOKENS:
        raise InvalidInput("%s: http_tokens must be optional or required, not %r" % (what, tokens))
    out["http_tokens"] = tokens
    arch = raw.get("architecture") or "x86_64"
    if arch not in _ARCH:
        raise InvalidInput("%s: architecture must be one of %s, not %r" % (what, ", ".join(_ARCH), arch))
    out["architecture"] = arch
    out["manifest_path"] = _text(raw, "manifest_path", what, required=False)
    return out


def normalize(instances, interfaces=None, contain=False):
    """(instances sorted by id, interfaces sorted, left out): every rule across instances checked.

    With ``contain``, an instance that breaks a rule (alone, or against one accepted before it) is left
    out and named with the reason (``{item, reason}``) instead of refusing them all: one tenant's bad
    record never keeps the others' metadata from converging.
    """
    out, left_out = [], []
    by_id, by_caller, by_port, gateways = {}, {}, {}, {}
    for raw in instances or []:
        try:
            inst = normalize_instance(raw)
            if inst["id"] in by_id:
                raise InvalidInput("metadata instance %s is given twice" % inst["id"])
            caller = (inst["gateway"], inst["private_ip"])
            if caller in by_caller:
                raise InvalidInput("metadata instances %s and %s both are %s behind gateway %s"
                                   % (by_caller[caller], inst["id"], inst["private_ip"], inst["gateway"]))
            port = (inst["interface"], inst["private_ip"])
            if port in by_port:
                raise InvalidInput("metadata instances %s and %s both are %s on %s"
                                   % (by_port[port], inst["id"], inst["private_ip"], inst["interface"]))
            gw = gateways.get(inst["interface"], inst["gateway"])
            if gw != inst["gateway"]:
                raise InvalidInput("metadata instance %s: interface %s has gateway %s, another instance on it says %s"
                                   % (inst["id"], inst["interface"], inst["gateway"], gw))
        except InvalidInput as exc:
            if not contain:
                raise
            left_out.append({"item": raw.get("id") if isinstance(raw, dict) else None, "reason": exc.msg})
            continue
        by_id[inst["id"]] = inst
        by_caller[caller] = inst["id"]
        by_port[port] = inst["id"]
        gateways[inst["interface"]] = inst["gateway"]
        out.append(inst)
    ifaces = set(names.check_ifname(i, "interfaces entry") for i in interfaces or [])
    ifaces.update(gateways)
    return sorted(out, key=lambda i: i["id"]), sorted(ifaces), left_out


def render_snapshot(instances):
    return json.dumps({"format": SNAPSHOT_FORMAT, "instances": instances}, sort_keys=True, indent=1) + "\n"


def parse_snapshot(text):
    """The instances of a snapshot file (empty when unreadable: it is rewritten)."""
    if text is None:
        return []
    try:
        data = json.loads(text)
        return [i for i in data.get("instances") or [] if isinstance(i, dict) and "id" in i]
    except (ValueError, AttributeError):
        return []


def render_table(instances, interfaces, port):
    lines = ["table ip %s {" % TABLE, "  comment \"%s\"" % HEADER, "  set ifaces {", "    type ifname"]
    if interfaces:
        lines.append("    elements = { %s }" % ", ".join('"%s"' % i for i in interfaces))
    lines += ["  }", "  set instances {", "    type ifname . ipv4_addr . ether_addr"]
    if instances:
        lines.append("    elements = { %s }" % ",\n      ".join(
            '"%s" . %s . %s' % (i["interface"], i["private_ip"], i["mac"]) for i in instances))
    lines += [
        "  }",
        "  chain to_metadata {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        "    iifname @ifaces ip daddr %s tcp dport 80 redirect to :%d" % (METADATA_ADDRESS, port),
        "  }",
        "  chain metadata_guard {",
        "    type filter hook input priority filter; policy accept;",
        # only through the redirect, and only from an instance's own interface, address and MAC
        "    tcp dport %d iifname . ip saddr . ether saddr @instances ct original ip daddr %s accept"
        % (port, METADATA_ADDRESS),
        "    tcp dport %d counter drop" % port,
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def redact(inst):
    """An instance as a diff may show it: no user data, no keys."""
    out = dict(inst)
    data = inst.get("user_data")
    out["user_data"] = None if data is None else "(redacted: %d bytes)" % len(data.encode("utf-8"))
    out["public_keys"] = [{"name": k.get("name"), "key": "(redacted)"} for k in inst.get("public_keys") or []]
    return out


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (IOError, OSError, IndexError):
        return False


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().decode("utf-8", "replace").split("\0")[:-1]
    except (IOError, OSError):
        return None


def _listening(pid, port):
    """Whether the network namespace of ``pid`` has a TCP socket listening on ``port``."""
    try:
        with open("/proc/%d/net/tcp" % pid) as handle:
            rows = handle.read().splitlines()[1:]
    except (IOError, OSError):
        return False
    for row in rows:
        fields = row.split()
        if len(fields) > 3 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            return True
    return False


class Metadata:
    """The metadata service of one CC (one snapshot path)."""

    def __init__(self, snapshot=DEFAULT_SNAPSHOT, port=DEFAULT_PORT, listen=DEFAULT_LISTEN, namespace=None,
                 server_path=DEFAULT_SERVER_PATH, token_key=None, service_manager="none",
                 service_name=DEFAULT_SERVICE_NAME, supervisor_conf=None, supervisor_programs_dir=None,
                 systemd_units_dir=None, timeout=30.0):
        self.snapshot = snapshot
        self.dir = os.path.dirname(snapshot) or "."
        self.port = port
        self.listen = listen
        self.namespace = namespace
        self.server_path = server_path
        self.token_key = token_key or os.path.join(self.dir, KEY_FILE)
        self.timeout = timeout
        if not 1 <= port <= 65535 or port == 80:
            raise InvalidInput("port %d is not usable for the metadata daemon (1-65535, not 80)" % port)
        addressing.parse_address(listen, "listen")
        # run by the system's own Python (the daemon is a plain file the cc role installs, no #! line)
        self.argv = [PYTHON, server_path, "--snapshot", snapshot, "--listen", listen, "--port", str(port),
                     "--token-key", self.token_key]
        self.service = supervised.service(
            service_manager, service_name, in_namespace(self.argv, namespace),
            "EC2 metadata service of %s" % snapshot, supervisor_conf=supervisor_conf,
            supervisor_programs_dir=supervisor_programs_dir, systemd_units_dir=systemd_units_dir, timeout=timeout,
            log=os.path.join(self.dir, LOG_FILE))
        self.path = lambda name: os.path.join(self.dir, name)

    # ------------------------------------------------------------------ gather
    def _ours(self, pid):
        """Whether ``pid`` is our daemon (its command line names our server and snapshot)."""
        argv = _cmdline(pid)
        if not argv or not _alive(pid):
            return False
        return os.path.basename(self.server_path) in [os.path.basename(a) for a in argv] and \
            "--snapshot" in argv and argv[argv.index("--snapshot") + 1:][:1] == [self.snapshot]

    def _own_argv(self, argv):
        """``argv`` from the server on (whatever interpreter runs it)."""
        argv = list(argv or [])
        names = [os.path.basename(a) for a in argv]
        server = os.path.basename(self.server_path)
        return argv[names.index(server) + 1:] if server in names else argv

    def running(self):
        """(pid of our daemon or None, its argv)."""
        if self.service:
            _running, pid, _down = self.service.status()
        else:
            text = files.read_text(self.path(PID_FILE))
            pid = int(text.strip()) if text and text.strip().isdigit() else 0
        if pid and self._ours(pid):
            return pid, _cmdline(pid)
        return None, None

    def _table_loaded(self):
        rc, _out, _err = run(["nft", "-t", "list", "table", "ip", TABLE], namespace=self.namespace, check=False)
        return rc == 0

    def gather(self):
        self.files = {
            "snapshot": files.read_text(self.snapshot),
            "table": files.read_text(self.path(TABLE_FILE)),
            "service": self.service.read_definition() if self.service else None,
        }
        if self.files["table"] is not None and not self._table_loaded():
            self.files["table"] = None  # flushed or a new namespace: load it again
        self.pid, self.pid_argv = self.running()
        return parse_snapshot(self.files["snapshot"])

    # ------------------------------------------------------------------ plan
    def plan(self, instances, interfaces, present=True):
        """(commands, writes {what: text}, daemon action)."""
        commands, writes = [], {}
        if not present:
            for what, path in (("snapshot", self.snapshot), ("table", self.path(TABLE_FILE))):
                if self.files[what] is not None:
                    commands.append("remove %s" % path)
            if self.files["table"] is not None or self._table_loaded():
                commands.append("delete nft table ip %s" % TABLE)
            for path in (self.token_key, self.path(PID_FILE), self.path(LOG_FILE)):
                if os.path.lexists(path):
                    commands.append("remove %s" % path)
            action = STOP if (self.pid or self.files["service"] is not None) else NOTHING
            if action == STOP:
                commands.append("stop euca-metadata%s%s" % (" (pid %d)" % self.pid if self.pid else "",
                                                            " under %s" % self.service.describe() if self.service
                                                            else ""))
            return commands, writes, action
        snapshot = render_snapshot(instances)
        if snapshot != self.files["snapshot"]:
            writes["snapshot"] = snapshot
            commands.append("write %s (%d instances)" % (self.snapshot, len(instances)))
        table = render_table(instances, interfaces, self.port)
        if table != self.files["table"]:
            writes["table"] = table
            commands.append("load nft table ip %s: %s:80 on %s to port %d, %d instances admitted"
                            % (TABLE, METADATA_ADDRESS, ", ".join(interfaces) or "no interface", self.port,
                               len(instances)))
        via = " under %s" % self.service.describe() if self.service else ""
        if self.service:
            definition = self.service.render()
            if definition != self.files["service"]:
                writes["service"] = definition
                commands.append("write %s" % self.service.definition_path)
        if not self.pid:
            action = START
            commands.append("start euca-metadata%s" % (via or ": " + " ".join(self.argv)))
        elif "service" in writes or (not self.service and self._own_argv(self.pid_argv) != self._own_argv(self.argv)):
            action = RESTART
            commands.append("restart euca-metadata (pid %d)%s: its command changed" % (self.pid, via))
        else:
            action = NOTHING
        return commands, writes, action

    # ------------------------------------------------------------------ apply
    def apply(self, writes, action):
        if "snapshot" in writes:
            files.write_atomic(self.snapshot, writes["snapshot"], 0o600)
        if "table" in writes:
            table = "table ip %s" % TABLE
            try:
                run(["nft", "-f", "-"], namespace=self.namespace,
                    data="add %s\ndelete %s\n%s" % (table, table, writes["table"]))
            except CommandFailed as exc:
                raise EucaError("cannot load the metadata table ip %s: %s" % (TABLE, exc.msg))
            files.write_atomic(self.path(TABLE_FILE), writes["table"], 0o600)
        old = self.pid
        if action == START or action == RESTART:
            if not os.path.isfile(self.server_path):
                raise EucaError("the metadata daemon %s is missing (roles/cc installs it)" % self.server_path)
            if self.service:
                if "service" in writes:
                    self.service.write()
                    self.service.load()
                elif action == RESTART:
                    self.service.restart()
                else:
                    self.service.start()
            else:
                if old:
                    self._kill(old)
                self._spawn()
            self.pid = self._wait_up(old)

    def _spawn(self):
        if not os.path.isdir(self.dir):
            os.makedirs(self.dir, 0o700)
        logf = open(self.path(LOG_FILE), "ab")
        try:
            proc = subprocess.Popen(in_namespace(self.argv, self.namespace), stdin=subprocess.DEVNULL,
                                    stdout=logf, stderr=logf, start_new_session=True, close_fds=True)
        except OSError as exc:
            raise EucaError("cannot start %s: %s" % (self.server_path, exc))
        finally:
            logf.close()
        files.write_atomic(self.path(PID_FILE), "%d\n" % proc.pid, 0o644)

    def _wait_up(self, old):
        deadline = time.time() + self.timeout
        while True:
            pid, _argv = self.running()
            if pid and pid != old and _listening(pid, self.port):
                return pid
            if time.time() > deadline:
                raise EucaError("the metadata daemon did not listen on port %d within %ss%s: %s"
                                % (self.port, self.timeout, " under %s" % self.service.describe()
                                   if self.service else "", self._tail()))
            time.sleep(0.05)

    def _tail(self):
        text = files.read_text(self.path(LOG_FILE)) or ""
        return " | ".join(text.strip().splitlines()[-5:]) or "(no log)"

    def _kill(self, pid):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return
        deadline = time.time() + self.timeout
        while _alive(pid):
            if time.time() > deadline:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def remove(self):
        if self.service:
            self.service.remove()  # the definition goes first: nothing brings it back
        if self.pid and self._ours(self.pid):
            self._kill(self.pid)
        run(["nft", "delete", "table", "ip", TABLE], namespace=self.namespace, check=False)
        for path in (self.snapshot, self.path(TABLE_FILE), self.token_key, self.path(PID_FILE),
                     self.path(LOG_FILE)):
            _unlink(path)
        self.pid = None
