"""RegisterImage (of an object already in Walrus) and GetConsoleOutput, called as the server calls them.

RegisterImage reads the object from a real HTTP server on the loopback that serves a store written by
the project's own Walrus code (walrus/store.py, what euca.cloud.walrus_image writes), as nginx serves
it on the walrus host; GetConsoleOutput answers from the ledger's captures and queues console jobs.
Answers are parsed back with botocore's EC2 parser (harness/ec2_calls.py)."""

import base64
import datetime
import functools
import http.server
import socket
import threading

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.api import (actions_console, actions_groups,  # noqa: F401
                                                                     actions_images, actions_instances, query)
from ansible_collections.euca.cloud.plugins.module_utils.api.base import Context
from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger import console, db, history, images, instances, jobs, schema
from ansible_collections.euca.cloud.plugins.module_utils.walrus import store
from harness.ec2_calls import CHECKSUM, call, finish_all, launch, make_ledger, queued, refused

PORTS = range(18870, 18880)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


def _serve(directory):
    """An HTTP server of ``directory`` on the first free port of PORTS, in a thread: (server, thread)."""
    handler = functools.partial(_Quiet, directory=str(directory))
    for port in PORTS:
        try:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError:
            continue
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        return server, thread
    pytest.skip("no free port in 18870-18879")
    return None, None


@pytest.fixture
def walrus(tmp_path):
    """A Walrus store dir served over HTTP: {dir, url, put(key, data)}."""
    store_dir = tmp_path / "walrus"
    store_dir.mkdir()
    server, thread = _serve(store_dir)
    url = "http://127.0.0.1:%d" % server.server_address[1]

    def put(key, data):
        src = tmp_path / "src.bin"
        src.write_bytes(data)
        return store.store(str(store_dir), "images", key, str(src), base_url=url)

    yield {"dir": store_dir, "url": url, "put": put}
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture
def ledger(tmp_path):
    handle = make_ledger(tmp_path)
    yield handle
    handle.close()


def actx(ledger, account="a", walrus_url="", timeout=2.0):
    """A request context as the server makes it, with the configuration's walrus_url."""
    return Context(ledger, account, account == "admin", query.new_request_id(),
                   {"walrus_url": walrus_url, "walrus_timeout": timeout})


def image_row(ledger, image_id):
    with ledger.read() as txn:
        return txn.row("SELECT * FROM images WHERE id = ?", image_id)


# --- RegisterImage -----------------------------------------------------------------------------------

def test_register_image_records_what_walrus_holds_through_the_ledgers_image_function(ledger, walrus, monkeypatch):
    data = b"\x00bootsector" + b"x" * 5000
    stored = walrus["put"]("debian-12/disk.raw", data)
    seen = []
    real = images.ensure_image

    def spy(txn, name, **kwargs):
        seen.append((name, kwargs))
        return real(txn, name, **kwargs)

    monkeypatch.setattr(images, "ensure_image", spy)
    a = actx(ledger, walrus_url=walrus["url"])
    made = call(a, "RegisterImage", Name="debian-12", ImageLocation="debian-12/disk.raw", Architecture="x86_64",
                Description="Debian 12", RootDeviceName="/dev/vda")
    image_id = made["ImageId"]
    assert image_id.startswith("emi-")
    # one implementation: the API went through ledger/images.py ensure_image, as the image module does
    assert [(name, kw["account"], kw["checksum"], kw["size_bytes"]) for name, kw in seen] == [
        ("debian-12", "a", stored["checksum"], len(data))]
    row = image_row(ledger, image_id)
    assert row["account"] == "a" and row["kind"] == "machine" and row["format"] == "raw"
    assert row["checksum"] == stored["checksum"] and row["size_bytes"] == len(data) == stored["size_bytes"]
    # the location is the URL register-image.yml records (what the nodes fetch)
    assert row["location"] == stored["location"] == walrus["url"] + "/images/debian-12/disk.raw"
    described = call(a, "DescribeImages", ImageId_1=image_id)["Images"]
    assert [(i["ImageId"], i["Name"], i["ImageLocation"], i["Public"]) for i in described] == [
        (image_id, "debian-12", stored["location"], False)]
    # b does not see a's image; the admin does
    assert image_id not in [i["ImageId"] for i in call(actx(ledger, "b"), "DescribeImages")["Images"]]
    assert image_id in [i["ImageId"] for i in call(actx(ledger, "admin"), "DescribeImages")["Images"]]
    # nothing to converge on hosts
    assert queued(ledger) == []


