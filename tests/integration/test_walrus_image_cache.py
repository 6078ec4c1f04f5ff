"""Walrus (a directory served by a real nginx) and the node's image cache, inside a namespace.

roles/walrus deploys nginx (under a private supervisord) on the namespace's loopback; the image_cache module runs inside the namespace
too (its interpreter is ``ip netns exec <ns> python``), so every download is a real HTTP GET
that nginx's access log counts. nginx is rate-limited so that concurrent fetches overlap.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from ansible_collections.euca.cloud.plugins.module_utils.compute.image_cache import ImageCache
from harness.runner import run_module, run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.root]

PORT = 8773
PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
MIB = 1 << 20


def deploy_walrus(ns, supervisor, work, **role_vars):
    """Run roles/walrus for a store in ``work`` served on the namespace's loopback."""
    play = os.path.join(work, "walrus.yml")
    role = dict({"role": "euca.cloud.walrus", "walrus_namespace": ns.name,
                 "walrus_store_dir": os.path.join(work, "store"), "walrus_listen": "127.0.0.1:%d" % PORT,
                 "walrus_state_dir": os.path.join(work, "nginx")}, **role_vars)
    with open(play, "w") as handle:
        yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "vars": supervisor.role_vars,
                         "roles": [role]}], handle)
    return run_playbook(play, inventory="localhost ansible_connection=local ansible_python_interpreter=%s"
                        % sys.executable)


@pytest.fixture
def walrus(netns, supervisor):
    """roles/walrus serving a fresh store directory at http://127.0.0.1:8773 inside a namespace."""
    ns = netns()
    ns.ip("link", "set", "lo", "up")
    work = tempfile.mkdtemp(prefix="eut-walrus-", dir="/tmp")
    os.chmod(work, 0o755)
    store, logs = os.path.join(work, "store"), os.path.join(work, "nginx")
    # rate-limited so that concurrent fetches overlap
    deployed = deploy_walrus(ns, supervisor, work, walrus_limit_rate="16m")
    assert deployed.rc == 0, deployed.stdout[-3000:]
    assert supervisor.pid("euca-walrus") in ns.ns_pids()
    python = os.path.join(work, "python-in-ns")
    with open(python, "w") as handle:
        handle.write("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n" % (ns.name, sys.executable))
    os.chmod(python, 0o755)
    try:
        yield {"ns": ns, "store": store, "cache": os.path.join(work, "cache"), "python": python, "work": work,
               "access_log": os.path.join(logs, "access.log"), "url": "http://127.0.0.1:%d" % PORT}
    finally:
        ns.delete()
        shutil.rmtree(work, ignore_errors=True)


def blob(path, size, seed):
    data = hashlib.sha256(seed.encode()).digest() * (size // 32)
    with open(path, "wb") as handle:
        handle.write(data)
    return "sha256:" + hashlib.sha256(data).hexdigest()


def gets(walrus, key) -> int:
    if not os.path.exists(walrus["access_log"]):
        return 0
    return sum(1 for line in open(walrus["access_log"]) if ("GET /images/%s " % key) in line)


def stored(walrus, key, src, **extra):
    return run_module("euca.cloud.walrus_image", dict(store_dir=walrus["store"], key=key, src=src,
                                                      base_url=walrus["url"], **extra))


def cache(walrus, images, check=False, **extra):
    return run_module("euca.cloud.image_cache", dict(cache_dir=walrus["cache"], images=images, **extra), check=check,
                      extravars={"ansible_python_interpreter": walrus["python"]})


def ok(run):
    assert not run.failed, run.result.get("msg") or run.stdout[-3000:]
    return run.result


def tree(path):
    """Every file under ``path`` (but the lock files) with its bytes' digest."""
    found = {}
    for base, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d != ".locks"]
        for name in files:
            full = os.path.join(base, name)
            found[os.path.relpath(full, path)] = hashlib.sha256(open(full, "rb").read()).hexdigest()
    return found


