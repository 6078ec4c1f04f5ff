"""EC2 API authentication against real clients' signatures: requests signed by botocore's own
signers (SigV4 header, SigV4 presigned query, SigV2), and a boto3 EC2 client talking to a tiny
WSGI server that authenticates with api/auth.py and answers with api/query.py."""

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import boto3
import botocore.auth
import pytest
from botocore.auth import SigV2Auth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from ansible_collections.euca.cloud.plugins.module_utils.api import auth, query
from ansible_collections.euca.cloud.plugins.module_utils.api.errors import ApiError

KEY, SECRET = auth.new_access_key()
KEYS = {KEY: SECRET}
URL = "http://127.0.0.1:8773/"
FORM = {"Action": "DescribeRegions", "Version": "2016-11-15", "RegionName.1": "euca"}


def lookup(key_id):
    return KEYS.get(key_id)


def signed(signer, method="POST", url=URL, data=None, params=None, headers=None):
    """A request as botocore's ``signer`` prepares it for the wire."""
    headers = dict(headers or {})
    if data is not None:
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
    request = AWSRequest(method=method, url=url, data=dict(data) if data else None,
                         params=dict(params) if params else None, headers=headers)
    signer.add_auth(request)
    return request.prepare()


def wire(prepared):
    """The body bytes of ``prepared`` as they go on the wire."""
    body = prepared.body or b""
    return body.encode("utf-8") if isinstance(body, str) else body


def verify(prepared, body=None, **kwargs):
    """``auth.verify`` on what a server receives for ``prepared`` (its HTTP client adds Host)."""
    split = urlsplit(prepared.url)
    headers = {name.lower(): value for name, value in prepared.headers.items()}
    headers.setdefault("host", split.netloc)
    if body is None:
        body = wire(prepared)
    params = query.parse_request(prepared.method, split.query, body, headers.get("content-type"))
    return auth.verify(prepared.method, split.path or "/", split.query, headers, body, params, lookup, **kwargs)


def v4(secret=SECRET, key=KEY, region="euca", service="ec2"):
    return SigV4Auth(Credentials(key, secret), service, region)


def refused(code, status, prepared, **kwargs):
    with pytest.raises(ApiError) as caught:
        verify(prepared, **kwargs)
    assert (caught.value.code, caught.value.status) == (code, status), caught.value.message
    return caught.value


# --- keys ---------------------------------------------------------------------------------------

def test_new_access_key_is_shaped_like_aws():
    key_id, secret = auth.new_access_key()
    assert re.match(r"AKIA[A-Z2-7]{16}\Z", key_id)
    assert re.match(r"[A-Za-z0-9+/]{40}\Z", secret)
    assert auth.new_access_key() != (key_id, secret)


# --- SigV4, Authorization header ----------------------------------------------------------------

def test_sigv4_post_form_is_accepted():
    assert verify(signed(v4(), data=FORM)) == KEY


@pytest.mark.parametrize("region", ["euca", "us-east-1", "cluster01"])
def test_sigv4_any_region_the_client_chose(region):
    assert verify(signed(v4(region=region), data=FORM)) == KEY


def test_sigv4_eucalyptus_service_path_and_query_string():
    url = "http://clc.example:8773/services/Eucalyptus/?Extra=a%20b&Tilde=x~y"
    assert verify(signed(v4(), url=url, data=FORM)) == KEY


def test_sigv4_get_with_parameters_botocore_form_encodes():
    params = {"Action": "DescribeInstances", "Filter.1.Name": "tag:Name", "Filter.1.Value.1": "web *~+/ü"}
    prepared = signed(v4(), method="GET", params=params)
    assert "+" in prepared.url  # urlencode's space: the server must read it as botocore signed it
    assert verify(prepared) == KEY


def test_sigv4_signed_with_a_date_header():
    prepared = signed(v4(), data=FORM, headers={"Date": "Tue, 01 Dec 2026 00:00:00 GMT"})
    assert "Date" in prepared.headers and "X-Amz-Date" not in prepared.headers
    assert verify(prepared) == KEY


def test_sigv4_header_values_are_trimmed_like_botocore():
    prepared = signed(v4(), data=FORM, headers={"X-Custom": "  a   b  "})
    assert verify(prepared) == KEY


def test_sigv4_wrong_secret_is_auth_failure():
    error = refused("AuthFailure", 401, signed(v4(secret="x" * 40), data=FORM))
    assert error.message == "AWS was not able to validate the provided access credentials"


def test_sigv4_unknown_key_is_auth_failure():
    refused("AuthFailure", 401, signed(v4(key="AKIAAAAAAAAAAAAAAAAA"), data=FORM))


def test_sigv4_tampered_body_is_auth_failure():
    prepared = signed(v4(), data=FORM)
    refused("AuthFailure", 401, prepared, body=wire(prepared).replace(b"DescribeRegions", b"TerminateInstances"))


