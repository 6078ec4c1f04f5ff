# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors that carry an operator-facing message.

Every failure a module reports goes through one of these, so the message names the object
and the fix and the module turns it into ``fail_json(msg=...)`` unchanged.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class EucaError(Exception):
    """A failure the operator can act on; ``details`` are returned beside ``msg``."""

    def __init__(self, msg, **details):
        super(EucaError, self).__init__(msg)
        self.msg = msg
        self.details = details


class InvalidInput(EucaError):
    """The request itself is wrong (bad CIDR, out-of-range id, unknown name); nothing was touched."""


class NotFound(InvalidInput):
    """A named object does not exist in the ledger."""


class Conflict(EucaError):
    """The request contradicts the ledger's current state (in use, already attached, overlap)."""


class Exhausted(EucaError):
    """A pool (addresses, segments, subnets, node capacity) has nothing left to give."""


class LedgerUnavailable(EucaError):
    """The ledger could not be opened or locked in time."""
