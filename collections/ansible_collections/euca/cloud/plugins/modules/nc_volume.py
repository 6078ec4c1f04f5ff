#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: nc_volume
short_description: Hot-attach a volume to an instance on its node, or detach it
version_added: 0.1.0
description:
  - Attaches the volume exported by the storage controller (M(euca.cloud.sc_export)) to instance O(name) as a virtio
    disk, or detaches it. A running instance gets the disk at once and keeps it across restarts; a stopped one gets it
    at its next start.
  - iSCSI volumes are opened by QEMU's own initiator (libiscsi, Debian's C(qemu-block-extra)); the node needs no
    host initiator. A file or block device on the node (an LV, or a device a host initiator made) works too.
  - RBD volumes (the storage controller's V(rbd) backend) are opened by QEMU's librbd straight from the Ceph cluster,
    over the node's storage network, as the node's own cephx client whose key M(euca.cloud.nc_ceph_secret) gave
    libvirt; their bytes never pass through the storage controller. The guest's QEMU then watches the image, which
    M(euca.cloud.sc_volume) refuses to delete.
  - The disk's serial is the volume id, so inside the guest it is C(/dev/disk/by-id/virtio-<volume>) whatever name
    the guest's kernel gives it. O(device) is libvirt's target name, a hint the guest need not follow.
  - This module does not decide who may attach a volume; the ledger (M(euca.cloud.volume_attachment)) refuses a
    second attachment before a playbook gets here.
  - Detaching from a running instance waits until the guest has released the disk (ACPI hot-unplug), up to
    O(timeout) seconds.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.libvirt
  - ansible.builtin.action_common_attributes
options:
  volume:
    description: The volume id (V(vol-) and 8 hex digits).
    type: str
    required: true
  state:
    description: V(attached) or V(detached).
    type: str
    choices: [attached, detached]
    default: attached
  source:
    description:
      - Where the volume's bytes are; required with O(state=attached). M(euca.cloud.sc_export) returns it as
        RV(euca.cloud.sc_export#module:export.source).
      - "For iSCSI the keys C(protocol=iscsi), C(host), C(port), C(target) and C(lun); for a file or block device on
        the node C(protocol) (V(file), V(block) or V(aoe)) and C(path)."
      - "For RBD C(protocol=rbd), C(pool), C(image), C(hosts) (the Ceph monitors, a list of C(host) and C(port), 6789
        by default), and C(user) with C(secret), the cephx client and the uuid of its libvirt secret
        (M(euca.cloud.nc_ceph_secret))."
    type: dict
  device:
    description: The disk's target name, V(/dev/vdb) to V(/dev/vdy). The first free one when omitted.
    type: str
  wait:
    description: When detaching from a running instance, wait until the guest has released the disk.
    type: bool
    default: true
  timeout:
    description: Seconds to wait with O(wait).
    type: int
    default: 30
"""

EXAMPLES = r"""
- name: Attach vol-1a2b3c4d, exported by the SC, as /dev/vdc
  euca.cloud.nc_volume:
    name: i-5c3e9a01
    volume: vol-1a2b3c4d
    device: /dev/vdc
    source:
      protocol: iscsi
      host: 10.20.0.2
      port: 3260
      target: iqn.2010-05.cloud.euca:vol-1a2b3c4d
      lun: 1

- name: Detach it
  euca.cloud.nc_volume:
    name: i-5c3e9a01
    volume: vol-1a2b3c4d
    state: detached
"""

RETURN = r"""
attachment:
  description: The volume's disk on the instance after the run (null when detached).
  returned: always
  type: dict
  contains:
    instance:
      description: The instance id.
      type: str
    volume:
      description: The volume id.
      type: str
    device:
      description: The disk's target name.
      type: str
    url:
      description: The source as one string.
      type: str
    live:
      description: Whether the running domain has the disk.
      type: bool
    persistent:
      description: Whether the domain's definition has it (it survives a restart).
      type: bool
  sample: {instance: i-5c3e9a01, volume: vol-1a2b3c4d, device: /dev/vdc, live: true, persistent: true,
           url: "iscsi://10.20.0.2:3260/iqn.2010-05.cloud.euca:vol-1a2b3c4d/1"}
places:
  description: Where the disk was (or would be) attached or detached, V(live) and/or V(config).
  returned: always
  type: list
  elements: str
  sample: [live, config]
"""

from ansible_collections.euca.cloud.plugins.module_utils.compute import attachments, instances


class NcVolumeModule(instances.LibvirtModule):
    argument_spec = dict(
        name=dict(type="str", required=True),
        uri=dict(type="str", default="qemu:///system"),
        volume=dict(type="str", required=True),
        state=dict(type="str", default="attached", choices=["attached", "detached"]),
        source=dict(type="dict"),
        device=dict(type="str"),
        wait=dict(type="bool", default=True),
        timeout=dict(type="int", default=30),
    )
    module_kwargs = dict(required_if=[["state", "attached", ["source"]]])

    def with_connection(self, conn):
        return attachments.converge(conn, self.params, check_mode=self.check_mode)


def main():
    NcVolumeModule()()


if __name__ == "__main__":
    main()
