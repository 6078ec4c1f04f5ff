# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""EC2 key pairs: CreateKeyPair, ImportKeyPair, DeleteKeyPair, DescribeKeyPairs.

The ledger keeps the public half only (ledger/keypairs.py). CreateKeyPair makes the pair on the
CLC with the module's generator (model/keys.py generate: ssh-keygen, outside any transaction so
the ledger's write lock is not held while it runs), records it in one write transaction that
refuses a taken name again under the lock, and answers the private key once: it is stored
nowhere. No job: nothing on the hosts changes until an instance is launched with the key.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii

from ansible_collections.euca.cloud.plugins.module_utils.api import query
from ansible_collections.euca.cloud.plugins.module_utils.api.actions_tags import (apply_tag_specifications,
                                                                                  check_tag_specifications,
                                                                                  delete_tags_of, iso_time,
                                                                                  ledger_refusal, tag_sets)
from ansible_collections.euca.cloud.plugins.module_utils.api.base import action
from ansible_collections.euca.cloud.plugins.module_utils.api.errors import ApiError, invalid, missing
from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError
from ansible_collections.euca.cloud.plugins.module_utils.ledger import keypairs
from ansible_collections.euca.cloud.plugins.module_utils.model import keys

NOT_FOUND = "InvalidKeyPair.NotFound"
#: EC2's KeyType for the OpenSSH key types the ledger records
KEY_TYPES = {"ssh-rsa": "rsa", "ssh-ed25519": "ed25519"}


def _key_name(params):
    name = params.get("KeyName", required=True)
    try:
        return keys.check_key_name(name)
    except EucaError as exc:
        raise invalid(exc.msg)


def _refusal(exc):
    if isinstance(exc, keys.InvalidKey):
        return ApiError("InvalidKey.Format", exc.msg)
    return ledger_refusal(exc, not_found=NOT_FOUND, conflict="InvalidKeyPair.Duplicate")


def _record(ctx, name, params, **kwargs):
    """Record the pair and its TagSpecification tags in one write; returns (keypair view, tagSet)."""
    with ctx.write() as txn:
        try:
            made = keypairs.ensure_keypair(txn, name, account=ctx.account, **kwargs)["keypair"]
        except EucaError as exc:
            raise _refusal(exc)
        tags = apply_tag_specifications(txn, ctx, params, "key-pair", [made["id"]])
    return made, tags


@action("CreateKeyPair")
def create_key_pair(ctx, params):
    """A new pair (KeyType rsa, the default, or ed25519; KeyFormat pem): its private key is in
    this answer only. InvalidKeyPair.Duplicate, before any key is made, for a taken name."""
    name = _key_name(params)
    key_type = params.get("KeyType", "rsa")
    key_format = params.get("KeyFormat", "pem")
    if key_type not in keys.GENERATE_TYPES:
        raise invalid("KeyType %r is not offered: rsa or ed25519" % key_type)
    if key_format != "pem":
        raise invalid("KeyFormat %r is not offered: pem" % key_format)
    check_tag_specifications(params, "key-pair")
    with ctx.read() as txn:
        try:
            keypairs.check_free(txn, ctx.account, name)
        except EucaError as exc:
            raise _refusal(exc)
    try:
        private, public, fingerprint = keys.generate(key_type)
    except EucaError as exc:
        raise ApiError("InternalError", "the key pair could not be generated: %s" % exc.msg, status=500)
    made, tags = _record(ctx, name, params, created=(public, fingerprint, public.split()[0]))
    return {"keyName": made["name"], "keyFingerprint": made["fingerprint"], "keyMaterial": private,
            "keyPairId": made["id"], "tagSet": tags}


def _public_key_text(params):
    """PublicKeyMaterial is base64 in EC2's Query API (botocore encodes the blob); a client that
    sends the OpenSSH line itself (with its spaces, never valid base64) is read as it is."""
    raw = params.get("PublicKeyMaterial", required=True)
    try:
        decoded = base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return raw
    return decoded


