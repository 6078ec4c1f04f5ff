# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""EC2 instance actions: RunInstances, DescribeInstances, DescribeInstanceStatus,
DescribeInstanceAttribute, Terminate-, Stop-, Start- and RebootInstances.

Each is the ledger operation the playbooks run (ledger/instances.py), in one transaction, plus a job
for the dispatcher (ledger/jobs.py) that converges the instance's cluster. The answer comes at once,
in EC2's words: a launch is ``pending`` until the dispatcher's run records it ``running``; a
terminate, stop or start is ``shutting-down``, ``stopping`` or ``pending`` while its job is queued
or running (the playbook does the host first and the ledger last, as an operator's run would).
Every instance is also shown in its account's default VPC (api/actions_vpc.py): the default subnet
of its zone and one network interface.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import datetime

from ansible_collections.euca.cloud.plugins.module_utils.api import actions_tags, actions_vpc, query
from ansible_collections.euca.cloud.plugins.module_utils.api.query import Slot, Text, Xml
from ansible_collections.euca.cloud.plugins.module_utils.api.base import action, group_id
from ansible_collections.euca.cloud.plugins.module_utils.api.errors import ApiError, from_euca, invalid
from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger import accounts, groups, images, instances, keypairs, settings
from ansible_collections.euca.cloud.plugins.module_utils.model import names

#: EC2's instance state codes
STATE_CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}
#: the state an instance shows while a job of this kind is queued or running for it
TRANSITIONAL = {"terminate": "shutting-down", "stop": "stopping", "start": "pending"}
#: an attached volume's status (blockDeviceMapping) while a job of this kind is queued or running for it
ATTACHMENT_STATES = {"attach": "attaching", "detach": "detaching"}
#: how long a terminated instance stays visible (EC2: about an hour)
TERMINATED_VISIBLE = datetime.timedelta(hours=1)
INSTANCE_ID_NOT_FOUND = "InvalidInstanceID.NotFound"
MAX_PER_REQUEST = 1000
#: the TagSpecification resource types RunInstances takes (only instances get the tags)
LAUNCH_TAGGED = ("instance", "volume", "network-interface")


def _jobs():
    from ansible_collections.euca.cloud.plugins.module_utils.ledger import jobs
    return jobs


def _time(stamp):
    """The ledger's timestamp (microseconds, Z) in EC2's form (milliseconds, Z), as text: no datetime
    per instance for a describe of thousands."""
    return stamp[:23] + "Z" if stamp and len(stamp) > 23 else stamp


def check_instance_id(value):
    """An i- id by the model's rule (model/names.py); EC2's InvalidInstanceID.Malformed otherwise."""
    if not names.looks_like("instance", value):
        raise ApiError("InvalidInstanceID.Malformed", "Invalid id: %r (expecting %s)"
                       % (value, names.format_id("instance", 0x1a2b3c4d)))
    return value


#: the instances' columns a Describe* answer shows (not user data nor public keys: kilobytes per
#: instance that a page of 1000 would read for nothing)
_COLUMNS = ", ".join("i." + c for c in ("id", "reservation_id", "launch_index", "group_name", "image_id", "instance_type",
                                        "cluster", "private_ip", "mac", "state", "reason", "created_at", "account",
                                        "key_name"))


def _rows(txn, ctx, instance_ids=None, include_terminated=True, offset=0, limit=None, user_data=False):
    """The caller's instances (every account's for the admin), terminated ones of the last hour
    included, in launch order; ``limit`` rows from ``offset`` (one more, to tell whether more follow).
    ``user_data``: with the instances' user data too."""
    clauses, args = [], []
    if not ctx.admin:
        clauses.append("i.account = ?")
        args.append(ctx.account)
    if instance_ids:
        clauses.append("i.id IN (%s)" % ",".join("?" * len(instance_ids)))
        args.extend(instance_ids)
    if include_terminated:
        cutoff = (datetime.datetime.now(datetime.timezone.utc) - TERMINATED_VISIBLE).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        clauses.append("(i.state <> 'terminated' OR i.updated_at >= ?)")
        args.append(cutoff)
    else:
        clauses.append("i.state <> 'terminated'")
    sql = ("SELECT %s%s, e.address AS public_ip, im.kernel_id AS kernel_id, im.ramdisk_id AS ramdisk_id "
           "FROM instances i LEFT JOIN elastic_ips e ON e.instance_id = i.id "
           "LEFT JOIN images im ON im.id = i.image_id WHERE %s "
           "ORDER BY i.created_gen, i.reservation_id, i.launch_index, i.id"
           % (_COLUMNS, ", i.user_data" if user_data else "", " AND ".join(clauses)))
    if limit is not None or offset:
        sql += " LIMIT %d OFFSET %d" % (-1 if limit is None else limit + 1, offset)
    return txn.rows(sql, *args)


