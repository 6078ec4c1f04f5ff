"""Tenants (issue 14) on one all-in-one sandbox (inventories/sandbox moved to throwaway namespaces,
directories and a private supervisord), with real guests and real clients:

- the deployment itself: sandbox.yml and site.yml bring every component up where it belongs (tgtd
  and libvirtd in the cloud's namespace, Walrus's nginx on the host's loopback), and a second
  site.yml changes nothing; a second run-instances.yml launches and changes nothing;

- two accounts, each with a group named ``web``: two groups with two segments; account ``a`` has a
  quota of two instances, and a third is refused with nothing changed;
- ``a`` creates a key pair (the private key lands in a 0600 file and in no output or log, ``-vvv``
  included) and launches the Debian cloud-init image twice with the key and a user-data script that
  writes a file and starts a listener: once with the NoCloud seed, once with no seed at all (the
  metadata service alone configures it). From the outside namespace, ssh with the private key to
  each elastic IP logs in and reads the file; the listener answers;
- from inside an instance, the metadata service answers from the ledger (instance-id, local-ipv4,
  public-ipv4 after an associate and none after a disassociate, the key; IMDSv1 and v2 tokens);
  a namespace on the same segment spoofing the instance's address, and one on another segment, get
  nothing of it;
- ``b`` (a busybox guest) is invisible to ``a``: describe, terminate, associate, attach, authorize
  and delete refuse or do not show it; the admin account sees both accounts;
- bad input: a taken key pair name, a malformed public key, user data over 16 KiB, an unknown key
  name, an unknown image or group, count=0, an unknown instance id: a clear message, nothing
  changed; get-console-output shows an instance's boot to its owner;
- terminate (by the admin account) removes the instance everywhere: domain, files, DHCP reservation.
"""

import json
import stat
import subprocess
import time

import pytest

import libvirt

from ansible_collections.euca.cloud.plugins.module_utils.ledger import db, slices
from harness import netns as _netns
from harness.cloud_image import cloud_image_paths
from harness.guest_image import image_dir
from harness.runner import REPO_ROOT, run_playbook
from harness.sandbox import VM_TYPES, sandbox_cloud_settings, sandbox_vars

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(2400)]

INVENTORY = str(REPO_ROOT / "inventories" / "sandbox")
WALRUS_PORT = 18785
# cloud-init's guest needs more memory than the busybox one; the ledger's node is the machine's 2 cores,
# over-committed as TCG allows (cores are the scheduler's bookkeeping here)
LISTENER_PORT = 8080
USER_DATA = """#!/bin/sh
# written by the test: a file to read over ssh and a listener that answers
mkdir -p /srv/euca
echo "user-data ran on $(cat /var/lib/cloud/data/instance-id 2>/dev/null || hostname)" > /srv/euca/proof.txt
chmod 0644 /srv/euca/proof.txt
nohup python3 -m http.server %d --directory /srv/euca >/dev/null 2>&1 &
""" % LISTENER_PORT
# measured: boot to ssh ~100 s under TCG on this 2-core machine, two guests at once; three times that
SSH_WAIT = 420
# python3's http.server starts in about a second in an idle guest; under a loaded CI run it was not up yet
# when ssh first read the file
LISTENER_WAIT = 60


def changed(run):
    return sum(run.stats["changed"].values())


