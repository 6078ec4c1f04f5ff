"""The dispatcher's queue (ledger/jobs.py) on a real SQLite ledger, and its plan of playbook runs."""

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.ledger import db, jobs


@pytest.fixture
def ledger(tmp_path):
    handle = db.Ledger(str(tmp_path / "ledger.sqlite"), timeout=5)
    yield handle
    handle.close()


def put(ledger, kind, cluster, resources, account="alice", params=None):
    with ledger.write() as txn:
        return jobs.enqueue(txn, kind, cluster, resources, account, params)


def states(ledger):
    with ledger.read() as txn:
        return dict((r["id"], r["state"]) for r in txn.rows("SELECT id, state FROM jobs"))


def test_enqueue_stores_a_queued_job_and_refuses_bad_ones(ledger):
    first = put(ledger, "terminate", "cluster_a", ["i-00000001"])
    second = put(ledger, "attach", "cluster_a", ["vol-00000001"], params={"instance": "i-00000001", "device": "/dev/vdc"})
    assert second > first
    with ledger.read() as txn:
        row = txn.row("SELECT * FROM jobs WHERE id = ?", second)
    assert row["state"] == "queued" and row["account"] == "alice" and row["created_at"].endswith("Z")
    assert row["run"] is None and row["started_at"] is None
    for kind, cluster, resources, params, match in [
        ("explode", "cluster_a", ["i-1"], None, "unknown job kind 'explode'"),
        ("terminate", "", ["i-1"], None, "needs the cluster"),
        ("terminate", "cluster_a", [], None, "needs the ids"),
        ("terminate", "cluster_a", [""], None, "non-empty strings"),
        ("attach", "cluster_a", ["vol-00000001"], {"device": "/dev/vdc"}, "needs params\\['instance'\\]"),
        ("snapshot", "cluster_a", ["snap-00000001"], {}, "needs params\\['volume'\\]"),
    ]:
        with pytest.raises(InvalidInput, match=match):
            put(ledger, kind, cluster, resources, params=params)
    # a converge may name nothing (the cluster as a whole)
    put(ledger, "converge", "cluster_a", [])
    assert sorted(states(ledger).values()) == ["queued"] * 3


def test_claim_takes_every_queued_job_of_the_oldest_cluster(ledger):
    a1 = put(ledger, "converge", "cluster_a", ["i-0000000a"])
    b1 = put(ledger, "converge", "cluster_b", ["i-0000000b"])
    a2 = put(ledger, "stop", "cluster_a", ["i-0000000c"], account="bob")
    with ledger.write() as txn:
        cluster, claimed = jobs.claim(txn)
    assert cluster == "cluster_a" and [j["id"] for j in claimed] == [a1, a2]
    assert claimed[1] == {"id": a2, "kind": "stop", "cluster": "cluster_a", "account": "bob",
                          "resources": ["i-0000000c"], "params": {}, "created_at": claimed[1]["created_at"],
                          "run": claimed[0]["run"]}
    assert len(claimed[0]["run"]) == 32
    with ledger.read() as txn:
        started = txn.rows("SELECT state, run, started_at FROM jobs WHERE cluster = 'cluster_a'")
    assert all(r["state"] == "running" and r["run"] == claimed[0]["run"] and r["started_at"] for r in started)
    assert states(ledger)[b1] == "queued"