def test_sigv4_declared_payload_hash_must_be_the_body():
    prepared = signed(v4(), data=FORM, headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    refused("IncompleteSignature", 400, prepared)


def test_sigv4_twenty_minutes_old_is_expired():
    error = refused("RequestExpired", 400, signed(v4(), data=FORM), now=time.time() + 1200)
    assert "900 seconds" in error.message


def test_sigv4_from_the_future_is_expired():
    refused("RequestExpired", 400, signed(v4(), data=FORM), now=time.time() - 1200)


def test_sigv4_within_the_skew_is_accepted():
    assert verify(signed(v4(), data=FORM), now=time.time() + 600) == KEY


def test_sigv4_other_service_is_incomplete():
    error = refused("IncompleteSignature", 400, signed(v4(service="s3"), data=FORM))
    assert "'s3'" in error.message


def test_sigv4_scope_date_must_be_the_request_date():
    prepared = signed(v4(), data=FORM)
    header = prepared.headers["Authorization"]
    prepared.headers["Authorization"] = re.sub(r"/(\d{8})/", "/19990101/", header)
    refused("IncompleteSignature", 400, prepared)


@pytest.mark.parametrize("header", [
    "AWS AKIA:abc",
    "AWS4-HMAC-SHA256 Credential=%s/20261201/euca/ec2/aws4_request, Signature=00" % KEY,
    "AWS4-HMAC-SHA256 Credential=%s/euca/ec2/aws4_request, SignedHeaders=host, Signature=00" % KEY,
    "AWS4-HMAC-SHA256 Credential=%s/20261201/euca/ec2/aws4_request, SignedHeaders=x-amz-date, Signature=00" % KEY,
], ids=["v2-style", "no-signed-headers", "short-scope", "host-not-signed"])  # ids without the random key (xdist)
def test_malformed_authorization_is_incomplete(header):
    prepared = signed(v4(), data=FORM)
    prepared.headers["Authorization"] = header
    refused("IncompleteSignature", 400, prepared)


def test_non_ascii_signature_is_auth_failure_not_a_crash():
    prepared = signed(v4(), data=FORM)
    header = prepared.headers["Authorization"]
    prepared.headers["Authorization"] = re.sub(r"Signature=\w+", "Signature=\u00e9\u00e9", header)
    refused("AuthFailure", 401, prepared)
    presigned_request = presigned()
    presigned_request.url = re.sub(r"X-Amz-Signature=\w+", "X-Amz-Signature=%C3%A9", presigned_request.url)
    refused("AuthFailure", 401, presigned_request)


def test_garbage_date_header_is_incomplete():
    prepared = signed(v4(), data=FORM, headers={"Date": "Tue, 01 Dec 2026 00:00:00 GMT"})
    prepared.headers["Date"] = "yesterday"
    refused("IncompleteSignature", 400, prepared)


def test_no_credentials_at_all():
    with pytest.raises(ApiError) as caught:
        auth.verify("POST", "/", "", {"host": "x"}, b"Action=DescribeRegions", {"Action": "DescribeRegions"}, lookup)
    assert (caught.value.code, caught.value.status) == ("MissingAuthenticationToken", 401)


# --- SigV4, presigned query ---------------------------------------------------------------------

def presigned(expires=60, **kwargs):
    return signed(SigV4QueryAuth(Credentials(KEY, kwargs.pop("secret", SECRET)), "ec2", "euca", expires=expires),
                  method="GET", params=FORM, **kwargs)


def test_presigned_is_accepted():
    prepared = presigned()
    assert "X-Amz-Signature=" in prepared.url and "Authorization" not in prepared.headers
    assert verify(prepared) == KEY


def test_presigned_expired():
    error = refused("RequestExpired", 400, presigned(expires=60), now=time.time() + 120)
    assert "expired at" in error.message


def test_presigned_wrong_secret_and_tampered_parameter():
    refused("AuthFailure", 401, presigned(secret="y" * 40))
    prepared = presigned()
    prepared.url = prepared.url.replace("RegionName.1=euca", "RegionName.1=other")
    refused("AuthFailure", 401, prepared)


def test_presigned_expiry_beyond_a_week_is_incomplete():
    refused("IncompleteSignature", 400, presigned(expires=604801))


# --- SigV2 --------------------------------------------------------------------------------------

class SigV2SHA1(SigV2Auth):
    """botocore's SigV2 signer, with HmacSHA1 (botocore only sends HmacSHA256; older EC2 tools,
    euca2ools among them, sent HmacSHA1). Run with botocore.auth.sha256 patched to sha1."""

    def calc_signature(self, request, params):
        params["SignatureMethod"] = "HmacSHA1"
        return super().calc_signature(request, params)


def v2(secret=SECRET, key=KEY):
    return SigV2Auth(Credentials(key, secret))


def test_sigv2_hmac_sha256_post_and_get():
    assert verify(signed(v2(), data=FORM)) == KEY
    assert verify(signed(v2(), method="GET", url="http://clc:8773/services/Eucalyptus", params=FORM)) == KEY


def test_sigv2_hmac_sha1(monkeypatch):
    monkeypatch.setattr(botocore.auth, "sha256", hashlib.sha1)
    prepared = signed(SigV2SHA1(Credentials(KEY, SECRET)), data=FORM)
    assert b"SignatureMethod=HmacSHA1" in wire(prepared)
    assert verify(prepared) == KEY


def test_sigv2_refusals():
    refused("AuthFailure", 401, signed(v2(secret="z" * 40), data=FORM))
    refused("AuthFailure", 401, signed(v2(key="AKIAAAAAAAAAAAAAAAAA"), data=FORM))
    prepared = signed(v2(), data=FORM)
    refused("AuthFailure", 401, prepared, body=wire(prepared).replace(b"RegionName.1=euca", b"RegionName.1=evil"))
    refused("RequestExpired", 400, signed(v2(), data=FORM), now=time.time() + 1200)


def test_sigv2_expires_and_unsupported_versions():
    body = dict(FORM, AWSAccessKeyId=KEY, SignatureVersion="2", SignatureMethod="HmacSHA256", Signature="AAAA")
    with pytest.raises(ApiError, match="RequestExpired"):
        auth.verify("POST", "/", "", {"host": "h"}, b"", dict(body, Expires="2020-01-01T00:00:00Z"), lookup)
    with pytest.raises(ApiError, match="IncompleteSignature"):
        auth.verify("POST", "/", "", {"host": "h"}, b"", dict(body, SignatureVersion="1", Expires="2099-01-01"),
                    lookup)
    with pytest.raises(ApiError, match="IncompleteSignature"):
        auth.verify("POST", "/", "", {"host": "h"}, b"", dict(body, SignatureMethod="HmacMD5", Expires="2099-01-01"),
                    lookup)
    with pytest.raises(ApiError, match="IncompleteSignature"):
        auth.verify("POST", "/", "", {"host": "h"}, b"", body, lookup)  # neither Timestamp nor Expires


# --- a real boto3 client ------------------------------------------------------------------------

def application(environ, start_response):
    """The smallest EC2 endpoint: parse, authenticate, answer DescribeRegions."""
    request_id = query.new_request_id()
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    headers = {name[5:].replace("_", "-").lower(): value for name, value in environ.items()
               if name.startswith("HTTP_")}
    for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(name):
            headers[name.replace("_", "-").lower()] = environ[name]
    try:
        params = query.parse_request(environ["REQUEST_METHOD"], environ.get("QUERY_STRING", ""), body,
                                     environ.get("CONTENT_TYPE"))
        auth.verify(environ["REQUEST_METHOD"], environ.get("PATH_INFO") or "/", environ.get("QUERY_STRING", ""),
                    headers, body, params, lookup)
        if params.get("Action") != "DescribeRegions":
            raise ApiError("InvalidAction", "The action %s is not valid for this web service." % params.get("Action"))
        answer = query.render_response("DescribeRegions", request_id, {"regionInfo": [
            {"regionName": "euca", "regionEndpoint": "127.0.0.1", "optInStatus": "opt-in-not-required"}]})
        status = "200 OK"
    except ApiError as error:
        answer = query.render_error(error.code, error.message, request_id)
        status = "%d Error" % error.status
    start_response(status, [("Content-Type", "text/xml;charset=UTF-8"), ("Content-Length", str(len(answer)))])
    return [answer]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def endpoint():
    server = None
    for port in range(18840, 18860):
        try:
            server = make_server("127.0.0.1", port, application, server_class=WSGIServer, handler_class=QuietHandler)
            break
        except OSError:
            continue
    assert server is not None, "no free port in 18840-18859"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def client(endpoint, secret=SECRET, **config):
    return boto3.client("ec2", endpoint_url=endpoint, region_name="euca", aws_access_key_id=KEY,
                        aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}, **config))


