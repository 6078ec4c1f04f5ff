# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cloud's names and identifiers, defined once (ARCHITECTURE §3, "one vocabulary").

The ledger checks them when a record is written and the data plane when it renders, with
these same functions and messages: whatever a host would refuse, the ledger refuses first.
No I/O here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput

# Every pattern ends in \Z: ``$`` would also match before a trailing newline ("web\n").

# ------------------------------------------------------------------ names
#: security groups, instances' names, keypairs, clusters, nodes, images: a short printable label
#: that is safe in file names, nft comments and ids.
NAME_MAX = 128
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,%d}\Z" % (NAME_MAX - 1))
NAME_RULE = "use 1-%d letters, digits, '.', '_', ':' or '-', starting with a letter or digit" % NAME_MAX


def is_name(value):
    """True when ``value`` is a valid name."""
    return isinstance(value, str) and bool(NAME_RE.match(value))


def check_name(what, name):
    """``name`` when it is a valid name of ``what`` (e.g. "security group"), else InvalidInput."""
    if not is_name(name):
        raise InvalidInput("%s name %r is not valid: %s" % (what, name, NAME_RULE))
    return name


# ------------------------------------------------------------------ ids
#: kind -> (prefix, ledger table that holds them or None)
ID_KINDS = {
    "instance": ("i", "instances"),
    "reservation": ("r", None),
    "machine": ("emi", "images"),
    "kernel": ("eki", "images"),
    "ramdisk": ("eri", "images"),
    "volume": ("vol", "volumes"),
    "snapshot": ("snap", "snapshots"),
    "key": ("key", "keypairs"),
}
ID_DIGITS = 8
ID_RE = re.compile(r"^(%s)-[0-9a-f]{%d}\Z" % ("|".join(sorted(p for p, _t in ID_KINDS.values())), ID_DIGITS))
_KIND_RE = dict((kind, re.compile(r"^%s-[0-9a-f]{%d}\Z" % (prefix, ID_DIGITS))) for kind, (prefix, _t) in ID_KINDS.items())
#: image ids of every image kind
IMAGE_KINDS = ("machine", "kernel", "ramdisk")


def id_pattern(*kinds):
    """A compiled regex matching ids of any of ``kinds``."""
    prefixes = sorted(ID_KINDS[k][0] for k in kinds)
    return re.compile(r"^(%s)-[0-9a-f]{%d}\Z" % ("|".join(prefixes), ID_DIGITS))


def format_id(kind, number):
    """The id of ``kind`` for a 32-bit ``number`` (``i-0000002a``)."""
    return "%s-%0*x" % (ID_KINDS[kind][0], ID_DIGITS, number)


def looks_like(kind, value):
    """True when ``value`` has the shape of an id of ``kind`` (e.g. ``vol-0a1b2c3d``)."""
    return isinstance(value, str) and bool(_KIND_RE[kind].match(value))


def check_id(kind, value, what=None):
    """``value`` when it is an id of ``kind``, else InvalidInput with an example."""
    if not looks_like(kind, value):
        raise InvalidInput("%s %r is not a%s %s id (like %s)" % (
            what or kind, value, "n" if kind[0] in "aeiou" else "", kind, format_id(kind, 0x1a2b3c4d)))
    return value


# ------------------------------------------------------------------ MAC addresses
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")
_MAC_ANY = re.compile(r"^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}\Z")
#: the locally administered, unicast prefix of instance MACs (Eucalyptus's d0:0d); the last four
#: octets are the instance's private IPv4 address, so a MAC names its address on every host.
MAC_PREFIX = (0xD0, 0x0D)


def normalize_mac(value, what="mac"):
    """A MAC in canonical form (lower case, ':'), from ':' or '-' separated text; InvalidInput otherwise."""
    if not isinstance(value, str) or not _MAC_ANY.match(value.strip()):
        raise InvalidInput("%s %r is not a MAC address (expected e.g. d0:0d:0a:80:00:02)" % (what, value))
    return value.strip().lower().replace("-", ":")


def is_mac(value):
    """True when ``value`` is a canonical MAC (lower case, ':' separated)."""
    return isinstance(value, str) and bool(MAC_RE.match(value))


def mac_for_int(address):
    """The instance MAC for the IPv4 address given as an integer."""
    octets = list(MAC_PREFIX) + [(address >> shift) & 0xFF for shift in (24, 16, 8, 0)]
    return ":".join("%02x" % o for o in octets)


# ------------------------------------------------------------------ interfaces
#: Linux's IFNAMSIZ less the terminating NUL
IFNAMSIZ = 15
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,%d}\Z" % IFNAMSIZ)


def is_ifname(value):
    """True when the kernel accepts ``value`` as an interface name (and it is shell- and nft-safe)."""
    return isinstance(value, str) and bool(_IFNAME_RE.match(value)) and value not in (".", "..")


def check_ifname(value, what):
    """``value`` as an interface name, else InvalidInput naming ``what``."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else value
    if not is_ifname(text):
        raise InvalidInput(
            "%s %r is not a usable interface name (1-%d characters: letters, digits, '_', '-', '.')"
            % (what, value, IFNAMSIZ))
    return text


def check_unicast_mac(value, what="MAC"):
    """An instance NIC's MAC, canonical; InvalidInput for a malformed or multicast one."""
    if not isinstance(value, str) or not MAC_RE.match(value.lower()):
        raise InvalidInput("%r is not a MAC address (six colon-separated hex pairs, e.g. d0:0d:0a:80:00:02)" % (value,))
    value = value.lower()
    if int(value[:2], 16) & 1:
        raise InvalidInput("%s %s is a multicast address; an instance NIC needs a unicast one" % (what, value))
    return value


# ------------------------------------------------------------------ block devices
#: vda is an instance's root disk and vdz its NoCloud seed; volumes take the rest
ROOT_DEVICE, SEED_DEVICE = "vda", "vdz"
VOLUME_DEVICES = ["/dev/vd%s" % letter for letter in "bcdefghijklmnopqrstuvwxy"]
_DEVICE_RE = re.compile(r"^(/dev/)?(vd[b-y])\Z")


def device_target(device):
    """``/dev/vdc`` or ``vdc`` as libvirt's target name ``vdc``; InvalidInput for any other name."""
    match = _DEVICE_RE.match(str(device or ""))
    if not match:
        raise InvalidInput("device %r must be one of /dev/vdb../dev/vdy (vda is the root disk, vdz the seed)"
                           % (device,))
    return match.group(2)


def check_device(device):
    """A volume's device name in the ledger's form (``/dev/vdc``); InvalidInput otherwise."""
    return "/dev/" + device_target(device)
