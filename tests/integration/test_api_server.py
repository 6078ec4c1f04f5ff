"""The EC2 API behind Debian's gunicorn (as roles/clc_api runs it), driven by boto3 and awscli, on a
real ledger, with no hosts to converge (the dispatcher's jobs stay queued: test_api_session runs the
whole cloud). What the clients see of authentication, isolation, bad input, idempotency and
concurrency, and that each refusal leaves the ledger as it was."""

import datetime
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from unittest import mock

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.exceptions
import pytest

from ansible_collections.euca.cloud.plugins.module_utils.ledger import accounts, db, groups
from harness.api_server import ApiServer, access_key, client, gunicorn_missing
from harness.ec2_calls import everything, make_ledger

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PORT, PROXY_PORT = 18960, 18961  # outside test_role_api's 18800-18839 and the unit tests' 18840-18859


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    reason = gunicorn_missing()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("api")
    ledger = make_ledger(work)
    with ledger.write() as txn:
        groups.ensure_group(txn, "web", account="a")
        groups.ensure_group(txn, "web", account="b")
    url = str(work / "ledger.sqlite")
    server = ApiServer(work / "server", url, PORT, max_body_bytes=65536)
    server.start()
    try:
        yield dict(server=server, ledger=ledger, url=url, a=access_key(url, "a"), b=access_key(url, "b"))
    finally:
        server.stop()
        ledger.close()


def ec2(api, who="a", **config):
    return client(api["server"].endpoint, api[who], **config)


def code_of(call, *args, **kwargs):
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call(*args, **kwargs)
    return caught.value.response["Error"]["Code"], caught.value.response["ResponseMetadata"]["HTTPStatusCode"]


def run_one(c, **more):
    args = dict(ImageId="tiny", MinCount=1, MaxCount=1, SecurityGroups=["web"])
    args.update(more)
    return c.run_instances(**args)


def test_authentication_is_checked_and_refusals_change_nothing(api):
    before = everything(api["ledger"])
    wrong = (api["a"][0], "x" * 40)
    assert code_of(client(api["server"].endpoint, wrong).describe_instances) == ("AuthFailure", 401)
    unknown = ("AKIA" + "Q" * 16, api["a"][1])
    assert code_of(client(api["server"].endpoint, unknown).run_instances, ImageId="tiny", MinCount=1,
                   MaxCount=1) == ("AuthFailure", 401)
    old = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=20)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=old):
        assert code_of(ec2(api).run_instances, ImageId="tiny", MinCount=1, MaxCount=1)[0] == "RequestExpired"
    anonymous = urllib.request.Request(api["server"].endpoint, data=b"Action=DescribeInstances&Version=2016-11-15")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(anonymous, timeout=30)
    assert caught.value.code == 401 and b"<Code>MissingAuthenticationToken</Code>" in caught.value.read()
    assert everything(api["ledger"]) == before


def test_an_account_acts_on_its_own_resources_only(api):
    a, b = ec2(api), ec2(api, "b")
    theirs = run_one(b)["Instances"][0]["InstanceId"]
    volume = b.create_volume(Size=1, AvailabilityZone="cluster_a")["VolumeId"]
    mine = run_one(a)["Instances"][0]["InstanceId"]
    address = a.allocate_address()["PublicIp"]
    before = everything(api["ledger"])
    seen = [i["InstanceId"] for r in a.describe_instances()["Reservations"] for i in r["Instances"]]
    assert mine in seen and theirs not in seen
    assert code_of(a.terminate_instances, InstanceIds=[theirs])[0] == "InvalidInstanceID.NotFound"
    assert code_of(a.describe_instances, InstanceIds=[theirs])[0] == "InvalidInstanceID.NotFound"
    assert code_of(a.associate_address, PublicIp=address, InstanceId=theirs)[0] == "InvalidInstanceID.NotFound"
    assert code_of(a.attach_volume, VolumeId=volume, InstanceId=mine, Device="/dev/vdb")[0] == "InvalidVolume.NotFound"
    assert code_of(a.delete_volume, VolumeId=volume)[0] == "InvalidVolume.NotFound"
    assert volume not in [v["VolumeId"] for v in a.describe_volumes()["Volumes"]]
    # a's group web is a's: b's group of the same name is untouched by a's rule and a's delete
    a.authorize_security_group_ingress(GroupName="web", IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp="0.0.0.0/0")
    assert b.describe_security_groups(GroupNames=["web"])["SecurityGroups"][0]["IpPermissions"] == []
    a.revoke_security_group_ingress(GroupName="web", IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp="0.0.0.0/0")
    assert everything(api["ledger"])["instances"] == before["instances"]
    assert everything(api["ledger"])["volumes"] == before["volumes"]


