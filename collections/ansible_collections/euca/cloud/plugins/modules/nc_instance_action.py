#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: nc_instance_action
short_description: Imperative actions on an instance of a node controller (reboot, console output)
version_added: 0.1.0
description:
  - Verbs that have no desired state, kept apart from M(euca.cloud.nc_instance) so that module stays a pure
    state module (mixing both is what made community.libvirt's virt module hard to use idempotently).
  - V(reboot) restarts a running instance (always reports a change); V(console) returns the end of its serial
    console log (never a change).
  - Live migration between nodes is planned as a further action; it is not offered yet.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.libvirt
  - euca.cloud.libvirt.instances
  - ansible.builtin.action_common_attributes
attributes:
  diff_mode:
    support: none
options:
  action:
    description: What to do.
    type: str
    choices: [reboot, console]
    required: true
  method:
    description:
      - With O(action=reboot), V(reset) restarts the virtual machine at once, like a reset button; V(acpi) asks the
        guest to reboot itself and needs a guest that handles ACPI events.
    type: str
    choices: [reset, acpi]
    default: reset
  bytes:
    description: With O(action=console), at most this many bytes from the end of the log.
    type: int
    default: 16384
  lines:
    description: With O(action=console), only the last lines.
    type: int
  wait:
    description: With O(action=reboot), wait until libvirt reports the instance running again.
    type: bool
    default: true
  timeout:
    description: Seconds to wait with O(wait).
    type: int
    default: 60
"""

EXAMPLES = r"""
- name: Reboot an instance
  euca.cloud.nc_instance_action:
    name: i-0a1b2c3d
    action: reboot

- name: Show the last 20 console lines
  euca.cloud.nc_instance_action:
    name: i-0a1b2c3d
    action: console
    lines: 20
  register: console

- name: Print them
  ansible.builtin.debug:
    msg: "{{ console.output }}"
"""

RETURN = r"""
output:
  description: The end of the serial console log.
  returned: when O(action=console)
  type: str
  sample: "EUCA-LEASE 10.128.0.2 router=10.128.0.1\nEUCA-READY instance-id=i-0a1b2c3d up=2.12"
method:
  description: How the instance was rebooted.
  returned: when O(action=reboot)
  type: str
  sample: reset
"""

from ansible_collections.euca.cloud.plugins.module_utils.compute import instances


class NcInstanceActionModule(instances.LibvirtModule):
    argument_spec = dict(
        name=dict(type="str", required=True),
        action=dict(type="str", required=True, choices=list(instances.ACTIONS)),
        uri=dict(type="str", default="qemu:///system"),
        namespace=dict(type="str"),
        instances_dir=dict(type="path", default="/var/lib/euca/instances"),
        method=dict(type="str", default="reset", choices=["reset", "acpi"]),
        bytes=dict(type="int", default=16384),
        lines=dict(type="int"),
        wait=dict(type="bool", default=True),
        timeout=dict(type="int", default=60),
    )

    def with_connection(self, conn):
        return instances.act(conn, self.params, check_mode=self.check_mode)


def main():
    NcInstanceActionModule()()


if __name__ == "__main__":
    main()
