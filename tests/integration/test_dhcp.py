"""euca.cloud.dhcp against a real dnsmasq and real DHCP clients, inside namespaces.

Topology: a "cc" namespace holds the segment bridges (``eubr-<id>``, gateway address on
each) and the module's dnsmasq; instances are client namespaces joined to a bridge by a
veth whose client end carries the instance's MAC. Clients are busybox udhcpc with a
script that only reports the lease (it configures nothing), so what a test sees is exactly
what dnsmasq offered and acknowledged.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from harness.runner import run_module

MODULE = "euca.cloud.dhcp"

# udhcpc runs the script with the event as $1 and the lease in the environment
REPORT_SCRIPT = """#!/bin/sh
[ "$1" = bound ] && echo "LEASE $interface $ip $router|$dns|$domain"
exit 0
"""

pytestmark = pytest.mark.root


# ------------------------------------------------------------------ helpers
@pytest.fixture
def state_dir():
    """A state_dir dnsmasq can read after dropping root (pytest's tmp dirs are 0700)."""
    path = tempfile.mkdtemp(prefix="eut-dhcp-", dir="/tmp")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def report_script(tmp_path):
    path = tmp_path / "udhcpc.sh"
    path.write_text(REPORT_SCRIPT)
    path.chmod(0o755)
    return str(path)


def add_segment(cc, seg_id, gateway_cidr):
    """The segment bridge on the CC with its gateway address (the segment module's job)."""
    name = f"eubr-{seg_id}"
    cc.bridge(name)
    cc.addr(name, gateway_cidr)
    return name


def add_instance(netns, cc, bridge, mac, port):
    """A client namespace whose eth0 (with ``mac``) is plugged into ``bridge`` on the CC."""
    client = netns()
    cc.ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "address", mac, "netns", client.name)
    cc.ip("link", "set", port, "master", bridge, "up")
    client.ip("link", "set", "eth0", "up")
    return client


def lease(client, script, iface="eth0", tries=8):
    """What a real DHCP client gets: {ip, router, dns, domain}, or None when no lease.

    A client that gets an answer returns at once; ``tries`` (one second each) only bounds
    how long a busy machine may take, and how long a refused client waits."""
    out = client.run("busybox", "udhcpc", "-i", iface, "-n", "-q", "-t", str(tries), "-T", "1", "-s", script,
                     check=False, timeout=tries * 3 + 10)
    for line in out.stdout.splitlines():
        if line.startswith("LEASE "):
            _, _iface, rest = line.split(" ", 2)
            ip, rest = rest.split(" ", 1)
            router, dns, domain = rest.split("|")
            return {"ip": ip, "router": router, "dns": dns.split(), "domain": domain}
    return None


def apply(cc, state_dir, config, state="merged", check=False, diff=False, **extra):
    args = dict(config=config, state=state, namespace=cc.name, state_dir=state_dir, **extra)
    result = run_module(MODULE, args, check=check, diff=diff)
    pid = (result.result.get("dnsmasq") or {}).get("pid")
    if pid and not check:
        cc.adopt(pid)  # killed by pid at teardown, pass or fail
    return result


def ok(result):
    assert not result.failed, result.result.get("msg") or result.stdout[-3000:]
    return result.result


def cmdline(pid):
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def log_tail(state_dir, lines=40):
    """dnsmasq's last log lines, for assertion messages."""
    path = Path(state_dir, "dnsmasq.log")
    return "\n".join(path.read_text().splitlines()[-lines:]) if path.exists() else "(no dnsmasq log)"


def snapshot(state_dir):
    """(inode, mtime_ns, size) of every file: what 'writes nothing' is checked against."""
    out = {}
    for entry in os.scandir(state_dir):
        st = entry.stat(follow_symlinks=False)
        out[entry.name] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def seg(seg_id, net, hosts=(), **extra):
    """A segment item on 10.<net>.0.0/24 with gateway .1."""
    item = {"id": seg_id, "subnet": f"10.{net}.0.0/24", "gateway": f"10.{net}.0.1",
            "hosts": [dict(zip(("mac", "ip", "hostname"), h)) for h in hosts]}
    item.update(extra)
    return item


