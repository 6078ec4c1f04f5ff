# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Request authentication for the EC2 API: AWS Signature Version 4 (Authorization header or
presigned query) and Signature Version 2, checked the way botocore signs (botocore/auth.py
SigV4Auth, SigV4QueryAuth, SigV2Auth), against the per-account access keys in the ledger.

``verify`` answers the access key id a request was signed with, or raises ``ApiError`` with the
code and status real EC2 answers (so a client's retry and error handling behave as with AWS).
Standard library only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import datetime
import hashlib
import hmac
import re
import secrets
import time
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl, quote, unquote_plus

from ansible_collections.euca.cloud.plugins.module_utils.api.errors import ApiError

SIGV4 = "AWS4-HMAC-SHA256"
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
# The longest validity a SigV4 presigned URL may ask for (AWS: seven days).
MAX_PRESIGN_EXPIRES = 604800

# Parameters that authenticate a request rather than ask anything of the action: the server
# leaves them out of an action's "unknown parameter" checks.
AUTH_PARAMS = frozenset((
    "AWSAccessKeyId", "SignatureVersion", "SignatureMethod", "Signature", "Timestamp", "Expires", "SecurityToken",
    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
    "X-Amz-Signature", "X-Amz-Security-Token",
))

_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_SECRET_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def new_access_key():
    """A fresh ``(access_key_id, secret_access_key)`` shaped like AWS's: ``AKIA`` and 16 base32
    characters, and 40 characters of base64's alphabet, all from ``secrets``."""
    key_id = "AKIA" + "".join(secrets.choice(_KEY_ALPHABET) for _i in range(16))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _i in range(40))
    return key_id, secret


# --- EC2's refusals -----------------------------------------------------------------------------
# EC2 (unlike S3, IAM or STS) does not answer SignatureDoesNotMatch to a wrong secret: botocore
# clients see "AuthFailure: AWS was not able to validate the provided access credentials" with
# HTTP 401 for an unknown key and for a bad signature alike, so that is what we answer; it also
# tells a prober nothing about which access key ids exist.

def _missing_token():
    return ApiError("MissingAuthenticationToken",
                    "The request must contain either a valid (registered) AWS access key ID or X.509 certificate.",
                    status=401)


def _incomplete(detail):
    return ApiError("IncompleteSignature", "The request signature does not conform to AWS standards: %s" % detail,
                    status=400)


def _auth_failure():
    return ApiError("AuthFailure", "AWS was not able to validate the provided access credentials", status=401)


def _expired(detail):
    return ApiError("RequestExpired", "Request has expired: %s" % detail, status=400)


# --- time ---------------------------------------------------------------------------------------

def _epoch(now):
    if now is None:
        return time.time()
    if isinstance(now, datetime.datetime):
        if now.tzinfo is None:
            now = now.replace(tzinfo=datetime.timezone.utc)
        return now.timestamp()
    return float(now)


def _sigv4_time(text, what):
    try:
        return datetime.datetime.strptime(text, SIGV4_TIMESTAMP).replace(tzinfo=datetime.timezone.utc).timestamp()
    except (TypeError, ValueError):
        raise _incomplete("%s %r is not a date of the form YYYYMMDDTHHMMSSZ" % (what, text))


def _iso_time(text, what):
    """``Timestamp``/``Expires`` of SigV2: ISO 8601, UTC when no offset is given."""
    value = text.strip()
    if value.endswith("Z") or value.endswith("z"):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise _incomplete("%s %r is not an ISO 8601 date" % (what, text))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


