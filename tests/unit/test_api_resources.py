"""The EC2 API's resource actions (security groups, elastic IPs, volumes, snapshots, key pairs, tags)
against a real SQLite ledger, called as the server calls them (a Context and the request's Params).

Every answer is rendered to XML and parsed back with botocore's own EC2 parser against the service
model (what boto3 reads, by element name), and every refusal leaves the ledger as it was."""

import base64
import subprocess

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.api import (actions_addresses, actions_groups,  # noqa: F401
                                                                     actions_keys, actions_tags, actions_volumes, query)
from ansible_collections.euca.cloud.plugins.module_utils.api.base import ACTIONS, Context, group_id
from ansible_collections.euca.cloud.plugins.module_utils.api.errors import ApiError
from ansible_collections.euca.cloud.plugins.module_utils.ledger import (accounts, cloud, db, groups, images, instances,
                                                                        jobs)
from harness.ec2_calls import CHECKSUM, call, ctx, everything, finish_all, launch, make_ledger, queued, refused


@pytest.fixture
def ledger(tmp_path):
    handle = make_ledger(tmp_path)
    yield handle
    handle.close()


# --- security groups -----------------------------------------------------------------------------

def test_groups_create_describe_authorize_revoke_delete_in_ec2s_words(ledger):
    a = ctx(ledger)
    made = call(a, "CreateSecurityGroup", GroupName="web", GroupDescription="web tier",
                TagSpecification_1_ResourceType="security-group", TagSpecification_1_Tag_1_Key="tier",
                TagSpecification_1_Tag_1_Value="front")
    assert made["GroupId"] == group_id("a:web") and made["Tags"] == [{"Key": "tier", "Value": "front"}]
    call(a, "CreateSecurityGroup", GroupName="db", GroupDescription="db")
    refused(ledger, "InvalidGroup.Duplicate", a, "CreateSecurityGroup", GroupName="web", GroupDescription="again")
    refused(ledger, "MissingParameter", a, "CreateSecurityGroup", GroupName="x")
    refused(ledger, "InvalidParameterValue", a, "CreateSecurityGroup", GroupName="bad name!", GroupDescription="x")
    with ledger.write() as txn:
        cloud.ensure_settings(txn, {"segment_range": [10, 12]})
    call(a, "CreateSecurityGroup", GroupName="third", GroupDescription="x")
    refused(ledger, "SecurityGroupLimitExceeded", a, "CreateSecurityGroup", GroupName="fourth", GroupDescription="x")
    call(a, "DeleteSecurityGroup", GroupName="third")

    call(a, "AuthorizeSecurityGroupIngress", GroupName="web",
         IpPermissions_1_IpProtocol="tcp", IpPermissions_1_FromPort="80", IpPermissions_1_ToPort="80",
         IpPermissions_1_IpRanges_1_CidrIp="0.0.0.0/0", IpPermissions_1_IpRanges_2_CidrIp="192.0.2.0/24",
         IpPermissions_2_IpProtocol="icmp", IpPermissions_2_FromPort="-1", IpPermissions_2_ToPort="-1",
         IpPermissions_2_Groups_1_GroupName="db")
    # the old flat form, and the group named by id
    call(a, "AuthorizeSecurityGroupIngress", GroupId=group_id("a:web"), IpProtocol="tcp", FromPort="22", ToPort="22",
         CidrIp="198.51.100.0/24")
    refused(ledger, "InvalidPermission.Duplicate", a, "AuthorizeSecurityGroupIngress", GroupName="web",
            IpProtocol="tcp", FromPort="22", ToPort="22", CidrIp="198.51.100.0/24")
    refused(ledger, "InvalidParameterValue", a, "AuthorizeSecurityGroupIngress", GroupName="web",
            IpProtocol="tcp", FromPort="0", ToPort="70000", CidrIp="0.0.0.0/0")
    refused(ledger, "InvalidGroup.NotFound", a, "AuthorizeSecurityGroupIngress", GroupName="web",
            IpPermissions_1_IpProtocol="-1", IpPermissions_1_Groups_1_GroupName="nope")

    seen = call(a, "DescribeSecurityGroups", GroupName_1="web")["SecurityGroups"]
    assert len(seen) == 1
    web = seen[0]
    assert web["GroupName"] == "web" and web["GroupId"] == group_id("a:web") and web["Description"] == "web tier"
    with ledger.read() as txn:
        number = accounts.get_account(txn, "a")["number"]
    assert web["OwnerId"] == number and web["Tags"] == [{"Key": "tier", "Value": "front"}]
    perms = dict(((p["IpProtocol"], p.get("FromPort")), p) for p in web["IpPermissions"])
    assert sorted(r["CidrIp"] for r in perms[("tcp", 80)]["IpRanges"]) == ["0.0.0.0/0", "192.0.2.0/24"]
    assert perms[("icmp", -1)]["UserIdGroupPairs"] == [{"UserId": number, "GroupName": "db", "GroupId": group_id("a:db")}]
    assert perms[("tcp", 22)]["ToPort"] == 22

    assert [g["GroupName"] for g in call(a, "DescribeSecurityGroups", Filter_1_Name="ip-permission.cidr",
                                         Filter_1_Value_1="192.0.2.*")["SecurityGroups"]] == ["web"]
    assert [g["GroupName"] for g in call(a, "DescribeSecurityGroups", Filter_1_Name="tag:tier",
                                         Filter_1_Value_1="front")["SecurityGroups"]] == ["web"]

    call(a, "RevokeSecurityGroupIngress", GroupName="web", IpProtocol="tcp", FromPort="22", ToPort="22",
         CidrIp="198.51.100.0/24")
    refused(ledger, "InvalidPermission.NotFound", a, "RevokeSecurityGroupIngress", GroupName="web",
            IpProtocol="tcp", FromPort="22", ToPort="22", CidrIp="198.51.100.0/24")
    with ledger.read() as txn:
        assert len(groups.rules_of(txn, "a:web")) == 3

    # db is web's rule source: in use
    refused(ledger, "DependencyViolation", a, "DeleteSecurityGroup", GroupName="db")
    call(a, "DeleteSecurityGroup", GroupId=group_id("a:web"))
    call(a, "DeleteSecurityGroup", GroupName="db")
    assert call(a, "DescribeSecurityGroups")["SecurityGroups"] == []
    assert call(a, "DescribeTags")["Tags"] == []


