"""Elastic-IP NAT and the security-group filter, proven with packets (both backends).

Topology, built with plain ``ip`` in namespaces of this test:

    outside (198.51.100.1) --veth-- [pub 198.51.100.2] cc [brA 10.1.0.1/24, brB 10.2.0.1/24]
                                                            brA: a1 10.1.0.11, a2 10.1.0.12  (group web)
                                                            brB: b1 10.2.0.11                (group db)

Elastic IPs come from 203.0.113.0/28 (the outside routes it to the cc): a1 has .5, b1 has
.6, a2 has none. Every instance and the outside run a small TCP server that answers with
the address it sees the connection come from, so a test sees what NAT did.
"""

from __future__ import annotations

import re
import textwrap
import time

import pytest

from harness.runner import run_module, run_playbook

BACKENDS = ["nft", "iptables"]
POOL = ["203.0.113.0/28"]
PRIVATE = ["10.0.0.0/8"]
EIP_A1, EIP_B1 = "203.0.113.5", "203.0.113.6"
MAPPINGS = [{"public_ip": EIP_A1, "private_ip": "10.1.0.11"}, {"public_ip": EIP_B1, "private_ip": "10.2.0.11"}]
GROUPS = [
    {"name": "web", "subnet": "10.1.0.0/24", "rules": [
        {"protocol": "tcp", "from_port": 8080, "cidr": "0.0.0.0/0"},         # the world may reach 8080
        {"protocol": "tcp", "from_port": 7000, "to_port": 7100, "source_group": "db"},  # db may reach 7070
    ]},
    {"name": "db", "subnet": "10.2.0.0/24", "rules": []},                    # nobody else may reach db
]

SERVER = textwrap.dedent("""
    import socket, sys, threading
    def serve(port):
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port)); s.listen(16)
        while True:
            c, peer = s.accept()
            try:
                c.sendall(("%s %s\\n" % (sys.argv[1], peer[0])).encode())
            finally:
                c.close()
    for p in sys.argv[2:]:
        threading.Thread(target=serve, args=(int(p),), daemon=True).start()
    threading.Event().wait()
""")

CLIENT = textwrap.dedent("""
    import socket, sys
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
        s.settimeout(float(sys.argv[3]))
        print(s.recv(200).decode().strip())
    except OSError as exc:
        print("FAIL %s" % exc)
""")


class Cloud:
    """The namespaces of one topology, with helpers to talk TCP between them."""

    def __init__(self, netns, tmp_path):
        self.server = tmp_path / "server.py"
        self.client = tmp_path / "client.py"
        self.server.write_text(SERVER)
        self.client.write_text(CLIENT)
        self.cc, self.outside = netns(), netns()
        self.a1, self.a2, self.b1 = netns(), netns(), netns()
        cc = self.cc
        cc.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        for bridge, gw in (("brA", "10.1.0.1/24"), ("brB", "10.2.0.1/24")):
            cc.bridge(bridge)
            cc.addr(bridge, gw)
        for inst, port, bridge, cidr, gw in ((self.a1, "pa1", "brA", "10.1.0.11/24", "10.1.0.1"),
                                             (self.a2, "pa2", "brA", "10.1.0.12/24", "10.1.0.1"),
                                             (self.b1, "pb1", "brB", "10.2.0.11/24", "10.2.0.1")):
            cc.veth(inst, port, "eth0")
            cc.enslave(port, bridge)
            inst.addr("eth0", cidr)
            inst.route("default", "via", gw)
        cc.veth(self.outside, "pub", "eth0")
        cc.addr("pub", "198.51.100.2/24")
        self.outside.addr("eth0", "198.51.100.1/24")
        self.outside.route("203.0.113.0/24", "via", "198.51.100.2")
        for ns, name, ports in ((self.a1, "a1", ["8080", "9090", "7070"]), (self.a2, "a2", ["8080"]),
                                (self.b1, "b1", ["8080"]), (self.outside, "outside", ["8000"])):
            ns.spawn(["python3", str(self.server), name] + ports)
            self._wait_listening(ns, ports)

    def _wait_listening(self, ns, ports):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if all(self.talk(ns, "127.0.0.1", p, 0.5).split()[0] != "FAIL" for p in ports):
                return
            time.sleep(0.05)
        raise AssertionError("servers in %s did not start" % ns.name)

    def talk(self, ns, host, port, timeout=1.5):
        """What the server at host:port answers ('<server> <peer address>'), or 'FAIL ...'."""
        return ns.run("python3", str(self.client), host, str(port), str(timeout), timeout=30).stdout.strip()

    def ruleset(self):
        """Everything the modules own in cc, with handles (a rewrite changes them), without counters."""
        text = self.cc.run("nft", "-a", "list", "ruleset").stdout
        # iptables-nft keeps its comments where only iptables-save shows them
        text += "".join(line + "\n" for line in self.cc.run("iptables-save").stdout.splitlines()
                        if not line.startswith("#"))
        addrs = self.cc.run("ip", "-4", "-o", "addr", "show", "dev", "pub").stdout
        addrs = re.sub(r"valid_lft.*", "", addrs)
        text = re.sub(r"counter packets \d+ bytes \d+", "counter", text)
        return re.sub(r"\[\d+:\d+\]", "", text) + addrs


