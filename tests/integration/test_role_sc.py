"""roles/sc deploys a storage controller in a namespace: tgtd under a (private) supervisord, and
sc_volume/sc_export then export a volume through it that QEMU's initiator reads."""

import sys

import pytest
import yaml

from harness.runner import run_module, run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.root]

LOCAL = "localhost ansible_connection=local ansible_python_interpreter=%s" % sys.executable
VOL = "vol-0000c001"


def deploy(tmp_path, role_vars, play_vars, check=False):
    play = tmp_path / "sc.yml"
    play.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "vars": play_vars,
                                     "roles": [dict({"role": "euca.cloud.sc"}, **role_vars)]}]))
    return run_playbook(play, inventory=LOCAL, check=check)


def changed(run):
    return run.stats["changed"].get("localhost", 0)


def test_storage_controller_role(netns, supervisor, tmp_path):
    ns = netns()
    ns.ip("link", "set", "lo", "up")
    role_vars = dict(sc_namespace=ns.name, sc_iscsi_portal="127.0.0.1:3260",
                     sc_tgt_socket=str(tmp_path / "tgt" / "socket"), sc_volumes_dir=str(tmp_path / "volumes"))

    dry = deploy(tmp_path, role_vars, supervisor.role_vars, check=True)
    assert dry.rc == 0, dry.stdout[-3000:]
    assert not (tmp_path / "volumes").exists() and not list(supervisor.programs.iterdir())

    first = deploy(tmp_path, role_vars, supervisor.role_vars)
    assert first.rc == 0 and changed(first) >= 3, first.stdout[-3000:]
    pid = supervisor.pid("euca-tgtd")
    assert pid and pid in ns.ns_pids()
    again = deploy(tmp_path, role_vars, supervisor.role_vars)
    assert again.rc == 0 and changed(again) == 0, again.stdout[-3000:]
    assert supervisor.pid("euca-tgtd") == pid

    # the SC works: a volume exported through this tgtd is read by QEMU's initiator in the namespace
    where = dict(volumes_dir=role_vars["sc_volumes_dir"])
    assert not run_module("euca.cloud.sc_volume", dict(where, name=VOL, size_gb=1)).failed
    with open(tmp_path / "volumes" / (VOL + ".img"), "r+b") as handle:
        handle.write(b"SC-ROLE-BYTES")
    export = run_module("euca.cloud.sc_export", dict(where, volume=VOL, initiators=["127.0.0.1"],
                                                     tgt_socket=role_vars["sc_tgt_socket"]))
    assert not export.failed, export.result.get("msg")
    source = export.result["export"]["source"]
    read = ns.run("qemu-io", "-f", "raw", "-r", "-c", "read -v 0 13",
                  "iscsi://%s:%d/%s/1" % (source["host"], source["port"], source["target"]), check=False)
    assert read.returncode == 0 and "53 43 2d 52 4f 4c 45 2d" in read.stdout, read.stdout + read.stderr
    assert not run_module("euca.cloud.sc_export", dict(where, volume=VOL, state="absent",
                                                       tgt_socket=role_vars["sc_tgt_socket"])).failed
