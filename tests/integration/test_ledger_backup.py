"""Ledger backup and restore on a real SQLite file and a real PostgreSQL server.

- A backup taken while 4 processes keep allocating is one consistent snapshot: restored on its
  own, every worker's allocations are a prefix of what it reported (nothing after a gap, no
  half launch), and the generation equals the setup's plus one per allocation in it.
- A restore brings exactly the backed-up rows back; the same restore again changes nothing; the
  ledger it replaced is kept aside and restores back.
- Damaged and newer-schema backups (and one of the other backend) are refused with the ledger unchanged.
- backup-ledger.yml and restore-ledger.yml end to end on a ledger-only inventory (check, diff,
  idempotence, what they print), and restore-ledger.yml moving the generation past what a CC's
  filter has applied (a real nft ruleset in a throwaway namespace).
"""

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, EucaError, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.ledger import backup, db, groups, instances, schema, slices
from harness import ledger_load
from harness.runner import REPO_ROOT, run_module, run_playbook

pytestmark = [pytest.mark.integration]


def snapshot(url):
    """Every record of the ledger, and its generation apart."""
    with db.Ledger(url, migrate=False) as ledger:
        with ledger.read() as txn:
            found = slices.read_slice(txn, "cloud", include_terminated=True)
    return found.pop("generation"), found


def fresh_target(request, ledger_url, tmp_path, name):
    """Another empty ledger on the same backend as ``ledger_url``."""
    if db.is_postgres_url(ledger_url):
        server = request.getfixturevalue("postgres_server")
        created = server.create_database()
        request.addfinalizer(lambda: server.drop_database(created))
        return server.dsn(created)
    return str(tmp_path / name / "ledger.sqlite")


