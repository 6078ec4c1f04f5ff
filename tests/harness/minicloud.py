"""A cluster controller in a namespace, driven by playbooks/network.yml from a real ledger, with
namespaces standing for instances (leased by a real DHCP client, busybox udhcpc) and socat
servers and clients for packets: what tests of the network operations share.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

UDHCPC_SCRIPT = """#!/bin/sh
# busybox udhcpc hook: configure the lease like a guest would
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}"
    echo "$ip" > "$LEASE_FILE"
    ;;
esac
exit 0
"""


#: the metadata daemon as the cc role installs it (network.yml runs it on the CC)
METADATA_SERVER = (Path(__file__).resolve().parents[2] / "collections" / "ansible_collections" / "euca" / "cloud" / "roles"
                   / "cc" / "files" / "euca-metadata")


def inventory(tmp_path, ledger, cc_ns):
    """An inventory with one host cc1 that is CLC, CC and NC of cluster_a, inside ``cc_ns``."""
    text = textwrap.dedent("""\
        all:
          vars:
            ansible_connection: local
            ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
            euca_ledger: {ledger}
            euca_cluster: cluster_a
            euca_namespace: {ns}
            euca_public_interface: pub
            euca_dhcp_state_dir: {state}
            euca_dhcp_user: root
            euca_metadata_snapshot: {metadata}
            euca_metadata_server_path: {server}
          children:
            clc: {{hosts: {{cc1: }}}}
            cluster_a:
              children:
                cc: {{hosts: {{cc1: }}}}
                nc: {{hosts: {{cc1: }}}}
        """).format(ledger=ledger, ns=cc_ns, state=tmp_path / "dhcp", metadata=tmp_path / "metadata" / "snapshot.json",
                    server=METADATA_SERVER)
    path = tmp_path / "hosts.yml"
    path.write_text(text)
    return str(path)


def attach_instance(netns, cc, instance, tmp_path, index, segment):
    """A namespace standing for the instance, on its segment's bridge, leased by udhcpc."""
    ns = netns()
    host_end = "eut-i%d" % index
    cc.ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
    cc.ip("link", "set", host_end, "master", "eubr-%d" % segment, "up")
    ns.ip("link", "set", "eth0", "address", instance["mac"], "up")
    script = tmp_path / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT)
    os.chmod(script, 0o755)
    lease = tmp_path / ("lease-%d" % index)
    ns.run("env", "LEASE_FILE=%s" % lease, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-T", "1",
           "-s", str(script), timeout=30)
    return ns, lease.read_text().strip()


def tcp(ns, address, port, timeout=3):
    """What a TCP server at address:port answers (None when nothing does)."""
    out = ns.run("socat", "-T", str(timeout), "-u", "TCP:%s:%d,connect-timeout=%d" % (address, port, timeout), "-",
                 check=False, timeout=timeout + 10)
    return out.stdout.strip() if out.returncode == 0 else None


def serve(ns, port, reply):
    ns.spawn(["socat", "TCP-LISTEN:%d,fork,reuseaddr" % port, "SYSTEM:echo %s" % reply])
