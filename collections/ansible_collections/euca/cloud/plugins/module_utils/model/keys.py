# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Key pairs as EC2 has them: names, public key material, fingerprints, generation.

Pure functions over the standard library; only :func:`generate` runs a program (ssh-keygen,
from openssh-client), in a private temporary directory that is removed even on error.

Rules (EC2 User Guide, "Create a key pair" and "Verify the fingerprint of your key pair";
API reference ImportKeyPair/KeyPairInfo):

* A key pair's name is 1-255 ASCII characters without leading or trailing spaces. EC2 allows
  any ASCII; this module also refuses control characters (0x00-0x1f, 0x7f), which no console
  shows and a log line would break on. A name may contain '/' or spaces: never use it as a
  file name or a shell word as is (use the key's id, ``key-`` and hex digits, instead).
* ImportKeyPair takes an OpenSSH public key line (as in ``authorized_keys``), an RFC 4716
  ``---- BEGIN SSH2 PUBLIC KEY ----`` block, or a DER SubjectPublicKeyInfo (base64 or PEM
  ``BEGIN PUBLIC KEY``; also PKCS#1 ``BEGIN RSA PUBLIC KEY``). EC2 accepts RSA and ED25519
  keys and lists the RSA lengths 1024, 2048 and 4096. This cloud accepts RSA moduli of
  2048 through 4096 bits (1024-bit RSA is refused as too weak; 3072, ssh-keygen's default, is
  accepted), ``ssh-ed25519``, and - beyond EC2, which refuses them - ``ecdsa-sha2-nistp256``,
  ``-nistp384`` and ``-nistp521``. DSA keys, certificates, authorized_keys options and
  private keys are refused with a message saying which.
* Fingerprints: for a key pair the cloud created, RSA is the SHA-1 digest of the DER PKCS#8
  private key (``openssl pkcs8 -topk8 -nocrypt -outform DER | openssl sha1 -c``); for an
  imported RSA key, the MD5 digest of the DER SubjectPublicKeyInfo (``openssl pkey -pubout
  -outform DER | openssl md5 -c``; RFC 4716 section 4 style colon hex). ED25519 (and ECDSA)
  keys, created or imported, have the base64 SHA-256 digest of the OpenSSH public key blob,
  with EC2's '=' padding and without ssh-keygen's ``SHA256:`` prefix (``ssh-keygen -l`` shows
  the same digest unpadded).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import hashlib
import os
import re
import shutil
import struct
import tempfile

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput


class InvalidKey(InvalidInput, ValueError):
    """Key material or a key pair name that is not acceptable; ``msg`` says why."""


# ------------------------------------------------------------------ names
KEY_NAME_MAX = 255
_KEY_NAME_RE = re.compile(r"^[\x20-\x7e]{1,%d}\Z" % KEY_NAME_MAX)
KEY_NAME_RULE = "1-%d printable ASCII characters, without leading or trailing spaces" % KEY_NAME_MAX


def is_key_name(name):
    """True when ``name`` is a valid key pair name."""
    return isinstance(name, str) and bool(_KEY_NAME_RE.match(name)) and name == name.strip(" ")


def check_key_name(name):
    """``name`` when it is a valid key pair name (EC2's rule), else InvalidKey saying why."""
    if not isinstance(name, str) or not name:
        raise InvalidKey("key pair name %r is not valid: use %s" % (name, KEY_NAME_RULE))
    if len(name) > KEY_NAME_MAX:
        raise InvalidKey("key pair name is %d characters long; use at most %d" % (len(name), KEY_NAME_MAX))
    if name != name.strip(" "):
        raise InvalidKey("key pair name %r has leading or trailing spaces; use %s" % (name, KEY_NAME_RULE))
    if not _KEY_NAME_RE.match(name):
        raise InvalidKey("key pair name %r has a character that is not printable ASCII; use %s" % (name, KEY_NAME_RULE))
    return name


# ------------------------------------------------------------------ key types
RSA, ED25519 = "ssh-rsa", "ssh-ed25519"
#: ECDSA key types -> (curve name in the blob, coordinate length in bytes, curve OID)
ECDSA_CURVES = {
    "ecdsa-sha2-nistp256": ("nistp256", 32, "1.2.840.10045.3.1.7"),
    "ecdsa-sha2-nistp384": ("nistp384", 48, "1.3.132.0.34"),
    "ecdsa-sha2-nistp521": ("nistp521", 66, "1.3.132.0.35"),
}
KEY_TYPES = (RSA, ED25519) + tuple(sorted(ECDSA_CURVES))
RSA_MIN_BITS, RSA_MAX_BITS = 2048, 4096
#: EC2's keyType for the OpenSSH type
EC2_KEY_TYPE = dict([(RSA, "rsa"), (ED25519, "ed25519")] + [(t, "ecdsa") for t in ECDSA_CURVES])

_OID_RSA = "1.2.840.113549.1.1.1"
_OID_ED25519 = "1.3.101.112"
_OID_EC = "1.2.840.10045.2.1"
_TYPES_TEXT = ", ".join(KEY_TYPES)


# ------------------------------------------------------------------ SSH wire format
def _ssh_string(data):
    return struct.pack(">I", len(data)) + data


def _ssh_mpint(value):
    if value == 0:
        return _ssh_string(b"")
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big")  # one spare bit: a leading 0 when the top bit is set
    return _ssh_string(raw)


class _Reader:
    def __init__(self, blob):
        self.blob, self.pos = blob, 0

    def string(self, what):
        if self.pos + 4 > len(self.blob):
            raise InvalidKey("the key data ends before its %s: it is truncated" % what)
        (length,) = struct.unpack(">I", self.blob[self.pos:self.pos + 4])
        start = self.pos + 4
        if start + length > len(self.blob):
            raise InvalidKey("the key data ends inside its %s: it is truncated" % what)
        self.pos = start + length
        return self.blob[start:self.pos]

    def mpint(self, what):
        raw = self.string(what)
        if raw and raw[0] & 0x80:
            raise InvalidKey("the key's %s is negative: this is not a valid RSA key" % what)
        if len(raw) > 1 and raw[0] == 0 and not raw[1] & 0x80:
            raise InvalidKey("the key's %s has a superfluous leading zero byte: the key data is malformed" % what)
        return int.from_bytes(raw, "big")

    def end(self):
        if self.pos != len(self.blob):
            raise InvalidKey("the key data has %d unexpected bytes after the key" % (len(self.blob) - self.pos))


def _check_blob(key_type, blob):
    """Validate ``blob`` as a public key of ``key_type``; returns the RSA ``(e, n)`` or None."""
    reader = _Reader(blob)
    try:
        inner = reader.string("key type").decode("ascii")
    except UnicodeDecodeError:
        raise InvalidKey("the key data does not start with a key type name: it is not an SSH public key")
    if inner != key_type:
        raise InvalidKey("the key says it is %s but its data is a %s key" % (key_type, inner or "nameless"))
    if key_type == RSA:
        e = reader.mpint("public exponent")
        n = reader.mpint("modulus")
        reader.end()
        bits = n.bit_length()
        if bits < RSA_MIN_BITS or bits > RSA_MAX_BITS:
            raise InvalidKey("the RSA key has %d bits; use a key of %d to %d bits (ssh-keygen -t rsa -b 4096)"
                             % (bits, RSA_MIN_BITS, RSA_MAX_BITS))
        if e < 3 or not e & 1 or not n & 1:
            raise InvalidKey("the RSA key's exponent or modulus is even or too small: it is not a valid RSA key")
        return e, n
    if key_type == ED25519:
        point = reader.string("public key")
        reader.end()
        if len(point) != 32:
            raise InvalidKey("the ED25519 public key is %d bytes long, not 32" % len(point))
        return None
    curve, size, _oid = ECDSA_CURVES[key_type]
    name = reader.string("curve name")
    point = reader.string("public point")
    reader.end()
    if name != curve.encode():
        raise InvalidKey("the %s key names the curve %r" % (key_type, name.decode("ascii", "replace")))
    if len(point) != 1 + 2 * size or point[0] != 4:
        raise InvalidKey("the %s key's point is not an uncompressed %s point" % (key_type, curve))
    return None


def rsa_blob(e, n):
    """The OpenSSH ``ssh-rsa`` blob of the public key ``(e, n)``."""
    return _ssh_string(RSA.encode()) + _ssh_mpint(e) + _ssh_mpint(n)


# ------------------------------------------------------------------ minimal DER
def _der(tag, content):
    length = len(content)
    if length < 0x80:
        head = bytes([length])
    else:
        raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
        head = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + head + content


def der_integer(value):
    """DER INTEGER of a non-negative ``value``."""
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def der_sequence(*items):
    return _der(0x30, b"".join(items))


def der_oid(dotted):
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        out.extend(reversed(chunk))
    return _der(0x06, bytes(out))


DER_NULL = b"\x05\x00"


def der_bit_string(data):
    return _der(0x03, b"\x00" + data)


def der_octet_string(data):
    return _der(0x04, data)


def _der_read(data, pos, what="key"):
    """``(tag, content, next_pos)`` of the DER element at ``pos``; InvalidKey when malformed."""
    if pos + 2 > len(data):
        raise InvalidKey("the DER %s is truncated" % what)
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise InvalidKey("the DER %s has an invalid length" % what)
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise InvalidKey("the DER %s is truncated" % what)
    return tag, data[pos:pos + length], pos + length


def _der_children(content, what="key"):
    out, pos = [], 0
    while pos < len(content):
        tag, body, pos = _der_read(content, pos, what)
        out.append((tag, body))
    return out


def _oid_text(body):
    first = body[0] if body else 0
    parts, value = [first // 40, first % 40], 0
    for byte in body[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


def _unsigned(body):
    if body and body[0] & 0x80:
        raise InvalidKey("the DER key has a negative integer: it is not an RSA key")
    return int.from_bytes(body, "big")


def _from_pkcs1(der):
    """The ``ssh-rsa`` blob of a DER RSAPublicKey (PKCS#1)."""
    tag, content, end = _der_read(der, 0)
    items = _der_children(content) if tag == 0x30 else []
    if end != len(der) or len(items) != 2 or any(t != 0x02 for t, _b in items):
        raise InvalidKey("the RSA PUBLIC KEY is not a PKCS#1 RSAPublicKey (a modulus and an exponent)")
    return rsa_blob(_unsigned(items[1][1]), _unsigned(items[0][1]))


def _from_spki(der):
    """``(type, blob)`` of a DER SubjectPublicKeyInfo."""
    tag, content, end = _der_read(der, 0)
    items = _der_children(content) if tag == 0x30 else []
    if end != len(der) or len(items) != 2 or items[0][0] != 0x30 or items[1][0] != 0x03:
        raise InvalidKey("the DER public key is not a SubjectPublicKeyInfo")
    algorithm = _der_children(items[0][1])
    if not algorithm or algorithm[0][0] != 0x06:
        raise InvalidKey("the DER public key has no algorithm")
    oid = _oid_text(algorithm[0][1])
    bits = items[1][1]
    if not bits or bits[0] != 0:
        raise InvalidKey("the DER public key's bit string is malformed")
    key = bits[1:]
    if oid == _OID_RSA:
        return RSA, _from_pkcs1(key)
    if oid == _OID_ED25519:
        return ED25519, _ssh_string(ED25519.encode()) + _ssh_string(key)
    if oid == _OID_EC and len(algorithm) == 2 and algorithm[1][0] == 0x06:
        curve_oid = _oid_text(algorithm[1][1])
        for key_type, (curve, _size, want) in ECDSA_CURVES.items():
            if curve_oid == want:
                return key_type, _ssh_string(key_type.encode()) + _ssh_string(curve.encode()) + _ssh_string(key)
        raise InvalidKey("the EC public key is on curve %s; use nistp256, nistp384 or nistp521" % curve_oid)
    if oid == "1.2.840.10040.4.1":
        raise InvalidKey("DSA keys are not accepted; use an RSA or ED25519 key")
    raise InvalidKey("the DER public key's algorithm %s is not RSA, ED25519 or ECDSA" % oid)


def spki_der(key_type, blob):
    """The DER SubjectPublicKeyInfo of an OpenSSH public key (what ``openssl pkey -pubout -outform DER`` writes)."""
    rsa = _check_blob(key_type, blob)
    if key_type == RSA:
        e, n = rsa
        return der_sequence(der_sequence(der_oid(_OID_RSA), DER_NULL),
                            der_bit_string(der_sequence(der_integer(n), der_integer(e))))
    reader = _Reader(blob)
    reader.string("key type")
    if key_type == ED25519:
        return der_sequence(der_sequence(der_oid(_OID_ED25519)), der_bit_string(reader.string("key")))
    reader.string("curve")
    return der_sequence(der_sequence(der_oid(_OID_EC), der_oid(ECDSA_CURVES[key_type][2])),
                        der_bit_string(reader.string("point")))


# ------------------------------------------------------------------ parsing
_PRIVATE_RE = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----|PuTTY-User-Key-File-|---- BEGIN SSH2 ENCRYPTED PRIVATE KEY")
_PEM_RE = re.compile(r"\A-----BEGIN (PUBLIC KEY|RSA PUBLIC KEY)-----\n([A-Za-z0-9+/=\n]+)\n-----END \1-----\Z")
_RFC4716_BEGIN, _RFC4716_END = "---- BEGIN SSH2 PUBLIC KEY ----", "---- END SSH2 PUBLIC KEY ----"
_B64_RE = re.compile(r"^[A-Za-z0-9+/]+={0,2}\Z")


def _b64(text, what):
    if not _B64_RE.match(text) or len(text) % 4:
        raise InvalidKey("the %s is not valid base64" % what)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidKey("the %s is not valid base64" % what)


def _check_comment(comment):
    if comment is None or comment == "":
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in comment):
        raise InvalidKey("the key's comment has a control character (a line break or tab?); a public key is one line")
    return comment


def _parse_rfc4716(lines):
    if lines[-1].strip() != _RFC4716_END:
        raise InvalidKey("the SSH2 PUBLIC KEY block does not end with '%s'" % _RFC4716_END)
    body, comment, index = [], None, 1
    inner = [line.rstrip() for line in lines[1:-1]]
    while index - 1 < len(inner):
        line = inner[index - 1]
        if ":" in line and not body:  # headers come first, a trailing backslash continues them
            header = line
            while header.endswith("\\"):
                index += 1
                if index - 1 >= len(inner):
                    raise InvalidKey("the SSH2 PUBLIC KEY block ends inside a header")
                header = header[:-1] + inner[index - 1]
            tag, value = header.split(":", 1)
            if tag.strip().lower() == "comment":
                value = value.strip()
                comment = value[1:-1] if len(value) > 1 and value[0] == value[-1] == '"' else value
        elif line:
            body.append(line)
        index += 1
    if not body:
        raise InvalidKey("the SSH2 PUBLIC KEY block holds no key")
    blob = _b64("".join(body), "SSH2 PUBLIC KEY block")
    key_type = _Reader(blob).string("key type").decode("ascii", "replace")
    return key_type, blob, _check_comment(comment)


def parse_public_key(text):
    """``(type, blob, comment)`` of a public key as ImportKeyPair takes it, else InvalidKey (a ValueError).

    ``text`` is an OpenSSH line ``<type> <base64> [comment]``, an RFC 4716 block, a PEM
    ``PUBLIC KEY``/``RSA PUBLIC KEY`` or a base64 DER SubjectPublicKeyInfo (see the module's rules).
    ``blob`` is the OpenSSH wire-format key; ``comment`` is None when there is none. Leading and
    trailing white space is ignored; a line break inside an OpenSSH line is refused.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidKey("the public key is not ASCII text")
    if not isinstance(text, str) or not text.strip():
        raise InvalidKey("no public key given (expected e.g. 'ssh-ed25519 AAAAC3Nza... user@host')")
    if _PRIVATE_RE.search(text):
        raise InvalidKey("this is a private key; give the public key (the .pub file, or ssh-keygen -y -f KEYFILE) "
                         "and keep the private key to yourself")
    text = text.replace("\r\n", "\n").strip()
    lines = text.split("\n")
    if lines[0].strip() == _RFC4716_BEGIN:
        key_type, blob, comment = _parse_rfc4716(lines)
        if key_type not in KEY_TYPES:
            raise InvalidKey("key type %s is not accepted; use one of %s" % (key_type, _TYPES_TEXT))
        _check_blob(key_type, blob)
        return key_type, blob, comment
    pem = _PEM_RE.match(text)
    if pem:
        der = _b64(pem.group(2).replace("\n", ""), "PEM public key")
        key_type, blob = (RSA, _from_pkcs1(der)) if pem.group(1) == "RSA PUBLIC KEY" else _from_spki(der)
        _check_blob(key_type, blob)
        return key_type, blob, None
    if text.startswith("-----BEGIN"):
        raise InvalidKey("a PEM block must be a PUBLIC KEY or RSA PUBLIC KEY, complete with its END line")
    if len(lines) > 1:
        raise InvalidKey("the public key has %d lines; an OpenSSH public key is a single line "
                         "'<type> <base64> [comment]' (was it wrapped or pasted twice?)" % len(lines))
    fields = text.split(None, 2)
    if len(fields) == 1:
        if _B64_RE.match(fields[0]) and fields[0].startswith("M"):  # base64 DER (a SEQUENCE, 0x30)
            key_type, blob = _from_spki(_b64(fields[0], "base64 DER public key"))
            _check_blob(key_type, blob)
            return key_type, blob, None
        raise InvalidKey("the public key %r is not '<type> <base64> [comment]'" % _clip(text))
    key_type = fields[0]
    if key_type not in KEY_TYPES:
        if key_type == "ssh-dss":
            raise InvalidKey("DSA keys are not accepted; use an RSA or ED25519 key")
        if "-cert-v01@openssh.com" in key_type:
            raise InvalidKey("%s is an OpenSSH certificate; give the plain public key" % key_type)
        if any(t in text for t in KEY_TYPES + ("ssh-dss",)):
            raise InvalidKey("the public key starts with %r: give only '<type> <base64> [comment]', without "
                             "authorized_keys options" % _clip(key_type))
        raise InvalidKey("key type %r is not accepted; use one of %s" % (_clip(key_type), _TYPES_TEXT))
    blob = _b64(fields[1], "public key's base64 data")
    _check_blob(key_type, blob)
    comment = fields[2].strip() if len(fields) > 2 else None
    return key_type, blob, _check_comment(comment)


def _clip(text, limit=40):
    return text if len(text) <= limit else text[:limit] + "..."


def openssh_line(key_type, blob, comment=None):
    """The normalised one-line OpenSSH form ``<type> <base64>[ <comment>]`` of a checked key."""
    if key_type not in KEY_TYPES:
        raise InvalidKey("key type %r is not accepted; use one of %s" % (key_type, _TYPES_TEXT))
    _check_blob(key_type, blob)
    line = "%s %s" % (key_type, base64.b64encode(blob).decode("ascii"))
    comment = _check_comment(comment.strip() if comment else None)
    return line + (" " + comment if comment else "")


def key_bits(key_type, blob):
    """The key's size in bits as ssh-keygen -l shows it."""
    rsa = _check_blob(key_type, blob)
    if rsa:
        return rsa[1].bit_length()
    if key_type == ED25519:
        return 256
    return {"nistp256": 256, "nistp384": 384, "nistp521": 521}[ECDSA_CURVES[key_type][0]]


# ------------------------------------------------------------------ fingerprints
def _colon_hex(digest):
    return ":".join("%02x" % b for b in digest)


def sha256_fingerprint(blob):
    """The base64 SHA-256 digest of an OpenSSH blob, padded as EC2 shows it (no ``SHA256:`` prefix)."""
    return base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii")


def imported_fingerprint(key_type, blob):
    """The fingerprint EC2 shows for an imported key: RSA, MD5 of the DER SubjectPublicKeyInfo in colon hex;
    others, :func:`sha256_fingerprint`."""
    if key_type == RSA:
        return _colon_hex(hashlib.md5(spki_der(key_type, blob)).digest())
    _check_blob(key_type, blob)
    return sha256_fingerprint(blob)


def pkcs8_der(rsa_private_pem):
    """The DER PKCS#8 PrivateKeyInfo of a traditional ``BEGIN RSA PRIVATE KEY`` PEM (unencrypted)."""
    match = re.search(r"-----BEGIN RSA PRIVATE KEY-----\n(.*?)\n-----END RSA PRIVATE KEY-----", rsa_private_pem, re.S)
    if not match or "ENCRYPTED" in match.group(1) or ":" in match.group(1):
        raise InvalidKey("not an unencrypted BEGIN RSA PRIVATE KEY block")
    pkcs1 = _b64("".join(match.group(1).split()), "RSA private key")
    return der_sequence(der_integer(0), der_sequence(der_oid(_OID_RSA), DER_NULL), der_octet_string(pkcs1))


def created_fingerprint(key_type, blob, private_text):
    """The fingerprint EC2 shows for a key pair it created: RSA, SHA-1 of the DER PKCS#8 private key in colon
    hex; ED25519, :func:`sha256_fingerprint` of the public key."""
    if key_type == RSA:
        return _colon_hex(hashlib.sha1(pkcs8_der(private_text)).digest())
    _check_blob(key_type, blob)
    return sha256_fingerprint(blob)


# ------------------------------------------------------------------ generation
GENERATE_TYPES = {"rsa": ("rsa", ["-b", "2048", "-m", "PEM"]), "ed25519": ("ed25519", [])}


def generate(key_type="rsa", key_format="pem", comment=None, timeout=60):
    """A new key pair as CreateKeyPair returns it: ``(private_key_text, public_line, fingerprint)``.

    RSA is 2048 bits, its private key a traditional PEM ``BEGIN RSA PRIVATE KEY``; ED25519's is in
    OpenSSH's format (``BEGIN OPENSSH PRIVATE KEY``), as EC2 returns them. ``fingerprint`` is the one
    EC2 shows for a created key. Only ``key_format='pem'`` is offered (no PuTTY .ppk). ssh-keygen
    writes into a private directory (mode 0700) that is removed afterwards, even on error.
    """
    from ansible_collections.euca.cloud.plugins.module_utils.process import run  # only generation runs a program

    if key_type not in GENERATE_TYPES:
        raise InvalidKey("key_type %r is not offered; use rsa or ed25519" % (key_type,))
    if key_format != "pem":
        raise InvalidKey("key_format %r is not offered; only pem" % (key_format,))
    if comment is not None:
        _check_comment(comment)
    work = tempfile.mkdtemp(prefix="euca-key-")
    try:
        os.chmod(work, 0o700)
        path = os.path.join(work, "key")
        kind, extra = GENERATE_TYPES[key_type]
        run(["ssh-keygen", "-q", "-t", kind] + extra + ["-N", "", "-C", comment or "", "-f", path], timeout=timeout)
        with open(path) as handle:
            private = handle.read()
        with open(path + ".pub") as handle:
            public = handle.read()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ssh_type, blob, found = parse_public_key(public)
    return private, openssh_line(ssh_type, blob, found), created_fingerprint(ssh_type, blob, private)
