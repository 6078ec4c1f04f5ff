"""One vocabulary for rules (module_utils/model/rules.py): the ledger accepts a rule exactly when
the cluster controller's filter renders it, and what it renders is what was asked.

The property test generates rules as users and scripts give them (names and numbers of
protocols, ports as integers or text, ICMP type:code, CIDRs with and without host bits, known,
unknown and malformed source groups) and runs each through both real paths: the ledger
(groups.ensure_group on a real SQLite ledger, rolled back) and the filter (FirewallResource
validate + the nft ruleset it would load). The rendered rule is then checked against an oracle
of what was asked, by probing it the way a packet would (port inside, just outside; ICMP type and
code); tests/integration/test_rule_packets.py sends real packets through a sample.
"""

import re

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.ledger import cloud, db, groups
from ansible_collections.euca.cloud.plugins.module_utils.model import names, network
from ansible_collections.euca.cloud.plugins.module_utils.model import rules as model_rules
from ansible_collections.euca.cloud.plugins.module_utils.net import firewall

GROUP_SUBNET, OTHER_SUBNET = "10.128.0.0/27", "10.128.0.32/27"

PROTOCOLS = st.sampled_from(["tcp", "udp", "icmp", "all", "TCP", "Udp", "-1", "6", "17", "1", "gre", "", None,
                             "icmpv6", "58", " tcp"])
PORT = st.one_of(st.none(), st.integers(-3, 70000), st.sampled_from([-1, 0, 1, 22, 23, 255, 256, 65535, 65536]))
PORT_TEXT = st.one_of(
    st.none(),
    st.builds(str, st.integers(-2, 70000)),
    st.builds(lambda a, b: "%d-%d" % (a, b), st.integers(-1, 66000), st.integers(-1, 66000)),
    st.builds(lambda a, b: "%d:%d" % (a, b), st.integers(-2, 260), st.integers(-2, 260)),
    st.sampled_from(["-1-3", "22", "8000-8080", "-1", "8:0", "3:4", "-1:-1", "-1:3", "x", "", " 80 ", "1-65535",
                     "80-", "8:"]),
)
CIDR = st.one_of(
    st.none(),
    st.sampled_from(["0.0.0.0/0", "198.51.100.0/24", "198.51.100.1/24", "203.0.113.7/32", "10.0.0.0/33", "foo",
                     "::/0", "203.0.113.0", ""]),
    st.builds(lambda a, b, c, p: "%d.%d.%d.0/%d" % (a, b, c, p), st.integers(0, 255), st.integers(0, 255),
              st.integers(0, 255), st.integers(0, 32)),
)
SOURCE = st.one_of(st.none(), st.sampled_from(["other", "g", "missing", "bad name", "", "x" * 129]))


GOOD_CIDR = st.builds(lambda a, b, p: "%d.%d.0.0/%d" % (a, b, p), st.integers(0, 255), st.integers(0, 255),
                      st.integers(0, 16)) | st.sampled_from(["0.0.0.0/0", "198.51.100.0/24", "203.0.113.7/32"])


@st.composite
def plausible_rules(draw):
    """Rules a user means to be valid (most are; the edges are where the off-by-ones live)."""
    proto = draw(st.sampled_from(["tcp", "udp", "icmp", "all", "6", "17", "1", "-1"]))
    rule = {"protocol": proto}
    low = draw(st.integers(-1, 65536) | st.sampled_from([0, 1, 65535, 65536, 255, 256]))
    high = draw(st.none() | st.integers(-1, 65536) | st.just(low) | st.just(low + 1))
    if proto in ("icmp", "1"):
        low, high = draw(st.integers(-1, 256)), draw(st.none() | st.integers(-1, 256))
    if draw(st.booleans()):
        rule["ports"] = str(low) if high is None else "%d%s%d" % (low, ":" if proto in ("icmp", "1") else "-", high)
    elif proto not in ("all", "-1") or draw(st.booleans()):
        rule["from_port"], rule["to_port"] = low, high
    if draw(st.booleans()):
        rule["cidr"] = draw(GOOD_CIDR)
    else:
        rule["source_group"] = draw(st.sampled_from(["other", "g"]))
    return rule


