"""The ledger modules run for real through Ansible (ansible-runner, as AWX would run them).

Each test is one play (two for check mode) against a fresh SQLite ledger in tmp_path. A
task costs about half a second here, so the starting state a test needs is written
in-process with the ledger operations (``seed``) and only the behaviour under test goes
through Ansible. Every refusal and every check-mode run is proven to leave the ledger as it
was by dumping all of its tables before and after.
"""

from __future__ import annotations

import json

from ansible_collections.euca.cloud.plugins.module_utils.ledger import cloud, db, groups, images, instances
from harness.ledger_dump import dump
from harness.runner import local_inventory, run_playbook

CHECKSUM = "ab" * 32


# ------------------------------------------------------------------ helpers
def play(tmp_path, ledger, tasks, check=False, diff=False, name="play"):
    """Run ``tasks`` ((title, module, args[, task keywords]) tuples) in one play on localhost.

    Every ledger module gets ``ledger`` from the action group's module_defaults.
    """
    body = []
    for entry in tasks:
        title, module, args = entry[:3]
        task = {"name": title, module: args}
        task.update(entry[3] if len(entry) > 3 else {})
        body.append(task)
    playbook = [{
        "name": name,
        "hosts": "localhost",
        "gather_facts": False,
        "module_defaults": {"group/euca.cloud.ledger": {"ledger": str(ledger)}},
        "tasks": body,
    }]
    path = tmp_path / ("%s.yml" % name)
    path.write_text(json.dumps(playbook, indent=1))
    return run_playbook(path, inventory=local_inventory(), check=check, diff=diff)


def results(run, *titles):
    """The result of each named task, with ``failed`` set from its event (ignored failures too)."""
    out = []
    for title in titles:
        events = run.task_events(title)
        assert len(events) == 1, "task %r: %d results\n%s" % (title, len(events), run.stdout[-3000:])
        res = dict(events[0]["event_data"].get("res", {}))
        res["failed"] = events[0]["event"] != "runner_on_ok"
        out.append(res)
    return out


def result(run, title):
    return results(run, title)[0]


def seed(ledger, public_ips=("203.0.113.10-203.0.113.20",), nodes=("nc1",), cores=8, more=None):
    """A cloud with a pool, cluster_a with ``nodes``, an image ``tiny`` and a group ``web``.

    ``more(txn)`` adds what a test needs on top, in the same transaction.
    """
    with db.Ledger(str(ledger)) as handle:
        with handle.write() as txn:
            cloud.ensure_settings(txn, {"private_network": "10.20.0.0/16", "addresses_per_group": 16,
                                        "public_ips": list(public_ips), "scheduler": "GREEDY"})
            cloud.ensure_cluster(txn, "cluster_a")
            for node in nodes:
                cloud.ensure_node(txn, node, "cluster_a", cores, 4096, 100)
            images.ensure_image(txn, "tiny", checksum=CHECKSUM, size_bytes=1024)
            groups.ensure_group(txn, "web", rules=[{"protocol": "tcp", "from_port": 80, "cidr": "0.0.0.0/0"}])
            extra = more(txn) if more else None
    return extra


# ------------------------------------------------------------------ idempotence, diff, generation
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRksZam8fncDPHcY4X5fy/UYcYWcFz3Yr5mt0MQsEh2 fixture"