def test_register_image_takes_the_key_as_bucket_key_or_url_and_sees_qcow2(ledger, walrus):
    stored = walrus["put"]("cirros/disk.qcow2", b"QFI\xfb" + b"\x00" * 600)
    a = actx(ledger, walrus_url=walrus["url"])
    first = call(a, "RegisterImage", Name="cirros", ImageLocation="images/cirros/disk.qcow2")["ImageId"]
    assert image_row(ledger, first)["format"] == "qcow2"
    second = call(a, "RegisterImage", Name="cirros-again", ImageLocation=stored["location"])["ImageId"]
    assert image_row(ledger, second)["location"] == stored["location"] and second != first


def test_register_image_refuses_a_taken_name_missing_objects_and_bad_parameters(ledger, walrus):
    walrus["put"]("debian-12/disk.raw", b"abc" * 100)
    a, b = actx(ledger, walrus_url=walrus["url"]), actx(ledger, "b", walrus_url=walrus["url"])
    image_id = call(a, "RegisterImage", Name="debian-12", ImageLocation="debian-12/disk.raw")["ImageId"]
    # the same name again, by its owner (same bytes or not), by another account (names are cloud-wide), or
    # the admin's public image's name
    err = refused(ledger, "InvalidAMIName.Duplicate", a, "RegisterImage", Name="debian-12",
                  ImageLocation="debian-12/disk.raw")
    assert image_id in err.message
    err = refused(ledger, "InvalidAMIName.Duplicate", b, "RegisterImage", Name="debian-12",
                  ImageLocation="debian-12/disk.raw")
    assert image_id not in err.message
    refused(ledger, "InvalidAMIName.Duplicate", a, "RegisterImage", Name="tiny", ImageLocation="debian-12/disk.raw")

    err = refused(ledger, "InvalidManifest", a, "RegisterImage", Name="nope", ImageLocation="nope/disk.raw")
    assert "nope/disk.raw" in err.message
    # an object without its checksum sidecar, and one whose sidecar describes other bytes
    (walrus["dir"] / "images" / "loose").mkdir()
    (walrus["dir"] / "images" / "loose" / "disk.raw").write_bytes(b"loose")
    assert "checksum" in refused(ledger, "InvalidManifest", a, "RegisterImage", Name="loose",
                                 ImageLocation="loose/disk.raw").message
    (walrus["dir"] / "images" / "debian-12" / "disk.raw").write_bytes(b"grown" * 1000)
    assert "store it again" in refused(ledger, "InvalidManifest", a, "RegisterImage", Name="grown",
                                       ImageLocation="debian-12/disk.raw").message

    refused(ledger, "MissingParameter", a, "RegisterImage", ImageLocation="debian-12/disk.raw")
    refused(ledger, "MissingParameter", a, "RegisterImage", Name="x")
    refused(ledger, "InvalidParameterValue", a, "RegisterImage", Name="x", ImageLocation="../etc/passwd")
    refused(ledger, "InvalidParameterValue", a, "RegisterImage", Name="bad name!", ImageLocation="debian-12/disk.raw")
    refused(ledger, "InvalidParameterValue", a, "RegisterImage", Name="x", ImageLocation="debian-12/disk.raw",
            Architecture="arm64")


