# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image records (``emi-``/``eki-``/``eri-``): what the bytes in walrus are, not the bytes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger import accounts, history, ids
from ansible_collections.euca.cloud.plugins.module_utils.ledger.schema import now
from ansible_collections.euca.cloud.plugins.module_utils.model import names

KINDS = ("machine", "kernel", "ramdisk")
FORMATS = ("raw", "qcow2", "kernel", "ramdisk")
# Fields that describe the bytes; changing them means a different image.
IMMUTABLE = ("kind", "checksum", "size_bytes", "format", "kernel_id", "ramdisk_id")
VIEW = ("id", "name") + IMMUTABLE + ("location", "account")


def _view(row):
    return dict((k, row[k]) for k in VIEW)


def visible(txn, account, row):
    """True when ``account`` may launch ``row``: its own images and the admin account's (public) ones."""
    return row["account"] in (account, accounts.ADMIN) or accounts.is_admin(txn, account)


def resolve(txn, ref, kind=None, account=None):
    """An image row by id or by name; NotFound naming the fix otherwise (also one ``account`` may not see)."""
    found = txn.row("SELECT * FROM images WHERE id = ? OR name = ?", ref, ref)
    if found is None or (account is not None and not visible(txn, account, found)):
        raise NotFound("unknown image %r: register it with euca.cloud.image first" % (ref,))
    if kind and found["kind"] != kind:
        raise InvalidInput("image %s (%s) is a %s image, not a %s image" % (found["id"], found["name"], found["kind"], kind))
    return found


def _checksum(value):
    if not isinstance(value, str) or not re.match(r"^(sha256:)?[0-9a-f]{64}$", value):
        raise InvalidInput("checksum %r must be a sha256 hex digest (optionally prefixed 'sha256:')" % (value,))
    return value if value.startswith("sha256:") else "sha256:" + value


def ensure_image(txn, name, state="present", kind="machine", checksum=None, size_bytes=None, image_format=None,
                 kernel=None, ramdisk=None, location=None, account=accounts.ADMIN):
    """Register (``present``) or deregister (``absent``) an image by name.

    A new registration belongs to ``account``; the admin account's images are public (every account
    launches them), another account's are its own. Only the owner (or the admin account) changes
    or deregisters one; to any other account it is not there.
    """
    names.check_name("image", name)
    accounts.get_account(txn, account)
    found = txn.row("SELECT * FROM images WHERE name = ?", name)
    if found is not None and not accounts.sees(txn, account, found["account"]):
        if state == "absent":
            raise NotFound("unknown image %r" % (name,))
        raise Conflict("image name %s is taken (image names are unique across the cloud); choose another" % name)
    before = _view(found) if found else {}
    if state == "absent":
        if not found:
            return {"changed": False, "before": {}, "after": {}, "image": {}}
        users = [r["id"] for r in txn.rows(
            "SELECT id FROM instances WHERE image_id = ? AND state <> 'terminated' ORDER BY id", found["id"])]
        if users:
            raise Conflict("image %s (%s) is used by instances %s; terminate them first" % (found["id"], name, ", ".join(users[:10])))
        refs = [r["name"] for r in txn.rows(
            "SELECT name FROM images WHERE kernel_id = ? OR ramdisk_id = ? ORDER BY name", found["id"], found["id"])]
        if refs:
            raise Conflict("image %s (%s) is the kernel or ramdisk of images %s; deregister them first" % (found["id"], name, ", ".join(refs)))
        history.delete_terminated_instances(txn, "image_id", found["id"])
        txn.exec("DELETE FROM images WHERE id = ?", found["id"])
        return {"changed": True, "before": before, "after": {}, "image": {}}

    if kind not in KINDS:
        raise InvalidInput("image %s: kind must be one of %s" % (name, ", ".join(KINDS)))
    if image_format is None:
        image_format = found["format"] if found else ("raw" if kind == "machine" else kind)
    if image_format not in FORMATS:
        raise InvalidInput("image %s: format must be one of %s" % (name, ", ".join(FORMATS)))
    if not found and (checksum is None or size_bytes is None):
        raise InvalidInput("image %s is new: checksum and size_bytes must be given" % name)
    desired = {
        "name": name,
        "kind": kind,
        "checksum": _checksum(checksum) if checksum is not None else found["checksum"],
        "size_bytes": size_bytes if size_bytes is not None else found["size_bytes"],
        "format": image_format,
        # Left out on an existing image means "keep", as for every other field.
        "kernel_id": resolve(txn, kernel, "kernel", account)["id"] if kernel else (found["kernel_id"] if found else None),
        "ramdisk_id": resolve(txn, ramdisk, "ramdisk", account)["id"] if ramdisk else (found["ramdisk_id"] if found else None),
        "location": location if location is not None else (found["location"] if found else None),
    }
    if not isinstance(desired["size_bytes"], int) or desired["size_bytes"] < 0:
        raise InvalidInput("image %s: size_bytes must be a non-negative integer" % name)
    if kind != "machine" and (kernel or ramdisk):
        raise InvalidInput("image %s: only machine images take a kernel or ramdisk" % name)
    desired["account"] = found["account"] if found else account
    if found:
        desired["id"] = found["id"]
        differs = [f for f in IMMUTABLE if desired[f] != found[f]]
        if differs:
            raise Conflict(
                "image %s (%s) is registered with other %s; images are immutable: register the new bytes under a new "
                "name, or deregister this one first" % (found["id"], name, ", ".join(differs))
            )
        if desired["location"] == found["location"]:
            return {"changed": False, "before": before, "after": before, "image": before}
        txn.exec("UPDATE images SET location = ? WHERE id = ?", desired["location"], found["id"])
        after = _view(desired)
        return {"changed": True, "before": before, "after": after, "image": after}
    desired["id"] = ids.new_id(txn, kind)
    txn.exec(
        "INSERT INTO images (id, name, kind, checksum, size_bytes, format, kernel_id, ramdisk_id, location, created_at, "
        "account) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        desired["id"], name, kind, desired["checksum"], desired["size_bytes"], image_format,
        desired["kernel_id"], desired["ramdisk_id"], desired["location"], now(), account,
    )
    after = _view(desired)
    return {"changed": True, "before": {}, "after": after, "image": after}
