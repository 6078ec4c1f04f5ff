"""Concurrency and durability of ledger allocations, on SQLite and on a real PostgreSQL.

- 8 processes x 500 allocations (elastic IPs and private IPs) at once: no duplicates, every
  allocation in the ledger, nothing extra.
- Workers killed with SIGKILL mid-loop, many times: every allocation a worker reported as
  committed is in the reopened ledger, and no launch is half-written.
- Two attach requests for one volume racing: exactly one wins, the other is told who holds it.
"""

import json
import multiprocessing
import os
import random
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict
from ansible_collections.euca.cloud.plugins.module_utils.ledger import db, instances, volumes
from harness import ledger_load

def spawn_worker(url, worker_id, count, *extra):
    return subprocess.Popen(
        [sys.executable, ledger_load.__file__, "worker", url, str(worker_id), str(count)] + list(extra),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def first_line(proc, timeout):
    """What the worker wrote until its first committed record (a whole line), read from the pipe itself so
    that ``communicate`` goes on exactly where this stopped."""
    data, deadline = b"", time.monotonic() + timeout
    while b"\n" not in data:
        ready, _, _ = select.select([proc.stdout], [], [], max(0, deadline - time.monotonic()))
        assert ready, "a worker committed nothing in %d s" % timeout
        chunk = os.read(proc.stdout.fileno(), 65536)
        assert chunk, "a worker ended before its first commit: %s" % proc.stderr.read()
        data += chunk
    return data.decode()


def committed(stdout):
    """Records of complete lines only: a line is written after its commit returned."""
    out = []
    for line in stdout.splitlines(True):
        if line.endswith("\n"):
            out.append(json.loads(line))
    return out


def test_parallel_allocations_are_unique(ledger_url):
    ledger_load.prepare(ledger_url)
    workers = [spawn_worker(ledger_url, n, 500) for n in range(8)]
    records = []
    for proc in workers:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        records.extend(committed(stdout))
    assert len(records) == 8 * 500
    eips = [v for r in records if r["kind"] == "eip" for v in r["values"]]
    ips = [v for r in records if r["kind"] == "ip" for v in r["values"]]
    macs = [v for r in records if r["kind"] == "ip" for v in r["macs"]]
    assert len(eips) == 8 * 63 and len(ips) == 8 * 437
    assert len(set(eips)) == len(eips), "an elastic IP was handed out twice"
    assert len(set(ips)) == len(ips), "a private IP was handed out twice"
    assert len(set(macs)) == len(macs), "a MAC was handed out twice"
    with db.Ledger(ledger_url) as ledger:
        with ledger.read() as txn:
            assert set(r["address"] for r in txn.rows("SELECT address FROM elastic_ips")) == set(eips)
            assert sorted(r["private_ip"] for r in txn.rows("SELECT private_ip FROM instances")) == sorted(ips)
            # one generation per committed allocation, plus the setup's
            assert txn.current_generation() >= 8 * 500


def _verify_round(ledger_url, records, launch_size):
    with db.Ledger(ledger_url) as ledger:
        with ledger.read() as txn:
            eips = dict((r["name"], r["address"]) for r in txn.rows("SELECT name, address FROM elastic_ips"))
            for record in records:
                if record["kind"] == "eip":
                    assert eips.get(record["label"]) == record["values"][0], "lost elastic IP %s" % record
                else:
                    rows = txn.rows("SELECT id, private_ip FROM instances WHERE name = ? ORDER BY launch_index", record["label"])
                    assert [r["id"] for r in rows] == record["ids"], "lost launch %s" % record
                    assert [r["private_ip"] for r in rows] == record["values"]
            # nothing half-written: every reservation is complete and every instance whole
            for reservation in txn.rows(
                    "SELECT reservation_id, COUNT(*) AS n, MIN(launch_index) AS lo, MAX(launch_index) AS hi "
                    "FROM instances GROUP BY reservation_id"):
                assert (reservation["n"], reservation["lo"], reservation["hi"]) == (launch_size, 0, launch_size - 1)
            assert txn.value("SELECT COUNT(*) FROM instances WHERE private_ip IS NULL OR mac IS NULL OR node IS NULL") == 0
        if ledger.dialect == "sqlite":
            with sqlite3.connect(ledger_url) as raw:
                assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # make room for the next round: the pool holds 512 addresses in all
        with ledger.write() as txn:
            for row in txn.rows("SELECT * FROM instances WHERE state <> 'terminated'"):
                instances.terminate(txn, row)
            txn.exec("DELETE FROM elastic_ips")


def test_kill_9_mid_allocation_loses_nothing_committed(ledger_url):
    ledger_load.prepare(ledger_url)
    rng = random.Random(20261124)
    launch_size = 2
    total = 0
    for round_no in range(12):
        workers = [spawn_worker(ledger_url, "r%dw%d" % (round_no, n), 100000, "--eip-every", "5",
                                "--launch-size", str(launch_size)) for n in range(3)]
        # the kill lands mid-loop however long the workers took to start on a loaded machine: each has
        # committed once before the random wait begins
        first = [first_line(proc, timeout=120) for proc in workers]
        time.sleep(rng.uniform(0.3, 1.0))
        for proc in workers:
            os.kill(proc.pid, signal.SIGKILL)
        records = []
        for proc, line in zip(workers, first):
            stdout, stderr = proc.communicate(timeout=60)
            assert proc.returncode == -signal.SIGKILL, "worker ended on its own: %s" % stderr
            records.extend(committed(line + stdout))
        total += len(records)
        _verify_round(ledger_url, records, launch_size)
    assert total > 100, "the workers committed too little for the kills to land mid-loop"


def _attach(url, volume, instance, barrier, results):
    with db.Ledger(url, timeout=30) as ledger:
        barrier.wait()
        try:
            with ledger.write() as txn:
                volumes.ensure_attachment(txn, volume, instance)
            results.put(("ok", instance))
        except Conflict as exc:
            results.put(("refused", exc.msg))


def test_racing_attachments_exactly_one_wins(ledger_url):
    ledger_load.prepare(ledger_url)
    with db.Ledger(ledger_url) as ledger:
        with ledger.write() as txn:
            vms = [i["id"] for i in instances.ensure_instances(
                txn, name="race", group=ledger_load.GROUP, image="load", count=2)["instances"]]
            names = ["vol%d" % n for n in range(10)]
            for name in names:
                volumes.ensure_volume(txn, name=name, cluster="load", size_gb=1)
    ctx = multiprocessing.get_context("fork")
    for name in names:
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_attach, args=(ledger_url, name, vm, barrier, results)) for vm in vms]
        for proc in procs:
            proc.start()
        outcome = sorted(results.get(timeout=60) for _ in procs)
        for proc in procs:
            proc.join(timeout=30)
        assert [o[0] for o in outcome] == ["ok", "refused"], outcome
        winner = outcome[0][1]
        assert re.match(r"^volume vol-[0-9a-f]{8} is attached to %s as /dev/vd[b-z]; detach it first$" % winner, outcome[1][1])
        with db.Ledger(ledger_url) as ledger:
            with ledger.read() as txn:
                rows = txn.rows("SELECT a.instance_id FROM attachments a JOIN volumes v ON v.id = a.volume_id WHERE v.name = ?", name)
        assert [r["instance_id"] for r in rows] == [winner]
