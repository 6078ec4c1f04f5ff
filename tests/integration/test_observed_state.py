"""Observed state flows back (issue 13): reconcile and describe -e refresh=true record what the node
controller reports, on one all-in-one sandbox (inventories/sandbox moved to throwaway namespaces,
directories and a private supervisord) with real QEMU guests:

- run-instances.yml is killed with SIGKILL as soon as its event stream shows the reservation done (two
  instances pending, no domain), and an instance whose kernel QEMU refuses is reserved beside them;
  reconcile.yml starts the two (ledger running, domains running), retries the third once and terminates it
  with EC2's Server.InternalError reason: its address and MAC are free again (the ledger, the CC's DHCP), no
  domain or files are left; run-instances.yml itself does the same with such an instance; a second reconcile
  changes nothing;
- one domain powered off and one undefined behind the cloud's back: describe -e refresh=true records the
  first stopped (Client.UserInitiatedShutdown) and reports the second gone, changing no host; reconcile
  defines and starts the gone one again (restarted) and keeps the stopped one stopped;
- an older ledger restored (taken before the launch): reconcile reports both domains as unknown, with their
  node, and leaves them; only -e purge_unknown=true removes them.
"""

import os
import signal
import subprocess
import time

import libvirt
import pytest

from harness import netns as _netns
from harness.guest_image import image_dir
from harness.runner import REPO_ROOT, envvars, run_module, run_playbook
from harness.sandbox import sandbox_vars

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(1200)]

INVENTORY = str(REPO_ROOT / "inventories" / "sandbox")
WALRUS_PORT = 18779
NODE = "localhost"  # the sandbox's node controller, by its name in the ledger
RESERVE_TASK = "Reserve them (unknown image, group or type fails here and changes nothing)"


def changed(run):
    return sum(run.stats["changed"].values())


def killed_after_reservation(extravars, tmp_path, **more):
    """Run run-instances.yml through ansible-runner and SIGKILL its ansible-playbook process as soon as the
    reservation task's result arrives in the event stream. Returns the reservation's result."""
    import ansible_runner

    seen = {}

    def on_event(event):
        data = event.get("event_data", {})
        if event.get("event") in ("runner_on_ok", "runner_on_failed") and data.get("task") == RESERVE_TASK:
            seen["result"] = data.get("res", {})
            seen["pid"] = event.get("pid") or data.get("pid")
            os.kill(seen["pid"], signal.SIGKILL)
        return True

    pdd = tmp_path / "killed-run"
    (pdd / "project").mkdir(parents=True)
    thread, runner = ansible_runner.run_async(
        private_data_dir=str(pdd), playbook=str(REPO_ROOT / "playbooks" / "run-instances.yml"), inventory=INVENTORY,
        extravars=dict(extravars, **more), envvars=envvars(), quiet=True, event_handler=on_event)
    thread.join(300)
    assert not thread.is_alive(), "run-instances.yml was not killed"
    assert seen.get("pid"), "no reservation event:\n" + (runner.stdout.read() if runner.stdout else "")[-3000:]
    assert runner.rc != 0  # it did not get to the end
    return seen["result"]


