#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: sc_snapshot
short_description: A snapshot's bytes on a storage controller (a point-in-time copy of a volume)
version_added: 0.1.0
description:
  - Takes a snapshot of a volume, or removes one. A snapshot keeps the contents of its moment whatever is written to
    the volume later, and seeds new volumes (M(euca.cloud.sc_volume) with C(snapshot)).
  - The copy is consistent when the volume is not being written (detached, or the guest's filesystem frozen).
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.storage
  - ansible.builtin.action_common_attributes
attributes:
  diff_mode:
    support: none
options:
  name:
    description: The snapshot id (V(snap-) and 8 hex digits).
    type: str
    required: true
  volume:
    description: The volume id to snapshot; required to create.
    type: str
  state:
    description: V(present) or V(absent).
    type: str
    choices: [present, absent]
    default: present
  force:
    description:
      - Delete a snapshot that volumes were cloned from (V(rbd)) by flattening them first, a full copy of each. Without
        it such a snapshot is refused. The ledger already refuses to forget a snapshot a volume was made from.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Snapshot a volume
  euca.cloud.sc_snapshot:
    name: snap-1a2b3c4d
    volume: vol-1a2b3c4d
"""

RETURN = r"""
snapshot:
  description: The snapshot (null when absent; as before in check mode).
  returned: always
  type: dict
  sample: {name: snap-1a2b3c4d, path: /var/lib/euca/volumes/snapshots/snap-1a2b3c4d.img, size_bytes: 10737418240,
           has_data: true}
commands:
  description: What was (or would be) done, as commands.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import EucaModule
from ansible_collections.euca.cloud.plugins.module_utils.storage import backends, volumes


class ScSnapshotModule(EucaModule):
    argument_spec = dict(
        backends.STORAGE_ARGS,
        name=dict(type="str", required=True),
        volume=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        force=dict(type="bool", default=False),
    )

    def run(self):
        p = self.params
        return volumes.converge_snapshot(backends.from_params(p), p["name"], volume=p["volume"], state=p["state"],
                                         check_mode=self.check_mode, force=p["force"])


def main():
    ScSnapshotModule()()


if __name__ == "__main__":
    main()
