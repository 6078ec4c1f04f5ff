# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""EC2's error answers: a code the clients know (botocore raises ClientError with it), a message,
and the HTTP status EC2 uses (400 for the caller's mistakes, 401/403 for authentication, 503 when
the ledger cannot be reached in time)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.errors import (
    Conflict, EucaError, Exhausted, InvalidInput, LedgerUnavailable, NotFound)


class ApiError(Exception):
    """An EC2 error response: ``code`` (e.g. ``InvalidInstanceID.NotFound``), ``message``, HTTP ``status``."""

    def __init__(self, code, message, status=400):
        super(ApiError, self).__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message
        self.status = status


def missing(name):
    return ApiError("MissingParameter", "The request must contain the parameter %s" % name)


def invalid(message):
    return ApiError("InvalidParameterValue", message)


# EC2's codes for the quotas ledger/accounts.py check_quota enforces: its message starts with the code.
_QUOTA_CODES = ("InstanceLimitExceeded", "AddressLimitExceeded", "VolumeLimitExceeded")


def from_euca(exc, not_found=None, conflict="IncorrectState"):
    """The ApiError for a ledger refusal: ``not_found`` is the resource's NotFound code
    (``InvalidInstanceID.NotFound``, ...), ``conflict`` the code for a state conflict."""
    msg = getattr(exc, "msg", str(exc))
    for code in _QUOTA_CODES:
        if msg.startswith(code):
            return ApiError(code, msg[len(code):].lstrip(": "))
    if isinstance(exc, NotFound):
        return ApiError(not_found or "InvalidParameterValue", msg)
    if isinstance(exc, InvalidInput):
        return ApiError("InvalidParameterValue", msg)
    if isinstance(exc, Conflict):
        return ApiError(conflict, msg)
    if isinstance(exc, Exhausted):
        return ApiError("InsufficientInstanceCapacity" if "capacity" in msg or "room" in msg else "InsufficientAddressCapacity"
                        if "address" in msg else "ResourceLimitExceeded", msg)
    if isinstance(exc, LedgerUnavailable):
        return ApiError("ServiceUnavailable", msg, status=503)
    if isinstance(exc, EucaError):
        return ApiError("InternalError", msg, status=500)
    return ApiError("InternalError", "An internal error has occurred", status=500)
