"""The EC2 API's dispatcher (api/dispatcher.py) as the process it is, with the real ansible-runner.

The project it runs is a throwaway one: its playbooks have our operation playbooks' names but
only write down, from every host they reach, what they were asked (playbook, --limit, extra vars),
wait while a per-cluster gate file exists (so a test holds a cluster's run open while it queues
more), and fail with a message while a fail file exists. The ledger is a real SQLite file that the
test queues jobs in, as the API does, and reads outcomes back from. The last test runs our real
volume playbooks with the extra vars the dispatcher gives them (volume and snapshot ids the ledger
holds) against a file-backed storage controller on localhost.
"""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.ledger import cloud, db, groups, images, instances, jobs, volumes
from harness.runner import COLLECTIONS, REPO_ROOT, run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

VENV_BIN = Path(sys.executable).parent
PLAYBOOKS = sorted(set(jobs.PLAYBOOKS.values()))

# what the fake playbooks record for an extra var they were not given
UNSET = "(unset)"
FAKE_PLAYBOOK = textwrap.dedent("""\
    ---
    - name: Write down what this run was asked
      hosts: all
      gather_facts: false
      vars:
        gate_cluster: "{{ ansible_limit.split(':') | first }}"
        asked:
          playbook: "{{ playbook_name }}"
          host: "{{ inventory_hostname }}"
          limit: "{{ ansible_limit }}"
          site_var: "{{ site_var | default(None) }}"
          extra: "{{ dict(names | zip(query('ansible.builtin.vars', *names, default=UNSET))) }}"
        names: [instance_ids, euca_terminate_reason, volume, volume_id, instance, device, force, snapshot,
                snapshot_id, cluster, console_store]
      tasks:
        - name: Record the start
          ansible.builtin.shell: "printf '%s\\\\n' {{ (asked | combine({'event': 'start'})) | to_json | quote }} >> {{ out_dir }}/runs.log"
          changed_when: true

        - name: Wait while the cluster's gate is closed
          ansible.builtin.wait_for:
            path: "{{ out_dir }}/gate-{{ gate_cluster }}"
            state: absent
            timeout: 300
            sleep: 1

        - name: Fail when asked to
          ansible.builtin.fail:
            msg: "the node refused {{ playbook_name }} of {{ instance_ids | default([]) | join(',') }}"
          when: (out_dir ~ '/fail') is exists

        - name: Record the end
          ansible.builtin.shell: "printf '%s\\\\n' {{ (asked | combine({'event': 'end'})) | to_json | quote }} >> {{ out_dir }}/runs.log"
          changed_when: true
    """)

INVENTORY = textwrap.dedent("""\
    [clc]
    clc1
    [walrus]
    walrus1
    [cluster_a]
    a1
    [cluster_b]
    b1
    [all:vars]
    ansible_connection=local
    ansible_python_interpreter={python}
    """)


