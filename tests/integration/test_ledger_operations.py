"""The ledger's operations against both backends: allocations, rules and refusals.

Every refusal is checked to leave the ledger exactly as it was (same generation, same
rows): a failure half-way must leave nothing half-applied.
"""

import time

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import (
    Conflict, Exhausted, InvalidInput, LedgerUnavailable, NotFound,
)
from ansible_collections.euca.cloud.plugins.module_utils.ledger import (
    addresses, cloud, db, groups, images, instances, schema, slices, volumes,
)

CHECKSUM = "ab" * 32


@pytest.fixture
def ledger(ledger_url):
    handle = db.Ledger(ledger_url, timeout=10)
    yield handle
    handle.close()


@pytest.fixture
def seeded(ledger):
    """A cloud with a pool, one cluster of two nodes, an image and a group."""
    with ledger.write() as txn:
        cloud.ensure_settings(txn, {"public_ips": ["203.0.113.10-203.0.113.12"], "private_network": "10.20.0.0/16",
                                    "addresses_per_group": 16})
        cloud.ensure_cluster(txn, "cluster_a")
        cloud.ensure_node(txn, "nc1", "cluster_a", 2, 512, 20)
        cloud.ensure_node(txn, "nc2", "cluster_a", 2, 512, 20)
        images.ensure_image(txn, "tiny", checksum=CHECKSUM, size_bytes=1024)
        groups.ensure_group(txn, "web")
    return ledger


def snapshot(ledger):
    with ledger.read() as txn:
        return slices.read_slice(txn, "cloud", include_terminated=True)


def refused(ledger, error, match, operation, *args, **kwargs):
    """Run ``operation`` in a write transaction; it must raise and change nothing."""
    before = snapshot(ledger)
    with pytest.raises(error, match=match):
        with ledger.write() as txn:
            operation(txn, *args, **kwargs)
    assert snapshot(ledger) == before


def test_migrations_are_recorded_and_reopening_is_a_noop(ledger_url):
    with db.Ledger(ledger_url) as first:
        with first.read() as txn:
            generation = txn.current_generation()
            assert txn.value("SELECT MAX(version) FROM schema_migrations") == schema.LATEST == 6
    with db.Ledger(ledger_url) as again:
        with again.read() as txn:
            assert txn.current_generation() == generation


def test_generation_advances_only_on_change(seeded):
    start = snapshot(seeded)["generation"]
    with seeded.write() as txn:
        assert not groups.ensure_group(txn, "web")["changed"]
    assert snapshot(seeded)["generation"] == start
    with seeded.write() as txn:
        groups.ensure_group(txn, "db")
    assert snapshot(seeded)["generation"] == start + 1


def test_dry_run_changes_nothing(seeded):
    before = snapshot(seeded)
    with seeded.write(dry_run=True) as txn:
        out = instances.ensure_instances(txn, name="web", group="web", image="tiny", count=2)
    assert out["changed"] and len(out["launched"]) == 2
    assert snapshot(seeded) == before


def test_groups_get_distinct_segments_and_slices(seeded):
    with seeded.write() as txn:
        db_group = groups.ensure_group(txn, "db")["group"]
        app = groups.ensure_group(txn, "app", segment_id=100, subnet="10.20.1.0/24")["group"]
    web = snapshot(seeded)["security_groups"][-1]
    assert web["name"] == "web" and web["segment_id"] == 10 and web["subnet"] == "10.20.0.0/28"
    assert db_group["segment_id"] == 11 and db_group["subnet"] == "10.20.0.16/28" and db_group["gateway"] == "10.20.0.17"
    assert app["segment_id"] == 100 and app["subnet"] == "10.20.1.0/24"