def prefix_of_each_worker(url):
    """Per worker, the allocation sequence numbers in the ledger (sorted)."""
    with db.Ledger(url) as ledger:
        with ledger.read() as txn:
            labels = [r["name"] for r in txn.rows("SELECT name FROM elastic_ips WHERE name LIKE 'w%'")]
            labels += [r["name"] for r in txn.rows("SELECT DISTINCT name FROM instances WHERE name LIKE 'w%'")]
            whole = txn.rows("SELECT name, COUNT(*) AS n FROM instances WHERE name LIKE 'w%' GROUP BY name")
            generation = txn.current_generation()
    seqs = {}
    for label in labels:
        worker, seq = label[1:].split("-")
        seqs.setdefault(worker, []).append(int(seq))
    return dict((w, sorted(s)) for w, s in seqs.items()), whole, generation


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_backup_while_four_processes_allocate_is_consistent(request, ledger_url, tmp_path):
    ledger_load.prepare(ledger_url)
    base = snapshot(ledger_url)[0]
    bdir = str(tmp_path / "backups")
    workers = [subprocess.Popen([sys.executable, ledger_load.__file__, "worker", ledger_url, str(n), "250",
                                 "--launch-size", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for n in range(4)]
    taken = []
    try:
        # three backups, each once the workers have committed more since the last one
        last, deadline = base, time.monotonic() + 300
        while len(taken) < 3 and any(p.poll() is None for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
            if snapshot(ledger_url)[0] > last:
                taken.append(backup.take(ledger_url, bdir, timeout=60))
                last = taken[-1]["generation"]
        outputs = [p.communicate(timeout=600) for p in workers]
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (_out, err) in zip(workers, outputs):
        assert proc.returncode == 0, err
    assert taken, "the workers finished before a backup was taken: raise their count"
    final_generation = snapshot(ledger_url)[0]
    during = [m for m in taken if base < m["generation"] < final_generation]
    assert during, "no backup landed while the workers were writing: %s" % [m["generation"] for m in taken]
    for n, made in enumerate(taken):
        target = fresh_target(request, ledger_url, tmp_path, "r%d" % n)
        out = backup.restore(target, made["path"], str(tmp_path / ("aside%d" % n)))
        assert out["changed"] and out["after"]["generation"] == made["generation"]
        seqs, whole, generation = prefix_of_each_worker(target)
        assert generation == made["generation"]
        # one generation per allocation: nothing committed after the snapshot leaked in, nothing before it is missing
        assert sum(len(s) for s in seqs.values()) == made["generation"] - base
        for worker, got in seqs.items():
            assert got == list(range(len(got))), "worker %s: not a prefix of its allocations: %s" % (worker, got)
        assert all(r["n"] == 2 for r in whole), "a launch of 2 was half in the backup"
        assert made["counts"]["instances"] == 2 * sum(1 for r in whole)


@pytest.fixture
def seeded(ledger_url):
    ledger_load.prepare(ledger_url)
    sink = io.StringIO()
    ledger_load.worker(ledger_url, "a", 12, out=sink)
    return ledger_url


def test_restore_brings_exactly_the_backup_back(seeded, tmp_path):
    url, bdir = seeded, str(tmp_path / "backups")
    gen0, saved = snapshot(url)
    made = backup.take(url, bdir)
    assert made["generation"] == gen0 and made["dialect"] == ("postgresql" if db.is_postgres_url(url) else "sqlite")
    ledger_load.worker(url, "b", 5, out=io.StringIO())
    with db.Ledger(url) as ledger:
        with ledger.write() as txn:
            groups.ensure_group(txn, "later")
            instances.ensure_instances(txn, state="terminated", name="wa-1")
    gen1, changed = snapshot(url)
    assert changed != saved
    out = backup.restore(url, made["path"], bdir)
    assert out["changed"] and out["previous"]
    gen2, restored = snapshot(url)
    assert restored == saved and gen2 == gen1 + 1
    again = backup.restore(url, made["path"], bdir)
    assert not again["changed"] and snapshot(url) == (gen2, saved)
    # the ledger that was replaced comes back from where it was kept
    back = backup.restore(url, out["previous"], bdir)
    assert back["changed"] and snapshot(url)[1] == changed and snapshot(url)[0] == gen2 + 1


def test_a_write_while_restoring_stops_the_restore_with_nothing_restored(seeded, tmp_path, monkeypatch):
    """A job that writes after the replaced ledger was kept aside: the install, under the ledger's write lock,
    sees the generation moved and restores nothing (the write is neither lost nor missing from the copy kept aside)."""
    url, bdir = seeded, str(tmp_path / "backups")
    made = backup.take(url, bdir)
    with db.Ledger(url) as ledger:
        with ledger.write() as txn:
            groups.ensure_group(txn, "before-restore")
    take = backup.take

    def take_then_someone_writes(*args, **kwargs):
        kept = take(*args, **kwargs)
        with db.Ledger(url) as ledger:
            with ledger.write() as txn:
                groups.ensure_group(txn, "sneaked-in")
        return kept

    monkeypatch.setattr(backup, "take", take_then_someone_writes)
    with pytest.raises(EucaError, match="the ledger changed while it was being restored"):
        backup.restore(url, made["path"], bdir)
    monkeypatch.undo()
    after = snapshot(url)
    assert [g["name"] for g in after[1]["security_groups"]] == ["before-restore", "load", "sneaked-in"]
    # a second try, with nobody writing, restores
    assert backup.restore(url, made["path"], bdir)["changed"]
    assert "sneaked-in" not in [g["name"] for g in snapshot(url)[1]["security_groups"]]


def damaged_pg_variants(good, tmp_path):
    with tarfile.open(good) as tar:
        meta = json.loads(tar.extractfile("backup.json").read())
        payload = tar.extractfile(meta["payload"]).read()

    def rebuild(name, meta, payload):
        path = str(tmp_path / name)
        with tarfile.open(path, "w") as tar:
            for member, body in (("backup.json", json.dumps(meta).encode()), (meta["payload"], payload)):
                info = tarfile.TarInfo(member)
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
        return path

    flipped = bytearray(payload)
    flipped[len(flipped) // 2] ^= 0xFF
    garbage = b"PGDMP" + b"\x00" * 64 + b"not a dump" * 50
    raw = open(good, "rb").read()
    truncated = str(tmp_path / "truncated.tar")
    with open(truncated, "wb") as f:
        f.write(raw[: len(raw) // 2])
    return [
        (rebuild("flipped.tar", meta, bytes(flipped)), "does not match the checksum"),
        (rebuild("garbage.tar", dict(meta, payload_sha256=hashlib.sha256(garbage).hexdigest()), garbage), "pg_restore"),
        (rebuild("newer.tar", dict(meta, schema_version=schema.LATEST + 1), payload), "knows only up to %d" % schema.LATEST),
        (truncated, "damaged"),
    ]


def test_damaged_newer_and_foreign_backups_are_refused_with_nothing_changed(seeded, tmp_path, request):
    url, bdir = seeded, str(tmp_path / "backups")
    made = backup.take(url, bdir)
    with db.Ledger(url) as ledger:
        with ledger.write() as txn:
            groups.ensure_group(txn, "after-backup")
    before, files = snapshot(url), sorted(os.listdir(bdir))
    if db.is_postgres_url(url):
        cases = damaged_pg_variants(made["path"], tmp_path)
        other = str(tmp_path / "other" / "ledger.sqlite")
    else:
        # the SQLite variants are in tests/unit/test_ledger_backup.py; here: one newer schema file
        with tarfile.open(made["path"]) as tar:
            meta = json.loads(tar.extractfile("backup.json").read())
            payload = tar.extractfile("ledger.sqlite").read()
        newer = str(tmp_path / "newer.tar")
        with tarfile.open(newer, "w") as tar:
            for member, body in (("backup.json", json.dumps(dict(meta, schema_version=schema.LATEST + 1)).encode()),
                                 ("ledger.sqlite", payload)):
                info = tarfile.TarInfo(member)
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
        cases = [(newer, "knows only up to %d" % schema.LATEST)]
        other = request.getfixturevalue("pg_database")
    for path, message in cases:
        with pytest.raises((InvalidInput, Conflict), match=message):
            backup.restore(url, path, bdir)
        assert snapshot(url) == before, path
        assert sorted(os.listdir(bdir)) == files, path
    # a backup of the other backend
    ledger_load.prepare(other)
    foreign = backup.take(other, str(tmp_path / "foreign"))
    with pytest.raises(InvalidInput, match="is a backup of a"):
        backup.restore(url, foreign["path"], bdir)
    assert snapshot(url) == before and sorted(os.listdir(bdir)) == files


# -- the playbooks ------------------------------------------------------------------------------
def inventory(cc_vars=None):
    py = sys.executable
    text = "[clc]\nlocalhost ansible_connection=local ansible_python_interpreter=%s\n" % py
    if cc_vars is not None:
        text += "[cc]\nlocalhost ansible_connection=local ansible_python_interpreter=%s %s\n" % (
            py, " ".join("%s=%s" % kv for kv in cc_vars.items()))
    return text


def play(name, url, check=False, diff=False, inv=None, **extra):
    run = run_playbook(REPO_ROOT / "playbooks" / name, inventory=inv or inventory(), check=check, diff=diff,
                       extravars=dict(extra, euca_ledger=url))
    assert run.rc == 0, run.stdout[-4000:]
    return run


def shown(run, task):
    return run.task_result(task)["msg"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_playbooks_back_up_and_restore_a_ledger(seeded, tmp_path):
    url, bdir = seeded, str(tmp_path / "backups")
    gen0, saved = snapshot(url)
    first = play("backup-ledger.yml", url, backup_dir=bdir)
    made = first.task_result("Write a backup of the ledger")
    assert made["changed"] and made["generation"] == gen0 and os.path.exists(made["path"])
    assert made["counts"]["instances"] == 10 and made["counts"]["addresses"] == 2
    assert "Wrote %s: ledger generation %d" % (made["path"], gen0) in shown(first, "Show the backup")
    # nothing changed since: nothing written
    again = play("backup-ledger.yml", url, backup_dir=bdir)
    assert not again.task_result("Write a backup of the ledger")["changed"]
    assert backup.list_backups(bdir) == [made["path"]]

    ledger_load.worker(url, "late", 3, out=io.StringIO())
    gen1, _ = snapshot(url)
    check = play("restore-ledger.yml", url, check=True, diff=True, backup_dir=bdir)
    res = check.task_result("Restore the ledger from the backup")
    assert res["changed"] and res["diff"]["before"]["generation"] == gen1
    assert res["diff"]["after"]["generation"] == gen1 + 1
    assert shown(check, "Show what was restored").startswith("Would restore %s" % made["path"])
    assert snapshot(url)[0] == gen1 and sorted(os.listdir(bdir)) == [os.path.basename(made["path"])]

    restored = play("restore-ledger.yml", url, backup_dir=bdir)
    res = restored.task_result("Restore the ledger from the backup")
    assert res["changed"] and res["ledger_generation"] == gen1 + 1 and res["generation"] == gen0
    assert snapshot(url) == (gen1 + 1, saved)
    msg = shown(restored, "Show what was restored")
    assert ("Restored %s" % made["path"]) in msg and ("ledger generation now %d" % (gen1 + 1)) in msg
    assert "10 instances" in msg and "Replaced ledger generation %d with 12 instances" % gen1 in msg
    assert "Previous ledger kept at %s" % res["previous"] in msg
    twice = play("restore-ledger.yml", url, backup_dir=bdir, backup=made["path"])
    assert not twice.task_result("Restore the ledger from the backup")["changed"]
    assert "The ledger already holds" in shown(twice, "Show what was restored")


@pytest.mark.root
@pytest.mark.timeout(300)
def test_restore_moves_past_the_generation_a_cc_applied(netns, tmp_path):
    """The ledger file is gone; the CC's filter holds generation 500: the restored ledger gets 501."""
    ns = netns()
    url, bdir = str(tmp_path / "clc" / "ledger.sqlite"), str(tmp_path / "backups")
    ledger_load.prepare(url)
    made = backup.take(url, bdir)
    applied = run_module("euca.cloud.firewall", {"config": [], "state": "overridden", "generation": 500,
                                                  "namespace": ns.name})
    assert applied.rc == 0 and applied.result.get("generation") == 500, applied.result
    os.unlink(url)
    cc = {"euca_namespace": ns.name, "euca_dhcp_state_dir": str(tmp_path / "dhcp"), "euca_public_interface": "pub"}
    run = play("restore-ledger.yml", url, inv=inventory(cc), backup_dir=bdir)
    res = run.task_result("Restore the ledger from the backup")
    assert res["changed"] and res["generation"] == made["generation"] and res["ledger_generation"] == 501
    assert snapshot(url)[0] == 501
    assert "There was no readable ledger before" in shown(run, "Show what was restored")
