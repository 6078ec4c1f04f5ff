# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hot-attach and detach of a volume on a node's instance (ARCHITECTURE §6).

A running domain gets the disk live and in its persistent definition (so it is still there
after a restart); a stopped one only in its definition. Detaching a live disk needs the guest
to let go of it (ACPI PCI hot-unplug): libvirt's call returns before that, so this module
waits until the disk has left the live domain, or fails saying the guest still holds it.

This module never decides who may attach what: the ledger did (one attachment per volume)
before the playbook reaches the node.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.euca.cloud.plugins.module_utils.compute import volumes
from ansible_collections.euca.cloud.plugins.module_utils.compute.instances import LibvirtFailed
from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, EucaError, NotFound

try:
    import libvirt
except ImportError:  # the module reports missing_required_lib
    libvirt = None


class DetachTimeout(EucaError):
    """The guest did not release the disk in time."""


def _lookup(conn, name):
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise NotFound("instance %s is not defined on this node" % name)
        raise


def _places(dom):
    """``{"live": xml or None, "config": xml}``: where the domain's disks are described."""
    return {"live": dom.XMLDesc(0) if dom.isActive() else None,
            "config": dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)}


def _view(name, volume, places):
    found = {}
    for place, xml in places.items():
        if xml is not None:
            device, disk = volumes.find_volume(xml, volume)
            if device:
                found[place] = (device, disk)
    if not found:
        return {}
    device, disk = found.get("live") or found["config"]
    return {"instance": name, "volume": volume, "device": "/dev/" + device, "source": disk["source"],
            "url": volumes.url(disk["source"]) if disk["source"] else None,
            "live": "live" in found, "persistent": "config" in found}


def converge(conn, params, check_mode=False):
    """Make ``params["volume"]`` attached to (or detached from) instance ``params["name"]``."""
    name, volume, state = params["name"], volumes.check_volume(params["volume"]), params["state"]
    source = device = None
    if state == "attached":
        source = volumes.check_source(params["source"])
        device = volumes.check_device(params["device"]) if params.get("device") else None
    dom = _lookup(conn, name)
    places = _places(dom)
    before = _view(name, volume, places)
    flags = {"live": libvirt.VIR_DOMAIN_AFFECT_LIVE, "config": libvirt.VIR_DOMAIN_AFFECT_CONFIG}
    todo = []
    if state == "attached":
        if before and before["source"] != source:
            raise Conflict("volume %s is attached to %s from %s, not %s; detach it first"
                           % (volume, name, before["url"], volumes.url(source)))
        device = device or (before or {}).get("device", "").replace("/dev/", "") or _free_device(places)
        if before and before["device"] != "/dev/" + device:
            raise Conflict("volume %s is attached to %s as %s, not /dev/%s" % (volume, name, before["device"], device))
        for place, xml in places.items():
            if xml is None:
                continue
            have = volumes.disks(xml)
            if device in have and have[device]["volume"] != volume:
                raise Conflict("instance %s already has %s as /dev/%s" % (
                    name, have[device]["volume"] or "another disk", device))
            if not any(d["volume"] == volume for d in have.values()):
                todo.append(place)
        xml = volumes.disk_xml(volume, source, device)
    else:
        todo = [place for place in ("live", "config") if places[place] is not None
                and volumes.find_volume(places[place], volume)[0]]
    result = {"changed": bool(todo), "places": todo}
    if check_mode or not todo:
        after = before if not todo else (
            {"instance": name, "volume": volume, "device": "/dev/" + device, "source": source,
             "url": volumes.url(source), "live": places["live"] is not None, "persistent": True}
            if state == "attached" else {})
        result.update(attachment=after or None, diff={"before": before, "after": after})
        return result
    mask = 0
    for place in todo:
        mask |= flags[place]
    try:
        if state == "attached":
            dom.attachDeviceFlags(xml, mask)
        else:
            # each place has its own XML (a live disk carries runtime details the config lacks)
            for place in todo:
                dom.detachDeviceFlags(volumes.find_volume(places[place], volume)[1]["xml"], flags[place])
    except libvirt.libvirtError as exc:
        raise LibvirtFailed("%s volume %s %s instance %s failed: %s" % (
            "attaching" if state == "attached" else "detaching", volume,
            "to" if state == "attached" else "from", name, exc))
    if state == "detached" and "live" in todo and params.get("wait", True):
        _wait_detached(dom, name, volume, params.get("timeout", 30))
    after = _view(name, volume, _places(dom))
    result.update(attachment=after or None, diff={"before": before, "after": after})
    return result


def _free_device(places):
    used = set()
    for xml in places.values():
        if xml is not None:
            used.update(volumes.disks(xml))
    for letter in "bcdefghijklmnopqrstuvwxy":
        if "vd" + letter not in used:
            return "vd" + letter
    raise Conflict("no free device name left (vdb..vdy are all in use)")


def _wait_detached(dom, name, volume, timeout):
    deadline = time.time() + timeout
    while dom.isActive() and volumes.find_volume(dom.XMLDesc(0), volume)[0]:
        if time.time() > deadline:
            raise DetachTimeout(
                "instance %s did not release volume %s within %ss (the guest must support ACPI hot-unplug and not "
                "hold the disk); it is gone from the definition, and leaves at the guest's next stop" % (name, volume, timeout))
        time.sleep(0.2)
