# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Key pairs (EC2 Create/Import/Delete/DescribeKeyPairs): an account's public keys, by name.

The ledger keeps only the public half. A created pair's private key is made on the CLC by the
module, handed back once and never stored. Names are unique per account; ids (``key-...``)
across the cloud. An instance keeps the public key it was launched with (instances.public_key),
so deleting a pair changes no instance, as in EC2.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger import accounts, ids
from ansible_collections.euca.cloud.plugins.module_utils.ledger.schema import now
from ansible_collections.euca.cloud.plugins.module_utils.model import keys

VIEW = ("name", "id", "key_type", "fingerprint", "account")


def view(row):
    """A key pair as modules return it (with its public key)."""
    out = dict((k, row[k]) for k in VIEW)
    out["public_key"] = row["public_key"]
    return out


def get_keypair(txn, account, name):
    """``account``'s key pair ``name``; EC2's InvalidKeyPair.NotFound otherwise."""
    keys.check_key_name(name)
    found = txn.row("SELECT * FROM keypairs WHERE account = ? AND name = ?", account, name)
    if found is None:
        raise NotFound("InvalidKeyPair.NotFound: account %s has no key pair %r: create it with "
                       "playbooks/create-keypair.yml or import one with playbooks/import-keypair.yml" % (account, name))
    return found


def check_free(txn, account, name):
    """Refuse (EC2's InvalidKeyPair.Duplicate) when ``account`` already has a key pair ``name``."""
    found = txn.row("SELECT fingerprint FROM keypairs WHERE account = ? AND name = ?", account, name)
    if found is not None:
        raise Conflict("InvalidKeyPair.Duplicate: account %s already has a key pair named %r (fingerprint %s); "
                       "delete it first or choose another name" % (account, name, found["fingerprint"]))


def list_keypairs(txn, account):
    """The key pairs ``account`` sees (every account's for the admin account), by account and name."""
    if accounts.is_admin(txn, account):
        rows = txn.rows("SELECT * FROM keypairs ORDER BY account, name")
    else:
        rows = txn.rows("SELECT * FROM keypairs WHERE account = ? ORDER BY name", account)
    return [view(r) for r in rows]


def ensure_keypair(txn, name, state="present", account=accounts.ADMIN, public_key=None, created=None):
    """Record (``present``) or delete (``absent``) ``account``'s key pair ``name``.

    ``public_key`` imports a key (OpenSSH line; the model checks it as EC2 ImportKeyPair does):
    the same key again is no change, another key under a taken name is refused. ``created`` is
    ``(public_line, fingerprint, key_type)`` of a pair the module generated (EC2 CreateKeyPair):
    a taken name is refused (InvalidKeyPair.Duplicate) and nothing changes.
    """
    keys.check_key_name(name)
    accounts.get_account(txn, account)
    found = txn.row("SELECT * FROM keypairs WHERE account = ? AND name = ?", account, name)
    before = view(found) if found else {}
    if state == "absent":
        if not found:
            return {"changed": False, "before": {}, "after": {}, "keypair": {}}
        txn.exec("DELETE FROM keypairs WHERE account = ? AND name = ?", account, name)
        return {"changed": True, "before": before, "after": {}, "keypair": {}}
    if state != "present":
        raise InvalidInput("state must be present or absent, not %r" % (state,))
    if (public_key is None) == (created is None):
        raise InvalidInput("a key pair is imported (public_key) or created on the CLC, one of them")
    if created is not None:
        line, fingerprint, key_type = created
    else:
        key_type, blob, comment = keys.parse_public_key(public_key)
        line = keys.openssh_line(key_type, blob, comment)
        fingerprint = keys.imported_fingerprint(key_type, blob)
    if found:
        if created is None and keys.parse_public_key(found["public_key"])[:2] == (key_type, blob):
            return {"changed": False, "before": before, "after": before, "keypair": before}
        check_free(txn, account, name)
    new = ids.new_id(txn, "key")
    txn.exec("INSERT INTO keypairs (account, name, id, key_type, fingerprint, public_key, created_at) "
             "VALUES (?, ?, ?, ?, ?, ?, ?)", account, name, new, key_type, fingerprint, line, now())
    after = view(txn.row("SELECT * FROM keypairs WHERE account = ? AND name = ?", account, name))
    return {"changed": True, "before": {}, "after": after, "keypair": after}
