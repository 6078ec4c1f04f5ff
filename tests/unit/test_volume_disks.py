"""Volumes as disks (compute/volumes.py) and the tgt export plans (storage/exports.py)."""

import subprocess
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.compute import secrets, volumes
from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.storage import exports

ISCSI = {"protocol": "iscsi", "host": "10.20.0.2", "port": 3260, "target": "iqn.2010-05.cloud.euca:vol-0000000a",
         "lun": 1}


@pytest.mark.parametrize("source", [ISCSI, {"protocol": "block", "path": "/dev/vg0/vol-0000000a"},
                                    {"protocol": "file", "path": "/srv/vol-0000000a.img"}])
def test_source_survives_xml_and_url(source, tmp_path):
    xml = volumes.disk_xml("vol-0000000a", volumes.check_source(source), "vdc")
    disk = ET.fromstring(xml)
    assert volumes.source_of(disk) == source
    assert volumes.from_url(volumes.url(source)) == source
    assert disk.find("serial").text == "vol-0000000a" and disk.find("alias").get("name") == "ua-vol-vol-0000000a"
    # a domain holding it passes libvirt's schema and is found by volume id
    dom = ("<domain type='qemu'><name>i-0a1b2c3d</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
           "<devices>%s</devices></domain>" % xml)
    (tmp_path / "d.xml").write_text(dom)
    run = subprocess.run(["virt-xml-validate", str(tmp_path / "d.xml"), "domain"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert volumes.find_volume(dom, "vol-0000000a")[0] == "vdc"
    assert volumes.find_volume(dom, "vol-0000000b") == (None, None)


@pytest.mark.parametrize("source, message", [
    ({"protocol": "nbd"}, "source.protocol must be one of"),
    ({"protocol": "iscsi", "host": "10.0.0.1"}, "needs target"),
    ({"protocol": "iscsi", "host": "h", "target": "t", "lun": "x"}, "must be integers"),
    ({"protocol": "block", "path": "dev/sdb"}, "absolute path"),
    ("iscsi://x", "must be a dict"),
])
def test_bad_sources_are_named(source, message):
    with pytest.raises(InvalidInput, match=message):
        volumes.check_source(source)


RBD = {"protocol": "rbd", "pool": "volumes", "image": "vol-0000000a", "user": "euca-nc1",
       "secret": "0b6d3c4e-2f1a-5b7c-8d9e-0f1a2b3c4d5e",
       "hosts": [{"host": "10.20.0.5", "port": 6789}, {"host": "10.20.0.6", "port": 3300}]}


@pytest.mark.parametrize("source", [RBD, dict(RBD, user=None, secret=None)])
def test_an_rbd_source_survives_xml(source, tmp_path):
    xml = volumes.disk_xml("vol-0000000a", volumes.check_source(source), "vdc")
    disk = ET.fromstring(xml)
    assert volumes.source_of(disk) == source
    assert volumes.url(source) == "rbd://10.20.0.5:6789,10.20.0.6:3300/volumes/vol-0000000a"
    assert disk.get("type") == "network" and disk.find("source").get("name") == "volumes/vol-0000000a"
    dom = ("<domain type='qemu'><name>i-0a1b2c3d</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
           "<devices>%s</devices></domain>" % xml)
    (tmp_path / "d.xml").write_text(dom)
    run = subprocess.run(["virt-xml-validate", str(tmp_path / "d.xml"), "domain"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    # the monitors' port defaults to 6789
    assert volumes.check_source(dict(RBD, hosts=[{"host": "10.20.0.5"}]))["hosts"] == [{"host": "10.20.0.5",
                                                                                      "port": 6789}]


@pytest.mark.parametrize("change, message", [
    (dict(pool="vol umes"), "needs pool, a Ceph name"),
    (dict(image=None), "needs image"),
    (dict(hosts=[]), "needs hosts: the Ceph monitors"),
    (dict(hosts=["10.0.0.1"]), "are {host, port} of the Ceph monitors"),
    (dict(hosts=[{"host": "10.0.0.1", "port": "x"}]), "is not a number"),
    (dict(secret=None), "user and secret .* together"),
    (dict(secret="not-a-uuid"), "must be the uuid of a libvirt secret"),
])
def test_bad_rbd_sources_are_named(change, message):
    with pytest.raises(InvalidInput, match=message):
        volumes.check_source(dict(RBD, **change))


def test_ceph_secret_input_is_checked_before_libvirt():
    _user, raw, uuid = secrets.check("euca-nc1", "AQBnTk1n3Ys7ExAAi6OgYrGOS5wT4PqcGQ7Ywg==")
    assert len(raw) == 28 and uuid == secrets.default_uuid("euca-nc1") != secrets.default_uuid("euca-nc2")
    assert secrets.check("euca-nc1", uuid="0B6D3C4E-2F1A-5B7C-8D9E-0F1A2B3C4D5E")[2] == RBD["secret"]
    for args, message in ((("client nc",), "not a cephx client name"), (("nc", "%%%"), "not a cephx key"),
                          (("nc", "QUJD"), "at least 16 bytes"), (("nc", None, "x"), "is not a uuid")):
        with pytest.raises(InvalidInput, match=message):
            secrets.check(*args)


def test_devices_exclude_root_and_seed():
    assert volumes.check_device("/dev/vdc") == "vdc" and volumes.check_device("vdy") == "vdy"
    for bad in ("/dev/vda", "vdz", "/dev/sdb", None):
        with pytest.raises(InvalidInput):
            volumes.check_device(bad)


SHOW = """Target 1: iqn.2010-05.cloud.euca:vol-0000000a
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
        I_T nexus: 3
            Initiator: iqn.2008-11.org.linux-kvm alias: none
            Connection: 0
                IP Address: 10.20.0.3
    LUN information:
        LUN: 0
            Type: controller
            Backing store type: null
            Backing store path: None
        LUN: 1
            Type: disk
            Size: 1074 MB, Block size: 512
            Backing store type: rdwr
            Backing store path: /srv/vol-0000000a.img
            Backing store flags: 
    Account information:
    ACL information:
        10.20.0.3
Target 2: iqn.2010-05.cloud.euca:vol-0000000b
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
    LUN information:
        LUN: 0
            Type: controller
    Account information:
    ACL information:
"""


def test_tgtadm_show_is_parsed():
    targets = exports.parse_targets(SHOW)
    first = targets["iqn.2010-05.cloud.euca:vol-0000000a"]
    assert first["tid"] == 1 and first["acl"] == ["10.20.0.3"]
    assert first["luns"][1] == {"path": "/srv/vol-0000000a.img", "bstype": "rdwr"}
    assert first["sessions"] == [{"sid": 3, "initiator": "iqn.2008-11.org.linux-kvm",
                                  "connections": [{"cid": 0, "ip": "10.20.0.3"}]}]
    assert targets["iqn.2010-05.cloud.euca:vol-0000000b"] == {"tid": 2, "luns": {0: {"path": None, "bstype": None}},
                                                              "acl": [], "sessions": []}
    assert exports.parse_portals("Portal: 10.20.0.2:3260,1\nPortal: [::1]:3260,1\n") == ["10.20.0.2:3260", "[::1]:3260"]


def plan_lines(steps):
    return [" ".join(step[step.index("iscsi") + 1:]) for step in steps]


def test_plans_new_target_acl_change_and_safe_removal():
    tgt = exports.Tgt("/run/test/socket", 0)
    targets = exports.parse_targets(SHOW)
    new = tgt.plan(targets, "iqn.2010-05.cloud.euca:vol-0000000c", "/srv/c.img", "rdwr", ["10.20.0.4"])
    assert plan_lines(new) == [
        "--op new --mode target --tid 3 -T iqn.2010-05.cloud.euca:vol-0000000c",
        "--op new --mode logicalunit --tid 3 --lun 1 -b /srv/c.img --bstype rdwr",
        "--op bind --mode target --tid 3 -I 10.20.0.4"]
    same = tgt.plan(targets, "iqn.2010-05.cloud.euca:vol-0000000a", "/srv/vol-0000000a.img", "rdwr", ["10.20.0.3"])
    assert same == []
    # the node with a session is not cut off, nor its target deleted, unless forced
    with pytest.raises(Conflict, match="still has a session"):
        tgt.plan(targets, "iqn.2010-05.cloud.euca:vol-0000000a", "/srv/vol-0000000a.img", "rdwr", ["10.20.0.4"])
    with pytest.raises(Conflict, match="in use by 10.20.0.3"):
        tgt.plan(targets, "iqn.2010-05.cloud.euca:vol-0000000a", present=False)
    forced = tgt.plan(targets, "iqn.2010-05.cloud.euca:vol-0000000a", "/srv/vol-0000000a.img", "rdwr",
                      ["iqn.2024-01.cloud.euca:nc-2"], force=True)
    assert plan_lines(forced) == [
        "--op unbind --mode target --tid 1 -I 10.20.0.3",
        "--op delete --mode conn --tid 1 --sid 3 --cid 0",
        "--op bind --mode target --tid 1 --initiator-name iqn.2024-01.cloud.euca:nc-2"]
    gone = tgt.plan(targets, "iqn.2010-05.cloud.euca:vol-0000000b", present=False)
    assert plan_lines(gone) == ["--op delete --mode target --tid 2"]
    assert tgt.plan(targets, "iqn.2010-05.cloud.euca:vol-0000000d", present=False) == []


def test_initiators_are_checked_per_transport():
    assert exports.check_initiators("iscsi", ["10.20.0.3", "10.20.0.3", "IQN.2024-01.cloud.euca:nc-1"]) == [
        "10.20.0.3", "iqn.2024-01.cloud.euca:nc-1"]
    assert exports.check_initiators("aoe", ["D0:0D:00:00:00:01"]) == ["d0:0d:00:00:00:01"]
    with pytest.raises(InvalidInput, match="neither an IP address nor an iqn"):
        exports.check_initiators("iscsi", ["nc-1"])
    with pytest.raises(InvalidInput, match="MAC addresses"):
        exports.check_initiators("aoe", ["10.20.0.3"])


def test_vblade_plan_allocates_slots_and_restarts_on_acl_change():
    blade = exports.Vblade("/run/test/aoe", "ns-sc")
    have = {"vol-0000000a": {"shelf": 0, "slot": 0, "interface": "eth0", "path": "/srv/a.img",
                             "macs": ["d0:0d:00:00:00:01"], "running": True, "pid": 42,
                             "argv": ["vblade", "-m", "d0:0d:00:00:00:01", "0", "0", "eth0", "/srv/a.img"]}}
    steps, address = blade.plan(have, "vol-0000000b", "/srv/b.img", "eth0", 0, None, ["d0:0d:00:00:00:02"])
    assert address == (0, 1) and blade.render(steps) == [
        "ip netns exec ns-sc vblade -m d0:0d:00:00:00:02 0 1 eth0 /srv/b.img"]
    assert blade.plan(have, "vol-0000000a", "/srv/a.img", "eth0", 0, None, ["d0:0d:00:00:00:01"]) == ([], (0, 0))
    steps, address = blade.plan(have, "vol-0000000a", "/srv/a.img", "eth0", 0, None, ["d0:0d:00:00:00:03"])
    assert [s[0] for s in steps] == ["stop", "start"] and address == (0, 0)
    with pytest.raises(Conflict, match="e0.0 on eth0 is taken by vol-0000000a"):
        blade.plan(have, "vol-0000000b", "/srv/b.img", "eth0", 0, 0, ["d0:0d:00:00:00:02"])
