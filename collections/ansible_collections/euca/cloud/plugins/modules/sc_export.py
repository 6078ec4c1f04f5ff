#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: sc_export
short_description: Export a volume to the node that attaches it (iSCSI through tgt, or AoE through vblade)
version_added: 0.1.0
description:
  - Makes one volume reachable by exactly the initiators in O(initiators), or takes its export away.
  - V(iscsi) talks to a running tgtd with C(tgtadm). Each volume is one target, C(<iqn_prefix>:<volume>), whose
    LUN 1 is the volume, with an ACL of the attaching node's address (or initiator name). tgtd itself runs under
    the service manager (roles/sc). tgtd keeps nothing across a restart, so each export is also kept as a restore
    script beside the control socket (C(<tgt_socket>.<tgt_control_port>.exports/<volume>.sh)); the tgtd that roles/sc
    runs replays them when it starts again (after a crash), and reconcile rebuilds them from the ledger.
  - V(aoe) runs one C(vblade) per volume on O(aoe_interface), limited to the MAC addresses in O(initiators), as a
    program of the host's service manager named C(euca-vblade-<volume>) (a supervisord program, or a systemd unit
    where systemd is PID 1), so it is restarted when it dies. O(state=absent) removes the program.
    AoE is the legacy transport; it needs an AoE initiator (the C(aoe) kernel module) on the nodes.
  - An export that is in use (an initiator has a session) is not removed, and an initiator with a session is not
    dropped from the ACL, unless O(force) is set. Detach the volume on its node first.
  - The result's RV(export.source) is what M(euca.cloud.nc_volume) takes as its O(euca.cloud.nc_volume#module:source).
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.storage
  - ansible.builtin.action_common_attributes
