# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DHCP for every tenant segment of a cluster: one dnsmasq, configured by files.

The seed's dhcpd broke beyond 23 tenants because every interface went on its command
line (Hack1). Here the command line is only ``dnsmasq --conf-file=<state_dir>/dnsmasq.conf``
whatever the number of segments: interfaces, static ranges and options live in the
configuration file and the MAC -> IP reservations in one hosts file next to it.

Applying a change writes the new files beside the old ones and renames them over (an
atomic swap per file), then:

- only reservations changed: SIGHUP (dnsmasq re-reads its hosts file, ~90 ms for 10k);
- interfaces, ranges or options changed: restart (SIGHUP does not re-read ``dhcp-range``;
  a start costs ~17 ms and the lease file carries the leases over);
- dnsmasq is not running: start it.

With a ``service_manager`` (systemd where systemd is PID 1, supervisord otherwise: see
module_utils/supervised.py) dnsmasq runs in the foreground as that manager's program
(``euca-dhcp`` by default) and comes back by itself within about a second after kill -9;
start, restart and stop go through the manager, and the program's definition is one more
file of ours (a changed one restarts dnsmasq). SIGHUP stays ours: it is sent to the pid
that the checks below accept. With ``none`` the module starts dnsmasq itself (it forks;
nothing restarts it), as before.

Shards: dnsmasq's cost per packet is (addresses in the namespace) x (its ranges) - it walks
every range for each address of a netlink dump it makes per packet - about 0.1-0.3 s at 4,000
segments, so after a restart one dnsmasq needs tens of minutes to lease 4,000 instances again
(bench/dhcp_restart.py, P14). With ``shards`` k > 1, segment i is served by shard i mod k, a
dnsmasq of its own (``dnsmasq-<j>.conf``, ``hosts-<j>``, ``leases-<j>``, program
``<service_name>-<j>``) listening on UDP ``shard_port + j``; one nft table ``ip euca_dhcp``
in the namespace rewrites the destination port 67 of each segment's interface to its shard's
port (a map by incoming interface, stateless: broadcasts and unicast renewals alike) and the
shards' source port back to 67 on the way out. Several dnsmasq cannot simply share port 67:
with bind-interfaces they share it by SO_REUSEPORT, which hands a unicast renewal to a random
one of them. k defaults to one per 64 segments rounded up to a power of two (1 up to 64).

Only the pid in our pid file is ever signalled, and only after ``/proc/<pid>/cmdline``
shows it is dnsmasq running our configuration file (in the expected network namespace).

Ranges are static (``dhcp-range=set:seg<id>,<network>,static,<mask>,<lease>``): only
reserved MACs get an address, which also spares dnsmasq its ~3 s ping check.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import re
import signal
import socket
import stat
import struct
import subprocess
import time

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, EucaError, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.model import addressing, names
from ansible_collections.euca.cloud.plugins.module_utils.net.config import Resource
from ansible_collections.euca.cloud.plugins.module_utils.process import NETNS_DIR, CommandFailed, in_namespace, run
from ansible_collections.euca.cloud.plugins.module_utils import files, supervised

DEFAULT_STATE_DIR = "/var/lib/euca/dhcp"
DEFAULT_LEASE_TIME = "1h"
# dnsmasq's own default (1000) would stop serving at the 1001st instance of a cluster.
DEFAULT_MAX_LEASES = 65536
DEFAULT_SERVICE_NAME = "euca-dhcp"
# shards: dnsmasq walks all its ranges for every address in the namespace, per packet, so one
# dnsmasq for thousands of segments answers a packet in a fraction of a second; k of them, each
# for 1/k of the segments on its own UDP port (shard_port + i), share that cost k ways.
DEFAULT_SHARD_PORT = 10067
MAX_SHARDS = 256
AUTO_SHARDS = 0
SEGMENTS_PER_SHARD = 64
STEERING_TABLE = "euca_dhcp"
STEERING_FILE = "steering.nft"
_SHARD_CONF = re.compile(r"^dnsmasq-(\d+)\.conf$")

CONF_FILE = "dnsmasq.conf"
HOSTS_FILE = "hosts"
LEASE_FILE = "leases"
PID_FILE = "dnsmasq.pid"
LOG_FILE = "dnsmasq.log"
GENERATION_FILE = "generation"
# not in state_dir: the service manager's definition of our dnsmasq (a unit or program file)
SERVICE = "service"
# every file of ours in state_dir; `deleted` removes exactly these
OWN_FILES = (CONF_FILE, HOSTS_FILE, LEASE_FILE, PID_FILE, LOG_FILE, GENERATION_FILE)

HEADER = "# Managed by euca.cloud.dhcp: edits are overwritten on the next apply."
SEGMENT_MARK = "# segment "

IFNAMSIZ = names.IFNAMSIZ
# what the kernel accepts and dnsmasq's comma/equals syntax cannot misread
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z", re.IGNORECASE)
_DOMAIN = re.compile(r"^(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\Z",
                     re.IGNORECASE)
_LEASE_TIME = re.compile(r"^(infinite|[0-9]+[smhdw]?)\Z")
_LEASE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# dnsmasq refuses leases shorter than two minutes
MIN_LEASE_SECONDS = 120
SEGMENT_FIELDS = ("id", "interface", "subnet", "gateway", "dns_servers", "domain", "lease_time", "hosts")

# what apply does to the daemon
START, RESTART, RELOAD, STOP, NOTHING = "start", "restart", "reload", "stop", "none"
# files of a dnsmasq that does not run are removed (nothing to signal); reported as none
CLEAN = "clean"


def _ipv4_int(text):
    # Thousands of reservations are parsed on every run; netaddr costs ~8 us per address,
    # inet_pton ~0.3 us and is just as strict (no "10.1" shorthand).
    return struct.unpack("!I", socket.inet_pton(socket.AF_INET, text))[0]


