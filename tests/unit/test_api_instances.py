"""The EC2 API's instance, image and cloud actions against a real SQLite ledger, called as the server
calls them; every answer parsed back with botocore's EC2 parser (what boto3 reads)."""

import base64

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.api import actions_images, actions_instances, actions_vpc  # noqa: F401
from ansible_collections.euca.cloud.plugins.module_utils.api.base import group_id
from ansible_collections.euca.cloud.plugins.module_utils.ledger import instances, keypairs
from harness.ec2_calls import call, ctx, finish_all, queued, refused, web_ledger

KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test")


@pytest.fixture
def ledger(tmp_path):
    handle = web_ledger(tmp_path)
    yield handle
    handle.close()


def run(context, **more):
    flat = dict(ImageId="tiny", MinCount="1", MaxCount="1", SecurityGroup_1="web")
    flat.update(more)
    return call(context, "RunInstances", **flat)


def test_run_instances_answers_pending_and_queues_one_converge_per_cluster(ledger):
    a = ctx(ledger)
    user_data = base64.b64encode(b"#!/bin/sh\necho hi\n").decode()
    with ledger.write() as txn:
        keypairs.ensure_keypair(txn, "k", account="a", public_key=KEY)
    got = run(a, MinCount="2", MaxCount="3", KeyName="k", UserData=user_data, InstanceType="m1.small",
              TagSpecification_1_ResourceType="instance", TagSpecification_1_Tag_1_Key="Name",
              TagSpecification_1_Tag_1_Value="webby")
    assert len(got["Instances"]) == 3
    assert got["Groups"] == [{"GroupId": group_id("a:web"), "GroupName": "web"}]
    for item in got["Instances"]:
        assert item["State"] == {"Code": 0, "Name": "pending"} and item["KeyName"] == "k"
        assert item["Tags"] == [{"Key": "Name", "Value": "webby"}]
        assert item["Placement"]["AvailabilityZone"] in ("cluster_a", "cluster_b")
    ids = [i["InstanceId"] for i in got["Instances"]]
    with ledger.read() as txn:
        rows = [instances.get_instance(txn, i) for i in ids]
    assert all(r["user_data"] == "#!/bin/sh\necho hi\n" and r["public_key"] == KEY and r["name"] == "webby" for r in rows)
    jobs_queued = queued(ledger)
    assert sorted(j[1] for j in jobs_queued) == sorted(set(r["cluster"] for r in rows))
    assert all(j[0] == "converge" and j[3] == "a" for j in jobs_queued)


def test_run_instances_refusals_change_nothing(ledger):
    a = ctx(ledger)
    refused(ledger, "InvalidParameterValue", a, "RunInstances", ImageId="tiny", MinCount="3", MaxCount="2",
            SecurityGroup_1="web")
    refused(ledger, "MissingParameter", a, "RunInstances", ImageId="tiny", MaxCount="1")
    refused(ledger, "InvalidParameterValue", a, "RunInstances", ImageId="tiny", MinCount="0", MaxCount="1")
    refused(ledger, "InvalidAMIID.NotFound", a, "RunInstances", ImageId="emi-00000000", MinCount="1", MaxCount="1")
    refused(ledger, "InvalidKeyPair.NotFound", a, "RunInstances", ImageId="tiny", MinCount="1", MaxCount="1",
            SecurityGroup_1="web", KeyName="nope")
    refused(ledger, "InvalidGroup.NotFound", a, "RunInstances", ImageId="tiny", MinCount="1", MaxCount="1",
            SecurityGroup_1="db")
    refused(ledger, "InvalidParameterValue", a, "RunInstances", ImageId="tiny", MinCount="1", MaxCount="1",
            SecurityGroup_1="web", InstanceType="x9.huge")
    refused(ledger, "InvalidUserData.Malformed", a, "RunInstances", ImageId="tiny", MinCount="1", MaxCount="1",
            SecurityGroup_1="web", UserData="not base64!")
    # the group's /28 has 13 addresses for instances, and MinCount says all or nothing
    refused(ledger, "InsufficientFreeAddressesInSubnet", a, "RunInstances", ImageId="tiny", MinCount="14",
            MaxCount="14", SecurityGroup_1="web")
    # 2 nodes x 8 cores: four c1.xlarge (4 cores each, settings.DEFAULT_VM_TYPES) fit, a fifth does not
    refused(ledger, "InsufficientInstanceCapacity", a, "RunInstances", ImageId="tiny", MinCount="5", MaxCount="5",
            SecurityGroup_1="web", InstanceType="c1.xlarge")


def test_min_count_launches_what_fits_and_the_default_group_is_made_on_first_use(ledger):
    a = ctx(ledger)
    got = call(a, "RunInstances", ImageId="tiny", MinCount="1", MaxCount="40")
    assert len(got["Instances"]) == 13  # what the /28 holds
    assert got["Groups"][0]["GroupName"] == "default"


def test_a_client_token_retried_launches_once(ledger):
    a = ctx(ledger)
    first = run(a, ClientToken="retry-1")
    again = run(a, ClientToken="retry-1")
    assert again["ReservationId"] == first["ReservationId"]
    assert [i["InstanceId"] for i in again["Instances"]] == [i["InstanceId"] for i in first["Instances"]]
    assert len(queued(ledger)) == 1
    # another account's token of the same text is its own
    other = run(ctx(ledger, "b"), ClientToken="retry-1")
    assert other["ReservationId"] != first["ReservationId"]


