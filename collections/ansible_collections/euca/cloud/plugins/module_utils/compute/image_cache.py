# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node controller's image cache: verified images that instances' overlays are backed by.

The seed's NCs downloaded an image into a cache and then copied it for every launch. Here an
image is downloaded once, verified against the ledger's checksum, renamed into place, and
then only ever read: every instance's root disk is a qcow2 overlay on top of it.

On disk (a contract: the instance lifecycle reads it directly)::

    <root>/<image_id>/image          the verified bytes (0444)
    <root>/<image_id>/meta.json      {"id", "checksum", "size_bytes", "location", "fetched_at", "last_used"}
    <root>/<image_id>/pins/<holder>  an instance (holder = its id) is backed by this image
    <root>/.locks/<image_id>         fcntl lock for fetching or removing this image
    <root>/.locks/evict              fcntl lock for eviction passes
    <root>/.partial/                 downloads in progress (renamed into <image_id>/ once verified)

Concurrent fetches of one image (separate processes) download it once: the second waits on
the image's lock and then finds it verified. A download that does not match its checksum is
deleted and leaves the cache as it was. Eviction is least-recently-used down to a size cap and
never touches a pinned image.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import threading
import time

from ansible.module_utils.urls import open_url

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, EucaError, InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.model import names

ID_RE = names.id_pattern(*names.IMAGE_KINDS)
CHECKSUM_RE = re.compile(r"^(sha256:)?[0-9a-f]{64}$")
CHUNK = 1 << 20
UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 1000 ** 2, "mib": 1 << 20,
         "g": 1 << 30, "gb": 1000 ** 3, "gib": 1 << 30, "t": 1 << 40, "tb": 1000 ** 4, "tib": 1 << 40}


class FetchFailed(EucaError):
    """An image could not be downloaded or did not verify; the cache is unchanged."""


def parse_size(value):
    """Bytes from an int or a string such as ``20GiB``, ``512M`` or ``1000000``."""
    if isinstance(value, int):
        size = value
    else:
        match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$", str(value))
        if not match or match.group(2).lower() not in UNITS:
            raise InvalidInput("size %r is not a size (e.g. 20GiB, 512MiB or a number of bytes)" % (value,))
        size = int(float(match.group(1)) * UNITS[match.group(2).lower()])
    if size < 0:
        raise InvalidInput("size %r must not be negative" % (value,))
    return size


def check_id(image_id):
    """An image id (emi-/eki-/eri- and 8 hex digits), or InvalidInput."""
    if not isinstance(image_id, str) or not ID_RE.match(image_id):
        raise InvalidInput("%r is not an image id (emi-, eki- or eri- and 8 hex digits)" % (image_id,))
    return image_id


def normal_checksum(checksum):
    """``sha256:<hex>``, or InvalidInput."""
    if not isinstance(checksum, str) or not CHECKSUM_RE.match(checksum.lower()):
        raise InvalidInput("checksum %r must be a sha256 hex digest (optionally prefixed 'sha256:')" % (checksum,))
    checksum = checksum.lower()
    return checksum if checksum.startswith("sha256:") else "sha256:" + checksum


def lru_victims(entries, cap_bytes, keep=()):
    """Which entries to evict, oldest use first, so the total fits ``cap_bytes``.

    ``entries``: dicts with id, size_bytes, last_used, pins. Pinned entries and those in
    ``keep`` are never chosen (they still count towards the total)."""
    total = sum(e["size_bytes"] for e in entries)
    victims = []
    for entry in sorted(entries, key=lambda e: (e["last_used"], e["id"])):
        if total <= cap_bytes:
            break
        if entry["pins"] or entry["id"] in keep:
            continue
        victims.append(entry["id"])
        total -= entry["size_bytes"]
    return victims


