"""A throwaway Ceph cluster for tests: one mon, one mgr, one bluestore OSD on a sparse file, in a
network namespace of the test's own, from Debian's packages (no systemd, cephadm, LVM or device-mapper).

Every daemon runs in the foreground (``-f``) under ``ip netns exec``, started by this process and
tracked by pid in the namespace (``Netns.procs``), so the namespace's teardown stops them pass or
fail. Configuration, keyrings, data, logs and admin sockets all live in one temporary directory;
nothing is read from or written to /etc/ceph or /var/lib/ceph. The daemons listen on ``address``:
loopback of the namespace, or with ``storage_network`` (``10.98.0.1/24``) that address on a bridge
``st0`` of the namespace, a storage network that ``link()`` joins other namespaces to (a node's,
whose QEMU then opens RBD images over it).

What the settings are for (single replica, few PGs, a small fixed bluestore cache, a mgr without its
optional modules, quick paxos and stats for a fast start) is said where they are set. The cluster is
ready when it reports HEALTH_OK with every PG active+clean.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional

from . import netns as _netns

DAEMONS = ("ceph-mon", "ceph-mgr", "ceph-osd", "ceph-authtool", "monmaptool", "ceph", "rbd")
PACKAGES = "ceph-mon ceph-mgr ceph-osd ceph-common"


class CephUnavailable(RuntimeError):
    """Ceph cannot be run here; the message says why (used as a skip reason)."""


def missing() -> Optional[str]:
    """Why a cluster cannot start here, or None."""
    absent = [name for name in DAEMONS if shutil.which(name) is None]
    if absent:
        return "Ceph programs not installed: %s (Debian packages %s: scripts/bootstrap)" % (
            ", ".join(absent), PACKAGES)
    return _netns.can_use_netns()


CONF = """\
[global]
fsid = {fsid}
mon_host = {mon_host}
mon_initial_members = a
public_addr = {address}
cluster_addr = {address}
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false
# one OSD: one replica, and no warning about it
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
# a few PGs per pool and no autoscaler (one OSD holds every pool)
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 500
osd_crush_chooseleaf_type = 0
# the test machine's disk may be well filled: no health warning for the mon's store
mon_data_avail_warn = 2
mon_data_avail_crit = 1
# PG stats every second, so that "all PGs active+clean" shows soon after a change
mgr_stats_period = 1
mon_mgr_digest_period = 1
mgr_tick_period = 1
run_dir = {run}
crash_dir = {base}/crash
mon_data = {data}/mon.$id
osd_data = {data}/osd.$id
mgr_data = {data}/mgr.$id
mon_cluster_log_file = {log}/cluster.log
keyring = {admin_keyring}
log_file =
admin_socket =

[mon]
keyring = $mon_data/keyring
# the mon batches map changes for this long before proposing them (default 1 s)
paxos_propose_interval = 0.1
log_file = {log}/$name.log
admin_socket = {run}/$name.asok
mon_allow_pool_delete = true
mgr_initial_modules = iostat

[mgr]
keyring = $mgr_data/keyring
# the mgr imports every module it finds (~300 MiB); without the optional ones ~160 MiB
mgr_disabled_modules = alerts diskprediction_local influx insights localpool mirroring nfs osd_perf_query osd_support prometheus restful selftest snap_schedule stats telegraf test_orchestrator zabbix
log_file = {log}/$name.log
admin_socket = {run}/$name.asok

