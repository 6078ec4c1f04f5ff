# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Instance reservations: ids, placement, private address and MAC, state changes.

``present`` with ``count``/``exact_count`` is idempotent by ``name`` (the reservation's
label), like amazon.aws.ec2_instance: re-running asks for nothing new.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger import addressing, groups, ids, images, scheduler, settings
from ansible_collections.euca.cloud.plugins.module_utils.ledger.cloud import get_cluster, node_usage
from ansible_collections.euca.cloud.plugins.module_utils.ledger.schema import now

STATES = ("pending", "running", "stopped", "terminated")
# Which state each target state may be reached from.
TRANSITIONS = {
    "running": ("pending", "stopped", "running"),
    "stopped": ("pending", "running", "stopped"),
    "terminated": ("pending", "running", "stopped", "terminated"),
}
VIEW = ("id", "name", "reservation_id", "launch_index", "group_name", "image_id", "instance_type", "cluster", "node",
        "cores", "memory_mb", "disk_gb", "private_ip", "mac", "state", "reason")


def view(row):
    """An instance in the shape modules return (``group`` for ``group_name``)."""
    out = dict((k, row[k]) for k in VIEW)
    out["group"] = out.pop("group_name")
    return out


def get_instance(txn, instance_id):
    """The instance row; NotFound naming the fix otherwise."""
    found = txn.row("SELECT * FROM instances WHERE id = ?", instance_id)
    if found is None:
        raise NotFound("unknown instance %r" % (instance_id,))
    return found


def live_by_name(txn, name):
    """Live (not terminated) instances labelled ``name``, oldest first."""
    return txn.rows(
        "SELECT * FROM instances WHERE name = ? AND state <> 'terminated' ORDER BY created_gen, launch_index, id",
        name,
    )


def resolve_type(conf, instance_type):
    """The (cores, memory_mb, disk_gb) of a VM type from the cloud's vm_types."""
    types = conf["vm_types"]
    if instance_type not in types:
        raise InvalidInput("unknown instance_type %r: known types are %s" % (instance_type, ", ".join(sorted(types))))
    spec = types[instance_type]
    return {"cores": spec["cores"], "memory_mb": spec["memory_mb"], "disk_gb": spec["disk_gb"]}


def _candidates(txn, cluster):
    rows = txn.rows(
        "SELECT * FROM nodes WHERE state = 'enabled'" + (" AND cluster = ?" if cluster else "") + " ORDER BY name",
        *([cluster] if cluster else [])
    )
    out = []
    for row in rows:
        used = node_usage(txn, row["name"])
        out.append({
            "name": row["name"],
            "cluster": row["cluster"],
            "instances": used["instances"],
            "free": dict((r, row[r] - used[r]) for r in scheduler.RESOURCES),
        })
    return out


def terminate(txn, row, reason="terminated by request"):
    """Terminate one instance: free its address, drop its EIP association and attachments."""
    if row["state"] == "terminated":
        return False
    txn.exec("UPDATE elastic_ips SET instance_id = NULL WHERE instance_id = ?", row["id"])
    for attachment in txn.rows("SELECT volume_id FROM attachments WHERE instance_id = ?", row["id"]):
        txn.exec("DELETE FROM attachments WHERE volume_id = ?", attachment["volume_id"])
        txn.exec("UPDATE volumes SET state = 'available' WHERE id = ?", attachment["volume_id"])
    txn.exec("UPDATE instances SET state = 'terminated', reason = ?, updated_at = ? WHERE id = ?", reason, now(), row["id"])
    return True


