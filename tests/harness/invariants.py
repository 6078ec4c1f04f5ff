"""Does the all-in-one cloud's ledger agree with its hosts? ``violations(cloud)`` says where not.

It reads the ledger (SQLite, read-only) and, independently of the modules that converge them, what
the hosts of an all-in-one sandbox hold: libvirt's domains (state, MACs, bridges, taps, volume
disks), dnsmasq's reservations and leases, the bridges and VXLAN ports in the cloud's namespace, the
nft tables euca_filter and euca_nat and the elastic IPs on the public interface, tgtd's targets and
their ACLs, the volume and snapshot files on the SC and the instance directories on the NC. What the
CC should hold is worked out from the cluster's slice of the ledger with the project's own view
(module_utils.net.ledger_view), what the NC and SC should hold from the ledger's rows.

Each violation is one line that starts with its kind: ``pending``, ``missing`` (the ledger has it, a
host does not), ``leak`` (a host has it, the ledger does not), ``mismatch``, ``ledger`` (the ledger
contradicts itself).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from ipaddress import ip_address, ip_network

from ansible_collections.euca.cloud.plugins.module_utils.ledger import db, slices
from ansible_collections.euca.cloud.plugins.module_utils.net import ledger_view

GIB = 1 << 30
TAP = re.compile(r"^ei[0-9a-f]{8}n\d+$")
TARGET_PREFIX = "iqn.2010-05.cloud.euca:"


@dataclass
class Cloud:
    """Where an all-in-one sandbox keeps things (harness.sandbox.sandbox_vars gives the values)."""

    ledger: str
    namespace: str
    libvirt_uri: str
    dhcp_dir: str
    tgt_socket: str
    volumes_dir: str
    instances_dir: str
    cluster: str = "cluster_a"
    public_interface: str = "pub"
    storage_address: str = "127.0.0.1"

    @classmethod
    def from_vars(cls, extravars: dict) -> "Cloud":
        return cls(ledger=extravars["euca_ledger"], namespace=extravars["euca_namespace"],
                   libvirt_uri="qemu+unix:///system?socket=%s/run/libvirt-sock" % extravars["nc_libvirtd_state_dir"],
                   dhcp_dir=extravars["euca_dhcp_state_dir"], tgt_socket=extravars["sc_tgt_socket"],
                   volumes_dir=extravars["sc_volumes_dir"], instances_dir=extravars["nc_instances_dir"])


def _ns(cloud, *argv):
    return subprocess.run(["ip", "netns", "exec", cloud.namespace, *argv], capture_output=True, text=True,
                          timeout=180, check=True).stdout


def read_ledger(cloud):
    """The whole cloud (terminated instances included) and the cluster's slice."""
    with db.Ledger(cloud.ledger) as ledger:
        with ledger.read() as txn:
            return (slices.read_slice(txn, "cloud", include_terminated=True),
                    slices.read_slice(txn, "cluster", cloud.cluster))


def read_domains(cloud):
    """name -> {active, macs: {mac: bridge}, taps, volumes: {live, config}} of every libvirt domain."""
    import libvirt
    from xml.etree import ElementTree

    conn = libvirt.open(cloud.libvirt_uri)
    try:
        out = {}
        for dom in conn.listAllDomains():
            seen = {"active": bool(dom.isActive()), "macs": {}, "taps": set(), "volumes": {}}
            for place, flags in (("live", 0), ("config", libvirt.VIR_DOMAIN_XML_INACTIVE)):
                if place == "live" and not seen["active"]:
                    continue
                xml = ElementTree.fromstring(dom.XMLDesc(flags))
                vols = {}
                for disk in xml.findall("./devices/disk"):
                    alias = disk.find("alias")
                    target = disk.find("target")
                    if alias is not None and alias.get("name", "").startswith("ua-vol-"):
                        vols[alias.get("name")[len("ua-vol-"):]] = "/dev/" + target.get("dev")
                seen["volumes"][place] = vols
                if place == "live" or not seen["active"]:
                    for nic in xml.findall("./devices/interface"):
                        mac = nic.find("mac").get("address")
                        source = nic.find("source")
                        seen["macs"][mac] = source.get("bridge") if source is not None else None
                        target = nic.find("target")
                        if place == "live" and target is not None:
                            seen["taps"].add(target.get("dev"))
            out[dom.name()] = seen
        return out
    finally:
        conn.close()


