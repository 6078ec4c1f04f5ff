"""Every daemon the cloud depends on comes back by itself after kill -9, without an Ansible run.

One all-in-one sandbox (inventories/sandbox moved to throwaway namespaces, directories and a
private supervisord; the ledger on the CLC's own PostgreSQL server, clc_postgres_server) with one
instance in an HTTP-open group, an elastic IP and an attached volume, plus one AoE export
(sc_export transport=aoe) on a veth to a probe namespace. For each daemon the pid supervisord
reports is killed with SIGKILL; a new pid must appear and serve:

- tgtd: a restarted tgtd gets its exports back (the restore scripts sc_export keeps); bytes written
  into the SC's volume file are read through iSCSI by qemu-io and by the guest from its disk, the
  guest answering over its elastic IP from the outside namespace;
- libvirtd: the new one lists the domain, still running (QEMU outlived it), the guest still answers;
- Walrus's nginx: the image store serves an image object, byte for byte;
- vblade: the AoE export answers a raw AoE client with the volume's sector 0 again;
- PostgreSQL: a ledger read gives the running instance;
- dnsmasq (the CC's DHCP, program euca-dhcp): a real DHCP client (busybox udhcpc) on the instance's
  segment, with the instance's MAC, gets the instance's reservation from the new dnsmasq.

Recovery times are printed (goal: within 10 s); each wait allows 30 s for a loaded machine.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.ledger import db
from harness import netns as _netns
from harness.guest_image import image_dir
from harness.postgres import PostgresUnavailable, find_bindir
from harness.runner import REPO_ROOT, run_module, run_playbook
from harness.sandbox import sandbox_vars
from harness.supervisor import Supervisor

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(900)]

INVENTORY = str(REPO_ROOT / "inventories" / "sandbox")
WALRUS_PORT = 18782  # distinct from every other test's Walrus (18773, 18774, 18776, 18779)
RECOVERY_LIMIT = 30  # seconds; the goal is 10 (measured: see the printed times)
PROBE = os.path.join(os.path.dirname(_netns.__file__), "aoe_probe.py")
AOE_VOLUME = "vol-0000dead"
PLAYS = ["sandbox.yml", "site.yml", "test-image.yml",
         ("register-image.yml", dict(image_name="rk-kernel", image_src="{{ test_image_dir }}/vmlinuz", image_kind="kernel")),
         ("register-image.yml", dict(image_name="rk-ramdisk", image_src="{{ test_image_dir }}/initramfs.img",
                                     image_kind="ramdisk")),
         ("register-image.yml", dict(image_name="rk-image", image_src="{{ test_image_dir }}/root.img",
                                     image_kernel="rk-kernel", image_ramdisk="rk-ramdisk")),
         ("create-group.yml", dict(group="web", description="HTTP from anywhere")),
         ("authorize.yml", dict(group="web", ports=80, cidr="0.0.0.0/0")),
         ("run-instances.yml", dict(instance_name="rk-web", image="rk-image", group="web")),
         ("associate-address.yml", dict(address_name="rk-web",
                                        instance="{{ hostvars[groups['clc'] | first].euca_run.instances[0].id }}")),
         ("create-volume.yml", dict(volume_name="rk-data", cluster="{{ euca_cluster }}", size_gb=1)),
         ("attach-volume.yml", dict(volume="rk-data",
                                    instance="{{ hostvars[groups['clc'] | first].euca_run.instances[0].id }}"))]


def lean_playbook(path):
    """The demo's steps that give one instance an elastic IP and a volume (playbooks/demo.yml, less the db tier)."""
    plays = []
    for play in PLAYS:
        name, variables = play if isinstance(play, tuple) else (play, None)
        entry = {"name": name, "ansible.builtin.import_playbook": str(REPO_ROOT / "playbooks" / name)}
        if variables:
            entry["vars"] = variables
        plays.append(entry)
    path.write_text(json.dumps(plays))  # YAML is a superset of JSON
    return path


def wait_for(what, probe, limit=RECOVERY_LIMIT, interval=0.2):
    """Poll ``probe`` until it returns something true; returns (value, seconds)."""
    start = time.monotonic()
    while True:
        value = probe()
        if value:
            return value, time.monotonic() - start
        assert time.monotonic() - start < limit, "%s: not within %ss" % (what, limit)
        time.sleep(interval)


