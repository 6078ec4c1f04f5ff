"""Ledger backup and restore on real SQLite files (module_utils/ledger/backup.py).

Every refusal is checked to leave the ledger row for row (and file for file) as it was.
PostgreSQL, concurrent writers and the playbooks are in tests/integration/test_ledger_backup.py.
"""

import json
import os
import sqlite3
import tarfile

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger import (
    addresses, backup, cloud, db, groups, images, instances, schema, volumes,
)
from harness.ledger_dump import dump


def seed(url, extra=0):
    with db.Ledger(url) as ledger:
        with ledger.write() as txn:
            cloud.ensure_settings(txn, {"public_ips": ["203.0.113.10-203.0.113.20"], "private_network": "10.20.0.0/16"})
            cloud.ensure_cluster(txn, "cluster_a")
            cloud.ensure_node(txn, "nc1", "cluster_a", 8, 4096, 100)
            images.ensure_image(txn, "tiny", checksum="ab" * 32, size_bytes=1024)
            groups.ensure_group(txn, "web", rules=[{"protocol": "tcp", "from_port": 80, "cidr": "0.0.0.0/0"}])
        with ledger.write() as txn:
            vms = instances.ensure_instances(txn, name="web", group="web", image="tiny", count=3)["instances"]
        with ledger.write() as txn:
            instances.ensure_instances(txn, state="terminated", instance_ids=[vms[2]["id"]])
        with ledger.write() as txn:
            addresses.ensure_address(txn, instance=vms[0]["id"])
            addresses.ensure_address(txn, name="spare")
            volumes.ensure_volume(txn, name="data", cluster="cluster_a", size_gb=1)
        for n in range(extra):
            with ledger.write() as txn:
                instances.ensure_instances(txn, name="later%d" % n, group="web", image="tiny", count=1)


def generation(url):
    with db.Ledger(url) as ledger:
        with ledger.read() as txn:
            return txn.current_generation()


def without_generation(rows):
    rows = dict(rows)
    rows["ledger_meta"] = [r for r in rows["ledger_meta"] if r[0] != "generation"]
    return rows


@pytest.fixture
def site(tmp_path):
    url = str(tmp_path / "clc" / "ledger.sqlite")
    seed(url)
    return url, str(tmp_path / "backups")


def test_backup_records_schema_generation_and_counts(site):
    url, bdir = site
    made = backup.take(url, bdir)
    assert os.path.basename(made["path"]).startswith("ledger-") and made["path"].endswith("-g%d.tar" % generation(url))
    assert oct(os.stat(made["path"]).st_mode & 0o777) == "0o600"
    meta = backup.read_meta(made["path"])
    assert meta["schema_version"] == schema.LATEST and meta["generation"] == generation(url) == 5
    assert meta["dialect"] == "sqlite" and meta["created_at"].endswith("Z")
    assert meta["counts"] == {"instances": 2, "instances_terminated": 1, "volumes": 1, "snapshots": 0, "addresses": 2,
                              "addresses_associated": 1, "security_groups": 1, "images": 1, "nodes": 1, "clusters": 1}
    with tarfile.open(made["path"]) as tar:
        assert tar.getnames() == ["backup.json", "ledger.sqlite"]
    # nothing left behind in the backup directory but the backup
    assert os.listdir(bdir) == [os.path.basename(made["path"])]


def test_restore_brings_the_backed_up_rows_back_and_moves_generation_forward(site):
    url, bdir = site
    saved = dump(db.sqlite_path(url))
    made = backup.take(url, bdir)
    with db.Ledger(url) as ledger:
        with ledger.write() as txn:
            instances.ensure_instances(txn, name="after", group="web", image="tiny", count=2)
            groups.ensure_group(txn, "db")
    changed_gen = generation(url)
    out = backup.restore(url, made["path"], bdir)
    assert out["changed"] and out["method"] == "one transaction in the live ledger"
    assert without_generation(dump(url)) == without_generation(saved)
    # past the generation it replaced: CCs that applied that one accept the restored ledger
    assert generation(url) == changed_gen + 1 == out["after"]["generation"]
    assert out["before"]["counts"]["instances"] == 4 and out["after"]["counts"]["instances"] == 2
    # the replaced ledger is kept aside, restorable, with the two later instances in it
    aside = backup.read_meta(out["previous"])
    assert os.path.basename(out["previous"]).startswith("pre-restore-")
    assert aside["generation"] == changed_gen and aside["counts"]["instances"] == 4
    # the newest *backup* is still the one restored: an aside copy never becomes "latest"
    assert backup.list_backups(bdir) == [made["path"]]
    again = backup.restore(url, made["path"], bdir)
    assert not again["changed"] and again["previous"] is None
    assert generation(url) == changed_gen + 1
    # the restored ledger is a working ledger
    with db.Ledger(url) as ledger:
        with ledger.write() as txn:
            got = instances.ensure_instances(txn, name="after", group="web", image="tiny", count=1)["instances"]
    assert got[0]["private_ip"] == "10.20.0.4"  # the lowest free: .2 and .3 are the backup's live two


