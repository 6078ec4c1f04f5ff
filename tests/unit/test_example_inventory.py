"""The example inventory (inventories/example): a cloud of two clusters that operators copy, and
that molecule/multinode deploys onto bare hosts (tests/integration/test_multinode.py).

Nothing here connects to its hosts. ``ansible-inventory --list`` reads the
inventory as Ansible sees it; a play of controller-side tasks only (``debug``, which opens no
connection) templates every variable per host and runs the lookups the operation playbooks make
(``euca.cloud.cluster_host``, ``euca.cloud.node_host``); ``ansible-playbook --syntax-check``
parses every playbook with it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from harness import runner

REPO_ROOT = Path(__file__).resolve().parents[2]
INVENTORY = REPO_ROOT / "inventories" / "example"
BIN = Path(sys.executable).parent

# RFC 5737: hosts' addresses from TEST-NET-2, the public side from TEST-NET-3; never TEST-NET-1.
HOST_NET = ipaddress.ip_network("198.51.100.0/24")
PUBLIC_NET = ipaddress.ip_network("203.0.113.0/24")
TEST_NET_1 = ipaddress.ip_network("192.0.2.0/24")
RFC1918 = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
IPV4 = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")
UNDEFINED = "(undefined: test_example_inventory)"

# Every playbook must at least parse with this inventory (the sandbox-only ones too: a syntax
# check templates no variable).
PLAYBOOKS = sorted(path.name for path in (REPO_ROOT / "playbooks").glob("*.yml"))


def _run(*argv: str) -> subprocess.CompletedProcess:
    """One Ansible command from the venv, configured by this checkout's ansible.cfg."""
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=REPO_ROOT, env={**os.environ, **runner.envvars()},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def listing() -> dict:
    """``ansible-inventory --list``: groups and each host's variables (not templated)."""
    done = _run("ansible-inventory", "-i", str(INVENTORY), "--list")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _members(listing: dict, group: str) -> set[str]:
    """Every host of ``group``, through its child groups."""
    entry = listing.get(group, {})
    hosts = set(entry.get("hosts", []))
    for child in entry.get("children", []):
        hosts |= _members(listing, child)
    return hosts


@pytest.fixture(scope="module")
def groups(listing) -> dict[str, set[str]]:
    names = {name for name in listing if name != "_meta"}
    return {name: _members(listing, name) for name in names}


@pytest.fixture(scope="module")
def clusters(groups) -> dict[str, set[str]]:
    """The cluster groups (cluster_<name>; not their cluster_<name>_cc/_sc/_nc children)."""
    return {name: hosts for name, hosts in groups.items()
            if re.fullmatch(r"cluster_[a-z0-9]+", name)}


@pytest.fixture(scope="module")
def resolved(listing, tmp_path_factory) -> dict[str, dict]:
    """Per host: every variable of the inventory templated as a play sees it, and the hosts the
    playbooks' filters find for it (its cluster's CC and SC, itself as a node)."""
    names = sorted({name for hostvars in listing["_meta"]["hostvars"].values() for name in hostvars})
    play = [{
        "name": "Resolve the example inventory",
        "hosts": "all",
        "gather_facts": False,
        "tasks": [{
            "name": "resolve",
            "ansible.builtin.debug": {"msg": {
                "vars": "{{ dict(euca_test_names | zip(query('vars', *euca_test_names, default=euca_test_undefined))) }}",
                "cc": "{{ groups['cc'] | euca.cloud.cluster_host(hostvars, euca_cluster)"
                      " if euca_cluster is defined else none }}",
                "sc": "{{ groups['sc'] | euca.cloud.cluster_host(hostvars, euca_cluster)"
                      " if euca_cluster is defined else none }}",
                "node": "{{ groups['nc'] | euca.cloud.node_host(hostvars, euca_node_name | default(inventory_hostname))"
                        " if inventory_hostname in groups['nc'] else none }}",
                "peers": "{{ inventory_hostname | euca.cloud.vxlan_peers(hostvars, groups)"
                         " if inventory_hostname in groups['cc'] + groups['nc'] else none }}",
                "interconnect": "{{ inventory_hostname | euca.cloud.vxlan_interconnect(hostvars, groups) }}",
            }},
        }],
    }]
    path = tmp_path_factory.mktemp("example-inventory") / "resolve.yml"
    path.write_text(json.dumps(play))
    run = runner.run_playbook(path, inventory=str(INVENTORY),
                              extravars={"euca_test_names": names, "euca_test_undefined": UNDEFINED})
    assert run.rc == 0, run.stdout[-3000:]
    out = {}
    for host in listing["_meta"]["hostvars"]:
        msg = run.task_result("resolve", host=host)["msg"]
        msg["vars"] = {k: v for k, v in msg["vars"].items() if v != UNDEFINED}
        out[host] = msg
    return out


