"""The whole-set state machine shared by the segment, DHCP, NAT and firewall modules.

The resource here is an in-memory stand-in: what is tested is the state logic
(merged/overridden/deleted/rendered, check mode, generations), not a backend.
"""

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.net import config


class Store(config.Resource):
    noun = "thing"
    generations = True

    def __init__(self, items=None, generation=None):
        self.items = dict((i["id"], i) for i in (items or []))
        self.generation = generation
        self.applied = []

    def validate(self, items):
        for item in items:
            if not isinstance(item.get("id"), int):
                raise InvalidInput("thing id must be an integer")
        return [dict(i) for i in items]

    def gather(self):
        return [self.items[k] for k in sorted(self.items)], self.generation

    def plan(self, before, after, force=False):
        if before == after and not force:
            return []
        return ["replace %s" % [i["id"] for i in after]]

    def apply(self, plan, after, generation):
        self.applied.append(plan)
        self.items = dict((i["id"], i) for i in after)
        self.generation = generation

    def render(self, items, generation):
        return "\n".join("thing %d" % i["id"] for i in items)


def ids(result):
    return [i["id"] for i in result["after"]]


def test_merged_adds_and_replaces():
    store = Store([{"id": 1, "v": "a"}, {"id": 2, "v": "b"}])
    out = config.converge(store, [{"id": 2, "v": "B"}, {"id": 3, "v": "c"}], "merged")
    assert out["changed"] and ids(out) == [1, 2, 3] and store.items[2]["v"] == "B"
    assert not config.converge(store, [{"id": 2, "v": "B"}], "merged")["changed"]


def test_overridden_purges_the_rest():
    store = Store([{"id": 1}, {"id": 2}])
    out = config.converge(store, [{"id": 2}, {"id": 5}], "overridden")
    assert ids(out) == [2, 5] and sorted(store.items) == [2, 5]


def test_deleted_named_or_all():
    store = Store([{"id": 1}, {"id": 2}, {"id": 3}])
    assert ids(config.converge(store, [{"id": 2}], "deleted")) == [1, 3]
    assert ids(config.converge(store, [], "deleted")) == []
    assert store.items == {}


def test_rendered_touches_nothing():
    store = Store([{"id": 1}])
    out = config.converge(store, [{"id": 7}], "rendered")
    assert out == {"changed": False, "rendered": "thing 7"} and store.applied == []


def test_check_mode_plans_but_does_not_apply():
    store = Store([{"id": 1}])
    out = config.converge(store, [{"id": 2}], "overridden", check_mode=True)
    assert out["changed"] and out["commands"] == ["replace [2]"] and store.applied == [] and list(store.items) == [1]


def test_bad_input_fails_before_gathering():
    store = Store([{"id": 1}])
    with pytest.raises(InvalidInput, match="must be an integer"):
        config.converge(store, [{"id": "x"}], "overridden")
    with pytest.raises(InvalidInput, match="given twice"):
        config.converge(store, [{"id": 3}, {"id": 3}], "overridden")
    assert store.applied == []


def test_older_generation_is_refused():
    store = Store([{"id": 1}], generation=42)
    with pytest.raises(Conflict, match="refusing to apply ledger generation 41: generation 42 is already applied"):
        config.converge(store, [{"id": 2}], "overridden", generation=41)
    assert store.applied == [] and store.generation == 42


def test_newer_generation_with_the_same_content_is_recorded():
    store = Store([{"id": 1}], generation=42)
    out = config.converge(store, [{"id": 1}], "overridden", generation=43)
    # recorded, but not reported as a change: the items are as they were
    assert not out["changed"] and out["commands"] and store.generation == 43
    # in check mode nothing is recorded
    assert not config.converge(store, [{"id": 1}], "overridden", check_mode=True, generation=44)["changed"]
    assert store.generation == 43
    assert not config.converge(store, [{"id": 1}], "overridden", generation=43)["changed"]


def test_summary_names_what_changes_by_key():
    store = Store([{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 3, "v": "c"}])
    out = config.converge(store, [{"id": 2, "v": "B"}, {"id": 3, "v": "c"}, {"id": 9, "v": "z"}], "overridden")
    assert out["summary"] == {"added": [9], "removed": [1], "modified": [2], "unchanged": 1, "commands": 1}
    again = config.converge(store, [{"id": 2, "v": "B"}, {"id": 3, "v": "c"}, {"id": 9, "v": "z"}], "overridden")
    assert again["summary"] == {"added": [], "removed": [], "modified": [], "unchanged": 3, "commands": 0}
