# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""EC2 volumes and snapshots: CreateVolume, DeleteVolume, DescribeVolumes, AttachVolume,
DetachVolume, CreateSnapshot, DeleteSnapshot, DescribeSnapshots.

The ledger is the truth and a job converges the volume's cluster (its availability zone is the
cluster's name). What each request writes at once, and what its job (the playbook) does:

- CreateVolume records the volume (ledger/volumes.py ensure_volume, quota max_volume_gb) and
  queues ``create-volume``: the SC makes its bytes (or the playbook removes the record again).
- AttachVolume records the attachment (ensure_attachment: a volume is never attached twice,
  EC2's VolumeInUse) and queues ``attach``: the SC exports, the NC attaches.
- DetachVolume only checks (not attached: IncorrectState) and queues ``detach``: the playbook
  detaches the host first and the ledger last, so the ledger never says "available" while a
  guest still holds the disk.
- DeleteVolume refuses an attached volume (VolumeInUse) and queues ``delete-volume``: the SC
  deletes the bytes, then the ledger the record.
- CreateSnapshot records the snapshot and queues ``snapshot`` (the SC copies the bytes);
  DeleteSnapshot forgets it in the ledger at once and queues ``delete-snapshot`` (the SC deletes
  the bytes: the playbook finds them by the cluster the job names).

Describe* show the transitional states while a job is queued or running (ledger/jobs.py
active): creating, deleting, attaching, detaching, pending; ``error`` when the resource's
newest job failed.

The ledger gives volumes and snapshots a name (their label in the playbooks); EC2 has none, so
a volume or snapshot made here is labelled with the id of the request that made it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.api import query
from ansible_collections.euca.cloud.plugins.module_utils.api.actions_tags import (apply_tag_specifications, chunks,
                                                                                  check_tag_specifications, delete_tags_of, iso_time,
                                                                                  ledger_refusal, marks, owner_numbers,
                                                                                  tag_sets)
from ansible_collections.euca.cloud.plugins.module_utils.api.base import action
from ansible_collections.euca.cloud.plugins.module_utils.api.errors import ApiError, invalid
from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError
from ansible_collections.euca.cloud.plugins.module_utils.ledger import accounts, volumes
from ansible_collections.euca.cloud.plugins.module_utils.model import names

VOLUME_NOT_FOUND = "InvalidVolume.NotFound"
SNAPSHOT_NOT_FOUND = "InvalidSnapshot.NotFound"
#: EC2's size limits for a standard volume (GiB)
SIZE_MIN, SIZE_MAX = 1, 1024
VOLUME_TYPE = "standard"
#: the volume status while a job of this kind is queued or running for it
VOLUME_TRANSITIONAL = {"create-volume": "creating", "delete-volume": "deleting"}
ATTACHMENT_TRANSITIONAL = {"attach": "attaching", "detach": "detaching"}


def _jobs():
    from ansible_collections.euca.cloud.plugins.module_utils.ledger import jobs
    return jobs


def _check_id(kind, value):
    if not names.looks_like(kind, value):
        code = "InvalidVolumeID.Malformed" if kind == "volume" else "InvalidSnapshotID.Malformed"
        raise ApiError(code, "Invalid id: '%s' (expecting '%s')" % (value, names.format_id(kind, 0x1a2b3c4d)))
    return value


def _volume(txn, ctx, volume_id):
    """The caller's volume row with its attachment (instance_id, device, attached_at or NULLs)."""
    _check_id("volume", volume_id)
    row = txn.row("SELECT v.*, a.instance_id, a.device, a.attached_at FROM volumes v "
                  "LEFT JOIN attachments a ON a.volume_id = v.id WHERE v.id = ?", volume_id)
    if row is None or not (ctx.admin or row["account"] == ctx.account):
        raise ApiError(VOLUME_NOT_FOUND, "The volume '%s' does not exist." % volume_id)
    return row


def _snapshot(txn, ctx, snapshot_id):
    _check_id("snapshot", snapshot_id)
    row = txn.row("SELECT * FROM snapshots WHERE id = ?", snapshot_id)
    if row is None or not (ctx.admin or row["account"] == ctx.account):
        raise ApiError(SNAPSHOT_NOT_FOUND, "The snapshot '%s' does not exist." % snapshot_id)
    return row


def _active(txn, ids):
    return _jobs().active(txn, list(ids)) if ids else {}


def _label(txn, ctx, table):
    """The ledger name of the volume or snapshot this request makes: the request's id (unique per
    request; checked, because the ledger would take a taken name for the record to keep)."""
    label = str(ctx.request_id)
    key = accounts.label_key(ctx.account, table[:-1], label) if names.is_name(label) and ":" not in label else None
    if key is None or txn.row("SELECT id FROM %s WHERE name = ?" % table, key) is not None:
        raise ApiError("InternalError", "request id %r cannot label a new %s" % (label, table[:-1]), status=500)
    return label


def _device(text):
    """``text`` as the ledger writes a device (``/dev/vdc``), or None when it cannot be one."""
    try:
        return names.check_device(text)
    except EucaError:
        return None


def _attachment(row, status):
    return {"volumeId": row["id"], "instanceId": row["instance_id"], "device": row["device"], "status": status,
            "attachTime": iso_time(row["attached_at"]), "deleteOnTermination": False}


# --- volumes -------------------------------------------------------------------------------------

@action("CreateVolume")
def create_volume(ctx, params):
    """A new volume in the cluster named by AvailabilityZone, empty (Size GiB) or from SnapshotId;
    ``creating`` until its create-volume job has made it."""
    zone = params.get("AvailabilityZone", required=True)
    snapshot_id = params.get("SnapshotId") or None
    size = params.int("Size", minimum=SIZE_MIN, maximum=SIZE_MAX)
    if size is None and snapshot_id is None:
        raise ApiError("MissingParameter", "The request must contain the parameter size or snapshotId")
    volume_type = params.get("VolumeType", VOLUME_TYPE)
    if volume_type != VOLUME_TYPE:
        raise invalid("Volume type %r is not offered: volumes here are %s" % (volume_type, VOLUME_TYPE))
    if params.bool("Encrypted"):
        raise invalid("Encrypted volumes are not offered")
    check_tag_specifications(params, "volume")
    with ctx.write() as txn:
        label = _label(txn, ctx, "volumes")
        if txn.row("SELECT name FROM clusters WHERE name = ?", zone) is None:
            raise ApiError("InvalidZone.NotFound", "The zone '%s' does not exist." % zone)
        if snapshot_id:
            snap = _snapshot(txn, ctx, snapshot_id)
            if size is not None and size < snap["size_gb"]:
                raise invalid("Volume of %d GiB is smaller than snapshot '%s' (%d GiB)" % (size, snapshot_id, snap["size_gb"]))
        try:
            made = volumes.ensure_volume(txn, name=label, cluster=zone, size_gb=size, snapshot=snapshot_id,
                                         account=ctx.account)["volume"]
        except EucaError as exc:
            raise ledger_refusal(exc, not_found=SNAPSHOT_NOT_FOUND)
        tags = apply_tag_specifications(txn, ctx, params, "volume", [made["id"]])
        ctx.enqueue(txn, "create-volume", zone, [made["id"]])
        row = _volume(txn, ctx, made["id"])
        number = owner_numbers(txn).get(row["account"])
    return _volume_item(row, "creating", [], tags, number)


@action("DeleteVolume")
def delete_volume(ctx, params):
    """Queue the volume's deletion (VolumeInUse while attached, IncorrectState while creating);
    ``deleting`` until the job is done."""
    volume_id = params.get("VolumeId", required=True)
    with ctx.write() as txn:
        row = _volume(txn, ctx, volume_id)
        if row["instance_id"]:
            raise ApiError("VolumeInUse", "Volume %s is attached to %s as %s; detach it first"
                           % (volume_id, row["instance_id"], row["device"]))
        busy = _active(txn, [volume_id]).get(volume_id)
        if busy == "create-volume":
            # the dispatcher runs a claim's deletions before its creations: wait for the bytes
            raise ApiError("IncorrectState", "Volume %s is creating; delete it once it is available" % volume_id)
        if busy != "delete-volume":
            ctx.enqueue(txn, "delete-volume", row["cluster"], [volume_id])
    return {"return": True}


@action("AttachVolume")
def attach_volume(ctx, params):
    """Attach the volume to an instance of its cluster as Device (/dev/vdb../dev/vdy); the ledger
    records it at once (VolumeInUse if attached already), the attach job converges the hosts."""
    volume_id = params.get("VolumeId", required=True)
    instance_id = params.get("InstanceId", required=True)
    device = params.get("Device", required=True)
    try:
        device = names.check_device(device)
    except EucaError as exc:
        raise invalid(exc.msg)
    with ctx.write() as txn:
        row = _volume(txn, ctx, volume_id)
        instance = txn.row("SELECT cluster, account, state FROM instances WHERE id = ?", instance_id)
        if instance is None or not (ctx.admin or instance["account"] == ctx.account):
            raise ApiError("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist" % instance_id)
        if row["instance_id"]:
            raise ApiError("VolumeInUse", "Volume %s is already attached to %s as %s"
                           % (volume_id, row["instance_id"], row["device"]))
        busy = _active(txn, [volume_id]).get(volume_id)
        if busy:
            raise ApiError("IncorrectState", "Volume %s is %s" % (volume_id, VOLUME_TRANSITIONAL.get(busy, "busy: " + busy)))
        if instance["cluster"] != row["cluster"]:
            raise ApiError("InvalidVolume.ZoneMismatch", "Volume %s is in zone %s and instance %s in %s"
                           % (volume_id, row["cluster"], instance_id, instance["cluster"]))
        try:
            volumes.ensure_attachment(txn, volume_id, instance=instance_id, device=device, account=ctx.account)
        except EucaError as exc:
            raise ledger_refusal(exc, not_found=VOLUME_NOT_FOUND, conflict="IncorrectState")
        ctx.enqueue(txn, "attach", row["cluster"], [volume_id], {"instance": instance_id, "device": device})
        row = _volume(txn, ctx, volume_id)
    return _attachment(row, "attaching")


@action("DetachVolume")
def detach_volume(ctx, params):
    """Queue the volume's detachment (IncorrectState when it is not attached); the ledger keeps the
    attachment until the detach job has taken the disk off the host."""
    volume_id = params.get("VolumeId", required=True)
    instance_id = params.get("InstanceId")
    device = params.get("Device")
    force = params.bool("Force")
    with ctx.write() as txn:
        row = _volume(txn, ctx, volume_id)
        if not row["instance_id"]:
            raise ApiError("IncorrectState", "Volume '%s' is in the 'available' state." % volume_id)
        if (instance_id and instance_id != row["instance_id"]) or (device and _device(device) != row["device"]):
            raise ApiError("InvalidAttachment.NotFound", "Volume %s is attached to %s as %s"
                           % (volume_id, row["instance_id"], row["device"]))
        if _active(txn, [volume_id]).get(volume_id) != "detach":
            ctx.enqueue(txn, "detach", row["cluster"], [volume_id], {"force": force})
    return _attachment(row, "detaching")


def _volume_item(row, status, attachments, tags, number):
    return {
        "volumeId": row["id"],
        "size": row["size_gb"],
        "snapshotId": row["snapshot_id"] or "",
        "availabilityZone": row["cluster"],
        "status": status,
        "createTime": iso_time(row["created_at"]),
        "attachmentSet": attachments,
        "tagSet": tags,
        "volumeType": VOLUME_TYPE,
        "encrypted": False,
        "multiAttachEnabled": False,
        "ownerId": number,
    }


def _stamp(moment):
    """A time as the answer shows it (EC2's form: milliseconds, Z), for the time filters."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def _attachment_status(item):
    return [a["status"] for a in item["attachmentSet"]]


VOLUME_FILTERS = {
    "attachment.attach-time": lambda v: [_stamp(a["attachTime"]) for a in v["attachmentSet"]],
    "attachment.delete-on-termination": lambda v: [a["deleteOnTermination"] for a in v["attachmentSet"]],
    "attachment.device": lambda v: [a["device"] for a in v["attachmentSet"]],
    "attachment.instance-id": lambda v: [a["instanceId"] for a in v["attachmentSet"]],
    "attachment.status": _attachment_status,
    "availability-zone": lambda v: v["availabilityZone"],
    "create-time": lambda v: _stamp(v["createTime"]),
    "encrypted": lambda v: v["encrypted"],
    "size": lambda v: v["size"],
    "snapshot-id": lambda v: v["snapshotId"],
    "status": lambda v: v["status"],
    "volume-id": lambda v: v["volumeId"],
    "volume-type": lambda v: v["volumeType"],
    "owner-id": lambda v: v["ownerId"],
}


@action("DescribeVolumes")
def describe_volumes(ctx, params):
    """The caller's volumes (every account's for the admin) with attachment, transitional state and
    tags; VolumeId.N must exist (InvalidVolume.NotFound), Filter.N as EC2's, MaxResults 5-500."""
    wanted = [_check_id("volume", v) for v in dict.fromkeys(params.list("VolumeId"))]
    filters = params.filters()
    max_results = params.int("MaxResults")
    token = params.get("NextToken")
    if wanted and max_results is not None:
        raise invalid("The parameter volumeSet cannot be used with the parameter maxResults")
    select = ("SELECT v.*, a.instance_id, a.device, a.attached_at FROM volumes v "
              "LEFT JOIN attachments a ON a.volume_id = v.id")
    with ctx.read() as txn:
        if wanted:
            rows = []
            for part in chunks(wanted):
                rows.extend(txn.rows(select + " WHERE v.id IN (%s)" % marks(part), *part))
            rows = [r for r in rows if ctx.admin or r["account"] == ctx.account]
            found = set(r["id"] for r in rows)
            for vid in wanted:
                if vid not in found:
                    raise ApiError(VOLUME_NOT_FOUND, "The volume '%s' does not exist." % vid)
            rows.sort(key=lambda r: r["id"])
        elif ctx.admin:
            rows = txn.rows(select + " ORDER BY v.id")
        else:
            rows = txn.rows(select + " WHERE v.account = ? ORDER BY v.id", ctx.account)
        ids = [r["id"] for r in rows]
        active = _active(txn, ids)
        failed = _jobs().failed(txn, ids) if ids else {}
        tags = tag_sets(txn, ids)
        numbers = owner_numbers(txn)
    items = []
    for row in rows:
        kind = active.get(row["id"])
        if kind in VOLUME_TRANSITIONAL:
            status = VOLUME_TRANSITIONAL[kind]
        elif row["id"] in failed and not kind:
            status = "error"
        else:
            status = row["state"]
        attachments = []
        if row["instance_id"]:
            attachments.append(_attachment(row, ATTACHMENT_TRANSITIONAL.get(kind, "attached")))
        items.append(_volume_item(row, status, attachments, tags[row["id"]], numbers.get(row["account"])))
    items = query.apply_filters(items, filters, VOLUME_FILTERS)
    page, next_token = query.paginate(items, max_results, token, maximum=500)
    return {"volumeSet": page, "nextToken": next_token}


