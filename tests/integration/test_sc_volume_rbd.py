"""sc_volume and sc_snapshot on the rbd backend, through Ansible, against a real Ceph (the session's
``ceph_cluster``: mon, mgr and a bluestore OSD in a namespace of their own).

Bytes are written the way a guest's QEMU writes them (qemu-io through QEMU's librbd driver) and read
back with ``rbd export``; snapshots, clones, watchers and the cluster's own refusals are Ceph's.
"""

import json
import math
import subprocess
import time

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.storage import backends, volumes
from harness.runner import run_module

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.timeout(600)]

MIB = 1 << 20
GIB = 1 << 30


def ok(run):
    assert not run.failed, run.result.get("msg") or run.stdout[-3000:]
    return run.result


def refused(run, text):
    assert run.failed, run.result
    assert text in run.result.get("msg", ""), run.result.get("msg") or run.stdout[-3000:]
    return run.result["msg"]


@pytest.fixture
def rbd_args(ceph_cluster):
    return dict(backend="rbd", rbd_pool="volumes", ceph_conf=str(ceph_cluster.conf), ceph_namespace=ceph_cluster.ns.name)


def images(cluster, pool="volumes"):
    return json.loads(cluster.rbd("ls", "-l", "--format", "json", pool).stdout)


def image(cluster, name, pool="volumes"):
    found = cluster.rbd("info", "--format", "json", "%s/%s" % (pool, name), check=False)
    return json.loads(found.stdout) if found.returncode == 0 else None


def write(cluster, name, pattern, offset, length=MIB):
    """Write ``length`` bytes of ``pattern`` at ``offset`` through QEMU's librbd driver."""
    cluster.ns.run("qemu-io", "-f", "raw", "-c", "write -P 0x%02x %d %d" % (pattern, offset, length),
                   "rbd:volumes/%s:conf=%s" % (name, cluster.conf), timeout=120)


