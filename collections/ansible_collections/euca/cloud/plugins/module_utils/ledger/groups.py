# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Security groups: each owns a network segment (tag/VNI + subnet slice) and ingress rules."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, Exhausted, InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger import accounts, history, settings
from ansible_collections.euca.cloud.plugins.module_utils.model import addressing
from ansible_collections.euca.cloud.plugins.module_utils.ledger.schema import now
from ansible_collections.euca.cloud.plugins.module_utils.model import names
from ansible_collections.euca.cloud.plugins.module_utils.model import network as model_network
from ansible_collections.euca.cloud.plugins.module_utils.model import rules as model_rules


def get_group(txn, name, account=None):
    """The group row by its key; NotFound naming the fix otherwise.

    With ``account``, ``name`` is that account's name for it (ledger/accounts.py group_key) and a
    group the account may not see is not found.
    """
    key = name if account is None else accounts.group_key(account, name)
    found = txn.row("SELECT * FROM security_groups WHERE name = ?", key)
    if found is None or (account is not None and not accounts.sees(txn, account, found["account"])):
        raise NotFound("unknown security group %r: create it with euca.cloud.security_group first" % (name,))
    return found


def _source_keys(account, rules):
    """``rules`` with each source group named as the ledger keys it (the rules' account's group)."""
    out = []
    for rule in rules or []:
        if isinstance(rule, dict) and isinstance(rule.get("source_group"), str) and rule["source_group"]:
            try:
                rule = dict(rule, source_group=accounts.group_key(account, rule["source_group"]))
            except NotFound:
                raise
            except InvalidInput:
                # not a group name: the model refuses the rule, in its words and in its order
                if not names.is_name(rule["source_group"]):
                    out.append(rule)
                    continue
                raise
        out.append(rule)
    return out


def for_account(group, account):
    """A group view in ``account``'s words: its own groups by their own names (the admin account sees keys)."""
    if account == accounts.ADMIN or not group:
        return group
    out = dict(group, name=accounts.group_display(group["name"]))
    out["rules"] = [dict(r, source_group=accounts.group_display(r["source_group"])) if r.get("source_group") else r
                    for r in group.get("rules", [])]
    return out


def rules_of(txn, name):
    """The group's rules, sorted, in the module's shape."""
    rows = txn.rows(
        "SELECT protocol, from_port, to_port, cidr, source_group FROM group_rules WHERE group_name = ? "
        "ORDER BY protocol, from_port, to_port, cidr, source_group",
        name,
    )
    return [_rule_view(r) for r in rows]


def _rule_view(rule):
    view = {"protocol": rule["protocol"], "from_port": rule["from_port"], "to_port": rule["to_port"]}
    if rule["cidr"]:
        view["cidr"] = rule["cidr"]
    if rule["source_group"]:
        view["source_group"] = rule["source_group"]
    return view


def _stored_rules(txn, name):
    """The group's rules as stored, by key."""
    return dict((model_rules.key(r), r) for r in txn.rows(
        "SELECT protocol, from_port, to_port, cidr, source_group FROM group_rules WHERE group_name = ?", name))


def _delete_rule(txn, name, rule):
    txn.exec(
        "DELETE FROM group_rules WHERE group_name = ? AND protocol = ? AND from_port = ? AND to_port = ? "
        "AND cidr = ? AND source_group = ?",
        name, rule["protocol"], rule["from_port"], rule["to_port"], rule["cidr"], rule["source_group"],
    )


def normalize_rule(txn, group, rule):
    """Validate one ingress rule with the model (what the CC's filter would refuse is refused here,
    with the same message) and give it the stored shape (absent cidr or source group: '')."""
    normal = model_rules.normalize_rule(rule, group)
    if normal["source_group"] and normal["source_group"] != group:
        get_group(txn, normal["source_group"])
    return dict(normal, cidr=normal["cidr"] or "", source_group=normal["source_group"] or "")


def _stored_as_given(have, rule):
    """The stored rule whose fields are exactly ``rule``'s (ports text read as from-to), or None."""
    if not isinstance(rule, dict):
        return None
    low, high = rule.get("from_port"), rule.get("to_port")
    if rule.get("ports") not in (None, ""):
        try:
            low, high = model_rules.parse_ports(rule.get("protocol"), rule["ports"])
        except InvalidInput:
            return None
    if high is None:
        high = low
    protocol = str(rule.get("protocol") or "tcp").strip().lower()
    wanted = (protocol, low, high, rule.get("cidr") or "", rule.get("source_group") or "")
    for key, stored in have.items():
        if key == wanted:
            return stored
    return None


def _allocate_segment(txn, conf, requested):
    low, high = settings.segment_range(conf)
    mode = conf["network_mode"]
    taken = set(r["segment_id"] for r in txn.rows("SELECT segment_id FROM security_groups"))
    if requested is not None:
        model_network.check_segment_id(mode, requested, "segment_id")
        if not low <= requested <= high:
            raise InvalidInput("segment_id %d is outside the cloud's segment_range %d-%d" % (requested, low, high))
        if requested in taken:
            owner = txn.value("SELECT name FROM security_groups WHERE segment_id = ?", requested)
            raise Conflict("segment_id %d already belongs to security group %s" % (requested, owner))
        return requested
    for candidate in range(low, high + 1):
        if candidate not in taken:
            return candidate
    raise Exhausted("segment_range %d-%d is exhausted (%d groups); widen segment_range" % (low, high, len(taken)))


