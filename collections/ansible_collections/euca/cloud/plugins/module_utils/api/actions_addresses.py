# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""EC2-Classic elastic IPs: AllocateAddress, ReleaseAddress, AssociateAddress, DisassociateAddress,
DescribeAddresses.

The ledger keys an elastic IP by its address (ledger/addresses.py); EC2-Classic names it by
PublicIp, domain ``standard``. Each also gets an ``eipalloc-`` id (allocation_id: derived from
the address and the moment it was allocated, so a released and re-allocated address is a new
allocation, as in EC2) that requests may use instead (AllocationId) and that tags are keyed by;
an association's ``eipassoc-`` id is derived from the address and the instance in the same way.
An association change is written at once; a ``converge`` job for the instance's cluster makes
its CC's NAT follow.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib

from ansible_collections.euca.cloud.plugins.module_utils.api import query
from ansible_collections.euca.cloud.plugins.module_utils.api.actions_tags import (apply_tag_specifications,
                                                                                  check_tag_specifications,
                                                                                  delete_tags_of, ledger_refusal,
                                                                                  tag_sets)
from ansible_collections.euca.cloud.plugins.module_utils.api.base import action
from ansible_collections.euca.cloud.plugins.module_utils.api.errors import ApiError, invalid, missing
from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError
from ansible_collections.euca.cloud.plugins.module_utils.ledger import addresses
from ansible_collections.euca.cloud.plugins.module_utils.model import addressing

NOT_FOUND = "InvalidAddress.NotFound"
DOMAIN = "standard"


def _derived(prefix, *parts):
    return prefix + "-" + hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:17]


def allocation_id(row):
    """The ``eipalloc-`` id of the elastic IP ``row`` (address, allocated_at)."""
    return _derived("eipalloc", row["address"], row["allocated_at"])


def association_id(row):
    """The ``eipassoc-`` id of ``row``'s association, or None when it is not associated."""
    return _derived("eipassoc", row["address"], row["instance_id"]) if row["instance_id"] else None


def _visible_rows(txn, ctx):
    if ctx.admin:
        return txn.rows("SELECT * FROM elastic_ips ORDER BY address")
    return txn.rows("SELECT * FROM elastic_ips WHERE account = ? ORDER BY address", ctx.account)


def _check_ip(text):
    try:
        return str(addressing.parse_address(text, "PublicIp"))
    except EucaError as exc:
        raise invalid(exc.msg)


def _find(txn, ctx, public_ip=None, alloc=None, assoc=None):
    """The caller's elastic IP row by PublicIp, AllocationId or AssociationId; EC2's NotFound codes."""
    if public_ip:
        row = txn.row("SELECT * FROM elastic_ips WHERE address = ?", _check_ip(public_ip))
        if row is None or not (ctx.admin or row["account"] == ctx.account):
            raise ApiError(NOT_FOUND, "Address '%s' not found." % public_ip)
        return row
    for row in _visible_rows(txn, ctx):
        if (alloc and allocation_id(row) == alloc) or (assoc and association_id(row) == assoc):
            return row
    if alloc:
        raise ApiError("InvalidAllocationID.NotFound", "The allocation ID '%s' does not exist" % alloc)
    raise ApiError("InvalidAssociationID.NotFound", "The association ID '%s' does not exist" % assoc)


def _target(txn, ctx, params, association=False):
    public_ip = params.get("PublicIp")
    other = params.get("AssociationId" if association else "AllocationId")
    if not public_ip and not other:
        raise missing("PublicIp or %s" % ("AssociationId" if association else "AllocationId"))
    if association:
        return _find(txn, ctx, public_ip=public_ip, assoc=other)
    return _find(txn, ctx, public_ip=public_ip, alloc=other)


def _cluster_of(txn, instance_id):
    return txn.value("SELECT cluster FROM instances WHERE id = ?", instance_id) if instance_id else None


def _converge(txn, ctx, row, *instance_ids):
    """A converge job for each cluster whose instances' NAT this change touches."""
    clusters = sorted(set(c for c in (_cluster_of(txn, i) for i in instance_ids if i) if c))
    for cluster in clusters:
        ctx.enqueue(txn, "converge", cluster, [row["address"]], {"address": row["address"]})


def _ensure(txn, ctx, **kwargs):
    try:
        return addresses.ensure_address(txn, account=ctx.account, **kwargs)
    except EucaError as exc:
        raise ledger_refusal(exc, not_found=NOT_FOUND, conflict="Resource.AlreadyAssociated")


