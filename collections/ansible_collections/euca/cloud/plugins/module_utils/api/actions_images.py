# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""EC2 actions about the cloud itself and its images: DescribeRegions, DescribeAvailabilityZones
(the clusters), DescribeAccountAttributes, DescribeImages, DescribeImageAttribute, RegisterImage,
DeregisterImage.

Images are the ledger's registrations (ledger/images.py): the admin account's are public (every
account sees and launches them), another account's are its own. RegisterImage records an object
already in Walrus (stored by playbooks/register-image.yml or euca.cloud.walrus_image): the API reads
its size and sha256 from Walrus's HTTP server (the configuration's ``walrus_url``) and registers it
through the same ledger function as euca.cloud.image.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import http.client
import socket
from urllib.parse import quote, urlsplit

from ansible_collections.euca.cloud.plugins.module_utils.api import actions_vpc, query
from ansible_collections.euca.cloud.plugins.module_utils.api.actions_tags import iso_time, owner_numbers, tag_sets
from ansible_collections.euca.cloud.plugins.module_utils.api.base import action
from ansible_collections.euca.cloud.plugins.module_utils.api.errors import ApiError, from_euca, invalid
from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError
from ansible_collections.euca.cloud.plugins.module_utils.ledger import accounts, images
from ansible_collections.euca.cloud.plugins.module_utils.model import names
from ansible_collections.euca.cloud.plugins.module_utils.walrus import store

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
    """The platforms: EC2-Classic's launches by group name, and the default VPC's view of the same network
    (api/actions_vpc.py), whose id is the account's default-vpc; the limits are the account's quotas."""
    with ctx.read() as txn:
        row = accounts.get_account(txn, ctx.account)
    limit = row["max_instances"]
    attrs = [
        ("supported-platforms", ["EC2", "VPC"]),
        ("default-vpc", [actions_vpc.vpc_id(ctx.account)]),
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


# --- RegisterImage --------------------------------------------------------------------------------

#: the Walrus bucket register-image.yml (euca.cloud.walrus_image's default) stores images in
WALRUS_BUCKET = "images"
#: seconds a Walrus request may take (the configuration's ``walrus_timeout``)
WALRUS_TIMEOUT = 5.0
#: the first bytes of a qcow2 file
QCOW2_MAGIC = b"QFI\xfb"


def _unavailable(walrus_url, exc):
    return ApiError("Unavailable", "Walrus (%s) cannot be reached to read the image: %s" % (walrus_url, exc),
                    status=503)


def _walrus_get(url, timeout, method="GET", headers=None, limit=None):
    """``(status, headers, body)`` of one request to Walrus (http.client: this runs on the clc host's
    standard library, without Ansible); OSError (refused, timed out ...) and HTTPException raise."""
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = connection_class(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, parts.path or "/", headers=headers or {})
        answer = conn.getresponse()
        body = answer.read(limit) if method != "HEAD" else b""
        return answer.status, answer.headers, body
    finally:
        conn.close()


def walrus_object(walrus_url, key, timeout=WALRUS_TIMEOUT):
    """What Walrus serves at ``key`` of the images bucket: ``{location, checksum, size_bytes, format}``.

    The size is the object's (HEAD), the checksum its ``<key>.sha256`` sidecar's (walrus/store.py),
    which must describe an object of that size; the format is qcow2 when the bytes start so, else raw.
    ApiError ``InvalidManifest`` when there is no such object (or no current sidecar), ``Unavailable``
    (503) when Walrus does not answer.
    """
    location = "%s/%s/%s" % (walrus_url.rstrip("/"), WALRUS_BUCKET, key)
    url = "%s/%s/%s" % (walrus_url.rstrip("/"), WALRUS_BUCKET, quote(key))
    try:
        status, headers, _body = _walrus_get(url, timeout, method="HEAD")
        if status == 404:
            raise ApiError("InvalidManifest", "ImageLocation %s: Walrus holds no object %s/%s; store it first "
                                              "(playbooks/register-image.yml)" % (key, WALRUS_BUCKET, key))
        if status != 200:
            raise _unavailable(walrus_url, "HEAD %s answered %d" % (location, status))
        try:
            size = int(headers.get("Content-Length"))
        except (TypeError, ValueError):
            raise _unavailable(walrus_url, "HEAD %s gave no Content-Length" % location)
        status, _headers, sidecar = _walrus_get(url + ".sha256", timeout, limit=4096)
        if status == 404:
            raise ApiError("InvalidManifest", "ImageLocation %s: Walrus has no checksum (%s.sha256) for the object; "
                                              "store it with euca.cloud.walrus_image" % (key, key))
        if status != 200:
            raise _unavailable(walrus_url, "GET %s.sha256 answered %d" % (location, status))
        fields = sidecar.decode("ascii", "replace").split()
        if len(fields) < 2 or not fields[1].isdigit() or not fields[0].startswith("sha256:"):
            raise ApiError("InvalidManifest", "ImageLocation %s: its checksum file %s.sha256 is not Walrus's" % (key, key))
        if int(fields[1]) != size:
            raise ApiError("InvalidManifest", "ImageLocation %s: its checksum file is of %s bytes but the object has "
                                              "%d: store it again with euca.cloud.walrus_image" % (key, fields[1], size))
        status, _headers, head = _walrus_get(url, timeout, headers={"Range": "bytes=0-3"}, limit=4)
        if status not in (200, 206):
            raise _unavailable(walrus_url, "GET %s answered %d" % (location, status))
    except (http.client.HTTPException, socket.timeout, OSError, ValueError) as exc:
        raise _unavailable(walrus_url, exc)
    return {"location": location, "checksum": fields[0], "size_bytes": size,
            "format": "qcow2" if head[:4] == QCOW2_MAGIC else "raw"}


def _image_key(ctx, location):
    """The Walrus key ImageLocation names: a key of the images bucket (``debian-12/disk.raw``), also given as
    ``images/<key>`` or as the object's URL under ``walrus_url``."""
    walrus_url = (ctx.settings.get("walrus_url") or "").rstrip("/")
    key = location.strip()
    for prefix in ([walrus_url + "/" + WALRUS_BUCKET + "/"] if walrus_url else []) + [WALRUS_BUCKET + "/"]:
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    try:
        store.check_location(WALRUS_BUCKET, key)
    except EucaError as exc:
        raise invalid("ImageLocation %r: %s" % (location, exc.msg))
    return key


def _boot_image(txn, ctx, image_id, kind):
    """The id of the kernel (or ramdisk) ``image_id`` this account may use, else EC2's refusal."""
    row = _own_image(txn, ctx, image_id)
    if row["kind"] != kind:
        raise invalid("%s is a %s image, not a %s" % (image_id, row["kind"], kind))
    return row["id"]


def _duplicate(txn, ctx, name):
    found = txn.row("SELECT id, account FROM images WHERE name = ?", name)
    if found is None:
        return None
    if accounts.sees(txn, ctx.account, found["account"]):
        return ApiError("InvalidAMIName.Duplicate", "AMI name %s is already in use by AMI %s" % (name, found["id"]))
    return ApiError("InvalidAMIName.Duplicate", "AMI name %s is already in use (image names are unique across this "
                                                "cloud); choose another" % name)


@action("RegisterImage")
def register_image(ctx, params):
    name = params.get("Name", required=True)
    location = params.get("ImageLocation")
    if not location:
        raise ApiError("MissingParameter", "The request must contain the parameter ImageLocation (the Walrus key of "
                                           "the stored image, e.g. debian-12/disk.raw); this cloud has no EBS images")
    architecture = params.get("Architecture", "x86_64")
    if architecture != "x86_64":
        raise invalid("Architecture %s is not supported: this cloud runs x86_64 images only" % architecture)
    # accepted as EC2 has them, not kept: the ledger records what the bytes are
    params.get("Description")
    params.get("RootDeviceName")
    kernel_id, ramdisk_id = params.get("KernelId"), params.get("RamdiskId")
    try:
        names.check_name("image", name)
    except EucaError as exc:
        raise invalid(exc.msg)
    key = _image_key(ctx, location)
    with ctx.read() as txn:
        refusal = _duplicate(txn, ctx, name)
        if refusal is not None:
            raise refusal
        kernel = _boot_image(txn, ctx, kernel_id, "kernel") if kernel_id else None
        ramdisk = _boot_image(txn, ctx, ramdisk_id, "ramdisk") if ramdisk_id else None
    walrus_url = ctx.settings.get("walrus_url")
    if not walrus_url:
        raise ApiError("Unavailable", "this EC2 API knows no Walrus (its configuration has no walrus_url)", status=503)
    stored = walrus_object(walrus_url, key, float(ctx.settings.get("walrus_timeout", WALRUS_TIMEOUT)))
    with ctx.write() as txn:
        refusal = _duplicate(txn, ctx, name)  # registered meanwhile
        if refusal is not None:
            raise refusal
        try:
            made = images.ensure_image(txn, name, kind="machine", checksum=stored["checksum"],
                                       size_bytes=stored["size_bytes"], image_format=stored["format"],
                                       kernel=kernel, ramdisk=ramdisk, location=stored["location"],
                                       account=ctx.account)
        except EucaError as exc:
            raise from_euca(exc, not_found="InvalidAMIID.NotFound", conflict="InvalidAMIName.Duplicate")
    return {"imageId": made["image"]["id"]}
