"""The default VPC view of the EC2 API (api/actions_vpc.py) and what today's EC2 clients (amazon.aws's
ec2_instance, ec2_security_group, ec2_vol) need of instances and groups in it: DescribeVpcs,
DescribeSubnets, launching into a default subnet, one network interface per instance, VpcId and the
egress rule of groups, DescribeInstanceAttribute, blockDeviceMapping of attached volumes. Real SQLite
ledger; every answer parsed with botocore's EC2 parser."""

import base64

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.api import actions_groups, actions_instances, actions_vpc  # noqa: F401
from ansible_collections.euca.cloud.plugins.module_utils.api.base import group_id
from ansible_collections.euca.cloud.plugins.module_utils.ledger import accounts, volumes
from harness.ec2_calls import call, ctx, refused, web_ledger


@pytest.fixture
def ledger(tmp_path):
    handle = web_ledger(tmp_path)
    yield handle
    handle.close()


def subnets(context, **flat):
    return call(context, "DescribeSubnets", **flat)["Subnets"]


def test_every_account_has_one_default_vpc_with_a_default_subnet_per_zone(ledger):
    a, b = ctx(ledger, "a"), ctx(ledger, "b")
    vpcs = call(a, "DescribeVpcs", Filter_1_Name="isDefault", Filter_1_Value_1="true")["Vpcs"]
    assert [(v["VpcId"], v["IsDefault"], v["CidrBlock"], v["State"]) for v in vpcs] == \
        [(actions_vpc.vpc_id("a"), True, "10.30.0.0/16", "available")]
    assert call(b, "DescribeVpcs")["Vpcs"][0]["VpcId"] != vpcs[0]["VpcId"]
    mine = subnets(a, Filter_1_Name="vpc-id", Filter_1_Value_1=vpcs[0]["VpcId"], Filter_2_Name="default-for-az",
                   Filter_2_Value_1="true", Filter_3_Name="state", Filter_3_Value_1="available")
    assert sorted((s["AvailabilityZone"], s["DefaultForAz"], s["VpcId"]) for s in mine) == \
        [("cluster_a", True, vpcs[0]["VpcId"]), ("cluster_b", True, vpcs[0]["VpcId"])]
    assert not set(s["SubnetId"] for s in mine) & set(s["SubnetId"] for s in subnets(b))
    assert [s["AvailabilityZone"] for s in subnets(a, Filter_1_Name="availability-zone", Filter_1_Value_1="cluster_b")] \
        == ["cluster_b"]
    # the admin sees every account's
    assert len(call(ctx(ledger, accounts.ADMIN), "DescribeVpcs")["Vpcs"]) == 3
    refused(ledger, "InvalidVpcID.NotFound", a, "DescribeVpcs", VpcId_1=call(b, "DescribeVpcs")["Vpcs"][0]["VpcId"])
    refused(ledger, "InvalidSubnetID.NotFound", a, "DescribeSubnets", SubnetId_1=subnets(b)[0]["SubnetId"])
    refused(ledger, "InvalidParameterValue", a, "DescribeSubnets", SubnetId_1="sg-12345678")
    refused(ledger, "InvalidParameterValue", a, "DescribeVpcs", Filter_1_Name="no-such-filter", Filter_1_Value_1="x")


def test_a_launch_into_a_default_subnet_is_a_launch_into_its_zone(ledger):
    a = ctx(ledger, "a")
    zone_b = [s["SubnetId"] for s in subnets(a) if s["AvailabilityZone"] == "cluster_b"][0]
    web = group_id(accounts.group_key("a", "web"))
    got = call(a, "RunInstances", ImageId="tiny", MinCount="1", MaxCount="1", InstanceType="m1.small",
               NetworkInterface_1_DeviceIndex="0", NetworkInterface_1_SubnetId=zone_b,
               NetworkInterface_1_SecurityGroupId_1=web, NetworkInterface_1_DeleteOnTermination="true",
               TagSpecification_1_ResourceType="instance", TagSpecification_1_Tag_1_Key="Name",
               TagSpecification_1_Tag_1_Value="web1", TagSpecification_2_ResourceType="volume",
               TagSpecification_2_Tag_1_Key="Name", TagSpecification_2_Tag_1_Value="web1")
    item = got["Instances"][0]
    assert item["Placement"]["AvailabilityZone"] == "cluster_b" and item["SubnetId"] == zone_b
    assert item["VpcId"] == actions_vpc.vpc_id("a") and [g["GroupId"] for g in item["SecurityGroups"]] == [web]
    assert item["Tags"] == [{"Key": "Name", "Value": "web1"}]
    (eni,) = item["NetworkInterfaces"]
    assert eni["PrivateIpAddress"] == item["PrivateIpAddress"] and eni["SubnetId"] == zone_b
    assert eni["Attachment"]["DeviceIndex"] == 0 and [g["GroupId"] for g in eni["Groups"]] == [web]
    described = call(a, "DescribeInstances", Filter_1_Name="vpc-id", Filter_1_Value_1=actions_vpc.vpc_id("a"),
                     Filter_2_Name="subnet-id", Filter_2_Value_1=zone_b)["Reservations"]
    assert [i["InstanceId"] for r in described for i in r["Instances"]] == [item["InstanceId"]]
    # the same with the top-level SubnetId (awscli's --subnet-id) and a group by name
    zone_a = [s["SubnetId"] for s in subnets(a) if s["AvailabilityZone"] == "cluster_a"][0]
    other = call(a, "RunInstances", ImageId="tiny", MinCount="1", MaxCount="1", SubnetId=zone_a, SecurityGroup_1="web")
    assert other["Instances"][0]["Placement"]["AvailabilityZone"] == "cluster_a"


