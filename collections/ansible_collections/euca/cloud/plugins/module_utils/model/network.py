# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Network modes, segment ids and the names of a segment's links, defined once.

A security group owns a segment: an 802.1Q tag (vlan), a VXLAN network id (vxlan) or a
bridge alone (flat). Its bridge and uplink have the same names on every CC and NC, so any
host can be rebuilt from the ledger. No I/O here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.model import names

NETWORK_MODES = ("vlan", "vxlan", "flat")
VLAN_MAX = 4094
VNI_MAX = 16777215
#: the ids a segment of each mode may have (802.1Q tags 0 and 4095 are reserved)
SEGMENT_LIMITS = {"vlan": (1, VLAN_MAX), "vxlan": (1, VNI_MAX), "flat": (1, VLAN_MAX)}
BRIDGE_PREFIX = "eubr-"
UPLINK_PREFIX = "vxlan"
INTERCONNECT_PREFIX = "vxic"


def check_mode(mode, what="network_mode"):
    """``mode`` when it is a network mode, else InvalidInput."""
    if mode not in NETWORK_MODES:
        raise InvalidInput("%s must be one of %s, not %r" % (what, ", ".join(NETWORK_MODES), mode))
    return mode


def check_segment_id(mode, value, what="segment id"):
    """``value`` as a segment id of ``mode``, else InvalidInput naming the mode's range."""
    low, high = SEGMENT_LIMITS[check_mode(mode)]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput("%s %r is not a valid %s id (%d-%d)%s" % (
            what, value, mode, low, high, "; 802.1Q tags 0 and 4095 are reserved" if mode == "vlan" else ""))
    return value


def bridge_name(segment_id):
    """The bridge of a segment (``eubr-<id>``), the same on every CC and NC."""
    return "%s%d" % (BRIDGE_PREFIX, segment_id)


def vlan_uplink_name(trunk, segment_id):
    """The 802.1Q uplink of a segment on ``trunk`` (``eth1.10``); InvalidInput when too long."""
    name = "%s.%d" % (trunk, segment_id)
    if len(name) > names.IFNAMSIZ:
        raise InvalidInput("the uplink name %s is longer than %d characters; use a shorter trunk name"
                           % (name, names.IFNAMSIZ))
    return name


def vxlan_uplink_name(segment_id):
    """The VXLAN uplink of a segment (``vxlan<vni>``, at most 13 characters)."""
    return "%s%d" % (UPLINK_PREFIX, segment_id)


def interconnect_name(segment_id):
    """The CC's interconnect port of a segment (``vxic<vni>``, at most 12 characters)."""
    return "%s%d" % (INTERCONNECT_PREFIX, segment_id)