# ------------------------------------------------------------------ serving
def test_each_instance_gets_its_reserved_address_and_router(netns, state_dir, report_script):
    cc = netns()
    br10 = add_segment(cc, 10, "10.10.0.1/24")
    br11 = add_segment(cc, 11, "10.11.0.1/24")
    a1 = add_instance(netns, cc, br10, "d0:0d:0a:0a:00:32", "p1")
    a2 = add_instance(netns, cc, br10, "d0:0d:0a:0a:00:17", "p2")
    b1 = add_instance(netns, cc, br11, "d0:0d:0a:0b:00:4d", "p3")
    stranger = add_instance(netns, cc, br10, "52:54:00:99:99:99", "p4")
    # reserved on segment 11 but plugged into segment 10: its reservation is not for here
    misplaced = add_instance(netns, cc, br10, "d0:0d:0a:0b:00:63", "p5")

    out = ok(apply(cc, state_dir, [
        # reserved addresses are deliberately not the lowest free ones
        seg(10, 10, [("D0:0D:0A:0A:00:32", "10.10.0.50", "i-a1"), ("d0:0d:0a:0a:00:17", "10.10.0.23", "i-a2")]),
        seg(11, 11, [("d0:0d:0a:0b:00:4d", "10.11.0.77", "i-b1"), ("d0:0d:0a:0b:00:63", "10.11.0.99", None)],
            dns_servers=["10.11.0.2", "10.11.0.3"], domain="cloud.internal"),
    ]))
    assert out["changed"] and out["dnsmasq"]["action"] == "start"
    pid = out["dnsmasq"]["pid"]
    # Hack1: nothing per segment on the command line
    assert cmdline(pid) == ["dnsmasq", f"--conf-file={state_dir}/dnsmasq.conf"]
    assert int(Path(state_dir, "dnsmasq.pid").read_text()) == pid

    assert lease(a1, report_script) == {"ip": "10.10.0.50", "router": "10.10.0.1", "dns": [], "domain": ""}
    assert lease(a2, report_script) == {"ip": "10.10.0.23", "router": "10.10.0.1", "dns": [], "domain": ""}
    assert lease(b1, report_script) == {"ip": "10.11.0.77", "router": "10.11.0.1",
                                        "dns": ["10.11.0.2", "10.11.0.3"], "domain": "cloud.internal"}
    assert lease(stranger, report_script, tries=2) is None
    assert lease(misplaced, report_script, tries=2) is None

    leases = Path(state_dir, "leases").read_text()
    assert "d0:0d:0a:0a:00:32 10.10.0.50 i-a1" in leases and "10.11.0.77" in leases
    assert "52:54:00:99:99:99" not in leases and "10.11.0.99" not in leases
    log = Path(state_dir, "dnsmasq.log").read_text()
    assert "Permission denied" not in log and "DHCPACK(eubr-11) 10.11.0.77 d0:0d:0a:0b:00:4d" in log


def test_changed_reservation_is_served_after_sighup_without_restart(netns, state_dir, report_script):
    cc = netns()
    br = add_segment(cc, 20, "10.20.0.1/24")
    moved = add_instance(netns, cc, br, "d0:0d:0a:14:00:0a", "p1")
    newcomer = add_instance(netns, cc, br, "d0:0d:0a:14:00:1e", "p2")
    first = ok(apply(cc, state_dir, [seg(20, 20, [("d0:0d:0a:14:00:0a", "10.20.0.10", "i-moved")])]))
    pid = first["dnsmasq"]["pid"]
    assert lease(moved, report_script)["ip"] == "10.20.0.10"
    assert lease(newcomer, report_script, tries=2) is None
    conf_before = snapshot(state_dir)["dnsmasq.conf"]

    out = ok(apply(cc, state_dir, [seg(20, 20, [("d0:0d:0a:14:00:0a", "10.20.0.40", "i-moved"),
                                                ("d0:0d:0a:14:00:1e", "10.20.0.30", "i-new")])]))
    assert out["changed"] and out["dnsmasq"] == {"action": "reload", "pid": pid, "service": None}
    assert out["commands"] == [f"write {state_dir}/hosts", f"reload dnsmasq (SIGHUP pid {pid}): reservations changed"]
    # the same process serves the new reservations: reloaded, not restarted
    assert alive(pid) and int(Path(state_dir, "dnsmasq.pid").read_text()) == pid
    assert snapshot(state_dir)["dnsmasq.conf"] == conf_before
    got = lease(moved, report_script)
    assert got == {"ip": "10.20.0.40", "router": "10.20.0.1", "dns": [], "domain": ""}, log_tail(state_dir)
    assert lease(newcomer, report_script)["ip"] == "10.20.0.30"
    assert alive(pid)


