"""From a real ledger slice to the data plane modules' config."""

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.ledger import addresses, cloud, db, groups, images, instances, slices, tables
from ansible_collections.euca.cloud.plugins.module_utils.net import ledger_view


@pytest.fixture
def cluster_slice(tmp_path):
    with db.Ledger(str(tmp_path / "l.sqlite")) as ledger:
        with ledger.write() as txn:
            cloud.ensure_settings(txn, {"network_mode": "vxlan", "private_network": "10.128.0.0/16",
                                        "public_ips": ["203.0.113.32/28"], "segment_range": [100, 199]})
            cloud.ensure_cluster(txn, "a")
            cloud.ensure_node(txn, "nc1", "a", 8, 4096, 100)
            images.ensure_image(txn, "img", checksum="0" * 64, size_bytes=1)
            groups.ensure_group(txn, "web", rules=[{"protocol": "tcp", "from_port": 80, "cidr": "0.0.0.0/0"}])
            groups.ensure_group(txn, "db", rules=[{"protocol": "tcp", "from_port": 5432, "source_group": "web"},
                                                  {"protocol": "all", "cidr": "198.51.100.0/24"}])
            web = instances.ensure_instances(txn, name="web", group="web", image="img", count=2)["instances"]
            instances.ensure_instances(txn, name="db", group="db", image="img", count=1)
            addresses.ensure_address(txn, instance=web[1]["id"])
            addresses.ensure_address(txn, name="spare")
            instances.ensure_instances(txn, state="terminated", instance_ids=[web[0]["id"]])
        with ledger.read() as txn:
            return slices.read_slice(txn, "cluster", "a")


def test_cc_config(cluster_slice):
    conf = ledger_view.cc_config(cluster_slice, peers=["198.51.100.2"])
    assert conf["generation"] == cluster_slice["generation"]
    assert conf["segments"] == [
        {"id": 101, "mode": "vxlan", "bridge": "eubr-101", "gateway": "10.128.0.33/27", "peers": ["198.51.100.2"]},
        {"id": 100, "mode": "vxlan", "bridge": "eubr-100", "gateway": "10.128.0.1/27", "peers": ["198.51.100.2"]},
    ]
    web_dhcp = [d for d in conf["dhcp"] if d["id"] == 100][0]
    # the terminated instance's reservation is gone; the live one keeps 10.128.0.3
    assert [h["ip"] for h in web_dhcp["hosts"]] == ["10.128.0.3"] and web_dhcp["hosts"][0]["mac"] == "d0:0d:0a:80:00:03"
    assert conf["nat"] == [{"public_ip": "203.0.113.32", "private_ip": "10.128.0.3"}]  # the spare EIP maps nothing
    assert conf["public_ips"] == ["203.0.113.32/28"] and conf["private_networks"] == ["10.128.0.0/16"]
    db_rules = [g for g in conf["firewall"] if g["name"] == "db"][0]["rules"]
    assert {"protocol": "all", "cidr": "198.51.100.0/24"} in db_rules
    assert {"protocol": "tcp", "from_port": 5432, "to_port": 5432, "source_group": "web"} in db_rules


def test_nc_segments_have_no_gateway(cluster_slice):
    assert all("gateway" not in s for s in ledger_view.nc_config(cluster_slice)["segments"])


def test_not_a_slice():
    with pytest.raises(InvalidInput, match="not a ledger slice"):
        ledger_view.cc_config({"instances": []})


def test_nc_config_gives_image_cache_and_nc_instance_their_input(cluster_slice):
    conf = ledger_view.nc_config(cluster_slice)
    assert conf["images"] == cluster_slice["images"]
    live = [i for i in cluster_slice["instances"] if i["state"] != "terminated"]
    assert [s["name"] for s in conf["instances"]] == [i["id"] for i in live]
    web = [s for s in conf["instances"] if s["name"] == live[0]["id"]][0]
    source = live[0]
    assert web == {"name": source["id"], "state": "running", "image": source["image_id"], "kernel": None,
                   "ramdisk": None, "vcpus": source["cores"], "memory_mb": source["memory_mb"],
                   "root_size_gb": source["disk_gb"], "hostname": source["id"],
                   "nics": [{"bridge": "eubr-%d" % (100 if source["group"] == "web" else 101), "mac": source["mac"]}],
                   "user_data": None, "public_keys": []}


def test_revoke_rules_removes_only_the_named_rules(tmp_path):
    with db.Ledger(str(tmp_path / "l.sqlite")) as ledger:
        with ledger.write() as txn:
            cloud.ensure_settings(txn, {"network_mode": "vxlan", "private_network": "10.128.0.0/16",
                                        "public_ips": ["203.0.113.32/28"], "segment_range": [100, 199]})
            groups.ensure_group(txn, "web", rules=[{"protocol": "tcp", "from_port": 80, "cidr": "0.0.0.0/0"},
                                                   {"protocol": "tcp", "from_port": 22, "cidr": "198.51.100.0/24"}])
        with ledger.write() as txn:
            out = groups.ensure_group(txn, "web", revoke_rules=[{"protocol": "tcp", "from_port": 22, "to_port": None,
                                                                 "cidr": "198.51.100.0/24", "source_group": None}])
        assert out["changed"]
        assert out["group"]["rules"] == [{"protocol": "tcp", "from_port": 80, "to_port": 80, "cidr": "0.0.0.0/0"}]
        with ledger.write() as txn:
            # a rule the group does not have is no change; a malformed one is refused
            assert not groups.ensure_group(txn, "web", revoke_rules=[{"from_port": 22, "cidr": "198.51.100.0/24"}])["changed"]
            with pytest.raises(InvalidInput, match="from_port 70000 is outside 1-65535"):
                groups.ensure_group(txn, "web", revoke_rules=[{"from_port": 70000, "cidr": "198.51.100.0/24"}])


def test_describe_tables(cluster_slice):
    lines = tables.describe(cluster_slice)
    start = lines.index("INSTANCES (2)")
    header, web, db_ = lines[start + 1:start + 4]
    assert header.split("  ")[0] == "ID" and "PUBLIC IP" in header
    by_id = dict((i["id"], i) for i in cluster_slice["instances"])
    eip = [a for a in cluster_slice["elastic_ips"] if a["instance"]][0]
    rows = dict((line.split()[0], line.split()) for line in (web, db_))
    assert rows[eip["instance"]][6] == eip["public_ip"]
    other = [i for i in rows if i != eip["instance"]][0]
    assert rows[other][6] == "-" and rows[other][5] == by_id[other]["private_ip"]
    # columns line up: every cell of a column starts where its header does
    column = header.index("PRIVATE IP")
    assert web[column:].split()[0] == rows[web.split()[0]][5]
    assert "GROUPS (2)" in lines and any("tcp:5432<-web" in line and "all<-198.51.100.0/24" in line for line in lines)
    assert lines[lines.index("NODES (1)") + 2].split() == ["nc1", "a", "enabled", "2/8", "256/4096", "2"]
