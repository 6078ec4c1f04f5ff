# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup and restore of the ledger (SQLite or PostgreSQL).

A backup is one tar file ``ledger-<UTC stamp>-g<generation>.tar`` holding two members:

- ``backup.json``: format, dialect, schema version, ledger generation, created_at, the
  counts of what it holds, the SHA-256 of the payload and a digest of the ledger's rows
  (every row of every table, the generation counter left out);
- the payload: ``ledger.sqlite`` (a copy made with SQLite's online backup API, consistent
  while other processes write) or ``ledger.pgdump`` (``pg_dump --format=custom`` taken in
  the same exported snapshot the metadata was read in).

Restore checks the whole file before anything changes (tar, JSON, payload checksum,
schema version not newer than this collection's, SQLite integrity and row digest,
``pg_restore --list``), keeps the ledger it replaces aside as a backup of its own
(``pre-restore-<stamp>-g<generation>.tar`` in the backup directory) and installs the new
content atomically:

- SQLite: the backup is rebuilt in a temporary file in the ledger's directory, checked,
  fsynced; a missing or unreadable ledger is replaced by ``rename()`` (after its stray
  WAL/SHM files are gone), a live one in one transaction that holds the ledger's write lock
  and copies that file's objects and rows into it (other processes that hold the ledger open
  see the old or the new content, never a mix, and a crash leaves the old one; renaming over
  a WAL database that others have open would pair their WAL with the new file).
- PostgreSQL: one ``psql --single-transaction`` that takes the ledger's write lock, drops
  every object of the ledger's schema and loads the dump; the row digest is checked afterwards.

The restored ledger's generation is never lower than the backup's, than that of the
ledger it replaces, or than ``min_generation`` (the highest generation the data plane has
applied): CCs refuse to apply a generation older than the one in place, so a restored
ledger must move forward for reconcile to converge them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile

from ansible_collections.euca.cloud.plugins.module_utils.errors import (
    Conflict,
    EucaError,
    InvalidInput,
    LedgerUnavailable,
    NotFound,
)
from ansible_collections.euca.cloud.plugins.module_utils.ledger import db, schema

FORMAT = 1
META_MEMBER = "backup.json"
PAYLOAD = {"sqlite": "ledger.sqlite", "postgresql": "ledger.pgdump"}
BACKUP_PREFIX = "ledger-"
ASIDE_PREFIX = "pre-restore-"
SUFFIX = ".tar"
DEFAULT_BACKUP_DIR = "/var/lib/euca/clc/backups"
_CHUNK = 1 << 20


class CorruptBackup(InvalidInput):
    """The backup file is damaged or not a ledger backup; nothing was changed."""


# -- small helpers ----------------------------------------------------------------------------
def _stamp():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_url(url):
    """The ledger's URL without its password (for messages)."""
    if not db.is_postgres_url(url) or "@" not in url:
        return url
    head, tail = url.split("@", 1)
    scheme, _sep, creds = head.partition("://")
    return "%s://%s@%s" % (scheme, creds.split(":", 1)[0], tail)


def _rows_sqlite(conn, sql, params=()):
    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _rows_pg(conn, sql, params=()):
    return [dict(r) for r in conn.execute(sql.replace("?", "%s"), params).fetchall()]