def _shown_state(row, active):
    """EC2's state: the ledger's, or the transitional one of a queued or running job."""
    if row["state"] == "terminated":
        return "terminated"
    return TRANSITIONAL.get(active.get(row["id"]), row["state"])


_PUBLIC = query.Template({"publicIp": Slot("ip"), "publicDnsName": "", "ipOwnerId": "amazon"})
#: an instance's groupSet (its one security group), as in its reservation
_GROUPS = [{"groupId": Text("groupId"), "groupName": Text("groupName")}]
#: the instance's one network interface, in the default VPC's view (a terminated instance has none)
_INTERFACE = {
    "networkInterfaceId": Text("eni"),
    "subnetId": Text("subnetId"),
    "vpcId": Text("vpcId"),
    "description": "",
    "ownerId": Text("ownerId"),
    "status": "in-use",
    "macAddress": Slot("mac"),
    "privateIpAddress": Slot("privateIpAddress"),
    "privateDnsName": "",
    "sourceDestCheck": True,
    "groupSet": _GROUPS,
    "attachment": {"attachmentId": Text("attachmentId"), "deviceIndex": 0, "status": "attached",
                   "attachTime": Text("launchTime"), "deleteOnTermination": True, "networkCardIndex": 0},
    "association": Slot("association"),
    "privateIpAddressesSet": [{"privateIpAddress": Slot("privateIpAddress"), "privateDnsName": "", "primary": True,
                               "association": Slot("association")}],
    "interfaceType": "interface",
}


#: instanceState of each state, rendered once
_STATES = dict((name, query.fragment({"code": code, "name": name})) for name, code in STATE_CODES.items())


def _item_body(live):
    """An instance's item: its shape is fixed, so it is compiled once (query.Template) for a live
    instance and once for a terminated one (no interface); a DescribeInstances page of 1000 renders
    each item with one template."""
    return {
        "instanceId": Text("instanceId"),
        "imageId": Text("imageId"),
        "instanceState": Xml("instanceState"),
        "privateDnsName": "",
        "dnsName": Text("dnsName"),
        "reason": Text("reason"),
        "keyName": Slot("keyName"),
        "amiLaunchIndex": Text("amiLaunchIndex"),
        "productCodes": [],
        "instanceType": Text("instanceType"),
        "launchTime": Text("launchTime"),
        "placement": {"availabilityZone": Text("zone"), "groupName": "", "tenancy": "default"},
        "kernelId": Slot("kernelId"),
        "ramdiskId": Slot("ramdiskId"),
        "monitoring": {"state": "disabled"},
        "privateIpAddress": Slot("privateIpAddress"),
        "ipAddress": Slot("ipAddress"),
        "subnetId": Text("subnetId") if live else None,
        "vpcId": Text("vpcId") if live else None,
        "sourceDestCheck": True,
        "groupSet": _GROUPS,
        "stateReason": Slot("stateReason"),
        "architecture": "x86_64",
        "rootDeviceType": "instance-store",
        "blockDeviceMapping": Slot("blockDeviceMapping"),
        "virtualizationType": "hvm",
        "clientToken": Text("clientToken"),
        "tagSet": Slot("tagSet"),
        "hypervisor": "kvm",
        "networkInterfaceSet": [_INTERFACE] if live else [],
        "ebsOptimized": False,
        "metadataOptions": {"state": "applied", "httpTokens": "optional", "httpPutResponseHopLimit": 1,
                            "httpEndpoint": "enabled", "httpProtocolIpv6": "disabled", "instanceMetadataTags": "disabled"},
    }