def _ipv4_text(value):
    return socket.inet_ntop(socket.AF_INET, struct.pack("!I", value))


def tag(segment_id):
    """The dnsmasq tag of a segment's range and options (``seg<id>``)."""
    return "seg%d" % segment_id


def interface_name(segment_id):
    """The default interface of a segment: its bridge ``eubr-<id>`` (ARCHITECTURE §5)."""
    return "eubr-%d" % segment_id


def lease_seconds(text):
    """Seconds in a dnsmasq lease time (``3600``, ``45m``, ``1h``, ``2d``); None for infinite."""
    if text == "infinite":
        return None
    unit = text[-1]
    if unit in _LEASE_UNITS:
        return int(text[:-1]) * _LEASE_UNITS[unit]
    return int(text)


def normalize_mac(text, what):
    """A MAC as dnsmasq and the ledger write it (lower case, colons); InvalidInput otherwise."""
    try:
        mac = names.normalize_mac(str(text or ""))
    except InvalidInput:
        raise InvalidInput("%s: mac %r is not a MAC address (expected e.g. 52:54:00:12:34:56)" % (what, text))
    first = int(mac[:2], 16)
    if first & 1:
        raise InvalidInput("%s: mac %s is a multicast address; an instance NIC needs a unicast MAC" % (what, mac))
    if mac == "00:00:00:00:00:00":
        raise InvalidInput("%s: mac 00:00:00:00:00:00 is not a usable MAC address" % what)
    return mac


def _segment_id(raw):
    value = raw.get("id")
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value))
        except (TypeError, ValueError):
            raise InvalidInput("DHCP segment id %r is not an integer (the segment's VLAN tag or VNI)" % (raw.get("id"),))
    if value < 0:
        raise InvalidInput("DHCP segment id %d is negative; use the segment's VLAN tag or VNI" % value)
    return value


def _normalize_hosts(seg, what, network, gateway_int, hosts):
    out = []
    seen_macs = set()
    seen_ips = {}
    first, last = network.first, network.last
    for raw in hosts or []:
        if not isinstance(raw, dict):
            raise InvalidInput("%s: each host must be a dict with mac, ip and hostname, not %r" % (what, raw))
        unknown = set(raw) - set(("mac", "ip", "hostname"))
        if unknown:
            raise InvalidInput("%s: host %r has unknown field(s) %s" % (what, raw, ", ".join(sorted(unknown))))
        mac = normalize_mac(raw.get("mac"), what)
        host = "%s host %s" % (what, mac)
        ip_text = str(raw.get("ip") or "").strip()
        try:
            ip = _ipv4_int(ip_text)
        except (OSError, ValueError):
            raise InvalidInput("%s: ip %r is not an IPv4 address" % (host, raw.get("ip")))
        if not first < ip < last or ip == gateway_int:
            why = ("outside the subnet %s" % seg["subnet"]) if not first <= ip <= last else (
                "the gateway" if ip == gateway_int else "the subnet's network or broadcast address")
            raise InvalidInput("%s: ip %s is %s; reserve a free host address of %s"
                               % (host, ip_text, why, seg["subnet"]))
        if mac in seen_macs:
            raise InvalidInput("%s: mac %s is reserved twice; a MAC gets one address" % (what, mac))
        if ip in seen_ips:
            raise InvalidInput("%s: ip %s is reserved for both %s and %s; give each MAC its own address"
                               % (what, _ipv4_text(ip), seen_ips[ip], mac))
        seen_macs.add(mac)
        seen_ips[ip] = mac
        hostname = raw.get("hostname")
        if hostname is not None:
            hostname = str(hostname).strip()
            if not _HOSTNAME.match(hostname):
                raise InvalidInput("%s: hostname %r is not a DNS label (letters, digits and '-', at most 63)"
                                   % (host, raw.get("hostname")))
        out.append((ip, {"mac": mac, "ip": _ipv4_text(ip), "hostname": hostname}))
    out.sort(key=lambda pair: pair[0])
    return [h for _ip, h in out]


def normalize_segment(raw, partial=False):
    """One segment as the module works with it: defaults filled, addresses and MACs in
    canonical form, reservations sorted by address. ``partial`` (state deleted) only needs
    the id. Raises InvalidInput naming the segment and the field."""
    if not isinstance(raw, dict):
        raise InvalidInput("each DHCP segment must be a dict with id, interface, subnet, gateway, hosts; not %r" % (raw,))
    unknown = set(raw) - set(SEGMENT_FIELDS)
    if unknown:
        raise InvalidInput("DHCP segment %s: unknown field(s) %s" % (raw.get("id"), ", ".join(sorted(unknown))))
    seg_id = _segment_id(raw)
    what = "DHCP segment %d" % seg_id
    if partial:
        return {"id": seg_id}
    interface = raw.get("interface")
    interface = interface_name(seg_id) if interface in (None, "") else str(interface)
    if not names.is_ifname(interface):
        raise InvalidInput("%s: interface %r is not a usable interface name (1-%d characters, no '/' or spaces)"
                           % (what, interface, IFNAMSIZ))
    if raw.get("subnet") in (None, ""):
        raise InvalidInput("%s: subnet is required (the segment's private CIDR, e.g. 10.0.10.0/24)" % what)
    network = addressing.parse_network(raw["subnet"], "%s: subnet" % what)
    if network.prefixlen > 30:
        raise InvalidInput("%s: subnet %s leaves no address for an instance beside the gateway; use /30 or wider"
                           % (what, network))
    seg = {"id": seg_id, "interface": interface, "subnet": str(network.cidr)}
    if raw.get("gateway") in (None, ""):
        raise InvalidInput("%s: gateway is required (the CC's address on the segment, e.g. %s)"
                           % (what, addressing.gateway(network)))
    gateway = addressing.parse_address(raw["gateway"], "%s: gateway" % what)
    if not network.first < int(gateway) < network.last:
        raise InvalidInput("%s: gateway %s is not a host address of its subnet %s" % (what, gateway, network))
    seg["gateway"] = str(gateway)
    servers = raw.get("dns_servers") or []
    if isinstance(servers, str):
        servers = [servers]
    seg["dns_servers"] = [str(addressing.parse_address(s, "%s: dns_servers entry" % what)) for s in servers]
    domain = raw.get("domain")
    if domain not in (None, ""):
        domain = str(domain).strip().rstrip(".")
        if not _DOMAIN.match(domain):
            raise InvalidInput("%s: domain %r is not a DNS domain name" % (what, raw.get("domain")))
        seg["domain"] = domain
    else:
        seg["domain"] = None
    lease = str(raw.get("lease_time") or DEFAULT_LEASE_TIME).strip()
    if not _LEASE_TIME.match(lease):
        raise InvalidInput("%s: lease_time %r is not a dnsmasq lease time (seconds, or 45m, 1h, 2d, 1w, infinite)"
                           % (what, raw.get("lease_time")))
    seconds = lease_seconds(lease)
    if seconds is not None and seconds < MIN_LEASE_SECONDS:
        raise InvalidInput("%s: lease_time %s is shorter than dnsmasq's minimum of 2 minutes" % (what, lease))
    seg["lease_time"] = lease
    seg["hosts"] = _normalize_hosts(seg, what, network, int(gateway), raw.get("hosts"))
    return seg


