#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: cc_metadata
short_description: Serve the EC2 instance metadata service (169.254.169.254) on a cluster controller
version_added: 0.1.0
description:
  - Every instance of the CC reaches http://169.254.169.254/ with EC2's layout (meta-data, user-data,
    dynamic/instance-identity/document, IMDSv2 tokens), answered from the instances given here, which come from the
    ledger on every converge; the CC keeps nothing of its own.
  - Writes O(instances) as one snapshot file (atomically, mode 0600, only when its content differs); the daemon
    (C(euca-metadata), installed by roles/cc) re-reads it when it changes, without a restart.
  - Keeps the daemon running under O(service_manager) (it comes back after kill -9) and restarts it when its command
    line changes.
  - Converges the nft table C(ip euca_metadata) in O(namespace). Port 80 of 169.254.169.254 arriving on
    O(interfaces) is redirected to O(port) (the redirect makes the destination the interface's primary address, the
    segment's gateway, which is how the daemon tells segments apart). Port O(port) is dropped unless the connection
    came through that redirect from an interface, IP address and MAC address of one of O(instances), so an address
    taken over on a segment, or used on another segment, gets nothing.
  - A caller the snapshot does not know gets 404.
  - Bad input fails before anything changes. Applying the same input again changes nothing.
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The instances that change, by id; user data and keys are redacted.
  platform:
    platforms: posix
options:
  instances:
    description:
      - The instances of this CC, one item each; the snapshot holds exactly these.
    type: list
    elements: dict
    default: []
    suboptions:
      id:
        description: The instance id (C(i-0a1b2c3d)).
        type: str
        required: true
      gateway:
        description: The segment's gateway address on this CC (the address the redirect delivers to).
        type: str
        required: true
      interface:
        description: The segment's bridge on this CC.
        type: str
        required: true
      private_ip:
        description: The instance's private address.
        type: str
        required: true
      mac:
        description: The instance NIC's MAC address.
        type: str
        required: true
      image_id:
        description: The machine image (C(emi-...)).
        type: str
        required: true
      kernel_id:
        description: The kernel image (C(eki-...)), if any.
        type: str
      ramdisk_id:
        description: The ramdisk image (C(eri-...)), if any.
        type: str
      instance_type:
        description: The instance type (C(m1.small)).
        type: str
        required: true
      reservation_id:
        description: The reservation (C(r-...)).
        type: str
        required: true
      launch_index:
        description: The instance's index in its reservation.
        type: int
        default: 0
      hostname:
        description: The instance's host name.
        type: str
        required: true
      local_hostname:
        description: The instance's private host name; O(instances[].hostname) when omitted.
        type: str
      public_ip:
        description: Its elastic IP. Without one, public-ipv4 and public-hostname are absent (404), as in EC2.
        type: str
      public_hostname:
        description: Its public host name (the elastic IP when omitted).
        type: str
      availability_zone:
        description: The cluster's availability zone.
        type: str
        required: true
      region:
        description: The cloud's region.
        type: str
        required: true
      account:
        description: The owner's account id.
        type: str
        required: true
      security_groups:
        description: The names of its security groups.
        type: list
        elements: str
        default: []
      public_keys:
        description: Its key pairs (public-keys/); kept out of the module's output and diff.
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description: The key pair's name.
            type: str
            required: true
          key:
            description: One line of OpenSSH public key text.
            type: str
            required: true
      user_data:
        description: Its user data (text, up to 16 KiB), served as given; none when omitted. Kept out of the output.
        type: str
      launched_at:
        description: When it was launched (the identity document's pendingTime).
        type: str
      http_tokens:
        description: V(required) refuses reads without an IMDSv2 token (401).
        type: str
        choices: [optional, required]
        default: optional
      architecture:
        description: The identity document's architecture.
        type: str
        choices: [x86_64, i386, arm64]
        default: x86_64
      manifest_path:
        description: The image's manifest (ami-manifest-path; C((unknown)) when omitted).
        type: str
  interfaces:
    description:
      - Segment interfaces whose traffic to 169.254.169.254 port 80 is redirected. The interfaces of O(instances) are
        always added.
    type: list
    elements: str
    default: []
  state:
    description:
      - V(present) serves O(instances).
      - V(absent) stops the daemon, removes its program, the nft table, the snapshot, the token key and the log.
    type: str
    choices: [present, absent]
    default: present
  snapshot:
    description: The snapshot file; the table file, pid file, log and token key go in the same directory.
    type: path
    default: /var/lib/euca/cc/metadata/snapshot.json
  token_key:
    description: The IMDSv2 token key (created by the daemon, mode 0600). C(token.key) beside O(snapshot) when omitted.
    type: path
  port:
    description: The daemon's TCP port (the redirect's target).
    type: int
    default: 8775
  listen:
    description: The address the daemon listens on.
    type: str
    default: 0.0.0.0
  namespace:
    description: Network namespace of the CC (as C(ip netns exec)); the host's own when omitted. It must exist.
    type: str
  server_path:
    description: The daemon (roles/cc installs it there).
    type: path
    default: /usr/local/lib/euca/euca-metadata
  service_manager:
    description:
      - Who runs the daemon. V(auto) is V(systemd) where systemd is PID 1 and V(supervisord) otherwise.
      - V(none) starts it in the background (pid file beside O(snapshot)); nothing restarts it when it dies.
    type: str
    choices: [none, auto, systemd, supervisord]
    default: none
  service_name:
    description: The systemd unit (C(<name>.service)) or supervisord program.
    type: str
    default: euca-metadata
  supervisor_conf:
    description: supervisord's configuration file (started with it when supervisord does not answer).
    type: path
    default: /etc/supervisor/supervisord.conf
  supervisor_programs_dir:
    description: The directory supervisord's C([include]) reads program files from.
    type: path
    default: /etc/supervisor/conf.d
  systemd_units_dir:
    description: Where the systemd unit goes.
    type: path
    default: /etc/systemd/system
  firewall_backend:
    description: What the redirect and guard are made with. Only V(nft) for now.
    type: str
    choices: [nft]
    default: nft
  on_invalid:
    description:
      - What to do with an instance of O(instances) that cannot be served (a field the model refuses, or an address
        or port another instance already has).
      - V(fail) refuses the whole run before anything changes.
      - V(skip) leaves it out (it keeps what it was answered with before, if anything), serves every other instance,
        warns, and names it with the reason in RV(left_out). C(playbooks/network.yml) uses it, so that one tenant's
        bad record never stops the rest of the cloud from converging.
    type: str
    choices: [fail, skip]
    default: fail
notes:
  - Needs nftables and iproute2 (with O(namespace)); the daemon needs only /usr/bin/python3.
"""

EXAMPLES = r"""
- name: Serve the metadata of this CC's instances
  euca.cloud.cc_metadata:
    namespace: "{{ cc_namespace or omit }}"
    service_manager: auto
    interfaces: [eubr-10]
    instances:
      - id: i-0a1b2c3d
        gateway: 10.10.0.1
        interface: eubr-10
        private_ip: 10.10.0.5
        mac: "d0:0d:0a:0a:00:05"
        image_id: emi-00000001
        instance_type: m1.small
        reservation_id: r-00000001
        hostname: i-0a1b2c3d
        public_ip: 203.0.113.10
        availability_zone: cluster1
        region: euca
        account: "000000000001"
        security_groups: [default]
        public_keys: [{name: mykey, key: "ssh-ed25519 AAAAC3Nza... me@host"}]
        user_data: "#!/bin/sh\necho hello\n"
        launched_at: "2024-05-01T12:00:00Z"

- name: Stop serving metadata
  euca.cloud.cc_metadata:
    state: absent
"""

RETURN = r"""
left_out:
  description: With O(on_invalid=skip), the instances left out (C(item), the instance id) and why (C(reason)).
  returned: always
  type: list
  elements: dict
  sample: [{item: i-0a1b2c3d, reason: "metadata instance i-0a1b2c3d: mac 'ff:ff:ff:ff:ff:ff' is not a unicast MAC"}]
summary:
  description: The instances the run adds, removes and modifies (would, in check mode), by id.
  returned: always
  type: dict
  sample: {added: [i-0a1b2c3d], removed: [], modified: [], unchanged: 4}
commands:
  description: What was (or would be) done; empty when nothing differs.
  returned: always
  type: list
  elements: str
  sample: ["write /var/lib/euca/cc/metadata/snapshot.json (5 instances)"]
daemon:
  description: What was (or would be) done to the daemon, its pid after the run and who runs it.
  returned: always
  type: dict
  sample: {action: start, pid: 4242, service: supervisord euca-metadata}
snapshot:
  description: The snapshot file.
  returned: always
  type: str
  sample: /var/lib/euca/cc/metadata/snapshot.json
interfaces:
  description: The interfaces whose 169.254.169.254 traffic is redirected.
  returned: always
  type: list
  elements: str
  sample: [eubr-10]
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import EucaModule
from ansible_collections.euca.cloud.plugins.module_utils.net import metadata
from ansible_collections.euca.cloud.plugins.module_utils.process import check_namespace

INSTANCE_OPTIONS = dict(
    id=dict(type="str", required=True),
    gateway=dict(type="str", required=True),
    interface=dict(type="str", required=True),
    private_ip=dict(type="str", required=True),
    mac=dict(type="str", required=True),
    image_id=dict(type="str", required=True),
    kernel_id=dict(type="str"),
    ramdisk_id=dict(type="str"),
    instance_type=dict(type="str", required=True),
    reservation_id=dict(type="str", required=True),
    launch_index=dict(type="int", default=0),
    hostname=dict(type="str", required=True),
    local_hostname=dict(type="str"),
    public_ip=dict(type="str"),
    public_hostname=dict(type="str"),
    availability_zone=dict(type="str", required=True),
    region=dict(type="str", required=True),
    account=dict(type="str", required=True),
    security_groups=dict(type="list", elements="str", default=[]),
    public_keys=dict(type="list", elements="dict", default=[],
                     options=dict(name=dict(type="str", required=True), key=dict(type="str", required=True, no_log=True))),
    user_data=dict(type="str", no_log=True),
    launched_at=dict(type="str"),
    http_tokens=dict(type="str", default="optional", choices=["optional", "required"]),
    architecture=dict(type="str", default="x86_64", choices=["x86_64", "i386", "arm64"]),
    manifest_path=dict(type="str"),
)


class CcMetadataModule(EucaModule):
    argument_spec = dict(
        instances=dict(type="list", elements="dict", default=[], options=INSTANCE_OPTIONS),
        interfaces=dict(type="list", elements="str", default=[]),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        snapshot=dict(type="path", default=metadata.DEFAULT_SNAPSHOT),
        token_key=dict(type="path", no_log=False),
        port=dict(type="int", default=metadata.DEFAULT_PORT),
        listen=dict(type="str", default=metadata.DEFAULT_LISTEN),
        namespace=dict(type="str"),
        server_path=dict(type="path", default=metadata.DEFAULT_SERVER_PATH),
        service_manager=dict(type="str", default="none", choices=["none", "auto", "systemd", "supervisord"]),
        service_name=dict(type="str", default=metadata.DEFAULT_SERVICE_NAME),
        supervisor_conf=dict(type="path", default="/etc/supervisor/supervisord.conf"),
        supervisor_programs_dir=dict(type="path", default="/etc/supervisor/conf.d"),
        systemd_units_dir=dict(type="path", default="/etc/systemd/system"),
        firewall_backend=dict(type="str", default="nft", choices=["nft"]),
        on_invalid=dict(type="str", default="fail", choices=["fail", "skip"]),
    )

    def run(self):
        p = self.params
        present = p["state"] == "present"
        instances, interfaces, left_out = metadata.normalize(p["instances"] if present else [], p["interfaces"],
                                                             contain=p["on_invalid"] == "skip")
        check_namespace(p["namespace"])
        svc = metadata.Metadata(
            snapshot=p["snapshot"], port=p["port"], listen=p["listen"], namespace=p["namespace"],
            server_path=p["server_path"], token_key=p["token_key"], service_manager=p["service_manager"],
            service_name=p["service_name"], supervisor_conf=p["supervisor_conf"],
            supervisor_programs_dir=p["supervisor_programs_dir"], systemd_units_dir=p["systemd_units_dir"])
        before = dict((i["id"], i) for i in svc.gather())
        if left_out:
            # an instance left out keeps what it answered before (as the filter keeps a group's rules)
            kept = [before[e["item"]] for e in left_out if e["item"] in before]
            instances, interfaces, _again = metadata.normalize(instances + kept, interfaces, contain=True)
            for problem in left_out:
                self.ansible.warn("left out, the rest was applied: %s" % problem["reason"])
        after = dict((i["id"], i) for i in instances)
        commands, writes, action = svc.plan(instances, interfaces, present)
        touched = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        result = {
            "changed": bool(commands),
            "left_out": left_out,
            "commands": commands,
            "snapshot": p["snapshot"],
            "interfaces": interfaces if present else [],
            "summary": {
                "added": sorted(k for k in after if k not in before),
                "removed": sorted(k for k in before if k not in after),
                "modified": sorted(k for k in after if k in before and before[k] != after[k]),
                "unchanged": sum(1 for k in after if before.get(k) == after[k]),
            },
            "diff": {
                "before": dict((k, metadata.redact(before[k])) for k in touched if k in before),
                "after": dict((k, metadata.redact(after[k])) for k in touched if k in after),
            },
        }
        if commands and not self.check_mode:
            if present:
                svc.apply(writes, action)
            else:
                svc.remove()
        result["daemon"] = {"action": action, "pid": svc.pid,
                            "service": svc.service.describe() if svc.service else None}
        return result


def main():
    CcMetadataModule()()


if __name__ == "__main__":
    main()
