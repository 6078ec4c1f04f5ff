#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: nc_ceph_secret
short_description: A node's cephx key as a libvirt secret, for RBD volumes that QEMU opens itself
version_added: 0.1.0
description:
  - Makes libvirt on the node hold the key of cephx client C(client.<user>) as a private secret of usage type ceph
    (usage name C(client.<user> secret)), or removes it. An RBD volume's source given to M(euca.cloud.nc_volume)
    names it by uuid, and QEMU's librbd then authenticates as that client, straight to the Ceph monitors and OSDs.
  - Give each node its own client, with caps limited to the cloud's pools (C(mon 'profile rbd'),
    C(osd 'profile rbd pool=volumes')), so one node's key opens nothing else.
  - The secret is private, so libvirt never returns its value; whether it holds O(key) is told by the key's SHA-256,
    kept in the secret's description. A changed key is set again.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - ansible.builtin.action_common_attributes
options:
  uri:
    description: The libvirt URI of the node's hypervisor (as for M(euca.cloud.nc_volume)).
    type: str
    default: qemu:///system
  user:
    description: The cephx client, without C(client.).
    type: str
    required: true
  key:
    description: Its key, base64 as C(ceph auth get-key client.<user>) prints it; required with O(state=present).
    type: str
  uuid:
    description:
      - The secret's uuid. Derived from O(user) when omitted, the same on every node, so a playbook can name it without
        asking the node.
    type: str
  state:
    description: V(present) or V(absent).
    type: str
    choices: [present, absent]
    default: present
requirements:
  - libvirt-python on the managed node
"""

EXAMPLES = r"""
- name: Give libvirt this node's cephx key
  euca.cloud.nc_ceph_secret:
    user: euca-nc1
    key: "{{ lookup('ansible.builtin.file', 'keys/euca-nc1.key') }}"
  register: secret

- name: Attach an RBD volume with it
  euca.cloud.nc_volume:
    name: i-5c3e9a01
    volume: vol-1a2b3c4d
    source:
      protocol: rbd
      pool: volumes
      image: vol-1a2b3c4d
      hosts: [{host: 10.20.0.5, port: 6789}]
      user: euca-nc1
      secret: "{{ secret.secret.uuid }}"
"""

RETURN = r"""
secret:
  description: The secret after the run (null when absent).
  returned: always
  type: dict
  contains:
    uuid:
      description: Its uuid, what an RBD disk's C(<auth>) names.
      type: str
    user:
      description: The cephx client.
      type: str
    usage:
      description: libvirt's usage name of the secret.
      type: str
    key_sha256:
      description: The SHA-256 of the key it holds.
      type: str
  sample: {uuid: 0b6d3c4e-2f1a-5b7c-8d9e-0f1a2b3c4d5e, user: euca-nc1, usage: client.euca-nc1 secret,
           key_sha256: 3f0a...}
"""

from ansible_collections.euca.cloud.plugins.module_utils.compute import instances, secrets


class NcCephSecretModule(instances.LibvirtModule):
    argument_spec = dict(
        uri=dict(type="str", default="qemu:///system"),
        user=dict(type="str", required=True),
        key=dict(type="str", no_log=True),
        uuid=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    module_kwargs = dict(required_if=[["state", "present", ["key"]]])

    def prepare(self):
        p = self.params
        secrets.check(p["user"], p["key"] if p["state"] == "present" else None, p["uuid"])

    def with_connection(self, conn):
        p = self.params
        return secrets.converge(conn, p["user"], key=p["key"], uuid=p["uuid"], state=p["state"],
                                check_mode=self.check_mode)


def main():
    NcCephSecretModule()()


if __name__ == "__main__":
    main()