def check_segments(segments):
    """Rules across segments, for the set dnsmasq will serve: one segment per interface,
    subnets that do not overlap, every MAC and address reserved once. Linear in the number
    of reservations (plus a sort of the subnets)."""
    interfaces = {}
    macs = {}
    ips = {}
    spans = []
    for seg in segments:
        if "subnet" not in seg:  # a partial item (state deleted) has nothing else to check
            continue
        other = interfaces.setdefault(seg["interface"], seg["id"])
        if other != seg["id"]:
            raise InvalidInput("DHCP segments %s and %s are both on interface %s; each segment has its own bridge"
                               % (other, seg["id"], seg["interface"]))
        network = addressing.netaddr.IPNetwork(seg["subnet"])
        spans.append((network.first, network.last, seg["id"], seg["subnet"]))
        for host in seg["hosts"]:
            other = macs.setdefault(host["mac"], seg["id"])
            if other != seg["id"]:
                raise InvalidInput("mac %s is reserved in DHCP segments %s and %s; an instance NIC is on one segment"
                                   % (host["mac"], other, seg["id"]))
            other = ips.setdefault(host["ip"], seg["id"])
            if other != seg["id"]:
                raise InvalidInput("ip %s is reserved in DHCP segments %s and %s" % (host["ip"], other, seg["id"]))
    spans.sort()
    for prev, cur in zip(spans, spans[1:]):
        if cur[0] <= prev[1]:
            raise InvalidInput("DHCP segments %s (%s) and %s (%s) have overlapping subnets; dnsmasq could not "
                               "tell which one a request belongs to" % (prev[2], prev[3], cur[2], cur[3]))


def shard_files(index=None):
    """The file names of one dnsmasq: the plain names for the only one (``index`` None),
    ``dnsmasq-<i>.conf``, ``hosts-<i>``, ... for shard i of several."""
    if index is None:
        return {"conf": CONF_FILE, "hosts": HOSTS_FILE, "leases": LEASE_FILE, "pid": PID_FILE, "log": LOG_FILE}
    return {"conf": "dnsmasq-%d.conf" % index, "hosts": "hosts-%d" % index, "leases": "leases-%d" % index,
            "pid": "dnsmasq-%d.pid" % index, "log": "dnsmasq-%d.log" % index}


def render_conf(segments, state_dir, max_leases=DEFAULT_MAX_LEASES, user=None, index=None, port=None):
    """The dnsmasq configuration file serving ``segments`` (normalized, sorted by id); shard
    ``index`` of several listens on UDP ``port`` (the steering table sends its segments there)."""
    path = os.path.join
    names = shard_files(index)
    lines = [
        HEADER,
        # DHCP only: DNS stays with whatever the cloud uses
        "port=0",
        "no-resolv",
        "no-hosts",
        "except-interface=lo",
        "dhcp-authoritative",
        "dhcp-lease-max=%d" % max_leases,
        "dhcp-leasefile=%s" % path(state_dir, names["leases"]),
        "dhcp-hostsfile=%s" % path(state_dir, names["hosts"]),
        "pid-file=%s" % path(state_dir, names["pid"]),
        "log-facility=%s" % path(state_dir, names["log"]),
    ]
    if port is not None:
        # replies go to the clients' port 68; the steering table turns their source port back into 67
        lines.append("dhcp-alternate-port=%d,68" % port)
    if user:
        lines.append("user=%s" % user)
    for seg in segments:
        network = addressing.netaddr.IPNetwork(seg["subnet"])
        name = tag(seg["id"])
        lines.append("%s%d" % (SEGMENT_MARK, seg["id"]))
        lines.append("interface=%s" % seg["interface"])
        lines.append("dhcp-range=set:%s,%s,static,%s,%s" % (name, network.network, network.netmask, seg["lease_time"]))
        lines.append("dhcp-option=tag:%s,option:router,%s" % (name, seg["gateway"]))
        if seg["dns_servers"]:
            lines.append("dhcp-option=tag:%s,option:dns-server,%s" % (name, ",".join(seg["dns_servers"])))
        if seg["domain"]:
            lines.append("dhcp-option=tag:%s,option:domain-name,%s" % (name, seg["domain"]))
    return "\n".join(lines) + "\n"


