# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ledger's storage: one connection type over SQLite (default) or PostgreSQL.

Every write runs in a transaction that takes the ledger's write lock up front
(``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on PostgreSQL), so a
reader-then-writer pattern (look for a free address, then insert it) can never race
another writer. Unique constraints back every allocation anyway: a bug in an allocator
becomes a clear conflict, never a duplicate.

SQL in this package is written once, with ``?`` placeholders; the PostgreSQL side
translates them.

Durability: a write returns only after its COMMIT is durable. SQLite runs in WAL mode with
``synchronous = FULL`` (the WAL is fsynced at every commit, so a committed allocation
survives kill -9, a CLC restart and a power loss alike; NORMAL would survive the first two
only, and the disk is not what limits the ledger); PostgreSQL keeps its default
``synchronous_commit = on``.

Round trips: on PostgreSQL a write opens with one (BEGIN and the lock in one simple query)
and, when the transaction already read its generation, closes with one (the generation bump
and COMMIT together); every statement is one more, so the allocators keep to few.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import os
import sqlite3
import time

from ansible_collections.euca.cloud.plugins.module_utils.errors import (
    Conflict,
    EucaError,
    LedgerUnavailable,
)

# psycopg is imported on first use (load_psycopg): a SQLite ledger, the common case, does
# not pay ~65 ms of import time on every task.
_PSYCOPG = {}


def load_psycopg():
    """psycopg 3, imported on first use; None when it is missing (see psycopg_import_error)."""
    if "module" not in _PSYCOPG:
        try:
            import psycopg
            import psycopg.rows  # noqa: F401  (dict_row)
        except ImportError as exc:  # pragma: no cover - depends on the host
            _PSYCOPG.update(module=None, error=exc)
        else:
            _PSYCOPG.update(module=psycopg, error=None)
    return _PSYCOPG["module"]


def psycopg_import_error():
    """Why psycopg could not be imported (after load_psycopg returned None)."""
    return _PSYCOPG.get("error")


DEFAULT_LEDGER = "/var/lib/euca/clc/ledger.sqlite"

# Any constant works; it only has to be the same for every writer of one database.
_PG_WRITE_LOCK = 0x6575636131  # "euca1"
_PG_BEGIN_WRITE = "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(%d)" % _PG_WRITE_LOCK
_BUMP = "UPDATE ledger_meta SET value = value + 1 WHERE key = 'generation'"
# Once the schema is in place, the generation read every write opens with is prepared (planned
# once per connection, not at each simple query). psycopg deallocates every prepared statement
# of a connection after a ROLLBACK, DROP or ALTER, so it is prepared again when found missing.
_PG_PREPARE = "PREPARE euca_generation AS SELECT value FROM ledger_meta WHERE key = 'generation'"
# ... and the generation, read after the lock (READ COMMITTED: a fresh snapshot per statement).
_PG_BEGIN_WRITE_GENERATION = _PG_BEGIN_WRITE + "; EXECUTE euca_generation"


def is_postgres_url(url):
    """True when ``url`` names a PostgreSQL database rather than a SQLite file."""
    return url.startswith("postgresql://") or url.startswith("postgres://") or url.startswith("postgresql+")


def sqlite_path(url):
    """The file path of a SQLite ledger given as a path or ``sqlite://`` URL."""
    return url[len("sqlite://"):] if url.startswith("sqlite://") else url


