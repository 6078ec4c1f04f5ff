"""record_observations: what the node controllers report becomes ledger transitions (a SQLite ledger in
tmp_path; every case also checks idempotence or that nothing else moved)."""

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.ledger import addresses, cloud, db, groups, images, instances, slices

CHECKSUM = "ab" * 32


@pytest.fixture
def ledger(tmp_path):
    handle = db.Ledger(str(tmp_path / "ledger.sqlite"), timeout=10)
    with handle.write() as txn:
        cloud.ensure_settings(txn, {"public_ips": ["203.0.113.10-203.0.113.12"], "private_network": "10.20.0.0/16",
                                    "addresses_per_group": 16})
        cloud.ensure_cluster(txn, "cluster_a")
        cloud.ensure_node(txn, "nc1", "cluster_a", 4, 1024, 40)
        cloud.ensure_node(txn, "nc2", "cluster_a", 4, 1024, 40)
        images.ensure_image(txn, "tiny", checksum=CHECKSUM, size_bytes=1024)
        groups.ensure_group(txn, "web")
    yield handle
    handle.close()


def launch(ledger, name, count=1):
    """``count`` pending instances, all on nc1 (GREEDY fills the first node)."""
    with ledger.write() as txn:
        out = instances.ensure_instances(txn, name=name, group="web", image="tiny", count=count, policy="GREEDY")
    assert all(i["node"] == "nc1" for i in out["instances"])
    return [i["id"] for i in out["instances"]]


def states(ledger):
    with ledger.read() as txn:
        return dict((i["id"], (i["state"], i["reason"]))
                    for i in slices.read_slice(txn, include_terminated=True)["instances"])


def record(ledger, observations, dry_run=False):
    with ledger.write(dry_run=dry_run) as txn:
        return instances.record_observations(txn, observations)


def dom(name, state="running", reason=""):
    return {"name": name, "state": state, "reason": reason}


def test_pending_instances_whose_domains_run_become_running_once(ledger):
    a, b = launch(ledger, "web", 2)
    out = record(ledger, [{"node": "nc1", "domains": [dom(a), dom(b)]}])
    assert out["changed"] and out["launched"] == sorted([a, b])
    assert states(ledger) == {a: ("running", ""), b: ("running", "")}
    again = record(ledger, [{"node": "nc1", "domains": [dom(a), dom(b)]}])
    assert not again["changed"] and again["launched"] == [] and again["msg"] == "every observed instance is as the ledger says"


def test_check_mode_records_nothing(ledger):
    (a,) = launch(ledger, "web")
    out = record(ledger, [{"node": "nc1", "domains": [dom(a)]}], dry_run=True)
    assert out["launched"] == [a] and states(ledger)[a][0] == "pending"


def test_a_launch_that_failed_terminates_with_the_reason_and_frees_its_address(ledger):
    a, b = launch(ledger, "web", 2)
    with ledger.write() as txn:
        addresses.ensure_address(txn, instance=b)
    out = record(ledger, [{"node": "nc1", "domains": [dom(a)],
                           "failed": [{"item": {"name": b}, "msg": "instance %s: define, start failed:\n boom" % b}]}])
    reason = "Server.InternalError: the node did not start the instance: instance %s: define, start failed: boom" % b
    assert out["launched"] == [a] and out["terminated"] == [{"id": b, "node": "nc1", "reason": reason}]
    assert states(ledger)[b] == ("terminated", reason)
    with ledger.read() as txn:
        view = slices.read_slice(txn)
    assert [e["instance"] for e in view["elastic_ips"]] == [None]
    # b's address and MAC go back to the group: the next launch gets them
    (c,) = launch(ledger, "more")
    with ledger.read() as txn:
        got = dict((i["id"], i) for i in slices.read_slice(txn, include_terminated=True)["instances"])
    assert got[c]["private_ip"] == got[b]["private_ip"] and got[c]["mac"] == got[b]["mac"]
    assert not record(ledger, [{"node": "nc1", "domains": [dom(a)], "failed": [{"name": b, "msg": "x"}]}])["changed"]


def test_pending_without_a_domain_and_without_a_failure_stays_pending(ledger):
    (a,) = launch(ledger, "web")
    out = record(ledger, [{"node": "nc1", "domains": []}])
    assert not out["changed"] and out["pending"] == [{"id": a, "node": "nc1", "observed": "gone"}]
    out = record(ledger, [{"node": "nc1", "domains": [dom(a, "stopped", "unknown")]}])
    assert out["pending"] == [{"id": a, "node": "nc1", "observed": "stopped"}] and states(ledger)[a][0] == "pending"


