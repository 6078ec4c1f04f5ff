# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Volumes, snapshots and attachments.

"A volume is never attached twice" is the attachments table's primary key; the write lock
makes the check-then-attach atomic, so of two racing attach requests exactly one wins and
the other is told who holds the volume.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger import accounts, ids
from ansible_collections.euca.cloud.plugins.module_utils.ledger.cloud import get_cluster
from ansible_collections.euca.cloud.plugins.module_utils.ledger.instances import get_instance
from ansible_collections.euca.cloud.plugins.module_utils.ledger.schema import now
from ansible_collections.euca.cloud.plugins.module_utils.model import names

# vda is the root disk and vdz the NoCloud seed (compute/domain.py)
DEVICES = names.VOLUME_DEVICES


def view(txn, row, account=None):
    """A volume as modules return it, with its attachment if any (its name in ``account``'s words)."""
    attachment = txn.row("SELECT instance_id, device FROM attachments WHERE volume_id = ?", row["id"])
    return {
        "id": row["id"],
        "name": accounts.label_display(row["name"], account),
        "account": row["account"],
        "cluster": row["cluster"],
        "size_gb": row["size_gb"],
        "snapshot_id": row["snapshot_id"],
        "state": row["state"],
        "attachment": {"instance": attachment["instance_id"], "device": attachment["device"]} if attachment else None,
    }


def snapshot_view(row, account=None):
    """A snapshot as modules return it."""
    out = dict((k, row[k]) for k in ("id", "name", "volume_id", "size_gb", "account"))
    out["name"] = accounts.label_display(out["name"], account)
    return out


def resolve(txn, ref, account=None):
    """A volume row by id or name (``account``'s name for it); NotFound otherwise, also for one it may not see."""
    key = ref if account is None or names.looks_like("volume", ref) else accounts.label_key(account, "volume", ref)
    found = txn.row("SELECT * FROM volumes WHERE id = ? OR name = ?", ref, key)
    if found is None or (account is not None and not accounts.sees(txn, account, found["account"])):
        raise NotFound("InvalidVolume.NotFound: unknown volume %r" % (ref,))
    return found


def _snapshot(txn, ref, account):
    key = ref if names.looks_like("snapshot", ref) else accounts.label_key(account, "snapshot", ref)
    found = txn.row("SELECT * FROM snapshots WHERE id = ? OR name = ?", ref, key)
    if found is None or not accounts.sees(txn, account, found["account"]):
        raise NotFound("InvalidSnapshot.NotFound: unknown snapshot %r" % (ref,))
    return found


def _detach(txn, volume_id):
    txn.exec("DELETE FROM attachments WHERE volume_id = ?", volume_id)
    txn.exec("UPDATE volumes SET state = 'available' WHERE id = ?", volume_id)


def ensure_volume(txn, name=None, volume_id=None, state="present", cluster=None, size_gb=None, snapshot=None,
                  force_detach=False, account=accounts.ADMIN):
    """Create (``present``) or delete (``absent``) ``account``'s volume found by ``volume_id`` or ``name``.

    A new volume counts against the account's ``max_volume_gb``; another account's volume is not found.
    """
    if not (name or volume_id):
        raise InvalidInput("a volume is found by name or volume_id; give one of them")
    accounts.get_account(txn, account)
    label = name
    if name:
        names.check_name("volume", name)
        name = accounts.label_key(account, "volume", name)
    found = txn.row("SELECT * FROM volumes WHERE id = ?", volume_id) if volume_id else txn.row(
        "SELECT * FROM volumes WHERE name = ?", name)
    if found is not None and not accounts.sees(txn, account, found["account"]):
        if volume_id:
            found = None
        else:
            raise NotFound("InvalidVolume.NotFound: unknown volume %r" % (label,))
    before = view(txn, found, account) if found else {}
    if state == "absent":
        if not found:
            return {"changed": False, "before": {}, "after": {}, "volume": {}}
        attachment = before["attachment"]
        if attachment and not force_detach:
            raise Conflict(
                "volume %s is attached to %s as %s; detach it first or pass force_detach=true"
                % (found["id"], attachment["instance"], attachment["device"])
            )
        _detach(txn, found["id"])
        txn.exec("DELETE FROM volumes WHERE id = ?", found["id"])
        return {"changed": True, "before": before, "after": {}, "volume": {}}

    if found:
        if size_gb is not None and size_gb != found["size_gb"]:
            raise Conflict("volume %s is %d GiB; volumes cannot be resized (create a new one from a snapshot)"
                           % (found["id"], found["size_gb"]))
        if cluster is not None and cluster != found["cluster"]:
            raise Conflict("volume %s lives in cluster %s, not %s" % (found["id"], found["cluster"], cluster))
        return {"changed": False, "before": before, "after": before, "volume": before}
    if volume_id:
        raise NotFound("InvalidVolume.NotFound: unknown volume %r; to create a volume give name, not volume_id" % volume_id)
    if not cluster:
        raise InvalidInput("volume %s is new: cluster must be given" % label)
    get_cluster(txn, cluster)
    snapshot_row = None
    if snapshot:
        snapshot_row = _snapshot(txn, snapshot, account)
        size_gb = size_gb if size_gb is not None else snapshot_row["size_gb"]
        if size_gb < snapshot_row["size_gb"]:
            raise InvalidInput("volume %s: size_gb %d is smaller than snapshot %s (%d GiB)"
                               % (name, size_gb, snapshot_row["id"], snapshot_row["size_gb"]))
    if not isinstance(size_gb, int) or size_gb <= 0:
        raise InvalidInput("volume %s: size_gb must be a positive integer" % label)
    accounts.check_quota(txn, account, max_volume_gb=size_gb)
    new = ids.new_id(txn, "volume")
    txn.exec(
        "INSERT INTO volumes (id, name, cluster, size_gb, snapshot_id, state, created_at, account) "
        "VALUES (?, ?, ?, ?, ?, 'available', ?, ?)",
        new, name, cluster, size_gb, snapshot_row["id"] if snapshot_row else None, now(), account,
    )
    after = view(txn, resolve(txn, new), account)
    return {"changed": True, "before": {}, "after": after, "volume": after}


