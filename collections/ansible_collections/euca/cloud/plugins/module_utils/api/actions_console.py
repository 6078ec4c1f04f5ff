# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""EC2's GetConsoleOutput.

The console is on the instance's node, which only Ansible reaches, so the answer is what the ledger
holds (ledger/console.py: the latest capture), at once, and the request queues a ``console`` job
(at most one queued per instance) whose run, playbooks/get-console-output.yml with
``console_store``, reads the node's log and stores it: the next call returns it. Before the first
capture the output is empty and the timestamp the request's time, as EC2 answers before an
instance's first console capture; a terminated instance's last capture is still answered.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.euca.cloud.plugins.module_utils.api.actions_tags import iso_time
from ansible_collections.euca.cloud.plugins.module_utils.api.base import action
from ansible_collections.euca.cloud.plugins.module_utils.api.errors import ApiError
from ansible_collections.euca.cloud.plugins.module_utils.ledger import accounts, console, jobs
from ansible_collections.euca.cloud.plugins.module_utils.model import names

#: the job kind whose run captures consoles (ledger/jobs.py PLAYBOOKS)
KIND = "console"


def check_instance_id(value):
    """An i- id; EC2's InvalidInstanceID.Malformed otherwise."""
    if not names.looks_like("instance", value):
        raise ApiError("InvalidInstanceID.Malformed", "Invalid id: %r (expecting %s)"
                       % (value, names.format_id("instance", 0x1a2b3c4d)))
    return value


@action("GetConsoleOutput")
def get_console_output(ctx, params):
    instance_id = check_instance_id(params.get("InstanceId", required=True))
    params.bool("Latest")  # accepted: the answer is always the log's last 64 KiB as last captured
    asked = datetime.datetime.now(datetime.timezone.utc)
    with ctx.write() as txn:
        row = txn.row("SELECT id, account, cluster, state FROM instances WHERE id = ?", instance_id)
        if row is None or not accounts.sees(txn, ctx.account, row["account"]):
            raise ApiError("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist" % instance_id)
        stored = console.latest(txn, instance_id)
        # a terminated instance has no console left to read: its last capture (if any) is the answer
        if row["state"] != "terminated" and jobs.queued_for(txn, KIND, instance_id) is None:
            ctx.enqueue(txn, KIND, row["cluster"], [instance_id])
    if stored is None:
        return {"instanceId": instance_id, "timestamp": asked, "output": ""}
    return {"instanceId": instance_id, "timestamp": iso_time(stored["written_at"] or stored["captured_at"]),
            "output": stored["output"]}
