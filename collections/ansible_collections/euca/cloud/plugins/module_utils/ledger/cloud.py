# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cloud settings, clusters and nodes in the ledger."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger import history, settings
from ansible_collections.euca.cloud.plugins.module_utils.ledger.schema import now
from ansible_collections.euca.cloud.plugins.module_utils.model import names

LIVE = "state <> 'terminated'"


def ensure_settings(txn, changes):
    """Merge ``changes`` (only the keys given) into the cloud settings."""
    unknown = sorted(set(changes) - set(settings.DEFAULTS))
    if unknown:
        raise InvalidInput("unknown cloud settings: %s" % ", ".join(unknown))
    before = settings.load(txn)
    after = dict(before)
    after.update(changes)
    settings.validate(after)
    settings.check_against_ledger(txn, before, after)
    changed = False
    for key, value in changes.items():
        if before.get(key) != value:
            settings.store(txn, key, value)
            changed = True
    return {
        "changed": changed,
        "before": settings.public_settings(before),
        "after": settings.public_settings(after),
        "settings": settings.public_settings(after),
    }


def get_cluster(txn, name):
    """The cluster row; NotFound naming the fix when it is not registered."""
    found = txn.row("SELECT name, created_at FROM clusters WHERE name = ?", name)
    if found is None:
        raise NotFound("unknown cluster %r: register it with euca.cloud.cluster first" % (name,))
    return found


def ensure_cluster(txn, name, state="present"):
    """Register (``present``) or remove (``absent``) a cluster."""
    names.check_name("cluster", name)
    found = txn.row("SELECT name FROM clusters WHERE name = ?", name)
    if state == "present":
        if found:
            return {"changed": False, "before": {"name": name}, "after": {"name": name}, "cluster": {"name": name}}
        txn.exec("INSERT INTO clusters (name, created_at) VALUES (?, ?)", name, now())
        return {"changed": True, "before": {}, "after": {"name": name}, "cluster": {"name": name}}
    if not found:
        return {"changed": False, "before": {}, "after": {}, "cluster": {}}
    users = []
    for table, label in (("nodes", "nodes"), ("volumes", "volumes")):
        holders = [r["n"] for r in txn.rows("SELECT %s AS n FROM %s WHERE cluster = ? ORDER BY 1" % ("name" if table == "nodes" else "id", table), name)]
        if holders:
            users.append("%s %s" % (label, ", ".join(holders[:10])))
    live = [r["id"] for r in txn.rows("SELECT id FROM instances WHERE cluster = ? AND %s ORDER BY id" % LIVE, name)]
    if live:
        users.append("instances %s" % ", ".join(live[:10]))
    if users:
        raise Conflict("cluster %s still holds %s; remove them first" % (name, "; ".join(users)))
    # Terminated instances are history only; they go with their cluster.
    history.delete_terminated_instances(txn, "cluster", name)
    txn.exec("DELETE FROM clusters WHERE name = ?", name)
    return {"changed": True, "before": {"name": name}, "after": {}, "cluster": {}}


NODE_FIELDS = ("cluster", "cores", "memory_mb", "disk_gb", "state")


def node_usage(txn, node):
    """Cores, memory and disk held by the live instances placed on ``node``."""
    found = txn.row(
        "SELECT COALESCE(SUM(cores), 0) AS cores, COALESCE(SUM(memory_mb), 0) AS memory_mb, "
        "COALESCE(SUM(disk_gb), 0) AS disk_gb, COUNT(*) AS instances FROM instances WHERE node = ? AND " + LIVE,
        node,
    )
    return dict((k, int(v)) for k, v in found.items())


def _node_view(row):
    return dict((k, row[k]) for k in ("name",) + NODE_FIELDS)


def ensure_node(txn, name, cluster=None, cores=None, memory_mb=None, disk_gb=None, state="present"):
    """Register, update, enable/disable or remove a node controller and its capacity.

    ``state`` is ``present`` (registered, keeps enabled/disabled), ``enabled``, ``disabled``
    (the scheduler skips it) or ``absent`` (refused while instances live on it).
    """
    names.check_name("node", name)
    found = txn.row("SELECT * FROM nodes WHERE name = ?", name)
    before = _node_view(found) if found else {}
    if state == "absent":
        if not found:
            return {"changed": False, "before": {}, "after": {}, "node": {}}
        live = [r["id"] for r in txn.rows("SELECT id FROM instances WHERE node = ? AND %s ORDER BY id" % LIVE, name)]
        if live:
            raise Conflict(
                "node %s still runs instances %s; terminate or evacuate them before removing the node"
                % (name, ", ".join(live[:10]))
            )
        txn.exec("UPDATE instances SET node = NULL WHERE node = ?", name)
        txn.exec("DELETE FROM nodes WHERE name = ?", name)
        return {"changed": True, "before": before, "after": {}, "node": {}}

    for field, value in (("cores", cores), ("memory_mb", memory_mb), ("disk_gb", disk_gb)):
        if value is not None and (not isinstance(value, int) or value <= 0):
            raise InvalidInput("node %s: %s must be a positive integer, not %r" % (name, field, value))
    desired = dict(before)
    desired["name"] = name
    for field, value in (("cluster", cluster), ("cores", cores), ("memory_mb", memory_mb), ("disk_gb", disk_gb)):
        if value is not None:
            desired[field] = value
    if state in ("enabled", "disabled"):
        desired["state"] = state
    desired.setdefault("state", "enabled")
    if not found:
        missing = [f for f in ("cluster", "cores", "memory_mb", "disk_gb") if desired.get(f) is None]
        if missing:
            raise InvalidInput("node %s is new: %s must be given" % (name, ", ".join(missing)))
    get_cluster(txn, desired["cluster"])
    if found and desired["cluster"] != found["cluster"]:
        live = node_usage(txn, name)["instances"]
        if live:
            raise Conflict(
                "node %s cannot move from cluster %s to %s while it runs %d instances"
                % (name, found["cluster"], desired["cluster"], live)
            )
    if found:
        usage = node_usage(txn, name)
        for field in ("cores", "memory_mb", "disk_gb"):
            if desired[field] < usage[field]:
                raise Conflict(
                    "node %s: %s cannot drop to %d, its instances use %d; move instances off it first"
                    % (name, field, desired[field], usage[field])
                )
    if desired == before:
        return {"changed": False, "before": before, "after": before, "node": before}
    if found:
        txn.exec(
            "UPDATE nodes SET cluster = ?, cores = ?, memory_mb = ?, disk_gb = ?, state = ? WHERE name = ?",
            desired["cluster"], desired["cores"], desired["memory_mb"], desired["disk_gb"], desired["state"], name,
        )
    else:
        txn.exec(
            "INSERT INTO nodes (name, cluster, cores, memory_mb, disk_gb, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            name, desired["cluster"], desired["cores"], desired["memory_mb"], desired["disk_gb"], desired["state"], now(),
        )
    return {"changed": True, "before": before, "after": desired, "node": desired}