_ITEM = {True: query.Template(_item_body(True)), False: query.Template(_item_body(False))}
_RESERVATION = query.Template({"reservationId": Text("reservationId"), "ownerId": Text("ownerId"),
                               "groupSet": _GROUPS, "instancesSet": Slot("instancesSet")})


def _item(row, state, tag_set, client_token=None, owner=""):
    """An instance's item of an instancesSet (DescribeInstances, RunInstances): rendered XML."""
    reason = row["reason"] or ""
    live = state != "terminated"
    values = {
        "instanceId": row["id"],
        "imageId": row["image_id"],
        "instanceState": _STATES[state],
        "dnsName": row["public_ip"] or "",
        "reason": reason,
        "keyName": row["key_name"],
        "amiLaunchIndex": str(row["launch_index"]),
        "instanceType": row["instance_type"],
        "launchTime": _time(row["created_at"]),
        "zone": row["cluster"],
        "kernelId": row["kernel_id"],
        "ramdiskId": row["ramdisk_id"],
        "ipAddress": row["public_ip"],
        "groupId": group_id(row["group_name"]),
        "groupName": accounts.group_display(row["group_name"]),
        "stateReason": {"code": reason.split(":", 1)[0], "message": reason} if reason else None,
        "blockDeviceMapping": row.get("block_devices") or [],
        "clientToken": client_token or "",
        "tagSet": tag_set,
        "privateIpAddress": None,
    }
    if live:
        eni = actions_vpc.interface_id(row["id"])
        values.update({
            "privateIpAddress": row["private_ip"],
            "subnetId": actions_vpc.subnet_id(row["account"], row["cluster"]),
            "vpcId": actions_vpc.vpc_id(row["account"]),
            "eni": eni,
            "attachmentId": "eni-attach-" + eni[4:],
            "ownerId": owner,
            "mac": row["mac"],
            "association": _PUBLIC.render({"ip": row["public_ip"]}) if row["public_ip"] else None,
        })
    return _ITEM[live].render(values)


def _views(txn, ctx, rows):
    """(row, shown state, tagSet) for ``rows``: two more queries in all, whatever their number."""
    ids = [r["id"] for r in rows]
    attached = {}
    for part in actions_tags.chunks(ids):
        for att in txn.rows("SELECT volume_id, instance_id, device, attached_at FROM attachments WHERE instance_id IN "
                            "(%s) ORDER BY device" % actions_tags.marks(part), *part):
            attached.setdefault(att["instance_id"], []).append(att)
    volume_ids = [a["volume_id"] for found in attached.values() for a in found]
    active = _jobs().active(txn, ids + volume_ids) if ids else {}
    tags = actions_tags.tag_sets(txn, ids)
    for row in rows:
        row["block_devices"] = [{"deviceName": a["device"], "ebs": {
            "volumeId": a["volume_id"], "status": ATTACHMENT_STATES.get(active.get(a["volume_id"]), "attached"),
            "attachTime": _time(a["attached_at"]), "deleteOnTermination": False}} for a in attached.get(row["id"], [])]
    return [(r, _shown_state(r, active), tags.get(r["id"], [])) for r in rows]


def _reservations(views, numbers):
    """DescribeInstances' reservationSet: instances grouped by reservation, in launch order (rendered XML)."""
    order, items = [], {}
    for row, state, tag_set in views:
        rid = row["reservation_id"]
        if rid not in items:
            # the reservation's owner (and its interfaces'): the account of its first instance
            items[rid] = (numbers.get(row["account"], ""), [])
            order.append(row)
        owner, rendered = items[rid]
        rendered.append(_item(row, state, tag_set, owner=owner))
    return [_RESERVATION.render({
        "reservationId": first["reservation_id"], "ownerId": items[first["reservation_id"]][0],
        "groupId": group_id(first["group_name"]), "groupName": accounts.group_display(first["group_name"]),
        "instancesSet": items[first["reservation_id"]][1],
    }) for first in order]


