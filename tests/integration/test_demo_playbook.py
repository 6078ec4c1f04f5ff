"""The README's demo playbook: runs on the sandbox inventory, and a second run changes nothing."""

from pathlib import Path

from harness.runner import REPO_ROOT, run_playbook

from ansible_collections.euca.cloud.plugins.module_utils.ledger import db, slices

DEMO = REPO_ROOT / "playbooks" / "demo.yml"
SANDBOX = str(REPO_ROOT / "inventories" / "sandbox" / "hosts.yml")


def test_demo_walkthrough_is_idempotent(tmp_path):
    ledger = str(tmp_path / "ledger.sqlite")
    first = run_playbook(DEMO, extravars={"euca_ledger": ledger}, inventory=SANDBOX)
    assert first.rc == 0, first.stdout[-3000:]
    assert first.stats["changed"].get("localhost", 0) >= 10
    # the second attachment was refused, with the holder named
    refusal = first.task_result("Report the refusal")["msg"]
    assert "is attached to i-" in refusal and "detach it first" in refusal

    with db.Ledger(ledger) as handle:
        with handle.read() as txn:
            before = slices.read_slice(txn, "cloud")
    assert len(before["instances"]) == 3 and all(i["state"] == "running" for i in before["instances"])
    assert [v["state"] for v in before["volumes"]] == ["in-use"]
    assert before["elastic_ips"][0]["public_ip"] == "203.0.113.32" and before["elastic_ips"][0]["instance"]

    second = run_playbook(DEMO, extravars={"euca_ledger": ledger}, inventory=SANDBOX)
    assert second.rc == 0, second.stdout[-3000:]
    assert second.stats["changed"].get("localhost", 0) == 0
    with db.Ledger(ledger) as handle:
        with handle.read() as txn:
            assert slices.read_slice(txn, "cloud") == before
    assert Path(ledger).exists()
