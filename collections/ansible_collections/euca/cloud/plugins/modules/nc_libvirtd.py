#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: nc_libvirtd
short_description: Prepare a private libvirtd for a network namespace and return the command that runs it
version_added: 0.1.0
description:
  - Creates the private configuration, runtime, state, log and cache directories of a libvirtd that runs inside
    network namespace O(namespace) (the all-in-one sandbox, or several simulated nodes on one machine). Its
    configuration is the host's C(/etc/libvirt) without any libvirt network, with QEMU as root and no cgroups or
    security driver, and a host UUID of its own that is kept.
  - Existing directories are kept as they are, so a second run changes nothing.
  - Returns RV(command), the foreground argv a service manager runs (see roles/common's C(service) entry point), and
    RV(uri), what the node modules take as O(euca.cloud.nc_instance#module:uri).
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - ansible.builtin.action_common_attributes
attributes:
  diff_mode:
    support: none
options:
  namespace:
    description: The network namespace the daemon (and its guests' taps) live in.
    type: str
    required: true
  state_dir:
    description: Where the daemon's private directories live.
    type: path
    default: /var/lib/euca/libvirtd
  cache_dir:
    description:
      - Where the QEMU capability cache lives; the state directory's C(cache) when omitted. A cache outside it survives
        a rebuilt sandbox (the first probe takes 8-12 s under TCG).
    type: path
  listen_address:
    description: Also listen on TCP at this address, unauthenticated (live migration between simulated nodes).
    type: str
"""

EXAMPLES = r"""
- name: Prepare the sandbox's libvirtd
  euca.cloud.nc_libvirtd:
    namespace: euca-aio
  register: libvirtd

- name: Run it under the service manager
  ansible.builtin.include_role:
    name: euca.cloud.common
    tasks_from: service
  vars:
    common_service_name: euca-libvirtd
    common_service_command: "{{ libvirtd.command }}"
"""

RETURN = r"""
command:
  description: The foreground argv of the daemon.
  returned: always
  type: list
  elements: str
  sample: [ip, netns, exec, euca-aio, sh, -c, "mkdir -p /etc/libvirt && mount --bind ... && exec libvirtd --pid-file ..."]
uri:
  description: The daemon's libvirt URI.
  returned: always
  type: str
  sample: qemu+unix:///system?socket=/var/lib/euca/libvirtd/run/libvirt-sock
socket:
  description: The daemon's socket; it exists once the daemon accepts clients.
  returned: always
  type: str
  sample: /var/lib/euca/libvirtd/run/libvirt-sock
"""

import os

from ansible_collections.euca.cloud.plugins.module_utils.base import EucaModule
from ansible_collections.euca.cloud.plugins.module_utils.compute import libvirtd
from ansible_collections.euca.cloud.plugins.module_utils.process import check_namespace


class NcLibvirtdModule(EucaModule):
    argument_spec = dict(
        namespace=dict(type="str", required=True),
        state_dir=dict(type="path", default="/var/lib/euca/libvirtd"),
        cache_dir=dict(type="path"),
        listen_address=dict(type="str"),
    )

    def run(self):
        p = self.params
        check_namespace(p["namespace"])
        where = libvirtd.paths(p["state_dir"], p["cache_dir"])
        missing = [path for name, path in sorted(where.items()) if name != "pid" and not os.path.isdir(path)]
        if missing and not self.check_mode:
            libvirtd.prepare(p["state_dir"], cache_dir=p["cache_dir"], listen_address=p["listen_address"])
        return {"changed": bool(missing), "created": missing,
                "command": libvirtd.argv(p["namespace"], p["state_dir"], p["cache_dir"], listen=bool(p["listen_address"])),
                "uri": libvirtd.uri(p["state_dir"]), "socket": libvirtd.socket_path(p["state_dir"])}


def main():
    NcLibvirtdModule()()


if __name__ == "__main__":
    main()
