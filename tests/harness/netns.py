"""Throwaway network namespaces for integration tests.

Every namespace made here is named ``eut-<run tag>-<n>`` (at most 15 characters, so a
name can double as an interface name), where the run tag is unique to this Python
process. Nothing here touches the root namespace's interfaces, addresses, routes or
firewall: links are created with ``ip -n NS`` and daemons run with ``ip netns exec NS``.

Teardown kills, by pid, the processes a test started (SIGTERM, then SIGKILL) and any
process still living in the namespace (which this run created), then deletes it.
"""

from __future__ import annotations

import glob
import itertools
import os
import secrets
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence

PREFIX = "eut-"
IFNAMSIZ = 15  # usable characters of a Linux interface name
RUN_TAG = secrets.token_hex(2)  # 4 hex chars, unique per test process
_counter = itertools.count(1)

# every namespace this process created and has not deleted yet (the session safety net)
_LIVE: set[str] = set()


class CommandError(RuntimeError):
    """A command failed; the message names the command, its exit code and stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str):
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"command failed (rc={returncode}): {shlex.join(self.argv)}\n"
            f"stderr: {stderr.strip()}\nstdout: {stdout.strip()}"
        )


def run(*argv: str, check: bool = True, timeout: float = 60, input: Optional[str] = None,
        env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """Run a command with captured text output; raise CommandError when check and rc != 0."""
    argv = [str(a) for a in argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input, env=env)
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stdout, proc.stderr)
    return proc


def new_name() -> str:
    """A namespace name unique to this run, usable as an interface name too."""
    name = f"{PREFIX}{RUN_TAG}-{next(_counter)}"
    if len(name) > IFNAMSIZ:
        raise RuntimeError(f"namespace name too long: {name}")
    return name


def list_namespaces() -> list[str]:
    """Names of all network namespaces (``ip netns list``)."""
    out = run("ip", "netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _check_ifname(name: str) -> None:
    if not name or len(name) > IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        raise ValueError(f"invalid interface name {name!r} (1-{IFNAMSIZ} chars, no '/' or spaces)")


def _netns_inode(name: str) -> Optional[int]:
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return None


def _pid_in_netns(pid: int, inode: Optional[int]) -> bool:
    """True when pid is alive and lives in the network namespace with this inode."""
    if inode is None:
        return False
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == inode
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is as good as gone
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def _terminate_pids(pids: Iterable[int], grace: float = 5.0) -> None:
    """SIGTERM each pid, wait up to grace seconds, then SIGKILL whatever is left."""
    pids = [p for p in pids if p > 1 and p != os.getpid()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Netns:
    """One throwaway network namespace. Use ``Netns.create()`` or the ``netns`` fixture."""

    def __init__(self, name: str):
        self.name = name
        self.procs: list[subprocess.Popen] = []
        self.pids: list[int] = []  # adopted pids (self-daemonizing programs, from pid files)
        self.deleted = False

    # -------------------------------------------------------------- life cycle
    @classmethod
    def create(cls, name: Optional[str] = None) -> "Netns":
        name = name or new_name()
        if not name.startswith(PREFIX):
            raise ValueError(f"test namespaces must start with {PREFIX!r}: {name}")
        run("ip", "netns", "add", name)
        _LIVE.add(name)
        ns = cls(name)
        try:
            ns.ip("link", "set", "lo", "up")
        except Exception:
            ns.delete()
            raise
        return ns

    def __enter__(self) -> "Netns":
        return self

    def __exit__(self, *exc) -> None:
        self.delete()

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"

    @property
    def exists(self) -> bool:
        return self.name in list_namespaces()

    def kill_processes(self, grace: float = 5.0) -> None:
        """Stop what this namespace's test started, then anything else still in it."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        inode = _netns_inode(self.name)
        _terminate_pids([p for p in self.pids if _pid_in_netns(p, inode)], grace)
        # whatever else lives in the namespace was started inside it by this test
        _terminate_pids(self.ns_pids(), grace)

    def ns_pids(self) -> list[int]:
        """Pids of the processes in this namespace (``ip netns pids``)."""
        if _netns_inode(self.name) is None:
            return []
        out = run("ip", "netns", "pids", self.name, check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    def delete(self) -> None:
        """Kill tracked processes and delete the namespace; safe to call twice."""
        if self.deleted:
            return
        try:
            self.kill_processes()
        finally:
            if _netns_inode(self.name) is not None:
                run("ip", "netns", "delete", self.name, check=False)
            self.deleted = _netns_inode(self.name) is None
            if self.deleted:
                _LIVE.discard(self.name)

    # -------------------------------------------------------------- commands
    def run(self, *argv: str, check: bool = True, timeout: float = 60,
            input: Optional[str] = None) -> subprocess.CompletedProcess:
        """Run argv inside the namespace; output captured; CommandError when check fails."""
        return run("ip", "netns", "exec", self.name, *argv, check=check, timeout=timeout, input=input)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """``ip -n NS ARGS``."""
        return run("ip", "-n", self.name, *args, check=check)

    def spawn(self, argv: Sequence[str], *, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
              stdin=subprocess.DEVNULL, env: Optional[dict] = None, cwd=None,
              **popen_kwargs) -> subprocess.Popen:
        """Start a long-running (non-forking) program inside the namespace and track it.

        ``ip netns exec`` execs the program, so the Popen's pid is the program itself.
        It is killed by pid (SIGTERM, then SIGKILL) at teardown. For a program that forks
        into the background, pass its pid (from its pid file) to :meth:`adopt`.
        """
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, *[str(a) for a in argv]],
                                stdout=stdout, stderr=stderr, stdin=stdin, env=env, cwd=cwd,
                                **popen_kwargs)
        self.procs.append(proc)
        return proc

    def adopt(self, pid: int) -> int:
        """Track a pid (e.g. read from a daemon's pid file) for teardown."""
        self.pids.append(int(pid))
        return int(pid)

    # -------------------------------------------------------------- links
    def veth(self, peer_ns: "Netns", name_a: str, name_b: str, up: bool = True) -> None:
        """A veth pair: name_a in this namespace, name_b in peer_ns."""
        _check_ifname(name_a)
        _check_ifname(name_b)
        self.ip("link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", peer_ns.name)
        if up:
            self.ip("link", "set", name_a, "up")
            peer_ns.ip("link", "set", name_b, "up")

    def bridge(self, name: str, up: bool = True) -> None:
        """A Linux bridge in this namespace."""
        _check_ifname(name)
        self.ip("link", "add", name, "type", "bridge")
        if up:
            self.ip("link", "set", name, "up")

    def enslave(self, dev: str, bridge: str) -> None:
        """Attach dev to bridge."""
        self.ip("link", "set", dev, "master", bridge)

    def addr(self, dev: str, cidr: str, up: bool = True) -> None:
        """Add an address (``198.51.100.1/24``) to dev and bring it up."""
        self.ip("addr", "add", cidr, "dev", dev)
        if up:
            self.ip("link", "set", dev, "up")

    def route(self, *args: str) -> None:
        """``ip -n NS route add ARGS`` (e.g. ``route("default", "via", "198.51.100.1")``)."""
        self.ip("route", "add", *args)

    def ping(self, address: str, count: int = 1, wait: int = 2) -> bool:
        """True when address answers ICMP echo from inside this namespace."""
        return self.run("ping", "-n", "-q", "-c", str(count), "-W", str(wait), address,
                        check=False, timeout=count * wait + 10).returncode == 0


