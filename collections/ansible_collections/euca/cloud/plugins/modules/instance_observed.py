#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: instance_observed
short_description: Record in the ledger what the node controllers report about their instances
version_added: 0.2.0
description:
  - Takes what each node controller reports (M(euca.cloud.nc_instance_info), and the launches it could not do) and
    writes the state transitions that follow into the ledger in one transaction, as Eucalyptus's cluster controller
    recorded what its NCs answered to its poll. C(playbooks/reconcile.yml) and C(playbooks/describe.yml -e
    refresh=true) use it (through C(playbooks/observe.yml)).
  - C(pending) instances whose domain runs become C(running). C(pending) or C(running) instances the node failed to
    start (O(observations[].failed)) are terminated with EC2's reason C(Server.InternalError - the node did not start
    the instance) followed by why; their private address and MAC go back to their group. A C(running) instance
    shut off by its guest or powered off becomes C(stopped) (C(Client.InstanceInitiatedShutdown),
    C(Client.UserInitiatedShutdown)); a C(stopped) one found running becomes C(running).
  - Reported, never changed. Instances whose domain is gone from a node that answered (C(gone); reconcile defines
    and starts them again from the ledger), crashed ones (C(crashed); reconcile restarts them), C(pending) ones with
    no domain yet (a launch may be under way), domains the ledger does not know (C(unknown); left alone), instances
    changed in the ledger since their node was polled (C(superseded), left as the ledger says) and nodes that did not report (C(unobserved)).
  - Idempotent; check mode is a rolled-back transaction; with C(--diff) the changed instances before and after.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.ledger
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
options:
  observations:
    description: One report per node controller that answered; a node left out is not judged.
    type: list
    elements: dict
    required: true
    suboptions:
      node:
        description: The node's name in the ledger.
        type: str
        required: true
      domains:
        description: Every instance domain the node has, as RV(euca.cloud.nc_instance_info#module:instances) returns them
          (V(name), V(state) and V(reason)).
        type: list
        elements: dict
        default: []
      failed:
        description: The launches the node tried and could not do (V(name) the instance id, V(msg) why).
        type: list
        elements: dict
        default: []
      expected:
        description:
          - The node's live instances (V(id), V(state)) as the ledger had them when the node was polled (its slice
            from M(euca.cloud.ledger_info)). An instance whose state has changed since is skipped, so a concurrent
            operation's newer intent is not overturned by an older observation. Without it, no such check.
        type: list
        elements: dict
seealso:
  - module: euca.cloud.nc_instance_info
  - module: euca.cloud.instance
"""

EXAMPLES = r"""
- name: Poll the node
  euca.cloud.nc_instance_info:
  register: euca_poll

- name: Record what it reports
  euca.cloud.instance_observed:
    ledger: /var/lib/euca/clc/ledger.sqlite
    observations:
      - node: nc1
        domains: "{{ euca_poll.instances }}"
        failed: [{name: i-0a1b2c3d, msg: "start failed: cannot allocate memory"}]
  register: euca_observed
"""

RETURN = r"""
launched:
  description: Instances that were C(pending) and run on their node, now C(running).
  returned: always
  type: list
  elements: str
  sample: [i-5c3e9a01]
started:
  description: Instances that were C(stopped) and run on their node, now C(running) (V(id), V(node)).
  returned: always
  type: list
  elements: dict
stopped:
  description: Instances that were C(running) and are shut off on their node, now C(stopped) (V(id), V(node), V(reason)).
  returned: always
  type: list
  elements: dict
terminated:
  description: Instances the node did not start, now C(terminated) (V(id), V(node), V(reason)).
  returned: always
  type: list
  elements: dict
  sample: [{id: i-5c3e9a02, node: nc1, reason: "Server.InternalError: the node did not start the instance: ..."}]
pending:
  description: C(pending) instances with no running domain yet, left pending (V(id), V(node), V(observed)).
  returned: always
  type: list
  elements: dict
gone:
  description: C(running) or C(stopped) instances with no domain on a node that answered (V(id), V(node), V(state)).
  returned: always
  type: list
  elements: dict
crashed:
  description: C(running) instances whose domain crashed or failed (V(id), V(node), V(reason)); left running.
  returned: always
  type: list
  elements: dict
unknown:
  description:
    - Domains on a node that the ledger does not place there live (V(id), V(node), V(state), V(ledger) - V(none), V(terminated) or
      the node it is placed on). Left alone.
  returned: always
  type: list
  elements: dict
  sample: [{id: i-0f00ba12, node: nc1, state: running, ledger: none}]
superseded:
  description: Instances changed in the ledger since their node was polled (V(id), V(node), V(state), V(observed), V(why)).
  returned: always
  type: list
  elements: dict
unobserved:
  description: Nodes with live instances in the ledger that sent no observation.
  returned: always
  type: list
  elements: str
msg:
  description: What was recorded and what is only reported, in one line.
  returned: always
  type: str
generation:
  description: Ledger generation after the change.
  returned: always
  type: int
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import LEDGER_ARGS, LedgerModule
from ansible_collections.euca.cloud.plugins.module_utils.ledger import instances


class InstanceObservedModule(LedgerModule):
    argument_spec = dict(
        LEDGER_ARGS,
        observations=dict(type="list", elements="dict", required=True, options=dict(
            node=dict(type="str", required=True),
            domains=dict(type="list", elements="dict", default=[]),
            failed=dict(type="list", elements="dict", default=[]),
            expected=dict(type="list", elements="dict"),
        )),
    )

    def run(self):
        outcome = self.converge(instances.record_observations, self.params["observations"])
        if "diff" in outcome:
            # Ansible renders a dict diff, not a list one: key the instances by id.
            outcome["diff"] = dict((side, dict((i["id"], i) for i in outcome["diff"][side])) for side in ("before", "after"))
        warnings = []
        if outcome["terminated"]:
            warnings.append("terminated, the node did not start them: %s" % "; ".join(
                "%s on %s (%s)" % (t["id"], t["node"], t["reason"]) for t in outcome["terminated"]))
        if outcome["unknown"]:
            warnings.append("domains the ledger does not know, left alone: %s" % ", ".join(
                "%s on %s (ledger: %s)" % (u["id"], u["node"], u["ledger"]) for u in outcome["unknown"]))
        if warnings:
            outcome["warnings"] = warnings
        return outcome


def main():
    InstanceObservedModule()()


if __name__ == "__main__":
    main()
