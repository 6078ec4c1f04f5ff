"""roles/cc/files/euca-metadata: the EC2 metadata layout and IMDSv2 tokens, over real HTTP.

A real ThreadingHTTPServer on 127.0.0.1 serves a snapshot whose instance sits behind gateway
127.0.0.1 at 127.0.0.1 (the local and peer address of a loopback connection), so every request
of the test is that instance's; a second server without it shows what a stranger gets.
"""

from __future__ import annotations

import http.client
import importlib.machinery
import importlib.util
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[2] / "collections/ansible_collections/euca/cloud/roles/cc/files/euca-metadata"


def load_server():
    loader = importlib.machinery.SourceFileLoader("euca_metadata_server", str(SERVER))
    spec = importlib.util.spec_from_loader("euca_metadata_server", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


srv = load_server()

INSTANCE = {
    "id": "i-0a1b2c3d", "gateway": "127.0.0.1", "interface": "eubr-10", "private_ip": "127.0.0.1",
    "mac": "d0:0d:0a:0a:00:05", "image_id": "emi-00000001", "kernel_id": "eki-00000002", "ramdisk_id": None,
    "instance_type": "m1.small", "reservation_id": "r-00000003", "launch_index": 2, "hostname": "i-0a1b2c3d",
    "local_hostname": "i-0a1b2c3d.internal", "public_ip": None, "public_hostname": None,
    "availability_zone": "cluster1", "region": "euca", "account": "000000000042",
    "security_groups": ["default", "web"], "public_keys": [{"name": "mykey", "key": "ssh-ed25519 AAAAkey me@h"}],
    "user_data": "#!/bin/sh\necho h\u00e9llo\n", "launched_at": "2024-05-01T12:00:00Z", "http_tokens": "optional",
    "architecture": "x86_64", "manifest_path": None,
}


def write_snapshot(path, instances):
    tmp = str(path) + ".new"
    Path(tmp).write_text(json.dumps({"format": 1, "instances": instances}))
    os.rename(tmp, path)


class Running:
    def __init__(self, tmp_path, instances):
        self.snapshot = tmp_path / "snapshot.json"
        self.key = tmp_path / "token.key"
        write_snapshot(self.snapshot, instances)
        self.start()

    def start(self):
        self.server = srv.make_server(str(self.snapshot), "127.0.0.1", 0, str(self.key))
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def request(self, method, path, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def get(self, path, **headers):
        return self.request("GET", path, headers)

    def text(self, path):
        status, headers, body = self.get(path)
        assert status == 200, (path, status)
        return body.decode()


@pytest.fixture
def server(tmp_path):
    running = Running(tmp_path, [dict(INSTANCE)])
    try:
        yield running
    finally:
        running.stop()


def test_versions_and_directories(server):
    versions = server.text("/").split("\n")
    assert versions[-1] == "latest" and "2009-04-04" in versions and "2021-03-23" in versions and "1.0" in versions
    for version in ("latest", "2009-04-04", "2021-03-23"):
        assert server.text(f"/{version}/").split("\n") == ["dynamic", "meta-data", "user-data"]
    assert server.get("/2000-01-01/meta-data/")[0] == 404
    listing = server.text("/latest/meta-data/").split("\n")
    assert listing == sorted(listing)
    for leaf in ("ami-id", "ami-launch-index", "ami-manifest-path", "hostname", "instance-id", "instance-type",
                 "local-hostname", "local-ipv4", "mac", "reservation-id", "security-groups", "kernel-id"):
        assert leaf in listing
    for directory in ("block-device-mapping/", "placement/", "public-keys/"):
        assert directory in listing
    assert "ramdisk-id" not in listing and "public-ipv4" not in listing and "public-hostname" not in listing


def test_leaves_are_the_instances_own(server):
    expect = {
        "ami-id": "emi-00000001", "ami-launch-index": "2", "instance-id": "i-0a1b2c3d", "instance-type": "m1.small",
        "local-ipv4": "127.0.0.1", "mac": "d0:0d:0a:0a:00:05", "hostname": "i-0a1b2c3d",
        "local-hostname": "i-0a1b2c3d.internal", "reservation-id": "r-00000003", "kernel-id": "eki-00000002",
        "security-groups": "default\nweb", "placement/availability-zone": "cluster1",
        "block-device-mapping/root": "/dev/vda", "block-device-mapping/ami": "vda",
        "public-keys/": "0=mykey", "public-keys/0/": "openssh-key",
        "public-keys/0/openssh-key": "ssh-ed25519 AAAAkey me@h\n", "placement/": "availability-zone",
        "block-device-mapping/": "ami\nroot",
    }
    for path, value in expect.items():
        status, headers, body = server.get("/latest/meta-data/" + path)
        assert (status, body.decode()) == (200, value), path
        assert headers["Content-Type"] == "text/plain"
    for missing in ("ramdisk-id", "public-ipv4", "public-hostname", "nothing", "public-keys/1/", "mac/x"):
        assert server.get("/latest/meta-data/" + missing)[0] == 404, missing
    status, headers, body = server.get("/2009-04-04/user-data")
    assert status == 200 and body == INSTANCE["user_data"].encode()
    status, headers, body = server.get("/latest/dynamic/instance-identity/document")
    assert status == 200 and headers["Content-Type"] == "application/json"
    doc = json.loads(body)
    assert doc["instanceId"] == "i-0a1b2c3d" and doc["imageId"] == "emi-00000001"
    assert doc["privateIp"] == "127.0.0.1" and doc["accountId"] == "000000000042"
    assert doc["availabilityZone"] == "cluster1" and doc["region"] == "euca"
    assert doc["pendingTime"] == "2024-05-01T12:00:00Z" and doc["architecture"] == "x86_64"
    assert server.text("/latest/dynamic/") == "instance-identity/"


def test_snapshot_change_is_seen_without_restart(server):
    assert server.get("/latest/meta-data/public-ipv4")[0] == 404
    changed = dict(INSTANCE, public_ip="203.0.113.7", user_data=None)
    write_snapshot(server.snapshot, [changed])
    assert server.text("/latest/meta-data/public-ipv4") == "203.0.113.7"
    assert server.text("/latest/meta-data/public-hostname") == "203.0.113.7"
    assert "public-ipv4" in server.text("/latest/meta-data/").split("\n")
    assert server.get("/latest/user-data")[0] == 404
    assert server.text("/latest/").split("\n") == ["dynamic", "meta-data"]
    write_snapshot(server.snapshot, [dict(INSTANCE, gateway="10.9.0.1")])  # no longer this caller
    assert server.get("/latest/meta-data/instance-id")[0] == 404
    assert server.get("/")[0] == 404


def test_a_caller_the_snapshot_does_not_know_gets_404(tmp_path):
    other = Running(tmp_path, [dict(INSTANCE, private_ip="10.10.0.5", gateway="10.10.0.1")])
    try:
        for path in ("/", "/latest/meta-data/", "/latest/meta-data/instance-id", "/latest/user-data"):
            status, _h, body = other.get(path)
            assert status == 404 and b"i-0a1b2c3d" not in body
        assert other.request("PUT", srv.TOKEN_PATH, {srv.TTL_HEADER: "60"})[0] == 404
    finally:
        other.stop()


def test_tokens(server, tmp_path):
    assert stat.S_IMODE(os.stat(server.key).st_mode) == 0o600
    status, headers, token = server.request("PUT", srv.TOKEN_PATH, {srv.TTL_HEADER: "60"})
    assert status == 200 and headers[srv.TTL_HEADER] == "60" and headers["Content-Type"] == "text/plain"
    token = token.decode()
    status, headers, body = server.get("/latest/meta-data/instance-id", **{srv.TOKEN_HEADER: token})
    assert (status, body) == (200, b"i-0a1b2c3d") and 0 < int(headers[srv.TTL_HEADER]) <= 60
    # bad TTLs, a forwarded PUT
    for ttl in ("0", "21601", "x", ""):
        assert server.request("PUT", srv.TOKEN_PATH, {srv.TTL_HEADER: ttl})[0] == 400, ttl
    assert server.request("PUT", srv.TOKEN_PATH, {srv.TTL_HEADER: "60", "X-Forwarded-For": "10.1.1.1"})[0] == 403
    assert server.request("PUT", srv.TOKEN_PATH, {srv.TTL_HEADER: "21600"})[0] == 200
    # invalid, tampered, expired, another caller's
    tokens = srv.Tokens(server.key.read_bytes())
    bad = [token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), "garbage", "",
           tokens.issue("127.0.0.1", "127.0.0.1", 5, now=time.time() - 10),
           tokens.issue("127.0.0.1", "10.10.0.9", 60), tokens.issue("10.10.0.1", "127.0.0.1", 60),
           srv.Tokens(b"k" * 32).issue("127.0.0.1", "127.0.0.1", 60)]
    for value in bad:
        assert server.get("/latest/meta-data/instance-id", **{srv.TOKEN_HEADER: value})[0] == 401, value
    # tokens survive a restart (the key file is kept)
    server.stop()
    server.start()
    assert server.get("/latest/meta-data/instance-id", **{srv.TOKEN_HEADER: token})[0] == 200


def test_http_tokens_required(server):
    write_snapshot(server.snapshot, [dict(INSTANCE, http_tokens="required")])
    assert server.get("/latest/meta-data/instance-id")[0] == 401
    token = server.request("PUT", srv.TOKEN_PATH, {srv.TTL_HEADER: "30"})[2].decode()
    assert server.get("/latest/meta-data/instance-id", **{srv.TOKEN_HEADER: token})[2] == b"i-0a1b2c3d"


def test_x_forwarded_for_does_not_identify(tmp_path):
    other = Running(tmp_path, [dict(INSTANCE, private_ip="10.10.0.5", gateway="10.10.0.1")])
    try:
        assert other.get("/latest/meta-data/instance-id", **{"X-Forwarded-For": "10.10.0.5"})[0] == 404
    finally:
        other.stop()


def test_log_lines_carry_no_secrets(server, capfd):
    server.get("/latest/user-data")
    server.get("/latest/meta-data/public-keys/0/openssh-key")
    token = server.request("PUT", srv.TOKEN_PATH, {srv.TTL_HEADER: "60"})[2].decode()
    server.get("/latest/meta-data/", **{srv.TOKEN_HEADER: token})
    # the server thread logs a request after its answer is sent: wait for the fourth line
    err, deadline = "", time.monotonic() + 10
    while True:
        err += capfd.readouterr().err
        lines = [line for line in err.splitlines() if " GET " in line or " PUT " in line]
        if len(lines) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(lines) == 4, err
    assert "echo" not in err and "AAAAkey" not in err and token not in err
    assert "i-0a1b2c3d GET /latest/user-data 200" in err