# -- what a ledger holds ----------------------------------------------------------------------
def _tables(rows, dialect):
    if dialect == "postgresql":
        found = rows("SELECT table_name AS name FROM information_schema.tables "
                     "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")
    else:
        found = rows("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    return sorted(r["name"] for r in found)


def describe(rows, dialect):
    """Schema version, generation, counts and row digest of a ledger, read through ``rows(sql)``.

    ``rows`` must read one consistent snapshot. The digest covers every row of every table
    except the generation counter, so two ledgers with the same content have the same digest
    whatever their generation and whichever backend holds them.
    """
    tables = _tables(rows, dialect)
    if "ledger_meta" not in tables or "schema_migrations" not in tables:
        raise CorruptBackup("not a euca.cloud ledger (no ledger_meta or schema_migrations table)")
    version = int(rows("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")[0]["v"])
    generation = rows("SELECT value FROM ledger_meta WHERE key = 'generation'")
    generation = int(generation[0]["value"]) if generation else 0
    digest = hashlib.sha256()
    for table in tables:
        lines = []
        for row in rows('SELECT * FROM "%s"' % table):
            if table == "ledger_meta" and row.get("key") == "generation":
                continue
            lines.append(json.dumps(row, sort_keys=True, default=str))
        digest.update(("%s\n" % table).encode("utf-8"))
        for line in sorted(lines):
            digest.update(line.encode("utf-8") + b"\n")

    def count(table, where=""):
        if table not in tables:
            return 0
        return int(rows("SELECT count(*) AS n FROM %s %s" % (table, where))[0]["n"])

    counts = {
        "instances": count("instances", "WHERE state <> 'terminated'"),
        "instances_terminated": count("instances", "WHERE state = 'terminated'"),
        "volumes": count("volumes"),
        "snapshots": count("snapshots"),
        "addresses": count("elastic_ips"),
        "addresses_associated": count("elastic_ips", "WHERE instance_id IS NOT NULL"),
        "security_groups": count("security_groups"),
        "images": count("images"),
        "nodes": count("nodes"),
        "clusters": count("clusters"),
    }
    return {"schema_version": version, "generation": generation, "counts": counts, "content_sha256": digest.hexdigest()}


def summary(meta):
    """What the playbooks print and --diff shows of a ledger or backup."""
    if meta is None:
        return None
    keys = ("generation", "schema_version", "created_at", "counts", "content_sha256")
    return dict((k, meta[k]) for k in keys if k in meta)


# -- SQLite ------------------------------------------------------------------------------------
def _sqlite_open(path, timeout):
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = %d" % int(timeout * 1000))
    return conn


def _sqlite_describe(conn):
    conn.execute("BEGIN")
    try:
        return describe(lambda sql: _rows_sqlite(conn, sql), "sqlite")
    finally:
        conn.execute("ROLLBACK")


def _sqlite_check(path):
    """Open a SQLite file that is not in use, check its integrity; return its description."""
    try:
        conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise CorruptBackup("the SQLite copy in the backup cannot be opened: %s" % exc)
    try:
        try:
            result = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        except sqlite3.Error as exc:
            raise CorruptBackup("the SQLite copy in the backup is damaged: %s" % exc)
        if result != ["ok"]:
            raise CorruptBackup("the SQLite copy in the backup is damaged: %s" % "; ".join(result[:5]))
        try:
            return _sqlite_describe(conn)
        except sqlite3.Error as exc:
            raise CorruptBackup("the SQLite copy in the backup cannot be read: %s" % exc)
    finally:
        conn.close()


def _sqlite_current(path, timeout):
    """The live SQLite ledger's description, None when there is none, or 'unreadable'."""
    if not os.path.exists(path):
        return None
    try:
        conn = _sqlite_open(path, timeout)
    except sqlite3.Error:
        return "unreadable"
    try:
        return _sqlite_describe(conn)
    except (sqlite3.DatabaseError, CorruptBackup) as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise LedgerUnavailable("the ledger %s stayed locked for %ss: %s" % (path, timeout, exc))
        return "unreadable"
    finally:
        conn.close()


def _sqlite_snapshot(path, dest, timeout):
    """Copy the live ledger to ``dest`` with the online backup API; describe the copy."""
    src = _sqlite_open(path, timeout)
    try:
        out = sqlite3.connect(dest, isolation_level=None)
        try:
            # pages=-1: the whole database in one step, so one consistent snapshot even while
            # other processes commit (a step-wise copy would restart on each of their writes).
            src.backup(out, pages=-1)
            # a self-contained file: no WAL beside it
            out.execute("PRAGMA journal_mode = DELETE")
            meta = _sqlite_describe(out)
        finally:
            out.close()
    finally:
        src.close()
    _fsync_file(dest)
    return meta


# -- PostgreSQL --------------------------------------------------------------------------------
def _pg_conninfo(url):
    """(conninfo without the password, environment for libpq tools)."""
    psycopg = db.load_psycopg()
    if psycopg is None:
        raise LedgerUnavailable("the ledger is PostgreSQL but psycopg (3) is not installed on this host: "
                                "install Debian's python3-psycopg (the clc role does)")
    from psycopg import conninfo as pg_conninfo

    params = pg_conninfo.conninfo_to_dict(url)
    env = dict(os.environ)
    password = params.pop("password", None)
    if password:
        env["PGPASSWORD"] = str(password)
    env.setdefault("LC_ALL", "C.UTF-8")
    return pg_conninfo.make_conninfo(**params), env


def _pg_tool(name):
    found = shutil.which(name) or (os.path.exists("/usr/bin/%s" % name) and "/usr/bin/%s" % name)
    if not found:
        raise LedgerUnavailable("%s is not installed on this host: install Debian's postgresql-client "
                                "(the clc role does for a PostgreSQL ledger)" % name)
    return found


def _run(argv, env, what, timeout):
    try:
        proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise LedgerUnavailable("%s did not finish in %ss" % (what, timeout))
    if proc.returncode != 0:
        raise EucaError("%s failed (rc=%d): %s" % (what, proc.returncode, proc.stderr.decode("utf-8", "replace").strip()[-2000:]),
                        rc=proc.returncode)
    return proc


def _pg_connect(url, timeout):
    psycopg = db.load_psycopg()
    if psycopg is None:
        _pg_conninfo(url)  # raises the clear message
    try:
        return psycopg.connect(url, autocommit=True, row_factory=psycopg.rows.dict_row,
                               connect_timeout=max(1, int(timeout)))
    except psycopg.Error as exc:
        raise LedgerUnavailable("cannot connect to the PostgreSQL ledger: %s" % str(exc).strip())


def _pg_current(url, timeout):
    """The live PostgreSQL ledger's description, or None when the database holds no ledger."""
    conn = _pg_connect(url, timeout)
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            if not conn.execute("SELECT to_regclass('ledger_meta') IS NOT NULL AS p").fetchone()["p"]:
                return None
            try:
                return describe(lambda sql: _rows_pg(conn, sql), "postgresql")
            except CorruptBackup:
                return None  # the remains of a ledger: replaced whole, nothing to keep
        finally:
            conn.execute("ROLLBACK")
    finally:
        conn.close()


def _pg_snapshot(url, dest, timeout):
    """pg_dump in the snapshot the description is read in: both say the same."""
    conninfo, env = _pg_conninfo(url)
    pg_dump = _pg_tool("pg_dump")
    conn = _pg_connect(url, timeout)
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            if not conn.execute("SELECT to_regclass('ledger_meta') IS NOT NULL AS p").fetchone()["p"]:
                raise NotFound("the PostgreSQL database holds no ledger: nothing to back up")
            snapshot_id = conn.execute("SELECT pg_export_snapshot() AS s").fetchone()["s"]
            meta = describe(lambda sql: _rows_pg(conn, sql), "postgresql")
            _run([pg_dump, "--format=custom", "--snapshot=%s" % snapshot_id, "--file=%s" % dest, "--dbname=%s" % conninfo],
                 env, "pg_dump", max(600, timeout * 20))
        finally:
            conn.execute("ROLLBACK")
    finally:
        conn.close()
    _fsync_file(dest)
    return meta


# -- backup files -------------------------------------------------------------------------------
def _write_tar(dest, meta, payload_path, payload_name):
    """Write the backup atomically: a temporary file in the same directory, fsync, rename."""
    directory = os.path.dirname(dest)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
                body = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode("utf-8")
                info = tarfile.TarInfo(META_MEMBER)
                info.size, info.mode, info.mtime = len(body), 0o600, int(meta["created_ts"])
                tar.addfile(info, io.BytesIO(body))
                info = tar.gettarinfo(payload_path, arcname=payload_name)
                info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
                with open(payload_path, "rb") as handle:
                    tar.addfile(info, handle)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o600)
        os.rename(tmp, dest)
        _fsync_dir(directory)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _ensure_dir(path):
    if not os.path.isdir(path):
        os.makedirs(path, 0o700)