def test_describe_instances_filters_pages_and_isolates_accounts(ledger):
    a, b = ctx(ledger), ctx(ledger, "b")
    mine = [i["InstanceId"] for i in run(a, MaxCount="6", MinCount="6")["Instances"]]
    theirs = run(b)["Instances"][0]["InstanceId"]
    seen = call(a, "DescribeInstances")
    ids = [i["InstanceId"] for r in seen["Reservations"] for i in r["Instances"]]
    assert sorted(ids) == sorted(mine) and theirs not in ids
    refused(ledger, "InvalidInstanceID.NotFound", a, "DescribeInstances", InstanceId_1=theirs)
    refused(ledger, "InvalidInstanceID.Malformed", a, "DescribeInstances", InstanceId_1="i-xyz")
    admin = call(ctx(ledger, "admin"), "DescribeInstances")
    assert sorted(i["InstanceId"] for r in admin["Reservations"] for i in r["Instances"]) == sorted(mine + [theirs])
    one = call(a, "DescribeInstances", Filter_1_Name="instance-id", Filter_1_Value_1=mine[2])
    assert [i["InstanceId"] for r in one["Reservations"] for i in r["Instances"]] == [mine[2]]
    none = call(a, "DescribeInstances", Filter_1_Name="instance-state-name", Filter_1_Value_1="running")
    assert none["Reservations"] == []
    refused(ledger, "InvalidParameterValue", a, "DescribeInstances", Filter_1_Name="no-such", Filter_1_Value_1="x")
    page = call(a, "DescribeInstances", MaxResults="5")
    rest = call(a, "DescribeInstances", MaxResults="5", NextToken=page["NextToken"])
    paged = [i["InstanceId"] for p in (page, rest) for r in p["Reservations"] for i in r["Instances"]]
    assert sorted(paged) == sorted(mine) and "NextToken" not in rest


def test_terminate_stop_start_show_the_jobs_transitional_states(ledger):
    a = ctx(ledger)
    ids = [i["InstanceId"] for i in run(a, MinCount="2", MaxCount="2")["Instances"]]
    finish_all(ledger)
    with ledger.write() as txn:
        instances.ensure_instances(txn, instance_ids=ids, state="running", account="a")
    done = call(a, "TerminateInstances", InstanceId_1=ids[0])
    assert done["TerminatingInstances"] == [{"InstanceId": ids[0], "CurrentState": {"Code": 32, "Name": "shutting-down"},
                                             "PreviousState": {"Code": 16, "Name": "running"}}]
    stopping = call(a, "StopInstances", InstanceId_1=ids[1])["StoppingInstances"][0]
    assert stopping["CurrentState"]["Name"] == "stopping"
    states = dict((i["InstanceId"], i["State"]["Name"]) for r in call(a, "DescribeInstances")["Reservations"]
                  for i in r["Instances"])
    assert states == {ids[0]: "shutting-down", ids[1]: "stopping"}
    assert [j[0] for j in queued(ledger)] == ["terminate", "stop"]
    # a shutting-down instance cannot be stopped; terminating it again is what EC2 allows
    refused(ledger, "IncorrectInstanceState", a, "StopInstances", InstanceId_1=ids[0])
    assert call(a, "TerminateInstances", InstanceId_1=ids[0])["TerminatingInstances"][0]["CurrentState"]["Name"] == \
        "shutting-down"
    # the playbooks do the host and then the ledger; when the jobs are done the ledger's states show
    with ledger.write() as txn:
        instances.ensure_instances(txn, instance_ids=[ids[0]], state="terminated", account="a")
        instances.ensure_instances(txn, instance_ids=[ids[1]], state="stopped", account="a")
    finish_all(ledger)
    states = dict((i["InstanceId"], i["State"]["Name"]) for r in call(a, "DescribeInstances")["Reservations"]
                  for i in r["Instances"])
    assert states == {ids[0]: "terminated", ids[1]: "stopped"}
    assert call(a, "StartInstances", InstanceId_1=ids[1])["StartingInstances"][0]["CurrentState"]["Name"] == "pending"
    refused(ledger, "IncorrectInstanceState", a, "RebootInstances", InstanceId_1=ids[1])
    refused(ledger, "InvalidInstanceID.NotFound", ctx(ledger, "b"), "TerminateInstances", InstanceId_1=ids[1])
    status = call(a, "DescribeInstanceStatus", IncludeAllInstances="true")
    assert sorted(s["InstanceId"] for s in status["InstanceStatuses"]) == [ids[1]]


def test_images_regions_zones_and_account_attributes(ledger):
    a = ctx(ledger)
    images_seen = call(a, "DescribeImages")["Images"]
    assert [i["Name"] for i in images_seen] == ["tiny"] and images_seen[0]["Public"] is True
    emi = images_seen[0]["ImageId"]
    assert call(a, "DescribeImages", Filter_1_Name="name", Filter_1_Value_1="ti*")["Images"][0]["ImageId"] == emi
    refused(ledger, "InvalidAMIID.NotFound", a, "DescribeImages", ImageId_1="emi-0000abcd")
    attr = call(a, "DescribeImageAttribute", ImageId=emi, Attribute="launchPermission")
    assert attr["LaunchPermissions"] == [{"Group": "all"}]
    refused(ledger, "AuthFailure", a, "DeregisterImage", ImageId=emi)
    assert call(a, "DescribeRegions")["Regions"][0]["RegionName"] == "euca"
    zones = call(a, "DescribeAvailabilityZones")["AvailabilityZones"]
    assert [(z["ZoneName"], z["State"]) for z in zones] == [("cluster_a", "available"), ("cluster_b", "available")]
    attrs = dict((x["AttributeName"], [v["AttributeValue"] for v in x["AttributeValues"]])
                 for x in call(a, "DescribeAccountAttributes")["AccountAttributes"])
    assert attrs["supported-platforms"] == ["EC2", "VPC"] and attrs["max-elastic-ips"] == ["2"]
    assert attrs["default-vpc"] == [actions_vpc.vpc_id("a")]
