"""Placement policies over node capacity."""

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.errors import Exhausted, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.ledger import scheduler

SMALL = {"cores": 1, "memory_mb": 128, "disk_gb": 2}


def node(name, cores=4, memory_mb=1024, disk_gb=20, instances=0):
    return {"name": name, "cluster": "c1", "instances": instances,
            "free": {"cores": cores, "memory_mb": memory_mb, "disk_gb": disk_gb}}


def test_greedy_fills_the_first_node_before_the_next():
    chosen, _ = scheduler.place([node("nc2"), node("nc1", cores=2)], SMALL, 4, "GREEDY")
    assert chosen == ["nc1", "nc1", "nc2", "nc2"]


def test_roundrobin_rotates_and_continues_from_the_cursor():
    nodes = [node("nc1"), node("nc2"), node("nc3")]
    chosen, cursor = scheduler.place(nodes, SMALL, 4, "ROUNDROBIN")
    assert chosen == ["nc1", "nc2", "nc3", "nc1"]
    chosen, cursor = scheduler.place(nodes, SMALL, 2, "ROUNDROBIN", cursor)
    assert chosen == ["nc2", "nc3"] and cursor == "nc3"


def test_roundrobin_skips_full_nodes():
    chosen, _ = scheduler.place([node("nc1"), node("nc2", cores=0), node("nc3")], SMALL, 3, "ROUNDROBIN", "nc1")
    assert chosen == ["nc3", "nc1", "nc3"]


def test_powersave_packs_busy_nodes_and_leaves_idle_ones_idle():
    nodes = [node("nc1"), node("nc2", cores=3, instances=1), node("nc3")]
    chosen, _ = scheduler.place(nodes, SMALL, 3, "POWERSAVE")
    assert chosen == ["nc2", "nc2", "nc2"]
    chosen, _ = scheduler.place([node("nc1"), node("nc2", cores=1, instances=3)], SMALL, 2, "POWERSAVE")
    assert chosen == ["nc2", "nc1"]


def test_memory_and_disk_count_not_only_cores():
    big = {"cores": 1, "memory_mb": 600, "disk_gb": 2}
    chosen, _ = scheduler.place([node("nc1", memory_mb=1000), node("nc2", memory_mb=1000)], big, 2, "GREEDY")
    assert chosen == ["nc1", "nc2"]


def test_all_or_nothing_with_every_node_named():
    with pytest.raises(Exhausted) as err:
        scheduler.place([node("nc1", cores=1), node("nc2", cores=1)], SMALL, 3, "GREEDY")
    assert "3 instances of 1 cores" in err.value.msg
    assert "(2 would fit)" in err.value.msg
    assert "nc1 1 cores/1024 MiB/20 GiB free" in err.value.msg


def test_no_nodes_says_how_to_add_one():
    with pytest.raises(Exhausted, match="add one with euca.cloud.node"):
        scheduler.place([], SMALL, 1, "GREEDY")


def test_unknown_policy():
    with pytest.raises(InvalidInput, match="scheduler must be one of"):
        scheduler.place([node("nc1")], SMALL, 1, "RANDOM")


def test_input_nodes_are_not_modified():
    nodes = [node("nc1")]
    scheduler.place(nodes, SMALL, 2, "GREEDY")
    assert nodes[0]["free"]["cores"] == 4
