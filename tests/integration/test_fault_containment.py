"""One tenant's bad record never stops the rest of the cloud from converging (issue 13).

A CC in a namespace converges from a real ledger through the operation playbooks
(authorize.yml, revoke.yml, network.yml); instances are namespaces leased by a real DHCP
client, the outside is a namespace on the public side, and every claim is a packet:

- rules are what was asked: ICMP -1 lets ping through, ICMP type 8 lets echo requests through,
  tcp 22 lets 22 and not 23, a group without an ICMP rule is not pinged;
- the poisoned rule of the bug report (``-e ports=0``) and the ICMP ``-1-3`` are refused by
  authorize.yml with the filter's own words, and the ledger is unchanged;
- a rule made invalid behind the API (written straight into the ledger) is left out and named,
  while another group's authorize and a new instance elsewhere still converge and answer; the
  run fails at its end, by name; revoke.yml removes the record and the cloud converges clean;
- the filter module alone: a group that cannot be applied as a whole keeps what it had.
"""

import sqlite3
import time

import pytest

from harness.ledger_dump import dump
from harness.minicloud import attach_instance, inventory, serve, tcp
from harness.runner import REPO_ROOT, run_module, run_playbook

from ansible_collections.euca.cloud.plugins.module_utils.ledger import addresses, cloud, db, groups, images, instances

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(900)]

PLAYBOOKS = REPO_ROOT / "playbooks"
POISON = "group g tcp rule from_port 0 is outside 1-65535"


def build_ledger(path):
    with db.Ledger(path) as ledger:
        with ledger.write() as txn:
            cloud.ensure_settings(txn, {"network_mode": "flat", "private_network": "10.128.0.0/16",
                                        "public_ips": ["203.0.113.32/28"], "segment_range": [100, 199]})
            cloud.ensure_cluster(txn, "cluster_a")
            cloud.ensure_node(txn, "cc1", "cluster_a", 8, 4096, 100)
            images.ensure_image(txn, "img", checksum="0" * 64, size_bytes=1)
            groups.ensure_group(txn, "web", rules=[{"protocol": "tcp", "ports": "80", "cidr": "0.0.0.0/0"},
                                                   {"protocol": "icmp", "ports": "-1", "cidr": "0.0.0.0/0"}])
            groups.ensure_group(txn, "g", rules=[{"protocol": "tcp", "ports": "22", "cidr": "0.0.0.0/0"},
                                                 {"protocol": "icmp", "ports": "8", "cidr": "0.0.0.0/0"}])
            groups.ensure_group(txn, "db", rules=[{"protocol": "tcp", "ports": "5432", "source_group": "web"}])
            made = dict((name, instances.ensure_instances(txn, name=name, group=name, image="img", count=1)["instances"][0])
                        for name in ("web", "g", "db"))
            eips = dict((name, addresses.ensure_address(txn, name="eip-" + name, instance=made[name]["id"])["address"]["public_ip"])
                        for name in ("web", "g", "db"))
            segment = dict((name, groups.get_group(txn, name)["segment_id"]) for name in ("web", "g", "db"))
    return made, segment, eips


def ping(ns, address):
    return ns.run("ping", "-n", "-c", "1", "-W", "2", address, check=False, timeout=15).returncode == 0


