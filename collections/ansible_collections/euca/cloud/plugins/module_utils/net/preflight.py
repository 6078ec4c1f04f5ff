# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Before a cloud is deployed on a host: do its private and public ranges collide with the
host's own routes? (A private_network that overlaps the host's LAN cuts the host off once the
CC's gateways come up.) Routes through the cloud's own devices are not collisions."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.model.addressing import parse_network
from ansible_collections.euca.cloud.plugins.module_utils.process import run

OWN_PREFIXES = ("eubr-",)


def host_routes(namespace=None):
    """The IPv4 routes of every table (``ip -j route show table all``), as dicts."""
    _rc, out, _err = run(["ip", "-4", "-j", "route", "show", "table", "all"], namespace=namespace)
    return json.loads(out or "[]")


def _route_network(route):
    dst = route.get("dst")
    if dst in (None, "default"):
        return None
    if route.get("type") in ("broadcast", "multicast"):
        return None
    return parse_network(dst if "/" in dst else dst + "/32", "route")


def collisions(networks, routes, ignore_devices=()):
    """``[(name, cidr, route)]`` for each range that overlaps a route not through our devices."""
    found = []
    for name, cidrs in sorted(networks.items()):
        for cidr in cidrs if isinstance(cidrs, list) else [cidrs]:
            want = parse_network(cidr, name)
            for route in routes:
                dev = route.get("dev") or ""
                if dev in ignore_devices or dev.startswith(OWN_PREFIXES) or dev == "lo":
                    continue
                have = _route_network(route)
                if have is not None and want.first <= have.last and have.first <= want.last:
                    found.append((name, str(want), route))
    return found


def describe(route):
    parts = [route.get("dst", "?")]
    for key in ("dev", "proto", "table"):
        if route.get(key):
            parts.append("%s %s" % (key, route[key]))
    return " ".join(parts)


def check(networks, namespace=None, ignore_devices=()):
    """The module's result; InvalidInput naming every collision."""
    if not networks:
        raise InvalidInput("networks is empty: give the cloud's ranges, e.g. private_network and public_ips")
    routes = host_routes(namespace)
    found = collisions(networks, routes, ignore_devices)
    if found:
        raise InvalidInput("the cloud's ranges collide with this host's routes%s: %s; choose other ranges (or, for a "
                           "device that belongs to the cloud, list it in ignore_devices)" % (
                               " in namespace %s" % namespace if namespace else "",
                               "; ".join("%s %s overlaps %s" % (n, c, describe(r)) for n, c, r in found)),
                           collisions=[{"name": n, "cidr": c, "route": describe(r)} for n, c, r in found])
    return {"changed": False, "routes_checked": len(routes), "collisions": []}
