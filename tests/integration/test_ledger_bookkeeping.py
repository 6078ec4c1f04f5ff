"""The allocation bookkeeping (node_load, group_addresses, free_addresses) against both backends.

Launch reads node capacity from node_load and the lowest free addresses from the group's
cursor and free list instead of scanning instances (P13). Here, after every step of a
seeded random sequence of launches, terminations, stops and writes made behind the API's
back, the bookkeeping is compared with what a scan of the instances says:

- node_load holds exactly the sum over each node's live instances;
- the addresses a launch would take are exactly the lowest free ones of the subnet, and no
  free address is missing from the group's free list;
- no live address or MAC is held twice.

Also: a ledger at schema version 1 (the bookkeeping's tables absent) is migrated with the
load of its instances, and its first launch takes the lowest free address.
"""

import random
import sqlite3

import netaddr
import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import Exhausted, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger import (
    allocator, cloud, db, groups, images, instances, schema,
)
from ansible_collections.euca.cloud.plugins.module_utils.model import addressing

CHECKSUM = "cd" * 32


def seed(ledger, per_group=16):
    with ledger.write() as txn:
        cloud.ensure_settings(txn, {"private_network": "10.30.0.0/16", "addresses_per_group": per_group,
                                    "scheduler": "GREEDY"})
        cloud.ensure_cluster(txn, "c1")
        cloud.ensure_node(txn, "n1", "c1", 16, 4096, 100)
        cloud.ensure_node(txn, "n2", "c1", 256, 65536, 1000)
        images.ensure_image(txn, "img", checksum=CHECKSUM, size_bytes=1)
        groups.ensure_group(txn, "a")
        groups.ensure_group(txn, "b")


def scanned_load(txn):
    rows = txn.rows("SELECT node, SUM(cores) AS cores, SUM(memory_mb) AS memory_mb, SUM(disk_gb) AS disk_gb, "
                    "COUNT(*) AS instances FROM instances WHERE state <> 'terminated' AND node IS NOT NULL GROUP BY node")
    return dict((r["node"], tuple(int(r[k]) for k in ("cores", "memory_mb", "disk_gb", "instances"))) for r in rows)


def kept_load(txn):
    rows = txn.rows("SELECT * FROM node_load")
    return dict((r["node"], tuple(int(r[k]) for k in ("cores", "memory_mb", "disk_gb", "instances")))
                for r in rows if int(r["instances"]) or int(r["cores"]))


def lowest_free(txn, group, count):
    """The ``count`` lowest free hosts of the group's subnet, by scanning every live instance."""
    subnet = netaddr.IPNetwork(groups.get_group(txn, group)["subnet"])
    taken = set(addressing.ipv4_int(r["private_ip"]) for r in txn.rows(
        "SELECT private_ip FROM instances WHERE state <> 'terminated' AND private_ip IS NOT NULL"))
    free = [h for h in range(subnet.first + 2, subnet.last) if h not in taken]
    return free[:count]


def launched_hosts(txn, group, count, label):
    got = instances.ensure_instances(txn, name=label, group=group, image="img", count=count)["instances"]
    return [addressing.ipv4_int(i["private_ip"]) for i in got]


def check(ledger):
    """The bookkeeping says what a scan says; nothing live is held twice."""
    with ledger.read() as txn:
        assert kept_load(txn) == scanned_load(txn)
        live = txn.rows("SELECT private_ip, mac FROM instances WHERE state <> 'terminated'")
        assert len(set(r["private_ip"] for r in live)) == len(live)
        assert len(set(r["mac"] for r in live)) == len(live)
        held = set(addressing.ipv4_int(r["private_ip"]) for r in live)
        for kept in txn.rows("SELECT * FROM group_addresses"):
            # no address is lost: every free one below the cursor is on the free list (one
            # listed but held, by a row written into another group's subnet before the group's
            # first launch, is found and skipped by the launch)
            listed = set(r["host"] for r in txn.rows("SELECT host FROM free_addresses WHERE group_name = ?",
                                                     kept["group_name"]))
            below = set(h for h in range(kept["first_host"], kept["next_host"]) if h not in held)
            assert below <= listed, kept
    for group in ("a", "b"):
        # what a launch would take (rolled back) is what a scan calls the lowest free
        with ledger.write(dry_run=True) as txn:
            expected = lowest_free(txn, group, 3)
            if len(expected) == 3:
                assert launched_hosts(txn, group, 3, "probe") == expected, group