def test_register_image_checks_kernel_and_ramdisk_ids(ledger, walrus):
    walrus["put"]("k/disk.raw", b"kernel-booted" * 10)
    with ledger.write() as txn:
        kernel = images.ensure_image(txn, "vmlinuz", kind="kernel", checksum=CHECKSUM, size_bytes=10)["image"]["id"]
        ramdisk = images.ensure_image(txn, "initrd", kind="ramdisk", checksum=CHECKSUM, size_bytes=10)["image"]["id"]
        theirs = images.ensure_image(txn, "b-kernel", kind="kernel", checksum=CHECKSUM, size_bytes=10,
                                     account="b")["image"]["id"]
    a = actx(ledger, walrus_url=walrus["url"])
    refused(ledger, "InvalidAMIID.NotFound", a, "RegisterImage", Name="k", ImageLocation="k/disk.raw",
            KernelId="eki-00000bad")
    # another account's kernel is not there for a
    refused(ledger, "InvalidAMIID.NotFound", a, "RegisterImage", Name="k", ImageLocation="k/disk.raw", KernelId=theirs)
    refused(ledger, "InvalidAMIID.NotFound", a, "RegisterImage", Name="k", ImageLocation="k/disk.raw",
            KernelId=kernel, RamdiskId="eri-00000bad")
    refused(ledger, "InvalidAMIID.Malformed", a, "RegisterImage", Name="k", ImageLocation="k/disk.raw",
            KernelId="vmlinuz")
    refused(ledger, "InvalidParameterValue", a, "RegisterImage", Name="k", ImageLocation="k/disk.raw",
            KernelId=kernel, RamdiskId=kernel)
    made = call(a, "RegisterImage", Name="k", ImageLocation="k/disk.raw", KernelId=kernel, RamdiskId=ramdisk)
    shown = call(a, "DescribeImages", ImageId_1=made["ImageId"])["Images"][0]
    assert (shown["KernelId"], shown["RamdiskId"]) == (kernel, ramdisk)


def test_register_image_without_walrus_is_unavailable(ledger, walrus):
    walrus["put"]("debian-12/disk.raw", b"abc")
    # a port nothing listens on
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    dead = "http://127.0.0.1:%d" % probe.getsockname()[1]
    probe.close()
    for context in (actx(ledger, walrus_url=dead), actx(ledger)):
        err = refused(ledger, "Unavailable", context, "RegisterImage", Name="debian-12",
                      ImageLocation="debian-12/disk.raw")
        assert err.status == 503
    # and a Walrus that accepts but never answers: the timeout, not a hung request
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        started = datetime.datetime.now()
        err = refused(ledger, "Unavailable", actx(ledger, walrus_url="http://127.0.0.1:%d" % silent.getsockname()[1],
                                                  timeout=0.5),
                      "RegisterImage", Name="debian-12", ImageLocation="debian-12/disk.raw")
        assert err.status == 503 and (datetime.datetime.now() - started).total_seconds() < 10
    finally:
        silent.close()


# --- GetConsoleOutput --------------------------------------------------------------------------------

def _instance(ledger, account="a", cluster="cluster_a"):
    call(actx(ledger, account), "CreateSecurityGroup", GroupName="web", GroupDescription="web")
    finish_all(ledger)
    return launch(ledger, account, "web", cluster=cluster)["id"]


def test_console_output_is_empty_first_queues_one_job_and_then_answers_the_capture(ledger):
    instance_id = _instance(ledger)
    a = actx(ledger)
    before = datetime.datetime.now(datetime.timezone.utc)
    first = call(a, "GetConsoleOutput", InstanceId=instance_id)
    assert first["InstanceId"] == instance_id and not first.get("Output")
    assert before - datetime.timedelta(seconds=1) <= first["Timestamp"] <= datetime.datetime.now(datetime.timezone.utc)
    call(a, "GetConsoleOutput", InstanceId=instance_id, Latest="true")
    # two calls, one pending capture of that instance, on its cluster, as its account
    assert queued(ledger) == [("console", "cluster_a", '["%s"]' % instance_id, "a")]
    # the capture in progress is no transitional state of the instance
    state = call(a, "DescribeInstances", InstanceId_1=instance_id)["Reservations"][0]["Instances"][0]["State"]
    assert state["Name"] == "pending"

    text = b"Linux version 6.1.0\r\nEUCA-READY instance-id=%s\r\n" % instance_id.encode()
    with ledger.write() as txn:
        done = console.store(txn, instance_id, base64.b64encode(text).decode(), written_at="2026-12-01T20:21:56.123Z")
        assert done["changed"] and done["console"]["account"] == "a"
        assert not console.store(txn, instance_id, base64.b64encode(text).decode(),
                                 written_at="2026-12-01T20:21:56.123Z")["changed"]
    finish_all(ledger)
    got = call(a, "GetConsoleOutput", InstanceId=instance_id)
    # boto3 gives EC2's base64 as it is (awscli decodes it)
    assert base64.b64decode(got["Output"]) == text
    assert got["Timestamp"] == datetime.datetime(2026, 12, 1, 20, 21, 56, 123000, tzinfo=datetime.timezone.utc)
    # the earlier job is done: this call queued the next capture
    assert queued(ledger) == [("console", "cluster_a", '["%s"]' % instance_id, "a")]

    # a failed capture is no failure of the instance
    with ledger.write() as txn:
        ids = [r["id"] for r in txn.rows("SELECT id FROM jobs WHERE state = 'queued'")]
        txn.exec("UPDATE jobs SET state = 'running' WHERE state = 'queued'")
        jobs.finish(txn, ids, False, "the node did not answer")
        assert jobs.failed(txn, [instance_id]) == {} and jobs.active(txn, [instance_id]) == {}


