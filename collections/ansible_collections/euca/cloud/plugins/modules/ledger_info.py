#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ledger_info
short_description: Read the cloud's ledger, whole or as one cluster or node sees it
version_added: 0.1.0
description:
  - Returns a consistent snapshot of the ledger; settings, clusters, nodes with their capacity and usage, security
    groups, images, instances, elastic IPs and volumes, with the ledger C(generation) it was read at.
  - With O(scope=cluster) or O(scope=node), returns only what that cluster controller or node controller needs; its
    instances, their security groups (and the groups their rules name), images, elastic IPs and volumes.
  - Never changes the ledger and never creates one; a missing SQLite ledger file is an error.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.ledger
  - euca.cloud.account
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
attributes:
  check_mode:
    support: full
    details: The module only reads, so it runs the same in check mode.
  diff_mode:
    support: N/A
    details: The module only reads.
options:
  scope:
    description:
      - V(cloud) returns the whole ledger.
      - V(cluster) and V(node) return the slice of the cluster or node named by O(name).
    type: str
    choices: [cloud, cluster, node]
    default: cloud
  name:
    description: Cluster or node whose slice is read. Required unless O(scope=cloud).
    type: str
  include_terminated:
    description: Whether terminated instances (history) are returned too.
    type: bool
    default: false
seealso:
  - module: euca.cloud.cloud
"""

EXAMPLES = r"""
- name: Read the whole ledger
  euca.cloud.ledger_info:
  register: ledger

- name: What node controller nc1 must run
  euca.cloud.ledger_info:
    scope: node
    name: nc1
  register: nc1_slice

- name: Show the instances nc1 runs
  ansible.builtin.debug:
    msg: "{{ nc1_slice.instances | map(attribute='id') | list }}"
"""

RETURN = r"""
generation:
  description: Ledger generation the snapshot was read at; it increases with every change.
  returned: always
  type: int
  sample: 42
scope:
  description: The scope read.
  returned: always
  type: str
  sample: node
name:
  description: The cluster or node read, null for O(scope=cloud).
  returned: always
  type: str
  sample: nc1
settings:
  description: The cloud's settings (see M(euca.cloud.cloud)).
  returned: always
  type: dict
  sample: {network_mode: vlan, private_network: 172.19.0.0/16, addresses_per_group: 32, segment_range: [10, 4094],
           public_ips: [203.0.113.32/28], scheduler: ROUNDROBIN, vm_types: {m1.small: {cores: 1, memory_mb: 128,
           disk_gb: 2}}}
clusters:
  description: Names of the clusters in scope.
  returned: always
  type: list
  elements: str
  sample: [cluster_a]
nodes:
  description: Node controllers in scope, with their capacity and what their live instances use.
  returned: always
  type: list
  elements: dict
  sample:
    - name: nc1
      cluster: cluster_a
      state: enabled
      capacity: {cores: 8, memory_mb: 16384, disk_gb: 200}
      used: {cores: 1, memory_mb: 128, disk_gb: 2, instances: 1}
security_groups:
  description: Security groups in scope, as M(euca.cloud.security_group) returns them.
  returned: always
  type: list
  elements: dict
  sample:
    - {name: web, description: web, segment_id: 10, subnet: 172.19.0.0/27, gateway: 172.19.0.1,
       rules: [{protocol: tcp, from_port: 80, to_port: 80, cidr: 0.0.0.0/0}]}
images:
  description: Images in scope, as M(euca.cloud.image) returns them.
  returned: always
  type: list
  elements: dict
  sample:
    - {id: emi-3f2a9c10, name: debian-12, kind: machine, format: qcow2, size_bytes: 1073741824, kernel_id: null,
       ramdisk_id: null, location: images/debian-12/disk.qcow2,
       checksum: "sha256:cae66afe3057e4eb553d161dd813fb8e53fc3493d0b0804fdc40214a589247de"}
instances:
  description: Instances in scope (live ones only unless O(include_terminated)), as M(euca.cloud.instance) returns them.
  returned: always
  type: list
  elements: dict
  sample:
    - {id: i-5c3e9a01, name: web, reservation_id: r-0b7e2d44, launch_index: 0, group: web, image_id: emi-3f2a9c10,
       instance_type: m1.small, cluster: cluster_a, node: nc1, cores: 1, memory_mb: 128, disk_gb: 2,
       private_ip: 172.19.0.2, mac: "d0:0d:ac:13:00:02", state: running, reason: ""}
elastic_ips:
  description: Elastic IPs in scope (for a cluster or node, those associated with its instances).
  returned: always
  type: list
  elements: dict
  sample: [{public_ip: 203.0.113.33, name: www, instance: i-5c3e9a01}]
keypairs:
  description: With O(scope=cloud), the key pairs O(account) sees (public keys and fingerprints); empty otherwise.
  returned: always
  type: list
  elements: dict
  sample: [{name: ops, id: key-0a1b2c3d, key_type: ssh-ed25519, fingerprint: "mh7dE6uRgB0hSGx9Z3U/5Dc6hqWg2NLiMJZeMeQ3eNI=",
            public_key: "ssh-ed25519 AAAA... ops", account: admin}]
account:
  description: The account the slice was read for.
  returned: always
  type: str
  sample: admin
volumes:
  description: Volumes in scope (for a node, those attached to its instances), as M(euca.cloud.volume) returns them.
  returned: always
  type: list
  elements: dict
  sample:
    - {id: vol-0a1b2c3d, name: db-data, cluster: cluster_a, size_gb: 10, snapshot_id: null, state: in-use,
       attachment: {instance: i-5c3e9a01, device: /dev/vdb}}
"""

import os

from ansible_collections.euca.cloud.plugins.module_utils.base import ACCOUNT_ARGS, LEDGER_ARGS, LedgerModule
from ansible_collections.euca.cloud.plugins.module_utils.errors import NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger import db, slices


class LedgerInfoModule(LedgerModule):
    argument_spec = dict(
        LEDGER_ARGS,
        scope=dict(type="str", default="cloud", choices=["cloud", "cluster", "node"]),
        name=dict(type="str"),
        include_terminated=dict(type="bool", default=False),
        account=dict(ACCOUNT_ARGS["account"]),
    )
    module_kwargs = dict(required_if=[["scope", "cluster", ["name"]], ["scope", "node", ["name"]]])

    def run(self):
        p = self.params
        # Opening a missing SQLite ledger would create an empty one: a reader must not do that.
        if not db.is_postgres_url(p["ledger"]) and not os.path.exists(db.sqlite_path(p["ledger"])):
            raise NotFound("no ledger at %s: check the ledger option (nothing has been recorded there yet)" % p["ledger"])
        found = self.read(slices.read_slice, p["scope"], p["name"], p["include_terminated"], p["account"])
        found["changed"] = False
        return found


def main():
    LedgerInfoModule()()


if __name__ == "__main__":
    main()
