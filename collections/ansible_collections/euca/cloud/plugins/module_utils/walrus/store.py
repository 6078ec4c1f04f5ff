# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Walrus, the image store: a directory of ``<bucket>/<key>`` objects that an HTTP server serves.

An object is written to a temporary file beside its final name, hashed while it is copied,
synced and renamed, so a node never downloads half an image. Its sha256 is kept in a sidecar
``<key>.sha256`` with the size and mtime it was computed for, so a no-op run does not re-read
gigabytes to find out nothing changed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re

from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError, InvalidInput, NotFound

BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
CHUNK = 1 << 20


class ChecksumMismatch(EucaError):
    """The bytes are not what the caller said they are; the store is unchanged."""


def check_location(bucket, key):
    """Validate a bucket name and an object key (path segments, no '..', no leading '/')."""
    if not isinstance(bucket, str) or not BUCKET_RE.match(bucket) or ".." in bucket:
        raise InvalidInput("bucket %r must be 3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a "
                           "letter or digit" % (bucket,))
    if not isinstance(key, str) or not key or any(not SEGMENT_RE.match(part) for part in key.split("/")):
        raise InvalidInput("key %r must be '/'-separated names of A-Z, a-z, 0-9, '.', '_' and '-' that do not start "
                           "with '.' (no '..', no leading or trailing '/')" % (key,))


def sha256_file(path):
    """``(sha256:<hex>, size)`` of a file, read once."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
            size += len(block)
    return "sha256:" + digest.hexdigest(), size


def _sidecar(path):
    return path + ".sha256"


def object_checksum(path):
    """The stored object's checksum, from its sidecar when that still describes the file."""
    st = os.stat(path)
    try:
        with open(_sidecar(path)) as handle:
            checksum, size, mtime = handle.read().split()
        if int(size) == st.st_size and int(mtime) == st.st_mtime_ns:
            return checksum
    except (IOError, OSError, ValueError):
        pass
    checksum, _size = sha256_file(path)
    _write_sidecar(path, checksum)
    return checksum


def _write_sidecar(path, checksum):
    st = os.stat(path)
    partial = _sidecar(path) + ".partial"
    with open(partial, "w") as handle:
        handle.write("%s %d %d\n" % (checksum, st.st_size, st.st_mtime_ns))
    os.rename(partial, _sidecar(path))


def describe(store_dir, bucket, key, base_url):
    """What the store holds at bucket/key: ``{path, checksum, size_bytes, location}`` or None."""
    path = os.path.join(store_dir, bucket, key)
    if not os.path.isfile(path):
        return None
    return {"path": path, "checksum": object_checksum(path), "size_bytes": os.path.getsize(path),
            "location": "%s/%s/%s" % (base_url.rstrip("/"), bucket, key) if base_url else None}


def store(store_dir, bucket, key, src, base_url=None, checksum=None, check_mode=False):
    """Make bucket/key hold the bytes of ``src``; returns the module result."""
    check_location(bucket, key)
    if checksum is not None:
        if not re.match(r"^(sha256:)?[0-9a-f]{64}$", str(checksum)):
            raise InvalidInput("checksum %r must be a sha256 hex digest (optionally prefixed 'sha256:')" % (checksum,))
        checksum = checksum if checksum.startswith("sha256:") else "sha256:" + checksum
    if not os.path.isfile(src):
        raise NotFound("src %s is not a file on the walrus host" % src)
    before = describe(store_dir, bucket, key, base_url)
    src_size = os.path.getsize(src)
    if before is not None and before["size_bytes"] == src_size:
        src_sum, _size = sha256_file(src)
        if src_sum == before["checksum"]:
            if checksum is not None and checksum != src_sum:
                raise ChecksumMismatch("%s has checksum %s, not %s; the store is unchanged" % (src, src_sum, checksum))
            return dict(before, changed=False, diff={"before": before, "after": before})
    if check_mode:
        src_sum, _size = sha256_file(src)
        if checksum is not None and checksum != src_sum:
            raise ChecksumMismatch("%s has checksum %s, not %s; the store is unchanged" % (src, src_sum, checksum))
        after = {"path": os.path.join(store_dir, bucket, key), "checksum": src_sum, "size_bytes": src_size,
                 "location": "%s/%s/%s" % (base_url.rstrip("/"), bucket, key) if base_url else None}
        return dict(after, changed=True, diff={"before": before or {}, "after": after})
    path = os.path.join(store_dir, bucket, key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = "%s.partial.%d" % (path, os.getpid())
    digest = hashlib.sha256()
    try:
        with open(src, "rb") as source, open(partial, "wb") as out:
            for block in iter(lambda: source.read(CHUNK), b""):
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        got = "sha256:" + digest.hexdigest()
        if checksum is not None and got != checksum:
            raise ChecksumMismatch("%s has checksum %s, not %s; the store is unchanged" % (src, got, checksum))
        os.chmod(partial, 0o644)
        os.rename(partial, path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    _write_sidecar(path, got)
    after = describe(store_dir, bucket, key, base_url)
    return dict(after, changed=True, diff={"before": before or {}, "after": after})


def remove(store_dir, bucket, key, check_mode=False):
    """Delete bucket/key (and its sidecar); returns the module result."""
    check_location(bucket, key)
    path = os.path.join(store_dir, bucket, key)
    if not os.path.exists(path):
        return {"changed": False, "path": path}
    if not check_mode:
        os.unlink(path)
        if os.path.exists(_sidecar(path)):
            os.unlink(_sidecar(path))
    return {"changed": True, "path": path}