def list_backups(backup_dir, prefix=BACKUP_PREFIX):
    """Backup files in ``backup_dir``, oldest first (names sort by their UTC stamp)."""
    if not os.path.isdir(backup_dir):
        return []
    return [os.path.join(backup_dir, n) for n in sorted(os.listdir(backup_dir))
            if n.startswith(prefix) and n.endswith(SUFFIX)]


def take(url, backup_dir, timeout=30.0, prefix=BACKUP_PREFIX, path=None):
    """Write a backup of the ledger at ``url`` into ``backup_dir``; return its metadata (with ``path``)."""
    dialect = "postgresql" if db.is_postgres_url(url) else "sqlite"
    _ensure_dir(backup_dir)
    work = tempfile.mkdtemp(prefix=".work-", dir=backup_dir)
    try:
        payload = os.path.join(work, PAYLOAD[dialect])
        now = datetime.datetime.now(datetime.timezone.utc)
        if dialect == "sqlite":
            source = db.sqlite_path(url)
            if not os.path.exists(source):
                raise NotFound("no ledger at %s: nothing to back up" % source)
            try:
                meta = _sqlite_snapshot(source, payload, timeout)
            except sqlite3.Error as exc:
                raise LedgerUnavailable("cannot back up the ledger %s: %s" % (source, exc))
        else:
            meta = _pg_snapshot(url, payload, timeout)
        meta.update(
            format=FORMAT,
            dialect=dialect,
            created_at=now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            created_ts=int(now.timestamp()),
            payload=PAYLOAD[dialect],
            payload_sha256=_sha256_file(payload),
            payload_bytes=os.path.getsize(payload),
        )
        name = "%s%s-g%d%s" % (prefix, now.strftime("%Y%m%dT%H%M%S.%fZ"), meta["generation"], SUFFIX)
        dest = os.path.abspath(path) if path else os.path.join(backup_dir, name)
        _ensure_dir(os.path.dirname(dest))
        _write_tar(dest, meta, payload, PAYLOAD[dialect])
        meta["path"] = dest
        return meta
    finally:
        shutil.rmtree(work, ignore_errors=True)


