#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: nat
short_description: Converge the elastic-IP NAT of a cluster controller
version_added: 0.1.0
description:
  - Converges the cluster controller's elastic-IP NAT as a whole set (the card's "NAT lifecycle"), from the mappings
    the ledger holds for the cluster.
  - Each mapping gets DNAT from its public address to the instance (from outside, from other instances and from the
    CC itself), SNAT from the instance to its public address when it leaves by O(public_interface), and hairpin NAT
    so that instances reach each other's elastic IPs, their own group's included.
  - Traffic from O(private_networks) leaving by O(public_interface) without an elastic IP is masqueraded. Hairpin
    NAT also applies to O(private_networks) only.
  - The elastic IPs are added as /32 addresses on O(public_interface); every /32 address there that lies in
    O(public_ips) is considered ours and removed when no mapping uses it.
  - With the nft backend the module owns the table C(ip euca_nat) and replaces it in one C(nft -f) transaction,
    keeping the mappings in two maps (no rule per elastic IP). With the iptables backend it owns the chains
    C(EUCA-NAT-PRE), C(EUCA-NAT-OUT) and C(EUCA-NAT-POST) of the nat table, refills them with one
    C(iptables-restore --noflush) and adds the jumps from the built-in chains when they are missing.
  - The ledger generation applied is recorded in the ruleset; applying an older O(generation) than the one in place
    fails, so two concurrent jobs cannot roll each other back. A second run with the same state changes nothing;
    a ruleset that was flushed or altered is loaded again.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.report
  - euca.cloud.ruleset
  - ansible.builtin.action_common_attributes
options:
  config:
    description:
      - The elastic-IP mappings. Each public address may appear once, and each private address once.
    type: list
    elements: dict
    suboptions:
      public_ip:
        description: The elastic IP; must lie in O(public_ips).
        type: str
        required: true
      private_ip:
        description: The instance's private address.
        type: str
        required: true
  state:
    description:
      - V(merged) adds or replaces the given mappings and keeps the others.
      - V(overridden) makes the given mappings the whole set; the others are removed.
      - V(deleted) removes the given mappings (all of them when O(config) is empty); the default masquerade for
        O(private_networks) stays.
      - V(rendered) returns the ruleset for O(config) in RV(rendered) without touching the host.
    type: str
    choices: [merged, overridden, deleted, rendered]
    default: merged
  public_interface:
    description:
      - The CC's interface on the public network. Required unless O(state=rendered) (then the ruleset shows
        C(PUBLIC_IFACE) in its place).
    type: str
  public_ips:
    description:
      - The elastic IP pool as CIDRs (V(203.0.113.0/28)), ranges (V(203.0.113.10-203.0.113.20)) and single
        addresses; a mapping outside it is refused. Required unless O(state=rendered).
    type: list
    elements: str
  private_networks:
    description:
      - Private networks (CIDRs) whose traffic is masqueraded when it leaves by O(public_interface), and between
        which DNATed traffic is hairpinned. Usually the cloud's C(private_network).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Converge the elastic IPs of cluster_a from its ledger slice
  euca.cloud.nat:
    config: "{{ slice | euca.cloud.cc_config | json_query('nat') }}"
    state: overridden
    public_interface: eth1
    public_ips: [203.0.113.0/24]
    private_networks: [172.19.0.0/16]
    generation: "{{ slice.generation }}"

- name: Associate one elastic IP, inside the sandbox namespace
  euca.cloud.nat:
    config:
      - public_ip: 203.0.113.10
        private_ip: 172.19.0.11
    public_interface: pub
    public_ips: [203.0.113.0/28]
    namespace: euca-aio

- name: Show the nftables ruleset that would be loaded, offline
  euca.cloud.nat:
    config:
      - {public_ip: 203.0.113.10, private_ip: 172.19.0.11}
    private_networks: [172.19.0.0/16]
    state: rendered
"""

RETURN = r"""
before:
  description: The mappings in place before the run (read back from the ruleset).
  returned: unless O(state=rendered) or O(report=summary)
  type: list
  elements: dict
  sample: [{public_ip: 203.0.113.10, private_ip: 172.19.0.11}]
after:
  description: The mappings in place after the run (or that would be, in check mode).
  returned: unless O(state=rendered) or O(report=summary)
  type: list
  elements: dict
  sample: [{public_ip: 203.0.113.10, private_ip: 172.19.0.11}]
commands:
  description:
    - What was (or, in check mode, would be) loaded, as lines; empty when nothing differed.
    - The ruleset script (C(nft -f) or C(iptables-restore --noflush) input) followed by C(ip addr) commands,
      which run in one C(ip -batch).
  returned: unless O(state=rendered) or O(report=summary)
  type: list
  elements: str
  sample: ["add table ip euca_nat", "delete table ip euca_nat", "table ip euca_nat {", "ip addr add 203.0.113.10/32 dev eth1"]
summary:
  description: What the run changes (would change, in check mode), by elastic IP.
  returned: unless O(state=rendered)
  type: dict
  contains:
    added:
      description: The elastic IPs added.
      type: list
      elements: str
    removed:
      description: The elastic IPs removed.
      type: list
      elements: str
    modified:
      description: The elastic IPs whose settings change.
      type: list
      elements: str
    unchanged:
      description: How many items stay as they are.
      type: int
    commands:
      description: How many lines the plan has (the length of RV(commands)).
      type: int
  sample: {added: [203.0.113.40], removed: [], modified: [], unchanged: 12, commands: 40}
rendered:
  description: The ruleset for O(config), as the backend would load it.
  returned: when state is rendered
  type: str
generation:
  description: The ledger generation recorded in the ruleset after the run.
  returned: unless state is rendered
  type: int
  sample: 42
left_out:
  description:
    - What was left out with O(on_invalid=skip), one item per mapping, with the reason; empty when everything was
      applied.
  returned: when O(on_invalid=skip)
  type: list
  elements: dict
  contains:
    public_ip:
      description: The elastic IP of the mapping, as given.
      type: str
    reason:
      description: Why it was left out.
      type: str
    kept:
      description: Present when the elastic IP keeps the mapping applied before.
      type: str
  sample: [{public_ip: 203.0.113.40, reason: "elastic IP 203.0.113.40 is outside the public_ips pool 203.0.113.32/28"}]
backend:
  description: The backend used (V(auto) resolved).
  returned: always
  type: str
  sample: nft
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import RULESET_ARGS, RulesetModule
from ansible_collections.euca.cloud.plugins.module_utils.net.nat import NatResource


class NatModule(RulesetModule):
    argument_spec = dict(
        RULESET_ARGS,
        config=dict(type="list", elements="dict", options=dict(
            public_ip=dict(type="str", required=True),
            private_ip=dict(type="str", required=True),
        )),
        public_interface=dict(type="str"),
        public_ips=dict(type="list", elements="str"),
        private_networks=dict(type="list", elements="str", default=[]),
    )
    module_kwargs = dict(required_if=[
        ("state", "merged", ["public_interface", "public_ips"]),
        ("state", "overridden", ["public_interface", "public_ips"]),
        ("state", "deleted", ["public_interface", "public_ips"]),
    ])

    def resource(self):
        p = self.params
        return NatResource(
            public_interface=p["public_interface"], public_ips=p["public_ips"], private_networks=p["private_networks"],
            backend=p["backend"], namespace=p["namespace"], generation=p["generation"],
            offline=p["state"] == "rendered",
        )


def main():
    NatModule()()


if __name__ == "__main__":
    main()
