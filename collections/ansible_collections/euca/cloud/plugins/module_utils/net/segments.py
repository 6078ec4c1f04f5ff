# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tenant segments: a bridge per security group with its uplink (ARCHITECTURE §5).

A segment is a Linux bridge (``eubr-<id>`` by default) and, depending on its mode, an uplink
port on it:

- ``vlan``: the 802.1Q sub-interface ``<trunk>.<id>`` of a trunk NIC (Eucalyptus MANAGED);
- ``vxlan``: ``vxlan<id>`` with VNI ``id``, flooding to a list of peer VTEPs by head-end
  replication (all-zero FDB entries, no learning) or to a multicast group;
- ``flat``: no uplink (MANAGED-NOVLAN: isolation comes from filtering only).

The CC side carries the segment's gateway address on the bridge.

Clusters interconnect (as Eucalyptus' CCs did with vtun): a CC's vxlan segment with an
``interconnect`` list gets a second port, ``vxic<id>``, a VXLAN device with the same VNI on
another UDP port (``interconnect_port``; two devices of one VNI and one local address need
distinct ports) flooding to the other clusters' CCs. It cannot be the same ``vxlan<id>``
device: a bridge never sends a frame back out of the port it came in by, so a frame from one
of the cluster's NCs could not be relayed to another cluster's CC. The CCs form a full mesh;
split horizon on each bridge keeps frames from looping between them. Every CC holds the same
gateway address (an anycast gateway), so one nft ``bridge`` table of ours
(``euca_interconnect``) drops, on the interconnect ports only, ARP naming the gateway and
DHCP: each cluster's instances resolve and lease from their own CC.

What is ours: bridges whose alias is ``euca.cloud/segment/<id>`` (set on every link we
create, so custom bridge names are recognised) or that are named ``eubr-<id>``, their
vlan/vxlan ports with the segment's tag, and uplinks carrying our alias. Nothing else is
ever changed; a link of someone else's that stands in the way is reported, not replaced.

Plans are lists of commands; consecutive commands of one program run as one batch
(``ip -batch -``, ``sysctl -p``, ``bridge -batch -``), so an apply is a handful of
processes whatever the number of segments.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, EucaError, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.net import rules
from ansible_collections.euca.cloud.plugins.module_utils.net.config import Resource
from ansible_collections.euca.cloud.plugins.module_utils.process import CommandFailed, run
from ansible_collections.euca.cloud.plugins.module_utils.model.addressing import netaddr, require_netaddr
from ansible_collections.euca.cloud.plugins.module_utils.model import names
from ansible_collections.euca.cloud.plugins.module_utils.model import network as model_network

MODES = model_network.NETWORK_MODES
VLAN_MAX = model_network.VLAN_MAX
VNI_MAX = model_network.VNI_MAX
DEFAULT_VXLAN_PORT = 4789
# 1500 minus the VXLAN/UDP/IPv4/Ethernet overhead (50 bytes): instances never fragment.
DEFAULT_VXLAN_MTU = 1450
IFNAMSIZ = names.IFNAMSIZ
ALIAS = "euca.cloud/segment/%d"
UPLINK_ALIAS = "euca.cloud/segment/%d/uplink"
INTERCONNECT_ALIAS = "euca.cloud/segment/%d/interconnect"
ZERO_MAC = "00:00:00:00:00:00"
# IANA's 4789 is the cluster's own mesh and 4790 is VXLAN-GPE's; 8472 is the Linux kernel's own
# (pre-IANA) VXLAN port, which underlay firewalls commonly know already.
DEFAULT_INTERCONNECT_PORT = 8472
INTERCONNECT_TABLE = "euca_interconnect"
INTERCONNECT_LABEL = "interconnect"
DHCP_PORTS = (67, 68)

_ALIAS_RE = re.compile(r"^euca\.cloud/segment/([0-9]+)$")
_UPLINK_ALIAS_RE = re.compile(r"^euca\.cloud/segment/([0-9]+)/uplink$")
_INTERCONNECT_ALIAS_RE = re.compile(r"^euca\.cloud/segment/([0-9]+)/interconnect$")
_DEFAULT_BRIDGE_RE = re.compile(r"^eubr-([1-9][0-9]*)$")

COMMON_FIELDS = ("id", "mode", "bridge", "gateway", "mtu")
MODE_FIELDS = {"flat": (), "vlan": ("trunk",),
               "vxlan": ("local", "dev", "port", "peers", "group", "interconnect", "interconnect_port")}
ALL_FIELDS = set(COMMON_FIELDS) | set(f for fields in MODE_FIELDS.values() for f in fields)
DEFAULT_KEYS = ("mode", "trunk", "vxlan_local", "vxlan_dev", "vxlan_port", "vxlan_peers", "vxlan_group",
                "interconnect", "interconnect_port")

# Programs a plan may use and how each one's consecutive commands are batched.
TOOLS = ("ip", "sysctl", "bridge", "nft")


bridge_name = model_network.bridge_name


def uplink_name(item):
    """The uplink link of a normalized segment item, or None for a flat segment."""
    if item["mode"] == "vlan":
        return "%s.%d" % (item["trunk"], item["id"])
    if item["mode"] == "vxlan":
        return model_network.vxlan_uplink_name(item["id"])
    return None


def interconnect_name(item):
    """The interconnect port (``vxic<id>``, at most 12 characters) of a normalized segment item,
    or None when it has no interconnect."""
    if item.get("interconnect"):
        return model_network.interconnect_name(item["id"])
    return None


# ---------------------------------------------------------------- validation
def _ifname(value, what):
    return names.check_ifname(value, what)


def _int(value, what):
    if isinstance(value, bool):
        raise InvalidInput("%s must be an integer, not %r" % (what, value))
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidInput("%s must be an integer, not %r" % (what, value))


def _address(value, what, version=None):
    require_netaddr()
    try:
        address = netaddr.IPAddress(str(value).strip())
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise InvalidInput("%s %r is not an IP address" % (what, value))
    if version is not None and address.version != version:
        raise InvalidInput("%s %s is IPv%d but the VXLAN local address is IPv%d" % (what, value, address.version, version))
    return address


def _gateway(value, what):
    """The gateway as a normalized IPv4 host CIDR (``10.128.0.1/27``)."""
    require_netaddr()
    text = str(value).strip()
    try:
        network = netaddr.IPNetwork(text)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        network = None
    if network is None or "/" not in text or network.version != 4:
        raise InvalidInput("%s %r is not an IPv4 address with its prefix length (expected e.g. 10.128.0.1/27)"
                           % (what, value))
    if network.prefixlen <= 30 and network.ip in (network.network, network.broadcast):
        raise InvalidInput("%s %s is the %s address of %s; give a host address such as %s/%d"
                           % (what, text, "network" if network.ip == network.network else "broadcast",
                              network.cidr, netaddr.IPAddress(network.first + 1), network.prefixlen))
    return "%s/%d" % (network.ip, network.prefixlen)


def normalize(item, defaults=None):
    """One segment item, checked and completed with the module-level ``defaults``.

    Returns a dict holding exactly the fields of its mode (see ``COMMON_FIELDS`` and
    ``MODE_FIELDS``); raises InvalidInput naming the segment and the fix.
    """
    defaults = defaults or {}
    if not isinstance(item, dict):
        raise InvalidInput("each segment must be a dict with at least an id, not %r" % (item,))
    unknown = sorted(set(item) - ALL_FIELDS)
    if unknown:
        raise InvalidInput("segment %s: unknown option(s) %s; segments take %s"
                           % (item.get("id"), ", ".join(unknown), ", ".join(sorted(ALL_FIELDS))))
    if item.get("id") is None:
        raise InvalidInput("every segment needs an id (its VLAN tag or VXLAN network id)")
    seg_id = _int(item["id"], "segment id")
    mode = item.get("mode") or defaults.get("mode") or "vlan"
    model_network.check_mode(mode, "segment %d: mode" % seg_id)
    model_network.check_segment_id(mode, seg_id)
    label = "segment %d (%s)" % (seg_id, mode)
    for field in sorted(ALL_FIELDS - set(COMMON_FIELDS) - set(MODE_FIELDS[mode])):
        if item.get(field) is not None:
            raise InvalidInput("%s: %s applies to %s segments only" % (
                label, field, " and ".join(m for m in MODES if field in MODE_FIELDS[m])))

    out = {"id": seg_id, "mode": mode}
    out["bridge"] = _ifname(item.get("bridge") or bridge_name(seg_id), "%s: bridge" % label)
    gateway = item.get("gateway")
    out["gateway"] = _gateway(gateway, "%s: gateway" % label) if gateway not in (None, "") else None
    mtu = item.get("mtu")
    if mtu is None and mode == "vxlan":
        mtu = DEFAULT_VXLAN_MTU
    if mtu is not None:
        mtu = _int(mtu, "%s: mtu" % label)
        if not 68 <= mtu <= 65535:
            raise InvalidInput("%s: mtu %d is out of range (68 to 65535)" % (label, mtu))
    out["mtu"] = mtu

    if mode == "vlan":
        trunk = item.get("trunk") or defaults.get("trunk")
        if not trunk:
            raise InvalidInput("%s: no trunk NIC; set trunk on the segment or the module's trunk option" % label)
        out["trunk"] = _ifname(trunk, "%s: trunk" % label)
        if len(uplink_name(out)) > IFNAMSIZ:
            raise InvalidInput("%s: the uplink name %s is longer than %d characters; use a shorter trunk name"
                               % (label, uplink_name(out), IFNAMSIZ))
    elif mode == "vxlan":
        local = item.get("local") or defaults.get("vxlan_local")
        if not local:
            raise InvalidInput("%s: no local VTEP address; set local on the segment or the module's vxlan_local"
                               % label)
        local = _address(local, "%s: local" % label)
        if local.is_multicast() or local.value == 0:
            raise InvalidInput("%s: local %s must be a unicast address of this host" % (label, local))
        out["local"] = str(local)
        dev = item.get("dev") or defaults.get("vxlan_dev")
        out["dev"] = _ifname(dev, "%s: dev" % label) if dev else None
        port = item.get("port") or defaults.get("vxlan_port") or DEFAULT_VXLAN_PORT
        port = _int(port, "%s: port" % label)
        if not 1 <= port <= 65535:
            raise InvalidInput("%s: port %d is out of range (1 to 65535)" % (label, port))
        out["port"] = port
        peers = item.get("peers")
        group = item.get("group")
        if peers is None and group is None:
            peers, group = defaults.get("vxlan_peers"), defaults.get("vxlan_group")
        if peers and group:
            raise InvalidInput("%s: give either peers (head-end replication) or a multicast group, not both" % label)
        if group:
            group = _address(group, "%s: group" % label, local.version)
            if not group.is_multicast():
                raise InvalidInput("%s: group %s is not a multicast address; list unicast VTEPs in peers instead"
                                   % (label, group))
            if not out["dev"]:
                raise InvalidInput("%s: a multicast group needs the underlay device; set dev or vxlan_dev" % label)
            out["group"] = str(group)
        else:
            out["group"] = None
        out["peers"] = _vteps(peers, local, "%s: peer" % label, "another host's unicast VTEP address")
        _normalize_interconnect(out, item, defaults, local, label)
    return out


def _vteps(peers, local, what, must):
    """Unicast VTEP addresses other than ``local`` (one or a list), sorted and without repeats."""
    if isinstance(peers, str):
        peers = [peers]
    seen = set()
    for peer in peers or []:
        address = _address(peer, what, local.version)
        if address.is_multicast() or address == local:
            raise InvalidInput("%s %s must be %s" % (what, address, must))
        seen.add(address)
    return [str(a) for a in sorted(seen)]


def _normalize_interconnect(out, item, defaults, local, label):
    """The ``interconnect`` peers and ``interconnect_port`` of a vxlan item (in ``out``)."""
    peers = item.get("interconnect")
    if peers is None:
        peers = defaults.get("interconnect")
    interconnect = _vteps(peers, local, "%s: interconnect peer" % label,
                          "another cluster's CC VTEP (a unicast address)")
    both = [a for a in interconnect if a in out["peers"]]
    if both:
        # the two CCs would relay each other's floods back and forth: a broadcast storm
        raise InvalidInput("%s: %s is both a peer and an interconnect peer; list a CC of this cluster in peers "
                           "and the other clusters' CCs in interconnect" % (label, ", ".join(both)))
    out["interconnect"] = interconnect
    out["interconnect_port"] = None
    if interconnect:
        port = item.get("interconnect_port") or defaults.get("interconnect_port") or DEFAULT_INTERCONNECT_PORT
        port = _int(port, "%s: interconnect_port" % label)
        if not 1 <= port <= 65535:
            raise InvalidInput("%s: interconnect_port %d is out of range (1 to 65535)" % (label, port))
        if port == out["port"]:
            raise InvalidInput("%s: interconnect_port %d is the segment's own VXLAN port; two VXLAN devices with "
                               "one VNI need distinct ports (the default interconnect_port is %d)"
                               % (label, port, DEFAULT_INTERCONNECT_PORT))
        out["interconnect_port"] = port


def check_names(items):
    """Refuse two segments sharing a link name (bridge or uplink); ``items`` are normalized."""
    owner = {}
    for item in items:
        for kind, name in (("bridge", item["bridge"]), ("uplink", uplink_name(item)),
                           ("interconnect port", interconnect_name(item))):
            if name is None:
                continue
            if name in owner:
                other_id, other_kind = owner[name]
                raise InvalidInput("segments %d and %d both use %s as their %s; give one of them another bridge name"
                                   % (other_id, item["id"], name, "bridge" if "bridge" in (kind, other_kind) else kind))
            owner[name] = (item["id"], kind)


# ---------------------------------------------------------------- commands
def _sysctl_name(dev):
    # sysctl separates keys with dots, so a dot in a link name (trunk.10) is written as '/'.
    return dev.replace(".", "/")


def _uplink_spec(item):
    """How the uplink of ``item`` is created; two equal specs mean the link need not change."""
    if item["mode"] == "vlan":
        return ("vlan", uplink_name(item), item["trunk"], item["id"])
    if item["mode"] == "vxlan":
        # head-end replication floods to every peer and learns nothing; multicast learns.
        return ("vxlan", uplink_name(item), item["id"], item["local"], item["dev"], item["port"], item["group"],
                item["group"] is not None, None)
    return None


def _interconnect_spec(item):
    """How the interconnect port of ``item`` is created (as ``_uplink_spec``), or None without one."""
    if not interconnect_name(item):
        return None
    return ("vxlan", interconnect_name(item), item["id"], item["local"], item["dev"], item["interconnect_port"],
            None, False, None)


def _uplink_add(item):
    name = uplink_name(item)
    if item["mode"] == "vlan":
        return "ip link add link %s name %s type vlan id %d" % (item["trunk"], name, item["id"])
    return _vxlan_add(name, item, item["port"], item["group"])


def _vxlan_add(name, item, port, group):
    words = ["ip link add name", name, "type vxlan id", str(item["id"]), "local", item["local"]]
    if group:
        words += ["group", group]
    if item["dev"]:
        words += ["dev", item["dev"]]
    words += ["dstport", str(port)]
    if not group:
        words.append("nolearning")
    return " ".join(words)


def _fdb(op, dev, peer):
    return "bridge fdb %s %s dev %s dst %s" % (op, ZERO_MAC, dev, peer)


def _flood_changes(out, dev, have, want):
    """The flood-list entries of VXLAN port ``dev`` to delete and to append, from ``have`` to ``want``."""
    have, want = set(have), set(want)
    out.fdb.extend(_fdb("del", dev, p) for p in sorted(have - want, key=netaddr.IPAddress))
    out.fdb.extend(_fdb("append", dev, p) for p in sorted(want - have, key=netaddr.IPAddress))


def _repair_port(out, link, alias, bridge, mtu):
    """Put an existing port of ours back as it must be: our alias, its bridge, the MTU, up."""
    sets = []
    if link.get("ifalias") != alias:
        sets.append("alias %s" % alias)
    if link.get("master") != bridge:
        sets.append("master %s" % bridge)
    if mtu and link.get("mtu") != mtu:
        sets.append("mtu %d" % mtu)
    if "UP" not in link.get("flags", []):
        sets.append("up")
    if sets:
        out.configure.append("ip link set dev %s %s" % (link["ifname"], " ".join(sets)))


class _Plan:
    """Commands collected by phase, so a batch never needs a link before it exists."""

    def __init__(self):
        self.pin = []         # ip: bridge MACs kept while their ports change (see _pin_bridge)
        self.remove = []      # ip: uplinks, then bridges
        self.unaddress = []   # ip: addresses that go away
        self.create = []      # ip: new links, down
        self.quiet = []       # sysctl: no IPv6 on new links (see SegmentSet.plan)
        self.configure = []   # ip: alias, mtu, master, up
        self.address = []     # ip: gateways
        self.fdb = []         # bridge: VXLAN flood lists
        self.filter = []      # nft: the interconnect filter, one transaction

    def commands(self):
        return (self.pin + self.remove + self.unaddress + self.create + self.quiet + self.configure + self.address + self.fdb
                + self.filter)

    def new_link(self, line, name):
        self.create.append(line)
        self.quiet.append("sysctl -w net.ipv6.conf.%s.disable_ipv6=1" % _sysctl_name(name))

    def new_segment(self, item):
        """Every command that builds ``item`` from nothing."""
        bridge, mtu = item["bridge"], item["mtu"]
        self.new_link("ip link add name %s type bridge" % bridge, bridge)
        # the kernel ignores an alias given at creation: it is set with the rest
        self.configure.append("ip link set dev %s alias %s%s up" % (bridge, ALIAS % item["id"], " mtu %d" % mtu if mtu else ""))
        if item["mode"] != "flat":
            self.new_uplink(item)
        if interconnect_name(item):
            self.new_interconnect(item)
        if item["gateway"]:
            self.address.append("ip address add %s dev %s" % (item["gateway"], bridge))

    def new_uplink(self, item):
        """Create, enslave and flood-list the uplink of ``item`` (its bridge exists or is created)."""
        name = uplink_name(item)
        self.new_link(_uplink_add(item), name)
        self.configure.append("ip link set dev %s alias %s master %s%s up" % (
            name, UPLINK_ALIAS % item["id"], item["bridge"], " mtu %d" % item["mtu"] if item["mtu"] else ""))
        if item["mode"] == "vxlan":
            self.fdb.extend(_fdb("append", name, peer) for peer in item["peers"])

    def new_interconnect(self, item):
        """Create, enslave and flood-list the interconnect port of ``item``."""
        name = interconnect_name(item)
        self.new_link(_vxlan_add(name, item, item["interconnect_port"], None), name)
        self.configure.append("ip link set dev %s alias %s master %s%s up" % (
            name, INTERCONNECT_ALIAS % item["id"], item["bridge"], " mtu %d" % item["mtu"] if item["mtu"] else ""))
        self.fdb.extend(_fdb("append", name, peer) for peer in item["interconnect"])


# ---------------------------------------------------------------- the interconnect filter
def interconnect_ruleset(items):
    """Our nft ``bridge`` table for the interconnect ports of ``items`` (normalized), or None
    when no segment has an interconnect.

    Every CC holds the same gateway address, so on the ``vxic<id>`` ports (both ways: frames
    from the other clusters in prerouting, frames to them, forwarded or the CC's own, in
    postrouting) ARP whose sender or target is the segment's gateway is dropped, and DHCP
    (UDP 67 and 68) too: an instance resolves its gateway to its own CC and leases from its
    own CC's dnsmasq. One verdict map per direction dispatches by port to the segment's chain,
    so the cost per frame does not grow with the number of segments.
    """
    joined = [item for item in items if interconnect_name(item)]
    if not joined:
        return None
    dhcp = "udp dport { %s } drop" % ", ".join(str(p) for p in DHCP_PORTS)
    chains = []
    for way, hook in (("iifname", "prerouting"), ("oifname", "postrouting")):
        dispatch = "%s vmap { %s }" % (way, ", ".join(
            '"%s" : jump ic-%d' % (interconnect_name(item), item["id"]) for item in joined))
        chains.append(rules.NftChain(hook, [rules.Rule(dispatch)],
                                     spec="type filter hook %s priority filter; policy accept;" % hook))
    for item in joined:
        body = []
        if item["gateway"]:
            address = item["gateway"].split("/")[0]
            body += [rules.Rule("arp saddr ip %s drop" % address), rules.Rule("arp daddr ip %s drop" % address)]
        body.append(rules.Rule(dhcp))
        chains.append(rules.NftChain("ic-%d" % item["id"], body))
    return rules.NftRuleset(INTERCONNECT_TABLE, INTERCONNECT_LABEL, chains, family="bridge")


# ---------------------------------------------------------------- gathering
def _alias_id(regex, link):
    match = regex.match(link.get("ifalias") or "")
    return int(match.group(1)) if match else None


def _kind(link):
    return (link.get("linkinfo") or {}).get("info_kind")


def _tag(link):
    """The VLAN id or VNI of a vlan/vxlan link."""
    return ((link.get("linkinfo") or {}).get("info_data") or {}).get("id")


def _live_spec(link):
    """The uplink spec (see ``_uplink_spec``) of a gathered vlan/vxlan link."""
    data = (link.get("linkinfo") or {}).get("info_data") or {}
    if _kind(link) == "vlan":
        return ("vlan", link["ifname"], link.get("link"), data.get("id"))
    return ("vxlan", link["ifname"], data.get("id"), _norm_ip(data.get("local") or data.get("local6")),
            data.get("link"), data.get("port"), _norm_ip(data.get("group") or data.get("group6")),
            bool(data.get("learning")), data.get("remote") or data.get("remote6"))


def _norm_ip(text):
    return str(netaddr.IPAddress(text)) if text else None


class _Live:
    """What gather found for one segment (kernel facts the item itself does not show)."""

    __slots__ = ("bridge", "uplink", "interconnect", "extras", "addresses", "peers", "interconnect_peers")

    def __init__(self, bridge):
        self.bridge = bridge
        self.uplink = None
        self.interconnect = None
        self.extras = []
        self.addresses = []
        self.peers = []
        self.interconnect_peers = []


class SegmentSet(Resource):
    """The segments of one host (or one network namespace of it)."""

    noun = "segment"
    key = "id"

    def __init__(self, namespace=None, defaults=None, state="merged"):
        self.namespace = namespace
        self.defaults = dict((k, (defaults or {}).get(k)) for k in DEFAULT_KEYS)
        self.state = state
        self.links = None      # name -> link, from gather; None until gathered
        self.live = {}         # segment id -> _Live
        self.orphans = []      # names of our uplinks that lost their bridge
        self.vxlans = {}       # name of our VXLAN uplink -> segment id
        self.interconnects = {}  # name of our interconnect port -> segment id
        self.wants_interconnect = False  # whether a requested segment has an interconnect
        self.filter = None     # our interconnect nft table as gathered (rules.NftListing), or None

    # -------------------------------------------------------------- validate
    def validate(self, items):
        """Normalized items (see :func:`normalize`); for ``deleted`` only the ids matter."""
        require_netaddr()
        seen = set()
        out = []
        for item in items:
            if self.state == "deleted":
                if not isinstance(item, dict) or item.get("id") is None:
                    raise InvalidInput("segments to delete are given by id, e.g. {id: 10}")
                seg_id = _int(item["id"], "segment id")
                if not 1 <= seg_id <= VNI_MAX:
                    raise InvalidInput("segment id %d is out of range (1 to %d)" % (seg_id, VNI_MAX))
                norm = {"id": seg_id}
            else:
                norm = normalize(item, self.defaults)
            if norm["id"] in seen:
                raise InvalidInput("segment %d is given twice; each id is one segment" % norm["id"])
            seen.add(norm["id"])
            out.append(norm)
        if self.state != "deleted":
            check_names(out)
        self.wants_interconnect = any(interconnect_name(item) for item in out)
        return sorted(out, key=lambda i: i["id"])

    # -------------------------------------------------------------- gather
    def gather(self):
        """Our segments as the kernel has them: ``(items, None)``; segments carry no generation."""
        require_netaddr()
        # One dump of every link with its details and addresses; a second only for VXLAN flood lists.
        links = json.loads(run(["ip", "-j", "-d", "address", "show"], namespace=self.namespace)[1] or "[]")
        if self.load_links(links):
            self.load_fdb(json.loads(run(["bridge", "-j", "fdb", "show"], namespace=self.namespace)[1] or "[]"))
        if self.wants_interconnect or self.interconnects:
            # only then: a node controller without interconnects needs no nftables at all
            self.filter = self.gather_filter()
        return self.items(), None

    def gather_filter(self):
        """Our interconnect filter table as the kernel holds it (None when it does not exist)."""
        try:
            return rules.nft_gather(INTERCONNECT_TABLE, INTERCONNECT_LABEL, self.namespace, family="bridge")
        except CommandFailed as exc:
            raise EucaError("%s\nSegment interconnects filter gateway ARP and DHCP with nftables (bridge family): "
                            "install nftables (the nft program) on this host, or leave interconnect out here."
                            % exc.msg, **exc.details)

    def load_links(self, links):
        """Take in ``ip -j -d address show`` output; True when our VXLAN uplinks need the FDB."""
        self.links = dict((link["ifname"], link) for link in links)
        ports = {}
        for link in links:
            if link.get("master"):
                ports.setdefault(link["master"], []).append(link)

        bridges = {}
        for link in links:
            if _kind(link) != "bridge":
                continue
            seg_id = _alias_id(_ALIAS_RE, link)
            if seg_id is not None:
                bridges[seg_id] = link
        for link in links:
            # a bridge named like ours counts unless another one carries that id in its alias
            match = _DEFAULT_BRIDGE_RE.match(link["ifname"])
            if match and _kind(link) == "bridge" and not link.get("ifalias") and int(match.group(1)) not in bridges:
                bridges[int(match.group(1))] = link

        self.live = {}
        self.vxlans = {}
        self.interconnects = {}
        claimed = set()
        for seg_id, bridge in bridges.items():
            live = self.live[seg_id] = _Live(bridge)
            for port in ports.get(bridge["ifname"], []):
                if _kind(port) not in ("vlan", "vxlan"):
                    continue  # instance ports: never ours
                if self._load_interconnect(live, seg_id, port):
                    claimed.add(port["ifname"])
                    continue
                ours = _alias_id(_UPLINK_ALIAS_RE, port) == seg_id
                if _tag(port) == seg_id and (live.uplink is None or (ours and not live.uplink.get("ifalias"))):
                    # one with our alias wins over an unmarked one, which stays untouched
                    live.uplink = port
                elif ours:
                    live.extras.append(port["ifname"])
                else:
                    continue  # someone else's tunnel on our bridge: not ours to remove
                claimed.add(port["ifname"])
            if live.uplink is not None and _kind(live.uplink) == "vxlan":
                self.vxlans[live.uplink["ifname"]] = seg_id
            if live.interconnect is not None:
                self.interconnects[live.interconnect["ifname"]] = seg_id
            live.addresses = [
                "%s/%d" % (a["local"], a["prefixlen"]) for a in bridge.get("addr_info", [])
                if a.get("family") == "inet" and a.get("scope") == "global"
            ]
        self.orphans = sorted(
            link["ifname"] for link in links
            if _kind(link) in ("vlan", "vxlan") and link["ifname"] not in claimed
            and (_alias_id(_UPLINK_ALIAS_RE, link) is not None or _alias_id(_INTERCONNECT_ALIAS_RE, link) is not None)
        )
        return bool(self.vxlans or self.interconnects)

    @staticmethod
    def _load_interconnect(live, seg_id, port):
        """Take ``port`` of segment ``seg_id``'s bridge as its interconnect port when it is one:
        a vxlan port with our interconnect alias, or an unmarked ``vxic<id>`` with the VNI.
        True when the port is taken (as the interconnect or as a surplus one of ours to remove)."""
        if _kind(port) != "vxlan":
            return False
        marked = _alias_id(_INTERCONNECT_ALIAS_RE, port) == seg_id
        named = not port.get("ifalias") and port["ifname"] == "vxic%d" % seg_id and _tag(port) == seg_id
        if not (marked or named):
            return False
        if _tag(port) == seg_id and (live.interconnect is None or (marked and not live.interconnect.get("ifalias"))):
            if live.interconnect is not None:
                live.extras.append(live.interconnect["ifname"])
            live.interconnect = port
        else:
            live.extras.append(port["ifname"])
        return True

    def load_fdb(self, fdb):
        """Take in ``bridge -j fdb show`` output: the flood lists (peers) of our VXLAN uplinks."""
        for entry in fdb:
            if entry.get("mac") != ZERO_MAC or not entry.get("dst"):
                continue
            seg_id = self.vxlans.get(entry.get("ifname"))
            if seg_id is not None:
                self.live[seg_id].peers.append(_norm_ip(entry["dst"]))
            seg_id = self.interconnects.get(entry.get("ifname"))
            if seg_id is not None:
                self.live[seg_id].interconnect_peers.append(_norm_ip(entry["dst"]))

    def items(self):
        """The gathered segments as items, by id."""
        return [self._item(seg_id, self.live[seg_id]) for seg_id in sorted(self.live)]

    def _item(self, seg_id, live):
        bridge = live.bridge
        item = {"id": seg_id, "mode": "flat", "bridge": bridge["ifname"],
                "gateway": sorted(live.addresses)[0] if live.addresses else None, "mtu": bridge.get("mtu")}
        uplink = live.uplink
        if uplink is None:
            return item
        if _kind(uplink) == "vlan":
            item["mode"] = "vlan"
            item["trunk"] = uplink.get("link")
            return item
        spec = _live_spec(uplink)
        item.update(mode="vxlan", local=spec[3], dev=spec[4], port=spec[5], group=spec[6])
        # the group's own default entry is how multicast flooding works, not a peer
        item["peers"] = sorted(set(p for p in live.peers if p != item["group"]), key=netaddr.IPAddress)
        item["interconnect"], item["interconnect_port"] = [], None
        if live.interconnect is not None:
            item["interconnect"] = sorted(set(live.interconnect_peers), key=netaddr.IPAddress)
            item["interconnect_port"] = _live_spec(live.interconnect)[5]
        return item

    # -------------------------------------------------------------- plan
    def plan(self, before, after, force=False):
        """The commands from ``before`` (gathered) to ``after``: removals, new links (down, no
        IPv6), their configuration, gateways, then VXLAN flood lists. Empty when nothing differs.

        IPv6 is switched off on each new link before it comes up: bringing thousands of links
        up with IPv6 adds a multicast route per link, which the kernel inserts in time growing
        with the number already there (4,000 segments: 40 s instead of 3 s). Segments are IPv4.
        """
        gathered = self.links is not None
        links = self.links or {}
        live = self.live if gathered else {}
        before_by_id = dict((i["id"], i) for i in before)
        check_names(after)
        out = _Plan()
        removed = set()

        def remove_segment(seg_id):
            info = live.get(seg_id)
            if info is None:
                return
            ports = [port["ifname"] for port in (info.uplink, info.interconnect) if port is not None]
            for name in ports + info.extras:
                out.remove.append("ip link delete dev %s" % name)
                removed.add(name)
            out.remove.append("ip link delete dev %s" % info.bridge["ifname"])
            removed.add(info.bridge["ifname"])

        after_ids = set(i["id"] for i in after)
        needed = set()
        for item in after:
            needed.update(n for n in (item["bridge"], uplink_name(item), interconnect_name(item)) if n)
        for name in self.orphans:
            out.remove.append("ip link delete dev %s" % name)
            removed.add(name)
        for seg_id in sorted(before_by_id):
            if seg_id not in after_ids:
                remove_segment(seg_id)

        creating = []
        for item in after:
            old = before_by_id.get(item["id"])
            if old is None or old["bridge"] != item["bridge"]:
                if old is not None:
                    remove_segment(item["id"])
                creating.append(item["bridge"])
                creating.extend(n for n in (uplink_name(item), interconnect_name(item)) if n)
                out.new_segment(item)
                continue
            self._plan_change(out, item, old, live[item["id"]], removed, creating)

        if gathered:
            self._check_devices(after, set(creating))
        for name in creating:
            link = links.get(name)
            if link is not None and name not in removed:
                raise Conflict("cannot create %s for a segment: a %s link of that name already exists%s and is not a "
                               "segment's; rename or remove it, or give the segment another bridge name"
                               % (name, _kind(link) or "network", self._where()))
        out.filter = self._plan_filter(after, force)
        return out.commands()

    def _plan_filter(self, after, force=False):
        """The nft commands that make our interconnect table what ``after`` needs: the whole table
        in one transaction when it differs, its removal when no segment has an interconnect."""
        ruleset = interconnect_ruleset(after)
        listing = self.filter
        if ruleset is None:
            if listing is not None and listing.owned:
                return ["nft delete table bridge %s" % INTERCONNECT_TABLE]
            return []
        if ruleset.matches(listing) and not force:
            return []
        return ["nft " + line for line in ruleset.commands(None)]

    def same(self, old, new):
        """A segment without an MTU of its own keeps whatever MTU the kernel gave it."""
        if new.get("mtu") is None:
            old = dict(old, mtu=None)
        return old == new

    def _where(self):
        return " in namespace %s" % self.namespace if self.namespace else ""

    def _check_devices(self, after, creating):
        """Refuse trunks and underlay devices of uplinks to create that do not exist here."""
        for item in after:
            if uplink_name(item) not in creating and interconnect_name(item) not in creating:
                continue
            for field in ("trunk", "dev"):
                name = item.get(field)
                if name and name not in self.links:
                    raise InvalidInput("segment %d: %s %s does not exist%s (ip link show); create it or fix %s"
                                       % (item["id"], "trunk NIC" if field == "trunk" else "underlay device", name,
                                          self._where(), field))

    def _plan_change(self, out, item, old, info, removed, creating):
        """Commands that turn an existing segment (same bridge) into ``item``."""
        bridge = item["bridge"]
        sets = []
        if info.bridge.get("ifalias") != ALIAS % item["id"]:
            sets.append("alias %s" % (ALIAS % item["id"]))
        if item["mtu"] and old["mtu"] != item["mtu"]:
            sets.append("mtu %d" % item["mtu"])
        if "UP" not in info.bridge.get("flags", []):
            sets.append("up")
        if sets:
            out.configure.append("ip link set dev %s %s" % (bridge, " ".join(sets)))

        for name in info.extras:
            out.remove.append("ip link delete dev %s" % name)
            removed.add(name)
        want = _uplink_spec(item)
        have = _live_spec(info.uplink) if info.uplink else None
        if info.extras or have != want or _interconnect_spec(item) != (
                _live_spec(info.interconnect) if info.interconnect else None):
            self._pin_bridge(out, info.bridge)
        if have != want:
            if info.uplink is not None:
                out.remove.append("ip link delete dev %s" % info.uplink["ifname"])
                removed.add(info.uplink["ifname"])
            if want is not None:
                creating.append(uplink_name(item))
                out.new_uplink(item)
        elif want is not None:
            uplink = info.uplink
            _repair_port(out, uplink, UPLINK_ALIAS % item["id"], bridge, item["mtu"])
            if item["mode"] == "vxlan":
                _flood_changes(out, uplink["ifname"], old.get("peers") or [], item["peers"])

        self._plan_interconnect(out, item, info, removed, creating)
        for address in sorted(info.addresses):
            if address != item["gateway"]:
                out.unaddress.append("ip address delete %s dev %s" % (address, bridge))
        if item["gateway"] and item["gateway"] not in info.addresses:
            out.address.append("ip address add %s dev %s" % (item["gateway"], bridge))

    @staticmethod
    def _pin_bridge(out, bridge):
        """Keep the bridge's MAC address while ports of ours come and go on it.

        A bridge whose address was never set takes the lowest MAC of its ports, so adding or
        removing an uplink or interconnect port would change the gateway's MAC under the
        instances' ARP caches (they would lose their gateway until the entries expire). Setting
        the address it has marks it as set, and the kernel then keeps it.
        """
        if bridge.get("address"):
            out.pin.append("ip link set dev %s address %s" % (bridge["ifname"], bridge["address"]))

    @staticmethod
    def _plan_interconnect(out, item, info, removed, creating):
        """Commands that turn the interconnect port of an existing segment into ``item``'s."""
        want = _interconnect_spec(item)
        port = info.interconnect
        have = _live_spec(port) if port is not None else None
        if have != want:
            if port is not None:
                out.remove.append("ip link delete dev %s" % port["ifname"])
                removed.add(port["ifname"])
            if want is not None:
                creating.append(interconnect_name(item))
                out.new_interconnect(item)
            return
        if want is None:
            return
        _repair_port(out, port, INTERCONNECT_ALIAS % item["id"], item["bridge"], item["mtu"])
        _flood_changes(out, port["ifname"], info.interconnect_peers, item["interconnect"])

    # -------------------------------------------------------------- apply
    def apply(self, plan, after, generation):
        """Run the plan: each run of consecutive commands of one program is one batch process."""
        for tool, lines in batches(plan):
            try:
                if tool == "ip":
                    run(["ip", "-batch", "-"], namespace=self.namespace, data="\n".join(lines) + "\n")
                elif tool == "nft":
                    rules.nft_load(lines, self.namespace)
                elif tool == "bridge":
                    run(["bridge", "-batch", "-"], namespace=self.namespace, data="\n".join(lines) + "\n")
                else:
                    # -e: a kernel without IPv6 has no such keys, and then nothing needs switching off
                    run(["sysctl", "-e", "-q", "-p", "/dev/stdin"], namespace=self.namespace,
                        data="".join("%s = %s\n" % tuple(line.split("=", 1)) for line in lines))
            except CommandFailed as exc:
                raise _explain(exc, lines)

    # -------------------------------------------------------------- render
    def render(self, items, generation):
        """The batches that build ``items`` on a host that has none of them (offline)."""
        return render_batches(self.plan([], items))


def batches(plan):
    """``plan`` as ``[(program, [batch lines])]``: consecutive commands of a program go together."""
    out = []
    for command in plan:
        tool, rest = command.split(" ", 1)
        if tool not in TOOLS:
            raise EucaError("internal error: a segment plan holds an unknown command %r" % command)
        if tool == "sysctl":
            rest = rest[len("-w "):]
        if out and out[-1][0] == tool:
            out[-1][1].append(rest)
        else:
            out.append((tool, [rest]))
    return out


def render_batches(plan):
    """The plan as the text of its batches, each headed by the command that reads it."""
    heads = {"ip": "# ip -batch -", "sysctl": "# sysctl -e -p /dev/stdin", "bridge": "# bridge -batch -",
             "nft": "# nft -f -"}
    text = []
    for tool, lines in batches(plan):
        text.append(heads[tool])
        if tool == "sysctl":
            lines = ["%s = %s" % tuple(line.split("=", 1)) for line in lines]
        text.extend(lines)
    return "\n".join(text) + ("\n" if text else "")


def _explain(exc, lines):
    """A batch failure, with what the kernel is missing when that is the cause."""
    msg = exc.msg
    if "Unknown device type" in msg:
        kinds = [k for k in ("vlan", "vxlan") if any(" type %s " % k in line for line in lines)]
        if "vlan" in kinds:
            msg += ("\nThe kernel has no 802.1Q support (CONFIG_VLAN_8021Q; try modprobe 8021q): vlan segments "
                    "cannot be made on this host; use mode vxlan or flat.")
        elif "vxlan" in kinds:
            msg += "\nThe kernel has no VXLAN support (CONFIG_VXLAN; try modprobe vxlan)."
    elif any(line.startswith("add table bridge ") for line in lines) and (
            "Operation not supported" in msg or "No such file or directory" in msg):
        msg += ("\nThe kernel may lack nftables' bridge family (CONFIG_NF_TABLES_BRIDGE; try modprobe nft_bridge "
                "or nf_tables_bridge): segment interconnects need it to keep gateway ARP and DHCP in their cluster.")
    msg += ("\nLinks made before the failing line stay; fix the cause and run again: the module converges from "
            "what is there.")
    return EucaError(msg, **exc.details)