def _signed(api, body, who="a"):
    """A raw SigV4-signed POST of ``body`` (what a client that skips boto3's own checks would send)."""
    request = botocore.awsrequest.AWSRequest(method="POST", url=api["server"].endpoint, data=body,
                                             headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(*api[who]), "ec2", "euca").add_auth(request)
    prepared = request.prepare()
    data = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
    raw = urllib.request.Request(prepared.url, data=data, headers=dict(prepared.headers), method="POST")
    try:
        with urllib.request.urlopen(raw, timeout=60) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.parametrize("body, status, code", [
    ("Action=DescribeNothing&Version=2016-11-15", 400, "InvalidAction"),
    ("Version=2016-11-15", 400, "MissingAction"),
    ("Action=DescribeInstances", 400, "MissingParameter"),
    ("Action=RunInstances&Version=2016-11-15&MinCount=1&MaxCount=1", 400, "MissingParameter"),
    ("Action=TerminateInstances&Version=2016-11-15&InstanceId.1=i-zz", 400, "InvalidInstanceID.Malformed"),
    ("Action=RunInstances&Version=2016-11-15&ImageId=tiny&MinCount=3&MaxCount=2", 400, "InvalidParameterValue"),
    ("Action=DescribeInstances&Version=2016-11-15&MaxResults=2", 400, "InvalidParameterValue"),
    ("Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=nonsense&Filter.1.Value.1=x", 400,
     "InvalidParameterValue"),
    ("Action=DescribeInstances&Version=2016-11-15&Pad=" + "x" * 70000, 413, "RequestEntityTooLarge"),
])
def test_bad_input_gets_ec2s_error_codes(api, body, status, code):
    before = everything(api["ledger"])
    got_status, text = _signed(api, body)
    assert got_status == status and "<Code>%s</Code>" % code in text, (got_status, text)
    assert "<RequestID>" in text and everything(api["ledger"]) == before