[osd]
keyring = $osd_data/keyring
log_file = {log}/$name.log
admin_socket = {run}/$name.asok
osd_objectstore = bluestore
# bluestore makes the sparse file $osd_data/block itself (leave bluestore_block_path unset:
# set to that file, mkfs links it to itself)
bluestore_block_create = true
bluestore_block_size = {osd_bytes}
bluestore_block_db_create = false
bluestore_block_wal_create = false
# a fixed small cache instead of autotuning towards 4 GiB
bluestore_cache_autotune = false
bluestore_cache_size = 134217728
osd_memory_target = 939524096
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1
osd_scrub_begin_hour = 0
osd_scrub_end_hour = 0
osd_scrub_load_threshold = 0.01
"""


class CephCluster:
    """One mon (a), one mgr (x), one OSD (0) in ``ns``; ``start()`` returns when it is healthy."""

    def __init__(self, ns: _netns.Netns, base_dir: Optional[str] = None, storage_network: Optional[str] = None,
                 osd_size_gb: int = 20, pools: tuple = ("volumes",)):
        self.ns = ns
        self.base = Path(tempfile.mkdtemp(prefix="euca-ceph-", dir=base_dir or "/var/tmp"))
        self.storage_network = ipaddress.ip_interface(storage_network) if storage_network else None
        self.address = str(self.storage_network.ip) if storage_network else "127.0.0.1"
        self.links: dict[str, str] = {}
        self.osd_bytes = osd_size_gb << 30
        self.pools = tuple(pools)
        self.fsid = str(uuid.uuid4())
        self.conf = self.base / "ceph.conf"
        self.admin_keyring = self.base / "ceph.client.admin.keyring"
        self.data, self.log, self.run_dir = self.base / "data", self.base / "log", self.base / "run"
        self.procs: dict[str, subprocess.Popen] = {}
        self.seconds_to_healthy: Optional[float] = None

    @property
    def mon_host(self) -> str:
        return "[v2:%s:3300,v1:%s:6789]" % (self.address, self.address)

    # ---------------------------------------------------------------- clients
    def command(self, program: str, *args: str, check: bool = True, timeout: float = 60,
                input: Optional[str] = None) -> subprocess.CompletedProcess:
        """A Ceph client program (ceph, rbd, ...) in the namespace, as client.admin of this cluster."""
        return _netns.run("ip", "netns", "exec", self.ns.name, program, "--conf", str(self.conf), *args,
                          check=check, timeout=timeout, input=input)

    def ceph(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.command("ceph", "--connect-timeout", "20", *args, **kwargs)

    def ceph_json(self, *args: str):
        return json.loads(self.ceph(*args, "--format", "json").stdout)

    def rbd(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.command("rbd", *args, **kwargs)

    def client_keyring(self, name: str, caps: dict) -> Path:
        """A keyring file for ``client.<name>`` with these caps (``{"mon": "profile rbd", ...}``)."""
        argv = ["auth", "get-or-create", "client." + name]
        for service, cap in caps.items():
            argv += [service, cap]
        path = self.base / ("ceph.client.%s.keyring" % name)
        path.write_text(self.ceph(*argv).stdout)
        path.chmod(0o600)
        return path

    def client_key(self, name: str) -> str:
        """The secret of ``client.<name>`` (base64), as a libvirt ceph secret holds it."""
        return self.ceph("auth", "get-key", "client." + name).stdout.strip()

    def client_key_for(self, name: str, caps: dict) -> str:
        """``client.<name>`` made with these caps (kept if it exists); its key."""
        self.client_keyring(name, caps)
        return self.client_key(name)

    def link(self, ns: _netns.Netns) -> str:
        """Join ``ns`` to the storage network (a veth into ``st0``, once); its address there."""
        if self.storage_network is None:
            raise ValueError("this cluster was started without a storage_network")
        if ns.name not in self.links:
            number = len(self.links) + 1
            address = self.storage_network.ip + number
            self.ns.veth(ns, "stc%d" % number, "eth-ceph")
            self.ns.enslave("stc%d" % number, "st0")
            ns.addr("eth-ceph", "%s/%d" % (address, self.storage_network.network.prefixlen))
            self.links[ns.name] = str(address)
        return self.links[ns.name]

    @property
    def monitors(self) -> list:
        """The mon's msgr v1 address, as libvirt's ``<host>`` of an RBD disk names it."""
        return [{"host": self.address, "port": 6789}]

    # ---------------------------------------------------------------- life cycle
    def _daemon(self, name: str, *argv: str) -> None:
        out = open(self.log / (name + ".stdout"), "ab")
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns.name, *argv, "-f", "--conf", str(self.conf)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        out.close()
        self.ns.procs.append(proc)
        self.procs[name] = proc

    def _tail(self, name: str) -> str:
        text = ""
        for path in (self.log / (name + ".stdout"), self.log / (name + ".log")):
            if path.exists():
                text += "%s:\n%s\n" % (path, path.read_text(errors="replace")[-2000:])
        return text

    def _wait(self, what: str, ready, deadline: float) -> None:
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError("%s exited (rc %s) while waiting for %s\n%s"
                                       % (name, proc.returncode, what, self._tail(name)))
            try:
                if ready():
                    return
            except (_netns.CommandError, subprocess.TimeoutExpired, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("Ceph: timed out waiting for %s\n%s" % (
                    what, self.ceph("health", "detail", check=False, timeout=30).stdout))
            time.sleep(0.25)

    def start(self, timeout: float = 180) -> "CephCluster":
        """Make and start the cluster; return when it is HEALTH_OK with every PG active+clean."""
        started = time.monotonic()
        deadline = started + timeout
        for path in (self.data, self.log, self.run_dir, self.base / "crash"):
            path.mkdir(parents=True)
        if self.storage_network is not None:
            self.ns.bridge("st0")
            self.ns.addr("st0", str(self.storage_network))
        self.conf.write_text(CONF.format(
            fsid=self.fsid, mon_host=self.mon_host, address=self.address, base=self.base, data=self.data,
            log=self.log, run=self.run_dir, admin_keyring=self.admin_keyring, osd_bytes=self.osd_bytes))
        mon_keyring, monmap = self.data / "mon.keyring", self.data / "monmap"
        _netns.run("ceph-authtool", "--create-keyring", mon_keyring, "--gen-key", "-n", "mon.",
                   "--cap", "mon", "allow *")
        _netns.run("ceph-authtool", "--create-keyring", self.admin_keyring, "--gen-key", "-n", "client.admin",
                   "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mds", "allow *",
                   "--cap", "mgr", "allow *")
        # client.admin must be in the mon's first keyring to be in its auth database
        _netns.run("ceph-authtool", mon_keyring, "--import-keyring", self.admin_keyring)
        _netns.run("monmaptool", "--create", "--fsid", self.fsid, "--addv", "a", self.mon_host, monmap)
        _netns.run("ceph-mon", "--conf", self.conf, "--mkfs", "-i", "a", "--monmap", monmap,
                   "--keyring", mon_keyring)
        self._daemon("mon.a", "ceph-mon", "-i", "a")
        self._wait("mon.a in quorum", lambda: self.ceph("mon", "stat", timeout=30), deadline)
        for option, value in (("mgr/devicehealth/enable_monitoring", "false"), ("mgr/telemetry/enabled", "false")):
            self.ceph("config", "set", "mgr", option, value, "--force")

        (self.data / "mgr.x").mkdir()
        (self.data / "mgr.x" / "keyring").write_text(self.ceph(
            "auth", "get-or-create", "mgr.x", "mon", "allow profile mgr", "osd", "allow *", "mds", "allow *").stdout)
        self._daemon("mgr.x", "ceph-mgr", "-i", "x")

        osd_uuid = str(uuid.uuid4())
        secret = _netns.run("ceph-authtool", "--gen-print-key").stdout.strip()
        osd_id = self.ceph("osd", "new", osd_uuid, "-i", "-", input=json.dumps({"cephx_secret": secret})).stdout.strip()
        if osd_id != "0":
            raise RuntimeError("ceph osd new answered id %r, not 0" % osd_id)
        (self.data / "osd.0").mkdir()
        _netns.run("ceph-authtool", "--create-keyring", self.data / "osd.0" / "keyring", "--name", "osd.0",
                   "--add-key", secret)
        self.command("ceph-osd", "-i", "0", "--mkfs", "--osd-uuid", osd_uuid, timeout=120)
        self._daemon("osd.0", "ceph-osd", "-i", "0")
        self._wait("osd.0 up", lambda: self.ceph_json("osd", "stat")["num_up_osds"] == 1, deadline)

        for pool in self.pools:
            self.ceph("osd", "pool", "create", pool, "8", "8")
            self.rbd("pool", "init", pool, timeout=120)
        self._wait("HEALTH_OK with every PG active+clean", self.healthy, deadline)
        self.seconds_to_healthy = time.monotonic() - started
        return self

    def healthy(self) -> bool:
        if not self.ceph("health", timeout=30).stdout.startswith("HEALTH_OK"):
            return False
        summary = self.ceph_json("pg", "stat")
        summary = summary.get("pg_summary", summary)
        clean = sum(s["num"] for s in summary["num_pg_by_state"] if s["name"] == "active+clean")
        return summary["num_pgs"] > 0 and clean == summary["num_pgs"]

    def stop(self) -> None:
        """Stop the daemons (by pid, newest first) and remove the cluster's directory."""
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)
        shutil.rmtree(self.base, ignore_errors=True)


def start_in(ns: _netns.Netns, **kwargs) -> CephCluster:
    """A healthy cluster in ``ns``; stopped and removed again if it does not get there."""
    reason = missing()
    if reason:
        raise CephUnavailable(reason)
    cluster = CephCluster(ns, **kwargs)
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        raise
