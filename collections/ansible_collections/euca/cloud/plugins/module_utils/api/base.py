# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The EC2 API's action registry and the context every action runs in.

An action is ``handler(ctx, params) -> dict``: ``params`` is a ``query.Params`` of the request,
the returned dict is the response body under ``<ActionResponse>`` (``query.render_response``).
It acts as ``ctx.account`` only (the admin account sees all), changes the ledger in one
``ctx.write()`` transaction and, where hosts must converge the change, queues a job for the
dispatcher in that same transaction (``ctx.enqueue``), then answers at once with EC2's
transitional states. Refusals are ``errors.ApiError`` (or the ledger's EucaError, which the
server maps with ``errors.from_euca``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import functools

ACTIONS = {}
#: action name -> the service it belongs to, for the actions of services other than EC2
SERVICES = {}
#: the XML namespace of each AWS Query-protocol service this endpoint also answers for
QUERY_NAMESPACES = {"sts": "https://sts.amazonaws.com/doc/2011-06-15/"}


def action(name, service="ec2"):
    """Register ``handler`` as the action ``name`` (e.g. ``DescribeInstances``) of ``service``:
    ``ec2`` (EC2's protocol) or one of ``QUERY_NAMESPACES`` (the AWS Query protocol, e.g. STS)."""
    if service != "ec2" and service not in QUERY_NAMESPACES:
        raise ValueError("unknown service %r" % service)

    def register(handler):
        if name in ACTIONS:
            raise ValueError("action %s registered twice" % name)
        ACTIONS[name] = handler
        if service != "ec2":
            SERVICES[name] = service
        return handler
    return register


class Context:
    """One request: the ledger, the authenticated account, the request id, the service settings.

    ``settings`` keys: ``region`` (the region name), ``endpoint`` (this service's URL), and what
    the server's configuration file gives.
    """

    def __init__(self, ledger, account, admin, request_id, settings=None):
        self.ledger = ledger
        self.account = account
        self.admin = admin
        self.request_id = request_id
        self.settings = settings or {}

    def read(self):
        return self.ledger.read()

    def write(self):
        return self.ledger.write()

    def enqueue(self, txn, kind, cluster, resources, params=None):
        """Queue a dispatcher job in ``txn`` (ledger/jobs.py enqueue) as this request's account."""
        from ansible_collections.euca.cloud.plugins.module_utils.ledger import jobs
        return jobs.enqueue(txn, kind, cluster, list(resources), self.account, params or {})


@functools.lru_cache(maxsize=65536)
def derived_id(prefix, *parts):
    """A stable EC2-style id (``vpc-``, ``subnet-``, ``eni-``...) of what the ledger names by ``parts``:
    ``prefix-`` and the first 17 hex digits of the SHA-256 of the parts, NUL-separated."""
    import hashlib
    return prefix + "-" + hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:17]


@functools.lru_cache(maxsize=65536)
def group_id(key):
    """EC2's ``sg-`` id of the security group whose ledger key is ``key`` (ledger/accounts.py group_key).

    The ledger names groups (EC2-Classic's GroupName); the id is derived from the key, so it is stable
    across requests and servers and needs no column: ``sg-`` and the first 17 hex digits of its SHA-256.
    """
    import hashlib
    return "sg-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:17]