def test_two_clusters_claim_independently_and_a_busy_cluster_is_not_claimed_again(ledger):
    put(ledger, "converge", "cluster_a", ["i-0000000a"])
    b1 = put(ledger, "converge", "cluster_b", ["i-0000000b"])
    with ledger.write() as txn:
        a_cluster, a_jobs = jobs.claim(txn)
    # cluster_a is running: new work for it waits, cluster_b is free
    a_late = put(ledger, "terminate", "cluster_a", ["i-0000000d"])
    with ledger.read() as txn:
        assert jobs.claimable(txn) == ["cluster_b"]
    with ledger.write() as txn:
        b_cluster, b_jobs = jobs.claim(txn)
        assert jobs.claim(txn) == (None, [])
        assert jobs.claim(txn, "cluster_a") == (None, [])
    assert (a_cluster, b_cluster) == ("cluster_a", "cluster_b")
    assert [j["id"] for j in b_jobs] == [b1] and b_jobs[0]["run"] != a_jobs[0]["run"]
    with ledger.write() as txn:
        assert jobs.finish(txn, [j["id"] for j in a_jobs], True, run=a_jobs[0]["run"]) == 1
    # done: what queued meanwhile is claimed now, by name too
    with ledger.write() as txn:
        assert jobs.claim(txn, "cluster_b") == (None, [])
        cluster, late = jobs.claim(txn, "cluster_a")
    assert cluster == "cluster_a" and [j["id"] for j in late] == [a_late]
    with ledger.write() as txn:
        assert jobs.claim(txn, "cluster_c") == (None, [])


def test_a_hundred_jobs_coalesce_into_one_run(ledger):
    ids = [put(ledger, "converge", "cluster_a", ["i-%08x" % n]) for n in range(100)]
    with ledger.write() as txn:
        cluster, claimed = jobs.claim(txn)
    assert [j["id"] for j in claimed] == ids
    planned = jobs.plan(claimed)
    assert planned == [{"playbook": "reconcile.yml", "extra_vars": {}, "jobs": ids}]
    with ledger.write() as txn:
        assert jobs.finish(txn, planned[0]["jobs"], True, run=claimed[0]["run"]) == 100
    with ledger.read() as txn:
        assert jobs.runs(txn) == [(claimed[0]["run"], "cluster_a", ["converge"], 100)]
        assert jobs.runs(txn, since_id=ids[-1]) == []


def test_finish_records_outcomes_and_only_for_its_own_run(ledger):
    ok = put(ledger, "start", "cluster_a", ["i-00000001"])
    bad = put(ledger, "stop", "cluster_a", ["i-00000002"])
    with ledger.write() as txn:
        _cluster, claimed = jobs.claim(txn)
    run = claimed[0]["run"]
    with ledger.write() as txn:
        assert jobs.finish(txn, [ok], True, "fine", run="someone-else") == 0
        assert jobs.finish(txn, [ok], True, run=run) == 1
        assert jobs.finish(txn, [bad], False, "the node did not answer") == 1
        # a finished job is not finished again
        assert jobs.finish(txn, [ok, bad], False, "late") == 0
        assert jobs.finish(txn, [], True) == 0
    with ledger.read() as txn:
        rows = dict((r["id"], r) for r in txn.rows("SELECT * FROM jobs"))
    assert rows[ok]["state"] == "done" and rows[ok]["message"] is None and rows[ok]["finished_at"]
    assert rows[bad]["state"] == "failed" and rows[bad]["message"] == "the node did not answer"


def test_recover_queues_again_what_a_killed_dispatcher_left_running(ledger):
    done = put(ledger, "start", "cluster_a", ["i-00000001"])
    with ledger.write() as txn:
        _cluster, first = jobs.claim(txn)
        jobs.finish(txn, [done], True, run=first[0]["run"])
    left = [put(ledger, "terminate", "cluster_a", ["i-00000002"]), put(ledger, "converge", "cluster_a", [])]
    with ledger.write() as txn:
        jobs.claim(txn)
    # the dispatcher dies here; the next one starts with recover()
    with ledger.write() as txn:
        assert jobs.recover(txn) == 2
        assert jobs.recover(txn) == 0
    assert states(ledger) == {done: "done", left[0]: "queued", left[1]: "queued"}
    with ledger.read() as txn:
        assert txn.value("SELECT COUNT(*) FROM jobs WHERE run IS NOT NULL AND state = 'queued'") == 0
    with ledger.write() as txn:
        _cluster, again = jobs.claim(txn)
    assert [j["id"] for j in again] == left