@action("ImportKeyPair")
def import_key_pair(ctx, params):
    """Record a public key (OpenSSH, RFC 4716 or PEM, as EC2 takes them); InvalidKeyPair.Duplicate
    for a taken name, InvalidKey.Format for material that is no key."""
    name = _key_name(params)
    text = _public_key_text(params)
    try:
        keys.parse_public_key(text)
    except EucaError as exc:
        raise _refusal(exc)
    check_tag_specifications(params, "key-pair")
    with ctx.write() as txn:
        try:
            keypairs.check_free(txn, ctx.account, name)
            made = keypairs.ensure_keypair(txn, name, account=ctx.account, public_key=text)["keypair"]
        except EucaError as exc:
            raise _refusal(exc)
        tags = apply_tag_specifications(txn, ctx, params, "key-pair", [made["id"]])
    return {"keyName": made["name"], "keyFingerprint": made["fingerprint"], "keyPairId": made["id"], "tagSet": tags}


@action("DeleteKeyPair")
def delete_key_pair(ctx, params):
    """Delete the pair by KeyName (the caller's) or KeyPairId; one that does not exist is no error
    (EC2's behaviour). Instances launched with it keep their key."""
    name, pair_id = params.get("KeyName"), params.get("KeyPairId")
    if not name and not pair_id:
        raise missing("KeyName or KeyPairId")
    with ctx.write() as txn:
        if pair_id:
            row = txn.row("SELECT * FROM keypairs WHERE id = ?", pair_id)
            if row is not None and not (ctx.admin or row["account"] == ctx.account):
                row = None
        else:
            row = txn.row("SELECT * FROM keypairs WHERE account = ? AND name = ?", ctx.account, name)
        if row is None:
            return {"return": True}
        try:
            keypairs.ensure_keypair(txn, row["name"], state="absent", account=row["account"])
        except EucaError as exc:
            raise _refusal(exc)
        delete_tags_of(txn, [row["id"]])
    return {"return": True, "keyPairId": row["id"]}


DESCRIBE_FILTERS = {
    "key-pair-id": lambda k: k["keyPairId"],
    "key-name": lambda k: k["keyName"],
    "fingerprint": lambda k: k["keyFingerprint"],
    "key-type": lambda k: k["keyType"],
}


@action("DescribeKeyPairs")
def describe_key_pairs(ctx, params):
    """The caller's pairs (every account's for the admin); KeyName.N and KeyPairId.N must exist
    (InvalidKeyPair.NotFound), Filter.N as EC2's, IncludePublicKey adds the public key."""
    wanted_names = params.list("KeyName")
    wanted_ids = params.list("KeyPairId")
    include_public = params.bool("IncludePublicKey")
    filters = params.filters()
    with ctx.read() as txn:
        if ctx.admin:
            rows = txn.rows("SELECT * FROM keypairs ORDER BY account, name")
        else:
            rows = txn.rows("SELECT * FROM keypairs WHERE account = ? ORDER BY name", ctx.account)
        tags = tag_sets(txn, [r["id"] for r in rows])
    if wanted_names or wanted_ids:
        names_seen = set(r["name"] for r in rows)
        ids_seen = set(r["id"] for r in rows)
        for name in wanted_names:
            if name not in names_seen:
                raise ApiError(NOT_FOUND, "The key pair '%s' does not exist" % name)
        for pair_id in wanted_ids:
            if pair_id not in ids_seen:
                raise ApiError(NOT_FOUND, "The key pair '%s' does not exist" % pair_id)
        rows = [r for r in rows if r["name"] in wanted_names or r["id"] in wanted_ids]
    items = []
    for row in rows:
        items.append({
            "keyPairId": row["id"],
            "keyType": KEY_TYPES.get(row["key_type"], row["key_type"]),
            "tagSet": tags[row["id"]],
            "publicKey": row["public_key"] if include_public else None,
            "createTime": iso_time(row["created_at"]),
            "keyName": row["name"],
            "keyFingerprint": row["fingerprint"],
        })
    return {"keySet": query.apply_filters(items, filters, DESCRIBE_FILTERS)}