def _hostvars(resolved, host) -> dict:
    return resolved[host]["vars"]


def _addresses(value, path=""):
    """(path, address) of every IPv4 address written anywhere in a variable."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _addresses(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _addresses(item, f"{path}[{index}]")
    elif isinstance(value, str):
        for match in IPV4.finditer(value):
            yield path, ipaddress.ip_address(match.group(1))


def _pool(entries) -> set:
    """The addresses of a public_ips pool (CIDRs, a-b ranges, single addresses)."""
    out = set()
    for entry in entries:
        if "-" in entry:
            first, last = (ipaddress.ip_address(x.strip()) for x in entry.split("-"))
            out |= {ipaddress.ip_address(n) for n in range(int(first), int(last) + 1)}
        else:
            out |= set(ipaddress.ip_network(entry, strict=True))
    return out


# --- shape ------------------------------------------------------------------------------------------

def test_two_clusters_each_with_one_cc_one_sc_and_nodes(groups, clusters):
    assert sorted(clusters) == ["cluster_a", "cluster_b"]
    for name, hosts in clusters.items():
        assert len(hosts & groups["cc"]) == 1, f"{name} needs exactly one cc"
        assert len(hosts & groups["sc"]) == 1, f"{name} needs exactly one sc"
        assert len(hosts & groups["nc"]) >= 1, f"{name} needs a node"
        assert not hosts & groups["nc"] & (groups["cc"] | groups["sc"]), f"{name}: a node is also a controller"
    # the shape molecule/multinode proves: separate CC, SC and two NCs; one CC+SC host and one NC
    assert len(clusters["cluster_a"] & groups["nc"]) == 2 and groups["cc"] & clusters["cluster_a"] != groups["sc"] & clusters["cluster_a"]
    assert groups["cc"] & clusters["cluster_b"] == groups["sc"] & clusters["cluster_b"]
    assert len(groups["clc"]) == 1 and groups["walrus"] == groups["clc"]


def test_every_cluster_host_is_in_one_cluster_and_names_it(groups, clusters, resolved):
    for host in groups["cc"] | groups["sc"] | groups["nc"]:
        mine = [name for name, hosts in clusters.items() if host in hosts]
        assert len(mine) == 1, f"{host} is in clusters {mine}"
        assert _hostvars(resolved, host).get("euca_cluster") == mine[0], host
    # the cloud controller and the image store belong to no cluster
    for host in (groups["clc"] | groups["walrus"]) - (groups["cc"] | groups["sc"] | groups["nc"]):
        assert "euca_cluster" not in _hostvars(resolved, host)


def test_the_playbooks_find_each_clusters_controllers_and_each_node(groups, clusters, resolved):
    for name, hosts in clusters.items():
        (cc,) = hosts & groups["cc"]
        (sc,) = hosts & groups["sc"]
        for host in hosts:
            assert resolved[host]["cc"] == cc, host
            assert resolved[host]["sc"] == sc, host
    for host in groups["nc"]:
        assert resolved[host]["node"] == host


def test_the_ledger_records_every_cluster_of_the_inventory(groups, clusters, resolved):
    (clc,) = groups["clc"]
    clc_vars = _hostvars(resolved, clc)
    assert sorted(clc_vars["clc_clusters"]) == sorted(clusters)
    assert clc_vars["clc_ledger"] == clc_vars["euca_ledger"]
    assert clc_vars["clc_settings"] == clc_vars["euca_cloud"]
    # tasks delegated to the clc host read the ledger with the delegating host's variables
    ledgers = {_hostvars(resolved, host).get("euca_ledger") for host in resolved}
    assert ledgers == {clc_vars["euca_ledger"]}


# --- what the playbooks and roles need ----------------------------------------------------------------

REQUIRED = {
    "clc": ("euca_ledger", "euca_cloud", "clc_ledger", "clc_settings", "clc_clusters"),
    "walrus": ("euca_walrus_url", "euca_walrus_store_dir", "walrus_store_dir", "walrus_listen"),
    "cc": ("euca_ledger", "euca_cluster", "euca_public_interface", "euca_public_address", "euca_vxlan_local",
           "euca_vxlan_dev", "euca_underlay_address"),
    "sc": ("euca_ledger", "euca_cluster", "euca_iscsi_portal", "sc_iscsi_portal", "euca_storage_address",
           "euca_storage_interface", "euca_volumes_dir",
           "sc_volumes_dir", "euca_tgt_socket", "sc_tgt_socket"),
    "nc": ("euca_ledger", "euca_cluster", "euca_node_capacity", "euca_storage_address", "euca_storage_interface",
           "euca_vxlan_local", "euca_vxlan_dev", "euca_underlay_address"),
}


@pytest.mark.parametrize("group", sorted(REQUIRED))
def test_each_host_defines_what_its_playbooks_need(groups, resolved, group):
    for host in groups[group]:
        missing = [name for name in REQUIRED[group] if name not in _hostvars(resolved, host)]
        assert not missing, f"{host} ({group}) lacks {missing}"


def test_node_capacity_is_whole_positive_numbers(groups, resolved):
    for host in groups["nc"]:
        capacity = _hostvars(resolved, host)["euca_node_capacity"]
        assert sorted(capacity) == ["cores", "disk_gb", "memory_mb"], host
        assert all(isinstance(v, int) and v > 0 for v in capacity.values()), (host, capacity)


def test_role_and_playbook_variables_agree(groups, resolved):
    for host in groups["sc"]:
        hv = _hostvars(resolved, host)
        assert hv["sc_iscsi_portal"] == hv["euca_iscsi_portal"], host
        assert hv["sc_volumes_dir"] == hv["euca_volumes_dir"], host
        assert hv["sc_tgt_socket"] == hv["euca_tgt_socket"], host
    for host in groups["walrus"]:
        hv = _hostvars(resolved, host)
        assert hv["euca_walrus_store_dir"] == hv["walrus_store_dir"]


def test_real_hosts_use_the_host_namespace_systemd_and_the_hosts_libvirtd(resolved):
    for host, out in resolved.items():
        hv = out["vars"]
        assert "euca_namespace" not in hv, host
        for name in ("common_namespace", "cc_namespace", "sc_namespace", "nc_namespace", "walrus_namespace"):
            assert not hv.get(name), f"{host}: {name}={hv.get(name)!r}"
        assert hv.get("ansible_connection", "ssh") != "local", host
        assert hv.get("common_service_manager", "auto") in ("auto", "systemd"), host
        assert hv.get("euca_libvirt_uri", "qemu:///system") == "qemu:///system", host


# --- networks -----------------------------------------------------------------------------------------

def _network(resolved, name):
    (networks,) = {json.dumps(out["vars"]["euca_site_networks"], sort_keys=True) for out in resolved.values()}
    return ipaddress.ip_network(json.loads(networks)[name], strict=True)


def test_vxlan_segments_on_the_underlay_with_peers_derived_from_the_inventory(groups, clusters, resolved):
    underlay = _network(resolved, "underlay")
    vtep = {}
    for host in groups["cc"] | groups["nc"]:
        hv = _hostvars(resolved, host)
        assert hv["euca_cloud"]["network_mode"] == "vxlan"
        first, last = hv["euca_cloud"]["segment_range"]
        assert 1 <= first <= last <= 16777215
        assert hv["euca_vxlan_local"] == hv["euca_underlay_address"], host
        assert ipaddress.ip_address(hv["euca_vxlan_local"]) in underlay, host
        # the peers are derived (network.yml), never typed per host
        assert "euca_vxlan_peers" not in hv and "euca_trunk" not in hv, host
        vtep[host] = hv["euca_vxlan_local"]
    assert len(set(vtep.values())) == len(vtep), "two hosts share a VXLAN endpoint"
    for name, hosts in clusters.items():
        members = hosts & (groups["cc"] | groups["nc"])
        for host in members:
            # a full mesh within the cluster, nothing of the other cluster
            assert resolved[host]["peers"] == sorted(vtep[h] for h in members - {host}), host
        # within a cluster the CC and its nodes name their underlay NIC alike
        assert len({_hostvars(resolved, h)["euca_vxlan_dev"] for h in members}) == 1, name
    for host in groups["cc"]:
        others = [vtep[h] for h in groups["cc"] - {host}]
        assert resolved[host]["interconnect"] == sorted(others), host
        hv = _hostvars(resolved, host)
        assert hv["euca_public_interface"] not in (hv["euca_vxlan_dev"], hv.get("euca_storage_interface")), host
        assert hv["common_own_devices"] == [hv["euca_public_interface"]], host
        assert ipaddress.ip_interface(hv["euca_public_address"]).network == _network(resolved, "public"), host
    for host in set(resolved) - groups["cc"]:
        assert resolved[host]["interconnect"] == [], host
        # elsewhere the range check leaves no device out
        assert _hostvars(resolved, host)["common_own_devices"] == [], host


def test_the_cloud_ranges_are_private_and_documentation_ranges(resolved):
    clouds = [out["vars"]["euca_cloud"] for out in resolved.values()]
    assert all(cloud == clouds[0] for cloud in clouds)
    cloud = clouds[0]
    private = ipaddress.ip_network(cloud["private_network"], strict=True)
    assert any(private.subnet_of(n) for n in RFC1918)
    assert not any(private.overlaps(n) for n in (HOST_NET, PUBLIC_NET, TEST_NET_1))
    pool = _pool(cloud["public_ips"])
    assert pool and all(ip in PUBLIC_NET for ip in pool)
    # the public network's router and the CCs' own addresses (README) are not handed out
    own = {ipaddress.ip_interface(out["vars"]["euca_public_address"]).ip for out in resolved.values()
           if "euca_public_address" in out["vars"]}
    assert len(own) == 2 and not pool & (own | {ipaddress.ip_address("203.0.113.1")})
    for out in resolved.values():
        assert out["vars"]["common_networks"] == {"private_network": cloud["private_network"],
                                                  "public_ips": cloud["public_ips"]}


def test_every_address_is_a_documentation_address(resolved):
    hosts = {}
    for host, out in resolved.items():
        for path, address in _addresses(out["vars"]):
            assert address not in TEST_NET_1, f"{host}: {path}={address} (use 198.51.100.0/24 or 203.0.113.0/24)"
            if path.endswith("private_network"):
                continue  # the instances' space, checked above
            assert address in HOST_NET or address in PUBLIC_NET, f"{host}: {path}={address}"
        address = ipaddress.ip_address(out["vars"]["ansible_host"])
        assert address in _network(resolved, "management"), host
        hosts[address] = host
    assert len(hosts) == len(resolved), "two hosts share an ansible_host"


def test_each_cluster_reaches_its_own_storage_controller_on_the_storage_network(groups, clusters, resolved):
    storage_net = _network(resolved, "storage")
    for name, hosts in clusters.items():
        (sc,) = hosts & groups["sc"]
        hv = _hostvars(resolved, sc)
        ip, _, port = hv["euca_iscsi_portal"].rpartition(":")
        assert ip == hv["euca_storage_address"] and port == "3260", f"{sc}: {hv['euca_iscsi_portal']}"
        assert ipaddress.ip_address(ip) in storage_net
        # its nodes share the SC's storage NIC name (one storage network per cluster)
        assert {_hostvars(resolved, h)["euca_storage_interface"] for h in hosts & (groups["nc"] | groups["sc"])} \
            == {hv["euca_storage_interface"]}, name
    storage = [_hostvars(resolved, host)["euca_storage_address"] for host in sorted(groups["nc"] | groups["sc"])]
    # an export is opened to one node's address: two nodes sharing one would see each other's volumes
    assert len(set(storage)) == len(storage)
    assert all(ipaddress.ip_address(a) in storage_net for a in storage)


def test_walrus_serves_where_the_nodes_fetch_images(groups, resolved):
    (walrus,) = groups["walrus"]
    hv = _hostvars(resolved, walrus)
    url = urlsplit(hv["euca_walrus_url"])
    listen_ip, _, listen_port = hv["walrus_listen"].rpartition(":")
    assert url.scheme == "http" and url.hostname == hv["ansible_host"]
    assert str(url.port) == listen_port and listen_ip in (hv["ansible_host"], "0.0.0.0")


# --- files --------------------------------------------------------------------------------------------

def test_no_variable_is_set_by_two_groups_that_share_a_host(groups):
    keys = {}
    for path in sorted((INVENTORY / "group_vars").glob("*.yml")):
        assert path.read_text().startswith("---\n"), path
        assert path.stem in groups, f"{path.name} names no group of hosts.yml"
        keys[path.stem] = set(yaml.safe_load(path.read_text()) or {})
    # all.yml is everybody's default, overridden by any group by design; between two other groups
    # the one that wins depends on nesting depth and then on the groups' names
    names = sorted(set(keys) - {"all"})
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            if groups[first] & groups[second]:
                both = keys[first] & keys[second]
                assert not both, f"group_vars/{first}.yml and {second}.yml both set {sorted(both)}"


def test_the_multinode_scenario_builds_every_host_of_the_inventory(listing):
    # molecule gives connection settings to its platforms only: each host of hosts.yml must be one
    scenario = yaml.safe_load((REPO_ROOT / "molecule" / "multinode" / "molecule.yml").read_text())
    assert sorted(p["name"] for p in scenario["platforms"]) == sorted(listing["_meta"]["hostvars"])
    assert "../../inventories/example" in scenario["provisioner"]["inventory"]["links"]["hosts"]


def test_host_vars_name_hosts_of_the_inventory(listing):
    for path in sorted((INVENTORY / "host_vars").glob("*.yml")):
        assert path.read_text().startswith("---\n"), path
        assert path.stem in listing["_meta"]["hostvars"], f"{path.name} names no host of hosts.yml"


def test_site_and_the_operations_of_the_readme_are_there():
    readme = (INVENTORY / "README.md").read_text()
    named = set(re.findall(r"`(?:playbooks/)?([a-z-]+\.yml)", readme)) - {"hosts.yml"}
    assert "site.yml" in PLAYBOOKS
    assert named and named <= set(PLAYBOOKS), f"the README names {sorted(named - set(PLAYBOOKS))}"


def test_site_playbook_parses_with_the_example_inventory():
    done = _run("ansible-playbook", "--syntax-check", "-i", str(INVENTORY), "playbooks/site.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_playbook_parses_with_the_example_inventory():
    # one ansible-playbook for all of them: its error names the playbook that does not parse
    done = _run("ansible-playbook", "--syntax-check", "-i", str(INVENTORY),
                *(f"playbooks/{name}" for name in PLAYBOOKS))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
