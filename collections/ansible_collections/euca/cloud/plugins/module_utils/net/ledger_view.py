# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a cluster controller or a node controller must converge, from a ledger slice.

Pure functions from a ``ledger_info`` slice (cluster or node scope) to the ``config`` of
the segment, dhcp, nat and firewall modules, so the data plane is always rebuilt from the
ledger and never from what a host remembers.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.ledger.accounts import group_display
from ansible_collections.euca.cloud.plugins.module_utils.model import network as model_network


def _prefix(subnet):
    return subnet.split("/", 1)[1]


def _check(slice_):
    for key in ("settings", "security_groups", "instances", "elastic_ips", "generation"):
        if key not in slice_:
            raise InvalidInput("not a ledger slice (no %r): pass what euca.cloud.ledger_info returns" % key)


def segments(slice_, gateways=True, peers=None):
    """Segment items for every security group in the slice (with the CC's gateway address)."""
    _check(slice_)
    mode = slice_["settings"]["network_mode"]
    out = []
    for group in slice_["security_groups"]:
        item = {"id": group["segment_id"], "mode": mode, "bridge": model_network.bridge_name(group["segment_id"])}
        if gateways:
            item["gateway"] = "%s/%s" % (group["gateway"], _prefix(group["subnet"]))
        if mode == "vxlan" and peers:
            item["peers"] = list(peers)
        out.append(item)
    return out


def dhcp(slice_):
    """DHCP items: one per segment, with a reservation for each live instance in it."""
    _check(slice_)
    hosts = {}
    for instance in slice_["instances"]:
        if instance["state"] == "terminated":
            continue
        hosts.setdefault(instance["group"], []).append(
            {"mac": instance["mac"], "ip": instance["private_ip"], "hostname": instance["id"]})
    out = []
    for group in slice_["security_groups"]:
        out.append({
            "id": group["segment_id"],
            "interface": model_network.bridge_name(group["segment_id"]),
            "subnet": group["subnet"],
            "gateway": group["gateway"],
            "hosts": sorted(hosts.get(group["name"], []), key=lambda h: h["ip"]),
        })
    return out


def nat(slice_):
    """Elastic-IP mappings of the slice's instances."""
    _check(slice_)
    private = dict((i["id"], i["private_ip"]) for i in slice_["instances"] if i["state"] != "terminated")
    return [{"public_ip": e["public_ip"], "private_ip": private[e["instance"]]}
            for e in slice_["elastic_ips"] if e["instance"] in private]


def firewall(slice_):
    """Firewall groups: every security group in the slice with its subnet and rules."""
    _check(slice_)
    out = []
    for group in slice_["security_groups"]:
        rules = []
        for rule in group["rules"]:
            item = {"protocol": rule["protocol"]}
            if rule["protocol"] != "all":
                item.update(from_port=rule["from_port"], to_port=rule["to_port"])
            for key in ("cidr", "source_group"):
                if rule.get(key):
                    item[key] = rule[key]
            rules.append(item)
        out.append({"name": group["name"], "subnet": group["subnet"], "rules": rules})
    return out


#: the region every cluster of the cloud is an availability zone of (EC2's word; Eucalyptus had one)
REGION = "eucalyptus"


def _public_keys(inst):
    if not inst.get("public_key"):
        return []
    return [{"name": inst.get("key_name") or "key", "key": inst["public_key"]}]


def metadata(slice_):
    """What the CC's metadata service answers each live instance with (euca.cloud.cc_metadata
    ``instances``): identified by its segment's gateway and interface on the CC and its own
    address and MAC; everything else from the ledger."""
    _check(slice_)
    group_of = dict((g["name"], g) for g in slice_["security_groups"])
    public = dict((e["instance"], e["public_ip"]) for e in slice_["elastic_ips"] if e.get("instance"))
    image_of = dict((i["id"], i) for i in slice_["images"])
    out = []
    for inst in slice_["instances"]:
        if inst["state"] == "terminated" or not inst.get("private_ip") or not inst.get("mac"):
            continue
        group = group_of.get(inst["group"])
        if group is None:
            continue
        image = image_of.get(inst["image_id"]) or {}
        out.append({
            "id": inst["id"],
            "gateway": group["gateway"],
            "interface": model_network.bridge_name(group["segment_id"]),
            "private_ip": inst["private_ip"],
            "mac": inst["mac"],
            "image_id": inst["image_id"],
            "kernel_id": image.get("kernel_id"),
            "ramdisk_id": image.get("ramdisk_id"),
            "instance_type": inst["instance_type"],
            "reservation_id": inst["reservation_id"],
            "launch_index": inst["launch_index"],
            "hostname": inst["id"],
            "local_hostname": inst["id"],
            "public_ip": public.get(inst["id"]),
            "availability_zone": inst["cluster"],
            "region": REGION,
            "account": inst.get("account") or "admin",
            "security_groups": [group_display(inst["group"])],
            "public_keys": _public_keys(inst),
            "user_data": inst.get("user_data"),
        })
    return out


def cc_config(slice_, peers=None):
    """Everything a CC converges: ``segments``, ``dhcp``, ``nat`` (with the pool and the
    private network for default SNAT), ``firewall`` and the ``generation``."""
    _check(slice_)
    settings = slice_["settings"]
    return {
        "generation": slice_["generation"],
        "segments": segments(slice_, gateways=True, peers=peers),
        "dhcp": dhcp(slice_),
        "nat": nat(slice_),
        "public_ips": list(settings["public_ips"]),
        "private_networks": [settings["private_network"]],
        "firewall": firewall(slice_),
        "metadata": metadata(slice_),
    }


def nc_instances(slice_):
    """The euca.cloud.nc_instance options of the slice's live instances (ARCHITECTURE §4 step 3).

    Machine image, kernel and ramdisk by id; the group's segment bridge with the ledger's MAC;
    the ledger's cores, memory and disk. ``stopped`` instances stay defined but shut off.
    """
    segment_of = dict((g["name"], g["segment_id"]) for g in slice_["security_groups"])
    image_of = dict((i["id"], i) for i in slice_["images"])
    out = []
    for inst in slice_["instances"]:
        if inst["state"] == "terminated":
            continue
        image = image_of.get(inst["image_id"]) or {}
        spec = {
            "name": inst["id"],
            "state": "stopped" if inst["state"] == "stopped" else "running",
            "image": inst["image_id"],
            "kernel": image.get("kernel_id"),
            "ramdisk": image.get("ramdisk_id"),
            "vcpus": inst["cores"],
            "memory_mb": inst["memory_mb"],
            "root_size_gb": inst["disk_gb"],
            "hostname": inst["id"],
            "nics": [{"bridge": model_network.bridge_name(segment_of[inst["group"]]), "mac": inst["mac"]}] if inst["mac"] else [],
            "user_data": inst.get("user_data"),
            "public_keys": [k["key"] for k in _public_keys(inst)],
        }
        out.append(spec)
    return out


def nc_config(slice_, peers=None):
    """What an NC converges: its instances' segments (without gateways), the images they need
    (for euca.cloud.image_cache) and the instances (for euca.cloud.nc_instance)."""
    return {
        "generation": slice_["generation"],
        "segments": segments(slice_, gateways=False, peers=peers),
        "images": list(slice_["images"]),
        "instances": nc_instances(slice_),
    }