class Transaction:
    """One open transaction. Rows come back as plain dicts."""

    def __init__(self, conn, dialect, writable):
        self._conn = conn
        # one cursor for the whole transaction: every result is fetched before the next statement
        self._cur = conn.cursor()
        self.dialect = dialect
        self.writable = writable
        self.dirty = False
        self.generation = None
        # the generation as read in this transaction (it cannot move under the write lock or
        # within a read snapshot), so asking twice costs one query
        self._generation = None

    def _sql(self, sql):
        if self.dialect == "postgresql":
            return sql.replace("%", "%%").replace("?", "%s")
        return sql

    def _execute(self, sql, params):
        try:
            if self.dialect == "postgresql":
                cur = self._cur.execute(self._sql(sql), params)
            else:
                cur = self._cur.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise Conflict("the ledger refused a duplicate or dangling record: %s" % exc)
        except Exception as exc:
            psycopg = _PSYCOPG.get("module")
            if psycopg is not None and isinstance(exc, psycopg.errors.IntegrityError):
                raise Conflict("the ledger refused a duplicate or dangling record: %s" % exc)
            raise
        return cur

    def rows(self, sql, *params):
        """All rows of a query, as dicts."""
        cur = self._execute(sql, params)
        if self.dialect == "postgresql":
            return [dict(r) for r in cur.fetchall()]
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def row(self, sql, *params):
        """The first row of a query, or None."""
        found = self.rows(sql, *params)
        return found[0] if found else None

    def value(self, sql, *params):
        """The first column of the first row, or None."""
        found = self.row(sql, *params)
        return None if found is None else list(found.values())[0]

    def exec(self, sql, *params):
        """Run a statement that changes rows; remembers that the generation must advance."""
        if not self.writable:
            raise EucaError("internal error: a write was attempted in a read-only ledger transaction")
        cur = self._execute(sql, params)
        if cur.rowcount != 0:
            self.dirty = True
        return cur.rowcount

    def exec_rows(self, sql, *params):
        """Run a statement that changes rows and returns some (``... RETURNING``); its rows as dicts."""
        if not self.writable:
            raise EucaError("internal error: a write was attempted in a read-only ledger transaction")
        found = self.rows(sql, *params)
        if found:
            self.dirty = True
        return found

    def touch(self):
        """Mark the transaction as a change even if no row count showed it (DDL, settings)."""
        self.dirty = True

    def current_generation(self):
        """The generation the ledger is at inside this transaction."""
        if self._generation is None:
            self._generation = int(self.value("SELECT value FROM ledger_meta WHERE key = 'generation'") or 0)
        return self._generation


