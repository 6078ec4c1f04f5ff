#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: image
short_description: Register machine, kernel and ramdisk images in the cloud's ledger
version_added: 0.1.0
description:
  - Registers an image under a name and gives it an EC2-style id (C(emi-), C(eki-) or C(eri-)), or deregisters it.
  - The ledger records what the bytes are (kind, sha256 checksum, size, format, kernel and ramdisk) and where they
    are; uploading the bytes to walrus is the job of the walrus role.
  - Images are immutable; registering the same name with other bytes fails, and only O(location) may change.
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
    description: Name of the image, unique in the cloud.
    type: str
    required: true
  state:
    description:
      - V(present) registers the image (or updates its O(location)).
      - V(absent) deregisters it; refused while live instances use it or other images use it as kernel or ramdisk.
    type: str
    choices: [present, absent]
    default: present
  kind:
    description: What the image is; decides its id prefix (C(emi-), C(eki-), C(eri-)).
    type: str
    choices: [machine, kernel, ramdisk]
    default: machine
  checksum:
    description:
      - sha256 of the image's bytes, as 64 hex digits, optionally prefixed C(sha256:). Required for a new image.
    type: str
  size_bytes:
    description: Size of the image's bytes. Required for a new image.
    type: int
  image_format:
    description:
      - Format of the bytes. Defaults to V(raw) for a machine image and to the O(kind) for a kernel or ramdisk.
    type: str
    choices: [raw, qcow2, kernel, ramdisk]
    aliases: [format]
  kernel:
    description: Kernel image (name or C(eki-) id) a machine image boots with. Only for O(kind=machine).
    type: str
  ramdisk:
    description: Ramdisk image (name or C(eri-) id) a machine image boots with. Only for O(kind=machine).
    type: str
  location:
    description: Where walrus keeps the bytes, for example a bucket/key or an URL. May change after registration.
    type: str
seealso:
  - module: euca.cloud.instance
"""

EXAMPLES = r"""
- name: Register a kernel
  euca.cloud.image:
    name: debian-12-kernel
    kind: kernel
    checksum: "sha256:d2fd871cd0b05cb7202b8df2b930df86dceee2089e42d3f83c9453a9deeaa685"
    size_bytes: 8036352
    location: images/debian-12/vmlinuz

- name: Register a machine image booting that kernel
  euca.cloud.image:
    name: debian-12
    checksum: "cae66afe3057e4eb553d161dd813fb8e53fc3493d0b0804fdc40214a589247de"
    size_bytes: 1073741824
    image_format: qcow2
    kernel: debian-12-kernel
    location: images/debian-12/disk.qcow2

- name: Deregister an image nobody runs any more
  euca.cloud.image:
    name: debian-11
    state: absent
"""

RETURN = r"""
image:
  description: The image as recorded after the change (empty when deregistered).
  returned: always
  type: dict
  sample:
    id: emi-3f2a9c10
    name: debian-12
    kind: machine
    checksum: "sha256:cae66afe3057e4eb553d161dd813fb8e53fc3493d0b0804fdc40214a589247de"
    size_bytes: 1073741824
    format: qcow2
    kernel_id: eki-0c1d2e3f
    ramdisk_id: null
    location: images/debian-12/disk.qcow2
generation:
  description: Ledger generation after the change.
  returned: always
  type: int
  sample: 42
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import ACCOUNT_ARGS, LEDGER_ARGS, LedgerModule
from ansible_collections.euca.cloud.plugins.module_utils.ledger import images


class ImageModule(LedgerModule):
    argument_spec = dict(
        LEDGER_ARGS,
        account=dict(ACCOUNT_ARGS["account"]),
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        kind=dict(type="str", default="machine", choices=["machine", "kernel", "ramdisk"]),
        checksum=dict(type="str"),
        size_bytes=dict(type="int"),
        image_format=dict(type="str", choices=["raw", "qcow2", "kernel", "ramdisk"], aliases=["format"]),
        kernel=dict(type="str"),
        ramdisk=dict(type="str"),
        location=dict(type="str"),
    )

    def run(self):
        p = self.params
        return self.converge(
            images.ensure_image, p["name"], state=p["state"], kind=p["kind"], checksum=p["checksum"],
            size_bytes=p["size_bytes"], image_format=p["image_format"], kernel=p["kernel"], ramdisk=p["ramdisk"],
            location=p["location"],
            account=p["account"],
        )


def main():
    ImageModule()()


if __name__ == "__main__":
    main()
