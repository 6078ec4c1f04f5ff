# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Volume and snapshot lifecycle on a storage controller: gather -> plan -> apply.

Safe by default (as linux-system-roles/storage's safe mode): an attached volume is never
deleted, and a volume that holds data is deleted only when the caller says ``force``. A volume
only grows; shrinking would cut off the guest's filesystem.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.storage.backends import GIB, check_name, image_size


def converge_volume(store, name, state="present", size_gb=None, snapshot=None, force=False, attached_to=None,
                    check_mode=False, image_file=None):
    """Make volume ``name`` present (created, from ``snapshot`` or ``image_file`` if given, grown to
    ``size_gb``) or absent."""
    check_name(name)
    if not name.startswith("vol-"):
        raise InvalidInput("%s is not a volume id (vol- and 8 hex digits)" % name)
    if size_gb is not None and size_gb < 1:
        raise InvalidInput("size_gb must be at least 1, not %d" % size_gb)
    if snapshot is not None:
        check_name(snapshot)
        if image_file:
            raise InvalidInput("a volume starts from a snapshot or from an image_file, not both")
    before = store.info(name)
    plan = []
    if state == "absent":
        if before is not None:
            if attached_to:
                raise Conflict("volume %s is attached to %s; detach it first" % (name, attached_to))
            if before.get("watchers") and not force:
                raise Conflict("volume %s is open by %s (a guest's QEMU or another client); detach it first, or pass "
                               "force=true to cut those clients off (ceph osd blocklist)"
                               % (name, ", ".join(before["watchers"])))
            if before["has_data"] and not force:
                raise Conflict("volume %s holds data; pass force=true to delete it and its data" % name)
            plan = store.plan_delete(name, force=force)
    elif before is None:
        source = None
        if snapshot is not None:
            source = store.info(snapshot)
            if source is None:
                raise NotFound("snapshot %s does not exist on this storage controller" % snapshot)
        image_bytes = image_size(image_file) if image_file else 0
        if size_gb is None and source is None and not image_file:
            raise InvalidInput("size_gb is required to create volume %s" % name)
        size = max(size_gb * GIB if size_gb else 0, source["size_bytes"] if source else 0, image_bytes)
        plan = store.plan_create(name, size, source=snapshot, image=image_file)
    elif size_gb is not None:
        want = size_gb * GIB
        if want < before["size_bytes"]:
            raise InvalidInput("volume %s has %d GiB; shrinking it to %d GiB would cut off its data (volumes only grow)"
                               % (name, before["size_bytes"] // GIB, size_gb))
        if want > before["size_bytes"]:
            plan = store.plan_resize(name, want)
    if plan and not check_mode:
        store.apply(plan)
    after = before if not plan or check_mode else store.info(name)
    return {"changed": bool(plan), "commands": store.render(plan), "volume": after if state != "absent" else None,
            "diff": {"before": before or {}, "after": (after or {}) if not check_mode else {"name": name, "state": state}}}


def converge_snapshot(store, name, volume=None, state="present", check_mode=False, force=False):
    """Make snapshot ``name`` of ``volume`` present (a copy of its moment) or absent. A snapshot
    that volumes were cloned from (rbd) is deleted only with ``force``, which flattens them first."""
    check_name(name)
    if not name.startswith("snap-"):
        raise InvalidInput("%s is not a snapshot id (snap- and 8 hex digits)" % name)
    before = store.info(name)
    plan = []
    if state == "absent":
        if before is not None:
            if before.get("clones") and not force:
                raise Conflict("snapshot %s has volumes cloned from it (%s); delete them first, or pass force=true to "
                               "flatten them (a full copy of each)" % (name, ", ".join(before["clones"])))
            plan = store.plan_delete(name, force=force)
        elif hasattr(store, "plan_sweep"):
            plan = store.plan_sweep()
    elif before is not None and before.get("incomplete"):
        plan = store.plan_snapshot(before["volume"], name)
    elif before is None:
        if volume is None:
            raise InvalidInput("volume is required to create snapshot %s" % name)
        if store.info(check_name(volume)) is None:
            raise NotFound("volume %s does not exist on this storage controller" % volume)
        plan = store.plan_snapshot(volume, name)
    if plan and not check_mode:
        store.apply(plan)
    return {"changed": bool(plan), "commands": store.render(plan),
            "snapshot": store.info(name) if state == "present" and not check_mode else before}
