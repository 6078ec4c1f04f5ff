#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: node
short_description: Register node controllers and their capacity in the cloud's ledger
version_added: 0.1.0
description:
  - Registers a node controller (NC) in a cluster with the capacity the scheduler may place instances on, changes
    that capacity, enables or disables the node for scheduling, or removes it.
  - Capacity cannot drop below what the node's live instances already use, and a node that still runs instances
    cannot be removed or moved to another cluster.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.ledger
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
options:
  name:
    description: Name of the node (usually its inventory hostname).
    type: str
    required: true
  cluster:
    description: Cluster the node belongs to (must be registered with M(euca.cloud.cluster)). Required for a new node.
    type: str
  cores:
    description: Virtual CPU cores the node offers. Required for a new node.
    type: int
  memory_mb:
    description: Memory in MiB the node offers to instances. Required for a new node.
    type: int
  disk_gb:
    description: Instance disk space in GiB the node offers. Required for a new node.
    type: int
  state:
    description:
      - V(present) registers or updates the node and keeps its enabled/disabled state (new nodes are enabled).
      - V(enabled) and V(disabled) also set whether the scheduler may place new instances on it.
      - V(absent) removes the node; refused while instances live on it.
    type: str
    choices: [present, enabled, disabled, absent]
    default: present
"""

EXAMPLES = r"""
- name: Register nc1 in cluster_a
  euca.cloud.node:
    name: nc1
    cluster: cluster_a
    cores: 8
    memory_mb: 16384
    disk_gb: 200

- name: Stop scheduling onto nc1 (maintenance)
  euca.cloud.node:
    name: nc1
    state: disabled
"""

RETURN = r"""
node:
  description: The node as recorded after the change (empty when removed).
  returned: always
  type: dict
  sample: {name: nc1, cluster: cluster_a, cores: 8, memory_mb: 16384, disk_gb: 200, state: enabled}
generation:
  description: Ledger generation after the change.
  returned: always
  type: int
  sample: 42
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import LEDGER_ARGS, LedgerModule
from ansible_collections.euca.cloud.plugins.module_utils.ledger import cloud


class NodeModule(LedgerModule):
    argument_spec = dict(
        LEDGER_ARGS,
        name=dict(type="str", required=True),
        cluster=dict(type="str"),
        cores=dict(type="int"),
        memory_mb=dict(type="int"),
        disk_gb=dict(type="int"),
        state=dict(type="str", default="present", choices=["present", "enabled", "disabled", "absent"]),
    )

    def run(self):
        p = self.params
        return self.converge(
            cloud.ensure_node, p["name"], cluster=p["cluster"], cores=p["cores"], memory_mb=p["memory_mb"],
            disk_gb=p["disk_gb"], state=p["state"],
        )


def main():
    NodeModule()()


if __name__ == "__main__":
    main()
