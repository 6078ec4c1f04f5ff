"""euca.cloud.segment on real kernels, inside namespaces: links, packets and VXLAN frames.

Topology: a "cc" and an "nc" namespace joined by a veth "trunk" (the underlay, from
198.51.100.0/24); the module builds the segments in each (run through Ansible with
``namespace``). "Instances" are namespaces whose eth0 is a veth plugged into a segment's
bridge. Reachability is shown with ping, isolation with pings that must fail, the
encapsulation with tcpdump on the trunk.
"""

from __future__ import annotations

import json
import time

import pytest

from harness.netns import run as host_run
from harness.runner import local_inventory, run_module, run_playbook

MODULE = "euca.cloud.segment"
CC_UNDERLAY, NC_UNDERLAY = "198.51.100.1", "198.51.100.2"

pytestmark = pytest.mark.root


# ------------------------------------------------------------------ helpers
def segment(ns, config, state="merged", check=False, diff=False, **options):
    """Run the module in ``ns`` and return its ModuleRun."""
    args = dict(options, namespace=ns.name, config=config, state=state)
    return run_module(MODULE, args, check=check, diff=diff)


def ok(run):
    assert not run.failed, run.result.get("msg") or run.stdout[-3000:]
    return run.result


def links(ns):
    """Every link of ``ns``: name -> ip's JSON (with details and addresses)."""
    return dict((link["ifname"], link) for link in json.loads(ns.run("ip", "-j", "-d", "address", "show").stdout))


def state_of(ns):
    """What a change would alter: per link its index, kind, master, alias, mtu, up, IPv4
    addresses and VXLAN/VLAN id; plus the VXLAN flood entries."""
    out = {}
    for name, link in links(ns).items():
        info = link.get("linkinfo") or {}
        out[name] = (link["ifindex"], info.get("info_kind"), (info.get("info_data") or {}).get("id"),
                     link.get("master"), link.get("ifalias"), link["mtu"], "UP" in link["flags"],
                     sorted("%s/%s" % (a["local"], a["prefixlen"]) for a in link.get("addr_info", [])
                            if a["family"] == "inet"))
    fdb = json.loads(ns.run("bridge", "-j", "fdb", "show").stdout)
    out["fdb"] = sorted((e["ifname"], e.get("dst")) for e in fdb if e["mac"] == "00:00:00:00:00:00")
    return out


def underlay(netns):
    """cc and nc namespaces joined by a veth named trunk on both sides."""
    cc, nc = netns(), netns()
    cc.veth(nc, "trunk", "trunk")
    cc.addr("trunk", CC_UNDERLAY + "/24")
    nc.addr("trunk", NC_UNDERLAY + "/24")
    return cc, nc


def instance(netns, host, bridge, cidr, port, mtu=None):
    """A namespace whose eth0 is plugged into ``bridge`` of ``host`` with address ``cidr``."""
    vm = netns()
    host.veth(vm, port, "eth0")
    host.enslave(port, bridge)
    if mtu:
        vm.ip("link", "set", "eth0", "mtu", str(mtu))
    vm.addr("eth0", cidr)
    return vm


def mac(ns, dev="eth0"):
    return json.loads(ns.run("ip", "-j", "link", "show", dev).stdout)[0]["address"]


def neighbour_mac(ns, address):
    entries = json.loads(ns.run("ip", "-j", "neigh", "show", address).stdout)
    return entries[0].get("lladdr") if entries else None


def vxlan_options(local, peer):
    return dict(mode="vxlan", vxlan_local=local, vxlan_dev="trunk", vxlan_peers=[peer])


