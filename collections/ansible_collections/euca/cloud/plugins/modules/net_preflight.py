#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: net_preflight
short_description: Fail before deploying when the cloud's address ranges collide with a host's routes
version_added: 0.1.0
description:
  - Reads the host's IPv4 routes (every table) and fails, naming each collision, when one of O(networks) overlaps a
    route. A private network that overlaps the host's LAN would cut the host off once the CC's gateways come up.
  - Routes through the cloud's own devices (segment bridges C(eubr-*), C(lo) and O(ignore_devices), such as the CC's
    public interface that carries elastic IPs) are not collisions, so the check passes again on a deployed host.
  - Never changes anything.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module only reads.
  diff_mode:
    support: N/A
    details: The module only reads.
options:
  networks:
    description:
      - The ranges to check, by name (the name is used in the message), each a CIDR or a list of them.
    type: dict
    required: true
  ignore_devices:
    description: Devices whose routes belong to the cloud.
    type: list
    elements: str
    default: []
  namespace:
    description: Check the routes of this network namespace instead of the host's.
    type: str
"""

EXAMPLES = r"""
- name: Refuse to deploy a cloud whose ranges collide with this host's networks
  euca.cloud.net_preflight:
    networks:
      private_network: 10.128.0.0/16
      public_ips: [203.0.113.32/28]
    ignore_devices: [eth1]
"""

RETURN = r"""
routes_checked:
  description: How many routes were read.
  returned: success
  type: int
  sample: 7
collisions:
  description: The collisions (on failure, each with C(name), C(cidr) and C(route)).
  returned: always
  type: list
  elements: dict
  sample: []
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import EucaModule
from ansible_collections.euca.cloud.plugins.module_utils.net import preflight
from ansible_collections.euca.cloud.plugins.module_utils.process import check_namespace


class NetPreflightModule(EucaModule):
    argument_spec = dict(
        networks=dict(type="dict", required=True),
        ignore_devices=dict(type="list", elements="str", default=[]),
        namespace=dict(type="str"),
    )

    def run(self):
        p = self.params
        return preflight.check(p["networks"], check_namespace(p["namespace"]), tuple(p["ignore_devices"]))


def main():
    NetPreflightModule()()


if __name__ == "__main__":
    main()
