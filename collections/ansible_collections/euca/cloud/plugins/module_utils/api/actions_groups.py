# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""EC2-Classic security groups: CreateSecurityGroup, DeleteSecurityGroup, DescribeSecurityGroups,
AuthorizeSecurityGroupIngress, RevokeSecurityGroupIngress.

The ledger names groups (ledger/groups.py; a non-admin account's ``web`` is the key ``a:web``);
their ``sg-`` ids are derived from the key (base.group_id), so a request may name a group by
GroupName or GroupId. Rules are the model's (model/rules.py): an EC2 IpPermission with several
IpRanges and Groups is that many ledger rules, and DescribeSecurityGroups folds them back by
protocol and ports. A rule change is written at once and converged by a ``converge`` job for
each cluster where the group has live instances (only those clusters render its filter: the
cluster slice holds the groups of its instances and their rules' source groups); a group
without live instances needs no job.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.api import actions_vpc, query
from ansible_collections.euca.cloud.plugins.module_utils.api.actions_tags import (apply_tag_specifications,
                                                                                  check_tag_specifications,
                                                                                  delete_tags_of, ledger_refusal,
                                                                                  owner_numbers, tag_sets)
from ansible_collections.euca.cloud.plugins.module_utils.api.base import action, group_id
from ansible_collections.euca.cloud.plugins.module_utils.api.errors import ApiError, invalid, missing
from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError, Exhausted
from ansible_collections.euca.cloud.plugins.module_utils.ledger import accounts, groups
from ansible_collections.euca.cloud.plugins.module_utils.model import rules as model_rules

NOT_FOUND = "InvalidGroup.NotFound"
#: EC2's limit on a group's description
DESCRIPTION_MAX = 255
#: EC2's IpProtocol for the model's ``all``
ALL = "-1"


def display(ctx, key):
    """A group key in the caller's words: its own groups by their own names, others' (the admin
    account sees them) by key, so two accounts' ``web`` stay apart."""
    return accounts.group_display(key) if accounts.group_owner(key) == ctx.account else key


def _visible(ctx, row):
    return ctx.admin or row["account"] == ctx.account


def visible_groups(txn, ctx):
    """The group rows the caller sees, by key."""
    if ctx.admin:
        return txn.rows("SELECT * FROM security_groups ORDER BY name")
    return txn.rows("SELECT * FROM security_groups WHERE account = ? ORDER BY name", ctx.account)


def resolve(txn, ctx, name=None, gid=None):
    """The group row named by GroupName (in the caller's words) or GroupId; InvalidGroup.NotFound
    for an unknown one or another account's."""
    if gid:
        if not gid.startswith("sg-"):
            raise ApiError("InvalidGroupId.Malformed", "Invalid id: '%s' (expecting 'sg-...')" % gid)
        for row in visible_groups(txn, ctx):
            if group_id(row["name"]) == gid:
                return row
        raise ApiError(NOT_FOUND, "The security group '%s' does not exist" % gid)
    try:
        key = accounts.group_key(ctx.account, name)
    except EucaError:
        raise ApiError(NOT_FOUND, "The security group '%s' does not exist" % name)
    row = txn.row("SELECT * FROM security_groups WHERE name = ?", key)
    if row is None or not _visible(ctx, row):
        raise ApiError(NOT_FOUND, "The security group '%s' does not exist" % name)
    return row


def _target(txn, ctx, params):
    name, gid = params.get("GroupName"), params.get("GroupId")
    if not name and not gid:
        raise missing("GroupName or GroupId")
    return resolve(txn, ctx, name, gid)


# --- rules: EC2's IpPermissions <-> the model's rules ---------------------------------------------

def _protocol(text, where):
    """The model's protocol name for EC2's IpProtocol (name or number; -1 is every protocol)."""
    try:
        return model_rules.check_protocol(text if text not in (None, "") else None, where)
    except EucaError as exc:
        raise invalid(exc.msg)


def _ports(params, protocol):
    low, high = params.get("FromPort"), params.get("ToPort")
    if protocol == "all":
        return None, None
    return low, high


def _permissions(params):
    """``[(protocol, from_port, to_port, [cidr], [(group_name, group_id)])]`` from IpPermissions.N,
    or from the old flat form (IpProtocol, FromPort, ToPort, CidrIp, SourceSecurityGroupName)."""
    out = []
    for number, perm in enumerate(params.structs("IpPermissions"), 1):
        where = "IpPermissions.%d" % number
        if perm.get("IpProtocol") in (None, ""):
            raise missing(where + ".IpProtocol")
        protocol = _protocol(perm.get("IpProtocol"), where)
        low, high = _ports(perm, protocol)
        cidrs = [r.get("CidrIp") for r in perm.structs("IpRanges") if r.get("CidrIp") is not None]
        sources = []
        for pair in perm.structs("Groups"):
            if pair.get("GroupName") in (None, "") and pair.get("GroupId") in (None, ""):
                raise missing(where + ".Groups.N.GroupName or GroupId")
            sources.append((pair.get("GroupName"), pair.get("GroupId"), pair.get("UserId")))
        if perm.structs("Ipv6Ranges") or perm.structs("PrefixListIds"):
            raise invalid("%s: IPv6 ranges and prefix lists are not supported in EC2-Classic" % where)
        if not cidrs and not sources:
            raise missing(where + ".IpRanges.1.CidrIp or Groups.1.GroupName")
        out.append((protocol, low, high, cidrs, sources))
    if out:
        return out
    flat_protocol = params.get("IpProtocol")
    source_name = params.get("SourceSecurityGroupName")
    cidr = params.get("CidrIp")
    if flat_protocol is None and source_name is None and cidr is None:
        raise missing("IpPermissions.1.IpProtocol")
    if source_name and flat_protocol is None:
        # EC2-Classic: a source group alone authorizes every protocol and port from it
        return [("all", None, None, [], [(source_name, None, params.get("SourceSecurityGroupOwnerId"))])]
    protocol = _protocol(flat_protocol, "IpProtocol")
    low, high = _ports(params, protocol)
    return [(protocol, low, high, [cidr] if cidr else [],
             [(source_name, None, params.get("SourceSecurityGroupOwnerId"))] if source_name else [])]


def _source_name(txn, ctx, numbers, name, gid, user):
    """A rule's source group in the caller's words for the ledger (groups.ensure_group resolves it)."""
    if user not in (None, "", numbers.get(ctx.account), ctx.account):
        raise invalid("Groups of another account (UserId %s) cannot be a rule's source here" % user)
    return display(ctx, resolve(txn, ctx, name, gid)["name"])


def ledger_rules(txn, ctx, row, params):
    """The request's rules, as the model has them (``{protocol, from_port, to_port, cidr | source_group}``
    with source groups in the caller's words), checked by the model; and each one's key as stored
    (source groups by ledger key). Refusals are EC2's InvalidParameterValue / InvalidGroup.NotFound."""
    numbers = owner_numbers(txn)
    rules, stored_keys = [], []
    own = accounts.group_display(row["name"])
    for protocol, low, high, cidrs, sources in _permissions(params):
        for cidr in cidrs:
            rules.append(({"protocol": protocol, "from_port": low, "to_port": high, "cidr": cidr}, None))
        for name, gid, user in sources:
            source = _source_name(txn, ctx, numbers, name, gid, user)
            rules.append(({"protocol": protocol, "from_port": low, "to_port": high, "source_group": source},
                          accounts.group_key(ctx.account, source)))
    checked = []
    for rule, source_key in rules:
        try:
            normal = model_rules.normalize_rule(dict(rule, source_group=source_key) if source_key else rule, own)
        except EucaError as exc:
            raise invalid(exc.msg)
        checked.append(rule)
        stored_keys.append(model_rules.key(normal))
    return checked, stored_keys


def _have(txn, key):
    return set(model_rules.key(r) for r in groups.rules_of(txn, key))


def converge_clusters(txn, key):
    """The clusters where group ``key`` has live instances (where its filter is rendered)."""
    return [r["cluster"] for r in txn.rows(
        "SELECT DISTINCT cluster FROM instances WHERE group_name = ? AND state <> 'terminated' ORDER BY cluster", key)]


def _enqueue_converge(txn, ctx, key):
    for cluster in converge_clusters(txn, key):
        ctx.enqueue(txn, "converge", cluster, [group_id(key)], {"group": key})


def _ensure(txn, ctx, row, **kwargs):
    try:
        return groups.ensure_group(txn, display(ctx, row["name"]), account=ctx.account, **kwargs)
    except EucaError as exc:
        raise ledger_refusal(exc, not_found=NOT_FOUND)


# --- actions -------------------------------------------------------------------------------------

@action("CreateSecurityGroup")
def create_security_group(ctx, params):
    """A new group (its segment and subnet allocated by the ledger); InvalidGroup.Duplicate when
    the caller has one of that name."""
    name = params.get("GroupName", required=True)
    description = params.get("GroupDescription", required=True)
    if len(description) > DESCRIPTION_MAX:
        raise invalid("The group description exceeds %d characters" % DESCRIPTION_MAX)
    if params.get("VpcId"):
        # the account's default VPC is the only one (api/actions_vpc.py): naming it is naming no VPC
        actions_vpc.check_vpc(ctx, params.get("VpcId"))
    try:
        accounts.check_group_name(name)
        key = accounts.group_key(ctx.account, name)
    except EucaError as exc:
        raise invalid(exc.msg)
    check_tag_specifications(params, "security-group")
    with ctx.write() as txn:
        if txn.row("SELECT name FROM security_groups WHERE name = ?", key) is not None:
            raise ApiError("InvalidGroup.Duplicate", "The security group '%s' already exists" % name)
        try:
            groups.ensure_group(txn, name, description=description, account=ctx.account)
        except Exhausted as exc:
            # no segment id or subnet slice left for another group
            raise ApiError("SecurityGroupLimitExceeded", exc.msg)
        except EucaError as exc:
            raise ledger_refusal(exc, not_found=NOT_FOUND)
        tags = apply_tag_specifications(txn, ctx, params, "security-group", [group_id(key)])
    return {"return": True, "groupId": group_id(key), "tagSet": tags}


@action("DeleteSecurityGroup")
def delete_security_group(ctx, params):
    """Delete a group no live instance uses and no other group's rule names (DependencyViolation
    otherwise); its tags go with it."""
    with ctx.write() as txn:
        row = _target(txn, ctx, params)
        try:
            groups.ensure_group(txn, display(ctx, row["name"]), state="absent", account=ctx.account)
        except EucaError as exc:
            raise ledger_refusal(exc, not_found=NOT_FOUND, conflict="DependencyViolation")
        delete_tags_of(txn, [group_id(row["name"])])
    return {"return": True, "groupId": group_id(row["name"])}


@action("AuthorizeSecurityGroupIngress")
def authorize_security_group_ingress(ctx, params):
    """Add ingress rules; InvalidPermission.Duplicate (nothing added) when the group has one already."""
    with ctx.write() as txn:
        row = _target(txn, ctx, params)
        rules, keys = ledger_rules(txn, ctx, row, params)
        have = _have(txn, row["name"])
        for rule, key in zip(rules, keys):
            if key in have:
                raise ApiError("InvalidPermission.Duplicate", "the specified rule %s already exists in group %s"
                               % (model_rules.text(dict(zip(model_rules.KEYS, key))), display(ctx, row["name"])))
        _ensure(txn, ctx, row, rules=rules, purge_rules=False)
        _enqueue_converge(txn, ctx, row["name"])
    return {"return": True}


@action("RevokeSecurityGroupIngress")
def revoke_security_group_ingress(ctx, params):
    """Remove ingress rules; InvalidPermission.NotFound (nothing removed) when the group lacks one."""
    with ctx.write() as txn:
        row = _target(txn, ctx, params)
        rules, keys = ledger_rules(txn, ctx, row, params)
        have = _have(txn, row["name"])
        for rule, key in zip(rules, keys):
            if key not in have:
                raise ApiError("InvalidPermission.NotFound", "The specified rule %s does not exist in group %s"
                               % (model_rules.text(dict(zip(model_rules.KEYS, key))), display(ctx, row["name"])))
        _ensure(txn, ctx, row, revoke_rules=rules)
        _enqueue_converge(txn, ctx, row["name"])
    return {"return": True}


def _ip_permissions(ctx, rules, numbers, owners):
    """The ledger's rules folded into EC2 IpPermissions (one per protocol and port range)."""
    folded = {}
    for rule in rules:
        entry = folded.setdefault((rule["protocol"], rule["from_port"], rule["to_port"]), {"ipRanges": [], "groups": []})
        if rule["cidr"]:
            entry["ipRanges"].append({"cidrIp": rule["cidr"]})
        if rule["source_group"]:
            source = rule["source_group"]
            entry["groups"].append({"userId": numbers.get(owners.get(source, accounts.group_owner(source))),
                                    "groupId": group_id(source), "groupName": display(ctx, source)})
    out = []
    for (protocol, low, high), entry in sorted(folded.items()):
        perm = {"ipProtocol": ALL if protocol == "all" else protocol}
        if protocol != "all":
            perm["fromPort"], perm["toPort"] = low, high
        perm["groups"] = entry["groups"]
        perm["ipRanges"] = entry["ipRanges"]
        out.append(perm)
    return out


def _rule_field(name):
    def get(item):
        values = []
        for perm in item["ipPermissions"]:
            if name == "cidr":
                values.extend(r["cidrIp"] for r in perm["ipRanges"])
            elif name in ("group-id", "group-name"):
                values.extend(g["groupId" if name == "group-id" else "groupName"] for g in perm["groups"])
            elif name == "protocol":
                values.append(perm["ipProtocol"])
            else:
                values.append(perm.get("fromPort" if name == "from-port" else "toPort", -1))
        return values
    return get


DESCRIBE_FILTERS = {
    "description": lambda g: g["groupDescription"],
    "group-id": lambda g: g["groupId"],
    "group-name": lambda g: g["groupName"],
    "owner-id": lambda g: g["ownerId"],
    "vpc-id": lambda g: g["vpcId"],
}
#: the one egress rule of every group: all traffic out
EGRESS_ALL = {"ipProtocol": "-1", "groups": [], "ipRanges": [{"cidrIp": "0.0.0.0/0"}], "ipv6Ranges": [],
              "prefixListIds": []}
for _name in ("cidr", "from-port", "to-port", "protocol", "group-id", "group-name"):
    DESCRIBE_FILTERS["ip-permission." + _name] = _rule_field(_name)


@action("DescribeSecurityGroups")
def describe_security_groups(ctx, params):
    """The caller's groups (every account's for the admin) with their rules and tags; GroupName.N and
    GroupId.N name groups that must exist (InvalidGroup.NotFound), Filter.N as EC2's."""
    wanted_names = params.list("GroupName")
    wanted_ids = params.list("GroupId")
    filters = params.filters()
    with ctx.read() as txn:
        rows = visible_groups(txn, ctx)
        by_key = dict((r["name"], r) for r in rows)
        by_id = dict((group_id(r["name"]), r) for r in rows)
        chosen = []
        for name in wanted_names:
            row = resolve(txn, ctx, name=name)
            chosen.append(row)
        for gid in wanted_ids:
            if gid not in by_id:
                resolve(txn, ctx, gid=gid)
            chosen.append(by_id[gid])
        if wanted_names or wanted_ids:
            rows = list(dict((r["name"], r) for r in chosen).values())
        keys = [r["name"] for r in rows]
        rules = {}
        for rule in txn.rows("SELECT group_name, protocol, from_port, to_port, cidr, source_group FROM group_rules "
                             "ORDER BY group_name, protocol, from_port, to_port, cidr, source_group"):
            if rule["group_name"] in by_key:
                rules.setdefault(rule["group_name"], []).append(rule)
        numbers = owner_numbers(txn)
        owners = dict((r["name"], r["account"]) for r in txn.rows("SELECT name, account FROM security_groups"))
        tags = tag_sets(txn, [group_id(k) for k in keys])
    items = []
    for row in rows:
        gid = group_id(row["name"])
        items.append({
            "ownerId": numbers.get(row["account"]),
            "groupName": display(ctx, row["name"]),
            "groupId": gid,
            "groupDescription": row["description"],
            "ipPermissions": _ip_permissions(ctx, rules.get(row["name"], []), numbers, owners),
            # groups filter what comes in; what goes out is never filtered (EC2's default egress rule)
            "ipPermissionsEgress": [dict(EGRESS_ALL)],
            "vpcId": actions_vpc.vpc_id(row["account"]),
            "tagSet": tags[gid],
        })
    return {"securityGroupInfo": query.apply_filters(items, filters, DESCRIBE_FILTERS)}
