"""roles/clc_api deploys the EC2 API on the clc host: Debian's gunicorn serving module_utils/api/server.py
from a copy of the collection's module_utils, under a (private) supervisord, on a loopback port.

It proves: a check-mode run touches nothing; the server answers EC2 clients (boto3, signing with an
access key issued by euca.cloud.access_key) and refuses an unknown key with EC2's AuthFailure; a
second run changes nothing and keeps the same process; TLS with a self-signed certificate answers
over https; clc_api_state=absent stops it and removes its files. The dispatcher is off here (it would
run the site's playbooks); the role's refusal to deploy one it cannot configure is checked too.
"""

import socket
import subprocess
import sys
import time

import boto3
import botocore.config
import botocore.exceptions
import pytest
import yaml

from harness.runner import REPO_ROOT, run_module, run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.root]

LOCAL = "localhost ansible_connection=local ansible_python_interpreter=%s" % sys.executable
SERVICE = "euca-api-test"


def free_port():
    """A loopback port in 18800-18839 that nothing listens on."""
    for port in range(18800, 18840):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port in 18800-18839")


def deploy(tmp_path, role_vars, play_vars, check=False, inventory=LOCAL):
    play = tmp_path / "api.yml"
    play.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "vars": play_vars,
                                     "roles": [dict({"role": "euca.cloud.clc_api"}, **role_vars)]}]))
    return run_playbook(play, inventory=inventory, check=check)


def changed(run):
    return run.stats["changed"].get("localhost", 0)


def changed_tasks(run):
    """The names of the tasks that changed something (what an idempotence failure shows)."""
    return [ev["event_data"].get("task") for ev in run.events
            if ev.get("event") == "runner_on_ok" and ev["event_data"].get("res", {}).get("changed")]


def answers(port, timeout=30):
    """True once something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def ec2(url, key, verify=None):
    return boto3.client("ec2", endpoint_url=url, region_name="euca", aws_access_key_id=key["id"],
                        aws_secret_access_key=key["secret"], verify=verify,
                        config=botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=20))


def describe_regions(url, key, verify=None, timeout=30):
    """DescribeRegions, retried while a restarted gunicorn is not accepting yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ec2(url, key, verify).describe_regions()["Regions"]
        except botocore.exceptions.EndpointConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def server_imports():
    """Whether Debian's python3 imports the API's WSGI application from this checkout (only the standard library)."""
    probe = subprocess.run(["/usr/bin/python3", "-c", "import ansible_collections.euca.cloud.plugins.module_utils.api.server"],
                           cwd=str(REPO_ROOT / "collections"), capture_output=True, text=True)
    return probe.returncode == 0, probe.stderr.strip().splitlines()[-1:] or [""]