def converge_tasks(suffix):
    """One task per ledger module that writes; run twice, the second pass must change nothing."""
    instance = "{{ web.instances[0].id }}"
    tasks = [
        ("cloud", "euca.cloud.cloud", {"network_mode": "vxlan", "private_network": "10.20.0.0/16",
                                       "addresses_per_group": 16, "segment_range": [500, 600],
                                       "public_ips": ["203.0.113.8/30", "203.0.113.20-203.0.113.21", "203.0.113.99"],
                                       "scheduler": "POWERSAVE",
                                       "vm_types": {"m1.small": {"cores": 1, "memory_mb": 128, "disk_gb": 2}}}),
        ("cluster", "euca.cloud.cluster", {"name": "cluster_a"}),
        ("node", "euca.cloud.node", {"name": "nc1", "cluster": "cluster_a", "cores": 4, "memory_mb": 2048, "disk_gb": 50}),
        ("image", "euca.cloud.image", {"name": "tiny", "checksum": CHECKSUM, "size_bytes": 1024, "format": "qcow2",
                                       "location": "images/tiny.qcow2"}),
        ("security_group", "euca.cloud.security_group", {
            "name": "web", "description": "web servers",
            "rules": [{"protocol": "tcp", "from_port": 80, "cidr": "0.0.0.0/0"},
                      {"protocol": "icmp", "from_port": -1, "to_port": -1, "cidr": "192.0.2.0/24"},
                      {"protocol": "all", "source_group": "web"}]}),
        ("instance", "euca.cloud.instance", {"name": "web", "group": "web", "image": "tiny", "count": 2}),
        ("address", "euca.cloud.address", {"name": "www", "instance": instance}),
        ("volume", "euca.cloud.volume", {"name": "data", "cluster": "cluster_a", "size_gb": 5}),
        ("volume_attachment", "euca.cloud.volume_attachment", {"volume": "data", "instance": instance}),
        ("snapshot", "euca.cloud.snapshot", {"name": "data-1", "volume": "data"}),
        ("account", "euca.cloud.account", {"name": "team", "quotas": {"max_instances": 4, "max_volume_gb": 10}}),
        ("keypair", "euca.cloud.keypair", {"name": "laptop key", "account": "team", "public_key": PUBLIC_KEY}),
    ]
    return [("%s %s" % (title, suffix), module, args, {"register": "web"} if title == "instance" and suffix == "first"
             else {}) for title, module, args in tasks]


