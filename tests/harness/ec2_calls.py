"""EC2 actions called as the server calls them, for unit tests: a real SQLite ledger with two
clusters, two accounts and an image; a request's Params; every answer rendered to XML and parsed
back with botocore's own EC2 parser against the service model (what boto3 reads, by element name)."""

import botocore.parsers
import botocore.session
import pytest

from ansible_collections.euca.cloud.plugins.module_utils.api import query
from ansible_collections.euca.cloud.plugins.module_utils.api.base import ACTIONS, Context
from ansible_collections.euca.cloud.plugins.module_utils.api.errors import ApiError
from ansible_collections.euca.cloud.plugins.module_utils.ledger import accounts, cloud, db, images, instances, jobs

CHECKSUM = "cd" * 32
_MODEL = botocore.session.get_session().get_service_model("ec2")
_PARSER = botocore.parsers.create_parser("ec2")


def make_ledger(tmp_path):
    """A ledger with clusters cluster_a (node nc1) and cluster_b (nc2), image tiny, accounts a and b."""
    handle = db.Ledger(str(tmp_path / "ledger.sqlite"), timeout=10)
    with handle.write() as txn:
        cloud.ensure_settings(txn, {"public_ips": ["203.0.113.20-203.0.113.23"], "private_network": "10.30.0.0/16",
                                    "addresses_per_group": 16})
        for cluster, node in (("cluster_a", "nc1"), ("cluster_b", "nc2")):
            cloud.ensure_cluster(txn, cluster)
            cloud.ensure_node(txn, node, cluster, 8, 8192, 100)
        images.ensure_image(txn, "tiny", checksum=CHECKSUM, size_bytes=1024)
        for name in ("a", "b"):
            accounts.ensure_account(txn, name, quotas={"max_addresses": 2, "max_volume_gb": 20})
    return handle


def web_ledger(tmp_path):
    """make_ledger's, with a group ``web`` in each of accounts a and b."""
    from ansible_collections.euca.cloud.plugins.module_utils.ledger import groups

    handle = make_ledger(tmp_path)
    with handle.write() as txn:
        groups.ensure_group(txn, "web", account="a")
        groups.ensure_group(txn, "web", account="b")
    return handle


def ctx(ledger, account="a"):
    return Context(ledger, account, account == accounts.ADMIN, query.new_request_id())


def call(context, name, **flat):
    """Run action ``name`` with flat EC2 parameters (``IpPermissions.1.IpProtocol="tcp"`` spelled
    ``IpPermissions_1_IpProtocol``); returns what boto3 would read from its XML answer."""
    params = query.Params(dict((k.replace("_", "."), str(v)) for k, v in flat.items()))
    # each request has its own id, as the server gives it
    context = Context(context.ledger, context.account, context.admin, query.new_request_id(), context.settings)
    body = ACTIONS[name](context, params)
    xml = query.render_response(name, context.request_id, body)
    op = _MODEL.operation_model(name)
    if op.output_shape is None:
        assert b"<return>true</return>" in xml
        return {}
    parsed = _PARSER.parse({"body": xml, "headers": {}, "status_code": 200}, op.output_shape)
    parsed.pop("ResponseMetadata", None)
    return parsed


def everything(ledger):
    with ledger.read() as txn:
        out = {"generation": txn.current_generation()}
        for table in accounts.OWNED + ("attachments", "group_rules", "tags", "jobs"):
            out[table] = sorted(tuple(sorted(r.items())) for r in txn.rows("SELECT * FROM %s" % table))
        return out


def refused(ledger, code, context, name, **flat):
    before = everything(ledger)
    with pytest.raises(ApiError) as caught:
        call(context, name, **flat)
    assert caught.value.code == code, caught.value.message
    assert everything(ledger) == before
    return caught.value


def queued(ledger):
    with ledger.read() as txn:
        return [(r["kind"], r["cluster"], r["resources"], r["account"]) for r in
                txn.rows("SELECT kind, cluster, resources, account FROM jobs WHERE state = 'queued' ORDER BY id")]


def finish_all(ledger, ok=True, message=None):
    with ledger.write() as txn:
        ids = [r["id"] for r in txn.rows("SELECT id FROM jobs WHERE state = 'queued'")]
        txn.exec("UPDATE jobs SET state = 'running' WHERE state = 'queued'")
        jobs.finish(txn, ids, ok, message)


def launch(ledger, account, group, name="w", cluster=None):
    with ledger.write() as txn:
        return instances.ensure_instances(txn, name=name, group=group, image="tiny", count=1, account=account,
                                          cluster=cluster)["instances"][0]
