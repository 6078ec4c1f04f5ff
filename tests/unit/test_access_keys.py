"""ledger/access_keys.py on a real SQLite ledger: keys are issued in AWS's shape, looked up for
signature checks only while Active, listed without secrets, and each account sees only its own
(the admin account sees all)."""

import re

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.ledger import access_keys, accounts, db


@pytest.fixture
def ledger(tmp_path):
    with db.Ledger(str(tmp_path / "ledger.sqlite")) as handle:
        with handle.write() as txn:
            accounts.ensure_account(txn, "alice")
            accounts.ensure_account(txn, "bob")
        yield handle


def issue(ledger, account, **kwargs):
    with ledger.write() as txn:
        return access_keys.create(txn, account, **kwargs)


def test_create_issues_an_aws_shaped_key_and_lookup_finds_it(ledger):
    key = issue(ledger, "alice")
    assert re.fullmatch(r"AKIA[A-Z2-7]{16}", key["id"])
    assert re.fullmatch(r"[A-Za-z0-9+/]{40}", key["secret"])
    assert key["account"] == "alice" and key["status"] == "Active" and key["created_at"].endswith("Z")
    with ledger.read() as txn:
        assert access_keys.lookup(txn, key["id"]) == ("alice", key["secret"])
        assert access_keys.lookup(txn, "AKIA" + "A" * 16) is None
        assert access_keys.lookup(txn, "not a key") is None
    # two keys never share an id or a secret
    other = issue(ledger, "alice")
    assert other["id"] != key["id"] and other["secret"] != key["secret"]


