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
from ansible_collections.euca.cloud.plugins.module_utils.ledger import addressing
from ansible_collections.euca.cloud.plugins.module_utils.net import rules
from ansible_collections.euca.cloud.plugins.module_utils.net.config import Resource

LABEL = "firewall"
NFT_TABLE = "euca_filter"
IPT_PREFIX = "EUCA-FW-"
IPT_FORWARD = IPT_PREFIX + "FWD"
PROTOCOLS = ("tcp", "udp", "icmp", "all")
# the ledger's rule for security group names (ledger/ids.py)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_NFT_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ANY = "0.0.0.0/0"


def nft_chain(name):
    """The nft chain of a group: ``sg-<name>``, or a digest when the name is not an nft identifier."""
    return "sg-" + (name if _NFT_SAFE.match(name) else rules.short_id(name))


def ipt_chain(name):
    """The iptables chain of a group (chain names hold at most 28 characters)."""
    return IPT_PREFIX + rules.short_id(name)


def _port(value, low, high, what):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value))
        except ValueError:
            raise InvalidInput("%s %r is not a number" % (what, value))
    if not low <= value <= high:
        raise InvalidInput("%s %d is outside %d-%d" % (what, value, low, high))
    return value


def normalize_rule(group, rule):
    """One ingress rule in canonical shape; InvalidInput names the group and the fix."""
    if not isinstance(rule, dict):
        raise InvalidInput("group %s: a rule must be a dict (protocol, from_port, to_port, cidr or source_group)" % group)
    protocol = str(rule.get("protocol") or "tcp").lower()
    if protocol not in PROTOCOLS:
        raise InvalidInput("group %s: rule protocol must be one of %s, not %r" % (group, ", ".join(PROTOCOLS), protocol))
    where = "group %s %s rule" % (group, protocol)
    if protocol in ("tcp", "udp"):
        low = _port(rule.get("from_port"), 1, 65535, where + " from_port")
        high = _port(rule.get("to_port"), 1, 65535, where + " to_port")
        if low is None:
            raise InvalidInput("%s needs from_port (and to_port for a range), 1-65535" % where)
        if high is None:
            high = low
        if low > high:
            raise InvalidInput("%s: from_port %d is above to_port %d" % (where, low, high))
    elif protocol == "icmp":
        # Eucalyptus/EC2 convention: from_port is the ICMP type, to_port the code, -1 = any
        low = _port(rule.get("from_port"), -1, 255, where + " type (from_port)")
        high = _port(rule.get("to_port"), -1, 255, where + " code (to_port)")
        low = -1 if low is None else low
        high = -1 if high is None else high
        if low == -1 and high != -1:
            raise InvalidInput("%s: an ICMP code (to_port %d) needs a type (from_port)" % (where, high))
    else:
        low = high = -1
    cidr = rule.get("cidr") or None
    source = rule.get("source_group") or None
    if bool(cidr) == bool(source):
        raise InvalidInput("%s needs exactly one of cidr or source_group" % where)
    if cidr:
        cidr = str(addressing.parse_network(cidr, where + " cidr"))
    return {"protocol": protocol, "from_port": low, "to_port": high, "cidr": cidr, "source_group": source}


def normalize_group(item):
    """One group in canonical shape (its rules normalized, in the order given)."""
    if not isinstance(item, dict):
        raise InvalidInput("a security group must be a dict with name, subnet and rules, not %r" % (item,))
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput("security group name %r is not valid: use 1-128 letters, digits, '.', '_', ':' or '-'" % (name,))
    subnet = str(addressing.parse_network(item.get("subnet"), "group %s subnet" % name))
    return {"name": name, "subnet": subnet, "rules": [normalize_rule(name, r) for r in (item.get("rules") or [])]}


def check_groups(groups):
    """Refuse overlapping subnets and rules whose source group is not among ``groups``."""
    by_name = dict((g["name"], g) for g in groups)
    nets = sorted(((addressing.netaddr.IPNetwork(g["subnet"]), g["name"]) for g in groups), key=lambda p: (p[0].first, p[1]))
    for (net_a, name_a), (net_b, name_b) in zip(nets, nets[1:]):
        if addressing.overlaps(net_a, net_b):
            raise InvalidInput("groups %s (%s) and %s (%s) have overlapping subnets; give each group its own subnet"
                               % (name_a, net_a, name_b, net_b))
    for group in groups:
        for rule in group["rules"]:
            if rule["source_group"] and rule["source_group"] not in by_name:
                raise InvalidInput("group %s: rule source_group %s is an unknown group; declare it in config or use a cidr"
                                   % (group["name"], rule["source_group"]))


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