@pytest.fixture
def site(tmp_path):
    """A project dir of fake playbooks, an inventory, a seeded ledger and a dispatcher configuration."""
    project = tmp_path / "project"
    (project / "playbooks").mkdir(parents=True)
    for name in PLAYBOOKS:
        (project / "playbooks" / name).write_text(
            FAKE_PLAYBOOK.replace("{{ playbook_name }}", name).replace("UNSET", repr(UNSET)))
    (project / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = false\nnocows = true\nforks = 5\n")
    out = tmp_path / "out"
    out.mkdir()
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(INVENTORY.format(python=sys.executable))
    ledger_path = str(tmp_path / "ledger.sqlite")
    with db.Ledger(ledger_path) as ledger:
        with ledger.write() as txn:
            cloud.ensure_settings(txn, {"network_mode": "flat", "private_network": "10.77.0.0/16",
                                        "segment_range": [100, 199]})
            for name in ("cluster_a", "cluster_b"):
                cloud.ensure_cluster(txn, name)
            cloud.ensure_node(txn, "nc-a", "cluster_a", 8, 4096, 100)
            images.ensure_image(txn, "img", checksum="0" * 64, size_bytes=1)
            groups.ensure_group(txn, "web", rules=[])
            launched = instances.ensure_instances(txn, name="web", group="web", image="img", count=3)["instances"]
    config = tmp_path / "dispatcher.json"
    config.write_text(json.dumps({
        "ledger": ledger_path,
        "dispatcher": {
            "runner": str(VENV_BIN / "ansible-runner"),
            "private_data_dir": str(tmp_path / "pdd"),
            "project_dir": str(project),
            "inventory": str(inventory),
            "extra_vars": {"out_dir": str(out), "site_var": "from-the-config"},
            "limit": ["clc", "walrus"],
            "poll_interval": 0.2,
            "run_timeout": 240,
            "max_parallel": 2,
            "stop_grace": 30,
            "env": {"ANSIBLE_CONFIG": str(project / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                    "PATH": os.pathsep.join([str(VENV_BIN), "/usr/bin", "/bin"])},
        },
    }))
    started = []
    env = {"tmp": tmp_path, "out": out, "ledger": ledger_path, "config": config, "instances": [i["id"] for i in launched],
           "procs": started}
    try:
        yield env
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # no runner or playbook of this test may outlive it
        for pid in leftovers(tmp_path):
            os.kill(pid, signal.SIGKILL)


def leftovers(tmp_path):
    """Processes whose command line names this test's directory (runners, playbooks): {pid: cmdline}."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(tmp_path) in cmdline:
            found[int(entry)] = cmdline
    return found


def start(env):
    log = open(env["tmp"] / ("dispatcher-%d.log" % len(env["procs"])), "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ansible_collections.euca.cloud.plugins.module_utils.api.dispatcher",
         "--config", str(env["config"])],
        env=dict(os.environ, PYTHONPATH=str(COLLECTIONS)), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    env["procs"].append(proc)
    return proc


def dispatcher_log(env):
    return "\n".join((env["tmp"] / ("dispatcher-%d.log" % n)).read_text() for n in range(len(env["procs"])))


def enqueue(env, kind, cluster, resources, params=None, account="alice"):
    with db.Ledger(env["ledger"]) as ledger:
        with ledger.write() as txn:
            return jobs.enqueue(txn, kind, cluster, resources, account, params)


def job_rows(env, ids=None):
    with db.Ledger(env["ledger"]) as ledger:
        with ledger.read() as txn:
            rows = txn.rows("SELECT * FROM jobs ORDER BY id")
    return [r for r in rows if ids is None or r["id"] in ids]


def no_leftovers(env):
    """Wait until no runner or playbook of this test is left; AssertionError naming them otherwise."""
    deadline = time.monotonic() + 30
    while leftovers(env["tmp"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not leftovers(env["tmp"]), leftovers(env["tmp"])


def wait_for(what, check, env, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        for proc in env["procs"]:
            assert proc.poll() is None or proc.returncode == 0 or proc.returncode == -9, dispatcher_log(env)
        time.sleep(0.2)
    raise AssertionError("timed out waiting for %s\n%s\n%s" % (what, dispatcher_log(env), records(env)))


def records(env):
    path = env["out"] / "runs.log"
    found = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    for record in found:
        record["extra"] = dict((k, None if v == UNSET else v) for k, v in record["extra"].items())
    return found


def all_in(env, ids, states):
    rows = job_rows(env, set(ids))
    unexpected = [r for r in rows if r["state"] in ("done", "failed") and r["state"] not in states]
    assert not unexpected, "jobs ended %s, not %s:\n%s" % (unexpected, states, dispatcher_log(env))
    return len(rows) == len(ids) and all(r["state"] in states for r in rows)


def started_on(env, playbook, host="clc1"):
    return [r for r in records(env) if r["event"] == "start" and r["playbook"] == playbook and r["host"] == host]


def close_gate(env, cluster):
    (env["out"] / ("gate-" + cluster)).write_text("")


def open_gate(env, cluster):
    (env["out"] / ("gate-" + cluster)).unlink()


def set_conf(env, **settings):
    """Change the dispatcher's settings (read when a dispatcher starts)."""
    conf = json.loads(env["config"].read_text())
    conf["dispatcher"].update(settings)
    env["config"].write_text(json.dumps(conf))


def stop(env, proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, dispatcher_log(env)


def test_queued_jobs_run_coalesced_per_cluster_with_the_cluster_in_the_limit(site):
    env = site
    close_gate(env, "cluster_a")
    first = enqueue(env, "converge", "cluster_a", ["i-00000001"])
    proc = start(env)
    wait_for("the first run to start", lambda: started_on(env, "reconcile.yml"), env)
    # cluster_a is busy: 100 requests queue meanwhile; cluster_b is claimed and run beside it
    burst = [enqueue(env, "converge", "cluster_a", ["i-%08x" % n]) for n in range(2, 102)]
    other = enqueue(env, "terminate", "cluster_b", ["i-0000b001", "i-0000b002"])
    wait_for("cluster_b's run", lambda: all_in(env, [other], {"done"}), env)
    assert all_in(env, burst, {"queued"}) and all_in(env, [first], {"running"})
    open_gate(env, "cluster_a")
    wait_for("the burst", lambda: all_in(env, [first] + burst, {"done"}), env, timeout=180)
    stop(env, proc)

    with db.Ledger(env["ledger"]) as ledger:
        with ledger.read() as txn:
            ran = jobs.runs(txn)
    by_jobs = sorted((cluster, kinds, count) for _run, cluster, kinds, count in ran)
    assert by_jobs == [("cluster_a", ["converge"], 1), ("cluster_a", ["converge"], 100), ("cluster_b", ["terminate"], 1)]
    ends = [r for r in records(env) if r["event"] == "end"]
    # three runs; each reached the clc, walrus and its own cluster's hosts only
    hosts = {}
    for r in ends:
        hosts.setdefault((r["playbook"], r["limit"]), []).append(r["host"])
    assert {k: sorted(v) for k, v in hosts.items()} == {
        ("reconcile.yml", "cluster_a:clc:walrus"): ["a1", "a1", "clc1", "clc1", "walrus1", "walrus1"],
        ("terminate-instances.yml", "cluster_b:clc:walrus"): ["b1", "clc1", "walrus1"],
    }
    terminate = [r for r in ends if r["playbook"] == "terminate-instances.yml"][0]
    assert terminate["site_var"] == "from-the-config"
    assert terminate["extra"]["instance_ids"] == ["i-0000b001", "i-0000b002"]
    assert terminate["extra"]["euca_terminate_reason"] == jobs.TERMINATE_REASON
    log = dispatcher_log(env)
    assert "cluster_a reconcile.yml run" in log and "jobs=100 [%d..%d] rc=0" % (burst[0], burst[-1]) in log
    # each run's extra vars were its own file, gone after the run; artifacts are kept per run
    assert os.listdir(env["tmp"] / "pdd" / "dispatch") and not [
        n for n in os.listdir(env["tmp"] / "pdd" / "dispatch") if n.endswith(".json")]
    assert len(os.listdir(env["tmp"] / "pdd" / "artifacts")) == 3


def test_a_failed_run_fails_its_jobs_with_the_tasks_msg_and_sets_the_instances_reason(site):
    env = site
    a, b, c = env["instances"]
    with db.Ledger(env["ledger"]) as ledger:
        with ledger.write() as txn:
            instances.ensure_instances(txn, state="terminated", instance_ids=[c], reason="gone before")
    (env["out"] / "fail").write_text("")
    stop_job = enqueue(env, "stop", "cluster_a", [a, c])
    attach = enqueue(env, "attach", "cluster_a", ["vol-00000001"], {"instance": b, "device": "/dev/vdc"})
    proc = start(env)
    wait_for("the failures", lambda: all_in(env, [stop_job, attach], {"failed"}), env)
    rows = dict((r["id"], r) for r in job_rows(env))
    assert rows[stop_job]["message"] == "the node refused stop-instances.yml of %s,%s" % (a, c)
    assert rows[attach]["message"] == "the node refused attach-volume.yml of"
    with db.Ledger(env["ledger"]) as ledger:
        with ledger.read() as txn:
            reasons = dict((r["id"], r["reason"]) for r in txn.rows("SELECT id, reason FROM instances"))
            failed = jobs.failed(txn, [a, b, c, "vol-00000001"])
    # the stopped instance that is still live says why; the terminated one keeps its reason; the
    # attach job's instance is not the job's resource
    assert reasons[a] == "Server.InternalError: the node refused stop-instances.yml of %s,%s" % (a, c)
    assert reasons[c] == "gone before" and reasons[b] == ""
    assert failed == {a: rows[stop_job]["message"], c: rows[stop_job]["message"],
                      "vol-00000001": rows[attach]["message"]}
    # the next job after the cause is gone succeeds and is what failed() reports then
    (env["out"] / "fail").unlink()
    again = enqueue(env, "stop", "cluster_a", [a])
    wait_for("the retry", lambda: all_in(env, [again], {"done"}), env)
    with db.Ledger(env["ledger"]) as ledger:
        with ledger.read() as txn:
            assert jobs.failed(txn, [a, c]) == {c: rows[stop_job]["message"]}
    stop(env, proc)
    assert "stop-instances.yml run" in dispatcher_log(env) and "failed: the node refused" in dispatcher_log(env)


def test_kill_9_mid_run_loses_nothing_and_sigterm_waits_for_the_run(site):
    env = site
    close_gate(env, "cluster_a")
    first = [enqueue(env, "terminate", "cluster_a", ["i-00000001"]), enqueue(env, "converge", "cluster_a", [])]
    proc = start(env)
    wait_for("the terminate run to start", lambda: started_on(env, "terminate-instances.yml"), env)
    later = enqueue(env, "reboot", "cluster_a", ["i-00000002"])
    proc.kill()
    proc.wait()
    assert [r["state"] for r in job_rows(env)] == ["running", "running", "queued"]
    orphans = leftovers(env["tmp"])
    assert orphans  # what Ansible runs goes on without the dispatcher ...

    proc = start(env)
    # ... until the next dispatcher starts: it kills what is left before the redo, which cannot race it
    wait_for("the restart", lambda: dispatcher_log(env).count("dispatcher started") == 2, env)
    killed = re.search(r"2 job\(s\) left running by the last one queued again, (\d+) process\(es\) of its runs killed",
                       dispatcher_log(env))
    # the runner, ansible-playbook and its workers, and the modules they run on the local connection: none of
    # them outlives the restart (some may have ended by themselves meanwhile, so the count killed can be lower)
    assert killed, dispatcher_log(env)
    assert not set(orphans) & set(leftovers(env["tmp"]))
    open_gate(env, "cluster_a")
    wait_for("the redo", lambda: all_in(env, first + [later], {"done"}), env, timeout=180)
    ends = [(r["playbook"], r["extra"]["instance_ids"]) for r in records(env) if r["event"] == "end" and r["host"] == "clc1"]
    # redone once each, with the reboot queued meanwhile, in plan order
    assert ends == [("terminate-instances.yml", ["i-00000001"]), ("reboot-instances.yml", ["i-00000002"]),
                    ("reconcile.yml", None)]

    # SIGTERM: the run in progress finishes and is recorded, nothing new is claimed
    stop(env, proc)
    set_conf(env, stop_grace=60)
    proc = start(env)
    close_gate(env, "cluster_b")
    held = enqueue(env, "converge", "cluster_b", [])
    wait_for("cluster_b's run to start", lambda: started_on(env, "reconcile.yml", "b1"), env)
    proc.send_signal(signal.SIGTERM)
    time.sleep(1)
    queued_after = enqueue(env, "converge", "cluster_a", [])
    open_gate(env, "cluster_b")
    assert proc.wait(60) == 0
    assert all_in(env, [held], {"done"}) and all_in(env, [queued_after], {"queued"})

    # past the grace a run is stopped and its jobs stay running for the next start
    set_conf(env, stop_grace=2)
    close_gate(env, "cluster_a")
    proc = start(env)
    wait_for("the held run", lambda: len(started_on(env, "reconcile.yml", "a1")) == 2, env)
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert time.monotonic() - began < 30
    assert all_in(env, [queued_after], {"running"}) and "left running after the stop grace" in dispatcher_log(env)
    no_leftovers(env)


def test_run_timeout_fails_the_jobs(site):
    env = site
    set_conf(env, run_timeout=2)
    close_gate(env, "cluster_a")
    job = enqueue(env, "converge", "cluster_a", [])
    proc = start(env)
    wait_for("the timeout", lambda: all_in(env, [job], {"failed"}), env)
    assert job_rows(env, {job})[0]["message"] == "the run took longer than 2s and was stopped"
    stop(env, proc)
    no_leftovers(env)


def test_console_jobs_run_once_merged_after_the_instance_jobs_without_a_reconcile(site):
    env = site
    a, b, c = env["instances"]
    first = enqueue(env, "console", "cluster_a", [a])
    reboot = enqueue(env, "reboot", "cluster_a", [b])
    second = enqueue(env, "console", "cluster_a", [c, a])
    proc = start(env)
    wait_for("the claim", lambda: all_in(env, [first, reboot, second], {"done"}), env)
    stop(env, proc)
    ends = [(r["playbook"], r["extra"]["instance_ids"], r["extra"]["console_store"]) for r in records(env)
            if r["event"] == "end" and r["host"] == "clc1"]
    assert ends == [("reboot-instances.yml", [b], None), ("get-console-output.yml", [a, c], True)]
    with db.Ledger(env["ledger"]) as ledger:
        with ledger.read() as txn:
            assert [(cluster, kinds, count) for _run, cluster, kinds, count in jobs.runs(txn)] == [
                ("cluster_a", ["reboot", "console"], 3)]


def test_a_bad_configuration_is_refused_at_start(site, tmp_path):
    env = site
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"ledger": env["ledger"], "dispatcher": {"runner": "/nonexistent/ansible-runner"}}))
    out = subprocess.run([sys.executable, "-m", "ansible_collections.euca.cloud.plugins.module_utils.api.dispatcher",
                          "--config", str(bad)], env=dict(os.environ, PYTHONPATH=str(COLLECTIONS)),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "dispatcher needs private_data_dir, project_dir, inventory" in out.stderr


# -- the real volume playbooks take what the dispatcher gives them ---------------------------------

def test_volume_playbooks_take_the_ids_the_ledger_holds(tmp_path):
    ledger_path = str(tmp_path / "ledger.sqlite")
    volumes_dir = tmp_path / "volumes"
    with db.Ledger(ledger_path) as ledger:
        with ledger.write() as txn:
            cloud.ensure_cluster(txn, "cluster_a")
            # what the API's CreateVolume and CreateSnapshot record before queueing their jobs
            vol = volumes.ensure_volume(txn, name="data", cluster="cluster_a", size_gb=1)["volume"]["id"]
            snap = volumes.ensure_snapshot(txn, "data-1", volume=vol)["snapshot"]["id"]
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(textwrap.dedent("""\
        all:
          vars:
            ansible_connection: local
            ansible_python_interpreter: {python}
            euca_ledger: {ledger}
          children:
            clc: {{hosts: {{clc1: }}}}
            cluster_a:
              children:
                sc: {{hosts: {{sc1: {{euca_cluster: cluster_a, euca_volumes_dir: {volumes}, euca_storage_backend: file}}}}}}
        """).format(python=sys.executable, ledger=ledger_path, volumes=volumes_dir))

    def play(kind, resource, params=None):
        step = jobs.plan([{"id": 1, "kind": kind, "cluster": "cluster_a", "account": "alice", "resources": [resource],
                           "params": params or {}, "created_at": "", "run": "r"}])[0]
        run = run_playbook(REPO_ROOT / "playbooks" / step["playbook"], extravars=step["extra_vars"],
                           inventory=str(inventory), limit="cluster_a:clc:walrus")
        assert run.rc == 0, run.stdout[-3000:]
        return run

    play("create-volume", vol)
    assert (volumes_dir / (vol + ".img")).stat().st_size == 1 << 30
    play("snapshot", snap, {"volume": vol})
    assert (volumes_dir / "snapshots" / (snap + ".img")).exists()
    # DeleteSnapshot: the API forgot it in the ledger; the run deletes the bytes on its cluster's SC
    with db.Ledger(ledger_path) as ledger:
        with ledger.write() as txn:
            volumes.ensure_snapshot(txn, "data-1", state="absent")
    play("delete-snapshot", snap)
    assert not (volumes_dir / "snapshots" / (snap + ".img")).exists()
    play("delete-volume", vol)
    assert not (volumes_dir / (vol + ".img")).exists()
    with db.Ledger(ledger_path) as ledger:
        with ledger.read() as txn:
            assert txn.value("SELECT COUNT(*) FROM volumes") == 0

    # the operators' ways stay: by name, with the ledger steps in the playbooks
    run = run_playbook(REPO_ROOT / "playbooks" / "create-volume.yml", inventory=str(inventory),
                       extravars={"volume_name": "logs", "cluster": "cluster_a", "size_gb": 1})
    assert run.rc == 0, run.stdout[-3000:]
    run = run_playbook(REPO_ROOT / "playbooks" / "create-snapshot.yml", inventory=str(inventory),
                       extravars={"snapshot_name": "logs-1", "volume": "logs"})
    assert run.rc == 0, run.stdout[-3000:]
    snap = run.task_result("Record the snapshot in the ledger")["snapshot"]["id"]
    assert (volumes_dir / "snapshots" / (snap + ".img")).exists()
    run = run_playbook(REPO_ROOT / "playbooks" / "delete-snapshot.yml", inventory=str(inventory),
                       extravars={"snapshot": "logs-1"})
    assert run.rc == 0, run.stdout[-3000:]
    assert not (volumes_dir / "snapshots" / (snap + ".img")).exists()
    run = run_playbook(REPO_ROOT / "playbooks" / "delete-snapshot.yml", inventory=str(inventory),
                       extravars={"snapshot": "logs-1"})
    assert run.rc != 0 and "unknown snapshot logs-1; nothing was changed" in run.stdout