@pytest.fixture(scope="module")
def cloud(guest_image, tmp_path_factory):
    reason = _netns.can_use_netns()
    if reason:
        pytest.skip(reason)
    try:
        bindir = find_bindir()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    if not shutil.which("vblade"):
        pytest.skip("vblade is not installed (Debian's vblade package; roles/sc with sc_aoe)")
    work = tmp_path_factory.mktemp("recovery")
    os.chmod(work, 0o755)
    # the server's user must reach its directory: under /tmp, not pytest's 0700 tree
    pg_base = tempfile.mkdtemp(prefix="eut-pgclc-")
    os.chmod(pg_base, 0o755)
    pg_dir = os.path.join(pg_base, "pg")
    ledger = "postgresql://postgres@/euca?host=%s" % pg_dir
    supervisor = Supervisor(work / "supervisor")
    names = (_netns.new_name(), _netns.new_name())
    extravars = dict(sandbox_vars(work, supervisor, names[0], names[1], WALRUS_PORT),
                     test_image_dir=str(image_dir()), clean_keep_image=True,
                     euca_ledger=ledger, clc_postgres_server=True, clc_postgres_dir=pg_dir,
                     clc_postgres_bindir=str(bindir))
    probe_ns = None
    try:
        started = time.monotonic()
        up = run_playbook(lean_playbook(work / "cloud.yml"), inventory=INVENTORY, extravars=extravars)
        assert up.rc == 0, up.stdout[-5000:]
        print("\ncloud up in %.0f s" % (time.monotonic() - started))
        ns, outside = _netns.Netns(names[0]), _netns.Netns(names[1])
        described = "\n".join(run_playbook(REPO_ROOT / "playbooks" / "describe.yml", inventory=INVENTORY,
                                           extravars=extravars).task_result("Show the cloud")["msg"])
        web = [line.split() for line in described.splitlines() if line.startswith("i-")][0]
        volume = [line.split()[0] for line in described.split("VOLUMES")[1].splitlines() if line.startswith("vol-")][0]
        # an AoE export of a second volume, on a veth to a probe namespace
        probe_ns = _netns.Netns.create()
        ns.veth(probe_ns, "aoe-sc", "eth-st")
        made = run_module("euca.cloud.sc_volume", dict(name=AOE_VOLUME, size_gb=1, volumes_dir=extravars["sc_volumes_dir"]))
        assert not made.failed, made.result.get("msg")
        with open(os.path.join(extravars["sc_volumes_dir"], AOE_VOLUME + ".img"), "r+b") as handle:
            handle.write(b"EUCA-AOE-SECTOR0")
        mac = json.loads(probe_ns.ip("-j", "link", "show", "eth-st").stdout)[0]["address"]
        aoe = run_module("euca.cloud.sc_export", dict(
            volume=AOE_VOLUME, transport="aoe", initiators=[mac], aoe_interface="aoe-sc", aoe_shelf=3,
            namespace=names[0], volumes_dir=extravars["sc_volumes_dir"], state_dir=str(work / "aoe"),
            service_manager="supervisord", supervisor_conf=str(supervisor.conf),
            supervisor_programs_dir=str(supervisor.programs)))
        assert not aoe.failed and aoe.result["export"]["running"], aoe.result.get("msg")
        yield {"work": work, "vars": extravars, "supervisor": supervisor, "ns": ns, "outside": outside,
               "probe": probe_ns, "instance": web[0], "eip": web[6], "volume": volume, "ledger": ledger,
               "aoe": aoe.result["export"]}
    finally:
        run_playbook(REPO_ROOT / "playbooks" / "clean.yml", inventory=INVENTORY, extravars=extravars)
        if probe_ns is not None:
            probe_ns.delete()
        supervisor.stop()
        for name in names:
            _netns.Netns(name).delete()
        shutil.rmtree(pg_base, ignore_errors=True)
        leftover = subprocess.run(["pgrep", "-f", str(work)], capture_output=True, text=True).stdout.split()
        assert leftover == [], leftover


def kill_and_wait(env, program):
    """kill -9 the program's pid as supervisord reports it; return (new pid, seconds until supervisord has one)."""
    sup = env["supervisor"]
    old = sup.pid(program)
    assert old > 0, sup.ctl("status").stdout
    os.kill(old, 9)
    new, took = wait_for("a new %s" % program, lambda: (lambda p: p if p not in (0, old) else 0)(sup.pid(program)))
    return old, new, took


