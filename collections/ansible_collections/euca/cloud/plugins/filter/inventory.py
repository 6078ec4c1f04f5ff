# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that find the inventory host behind a ledger name: a cluster's storage controller,
a node controller. The operation playbooks run on the CLC and delegate to these hosts."""

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


class FilterModule(object):
    def filters(self):
        return {"cluster_host": cluster_host, "node_host": node_host}
