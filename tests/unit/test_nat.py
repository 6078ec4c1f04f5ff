"""Elastic-IP NAT: validation, rendering and reading a ruleset back (no root)."""

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.net import config, nat, rules

POOL = ["203.0.113.0/28", "198.51.100.10-198.51.100.12"]
MAPS = [{"public_ip": "203.0.113.5", "private_ip": "10.1.0.11"}, {"public_ip": "198.51.100.11", "private_ip": "10.2.0.11"}]


def resource(backend="nft", **kw):
    kw.setdefault("public_ips", POOL)
    kw.setdefault("private_networks", ["10.1.0.0/16", "10.0.0.0/8"])
    return nat.NatResource("pub", backend=backend, offline=True, **kw)


@pytest.mark.parametrize("items, message", [
    ([{"public_ip": "203.0.113.77", "private_ip": "10.1.0.11"}], "outside the public_ips pool"),
    ([{"public_ip": "198.51.100.13", "private_ip": "10.1.0.11"}], "outside the public_ips pool"),
    ([{"public_ip": "203.0.113.5", "private_ip": "10.1.0.300"}], "not an IPv4 address"),
    ([{"public_ip": "not-an-ip", "private_ip": "10.1.0.3"}], "not an IPv4 address"),
    (MAPS + [{"public_ip": "203.0.113.6", "private_ip": "10.1.0.11"}], "mapped from both"),
])
def test_bad_mappings_are_refused(items, message):
    with pytest.raises(InvalidInput, match=message):
        resource().validate(items)


def test_bad_private_network_is_refused():
    with pytest.raises(InvalidInput, match="not a valid CIDR"):
        resource(private_networks=["10.0.0.0/33"])
    with pytest.raises(InvalidInput, match="host bits"):
        resource(private_networks=["10.0.0.1/8"])


def test_private_networks_are_merged_for_interval_sets():
    assert resource().options.private_networks == ["10.0.0.0/8"]


def test_nft_render_uses_maps_not_a_rule_per_eip():
    text = resource().render(resource().validate(MAPS), 12)
    assert text.startswith("add table ip euca_nat\ndelete table ip euca_nat\ntable ip euca_nat {")
    assert 'comment "euca.cloud nat generation=12"' in text
    assert "203.0.113.5 : 10.1.0.11" in text and "10.1.0.11 : 203.0.113.5" in text
    assert text.count("dnat to ip daddr map @eip_dnat") == 2  # prerouting + output
    assert 'oifname "pub" snat to ip saddr map @eip_snat' in text
    assert "ct status dnat ip saddr 10.0.0.0/8 ip daddr 10.0.0.0/8 masquerade" in text
    assert 'oifname "pub" ip saddr 10.0.0.0/8 masquerade' in text


def test_iptables_render_has_one_rule_per_mapping_and_direction():
    lines = resource("iptables").render(resource().validate(MAPS), 3).splitlines()
    assert lines[0] == "*nat" and lines[-1] == "COMMIT"
    assert ":EUCA-NAT-PRE - [0:0]" in lines
    assert sum("-j DNAT --to-destination 10.1.0.11" in l for l in lines) == 2
    assert any("-s 10.1.0.11/32 -o pub" in l and "-j SNAT --to-source 203.0.113.5" in l for l in lines)
    assert "-I PREROUTING 1 -j EUCA-NAT-PRE" in lines
    assert '-A EUCA-NAT-PRE -m comment --comment "euca.cloud nat generation=3"' in lines


def test_rendered_state_is_offline_and_needs_no_interface():
    res = nat.NatResource(backend="auto", offline=True)
    out = config.converge(res, MAPS, "rendered", generation=2)
    assert out["changed"] is False and "PUBLIC_IFACE" in out["rendered"] and res.backend == "nft"


def _as_listing(lines):
    # the rendered table block is what `nft list table` prints, minus the transaction lines
    return "\n".join(lines[2:])


def test_nft_listing_round_trip_and_drift():
    res = resource()
    mappings = res.validate(MAPS)
    ruleset = nat.build_nft(mappings, res.options)
    listing = rules.parse_nft_listing(_as_listing(ruleset.render(4)), "nat")
    assert listing.owned and listing.generation == 4
    assert ruleset.matches(listing)
    assert nat.mappings_from(listing, "nft") == sorted(mappings, key=lambda m: [int(x) for x in m["public_ip"].split(".")])
    # a lost element, a lost rule, a foreign rule: all drift
    listing.maps["eip_dnat"].pop()
    assert not ruleset.matches(listing)
    listing = rules.parse_nft_listing(_as_listing(ruleset.render(4)), "nat")
    listing.chains["postrouting"]["rules"].pop()
    assert not ruleset.matches(listing)
    # another resource's table is not ours
    assert not rules.parse_nft_listing(_as_listing(ruleset.render(4)), "firewall").owned


def test_iptables_listing_round_trip():
    res = resource("iptables")
    mappings = res.validate(MAPS)
    ruleset = nat.build_ipt(mappings, res.options)
    # what iptables-save prints: chains, our rules (with -m comment), the jumps
    save = ["*nat", ":PREROUTING ACCEPT [0:0]"] + [l for l in ruleset.render(8) if l.startswith(":")]
    save += [l.replace("-I ", "-A ").replace(" 1 -j", " -j") for l in ruleset.render(8) if l.startswith(("-A", "-I"))]
    listing = rules.parse_ipt_listing("\n".join(save), nat.IPT_PREFIX, "nat")
    assert listing.owned and listing.generation == 8 and ruleset.matches(listing)
    assert sorted(m["public_ip"] for m in nat.mappings_from(listing, "iptables")) == sorted(m["public_ip"] for m in mappings)
    # once the jumps exist they are not added again; a stale chain of ours is deleted
    listing.chains["EUCA-NAT-OLD"] = []
    again = ruleset.render(9, listing)
    assert not any(l.startswith("-I ") for l in again) and "-X EUCA-NAT-OLD" in again
    assert not ruleset.matches(listing)