def test_groups_are_per_account_and_rule_changes_converge_the_clusters_of_live_instances(ledger):
    a, b, admin = ctx(ledger), ctx(ledger, "b"), ctx(ledger, "admin")
    call(a, "CreateSecurityGroup", GroupName="web", GroupDescription="a's")
    call(b, "CreateSecurityGroup", GroupName="web", GroupDescription="b's")
    assert [g["Description"] for g in call(b, "DescribeSecurityGroups")["SecurityGroups"]] == ["b's"]
    refused(ledger, "InvalidGroup.NotFound", b, "DescribeSecurityGroups", GroupId_1=group_id("a:web"))
    refused(ledger, "InvalidGroup.NotFound", b, "DeleteSecurityGroup", GroupId=group_id("a:web"))
    assert sorted(g["GroupName"] for g in call(admin, "DescribeSecurityGroups")["SecurityGroups"]) == ["a:web", "b:web"]

    # no live instance: the rule is written, no host needs to change
    call(a, "AuthorizeSecurityGroupIngress", GroupName="web", IpProtocol="tcp", FromPort="80", ToPort="80",
         CidrIp="0.0.0.0/0")
    assert queued(ledger) == []
    instance = launch(ledger, "a", "web", cluster="cluster_b")
    call(a, "AuthorizeSecurityGroupIngress", GroupName="web", IpProtocol="tcp", FromPort="443", ToPort="443",
         CidrIp="0.0.0.0/0")
    assert queued(ledger) == [("converge", "cluster_b", '["%s"]' % group_id("a:web"), "a")]
    refused(ledger, "DependencyViolation", a, "DeleteSecurityGroup", GroupName="web")
    assert instance["group"] == "web"


# --- elastic IPs ---------------------------------------------------------------------------------

