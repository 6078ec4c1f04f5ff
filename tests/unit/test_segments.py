"""Segments without a kernel: validation, the exact batches (802.1Q cannot run here), and
planning against gathered state given as ``ip -j -d address show`` / ``bridge -j fdb show``
documents of the shape iproute2 prints."""

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.net import config, segments

VX = {"vxlan_local": "198.51.100.1", "vxlan_dev": "trunk", "vxlan_peers": ["198.51.100.2"]}


def norm(item, **defaults):
    return segments.normalize(item, defaults)


def resource(state="merged", **defaults):
    return segments.SegmentSet(namespace=None, defaults=defaults, state=state)


# ------------------------------------------------------------------ validation
def test_defaults_complete_a_short_vxlan_item():
    assert norm({"id": 100, "mode": "vxlan"}, **VX) == {
        "id": 100, "mode": "vxlan", "bridge": "eubr-100", "gateway": None, "mtu": 1450,
        "local": "198.51.100.1", "dev": "trunk", "port": 4789, "peers": ["198.51.100.2"], "group": None,
        "interconnect": [], "interconnect_port": None}


def test_item_values_win_over_defaults_and_are_normalized():
    item = norm({"id": 7, "mode": "vxlan", "peers": ["198.51.100.9", "198.51.100.3", "198.51.100.9"],
                 "port": 8472, "mtu": 1400, "gateway": " 10.0.0.1/24", "bridge": "tenant7"}, **VX)
    assert item["peers"] == ["198.51.100.3", "198.51.100.9"]
    assert (item["port"], item["mtu"], item["gateway"], item["bridge"]) == (8472, 1400, "10.0.0.1/24", "tenant7")
    group = norm({"id": 7, "mode": "vxlan", "group": "239.1.1.7"}, **VX)
    assert group["group"] == "239.1.1.7" and group["peers"] == []


def test_vlan_and_flat_items():
    assert norm({"id": 10, "gateway": "10.128.0.1/27"}, trunk="eth1") == {
        "id": 10, "mode": "vlan", "bridge": "eubr-10", "gateway": "10.128.0.1/27", "mtu": None, "trunk": "eth1"}
    assert norm({"id": 5, "mode": "flat"}) == {"id": 5, "mode": "flat", "bridge": "eubr-5", "gateway": None,
                                               "mtu": None}


@pytest.mark.parametrize("item, defaults, message", [
    ({"id": 0}, {"trunk": "eth1"}, "802.1Q tags 0 and 4095 are reserved"),
    ({"id": 4095}, {"trunk": "eth1"}, "802.1Q tags 0 and 4095 are reserved"),
    ({"id": 4096}, {"trunk": "eth1"}, "is not a valid vlan id (1-4094)"),
    ({"id": -3}, {"trunk": "eth1"}, "is not a valid vlan id (1-4094)"),
    ({"id": 16777216, "mode": "vxlan"}, VX, "is not a valid vxlan id (1-16777215)"),
    ({"id": 0, "mode": "vxlan"}, VX, "is not a valid vxlan id (1-16777215)"),
    ({"id": "ten"}, {}, "segment id must be an integer"),
    ({"id": 5, "mode": "bogus"}, {}, "mode must be one of vlan, vxlan, flat"),
    ({"id": 10}, {}, "no trunk NIC"),
    ({"id": 10, "mode": "vxlan"}, {}, "no local VTEP address"),
    ({"id": 10, "mode": "flat", "gateway": "10.0.0.300/24"}, {}, "is not an IPv4 address with its prefix"),
    ({"id": 10, "mode": "flat", "gateway": "10.0.0.1"}, {}, "is not an IPv4 address with its prefix"),
    ({"id": 10, "mode": "flat", "gateway": "fd00::1/64"}, {}, "is not an IPv4 address with its prefix"),
    ({"id": 10, "mode": "flat", "gateway": "10.0.0.0/24"}, {}, "is the network address of 10.0.0.0/24"),
    ({"id": 10, "mode": "flat", "gateway": "10.0.0.255/24"}, {}, "is the broadcast address"),
    ({"id": 10, "mode": "flat", "bridge": "a-bridge-name-too-long"}, {}, "not a usable interface name"),
    ({"id": 10, "mode": "flat", "bridge": "br/0"}, {}, "not a usable interface name"),
    ({"id": 4000}, {"trunk": "enp0s31f6xy"}, "uplink name enp0s31f6xy.4000 is longer than 15"),
    ({"id": 10, "mode": "flat", "mtu": 40}, {}, "mtu 40 is out of range"),
    ({"id": 10, "mode": "flat", "trunk": "eth1"}, {}, "trunk applies to vlan segments only"),
    ({"id": 10, "mode": "vlan", "peers": ["198.51.100.2"]}, {"trunk": "eth1"}, "peers applies to vxlan"),
    ({"id": 10, "mode": "vxlan", "peers": ["198.51.100.2"], "group": "239.1.1.1"}, VX, "not both"),
    ({"id": 10, "mode": "vxlan", "group": "198.51.100.7"}, VX, "not a multicast address"),
    ({"id": 10, "mode": "vxlan", "group": "239.1.1.1", "dev": None}, dict(VX, vxlan_dev=None), "needs the underlay"),
    ({"id": 10, "mode": "vxlan", "peers": ["198.51.100.1"]}, VX, "another host's unicast VTEP"),
    ({"id": 10, "mode": "vxlan", "peers": ["2001:db8::2"]}, VX, "is IPv6 but the VXLAN local address is IPv4"),
    ({"id": 10, "mode": "vxlan", "peers": ["not-an-ip"]}, VX, "is not an IP address"),
    ({"id": 10, "mode": "vxlan", "port": 70000}, VX, "port 70000 is out of range"),
    ({"id": 10, "colour": "red"}, {}, "unknown option(s) colour"),
])
def test_bad_items_are_refused_with_the_segment_named(item, defaults, message):
    with pytest.raises(InvalidInput) as err:
        norm(item, **defaults)
    assert message in err.value.msg


