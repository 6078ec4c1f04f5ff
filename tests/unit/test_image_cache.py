"""Pure parts of the node image cache: sizes, ids, checksums, the LRU choice."""

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.compute import image_cache
from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput


@pytest.mark.parametrize("value,expected", [(1000, 1000), ("20GiB", 20 << 30), ("512M", 512 << 20), ("1.5 KiB", 1536),
                                            ("500MB", 500 * 1000 ** 2), ("7", 7)])
def test_sizes(value, expected):
    assert image_cache.parse_size(value) == expected


@pytest.mark.parametrize("value", ["", "12 parsecs", "-5", "GiB"])
def test_bad_sizes(value):
    with pytest.raises(InvalidInput):
        image_cache.parse_size(value)


def test_ids_and_checksums():
    assert image_cache.check_id("eki-0000abcd") == "eki-0000abcd"
    for bad in ("i-0000abcd", "emi-xyz", "../etc", None):
        with pytest.raises(InvalidInput):
            image_cache.check_id(bad)
    assert image_cache.normal_checksum("A" * 64) == "sha256:" + "a" * 64
    with pytest.raises(InvalidInput):
        image_cache.normal_checksum("md5:abc")


def entry(image_id, size, used, pins=()):
    return {"id": image_id, "size_bytes": size, "last_used": used, "pins": list(pins)}


def test_lru_evicts_oldest_unpinned_first_until_it_fits():
    entries = [entry("emi-00000001", 4, 10), entry("emi-00000002", 4, 20), entry("emi-00000003", 4, 30)]
    assert image_cache.lru_victims(entries, 12) == []
    assert image_cache.lru_victims(entries, 8) == ["emi-00000001"]
    assert image_cache.lru_victims(entries, 0) == ["emi-00000001", "emi-00000002", "emi-00000003"]


def test_lru_skips_pinned_and_kept_images():
    entries = [entry("emi-00000001", 4, 10, pins=["i-0a1b2c3d"]), entry("emi-00000002", 4, 20),
               entry("emi-00000003", 4, 30)]
    assert image_cache.lru_victims(entries, 4) == ["emi-00000002", "emi-00000003"]
    assert image_cache.lru_victims(entries, 4, keep={"emi-00000003"}) == ["emi-00000002"]