def test_addresses_allocate_associate_describe_disassociate_release(ledger):
    a, b = ctx(ledger), ctx(ledger, "b")
    call(a, "CreateSecurityGroup", GroupName="web", GroupDescription="web")
    instance = launch(ledger, "a", "web", cluster="cluster_a")
    first = call(a, "AllocateAddress", Domain="standard")
    assert first["PublicIp"] == "203.0.113.20" and first["Domain"] == "standard"
    assert first["AllocationId"].startswith("eipalloc-")
    second = call(a, "AllocateAddress")
    refused(ledger, "AddressLimitExceeded", a, "AllocateAddress")
    refused(ledger, "InvalidParameterValue", a, "AllocateAddress", Domain="vpc")

    assoc = call(a, "AssociateAddress", PublicIp=first["PublicIp"], InstanceId=instance["id"])
    assert assoc["AssociationId"].startswith("eipassoc-")
    assert queued(ledger) == [("converge", "cluster_a", '["203.0.113.20"]', "a")]
    refused(ledger, "InvalidAddress.NotFound", b, "AssociateAddress", PublicIp=first["PublicIp"], InstanceId=instance["id"])
    refused(ledger, "InvalidInstanceID.NotFound", a, "AssociateAddress", PublicIp=second["PublicIp"],
            InstanceId="i-00000000")
    refused(ledger, "Resource.AlreadyAssociated", a, "AssociateAddress", AllocationId=second["AllocationId"],
            InstanceId=instance["id"])

    seen = call(a, "DescribeAddresses")["Addresses"]
    assert [(x["PublicIp"], x.get("InstanceId")) for x in seen] == [("203.0.113.20", instance["id"]),
                                                                    ("203.0.113.21", "")]
    assert seen[0]["PrivateIpAddress"] == instance["private_ip"] and seen[0]["AssociationId"] == assoc["AssociationId"]
    assert [x["PublicIp"] for x in call(a, "DescribeAddresses", Filter_1_Name="instance-id",
                                        Filter_1_Value_1=instance["id"])["Addresses"]] == ["203.0.113.20"]
    assert [x["PublicIp"] for x in call(a, "DescribeAddresses", AllocationId_1=second["AllocationId"])["Addresses"]] \
        == ["203.0.113.21"]
    assert call(b, "DescribeAddresses")["Addresses"] == []
    refused(ledger, "InvalidAddress.NotFound", b, "DescribeAddresses", PublicIp_1="203.0.113.20")

    call(a, "CreateTags", ResourceId_1=first["AllocationId"], Tag_1_Key="role", Tag_1_Value="www")
    assert call(a, "DescribeAddresses", PublicIp_1="203.0.113.20")["Addresses"][0]["Tags"] == [
        {"Key": "role", "Value": "www"}]

    call(a, "DisassociateAddress", AssociationId=assoc["AssociationId"])
    assert queued(ledger)[-1] == ("converge", "cluster_a", '["203.0.113.20"]', "a")
    # EC2-Classic shows an unassociated address with an empty instanceId
    assert call(a, "DescribeAddresses", PublicIp_1="203.0.113.20")["Addresses"][0]["InstanceId"] == ""
    call(a, "ReleaseAddress", PublicIp="203.0.113.20")
    call(a, "ReleaseAddress", AllocationId=second["AllocationId"])
    refused(ledger, "InvalidAddress.NotFound", a, "ReleaseAddress", PublicIp="203.0.113.20")
    assert call(a, "DescribeAddresses")["Addresses"] == [] and call(a, "DescribeTags")["Tags"] == []


# --- volumes and snapshots -----------------------------------------------------------------------

