#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: firewall
short_description: Converge the security-group filter of a cluster controller
version_added: 0.1.0
description:
  - Converges the cluster controller's security-group filter as a whole set, from the groups the ledger holds for
    the cluster (Eucalyptus MANAGED mode).
  - Default deny between segments. A forwarded packet to an address in a group's subnet is accepted when it comes
    from the group's own subnet, belongs to an established or related connection, or matches one of the group's
    rules by protocol, port range and source (a CIDR, or another group's subnet); otherwise it is dropped.
  - Filtering happens after DNAT, so traffic to an elastic IP (see M(euca.cloud.nat)) is filtered by the
    destination instance's group. Traffic to destinations outside every group (the world) is not filtered.
  - With the nft backend the module owns the table C(ip euca_filter) (a forward chain dispatching through one
    verdict map, and a chain per group) and replaces it in one C(nft -f) transaction. With the iptables backend it
    owns the C(EUCA-FW-*) chains of the filter table, refills them with one C(iptables-restore --noflush) and adds
    the jump from C(FORWARD) when it is missing.
  - The ledger generation applied is recorded in the ruleset; applying an older O(generation) fails. A second run
    with the same state changes nothing; a ruleset that was flushed or altered is loaded again.
  - Everything is validated before anything is applied. With O(on_invalid=skip) (what C(playbooks/network.yml) uses)
    a rule or group that cannot be applied is left out and named in RV(left_out) while every other group is
    converged, so one tenant's bad record never stops the rest of the cloud from converging.
  - Rules have EC2's semantics, defined once for the ledger and the filter (C(module_utils/model/rules.py)), so the
    ledger (M(euca.cloud.security_group)) refuses at entry every rule this module would refuse, with the same
    message.
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
      - The security groups. Subnets must not overlap.
    type: list
    elements: dict
    suboptions:
      name:
        description: The group's name.
        type: str
        required: true
      subnet:
        description: The group's private subnet (its segment), as a CIDR.
        type: str
        required: true
      rules:
        description: Ingress rules; traffic within the group's own subnet always passes.
        type: list
        elements: dict
        default: []
        suboptions:
          protocol:
            description:
              - Protocol the rule authorises, V(tcp), V(udp), V(icmp) or V(all) (or the numbers 6, 17, 1, -1).
              - Checked by the module rather than by Ansible's argument parsing, so a bad rule can be left out alone
                (O(on_invalid=skip)).
            type: str
            default: tcp
          from_port:
            description:
              - First port (1-65535) for V(tcp) and V(udp), required for them.
              - The ICMP type (0-255, or -1 for every type, the default) for V(icmp). Must be -1 or unset for V(all).
            type: int
          to_port:
            description:
              - Last port (1-65535, at least O(config[].rules[].from_port)) for V(tcp) and V(udp); defaults to
                O(config[].rules[].from_port).
              - The ICMP code (0-255, or -1 for every code, the default) for V(icmp); a code needs a type.
            type: int
          cidr:
            description: Source addresses the rule authorises. Exactly one of this and O(config[].rules[].source_group).
            type: str
          source_group:
            description: A group (among O(config)) whose subnet the rule authorises as source.
            type: str
  state:
    description:
      - V(merged) adds or replaces the given groups and keeps the others.
      - V(overridden) makes the given groups the whole set; the others are removed.
      - V(deleted) removes the given groups (all of them when O(config) is empty).
      - V(rendered) returns the ruleset for O(config) in RV(rendered) without touching the host.
    type: str
    choices: [merged, overridden, deleted, rendered]
    default: merged
"""

EXAMPLES = r"""
- name: Converge the security groups of cluster_a from its ledger slice
  euca.cloud.firewall:
    config: "{{ slice | euca.cloud.cc_config | json_query('firewall') }}"
    state: overridden
    generation: "{{ slice.generation }}"

- name: A web group open on 80 to the world and on 22 to the admin group
  euca.cloud.firewall:
    config:
      - name: web
        subnet: 172.19.0.0/27
        rules:
          - {protocol: tcp, from_port: 80, cidr: 0.0.0.0/0}
          - {protocol: tcp, from_port: 22, source_group: admin}
          - {protocol: icmp, from_port: 8, cidr: 0.0.0.0/0}
      - name: admin
        subnet: 172.19.0.32/27
    state: overridden
    namespace: euca-aio
"""

RETURN = r"""
before:
  description: The groups in place before the run (read back from the ruleset).
  returned: unless O(state=rendered) or O(report=summary)
  type: list
  elements: dict
  sample: [{name: web, subnet: 172.19.0.0/27, rules: [{protocol: tcp, from_port: 80, to_port: 80, cidr: 0.0.0.0/0, source_group: null}]}]
after:
  description: The groups in place after the run (or that would be, in check mode).
  returned: unless O(state=rendered) or O(report=summary)
  type: list
  elements: dict
  sample: [{name: web, subnet: 172.19.0.0/27, rules: []}]
commands:
  description: The ruleset script loaded (C(nft -f) or C(iptables-restore --noflush) input), as lines; empty when nothing differed.
  returned: unless O(state=rendered) or O(report=summary)
  type: list
  elements: str
  sample: ["add table ip euca_filter", "delete table ip euca_filter", "table ip euca_filter {"]
summary:
  description: What the run changes (would change, in check mode), by security group name.
  returned: unless O(state=rendered)
  type: dict
  contains:
    added:
      description: The security group names added.
      type: list
      elements: str
    removed:
      description: The security group names removed.
      type: list
      elements: str
    modified:
      description: The security group names whose settings change.
      type: list
      elements: str
    unchanged:
      description: How many items stay as they are.
      type: int
    commands:
      description: How many lines the plan has (the length of RV(commands)).
      type: int
  sample: {added: [web], removed: [], modified: [db], unchanged: 3, commands: 52}
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
    - What was left out with O(on_invalid=skip), one item per group or rule, with the reason; empty when everything
      was applied.
  returned: when O(on_invalid=skip)
  type: list
  elements: dict
  contains:
    group:
      description: The group the problem belongs to.
      type: str
    rule:
      description: The rule left out as given, or null when the whole group was left out.
      type: dict
    reason:
      description: Why, in the words the ledger uses to refuse it.
      type: str
    kept:
      description: Present when a group left out as a whole keeps what was applied before.
      type: str
  sample: [{group: web, rule: {protocol: tcp, from_port: 0, cidr: 0.0.0.0/0}, reason: "group web tcp rule from_port 0 is outside 1-65535"}]
backend:
  description: The backend used (V(auto) resolved).
  returned: always
  type: str
  sample: nft
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import RULESET_ARGS, RulesetModule
from ansible_collections.euca.cloud.plugins.module_utils.net.firewall import FirewallResource


class FirewallModule(RulesetModule):
    argument_spec = dict(
        RULESET_ARGS,
        config=dict(type="list", elements="dict", options=dict(
            name=dict(type="str", required=True),
            subnet=dict(type="str", required=True),
            rules=dict(type="list", elements="dict", default=[], options=dict(
                protocol=dict(type="str", default="tcp"),
                from_port=dict(type="int"),
                to_port=dict(type="int"),
                cidr=dict(type="str"),
                source_group=dict(type="str"),
            )),
        )),
    )

    def resource(self):
        p = self.params
        return FirewallResource(
            backend=p["backend"], namespace=p["namespace"], generation=p["generation"],
            offline=p["state"] == "rendered",
        )


def main():
    FirewallModule()()


if __name__ == "__main__":
    main()