def test_bookkeeping_matches_a_scan_through_random_operations(ledger_url):
    rng = random.Random(20261201)
    with db.Ledger(ledger_url, timeout=30) as ledger:
        seed(ledger)
        labels = 0
        for step in range(120):
            action = rng.choice(["launch", "launch", "launch", "terminate", "terminate", "stop", "start",
                                 "raw_terminate", "raw_delete", "raw_insert", "raw_move"])
            with ledger.write() as txn:
                # ordered by address, not by the random ids: the same sequence every run
                live = txn.rows("SELECT * FROM instances WHERE state <> 'terminated' ORDER BY private_ip")
                if action == "launch":
                    group = rng.choice(["a", "b"])
                    count = rng.randint(1, 4)
                    expected = lowest_free(txn, group, count)
                    if len(expected) == count:
                        labels += 1
                        got = instances.ensure_instances(txn, name="x%d" % labels, group=group, image="img",
                                                         count=count, instance_type=rng.choice(["m1.small", "m1.large"]))
                        assert [addressing.ipv4_int(i["private_ip"]) for i in got["instances"]] == expected
                elif action == "terminate" and live:
                    instances.terminate(txn, rng.choice(live))
                elif action == "stop" and live:
                    row = rng.choice(live)
                    instances.ensure_instances(txn, state="stopped", instance_ids=[row["id"]])
                elif action == "start" and live:
                    row = rng.choice(live)
                    instances.ensure_instances(txn, state="running", instance_ids=[row["id"]])
                elif action == "raw_terminate" and live:
                    # what a reconcile recording "gone" might write, not through terminate()
                    txn.exec("UPDATE instances SET state = 'terminated', reason = 'gone' WHERE id = ?",
                             rng.choice(live)["id"])
                elif action == "raw_delete" and live:
                    txn.exec("DELETE FROM elastic_ips WHERE instance_id IS NOT NULL")
                    txn.exec("DELETE FROM instances WHERE id = ?", rng.choice(live)["id"])
                elif action == "raw_insert":
                    # a live instance written straight into the ledger, at any free address of
                    # the subnet (above the cursor, in the free list, or in the other group's)
                    group = rng.choice(["a", "b"])
                    other = "b" if group == "a" else "a"
                    choices = lowest_free(txn, group, 100) + lowest_free(txn, other, 100)[:2]
                    if choices:
                        host = rng.choice(choices)
                        labels += 1
                        ip = addressing.ipv4_text(host)
                        txn.exec(
                            "INSERT INTO instances (id, name, reservation_id, launch_index, group_name, image_id, "
                            "instance_type, cluster, node, cores, memory_mb, disk_gb, private_ip, mac, state, reason, "
                            "created_gen, created_at, updated_at) VALUES (?, ?, 'r-00000000', 0, ?, ?, 'm1.small', "
                            "'c1', 'n2', 1, 128, 2, ?, ?, 'running', '', 0, ?, ?)",
                            "i-%08x" % (0x7f000000 + labels), "raw%d" % labels, group,
                            images.resolve(txn, "img")["id"], ip, addressing.mac_for(ip), schema.now(), schema.now())
                elif action == "raw_move" and live:
                    # moved to the other node by hand
                    row = rng.choice(live)
                    txn.exec("UPDATE instances SET node = ? WHERE id = ?", "n1" if row["node"] == "n2" else "n2", row["id"])
            check(ledger)


