"""What the CC's metadata service accepts (net/metadata.normalize): the ledger's vocabulary, and one bad
record left out by name while every other instance is served."""

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.net import metadata


def record(n, **more):
    base = {"id": "i-0000000%d" % n, "gateway": "10.1.0.1", "interface": "eubr-10", "private_ip": "10.1.0.%d" % (n + 1),
            "mac": "d0:0d:0a:01:00:%02x" % (n + 1), "image_id": "emi-00000001", "instance_type": "m1.small",
            "reservation_id": "r-00000001", "hostname": "i-0000000%d" % n, "availability_zone": "cluster_a",
            "region": "eucalyptus", "account": "a", "security_groups": ["web"]}
    base.update(more)
    return base


def test_a_key_pair_name_the_ledger_accepts_is_served():
    # EC2 (and the ledger) allow spaces in key pair names: the CC must not refuse one
    keyed = record(1, public_keys=[{"name": "my laptop (2024)", "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO x"}])
    (inst,), _ifaces, left = metadata.normalize([keyed])
    assert inst["public_keys"][0]["name"] == "my laptop (2024)" and left == []


def test_a_bad_record_is_left_out_by_name_and_the_rest_is_served():
    bad_mac = record(2, mac="ff:ff:ff:ff:ff:ff")
    twin = record(3, private_ip="10.1.0.2")  # record 1's address
    with pytest.raises(InvalidInput, match="i-00000002"):
        metadata.normalize([record(1), bad_mac, twin])
    served, ifaces, left = metadata.normalize([record(1), bad_mac, twin, record(4)], contain=True)
    assert [i["id"] for i in served] == ["i-00000001", "i-00000004"] and ifaces == ["eubr-10"]
    assert [e["item"] for e in left] == ["i-00000002", "i-00000003"]
    assert "unicast" in left[0]["reason"] and "both are 10.1.0.2" in left[1]["reason"]
