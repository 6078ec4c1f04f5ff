"""sc_export with real exporters: tgtd (iSCSI) and vblade (AoE) in a storage controller's namespace.

Three namespaces share one storage network: the SC (a bridge, tgtd, vblade), the node the
volume is exported to, and another host. The node reads the volume through QEMU's own iSCSI
initiator and gets the bytes the SC's file holds; the other host's login is refused by the ACL.
For AoE nothing here has an initiator, so a raw-socket AoE client (harness/aoe_probe.py) asks
vblade for its configuration and sector 0.
"""

import json
import os
import sys
import time

import pytest

from harness import netns as _netns
from harness import tgtd as _tgtd
from harness.runner import run_module

pytestmark = [pytest.mark.integration, pytest.mark.root]

SC_IP, NC_IP, OTHER_IP = "10.31.0.2", "10.31.0.3", "10.31.0.4"
VOL = "vol-0000e001"
IQN = "iqn.2010-05.cloud.euca:" + VOL
PROBE = os.path.join(os.path.dirname(_netns.__file__), "aoe_probe.py")


@pytest.fixture(scope="module")
def storage_net(tmp_path_factory):
    work = tmp_path_factory.mktemp("sc-export")
    sc, nc, other = _netns.Netns.create(), _netns.Netns.create(), _netns.Netns.create()
    daemon = None
    try:
        sc.bridge("st0")
        sc.addr("st0", SC_IP + "/24")
        for peer, ip, port in ((nc, NC_IP, "st-nc"), (other, OTHER_IP, "st-ot")):
            sc.veth(peer, port, "eth-st")
            sc.enslave(port, "st0")
            peer.addr("eth-st", ip + "/24")
        daemon = _tgtd.start_in(sc, "%s:3260" % SC_IP, base_dir=str(work))
        volumes = work / "volumes"
        made = run_module("euca.cloud.sc_volume", dict(name=VOL, size_gb=1, volumes_dir=str(volumes)))
        assert not made.failed, made.result.get("msg")
        with open(volumes / (VOL + ".img"), "r+b") as handle:
            handle.write(b"EUCA-SC-BYTES-0001")
        yield {"sc": sc, "nc": nc, "other": other, "tgtd": daemon, "work": work, "volumes": volumes,
               "mac": lambda ns: json.loads(ns.ip("-j", "link", "show", "eth-st").stdout)[0]["address"]}
    finally:
        if daemon is not None:
            daemon.stop()
        for ns in (sc, nc, other):
            ns.delete()


def export(net, **args):
    base = dict(volume=VOL, volumes_dir=str(net["volumes"]), tgt_socket=net["tgtd"].socket)
    base.update(args)
    return run_module("euca.cloud.sc_export", base, check=base.pop("check", False), diff=base.pop("diff", False))


def ok(run):
    assert not run.failed, run.result.get("msg") or run.stdout[-3000:]
    return run.result


def qemu_read(ns, length=18):
    """``(rc, bytes or error text)``: what QEMU's iSCSI initiator reads at offset 0 of the target from ``ns``."""
    run = ns.run("qemu-io", "-f", "raw", "-r", "-c", "read -v 0 %d" % length, "iscsi://%s/%s/1" % (SC_IP, IQN),
                 check=False, timeout=30)
    if run.returncode != 0 or "read %d/%d bytes" % (length, length) not in run.stdout:
        return 1, run.stdout + run.stderr
    dump = [line.split("  ")[1] for line in run.stdout.splitlines() if line[:8].isalnum() and line[8:9] == ":"]
    return 0, bytes.fromhex("".join(dump).replace(" ", ""))


def test_bad_input_changes_nothing(storage_net):
    cases = [
        (dict(volume="vol-0000e0ff", initiators=[NC_IP]), "volume vol-0000e0ff does not exist"),
        (dict(volume="disk1", initiators=[NC_IP]), "is not a volume or snapshot id"),
        (dict(initiators=["nc-1"]), "neither an IP address nor an iqn"),
        (dict(initiators=[]), "initiators is empty"),
        (dict(transport="aoe", initiators=["d0:0d:00:00:00:01"]), "needs aoe_interface"),
        (dict(tgt_socket=str(storage_net["work"] / "nothing")), "tgtd is not running"),
    ]
    for args, message in cases:
        run = export(storage_net, **dict(dict(initiators=[NC_IP]), **args))
        assert run.failed and message in run.result["msg"], (args, run.result.get("msg"))
    assert "Target" not in storage_net["tgtd"].tgtadm("--lld", "iscsi", "--op", "show", "--mode", "target").stdout


