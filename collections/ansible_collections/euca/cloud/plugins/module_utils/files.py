# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""State files of the data plane's daemons: read (None when absent) and written atomically."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os

from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError


def read_text(path):
    """The file's text, None when it does not exist; EucaError for any other failure."""
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise EucaError("cannot read %s: %s" % (path, exc))


def write_atomic(path, text, mode):
    """Write ``text`` to ``path`` with ``mode`` through a synced temporary file renamed into place
    (a reader sees the old file or the new one, never part of one); the directory is made (0700)."""
    directory = os.path.dirname(path)
    tmp = os.path.join(directory, ".%s.new" % os.path.basename(path))
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except (IOError, OSError) as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise EucaError("cannot write %s: %s" % (path, exc))