def test_console_output_is_the_owners_and_a_terminated_instance_answers_its_last_capture(ledger):
    instance_id = _instance(ledger)
    a, b, admin = actx(ledger), actx(ledger, "b"), actx(ledger, "admin")
    refused(ledger, "InvalidInstanceID.NotFound", b, "GetConsoleOutput", InstanceId=instance_id)
    refused(ledger, "InvalidInstanceID.NotFound", a, "GetConsoleOutput", InstanceId="i-0000beef")
    refused(ledger, "InvalidInstanceID.Malformed", a, "GetConsoleOutput", InstanceId="i-xyz")
    refused(ledger, "InvalidInstanceID.Malformed", a, "GetConsoleOutput", InstanceId="vol-00000001")
    refused(ledger, "MissingParameter", a, "GetConsoleOutput")
    assert call(admin, "GetConsoleOutput", InstanceId=instance_id)["InstanceId"] == instance_id
    finish_all(ledger)

    with ledger.write() as txn:
        console.store(txn, instance_id, base64.b64encode(b"last words\n").decode())
        instances.terminate(txn, txn.row("SELECT * FROM instances WHERE id = ?", instance_id))
    got = call(a, "GetConsoleOutput", InstanceId=instance_id)
    # never written on the node: the capture's time
    assert base64.b64decode(got["Output"]) == b"last words\n" and got["Timestamp"].year >= 2025
    # nothing left to read on a node: no job
    assert queued(ledger) == []
    refused(ledger, "InvalidInstanceID.NotFound", b, "GetConsoleOutput", InstanceId=instance_id)


def test_console_store_checks_what_it_is_given(ledger):
    instance_id = _instance(ledger)
    with ledger.write() as txn:
        with pytest.raises(NotFound):
            console.store(txn, "i-0000beef", "")
        for bad in (("not base64!", None), ("", "yesterday"), (base64.b64encode(b"x" * 65537).decode(), None)):
            with pytest.raises(InvalidInput):
                console.store(txn, instance_id, bad[0], written_at=bad[1])
        assert console.store(txn, instance_id, "")["console"]["output"] == ""


def terminated(ledger, instance_id):
    """What terminate-instances.yml records once the node removed the instance."""
    with ledger.write() as txn:
        instances.terminate(txn, instances.get_instance(txn, instance_id))


def test_a_terminated_instance_s_capture_and_tags_go_with_its_row(ledger):
    gone = _instance(ledger)
    kept = launch(ledger, "a", "web", name="w2")["id"]
    a = actx(ledger)
    call(a, "CreateTags", ResourceId_1=gone, ResourceId_2=kept, Tag_1_Key="role", Tag_1_Value="web")
    with ledger.write() as txn:
        for instance_id in (gone, kept):
            console.store(txn, instance_id, base64.b64encode(b"last words\n").decode())
    call(a, "TerminateInstances", InstanceId_1=gone)
    finish_all(ledger)
    terminated(ledger, gone)

    def left(txn, instance_id):
        return (txn.value("SELECT count(*) FROM instances WHERE id = ?", instance_id),
                txn.value("SELECT count(*) FROM console_output WHERE instance_id = ?", instance_id),
                txn.value("SELECT count(*) FROM tags WHERE resource_id = ?", instance_id))

    with ledger.read() as txn:
        assert left(txn, gone) == (1, 1, 1), "a terminated instance is history until its group goes"
    # its group cannot go while another instance lives in it; terminate that one too, then delete the group
    call(a, "TerminateInstances", InstanceId_1=kept)
    finish_all(ledger)
    terminated(ledger, kept)
    call(a, "DeleteSecurityGroup", GroupName="web")
    with ledger.read() as txn:
        assert left(txn, gone) == (0, 0, 0) and left(txn, kept) == (0, 0, 0)
        # nothing anywhere names an instance the ledger no longer has
        assert txn.value("SELECT count(*) FROM console_output WHERE instance_id NOT IN (SELECT id FROM instances)") == 0
        assert txn.value("SELECT count(*) FROM tags WHERE resource_type = 'instance' "
                         "AND resource_id NOT IN (SELECT id FROM instances)") == 0