class NetnsPool:
    """Creates namespaces and deletes all of them on close (what the ``netns`` fixture uses)."""

    def __init__(self):
        self.made: list[Netns] = []

    def __call__(self, name: Optional[str] = None) -> Netns:
        ns = Netns.create(name)
        self.made.append(ns)
        return ns

    def close(self) -> None:
        errors = []
        for ns in reversed(self.made):
            try:
                ns.delete()
            except Exception as exc:  # keep cleaning the others
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> "NetnsPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sweep_leftovers() -> list[str]:
    """Delete every namespace this process created that still exists; return their names."""
    removed = []
    existing = set(list_namespaces())
    for name in sorted(_LIVE):
        if name in existing:
            Netns(name).delete()
            removed.append(name)
        _LIVE.discard(name)
    # names of this run that escaped the registry (e.g. made by hand with new_name())
    for name in existing - set(removed):
        if name.startswith(f"{PREFIX}{RUN_TAG}-"):
            Netns(name).delete()
            removed.append(name)
    # the sandbox's guests' cpu cgroups (nc_guest_cpu_group: euca-guests-<namespace>) that clean.yml did not remove
    for top in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup"):
        for group in glob.glob(os.path.join(top, f"euca-guests-{PREFIX}{RUN_TAG}-*")):
            try:
                os.rmdir(group)
                removed.append(group)
            except OSError:
                pass
    return removed


def can_use_netns() -> Optional[str]:
    """None when namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root: creates network namespaces"
    try:
        run("ip", "-V")
    except (OSError, CommandError) as exc:
        return f"iproute2 'ip' not usable: {exc}"
    return None
