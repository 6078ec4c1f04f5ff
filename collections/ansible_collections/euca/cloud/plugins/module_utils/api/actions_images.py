# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""EC2 actions about the cloud itself and its images: DescribeRegions, DescribeAvailabilityZones
(the clusters), DescribeAccountAttributes, DescribeImages, DescribeImageAttribute, DeregisterImage.

Images are the ledger's registrations (ledger/images.py): the admin account's are public (every
account sees and launches them), another account's are its own.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.api import query
from ansible_collections.euca.cloud.plugins.module_utils.api.actions_tags import iso_time, owner_numbers, tag_sets
from ansible_collections.euca.cloud.plugins.module_utils.api.base import action
from ansible_collections.euca.cloud.plugins.module_utils.api.errors import ApiError, from_euca, invalid
from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError
from ansible_collections.euca.cloud.plugins.module_utils.ledger import accounts, images
from ansible_collections.euca.cloud.plugins.module_utils.model import names

IMAGE_TYPES = {"machine": "machine", "kernel": "kernel", "ramdisk": "ramdisk"}


@action("DescribeRegions")
def describe_regions(ctx, params):
    region = ctx.settings.get("region", "euca")
    wanted = params.list("RegionName")
    items = [{"regionName": region, "regionEndpoint": ctx.settings.get("endpoint", ""), "optInStatus": "opt-in-not-required"}]
    if wanted:
        unknown = [r for r in wanted if r != region]
        if unknown:
            raise ApiError("InvalidParameterValue", "Invalid region: %s (this cloud's region is %s)"
                           % (", ".join(unknown), region))
    fields = {"region-name": lambda i: i["regionName"], "endpoint": lambda i: i["regionEndpoint"]}
    return {"regionInfo": query.apply_filters(items, params.filters(), fields)}


@action("DescribeAvailabilityZones")
def describe_availability_zones(ctx, params):
    """Each cluster is a zone; ``available`` while it has an enabled node."""
    region = ctx.settings.get("region", "euca")
    wanted = params.list("ZoneName")
    with ctx.read() as txn:
        rows = txn.rows("SELECT c.name AS name, COUNT(n.name) AS enabled FROM clusters c LEFT JOIN nodes n "
                        "ON n.cluster = c.name AND n.state = 'enabled' GROUP BY c.name ORDER BY c.name")
    items = [{"zoneName": r["name"], "zoneState": "available" if r["enabled"] else "unavailable", "regionName": region,
              "zoneId": r["name"], "zoneType": "availability-zone", "messageSet": []} for r in rows]
    if wanted:
        known = set(i["zoneName"] for i in items)
        unknown = [z for z in wanted if z not in known]
        if unknown:
            raise ApiError("InvalidParameterValue", "Invalid availability zone: [%s]" % ", ".join(unknown))
        items = [i for i in items if i["zoneName"] in wanted]
    fields = {"zone-name": lambda i: i["zoneName"], "state": lambda i: i["zoneState"],
              "region-name": lambda i: i["regionName"], "zone-id": lambda i: i["zoneId"]}
    return {"availabilityZoneInfo": query.apply_filters(items, params.filters(), fields)}


@action("DescribeAccountAttributes")
def describe_account_attributes(ctx, params):
    """EC2-Classic: the platform is EC2, there is no default VPC; the limits are the account's quotas."""
    with ctx.read() as txn:
        row = accounts.get_account(txn, ctx.account)
    limit = row["max_instances"]
    attrs = [
        ("supported-platforms", ["EC2"]),
        ("default-vpc", ["none"]),
        ("max-instances", [str(limit) if limit is not None else "unlimited"]),
        ("max-elastic-ips", [str(row["max_addresses"]) if row["max_addresses"] is not None else "unlimited"]),
    ]
    wanted = params.list("AttributeName")
    if wanted:
        known = set(n for n, _v in attrs)
        unknown = [a for a in wanted if a not in known]
        if unknown:
            raise invalid("Invalid attribute names: %s" % ", ".join(unknown))
        attrs = [a for a in attrs if a[0] in wanted]
    return {"accountAttributeSet": [{"attributeName": n, "attributeValueSet": [{"attributeValue": v} for v in vals]}
                                    for n, vals in attrs]}


def _visible_rows(txn, ctx):
    if ctx.admin:
        return txn.rows("SELECT * FROM images ORDER BY id")
    return txn.rows("SELECT * FROM images WHERE account IN (?, ?) ORDER BY id", ctx.account, accounts.ADMIN)