def test_reconcile_records_what_the_node_reports(supervisor, guest_image, tmp_path):
    cloud, outside = _netns.new_name(), _netns.new_name()
    extravars = sandbox_vars(tmp_path, supervisor, cloud, outside, WALRUS_PORT)
    ledger = extravars["euca_ledger"]
    timings = {}

    def play(name, **more):
        started = time.monotonic()
        run = run_playbook(REPO_ROOT / "playbooks" / name, inventory=INVENTORY, extravars=dict(extravars, **more))
        timings.setdefault(name, []).append(round(time.monotonic() - started, 1))
        return run

    def reconcile(**more):
        run = play("reconcile.yml", **more)
        assert run.rc == 0, run.stdout[-5000:]
        slowest = sorted(((ev["event_data"].get("duration") or 0, ev["event_data"].get("task")) for ev in run.events
                          if ev.get("event") in ("runner_on_ok", "runner_on_failed")), reverse=True)[:4]
        print("reconcile %.1f s, slowest tasks:" % timings["reconcile.yml"][-1],
              ", ".join("%s %.1f s" % (task, duration) for duration, task in slowest))
        return run, run.task_result("Show what reconcile recorded and what it only reports")["msg"]

    def instances():
        view = run_module("euca.cloud.ledger_info", dict(ledger=ledger, include_terminated=True)).result
        return dict((i["id"], i) for i in view["instances"])

    def domains():
        conn = libvirt.open("qemu+unix:///system?socket=%s/libvirtd/run/libvirt-sock" % tmp_path)
        try:
            return dict((d.name(), d.state()[0]) for d in conn.listAllDomains())
        finally:
            conn.close()

    def dhcp_text():
        out = []
        for root, _dirs, files in os.walk(extravars["euca_dhcp_state_dir"]):
            for name in files:
                with open(os.path.join(root, name), errors="replace") as handle:
                    out.append(handle.read())
        return "\n".join(out)

    try:
        for name, more in (("sandbox.yml", {}), ("site.yml", {})):
            done = play(name, **more)
            assert done.rc == 0, (name, done.stdout[-4000:])
        bad_kernel = tmp_path / "bad-vmlinuz"
        bad_kernel.write_bytes(os.urandom(65536))  # QEMU: "linux kernel too old to load a ram disk"
        for name, src, kind, more in (
                ("obs-kernel", guest_image["kernel"]["path"], "kernel", {}),
                ("obs-ramdisk", guest_image["ramdisk"]["path"], "ramdisk", {}),
                ("obs-image", guest_image["root"]["path"], "machine", {"image_kernel": "obs-kernel",
                                                                       "image_ramdisk": "obs-ramdisk"}),
                ("bad-kernel", str(bad_kernel), "kernel", {}),
                ("bad-image", guest_image["root"]["path"], "machine", {"image_kernel": "bad-kernel",
                                                                       "image_ramdisk": "obs-ramdisk"})):
            reg = play("register-image.yml", image_name=name, image_src=src, image_kind=kind, **more)
            assert reg.rc == 0, reg.stdout[-3000:]
        group = run_module("euca.cloud.security_group", dict(ledger=ledger, name="web"))
        assert not group.failed, group.result.get("msg")
        backups = tmp_path / "backups"
        taken = play("backup-ledger.yml", backup_dir=str(backups))
        assert taken.rc == 0, taken.stdout[-3000:]

        # ---- run-instances killed right after its reservation; one more reserved that cannot start
        started = time.monotonic()
        reserved = killed_after_reservation(extravars, tmp_path, instance_name="web", image="obs-image", group="web",
                                            count=2)
        timings["killed run-instances"] = round(time.monotonic() - started, 1)
        web = sorted(i["id"] for i in reserved["instances"])
        assert len(web) == 2
        broken = run_module("euca.cloud.instance", dict(ledger=ledger, name="broken", image="bad-image", group="web",
                                                        count=1))
        assert not broken.failed, broken.result.get("msg")
        (bad,) = broken.result["launched"]
        before = instances()
        assert [before[i]["state"] for i in web + [bad]] == ["pending"] * 3
        assert not set(web + [bad]) & set(domains())  # killed before any node started them

        run, summary = reconcile()
        after = instances()
        assert [after[i]["state"] for i in web] == ["running", "running"], after
        assert all(domains().get(i) == libvirt.VIR_DOMAIN_RUNNING for i in web), domains()
        assert sorted(summary["launched"]) == web and summary["retried"] == [bad], summary
        ((terminated),) = summary["terminated"]
        assert terminated["id"] == bad and terminated["node"] == NODE
        assert terminated["reason"].startswith("Server.InternalError: the node did not start the instance: ")
        assert "too old to load a ram disk" in terminated["reason"], terminated
        assert after[bad]["state"] == "terminated" and after[bad]["reason"] == terminated["reason"]
        assert summary["pending"] == [] and summary["unknown"] == []
        # its address and MAC are free: no live instance holds them, the CC's DHCP no longer reserves them
        live = [i for i in after.values() if i["state"] != "terminated"]
        assert before[bad]["private_ip"] not in [i["private_ip"] for i in live]
        leases = dhcp_text()
        assert all(after[i]["mac"] in leases for i in web) and before[bad]["mac"] not in leases
        assert bad not in domains() and not (tmp_path / "instances" / bad).exists()
        # the recording task warns, naming it and why
        warned = run.task_results("Record the observed states in the ledger")[-1].get("warnings", [])
        assert any(bad in w and "too old" in w for w in warned), warned

        # the same failure within run-instances.yml: the run fails naming it, and leaves nothing behind either
        doomed_run = play("run-instances.yml", instance_name="doomed", image="bad-image", group="web")
        assert doomed_run.rc != 0 and "did not start" in doomed_run.stdout, doomed_run.stdout[-3000:]
        (doomed,) = [i for i in instances().values() if i["name"] == "doomed"]
        assert doomed["state"] == "terminated", doomed
        assert doomed["reason"].startswith("Server.InternalError: the node did not start the instance: "), doomed
        assert doomed["id"] not in domains() and doomed["mac"] not in dhcp_text()

        again, summary = reconcile()
        assert changed(again) == 0, again.stdout[-4000:]
        assert all(summary[k] == [] for k in ("launched", "started", "stopped", "restarted", "retried", "terminated",
                                              "pending", "unknown", "purged", "unobserved")), summary

        # ---- behind the cloud's back: web[0] powered off, web[1] undefined
        conn = libvirt.open("qemu+unix:///system?socket=%s/libvirtd/run/libvirt-sock" % tmp_path)
        conn.lookupByName(web[0]).destroy()
        gone = conn.lookupByName(web[1])
        gone.destroy()
        gone.undefine()
        conn.close()
        refresh = play("describe.yml", refresh=True)
        assert refresh.rc == 0, refresh.stdout[-4000:]
        observed = refresh.task_result("Show what the node controllers reported")["msg"]
        assert observed["stopped"] == [{"id": web[0], "node": NODE, "reason": (
            "Client.UserInitiatedShutdown: User initiated shutdown (the domain was powered off on node %s, "
            "outside the cloud)" % NODE)}], observed
        assert observed["gone"] == [{"id": web[1], "node": NODE, "state": "running"}], observed
        tables = "\n".join(refresh.task_result("Show the cloud")["msg"])
        assert [line.split()[2] for line in tables.splitlines() if line.startswith(tuple(web))] == ["stopped", "running"]
        assert web[1] not in domains()  # describe changes no host

        _run, summary = reconcile()
        assert [r["id"] for r in summary["restarted"]] == [web[1]] and summary["stopped"] == [], summary
        assert domains() == {web[0]: libvirt.VIR_DOMAIN_SHUTOFF, web[1]: libvirt.VIR_DOMAIN_RUNNING}
        assert [instances()[i]["state"] for i in web] == ["stopped", "running"]

        # ---- the ledger file is lost; the last backup (taken before the launch) is restored: the two domains
        # are unknown to it, reported and left alone
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(ledger + suffix):
                os.unlink(ledger + suffix)
        restored = play("restore-ledger.yml", backup_dir=str(backups))
        assert restored.rc == 0, restored.stdout[-3000:]
        assert instances() == {}
        _run, summary = reconcile()
        assert sorted((u["id"], u["node"], u["ledger"]) for u in summary["unknown"]) == [
            (web[0], NODE, "none"), (web[1], NODE, "none")], summary
        assert summary["purged"] == [] and set(domains()) == set(web)
        assert instances() == {}  # nothing invented in the ledger either
        _run, summary = reconcile(purge_unknown=True)
        assert sorted(summary["purged"]) == web and domains() == {}
        assert not any((tmp_path / "instances" / i).exists() for i in web)
    finally:
        print("timings (s):", timings)
        play("clean.yml", test_image_dir=str(image_dir()), clean_keep_image=True)
        supervisor.stop()
        for name in (cloud, outside):
            _netns.Netns(name).delete()
    assert not {cloud, outside} & set(_netns.list_namespaces())
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert leftover == [], leftover


