"""Accounts in the ledger, against both backends: owners, isolation, per-account names, quotas,
key pairs and user data. Every refusal leaves the ledger exactly as it was."""

import subprocess

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, Exhausted, InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger import (
    accounts, addresses, cloud, db, groups, images, instances, keypairs, slices, volumes,
)
from ansible_collections.euca.cloud.plugins.module_utils.model import keys

CHECKSUM = "cd" * 32


@pytest.fixture
def ledger(ledger_url):
    handle = db.Ledger(ledger_url, timeout=10)
    with handle.write() as txn:
        cloud.ensure_settings(txn, {"public_ips": ["203.0.113.20-203.0.113.29"], "private_network": "10.30.0.0/16",
                                    "addresses_per_group": 16})
        cloud.ensure_cluster(txn, "cluster_a")
        cloud.ensure_node(txn, "nc1", "cluster_a", 8, 4096, 100)
        images.ensure_image(txn, "tiny", checksum=CHECKSUM, size_bytes=1024)
        for name in ("a", "b"):
            accounts.ensure_account(txn, name)
    yield handle
    handle.close()


def everything(ledger):
    """Every row of every owned table and the generation: what a refusal must leave as it was."""
    with ledger.read() as txn:
        out = {"generation": txn.current_generation()}
        for table in accounts.OWNED + ("accounts", "attachments", "group_rules"):
            out[table] = sorted(tuple(sorted(r.items())) for r in txn.rows("SELECT * FROM %s" % table))
        return out


def refused(ledger, error, match, operation, *args, **kwargs):
    before = everything(ledger)
    with pytest.raises(error, match=match):
        with ledger.write() as txn:
            operation(txn, *args, **kwargs)
    assert everything(ledger) == before