def ensure_attachment(txn, volume, instance=None, device=None, state="attached", account=accounts.ADMIN):
    """Attach ``volume`` to ``instance`` (``attached``) or detach it (``detached``); both ``account``'s."""
    accounts.get_account(txn, account)
    row = resolve(txn, volume, account)
    before = view(txn, row, account)
    current = before["attachment"]
    if state == "detached":
        if not current:
            return {"changed": False, "before": before, "after": before, "volume": before}
        if instance and current["instance"] != instance:
            raise Conflict("volume %s is attached to %s, not %s" % (row["id"], current["instance"], instance))
        _detach(txn, row["id"])
        after = view(txn, resolve(txn, row["id"]), account)
        return {"changed": True, "before": before, "after": after, "volume": after}

    if not instance:
        raise InvalidInput("attaching volume %s needs instance" % row["id"])
    target = get_instance(txn, instance, account)
    if target["account"] != row["account"]:
        raise Conflict("volume %s belongs to account %s and instance %s to account %s: a volume is attached to its own "
                       "account's instances" % (row["id"], row["account"], instance, target["account"]))
    if current:
        if current["instance"] != instance:
            raise Conflict(
                "volume %s is attached to %s as %s; detach it first" % (row["id"], current["instance"], current["device"])
            )
        if device and device != current["device"]:
            raise Conflict("volume %s is attached to %s as %s, not %s" % (row["id"], instance, current["device"], device))
        return {"changed": False, "before": before, "after": before, "volume": before}
    if target["state"] not in ("pending", "running", "stopped"):
        raise Conflict("instance %s is %s; a volume can only be attached to a live instance" % (instance, target["state"]))
    if target["cluster"] != row["cluster"]:
        raise Conflict("volume %s is in cluster %s but instance %s runs in %s" % (row["id"], row["cluster"], instance, target["cluster"]))
    used = set(r["device"] for r in txn.rows("SELECT device FROM attachments WHERE instance_id = ?", instance))
    if device:
        device = names.check_device(device)
        if device in used:
            holder = txn.value("SELECT volume_id FROM attachments WHERE instance_id = ? AND device = ?", instance, device)
            raise Conflict("instance %s already has volume %s as %s" % (instance, holder, device))
    else:
        free = [d for d in DEVICES if d not in used]
        if not free:
            raise Conflict("instance %s has no free device name left" % instance)
        device = free[0]
    txn.exec("INSERT INTO attachments (volume_id, instance_id, device, attached_at) VALUES (?, ?, ?, ?)",
             row["id"], instance, device, now())
    txn.exec("UPDATE volumes SET state = 'in-use' WHERE id = ?", row["id"])
    after = view(txn, resolve(txn, row["id"]), account)
    return {"changed": True, "before": before, "after": after, "volume": after}


def ensure_snapshot(txn, name, volume=None, state="present", account=accounts.ADMIN):
    """Record (``present``) or forget (``absent``) ``account``'s snapshot of ``volume`` by name."""
    names.check_name("snapshot", name)
    accounts.get_account(txn, account)
    label, name = name, accounts.label_key(account, "snapshot", name)
    found = txn.row("SELECT * FROM snapshots WHERE name = ?", name)
    if found is not None and not accounts.sees(txn, account, found["account"]):
        raise NotFound("InvalidSnapshot.NotFound: unknown snapshot %r" % (label,))
    before = snapshot_view(found, account) if found else {}
    if state == "absent":
        if not found:
            return {"changed": False, "before": {}, "after": {}, "snapshot": {}}
        users = [r["id"] for r in txn.rows("SELECT id FROM volumes WHERE snapshot_id = ? ORDER BY id", found["id"])]
        if users:
            raise Conflict("snapshot %s is the source of volumes %s; delete them first" % (found["id"], ", ".join(users[:10])))
        txn.exec("DELETE FROM snapshots WHERE id = ?", found["id"])
        return {"changed": True, "before": before, "after": {}, "snapshot": {}}
    if found:
        if volume and resolve(txn, volume, account)["id"] != found["volume_id"]:
            raise Conflict("snapshot %s (%s) was taken of %s, not %s" % (found["id"], name, found["volume_id"], volume))
        return {"changed": False, "before": before, "after": before, "snapshot": before}
    if not volume:
        raise InvalidInput("snapshot %s is new: volume must be given" % name)
    source = resolve(txn, volume, account)
    new = ids.new_id(txn, "snapshot")
    owner = account
    txn.exec("INSERT INTO snapshots (id, name, volume_id, size_gb, created_at, account) VALUES (?, ?, ?, ?, ?, ?)",
             new, name, source["id"], source["size_gb"], now(), owner)
    after = {"id": new, "name": label, "volume_id": source["id"], "size_gb": source["size_gb"], "account": owner}
    return {"changed": True, "before": {}, "after": after, "snapshot": after}