def _allocate_subnet(txn, conf, requested):
    network = addressing.parse_network(conf["private_network"], "private_network")
    taken = [addressing.parse_network(r["subnet"], "subnet") for r in txn.rows("SELECT subnet FROM security_groups")]
    if requested is None:
        return addressing.first_free_slice(network, conf["addresses_per_group"], taken)
    subnet = addressing.parse_network(requested, "subnet")
    if subnet.size < 4:
        raise InvalidInput("subnet %s is too small: a segment needs at least a /30" % subnet)
    if subnet not in network:
        raise InvalidInput("subnet %s is outside the cloud's private_network %s" % (subnet, network))
    for other in taken:
        if addressing.overlaps(subnet, other):
            owner = txn.value("SELECT name FROM security_groups WHERE subnet = ?", str(other))
            raise Conflict("subnet %s overlaps subnet %s of security group %s" % (subnet, other, owner))
    return subnet


def view(txn, row):
    """A group as modules and slices return it."""
    subnet = addressing.parse_network(row["subnet"], "subnet")
    return {
        "name": row["name"],
        "account": row["account"],
        "description": row["description"],
        "segment_id": row["segment_id"],
        "subnet": row["subnet"],
        "gateway": str(addressing.gateway(subnet)),
        "rules": rules_of(txn, row["name"]),
    }


def ensure_group(txn, name, state="present", description=None, rules=None, purge_rules=True, segment_id=None, subnet=None,
                 revoke_rules=None, account=accounts.ADMIN):
    """Create, update or delete a security group and its rules.

    ``revoke_rules`` are removed if the group has them (EC2 RevokeSecurityGroupIngress); each is
    validated like a rule to add, and one the group does not have is no change.

    A new group gets the lowest free segment id and subnet slice unless they are given;
    segment and subnet of an existing group cannot change (instances are wired to them).

    ``name`` is ``account``'s name for the group; the result is in the account's words
    (for_account). A new group belongs to the account its key names.
    """
    accounts.get_account(txn, account)
    key = accounts.group_key(account, name)
    names.check_name("security group", key)
    owner = accounts.group_owner(key)
    accounts.get_account(txn, owner)
    rules = None if rules is None else _source_keys(account, rules)
    revoke_rules = None if revoke_rules is None else _source_keys(account, revoke_rules)
    result = _ensure_group(txn, key, owner, state, description, rules, purge_rules, segment_id, subnet, revoke_rules)
    for part in ("before", "after", "group"):
        result[part] = for_account(result[part], account)
    return result


def _ensure_group(txn, name, owner, state, description, rules, purge_rules, segment_id, subnet, revoke_rules):
    found = txn.row("SELECT * FROM security_groups WHERE name = ?", name)
    before = view(txn, found) if found else {}
    if state == "absent":
        if not found:
            return {"changed": False, "before": {}, "after": {}, "group": {}}
        live = [r["id"] for r in txn.rows(
            "SELECT id FROM instances WHERE group_name = ? AND state <> 'terminated' ORDER BY id", name)]
        if live:
            raise Conflict("security group %s still has instances %s; terminate them first" % (name, ", ".join(live[:10])))
        referrers = [r["group_name"] for r in txn.rows(
            "SELECT DISTINCT group_name FROM group_rules WHERE source_group = ? AND group_name <> ? ORDER BY 1", name, name)]
        if referrers:
            raise Conflict("security group %s is a rule source of groups %s; remove those rules first" % (name, ", ".join(referrers)))
        history.delete_terminated_instances(txn, "group_name", name)
        txn.exec("DELETE FROM group_rules WHERE group_name = ?", name)
        txn.exec("DELETE FROM security_groups WHERE name = ?", name)
        return {"changed": True, "before": before, "after": {}, "group": {}}

    conf = settings.load(txn)
    changed = False
    if found:
        if segment_id is not None and segment_id != found["segment_id"]:
            raise Conflict("security group %s has segment %d; a group's segment cannot change (delete and recreate it)"
                           % (name, found["segment_id"]))
        if subnet is not None and str(addressing.parse_network(subnet, "subnet")) != found["subnet"]:
            raise Conflict("security group %s has subnet %s; a group's subnet cannot change (delete and recreate it)"
                           % (name, found["subnet"]))
        if description is not None and description != found["description"]:
            txn.exec("UPDATE security_groups SET description = ? WHERE name = ?", description, name)
            changed = True
    else:
        segment = _allocate_segment(txn, conf, segment_id)
        slice_ = _allocate_subnet(txn, conf, subnet)
        txn.exec(
            "INSERT INTO security_groups (name, description, segment_id, subnet, created_at, account) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            name, description if description is not None else accounts.group_display(name), segment, str(slice_), now(),
            owner,
        )
        changed = True
    if rules is not None:
        wanted = {}
        for rule in rules:
            normal = normalize_rule(txn, name, rule)
            wanted[model_rules.key(normal)] = normal
        have = _stored_rules(txn, name)
        for key, rule in sorted(wanted.items()):
            if key not in have:
                txn.exec(
                    "INSERT INTO group_rules (group_name, protocol, from_port, to_port, cidr, source_group) VALUES (?, ?, ?, ?, ?, ?)",
                    name, rule["protocol"], rule["from_port"], rule["to_port"], rule["cidr"], rule["source_group"],
                )
                changed = True
        if purge_rules:
            for key, rule in have.items():
                if key not in wanted:
                    _delete_rule(txn, name, rule)
                    changed = True
    if revoke_rules:
        have = _stored_rules(txn, name)
        for rule in revoke_rules:
            try:
                normal = normalize_rule(txn, name, rule)
            except InvalidInput:
                # a record the model refuses can only have been written behind the API (or by an
                # older release): revoking it by its stored fields is how an operator removes it
                normal = _stored_as_given(have, rule)
                if normal is None:
                    raise
            if have.pop(model_rules.key(normal), None) is not None:
                _delete_rule(txn, name, normal)
                changed = True
    after = view(txn, get_group(txn, name))
    return {"changed": changed, "before": before, "after": after, "group": after}