def test_boto3_describe_regions(endpoint):
    answer = client(endpoint).describe_regions()
    assert answer["Regions"] == [{"RegionName": "euca", "Endpoint": "127.0.0.1", "OptInStatus": "opt-in-not-required"}]
    assert re.match(r"[0-9a-f-]{36}\Z", answer["ResponseMetadata"]["RequestId"])


def test_boto3_sigv2(endpoint):
    assert client(endpoint, signature_version="v2").describe_regions()["Regions"][0]["RegionName"] == "euca"


def test_boto3_wrong_secret_is_client_error(endpoint):
    with pytest.raises(ClientError) as caught:
        client(endpoint, secret="w" * 40).describe_regions()
    error = caught.value.response
    assert error["Error"]["Code"] == "AuthFailure"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 401
    assert re.match(r"[0-9a-f-]{36}\Z", error["ResponseMetadata"]["RequestId"])


@pytest.mark.slow
def test_awscli_describe_regions(endpoint, tmp_path):
    """The AWS CLI (its own argument handling and signing path on top of botocore)."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "AWS_ACCESS_KEY_ID": KEY,
           "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "euca", "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    aws = [sys.executable, "-m", "awscli", "ec2", "describe-regions", "--endpoint-url", endpoint, "--output", "json"]
    done = subprocess.run(aws, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["Regions"][0]["RegionName"] == "euca"
    env["AWS_SECRET_ACCESS_KEY"] = "v" * 40
    done = subprocess.run(aws, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "AuthFailure" in done.stderr