def launch(txn, name, group, image, instance_type, count, cluster=None, policy=None):
    """Reserve ``count`` new pending instances; all or nothing."""
    conf = settings.load(txn)
    need = resolve_type(conf, instance_type)
    group_row = groups.get_group(txn, group)
    image_row = images.resolve(txn, image, "machine")
    if cluster:
        get_cluster(txn, cluster)
    policy = policy or conf["scheduler"]
    nodes = _candidates(txn, cluster)
    placed, cursor = scheduler.place(nodes, need, count, policy, conf.get("roundrobin_cursor"))
    clusters = dict((n["name"], n["cluster"]) for n in nodes)
    subnet = addressing.parse_network(group_row["subnet"], "subnet")
    taken = set(r["private_ip"] for r in txn.rows(
        "SELECT private_ip FROM instances WHERE group_name = ? AND state <> 'terminated'", group))
    reservation = ids.new_id(txn, "reservation")
    created = []
    stamp = now()
    # The generation this transaction commits as: orders launches even within one second.
    generation = txn.current_generation() + 1
    for index, node in enumerate(placed):
        address = addressing.first_free_host(subnet, taken)
        taken.add(str(address))
        instance_id = ids.new_id(txn, "instance")
        txn.exec(
            "INSERT INTO instances (id, name, reservation_id, launch_index, group_name, image_id, instance_type, cluster, "
            "node, cores, memory_mb, disk_gb, private_ip, mac, state, reason, created_gen, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', '', ?, ?, ?)",
            instance_id, name, reservation, index, group, image_row["id"], instance_type, clusters[node], node,
            need["cores"], need["memory_mb"], need["disk_gb"], str(address), addressing.mac_for(address), generation, stamp, stamp,
        )
        created.append(get_instance(txn, instance_id))
    if policy == "ROUNDROBIN" and cursor != conf.get("roundrobin_cursor"):
        settings.store(txn, "roundrobin_cursor", cursor)
    return created


def ensure_instances(txn, name=None, state="present", instance_ids=None, group=None, image=None,
                     instance_type="m1.small", cluster=None, count=None, exact_count=None, policy=None, reason=None):
    """Converge instances to ``state``.

    ``present``: at least ``count`` (or exactly ``exact_count``, terminating the newest
    extra ones) live instances labelled ``name``. ``running``/``stopped``/``terminated``:
    move the instances in ``instance_ids`` (or all live ones labelled ``name``).
    """
    if state == "absent":
        state = "terminated"
    if state == "present":
        if not name:
            raise InvalidInput("state=present needs name: it labels the reservation so re-runs are idempotent")
        ids.check_name("instance", name)
        if (count is None) == (exact_count is None):
            raise InvalidInput("state=present needs exactly one of count or exact_count")
        wanted = count if count is not None else exact_count
        if not isinstance(wanted, int) or wanted < 0:
            raise InvalidInput("count/exact_count must be a non-negative integer, not %r" % (wanted,))
        live = live_by_name(txn, name)
        before = [view(r) for r in live]
        created, removed = [], []
        if wanted > len(live):
            if not group or not image:
                raise InvalidInput("launching instances for %s needs group and image" % name)
            created = launch(txn, name, group, image, instance_type, wanted - len(live), cluster, policy)
        elif exact_count is not None and len(live) > exact_count:
            for row in list(reversed(live))[: len(live) - exact_count]:
                terminate(txn, row, "terminated to meet exact_count %d" % exact_count)
                removed.append(row["id"])
        after_rows = live_by_name(txn, name)
        return {
            "changed": bool(created or removed),
            "before": before,
            "after": [view(r) for r in after_rows],
            "instances": [view(r) for r in after_rows],
            "launched": [r["id"] for r in created],
            "terminated": removed,
        }

    if state not in TRANSITIONS:
        raise InvalidInput("state must be present, running, stopped, terminated or absent, not %r" % (state,))
    if instance_ids:
        rows = []
        for instance_id in instance_ids:
            rows.append(get_instance(txn, instance_id))
    elif name:
        rows = live_by_name(txn, name)
    else:
        raise InvalidInput("state=%s needs instance_ids or name" % state)
    before = [view(r) for r in rows]
    changed = []
    for row in rows:
        if row["state"] not in TRANSITIONS[state]:
            raise Conflict("instance %s is %s and cannot become %s" % (row["id"], row["state"], state))
        if row["state"] == state:
            continue
        if state == "terminated":
            terminate(txn, row, reason or "terminated by request")
        else:
            txn.exec("UPDATE instances SET state = ?, reason = ?, updated_at = ? WHERE id = ?", state, reason or "", now(), row["id"])
        changed.append(row["id"])
    after = [view(get_instance(txn, r["id"])) for r in rows]
    return {"changed": bool(changed), "before": before, "after": after, "instances": after,
            "launched": [], "terminated": changed if state == "terminated" else []}