# --- snapshots -----------------------------------------------------------------------------------

def _snapshot_item(row, status, tags, number):
    return {
        "snapshotId": row["id"],
        "volumeId": row["volume_id"],
        "status": status,
        "startTime": iso_time(row["created_at"]),
        "progress": "100%" if status == "completed" else "0%",
        "ownerId": number,
        "volumeSize": row["size_gb"],
        "description": "",
        "encrypted": False,
        "tagSet": tags,
    }


@action("CreateSnapshot")
def create_snapshot(ctx, params):
    """Record a snapshot of the volume and queue its copy; ``pending`` until the SC has copied it."""
    volume_id = params.get("VolumeId", required=True)
    if params.get("Description"):
        raise invalid("Snapshot descriptions are not kept by this cloud; leave Description out")
    check_tag_specifications(params, "snapshot")
    with ctx.write() as txn:
        label = _label(txn, ctx, "snapshots")
        vol = _volume(txn, ctx, volume_id)
        busy = _active(txn, [volume_id]).get(volume_id)
        if busy in VOLUME_TRANSITIONAL:
            raise ApiError("IncorrectState", "Volume %s is %s" % (volume_id, VOLUME_TRANSITIONAL[busy]))
        try:
            made = volumes.ensure_snapshot(txn, label, volume=volume_id, account=ctx.account)["snapshot"]
        except EucaError as exc:
            raise ledger_refusal(exc, not_found=VOLUME_NOT_FOUND)
        tags = apply_tag_specifications(txn, ctx, params, "snapshot", [made["id"]])
        ctx.enqueue(txn, "snapshot", vol["cluster"], [made["id"]], {"volume": volume_id})
        row = _snapshot(txn, ctx, made["id"])
        number = owner_numbers(txn).get(row["account"])
    return _snapshot_item(row, "pending", tags, number)


