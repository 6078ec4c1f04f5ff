#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: dhcp
short_description: Serve DHCP on every tenant segment of a cluster controller with one dnsmasq
version_added: 0.1.0
description:
  - Runs one dnsmasq for all the segments of a cluster controller (CC). Each segment gets a static range on its
    bridge, a router option (its gateway) and optional DNS servers and domain; only the reserved MAC addresses
    (the ledger's MAC to IP placements) are given an address, always their reserved one.
  - Interfaces, ranges, options and reservations live in files in O(state_dir); dnsmasq's command line is only
    C(dnsmasq --conf-file=<state_dir>/dnsmasq.conf), whatever the number of segments.
  - A change is applied by writing the new files beside the old ones and renaming them over them. When only
    reservations changed, dnsmasq re-reads them on SIGHUP (no restart); when interfaces, ranges or options changed
    it is restarted (dnsmasq does not re-read ranges on SIGHUP); when it is not running it is started. Leases are
    kept across restarts.
  - With O(service_manager), dnsmasq runs in the foreground as a program of the host's service manager (a systemd
    unit or a supervisord program named O(service_name)), which restarts it within about a second when it dies, even
    of kill -9, without an Ansible run. Starts, restarts and the stop go through the manager; a reload is still a
    SIGHUP. A changed program definition restarts dnsmasq.
  - Only the dnsmasq whose pid is in O(state_dir)/dnsmasq.pid and whose command line names our configuration file
    is ever signalled.
  - Applying the same state again changes nothing, writes nothing and leaves dnsmasq alone.
  - The ledger generation the configuration was read at is recorded; an older one is refused, so two jobs cannot
    roll each other's reservations back.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.report
  - ansible.builtin.action_common_attributes