def test_instance_observed_module_check_mode_diff_and_idempotence(tmp_path):
    from ansible_collections.euca.cloud.plugins.module_utils.ledger import cloud, db, groups, images, instances

    url = str(tmp_path / "ledger.sqlite")
    with db.Ledger(url) as handle:
        with handle.write() as txn:
            cloud.ensure_settings(txn, {"private_network": "10.20.0.0/16", "addresses_per_group": 16})
            cloud.ensure_cluster(txn, "cluster_a")
            cloud.ensure_node(txn, "nc1", "cluster_a", 2, 512, 20)
            images.ensure_image(txn, "tiny", checksum="ab" * 32, size_bytes=1)
            groups.ensure_group(txn, "web")
            (iid,) = instances.ensure_instances(txn, name="w", group="web", image="tiny", count=1)["launched"]
    args = dict(ledger=url, observations=[{"node": "nc1", "domains": [
        {"name": iid, "state": "running", "reason": ""}, {"name": "i-0badc0de", "state": "stopped", "reason": "shutdown"}]}])

    def state():
        return run_module("euca.cloud.ledger_info", dict(ledger=url)).result["instances"][0]["state"]

    dry = run_module("euca.cloud.instance_observed", args, check=True, diff=True)
    assert not dry.failed and dry.changed and dry.result["launched"] == [iid], dry.result
    assert dry.result["diff"] == {"before": {iid: dict(dry.result["diff"]["before"][iid], state="pending")},
                                  "after": {iid: dict(dry.result["diff"]["before"][iid], state="running")}}
    assert state() == "pending"  # check mode wrote nothing
    real = run_module("euca.cloud.instance_observed", args, diff=True)
    assert real.changed and state() == "running"
    assert real.result["msg"] == ("pending -> running: %s; domains the ledger does not know (left alone): "
                                  "i-0badc0de on nc1" % iid)
    assert real.result["unknown"] == [{"id": "i-0badc0de", "node": "nc1", "state": "stopped", "ledger": "none"}]
    assert any("i-0badc0de on nc1" in w for w in real.result["warnings"])
    again = run_module("euca.cloud.instance_observed", args)
    assert not again.changed and again.result["launched"] == [] and again.result["generation"] == real.result["generation"]
