#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: cloud
short_description: Set the cloud-wide settings in the cloud's ledger
version_added: 0.1.0
description:
  - Sets the settings every cluster shares, in the spirit of Eucalyptus 1.6's C(eucalyptus.conf) on the cloud
    controller; network mode, private address space, segment ids, the elastic IP pool, the scheduling policy and the
    VM types.
  - Only the options given are changed; the others keep their current value (or the default on a new ledger).
  - A change that would strand something already allocated is refused with the objects named, for example shrinking
    O(public_ips) under an allocated elastic IP, a O(segment_range) that no longer holds a security group's segment,
    or a new O(network_mode) while security groups exist.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.ledger
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
options:
  network_mode:
    description:
      - How security groups' segments are carried between hosts.
      - V(vlan) tags each segment with an 802.1Q id (MANAGED mode), V(vxlan) gives each a VXLAN network id, V(flat)
        keeps one layer-2 network and isolates groups by filtering only (MANAGED-NOVLAN).
      - Defaults to V(vlan) on a new ledger. Cannot change while security groups exist.
    type: str
    choices: [vlan, vxlan, flat]
  private_network:
    description:
      - The private address space security groups' subnets are cut from, as an IPv4 CIDR without host bits
        (Eucalyptus' C(VNET_SUBNET)/C(VNET_NETMASK)).
      - Defaults to V(172.19.0.0/16) on a new ledger.
    type: str
  addresses_per_group:
    description:
      - Size of the subnet each new security group gets (Eucalyptus' C(VNET_ADDRSPERNET)); a power of two, at least 4.
      - Defaults to V(32) on a new ledger.
    type: int
  segment_range:
    description:
      - First and last segment id (VLAN tag or VXLAN id) new security groups may take, as a list of two integers.
      - In V(vlan) mode ids must lie within 1-4094 (tags 0 and 4095 are reserved); in V(vxlan) mode within 1-16777215.
      - Defaults to V([10, 4094]) on a new ledger.
    type: list
    elements: int
  public_ips:
    description:
      - The elastic IP pool (Eucalyptus' C(VNET_PUBLICIPS)) as a list of CIDRs (V(203.0.113.0/28)), ranges
        (V(203.0.113.10-203.0.113.20)) and single addresses. The list replaces the whole pool.
      - Must not overlap O(private_network).
    type: list
    elements: str
  scheduler:
    description:
      - Default placement policy for new instances; M(euca.cloud.instance) may override it per launch.
      - V(GREEDY) fills nodes in name order, V(ROUNDROBIN) moves to the next node on each placement, V(POWERSAVE) packs
        instances onto the busiest node that fits.
      - Defaults to V(ROUNDROBIN) on a new ledger.
    type: str
    choices: [GREEDY, ROUNDROBIN, POWERSAVE]
  vm_types:
    description:
      - The VM types instances may be launched as, mapping each name to its C(cores), C(memory_mb) and C(disk_gb)
        (positive integers). The mapping replaces all types.
      - Defaults to Eucalyptus 1.6's m1.small, c1.medium, m1.large, m1.xlarge and c1.xlarge on a new ledger.
    type: dict
notes:
  - Run without options, the module changes nothing and returns the current settings.
seealso:
  - module: euca.cloud.ledger_info
"""

EXAMPLES = r"""
- name: A VLAN-mode cloud with a small elastic IP pool
  euca.cloud.cloud:
    ledger: /var/lib/euca/clc/ledger.sqlite
    network_mode: vlan
    private_network: 10.100.0.0/16
    addresses_per_group: 64
    segment_range: [100, 199]
    public_ips:
      - 203.0.113.32/28
      - 203.0.113.100-203.0.113.110
      - 203.0.113.200
    scheduler: GREEDY

- name: Offer a bigger VM type (all types are listed, the mapping replaces them)
  euca.cloud.cloud:
    vm_types:
      m1.small: {cores: 1, memory_mb: 128, disk_gb: 2}
      m1.large: {cores: 2, memory_mb: 512, disk_gb: 10}
      m2.xlarge: {cores: 4, memory_mb: 4096, disk_gb: 40}
"""

RETURN = r"""
settings:
  description: The cloud's settings after the change (all of them, defaults included).
  returned: always
  type: dict
  sample:
    network_mode: vlan
    private_network: 10.100.0.0/16
    addresses_per_group: 64
    segment_range: [100, 199]
    public_ips: [203.0.113.32/28, 203.0.113.100-203.0.113.110, 203.0.113.200]
    scheduler: GREEDY
    vm_types: {m1.small: {cores: 1, memory_mb: 128, disk_gb: 2}}
generation:
  description: Ledger generation after the change.
  returned: always
  type: int
  sample: 42
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import LEDGER_ARGS, LedgerModule
from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.ledger import cloud, settings
from ansible_collections.euca.cloud.plugins.module_utils.model import network as model_network

SETTINGS = ("network_mode", "private_network", "addresses_per_group", "segment_range", "public_ips", "scheduler",
            "vm_types")


class CloudModule(LedgerModule):
    argument_spec = dict(
        LEDGER_ARGS,
        network_mode=dict(type="str", choices=list(model_network.NETWORK_MODES)),
        private_network=dict(type="str"),
        addresses_per_group=dict(type="int"),
        segment_range=dict(type="list", elements="int"),
        public_ips=dict(type="list", elements="str"),
        scheduler=dict(type="str", choices=list(settings.SCHEDULERS)),
        vm_types=dict(type="dict"),
    )

    def run(self):
        changes = dict((k, self.params[k]) for k in SETTINGS if self.params[k] is not None)
        if "segment_range" in changes and len(changes["segment_range"]) != 2:
            raise InvalidInput("segment_range must be two integers [first, last], not %r" % (changes["segment_range"],))
        return self.converge(cloud.ensure_settings, changes)


def main():
    CloudModule()()


if __name__ == "__main__":
    main()
