"""sc_volume and sc_snapshot through Ansible on the file backend: idempotence, check mode, safety."""

import os

import pytest

from harness.runner import run_module

pytestmark = pytest.mark.integration


def ok(run):
    assert not run.failed, run.result.get("msg") or run.stdout[-3000:]
    return run.result


def test_volume_and_snapshot_modules(tmp_path):
    where = dict(volumes_dir=str(tmp_path / "volumes"))
    path = tmp_path / "volumes" / "vol-0000000a.img"
    dry = ok(run_module("euca.cloud.sc_volume", dict(where, name="vol-0000000a", size_gb=1), check=True))
    assert dry["changed"] and not path.exists()
    made = ok(run_module("euca.cloud.sc_volume", dict(where, name="vol-0000000a", size_gb=1), diff=True))
    assert made["changed"] and made["diff"]["before"] == {} and path.stat().st_size == 1 << 30
    assert not ok(run_module("euca.cloud.sc_volume", dict(where, name="vol-0000000a", size_gb=1)))["changed"]
    with open(path, "r+b") as handle:
        handle.write(b"data")
    snap = ok(run_module("euca.cloud.sc_snapshot", dict(where, name="snap-0000000a", volume="vol-0000000a")))
    assert snap["changed"] and os.path.exists(snap["snapshot"]["path"])
    refused = run_module("euca.cloud.sc_volume", dict(where, name="vol-0000000a", state="absent"))
    assert refused.failed and "holds data; pass force=true" in refused.result["msg"] and path.exists()
    bad = run_module("euca.cloud.sc_volume", dict(where, name="vol-0000000b", size_gb=0))
    assert bad.failed and "size_gb must be at least 1" in bad.result["msg"]
    gone = ok(run_module("euca.cloud.sc_volume", dict(where, name="vol-0000000a", state="absent", force=True)))
    assert gone["changed"] and not path.exists()


def _device_mapper_missing():
    """None when this kernel has device-mapper, else why LVM cannot run here."""
    try:
        with open("/proc/misc") as handle:
            if "device-mapper" in handle.read():
                return None
    except OSError:
        pass
    return "this kernel lacks device-mapper (not in /proc/misc): LVM thin volumes cannot be made here"


@pytest.mark.root
@pytest.mark.skipif(_device_mapper_missing() is not None, reason=str(_device_mapper_missing()))
def test_lvm_thin_volumes_live(tmp_path):
    """The lvm backend on a loop device: create, snapshot, grow and delete real thin LVs."""
    import subprocess

    backing = tmp_path / "pv.img"
    with open(backing, "wb") as handle:
        handle.truncate(512 << 20)
    loop = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True, check=True)
    device = loop.stdout.strip()
    vg = "eut%d" % os.getpid()
    try:
        subprocess.run(["vgcreate", "-q", vg, device], check=True, capture_output=True)
        subprocess.run(["lvcreate", "-q", "-T", "-L", "256m", "%s/thin" % vg], check=True, capture_output=True)
        where = dict(backend="lvm", thin_pool="%s/thin" % vg)
        made = ok(run_module("euca.cloud.sc_volume", dict(where, name="vol-0000000a", size_gb=1)))
        assert made["changed"] and made["volume"]["size_bytes"] == 1 << 30
        assert not ok(run_module("euca.cloud.sc_volume", dict(where, name="vol-0000000a", size_gb=1)))["changed"]
        with open("/dev/%s/vol-0000000a" % vg, "r+b") as handle:
            handle.write(b"LVM-DATA")
            os.fsync(handle.fileno())
        snap = ok(run_module("euca.cloud.sc_snapshot", dict(where, name="snap-0000000a", volume="vol-0000000a")))
        assert snap["changed"]
        grown = ok(run_module("euca.cloud.sc_volume", dict(where, name="vol-0000000a", size_gb=2)))
        assert grown["volume"]["size_bytes"] == 2 << 30
        gone = ok(run_module("euca.cloud.sc_volume", dict(where, name="vol-0000000a", state="absent", force=True)))
        assert gone["changed"] and not os.path.exists("/dev/%s/vol-0000000a" % vg)
    finally:
        subprocess.run(["vgremove", "-q", "-f", vg], capture_output=True)
        subprocess.run(["losetup", "-d", device], capture_output=True)
