# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The security-group filter on the cluster controller.

Items are groups ``{name, subnet, rules}`` keyed by name; a rule is ``{protocol, from_port,
to_port, cidr | source_group}``. Semantics (Eucalyptus MANAGED mode):

- default deny between segments: a forwarded packet whose destination lies in a group's
  subnet goes to that group's chain, which accepts traffic from the group's own subnet and
  what the group's rules authorise, and drops the rest;
- established/related traffic passes (answers, and the way out for what was let in);
- the filter runs in the forward hook, after prerouting DNAT, so traffic to an elastic IP is
  filtered by the destination instance's group; bridged traffic inside a segment reaches
  this hook only with br_netfilter's ``bridge-nf-call-iptables=1`` (the roles set 0: a DNATed
  hairpin would be bridged back into the port it came by), and then passes as same-group;
- destinations outside every group (the world) are not filtered here: instances may go out.

nft dispatches with one verdict map (``ip daddr vmap { subnet : jump sg-… }``), so the cost
per packet does not grow with the number of groups; iptables uses one jump per group.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.model import addressing
from ansible_collections.euca.cloud.plugins.module_utils.model import names
from ansible_collections.euca.cloud.plugins.module_utils.model import rules as model_rules
from ansible_collections.euca.cloud.plugins.module_utils.net import rules
from ansible_collections.euca.cloud.plugins.module_utils.net.config import Resource

LABEL = "firewall"
NFT_TABLE = "euca_filter"
IPT_PREFIX = "EUCA-FW-"
IPT_FORWARD = IPT_PREFIX + "FWD"
_NFT_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ANY = "0.0.0.0/0"


def nft_chain(name):
    """The nft chain of a group: ``sg-<name>``, or a digest when the name is not an nft identifier."""
    return "sg-" + (name if _NFT_SAFE.match(name) else rules.short_id(name))


def ipt_chain(name):
    """The iptables chain of a group (chain names hold at most 28 characters)."""
    return IPT_PREFIX + rules.short_id(name)


def _group_head(item):
    """Name and subnet of one group item; InvalidInput when the group as a whole is unusable."""
    if not isinstance(item, dict):
        raise InvalidInput("a security group must be a dict with name, subnet and rules, not %r" % (item,))
    name = names.check_name("security group", item.get("name"))
    subnet = str(addressing.parse_network(item.get("subnet"), "group %s subnet" % name))
    if not isinstance(item.get("rules") or [], list):
        raise InvalidInput("group %s: rules must be a list" % name)
    return name, subnet


def normalize_group(item, problems=None):
    """One group in canonical shape, its rules normalized by the model, in the order given.

    With ``problems`` (a list), a rule the model refuses is left out and recorded there as
    ``{group, rule, reason}`` instead of refusing the whole set: leaving a rule out only ever
    denies traffic. Without it, the first bad rule raises InvalidInput.
    """
    name, subnet = _group_head(item)
    out = []
    for rule in item.get("rules") or []:
        try:
            out.append(model_rules.normalize_rule(rule, name))
        except InvalidInput as exc:
            if problems is None:
                raise
            problems.append({"group": name, "rule": rule, "reason": exc.msg})
    return {"name": name, "subnet": subnet, "rules": out}


def set_problems(groups):
    """What a set of normalized groups cannot hold: overlapping subnets (the later group by
    address, then name, is named) and rules whose source group is not in the set; as
    ``{group, rule (None for the whole group), reason}``."""
    problems = []
    by_name = dict((g["name"], g) for g in groups)
    nets = sorted(((addressing.netaddr.IPNetwork(g["subnet"]), g["name"]) for g in groups), key=lambda p: (p[0].first, p[1]))
    kept = None
    for net, name in nets:
        if kept is not None and addressing.overlaps(kept[0], net):
            problems.append({"group": name, "rule": None, "reason": "groups %s (%s) and %s (%s) have overlapping subnets; "
                             "give each group its own subnet" % (kept[1], kept[0], name, net)})
            continue
        kept = (net, name)
    for group in groups:
        for rule in group["rules"]:
            if rule["source_group"] and rule["source_group"] not in by_name:
                problems.append({"group": group["name"], "rule": rule, "reason": "group %s: rule source_group %s is an "
                                 "unknown group; declare it in config or use a cidr" % (group["name"], rule["source_group"])})
    return problems


