# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Where a storage controller keeps volume bytes (sc_volume, sc_snapshot).
    DOCUMENTATION = r"""
options:
  backend:
    description:
      - V(file) keeps sparse raw files in O(volumes_dir) (the default). V(lvm) uses thin logical volumes in
        O(thin_pool) and needs device-mapper in the kernel. V(rbd) uses Ceph RBD images in O(rbd_pool) and needs a
        Ceph cluster and the C(rbd) client (optional).
    type: str
    choices: [file, lvm, rbd]
    default: file
  volumes_dir:
    description: Directory of the V(file) backend (snapshots go to its C(snapshots) subdirectory).
    type: path
    default: /var/lib/euca/volumes
  thin_pool:
    description: The V(lvm) backend's thin pool as V(<volume group>/<pool>).
    type: str
  rbd_pool:
    description: The V(rbd) backend's pool.
    type: str
"""