class DroppingProxy:
    """A TCP proxy to the API that forwards every request but drops the first ``drops`` answers
    (closes the client's connection after the server answered): a connection lost on the way back."""

    def __init__(self, port, target, drops=1):
        self.target, self.drops, self.dropped = target, drops, 0
        self.listener = socket.create_server(("127.0.0.1", port))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(conn,), daemon=True).start()

    @staticmethod
    def _message(sock):
        """One HTTP message (head and Content-Length body) from ``sock``; b"" when it closed."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return b""
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(next((line.split(b":", 1)[1] for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), b"0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body

    def _pipe(self, conn):
        upstream = socket.create_connection(("127.0.0.1", self.target))
        try:
            conn.settimeout(60)
            upstream.settimeout(60)
            while True:
                request = self._message(conn)
                if not request:
                    return
                upstream.sendall(request)
                answer = self._message(upstream)
                if self.dropped < self.drops:
                    self.dropped += 1
                    return  # the answer is lost: the client sees the connection close
                conn.sendall(answer)
        except OSError:
            return
        finally:
            conn.close()
            upstream.close()

    def close(self):
        self.listener.close()


def test_a_client_token_retried_after_a_dropped_connection_launches_once(api):
    proxy = DroppingProxy(PROXY_PORT, PORT)
    try:
        endpoint = "http://127.0.0.1:%d/services/Eucalyptus/" % PROXY_PORT
        # boto3 fills in a ClientToken for RunInstances and resends the same request when the connection drops
        c = client(endpoint, api["a"], retries={"max_attempts": 3, "mode": "standard"})
        with db.Ledger(api["url"]) as ledger, ledger.read() as txn:
            before = txn.value("SELECT COUNT(*) FROM instances")
        got = run_one(c)
        assert proxy.dropped == 1
        with db.Ledger(api["url"]) as ledger, ledger.read() as txn:
            assert txn.value("SELECT COUNT(*) FROM instances") == before + 1
            token = txn.row("SELECT * FROM client_tokens WHERE result = ?", got["ReservationId"])
        assert token is not None and token["account"] == "a"
    finally:
        proxy.close()


def test_twenty_clients_at_once_get_no_server_error_and_leave_the_ledger_consistent(api):
    errors, server_errors, launched = [], [], []
    lock = threading.Lock()

    def session(n):
        c = ec2(api, "a" if n % 2 else "b")
        try:
            for step in range(3):
                try:
                    if n % 4 == 0:
                        c.describe_instances()
                        c.describe_volumes()
                    elif n % 4 == 1:
                        got = run_one(c, ClientToken="c%d-%d" % (n, step))
                        with lock:
                            launched.extend(i["InstanceId"] for i in got["Instances"])
                    elif n % 4 == 2:
                        c.create_volume(Size=1, AvailabilityZone="cluster_b")
                        c.describe_security_groups()
                    else:
                        address = c.allocate_address()["PublicIp"]
                        c.release_address(PublicIp=address)
                except botocore.exceptions.ClientError as exc:
                    status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
                    with lock:
                        (server_errors if status >= 500 else errors).append((n, step, exc.response["Error"]))
        except Exception as exc:  # noqa: BLE001 - a transport failure is a failure of this test too
            with lock:
                server_errors.append((n, "transport", repr(exc)))

    threads = [threading.Thread(target=session, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert server_errors == []
    # refusals a busy cloud may give (quota, no room) are EC2's 4xx, never a torn ledger
    assert all(e[2]["Code"] in ("AddressLimitExceeded", "VolumeLimitExceeded", "InsufficientInstanceCapacity",
                                "InsufficientFreeAddressesInSubnet") for e in errors), errors
    with db.Ledger(api["url"]) as ledger, ledger.read() as txn:
        rows = txn.rows("SELECT id, private_ip, mac, account FROM instances WHERE state <> 'terminated'")
        for column in ("id", "private_ip", "mac"):
            assert len(set(r[column] for r in rows)) == len(rows), column
        assert set(launched) <= set(r["id"] for r in rows)
        queued = txn.rows("SELECT resources FROM jobs WHERE kind = 'converge'")
        in_jobs = set(i for r in queued for i in json.loads(r["resources"]))
        assert set(launched) <= in_jobs  # every launch queued its cluster's converge
        for row in txn.rows("SELECT account, COUNT(*) AS n FROM elastic_ips WHERE account IS NOT NULL GROUP BY account"):
            assert row["n"] <= accounts.get_account(txn, row["account"])["max_addresses"]


def test_awscli_speaks_to_the_api(api, tmp_path):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=api["a"][0], AWS_SECRET_ACCESS_KEY=api["a"][1],
               AWS_DEFAULT_REGION="euca", AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    user_data = tmp_path / "ud.txt"
    user_data.write_text("#!/bin/sh\necho from awscli\n")

    def cli(*args):
        done = subprocess.run([aws, "--endpoint-url", api["server"].endpoint, "--output", "json", "ec2"] + list(args),
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else {}

    ran = cli("run-instances", "--image-id", "tiny", "--count", "1",  # no group: the default one
              "--user-data", "file://%s" % user_data)
    instance = ran["Instances"][0]["InstanceId"]
    described = cli("describe-instances", "--instance-ids", instance)
    assert described["Reservations"][0]["Instances"][0]["State"]["Name"] == "pending"
    with db.Ledger(api["url"]) as ledger, ledger.read() as txn:
        assert txn.row("SELECT user_data FROM instances WHERE id = ?", instance)["user_data"] == user_data.read_text()
    zones = cli("describe-availability-zones")["AvailabilityZones"]
    assert [z["ZoneName"] for z in zones] == ["cluster_a", "cluster_b"]


def test_sts_get_caller_identity_names_the_keys_account(api):
    """amazon.aws's modules ask STS who they are; the endpoint answers for an sts-scoped signature."""
    with api["ledger"].read() as txn:
        number = txn.row("SELECT number FROM accounts WHERE name = 'a'")["number"]
    sts = client(api["server"].endpoint, api["a"], service="sts")
    got = sts.get_caller_identity()
    assert (got["Account"], got["Arn"], got["UserId"]) == (number, "arn:aws:iam::%s:root" % number, number)
    wrong = client(api["server"].endpoint, (api["a"][0], "x" * 40), service="sts")
    assert code_of(wrong.get_caller_identity) == ("AuthFailure", 401)
    # a signature scoped to a service this endpoint is not refuses before any action
    iam = client(api["server"].endpoint, api["a"], service="iam")
    assert code_of(iam.get_user)[0] == "IncompleteSignature"
