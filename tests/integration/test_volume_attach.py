"""Volumes end to end with real guests: the ledger, tgtd on a storage controller and hot-plug on a node.

A storage controller namespace (tgtd on a storage network) and a node namespace (libvirtd, the
instances' segment bridge and our DHCP) stand for one cluster; the ledger is a SQLite file. The
operations are the playbooks operators run (create-volume, attach-volume, detach-volume). Guests
are the test image: /cgi-bin/blockdevs lists disks with their serial (a volume's is its id) and
/cgi-bin/disk writes and reads raw bytes on one, so what a guest wrote can be looked for in the
SC's file.
"""

import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse

import pytest
import yaml

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict
from ansible_collections.euca.cloud.plugins.module_utils.ledger import cloud, db, groups, images, instances
from ansible_collections.euca.cloud.plugins.module_utils.storage import backends, volumes
from harness import libvirtd as lv
from harness.guest_image import fill_image_cache
from harness import netns as _netns
from harness import tgtd as _tgtd
from harness.runner import REPO_ROOT, run_module, run_playbook

# minutes on an idle machine; the limit leaves room for a loaded 2-core one (pytest.ini's 300 s did not)
pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(900)]

SC_IP, NC_IP = "10.31.0.2", "10.31.0.3"
FETCH = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
IMAGES = {"image": "emi-0000000a", "kernel": "eki-0000000a", "ramdisk": "eri-0000000a"}
BOOT = {"name": "i-0000b007", "mac": "d0:0d:0a:4d:00:70", "ip": "10.77.0.70"}


def playbook(name):
    return REPO_ROOT / "playbooks" / name


def build_ledger(path):
    with db.Ledger(path) as ledger:
        with ledger.write() as txn:
            cloud.ensure_settings(txn, {"network_mode": "flat", "private_network": "10.77.0.0/16",
                                        "public_ips": ["203.0.113.32/28"], "segment_range": [100, 199]})
            cloud.ensure_cluster(txn, "cluster_a")
            cloud.ensure_node(txn, "nc1", "cluster_a", 8, 4096, 100)
            images.ensure_image(txn, "img", checksum="0" * 64, size_bytes=1)
            groups.ensure_group(txn, "web", rules=[])
            return instances.ensure_instances(txn, name="web", group="web", image="img", count=2)["instances"]


@pytest.fixture(scope="module")
def cluster(guest_image, tmp_path_factory):
    work = tmp_path_factory.mktemp("volumes")
    os.chmod(work, 0o755)
    sc, nc = _netns.Netns.create(), _netns.Netns.create()
    tgtd = daemon = None
    try:
        # the storage network
        sc.bridge("st0")
        sc.addr("st0", SC_IP + "/24")
        sc.veth(nc, "st-nc", "eth-st")
        sc.enslave("st-nc", "st0")
        nc.addr("eth-st", NC_IP + "/24")
        tgtd = _tgtd.start_in(sc, "%s:3260" % SC_IP, base_dir=str(work))
        # the node: segment bridge, DHCP for the ledger's instances, image cache, libvirtd
        ledger = str(work / "ledger.db")
        guests = build_ledger(ledger)
        nc.bridge("eubr-100")
        nc.addr("eubr-100", "10.77.0.1/24")
        hosts = [{"mac": g["mac"], "ip": g["private_ip"], "hostname": g["id"]} for g in guests]
        hosts.append({"mac": BOOT["mac"], "ip": BOOT["ip"], "hostname": BOOT["name"]})
        dhcp = run_module("euca.cloud.dhcp", dict(
            namespace=nc.name, state_dir=str(work / "dhcp"), user="root", state="overridden",
            config=[{"id": 100, "interface": "eubr-100", "subnet": "10.77.0.0/24", "gateway": "10.77.0.1",
                     "hosts": hosts}]))
        assert not dhcp.failed, dhcp.result.get("msg")
        nc.adopt(dhcp.result["dnsmasq"]["pid"])
        cache_dir = str(work / "cache")
        fill_image_cache(cache_dir, guest_image, IMAGES)
        daemon = lv.start_in(nc)
        inventory = work / "hosts.yml"
        inventory.write_text(textwrap.dedent("""\
            all:
              vars:
                ansible_connection: local
                ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
                euca_ledger: {ledger}
              children:
                clc: {{hosts: {{clc1: }}}}
                sc:
                  hosts:
                    sc1: {{euca_cluster: cluster_a, euca_volumes_dir: {volumes}, euca_tgt_socket: {socket},
                           euca_iscsi_portal: "{sc_ip}:3260"}}
                nc:
                  hosts:
                    nc1: {{euca_libvirt_uri: "{uri}", euca_storage_address: {nc_ip}}}
            """).format(ledger=ledger, volumes=work / "volumes", socket=tgtd.socket, sc_ip=SC_IP, uri=daemon.uri,
                        nc_ip=NC_IP))
        env = {"ns": nc, "sc": sc, "tgtd": tgtd, "daemon": daemon, "work": work, "ledger": ledger,
               "inventory": str(inventory), "cache_dir": cache_dir, "instances_dir": str(work / "instances"),
               "guests": guests, "volumes_dir": work / "volumes"}
        for guest in guests:
            boot(env, guest["id"], guest["mac"])
        for guest in guests:
            wait_console(env, guest["id"], "EUCA-READY")
        yield env
    finally:
        if daemon is not None:
            daemon.stop()
        if tgtd is not None:
            tgtd.stop()
        nc.delete()
        sc.delete()