def test_set_level_checks():
    with pytest.raises(InvalidInput, match="segment 5 is given twice"):
        resource().validate([{"id": 5, "mode": "flat"}, {"id": 5, "mode": "flat"}])
    with pytest.raises(InvalidInput, match="segments 5 and 6 both use br-x as their bridge"):
        resource().validate([{"id": 5, "mode": "flat", "bridge": "br-x"}, {"id": 6, "mode": "flat", "bridge": "br-x"}])
    # a bridge may not take another segment's uplink name either
    with pytest.raises(InvalidInput, match="both use vxlan6"):
        resource(**VX).validate([{"id": 5, "mode": "flat", "bridge": "vxlan6"}, {"id": 6, "mode": "vxlan"}])
    # deleted needs ids only, whatever the mode would require
    assert resource(state="deleted").validate([{"id": 12, "mode": None}, {"id": 3}]) == [{"id": 3}, {"id": 12}]
    with pytest.raises(InvalidInput, match="out of range"):
        resource(state="deleted").validate([{"id": 0}])


# ------------------------------------------------------------------ rendering (802.1Q: cannot run here)
def test_vlan_segment_plans_the_exact_ip_batch():
    r = resource(trunk="eth1")
    items = r.validate([{"id": 10, "gateway": "10.128.0.1/27"}])
    assert r.plan([], items) == [
        "ip link add name eubr-10 type bridge",
        "ip link add link eth1 name eth1.10 type vlan id 10",
        "sysctl -w net.ipv6.conf.eubr-10.disable_ipv6=1",
        "sysctl -w net.ipv6.conf.eth1/10.disable_ipv6=1",
        "ip link set dev eubr-10 alias euca.cloud/segment/10 up",
        "ip link set dev eth1.10 alias euca.cloud/segment/10/uplink master eubr-10 up",
        "ip address add 10.128.0.1/27 dev eubr-10",
    ]


def test_rendered_state_gives_the_batches_and_touches_nothing():
    r = resource(trunk="eth1", mode="vlan")
    out = config.converge(r, [{"id": 10, "gateway": "10.128.0.1/27", "mtu": 9000},
                              {"id": 20, "mode": "vxlan", "local": "198.51.100.1", "peers": ["198.51.100.2"]}],
                          "rendered")
    assert out == {"changed": False, "rendered": "\n".join([
        "# ip -batch -",
        "link add name eubr-10 type bridge",
        "link add link eth1 name eth1.10 type vlan id 10",
        "link add name eubr-20 type bridge",
        "link add name vxlan20 type vxlan id 20 local 198.51.100.1 dstport 4789 nolearning",
        "# sysctl -e -p /dev/stdin",
        "net.ipv6.conf.eubr-10.disable_ipv6 = 1",
        "net.ipv6.conf.eth1/10.disable_ipv6 = 1",
        "net.ipv6.conf.eubr-20.disable_ipv6 = 1",
        "net.ipv6.conf.vxlan20.disable_ipv6 = 1",
        "# ip -batch -",
        "link set dev eubr-10 alias euca.cloud/segment/10 mtu 9000 up",
        "link set dev eth1.10 alias euca.cloud/segment/10/uplink master eubr-10 mtu 9000 up",
        "link set dev eubr-20 alias euca.cloud/segment/20 mtu 1450 up",
        "link set dev vxlan20 alias euca.cloud/segment/20/uplink master eubr-20 mtu 1450 up",
        "address add 10.128.0.1/27 dev eubr-10",
        "# bridge -batch -",
        "fdb append 00:00:00:00:00:00 dev vxlan20 dst 198.51.100.2",
    ]) + "\n"}
    assert r.links is None  # nothing was gathered


