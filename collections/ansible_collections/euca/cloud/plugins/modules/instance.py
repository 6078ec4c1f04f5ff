#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: instance
short_description: Reserve, place, stop, start and terminate instances in the cloud's ledger
version_added: 0.1.0
description:
  - With O(state=present), keeps at least O(count) (or exactly O(exact_count)) live instances labelled O(name). New
    instances get EC2-style ids, are placed onto enabled node controllers by capacity, get a private address and
    MAC from their security group's subnet, and are recorded as C(pending) in one transaction (all or nothing).
  - With O(exact_count), extra instances are terminated, newest first.
  - With O(state=running), O(state=stopped) or O(state=terminated) (O(state=absent) is the same as V(terminated)),
    records that state for the instances in O(instance_ids), or for all live instances labelled O(name).
  - This module only changes the ledger; the cluster and node controllers converge to it afterwards (see the
    C(run-instances) playbook). Terminating an instance frees its private address, disassociates its elastic IP
    and detaches its volumes.
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
    description:
      - Label of the instances (like an EC2 C(Name) tag); re-running with the same name asks for nothing new.
      - Required with O(state=present).
    type: str
  state:
    description:
      - V(present) keeps O(count) or O(exact_count) live instances labelled O(name), launching new ones as C(pending).
      - V(running), V(stopped) and V(terminated) move the selected instances to that state; V(absent) means
        V(terminated). Terminated instances stay in the ledger as history.
    type: str
    choices: [present, running, stopped, terminated, absent]
    default: present
  instance_ids:
    description: Instances (C(i-) ids) to move to O(state); when omitted, all live instances labelled O(name).
    type: list
    elements: str
  group:
    description: Security group new instances join (must exist, see M(euca.cloud.security_group)).
    type: str
  image:
    description: Machine image (name or C(emi-) id) new instances boot (see M(euca.cloud.image)).
    type: str
  instance_type:
    description: VM type of new instances, one of the cloud's C(vm_types) (see M(euca.cloud.cloud)).
    type: str
    default: m1.small
  cluster:
    description: Cluster to place new instances in; any cluster with room when omitted.
    type: str
  count:
    description: Minimum number of live instances labelled O(name); missing ones are launched, none are terminated.
    type: int
  exact_count:
    description: Exact number of live instances labelled O(name); missing ones are launched, the newest extra ones
      are terminated.
    type: int
  placement_policy:
    description: Placement policy for this launch instead of the cloud's C(scheduler).
    type: str
    choices: [GREEDY, ROUNDROBIN, POWERSAVE]
  reason:
    description: Why the state changes, recorded with each changed instance (like EC2's state reason).
    type: str
  key_name:
    description:
      - The account's key pair (M(euca.cloud.keypair)) whose public key new instances get, through their NoCloud seed
        and the metadata service (C(public-keys/0/openssh-key)). The instance keeps the key it was launched with.
      - An unknown key pair fails with C(InvalidKeyPair.NotFound) and changes nothing.
    type: str
  user_data:
    description:
      - User data of new instances (cloud-init reads it from the seed and from the metadata service's
        C(latest/user-data)), at most 16384 bytes as in EC2. Kept in the ledger with each instance.
    type: str
seealso:
  - module: euca.cloud.keypair
  - module: euca.cloud.address
  - module: euca.cloud.volume_attachment
"""

EXAMPLES = r"""
- name: Three web servers in cluster_a
  euca.cloud.instance:
    name: web
    group: web
    image: debian-12
    instance_type: m1.small
    cluster: cluster_a
    exact_count: 3
  register: web

- name: Record that they are running (after the node controllers started them)
  euca.cloud.instance:
    instance_ids: "{{ web.instances | map(attribute='id') | list }}"
    state: running

- name: Stop one instance
  euca.cloud.instance:
    instance_ids: [i-1a2b3c4d]
    state: stopped
    reason: maintenance

- name: Terminate all web servers
  euca.cloud.instance:
    name: web
    state: terminated
"""

RETURN = r"""
instances:
  description: The instances concerned after the change, oldest first (with O(state=present), the live ones labelled
    O(name)).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Instance id.
      type: str
    name:
      description: Label of the instance.
      type: str
    reservation_id:
      description: Reservation (one per launch) the instance came from.
      type: str
    launch_index:
      description: Position of the instance in its reservation.
      type: int
    group:
      description: Security group of the instance.
      type: str
    image_id:
      description: Machine image the instance boots.
      type: str
    instance_type:
      description: VM type of the instance.
      type: str
    cluster:
      description: Cluster the instance is placed in.
      type: str
    node:
      description: Node controller the instance is placed on.
      type: str
    cores:
      description: Cores the instance holds on its node.
      type: int
    memory_mb:
      description: Memory in MiB the instance holds on its node.
      type: int
    disk_gb:
      description: Disk in GiB the instance holds on its node.
      type: int
    private_ip:
      description: Private address in the group's subnet.
      type: str
    mac:
      description: MAC address derived from the private address.
      type: str
    state:
      description: One of C(pending), C(running), C(stopped), C(terminated).
      type: str
    reason:
      description: Why the instance last changed state.
      type: str
    account:
      description: The account that owns the instance.
      type: str
    key_name:
      description: The key pair the instance was launched with, null for none.
      type: str
  sample:
    - id: i-5c3e9a01
      name: web
      reservation_id: r-0b7e2d44
      launch_index: 0
      group: web
      image_id: emi-3f2a9c10
      instance_type: m1.small
      cluster: cluster_a
      node: nc1
      cores: 1
      memory_mb: 128
      disk_gb: 2
      private_ip: 172.19.0.2
      mac: d0:0d:ac:13:00:02
      state: pending
      reason: ""
      account: admin
      key_name: ops
launched:
  description: Ids of the instances this run launched.
  returned: always
  type: list
  elements: str
  sample: [i-5c3e9a01]
terminated:
  description: Ids of the instances this run terminated.
  returned: always
  type: list
  elements: str
  sample: []
generation:
  description: Ledger generation after the change.
  returned: always
  type: int
  sample: 42
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import ACCOUNT_ARGS, LEDGER_ARGS, LedgerModule
from ansible_collections.euca.cloud.plugins.module_utils.ledger import instances


class InstanceModule(LedgerModule):
    argument_spec = dict(
        LEDGER_ARGS,
        account=dict(ACCOUNT_ARGS["account"]),
        name=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "running", "stopped", "terminated", "absent"]),
        instance_ids=dict(type="list", elements="str"),
        group=dict(type="str"),
        image=dict(type="str"),
        instance_type=dict(type="str", default="m1.small"),
        cluster=dict(type="str"),
        count=dict(type="int"),
        exact_count=dict(type="int"),
        placement_policy=dict(type="str", choices=["GREEDY", "ROUNDROBIN", "POWERSAVE"]),
        reason=dict(type="str"),
        key_name=dict(type="str", no_log=False),
        user_data=dict(type="str"),
    )
    module_kwargs = dict(
        mutually_exclusive=[["count", "exact_count"]],
        required_if=[
            ["state", "present", ["name"]],
            ["state", "present", ["count", "exact_count"], True],
            ["state", "running", ["instance_ids", "name"], True],
            ["state", "stopped", ["instance_ids", "name"], True],
            ["state", "terminated", ["instance_ids", "name"], True],
            ["state", "absent", ["instance_ids", "name"], True],
        ],
    )

    def run(self):
        p = self.params
        outcome = self.converge(
            instances.ensure_instances, name=p["name"], state=p["state"], instance_ids=p["instance_ids"],
            group=p["group"], image=p["image"], instance_type=p["instance_type"], cluster=p["cluster"],
            count=p["count"], exact_count=p["exact_count"], policy=p["placement_policy"], reason=p["reason"],
            key_name=p["key_name"], user_data=p["user_data"],
            account=p["account"],
        )
        if "diff" in outcome:
            # Ansible renders a dict diff, not a list one: key the instances by id.
            outcome["diff"] = dict((side, dict((i["id"], i) for i in outcome["diff"][side])) for side in ("before", "after"))
        return outcome


def main():
    InstanceModule()()


if __name__ == "__main__":
    main()
