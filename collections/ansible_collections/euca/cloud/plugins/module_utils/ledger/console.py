# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The latest captured console output of each instance (ledger table ``console_output``, schema 5).

The console lives on the instance's node, which only Ansible reaches: the EC2 API's GetConsoleOutput
answers with what is stored here and queues a ``console`` job; that job's run
(playbooks/get-console-output.yml with ``console_store``) reads the node's log with
euca.cloud.nc_console_output and writes it here with euca.cloud.console_output (``store``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import re

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger.schema import now
from ansible_collections.euca.cloud.plugins.module_utils.model import names

#: EC2's limit on GetConsoleOutput: the last 64 KiB
MAX_BYTES = 65536
_TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$")
VIEW = ("instance_id", "account", "output", "written_at", "captured_at")


def _view(row):
    return dict((k, row[k]) for k in VIEW) if row else {}


def latest(txn, instance_id):
    """The stored capture of ``instance_id``: ``{instance_id, account, output (base64), written_at,
    captured_at}``, or None when none was captured yet."""
    row = txn.row("SELECT * FROM console_output WHERE instance_id = ?", instance_id)
    return _view(row) if row else None


def store(txn, instance_id, output_base64, written_at=None):
    """Record ``output_base64`` (the console's last bytes, base64) as ``instance_id``'s newest capture.

    ``written_at`` is when the node's log was last written (ISO 8601, UTC), None when it never was.
    Unchanged (no write) when the same bytes and time are stored already. The instance must be in the
    ledger (live or terminated: EC2 still answers for a terminated instance a while).
    """
    if not isinstance(instance_id, str) or not names.id_pattern("instance").match(instance_id):
        raise InvalidInput("instance %r is not an instance id (i-...)" % (instance_id,))
    if not isinstance(output_base64, str):
        raise InvalidInput("output_base64 must be a string of base64")
    try:
        raw = base64.b64decode(output_base64.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidInput("output_base64 of %s is not base64" % instance_id)
    if len(raw) > MAX_BYTES:
        raise InvalidInput("console output of %s is %d bytes; at most %d are kept (the log's end)"
                           % (instance_id, len(raw), MAX_BYTES))
    if written_at is not None and (not isinstance(written_at, str) or not _TIME_RE.match(written_at)):
        raise InvalidInput("written_at %r must be an ISO 8601 time such as 2026-12-01T20:21:56.123Z" % (written_at,))
    owner = txn.row("SELECT account FROM instances WHERE id = ?", instance_id)
    if owner is None:
        raise NotFound("instance %s is not in the ledger" % instance_id)
    encoded = base64.b64encode(raw).decode("ascii")
    found = txn.row("SELECT * FROM console_output WHERE instance_id = ?", instance_id)
    before = _view(found)
    if found is not None and found["output"] == encoded and found["written_at"] == written_at:
        return {"changed": False, "before": before, "after": before, "console": before}
    after = {"instance_id": instance_id, "account": owner["account"], "output": encoded, "written_at": written_at,
             "captured_at": now()}
    txn.exec(
        "INSERT INTO console_output (instance_id, account, output, written_at, captured_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (instance_id) DO UPDATE SET account = excluded.account, output = excluded.output, "
        "written_at = excluded.written_at, captured_at = excluded.captured_at",
        instance_id, after["account"], encoded, written_at, after["captured_at"],
    )
    return {"changed": True, "before": before, "after": after, "console": after}
