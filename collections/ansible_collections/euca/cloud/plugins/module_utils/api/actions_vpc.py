# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The default VPC, as a read-only view of the cloud's EC2-Classic network: DescribeVpcs, DescribeSubnets.

The cloud's networking is Eucalyptus's MANAGED mode (EC2-Classic): every security group is its own
segment and subnet, and a zone is a cluster. Today's EC2 clients assume a default VPC instead
(amazon.aws's ec2_instance launches into "the default subnet of the zone" and looks groups up by
``vpc-id``), so every account sees one: its *default VPC* spans the cloud's private network, and
has one *default subnet* per zone (cluster). They are derived, not stored: a VPC is the account, a
subnet the (account, cluster) pair, an instance's one network interface the instance. Launching into
a default subnet is launching into its zone (RunInstances ``SubnetId`` or ``NetworkInterface.1``);
groups belong to the account's default VPC. Nothing can be created here: no CreateVpc/CreateSubnet.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

from ansible_collections.euca.cloud.plugins.module_utils.api import query
from ansible_collections.euca.cloud.plugins.module_utils.api.actions_tags import owner_numbers
from ansible_collections.euca.cloud.plugins.module_utils.api.base import action, derived_id
from ansible_collections.euca.cloud.plugins.module_utils.api.errors import ApiError
from ansible_collections.euca.cloud.plugins.module_utils.ledger import settings


def vpc_id(account):
    """The ``vpc-`` id of ``account``'s default VPC."""
    return derived_id("vpc", "vpc", account)


def subnet_id(account, cluster):
    """The ``subnet-`` id of ``account``'s default subnet in zone ``cluster``."""
    return derived_id("subnet", "subnet", account, cluster)


def interface_id(instance_id):
    """The ``eni-`` id of an instance's one network interface."""
    return derived_id("eni", "eni", instance_id)


def _accounts(txn, ctx):
    if ctx.admin:
        return [r["name"] for r in txn.rows("SELECT name FROM accounts ORDER BY name")]
    return [ctx.account]


def subnet_cluster(txn, ctx, wanted):
    """The cluster of the caller's default subnet ``wanted``; InvalidSubnetID.NotFound otherwise."""
    for account in _accounts(txn, ctx):
        for row in txn.rows("SELECT name FROM clusters ORDER BY name"):
            if subnet_id(account, row["name"]) == wanted:
                return row["name"]
    raise ApiError("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist" % wanted)


def check_vpc(ctx, wanted):
    """``wanted`` must be the caller's default VPC (the only VPC there is)."""
    if wanted != vpc_id(ctx.account):
        raise ApiError("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist" % wanted)
    return wanted


def _ids(params, prefix, name):
    wanted = params.list(prefix)
    for value in wanted:
        if not value.startswith(name + "-"):
            raise ApiError("InvalidParameterValue", "Invalid id: %r (expecting %s-...)" % (value, name))
    return wanted


def _answer(params, items, wanted, fields, kind):
    """A Describe answer of ``kind`` (vpc, subnet): the ``wanted`` ids (each must be there, EC2's
    Invalid<Kind>ID.NotFound), then ``Filter.N`` by ``fields``, then a page."""
    key = kind + "Id"
    if wanted:
        items = [i for i in items if i[key] in wanted]
        found = set(i[key] for i in items)
        missing = [w for w in wanted if w not in found]
        if missing:
            raise ApiError("Invalid%sID.NotFound" % kind.capitalize(), "The %s ID '%s' does not exist"
                           % (kind, ", ".join(missing)))
    items = query.apply_filters(items, params.filters(), fields)
    page, token = query.paginate(items, params.int("MaxResults", minimum=5, maximum=1000), params.get("NextToken"))
    return {kind + "Set": page, "nextToken": token}


@action("DescribeVpcs")
def describe_vpcs(ctx, params):
    wanted = _ids(params, "VpcId", "vpc")
    with ctx.read() as txn:
        network = settings.load(txn)["private_network"]
        numbers = owner_numbers(txn)
        items = [{
            "vpcId": vpc_id(account),
            "ownerId": numbers.get(account, ""),
            "state": "available",
            "cidrBlock": str(network),
            "cidrBlockAssociationSet": [{"associationId": derived_id("vpc-cidr-assoc", account), "cidrBlock": str(network),
                                         "cidrBlockState": {"state": "associated"}}],
            "dhcpOptionsId": "default",
            "instanceTenancy": "default",
            "isDefault": True,
            "tagSet": [],
        } for account in _accounts(txn, ctx)]
    fields = {"vpc-id": lambda i: i["vpcId"], "state": lambda i: i["state"], "cidr": lambda i: i["cidrBlock"],
              "cidr-block-association.cidr-block": lambda i: i["cidrBlock"], "isDefault": lambda i: "true",
              "is-default": lambda i: "true", "owner-id": lambda i: i["ownerId"],
              "dhcp-options-id": lambda i: i["dhcpOptionsId"]}
    return _answer(params, items, wanted, fields, "vpc")


@action("DescribeSubnets")
def describe_subnets(ctx, params):
    wanted = _ids(params, "SubnetId", "subnet")
    with ctx.read() as txn:
        network = ipaddress.ip_network(str(settings.load(txn)["private_network"]))
        numbers = owner_numbers(txn)
        clusters = [r["name"] for r in txn.rows("SELECT name FROM clusters ORDER BY name")]
        live = dict((r["account"], r["n"]) for r in txn.rows(
            "SELECT account, COUNT(*) AS n FROM instances WHERE state <> 'terminated' GROUP BY account"))
        items = []
        for account in _accounts(txn, ctx):
            for cluster in clusters:
                items.append({
                    "subnetId": subnet_id(account, cluster),
                    "subnetArn": "arn:aws:ec2:%s:%s:subnet/%s" % (ctx.settings.get("region", "euca"),
                                                                  numbers.get(account, ""), subnet_id(account, cluster)),
                    "ownerId": numbers.get(account, ""),
                    "state": "available",
                    "vpcId": vpc_id(account),
                    "cidrBlock": str(network),
                    "availableIpAddressCount": max(0, network.num_addresses - 2 - live.get(account, 0)),
                    "availabilityZone": cluster,
                    "availabilityZoneId": cluster,
                    "defaultForAz": True,
                    "mapPublicIpOnLaunch": False,
                    "assignIpv6AddressOnCreation": False,
                    "tagSet": [],
                })
    fields = {"subnet-id": lambda i: i["subnetId"], "vpc-id": lambda i: i["vpcId"], "state": lambda i: i["state"],
              "availability-zone": lambda i: i["availabilityZone"], "availabilityZone": lambda i: i["availabilityZone"],
              "default-for-az": lambda i: "true", "defaultForAz": lambda i: "true", "cidr-block": lambda i: i["cidrBlock"],
              "cidrBlock": lambda i: i["cidrBlock"], "cidr": lambda i: i["cidrBlock"], "owner-id": lambda i: i["ownerId"],
              "map-public-ip-on-launch": lambda i: "false"}
    return _answer(params, items, wanted, fields, "subnet")