def test_a_bad_record_is_refused_at_entry_or_left_out_by_name(netns, tmp_path):
    ledger = str(tmp_path / "ledger.sqlite")
    made, segment, eips = build_ledger(ledger)
    cc, outside = netns(), netns()
    cc.veth(outside, "pub", "eut-up")
    cc.addr("pub", "203.0.113.2/24")
    outside.addr("eut-up", "203.0.113.1/24")
    cc.run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    hosts = inventory(tmp_path, ledger, cc.name)

    def play(name, **extravars):
        return run_playbook(PLAYBOOKS / name, inventory=hosts, extravars=extravars or None)

    first = play("network.yml")
    assert first.rc == 0, first.stdout[-4000:]
    vm = {}
    for index, name in enumerate(("web", "g", "db")):
        ns, leased = attach_instance(netns, cc, made[name], tmp_path, index, segment[name])
        assert leased == made[name]["private_ip"]
        vm[name] = ns
        for port in (22, 23, 80, 5432, 8080):
            serve(ns, port, "%s-%d" % (name, port))
    time.sleep(0.5)
    eip = eips

    # the rules are what was asked, with packets
    assert tcp(outside, eip["web"], 80) == "web-80" and tcp(outside, eip["web"], 22) is None
    assert ping(outside, eip["web"])                                    # icmp -1: every type
    assert tcp(outside, eip["g"], 22) == "g-22" and tcp(outside, eip["g"], 23) is None
    assert ping(outside, eip["g"])                                      # icmp 8: echo request
    assert not ping(outside, eip["db"]) and tcp(outside, eip["db"], 5432) is None
    assert tcp(vm["web"], made["db"]["private_ip"], 5432) == "db-5432"  # from group web only
    assert tcp(vm["g"], made["db"]["private_ip"], 5432) is None

    # refused at entry, in the filter's words, and the ledger is exactly as it was
    before = dump(ledger)
    for extravars, message in (({"ports": "0"}, POISON),
                               ({"protocol": "icmp", "ports": "-1-3"}, "icmp takes TYPE or TYPE:CODE")):
        refused = play("authorize.yml", group="g", cidr="0.0.0.0/0", **extravars)
        assert refused.rc != 0 and message in refused.stdout, refused.stdout[-3000:]
        assert dump(ledger) == before

    # a record made invalid behind the API's back
    with sqlite3.connect(ledger) as conn:
        conn.execute("INSERT INTO group_rules (group_name, protocol, from_port, to_port, cidr, source_group) "
                     "VALUES ('g', 'tcp', 0, 0, '0.0.0.0/0', '')")
    # another tenant's authorize converges, then the run fails by name
    other = play("authorize.yml", group="web", ports="8080", cidr="0.0.0.0/0")
    assert other.rc != 0, other.stdout[-3000:]
    report = other.task_result("Fail for what was left out (everything else was applied)")
    assert POISON in report["msg"], report
    assert tcp(outside, eip["web"], 8080) == "web-8080"
    # group g keeps its valid rules; only the bad one is out
    assert tcp(outside, eip["g"], 22) == "g-22" and tcp(outside, eip["g"], 23) is None and ping(outside, eip["g"])
    assert tcp(outside, eip["g"], 8080) is None

    # a new instance elsewhere: its network converges (lease, rules, reachability)
    with db.Ledger(ledger) as handle:
        with handle.write() as txn:
            web2 = instances.ensure_instances(txn, name="web", group="web", image="img", count=2)["instances"]
    new = [i for i in web2 if i["id"] != made["web"]["id"]][0]
    again = play("network.yml")
    assert again.rc != 0 and POISON in again.task_result("Fail for what was left out (everything else was applied)")["msg"]
    ns, leased = attach_instance(netns, cc, new, tmp_path, 3, segment["web"])
    assert leased == new["private_ip"]
    serve(ns, 22, "web2-22")
    time.sleep(0.3)
    # same group passes; web's rules open 80 only, not 22, to other groups
    assert tcp(vm["web"], new["private_ip"], 22) == "web2-22" and tcp(vm["db"], new["private_ip"], 22) is None

    # the operator revokes the record by what the ledger holds; everything converges
    fixed = play("revoke.yml", group="g", ports="0", cidr="0.0.0.0/0")
    assert fixed.rc == 0, fixed.stdout[-3000:]
    with db.Ledger(ledger) as handle:
        with handle.read() as txn:
            assert sorted(r["from_port"] for r in groups.rules_of(txn, "g")) == [8, 22]
    assert tcp(outside, eip["g"], 22) == "g-22" and tcp(outside, eip["web"], 8080) == "web-8080"