def test_adding_a_segment_restarts_dnsmasq_and_the_new_segment_serves(netns, state_dir, report_script):
    cc = netns()
    br30 = add_segment(cc, 30, "10.30.0.1/24")
    br31 = add_segment(cc, 31, "10.31.0.1/24")
    old = add_instance(netns, cc, br30, "d0:0d:0a:1e:00:0b", "p1")
    new = add_instance(netns, cc, br31, "d0:0d:0a:1f:00:0c", "p2")
    first = ok(apply(cc, state_dir, [seg(30, 30, [("d0:0d:0a:1e:00:0b", "10.30.0.11", "i-old")])]))
    old_pid = first["dnsmasq"]["pid"]
    assert lease(old, report_script)["ip"] == "10.30.0.11"

    # merged: segment 30 is kept although only 31 is given
    out = ok(apply(cc, state_dir, [seg(31, 31, [("d0:0d:0a:1f:00:0c", "10.31.0.12", "i-new")], lease_time="2h")]))
    assert out["changed"] and out["dnsmasq"]["action"] == "restart"
    assert [s["id"] for s in out["after"]] == [30, 31]
    new_pid = out["dnsmasq"]["pid"]
    assert new_pid != old_pid and not alive(old_pid) and alive(new_pid)
    assert cmdline(new_pid) == ["dnsmasq", f"--conf-file={state_dir}/dnsmasq.conf"]
    assert lease(new, report_script) == {"ip": "10.31.0.12", "router": "10.31.0.1", "dns": [], "domain": ""}
    assert lease(old, report_script)["ip"] == "10.30.0.11"
    # leases survive the restart (the lease file is carried over, never edited in place)
    leases = Path(state_dir, "leases").read_text()
    assert "10.30.0.11" in leases and "10.31.0.12" in leases


# ------------------------------------------------------------------ idempotence, check mode, input
def test_second_apply_changes_nothing_and_check_mode_touches_nothing(netns, state_dir, report_script):
    cc = netns()
    br = add_segment(cc, 40, "10.40.0.1/24")
    client = add_instance(netns, cc, br, "d0:0d:0a:28:00:0d", "p1")
    config = [seg(40, 40, [("d0:0d:0a:28:00:0d", "10.40.0.13", "i-c")]),
              seg(41, 41, [("d0:0d:0a:29:00:0e", "10.41.0.14", None)], dns_servers=["10.41.0.2"])]
    first = ok(apply(cc, state_dir, config, state="overridden", generation=7))
    pid = first["dnsmasq"]["pid"]
    assert lease(client, report_script)["ip"] == "10.40.0.13"
    files = snapshot(state_dir)

    again = ok(apply(cc, state_dir, config, state="overridden", generation=7))
    assert not again["changed"] and again["commands"] == []
    assert again["summary"]["modified"] == again["summary"]["added"] == [] and again["summary"]["unchanged"] > 0
    assert again["dnsmasq"] == {"action": "none", "pid": pid, "service": None} and again["before"] == again["after"]
    assert snapshot(state_dir) == files  # not even rewritten with the same bytes

    # check mode with a real change: reports it, does nothing
    changed = config[:1] + [seg(41, 41, [("d0:0d:0a:29:00:0e", "10.41.0.15", None)], dns_servers=["10.41.0.2"])]
    dry = apply(cc, state_dir, changed, state="overridden", check=True, diff=True, generation=8)
    dry = ok(dry)
    assert dry["changed"] and dry["dnsmasq"] == {"action": "reload", "pid": pid, "service": None}
    assert dry["diff"]["after"]["41"]["hosts"][0]["ip"] == "10.41.0.15"
    assert snapshot(state_dir) == files and alive(pid)
    assert Path(state_dir, "generation").read_text() == "7\n"

    # an older ledger generation is refused before anything is done
    stale = apply(cc, state_dir, changed, state="overridden", generation=6)
    assert stale.failed and "generation 7 is already applied" in stale.result["msg"]
    assert snapshot(state_dir) == files and alive(pid)

    # check mode from nothing creates nothing and starts nothing
    empty = tempfile.mkdtemp(prefix="eut-dhcp-", dir="/tmp")
    os.chmod(empty, 0o755)
    try:
        dry = ok(apply(cc, empty, config, check=True))
        assert dry["changed"] and dry["dnsmasq"] == {"action": "start", "pid": None, "service": None}
        assert os.listdir(empty) == []
    finally:
        shutil.rmtree(empty)
    assert cc.ns_pids() == [pid]


