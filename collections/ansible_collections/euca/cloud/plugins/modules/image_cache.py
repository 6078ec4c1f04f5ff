#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: image_cache
short_description: The node controller's image cache (fetch from Walrus, verify, evict)
version_added: 0.1.0
description:
  - Makes the given images present in (or absent from) this node's image cache. Instances are backed by the cached
    files through qcow2 overlays (M(euca.cloud.nc_instance)); an image is never copied per launch.
  - An image is downloaded from its C(location) (Walrus), hashed while it is written and checked against
    its C(checksum) before it is renamed into place. A download that does not match is deleted and leaves
    the cache as it was.
  - Concurrent runs that need the same image download it once; the others wait for it and find it verified.
  - With O(size_cap), least-recently-used images that are neither requested nor in use by an instance are evicted
    until the cache fits.
  - O(images) takes the image records of a ledger slice as they are (M(euca.cloud.ledger_info)); keys other than
    id, location, checksum and size_bytes are ignored.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - ansible.builtin.action_common_attributes
attributes:
  diff_mode:
    support: none
options:
  cache_dir:
    description: The cache's directory.
    type: path
    default: /var/lib/euca/image-cache
  images:
    description:
      - Image records, each with C(id) (V(emi-), V(eki-) or V(eri-) and 8 hex digits), C(location) (its URL),
        C(checksum) (sha256) and optionally C(size_bytes). With O(state=absent) only the ids are read.
    type: list
    elements: dict
    default: []
  state:
    description: V(present) fetches what is missing; V(absent) removes the images (refused while an instance uses one).
    type: str
    choices: [present, absent]
    default: present
  size_cap:
    description:
      - The most the cache may hold, in bytes or with a unit (V(20GiB), V(500MB)). Images in use are never evicted,
        so the cache can stay above it.
    type: str
  timeout:
    description: Seconds a download may stall.
    type: int
    default: 600
  force:
    description: Download again even when a cached copy exists (replaces one whose checksum differs).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Fetch the images of the instances placed on this node
  euca.cloud.image_cache:
    images: "{{ node_slice.images }}"
    size_cap: 40GiB

- name: Drop an image from the cache
  euca.cloud.image_cache:
    images: [{id: emi-1234abcd}]
    state: absent
"""

RETURN = r"""
images:
  description: Per image id, its cached path, whether this run downloaded it, and its size.
  returned: always
  type: dict
  sample: {emi-1234abcd: {path: /var/lib/euca/image-cache/emi-1234abcd/image, downloaded: true, size_bytes: 67108864}}
evicted:
  description: Ids evicted to stay within O(size_cap).
  returned: always
  type: list
  elements: str
  sample: [emi-0000beef]
removed:
  description: Ids removed with O(state=absent).
  returned: when O(state=absent)
  type: list
  elements: str
"""

from ansible.module_utils.urls import open_url

from ansible_collections.euca.cloud.plugins.module_utils.base import EucaModule
from ansible_collections.euca.cloud.plugins.module_utils.compute import image_cache


class ImageCacheModule(EucaModule):
    argument_spec = dict(
        cache_dir=dict(type="path", default="/var/lib/euca/image-cache"),
        images=dict(type="list", elements="dict", default=[]),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        size_cap=dict(type="str"),
        timeout=dict(type="int", default=600),
        force=dict(type="bool", default=False),
    )

    def run(self):
        p = self.params
        return image_cache.converge(
            image_cache.ImageCache(p["cache_dir"]), p["images"], state=p["state"], size_cap=p["size_cap"],
            timeout=p["timeout"], force=p["force"], check_mode=self.check_mode,
            opener=lambda url, timeout: open_url(url, timeout=timeout, http_agent="euca.cloud-image-cache"),
        )


def main():
    ImageCacheModule()()


if __name__ == "__main__":
    main()
