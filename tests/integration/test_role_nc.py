"""roles/nc deploys a node controller in a namespace: a private libvirtd under a (private)
supervisord, prepared by nc_libvirtd, that libvirt clients reach at the URI the role reports."""

import sys

import libvirt
import pytest
import yaml

from harness.libvirtd import CACHE
from harness.runner import run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.root]

LOCAL = "localhost ansible_connection=local ansible_python_interpreter=%s" % sys.executable


def deploy(tmp_path, role_vars, play_vars, check=False):
    play = tmp_path / "nc.yml"
    play.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False, "vars": play_vars,
        "roles": [dict({"role": "euca.cloud.nc"}, **role_vars)],
        "post_tasks": [{"name": "Report the URI", "ansible.builtin.debug": {"var": "nc_libvirt_uri"}}]}]))
    return run_playbook(play, inventory=LOCAL, check=check)


def changed(run):
    return run.stats["changed"].get("localhost", 0)


def test_node_controller_role(netns, supervisor, tmp_path):
    ns = netns()
    CACHE.mkdir(parents=True, exist_ok=True)
    role_vars = dict(nc_namespace=ns.name, nc_libvirtd_state_dir=str(tmp_path / "libvirtd"),
                     nc_libvirt_cache_dir=str(CACHE), nc_instances_dir=str(tmp_path / "instances"),
                     nc_image_cache_dir=str(tmp_path / "cache"))

    dry = deploy(tmp_path, role_vars, supervisor.role_vars, check=True)
    assert dry.rc == 0, dry.stdout[-3000:]
    assert not (tmp_path / "libvirtd").exists() and not list(supervisor.programs.iterdir())

    first = deploy(tmp_path, role_vars, supervisor.role_vars)
    assert first.rc == 0 and changed(first) >= 3, first.stdout[-3000:]
    uri = first.task_result("Report the URI")["nc_libvirt_uri"]
    assert uri == "qemu+unix:///system?socket=%s/libvirtd/run/libvirt-sock" % tmp_path
    pid = supervisor.pid("euca-libvirtd")
    assert pid and pid in ns.ns_pids()
    conn = libvirt.open(uri)
    try:
        assert conn.listAllDomains() == [] and "<domain type='qemu'" in conn.getCapabilities()
        assert not conn.listAllNetworks()  # no libvirt network: instances use the cloud's bridges
    finally:
        conn.close()

    again = deploy(tmp_path, role_vars, supervisor.role_vars)
    assert again.rc == 0 and changed(again) == 0, again.stdout[-3000:]
    assert supervisor.pid("euca-libvirtd") == pid