def nat_args(cloud, backend, **extra):
    args = dict(config=MAPPINGS, state="overridden", public_interface="pub", public_ips=POOL,
                private_networks=PRIVATE, backend=backend, namespace=cloud.cc.name)
    args.update(extra)
    return args


def fw_args(cloud, backend, **extra):
    args = dict(config=GROUPS, state="overridden", backend=backend, namespace=cloud.cc.name)
    args.update(extra)
    return args


def converge(cloud, backend, generation=5):
    fw = run_module("euca.cloud.firewall", fw_args(cloud, backend, generation=generation))
    assert not fw.failed, fw.result
    nat = run_module("euca.cloud.nat", nat_args(cloud, backend, generation=generation))
    assert not nat.failed, nat.result
    return fw, nat


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_groups_eips_hairpin_and_outbound_with_real_packets(netns, tmp_path, backend):
    cloud = Cloud(netns, tmp_path)
    # the bridged same-segment traffic crosses the forward hook here: the filter must allow for it
    assert cloud.cc.run("sysctl", "-n", "net.bridge.bridge-nf-call-iptables").stdout.strip() == "1"
    # before any rule: b1 reaches a1 directly (nothing filters yet), the EIP does not answer
    assert cloud.talk(cloud.b1, "10.1.0.11", 9090).startswith("a1 ")
    assert cloud.talk(cloud.outside, EIP_A1, 8080, 1).startswith("FAIL")

    fw, nat = converge(cloud, backend)
    assert fw.changed and nat.changed and fw.result["backend"] == nat.result["backend"] == backend
    assert nat.result["after"] == MAPPINGS and nat.result["generation"] == 5

    # same group passes (direct, the peer is the real address)
    assert cloud.talk(cloud.a2, "10.1.0.11", 9090) == "a1 10.1.0.12"
    assert cloud.a2.ping("10.1.0.11")
    # cross group: default deny, unless a rule authorises it (db -> web 7000-7100)
    assert cloud.talk(cloud.b1, "10.1.0.11", 9090).startswith("FAIL")
    assert cloud.talk(cloud.a1, "10.2.0.11", 8080).startswith("FAIL")
    assert not cloud.a1.ping("10.2.0.11", wait=1)
    assert cloud.talk(cloud.b1, "10.1.0.11", 7070) == "a1 10.2.0.11"
    # an authorised port on an EIP answers from outside (the client's real address is kept) ...
    assert cloud.talk(cloud.outside, EIP_A1, 8080) == "a1 198.51.100.1"
    # ... an unauthorised one does not, nor does a group-only port, nor an EIP of a closed group
    assert cloud.talk(cloud.outside, EIP_A1, 9090).startswith("FAIL")
    assert cloud.talk(cloud.outside, EIP_A1, 7070).startswith("FAIL")
    assert cloud.talk(cloud.outside, EIP_B1, 8080).startswith("FAIL")
    # hairpin: an instance of the same group through a1's EIP (masqueraded to the gateway, so
    # a1 answers through the cc), and an instance of another group (authorised: 8080 is open)
    assert cloud.talk(cloud.a2, EIP_A1, 8080) == "a1 10.1.0.1"
    assert cloud.talk(cloud.b1, EIP_A1, 8080) == "a1 10.1.0.1"  # masqueraded to the gateway on brA
    # ... but the filter still applies to hairpinned traffic: db is closed to web
    assert cloud.talk(cloud.a1, EIP_B1, 8080).startswith("FAIL")
    # outbound: with an EIP the outside sees the EIP; without one, the cc's masquerade address
    assert cloud.talk(cloud.a1, "198.51.100.1", 8000) == "outside %s" % EIP_A1
    assert cloud.talk(cloud.b1, "198.51.100.1", 8000) == "outside %s" % EIP_B1
    assert cloud.talk(cloud.a2, "198.51.100.1", 8000) == "outside 198.51.100.2"
    # the cc itself reaches an instance through its EIP (output DNAT)
    assert cloud.talk(cloud.cc, EIP_A1, 8080).startswith("a1 ")
    # the EIPs are /32 addresses on the public interface
    pub = cloud.cc.run("ip", "-4", "-o", "addr", "show", "dev", "pub").stdout
    assert "%s/32" % EIP_A1 in pub and "%s/32" % EIP_B1 in pub

    # disassociate b1's EIP (overridden): its address goes, b1 goes out masqueraded
    nat = run_module("euca.cloud.nat", nat_args(cloud, backend, config=MAPPINGS[:1], generation=6))
    assert nat.changed and nat.result["after"] == MAPPINGS[:1], nat.result
    assert "%s/32" % EIP_B1 not in cloud.cc.run("ip", "-4", "-o", "addr", "show", "dev", "pub").stdout
    assert cloud.talk(cloud.b1, "198.51.100.1", 8000) == "outside 198.51.100.2"
    assert cloud.talk(cloud.outside, EIP_A1, 8080) == "a1 198.51.100.1"