def boot(env, name, mac, **options):
    args = dict(name=name, uri=env["daemon"].uri, namespace=env["ns"].name, cache_dir=env["cache_dir"],
                instances_dir=env["instances_dir"], image=IMAGES["image"], kernel=IMAGES["kernel"],
                ramdisk=IMAGES["ramdisk"], memory_mb=128, nics=[{"bridge": "eubr-100", "mac": mac}],
                shutdown_timeout=0)
    args.update(options)
    run = run_module("euca.cloud.nc_instance", dict((k, v) for k, v in args.items() if v is not None))
    assert not run.failed, run.result.get("msg") or run.stdout[-3000:]
    return run.result


def console(env, name):
    path = os.path.join(env["instances_dir"], name, "console.log")
    return open(path, errors="replace").read() if os.path.exists(path) else ""


def wait_console(env, name, text, timeout=120):
    deadline = time.monotonic() + timeout
    while text not in console(env, name):
        assert time.monotonic() < deadline, "no %r on %s's console:\n%s" % (text, name, console(env, name)[-3000:])
        time.sleep(0.2)


def http(env, ip, path):
    deadline = time.monotonic() + 30
    while True:
        out = env["ns"].run(sys.executable, "-c", FETCH, "http://%s%s" % (ip, path), check=False)
        if out.returncode == 0:
            return out.stdout
        assert time.monotonic() < deadline, "no HTTP answer from %s%s: %s" % (ip, path, out.stderr)
        time.sleep(0.3)


def guest_disk(env, ip, volume, timeout=30):
    """The guest's name for the disk whose serial is ``volume`` (it appears after hot-plug)."""
    deadline = time.monotonic() + timeout
    while True:
        for line in http(env, ip, "/cgi-bin/blockdevs").splitlines():
            name, _size, serial = line.split()
            if serial == volume:
                return name
        if time.monotonic() > deadline:
            return None
        time.sleep(0.3)


def guest_write(env, ip, dev, text):
    out = http(env, ip, "/cgi-bin/disk?dev=%s&op=write&text=%s" % (dev, urllib.parse.quote(text)))
    assert out.startswith("wrote"), out


def guest_read(env, ip, dev, length):
    return http(env, ip, "/cgi-bin/disk?dev=%s&op=read&bytes=%d" % (dev, length))


def play(env, name, **extravars):
    return run_playbook(playbook(name), inventory=env["inventory"], extravars=extravars)


def failure(run):
    """The message of the run's failed task."""
    failed = [ev["event_data"]["res"] for ev in run.events if ev.get("event") == "runner_on_failed"]
    assert run.rc != 0 and failed, run.stdout[-3000:]
    return failed[-1].get("msg", "")


def ledger_volumes(env):
    with db.Ledger(env["ledger"]) as ledger:
        with ledger.read() as txn:
            return dict((r["name"], dict(r)) for r in txn.rows("SELECT * FROM volumes"))