@pytest.mark.parametrize("kwargs,error,match", [
    ({"subnet": "10.20.0.8/29"}, Conflict, "overlaps subnet 10.20.0.0/28 of security group web"),
    ({"subnet": "10.20.0.0/30"}, Conflict, "overlaps"),
    ({"subnet": "10.21.0.0/24"}, InvalidInput, "outside the cloud's private_network"),
    ({"subnet": "10.20.0.0/33"}, InvalidInput, "not a valid CIDR"),
    ({"subnet": "10.20.5.7/24"}, InvalidInput, "host bits set"),
    ({"segment_id": 0}, InvalidInput, "tags 0 and 4095 are reserved"),
    ({"segment_id": 4095}, InvalidInput, "tags 0 and 4095 are reserved"),
    ({"segment_id": 10}, Conflict, "segment_id 10 already belongs to security group web"),
    ({"rules": [{"protocol": "tcp", "from_port": 22, "source_group": "nope"}]}, NotFound, "unknown security group 'nope'"),
    ({"rules": [{"protocol": "tcp", "from_port": 70000, "cidr": "0.0.0.0/0"}]}, InvalidInput, "from_port 70000 is outside 1-65535"),
    ({"rules": [{"protocol": "tcp", "from_port": 22, "cidr": "0.0.0.0/0", "source_group": "web"}]}, InvalidInput, "exactly one"),
])
def test_bad_groups_are_refused_whole(seeded, kwargs, error, match):
    refused(seeded, error, match, groups.ensure_group, "bad", **kwargs)


def test_rules_merge_and_purge(seeded):
    ssh = {"protocol": "tcp", "from_port": 22, "cidr": "198.51.100.0/24"}
    web = {"protocol": "tcp", "from_port": 80, "to_port": 81, "cidr": "0.0.0.0/0"}
    with seeded.write() as txn:
        assert groups.ensure_group(txn, "web", rules=[ssh, web])["changed"]
    with seeded.write() as txn:
        assert not groups.ensure_group(txn, "web", rules=[web, ssh])["changed"]
    with seeded.write() as txn:
        out = groups.ensure_group(txn, "web", rules=[web], purge_rules=False)
    assert not out["changed"] and len(out["group"]["rules"]) == 2
    with seeded.write() as txn:
        out = groups.ensure_group(txn, "web", rules=[web])
    assert out["changed"] and out["group"]["rules"] == [{"protocol": "tcp", "from_port": 80, "to_port": 81, "cidr": "0.0.0.0/0"}]


def test_vlan_range_settings_are_checked(seeded):
    refused(seeded, InvalidInput, "outside what vlan mode carries", cloud.ensure_settings, {"segment_range": [0, 100]})
    refused(seeded, InvalidInput, "outside what vlan mode carries", cloud.ensure_settings, {"segment_range": [10, 4095]})
    refused(seeded, Conflict, "does not contain segment 10 of security group web",
            cloud.ensure_settings, {"segment_range": [20, 30]})
    refused(seeded, Conflict, "network_mode cannot change", cloud.ensure_settings, {"network_mode": "vxlan"})
    refused(seeded, InvalidInput, "power of two", cloud.ensure_settings, {"addresses_per_group": 24})
    refused(seeded, InvalidInput, "overlap private_network", cloud.ensure_settings, {"public_ips": ["10.20.0.5"]})


def test_instances_launch_with_unique_addresses_and_placement(seeded):
    with seeded.write() as txn:
        out = instances.ensure_instances(txn, name="web", group="web", image="tiny", count=4)
    got = out["instances"]
    assert [i["private_ip"] for i in got] == ["10.20.0.2", "10.20.0.3", "10.20.0.4", "10.20.0.5"]
    assert sorted(i["node"] for i in got) == ["nc1", "nc1", "nc2", "nc2"]
    assert len(set(i["mac"] for i in got)) == 4 and all(i["state"] == "pending" for i in got)
    with seeded.write() as txn:
        again = instances.ensure_instances(txn, name="web", group="web", image="tiny", count=4)
    assert not again["changed"]


def test_capacity_exhaustion_is_all_or_nothing(seeded):
    refused(seeded, Exhausted, r"5 instances of 1 cores.*\(4 would fit\)",
            instances.ensure_instances, name="web", group="web", image="tiny", count=5)


def test_unknown_references_are_refused(seeded):
    refused(seeded, NotFound, "unknown security group 'nope'",
            instances.ensure_instances, name="x", group="nope", image="tiny", count=1)
    refused(seeded, NotFound, "unknown image 'nope'",
            instances.ensure_instances, name="x", group="web", image="nope", count=1)
    refused(seeded, InvalidInput, "unknown instance_type",
            instances.ensure_instances, name="x", group="web", image="tiny", count=1, instance_type="z9.huge")


