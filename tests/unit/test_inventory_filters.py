"""The filters that find the inventory host behind a ledger name, and a host's VXLAN peers
(plugins/filter/inventory.py)."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.euca.cloud.plugins.filter.inventory import (cluster_host, node_host, vxlan_interconnect,
                                                                    vxlan_peers)

HOSTVARS = {
    "sc-a": {"euca_cluster": "cluster_a"},
    "sc-b": {"euca_cluster": "cluster_b"},
    "nc1": {},
    "host-7": {"euca_node_name": "nc2"},
}


def test_cluster_host_is_the_host_with_that_euca_cluster():
    assert cluster_host(["sc-a", "sc-b"], HOSTVARS, "cluster_b") == "sc-b"
    with pytest.raises(AnsibleFilterError, match="no host among \\['sc-a', 'sc-b'\\] with euca_cluster=cluster_c"):
        cluster_host(["sc-a", "sc-b"], HOSTVARS, "cluster_c")


def test_node_host_is_named_by_euca_node_name_or_its_inventory_name():
    assert node_host(["nc1", "host-7"], HOSTVARS, "nc1") == "nc1"
    assert node_host(["nc1", "host-7"], HOSTVARS, "nc2") == "host-7"
    # a host named like a node but renamed by euca_node_name is not that node
    with pytest.raises(AnsibleFilterError, match="for node host-7"):
        node_host(["nc1", "host-7"], HOSTVARS, "host-7")


# two clusters: a with a CC and two NCs, b with one host that is its CC and its NC, and an SC without a VTEP
CLOUD_VARS = {
    "cc-a": {"euca_cluster": "a", "euca_vxlan_local": "198.51.100.84"},
    "nc-a1": {"euca_cluster": "a", "euca_vxlan_local": "198.51.100.86"},
    "nc-a2": {"euca_cluster": "a", "euca_vxlan_local": "198.51.100.87"},
    "sc-a": {"euca_cluster": "a"},
    "aio-b": {"euca_cluster": "b", "euca_vxlan_local": "198.51.100.94"},
    "cc-c": {"euca_cluster": "c", "euca_vxlan_local": "198.51.100.95"},
}
CLOUD_GROUPS = {"cc": ["cc-a", "aio-b", "cc-c"], "nc": ["nc-a1", "nc-a2", "aio-b"], "sc": ["sc-a"]}


def test_vxlan_peers_are_the_rest_of_the_cluster_a_full_mesh():
    assert vxlan_peers("cc-a", CLOUD_VARS, CLOUD_GROUPS) == ["198.51.100.86", "198.51.100.87"]
    assert vxlan_peers("nc-a2", CLOUD_VARS, CLOUD_GROUPS) == ["198.51.100.84", "198.51.100.86"]
    # a host in both groups is one endpoint, and has no peer of its own cluster
    assert vxlan_peers("aio-b", CLOUD_VARS, CLOUD_GROUPS) == []


def test_vxlan_interconnect_is_every_other_clusters_cc_and_only_for_ccs():
    assert vxlan_interconnect("cc-a", CLOUD_VARS, CLOUD_GROUPS) == ["198.51.100.94", "198.51.100.95"]
    assert vxlan_interconnect("aio-b", CLOUD_VARS, CLOUD_GROUPS) == ["198.51.100.84", "198.51.100.95"]
    assert vxlan_interconnect("nc-a1", CLOUD_VARS, CLOUD_GROUPS) == []


def test_vxlan_filters_name_the_host_that_lacks_an_endpoint_or_a_cluster():
    hostvars = dict(CLOUD_VARS, **{"nc-a2": {"euca_cluster": "a"}})
    with pytest.raises(AnsibleFilterError, match="host nc-a2 of the inventory has no euca_vxlan_local"):
        vxlan_peers("cc-a", hostvars, CLOUD_GROUPS)
    with pytest.raises(AnsibleFilterError, match="host sc-a has no euca_cluster"):
        vxlan_peers("sc-a", dict(CLOUD_VARS, **{"sc-a": {}}), CLOUD_GROUPS)