@st.composite
def wild_rules(draw):
    rule = {"protocol": draw(PROTOCOLS)}
    if draw(st.booleans()):
        rule["ports"] = draw(PORT_TEXT)
    else:
        rule["from_port"], rule["to_port"] = draw(PORT), draw(PORT)
    rule["cidr"], rule["source_group"] = draw(CIDR), draw(SOURCE)
    return rule


def rule_inputs():
    return plausible_rules() | wild_rules()


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model") / "ledger.sqlite")
    with db.Ledger(path) as led:
        with led.write() as txn:
            cloud.ensure_settings(txn, {"network_mode": "vxlan", "private_network": "10.128.0.0/16",
                                        "public_ips": ["203.0.113.32/28"], "segment_range": [100, 199]})
            groups.ensure_group(txn, "g", subnet=GROUP_SUBNET)
            groups.ensure_group(txn, "other", subnet=OTHER_SUBNET)
        yield led


def ledger_path(ledger, rule):
    """What the ledger stores for ``rule`` (rolled back), or the refusal."""
    try:
        with ledger.write(dry_run=True) as txn:
            out = groups.ensure_group(txn, "g", rules=[rule], purge_rules=False)
        return [r for r in out["group"]["rules"]], None
    except EucaError as exc:
        return None, exc


def filter_path(rule):
    """The nft rule the filter renders for ``rule`` in group g (with group other), or the refusal."""
    resource = firewall.FirewallResource(backend="nft", offline=True)
    items = [{"name": "g", "subnet": GROUP_SUBNET, "rules": [rule]}, {"name": "other", "subnet": OTHER_SUBNET, "rules": []}]
    try:
        normal = resource.validate(items)
    except InvalidInput as exc:
        return None, exc
    text = resource.render(normal, 1)
    chain = re.search(r"chain sg-g \{(.*?)\n\t\}", text, re.S).group(1)
    # the chain: its comment, the group's own subnet, the rule (its record comment says "r ..."), drop
    lines = [line.strip() for line in chain.splitlines() if re.search(r'comment "[0-9a-f]+ r ', line)]
    assert len(lines) == 1, chain
    return re.sub(r' comment ".*"$', "", lines[0]), None


# ---------------------------------------------------------------- an oracle of what was asked
def asked_protocol(rule):
    return {"-1": "all", "6": "tcp", "17": "udp", "1": "icmp", "": "tcp", None: "tcp"}.get(
        rule["protocol"], str(rule["protocol"]).strip().lower())


def asked(rule):
    """(protocol, low, high, source) as the user meant it, read without the model."""
    proto = asked_protocol(rule)
    source = rule.get("cidr") or {"g": GROUP_SUBNET, "other": OTHER_SUBNET}[rule["source_group"]]
    if proto == "all":
        return proto, -1, -1, source
    if rule.get("ports") not in (None, ""):
        text = rule["ports"].strip()
        if proto == "icmp":
            low, _, high = text.partition(":")
            low, high = int(low), int(high) if high else -1
        else:
            low, _, high = text.partition("-")
            low, high = int(low), int(high) if high else int(low)
    else:
        low, high = rule.get("from_port"), rule.get("to_port")
        if proto in ("tcp", "udp") and high is None:
            high = low
        if proto == "icmp":
            low = -1 if low is None else low
            high = -1 if high is None else high
    return proto, low, high, source


def nft_accepts(line, proto, port=None, icmp=None, source="203.0.113.9"):
    """Whether the rendered nft rule ``line`` accepts a packet (a tiny evaluator of what we render)."""
    saddr = re.search(r"ip saddr (\S+)", line)
    if saddr and not _in(source, saddr.group(1)):
        return False
    if re.search(r"\b(tcp|udp) dport", line):
        found = re.search(r"\b(tcp|udp) dport (\d+)(?:-(\d+))?", line)
        low, high = int(found.group(2)), int(found.group(3) or found.group(2))
        return proto == found.group(1) and low <= port <= high
    if "meta l4proto icmp" in line:
        return proto == "icmp"
    if "icmp type" in line:
        itype = int(re.search(r"icmp type (\d+)", line).group(1))
        code = re.search(r"icmp code (\d+)", line)
        return proto == "icmp" and icmp[0] == itype and (code is None or icmp[1] == int(code.group(1)))
    return True  # protocol all