# ------------------------------------------------------------------ VXLAN: packets across, isolation between
@pytest.mark.slow
def test_vxlan_segments_between_cc_and_nc_carry_their_own_traffic_only(netns, tmp_path):
    cc, nc = underlay(netns)
    on_cc = ok(segment(cc, [{"id": 100, "gateway": "10.50.1.1/24"}, {"id": 200, "gateway": "10.50.2.1/24"}],
                       state="overridden", **vxlan_options(CC_UNDERLAY, NC_UNDERLAY)))
    on_nc = ok(segment(nc, [{"id": 100}, {"id": 200}], state="overridden", **vxlan_options(NC_UNDERLAY, CC_UNDERLAY)))
    assert on_cc["changed"] and on_nc["changed"]
    assert [(i["id"], i["bridge"], i["mtu"], i["peers"]) for i in on_nc["after"]] == [
        (100, "eubr-100", 1450, [CC_UNDERLAY]), (200, "eubr-200", 1450, [CC_UNDERLAY])]

    # the kernel has what was asked: VNI, underlay, no learning, one flood entry per peer
    detail = nc.run("ip", "-d", "link", "show", "vxlan100").stdout
    assert "vxlan id 100 local %s dev trunk" % NC_UNDERLAY in detail and "dstport 4789" in detail
    assert "nolearning" in detail and "master eubr-100" in detail
    assert state_of(nc)["fdb"] == [("vxlan100", CC_UNDERLAY), ("vxlan200", CC_UNDERLAY)]
    assert links(cc)["eubr-100"]["addr_info"][0]["local"] == "10.50.1.1"
    assert not [a for a in links(cc)["eubr-100"]["addr_info"] if a["family"] == "inet6"]  # IPv6 is off

    # instances: a (100) and b (200) on the NC, e (100) on the CC; c in 200 on the NC but numbered from
    # 100's subnet; d in 200 on the CC with a's very address (overlapping tenants)
    a = instance(netns, nc, "eubr-100", "10.50.1.11/24", "vm-a", mtu=1450)
    b = instance(netns, nc, "eubr-200", "10.50.2.11/24", "vm-b", mtu=1450)
    c = instance(netns, nc, "eubr-200", "10.50.1.12/24", "vm-c", mtu=1450)
    d = instance(netns, cc, "eubr-200", "10.50.1.11/24", "vm-d", mtu=1450)
    e = instance(netns, cc, "eubr-100", "10.50.1.13/24", "vm-e", mtu=1450)

    capture = tmp_path / "trunk.txt"
    with open(capture, "w") as out:
        dump = nc.spawn(["tcpdump", "-l", "-nn", "-i", "trunk", "udp port 4789"], stdout=out)
        time.sleep(1.0)  # tcpdump needs a moment before it captures
        # same segment, across the VXLAN: NC instance -> CC gateway, NC instance -> CC instance
        assert a.ping("10.50.1.1", count=2)
        assert b.ping("10.50.2.1", count=2)
        assert a.ping("10.50.1.13", count=2)
        dump.terminate()
        dump.wait(timeout=10)
    frames = capture.read_text()
    assert "VXLAN" in frames and "vni 100" in frames and "vni 200" in frames, frames

    # full-size frames for the 1450 MTU cross without fragmentation
    assert a.run("ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1422", "10.50.1.1", check=False).returncode == 0

    # another segment has no layer-2 path, across the VXLAN or on the same host,
    # even for an instance numbered from the right subnet
    assert not c.ping("10.50.1.13", wait=1)         # c (200, NC) -> e (100, CC)
    assert not e.ping("10.50.1.12", wait=1)         # e (100, CC) -> c (200, NC)
    assert not a.ping("10.50.1.12", wait=1)         # a (100) -> c (200), same NC
    # overlapping addresses resolve inside the segment: 10.50.1.11 seen from 200 is d (on the CC), never a
    assert c.ping("10.50.1.11", count=2)
    assert neighbour_mac(c, "10.50.1.11") == mac(d) != mac(a)