def outside_http(env, path="/", timeout=3):
    got = env["outside"].run(sys.executable, "-c", "import urllib.request, sys; sys.stdout.write(urllib.request"
                             ".urlopen(sys.argv[1], timeout=%d).read().decode())" % timeout,
                             "http://%s%s" % (env["eip"], path), check=False, timeout=60)
    return got.stdout if got.returncode == 0 else None


def guest_disk(env):
    for line in (outside_http(env, "/cgi-bin/blockdevs") or "").splitlines():
        name, _size, serial = line.split()
        if serial == env["volume"]:
            return name
    return None


def report(daemon, took):
    print("\n%s back and serving %.1f s after kill -9 (goal <= 10 s)" % (daemon, took))


def test_tgtd_comes_back_with_its_exports(cloud):
    env = cloud
    dev, _ = wait_for("the guest sees its volume", lambda: guest_disk(env), limit=60)
    iqn = "iqn.2010-05.cloud.euca:" + env["volume"]
    env_tgt = dict(os.environ, TGT_IPC_SOCKET=env["vars"]["sc_tgt_socket"])

    def exported():
        out = subprocess.run(["tgtadm", "-C", "0", "--lld", "iscsi", "--op", "show", "--mode", "target"],
                             env=env_tgt, capture_output=True, text=True)
        return out.returncode == 0 and iqn in out.stdout and "127.0.0.1" in out.stdout

    assert exported()
    marker = b"EUCA-AFTER-TGTD-KILL-%d" % os.getpid()
    old, new, took = kill_and_wait(env, "euca-tgtd")
    _, served = wait_for("tgtd exports %s again" % iqn, exported)
    report("tgtd", took + served)
    assert new in env["ns"].ns_pids()  # the new tgtd runs in the cloud's namespace
    with open(os.path.join(env["vars"]["sc_volumes_dir"], env["volume"] + ".img"), "r+b") as handle:
        handle.write(marker)
    # an iSCSI client of its own (QEMU's initiator, from the node's address) reads the bytes
    read = env["ns"].run("qemu-io", "-r", "-f", "raw", "-c", "read -v 0 %d" % len(marker),
                         "iscsi://127.0.0.1:3260/%s/1" % iqn, check=False, timeout=60)
    assert read.returncode == 0 and marker.hex()[:16] in read.stdout.replace(" ", ""), read.stdout + read.stderr
    # and the guest, whose QEMU logs in again, reads them from its disk over its elastic IP
    got, _ = wait_for("the guest reads its volume", lambda: outside_http(
        env, "/cgi-bin/disk?dev=%s&op=read&bytes=%d" % (dev, len(marker)), timeout=10), limit=90, interval=1)
    assert got.encode() == marker


def test_libvirtd_comes_back_and_lists_the_running_domain(cloud):
    import libvirt
    env = cloud
    uri = "qemu+unix:///system?socket=%s/libvirtd/run/libvirt-sock" % env["work"]

    def lists_it():
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError:
            return None
        try:
            return conn.lookupByName(env["instance"]).info()[0] == libvirt.VIR_DOMAIN_RUNNING
        finally:
            conn.close()

    assert lists_it()
    old, new, took = kill_and_wait(env, "euca-libvirtd")
    _, listed = wait_for("libvirtd lists %s running" % env["instance"], lists_it)
    report("libvirtd", took + listed)
    assert outside_http(env) is not None  # the guest never stopped
    assert os.path.exists("/proc/%d" % new) and not os.path.exists("/proc/%d" % old)


def test_walrus_nginx_comes_back_and_serves_an_image(cloud):
    env = cloud
    store = env["vars"]["walrus_store_dir"]
    objects = [os.path.join(d, f) for d, _, files in os.walk(store) for f in files]
    assert objects, "no image object in %s" % store
    smallest = min(objects, key=os.path.getsize)
    url = "http://127.0.0.1:%d/%s" % (WALRUS_PORT, os.path.relpath(smallest, store))
    want = hashlib.sha256(open(smallest, "rb").read()).hexdigest()

    def serves():
        try:
            return hashlib.sha256(urllib.request.urlopen(url, timeout=3).read()).hexdigest() == want
        except OSError:
            return False

    assert serves()
    old, new, took = kill_and_wait(env, "euca-walrus")
    _, served = wait_for("nginx serves %s" % url, serves)
    report("nginx", took + served)
    # nothing of the killed nginx is left serving: every nginx of this store is the new one
    left = subprocess.run(["pgrep", "-f", env["vars"]["walrus_state_dir"]], capture_output=True, text=True).stdout.split()
    assert [int(p) for p in left] == [new], left


