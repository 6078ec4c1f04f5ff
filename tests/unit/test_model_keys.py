"""Key pairs' vocabulary (module_utils/model/keys.py) against the real tools.

Keys come from ssh-keygen and openssl in each test run; the fingerprints are checked against the
commands the EC2 User Guide gives for verifying them ("Verify the fingerprint of your key pair"),
the DER encodings against openssl's, and the accepted formats against ssh-keygen's exports.
"""

from __future__ import annotations

import base64
import os
import stat
import struct
import subprocess
import tempfile

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.model import keys, names


def sh(*argv, data=None) -> bytes:
    return subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True,
                          timeout=60).stdout


def keygen(tmp, name, *args, comment="tester@example"):
    path = os.path.join(tmp, name)
    sh("ssh-keygen", "-q", "-N", "", "-C", comment, "-f", path, *args)
    return path, open(path + ".pub").read()


@pytest.fixture(scope="module")
def made():
    """Keys of every accepted type and size, and some refused ones, from ssh-keygen."""
    with tempfile.TemporaryDirectory(prefix="eut-keys-") as tmp:
        out = {}
        for name, args in [("rsa2048", ["-t", "rsa", "-b", "2048", "-m", "PEM"]),
                           ("rsa3072", ["-t", "rsa", "-b", "3072", "-m", "PEM"]),
                           ("rsa4096", ["-t", "rsa", "-b", "4096", "-m", "PEM"]),
                           ("rsa1024", ["-t", "rsa", "-b", "1024", "-m", "PEM"]),
                           ("ed25519", ["-t", "ed25519"]),
                           ("ecdsa256", ["-t", "ecdsa", "-b", "256"]),
                           ("ecdsa384", ["-t", "ecdsa", "-b", "384"]),
                           ("ecdsa521", ["-t", "ecdsa", "-b", "521"])]:
            path, public = keygen(tmp, name, *args)
            out[name] = {"path": path, "public": public, "private": open(path).read()}
        yield out


def openssl_digest(der_command, digest):
    """``openssl <digest> -c`` of what ``der_command`` writes, as colon hex."""
    der = sh(*der_command)
    text = sh("openssl", digest, "-c", data=der).decode()
    return text.split("= ", 1)[1].strip()


def keygen_sha256(public_path):
    """ssh-keygen -l's SHA256 fingerprint, with the padding EC2 adds."""
    field = sh("ssh-keygen", "-l", "-E", "sha256", "-f", public_path).decode().split()[1]
    assert field.startswith("SHA256:")
    text = field[len("SHA256:"):]
    return text + "=" * (-len(text) % 4)


# ------------------------------------------------------------------ parsing
@pytest.mark.parametrize("name,ssh_type,bits", [
    ("rsa2048", "ssh-rsa", 2048), ("rsa3072", "ssh-rsa", 3072), ("rsa4096", "ssh-rsa", 4096),
    ("ed25519", "ssh-ed25519", 256), ("ecdsa256", "ecdsa-sha2-nistp256", 256),
    ("ecdsa384", "ecdsa-sha2-nistp384", 384), ("ecdsa521", "ecdsa-sha2-nistp521", 521)])
def test_openssh_lines_parse_and_normalise(made, name, ssh_type, bits):
    public = made[name]["public"]
    key_type, blob, comment = keys.parse_public_key(public)
    assert (key_type, comment) == (ssh_type, "tester@example")
    assert blob == base64.b64decode(public.split()[1])
    assert keys.openssh_line(key_type, blob, comment) == public.strip()
    assert keys.openssh_line(key_type, blob) == " ".join(public.split()[:2])
    assert keys.key_bits(key_type, blob) == bits
    # spaces, tabs and CRLF around it are the file's, not the key's; bytes are accepted too
    assert keys.parse_public_key("  %s\r\n" % public.strip()) == (key_type, blob, comment)
    assert keys.parse_public_key(public.encode()) == (key_type, blob, comment)
    assert keys.parse_public_key(" ".join(public.split()[:2])) == (key_type, blob, None)
    # the same key as ssh-keygen exports it in RFC 4716 form
    rfc = sh("ssh-keygen", "-e", "-f", made[name]["path"] + ".pub").decode()
    assert rfc.startswith("---- BEGIN SSH2 PUBLIC KEY ----")
    parsed = keys.parse_public_key(rfc)
    assert parsed[:2] == (key_type, blob) and parsed[2] and "converted by" in parsed[2]


@pytest.mark.parametrize("name", ["rsa2048", "rsa4096", "ecdsa256", "ecdsa384", "ecdsa521"])
def test_der_and_pem_public_keys(made, name):
    key_type, blob, _c = keys.parse_public_key(made[name]["public"])
    pem = sh("ssh-keygen", "-e", "-m", "PKCS8", "-f", made[name]["path"] + ".pub").decode()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert keys.parse_public_key(pem) == (key_type, blob, None)
    der = sh("openssl", "pkey", "-pubin", "-outform", "DER", data=pem.encode())
    assert keys.spki_der(key_type, blob) == der  # the hand-made DER is openssl's, byte for byte
    assert keys.parse_public_key(base64.b64encode(der).decode()) == (key_type, blob, None)  # "base64 DER"
    if key_type == "ssh-rsa":
        pkcs1 = sh("ssh-keygen", "-e", "-m", "PEM", "-f", made[name]["path"] + ".pub").decode()
        assert pkcs1.startswith("-----BEGIN RSA PUBLIC KEY-----")
        assert keys.parse_public_key(pkcs1) == (key_type, blob, None)