# ------------------------------------------------------------------ flat
def test_flat_segments_are_bridges_with_a_gateway(netns):
    cc = netns()
    result = ok(segment(cc, [{"id": 1, "gateway": "10.60.1.1/24"},
                             {"id": 2, "gateway": "10.60.2.1/24", "bridge": "tenant2"}], mode="flat"))
    assert result["changed"]
    now = links(cc)
    assert now["eubr-1"]["ifalias"] == "euca.cloud/segment/1" and now["tenant2"]["ifalias"] == "euca.cloud/segment/2"
    assert not [n for n, link in now.items() if link.get("master") in ("eubr-1", "tenant2")]  # no uplink
    x = instance(netns, cc, "eubr-1", "10.60.1.10/24", "vm-x")
    y = instance(netns, cc, "tenant2", "10.60.1.20/24", "vm-y")  # other segment, same subnet
    assert x.ping("10.60.1.1", count=2)
    assert not y.ping("10.60.1.1", wait=1)
    assert not x.ping("10.60.1.20", wait=1)
    # the custom-named bridge is recognised as segment 2 on the next run
    again = ok(segment(cc, [{"id": 1, "gateway": "10.60.1.1/24"},
                            {"id": 2, "gateway": "10.60.2.1/24", "bridge": "tenant2"}], mode="flat"))
    assert not again["changed"] and again["commands"] == []


# ------------------------------------------------------------------ 802.1Q
def vlan_support(netns):
    """None when this kernel can make an 802.1Q link, else the reason it cannot."""
    probe = netns()
    probe.ip("link", "add", "probe0", "type", "veth", "peer", "name", "probe1")
    made = probe.ip("link", "add", "link", "probe0", "name", "probe0.7", "type", "vlan", "id", "7", check=False)
    if made.returncode != 0:
        return "kernel lacks CONFIG_VLAN_8021Q (%s)" % made.stderr.strip()
    return None


def test_vlan_segments_over_a_trunk(netns):
    reason = vlan_support(netns)
    if reason:
        pytest.skip(reason)
    cc, nc = netns(), netns()
    cc.veth(nc, "trunk", "trunk")  # up, no address: it carries tagged frames only
    cfg_cc = [{"id": 10, "gateway": "10.70.0.1/24"}, {"id": 20, "gateway": "10.70.1.1/24"}]
    assert ok(segment(cc, cfg_cc, trunk="trunk"))["changed"]
    assert ok(segment(nc, [{"id": 10}, {"id": 20}], trunk="trunk"))["changed"]
    sub = links(nc)["trunk.10"]
    assert sub["linkinfo"]["info_kind"] == "vlan" and sub["linkinfo"]["info_data"]["id"] == 10
    assert sub["master"] == "eubr-10" and sub["link"] == "trunk" and "UP" in sub["flags"]
    a = instance(netns, nc, "eubr-10", "10.70.0.10/24", "vm-a")
    b = instance(netns, nc, "eubr-20", "10.70.0.11/24", "vm-b")  # segment 20 with segment 10's subnet
    assert a.ping("10.70.0.1", count=2)
    assert not b.ping("10.70.0.1", wait=1)
    before = state_of(cc)
    again = ok(segment(cc, cfg_cc, trunk="trunk"))
    assert not again["changed"] and state_of(cc) == before


def test_vlan_on_a_kernel_without_8021q_fails_with_the_reason(netns):
    if vlan_support(netns) is None:
        pytest.skip("this kernel has 802.1Q: the failure path cannot happen here")
    cc = netns()
    cc.ip("link", "add", "trunk", "type", "veth", "peer", "name", "trunk-peer")
    before = state_of(cc)
    run = segment(cc, [{"id": 10}], trunk="trunk")
    assert run.failed and "CONFIG_VLAN_8021Q" in run.result["msg"]
    assert "modprobe 8021q" in run.result["msg"]
    # the bridge line ran before the vlan line failed; the next run converges from there
    assert set(state_of(cc)) - set(before) <= {"eubr-10"}