def test_launch_takes_the_lowest_free_address_and_reuses_given_back_ones(ledger_url):
    with db.Ledger(ledger_url, timeout=30) as ledger:
        seed(ledger)
        with ledger.write() as txn:
            first = instances.ensure_instances(txn, name="w", group="a", image="img", count=6)["instances"]
        hosts = [addressing.ipv4_int(i["private_ip"]) for i in first]
        assert hosts == list(range(hosts[0], hosts[0] + 6))
        assert [i["mac"] for i in first] == [addressing.mac_for(i["private_ip"]) for i in first]
        with ledger.write() as txn:
            for row in sorted(first, key=lambda i: i["private_ip"])[1:4:2]:
                instances.terminate(txn, instances.get_instance(txn, row["id"]))
        with ledger.write() as txn:
            again = instances.ensure_instances(txn, name="v", group="a", image="img", count=3)["instances"]
        assert [addressing.ipv4_int(i["private_ip"]) for i in again] == [hosts[1], hosts[3], hosts[0] + 6]


def test_an_address_taken_behind_the_bookkeeping_is_skipped_not_doubled(ledger_url):
    with db.Ledger(ledger_url, timeout=30) as ledger:
        seed(ledger)
        with ledger.write() as txn:
            instances.ensure_instances(txn, name="w", group="a", image="img", count=2)
            subnet = netaddr.IPNetwork(groups.get_group(txn, "a")["subnet"])
            nxt = allocator.plan_hosts(txn, "a", subnet, 1)[0]
            # the bookkeeping is edited by hand: the cursor goes back over a held address
            txn.exec("UPDATE group_addresses SET next_host = ? WHERE group_name = 'a'", nxt - 1)
        with ledger.write() as txn:
            got = instances.ensure_instances(txn, name="v", group="a", image="img", count=1)["instances"]
        assert addressing.ipv4_int(got[0]["private_ip"]) == nxt
        check(ledger)


def test_an_address_held_outside_its_group_is_skipped(ledger_url):
    with db.Ledger(ledger_url, timeout=30) as ledger:
        seed(ledger, per_group=8)  # 5 instance addresses per group
        with ledger.write() as txn:
            b_subnet = netaddr.IPNetwork(groups.get_group(txn, "b")["subnet"])
            ip = addressing.ipv4_text(b_subnet.first + 2)
            instances.ensure_instances(txn, name="w", group="a", image="img", count=1)
            # moved by hand into group b's subnet
            txn.exec("UPDATE instances SET private_ip = ?, mac = ? WHERE name = 'w'", ip, addressing.mac_for(ip))
            held = txn.value("SELECT id FROM instances WHERE name = 'w'")
        with ledger.write() as txn:
            got = launched_hosts(txn, "b", 4, "v")
        # the held address is skipped (the group's bookkeeping is rebuilt from every live instance)
        assert got == list(range(b_subnet.first + 3, b_subnet.first + 7))
        with pytest.raises(Exhausted, match="subnet %s has no free address left" % b_subnet):
            with ledger.write() as txn:
                instances.ensure_instances(txn, name="u", group="b", image="img", count=1)
        with ledger.read() as txn:
            assert txn.value("SELECT COUNT(*) FROM instances WHERE name = 'u'") == 0
            assert txn.value("SELECT private_ip FROM instances WHERE id = ?", held) == ip


