"""sc_volume and sc_snapshot through Ansible on the file backend: idempotence, check mode, safety."""

import os

import pytest

from harness.runner import run_module

pytestmark = pytest.mark.integration


def ok(run):
    assert not run.failed, run.result.get("msg") or run.stdout[-3000:]
    return run.result


def test_volume_and_snapshot_modules(tmp_path):
    where = dict(volumes_dir=str(tmp_path / "volumes"))
    path = tmp_path / "volumes" / "vol-0000000a.img"
    dry = ok(run_module("euca.cloud.sc_volume", dict(where, name="vol-0000000a", size_gb=1), check=True))
    assert dry["changed"] and not path.exists()
    made = ok(run_module("euca.cloud.sc_volume", dict(where, name="vol-0000000a", size_gb=1), diff=True))
    assert made["changed"] and made["diff"]["before"] == {} and path.stat().st_size == 1 << 30
    assert not ok(run_module("euca.cloud.sc_volume", dict(where, name="vol-0000000a", size_gb=1)))["changed"]
    with open(path, "r+b") as handle:
        handle.write(b"data")
    snap = ok(run_module("euca.cloud.sc_snapshot", dict(where, name="snap-0000000a", volume="vol-0000000a")))
    assert snap["changed"] and os.path.exists(snap["snapshot"]["path"])
    refused = run_module("euca.cloud.sc_volume", dict(where, name="vol-0000000a", state="absent"))
    assert refused.failed and "holds data; pass force=true" in refused.result["msg"] and path.exists()
    bad = run_module("euca.cloud.sc_volume", dict(where, name="vol-0000000b", size_gb=0))
    assert bad.failed and "size_gb must be at least 1" in bad.result["msg"]
    gone = ok(run_module("euca.cloud.sc_volume", dict(where, name="vol-0000000a", state="absent", force=True)))
    assert gone["changed"] and not path.exists()
