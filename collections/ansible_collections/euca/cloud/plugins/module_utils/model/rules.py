# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Security-group ingress rules with EC2's semantics, defined once.

A rule is ``{protocol, from_port, to_port, cidr | source_group}``:

- ``tcp``/``udp``: a port range ``from_port``-``to_port`` within 1-65535 (``to_port`` defaults
  to ``from_port``);
- ``icmp``: ``from_port`` is the ICMP type and ``to_port`` the code, each 0-255 or -1 for all
  (a code needs a type: type -1 means every type and every code);
- ``all`` (or ``-1``): every protocol and port; its ports are -1;
- protocol numbers are accepted for the named ones (6 tcp, 17 udp, 1 icmp);
- the source is exactly one of an IPv4 ``cidr`` (no host bits) or a ``source_group`` name.

``ports`` (text) may stand for ``from_port``/``to_port``: ``80``, ``8000-8080``; for icmp
``TYPE`` or ``TYPE:CODE`` (``-1`` for all), as euca-authorize's ``-t type:code``.

The ledger normalizes a rule with :func:`normalize_rule` before it writes it, and the CC's
filter normalizes what it renders with the same function, so a rule the filter would refuse
never reaches the ledger. No I/O here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.model import addressing
from ansible_collections.euca.cloud.plugins.module_utils.model import names

PROTOCOLS = ("tcp", "udp", "icmp", "all")
#: IANA protocol numbers EC2 accepts for the named protocols
PROTOCOL_NUMBERS = {"6": "tcp", "17": "udp", "1": "icmp", "-1": "all"}
PORT_MIN, PORT_MAX = 1, 65535
ICMP_MAX = 255
ANY = -1
KEYS = ("protocol", "from_port", "to_port", "cidr", "source_group")
_RULE_FIELDS = set(KEYS) | set(["ports"])
_PORTS = re.compile(r"^\s*([0-9]+)\s*(?:-\s*([0-9]+)\s*)?$")
_ICMP = re.compile(r"^\s*(-1|[0-9]+)\s*(?::\s*(-1|[0-9]+)\s*)?$")


def _integer(value, what):
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidInput("%s must be a number, not %r" % (what, value))
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.match(r"^-?[0-9]+$", text):
        raise InvalidInput("%s %r is not a number" % (what, value))
    return int(text)


def check_protocol(value, where="rule"):
    """The protocol's name (``tcp``, ``udp``, ``icmp`` or ``all``) from a name or number."""
    text = "tcp" if value is None or value == "" else str(value).strip().lower()
    text = PROTOCOL_NUMBERS.get(text, text)
    if text not in PROTOCOLS:
        raise InvalidInput("%s: protocol must be one of %s (or -1, 6, 17, 1), not %r"
                           % (where, ", ".join(PROTOCOLS), value))
    return text


def parse_ports(protocol, text, where="rule"):
    """``(from_port, to_port)`` from the text form (``80``, ``8000-8080``; icmp ``TYPE[:CODE]``)."""
    protocol = check_protocol(protocol, where)
    spec = str(text).strip()
    if protocol == "all":
        if spec not in ("", "-1"):
            raise InvalidInput("%s: protocol all covers every port; leave ports out (not %r)" % (where, text))
        return ANY, ANY
    if protocol == "icmp":
        found = _ICMP.match(spec)
        if not found:
            raise InvalidInput("%s: icmp takes TYPE or TYPE:CODE (each 0-255, or -1 for all), e.g. 8 or 3:4 or -1; "
                               "not %r" % (where, text))
        return int(found.group(1)), int(found.group(2)) if found.group(2) is not None else ANY
    found = _PORTS.match(spec)
    if not found:
        raise InvalidInput("%s: %s ports are a port or a range, e.g. 22 or 8000-8080 (%d-%d); not %r"
                           % (where, protocol, PORT_MIN, PORT_MAX, text))
    low = int(found.group(1))
    return low, int(found.group(2)) if found.group(2) is not None else low


