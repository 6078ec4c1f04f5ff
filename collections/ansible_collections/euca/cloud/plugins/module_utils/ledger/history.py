# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Terminated instances are history: their rows stay until what they belonged to goes.

Deleting a security group, a cluster, an account or an image deletes its terminated instances'
rows (EC2 forgets a terminated instance after a while; here it goes with its owner, so that the
name can be used again). What hangs on an instance's id without a foreign key goes with the row in
the same transaction: its console capture (``console_output``, schema 5) and its tags (``tags``,
schema 4), so that nothing is left that names an instance the ledger no longer has.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# the columns an owner is named by; nothing else reaches the SQL below
OWNERS = ("account", "cluster", "group_name", "image_id")


def delete_terminated_instances(txn, column, value):
    """Delete the terminated instances whose ``column`` (one of ``OWNERS``) is ``value``, with their
    console captures and tags; how many instances."""
    if column not in OWNERS:
        raise ValueError("terminated instances are deleted by one of %s, not %r" % (", ".join(OWNERS), column))
    chosen = "SELECT id FROM instances WHERE %s = ? AND state = 'terminated'" % column
    txn.exec("DELETE FROM console_output WHERE instance_id IN (%s)" % chosen, value)
    txn.exec("DELETE FROM tags WHERE resource_id IN (%s)" % chosen, value)
    return txn.exec("DELETE FROM instances WHERE %s = ? AND state = 'terminated'" % column, value)
