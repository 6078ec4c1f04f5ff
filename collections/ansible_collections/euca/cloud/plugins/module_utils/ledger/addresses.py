# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Elastic IPs: allocate from the cloud's public_ips pool, associate, disassociate, release.

An allocation is a committed ledger row (synchronous, primary key on the address), so it
survives a kill -9 or restart of the CLC: the Hack2 bug cannot come back.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger import accounts, settings
from ansible_collections.euca.cloud.plugins.module_utils.model import addressing
from ansible_collections.euca.cloud.plugins.module_utils.model import names
from ansible_collections.euca.cloud.plugins.module_utils.ledger.instances import get_instance
from ansible_collections.euca.cloud.plugins.module_utils.ledger.schema import now

STATES = ("present", "disassociated", "absent")


def view(row, account=None):
    """An elastic IP as modules return it (its name in ``account``'s words)."""
    return {"public_ip": row["address"], "name": accounts.label_display(row["name"], account),
            "instance": row["instance_id"], "account": row["account"]}


_INSERT = ("INSERT INTO elastic_ips (address, name, instance_id, allocated_at, account) VALUES (?, ?, NULL, ?, ?) "
           "RETURNING *")


def allocate(txn, pool_addresses=None, name=None, account=accounts.ADMIN):
    """Allocate the lowest free address of the pool; returns the new row.

    ``pool_addresses``: the pool as addressing.pool_ranges gives it, or as a sorted list of
    addresses (addressing.parse_pool); by default the cloud's public_ips.
    """
    if pool_addresses is None:
        pool_addresses = addressing.pool_ranges(settings.load(txn)["public_ips"])
    elif pool_addresses and not isinstance(pool_addresses[0], tuple):
        pool_addresses = addressing.pool_ranges([str(a) for a in pool_addresses])
    if not pool_addresses:
        raise InvalidInput("the cloud has no public_ips pool: set public_ips with euca.cloud.cloud first")
    # The allocated addresses are at most the pool's size (public addresses are few).
    taken = set(addressing.ipv4_int(r["address"]) for r in txn.rows("SELECT address FROM elastic_ips"))
    address = addressing.first_free_in_ranges(pool_addresses, taken)
    return txn.exec_rows(_INSERT, address, name, now(), account)[0]


def _find(txn, public_ip, name, instance):
    if public_ip:
        return txn.row("SELECT * FROM elastic_ips WHERE address = ?", public_ip)
    if name:
        return txn.row("SELECT * FROM elastic_ips WHERE name = ?", name)
    if instance:
        return txn.row("SELECT * FROM elastic_ips WHERE instance_id = ?", instance)
    return None


def ensure_address(txn, public_ip=None, name=None, instance=None, state="present", allow_reassociation=False,
                   account=accounts.ADMIN):
    """Converge one elastic IP, found by ``public_ip``, else ``name``, else ``instance``.

    ``present`` allocates it if needed (the given address, or the lowest free one) and
    associates it with ``instance`` when given; ``disassociated`` keeps it allocated with
    no instance; ``absent`` releases it (disassociating first).

    Everything is ``account``'s: another account's address or instance is not found (an address
    held by another account cannot be allocated: EC2's ``AddressLimitExceeded``/in use), a new
    address counts against its ``max_addresses``.
    """
    if state not in STATES:
        raise InvalidInput("state must be one of %s" % ", ".join(STATES))
    accounts.get_account(txn, account)
    label = name
    if name:
        names.check_name("address", name)
        name = accounts.label_key(account, "address", name)
    if public_ip:
        public_ip = str(addressing.parse_address(public_ip, "public_ip"))
    if instance and not public_ip and not name:
        get_instance(txn, instance, account)
    found = _find(txn, public_ip, name, instance)
    if found is not None and not accounts.sees(txn, account, found["account"]):
        if public_ip and state != "absent":
            raise Conflict("elastic IP %s is allocated to another account" % public_ip)
        raise NotFound("InvalidAddress.NotFound: unknown elastic IP %r" % (public_ip or label or instance,))
    before = view(found, account) if found else {}
    if found and name and found["name"] not in (None, name):
        raise Conflict("elastic IP %s is labelled %s, not %s" % (found["address"], found["name"], name))

    if state == "absent":
        if not found:
            return {"changed": False, "before": {}, "after": {}, "address": {}}
        txn.exec("DELETE FROM elastic_ips WHERE address = ?", found["address"])
        return {"changed": True, "before": before, "after": {}, "address": {}}

    instance_row = None
    if instance and state == "present":
        instance_row = get_instance(txn, instance, account)
        owner = found["account"] if found else account
        if instance_row["account"] != owner:
            raise Conflict("elastic IP %s belongs to account %s and instance %s to account %s: an address is "
                           "associated with its own account's instances"
                           % (found["address"] if found else public_ip or "(new)", owner, instance, instance_row["account"]))
        if instance_row["state"] == "terminated":
            raise Conflict("instance %s is terminated; an elastic IP cannot be associated with it" % instance)
    changed = False
    # whether ``found`` is still the row as stored (a row just inserted is returned whole)
    current = False
    if not found:
        accounts.check_quota(txn, account, max_addresses=1)
        pool = addressing.pool_ranges(settings.load(txn)["public_ips"])
        if public_ip:
            if not addressing.in_pool(pool, addressing.ipv4_int(public_ip)):
                raise InvalidInput("public_ip %s is not in the cloud's public_ips pool" % public_ip)
            found = txn.exec_rows(_INSERT, public_ip, name, now(), account)[0]
        else:
            found = allocate(txn, pool, name, account)
        changed = current = True
    elif name and found["name"] is None:
        txn.exec("UPDATE elastic_ips SET name = ? WHERE address = ?", name, found["address"])
        changed = True

    if state == "disassociated" and found["instance_id"]:
        txn.exec("UPDATE elastic_ips SET instance_id = NULL WHERE address = ?", found["address"])
        changed, current = True, False
    elif instance_row is not None and found["instance_id"] != instance:
        if found["instance_id"] and not allow_reassociation:
            raise Conflict(
                "elastic IP %s is associated with %s; pass allow_reassociation=true to move it to %s"
                % (found["address"], found["instance_id"], instance)
            )
        other = txn.row("SELECT address FROM elastic_ips WHERE instance_id = ?", instance)
        if other:
            raise Conflict("instance %s already has elastic IP %s; disassociate it first" % (instance, other["address"]))
        txn.exec("UPDATE elastic_ips SET instance_id = ? WHERE address = ?", instance, found["address"])
        changed, current = True, False
    after = view(found if current else txn.row("SELECT * FROM elastic_ips WHERE address = ?", found["address"]), account)
    return {"changed": changed, "before": before, "after": after, "address": after}
