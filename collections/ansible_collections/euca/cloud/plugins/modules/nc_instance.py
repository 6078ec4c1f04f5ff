#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: nc_instance
short_description: An instance on a node controller, as a libvirt domain (running, stopped or absent)
version_added: 0.1.0
description:
  - Makes one instance on this node controller what its spec says, through libvirt-python. The spec normally comes
    from the ledger's placement (M(euca.cloud.instance)) and its images from the node's cache
    (M(euca.cloud.image_cache)).
  - The root disk is a qcow2 overlay backed by the cached machine image; the image is never copied, so launch time
    does not depend on its size. A kernel and ramdisk (Eucalyptus EKI/ERI) boot the guest directly when given.
  - A NoCloud seed disk (ISO 9660 labelled C(cidata)) carries the instance id, hostname and user data; the serial
    console is appended to C(console.log) in the instance's directory across reboots and restarts.
  - Idempotent by spec, not by XML. The domain libvirt has is read back into the same normalised spec and
    redefined only when they differ, so a second run with the same options changes nothing. Devices this module
    does not own (volumes attached later) are ignored and survive a redefinition.
  - A spec change on a running instance takes effect at its next start; the result says so with
    RV(restart_required).
  - Each NIC's tap is kept a port of its bridge with hairpin mode, so the instance can reach its own elastic IP through
    the CC; a bridge that was deleted and rebuilt gets the running instance's taps back (action C(ports)).
  - Everything is validated first (id, sizes, MACs, that the images are cached and the bridges exist); bad input
    defines and writes nothing.
  - Many instances in one run with O(instances) (what C(playbooks/nodes.yml) does for a node's whole slice); each
    item is converged exactly as a single instance would be, up to O(parallel) at a time, and one item's failure
    never stops the others. The result is then RV(results), one per item.
  - For reboot and console output see M(euca.cloud.nc_instance_action).
author:
  - euca.cloud maintainers (@euca-cloud)
extends_documentation_fragment:
  - euca.cloud.attributes
  - euca.cloud.libvirt
  - euca.cloud.libvirt.instances
  - ansible.builtin.action_common_attributes
options:
  name:
    description:
      - The instance id (V(i-) and 8 hex digits), also the libvirt domain's name.
      - Required unless O(instances) is given; mutually exclusive with it.
    type: str
    required: false
  instances:
    description:
      - Converge many instances of this node in one run instead of the one O(name) says. Each item is a dict of
        this module's per-instance options (O(name), which it must have, O(state), O(image), O(kernel), O(nics),
        O(user_data) and the others, except O(uri), O(namespace), O(cache_dir), O(instances_dir), O(instances)
        and O(parallel)); a key it does not have, or has as null, is the module's own option (so the module's
        options are the items' defaults). An item with O(root_volume) does not inherit O(image), and the other way
        round.
      - Each item is validated and converged on its own; an item that is invalid or fails is reported failed in
        RV(results) and the others still converge. The task fails when one item did.
      - With C(--diff) the diff has one part per changed instance.
    type: list
    elements: raw
  parallel:
    description:
      - With O(instances), how many instances converge at once (each worker has its own libvirt connection).
        Creating disks and seeds and starting QEMU mostly wait on programs and libvirtd, so this may exceed
        the node's cores.
    type: int
    default: 8
  state:
    description:
      - V(running) defines the domain when needed and starts it; V(stopped) defines it and shuts it down;
        V(absent) powers it off, undefines it and removes its overlay, seed and console log.
    type: str
    choices: [running, stopped, absent]
    default: running
  image:
    description:
      - The machine image id (V(emi-...)); it must be in the node's image cache. Required unless O(state=absent) or
        the instance boots from a volume (O(root_volume)).
    type: str
  root_volume:
    description:
      - Boot from a volume. The volume id (V(vol-...)) whose disk is the root disk (V(vda)) instead of an overlay
        of O(image); O(root_source) says where it is. Create it from an image with M(euca.cloud.sc_volume)'s
        O(euca.cloud.sc_volume#module:image_file) and export it with M(euca.cloud.sc_export).
      - With O(kernel) the kernel is still booted directly from the image cache.
    type: str
  root_source:
    description: Where O(root_volume)'s bytes are, as M(euca.cloud.nc_volume)'s O(euca.cloud.nc_volume#module:source).
    type: dict
  kernel:
    description: A kernel image id (V(eki-...)) in the cache, for direct kernel boot.
    type: str
  ramdisk:
    description: A ramdisk image id (V(eri-...)) in the cache; needs O(kernel).
    type: str
  kernel_args:
    description: The kernel command line with O(kernel).
    type: str
    default: console=ttyS0 panic=-1 no_timer_check
  cache_dir:
    description: The node's image cache (see M(euca.cloud.image_cache)).
    type: path
    default: /var/lib/euca/image-cache
  cpu_group:
    description:
      - A cgroup of the host's cpu controller (a relative path such as V(euca-guests)) that every running instance's
        QEMU process is put in, created when missing, so that the node's guests together weigh as one process
        against the host's own work, as libvirt's machine partition (systemd's C(machine.slice)) does where libvirt
        manages cgroups. For the NC's private libvirtd, which runs without cgroups (M(euca.cloud.nc_libvirtd));
        without it, many guests booting at once starve the node's own modules. Where systemd runs the NC's libvirtd,
        its guests already share the service's cgroup, so leave it unset there.
      - Kept like the bridge ports, also when nothing else changes (action C(cpu group)). Unset (the default), the
        processes stay where libvirt started them.
      - A host without a cpu controller is refused before anything changes.
    type: str
  vcpus:
    description: Virtual CPUs.
    type: int
    default: 1
  memory_mb:
    description: Memory in MiB. A Debian kernel needs at least 96 (128 is safe).
    type: int
    default: 256
  root_size_gb:
    description: Virtual size of the root overlay in GiB; the image's size when omitted.
    type: int
  nics:
    description: The instance's NICs, in order (the first is eth0 in the guest).
    type: list
    elements: dict
    default: []
    suboptions:
      bridge:
        description: The segment bridge (for example V(eubr-100)); it must exist in O(namespace).
        type: str
        required: true
      mac:
        description: The NIC's unicast MAC, as the ledger allocated it (DHCP reservations use it).
        type: str
        required: true
  hostname:
    description: The hostname in the NoCloud seed; the instance id when omitted.
    type: str
  user_data:
    description: User data for the NoCloud seed (cloud-init reads it; the test image runs it when it starts with V(#!)).
    type: str
  public_keys:
    description: OpenSSH public keys for the NoCloud seed's C(public-keys) (cloud-init gives them to the default user).
    type: list
    elements: str
  seed:
    description:
      - Whether the instance gets a NoCloud seed disk. Without one, cloud-init configures it from the EC2 metadata
        service alone (the cluster controller's C(http://169.254.169.254/)).
    type: bool
    default: true
  virt_type:
    description:
      - V(kvm) or V(qemu) (TCG emulation). V(auto) picks kvm only when C(/dev/kvm) exists and the C(kvm_intel) or
        C(kvm_amd) module is loaded; some nested hosts expose a /dev/kvm whose guests reset at boot.
    type: str
    choices: [auto, kvm, qemu]
    default: auto
  os_profile:
    description:
      - V(linux), or V(windows) for a Windows guest (clock in local time, Hyper-V enlightenments).
    type: str
    choices: [linux, windows]
    default: linux
  wait:
    description: Wait until libvirt reports the requested state.
    type: bool
    default: true
  timeout:
    description: Seconds to wait with O(wait).
    type: int
    default: 120
  shutdown_timeout:
    description: Seconds an ACPI shutdown may take before the instance is powered off (V(0) powers off at once).
    type: int
    default: 60
notes:
  - The module runs where libvirt's disks are, on the node controller; it reads the image cache directly.
"""

EXAMPLES = r"""
- name: Run an instance placed on this node, booting the test image's kernel directly
  euca.cloud.nc_instance:
    name: i-0a1b2c3d
    image: emi-1234abcd
    kernel: eki-1234abcd
    ramdisk: eri-1234abcd
    memory_mb: 128
    nics:
      - bridge: eubr-100
        mac: d0:0d:0a:80:00:02
    user_data: |
      #!/bin/sh
      echo hello

- name: Stop it (power off at once)
  euca.cloud.nc_instance:
    name: i-0a1b2c3d
    image: emi-1234abcd
    state: stopped
    shutdown_timeout: 0

- name: Terminate it
  euca.cloud.nc_instance:
    name: i-0a1b2c3d
    state: absent

- name: Run a node's whole slice at once, four at a time; one bad item fails alone
  euca.cloud.nc_instance:
    instances:
      - name: i-0a1b2c3d
        image: emi-1234abcd
        nics: [{bridge: eubr-100, mac: "d0:0d:0a:80:00:02"}]
      - name: i-0a1b2c3e
        image: emi-1234abcd
        state: stopped
        nics: [{bridge: eubr-100, mac: "d0:0d:0a:80:00:03"}]
    kernel: eki-1234abcd   # the items' default
    memory_mb: 128
    parallel: 4
  register: launch
  ignore_errors: true

- name: Show the instances that did not start
  ansible.builtin.debug:
    msg: "{{ launch.results | selectattr('failed') | map(attribute='msg') | list }}"
"""

RETURN = r"""
instance:
  description: The instance after the run (as it would be, in check mode).
  returned: without O(instances)
  type: dict
  contains:
    name:
      description: The instance id.
      type: str
    uuid:
      description: The libvirt domain's UUID (null when there is none).
      type: str
    state:
      description: V(running), V(stopped) or V(absent).
      type: str
    virt_type:
      description: V(kvm) or V(qemu).
      type: str
    overlay:
      description: The root overlay's path (null when the instance boots from a volume).
      type: str
    root_volume:
      description: The volume the instance boots from, or null.
      type: str
    seed:
      description: The NoCloud seed's path.
      type: str
    console_log:
      description: The serial console log's path.
      type: str
    interfaces:
      description: The NICs, with the bridge port (tap) of each.
      type: list
      elements: dict
  sample: {name: i-0a1b2c3d, uuid: 6f1c0a52-3a43-4b8e-a1b9-0d2cfe7d1a10, state: running, virt_type: qemu,
           overlay: /var/lib/euca/instances/i-0a1b2c3d/root.qcow2, seed: /var/lib/euca/instances/i-0a1b2c3d/seed.iso,
           console_log: /var/lib/euca/instances/i-0a1b2c3d/console.log,
           interfaces: [{bridge: eubr-100, mac: "d0:0d:0a:80:00:02", port: ei0a1b2c3dn0}]}
actions:
  description: What was done (would be done, in check mode), in order.
  returned: without O(instances)
  type: list
  elements: str
  sample: [define, create overlay, write seed, start]
restart_required:
  description: The running instance's definition changed; the change applies at its next start.
  returned: without O(instances)
  type: bool
previous_state:
  description:
    - What libvirt reported before this run, V(running), V(stopping), V(stopped) or V(absent) (no domain). A
      V(running) instance found V(absent) was gone from the node and has been created again from its spec.
    - Only in results of runs that reached libvirt (not when the input was refused).
  returned: success, without O(instances)
  type: str
  sample: absent
results:
  description:
    - With O(instances), one result per item, in their order. A successful item has the keys a single
      instance's run returns (RV(instance), RV(actions), RV(restart_required), RV(previous_state), C(changed));
      a failed one has C(msg) and what the failure reports.
  returned: with O(instances)
  type: list
  elements: dict
  contains:
    name:
      description: The item's instance id (null when it had none).
      type: str
    item:
      description: The item as given (as a loop's C(item), so a playbook reads C(item.name) and C(item.state)).
      type: dict
    failed:
      description: Whether this instance failed (the others are unaffected).
      type: bool
    changed:
      description: Whether this instance changed.
      type: bool
    msg:
      description: Why it failed, or (when it did not) the actions done, as one line.
      type: str
  sample:
    - {name: i-0a1b2c3d, failed: false, changed: true, msg: "instance i-0a1b2c3d: define, create overlay, write seed, start",
       actions: [define, create overlay, write seed, start], restart_required: false, previous_state: absent,
       item: {name: i-0a1b2c3d, image: emi-1234abcd}, instance: {name: i-0a1b2c3d, state: running}}
    - {name: i-0a1b2c3e, failed: true, changed: false, msg: "image emi-0badbad0 is not in the node's image cache ...",
       item: {name: i-0a1b2c3e, image: emi-0badbad0}}
msg:
  description: With O(instances), when items failed, how many and why.
  returned: failure
  type: str
"""

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.euca.cloud.plugins.module_utils.compute import instances
from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput


#: the options of one instance: the module's own, and the keys of an O(instances) item
INSTANCE_SPEC = dict(
    name=dict(type="str"),
    state=dict(type="str", default="running", choices=list(instances.STATES)),
    image=dict(type="str"),
    root_volume=dict(type="str"),
    root_source=dict(type="dict"),
    kernel=dict(type="str"),
    ramdisk=dict(type="str"),
    kernel_args=dict(type="str", default=instances.DEFAULT_KERNEL_ARGS),
    vcpus=dict(type="int", default=1),
    memory_mb=dict(type="int", default=256),
    root_size_gb=dict(type="int"),
    nics=dict(type="list", elements="dict", default=[], options=dict(
        bridge=dict(type="str", required=True),
        mac=dict(type="str", required=True),
    )),
    hostname=dict(type="str"),
    user_data=dict(type="str"),
    public_keys=dict(type="list", elements="str", no_log=False),
    seed=dict(type="bool", default=True),
    virt_type=dict(type="str", default="auto", choices=["auto", "kvm", "qemu"]),
    os_profile=dict(type="str", default="linux", choices=["linux", "windows"]),
    wait=dict(type="bool", default=True),
    timeout=dict(type="int", default=120),
    shutdown_timeout=dict(type="int", default=60),
)
#: the node's options, the same for every instance of a batch
NODE_SPEC = dict(
    uri=dict(type="str", default="qemu:///system"),
    namespace=dict(type="str"),
    instances_dir=dict(type="path", default="/var/lib/euca/instances"),
    cache_dir=dict(type="path", default="/var/lib/euca/image-cache"),
    cpu_group=dict(type="str"),
)
INSTANCE_KWARGS = dict(required_together=[["root_volume", "root_source"]],
                       mutually_exclusive=[["image", "root_volume"]])
#: an item's own root overrides the module's: it does not inherit the other kind
EXCLUSIVE_ROOTS = {"image": "root_volume", "root_volume": "image", "root_source": "image"}


def item_params(item, defaults):
    """The options of one O(instances) item: its own keys over the module's per-instance options, validated
    like the module's own; InvalidInput (for this item only) when they are not valid."""
    if not isinstance(item, dict):
        return InvalidInput("an instances item must be a dict, not %r" % (item,))
    own = dict((k, v) for k, v in item.items() if v is not None)
    merged = dict((k, v) for k, v in defaults.items() if k in INSTANCE_SPEC and k != "name" and v is not None)
    for key in own:
        if key in EXCLUSIVE_ROOTS:
            merged.pop(EXCLUSIVE_ROOTS[key], None)
            if key == "image":
                merged.pop("root_source", None)
    merged.update(own)
    spec = dict(INSTANCE_SPEC, name=dict(type="str", required=True))
    checked = ArgumentSpecValidator(spec, **INSTANCE_KWARGS).validate(merged)
    if checked.error_messages:
        return InvalidInput("instance %s: %s" % (item.get("name"), "; ".join(checked.error_messages)))
    return dict(checked.validated_parameters, **dict((k, defaults[k]) for k in NODE_SPEC))


class NcInstanceModule(instances.LibvirtModule):
    argument_spec = dict(
        NODE_SPEC,
        instances=dict(type="list", elements="raw"),
        parallel=dict(type="int", default=instances.DEFAULT_PARALLEL),
        **INSTANCE_SPEC
    )
    module_kwargs = dict(required_together=INSTANCE_KWARGS["required_together"],
                         mutually_exclusive=INSTANCE_KWARGS["mutually_exclusive"] + [["name", "instances"]],
                         required_one_of=[["name", "instances"]])

    def prepare(self):
        if self.params["parallel"] < 1:
            raise InvalidInput("parallel must be at least 1, not %d" % self.params["parallel"])
        if self.params["instances"] is None:
            self.instance = instances.Instance(self.params)
            self.instance.desired()  # all input errors before any connection

    def run(self):
        if self.params["instances"] is None:
            return super(NcInstanceModule, self).run()
        self.prepare()
        return self.batch()

    def with_connection(self, conn):
        return self.instance.converge(conn, check_mode=self.check_mode)

    def batch(self):
        """The O(instances) form: each item converged as a single instance would be, up to O(parallel) at once."""
        items = [((item or {}).get("name") if isinstance(item, dict) else None, item, item_params(item, self.params))
                 for item in self.params["instances"]]
        results = instances.converge_many(items, self.params["uri"], self.params["parallel"],
                                          check_mode=self.check_mode)
        diffs = []
        for result in results:
            diff = result.pop("diff", None)
            if diff is not None and result["changed"]:
                diffs.append(dict(diff, before_header="%s (before)" % result["name"],
                                  after_header="%s (after)" % result["name"]))
        failed = [r for r in results if r["failed"]]
        outcome = {"changed": any(r["changed"] for r in results), "results": results, "diff": diffs}
        if failed:
            outcome["failed"] = True
            outcome["msg"] = "%d of %d instances failed: %s" % (
                len(failed), len(results), "; ".join("%s: %s" % (r["name"], r["msg"]) for r in failed)[:4000])
        return outcome


def main():
    NcInstanceModule()()


if __name__ == "__main__":
    main()
