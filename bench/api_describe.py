"""P15: DescribeInstances through the EC2 API with 10,000 instances in the ledger.

The server is what roles/clc_api deploys: Debian's gunicorn (its worker class, workers and environment) on the
system python3, over a SQLite ledger filled with 10,000 live instances (harness/ledger_load.py). The
client signs each request with botocore's SigV4 signer and sends it over a kept-alive HTTP
connection; the time is from sending to the last byte of the answer (the client's XML parsing is
not the server's latency: boto3 takes seconds to turn 10,000 instances into dicts). CLIENTS
threads call at once for SECONDS seconds per shape of request:

- ``one``: DescribeInstances for one instance id (what a waiter asks, every 15 s per instance);
- ``page``: MaxResults=1000, the page a paginating client asks for;
- ``page-alone``: the same page with one client: the answer's own time, without waiting for a core
  (4 clients on 2 cores queue for the CPU: each answer then takes about twice its own time);
- ``all``: no MaxResults, every instance in one answer (what awscli's describe-instances sends),
  16 MB of XML.

Prints p50 and p99 latency and requests/s of each, and the goal lines:
    P15 DescribeInstances <shape> with 10000 instances p99: <v> ms (goal < 100)
"""

import http.client
import os
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "collections"))

import botocore.auth  # noqa: E402
import botocore.awsrequest  # noqa: E402
import botocore.credentials  # noqa: E402

from ansible_collections.euca.cloud.plugins.module_utils.ledger import accounts, db  # noqa: E402
from harness import ledger_load  # noqa: E402
from harness.api_server import ApiServer, access_key, gunicorn_missing  # noqa: E402

INSTANCES = int(os.environ.get("EUCA_BENCH_INSTANCES", "10000"))
CLIENTS = 4
SECONDS = float(os.environ.get("EUCA_BENCH_SECONDS", "10"))
PORT = 18890
GOAL_MS = 100


def signed(endpoint, key, body):
    request = botocore.awsrequest.AWSRequest(method="POST", url=endpoint, data=body,
                                             headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(*key), "ec2", "euca").add_auth(request)
    prepared = request.prepare()
    return prepared.body if isinstance(prepared.body, bytes) else prepared.body.encode(), dict(prepared.headers)


def load(endpoint, key, body_of, seconds, clients=CLIENTS):
    """(latencies in ms, requests/s) of ``clients`` threads calling for ``seconds``."""
    latencies, lock, stop = [], threading.Lock(), time.monotonic() + seconds
    failures = []

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
        mine = []
        while time.monotonic() < stop:
            body, headers = signed(endpoint, key, body_of())
            started = time.perf_counter()
            conn.request("POST", "/services/Eucalyptus/", body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            mine.append((time.perf_counter() - started) * 1000)
            if answer.status != 200:
                failures.append((answer.status, data[:300]))
                return
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit("requests failed: %s" % failures[:3])
    return latencies, len(latencies) / (time.monotonic() - began)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100.0 * (len(ordered) - 1))))]


def main():
    reason = gunicorn_missing()
    if reason:
        print("P15 skipped: %s" % reason)
        return 1
    with tempfile.TemporaryDirectory(prefix="euca-bench-api-") as work:
        url = os.path.join(work, "ledger.sqlite")
        ledger_load.prepare(url, addresses_per_group=16384)
        started = time.monotonic()
        ledger_load.fill(url, INSTANCES)
        print("filled %d instances in %.1f s" % (INSTANCES, time.monotonic() - started), file=sys.stderr)
        with db.Ledger(url) as ledger, ledger.read() as txn:
            some = [r["id"] for r in txn.rows("SELECT id FROM instances ORDER BY id")]
        key = access_key(url, accounts.ADMIN)
        server = ApiServer(os.path.join(work, "server"), url, PORT)
        with server:
            endpoint = server.endpoint
            picks = iter(range(10 ** 9))
            shapes = [
                ("one", lambda: "Action=DescribeInstances&Version=2016-11-15&InstanceId.1=%s"
                        % some[next(picks) % len(some)], SECONDS, CLIENTS),
                ("page", lambda: "Action=DescribeInstances&Version=2016-11-15&MaxResults=1000", SECONDS, CLIENTS),
                ("page-alone", lambda: "Action=DescribeInstances&Version=2016-11-15&MaxResults=1000", SECONDS, 1),
                ("all", lambda: "Action=DescribeInstances&Version=2016-11-15", SECONDS * 2, CLIENTS),
            ]
            results = []
            for name, body_of, seconds, clients in shapes:
                load(endpoint, key, body_of, 2, clients)  # warm up: each worker thread opens its ledger connection
                latencies, rate = load(endpoint, key, body_of, seconds, clients)
                results.append((name, statistics.median(latencies), percentile(latencies, 99), rate, len(latencies)))
        print("%-10s %10s %10s %10s %8s" % ("shape", "p50 ms", "p99 ms", "req/s", "n"))
        for name, p50, p99, rate, n in results:
            print("%-10s %10.1f %10.1f %10.1f %8d" % (name, p50, p99, rate, n))
        for name, p50, p99, rate, n in results:
            print("P15 DescribeInstances %s with %d instances p99: %.1f ms (goal < %d)" % (name, INSTANCES, p99, GOAL_MS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
