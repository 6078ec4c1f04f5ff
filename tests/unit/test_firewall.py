"""Security-group filter: validation, rendering and reading a ruleset back (no root)."""

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.net import firewall, rules

GROUPS = [
    {"name": "web", "subnet": "10.1.0.0/24", "rules": [
        {"protocol": "tcp", "from_port": 80, "cidr": "0.0.0.0/0"},
        {"protocol": "tcp", "from_port": 7000, "to_port": 7100, "source_group": "db:main"},
        {"protocol": "icmp", "from_port": 8, "cidr": "10.0.0.0/8"},
        {"protocol": "udp", "from_port": 53, "to_port": 53, "cidr": "192.168.0.0/16"},
    ]},
    {"name": "db:main", "subnet": "10.2.0.0/24", "rules": [{"protocol": "all", "source_group": "web"}]},
]


def group(**rule):
    return [{"name": "web", "subnet": "10.1.0.0/24", "rules": [rule]}]


@pytest.mark.parametrize("items, message", [
    (group(protocol="tcp", from_port=0, cidr="0.0.0.0/0"), "outside 1-65535"),
    (group(protocol="udp", from_port=1, to_port=65536, cidr="0.0.0.0/0"), "outside 1-65535"),
    (group(protocol="tcp", from_port=90, to_port=80, cidr="0.0.0.0/0"), "above to_port"),
    (group(protocol="tcp", cidr="0.0.0.0/0"), "needs from_port"),
    (group(protocol="icmp", from_port=256, cidr="0.0.0.0/0"), r"outside 0-255 \(or -1 for all\)"),
    (group(protocol="icmp", from_port=-1, to_port=0, cidr="0.0.0.0/0"), "needs a type"),
    (group(protocol="tcp", from_port=22, cidr="10.1.0.0/40"), "not a valid CIDR"),
    (group(protocol="tcp", from_port=22, cidr="nonsense"), "not a valid CIDR"),
    (group(protocol="tcp", from_port=22), "exactly one of cidr or source_group"),
    (group(protocol="tcp", from_port=22, cidr="0.0.0.0/0", source_group="web"), "exactly one of"),
    (group(protocol="tcp", from_port=22, source_group="ghost"), "unknown group"),
    (group(protocol="gre", cidr="0.0.0.0/0"), "protocol must be one of"),
    ([{"name": "web", "subnet": "10.1.0.0/24"}, {"name": "big", "subnet": "10.0.0.0/8"}], "overlapping subnets"),
    ([{"name": "web", "subnet": "10.1.0.5/24"}], "host bits"),
    ([{"name": "bad name", "subnet": "10.1.0.0/24"}], "name 'bad name' is not valid"),
])
def test_bad_input_is_refused(items, message):
    with pytest.raises(InvalidInput, match=message):
        firewall.FirewallResource(backend="nft", offline=True).validate(items)


def test_rules_are_normalized():
    groups = firewall.FirewallResource(backend="nft", offline=True).validate(GROUPS)
    assert groups[0]["rules"][0] == {"protocol": "tcp", "from_port": 80, "to_port": 80, "cidr": "0.0.0.0/0",
                                     "source_group": None}
    assert groups[0]["rules"][2]["to_port"] == -1  # icmp code: any
    assert groups[1]["rules"][0]["from_port"] == -1


def test_nft_render():
    groups = firewall.FirewallResource(offline=True).validate(GROUPS)
    text = "\n".join(firewall.build_nft(groups).render(3))
    assert "ct state established,related accept" in text
    assert "ip daddr vmap { 10.1.0.0/24 : jump sg-web, 10.2.0.0/24 : jump sg-%s }" % rules.short_id("db:main") in text
    assert "\t\ttcp dport 80 accept" in text  # 0.0.0.0/0 needs no source match
    assert "ip saddr 10.2.0.0/24 tcp dport 7000-7100 accept" in text  # source group = its subnet
    assert "ip saddr 10.0.0.0/8 icmp type 8 accept" in text
    assert "ip saddr 192.168.0.0/16 udp dport 53 accept" in text
    assert text.count("\t\tdrop comment") == 2


def test_iptables_render():
    groups = firewall.FirewallResource(offline=True).validate(GROUPS)
    lines = firewall.build_ipt(groups).render(3)
    web = firewall.ipt_chain("web")
    assert len(web) <= 28 and "-I FORWARD 1 -j EUCA-FW-FWD" in lines
    assert any(l.startswith("-A EUCA-FW-FWD -d 10.1.0.0/24 ") and l.endswith("-j " + web) for l in lines)
    assert any(l.startswith("-A %s -s 10.2.0.0/24 -p tcp --dport 7000:7100 " % web) for l in lines)
    assert any(l.startswith("-A %s -s 10.0.0.0/8 -p icmp --icmp-type 8 " % web) for l in lines)


def test_nft_listing_round_trip_gives_the_groups_back():
    groups = firewall.FirewallResource(offline=True).validate(GROUPS)
    ruleset = firewall.build_nft(groups)
    listing = rules.parse_nft_listing("\n".join(ruleset.render(6)[2:]), "firewall")
    assert listing.owned and listing.generation == 6 and ruleset.matches(listing)
    assert firewall.groups_from(listing, "nft") == sorted(groups, key=lambda g: g["name"])
    changed = [dict(groups[0], rules=groups[0]["rules"][:1]), groups[1]]
    assert not firewall.build_nft(changed).matches(listing)


def test_iptables_listing_round_trip_gives_the_groups_back():
    groups = firewall.FirewallResource(offline=True).validate(GROUPS)
    ruleset = firewall.build_ipt(groups)
    lines = ruleset.render(6)
    save = [l for l in lines if l.startswith(":")] + [l for l in lines if l.startswith("-A")] + ["-A FORWARD -j EUCA-FW-FWD"]
    listing = rules.parse_ipt_listing("\n".join(save), firewall.IPT_PREFIX, "firewall")
    assert ruleset.matches(listing)
    assert firewall.groups_from(listing, "iptables") == sorted(groups, key=lambda g: g["name"])