def _in(address, cidr):
    net, _, bits = cidr.partition("/")
    to_int = lambda text: int.from_bytes(bytes(int(p) for p in text.split(".")), "big")  # noqa: E731
    mask = (0xFFFFFFFF << (32 - int(bits))) & 0xFFFFFFFF if int(bits) else 0
    return to_int(address) & mask == to_int(net) & mask


def outside(source):
    """An address outside ``source`` (None when the source is everything)."""
    if source == "0.0.0.0/0":
        return None
    net, _, bits = source.partition("/")
    first = int.from_bytes(bytes(int(p) for p in net.split(".")), "big")
    size = 1 << (32 - int(bits))
    other = (first + size) % (1 << 32) if first + size < (1 << 32) else (first - 1)
    return ".".join(str((other >> s) & 255) for s in (24, 16, 8, 0))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rule=rule_inputs())
def test_the_ledger_accepts_a_rule_exactly_when_the_filter_renders_it(ledger, rule):
    stored, refused = ledger_path(ledger, rule)
    line, filter_refused = filter_path(rule)
    assert (refused is None) == (filter_refused is None), (rule, refused, filter_refused)
    event("accepted %s" % (asked_protocol(rule) if refused is None else "-"))
    if refused is not None:
        # the same words, except that only the ledger knows which groups exist
        if rule.get("source_group") != "missing" or rule.get("cidr"):
            assert refused.msg == filter_refused.msg
        return
    # what the ledger stored, as the CC gets it, renders to the same rule
    assert len(stored) == 1 and filter_path(stored[0]) == (line, None)
    proto, low, high, source = asked(rule)
    # EC2's ranges, stated independently of the model
    if proto in ("tcp", "udp"):
        assert 1 <= low <= high <= 65535
    elif proto == "icmp":
        assert -1 <= low <= 255 and -1 <= high <= 255 and (low != -1 or high == -1)
    else:
        assert rule.get("ports") in (None, "", "-1") and rule.get("from_port") in (None, -1) and rule.get("to_port") in (None, -1)
    probe_from = source.split("/")[0] if source != "0.0.0.0/0" else "203.0.113.9"
    if proto in ("tcp", "udp"):
        assert nft_accepts(line, proto, port=low, source=probe_from)
        assert nft_accepts(line, proto, port=high, source=probe_from)
        if low > 1:
            assert not nft_accepts(line, proto, port=low - 1, source=probe_from)
        if high < 65535:
            assert not nft_accepts(line, proto, port=high + 1, source=probe_from)
        assert not nft_accepts(line, "udp" if proto == "tcp" else "tcp", port=low, source=probe_from)
    elif proto == "icmp":
        probe = (8 if low == -1 else low, 0 if high == -1 else high)
        assert nft_accepts(line, "icmp", icmp=probe, source=probe_from)
        if low != -1:
            assert not nft_accepts(line, "icmp", icmp=((low + 1) % 256, probe[1]), source=probe_from)
        if high != -1:
            assert not nft_accepts(line, "icmp", icmp=(low, (high + 1) % 256), source=probe_from)
        assert not nft_accepts(line, "tcp", port=22, source=probe_from)
    else:
        assert nft_accepts(line, "tcp", port=1, source=probe_from) and nft_accepts(line, "icmp", icmp=(0, 0), source=probe_from)
    away = outside(source)
    if away is not None:
        assert not nft_accepts(line, proto if proto != "all" else "tcp", port=low if proto in ("tcp", "udp") else 22,
                               icmp=(8, 0), source=away)