@pytest.mark.parametrize("flat, code", [
    ({"NetworkInterface_1_SubnetId": "theirs"}, "InvalidSubnetID.NotFound"),
    ({"NetworkInterface_1_AssociatePublicIpAddress": "true"}, "InvalidParameterCombination"),
    ({"NetworkInterface_1_DeviceIndex": "1"}, "InvalidParameterValue"),
    ({"NetworkInterface_1_PrivateIpAddress": "10.30.0.9"}, "InvalidParameterCombination"),
    ({"NetworkInterface_1_DeviceIndex": "0", "NetworkInterface_2_DeviceIndex": "1"}, "InvalidParameterCombination"),
    ({"NetworkInterface_1_DeleteOnTermination": "false"}, "InvalidParameterCombination"),
    ({"NetworkInterface_1_SubnetId": "zone_a", "Placement_AvailabilityZone": "cluster_b"},
     "InvalidParameterCombination"),
    ({"TagSpecification_1_ResourceType": "security-group", "TagSpecification_1_Tag_1_Key": "k",
      "TagSpecification_1_Tag_1_Value": "v"}, "InvalidParameterValue"),
], ids=["other-accounts-subnet", "public-ip-at-launch", "second-device", "fixed-address", "two-interfaces",
        "keep-interface", "subnet-in-another-zone", "tags-of-a-type-a-launch-makes-not"])
def test_launch_network_refusals_change_nothing(ledger, flat, code):
    a, b = ctx(ledger, "a"), ctx(ledger, "b")
    given = dict(ImageId="tiny", MinCount="1", MaxCount="1", SecurityGroup_1="web")
    for name, value in flat.items():
        if value == "theirs":
            value = subnets(b)[0]["SubnetId"]
        elif value == "zone_a":
            value = [s["SubnetId"] for s in subnets(a) if s["AvailabilityZone"] == "cluster_a"][0]
        given[name] = value
    refused(ledger, code, a, "RunInstances", **given)


def test_groups_live_in_the_default_vpc_and_let_everything_out(ledger):
    a, b = ctx(ledger, "a"), ctx(ledger, "b")
    mine = actions_vpc.vpc_id("a")
    made = call(a, "CreateSecurityGroup", GroupName="db", GroupDescription="db tier", VpcId=mine)
    listed = call(a, "DescribeSecurityGroups", Filter_1_Name="vpc-id", Filter_1_Value_1=mine)["SecurityGroups"]
    assert sorted(g["GroupName"] for g in listed) == ["db", "web"]
    assert all(g["VpcId"] == mine for g in listed)
    db = [g for g in listed if g["GroupId"] == made["GroupId"]][0]
    assert db["IpPermissionsEgress"] == [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                                          "Ipv6Ranges": [], "PrefixListIds": [], "UserIdGroupPairs": []}]
    refused(ledger, "InvalidVpcID.NotFound", a, "CreateSecurityGroup", GroupName="x", GroupDescription="x",
            VpcId=actions_vpc.vpc_id("b"))
    assert call(b, "DescribeSecurityGroups", Filter_1_Name="vpc-id", Filter_1_Value_1=mine)["SecurityGroups"] == []


def test_describe_instance_attribute(ledger):
    a, b = ctx(ledger, "a"), ctx(ledger, "b")
    user_data = "#!/bin/sh\necho hi\n"
    iid = call(a, "RunInstances", ImageId="tiny", MinCount="1", MaxCount="1", SecurityGroup_1="web",
               InstanceType="m1.small",
               UserData=base64.b64encode(user_data.encode()).decode())["Instances"][0]["InstanceId"]

    def attribute(name, who=a):
        return call(who, "DescribeInstanceAttribute", InstanceId=iid, Attribute=name)

    assert attribute("instanceType")["InstanceType"] == {"Value": "m1.small"}
    assert base64.b64decode(attribute("userData")["UserData"]["Value"]).decode() == user_data
    assert attribute("groupSet")["Groups"] == [{"GroupId": group_id(accounts.group_key("a", "web")),
                                                "GroupName": "web"}]
    assert attribute("disableApiTermination")["DisableApiTermination"] == {"Value": False}
    assert attribute("blockDeviceMapping")["BlockDeviceMappings"] == []
    zone = call(a, "DescribeInstances")["Reservations"][0]["Instances"][0]["Placement"]["AvailabilityZone"]
    with ledger.write() as txn:
        volumes.ensure_volume(txn, name="data", cluster=zone, size_gb=1, account="a")
        vid = txn.row("SELECT id FROM volumes WHERE account = 'a'")["id"]
        volumes.ensure_attachment(txn, vid, instance=iid, device="/dev/vdb", account="a")
    (mapping,) = attribute("blockDeviceMapping")["BlockDeviceMappings"]
    assert mapping["DeviceName"] == "/dev/vdb" and mapping["Ebs"]["VolumeId"] == vid
    described = call(a, "DescribeInstances", InstanceId_1=iid)["Reservations"][0]["Instances"][0]
    assert described["BlockDeviceMappings"] == [mapping]
    refused(ledger, "InvalidParameterValue", a, "DescribeInstanceAttribute", InstanceId=iid, Attribute="nope")
    refused(ledger, "InvalidInstanceID.NotFound", b, "DescribeInstanceAttribute", InstanceId=iid,
            Attribute="instanceType")
    refused(ledger, "InvalidInstanceID.Malformed", a, "DescribeInstanceAttribute", InstanceId="i-x",
            Attribute="instanceType")
