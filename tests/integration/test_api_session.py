"""The EC2 API on the all-in-one cloud (issue 15): real clients, the dispatcher's real playbook runs,
real guests. One sandbox with roles/clc_api (harness/api_cloud.py) serves two sessions:

- boto3, as account ``a``: import a key pair, create a group and authorize 22 and 80, run the Debian
  cloud-init image with user data, wait for ``running`` with boto3's own waiter, allocate and
  associate an address, ssh to it from the outside namespace with the key (the user data ran), create
  a volume and attach it (the guest sees a disk whose serial is the volume id), detach it (the disk
  is gone), terminate (the domain is gone); at each step the answers match the ledger;
- awscli, as account ``b``: the same for the busybox image (its HTTP answer from outside stands for
  ssh), with awscli's own ``wait``; and ``b`` sees nothing of ``a``'s.
"""

import subprocess
import time

import libvirt
import pytest

from harness.api_cloud import ApiCloud
from harness.cloud_image import cloud_image_paths

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
    aws("terminate-instances", "--instance-ids", iid)
    aws("wait", "instance-terminated", "--instance-ids", iid)
    assert iid not in domains(cloud)
    aws("release-address", "--public-ip", address)
    assert cloud.ledger_rows("instances")[iid]["user_data"] == "hello from b\n"
