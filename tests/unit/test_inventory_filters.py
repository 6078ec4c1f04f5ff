"""The filters that find the inventory host behind a ledger name (plugins/filter/inventory.py)."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.euca.cloud.plugins.filter.inventory import cluster_host, node_host

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
