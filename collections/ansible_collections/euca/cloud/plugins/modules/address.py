#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: address
short_description: Allocate, associate and release elastic IPs in the cloud's ledger
version_added: 0.1.0
description:
  - Allocates an elastic IP from the cloud's C(public_ips) pool (see M(euca.cloud.cloud)), associates it with an
    instance, disassociates it, or releases it.
  - The address is found by O(public_ip), else by O(name), else by the O(instance) it is associated with. A new
    allocation takes O(public_ip) when given, otherwise the lowest free address of the pool.
  - An allocation is a committed ledger row, so it survives a restart of the cloud controller.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.ledger
  - euca.cloud.account
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
options:
  public_ip:
    description: The elastic IP itself; must be in the cloud's C(public_ips) pool to be allocated.
    type: str
  name:
    description: Label of the address, unique in the cloud; lets re-runs find the same address without knowing it.
    type: str
  instance:
    description:
      - Instance (C(i-) id) to associate the address with when O(state=present).
      - With no O(public_ip) and no O(name), selects the address associated with this instance.
    type: str
  state:
    description:
      - V(present) allocates the address if needed and associates it with O(instance) when given.
      - V(disassociated) keeps the address allocated and associated with no instance.
      - V(absent) releases the address back to the pool (disassociating it first).
    type: str
    choices: [present, disassociated, absent]
    default: present
  allow_reassociation:
    description: Whether an address associated with another instance may be moved to O(instance).
    type: bool
    default: false
seealso:
  - module: euca.cloud.cloud
  - module: euca.cloud.instance
"""

EXAMPLES = r"""
- name: Allocate an address for the web front end and associate it
  euca.cloud.address:
    name: www
    instance: i-5c3e9a01
  register: www

- name: Take a specific address from the pool
  euca.cloud.address:
    public_ip: 203.0.113.40
    name: mail

- name: Move www to the standby instance
  euca.cloud.address:
    name: www
    instance: i-7d1f0b22
    allow_reassociation: true

- name: Release www
  euca.cloud.address:
    name: www
    state: absent
"""

RETURN = r"""
address:
  description: The elastic IP after the change (empty when released).
  returned: always
  type: dict
  contains:
    public_ip:
      description: The address.
      type: str
    name:
      description: Label of the address, or null.
      type: str
    instance:
      description: Instance the address is associated with, or null.
      type: str
  sample: {public_ip: 203.0.113.33, name: www, instance: i-5c3e9a01}
generation:
  description: Ledger generation after the change.
  returned: always
  type: int
  sample: 42
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import ACCOUNT_ARGS, LEDGER_ARGS, LedgerModule
from ansible_collections.euca.cloud.plugins.module_utils.ledger import addresses


class AddressModule(LedgerModule):
    argument_spec = dict(
        LEDGER_ARGS,
        account=dict(ACCOUNT_ARGS["account"]),
        public_ip=dict(type="str"),
        name=dict(type="str"),
        instance=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "disassociated", "absent"]),
        allow_reassociation=dict(type="bool", default=False),
    )
    # Without one of them a re-run could not find the address it allocated before.
    module_kwargs = dict(required_one_of=[["public_ip", "name", "instance"]])

    def run(self):
        p = self.params
        return self.converge(
            addresses.ensure_address, public_ip=p["public_ip"], name=p["name"], instance=p["instance"],
            state=p["state"], allow_reassociation=p["allow_reassociation"],
            account=p["account"],
        )


def main():
    AddressModule()()


if __name__ == "__main__":
    main()