def test_a_key_carried_over_keeps_its_id_and_secret(ledger):
    key = issue(ledger, "bob", access_key_id="AKIAIOSFODNN7EXAMPLE", secret="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    with ledger.read() as txn:
        assert access_keys.lookup(txn, "AKIAIOSFODNN7EXAMPLE") == ("bob", key["secret"])
    with pytest.raises(Conflict, match="EntityAlreadyExists"):
        issue(ledger, "alice", access_key_id="AKIAIOSFODNN7EXAMPLE", secret="x" * 40)
    with pytest.raises(InvalidInput, match="neither id nor secret"):
        issue(ledger, "bob", access_key_id="AKIAIOSFODNN7EXAMPL2")
    with pytest.raises(InvalidInput, match="not valid"):
        issue(ledger, "bob", access_key_id="akia-lower", secret="x" * 40)
    with pytest.raises(InvalidInput, match="secret"):
        issue(ledger, "bob", access_key_id="AKIAIOSFODNN7EXAMPL3", secret="has spaces in it, no")


def test_an_unknown_account_gets_no_key(ledger):
    with pytest.raises(NotFound, match="unknown account 'carol'"):
        issue(ledger, "carol")
    with ledger.read() as txn:
        assert access_keys.list_keys(txn, "admin") == []


def test_list_never_shows_secrets_and_each_account_sees_its_own(ledger):
    a1, a2, b1 = issue(ledger, "alice"), issue(ledger, "alice"), issue(ledger, "bob")
    with ledger.read() as txn:
        alice = access_keys.list_keys(txn, "alice")
        bob = access_keys.list_keys(txn, "bob")
        admin = access_keys.list_keys(txn, "admin")
    assert [k["id"] for k in alice] == [a1["id"], a2["id"]]
    assert [k["id"] for k in bob] == [b1["id"]]
    assert sorted(k["id"] for k in admin) == sorted([a1["id"], a2["id"], b1["id"]])
    for listed in alice + bob + admin:
        assert set(listed) == {"id", "account", "status", "created_at"}
        assert a1["secret"] not in repr(listed) and b1["secret"] not in repr(listed)


def test_inactive_keys_sign_nothing_until_made_active_again(ledger):
    key = issue(ledger, "alice")
    with ledger.write() as txn:
        outcome = access_keys.set_status(txn, "alice", key["id"], "Inactive")
    assert outcome["changed"] and outcome["before"]["status"] == "Active" and outcome["after"]["status"] == "Inactive"
    assert "secret" not in outcome["after"]
    with ledger.read() as txn:
        assert access_keys.lookup(txn, key["id"]) is None
        assert access_keys.list_keys(txn, "alice")[0]["status"] == "Inactive"
    with ledger.write() as txn:
        assert not access_keys.set_status(txn, "alice", key["id"], "Inactive")["changed"]
        assert access_keys.set_status(txn, "alice", key["id"], "Active")["changed"]
        with pytest.raises(InvalidInput, match="Active or Inactive"):
            access_keys.set_status(txn, "alice", key["id"], "active")
    with ledger.read() as txn:
        assert access_keys.lookup(txn, key["id"]) == ("alice", key["secret"])


def test_another_accounts_key_is_not_found_and_stays_as_it_was(ledger):
    key = issue(ledger, "alice")
    with ledger.write() as txn:
        with pytest.raises(NotFound, match="NoSuchEntity: the access key %s cannot be found" % key["id"]) as theirs:
            access_keys.set_status(txn, "bob", key["id"], "Inactive")
        with pytest.raises(NotFound) as unknown:
            access_keys.set_status(txn, "bob", "AKIA" + "B" * 16, "Inactive")
        # the same words as for an unknown id: nothing tells bob the key exists
        assert str(theirs.value).replace(key["id"], "ID") == str(unknown.value).replace("AKIA" + "B" * 16, "ID")
        assert not access_keys.delete(txn, "bob", key["id"])["changed"]
    with ledger.read() as txn:
        assert access_keys.lookup(txn, key["id"]) == ("alice", key["secret"])
    # the admin account manages every account's keys
    with ledger.write() as txn:
        assert access_keys.set_status(txn, "admin", key["id"], "Inactive")["changed"]
        assert access_keys.delete(txn, "admin", key["id"])["changed"]
    with ledger.read() as txn:
        assert access_keys.list_keys(txn, "alice") == []


def test_delete_refuses_the_key_from_then_on(ledger):
    key, kept = issue(ledger, "bob"), issue(ledger, "bob")
    with ledger.write() as txn:
        outcome = access_keys.delete(txn, "bob", key["id"])
    assert outcome["changed"] and outcome["before"]["id"] == key["id"] and outcome["after"] == {}
    with ledger.read() as txn:
        assert access_keys.lookup(txn, key["id"]) is None
        assert [k["id"] for k in access_keys.list_keys(txn, "bob")] == [kept["id"]]
    with ledger.write() as txn:
        assert not access_keys.delete(txn, "bob", key["id"])["changed"]


def test_ensure_is_what_the_module_converges(ledger):
    with ledger.write() as txn:
        new = access_keys.ensure_access_key(txn, "alice")
    assert new["changed"] and new["before"] == {} and new["access_key"]["status"] == "Active"
    key_id = new["access_key"]["id"]
    with ledger.read() as txn:
        assert access_keys.lookup(txn, key_id) == ("alice", new["secret"])
    with ledger.write() as txn:
        again = access_keys.ensure_access_key(txn, "alice", key_id)
        assert not again["changed"] and "secret" not in again
        assert access_keys.ensure_access_key(txn, "alice", key_id, state="inactive")["changed"]
        assert not access_keys.ensure_access_key(txn, "alice", key_id, state="inactive")["changed"]
        with pytest.raises(NotFound):
            access_keys.ensure_access_key(txn, "bob", key_id)
        with pytest.raises(NotFound):
            access_keys.ensure_access_key(txn, "alice", "AKIA" + "C" * 16)
        with pytest.raises(Conflict, match="another secret"):
            access_keys.ensure_access_key(txn, "alice", key_id, secret="y" * 40)
        # a key carried over: created once, then no change
        carried = access_keys.ensure_access_key(txn, "bob", "AKIA" + "D" * 16, secret="z" * 40)
        assert carried["changed"] and carried["secret"] == "z" * 40
        assert not access_keys.ensure_access_key(txn, "bob", "AKIA" + "D" * 16, secret="z" * 40)["changed"]
        assert access_keys.ensure_access_key(txn, "bob", "AKIA" + "D" * 16, state="absent")["changed"]
        with pytest.raises(InvalidInput, match="needs the access_key_id"):
            access_keys.ensure_access_key(txn, "bob", state="absent")
