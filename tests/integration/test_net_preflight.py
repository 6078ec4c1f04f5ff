"""net_preflight against a namespace's real routes: collisions are named, the cloud's own devices are not."""

import pytest

from harness.runner import run_module

pytestmark = [pytest.mark.integration, pytest.mark.root]

RANGES = {"private_network": "10.128.0.0/16", "public_ips": ["203.0.113.32/28"]}


def test_collisions_with_host_routes(netns):
    ns = netns()
    ns.bridge("lan0")  # this kernel has no dummy links; a bridge carries an address as well
    ns.addr("lan0", "10.128.5.1/24")
    ns.bridge("eubr-100")
    ns.addr("eubr-100", "10.128.0.1/27")
    ns.bridge("pub0")
    ns.addr("pub0", "203.0.113.33/28")

    run = run_module("euca.cloud.net_preflight", dict(networks=RANGES, namespace=ns.name))
    assert run.failed
    msg = run.result["msg"]
    assert "private_network 10.128.0.0/16 overlaps 10.128.5.0/24 dev lan0" in msg
    assert "public_ips 203.0.113.32/28 overlaps 203.0.113.32/28 dev pub0" in msg
    assert "eubr-100" not in msg  # the cloud's own segment bridge is no collision
    assert {c["name"] for c in run.result["collisions"]} == {"private_network", "public_ips"}

    fine = run_module("euca.cloud.net_preflight", dict(networks=RANGES, namespace=ns.name,
                                                       ignore_devices=["lan0", "pub0"]), check=True)
    assert not fine.failed and not fine.result["changed"] and fine.result["routes_checked"] >= 3
    other = run_module("euca.cloud.net_preflight", dict(networks={"private_network": "172.31.0.0/16"},
                                                        namespace=ns.name))
    assert not other.failed, other.result.get("msg")
    bad = run_module("euca.cloud.net_preflight", dict(networks={"private_network": "10.300.0.0/16"},
                                                      namespace=ns.name))
    assert bad.failed and "10.300.0.0/16" in bad.result["msg"]
