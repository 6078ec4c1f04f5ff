"""Volume and snapshot lifecycle on the file backend (real sparse files), and the rendered plans
of the lvm backend (this kernel has no device-mapper); the rbd backend's checks of its options
(tests/integration/test_sc_volume_rbd.py runs it against a real Ceph)."""

import os

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.storage import backends, volumes

GIB = 1 << 30


@pytest.fixture
def store(tmp_path):
    return backends.FileBackend(str(tmp_path / "volumes"))


def write(store, name, data, offset=0):
    with open(store.path(name), "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def read(store, name, size, offset=0):
    with open(store.path(name), "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


def test_create_is_sparse_idempotent_and_grows_only(store):
    dry = volumes.converge_volume(store, "vol-0000000a", size_gb=1, check_mode=True)
    assert dry["changed"] and dry["commands"] == ["truncate -s %d %s" % (GIB, store.path("vol-0000000a"))]
    assert not os.path.exists(store.path("vol-0000000a"))
    made = volumes.converge_volume(store, "vol-0000000a", size_gb=1)
    assert made["changed"] and made["volume"]["size_bytes"] == GIB and made["volume"]["has_data"] is False
    assert os.stat(store.path("vol-0000000a")).st_blocks == 0  # sparse: nothing allocated
    assert not volumes.converge_volume(store, "vol-0000000a", size_gb=1)["changed"]
    assert volumes.converge_volume(store, "vol-0000000a", size_gb=2)["volume"]["size_bytes"] == 2 * GIB
    with pytest.raises(InvalidInput, match="volumes only grow"):
        volumes.converge_volume(store, "vol-0000000a", size_gb=1)


def test_delete_is_safe_by_default(store):
    volumes.converge_volume(store, "vol-0000000b", size_gb=1)
    with pytest.raises(Conflict, match="attached to i-0a1b2c3d; detach it first"):
        volumes.converge_volume(store, "vol-0000000b", state="absent", attached_to="i-0a1b2c3d")
    write(store, "vol-0000000b", b"precious")
    with pytest.raises(Conflict, match="holds data; pass force=true"):
        volumes.converge_volume(store, "vol-0000000b", state="absent")
    assert os.path.exists(store.path("vol-0000000b"))
    assert volumes.converge_volume(store, "vol-0000000b", state="absent", force=True)["changed"]
    assert not os.path.exists(store.path("vol-0000000b"))
    assert not volumes.converge_volume(store, "vol-0000000b", state="absent")["changed"]
    # an empty volume needs no force
    volumes.converge_volume(store, "vol-0000000c", size_gb=1)
    assert volumes.converge_volume(store, "vol-0000000c", state="absent")["changed"]


def test_a_snapshot_keeps_its_moment_and_seeds_new_volumes(store):
    volumes.converge_volume(store, "vol-0000000d", size_gb=1)
    write(store, "vol-0000000d", b"before the snapshot", offset=4096)
    snap = volumes.converge_snapshot(store, "snap-0000000d", volume="vol-0000000d")
    assert snap["changed"] and snap["snapshot"]["has_data"]
    write(store, "vol-0000000d", b"AFTER  the snapshot", offset=4096)
    assert read(store, "snap-0000000d", 19, 4096) == b"before the snapshot"
    assert not volumes.converge_snapshot(store, "snap-0000000d", volume="vol-0000000d")["changed"]
    copy = volumes.converge_volume(store, "vol-0000000e", snapshot="snap-0000000d", size_gb=2)
    assert copy["volume"]["size_bytes"] == 2 * GIB and read(store, "vol-0000000e", 19, 4096) == b"before the snapshot"
    assert os.stat(store.path("vol-0000000e")).st_blocks * 512 < 1 << 20  # still sparse
    assert volumes.converge_snapshot(store, "snap-0000000d", state="absent")["changed"]


@pytest.mark.parametrize("call,message", [
    (lambda s: volumes.converge_volume(s, "vol-0000000f", size_gb=0), "size_gb must be at least 1"),
    (lambda s: volumes.converge_volume(s, "vol-0000000f"), "size_gb is required"),
    (lambda s: volumes.converge_volume(s, "vol-xyz", size_gb=1), "not a volume or snapshot id"),
    (lambda s: volumes.converge_volume(s, "vol-0000000f", snapshot="snap-00000bad"), "snapshot snap-00000bad does not exist"),
    (lambda s: volumes.converge_snapshot(s, "snap-0000000f", volume="vol-00000bad"), "volume vol-00000bad does not exist"),
])
def test_bad_input_changes_nothing(store, call, message):
    with pytest.raises((InvalidInput, NotFound), match=message):
        call(store)
    assert not os.path.exists(store.directory) or os.listdir(store.directory) == []


def test_lvm_plans():
    lvm = backends.LvmBackend("euca/thin")
    assert lvm.render(lvm.plan_create("vol-0000000a", GIB)) == [
        "lvcreate -q -T euca/thin -V %db -n vol-0000000a" % GIB]
    assert lvm.render(lvm.plan_snapshot("vol-0000000a", "snap-0000000a")) == [
        "lvcreate -q -s -n snap-0000000a euca/vol-0000000a"]
    assert lvm.render(lvm.plan_resize("vol-0000000a", 2 * GIB)) == ["lvextend -q -L %db euca/vol-0000000a" % (2 * GIB)]
    assert lvm.render(lvm.plan_delete("vol-0000000a")) == ["lvremove -q -y euca/vol-0000000a"]
    with pytest.raises(InvalidInput, match="<volume group>/<thin pool>"):
        backends.LvmBackend("euca")


def test_rbd_options_are_checked_before_any_client_runs():
    with pytest.raises(InvalidInput, match="rbd needs rbd_pool"):
        backends.RbdBackend("")
    with pytest.raises(InvalidInput, match="is not a Ceph pool name"):
        backends.RbdBackend("vol umes")
    with pytest.raises(InvalidInput, match="is not a cephx client name"):
        backends.RbdBackend("volumes", user="client admin")
    rbd = backends.RbdBackend("volumes", conf="/etc/ceph/c.conf", user="euca-sc", keyring="/etc/ceph/k")
    assert rbd.client_args() == ["--conf", "/etc/ceph/c.conf", "--id", "euca-sc", "--keyring", "/etc/ceph/k"]
    assert rbd.qemu_target("vol-0000000a") == "rbd:volumes/vol-0000000a:id=euca-sc:conf=/etc/ceph/c.conf:keyring=/etc/ceph/k"
    with pytest.raises(InvalidInput, match="cannot be given to QEMU"):
        backends.RbdBackend("volumes", conf="/etc/ce:ph.conf").qemu_target("vol-0000000a")


def test_a_volume_starts_from_an_image_file(store, tmp_path):
    raw = tmp_path / "root.raw"
    with open(raw, "wb") as handle:
        handle.truncate(3 << 20)
        handle.seek(1 << 20)
        handle.write(b"IMAGE-BYTES")
    qcow = tmp_path / "root.qcow2"
    assert os.system("qemu-img convert -q -O qcow2 %s %s" % (raw, qcow)) == 0
    for name, image in (("vol-0000001a", raw), ("vol-0000001b", qcow)):
        result = volumes.converge_volume(store, name, image_file=str(image))
        assert result["changed"] and result["commands"][0].startswith("qemu-img convert -q -O raw -S 4k %s" % image)
        assert result["volume"]["size_bytes"] == 3 << 20  # the image's virtual size, not a GiB
        assert read(store, name, 11, offset=1 << 20) == b"IMAGE-BYTES"
    sized = volumes.converge_volume(store, "vol-0000001c", image_file=str(qcow), size_gb=1)
    assert sized["volume"]["size_bytes"] == GIB and read(store, "vol-0000001c", 11, offset=1 << 20) == b"IMAGE-BYTES"
    with pytest.raises(InvalidInput, match="image_file .* does not exist"):
        volumes.converge_volume(store, "vol-0000001d", image_file=str(tmp_path / "missing.img"))
    with pytest.raises(InvalidInput, match="a snapshot or from an image_file, not both"):
        volumes.converge_volume(store, "vol-0000001d", image_file=str(raw), snapshot="snap-0000001a")
    assert not os.path.exists(store.path("vol-0000001d"))


def test_image_file_plans_on_lvm():
    lvm = backends.LvmBackend("euca/thin")
    assert lvm.render(lvm.plan_create("vol-0000000a", GIB, image="/srv/img.qcow2")) == [
        "lvcreate -q -T euca/thin -V %db -n vol-0000000a" % GIB,
        "qemu-img convert -q -O raw -n /srv/img.qcow2 /dev/euca/vol-0000000a"]