def where_of(group, protocol=None):
    """How messages name a rule: ``group web tcp rule``."""
    return "group %s %srule" % (group, "%s " % protocol if protocol else "")


def normalize_rule(rule, group="?"):
    """One ingress rule in canonical form ``{protocol, from_port, to_port, cidr, source_group}``
    (absent source: None); InvalidInput naming the group, the rule and the fix otherwise."""
    if not isinstance(rule, dict):
        raise InvalidInput("%s: a rule must be a dict (protocol, from_port, to_port or ports, cidr or source_group), "
                           "not %r" % (where_of(group), rule))
    unknown = sorted(k for k in rule if k not in _RULE_FIELDS and rule[k] is not None)
    if unknown:
        raise InvalidInput("%s: unknown field(s) %s; a rule has %s"
                           % (where_of(group), ", ".join(unknown), ", ".join(sorted(_RULE_FIELDS))))
    protocol = check_protocol(rule.get("protocol"), where_of(group))
    where = where_of(group, protocol)
    low = _integer(rule.get("from_port"), where + " from_port")
    high = _integer(rule.get("to_port"), where + " to_port")
    if rule.get("ports") not in (None, ""):
        if low is not None or high is not None:
            raise InvalidInput("%s: give ports or from_port/to_port, not both" % where)
        low, high = parse_ports(protocol, rule["ports"], where)
    if protocol in ("tcp", "udp"):
        if low is None:
            raise InvalidInput("%s needs from_port (and to_port for a range), %d-%d" % (where, PORT_MIN, PORT_MAX))
        high = low if high is None else high
        for field, value in (("from_port", low), ("to_port", high)):
            if not PORT_MIN <= value <= PORT_MAX:
                raise InvalidInput("%s %s %d is outside %d-%d" % (where, field, value, PORT_MIN, PORT_MAX))
        if low > high:
            raise InvalidInput("%s: from_port %d is above to_port %d" % (where, low, high))
    elif protocol == "icmp":
        low = ANY if low is None else low
        high = ANY if high is None else high
        for field, value in (("type (from_port)", low), ("code (to_port)", high)):
            if not ANY <= value <= ICMP_MAX:
                raise InvalidInput("%s %s %d is outside 0-%d (or -1 for all)" % (where, field, value, ICMP_MAX))
        if low == ANY and high != ANY:
            raise InvalidInput("%s: an ICMP code (to_port %d) needs a type (from_port); -1 means every type "
                               "and every code" % (where, high))
    else:
        for value in (low, high):
            if value not in (None, ANY):
                raise InvalidInput("%s: protocol all covers every port; leave the ports out (not %d)" % (where, value))
        low = high = ANY
    cidr = rule.get("cidr") or None
    source = rule.get("source_group") or None
    if bool(cidr) == bool(source):
        raise InvalidInput("%s needs exactly one of cidr or source_group" % where)
    if cidr:
        cidr = str(addressing.parse_network(cidr, where + " cidr"))
    else:
        source = names.check_name("%s source_group: security group" % where, source)
    return {"protocol": protocol, "from_port": low, "to_port": high, "cidr": cidr, "source_group": source}


def key(rule):
    """A rule's identity (two rules with the same key are the same rule)."""
    return tuple(rule.get(k) if rule.get(k) is not None else "" for k in KEYS)


def text(rule):
    """A rule's short form for tables: ``tcp:22``, ``tcp:8000-8080``, ``icmp:8`` (type 8, any code),
    ``icmp:3:4``, ``icmp:all``, ``all``; then ``<-`` and the source."""
    protocol, low, high = rule["protocol"], rule["from_port"], rule["to_port"]
    if protocol == "all":
        ports = ""
    elif protocol == "icmp":
        ports = ":all" if low == ANY else (":%d" % low if high == ANY else ":%d:%d" % (low, high))
    else:
        ports = ":%d" % low if low == high else ":%d-%d" % (low, high)
    return "%s%s<-%s" % (protocol, ports, rule.get("cidr") or rule.get("source_group"))