BAD_INPUT = [
    ([seg(50, 50, [("d0:0d:0a:32:00:0a", "10.51.0.10", None)])], "ip 10.51.0.10 is outside the subnet 10.50.0.0/24"),
    ([seg(50, 50, [("d0:0d:0a:32:00:0a", "10.50.0.1", None)])], "ip 10.50.0.1 is the gateway"),
    ([seg(50, 50, [("d0:0d:0a:32:zz:0a", "10.50.0.10", None)])], "mac 'd0:0d:0a:32:zz:0a' is not a MAC address"),
    ([{"id": 50, "subnet": "10.50.0.0/33", "gateway": "10.50.0.1"}], "is not a valid CIDR"),
    ([seg(50, 50, [("d0:0d:0a:32:00:0a", "10.50.0.10", None), ("d0:0d:0a:32:00:0b", "10.50.0.10", None)])],
     "ip 10.50.0.10 is reserved for both"),
    ([seg(50, 50, [("d0:0d:0a:32:00:0a", "10.50.0.10", None)]), seg(51, 51, [("d0:0d:0a:32:00:0a", "10.51.0.10", None)])],
     "mac d0:0d:0a:32:00:0a is reserved in DHCP segments 50 and 51"),
    ([seg(50, 50, interface="eubr-50-too-long")], "is not a usable interface name"),
    ([seg(50, 50), seg(51, 51, interface="eubr-50")], "DHCP segments 50 and 51 are both on interface eubr-50"),
]


def test_bad_input_fails_before_anything_is_written(netns, state_dir):
    cc = netns()
    add_segment(cc, 50, "10.50.0.1/24")
    good = ok(apply(cc, state_dir, [seg(50, 50, [("d0:0d:0a:32:00:0a", "10.50.0.10", "i-ok")])]))
    pid = good["dnsmasq"]["pid"]
    files = snapshot(state_dir)
    for config, message in BAD_INPUT:
        bad = apply(cc, state_dir, config, state="overridden")
        assert bad.failed and message in bad.result["msg"], (message, bad.result.get("msg"))
        assert not bad.result.get("changed")
        assert snapshot(state_dir) == files and alive(pid) and cc.ns_pids() == [pid]
    # and on a fresh host: nothing created, nothing started
    fresh = Path(state_dir, "fresh")
    bad = apply(cc, str(fresh), BAD_INPUT[0][0])
    assert bad.failed and not fresh.exists() and cc.ns_pids() == [pid]


# ------------------------------------------------------------------ purge, delete, safety
def test_overridden_purges_and_deleted_stops_dnsmasq_and_removes_its_files(netns, state_dir, report_script):
    cc = netns()
    br60 = add_segment(cc, 60, "10.60.0.1/24")
    br61 = add_segment(cc, 61, "10.61.0.1/24")
    c60 = add_instance(netns, cc, br60, "d0:0d:0a:3c:00:0a", "p1")
    c61 = add_instance(netns, cc, br61, "d0:0d:0a:3d:00:0a", "p2")
    ok(apply(cc, state_dir, [seg(60, 60, [("d0:0d:0a:3c:00:0a", "10.60.0.10", None)]),
                             seg(61, 61, [("d0:0d:0a:3d:00:0a", "10.61.0.10", None)])]))

    out = ok(apply(cc, state_dir, [seg(61, 61, [("d0:0d:0a:3d:00:0a", "10.61.0.10", None)])], state="overridden"))
    assert out["changed"] and out["dnsmasq"]["action"] == "restart" and [s["id"] for s in out["after"]] == [61]
    assert "eubr-60" not in Path(state_dir, "dnsmasq.conf").read_text()
    assert lease(c60, report_script, tries=2) is None
    assert lease(c61, report_script)["ip"] == "10.61.0.10"
    pid = out["dnsmasq"]["pid"]

    gone = ok(apply(cc, state_dir, None, state="deleted"))
    assert gone["changed"] and gone["after"] == [] and gone["dnsmasq"] == {"action": "stop", "pid": None, "service": None}
    assert not alive(pid) and cc.ns_pids() == []
    assert os.listdir(state_dir) == []
    assert not ok(apply(cc, state_dir, None, state="deleted"))["changed"]


