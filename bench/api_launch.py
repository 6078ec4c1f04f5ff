"""P16, P17, P25: launching through the EC2 API on the all-in-one sandbox (harness/api_cloud.py:
site.yml with roles/clc_api, the dispatcher running this checkout's playbooks through ansible-runner,
real busybox guests under QEMU).

P16  RunInstances' answer time (boto3, from the call to its parsed answer: the ledger's transaction
     and the queued job), and the time until boto3's own ``instance_running`` waiter (polling every
     second) sees the instance running: the dispatcher's claim, its reconcile.yml run limited to the
     cluster, the guest's start. Medians of ROUNDS launches, each on an idle cloud (terminated after,
     and the dispatcher's runs finished before the next).
P17  how many playbook runs the dispatcher makes for one RunInstances of 100 and one
     TerminateInstances of those 100, queued while the dispatcher is stopped (so the two calls meet in
     one claim): one claim per cluster, at most one run per kind (goal: 2 runs, not 200).
P25  RunInstances with MaxCount=24 on one node: time until all 24 are running (describe every second)
     vs MaxCount=1 (goal <= 3x).

Prints:
    P16 RunInstances answer: <v> ms (goal < 200)
    P16 RunInstances until the waiter sees running: <v> s (goal < 15)
    P17 playbook runs for 100 launches + 100 terminations in one claim: <v> runs (goal <= 2)
    P25 MaxCount=24 vs MaxCount=1 until all running: <v>x (goal <= 3)

EUCA_BENCH_ONLY=P25 (or a comma list of P16, P17, P25) runs only those; P25 uses P16's MaxCount=1 launches as
its baseline, so they run for either. EUCA_BENCH_ROUNDS sets how many (3).
"""

import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "collections"))

from ansible_collections.euca.cloud.plugins.module_utils.ledger import db, jobs  # noqa: E402
from harness.api_cloud import ApiCloud  # noqa: E402
from harness.guest_image import guest_image_paths  # noqa: E402

WALRUS_PORT = 18892  # its API: 17892
ROUNDS = int(os.environ.get("EUCA_BENCH_ROUNDS", "3"))
RUNNING_TIMEOUT = 900
ONLY = set(p.strip().upper() for p in os.environ.get("EUCA_BENCH_ONLY", "P16,P17,P25").split(",") if p.strip())


def all_running(ec2, ids, timeout=RUNNING_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [i["State"]["Name"] for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
                  for i in r["Instances"]]
        if states and all(s == "running" for s in states):
            return
        if any(s in ("terminated", "shutting-down") for s in states):
            raise SystemExit("a launch failed: %s" % states)
        time.sleep(1)
    raise SystemExit("not all of %d running within %d s" % (len(ids), timeout))


def terminate(ec2, ids):
    ec2.terminate_instances(InstanceIds=ids)
    ec2.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig={"Delay": 2, "MaxAttempts": 450})


def launch(ec2, image, count):
    started = time.monotonic()
    ran = ec2.run_instances(ImageId=image, MinCount=count, MaxCount=count, SecurityGroups=["bench"])
    answered = time.monotonic() - started
    return [i["InstanceId"] for i in ran["Instances"]], answered, started


def main():
    work = tempfile.mkdtemp(prefix="euca-bench-api-")
    try:
        return measure(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(work):
    # a group of 128 addresses holds the 100 of P17
    with ApiCloud(work, WALRUS_PORT, guest_image_paths(), cores=128, addresses_per_group=128) as cloud:
        creds = cloud.credentials("bench", max_instances=200)
        ec2 = cloud.ec2(creds)
        ec2.create_security_group(GroupName="bench", Description="bench")
        image = cloud.images["busybox"]

        answers, waits = [], []
        for _ in range(ROUNDS):
            ids, answered, started = launch(ec2, image, 1)
            ec2.get_waiter("instance_running").wait(InstanceIds=ids, WaiterConfig={"Delay": 1, "MaxAttempts": 900})
            waits.append(time.monotonic() - started)
            answers.append(answered)
            terminate(ec2, ids)
            # the next launch starts on an idle cloud, as the first did: not queued behind the rest of this
            # termination's run (its network converge after the ledger already says terminated; 3-4 s)
            if not cloud.idle():
                raise SystemExit("the dispatcher still had jobs 600 s after a termination")
        one = statistics.median(waits)

        many = runs = None
        if "P25" in ONLY:
            ids, _answered, started = launch(ec2, image, 24)
            all_running(ec2, ids)
            many = time.monotonic() - started
            print("P25 MaxCount=24: %.1f s, MaxCount=1 (median of %d): %.1f s" % (many, ROUNDS, one), file=sys.stderr)
            terminate(ec2, ids)

        if "P17" in ONLY:
            runs = p17(cloud, ec2, image)
        print("timings (s): %s" % cloud.timings, file=sys.stderr)
    if "P16" in ONLY:
        print("P16 RunInstances answer: %.0f ms (goal < 200)" % (statistics.median(answers) * 1000))
        print("P16 RunInstances until the waiter sees running: %.1f s (goal < 15)" % one)
    if runs is not None:
        playbook_runs = sum(len(kinds) for _run, _cluster, kinds, _count in runs)
        print("P17 playbook runs for 100 launches + 100 terminations in one claim: %d runs (goal <= 2)" % playbook_runs)
    if many is not None:
        print("P25 MaxCount=24 vs MaxCount=1 until all running: %.1fx (goal <= 3)" % (many / one))
    return 0


def p17(cloud, ec2, image):
    """The dispatcher's playbook runs for 100 launches + 100 terminations queued while it is stopped."""
    with db.Ledger(cloud.vars["euca_ledger"]) as ledger, ledger.read() as txn:
        since = txn.value("SELECT COALESCE(MAX(id), 0) FROM jobs")
    cloud.supervisor.ctl("stop", "euca-api-dispatcher")
    ids, _answered, _started = launch(ec2, image, 100)
    ec2.terminate_instances(InstanceIds=ids)
    cloud.supervisor.ctl("start", "euca-api-dispatcher")
    ec2.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig={"Delay": 2, "MaxAttempts": 450})
    # terminated shows when the terminate run is done; the claim's reconcile run follows it
    if not cloud.idle():
        raise SystemExit("the dispatcher did not finish the claim of 100 + 100 within 600 s")
    with db.Ledger(cloud.vars["euca_ledger"]) as ledger, ledger.read() as txn:
        runs = jobs.runs(txn, since)
    print("runs for 100 + 100: %s" % runs, file=sys.stderr)
    return runs


if __name__ == "__main__":
    sys.exit(main())