def test_ed25519_der_matches_openssl(tmp_path):
    """ssh-keygen cannot export ED25519 as PKCS#8, so the key comes from openssl here."""
    private = tmp_path / "ed.pem"
    sh("openssl", "genpkey", "-algorithm", "ed25519", "-out", str(private))
    pem = sh("openssl", "pkey", "-in", str(private), "-pubout").decode()
    der = sh("openssl", "pkey", "-in", str(private), "-pubout", "-outform", "DER")
    key_type, blob, comment = keys.parse_public_key(pem)
    assert key_type == "ssh-ed25519" and comment is None
    assert blob == struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + der[-32:]
    assert keys.spki_der(key_type, blob) == der


def _line(blob, key_type="ssh-rsa", comment=""):
    return ("%s %s %s" % (key_type, base64.b64encode(blob).decode(), comment)).strip()


def _rsa(e, n):
    return keys.rsa_blob(e, n)


def test_refusals_say_why(made):
    rsa = made["rsa2048"]["public"].strip()
    ed = made["ed25519"]["public"].strip()
    _t, ed_blob, _c = keys.parse_public_key(ed)
    _t, rsa_blob, _c = keys.parse_public_key(rsa)
    cases = [
        ("", "no public key given"),
        ("hello world", "key type 'hello' is not accepted"),
        ("AAAA", "is not '<type> <base64> [comment]'"),
        (made["rsa2048"]["private"], "this is a private key"),
        (made["ed25519"]["private"], "this is a private key"),
        ("PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n", "this is a private key"),
        (made["rsa1024"]["public"], "the RSA key has 1024 bits; use a key of 2048 to 4096 bits"),
        (_line(_rsa(65537, (1 << 4200) | 1)), "the RSA key has 4201 bits"),
        (_line(_rsa(65536, (1 << 2047) | 1)), "exponent or modulus is even"),
        ("ssh-ed25519 " + rsa.split()[1], "the key says it is ssh-ed25519 but its data is a ssh-rsa key"),
        ("ssh-rsa " + ed.split()[1], "says it is ssh-rsa but its data is a ssh-ed25519 key"),
        (_line(ed_blob + b"\x00", "ssh-ed25519"), "1 unexpected bytes after the key"),
        (_line(rsa_blob[:-10]), "truncated"),
        (_line(ed_blob[:-1], "ssh-ed25519"), "truncated"),
        ("ssh-rsa " + rsa.split()[1][:-3] + "!!=", "not valid base64"),
        ("ssh-rsa " + rsa.split()[1][:-1], "not valid base64"),
        (rsa[:100] + "\n" + rsa[100:], "an OpenSSH public key is a single line"),
        (rsa + "\n" + ed, "has 2 lines"),
        (ed + " one\ttwo", "control character"),
        ('command="/bin/false" ' + ed, "without authorized_keys options"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "DSA keys are not accepted"),
        ("ssh-ed25519-cert-v01@openssh.com AAAA", "is an OpenSSH certificate"),
        ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "PUBLIC KEY or RSA PUBLIC KEY"),
        ("---- BEGIN SSH2 PUBLIC KEY ----\n" + rsa.split()[1], "does not end with"),
        ("ssh-ed25519 " + base64.b64encode(struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 31)
                                           + b"x" * 31).decode(), "is 31 bytes long, not 32"),
        (b"ssh-ed25519 \xff", "not ASCII"),
    ]
    for text, message in cases:
        with pytest.raises(ValueError) as info:
            keys.parse_public_key(text)
        assert message in str(info.value), (text[:60], str(info.value))
        assert isinstance(info.value, InvalidInput)  # modules turn it into fail_json(msg) unchanged
    with pytest.raises(ValueError, match="key type 'ssh-dss' is not accepted"):
        keys.openssh_line("ssh-dss", b"")
    with pytest.raises(ValueError, match="data is a ssh-rsa key"):
        keys.openssh_line("ssh-ed25519", rsa_blob)


