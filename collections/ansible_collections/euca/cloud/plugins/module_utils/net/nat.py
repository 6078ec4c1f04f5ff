# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Elastic-IP NAT on the cluster controller (the card's "NAT lifecycle").

Items are mappings ``{public_ip, private_ip}`` keyed by the public address. The ruleset:

- DNAT public -> private in prerouting (traffic from outside and from instances) and in
  output (traffic from the CC itself);
- hairpin: DNATed traffic from a private network to a private network is masqueraded to
  the gateway, so an instance reaching another instance's (or its own group's) elastic IP
  gets the answer back through the CC instead of directly from a peer it never addressed;
- SNAT private -> public for instances with an elastic IP leaving by the public interface;
- masquerade for everything else from ``private_networks`` leaving by the public interface.

nft keeps the mappings in two maps (``dnat to ip daddr map @eip_dnat``), so 10,000 elastic
IPs cost two lookups, not 10,000 rules; iptables has no maps and gets one rule per mapping
and direction. The elastic IPs themselves are /32 addresses on the public interface: every
/32 there that lies in the pool is ours (added and removed with one ``ip -batch``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.model import addressing
from ansible_collections.euca.cloud.plugins.module_utils.net import rules
from ansible_collections.euca.cloud.plugins.module_utils.net.config import Resource

LABEL = "nat"
NFT_TABLE = "euca_nat"
IPT_PREFIX = "EUCA-NAT-"
PRE, OUT, POST = IPT_PREFIX + "PRE", IPT_PREFIX + "OUT", IPT_PREFIX + "POST"
# what `rendered` writes when no public interface is given
PLACEHOLDER_INTERFACE = "PUBLIC_IFACE"


def _sort_key(address):
    return tuple(int(part) for part in address.split("."))


def normalize_mapping(item, pool):
    """One mapping with canonical addresses; the public one must lie in ``pool`` (an IPSet,
    or None to skip the check when rendering without a pool)."""
    if not isinstance(item, dict):
        raise InvalidInput("an elastic IP mapping must be a dict with public_ip and private_ip, not %r" % (item,))
    public = addressing.parse_address(item.get("public_ip"), "elastic IP mapping public_ip")
    private = addressing.parse_address(item.get("private_ip"), "elastic IP %s private_ip" % item.get("public_ip"))
    if pool is not None and public not in pool:
        raise InvalidInput("elastic IP %s is outside the public_ips pool %s; allocate it from the pool or widen "
                           "public_ips" % (public, ", ".join(str(c) for c in pool.iter_cidrs()) or "(empty)"))
    return {"public_ip": str(public), "private_ip": str(private)}


def check_unique_private(mappings):
    """An instance has at most one elastic IP: SNAT needs one answer per private address."""
    seen = {}
    for mapping in mappings:
        other = seen.setdefault(mapping["private_ip"], mapping["public_ip"])
        if other != mapping["public_ip"]:
            raise InvalidInput("private address %s is mapped from both %s and %s; disassociate one of them"
                               % (mapping["private_ip"], other, mapping["public_ip"]))


class NatOptions:
    """The module's options, validated: interface, pool (IPSet), private networks (CIDRs)."""

    def __init__(self, public_interface=None, public_ips=None, private_networks=None):
        self.public_interface = public_interface
        self.pool = addressing.pool_set(public_ips) if public_ips is not None else None
        networks = [addressing.parse_network(n, "private_networks entry") for n in (private_networks or [])]
        # merged and sorted, so nft's interval sets never see overlapping elements
        self.private_networks = [str(n) for n in addressing.netaddr.cidr_merge(networks)] if networks else []

    @property
    def interface(self):
        """The public interface, or the placeholder a rendered ruleset shows without one."""
        return self.public_interface or PLACEHOLDER_INTERFACE


def _nft_set(networks):
    return networks[0] if len(networks) == 1 else "{ %s }" % ", ".join(networks)


def build_nft(mappings, options):
    """The nft table for ``mappings``."""
    iface = options.interface
    pairs = [(m["public_ip"], m["private_ip"]) for m in mappings]
    dnat = rules.Rule("dnat to ip daddr map @eip_dnat")
    post = []
    if options.private_networks:
        nets = _nft_set(options.private_networks)
        post.append(rules.Rule("ct status dnat ip saddr %s ip daddr %s masquerade" % (nets, nets), "hairpin"))
    post.append(rules.Rule('oifname "%s" snat to ip saddr map @eip_snat' % iface, "snat"))
    if options.private_networks:
        post.append(rules.Rule('oifname "%s" ip saddr %s masquerade' % (iface, _nft_set(options.private_networks)),
                               "masquerade"))
    return rules.NftRuleset(NFT_TABLE, LABEL, [
        rules.NftChain("prerouting", [dnat], spec="type nat hook prerouting priority dstnat; policy accept;"),
        rules.NftChain("output", [dnat], spec="type nat hook output priority -100; policy accept;"),
        rules.NftChain("postrouting", post, spec="type nat hook postrouting priority srcnat; policy accept;"),
    ], maps=[
        ("eip_dnat", "type ipv4_addr : ipv4_addr", pairs),
        ("eip_snat", "type ipv4_addr : ipv4_addr", sorted(((b, a) for a, b in pairs), key=lambda p: _sort_key(p[0]))),
    ])


def build_ipt(mappings, options):
    """Our iptables nat chains for ``mappings`` (one rule per mapping and direction)."""
    iface = options.interface
    pre, out, post = [], [], []
    for m in mappings:
        payload = "eip %s %s" % (m["public_ip"], m["private_ip"])
        dnat = ("-d %s/32" % m["public_ip"], "-j DNAT --to-destination %s" % m["private_ip"])
        pre.append(rules.Rule(dnat, payload))
        out.append(rules.Rule(dnat))
    for src in options.private_networks:
        for dst in options.private_networks:
            post.append(rules.Rule(("-s %s -d %s -m conntrack --ctstate DNAT" % (src, dst), "-j MASQUERADE"), "hairpin"))
    for m in mappings:
        post.append(rules.Rule(("-s %s/32 -o %s" % (m["private_ip"], iface), "-j SNAT --to-source %s" % m["public_ip"])))
    for src in options.private_networks:
        post.append(rules.Rule(("-s %s -o %s" % (src, iface), "-j MASQUERADE"), "masquerade"))
    return rules.IptRuleset("nat", IPT_PREFIX, LABEL, [
        rules.IptChain(PRE, pre, parent="PREROUTING"),
        rules.IptChain(OUT, out, parent="OUTPUT"),
        rules.IptChain(POST, post, parent="POSTROUTING"),
    ])


def mappings_from(listing, backend):
    """The mappings a gathered ruleset holds."""
    if listing is None or not listing.owned:
        return []
    if backend == "nft":
        pairs = listing.maps.get("eip_dnat", set())
    else:
        pairs = [tuple(p.split()[1:3]) for p in listing.payloads(PRE, "eip ")]
    return [{"public_ip": a, "private_ip": b} for a, b in sorted(pairs, key=lambda p: _sort_key(p[0]))]


class NatResource(Resource):
    """The elastic-IP NAT of one CC (or one namespace)."""

    noun = "elastic IP mapping"
    key = "public_ip"
    generations = True

    def __init__(self, public_interface=None, public_ips=None, private_networks=None, backend="auto",
                 namespace=None, generation=None, offline=False):
        self.options = NatOptions(public_interface, public_ips, private_networks)
        self.namespace = namespace
        self.generation = generation
        self.requested_backend = backend
        self.backend = rules.pick_backend(backend, namespace, offline=offline)
        self.listing = None
        self.applied = None
        self.addresses = set()

    def validate(self, items):
        """Normalize the mappings; refuse one outside the pool or a private address mapped twice."""
        mappings = [normalize_mapping(item, self.options.pool) for item in items]
        check_unique_private(mappings)
        return mappings

    def validate_contained(self, items):
        """The mappings that can be applied; one that cannot (a bad address, outside the pool) is
        left out and keeps what is applied for its elastic IP now."""
        mappings, problems = [], []
        for item in items:
            try:
                mappings.append(normalize_mapping(item, self.options.pool))
            except InvalidInput as exc:
                public = item.get("public_ip") if isinstance(item, dict) else None
                try:
                    key = str(addressing.parse_address(public, "public_ip"))
                except InvalidInput:
                    key = None
                problems.append({"key": key, "public_ip": public, "reason": exc.msg})
        return mappings, problems

    def contain_set(self, items):
        """The mappings less a second elastic IP of a private address (the one that comes later)."""
        seen, kept, problems = {}, [], []
        for mapping in items:
            other = seen.setdefault(mapping["private_ip"], mapping["public_ip"])
            if other != mapping["public_ip"]:
                problems.append({"key": mapping["public_ip"], "public_ip": mapping["public_ip"],
                                 "reason": "private address %s is mapped from both %s and %s; disassociate one of them"
                                 % (mapping["private_ip"], other, mapping["public_ip"])})
                continue
            kept.append(mapping)
        return kept, problems

    def build(self, mappings):
        """The ruleset of the chosen backend for ``mappings``."""
        check_unique_private(mappings)
        if self.backend == "nft":
            return build_nft(mappings, self.options)
        return build_ipt(mappings, self.options)

    def gather(self):
        """Mappings and generation from our ruleset; elastic IPs from the public interface."""
        if not self.options.public_interface:
            raise InvalidInput("public_interface is required unless state is rendered")
        if self.options.pool is None:
            raise InvalidInput("public_ips (the elastic IP pool) is required unless state is rendered")
        # the interface first: a missing one must fail before anything changes
        on_link = rules.interface_addresses(self.options.public_interface, self.namespace)
        self.addresses = set(a for a, plen in on_link if plen == 32 and addressing.netaddr.IPAddress(a) in self.options.pool)
        if self.backend == "nft":
            self.listing = rules.nft_gather(NFT_TABLE, LABEL, self.namespace)
        else:
            self.listing = rules.ipt_gather("nat", IPT_PREFIX, LABEL, self.namespace)
        self.applied = self.listing.generation if self.listing is not None else None
        return mappings_from(self.listing, self.backend), self.applied

    def _generation(self):
        return self.generation if self.generation is not None else self.applied

    def plan(self, before, after, force=False):
        """The ruleset (whole, when it differs from the kernel's) and the address changes."""
        ruleset = self.build(after)
        commands = []
        if force or not ruleset.matches(self.listing):
            commands.extend(ruleset.render(self._generation(), self.listing))
        iface = self.options.public_interface
        wanted = set(m["public_ip"] for m in after)
        commands.extend("ip addr add %s/32 dev %s" % (a, iface) for a in sorted(wanted - self.addresses, key=_sort_key))
        commands.extend("ip addr del %s/32 dev %s" % (a, iface) for a in sorted(self.addresses - wanted, key=_sort_key))
        return commands

    def apply(self, plan, after, generation):
        """Load the ruleset in one transaction, then change the addresses in one ``ip -batch``."""
        addresses = [line[3:] for line in plan if line.startswith("ip addr ")]
        ruleset = [line for line in plan if not line.startswith("ip addr ")]
        if ruleset:
            if self.backend == "nft":
                rules.nft_load(ruleset, self.namespace)
            else:
                rules.ipt_load(ruleset, self.namespace)
        if addresses:
            rules.ip_batch(addresses, self.namespace)

    def render(self, items, generation):
        """The ruleset for ``items`` as the backend would load it (no addresses, offline)."""
        return "\n".join(self.build(items).render(generation)) + "\n"
