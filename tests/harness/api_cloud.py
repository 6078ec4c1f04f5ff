"""An all-in-one cloud with its EC2 API, for tests and benches: the sandbox inventory moved to
throwaway namespaces, directories, a private supervisord and a Walrus port (harness/sandbox.py),
site.yml with roles/clc_api serving the API on its loopback port (harness/sandbox.py api_port) and its
dispatcher running this checkout's playbooks with the same extra vars, the busybox test image (and optionally the
Debian cloud-init image) registered by the admin account, and clients for an account's access key.

``with ApiCloud(...) as cloud:`` tears everything down on the way out, failed or not: clean.yml
(guests, dnsmasq, programs, state), the supervisord, both namespaces, and any process left under
the work directory (killed by pid).
"""

from __future__ import annotations

import configparser
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness import netns as _netns
from harness.api_server import client
from harness.guest_image import image_dir
from harness.runner import REPO_ROOT, run_playbook
from harness.sandbox import VM_TYPES, sandbox_cloud_settings, sandbox_vars
from harness.supervisor import Supervisor

INVENTORY = str(REPO_ROOT / "inventories" / "sandbox")
class ApiCloud:
    def __init__(self, work, walrus_port, guest_image, cloud_image=None, cores=8, **settings_changes):
        self.work = Path(work)
        self.supervisor = Supervisor(self.work / "supervisor")
        self.cloud, self.outside = _netns.new_name(), _netns.new_name()
        self.cloud_ns, self.out_ns = _netns.Netns(self.cloud), _netns.Netns(self.outside)
        self.guest_image, self.cloud_image = guest_image, cloud_image
        settings = json.loads(json.dumps(sandbox_cloud_settings()))
        settings["vm_types"] = VM_TYPES
        settings.update(settings_changes)
        self.vars = sandbox_vars(self.work, self.supervisor, self.cloud, self.outside, walrus_port)
        capacity = {"cores": cores, "memory_mb": max(8192, 128 * cores), "disk_gb": max(80, 2 * cores)}
        more = dict(clc_settings=settings, euca_node_capacity=capacity,
                    euca_metadata_snapshot=str(self.work / "metadata" / "snapshot.json"))
        self.vars.update(more)
        self.vars["clc_api_dispatcher_extra_vars"] = dict(self.vars["clc_api_dispatcher_extra_vars"], **more)
        self.endpoint = self.vars["clc_api_endpoint"]
        self.images = {}
        self.timings = {}

    # ---- playbooks
    def play(self, name, expect=0, **more):
        started = time.monotonic()
        run = run_playbook(REPO_ROOT / "playbooks" / name, inventory=INVENTORY, extravars=dict(self.vars, **more))
        self.timings.setdefault(name, []).append(round(time.monotonic() - started, 1))
        if expect is not None and (run.rc == 0) != (expect == 0):
            failures = [e["event_data"].get("res", {}).get("msg") for e in run.events
                        if e.get("event") == "runner_on_failed"]
            raise AssertionError("%s %s: rc %s, failures %s\n%s" % (name, more, run.rc, failures, run.stdout[-3000:]))
        return run

    def up(self):
        self.play("sandbox.yml")
        self.play("site.yml")
        self.supervisor.pid("euca-api")  # raises when the program is not running
        image = self.guest_image
        for name, src, kind, more in (
                ("bb-kernel", image["kernel"]["path"], "kernel", {}),
                ("bb-ramdisk", image["ramdisk"]["path"], "ramdisk", {}),
                ("busybox", image["root"]["path"], "machine", {"image_kernel": "bb-kernel", "image_ramdisk": "bb-ramdisk"})):
            self.play("register-image.yml", image_name=name, image_src=src, image_kind=kind, **more)
        if self.cloud_image:
            self.play("register-image.yml", image_name="debian-12", image_src=self.cloud_image["path"],
                      image_kind="machine", image_format="qcow2")
        for name, row in self.ledger_rows("images").items():
            self.images[row["name"]] = name
        return self

    def idle(self, timeout=600):
        """Wait until the dispatcher has no queued or running job; False when it still has after ``timeout``."""
        import sqlite3

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            conn = sqlite3.connect(self.vars["euca_ledger"])
            try:
                busy = conn.execute("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')").fetchone()[0]
            except sqlite3.Error:
                busy = 0  # no ledger (yet, or any more): nothing to wait for
            finally:
                conn.close()
            if not busy:
                return True
            time.sleep(1)
        return False

    def down(self):
        """Tear down; ``self.outlived`` lists what had to be killed by pid afterwards (a test asserts it empty)."""
        self.outlived = []
        try:
            # a run the dispatcher is in would outlive its stop and race clean.yml
            if os.path.exists(self.vars["euca_ledger"]) and not self.idle():
                print("api cloud teardown: the dispatcher still had jobs after 600 s", file=sys.stderr)
            self.play("clean.yml", expect=None, test_image_dir=str(image_dir()), clean_keep_image=True)
        finally:
            self.supervisor.stop()
            for name in (self.cloud, self.outside):
                _netns.Netns(name).delete()
            for pid in subprocess.run(["pgrep", "-f", str(self.work)], capture_output=True, text=True).stdout.split():
                command = open("/proc/%s/cmdline" % pid, "rb").read().replace(b"\0", b" ").decode(errors="replace") \
                    if os.path.exists("/proc/%s/cmdline" % pid) else "?"
                self.outlived.append(command)
                print("api cloud teardown: pid %s outlived it; killed: %s" % (pid, command[:200]), file=sys.stderr)
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def __enter__(self):
        try:
            return self.up()
        except BaseException:
            self.down()
            raise

    def __exit__(self, *exc):
        self.down()

    # ---- the ledger, as the hosts converge it
    def ledger_rows(self, table, key="id"):
        import sqlite3

        conn = sqlite3.connect(self.vars["euca_ledger"])
        conn.row_factory = sqlite3.Row
        try:
            return dict((row[key], dict(row)) for row in conn.execute("SELECT * FROM %s" % table))
        finally:
            conn.close()

    # ---- an account's clients
    def credentials(self, account, create_account=True, **quotas):
        """(access key id, secret) of a new key of ``account`` (made by create-account.yml first, with ``quotas``),
        as create-access-key.yml writes it to a credentials file."""
        if create_account and account != "admin":
            self.play("create-account.yml", account=account, **quotas)
        path = self.work / ("%s.credentials" % account)
        self.play("create-access-key.yml", account=account, credentials_file=str(path))
        parser = configparser.ConfigParser()
        parser.read(path)
        section = parser[account] if account in parser else parser["default"]
        return section["aws_access_key_id"], section["aws_secret_access_key"], path

    def ec2(self, credentials, **config):
        return client(self.endpoint, credentials[:2], **config)

    def aws(self, credentials, *args, timeout=600):
        """awscli (this venv's) as ``credentials``' account; the parsed JSON it printed."""
        env = dict(os.environ, AWS_SHARED_CREDENTIALS_FILE=str(credentials[2]), AWS_CONFIG_FILE=str(self.work / "none"),
                   AWS_DEFAULT_REGION="euca", AWS_MAX_ATTEMPTS="1")
        profile = []
        parser = configparser.ConfigParser()
        parser.read(credentials[2])
        if "default" not in parser:
            profile = ["--profile", parser.sections()[0]]
        argv = [os.path.join(os.path.dirname(sys.executable), "aws")] + profile + [
            "--endpoint-url", self.endpoint, "--output", "json", "ec2"] + list(args)
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
        assert done.returncode == 0, (args, done.stderr)
        return json.loads(done.stdout) if done.stdout.strip() else {}