def test_volume_lifecycle_shows_the_jobs_transitional_states(ledger):
    a, b = ctx(ledger), ctx(ledger, "b")
    call(a, "CreateSecurityGroup", GroupName="web", GroupDescription="web")
    instance = launch(ledger, "a", "web", cluster="cluster_a")
    made = call(a, "CreateVolume", AvailabilityZone="cluster_a", Size="2",
                TagSpecification_1_ResourceType="volume", TagSpecification_1_Tag_1_Key="Name",
                TagSpecification_1_Tag_1_Value="data")
    vid = made["VolumeId"]
    assert made["State"] == "creating" and made["Size"] == 2 and made["AvailabilityZone"] == "cluster_a"
    assert made["Tags"] == [{"Key": "Name", "Value": "data"}]
    assert queued(ledger) == [("create-volume", "cluster_a", '["%s"]' % vid, "a")]
    refused(ledger, "InvalidZone.NotFound", a, "CreateVolume", AvailabilityZone="nowhere", Size="1")
    refused(ledger, "VolumeLimitExceeded", a, "CreateVolume", AvailabilityZone="cluster_a", Size="19")
    refused(ledger, "InvalidParameterValue", a, "CreateVolume", AvailabilityZone="cluster_a", Size="1",
            TagSpecification_1_ResourceType="instance", TagSpecification_1_Tag_1_Key="k")
    refused(ledger, "IncorrectState", a, "AttachVolume", VolumeId=vid, InstanceId=instance["id"], Device="/dev/vdc")
    refused(ledger, "IncorrectState", a, "DeleteVolume", VolumeId=vid)
    assert call(a, "DescribeVolumes", VolumeId_1=vid)["Volumes"][0]["State"] == "creating"
    finish_all(ledger)
    assert call(a, "DescribeVolumes", VolumeId_1=vid)["Volumes"][0]["State"] == "available"

    refused(ledger, "InvalidVolume.NotFound", b, "AttachVolume", VolumeId=vid, InstanceId=instance["id"], Device="/dev/vdc")
    refused(ledger, "IncorrectState", a, "DetachVolume", VolumeId=vid)
    attached = call(a, "AttachVolume", VolumeId=vid, InstanceId=instance["id"], Device="/dev/vdc")
    assert attached["State"] == "attaching" and attached["Device"] == "/dev/vdc"
    refused(ledger, "VolumeInUse", a, "AttachVolume", VolumeId=vid, InstanceId=instance["id"], Device="/dev/vdd")
    volume = call(a, "DescribeVolumes")["Volumes"][0]
    assert volume["State"] == "in-use" and volume["Attachments"][0]["State"] == "attaching"
    finish_all(ledger)
    volume = call(a, "DescribeVolumes", Filter_1_Name="attachment.instance-id", Filter_1_Value_1=instance["id"])["Volumes"][0]
    assert volume["Attachments"][0]["State"] == "attached" and volume["Attachments"][0]["InstanceId"] == instance["id"]
    refused(ledger, "VolumeInUse", a, "DeleteVolume", VolumeId=vid)

    detaching = call(a, "DetachVolume", VolumeId=vid)
    assert detaching["State"] == "detaching"
    assert queued(ledger)[-1][0] == "detach"
    # the ledger keeps the attachment until the playbook has detached the disk
    assert call(a, "DescribeVolumes")["Volumes"][0]["Attachments"][0]["State"] == "detaching"
    with ledger.write() as txn:
        txn.exec("DELETE FROM attachments WHERE volume_id = ?", vid)
        txn.exec("UPDATE volumes SET state = 'available' WHERE id = ?", vid)
    finish_all(ledger)

    call(a, "DeleteVolume", VolumeId=vid)
    assert call(a, "DescribeVolumes")["Volumes"][0]["State"] == "deleting"
    finish_all(ledger, ok=False, message="the SC said no")
    assert call(a, "DescribeVolumes")["Volumes"][0]["State"] == "error"
    refused(ledger, "InvalidVolume.NotFound", b, "DescribeVolumes", VolumeId_1=vid)
    assert call(b, "DescribeVolumes")["Volumes"] == []
    refused(ledger, "InvalidVolumeID.Malformed", a, "DescribeVolumes", VolumeId_1="volume-1")


def test_describe_volumes_pages_and_filters(ledger):
    a = ctx(ledger)
    ids = [call(a, "CreateVolume", AvailabilityZone="cluster_a" if n % 2 else "cluster_b", Size="1")["VolumeId"]
           for n in range(7)]
    finish_all(ledger)
    first = call(a, "DescribeVolumes", MaxResults="5")
    assert len(first["Volumes"]) == 5 and first["NextToken"]
    rest = call(a, "DescribeVolumes", MaxResults="5", NextToken=first["NextToken"])
    assert "NextToken" not in rest
    assert sorted(v["VolumeId"] for v in first["Volumes"] + rest["Volumes"]) == sorted(ids)
    assert len(call(a, "DescribeVolumes", Filter_1_Name="availability-zone", Filter_1_Value_1="cluster_b")["Volumes"]) == 4
    assert len(call(a, "DescribeVolumes", Filter_1_Name="create-time", Filter_1_Value_1="20??-*T*.???Z")["Volumes"]) == 7
    refused(ledger, "InvalidParameterValue", a, "DescribeVolumes", Filter_1_Name="colour", Filter_1_Value_1="red")