def _image_item(row, numbers, tag_set):
    bucket_key = row["location"] or ""
    return {
        "imageId": row["id"],
        "imageLocation": bucket_key,
        "imageState": "available",
        "imageOwnerId": numbers.get(row["account"], ""),
        "creationDate": iso_time(row["created_at"]),
        "isPublic": row["account"] == accounts.ADMIN,
        "architecture": "x86_64",
        "imageType": IMAGE_TYPES[row["kind"]],
        "kernelId": row["kernel_id"],
        "ramdiskId": row["ramdisk_id"],
        "imageOwnerAlias": "admin" if row["account"] == accounts.ADMIN else None,
        "name": row["name"],
        "rootDeviceType": "instance-store",
        "blockDeviceMapping": [],
        "virtualizationType": "hvm",
        "hypervisor": "kvm",
        "tagSet": tag_set,
    }


@action("DescribeImages")
def describe_images(ctx, params):
    wanted = params.list("ImageId")
    owners = params.list("Owner")
    for image_id in wanted:
        if not names.id_pattern(*names.IMAGE_KINDS).match(image_id):
            raise ApiError("InvalidAMIID.Malformed", "Invalid id: %r" % image_id)
    with ctx.read() as txn:
        rows = _visible_rows(txn, ctx)
        numbers = owner_numbers(txn)
        tags = tag_sets(txn, [r["id"] for r in rows])
    if wanted:
        found = set(r["id"] for r in rows)
        missing = [i for i in wanted if i not in found]
        if missing:
            raise ApiError("InvalidAMIID.NotFound", "The image id '[%s]' does not exist" % ", ".join(missing))
        rows = [r for r in rows if r["id"] in wanted]
    if owners:
        def owned(row):
            number = numbers.get(row["account"], "")
            return any(o in (number, "self" if row["account"] == ctx.account else None,
                             "amazon" if row["account"] == accounts.ADMIN else None) for o in owners)
        rows = [r for r in rows if owned(r)]
    items = [_image_item(r, numbers, tags.get(r["id"], [])) for r in rows]
    fields = {
        "image-id": lambda i: i["imageId"], "name": lambda i: i["name"], "image-type": lambda i: i["imageType"],
        "owner-id": lambda i: i["imageOwnerId"], "is-public": lambda i: i["isPublic"], "state": lambda i: i["imageState"],
        "kernel-id": lambda i: i["kernelId"], "ramdisk-id": lambda i: i["ramdiskId"],
        "architecture": lambda i: i["architecture"], "manifest-location": lambda i: i["imageLocation"],
        "root-device-type": lambda i: i["rootDeviceType"], "virtualization-type": lambda i: i["virtualizationType"],
        "hypervisor": lambda i: i["hypervisor"], "owner-alias": lambda i: i["imageOwnerAlias"],
    }
    items = query.apply_filters(items, params.filters(), fields)
    page, token = query.paginate(items, params.int("MaxResults", minimum=5, maximum=1000), params.get("NextToken"))
    return {"imagesSet": page, "nextToken": token}


def _own_image(txn, ctx, image_id):
    if not names.id_pattern(*names.IMAGE_KINDS).match(image_id or ""):
        raise ApiError("InvalidAMIID.Malformed", "Invalid id: %r" % (image_id,))
    row = txn.row("SELECT * FROM images WHERE id = ?", image_id)
    if row is None or not images.visible(txn, ctx.account, row):
        raise ApiError("InvalidAMIID.NotFound", "The image id '[%s]' does not exist" % image_id)
    return row


@action("DescribeImageAttribute")
def describe_image_attribute(ctx, params):
    image_id = params.get("ImageId", required=True)
    attribute = params.get("Attribute", required=True)
    with ctx.read() as txn:
        row = _own_image(txn, ctx, image_id)
    body = {"imageId": row["id"]}
    if attribute == "launchPermission":
        body["launchPermission"] = [{"group": "all"}] if row["account"] == accounts.ADMIN else []
    elif attribute == "kernel":
        body["kernel"] = {"value": row["kernel_id"]} if row["kernel_id"] else None
    elif attribute == "ramdisk":
        body["ramdisk"] = {"value": row["ramdisk_id"]} if row["ramdisk_id"] else None
    elif attribute == "description":
        body["description"] = {"value": row["name"]}
    elif attribute == "productCodes":
        body["productCodes"] = []
    elif attribute == "blockDeviceMapping":
        body["blockDeviceMapping"] = []
    else:
        raise ApiError("InvalidRequest", "Attribute %s is not supported: ask for launchPermission, kernel, ramdisk, "
                                         "description, productCodes or blockDeviceMapping" % attribute)
    return body


@action("DeregisterImage")
def deregister_image(ctx, params):
    image_id = params.get("ImageId", required=True)
    with ctx.write() as txn:
        row = _own_image(txn, ctx, image_id)
        if not accounts.sees(txn, ctx.account, row["account"]):
            # a public (admin) image: visible, but not this account's to deregister
            raise ApiError("AuthFailure", "Not authorized for image:%s" % image_id, status=403)
        try:
            images.ensure_image(txn, row["name"], state="absent", account=ctx.account)
        except EucaError as exc:
            raise from_euca(exc, not_found="InvalidAMIID.NotFound", conflict="InvalidAMIID.Unavailable")
    return {"return": True}
