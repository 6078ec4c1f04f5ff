"""A private libvirtd in a throwaway namespace, started the way the nc role will start it.

The configuration and argv come from the collection (module_utils/compute/libvirtd.py). The
QEMU capability cache lives in ``<repo>/.cache/libvirt-cache`` so that only the first session
on a machine pays the 8-12 s probe.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ansible_collections.euca.cloud.plugins.module_utils.compute import libvirtd as lv

from . import netns as _netns

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = REPO_ROOT / ".cache" / "libvirt-cache"


class Libvirtd:
    """libvirtd in ``ns`` with private directories under ``state_dir``."""

    def __init__(self, ns: _netns.Netns, state_dir: str):
        self.ns = ns
        self.state_dir = state_dir
        self.uri = lv.uri(state_dir)
        self.proc = None

    def start(self, timeout: float = 30) -> "Libvirtd":
        CACHE.mkdir(parents=True, exist_ok=True)
        lv.prepare(self.state_dir, cache_dir=str(CACHE))
        log = open(os.path.join(self.state_dir, "libvirtd.stderr"), "w")
        self.proc = subprocess.Popen(lv.argv(self.ns.name, self.state_dir, cache_dir=str(CACHE)),
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.ns.procs.append(self.proc)
        deadline = time.monotonic() + timeout
        while not os.path.exists(lv.socket_path(self.state_dir)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("libvirtd did not start: " + Path(log.name).read_text()[-2000:])
            time.sleep(0.05)
        return self

    def connect(self):
        import libvirt
        return libvirt.open(self.uri)

    def stop(self) -> None:
        """Destroy and undefine what is left, then stop the daemon (by pid)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        remove_domains(self.uri)
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.state_dir, ignore_errors=True)


def start_in(ns: _netns.Netns, base_dir: str | None = None) -> Libvirtd:
    """Start a private libvirtd in ``ns``; its state lives in a fresh directory."""
    state = tempfile.mkdtemp(prefix="euca-lv-", dir=base_dir)
    return Libvirtd(ns, state).start()


def remove_domains(uri: str):
    """Destroy and undefine every domain of the libvirtd at ``uri`` (teardown: it goes on whatever
    happens, the namespace teardown kills the rest). Returns the libvirt error, or None."""
    import libvirt
    try:
        conn = libvirt.open(uri)
        for dom in conn.listAllDomains():
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        conn.close()
    except libvirt.libvirtError as exc:
        return exc
    return None
