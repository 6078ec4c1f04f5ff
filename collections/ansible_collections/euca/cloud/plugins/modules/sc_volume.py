#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: sc_volume
short_description: A volume's bytes on a storage controller (create, grow, create from a snapshot, delete)
version_added: 0.1.0
description:
  - Makes a volume's storage exist with at least O(size_gb), or removes it. The ledger (M(euca.cloud.volume))
    decides which volumes exist; this module keeps their bytes on the storage controller.
  - Safe by default. An attached volume (O(attached_to)) is never deleted; an RBD image that a client has open (a
    watcher, such as a guest's QEMU) is deleted only with O(force), and a volume that holds data only with O(force).
    Volumes only grow.
  - With O(snapshot) a new volume starts as a copy of that snapshot (see M(euca.cloud.sc_snapshot)).
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.storage
  - ansible.builtin.action_common_attributes
options:
  name:
    description: The volume id (V(vol-) and 8 hex digits).
    type: str
    required: true
  state:
    description: V(present) or V(absent).
    type: str
    choices: [present, absent]
    default: present
  size_gb:
    description: Size in GiB; required to create a volume that does not start from a snapshot. A larger value grows it.
    type: int
  snapshot:
    description: Snapshot id (V(snap-...)) a new volume starts from.
    type: str
  image_file:
    description:
      - A disk image (raw or qcow2) on the storage controller whose bytes a new volume starts with, for an instance
        that boots from the volume (M(euca.cloud.nc_instance)'s O(euca.cloud.nc_instance#module:root_volume)). The
        volume is at least the image's virtual size. Ignored once the volume exists.
    type: path
  attached_to:
    description: The instance the ledger says the volume is attached to; deleting it is then refused.
    type: str
  force:
    description:
      - Delete the volume even though it holds data. On V(rbd), also when clients have it open; they are cut off first
        with C(ceph osd blocklist add), which ends their access to every image until the entry expires (an hour).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Create a 10 GiB volume
  euca.cloud.sc_volume:
    name: vol-1a2b3c4d
    size_gb: 10

- name: Delete it and whatever it holds
  euca.cloud.sc_volume:
    name: vol-1a2b3c4d
    state: absent
    force: true
"""

RETURN = r"""
volume:
  description: The volume after the run (null once absent; as before in check mode).
  returned: always
  type: dict
  sample: {name: vol-1a2b3c4d, path: /var/lib/euca/volumes/vol-1a2b3c4d.img, size_bytes: 10737418240, has_data: false}
commands:
  description: What was (or would be) done, as commands.
  returned: always
  type: list
  elements: str
  sample: ["truncate -s 10737418240 /var/lib/euca/volumes/vol-1a2b3c4d.img"]
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import EucaModule
from ansible_collections.euca.cloud.plugins.module_utils.storage import backends, volumes


class ScVolumeModule(EucaModule):
    module_kwargs = dict(mutually_exclusive=[["snapshot", "image_file"]])
    argument_spec = dict(
        backends.STORAGE_ARGS,
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        size_gb=dict(type="int"),
        snapshot=dict(type="str"),
        image_file=dict(type="path"),
        attached_to=dict(type="str"),
        force=dict(type="bool", default=False),
    )

    def run(self):
        p = self.params
        store = backends.from_params(p)
        return volumes.converge_volume(store, p["name"], state=p["state"], size_gb=p["size_gb"],
                                       snapshot=p["snapshot"], force=p["force"], attached_to=p["attached_to"],
                                       check_mode=self.check_mode, image_file=p["image_file"])


def main():
    ScVolumeModule()()


if __name__ == "__main__":
    main()
