"""The README's demo as the molecule scenario molecule/default, on the sandbox inventory moved to
throwaway namespaces, directories and a private supervisord (EUCA_MOLECULE_VARS):

- create, converge (playbooks/demo.yml: deploy, image, groups, instances, elastic IPs, a volume),
  idempotence (the second converge reports changed=0) and verify (packets from the outside);
- reconcile: the CC wiped (our nft tables flushed, the segment bridges deleted, dnsmasq killed)
  breaks verify; reconcile.yml restores it and verify passes again;
- the day-2 operations on the live cloud: stop/start, revoke/authorize, evict-node/add-node;
- destroy (playbooks/clean.yml) leaves no namespace, no process and no state behind.
"""

import configparser
import json
import os
import subprocess
import sys
import time

import libvirt
import pytest
import yaml

from harness import netns as _netns
from harness.guest_image import image_dir
from harness.runner import REPO_ROOT, run_playbook
from harness.api_server import client
from harness.sandbox import sandbox_vars

# about 7 minutes on an idle machine, up to 19 under the load of parallel suites: the limit leaves room for a loaded 2-core one
pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(1800)]

INVENTORY = str(REPO_ROOT / "inventories" / "sandbox")
WALRUS_PORT = 18774


def changed(run):
    return sum(run.stats["changed"].values())


