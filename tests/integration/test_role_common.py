"""roles/common: host preparation inside a namespace, and the "service" entry point with a real
supervisord running tgtd in a namespace as a program.

Host preparation runs in a throwaway namespace (the sandbox's way): the root namespace's
settings are read before and after and must not change.

The test's supervisord has its own configuration, socket and program directory, so the host's
supervisor (if any) is never touched. It shows: the program starts and answers, a second run
changes nothing, supervisord restarts the daemon after a kill -9, and a changed definition
restarts it with the new command line.
"""

import os
import signal
import sys
import subprocess
import textwrap
import time

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.storage.exports import tgtd_argv
from harness.runner import run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.root]

NAME = "euca-tgtd-test"


@pytest.fixture
def sup(supervisor, netns):
    ns = netns()
    ns.ip("link", "set", "lo", "up")
    return {"supervisor": supervisor, "conf": str(supervisor.conf), "programs": str(supervisor.programs), "ns": ns,
            "dir": supervisor.dir}


def converge(sup, command, tmp_path):
    play = tmp_path / "service.yml"
    play.write_text(textwrap.dedent("""\
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: Run tgtd as a service
              ansible.builtin.include_role:
                name: euca.cloud.common
                tasks_from: service
              vars:
                common_service_name: {name}
                common_service_command: {command}
                common_service_environment: {{TGT_IPC_SOCKET: "{socket}"}}
                common_service_manager: supervisord
                common_supervisor_conf: {conf}
                common_supervisor_programs_dir: {programs}
        """).format(name=NAME, command=list(command), socket=sup["dir"] / "tgt", conf=sup["conf"],
                    programs=sup["programs"]))
    return run_playbook(play, inventory="localhost ansible_connection=local ansible_python_interpreter=%s"
                        % sys.executable)


def changed(run):
    return run.stats["changed"].get("localhost", 0)


def tgtd_pid(sup):
    return sup["supervisor"].pid(NAME)


def portals(sup):
    run = subprocess.run(["tgtadm", "-C", "0", "--lld", "iscsi", "--op", "show", "--mode", "portal"],
                         env=dict(os.environ, TGT_IPC_SOCKET=str(sup["dir"] / "tgt")), capture_output=True, text=True)
    return run.stdout if run.returncode == 0 else None


def wait_portals(sup, timeout=15):
    deadline = time.monotonic() + timeout
    while portals(sup) is None:
        assert time.monotonic() < deadline, "tgtd does not answer"
        time.sleep(0.1)
    return portals(sup)


def test_service_under_supervisord(sup, tmp_path):
    command = tgtd_argv("127.0.0.1:3260", sup["ns"].name)
    first = converge(sup, command, tmp_path)
    assert first.rc == 0, first.stdout[-3000:]
    assert changed(first) >= 2  # program defined, supervisord started
    assert "Portal: 127.0.0.1:3260" in wait_portals(sup)
    pid = tgtd_pid(sup)
    assert pid in sup["ns"].ns_pids()  # tgtd runs inside the namespace

    again = converge(sup, command, tmp_path)
    assert again.rc == 0 and changed(again) == 0, again.stdout[-3000:]
    assert tgtd_pid(sup) == pid

    # kill -9: supervisord brings it back
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while True:
        new = tgtd_pid(sup)
        if new and new != pid:
            break
        assert time.monotonic() < deadline, "supervisord did not restart tgtd"
        time.sleep(0.2)
    assert "Portal: 127.0.0.1:3260" in wait_portals(sup)

    # a new command line restarts it with that command line
    moved = converge(sup, tgtd_argv("127.0.0.1:3261", sup["ns"].name), tmp_path)
    assert moved.rc == 0 and changed(moved) >= 1, moved.stdout[-3000:]
    deadline = time.monotonic() + 15
    while "127.0.0.1:3261" not in (portals(sup) or ""):
        assert time.monotonic() < deadline, portals(sup)
        time.sleep(0.2)
    assert tgtd_pid(sup) not in (pid, new)


LOCAL = "localhost ansible_connection=local ansible_python_interpreter=%s" % sys.executable


def prepare(ns, tmp_path, networks):
    play = tmp_path / "prepare.yml"
    play.write_text(textwrap.dedent("""\
        - hosts: localhost
          gather_facts: false
          roles:
            - role: euca.cloud.common
              common_namespace: {ns}
              common_networks: {networks}
        """).format(ns=ns.name, networks=networks))
    return run_playbook(play, inventory=LOCAL)


def sysctl(ns, key):
    argv = (["ip", "netns", "exec", ns.name] if ns else []) + ["sysctl", "-n", key]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def test_host_preparation_in_a_namespace(netns, tmp_path):
    ns = netns()
    root_before = sysctl(None, "net.ipv4.ip_forward")
    persisted = os.path.exists("/etc/sysctl.d/60-euca-cloud.conf")
    networks = {"private_network": "10.128.0.0/16", "public_ips": ["203.0.113.32/28"]}
    assert sysctl(ns, "net.ipv4.ip_forward") == "0"

    first = prepare(ns, tmp_path, networks)
    assert first.rc == 0 and changed(first) >= 1, first.stdout[-3000:]
    assert sysctl(ns, "net.ipv4.ip_forward") == "1"
    again = prepare(ns, tmp_path, networks)
    assert again.rc == 0 and changed(again) == 0, again.stdout[-3000:]

    # a collision stops the role before anything changes
    ns.run("sysctl", "-w", "net.ipv4.ip_forward=0")
    ns.bridge("lan0")
    ns.addr("lan0", "10.128.5.1/24")
    refused = prepare(ns, tmp_path, networks)
    assert refused.rc != 0 and "private_network 10.128.0.0/16 overlaps 10.128.5.0/24 dev lan0" in refused.stdout
    assert sysctl(ns, "net.ipv4.ip_forward") == "0"

    # the host itself was not touched
    assert sysctl(None, "net.ipv4.ip_forward") == root_before
    assert os.path.exists("/etc/sysctl.d/60-euca-cloud.conf") == persisted