def test_exact_count_and_terminate_free_addresses(seeded):
    with seeded.write() as txn:
        first = instances.ensure_instances(txn, name="web", group="web", image="tiny", exact_count=3)["instances"]
    with seeded.write() as txn:
        out = instances.ensure_instances(txn, name="web", group="web", image="tiny", exact_count=1)
    assert out["terminated"] == [first[2]["id"], first[1]["id"]]
    assert [i["id"] for i in out["instances"]] == [first[0]["id"]]
    with seeded.write() as txn:
        grown = instances.ensure_instances(txn, name="web", group="web", image="tiny", exact_count=2)
    # the freed lowest address is handed out again
    assert [i["private_ip"] for i in grown["instances"]] == ["10.20.0.2", "10.20.0.3"]


def test_state_transitions(seeded):
    with seeded.write() as txn:
        ids = [i["id"] for i in instances.ensure_instances(txn, name="w", group="web", image="tiny", count=2)["instances"]]
    with seeded.write() as txn:
        assert instances.ensure_instances(txn, state="running", instance_ids=ids)["changed"]
    with seeded.write() as txn:
        assert not instances.ensure_instances(txn, state="running", name="w")["changed"]
    with seeded.write() as txn:
        instances.ensure_instances(txn, state="terminated", instance_ids=ids[:1])
    refused(seeded, Conflict, "is terminated and cannot become running",
            instances.ensure_instances, state="running", instance_ids=ids[:1])


def test_elastic_ips(seeded):
    with seeded.write() as txn:
        vm = instances.ensure_instances(txn, name="w", group="web", image="tiny", count=2)["instances"]
        a = addresses.ensure_address(txn, instance=vm[0]["id"])["address"]
        b = addresses.ensure_address(txn, name="spare")["address"]
    assert a == {"public_ip": "203.0.113.10", "name": None, "instance": vm[0]["id"], "account": "admin"}
    assert b["public_ip"] == "203.0.113.11"
    with seeded.write() as txn:
        assert not addresses.ensure_address(txn, instance=vm[0]["id"])["changed"]
        assert not addresses.ensure_address(txn, name="spare")["changed"]
    refused(seeded, Conflict, "associated with %s; pass allow_reassociation" % vm[0]["id"],
            addresses.ensure_address, public_ip="203.0.113.10", instance=vm[1]["id"])
    refused(seeded, InvalidInput, "not in the cloud's public_ips pool", addresses.ensure_address, public_ip="198.51.100.1")
    with seeded.write() as txn:
        addresses.ensure_address(txn, public_ip="203.0.113.12")
    refused(seeded, Exhausted, "all 3 addresses are allocated", addresses.ensure_address, name="one-too-many")
    refused(seeded, Conflict, "would no longer contain allocated elastic IPs",
            cloud.ensure_settings, {"public_ips": ["203.0.113.10"]})
    with seeded.write() as txn:
        moved = addresses.ensure_address(txn, public_ip="203.0.113.10", instance=vm[1]["id"], allow_reassociation=True)
        assert moved["address"]["instance"] == vm[1]["id"]
        instances.ensure_instances(txn, state="terminated", instance_ids=[vm[1]["id"]])
    eips = dict((e["public_ip"], e) for e in snapshot(seeded)["elastic_ips"])
    assert eips["203.0.113.10"]["instance"] is None  # still allocated, no longer associated
    with seeded.write() as txn:
        assert addresses.ensure_address(txn, public_ip="203.0.113.10", state="absent")["changed"]


def test_volume_attach_once(seeded):
    with seeded.write() as txn:
        vm = instances.ensure_instances(txn, name="w", group="web", image="tiny", count=2)["instances"]
        vol = volumes.ensure_volume(txn, name="data", cluster="cluster_a", size_gb=1)["volume"]
        out = volumes.ensure_attachment(txn, "data", vm[0]["id"])
    assert out["volume"]["state"] == "in-use" and out["volume"]["attachment"] == {"instance": vm[0]["id"], "device": "/dev/vdb"}
    refused(seeded, Conflict, "volume %s is attached to %s as /dev/vdb; detach it first" % (vol["id"], vm[0]["id"]),
            volumes.ensure_attachment, "data", vm[1]["id"])
    refused(seeded, Conflict, "pass force_detach=true", volumes.ensure_volume, name="data", state="absent")
    with seeded.write() as txn:
        assert volumes.ensure_attachment(txn, "data", state="detached")["volume"]["state"] == "available"
        assert volumes.ensure_attachment(txn, "data", vm[1]["id"])["changed"]
        instances.ensure_instances(txn, state="terminated", instance_ids=[vm[1]["id"]])
    assert snapshot(seeded)["volumes"][0]["state"] == "available"


