"""Two clusters interconnected by their CCs (euca.cloud.segment ``interconnect``), with packets.

Topology, every part a throwaway namespace: a "fabric" namespace holds the underlay bridge
(198.51.100.0/24); cluster a is cc_a (.11) and nc_a (.12), cluster b is cc_b (.21) and nc_b (.22),
each plugged into the fabric by a veth named ``ul``. Within a cluster the CC and the NC peer in a
full mesh on UDP 4789; the CCs interconnect on UDP 8472 (``vxic<id>``). One instance namespace per
NC sits on the NC's segment bridge. Both CCs hold the segment's gateway (the anycast gateway).

Shown with packets: instance_b reaches instance_a by private address through cc_b and cc_a; each
instance resolves the gateway to its own CC only; a DHCP broadcast stays in its cluster while
another broadcast crosses; the security-group filter on the CCs lets the same-group traffic
through the interconnect and drops a stranger's; a second apply changes nothing; overridden
without interconnects removes the ports and the nft table.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from harness.runner import local_inventory, run_playbook

SEGMENT = 300
BRIDGE = "eubr-%d" % SEGMENT
VXIC = "vxic%d" % SEGMENT
GATEWAY = "10.128.3.1"
SUBNET = "10.128.3.0/24"
ADDR = {"cc_a": "198.51.100.11", "nc_a": "198.51.100.12", "cc_b": "198.51.100.21", "nc_b": "198.51.100.22"}
TABLE = "euca_interconnect"

pytestmark = [pytest.mark.root, pytest.mark.slow]


# ------------------------------------------------------------------ helpers
def links(ns):
    return dict((link["ifname"], link) for link in json.loads(ns.run("ip", "-j", "-d", "link", "show").stdout))


def mac(ns, dev="eth0"):
    return json.loads(ns.run("ip", "-j", "link", "show", dev).stdout)[0]["address"]


def neighbour_mac(ns, address):
    entries = json.loads(ns.run("ip", "-j", "neigh", "show", address).stdout)
    return entries[0].get("lladdr") if entries else None


def has_table(ns):
    return ns.run("nft", "list", "table", "bridge", TABLE, check=False).returncode == 0


class Capture:
    """tcpdump in a namespace while a block runs; ``text`` is what it printed."""

    def __init__(self, ns, path, argv):
        self.ns, self.path, self.argv = ns, path, argv
        self.text = ""

    def __enter__(self):
        self.out = open(self.path, "w")
        self.proc = self.ns.spawn(["tcpdump", "-l", "-nn"] + self.argv, stdout=self.out, stderr=self.out)
        time.sleep(1.0)  # tcpdump needs a moment before it captures
        return self

    def __exit__(self, *exc):
        time.sleep(0.5)
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.out.close()
        self.text = self.path.read_text()


class Clusters:
    """The two clusters, their instances, and the module runs (one playbook per converge)."""

    def __init__(self, netns, tmp_path):
        self.tmp = tmp_path
        self.fabric = netns()
        self.fabric.bridge("ul")
        self.ns = {}
        for role in ("cc_a", "nc_a", "cc_b", "nc_b"):
            ns = self.ns[role] = netns()
            port = role.replace("_", "-")
            self.fabric.veth(ns, port, "ul")
            self.fabric.enslave(port, "ul")
            ns.addr("ul", ADDR[role] + "/24")
        self.cc_a, self.nc_a, self.cc_b, self.nc_b = (self.ns[r] for r in ("cc_a", "nc_a", "cc_b", "nc_b"))
        self.runs = 0

    def segment_args(self, role, interconnect=True):
        cluster = role[-1]
        cc, nc = "cc_" + cluster, "nc_" + cluster
        other_cc = "cc_" + ("b" if cluster == "a" else "a")
        args = dict(namespace=self.ns[role].name, mode="vxlan", vxlan_local=ADDR[role], vxlan_dev="ul",
                    vxlan_peers=[ADDR[nc if role == cc else cc]], state="overridden")
        if role.startswith("cc"):
            args["config"] = [{"id": SEGMENT, "gateway": GATEWAY + "/24"}]
            if interconnect:
                args["interconnect"] = [ADDR[other_cc]]
        else:
            args["config"] = [{"id": SEGMENT}]
        return args

    def play(self, tasks, name="play", check=False, diff=False):
        """Run ``[(task name, module, args)]`` as one playbook; the results by task name."""
        self.runs += 1
        playbook = self.tmp / ("%s-%d.yml" % (name, self.runs))
        playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": task, module: args, "ignore_errors": True} for task, module, args in tasks]}]))
        run = run_playbook(playbook, inventory=local_inventory(), check=check, diff=diff)
        results = {}
        for task, _module, _args in tasks:
            result = run.task_result(task)
            assert not result.get("failed"), (task, result.get("msg"))
            results[task] = result
        return results

    def converge(self, roles=("cc_a", "nc_a", "cc_b", "nc_b"), interconnect=True, check=False, diff=False):
        return self.play([(role, "euca.cloud.segment", self.segment_args(role, interconnect)) for role in roles],
                         "segments", check=check, diff=diff)

    def instance(self, netns, host, cidr, port):
        vm = netns()
        host.veth(vm, port, "eth0")
        host.enslave(port, BRIDGE)
        vm.ip("link", "set", "eth0", "mtu", "1450")
        vm.addr("eth0", cidr)
        return vm


def rtt(ns, address, count=3):
    """Average ping round trip in ms (AssertionError when the address does not answer)."""
    out = ns.run("ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "2", address, check=False, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    return float(re.search(r"= [0-9.]+/([0-9.]+)/", out.stdout).group(1))


def broadcast(ns, sport, dport):
    """One UDP datagram to 255.255.255.255:dport from ``sport``, out of eth0 (like a DHCP client)."""
    ns.run("python3", "-c", (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b'eth0'); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        "s.bind(('0.0.0.0', %d)); s.sendto(b'euca-probe', ('255.255.255.255', %d))" % (sport, dport)))


def arp_replies(capture_text, address):
    """MACs that answered ARP for ``address`` in a ``tcpdump -e`` capture."""
    return set(re.findall(r"Reply %s is-at ([0-9a-f:]{17})" % re.escape(address), capture_text))


# ------------------------------------------------------------------ the test
def test_interconnected_clusters_share_the_segment_but_keep_their_gateway_and_dhcp(netns, tmp_path):
    started = time.monotonic()
    net = Clusters(netns, tmp_path)
    first = net.converge()
    assert all(r["changed"] for r in first.values())
    cc_item = first["cc_a"]["after"][0]
    assert (cc_item["interconnect"], cc_item["interconnect_port"]) == ([ADDR["cc_b"]], 8472)
    assert first["nc_a"]["after"][0]["interconnect"] == []
    assert any(c.startswith("nft add rule bridge %s ic-%d arp daddr ip %s drop" % (TABLE, SEGMENT, GATEWAY))
               for c in first["cc_b"]["commands"])
    assert not any(c.startswith("nft") for c in first["nc_b"]["commands"])  # an NC needs no nftables

    # the kernel has the second port: same VNI, its own UDP port, on the bridge, marked as ours
    vxic = links(net.cc_a)[VXIC]
    info = vxic["linkinfo"]["info_data"]
    assert (info["id"], info["port"], info["learning"], vxic["master"], vxic["ifalias"]) == (
        SEGMENT, 8472, False, BRIDGE, "euca.cloud/segment/%d/interconnect" % SEGMENT)
    assert links(net.cc_a)["vxlan%d" % SEGMENT]["linkinfo"]["info_data"]["port"] == 4789
    assert VXIC not in links(net.nc_a)
    listing = net.cc_a.run("nft", "list", "table", "bridge", TABLE).stdout
    assert 'comment "euca.cloud interconnect"' in listing and '"%s" : jump ic-%d' % (VXIC, SEGMENT) in listing

    inst_a = net.instance(netns, net.nc_a, "10.128.3.11/24", "vm-a")
    inst_b = net.instance(netns, net.nc_b, "10.128.3.21/24", "vm-b")

    # cross-cluster, by private address: nc_b -> cc_b -> (interconnect) -> cc_a -> nc_a
    with Capture(net.cc_a, tmp_path / "ul.txt", ["-T", "vxlan", "-i", "ul", "udp port 8472"]) as underlay:
        cross_ms = rtt(inst_b, "10.128.3.11")
    assert "VXLAN" in underlay.text and "vni %d" % SEGMENT in underlay.text, underlay.text
    gw_ms = rtt(inst_a, GATEWAY)

    # each instance resolves the anycast gateway to its own CC, and only its own CC answers
    cc_a_mac, cc_b_mac = mac(net.cc_a, BRIDGE), mac(net.cc_b, BRIDGE)
    assert cc_a_mac != cc_b_mac
    for vm, own in ((inst_b, cc_b_mac), (inst_a, cc_a_mac)):
        vm.ip("neigh", "flush", "dev", "eth0")
        with Capture(vm, tmp_path / "arp.txt", ["-e", "-i", "eth0", "arp"]) as arp:
            rtt(vm, GATEWAY, count=2)
        assert neighbour_mac(vm, GATEWAY) == own
        assert arp_replies(arp.text, GATEWAY) == {own}, arp.text
    # ... while instances still resolve each other across the interconnect
    rtt(inst_b, "10.128.3.11", count=1)
    assert neighbour_mac(inst_b, "10.128.3.11") == mac(inst_a)

    # DHCP broadcasts stay in their cluster; another broadcast crosses (the path carries broadcasts)
    udp = "udp and (port 67 or port 68 or port 6767)"
    with Capture(net.cc_a, tmp_path / "cc_a.txt", ["-i", "any", udp]) as at_cc_a, \
            Capture(inst_a, tmp_path / "inst_a.txt", ["-i", "eth0", udp]) as at_inst_a, \
            Capture(net.cc_b, tmp_path / "cc_b.txt", ["-i", BRIDGE, udp]) as at_cc_b:
        broadcast(inst_b, 68, 67)    # DHCPDISCOVER-like
        broadcast(inst_b, 67, 68)    # a rogue server's offer
        broadcast(inst_b, 6767, 6767)
    assert "255.255.255.255.67:" in at_cc_b.text and "255.255.255.255.68:" in at_cc_b.text  # its own CC hears it
    for text in (at_cc_a.text, at_inst_a.text):
        assert "255.255.255.255.6767:" in text, text
        assert "255.255.255.255.67:" not in text and "255.255.255.255.68:" not in text, text

    # a second apply changes nothing
    again = net.converge()
    assert not any(r["changed"] for r in again.values()), again
    assert all(r["commands"] == [] for r in again.values())

    # the filter is what keeps the gateway local: without it cluster a's CC answers cluster b's ARP too
    for cc in (net.cc_a, net.cc_b):
        cc.run("nft", "delete", "table", "bridge", TABLE)
    inst_b.ip("neigh", "flush", "dev", "eth0")
    with Capture(inst_b, tmp_path / "arp-open.txt", ["-e", "-i", "eth0", "arp"]) as arp:
        rtt(inst_b, GATEWAY, count=2)
    assert arp_replies(arp.text, GATEWAY) == {cc_a_mac, cc_b_mac}, arp.text
    repaired = net.converge(roles=("cc_a", "cc_b"))
    assert all(r["changed"] and r["summary"]["modified"] == [] for r in repaired.values())
    assert all(c.startswith("nft ") for r in repaired.values() for c in r["commands"])  # only the table
    assert has_table(net.cc_a) and has_table(net.cc_b)
    inst_b.ip("neigh", "flush", "dev", "eth0")
    rtt(inst_b, GATEWAY, count=1)
    assert neighbour_mac(inst_b, GATEWAY) == cc_b_mac

    # the security-group filter on both CCs: bridged through cc_b, same-group traffic passes the
    # forward hook (br_netfilter) and a stranger numbered outside the group's subnet is dropped
    for cc in (net.cc_a, net.cc_b):
        cc.run("sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1")
        assert cc.run("sysctl", "-n", "net.bridge.bridge-nf-call-iptables").stdout.strip() == "1"
    stranger = net.instance(netns, net.nc_b, "10.128.9.9/16", "vm-c")
    stranger.ip("neigh", "replace", "10.128.3.11", "lladdr", mac(inst_a), "dev", "eth0", "nud", "permanent")
    group = {"name": "grp", "subnet": SUBNET, "rules": []}
    fw = net.play([(role, "euca.cloud.firewall", {"namespace": net.ns[role].name, "config": [group],
                                                  "state": "overridden", "backend": "nft", "generation": 1})
                   for role in ("cc_a", "cc_b")], "firewall")
    assert all(r["changed"] for r in fw.values())
    with Capture(inst_a, tmp_path / "stranger.txt", ["-i", "eth0", "icmp"]) as seen:
        filtered_ms = rtt(inst_b, "10.128.3.11")
        assert not stranger.ping("10.128.3.11", wait=1)
    assert "10.128.3.21 > 10.128.3.11: ICMP echo request" in seen.text
    assert "10.128.9.9" not in seen.text, seen.text

    # overridden without interconnects: check mode with --diff says so and touches nothing ...
    preview = net.converge(roles=("cc_a", "cc_b"), interconnect=False, check=True, diff=True)
    for role, result in preview.items():
        assert result["changed"] and "nft delete table bridge %s" % TABLE in result["commands"]
        assert result["diff"]["before"][str(SEGMENT)]["interconnect"] == [ADDR["cc_b" if role == "cc_a" else "cc_a"]]
        assert result["diff"]["after"][str(SEGMENT)]["interconnect"] == []
        assert VXIC in links(net.ns[role]) and has_table(net.ns[role])
    assert inst_b.ping("10.128.3.11")
    # ... and the real run removes the ports and the table: the clusters are apart again
    apart = net.converge(roles=("cc_a", "cc_b"), interconnect=False)
    for role, result in apart.items():
        assert result["changed"] and result["summary"]["modified"] == [SEGMENT], result["summary"]
        assert "ip link delete dev %s" % VXIC in result["commands"]
        assert "nft delete table bridge %s" % TABLE in result["commands"]
        assert VXIC not in links(net.ns[role]) and not has_table(net.ns[role])
        assert result["commands"][0] == "ip link set dev %s address %s" % (BRIDGE, mac(net.ns[role], BRIDGE))
    assert not inst_b.ping("10.128.3.11", wait=1)
    # the gateways kept their MACs while their ports went (the bridges' addresses are pinned first),
    # so the instances' ARP caches still hold: no gateway outage
    assert (mac(net.cc_a, BRIDGE), mac(net.cc_b, BRIDGE)) == (cc_a_mac, cc_b_mac)
    assert inst_a.ping(GATEWAY) and inst_b.ping(GATEWAY)
    assert not any(r["changed"] for r in net.converge(roles=("cc_a", "cc_b"), interconnect=False).values())

    print("\ncross-cluster rtt %.3f ms (with the filter %.3f ms), gateway rtt %.3f ms, %d playbooks, %.1f s"
          % (cross_ms, filtered_ms, gw_ms, net.runs, time.monotonic() - started))