def check_groups(groups):
    """Refuse overlapping subnets and rules whose source group is not among ``groups``."""
    problems = set_problems(groups)
    if problems:
        raise InvalidInput(problems[0]["reason"])


def _source(rule, by_name):
    if rule["source_group"]:
        return by_name[rule["source_group"]]["subnet"]
    return rule["cidr"]


def _payload(rule):
    ref = ("g %s" % rules.short_id(rule["source_group"], 10)) if rule["source_group"] else ("c %s" % rule["cidr"])
    return "r %s %d %d %s" % (rule["protocol"], rule["from_port"], rule["to_port"], ref)


def _nft_rule(rule, by_name):
    parts = []
    source = _source(rule, by_name)
    if source != ANY:
        parts.append("ip saddr %s" % source)
    protocol, low, high = rule["protocol"], rule["from_port"], rule["to_port"]
    if protocol in ("tcp", "udp"):
        parts.append("%s dport %s" % (protocol, low if low == high else "%d-%d" % (low, high)))
    elif protocol == "icmp":
        if low == -1:
            parts.append("meta l4proto icmp")
        else:
            parts.append("icmp type %d" % low)
            if high != -1:
                parts.append("icmp code %d" % high)
    parts.append("accept")
    return " ".join(parts)


def _ipt_rule(rule, by_name):
    parts = []
    source = _source(rule, by_name)
    if source != ANY:
        parts.append("-s %s" % source)
    protocol, low, high = rule["protocol"], rule["from_port"], rule["to_port"]
    if protocol in ("tcp", "udp"):
        parts.append("-p %s --dport %s" % (protocol, low if low == high else "%d:%d" % (low, high)))
    elif protocol == "icmp":
        parts.append("-p icmp")
        if low != -1:
            parts.append("--icmp-type %s" % (low if high == -1 else "%d/%d" % (low, high)))
    return " ".join(parts), "-j ACCEPT"


def _by_subnet(groups):
    return sorted(groups, key=lambda g: addressing.netaddr.IPNetwork(g["subnet"]).first)


def build_nft(groups):
    """Our nft filter table for ``groups``."""
    check_groups(groups)
    by_name = dict((g["name"], g) for g in groups)
    forward = [rules.Rule("ct state established,related accept")]
    if groups:
        forward.append(rules.Rule("ip daddr vmap { %s }" % ", ".join(
            "%s : jump %s" % (g["subnet"], nft_chain(g["name"])) for g in _by_subnet(groups))))
    chains = [rules.NftChain("forward", forward, spec="type filter hook forward priority filter; policy accept;")]
    for group in groups:
        body = [rules.Rule("ip saddr %s accept" % group["subnet"], "s %s" % group["subnet"])]
        body.extend(rules.Rule(_nft_rule(r, by_name), _payload(r)) for r in group["rules"])
        body.append(rules.Rule("drop"))
        chains.append(rules.NftChain(nft_chain(group["name"]), body, comment=group["name"]))
    return rules.NftRuleset(NFT_TABLE, LABEL, chains)


def build_ipt(groups):
    """Our iptables filter chains for ``groups``."""
    check_groups(groups)
    by_name = dict((g["name"], g) for g in groups)
    forward = [rules.Rule(("-m conntrack --ctstate RELATED,ESTABLISHED", "-j ACCEPT"))]
    forward.extend(rules.Rule(("-d %s" % g["subnet"], "-j %s" % ipt_chain(g["name"]))) for g in _by_subnet(groups))
    chains = [rules.IptChain(IPT_FORWARD, forward, parent="FORWARD")]
    for group in groups:
        body = [rules.Rule(("-s %s" % group["subnet"], "-j ACCEPT"), "s %s %s" % (group["subnet"], group["name"]))]
        body.extend(rules.Rule(_ipt_rule(r, by_name), _payload(r)) for r in group["rules"])
        body.append(rules.Rule(("", "-j DROP")))
        chains.append(rules.IptChain(ipt_chain(group["name"]), body))
    return rules.IptRuleset("filter", IPT_PREFIX, LABEL, chains)


def _parse_rule(payload):
    _r, protocol, low, high, kind, ref = payload.split(" ", 5)
    return {"protocol": protocol, "from_port": int(low), "to_port": int(high),
            "cidr": ref if kind == "c" else None, "source_group": ref if kind == "g" else None}