def test_active_shows_the_newest_unfinished_job_per_resource(ledger):
    put(ledger, "stop", "cluster_a", ["i-00000001", "i-00000002"])
    put(ledger, "attach", "cluster_a", ["vol-00000001"], params={"instance": "i-00000001"})
    with ledger.write() as txn:
        _cluster, claimed = jobs.claim(txn)
    put(ledger, "terminate", "cluster_a", ["i-00000002"])
    with ledger.read() as txn:
        assert jobs.active(txn) == {"i-00000001": "stop", "i-00000002": "terminate", "vol-00000001": "attach"}
        assert jobs.active(txn, ["i-00000002", "i-0000dead"]) == {"i-00000002": "terminate"}
        assert jobs.active(txn, []) == {}
    with ledger.write() as txn:
        jobs.finish(txn, [j["id"] for j in claimed], True)
    with ledger.read() as txn:
        assert jobs.active(txn) == {"i-00000002": "terminate"}


def test_failed_reports_the_newest_finished_job_when_it_failed(ledger):
    def run_one(kind, resources, ok, message, params=None):
        put(ledger, kind, "cluster_a", resources, params=params)
        with ledger.write() as txn:
            _cluster, claimed = jobs.claim(txn)
            jobs.finish(txn, [j["id"] for j in claimed], ok, message)

    run_one("create-volume", ["vol-00000001"], False, "the SC is full")
    run_one("create-volume", ["vol-00000002"], False, "no such backend")
    run_one("create-volume", ["vol-00000002"], True, None)
    # an id that is a LIKE wildcard pattern matches only itself
    run_one("converge", ["x_y%z"], False, "odd")
    put(ledger, "delete-volume", "cluster_a", ["vol-00000001"])  # queued: not finished, does not count
    with ledger.read() as txn:
        assert jobs.failed(txn, ["vol-00000001", "vol-00000002", "vol-00000003"]) == {"vol-00000001": "the SC is full"}
        assert jobs.failed(txn, ["x_y%z", "xay%z", "x_yz"]) == {"x_y%z": "odd"}
        assert jobs.failed(txn, []) == {}
        many = ["vol-%08x" % n for n in range(120)]
        assert jobs.failed(txn, many) == {"vol-00000001": "the SC is full"}


def test_runs_lists_finished_runs_only(ledger):
    put(ledger, "terminate", "cluster_a", ["i-00000001"])
    put(ledger, "converge", "cluster_a", ["i-00000001"])
    with ledger.write() as txn:
        _cluster, first = jobs.claim(txn)
    with ledger.write() as txn:
        jobs.finish(txn, [first[0]["id"]], True)
    with ledger.read() as txn:
        assert jobs.runs(txn) == []  # its converge job still runs
    with ledger.write() as txn:
        jobs.finish(txn, [first[1]["id"]], False, "x")
    with ledger.read() as txn:
        assert jobs.runs(txn) == [(first[0]["run"], "cluster_a", ["terminate", "converge"], 2)]


def job(id_, kind, resources, params=None, cluster="cluster_a"):
    return {"id": id_, "kind": kind, "cluster": cluster, "account": "alice", "resources": resources,
            "params": params or {}, "created_at": "", "run": "r"}