def test_never_signals_a_process_that_is_not_our_dnsmasq(netns, state_dir):
    cc = netns()
    add_segment(cc, 70, "10.70.0.1/24")
    # a stale pid file naming some other process (a reused pid)
    bystander = cc.spawn(["sleep", "300"])
    Path(state_dir, "dnsmasq.pid").write_text(f"{bystander.pid}\n")
    out = ok(apply(cc, state_dir, [seg(70, 70, [("d0:0d:0a:46:00:0a", "10.70.0.10", None)])]))
    assert out["dnsmasq"]["action"] == "start" and out["dnsmasq"]["pid"] != bystander.pid
    Path(state_dir, "dnsmasq.pid").write_text(f"{bystander.pid}\n")
    # our dnsmasq is now unknown to the module: it is not ours to stop, so deleting leaves it be...
    gone = ok(apply(cc, state_dir, None, state="deleted"))
    assert gone["dnsmasq"]["action"] == "none"
    assert bystander.poll() is None and alive(out["dnsmasq"]["pid"])
    # ...and a new start fails saying why instead of running a second server
    failed = apply(cc, state_dir, [seg(70, 70)])
    assert failed.failed and "dnsmasq did not start" in failed.result["msg"]
    assert bystander.poll() is None


def test_rendered_works_offline(state_dir):
    out = ok(run_module(MODULE, {"config": [seg(80, 80, [("d0:0d:0a:50:00:0a", "10.80.0.10", "i-r")])],
                                 "state": "rendered", "state_dir": state_dir, "namespace": "no-such-namespace"}))
    conf = out["rendered"][f"{state_dir}/dnsmasq.conf"]
    assert "interface=eubr-80\ndhcp-range=set:seg80,10.80.0.0,static,255.255.255.0,1h\n" in conf
    assert out["rendered"][f"{state_dir}/hosts"].endswith("# segment 80\nd0:0d:0a:50:00:0a,10.80.0.10,i-r\n")
    assert os.listdir(state_dir) == []


# ------------------------------------------------------------------ Hack1 at scale
SCALE = 1000
# Clients asking at once. dnsmasq 2.90 spends ~6 ms per packet with 1,000 segments: for
# every packet it matches each address of the namespace against each dhcp-range
# (complete_context), so a larger burst overflows its socket buffer and clients retry.
WINDOW = 20


def _scale_address(i):
    # segment i on 10.(100 + i // 256).(i % 256).0/24; the reserved host varies per segment
    return f"10.{100 + i // 256}.{i % 256}", 20 + i % 200


@pytest.mark.slow
def test_hack1_one_dnsmasq_leases_1000_clients_on_1000_segments(netns, state_dir, report_script):
    cc, clients = netns(), netns()
    for ns in (cc, clients):  # 2,000 interfaces' IPv6 chatter would only add noise
        ns.run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
    expected, config, cc_batch, client_batch = {}, [], [], []
    for i in range(1, SCALE + 1):
        net, host = _scale_address(i)
        mac = "d0:0d:%02x:%02x:%02x:%02x" % tuple(int(o) for o in f"{net}.{host}".split("."))
        cc_batch += [f"link add eubr-{i} type bridge", f"addr add {net}.1/24 dev eubr-{i}", f"link set eubr-{i} up",
                     f"link add v{i} type veth peer name c{i} address {mac} netns {clients.name}",
                     f"link set v{i} master eubr-{i} up"]
        client_batch.append(f"link set c{i} up")
        config.append({"id": i, "subnet": f"{net}.0/24", "gateway": f"{net}.1",
                       "hosts": [{"mac": mac, "ip": f"{net}.{host}", "hostname": f"i-{i:08x}"}]})
        expected[f"c{i}"] = (f"{net}.{host}", f"{net}.1")
    started = time.monotonic()
    cc.run("ip", "-batch", "-", input="\n".join(cc_batch) + "\n", timeout=300)
    clients.run("ip", "-batch", "-", input="\n".join(client_batch) + "\n", timeout=300)
    topology = time.monotonic() - started

    started = time.monotonic()
    out = ok(apply(cc, state_dir, config, state="overridden", shards=1))
    applied = time.monotonic() - started
    pid = out["dnsmasq"]["pid"]
    assert out["changed"] and out["dnsmasq"]["action"] == "start" and len(out["after"]) == SCALE
    # one dnsmasq, and nothing per segment on its command line
    assert cc.ns_pids() == [pid]
    assert cmdline(pid) == ["dnsmasq", f"--conf-file={state_dir}/dnsmasq.conf"]
    assert Path(state_dir, "dnsmasq.conf").read_text().count("\ninterface=eubr-") == SCALE

    # every client asks through its own segment, WINDOW at a time (a sliding window)
    started = time.monotonic()
    result = clients.run("sh", "-c", f"seq 1 {SCALE} | xargs -P {WINDOW} -I@ "
                         f"busybox udhcpc -i c@ -n -q -t 8 -T 1 -s {report_script} 2>/dev/null", timeout=600)
    leasing = time.monotonic() - started
    got = {}
    for line in result.stdout.splitlines():
        if line.startswith("LEASE "):
            _, iface, ip, rest = line.split(" ", 3)
            got[iface] = (ip, rest.split("|")[0])
    missing = sorted(set(expected) - set(got), key=lambda n: int(n[1:]))
    if missing:
        log = Path(state_dir, "dnsmasq.log").read_text().splitlines()
        macs = set(config[int(n[1:]) - 1]["hosts"][0]["mac"] for n in missing[:3])
        seen = [line for line in log if any(m in line for m in macs)]
        errors = [line for line in log if "DHCP" not in line][-20:]
        pytest.fail(f"{len(missing)} clients got no lease, e.g. {missing[:10]}; dnsmasq on 3 of them:\n"
                    + "\n".join(seen[:30]) + "\nother log lines:\n" + "\n".join(errors))
    wrong = dict((k, (got[k], v)) for k, v in expected.items() if got[k] != v)
    assert not wrong, f"{len(wrong)} clients got another address than reserved, e.g. {list(wrong.items())[:5]}"
    leases = Path(state_dir, "leases").read_text().splitlines()
    assert len(leases) == SCALE
    assert alive(pid) and cc.ns_pids() == [pid]
    print(f"\nHack1 x{SCALE}: topology {topology:.1f}s, module apply {applied:.1f}s, "
          f"{SCALE} leases {leasing:.1f}s")