def test_iscsi_export_lets_in_only_the_attaching_node(storage_net):
    net = storage_net
    dry = ok(export(net, initiators=[NC_IP], check=True))
    assert dry["changed"] and dry["export"]["target"] == IQN and len(dry["commands"]) == 3
    assert "Target" not in net["tgtd"].tgtadm("--lld", "iscsi", "--op", "show", "--mode", "target").stdout

    made = ok(export(net, initiators=[NC_IP], diff=True))
    assert made["changed"] and made["diff"]["before"] == {}
    assert made["export"]["source"] == {"protocol": "iscsi", "host": SC_IP, "port": 3260, "target": IQN, "lun": 1}
    assert made["export"]["initiators"] == [NC_IP] and made["export"]["path"].endswith(VOL + ".img")
    again = ok(export(net, initiators=[NC_IP]))
    assert not again["changed"] and again["commands"] == []

    rc, out = qemu_read(net["nc"])
    assert rc == 0 and out == b"EUCA-SC-BYTES-0001", out
    rc, out = qemu_read(net["other"])
    assert rc != 0 and "EUCA-SC-BYTES" not in out, out

    # moving the ACL to the other host: now it gets in and the node does not
    moved = ok(export(net, initiators=[OTHER_IP]))
    assert moved["changed"] and moved["export"]["initiators"] == [OTHER_IP]
    assert qemu_read(net["other"])[0] == 0 and qemu_read(net["nc"])[0] != 0

    gone = ok(export(net, state="absent"))
    assert gone["changed"] and gone["export"] is None
    assert not ok(export(net, state="absent"))["changed"]
    assert qemu_read(net["other"])[0] != 0


def test_iscsi_export_in_use_is_not_removed(storage_net):
    net = storage_net
    ok(export(net, initiators=[NC_IP]))
    # a session held open by qemu-io in the node's namespace
    holder = net["nc"].spawn(["qemu-io", "-f", "raw", "-c", "sleep 20000", "iscsi://%s/%s/1" % (SC_IP, IQN)])
    try:
        for _ in range(100):
            shown = net["tgtd"].tgtadm("--lld", "iscsi", "--op", "show", "--mode", "target").stdout
            if "IP Address: %s" % NC_IP in shown:
                break
            assert holder.poll() is None, "qemu-io could not log in"
            time.sleep(0.1)
        refused = export(net, state="absent")
        assert refused.failed and "in use by %s" % NC_IP in refused.result["msg"]
        cut = export(net, initiators=[OTHER_IP])
        assert cut.failed and "still has a session" in cut.result["msg"]
        shown = net["tgtd"].tgtadm("--lld", "iscsi", "--op", "show", "--mode", "target").stdout
        assert IQN in shown and "        %s" % NC_IP in shown
        forced = ok(export(net, state="absent", force=True))
        assert forced["changed"]
        assert IQN not in net["tgtd"].tgtadm("--lld", "iscsi", "--op", "show", "--mode", "target").stdout
    finally:
        holder.kill()
        holder.wait()


def probe(ns, shelf, slot):
    run = ns.run(sys.executable, PROBE, "eth-st", str(shelf), str(slot), "1.5", timeout=30)
    return json.loads(run.stdout)


def test_aoe_export_answers_only_the_attaching_node(storage_net, supervisor):
    net = storage_net
    nc_mac = net["mac"](net["nc"])
    args = dict(transport="aoe", initiators=[nc_mac], aoe_interface="st0", aoe_shelf=7, namespace=net["sc"].name,
                state_dir=str(net["work"] / "aoe"), service_manager="supervisord",
                supervisor_conf=str(supervisor.conf), supervisor_programs_dir=str(supervisor.programs))
    dry = ok(export(net, check=True, **args))
    assert dry["changed"] and dry["commands"] == [
        "ip netns exec %s vblade -m %s 7 0 st0 %s" % (net["sc"].name, nc_mac, net["volumes"] / (VOL + ".img"))]
    made = ok(export(net, **args))
    try:
        assert made["changed"] and made["export"]["target"] == "e7.0" and made["export"]["running"]
        assert made["export"]["source"] == {"protocol": "aoe", "target": "e7.0", "path": "/dev/etherd/e7.0"}
        # the process is what the plan said, in the SC's namespace
        pid = made["export"]["pid"]
        assert made["export"]["program"] == "euca-vblade-" + VOL and supervisor.pid("euca-vblade-" + VOL) == pid
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            assert handle.read().split(b"\0")[:-1] == [c.encode() for c in dry["commands"][0].split()[4:]]
        assert pid in net["sc"].ns_pids()
        assert not ok(export(net, **args))["changed"]

        seen = probe(net["nc"], 7, 0)
        assert seen["config"] == {"shelf": 7, "slot": 0, "buffers": seen["config"]["buffers"],
                                  "firmware": seen["config"]["firmware"], "aoe_version": 1}
        assert bytes.fromhex(seen["sector0"]).startswith(b"EUCA-SC-BYTES-0001")
        assert probe(net["other"], 7, 0) == {"config": None, "sector0": None, "mac": None}
    finally:
        gone = ok(export(net, state="absent", **dict((k, v) for k, v in args.items() if k != "initiators")))
    assert gone["changed"] and gone["export"] is None and pid not in net["sc"].ns_pids()
    assert probe(net["nc"], 7, 0)["config"] is None
