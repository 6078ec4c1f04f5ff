"""The EC2 API on the all-in-one cloud (issue 15): real clients, the dispatcher's real playbook runs,
real guests. One sandbox with roles/clc_api (harness/api_cloud.py) serves two sessions:

- boto3, as account ``a``: import a key pair, create a group and authorize 22 and 80, run the Debian
  cloud-init image with user data, wait for ``running`` with boto3's own waiter, allocate and
  associate an address, ssh to it from the outside namespace with the key (the user data ran), read
  its console output (GetConsoleOutput, the dispatcher's capture from the node), create
  a volume and attach it (the guest sees a disk whose serial is the volume id), detach it (the disk
  is gone), terminate (the domain is gone); at each step the answers match the ledger;
- awscli, as account ``b``: the same for the busybox image (its HTTP answer from outside stands for
  ssh), with awscli's own ``wait``; and ``b`` sees nothing of ``a``'s; b registers the busybox object
  already in Walrus as its own image, and deregisters it;
- Ansible's amazon.aws modules, as account ``c``: playbooks/tenant-ec2.yml (ec2_key,
  ec2_security_group, ec2_instance, ec2_eip, ec2_vol) runs the Debian image, and its second play
  reaches the instance through the aws_ec2 inventory plugin (inventories/ec2-api) over ssh from the
  outside namespace and finds the volume; a second run changes nothing; tenant_state=absent takes
  everything away, and a second absent run changes nothing either.
"""

import configparser
import os
import subprocess
import time

import libvirt
import pytest

from harness.api_cloud import ApiCloud
from harness.cloud_image import cloud_image_paths
from harness.runner import REPO_ROOT, run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(2400)]

WALRUS_PORT = 18788  # its API: 17788 (harness/sandbox.py api_port)
USER_DATA = """#!/bin/sh
mkdir -p /srv/euca
echo "user-data ran on $(cat /var/lib/cloud/data/instance-id)" > /srv/euca/proof.txt
chmod 0644 /srv/euca/proof.txt
"""
# measured: boot to ssh ~100 s under TCG (test_tenants); three times that
SSH_WAIT = 420
# a queued job runs within a second; a converge run of the sandbox takes ~30-60 s; three times that
CONVERGE_WAIT = 240
HTTP_WAIT = 240


def wait_for(what, probe, timeout, every=3):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError("%s: not within %d s (last: %r)" % (what, timeout, last))


def waiter_config(timeout):
    return {"Delay": 5, "MaxAttempts": int(timeout / 5)}


@pytest.fixture(scope="module")
def cloud(guest_image, tmp_path_factory):
    work = tmp_path_factory.mktemp("api-cloud")
    with ApiCloud(work, WALRUS_PORT, guest_image, cloud_image_paths()) as made:
        yield made
        print("timings (s):", made.timings)
    assert made.outlived == []  # the teardown had to kill nothing by pid


def instance_matches_ledger(cloud, item):
    row = cloud.ledger_rows("instances")[item["InstanceId"]]
    assert item["PrivateIpAddress"] == row["private_ip"] and item["ImageId"] == row["image_id"]
    assert item["Placement"]["AvailabilityZone"] == row["cluster"] and item["InstanceType"] == row["instance_type"]
    eips = dict((e["instance_id"], a) for a, e in cloud.ledger_rows("elastic_ips", key="address").items())
    assert item.get("PublicIpAddress") == eips.get(item["InstanceId"])
    return row


def domains(cloud):
    conn = libvirt.open("qemu+unix:///system?socket=%s/run/libvirt-sock" % cloud.vars["nc_libvirtd_state_dir"])
    try:
        return [d.name() for d in conn.listAllDomains()]
    finally:
        conn.close()


