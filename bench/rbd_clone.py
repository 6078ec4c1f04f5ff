#!/usr/bin/env python3
"""P21: a volume from a snapshot of a 10 GiB volume vs of a 1 GiB one, on the rbd backend.

A throwaway Ceph (tests/harness/ceph.py: mon, mgr, bluestore OSD on a sparse file) runs in a
namespace of its own. Two volumes, 1 GiB and 10 GiB, are made by volumes.converge_volume and
written in every RBD object (4 KiB at the start of each 4 MiB object, through QEMU's librbd
driver), so each is fully allocated object by object; each gets a snapshot (converge_snapshot:
snap create + protect). Then ROUNDS volumes are made from each snapshot, alternating, each timed
end to end as the SC runs it (converge_volume: the checks, rbd clone to .partial, rename, and the
info it answers with), and removed again untimed. The goal compares the medians.
"""

import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "collections"))

from ansible_collections.euca.cloud.plugins.module_utils.storage import backends, volumes  # noqa: E402
from harness import ceph as _ceph  # noqa: E402
from harness import netns as _netns  # noqa: E402

ROUNDS = 15
OBJECT = 4 << 20


def fill(cluster, name, size_gb):
    """4 KiB written at the start of every 4 MiB RBD object of the image."""
    commands = []
    for offset in range(0, size_gb << 30, OBJECT):
        commands += ["-c", "write -P 0x%02x %d 4096" % (offset // OBJECT % 251 + 1, offset)]
    cluster.ns.run("qemu-io", "-f", "raw", *commands, "rbd:volumes/%s:conf=%s" % (name, cluster.conf), timeout=900)


def main():
    reason = _ceph.missing()
    if reason:
        raise SystemExit("rbd_clone: cannot run: %s" % reason)
    ns = _netns.Netns.create()
    try:
        cluster = _ceph.start_in(ns, osd_size_gb=30)
        try:
            print("Ceph healthy in %.1f s" % cluster.seconds_to_healthy)
            store = backends.RbdBackend("volumes", conf=str(cluster.conf), namespace=ns.name)
            sources = {}
            for number, size_gb in enumerate((1, 10)):
                vol, snap = "vol-0000b%03x" % number, "snap-0000b%03x" % number
                volumes.converge_volume(store, vol, size_gb=size_gb)
                started = time.monotonic()
                fill(cluster, vol, size_gb)
                filled = time.monotonic() - started
                started = time.monotonic()
                volumes.converge_snapshot(store, snap, volume=vol)
                print("%2d GiB volume: %d objects written in %.1f s; snapshot in %.2f s" % (
                    size_gb, (size_gb << 30) // OBJECT, filled, time.monotonic() - started))
                sources[size_gb] = snap
            times = {1: [], 10: []}
            for round_ in range(ROUNDS):
                for size_gb, snap in sources.items():
                    name = "vol-0000c%03x" % (round_ * 2 + (size_gb == 10))
                    started = time.monotonic()
                    made = volumes.converge_volume(store, name, snapshot=snap)
                    times[size_gb].append(time.monotonic() - started)
                    assert made["volume"]["parent"].endswith("@" + snap), made
                    volumes.converge_volume(store, name, state="absent", force=True)
            for size_gb in (1, 10):
                ms = sorted(t * 1000 for t in times[size_gb])
                print("from the %2d GiB snapshot: median %.0f ms, min %.0f, max %.0f (%d rounds)" % (
                    size_gb, statistics.median(ms), ms[0], ms[-1], len(ms)))
            ratio = statistics.median(times[10]) / statistics.median(times[1])
            print("P21 volume from a snapshot, 10 GiB vs 1 GiB: %.2f x (goal <= 1.1)" % ratio)
        finally:
            cluster.stop()
    finally:
        ns.delete()


if __name__ == "__main__":
    main()
