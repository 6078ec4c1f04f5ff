"""euca.cloud.cc_metadata: the EC2 metadata service at 169.254.169.254, with real namespaces and curl.

Topology: a "cc" namespace with two segment bridges (eubr-10 10.10.0.1/24, eubr-11 10.11.0.1/24);
instance namespaces a1, a2 on eubr-10 and b1 on eubr-11, each with its own MAC on a veth into
the bridge and a default route via its gateway. The module runs the daemon under a private
supervisord in the cc namespace and loads the nft table there; the instances ask with curl.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

import pytest

from harness.runner import run_module

MODULE = "euca.cloud.cc_metadata"
SERVER = str(Path(__file__).resolve().parents[2]
             / "collections/ansible_collections/euca/cloud/roles/cc/files/euca-metadata")
URL = "http://169.254.169.254"

pytestmark = pytest.mark.root


@pytest.fixture
def state_dir():
    path = tempfile.mkdtemp(prefix="eut-meta-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def instance(n, seg, ip, mac, **extra):
    item = {
        "id": "i-0000%04x" % n, "gateway": f"10.{seg}.0.1", "interface": f"eubr-{seg}", "private_ip": ip,
        "mac": mac, "image_id": "emi-0000000%d" % n, "instance_type": "m1.small",
        "reservation_id": "r-0000000%d" % n, "hostname": "i-0000%04x" % n, "availability_zone": "cluster1",
        "region": "euca", "account": "000000000001", "security_groups": ["default"],
        "public_keys": [{"name": f"key{n}", "key": f"ssh-ed25519 AAAAkey{n} user@host"}],
        "user_data": f"#!/bin/sh\necho secret-{n}\n", "launched_at": "2024-05-01T12:00:00Z",
    }
    item.update(extra)
    return item


def plug(netns, cc, bridge, port, mac, cidr, gateway):
    client = netns()
    cc.ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "address", mac, "netns", client.name)
    cc.ip("link", "set", port, "master", bridge, "up")
    client.ip("addr", "add", cidr, "dev", "eth0")
    client.ip("link", "set", "eth0", "up")
    client.ip("route", "add", "default", "via", gateway)
    return client


def curl(client, path, method="GET", headers=(), timeout=3):
    """(http status or None when no answer, body) as curl in ``client`` gets it."""
    argv = ["curl", "-s", "-m", str(timeout), "-X", method, "-o", "-", "-w", "\n%{http_code}"]
    for header in headers:
        argv += ["-H", header]
    out = client.run(*argv, URL + path, check=False, timeout=timeout * 3 + 10)
    body, _, code = out.stdout.rpartition("\n")
    return (int(code) if code.isdigit() and code != "000" else None), body


def apply(cc, state_dir, supervisor, instances, check=False, diff=False, **extra):
    args = dict(instances=instances, namespace=cc.name, snapshot=f"{state_dir}/snapshot.json", server_path=SERVER,
                service_manager="supervisord", supervisor_conf=str(supervisor.conf),
                supervisor_programs_dir=str(supervisor.programs), interfaces=["eubr-10", "eubr-11"], **extra)
    result = run_module(MODULE, args, check=check, diff=diff)
    assert not result.failed, result.result.get("msg") or result.stdout[-3000:]
    pid = (result.result.get("daemon") or {}).get("pid")
    if pid and not check:
        cc.adopt(pid)
    return result.result


def drops(cc):
    """Packets the guard has dropped so far."""
    out = cc.run("nft", "-j", "list", "chain", "ip", "euca_metadata", "metadata_guard").stdout
    for item in json.loads(out)["nftables"]:
        for expr in (item.get("rule") or {}).get("expr", []):
            if "counter" in expr:
                return expr["counter"]["packets"]
    raise AssertionError("no counter in the guard chain: " + out)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout}s")


def test_metadata_service_end_to_end(netns, state_dir, supervisor):
    cc = netns()
    for seg in (10, 11):
        cc.bridge(f"eubr-{seg}")
        cc.addr(f"eubr-{seg}", f"10.{seg}.0.1/24")
    a1 = plug(netns, cc, "eubr-10", "p1", "d0:0d:0a:0a:00:05", "10.10.0.5/24", "10.10.0.1")
    a2 = plug(netns, cc, "eubr-10", "p2", "d0:0d:0a:0a:00:06", "10.10.0.6/24", "10.10.0.1")
    b1 = plug(netns, cc, "eubr-11", "p3", "d0:0d:0a:0b:00:05", "10.11.0.5/24", "10.11.0.1")
    insts = [instance(1, 10, "10.10.0.5", "d0:0d:0a:0a:00:05"),
             instance(2, 10, "10.10.0.6", "d0:0d:0a:0a:00:06", public_keys=[], user_data=None),
             instance(3, 11, "10.11.0.5", "d0:0d:0a:0b:00:05", http_tokens="required")]

    # bad input fails before anything changes
    bad = run_module(MODULE, dict(instances=[dict(insts[0], mac="not-a-mac")], namespace=cc.name,
                                  snapshot=f"{state_dir}/snapshot.json", server_path=SERVER))
    assert bad.failed and "mac" in bad.result["msg"] and not os.listdir(state_dir)

    dry = apply(cc, state_dir, supervisor, insts, check=True, diff=True)
    assert dry["changed"] and dry["daemon"]["action"] == "start" and not os.listdir(state_dir)
    text = json.dumps(dry.get("diff") or dry)
    assert "secret-1" not in text and "AAAAkey1" not in text and "i-00000001" in text

    started = time.monotonic()
    out = apply(cc, state_dir, supervisor, insts, diff=True)
    print("first apply %.2fs" % (time.monotonic() - started))
    assert out["changed"] and out["summary"]["added"] == ["i-00000001", "i-00000002", "i-00000003"]
    for key in ("secret-1", "AAAAkey1"):
        assert key not in json.dumps(out), [k for k in out if key in json.dumps(out[k])]
    pid = out["daemon"]["pid"]
    assert pid and supervisor.pid("euca-metadata") == pid
    snap = Path(state_dir, "snapshot.json")
    assert stat.S_IMODE(snap.stat().st_mode) == 0o600
    st = snap.stat()

    again = apply(cc, state_dir, supervisor, insts)
    assert not again["changed"] and again["commands"] == [] and again["daemon"] == {
        "action": "none", "pid": pid, "service": "supervisord euca-metadata"}
    assert (snap.stat().st_ino, snap.stat().st_mtime_ns) == (st.st_ino, st.st_mtime_ns)

    # v1 reads: each its own
    for client, inst in ((a1, insts[0]), (a2, insts[1])):
        assert curl(client, "/latest/meta-data/instance-id") == (200, inst["id"])
        assert curl(client, "/latest/meta-data/local-ipv4") == (200, inst["private_ip"])
        assert curl(client, "/latest/meta-data/mac") == (200, inst["mac"])
    assert curl(a1, "/latest/user-data") == (200, "#!/bin/sh\necho secret-1\n")
    assert curl(a2, "/latest/user-data")[0] == 404
    assert curl(a1, "/latest/meta-data/public-keys/0/openssh-key") == (200, "ssh-ed25519 AAAAkey1 user@host\n")
    assert curl(a2, "/latest/meta-data/public-keys/")[0] == 404
    assert json.loads(curl(a2, "/latest/dynamic/instance-identity/document")[1])["privateIp"] == "10.10.0.6"
    assert curl(a1, "/latest/meta-data/public-ipv4")[0] == 404
    # v2: a token is bound to its caller; b1 requires one
    status, token = curl(a1, "/latest/api/token", "PUT", ["X-aws-ec2-metadata-token-ttl-seconds: 60"])
    assert status == 200 and token
    assert curl(a1, "/latest/meta-data/instance-id", headers=[f"X-aws-ec2-metadata-token: {token}"]) == \
        (200, "i-00000001")
    assert curl(a2, "/latest/meta-data/instance-id", headers=[f"X-aws-ec2-metadata-token: {token}"])[0] == 401
    assert curl(b1, "/latest/meta-data/instance-id")[0] == 401
    status, token3 = curl(b1, "/latest/api/token", "PUT", ["X-aws-ec2-metadata-token-ttl-seconds: 60"])
    assert curl(b1, "/latest/meta-data/instance-id", headers=[f"X-aws-ec2-metadata-token: {token3}"]) == \
        (200, "i-00000003")
    # the daemon's port is not reachable except through the redirect
    direct = a1.run("curl", "-s", "-m", "2", "http://10.10.0.1:8775/latest/meta-data/instance-id", check=False,
                    timeout=15)
    assert "i-0000" not in direct.stdout and direct.returncode != 0

    # an elastic IP associated: seen without a restart; removed: 404 again
    with_eip = [dict(insts[0], public_ip="203.0.113.10")] + insts[1:]
    out = apply(cc, state_dir, supervisor, with_eip, diff=True)
    assert out["changed"] and out["summary"]["modified"] == ["i-00000001"] and out["daemon"]["pid"] == pid
    assert curl(a1, "/latest/meta-data/public-ipv4") == (200, "203.0.113.10")
    assert "public-ipv4" in curl(a1, "/latest/meta-data/")[1].split("\n")
    apply(cc, state_dir, supervisor, insts)
    assert curl(a1, "/latest/meta-data/public-ipv4")[0] == 404

    # kill -9: supervisord brings it back, the next apply leaves it alone
    os.kill(pid, 9)
    killed = time.monotonic()
    new = wait_for(lambda: (supervisor.pid("euca-metadata") not in (0, pid)) and supervisor.pid("euca-metadata"),
                   30, "euca-metadata back under supervisord")
    cc.adopt(new)
    wait_for(lambda: curl(a1, "/latest/meta-data/instance-id", timeout=2) == (200, "i-00000001"), 30,
             "an answer from the respawned daemon")
    print("back after kill -9 in %.2fs" % (time.monotonic() - killed))
    after_kill = apply(cc, state_dir, supervisor, insts)
    assert not after_kill["changed"] and after_kill["daemon"]["pid"] == new
    assert curl(a1, "/latest/api/token", "PUT", ["X-aws-ec2-metadata-token-ttl-seconds: 60"])[0] == 200
    assert curl(a1, "/latest/meta-data/instance-id", headers=[f"X-aws-ec2-metadata-token: {token}"]) == \
        (200, "i-00000001"), "a token outlives a restart"

    # a2 takes a1's address (with its own MAC): nothing, and it is the guard that drops it
    before = drops(cc)
    a2.ip("addr", "flush", "dev", "eth0")
    a2.ip("addr", "add", "10.10.0.5/24", "dev", "eth0")
    a2.ip("route", "add", "default", "via", "10.10.0.1")
    status, body = curl(a2, "/latest/meta-data/instance-id", timeout=2)
    assert status is None and "i-0000" not in body
    assert curl(a2, "/latest/user-data", timeout=2)[0] is None
    assert drops(cc) > before
    # b1 on the other segment uses a1's address: nothing either
    before = drops(cc)
    b1.ip("addr", "flush", "dev", "eth0")
    b1.ip("addr", "add", "10.10.0.5/24", "dev", "eth0")
    b1.ip("route", "add", "10.11.0.1", "dev", "eth0")
    b1.ip("route", "add", "default", "via", "10.11.0.1")
    status, body = curl(b1, "/latest/meta-data/instance-id", timeout=2)
    assert status is None and "i-0000" not in body
    assert drops(cc) > before

    # state=absent removes it all
    gone = apply(cc, state_dir, supervisor, [], state="absent")
    assert gone["changed"] and gone["daemon"]["action"] == "stop"
    wait_for(lambda: not os.path.exists(f"/proc/{new}") or
             Path(f"/proc/{new}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z", 30, "the daemon gone")
    assert not (supervisor.programs / "euca-metadata.conf").exists()
    assert cc.run("nft", "list", "table", "ip", "euca_metadata", check=False).returncode != 0
    assert not snap.exists() and not Path(state_dir, "token.key").exists()
    assert not apply(cc, state_dir, supervisor, [], state="absent")["changed"]
