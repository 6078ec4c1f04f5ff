#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: access_key
short_description: Issue, deactivate and delete an account's access keys for the EC2 API
version_added: 0.3.0
description:
  - An access key (an id and a secret) is what an account signs its EC2 API requests with (SigV4 or SigV2), as with
    AWS's C(aws_access_key_id) and C(aws_secret_access_key). The API on the CLC (role C(euca.cloud.clc_api)) acts as the
    key's account.
  - Without O(access_key_id), O(state=present) issues a new key (C(AKIA) and 16 more characters) and returns its secret
    once, in RV(secret_access_key); the secret is never shown again (not by this module, not by the API). Every such
    run is a change. Run the task with C(no_log), so that the secret never reaches a log, and keep the secret from the
    registered result (C(playbooks/create-access-key.yml) writes it to a credentials file).
  - With O(access_key_id), makes sure that key is Active (O(state=present)) or Inactive (O(state=inactive); its
    requests are refused but it can be made Active again), or deletes it (O(state=absent)). A key that does not
    exist is not found (IAM's C(NoSuchEntity)), unless O(secret_access_key) is given too, which records a key carried
    over from elsewhere with that id and secret.
  - An account sees and manages only its own keys; another account's key is not found to it. The admin account
    manages every account's keys.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.ledger
  - euca.cloud.account
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
options:
  access_key_id:
    description: The key's id. Required with O(state=inactive) and O(state=absent).
    type: str
  secret_access_key:
    description:
      - With O(access_key_id), the secret of a key carried over from another cloud (16-128 printable characters), recorded
        when the key is not in the ledger yet. A secret is never changed; a different one for an existing key is refused.
    type: str
  state:
    description:
      - V(present) issues a new key (without O(access_key_id)) or makes the key Active; V(inactive) makes it Inactive;
        V(absent) deletes it (no change when there is none).
    type: str
    choices: [present, inactive, absent]
    default: present
notes:
  - In check mode a new key is not issued and RV(secret_access_key) is not returned; RV(access_key) shows C((check mode))
    for its id.
seealso:
  - module: euca.cloud.account
"""

EXAMPLES = r"""
- name: Issue a key to the web team (the secret is in the result once)
  euca.cloud.access_key:
    account: webteam
  register: webteam_key
  no_log: true

- name: Keep it in an AWS credentials file on the controller
  ansible.builtin.copy:
    content: |
      [webteam]
      aws_access_key_id = {{ webteam_key.access_key_id }}
      aws_secret_access_key = {{ webteam_key.secret_access_key }}
    dest: ~/.euca/webteam.credentials
    mode: "0600"
  delegate_to: localhost
  no_log: true

- name: Rotate it out (its requests are refused from now on)
  euca.cloud.access_key:
    account: webteam
    access_key_id: "{{ webteam_key.access_key_id }}"
    state: inactive

- name: Delete it
  euca.cloud.access_key:
    account: webteam
    access_key_id: "{{ webteam_key.access_key_id }}"
    state: absent
"""

RETURN = r"""
access_key:
  description: The key after the change, without its secret (empty when deleted).
  returned: always
  type: dict
  contains:
    id:
      description: Its id.
      type: str
    account:
      description: The account it belongs to.
      type: str
    status:
      description: C(Active) or C(Inactive).
      type: str
    created_at:
      description: When it was issued (UTC).
      type: str
  sample: {id: AKIAQ4ZJ7RNB2XW5LKTE, account: webteam, status: Active, created_at: "2024-05-01T09:30:00.000000Z"}
access_key_id:
  description: The key's id.
  returned: when O(state) is not V(absent)
  type: str
  sample: AKIAQ4ZJ7RNB2XW5LKTE
secret_access_key:
  description: The secret of the key this run issued. Given once, never again.
  returned: when a new key was issued (O(state=present) without O(access_key_id); not in check mode)
  type: str
keys:
  description: The keys the account sees now (every account's for the admin account), without secrets.
  returned: always
  type: list
  elements: dict
generation:
  description: Ledger generation after the change.
  returned: always
  type: int
  sample: 42
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import ACCOUNT_ARGS, LEDGER_ARGS, LedgerModule
from ansible_collections.euca.cloud.plugins.module_utils.ledger import access_keys


def _converge(txn, account, access_key_id, state, secret):
    """ensure_access_key, plus the keys the account sees after it (in the same transaction)."""
    outcome = access_keys.ensure_access_key(txn, account, access_key_id, state=state, secret=secret)
    outcome["keys"] = access_keys.list_keys(txn, account)
    return outcome


class AccessKeyModule(LedgerModule):
    argument_spec = dict(
        LEDGER_ARGS,
        account=dict(ACCOUNT_ARGS["account"]),
        access_key_id=dict(type="str", no_log=False),  # an id, not a secret
        secret_access_key=dict(type="str", no_log=True),
        state=dict(type="str", default="present", choices=["present", "inactive", "absent"]),
    )
    module_kwargs = dict(
        required_if=[("state", "inactive", ["access_key_id"]), ("state", "absent", ["access_key_id"])],
        required_by={"secret_access_key": "access_key_id"},
    )

    def run(self):
        p = self.params
        outcome = self.converge(_converge, p["account"], p["access_key_id"], p["state"], p["secret_access_key"])
        secret = outcome.pop("secret", None)
        issued = p["access_key_id"] is None and secret is not None
        if issued and self.check_mode:
            # a rolled-back key is no key: its drawn id would mislead, its secret is worthless
            drawn = outcome["access_key"]["id"]
            outcome["access_key"]["id"] = "(check mode)"
            outcome["keys"] = [k for k in outcome["keys"] if k["id"] != drawn]
            if "diff" in outcome:
                outcome["diff"]["after"] = dict(outcome["access_key"])
            issued = False
        if outcome["access_key"]:
            outcome["access_key_id"] = outcome["access_key"]["id"]
        if issued:
            outcome["secret_access_key"] = secret
        return outcome


def main():
    AccessKeyModule()()


if __name__ == "__main__":
    main()