def test_plan_orders_runs_and_merges_what_the_playbooks_allow():
    claimed = [
        job(1, "converge", ["i-00000001"]),
        job(2, "reboot", ["i-00000003"]),
        job(3, "attach", ["vol-00000001"], {"instance": "i-00000003", "device": "/dev/vdc"}),
        job(4, "start", ["i-00000004"]),
        job(5, "snapshot", ["snap-00000001"], {"volume": "vol-00000002"}),
        job(6, "create-volume", ["vol-00000003"]),
        job(7, "delete-volume", ["vol-00000004"]),
        job(8, "detach", ["vol-00000005"], {"force": True}),
        job(9, "stop", ["i-00000005", "i-00000006"]),
        job(10, "terminate", ["i-00000007"]),
        job(11, "converge", []),
        job(12, "terminate", ["i-00000008", "i-00000007"]),
        job(13, "stop", ["i-00000006", "i-00000009"]),
        job(14, "delete-snapshot", ["snap-00000002"]),
        job(15, "create-volume", ["vol-00000006"]),
        job(16, "attach", ["vol-00000007"], {"instance": "i-00000003"}),
        job(17, "create-volume", ["vol-00000003"]),  # the same request twice: one run
        job(18, "detach", ["vol-00000008"]),
    ]
    assert jobs.plan(claimed) == [
        {"playbook": "terminate-instances.yml", "jobs": [10, 12],
         "extra_vars": {"instance_ids": ["i-00000007", "i-00000008"], "euca_terminate_reason": jobs.TERMINATE_REASON}},
        {"playbook": "stop-instances.yml", "jobs": [9, 13],
         "extra_vars": {"instance_ids": ["i-00000005", "i-00000006", "i-00000009"]}},
        {"playbook": "detach-volume.yml", "jobs": [8], "extra_vars": {"volume": "vol-00000005", "force": True}},
        {"playbook": "detach-volume.yml", "jobs": [18], "extra_vars": {"volume": "vol-00000008", "force": False}},
        {"playbook": "delete-volume.yml", "jobs": [7], "extra_vars": {"volume": "vol-00000004", "force": True}},
        {"playbook": "create-volume.yml", "jobs": [6, 17], "extra_vars": {"volume_id": "vol-00000003"}},
        {"playbook": "create-volume.yml", "jobs": [15], "extra_vars": {"volume_id": "vol-00000006"}},
        {"playbook": "create-snapshot.yml", "jobs": [5],
         "extra_vars": {"snapshot_id": "snap-00000001", "volume": "vol-00000002"}},
        {"playbook": "delete-snapshot.yml", "jobs": [14],
         "extra_vars": {"snapshot": "snap-00000002", "cluster": "cluster_a"}},
        {"playbook": "attach-volume.yml", "jobs": [3],
         "extra_vars": {"volume": "vol-00000001", "instance": "i-00000003", "device": "/dev/vdc"}},
        {"playbook": "attach-volume.yml", "jobs": [16], "extra_vars": {"volume": "vol-00000007", "instance": "i-00000003"}},
        {"playbook": "start-instances.yml", "jobs": [4], "extra_vars": {"instance_ids": ["i-00000004"]}},
        {"playbook": "reboot-instances.yml", "jobs": [2], "extra_vars": {"instance_ids": ["i-00000003"]}},
        {"playbook": "reconcile.yml", "jobs": [1, 11], "extra_vars": {}},
    ]
    assert jobs.plan([]) == []
    assert [run["playbook"] for run in jobs.plan(list(reversed(claimed)))] == [
        run["playbook"] for run in jobs.plan(claimed)]


def test_plan_leaves_terminated_instances_out_of_later_instance_runs():
    planned = jobs.plan([
        job(1, "stop", ["i-00000001", "i-00000002"]),
        job(2, "terminate", ["i-00000001"]),
        job(3, "reboot", ["i-00000001"]),
    ])
    # the reboot of an instance being terminated rides with the terminate run
    assert planned == [
        {"playbook": "terminate-instances.yml", "jobs": [2, 3],
         "extra_vars": {"instance_ids": ["i-00000001"], "euca_terminate_reason": jobs.TERMINATE_REASON}},
        {"playbook": "stop-instances.yml", "jobs": [1], "extra_vars": {"instance_ids": ["i-00000002"]}},
    ]
    with pytest.raises(InvalidInput, match="unknown kind 'explode'"):
        jobs.plan([job(1, "explode", ["x"])])