def _stamp(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(SIGV4_TIMESTAMP)


def _check_skew(signed_at, now, max_skew, what):
    if abs(now - signed_at) > max_skew:
        raise _expired("the %s %s is more than %d seconds away from the server's time %s"
                       % (what, _stamp(signed_at), max_skew, _stamp(now)))


# --- Signature Version 4 ------------------------------------------------------------------------

def _canonical_query(query_string, drop=None):
    """The canonical query string: every ``key=value`` pair decoded and re-encoded the RFC 3986
    way (botocore: ``quote(safe='-_.~')``), sorted by key then value.

    Decoding takes ``+`` as a space, as parse_request does: botocore signs a GET's parameters
    before it form-encodes them into the URL (``urlencode``: space -> ``+``, ``~`` -> ``%7E``),
    and a literal plus always arrives as ``%2B``. Presigned URLs come already in canonical form.
    """
    pairs = []
    for pair in (query_string or "").split("&"):
        if not pair:
            continue
        key, _sep, value = pair.partition("=")
        key = quote(unquote_plus(key), safe="-_.~")
        if key == drop:
            continue
        pairs.append((key, quote(unquote_plus(value), safe="-_.~")))
    return "&".join("%s=%s" % kv for kv in sorted(pairs))


def _remove_dot_segments(path):
    """botocore.utils.remove_dot_segments: RFC 3986 5.2.4 plus the collapse of repeated slashes."""
    output = []
    for segment in path.split("/"):
        if segment and segment != ".":
            if segment == "..":
                if output:
                    output.pop()
            else:
                output.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and output else ""
    return first + "/".join(output) + last


def _canonical_uri(path):
    """As botocore's SigV4Auth (not S3's): normalize the path as sent, then percent-encode it
    once more (``quote(safe='/~')``), so an encoded ``%2F`` is signed as ``%252F``."""
    return quote(_remove_dot_segments(path or "/") or "/", safe="/~")


def _header_value(value):
    """SigV4's Trimall: outer whitespace dropped, inner runs folded into one space."""
    return " ".join(value.split())


def _same(expected, given):
    """Constant-time comparison of a computed hex signature with the client's, which may hold any
    characters (compare_digest refuses non-ASCII str, so compare bytes)."""
    return hmac.compare_digest(expected.encode("ascii"), given.encode("utf-8", "surrogatepass"))


def _signing_key(secret, date, region, service):
    key = hmac.new(("AWS4" + secret).encode("utf-8"), date.encode("utf-8"), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def _sigv4_signature(secret, method, path, canonical_query, headers, signed_headers, payload_hash,
                     timestamp, scope):
    date, region, service = scope
    canonical_headers = "".join("%s:%s\n" % (name, _header_value(headers[name])) for name in signed_headers)
    canonical_request = "\n".join((method.upper(), _canonical_uri(path), canonical_query, canonical_headers,
                                   ";".join(signed_headers), payload_hash))
    string_to_sign = "\n".join((SIGV4, timestamp, "%s/%s/%s/aws4_request" % scope,
                                hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()))
    key = _signing_key(secret, date, region, service)
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _parse_credential(credential, service):
    """``AKID/yyyymmdd/region/service/aws4_request`` -> ``(akid, (date, region, service))``."""
    parts = credential.split("/")
    if len(parts) != 5 or not parts[0] or parts[4] != "aws4_request" or not re.match(r"\d{8}\Z", parts[1]) \
            or not parts[2]:
        raise _incomplete("Credential %r is not of the form ACCESSKEY/YYYYMMDD/REGION/SERVICE/aws4_request"
                          % credential)
    services = (service,) if isinstance(service, str) else tuple(service)
    if parts[3] not in services:
        raise _incomplete("the Credential is scoped to the service %r, not %s"
                          % (parts[3], " or ".join(repr(s) for s in services)))
    return parts[0], (parts[1], parts[2], parts[3])


def _parse_signed_headers(text, headers):
    names = text.split(";") if text else []
    if not names or any(not n or n != n.strip().lower() for n in names) or names != sorted(set(names)):
        raise _incomplete("SignedHeaders %r is not a sorted, lower-case, ';'-separated list" % text)
    if "host" not in names:
        raise _incomplete("SignedHeaders must include host")
    absent = [n for n in names if n not in headers]
    if absent:
        raise _incomplete("the signed header(s) %s are not in the request" % ", ".join(absent))
    return names


def _parse_authorization(value):
    """``AWS4-HMAC-SHA256 Credential=.., SignedHeaders=.., Signature=..`` -> dict of the three."""
    algorithm, _sep, rest = value.strip().partition(" ")
    if algorithm != SIGV4:
        raise _incomplete("the Authorization header's algorithm %r is not %s" % (algorithm, SIGV4))
    fields = {}
    for part in rest.split(","):
        name, sep, val = part.strip().partition("=")
        if sep:
            fields[name] = val.strip()
    absent = [n for n in ("Credential", "SignedHeaders", "Signature") if not fields.get(n)]
    if absent:
        raise _incomplete("the Authorization header lacks %s" % ", ".join(absent))
    return fields


def _payload_hash(headers, body):
    """The body's SHA-256, computed here: the Action's parameters travel in the body, so a
    request that declares its payload unsigned (or hashed to something else) is refused."""
    computed = hashlib.sha256(body or b"").hexdigest()
    declared = headers.get("x-amz-content-sha256")
    if declared is not None and declared != computed:
        raise _incomplete("x-amz-content-sha256 does not match the request body (unsigned payloads are not accepted)")
    return computed


def _verify_sigv4_header(method, path, query_string, headers, body, lookup, now, max_skew, service):
    fields = _parse_authorization(headers["authorization"])
    key_id, scope = _parse_credential(fields["Credential"], service)
    signed = _parse_signed_headers(fields["SignedHeaders"], headers)
    if "x-amz-date" in headers:
        timestamp = headers["x-amz-date"]
        signed_at = _sigv4_time(timestamp, "X-Amz-Date")
    elif "date" in headers:
        # botocore signs with a Date header instead when the request already had one.
        try:
            parsed = parsedate_to_datetime(headers["date"])
        except (TypeError, ValueError, IndexError):
            parsed = None  # Python 3.9 answers None where 3.10+ raises
        if parsed is None:
            raise _incomplete("the Date header %r is not an HTTP date" % headers["date"])
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.timezone.utc)
        signed_at = parsed.timestamp()
        timestamp = _stamp(signed_at)
    else:
        raise _incomplete("the request has neither an X-Amz-Date nor a Date header")
    if timestamp[:8] != scope[0]:
        raise _incomplete("the Credential's date %s is not the request's date %s" % (scope[0], timestamp[:8]))
    _check_skew(signed_at, now, max_skew, "request date")
    payload = _payload_hash(headers, body)
    secret = lookup(key_id)
    if secret is None:
        raise _auth_failure()
    expected = _sigv4_signature(secret, method, path, _canonical_query(query_string), headers, signed, payload,
                                timestamp, scope)
    if not _same(expected, fields["Signature"]):
        raise _auth_failure()
    return key_id


def _verify_sigv4_query(method, path, query_string, headers, body, lookup, now, max_skew, service):
    # The authentication parameters are the query string's own (a form body's would win in
    # parse_request's merge).
    params = dict(parse_qsl(query_string, keep_blank_values=True))
    absent = [n for n in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                          "X-Amz-SignedHeaders", "X-Amz-Signature") if not params.get(n)]
    if absent:
        raise _incomplete("the presigned request lacks %s" % ", ".join(absent))
    if params["X-Amz-Algorithm"] != SIGV4:
        raise _incomplete("X-Amz-Algorithm %r is not %s" % (params["X-Amz-Algorithm"], SIGV4))
    key_id, scope = _parse_credential(params["X-Amz-Credential"], service)
    signed = _parse_signed_headers(params["X-Amz-SignedHeaders"], headers)
    timestamp = params["X-Amz-Date"]
    signed_at = _sigv4_time(timestamp, "X-Amz-Date")
    if timestamp[:8] != scope[0]:
        raise _incomplete("the Credential's date %s is not the request's date %s" % (scope[0], timestamp[:8]))
    expires = params["X-Amz-Expires"]
    if not re.match(r"\d+\Z", expires) or int(expires) > MAX_PRESIGN_EXPIRES:
        raise _incomplete("X-Amz-Expires %r is not a number of seconds up to %d" % (expires, MAX_PRESIGN_EXPIRES))
    if signed_at - now > max_skew:
        raise _expired("the request date %s is more than %d seconds ahead of the server's time %s"
                       % (timestamp, max_skew, _stamp(now)))
    if now > signed_at + int(expires):
        raise _expired("the presigned request expired at %s (server time %s)"
                       % (_stamp(signed_at + int(expires)), _stamp(now)))
    # The parameters travel in the (signed) query string; a body would be unsigned input.
    payload = _payload_hash(headers, body)
    secret = lookup(key_id)
    if secret is None:
        raise _auth_failure()
    expected = _sigv4_signature(secret, method, path, _canonical_query(query_string, drop="X-Amz-Signature"),
                                headers, signed, payload, timestamp, scope)
    if not _same(expected, params["X-Amz-Signature"]):
        raise _auth_failure()
    return key_id


