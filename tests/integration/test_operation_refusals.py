"""Bad extra vars to every operation playbook fail in its first play, on the CLC, with a message that
names the problem, before any task changed anything: the ledger is row for row what it was.

The playbooks run on the sandbox inventory against a seeded SQLite ledger in a temporary directory;
a refusal never gets as far as a CC, SC or NC host, so no namespace or daemon is needed.
"""

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.ledger import addresses, cloud, db, groups, images, instances, volumes
from harness.ledger_dump import dump
from harness.runner import REPO_ROOT, run_playbook

pytestmark = [pytest.mark.integration]

INVENTORY = str(REPO_ROOT / "inventories" / "sandbox")

# playbook, extra vars, what the failure message must say
CASES = [
    ("run-instances", dict(instance_name="new", image="no-such-image", group="web"), "unknown image"),
    ("run-instances", dict(instance_name="new", image="tiny", group="no-such-group"), "unknown security group"),
    ("run-instances", dict(instance_name="new", image="tiny", group="web", count=0), "count=N (at least 1)"),
    ("run-instances", dict(image="tiny", group="web"), "give -e instance_name=<label>"),
    ("terminate-instances", dict(instance_ids="i-0badbad0"), "no live instance i-0badbad0; nothing was changed"),
    ("terminate-instances", dict(), "give -e instance_ids="),
    ("stop-instances", dict(instance_ids="i-0badbad0"), "no live instance i-0badbad0; nothing was changed"),
    ("start-instances", dict(instance_name="nobody"), "no live instance labelled nobody; nothing was changed"),
    ("reboot-instances", dict(), "give -e instance_ids="),
    ("allocate-address", dict(public_ip="198.51.100.7"), "198.51.100.7"),
    ("associate-address", dict(address_name="spare"), "-e instance=<i-id>"),
    ("associate-address", dict(address_name="spare", instance="i-0badbad0"), "i-0badbad0"),
    ("disassociate-address", dict(), "give the address"),
    ("create-volume", dict(volume_name="v", cluster="cluster_a", size_gb=0), "size"),
    ("create-volume", dict(volume_name="v", cluster="no-such-cluster", size_gb=1), "no-such-cluster"),
    ("attach-volume", dict(volume="no-such-volume", instance="i-0badbad0"), "no-such-volume"),
    ("detach-volume", dict(volume="data"), "is not attached; nothing was changed"),
    ("delete-volume", dict(volume="no-such-volume"), "no-such-volume"),
    ("create-snapshot", dict(snapshot_name="s", volume="no-such-volume"), "no-such-volume"),
    ("create-group", dict(), "give -e group=<name>"),
    ("authorize", dict(group="no-such-group", ports=80, cidr="0.0.0.0/0"), "unknown security group no-such-group"),
    ("authorize", dict(group="web", ports=80), "one of -e cidr=<cidr> or -e source_group=<group>"),
    ("authorize", dict(group="web", ports=70000, cidr="0.0.0.0/0"), "group web tcp rule from_port 70000 is outside 1-65535"),
    ("revoke", dict(group="web", ports="http", cidr="0.0.0.0/0"), "tcp ports are a port or a range, e.g. 22 or 8000-8080"),
    ("delete-group", dict(group="web"), "security group web still has instances"),
    ("register-image", dict(image_name="x"), "give image_name and image_src"),
    ("add-node", dict(node="no-such-host"), "no-such-host is not in the nc group of the inventory; nothing was changed"),
    ("evict-node", dict(node="no-such-node"), "unknown node no-such-node; nothing was changed"),
    ("evict-node", dict(node="localhost"), "pass -e terminate_instances=true"),
]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    path = tmp_path_factory.mktemp("refusals") / "ledger.sqlite"
    with db.Ledger(str(path)) as handle:
        with handle.write() as txn:
            cloud.ensure_settings(txn, {"network_mode": "vxlan", "private_network": "10.128.0.0/16",
                                        "public_ips": ["203.0.113.32/28"], "segment_range": [100, 199]})
            cloud.ensure_cluster(txn, "cluster_a")
            cloud.ensure_node(txn, "localhost", "cluster_a", 4, 2048, 20)
            images.ensure_image(txn, "tiny", checksum="ab" * 32, size_bytes=1024)
            groups.ensure_group(txn, "web", rules=[{"protocol": "tcp", "from_port": 80, "cidr": "0.0.0.0/0"}])
            web = instances.ensure_instances(txn, name="web", group="web", image="tiny", count=1)["instances"]
            instances.ensure_instances(txn, state="running", instance_ids=[web[0]["id"]])
            addresses.ensure_address(txn, name="spare")
            volumes.ensure_volume(txn, name="data", cluster="cluster_a", size_gb=1)
    return path


@pytest.mark.parametrize("playbook, extravars, message", CASES,
                         ids=["%s-%d" % (c[0], i) for i, c in enumerate(CASES)])
def test_bad_extra_vars_are_refused_before_any_change(ledger, playbook, extravars, message):
    before = dump(ledger)
    # Should a refusal ever slip through, the CC/NC plays would find no such namespace and touch nothing.
    run = run_playbook(REPO_ROOT / "playbooks" / ("%s.yml" % playbook), inventory=INVENTORY,
                       extravars=dict(extravars, euca_ledger=str(ledger), euca_namespace="eut-no-such-namespace",
                                      euca_dhcp_state_dir=str(ledger.parent / "dhcp")))
    assert run.rc != 0, run.stdout[-3000:]
    failed = [ev for ev in run.events if ev.get("event") == "runner_on_failed"]
    assert failed, run.stdout[-3000:]
    res = failed[0]["event_data"]["res"]
    assert message in str(res.get("msg", res)), (message, res)
    # it failed in the first play, and nothing before it changed anything
    plays = [ev["event_data"]["play"] for ev in run.events if ev.get("event") == "playbook_on_play_start"]
    assert failed[0]["event_data"]["play"] == plays[0], plays
    changed = [ev["event_data"]["task"] for ev in run.events
               if ev.get("event") == "runner_on_ok" and ev["event_data"].get("res", {}).get("changed")]
    assert changed == []
    assert dump(ledger) == before
