# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""GetConsoleOutput on a node controller: the end of an instance's serial console log.

QEMU appends the guest's serial console to ``console.log`` in the instance's directory (the
domain's ``<serial type='file'>`` source, see domain.py), across reboots and restarts. This reads
its last bytes, as EC2 returns at most the last 64 KiB, base64-encoded. Reads only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import datetime
import os

from ansible_collections.euca.cloud.plugins.module_utils.compute import domain
from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput, NotFound

#: EC2's limit: GetConsoleOutput returns the most recent 64 KB of output
MAX_BYTES = 64 * 1024
LOG_NAME = "console.log"


def read_tail(path, max_bytes=MAX_BYTES):
    """``(data, size, mtime)`` of the log at ``path``: its last ``max_bytes`` bytes, its size, its
    modification time (a POSIX timestamp); ``(b"", 0, None)`` when there is no log yet.

    A tail that starts inside a UTF-8 character loses that character's continuation bytes, so the
    text does not begin with a replacement character."""
    try:
        handle = open(path, "rb")
    except (IOError, OSError) as exc:
        if not os.path.exists(path):
            return b"", 0, None
        raise InvalidInput("cannot read the console log %s: %s" % (path, exc))
    with handle:
        info = os.fstat(handle.fileno())
        start = max(0, info.st_size - max_bytes)
        handle.seek(start)
        data = handle.read(max_bytes)
    if start > 0:
        skip = 0
        while skip < min(3, len(data)) and 0x80 <= data[skip] <= 0xBF:
            skip += 1
        data = data[skip:]
    return data, info.st_size, info.st_mtime


def iso8601(timestamp):
    """A POSIX timestamp as EC2 writes times: ``2026-12-01T20:21:56.000Z`` (UTC, milliseconds)."""
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def log_path(conn, instance_id, instances_dir, uri):
    """The console log of ``instance_id`` as its libvirt domain names it (the instance directory's
    ``console.log`` when the domain has no file serial); NotFound when libvirt has no such domain."""
    import libvirt  # the module reports a missing libvirt-python before this runs

    if not domain.NAME_RE.match(instance_id or ""):
        raise InvalidInput("InvalidInstanceID.Malformed: %r is not an instance id (like i-0a1b2c3d)" % (instance_id,))
    try:
        dom = conn.lookupByName(instance_id)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise NotFound("InvalidInstanceID.NotFound: the instance ID '%s' does not exist on this node (%s)"
                           % (instance_id, uri), instance_id=instance_id)
        raise
    spec = domain.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    return spec.get("console_log") or os.path.join(instances_dir, instance_id, LOG_NAME)


def console_output(conn, params):
    """The nc_console_output module's result for ``params`` (name, max_bytes, instances_dir, uri)."""
    max_bytes = params["max_bytes"]
    if max_bytes < 1 or max_bytes > MAX_BYTES:
        raise InvalidInput("max_bytes must be 1-%d (EC2 returns at most the last 64 KiB), not %d"
                           % (MAX_BYTES, max_bytes))
    path = log_path(conn, params["name"], params["instances_dir"], params["uri"])
    data, size, mtime = read_tail(path, max_bytes)
    return {
        "changed": False,
        "instance_id": params["name"],
        "output": data.decode("utf-8", "replace"),
        "output_base64": base64.b64encode(data).decode("ascii"),
        "timestamp": iso8601(mtime),
        "console_log": path,
        "log_bytes": size,
        "truncated": len(data) < size,
    }
