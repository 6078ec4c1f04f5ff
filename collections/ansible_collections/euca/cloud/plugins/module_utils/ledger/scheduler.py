# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Placement of instances onto node controllers by capacity (Eucalyptus' three policies).

Pure: ``place`` takes the nodes with their free capacity and returns a plan; the caller
writes it. GREEDY fills nodes in name order; ROUNDROBIN starts after the node chosen last
time and moves on each placement; POWERSAVE packs onto the busiest node that fits, so idle
nodes stay idle (and could be powered down).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.errors import Exhausted, InvalidInput

POLICIES = ("GREEDY", "ROUNDROBIN", "POWERSAVE")
RESOURCES = ("cores", "memory_mb", "disk_gb")


def _fits(node, need):
    return all(node["free"][r] >= need[r] for r in RESOURCES)


def _take(node, need):
    for r in RESOURCES:
        node["free"][r] -= need[r]
    node["instances"] += 1


def place(nodes, need, count, policy, cursor=None):
    """Choose a node for each of ``count`` instances needing ``need``.

    ``nodes``: list of ``{"name", "cluster", "free": {cores, memory_mb, disk_gb}, "instances"}``
    (only enabled nodes). Returns ``(names, new_cursor)``; raises Exhausted with every
    node's free capacity when the whole request cannot be placed (all or nothing).
    """
    if policy not in POLICIES:
        raise InvalidInput("scheduler must be one of %s, not %r" % (", ".join(POLICIES), policy))
    pool = sorted(
        ({"name": n["name"], "cluster": n["cluster"], "free": dict(n["free"]), "instances": n["instances"]} for n in nodes),
        key=lambda n: n["name"],
    )
    chosen = []
    for index in range(count):
        candidates = [n for n in pool if _fits(n, need)]
        if not candidates:
            raise Exhausted(_no_room(nodes, need, count, index))
        if policy == "GREEDY":
            node = candidates[0]
        elif policy == "POWERSAVE":
            busy = [n for n in candidates if n["instances"] > 0]
            node = min(busy, key=lambda n: (n["free"]["cores"], n["free"]["memory_mb"], n["name"])) if busy else candidates[0]
        else:
            after = [n for n in candidates if cursor is not None and n["name"] > cursor]
            node = after[0] if after else candidates[0]
        _take(node, need)
        cursor = node["name"]
        chosen.append(node["name"])
    return chosen, cursor


def _no_room(nodes, need, count, placed):
    wanted = "%d instance%s of %d cores, %d MiB, %d GiB" % (
        count, "" if count == 1 else "s", need["cores"], need["memory_mb"], need["disk_gb"])
    if not nodes:
        return "no enabled node can take %s: the cluster has no enabled nodes; add one with euca.cloud.node" % wanted
    free = ", ".join(
        "%s %d cores/%d MiB/%d GiB free" % (n["name"], n["free"]["cores"], n["free"]["memory_mb"], n["free"]["disk_gb"])
        for n in sorted(nodes, key=lambda n: n["name"])[:20]
    )
    return "not enough capacity for %s (%d would fit): %s" % (wanted, placed, free)