def test_accounts_key_pairs_user_data_and_the_metadata_service(supervisor, guest_image, tmp_path):
    cloud_image = cloud_image_paths()
    cloud, outside = _netns.new_name(), _netns.new_name()
    extravars = sandbox_vars(tmp_path, supervisor, cloud, outside, WALRUS_PORT)
    sandbox_cloud = json.loads(json.dumps(sandbox_cloud_settings()))
    sandbox_cloud["vm_types"] = VM_TYPES
    # the settings through the clc role's own variable (euca_cloud is what the inventory maps onto it)
    extravars.update(clc_settings=sandbox_cloud, euca_node_capacity={"cores": 8, "memory_mb": 4096, "disk_gb": 40},
                     euca_metadata_snapshot=str(tmp_path / "metadata" / "snapshot.json"))
    cloud_ns, out_ns = _netns.Netns(cloud), _netns.Netns(outside)
    timings = {}
    spies = []

    def play(name, expect=0, **more):
        started = time.monotonic()
        run = run_playbook(REPO_ROOT / "playbooks" / name, inventory=INVENTORY, extravars=dict(extravars, **more))
        timings.setdefault(name, []).append(round(time.monotonic() - started, 1))
        if expect is not None and (run.rc == 0) != (expect == 0):
            failures = [e["event_data"].get("res", {}).get("msg") for e in run.events
                        if e.get("event") == "runner_on_failed"]
            raise AssertionError("%s %s: rc %s, failures %s\n%s" % (name, more, run.rc, failures, run.stdout[-3000:]))
        return run

    def describe(account):
        run = play("describe.yml", account=account)
        return "\n".join(run.task_result("Show the cloud")["msg"])

    def ledger_rows():
        import sqlite3
        conn = sqlite3.connect(extravars["euca_ledger"])
        try:
            out = {}
            for table in ("accounts", "instances", "keypairs", "security_groups", "elastic_ips", "volumes"):
                out[table] = sorted(conn.execute("SELECT * FROM %s" % table).fetchall())
            return out
        finally:
            conn.close()

    def refused(name, words, **more):
        before = ledger_rows()
        run = play(name, expect=1, **more)
        assert words in run.stdout, (name, more, run.stdout[-3000:])
        assert ledger_rows() == before, name
        return run

    def instance(label, account):
        """``account``'s live instance labelled ``label``, with its elastic IP, as the ledger has it."""
        with db.Ledger(extravars["euca_ledger"]) as ledger:
            with ledger.read() as txn:
                view = slices.read_slice(txn, account=account)
        found = [i for i in view["instances"] if i["name"] == label]
        assert len(found) == 1, (label, view["instances"])
        eips = dict((e["instance"], e["public_ip"]) for e in view["elastic_ips"] if e.get("instance"))
        return dict(found[0], public_ip=eips.get(found[0]["id"]))

    def ssh(address, *command, ns=out_ns, check=True, timeout=30, stdin=None):
        argv = ["ssh", "-i", str(key_file), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
                "%s@%s" % (cloud_image["default_user"], address)] + list(command)
        return ns.run(*argv, check=check, timeout=timeout, input=stdin)

    def wait_for_ssh(address, ns=out_ns):
        deadline = time.monotonic() + SSH_WAIT
        started = time.monotonic()
        while time.monotonic() < deadline:
            done = ssh(address, "cat", "/srv/euca/proof.txt", ns=ns, check=False)
            if done.returncode == 0 and "user-data ran" in done.stdout:
                return done.stdout, round(time.monotonic() - started, 1)
            time.sleep(5)
        raise AssertionError("no ssh login with the key to %s within %d s: %s" % (address, SSH_WAIT, done.stderr))

    def metadata_inside(address, path, token=False, ns=out_ns):
        """What the instance at ``address`` reads at http://169.254.169.254/<path> (python3 in the guest, over
        ssh; with ``token``, IMDSv2: a PUT for a token first)."""
        script = "\n".join([
            "import urllib.request as u, urllib.error as e",
            "h = {}",
            "if %r:" % token,
            "    r = u.Request('http://169.254.169.254/latest/api/token', method='PUT',",
            "                  headers={'X-aws-ec2-metadata-token-ttl-seconds': '60'})",
            "    h = {'X-aws-ec2-metadata-token': u.urlopen(r, timeout=5).read().decode()}",
            "try:",
            "    print(u.urlopen(u.Request('http://169.254.169.254/%s', headers=h), timeout=5).read().decode())" % path,
            "except e.HTTPError as x:",
            "    print('HTTP', x.code)",
            ""])
        done = ssh(address, "python3", "-", ns=ns, check=False, stdin=script)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def spoof(segment_bridge, address, prefix, gateway):
        """A namespace on ``segment_bridge`` in the cloud using ``address`` (its own MAC): what it reads."""
        spy = _netns.Netns.create()
        spies.append(spy)
        end = "eut-sp%d" % len(spies)
        cloud_ns.ip("link", "add", end, "type", "veth", "peer", "name", "eth0", "netns", spy.name)
        cloud_ns.ip("link", "set", end, "master", segment_bridge, "up")
        spy.ip("link", "set", "lo", "up")
        spy.addr("eth0", "%s/%s" % (address, prefix))
        spy.route("default", "via", gateway, "dev", "eth0", "onlink")  # off-link on another segment
        got = spy.run("curl", "-s", "-m", "5", "http://169.254.169.254/latest/meta-data/instance-id", check=False)
        return got.returncode, got.stdout

    key_file = tmp_path / "a-key.pem"
    try:
        play("sandbox.yml")
        assert {cloud, outside} <= set(_netns.list_namespaces()) and out_ns.ping("203.0.113.2")  # the public link
        first = play("site.yml")
        assert changed(first) > 5
        for program in ("euca-tgtd", "euca-libvirtd"):
            assert supervisor.pid(program) in cloud_ns.ns_pids(), program
        assert supervisor.pid("euca-walrus") and supervisor.pid("euca-walrus") not in cloud_ns.ns_pids()
        assert cloud_ns.run("sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
        walrus = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5",
                                 "http://127.0.0.1:%d/" % WALRUS_PORT], capture_output=True, text=True).stdout
        assert walrus in ("200", "403"), walrus  # nginx answers (no index: 403)
        second = play("site.yml")
        assert changed(second) == 0, second.stdout[-4000:]
        for name, src, kind, more in (
                ("bb-kernel", guest_image["kernel"]["path"], "kernel", {}),
                ("bb-ramdisk", guest_image["ramdisk"]["path"], "ramdisk", {}),
                ("busybox", guest_image["root"]["path"], "machine", {"image_kernel": "bb-kernel",
                                                                     "image_ramdisk": "bb-ramdisk"}),
                ("debian-12", cloud_image["path"], "machine", {"image_format": "qcow2"})):
            play("register-image.yml", image_name=name, image_src=src, image_kind=kind, **more)

        # ---- accounts and their groups
        play("create-account.yml", account="a", max_instances=2)
        play("create-account.yml", account="b")
        for account in ("a", "b"):
            play("create-group.yml", account=account, group="web", description="%s's web" % account)
            for port in (22, LISTENER_PORT):
                play("authorize.yml", account=account, group="web", ports=port, cidr="0.0.0.0/0")
        admin_view = play("describe.yml").task_result("Read the ledger")
        groups = dict((g["name"], g) for g in admin_view["security_groups"])
        assert set(groups) == {"a:web", "b:web"}
        assert groups["a:web"]["segment_id"] != groups["b:web"]["segment_id"]
        assert groups["a:web"]["subnet"] != groups["b:web"]["subnet"]

        # ---- key pairs: created once, 0600, never in any output (-vvv)
        created = run_playbook(REPO_ROOT / "playbooks" / "create-keypair.yml", inventory=INVENTORY, verbosity=3,
                               extravars=dict(extravars, account="a", key_name="ka", private_key_file=str(key_file)),
                               private_data_dir=str(tmp_path / "keypair-run"))
        assert created.rc == 0, created.stdout[-3000:]
        private = key_file.read_text()
        assert private.startswith("-----BEGIN RSA PRIVATE KEY-----") and stat.S_IMODE(key_file.stat().st_mode) == 0o600
        body = private.strip().splitlines()[1]
        logged = created.stdout + subprocess.run(["grep", "-r", "-l", body[:40], str(tmp_path / "keypair-run")],
                                                 capture_output=True, text=True).stdout
        assert body[:40] not in logged and "PRIVATE KEY" not in created.stdout
        public = subprocess.run(["ssh-keygen", "-y", "-f", str(key_file)], capture_output=True, text=True,
                                check=True).stdout.split()
        refused("create-keypair.yml", "InvalidKeyPair.Duplicate", account="a", key_name="ka",
                private_key_file=str(tmp_path / "again.pem"))
        assert not (tmp_path / "again.pem").exists()
        refused("import-keypair.yml", "not valid", account="b", key_name="junk", public_key="ssh-rsa AAAAB3Nza not-a-key")
        other = tmp_path / "b-key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
        play("import-keypair.yml", account="b", key_name="kb", public_key_file=str(other) + ".pub")
        again = play("import-keypair.yml", account="b", key_name="kb", public_key_file=str(other) + ".pub")
        assert changed(again) == 0
        seen_by_b = play("describe.yml", account="b").task_result("Read the ledger")["keypairs"]
        assert [(k["name"], k["account"]) for k in seen_by_b] == [("kb", "b")]

        # ---- bad launches change nothing
        for bad, words in ((dict(image="no-such-image"), "unknown image"), (dict(group="no-such-group"), "unknown"),
                           (dict(count=0), "at least 1")):
            refused("run-instances.yml", words, **dict(dict(account="b", instance_name="x", image="busybox",
                                                            group="web"), **bad))
        refused("run-instances.yml", "16384 bytes", account="a", instance_name="big", image="debian-12", group="web",
                instance_type="t1.cloud", user_data="x" * 16385)
        refused("run-instances.yml", "InvalidKeyPair.NotFound", account="a", instance_name="nokey", image="debian-12",
                group="web", instance_type="t1.cloud", key_name="kb")  # b's key is not a's

        # ---- the cloud-init guests: one with no seed at all (the node's instances get none while
        # nc_instance_seed is false: the metadata service alone configures it), then one with the NoCloud seed;
        # they boot side by side. b's busybox guest has no seed either: it reads the metadata service too.
        (tmp_path / "user-data.sh").write_text(USER_DATA)
        launched = time.monotonic()
        play("run-instances.yml", account="a", instance_name="imds", image="debian-12", group="web",
             instance_type="t1.cloud", key_name="ka", user_data=USER_DATA, nc_instance_seed=False)
        play("run-instances.yml", account="b", instance_name="bb", image="busybox", group="web", key_name="kb",
             nc_instance_seed=False)
        rerun = play("run-instances.yml", account="b", instance_name="bb", image="busybox", group="web",
                     key_name="kb", nc_instance_seed=False)
        assert changed(rerun) == 0, rerun.stdout[-4000:]
        imds, bb = instance("imds", "a"), instance("bb", "b")
        assert not (tmp_path / "instances" / imds["id"] / "seed.iso").exists()
        assert imds["key_name"] == "ka" and bb["key_name"] == "kb"
        play("run-instances.yml", account="a", instance_name="seeded", image="debian-12", group="web",
             instance_type="t1.cloud", key_name="ka", user_data_file=str(tmp_path / "user-data.sh"))
        refused("run-instances.yml", "InstanceLimitExceeded", account="a", instance_name="third", image="busybox",
                group="web")
        for label in ("seeded", "imds"):
            # associate allocates the address it names when there is none yet
            play("associate-address.yml", account="a", address_name=label, instance=instance(label, "a")["id"])
        seeded, imds = instance("seeded", "a"), instance("imds", "a")
        assert seeded["public_ip"] and imds["public_ip"]
        assert (tmp_path / "instances" / seeded["id"] / "seed.iso").exists()

        for vm in (seeded, imds):
            proof, took = wait_for_ssh(vm["public_ip"])
            timings["ssh %s" % vm["name"]] = round(time.monotonic() - launched, 1)
            assert proof.startswith("user-data ran on"), proof
            # the script starts its listener after writing the file: give it the time a loaded guest takes
            deadline = time.monotonic() + LISTENER_WAIT
            while True:
                listener = out_ns.run("curl", "-s", "-m", "10", "http://%s:%d/proof.txt" % (vm["public_ip"],
                                                                                            LISTENER_PORT), check=False)
                if listener.returncode == 0 or time.monotonic() > deadline:
                    break
                time.sleep(2)
            assert listener.returncode == 0 and listener.stdout == proof, (listener.returncode, listener.stdout)
        # the seedless one was configured by the metadata service, the other by its seed: cloud-init says so
        for vm, source in ((imds, "DataSourceEc2"), (seeded, "DataSourceNoCloud")):
            result = json.loads(ssh(vm["public_ip"], "cat", "/run/cloud-init/result.json").stdout)
            assert result["v1"]["datasource"].startswith(source) and not result["v1"]["errors"], result
            assert ssh(vm["public_ip"], "cat", "/var/lib/cloud/data/instance-id").stdout.strip() == vm["id"]

        # ---- metadata from inside, as the ledger says
        for token in (False, True):
            assert metadata_inside(imds["public_ip"], "latest/meta-data/instance-id", token) == imds["id"]
            assert metadata_inside(imds["public_ip"], "latest/meta-data/local-ipv4", token) == imds["private_ip"]
            assert metadata_inside(imds["public_ip"], "latest/meta-data/public-ipv4", token) == imds["public_ip"]
        assert metadata_inside(imds["public_ip"], "latest/meta-data/public-keys/").startswith("0=ka")
        assert metadata_inside(imds["public_ip"], "latest/meta-data/public-keys/0/openssh-key").split()[:2] == public[:2]
        assert metadata_inside(imds["public_ip"], "latest/user-data") == USER_DATA.strip()
        assert metadata_inside(imds["public_ip"], "latest/meta-data/security-groups") == "web"
        assert metadata_inside(seeded["public_ip"], "latest/meta-data/instance-id") == seeded["id"]
        # b's busybox guest reads its own data, not a's (wget in the guest, through its CGI)
        bb_sees = cloud_ns.run("curl", "-s", "-m", "20", "http://%s/cgi-bin/metadata?path=latest/meta-data/instance-id"
                               % bb["private_ip"]).stdout.strip()
        assert bb_sees == bb["id"], bb_sees
        # disassociated: public-ipv4 is gone (EC2: 404); reached over its private address from the cloud side
        play("disassociate-address.yml", account="a", address_name="imds")
        gone = out_ns.run("curl", "-s", "-m", "5", "http://%s:%d/proof.txt" % (imds["public_ip"], LISTENER_PORT),
                          check=False)
        assert gone.returncode != 0 and gone.stdout == ""
        assert metadata_inside(imds["private_ip"], "latest/meta-data/public-ipv4", ns=cloud_ns) == "HTTP 404"
        assert metadata_inside(imds["private_ip"], "latest/meta-data/instance-id", ns=cloud_ns) == imds["id"]

        # ---- spoofing another instance's address gets nothing of it
        a_group, b_group = groups["a:web"], groups["b:web"]
        prefix_a, prefix_b = a_group["subnet"].split("/")[1], b_group["subnet"].split("/")[1]
        rc, body = spoof("eubr-%d" % a_group["segment_id"], imds["private_ip"], prefix_a, a_group["gateway"])
        assert imds["id"] not in body and (rc != 0 or body == ""), (rc, body)
        rc, body = spoof("eubr-%d" % b_group["segment_id"], imds["private_ip"], prefix_b, b_group["gateway"])
        assert imds["id"] not in body and (rc != 0 or body == ""), (rc, body)

        # ---- account isolation
        a_sees = describe("a")
        assert imds["id"] in a_sees and bb["id"] not in a_sees and "kb" not in a_sees
        assert bb["id"] not in "\n".join(line for line in a_sees.splitlines())
        admin_sees = describe("admin")
        assert all(i in admin_sees for i in (imds["id"], seeded["id"], bb["id"]))
        refused("terminate-instances.yml", "no live instance %s" % bb["id"], account="a", instance_ids=bb["id"])
        refused("associate-address.yml", "unknown instance", account="a", address_name="imds", instance=bb["id"])
        play("create-volume.yml", account="a", volume_name="adata", size_gb=1, cluster="cluster_a")
        refused("attach-volume.yml", "unknown instance", account="a", volume="adata", instance=bb["id"])
        refused("attach-volume.yml", "unknown volume", account="b", volume="adata", instance=bb["id"])
        refused("delete-group.yml", "unknown security group", account="a", group="b:web")
        refused("authorize.yml", "unknown security group", account="a", group="b:web", ports=23, cidr="0.0.0.0/0")
        refused("get-console-output.yml", "InvalidInstanceID.NotFound", account="b", instance=seeded["id"])
        console = play("get-console-output.yml", account="a", instance=seeded["id"])
        assert "cloud-init" in console.stdout, console.stdout[-2000:]
        # the admin account acts on every account's instances; an unknown id is refused first
        refused("terminate-instances.yml", "no live instance i-0badbad0; nothing was changed",
                instance_ids="%s,i-0badbad0" % bb["id"])
        play("terminate-instances.yml", instance_ids=bb["id"])
        assert bb["id"] not in describe("b") and not (tmp_path / "instances" / bb["id"]).exists()
        conn = libvirt.open("qemu+unix:///system?socket=%s/libvirtd/run/libvirt-sock" % tmp_path)
        try:
            assert bb["id"] not in [d.name() for d in conn.listAllDomains()]
        finally:
            conn.close()
        reservations = "".join(p.read_text() for p in (tmp_path / "dhcp").rglob("*") if p.is_file() and "host" in p.name)
        assert bb["mac"] not in reservations and imds["mac"] in reservations
    finally:
        print("timings (s):", timings)
        for spy in spies:
            spy.delete()
        play("clean.yml", expect=None, test_image_dir=str(image_dir()), clean_keep_image=True)
        supervisor.stop()
        for name in (cloud, outside):
            _netns.Netns(name).delete()
    assert not {cloud, outside} & set(_netns.list_namespaces())
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert leftover == [], leftover

