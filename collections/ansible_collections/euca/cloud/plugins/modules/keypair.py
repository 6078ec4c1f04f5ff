#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: keypair
short_description: Create, import and delete an account's key pairs (EC2 CreateKeyPair, ImportKeyPair, DeleteKeyPair)
version_added: 0.2.0
description:
  - With O(public_key), imports that public key under O(name) (EC2 ImportKeyPair); importing the same key again is no
    change, another key under a taken name is refused (C(InvalidKeyPair.Duplicate)).
  - Without it, generates a new pair on the host the module runs on (the CLC) with C(ssh-keygen) (EC2 CreateKeyPair) and
    returns the private key once, in RV(private_key); the ledger keeps only the public key. A taken name is refused
    and nothing changes. Run the task with C(no_log) so that the private key never reaches a log.
  - Fingerprints are EC2's; a created RSA key's is the SHA-1 of its PKCS#8 DER private key, an imported RSA key's the
    MD5 of its DER public key, an ED25519 key's the base64 SHA-256 of its public key.
  - Instances launched with O(name) as their C(key_name) (M(euca.cloud.instance)) get the public key; deleting the
    pair later changes no instance.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.ledger
  - euca.cloud.account
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
options:
  name:
    description: The key pair's name, unique in its account (EC2's rule, up to 255 ASCII characters).
    type: str
    required: true
  state:
    description: V(present) creates or imports it; V(absent) deletes it (no change when there is none).
    type: str
    choices: [present, absent]
    default: present
  public_key:
    description: An OpenSSH public key line (C(ssh-rsa) of 2048 bits or more, C(ssh-ed25519), C(ecdsa-sha2-*)) to import.
    type: str
  key_type:
    description: The type of a pair to create (without O(public_key)).
    type: str
    choices: [rsa, ed25519]
    default: rsa
seealso:
  - module: euca.cloud.instance
  - module: euca.cloud.account
"""

EXAMPLES = r"""
- name: Create a key pair and keep its private key on the controller
  euca.cloud.keypair:
    name: ops
  register: ops_key
  no_log: true

- name: Write the private key (mode 0600)
  ansible.builtin.copy:
    content: "{{ ops_key.private_key }}"
    dest: ~/.ssh/ops.pem
    mode: "0600"
  delegate_to: localhost
  no_log: true

- name: Import an existing public key for the web team
  euca.cloud.keypair:
    name: laptop
    account: webteam
    public_key: "{{ lookup('ansible.builtin.file', '~/.ssh/id_ed25519.pub') }}"

- name: Delete it
  euca.cloud.keypair:
    name: laptop
    account: webteam
    state: absent
"""

RETURN = r"""
keypair:
  description: The key pair after the change (empty when deleted).
  returned: always
  type: dict
  contains:
    name:
      description: Its name.
      type: str
    id:
      description: Its id.
      type: str
    key_type:
      description: C(ssh-rsa), C(ssh-ed25519) or C(ecdsa-sha2-nistp256/384/521).
      type: str
    fingerprint:
      description: Its fingerprint as EC2 shows it.
      type: str
    public_key:
      description: The public key, one OpenSSH line.
      type: str
    account:
      description: The account that owns it.
      type: str
  sample: {name: ops, id: key-0a1b2c3d, key_type: ssh-ed25519, fingerprint: "mh7dE6uRgB0hSGx9Z3U/5Dc6hqWg2NLiMJZeMeQ3eNI=",
           public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... ops", account: admin}
private_key:
  description: The private key of a pair this run created (PEM for RSA, OpenSSH for ED25519). Given once, never stored.
  returned: when a pair was created
  type: str
generation:
  description: Ledger generation after the change.
  returned: always
  type: int
  sample: 42
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import ACCOUNT_ARGS, LEDGER_ARGS, LedgerModule
from ansible_collections.euca.cloud.plugins.module_utils.ledger import keypairs
from ansible_collections.euca.cloud.plugins.module_utils.model import keys


class KeypairModule(LedgerModule):
    argument_spec = dict(
        LEDGER_ARGS,
        account=dict(ACCOUNT_ARGS["account"]),
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        public_key=dict(type="str"),
        key_type=dict(type="str", default="rsa", choices=["rsa", "ed25519"]),
    )

    def run(self):
        p = self.params
        keys.check_key_name(p["name"])
        if p["state"] == "absent" or p["public_key"] is not None:
            return self.converge(keypairs.ensure_keypair, p["name"], state=p["state"], account=p["account"],
                                 public_key=p["public_key"])
        if self.check_mode:
            # what a creation would record, without making a key (a taken name is refused as in a real run)
            created = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== check-mode", "(check mode)", "ssh-" + p["key_type"])
            return self.converge(keypairs.ensure_keypair, p["name"], account=p["account"], created=created)
        # a taken name is refused before a key is made (ensure_keypair checks again, under the lock)
        self.read(keypairs.check_free, p["account"], p["name"])
        private, public, fingerprint = keys.generate(p["key_type"])
        key_type = public.split()[0]
        outcome = self.converge(keypairs.ensure_keypair, p["name"], account=p["account"],
                                created=(public, fingerprint, key_type))
        if outcome.get("changed"):
            outcome["private_key"] = private
        return outcome


def main():
    KeypairModule()()


if __name__ == "__main__":
    main()
