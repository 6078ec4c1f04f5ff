#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: segment
short_description: Tenant network segments (802.1Q, VXLAN or flat bridges) on a cluster or node controller
version_added: 0.1.0
description:
  - Converges the set of tenant segments of a host, the data plane of Eucalyptus' MANAGED networking. Each segment is a
    Linux bridge (V(eubr-<id>) by default) with an uplink that depends on its O(config[].mode).
  - V(vlan) segments use the 802.1Q sub-interface V(<trunk>.<id>) of a trunk NIC (MANAGED mode). V(vxlan) segments
    use a V(vxlan<id>) device with VXLAN network id O(config[].id), flooding either to a list of peer VTEPs (head-end
    replication, no address learning) or to a multicast group. V(flat) segments are a bridge only (MANAGED-NOVLAN,
    isolation by filtering).
  - VXLAN segments also interconnect clusters (Eucalyptus did it between cluster controllers with vtun), so a
    security group's instances in different clusters share one layer-2 segment and reach each other by private
    address. On each cluster controller a segment with O(config[].interconnect) gets a second port on its bridge,
    V(vxic<id>), a VXLAN device with the same network id on the UDP port O(config[].interconnect_port), flooding to
    the other clusters' cluster controllers. It must be a second device because a bridge never sends a frame back
    out of the port it came by, so the one V(vxlan<id>) port could not relay the cluster's nodes' frames to
    another cluster. List every other cluster's controller on each one (a full mesh); a frame that came in by the
    interconnect is never flooded back out of it, so the controllers cannot loop frames between them.
  - Every cluster controller holds the same gateway address (an anycast gateway). One nftables table of the
    C(bridge) family, V(euca_interconnect) (its comment V(euca.cloud interconnect) marks it as this module's), drops on
    the V(vxic<id>) ports, in both directions, ARP whose sender or target address is the segment's gateway, and
    DHCP (UDP 67 and 68), so instances resolve their gateway to their own cluster controller and lease from its
    dnsmasq. The table is replaced whole in one C(nft -f) transaction when it differs and removed when no segment
    has an interconnect any more. Traffic bridged between a node's port and the interconnect stays inside the
    group's segment; where C(net.bridge.bridge-nf-call-iptables=1) sends it through the controller's
    security-group filter (M(euca.cloud.firewall)), same-group traffic passes there.
  - On the cluster controller the segment's gateway address sits on the bridge; node controllers usually leave
    O(config[].gateway) out.
  - Runs on C(cc) and C(nc) hosts. With O(namespace) everything happens inside that network namespace.
  - Only links of this module are changed. They are recognised by the alias V(euca.cloud/segment/<id>) every bridge
    and uplink it creates carries (bridges named V(eubr-<id>) count too), so custom bridge names survive. An
    existing link of another kind that stands in the way is reported, never replaced. Instance ports on a segment's
    bridge are left alone (removing a segment detaches them).
  - A change is applied by a handful of processes whatever the number of segments, never one per segment. One
    C(ip -batch) removes links and creates new ones down, one C(sysctl) run switches IPv6 off on the new ones, one
    C(ip -batch) configures them, brings them up and sets gateways, one C(bridge -batch) writes VXLAN flood
    lists and, with interconnects, one C(nft -f) writes the interconnect filter. A second run with the same input
    changes nothing and runs no command.
  - IPv6 is disabled on the links this module creates. Segments are IPv4, and bringing thousands of links up with
    IPv6 makes the kernel's per-link multicast routes cost time quadratic in the number of links.
  - Input is validated completely (ids, addresses, names, and that trunk and underlay devices exist on the host)
    before anything changes.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.report
  - ansible.builtin.action_common_attributes
options:
  config:
    description:
      - The segments. Keyed by O(config[].id); with O(state=deleted) only the ids are read.
    type: list
    elements: dict
    default: []
    suboptions:
      id:
        description:
          - The segment's 802.1Q tag (1 to 4094; 0 and 4095 are reserved) for V(vlan), its VXLAN network id (1 to
            16777215) for V(vxlan), a label in the same range for V(flat).
        type: int
        required: true
      mode:
        description: How the segment reaches other hosts. Defaults to O(mode).
        type: str
        choices: [vlan, vxlan, flat]
      bridge:
        description: Name of the segment's bridge (at most 15 characters). Defaults to V(eubr-<id>).
        type: str
      gateway:
        description:
          - IPv4 address with prefix length set on the bridge, for example V(10.128.0.1/27); the cluster
            controller's side of the segment. Without it the bridge has no address (and any it had is removed).
        type: str
      mtu:
        description:
          - MTU of the bridge and its uplink.
          - Defaults to V(1450) for V(vxlan) (1500 minus the 50 bytes of VXLAN encapsulation over IPv4, so instances
            never need fragmentation) and to the kernel's choice for the others (the trunk's MTU for V(vlan), 1500 for
            V(flat)).
        type: int
      trunk:
        description: The trunk NIC of a V(vlan) segment (its uplink is V(<trunk>.<id>)). Defaults to O(trunk).
        type: str
      local:
        description: This host's VTEP address for a V(vxlan) segment (IPv4 or IPv6). Defaults to O(vxlan_local).
        type: str
      dev:
        description: The underlay device of a V(vxlan) segment. Defaults to O(vxlan_dev).
        type: str
      port:
        description: UDP destination port of a V(vxlan) segment. Defaults to O(vxlan_port).
        type: int
      peers:
        description:
          - Remote VTEP addresses a V(vxlan) segment floods to (head-end replication, one all-zero FDB entry per
            peer, no learning). Defaults to O(vxlan_peers) when neither O(config[].peers) nor O(config[].group) is
            given. An empty list is a segment alone on this host for now.
        type: list
        elements: str
      group:
        description: Multicast group a V(vxlan) segment floods to instead of O(config[].peers); needs O(config[].dev).
        type: str
      interconnect:
        description:
          - The other clusters' cluster-controller VTEP addresses a V(vxlan) segment is interconnected with, through
            its V(vxic<id>) port (head-end replication, no learning). Only for cluster controllers. Defaults to
            O(interconnect) when not given; an empty list means no interconnect (an existing V(vxic<id>) port is
            removed).
          - An address may not be both a peer and an interconnect peer (the two controllers would relay each
            other's floods back and forth).
        type: list
        elements: str
      interconnect_port:
        description:
          - UDP port of the segment's V(vxic<id>) port. It must differ from O(config[].port) (two VXLAN devices with
            one network id and one local address need distinct ports). Defaults to O(interconnect_port).
        type: int
  mode:
    description: Mode of segments that do not set O(config[].mode).
    type: str
    choices: [vlan, vxlan, flat]
    default: vlan
  trunk:
    description: Trunk NIC of V(vlan) segments that do not set O(config[].trunk). It must exist and be up.
    type: str
  vxlan_local:
    description: Local VTEP address of V(vxlan) segments that do not set O(config[].local).
    type: str
  vxlan_dev:
    description: Underlay device of V(vxlan) segments that do not set O(config[].dev).
    type: str
  vxlan_port:
    description: UDP port of V(vxlan) segments that do not set O(config[].port).
    type: int
    default: 4789
  vxlan_peers:
    description: Peer VTEPs of V(vxlan) segments that set neither O(config[].peers) nor O(config[].group).
    type: list
    elements: str
  vxlan_group:
    description: Multicast group of V(vxlan) segments that set neither O(config[].peers) nor O(config[].group).
    type: str
  interconnect:
    description:
      - Interconnect peers (the other clusters' cluster-controller VTEPs) of V(vxlan) segments that do not set
        O(config[].interconnect). Set it on cluster controllers only, for example from
        C(inventory_hostname | euca.cloud.vxlan_interconnect(hostvars, groups)).
    type: list
    elements: str
  interconnect_port:
    description:
      - UDP port of the interconnect ports of V(vxlan) segments that do not set O(config[].interconnect_port).
      - V(8472) is the Linux kernel's own VXLAN port from before IANA assigned 4789 (4789 carries the clusters' own
        meshes; 4790 is VXLAN-GPE's). Open it between the cluster controllers on the underlay.
    type: int
    default: 8472
  state:
    description:
      - V(merged) creates or updates the given segments and keeps the others.
      - V(overridden) makes the host's segments exactly the given ones; segments of this module not listed are
        removed.
      - V(deleted) removes the given segments (by id), or every segment of this module when O(config) is empty.
      - V(rendered) returns the batches that would build the given segments on an empty host, and touches nothing.
    type: str
    choices: [merged, overridden, deleted, rendered]
    default: merged
  namespace:
    description: Network namespace to act in (it must exist); the host's own when not given.
    type: str
notes:
  - On a kernel without 802.1Q support V(vlan) segments fail with a message naming C(CONFIG_VLAN_8021Q). A batch
    stops at its first failing line; what came before it stays, and the next run converges from there.
  - The trunk NIC and the VXLAN underlay device are not changed (not even brought up); they belong to the host.
  - The interconnect filter is read (C(nft list table bridge euca_interconnect)) only when a segment has or gets an
    interconnect, so hosts without interconnects need no nftables.
requirements:
  - iproute2 (C(ip), C(bridge)) and procps (C(sysctl)) on the managed host
  - netaddr on the managed host
  - nftables (C(nft)) and a kernel with the nftables C(bridge) family on cluster controllers with interconnects
"""

EXAMPLES = r"""
- name: Cluster controller, MANAGED mode on trunk eth1, with gateways
  euca.cloud.segment:
    trunk: eth1
    config:
      - id: 10
        gateway: 10.128.0.1/27
      - id: 11
        gateway: 10.128.0.33/27
    state: overridden

- name: Node controller, VXLAN to the cluster controller and the other node
  euca.cloud.segment:
    mode: vxlan
    vxlan_local: 198.51.100.12
    vxlan_dev: eth1
    vxlan_peers: [198.51.100.10, 198.51.100.11]
    config:
      - id: 10
      - id: 11

- name: Cluster controller of cluster_a, its segments interconnected with cluster_b's and cluster_c's controllers
  euca.cloud.segment:
    mode: vxlan
    vxlan_local: 198.51.100.10
    vxlan_dev: eth1
    vxlan_peers: [198.51.100.11, 198.51.100.12]
    interconnect: [198.51.100.20, 198.51.100.30]
    config:
      - id: 10
        gateway: 10.128.0.1/27
    state: overridden

- name: Segments from the ledger, inside the sandbox namespace
  euca.cloud.segment:
    namespace: euca-aio
    trunk: eth1
    config: "{{ (cluster_slice | euca.cloud.cc_config).segments }}"
    state: overridden

- name: Show the batches for a flat segment without touching the host
  euca.cloud.segment:
    config:
      - id: 7
        mode: flat
        gateway: 10.0.7.1/24
    state: rendered

- name: Remove every segment of this module
  euca.cloud.segment:
    state: deleted
"""

RETURN = r"""
before:
  description: The segments of this module found on the host before the change, by id.
  returned: unless O(state=rendered) or O(report=summary)
  type: list
  elements: dict
  sample: [{id: 10, mode: vxlan, bridge: eubr-10, gateway: 10.128.0.1/27, mtu: 1450, local: 198.51.100.10,
            dev: eth1, port: 4789, peers: [198.51.100.12], group: null, interconnect: [198.51.100.20],
            interconnect_port: 8472}]
after:
  description: The segments as the run leaves them (as requested in check mode).
  returned: unless O(state=rendered) or O(report=summary)
  type: list
  elements: dict
  sample: [{id: 10, mode: vlan, bridge: eubr-10, gateway: 10.128.0.1/27, mtu: null, trunk: eth1}]
commands:
  description:
    - What was run (or would be, in check mode), as C(ip ...), C(sysctl -w ...), C(bridge ...) and C(nft ...)
      commands. Consecutive commands of one program ran as one batch (the C(nft) ones as one transaction). Empty
      when nothing changed.
  returned: unless O(state=rendered) or O(report=summary)
  type: list
  elements: str
  sample: ["ip link add name eubr-10 type bridge", "ip link add link eth1 name eth1.10 type vlan id 10",
           "sysctl -w net.ipv6.conf.eubr-10.disable_ipv6=1", "sysctl -w net.ipv6.conf.eth1/10.disable_ipv6=1",
           "ip link set dev eubr-10 alias euca.cloud/segment/10 up",
           "ip link set dev eth1.10 alias euca.cloud/segment/10/uplink master eubr-10 up",
           "ip address add 10.128.0.1/27 dev eubr-10"]
summary:
  description: What the run changes (would change, in check mode), by segment id.
  returned: unless O(state=rendered)
  type: dict
  contains:
    added:
      description: The segment ids added.
      type: list
      elements: int
    removed:
      description: The segment ids removed.
      type: list
      elements: int
    modified:
      description: The segment ids whose settings change.
      type: list
      elements: int
    unchanged:
      description: How many items stay as they are.
      type: int
    commands:
      description: How many lines the plan has (the length of RV(commands)).
      type: int
  sample: {added: [12], removed: [], modified: [10], unchanged: 41, commands: 6}
rendered:
  description: The batches that build the given segments on an empty host, each headed by the command reading it.
  returned: when O(state=rendered)
  type: str
  sample: "# ip -batch -\nlink add name eubr-7 type bridge\n..."
"""

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.euca.cloud.plugins.module_utils.base import CONFIG_ARGS, ConfigModule
from ansible_collections.euca.cloud.plugins.module_utils.net import segments
from ansible_collections.euca.cloud.plugins.module_utils.model import addressing

SEGMENT_OPTIONS = dict(
    id=dict(type="int", required=True),
    mode=dict(type="str", choices=list(segments.MODES)),
    bridge=dict(type="str"),
    gateway=dict(type="str"),
    mtu=dict(type="int"),
    trunk=dict(type="str"),
    local=dict(type="str"),
    dev=dict(type="str"),
    port=dict(type="int"),
    peers=dict(type="list", elements="str"),
    group=dict(type="str"),
    interconnect=dict(type="list", elements="str"),
    interconnect_port=dict(type="int"),
)


class SegmentModule(ConfigModule):
    argument_spec = dict(
        CONFIG_ARGS,
        config=dict(type="list", elements="dict", default=[], options=SEGMENT_OPTIONS),
        mode=dict(type="str", default="vlan", choices=list(segments.MODES)),
        trunk=dict(type="str"),
        vxlan_local=dict(type="str"),
        vxlan_dev=dict(type="str"),
        vxlan_port=dict(type="int", default=segments.DEFAULT_VXLAN_PORT),
        vxlan_peers=dict(type="list", elements="str"),
        vxlan_group=dict(type="str"),
        interconnect=dict(type="list", elements="str"),
        interconnect_port=dict(type="int", default=segments.DEFAULT_INTERCONNECT_PORT),
    )

    def __init__(self):
        super(SegmentModule, self).__init__()
        if not addressing.HAS_NETADDR:
            self.ansible.fail_json(msg=missing_required_lib("netaddr"), exception=str(addressing.NETADDR_IMPORT_ERROR))

    def resource(self):
        p = self.params
        return segments.SegmentSet(
            namespace=p["namespace"], state=p["state"],
            defaults=dict((key, p[key]) for key in segments.DEFAULT_KEYS),
        )


def main():
    SegmentModule()()


if __name__ == "__main__":
    main()