def test_a_version_1_ledger_is_migrated_with_its_instances(ledger_url, monkeypatch):
    with db.Ledger(ledger_url, timeout=30) as ledger:
        seed(ledger)
        with ledger.write() as txn:
            instances.ensure_instances(txn, name="w", group="a", image="img", count=5)
            instances.terminate(txn, instances.live_by_name(txn, "w")[1])
            subnet = netaddr.IPNetwork(groups.get_group(txn, "a")["subnet"])
            expected_next = lowest_free(txn, "a", 1)
            load = scanned_load(txn)
            # back to what a version-1 ledger holds: no bookkeeping, no triggers, no version 2
            for trigger in ("instances_bookkeeping_insert", "instances_bookkeeping_update", "instances_bookkeeping_delete"):
                txn.exec("DROP TRIGGER %s%s" % (trigger, " ON instances" if txn.dialect == "postgresql" else ""))
            for table in ("free_addresses", "group_addresses", "node_load"):
                txn.exec("DROP TABLE %s" % table)
            txn.exec("DROP INDEX instances_group")
            if txn.dialect == "postgresql":
                txn.exec("DROP FUNCTION euca_instance_bookkeeping()")
                txn.exec("DROP FUNCTION euca_ip_host(TEXT)")
            # none of version 6 (the indexes in launch order)
            txn.exec("DROP INDEX instances_launch_order")
            txn.exec("DROP INDEX instances_account_order")
            # none of version 5 (console captures)
            txn.exec("DROP INDEX console_output_account")
            txn.exec("DROP TABLE console_output")
            # none of version 4 (the EC2 API's tables)
            for index in ("access_keys_account", "tags_account", "jobs_state"):
                txn.exec("DROP INDEX %s" % index)
            for table in ("access_keys", "tags", "client_tokens", "jobs"):
                txn.exec("DROP TABLE %s" % table)
            # and none of version 3 (accounts)
            for index in ("instances_account", "security_groups_account", "volumes_account", "elastic_ips_account"):
                txn.exec("DROP INDEX %s" % index)
            txn.exec("DROP TABLE keypairs")
            txn.exec("DROP TABLE accounts")
            for table, column in (("security_groups", "account"), ("instances", "account"), ("elastic_ips", "account"),
                                  ("volumes", "account"), ("snapshots", "account"), ("images", "account"),
                                  ("instances", "key_name"), ("instances", "public_key"), ("instances", "user_data")):
                txn.exec("ALTER TABLE %s DROP COLUMN %s" % (table, column))
            txn.exec("DELETE FROM schema_migrations WHERE version > 1")
    with db.Ledger(ledger_url, timeout=30) as ledger:
        with ledger.read() as txn:
            assert schema.current_version(txn) == schema.LATEST
            assert kept_load(txn) == load
        with ledger.write() as txn:
            got = instances.ensure_instances(txn, name="v", group="a", image="img", count=1)["instances"]
        assert [addressing.ipv4_int(got[0]["private_ip"])] == expected_next
        check(ledger)
    if not db.is_postgres_url(ledger_url):
        with sqlite3.connect(ledger_url) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_an_instance_id_drawn_twice_is_drawn_again_never_reused(ledger_url, monkeypatch):
    with db.Ledger(ledger_url, timeout=30) as ledger:
        seed(ledger)
        with ledger.write() as txn:
            old = instances.ensure_instances(txn, name="w", group="a", image="img", count=1)["instances"][0]
            instances.terminate(txn, instances.get_instance(txn, old["id"]))
        draws = iter([old["id"], old["id"], "i-0000abcd"])
        monkeypatch.setattr(allocator, "new_instance_id", lambda: next(draws))
        with ledger.write() as txn:
            got = instances.ensure_instances(txn, name="v", group="a", image="img", count=1)["instances"]
        assert [i["id"] for i in got] == ["i-0000abcd"]
        # the terminated instance's address is free again, and it is the lowest
        assert got[0]["private_ip"] == old["private_ip"]
        with ledger.read() as txn:
            assert instances.get_instance(txn, old["id"])["state"] == "terminated"
            assert txn.value("SELECT COUNT(*) FROM instances WHERE id = ?", old["id"]) == 1


def test_what_a_launch_reads_at_once_is_what_the_ledger_lookups_say(ledger_url):
    from ansible_collections.euca.cloud.plugins.module_utils.ledger import settings

    with db.Ledger(ledger_url, timeout=30) as ledger:
        seed(ledger)
        with ledger.write() as txn:
            cloud.ensure_settings(txn, {"public_ips": ["203.0.113.0/30"]})
            reads = allocator.launch_reads(txn, "a", "img", 2)
            merged = dict(settings.DEFAULTS)
            merged.update(reads["settings"])
            assert merged == settings.load(txn)
            assert reads["subnet"] == groups.get_group(txn, "a")["subnet"]
            image = images.resolve(txn, "img", "machine")
            assert reads["image"] == {"id": image["id"], "kind": "machine"}
            assert allocator.launch_reads(txn, "a", image["id"], 1)["image"]["id"] == image["id"]
            assert reads["nodes"] == allocator.candidates(txn)
        for group, image, error, match in (("nope", "img", NotFound, "unknown security group 'nope'"),
                                            ("a", "nope", NotFound, "unknown image 'nope'")):
            with pytest.raises(error, match=match):
                with ledger.write() as txn:
                    instances.ensure_instances(txn, name="w", group=group, image=image, count=1)
