# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only slices of the ledger: what a cluster controller, a node or an operator needs.

A slice is read in one snapshot and carries the ledger ``generation`` it was read at, so a
data-plane applier can refuse to apply an older slice than the one it already applied.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger import (accounts, addresses, groups, images, instances,
                                                                        keypairs, settings, volumes)
from ansible_collections.euca.cloud.plugins.module_utils.ledger.cloud import node_usage

SCOPES = ("cloud", "cluster", "node")


def read_slice(txn, scope="cloud", name=None, include_terminated=False, account=accounts.ADMIN):
    """The ledger as seen from ``scope`` (``cloud``, ``cluster`` NAME or ``node`` NAME).

    A cluster's or node's slice (what its hosts converge to) has every account's records, and each
    instance's ``user_data`` and ``public_key`` (its seed and metadata need them). The cloud's, read
    for ``account``, has only what that account sees (everything for the admin account) in its
    words, and its key pairs.
    """
    accounts.get_account(txn, account)
    if scope != "cloud" and account != accounts.ADMIN:
        raise InvalidInput("scope=%s is the data plane's view of every account: read it as the admin account" % scope)
    if scope not in SCOPES:
        raise InvalidInput("scope must be one of %s" % ", ".join(SCOPES))
    if scope != "cloud" and not name:
        raise InvalidInput("scope=%s needs name" % scope)
    conf = settings.public_settings(settings.load(txn))
    if scope == "cluster" and txn.row("SELECT name FROM clusters WHERE name = ?", name) is None:
        raise NotFound("unknown cluster %r" % name)
    if scope == "node" and txn.row("SELECT name FROM nodes WHERE name = ?", name) is None:
        raise NotFound("unknown node %r" % name)

    where, args = {"cloud": ("1 = 1", []), "cluster": ("cluster = ?", [name]), "node": ("node = ?", [name])}[scope]
    state_filter = "" if include_terminated else " AND state <> 'terminated'"
    instance_rows = txn.rows("SELECT * FROM instances WHERE %s%s ORDER BY id" % (where, state_filter), *args)
    live_ids = set(r["id"] for r in instance_rows)

    node_where = {"cloud": ("1 = 1", []), "cluster": ("cluster = ?", [name]), "node": ("name = ?", [name])}[scope]
    nodes = []
    for row in txn.rows("SELECT * FROM nodes WHERE %s ORDER BY name" % node_where[0], *node_where[1]):
        used = node_usage(txn, row["name"])
        nodes.append({
            "name": row["name"], "cluster": row["cluster"], "state": row["state"],
            "capacity": {"cores": row["cores"], "memory_mb": row["memory_mb"], "disk_gb": row["disk_gb"]},
            "used": used,
        })
    if scope == "cloud":
        group_rows = txn.rows("SELECT * FROM security_groups ORDER BY name")
        image_rows = txn.rows("SELECT * FROM images ORDER BY id")
        eip_rows = txn.rows("SELECT * FROM elastic_ips ORDER BY address")
        volume_rows = txn.rows("SELECT * FROM volumes ORDER BY id")
        cluster_names = [r["name"] for r in txn.rows("SELECT name FROM clusters ORDER BY name")]
    else:
        wanted_groups = set(r["group_name"] for r in instance_rows)
        # Rules may name other groups as sources: a CC needs their subnets to filter by them.
        for group_name in list(wanted_groups):
            for rule in groups.rules_of(txn, group_name):
                if rule.get("source_group"):
                    wanted_groups.add(rule["source_group"])
        group_rows = [r for r in txn.rows("SELECT * FROM security_groups ORDER BY name") if r["name"] in wanted_groups]
        wanted_images = set(r["image_id"] for r in instance_rows)
        for image_id in list(wanted_images):
            row = txn.row("SELECT kernel_id, ramdisk_id FROM images WHERE id = ?", image_id)
            wanted_images.update(x for x in (row["kernel_id"], row["ramdisk_id"]) if x)
        image_rows = [r for r in txn.rows("SELECT * FROM images ORDER BY id") if r["id"] in wanted_images]
        eip_rows = [r for r in txn.rows("SELECT * FROM elastic_ips ORDER BY address") if r["instance_id"] in live_ids]
        if scope == "cluster":
            volume_rows = txn.rows("SELECT * FROM volumes WHERE cluster = ? ORDER BY id", name)
        else:
            volume_rows = [r for r in txn.rows("SELECT v.* FROM volumes v JOIN attachments a ON a.volume_id = v.id ORDER BY v.id")
                           if volumes.view(txn, r)["attachment"]["instance"] in live_ids]
        cluster_names = sorted(set(n["cluster"] for n in nodes) | ({name} if scope == "cluster" else set()))
    if scope == "cloud" and not accounts.is_admin(txn, account):
        instance_rows = [r for r in instance_rows if r["account"] == account]
        group_rows = [r for r in group_rows if r["account"] == account]
        image_rows = [r for r in image_rows if r["account"] in (account, accounts.ADMIN)]
        eip_rows = [r for r in eip_rows if r["account"] == account]
        volume_rows = [r for r in volume_rows if r["account"] == account]
        nodes = []
    snapshot_rows = [r for r in txn.rows("SELECT * FROM snapshots ORDER BY id")
                     if (scope == "cloud" and accounts.sees(txn, account, r["account"]))
                     or r["volume_id"] in set(v["id"] for v in volume_rows)]
    instance_views = [instances.view(r, account) for r in instance_rows]
    if scope != "cloud":
        for out, row in zip(instance_views, instance_rows):
            out["user_data"] = row["user_data"]
            out["public_key"] = row["public_key"]
    return {
        "generation": txn.current_generation(),
        "scope": scope,
        "account": account,
        "name": name,
        "settings": conf,
        "clusters": cluster_names,
        "nodes": nodes,
        "security_groups": [groups.for_account(groups.view(txn, r), account) for r in group_rows],
        "images": [dict((k, r[k]) for k in images.VIEW) for r in image_rows],
        "instances": instance_views,
        "elastic_ips": [addresses.view(r, account) for r in eip_rows],
        "volumes": [volumes.view(txn, r, account) for r in volume_rows],
        "snapshots": [volumes.snapshot_view(r, account) for r in snapshot_rows],
        "keypairs": keypairs.list_keypairs(txn, account) if scope == "cloud" else [],
    }