def snapshot_clusters(txn, row):
    """The clusters whose SC may hold the snapshot's bytes: its volume's; every cluster when that
    volume is gone (the ledger records no cluster of its own for a snapshot, and deleting bytes a
    cluster's SC does not have is no change there)."""
    cluster = txn.value("SELECT cluster FROM volumes WHERE id = ?", row["volume_id"])
    if cluster:
        return [cluster]
    return [r["name"] for r in txn.rows("SELECT name FROM clusters ORDER BY name")]


@action("DeleteSnapshot")
def delete_snapshot(ctx, params):
    """Forget the snapshot in the ledger at once (InvalidSnapshot.InUse while a volume made from it
    exists) and queue the deletion of its bytes on its cluster's SC; its tags go with it."""
    snapshot_id = params.get("SnapshotId", required=True)
    with ctx.write() as txn:
        row = _snapshot(txn, ctx, snapshot_id)
        users = [r["id"] for r in txn.rows("SELECT id FROM volumes WHERE snapshot_id = ? ORDER BY id", snapshot_id)]
        if users:
            raise ApiError("InvalidSnapshot.InUse", "The snapshot %s is in use by volumes %s"
                           % (snapshot_id, ", ".join(users[:10])))
        clusters = snapshot_clusters(txn, row)
        try:
            volumes.ensure_snapshot(txn, accounts.label_display(row["name"], row["account"]), state="absent",
                                    account=row["account"])
        except EucaError as exc:
            raise ledger_refusal(exc, not_found=SNAPSHOT_NOT_FOUND, conflict="InvalidSnapshot.InUse")
        delete_tags_of(txn, [snapshot_id])
        for cluster in clusters:
            ctx.enqueue(txn, "delete-snapshot", cluster, [snapshot_id])
    return {"return": True}


