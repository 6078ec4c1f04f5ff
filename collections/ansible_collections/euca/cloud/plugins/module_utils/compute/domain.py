# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An instance's libvirt domain: a normalised spec, its XML, and the spec read back from XML.

Idempotence compares spec with spec, never XML with XML: libvirt adds controllers, PCI
addresses, aliases and defaults to what it is given, so the XML it returns never equals the
XML it got. ``parse()`` reads back only what ``render()`` decides, which is also why devices
that are not ours (volumes hot-attached by the attachment module) never cause a redefine.

The spec (every key always present):
  name, virt_type (qemu|kvm), os_profile (linux|windows), vcpus, memory_mb,
  kernel, ramdisk, kernel_args (paths/str or None: direct kernel boot, Eucalyptus EKI/ERI),
  root (overlay path, or a volume's source url: boot from volume), root_volume (its id or None),
  seed (seed ISO path or None), console_log,
  nics [{bridge, mac, port}], images {image, kernel, ramdisk} (ids), seed_digest
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import xml.etree.ElementTree as ET

from ansible_collections.euca.cloud.plugins.module_utils.compute import volumes
from ansible_collections.euca.cloud.plugins.module_utils.model import names

XMLNS = "https://euca.cloud/xmlns/instance/1"
ET.register_namespace("euca", XMLNS)
ROOT_ALIAS = "ua-euca-root"
SEED_ALIAS = "ua-euca-seed"
NAME_RE = names.id_pattern("instance")
PROFILES = ("linux", "windows")
VIRT_TYPES = ("qemu", "kvm")


def kvm_usable():
    """KVM is used only when /dev/kvm exists and a real KVM module (Intel or AMD) is loaded.

    Some hosts (nested or PVM guests, this project's CI) expose a /dev/kvm whose guests reset
    right after the BIOS; libvirt still advertises kvm there, so its capabilities do not tell.
    """
    return os.path.exists("/dev/kvm") and any(os.path.isdir("/sys/module/%s" % m) for m in ("kvm_intel", "kvm_amd"))


def port_name(name, index):
    """The tap of NIC ``index``: deterministic, <= 15 characters, not libvirt's vnet/vif prefixes."""
    return "ei%sn%d" % (name[2:], index)


def check_mac(mac):
    """A unicast MAC in lower case, or InvalidInput."""
    return names.check_unicast_mac(str(mac))


def seed_digest(meta_data, user_data):
    """Identifies a NoCloud seed's content (the ISO's bytes change with every build)."""
    return hashlib.sha256(("%s\0%s" % (meta_data, user_data or "")).encode("utf-8")).hexdigest()[:16]


def _sub(parent, tag, text=None, **attrs):
    node = ET.SubElement(parent, tag, dict((k.rstrip("_"), str(v)) for k, v in attrs.items()))
    if text is not None:
        node.text = str(text)
    return node


def _disk(devices, path, fmt, target, alias, readonly=False):
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type=fmt)
    _sub(disk, "source", file=path)
    _sub(disk, "target", dev=target, bus="virtio")
    if readonly:
        _sub(disk, "readonly")
    _sub(disk, "alias", name=alias)