# ------------------------------------------------------------------ under the service manager (issue 13)
def renew(client, script, ip, tries=8):
    """A lease renewal as a booted instance does it: DHCPREQUEST for the address it holds."""
    out = client.run("busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-r", ip, "-t", str(tries), "-T", "1",
                     "-s", script, check=False, timeout=tries * 3 + 10)
    return [line.split()[2] for line in out.stdout.splitlines() if line.startswith("LEASE ")]


@pytest.mark.timeout(300)
def test_under_supervisord_dnsmasq_comes_back_after_kill_9_and_renewals_succeed(netns, state_dir, report_script,
                                                                                 supervisor):
    cc = netns()
    br = add_segment(cc, 40, "10.40.0.1/24")
    first = add_instance(netns, cc, br, "d0:0d:0a:28:00:0a", "p1")
    second = add_instance(netns, cc, br, "d0:0d:0a:28:00:14", "p2")
    svc = dict(service_manager="supervisord", supervisor_conf=str(supervisor.conf),
               supervisor_programs_dir=str(supervisor.programs))
    program = supervisor.programs / "euca-dhcp.conf"
    one = [seg(40, 40, [("d0:0d:0a:28:00:0a", "10.40.0.10", "i-first")])]

    # check mode: what would be done, nothing written, nothing started
    dry = ok(apply(cc, state_dir, one, check=True, **svc))
    assert dry["changed"] and dry["dnsmasq"] == {"action": "start", "pid": None, "service": "supervisord euca-dhcp"}
    assert dry["commands"][-2:] == [f"write {program}", "start dnsmasq under supervisord euca-dhcp"]
    assert not program.exists() and not os.listdir(state_dir) and cc.ns_pids() == []

    out = ok(apply(cc, state_dir, one, **svc))
    pid = out["dnsmasq"]["pid"]
    assert out["dnsmasq"]["action"] == "start" and supervisor.pid("euca-dhcp") == pid
    # supervisord's own child, in the foreground, in the namespace
    assert cmdline(pid)[1:] == ["--keep-in-foreground", f"--conf-file={state_dir}/dnsmasq.conf"]
    assert cc.ns_pids() == [pid]
    assert lease(first, report_script)["ip"] == "10.40.0.10", log_tail(state_dir)

    again = ok(apply(cc, state_dir, one, **svc))
    assert not again["changed"] and again["commands"] == [] and again["dnsmasq"]["action"] == "none"

    # a reservation: SIGHUP to the same process, as without a manager
    two = [seg(40, 40, [("d0:0d:0a:28:00:0a", "10.40.0.10", "i-first"), ("d0:0d:0a:28:00:14", "10.40.0.20", None)])]
    out = ok(apply(cc, state_dir, two, **svc))
    assert out["dnsmasq"] == {"action": "reload", "pid": pid, "service": "supervisord euca-dhcp"}
    assert lease(second, report_script)["ip"] == "10.40.0.20", log_tail(state_dir)

    # kill -9, and no Ansible run: supervisord brings a new dnsmasq, which serves renewals
    os.kill(pid, 9)
    killed = time.monotonic()
    new = 0
    while time.monotonic() - killed < 30:  # back in ~1 s when quiet; room for a loaded machine
        new = supervisor.pid("euca-dhcp")
        if new and new != pid and alive(new) and Path(state_dir, "dnsmasq.pid").read_text().strip() == str(new):
            break
        time.sleep(0.1)
    back = time.monotonic() - killed
    assert new and new != pid, f"no new dnsmasq {back:.1f}s after kill -9: {supervisor.ctl('status').stdout}"
    cc.adopt(new)
    assert renew(first, report_script, "10.40.0.10") == ["10.40.0.10"], log_tail(state_dir)
    assert renew(second, report_script, "10.40.0.20") == ["10.40.0.20"], log_tail(state_dir)
    print(f"\ndnsmasq back {back:.2f}s after kill -9; renewals served {time.monotonic() - killed:.2f}s after it")

    # the module finds it as its own: nothing to do
    again = ok(apply(cc, state_dir, two, **svc))
    assert not again["changed"] and again["dnsmasq"]["pid"] == new

    # a range change restarts through supervisord: a new child, still supervisord's
    changed = [dict(two[0], lease_time="2h")]
    out = ok(apply(cc, state_dir, changed, **svc))
    restarted = out["dnsmasq"]["pid"]
    assert out["dnsmasq"]["action"] == "restart" and restarted != new and supervisor.pid("euca-dhcp") == restarted
    cc.adopt(restarted)
    assert not alive(new) and cc.ns_pids() == [restarted]
    assert lease(first, report_script)["ip"] == "10.40.0.10", log_tail(state_dir)

    # everything deleted: the program goes, so nothing brings dnsmasq back
    gone = ok(apply(cc, state_dir, None, state="deleted", **svc))
    assert gone["dnsmasq"]["action"] == "stop" and not program.exists()
    assert "euca-dhcp" not in supervisor.ctl("status").stdout
    time.sleep(2)
    assert cc.ns_pids() == [] and not os.path.exists(Path(state_dir, "dnsmasq.conf"))