# ------------------------------------------------------------------ idempotence and changes in place
def test_second_apply_changes_nothing_and_changes_keep_the_links(netns):
    cc, nc = underlay(netns)
    opts = vxlan_options(CC_UNDERLAY, NC_UNDERLAY)
    cfg = [{"id": 100, "gateway": "10.50.1.1/24"}, {"id": 7, "mode": "flat", "gateway": "10.50.7.1/24"}]
    first = ok(segment(cc, cfg, **opts))
    assert first["changed"]
    built = state_of(cc)
    second = ok(segment(cc, cfg, diff=True, **opts))
    assert not second["changed"] and second["commands"] == [] and "diff" not in second
    assert state_of(cc) == built  # same ifindexes, nothing rewritten

    # a new gateway, another peer and a bigger MTU are changed in place: same links
    changed = [{"id": 100, "gateway": "10.50.1.65/26", "mtu": 1400, "peers": [NC_UNDERLAY, "198.51.100.3"]},
               {"id": 7, "mode": "flat", "gateway": "10.50.7.1/24"}]
    third = segment(cc, changed, diff=True, **opts)
    result = ok(third)
    assert result["changed"] and result["diff"]["before"]["100"]["gateway"] == "10.50.1.1/24"
    # the diff and the summary name only what changes; segment 7 stays out of both
    assert set(result["diff"]["before"]) == set(result["diff"]["after"]) == {"100"}
    assert result["summary"] == {"added": [], "removed": [], "modified": [100], "unchanged": 1,
                                 "commands": len(result["commands"])}
    assert not any(c.startswith("ip link add") or c.startswith("ip link delete") for c in result["commands"])
    now = state_of(cc)
    for name in ("eubr-100", "vxlan100", "eubr-7"):
        assert now[name][0] == built[name][0], name  # ifindex kept
    assert now["eubr-100"][7] == ["10.50.1.65/26"] and now["eubr-100"][5] == 1400 == now["vxlan100"][5]
    assert now["fdb"] == [("vxlan100", NC_UNDERLAY), ("vxlan100", "198.51.100.3")]
    assert not ok(segment(cc, changed, **opts))["changed"]

    # drift (someone took the bridge down and removed the gateway) is repaired, still in place
    cc.ip("link", "set", "eubr-7", "down")
    cc.ip("address", "flush", "dev", "eubr-7")
    repair = ok(segment(cc, changed, **opts))
    assert repair["changed"] and state_of(cc)["eubr-7"] == now["eubr-7"]

    # report=summary: the same work, without the item lists
    short = ok(segment(cc, changed[:1], state="overridden", report="summary", **opts))
    assert short["changed"] and "eubr-7" not in state_of(cc)
    assert not set(short) & {"before", "after", "commands"}
    assert short["summary"]["removed"] == [7] and short["summary"]["unchanged"] == 1


# ------------------------------------------------------------------ merged / overridden / deleted
def test_merged_overridden_deleted_on_real_links(netns):
    cc, nc = underlay(netns)
    opts = vxlan_options(CC_UNDERLAY, NC_UNDERLAY)
    cc.bridge("br-other")  # not ours: must survive everything
    ok(segment(cc, [{"id": 1, "mode": "flat"}, {"id": 2, "mode": "flat"}], **opts))
    vm = instance(netns, cc, "eubr-1", "10.80.0.10/24", "vm-1")
    assert vm.exists
    ok(segment(cc, [{"id": 3}], **opts))  # merged keeps 1 and 2
    ours = lambda: sorted(n for n in links(cc) if n.startswith(("eubr-", "vxlan")))  # noqa: E731
    assert ours() == ["eubr-1", "eubr-2", "eubr-3", "vxlan3"]
    kept = links(cc)["eubr-2"]["ifindex"]

    result = ok(segment(cc, [{"id": 2, "mode": "flat"}, {"id": 4}], state="overridden", **opts))
    assert [i["id"] for i in result["before"]] == [1, 2, 3] and [i["id"] for i in result["after"]] == [2, 4]
    assert ours() == ["eubr-2", "eubr-4", "vxlan4"]
    now = links(cc)
    assert now["eubr-2"]["ifindex"] == kept
    assert "br-other" in now and "vm-1" in now and "master" not in now["vm-1"]  # the instance port is only detached

    ok(segment(cc, [{"id": 2}], state="deleted"))
    assert ours() == ["eubr-4", "vxlan4"]
    result = ok(segment(cc, [], state="deleted"))
    assert result["changed"] and result["after"] == []
    assert ours() == [] and "br-other" in links(cc) and "trunk" in links(cc)
    assert not ok(segment(cc, [], state="deleted"))["changed"]