def read_dhcp(cloud):
    """(reservations {(mac, ip, name)}, leases {(mac, ip)}, dnsmasq alive, interfaces in its config)."""
    reservations, leases, interfaces = set(), set(), set()
    hosts = os.path.join(cloud.dhcp_dir, "hosts")
    if os.path.exists(hosts):
        for line in open(hosts):
            line = line.strip()
            if line and not line.startswith("#"):
                mac, ip, name = (line.split(",") + ["", ""])[:3]
                reservations.add((mac.lower(), ip, name))
    lease_file = os.path.join(cloud.dhcp_dir, "leases")
    if os.path.exists(lease_file):
        for line in open(lease_file):
            parts = line.split()
            if len(parts) >= 3:
                leases.add((parts[1].lower(), parts[2]))
    conf = os.path.join(cloud.dhcp_dir, "dnsmasq.conf")
    if os.path.exists(conf):
        interfaces = set(line.split("=", 1)[1].strip() for line in open(conf) if line.startswith("interface="))
    return reservations, leases, _dnsmasq_alive(cloud, conf), interfaces


def _dnsmasq_alive(cloud, conf):
    """A dnsmasq with this configuration runs in the cloud's namespace."""
    try:
        inode = os.stat("/run/netns/%s" % cloud.namespace).st_ino
    except OSError:
        return False
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if open("/proc/%s/comm" % pid).read().strip() != "dnsmasq":
                continue
            if os.stat("/proc/%s/ns/net" % pid).st_ino != inode:
                continue
            if conf in open("/proc/%s/cmdline" % pid).read().replace("\0", " "):
                return True
        except OSError:
            continue
    return False


def read_links(cloud):
    """name -> {kind, master, addresses} of every link in the cloud's namespace."""
    links = json.loads(_ns(cloud, "ip", "-d", "-j", "addr", "show"))
    out = {}
    for link in links:
        kind = (link.get("linkinfo") or {}).get("info_kind", "")
        out[link["ifname"]] = {"kind": kind, "master": link.get("master"),
                               "addresses": set("%s/%s" % (a["local"], a["prefixlen"]) for a in link.get("addr_info", [])
                                                if a.get("family") == "inet")}
    return out


def read_nft(cloud, table):
    """The text of ``nft list table ip TABLE`` in the cloud's namespace ('' when it is not there)."""
    got = subprocess.run(["ip", "netns", "exec", cloud.namespace, "nft", "list", "table", "ip", table],
                         capture_output=True, text=True, timeout=180)
    return got.stdout if got.returncode == 0 else ""


def _map_elements(text, name):
    match = re.search(r"map %s \{[^}]*?elements = \{([^}]*)\}" % name, text, re.S)
    if not match:
        return {}
    return dict(tuple(p.strip() for p in pair.split(":")) for pair in match.group(1).split(",") if pair.strip())


def read_targets(cloud):
    """target id -> {backing stores, ACL} of tgtd's iSCSI targets (None when tgtd does not answer)."""
    got = subprocess.run(["tgtadm", "-C", "0", "--lld", "iscsi", "--op", "show", "--mode", "target"],
                         env=dict(os.environ, TGT_IPC_SOCKET=cloud.tgt_socket), capture_output=True, text=True,
                         timeout=180)
    if got.returncode != 0:
        return None
    targets, current, section = {}, None, None
    for line in got.stdout.splitlines():
        head = re.match(r"^Target \d+: (\S+)", line)
        if head:
            current = targets.setdefault(head.group(1), {"stores": set(), "acl": set()})
            section = None
            continue
        if current is None:
            continue
        stripped = line.strip()
        if stripped.endswith("information:"):
            section = stripped
            continue
        if stripped.startswith("Backing store path:") and stripped.split(":", 1)[1].strip() not in ("None", ""):
            current["stores"].add(stripped.split(":", 1)[1].strip())
        elif section == "ACL information:" and stripped:
            current["acl"].add(stripped)
    return targets


def _files(directory):
    if not os.path.isdir(directory):
        return {}
    return dict((name[:-4], os.path.getsize(os.path.join(directory, name)))
                for name in os.listdir(directory) if name.endswith(".img"))


def _rule_key(rule, subnets):
    source = ("g", subnets.get(rule["source_group"], "?" + rule["source_group"])) if rule.get("source_group") \
        else ("c", rule["cidr"])
    if rule["protocol"] == "all":
        return ("all", -1, -1) + source
    return (rule["protocol"], rule["from_port"], rule["to_port"]) + source