def test_snapshots_create_describe_delete(ledger):
    a, b = ctx(ledger), ctx(ledger, "b")
    vid = call(a, "CreateVolume", AvailabilityZone="cluster_b", Size="3")["VolumeId"]
    refused(ledger, "IncorrectState", a, "CreateSnapshot", VolumeId=vid)
    finish_all(ledger)
    snap = call(a, "CreateSnapshot", VolumeId=vid)
    sid = snap["SnapshotId"]
    assert snap["State"] == "pending" and snap["VolumeSize"] == 3 and snap["VolumeId"] == vid
    assert queued(ledger) == [("snapshot", "cluster_b", '["%s"]' % sid, "a")]
    finish_all(ledger)
    seen = call(a, "DescribeSnapshots", Owner_1="self")["Snapshots"]
    assert [(s["SnapshotId"], s["State"], s["Progress"]) for s in seen] == [(sid, "completed", "100%")]
    refused(ledger, "InvalidSnapshot.NotFound", b, "DescribeSnapshots", SnapshotId_1=sid)
    refused(ledger, "InvalidSnapshot.NotFound", b, "CreateVolume", AvailabilityZone="cluster_b", SnapshotId=sid)

    from_snap = call(a, "CreateVolume", AvailabilityZone="cluster_b", SnapshotId=sid)
    assert from_snap["Size"] == 3 and from_snap["SnapshotId"] == sid
    refused(ledger, "InvalidSnapshot.InUse", a, "DeleteSnapshot", SnapshotId=sid)
    with ledger.write() as txn:
        txn.exec("DELETE FROM volumes WHERE id = ?", from_snap["VolumeId"])
    finish_all(ledger)
    call(a, "DeleteSnapshot", SnapshotId=sid)
    assert call(a, "DescribeSnapshots")["Snapshots"] == []
    assert queued(ledger) == [("delete-snapshot", "cluster_b", '["%s"]' % sid, "a")]


# --- key pairs -----------------------------------------------------------------------------------

def test_key_pairs_create_import_describe_delete(ledger, tmp_path):
    a, b = ctx(ledger), ctx(ledger, "b")
    made = call(a, "CreateKeyPair", KeyName="my key", KeyType="ed25519")
    assert made["KeyMaterial"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert made["KeyPairId"].startswith("key-") and made["KeyName"] == "my key"
    refused(ledger, "InvalidKeyPair.Duplicate", a, "CreateKeyPair", KeyName="my key")

    path = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "k", "-f", str(path)], check=True)
    public = path.with_suffix(".pub").read_text().strip()
    imported = call(b, "ImportKeyPair", KeyName="my key", PublicKeyMaterial=base64.b64encode(public.encode()).decode())
    assert imported["KeyName"] == "my key" and imported["KeyFingerprint"]
    refused(ledger, "InvalidKeyPair.Duplicate", b, "ImportKeyPair", KeyName="my key", PublicKeyMaterial=public)
    refused(ledger, "InvalidKey.Format", b, "ImportKeyPair", KeyName="other", PublicKeyMaterial="bm90IGEga2V5")

    seen = call(a, "DescribeKeyPairs", IncludePublicKey="true")["KeyPairs"]
    assert [(k["KeyName"], k["KeyType"], k["KeyPairId"]) for k in seen] == [("my key", "ed25519", made["KeyPairId"])]
    assert seen[0]["PublicKey"].startswith("ssh-ed25519 ") and "CreateTime" in seen[0]
    assert "PublicKey" not in call(a, "DescribeKeyPairs")["KeyPairs"][0]
    refused(ledger, "InvalidKeyPair.NotFound", a, "DescribeKeyPairs", KeyName_1="absent")
    assert [k["KeyPairId"] for k in call(b, "DescribeKeyPairs", Filter_1_Name="key-name",
                                         Filter_1_Value_1="my*")["KeyPairs"]] == [imported["KeyPairId"]]

    # another account's pair is not there to delete; a missing one is no error (EC2)
    call(b, "DeleteKeyPair", KeyPairId=made["KeyPairId"])
    assert len(call(a, "DescribeKeyPairs")["KeyPairs"]) == 1
    assert call(a, "DeleteKeyPair", KeyName="my key")["KeyPairId"] == made["KeyPairId"]
    assert call(a, "DescribeKeyPairs")["KeyPairs"] == []
    assert call(a, "DeleteKeyPair", KeyName="my key") == {"Return": True}


