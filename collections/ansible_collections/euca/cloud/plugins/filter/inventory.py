# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that find the inventory host behind a ledger name (a cluster's storage controller, a node
controller), and that derive what one host must know of the others (its VXLAN peers) from the
inventory, so nothing of the kind is typed per host. The operation playbooks run on the CLC and
delegate to these hosts."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError


def cluster_host(hosts, hostvars, cluster):
    """The first of ``hosts`` whose ``euca_cluster`` is ``cluster``."""
    for host in hosts or []:
        if hostvars[host].get("euca_cluster") == cluster:
            return host
    raise AnsibleFilterError("the inventory has no host among %s with euca_cluster=%s" % (sorted(hosts or []), cluster))


def node_host(hosts, hostvars, node):
    """The one of ``hosts`` that is node ``node`` in the ledger (``euca_node_name``, else its inventory name)."""
    for host in hosts or []:
        if hostvars[host].get("euca_node_name", host) == node:
            return host
    raise AnsibleFilterError("the inventory has no host among %s for node %s (name the host after the node, or set "
                             "euca_node_name)" % (sorted(hosts or []), node))


def _vtep(hostvars, host):
    address = hostvars[host].get("euca_vxlan_local")
    if not address:
        raise AnsibleFilterError("host %s of the inventory has no euca_vxlan_local (its VXLAN endpoint: its address "
                                 "on the underlay network)" % host)
    return str(address)


def _cluster_members(groups, hostvars, cluster):
    hosts = set(groups.get("cc", [])) | set(groups.get("nc", []))
    return sorted(h for h in hosts if hostvars[h].get("euca_cluster") == cluster)


def vxlan_peers(host, hostvars, groups):
    """The VTEPs ``host`` (a CC or an NC) floods its segments to: every other CC and NC of its cluster.

    A cluster is a full mesh: a bridge never sends a frame back out of the port it came in by, so
    the CC cannot relay between two of its nodes through its one VXLAN port. Hosts that share this
    host's endpoint (one machine in both groups) are left out."""
    mine = hostvars[host].get("euca_cluster")
    if mine is None:
        raise AnsibleFilterError("host %s has no euca_cluster: put it in the group of its cluster" % host)
    own = _vtep(hostvars, host)
    return sorted(set(_vtep(hostvars, h) for h in _cluster_members(groups, hostvars, mine)) - set([own]))


def vxlan_interconnect(host, hostvars, groups):
    """The VTEPs of the other clusters' CCs, which a CC interconnects its segments with (Eucalyptus
    did this between CCs with vtun); empty for a host that is no CC."""
    if host not in groups.get("cc", []):
        return []
    mine = hostvars[host].get("euca_cluster")
    own = _vtep(hostvars, host)
    return sorted(set(_vtep(hostvars, h) for h in groups.get("cc", [])
                      if hostvars[h].get("euca_cluster") != mine) - set([own]))


class FilterModule(object):
    def filters(self):
        return {"cluster_host": cluster_host, "node_host": node_host,
                "vxlan_peers": vxlan_peers, "vxlan_interconnect": vxlan_interconnect}