@pytest.mark.parametrize("why,reason", [
    ("shutdown", "Client.InstanceInitiatedShutdown: Instance initiated shutdown"),
    ("destroyed", "Client.UserInitiatedShutdown: User initiated shutdown (the domain was powered off on node nc1, "
                  "outside the cloud)"),
    ("saved", "Server.InternalError: the domain is shut off on node nc1 (libvirt: saved)"),
])
def test_a_running_instance_shut_off_on_its_node_becomes_stopped(ledger, why, reason):
    (a,) = launch(ledger, "web")
    record(ledger, [{"node": "nc1", "domains": [dom(a)]}])
    out = record(ledger, [{"node": "nc1", "domains": [dom(a, "stopped", why)]}])
    assert out["stopped"] == [{"id": a, "node": "nc1", "reason": reason}] and states(ledger)[a] == ("stopped", reason)
    # and started again on the node: running
    out = record(ledger, [{"node": "nc1", "domains": [dom(a)]}])
    assert out["started"] == [{"id": a, "node": "nc1"}] and states(ledger)[a][0] == "running"


def test_crashed_and_gone_instances_are_reported_not_changed(ledger):
    a, b = launch(ledger, "web", 2)
    record(ledger, [{"node": "nc1", "domains": [dom(a), dom(b)]}])
    before = states(ledger)
    out = record(ledger, [{"node": "nc1", "domains": [dom(a, "stopped", "crashed")]}])
    assert not out["changed"] and states(ledger) == before
    assert out["crashed"] == [{"id": a, "node": "nc1", "reason": "crashed"}]
    assert out["gone"] == [{"id": b, "node": "nc1", "state": "running"}]
    assert "gone from their node: %s on nc1" % b in out["msg"]


def test_unknown_domains_are_reported_with_what_the_ledger_knows(ledger):
    a, b = launch(ledger, "web", 2)
    with ledger.write() as txn:
        instances.ensure_instances(txn, state="terminated", instance_ids=[b])
    out = record(ledger, [{"node": "nc1", "domains": [dom(a), dom(b, "stopped", "shutdown"), dom("i-0badc0de")]},
                          {"node": "nc2", "domains": [dom(a)]}])
    assert out["launched"] == [a]
    assert out["unknown"] == sorted([
        {"id": b, "node": "nc1", "state": "stopped", "ledger": "terminated"},
        {"id": "i-0badc0de", "node": "nc1", "state": "running", "ledger": "none"},
    ], key=lambda u: u["id"]) + [{"id": a, "node": "nc2", "state": "running", "ledger": "placed on node nc1"}]


def test_an_instance_changed_since_the_poll_is_not_overturned(ledger):
    (a,) = launch(ledger, "web")
    record(ledger, [{"node": "nc1", "domains": [dom(a)]}])
    polled = [{"id": a, "state": "running"}]
    # stop-instances recorded its intent after the node was polled (the domain still runs)
    with ledger.write() as txn:
        instances.ensure_instances(txn, state="stopped", instance_ids=[a])
    (b,) = launch(ledger, "late")
    out = record(ledger, [{"node": "nc1", "expected": polled, "domains": [dom(a)]}])
    assert not out["changed"] and states(ledger)[a][0] == "stopped" and states(ledger)[b][0] == "pending"
    assert sorted(s["id"] for s in out["superseded"]) == sorted([a, b])
    # polled after the stop, the running domain is the truth
    out = record(ledger, [{"node": "nc1", "expected": [{"id": a, "state": "stopped"}], "domains": [dom(a)]}])
    assert out["started"] == [{"id": a, "node": "nc1"}]


def test_nodes_that_did_not_report_are_named_and_not_judged(ledger):
    (a,) = launch(ledger, "web")
    out = record(ledger, [{"node": "nc2", "domains": []}])
    assert out["unobserved"] == ["nc1"] and not out["changed"] and states(ledger)[a][0] == "pending"


@pytest.mark.parametrize("observations,match", [
    ([{"domains": []}], "needs node"),
    ([{"node": "nc1"}, {"node": "nc1"}], "observed twice"),
    ([{"node": "nc1", "domains": [{"name": "i-0badc0de", "state": "paused"}]}], "needs name and state"),
    ([{"node": "nc1", "failed": [{"msg": "x"}]}], "needs name"),
])
def test_bad_observations_are_refused(ledger, observations, match):
    with pytest.raises(InvalidInput, match=match):
        record(ledger, observations)
