#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: nc_console_output
short_description: An instance's console output on its node controller (EC2 GetConsoleOutput)
version_added: 0.2.0
description:
  - Returns the end of the serial console log that QEMU appends for an instance of this node (see
    M(euca.cloud.nc_instance)), as EC2's GetConsoleOutput does; at most the last 64 KiB, as text and base64.
  - The log is the one the instance's libvirt domain writes to, kept across reboots and restarts; an instance
    that was defined but never started has an empty output and no O(ignore:timestamp).
  - An instance that is not defined on this node fails with C(InvalidInstanceID.NotFound).
  - Reads only; it runs the same in check mode. C(playbooks/get-console-output.yml) finds the instance's node in
    the ledger and runs this module there.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.libvirt
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module only reads, so it runs the same in check mode.
  diff_mode:
    support: N/A
    details: The module only reads.
options:
  instances_dir:
    description:
      - Where the instances' directories are (see M(euca.cloud.nc_instance)); used only when the domain names no
        console log file.
    type: path
    default: /var/lib/euca/instances
  max_bytes:
    description: At most this many bytes from the end of the log, 1 to 65536 (EC2's limit, the default).
    type: int
    default: 65536
seealso:
  - module: euca.cloud.nc_instance
  - module: euca.cloud.nc_instance_action
"""

EXAMPLES = r"""
- name: Get the console output of an instance
  euca.cloud.nc_console_output:
    name: i-0a1b2c3d
    uri: qemu+unix:///system?socket=/var/lib/euca/libvirtd/run/libvirt-sock
  register: console

- name: Show it
  ansible.builtin.debug:
    msg: "{{ console.output }}"
"""

RETURN = r"""
instance_id:
  description: The instance id.
  returned: always
  type: str
  sample: i-0a1b2c3d
output:
  description:
    - The last O(max_bytes) bytes of the console log, decoded as UTF-8 (bytes that are not become U+FFFD).
    - Empty when the instance has not written to its console yet.
  returned: always
  type: str
  sample: "Linux version 6.1.0-28-amd64 ...\nEUCA-READY instance-id=i-0a1b2c3d up=2.12\n"
output_base64:
  description: The same bytes, base64-encoded, as EC2's GetConsoleOutput returns them.
  returned: always
  type: str
  sample: RVVDQS1SRUFEWSBpbnN0YW5jZS1pZD1pLTBhMWIyYzNkIHVwPTIuMTIK
timestamp:
  description: When the log was last written (its modification time), ISO 8601 in UTC; null when there is no log.
  returned: always
  type: str
  sample: "2026-12-01T20:21:56.123Z"
console_log:
  description: The log file read.
  returned: always
  type: str
  sample: /var/lib/euca/instances/i-0a1b2c3d/console.log
log_bytes:
  description: The whole log's size in bytes.
  returned: always
  type: int
  sample: 18234
truncated:
  description: Whether the log is longer than what is returned.
  returned: always
  type: bool
  sample: false
"""

from ansible_collections.euca.cloud.plugins.module_utils.compute import console, instances


class NcConsoleOutputModule(instances.LibvirtModule):
    argument_spec = dict(
        name=dict(type="str", required=True),
        uri=dict(type="str", default="qemu:///system"),
        instances_dir=dict(type="path", default="/var/lib/euca/instances"),
        max_bytes=dict(type="int", default=console.MAX_BYTES),
    )

    def with_connection(self, conn):
        return console.console_output(conn, self.params)


def main():
    NcConsoleOutputModule()()


if __name__ == "__main__":
    main()