def test_restore_when_the_ledger_file_was_deleted(site):
    url, bdir = site
    made = backup.take(url, bdir)
    saved = dump(url)
    os.unlink(url)
    # an old WAL without its database must not be paired with the restored file
    with open(url + "-wal", "wb") as stale:
        stale.write(b"\0" * 4096)
    out = backup.restore(url, made["path"], bdir, min_generation=10)
    assert out["changed"] and out["method"] == "rename" and out["before"] is None and out["previous"] is None
    assert not os.path.exists(url + "-wal")
    assert without_generation(dump(url)) == without_generation(saved)
    # past what the data plane applied
    assert generation(url) == 11 == out["after"]["generation"]
    assert sorted(os.listdir(os.path.dirname(url))) == ["ledger.sqlite"]


def test_a_damaged_ledger_is_moved_aside_and_replaced(site):
    url, bdir = site
    made = backup.take(url, bdir)
    saved = dump(url)
    with open(url, "r+b") as f:
        f.write(b"this is not a database any more" * 200)
    out = backup.restore(url, made["path"], bdir)
    assert out["changed"] and out["method"] == "rename" and out["before"] is None
    assert out["previous"] and all(".damaged-" in p for p in out["previous"])
    assert without_generation(dump(url)) == without_generation(saved)


def test_check_mode_changes_nothing(site):
    url, bdir = site
    made = backup.take(url, bdir)
    with db.Ledger(url) as ledger:
        with ledger.write() as txn:
            groups.ensure_group(txn, "db")
    before, files = dump(url), sorted(os.listdir(bdir))
    out = backup.restore(url, made["path"], bdir, check_mode=True)
    assert out["changed"] and out["after"]["generation"] == generation(url) + 1
    assert dump(url) == before and sorted(os.listdir(bdir)) == files


