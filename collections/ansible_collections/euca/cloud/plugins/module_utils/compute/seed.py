# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The NoCloud seed disk of an instance: an ISO 9660 image labelled ``cidata``.

cloud-init (and the test image's init) reads ``meta-data`` (instance-id, local-hostname, public-keys) and
``user-data`` from it. Written next to the instance's overlay and renamed into place, so a
guest never sees half a seed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import tempfile

from ansible_collections.euca.cloud.plugins.module_utils.process import run


def meta_data(instance_id, hostname, public_keys=None):
    """The ``meta-data`` document (YAML): cloud-init's NoCloud reads ``public-keys`` for the default user."""
    text = "instance-id: %s\nlocal-hostname: %s\n" % (instance_id, hostname)
    if public_keys:
        # each key as a JSON string: valid YAML whatever the key's comment holds
        text += "public-keys:\n" + "".join("  - %s\n" % json.dumps(k) for k in public_keys)
    return text


def write(path, instance_id, hostname, user_data=None, public_keys=None):
    """Build the seed ISO at ``path`` (atomically) with genisoimage."""
    directory = os.path.dirname(path)
    work = tempfile.mkdtemp(prefix=".seed-", dir=directory)
    try:
        with open(os.path.join(work, "meta-data"), "w") as handle:
            handle.write(meta_data(instance_id, hostname, public_keys))
        with open(os.path.join(work, "user-data"), "w") as handle:
            handle.write(user_data or "")
        partial = os.path.join(work, "seed.iso")
        run(["genisoimage", "-quiet", "-output", partial, "-volid", "cidata", "-joliet", "-rock",
             os.path.join(work, "meta-data"), os.path.join(work, "user-data")])
        os.chmod(partial, 0o644)
        os.rename(partial, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
