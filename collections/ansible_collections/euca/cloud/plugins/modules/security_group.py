#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: security_group
short_description: Create security groups, their network segments and ingress rules in the cloud's ledger
version_added: 0.1.0
description:
  - Creates, updates or deletes a security group. As in Eucalyptus' MANAGED mode, each group owns a network
    segment; a segment id (VLAN tag or VXLAN id) from the cloud's C(segment_range) and a subnet slice of the cloud's
    C(private_network) (see M(euca.cloud.cloud)), with the slice's first host address as the segment's gateway.
  - A new group gets the lowest free segment id and subnet unless O(segment_id) or O(subnet) are given. Neither can
    change afterwards, because instances are wired to them.
  - Ingress rules allow traffic from a CIDR or from the members of another group (O(rules[].source_group)); traffic
    between groups is denied otherwise.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.ledger
  - euca.cloud.account
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
options:
  name:
    description: Name of the security group.
    type: str
    required: true
  state:
    description:
      - V(present) creates the group or updates its description and rules.
      - V(absent) deletes it; refused while live instances belong to it or other groups' rules name it as source.
    type: str
    choices: [present, absent]
    default: present
  description:
    description: Free text about the group. Defaults to the group's name for a new group.
    type: str
  rules:
    description:
      - Ingress rules of the group. When omitted, the rules are left as they are.
      - Each rule names exactly one of O(rules[].cidr) or O(rules[].source_group).
    type: list
    elements: dict
    suboptions:
      protocol:
        description:
          - IP protocol the rule allows, V(tcp), V(udp), V(icmp) or V(all) (every protocol and port); EC2's numbers
            6, 17, 1 and -1 are accepted for them.
          - Rules follow EC2's semantics, checked by the same code (C(module_utils/model/rules.py)) as the cluster
            controllers' filter (M(euca.cloud.firewall)), so a rule the filter would refuse is refused here, with the
            same message, and nothing is written.
        type: str
        default: tcp
      from_port:
        description:
          - First port of the range, 1-65535, for V(tcp) and V(udp); required for them unless O(rules[].ports) is given.
          - For V(icmp), the ICMP type (0-255, or V(-1) for every type and code, the default).
          - Must be unset or V(-1) for V(all).
        type: int
      to_port:
        description:
          - Last port of the range for V(tcp) and V(udp); defaults to O(rules[].from_port).
          - For V(icmp), the ICMP code (0-255, or V(-1) for every code, the default); a code needs a type.
        type: int
      ports:
        description:
          - The ports as text instead of O(rules[].from_port)/O(rules[].to_port), as the playbooks take them
            (C(-e ports=...)).
          - V(22) or V(8000-8080) for V(tcp) and V(udp); for V(icmp) C(TYPE) or C(TYPE:CODE), each 0-255 or -1 for
            all (V(8) is echo request with any code, V(3:4) fragmentation needed, V(-1) everything).
        type: str
      cidr:
        description: Source addresses allowed, as an IPv4 CIDR without host bits (V(0.0.0.0/0) for anywhere).
        type: str
      source_group:
        description: Security group whose members are allowed (may be this group itself).
        type: str
  purge_rules:
    description:
      - Whether rules the group has but O(rules) does not list are removed.
      - Only applies when O(rules) is given.
    type: bool
    default: true
  revoke_rules:
    description:
      - Ingress rules to remove from the group (EC2 C(RevokeSecurityGroupIngress)), in the shape of O(rules); a rule
        the group does not have is no change. Applied after O(rules).
    type: list
    elements: dict
    suboptions:
      protocol:
        description: IP protocol of the rule (as in O(rules[].protocol)).
        type: str
        default: tcp
      from_port:
        description: First port of the range (for V(icmp), the ICMP type). Required unless O(revoke_rules[].protocol=all).
        type: int
      to_port:
        description: Last port of the range (for V(icmp), the ICMP code). Defaults to O(revoke_rules[].from_port).
        type: int
      ports:
        description: The ports as text, as in O(rules[].ports).
        type: str
      cidr:
        description: Source addresses of the rule.
        type: str
      source_group:
        description: Source security group of the rule.
        type: str
  segment_id:
    description:
      - Segment id (VLAN tag or VXLAN id) for a new group, instead of the lowest free one.
      - Must lie within the cloud's C(segment_range) and, in C(vlan) mode, within 1-4094. Cannot change later.
    type: int
  subnet:
    description:
      - Subnet (IPv4 CIDR without host bits, at least a /30) for a new group, instead of the lowest free slice.
      - Must lie within the cloud's C(private_network) and overlap no other group's subnet. Cannot change later.
    type: str