options:
  volume:
    description: The volume id (V(vol-) and 8 hex digits). It must exist on this storage controller.
    type: str
    required: true
  state:
    description: V(present) exports the volume to O(initiators); V(absent) removes its export.
    type: str
    choices: [present, absent]
    default: present
  transport:
    description: V(iscsi) (tgt) or V(aoe) (vblade).
    type: str
    choices: [iscsi, aoe]
    default: iscsi
  initiators:
    description:
      - Who may use the export; everyone else is refused. Required with O(state=present).
      - For V(iscsi), IP addresses of the attaching node or iSCSI initiator names (V(iqn.)...).
      - For V(aoe), MAC addresses of the node's interface.
    type: list
    elements: str
  force:
    description: Remove an export, or an initiator from its ACL, even while that initiator has a session.
    type: bool
    default: false
  iqn_prefix:
    description: Target names are C(<iqn_prefix>:<volume>).
    type: str
    default: iqn.2010-05.cloud.euca
  portal:
    description:
      - The address (V(host) or V(host:port)) nodes connect to, returned in RV(export.source). By default the
        portal tgtd listens on; required when tgtd listens on a wildcard address.
    type: str
  tgt_socket:
    description: The tgtd control socket's path without the C(.<control port>) suffix (tgt's C(TGT_IPC_SOCKET)).
    type: path
    default: /var/run/tgtd/socket
  tgt_control_port:
    description: The control port of the tgtd instance (C(tgtd -C)).
    type: int
    default: 0
  aoe_interface:
    description: The interface vblade serves on. Required with O(transport=aoe) and O(state=present).
    type: str
  aoe_shelf:
    description: The AoE shelf (major) address.
    type: int
    default: 0
  aoe_slot:
    description: The AoE slot (minor) address; the lowest free one on the shelf when omitted.
    type: int
  namespace:
    description: The network namespace vblade runs in (the host's own when omitted). tgtd is reached by its socket.
    type: str
  state_dir:
    description:
      - Where the log of each vblade program is kept. A vblade that an earlier version of this module started by itself
        (a C(<volume>.json) record here) is stopped and replaced by a program.
    type: path
    default: /run/euca/aoe
  service_manager:
    description: Which service manager runs the vblade programs (V(auto) is systemd when it is PID 1, supervisord otherwise).
    type: str
    choices: [auto, systemd, supervisord]
    default: auto
  supervisor_conf:
    description: The supervisord configuration file (supervisord is started from it when it does not run).
    type: path
    default: /etc/supervisor/supervisord.conf
  supervisor_programs_dir:
    description: The directory the supervisord configuration includes program files from.
    type: path
    default: /etc/supervisor/conf.d
  systemd_units_dir:
    description: Where systemd unit files go.
    type: path
    default: /etc/systemd/system
"""

EXAMPLES = r"""
- name: Export vol-1a2b3c4d to the node at 10.20.0.3 only
  euca.cloud.sc_export:
    volume: vol-1a2b3c4d
    initiators: [10.20.0.3]
  register: export

- name: Hot-plug it on that node
  euca.cloud.nc_volume:
    name: i-5c3e9a01
    volume: vol-1a2b3c4d
    source: "{{ export.export.source }}"
  delegate_to: nc-3

- name: Take the export away once the node has detached it
  euca.cloud.sc_export:
    volume: vol-1a2b3c4d
    state: absent
"""

RETURN = r"""
export:
  description: The export after the run (null once absent).
  returned: always
  type: dict
  contains:
    volume:
      description: The volume id.
      type: str
    transport:
      description: C(iscsi) or C(aoe).
      type: str
    initiators:
      description: Who may use it.
      type: list
      elements: str
    path:
      description: The exported file or device.
      type: str
    target:
      description: The iSCSI target name (iscsi), or the AoE address C(e<shelf>.<slot>) (aoe).
      type: str
    source:
      description: How a node reaches it; pass to M(euca.cloud.nc_volume).
      type: dict
    program:
      description: V(aoe) only - the service-manager program that runs its vblade (C(euca-vblade-<volume>)).
      type: str
    pid:
      description: V(aoe) only - the pid of its vblade, as the service manager reports it.
      type: int
  sample:
    volume: vol-1a2b3c4d
    transport: iscsi
    initiators: [10.20.0.3]
    path: /var/lib/euca/volumes/vol-1a2b3c4d.img
    target: iqn.2010-05.cloud.euca:vol-1a2b3c4d
    source: {protocol: iscsi, host: 10.20.0.2, port: 3260, target: "iqn.2010-05.cloud.euca:vol-1a2b3c4d", lun: 1}
commands:
  description: What was (or would be) done.
  returned: always
  type: list
  elements: str
  sample: ["tgtadm -C 0 --lld iscsi --op bind --mode target --tid 1 -I 10.20.0.3"]
"""

from ansible_collections.euca.cloud.plugins.module_utils.base import EucaModule
from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput, NotFound
from ansible_collections.euca.cloud.plugins.module_utils.process import check_namespace, run
from ansible_collections.euca.cloud.plugins.module_utils.storage import backends, exports


class ScExportModule(EucaModule):
    argument_spec = dict(
        backends.STORAGE_ARGS,
        volume=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        transport=dict(type="str", default="iscsi", choices=["iscsi", "aoe"]),
        initiators=dict(type="list", elements="str"),
        force=dict(type="bool", default=False),
        iqn_prefix=dict(type="str", default=exports.DEFAULT_IQN_PREFIX),
        portal=dict(type="str"),
        tgt_socket=dict(type="path", default=exports.DEFAULT_TGT_SOCKET),
        tgt_control_port=dict(type="int", default=0),
        aoe_interface=dict(type="str"),
        aoe_shelf=dict(type="int", default=0),
        aoe_slot=dict(type="int"),
        namespace=dict(type="str"),
        state_dir=dict(type="path", default="/run/euca/aoe"),
        service_manager=dict(type="str", default="auto", choices=["auto", "systemd", "supervisord"]),
        supervisor_conf=dict(type="path", default="/etc/supervisor/supervisord.conf"),
        supervisor_programs_dir=dict(type="path", default="/etc/supervisor/conf.d"),
        systemd_units_dir=dict(type="path", default="/etc/systemd/system"),
    )
    module_kwargs = dict(required_if=[["state", "present", ["initiators"]]])

    def run(self):
        p = self.params
        store = backends.from_params(p)
        name = backends.check_name(p["volume"])
        if not name.startswith("vol-"):
            raise InvalidInput("%s is not a volume id (vol- and 8 hex digits)" % name)
        present = p["state"] == "present"
        initiators = exports.check_initiators(p["transport"], p["initiators"])
        if present and not initiators:
            raise InvalidInput("initiators is empty: an export is for the node that attaches the volume")
        path = store.path(name)
        if present and store.info(name) is None:
            raise NotFound("volume %s does not exist on this storage controller (%s)" % (name, path))
        if p["transport"] == "aoe":
            return self.aoe(name, path, initiators, present)
        return self.iscsi(name, path, initiators, present)

    def iscsi(self, name, path, initiators, present):
        p = self.params
        tgt = exports.Tgt(p["tgt_socket"], p["tgt_control_port"])
        targets, portals = tgt.gather()
        iqn = "%s:%s" % (p["iqn_prefix"], name)
        if not exports.IQN_RE.match(iqn):
            raise InvalidInput("iqn_prefix %r does not make an iqn name (iqn.YYYY-MM.reversed.domain)" % p["iqn_prefix"])
        bstype = "rbd" if p["backend"] == "rbd" else "rdwr"
        lun_path = path[len("rbd:"):] if bstype == "rbd" else path
        steps = tgt.plan(targets, iqn, lun_path, bstype, initiators, present=present, force=p["force"])
        before = self._iscsi_view(name, iqn, targets.get(iqn))
        if steps and not self.check_mode:
            tgt.apply(steps)
            targets, portals = tgt.gather()
        if not self.check_mode:
            tgt.save(name, iqn, targets.get(iqn))  # what a restarted tgtd is given back
        after = self._iscsi_view(name, iqn, targets.get(iqn)) if not self.check_mode else (
            dict(volume=name, transport="iscsi", initiators=initiators, path=path, target=iqn) if present else None)
        if after is not None:
            after["source"] = dict(protocol="iscsi", target=iqn, lun=exports.LUN, **self._portal(portals))
        return {"changed": bool(steps), "commands": [" ".join(s) for s in steps], "export": after,
                "diff": {"before": before or {}, "after": after or {}}}

    def _portal(self, portals):
        given = self.params["portal"]
        if not given:
            usable = [p for p in portals if not p.startswith(("0.0.0.0:", "[::]:", ":::"))]
            if not usable:
                raise InvalidInput("tgtd listens on %s; set portal to the address nodes connect to"
                                   % (", ".join(portals) or "no portal"))
            given = usable[0]
        host, sep, port = given.rpartition(":")
        if not sep or not port.isdigit():
            host, port = given, "3260"
        return {"host": host.strip("[]"), "port": int(port)}

    @staticmethod
    def _iscsi_view(name, iqn, target):
        if target is None:
            return None
        lun = target["luns"].get(exports.LUN) or {}
        return {"volume": name, "transport": "iscsi", "initiators": sorted(target["acl"]), "path": lun.get("path"),
                "target": iqn, "sessions": sorted(set(c["ip"] for s in target["sessions"] for c in s["connections"]))}

    def aoe(self, name, path, initiators, present):
        p = self.params
        namespace = check_namespace(p["namespace"])
        if present:
            if not p["aoe_interface"]:
                raise InvalidInput("transport=aoe needs aoe_interface (the interface vblade serves on)")
            if not 0 <= p["aoe_shelf"] < 65535 or not 0 <= (p["aoe_slot"] or 0) < 255:
                raise InvalidInput("AoE addresses are shelf 0-65534 and slot 0-254")
            rc, _out, _err = run(["ip", "link", "show", "dev", p["aoe_interface"]], namespace=namespace, check=False)
            if rc != 0:
                raise InvalidInput("interface %s does not exist%s" % (
                    p["aoe_interface"], " in namespace %s" % namespace if namespace else ""))
        vblade = exports.Vblade(p["state_dir"], namespace, p["service_manager"], p["supervisor_conf"],
                                p["supervisor_programs_dir"], p["systemd_units_dir"])
        have = vblade.gather()
        steps, address = vblade.plan(have, name, path, p["aoe_interface"], p["aoe_shelf"], p["aoe_slot"],
                                     initiators, present=present)
        before = self._aoe_view(name, have.get(name))
        if steps and not self.check_mode:
            vblade.apply(steps)
            have = vblade.gather()
        after = None
        if present:
            after = self._aoe_view(name, have.get(name)) if not self.check_mode else {
                "volume": name, "transport": "aoe", "initiators": initiators, "path": path,
                "target": "e%d.%d" % address}
            after["source"] = {"protocol": "aoe", "target": after["target"],
                               "path": "/dev/etherd/%s" % after["target"]}
        return {"changed": bool(steps), "commands": vblade.render(steps), "export": after,
                "diff": {"before": before or {}, "after": after or {}}}

    @staticmethod
    def _aoe_view(name, record):
        if record is None:
            return None
        return {"volume": name, "transport": "aoe", "initiators": record["macs"], "path": record["path"],
                "target": "e%d.%d" % (record["shelf"], record["slot"]), "interface": record["interface"],
                "pid": record.get("pid"), "running": record["running"], "program": None if record.get("legacy")
                else exports.Vblade.PREFIX + name}


def main():
    ScExportModule()()


if __name__ == "__main__":
    main()
