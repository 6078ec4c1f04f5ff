# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Volumes as an instance's disks: where the bytes come from (a ``source``) and the disk XML.

A source is what the storage controller's export returns (sc_export's ``export.source``):
  {protocol: iscsi, host, port, target, lun}  QEMU's own iSCSI initiator (libiscsi) connects
                                              from the node; no host initiator is needed
  {protocol: file|block, path}                a file or block device on the node (an LV, or an
                                              AoE/iSCSI device a host initiator made)
  {protocol: aoe, path}                       the host's AoE device (/dev/etherd/eX.Y)
  {protocol: rbd, pool, image, hosts, user,   a Ceph RBD image that QEMU's librbd opens from the
   secret}                                    node, over the storage network, straight from the
                                              OSDs (not through the SC): hosts are the monitors
                                              ({host, port}), user the node's cephx client and
                                              secret the uuid of the libvirt secret holding its
                                              key (nc_ceph_secret)

Each volume disk carries the alias ``ua-vol-<id>`` (so nc_instance leaves it alone when it
redefines a domain) and the volume id as its serial (so the guest finds it as
/dev/disk/by-id/virtio-<id> whatever name the guest's kernel gives it).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import xml.etree.ElementTree as ET

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.model import names

ALIAS_PREFIX = "ua-vol-"
PROTOCOLS = ("iscsi", "file", "block", "aoe", "rbd")
RBD_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\Z")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def check_volume(volume):
    return names.check_id("volume", volume, "volume")


def check_device(device):
    """``/dev/vdc`` or ``vdc`` as libvirt's target name ``vdc`` (vda is the root disk, vdz the seed)."""
    return names.device_target(device)


def check_source(source):
    """A source, normalised (every key present); InvalidInput names what is missing."""
    if not isinstance(source, dict):
        raise InvalidInput("source must be a dict such as sc_export returns as export.source, not %r" % (source,))
    protocol = source.get("protocol")
    if protocol not in PROTOCOLS:
        raise InvalidInput("source.protocol must be one of %s, not %r" % (", ".join(PROTOCOLS), protocol))
    if protocol == "iscsi":
        missing = [k for k in ("host", "target") if not source.get(k)]
        if missing:
            raise InvalidInput("an iscsi source needs %s" % " and ".join(missing))
        try:
            port, lun = int(source.get("port") or 3260), int(source.get("lun") if source.get("lun") is not None else 1)
        except (TypeError, ValueError):
            raise InvalidInput("source.port and source.lun must be integers")
        return {"protocol": "iscsi", "host": str(source["host"]), "port": port, "target": str(source["target"]),
                "lun": lun}
    if protocol == "rbd":
        return _check_rbd(source)
    if not source.get("path") or not str(source["path"]).startswith("/"):
        raise InvalidInput("a %s source needs an absolute path" % protocol)
    return {"protocol": "file" if protocol == "file" else "block", "path": str(source["path"])}


def _check_rbd(source):
    for key in ("pool", "image"):
        if not RBD_NAME_RE.match(str(source.get(key) or "")):
            raise InvalidInput("an rbd source needs %s, a Ceph name (letters, digits, _ . -), not %r"
                               % (key, source.get(key)))
    hosts = []
    for host in source.get("hosts") or []:
        if not isinstance(host, dict) or not host.get("host"):
            raise InvalidInput("source.hosts of an rbd source are {host, port} of the Ceph monitors, not %r" % (host,))
        try:
            port = int(host.get("port") or 6789)
        except (TypeError, ValueError):
            raise InvalidInput("source.hosts: port %r is not a number" % (host.get("port"),))
        hosts.append({"host": str(host["host"]), "port": port})
    if not hosts:
        raise InvalidInput("an rbd source needs hosts: the Ceph monitors ({host, port}) the node reaches")
    user, secret = source.get("user"), source.get("secret")
    if bool(user) != bool(secret):
        raise InvalidInput("an rbd source gives user and secret (the libvirt secret's uuid) together, or neither")
    if secret and not UUID_RE.match(str(secret)):
        raise InvalidInput("source.secret must be the uuid of a libvirt secret (nc_ceph_secret), not %r" % (secret,))
    return {"protocol": "rbd", "pool": str(source["pool"]), "image": str(source["image"]), "hosts": hosts,
            "user": str(user) if user else None, "secret": str(secret) if secret else None}


def url(source):
    """One string for a source (how results and the domain spec show it)."""
    if source["protocol"] == "rbd":
        return "rbd://%s/%s/%s" % (",".join("%s:%d" % (h["host"], h["port"]) for h in source["hosts"]),
                                   source["pool"], source["image"])
    if source["protocol"] == "iscsi":
        return "iscsi://%s:%d/%s/%d" % (source["host"], source["port"], source["target"], source["lun"])
    return source["path"]


def from_url(text):
    """The source of a url() string."""
    match = re.match(r"^iscsi://([^/]+):(\d+)/(.+)/(\d+)$", text or "")
    if match:
        return {"protocol": "iscsi", "host": match.group(1), "port": int(match.group(2)), "target": match.group(3),
                "lun": int(match.group(4))}
    return {"protocol": "block" if (text or "").startswith("/dev/") else "file", "path": text}


def disk_element(source, target, alias, serial=None, fmt="raw"):
    """The <disk> element for ``source`` as guest disk ``target``."""
    kind = {"iscsi": "network", "rbd": "network"}.get(source["protocol"], source["protocol"])
    disk = ET.Element("disk", {"type": kind, "device": "disk"})
    driver = {"name": "qemu", "type": fmt}
    if kind != "file":
        driver["cache"] = "none"  # a shared volume: no host page cache between guest and target
    ET.SubElement(disk, "driver", driver)
    if source["protocol"] == "rbd":
        node = ET.SubElement(disk, "source", {"protocol": "rbd", "name": "%s/%s" % (source["pool"], source["image"])})
        for host in source["hosts"]:
            ET.SubElement(node, "host", {"name": host["host"], "port": str(host["port"])})
        if source["user"]:
            auth = ET.SubElement(node, "auth", {"username": source["user"]})
            ET.SubElement(auth, "secret", {"type": "ceph", "uuid": source["secret"]})
    elif kind == "network":
        node = ET.SubElement(disk, "source", {"protocol": "iscsi", "name": "%s/%d" % (source["target"], source["lun"])})
        ET.SubElement(node, "host", {"name": source["host"], "port": str(source["port"])})
    elif kind == "block":
        ET.SubElement(disk, "source", {"dev": source["path"]})
    else:
        ET.SubElement(disk, "source", {"file": source["path"]})
    ET.SubElement(disk, "target", {"dev": target, "bus": "virtio"})
    if serial:
        ET.SubElement(disk, "serial").text = serial
    ET.SubElement(disk, "alias", {"name": alias})
    return disk


def disk_xml(volume, source, device):
    """The XML libvirt attaches for ``volume``."""
    return ET.tostring(disk_element(source, device, ALIAS_PREFIX + volume, serial=volume), encoding="unicode")


def source_of(disk):
    """The source of a <disk> element as libvirt returns it (None when it has none)."""
    node = disk.find("source")
    if node is None:
        return None
    if disk.get("type") == "network" and node.get("protocol") == "rbd":
        pool, _sep, image = (node.get("name") or "").partition("/")
        auth = node.find("auth") if node.find("auth") is not None else disk.find("auth")
        secret = auth.find("secret") if auth is not None else None
        return {"protocol": "rbd", "pool": pool, "image": image,
                "hosts": [{"host": h.get("name"), "port": int(h.get("port") or 6789)} for h in node.findall("host")],
                "user": auth.get("username") if auth is not None else None,
                "secret": secret.get("uuid") if secret is not None else None}
    if disk.get("type") == "network":
        name, _sep, lun = (node.get("name") or "").rpartition("/")
        host = node.find("host")
        return {"protocol": node.get("protocol"), "host": host.get("name") if host is not None else None,
                "port": int(host.get("port") or 3260) if host is not None else 3260, "target": name,
                "lun": int(lun or 0)}
    if disk.get("type") == "block":
        return {"protocol": "block", "path": node.get("dev")}
    return {"protocol": "file", "path": node.get("file")}


def disks(xml):
    """``{target dev: {alias, volume, source, xml}}`` of a domain's disks."""
    found = {}
    for disk in ET.fromstring(xml).findall("devices/disk"):
        target = disk.find("target")
        alias = disk.find("alias")
        name = alias.get("name") if alias is not None else None
        found[target.get("dev") if target is not None else None] = {
            "alias": name,
            "volume": name[len(ALIAS_PREFIX):] if name and name.startswith(ALIAS_PREFIX) else None,
            "source": source_of(disk),
            "xml": ET.tostring(disk, encoding="unicode"),
        }
    return found


def find_volume(xml, volume):
    """``(device, disk)`` of ``volume`` in a domain's XML, or ``(None, None)``."""
    for device, disk in disks(xml).items():
        if disk["volume"] == volume:
            return device, disk
    return None, None
