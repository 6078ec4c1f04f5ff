#!/usr/bin/env python3
"""P8: instance launch time with a 64 MiB vs a 4 GiB machine image (issue 4's launch goal).

The seed's NCs copied the cached image for every launch, so launch time grew with image size.
euca.cloud.nc_instance puts a qcow2 overlay over the cached image instead. This launches the
test image's guest (direct kernel boot) with two root images in the node's cache, the test
image's 64 MiB one and a 4 GiB sparse one, alternately, three times each, through the module
(ansible-runner, as a playbook would), inside a throwaway namespace with a private libvirtd.

Launch = the nc_instance task (define, overlay, seed, start) plus the guest's boot, DHCP lease
from our dnsmasq included, until it prints EUCA-READY on its console. The ratio of the medians is the goal (<= 1.1: the base is
never copied). Baseline named by the issue: the 64 MiB base.

Prints:
  P8 launch 4 GiB base vs 64 MiB base: <ratio> x (goal <= 1.1)
"""

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "collections"))

from harness import guest_image, libvirtd, netns  # noqa: E402
from harness.runner import run_module  # noqa: E402

GOAL = 1.1
ROUNDS = 3
NAME = "i-0000be0c"
MAC = "d0:0d:0a:4e:00:0a"


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def put_in_cache(cache_dir, image_id, source, size=None):
    """Place an image in the node's cache as euca.cloud.image_cache leaves it (file + meta.json)."""
    entry = os.path.join(cache_dir, image_id)
    os.makedirs(entry)
    path = os.path.join(entry, "image")
    subprocess.run(["cp", "--sparse=always", source, path], check=True)
    if size:
        os.truncate(path, size)
    with open(os.path.join(entry, "meta.json"), "w") as handle:
        json.dump({"id": image_id, "checksum": sha256(path), "size_bytes": os.path.getsize(path),
                   "location": None, "fetched_at": time.time(), "last_used": time.time()}, handle)


def launch(node, image_id):
    """Seconds from the nc_instance task's start to EUCA-READY on the console; then terminate."""
    args = dict(name=NAME, uri=node["uri"], namespace=node["ns"].name, cache_dir=node["cache"],
                instances_dir=node["instances"], image=image_id, kernel="eki-0000be0c", ramdisk="eri-0000be0c",
                memory_mb=128, nics=[{"bridge": "eubr-1", "mac": MAC}], shutdown_timeout=0)
    console = os.path.join(node["instances"], NAME, "console.log")
    started = time.monotonic()
    run = run_module("euca.cloud.nc_instance", args)
    if run.failed:
        raise SystemExit("launch failed: %s" % run.result.get("msg"))
    while "EUCA-READY" not in (open(console, errors="replace").read() if os.path.exists(console) else ""):
        if time.monotonic() - started > 120:
            raise SystemExit("the guest did not get ready within 120 s")
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    gone = run_module("euca.cloud.nc_instance", dict(args, state="absent"))
    if gone.failed:
        raise SystemExit("terminate failed: %s" % gone.result.get("msg"))
    return elapsed


def main():
    image = guest_image.guest_image_paths()
    ns = netns.Netns.create()
    work = tempfile.mkdtemp(prefix="euca-bench-nc-")
    os.chmod(work, 0o755)
    daemon = None
    try:
        ns.bridge("eubr-1")
        ns.addr("eubr-1", "10.78.0.1/24")
        dhcp_dir = os.path.join(work, "dhcp")
        dhcp = run_module("euca.cloud.dhcp", dict(
            namespace=ns.name, state_dir=dhcp_dir, user="root", state="overridden",
            config=[{"id": 1, "interface": "eubr-1", "subnet": "10.78.0.0/24", "gateway": "10.78.0.1",
                     "hosts": [{"mac": MAC, "ip": "10.78.0.10", "hostname": NAME}]}]))
        if dhcp.failed:
            raise SystemExit("dnsmasq: %s" % dhcp.result.get("msg"))
        ns.adopt(dhcp.result["dnsmasq"]["pid"])
        cache = os.path.join(work, "cache")
        put_in_cache(cache, "emi-00000064", image["root"]["path"])
        put_in_cache(cache, "emi-00004096", image["root"]["path"], size=4 << 30)
        put_in_cache(cache, "eki-0000be0c", image["kernel"]["path"])
        put_in_cache(cache, "eri-0000be0c", image["ramdisk"]["path"])
        daemon = libvirtd.start_in(ns)
        node = {"ns": ns, "uri": daemon.uri, "cache": cache, "instances": os.path.join(work, "instances")}
        launch(node, "emi-00000064")  # warm-up: libvirt's capability probe, page cache
        small, big = [], []
        for _ in range(ROUNDS):
            small.append(launch(node, "emi-00000064"))
            big.append(launch(node, "emi-00004096"))
    finally:
        if daemon is not None:
            daemon.stop()
        ns.delete()
        shutil.rmtree(work, ignore_errors=True)
    ratio = statistics.median(big) / statistics.median(small)
    print("launch to EUCA-READY, 64 MiB base: %s s (median %.2f)" % (" ".join("%.2f" % t for t in small),
                                                                     statistics.median(small)))
    print("launch to EUCA-READY, 4 GiB base:  %s s (median %.2f)" % (" ".join("%.2f" % t for t in big),
                                                                    statistics.median(big)))
    print("P8 launch 4 GiB base vs 64 MiB base: %.2f x (goal <= %.1f)" % (ratio, GOAL))
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
