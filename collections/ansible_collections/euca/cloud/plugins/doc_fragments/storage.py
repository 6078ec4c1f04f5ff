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
        O(thin_pool) and needs device-mapper in the kernel.
      - V(rbd) uses Ceph RBD images in O(rbd_pool) through the C(rbd) client (Debian's C(ceph-common)), as cephx user
        O(ceph_user). A snapshot is a protected RBD snapshot of its volume's image, and a volume made from a snapshot
        is an RBD clone of it (copy-on-write, in constant time whatever the size). A volume deleted while it has
        snapshots is renamed C(<vol-id>.deleted) and removed with its last snapshot.
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
    description: The V(rbd) backend's pool (it must exist and be initialised for RBD; this module does not create it).
    type: str
  ceph_conf:
    description: The V(rbd) backend's C(ceph.conf) (the client's default, C(/etc/ceph/ceph.conf), when omitted).
    type: path
  ceph_user:
    description:
      - The cephx client the V(rbd) backend acts as, without C(client.) (C(admin) when omitted). It needs
        C(profile rbd) on O(rbd_pool), and C(profile rbd) on the mons to cut off the watchers of a volume deleted
        with O(force).
    type: str
  ceph_keyring:
    description: The keyring of O(ceph_user) (the client's default places when omitted).
    type: path
  ceph_namespace:
    description: The network namespace the Ceph client runs in (the host's own when omitted).
    type: str
"""
