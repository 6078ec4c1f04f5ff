# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The EC2 Query API as a WSGI application (gunicorn runs it on the clc host: roles/api).

One request: read the body (refused past ``max_body_bytes``), parse the form (api/query.py),
authenticate it (SigV4 or SigV2, api/auth.py) against the access keys in the ledger, run the action
as the key's account (api/base.py registry), answer EC2's XML with a request id -- or EC2's error
XML. Every answer is logged as one line (action, account, status, milliseconds).

Configuration: the JSON file named by ``EUCA_API_CONFIG`` (default /etc/euca/api.json) with
``ledger`` (SQLite path or PostgreSQL URL), ``region``, ``endpoint``, ``max_body_bytes``,
``clock_skew`` (seconds), ``admin_access`` (whether the admin account's keys may call the API),
``walrus_url`` (the URL Walrus serves its store under, as the walrus host's ``euca_walrus_url``:
RegisterImage reads the stored object's size and checksum there) and ``walrus_timeout`` (seconds).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import sys
import threading
import time
import traceback
from urllib.parse import quote

from ansible_collections.euca.cloud.plugins.module_utils.api import auth, base, query
from ansible_collections.euca.cloud.plugins.module_utils.api.errors import ApiError, from_euca
from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError
from ansible_collections.euca.cloud.plugins.module_utils.ledger import access_keys, accounts, db

# The actions register themselves on import.
from ansible_collections.euca.cloud.plugins.module_utils.api import actions_instances  # noqa: F401 pylint: disable=unused-import
from ansible_collections.euca.cloud.plugins.module_utils.api import actions_images  # noqa: F401 pylint: disable=unused-import
from ansible_collections.euca.cloud.plugins.module_utils.api import actions_groups  # noqa: F401 pylint: disable=unused-import
from ansible_collections.euca.cloud.plugins.module_utils.api import actions_addresses  # noqa: F401 pylint: disable=unused-import
from ansible_collections.euca.cloud.plugins.module_utils.api import actions_volumes  # noqa: F401 pylint: disable=unused-import
from ansible_collections.euca.cloud.plugins.module_utils.api import actions_keys  # noqa: F401 pylint: disable=unused-import
from ansible_collections.euca.cloud.plugins.module_utils.api import actions_tags  # noqa: F401 pylint: disable=unused-import
from ansible_collections.euca.cloud.plugins.module_utils.api import actions_vpc  # noqa: F401 pylint: disable=unused-import
from ansible_collections.euca.cloud.plugins.module_utils.api import actions_sts  # noqa: F401 pylint: disable=unused-import
from ansible_collections.euca.cloud.plugins.module_utils.api import actions_console  # noqa: F401 pylint: disable=unused-import

DEFAULTS = {"region": "euca", "endpoint": "", "max_body_bytes": 1 << 20, "clock_skew": 900, "admin_access": True,
            "ledger_timeout": 30.0, "walrus_url": "", "walrus_timeout": 5.0}
XML = "text/xml;charset=UTF-8"
#: the services a SigV4 credential may be scoped to here: EC2, and STS's GetCallerIdentity (api/actions_sts.py)
SIGNED_SERVICES = ("ec2", "sts")


def load_config(path=None):
    path = path or os.environ.get("EUCA_API_CONFIG", "/etc/euca/api.json")
    with open(path) as handle:
        config = dict(DEFAULTS)
        config.update(json.load(handle))
    if not config.get("ledger"):
        raise ValueError("%s names no ledger" % path)
    return config


def _raw_path(environ):
    """The path as the client sent (and signed) it: gunicorn's RAW_URI; PATH_INFO is percent-decoded."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return raw.split("?", 1)[0] or "/"
    return quote(environ.get("PATH_INFO", "/") or "/", safe="/~")


class Api:
    """The application: one ledger connection per thread (a db.Ledger holds one connection)."""

    def __init__(self, config):
        self.config = config
        self._local = threading.local()

    def ledger(self):
        handle = getattr(self._local, "ledger", None)
        if handle is None:
            handle = db.Ledger(self.config["ledger"], timeout=float(self.config["ledger_timeout"]))
            self._local.ledger = handle
        return handle

    def drop_ledger(self):
        handle = getattr(self._local, "ledger", None)
        self._local.ledger = None
        if handle is not None:
            try:
                handle.close()
            except Exception:  # pylint: disable=broad-except
                pass

    def _body(self, environ):
        limit = int(self.config["max_body_bytes"])
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise ApiError("InvalidParameterValue", "Content-Length is not a number")
        if length > limit:
            raise ApiError("RequestEntityTooLarge", "The request body is %d bytes; this service takes at most %d"
                           % (length, limit), status=413)
        body = environ["wsgi.input"].read(length) if length else b""
        return body

    def _lookup(self, ledger):
        def lookup(key_id):
            with ledger.read() as txn:
                found = access_keys.lookup(txn, key_id)
            if found is None:
                return None
            self._local.key_account = found[0]
            return found[1]
        return lookup

    def handle(self, environ):
        """(status, body bytes, action, account) of one request."""
        request_id = query.new_request_id()
        action, account = "-", "-"
        try:
            body = self._body(environ)
            params_flat = query.parse_request(environ.get("REQUEST_METHOD", "GET"), environ.get("QUERY_STRING", ""),
                                              body, environ.get("CONTENT_TYPE", ""))
            headers = dict((k[5:].replace("_", "-").lower(), v) for k, v in environ.items() if k.startswith("HTTP_"))
            if environ.get("CONTENT_TYPE"):
                headers["content-type"] = environ["CONTENT_TYPE"]
            if environ.get("CONTENT_LENGTH"):
                headers["content-length"] = environ["CONTENT_LENGTH"]
            ledger = self.ledger()
            self._local.key_account = None
            auth.verify(environ.get("REQUEST_METHOD", "GET"), _raw_path(environ),
                        environ.get("QUERY_STRING", ""), headers, body, params_flat, self._lookup(ledger),
                        max_skew=int(self.config["clock_skew"]), service=SIGNED_SERVICES)
            account = self._local.key_account
            params = query.Params(params_flat)
            action = params.get("Action") or "-"
            if action == "-":
                raise ApiError("MissingAction", "The request must contain the parameter Action")
            handler = base.ACTIONS.get(action)
            if handler is None:
                raise ApiError("InvalidAction", "The action %s is not valid for this web service." % action)
            params.get("Version", required=True)
            with ledger.read() as txn:
                admin = accounts.is_admin(txn, account)
            if admin and not self.config.get("admin_access", True):
                raise ApiError("AuthFailure", "the admin account's keys may not use this API here", status=401)
            ctx = base.Context(ledger, account, admin, request_id, self.config)
            result = handler(ctx, params)
            service = base.SERVICES.get(action)
            if service is not None:
                body = query.render_query_response(action, request_id, result, base.QUERY_NAMESPACES[service])
            else:
                body = query.render_response(action, request_id, result)
            return "200 OK", body, action, account
        except ApiError as exc:
            return ("%d %s" % (exc.status, "Error"), query.render_error(exc.code, exc.message, request_id), action,
                    account or "-")
        except EucaError as exc:
            mapped = from_euca(exc)
            if mapped.status >= 500:
                self.drop_ledger()
            return ("%d Error" % mapped.status, query.render_error(mapped.code, mapped.message, request_id), action,
                    account or "-")
        except Exception:  # pylint: disable=broad-except
            traceback.print_exc(file=sys.stderr)
            self.drop_ledger()  # a broken connection is not reused
            return ("500 Error", query.render_error("InternalError", "An internal error has occurred", request_id),
                    action, account or "-")

    def __call__(self, environ, start_response):
        started = time.monotonic()
        status, body, action, account = self.handle(environ)
        start_response(status, [("Content-Type", XML), ("Content-Length", str(len(body)))])
        elapsed = (time.monotonic() - started) * 1000
        sys.stderr.write("euca-api %s %s %s %.1fms\n" % (action, account, status.split(" ", 1)[0], elapsed))
        return [body]


_APP = None
_APP_LOCK = threading.Lock()


def application(environ, start_response):
    """The WSGI entry point (``gunicorn ...module_utils.api.server:application``)."""
    global _APP  # pylint: disable=global-statement
    if _APP is None:
        with _APP_LOCK:
            if _APP is None:
                _APP = Api(load_config())
    return _APP(environ, start_response)