def test_deregistering_an_image_takes_its_terminated_instances_captures_and_tags(ledger):
    gone = _instance(ledger)
    call(actx(ledger), "CreateTags", ResourceId_1=gone, Tag_1_Key="role", Tag_1_Value="web")
    with ledger.write() as txn:
        console.store(txn, gone, base64.b64encode(b"last words\n").decode())
    terminated(ledger, gone)
    with ledger.write() as txn:
        assert images.ensure_image(txn, "tiny", state="absent")["changed"]
    with ledger.read() as txn:
        for table, column in (("instances", "id"), ("console_output", "instance_id"), ("tags", "resource_id")):
            assert txn.value("SELECT count(*) FROM %s WHERE %s = ?" % (table, column), gone) == 0, table


def test_terminated_instances_are_deleted_only_by_an_owner_column(ledger):
    with ledger.write() as txn:
        with pytest.raises(ValueError):
            history.delete_terminated_instances(txn, "1 = 1 OR id", "x")


def test_console_jobs_run_after_the_instance_jobs_merged_and_bring_no_reconcile():
    def job(ident, kind, resources, params=None):
        return {"id": ident, "kind": kind, "cluster": "c", "account": "a", "resources": resources,
                "params": params or {}, "created_at": "", "run": "r"}
    planned = jobs.plan([job(1, "console", ["i-00000001"]), job(2, "reboot", ["i-00000002"]),
                         job(3, "console", ["i-00000002", "i-00000001"]), job(4, "terminate", ["i-00000003"])])
    assert planned == [
        {"playbook": "terminate-instances.yml", "extra_vars": {"instance_ids": ["i-00000003"],
                                                               "euca_terminate_reason": jobs.TERMINATE_REASON},
         "jobs": [4]},
        {"playbook": "reboot-instances.yml", "extra_vars": {"instance_ids": ["i-00000002"]}, "jobs": [2]},
        {"playbook": "get-console-output.yml",
         "extra_vars": {"instance_ids": ["i-00000001", "i-00000002"], "console_store": True}, "jobs": [1, 3]},
    ]
    with_converge = jobs.plan([job(1, "converge", []), job(2, "console", ["i-00000001"])])
    assert [p["playbook"] for p in with_converge] == ["get-console-output.yml", "reconcile.yml"]


# --- schema 5 ------------------------------------------------------------------------------------------

def test_a_version_4_ledger_is_migrated_to_5_with_the_console_table(tmp_path):
    path = str(tmp_path / "old.sqlite")
    with db.Ledger(path) as handle:
        with handle.write() as txn:
            txn.exec("DROP INDEX console_output_account")
            txn.exec("DROP TABLE console_output")
            txn.exec("DROP INDEX instances_launch_order")
            txn.exec("DROP INDEX instances_account_order")
            txn.exec("DELETE FROM schema_migrations WHERE version > 4")
        with handle.read() as txn:
            assert schema.current_version(txn) == 4
    with db.Ledger(path) as handle:
        with handle.read() as txn:
            assert schema.current_version(txn) == schema.LATEST == 6
            assert txn.rows("SELECT * FROM console_output") == []
            assert txn.value("SELECT name FROM schema_migrations WHERE version = 5").startswith("console output")
            assert txn.value("SELECT name FROM schema_migrations WHERE version = 6").startswith("instances in launch order")