def test_store_then_fetch_once_and_verify(walrus, tmp_path):
    src = str(tmp_path / "root.img")
    checksum = blob(src, 8 * MIB, "root")
    # walrus: store, idempotent, check mode, checksum guard
    first = ok(stored(walrus, "euca-test/root.img", src, checksum=checksum))
    assert first["changed"] and first["checksum"] == checksum and first["size_bytes"] == 8 * MIB
    assert first["location"] == walrus["url"] + "/images/euca-test/root.img"
    assert not ok(stored(walrus, "euca-test/root.img", src))["changed"]
    wrong = stored(walrus, "euca-test/other.img", src, checksum="sha256:" + "0" * 64)
    assert wrong.failed and "not sha256:000" in wrong.result["msg"]
    assert not os.path.exists(os.path.join(walrus["store"], "images", "euca-test", "other.img"))
    bad = stored(walrus, "../escape", src)
    assert bad.failed and "key '../escape'" in bad.result["msg"]

    record = {"id": "emi-0000000a", "name": "euca-test", "kind": "machine", "location": first["location"],
              "checksum": checksum, "size_bytes": 8 * MIB}
    dry = ok(cache(walrus, [record], check=True))
    assert dry["changed"] and dry["images"]["emi-0000000a"]["downloaded"] and not os.path.exists(walrus["cache"])
    fetched = ok(cache(walrus, [record]))
    assert fetched["changed"] and fetched["images"]["emi-0000000a"]["downloaded"]
    path = fetched["images"]["emi-0000000a"]["path"]
    assert "sha256:" + hashlib.sha256(open(path, "rb").read()).hexdigest() == checksum
    assert oct(os.stat(path).st_mode & 0o777) == "0o444" and gets(walrus, "euca-test/root.img") == 1
    again = ok(cache(walrus, [record]))
    assert not again["changed"] and not again["images"]["emi-0000000a"]["downloaded"]
    assert gets(walrus, "euca-test/root.img") == 1  # no request at all