def current(url, timeout=30.0):
    """Description of the live ledger: None when there is none, 'unreadable' for a damaged SQLite file."""
    if db.is_postgres_url(url):
        return _pg_current(url, timeout)
    try:
        return _sqlite_current(db.sqlite_path(url), timeout)
    except sqlite3.Error as exc:
        raise LedgerUnavailable("cannot read the ledger %s: %s" % (url, exc))


def read_meta(path):
    """The metadata of a backup file, checking only that it is a well-formed backup tar."""
    if not os.path.isfile(path):
        raise NotFound("no backup file at %s" % path)
    try:
        with tarfile.open(path, mode="r:") as tar:
            names = tar.getnames()
            if META_MEMBER not in names:
                raise CorruptBackup("%s is not a ledger backup (no %s in it)" % (path, META_MEMBER))
            meta = json.loads(tar.extractfile(META_MEMBER).read().decode("utf-8"))
    except (tarfile.TarError, EOFError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise CorruptBackup("%s is damaged or not a ledger backup: %s" % (path, exc))
    for key in ("format", "dialect", "schema_version", "generation", "payload", "payload_sha256", "content_sha256"):
        if key not in meta:
            raise CorruptBackup("%s is not a ledger backup: %s lacks %r" % (path, META_MEMBER, key))
    if meta["format"] != FORMAT:
        raise InvalidInput("%s is a ledger backup of format %s; this euca.cloud reads format %d"
                           % (path, meta["format"], FORMAT))
    if meta["payload"] not in names:
        raise CorruptBackup("%s is damaged: its payload %s is missing" % (path, meta["payload"]))
    meta["path"] = path
    return meta


def verify(path, dest_dir):
    """Check a backup file whole; extract its payload into ``dest_dir``; return (meta, payload path).

    Raises before anything outside ``dest_dir`` changed: damage (tar, JSON, checksum, SQLite
    integrity, row digest, pg_restore's table of contents) or a schema newer than this collection's.
    """
    meta = read_meta(path)
    if int(meta["schema_version"]) > schema.LATEST:
        raise Conflict("%s holds a ledger of schema version %d but this euca.cloud knows only up to %d: "
                       "upgrade the collection on the clc first; nothing was changed"
                       % (path, int(meta["schema_version"]), schema.LATEST))
    payload = os.path.join(dest_dir, os.path.basename(meta["payload"]))
    try:
        with tarfile.open(path, mode="r:") as tar:
            member = tar.getmember(meta["payload"])
            source = tar.extractfile(member)
            digest = hashlib.sha256()
            with open(payload, "wb") as out:
                for chunk in iter(lambda: source.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise CorruptBackup("%s is damaged: %s" % (path, exc))
    if digest.hexdigest() != meta["payload_sha256"]:
        raise CorruptBackup("%s is damaged: its %s does not match the checksum recorded at backup time; "
                            "nothing was changed" % (path, meta["payload"]))
    if meta["dialect"] == "sqlite":
        found = _sqlite_check(payload)
        for key in ("schema_version", "generation", "content_sha256"):
            if found[key] != meta[key]:
                raise CorruptBackup("%s is damaged: its ledger's %s is %s, the backup recorded %s; nothing was changed"
                                    % (path, key, found[key], meta[key]))
    elif meta["dialect"] == "postgresql":
        conninfo_env = dict(os.environ, LC_ALL="C.UTF-8")
        try:
            _run([_pg_tool("pg_restore"), "--list", payload], conninfo_env, "pg_restore --list", 600)
        except EucaError as exc:
            raise CorruptBackup("%s is damaged: %s; nothing was changed" % (path, exc.msg))
    else:
        raise CorruptBackup("%s is not a ledger backup: unknown dialect %r" % (path, meta["dialect"]))
    return meta, payload


# -- restore -------------------------------------------------------------------------------------
def target_generation(backup_generation, live, min_generation=0):
    """The generation a restored ledger gets: the backup's, moved past the replaced ledger's and the
    data plane's (``min_generation``) so that every CC accepts it."""
    target = int(backup_generation)
    if isinstance(live, dict) and live["generation"] >= target:
        target = live["generation"] + 1
    if min_generation and int(min_generation) >= target:
        target = int(min_generation) + 1
    return target


def up_to_date(meta, live, min_generation=0):
    """Whether the live ledger already holds the backup's content at a generation the data plane accepts."""
    return (isinstance(live, dict) and live["content_sha256"] == meta["content_sha256"]
            and live["generation"] >= int(meta["generation"]) and live["generation"] >= int(min_generation or 0))


def _aside_unreadable_sqlite(path, stamp):
    """Move a damaged SQLite ledger and its WAL/SHM files aside; return where they went."""
    moved = []
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            dest = "%s.damaged-%s%s" % (path, stamp, suffix)
            os.rename(path + suffix, dest)
            moved.append(dest)
    return moved


# The order objects are made in: data before the indexes and triggers over it (a trigger made
# first would fire for every copied row), views last.
_SQLITE_ORDER = {"table": 0, "index": 1, "trigger": 2, "view": 3}


def _install_sqlite_live(path, source, expect_generation, timeout):
    """Replace every object and row of the live ledger by the checked copy ``source``, in one transaction.

    The transaction holds the ledger's write lock (BEGIN IMMEDIATE, as every ledger writer
    does): other processes that have the ledger open see the old content or the new, a crash
    leaves the old (WAL), and a write that landed since the previous ledger was kept aside
    (its generation moved) makes the restore fail before anything changed.
    """
    conn = _sqlite_open(path, timeout)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = OFF")  # rows are copied table by table; the copy was checked whole
        conn.execute("ATTACH DATABASE ? AS restored", (source,))
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise LedgerUnavailable("the ledger %s stayed locked for %ss: %s" % (path, timeout, exc))
        try:
            now = conn.execute("SELECT value FROM main.ledger_meta WHERE key = 'generation'").fetchone()
            if now is None or int(now[0]) != int(expect_generation):
                raise Conflict("the ledger changed while it was being restored (another job wrote to it): "
                               "nothing was restored; stop the other jobs and run the restore again")
            old = conn.execute("SELECT type, name FROM main.sqlite_master WHERE name NOT LIKE 'sqlite_%' "
                               "AND type IN ('view', 'trigger', 'table')").fetchall()
            for kind, name in sorted(old, key=lambda o: -_SQLITE_ORDER[o[0]]):
                # a table's indexes and triggers go with it
                conn.execute('DROP %s IF EXISTS main."%s"' % (kind.upper(), name.replace('"', '""')))
            new = conn.execute("SELECT type, name, tbl_name, sql FROM restored.sqlite_master "
                               "WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'").fetchall()
            for kind, name, _table, sql in sorted(new, key=lambda o: _SQLITE_ORDER.get(o[0], 9)):
                conn.execute(sql)  # unqualified: made in main
                if kind == "table":
                    quoted = '"%s"' % name.replace('"', '""')
                    conn.execute("INSERT INTO main.%s SELECT * FROM restored.%s" % (quoted, quoted))
            if conn.execute("SELECT count(*) FROM restored.sqlite_master WHERE name = 'sqlite_sequence'").fetchone()[0]:
                conn.execute("DELETE FROM main.sqlite_sequence")
                conn.execute("INSERT INTO main.sqlite_sequence SELECT * FROM restored.sqlite_sequence")
            problems = conn.execute("PRAGMA main.foreign_key_check").fetchall()
            if problems:
                raise CorruptBackup("the backup's rows break the ledger's references (%s): nothing was restored"
                                    % ", ".join(str(p[0]) for p in problems[:5]))
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        conn.execute("DETACH DATABASE restored")
    finally:
        conn.close()


def _restore_sqlite(path, payload, target, live, timeout):
    directory = os.path.dirname(os.path.abspath(path))
    _ensure_dir(directory)
    fd, tmp = tempfile.mkstemp(prefix=".%s.restore-" % os.path.basename(path), dir=directory)
    os.close(fd)
    try:
        shutil.copyfile(payload, tmp)
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            # a rollback-journal file (the ledger's openers switch it to WAL)
            conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE ledger_meta SET value = ? WHERE key = 'generation'", (target,))
            conn.execute("COMMIT")
        finally:
            conn.close()
        _fsync_file(tmp)
        if isinstance(live, dict):
            _install_sqlite_live(path, tmp, live["generation"], timeout)
            method = "one transaction in the live ledger"
        else:
            # No ledger (or leftovers of one): nothing may pair an old WAL with the new file.
            for suffix in ("-wal", "-shm", "-journal"):
                if os.path.exists(path + suffix):
                    os.unlink(path + suffix)
            os.rename(tmp, path)
            _fsync_dir(directory)
            method = "rename"
    finally:
        for leftover in (tmp, tmp + "-wal", tmp + "-shm", tmp + "-journal"):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return method


# Everything of the ledger's in its schema (the connection's current schema), so that the dump
# loads into a clean slate: a newer migration's tables, functions or triggers do not survive.
# Objects that belong to an extension are left alone.
_PG_DROP_ALL = """DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT c.relkind, format('%I', c.relname) AS name FROM pg_class c
           WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                             AND d.deptype = 'e')
           ORDER BY c.relkind LOOP
    EXECUTE format('DROP %s IF EXISTS %s CASCADE',
                   CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                                  WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, r.name);
  END LOOP;
  FOR r IN SELECT p.prokind, p.oid::regprocedure::text AS name FROM pg_proc p
           WHERE p.pronamespace = current_schema()::regnamespace
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                             AND d.deptype = 'e') LOOP
    EXECUTE format('DROP %s IF EXISTS %s CASCADE',
                   CASE r.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END, r.name);
  END LOOP;
  FOR r IN SELECT t.oid::regtype::text AS name FROM pg_type t
           WHERE t.typnamespace = current_schema()::regnamespace AND t.typtype IN ('e', 'd', 'r', 'm')
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid
                             AND d.deptype = 'e') LOOP
    EXECUTE format('DROP TYPE IF EXISTS %s CASCADE', r.name);
  END LOOP;
END $$;
"""


def _restore_pg(url, payload, target, timeout, expect_generation=None):
    conninfo, env = _pg_conninfo(url)
    pg_restore, psql = _pg_tool("pg_restore"), _pg_tool("psql")
    script = _run([pg_restore, "--no-owner", "--no-acl", "--file=-", payload], env, "pg_restore", 600).stdout
    work = tempfile.mkdtemp(prefix="euca-ledger-restore-")
    try:
        sql = os.path.join(work, "restore.sql")
        with open(sql, "wb") as out:
            out.write(("SET lock_timeout = %d;\n" % int(timeout * 1000)).encode())
            # the ledger's write lock: no ledger writer runs while the tables are replaced
            out.write(("SELECT pg_advisory_xact_lock(%d);\n" % db._PG_WRITE_LOCK).encode())
            if expect_generation is not None:
                # the ledger kept aside must be the one replaced: no write since
                out.write(("DO $$ BEGIN IF (SELECT value FROM ledger_meta WHERE key = 'generation') <> %d THEN "
                           "RAISE EXCEPTION 'the ledger changed while it was being restored (another job wrote to it): "
                           "nothing was restored; stop the other jobs and run the restore again'; END IF; END $$;\n"
                           % int(expect_generation)).encode())
            out.write(_PG_DROP_ALL.encode())
            out.write(script)
            # the script empties search_path; the ledger lives in the connection's default schema
            out.write(b"\nRESET search_path;\n")
            out.write(("\nUPDATE ledger_meta SET value = %d WHERE key = 'generation';\n" % int(target)).encode())
        _run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "--file=%s" % sql,
              "--dbname=%s" % conninfo], env, "psql (restore in one transaction)", max(600, timeout * 20))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return "psql --single-transaction"