@contextlib.contextmanager
def _locked(path):
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _write_json(path, data):
    partial = "%s.partial.%d.%d" % (path, os.getpid(), threading.get_ident())  # nc_instance's batch has threads
    with open(partial, "w") as handle:
        json.dump(data, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(partial, path)


class ImageCache:
    """The cache rooted at ``root``."""

    def __init__(self, root):
        self.root = root

    def _dir(self, image_id):
        return os.path.join(self.root, check_id(image_id))

    def _lock(self, name):
        locks = os.path.join(self.root, ".locks")
        os.makedirs(locks, exist_ok=True)
        return _locked(os.path.join(locks, name))

    def entry(self, image_id):
        """Meta, path and pins of a complete cached image; None when it is not cached."""
        directory = self._dir(image_id)
        path = os.path.join(directory, "image")
        try:
            with open(os.path.join(directory, "meta.json")) as handle:
                meta = json.load(handle)
        except (IOError, OSError, ValueError):
            return None
        if not os.path.isfile(path):
            return None
        return dict(meta, path=path, pins=self.holders(image_id))

    def entries(self):
        """Every complete cached image."""
        if not os.path.isdir(self.root):
            return []
        found = []
        for name in sorted(os.listdir(self.root)):
            if ID_RE.match(name):
                entry = self.entry(name)
                if entry is not None:
                    found.append(entry)
        return found

    def path(self, image_id):
        """The path of a cached image, or NotFound naming the fix."""
        entry = self.entry(image_id)
        if entry is None:
            raise NotFound("image %s is not in the node's image cache at %s; fetch it with euca.cloud.image_cache "
                           "first" % (image_id, self.root))
        return entry["path"]

    def holders(self, image_id):
        """The instances pinned to an image."""
        pins = os.path.join(self._dir(image_id), "pins")
        return sorted(os.listdir(pins)) if os.path.isdir(pins) else []

    def _touch(self, image_id):
        meta_path = os.path.join(self._dir(image_id), "meta.json")
        try:
            with open(meta_path) as handle:
                meta = json.load(handle)
        except (IOError, OSError, ValueError):
            return
        meta["last_used"] = time.time()
        _write_json(meta_path, meta)

    def pin(self, image_id, holder):
        """Mark ``holder`` (an instance id) as backed by the image; it cannot be evicted meanwhile."""
        self.path(image_id)
        pins = os.path.join(self._dir(image_id), "pins")
        with self._lock(image_id):
            self.path(image_id)  # not removed meanwhile
            os.makedirs(pins, exist_ok=True)
            open(os.path.join(pins, holder), "a").close()
            self._touch(image_id)

    def unpin(self, image_id, holder):
        """Remove ``holder``'s pin (no error when there is none)."""
        try:
            os.unlink(os.path.join(self._dir(image_id), "pins", holder))
        except OSError:
            pass

    def fetch(self, image_id, location, checksum, size_bytes=None, timeout=600, opener=None, force=False):
        """Make the image present and verified; returns ``{path, downloaded, size_bytes}``.

        ``opener(url, timeout=...)`` returns a file-like response; Ansible's open_url by default.
        """
        checksum = normal_checksum(checksum)
        directory = self._dir(image_id)
        with self._lock(image_id):
            entry = self.entry(image_id)
            if entry is not None and force and entry["pins"]:
                raise Conflict("image %s is in use by %s; it cannot be replaced under them (force)"
                               % (image_id, ", ".join(entry["pins"])))
            if entry is not None and not force:
                if entry["checksum"] != checksum:
                    raise Conflict("image %s is cached with checksum %s but the ledger says %s; the cache entry is "
                                   "damaged or the id is wrong (force=true replaces it)"
                                   % (image_id, entry["checksum"], checksum))
                self._touch(image_id)
                return {"path": entry["path"], "downloaded": False, "size_bytes": entry["size_bytes"]}
            size = self._download(image_id, location, checksum, size_bytes, timeout, opener)
            _write_json(os.path.join(directory, "meta.json"), {
                "id": image_id, "checksum": checksum, "size_bytes": size, "location": location,
                "fetched_at": time.time(), "last_used": time.time()})
            return {"path": os.path.join(directory, "image"), "downloaded": True, "size_bytes": size}

    def _download(self, image_id, location, checksum, size_bytes, timeout, opener):
        if not location:
            raise InvalidInput("image %s has no location to fetch it from" % image_id)
        directory = self._dir(image_id)
        staging = os.path.join(self.root, ".partial")
        os.makedirs(staging, exist_ok=True)
        partial = os.path.join(staging, "%s.%d" % (image_id, os.getpid()))
        digest = hashlib.sha256()
        size = 0
        try:
            if opener is None:
                opener = open_url
            try:
                response = opener(location, timeout=timeout)
            except Exception as exc:  # urllib and open_url raise a variety of errors
                raise FetchFailed("cannot fetch image %s from %s: %s" % (image_id, location, exc))
            with open(partial, "wb") as out:
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    digest.update(block)
                    out.write(block)
                    size += len(block)
                out.flush()
                os.fsync(out.fileno())
            got = "sha256:" + digest.hexdigest()
            if got != checksum:
                raise FetchFailed("image %s from %s does not match its checksum: expected %s, got %s (%d bytes); "
                                  "the cache is unchanged" % (image_id, location, checksum, got, size))
            if size_bytes is not None and size != size_bytes:
                raise FetchFailed("image %s from %s has %d bytes, the ledger says %d; the cache is unchanged"
                                  % (image_id, location, size, size_bytes))
            os.chmod(partial, 0o444)
            os.makedirs(directory, exist_ok=True)
            os.rename(partial, os.path.join(directory, "image"))
            return size
        finally:
            if os.path.exists(partial):
                os.unlink(partial)

    def remove(self, image_id):
        """Delete a cached image; Conflict when instances are pinned to it. True when removed."""
        directory = self._dir(image_id)
        if not os.path.isdir(directory):
            return False
        with self._lock(image_id):
            holders = self.holders(image_id)
            if holders:
                raise Conflict("image %s is in use by %s; terminate them first" % (image_id, ", ".join(holders)))
            # rename first: a reader never sees a half-deleted entry as complete
            doomed = "%s.removing.%d" % (directory, os.getpid())
            os.rename(directory, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    def evict(self, cap_bytes, keep=()):
        """Evict least-recently-used unpinned images not in ``keep`` until the cache fits ``cap_bytes``."""
        if not os.path.isdir(self.root):
            return []
        evicted = []
        with self._lock("evict"):
            for image_id in lru_victims(self.entries(), cap_bytes, keep):
                try:
                    if self.remove(image_id):
                        evicted.append(image_id)
                except Conflict:
                    continue  # pinned meanwhile
        return evicted


def converge(cache, images, state="present", size_cap=None, timeout=600, force=False, check_mode=False, opener=None):
    """The image_cache module: make ``images`` (ledger image records) present or absent.

    Everything is validated first; with a cap, the requested images alone must fit in it.
    Returns ``{changed, images: {id: {path, downloaded, size_bytes}}, evicted: [...]}``.
    """
    wanted = []
    for record in images or []:
        if not isinstance(record, dict):
            raise InvalidInput("each image must be a dict with id, location and checksum, not %r" % (record,))
        image_id = check_id(record.get("id"))
        if state == "present":
            if not record.get("location"):
                raise InvalidInput("image %s has no location to fetch it from" % image_id)
            checksum = normal_checksum(record.get("checksum"))
            size = record.get("size_bytes")
            if size is not None:
                size = parse_size(size)
            wanted.append({"id": image_id, "location": record["location"], "checksum": checksum, "size_bytes": size})
        else:
            wanted.append({"id": image_id})
    if len(set(w["id"] for w in wanted)) != len(wanted):
        raise InvalidInput("an image is listed twice")
    cap = parse_size(size_cap) if size_cap is not None else None
    if state == "absent":
        removed = []
        for item in wanted:
            entry = cache.entry(item["id"])
            if entry is None:
                continue
            if entry["pins"]:
                raise Conflict("image %s is in use by %s; terminate them first" % (item["id"], ", ".join(entry["pins"])))
            if not check_mode:
                cache.remove(item["id"])
            removed.append(item["id"])
        return {"changed": bool(removed), "removed": removed, "images": {}, "evicted": []}
    if cap is not None:
        known = sum(w["size_bytes"] or 0 for w in wanted)
        if known > cap:
            raise InvalidInput("the requested images need %d bytes, more than size_cap (%d bytes)" % (known, cap))
    out, changed = {}, False
    for item in wanted:
        entry = cache.entry(item["id"])
        if entry is not None and not force:
            if entry["checksum"] != item["checksum"]:
                raise Conflict("image %s is cached with checksum %s but the ledger says %s; the cache entry is "
                               "damaged or the id is wrong (force=true replaces it)"
                               % (item["id"], entry["checksum"], item["checksum"]))
            out[item["id"]] = {"path": entry["path"], "downloaded": False, "size_bytes": entry["size_bytes"]}
            continue
        changed = True
        if check_mode:
            out[item["id"]] = {"path": os.path.join(cache.root, item["id"], "image"), "downloaded": True,
                               "size_bytes": item["size_bytes"]}
            continue
        os.makedirs(cache.root, exist_ok=True)
        out[item["id"]] = cache.fetch(item["id"], item["location"], item["checksum"], item["size_bytes"],
                                      timeout=timeout, opener=opener, force=force)
    evicted = []
    if cap is not None:
        keep = set(out)
        if check_mode:
            entries = cache.entries() + [{"id": k, "size_bytes": v["size_bytes"] or 0, "last_used": time.time(),
                                          "pins": []} for k, v in out.items() if v["downloaded"]]
            evicted = lru_victims(entries, cap, keep)
        else:
            evicted = cache.evict(cap, keep)
        changed = changed or bool(evicted)
    return {"changed": changed, "images": out, "evicted": evicted}