def test_multicast_vxlan_learns_and_names_its_group():
    r = resource(**VX)
    items = r.validate([{"id": 30, "mode": "vxlan", "group": "239.0.0.30"}])
    assert "ip link add name vxlan30 type vxlan id 30 local 198.51.100.1 group 239.0.0.30 dev trunk dstport 4789" \
        in r.plan([], items)
    assert not any(c.startswith("bridge") for c in r.plan([], items))


def test_batches_group_consecutive_commands_of_one_program():
    assert segments.batches(["ip link add name a type bridge", "ip link add name b type bridge",
                             "sysctl -w net.ipv6.conf.a.disable_ipv6=1", "ip link set dev a up",
                             "bridge fdb append 00:00:00:00:00:00 dev v dst 198.51.100.2"]) == [
        ("ip", ["link add name a type bridge", "link add name b type bridge"]),
        ("sysctl", ["net.ipv6.conf.a.disable_ipv6=1"]),
        ("ip", ["link set dev a up"]),
        ("bridge", ["fdb append 00:00:00:00:00:00 dev v dst 198.51.100.2"]),
    ]


# ------------------------------------------------------------------ planning against gathered state
def link(name, kind=None, alias=None, master=None, up=True, mtu=1500, parent=None, data=None, addrs=(),
         address=None):
    """One entry of ``ip -j -d address show``."""
    out = {"ifname": name, "flags": ["BROADCAST", "MULTICAST"] + (["UP", "LOWER_UP"] if up else []), "mtu": mtu,
           "addr_info": [{"family": "inet", "local": a.split("/")[0], "prefixlen": int(a.split("/")[1]),
                          "scope": "global"} for a in addrs]}
    out["addr_info"].append({"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"})
    if kind:
        out["linkinfo"] = {"info_kind": kind}
        if data:
            out["linkinfo"]["info_data"] = data
    if alias:
        out["ifalias"] = alias
    if master:
        out["master"] = master
    if parent:
        out["link"] = parent
    if address:
        out["address"] = address
    return out


def vxlan(seg_id, local="198.51.100.1", dev="trunk", port=4789, learning=False, group=None, **kw):
    data = {"id": seg_id, "local": local, "port": port, "learning": learning}
    if group:
        data["group"] = group
    if dev:
        data["link"] = dev
    kw.setdefault("alias", segments.UPLINK_ALIAS % seg_id)
    kw.setdefault("master", "eubr-%d" % seg_id)
    kw.setdefault("mtu", 1450)
    return link("vxlan%d" % seg_id, "vxlan", data=data, **kw)


def bridge(seg_id, name=None, alias=True, **kw):
    return link(name or "eubr-%d" % seg_id, "bridge", alias=(segments.ALIAS % seg_id) if alias else None, **kw)


def fdb(dev, *peers):
    return [{"mac": "00:00:00:00:00:00", "ifname": dev, "dst": p, "flags": ["self"], "state": "permanent"}
            for p in peers]


def gathered(links, entries=(), **defaults):
    r = resource(**(defaults or VX))
    if r.load_links(links):
        r.load_fdb(list(entries))
    return r


def host(*extra):
    return [link("lo"), link("trunk", "veth", parent="trunk-peer",
                             addrs=["198.51.100.1/24"])] + list(extra)


def test_gathered_state_becomes_items_and_an_equal_request_plans_nothing():
    r = gathered(host(bridge(100, mtu=1450, addrs=["10.50.1.1/24"]), vxlan(100),
                      bridge(7, mtu=1500), link("vm1", "veth", master="eubr-100")),
                 fdb("vxlan100", "198.51.100.3", "198.51.100.2"))
    before = r.items()
    assert before == [
        {"id": 7, "mode": "flat", "bridge": "eubr-7", "gateway": None, "mtu": 1500},
        {"id": 100, "mode": "vxlan", "bridge": "eubr-100", "gateway": "10.50.1.1/24", "mtu": 1450,
         "local": "198.51.100.1", "dev": "trunk", "port": 4789, "group": None,
         "peers": ["198.51.100.2", "198.51.100.3"], "interconnect": [], "interconnect_port": None},
    ]
    desired = r.validate([{"id": 100, "mode": "vxlan", "gateway": "10.50.1.1/24",
                           "peers": ["198.51.100.3", "198.51.100.2"]}, {"id": 7, "mode": "flat"}])
    assert r.plan(before, config.target_items(r, "merged", before, desired)) == []


