"""Integer address helpers the allocators use: conversions, pools as ranges."""

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import Exhausted
from ansible_collections.euca.cloud.plugins.module_utils.model import addressing


@pytest.mark.parametrize("text,value", [("10.0.0.1", 0x0A000001), ("255.255.255.255", 0xFFFFFFFF), ("0.0.0.0", 0)])
def test_ipv4_int_and_back(text, value):
    assert addressing.ipv4_int(text) == value
    assert addressing.ipv4_text(value) == text


@pytest.mark.parametrize("junk", ["", "junk", "10.0.0", "10.0.0.256", "10.0.0.1.2", "2001:db8::1", None, 42])
def test_ipv4_int_is_none_for_anything_else(junk):
    assert addressing.ipv4_int(junk) is None


def test_pool_ranges_merge_sort_and_match_the_pool():
    entries = ["203.0.113.8/30", "198.51.100.5-198.51.100.7", "203.0.113.100", "203.0.113.12"]
    ranges = addressing.pool_ranges(entries)
    assert ranges == ((addressing.ipv4_int("198.51.100.5"), addressing.ipv4_int("198.51.100.7")),
                      (addressing.ipv4_int("203.0.113.8"), addressing.ipv4_int("203.0.113.12")),
                      (addressing.ipv4_int("203.0.113.100"), addressing.ipv4_int("203.0.113.100")))
    assert addressing.pool_size(ranges) == len(addressing.parse_pool(entries))
    # the same answer from the cache, and for a list built anew
    assert addressing.pool_ranges(list(entries)) is ranges
    assert addressing.in_pool(ranges, addressing.ipv4_int("203.0.113.11"))
    assert not addressing.in_pool(ranges, addressing.ipv4_int("203.0.113.13"))


def test_first_free_in_ranges_is_the_lowest_free_and_says_when_the_pool_is_full():
    ranges = addressing.pool_ranges(["203.0.113.1-203.0.113.2", "198.51.100.9"])
    taken = set([addressing.ipv4_int("198.51.100.9")])
    assert addressing.first_free_in_ranges(ranges, taken) == "203.0.113.1"
    taken.add(addressing.ipv4_int("203.0.113.1"))
    assert addressing.first_free_in_ranges(ranges, taken) == "203.0.113.2"
    taken.add(addressing.ipv4_int("203.0.113.2"))
    with pytest.raises(Exhausted, match="public_ips pool is exhausted: all 3 addresses are allocated"):
        addressing.first_free_in_ranges(ranges, taken)
