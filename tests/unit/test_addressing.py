"""Address math: parsing, slices, hosts, pools, MACs."""

import netaddr
import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import Exhausted, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.model import addressing


@pytest.mark.parametrize("text", ["10.0.0.0/33", "10.0.0.300/24", "not-a-cidr", "10.0.0.0", "2001:db8::/64", ""])
def test_parse_network_rejects_malformed(text):
    with pytest.raises(InvalidInput):
        addressing.parse_network(text, "subnet")


def test_parse_network_names_the_fix_for_host_bits():
    with pytest.raises(InvalidInput, match=r"host bits set; did you mean 10\.1\.0\.0/16"):
        addressing.parse_network("10.1.2.3/16", "subnet")


def test_pool_accepts_cidrs_ranges_and_single_addresses():
    pool = addressing.parse_pool(["203.0.113.8/30", "198.51.100.5-198.51.100.7", "203.0.113.100"])
    assert [str(a) for a in pool] == [
        "198.51.100.5", "198.51.100.6", "198.51.100.7",
        "203.0.113.8", "203.0.113.9", "203.0.113.10", "203.0.113.11", "203.0.113.100",
    ]


@pytest.mark.parametrize("entry", ["203.0.113.1-banana", "203.0.113.0/40", "2001:db8::1"])
def test_pool_rejects_bad_entries(entry):
    with pytest.raises(InvalidInput, match="public_ips entry"):
        addressing.pool_set([entry])


def test_first_free_slice_skips_every_overlap():
    network = netaddr.IPNetwork("10.0.0.0/24")
    taken = [netaddr.IPNetwork("10.0.0.0/27"), netaddr.IPNetwork("10.0.0.40/29")]
    # 10.0.0.32/27 overlaps the /29 inside it, so the next free /27 is .64
    assert str(addressing.first_free_slice(network, 32, taken)) == "10.0.0.64/27"


def test_first_free_slice_exhausted():
    network = netaddr.IPNetwork("10.0.0.0/26")
    taken = [netaddr.IPNetwork("10.0.0.0/27"), netaddr.IPNetwork("10.0.0.32/27")]
    with pytest.raises(Exhausted, match="no free /27 slice"):
        addressing.first_free_slice(network, 32, taken)


def test_hosts_skip_network_gateway_and_broadcast():
    subnet = netaddr.IPNetwork("10.0.0.0/29")
    assert str(addressing.gateway(subnet)) == "10.0.0.1"
    taken = set()
    got = []
    for _ in range(5):
        address = addressing.first_free_host(subnet, taken)
        taken.add(str(address))
        got.append(str(address))
    assert got == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    with pytest.raises(Exhausted, match="subnet 10.0.0.0/29 has no free address"):
        addressing.first_free_host(subnet, taken)


def test_freed_host_is_reused_first():
    subnet = netaddr.IPNetwork("10.0.0.0/28")
    assert str(addressing.first_free_host(subnet, {"10.0.0.2", "10.0.0.4"})) == "10.0.0.3"


def test_mac_is_derived_from_the_address():
    assert addressing.mac_for("172.19.0.2") == "d0:0d:ac:13:00:02"
    assert addressing.mac_for("10.255.1.254") == "d0:0d:0a:ff:01:fe"


def test_pool_exhaustion_message():
    pool = addressing.parse_pool(["203.0.113.1-203.0.113.2"])
    assert str(addressing.first_free_in_pool(pool, {"203.0.113.1"})) == "203.0.113.2"
    with pytest.raises(Exhausted, match="all 2 addresses are allocated"):
        addressing.first_free_in_pool(pool, {"203.0.113.1", "203.0.113.2"})