def test_changes_keep_the_links_and_touch_only_what_differs():
    r = gathered(host(bridge(100, mtu=1450, addrs=["10.50.1.1/24", "10.50.9.9/24"]), vxlan(100),
                      link("vm1", "veth", master="eubr-100")),
                 fdb("vxlan100", "198.51.100.2", "198.51.100.3"))
    desired = r.validate([{"id": 100, "mode": "vxlan", "gateway": "10.50.1.65/26",
                           "peers": ["198.51.100.3", "198.51.100.4"]}])
    assert r.plan(r.items(), desired) == [
        "ip address delete 10.50.1.1/24 dev eubr-100",
        "ip address delete 10.50.9.9/24 dev eubr-100",
        "ip address add 10.50.1.65/26 dev eubr-100",
        "bridge fdb del 00:00:00:00:00:00 dev vxlan100 dst 198.51.100.2",
        "bridge fdb append 00:00:00:00:00:00 dev vxlan100 dst 198.51.100.4",
    ]


def test_a_changed_tunnel_is_recreated_on_the_same_bridge():
    r = gathered(host(bridge(100, mtu=1450), vxlan(100, port=8472)), fdb("vxlan100", "198.51.100.2"))
    plan = r.plan(r.items(), r.validate([{"id": 100, "mode": "vxlan"}]))
    assert plan == [
        "ip link delete dev vxlan100",
        "ip link add name vxlan100 type vxlan id 100 local 198.51.100.1 dev trunk dstport 4789 nolearning",
        "sysctl -w net.ipv6.conf.vxlan100.disable_ipv6=1",
        "ip link set dev vxlan100 alias euca.cloud/segment/100/uplink master eubr-100 mtu 1450 up",
        "bridge fdb append 00:00:00:00:00:00 dev vxlan100 dst 198.51.100.2",
    ]


def test_drift_is_repaired_without_recreating():
    # bridge down, no alias (named like ours), uplink detached and down, wrong mtu
    r = gathered(host(bridge(100, alias=False, up=False, mtu=1500), vxlan(100, master=None, up=False)),
                 fdb("vxlan100", "198.51.100.2"))
    # a detached uplink of ours is an orphan: it is replaced
    plan = r.plan(r.items(), r.validate([{"id": 100, "mode": "vxlan"}]))
    assert plan[0] == "ip link delete dev vxlan100"
    assert "ip link set dev eubr-100 alias euca.cloud/segment/100 mtu 1450 up" in plan
    assert "ip link set dev vxlan100 alias euca.cloud/segment/100/uplink master eubr-100 mtu 1450 up" in plan


def test_mode_change_swaps_the_uplink():
    r = gathered(host(bridge(100, mtu=1450), vxlan(100)), fdb("vxlan100", "198.51.100.2"))
    assert r.plan(r.items(), r.validate([{"id": 100, "mode": "flat"}])) == ["ip link delete dev vxlan100"]


def test_removal_deletes_uplinks_before_bridges_and_leaves_instance_ports():
    r = gathered(host(bridge(100, mtu=1450), vxlan(100), bridge(7), link("vm1", "veth", master="eubr-100")),
                 fdb("vxlan100", "198.51.100.2"))
    before = r.items()
    assert r.plan(before, config.target_items(r, "deleted", before, [])) == [
        "ip link delete dev eubr-7", "ip link delete dev vxlan100", "ip link delete dev eubr-100"]
    # someone else's links are never ours, whatever they are called
    assert "vm1" not in " ".join(r.plan(before, []))


def test_other_links_are_not_ours():
    r = gathered(host(link("br0", "bridge"), link("eubr-9", "bridge", alias="libvirt"),
                      link("vxlan5", "vxlan", data={"id": 5}), link("eubr-x", "bridge")))
    assert r.items() == [] and r.orphans == []


def test_a_custom_bridge_is_found_by_its_alias():
    r = gathered(host(bridge(12, name="tenant12"), link("eubr-12", "bridge")), **{"mode": "flat"})
    assert [(i["id"], i["bridge"]) for i in r.items()] == [(12, "tenant12")]


