# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A node's cephx key as a libvirt secret (usage type ceph), which an RBD disk's ``<auth>`` names
by uuid so that QEMU's librbd authenticates as that client.

The secret is private (libvirt never hands its value back), so whether it holds the key asked for
is told by the key's SHA-256, kept in the secret's description. The uuid is derived from the user
unless given, so every node of a site names the same client's secret alike and a playbook can
compute it without asking the node.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import hashlib
import re
import uuid as _uuid
import xml.etree.ElementTree as ET

from ansible_collections.euca.cloud.plugins.module_utils.compute.instances import LibvirtFailed
from ansible_collections.euca.cloud.plugins.module_utils.compute.volumes import UUID_RE
from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, InvalidInput

try:
    import libvirt
except ImportError:  # the module reports missing_required_lib
    libvirt = None

USER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
UUID_NAMESPACE = _uuid.UUID("6d0f4f9e-3c1b-5a57-9a52-2f1c0e7f3b11")


def default_uuid(user):
    """The uuid of ``client.<user>``'s secret when none is given."""
    return str(_uuid.uuid5(UUID_NAMESPACE, "ceph:client." + user))


def usage_name(user):
    return "client.%s secret" % user


def check(user, key=None, uuid=None):
    """``(user, raw key bytes or None, uuid)``; InvalidInput before libvirt is asked anything."""
    if not isinstance(user, str) or not USER_RE.match(user):
        raise InvalidInput("user %r is not a cephx client name (the part after client.)" % (user,))
    raw = None
    if key is not None:
        try:
            raw = base64.b64decode(key.strip(), validate=True)
        except (binascii.Error, ValueError, AttributeError):
            raise InvalidInput("key is not a cephx key (base64, as ceph auth get-key prints it)")
        if len(raw) < 16:
            raise InvalidInput("key is not a cephx key (base64 of at least 16 bytes, as ceph auth get-key prints it)")
    uuid = (uuid or default_uuid(user)).lower()
    if not UUID_RE.match(uuid):
        raise InvalidInput("uuid %r is not a uuid" % (uuid,))
    return user, raw, uuid


def _describe(raw):
    return "euca.cloud cephx key sha256:%s" % hashlib.sha256(raw).hexdigest()


def _secret_xml(uuid, user, description):
    root = ET.Element("secret", {"ephemeral": "no", "private": "yes"})
    ET.SubElement(root, "uuid").text = uuid
    ET.SubElement(root, "description").text = description
    usage = ET.SubElement(root, "usage", {"type": "ceph"})
    ET.SubElement(usage, "name").text = usage_name(user)
    return ET.tostring(root, encoding="unicode")


def _view(secret, user):
    if secret is None:
        return None
    node = ET.fromstring(secret.XMLDesc(0))
    return {"uuid": secret.UUIDString(), "user": user, "usage": secret.usageID(),
            "key_sha256": (node.findtext("description") or "").rpartition("sha256:")[2] or None}


def _lookup(conn, user, uuid):
    """The secret of ``user``'s usage; Conflict when that usage has another uuid than asked."""
    try:
        secret = conn.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_CEPH, usage_name(user))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_SECRET:
            raise LibvirtFailed("looking up the secret of client.%s failed: %s" % (user, exc))
        secret = None
    if secret is not None and secret.UUIDString() != uuid:
        raise Conflict("libvirt already has a ceph secret for client.%s with uuid %s, not %s; remove it first or give "
                       "uuid=%s" % (user, secret.UUIDString(), uuid, secret.UUIDString()))
    return secret


def converge(conn, user, key=None, uuid=None, state="present", check_mode=False):
    """Make libvirt's ceph secret of ``client.<user>`` hold ``key`` (present) or not exist (absent)."""
    user, raw, uuid = check(user, key if state == "present" else None, uuid)
    if state == "present" and raw is None:
        raise InvalidInput("key is required with state=present")
    secret = _lookup(conn, user, uuid)
    before = _view(secret, user)
    if state == "absent":
        changed = secret is not None
        if changed and not check_mode:
            try:
                secret.undefine()
            except libvirt.libvirtError as exc:
                raise LibvirtFailed("removing the secret of client.%s failed: %s" % (user, exc))
        return {"changed": changed, "secret": None if changed and not check_mode else before,
                "diff": {"before": before or {}, "after": {}}}
    want = hashlib.sha256(raw).hexdigest()
    changed = before is None or before["key_sha256"] != want
    after = {"uuid": uuid, "user": user, "usage": usage_name(user), "key_sha256": want}
    if changed and not check_mode:
        # the key's digest goes in last: a run killed before the value is set leaves a secret
        # without it, which the next run sets again
        try:
            secret = conn.secretDefineXML(_secret_xml(uuid, user, "euca.cloud cephx key (being set)"), 0)
            secret.setValue(raw, 0)
            secret = conn.secretDefineXML(_secret_xml(uuid, user, _describe(raw)), 0)
        except libvirt.libvirtError as exc:
            raise LibvirtFailed("defining the secret of client.%s failed: %s" % (user, exc))
        after = _view(secret, user)
    return {"changed": changed, "secret": after, "diff": {"before": before or {}, "after": after}}
