# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A node's guests in one CPU cgroup, so that together they weigh as one against the host's own work.

Where libvirt manages cgroups, every guest's QEMU goes under its machine partition (systemd's
``machine.slice``): however many guests boot at once, the host's own services (the NC's modules,
libvirtd, the CC on an all-in-one host) keep their share of the CPU. The NC's private libvirtd runs
without cgroups (``cgroup_controllers = [ ]``, compute/libvirtd.py: what a container or CI host
allows), so its guests are flat peers of every host process: 24 TCG guests booting on 2 cores left
each module run about 1/13 of a core, and recording that they run took 30 s. euca.cloud.nc_instance
with ``cpu_group`` puts each running guest's QEMU process in that group of the cpu controller
(cgroup v1 ``/sys/fs/cgroup/cpu/<group>``, or the unified hierarchy's ``/sys/fs/cgroup/<group>``),
created with the controller's default weight: the guests as a whole weigh what one busy host process does.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput

CGROUP_ROOT = "/sys/fs/cgroup"
# a relative path of plain names: nothing that climbs out of the controller's hierarchy
GROUP_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}){0,3}$")


def check(group):
    """``group`` as given, or InvalidInput (before anything changes)."""
    if not GROUP_RE.match(group or ""):
        raise InvalidInput("cpu_group %r must be a relative cgroup path of up to four names (letters, digits, "
                           "'_', '.', '-'), such as euca-guests" % (group,))
    return group


def hierarchy(root=CGROUP_ROOT):
    """The directory of the cpu controller's hierarchy on this host, or None without one."""
    v1 = os.path.join(root, "cpu")
    if os.path.exists(os.path.join(v1, "cgroup.procs")):
        return v1
    try:
        with open(os.path.join(root, "cgroup.controllers")) as handle:
            if "cpu" in handle.read().split():
                return root
    except (IOError, OSError):
        pass
    return None


def path(group, root=CGROUP_ROOT):
    """The group's directory, or InvalidInput on a host without a cpu controller."""
    top = hierarchy(root)
    if top is None:
        raise InvalidInput("cpu_group %s: this host has no cpu cgroup controller mounted under %s" % (group, root))
    return os.path.join(top, check(group))


def qemu_pid(name, uuid, proc="/proc"):
    """The pid of the QEMU process of domain ``name`` (libvirt's ``-name guest=<name>,...`` and
    ``-uuid <uuid>`` on its command line), or None."""
    want_name, want_uuid = ("guest=%s," % name).encode(), uuid.encode()
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "cmdline"), "rb") as handle:
                argv = handle.read().split(b"\0")
        except (IOError, OSError):
            continue
        if not argv or b"qemu" not in os.path.basename(argv[0]):
            continue
        if any(arg.startswith(want_name) for arg in argv) and want_uuid in argv:
            return int(entry)
    return None


def members(directory):
    """The pids in the group."""
    try:
        with open(os.path.join(directory, "cgroup.procs")) as handle:
            return set(int(line) for line in handle if line.strip())
    except (IOError, OSError):
        return set()


def place(group, pid, root=CGROUP_ROOT):
    """Put process ``pid`` (all its threads) in ``group``, creating it; True when it was moved."""
    directory = path(group, root)
    if pid in members(directory):
        return False
    if not os.path.isdir(directory):
        os.makedirs(directory)
    with open(os.path.join(directory, "cgroup.procs"), "w") as handle:
        handle.write("%d\n" % pid)
    return True


def remove(group, root=CGROUP_ROOT):
    """Remove the group (and its subgroups) once no process is in it; True when it was removed.
    InvalidInput while processes are still there."""
    top = hierarchy(root)
    if top is None:
        return False
    directory = os.path.join(top, check(group))
    if not os.path.isdir(directory):
        return False
    for here, subdirs, _files in os.walk(directory, topdown=False):
        left = members(here)
        if left:
            raise InvalidInput("cpu_group %s still holds processes %s" % (group, ", ".join(str(p) for p in sorted(left))))
        os.rmdir(here)
    return True