def test_a_foreign_link_in_the_way_is_a_conflict():
    r = gathered(host(link("vxlan100", "vxlan", data={"id": 100})))
    with pytest.raises(Conflict, match="a vxlan link of that name already exists and is not a segment's"):
        r.plan([], r.validate([{"id": 100, "mode": "vxlan"}]))
    r = gathered(host(link("eubr-5", "veth")), mode="flat")
    with pytest.raises(Conflict, match="cannot create eubr-5"):
        r.plan([], r.validate([{"id": 5}]))


def test_unknown_trunk_or_underlay_is_refused_at_plan_time():
    r = gathered(host(), trunk="eth7")
    with pytest.raises(InvalidInput, match="segment 10: trunk NIC eth7 does not exist"):
        r.plan([], r.validate([{"id": 10}]))
    r = gathered(host(), **dict(VX, vxlan_dev="bond0"))
    with pytest.raises(InvalidInput, match="segment 10: underlay device bond0 does not exist"):
        r.plan([], r.validate([{"id": 10, "mode": "vxlan"}]))


def test_merged_refuses_a_bridge_name_an_existing_segment_keeps():
    r = gathered(host(bridge(5, name="tenant")), mode="flat")
    before = r.items()
    desired = r.validate([{"id": 6, "bridge": "tenant"}])
    with pytest.raises(InvalidInput, match="segments 5 and 6 both use tenant"):
        r.plan(before, config.target_items(r, "merged", before, desired))
    # overridden frees the name first: delete, then create
    plan = r.plan(before, config.target_items(r, "overridden", before, desired))
    assert plan[:2] == ["ip link delete dev tenant", "ip link add name tenant type bridge"]


def test_a_multicast_groups_own_fdb_entry_is_not_a_peer():
    r = gathered(host(bridge(30, mtu=1450), vxlan(30, learning=True, group="239.0.0.30")),
                 fdb("vxlan30", "239.0.0.30"))
    items = r.items()
    assert items[0]["group"] == "239.0.0.30" and items[0]["peers"] == []
    assert r.plan(items, r.validate([{"id": 30, "mode": "vxlan", "group": "239.0.0.30"}])) == []


