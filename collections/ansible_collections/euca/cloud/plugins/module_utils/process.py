# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way euca.cloud runs programs: captured output, and the command in the error.

``namespace`` runs the program inside that network namespace (``ip netns exec``), the way
Neutron's agents do; the all-in-one sandbox keeps the whole cloud in namespaces this way.
Batches (``ip -batch -``, ``nft -f -``, ``iptables-restore``) go through ``input``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import subprocess

from ansible_collections.euca.cloud.plugins.module_utils.errors import EucaError, InvalidInput

NETNS_DIR = "/run/netns"
_NETNS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class CommandFailed(EucaError):
    """A program exited non-zero; ``msg`` holds the command line and its stderr."""


def check_namespace(namespace):
    """Refuse a namespace that does not exist (before anything is changed); None is the host's own."""
    if namespace is None:
        return None
    if not _NETNS_NAME.match(namespace):
        raise InvalidInput("namespace %r is not a valid network namespace name" % (namespace,))
    if not os.path.exists(os.path.join(NETNS_DIR, namespace)):
        raise InvalidInput(
            "network namespace %s does not exist (ip netns list); create it first or drop the namespace option" % namespace
        )
    return namespace


def in_namespace(argv, namespace=None):
    """``argv`` prefixed so it runs inside ``namespace``."""
    argv = [str(a) for a in argv]
    return (["ip", "netns", "exec", namespace] + argv) if namespace else argv


def run(argv, namespace=None, data=None, check=True, env=None, timeout=None):
    """Run a program; return ``(rc, stdout, stderr)``. With ``check`` a non-zero exit raises
    CommandFailed naming the command and its stderr."""
    full = in_namespace(argv, namespace)
    try:
        proc = subprocess.run(
            full, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
            env=env, timeout=timeout, check=False,
        )
    except OSError as exc:
        raise CommandFailed("cannot run %s: %s" % (" ".join(full), exc))
    except subprocess.TimeoutExpired:
        raise CommandFailed("%s did not finish within %ss" % (" ".join(full), timeout))
    if check and proc.returncode != 0:
        first_lines = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[:20])
        raise CommandFailed("%s failed (rc=%d): %s" % (" ".join(full), proc.returncode, first_lines),
                            rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)
    return proc.returncode, proc.stdout, proc.stderr
