# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a storage controller keeps volume bytes (ARCHITECTURE §6): sparse files, LVM thin
volumes or Ceph RBD images.

Each backend answers ``info(name)`` (None when absent) and turns a change into a plan: a list
of steps, each a command line (``argv``) or a file operation the file backend performs itself.
Plans are pure values, rendered for check mode and ``--diff`` before anything runs; live
execution of the lvm and rbd plans needs device-mapper or a Ceph cluster.

Snapshots are point-in-time copies: a sparse copy of the file (a reflink where the filesystem
has them), an LVM thin snapshot, an RBD image copy. The copy is consistent when the volume is
not being written (detached, or the guest's filesystem frozen).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os

from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.model import names
from ansible_collections.euca.cloud.plugins.module_utils.process import run

GIB = 1 << 30
NAME_RE = names.id_pattern("volume", "snapshot")


class StorageFailed(EucaError):
    """The backend could not carry out a step."""


def check_name(name):
    """A volume or snapshot id (vol-/snap- and 8 hex digits)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidInput("%r is not a volume or snapshot id (vol- or snap- and 8 hex digits)" % (name,))
    return name


class FileBackend:
    """Sparse raw files: ``<directory>/<vol-id>.img`` and ``<directory>/snapshots/<snap-id>.img``."""

    name = "file"

    def __init__(self, directory):
        self.directory = directory

    def path(self, name):
        check_name(name)
        if name.startswith("snap-"):
            return os.path.join(self.directory, "snapshots", name + ".img")
        return os.path.join(self.directory, name + ".img")

    def info(self, name):
        """``{name, path, size_bytes, has_data}`` or None."""
        path = self.path(name)
        if not os.path.exists(path):
            return None
        return {"name": name, "path": path, "size_bytes": os.path.getsize(path), "has_data": has_data(path)}

    # plans: ("op", args...) tuples; rendered as commands for the operator
    def plan_create(self, name, size_bytes, source=None, image=None):
        if source:
            return [("copy", self.path(source), self.path(name)), ("truncate", self.path(name), size_bytes)]
        if image:
            return [("convert", image, self.path(name)), ("truncate", self.path(name), size_bytes)]
        return [("truncate", self.path(name), size_bytes)]

    def plan_resize(self, name, size_bytes):
        return [("truncate", self.path(name), size_bytes)]

    def plan_delete(self, name):
        return [("unlink", self.path(name))]

    def plan_snapshot(self, volume, snapshot):
        return [("copy", self.path(volume), self.path(snapshot))]

    @staticmethod
    def render(plan):
        """The plan as shell-like lines (what check mode and the result show)."""
        lines = []
        for step in plan:
            if step[0] == "truncate":
                lines.append("truncate -s %d %s" % (step[2], step[1]))
            elif step[0] == "copy":
                lines.append("cp --sparse=always --reflink=auto %s %s" % (step[1], step[2]))
            elif step[0] == "unlink":
                lines.append("rm %s" % step[1])
            elif step[0] == "convert":
                lines.append(" ".join(convert_argv(step[1], step[2])))
        return lines

    def apply(self, plan):
        """Carry out the plan; a new file appears only complete (written beside it, then renamed)."""
        for step in plan:
            if step[0] == "truncate":
                _path, size = step[1], step[2]
                os.makedirs(os.path.dirname(_path), exist_ok=True)
                if not os.path.exists(_path):
                    partial = _path + ".partial"
                    with open(partial, "wb") as handle:
                        handle.truncate(size)
                        os.fsync(handle.fileno())
                    os.rename(partial, _path)
                else:
                    with open(_path, "r+b") as handle:
                        handle.truncate(size)
                        os.fsync(handle.fileno())
            elif step[0] == "copy":
                source, dest = step[1], step[2]
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                partial = dest + ".partial"
                run(["cp", "--sparse=always", "--reflink=auto", source, partial])
                with open(partial, "rb") as handle:
                    os.fsync(handle.fileno())
                os.rename(partial, dest)
            elif step[0] == "convert":
                os.makedirs(os.path.dirname(step[2]), exist_ok=True)
                partial = step[2] + ".partial"
                run(convert_argv(step[1], partial))
                with open(partial, "rb") as handle:
                    os.fsync(handle.fileno())
                os.rename(partial, step[2])
            elif step[0] == "unlink":
                try:
                    os.unlink(step[1])
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        raise


def convert_argv(image, dest, existing=False):
    """qemu-img writing ``image`` (raw or qcow2) as raw bytes to ``dest``, keeping holes sparse."""
    return ["qemu-img", "convert", "-q", "-O", "raw"] + (["-n"] if existing else ["-S", "4k"]) + [image, dest]


def image_size(image):
    """The virtual size (bytes) of an image file, or InvalidInput."""
    if not os.path.isfile(image):
        raise InvalidInput("image_file %s does not exist" % image)
    import json  # pylint: disable=import-outside-toplevel
    rc, out, err = run(["qemu-img", "info", "-U", "--output=json", image], check=False)
    if rc != 0:
        raise InvalidInput("image_file %s is not a disk image qemu-img reads: %s" % (image, err.strip()))
    return int(json.loads(out)["virtual-size"])


def has_data(path):
    """Whether a file holds any data block (a new sparse volume does not)."""
    with open(path, "rb") as handle:
        try:
            os.lseek(handle.fileno(), 0, getattr(os, "SEEK_DATA", 3))
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return False
            raise
    return True


class LvmBackend:
    """Thin logical volumes in ``<vg>/<pool>``; snapshots are thin snapshots."""

    name = "lvm"

    def __init__(self, pool):
        if not pool or "/" not in pool:
            raise InvalidInput("lvm needs thin_pool as <volume group>/<thin pool>, not %r" % (pool,))
        self.vg, self.pool = pool.split("/", 1)

    def path(self, name):
        return "/dev/%s/%s" % (self.vg, check_name(name))

    def info(self, name):
        rc, out, _err = run(["lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_size,data_percent",
                             "%s/%s" % (self.vg, check_name(name))], check=False)
        if rc != 0 or not out.strip():
            return None
        size, used = (out.split() + ["0"])[:2]
        return {"name": name, "path": self.path(name), "size_bytes": int(size), "has_data": float(used or 0) > 0}

    def plan_create(self, name, size_bytes, source=None, image=None):
        if source:
            return [["lvcreate", "-q", "-s", "-kn", "-n", name, "%s/%s" % (self.vg, source)]] + (
                [["lvextend", "-q", "-L", "%db" % size_bytes, "%s/%s" % (self.vg, name)]] if size_bytes else [])
        create = [["lvcreate", "-q", "-T", "%s/%s" % (self.vg, self.pool), "-V", "%db" % size_bytes, "-n", name]]
        return create + ([convert_argv(image, self.path(name), existing=True)] if image else [])

    def plan_resize(self, name, size_bytes):
        return [["lvextend", "-q", "-L", "%db" % size_bytes, "%s/%s" % (self.vg, name)]]

    def plan_delete(self, name):
        return [["lvremove", "-q", "-y", "%s/%s" % (self.vg, name)]]

    def plan_snapshot(self, volume, snapshot):
        return [["lvcreate", "-q", "-s", "-n", snapshot, "%s/%s" % (self.vg, volume)]]

    @staticmethod
    def render(plan):
        return [" ".join(step) for step in plan]

    def apply(self, plan):
        for step in plan:
            rc, _out, err = run(step, check=False)
            if rc != 0:
                hint = (" (this kernel has no device-mapper: LVM volumes need a host with it)"
                        if "device-mapper" in err else "")
                raise StorageFailed("%s failed: %s%s" % (" ".join(step), err.strip(), hint))


class RbdBackend:
    """Ceph RBD images in ``pool`` (optional: needs a Ceph cluster and the rbd client)."""

    name = "rbd"

    def __init__(self, pool):
        if not pool:
            raise InvalidInput("rbd needs rbd_pool")
        self.pool = pool

    def path(self, name):
        return "rbd:%s/%s" % (self.pool, check_name(name))

    def info(self, name):
        rc, out, _err = run(["rbd", "info", "--format", "json", "%s/%s" % (self.pool, check_name(name))], check=False)
        if rc != 0:
            return None
        import json  # pylint: disable=import-outside-toplevel
        data = json.loads(out)
        return {"name": name, "path": self.path(name), "size_bytes": int(data["size"]), "has_data": True}

    def plan_create(self, name, size_bytes, source=None, image=None):
        if image:
            return [["rbd", "create", "--size", "%dM" % (size_bytes >> 20), "%s/%s" % (self.pool, name)],
                    convert_argv(image, "rbd:%s/%s" % (self.pool, name), existing=True)]
        if source:
            return [["rbd", "cp", "%s/%s" % (self.pool, source), "%s/%s" % (self.pool, name)],
                    ["rbd", "resize", "--size", "%dM" % (size_bytes >> 20), "%s/%s" % (self.pool, name)]]
        return [["rbd", "create", "--size", "%dM" % (size_bytes >> 20), "%s/%s" % (self.pool, name)]]

    def plan_resize(self, name, size_bytes):
        return [["rbd", "resize", "--size", "%dM" % (size_bytes >> 20), "%s/%s" % (self.pool, name)]]

    def plan_delete(self, name):
        return [["rbd", "rm", "%s/%s" % (self.pool, name)]]

    def plan_snapshot(self, volume, snapshot):
        # a snapshot is an image of its own (a copy), like the file backend's, so it outlives
        # its volume and seeds new volumes the same way on every backend
        return [["rbd", "cp", "%s/%s" % (self.pool, volume), "%s/%s" % (self.pool, snapshot)]]

    @staticmethod
    def render(plan):
        return [" ".join(step) for step in plan]

    def apply(self, plan):
        for step in plan:
            run(step)


def backend(kind, volumes_dir=None, thin_pool=None, rbd_pool=None):
    """The backend object for the module's options."""
    if kind == "file":
        return FileBackend(volumes_dir)
    if kind == "lvm":
        return LvmBackend(thin_pool)
    if kind == "rbd":
        return RbdBackend(rbd_pool)
    raise InvalidInput("backend must be file, lvm or rbd, not %r" % (kind,))


STORAGE_ARGS = dict(
    backend=dict(type="str", default="file", choices=["file", "lvm", "rbd"]),
    volumes_dir=dict(type="path", default="/var/lib/euca/volumes"),
    thin_pool=dict(type="str"),
    rbd_pool=dict(type="str"),
)


def from_params(params):
    """The backend of a storage module's options (STORAGE_ARGS)."""
    return backend(params["backend"], params["volumes_dir"], params["thin_pool"], params["rbd_pool"])