def _instance_ids(params, required=False):
    values = params.list("InstanceId")
    if required and not values:
        raise ApiError("MissingParameter", "The request must contain the parameter InstanceId")
    if len(values) > MAX_PER_REQUEST:
        raise invalid("at most %d instance ids per request" % MAX_PER_REQUEST)
    for value in values:
        check_instance_id(value)
    return list(dict.fromkeys(values))


def _check_found(rows, wanted):
    found = set(r["id"] for r in rows)
    missing = [i for i in wanted if i not in found]
    if missing:
        raise ApiError(INSTANCE_ID_NOT_FOUND, "The instance IDs '%s' do not exist" % ", ".join(missing))


FILTERS = {
    "instance-id": lambda v: v[0]["id"],
    "instance-state-name": lambda v: v[1],
    "instance-state-code": lambda v: str(STATE_CODES[v[1]]),
    "instance-type": lambda v: v[0]["instance_type"],
    "image-id": lambda v: v[0]["image_id"],
    "key-name": lambda v: v[0]["key_name"],
    "availability-zone": lambda v: v[0]["cluster"],
    "private-ip-address": lambda v: v[0]["private_ip"],
    "ip-address": lambda v: v[0]["public_ip"],
    "reservation-id": lambda v: v[0]["reservation_id"],
    "group-name": lambda v: accounts.group_display(v[0]["group_name"]),
    "instance.group-name": lambda v: accounts.group_display(v[0]["group_name"]),
    "group-id": lambda v: group_id(v[0]["group_name"]),
    "instance.group-id": lambda v: group_id(v[0]["group_name"]),
    "launch-index": lambda v: str(v[0]["launch_index"]),
    "kernel-id": lambda v: v[0]["kernel_id"],
    "ramdisk-id": lambda v: v[0]["ramdisk_id"],
    "owner-id": lambda v: v[3],
    "vpc-id": lambda v: actions_vpc.vpc_id(v[0]["account"]) if v[1] != "terminated" else None,
    "subnet-id": lambda v: actions_vpc.subnet_id(v[0]["account"], v[0]["cluster"]) if v[1] != "terminated" else None,
    "network-interface.network-interface-id": lambda v: actions_vpc.interface_id(v[0]["id"]),
    "network-interface.vpc-id": lambda v: actions_vpc.vpc_id(v[0]["account"]),
    "network-interface.subnet-id": lambda v: actions_vpc.subnet_id(v[0]["account"], v[0]["cluster"]),
}


def _filtered(views, params, numbers):
    filters = params.filters()
    if not filters:
        return views
    # apply_filters reads dicts; carry the view along with its tags and owner number
    wrapped = [{"view": v, "tagSet": v[2]} for v in views]

    def field(get):
        return lambda item: get(item["view"] + (numbers.get(item["view"][0]["account"], ""),))

    fields = dict((name, field(get)) for name, get in FILTERS.items())
    return [w["view"] for w in query.apply_filters(wrapped, filters, fields)]


@action("DescribeInstances")
def describe_instances(ctx, params):
    wanted = _instance_ids(params)
    max_results = params.int("MaxResults", minimum=5, maximum=1000)
    if wanted and max_results is not None:
        raise ApiError("InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults")
    filters = params.filters()
    offset, limit = query.page_window(max_results, params.get("NextToken"))
    with ctx.read() as txn:
        numbers = actions_tags.owner_numbers(txn)
        if filters:
            rows = _rows(txn, ctx, wanted or None)
            views = _filtered(_views(txn, ctx, rows), params, numbers)
            page = views[offset:offset + limit] if limit is not None else views[offset:]
            token = query.page_token(offset, limit, limit is not None and len(views) > offset + limit)
        else:
            # no filter: the ledger pages (and only the page's tags and jobs are read)
            rows = _rows(txn, ctx, wanted or None, offset=offset, limit=limit)
            if wanted:
                _check_found(rows, wanted)
            more = limit is not None and len(rows) > limit
            page = _views(txn, ctx, rows[:limit] if limit is not None else rows)
            token = query.page_token(offset, limit, more)
        if wanted and filters:
            _check_found(rows, wanted)
    return {"reservationSet": _reservations(page, numbers), "nextToken": token}


