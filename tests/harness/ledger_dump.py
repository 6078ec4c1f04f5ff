"""Read every row of a SQLite ledger, to prove that a refused operation changed nothing."""

import sqlite3


def dump(ledger):
    """Every row of every table (read-only: never creates or changes the file)."""
    conn = sqlite3.connect("file:%s?mode=ro" % ledger, uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return dict((t, conn.execute("SELECT * FROM %s ORDER BY 1, 2" % t).fetchall()) for t in tables)
    finally:
        conn.close()