options:
  config:
    description:
      - The segments to serve, one item each.
      - With O(state=deleted), only O(config[].id) is needed.
    type: list
    elements: dict
    suboptions:
      id:
        description: The segment's id (its VLAN tag or VXLAN VNI); the key of the item.
        type: int
        required: true
      interface:
        description: The segment's bridge on the CC (at most 15 characters). Defaults to C(eubr-<id>).
        type: str
      subnet:
        description: The segment's private subnet (IPv4 CIDR, no host bits, /30 or wider).
        type: str
      gateway:
        description:
          - The CC's address on the segment, handed out as the router option; a host address of O(config[].subnet).
          - The segment's interface must carry an address in O(config[].subnet) for dnsmasq to serve it (the
            segment module puts the gateway there).
        type: str
      dns_servers:
        description: DNS servers handed to the segment's instances. None by default.
        type: list
        elements: str
      domain:
        description: Domain name handed to the segment's instances.
        type: str
      lease_time:
        description: Lease time in dnsmasq's syntax (V(3600), V(45m), V(1h), V(2d), V(infinite)); at least 2 minutes.
        type: str
        default: 1h
      hosts:
        description:
          - The reservations of the segment. Only these MAC addresses get an address on it.
          - A MAC or an address may be reserved once in all segments; an address must be a host address of the
            subnet other than the gateway.
        type: list
        elements: dict
        suboptions:
          mac:
            description: The instance NIC's MAC address.
            type: str
            required: true
          ip:
            description: The address reserved for it.
            type: str
            required: true
          hostname:
            description: Host name handed to the instance (one DNS label).
            type: str
  state:
    description:
      - V(merged) adds the given segments and replaces those with the same id.
      - V(overridden) serves exactly the given segments; the others are dropped.
      - V(deleted) drops the given segments, or all of them (stopping dnsmasq and removing its files) when
        O(config) is empty.
      - V(rendered) returns the configuration files for O(config) without touching the host.
    type: str
    choices: [merged, overridden, deleted, rendered]
    default: merged
  namespace:
    description:
      - Network namespace to run dnsmasq in (as C(ip netns exec) does); the host's own when omitted.
      - It must exist already.
    type: str
  state_dir:
    description:
      - Directory of dnsmasq's configuration, reservations, leases, pid file and log; created when missing.
      - One dnsmasq per directory. dnsmasq drops root privileges (see O(user)), so every directory above it must be
        searchable by others.
    type: path
    default: /var/lib/euca/dhcp
  dnsmasq:
    description: The dnsmasq program (a name looked up in E(PATH), or a path).
    type: str
    default: dnsmasq
  user:
    description: User dnsmasq runs as after it has opened its files. dnsmasq's default (C(nobody)) when omitted.
    type: str
  max_leases:
    description: Most leases dnsmasq hands out at once (dnsmasq's own default of 1000 is too low for a cluster).
    type: int
    default: 65536
  service_manager:
    description:
      - Who runs dnsmasq. V(auto) is V(systemd) where systemd is PID 1 and V(supervisord) otherwise (as the roles
        decide, see C(common_service_manager)).
      - V(none) starts dnsmasq as a daemon of its own and nothing restarts it when it dies (tests and one-off use).
      - Switching from V(none) to a manager hands the running dnsmasq over (it is stopped and started by the
        manager); the other way round is not handled, stop it with O(state=deleted) first.
    type: str
    choices: [none, auto, systemd, supervisord]
    default: none
  service_name:
    description: The name of the systemd unit (C(<name>.service)) or supervisord program; one per O(state_dir).
    type: str
    default: euca-dhcp
  supervisor_conf:
    description: supervisord's configuration file (started with it when supervisord does not answer).
    type: path
    default: /etc/supervisor/supervisord.conf
  supervisor_programs_dir:
    description: The directory supervisord's C([include]) reads program files from (C(<service_name>.conf) goes there).
    type: path
    default: /etc/supervisor/conf.d
  systemd_units_dir:
    description: Where the systemd unit goes.
    type: path
    default: /etc/systemd/system
  shards:
    description:
      - How many dnsmasq serve the segments; segment I(id) is served by shard I(id) mod O(shards).
      - dnsmasq's cost per packet grows with the number of addresses in the namespace times the number of its
        ranges (about 0.3 s per packet with 4,000 segments), so after a restart a single dnsmasq needs tens of
        minutes to lease 4,000 instances again. With several, each listens on its own UDP port
        (O(shard_port) + its index) and one nftables table C(ip euca_dhcp) in the namespace steers port 67 of each
        segment's interface to its shard's port (statelessly, so broadcasts and unicast renewals alike) and turns
        the replies' source port back into 67. About one shard per 100-150 segments.
      - V(1) is one dnsmasq on port 67 and no table. Changing O(shards) moves the segments to their new shards
        (the new ones start before the old ones stop).
      - V(0) chooses from the number of segments - one dnsmasq up to 64 segments, then one per 64 rounded up to a
        power of two (64 shards for 4,000 segments), so the number changes only when the cluster doubles.
    type: int
    default: 0
  shard_port:
    description: The UDP port of shard 0; shard I(i) listens on O(shard_port) + I(i). Unused with O(shards=1).
    type: int
    default: 10067
  generation:
    description:
      - The ledger generation the configuration was read at. It is recorded, and a lower one than the recorded one
        is refused.
      - A newer generation with the same configuration is recorded without reporting a change; dnsmasq is left alone.
    type: int
notes:
  - Needs dnsmasq (Debian package C(dnsmasq-base)) and, with O(namespace), iproute2.
  - DNS is off (C(port=0)); dnsmasq serves DHCP only.
"""

EXAMPLES = r"""
- name: Serve the cluster's two segments, with their reservations from the ledger
  euca.cloud.dhcp:
    config:
      - id: 10
        subnet: 10.0.10.0/24
        gateway: 10.0.10.1
        dns_servers: [10.0.0.2]
        domain: cloud.internal
        hosts:
          - {mac: "d0:0d:0a:00:0a:05", ip: 10.0.10.5, hostname: i-0f00ba12}
      - id: 11
        interface: eubr-11
        subnet: 10.0.11.0/24
        gateway: 10.0.11.1
        hosts:
          - {mac: "d0:0d:0a:00:0b:07", ip: 10.0.11.7}
    state: overridden
    generation: 42

- name: Stop serving segment 11
  euca.cloud.dhcp:
    config:
      - id: 11
    state: deleted

- name: Stop dnsmasq and remove its files
  euca.cloud.dhcp:
    state: deleted
"""

RETURN = r"""
before:
  description: The segments served before the change (read from the files in O(state_dir)).
  returned: unless O(state=rendered) or O(report=summary)
  type: list
  elements: dict
  sample: [{id: 10, interface: eubr-10, subnet: 10.0.10.0/24, gateway: 10.0.10.1, dns_servers: [], domain: null,
            lease_time: 1h, hosts: [{mac: "d0:0d:0a:00:0a:05", ip: 10.0.10.5, hostname: i-0f00ba12}]}]
after:
  description: The segments served after the change (what would be served, in check mode).
  returned: unless O(state=rendered) or O(report=summary)
  type: list
  elements: dict
  sample: [{id: 10, interface: eubr-10, subnet: 10.0.10.0/24, gateway: 10.0.10.1, dns_servers: [], domain: null,
            lease_time: 1h, hosts: [{mac: "d0:0d:0a:00:0a:05", ip: 10.0.10.5, hostname: i-0f00ba12}]}]
commands:
  description: What was (or, in check mode, would be) done; empty when nothing differs.
  returned: unless O(state=rendered) or O(report=summary)
  type: list
  elements: str
  sample:
    - write /var/lib/euca/dhcp/hosts
    - "reload dnsmasq (SIGHUP pid 4242): reservations changed"
summary:
  description: What the run changes (would change, in check mode), by segment id.
  returned: unless O(state=rendered)
  type: dict
  contains:
    added:
      description: The segment ids added.
      type: list
      elements: int
    removed:
      description: The segment ids removed.
      type: list
      elements: int
    modified:
      description: The segment ids whose settings change.
      type: list
      elements: int
    unchanged:
      description: How many items stay as they are.
      type: int
    commands:
      description: How many lines the plan has (the length of RV(commands)).
      type: int
  sample: {added: [12], removed: [], modified: [10], unchanged: 41, commands: 3}
rendered:
  description: The configuration files for O(config), by path, as they would be written.
  returned: when O(state) is V(rendered)
  type: dict
  sample: {/var/lib/euca/dhcp/dnsmasq.conf: "port=0\n...", /var/lib/euca/dhcp/hosts: "d0:0d:0a:00:0a:05,10.0.10.5\n"}
generation:
  description: The ledger generation in force after the run (null when none was ever given).
  returned: when O(state) is not V(rendered)
  type: int
  sample: 42
dnsmasq:
  description: What was (or would be) done to dnsmasq, and its pid after the run.
  returned: when O(state) is not V(rendered)
  type: dict
  contains:
    action:
      description: V(none), V(start), V(restart), V(reload) (SIGHUP) or V(stop).
      type: str
    pid:
      description:
        - The pid of our dnsmasq after the run (before it, in check mode); null when it is not running.
        - With O(shards) above 1, the pid of shard 0 (see RV(dnsmasq.shards)); RV(dnsmasq.action) is the strongest
          action of any shard.
      type: int
    shards:
      description: With O(shards) above 1, each shard's index, pid and action.
      type: list
      elements: dict
      returned: when O(shards) is above 1
    service:
      description: The service manager and program that run dnsmasq (C(supervisord euca-dhcp)); null with V(none).
      type: str
  sample: {action: reload, pid: 4242, service: supervisord euca-dhcp}
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import CONFIG_ARGS, ConfigModule
from ansible_collections.euca.cloud.plugins.module_utils.net import dhcp

HOST_OPTIONS = dict(
    mac=dict(type="str", required=True),
    ip=dict(type="str", required=True),
    hostname=dict(type="str"),
)

SEGMENT_OPTIONS = dict(
    id=dict(type="int", required=True),
    interface=dict(type="str"),
    subnet=dict(type="str"),
    gateway=dict(type="str"),
    dns_servers=dict(type="list", elements="str"),
    domain=dict(type="str"),
    lease_time=dict(type="str", default=dhcp.DEFAULT_LEASE_TIME),
    hosts=dict(type="list", elements="dict", options=HOST_OPTIONS),
)


class DhcpModule(ConfigModule):
    argument_spec = dict(
        CONFIG_ARGS,
        config=dict(type="list", elements="dict", options=SEGMENT_OPTIONS),
        state_dir=dict(type="path", default=dhcp.DEFAULT_STATE_DIR),
        dnsmasq=dict(type="str", default="dnsmasq"),
        user=dict(type="str"),
        max_leases=dict(type="int", default=dhcp.DEFAULT_MAX_LEASES),
        generation=dict(type="int"),
        service_manager=dict(type="str", default="none", choices=["none", "auto", "systemd", "supervisord"]),
        service_name=dict(type="str", default=dhcp.DEFAULT_SERVICE_NAME),
        supervisor_conf=dict(type="path", default="/etc/supervisor/supervisord.conf"),
        supervisor_programs_dir=dict(type="path", default="/etc/supervisor/conf.d"),
        systemd_units_dir=dict(type="path", default="/etc/systemd/system"),
        shards=dict(type="int", default=0),
        shard_port=dict(type="int", default=dhcp.DEFAULT_SHARD_PORT),
    )

    def resource(self):
        p = self.params
        self.dhcp = dhcp.Dhcp(
            state_dir=p["state_dir"], namespace=p["namespace"], dnsmasq=p["dnsmasq"], user=p["user"],
            max_leases=p["max_leases"], partial=p["state"] == "deleted", generation=p["generation"],
            service_manager=p["service_manager"], service_name=p["service_name"], supervisor_conf=p["supervisor_conf"],
            supervisor_programs_dir=p["supervisor_programs_dir"], systemd_units_dir=p["systemd_units_dir"],
            shards=p["shards"], shard_port=p["shard_port"],
        )
        return self.dhcp

    def run(self):
        result = super(DhcpModule, self).run()
        if self.params["state"] != "rendered":
            result["dnsmasq"] = {"action": self.dhcp.action, "pid": self.dhcp.pid,
                                 "service": self.dhcp.service.describe() if self.dhcp.service else None}
            if self.dhcp.shards > 1:
                result["dnsmasq"]["shards"] = [
                    {"index": s.index, "pid": s.pid, "action": self.dhcp.actions.get(s.label, "none")}
                    for s in self.dhcp.layout]
        return result


def main():
    DhcpModule()()


if __name__ == "__main__":
    main()
