# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""EC2-style identifiers (``i-1a2b3c4d``): random, checked free under the write lock."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import random
import re

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput

PREFIXES = {
    "instance": ("i", "instances"),
    "reservation": ("r", None),
    "machine": ("emi", "images"),
    "kernel": ("eki", "images"),
    "ramdisk": ("eri", "images"),
    "volume": ("vol", "volumes"),
    "snapshot": ("snap", "snapshots"),
}

_RANDOM = random.SystemRandom()
ID_RE = re.compile(r"^(i|r|emi|eki|eri|vol|snap)-[0-9a-f]{8}$")


def new_id(txn, kind):
    """A fresh id of ``kind``; the table's primary key is the final guard against reuse."""
    prefix, table = PREFIXES[kind]
    while True:
        candidate = "%s-%08x" % (prefix, _RANDOM.getrandbits(32))
        if table is None or txn.row("SELECT id FROM %s WHERE id = ?" % table, candidate) is None:
            return candidate


def looks_like(kind, value):
    """True when ``value`` has the shape of an id of ``kind`` (e.g. ``vol-0a1b2c3d``)."""
    prefix = PREFIXES[kind][0]
    return isinstance(value, str) and bool(ID_RE.match(value)) and value.startswith(prefix + "-")


def check_name(what, name):
    """Names are short printable labels; reject what would break file names or ids."""
    if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$", name):
        raise InvalidInput(
            "%s name %r is not valid: use 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"
            % (what, name)
        )
    return name
