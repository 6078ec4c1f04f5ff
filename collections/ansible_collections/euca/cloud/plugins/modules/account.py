#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: account
short_description: Create, change the quotas of, and delete accounts of the cloud
version_added: 0.2.0
description:
  - An account owns security groups, instances, elastic IPs, volumes, snapshots, image registrations and key pairs.
    Its names (groups, key pairs, labels) are its own; another account's records are not found to it.
  - The admin account (V(admin)) exists in every ledger, sees and manages every account's records and cannot be
    deleted. Another account can be made an admin account with O(admin=true).
  - Quotas limit what an account holds; a request that would exceed one is refused with EC2's code
    (C(InstanceLimitExceeded), C(AddressLimitExceeded), C(VolumeLimitExceeded)) and changes nothing. Lowering a quota
    below what the account holds refuses only new requests.
  - An account that still owns records cannot be deleted (its terminated instances are history and go with it).
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.ledger
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
options:
  name:
    description: The account's name, 1-32 lower-case letters, digits, C(.), C(_) or C(-), starting with a letter or digit.
    type: str
    required: true
  state:
    description: V(present) creates it (or sets its quotas); V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  admin:
    description: Whether the account sees and manages every account's records. Left as it is when omitted.
    type: bool
  quotas:
    description:
      - Limits; a quota left out keeps its value, V(-1) removes the limit. New accounts have no limits.
    type: dict
    suboptions:
      max_instances:
        description: Live (not terminated) instances.
        type: int
      max_cores:
        description: Cores of its live instances.
        type: int
      max_addresses:
        description: Allocated elastic IPs.
        type: int
      max_volume_gb:
        description: GiB of its volumes.
        type: int
seealso:
  - module: euca.cloud.instance
  - module: euca.cloud.keypair
"""

EXAMPLES = r"""
- name: An account for the web team, at most 4 instances and 2 elastic IPs
  euca.cloud.account:
    name: webteam
    quotas:
      max_instances: 4
      max_addresses: 2

- name: Remove its instance limit
  euca.cloud.account:
    name: webteam
    quotas:
      max_instances: -1

- name: Delete it (refused while it owns anything)
  euca.cloud.account:
    name: webteam
    state: absent
"""

RETURN = r"""
account:
  description: The account after the change (empty when deleted).
  returned: always
  type: dict
  contains:
    name:
      description: Its name.
      type: str
    number:
      description: Its 12-digit account number (EC2's account id; the owner id of its records).
      type: str
    admin:
      description: Whether it sees and manages every account's records.
      type: bool
    quotas:
      description: Its limits by quota, null for none.
      type: dict
  sample: {name: webteam, number: "418209735162", admin: false,
           quotas: {max_instances: 4, max_cores: null, max_addresses: 2, max_volume_gb: null}}
usage:
  description: What the account holds now, by quota.
  returned: when O(state=present)
  type: dict
  sample: {max_instances: 1, max_cores: 1, max_addresses: 0, max_volume_gb: 0}
generation:
  description: Ledger generation after the change.
  returned: always
  type: int
  sample: 42
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import LEDGER_ARGS, LedgerModule
from ansible_collections.euca.cloud.plugins.module_utils.ledger import accounts


class AccountModule(LedgerModule):
    argument_spec = dict(
        LEDGER_ARGS,
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        admin=dict(type="bool"),
        quotas=dict(type="dict", options=dict((q, dict(type="int")) for q in sorted(accounts.QUOTAS))),
    )

    def run(self):
        p = self.params
        quotas = None
        if p["quotas"] is not None:
            # left out (null): keep; -1: no limit
            quotas = dict((q, None if v == -1 else v) for q, v in p["quotas"].items() if v is not None)
        return self.converge(accounts.ensure_account, p["name"], state=p["state"], quotas=quotas, admin=p["admin"])


def main():
    AccountModule()()


if __name__ == "__main__":
    main()