def aoe_probe(env):
    run = env["probe"].run(sys.executable, PROBE, "eth-st", "3", str(env["aoe"]["target"].split(".")[1]), "1.5",
                           check=False, timeout=30)
    seen = json.loads(run.stdout) if run.returncode == 0 else {}
    return bytes.fromhex(seen["sector0"]).startswith(b"EUCA-AOE-SECTOR0") if seen.get("sector0") else False


def test_vblade_comes_back_and_answers_aoe(cloud):
    env = cloud
    assert aoe_probe(env)
    program = env["aoe"]["program"]
    assert env["supervisor"].pid(program) == env["aoe"]["pid"]
    old, new, took = kill_and_wait(env, program)
    _, served = wait_for("vblade answers AoE", lambda: aoe_probe(env))
    report("vblade", took + served)
    assert new in env["ns"].ns_pids()
    # the module finds its export as it is: nothing to do, then it removes the program
    args = dict(volume=AOE_VOLUME, transport="aoe", initiators=env["aoe"]["initiators"], aoe_interface="aoe-sc",
                aoe_shelf=3, namespace=env["ns"].name, volumes_dir=env["vars"]["sc_volumes_dir"],
                state_dir=str(env["work"] / "aoe"), service_manager="supervisord",
                supervisor_conf=str(env["supervisor"].conf), supervisor_programs_dir=str(env["supervisor"].programs))
    again = run_module("euca.cloud.sc_export", args)
    assert not again.failed and not again.result["changed"] and again.result["export"]["pid"] == new
    gone = run_module("euca.cloud.sc_export", dict(args, state="absent"))
    assert not gone.failed and gone.result["changed"] and env["supervisor"].pid(program) == 0
    assert not (env["supervisor"].programs / (program + ".conf")).exists() and not aoe_probe(env)


def test_postgres_comes_back_and_answers_a_ledger_read(cloud):
    env = cloud

    def state():
        try:
            with db.Ledger(env["ledger"], timeout=2) as ledger:
                with ledger.read() as txn:
                    return txn.value("SELECT state FROM instances WHERE id = ?", env["instance"])
        except Exception:  # the server is not back yet
            return None

    assert state() == "running"
    old, new, took = kill_and_wait(env, "euca-postgres")
    got, answered = wait_for("the ledger answers", state)
    report("postgres", took + answered)
    assert got == "running"


DHCP_REPORT = """#!/bin/sh
[ "$1" = bound ] && echo "LEASE $ip"
exit 0
"""


def test_dnsmasq_comes_back_and_hands_out_the_reservation(cloud):
    env = cloud
    with db.Ledger(env["ledger"], timeout=10) as ledger:
        with ledger.read() as txn:
            row = txn.row("SELECT i.mac, i.private_ip, g.segment_id FROM instances i JOIN security_groups g "
                          "ON g.name = i.group_name WHERE i.id = ?", env["instance"])
    script = env["work"] / "udhcpc-report.sh"
    script.write_text(DHCP_REPORT)
    script.chmod(0o755)
    client = _netns.Netns.create()
    try:
        # a second port with the instance's MAC on its segment: the client asks for the instance's lease
        env["ns"].ip("link", "add", "eut-dhcpc", "type", "veth", "peer", "name", "eth0", "address", row["mac"],
                     "netns", client.name)
        env["ns"].ip("link", "set", "eut-dhcpc", "master", "eubr-%d" % row["segment_id"], "up")
        client.ip("link", "set", "eth0", "up")

        def leased():
            out = client.run("busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "3", "-T", "1", "-s", str(script),
                             check=False, timeout=30)
            got = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("LEASE ")]
            return got[0] if got else None

        assert leased() == row["private_ip"]
        old, new, took = kill_and_wait(env, "euca-dhcp")
        got, answered = wait_for("a lease from the new dnsmasq", leased)
        report("dnsmasq", took + answered)
        assert got == row["private_ip"]
    finally:
        env["ns"].ip("link", "del", "eut-dhcpc", check=False)
        client.delete()