def ledger_attachment(env, volume_id):
    with db.Ledger(env["ledger"]) as ledger:
        with ledger.read() as txn:
            row = txn.row("SELECT instance_id, device FROM attachments WHERE volume_id = ?", volume_id)
            return dict(row) if row else None


def volume_disks(env, name):
    """The volume disks (alias ua-vol-...) of a domain, live and persistent."""
    import libvirt
    conn = env["daemon"].connect()
    try:
        dom = conn.lookupByName(name)
        found = []
        for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):
            found += re.findall(r"<alias name=['\"](ua-vol-[^'\"]+)", dom.XMLDesc(flags))
        return found
    finally:
        conn.close()


def targets(env):
    return env["tgtd"].tgtadm("--lld", "iscsi", "--op", "show", "--mode", "target").stdout


def file_bytes(env, volume_id, length, snapshot=False):
    path = env["volumes_dir"] / ("snapshots" if snapshot else "") / (volume_id + ".img")
    with open(path, "rb") as handle:
        return handle.read(length)


def create_volume(env, name, **extravars):
    run = play(env, "create-volume.yml", volume_name=name, cluster="cluster_a", **extravars)
    assert run.rc == 0, run.stdout[-3000:]
    return ledger_volumes(env)[name]["id"]


def test_bad_input_fails_clearly_and_changes_nothing(cluster):
    env = cluster
    a = env["guests"][0]
    before = ledger_volumes(env)
    assert "size_gb must be a positive integer" in failure(
        play(env, "create-volume.yml", volume_name="zero", cluster="cluster_a", size_gb=0))
    assert "unknown volume 'vol-0badbad0'" in failure(play(env, "attach-volume.yml", volume="vol-0badbad0",
                                                            instance=a["id"]))
    create_volume(env, "idle", size_gb=1)
    assert "is not attached; nothing was changed" in failure(play(env, "detach-volume.yml", volume="idle"))
    after = ledger_volumes(env)
    assert set(after) - set(before) == {"idle"} and after["idle"]["state"] == "available"
    assert "Target" not in targets(env) and volume_disks(env, a["id"]) == []


def test_attach_write_detach_reattach_and_snapshot(cluster):
    env = cluster
    a, b = env["guests"]
    vol = create_volume(env, "data", size_gb=1)
    assert os.path.getsize(env["volumes_dir"] / (vol + ".img")) == 1 << 30

    attach = play(env, "attach-volume.yml", volume="data", instance=a["id"], device="/dev/vdc")
    assert attach.rc == 0, attach.stdout[-3000:]
    plugged = attach.task_result("Hot-plug it on the node")
    assert plugged["changed"] and plugged["attachment"]["live"] and plugged["attachment"]["persistent"]
    assert ledger_attachment(env, vol) == {"instance_id": a["id"], "device": "/dev/vdc"}
    # the ACL names the node only
    assert "ACL information:\n        %s\n" % NC_IP in targets(env)
    dev = guest_disk(env, a["private_ip"], vol)
    assert dev, http(env, a["private_ip"], "/cgi-bin/blockdevs")
    assert "%s %d %s" % (dev, 1 << 30, vol) in http(env, a["private_ip"], "/cgi-bin/blockdevs")
    guest_write(env, a["private_ip"], dev, "written-by-%s" % a["id"])
    # the same attach again changes nothing anywhere
    again = play(env, "attach-volume.yml", volume="data", instance=a["id"])
    assert again.rc == 0 and not any(ev["event_data"]["res"].get("changed") for ev in again.events
                                     if ev.get("event") == "runner_on_ok" and "res" in ev.get("event_data", {})
                                     and ev["event_data"].get("task_action", "").startswith("euca.cloud."))

    detach = play(env, "detach-volume.yml", volume="data")
    assert detach.rc == 0, detach.stdout[-3000:]
    assert file_bytes(env, vol, 21) == ("written-by-%s" % a["id"]).encode()
    assert ledger_attachment(env, vol) is None and vol not in targets(env)
    assert volume_disks(env, a["id"]) == [] and guest_disk(env, a["private_ip"], vol, timeout=0) is None

    attach = play(env, "attach-volume.yml", volume="data", instance=b["id"])
    assert attach.rc == 0, attach.stdout[-3000:]
    dev = guest_disk(env, b["private_ip"], vol)
    assert guest_read(env, b["private_ip"], dev, 21) == "written-by-%s" % a["id"]

    # a snapshot keeps its moment: later writes do not reach it, a volume made from it has it
    snap = play(env, "create-snapshot.yml", snapshot_name="data-1", volume="data")
    assert snap.rc == 0, snap.stdout[-3000:]
    snap_id = snap.task_result("Record the snapshot in the ledger")["snapshot"]["id"]
    assert snap.task_result("Copy the bytes")["changed"]
    guest_write(env, b["private_ip"], dev, "later-write-by-%s" % b["id"])
    assert file_bytes(env, vol, 25) == ("later-write-by-%s" % b["id"]).encode()
    assert file_bytes(env, snap_id, 21, snapshot=True) == ("written-by-%s" % a["id"]).encode()
    copy = create_volume(env, "data-copy", snapshot="data-1")
    assert file_bytes(env, copy, 21) == ("written-by-%s" % a["id"]).encode()
    refused = failure(play(env, "delete-volume.yml", volume="data"))
    assert "is attached to %s; detach it first" % b["id"] in refused
    assert play(env, "detach-volume.yml", volume="data", instance=b["id"]).rc == 0
    # safe by default: a volume with data goes only with force
    assert "holds data; pass force=true" in failure(play(env, "delete-volume.yml", volume="data"))
    assert "data" in ledger_volumes(env) and os.path.exists(env["volumes_dir"] / (vol + ".img"))
    assert play(env, "delete-volume.yml", volume="data", force=True).rc == 0
    assert "data" not in ledger_volumes(env) and not os.path.exists(env["volumes_dir"] / (vol + ".img"))