def test_a_group_that_cannot_be_applied_keeps_what_it_has(netns):
    """The filter module with on_invalid=skip: a bad rule is left out, a group with a bad subnet
    or an overlapping one keeps the chain it had, everything else converges; fail refuses all."""
    ns = netns()
    good = [{"name": "web", "subnet": "10.1.0.0/24", "rules": [{"protocol": "tcp", "from_port": 80, "cidr": "0.0.0.0/0"}]},
            {"name": "db", "subnet": "10.2.0.0/24", "rules": [{"protocol": "tcp", "from_port": 5432, "source_group": "web"}]}]
    base = {"state": "overridden", "namespace": ns.name, "backend": "nft", "report": "full"}
    assert run_module("euca.cloud.firewall", dict(base, config=good)).changed

    def listing():
        return ns.run("nft", "list", "table", "ip", "euca_filter").stdout

    bad = [{"name": "web", "subnet": "10.1.0.5/24", "rules": []},                                   # host bits: whole group
           {"name": "db", "subnet": "10.2.0.0/24", "rules": [
               {"protocol": "tcp", "from_port": 5432, "source_group": "web"},
               {"protocol": "tcp", "from_port": 0, "cidr": "0.0.0.0/0"},                           # bad rule
               {"protocol": "icmp", "from_port": 8, "cidr": "0.0.0.0/0"}]},
           {"name": "app", "subnet": "10.3.0.0/24", "rules": [{"protocol": "udp", "from_port": 53, "cidr": "10.0.0.0/8"}]},
           {"name": "dup", "subnet": "10.3.0.0/25", "rules": []}]                                   # overlaps app
    strict = run_module("euca.cloud.firewall", dict(base, config=bad))
    assert strict.failed and "host bits" in strict.result["msg"]
    assert "sg-app" not in listing()  # nothing changed
    run = run_module("euca.cloud.firewall", dict(base, config=bad, on_invalid="skip"))
    assert not run.failed, run.result
    out = run.result
    assert "left_out" in out, run.stdout[-3000:]
    reasons = dict((p["group"], p) for p in out["left_out"])
    assert set(reasons) == {"web", "db", "dup"}, out["left_out"]
    assert "host bits" in reasons["web"]["reason"] and reasons["web"]["kept"] == "as applied before"
    assert "from_port 0 is outside 1-65535" in reasons["db"]["reason"] and "overlapping" in reasons["dup"]["reason"]
    text = listing()
    assert "ip saddr 10.1.0.0/24 accept" in text and "tcp dport 80 accept" in text     # web as it was
    assert "icmp type echo-request accept" in text and "udp dport 53 accept" in text           # db's good rules, app
    assert "sg-dup" not in text and "dport 0" not in text
    assert out["warnings"] and any("left out" in w for w in out["warnings"])


def test_an_elastic_ip_that_cannot_be_applied_keeps_its_mapping(netns):
    """The NAT module with on_invalid=skip: a mapping outside the pool or a second elastic IP of
    one instance is left out and named; an elastic IP left out keeps what it had; the rest converges."""
    ns = netns()
    ns.ip("link", "add", "pub", "type", "bridge")  # this kernel has no dummy links
    ns.ip("link", "set", "pub", "up")
    base = {"state": "overridden", "namespace": ns.name, "backend": "nft", "public_interface": "pub",
            "public_ips": ["203.0.113.32/28"], "private_networks": ["10.128.0.0/16"]}
    first = [{"public_ip": "203.0.113.33", "private_ip": "10.128.0.5"}]
    assert run_module("euca.cloud.nat", dict(base, config=first)).changed
    bad = [{"public_ip": "203.0.113.33", "private_ip": "10.128.0.300"},   # not an address: keeps 10.128.0.5
           {"public_ip": "203.0.113.99", "private_ip": "10.128.0.6"},    # outside the pool
           {"public_ip": "203.0.113.34", "private_ip": "10.128.0.7"},
           {"public_ip": "203.0.113.35", "private_ip": "10.128.0.7"}]    # a second EIP of one instance
    assert run_module("euca.cloud.nat", dict(base, config=bad)).failed  # strict: nothing changes
    run = run_module("euca.cloud.nat", dict(base, config=bad, on_invalid="skip"))
    assert not run.failed, run.result
    left = dict((p["public_ip"], p) for p in run.result["left_out"])
    assert set(left) == {"203.0.113.33", "203.0.113.99", "203.0.113.35"}, run.result["left_out"]
    assert left["203.0.113.33"]["kept"] == "as applied before" and "outside the public_ips pool" in left["203.0.113.99"]["reason"]
    text = ns.run("nft", "list", "ruleset").stdout
    assert "203.0.113.33" in text and "10.128.0.5" in text and "10.128.0.7" in text
    assert "203.0.113.35" not in text and "203.0.113.99" not in text
    assert "203.0.113.34" in ns.ip("-4", "addr", "show", "dev", "pub").stdout