SNAPSHOT_FILTERS = {
    "owner-id": lambda s: s["ownerId"],
    "progress": lambda s: s["progress"],
    "snapshot-id": lambda s: s["snapshotId"],
    "start-time": lambda s: _stamp(s["startTime"]),
    "status": lambda s: s["status"],
    "volume-id": lambda s: s["volumeId"],
    "volume-size": lambda s: s["volumeSize"],
    "description": lambda s: s["description"],
    "encrypted": lambda s: s["encrypted"],
}


@action("DescribeSnapshots")
def describe_snapshots(ctx, params):
    """The caller's snapshots (every account's for the admin); SnapshotId.N must exist, Owner.N
    (``self`` or account numbers) narrows, Filter.N as EC2's, MaxResults 5-1000."""
    wanted = [_check_id("snapshot", s) for s in dict.fromkeys(params.list("SnapshotId"))]
    owners = params.list("Owner")
    filters = params.filters()
    max_results = params.int("MaxResults")
    token = params.get("NextToken")
    if wanted and max_results is not None:
        raise invalid("The parameter snapshotSet cannot be used with the parameter maxResults")
    with ctx.read() as txn:
        if ctx.admin:
            rows = txn.rows("SELECT * FROM snapshots ORDER BY id")
        else:
            rows = txn.rows("SELECT * FROM snapshots WHERE account = ? ORDER BY id", ctx.account)
        if wanted:
            found = set(r["id"] for r in rows)
            for sid in wanted:
                if sid not in found:
                    raise ApiError(SNAPSHOT_NOT_FOUND, "The snapshot '%s' does not exist." % sid)
            rows = [r for r in rows if r["id"] in set(wanted)]
        ids = [r["id"] for r in rows]
        active = _active(txn, ids)
        failed = _jobs().failed(txn, ids) if ids else {}
        tags = tag_sets(txn, ids)
        numbers = owner_numbers(txn)
    if owners:
        allowed = set(numbers.get(ctx.account) if o == "self" else o for o in owners)
        rows = [r for r in rows if numbers.get(r["account"]) in allowed]
    items = []
    for row in rows:
        kind = active.get(row["id"])
        status = "pending" if kind == "snapshot" else ("error" if row["id"] in failed and not kind else "completed")
        items.append(_snapshot_item(row, status, tags[row["id"]], numbers.get(row["account"])))
    items = query.apply_filters(items, filters, SNAPSHOT_FILTERS)
    page, next_token = query.paginate(items, max_results, token)
    return {"snapshotSet": page, "nextToken": next_token}