def test_a_dnsmasq_started_without_a_manager_is_handed_over(netns, state_dir, report_script, supervisor):
    cc = netns()
    br = add_segment(cc, 41, "10.41.0.1/24")
    client = add_instance(netns, cc, br, "d0:0d:0a:29:00:0a", "p1")
    one = [seg(41, 41, [("d0:0d:0a:29:00:0a", "10.41.0.10", None)])]
    alone = ok(apply(cc, state_dir, one))["dnsmasq"]["pid"]
    svc = dict(service_manager="supervisord", supervisor_conf=str(supervisor.conf),
               supervisor_programs_dir=str(supervisor.programs))
    out = ok(apply(cc, state_dir, one, **svc))
    pid = out["dnsmasq"]["pid"]
    assert out["dnsmasq"]["action"] == "restart" and pid != alone and not alive(alone)
    assert supervisor.pid("euca-dhcp") == pid and cc.ns_pids() == [pid]
    assert lease(client, report_script)["ip"] == "10.41.0.10", log_tail(state_dir)


# ------------------------------------------------------------------ shards (issue 13, P14)
# udhcpc as an instance runs it: it configures the lease (so it can renew by unicast) and says so
RENEW_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$subnet" dev "$interface"
    echo "LEASE $1 $interface $ip $serverid"
    ;;