def render_hosts(segments):
    """The reservations file (dhcp-hostsfile syntax), grouped by segment."""
    lines = [HEADER]
    for seg in segments:
        lines.append("%s%d" % (SEGMENT_MARK, seg["id"]))
        for host in seg["hosts"]:
            if host["hostname"]:
                lines.append("%s,%s,%s" % (host["mac"], host["ip"], host["hostname"]))
            else:
                lines.append("%s,%s" % (host["mac"], host["ip"]))
    return "\n".join(lines) + "\n"


def _segment_mark(line):
    if line.startswith(SEGMENT_MARK):
        try:
            return int(line[len(SEGMENT_MARK):])
        except ValueError:
            return None
    return None


def parse_files(conf_text, hosts_text):
    """The segments that our configuration and hosts files describe (the inverse of the
    renderers). Lenient: what it cannot read is left out, and because apply compares the
    files' text with the rendered text, anything edited by hand gets rewritten."""
    segments = {}
    current = None
    for line in (conf_text or "").splitlines():
        mark = _segment_mark(line)
        if mark is not None:
            current = segments.setdefault(mark, {
                "id": mark, "interface": None, "subnet": None, "gateway": None, "dns_servers": [],
                "domain": None, "lease_time": None, "hosts": [],
            })
            continue
        if current is None or "=" not in line:
            continue
        name, value = line.split("=", 1)
        if name == "interface":
            current["interface"] = value
        elif name == "dhcp-range":
            parts = value.split(",")
            if len(parts) == 5 and parts[2] == "static":
                try:
                    network = addressing.netaddr.IPNetwork("%s/%s" % (parts[1], parts[3]))
                    current["subnet"] = str(network.cidr)
                except (addressing.netaddr.AddrFormatError, ValueError):
                    pass
                current["lease_time"] = parts[4]
        elif name == "dhcp-option":
            parts = value.split(",")
            if len(parts) >= 3:
                option = parts[1]
                if option == "option:router":
                    current["gateway"] = parts[2]
                elif option == "option:dns-server":
                    current["dns_servers"] = parts[2:]
                elif option == "option:domain-name":
                    current["domain"] = parts[2]
    current = None
    for line in (hosts_text or "").splitlines():
        mark = _segment_mark(line)
        if mark is not None:
            current = segments.get(mark)
            continue
        if current is None or not line or line.startswith("#"):
            continue
        parts = line.split(",")
        if len(parts) in (2, 3):
            current["hosts"].append({"mac": parts[0], "ip": parts[1], "hostname": parts[2] if len(parts) == 3 else None})
    return [segments[k] for k in sorted(segments)]


