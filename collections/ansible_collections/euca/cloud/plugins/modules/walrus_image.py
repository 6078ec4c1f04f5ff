#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: walrus_image
short_description: Store an image's bytes in Walrus, the image store
version_added: 0.1.0
description:
  - Puts a file of the walrus host into the store directory as O(bucket)/O(key), which the walrus HTTP server
    serves. The copy is hashed as it is written, synced and renamed into place, so nothing ever downloads half an
    image.
  - Returns the sha256 checksum, size and URL that registering the image in the ledger needs
    (M(euca.cloud.image) with C(checksum), C(size_bytes) and C(location)); nodes fetch and verify it with
    M(euca.cloud.image_cache).
  - Idempotent. When the object already holds the same bytes nothing is written. The object's checksum is
    remembered in a C(.sha256) sidecar, so only the source is read again.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - ansible.builtin.action_common_attributes
options:
  store_dir:
    description: The store directory the HTTP server serves.
    type: path
    default: /var/lib/euca/walrus
  bucket:
    description: The bucket (3-63 characters of a-z, 0-9, C(.) and C(-)).
    type: str
    default: images
  key:
    description: The object's key inside the bucket, for example V(euca-test/root.img).
    type: str
    required: true
  src:
    description: The file on the walrus host to store. Required with O(state=present).
    type: path
  checksum:
    description: The sha256 the bytes must have (V(sha256:<hex>) or the hex digest); a mismatch fails and stores nothing.
    type: str
  base_url:
    description: The URL under which O(store_dir) is served, for example V(http://walrus.example:8773); makes RV(location).
    type: str
  state:
    description: V(present) stores the object, V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: Store the test image's root disk
  euca.cloud.walrus_image:
    key: euca-test/root.img
    src: /var/cache/euca/test-image/root.img
    base_url: "http://{{ inventory_hostname }}:8773"
  register: stored

- name: Register it in the ledger
  euca.cloud.image:
    ledger: /var/lib/euca/clc/ledger.sqlite
    name: euca-test
    kind: machine
    format: raw
    checksum: "{{ stored.checksum }}"
    size_bytes: "{{ stored.size_bytes }}"
    location: "{{ stored.location }}"
  delegate_to: "{{ groups['clc'] | first }}"
"""

RETURN = r"""
path:
  description: The object's file in the store.
  returned: always
  type: str
  sample: /var/lib/euca/walrus/images/euca-test/root.img
checksum:
  description: The object's sha256.
  returned: when O(state=present)
  type: str
  sample: sha256:4f84a8e4f85d1596e9b01a36260f8ffd3dd92cf8bf14da82ccb48e1470974b87
size_bytes:
  description: The object's size.
  returned: when O(state=present)
  type: int
  sample: 67108864
location:
  description: The object's URL (null without O(base_url)).
  returned: when O(state=present)
  type: str
  sample: http://walrus.example:8773/images/euca-test/root.img
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import EucaModule
from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.walrus import store


class WalrusImageModule(EucaModule):
    argument_spec = dict(
        store_dir=dict(type="path", default="/var/lib/euca/walrus"),
        bucket=dict(type="str", default="images"),
        key=dict(type="str", required=True, no_log=False),
        src=dict(type="path"),
        checksum=dict(type="str"),
        base_url=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )

    def run(self):
        p = self.params
        if p["state"] == "absent":
            return store.remove(p["store_dir"], p["bucket"], p["key"], check_mode=self.check_mode)
        if not p["src"]:
            raise InvalidInput("src is required with state=present")
        return store.store(p["store_dir"], p["bucket"], p["key"], p["src"], base_url=p["base_url"],
                           checksum=p["checksum"], check_mode=self.check_mode)


def main():
    WalrusImageModule()()


if __name__ == "__main__":
    main()
