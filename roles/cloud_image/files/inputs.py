#!/usr/bin/python3
"""The inputs of the cloud image and their digest (stdlib only).

Usage: inputs.py FILES SUITE MIRROR PACKAGES DISK_MB BOOT_MB NAME USER
  PACKAGES is comma-separated; an empty MIRROR means this machine's own apt source for SUITE
  (deb822 .sources first, then one-line .list files, as molecule/multinode/hosts.py finds it).
Prints JSON: {"mirror": ..., "packages": "a,b,...", "digest": ...}. The digest covers every file
under FILES (the build script, this script, the root filesystem overlay, syslinux.cfg), the
suite, the mirror, the package list (sorted) and the other arguments.
"""

import hashlib
import json
import os
import re
import sys


def apt_mirror(suite, sources_dir="/etc/apt/sources.list.d", sources_list="/etc/apt/sources.list"):
    uris = []
    names = sorted(os.listdir(sources_dir)) if os.path.isdir(sources_dir) else []
    for name in names:
        if name.endswith(".sources"):
            with open(os.path.join(sources_dir, name)) as handle:
                for stanza in handle.read().split("\n\n"):
                    fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
                    if "deb" in fields.get("Types", "").split() and suite in fields.get("Suites", "").split():
                        uris += fields.get("URIs", "").split()
    for path in [sources_list] + [os.path.join(sources_dir, n) for n in names if n.endswith(".list")]:
        if os.path.exists(path):
            with open(path) as handle:
                for line in handle:
                    match = re.match(r"^deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
                    if match and match.group(3) == suite:
                        uris.append(match.group(2))
    if not uris:
        raise SystemExit("inputs.py: no apt source for %s in %s or %s; set cloud_image_mirror"
                         % (suite, sources_list, sources_dir))
    return uris[0]


def files_digest(root):
    sha = hashlib.sha256()
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            path = os.path.join(top, name)
            rel = os.path.relpath(path, root)
            with open(path, "rb") as handle:
                content = hashlib.sha256(handle.read()).hexdigest()
            mode = os.stat(path).st_mode & 0o777
            sha.update(("%s %o %s\n" % (rel, mode, content)).encode())
    return sha.hexdigest()


def inputs(files, suite, mirror, packages, disk_mb, boot_mb, name, user):
    mirror = mirror or apt_mirror(suite)
    package_list = sorted({p.strip() for p in packages.split(",") if p.strip()})
    material = [files_digest(files), suite, mirror, package_list, int(disk_mb), int(boot_mb), name, user]
    digest = hashlib.sha256(json.dumps(material).encode()).hexdigest()
    return {"mirror": mirror, "packages": ",".join(package_list), "digest": digest}


if __name__ == "__main__":
    if len(sys.argv) != 9:
        raise SystemExit(__doc__)
    print(json.dumps(inputs(*sys.argv[1:])))