# --- Signature Version 2 ------------------------------------------------------------------------

_SIGV2_METHODS = {"HmacSHA256": hashlib.sha256, "HmacSHA1": hashlib.sha1}


def _verify_sigv2(method, path, headers, params, lookup, now, max_skew):
    version = params.get("SignatureVersion")
    if version != "2":
        raise _incomplete("SignatureVersion %r is not supported (only 2 and SigV4)" % version)
    digest = _SIGV2_METHODS.get(params.get("SignatureMethod"))
    if digest is None:
        raise _incomplete("SignatureMethod %r is not HmacSHA256 or HmacSHA1" % params.get("SignatureMethod"))
    absent = [n for n in ("AWSAccessKeyId", "Signature") if not params.get(n)]
    if absent:
        raise _incomplete("the request lacks %s" % ", ".join(absent))
    if ("Timestamp" in params) == ("Expires" in params):
        raise _incomplete("a SigV2 request carries exactly one of Timestamp and Expires")
    if "Timestamp" in params:
        _check_skew(_iso_time(params["Timestamp"], "Timestamp"), now, max_skew, "Timestamp")
    else:
        expires = _iso_time(params["Expires"], "Expires")
        if now > expires:
            raise _expired("the request expired at %s (server time %s)" % (_stamp(expires), _stamp(now)))
    host = headers.get("host")
    if not host:
        raise _incomplete("the request has no Host header")
    secret = lookup(params["AWSAccessKeyId"])
    if secret is None:
        raise _auth_failure()
    query = "&".join("%s=%s" % (quote(k, safe=""), quote(params[k], safe="-_~"))
                     for k in sorted(params) if k != "Signature")
    try:
        given = base64.b64decode(params["Signature"], validate=True)
    except ValueError:
        raise _auth_failure()
    # AWS signs the lower-case host; botocore signs the URL's netloc as written: try both.
    for candidate in dict.fromkeys((host.lower(), host)):
        string_to_sign = "%s\n%s\n%s\n%s" % (method.upper(), candidate, path or "/", query)
        expected = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), digest).digest()
        if hmac.compare_digest(expected, given):
            return params["AWSAccessKeyId"]
    raise _auth_failure()