def _filter_chains(text):
    """chain name -> {comment, rules [(proto, from, to, c|g, cidr or saddr)]} and the dispatch vmap."""
    chains, vmap, current = {}, {}, None
    for line in text.splitlines():
        line = line.strip()
        head = re.match(r"^chain (\S+) \{", line)
        if head:
            current = chains.setdefault(head.group(1), {"comment": None, "rules": []}) \
                if head.group(1).startswith("sg-") else None
            continue
        vm = re.search(r"ip daddr vmap \{(.*)\}", line)
        if vm:
            for pair in vm.group(1).split(","):
                if ":" in pair:
                    net, verdict = pair.split(":", 1)
                    vmap[net.strip()] = verdict.strip().replace("jump ", "")
            continue
        if current is None:
            continue
        if line.startswith("comment "):
            current["comment"] = line.split(None, 1)[1].strip('"')
            continue
        rule = re.search(r'comment "\S+ r (\S+) (-?\d+) (-?\d+) ([cg]) (\S+)"', line)
        if rule:
            proto, lo, hi, kind, ref = rule.groups()
            if kind == "g":
                saddr = re.match(r"ip saddr (\S+)", line)
                ref = saddr.group(1) if saddr else "?"
            current["rules"].append((proto, int(lo), int(hi), kind, ref))
    return chains, vmap


def violations(cloud: Cloud, lease_wait: float = 0.0) -> list:
    """Every disagreement between the ledger and the hosts (empty: they agree).

    ``lease_wait``: seconds to wait for running instances that have no DHCP lease yet (a guest
    started just now asks for one a few seconds into its boot)."""
    deadline = time.monotonic() + lease_wait
    while True:
        found = _violations(cloud)
        waiting = [v for v in found if v.startswith("missing: lease")]
        if not waiting or len(waiting) != len(found) or time.monotonic() >= deadline:
            return found
        time.sleep(1)