seealso:
  - module: euca.cloud.cloud
  - module: euca.cloud.instance
"""

EXAMPLES = r"""
- name: A web group reachable on 80/443 from anywhere, and by ssh from the admin network
  euca.cloud.security_group:
    name: web
    description: public web servers
    rules:
      - {protocol: tcp, from_port: 80, cidr: 0.0.0.0/0}
      - {protocol: tcp, from_port: 443, cidr: 0.0.0.0/0}
      - {protocol: tcp, from_port: 22, cidr: 192.0.2.0/24}
      - {protocol: icmp, from_port: -1, to_port: -1, cidr: 0.0.0.0/0}

- name: A database group on a chosen segment, reachable from the web group only
  euca.cloud.security_group:
    name: db
    segment_id: 120
    subnet: 172.19.8.0/27
    rules:
      - {protocol: tcp, from_port: 5432, source_group: web}

- name: Add a rule and keep the ones already there
  euca.cloud.security_group:
    name: web
    rules:
      - {protocol: udp, from_port: 53, cidr: 192.0.2.0/24}
    purge_rules: false

- name: Revoke SSH from the operators' network, keep the other rules
  euca.cloud.security_group:
    name: web
    revoke_rules:
      - {protocol: tcp, from_port: 22, cidr: 198.51.100.0/24}

- name: Delete the db group (its instances must be terminated)
  euca.cloud.security_group:
    name: db
    state: absent
"""

RETURN = r"""
security_group:
  description: The group as recorded after the change (empty when deleted).
  returned: always
  type: dict
  contains:
    name:
      description: Name of the group.
      type: str
    description:
      description: Free text about the group.
      type: str
    segment_id:
      description: VLAN tag or VXLAN id of the group's segment.
      type: int
    subnet:
      description: The group's private subnet.
      type: str
    gateway:
      description: The segment's gateway address, held by the cluster controller.
      type: str
    rules:
      description: Ingress rules, sorted; C(from_port)/C(to_port) are V(-1) for protocol V(all).
      type: list
      elements: dict
  sample:
    name: web
    description: public web servers
    segment_id: 10
    subnet: 172.19.0.0/27
    gateway: 172.19.0.1
    rules:
      - {protocol: tcp, from_port: 22, to_port: 22, cidr: 192.0.2.0/24}
      - {protocol: tcp, from_port: 80, to_port: 80, cidr: 0.0.0.0/0}
generation:
  description: Ledger generation after the change.
  returned: always
  type: int
  sample: 42
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import ACCOUNT_ARGS, LEDGER_ARGS, LedgerModule
from ansible_collections.euca.cloud.plugins.module_utils.ledger import groups

RULE_SPEC = dict(
    protocol=dict(type="str", default="tcp"),
    from_port=dict(type="int"),
    to_port=dict(type="int"),
    ports=dict(type="str"),
    cidr=dict(type="str"),
    source_group=dict(type="str"),
)

#: rules and revoke_rules: lists of rules, each from a CIDR or from a group
RULES_SPEC = dict(type="list", elements="dict", options=RULE_SPEC,
                  mutually_exclusive=[["cidr", "source_group"]], required_one_of=[["cidr", "source_group"]])


class SecurityGroupModule(LedgerModule):
    argument_spec = dict(
        LEDGER_ARGS,
        account=dict(ACCOUNT_ARGS["account"]),
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        description=dict(type="str"),
        rules=dict(RULES_SPEC),
        purge_rules=dict(type="bool", default=True),
        revoke_rules=dict(RULES_SPEC),
        segment_id=dict(type="int"),
        subnet=dict(type="str"),
    )

    def run(self):
        p = self.params
        outcome = self.converge(
            groups.ensure_group, p["name"], state=p["state"], description=p["description"], rules=p["rules"],
            purge_rules=p["purge_rules"], segment_id=p["segment_id"], subnet=p["subnet"], revoke_rules=p["revoke_rules"],
            account=p["account"],
        )
        outcome["security_group"] = outcome.pop("group")
        return outcome


def main():
    SecurityGroupModule()()


if __name__ == "__main__":
    main()