def test_boto3_session_with_the_cloud_init_image(cloud, tmp_path):
    creds = cloud.credentials("a")
    ec2 = cloud.ec2(creds)
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    imported = ec2.import_key_pair(KeyName="k", PublicKeyMaterial=(tmp_path / "k.pub").read_bytes())
    assert cloud.ledger_rows("keypairs", key="name")["k"]["fingerprint"] == imported["KeyFingerprint"]
    group = ec2.create_security_group(GroupName="web", Description="web tier")["GroupId"]
    for port in (22, 80):
        ec2.authorize_security_group_ingress(GroupId=group, IpProtocol="tcp", FromPort=port, ToPort=port,
                                             CidrIp="0.0.0.0/0")
    rules = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]
    assert sorted(r["FromPort"] for r in rules) == [22, 80]

    started = time.monotonic()
    ran = ec2.run_instances(ImageId=cloud.images["debian-12"], MinCount=1, MaxCount=1, KeyName="k",
                            SecurityGroupIds=[group], UserData=USER_DATA, InstanceType="t1.cloud")
    answered = time.monotonic() - started
    instance = ran["Instances"][0]
    iid = instance["InstanceId"]
    assert instance["State"]["Name"] == "pending" and answered < 30
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=waiter_config(CONVERGE_WAIT))
    described = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert instance_matches_ledger(cloud, described)["state"] == "running" and iid in domains(cloud)
    assert described["KeyName"] == "k" and described["SecurityGroups"][0]["GroupId"] == group

    address = ec2.allocate_address(Domain="standard")["PublicIp"]
    ec2.associate_address(PublicIp=address, InstanceId=iid)
    described = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert described["PublicIpAddress"] == address
    instance_matches_ledger(cloud, described)

    def ssh(*command, check=False):
        argv = ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "debian@%s" % address]
        return cloud.out_ns.run(*(argv + list(command)), check=check, timeout=60)

    proof = wait_for("ssh with the key to %s" % address,
                     lambda: (lambda d: d.returncode == 0 and d.stdout)(ssh("cat", "/srv/euca/proof.txt")), SSH_WAIT, 5)
    assert "user-data ran on %s" % iid in proof

    # GetConsoleOutput answers the last capture at once and queues a new one, which the dispatcher takes
    # from the node (boto3 decodes the base64): the guest's boot log
    ec2.get_console_output(InstanceId=iid)
    console = wait_for("a console capture", lambda: ec2.get_console_output(InstanceId=iid).get("Output"),
                       CONVERGE_WAIT, 5)
    assert "Linux version" in console or "cloud-init" in console, console[-2000:]

    volume = ec2.create_volume(Size=1, AvailabilityZone=described["Placement"]["AvailabilityZone"])
    vid = volume["VolumeId"]
    assert volume["State"] == "creating"
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=waiter_config(CONVERGE_WAIT))
    attached = ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/vdb")
    assert attached["State"] == "attaching"
    wait_for("volume attached", lambda: ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]["Attachments"][0]["State"]
             == "attached", CONVERGE_WAIT)
    assert cloud.ledger_rows("attachments", key="volume_id")[vid]["instance_id"] == iid
    serial = vid  # the disk's serial is the volume id: /dev/disk/by-id/virtio-<serial>
    assert wait_for("the guest sees the volume",
                    lambda: serial in ssh("ls", "/dev/disk/by-id/").stdout, 60)

    assert ec2.detach_volume(VolumeId=vid)["State"] == "detaching"
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=waiter_config(CONVERGE_WAIT))
    assert vid not in cloud.ledger_rows("attachments", key="volume_id")
    assert wait_for("the disk leaves the guest", lambda: serial not in ssh("ls", "/dev/disk/by-id/").stdout, 60)

    assert ec2.terminate_instances(InstanceIds=[iid])["TerminatingInstances"][0]["CurrentState"]["Name"] == \
        "shutting-down"
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=waiter_config(CONVERGE_WAIT))
    assert cloud.ledger_rows("instances")[iid]["state"] == "terminated" and iid not in domains(cloud)
    ec2.delete_volume(VolumeId=vid)
    wait_for("the volume is deleted", lambda: vid not in cloud.ledger_rows("volumes"), CONVERGE_WAIT)
    ec2.release_address(PublicIp=address)


def test_awscli_session_with_the_busybox_image(cloud, tmp_path):
    creds = cloud.credentials("b")
    aws = lambda *args: cloud.aws(creds, *args)  # noqa: E731
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(tmp_path / "kb")], check=True)
    aws("import-key-pair", "--key-name", "kb", "--public-key-material", "fileb://%s" % (tmp_path / "kb.pub"))
    aws("create-security-group", "--group-name", "web", "--description", "b's web")
    aws("authorize-security-group-ingress", "--group-name", "web", "--protocol", "tcp", "--port", "80",
        "--cidr", "0.0.0.0/0")
    user_data = tmp_path / "ud"
    user_data.write_text("hello from b\n")
    ran = aws("run-instances", "--image-id", cloud.images["busybox"], "--count", "1", "--key-name", "kb",
              "--security-groups", "web", "--user-data", "file://%s" % user_data)
    iid = ran["Instances"][0]["InstanceId"]
    aws("wait", "instance-running", "--instance-ids", iid)
    address = aws("allocate-address")["PublicIp"]
    aws("associate-address", "--public-ip", address, "--instance-id", iid)
    item = aws("describe-instances", "--instance-ids", iid)["Reservations"][0]["Instances"][0]
    assert item["State"]["Name"] == "running" and item["PublicIpAddress"] == address
    instance_matches_ledger(cloud, item)
    answer = wait_for("HTTP from outside to %s" % address,
                      lambda: cloud.out_ns.run("curl", "-s", "-m", "5", "http://%s/" % address, check=False).stdout,
                      HTTP_WAIT)
    assert iid in answer
    # b sees nothing of a's, and a's instance ids are unknown to it
    theirs = [i for i, row in cloud.ledger_rows("instances").items() if row["account"] == "a"]
    listed = [i["InstanceId"] for r in aws("describe-instances")["Reservations"] for i in r["Instances"]]
    assert listed == [iid] and not set(theirs) & set(listed)
    assert [g["GroupName"] for g in aws("describe-security-groups")["SecurityGroups"]] == ["web"]
    # RegisterImage of an object already in Walrus (the busybox root register-image.yml stored): b's own image
    location = "busybox/%s" % os.path.basename(str(cloud.guest_image["root"]["path"]))
    mine = aws("register-image", "--name", "b-busybox", "--image-location", location, "--kernel-id",
               cloud.images["bb-kernel"], "--ramdisk-id", cloud.images["bb-ramdisk"])["ImageId"]
    row = cloud.ledger_rows("images")[mine]
    assert row["account"] == "b" and row["checksum"] == cloud.ledger_rows("images")[cloud.images["busybox"]]["checksum"]
    assert [i["ImageId"] for i in aws("describe-images", "--owners", "self")["Images"]] == [mine]
    aws("deregister-image", "--image-id", mine)
    assert mine not in cloud.ledger_rows("images")
    aws("terminate-instances", "--instance-ids", iid)
    aws("wait", "instance-terminated", "--instance-ids", iid)
    assert iid not in domains(cloud)
    aws("release-address", "--public-ip", address)
    assert cloud.ledger_rows("instances")[iid]["user_data"] == "hello from b\n"


