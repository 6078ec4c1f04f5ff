"""Ledger allocation throughput on SQLite and PostgreSQL (issue 2).

Each run starts from an empty ledger: 8 worker processes x 500 allocations at once
(every 8th an elastic IP, the rest instance launches with private IP + MAC), one write
transaction per allocation with a synchronous commit. Baseline for the contention ratio:
one worker doing the same 4000 allocations alone (the same total, so the ledger grows to
the same size: a launch reads its group's addresses, so its cost grows with the group).

Prints one line per goal:
    P<n> <what>: <value> <unit> (goal <op> <target>)
"""

import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "collections"))

from harness import ledger_load  # noqa: E402
from harness.postgres import PostgresServer, PostgresUnavailable  # noqa: E402

WORKERS = 8
PER_WORKER = 500


def run_load(url, workers, per_worker):
    """Allocations per second of ``workers`` processes doing ``per_worker`` allocations each."""
    ledger_load.prepare(url)
    started = time.monotonic()
    procs = [
        subprocess.Popen([sys.executable, ledger_load.__file__, "worker", url, str(n), str(per_worker)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for n in range(workers)
    ]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit("worker failed: %s" % err)
    return workers * per_worker / (time.monotonic() - started)


def main():
    results = []
    with tempfile.TemporaryDirectory(prefix="euca-bench-") as tmp:
        sqlite_single = run_load(os.path.join(tmp, "single.sqlite"), 1, WORKERS * PER_WORKER)
        sqlite_rate = run_load(os.path.join(tmp, "ledger.sqlite"), WORKERS, PER_WORKER)
        results.append(("ledger sqlite %dx%d allocations" % (WORKERS, PER_WORKER), sqlite_rate, "alloc/s", ">=", 100))
        results.append(("ledger sqlite %d writers vs 1 writer" % WORKERS, sqlite_rate / sqlite_single, "x", ">=", 0.8))
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        print("PostgreSQL benchmark skipped: %s" % exc)
        server = None
    if server is not None:
        with server:
            single = run_load(server.dsn(server.create_database()), 1, WORKERS * PER_WORKER)
            rate = run_load(server.dsn(server.create_database()), WORKERS, PER_WORKER)
        results.append(("ledger postgresql %dx%d allocations" % (WORKERS, PER_WORKER), rate, "alloc/s", ">=", 100))
        results.append(("ledger postgresql %d writers vs 1 writer" % WORKERS, rate / single, "x", ">=", 0.8))
    failed = False
    # P1-P3 are the network goals (nat_filter.py, segments_dhcp.py); the ledger's follow.
    for number, (what, value, unit, op, target) in enumerate(results, 4):
        print("P%d %s: %.1f %s (goal %s %s)" % (number, what, value, unit, op, target))
        failed |= not (value >= target if op == ">=" else value <= target)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