@action("AllocateAddress")
def allocate_address(ctx, params):
    """The lowest free address of the cloud's public_ips (or ``Address``), counted against the
    account's max_addresses (AddressLimitExceeded)."""
    domain = params.get("Domain", DOMAIN)
    if domain != DOMAIN:
        raise invalid("Domain %r is not offered: this cloud is EC2-Classic (domain standard)" % domain)
    wanted = params.get("Address")
    wanted = _check_ip(wanted) if wanted else None
    check_tag_specifications(params, "elastic-ip")
    with ctx.write() as txn:
        if wanted and txn.row("SELECT address FROM elastic_ips WHERE address = ?", wanted) is not None:
            raise ApiError("InvalidAddress.InUse", "Address %s is already allocated" % wanted)
        result = _ensure(txn, ctx, public_ip=wanted, state="disassociated")
        row = txn.row("SELECT * FROM elastic_ips WHERE address = ?", result["address"]["public_ip"])
        tags = apply_tag_specifications(txn, ctx, params, "elastic-ip", [allocation_id(row)])
    return {"publicIp": row["address"], "domain": DOMAIN, "allocationId": allocation_id(row), "tagSet": tags or None}


@action("ReleaseAddress")
def release_address(ctx, params):
    """Give the address back (disassociating it first, as EC2-Classic does); its tags go with it."""
    with ctx.write() as txn:
        row = _target(txn, ctx, params)
        _ensure(txn, ctx, public_ip=row["address"], state="absent")
        delete_tags_of(txn, [allocation_id(row)])
        _converge(txn, ctx, row, row["instance_id"])
    return {"return": True}


@action("AssociateAddress")
def associate_address(ctx, params):
    """Associate the address with one of the caller's instances; EC2-Classic moves it from another
    instance (AllowReassociation defaults to true here); an instance holds one elastic IP."""
    instance = params.get("InstanceId", required=True)
    allow = params.bool("AllowReassociation", True)
    with ctx.write() as txn:
        row = _target(txn, ctx, params)
        target = txn.row("SELECT account, state FROM instances WHERE id = ?", instance)
        if target is None or not (ctx.admin or target["account"] == ctx.account):
            raise ApiError("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist" % instance)
        if target["state"] == "terminated":
            raise ApiError("IncorrectInstanceState", "Instance %s is terminated" % instance)
        previous = row["instance_id"]
        _ensure(txn, ctx, public_ip=row["address"], instance=instance, allow_reassociation=allow)
        after = txn.row("SELECT * FROM elastic_ips WHERE address = ?", row["address"])
        if previous != instance:
            _converge(txn, ctx, row, previous, instance)
    return {"return": True, "associationId": association_id(after)}


@action("DisassociateAddress")
def disassociate_address(ctx, params):
    """Take the address off its instance (no change when it is on none)."""
    with ctx.write() as txn:
        row = _target(txn, ctx, params, association=True)
        if row["instance_id"]:
            _ensure(txn, ctx, public_ip=row["address"], state="disassociated")
            _converge(txn, ctx, row, row["instance_id"])
    return {"return": True}


DESCRIBE_FILTERS = {
    "domain": lambda a: a["domain"],
    "instance-id": lambda a: a["instanceId"] or None,
    "public-ip": lambda a: a["publicIp"],
    "allocation-id": lambda a: a["allocationId"],
    "association-id": lambda a: a.get("associationId"),
    "private-ip-address": lambda a: a.get("privateIpAddress"),
}


@action("DescribeAddresses")
def describe_addresses(ctx, params):
    """The caller's elastic IPs (every account's for the admin); PublicIp.N and AllocationId.N must
    exist (InvalidAddress.NotFound / InvalidAllocationID.NotFound), Filter.N as EC2's."""
    wanted_ips = [_check_ip(ip) for ip in params.list("PublicIp")]
    wanted_allocs = params.list("AllocationId")
    filters = params.filters()
    with ctx.read() as txn:
        if ctx.admin:
            rows = txn.rows("SELECT e.*, i.private_ip FROM elastic_ips e LEFT JOIN instances i ON i.id = e.instance_id "
                            "ORDER BY e.address")
        else:
            rows = txn.rows("SELECT e.*, i.private_ip FROM elastic_ips e LEFT JOIN instances i ON i.id = e.instance_id "
                            "WHERE e.account = ? ORDER BY e.address", ctx.account)
        tags = tag_sets(txn, [allocation_id(r) for r in rows])
    if wanted_ips or wanted_allocs:
        by_ip = dict((r["address"], r) for r in rows)
        by_alloc = dict((allocation_id(r), r) for r in rows)
        for ip in wanted_ips:
            if ip not in by_ip:
                raise ApiError(NOT_FOUND, "Address '%s' not found." % ip)
        for alloc in wanted_allocs:
            if alloc not in by_alloc:
                raise ApiError("InvalidAllocationID.NotFound", "The allocation ID '%s' does not exist" % alloc)
        chosen = set(wanted_ips) | set(by_alloc[a]["address"] for a in wanted_allocs)
        rows = [r for r in rows if r["address"] in chosen]
    items = []
    for row in rows:
        alloc = allocation_id(row)
        items.append({
            "publicIp": row["address"],
            "allocationId": alloc,
            "domain": DOMAIN,
            # EC2-Classic shows an unassociated address with an empty instanceId
            "instanceId": row["instance_id"] or "",
            "associationId": association_id(row),
            "privateIpAddress": row["private_ip"] if row["instance_id"] else None,
            "tagSet": tags[alloc],
        })
    return {"addressesSet": query.apply_filters(items, filters, DESCRIBE_FILTERS)}