@action("DescribeInstanceStatus")
def describe_instance_status(ctx, params):
    wanted = _instance_ids(params)
    include_all = params.bool("IncludeAllInstances", default=False)
    max_results = params.int("MaxResults", minimum=5, maximum=1000)
    with ctx.read() as txn:
        rows = _rows(txn, ctx, wanted or None, include_terminated=bool(wanted))
        if wanted:
            _check_found(rows, wanted)
        numbers = actions_tags.owner_numbers(txn)
        views = _filtered(_views(txn, ctx, rows), params, numbers)
    if not include_all:
        views = [v for v in views if v[1] == "running"]
    page, token = query.paginate(views, max_results, params.get("NextToken"))
    items = []
    for row, state, _tags in page:
        ok = "ok" if state == "running" else "not-applicable"
        items.append({
            "instanceId": row["id"],
            "availabilityZone": row["cluster"],
            "instanceState": {"code": STATE_CODES[state], "name": state},
            "systemStatus": {"status": ok, "details": [{"name": "reachability", "status": "passed"}] if ok == "ok" else []},
            "instanceStatus": {"status": ok, "details": [{"name": "reachability", "status": "passed"}] if ok == "ok" else []},
        })
    return {"instanceStatusSet": items, "nextToken": token}


def _user_data(params):
    encoded = params.get("UserData")
    if encoded is None:
        return None
    try:
        raw = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ApiError("InvalidUserData.Malformed", "User data must be base64 encoded")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError("InvalidUserData.Malformed", "User data must be UTF-8 text on this cloud (gzip-compressed user "
                                                    "data is not kept)")
    if len(raw) > instances.USER_DATA_MAX:
        raise ApiError("InvalidParameterValue", "User data is limited to %d bytes" % instances.USER_DATA_MAX)
    return text


#: what RunInstances takes of a NetworkInterface.N (the default VPC's view: one interface, index 0)
_INTERFACE_FIELDS = {"DeviceIndex", "SubnetId", "DeleteOnTermination", "AssociatePublicIpAddress", "Description"}


def _network_interface(params):
    """``(subnet id or None, [group ids])`` of RunInstances' ``SubnetId`` and ``NetworkInterface.N``:
    at most one interface, device index 0, in a default subnet (a zone); a public address comes
    from AllocateAddress/AssociateAddress, not at launch."""
    subnet = params.get("SubnetId")
    interfaces = params.structs("NetworkInterface")
    if len(interfaces) > 1:
        raise ApiError("InvalidParameterCombination", "this cloud gives each instance one network interface")
    group_ids = []
    for interface in interfaces:
        unknown = sorted(name.split(".", 1)[0] for name in interface.names()
                         if name.split(".", 1)[0] not in _INTERFACE_FIELDS | {"SecurityGroupId"})
        if unknown:
            raise ApiError("InvalidParameterCombination", "NetworkInterface.1.%s is not supported: an instance's "
                                                          "interface is made at launch in its zone's default subnet"
                           % unknown[0])
        if interface.int("DeviceIndex", default=0) != 0:
            raise invalid("NetworkInterface.1.DeviceIndex must be 0: the instance has one interface")
        if interface.bool("AssociatePublicIpAddress"):
            raise ApiError("InvalidParameterCombination", "this cloud gives no public address at launch: allocate one "
                                                          "(AllocateAddress) and associate it (AssociateAddress)")
        if not interface.bool("DeleteOnTermination", default=True):
            raise ApiError("InvalidParameterCombination", "an instance's interface is deleted with it "
                                                          "(DeleteOnTermination must be true)")
        inner = interface.get("SubnetId")
        if inner and subnet and inner != subnet:
            raise ApiError("InvalidParameterCombination", "SubnetId %s and NetworkInterface.1.SubnetId %s differ"
                           % (subnet, inner))
        subnet = subnet or inner
        group_ids = interface.list("SecurityGroupId")
    return subnet, group_ids