# --- tags ----------------------------------------------------------------------------------------

def test_tags_create_describe_delete_with_ec2s_checks(ledger):
    a, b, admin = ctx(ledger), ctx(ledger, "b"), ctx(ledger, "admin")
    vid = call(a, "CreateVolume", AvailabilityZone="cluster_a", Size="1")["VolumeId"]
    sg = call(a, "CreateSecurityGroup", GroupName="web", GroupDescription="web")["GroupId"]
    call(a, "CreateTags", ResourceId_1=vid, ResourceId_2=sg, Tag_1_Key="env", Tag_1_Value="prod", Tag_2_Key="empty")
    refused(ledger, "InvalidVolume.NotFound", b, "CreateTags", ResourceId_1=vid, Tag_1_Key="x")
    # one bad resource: nothing is tagged
    refused(ledger, "InvalidVolume.NotFound", a, "CreateTags", ResourceId_1=sg, ResourceId_2="vol-00000000", Tag_1_Key="x")
    refused(ledger, "InvalidID", a, "CreateTags", ResourceId_1="web", Tag_1_Key="x")
    refused(ledger, "InvalidParameterValue", a, "CreateTags", ResourceId_1=vid, Tag_1_Key="aws:x")
    refused(ledger, "InvalidParameterValue", a, "CreateTags", ResourceId_1=vid, Tag_1_Key="k" * 129)
    refused(ledger, "InvalidParameterValue", a, "CreateTags", ResourceId_1=vid, Tag_1_Key="k", Tag_1_Value="v" * 257)
    many = dict(("Tag_%d_Key" % n, "k%d" % n) for n in range(1, 50))
    refused(ledger, "TagLimitExceeded", a, "CreateTags", ResourceId_1=vid, **many)

    tags = call(a, "DescribeTags")["Tags"]
    assert sorted((t["ResourceId"], t["ResourceType"], t["Key"], t["Value"]) for t in tags) == sorted([
        (vid, "volume", "env", "prod"), (vid, "volume", "empty", ""),
        (sg, "security-group", "env", "prod"), (sg, "security-group", "empty", "")])
    assert [t["ResourceId"] for t in call(a, "DescribeTags", Filter_1_Name="resource-type",
                                          Filter_1_Value_1="volume", Filter_2_Name="key",
                                          Filter_2_Value_1="env")["Tags"]] == [vid]
    page = call(a, "DescribeTags", MaxResults="5")
    assert len(page["Tags"]) == 4 and "NextToken" not in page
    assert call(b, "DescribeTags")["Tags"] == []
    # the admin's tag on a's volume is a's to see
    call(admin, "CreateTags", ResourceId_1=vid, Tag_1_Key="by", Tag_1_Value="admin")
    assert ("by", "admin") in [(t["Key"], t["Value"]) for t in call(a, "DescribeTags")["Tags"]]

    # Value given: only a matching value goes; no Value: the key goes
    call(a, "DeleteTags", ResourceId_1=vid, Tag_1_Key="env", Tag_1_Value="test")
    call(a, "DeleteTags", ResourceId_1=vid, Tag_1_Key="empty")
    assert call(a, "DescribeVolumes")["Volumes"][0]["Tags"] == [{"Key": "by", "Value": "admin"},
                                                                {"Key": "env", "Value": "prod"}]
    call(a, "DeleteTags", ResourceId_1=vid)
    assert "Tags" not in call(a, "DescribeVolumes")["Volumes"][0] or not call(a, "DescribeVolumes")["Volumes"][0]["Tags"]
    # tags of a resource the ledger no longer has are not shown
    with ledger.write() as txn:
        txn.exec("DELETE FROM jobs")
        txn.exec("DELETE FROM security_groups WHERE name = 'a:web'")
    assert call(a, "DescribeTags")["Tags"] == []