def corrupt_copies(good, tmp_path):
    """(name, path, expected message) of damaged or refused variants of the backup ``good``."""
    raw = open(good, "rb").read()
    cases = []

    def write(name, data):
        path = str(tmp_path / name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    cases.append(("truncated", write("truncated.tar", raw[: len(raw) // 2]), "damaged"))
    cases.append(("not a tar", write("garbage.tar", b"hello" * 1000), "damaged or not a ledger backup"))
    with tarfile.open(good) as tar:
        meta = json.loads(tar.extractfile("backup.json").read())
        payload = tar.extractfile("ledger.sqlite").read()

    def rebuild(name, meta, payload):
        path = str(tmp_path / name)
        with tarfile.open(path, "w") as tar:
            for member, body in (("backup.json", json.dumps(meta).encode()), ("ledger.sqlite", payload)):
                info = tarfile.TarInfo(member)
                info.size = len(body)
                tar.addfile(info, __import__("io").BytesIO(body))
        return path

    flipped = bytearray(payload)
    flipped[len(flipped) // 2] ^= 0xFF
    cases.append(("flipped byte", rebuild("flipped.tar", meta, bytes(flipped)), "does not match the checksum"))
    cases.append(("no metadata", rebuild("nometa.tar", {"format": 1}, payload), "lacks"))
    newer = dict(meta, schema_version=schema.LATEST + 1)
    cases.append(("newer schema", rebuild("newer.tar", newer, payload),
                  "schema version %d but this euca.cloud knows only up to %d" % (schema.LATEST + 1, schema.LATEST)))
    # a consistent file whose ledger's rows differ from what its metadata says (a tampered copy)
    tampered = str(tmp_path / "tampered.sqlite")
    with open(tampered, "wb") as f:
        f.write(payload)
    conn = sqlite3.connect(tampered)
    conn.execute("UPDATE instances SET state = 'running'")
    conn.commit()
    conn.close()
    body = open(tampered, "rb").read()
    import hashlib
    cases.append(("rows differ", rebuild("tampered.tar", dict(meta, payload_sha256=hashlib.sha256(body).hexdigest()), body),
                  "content_sha256"))
    return cases


def test_corrupt_and_newer_backups_are_refused_with_nothing_changed(site, tmp_path):
    url, bdir = site
    made = backup.take(url, bdir)
    with db.Ledger(url) as ledger:
        with ledger.write() as txn:
            groups.ensure_group(txn, "db")
    before, files = dump(url), sorted(os.listdir(bdir))
    ledger_files = sorted(os.listdir(os.path.dirname(url)))
    for name, path, message in corrupt_copies(made["path"], tmp_path):
        with pytest.raises((InvalidInput, Conflict), match=message):
            backup.restore(url, path, bdir)
        assert dump(url) == before, name
        assert sorted(os.listdir(bdir)) == files, name
        assert sorted(os.listdir(os.path.dirname(url))) == ledger_files, name


def test_refusals_of_missing_things(site, tmp_path):
    url, bdir = site
    with pytest.raises(NotFound, match="no backup file"):
        backup.restore(url, str(tmp_path / "nope.tar"), bdir)
    with pytest.raises(NotFound, match="nothing to back up"):
        backup.take(str(tmp_path / "none.sqlite"), bdir)
    assert not os.path.exists(str(tmp_path / "none.sqlite"))


def test_an_older_schema_backup_is_accepted_and_migrated(site, monkeypatch):
    """A backup of schema 1 restored by a collection that knows schema 2 comes back migrated."""
    url, bdir = site
    made = backup.take(url, bdir)
    step = (schema.LATEST + 1, "test step", ["CREATE TABLE test_extra (k TEXT PRIMARY KEY, v TEXT)"])
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS + [step])
    monkeypatch.setattr(schema, "LATEST", step[0])
    with db.Ledger(url):
        pass
    assert "test_extra" in dump(url)
    out = backup.restore(url, made["path"], bdir)
    assert out["changed"] and "test_extra" not in dump(url)
    with db.Ledger(url) as ledger:
        with ledger.read() as txn:
            assert schema.current_version(txn) == step[0]


def test_generation_rules():
    live = {"generation": 50, "content_sha256": "x"}
    assert backup.target_generation(40, None) == 40
    assert backup.target_generation(40, live) == 51
    assert backup.target_generation(60, live) == 60
    assert backup.target_generation(40, None, min_generation=39) == 40
    assert backup.target_generation(40, None, min_generation=40) == 41
    assert backup.target_generation(40, live, min_generation=70) == 71
    meta = {"generation": 40, "content_sha256": "x"}
    assert backup.up_to_date(meta, live) and not backup.up_to_date(meta, live, min_generation=51)
    assert not backup.up_to_date(dict(meta, content_sha256="y"), live) and not backup.up_to_date(meta, None)


def test_prune_keeps_the_newest(site):
    url, bdir = site
    made = []
    for n in range(3):
        with db.Ledger(url) as ledger:
            with ledger.write() as txn:
                groups.ensure_group(txn, "g%d" % n)
        made.append(backup.take(url, bdir)["path"])
    assert backup.prune(bdir, 2) == made[:1]
    assert backup.list_backups(bdir) == made[1:]
    assert backup.prune(bdir, 0) == []


def test_a_write_after_the_previous_ledger_was_kept_aside_stops_the_restore(site, tmp_path):
    """The install re-checks, under the ledger's write lock, that the ledger is still the one kept aside."""
    url, bdir = site
    made = backup.take(url, bdir)
    copy = str(tmp_path / "checked.sqlite")
    backup.verify(made["path"], str(tmp_path))
    os.rename(str(tmp_path / "ledger.sqlite"), copy)
    kept_aside_at = generation(url)
    with db.Ledger(url) as ledger:
        with ledger.write() as txn:
            groups.ensure_group(txn, "sneaked-in")
    before = dump(url)
    with pytest.raises(Conflict, match="the ledger changed while it was being restored"):
        backup._install_sqlite_live(url, copy, kept_aside_at, timeout=5)
    assert dump(url) == before
    backup._install_sqlite_live(url, copy, kept_aside_at + 1, timeout=5)
    assert without_generation(dump(url)) == without_generation(dump(copy))
