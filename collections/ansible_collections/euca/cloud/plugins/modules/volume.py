#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: volume
short_description: Create and delete block volumes in the cloud's ledger
version_added: 0.1.0
description:
  - Creates a volume (C(vol-) id) in a cluster, empty or from a snapshot, or deletes it.
  - A volume is found by O(volume_id), else by O(name); a new volume needs O(name) so re-runs find it again.
  - Volumes cannot be resized or moved to another cluster. An attached volume is only deleted with
    O(force_detach=true).
  - This module only changes the ledger; the cluster's storage controller creates and exports the bytes.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.ledger
  - euca.cloud.account
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
options:
  name:
    description: Label of the volume, unique in the cloud. Required to create a volume.
    type: str
  volume_id:
    description: Id (C(vol-)) of an existing volume.
    type: str
  state:
    description:
      - V(present) creates the volume if it does not exist.
      - V(absent) deletes it; refused while it is attached unless O(force_detach=true).
    type: str
    choices: [present, absent]
    default: present
  cluster:
    description: Cluster (availability zone) the volume lives in. Required for a new volume.
    type: str
  size_gb:
    description: Size in GiB. Required for a new empty volume; defaults to the snapshot's size with O(snapshot).
    type: int
  snapshot:
    description: Snapshot (name or C(snap-) id) a new volume starts from.
    type: str
  force_detach:
    description: With O(state=absent), whether an attached volume is detached and deleted.
    type: bool
    default: false
seealso:
  - module: euca.cloud.volume_attachment
  - module: euca.cloud.snapshot
"""

EXAMPLES = r"""
- name: A 10 GiB volume for the database in cluster_a
  euca.cloud.volume:
    name: db-data
    cluster: cluster_a
    size_gb: 10

- name: A copy of it from last night's snapshot
  euca.cloud.volume:
    name: db-data-restore
    cluster: cluster_a
    snapshot: db-data-nightly

- name: Delete a volume even if it is still attached
  euca.cloud.volume:
    volume_id: vol-0a1b2c3d
    state: absent
    force_detach: true
"""

RETURN = r"""
volume:
  description: The volume after the change (empty when deleted).
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
  sample: {id: vol-0a1b2c3d, name: db-data, cluster: cluster_a, size_gb: 10, snapshot_id: null, state: available,
           attachment: null}
generation:
  description: Ledger generation after the change.
  returned: always
  type: int
  sample: 42
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import ACCOUNT_ARGS, LEDGER_ARGS, LedgerModule
from ansible_collections.euca.cloud.plugins.module_utils.ledger import volumes


class VolumeModule(LedgerModule):
    argument_spec = dict(
        LEDGER_ARGS,
        account=dict(ACCOUNT_ARGS["account"]),
        name=dict(type="str"),
        volume_id=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        cluster=dict(type="str"),
        size_gb=dict(type="int"),
        snapshot=dict(type="str"),
        force_detach=dict(type="bool", default=False),
    )
    module_kwargs = dict(required_one_of=[["name", "volume_id"]])

    def run(self):
        p = self.params
        return self.converge(
            volumes.ensure_volume, name=p["name"], volume_id=p["volume_id"], state=p["state"], cluster=p["cluster"],
            size_gb=p["size_gb"], snapshot=p["snapshot"], force_detach=p["force_detach"],
            account=p["account"],
        )


def main():
    VolumeModule()()


if __name__ == "__main__":
    main()
