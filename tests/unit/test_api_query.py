"""The EC2 Query protocol layer: request parsing, typed parameters, XML responses that
botocore's EC2 parser reads, filters and paging."""

import datetime
import time
import xml.etree.ElementTree as ET

import pytest
from botocore.model import ServiceModel
from botocore.loaders import Loader
from botocore.parsers import EC2QueryParser

from ansible_collections.euca.cloud.plugins.module_utils.api import query
from ansible_collections.euca.cloud.plugins.module_utils.api.errors import ApiError

NS = "{http://ec2.amazonaws.com/doc/2016-11-15/}"
EC2_MODEL = ServiceModel(Loader().load_service_model("ec2", "service-2"), "ec2")


def botocore_parse(operation, body, status=200):
    """What a boto3 client makes of ``body``."""
    shape = EC2_MODEL.operation_model(operation).output_shape
    return EC2QueryParser().parse({"body": body, "status_code": status, "headers": {}}, shape)


def code_of(call, *args, **kwargs):
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)
    return caught.value.code, caught.value.message


# --- parse_request ------------------------------------------------------------------------------

def test_parse_post_body_wins_over_query_string():
    body = b"Action=DescribeInstances&Filter.1.Name=a+b%26"
    params = query.parse_request("POST", "Action=DescribeRegions&Extra=q", body,
                                 "application/x-www-form-urlencoded; charset=utf-8")
    assert params == {"Action": "DescribeInstances", "Extra": "q", "Filter.1.Name": "a b&"}


def test_parse_get_reads_the_query_string_only():
    assert query.parse_request("GET", "Action=DescribeRegions&Empty=", b"ignored=1", None) == {
        "Action": "DescribeRegions", "Empty": ""}


@pytest.mark.parametrize("qs,body", [("A=1&A=2", b""), ("", b"A=1&A=1")])
def test_parse_refuses_a_repeated_key(qs, body):
    assert code_of(query.parse_request, "POST", qs, body, "application/x-www-form-urlencoded")[0] == \
        "InvalidParameterValue"


@pytest.mark.parametrize("qs,body", [("A=%FF", b""), ("", b"A=\xff"), ("", b"A=%C3%28")])
def test_parse_refuses_non_utf8(qs, body):
    assert code_of(query.parse_request, "POST", qs, body, "application/x-www-form-urlencoded")[0] == \
        "InvalidParameterValue"


def test_parse_refuses_a_body_in_another_content_type():
    code, message = code_of(query.parse_request, "POST", "", b'{"Action": "x"}', "application/json")
    assert code == "InvalidParameterValue" and "x-www-form-urlencoded" in message


# --- Params -------------------------------------------------------------------------------------

def test_get_and_required():
    p = query.Params({"A": "x", "Empty": ""})
    assert p.get("A") == "x" and p.get("B", "d") == "d" and p.get("Empty") == ""
    assert code_of(p.get, "B", required=True) == ("MissingParameter", "The request must contain the parameter B")
    assert code_of(p.get, "Empty", required=True)[0] == "MissingParameter"


def test_int_and_bounds():
    p = query.Params({"N": "7", "Bad": "7x", "Neg": "-3"})
    assert p.int("N") == 7 and p.int("Missing", default=1) == 1 and p.int("Neg") == -3
    code, message = code_of(p.int, "Bad")
    assert code == "InvalidParameterValue" and message.startswith("Value (7x) for parameter Bad is invalid.")
    assert "between 1 and 5" in code_of(p.int, "N", minimum=1, maximum=5)[1]
    assert "at least 10" in code_of(p.int, "N", minimum=10)[1]
    assert code_of(p.int, "Missing", required=True)[0] == "MissingParameter"


def test_bool():
    p = query.Params({"T": "TRUE", "F": "false", "X": "yes"})
    assert p.bool("T") is True and p.bool("F") is False and p.bool("Missing") is False
    assert p.bool("Missing", default=True) is True
    assert code_of(p.bool, "X")[0] == "InvalidParameterValue"


def test_list_keeps_numeric_order_with_gaps():
    p = query.Params({"InstanceId.10": "i-c", "InstanceId.2": "i-b", "InstanceId.1": "i-a", "InstanceIdX.1": "no",
                      "InstanceId.3.Sub": "struct, not list"})
    assert p.list("InstanceId") == ["i-a", "i-b", "i-c"]
    assert p.list("Nothing") == []