def _group_for_launch(txn, ctx, params, interface_groups=()):
    """The one security group of a launch: SecurityGroup.N names or SecurityGroupId.N ids (also
    NetworkInterface.1.SecurityGroupId.N), else ``default``."""
    by_name = params.list("SecurityGroup")
    by_id = list(dict.fromkeys(params.list("SecurityGroupId") + list(interface_groups)))
    if len(by_name) + len(by_id) > 1:
        raise ApiError("InvalidParameterCombination", "this cloud puts each instance in one security group (its "
                                                      "segment); name one group")
    if by_id:
        wanted = by_id[0]
        for row in txn.rows("SELECT name, account FROM security_groups" + ("" if ctx.admin else " WHERE account = ?"),
                            *([] if ctx.admin else [ctx.account])):
            if group_id(row["name"]) == wanted:
                return row
        raise ApiError("InvalidGroup.NotFound", "The security group '%s' does not exist" % wanted)
    name = by_name[0] if by_name else "default"
    try:
        return groups.get_group(txn, name, ctx.account)
    except NotFound:
        if by_name:
            raise ApiError("InvalidGroup.NotFound", "The security group '%s' does not exist" % name)
    # EC2 gives every account a group named default; create it on first use
    groups.ensure_group(txn, "default", description="default group", account=ctx.account)
    return groups.get_group(txn, "default", ctx.account)


def _launch(txn, ctx, params, group_row, image_ref, instance_type, minimum, maximum, cluster, keypair, user_data, name):
    """Launch ``maximum`` instances or, when they do not all fit, as many as fit down to ``minimum``
    (EC2's MinCount/MaxCount). Whether ``n`` fit is monotone in ``n``: a binary search, each probe a
    launch inside a savepoint that is rolled back, then the largest that fit launched for real."""
    owner = group_row["account"]

    def attempt(count):
        return instances.launch(txn, name, group_row["name"], image_ref, instance_type, count, cluster, None, owner,
                                keypair, user_data)

    def fits(count):
        txn.exec("SAVEPOINT euca_probe")
        try:
            attempt(count)
            return True
        except EucaError as exc:
            if type(exc).__name__ != "Exhausted":
                raise
            return False
        finally:
            txn.exec("ROLLBACK TO SAVEPOINT euca_probe")
            txn.exec("RELEASE SAVEPOINT euca_probe")

    if minimum < maximum and not fits(maximum):
        low, high = minimum, maximum - 1  # the answer is in [low, high] if minimum fits at all
        while low < high:
            middle = (low + high + 1) // 2
            if fits(middle):
                low = middle
            else:
                high = middle - 1
        maximum = low
    return attempt(maximum)


