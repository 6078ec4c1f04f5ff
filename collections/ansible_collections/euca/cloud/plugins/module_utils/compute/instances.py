# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Instance lifecycle on a node controller: gather -> plan -> diff -> apply (ARCHITECTURE §4 step 3).

An instance is a persistent libvirt domain plus a directory ``<instances_dir>/<id>`` holding
its qcow2 overlay (backed by the image cache's file, never a copy of it), its NoCloud seed and
its console log. The domain is (re)defined only when the normalised spec differs from the one
libvirt has; a spec change on a running domain takes effect at its next start
(``restart_required``). Each NIC's bridge port gets hairpin mode, so an instance can reach its
own elastic IP through the CC's NAT (the bridge would otherwise never send a frame back out of
the port it came in on).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.euca.cloud.plugins.module_utils.base import EucaModule
from ansible_collections.euca.cloud.plugins.module_utils.compute import console, cpu_group, domain, seed, volumes
from ansible_collections.euca.cloud.plugins.module_utils.compute.image_cache import ImageCache
from ansible_collections.euca.cloud.plugins.module_utils.errors import Conflict, EucaError, InvalidInput
from ansible_collections.euca.cloud.plugins.module_utils.process import run

try:
    import libvirt
    HAS_LIBVIRT = True
    LIBVIRT_IMPORT_ERROR = None
except ImportError as exc:  # reported by the module with missing_required_lib
    HAS_LIBVIRT = False
    LIBVIRT_IMPORT_ERROR = exc

STATES = ("running", "stopped", "absent")
DEFAULT_KERNEL_ARGS = "console=ttyS0 panic=-1 no_timer_check"


class LibvirtFailed(EucaError):
    """libvirt refused an operation."""


def connect(uri):
    """A libvirt connection, or LibvirtFailed naming the URI."""
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise LibvirtFailed("cannot connect to libvirt at %s: %s (is libvirtd running there?)" % (uri, exc))


class LibvirtModule(EucaModule):
    """Base of the node modules that talk to libvirt: a missing libvirt-python is reported the
    Ansible way, input is checked before connecting (``prepare``), and one connection serves the
    run (``with_connection``)."""

    def __init__(self):
        super(LibvirtModule, self).__init__()
        if not HAS_LIBVIRT:
            self.ansible.fail_json(msg=missing_required_lib("libvirt-python"), exception=str(LIBVIRT_IMPORT_ERROR))

    def prepare(self):
        """Check the input; nothing is touched and no connection is made yet."""

    def with_connection(self, conn):
        """Do the work with ``conn``; return the module result."""
        raise NotImplementedError

    def run(self):
        self.prepare()
        conn = connect(self.params["uri"])
        try:
            return self.with_connection(conn)
        finally:
            conn.close()


def _state_name(dom):
    if dom is None:
        return "absent"
    state = dom.state()[0]
    if state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED, libvirt.VIR_DOMAIN_PAUSED):
        return "running"
    if state == libvirt.VIR_DOMAIN_SHUTDOWN:
        return "stopping"
    return "stopped"


#: libvirt's reasons for a shut-off domain, in the words observations use (VIR_DOMAIN_SHUTOFF_*)
SHUTOFF_REASONS = ("unknown", "shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from-snapshot",
                   "daemon")


def _state_reason(dom):
    """Why a shut-off domain is shut off (``shutdown`` by the guest or ACPI, ``destroyed``, ``crashed``...);
    empty for a domain that runs."""
    state, reason = dom.state()
    if state != libvirt.VIR_DOMAIN_SHUTOFF:
        return ""
    return SHUTOFF_REASONS[reason] if 0 <= reason < len(SHUTOFF_REASONS) else "unknown"


def observe(conn):
    """Every instance domain libvirt has on this node (names that are instance ids; others are not ours),
    as the node reports them to its cluster: ``[{name, uuid, state, reason}]`` sorted by name, ``state``
    ``running``, ``stopping`` or ``stopped`` and ``reason`` why a stopped one is shut off. Reads only."""
    out = []
    for dom in conn.listAllDomains():
        name = dom.name()
        if not domain.NAME_RE.match(name):
            continue
        try:
            out.append({"name": name, "uuid": dom.UUIDString(), "state": _state_name(dom), "reason": _state_reason(dom)})
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # undefined while we looked: it is gone
                raise
    return sorted(out, key=lambda d: d["name"])


