# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a storage controller keeps volume bytes (ARCHITECTURE §6): sparse files, LVM thin
volumes or Ceph RBD images.

Each backend answers ``info(name)`` (None when absent) and turns a change into a plan: a list
of steps, each a command line (``argv``) or a file operation the file backend performs itself.
Plans are pure values, rendered for check mode and ``--diff`` before anything runs; live
execution of the lvm plans needs device-mapper, of the rbd plans a Ceph cluster.

Snapshots are point-in-time copies: a sparse copy of the file (a reflink where the filesystem
has them), an LVM thin snapshot, a protected RBD snapshot (whose clones are new volumes). The copy is consistent when the volume is
not being written (detached, or the guest's filesystem frozen).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import re

from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.model import names
from ansible_collections.euca.cloud.plugins.module_utils.process import check_namespace, run

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

    def plan_delete(self, name, force=False):  # pylint: disable=unused-argument
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

    def plan_delete(self, name, force=False):  # pylint: disable=unused-argument
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


POOL_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\Z")
CEPH_USER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")


class RbdBackend:
    """Ceph RBD images in ``pool``, through the ``rbd`` client (ceph-common) as ``client.<user>``.

    A volume is the image ``<pool>/<vol-id>``. A snapshot is a protected RBD snapshot of its
    volume's image (``<pool>/<vol-id>@<snap-id>``), and a volume made from it is an RBD clone of it:
    copy-on-write, constant time whatever the size. A volume deleted while it still has snapshots
    is renamed ``<vol-id>.deleted`` (EC2's snapshots outlive their volume); it goes when its last
    snapshot does. Images that take several steps to make (a clone then grown, an image file
    written in) are made as ``<vol-id>.partial`` and renamed when complete, so a step killed
    half-way leaves no volume that looks finished; the next run removes the partial one first.
    """

    name = "rbd"
    DELETED = ".deleted"
    PARTIAL = ".partial"

    def __init__(self, pool, conf=None, user=None, keyring=None, namespace=None, timeout=300):
        if not pool:
            raise InvalidInput("rbd needs rbd_pool")
        if not POOL_RE.match(pool):
            raise InvalidInput("rbd_pool %r is not a Ceph pool name (letters, digits, _ . -)" % (pool,))
        if user is not None and not CEPH_USER_RE.match(user):
            raise InvalidInput("ceph_user %r is not a cephx client name (the part after client.)" % (user,))
        self.pool, self.conf, self.user, self.keyring = pool, conf, user, keyring
        self.namespace, self.timeout = namespace, timeout

    # ---------------------------------------------------------------- the client
    def client_args(self):
        """``--conf``, ``--id`` and ``--keyring`` as given (rbd and ceph take the same)."""
        args = []
        for flag, value in (("--conf", self.conf), ("--id", self.user), ("--keyring", self.keyring)):
            if value:
                args += [flag, value]
        return args

    def qemu_target(self, image):
        """QEMU's rbd: file name of ``image`` with this client's identity (qemu-img, librbd)."""
        target = "rbd:%s/%s" % (self.pool, image)
        for key, value in (("id", self.user), ("conf", self.conf), ("keyring", self.keyring)):
            if value:
                if ":" in value or "@" in value:
                    raise InvalidInput("%s %r cannot be given to QEMU's rbd driver (it holds ':' or '@')" % (key, value))
                target += ":%s=%s" % (key, value)
        return target

    def _run(self, argv, check=True):
        argv = [str(a) for a in argv]
        if argv[0] in ("rbd", "ceph"):
            argv = argv[:1] + self.client_args() + argv[1:]
        return run(argv, namespace=self.namespace, check=check, timeout=self.timeout)

    def _json(self, *args):
        """``rbd <args> --format json``: the answer, or None when the image or pool does not exist."""
        rc, out, err = self._run(["rbd"] + list(args) + ["--format", "json"], check=False)
        if rc == 0:
            return json.loads(out or "null")
        if rc == errno.ENOENT and "error opening pool" in err:
            raise StorageFailed("Ceph pool %s does not exist (or client.%s may not see it): %s"
                                % (self.pool, self.user or "admin", err.strip()))
        if rc == errno.ENOENT:
            return None
        raise StorageFailed("rbd %s failed (rc=%d): %s" % (" ".join(args), rc, err.strip()))

    def spec(self, image, snapshot=None):
        return "%s/%s%s" % (self.pool, image, "@" + snapshot if snapshot else "")

    def path(self, name):
        if check_name(name).startswith("snap-"):
            found = self._find_snapshot(name)
            return "rbd:" + self.spec(found["image"] if found else "?", name)
        return "rbd:" + self.spec(name)

    # ---------------------------------------------------------------- what is there
    def listing(self):
        """Every image and snapshot of the pool, as ``rbd ls -l`` shows them."""
        return self._json("ls", "-l", self.pool) or []

    def _find_snapshot(self, name):
        for entry in self.listing():
            if entry.get("snapshot") == name:
                return entry
        return None

    def children(self, image, snapshot):
        """The images cloned from ``image@snapshot``."""
        return sorted(child["image"] for child in (self._json("children", self.spec(image, snapshot)) or [])
                      if child.get("pool") == self.pool)

    def info(self, name):
        """A volume: ``{name, path, size_bytes, has_data, parent, snapshots, watchers}``; a snapshot:
        ``{name, path, size_bytes, has_data, volume, image, protected, incomplete, clones}``; or None."""
        if check_name(name).startswith("snap-"):
            found = self._find_snapshot(name)
            if found is None:
                return None
            image = found["image"]
            protected = str(found.get("protected")).lower() == "true"
            return {"name": name, "path": "rbd:" + self.spec(image, name), "size_bytes": int(found["size"]),
                    "has_data": True, "image": image, "volume": image.split(".", 1)[0], "protected": protected,
                    "incomplete": not protected, "clones": self.children(image, name) if protected else []}
        data = self._json("info", self.spec(name))
        if data is None:
            return None
        usage = self._json("du", self.spec(name)) or {"images": []}
        status = self._json("status", self.spec(name)) or {"watchers": []}
        parent = data.get("parent")
        snapshots = sorted(entry["snapshot"] for entry in usage["images"] if entry.get("snapshot"))
        used = any(int(entry.get("used_size") or 0) > 0 for entry in usage["images"])
        return {"name": name, "path": "rbd:" + self.spec(name), "size_bytes": int(data["size"]),
                "has_data": used or bool(parent),
                "parent": "%s/%s@%s" % (parent["pool"], parent["image"], parent["snapshot"]) if parent else None,
                "snapshots": snapshots,
                "watchers": sorted(w["address"] for w in status.get("watchers") or [])}

    # ---------------------------------------------------------------- plans
    @staticmethod
    def _size(size_bytes):
        return "%dB" % size_bytes

    def plan_create(self, name, size_bytes, source=None, image=None):
        if not source and not image:
            return [["rbd", "create", "--size", self._size(size_bytes), self.spec(name)]]
        partial = name + self.PARTIAL
        plan = [("rbd-rm-if-present", partial)]
        if source:
            found = self._find_snapshot(source)
            if found is None:
                raise StorageFailed("snapshot %s is not in pool %s" % (source, self.pool))
            plan.append(["rbd", "clone", self.spec(found["image"], source), self.spec(partial)])
            if size_bytes > int(found["size"]):
                plan.append(["rbd", "resize", "--size", self._size(size_bytes), self.spec(partial)])
        else:
            plan += [["rbd", "create", "--size", self._size(size_bytes), self.spec(partial)],
                     convert_argv(image, self.qemu_target(partial), existing=True)]
        return plan + [["rbd", "rename", self.spec(partial), self.spec(name)]]

    def plan_resize(self, name, size_bytes):
        return [["rbd", "resize", "--size", self._size(size_bytes), self.spec(name)]]

    def plan_delete(self, name, force=False):
        """A volume: removed, or renamed ``.deleted`` while it has snapshots; with ``force`` its
        watchers are blocklisted first. A snapshot: unprotected and removed, with ``force`` after
        its clones are flattened (made independent copies); its ``.deleted`` volume goes with the last."""
        found = self.info(name)
        if found is None:
            return []
        if name.startswith("vol-"):
            plan = [["ceph", "osd", "blocklist", "add", address] for address in found["watchers"]] if force else []
            if found["snapshots"]:
                return plan + [["rbd", "rename", self.spec(name), self.spec(name + self.DELETED)]]
            return plan + [["rbd", "rm", self.spec(name)]]
        image, plan = found["image"], []
        if found["protected"]:
            if force:
                plan += [["rbd", "flatten", self.spec(child)] for child in found["clones"]]
            plan.append(["rbd", "snap", "unprotect", self.spec(image, name)])
        plan.append(["rbd", "snap", "rm", self.spec(image, name)])
        return plan + self.plan_sweep(also=image, without=name)

    def plan_sweep(self, also=None, without=None):
        """Remove ``.deleted`` images left without snapshots (a run killed between a volume's last
        snapshot going and the image going)."""
        entries = self.listing()
        images = set(e["image"] for e in entries if e["image"].endswith(self.DELETED) and "snapshot" not in e)
        if also and also.endswith(self.DELETED):
            images.add(also)
        snapped = set(e["image"] for e in entries if e.get("snapshot") and e.get("snapshot") != without)
        return [["rbd", "rm", self.spec(image)] for image in sorted(images - snapped)]

    def plan_snapshot(self, volume, snapshot):
        found = self._find_snapshot(snapshot)
        if found is not None:  # made, not yet protected (a run killed in between)
            return [["rbd", "snap", "protect", self.spec(found["image"], snapshot)]]
        return [["rbd", "snap", "create", self.spec(volume, snapshot)],
                ["rbd", "snap", "protect", self.spec(volume, snapshot)]]

    def render(self, plan):
        lines = []
        for step in plan:
            if isinstance(step, tuple):
                lines.append("rbd rm %s (if present)" % self.spec(step[1]))
            else:
                lines.append(" ".join(step))
        return lines

    def apply(self, plan):
        for step in plan:
            if isinstance(step, tuple):
                if self._json("info", self.spec(step[1])) is not None:
                    self._run(["rbd", "rm", self.spec(step[1])])
                continue
            rc, _out, err = self._run(step, check=False)
            if rc != 0:
                raise StorageFailed("%s failed (rc=%d): %s" % (" ".join(step), rc, err.strip()[-1500:]))


def backend(kind, volumes_dir=None, thin_pool=None, rbd_pool=None, **ceph):
    """The backend object for the module's options (``ceph``: RbdBackend's client options)."""
    if kind == "file":
        return FileBackend(volumes_dir)
    if kind == "lvm":
        return LvmBackend(thin_pool)
    if kind == "rbd":
        return RbdBackend(rbd_pool, **ceph)
    raise InvalidInput("backend must be file, lvm or rbd, not %r" % (kind,))


STORAGE_ARGS = dict(
    backend=dict(type="str", default="file", choices=["file", "lvm", "rbd"]),
    volumes_dir=dict(type="path", default="/var/lib/euca/volumes"),
    thin_pool=dict(type="str"),
    rbd_pool=dict(type="str"),
    ceph_conf=dict(type="path"),
    ceph_user=dict(type="str"),
    ceph_keyring=dict(type="path", no_log=False),
    ceph_namespace=dict(type="str"),
)


def from_params(params):
    """The backend of a storage module's options (STORAGE_ARGS)."""
    return backend(params["backend"], params["volumes_dir"], params["thin_pool"], params["rbd_pool"],
                   conf=params.get("ceph_conf"), user=params.get("ceph_user"), keyring=params.get("ceph_keyring"),
                   namespace=check_namespace(params.get("ceph_namespace")))
