# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""EC2-style identifiers (``i-1a2b3c4d``): random, checked free under the write lock.

Their formats, and the rules for names, are the model's (model/names.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import random

from ansible_collections.euca.cloud.plugins.module_utils.model import names

_RANDOM = random.SystemRandom()


def new_id(txn, kind):
    """A fresh id of ``kind``; the table's primary key is the final guard against reuse."""
    table = names.ID_KINDS[kind][1]
    while True:
        candidate = names.format_id(kind, _RANDOM.getrandbits(32))
        if table is None or txn.row("SELECT id FROM %s WHERE id = ?" % table, candidate) is None:
            return candidate