def test_list_bare_prefix_only_without_members():
    assert query.Params({"GroupName": "web"}).list("GroupName") == ["web"]
    assert query.Params({"GroupName": "web", "GroupName.1": "db"}).list("GroupName") == ["db"]


def test_list_refuses_the_same_member_spelled_twice():
    assert code_of(query.Params({"Id.1": "a", "Id.01": "b"}).list, "Id")[0] == "InvalidParameterValue"


def test_structs_nest():
    p = query.Params({
        "GroupId": "sg-1",
        "IpPermissions.2.IpProtocol": "udp", "IpPermissions.2.FromPort": "53",
        "IpPermissions.1.IpProtocol": "tcp", "IpPermissions.1.FromPort": "22",
        "IpPermissions.1.IpRanges.2.CidrIp": "10.0.0.0/8",
        "IpPermissions.1.IpRanges.1.CidrIp": "0.0.0.0/0",
        "IpPermissions.1.Groups.1.GroupName": "default",
    })
    perms = p.structs("IpPermissions")
    assert [perm.get("IpProtocol") for perm in perms] == ["tcp", "udp"]
    assert perms[0].structs("IpRanges")[0].get("CidrIp") == "0.0.0.0/0"
    assert [r.get("CidrIp") for r in perms[0].structs("IpRanges")] == ["0.0.0.0/0", "10.0.0.0/8"]
    assert perms[0].structs("Groups")[0].get("GroupName") == "default"
    assert perms[1].structs("IpRanges") == [] and perms[1].int("FromPort") == 53
    assert perms[0].names() == {"IpProtocol", "FromPort", "IpRanges.2.CidrIp", "IpRanges.1.CidrIp",
                                "Groups.1.GroupName"}


def test_filters():
    p = query.Params({"Filter.2.Name": "tag:Name", "Filter.2.Value.1": "web*",
                      "Filter.1.Name": "instance-state-name", "Filter.1.Value.2": "pending",
                      "Filter.1.Value.1": "running"})
    assert p.filters() == [("instance-state-name", ["running", "pending"]), ("tag:Name", ["web*"])]
    assert code_of(query.Params({"Filter.1.Name": "x"}).filters) == ("InvalidParameterValue",
                                                                      "The filter 'x' requires a value")
    assert code_of(query.Params({"Filter.1.Value.1": "x"}).filters)[0] == "InvalidParameterValue"


def test_tags_and_tag_specifications():
    p = query.Params({"Tag.1.Key": "Name", "Tag.1.Value": "web", "Tag.2.Key": "empty",
                      "TagSpecification.1.ResourceType": "instance",
                      "TagSpecification.1.Tag.1.Key": "a", "TagSpecification.1.Tag.1.Value": "1",
                      "TagSpecification.2.ResourceType": "volume", "TagSpecification.2.Tag.1.Key": "b"})
    assert p.tags() == [("Name", "web"), ("empty", "")]
    assert p.tag_specifications() == [("instance", [("a", "1")]), ("volume", [("b", "")])]
    assert code_of(query.Params({"Tag.1.Value": "v"}).tags) == (
        "MissingParameter", "The request must contain the parameter Tag.1.Key")
    assert code_of(query.Params({"TagSpecification.1.Tag.1.Key": "a"}).tag_specifications)[0] == "MissingParameter"


# --- responses ----------------------------------------------------------------------------------

def test_render_response_shape_and_order():
    xml = query.render_response("DescribeThings", "req-1", {
        "b": "1", "a": {"z": 2, "y": True, "gone": None}, "set": [{"k": "v"}, "scalar", None], "empty": []})
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(xml)
    assert root.tag == NS + "DescribeThingsResponse"
    assert [child.tag[len(NS):] for child in root] == ["requestId", "b", "a", "set", "empty"]
    assert root.findtext(NS + "requestId") == "req-1"
    assert [c.tag[len(NS):] for c in root.find(NS + "a")] == ["z", "y"]
    assert root.findtext(NS + "a/" + NS + "y") == "true"
    items = root.findall(NS + "set/" + NS + "item")
    assert len(items) == 2 and items[0].findtext(NS + "k") == "v" and items[1].text == "scalar"


