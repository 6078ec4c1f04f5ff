#!/usr/bin/env python3
"""Simulated bare Debian hosts for the molecule scenario ``multinode`` (stdlib only, run as root).

Each host is a rootful podman container with systemd as PID 1, its own filesystem, and a network
namespace that this program makes with ``ip netns add`` and wires by veth to one bridge per
network inside a "fabric" namespace. Nothing is ever added to the root namespace (no link,
address, route or firewall rule; no podman network). Ansible reaches the hosts over ssh from the
root namespace with ``ProxyCommand="ip netns exec <prefix>-fab nc %h %p"`` (the mgmt bridge in
the fabric namespace carries an address, the source of those connections).

Subcommands::

    hosts.py image                 # build or reuse the base image and the local apt repository
    hosts.py up SPEC.json [--only HOST ...]   # wire namespaces, start hosts, wait for systemd+sshd
    hosts.py down [--prefix eumn]  # remove every container/namespace/cgroup of the prefix
    hosts.py paths [--prefix eumn] # JSON: key, ProxyCommand, podman env, image, repo
    hosts.py purge                 # down for every prefix of ours, then remove the whole cache

Everything lives under the cache directory (``EUCA_MULTINODE_CACHE``, default
``/var/cache/euca/multinode``): the controller's ssh key pair (``ssh/``), podman's private
configuration and state (``podman/``; passed to podman via CONTAINERS_CONF and
CONTAINERS_STORAGE_CONF, never /etc/containers or /var/lib/containers), the local apt
repositories (``repo/<digest>/``) and per-prefix state (``state/``).

The base image ``localhost/euca-multinode-base:<digest>`` is ``debootstrap --variant=minbase`` of
bookworm from this machine's apt source with only BASE_PACKAGES (a minimal server + python3 +
sshd). Its apt knows ONLY the local repository, bind-mounted read-only at /srv/euca-repo
(``deb [trusted=yes] file:/srv/euca-repo ./``), and has no package lists: a role must run
``apt-get update`` (apt module ``update_cache``) before it installs anything. The repository
holds exactly the packages missing from the image (with their dependencies) for the union of
every list variable named ``*_packages`` in the collection's roles' defaults (plus python3-apt and
``EUCA_MULTINODE_EXTRA_PACKAGES``). The image digest covers the base packages, the apt source,
the controller's public key and the image-building code; the repository digest covers the image
digest and the package list, so a new role package rebuilds only the repository.

SPEC example (``up``)::

    {"prefix": "eumn",
     "networks": {"mgmt": {"cidr": "198.51.100.0/26", "fabric_address": "198.51.100.1"},
                  "underlay": {"cidr": "198.51.100.64/26"},
                  "storage": {"cidr": "198.51.100.128/26"},
                  "public": {"cidr": "203.0.113.0/24", "outside_address": "203.0.113.1"}},
     "hosts": [{"name": "cc-a", "interfaces": [
                  {"name": "eth0", "network": "mgmt", "address": "198.51.100.20/26"},
                  {"name": "eth1", "network": "underlay", "address": "198.51.100.84/26"},
                  {"name": "eth3", "network": "public", "address": "203.0.113.2/24"}]},
               {"name": "nc-a1", "interfaces": [
                  {"name": "eth0", "network": "mgmt", "address": "198.51.100.22/26"},
                  {"name": "eth1", "network": "underlay", "address": "198.51.100.86/26"}]}]}

Namespaces: ``<prefix>-fab`` (bridges ``br-<network>``), ``<prefix>-out`` (the outside world,
``out0`` with outside_address, linked into the public bridge) and ``<prefix>-<host>`` per host;
containers are named ``<prefix>-<host>``. The "image" lock serialises builds; one lock per prefix
serialises up/down.
"""

import argparse
import fcntl
import gzip
import hashlib
import inspect
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(os.path.dirname(HERE))
ROLES = os.path.join(PROJECT, "collections/ansible_collections/euca/cloud/roles")
CACHE = os.environ.get("EUCA_MULTINODE_CACHE", "/var/cache/euca/multinode")
SUITE = "bookworm"
IMAGE_NAME = "localhost/euca-multinode-base"
BASE_PACKAGES = ["systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "sudo",
                 "iproute2", "procps", "kmod", "ca-certificates"]
ALWAYS_PACKAGES = ["python3-apt"]  # the apt module's own need
BOOT_TIMEOUT = float(os.environ.get("EUCA_MULTINODE_TIMEOUT", "300"))
ADDRESS_RANGES = [ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("203.0.113.0/24")]
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
# not "eut": the test harness names its own namespaces eut-*
PREFIX_RE = re.compile(r"^(?!eut$)[a-z][a-z0-9]{1,9}$")