@action("RunInstances")
def run_instances(ctx, params):
    image_ref = params.get("ImageId", required=True)
    minimum = params.int("MinCount", required=True, minimum=1, maximum=MAX_PER_REQUEST)
    maximum = params.int("MaxCount", required=True, minimum=1, maximum=MAX_PER_REQUEST)
    if maximum < minimum:
        raise ApiError("InvalidParameterValue", "MaxCount (%d) must be greater than or equal to MinCount (%d)"
                       % (maximum, minimum))
    instance_type = params.get("InstanceType", default="m1.small")
    cluster = params.get("Placement.AvailabilityZone") or None
    subnet, interface_groups = _network_interface(params)
    key_name = params.get("KeyName")
    user_data = _user_data(params)
    token = params.get("ClientToken")
    if token is not None and (not token or len(token) > 64):
        raise invalid("ClientToken must be 1 to 64 ASCII characters")
    tag_specs = params.tag_specifications()
    for resource_type, _tags in tag_specs:
        # a launch makes instances; their root disks are instance store and their interface is part
        # of them, so tags for the volumes and interfaces a launch makes (EC2 clients send them) have
        # nothing to tag
        if resource_type not in LAUNCH_TAGGED:
            raise invalid("TagSpecification ResourceType %r: RunInstances tags its instances here" % resource_type)
    name = None
    for resource_type, pairs in tag_specs:
        for key, value in pairs:
            if resource_type == "instance" and key == "Name" and names.is_name(value):
                name = value
    with ctx.write() as txn:
        if token:
            done = txn.row("SELECT result FROM client_tokens WHERE account = ? AND token = ?", ctx.account, token)
            if done is not None:
                rows = txn.rows("SELECT id FROM instances WHERE reservation_id = ? ORDER BY launch_index", done["result"])
                return _reservation_answer(txn, ctx, [r["id"] for r in rows], token)
        try:
            image_row = images.resolve(txn, image_ref, "machine", ctx.account)
        except NotFound:
            raise ApiError("InvalidAMIID.NotFound", "The image id '[%s]' does not exist" % image_ref)
        except EucaError as exc:
            raise ApiError("InvalidAMIID.Malformed", exc.msg)
        conf = settings.load(txn)
        if instance_type not in conf["vm_types"]:
            raise invalid("Invalid value '%s' for InstanceType; this cloud offers %s"
                          % (instance_type, ", ".join(sorted(conf["vm_types"]))))
        if cluster and txn.row("SELECT name FROM clusters WHERE name = ?", cluster) is None:
            raise invalid("Invalid availability zone: [%s]" % cluster)
        if subnet:
            zone = actions_vpc.subnet_cluster(txn, ctx, subnet)
            if cluster and cluster != zone:
                raise ApiError("InvalidParameterCombination", "the subnet %s is in zone %s, not %s"
                               % (subnet, zone, cluster))
            cluster = zone
        group_row = _group_for_launch(txn, ctx, params, interface_groups)
        keypair = None
        if key_name is not None:
            try:
                keypair = keypairs.get_keypair(txn, group_row["account"], key_name)
            except NotFound:
                raise ApiError("InvalidKeyPair.NotFound", "The key pair '%s' does not exist" % key_name)
        try:
            created = _launch(txn, ctx, params, group_row, image_row["id"], instance_type, minimum, maximum, cluster,
                              keypair, user_data, name)
        except EucaError as exc:
            raise _launch_error(exc)
        created_ids = [r["id"] for r in created]
        actions_tags.apply_tag_specifications(txn, ctx, params, "instance", created_ids, LAUNCH_TAGGED[1:])
        if token:
            txn.exec("INSERT INTO client_tokens (account, token, action, result, created_at) VALUES (?, ?, ?, ?, ?)",
                     ctx.account, token, "RunInstances", created[0]["reservation_id"], created[0]["created_at"])
        for cluster_name in sorted(set(r["cluster"] for r in created)):
            ctx.enqueue(txn, "converge", cluster_name, [r["id"] for r in created if r["cluster"] == cluster_name])
        return _reservation_answer(txn, ctx, created_ids, token)


def _launch_error(exc):
    msg = exc.msg
    if type(exc).__name__ == "Exhausted" and not msg.startswith(("InstanceLimitExceeded", "AddressLimitExceeded")):
        if "subnet" in msg and "address" in msg:
            return ApiError("InsufficientFreeAddressesInSubnet", msg)
        return ApiError("InsufficientInstanceCapacity", msg)
    return from_euca(exc, not_found="InvalidParameterValue")


def _reservation_answer(txn, ctx, ids, token):
    rows = _rows(txn, ctx, ids)
    views = _views(txn, ctx, rows)
    numbers = actions_tags.owner_numbers(txn)
    first = rows[0]
    return {
        "reservationId": first["reservation_id"],
        "ownerId": numbers.get(first["account"], ""),
        "groupSet": [{"groupId": group_id(first["group_name"]), "groupName": accounts.group_display(first["group_name"])}],
        "instancesSet": [_item(row, state, tags, token, numbers.get(row["account"], "")) for row, state, tags in views],
    }


