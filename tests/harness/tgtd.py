"""A tgtd (userspace iSCSI target) in a throwaway namespace, with its own control socket.

The argv is the collection's (storage/exports.py tgtd_argv), as the storage controller's
service manager runs it; sc_export reaches it
through ``TGT_IPC_SOCKET``. tgtd ignores SIGTERM while targets exist, so stop() deletes the
targets (forcing off sessions) and asks tgtd to exit before it falls back to SIGKILL by pid.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

from ansible_collections.euca.cloud.plugins.module_utils.storage.exports import tgtd_argv

from . import netns as _netns


class Tgtd:
    def __init__(self, ns: _netns.Netns, portal: str, state_dir: str):
        self.ns = ns
        self.portal = portal
        self.socket = os.path.join(state_dir, "tgtd-socket")
        self.state_dir = state_dir
        self.proc = None

    @property
    def env(self) -> dict:
        return dict(os.environ, TGT_IPC_SOCKET=self.socket)

    def tgtadm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        run = subprocess.run(["tgtadm", "-C", "0", *args], env=self.env, capture_output=True, text=True)
        if check and run.returncode != 0:
            raise RuntimeError("tgtadm %s: %s" % (" ".join(args), run.stderr))
        return run

    def start(self, timeout: float = 15) -> "Tgtd":
        log = open(os.path.join(self.state_dir, "tgtd.log"), "w")
        argv = tgtd_argv(self.portal, self.ns.name)
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=self.env)
        self.ns.procs.append(self.proc)
        deadline = time.monotonic() + timeout
        while self.tgtadm("--op", "show", "--mode", "portal", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("tgtd did not start: " + open(log.name).read()[-2000:])
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        out = self.tgtadm("--lld", "iscsi", "--op", "show", "--mode", "target", check=False).stdout
        for line in out.splitlines():
            if line.startswith("Target "):
                tid = line.split()[1].rstrip(":")
                self.tgtadm("--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", tid, "--force",
                            check=False)
        self.tgtadm("--op", "delete", "--mode", "system", check=False)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_in(ns: _netns.Netns, portal: str, base_dir: str | None = None) -> Tgtd:
    return Tgtd(ns, portal, tempfile.mkdtemp(prefix="euca-tgt-", dir=base_dir)).start()