class Ledger:
    """A handle on the ledger at ``url`` (a SQLite path or a ``postgresql://`` DSN).

    Open once per module run; :meth:`write` and :meth:`read` give transactions.
    """

    def __init__(self, url=None, timeout=30.0, migrate=True):
        self.url = url or DEFAULT_LEDGER
        self.timeout = float(timeout)
        self.dialect = "postgresql" if is_postgres_url(self.url) else "sqlite"
        # whether the schema is known to be in place (ledger_meta can be read at BEGIN)
        self._migrated = False
        # whether euca_generation is (believed) prepared on this PostgreSQL connection
        self._pg_prepared = False
        self._conn = self._connect()
        if migrate:
            from ansible_collections.euca.cloud.plugins.module_utils.ledger import schema

            schema.migrate(self)
            self._migrated = True

    # -- connections -----------------------------------------------------------------------
    def _connect(self):
        if self.dialect == "postgresql":
            psycopg = load_psycopg()
            if psycopg is None:
                raise LedgerUnavailable(
                    "ledger %s is PostgreSQL but psycopg (3) is not installed on this host: "
                    "install Debian's python3-psycopg (the clc role does for a PostgreSQL ledger)" % self._safe_url()
                )
            try:
                conn = psycopg.connect(
                    self.url, autocommit=True, row_factory=psycopg.rows.dict_row, connect_timeout=max(1, int(self.timeout))
                )
                # How long a writer waits for the ledger's write lock (and DDL for its tables).
                conn.execute("SET lock_timeout = %d" % int(self.timeout * 1000))
            except psycopg.Error as exc:
                raise LedgerUnavailable("cannot connect to ledger %s: %s" % (self._safe_url(), exc))
            return conn
        path = sqlite_path(self.url)
        parent = os.path.dirname(os.path.abspath(path))
        try:
            if not os.path.isdir(parent):
                os.makedirs(parent, 0o750)
            conn = sqlite3.connect(path, timeout=self.timeout, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerUnavailable("cannot open ledger %s: %s" % (path, exc))
        conn.execute("PRAGMA busy_timeout = %d" % int(self.timeout * 1000))
        deadline = time.monotonic() + self.timeout
        while True:
            # Switching to WAL needs a moment of exclusive access; another opener may hold it.
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise LedgerUnavailable("cannot open ledger %s: %s" % (path, exc))
                time.sleep(0.01)
        # FULL: a committed allocation is on disk before the module reports it (Hack2).
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _safe_url(self):
        if self.dialect != "postgresql":
            return self.url
        try:
            head, tail = self.url.split("@", 1)
            scheme = head.split("://", 1)[0]
            user = head.split("://", 1)[1].split(":", 1)[0]
            return "%s://%s@%s" % (scheme, user, tail)
        except (ValueError, IndexError):
            return "postgresql://..."

    def close(self):
        """Close the connection; the handle cannot be used afterwards."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- transactions ----------------------------------------------------------------------
    def _begin(self, writable):
        """Open a transaction; for a PostgreSQL write, return the generation when it was read."""
        if self.dialect == "postgresql":
            if not writable:
                self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                return None
            errors = load_psycopg().errors
            for attempt in (1, 2, 3):
                query = _PG_BEGIN_WRITE
                if self._migrated:
                    query = _PG_BEGIN_WRITE_GENERATION if self._pg_prepared else _PG_PREPARE + "; " + _PG_BEGIN_WRITE_GENERATION
                try:
                    # One simple query (no parameters): one round trip for all its statements.
                    cur = self._conn.execute(query)
                    break
                except errors.LockNotAvailable:
                    self._conn.execute("ROLLBACK")
                    raise LedgerUnavailable("the ledger stayed locked by another writer for %ss" % self.timeout)
                except (errors.InvalidSqlStatementName, errors.DuplicatePreparedStatement):
                    # deallocated since (psycopg does after a ROLLBACK), or still there: open again
                    self._conn.execute("ROLLBACK")
                    if attempt == 3:
                        raise
                    self._pg_prepared = not self._pg_prepared
            if not self._migrated:
                return None
            self._pg_prepared = True
            while cur.nextset():  # to the last result: the generation's
                pass
            found = cur.fetchall()
            return int(found[0]["value"]) if found else None
        try:
            self._conn.execute("BEGIN IMMEDIATE" if writable else "BEGIN")
        except sqlite3.OperationalError as exc:
            raise LedgerUnavailable("the ledger %s stayed locked for %ss: %s" % (self.url, self.timeout, exc))
        return None

    @contextlib.contextmanager
    def write(self, dry_run=False):
        """A write transaction holding the ledger lock from its first statement.

        On success the generation advances by one if anything changed, then the transaction
        commits; with ``dry_run`` (check mode) it is rolled back instead. Any exception rolls
        back, so a failure half-way leaves nothing half-written.
        """
        generation = self._begin(True)
        txn = Transaction(self._conn, self.dialect, True)
        txn._generation = generation
        try:
            yield txn
            self._finish(txn, dry_run)
        except BaseException:
            self._pg_prepared = False
            # Also after a failed COMMIT: the transaction is still open then.
            try:
                self._conn.execute("ROLLBACK")
            except Exception:  # no transaction left, or the connection is gone (the server rolls back)
                pass
            raise

    def _finish(self, txn, dry_run):
        """Advance the generation if anything changed, then commit (or roll back a dry run)."""
        end = "ROLLBACK" if dry_run else "COMMIT"
        if dry_run:
            self._pg_prepared = False
        if not txn.dirty:
            txn.generation = txn.current_generation()
        elif self.dialect == "sqlite":
            known = txn._generation
            txn._execute(_BUMP, ())
            txn._generation = None if known is None else known + 1
            txn.generation = txn.current_generation()
        elif txn._generation is not None:
            # The write lock is held: the bump lands on the generation read, so it and the
            # COMMIT go in one simple query.
            self._conn.execute("%s; %s" % (_BUMP, end))
            txn.generation = txn._generation + 1
            return
        else:
            txn.generation = int(txn.value(_BUMP + " RETURNING value"))
        self._conn.execute(end)

    @contextlib.contextmanager
    def read(self):
        """A read-only transaction that sees one consistent snapshot."""
        self._begin(False)
        txn = Transaction(self._conn, self.dialect, False)
        try:
            yield txn
        finally:
            # COMMIT of a read-only transaction ends it as ROLLBACK would (an aborted one is
            # rolled back), and psycopg keeps its prepared statements after a COMMIT.
            self._conn.execute("COMMIT" if self.dialect == "postgresql" else "ROLLBACK")
