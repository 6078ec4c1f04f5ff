# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Elastic IPs: allocate from the cloud's public_ips pool, associate, disassociate, release.

An allocation is a committed ledger row (synchronous, primary key on the address), so it
survives a kill -9 or restart of the CLC: the Hack2 bug cannot come back.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.ledger import addressing, ids, settings
from ansible_collections.euca.cloud.plugins.module_utils.ledger.instances import get_instance
from ansible_collections.euca.cloud.plugins.module_utils.ledger.schema import now

STATES = ("present", "disassociated", "absent")


def view(row):
    """An elastic IP as modules return it."""
    return {"public_ip": row["address"], "name": row["name"], "instance": row["instance_id"]}


def allocate(txn, pool_addresses=None, name=None):
    """Allocate the lowest free address of the pool; returns the new row."""
    if pool_addresses is None:
        pool_addresses = addressing.parse_pool(settings.load(txn)["public_ips"])
    if not pool_addresses:
        raise InvalidInput("the cloud has no public_ips pool: set public_ips with euca.cloud.cloud first")
    taken = set(r["address"] for r in txn.rows("SELECT address FROM elastic_ips"))
    address = str(addressing.first_free_in_pool(pool_addresses, taken))
    txn.exec("INSERT INTO elastic_ips (address, name, instance_id, allocated_at) VALUES (?, ?, NULL, ?)", address, name, now())
    return txn.row("SELECT * FROM elastic_ips WHERE address = ?", address)


def _find(txn, public_ip, name, instance):
    if public_ip:
        return txn.row("SELECT * FROM elastic_ips WHERE address = ?", public_ip)
    if name:
        return txn.row("SELECT * FROM elastic_ips WHERE name = ?", name)
    if instance:
        return txn.row("SELECT * FROM elastic_ips WHERE instance_id = ?", instance)
    return None


def ensure_address(txn, public_ip=None, name=None, instance=None, state="present", allow_reassociation=False):
    """Converge one elastic IP, found by ``public_ip``, else ``name``, else ``instance``.

    ``present`` allocates it if needed (the given address, or the lowest free one) and
    associates it with ``instance`` when given; ``disassociated`` keeps it allocated with
    no instance; ``absent`` releases it (disassociating first).
    """
    if state not in STATES:
        raise InvalidInput("state must be one of %s" % ", ".join(STATES))
    if name:
        ids.check_name("address", name)
    if public_ip:
        public_ip = str(addressing.parse_address(public_ip, "public_ip"))
    found = _find(txn, public_ip, name, instance)
    before = view(found) if found else {}
    if found and name and found["name"] not in (None, name):
        raise Conflict("elastic IP %s is labelled %s, not %s" % (found["address"], found["name"], name))

    if state == "absent":
        if not found:
            return {"changed": False, "before": {}, "after": {}, "address": {}}
        txn.exec("DELETE FROM elastic_ips WHERE address = ?", found["address"])
        return {"changed": True, "before": before, "after": {}, "address": {}}

    instance_row = None
    if instance and state == "present":
        instance_row = get_instance(txn, instance)
        if instance_row["state"] == "terminated":
            raise Conflict("instance %s is terminated; an elastic IP cannot be associated with it" % instance)
    changed = False
    if not found:
        conf = settings.load(txn)
        pool = addressing.parse_pool(conf["public_ips"])
        if public_ip:
            if public_ip not in set(str(a) for a in pool):
                raise InvalidInput("public_ip %s is not in the cloud's public_ips pool" % public_ip)
            txn.exec("INSERT INTO elastic_ips (address, name, instance_id, allocated_at) VALUES (?, ?, NULL, ?)",
                     public_ip, name, now())
            found = txn.row("SELECT * FROM elastic_ips WHERE address = ?", public_ip)
        else:
            found = allocate(txn, pool, name)
        changed = True
    elif name and found["name"] is None:
        txn.exec("UPDATE elastic_ips SET name = ? WHERE address = ?", name, found["address"])
        changed = True

    if state == "disassociated" and found["instance_id"]:
        txn.exec("UPDATE elastic_ips SET instance_id = NULL WHERE address = ?", found["address"])
        changed = True
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
        changed = True
    after = view(txn.row("SELECT * FROM elastic_ips WHERE address = ?", found["address"]))
    return {"changed": changed, "before": before, "after": after, "address": after}
