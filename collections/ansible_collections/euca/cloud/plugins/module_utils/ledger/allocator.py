# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a launch reads to place instances and give them addresses, at a cost that does not
grow with the cloud.

- Node capacity: ``node_load`` holds what the live instances on each node use, kept exact by
  triggers on ``instances`` (schema migration 2), so the candidates are one query over the
  nodes, not a sum over every instance.
- Private addresses: ``group_addresses`` keeps each group's cursor (every host from
  ``next_host`` up is free) and ``free_addresses`` the free hosts below it. The lowest free
  address is the lowest free-list entry, else the cursor: one indexed query, whatever the
  group holds. The same triggers keep both exact for every writer (terminate, a state change
  recorded by reconcile, a row written by hand). The bookkeeping is built from the group's
  instances the first time a group launches (an existing ledger after the migration) and
  rebuilt when it cannot be trusted: a missing or stale row, an address it offered that is
  taken after all, or a subnet that looks full. The unique index on live addresses stays the
  final guard: an address is never handed out twice.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import random

from ansible_collections.euca.cloud.plugins.module_utils.errors import Exhausted
from ansible_collections.euca.cloud.plugins.module_utils.ledger import scheduler
from ansible_collections.euca.cloud.plugins.module_utils.model import addressing
from ansible_collections.euca.cloud.plugins.module_utils.model import names

_RANDOM = random.SystemRandom()

# The cursor and up to ``count`` free hosts of one group, lowest first, in one round trip.
_PLAN = (
    "SELECT g.subnet, g.next_host, f.host FROM group_addresses g "
    "LEFT JOIN (SELECT group_name, host FROM free_addresses WHERE group_name = ? ORDER BY host LIMIT ?) f "
    "ON f.group_name = g.group_name WHERE g.group_name = ? ORDER BY f.host"
)
_ROWS_PER_INSERT = 200

# What a launch reads, in one round trip: the candidate nodes with their free capacity (part
# 0), the group's cursor (part 1) and its lowest free hosts (part 2).
_LAUNCH = (
    "SELECT 0 AS part, n.name AS name, n.cluster AS cluster, n.cores - COALESCE(l.cores, 0) AS a, "
    "n.memory_mb - COALESCE(l.memory_mb, 0) AS b, n.disk_gb - COALESCE(l.disk_gb, 0) AS c, "
    "COALESCE(l.instances, 0) AS d FROM nodes n LEFT JOIN node_load l ON l.node = n.name "
    "WHERE n.state = 'enabled'{cluster} "
    "UNION ALL SELECT 1, subnet, NULL, next_host, NULL, NULL, NULL FROM group_addresses WHERE group_name = ? "
    "UNION ALL SELECT 2, NULL, NULL, host, NULL, NULL, NULL FROM "
    "(SELECT host FROM free_addresses WHERE group_name = ? ORDER BY host LIMIT ?) f "
    "ORDER BY part, name, a"
)
# ... and the settings (part 3), the group's subnet (part 4) and the image (part 5): all a
# launch reads before it writes, in one round trip.
_LAUNCH_ALL = _LAUNCH.replace(
    "ORDER BY part, name, a",
    "UNION ALL SELECT 3, key, value, NULL, NULL, NULL, NULL FROM settings "
    "UNION ALL SELECT 4, subnet, NULL, NULL, NULL, NULL, NULL FROM security_groups WHERE name = ? "
    "UNION ALL SELECT 5, id, kind, NULL, NULL, NULL, NULL FROM images WHERE id = ? OR name = ? "
    "ORDER BY part, name, a",
)


def new_instance_id():
    """A random instance id in the model's format, unchecked: the launch's INSERT is the check
    (the primary key covers terminated instances too, so an id is never reused)."""
    return names.format_id("instance", _RANDOM.getrandbits(32))


def mac_for_host(host):
    """The instance MAC of an integer address (the model's d0:0d + the IPv4 address)."""
    return names.mac_for_int(host)


def candidates(txn, cluster=None):
    """Enabled nodes (of ``cluster``) with their free capacity, as scheduler.place takes them."""
    rows = txn.rows(
        "SELECT n.name, n.cluster, n.cores, n.memory_mb, n.disk_gb, COALESCE(l.cores, 0) AS used_cores, "
        "COALESCE(l.memory_mb, 0) AS used_memory_mb, COALESCE(l.disk_gb, 0) AS used_disk_gb, "
        "COALESCE(l.instances, 0) AS used_instances FROM nodes n LEFT JOIN node_load l ON l.node = n.name "
        "WHERE n.state = 'enabled'" + (" AND n.cluster = ?" if cluster else "") + " ORDER BY n.name",
        *([cluster] if cluster else [])
    )
    return [{
        "name": row["name"],
        "cluster": row["cluster"],
        "instances": int(row["used_instances"]),
        "free": dict((r, int(row[r]) - int(row["used_" + r])) for r in scheduler.RESOURCES),
    } for row in rows]