def molecule(step, varsfile):
    env = dict(os.environ, EUCA_MOLECULE_VARS=str(varsfile), NO_COLOR="1",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "molecule"), step, "-s", "default"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_demo_scenario_converges_verifies_reconciles_and_cleans_up(supervisor, guest_image, tmp_path):
    cloud, outside = _netns.new_name(), _netns.new_name()
    extravars = dict(sandbox_vars(tmp_path, supervisor, cloud, outside, WALRUS_PORT),
                     test_image_dir=str(image_dir()), clean_keep_image=True)
    varsfile = tmp_path / "molecule-vars.yml"
    varsfile.write_text(yaml.safe_dump(extravars))
    ns, out = _netns.Netns(cloud), _netns.Netns(outside)

    def play(name, **more):
        return run_playbook(REPO_ROOT / "playbooks" / name, inventory=INVENTORY, extravars=dict(extravars, **more))

    def outside_http(address):
        got = out.run(sys.executable, "-c", "import urllib.request, sys; "
                      "print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode().strip())",
                      "http://%s/" % address, check=False, timeout=30)
        return got.stdout.strip() if got.returncode == 0 else None

    def targets():
        """What the SC's tgtd exports (it keeps nothing across a restart); None while it does not answer."""
        got = subprocess.run(["tgtadm", "-C", "0", "--lld", "iscsi", "--op", "show", "--mode", "target"],
                             env=dict(os.environ, TGT_IPC_SOCKET=extravars["sc_tgt_socket"]),
                             capture_output=True, text=True)
        return got.stdout if got.returncode == 0 else None

    cpu_group = "/sys/fs/cgroup/cpu/euca-guests-%s" % cloud  # nc_guest_cpu_group of the sandbox inventory

    def grouped():
        """The instances whose QEMU process is in the sandbox's guests' cpu cgroup."""
        names = set()
        with open(os.path.join(cpu_group, "cgroup.procs")) as procs:
            for pid in procs.read().split():
                argv = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\0")
                names.update(a.split(b",")[0][6:].decode() for a in argv if a.startswith(b"guest="))
        return names

    destroyed = False
    try:
        converged = None
        for step in ("create", "converge", "idempotence", "verify"):
            done = molecule(step, varsfile)
            assert done.returncode == 0, (step, done.stdout[-4000:], done.stderr[-2000:])
            converged = converged or (done.stdout + done.stderr if step == "converge" else None)
        tables = "\n".join(play("describe.yml").task_result("Show the cloud")["msg"])
        web, db_ = (line.split() for line in tables.splitlines() if line.startswith("i-"))
        if web[1] != "demo-web":
            web, db_ = db_, web
        assert web[1:4] == ["demo-web", "running", "web"] and db_[1:4] == ["demo-db", "running", "db"], tables
        # the demo showed the EC2 API: its endpoint, the admin account's credentials, and awscli's answer
        endpoint = extravars["clc_api_endpoint"]
        assert "EC2 API: %s" % endpoint in converged and web[0] in converged.split("aws ec2 describe-instances:")[1]
        credentials = configparser.ConfigParser()
        credentials.read(tmp_path / "clc" / "admin.credentials")
        key = (credentials["admin"]["aws_access_key_id"], credentials["admin"]["aws_secret_access_key"])
        described = client(endpoint, key).describe_instances()["Reservations"]
        assert sorted(i["InstanceId"] for r in described for i in r["Instances"]) == sorted([web[0], db_[0]])
        web_ip = web[6]
        assert outside_http(web_ip) == web[0]
        # the guests weigh as one against the host's own work: both QEMU processes in the sandbox's cpu cgroup
        assert grouped() == {web[0], db_[0]}
        volume = [line.split()[0] for line in tables.split("VOLUMES")[1].splitlines() if line.startswith("vol-")][0]
        assert "in-use" in tables and web[0] in tables.split("VOLUMES")[1] and volume in (targets() or "")

        # wipe the CC: our nft tables flushed, the segment bridges deleted, dnsmasq killed
        for table in ("euca_nat", "euca_filter"):
            ns.run("nft", "flush", "table", "ip", table)
        links = json.loads(ns.run("ip", "-j", "link", "show", "type", "bridge").stdout)
        bridges = [link["ifname"] for link in links if link["ifname"].startswith("eubr-")]
        assert len(bridges) == 2
        for bridge in bridges:
            ns.run("ip", "link", "del", bridge)
        dnsmasq = [pid for pid in ns.ns_pids() if open("/proc/%d/comm" % pid).read().strip() == "dnsmasq"]
        assert dnsmasq
        for pid in dnsmasq:
            os.kill(pid, 9)
        # and the SC: tgtd killed (supervisord starts a new one, which replays sc_export's restore scripts)
        tgtd = supervisor.pid("euca-tgtd")
        os.kill(tgtd, 9)
        deadline = time.monotonic() + 30
        while supervisor.pid("euca-tgtd") in (0, tgtd) or volume not in (targets() or ""):
            assert time.monotonic() < deadline, "tgtd did not come back with its export"
            time.sleep(0.5)
        broken = play("verify.yml", verify_retries=2)
        assert broken.rc != 0 and outside_http(web_ip) is None
        repaired = play("reconcile.yml")
        # nft tables, bridges, ...: tgtd's export (and, under a service manager, dnsmasq) came back by themselves
        assert repaired.rc == 0 and changed(repaired) >= 4, repaired.stdout[-4000:]
        assert volume in (targets() or "")  # the export is back
        assert play("verify.yml").rc == 0
        assert changed(play("reconcile.yml")) == 0  # nothing left to repair

        # stop and start: the ledger says so, libvirt follows, the instance answers again
        stop = play("stop-instances.yml", instance_name="demo-db")
        assert stop.rc == 0, stop.stdout[-3000:]
        conn = libvirt.open("qemu+unix:///system?socket=%s/libvirtd/run/libvirt-sock" % tmp_path)
        assert conn.lookupByName(db_[0]).info()[0] == libvirt.VIR_DOMAIN_SHUTOFF
        start = play("start-instances.yml", instance_name="demo-db")
        assert start.rc == 0, start.stdout[-3000:]
        assert conn.lookupByName(db_[0]).info()[0] == libvirt.VIR_DOMAIN_RUNNING
        conn.close()
        assert grouped() == {web[0], db_[0]}  # the new QEMU of the restarted instance too
        # revoke HTTP into the web group: the elastic IP stops answering; authorize it again
        assert play("revoke.yml", group="web", ports=80, cidr="0.0.0.0/0").rc == 0
        assert outside_http(web_ip) is None
        assert play("authorize.yml", group="web", ports=80, cidr="0.0.0.0/0").rc == 0
        assert play("verify.yml").rc == 0

        # evict the node: refused while it runs instances, unless they are terminated; add it back
        refused = play("evict-node.yml", node="localhost")
        assert refused.rc != 0 and "pass -e terminate_instances=true" in refused.stdout
        evicted = play("evict-node.yml", node="localhost", terminate_instances=True)
        assert evicted.rc == 0, evicted.stdout[-4000:]
        conn = libvirt.open("qemu+unix:///system?socket=%s/libvirtd/run/libvirt-sock" % tmp_path)
        assert conn.listAllDomains() == []
        conn.close()
        exports = targets()
        assert exports is not None and volume not in exports  # its instance is gone: so is its export
        after = "\n".join(play("describe.yml").task_result("Show the cloud")["msg"])
        assert "INSTANCES (0)" in after and "NODES (0)" in after, after
        added = play("add-node.yml", node="localhost")
        assert added.rc == 0, added.stdout[-3000:]
        assert "NODES (1)" in "\n".join(play("describe.yml").task_result("Show the cloud")["msg"])

        gone = molecule("destroy", varsfile)
        destroyed = gone.returncode == 0
        assert destroyed, (gone.stdout[-4000:], gone.stderr[-2000:])
        assert not {cloud, outside} & set(_netns.list_namespaces())
        assert not (tmp_path / "clc").exists() and not (tmp_path / "instances").exists()
        assert not (tmp_path / "supervisor" / "supervisor.sock").exists()
        assert not os.path.exists(cpu_group)
    finally:
        if not destroyed:
            play("clean.yml")
        supervisor.stop()
        for name in (cloud, outside):
            _netns.Netns(name).delete()
    assert not {cloud, outside} & set(_netns.list_namespaces())
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert leftover == [], leftover