# ------------------------------------------------------------------ check mode, rendered
def test_check_mode_and_rendered_change_nothing(netns):
    cc, nc = underlay(netns)
    opts = vxlan_options(CC_UNDERLAY, NC_UNDERLAY)
    ok(segment(cc, [{"id": 1, "mode": "flat", "gateway": "10.90.0.1/24"}], **opts))
    before = state_of(cc)
    plan = ok(segment(cc, [{"id": 5, "gateway": "10.90.5.1/24"}], state="overridden", check=True, **opts))
    assert plan["changed"] and "ip link delete dev eubr-1" in plan["commands"]
    assert "ip link add name vxlan5 type vxlan id 5 local %s dev trunk dstport 4789 nolearning" % CC_UNDERLAY \
        in plan["commands"]
    assert state_of(cc) == before
    assert ok(segment(cc, [], state="deleted", check=True))["changed"] and state_of(cc) == before
    rendered = ok(segment(cc, [{"id": 5, "gateway": "10.90.5.1/24"}], state="rendered", **opts))
    assert not rendered["changed"] and rendered["rendered"].startswith("# ip -batch -\nlink add name eubr-5 type bridge")
    assert state_of(cc) == before


# ------------------------------------------------------------------ bad input fails before anything
BAD = [
    ("vlan tag 4095", [{"id": 4095}], {"trunk": "trunk"}, "802.1Q tags 0 and 4095 are reserved"),
    ("malformed gateway", [{"id": 9, "mode": "flat", "gateway": "10.0.0.1/33"}], {},
     "is not an IPv4 address with its prefix length"),
    ("gateway not a CIDR", [{"id": 9, "mode": "flat", "gateway": "gateway"}], {}, "is not an IPv4 address"),
    ("no trunk", [{"id": 9, "mode": "vlan"}], {}, "no trunk NIC"),
    ("no vxlan local", [{"id": 9, "mode": "vxlan"}], {}, "no local VTEP address"),
    ("unknown trunk", [{"id": 9, "mode": "flat"}, {"id": 10, "mode": "vlan"}], {"trunk": "eth9"},
     "segment 10: trunk NIC eth9 does not exist in namespace"),
    ("unknown underlay", [{"id": 9, "mode": "flat"}, {"id": 10, "mode": "vxlan"}],
     {"vxlan_local": CC_UNDERLAY, "vxlan_dev": "nope0"}, "segment 10: underlay device nope0 does not exist"),
    ("long bridge name", [{"id": 9, "mode": "flat", "bridge": "bridge-for-tenant-9"}], {},
     "is not a usable interface name"),
    ("same bridge twice", [{"id": 9, "mode": "flat", "bridge": "br9"}, {"id": 10, "mode": "flat", "bridge": "br9"}],
     {}, "segments 9 and 10 both use br9 as their bridge"),
    ("foreign link in the way", [{"id": 8, "mode": "flat"}, {"id": 77, "mode": "flat"}], {},
     "cannot create eubr-77 for a segment: a veth link of that name already exists"),
]


def test_bad_input_fails_before_anything_is_applied(netns, tmp_path):
    cc, nc = underlay(netns)
    ok(segment(cc, [{"id": 1, "mode": "flat", "gateway": "10.90.0.1/24"}]))
    cc.ip("link", "add", "eubr-77", "type", "veth", "peer", "name", "other77")  # someone else's link
    before = state_of(cc)
    # one playbook, one task per case: a run of Ansible per case would cost seconds each
    tasks = [{"name": name, MODULE: dict(options, namespace=cc.name, config=config, state="overridden"),
              "ignore_errors": True} for name, config, options, _ in BAD]
    tasks.append({"name": "missing namespace", MODULE: {"namespace": "eut-no-such-ns", "config": [{"id": 1}]},
                  "ignore_errors": True})
    playbook = tmp_path / "bad.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    run = run_playbook(playbook, inventory=local_inventory())
    for name, _config, _options, message in BAD:
        result = run.task_result(name)
        assert run.task_events(name)[0]["event"] == "runner_on_failed", (name, result)
        assert message in result["msg"] and not result.get("changed"), (name, result.get("msg"))
    assert "network namespace eut-no-such-ns does not exist" in run.task_result("missing namespace")["msg"]
    assert state_of(cc) == before
    assert "eut-no-such-ns" not in host_run("ip", "netns", "list").stdout
