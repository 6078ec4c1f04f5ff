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
        "local": "198.51.100.1", "dev": "trunk", "port": 4789, "peers": ["198.51.100.2"], "group": None}


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
    ({"id": 4096}, {"trunk": "eth1"}, "id must be from 1 to 4094"),
    ({"id": -3}, {"trunk": "eth1"}, "id must be from 1 to 4094"),
    ({"id": 16777216, "mode": "vxlan"}, VX, "id must be from 1 to 16777215"),
    ({"id": 0, "mode": "vxlan"}, VX, "id must be from 1 to 16777215"),
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
def link(name, kind=None, alias=None, master=None, up=True, mtu=1500, parent=None, data=None, addrs=()):
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
         "peers": ["198.51.100.2", "198.51.100.3"]},
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