def log(msg):
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def run(argv, check=True, capture=False, env=None, input_=None, quiet=False):
    """Run argv; on failure raise with its stderr."""
    res = subprocess.run(argv, env=env, input=input_, text=True,
                         stdout=subprocess.PIPE if capture else (subprocess.DEVNULL if quiet else None),
                         stderr=subprocess.PIPE if (capture or quiet) else None)
    if check and res.returncode != 0:
        err = (res.stderr or "").strip() if (capture or quiet) else ""
        raise SystemExit(f"failed ({res.returncode}): {' '.join(argv)}\n{err}")
    return res


class Lock:
    def __init__(self, name):
        os.makedirs(os.path.join(CACHE, "locks"), exist_ok=True)
        self.path = os.path.join(CACHE, "locks", name)

    def __enter__(self):
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


# --------------------------------------------------------------------------- podman, paths

def podman_dir():
    return os.path.join(CACHE, "podman")


def podman_env():
    d = podman_dir()
    for sub in ("storage", "run", "tmp", "networks"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    storage = (f'[storage]\ndriver = "overlay"\nrunroot = "{d}/run"\ngraphroot = "{d}/storage"\n')
    # runc, not crun: crun refuses this kind of machine's hybrid cgroup layout. The session has no
    # CAP_SYS_RESOURCE, so podman's default ulimits cannot be set. netns "none": every host gets the
    # namespace we made (--network ns:...), never a podman network.
    conf = ("[containers]\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            'netns = "none"\n'
            # /etc/hosts: the image's own, the hosts' --add-host entries, nothing of this machine's
            'base_hosts_file = "image"\n'
            'host_containers_internal_ip = "none"\n'
            "[network]\n"
            f'network_config_dir = "{d}/networks"\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{d}/events.log"\n'
            f'tmp_dir = "{d}/tmp"\n'
            f'volume_path = "{d}/volumes"\n')
    for name, text in (("storage.conf", storage), ("containers.conf", conf)):
        path = os.path.join(d, name)
        if not os.path.exists(path) or open(path).read() != text:
            with open(path, "w") as f:
                f.write(text)
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = os.path.join(d, "containers.conf")
    env["CONTAINERS_STORAGE_CONF"] = os.path.join(d, "storage.conf")
    return env


def podman(*args, check=True, capture=True, quiet=False):
    return run(["podman", *args], check=check, capture=capture, env=podman_env(), quiet=quiet)


def ssh_key():
    d = os.path.join(CACHE, "ssh")
    key = os.path.join(d, "id_ed25519")
    if not os.path.exists(key):
        os.makedirs(d, mode=0o700, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "euca-multinode", "-f", key])
    return key


def proxy_command(prefix):
    return f"ip netns exec {prefix}-fab nc %h %p"


# --------------------------------------------------------------------------- package lists

