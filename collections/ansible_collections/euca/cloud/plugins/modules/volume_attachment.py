#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: volume_attachment
short_description: Attach volumes to instances and detach them in the cloud's ledger
version_added: 0.1.0
description:
  - Attaches a volume to a live instance in the same cluster, or detaches it.
  - A volume is never attached twice; attaching a volume that is attached to another instance fails and names
    that instance. Of two concurrent requests for the same volume exactly one wins.
  - This module only changes the ledger; the storage and node controllers export and hot-plug the disk.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.ledger
  - euca.cloud.account
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
options:
  volume:
    description: The volume, by name or C(vol-) id.
    type: str
    required: true
  instance:
    description:
      - Instance (C(i-) id) to attach the volume to. Required with O(state=attached).
      - With O(state=detached), the detach fails if the volume is attached to another instance.
    type: str
  device:
    description:
      - Device name the instance sees, V(/dev/vdb) to V(/dev/vdy) (V(/dev/vdz) is the seed). The instance's first free one when omitted.
    type: str
  state:
    description:
      - V(attached) attaches the volume to O(instance).
      - V(detached) detaches it from whichever instance holds it.
    type: str
    choices: [attached, detached]
    default: attached
seealso:
  - module: euca.cloud.volume
  - module: euca.cloud.instance
"""

EXAMPLES = r"""
- name: Attach db-data to the database server as /dev/vdb
  euca.cloud.volume_attachment:
    volume: db-data
    instance: i-5c3e9a01
    device: /dev/vdb

- name: Detach it
  euca.cloud.volume_attachment:
    volume: db-data
    state: detached
"""

RETURN = r"""
volume:
  description: The volume after the change, with its attachment.
  returned: always
  type: dict
  contains:
    id:
      description: Volume id.
      type: str
    name:
      description: Label of the volume.
      type: str
    cluster:
      description: Cluster the volume lives in.
      type: str
    size_gb:
      description: Size in GiB.
      type: int
    snapshot_id:
      description: Snapshot the volume was created from, or null.
      type: str
    state:
      description: C(available) or C(in-use).
      type: str
    attachment:
      description: C(instance) and C(device) the volume is attached to, or null.
      type: dict
  sample: {id: vol-0a1b2c3d, name: db-data, cluster: cluster_a, size_gb: 10, snapshot_id: null, state: in-use,
           attachment: {instance: i-5c3e9a01, device: /dev/vdb}}
generation:
  description: Ledger generation after the change.
  returned: always
  type: int
  sample: 42
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import ACCOUNT_ARGS, LEDGER_ARGS, LedgerModule
from ansible_collections.euca.cloud.plugins.module_utils.ledger import volumes


class VolumeAttachmentModule(LedgerModule):
    argument_spec = dict(
        LEDGER_ARGS,
        account=dict(ACCOUNT_ARGS["account"]),
        volume=dict(type="str", required=True),
        instance=dict(type="str"),
        device=dict(type="str"),
        state=dict(type="str", default="attached", choices=["attached", "detached"]),
    )
    module_kwargs = dict(required_if=[["state", "attached", ["instance"]]])

    def run(self):
        p = self.params
        return self.converge(
            volumes.ensure_attachment, p["volume"], instance=p["instance"], device=p["device"], state=p["state"],
            account=p["account"],
        )


def main():
    VolumeAttachmentModule()()


if __name__ == "__main__":
    main()