def test_two_concurrent_attaches_of_one_volume_one_wins(cluster):
    env = cluster
    a, b = env["guests"]
    vol = create_volume(env, "contended", size_gb=1)
    disks_before = {g["id"]: volume_disks(env, g["id"]) for g in (a, b)}
    results = {}

    def attach(guest):
        results[guest["id"]] = play(env, "attach-volume.yml", volume="contended", instance=guest["id"])

    threads = [threading.Thread(target=attach, args=(g,)) for g in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [name for name, run in results.items() if run.rc == 0]
    assert len(winners) == 1, dict((n, r.rc) for n, r in results.items())
    winner = winners[0]
    loser = b["id"] if winner == a["id"] else a["id"]
    assert "volume %s is attached to %s" % (vol, winner) in failure(results[loser])
    # the loser's run stopped at the ledger: its node was not touched
    assert not [ev for ev in results[loser].events if ev.get("event_data", {}).get("task") == "Hot-plug it on the node"]
    assert volume_disks(env, loser) == disks_before[loser]
    assert volume_disks(env, winner) == ["ua-vol-" + vol] * 2
    assert ledger_attachment(env, vol)["instance_id"] == winner
    assert play(env, "detach-volume.yml", volume="contended").rc == 0


def test_boot_from_volume(cluster, guest_image):
    env = cluster
    vol = "vol-0000b007"
    made = run_module("euca.cloud.sc_volume", dict(volumes_dir=str(env["volumes_dir"]), name=vol,
                                                    image_file=guest_image["root"]["path"]))
    assert not made.failed and made.result["changed"], made.result.get("msg")
    path = env["volumes_dir"] / (vol + ".img")
    with open(path, "r+b") as handle:
        assert handle.read()[1024:] == open(guest_image["root"]["path"], "rb").read()[1024:]
        handle.seek(0)
        handle.write(b"BOOT-VOLUME")  # the ext2 boot block is unused: a marker the guest can read
    export = run_module("euca.cloud.sc_export", dict(volume=vol, volumes_dir=str(env["volumes_dir"]),
                                                     tgt_socket=env["tgtd"].socket, initiators=[NC_IP]))
    assert not export.failed, export.result.get("msg")
    result = boot(env, BOOT["name"], BOOT["mac"], image=None, root_volume=vol,
                  root_source=export.result["export"]["source"])
    assert result["instance"]["root_volume"] == vol and result["instance"]["overlay"] is None
    assert "create overlay" not in result["actions"]
    wait_console(env, BOOT["name"], "EUCA-READY")
    assert "vda %d %s" % (os.path.getsize(path), vol) in http(env, BOOT["ip"], "/cgi-bin/blockdevs")
    assert guest_read(env, BOOT["ip"], "vda", 11) == "BOOT-VOLUME"
    assert not boot(env, BOOT["name"], BOOT["mac"], image=None, root_volume=vol,
                    root_source=export.result["export"]["source"])["changed"]
    gone = boot(env, BOOT["name"], BOOT["mac"], state="absent")
    assert gone["changed"] and os.path.exists(path)  # the volume outlives the instance


def test_nc_volume_module_checks_plans_and_is_idempotent(cluster):
    env = cluster
    a = env["guests"][0]
    vol = create_volume(env, "module-level", size_gb=1)
    export = run_module("euca.cloud.sc_export", dict(volume=vol, volumes_dir=str(env["volumes_dir"]),
                                                     tgt_socket=env["tgtd"].socket, initiators=[NC_IP]))
    assert not export.failed, export.result.get("msg")
    source = export.result["export"]["source"]
    base = dict(name=a["id"], uri=env["daemon"].uri, volume=vol, source=source, device="/dev/vdd")

    def nc_volume(check=False, diff=False, **changes):
        return run_module("euca.cloud.nc_volume", dict(base, **changes), check=check, diff=diff)

    for changes, message in ((dict(source={"protocol": "iscsi", "host": SC_IP}), "an iscsi source needs target"),
                             (dict(name="i-0badbad0"), "instance i-0badbad0 is not defined on this node"),
                             (dict(device="/dev/vdz"), "must be one of /dev/vdb../dev/vdy"),
                             (dict(volume="data"), "is not a volume id")):
        run = nc_volume(**changes)
        assert run.failed and message in run.result["msg"], (changes, run.result.get("msg"))
    dry = nc_volume(check=True)
    assert not dry.failed and dry.result["changed"] and dry.result["places"] == ["live", "config"]
    assert volume_disks(env, a["id"]) == []

    made = nc_volume(diff=True)
    assert not made.failed and made.result["changed"], made.result.get("msg")
    assert made.result["attachment"]["device"] == "/dev/vdd" and made.result["diff"]["before"] == {}
    assert made.result["attachment"]["url"] == "iscsi://%s:3260/%s/1" % (SC_IP, source["target"])
    assert guest_disk(env, a["private_ip"], vol)
    assert not nc_volume().result["changed"]
    moved = nc_volume(source=dict(source, port=3261))
    assert moved.failed and "detach it first" in moved.result["msg"]

    dry = nc_volume(check=True, state="detached")
    assert dry.result["changed"] and volume_disks(env, a["id"]) == ["ua-vol-" + vol] * 2
    gone = nc_volume(state="detached")
    assert not gone.failed and gone.result["changed"] and gone.result["attachment"] is None, gone.result.get("msg")
    assert volume_disks(env, a["id"]) == [] and guest_disk(env, a["private_ip"], vol, timeout=0) is None
    assert not nc_volume(state="detached").result["changed"]
    assert not run_module("euca.cloud.sc_export", dict(volume=vol, state="absent", tgt_socket=env["tgtd"].socket)).failed


def rbd_bytes(ceph, spec, length):
    """The first ``length`` bytes of an image (or ``image@snapshot``) of the volumes pool, from ``rbd export``."""
    out = subprocess.run(["ip", "netns", "exec", ceph.ns.name, "rbd", "--conf", str(ceph.conf), "export",
                          "--no-progress", "volumes/" + spec, "-"], stdout=subprocess.PIPE, check=True, timeout=300)
    return out.stdout[:length]


def test_rbd_volumes_are_opened_by_qemu_through_librbd(cluster, ceph_cluster):
    """The node's QEMU opens RBD volumes itself, over the storage network, as the node's own cephx
    client: the guest's bytes are in the RBD image, a snapshot keeps its moment, a clone of it is
    attached to the other guest, and a key whose caps name another pool opens nothing."""
    env, ceph = cluster, ceph_cluster
    a, b = env["guests"]
    ceph.link(env["ns"])  # the node's storage network to the Ceph daemons' namespace
    store = backends.RbdBackend("volumes", conf=str(ceph.conf), namespace=ceph.ns.name)
    vol, snap, copy = "vol-0000e001", "snap-0000e001", "vol-0000e002"
    key = ceph.client_key_for("euca-nc1", {"mon": "profile rbd", "osd": "profile rbd pool=volumes"})
    secret_args = dict(uri=env["daemon"].uri, user="euca-nc1", key=key)
    dry = run_module("euca.cloud.nc_ceph_secret", secret_args, check=True)
    assert not dry.failed and dry.result["changed"], dry.result.get("msg")
    made = run_module("euca.cloud.nc_ceph_secret", secret_args)
    assert not made.failed and made.result["changed"], made.result.get("msg")
    secret = made.result["secret"]["uuid"]
    assert not run_module("euca.cloud.nc_ceph_secret", secret_args).result["changed"]
    source = dict(protocol="rbd", pool="volumes", hosts=ceph.monitors, user="euca-nc1", secret=secret)
    attached = []
    try:
        volumes.converge_volume(store, vol, size_gb=1)
        plug = run_module("euca.cloud.nc_volume", dict(name=a["id"], uri=env["daemon"].uri, volume=vol,
                                                       source=dict(source, image=vol)))
        assert not plug.failed, plug.result.get("msg") or plug.stdout[-3000:]
        attached.append((a["id"], vol))
        assert plug.result["attachment"]["url"] == "rbd://%s:6789/volumes/%s" % (ceph.address, vol)
        assert not run_module("euca.cloud.nc_volume", dict(name=a["id"], uri=env["daemon"].uri, volume=vol,
                                                           source=dict(source, image=vol))).result["changed"]
        # QEMU holds the image open: a watcher, and the SC will not delete it
        assert len(store.info(vol)["watchers"]) == 1
        with pytest.raises(Conflict, match="is open by"):
            volumes.converge_volume(store, vol, state="absent", force=False)
        dev = guest_disk(env, a["private_ip"], vol)
        assert dev, http(env, a["private_ip"], "/cgi-bin/blockdevs")
        guest_write(env, a["private_ip"], dev, "rbd-written-by-%s" % a["id"])
        assert rbd_bytes(ceph, vol, 25) == ("rbd-written-by-%s" % a["id"]).encode()

        volumes.converge_snapshot(store, snap, volume=vol)
        guest_write(env, a["private_ip"], dev, "rbd-later-by-%s" % a["id"])
        assert rbd_bytes(ceph, vol, 23) == ("rbd-later-by-%s" % a["id"]).encode()
        assert rbd_bytes(ceph, vol + "@" + snap, 25) == ("rbd-written-by-%s" % a["id"]).encode()

        volumes.converge_volume(store, copy, snapshot=snap)
        plug = run_module("euca.cloud.nc_volume", dict(name=b["id"], uri=env["daemon"].uri, volume=copy,
                                                       source=dict(source, image=copy)))
        assert not plug.failed, plug.result.get("msg") or plug.stdout[-3000:]
        attached.append((b["id"], copy))
        dev_b = guest_disk(env, b["private_ip"], copy)
        assert guest_read(env, b["private_ip"], dev_b, 25) == "rbd-written-by-%s" % a["id"]
        with pytest.raises(Conflict, match="has volumes cloned from it"):
            volumes.converge_snapshot(store, snap, state="absent")

        # another node's client, whose caps name only the images pool, cannot open this pool's images
        other = ceph.client_key_for("euca-nc2", {"mon": "profile rbd", "osd": "profile rbd pool=images"})
        made = run_module("euca.cloud.nc_ceph_secret", dict(uri=env["daemon"].uri, user="euca-nc2", key=other))
        assert not made.failed, made.result.get("msg")
        denied = run_module("euca.cloud.nc_volume", dict(
            name=b["id"], uri=env["daemon"].uri, volume=vol,
            source=dict(source, image=vol, user="euca-nc2", secret=made.result["secret"]["uuid"])))
        assert denied.failed and "attaching volume %s" % vol in denied.result["msg"], denied.result
        assert vol not in str(volume_disks(env, b["id"]))
    finally:
        for instance, volume in reversed(attached):
            run = run_module("euca.cloud.nc_volume", dict(name=instance, uri=env["daemon"].uri, volume=volume,
                                                          state="detached", timeout=90))
            assert not run.failed, run.result.get("msg")
    assert store.info(vol)["watchers"] == [] and volume_disks(env, a["id"]) == []
    for name in (copy, vol):
        volumes.converge_volume(store, name, state="absent", force=True)
    volumes.converge_snapshot(store, snap, state="absent")
    assert not [e for e in store.listing() if e["image"].startswith(("vol-0000e001", "vol-0000e002"))]


def test_rbd_volumes_through_the_playbooks(cluster, ceph_cluster):
    """create-, attach-, detach- and delete-volume.yml on a cluster whose SC keeps volumes in Ceph:
    no export, the node's libvirt gets its own key, QEMU opens the image from Ceph."""
    env, ceph = cluster, ceph_cluster
    a, b = env["guests"]
    ceph.link(env["ns"])
    key = ceph.client_key_for("euca-nc1", {"mon": "profile rbd", "osd": "profile rbd pool=volumes"})
    inventory = yaml.safe_load(open(env["inventory"]))
    inventory["all"]["children"]["sc"]["hosts"]["sc1"].update(
        euca_storage_backend="rbd", euca_rbd_pool="volumes", euca_ceph_conf=str(ceph.conf),
        euca_ceph_namespace=ceph.ns.name, euca_ceph_monitors=ceph.monitors)
    inventory["all"]["children"]["nc"]["hosts"]["nc1"].update(euca_ceph_user="euca-nc1", euca_ceph_key=key)
    rbd_env = dict(env, inventory=str(env["work"] / "hosts-rbd.yml"))
    with open(rbd_env["inventory"], "w") as handle:
        yaml.safe_dump(inventory, handle)
    store = backends.RbdBackend("volumes", conf=str(ceph.conf), namespace=ceph.ns.name)

    vol = create_volume(rbd_env, "rbd-data", size_gb=1)
    assert store.info(vol)["size_bytes"] == 1 << 30 and not os.path.exists(env["volumes_dir"] / (vol + ".img"))
    attach = play(rbd_env, "attach-volume.yml", volume="rbd-data", instance=a["id"])
    assert attach.rc == 0, attach.stdout[-3000:]
    plugged = attach.task_result("Hot-plug it on the node")
    assert plugged["attachment"]["url"] == "rbd://%s:6789/volumes/%s" % (ceph.address, vol)
    assert vol not in targets(env) and len(store.info(vol)["watchers"]) == 1
    dev = guest_disk(env, a["private_ip"], vol)
    assert dev, http(env, a["private_ip"], "/cgi-bin/blockdevs")
    guest_write(env, a["private_ip"], dev, "playbook-rbd-%s" % a["id"])
    assert rbd_bytes(ceph, vol, 23) == ("playbook-rbd-%s" % a["id"]).encode()
    assert "is attached to %s; detach it first" % a["id"] in failure(play(rbd_env, "delete-volume.yml",
                                                                          volume="rbd-data", force=True))
    assert play(rbd_env, "detach-volume.yml", volume="rbd-data").rc == 0
    assert store.info(vol)["watchers"] == [] and ledger_attachment(env, vol) is None

    attach = play(rbd_env, "attach-volume.yml", volume="rbd-data", instance=b["id"])
    assert attach.rc == 0, attach.stdout[-3000:]
    dev = guest_disk(env, b["private_ip"], vol)
    assert guest_read(env, b["private_ip"], dev, 23) == "playbook-rbd-%s" % a["id"]
    assert play(rbd_env, "detach-volume.yml", volume="rbd-data").rc == 0
    assert play(rbd_env, "delete-volume.yml", volume="rbd-data", force=True).rc == 0
    assert store.info(vol) is None and "rbd-data" not in ledger_volumes(env)
