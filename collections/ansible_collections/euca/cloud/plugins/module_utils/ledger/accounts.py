# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Accounts: who owns each record, what each account may see, and its quotas.

Every security group, instance, elastic IP, volume, snapshot, image registration and key pair
has an owner account. Ids are unique across the cloud; names (security groups, key pairs) are
unique per account. The admin account (``ADMIN``) sees and manages every account's records;
any other account sees only its own, and another account's record is "not found" to it, with
the words an unknown id gets (nothing tells it the record exists).

A security group's key in the ledger (``security_groups.name``, what instances, rules and the
data plane refer to) is its name for the admin account and ``ACCOUNT:NAME`` for the others:
A's ``web`` and B's ``web`` are two groups with two segments. The key is a valid name of the
model (ARCHITECTURE §3), so the cluster controllers render it as they render any group.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import random
import re

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, Exhausted, InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger import history
from ansible_collections.euca.cloud.plugins.module_utils.ledger.schema import now
from ansible_collections.euca.cloud.plugins.module_utils.model import names

ADMIN = "admin"
#: an account name: lower case, so a key ``ACCOUNT:NAME`` never needs folding
ACCOUNT_MAX = 32
ACCOUNT_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,%d}\Z" % (ACCOUNT_MAX - 1))
ACCOUNT_RULE = "use 1-%d lower-case letters, digits, '.', '_' or '-', starting with a letter or digit" % ACCOUNT_MAX
#: a security group's own name leaves room for its account in the key (at most names.NAME_MAX)
GROUP_MAX = names.NAME_MAX - ACCOUNT_MAX - 1
GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,%d}\Z" % (GROUP_MAX - 1))
GROUP_RULE = ("use 1-%d letters, digits, '.', '_' or '-', starting with a letter or digit "
              "(':' separates a group's account in the cloud's key)" % GROUP_MAX)
#: quota -> what it limits, as refusals say it
QUOTAS = {
    "max_instances": "instances",
    "max_cores": "cores",
    "max_addresses": "elastic IPs",
    "max_volume_gb": "GiB of volumes",
}


def check_account_name(name):
    """``name`` when it is a valid account name, else InvalidInput."""
    if not isinstance(name, str) or not ACCOUNT_RE.match(name):
        raise InvalidInput("account name %r is not valid: %s" % (name, ACCOUNT_RULE))
    return name


def get_account(txn, name):
    """The account row; NotFound naming the fix otherwise."""
    check_account_name(name)
    found = txn.row("SELECT * FROM accounts WHERE name = ?", name)
    if found is None:
        raise NotFound("unknown account %r: create it with playbooks/create-account.yml (euca.cloud.account)" % (name,))
    return found


def is_admin(txn, name):
    """True when ``name`` is an admin account (it sees and manages every account's records)."""
    row = get_account(txn, name)
    return bool(row["admin"])


def sees(txn, account, owner):
    """True when ``account`` may see and act on a record owned by ``owner``."""
    return account == owner or is_admin(txn, account)


def check_group_name(name):
    """A security group's own name (without its account), else InvalidInput."""
    if not isinstance(name, str) or not GROUP_RE.match(name):
        raise InvalidInput("security group name %r is not valid: %s" % (name, GROUP_RULE))
    return name


def group_key(account, name):
    """The ledger's key of ``account``'s group ``name`` (``name`` for the admin account, else ``ACCOUNT:NAME``).

    A key given as such (``ACCOUNT:NAME``, what describe shows the admin account) names that
    account's group, and only the admin account or that account may use it.
    """
    if isinstance(name, str) and ":" in name:
        owner, _sep, own = name.partition(":")
        check_account_name(owner)
        check_group_name(own)
        if owner != account and account != ADMIN:
            raise NotFound("unknown security group %r" % (name,))
        return name
    check_group_name(name)
    return name if account == ADMIN else "%s:%s" % (account, name)


def group_display(key):
    """A group's own name, from its key."""
    return key.partition(":")[2] if ":" in key else key


def group_owner(key):
    """The account a group key belongs to."""
    return key.partition(":")[0] if ":" in key else ADMIN


def view(row):
    """An account as modules return it."""
    out = {"name": row["name"], "number": row["number"], "admin": bool(row["admin"])}
    out["quotas"] = dict((q, row[q]) for q in QUOTAS)
    return out


def usage(txn, account):
    """What ``account`` holds now, by quota."""
    live = txn.row("SELECT count(*) AS n, COALESCE(SUM(cores), 0) AS cores FROM instances "
                   "WHERE account = ? AND state <> 'terminated'", account)
    return {
        "max_instances": int(live["n"]),
        "max_cores": int(live["cores"]),
        "max_addresses": int(txn.value("SELECT count(*) FROM elastic_ips WHERE account = ?", account)),
        "max_volume_gb": int(txn.value("SELECT COALESCE(SUM(size_gb), 0) FROM volumes WHERE account = ?", account)),
    }