def test_tag_sets_and_apply_tag_specifications_are_what_other_actions_use(ledger):
    a = ctx(ledger)
    params = query.Params({"TagSpecification.1.ResourceType": "instance", "TagSpecification.1.Tag.1.Key": "Name",
                           "TagSpecification.1.Tag.1.Value": "w"})
    with ledger.write() as txn:
        assert actions_tags.apply_tag_specifications(txn, a, params, "instance", ["i-0000002a", "i-0000002b"]) == [
            {"key": "Name", "value": "w"}]
    with ledger.read() as txn:
        assert actions_tags.tag_sets(txn, ["i-0000002a", "i-00000099"]) == {
            "i-0000002a": [{"key": "Name", "value": "w"}], "i-00000099": []}
    with pytest.raises(ApiError) as caught:
        actions_tags.check_tag_specifications(params, "volume")
    assert caught.value.code == "InvalidParameterValue"


# --- through boto3 and the server ----------------------------------------------------------------

@pytest.fixture
def ec2(ledger, tmp_path):
    """A boto3 EC2 client of account a on the API's WSGI application served on 127.0.0.1."""
    import socket
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    import boto3
    from ansible_collections.euca.cloud.plugins.module_utils.ledger import access_keys
    server_mod = pytest.importorskip("ansible_collections.euca.cloud.plugins.module_utils.api.server")

    with ledger.write() as txn:
        key = access_keys.create(txn, "a")

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    config = dict(server_mod.DEFAULTS, ledger=ledger.url)
    httpd = None
    for port in range(18840, 18860):
        try:
            httpd = make_server("127.0.0.1", port, server_mod.Api(config), handler_class=Quiet)
            break
        except socket.error:
            continue
    assert httpd is not None, "no free port in 18840-18859"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield boto3.client("ec2", endpoint_url="http://127.0.0.1:%d/" % httpd.server_port, region_name="euca",
                           aws_access_key_id=key["id"], aws_secret_access_key=key["secret"])
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def test_boto3_reads_every_answer_and_error(ec2):
    from botocore.exceptions import ClientError

    gid = ec2.create_security_group(GroupName="web", Description="web tier")["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
    group = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
    assert group["IpPermissions"][0]["IpRanges"] == [{"CidrIp": "10.0.0.0/8"}]
    with pytest.raises(ClientError) as caught:
        ec2.create_security_group(GroupName="web", Description="again")
    assert caught.value.response["Error"]["Code"] == "InvalidGroup.Duplicate"

    address = ec2.allocate_address(Domain="standard")
    assert ec2.describe_addresses()["Addresses"][0]["PublicIp"] == address["PublicIp"]
    volume = ec2.create_volume(AvailabilityZone="cluster_a", Size=1,
                               TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": "d"}]}])
    assert volume["State"] == "creating"
    described = ec2.describe_volumes(Filters=[{"Name": "tag:Name", "Values": ["d"]}])["Volumes"]
    assert [v["VolumeId"] for v in described] == [volume["VolumeId"]] and described[0]["CreateTime"].year >= 2024
    pair = ec2.create_key_pair(KeyName="k", KeyType="ed25519")
    assert pair["KeyMaterial"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert ec2.describe_key_pairs(KeyNames=["k"])["KeyPairs"][0]["KeyFingerprint"] == pair["KeyFingerprint"]
    ec2.create_tags(Resources=[gid], Tags=[{"Key": "env", "Value": "prod"}])
    assert {(t["ResourceId"], t["Key"]) for t in ec2.describe_tags()["Tags"]} == {(gid, "env"), (volume["VolumeId"], "Name")}
    with pytest.raises(ClientError) as caught:
        ec2.delete_volume(VolumeId="vol-00000000")
    assert caught.value.response["Error"]["Code"] == "InvalidVolume.NotFound"