def _tiny_yaml_lists(text):
    """Top-level ``name: [a, b]`` and ``name:\\n  - a`` lists of a defaults file (no yaml module)."""
    out, current = {}, None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or line.startswith("---"):
            continue
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*):\s*(.*?)\s*(#.*)?$", line)
        if m:
            current = None
            name, value = m.group(1), m.group(2)
            if value.startswith("[") and value.endswith("]"):
                out[name] = [v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip()]
            elif value == "":
                current = name
            continue
        m = re.match(r"^\s+-\s+(.*?)\s*(#.*)?$", line)
        if m and current:
            out.setdefault(current, []).append(m.group(1).strip("'\""))
        elif not line.startswith(" "):
            current = None
    return out


def role_packages():
    try:
        import yaml  # the venv's or Debian's python3-yaml
    except ImportError:
        yaml = None
    names = set(ALWAYS_PACKAGES)
    for role in sorted(os.listdir(ROLES)):
        path = os.path.join(ROLES, role, "defaults", "main.yml")
        if not os.path.exists(path):
            continue
        text = open(path).read()
        data = (yaml.safe_load(text) or {}) if yaml else _tiny_yaml_lists(text)
        for key, value in data.items():
            if key.endswith("_packages") and isinstance(value, list):
                for v in value:
                    if isinstance(v, str) and "{" not in v:
                        names.add(v.strip())
    extra = os.environ.get("EUCA_MULTINODE_EXTRA_PACKAGES", "")
    names.update(p for p in re.split(r"[\s,]+", extra) if p)
    return sorted(names)


def apt_mirror():
    """This machine's own Debian mirror for SUITE."""
    uris = []
    for path in sorted(os.listdir("/etc/apt/sources.list.d")) if os.path.isdir("/etc/apt/sources.list.d") else []:
        if path.endswith(".sources"):
            for stanza in open(os.path.join("/etc/apt/sources.list.d", path)).read().split("\n\n"):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
                if "deb" in fields.get("Types", "").split() and SUITE in fields.get("Suites", "").split():
                    uris += fields.get("URIs", "").split()
    for path in ["/etc/apt/sources.list"] + [os.path.join("/etc/apt/sources.list.d", p) for p in
                                             sorted(os.listdir("/etc/apt/sources.list.d"))
                                             if p.endswith(".list")]:
        if os.path.exists(path):
            for line in open(path):
                m = re.match(r"^deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
                if m and m.group(3) == SUITE:
                    uris.append(m.group(2))
    if not uris:
        raise SystemExit(f"no apt source for {SUITE} in /etc/apt/sources.list(.d)")
    return uris[0]


# --------------------------------------------------------------------------- image and repo

def image_digest():
    code = "".join(inspect.getsource(f) for f in (build_rootfs, configure_rootfs, import_rootfs))
    pub = open(ssh_key() + ".pub").read()
    h = hashlib.sha256(json.dumps([BASE_PACKAGES, SUITE, apt_mirror(), pub, code]).encode())
    return h.hexdigest()[:12]


def repo_digest(img_digest, packages):
    code = inspect.getsource(build_repo) + inspect.getsource(write_repo_index)
    return hashlib.sha256(json.dumps([img_digest, packages, code]).encode()).hexdigest()[:12]


def in_mount_ns(argv):
    """argv in a private mount namespace: every mount it makes vanishes with it, even on failure."""
    return ["unshare", "--mount", "--propagation", "private", "--", *argv]


def build_rootfs(root, mirror):
    log(f"debootstrap {SUITE} from {mirror} (a few minutes)")
    run(in_mount_ns(["nice", "-n", "10", "debootstrap", "--variant=minbase",
                     "--include=" + ",".join(BASE_PACKAGES), SUITE, root, mirror]), quiet=True)


def configure_rootfs(root, pubkey):
    def p(rel):
        return os.path.join(root, rel.lstrip("/"))

    units = ["getty@tty1.service", "console-getty.service", "systemd-pstore.service",
             # no unattended apt runs racing the roles for the dpkg lock
             "apt-daily.timer", "apt-daily-upgrade.timer"]
    run(["systemctl", "--root", root, "mask", *units], quiet=True)
    for f in ("/usr/sbin/policy-rc.d", "/var/lib/dbus/machine-id", "/etc/hostname"):
        if os.path.lexists(p(f)):
            os.unlink(p(f))
    with open(p("/etc/machine-id"), "w"):
        pass
    with open(p("/etc/hosts"), "w") as f:
        f.write("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
    # ssh: root by key only; host keys made at each host's first boot (not shared between hosts)
    os.makedirs(p("/root/.ssh"), mode=0o700, exist_ok=True)
    with open(p("/root/.ssh/authorized_keys"), "w") as f:
        f.write(pubkey)
    os.chmod(p("/root/.ssh/authorized_keys"), 0o600)
    with open(p("/etc/ssh/sshd_config.d/euca-multinode.conf"), "w") as f:
        f.write("PermitRootLogin prohibit-password\nUseDNS no\n")
    for name in os.listdir(p("/etc/ssh")):
        if name.startswith("ssh_host_"):
            os.unlink(p("/etc/ssh/" + name))
    os.makedirs(p("/etc/systemd/system/ssh.service.d"), exist_ok=True)
    with open(p("/etc/systemd/system/ssh.service.d/hostkeys.conf"), "w") as f:
        f.write("[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\n"
                "ExecStartPre=/usr/sbin/sshd -t\n")
    # apt: only the local repository, no lists
    run(["chroot", root, "apt-get", "clean"], quiet=True)
    shutil.rmtree(p("/var/lib/apt/lists"))
    os.makedirs(p("/var/lib/apt/lists/partial"))
    for name in os.listdir(p("/etc/apt/sources.list.d")):
        os.unlink(p("/etc/apt/sources.list.d/" + name))
    if os.path.exists(p("/etc/apt/sources.list")):
        os.unlink(p("/etc/apt/sources.list"))
    with open(p("/etc/apt/sources.list.d/euca-local.list"), "w") as f:
        f.write("deb [trusted=yes] file:/srv/euca-repo ./\n")
    os.makedirs(p("/srv/euca-repo"), exist_ok=True)


def import_rootfs(root, tag):
    log(f"podman import {tag}")
    tar = subprocess.Popen(["tar", "-C", root, "--numeric-owner", "--xattrs", "-c", "."],
                           stdout=subprocess.PIPE)
    res = subprocess.run(["podman", "import", "--change", 'CMD ["/sbin/init"]',
                          "--change", "STOPSIGNAL SIGRTMIN+3", "-", tag],
                         stdin=tar.stdout, env=podman_env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    tar.stdout.close()
    if tar.wait() != 0 or res.returncode != 0:
        raise SystemExit(f"podman import failed: {res.stderr}")


def build_repo(root, dest, packages):
    """Download into dest what installing packages in root would fetch (from this machine's apt
    source), leaving root as it was: lists, caches and sources live in a scratch directory."""
    scratch = "/var/tmp/euca-repo-build"
    s = os.path.join(root, scratch.lstrip("/"))
    shutil.rmtree(s, ignore_errors=True)
    for sub in ("lists/partial", "cache", "archives/partial", "sources.list.d"):
        os.makedirs(os.path.join(s, sub))
    for src in ["/etc/apt/sources.list"] + [os.path.join("/etc/apt/sources.list.d", n) for n in
                                            sorted(os.listdir("/etc/apt/sources.list.d"))]:
        if os.path.isfile(src) and (src.endswith(".list") or src.endswith(".sources")):
            shutil.copy(src, os.path.join(s, "sources.list.d", os.path.basename(src) or "main.list"))
    opts = ["-o", f"Dir::Etc::SourceList={scratch}/none.list",
            "-o", f"Dir::Etc::SourceParts={scratch}/sources.list.d",
            "-o", f"Dir::State::Lists={scratch}/lists",
            "-o", f"Dir::Cache={scratch}/cache",
            "-o", f"Dir::Cache::archives={scratch}/archives",
            "-o", "APT::Install-Recommends=false", "-o", "Debug::NoLocking=true"]
    shutil.copy("/etc/resolv.conf", os.path.join(root, "etc/resolv.conf.euca-build"))
    script = ("set -e; mount -t proc proc {r}/proc; "
              "mount --bind {r}/etc/resolv.conf.euca-build {r}/etc/resolv.conf 2>/dev/null || "
              "cp {r}/etc/resolv.conf.euca-build {r}/etc/resolv.conf; "
              "chroot {r} apt-get -q {o} update; "
              "chroot {r} env DEBIAN_FRONTEND=noninteractive apt-get -q -y {o} install "
              "--download-only --no-install-recommends {p}").format(
                  r=root, o=" ".join(opts), p=" ".join(packages))
    tmp = dest + ".tmp"
    try:
        log(f"downloading {len(packages)} packages and their dependencies into the local repo")
        run(in_mount_ns(["sh", "-c", script]), quiet=True)
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        for name in os.listdir(os.path.join(s, "archives")):
            if name.endswith(".deb"):
                shutil.move(os.path.join(s, "archives", name), os.path.join(tmp, name))
        write_repo_index(tmp)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(s, ignore_errors=True)
        os.unlink(os.path.join(root, "etc/resolv.conf.euca-build"))


def write_repo_index(d):
    res = subprocess.run(["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], cwd=d,
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"dpkg-scanpackages failed: {res.stderr}")
    data = res.stdout.encode()
    with open(os.path.join(d, "Packages"), "wb") as f:
        f.write(data)
    with open(os.path.join(d, "Packages.gz"), "wb") as f:
        f.write(gzip.compress(data, mtime=0))
    lines = ["Origin: euca-multinode", "Label: euca-multinode", "Suite: ./", "Codename: ./",
             "Date: " + time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime())]
    for algo, field in (("md5", "MD5Sum"), ("sha256", "SHA256")):
        lines.append(field + ":")
        for name in ("Packages", "Packages.gz"):
            blob = open(os.path.join(d, name), "rb").read()
            lines.append(f" {hashlib.new(algo, blob).hexdigest()} {len(blob)} {name}")
    with open(os.path.join(d, "Release"), "w") as f:
        f.write("\n".join(lines) + "\n")


def image_exists(tag):
    return podman("image", "exists", tag, check=False, quiet=True).returncode == 0


def export_image(tag, root):
    """A scratch copy of the image's filesystem (to build a new repository for a cached image)."""
    name = f"euca-multinode-export-{os.getpid()}"
    podman("create", "--name", name, tag, "/bin/true")
    try:
        os.makedirs(root)
        exp = subprocess.Popen(["podman", "export", name], stdout=subprocess.PIPE, env=podman_env())
        tar = subprocess.run(["tar", "-C", root, "--numeric-owner", "-x"], stdin=exp.stdout)
        exp.stdout.close()
        if exp.wait() != 0 or tar.returncode != 0:
            raise SystemExit("podman export failed")
    finally:
        podman("rm", "-f", name, check=False, quiet=True)


def current_artifacts():
    img = image_digest()
    packages = role_packages()
    return f"{IMAGE_NAME}:{img}", os.path.join(CACHE, "repo", repo_digest(img, packages)), packages


def cmd_image(_args):
    t0 = time.time()
    with Lock("image"):
        tag, repo, packages = current_artifacts()
        have_image, have_repo = image_exists(tag), os.path.exists(os.path.join(repo, "Release"))
        if have_image and have_repo:
            log(f"cached: {tag}, {repo}")
        else:
            os.makedirs(os.path.join(CACHE, "repo"), exist_ok=True)
            root = tempfile.mkdtemp(prefix="rootfs-", dir=CACHE)
            try:
                if have_image:
                    log(f"image {tag} cached; exporting it to build the repository")
                    os.rmdir(root)
                    export_image(tag, root)
                else:
                    build_rootfs(root, apt_mirror())
                    configure_rootfs(root, open(ssh_key() + ".pub").read())
                if not have_repo:
                    build_repo(root, repo, packages)
                if not have_image:
                    import_rootfs(root, tag)
            finally:
                shutil.rmtree(root, ignore_errors=True)
            prune(tag, repo)
    debs = [n for n in os.listdir(repo) if n.endswith(".deb")]
    size = sum(os.path.getsize(os.path.join(repo, n)) for n in debs)
    log(f"image {tag}; repo {repo}: {len(debs)} debs, {size / 1e6:.1f} MB; {time.time() - t0:.1f} s")
    print(json.dumps({"image": tag, "repo": repo, "packages": packages, "debs": len(debs),
                      "repo_bytes": size, "seconds": round(time.time() - t0, 1)}))


def prune(keep_tag, keep_repo):
    """Remove older images and repositories that no container uses (keeps disk use bounded)."""
    used_images, used_repos = {keep_tag}, {keep_repo}
    names = (podman("ps", "-a", "--format", "{{.Names}}", check=False).stdout or "").split()
    if names:
        out = podman("container", "inspect", *names, check=False).stdout or "[]"
        for c in json.loads(out):
            used_images.add(c.get("ImageName", ""))
            used_repos.update(m.get("Source", "") for m in c.get("Mounts") or [])
    out = podman("images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_NAME, check=False).stdout or ""
    for tag in out.split():
        if tag not in used_images:
            podman("rmi", tag, check=False, quiet=True)
    for name in os.listdir(os.path.join(CACHE, "repo")):
        path = os.path.join(CACHE, "repo", name)
        if path not in used_repos:
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- network + hosts

def ns_exists(name):
    return os.path.exists(f"/run/netns/{name}")


def ip(ns, *args, check=True):
    return run(["ip", "-n", ns, *args], check=check, capture=True)


def link_exists(ns, name):
    return ip(ns, "link", "show", "dev", name, check=False).returncode == 0


def port_name(host, ifname):
    name = f"{host}-{ifname}"
    if len(name) <= 15:
        return name
    return "v" + hashlib.sha1(name.encode()).hexdigest()[:12]


def check_address(addr, what):
    iface = ipaddress.ip_interface(addr)
    if not any(iface.ip in net for net in ADDRESS_RANGES):
        raise SystemExit(f"{what}: {addr} is outside 198.51.100.0/24 and 203.0.113.0/24")
    return iface


def validate(spec):
    prefix = spec.get("prefix", "eumn")
    if not PREFIX_RE.match(prefix):
        raise SystemExit(f"prefix {prefix!r}: 2-10 of [a-z0-9], starting with a letter")
    nets = spec["networks"]
    for name, net in nets.items():
        if not re.match(r"^[a-z0-9]{1,10}$", name):
            raise SystemExit(f"network name {name!r}: 1-10 of [a-z0-9]")
        cidr = ipaddress.ip_network(net["cidr"])
        if not any(cidr.subnet_of(r) for r in ADDRESS_RANGES):
            raise SystemExit(f"network {name}: {cidr} is outside the documentation ranges")
        for key in ("fabric_address", "outside_address"):
            if key in net and ipaddress.ip_address(net[key]) not in cidr:
                raise SystemExit(f"network {name}: {key} {net[key]} not in {cidr}")
    if "mgmt" not in nets or "fabric_address" not in nets["mgmt"]:
        raise SystemExit("networks.mgmt.fabric_address is required (the controller's ssh source)")
    seen = set()
    for h in spec["hosts"]:
        if not NAME_RE.match(h["name"]) or h["name"] in ("fab", "out"):
            raise SystemExit(f"host name {h['name']!r}: [a-z0-9-], not fab/out")
        if h["name"] in seen:
            raise SystemExit(f"host {h['name']} twice")
        seen.add(h["name"])
        for i in h["interfaces"]:
            if i["network"] not in nets:
                raise SystemExit(f"{h['name']}/{i['name']}: no network {i['network']}")
            iface = check_address(i["address"], f"{h['name']}/{i['name']}")
            if iface.network != ipaddress.ip_network(nets[i["network"]]["cidr"]):
                raise SystemExit(f"{h['name']}/{i['name']}: {i['address']} is not on {i['network']}")
        if not any(i["network"] == "mgmt" for i in h["interfaces"]):
            raise SystemExit(f"{h['name']}: no interface on mgmt")
    return prefix


def mgmt_ip(host):
    return next(str(ipaddress.ip_interface(i["address"]).ip) for i in host["interfaces"]
                if i["network"] == "mgmt")


def ensure_fabric(prefix, nets):
    fab, out = f"{prefix}-fab", f"{prefix}-out"
    created = not ns_exists(fab)
    if created:
        run(["ip", "netns", "add", fab])
        ip(fab, "link", "set", "lo", "up")
    for name, net in nets.items():
        br = f"br-{name}"
        if not link_exists(fab, br):
            ip(fab, "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0")
            if name == "mgmt":
                plen = ipaddress.ip_network(net["cidr"]).prefixlen
                ip(fab, "addr", "add", f"{net['fabric_address']}/{plen}", "dev", br)
            ip(fab, "link", "set", br, "up")
        if "outside_address" in net:
            if not ns_exists(out):
                run(["ip", "netns", "add", out])
                ip(out, "link", "set", "lo", "up")
            if not link_exists(fab, f"out-{name}"):
                ip(fab, "link", "add", f"out-{name}", "type", "veth", "peer", "name", "out0", "netns", out)
                ip(fab, "link", "set", f"out-{name}", "master", br, "up")
                plen = ipaddress.ip_network(net["cidr"]).prefixlen
                ip(out, "addr", "add", f"{net['outside_address']}/{plen}", "dev", "out0")
                ip(out, "link", "set", "out0", "up")
    return created


def wire_host(prefix, nets, host):
    ns = f"{prefix}-{host['name']}"
    run(["ip", "netns", "add", ns])
    ip(ns, "link", "set", "lo", "up")
    for i in host["interfaces"]:
        port = port_name(host["name"], i["name"])
        # both ends are made directly in our namespaces, never in the root namespace
        ip(f"{prefix}-fab", "link", "add", port, "type", "veth", "peer", "name", i["name"], "netns", ns)
        ip(f"{prefix}-fab", "link", "set", port, "alias", f"{host['name']} {i['name']}")
        ip(f"{prefix}-fab", "link", "set", port, "master", f"br-{i['network']}", "up")
        ip(ns, "addr", "add", i["address"], "dev", i["name"])
        ip(ns, "link", "set", i["name"], "up")
    # a default route into the fabric (a dead end) so the host has ansible_default_ipv4
    ip(ns, "route", "add", "default", "via", nets["mgmt"]["fabric_address"])


def cgroup_parent(prefix):
    """Under this session's own (memory) cgroup, so everything the hosts run is accounted there."""
    base = "/"
    for line in open("/proc/self/cgroup"):
        _, ctrl, path = line.strip().split(":", 2)
        if "memory" in ctrl.split(",") or (ctrl == "" and base == "/"):
            base = path
            if "memory" in ctrl.split(","):
                break
    return os.path.join(base, f"euca-multinode-{prefix}")


def state_path(prefix):
    return os.path.join(CACHE, "state", f"{prefix}.json")


def read_state(prefix):
    try:
        return json.load(open(state_path(prefix)))
    except (OSError, ValueError):
        return {}


def write_state(prefix, state):
    os.makedirs(os.path.dirname(state_path(prefix)), exist_ok=True)
    with open(state_path(prefix) + ".tmp", "w") as f:
        json.dump(state, f, indent=1)
    os.replace(state_path(prefix) + ".tmp", state_path(prefix))


def container_running(name):
    res = podman("container", "inspect", "--format", "{{.State.Running}}", name, check=False)
    return res.returncode == 0 and res.stdout.strip() == "true"


def ns_pids(ns):
    if not ns_exists(ns):
        return []
    res = run(["ip", "netns", "pids", ns], check=False, capture=True)
    return [int(p) for p in (res.stdout or "").split() if p.isdigit() and int(p) != os.getpid()]


def stop_pids(pids, what):
    """SIGTERM, then SIGKILL after 5 s: processes left in our namespaces (e.g. the ProxyCommand's
    nc, whose ssh ControlPersist master would otherwise hang on a host that is gone)."""
    pids = [p for p in pids if os.path.exists(f"/proc/{p}")]
    if not pids:
        return
    log(f"stopping {what}: " + " ".join(f"{p}({open(f'/proc/{p}/comm').read().strip()})"
                                        for p in pids if os.path.exists(f"/proc/{p}/comm")))
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + wait
        while time.time() < deadline and any(os.path.exists(f"/proc/{p}") for p in pids):
            time.sleep(0.1)
        pids = [p for p in pids if os.path.exists(f"/proc/{p}")]
        if not pids:
            return


def fabric_pids_for(prefix, addresses):
    """Processes in the fabric namespace talking to one host (its ProxyCommand nc)."""
    out = []
    for p in ns_pids(f"{prefix}-fab"):
        try:
            argv = open(f"/proc/{p}/cmdline").read().split("\0")
        except OSError:
            continue
        if any(a in argv for a in addresses):
            out.append(p)
    return out


def remove_host(prefix, host):
    name = host["name"]
    podman("rm", "-f", "-t", "10", f"{prefix}-{name}", check=False, quiet=True)
    addresses = [str(ipaddress.ip_interface(i["address"]).ip) for i in host["interfaces"]]
    stop_pids(fabric_pids_for(prefix, addresses) + ns_pids(f"{prefix}-{name}"),
              f"processes of {name} in our namespaces")
    if ns_exists(f"{prefix}-{name}"):
        run(["ip", "netns", "del", f"{prefix}-{name}"], check=False)


def start_host(prefix, host, spec, tag, repo, cgp):
    name = host["name"]
    argv = ["run", "-d", "--name", f"{prefix}-{name}", "--hostname", name, "--privileged",
            "--network", f"ns:/run/netns/{prefix}-{name}", "--cgroup-parent", cgp,
            "--label", f"euca-multinode={prefix}",
            "-v", f"{repo}:/srv/euca-repo:ro"]
    for h in spec["hosts"]:
        argv += ["--add-host", f"{h['name']}:{mgmt_ip(h)}"]
    podman(*argv, tag)


SSH_PROBE = r"""
import socket, sys, json
out = {}
for a in sys.argv[1:]:
    try:
        s = socket.create_connection((a, 22), timeout=2)
        s.settimeout(3)
        out[a] = s.recv(64).startswith(b"SSH-")
        s.close()
    except OSError:
        out[a] = False
print(json.dumps(out))
"""


def wait_hosts(prefix, hosts, timeout):
    t0 = time.time()
    pending = {h["name"]: mgmt_ip(h) for h in hosts}
    booted = {}
    while pending:
        for name in list(pending):
            if name not in booted:
                res = podman("exec", f"{prefix}-{name}", "systemctl", "is-system-running", check=False)
                state = (res.stdout or "").strip()
                if state in ("running", "degraded"):
                    booted[name] = state
                    res = podman("exec", f"{prefix}-{name}", "systemctl", "is-failed", "ssh.service",
                                 check=False)
                    if (res.stdout or "").strip() == "failed":
                        logs = podman("exec", f"{prefix}-{name}", "journalctl", "-b", "-u", "ssh",
                                      "--no-pager", "-n", "30", check=False)
                        raise SystemExit(f"{name}: ssh.service failed\n{logs.stdout}{logs.stderr}")
                elif not container_running(f"{prefix}-{name}"):
                    logs = podman("logs", "--tail", "30", f"{prefix}-{name}", check=False)
                    raise SystemExit(f"{name}: container stopped\n{logs.stdout}{logs.stderr}")
        ready = [n for n in pending if n in booted]
        if ready:
            res = run(["ip", "netns", "exec", f"{prefix}-fab", sys.executable, "-c", SSH_PROBE,
                       *[pending[n] for n in ready]], capture=True, check=False)
            answered = json.loads(res.stdout or "{}")
            for n in ready:
                if answered.get(pending[n]):
                    log(f"{n}: systemd {booted[n]}, sshd answers ({time.time() - t0:.1f} s)")
                    del pending[n]
        if pending and time.time() - t0 > timeout:
            detail = []
            for n in pending:
                res = podman("exec", f"{prefix}-{n}", "systemctl", "--failed", "--no-legend",
                             check=False)
                detail.append(f"{n}: systemd {booted.get(n, 'not up')}; failed units: "
                              f"{(res.stdout or res.stderr or '').strip()}")
            raise SystemExit(f"timeout after {timeout:.0f} s:\n" + "\n".join(detail))
        if pending:
            time.sleep(0.5)


def cmd_up(args):
    spec = json.load(open(args.spec))
    prefix = validate(spec)
    nets = spec["networks"]
    wanted = spec["hosts"]
    if args.only:
        unknown = set(args.only) - {h["name"] for h in wanted}
        if unknown:
            raise SystemExit(f"--only: not in the SPEC: {', '.join(sorted(unknown))}")
        wanted = [h for h in wanted if h["name"] in args.only]
    t0 = time.time()
    with Lock("image"):
        tag, repo, _ = current_artifacts()
        if not image_exists(tag) or not os.path.exists(os.path.join(repo, "Release")):
            raise SystemExit(f"image {tag} or repo {repo} missing: run '{sys.argv[0]} image' first")
    with Lock(f"prefix-{prefix}"):
        cgp = cgroup_parent(prefix)
        state = read_state(prefix)
        cgroups = sorted(set(state.get("cgroup_parents", [])) | {cgp})
        write_state(prefix, dict(state, cgroup_parents=cgroups))
        made_fabric = False
        started = []
        try:
            made_fabric = ensure_fabric(prefix, nets)
            todo = []
            for h in wanted:
                name = f"{prefix}-{h['name']}"
                if not made_fabric and ns_exists(name) and container_running(name):
                    continue
                remove_host(prefix, h)  # half-made before: start again
                todo.append(h)
            for h in todo:
                wire_host(prefix, nets, h)
                started.append(h["name"])
            t1 = time.time()
            for h in todo:
                start_host(prefix, h, spec, tag, repo, cgp)
            log(f"{len(todo)} hosts wired in {t1 - t0:.1f} s, started in {time.time() - t1:.1f} s"
                + (f"; left alone: {len(wanted) - len(todo)}" if len(wanted) > len(todo) else ""))
            wait_hosts(prefix, todo, BOOT_TIMEOUT)
        except BaseException:
            if args.keep_on_failure:
                raise
            log("up failed: removing what this run made")
            if made_fabric:
                down(prefix)
            else:
                for h in wanted:
                    if h["name"] in started:
                        remove_host(prefix, h)
            raise
    log(f"up: {len(wanted)} hosts ready in {time.time() - t0:.1f} s")
    print(json.dumps({"prefix": prefix, "hosts": [h["name"] for h in wanted],
                      "seconds": round(time.time() - t0, 1)}))


def our_containers(prefix):
    out = podman("ps", "-a", "--format", "{{.Names}}", check=False).stdout or ""
    return [n for n in out.split() if n.startswith(f"{prefix}-")]


def down(prefix):
    for name in our_containers(prefix):
        podman("rm", "-f", "-t", "10", name, check=False, quiet=True)
        log(f"removed container {name}")
    if os.path.isdir("/run/netns"):
        # hosts first, the fabric and outside last (their veth peers go with the host namespaces)
        names = sorted((n for n in os.listdir("/run/netns") if n.startswith(f"{prefix}-")),
                       key=lambda n: n in (f"{prefix}-fab", f"{prefix}-out"))
        stop_pids([p for ns in names for p in ns_pids(ns)], "processes left in our namespaces")
        for ns in names:
            run(["ip", "netns", "del", ns], check=False)
        if names:
            log(f"removed namespaces {' '.join(names)}")
    state = read_state(prefix)
    for cgp in set(state.get("cgroup_parents", [])) | {cgroup_parent(prefix)}:
        if not os.path.basename(cgp).startswith("euca-multinode-"):
            continue
        for hier in os.listdir("/sys/fs/cgroup"):
            top = os.path.join("/sys/fs/cgroup", hier, cgp.lstrip("/"))
            if not os.path.isdir(top):
                continue
            for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                try:
                    os.rmdir(dirpath)
                except OSError as e:
                    log(f"cgroup {dirpath} left: {e.strerror}")
    if os.path.exists(state_path(prefix)):
        os.unlink(state_path(prefix))


def cmd_down(args):
    if not PREFIX_RE.match(args.prefix):
        raise SystemExit(f"bad prefix {args.prefix!r}")
    with Lock(f"prefix-{args.prefix}"):
        down(args.prefix)


def cmd_paths(args):
    key = ssh_key()
    env = podman_env()
    tag, repo, packages = current_artifacts()
    print(json.dumps({
        "cache": CACHE,
        "identity_file": key,
        "public_key": key + ".pub",
        "proxy_command": proxy_command(args.prefix),
        "ssh_common_args": f'-o ProxyCommand="{proxy_command(args.prefix)}" '
                           "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "fabric_namespace": f"{args.prefix}-fab",
        "outside_namespace": f"{args.prefix}-out",
        "env": {k: env[k] for k in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF")},
        "image": tag,
        "repo": repo,
        "packages": packages,
    }, indent=1))


def cmd_purge(_args):
    state_dir = os.path.join(CACHE, "state")
    prefixes = {n[:-5] for n in os.listdir(state_dir) if n.endswith(".json")} if os.path.isdir(state_dir) else set()
    out = podman("ps", "-a", "--format", '{{index .Labels "euca-multinode"}}', check=False).stdout or ""
    prefixes |= {p for p in out.split() if PREFIX_RE.match(p)}
    for p in sorted(prefixes):
        with Lock(f"prefix-{p}"):
            down(p)
    podman("system", "reset", "--force", check=False, quiet=True)
    shutil.rmtree(podman_dir(), ignore_errors=True)
    shutil.rmtree(os.path.join(CACHE, "repo"), ignore_errors=True)
    log(f"purged {CACHE} (ssh key kept)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("image", help="build or reuse the base image and the local apt repository")
    p = sub.add_parser("up", help="create the SPEC's hosts (those not up yet)")
    p.add_argument("spec")
    p.add_argument("--only", action="append", metavar="HOST", help="only this host (repeatable)")
    p.add_argument("--keep-on-failure", action="store_true", help="leave a failed run's hosts")
    p = sub.add_parser("down", help="remove every host, namespace and cgroup of the prefix")
    p.add_argument("--prefix", default=os.environ.get("EUCA_MULTINODE_PREFIX", "eumn"))
    p = sub.add_parser("paths", help="print key, ProxyCommand, podman env, image and repo (JSON)")
    p.add_argument("--prefix", default=os.environ.get("EUCA_MULTINODE_PREFIX", "eumn"))
    sub.add_parser("purge", help="down for every prefix, then remove podman state and repos")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    os.makedirs(CACHE, mode=0o755, exist_ok=True)
    {"image": cmd_image, "up": cmd_up, "down": cmd_down, "paths": cmd_paths,
     "purge": cmd_purge}[args.cmd](args)


if __name__ == "__main__":
    main()