def _state_change(ctx, params, kind, allowed, target):
    """Queue ``kind`` for the named instances (validated all first), answering EC2's state changes."""
    wanted = _instance_ids(params, required=True)
    with ctx.write() as txn:
        rows = _rows(txn, ctx, wanted)
        _check_found(rows, wanted)
        active = _jobs().active(txn, wanted)
        changes, queue = [], {}
        for row in rows:
            before = _shown_state(row, active)
            if row["state"] == "terminated" or active.get(row["id"]) == "terminate":
                if kind == "terminate":
                    changes.append((row["id"], before, before))
                    continue
                raise ApiError("IncorrectInstanceState", "The instance '%s' is not in a state from which it can be %s"
                               % (row["id"], target))
            if row["state"] not in allowed:
                raise ApiError("IncorrectInstanceState", "The instance '%s' is %s, not in a state from which it can be %s"
                               % (row["id"], before, target))
            shown = TRANSITIONAL.get(kind, before)
            changes.append((row["id"], before, shown))
            queue.setdefault(row["cluster"], []).append(row["id"])
        for cluster_name, ids in sorted(queue.items()):
            ctx.enqueue(txn, kind, cluster_name, ids)
    return changes


def _state_set(changes):
    return [{"instanceId": i, "currentState": {"code": STATE_CODES[now], "name": now},
             "previousState": {"code": STATE_CODES[before], "name": before}} for i, before, now in changes]


#: DescribeInstanceAttribute's attributes: the answer's element, and the value from the row
_ATTRIBUTES = {
    "instanceType": ("instanceType", lambda r: {"value": r["instance_type"]}),
    "kernel": ("kernel", lambda r: {"value": r["kernel_id"]}),
    "ramdisk": ("ramdisk", lambda r: {"value": r["ramdisk_id"]}),
    "userData": ("userData", lambda r: {"value": base64.b64encode(r["user_data"].encode("utf-8")).decode("ascii")}
                 if r["user_data"] else {}),
    "disableApiTermination": ("disableApiTermination", lambda r: {"value": False}),
    "disableApiStop": ("disableApiStop", lambda r: {"value": False}),
    "instanceInitiatedShutdownBehavior": ("instanceInitiatedShutdownBehavior", lambda r: {"value": "stop"}),
    "rootDeviceName": ("rootDeviceName", lambda r: {"value": "/dev/vda"}),
    "blockDeviceMapping": ("blockDeviceMapping", lambda r: r.get("block_devices") or []),
    "productCodes": ("productCodes", lambda r: []),
    "sourceDestCheck": ("sourceDestCheck", lambda r: {"value": True}),
    "groupSet": ("groupSet", lambda r: [{"groupId": group_id(r["group_name"]),
                                         "groupName": accounts.group_display(r["group_name"])}]),
    "ebsOptimized": ("ebsOptimized", lambda r: {"value": False}),
    "sriovNetSupport": ("sriovNetSupport", lambda r: {}),
    "enaSupport": ("enaSupport", lambda r: {"value": False}),
    "enclaveOptions": ("enclaveOptions", lambda r: {"enabled": False}),
}


@action("DescribeInstanceAttribute")
def describe_instance_attribute(ctx, params):
    instance_id = check_instance_id(params.get("InstanceId", required=True))
    attribute = params.get("Attribute", required=True)
    if attribute not in _ATTRIBUTES:
        raise invalid("Value (%s) for parameter attribute is invalid. Expected one of %s."
                      % (attribute, ", ".join(sorted(_ATTRIBUTES))))
    with ctx.read() as txn:
        rows = _rows(txn, ctx, [instance_id], user_data=True)
        _check_found(rows, [instance_id])
        _views(txn, ctx, rows)
    element, value = _ATTRIBUTES[attribute]
    return {"instanceId": instance_id, element: value(rows[0])}


@action("TerminateInstances")
def terminate_instances(ctx, params):
    return {"instancesSet": _state_set(_state_change(ctx, params, "terminate", ("pending", "running", "stopped"),
                                                     "terminated"))}


@action("StopInstances")
def stop_instances(ctx, params):
    return {"instancesSet": _state_set(_state_change(ctx, params, "stop", ("running", "stopped"), "stopped"))}


@action("StartInstances")
def start_instances(ctx, params):
    return {"instancesSet": _state_set(_state_change(ctx, params, "start", ("stopped", "running"), "started"))}


@action("RebootInstances")
def reboot_instances(ctx, params):
    _state_change(ctx, params, "reboot", ("running",), "rebooted")
    return {"return": True}
