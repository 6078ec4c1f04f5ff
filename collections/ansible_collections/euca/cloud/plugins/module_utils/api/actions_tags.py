# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""EC2 tags: CreateTags, DeleteTags, DescribeTags, and the helpers every resource action uses.

Tags live in the ledger's ``tags`` table (schema 4), keyed by the resource's EC2 id; each row
carries the resource's owner account (not the caller's: the admin account tagging account a's
volume writes a tag a sees) and its EC2 resource type. ``tag_sets`` gives Describe* actions the
tagSet of many resources in one query, ``apply_tag_specifications`` tags resources at creation
(``TagSpecification.N``) in the creating request's transaction.

A resource deleted by a playbook (the ledger last) may leave its tag rows behind: nothing reads
them, because ``tag_sets`` is asked only about resources that exist and DescribeTags leaves out
rows whose resource is gone (``resource_owners``).

Also here, because every resource action of this family needs them: ``ledger_refusal`` (a
ledger EucaError as EC2's error), ``iso_time`` and ``owner_numbers``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

from ansible_collections.euca.cloud.plugins.module_utils.api import query
from ansible_collections.euca.cloud.plugins.module_utils.api.base import action, group_id
from ansible_collections.euca.cloud.plugins.module_utils.api.errors import ApiError, from_euca, invalid, missing

#: EC2's limits on tags
MAX_TAGS = 50
KEY_MAX = 128
VALUE_MAX = 256
#: id prefix -> (EC2 resource type, the NotFound code of that resource, the ledger table)
PREFIXES = {
    "i": ("instance", "InvalidInstanceID.NotFound", "instances"),
    "sg": ("security-group", "InvalidGroup.NotFound", "security_groups"),
    "eipalloc": ("elastic-ip", "InvalidAllocationID.NotFound", "elastic_ips"),
    "vol": ("volume", "InvalidVolume.NotFound", "volumes"),
    "snap": ("snapshot", "InvalidSnapshot.NotFound", "snapshots"),
    "emi": ("image", "InvalidAMIID.NotFound", "images"),
    "eki": ("image", "InvalidAMIID.NotFound", "images"),
    "eri": ("image", "InvalidAMIID.NotFound", "images"),
    "key": ("key-pair", "InvalidKeyPair.NotFound", "keypairs"),
}
_ID = re.compile(r"^([a-z]+)-[0-9a-f]{8,17}\Z")
#: how many ids go into one ``IN (...)`` (SQLite's old limit on parameters is 999)
CHUNK = 500
#: a ledger refusal whose message starts with EC2's code says so (``InvalidVolume.NotFound: ...``)
_CODE = re.compile(r"^((?:Invalid[A-Za-z]*\.[A-Za-z]+)|VolumeInUse|IncorrectState|[A-Za-z]+LimitExceeded):\s*")


def ledger_refusal(exc, not_found=None, conflict="IncorrectState"):
    """The ApiError for a ledger EucaError: the EC2 code its message starts with when it names one
    (the ledger writes ``InvalidVolume.NotFound: ...``, ``InvalidKeyPair.Duplicate: ...``), else
    errors.from_euca's mapping with this resource's ``not_found`` and ``conflict`` codes."""
    msg = getattr(exc, "msg", str(exc))
    found = _CODE.match(msg)
    if found and not found.group(1).endswith("LimitExceeded"):
        return ApiError(found.group(1), msg[found.end():])
    return from_euca(exc, not_found=not_found, conflict=conflict)


def iso_time(stamp):
    """The ledger's timestamp (``...T..:..:..ffffffZ``) as a UTC datetime (query renders EC2's form)."""
    if not stamp:
        return None
    return datetime.datetime.strptime(stamp.rstrip("Z")[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc)


def owner_numbers(txn):
    """account name -> its 12-digit number (EC2's ownerId)."""
    return dict((r["name"], r["number"]) for r in txn.rows("SELECT name, number FROM accounts"))


def chunks(values):
    """``values`` in slices small enough for one ``IN (...)``."""
    values = list(values)
    for start in range(0, len(values), CHUNK):
        yield values[start:start + CHUNK]


def marks(values):
    return ", ".join("?" * len(values))


def resource_type(resource_id):
    """The EC2 resource type of an id by its prefix, or None when no resource has that prefix."""
    found = _ID.match(resource_id or "")
    spec = PREFIXES.get(found.group(1)) if found else None
    return spec[0] if spec else None


def resource_owners(txn, resource_ids):
    """``{id: owner account}`` for those of ``resource_ids`` that exist: one query per kind of id.

    Security groups and elastic IPs have derived ids (base.group_id, actions_addresses.allocation_id),
    so their (few) rows are read whole and their ids computed.
    """
    from ansible_collections.euca.cloud.plugins.module_utils.api import actions_addresses

    by_table = {}
    for rid in set(resource_ids):
        found = _ID.match(rid or "")
        if found and found.group(1) in PREFIXES:
            by_table.setdefault(PREFIXES[found.group(1)][2], []).append(rid)
    out = {}
    for table, ids in by_table.items():
        wanted = set(ids)
        if table == "security_groups":
            for row in txn.rows("SELECT name, account FROM security_groups"):
                if group_id(row["name"]) in wanted:
                    out[group_id(row["name"])] = row["account"]
        elif table == "elastic_ips":
            for row in txn.rows("SELECT address, allocated_at, account FROM elastic_ips"):
                alloc = actions_addresses.allocation_id(row)
                if alloc in wanted:
                    out[alloc] = row["account"]
        else:
            for part in chunks(ids):
                for row in txn.rows("SELECT id, account FROM %s WHERE id IN (%s)" % (table, marks(part)), *part):
                    out[row["id"]] = row["account"]
    return out


def tag_sets(txn, resource_ids):
    """``{id: [{"key": .., "value": ..}]}`` for every id of ``resource_ids`` (``[]`` without tags),
    keys in order: a Describe* action's tagSet for all its items in one query per 500 ids."""
    ids = list(dict.fromkeys(resource_ids))
    out = dict((rid, []) for rid in ids)
    for part in chunks(ids):
        for row in txn.rows("SELECT resource_id, tag_key, tag_value FROM tags WHERE resource_id IN (%s) "
                            "ORDER BY resource_id, tag_key" % marks(part), *part):
            out[row["resource_id"]].append({"key": row["tag_key"], "value": row["tag_value"]})
    return out


def check_tag(key, value):
    """Refuse a tag EC2 refuses: key 1-128 characters not starting with ``aws:``, value at most 256."""
    if not key:
        raise invalid("Tag keys cannot be empty")
    if len(key) > KEY_MAX:
        raise invalid("Tag key exceeds the maximum length of %d characters: %s..." % (KEY_MAX, key[:20]))
    if key.lower().startswith("aws:"):
        raise invalid("Tag keys starting with 'aws:' are reserved for internal use: %s" % key)
    if len(value) > VALUE_MAX:
        raise invalid("Tag value exceeds the maximum length of %d characters (key %s)" % (VALUE_MAX, key))


def _check_count(txn, pairs_by_id):
    """Refuse (TagLimitExceeded) when a resource would hold more than 50 tags."""
    ids = list(pairs_by_id)
    have = dict((rid, set()) for rid in ids)
    for part in chunks(ids):
        for row in txn.rows("SELECT resource_id, tag_key FROM tags WHERE resource_id IN (%s)" % marks(part), *part):
            have[row["resource_id"]].add(row["tag_key"])
    for rid in ids:
        total = have[rid] | set(k for k, _v in pairs_by_id[rid])
        if len(total) > MAX_TAGS:
            raise ApiError("TagLimitExceeded", "The maximum number of tags per resource (%d) would be exceeded "
                           "for %s (it has %d)" % (MAX_TAGS, rid, len(have[rid])))


_UPSERT = ("INSERT INTO tags (resource_id, tag_key, tag_value, account, resource_type) VALUES (?, ?, ?, ?, ?) "
           "ON CONFLICT (resource_id, tag_key) DO UPDATE SET tag_value = excluded.tag_value")


def _write(txn, resources, pairs):
    """Write ``pairs`` on every resource of ``resources`` (``[(id, owner)]``), checked already."""
    for rid, owner in resources:
        for key, value in pairs:
            txn.exec(_UPSERT, rid, key, value, owner, resource_type(rid))


def check_tag_specifications(params, resource_type_name, untagged=()):
    """The ``(key, value)`` pairs ``TagSpecification.N`` gives for ``resource_type_name``, checked:
    a specification of another type is refused (this request creates only that type) unless it
    is one of ``untagged`` (types EC2 lets the request tag, of which it makes none here: checked,
    then nothing to apply them to), as are EC2's invalid tags and more than 50."""
    pairs = []
    for given_type, tags in params.tag_specifications():
        if given_type != resource_type_name and given_type not in untagged:
            raise invalid("'%s' is not a valid taggable resource type for this operation (it creates a %s)"
                          % (given_type, resource_type_name))
        for key, value in tags:
            check_tag(key, value)
        if given_type == resource_type_name:
            pairs.extend(tags)
    merged = {}
    for key, value in pairs:
        merged[key] = value
    if len(merged) > MAX_TAGS:
        raise ApiError("TagLimitExceeded", "The maximum number of tags per resource is %d (%d given)" % (MAX_TAGS, len(merged)))
    return sorted(merged.items())


def apply_tag_specifications(txn, ctx, params, resource_type_name, resource_ids, untagged=()):
    """Tag the resources this request just created (in its transaction ``txn``) with its
    ``TagSpecification.N`` of ``resource_type_name`` (``untagged``: as check_tag_specifications);
    returns their tagSet (``[{"key", "value"}]``, the same for each). They belong to
    ``ctx.account``. A refusal raises before anything is written by this function, and the
    caller's transaction rolls back."""
    pairs = check_tag_specifications(params, resource_type_name, untagged)
    _write(txn, [(rid, ctx.account) for rid in resource_ids], pairs)
    return [{"key": k, "value": v} for k, v in pairs]


def delete_tags_of(txn, resource_ids):
    """Forget the tags of resources a request deletes from the ledger itself."""
    for part in chunks(resource_ids):
        txn.exec("DELETE FROM tags WHERE resource_id IN (%s)" % marks(part), *part)


def _visible_resources(txn, ctx, resource_ids):
    """``[(id, owner)]`` for ``resource_ids``; InvalidID for an id of no taggable kind, the
    resource's NotFound code for one that does not exist or is another account's."""
    owners = resource_owners(txn, resource_ids)
    out = []
    for rid in resource_ids:
        kind = _ID.match(rid)
        if not kind or kind.group(1) not in PREFIXES:
            raise ApiError("InvalidID", "The ID '%s' is not valid" % rid)
        owner = owners.get(rid)
        if owner is None or not (ctx.admin or owner == ctx.account):
            raise ApiError(PREFIXES[kind.group(1)][1], "The %s ID '%s' does not exist" % (PREFIXES[kind.group(1)][0], rid))
        out.append((rid, owner))
    return out


def _resource_ids(params):
    ids = list(dict.fromkeys(params.list("ResourceId")))
    if not ids:
        raise missing("ResourceId.1")
    return ids


@action("CreateTags")
def create_tags(ctx, params):
    """Add or overwrite tags on resources the caller owns; all resources are checked first."""
    ids = _resource_ids(params)
    pairs = params.tags("Tag")
    if not pairs:
        raise missing("Tag.1.Key")
    merged = {}
    for key, value in pairs:
        check_tag(key, value)
        merged[key] = value
    pairs = sorted(merged.items())
    with ctx.write() as txn:
        resources = _visible_resources(txn, ctx, ids)
        _check_count(txn, dict((rid, pairs) for rid, _owner in resources))
        _write(txn, resources, pairs)
    return {"return": True}


@action("DeleteTags")
def delete_tags(ctx, params):
    """Remove tags by key (``Tag.N.Key``), only where the value matches when ``Tag.N.Value`` is
    given (an empty value matches only an empty value); without ``Tag.N`` every tag goes, as in EC2."""
    ids = _resource_ids(params)
    wanted = []
    for number, sub in enumerate(params.structs("Tag"), 1):
        key = sub.get("Key")
        if not key:
            raise missing("Tag.%d.Key" % number)
        wanted.append((key, sub.get("Value")))
    with ctx.write() as txn:
        resources = _visible_resources(txn, ctx, ids)
        rids = [rid for rid, _owner in resources]
        if not wanted:
            delete_tags_of(txn, rids)
        for key, value in wanted:
            for part in chunks(rids):
                if value is None:
                    txn.exec("DELETE FROM tags WHERE tag_key = ? AND resource_id IN (%s)" % marks(part), key, *part)
                else:
                    txn.exec("DELETE FROM tags WHERE tag_key = ? AND tag_value = ? AND resource_id IN (%s)" % marks(part),
                             key, value, *part)
    return {"return": True}


DESCRIBE_FILTERS = {
    "key": lambda t: t["key"],
    "value": lambda t: t["value"],
    "resource-id": lambda t: t["resourceId"],
    "resource-type": lambda t: t["resourceType"],
}


@action("DescribeTags")
def describe_tags(ctx, params):
    """The caller's tags (every account's for the admin), by resource id and key; filters key,
    value, resource-id, resource-type (EC2's), MaxResults 5-1000 with NextToken."""
    filters = params.filters()
    max_results = params.int("MaxResults")
    token = params.get("NextToken")
    with ctx.read() as txn:
        if ctx.admin:
            rows = txn.rows("SELECT resource_id, tag_key, tag_value, resource_type FROM tags ORDER BY resource_id, tag_key")
        else:
            rows = txn.rows("SELECT resource_id, tag_key, tag_value, resource_type FROM tags WHERE account = ? "
                            "ORDER BY resource_id, tag_key", ctx.account)
        live = resource_owners(txn, set(r["resource_id"] for r in rows))
    items = [{"resourceId": r["resource_id"], "resourceType": r["resource_type"], "key": r["tag_key"],
              "value": r["tag_value"]} for r in rows if r["resource_id"] in live]
    items = query.apply_filters(items, filters, DESCRIBE_FILTERS)
    page, next_token = query.paginate(items, max_results, token)
    return {"tagSet": page, "nextToken": next_token}