def changed_hosts(run):
    return dict((host, n) for host, n in (run.stats or {}).get("changed", {}).items() if n)


def test_amazon_aws_playbook_and_inventory(cloud, tmp_path):
    creds = cloud.credentials("c")
    parser = configparser.ConfigParser()
    parser.read(creds[2])
    key = tmp_path / "kc"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    user_data = tmp_path / "user-data"
    user_data.write_text(USER_DATA)
    env = {"AWS_URL": cloud.endpoint, "AWS_SHARED_CREDENTIALS_FILE": str(creds[2]),
           "AWS_PROFILE": parser.sections()[0], "AWS_REGION": "euca", "AWS_CONFIG_FILE": str(tmp_path / "none")}
    # ssh reaches the elastic IP from the outside namespace, as the tenant's machine would
    proxy = "ip netns exec %s nc %%h %%p" % cloud.out_ns.name
    extravars = {"image_id": cloud.images["debian-12"], "public_key": str(key) + ".pub", "instance_type": "t1.cloud",
                 "user_data_file": str(user_data), "wait_timeout": SSH_WAIT,
                 "ansible_ssh_private_key_file": str(key),
                 "ansible_ssh_common_args": "-o ProxyCommand='%s' -o StrictHostKeyChecking=no "
                                            "-o UserKnownHostsFile=/dev/null" % proxy}
    inventory = str(REPO_ROOT / "inventories" / "ec2-api" / "aws_ec2.yml")
    playbook = REPO_ROOT / "playbooks" / "tenant-ec2.yml"

    def play(**more):
        run = run_playbook(playbook, inventory=inventory, extravars=dict(extravars, **more), env=env)
        failures = [e["event_data"].get("res", {}).get("msg") for e in run.events
                    if e.get("event") in ("runner_on_failed", "runner_on_unreachable")]
        assert run.rc == 0, (more, failures, run.stdout[-4000:])
        return run

    def mine(table):
        import sqlite3

        conn = sqlite3.connect(cloud.vars["euca_ledger"])
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM %s WHERE account = 'c'" % table)]
        finally:
            conn.close()

    first = play()
    live = [r for r in mine("instances") if r["state"] != "terminated"]
    assert len(live) == 1 and live[0]["state"] == "running" and live[0]["key_name"] == "web1-key"
    iid = live[0]["id"]
    assert live[0]["user_data"] == USER_DATA  # byte for byte: the file lookup keeps the last newline
    address = [a for a, e in cloud.ledger_rows("elastic_ips", key="address").items() if e["instance_id"] == iid]
    assert len(address) == 1
    # the second play ran on the instance, found by the aws_ec2 plugin under its elastic IP, over ssh
    checked = first.task_result("Check the volume is there (its disk serial is the volume id)", host=address[0])
    assert not checked.get("failed") and not checked.get("skipped")
    volume = [v for v, a in cloud.ledger_rows("attachments", key="volume_id").items() if a["instance_id"] == iid]
    assert [(v["id"], v["size_gb"]) for v in mine("volumes")] == [(volume[0], 1)]
    assert ("web1", "Name") in [(t["tag_value"], t["tag_key"]) for t in mine("tags") if t["resource_id"] == iid]
    assert changed_hosts(first).get("localhost", 0) >= 5, first.stats

    second = play()
    assert changed_hosts(second) == {}, second.stats
    assert second.task_result("Wait for ssh with the key pair", host=address[0]).get("failed") is not True

    gone = play(tenant_state="absent")
    assert changed_hosts(gone).get("localhost", 0) >= 5, gone.stats
    # terminated, then forgotten with its group (a deleted group takes its terminated instances' rows)
    assert cloud.ledger_rows("instances").get(iid, {"state": "terminated"})["state"] == "terminated"
    assert iid not in domains(cloud)
    assert mine("volumes") == [] and mine("elastic_ips") == [] and mine("keypairs") == []
    assert mine("security_groups") == []
    again = play(tenant_state="absent")
    assert changed_hosts(again) == {}, again.stats