# --- entry point --------------------------------------------------------------------------------

def verify(method, path, query_string, headers, body, params, lookup, now=None, max_skew=900, service="ec2"):
    """The access key id that signed this request, or ``ApiError``.

    ``path`` is the request path as sent (still percent-encoded; ``/`` for EC2), ``query_string``
    the raw query string, ``headers`` a dict with lower-case names, ``body`` the raw bytes,
    ``params`` what ``query.parse_request`` made of them, ``lookup(key_id)`` the key's secret or
    None (unknown or inactive). ``now`` (epoch seconds or datetime) is for tests; ``max_skew``
    is EC2's 15 minutes. ``service``: the service name (or a tuple of names) a SigV4 credential
    may be scoped to.

    Which scheme: an ``Authorization`` header is SigV4; ``X-Amz-Algorithm``/``X-Amz-Signature``
    in the query string is a SigV4 presigned URL; ``Signature``/``AWSAccessKeyId`` among the
    parameters is SigV2; none of these is an anonymous request, which EC2 refuses.
    """
    now = _epoch(now)
    headers = {name.lower(): value for name, value in headers.items()}
    if headers.get("authorization"):
        return _verify_sigv4_header(method, path, query_string, headers, body, lookup, now, max_skew, service)
    query_names = {unquote_plus(pair.partition("=")[0]) for pair in (query_string or "").split("&") if pair}
    if query_names & {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"}:
        return _verify_sigv4_query(method, path, query_string, headers, body, lookup, now, max_skew, service)
    if any(name in params for name in ("Signature", "AWSAccessKeyId", "SignatureVersion")):
        return _verify_sigv2(method, path, headers, params, lookup, now, max_skew)
    raise _missing_token()