def restore(url, path, backup_dir, timeout=30.0, min_generation=0, check_mode=False):
    """Restore the backup at ``path`` into the ledger at ``url``.

    Returns ``changed``, ``backup`` (the file's metadata), ``before``/``after`` (descriptions of the
    ledger), ``previous`` (where the replaced ledger was kept) and ``method``.
    """
    dialect = "postgresql" if db.is_postgres_url(url) else "sqlite"
    if not check_mode:
        _ensure_dir(backup_dir)
    # the checked copy is as large as the ledger: beside the backups, not in a tmpfs /tmp
    work = tempfile.mkdtemp(prefix=".verify-", dir=backup_dir if os.path.isdir(backup_dir) else None)
    try:
        meta, payload = verify(path, work)
        if meta["dialect"] != dialect:
            raise InvalidInput("%s is a backup of a %s ledger; the ledger %s is %s: nothing was changed"
                               % (path, meta["dialect"], safe_url(url), dialect))
        live = current(url, timeout)
        result = {"backup": meta, "before": live if isinstance(live, dict) else None,
                  "previous": None, "method": None}
        if up_to_date(meta, live, min_generation):
            result.update(changed=False, after=live)
            return result
        target = target_generation(meta["generation"], live, min_generation)
        after = dict(summary(meta), generation=target)
        after.pop("created_at", None)
        result.update(changed=True, after=after, target_generation=target)
        if live == "unreadable":
            result["before_state"] = "unreadable"
        if check_mode:
            return result
        stamp = _stamp()
        if isinstance(live, dict):
            aside = take(url, backup_dir, timeout=timeout, prefix=ASIDE_PREFIX)
            result["previous"] = aside["path"]
            # what is replaced is what was kept aside: the install re-checks this generation under
            # the ledger's write lock and fails, with nothing restored, if a job wrote since
            live = dict((k, aside[k]) for k in ("generation", "schema_version", "counts", "content_sha256"))
            result["before"] = live
            target = target_generation(meta["generation"], live, min_generation)
            result["target_generation"] = target
            result["after"]["generation"] = target
        elif dialect == "sqlite" and live == "unreadable":
            result["previous"] = _aside_unreadable_sqlite(db.sqlite_path(url), stamp)
        if dialect == "sqlite":
            result["method"] = _restore_sqlite(db.sqlite_path(url), payload, target, live, timeout)
        else:
            result["method"] = _restore_pg(url, payload, target, timeout,
                                           live["generation"] if isinstance(live, dict) else None)
        restored = current(url, timeout)
        if not isinstance(restored, dict) or restored["content_sha256"] != meta["content_sha256"] \
                or restored["generation"] != target:
            raise EucaError("the restored ledger does not hold what %s holds (digest %s, generation %s); "
                            "the previous ledger is kept at %s"
                            % (path, restored.get("content_sha256") if isinstance(restored, dict) else restored,
                               restored.get("generation") if isinstance(restored, dict) else None, result["previous"]),
                            previous=result["previous"])
        result["after"] = restored
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def prune(backup_dir, keep):
    """Remove all but the ``keep`` newest backups (pre-restore copies are never removed)."""
    if not keep or keep < 1:
        return []
    found = list_backups(backup_dir)
    doomed = found[:-keep]
    for name in doomed:
        os.unlink(name)
    if doomed:
        _fsync_dir(backup_dir)
    return doomed