# ------------------------------------------------------------------ fingerprints
@pytest.mark.parametrize("name", ["rsa2048", "rsa3072", "rsa4096"])
def test_rsa_fingerprints_are_the_ec2_guides(made, name):
    path = made[name]["path"]
    key_type, blob, _c = keys.parse_public_key(made[name]["public"])
    imported = keys.imported_fingerprint(key_type, blob)
    assert imported == openssl_digest(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"], "md5")
    created = keys.created_fingerprint(key_type, blob, made[name]["private"])
    assert created == openssl_digest(["openssl", "pkcs8", "-in", path, "-inform", "PEM", "-topk8", "-nocrypt",
                                      "-outform", "DER"], "sha1")
    assert len(imported.split(":")) == 16 and len(created.split(":")) == 20
    # the DER PKCS#8 itself is openssl's
    assert keys.pkcs8_der(made[name]["private"]) == sh("openssl", "pkcs8", "-in", path, "-topk8", "-nocrypt",
                                                       "-outform", "DER")


@pytest.mark.parametrize("name", ["ed25519", "ecdsa256", "ecdsa521"])
def test_sha256_fingerprints_are_ssh_keygens_padded(made, name):
    key_type, blob, _c = keys.parse_public_key(made[name]["public"])
    want = keygen_sha256(made[name]["path"] + ".pub")
    assert want.endswith("=") and not want.startswith("SHA256:")
    assert keys.imported_fingerprint(key_type, blob) == want
    assert keys.created_fingerprint(key_type, blob, made[name]["private"]) == want


def test_fingerprints_differ_between_keys(made):
    one = keys.parse_public_key(made["rsa2048"]["public"])
    two = keys.parse_public_key(made["rsa3072"]["public"])
    assert keys.imported_fingerprint(*one[:2]) != keys.imported_fingerprint(*two[:2])


# ------------------------------------------------------------------ generation
def test_generate_rsa_is_what_ec2_returns(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    private, public, fingerprint = keys.generate("rsa", comment="web")
    assert private.startswith("-----BEGIN RSA PRIVATE KEY-----\n") and private.rstrip().endswith(
        "-----END RSA PRIVATE KEY-----")
    key_type, blob, comment = keys.parse_public_key(public)
    assert (key_type, comment, keys.key_bits(key_type, blob)) == ("ssh-rsa", "web", 2048)
    assert os.listdir(str(tmp_path)) == []  # the private key did not stay behind
    path = tmp_path / "saved.pem"
    path.write_text(private)
    path.chmod(0o600)
    # the private key belongs to the public key, and the fingerprint is the one the guide computes
    assert sh("ssh-keygen", "-y", "-f", str(path)).decode().split()[:2] == public.split()[:2]
    assert fingerprint == openssl_digest(["openssl", "pkcs8", "-in", str(path), "-topk8", "-nocrypt",
                                          "-outform", "DER"], "sha1")


def test_generate_ed25519(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    private, public, fingerprint = keys.generate("ed25519")
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    key_type, blob, comment = keys.parse_public_key(public)
    assert key_type == "ssh-ed25519" and comment is None and public == keys.openssh_line(key_type, blob)
    (tmp_path / "pub").write_text(public + "\n")
    assert fingerprint == keygen_sha256(str(tmp_path / "pub"))
    (tmp_path / "pub").unlink()
    assert os.listdir(str(tmp_path)) == []
    assert keys.generate("ed25519")[0] != private  # a new key each time


def test_generate_cleans_up_on_error(tmp_path, monkeypatch):
    """ssh-keygen fails (a comment it cannot take is refused first; here the program itself is broken)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen = []
    real_mkdtemp = tempfile.mkdtemp

    def spy(*args, **kwargs):
        path = real_mkdtemp(*args, **kwargs)
        seen.append((path, stat.S_IMODE(os.stat(path).st_mode)))
        return path
    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ssh-keygen"
    fake.write_text("#!/bin/sh\nfor a; do f=$a; done\necho half > \"$f\"\necho 'out of entropy' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, os.environ["PATH"]))
    with pytest.raises(EucaError) as info:  # CommandFailed names the program and its stderr
        keys.generate("rsa")
    assert "out of entropy" in info.value.msg
    assert len(seen) == 1 and seen[0][1] == 0o700 and not os.path.exists(seen[0][0])
    for bad, message in [(dict(key_type="dsa"), "rsa or ed25519"), (dict(key_format="ppk"), "only pem"),
                         (dict(comment="a\nb"), "control character")]:
        with pytest.raises(ValueError, match=message):
            keys.generate(**bad)


# ------------------------------------------------------------------ names and ids
def test_key_pair_names_follow_ec2():
    for name in ["a", "my key", "web/prod:2024", "x" * 255, "~!@#$%^&*()"]:
        assert keys.check_key_name(name) == name and keys.is_key_name(name)
    for name, message in [("", "not valid"), (None, "not valid"), ("x" * 256, "256 characters long"),
                          (" web", "leading or trailing spaces"), ("web ", "leading or trailing spaces"),
                          ("caf\u00e9", "not printable ASCII"), ("a\nb", "not printable ASCII"),
                          ("tab\there", "not printable ASCII"), ("del\x7f", "not printable ASCII")]:
        with pytest.raises(ValueError, match=message):
            keys.check_key_name(name)
        assert not keys.is_key_name(name)


def test_key_pair_ids():
    key_id = names.format_id("key", 0x1a2b3c4d)
    assert key_id == "key-1a2b3c4d" and names.looks_like("key", key_id)
    assert names.check_id("key", key_id) == key_id
    assert not names.looks_like("instance", key_id) and not names.looks_like("key", "i-1a2b3c4d")
    with pytest.raises(InvalidInput, match="is not a key id"):
        names.check_id("key", "key-xyz")
