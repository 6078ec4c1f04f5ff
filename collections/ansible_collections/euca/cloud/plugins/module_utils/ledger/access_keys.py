# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Access keys: the credentials an account signs its EC2 API requests with (SigV4, SigV2).

A key is an id (``AKIA`` + 16 base-32 characters, what AWS issues) and a secret (40 base-64
characters). The API looks a request's key up by id (:func:`lookup`) and checks its signature
with the secret, so the secret is kept as issued: it is handed to the operator once, when the
key is created, and listed nowhere (:func:`list_keys` never returns it). An ``Inactive`` key
stays in the ledger but signs nothing (IAM's UpdateAccessKey), so a key can be rotated out
before it is deleted.

Each key belongs to one account. An account sees and manages only its own keys; another
account's key is "not found" to it, with the words an unknown id gets. The admin account
sees and manages every account's keys.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.euca.cloud.plugins.module_utils.api import auth
from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger import accounts
from ansible_collections.euca.cloud.plugins.module_utils.ledger.schema import now

ACTIVE, INACTIVE = "Active", "Inactive"
STATUSES = (ACTIVE, INACTIVE)
#: IAM's rule for an access key id (16-128 word characters); the ones issued here are AKIA + 16 base-32
ID_RE = re.compile(r"^[A-Z0-9]{16,128}\Z")
#: a secret given by the operator (a key carried over from another cloud): printable, no white space
SECRET_RE = re.compile(r"^[\x21-\x7e]{16,128}\Z")
#: what list_keys and the modules show: never the secret
VIEW = ("id", "account", "status", "created_at")


def check_id(access_key_id):
    """``access_key_id`` when it has IAM's form, else InvalidInput."""
    if not isinstance(access_key_id, str) or not ID_RE.match(access_key_id):
        raise InvalidInput("access key id %r is not valid: use 16-128 upper-case letters and digits "
                           "(the ones issued here are AKIA and 16 more)" % (access_key_id,))
    return access_key_id


def check_status(status):
    """``status`` when it is Active or Inactive (IAM's words), else InvalidInput."""
    if status not in STATUSES:
        raise InvalidInput("access key status must be Active or Inactive, not %r" % (status,))
    return status


def view(row):
    """A key as modules and list_keys show it (without its secret)."""
    return dict((k, row[k]) for k in VIEW)


def _not_found(access_key_id):
    return NotFound("NoSuchEntity: the access key %s cannot be found; list the account's keys with "
                    "euca.cloud.access_key or create one with playbooks/create-access-key.yml" % (access_key_id,))


def get_key(txn, account, access_key_id):
    """The row of the key ``access_key_id`` as ``account`` sees it; NotFound (IAM's NoSuchEntity) otherwise.

    Another account's key is not found, in the same words as an unknown one.
    """
    check_id(access_key_id)
    found = txn.row("SELECT * FROM access_keys WHERE id = ?", access_key_id)
    if found is None or not accounts.sees(txn, account, found["account"]):
        raise _not_found(access_key_id)
    return found


def create(txn, account, access_key_id=None, secret=None):
    """Issue a key to ``account``: a new id and secret, or the ones given (a key carried over).

    Returns ``dict(id, account, secret, status, created_at)``: the only place the secret is handed
    out. A given id that exists already (in any account) is refused (Conflict) and nothing changes.
    """
    accounts.get_account(txn, account)
    if (access_key_id is None) != (secret is None):
        raise InvalidInput("an access key is issued here (neither id nor secret) or carried over (both of them)")
    if access_key_id is None:
        for _attempt in range(8):
            access_key_id, secret = auth.new_access_key()
            if txn.row("SELECT id FROM access_keys WHERE id = ?", access_key_id) is None:
                break
        else:
            raise Conflict("could not draw a fresh access key id in 8 tries")
    else:
        check_id(access_key_id)
        if not isinstance(secret, str) or not SECRET_RE.match(secret):
            raise InvalidInput("the secret of access key %s is not valid: use 16-128 printable characters "
                               "without spaces" % access_key_id)
        if txn.row("SELECT id FROM access_keys WHERE id = ?", access_key_id) is not None:
            raise Conflict("EntityAlreadyExists: access key %s exists already; choose another id" % access_key_id)
    created = now()
    txn.exec("INSERT INTO access_keys (id, account, secret, status, created_at) VALUES (?, ?, ?, ?, ?)",
             access_key_id, account, secret, ACTIVE, created)
    return {"id": access_key_id, "account": account, "secret": secret, "status": ACTIVE, "created_at": created}


def lookup(txn, access_key_id):
    """``(account, secret)`` of an active key, for checking a request's signature; None otherwise.

    An unknown, malformed or Inactive key gives None alike: the API answers each with the same
    refusal (AuthFailure), so a caller learns nothing about which keys exist.
    """
    if not isinstance(access_key_id, str) or not ID_RE.match(access_key_id):
        return None
    found = txn.row("SELECT account, secret, status FROM access_keys WHERE id = ?", access_key_id)
    if found is None or found["status"] != ACTIVE:
        return None
    return found["account"], found["secret"]


def list_keys(txn, account):
    """The keys ``account`` sees (every account's for the admin account), without their secrets."""
    if accounts.is_admin(txn, account):
        rows = txn.rows("SELECT * FROM access_keys ORDER BY account, created_at, id")
    else:
        rows = txn.rows("SELECT * FROM access_keys WHERE account = ? ORDER BY created_at, id", account)
    return [view(r) for r in rows]


def set_status(txn, account, access_key_id, status):
    """Make ``account``'s key Active or Inactive (IAM UpdateAccessKey).

    Returns ``{changed, before, after, access_key}`` (views, no secret); the same status again is no change.
    """
    check_status(status)
    found = get_key(txn, account, access_key_id)
    before = view(found)
    if found["status"] == status:
        return {"changed": False, "before": before, "after": before, "access_key": before}
    txn.exec("UPDATE access_keys SET status = ? WHERE id = ?", status, access_key_id)
    after = dict(before, status=status)
    return {"changed": True, "before": before, "after": after, "access_key": after}


def delete(txn, account, access_key_id):
    """Delete ``account``'s key (IAM DeleteAccessKey): requests signed with it are refused from now on.

    Returns ``{changed, before, after, access_key}``; a key that does not exist (or that ``account``
    cannot see) is no change.
    """
    check_id(access_key_id)
    found = txn.row("SELECT * FROM access_keys WHERE id = ?", access_key_id)
    if found is None or not accounts.sees(txn, account, found["account"]):
        accounts.get_account(txn, account)
        return {"changed": False, "before": {}, "after": {}, "access_key": {}}
    txn.exec("DELETE FROM access_keys WHERE id = ?", access_key_id)
    return {"changed": True, "before": view(found), "after": {}, "access_key": {}}


def ensure_access_key(txn, account, access_key_id=None, state="present", secret=None):
    """What the access_key module converges: one key of ``account`` in ``state``.

    ``present`` without an id issues a new key (always a change; the result's ``secret`` is the only
    copy handed out). ``present`` or ``inactive`` with an id: the key exists (created with ``secret``
    when it does not, and a secret is given; NotFound otherwise) with status Active or Inactive.
    ``absent`` deletes it. Returns ``{changed, before, after, access_key[, secret]}``.
    """
    if state not in ("present", "inactive", "absent"):
        raise InvalidInput("state must be present, inactive or absent, not %r" % (state,))
    if state == "absent":
        if access_key_id is None:
            raise InvalidInput("state=absent needs the access_key_id to delete")
        return delete(txn, account, access_key_id)
    status = ACTIVE if state == "present" else INACTIVE
    accounts.get_account(txn, account)
    if access_key_id is not None:
        check_id(access_key_id)
        exists = txn.row("SELECT account FROM access_keys WHERE id = ?", access_key_id)
        if exists is not None or secret is None:
            # not found (or another account's) says so before anything else is compared
            found = get_key(txn, account, access_key_id)
            if secret is not None and found["secret"] != secret:
                raise Conflict("access key %s exists with another secret; a secret is never changed: delete the key "
                               "and create it again, or leave the secret out" % access_key_id)
            return set_status(txn, account, access_key_id, status)
    elif secret is not None:
        raise InvalidInput("a secret is given with its access_key_id (a key carried over), or not at all")
    issued = create(txn, account, access_key_id=access_key_id, secret=secret)
    if status == INACTIVE:
        txn.exec("UPDATE access_keys SET status = ? WHERE id = ?", INACTIVE, issued["id"])
        issued["status"] = INACTIVE
    after = view(issued)
    return {"changed": True, "before": {}, "after": after, "access_key": after, "secret": issued["secret"]}