def render(spec, uuid=None, current=None):
    """The domain XML (a string) for ``spec``.

    Redefining an existing domain passes its ``uuid`` and its ``current`` (inactive) XML: disks
    that are not ours there (volumes attached persistently) are carried over unchanged.
    """
    dom = ET.Element("domain", {"type": spec["virt_type"]})
    _sub(dom, "name", spec["name"])
    if uuid:
        _sub(dom, "uuid", uuid)
    meta = _sub(dom, "metadata")
    inst = ET.SubElement(meta, "{%s}instance" % XMLNS)
    for key in ("image", "kernel", "ramdisk"):
        if spec["images"].get(key):
            inst.set(key, spec["images"][key])
    inst.set("profile", spec["os_profile"])
    if spec["seed_digest"]:
        inst.set("seed", spec["seed_digest"])
    _sub(dom, "memory", spec["memory_mb"], unit="MiB")
    _sub(dom, "vcpu", spec["vcpus"])
    os_ = _sub(dom, "os")
    _sub(os_, "type", "hvm", arch="x86_64", machine="pc")
    if spec["kernel"]:
        _sub(os_, "kernel", spec["kernel"])
        if spec["ramdisk"]:
            _sub(os_, "initrd", spec["ramdisk"])
        if spec["kernel_args"]:
            _sub(os_, "cmdline", spec["kernel_args"])
    else:
        _sub(os_, "boot", dev="hd")
    features = _sub(dom, "features")
    _sub(features, "acpi")  # PCI hot-plug of volumes needs ACPI
    _sub(features, "apic")
    if spec["os_profile"] == "windows":
        hyperv = _sub(features, "hyperv", mode="custom")
        _sub(hyperv, "relaxed", state="on")
        _sub(hyperv, "vapic", state="on")
        _sub(hyperv, "spinlocks", state="on", retries=8191)
    if spec["virt_type"] == "kvm":
        _sub(dom, "cpu", mode="host-model")
    else:
        cpu = _sub(dom, "cpu", mode="custom", match="exact")
        _sub(cpu, "model", "qemu64", fallback="allow")
    clock = _sub(dom, "clock", offset="localtime" if spec["os_profile"] == "windows" else "utc")
    if spec["os_profile"] == "windows":
        _sub(clock, "timer", name="hypervclock", present="yes")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")
    devices = _sub(dom, "devices")
    if spec.get("root_volume"):
        devices.append(volumes.disk_element(volumes.from_url(spec["root"]), "vda", ROOT_ALIAS,
                                            serial=spec["root_volume"]))
    else:
        _disk(devices, spec["root"], "qcow2", "vda", ROOT_ALIAS)
    if spec["seed"]:
        # the last name: attached volumes take vdb.. (the guest finds the seed by its label)
        _disk(devices, spec["seed"], "raw", "vdz", SEED_ALIAS, readonly=True)
    for nic in spec["nics"]:
        iface = _sub(devices, "interface", type="bridge")
        _sub(iface, "mac", address=nic["mac"])
        _sub(iface, "source", bridge=nic["bridge"])
        _sub(iface, "target", dev=nic["port"])
        _sub(iface, "model", type="virtio")
    if current:
        for disk in ET.fromstring(current).findall("devices/disk"):
            alias = disk.find("alias")
            if alias is None or alias.get("name") not in (ROOT_ALIAS, SEED_ALIAS):
                devices.append(disk)
    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=spec["console_log"], append="on")
    _sub(serial, "target", port=0)
    _sub(devices, "memballoon", model="none")
    return ET.tostring(dom, encoding="unicode")


def _mib(node):
    value = int(node.text)
    unit = (node.get("unit") or "KiB").lower()
    factor = {"b": 1.0 / (1 << 20), "bytes": 1.0 / (1 << 20), "k": 1.0 / 1024, "kib": 1.0 / 1024, "m": 1, "mib": 1,
              "g": 1024, "gib": 1024}[unit]
    return int(value * factor)


def _text(node, path):
    found = node.find(path)
    return found.text if found is not None else None


def parse(xml):
    """The spec of a domain's XML (as libvirt returns it), restricted to what render() decides."""
    dom = ET.fromstring(xml)
    inst = dom.find("metadata/{%s}instance" % XMLNS)
    inst = inst if inst is not None else ET.Element("none")
    root = seed = root_volume = None
    for disk in dom.findall("devices/disk"):
        alias = disk.find("alias")
        source = disk.find("source")
        name = alias.get("name") if alias is not None else None
        if name == ROOT_ALIAS and source is not None:
            root = volumes.url(volumes.source_of(disk))
            root_volume = _text(disk, "serial")
        elif name == SEED_ALIAS and source is not None:
            seed = source.get("file")
    nics = []
    for iface in dom.findall("devices/interface"):
        mac, source, target = iface.find("mac"), iface.find("source"), iface.find("target")
        nics.append({
            "bridge": source.get("bridge") if source is not None else None,
            "mac": mac.get("address").lower() if mac is not None else None,
            "port": target.get("dev") if target is not None else None,
        })
    serial = dom.find("devices/serial/source")
    return {
        "name": _text(dom, "name"),
        "virt_type": dom.get("type"),
        "os_profile": inst.get("profile", "linux"),
        "vcpus": int(_text(dom, "vcpu") or 0),
        "memory_mb": _mib(dom.find("memory")),
        "kernel": _text(dom, "os/kernel"),
        "ramdisk": _text(dom, "os/initrd"),
        "kernel_args": _text(dom, "os/cmdline"),
        "root": root,
        "root_volume": root_volume,
        "seed": seed,
        "console_log": serial.get("path") if serial is not None else None,
        "nics": nics,
        "images": dict((k, inst.get(k)) for k in ("image", "kernel", "ramdisk") if inst.get(k)),
        "seed_digest": inst.get("seed"),
    }


def differences(have, want):
    """The spec keys whose values differ (sorted); empty when the domain is what is wanted."""
    return sorted(k for k in want if have.get(k) != want[k])