def test_render_escapes_and_strips_what_xml_cannot_carry():
    text = "a & b <c> \"d\" 'e'\r\nconsole\x00\x07\x1b[0m\ttab \ufffe\ud800 ü €"
    root = ET.fromstring(query.render_response("GetConsoleOutput", "r", {"output": text}))
    assert root.findtext(NS + "output") == "a & b <c> \"d\" 'e'\r\nconsole[0m\ttab  ü €"


def test_render_numbers_and_timestamps():
    body = {"i": 3, "f": 1.5, "when": datetime.datetime(2026, 12, 1, 23, 51, 33, 123456, tzinfo=datetime.timezone.utc),
            "naive": datetime.datetime(2026, 12, 1), "items": [1, True, "x"]}
    root = ET.fromstring(query.render_response("X", "r", body))
    assert [root.findtext(NS + n) for n in ("i", "f", "when", "naive")] == [
        "3", "1.5", "2026-12-01T23:51:33.123Z", "2026-12-01T00:00:00.000Z"]
    assert [item.text for item in root.findall(NS + "items/" + NS + "item")] == ["1", "true", "x"]


def test_render_refuses_bad_element_names_and_types():
    with pytest.raises(ValueError):
        query.render_response("X", "r", {"bad name": "v"})
    with pytest.raises(TypeError):
        query.render_response("X", "r", {"v": object()})


def test_botocore_reads_a_describe_instances_response():
    body = query.render_response("DescribeInstances", "req-2", {"reservationSet": [instance_reservation(7)]})
    parsed = botocore_parse("DescribeInstances", body)
    instance = parsed["Reservations"][0]["Instances"][0]
    assert instance["InstanceId"] == "i-00000007"
    assert instance["State"] == {"Code": 16, "Name": "running"}
    assert instance["Tags"] == [{"Key": "Name", "Value": "web-7"}, {"Key": "note", "Value": "a&b <c>"}]
    assert instance["SourceDestCheck"] is True and instance["EbsOptimized"] is False
    assert instance["LaunchTime"].year == 2026
    assert parsed["ResponseMetadata"]["RequestId"] == "req-2"


def test_botocore_reads_the_error_document():
    body = query.render_error("InvalidInstanceID.NotFound", "The instance ID 'i-1' does not exist & <so on>", "req-3")
    parsed = botocore_parse("DescribeInstances", body, status=400)
    assert parsed["Error"] == {"Code": "InvalidInstanceID.NotFound",
                               "Message": "The instance ID 'i-1' does not exist & <so on>"}
    assert parsed["ResponseMetadata"]["RequestId"] == "req-3"


def test_request_ids_are_uuid4():
    first, second = query.new_request_id(), query.new_request_id()
    assert first != second and len(first) == 36 and first[14] == "4"


