"""The EC2 API server for tests and benches without a whole cloud: Debian's gunicorn on the system
python3 (as roles/clc_api runs it) serving this checkout's module_utils, on 127.0.0.1, against a
ledger the caller made; boto3 clients with a fresh access key of an account."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import yaml

from harness.runner import REPO_ROOT

GUNICORN_PYTHON = "/usr/bin/python3"
APP = "ansible_collections.euca.cloud.plugins.module_utils.api.server:application"
#: what roles/clc_api deploys: its workers, threads and environment are this server's
ROLE_DEFAULTS = yaml.safe_load(
    (REPO_ROOT / "collections/ansible_collections/euca/cloud/roles/clc_api/defaults/main.yml").read_text())


def gunicorn_missing():
    """None when Debian's gunicorn can run, else why not (bindep.txt lists python3-gunicorn)."""
    done = subprocess.run([GUNICORN_PYTHON, "-c", "import gunicorn"], capture_output=True, text=True)
    return None if done.returncode == 0 else "Debian's python3-gunicorn is not installed (scripts/bootstrap installs it)"


class ApiServer:
    """gunicorn as roles/clc_api runs it by default (its worker class, workers and environment), or
    ``workers`` x ``threads`` of gthread, on 127.0.0.1:``port`` for ``ledger`` (a SQLite path or URL)."""

    def __init__(self, work: Path, ledger: str, port: int, workers: int | None = None, threads: int | None = None,
                 **settings):
        worker_class = ROLE_DEFAULTS["clc_api_worker_class"] if threads is None else "gthread"
        workers = ROLE_DEFAULTS["clc_api_workers"] if workers is None else workers
        self.work = Path(work)
        self.port = port
        self.endpoint = "http://127.0.0.1:%d/services/Eucalyptus/" % port
        self.config = self.work / "api.json"
        self.log = self.work / "api.log"
        config = {"ledger": ledger, "region": "euca", "endpoint": self.endpoint}
        config.update(settings)
        self.work.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps(config))
        self.argv = [GUNICORN_PYTHON, "-m", "gunicorn", "--bind", "127.0.0.1:%d" % port, "--workers", str(workers),
                     "--worker-class", worker_class] + (["--threads", str(threads)] if threads is not None else []) + [
                     "--timeout", "60", "--pythonpath", str(REPO_ROOT / "collections"), APP]
        self.proc = None

    def start(self, timeout: float = 60.0) -> "ApiServer":
        env = dict(os.environ, **ROLE_DEFAULTS["clc_api_environment"])
        env.update(EUCA_API_CONFIG=str(self.config), PYTHONDONTWRITEBYTECODE="1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("gunicorn exited %s:\n%s" % (self.proc.returncode, self.log.read_text()[-3000:]))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError("gunicorn did not listen on %d within %d s" % (self.port, timeout))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the master and its workers
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.proc = None

    def __enter__(self) -> "ApiServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def access_key(ledger_url: str, account: str) -> tuple[str, str]:
    """A new active access key of ``account`` (created in the ledger as create-access-key.yml does)."""
    from ansible_collections.euca.cloud.plugins.module_utils.ledger import access_keys, db

    with db.Ledger(ledger_url) as ledger:
        with ledger.write() as txn:
            made = access_keys.create(txn, account)
    return made["id"], made["secret"]


def client(endpoint: str, key: tuple[str, str], service: str = "ec2", **config):
    """A boto3 client of ``endpoint`` signing with ``key`` (SigV4, region euca), no retries unless asked."""
    import boto3
    import botocore.config

    options = dict(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=10, read_timeout=60)
    options.update(config)
    return boto3.client(service, endpoint_url=endpoint, region_name="euca", aws_access_key_id=key[0],
                        aws_secret_access_key=key[1], config=botocore.config.Config(**options))
