"""playbooks/network.yml end to end: the ledger decides, the CC converges, packets prove it.

A CC namespace gets its segments, DHCP, filter and NAT from the ledger through the playbook;
instances are namespaces on the segment bridges with the ledger's MACs, leased by a real
DHCP client; an outside namespace sits on the public side. Then: a second run changes
nothing, a ledger change is applied, and a CC wiped clean is rebuilt from the ledger alone.
"""

import time

import pytest

from harness.minicloud import attach_instance, inventory, serve, tcp
from harness.runner import REPO_ROOT, run_playbook

from ansible_collections.euca.cloud.plugins.module_utils.ledger import addresses, cloud, db, groups, images, instances

PLAYBOOK = REPO_ROOT / "playbooks" / "network.yml"

pytestmark = [pytest.mark.root, pytest.mark.slow]


def build_ledger(path):
    with db.Ledger(path) as ledger:
        with ledger.write() as txn:
            cloud.ensure_settings(txn, {"network_mode": "flat", "private_network": "10.128.0.0/16",
                                        "public_ips": ["203.0.113.32/28"], "segment_range": [100, 199]})
            cloud.ensure_cluster(txn, "cluster_a")
            cloud.ensure_node(txn, "cc1", "cluster_a", 8, 4096, 100)
            images.ensure_image(txn, "img", checksum="0" * 64, size_bytes=1)
            groups.ensure_group(txn, "web", rules=[{"protocol": "tcp", "from_port": 80, "cidr": "0.0.0.0/0"},
                                                   {"protocol": "icmp", "from_port": -1, "to_port": -1, "cidr": "0.0.0.0/0"}])
            groups.ensure_group(txn, "db", rules=[{"protocol": "tcp", "from_port": 5432, "source_group": "web"}])
            web = instances.ensure_instances(txn, name="web", group="web", image="img", count=2)["instances"]
            dbs = instances.ensure_instances(txn, name="db", group="db", image="img", count=1)["instances"]
            addresses.ensure_address(txn, instance=web[0]["id"])
            addresses.ensure_address(txn, instance=dbs[0]["id"])
    return web, dbs


def test_network_converges_from_the_ledger(netns, tmp_path):
    ledger = str(tmp_path / "ledger.sqlite")
    web, dbs = build_ledger(ledger)
    cc, outside = netns(), netns()
    cc.veth(outside, "pub", "eut-up")
    cc.addr("pub", "203.0.113.2/24")
    outside.addr("eut-up", "203.0.113.1/24")
    cc.run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    hosts = inventory(tmp_path, ledger, cc.name)

    first = run_playbook(PLAYBOOK, inventory=hosts)
    assert first.rc == 0, first.stdout[-4000:]

    vms = {}
    for index, instance in enumerate(web + dbs):
        ns, leased = attach_instance(netns, cc, instance, tmp_path, index, {"web": 100, "db": 101}[instance["group"]])
        assert leased == instance["private_ip"], "DHCP gave %s, the ledger says %s" % (leased, instance["private_ip"])
        vms[instance["id"]] = (ns, instance)
    web0, web1, db0 = (vms[web[0]["id"]][0], vms[web[1]["id"]][0], vms[dbs[0]["id"]][0])
    for ns, instance in vms.values():
        serve(ns, 80, "http-" + instance["id"])
        serve(ns, 5432, "pg-" + instance["id"])
        serve(ns, 8080, "alt-" + instance["id"])
    serve(outside, 9000, "$SOCAT_PEERADDR")  # the outside reports who it sees
    time.sleep(0.5)

    eip_web, eip_db = "203.0.113.32", "203.0.113.33"
    # same group passes, cross group only where a rule says so
    assert tcp(web1, web[0]["private_ip"], 8080) == "alt-" + web[0]["id"]
    assert tcp(web0, dbs[0]["private_ip"], 5432) == "pg-" + dbs[0]["id"]
    assert tcp(web0, dbs[0]["private_ip"], 8080) is None
    assert tcp(db0, web[0]["private_ip"], 8080) is None
    # an authorised port on an EIP answers from outside, an unauthorised one does not
    assert tcp(outside, eip_web, 80) == "http-" + web[0]["id"]
    assert tcp(outside, eip_web, 8080) is None
    assert tcp(outside, eip_db, 5432) is None
    # hairpin: an instance reaches another's EIP
    assert tcp(web1, eip_web, 80) == "http-" + web[0]["id"]
    # an instance reaches its own EIP once its bridge port may send frames back where they came
    # from (hairpin mode; the NC sets it on instance ports, as nova does)
    assert tcp(web0, eip_web, 80) is None
    cc.run("bridge", "link", "set", "dev", "eut-i0", "hairpin", "on")
    assert tcp(web0, eip_web, 80) == "http-" + web[0]["id"]
    # outbound: the outside sees the EIP as the source; without an EIP, the CC's address
    assert tcp(web0, "203.0.113.1", 9000) == eip_web
    assert tcp(web1, "203.0.113.1", 9000) == "203.0.113.2"

    second = run_playbook(PLAYBOOK, inventory=hosts)
    assert second.rc == 0 and second.stats["changed"].get("cc1", 0) == 0, second.stdout[-4000:]

    # the ledger changes: the db instance loses its EIP; the CC follows
    with db.Ledger(ledger) as handle:
        with handle.write() as txn:
            addresses.ensure_address(txn, public_ip=eip_db, state="disassociated")
    third = run_playbook(PLAYBOOK, inventory=hosts)
    assert third.rc == 0, third.stdout[-4000:]
    assert eip_db not in cc.ip("-4", "addr", "show", "dev", "pub").stdout

    # a CC wiped clean comes back from the ledger alone
    for table in cc.run("nft", "list", "tables", check=False).stdout.splitlines():
        cc.run("nft", "delete", "table", *table.split()[1:3])
    cc.ip("link", "del", "eubr-101")
    rebuilt = run_playbook(PLAYBOOK, inventory=hosts)
    assert rebuilt.rc == 0, rebuilt.stdout[-4000:]
    assert tcp(outside, eip_web, 80) == "http-" + web[0]["id"]
    cc.ip("link", "set", "eut-i2", "master", "eubr-101")
    assert tcp(web0, dbs[0]["private_ip"], 5432) == "pg-" + dbs[0]["id"]