def test_every_module_changes_once_then_is_idempotent_with_diff_and_generation(tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    first, again = converge_tasks("first"), converge_tasks("again")
    run = play(tmp_path, ledger, first + again, diff=True)
    assert run.rc == 0, run.stdout[-3000:]

    firsts = results(run, *[t[0] for t in first])
    for task, res in zip(first, firsts):
        assert res["changed"] and "diff" in res, task[0]
    for task, res in zip(again, results(run, *[t[0] for t in again])):
        assert not res["changed"], "%s changed on a re-run: %s" % (task[0], res.get("diff"))
        assert "diff" not in res and res["generation"] == firsts[-1]["generation"], task[0]
    # every change advances the generation by exactly one; the no-op re-runs above did not
    generations = [r["generation"] for r in firsts]
    assert generations == list(range(generations[0], generations[0] + len(firsts)))
    assert dict(dump(ledger)["ledger_meta"])["generation"] == generations[-1]

    done = dict((t[0].split()[0], r) for t, r in zip(first, firsts))
    assert done["cluster"]["diff"] == {"before": {}, "after": {"name": "cluster_a"}}
    settings = done["cloud"]["diff"]
    assert (settings["before"]["network_mode"], settings["before"]["segment_range"]) == ("vlan", [10, 4094])
    assert settings["after"] == done["cloud"]["settings"] and settings["after"]["network_mode"] == "vxlan"
    group = done["security_group"]["security_group"]
    assert done["security_group"]["diff"] == {"before": {}, "after": group}
    assert (group["segment_id"], group["subnet"], group["gateway"]) == (500, "10.20.0.0/28", "10.20.0.1")
    assert {"protocol": "tcp", "from_port": 80, "to_port": 80, "cidr": "0.0.0.0/0"} in group["rules"]
    assert {"protocol": "all", "from_port": -1, "to_port": -1, "source_group": "web"} in group["rules"]
    launch = done["instance"]
    assert launch["diff"]["before"] == {}
    assert sorted(launch["diff"]["after"]) == sorted(launch["launched"]) == sorted(i["id"] for i in launch["instances"])
    assert [i["private_ip"] for i in launch["instances"]] == ["10.20.0.2", "10.20.0.3"]
    assert all(i["node"] == "nc1" and i["state"] == "pending" and i["group"] == "web" for i in launch["instances"])
    first_id = launch["instances"][0]["id"]
    assert done["address"]["address"] == {"public_ip": "203.0.113.8", "name": "www", "instance": first_id, "account": "admin"}
    attach = done["volume_attachment"]["diff"]
    assert (attach["before"]["attachment"], attach["before"]["state"]) == (None, "available")
    assert attach["after"]["attachment"] == {"instance": first_id, "device": "/dev/vdb"}
    assert attach["after"]["state"] == "in-use"
    assert done["snapshot"]["snapshot"]["size_gb"] == 5
    assert done["image"]["image"]["id"].startswith("emi-") and done["image"]["image"]["format"] == "qcow2"
    assert done["account"]["diff"]["before"] == {} and done["account"]["account"]["quotas"]["max_instances"] == 4
    key = done["keypair"]["keypair"]
    assert (key["name"], key["account"], key["key_type"]) == ("laptop key", "team", "ssh-ed25519")
    assert key["fingerprint"] == done["keypair"]["diff"]["after"]["fingerprint"] and "private_key" not in done["keypair"]


# ------------------------------------------------------------------ check mode
def test_check_mode_predicts_the_real_run_and_changes_nothing(tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    seed(ledger, nodes=("nc1", "nc2"), cores=2)
    # each check-mode task is rolled back, so none may depend on another's change
    planned = [
        ("group", "euca.cloud.security_group", {"name": "db", "rules": [{"from_port": 5432, "source_group": "web"}]}),
        ("instances", "euca.cloud.instance", {"name": "web", "group": "web", "image": "tiny", "count": 3}),
        ("address", "euca.cloud.address", {"name": "web-ip"}),
        ("settings", "euca.cloud.cloud", {"scheduler": "ROUNDROBIN"}),
    ]
    rows = dump(ledger)
    run = play(tmp_path, ledger, planned + [("info", "euca.cloud.ledger_info", {})], check=True, diff=True)
    assert run.rc == 0, run.stdout[-3000:]
    assert dump(ledger) == rows
    predicted = dict(zip([t[0] for t in planned], results(run, *[t[0] for t in planned])))
    for title, res in predicted.items():
        assert res["changed"] and "diff" in res, title
    assert result(run, "info")["generation"] == dict(rows["ledger_meta"])["generation"]
    assert predicted["group"]["diff"]["before"] == {}
    assert predicted["group"]["security_group"]["subnet"] == "10.20.0.16/28"
    assert len(predicted["instances"]["launched"]) == 3
    assert predicted["settings"]["diff"]["before"]["scheduler"] == "GREEDY"
    assert predicted["settings"]["diff"]["after"]["scheduler"] == "ROUNDROBIN"

    # the real run does what check mode said (ids are random, allocations are not)
    run = play(tmp_path, ledger, planned, name="real")
    assert run.rc == 0, run.stdout[-3000:]
    done = dict(zip([t[0] for t in planned], results(run, *[t[0] for t in planned])))
    assert done["group"]["security_group"] == predicted["group"]["security_group"]

    def placement(res):
        return [(i["node"], i["private_ip"], i["mac"], i["state"]) for i in res["instances"]]

    assert placement(done["instances"]) == placement(predicted["instances"])
    assert [i["node"] for i in done["instances"]["instances"]] == ["nc1", "nc1", "nc2"]  # GREEDY, 2 cores per node
    assert done["address"]["address"] == predicted["address"]["address"] == {
        "public_ip": "203.0.113.10", "name": "web-ip", "instance": None, "account": "admin"}
    assert done["settings"]["settings"] == predicted["settings"]["settings"]
    assert dict(dump(ledger)["ledger_meta"])["generation"] == done["settings"]["generation"]


def test_check_mode_never_creates_a_missing_ledger(tmp_path):
    ledger = tmp_path / "not-yet" / "ledger.sqlite"
    tasks = [
        ("cloud", "euca.cloud.cloud", {"public_ips": ["203.0.113.0/30"]}),
        ("cluster", "euca.cloud.cluster", {"name": "cluster_a"}),
        ("node", "euca.cloud.node", {"name": "nc1", "cluster": "cluster_a", "cores": 1, "memory_mb": 1, "disk_gb": 1},
         {"ignore_errors": True}),
        ("info", "euca.cloud.ledger_info", {}, {"ignore_errors": True}),
        ("info for real", "euca.cloud.ledger_info", {}, {"ignore_errors": True, "check_mode": False}),
    ]
    run = play(tmp_path, ledger, tasks, check=True, diff=True)
    settings, cluster, node, info, info_real = results(run, "cloud", "cluster", "node", "info", "info for real")
    # simulated against an empty ledger, the plan is still complete
    assert settings["changed"] and settings["settings"]["public_ips"] == ["203.0.113.0/30"]
    assert cluster["changed"] and cluster["diff"] == {"before": {}, "after": {"name": "cluster_a"}}
    # every task is its own transaction: in check mode nc1's cluster was never registered
    assert node["failed"] and "unknown cluster 'cluster_a'" in node["msg"]
    for res in (info, info_real):
        assert res["failed"] and res["msg"].startswith("no ledger at %s" % ledger)
    assert not ledger.parent.exists()


# ------------------------------------------------------------------ refusals
def test_bad_input_fails_with_a_clear_message_and_changes_nothing(tmp_path):
    ledger = tmp_path / "ledger.sqlite"

    def two_addresses_and_db(txn):
        from ansible_collections.euca.cloud.plugins.module_utils.ledger import addresses
        addresses.ensure_address(txn, name="one")
        addresses.ensure_address(txn, name="two")
        groups.ensure_group(txn, "db", subnet="10.20.1.0/24")

    seed(ledger, public_ips=("203.0.113.10-203.0.113.11",), more=two_addresses_and_db)
    bad = [
        ("overlapping subnet", "euca.cloud.security_group", {"name": "x", "subnet": "10.20.1.128/25"},
         "subnet 10.20.1.128/25 overlaps subnet 10.20.1.0/24 of security group db"),
        ("segment 0", "euca.cloud.security_group", {"name": "x", "segment_id": 0},
         "segment_id 0 is not a valid vlan id (1-4094); 802.1Q tags 0 and 4095 are reserved"),
        ("segment 4095", "euca.cloud.security_group", {"name": "x", "segment_id": 4095},
         "segment_id 4095 is not a valid vlan id (1-4094)"),
        ("third address", "euca.cloud.address", {"name": "three"},
         "public_ips pool is exhausted: all 2 addresses are allocated"),
        ("unknown group", "euca.cloud.instance", {"name": "w", "group": "nope", "image": "tiny", "count": 1},
         "unknown security group 'nope': create it with euca.cloud.security_group first"),
        ("cidr /33", "euca.cloud.cloud", {"private_network": "10.0.0.0/33"},
         "private_network '10.0.0.0/33' is not a valid CIDR"),
        ("host bits", "euca.cloud.security_group", {"name": "x", "subnet": "10.1.2.3/16"},
         "subnet 10.1.2.3/16 has host bits set; did you mean 10.1.0.0/16?"),
        ("rule host bits", "euca.cloud.security_group", {"name": "web", "rules": [{"from_port": 22, "cidr": "10.1.2.3/16"}]},
         "group web tcp rule cidr 10.1.2.3/16 has host bits set"),
        ("count and exact_count", "euca.cloud.instance",
         {"name": "w", "group": "web", "image": "tiny", "count": 1, "exact_count": 1},
         "parameters are mutually exclusive: count|exact_count"),
        ("rule with cidr and source", "euca.cloud.security_group",
         {"name": "web", "rules": [{"from_port": 22, "cidr": "0.0.0.0/0", "source_group": "web"}]},
         "parameters are mutually exclusive: cidr|source_group found in rules"),
    ]
    rows = dump(ledger)
    tasks = ([(t, m, a, {"ignore_errors": True}) for t, m, a, _ in bad]
             + [("after", "euca.cloud.ledger_info", {"include_terminated": True})])
    run = play(tmp_path, ledger, tasks)
    for (title, _, _, message), res in zip(bad, results(run, *[t[0] for t in bad])):
        assert res["failed"], "%s did not fail: %s" % (title, res)
        assert message in res["msg"], "%s: %r lacks %r" % (title, res["msg"], message)
        assert not res["changed"]
    assert dump(ledger) == rows
    after = result(run, "after")
    assert after["generation"] == dict(rows["ledger_meta"])["generation"]
    assert [a["public_ip"] for a in after["elastic_ips"]] == ["203.0.113.10", "203.0.113.11"]
    assert [g["name"] for g in after["security_groups"]] == ["db", "web"]


# ------------------------------------------------------------------ exact_count
def test_exact_count_terminates_the_newest_and_grows(tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    seed(ledger)
    launch = {"name": "web", "group": "web", "image": "tiny"}
    steps = [
        ("two", dict(launch, exact_count=2)),
        ("four", dict(launch, exact_count=4)),
        ("three", dict(launch, exact_count=3)),
        ("count one", dict(launch, count=1)),
        ("one", dict(launch, exact_count=1)),
        ("count two", dict(launch, count=2)),
        ("none", dict(launch, exact_count=0)),
    ]
    run = play(tmp_path, ledger, [(t, "euca.cloud.instance", a) for t, a in steps])
    assert run.rc == 0, run.stdout[-3000:]
    two, four, three, count_one, one, count_two, none = results(run, *[s[0] for s in steps])

    def ids(res):
        return [i["id"] for i in res["instances"]]

    assert len(two["launched"]) == 2 and ids(two) == two["launched"] and two["terminated"] == []
    assert len(four["launched"]) == 2 and ids(four) == ids(two) + four["launched"]
    assert four["instances"][2]["reservation_id"] != two["instances"][0]["reservation_id"]
    # the newest goes first: the last of the second reservation
    assert three["terminated"] == [four["launched"][1]] and three["launched"] == []
    assert ids(three) == ids(four)[:3]
    # count is a minimum: it never terminates
    assert not count_one["changed"] and ids(count_one) == ids(three)
    assert one["changed"] and sorted(one["terminated"]) == sorted(ids(four)[1:3]) and ids(one) == ids(two)[:1]
    assert len(count_two["launched"]) == 1 and ids(count_two) == ids(one) + count_two["launched"]
    # a terminated instance's address is free again: lowest free first
    assert count_two["instances"][1]["private_ip"] == "10.20.0.3"
    assert none["changed"] and sorted(none["terminated"]) == sorted(ids(count_two)) and none["instances"] == []

    table = dict((r[0], r) for r in dump(ledger)["instances"])
    assert len(table) == 5
    with db.Ledger(str(ledger)) as handle, handle.read() as txn:
        rows = dict((i, instances.get_instance(txn, i)) for i in table)
    assert set(r["state"] for r in rows.values()) == {"terminated"}
    assert rows[four["launched"][1]]["reason"] == "terminated to meet exact_count 3"


# ------------------------------------------------------------------ ledger_info
def test_ledger_info_scopes_and_generation(tmp_path):
    ledger = tmp_path / "ledger.sqlite"

    def workload(txn):
        from ansible_collections.euca.cloud.plugins.module_utils.ledger import addresses
        groups.ensure_group(txn, "db", rules=[{"protocol": "tcp", "from_port": 5432, "source_group": "web"}])
        groups.ensure_group(txn, "other")
        web = instances.ensure_instances(txn, name="web", group="web", image="tiny", count=3)["instances"]
        dbs = instances.ensure_instances(txn, name="db", group="db", image="tiny", count=1)["instances"]
        instances.ensure_instances(txn, name="db", state="stopped", reason="maintenance")
        addresses.ensure_address(txn, name="db-ip", instance=dbs[0]["id"])
        instances.ensure_instances(txn, instance_ids=[web[0]["id"]], state="terminated")
        return [i["id"] for i in web], dbs[0]["id"]

    web, db_id = seed(ledger, nodes=("nc1", "nc2"), cores=2, more=workload)
    generation = dict(dump(ledger)["ledger_meta"])["generation"]
    tasks = [
        ("cloud", "euca.cloud.ledger_info", {}),
        ("nc1", "euca.cloud.ledger_info", {"scope": "node", "name": "nc1"}),
        ("nc1 history", "euca.cloud.ledger_info", {"scope": "node", "name": "nc1", "include_terminated": True}),
        ("nc2", "euca.cloud.ledger_info", {"scope": "node", "name": "nc2"}),
        ("cluster", "euca.cloud.ledger_info", {"scope": "cluster", "name": "cluster_a"}),
        ("unknown node", "euca.cloud.ledger_info", {"scope": "node", "name": "nc9"}, {"ignore_errors": True}),
        ("node without name", "euca.cloud.ledger_info", {"scope": "node"}, {"ignore_errors": True}),
        ("noop", "euca.cloud.instance", {"name": "web", "group": "web", "image": "tiny", "count": 2}),
        ("change", "euca.cloud.instance", {"name": "db", "state": "running"}),
        ("cloud after change", "euca.cloud.ledger_info", {}),
    ]
    run = play(tmp_path, ledger, tasks)
    cloud_, nc1, nc1_history, nc2, cluster, unknown, nameless, noop, change, later = results(
        run, *[t[0] for t in tasks])

    assert not cloud_["changed"] and cloud_["generation"] == generation
    assert (cloud_["scope"], cloud_["name"], cloud_["clusters"]) == ("cloud", None, ["cluster_a"])
    assert [g["name"] for g in cloud_["security_groups"]] == ["db", "other", "web"]
    assert sorted(i["id"] for i in cloud_["instances"]) == sorted(web[1:] + [db_id])
    # the no-op leaves the generation, a change advances it by one
    assert not noop["changed"] and noop["generation"] == generation
    assert change["changed"] and change["generation"] == later["generation"] == generation + 1

    # a node sees its own instances, their groups (and rule sources) and images, nothing else
    assert [i["id"] for i in nc1["instances"]] == [web[1]]
    assert [n["name"] for n in nc1["nodes"]] == ["nc1"] and nc1["nodes"][0]["used"]["instances"] == 1
    assert [g["name"] for g in nc1["security_groups"]] == ["web"]
    assert nc1["elastic_ips"] == [] and [i["name"] for i in nc1["images"]] == ["tiny"]
    assert sorted(i["id"] for i in nc1_history["instances"]) == sorted(web[:2])
    assert sorted(i["id"] for i in nc2["instances"]) == sorted([web[2], db_id])
    assert [g["name"] for g in nc2["security_groups"]] == ["db", "web"]
    assert nc2["elastic_ips"] == [{"public_ip": "203.0.113.10", "name": "db-ip", "instance": db_id, "account": "admin"}]
    stopped = [i for i in nc2["instances"] if i["id"] == db_id][0]
    assert (stopped["state"], stopped["reason"], stopped["node"]) == ("stopped", "maintenance", "nc2")
    assert sorted(i["id"] for i in cluster["instances"]) == sorted(i["id"] for i in cloud_["instances"])
    assert [n["name"] for n in cluster["nodes"]] == ["nc1", "nc2"] and cluster["clusters"] == ["cluster_a"]
    assert [g["name"] for g in cluster["security_groups"]] == ["db", "web"]

    assert unknown["failed"] and unknown["msg"] == "unknown node 'nc9'"
    assert nameless["failed"] and "scope is node but all of the following are missing: name" in nameless["msg"]
