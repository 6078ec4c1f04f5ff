#!/usr/bin/env python3
"""P1/P2: elastic-IP NAT + security-group filter at 10,000 elastic IPs (namespaces only).

P1  10,000 EIP mappings (1,000 groups of 10 instances, each group open on tcp/22) applied
    through euca.cloud.nat + euca.cloud.firewall (one ansible-playbook, modules acting in the
    bench namespace) vs the same rules through a loop of ansible.builtin.iptables tasks:
    500 of them are timed (the whole ansible-playbook runs under `ip netns exec`, so every
    iptables call lands in the bench namespace) and the time is extrapolated linearly to
    the 30,000 rules of the 10k set (DNAT + SNAT + a FORWARD accept per EIP; the modules also
    load output DNAT, hairpin and masquerade rules and add the 10,000 /32 addresses).
P2  the modules' apply step (one nft -f per table, in-process, through process.run) vs a bare
    `nft -f` of the same rendered rulesets in a fresh namespace.

Addresses: the 10,000 elastic IPs cannot come from the two public documentation /24s, so
they are taken from 10.128.0.0/16 (private space, inside the bench namespace only).
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "collections"))

from ansible_collections.euca.cloud.plugins.module_utils.net import config, firewall, nat  # noqa: E402

N = 10000
TIMED = 500
VENV_BIN = Path(sys.executable).parent
ENV = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
           ANSIBLE_NOCOLOR="1", PATH="%s:%s" % (VENV_BIN, os.environ.get("PATH", "/usr/bin:/bin")))


def sh(*argv, **kw):
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit("%s failed (rc=%d):\n%s\n%s" % (" ".join(str(a) for a in argv), proc.returncode,
                                                         proc.stdout[-3000:], proc.stderr[-3000:]))
    return proc


def new_ns(tag):
    name = ("eub-%s%d" % (tag, os.getpid()))[:15]
    sh("ip", "netns", "add", name)
    sh("ip", "-n", name, "link", "set", "lo", "up")
    # no dummy driver here: a bridge stands for the public NIC
    sh("ip", "-n", name, "link", "add", "pub", "type", "bridge")
    sh("ip", "-n", name, "link", "set", "pub", "up")
    return name


def data():
    mappings, groups = [], []
    for g in range(N // 10):
        base = 10 << 24 | g * 16  # 10.0.0.0/16 cut in /28s
        subnet = "%d.%d.%d.%d/28" % (base >> 24, base >> 16 & 255, base >> 8 & 255, base & 255)
        groups.append({"name": "g%04d" % g, "subnet": subnet, "rules": [{"protocol": "tcp", "from_port": 22, "cidr": "0.0.0.0/0"}]})
        for i in range(10):
            n = len(mappings)
            private = base + 2 + i
            mappings.append({"public_ip": "10.128.%d.%d" % (n >> 8, n & 255),
                             "private_ip": "%d.%d.%d.%d" % (private >> 24, private >> 16 & 255, private >> 8 & 255, private & 255)})
    return mappings, groups


def p1(mappings, groups, work):
    ns = new_ns("m")
    try:
        vars_file = work / "vars.json"
        vars_file.write_text(json.dumps({"mappings": mappings, "sg_groups": groups, "ns": ns}))
        play = work / "modules.yml"
        play.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": "filter", "euca.cloud.firewall": {"config": "{{ sg_groups }}", "state": "overridden", "backend": "nft",
                                                      "namespace": "{{ ns }}", "generation": 1}},
            {"name": "nat", "euca.cloud.nat": {"config": "{{ mappings }}", "state": "overridden", "backend": "nft",
                                              "public_interface": "pub", "public_ips": ["10.128.0.0/16"],
                                              "private_networks": ["10.0.0.0/16"], "namespace": "{{ ns }}", "generation": 1}},
        ]}]))
        inventory = "localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable
        (work / "hosts").write_text(inventory)
        start = time.perf_counter()
        sh(VENV_BIN / "ansible-playbook", "-i", work / "hosts", "-e", "@%s" % vars_file, play, env=ENV)
        modules = time.perf_counter() - start
        rules_loaded = int(sh("ip", "netns", "exec", ns, "nft", "list", "map", "ip", "euca_nat", "eip_dnat").stdout.count(" : ")) - 1  # minus the type line
        addrs = sh("ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "pub").stdout.count("/32")
        assert rules_loaded == N and addrs == N, (rules_loaded, addrs)
    finally:
        sh("ip", "netns", "delete", ns)

    ns = new_ns("i")
    try:
        items = []
        for m in mappings[:TIMED // 3 + 1]:
            items.append({"table": "nat", "chain": "PREROUTING", "destination": m["public_ip"], "jump": "DNAT",
                          "to_destination": m["private_ip"]})
            items.append({"table": "nat", "chain": "POSTROUTING", "source": m["private_ip"], "out_interface": "pub",
                          "jump": "SNAT", "to_source": m["public_ip"]})
            items.append({"table": "filter", "chain": "FORWARD", "destination": m["private_ip"], "protocol": "tcp",
                          "destination_port": "22", "jump": "ACCEPT"})
        items = items[:TIMED]
        play = work / "loop.yml"
        play.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": "rules", "ansible.builtin.iptables": {
                "table": "{{ item.table }}", "chain": "{{ item.chain }}", "jump": "{{ item.jump }}",
                "source": "{{ item.source | default(omit) }}", "destination": "{{ item.destination | default(omit) }}",
                "protocol": "{{ item.protocol | default(omit) }}",
                "destination_port": "{{ item.destination_port | default(omit) }}",
                "out_interface": "{{ item.out_interface | default(omit) }}",
                "to_destination": "{{ item.to_destination | default(omit) }}",
                "to_source": "{{ item.to_source | default(omit) }}"},
             "loop": items}]}]))
        start = time.perf_counter()
        # the whole ansible-playbook in the bench namespace: its iptables calls cannot reach the root one
        sh("ip", "netns", "exec", ns, VENV_BIN / "ansible-playbook", "-i", work / "hosts", play, env=ENV)
        loop = time.perf_counter() - start
        count = sh("ip", "netns", "exec", ns, "iptables-save").stdout.count("\n-A ")
        assert count == TIMED, count
    finally:
        sh("ip", "netns", "delete", ns)
    total_rules = 3 * N
    extrapolated = loop / TIMED * total_rules
    ratio = extrapolated / modules
    print("P1 nat+filter 10k EIPs vs ansible.builtin.iptables loop (%d timed in %.1f s, extrapolated to %d rules: "
          "%.0f s; modules %.2f s): %.1f x (goal >= 1000)" % (TIMED, loop, total_rules, extrapolated, modules, ratio))
    return ratio >= 1000


def p2(mappings, groups):
    best_module, best_bare = None, None
    for _ in range(3):
        ns = new_ns("a")
        try:
            nat_res = nat.NatResource("pub", ["10.128.0.0/16"], ["10.0.0.0/16"], backend="nft", namespace=ns, generation=1)
            fw_res = firewall.FirewallResource(backend="nft", namespace=ns, generation=1)
            plans = []
            for res, items in ((nat_res, mappings), (fw_res, groups)):
                desired = res.validate(items)
                before, _gen = res.gather()
                after = config.target_items(res, "overridden", before, desired)
                plans.append((res, res.plan(before, after), after))
            # the ruleset part only: the /32 addresses have no nft equivalent to compare with
            rulesets = [(res, [l for l in plan if not l.startswith("ip addr ")], after) for res, plan, after in plans]
            start = time.perf_counter()
            for res, plan, after in rulesets:
                res.apply(plan, after, 1)
            module = time.perf_counter() - start
        finally:
            sh("ip", "netns", "delete", ns)
        ns = new_ns("b")
        try:
            texts = ["\n".join(plan) + "\n" for _res, plan, _after in rulesets]
            start = time.perf_counter()
            for text in texts:
                subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=text, text=True, check=True)
            bare = time.perf_counter() - start
        finally:
            sh("ip", "netns", "delete", ns)
        best_module = module if best_module is None else min(best_module, module)
        best_bare = bare if best_bare is None else min(best_bare, bare)
    ratio = best_module / best_bare
    print("P2 module apply of the 10k ruleset (nat+filter) vs bare nft -f of the same ruleset (%.0f ms vs %.0f ms, "
          "best of 3): %.2f x (goal <= 2)" % (best_module * 1000, best_bare * 1000, ratio))
    return ratio <= 2


def main():
    if os.geteuid() != 0:
        print("bench/nat_filter.py needs root (network namespaces)")
        return 1
    mappings, groups = data()
    with tempfile.TemporaryDirectory() as tmp:
        ok1 = p1(mappings, groups, Path(tmp))
    ok2 = p2(mappings, groups)
    return 0 if ok1 and ok2 else 1


if __name__ == "__main__":
    sys.exit(main())