def ssh_public_key(tmp_path, name="k"):
    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def test_same_names_in_two_accounts_are_two_groups_with_two_segments_and_each_sees_only_its_own(ledger):
    with ledger.write() as txn:
        ga = groups.ensure_group(txn, "web", account="a", rules=[{"protocol": "tcp", "ports": "80", "source_group": "web"}])
        gb = groups.ensure_group(txn, "web", account="b")
        admin_web = groups.ensure_group(txn, "web")
    assert ga["group"]["name"] == gb["group"]["name"] == admin_web["group"]["name"] == "web"
    assert ga["group"]["rules"][0]["source_group"] == "web"
    assert len({ga["group"]["segment_id"], gb["group"]["segment_id"], admin_web["group"]["segment_id"]}) == 3
    assert len({ga["group"]["subnet"], gb["group"]["subnet"], admin_web["group"]["subnet"]}) == 3
    with ledger.write() as txn:
        ia = instances.ensure_instances(txn, name="w", group="web", image="tiny", count=1, account="a")["instances"][0]
        ib = instances.ensure_instances(txn, name="w", group="web", image="tiny", count=1, account="b")["instances"][0]
        va = volumes.ensure_volume(txn, name="data", cluster="cluster_a", size_gb=1, account="a")["volume"]
        vb = volumes.ensure_volume(txn, name="data", cluster="cluster_a", size_gb=1, account="b")["volume"]
        ea = addresses.ensure_address(txn, name="www", instance=ia["id"], account="a")["address"]
    assert ia["group"] == ib["group"] == "web" and ia["id"] != ib["id"]
    assert ia["private_ip"] != ib["private_ip"] and va["id"] != vb["id"] and va["name"] == vb["name"] == "data"
    with ledger.read() as txn:
        seen_a = slices.read_slice(txn, account="a")
        seen_admin = slices.read_slice(txn)
        cc = slices.read_slice(txn, "cluster", "cluster_a")
    assert [i["id"] for i in seen_a["instances"]] == [ia["id"]]
    assert [g["name"] for g in seen_a["security_groups"]] == ["web"]
    assert [v["id"] for v in seen_a["volumes"]] == [va["id"]] and [e["public_ip"] for e in seen_a["elastic_ips"]] == [ea["public_ip"]]
    assert seen_a["nodes"] == []
    # the admin account sees every account's records, by their keys
    assert sorted(g["name"] for g in seen_admin["security_groups"]) == ["a:web", "b:web", "web"]
    assert sorted(i["id"] for i in seen_admin["instances"]) == sorted([ia["id"], ib["id"]])
    # the data plane gets the keys: two groups, two segments
    assert sorted(g["name"] for g in cc["security_groups"]) == ["a:web", "b:web"]
    rule = [g for g in cc["security_groups"] if g["name"] == "a:web"][0]["rules"][0]
    assert rule["source_group"] == "a:web"

    # another account's records are not found to it, with an unknown id's words
    refused(ledger, NotFound, "unknown instance", instances.ensure_instances, state="terminated",
            instance_ids=[ib["id"]], account="a")
    refused(ledger, NotFound, "unknown instance", addresses.ensure_address, public_ip=ea["public_ip"],
            instance=ib["id"], account="a")
    refused(ledger, NotFound, "unknown elastic IP", addresses.ensure_address, public_ip=ea["public_ip"],
            state="absent", account="b")
    refused(ledger, NotFound, "unknown volume", volumes.ensure_attachment, vb["id"], instance=ia["id"], account="a")
    refused(ledger, NotFound, "unknown instance", volumes.ensure_attachment, va["id"], instance=ib["id"], account="a")
    # deleting what is not there (to a) is no change, as for an unknown id
    before = everything(ledger)
    with ledger.write() as txn:
        assert not volumes.ensure_volume(txn, volume_id=vb["id"], state="absent", account="a")["changed"]
    assert everything(ledger)["volumes"] == before["volumes"]
    refused(ledger, NotFound, "unknown security group", groups.ensure_group, "b:web", account="a",
            rules=[{"protocol": "tcp", "ports": "22", "cidr": "0.0.0.0/0"}])
    refused(ledger, NotFound, "unknown security group", groups.ensure_group, "web", account="a",
            rules=[{"protocol": "tcp", "ports": "22", "source_group": "b:web"}])
    # b's volume cannot go to a's instance even through the admin account
    refused(ledger, Conflict, "attached to its own account's instances", volumes.ensure_attachment, vb["id"],
            instance=ia["id"])
    # the admin account manages them all
    with ledger.write() as txn:
        assert instances.ensure_instances(txn, state="terminated", instance_ids=[ib["id"]])["changed"]
        assert groups.ensure_group(txn, "b:web", rules=[{"protocol": "tcp", "ports": "22", "cidr": "0.0.0.0/0"}])["changed"]


def test_quotas_refuse_with_ec2_codes_and_change_nothing(ledger):
    with ledger.write() as txn:
        accounts.ensure_account(txn, "a", quotas={"max_instances": 2, "max_cores": 8, "max_addresses": 1,
                                                  "max_volume_gb": 3})
        groups.ensure_group(txn, "web", account="a")
        instances.ensure_instances(txn, name="w", group="web", image="tiny", count=2, account="a")
        addresses.ensure_address(txn, name="one", account="a")
        volumes.ensure_volume(txn, name="v1", cluster="cluster_a", size_gb=2, account="a")
    refused(ledger, Exhausted, "InstanceLimitExceeded: account a may hold 2 instances; it holds 2",
            instances.ensure_instances, name="w", group="web", image="tiny", count=3, account="a")
    refused(ledger, Exhausted, "AddressLimitExceeded", addresses.ensure_address, name="two", account="a")
    refused(ledger, Exhausted, "VolumeLimitExceeded: account a may hold 3 GiB", volumes.ensure_volume, name="v2",
            cluster="cluster_a", size_gb=2, account="a")
    # other accounts are not limited by a's quotas; the admin account launching into a's group launches a's
    with ledger.write() as txn:
        groups.ensure_group(txn, "web")
        assert instances.ensure_instances(txn, name="w", group="web", image="tiny", count=3)["changed"]
    refused(ledger, Exhausted, "InstanceLimitExceeded", instances.ensure_instances, name="w", group="a:web",
            image="tiny", count=3)
    refused(ledger, InvalidInput, "non-negative integer", accounts.ensure_account, "a", quotas={"max_cores": -2})
    refused(ledger, Conflict, "still owns", accounts.ensure_account, "a", state="absent")
    refused(ledger, Conflict, "admin account cannot be deleted", accounts.ensure_account, "admin", state="absent")
    refused(ledger, NotFound, "unknown account 'nobody'", instances.ensure_instances, name="w", group="web",
            image="tiny", count=1, account="nobody")
    refused(ledger, InvalidInput, "account name 'Bad Name' is not valid", accounts.ensure_account, "Bad Name")


