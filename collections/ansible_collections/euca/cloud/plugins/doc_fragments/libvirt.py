# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # How the node controller modules reach libvirt and the instances' bridges.
    DOCUMENTATION = r"""
options:
  uri:
    description:
      - The libvirt URI of the node's hypervisor. A private libvirtd inside a network namespace (the all-in-one
        sandbox) is reached through its own socket, for example
        V(qemu+unix:///system?socket=/var/lib/euca/libvirtd/run/libvirt-sock).
    type: str
    default: qemu:///system
  name:
    description: The instance id (V(i-) and 8 hex digits), also the libvirt domain's name.
    type: str
    required: true
requirements:
  - libvirt-python on the managed node
"""

    # The instance modules (nc_instance, nc_instance_action) also find bridges and instance files.
    INSTANCES = r"""
options:
  namespace:
    description:
      - The network namespace libvirtd runs in, where the segment bridges and the instances' taps are. The
        host's own when omitted.
    type: str
  instances_dir:
    description: Where each instance's directory (overlay, NoCloud seed, console log) lives.
    type: path
    default: /var/lib/euca/instances
"""