def bridges(namespace):
    """Names of the bridges in ``namespace`` (the host's when None)."""
    _rc, out, _err = run(["ip", "-j", "link", "show", "type", "bridge"], namespace=namespace)
    return set(link["ifname"] for link in json.loads(out or "[]"))


class Instance:
    """One instance on this node; ``params`` are the nc_instance module's options."""

    def __init__(self, params):
        self.p = params
        self.name = params["name"]
        self.dir = os.path.join(params["instances_dir"], self.name)
        self.cache = ImageCache(params["cache_dir"])

    # ------------------------------------------------------------------ desired spec
    def desired(self):
        """Validate the options and build the normalised spec; nothing is touched."""
        p = self.p
        if not domain.NAME_RE.match(self.name or ""):
            raise InvalidInput("instance name %r must be an instance id such as i-0a1b2c3d" % (self.name,))
        if p.get("cpu_group"):
            cpu_group.path(p["cpu_group"])
        if p["state"] == "absent":
            return None
        root_volume = p.get("root_volume")
        if root_volume:
            volumes.check_volume(root_volume)
            root_source = volumes.check_source(p.get("root_source"))
        elif not p.get("image"):
            raise InvalidInput("image (or root_volume, to boot from a volume) is required with state=%s" % p["state"])
        if p["vcpus"] < 1:
            raise InvalidInput("vcpus must be at least 1, not %d" % p["vcpus"])
        if p["memory_mb"] < 1:
            raise InvalidInput("memory_mb must be at least 1, not %d" % p["memory_mb"])
        if p.get("ramdisk") and not p.get("kernel"):
            raise InvalidInput("a ramdisk needs a kernel (direct kernel boot)")
        nics, macs = [], set()
        for index, nic in enumerate(p["nics"] or []):
            mac = domain.check_mac(nic.get("mac"))
            if mac in macs:
                raise InvalidInput("MAC %s is given to two NICs" % mac)
            macs.add(mac)
            if not nic.get("bridge"):
                raise InvalidInput("NIC %d (%s) needs a bridge" % (index, mac))
            nics.append({"bridge": nic["bridge"], "mac": mac, "port": domain.port_name(self.name, index)})
        # Images must be in the node's cache: launch never downloads, and never copies.
        root_base = self.cache.path(p["image"]) if not root_volume else None
        kernel = self.cache.path(p["kernel"]) if p.get("kernel") else None
        ramdisk = self.cache.path(p["ramdisk"]) if p.get("ramdisk") else None
        virt_type = p["virt_type"]
        if virt_type == "auto":
            virt_type = "kvm" if domain.kvm_usable() else "qemu"
        hostname = p.get("hostname") or self.name
        self.base = root_base
        keys = [k for k in (p.get("public_keys") or []) if k]
        self.seed_keys = keys
        self.seed_content = (seed.meta_data(self.name, hostname, keys), p.get("user_data"))
        with_seed = p.get("seed", True) is not False
        return {
            "name": self.name,
            "virt_type": virt_type,
            "os_profile": p["os_profile"],
            "vcpus": p["vcpus"],
            "memory_mb": p["memory_mb"],
            "kernel": kernel,
            "ramdisk": ramdisk,
            "kernel_args": (p.get("kernel_args") or DEFAULT_KERNEL_ARGS) if kernel else None,
            "root": volumes.url(root_source) if root_volume else os.path.join(self.dir, "root.qcow2"),
            "root_volume": root_volume or None,
            "seed": os.path.join(self.dir, "seed.iso") if with_seed else None,
            "console_log": os.path.join(self.dir, "console.log"),
            "nics": nics,
            "images": dict((k, p[k]) for k in ("image", "kernel", "ramdisk") if p.get(k) and not (
                k == "image" and root_volume)),
            "seed_digest": domain.seed_digest(*self.seed_content) if with_seed else None,
        }

    def check_bridges(self, spec):
        """Every NIC's bridge must exist where libvirtd runs."""
        have = bridges(self.p.get("namespace"))
        for nic in spec["nics"]:
            if nic["bridge"] not in have:
                raise InvalidInput("bridge %s of NIC %s does not exist%s; converge the instance's segment first "
                                   "(euca.cloud.segment)" % (nic["bridge"], nic["mac"], self._where()))

    def _where(self):
        return " in namespace %s" % self.p["namespace"] if self.p.get("namespace") else ""

    # ------------------------------------------------------------------ gather
    def gather(self, conn):
        """``(dom, spec, state)`` of the domain as libvirt has it (None, None, 'absent' when undefined)."""
        try:
            dom = conn.lookupByName(self.name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None, None, "absent"
            raise
        return dom, domain.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)), _state_name(dom)

    # ------------------------------------------------------------------ converge
    def converge(self, conn, check_mode=False):
        """Bring the instance to the requested state; returns the module result."""
        want_state = self.p["state"]
        want = self.desired()
        if want is not None:
            self.check_bridges(want)
        dom, have, state = self.gather(conn)
        if want is not None and have is not None and have.get("root") and have["root"] != want["root"]:
            raise Conflict("domain %s exists with root disk %s, not one of this node's instances at %s"
                           % (self.name, have["root"], want["root"]))
        actions = []
        if want_state == "absent":
            if dom is not None:
                actions += (["destroy"] if state != "stopped" else []) + ["undefine"]
            if os.path.exists(self.dir):
                actions.append("remove files")
        else:
            if have is None or domain.differences(have, want):
                actions.append("define" if have is None else "redefine")
            if not want["root_volume"] and not os.path.exists(want["root"]):
                actions.append("create overlay")
            if want["seed"] and (not os.path.exists(want["seed"]) or (have or {}).get("seed_digest") != want["seed_digest"]):
                actions.append("write seed")
            if want_state == "running" and state != "running":
                actions.append("start")
            if want_state == "stopped" and state in ("running", "stopping"):
                actions.append("stop")
        restart_required = bool(want_state == "running" and state == "running" and
                                set(actions) & {"redefine", "write seed"})
        result = {"changed": bool(actions), "actions": actions, "restart_required": restart_required,
                  "previous_state": state, "diff": {"before": have or {}, "after": want or {}}}
        if check_mode or not actions:
            # bridge ports and their hairpin mode are runtime state: repair them even when nothing else changes
            if not check_mode and want_state == "running" and state == "running" and self.ensure_ports(dom):
                result["changed"] = True
                actions.append("ports")
            if not check_mode and want_state == "running" and state == "running" and self.ensure_cpu_group(dom):
                result["changed"] = True
                actions.append("cpu group")
            result["instance"] = self.describe(dom, want or have, state if not actions else None)
            return result
        try:
            dom = self.apply(conn, dom, want, actions)
        except libvirt.libvirtError as exc:
            raise LibvirtFailed("instance %s: %s failed: %s" % (self.name, ", ".join(actions), exc))
        result["instance"] = self.describe(dom, want or have)
        return result

    def apply(self, conn, dom, want, actions):
        """Carry out ``actions`` in a safe order; returns the domain (None once undefined)."""
        p = self.p
        if p["state"] == "absent":
            if "destroy" in actions:
                dom.destroy()
            if "undefine" in actions:
                dom.undefine()
                dom = None
            shutil.rmtree(self.dir, ignore_errors=True)
            self._unpin_all()
            return None
        # searchable, not listable: the host's libvirtd runs QEMU as its own user (libvirt-qemu), which must
        # reach the files libvirt hands it (dynamic ownership) inside
        os.makedirs(self.dir, mode=0o711, exist_ok=True)
        for image_id in want["images"].values():
            self.cache.pin(image_id, self.name)
        if "create overlay" in actions:
            self.create_overlay(want["root"])
        if "write seed" in actions:
            seed.write(want["seed"], self.name, *self._seed_args())
        if "define" in actions:
            dom = conn.defineXML(domain.render(want))
        elif "redefine" in actions:
            dom = conn.defineXML(domain.render(want, uuid=dom.UUIDString(),
                                               current=dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
        if "stop" in actions:
            self.stop(dom)
        if "start" in actions:
            dom.create()
            self.ensure_ports(dom)
            self.ensure_cpu_group(dom)
        if p["wait"]:
            self.wait_for(dom, p["state"])
        return dom

    def _seed_args(self):
        meta, user_data = self.seed_content
        hostname = meta.split("local-hostname: ", 1)[1].split("\n", 1)[0].strip()
        return hostname, user_data, self.seed_keys

    def _unpin_all(self):
        # the domain may be gone already: unpin wherever this instance is a holder
        for entry in self.cache.entries():
            if self.name in entry["pins"]:
                self.cache.unpin(entry["id"], self.name)

    def create_overlay(self, path):
        """A qcow2 overlay over the cached base: creation time does not depend on the base's size."""
        base_format = "qcow2" if self._is_qcow2(self.base) else "raw"
        argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", base_format, "-b", self.base]
        partial = path + ".partial"
        argv.append(partial)
        if self.p.get("root_size_gb"):
            argv.append("%dG" % self.p["root_size_gb"])
        run(argv)
        os.rename(partial, path)

    @staticmethod
    def _is_qcow2(path):
        with open(path, "rb") as handle:
            return handle.read(4) == b"QFI\xfb"

    def stop(self, dom):
        """ACPI shutdown, then power off after ``shutdown_timeout`` seconds."""
        deadline = time.monotonic() + self.p["shutdown_timeout"]
        if self.p["shutdown_timeout"] > 0:
            try:
                dom.shutdown()
            except libvirt.libvirtError:
                pass
            while time.monotonic() < deadline and dom.isActive():
                time.sleep(0.2)
        if dom.isActive():
            dom.destroy()

    def wait_for(self, dom, state):
        """Wait until libvirt reports ``state`` (running/stopped), up to ``timeout`` seconds."""
        deadline = time.monotonic() + self.p["timeout"]
        while _state_name(dom) != state:
            if time.monotonic() > deadline:
                raise LibvirtFailed("instance %s is %s, not %s, after %ss"
                                    % (self.name, _state_name(dom), state, self.p["timeout"]))
            time.sleep(0.1)

    def ensure_ports(self, dom):
        """Every NIC's tap is a port of its bridge, with hairpin mode; True when one had to be repaired.

        A bridge deleted and rebuilt (drift, then reconcile) comes back without the running guests'
        taps, and libvirt does not plug them in again: this does.
        """
        changed = False
        namespace = self.p.get("namespace")
        # one read of every link (master and the bridge port's hairpin flag) instead of two per NIC
        _rc, out, _err = run(["ip", "-d", "-j", "link", "show"], namespace=namespace)
        links = dict((link["ifname"], link) for link in json.loads(out or "[]"))
        for nic in domain.parse(dom.XMLDesc(0))["nics"]:
            link = links.get(nic["port"])
            if link is None:
                continue
            if nic.get("bridge") and link.get("master") != nic["bridge"]:
                run(["ip", "link", "set", "dev", nic["port"], "master", nic["bridge"], "up"], namespace=namespace)
                link = {"master": nic["bridge"]}  # a new port: hairpin is off
                changed = True
            slave = link.get("linkinfo", {}).get("info_slave_data", {})
            if link.get("master") and not slave.get("hairpin"):
                run(["bridge", "link", "set", "dev", nic["port"], "hairpin", "on"], namespace=namespace)
                changed = True
        return changed

    def ensure_cpu_group(self, dom):
        """The running guest's QEMU is in O(cpu_group) when one is given (compute/cpu_group.py); True when it
        had to be moved there."""
        group = self.p.get("cpu_group")
        if not group:
            return False
        pid = cpu_group.qemu_pid(self.name, dom.UUIDString())
        if pid is None:
            raise LibvirtFailed("instance %s runs, but no QEMU process of it was found to put in cpu_group %s"
                                % (self.name, group))
        try:
            return cpu_group.place(group, pid)
        except (IOError, OSError) as exc:
            raise LibvirtFailed("instance %s: cannot put its QEMU process %d in cpu_group %s: %s"
                                % (self.name, pid, group, exc))

    def describe(self, dom, spec, state=None):
        """What the module returns about the instance."""
        spec = spec or {}
        return {
            "name": self.name,
            "uuid": dom.UUIDString() if dom is not None else None,
            "state": state or _state_name(dom),
            "virt_type": spec.get("virt_type"),
            "overlay": spec.get("root") if not spec.get("root_volume") else None,
            "root_volume": spec.get("root_volume"),
            "seed": spec.get("seed"),
            "console_log": spec.get("console_log"),
            "interfaces": spec.get("nics", []),
        }


#: how many instances a node converges at once by default (module option ``parallel``)
DEFAULT_PARALLEL = 8


def _outcome(name, item, run):
    """One batch item's result: ``run()``'s result, or its failure, with ``name``, ``item``, ``failed``, ``msg``."""
    try:
        result = run()
    except EucaError as exc:
        result = dict(exc.details, changed=False, failed=True, msg=exc.msg)
    except Exception as exc:  # a bug in one item must not hide the others' results
        result = {"changed": False, "failed": True, "exception": traceback.format_exc(),
                  "msg": "euca.cloud internal error: %s: %s" % (type(exc).__name__, exc)}
    else:
        result = dict(result, failed=False)
        result.setdefault("msg", "instance %s: %s" % (name, ", ".join(result.get("actions") or []) or "unchanged"))
    result.update(name=name, item=item)
    return result


def converge_many(items, uri, parallel=DEFAULT_PARALLEL, check_mode=False):
    """Converge many instances of this node at once (nc_instance's ``instances``); returns one result per item,
    in order, each as ``Instance.converge`` returns it plus ``name``, ``item``, ``failed`` and ``msg``.

    ``items`` are ``(name, item, params)``: the item as given, and the options of its instance (or the
    InvalidInput that refused them). Up to ``parallel`` instances converge at a time, each worker thread with
    its own libvirt connection (opened when it first needs one). One item's failure never stops another:
    it is that item's result. What the items share is safe to share: each has its own directory, overlay,
    seed and taps; image pins take the image's lock; libvirtd serialises what it must per domain.
    Items that name the same instance are refused after the first, which runs.
    """
    local = threading.local()
    opened, opened_lock = [], threading.Lock()

    def connection():
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = connect(uri)
            with opened_lock:
                opened.append(conn)
        return conn

    def one(name, params):
        if isinstance(params, EucaError):
            raise params
        instance = Instance(params)
        instance.desired()  # input errors before any connection, as for a single instance
        return instance.converge(connection(), check_mode=check_mode)

    seen = set()
    jobs = []
    for name, item, params in items:
        if name in seen and not isinstance(params, EucaError):
            params = InvalidInput("instance %s is given more than once in instances" % name)
        seen.add(name)
        jobs.append((name, item, params))
    workers = max(1, min(int(parallel), len(jobs)))
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_outcome, name, item, lambda n=name, p=params: one(n, p)) for name, item, params in jobs]
            return [future.result() for future in futures]
    finally:
        for conn in opened:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass


