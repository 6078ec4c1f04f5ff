"""Allocation load on a ledger: used by the concurrency/durability tests and by bench/.

A worker allocates in a loop, one transaction per allocation, and prints one JSON line
per *committed* allocation (after the commit returned). Whatever a worker printed must
be in the ledger afterwards, whatever happened to the worker (kill -9 included).

    python tests/harness/ledger_load.py prepare URL
    python tests/harness/ledger_load.py worker URL WORKER_ID COUNT [--eip-every N] [--launch-size K] [--wait-go]

With ``--wait-go`` a worker opens its connection, prints ``ready`` and waits for a line on
stdin before it allocates, so a benchmark can time the allocations alone (not the start of
eight Python processes).
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if os.path.join(ROOT, "collections") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "collections"))

from ansible_collections.euca.cloud.plugins.module_utils.ledger import (  # noqa: E402
    addresses, cloud, db, groups, images, instances,
)

# Both documentation ranges: 512 addresses, the most a test may use as public IPs.
PUBLIC_POOL = ["198.51.100.0/24", "203.0.113.0/24"]
GROUP = "load"


def prepare(url, addresses_per_group=8192):
    """A cloud with one huge node, one group with a large subnet, an image and the pool.

    ``addresses_per_group``: the group's subnet size (a power of two, at most 2**23 in 10/8).
    """
    with db.Ledger(url) as ledger:
        with ledger.write() as txn:
            cloud.ensure_settings(txn, {"public_ips": PUBLIC_POOL, "private_network": "10.0.0.0/8",
                                        "addresses_per_group": addresses_per_group, "scheduler": "GREEDY"})
            cloud.ensure_cluster(txn, "load")
            cloud.ensure_node(txn, "nc-load", "load", 1000000, 1000000000, 1000000000)
            images.ensure_image(txn, "load", checksum="0" * 64, size_bytes=1)
            groups.ensure_group(txn, GROUP)


def fill(url, count, batch=1000, label="fill"):
    """Launch ``count`` live instances in the load group, ``batch`` per transaction."""
    with db.Ledger(url, timeout=120) as ledger:
        done = 0
        while done < count:
            size = min(batch, count - done)
            with ledger.write() as txn:
                instances.ensure_instances(txn, name="%s-%d" % (label, done), group=GROUP, image="load", count=size)
            done += size


def worker(url, worker_id, count, eip_every=8, launch_size=1, out=None, wait_go=False):
    """Allocate ``count`` times: every ``eip_every``-th an elastic IP, the rest instances.

    Prints ``{"kind", "worker", "seq", "values"}`` after each commit. With ``wait_go``, first
    prints ``ready`` once connected and waits for a line on stdin.
    """
    out = out or sys.stdout
    with db.Ledger(url, timeout=120) as ledger:
        if wait_go:
            out.write("ready\n")
            out.flush()
            sys.stdin.readline()
        for seq in range(count):
            label = "w%s-%d" % (worker_id, seq)
            with ledger.write() as txn:
                if eip_every and seq % eip_every == 0:
                    got = addresses.ensure_address(txn, name=label)["address"]
                    record = {"kind": "eip", "values": [got["public_ip"]]}
                else:
                    got = instances.ensure_instances(txn, name=label, group=GROUP, image="load", count=launch_size)
                    record = {"kind": "ip", "values": [i["private_ip"] for i in got["instances"]],
                              "ids": [i["id"] for i in got["instances"]],
                              "macs": [i["mac"] for i in got["instances"]]}
            record.update(worker=str(worker_id), seq=seq, label=label)
            out.write(json.dumps(record) + "\n")
            out.flush()


def main(argv=None):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("url")
    w = sub.add_parser("worker")
    w.add_argument("url")
    w.add_argument("worker_id")
    w.add_argument("count", type=int)
    w.add_argument("--eip-every", type=int, default=8)
    w.add_argument("--launch-size", type=int, default=1)
    w.add_argument("--wait-go", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(args.url)
    else:
        worker(args.url, args.worker_id, args.count, args.eip_every, args.launch_size, wait_go=args.wait_go)


if __name__ == "__main__":
    main()