def test_two_concurrent_fetches_download_once(walrus, tmp_path):
    src = str(tmp_path / "big.img")
    checksum = blob(src, 32 * MIB, "big")  # 2 s at nginx's 16 MiB/s: the fetches overlap
    location = ok(stored(walrus, "big.img", src))["location"]
    code = ("import json, sys; sys.path.insert(0, %r); "
            "from ansible_collections.euca.cloud.plugins.module_utils.compute.image_cache import ImageCache; "
            "print(json.dumps(ImageCache(sys.argv[1]).fetch('emi-0000000b', sys.argv[2], sys.argv[3])))"
            % os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "collections"))
    procs = [subprocess.Popen([walrus["python"], "-c", code, walrus["cache"], location, checksum],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    downloaded = sorted('"downloaded": true' in out for out, _err in outs)
    assert downloaded == [False, True] and gets(walrus, "big.img") == 1


def test_a_corrupted_download_leaves_the_cache_as_it_was(walrus, tmp_path):
    src = str(tmp_path / "a.img")
    checksum = blob(src, 4 * MIB, "a")
    good = ok(stored(walrus, "a.img", src))
    ok(cache(walrus, [{"id": "emi-0000000a", "location": good["location"], "checksum": checksum}]))
    src_b = str(tmp_path / "b.img")
    checksum_b = blob(src_b, 4 * MIB, "b")
    location_b = ok(stored(walrus, "b.img", src_b))["location"]
    # bit rot on walrus: same size, other bytes
    with open(os.path.join(walrus["store"], "images", "b.img"), "r+b") as handle:
        handle.seek(MIB)
        handle.write(b"\xff" * 16)
    before = tree(walrus["cache"])
    run = cache(walrus, [{"id": "emi-0000000b", "location": location_b, "checksum": checksum_b}])
    assert run.failed and "does not match its checksum" in run.result["msg"] and checksum_b in run.result["msg"]
    assert tree(walrus["cache"]) == before and gets(walrus, "b.img") == 1
    missing = cache(walrus, [{"id": "emi-0000000c", "location": walrus["url"] + "/images/nope.img",
                              "checksum": checksum_b}])
    assert missing.failed and "cannot fetch image emi-0000000c" in missing.result["msg"] and "404" in missing.result["msg"]
    assert tree(walrus["cache"]) == before
    badsum = cache(walrus, [{"id": "emi-0000000d", "location": location_b, "checksum": "md5:abc"}])
    assert badsum.failed and "must be a sha256 hex digest" in badsum.result["msg"]


def test_lru_eviction_to_a_cap_never_evicts_an_image_in_use(walrus, tmp_path):
    records = []
    for n, name in enumerate("abc"):
        src = str(tmp_path / name)
        checksum = blob(src, 4 * MIB, name)
        location = ok(stored(walrus, name + ".img", src))["location"]
        records.append({"id": "emi-0000000%d" % n, "location": location, "checksum": checksum, "size_bytes": 4 * MIB})
    for record in records[:2]:
        ok(cache(walrus, [record]))
        time.sleep(0.05)
    lib = ImageCache(walrus["cache"])
    lib.pin("emi-00000000", "i-0a1b2c3d")  # the oldest is in use
    # room for two: fetching the third must evict the least recently used unpinned one (emi-00000001)
    dry = ok(cache(walrus, [records[2]], check=True, size_cap="9MiB"))
    assert dry["evicted"] == ["emi-00000001"] and lib.entry("emi-00000001") is not None
    run = ok(cache(walrus, [records[2]], size_cap="9MiB"))
    assert run["evicted"] == ["emi-00000001"]
    assert sorted(e["id"] for e in lib.entries()) == ["emi-00000000", "emi-00000002"]
    # a cap below what is in use evicts nothing in use; the requested images alone must fit
    assert ok(cache(walrus, [records[2]], size_cap="5MiB"))["evicted"] == []
    too_big = cache(walrus, records, size_cap="5MiB")
    assert too_big.failed and "more than size_cap" in too_big.result["msg"]
    busy = cache(walrus, [{"id": "emi-00000000"}], state="absent")
    assert busy.failed and "in use by i-0a1b2c3d" in busy.result["msg"]
    lib.unpin("emi-00000000", "i-0a1b2c3d")
    assert ok(cache(walrus, [{"id": "emi-00000000"}], state="absent"))["removed"] == ["emi-00000000"]


def test_register_image_playbook_then_a_node_fetches_what_the_ledger_says(walrus, tmp_path):
    ledger = str(tmp_path / "ledger.sqlite")
    inventory = textwrap.dedent("""\
        [walrus]
        localhost
        [clc]
        localhost
        [all:vars]
        ansible_connection=local
        ansible_python_interpreter={python}
        euca_walrus_store_dir={store}
        euca_walrus_url={url}
        euca_ledger={ledger}
        """).format(python=sys.executable, store=walrus["store"], url=walrus["url"], ledger=ledger)
    files = {}
    for name, kind in (("k", "kernel"), ("r", "ramdisk"), ("m", "machine")):
        files[kind] = str(tmp_path / ("%s.img" % name))
        blob(files[kind], 2 * MIB, name)
    requests = [
        {"image_name": "tiny-kernel", "image_src": files["kernel"], "image_kind": "kernel"},
        {"image_name": "tiny-ramdisk", "image_src": files["ramdisk"], "image_kind": "ramdisk"},
        {"image_name": "tiny", "image_src": files["machine"], "image_kernel": "tiny-kernel",
         "image_ramdisk": "tiny-ramdisk"},
    ]
    for extra in requests:
        run = run_playbook(PLAYBOOKS / "register-image.yml", extravars=extra, inventory=inventory)
        assert run.rc == 0, run.stdout[-3000:]
        assert run.stats["changed"]["localhost"] == 2  # stored and recorded
    again = run_playbook(PLAYBOOKS / "register-image.yml", extravars=requests[2], inventory=inventory)
    assert again.rc == 0 and not again.stats["changed"].get("localhost")
    bad = run_playbook(PLAYBOOKS / "register-image.yml", extravars={"image_name": "x"}, inventory=inventory)
    assert bad.rc != 0 and "give image_name and image_src" in bad.stdout

    cloud = ok(run_module("euca.cloud.ledger_info", dict(ledger=ledger, scope="cloud")))
    images = cloud["images"]
    machine = [i for i in images if i["name"] == "tiny"][0]
    assert machine["kernel_id"].startswith("eki-") and machine["format"] == "raw"
    fetched = ok(cache(walrus, images))
    for record in images:
        path = fetched["images"][record["id"]]["path"]
        assert "sha256:" + hashlib.sha256(open(path, "rb").read()).hexdigest() == record["checksum"]


def test_walrus_role_is_idempotent_read_only_and_restarts_for_new_config(walrus, supervisor):
    """(The fixture deployed it once.) Nothing changes on a rerun; a changed setting restarts nginx."""
    ns, work = walrus["ns"], walrus["work"]
    pid = supervisor.pid("euca-walrus")
    again = deploy_walrus(ns, supervisor, work, walrus_limit_rate="16m")
    assert again.rc == 0 and again.stats["changed"].get("localhost", 0) == 0, again.stdout[-3000:]
    assert supervisor.pid("euca-walrus") == pid
    os.makedirs(os.path.join(walrus["store"], "images"), exist_ok=True)
    with open(os.path.join(walrus["store"], "images", "hello"), "w") as handle:
        handle.write("hello walrus")
    fetch = ("import sys, urllib.request\n"
             "req = urllib.request.Request(sys.argv[1], method=sys.argv[2], data=b'x' if sys.argv[2] == 'PUT' else None)\n"
             "try:\n    print(urllib.request.urlopen(req, timeout=5).read().decode())\n"
             "except urllib.error.HTTPError as exc:\n    print(exc.code)\n")
    url = walrus["url"] + "/images/hello"
    assert ns.run(sys.executable, "-c", fetch, url, "GET").stdout.strip() == "hello walrus"
    assert ns.run(sys.executable, "-c", fetch, url, "PUT").stdout.strip() == "403"  # read-only

    changed = deploy_walrus(ns, supervisor, work, walrus_limit_rate="32m")
    assert changed.rc == 0 and changed.stats["changed"].get("localhost", 0) >= 2, changed.stdout[-3000:]
    assert supervisor.pid("euca-walrus") not in (0, pid)
    with open(os.path.join(work, "nginx", "nginx.conf")) as handle:
        assert "limit_rate 32m;" in handle.read()
    assert ns.run(sys.executable, "-c", fetch, url, "GET").stdout.strip() == "hello walrus"
