"""The locally built guest image (roles/test_image), built once per session through its playbook.

The image lands in ``<repo>/.cache/test-image`` (or ``$EUCA_TEST_IMAGE_DIR``) and survives
sessions: the role rebuilds it only when its inputs change, so a warm run costs a few seconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import runner

REPO_ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO_ROOT / "playbooks" / "test-image.yml"
DEFAULT_DIR = REPO_ROOT / ".cache" / "test-image"
_built: dict = {}


def image_dir() -> Path:
    """Where the session's test image lives."""
    return Path(os.environ.get("EUCA_TEST_IMAGE_DIR", str(DEFAULT_DIR)))


def build_guest_image(directory: os.PathLike | None = None, extravars: dict | None = None) -> runner.Run:
    """Run playbooks/test-image.yml on localhost into ``directory``; returns the run."""
    extra = {"euca_test_image_hosts": "localhost", "test_image_dir": str(directory or image_dir())}
    extra.update(extravars or {})
    return runner.run_playbook(PLAYBOOK, extravars=extra, inventory=runner.local_inventory())


def guest_image_paths() -> dict:
    """Build (or find cached) the image once per process; returns what the role publishes as ``test_image_info``:
    ``{dir, name, kernel_version, kernel: {path, sha256, size_bytes, file}, ramdisk: {...}, root: {...}}``."""
    if not _built:
        with runner.build_lock(image_dir()):  # one build at a time, also across pytest-xdist workers
            run = build_guest_image()
        if run.rc != 0:
            raise RuntimeError("building the test image failed:\n" + run.stdout[-3000:])
        manifest = json.loads((image_dir() / "manifest.json").read_text())
        fact = {"dir": str(image_dir()), "name": manifest["name"], "kernel_version": manifest["kernel_version"]}
        for role, entry in manifest["files"].items():
            fact[role] = dict(entry, path=str(image_dir() / entry["file"]))
        _built.update(fact)
    return dict(_built)


def fill_image_cache(cache_dir: str, guest_image: dict, ids: dict) -> None:
    """Put the test image into a node's image cache as the nc modules expect it.

    ``ids`` maps ``image``/``kernel``/``ramdisk`` to the image ids to file them under.
    """
    import shutil
    import time

    for key, source in (("image", "root"), ("kernel", "kernel"), ("ramdisk", "ramdisk")):
        entry = os.path.join(cache_dir, ids[key])
        os.makedirs(entry)
        shutil.copyfile(guest_image[source]["path"], os.path.join(entry, "image"))
        with open(os.path.join(entry, "meta.json"), "w") as handle:
            json.dump({"id": ids[key], "checksum": "sha256:" + guest_image[source]["sha256"],
                       "size_bytes": guest_image[source]["size_bytes"], "location": None,
                       "fetched_at": time.time(), "last_used": time.time()}, handle)