def test_planning_4000_segments_is_linear():
    """Gather and plan for 4,000 segments take well under a second (no quadratic lookups)."""
    import time

    links = host()
    entries = []
    for i in range(1, 4001):
        links += [bridge(i, mtu=1450, addrs=["10.%d.%d.1/27" % (i // 256, i % 256)]), vxlan(i)]
        entries += fdb("vxlan%d" % i, "198.51.100.2")
    start = time.perf_counter()
    r = gathered(links, entries)
    desired = r.validate([{"id": i, "mode": "vxlan", "gateway": "10.%d.%d.1/27" % (i // 256, i % 256)}
                          for i in range(1, 4001)])
    assert r.plan(r.items(), desired) == []
    assert time.perf_counter() - start < 3


def vlan_link(seg_id, trunk="eth1", **kw):
    kw.setdefault("alias", segments.UPLINK_ALIAS % seg_id)
    kw.setdefault("master", "eubr-%d" % seg_id)
    return link("%s.%d" % (trunk, seg_id), "vlan", parent=trunk, data={"protocol": "802.1Q", "id": seg_id}, **kw)


def test_gathered_vlan_segments_and_a_trunk_change():
    r = gathered(host(link("eth1", "veth"), link("eth2", "veth"), bridge(10, addrs=["10.128.0.1/27"]), vlan_link(10)),
                 trunk="eth1")
    before = r.items()
    assert before == [{"id": 10, "mode": "vlan", "bridge": "eubr-10", "gateway": "10.128.0.1/27", "mtu": 1500,
                       "trunk": "eth1"}]
    assert r.plan(before, r.validate([{"id": 10, "gateway": "10.128.0.1/27"}])) == []
    assert r.plan(before, r.validate([{"id": 10, "gateway": "10.128.0.1/27", "trunk": "eth2"}])) == [
        "ip link delete dev eth1.10",
        "ip link add link eth2 name eth2.10 type vlan id 10",
        "sysctl -w net.ipv6.conf.eth2/10.disable_ipv6=1",
        "ip link set dev eth2.10 alias euca.cloud/segment/10/uplink master eubr-10 up",
    ]


def test_a_port_with_another_tag_is_not_taken_for_the_uplink():
    # someone else's eth1.11 on our bridge 10: neither our uplink nor ours to remove
    r = gathered(host(link("eth1", "veth"), bridge(10), vlan_link(11, master="eubr-10", alias=None)), trunk="eth1")
    plan = r.plan(r.items(), r.validate([{"id": 10}]))
    assert r.items()[0]["mode"] == "flat" and "ip link delete dev eth1.11" not in plan
    assert plan[0] == "ip link add link eth1 name eth1.10 type vlan id 10"


# ------------------------------------------------------------------ interconnect between clusters
IC = dict(VX, interconnect=["198.51.100.21", "198.51.100.31"])


def ic_link(seg_id, port=8472, **kw):
    """The ``vxic<id>`` port of ours, as ``ip -j -d address show`` prints it."""
    kw.setdefault("alias", segments.INTERCONNECT_ALIAS % seg_id)
    kw.setdefault("master", "eubr-%d" % seg_id)
    kw.setdefault("mtu", 1450)
    return link("vxic%d" % seg_id, "vxlan", data={"id": seg_id, "local": "198.51.100.1", "port": port,
                                                  "learning": False, "link": "trunk"}, **kw)


def test_interconnect_defaults_and_normalization():
    item = norm({"id": 300, "mode": "vxlan", "gateway": "10.128.3.1/24"}, **IC)
    assert (item["interconnect"], item["interconnect_port"]) == (["198.51.100.21", "198.51.100.31"], 8472)
    # the item's own list wins; an empty one means none (and then no port either)
    assert norm({"id": 300, "mode": "vxlan", "interconnect": ["198.51.100.41", "198.51.100.41"],
                 "interconnect_port": 4800}, **IC)["interconnect"] == ["198.51.100.41"]
    assert norm({"id": 300, "mode": "vxlan", "interconnect": [], "interconnect_port": 4800}, **IC)[
        "interconnect"] == []
    none = norm({"id": 300, "mode": "vxlan", "interconnect": []}, **IC)
    assert (none["interconnect"], none["interconnect_port"]) == ([], None)
    assert norm({"id": 300, "mode": "vxlan"}, **dict(IC, interconnect_port=9000))["interconnect_port"] == 9000
    # the longest port name fits IFNAMSIZ
    biggest = norm({"id": segments.VNI_MAX, "mode": "vxlan"}, **IC)
    assert segments.interconnect_name(biggest) == "vxic16777215" and len("vxic16777215") <= segments.IFNAMSIZ
    # flat and vlan segments have no interconnect: the module-level default does not apply to them
    assert "interconnect" not in norm({"id": 5, "mode": "flat"}, **IC)


@pytest.mark.parametrize("item, message", [
    ({"id": 10, "mode": "vxlan", "interconnect": ["198.51.100.2"]}, "198.51.100.2 is both a peer and an interconnect"),
    ({"id": 10, "mode": "vxlan", "interconnect": ["198.51.100.1"]}, "must be another cluster's CC VTEP"),
    ({"id": 10, "mode": "vxlan", "interconnect": ["239.1.1.1"]}, "must be another cluster's CC VTEP"),
    ({"id": 10, "mode": "vxlan", "interconnect": ["2001:db8::9"]}, "is IPv6 but the VXLAN local address is IPv4"),
    ({"id": 10, "mode": "vxlan", "interconnect": ["cc-b"]}, "interconnect peer 'cc-b' is not an IP address"),
    ({"id": 10, "mode": "vxlan", "interconnect": ["198.51.100.21"], "interconnect_port": 4789},
     "interconnect_port 4789 is the segment's own VXLAN port"),
    ({"id": 10, "mode": "vxlan", "interconnect": ["198.51.100.21"], "interconnect_port": 70000}, "out of range"),
    ({"id": 10, "mode": "flat", "interconnect": ["198.51.100.21"]}, "interconnect applies to vxlan segments only"),
])
def test_bad_interconnects_are_refused(item, message):
    with pytest.raises(InvalidInput) as err:
        norm(item, **VX)
    assert message in err.value.msg


def test_a_bridge_may_not_take_an_interconnect_port_name():
    with pytest.raises(InvalidInput, match="segments 5 and 6 both use vxic6"):
        resource(**IC).validate([{"id": 5, "mode": "flat", "bridge": "vxic6"}, {"id": 6, "mode": "vxlan"}])


def test_interconnect_ruleset_drops_gateway_arp_and_dhcp_on_the_interconnect_ports_only():
    r = resource(**IC)
    items = r.validate([{"id": 300, "mode": "vxlan", "gateway": "10.128.3.1/24"},
                        {"id": 301, "mode": "vxlan"},  # no gateway here: DHCP only
                        {"id": 302, "mode": "vxlan", "interconnect": []},
                        {"id": 7, "mode": "flat", "gateway": "10.0.7.1/24"}])
    ruleset = segments.interconnect_ruleset(items)
    assert (ruleset.family, ruleset.table, ruleset.label) == ("bridge", "euca_interconnect", "interconnect")
    lines = ruleset.commands(None)
    assert [line.rsplit(' comment "', 1)[0] if line.startswith("add rule") else line for line in lines] == [
        "add table bridge euca_interconnect",
        "delete table bridge euca_interconnect",
        'add table bridge euca_interconnect { comment "euca.cloud interconnect" ; }',
        "add chain bridge euca_interconnect prerouting { type filter hook prerouting priority filter; policy accept; }",
        "add chain bridge euca_interconnect postrouting { type filter hook postrouting priority filter; policy accept; }",
        "add chain bridge euca_interconnect ic-300",
        "add chain bridge euca_interconnect ic-301",
        'add rule bridge euca_interconnect prerouting iifname vmap { "vxic300" : jump ic-300, "vxic301" : jump ic-301 }',
        'add rule bridge euca_interconnect postrouting oifname vmap { "vxic300" : jump ic-300, "vxic301" : jump ic-301 }',
        "add rule bridge euca_interconnect ic-300 arp saddr ip 10.128.3.1 drop",
        "add rule bridge euca_interconnect ic-300 arp daddr ip 10.128.3.1 drop",
        "add rule bridge euca_interconnect ic-300 udp dport { 67, 68 } drop",
        "add rule bridge euca_interconnect ic-301 udp dport { 67, 68 } drop",
    ]
    # every rule carries its tag, so a changed rule is drift
    assert all(line.endswith('"') and ' comment "' in line for line in lines if line.startswith("add rule"))
    assert segments.interconnect_ruleset([i for i in items if i["id"] in (7, 302)]) is None


def test_a_new_interconnected_segment_plans_links_flood_lists_and_the_filter():
    r = resource(**dict(IC, interconnect=["198.51.100.21"]))
    plan = r.plan([], r.validate([{"id": 300, "mode": "vxlan", "gateway": "10.128.3.1/24"}]))
    assert plan[:11] == [
        "ip link add name eubr-300 type bridge",
        "ip link add name vxlan300 type vxlan id 300 local 198.51.100.1 dev trunk dstport 4789 nolearning",
        "ip link add name vxic300 type vxlan id 300 local 198.51.100.1 dev trunk dstport 8472 nolearning",
        "sysctl -w net.ipv6.conf.eubr-300.disable_ipv6=1",
        "sysctl -w net.ipv6.conf.vxlan300.disable_ipv6=1",
        "sysctl -w net.ipv6.conf.vxic300.disable_ipv6=1",
        "ip link set dev eubr-300 alias euca.cloud/segment/300 mtu 1450 up",
        "ip link set dev vxlan300 alias euca.cloud/segment/300/uplink master eubr-300 mtu 1450 up",
        "ip link set dev vxic300 alias euca.cloud/segment/300/interconnect master eubr-300 mtu 1450 up",
        "ip address add 10.128.3.1/24 dev eubr-300",
        "bridge fdb append 00:00:00:00:00:00 dev vxlan300 dst 198.51.100.2",
    ]
    assert plan[11] == "bridge fdb append 00:00:00:00:00:00 dev vxic300 dst 198.51.100.21"
    assert all(c.startswith("nft ") for c in plan[12:]) and len(plan[12:]) == 11
    # one nft transaction after the links, in the batches
    assert [tool for tool, _lines in segments.batches(plan)] == ["ip", "sysctl", "ip", "bridge", "nft"]
    rendered = segments.render_batches(plan)
    assert "# nft -f -\nadd table bridge euca_interconnect\ndelete table bridge euca_interconnect\n" in rendered


def ic_host(filter_listing=True, peers=("198.51.100.21",), **ic_kw):
    """A CC with segment 300 interconnected (vxic300 flooding to ``peers``) and, when
    ``filter_listing``, the interconnect table the same items need, as the kernel lists it."""
    r = gathered(host(bridge(300, mtu=1450, addrs=["10.128.3.1/24"], address="52:54:00:00:03:00"),
                      vxlan(300), ic_link(300, **ic_kw)),
                 fdb("vxlan300", "198.51.100.2") + fdb("vxic300", *peers), **dict(IC, interconnect=list(peers)))
    if filter_listing:
        from ansible_collections.euca.cloud.plugins.module_utils.net import rules
        ruleset = segments.interconnect_ruleset(r.items())
        r.filter = rules.parse_nft_listing("\n".join(ruleset.render(None)), segments.INTERCONNECT_LABEL)
    return r


def test_gathered_interconnect_becomes_the_item_and_an_equal_request_plans_nothing():
    r = ic_host()
    assert r.interconnects == {"vxic300": 300}
    before = r.items()
    assert (before[0]["interconnect"], before[0]["interconnect_port"]) == (["198.51.100.21"], 8472)
    assert before[0]["peers"] == ["198.51.100.2"]  # the interconnect's flood list is not the mesh's
    desired = r.validate([{"id": 300, "mode": "vxlan", "gateway": "10.128.3.1/24"}])
    assert r.plan(before, desired) == []


def test_interconnect_peers_change_in_place_and_a_drifted_filter_is_reloaded():
    r = ic_host()
    desired = r.validate([{"id": 300, "mode": "vxlan", "gateway": "10.128.3.1/24",
                           "interconnect": ["198.51.100.31", "198.51.100.41"]}])
    assert r.plan(r.items(), desired) == [
        "bridge fdb del 00:00:00:00:00:00 dev vxic300 dst 198.51.100.21",
        "bridge fdb append 00:00:00:00:00:00 dev vxic300 dst 198.51.100.31",
        "bridge fdb append 00:00:00:00:00:00 dev vxic300 dst 198.51.100.41",
    ]
    # a new gateway changes the filter: the whole table, in one transaction
    moved = r.plan(r.items(), r.validate([{"id": 300, "mode": "vxlan", "gateway": "10.128.3.65/26"}]))
    assert "nft add rule bridge euca_interconnect ic-300 arp saddr ip 10.128.3.65 drop" in [
        c.rsplit(' comment "', 1)[0] for c in moved]
    # the table gone (someone flushed the ruleset): only the table is written again
    gone = ic_host(filter_listing=False)
    plan = gone.plan(gone.items(), gone.validate([{"id": 300, "mode": "vxlan", "gateway": "10.128.3.1/24"}]))
    assert plan and all(c.startswith("nft ") for c in plan)


def test_overridden_without_interconnect_removes_the_port_and_the_table_keeping_the_gateway_mac():
    r = ic_host()
    before = r.items()
    desired = r.validate([{"id": 300, "mode": "vxlan", "gateway": "10.128.3.1/24", "interconnect": []}])
    after = config.target_items(r, "overridden", before, desired)
    assert r.plan(before, after) == [
        "ip link set dev eubr-300 address 52:54:00:00:03:00",
        "ip link delete dev vxic300",
        "nft delete table bridge euca_interconnect",
    ]
    assert config.summarize(r, before, after, r.plan(before, after))["modified"] == [300]
    # removing the whole segment takes the port with it (before the bridge), and the table
    assert r.plan(before, []) == ["ip link delete dev vxlan300", "ip link delete dev vxic300",
                                  "ip link delete dev eubr-300", "nft delete table bridge euca_interconnect"]


def test_adding_an_interconnect_to_a_segment_pins_the_gateway_mac_first():
    r = gathered(host(bridge(300, mtu=1450, addrs=["10.128.3.1/24"], address="52:54:00:00:03:00"), vxlan(300)),
                 fdb("vxlan300", "198.51.100.2"), **IC)
    plan = r.plan(r.items(), r.validate([{"id": 300, "mode": "vxlan", "gateway": "10.128.3.1/24"}]))
    assert plan[:3] == ["ip link set dev eubr-300 address 52:54:00:00:03:00",
                        "ip link add name vxic300 type vxlan id 300 local 198.51.100.1 dev trunk dstport 8472 "
                        "nolearning", "sysctl -w net.ipv6.conf.vxic300.disable_ipv6=1"]
    assert "bridge fdb append 00:00:00:00:00:00 dev vxic300 dst 198.51.100.31" in plan


def test_interconnect_port_recognition():
    # a changed interconnect_port recreates the port on the same bridge
    r = ic_host(port=4800)
    plan = r.plan(r.items(), r.validate([{"id": 300, "mode": "vxlan", "gateway": "10.128.3.1/24"}]))
    assert "ip link delete dev vxic300" in plan and any("dstport 8472" in c for c in plan)
    # an unmarked vxic<id> with the VNI is ours (its alias is set again), never taken for the uplink
    r = ic_host(alias=None)
    assert r.items()[0]["peers"] == ["198.51.100.2"] and r.interconnects == {"vxic300": 300}
    assert r.plan(r.items(), r.validate([{"id": 300, "mode": "vxlan", "gateway": "10.128.3.1/24"}])) == [
        "ip link set dev vxic300 alias euca.cloud/segment/300/interconnect"]
    # an interconnect port of ours that lost its bridge is an orphan, removed
    r = gathered(host(ic_link(300, master=None)), **IC)
    assert r.orphans == ["vxic300"]
    # a host without interconnects, asked for none, reads no nft table
    r = resource(**VX)
    r.validate([{"id": 1, "mode": "vxlan"}])
    assert not r.wants_interconnect