def check_quota(txn, account, **more):
    """Refuse (Exhausted, nothing changed) when ``more`` (quota -> amount to add) would exceed a quota.

    EC2's words: ``InstanceLimitExceeded``, ``AddressLimitExceeded``, ``VolumeLimitExceeded``.
    """
    row = get_account(txn, account)
    used = usage(txn, account)
    codes = {"max_instances": "InstanceLimitExceeded", "max_cores": "InstanceLimitExceeded",
             "max_addresses": "AddressLimitExceeded", "max_volume_gb": "VolumeLimitExceeded"}
    for quota, amount in sorted(more.items()):
        limit = row[quota]
        if limit is None or not amount:
            continue
        if used[quota] + amount > limit:
            raise Exhausted("%s: account %s may hold %d %s; it holds %d and this asks for %d more (quota %s)" % (
                codes[quota], account, limit, QUOTAS[quota], used[quota], amount, quota))


def _new_number(txn):
    for _attempt in range(32):
        number = "%012d" % random.SystemRandom().randrange(10 ** 11, 10 ** 12)
        if txn.row("SELECT name FROM accounts WHERE number = ?", number) is None:
            return number
    raise Conflict("could not draw a fresh account number in 32 tries")


OWNED = ("security_groups", "instances", "elastic_ips", "volumes", "snapshots", "images", "keypairs")


def ensure_account(txn, name, state="present", quotas=None, admin=None):
    """Create, update (quotas) or delete an account.

    ``quotas``: quota -> limit (a non-negative integer) or None (no limit); quotas not given stay.
    Lowering a quota below what the account holds is allowed (it refuses only new requests).
    An account that still owns records cannot be deleted; the admin account never can.
    """
    check_account_name(name)
    found = txn.row("SELECT * FROM accounts WHERE name = ?", name)
    before = view(found) if found else {}
    quotas = dict(quotas or {})
    for quota, limit in quotas.items():
        if quota not in QUOTAS:
            raise InvalidInput("unknown quota %r: quotas are %s" % (quota, ", ".join(sorted(QUOTAS))))
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise InvalidInput("quota %s must be a non-negative integer or null (no limit), not %r" % (quota, limit))
    if state == "absent":
        if not found:
            return {"changed": False, "before": {}, "after": {}, "account": {}}
        if name == ADMIN:
            raise Conflict("the admin account cannot be deleted")
        holds = []
        for table in OWNED:
            where = "account = ?" + (" AND state <> 'terminated'" if table == "instances" else "")
            n = int(txn.value("SELECT count(*) FROM %s WHERE %s" % (table, where), name))
            if n:
                holds.append("%d %s" % (n, table.replace("_", " ")))
        if holds:
            raise Conflict("account %s still owns %s; delete them first" % (name, ", ".join(holds)))
        history.delete_terminated_instances(txn, "account", name)
        txn.exec("DELETE FROM accounts WHERE name = ?", name)
        return {"changed": True, "before": before, "after": {}, "account": {}}
    if state != "present":
        raise InvalidInput("state must be present or absent, not %r" % (state,))
    changed = False
    if not found:
        txn.exec("INSERT INTO accounts (name, number, admin, created_at) VALUES (?, ?, ?, ?)",
                 name, _new_number(txn), 1 if admin else 0, now())
        changed = True
    elif admin is not None and bool(found["admin"]) != bool(admin):
        if name == ADMIN and not admin:
            raise Conflict("the admin account stays an admin account")
        txn.exec("UPDATE accounts SET admin = ? WHERE name = ?", 1 if admin else 0, name)
        changed = True
    row = txn.row("SELECT * FROM accounts WHERE name = ?", name)
    for quota, limit in sorted(quotas.items()):
        if row[quota] != limit:
            txn.exec("UPDATE accounts SET %s = ? WHERE name = ?" % quota, limit, name)
            changed = True
    after = view(txn.row("SELECT * FROM accounts WHERE name = ?", name))
    return {"changed": changed, "before": before, "after": after, "account": after,
            "usage": usage(txn, name)}


def label_key(account, what, label):
    """The ledger's key of ``account``'s label (a volume's, snapshot's or elastic IP's name), as group_key."""
    if label is None:
        return None
    if ":" in label and account == ADMIN:
        return names.check_name(what, label)
    if ":" in label:
        owner, _sep, own = label.partition(":")
        if owner != account:
            raise NotFound("unknown %s %r" % (what, label))
        label = own
    names.check_name(what, label)
    if ":" in label:
        raise InvalidInput("%s name %r is not valid: ':' separates a name's account in the cloud's key" % (what, label))
    return names.check_name(what, label if account == ADMIN else "%s:%s" % (account, label))


def label_display(key, account):
    """A label in ``account``'s words (the admin account sees keys)."""
    if key is None or account is None or account == ADMIN:
        return key
    return key.partition(":")[2] if key.startswith(account + ":") else key
