"""P13: ledger allocation throughput and the cost of an allocation in a big cloud, on SQLite
and on PostgreSQL.

Throughput: 8 worker processes x 500 allocations at once into an empty ledger (every 8th an
elastic IP, the rest instance launches with private IP + MAC), one write transaction with a
durable commit per allocation (SQLite WAL + synchronous=FULL, PostgreSQL synchronous_commit
on). The clock starts when all 8 have connected (each prints ``ready``) and stops when the
last one has exited: it times the allocations, not the start of 8 Python processes. The
median of RUNS runs.

Cost in a big cloud: one launch (its own transaction) in a ledger whose group holds 10,000
live instances vs in one holding 100 (same subnet size, same node). The two ledgers take
turns in rounds of 25 launches, whose instances are terminated again after each round (not
timed) so the live counts stay put; the ratio is the median of the rounds' ratios.

Every allocation is one durable commit, and writers take turns (the ledger's write lock), so
the rates cannot pass what the disk under the ledgers fsyncs per second: that is measured
first and printed on stderr (3,800/s on a quiet machine here; other jobs' I/O can bring it
under 500/s, and then the rates say more about the disk than about the ledger).

Prints (goal lines: P<n> <what>: <value> <unit> (goal <op> <target>)):
    P13 ledger allocations sqlite: <v> allocations/s (goal >= 500)
    P13 ledger allocations postgresql: <v> allocations/s (goal >= 500)
    P13 allocation cost 10000 vs 100 live instances sqlite: <v>x (goal <= 1.2)
    P13 allocation cost 10000 vs 100 live instances postgresql: <v>x (goal <= 1.2)
"""

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "collections"))

from ansible_collections.euca.cloud.plugins.module_utils.ledger import db, instances  # noqa: E402
from harness import ledger_load  # noqa: E402
from harness.postgres import PostgresServer, PostgresUnavailable  # noqa: E402

WORKERS = 8
PER_WORKER = 500
RUNS = int(os.environ.get("EUCA_BENCH_RUNS", "3"))
RATE_GOAL = 500
SMALL, BIG = 100, 10000
ROUNDS, PER_ROUND = 20, 25
COST_GOAL = 1.2
# Room for BIG live instances plus a round of launches, the same in both ledgers.
SUBNET_SIZE = 16384


def fsyncs_per_second(directory, seconds=2.0):
    """How many 512-byte write + fsync pairs a second the disk under ``directory`` does."""
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        done, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            os.write(fd, b"x" * 512)
            os.fsync(fd)
            done += 1
        return done / (time.monotonic() - started)
    finally:
        os.close(fd)
        os.unlink(path)


def run_load(url, workers=WORKERS, per_worker=PER_WORKER):
    """Allocations per second of ``workers`` processes doing ``per_worker`` allocations each."""
    ledger_load.prepare(url)
    procs = [
        subprocess.Popen([sys.executable, ledger_load.__file__, "worker", url, str(n), str(per_worker), "--wait-go"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(workers)
    ]
    outputs = {}
    try:
        for proc in procs:
            line = proc.stdout.readline()
            if line != "ready\n":
                raise SystemExit("worker did not start: %r %s" % (line, proc.stderr.read()))
        started = time.monotonic()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        # drain every worker's output at once: a full pipe would stall a worker
        threads = [threading.Thread(target=lambda p=p: outputs.__setitem__(p.pid, p.communicate())) for p in procs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc in procs:
        stdout, stderr = outputs[proc.pid]
        if proc.returncode != 0 or stdout.count("\n") != per_worker:
            raise SystemExit("worker failed (rc %s, %d records): %s" % (proc.returncode, stdout.count("\n"), stderr))
    return workers * per_worker / elapsed


def _launch_round(ledger, label, count):
    started = time.perf_counter()
    for n in range(count):
        with ledger.write() as txn:
            instances.ensure_instances(txn, name="%s-%d" % (label, n), group=ledger_load.GROUP, image="load", count=1)
    elapsed = time.perf_counter() - started
    with ledger.write() as txn:
        for n in range(count):
            instances.ensure_instances(txn, name="%s-%d" % (label, n), state="terminated")
    return elapsed


def cost_ratio(small_url, big_url):
    """Median over rounds of (time of PER_ROUND launches among BIG live) / (among SMALL live)."""
    for url, live in ((small_url, SMALL), (big_url, BIG)):
        ledger_load.prepare(url, addresses_per_group=SUBNET_SIZE)
        ledger_load.fill(url, live)
    with db.Ledger(small_url, timeout=120) as small, db.Ledger(big_url, timeout=120) as big:
        for ledger in (small, big):  # warm-up, not counted
            _launch_round(ledger, "warm", PER_ROUND)
        ratios = []
        for number in range(ROUNDS):
            order = (small, big) if number % 2 == 0 else (big, small)
            took = dict((id(ledger), _launch_round(ledger, "r%d" % number, PER_ROUND)) for ledger in order)
            ratios.append(took[id(big)] / took[id(small)])
        with big.read() as txn:
            assert txn.value("SELECT COUNT(*) FROM instances WHERE state <> 'terminated'") == BIG
    return statistics.median(ratios)


def main():
    results = []
    with tempfile.TemporaryDirectory(prefix="euca-bench-") as tmp:
        sys.stderr.write("disk under the ledgers: %.0f fsyncs/s\n" % fsyncs_per_second(tmp))
        rates = [run_load(os.path.join(tmp, "rate%d.sqlite" % n)) for n in range(RUNS)]
        results.append(("ledger allocations sqlite", statistics.median(rates), " allocations/s", ">=", RATE_GOAL))
        ratio = cost_ratio(os.path.join(tmp, "small.sqlite"), os.path.join(tmp, "big.sqlite"))
        results.append(("allocation cost %d vs %d live instances sqlite" % (BIG, SMALL), ratio, "x", "<=", COST_GOAL))
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        print("PostgreSQL benchmark skipped: %s" % exc)
        server = None
    if server is not None:
        with server:
            rates = [run_load(server.dsn(server.create_database())) for _ in range(RUNS)]
            ratio = cost_ratio(server.dsn(server.create_database()), server.dsn(server.create_database()))
        results.insert(1, ("ledger allocations postgresql", statistics.median(rates), " allocations/s", ">=", RATE_GOAL))
        results.append(("allocation cost %d vs %d live instances postgresql" % (BIG, SMALL), ratio, "x", "<=", COST_GOAL))
    failed = False
    for what, value, unit, op, target in results:
        print("P13 %s: %s%s (goal %s %s)" % (what, ("%.0f" if unit != "x" else "%.2f") % value, unit, op, target))
        failed |= not (value >= target if op == ">=" else value <= target)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