def _namespace_inode(namespace):
    path = os.path.join(NETNS_DIR, namespace) if namespace else "/proc/self/ns/net"
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _alive(pid):
    """True while pid exists and is not a zombie (a zombie has let go of its sockets)."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (IOError, OSError, IndexError):
        return False


class Shard:
    """One dnsmasq of ours: its files in state_dir, its program under the service manager, its pid."""

    def __init__(self, owner, index):
        self.owner = owner
        # None: the only dnsmasq (plain file names, port 67, program <service_name>)
        self.index = index
        self.names = shard_files(index)
        self.port = None if index is None else owner.shard_port + index
        self.label = "dnsmasq" if index is None else "dnsmasq shard %d" % index
        self.files = {}
        self.pid = None
        self.service = supervised.service(
            owner.service_manager, owner.service_name if index is None else "%s-%d" % (owner.service_name, index),
            in_namespace([owner.dnsmasq, "--keep-in-foreground", "--conf-file=%s" % self.conf_path], owner.namespace),
            "DHCP (%s) of %s" % (self.label, owner.state_dir), supervisor_conf=owner.supervisor_conf,
            supervisor_programs_dir=owner.supervisor_programs_dir, systemd_units_dir=owner.systemd_units_dir,
            timeout=owner.start_timeout)

    def path(self, name):
        """Absolute path of one of its files, by role (conf, hosts, leases, pid, log; service: the definition)."""
        if name == SERVICE:
            return self.service.definition_path
        return os.path.join(self.owner.state_dir, self.names[name])

    @property
    def conf_path(self):
        return self.path("conf")

    def command(self):
        """dnsmasq's complete command line without a manager: nothing per segment on it (Hack1)."""
        return [self.owner.dnsmasq, "--conf-file=%s" % self.conf_path]

    def own_paths(self):
        """Every file of this dnsmasq that exists (what a stop removes)."""
        out = [self.path(n) for n in ("conf", "hosts", "leases", "pid", "log") if os.path.lexists(self.path(n))]
        if self.files.get(SERVICE) is not None:
            out.append(self.path(SERVICE))
        return out

    def gather(self):
        self.files = {"conf": files.read_text(self.path("conf")), "hosts": files.read_text(self.path("hosts")),
                      SERVICE: self.service.read_definition() if self.service else None}
        self.pid = self.running_pid()
        return parse_files(self.files["conf"], self.files["hosts"])

    def running_pid(self):
        """The pid of this dnsmasq (from its pid file), or None when it is not running.

        The pid counts only when /proc/<pid>/cmdline is dnsmasq with our configuration
        file; a stale pid file (a reused pid) is ignored, never signalled. Our dnsmasq in
        another network namespace is a Conflict: two cannot serve from one state_dir."""
        text = files.read_text(self.path("pid"))
        if not text or not text.strip().isdigit():
            return None
        pid = int(text.strip())
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                argv = handle.read().decode("utf-8", "replace").split("\0")
        except (IOError, OSError):
            return None
        program = os.path.basename(argv[0]) if argv else None
        if program not in ("dnsmasq", os.path.basename(self.owner.dnsmasq)) or \
                "--conf-file=%s" % self.conf_path not in argv[1:]:
            return None
        if not _alive(pid):
            return None
        try:
            inode = os.stat("/proc/%d/ns/net" % pid).st_ino
        except OSError:
            return None
        if inode != _namespace_inode(self.owner.namespace):
            raise Conflict(
                "dnsmasq pid %d serves %s from another network namespace than %s; stop it or use another state_dir"
                % (pid, self.owner.state_dir, self.owner.namespace or "the host's")
            )
        return pid

    # ------------------------------------------------------------------ decide, describe
    def decide(self, segments):
        """(writes {role: text}, daemon action) to serve ``segments`` (none: stop)."""
        if not segments:
            if self.pid or self.files.get(SERVICE) is not None:
                return {}, STOP
            # files without a daemon: removed, and nothing is signalled
            return {}, (CLEAN if self.own_paths() else NOTHING)
        owner = self.owner
        wanted = {
            "conf": render_conf(segments, owner.state_dir, owner.max_leases, owner.user, self.index, self.port),
            "hosts": render_hosts(segments),
        }
        if self.service:
            wanted[SERVICE] = self.service.render()
        writes = dict((name, text) for name, text in wanted.items() if self.files.get(name) != text)
        if not self.pid:
            action = START
        elif "conf" in writes or SERVICE in writes:
            action = RESTART
        elif "hosts" in writes:
            action = RELOAD
        else:
            action = NOTHING
        return writes, action

    def commands(self, writes, action):
        out = ["write %s" % self.path(name) for name in ("hosts", "conf", SERVICE) if name in writes]
        via = (" under %s" % self.service.describe()) if self.service else ""
        if action == START:
            out.append(("start %s%s" % (self.label, via)) if self.service else ("start %s" % " ".join(self.command())))
        elif action == RESTART:
            why = "its service definition" if SERVICE in writes and "conf" not in writes else \
                "segments, ranges or options"
            out.append("restart %s (pid %d)%s: %s changed" % (self.label, self.pid, via, why))
        elif action == RELOAD:
            out.append("reload %s (SIGHUP pid %d): reservations changed" % (self.label, self.pid))
        elif action == CLEAN:
            out.extend("remove %s" % path for path in self.own_paths())
        elif action == STOP:
            out.extend("remove %s" % path for path in self.own_paths())
            out.append(("stop %s (pid %d)%s" % (self.label, self.pid, via)) if self.pid else
                       ("stop %s%s" % (self.label, via)))
        return out

    # ------------------------------------------------------------------ apply
    def stage(self, writes):
        """The new files beside the old ones (checked by the caller before any replaces an old one)."""
        staged = {}
        try:
            for name, text in writes.items():
                staged[name] = _stage(self.path(name), text)
        except Exception:
            for tmp in staged.values():
                _unlink_quietly(tmp)
            raise
        return staged

    def swap(self, staged):
        """Rename the staged files over the old ones."""
        for name in ("hosts", "conf", SERVICE):
            if name in staged:
                os.rename(staged.pop(name), self.path(name))

    def reload(self):
        """SIGHUP to our dnsmasq (its pid passed the checks of running_pid): it re-reads its hosts file."""
        os.kill(self.pid, signal.SIGHUP)

    def stop_and_remove(self):
        if self.service:
            # the definition goes first, so the manager cannot bring dnsmasq back
            self.service.remove()
        if self.pid and _alive(self.pid):
            self._stop(self.pid)
        for path in self.own_paths():
            try:
                os.unlink(path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise EucaError("cannot remove %s: %s" % (path, exc))
        self.pid = None

    def _stop(self, pid):
        os.kill(pid, signal.SIGTERM)
        self._wait_gone(pid)

    def _wait_gone(self, pid):
        deadline = time.time() + self.owner.stop_timeout
        while _alive(pid):
            if time.time() > deadline:
                raise EucaError("%s pid %d did not exit within %ss of SIGTERM; see %s"
                                % (self.label, pid, self.owner.stop_timeout, self.path("log")))
            time.sleep(0.005)


class Dhcp(Resource):
    """The DHCP configuration of one CC: every segment's range, options and reservations,
    served by one dnsmasq (or ``shards`` of them, segment i by shard i mod shards) whose files
    live in ``state_dir``."""

    noun = "DHCP segment"
    key = "id"
    # reservations come from the ledger: an older job must not roll back a newer one
    generations = True

    def __init__(self, state_dir=DEFAULT_STATE_DIR, namespace=None, dnsmasq="dnsmasq", user=None,
                 max_leases=DEFAULT_MAX_LEASES, partial=False, generation=None, stop_timeout=10.0,
                 service_manager=supervised.NONE, service_name=DEFAULT_SERVICE_NAME, supervisor_conf=None,
                 supervisor_programs_dir=None, systemd_units_dir=None, start_timeout=30.0, shards=1,
                 shard_port=DEFAULT_SHARD_PORT):
        self.state_dir = os.path.abspath(state_dir or DEFAULT_STATE_DIR)
        self.namespace = namespace
        self.dnsmasq = dnsmasq or "dnsmasq"
        self.user = user
        self.max_leases = DEFAULT_MAX_LEASES if max_leases is None else int(max_leases)
        if self.max_leases < 1:
            raise InvalidInput("max_leases must be at least 1, not %d" % self.max_leases)
        if user is not None and not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z", user):
            raise InvalidInput("user %r is not a user name" % (user,))
        # 0: chosen from the number of segments (see auto_shards)
        self.shards_wanted = AUTO_SHARDS if shards is None else int(shards)
        if not 0 <= self.shards_wanted <= MAX_SHARDS:
            raise InvalidInput("shards must be between 0 (auto) and %d, not %d" % (MAX_SHARDS, self.shards_wanted))
        self.shard_port = int(shard_port or DEFAULT_SHARD_PORT)
        most = self.shards_wanted or MAX_SHARDS
        if not 1024 <= self.shard_port <= 65535 - most:
            raise InvalidInput("shard_port %d leaves no room for %d shards below 65536 (use 1024 or above)"
                               % (self.shard_port, most))
        # state deleted names segments by id only
        self.partial = partial
        # the ledger generation this run applies (converge() is given the same one)
        self.generation = generation
        self.stop_timeout = stop_timeout
        self.start_timeout = start_timeout
        self.service_manager = service_manager
        self.service_name = service_name or DEFAULT_SERVICE_NAME
        self.supervisor_conf = supervisor_conf
        self.supervisor_programs_dir = supervisor_programs_dir
        self.systemd_units_dir = systemd_units_dir
        # the manager of the only dnsmasq (None: we start dnsmasq ourselves)
        self.service = Shard(self, None).service
        # what gather found: the generation, every dnsmasq of ours on disk, the steering table
        self.applied_generation = None
        self.found = []
        self.steering = None
        # the dnsmasq of the wanted layout (set by plan, from the number of segments): the only one, or shards 0..k-1
        self.shards = 1
        self.layout = []
        self.pid = None
        self.action = NOTHING
        self.actions = {}

    # ------------------------------------------------------------------ paths
    def path(self, name):
        """Absolute path of one of our files in state_dir (SERVICE: the only dnsmasq's program definition)."""
        if name == SERVICE:
            return self.service.definition_path
        return os.path.join(self.state_dir, name)

    @property
    def conf_path(self):
        """The configuration file the only dnsmasq is started with (the whole command line)."""
        return Shard(self, None).conf_path

    def command(self):
        """dnsmasq's complete command line: nothing per segment on it (Hack1)."""
        return Shard(self, None).command()

    def shard_of(self, segment_id):
        """The dnsmasq of the wanted layout that serves a segment."""
        return self.layout[segment_id % self.shards]

    def set_layout(self, count, look=True):
        """The wanted dnsmasq for ``count`` segments: the ones found on disk where they fit, new ones otherwise."""
        self.shards = self.shards_wanted or auto_shards(count)
        found = dict((shard.index, shard) for shard in self.found)
        indexes = [None] if self.shards == 1 else list(range(self.shards))
        self.layout = []
        for index in indexes:
            shard = found.get(index)
            if shard is None:
                shard = Shard(self, index)
                if look:
                    shard.gather()
                self.found.append(shard)
            self.layout.append(shard)

    # ------------------------------------------------------------------ validate
    def validate(self, items):
        segments = [normalize_segment(raw, partial=self.partial) for raw in items]
        seen = set()
        for seg in segments:
            if seg["id"] in seen:
                raise InvalidInput("DHCP segment %d is given twice" % seg["id"])
            seen.add(seg["id"])
        check_segments(segments)
        return sorted(segments, key=lambda s: s["id"])

    # ------------------------------------------------------------------ gather
    def _on_disk(self):
        """Every dnsmasq of ours whose files or program definition are here."""
        indexes = set()
        if os.path.isdir(self.state_dir):
            for name in os.listdir(self.state_dir):
                match = _SHARD_CONF.match(name)
                if match:
                    indexes.add(int(match.group(1)))
                elif name == CONF_FILE:
                    indexes.add(None)
        if self.service_manager != supervised.NONE:
            # a program of ours whose files went: still ours to stop
            probe = Shard(self, None).service
            directory = os.path.dirname(probe.definition_path)
            if os.path.isdir(directory):
                pattern = re.compile(r"^%s(?:-(\d+))?\.(?:conf|service)$" % re.escape(self.service_name))
                for name in os.listdir(directory):
                    match = pattern.match(name)
                    if match:
                        indexes.add(int(match.group(1)) if match.group(1) else None)
        return [Shard(self, i) for i in sorted(indexes, key=lambda i: -1 if i is None else i)]

    def gather(self):
        generation = (files.read_text(self.path(GENERATION_FILE)) or "").strip()
        self.applied_generation = int(generation) if generation.isdigit() else None
        self.found = self._on_disk()
        by_id = {}
        for shard in self.found:
            for seg in shard.gather():
                if seg["id"] in by_id:
                    continue  # a leftover shard's copy; the rewrite drops it
                try:
                    by_id[seg["id"]] = normalize_segment(seg)
                except InvalidInput:
                    # edited by hand beyond repair: not ours any more; the rewrite drops it
                    continue
        self.steering = files.read_text(self.path(STEERING_FILE))
        if self.steering is not None and not self._steering_loaded():
            self.steering = None  # the table is gone (a flushed ruleset, a new namespace): load it again
        self.pid = next((shard.pid for shard in self.found if shard.pid), None)
        return [by_id[k] for k in sorted(by_id)], self.applied_generation

    def running_pid(self):
        """The pid of the only dnsmasq, or None; see Shard.running_pid."""
        return Shard(self, None).running_pid()

    def _steering_loaded(self):
        rc, out, _err = run(["nft", "-t", "list", "table", "ip", STEERING_TABLE], namespace=self.namespace,
                            check=False)
        return rc == 0

    # ------------------------------------------------------------------ plan
    def _decide(self, after):
        """(per-dnsmasq [(shard, writes, action)], state_dir writes {name: text}, removes, steering
        text or None, steering change): the one decision that both plan (to show) and apply (to do) use."""
        generation = self.applied_generation if self.generation is None else self.generation
        self.set_layout(len(after or []))
        groups = dict((id(s), []) for s in self.found)
        if after:
            for seg in after:
                groups[id(self.shard_of(seg["id"]))].append(seg)
        per = []
        for shard in self.found:
            writes, action = shard.decide(groups[id(shard)])
            per.append((shard, writes, action))
        writes, remove = {}, []
        if not after:
            remove = [name for name in (GENERATION_FILE, STEERING_FILE) if os.path.lexists(self.path(name))]
            steering = None
        else:
            steering = render_steering(after, self) if self.shards > 1 else None
            if generation is not None and generation != self.applied_generation:
                writes[GENERATION_FILE] = "%d\n" % generation
        steer_change = steering != self.steering
        return per, writes, remove, steering, steer_change

    def plan(self, before, after, force=False):
        check_segments(after)
        if after:
            self._check_readable()
        # ``force`` (same items, newer ledger generation) needs nothing of its own: the
        # generation to record is known from the constructor, so _decide already writes it.
        per, writes, remove, steering, steer_change = self._decide(after)
        commands = []
        stops = []
        for shard, shard_writes, action in per:
            lines = shard.commands(shard_writes, action)
            (stops if action in (STOP, CLEAN) else commands).extend(lines)
        if steer_change:
            commands.append(("load nft table ip %s: port 67 of %d segments to their shard's port"
                             % (STEERING_TABLE, len(after))) if steering else
                            "delete nft table ip %s" % STEERING_TABLE)
        commands.extend(stops)
        if GENERATION_FILE in writes:
            commands.append("write %s" % self.path(GENERATION_FILE))
        commands.extend("remove %s" % self.path(name) for name in remove)
        self.actions = dict((shard.label, action) for shard, _w, action in per if action not in (NOTHING, CLEAN))
        self.action = _strongest([action for _s, _w, action in per])
        return commands

    def records_only(self, plan):
        return plan == ["write %s" % self.path(GENERATION_FILE)]

    def _check_readable(self):
        """dnsmasq drops root and re-reads the hosts file as that user on SIGHUP: refuse a
        state_dir it could not reach (it would run, log 'Permission denied' and serve nothing)."""
        if self.user == "root":
            return
        path = self.state_dir
        while True:
            if os.path.exists(path):
                mode = os.stat(path).st_mode
                if not mode & stat.S_IXOTH:
                    raise InvalidInput(
                        "dnsmasq drops root privileges to %s and could not reach %s: %s is not searchable by others "
                        "(chmod o+x it, choose another state_dir, or set user: root)"
                        % (self.user or "its default user", self.state_dir, path)
                    )
            parent = os.path.dirname(path)
            if parent == path:
                return
            path = parent

    # ------------------------------------------------------------------ apply
    def apply(self, plan, after, generation):
        per, writes, remove, steering, steer_change = self._decide(after)
        serving = [(s, w, a) for s, w, a in per if a not in (STOP, CLEAN)]
        if after:
            self._makedirs()
        staged = {}
        try:
            # every new file first, each checked: nothing changes unless all of them are good
            for shard, shard_writes, _action in serving:
                staged[id(shard)] = shard.stage(shard_writes)
            for name, text in writes.items():
                staged[name] = _stage(self.path(name), text)
            # a configuration dnsmasq cannot parse never replaces one it can (a syntax check needs no namespace)
            _run_all([[self.dnsmasq, "--test", "--conf-file=%s" % staged[id(shard)]["conf"]]
                      for shard, _w, _a in serving if "conf" in staged[id(shard)]])
            for shard, _w, _a in serving:
                shard.swap(staged.pop(id(shard)))
            self._start_plain([(shard, action) for shard, _w, action in serving
                               if not shard.service and action in (START, RESTART)])
            self._start_managed([(shard, shard_writes, action) for shard, shard_writes, action in serving
                                 if shard.service and action in (START, RESTART)])
            for shard, _w, action in serving:
                if action == RELOAD:
                    shard.reload()
            # the shards serve their ports before port 67 is steered to them (or back to the only one)
            if steer_change:
                self._load_steering(steering)
            for shard, _w, action in per:
                if action in (STOP, CLEAN):
                    shard.stop_and_remove()
            for name in remove:
                _unlink_quietly(self.path(name))
            # recorded last: the generation names what is in force
            if GENERATION_FILE in staged:
                os.rename(staged.pop(GENERATION_FILE), self.path(GENERATION_FILE))
        finally:
            for tmp in staged.values():
                for path in (tmp.values() if isinstance(tmp, dict) else [tmp]):
                    _unlink_quietly(path)
        self.pid = self.layout[0].pid if after else None

    def _start_plain(self, todo):
        """Restart and start the dnsmasq that no manager runs, all at once. dnsmasq forks and its
        parent exits only once the daemon is up, with a non-zero status (and the reason on
        stderr) when it could not start, e.g. its port in use."""
        for shard, action in todo:
            if action == RESTART:
                os.kill(shard.pid, signal.SIGTERM)
        for shard, action in todo:
            if action == RESTART:
                shard._wait_gone(shard.pid)
                shard.pid = None
        try:
            _run_all([shard.command() for shard, _a in todo], self.namespace)
        except CommandFailed as exc:
            raise CommandFailed("dnsmasq did not start: %s (see %s)"
                                % (exc.msg, " ".join(shard.path("log") for shard, _a in todo)))
        finally:
            for shard, _a in todo:
                shard.pid = shard.running_pid()

    def _start_managed(self, todo):
        """Start and restart dnsmasq through the service manager, all shards with one call per
        verb, then wait until each runs (its pid file written, the manager agreeing)."""
        if not todo:
            return
        known = supervised.pids([shard.service for shard, _w, _a in todo])
        old = dict((id(shard), shard.pid) for shard, _w, _a in todo)
        for shard, _w, _a in todo:
            if shard.pid and known.get(shard.service.name) != shard.pid:
                # ours (the checks passed) but not the manager's child: started by this module
                # before it used a service manager; it holds its port, so it goes first
                shard._stop(shard.pid)
                shard.pid = None
        load = [shard.service for shard, writes, _a in todo if SERVICE in writes]
        restart = [shard.service for shard, writes, action in todo
                   if SERVICE not in writes and action == RESTART and shard.pid]
        start = [shard.service for shard, writes, action in todo
                 if SERVICE not in writes and not (action == RESTART and shard.pid)]
        # supervisord: update adds and starts, or restarts; systemd: daemon-reload, restart
        supervised.apply_all(load, restart, start)
        pending = [shard for shard, _w, _a in todo]
        deadline = time.time() + self.start_timeout
        while pending:
            known = supervised.pids([shard.service for shard in pending])
            for shard in list(pending):
                pid = shard.running_pid()
                if pid and pid != old[id(shard)] and known.get(shard.service.name) == pid:
                    shard.pid = pid
                    pending.remove(shard)
            if not pending:
                return
            if time.time() > deadline:
                shard = pending[0]
                raise EucaError("%s did not come up under %s within %ss (see %s): %s"
                                % (shard.label, shard.service.describe(), self.start_timeout, shard.path("log"),
                                   _tail(shard.path("log"))))
            time.sleep(0.1)

    def _load_steering(self, steering):
        table = "table ip %s" % STEERING_TABLE
        if steering:
            text = "add %s\ndelete %s\n%s" % (table, table, steering)
            try:
                run(["nft", "-f", "-"], namespace=self.namespace, data=text)
            except CommandFailed as exc:
                raise EucaError("cannot load the DHCP steering table: %s" % exc.msg)
            tmp = _stage(self.path(STEERING_FILE), steering)
            os.rename(tmp, self.path(STEERING_FILE))
        else:
            run(["nft", "delete", "table", "ip", STEERING_TABLE], namespace=self.namespace, check=False)
            _unlink_quietly(self.path(STEERING_FILE))

    def _makedirs(self):
        if not os.path.isdir(self.state_dir):
            try:
                os.makedirs(self.state_dir, 0o755)
                # whatever the umask: dnsmasq's unprivileged user must reach the files
                os.chmod(self.state_dir, 0o755)
            except OSError as exc:
                raise EucaError("cannot create state_dir %s: %s" % (self.state_dir, exc))

    # ------------------------------------------------------------------ render
    def render(self, items, generation):
        self.set_layout(len(items), look=False)
        if self.shards == 1:
            return {
                self.conf_path: render_conf(items, self.state_dir, self.max_leases, self.user),
                self.layout[0].path("hosts"): render_hosts(items),
            }
        out = {}
        for shard in self.layout:
            mine = [seg for seg in items if self.shard_of(seg["id"]) is shard]
            if mine:
                out[shard.conf_path] = render_conf(mine, self.state_dir, self.max_leases, self.user, shard.index,
                                                   shard.port)
                out[shard.path("hosts")] = render_hosts(mine)
        if items:
            out[self.path(STEERING_FILE)] = render_steering(items, self)
        return out


def auto_shards(count):
    """How many dnsmasq serve ``count`` segments when ``shards`` is 0: one up to
    SEGMENTS_PER_SHARD, then one per SEGMENTS_PER_SHARD rounded up to a power of two, so the
    number changes only when the cluster doubles (and then half the segments move)."""
    needed = -(-count // SEGMENTS_PER_SHARD)
    shards = 1
    while shards < needed and shards < MAX_SHARDS:
        shards *= 2
    return shards


def render_steering(segments, owner):
    """The nft table that sends port 67 of each segment's interface to its shard's port, and
    gives the shards' replies source port 67 again (stateless: broadcasts and unicast renewals alike)."""
    elements = ",\n      ".join('"%s" : %d' % (seg["interface"], owner.shard_of(seg["id"]).port) for seg in segments)
    first, last = owner.shard_port, owner.shard_port + owner.shards - 1
    return "\n".join([
        "table ip %s {" % STEERING_TABLE,
        "  comment \"%s\"" % HEADER.lstrip("# "),
        "  map shard {",
        "    type ifname : inet_service",
        "    elements = {",
        "      %s" % elements,
        "    }",
        "  }",
        "  chain steer {",
        "    type filter hook prerouting priority raw; policy accept;",
        "    udp dport 67 udp dport set iifname map @shard",
        "  }",
        "  chain back {",
        "    type filter hook output priority raw; policy accept;",
        "    udp sport %d-%d udp dport 68 udp sport set 67" % (first, last),
        "  }",
        "}",
    ]) + "\n"


_RANK = {NOTHING: 0, CLEAN: 0, RELOAD: 1, STOP: 2, START: 3, RESTART: 4}


def _strongest(actions):
    strongest = max(actions or [NOTHING], key=lambda a: _RANK[a])
    return NOTHING if strongest == CLEAN else strongest


def _stage(path, text):
    """Write ``text`` beside ``path`` (same directory, so the rename is atomic); the temporary path."""
    directory, base = os.path.split(path)
    tmp = os.path.join(directory, ".%s.new" % base)
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        # dnsmasq reads the files as an unprivileged user
        os.chmod(tmp, 0o644)
    except (IOError, OSError) as exc:
        _unlink_quietly(tmp)
        raise EucaError("cannot write %s: %s" % (tmp, exc))
    return tmp


def _run_all(argvs, namespace=None, at_once=32):
    """Run the programs ``at_once`` at a time; CommandFailed naming the first that failed."""
    failed = None
    for first in range(0, len(argvs), at_once):
        procs = []
        for argv in argvs[first:first + at_once]:
            full = in_namespace(argv, namespace)
            try:
                procs.append((full, subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                     universal_newlines=True)))
            except OSError as exc:
                failed = failed or "cannot run %s: %s" % (" ".join(full), exc)
        for full, proc in procs:
            out, err = proc.communicate()
            if proc.returncode != 0 and failed is None:
                lines = "\n".join((err or out).strip().splitlines()[:20])
                failed = "%s failed (rc=%d): %s" % (" ".join(full), proc.returncode, lines)
        if failed:
            raise CommandFailed(failed)


def _tail(path, lines=5):
    text = files.read_text(path) or ""
    return " | ".join(text.strip().splitlines()[-lines:]) or "(no log)"


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass
