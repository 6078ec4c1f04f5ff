# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Address arithmetic for the ledger and the data plane alike (netaddr): subnets, slices, pools, MACs.

Pure functions: no ledger access. Allocation order is always "lowest free first", so the
result of an allocation is a function of what is already allocated (reproducible plans).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import struct

from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError, Exhausted, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.model import names

try:
    import netaddr

    HAS_NETADDR = True
    NETADDR_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the host
    netaddr = None
    HAS_NETADDR = False
    NETADDR_IMPORT_ERROR = exc


NETADDR_MISSING = ("the Python library netaddr is missing on this host: install Debian's python3-netaddr "
                   "(the euca.cloud roles do; apt-get install python3-netaddr), or netaddr into the interpreter's virtualenv")


def require_netaddr():
    """Fail with the fix when netaddr is missing from the interpreter the module runs under."""
    if not HAS_NETADDR:
        raise EucaError(NETADDR_MISSING)


def parse_network(text, field):
    """An IPv4 network from CIDR text; the address must be the network's own (no host bits)."""
    require_netaddr()
    try:
        network = netaddr.IPNetwork(str(text))
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise InvalidInput("%s %r is not a valid CIDR (expected e.g. 10.0.0.0/16)" % (field, text))
    if network.version != 4 or "/" not in str(text):
        raise InvalidInput("%s %r is not an IPv4 CIDR (expected e.g. 10.0.0.0/16)" % (field, text))
    if network.ip != network.network:
        raise InvalidInput("%s %s has host bits set; did you mean %s?" % (field, text, network.cidr))
    return network


def parse_address(text, field):
    """One IPv4 address from text."""
    require_netaddr()
    try:
        address = netaddr.IPAddress(str(text).strip())
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise InvalidInput("%s %r is not an IPv4 address" % (field, text))
    if address.version != 4:
        raise InvalidInput("%s %r is not an IPv4 address" % (field, text))
    return address


def parse_pool(entries):
    """Sorted list of the addresses in a pool given as CIDRs, ranges ``a-b`` and single addresses."""
    return sorted(pool_set(entries))


def pool_set(entries):
    """The pool as a netaddr IPSet."""
    require_netaddr()
    if entries is None:
        return netaddr.IPSet()
    if isinstance(entries, str):
        entries = [entries]
    pool = netaddr.IPSet()
    for entry in entries:
        text = str(entry).strip()
        try:
            if "-" in text:
                first, last = (part.strip() for part in text.split("-", 1))
                part = netaddr.IPRange(first, last)
            elif "/" in text:
                part = parse_network(text, "public_ips entry")
            else:
                part = netaddr.IPNetwork(netaddr.IPAddress(text))
        except (netaddr.AddrFormatError, ValueError, TypeError):
            raise InvalidInput("public_ips entry %r is not an address, a CIDR or a range a-b" % (entry,))
        if part.version != 4:
            raise InvalidInput("public_ips entry %r is not IPv4" % (entry,))
        pool.add(part)
    return pool


def overlaps(a, b):
    """True when two networks share any address."""
    return a.first <= b.last and b.first <= a.last


def first_free_slice(network, size, taken):
    """The lowest ``size``-aligned slice of ``network`` that overlaps none of ``taken``."""
    require_netaddr()
    prefix = 32 - (size.bit_length() - 1)
    taken = sorted(taken, key=lambda n: n.first)
    for candidate in network.subnet(prefix):
        if not any(overlaps(candidate, t) for t in taken):
            return candidate
    raise Exhausted(
        "private_network %s has no free /%d slice left for a new security group (%d groups hold it); "
        "widen private_network or lower addresses_per_group" % (network, prefix, len(taken))
    )


def gateway(subnet):
    """The segment's gateway (the CC side): the first host address."""
    return netaddr.IPAddress(subnet.first + 1)


def _ipv4_int(text):
    # netaddr objects cost ~8 us each; a subnet of thousands is converted on every launch.
    return struct.unpack("!I", socket.inet_aton(str(text)))[0]


def ipv4_int(text):
    """A dotted-quad address as an integer; None for anything else (a record written by hand)."""
    try:
        if text.count(".") != 3:
            return None
        return struct.unpack("!I", socket.inet_aton(text))[0]
    except (AttributeError, TypeError, OSError, UnicodeError):
        return None


def ipv4_text(value):
    """The dotted quad of an integer address."""
    return socket.inet_ntoa(struct.pack("!I", value))


def first_free_host(subnet, taken):
    """Lowest free instance address: not the network, the gateway or the broadcast address."""
    require_netaddr()
    used = set(_ipv4_int(t) for t in taken)
    for value in range(subnet.first + 2, subnet.last):
        if value not in used:
            return netaddr.IPAddress(value)
    raise Exhausted(
        "subnet %s has no free address left (%d instances): terminate instances or use a group with room"
        % (subnet, len(used))
    )


def mac_for(ip):
    """The instance MAC derived from its private address, as Eucalyptus did (unique with it): the model's."""
    return names.mac_for_int(int(netaddr.IPAddress(ip)))


# Pools as sorted integer ranges, by their settings text: parsing a pool with netaddr costs a
# millisecond or more, and an allocation needs only its ranges.
_POOL_RANGES = {}


def pool_ranges(entries):
    """The pool as a sorted tuple of ``(first, last)`` integer ranges (merged), cached."""
    key = tuple(entries) if isinstance(entries, (list, tuple)) else entries
    try:
        return _POOL_RANGES[key]
    except (KeyError, TypeError):
        pass
    ranges = tuple((r.first, r.last) for r in pool_set(entries).iter_ipranges())
    try:
        if len(_POOL_RANGES) > 64:
            _POOL_RANGES.clear()
        _POOL_RANGES[key] = ranges
    except TypeError:  # an unhashable entry: nothing cached
        pass
    return ranges


def pool_size(ranges):
    """How many addresses the ranges of pool_ranges hold."""
    return sum(last - first + 1 for first, last in ranges)


def in_pool(ranges, value):
    """Whether the integer address ``value`` is in the ranges of pool_ranges."""
    return any(first <= value <= last for first, last in ranges)


def first_free_in_ranges(ranges, taken, what="public_ips"):
    """Lowest address of the pool's ranges not in ``taken`` (a set of integers), as text."""
    for first, last in ranges:
        for value in range(first, last + 1):
            if value not in taken:
                return ipv4_text(value)
    raise Exhausted(
        "%s pool is exhausted: all %d addresses are allocated; release addresses or add ranges to public_ips"
        % (what, pool_size(ranges))
    )


def first_free_in_pool(pool_addresses, taken, what="public_ips"):
    """Lowest address of a sorted pool not in ``taken`` (a set of strings)."""
    for address in pool_addresses:
        if str(address) not in taken:
            return address
    raise Exhausted(
        "%s pool is exhausted: all %d addresses are allocated; release addresses or add ranges to public_ips"
        % (what, len(pool_addresses))
    )
