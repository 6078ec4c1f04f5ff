"""A throwaway PostgreSQL server from Debian's packages, for tests.

The server runs from ``/usr/lib/postgresql/<version>/bin`` (the newest version found), with
its data in a fresh temporary directory, listening on a unix socket in that directory only
(``listen_addresses=''``), fsync on. Run as root, it runs as the ``postgres`` system user
(PostgreSQL refuses to run as root). It is stopped with ``pg_ctl stop -m immediate``, then
killed by pid if it is still there, and its directory is removed.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional
from urllib.parse import quote

PG_ROOT = Path("/usr/lib/postgresql")
TEST_DATABASE = "euca_test"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be run here; the message says why (used as a skip reason)."""


def _version_key(bindir: Path):
    """(16,) for /usr/lib/postgresql/16/bin; (9, 6) for .../9.6/bin."""
    return tuple(int(x) for x in re.findall(r"\d+", bindir.parent.name)) or (0,)


def find_bindir(root: Path = PG_ROOT) -> Path:
    """The bin directory of the newest PostgreSQL server installed under root."""
    candidates = [p.parent for p in root.glob("*/bin/postgres") if (p.parent / "initdb").exists()]
    if not candidates:
        raise PostgresUnavailable(
            f"PostgreSQL server binaries not found under {root}/<version>/bin "
            "(install Debian's 'postgresql' package: scripts/bootstrap)")
    return max(candidates, key=_version_key)


def dsn(socket_dir: str, dbname: str, user: str = "postgres") -> str:
    """A libpq URI for a database on the unix socket in socket_dir."""
    return f"postgresql://{quote(user)}@/{quote(dbname)}?host={quote(str(socket_dir), safe='/')}"


class PostgresServer:
    def __init__(self, bindir: Optional[Path] = None, base_dir: Optional[str] = None,
                 user: Optional[str] = None):
        self.bindir = Path(bindir) if bindir else find_bindir()
        self._given_base = base_dir
        self.base: Optional[Path] = None
        self.proc: Optional[subprocess.Popen] = None
        if os.geteuid() == 0:
            self.os_user = user or "postgres"
            try:
                self.pw = pwd.getpwnam(self.os_user)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root but there is no '{self.os_user}' system user to run PostgreSQL as")
        else:
            self.pw = pwd.getpwuid(os.geteuid())
            self.os_user = self.pw.pw_name
        self.db_user = "postgres"

    # ------------------------------------------------------------------ paths
    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base

    @property
    def log_file(self) -> Path:
        return self.base / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return dsn(str(self.socket_dir), dbname, self.db_user)

    # ------------------------------------------------------------------ helpers
    def _as_owner(self, argv: list) -> list:
        """argv, run as the server's OS user (setpriv execs: the pid stays the program's)."""
        argv = [str(a) for a in argv]
        if os.geteuid() != 0:
            return argv
        return ["setpriv", f"--reuid={self.pw.pw_uid}", f"--regid={self.pw.pw_gid}",
                "--init-groups", "--reset-env", "--"] + argv

    def _run(self, argv: list, timeout: float = 120) -> subprocess.CompletedProcess:
        argv = self._as_owner(argv)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              cwd=str(self.base), env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
                              if os.geteuid() != 0 else None)
        if proc.returncode != 0:
            raise RuntimeError(f"command failed (rc={proc.returncode}): {' '.join(argv)}\n"
                               f"stderr: {proc.stderr.strip()}\nstdout: {proc.stdout.strip()}")
        return proc

    # ------------------------------------------------------------------ life cycle
    def start(self, timeout: float = 60) -> "PostgresServer":
        # under /tmp (not pytest's 0700 tmp dirs) so the postgres user can reach it;
        # short, because a unix socket path must fit in 107 bytes
        self.base = Path(tempfile.mkdtemp(prefix="eut-pg-", dir=self._given_base or "/tmp"))
        if os.geteuid() == 0:
            os.chown(self.base, self.pw.pw_uid, self.pw.pw_gid)
        os.chmod(self.base, 0o700)
        try:
            self._run([self.bindir / "initdb", "-D", self.data_dir, "-U", self.db_user,
                       "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
            log = open(self.log_file, "ab")
            if os.geteuid() == 0:
                os.chown(self.log_file, self.pw.pw_uid, self.pw.pw_gid)
            try:
                self.proc = subprocess.Popen(
                    self._as_owner([self.bindir / "postgres", "-D", self.data_dir,
                                    "-k", self.socket_dir, "-c", "listen_addresses=",
                                    "-c", "fsync=on", "-c", "max_connections=50",
                                    "-c", "unix_socket_permissions=0700"]),
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    cwd=str(self.base), start_new_session=True)
            finally:
                log.close()
            self._wait_ready(timeout)
            self.execute(f'CREATE DATABASE "{TEST_DATABASE}"')
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        isready = [str(self.bindir / "pg_isready"), "-q", "-h", str(self.socket_dir), "-U", self.db_user]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{self.log_tail()}")
            if subprocess.run(isready, capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """Run one statement with autocommit (psycopg when installed, else psql)."""
        try:
            import psycopg
        except ImportError:
            subprocess.run([str(self.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                            "-d", self.dsn(dbname), "-c", sql], check=True, capture_output=True)
            return
        with psycopg.connect(self.dsn(dbname), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: Optional[str] = None) -> str:
        """Create an empty database; return its name."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop immediately, kill by pid if needed, remove the directory. Safe to call twice."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    self._run([self.bindir / "pg_ctl", "stop", "-D", self.data_dir,
                               "-m", "immediate", "-w", "-t", "20"], timeout=30)
                except Exception:
                    pass
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()  # by pid: postgres itself (setpriv execs)
                    self.proc.wait(timeout=10)
        finally:
            if self.base is not None:
                shutil.rmtree(self.base, ignore_errors=True)
                self.base = None

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
