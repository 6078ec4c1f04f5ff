"""euca.cloud.nc_console_output (EC2 GetConsoleOutput) with a real guest under QEMU (TCG).

The node is a namespace with a private libvirtd and an image cache holding the test image
(roles/test_image), as in test_nc_instance.py; the guest has no NIC (the console is all that is
read here). It boots with console=ttyS0, so the kernel's own lines and the test image's EUCA-
lines land in the console log QEMU appends to, and the module must return them.
"""

from __future__ import annotations

import base64
import datetime
import os
import shutil
import tempfile
import time

import pytest

from harness import libvirtd as lv
from harness import netns as _netns
from harness.guest_image import fill_image_cache
from harness.runner import run_module

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow]

NAME = "i-0c0501e0"
MISSING = "i-0badbad0"
IMAGES = {"image": "emi-0000000c", "kernel": "eki-0000000c", "ramdisk": "eri-0000000c"}
TOKEN = "console-output-token-7f3a"
#: measured: EUCA-READY 11 s after start under TCG on 2 cores (a busy machine); 3x and a margin
BOOT_TIMEOUT = 90


@pytest.fixture(scope="module")
def node(guest_image):
    ns = _netns.Netns.create()
    work = tempfile.mkdtemp(prefix="eut-con-", dir="/tmp")
    os.chmod(work, 0o755)
    daemon = None
    try:
        cache_dir = os.path.join(work, "cache")
        fill_image_cache(cache_dir, guest_image, IMAGES)
        daemon = lv.start_in(ns)
        yield {"ns": ns, "uri": daemon.uri, "cache_dir": cache_dir, "instances_dir": os.path.join(work, "instances")}
    finally:
        if daemon is not None:
            lv.remove_domains(daemon.uri)
            daemon.stop()
        ns.delete()
        shutil.rmtree(work, ignore_errors=True)


def instance(node, state):
    run = run_module("euca.cloud.nc_instance", dict(
        name=NAME, state=state, uri=node["uri"], namespace=node["ns"].name, cache_dir=node["cache_dir"],
        instances_dir=node["instances_dir"], memory_mb=128, nics=[], shutdown_timeout=0,
        user_data="#!/bin/sh\necho %s\n" % TOKEN, **IMAGES))
    assert not run.failed, run.result.get("msg") or run.stdout[-3000:]
    return run.result


def console_output(node, check=False, **args):
    return run_module("euca.cloud.nc_console_output", dict(dict(
        name=NAME, uri=node["uri"], instances_dir=node["instances_dir"]), **args), check=check)


def ok(run):
    assert not run.failed, run.result.get("msg") or run.stdout[-3000:]
    assert run.result["changed"] is False
    return run.result


def log_path(node):
    return os.path.join(node["instances_dir"], NAME, "console.log")


def wait_log(node, text, count=1, timeout=BOOT_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        data = open(log_path(node), "rb").read() if os.path.exists(log_path(node)) else b""
        if data.count(text.encode()) >= count:
            return data
        assert time.monotonic() < deadline, "no %r (x%d) on the console after %ss:\n%s" % (
            text, count, timeout, data[-3000:])
        time.sleep(0.2)


def test_a_missing_instance_fails_clearly(node):
    run = console_output(node, name=MISSING)
    assert run.failed
    assert run.result["msg"].startswith("InvalidInstanceID.NotFound") and MISSING in run.result["msg"], run.result
    bad = console_output(node, name="web-1")
    assert bad.failed and "InvalidInstanceID.Malformed" in bad.result["msg"], bad.result
    for size in (0, 65537):
        over = console_output(node, max_bytes=size)
        assert over.failed and "max_bytes must be 1-65536" in over.result["msg"], over.result


def test_console_output_of_a_real_guest(node):
    # defined, never started: no log yet, an empty output and no timestamp
    instance(node, "stopped")
    empty = ok(console_output(node))
    assert (empty["output"], empty["output_base64"], empty["timestamp"], empty["log_bytes"]) == ("", "", None, 0)
    assert empty["instance_id"] == NAME and empty["console_log"] == log_path(node)

    started = time.monotonic()
    instance(node, "running")
    wait_log(node, "EUCA-READY")
    booted = time.monotonic() - started
    log = wait_log(node, "EUCA-USERDATA " + TOKEN)
    result = ok(console_output(node))
    text = result["output"]
    # the kernel's own boot lines and the guest's, from this instance's seed
    assert "Linux version" in text and "Command line:" in text, text[:2000]
    assert "EUCA-SEED dev=" in text and "instance-id=%s" % NAME in text
    assert "EUCA-USERDATA " + TOKEN in text
    raw = base64.b64decode(result["output_base64"])
    assert raw.decode("utf-8", "replace") == text
    now = open(log_path(node), "rb").read()  # the guest may have written more since
    assert raw in now and result["log_bytes"] >= len(log)
    assert result["truncated"] is (result["log_bytes"] > len(raw))
    if not result["truncated"]:
        assert now.startswith(raw)
    stamp = datetime.datetime.strptime(result["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    assert abs(stamp - os.path.getmtime(log_path(node))) < 1.0 and abs(stamp - time.time()) < BOOT_TIMEOUT
    # check mode reads the same
    dry = ok(console_output(node, check=True))
    assert "EUCA-USERDATA " + TOKEN in dry["output"]

    # a short tail: the last bytes only, and says it is one
    tail = ok(console_output(node, max_bytes=100))
    tail_raw = base64.b64decode(tail["output_base64"])
    assert 97 <= len(tail_raw) <= 100 and tail["truncated"] is True
    assert tail_raw in open(log_path(node), "rb").read()
    assert "Linux version" not in tail["output"]
    print("boot to EUCA-READY: %.1fs, log %d bytes" % (booted, result["log_bytes"]))


def test_the_log_outlives_a_restart_and_tails_at_64k(node):
    """Older output stays in the log across a restart (QEMU appends); only the last 64 KiB come back."""
    instance(node, "stopped")
    path = log_path(node)
    # 65 535 bytes after a 2-byte UTF-8 character: the 64 KiB cut falls inside the character
    filler = ("x" * 99 + "\n").encode() * 655 + b"y" * 35
    with open(path, "ab") as handle:
        handle.write(b"\xc3\xa9" + filler)
    result = ok(console_output(node))
    raw = base64.b64decode(result["output_base64"])
    assert result["truncated"] is True and raw == filler  # the half character is dropped, not U+FFFD
    assert result["output"] == filler.decode() and "Linux version" not in result["output"]
    instance(node, "running")
    log = wait_log(node, "EUCA-READY", count=2)
    assert log.count(b"EUCA-BOOT") == 2 and filler in log  # both boots and the filler are in the file
    after = ok(console_output(node))
    assert "EUCA-READY instance-id=%s" % NAME in after["output"] and after["log_bytes"] > result["log_bytes"]
    instance(node, "absent")
    gone = console_output(node)
    assert gone.failed and gone.result["msg"].startswith("InvalidInstanceID.NotFound")