def test_key_pairs_are_per_account_and_instances_keep_their_key_and_user_data(ledger, tmp_path):
    public = ssh_public_key(tmp_path)
    with ledger.write() as txn:
        made = keypairs.ensure_keypair(txn, "laptop", account="a", public_key=public)["keypair"]
        again = keypairs.ensure_keypair(txn, "laptop", account="a", public_key=public)
        other = keypairs.ensure_keypair(txn, "laptop", account="b", public_key=ssh_public_key(tmp_path, "other"))
        groups.ensure_group(txn, "web", account="a")
    assert not again["changed"] and other["keypair"]["id"] != made["id"]
    kind, blob, _comment = keys.parse_public_key(public)
    assert made["fingerprint"] == keys.imported_fingerprint(kind, blob)
    refused(ledger, Conflict, "InvalidKeyPair.Duplicate", keypairs.ensure_keypair, "laptop", account="a",
            public_key=ssh_public_key(tmp_path, "third"))
    refused(ledger, InvalidInput, "not valid base64", keypairs.ensure_keypair, "junk", account="a", public_key="ssh-rsa AAAAnotakey")
    refused(ledger, NotFound, "InvalidKeyPair.NotFound", instances.ensure_instances, name="w", group="web",
            image="tiny", count=1, account="a", key_name="nope")
    refused(ledger, InvalidInput, "16384 bytes", instances.ensure_instances, name="w", group="web", image="tiny",
            count=1, account="a", user_data="x" * 16385)
    script = "#!/bin/sh\necho hello > /tmp/hello\n"
    with ledger.write() as txn:
        vm = instances.ensure_instances(txn, name="w", group="web", image="tiny", count=1, account="a",
                                        key_name="laptop", user_data=script)["instances"][0]
        keypairs.ensure_keypair(txn, "laptop", account="a", state="absent")
    assert vm["key_name"] == "laptop" and "user_data" not in vm
    with ledger.read() as txn:
        node = slices.read_slice(txn, "node", "nc1")
        seen_b = keypairs.list_keypairs(txn, "b")
        seen_admin = keypairs.list_keypairs(txn, "admin")
    mine = [i for i in node["instances"] if i["id"] == vm["id"]][0]
    # deleting the pair changed no instance
    assert mine["public_key"].split()[:2] == public.split()[:2] and mine["user_data"] == script
    assert [k["account"] for k in seen_b] == ["b"] and [k["account"] for k in seen_admin] == ["b"]


def test_slices_of_a_node_with_an_attached_labelled_volume(ledger):
    """The data plane's slices carry labels as keys (a node's slice once failed on a labelled volume)."""
    with ledger.write() as txn:
        groups.ensure_group(txn, "web", account="a")
        vm = instances.ensure_instances(txn, name="w", group="web", image="tiny", count=1, account="a")["instances"][0]
        volumes.ensure_volume(txn, name="data", cluster="cluster_a", size_gb=1, account="a")
        volumes.ensure_attachment(txn, "data", instance=vm["id"], account="a")
        volumes.ensure_snapshot(txn, "snap", volume="data", account="a")
    with ledger.read() as txn:
        node = slices.read_slice(txn, "node", "nc1")
        cluster = slices.read_slice(txn, "cluster", "cluster_a")
        mine = slices.read_slice(txn, account="a")
    assert [v["name"] for v in node["volumes"]] == [v["name"] for v in cluster["volumes"]] == ["a:data"]
    assert [v["name"] for v in mine["volumes"]] == ["data"] and [s["name"] for s in mine["snapshots"]] == ["snap"]
