# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A private libvirtd inside a network namespace (ARCHITECTURE §8).

The daemon gets its own configuration, runtime, state, log and cache directories under one
state directory. They are bind-mounted over the standard paths inside the private mount
namespace that ``ip netns exec`` creates, so the host's /etc/libvirt, /run/libvirt and any host
libvirtd are never touched, and the taps of its guests land in the namespace. No libvirt
network is ever defined or started: instances use our segment bridges.

libvirtd runs in the foreground (``argv()``) so that a service manager (supervisord where
systemd is not PID 1) or the test harness supervises it by pid. QEMU runs as root without
libvirt's cgroup, namespace and security-driver setup: what a container or CI host allows.
The first client call after a start probes QEMU's capabilities (8-12 s under TCG); the
result is cached in the cache directory, which may live outside the state directory so a
rebuilt sandbox starts fast.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shlex
import shutil
import uuid

MOUNTS = (("etc", "/etc/libvirt"), ("run", "/run/libvirt"), ("lib", "/var/lib/libvirt"),
          ("log", "/var/log/libvirt"), ("cache", "/var/cache/libvirt"))

QEMU_CONF = """
# euca.cloud: QEMU as root, no cgroups, namespaces or security driver (containers, CI);
# console logs written by QEMU itself (no virtlogd).
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
stdio_handler = "file"
cgroup_controllers = [ ]
"""


def paths(state_dir, cache_dir=None):
    """The private directories: name -> host path (``cache`` may be shared between runs)."""
    out = dict((name, os.path.join(state_dir, name)) for name, _target in MOUNTS)
    if cache_dir:
        out["cache"] = cache_dir
    out["pid"] = os.path.join(state_dir, "libvirtd.pid")
    return out


def uri(state_dir):
    """The libvirt URI of the private daemon (its socket lives in the state directory)."""
    return "qemu+unix:///system?socket=%s" % os.path.join(state_dir, "run", "libvirt-sock")


def socket_path(state_dir):
    """The daemon's read-write socket; it exists once the daemon accepts clients."""
    return os.path.join(state_dir, "run", "libvirt-sock")


def prepare(state_dir, cache_dir=None, source="/etc/libvirt", listen_address=None):
    """Create the private directories and configuration; keep them when they exist.

    The host UUID is generated once and kept: two daemons with the same one refuse to
    migrate between each other ("Attempt to migrate guest to the same host").
    Returns ``paths()``.
    """
    where = paths(state_dir, cache_dir)
    for name, _target in MOUNTS:
        if name != "etc":
            os.makedirs(where[name], exist_ok=True)
    etc = where["etc"]
    if not os.path.isdir(etc):
        staging = etc + ".new"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging, symlinks=True)
        # the host's network definitions (default NAT network, autostart links) stay behind
        shutil.rmtree(os.path.join(staging, "qemu", "networks"), ignore_errors=True)
        with open(os.path.join(staging, "qemu.conf"), "a") as handle:
            handle.write(QEMU_CONF)
        lines = ['log_outputs = "3:file:/var/log/libvirt/libvirtd.log"',
                 'host_uuid = "%s"' % uuid.uuid4()]
        if listen_address:
            lines += ["listen_tcp = 1", "listen_tls = 0", 'auth_tcp = "none"', 'listen_addr = "%s"' % listen_address]
        with open(os.path.join(staging, "libvirtd.conf"), "a") as handle:
            handle.write("\n# euca.cloud\n" + "\n".join(lines) + "\n")
        os.rename(staging, etc)
    return where


def argv(namespace, state_dir, cache_dir=None, listen=False):
    """The command that runs the private libvirtd in the foreground inside ``namespace``."""
    where = paths(state_dir, cache_dir)
    q = shlex.quote
    mounts = " && ".join("mkdir -p %s && mount --bind %s %s" % (q(target), q(where[name]), q(target)) for name, target in MOUNTS)
    daemon = "exec libvirtd%s --pid-file %s" % (" --listen" if listen else "", q(where["pid"]))
    return ["ip", "netns", "exec", namespace, "sh", "-c", "%s && %s" % (mounts, daemon)]