esac
exit 0
"""


class Bound:
    """A udhcpc that stays (``-f``): it holds a lease and renews it by unicast on SIGUSR1."""

    def __init__(self, client, script):
        import subprocess
        import threading
        self.proc = subprocess.Popen(["ip", "netns", "exec", client.name, "busybox", "udhcpc", "-f", "-i", "eth0",
                                      "-t", "20", "-T", "1", "-A", "1", "-s", script],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        client.adopt(self.proc.pid)
        self.lines = []
        self.thread = threading.Thread(target=lambda: [self.lines.append(line.strip()) for line in self.proc.stdout],
                                       daemon=True)
        self.thread.start()

    def wait(self, event, count=1, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [line.split() for line in self.lines if line.startswith(f"LEASE {event} ")]
            if len(got) >= count:
                return got[count - 1][3:]
            time.sleep(0.1)
        return None

    def renew(self, count, timeout=30):
        self.proc.send_signal(10)  # SIGUSR1: renew now (unicast to the server it holds the lease from)
        return self.wait("renew", count, timeout)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.mark.timeout(300)
def test_shards_serve_their_segments_broadcast_and_unicast_and_come_back_after_kill_9(netns, state_dir, tmp_path,
                                                                                       supervisor):
    script = tmp_path / "renew.sh"
    script.write_text(RENEW_SCRIPT)
    script.chmod(0o755)
    cc = netns()
    config, clients = [], []
    for seg_id in (50, 51, 52, 53):  # shards 2, 0, 1, 2 of 3
        br = add_segment(cc, seg_id, f"10.{seg_id}.0.1/24")
        mac = "d0:0d:0a:%02x:00:0a" % seg_id
        clients.append(add_instance(netns, cc, br, mac, f"p{seg_id}"))
        config.append(seg(seg_id, seg_id, [(mac, f"10.{seg_id}.0.10", None)]))
    svc = dict(service_manager="supervisord", supervisor_conf=str(supervisor.conf),
               supervisor_programs_dir=str(supervisor.programs), shards=3)
    out = ok(apply(cc, state_dir, config, **svc))
    shards = out["dnsmasq"]["shards"]
    assert [s["action"] for s in shards] == ["start"] * 3
    pids = [s["pid"] for s in shards]
    for i, pid in enumerate(pids):
        cc.adopt(pid)
        assert supervisor.pid(f"euca-dhcp-{i}") == pid
        assert cmdline(pid)[-1] == f"--conf-file={state_dir}/dnsmasq-{i}.conf"
    assert sorted(cc.ns_pids()) == sorted(pids)
    # the steering table: port 67 of each bridge to its shard's port
    table = cc.run("nft", "list", "table", "ip", "euca_dhcp").stdout
    for seg_id in (50, 51, 52, 53):
        assert f'"eubr-{seg_id}" : {10067 + seg_id % 3}' in table, table

    again = ok(apply(cc, state_dir, config, **svc))
    assert not again["changed"] and again["commands"] == []

    # real clients on every shard: a lease by broadcast, then a renewal by unicast to the gateway
    bound = [Bound(client, str(script)) for client in clients]
    try:
        for seg_id, b in zip((50, 51, 52, 53), bound):
            assert b.wait("bound") == [f"10.{seg_id}.0.10", f"10.{seg_id}.0.1"], (b.lines, log_tail(state_dir))
        for seg_id, b in zip((50, 51, 52, 53), bound):
            assert b.renew(1) == [f"10.{seg_id}.0.10", f"10.{seg_id}.0.1"], b.lines
        leases = Path(state_dir, "leases-2").read_text()
        assert "10.50.0.10" in leases and "10.53.0.10" in leases and "10.51.0.10" not in leases

        # kill -9 one shard: supervisord brings it back, its clients renew; the others never noticed
        os.kill(pids[2], 9)
        killed = time.monotonic()
        new = 0
        while time.monotonic() - killed < 30:
            new = supervisor.pid("euca-dhcp-2")
            if new and new != pids[2] and alive(new) and \
                    Path(state_dir, "dnsmasq-2.pid").read_text().strip() == str(new):
                break
            time.sleep(0.1)
        assert new and new != pids[2], supervisor.ctl("status").stdout
        cc.adopt(new)
        assert bound[0].renew(2) == ["10.50.0.10", "10.50.0.1"], bound[0].lines
        assert bound[3].renew(2) == ["10.53.0.10", "10.53.0.1"], bound[3].lines
        assert alive(pids[0]) and alive(pids[1])

        # one dnsmasq again: it starts on port 67, the table goes, the shards stop; renewals still served
        out = ok(apply(cc, state_dir, config, **dict(svc, shards=1)))
        single = out["dnsmasq"]["pid"]
        cc.adopt(single)
        assert out["dnsmasq"]["action"] == "start" and supervisor.pid("euca-dhcp") == single
        assert cc.run("nft", "list", "table", "ip", "euca_dhcp", check=False).returncode != 0
        assert sorted(cc.ns_pids()) == [single]
        assert not list(Path(state_dir).glob("dnsmasq-*")) and not list(supervisor.programs.glob("euca-dhcp-*"))
        assert bound[1].renew(2) == ["10.51.0.10", "10.51.0.1"], bound[1].lines
    finally:
        for b in bound:
            b.stop()
