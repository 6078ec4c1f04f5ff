"""The Debian cloud-init machine image (roles/cloud_image), built once per session through its playbook.

The image lands in ``<repo>/.cache/cloud-image`` (or ``$EUCA_CLOUD_IMAGE_DIR``) and survives
sessions: the role rebuilds it only when its inputs change (a cold build takes a minute or two,
a warm run a few seconds). It is a whole-disk qcow2 (MBR, syslinux, FAT boot partition, ext4
root) that boots under SeaBIOS with no kernel or ramdisk given, runs cloud-init with the
datasources NoCloud, Ec2 and None, and gives the EC2 key to the user ``debian``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import runner

REPO_ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO_ROOT / "playbooks" / "cloud-image.yml"
ROLE_FILES = REPO_ROOT / "roles" / "cloud_image" / "files"
DEFAULT_DIR = REPO_ROOT / ".cache" / "cloud-image"
_built: dict = {}


def image_dir() -> Path:
    """Where the session's cloud image lives."""
    return Path(os.environ.get("EUCA_CLOUD_IMAGE_DIR", str(DEFAULT_DIR)))


def build_cloud_image(directory: os.PathLike | None = None, extravars: dict | None = None) -> runner.Run:
    """Run playbooks/cloud-image.yml on localhost into ``directory``; returns the run."""
    extra = {"euca_cloud_image_hosts": "localhost", "cloud_image_dir": str(directory or image_dir())}
    extra.update(extravars or {})
    return runner.run_playbook(PLAYBOOK, extravars=extra, inventory=runner.local_inventory())


def cloud_image_paths() -> dict:
    """Build (or find cached) the image once per process; returns what the role publishes as
    ``cloud_image_info``: the manifest (``name, file, sha256, size_bytes, format, virtual_size_bytes,
    digest, default_user, suite, kernel_version, root_uuid``) plus ``dir`` and ``path``."""
    if not _built:
        with runner.build_lock(image_dir()):  # one build at a time, also across pytest-xdist workers
            run = build_cloud_image()
        if run.rc != 0:
            raise RuntimeError("building the cloud image failed:\n" + run.stdout[-3000:])
        manifest = json.loads((image_dir() / "manifest.json").read_text())
        _built.update(manifest, dir=str(image_dir()), path=str(image_dir() / manifest["file"]))
    return dict(_built)
