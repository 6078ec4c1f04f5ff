# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One base class for euca.cloud modules.

A module subclass declares ``argument_spec`` (and optionally ``module_kwargs``) and
implements ``run()``; ``main()`` is ``Subclass()()``. Every :class:`EucaError` becomes
``fail_json(msg=...)`` with its details, so errors reach the operator as written.

Ledger modules (:class:`LedgerModule`) converge inside one write transaction of the
ledger: gather, plan and apply happen under the ledger's write lock; in check mode the
transaction is rolled back after the result (and diff) is computed, so check mode reports
exactly what a real run would do and changes nothing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError
from ansible_collections.euca.cloud.plugins.module_utils.ledger import db
from ansible_collections.euca.cloud.plugins.module_utils.model import addressing
from ansible_collections.euca.cloud.plugins.module_utils.net import config as net_config
from ansible_collections.euca.cloud.plugins.module_utils.process import check_namespace

LEDGER_ARGS = dict(
    ledger=dict(type="str", default=db.DEFAULT_LEDGER),
    ledger_timeout=dict(type="float", default=30.0),
)
#: the account a ledger module acts as (doc fragment euca.cloud.account)
ACCOUNT_ARGS = dict(account=dict(type="str", default="admin"))


class EucaModule:
    """Base of every euca.cloud module: argument handling and error reporting."""

    argument_spec = {}
    module_kwargs = {}

    def __init__(self):
        self.ansible = AnsibleModule(
            argument_spec=copy.deepcopy(self.argument_spec), supports_check_mode=True, **self.module_kwargs
        )
        self.params = self.ansible.params
        self.check_mode = self.ansible.check_mode
        self.results = {"changed": False}

    def run(self):
        """Do the work; return the result dict (``changed`` and the module's keys)."""
        raise NotImplementedError

    def __call__(self):
        try:
            result = self.run()
        except EucaError as exc:
            details = dict(exc.details)
            details.setdefault("changed", False)
            self.ansible.fail_json(msg=exc.msg, **details)
        except Exception as exc:  # an unexpected bug: say so, with the trace for a bug report
            self.ansible.fail_json(
                msg="euca.cloud internal error: %s: %s" % (type(exc).__name__, exc), exception=traceback.format_exc()
            )
        if not (self.ansible._diff and result.get("changed")):
            result.pop("diff", None)  # a diff only with --diff, and only when something changes
        self.ansible.exit_json(**result)


class LedgerModule(EucaModule):
    """A module that converges records in the CLC's ledger."""

    argument_spec = LEDGER_ARGS

    def __init__(self):
        super(LedgerModule, self).__init__()
        if not addressing.HAS_NETADDR:
            self.ansible.fail_json(msg=addressing.NETADDR_MISSING, exception=str(addressing.NETADDR_IMPORT_ERROR))
        if db.is_postgres_url(self.params["ledger"]) and db.load_psycopg() is None:
            self.ansible.fail_json(msg=missing_required_lib("psycopg"), exception=str(db.psycopg_import_error()))

    def open_ledger(self):
        """The ledger named by the module's ``ledger`` option (migrated to the current schema).

        In check mode a SQLite ledger that does not exist yet is not created: the run is
        simulated against an empty in-memory ledger instead.
        """
        url = self.params["ledger"]
        if self.check_mode and not db.is_postgres_url(url) and not os.path.exists(db.sqlite_path(url)):
            url = ":memory:"
        return db.Ledger(url, timeout=self.params["ledger_timeout"])

    def converge(self, operation, *args, **kwargs):
        """Run ``operation(txn, ...)`` in one write transaction; roll back in check mode.

        ``operation`` returns a dict with ``changed``, ``before`` and ``after``; the result
        gets ``diff`` when ``--diff`` is on and the ledger ``generation`` after the change.
        """
        with self.open_ledger() as ledger:
            with ledger.write(dry_run=self.check_mode) as txn:
                outcome = operation(txn, *args, **kwargs)
            outcome["generation"] = txn.generation
        before = outcome.pop("before", None)
        after = outcome.pop("after", None)
        if self.ansible._diff and outcome.get("changed"):
            outcome["diff"] = {"before": before, "after": after}
        return outcome

    def read(self, operation, *args, **kwargs):
        """Run ``operation(txn, ...)`` in a read-only snapshot of the ledger."""
        with self.open_ledger() as ledger:
            with ledger.read() as txn:
                return operation(txn, *args, **kwargs)


CONFIG_ARGS = dict(
    state=dict(type="str", default="merged", choices=list(net_config.STATES)),
    namespace=dict(type="str"),
    report=dict(type="str", default="full", choices=["full", "summary"]),
)


class ConfigModule(EucaModule):
    """A whole-set configuration module (segments, DHCP, NAT, filter); see net/config.py.

    Subclasses add ``config`` (and what else they need) to ``argument_spec`` and implement
    ``resource()``; ``generation`` is passed on when the argument spec has it.
    """

    argument_spec = CONFIG_ARGS

    def resource(self):
        """The net.config.Resource this module converges."""
        raise NotImplementedError

    def run(self):
        if self.params["state"] != "rendered":
            check_namespace(self.params["namespace"])
        resource = self.converged = self.resource()
        outcome = net_config.converge(
            resource, self.params["config"], self.params["state"], check_mode=self.check_mode,
            generation=self.params.get("generation"), contain=self.params.get("on_invalid") == "skip",
        )
        for problem in outcome.get("left_out") or []:
            self.ansible.warn("left out, the rest was applied: %s" % problem["reason"])
        if self.ansible._diff and outcome["changed"]:
            # Ansible renders dict diffs, not list ones: key the items. Only the items that
            # change are shown: the others would be thousands of lines of context.
            summary = outcome["summary"]
            touched = set(summary["added"]) | set(summary["removed"]) | set(summary["modified"])
            outcome["diff"] = dict(
                (side, dict((str(item[resource.key]), item) for item in outcome[side] if item[resource.key] in touched))
                for side in ("before", "after")
            )
        if self.params["report"] == "summary":
            for bulky in ("before", "after", "commands"):
                outcome.pop(bulky, None)
        return outcome


RULESET_ARGS = dict(
    CONFIG_ARGS,
    backend=dict(type="str", default="auto", choices=["auto", "nft", "iptables"]),
    generation=dict(type="int"),
    on_invalid=dict(type="str", default="fail", choices=["fail", "skip"]),
)


class RulesetModule(ConfigModule):
    """A ConfigModule that owns a ruleset (nat, firewall): it also returns the backend used."""

    argument_spec = RULESET_ARGS

    def run(self):
        outcome = super(RulesetModule, self).run()
        outcome["backend"] = self.converged.backend
        return outcome