# ---------------------------------------------------------------- the cases the issue names
@pytest.mark.parametrize("rule, message", [
    ({"protocol": "tcp", "ports": "0", "cidr": "0.0.0.0/0"}, "group g tcp rule from_port 0 is outside 1-65535"),
    ({"protocol": "icmp", "ports": "-1-3", "cidr": "0.0.0.0/0"}, "icmp takes TYPE or TYPE:CODE"),
    ({"protocol": "icmp", "from_port": -1, "to_port": 3, "cidr": "0.0.0.0/0"}, "needs a type"),
    ({"protocol": "all", "ports": "80", "cidr": "0.0.0.0/0"}, "protocol all covers every port"),
    ({"protocol": "tcp", "ports": "22", "cidr": "198.51.100.1/24"}, "host bits set"),
    ({"protocol": "tcp", "ports": "22", "source_group": "bad name"}, "is not valid"),
    ({"protocol": "gre", "cidr": "0.0.0.0/0"}, "protocol must be one of"),
])
def test_refused_at_entry_with_the_filters_words(ledger, rule, message):
    _stored, refused = ledger_path(ledger, rule)
    _line, filter_refused = filter_path(rule)
    assert refused is not None and message in refused.msg and refused.msg == filter_refused.msg
    with ledger.read() as txn:
        assert groups.rules_of(txn, "g") == []  # nothing was written


@pytest.mark.parametrize("ports, line", [
    ("-1", "meta l4proto icmp accept"),
    ("8", "icmp type 8 accept"),
    ("3:4", "icmp type 3 icmp code 4 accept"),
    ("0:0", "icmp type 0 icmp code 0 accept"),
])
def test_icmp_type_and_code(ledger, ports, line):
    assert filter_path({"protocol": "icmp", "ports": ports, "cidr": "0.0.0.0/0"})[0] == line
    stored, _ = ledger_path(ledger, {"protocol": "icmp", "ports": ports, "cidr": "0.0.0.0/0"})
    assert model_rules.text(stored[0]).startswith("icmp:" + {"-1": "all"}.get(ports, ports.replace(":-1", "")))


def test_protocol_numbers_and_text():
    assert model_rules.normalize_rule({"protocol": "6", "ports": "22", "cidr": "0.0.0.0/0"}, "g")["protocol"] == "tcp"
    assert model_rules.normalize_rule({"protocol": -1, "cidr": "0.0.0.0/0"}, "g") == {
        "protocol": "all", "from_port": -1, "to_port": -1, "cidr": "0.0.0.0/0", "source_group": None}
    assert model_rules.text({"protocol": "tcp", "from_port": 8000, "to_port": 8080, "cidr": "0.0.0.0/0"}) == "tcp:8000-8080<-0.0.0.0/0"


# ---------------------------------------------------------------- names, ids, MACs, network
@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=140))
def test_names_are_one_rule_for_ledger_and_filter(text):
    ledger_ok = names.is_name(text)
    try:
        firewall.normalize_group({"name": text, "subnet": GROUP_SUBNET})
        filter_ok = True
    except InvalidInput:
        filter_ok = False
    assert ledger_ok == filter_ok
    assert ledger_ok == bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", text))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(names.ID_KINDS)), st.integers(0, 2 ** 32 - 1))
def test_ids_round_trip(kind, number):
    value = names.format_id(kind, number)
    assert names.looks_like(kind, value) and names.check_id(kind, value) == value
    assert all(not names.looks_like(other, value) for other in names.ID_KINDS if other != kind)


@given(st.integers(0, 2 ** 32 - 1))
def test_macs_name_their_address(address):
    mac = names.mac_for_int(address)
    assert names.is_mac(mac) and names.normalize_mac(mac.upper().replace(":", "-")) == mac
    assert int(mac.replace(":", "")[4:], 16) == address


@pytest.mark.parametrize("mode, good, bad", [("vlan", [1, 4094], [0, 4095, -1]), ("vxlan", [1, 16777215], [0, 16777216]),
                                             ("flat", [1, 4094], [0, 4095])])
def test_segment_ids_per_mode(mode, good, bad):
    for value in good:
        assert network.check_segment_id(mode, value) == value
    for value in bad:
        with pytest.raises(InvalidInput, match="is not a valid %s id" % mode):
            network.check_segment_id(mode, value)


def test_interface_names():
    assert names.check_ifname("eubr-16777215", "bridge") == "eubr-16777215"
    for bad in ("x" * 16, "a b", "", ".", "eth0;rm"):
        with pytest.raises(InvalidInput, match="not a usable interface name"):
            names.check_ifname(bad, "bridge")