def _violations(cloud: Cloud) -> list:
    out = []
    whole, cluster = read_ledger(cloud)
    instances = dict((i["id"], i) for i in whole["instances"])
    live = dict((k, v) for k, v in instances.items() if v["state"] != "terminated")
    groups = dict((g["name"], g) for g in whole["security_groups"])
    volumes = dict((v["id"], v) for v in whole["volumes"])

    # the ledger against itself
    for inst in live.values():
        if inst["state"] == "pending":
            out.append("pending: instance %s (%s) is still pending" % (inst["id"], inst["name"]))
    for eip in whole["elastic_ips"]:
        if eip["instance"] and eip["instance"] not in live:
            out.append("ledger: elastic IP %s is held by %s instance %s" % (
                eip["public_ip"], instances.get(eip["instance"], {}).get("state", "unknown"), eip["instance"]))
    for vol in volumes.values():
        att = vol["attachment"]
        if (vol["state"] == "in-use") != bool(att):
            out.append("ledger: volume %s is %s with attachment %s" % (vol["id"], vol["state"], att))
        if att and att["instance"] not in live:
            out.append("ledger: volume %s is attached to %s instance %s" % (
                vol["id"], instances.get(att["instance"], {}).get("state", "unknown"), att["instance"]))

    # the node: domains, taps, volume disks, instance directories
    domains = read_domains(cloud)
    for inst in live.values():
        dom = domains.get(inst["id"])
        group = groups.get(inst["group"])
        if inst["state"] == "pending":
            if dom is not None and dom["active"]:
                out.append("pending: instance %s is pending in the ledger but its domain runs" % inst["id"])
            continue
        if dom is None:
            out.append("missing: domain of %s instance %s" % (inst["state"], inst["id"]))
            continue
        if dom["active"] != (inst["state"] == "running"):
            out.append("mismatch: instance %s is %s in the ledger, its domain is %s" % (
                inst["id"], inst["state"], "running" if dom["active"] else "shut off"))
        want_bridge = "eubr-%d" % group["segment_id"] if group else None
        if dom["macs"] != {inst["mac"]: want_bridge}:
            out.append("mismatch: domain %s has NICs %s, the ledger says %s on %s" % (
                inst["id"], dom["macs"], inst["mac"], want_bridge))
        want_vols = dict((v["id"], v["attachment"]["device"]) for v in volumes.values()
                         if v["attachment"] and v["attachment"]["instance"] == inst["id"])
        for place, got in sorted(dom["volumes"].items()):
            if got != want_vols:
                out.append("mismatch: domain %s has volume disks %s (%s), the ledger attaches %s" % (
                    inst["id"], got, place, want_vols))
    for name, dom in sorted(domains.items()):
        if name not in live:
            out.append("leak: domain %s (%s) is not a live instance in the ledger" % (
                name, "running" if dom["active"] else "shut off"))
    if os.path.isdir(cloud.instances_dir):
        for name in sorted(os.listdir(cloud.instances_dir)):
            if name not in domains and name not in live:
                out.append("leak: instance directory %s of no domain and no live instance" % name)

    links = read_links(cloud)
    taps = set(name for name in links if TAP.match(name))
    want_taps = {}
    for name, dom in domains.items():
        if dom["active"]:
            for tap in dom["taps"]:
                want_taps[tap] = next(iter(dom["macs"].values()), None)
    for tap in sorted(taps - set(want_taps)):
        out.append("leak: tap %s of no running domain" % tap)
    for tap, bridge in sorted(want_taps.items()):
        if tap in links and links[tap]["master"] != bridge:
            out.append("mismatch: tap %s is on %s, its domain's NIC on %s" % (tap, links[tap]["master"], bridge))

    # the CC: segments, DHCP, filter, NAT, elastic IPs, from the cluster's slice
    want = ledger_view.cc_config(cluster)
    bridges = set(n for n, link in links.items() if n.startswith("eubr-") and link["kind"] == "bridge")
    want_bridges = dict((s["bridge"], s.get("gateway")) for s in want["segments"])
    for bridge in sorted(set(want_bridges) - bridges):
        out.append("missing: segment bridge %s" % bridge)
    for bridge in sorted(bridges - set(want_bridges)):
        out.append("leak: segment bridge %s of no group in the ledger" % bridge)
    for bridge, gateway in sorted(want_bridges.items()):
        if bridge in links and gateway and gateway not in links[bridge]["addresses"]:
            out.append("mismatch: bridge %s has %s, not gateway %s" % (bridge, sorted(links[bridge]["addresses"]), gateway))
    want_vxlan = set("vxlan%d" % s["id"] for s in want["segments"] if s["mode"] == "vxlan")
    vxlans = set(n for n, link in links.items() if link["kind"] == "vxlan" and n.startswith("vxlan"))
    for port in sorted(want_vxlan ^ vxlans):
        out.append(("missing: VXLAN port %s" if port in want_vxlan else "leak: VXLAN port %s of no segment") % port)

    reservations, leases, dnsmasq_alive, interfaces = read_dhcp(cloud)
    want_res = set((h["mac"].lower(), h["ip"], h["hostname"]) for seg in want["dhcp"] for h in seg["hosts"])
    for res in sorted(want_res - reservations):
        out.append("missing: DHCP reservation %s" % (res,))
    for res in sorted(reservations - want_res):
        out.append("leak: DHCP reservation %s of no live instance" % (res,))
    if want["dhcp"] and not dnsmasq_alive:
        out.append("missing: dnsmasq is not running")
    want_ifaces = set(seg["interface"] for seg in want["dhcp"])
    if interfaces != want_ifaces:
        out.append("mismatch: dnsmasq serves %s, the ledger's segments are %s" % (sorted(interfaces), sorted(want_ifaces)))
    reserved_ip = dict((ip, mac) for mac, ip, _ in reservations)
    for mac, ip in sorted(leases):
        if ip in reserved_ip and reserved_ip[ip] != mac:
            out.append("leak: lease of %s still held by %s, reserved for %s" % (ip, mac, reserved_ip[ip]))
    for inst in live.values():
        if inst["state"] == "running" and (inst["mac"].lower(), inst["private_ip"]) not in leases:
            out.append("missing: lease of %s for running instance %s" % (inst["private_ip"], inst["id"]))

    nat = read_nft(cloud, "euca_nat")
    want_dnat = dict((m["public_ip"], m["private_ip"]) for m in want["nat"])
    dnat, snat = _map_elements(nat, "eip_dnat"), _map_elements(nat, "eip_snat")
    if not nat:
        out.append("missing: nft table euca_nat")
    if dnat != want_dnat:
        out.append("mismatch: NAT eip_dnat is %s, the ledger maps %s" % (dnat, want_dnat))
    if snat != dict((b, a) for a, b in want_dnat.items()):
        out.append("mismatch: NAT eip_snat is %s, the ledger maps %s" % (snat, want_dnat))
    pool = [ip_network(p, strict=False) for p in whole["settings"]["public_ips"]] if whole["settings"].get("public_ips") else []
    on_pub = set(a.split("/")[0] for a in links.get(cloud.public_interface, {}).get("addresses", ())
                 if a.endswith("/32") and any(ip_address(a.split("/")[0]) in net for net in pool))
    for addr in sorted(on_pub - set(want_dnat)):
        out.append("leak: elastic IP %s on %s maps to no live instance" % (addr, cloud.public_interface))
    for addr in sorted(set(want_dnat) - on_pub):
        out.append("missing: elastic IP %s on %s" % (addr, cloud.public_interface))

    text = read_nft(cloud, "euca_filter")
    if not text:
        out.append("missing: nft table euca_filter")
    chains, vmap = _filter_chains(text)
    subnets = dict((g["name"], g["subnet"]) for g in whole["security_groups"])
    want_chains = dict(("sg-" + g["name"], g) for g in want["firewall"])
    for chain in sorted(set(chains) - set(want_chains)):
        out.append("leak: filter chain %s of no group in the cluster's slice" % chain)
    for chain, group in sorted(want_chains.items()):
        if chain not in chains:
            out.append("missing: filter chain %s" % chain)
            continue
        if vmap.get(group["subnet"]) != chain:
            out.append("mismatch: filter sends %s to %s, not %s" % (group["subnet"], vmap.get(group["subnet"]), chain))
        got = sorted(chains[chain]["rules"])
        expected = sorted(_rule_key(r, subnets) for r in group["rules"])
        if got != expected:
            out.append("mismatch: filter chain %s has rules %s, the ledger says %s" % (chain, got, expected))
    for net, chain in sorted(vmap.items()):
        if chain not in want_chains:
            out.append("leak: filter dispatches %s to %s of no group" % (net, chain))

    # the SC: exports, volume and snapshot files
    targets = read_targets(cloud)
    attached = dict((v["id"], v) for v in volumes.values() if v["attachment"])
    if targets is None:
        if attached:
            out.append("missing: tgtd does not answer (%d volumes attached)" % len(attached))
        targets = {}
    exported = dict((name[len(TARGET_PREFIX):], t) for name, t in targets.items() if name.startswith(TARGET_PREFIX))
    for vol_id in sorted(set(attached) - set(exported)):
        out.append("missing: export of attached volume %s" % vol_id)
    for vol_id in sorted(set(exported) - set(attached)):
        out.append("leak: export of volume %s, which the ledger has not attached" % vol_id)
    for name in sorted(set(targets) - set(TARGET_PREFIX + v for v in exported)):
        out.append("leak: iSCSI target %s" % name)
    for vol_id in sorted(set(attached) & set(exported)):
        target = exported[vol_id]
        want_store = os.path.join(cloud.volumes_dir, vol_id + ".img")
        if target["stores"] != {want_store}:
            out.append("mismatch: export of %s serves %s, not %s" % (vol_id, sorted(target["stores"]), want_store))
        if target["acl"] != {cloud.storage_address}:
            out.append("mismatch: export of %s admits %s, not the node %s" % (vol_id, sorted(target["acl"]),
                                                                              cloud.storage_address))
    files = _files(cloud.volumes_dir)
    for vol_id in sorted(set(volumes) - set(files)):
        out.append("missing: storage of volume %s" % vol_id)
    for vol_id in sorted(set(files) - set(volumes)):
        out.append("leak: volume file %s.img of no volume in the ledger" % vol_id)
    for vol_id in sorted(set(files) & set(volumes)):
        if files[vol_id] != volumes[vol_id]["size_gb"] * GIB:
            out.append("mismatch: volume %s has %d bytes, not %d GiB" % (vol_id, files[vol_id], volumes[vol_id]["size_gb"]))
    for directory in (cloud.volumes_dir, os.path.join(cloud.volumes_dir, "snapshots")):
        if os.path.isdir(directory):
            for name in sorted(os.listdir(directory)):
                if name.endswith(".partial"):
                    out.append("leak: unfinished file %s" % os.path.join(directory, name))
    snaps = dict((s["id"], s) for s in whole["snapshots"])
    snap_files = _files(os.path.join(cloud.volumes_dir, "snapshots"))
    for snap_id in sorted(set(snaps) - set(snap_files)):
        out.append("missing: storage of snapshot %s" % snap_id)
    for snap_id in sorted(set(snap_files) - set(snaps)):
        out.append("leak: snapshot file %s.img of no snapshot in the ledger" % snap_id)
    for snap_id in sorted(set(snap_files) & set(snaps)):
        if snap_files[snap_id] != snaps[snap_id]["size_gb"] * GIB:
            out.append("mismatch: snapshot %s has %d bytes, not %d GiB" % (snap_id, snap_files[snap_id],
                                                                          snaps[snap_id]["size_gb"]))
    return out


def assert_none(cloud: Cloud, where: str, lease_wait: float = 0.0) -> None:
    found = violations(cloud, lease_wait=lease_wait)
    if found:
        raise AssertionError("%s: the ledger and the hosts disagree:\n  %s" % (where, "\n  ".join(found)))