def read(cluster, spec, offset, length=MIB):
    """``length`` bytes at ``offset`` of an image or snapshot (``spec``: ``image[@snapshot]``) of the
    volumes pool, read through librbd by ``qemu-img dd``."""
    out = cluster.base / ("read-%s" % spec.replace("@", "-"))
    block = math.gcd(offset, length)  # qemu-img dd's count includes the blocks skipped
    cluster.ns.run("qemu-img", "dd", "-f", "raw", "-O", "raw", "bs=%d" % block, "skip=%d" % (offset // block),
                   "count=%d" % ((offset + length) // block), "if=rbd:volumes/%s:conf=%s" % (spec, cluster.conf), "of=%s" % out,
                   timeout=120)
    try:
        return out.read_bytes()[:length]  # (qemu-img rounds a file it makes up to 512 bytes)
    finally:
        out.unlink()


def export(cluster, spec, offset, length=MIB):
    """The same bytes from the whole image as ``rbd export`` writes it."""
    out = subprocess.run(["ip", "netns", "exec", cluster.ns.name, "rbd", "--conf", str(cluster.conf), "export",
                          "--no-progress", "volumes/" + spec, "-"], stdout=subprocess.PIPE, check=True, timeout=300)
    return out.stdout[offset:offset + length]


def test_volumes_snapshots_and_clones_on_rbd(ceph_cluster, rbd_args):
    vol, snap, clone = "vol-0000a001", "snap-0000a001", "vol-0000a002"
    dry = ok(run_module("euca.cloud.sc_volume", dict(rbd_args, name=vol, size_gb=1), check=True))
    assert dry["changed"] and dry["commands"] == ["rbd create --size %dB volumes/%s" % (GIB, vol)]
    assert image(ceph_cluster, vol) is None
    made = ok(run_module("euca.cloud.sc_volume", dict(rbd_args, name=vol, size_gb=1), diff=True))
    assert made["changed"] and made["diff"]["before"] == {} and made["volume"]["size_bytes"] == GIB
    assert image(ceph_cluster, vol)["size"] == GIB and not made["volume"]["has_data"]
    assert not ok(run_module("euca.cloud.sc_volume", dict(rbd_args, name=vol, size_gb=1)))["changed"]

    write(ceph_cluster, vol, 0x5A, 3 * MIB)
    assert export(ceph_cluster, vol, 3 * MIB) == b"\x5a" * MIB
    assert read(ceph_cluster, vol, 3 * MIB) == b"\x5a" * MIB and read(ceph_cluster, vol, 4 * MIB) == bytes(MIB)

    taken = ok(run_module("euca.cloud.sc_snapshot", dict(rbd_args, name=snap, volume=vol)))
    assert taken["changed"] and taken["snapshot"]["image"] == vol and taken["snapshot"]["protected"]
    assert not ok(run_module("euca.cloud.sc_snapshot", dict(rbd_args, name=snap, volume=vol)))["changed"]
    write(ceph_cluster, vol, 0xA5, 3 * MIB)  # after the snapshot: the snapshot keeps 0x5a
    assert read(ceph_cluster, vol, 3 * MIB) == b"\xa5" * MIB
    assert read(ceph_cluster, vol + "@" + snap, 3 * MIB) == b"\x5a" * MIB

    cloned = ok(run_module("euca.cloud.sc_volume", dict(rbd_args, name=clone, snapshot=snap, size_gb=2)))
    assert cloned["changed"] and cloned["commands"][-1] == "rbd rename volumes/%s.partial volumes/%s" % (clone, clone)
    info = image(ceph_cluster, clone)
    assert info["parent"]["image"] == vol and info["parent"]["snapshot"] == snap and info["size"] == 2 * GIB
    assert read(ceph_cluster, clone, 3 * MIB) == b"\x5a" * MIB
    assert cloned["volume"]["parent"] == "volumes/%s@%s" % (vol, snap) and cloned["volume"]["has_data"]

    grow = ok(run_module("euca.cloud.sc_volume", dict(rbd_args, name=vol, size_gb=3)))
    assert grow["changed"] and image(ceph_cluster, vol)["size"] == 3 * GIB
    refused(run_module("euca.cloud.sc_volume", dict(rbd_args, name=vol, size_gb=1)), "volumes only grow")

    # the snapshot a volume was cloned from is not deleted (nor is anything else changed)
    refused(run_module("euca.cloud.sc_snapshot", dict(rbd_args, name=snap, state="absent")),
            "has volumes cloned from it (%s)" % clone)
    refused(run_module("euca.cloud.sc_volume", dict(rbd_args, name=vol, state="absent")), "holds data")
    # the volume goes; its snapshot (and the clone made from it) stay, as EC2's snapshots outlive volumes
    gone = ok(run_module("euca.cloud.sc_volume", dict(rbd_args, name=vol, state="absent", force=True)))
    assert gone["changed"] and gone["commands"] == ["rbd rename volumes/%s volumes/%s.deleted" % (vol, vol)]
    assert image(ceph_cluster, vol) is None and image(ceph_cluster, vol + ".deleted") is not None
    assert not ok(run_module("euca.cloud.sc_volume", dict(rbd_args, name=vol, state="absent")))["changed"]
    kept = ok(run_module("euca.cloud.sc_snapshot", dict(rbd_args, name=snap, volume=vol)))
    assert not kept["changed"] and kept["snapshot"]["image"] == vol + ".deleted"
    again = ok(run_module("euca.cloud.sc_volume", dict(rbd_args, name="vol-0000a003", snapshot=snap)))
    assert again["volume"]["size_bytes"] == GIB and read(ceph_cluster, "vol-0000a003", 3 * MIB) == b"\x5a" * MIB

    # force flattens the clones (each gets its own copy of the bytes), then the snapshot and its
    # deleted volume go together
    flat = ok(run_module("euca.cloud.sc_snapshot", dict(rbd_args, name=snap, state="absent", force=True)))
    assert flat["commands"][:2] == ["rbd flatten volumes/%s" % clone, "rbd flatten volumes/vol-0000a003"]
    assert flat["commands"][-1] == "rbd rm volumes/%s.deleted" % vol
    names = set(entry["image"] for entry in images(ceph_cluster))
    assert vol + ".deleted" not in names and {clone, "vol-0000a003"} <= names
    assert "parent" not in image(ceph_cluster, clone) and read(ceph_cluster, clone, 3 * MIB) == b"\x5a" * MIB
    for name in (clone, "vol-0000a003"):
        ok(run_module("euca.cloud.sc_volume", dict(rbd_args, name=name, state="absent", force=True)))
    assert not {clone, "vol-0000a003"} & set(entry["image"] for entry in images(ceph_cluster))


def test_an_open_image_is_not_deleted_unless_forced(ceph_cluster, rbd_args):
    vol = "vol-0000a101"
    ok(run_module("euca.cloud.sc_volume", dict(rbd_args, name=vol, size_gb=1)))
    # a client holding the image open, as a guest's QEMU does: a watcher (rbd watch runs until its
    # stdin says so)
    watcher = ceph_cluster.ns.spawn(["rbd", "--conf", str(ceph_cluster.conf), "watch", "volumes/" + vol],
                                    stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not json.loads(ceph_cluster.rbd("status", "--format", "json", "volumes/" + vol).stdout)["watchers"]:
            assert watcher.poll() is None and time.monotonic() < deadline, "rbd watch did not register a watcher"
            time.sleep(0.2)
        msg = refused(run_module("euca.cloud.sc_volume", dict(rbd_args, name=vol, state="absent")), "is open by")
        assert "detach it first" in msg and image(ceph_cluster, vol) is not None
        gone = ok(run_module("euca.cloud.sc_volume", dict(rbd_args, name=vol, state="absent", force=True)))
        assert gone["commands"][0].startswith("ceph osd blocklist add ") and image(ceph_cluster, vol) is None
    finally:
        watcher.terminate()
        watcher.wait(timeout=30)


def test_runs_killed_half_way_are_completed(ceph_cluster, rbd_args):
    store = backends.RbdBackend("volumes", conf=str(ceph_cluster.conf), namespace=ceph_cluster.ns.name)
    vol, snap, clone = "vol-0000a201", "snap-0000a201", "vol-0000a202"
    volumes.converge_volume(store, vol, size_gb=1)
    write(ceph_cluster, vol, 0x11, 0)
    # killed between "snap create" and "snap protect": the snapshot is there but cannot be cloned yet
    ceph_cluster.rbd("snap", "create", "volumes/%s@%s" % (vol, snap))
    assert store.info(snap)["incomplete"]
    done = volumes.converge_snapshot(store, snap, volume=vol)
    assert done["changed"] and done["commands"] == ["rbd snap protect volumes/%s@%s" % (vol, snap)]
    assert done["snapshot"]["protected"]
    # killed after the clone, before the rename: a partial image that no run mistakes for the volume
    ceph_cluster.rbd("clone", "volumes/%s@%s" % (vol, snap), "volumes/%s.partial" % clone)
    assert store.info(clone) is None
    made = volumes.converge_volume(store, clone, snapshot=snap, size_gb=2)
    assert made["commands"][0] == "rbd rm volumes/%s.partial (if present)" % clone
    assert made["volume"]["size_bytes"] == 2 * GIB and read(ceph_cluster, clone, 0) == b"\x11" * MIB
    assert clone + ".partial" not in set(e["image"] for e in images(ceph_cluster))
    # killed after the last snapshot of a deleted volume went, before the volume did: swept next time
    volumes.converge_volume(store, clone, state="absent", force=True)
    volumes.converge_volume(store, vol, state="absent", force=True)
    ceph_cluster.rbd("snap", "unprotect", "volumes/%s.deleted@%s" % (vol, snap))
    ceph_cluster.rbd("snap", "rm", "volumes/%s.deleted@%s" % (vol, snap))
    swept = volumes.converge_snapshot(store, snap, state="absent")
    assert swept["commands"] == ["rbd rm volumes/%s.deleted" % vol]
    assert vol + ".deleted" not in set(e["image"] for e in images(ceph_cluster))


def test_a_volume_from_an_image_file_on_rbd(ceph_cluster, rbd_args, tmp_path):
    raw = tmp_path / "root.raw"
    with open(raw, "wb") as handle:
        handle.truncate(5 * MIB)
        handle.seek(2 * MIB)
        handle.write(b"IMAGE-BYTES")
    qcow = tmp_path / "root.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(raw), str(qcow)], check=True)
    made = ok(run_module("euca.cloud.sc_volume", dict(rbd_args, name="vol-0000a301", image_file=str(qcow))))
    assert made["volume"]["size_bytes"] == 5 * MIB
    assert read(ceph_cluster, "vol-0000a301", 2 * MIB, 11) == b"IMAGE-BYTES"
    ok(run_module("euca.cloud.sc_volume", dict(rbd_args, name="vol-0000a301", state="absent", force=True)))


def test_the_cluster_refusals_are_clear(ceph_cluster, rbd_args):
    refused(run_module("euca.cloud.sc_volume", dict(rbd_args, rbd_pool="nosuchpool", name="vol-0000a401", size_gb=1)),
            "Ceph pool nosuchpool does not exist")
    # a cephx client whose caps name only the images pool cannot make volumes in the volumes pool
    keyring = ceph_cluster.client_keyring("euca-images-only", {"mon": "profile rbd", "osd": "profile rbd pool=images"})
    narrow = dict(rbd_args, ceph_user="euca-images-only", ceph_keyring=str(keyring))
    denied = run_module("euca.cloud.sc_volume", dict(narrow, name="vol-0000a402", size_gb=1))
    assert denied.failed and "Operation not permitted" in denied.result["msg"], denied.result.get("msg")
    assert image(ceph_cluster, "vol-0000a402") is None
    ok(run_module("euca.cloud.sc_volume", dict(narrow, rbd_pool="images", name="vol-0000a403", size_gb=1)))
    assert image(ceph_cluster, "vol-0000a403", pool="images")["size"] == GIB
    refused(run_module("euca.cloud.sc_volume", dict(rbd_args, rbd_pool="bad pool", name="vol-0000a404", size_gb=1)),
            "is not a Ceph pool name")
