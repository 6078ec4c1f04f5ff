"""euca.cloud.nc_instance and nc_instance_action with a real guest under QEMU (TCG).

One namespace stands for a node controller that is also its cluster's controller: a private
libvirtd runs in it, the segment bridge eubr-100 carries the gateway, and our DHCP module's
dnsmasq holds the instance's reservation. The guest is the test image (roles/test_image): it
prints EUCA-BOOT/EUCA-LEASE/EUCA-READY on its serial console and answers HTTP with the
instance id from its NoCloud seed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import libvirt
import pytest

from ansible_collections.euca.cloud.plugins.module_utils.compute.image_cache import ImageCache
from harness import libvirtd as lv
from harness.guest_image import fill_image_cache
from harness import netns as _netns
from harness.runner import run_module

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow]

NAME = "i-0a1b2c3d"
MAC = "d0:0d:0a:4d:00:0a"
IP = "10.77.0.10"
FETCH = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())"
IMAGES = {"image": "emi-0000000a", "kernel": "eki-0000000a", "ramdisk": "eri-0000000a"}


@pytest.fixture(scope="module")
def node(guest_image):
    """The node: namespace, libvirtd, bridge + dnsmasq, an image cache holding the test image."""
    ns = _netns.Netns.create()
    work = tempfile.mkdtemp(prefix="eut-nc-", dir="/tmp")
    os.chmod(work, 0o755)
    daemon = None
    try:
        ns.bridge("eubr-100")
        ns.addr("eubr-100", "10.77.0.1/24")
        dhcp = run_module("euca.cloud.dhcp", dict(
            namespace=ns.name, state_dir=os.path.join(work, "dhcp"), user="root", state="overridden",
            config=[{"id": 100, "interface": "eubr-100", "subnet": "10.77.0.0/24", "gateway": "10.77.0.1",
                     "hosts": [{"mac": MAC, "ip": IP, "hostname": NAME}]}]))
        assert not dhcp.failed, dhcp.result.get("msg")
        ns.adopt(dhcp.result["dnsmasq"]["pid"])
        cache_dir = os.path.join(work, "cache")
        fill_image_cache(cache_dir, guest_image, IMAGES)
        daemon = lv.start_in(ns)
        yield {"ns": ns, "uri": daemon.uri, "daemon": daemon, "cache_dir": cache_dir,
               "instances_dir": os.path.join(work, "instances")}
    finally:
        if daemon is not None:
            daemon.stop()
        ns.delete()
        shutil.rmtree(work, ignore_errors=True)


def instance(node, state="running", check=False, diff=False, **options):
    args = dict(name=NAME, state=state, uri=node["uri"], namespace=node["ns"].name, cache_dir=node["cache_dir"],
                instances_dir=node["instances_dir"], image=IMAGES["image"], kernel=IMAGES["kernel"],
                ramdisk=IMAGES["ramdisk"], memory_mb=128, nics=[{"bridge": "eubr-100", "mac": MAC}],
                hostname="web-1", user_data="#!/bin/sh\necho user-data says hello\n", shutdown_timeout=0)
    args.update(options)
    return run_module("euca.cloud.nc_instance", args, check=check, diff=diff)


def action(node, **args):
    return run_module("euca.cloud.nc_instance_action", dict(name=NAME, uri=node["uri"],
                                                            instances_dir=node["instances_dir"], **args))


def ok(run):
    assert not run.failed, run.result.get("msg") or run.stdout[-3000:]
    return run.result


def console(node) -> str:
    path = os.path.join(node["instances_dir"], NAME, "console.log")
    return open(path, errors="replace").read() if os.path.exists(path) else ""


def wait_console(node, text, count=1, timeout=90) -> str:
    deadline = time.monotonic() + timeout
    while console(node).count(text) < count:
        assert time.monotonic() < deadline, "no %r (x%d) on the console:\n%s" % (text, count, console(node)[-3000:])
        time.sleep(0.2)
    return console(node)


def http(node, path="/") -> str:
    deadline = time.monotonic() + 30
    while True:
        out = node["ns"].run(sys.executable, "-c", FETCH, "http://%s%s" % (IP, path), check=False)
        if out.returncode == 0:
            return out.stdout
        if time.monotonic() > deadline:
            neigh = node["ns"].run("ip", "neigh", check=False).stdout
            links = node["ns"].run("bridge", "link", check=False).stdout
            raise AssertionError("no HTTP answer from %s: rc=%s %r %s\nneighbours: %s\nports: %s\nconsole: %s"
                                 % (IP, out.returncode, out.stdout, out.stderr, neigh, links, console(node)[-300:]))
        time.sleep(0.3)


def domains(node) -> dict:
    conn = node["daemon"].connect()
    try:
        return dict((d.name(), d.isActive()) for d in conn.listAllDomains())
    finally:
        conn.close()


def test_bad_input_defines_and_writes_nothing(node):
    cases = [
        (dict(image="emi-0badbad0"), "not in the node's image cache"),
        (dict(memory_mb=0), "memory_mb must be at least 1"),
        (dict(nics=[{"bridge": "eubr-100", "mac": "d0:0d:0a:4d:00"}]), "is not a MAC"),
        (dict(nics=[{"bridge": "eubr-999", "mac": MAC}]), "bridge eubr-999"),
        (dict(name="web-1"), "must be an instance id"),
    ]
    for options, message in cases:
        run = instance(node, **options)
        assert run.failed and message in run.result["msg"], (options, run.result.get("msg"))
    assert domains(node) == {} and not os.path.exists(os.path.join(node["instances_dir"], NAME))
    # check mode plans, and defines nothing
    dry = ok(instance(node, check=True))
    assert dry["changed"] and dry["actions"] == ["define", "create overlay", "write seed", "start"]
    assert domains(node) == {} and not os.path.exists(os.path.join(node["instances_dir"], NAME))


def validate(tmp_path, xml):
    """The domain XML libvirt holds passes libvirt's own schema."""
    path = tmp_path / "domain.xml"
    path.write_text(xml)
    run = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_lifecycle_of_a_real_guest(node, tmp_path):
    cache = ImageCache(node["cache_dir"])
    # running: defined, overlay over the cached base (not a copy), seed, started, hairpin on
    first = ok(instance(node, diff=True))
    assert first["changed"] and first["instance"]["state"] == "running" and "diff" in first
    overlay = first["instance"]["overlay"]
    info = json.loads(node["ns"].run("qemu-img", "info", "-U", "--output=json", overlay).stdout)
    assert info["format"] == "qcow2" and info["backing-filename"] == cache.path(IMAGES["image"])
    assert os.path.getsize(overlay) < 1 << 20  # the 64 MiB base was not copied
    assert sorted(cache.holders(IMAGES["image"])) == [NAME]
    log = wait_console(node, "EUCA-READY")
    assert "EUCA-LEASE %s" % IP in log and "EUCA-USERDATA user-data says hello" in wait_console(node, "EUCA-USERDATA")
    assert http(node) == NAME + "\n"
    port = first["instance"]["interfaces"][0]["port"]
    link = json.loads(node["ns"].run("bridge", "-d", "-j", "link", "show", "dev", port).stdout)[0]
    assert link["master"] == "eubr-100" and link["hairpin"] is True

    # a second run changes nothing and does not redefine
    conn = node["daemon"].connect()
    xml_before = conn.lookupByName(NAME).XMLDesc(0)
    validate(tmp_path, conn.lookupByName(NAME).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    second = ok(instance(node))
    assert not second["changed"] and second["actions"] == []
    assert conn.lookupByName(NAME).XMLDesc(0) == xml_before
    conn.close()

    # a tap that fell off its bridge (the bridge was deleted and rebuilt) is plugged back in, hairpin on
    node["ns"].run("ip", "link", "set", "dev", port, "nomaster")
    cut = node["ns"].run(sys.executable, "-c", FETCH, "http://%s/" % IP, check=False)
    assert cut.returncode != 0, cut.stdout
    replug = ok(instance(node))
    assert replug["changed"] and replug["actions"] == ["ports"]
    link = json.loads(node["ns"].run("bridge", "-d", "-j", "link", "show", "dev", port).stdout)[0]
    assert link["master"] == "eubr-100" and link["hairpin"] is True
    assert http(node) == NAME + "\n"

    # reboot: a new boot on the console, the same address
    boot_ids = [line.split()[1] for line in console(node).splitlines() if line.startswith("EUCA-BOOT")]
    assert ok(action(node, action="reboot"))["changed"]
    log = wait_console(node, "EUCA-READY", count=2)
    new_ids = [line.split()[1] for line in log.splitlines() if line.startswith("EUCA-BOOT")]
    assert len(new_ids) == 2 and new_ids[1] != boot_ids[0]
    assert http(node) == NAME + "\n"
    tail = ok(action(node, action="console", lines=3))
    assert not tail["changed"] and len(tail["output"].splitlines()) <= 3

    # stopped, then running again
    stopped = ok(instance(node, state="stopped"))
    assert stopped["changed"] and domains(node) == {NAME: 0}
    assert not ok(instance(node, state="stopped"))["changed"]
    again = ok(instance(node))
    assert again["changed"] and again["actions"] == ["start"]
    wait_console(node, "EUCA-READY", count=3)
    assert http(node) == NAME + "\n"

    # a spec change on a running instance is defined for its next start
    bigger = ok(instance(node, memory_mb=160))
    assert bigger["changed"] and bigger["restart_required"] and bigger["actions"] == ["redefine"]
    conn = node["daemon"].connect()
    validate(tmp_path, conn.lookupByName(NAME).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    conn.close()

    # absent: no domain, overlay, seed or directory; the cache keeps the image, unpinned
    assert domains(node) == {NAME: 1}
    dry = ok(instance(node, state="absent", check=True))
    assert dry["changed"] and domains(node) == {NAME: 1}
    gone = ok(instance(node, state="absent"))
    assert gone["changed"] and domains(node) == {}
    assert not os.path.exists(os.path.join(node["instances_dir"], NAME))
    assert cache.holders(IMAGES["image"]) == [] and os.path.exists(cache.path(IMAGES["image"]))
    assert not ok(instance(node, state="absent"))["changed"]


BATCH = ["i-0b000001", "i-0b000002", "i-0b000003"]
BAD = "i-0b0000ff"        # its image is not in the cache: fails when converged
INVALID = "i-0b0000fe"    # not a number of MiB: refused by validation


def batch_item(name, index, **extra):
    return dict(name=name, hostname=name, nics=[{"bridge": "eubr-100", "mac": "d0:0d:0b:00:00:%02x" % (index + 1)}],
                **extra)


def batch(node, items, check=False, diff=False, **options):
    """nc_instance's batch form: the module's options are the items' defaults."""
    args = dict(instances=items, uri=node["uri"], namespace=node["ns"].name, cache_dir=node["cache_dir"],
                instances_dir=node["instances_dir"], image=IMAGES["image"], kernel=IMAGES["kernel"],
                ramdisk=IMAGES["ramdisk"], memory_mb=128, shutdown_timeout=0, parallel=4)
    args.update(options)
    return run_module("euca.cloud.nc_instance", args, check=check, diff=diff)


def test_batch_starts_many_instances_in_one_call_and_a_bad_one_fails_alone(node):
    items = [batch_item(name, index) for index, name in enumerate(BATCH)]
    bad = batch_item(BAD, 9, image="emi-0badbad0")
    invalid = batch_item(INVALID, 10, memory_mb="lots")
    mine = set(BATCH + [BAD, INVALID])
    try:
        # check mode plans every instance and defines nothing; the diff has one part per instance
        dry = batch(node, items, check=True, diff=True)
        plan = ok(dry)
        assert plan["changed"] and [r["name"] for r in plan["results"]] == BATCH
        assert all(r["actions"] == ["define", "create overlay", "write seed", "start"] and not r["failed"]
                   for r in plan["results"])
        assert [part["before_header"] for part in plan["diff"]] == ["%s (before)" % n for n in BATCH]
        assert plan["diff"][0]["after"]["name"] == BATCH[0]
        assert not set(domains(node)) & mine and not os.path.exists(node["instances_dir"] + "/" + BATCH[0])

        # one call starts them all; the bad and the invalid item fail alone, in their place in the results
        run = batch(node, items[:1] + [bad] + items[1:] + [invalid], diff=True)
        assert run.failed and run.result["msg"].startswith("2 of 5 instances failed"), run.result.get("msg")
        results = run.result["results"]
        assert [r["name"] for r in results] == [BATCH[0], BAD, BATCH[1], BATCH[2], INVALID]
        failed = dict((r["name"], r["msg"]) for r in results if r["failed"])
        assert set(failed) == {BAD, INVALID}, failed
        assert "emi-0badbad0 is not in the node's image cache" in failed[BAD]
        assert "memory_mb" in failed[INVALID]
        for result in results:
            assert result["item"]["name"] == result["name"]  # what the playbooks read, as from a loop
            if result["name"] in BATCH:
                assert result["changed"] and result["instance"]["state"] == "running", result
                assert result["actions"] == ["define", "create overlay", "write seed", "start"]
                assert result["previous_state"] == "absent"
        assert dict((n, a) for n, a in domains(node).items() if n in mine) == dict((n, 1) for n in BATCH)
        assert not os.path.exists(os.path.join(node["instances_dir"], BAD))
        # each guest boots from its own overlay and seed
        for name in BATCH:
            path = os.path.join(node["instances_dir"], name, "console.log")
            deadline = time.monotonic() + 120
            while "EUCA-BOOT" not in (open(path, errors="replace").read() if os.path.exists(path) else ""):
                assert time.monotonic() < deadline, "%s did not boot" % name
                time.sleep(0.5)

        # a second call changes nothing
        again = ok(batch(node, items))
        assert not again["changed"] and all(not r["changed"] and r["actions"] == [] for r in again["results"])

        # one item stopped, the others kept; an instance named twice runs once
        mixed = ok(batch(node, [dict(items[0], state="stopped")] + items[1:]))
        assert [r["changed"] for r in mixed["results"]] == [True, False, False]
        assert mixed["results"][0]["actions"] == ["stop"]
        assert dict((n, a) for n, a in domains(node).items() if n in mine) == {BATCH[0]: 0, BATCH[1]: 1, BATCH[2]: 1}
        twice = batch(node, [items[1], items[1]])
        assert twice.failed and [r["failed"] for r in twice.result["results"]] == [False, True]
        assert "more than once" in twice.result["results"][1]["msg"]
    finally:
        gone = batch(node, [{"name": name} for name in BATCH + [BAD]], state="absent")
    assert not gone.failed, gone.result.get("msg")
    assert not set(domains(node)) & mine
    assert not any(os.path.exists(os.path.join(node["instances_dir"], name)) for name in mine)
    assert ImageCache(node["cache_dir"]).holders(IMAGES["image"]) == []