def console_tail(path, max_bytes=16384, lines=None):
    """The end of a console log (``lines`` last lines, or ``max_bytes`` bytes), as text (compute/console.py reads it)."""
    text = console.read_tail(path, max_bytes)[0].decode("utf-8", "replace")
    if lines:
        text = "\n".join(text.splitlines()[-lines:])
    return text


ACTIONS = ("reboot", "console")


def act(conn, params, check_mode=False):
    """The nc_instance_action module: an imperative verb on an existing instance."""
    name = params["name"]
    if not domain.NAME_RE.match(name or ""):
        raise InvalidInput("instance name %r must be an instance id such as i-0a1b2c3d" % (name,))
    console_log = os.path.join(params["instances_dir"], name, "console.log")
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise InvalidInput("instance %s is not defined on this node (%s)" % (name, params["uri"]))
        raise
    if params["action"] == "console":
        return {"changed": False, "output": console_tail(console_log, params["bytes"], params["lines"])}
    # reboot
    if _state_name(dom) != "running":
        raise Conflict("instance %s is %s; only a running instance can be rebooted (start it with "
                       "euca.cloud.nc_instance state=running)" % (name, _state_name(dom)))
    if check_mode:
        return {"changed": True, "method": params["method"]}
    try:
        if params["method"] == "reset":
            dom.reset(0)
        else:
            dom.reboot(libvirt.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN)
    except libvirt.libvirtError as exc:
        raise LibvirtFailed("instance %s: %s reboot failed: %s" % (name, params["method"], exc))
    if params["wait"]:
        deadline = time.monotonic() + params["timeout"]
        while _state_name(dom) != "running":
            if time.monotonic() > deadline:
                raise LibvirtFailed("instance %s did not come back within %ss" % (name, params["timeout"]))
            time.sleep(0.1)
    return {"changed": True, "method": params["method"]}