def groups_from(listing, backend):
    """The groups a gathered ruleset holds (source groups resolved from their digests)."""
    if listing is None or not listing.owned:
        return []
    groups = []
    if backend == "nft":
        for chain, seen in listing.chains.items():
            if not chain.startswith("sg-") or not seen["comment"]:
                continue
            header = listing.payloads(chain, "s ")
            if header:
                groups.append({"name": seen["comment"], "subnet": header[0].split()[1],
                               "rules": [_parse_rule(p) for p in listing.payloads(chain, "r ")]})
    else:
        for chain in listing.chains:
            header = listing.payloads(chain, "s ")
            if chain == IPT_FORWARD or not header:
                continue
            _s, subnet, name = header[0].split(" ", 2)
            groups.append({"name": name, "subnet": subnet, "rules": [_parse_rule(p) for p in listing.payloads(chain, "r ")]})
    digests = dict((rules.short_id(g["name"], 10), g["name"]) for g in groups)
    for group in groups:
        for rule in group["rules"]:
            if rule["source_group"]:
                rule["source_group"] = digests.get(rule["source_group"], "unknown-" + rule["source_group"])
    return sorted(groups, key=lambda g: g["name"])


class FirewallResource(Resource):
    """The security-group filter of one CC (or one namespace)."""

    noun = "security group"
    key = "name"
    generations = True

    def __init__(self, backend="auto", namespace=None, generation=None, offline=False):
        self.namespace = namespace
        self.generation = generation
        self.backend = rules.pick_backend(backend, namespace, offline=offline)
        self.listing = None
        self.applied = None

    def validate(self, items):
        """Normalize the groups; refuse bad CIDRs and ports, unknown source groups, overlaps."""
        groups = [normalize_group(item) for item in items]
        check_groups(groups)
        return groups

    def validate_contained(self, items):
        """Normalize the groups, leaving out each rule the model refuses and each group that is
        unusable as a whole (bad name or subnet); a group left out keeps what is applied now."""
        groups, problems = [], []
        for item in items:
            try:
                groups.append(normalize_group(item, problems))
            except InvalidInput as exc:
                name = item.get("name") if isinstance(item, dict) else None
                problems.append({"group": name, "key": name if names.is_name(name) else None,
                                 "rule": None, "reason": exc.msg})
        return groups, problems

    def contain_set(self, items):
        """The groups less what cannot be together: a group whose subnet overlaps an earlier
        one's, and rules whose source group is not in the set (repeated until none is left)."""
        groups, problems = items, []
        while True:
            found = set_problems(groups)
            if not found:
                return groups, problems
            problems.extend(found)
            dropped = set(p["group"] for p in found if p["rule"] is None)
            bad_rules = dict(((p["group"], model_rules.key(p["rule"])), True) for p in found if p["rule"] is not None)
            groups = [dict(g, rules=[r for r in g["rules"] if (g["name"], model_rules.key(r)) not in bad_rules])
                      for g in groups if g["name"] not in dropped]

    def build(self, groups):
        """The ruleset of the chosen backend for ``groups``."""
        return build_nft(groups) if self.backend == "nft" else build_ipt(groups)

    def gather(self):
        """Groups and generation from our ruleset."""
        if self.backend == "nft":
            self.listing = rules.nft_gather(NFT_TABLE, LABEL, self.namespace)
        else:
            self.listing = rules.ipt_gather("filter", IPT_PREFIX, LABEL, self.namespace)
        self.applied = self.listing.generation if self.listing is not None else None
        return groups_from(self.listing, self.backend), self.applied

    def plan(self, before, after, force=False):
        """The whole ruleset when it differs from the kernel's (or ``force``), else nothing."""
        ruleset = self.build(after)
        if not force and ruleset.matches(self.listing):
            return []
        generation = self.generation if self.generation is not None else self.applied
        return ruleset.render(generation, self.listing)

    def apply(self, plan, after, generation):
        """Load the ruleset in one transaction."""
        if self.backend == "nft":
            rules.nft_load(plan, self.namespace)
        else:
            rules.ipt_load(plan, self.namespace)

    def render(self, items, generation):
        """The ruleset for ``items`` as the backend would load it (offline)."""
        return "\n".join(self.build(items).render(generation)) + "\n"