def instance_reservation(i):
    """A DescribeInstances reservation of one instance, shaped like the actions answer it."""
    return {
        "reservationId": "r-%08x" % i, "ownerId": "000000000001",
        "groupSet": [{"groupId": "sg-00000001", "groupName": "default"}],
        "instancesSet": [{
            "instanceId": "i-%08x" % i, "imageId": "emi-0123abcd",
            "instanceState": {"code": 16, "name": "running"},
            "privateDnsName": "euca-10-1-%d-%d.eucalyptus.internal" % (i // 256 % 256, i % 256),
            "dnsName": "euca-192-168-1-%d.eucalyptus.example" % (i % 256),
            "reason": "", "keyName": "mykey", "amiLaunchIndex": 0, "productCodes": [],
            "instanceType": "m1.small", "launchTime": "2026-12-01T23:51:33.000Z",
            "placement": {"availabilityZone": "cluster01", "groupName": "", "tenancy": "default"},
            "kernelId": "eki-12345678", "ramdiskId": "eri-12345678", "monitoring": {"state": "disabled"},
            "privateIpAddress": "10.1.%d.%d" % (i // 256 % 256, i % 256), "ipAddress": "192.168.1.%d" % (i % 256),
            "groupSet": [{"groupId": "sg-00000001", "groupName": "default"}],
            "architecture": "x86_64", "rootDeviceType": "instance-store", "rootDeviceName": "/dev/sda1",
            "blockDeviceMapping": [{"deviceName": "/dev/sdb", "ebs": {
                "volumeId": "vol-1234abcd", "status": "attached", "attachTime": "2026-12-01T23:51:33.000Z",
                "deleteOnTermination": False}}],
            "virtualizationType": "paravirtual", "clientToken": None, "hypervisor": "kvm",
            "tagSet": [{"key": "Name", "value": "web-%d" % i}] + (
                [{"key": "note", "value": "a&b <c>"}] if i == 7 else []),
            "ebsOptimized": False, "sourceDestCheck": True,
        }],
    }


def test_render_is_linear_in_the_instances():
    """10x the instances, well under 30x the time (quadratic would be 100x); the time itself is P15's, in bench/."""
    def best(n):
        body = {"reservationSet": [instance_reservation(i) for i in range(n)]}
        times = []
        for _ in range(3):
            start = time.perf_counter()
            xml = query.render_response("DescribeInstances", query.new_request_id(), body)
            times.append(time.perf_counter() - start)
        assert xml.count(b"<instanceId>") == n
        return min(times)

    small, large = best(1000), best(10000)
    print("render of 1,000 / 10,000 DescribeInstances items: %.1f / %.1f ms" % (small * 1000, large * 1000))
    assert large < 30 * small, (small, large)


def _substituted(body, values):
    """``body`` with every slot replaced by its value: what a Template must render exactly."""
    if isinstance(body, query.Slot):
        return values[body.name]
    if isinstance(body, dict):
        return dict((k, _substituted(v, values)) for k, v in body.items())
    if isinstance(body, list):
        return [_substituted(v, values) for v in body]
    return body


TEMPLATE_BODY = {
    "id": query.Text("id"),
    "state": query.Xml("state"),
    "constant": {"n": 5, "flag": True, "pct": "100%s%%"},
    "key": query.Slot("key"),
    "placement": {"zone": query.Text("zone"), "group": query.Slot("key")},
    "groups": [{"groupId": query.Text("gid"), "groupName": query.Text("gname")}],
    "tags": query.Slot("tags"),
    "reason": query.Slot("reason"),
    "empty": [],
    "again": query.Text("id"),
}


@pytest.mark.parametrize("values", [
    {"id": "i-1", "state": query.fragment({"code": 16, "name": "running"}), "key": "k", "zone": "z",
     "gid": "sg-1", "gname": "web", "tags": [], "reason": None},
    # every escaping path: a Text with &, < and a control character; a Slot str; nested dicts and lists
    {"id": "i-&<2>", "state": query.fragment({"code": 0, "name": "pending"}), "key": "a\x01b&c", "zone": "",
     "gid": "sg-2", "gname": "w\re\u00e9b", "tags": [{"key": "Name", "value": "x<y"}],
     "reason": {"code": "Server", "message": "a > b"}},
    {"id": "i-3", "state": query.Raw(""), "key": None, "zone": "z\ud800", "gid": "%s", "gname": "%(id)s",
     "tags": [query.Raw("<key>a</key>"), query.Raw(""), query.Raw("<key>b</key>")], "reason": 7},
])
def test_template_renders_what_render_makes_of_the_body(values):
    """A Template (constants rendered once) answers byte for byte what _render makes of the same body."""
    assert query.Template(TEMPLATE_BODY).render(values) == query.fragment(_substituted(TEMPLATE_BODY, values))


def test_template_refuses_wrong_values_and_shapes():
    template = query.Template({"a": query.Text("a"), "b": query.Xml("b")})
    assert template.render({"a": "x", "b": query.Raw("<c/>")}) == "<a>x</a><b><c/></b>"
    with pytest.raises(TypeError, match="Text slot"):
        template.render({"a": None, "b": query.Raw("")})
    with pytest.raises(TypeError, match="not Raw"):
        template.render({"a": "x", "b": "<script>"})
    with pytest.raises(ValueError, match="two kinds"):
        query.Template({"a": query.Text("v"), "b": query.Slot("v")})
    with pytest.raises(ValueError, match="element name"):
        query.Template({"bad name": query.Text("v")})


# --- filters ------------------------------------------------------------------------------------

ITEMS = [
    {"id": "i-1", "state": "running", "groups": ["web", "db"], "ebs": True,
     "tagSet": [{"key": "Name", "value": "web-1"}, {"key": "env", "value": "prod"}]},
    {"id": "i-2", "state": "stopped", "groups": ["web"], "ebs": False,
     "tagSet": [{"key": "Name", "value": "db*1"}]},
    {"id": "i-3", "state": "running", "groups": [], "ebs": None, "tagSet": []},
]
FIELDS = {"instance-id": lambda i: i["id"], "instance-state-name": lambda i: i["state"],
          "group-name": lambda i: i["groups"], "ebs-optimized": lambda i: i["ebs"]}


def ids(filters):
    return [item["id"] for item in query.apply_filters(ITEMS, filters, FIELDS)]


def test_filters_or_values_and_filters():
    assert ids([]) == ["i-1", "i-2", "i-3"]
    assert ids([("instance-state-name", ["running", "pending"])]) == ["i-1", "i-3"]
    assert ids([("instance-state-name", ["running"]), ("group-name", ["db"])]) == ["i-1"]
    assert ids([("group-name", ["web"])]) == ["i-1", "i-2"]
    assert ids([("ebs-optimized", ["true"])]) == ["i-1"]
    assert ids([("ebs-optimized", ["false"])]) == ["i-2"]


def test_filter_wildcards_and_escapes():
    assert ids([("instance-id", ["i-*"])]) == ["i-1", "i-2", "i-3"]
    assert ids([("instance-id", ["i-?"])]) == ["i-1", "i-2", "i-3"]
    assert ids([("instance-id", ["i-?2"])]) == []
    assert ids([("instance-state-name", ["run*"])]) == ["i-1", "i-3"]
    assert ids([("instance-state-name", ["RUNNING"])]) == []  # EC2 filter values are case-sensitive
    assert ids([("tag:Name", ["db\\*1"])]) == ["i-2"]
    assert ids([("tag:Name", ["db\\*"])]) == []
    assert ids([("tag:Name", ["*1"])]) == ["i-1", "i-2"]
    assert ids([("instance-id", ["i.1"])]) == []  # regex characters are literal


def test_tag_filters():
    assert ids([("tag:env", ["prod"])]) == ["i-1"]
    assert ids([("tag:env", ["*"])]) == ["i-1"]
    assert ids([("tag-key", ["Name"])]) == ["i-1", "i-2"]
    assert ids([("tag-value", ["prod", "db*"])]) == ["i-1", "i-2"]


def test_unknown_filter_is_refused_even_without_items():
    with pytest.raises(ApiError) as caught:
        query.apply_filters([], [("colour", ["red"])], FIELDS)
    assert (caught.value.code, caught.value.message) == ("InvalidParameterValue", "The filter 'colour' is invalid")


# --- paging -------------------------------------------------------------------------------------

def test_paginate_walks_every_item_once():
    items = list(range(23))
    assert query.paginate(items, None, None) == (items, None)
    seen, token = [], None
    while True:
        page, token = query.paginate(items, 5, token)
        seen.extend(page)
        if token is None:
            break
        assert isinstance(token, str) and "=" not in token
    assert seen == items
    page, token = query.paginate(list(range(10)), 5, query.paginate(list(range(10)), 5, None)[1])
    assert page == [5, 6, 7, 8, 9] and token is None


@pytest.mark.parametrize("max_results", [4, 1001, 0, -1])
def test_paginate_bounds(max_results):
    code, message = code_of(query.paginate, [], max_results, None)
    assert code == "InvalidParameterValue" and "between 5 and 1000" in message


def test_paginate_custom_bounds():
    assert query.paginate(list(range(3)), 1, None, minimum=1, maximum=2) == ([0], query.paginate(
        list(range(3)), 1, None, minimum=1)[1])


@pytest.mark.parametrize("token", ["garbage!", "bm90IGpzb24", "WzFd", "eyJvIjotMX0", "eyJvIjp0cnVlfQ", "e30"])
def test_paginate_bad_token(token):
    code, message = code_of(query.paginate, list(range(10)), 5, token)
    assert code == "InvalidParameterValue" and message.startswith("Invalid NextToken")
