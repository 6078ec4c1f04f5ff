#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: nc_instance_info
short_description: What a node controller reports about its instances (every instance domain libvirt has)
version_added: 0.2.0
description:
  - Lists every libvirt domain on this node whose name is an instance id (V(i-) and 8 hex digits), with its state and,
    for a shut-off one, why libvirt shut it off. Other domains are not the cloud's and are not listed.
  - This is the node's report to its cluster, as Eucalyptus's NC answered the CC's poll; M(euca.cloud.instance_observed)
    records it in the ledger (C(playbooks/observe.yml)). Domains the ledger does not know are reported there, never
    removed by this module.
  - Reads only; it runs the same in check mode.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module only reads, so it runs the same in check mode.
  diff_mode:
    support: N/A
    details: The module only reads.
options:
  uri:
    description:
      - The libvirt URI of the node's hypervisor (see M(euca.cloud.nc_instance)).
    type: str
    default: qemu:///system
requirements:
  - libvirt-python on the managed node
seealso:
  - module: euca.cloud.nc_instance
  - module: euca.cloud.instance_observed
"""

EXAMPLES = r"""
- name: What does this node run?
  euca.cloud.nc_instance_info:
    uri: qemu+unix:///system?socket=/var/lib/euca/libvirtd/run/libvirt-sock
  register: euca_poll
"""

RETURN = r"""
instances:
  description: The node's instance domains, by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The instance id (the domain's name).
      type: str
    uuid:
      description: The domain's UUID.
      type: str
    state:
      description: V(running), V(stopping) (an ACPI shutdown in progress) or V(stopped) (defined, shut off).
      type: str
    reason:
      description:
        - Why a stopped domain is shut off, as libvirt says; V(shutdown) (by the guest or an ACPI request),
          V(destroyed) (powered off), V(crashed), V(failed) (QEMU did not start), V(saved), V(unknown) ...
        - Empty for a domain that is not shut off.
      type: str
  sample:
    - {name: i-0a1b2c3d, uuid: 6f1c0a52-3a43-4b8e-a1b9-0d2cfe7d1a10, state: running, reason: ""}
    - {name: i-0a1b2c3e, uuid: 0d2cfe7d-3a43-4b8e-a1b9-6f1c0a521a10, state: stopped, reason: shutdown}
"""

from ansible_collections.euca.cloud.plugins.module_utils.compute import instances


class NcInstanceInfoModule(instances.LibvirtModule):
    argument_spec = dict(
        uri=dict(type="str", default="qemu:///system"),
    )

    def with_connection(self, conn):
        return {"changed": False, "instances": instances.observe(conn)}


def main():
    NcInstanceInfoModule()()


if __name__ == "__main__":
    main()
