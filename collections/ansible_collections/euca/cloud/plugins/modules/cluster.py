#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: cluster
short_description: Register clusters in the cloud's ledger
version_added: 0.1.0
description:
  - Registers a cluster (an availability zone with its own cluster controller, storage controller and node
    controllers) or removes it.
  - A cluster that still holds nodes, volumes or live instances cannot be removed; the error names them.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.ledger
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
options:
  name:
    description: Name of the cluster (usually its inventory group, for example V(cluster_a)).
    type: str
    required: true
  state:
    description:
      - V(present) registers the cluster.
      - V(absent) removes it (and the history of its terminated instances); refused while it holds nodes, volumes
        or live instances.
    type: str
    choices: [present, absent]
    default: present
seealso:
  - module: euca.cloud.node
"""

EXAMPLES = r"""
- name: Register cluster_a
  euca.cloud.cluster:
    name: cluster_a

- name: Retire cluster_b (its nodes and volumes must be gone)
  euca.cloud.cluster:
    name: cluster_b
    state: absent
"""

RETURN = r"""
cluster:
  description: The cluster as recorded after the change (empty when removed).
  returned: always
  type: dict
  sample: {name: cluster_a}
generation:
  description: Ledger generation after the change.
  returned: always
  type: int
  sample: 42
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import LEDGER_ARGS, LedgerModule
from ansible_collections.euca.cloud.plugins.module_utils.ledger import cloud


class ClusterModule(LedgerModule):
    argument_spec = dict(
        LEDGER_ARGS,
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )

    def run(self):
        return self.converge(cloud.ensure_cluster, self.params["name"], state=self.params["state"])


def main():
    ClusterModule()()


if __name__ == "__main__":
    main()