def test_api_role(supervisor, tmp_path):
    importable, why = server_imports()
    if not importable:
        pytest.skip("module_utils/api/server.py does not import yet: %s" % why[0])
    port = free_port()
    ledger = str(tmp_path / "ledger.sqlite")
    assert not run_module("euca.cloud.account", dict(ledger=ledger, name="alice")).failed
    issued = run_module("euca.cloud.access_key", dict(ledger=ledger, account="alice"))
    assert issued.changed and not issued.failed, issued.result.get("msg")
    key = {"id": issued.result["access_key_id"], "secret": issued.result["secret_access_key"]}

    lib, config = tmp_path / "lib", tmp_path / "etc" / "api.json"
    role_vars = dict(clc_api_ledger=ledger, clc_api_lib_dir=str(lib), clc_api_config=str(config),
                     clc_api_listen="127.0.0.1:%d" % port, clc_api_service_name=SERVICE, clc_api_dispatcher=False,
                     clc_api_workers=2, clc_api_private_data_dir=str(tmp_path / "runner"),
                     # the runner's inventory is a new temporary file at each run: the configuration names one path
                     clc_api_inventory=str(tmp_path / "inventory"))
    play_vars = supervisor.role_vars
    url = "http://127.0.0.1:%d/" % port
    dry = deploy(tmp_path, role_vars, play_vars, check=True)
    assert dry.rc == 0, dry.stdout[-3000:]
    assert not lib.exists() and not config.exists() and not list(supervisor.programs.iterdir())

    first = deploy(tmp_path, role_vars, play_vars)
    assert first.rc == 0 and changed(first) >= 3, first.stdout[-3000:]
    assert config.stat().st_mode & 0o777 == 0o600
    assert (lib / "ansible_collections/euca/cloud/plugins/module_utils/api/server.py").is_file()
    pid = supervisor.pid(SERVICE)
    assert pid and answers(port)
    # the server runs on Debian's python3 with Debian's gunicorn, not the controller's venv
    cmdline = open("/proc/%d/cmdline" % pid, "rb").read().split(b"\0")
    assert cmdline[:3] == [b"/usr/bin/python3", b"-m", b"gunicorn"], cmdline
    assert cmdline[cmdline.index(b"--worker-class") + 1] == b"sync" and b"--threads" not in cmdline, cmdline
    # the role's environment reaches the server: glibc's malloc keeps freed memory for the next request
    environ = dict(e.split(b"=", 1) for e in open("/proc/%d/environ" % pid, "rb").read().split(b"\0") if b"=" in e)
    assert environ.get(b"MALLOC_TRIM_THRESHOLD_") == b"134217728", sorted(environ)
    assert environ.get(b"MALLOC_MMAP_THRESHOLD_") == b"33554432"
    assert environ.get(b"EUCA_API_CONFIG") == str(config).encode()

    regions = describe_regions(url, key)
    assert [r["RegionName"] for r in regions] == ["euca"]
    stranger = {"id": "AKIA" + "Q" * 16, "secret": "x" * 40}
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        ec2(url, stranger).describe_regions()
    assert refused.value.response["Error"]["Code"] == "AuthFailure"

    again = deploy(tmp_path, role_vars, play_vars)
    assert again.rc == 0 and changed(again) == 0, changed_tasks(again) or again.stdout[-3000:]
    assert supervisor.pid(SERVICE) == pid

    # TLS with a self-signed certificate for 127.0.0.1
    cert, tls_key = tmp_path / "api.crt", tmp_path / "api.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(tls_key), "-out", str(cert)],
                   check=True, capture_output=True)
    tls_key.chmod(0o644)
    tls_vars = dict(role_vars, clc_api_tls_cert=str(cert), clc_api_tls_key=str(tls_key))
    secure = deploy(tmp_path, tls_vars, play_vars)
    assert secure.rc == 0 and changed(secure) >= 2, secure.stdout[-3000:]
    assert tls_key.stat().st_mode & 0o777 == 0o600
    assert '"endpoint": "https://127.0.0.1:%d/"' % port in config.read_text()
    regions = describe_regions("https://127.0.0.1:%d/" % port, key, verify=str(cert))
    assert [r["RegionName"] for r in regions] == ["euca"]
    assert not deploy(tmp_path, tls_vars, play_vars).stats["changed"].get("localhost", 0)

    # absent: the program and its files go
    gone = deploy(tmp_path, dict(tls_vars, clc_api_state="absent"), play_vars)
    assert gone.rc == 0 and changed(gone) >= 2, gone.stdout[-3000:]
    assert not lib.exists() and not config.exists() and not list(supervisor.programs.iterdir())
    assert "no such process" in supervisor.ctl("status", SERVICE).stdout.lower()
    assert not answers(port, timeout=3)
    assert deploy(tmp_path, dict(tls_vars, clc_api_state="absent"), play_vars).stats["changed"].get("localhost", 0) == 0


def test_a_dispatcher_it_cannot_configure_is_refused(tmp_path):
    # a clc host reached over ssh is not the controller: without the project's place on it, nothing is deployed
    inventory = "localhost ansible_connection=ssh ansible_python_interpreter=%s" % sys.executable
    play = tmp_path / "api.yml"
    play.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "vars": {"common_service_via": "supervisord"},
                                     "roles": [{"role": "euca.cloud.clc_api", "clc_api_lib_dir": str(tmp_path / "lib"),
                                                "clc_api_config": str(tmp_path / "api.json")}]}]))
    run = run_playbook(play, inventory=inventory)
    assert run.rc != 0
    assert "set clc_api_project_dir" in run.stdout and "clc_api_dispatcher=false" in run.stdout, run.stdout[-3000:]
    assert not (tmp_path / "lib").exists() and not (tmp_path / "api.json").exists()
