#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: console_output
short_description: Store an instance's captured console output in the ledger (for EC2 GetConsoleOutput)
version_added: 0.2.0
description:
  - Records the console output read on an instance's node (M(euca.cloud.nc_console_output)'s C(output_base64) and
    C(timestamp)) as that instance's latest capture in the ledger, which the EC2 API's GetConsoleOutput answers
    with at once.
  - One capture is kept per instance, the newest; storing the same bytes and time again is no change.
  - The instance must be in the ledger (a terminated one too). C(playbooks/get-console-output.yml) runs this module
    with C(console_store=true), as the EC2 API's dispatcher does for its C(console) jobs.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.ledger
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
options:
  instance:
    description: The instance id, for example V(i-0a1b2c3d).
    type: str
    required: true
  output_base64:
    description: The console's last bytes (at most 64 KiB), base64-encoded; empty when the console was never written.
    type: str
    required: true
  timestamp:
    description: When the node's console log was last written (ISO 8601, UTC); omitted or null when it never was.
    type: str
seealso:
  - module: euca.cloud.nc_console_output
"""

EXAMPLES = r"""
- name: Read the console on the instance's node
  euca.cloud.nc_console_output:
    name: i-0a1b2c3d
  register: console
  delegate_to: nc1

- name: Keep it for GetConsoleOutput
  euca.cloud.console_output:
    ledger: /var/lib/euca/clc/ledger.sqlite
    instance: i-0a1b2c3d
    output_base64: "{{ console.output_base64 }}"
    timestamp: "{{ console.timestamp }}"
"""

RETURN = r"""
console:
  description: The capture as stored after the change.
  returned: always
  type: dict
  sample:
    instance_id: i-0a1b2c3d
    account: alice
    output: RVVDQS1SRUFEWSBpbnN0YW5jZS1pZD1pLTBhMWIyYzNkIHVwPTIuMTIK
    written_at: "2026-12-01T20:21:56.123Z"
    captured_at: "2026-12-01T20:22:03.402113Z"
generation:
  description: Ledger generation after the change.
  returned: always
  type: int
  sample: 42
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import LEDGER_ARGS, LedgerModule
from ansible_collections.euca.cloud.plugins.module_utils.ledger import console


class ConsoleOutputModule(LedgerModule):
    argument_spec = dict(
        LEDGER_ARGS,
        instance=dict(type="str", required=True),
        output_base64=dict(type="str", required=True),
        timestamp=dict(type="str"),
    )

    def run(self):
        p = self.params
        return self.converge(console.store, p["instance"], p["output_base64"], written_at=p["timestamp"] or None)


def main():
    ConsoleOutputModule()()


if __name__ == "__main__":
    main()
