# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cloud-wide settings kept in the ledger: network mode, address space, pools, scheduler.

Defaults follow Eucalyptus 1.6 (VNET_SUBNET 172.19.0.0/16, VNET_ADDRSPERNET 32). A change
that would strand something already allocated (a pool shrunk under an allocated EIP, a
segment range that no longer holds a group's segment) is refused with the objects named.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.model import addressing
from ansible_collections.euca.cloud.plugins.module_utils.model import network as model_network

SCHEDULERS = ("GREEDY", "ROUNDROBIN", "POWERSAVE")

DEFAULT_VM_TYPES = {
    "m1.small": {"cores": 1, "memory_mb": 128, "disk_gb": 2},
    "c1.medium": {"cores": 1, "memory_mb": 256, "disk_gb": 5},
    "m1.large": {"cores": 2, "memory_mb": 512, "disk_gb": 10},
    "m1.xlarge": {"cores": 2, "memory_mb": 1024, "disk_gb": 20},
    "c1.xlarge": {"cores": 4, "memory_mb": 2048, "disk_gb": 20},
}

DEFAULTS = {
    "network_mode": "vlan",
    "private_network": "172.19.0.0/16",
    "addresses_per_group": 32,
    "segment_range": [10, 4094],
    "public_ips": [],
    "scheduler": "ROUNDROBIN",
    "vm_types": DEFAULT_VM_TYPES,
}

# Internal keys the ledger keeps beside the operator's settings.
_INTERNAL = ("roundrobin_cursor",)


def load(txn):
    """The effective settings: stored values over the defaults."""
    found = dict((k, json.loads(v)) for k, v in ((r["key"], r["value"]) for r in txn.rows("SELECT key, value FROM settings")))
    merged = dict(DEFAULTS)
    merged.update(found)
    return merged


def public_settings(values):
    """Settings without the ledger's internal bookkeeping."""
    return dict((k, v) for k, v in values.items() if k not in _INTERNAL)


def store(txn, key, value):
    """Write one setting (internal bookkeeping included)."""
    encoded = json.dumps(value, sort_keys=True)
    if txn.row("SELECT key FROM settings WHERE key = ?", key) is None:
        txn.exec("INSERT INTO settings (key, value) VALUES (?, ?)", key, encoded)
    else:
        txn.exec("UPDATE settings SET value = ? WHERE key = ? AND value <> ?", encoded, key, encoded)


def validate(values):
    """Check a complete settings dict; raise InvalidInput naming the bad field."""
    mode = values["network_mode"]
    model_network.check_mode(mode)
    if values["scheduler"] not in SCHEDULERS:
        raise InvalidInput("scheduler must be one of %s, not %r" % (", ".join(SCHEDULERS), values["scheduler"]))
    network = addressing.parse_network(values["private_network"], "private_network")
    size = values["addresses_per_group"]
    if not isinstance(size, int) or size < 4 or size & (size - 1):
        raise InvalidInput("addresses_per_group must be a power of two of at least 4, not %r" % (size,))
    if size > network.size:
        raise InvalidInput(
            "addresses_per_group %d does not fit in private_network %s (%d addresses)" % (size, network, network.size)
        )
    low, high = _segment_range(values["segment_range"])
    limit_low, limit_high = model_network.SEGMENT_LIMITS[mode]
    if low < limit_low or high > limit_high:
        raise InvalidInput(
            "segment_range %d-%d is outside what %s mode carries (%d-%d)%s"
            % (low, high, mode, limit_low, limit_high, "; 802.1Q tags 0 and 4095 are reserved" if mode == "vlan" else "")
        )
    if addressing.pool_set(values["public_ips"]) & addressing.pool_set([str(network)]):
        raise InvalidInput("public_ips overlap private_network %s" % network)
    types = values["vm_types"]
    if not isinstance(types, dict) or not types:
        raise InvalidInput("vm_types must be a non-empty mapping of name to {cores, memory_mb, disk_gb}")
    for name, spec in types.items():
        for field in ("cores", "memory_mb", "disk_gb"):
            if not isinstance(spec, dict) or not isinstance(spec.get(field), int) or spec[field] <= 0:
                raise InvalidInput("vm_types.%s.%s must be a positive integer" % (name, field))


def _segment_range(value):
    try:
        low, high = int(value[0]), int(value[1])
    except (TypeError, ValueError, IndexError):
        raise InvalidInput("segment_range must be [first, last], not %r" % (value,))
    if low > high:
        raise InvalidInput("segment_range first %d is above last %d" % (low, high))
    return low, high


def segment_range(values):
    """(first, last) segment id as integers."""
    return _segment_range(values["segment_range"])


def check_against_ledger(txn, old, new):
    """Refuse a settings change that would strand an allocated object."""
    groups = txn.rows("SELECT name, segment_id, subnet FROM security_groups ORDER BY name")
    if groups and new["network_mode"] != old["network_mode"]:
        raise Conflict(
            "network_mode cannot change from %s to %s while security groups exist (%s): "
            "their segments are tagged for %s; delete the groups first"
            % (old["network_mode"], new["network_mode"], ", ".join(g["name"] for g in groups), old["network_mode"])
        )
    network = addressing.parse_network(new["private_network"], "private_network")
    low, high = segment_range(new)
    for group in groups:
        if addressing.parse_network(group["subnet"], "subnet") not in network:
            raise Conflict(
                "private_network %s does not contain subnet %s of security group %s"
                % (network, group["subnet"], group["name"])
            )
        if not low <= group["segment_id"] <= high:
            raise Conflict(
                "segment_range %d-%d does not contain segment %d of security group %s"
                % (low, high, group["segment_id"], group["name"])
            )
    pool = addressing.pool_set(new["public_ips"])
    stranded = [r["address"] for r in txn.rows("SELECT address FROM elastic_ips ORDER BY address") if r["address"] not in pool]
    if stranded:
        raise Conflict(
            "public_ips would no longer contain allocated elastic IPs %s; release them first" % ", ".join(stranded[:10])
        )
