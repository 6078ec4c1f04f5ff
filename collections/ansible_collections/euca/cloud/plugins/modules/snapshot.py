#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: snapshot
short_description: Record and forget volume snapshots in the cloud's ledger
version_added: 0.1.0
description:
  - Records a snapshot (C(snap-) id) of a volume under a name, or forgets it.
  - A snapshot keeps the size of its volume; new volumes can start from it (see M(euca.cloud.volume)).
  - This module only changes the ledger; the storage controller copies the bytes.
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
    description: Label of the snapshot, unique in the cloud.
    type: str
    required: true
  volume:
    description: Volume (name or C(vol-) id) to snapshot. Required for a new snapshot.
    type: str
  state:
    description:
      - V(present) records the snapshot if it does not exist.
      - V(absent) forgets it; refused while volumes created from it exist.
    type: str
    choices: [present, absent]
    default: present
seealso:
  - module: euca.cloud.volume
"""

EXAMPLES = r"""
- name: Nightly snapshot of db-data
  euca.cloud.snapshot:
    name: "db-data-{{ now(utc=true, fmt='%Y%m%d') }}"
    volume: db-data

- name: Forget an old snapshot
  euca.cloud.snapshot:
    name: db-data-20240101
    state: absent
"""

RETURN = r"""
snapshot:
  description: The snapshot after the change (empty when forgotten).
  returned: always
  type: dict
  contains:
    id:
      description: Snapshot id.
      type: str
    name:
      description: Label of the snapshot.
      type: str
    volume_id:
      description: Volume the snapshot was taken of.
      type: str
    size_gb:
      description: Size in GiB (the volume's size).
      type: int
  sample: {id: snap-4e5f6a7b, name: db-data-20240101, volume_id: vol-0a1b2c3d, size_gb: 10}
generation:
  description: Ledger generation after the change.
  returned: always
  type: int
  sample: 42
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import ACCOUNT_ARGS, LEDGER_ARGS, LedgerModule
from ansible_collections.euca.cloud.plugins.module_utils.ledger import volumes


class SnapshotModule(LedgerModule):
    argument_spec = dict(
        LEDGER_ARGS,
        account=dict(ACCOUNT_ARGS["account"]),
        name=dict(type="str", required=True),
        volume=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )

    def run(self):
        p = self.params
        return self.converge(volumes.ensure_snapshot, p["name"], volume=p["volume"], state=p["state"], account=p["account"])


def main():
    SnapshotModule()()


if __name__ == "__main__":
    main()