def launch_reads(txn, group, image, count, cluster=None):
    """Everything a launch reads, in one query.

    Returns ``settings`` (the stored settings, decoded: settings.load puts them over the
    defaults), ``subnet`` (the group's, None for an unknown group), ``image`` (``{id, kind}``
    of the image ``image`` names by id or name, None if none), ``nodes`` (as candidates()
    gives them) and what plan() needs of the group's bookkeeping.
    """
    rows = txn.rows(_LAUNCH_ALL.format(cluster=" AND n.cluster = ?" if cluster else ""),
                    *([cluster] if cluster else []) + [group, group, count, group, image, image])
    out = {"settings": {}, "subnet": None, "image": None, "cursor": None, "free": [], "count": count}
    out["nodes"] = [{"name": r["name"], "cluster": r["cluster"], "instances": int(r["d"]),
                     "free": {"cores": int(r["a"]), "memory_mb": int(r["b"]), "disk_gb": int(r["c"])}}
                    for r in rows if r["part"] == 0]
    for r in rows:
        if r["part"] == 1:
            out["cursor"] = (r["name"], int(r["a"]))
        elif r["part"] == 2:
            out["free"].append(int(r["a"]))
        elif r["part"] == 3:
            out["settings"][r["name"]] = json.loads(r["cluster"])
        elif r["part"] == 4:
            out["subnet"] = r["name"]
        elif r["part"] == 5 and out["image"] is None:
            out["image"] = {"id": r["name"], "kind": r["cluster"]}
    return out


def plan(txn, group, subnet, reads):
    """The lowest free hosts for the launch ``reads`` (launch_reads) was read for."""
    if reads["cursor"] is not None and reads["cursor"][0] == str(subnet):
        hosts = _hosts(subnet, reads["count"], reads["cursor"][1], reads["free"])
        if hosts is not None:
            return hosts
    return plan_hosts(txn, group, subnet, reads["count"])


def launch_plan(txn, group, subnet, count, cluster=None):
    """(candidates, hosts): the nodes as candidates() gives them and plan_hosts(count), read together."""
    rows = txn.rows(_LAUNCH.format(cluster=" AND n.cluster = ?" if cluster else ""),
                    *([cluster] if cluster else []) + [group, group, count])
    nodes = [{"name": r["name"], "cluster": r["cluster"], "instances": int(r["d"]),
              "free": {"cores": int(r["a"]), "memory_mb": int(r["b"]), "disk_gb": int(r["c"])}}
             for r in rows if r["part"] == 0]
    cursor = [r for r in rows if r["part"] == 1]
    if cursor and cursor[0]["name"] == str(subnet):
        hosts = _hosts(subnet, count, int(cursor[0]["a"]), [int(r["a"]) for r in rows if r["part"] == 2])
        if hosts is not None:
            return nodes, hosts
    return nodes, plan_hosts(txn, group, subnet, count)


def _hosts(subnet, count, next_host, free):
    """The ``count`` lowest free hosts from the cursor and the free list; None when they do not fit."""
    low, high = host_range(subnet)
    hosts = free[:count]
    while len(hosts) < count:
        hosts.append(next_host)
        next_host += 1
    return hosts if all(low <= h <= high for h in hosts) else None


def host_range(subnet):
    """(lowest, highest) instance host of a subnet as integers: not the network, gateway or broadcast."""
    return subnet.first + 2, subnet.last - 1


def rebuild(txn, group, subnet, everyone=False):
    """Recompute a group's cursor and free list from its live instances (O(group), rare).

    ``everyone``: from every live instance, whatever its group (O(cloud)): one written by
    hand into another group's subnet holds its address too (the unique index is cloud-wide).
    """
    txn.exec("DELETE FROM free_addresses WHERE group_name = ?", group)
    txn.exec("DELETE FROM group_addresses WHERE group_name = ?", group)
    low, high = host_range(subnet)
    taken = set()
    live = "SELECT private_ip FROM instances WHERE state <> 'terminated' AND private_ip IS NOT NULL"
    for row in (txn.rows(live) if everyone else txn.rows(live + " AND group_name = ?", group)):
        host = addressing.ipv4_int(row["private_ip"])
        if host is not None and low <= host <= high:
            taken.add(host)
    next_host = max(taken) + 1 if taken else low
    txn.exec("INSERT INTO group_addresses (group_name, subnet, first_host, last_host, next_host) VALUES (?, ?, ?, ?, ?)",
             group, str(subnet), low, high, next_host)
    free = [h for h in range(low, next_host) if h not in taken]
    for start in range(0, len(free), _ROWS_PER_INSERT):
        chunk = free[start:start + _ROWS_PER_INSERT]
        txn.exec("INSERT INTO free_addresses (group_name, host) VALUES " + ", ".join(["(?, ?)"] * len(chunk)),
                 *[v for h in chunk for v in (group, h)])


def plan_hosts(txn, group, subnet, count, fresh=False):
    """The ``count`` lowest free hosts of a group (integers), lowest first.

    ``fresh``: rebuild the bookkeeping first, from every live instance (the caller found an
    address it offered taken). Raises Exhausted when the subnet has fewer than ``count``
    free addresses.
    """
    low, high = host_range(subnet)
    if fresh:
        rebuild(txn, group, subnet, everyone=True)
    rows = txn.rows(_PLAN, group, count, group)
    if not rows or rows[0]["subnet"] != str(subnet):
        rebuild(txn, group, subnet)
        fresh = True
        rows = txn.rows(_PLAN, group, count, group)
    hosts = _hosts(subnet, count, int(rows[0]["next_host"]), [int(r["host"]) for r in rows if r["host"] is not None])
    if hosts is not None:
        return hosts
    if not fresh:
        # A full-looking subnet: make sure no address was given back behind the triggers' back.
        return plan_hosts(txn, group, subnet, count, fresh=True)
    live = txn.value("SELECT COUNT(*) FROM instances WHERE group_name = ? AND state <> 'terminated'", group)
    raise Exhausted(
        "subnet %s has no free address left for %d more (%d instances): terminate instances or use a group with room"
        % (subnet, count, int(live or 0))
    )