def test_node_refusals(seeded):
    with seeded.write() as txn:
        instances.ensure_instances(txn, name="w", group="web", image="tiny", count=2, policy="GREEDY")
    refused(seeded, Conflict, "node nc1 still runs instances", cloud.ensure_node, "nc1", state="absent")
    refused(seeded, Conflict, "cores cannot drop to 1, its instances use 2", cloud.ensure_node, "nc1", cores=1)
    refused(seeded, NotFound, "unknown cluster 'nope'", cloud.ensure_node, "nc9", "nope", 1, 1, 1)
    refused(seeded, Conflict, "cluster cluster_a still holds nodes", cloud.ensure_cluster, "cluster_a", "absent")


def test_slices_by_scope(seeded):
    with seeded.write() as txn:
        groups.ensure_group(txn, "db", rules=[{"protocol": "tcp", "from_port": 5432, "source_group": "web"}])
        vm = instances.ensure_instances(txn, name="d", group="db", image="tiny", count=2)["instances"]
    with seeded.read() as txn:
        node = slices.read_slice(txn, "node", vm[0]["node"])
        cluster = slices.read_slice(txn, "cluster", "cluster_a")
    assert [i["id"] for i in node["instances"]] == [vm[0]["id"]]
    # db's rule names web as a source, so a CC needs web's subnet too
    assert sorted(g["name"] for g in cluster["security_groups"]) == ["db", "web"]
    assert len(cluster["instances"]) == 2 and node["generation"] == cluster["generation"]


def test_rule_fields_left_unset_arrive_as_none(seeded):
    # Ansible passes suboptions the user left out as None.
    rule = {"protocol": None, "from_port": 443, "to_port": None, "cidr": "0.0.0.0/0", "source_group": None}
    with seeded.write() as txn:
        out = groups.ensure_group(txn, "web", rules=[rule])
    assert out["group"]["rules"] == [{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr": "0.0.0.0/0"}]


def test_image_fields_left_out_are_kept(seeded):
    with seeded.write() as txn:
        kernel = images.ensure_image(txn, "vmlinuz", kind="kernel", checksum=CHECKSUM, size_bytes=10)["image"]
        images.ensure_image(txn, "boot", checksum=CHECKSUM, size_bytes=20, image_format="qcow2", kernel="vmlinuz")
    with seeded.write() as txn:
        moved = images.ensure_image(txn, "boot", location="walrus://images/boot.qcow2")
    assert moved["changed"] and moved["image"]["kernel_id"] == kernel["id"] and moved["image"]["format"] == "qcow2"
    refused(seeded, Conflict, "images are immutable", images.ensure_image, "boot", checksum="cd" * 32)


def test_snapshots_in_slices(seeded):
    with seeded.write() as txn:
        volumes.ensure_volume(txn, name="data", cluster="cluster_a", size_gb=2)
        snap = volumes.ensure_snapshot(txn, "nightly", volume="data")["snapshot"]
        restored = volumes.ensure_volume(txn, name="restored", cluster="cluster_a", snapshot="nightly")["volume"]
    assert restored["size_gb"] == 2 and restored["snapshot_id"] == snap["id"]
    assert snapshot(seeded)["snapshots"] == [snap]
    refused(seeded, Conflict, "is the source of volumes", volumes.ensure_snapshot, "nightly", state="absent")


def test_a_held_write_lock_times_out_with_a_clear_error(seeded, ledger_url):
    with seeded.write() as txn:
        groups.ensure_group(txn, "held")
        with db.Ledger(ledger_url, timeout=0.5) as other:
            started = time.monotonic()
            with pytest.raises(LedgerUnavailable, match="locked"):
                with other.write() as blocked:
                    groups.ensure_group(blocked, "late")
            assert 0.4 < time.monotonic() - started < 5
            # readers are not blocked by a writer
            with other.read() as reader:
                assert reader.row("SELECT name FROM security_groups WHERE name = 'web'")
    names = [g["name"] for g in snapshot(seeded)["security_groups"]]
    assert "held" in names and "late" not in names