BAD_NAT = {
    "eip outside the pool": {"config": [{"public_ip": "198.51.100.77", "private_ip": "10.1.0.11"}]},
    "not a cidr": {"private_networks": ["10.0.0.0/33"]},
    "private address mapped twice": {"config": MAPPINGS + [{"public_ip": "203.0.113.7", "private_ip": "10.1.0.11"}]},
}
BAD_FW = {
    "port 0": {"config": [dict(GROUPS[0], rules=[{"protocol": "tcp", "from_port": 0, "cidr": "0.0.0.0/0"}])]},
    "port above 65535": {"config": [dict(GROUPS[0], rules=[{"protocol": "udp", "from_port": 53, "to_port": 70000,
                                                            "cidr": "0.0.0.0/0"}])]},
    "from above to": {"config": [dict(GROUPS[0], rules=[{"protocol": "tcp", "from_port": 90, "to_port": 80,
                                                         "cidr": "0.0.0.0/0"}])]},
    "unknown group": {"config": [dict(GROUPS[0], rules=[{"protocol": "tcp", "from_port": 22, "source_group": "ghost"}])]},
    "bad cidr": {"config": [dict(GROUPS[0], rules=[{"protocol": "tcp", "from_port": 22, "cidr": "10.1.0.0/40"}])]},
    "overlapping subnets": {"config": GROUPS + [{"name": "wide", "subnet": "10.0.0.0/8"}]},
}
EXPECTED_MSG = {
    "eip outside the pool": "outside the public_ips pool", "not a cidr": "not a valid CIDR",
    "private address mapped twice": "mapped from both", "port 0": "outside 1-65535",
    "port above 65535": "outside 1-65535", "from above to": "above to_port", "unknown group": "unknown group",
    "bad cidr": "not a valid CIDR", "overlapping subnets": "overlapping subnets",
}


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_idempotence_generations_drift_and_bad_input(netns, tmp_path, backend):
    cloud = Cloud(netns, tmp_path)
    converge(cloud, backend, generation=5)
    applied = cloud.ruleset()
    assert "generation=5" in applied

    # one playbook: the same state again, an older generation, then every kind of bad input
    common_nat = nat_args(cloud, backend, generation=5)
    common_fw = fw_args(cloud, backend, generation=5)
    tasks = [
        {"name": "same nat", "euca.cloud.nat": common_nat},
        {"name": "same firewall", "euca.cloud.firewall": common_fw},
        {"name": "same nat, no generation", "euca.cloud.nat": dict(common_nat, generation=None)},
        {"name": "old nat", "euca.cloud.nat": dict(common_nat, generation=4), "ignore_errors": True},
        {"name": "old firewall", "euca.cloud.firewall": dict(common_fw, generation=4), "ignore_errors": True},
    ]
    tasks += [{"name": name, "euca.cloud.nat": dict(common_nat, generation=9, **bad), "ignore_errors": True}
              for name, bad in BAD_NAT.items()]
    tasks += [{"name": name, "euca.cloud.firewall": dict(common_fw, generation=9, **bad), "ignore_errors": True}
              for name, bad in BAD_FW.items()]
    playbook = tmp_path / "second.yml"
    import yaml
    playbook.write_text(yaml.safe_dump([{"name": "second apply", "hosts": "localhost", "gather_facts": False,
                                         "tasks": tasks}]))
    from harness.runner import local_inventory
    run = run_playbook(playbook, inventory=local_inventory())
    for name in ("same nat", "same firewall", "same nat, no generation"):
        result = run.task_result(name)
        assert not result.get("failed") and result["changed"] is False and result["commands"] == [], (name, result)
        assert result["summary"]["modified"] == [] and result["summary"]["unchanged"] > 0, (name, result["summary"])
        assert result["generation"] == 5
    def failed(name):
        return [ev["event"] for ev in run.task_events(name)] == ["runner_on_failed"]

    for name in ("old nat", "old firewall"):
        result = run.task_result(name)
        assert failed(name) and "refusing to apply ledger generation 4" in result["msg"], result
    for name in list(BAD_NAT) + list(BAD_FW):
        result = run.task_result(name)
        assert failed(name) and EXPECTED_MSG[name] in result["msg"], (name, result)
    # nothing was written by any of them: same tables, same handles, same addresses
    assert cloud.ruleset() == applied

    # a newer generation with the same content is recorded (and only that: no change is reported)
    nat = run_module("euca.cloud.nat", nat_args(cloud, backend, generation=7))
    assert not nat.changed and nat.result["generation"] == 7
    assert "generation=7" in cloud.ruleset()

    # drift: flush our rules behind the modules' back; traffic breaks, a re-apply repairs it
    if backend == "nft":
        cloud.cc.run("nft", "flush", "table", "ip", "euca_nat")
        cloud.cc.run("nft", "flush", "table", "ip", "euca_filter")
    else:
        cloud.cc.run("iptables", "-t", "nat", "-F", "EUCA-NAT-PRE")
        cloud.cc.run("iptables", "-F", "FORWARD")  # drops the jump into our filter chains
    cloud.cc.run("ip", "addr", "del", "%s/32" % EIP_B1, "dev", "pub")
    assert cloud.talk(cloud.outside, EIP_A1, 8080, 1).startswith("FAIL")
    assert cloud.talk(cloud.b1, "10.1.0.11", 9090).startswith("a1 ")  # the filter is gone too
    fw, nat = converge(cloud, backend, generation=7)
    assert fw.changed and nat.changed
    assert any(c == "ip addr add %s/32 dev pub" % EIP_B1 for c in nat.result["commands"])
    assert cloud.talk(cloud.outside, EIP_A1, 8080) == "a1 198.51.100.1"
    assert cloud.talk(cloud.b1, "10.1.0.11", 9090).startswith("FAIL")
    # a whole flushed ruleset loses the record too: the mappings come back from the ledger's set
    cloud.cc.run("nft", "flush", "ruleset")
    fw, nat = converge(cloud, backend, generation=7)
    assert fw.changed and nat.changed and nat.result["before"] == []
    assert cloud.talk(cloud.outside, EIP_A1, 8080) == "a1 198.51.100.1"
    # and then it is steady again
    fw, nat = converge(cloud, backend, generation=7)
    assert not fw.changed and not nat.changed


@pytest.mark.root
def test_check_mode_and_deleted(netns, tmp_path):
    cloud = Cloud(netns, tmp_path)
    before = cloud.ruleset()
    nat = run_module("euca.cloud.nat", nat_args(cloud, "auto"), check=True, diff=True)
    assert nat.changed and nat.result["commands"] and nat.result["backend"] == "nft"
    assert EIP_A1 in nat.result["diff"]["after"]
    assert cloud.ruleset() == before  # check mode wrote nothing
    converge(cloud, "nft")
    nat = run_module("euca.cloud.nat", nat_args(cloud, "nft", state="deleted", config=MAPPINGS[:1], generation=6))
    assert nat.changed and nat.result["after"] == MAPPINGS[1:]
    assert cloud.talk(cloud.outside, EIP_A1, 8080, 1).startswith("FAIL")
    fw = run_module("euca.cloud.firewall", fw_args(cloud, "nft", state="deleted", config=[], generation=6))
    assert fw.changed and fw.result["after"] == []
    assert cloud.talk(cloud.b1, "10.1.0.11", 9090).startswith("a1 ")  # no groups, no filter
