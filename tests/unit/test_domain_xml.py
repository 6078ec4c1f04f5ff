"""Domain XML of an instance: rendered from a spec, read back into the same spec, valid for libvirt."""

import subprocess

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.compute import domain
from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput


def spec(**changes):
    base = {
        "name": "i-0a1b2c3d", "virt_type": "qemu", "os_profile": "linux", "vcpus": 1, "memory_mb": 128,
        "kernel": "/cache/eki-00000001/image", "ramdisk": "/cache/eri-00000001/image",
        "kernel_args": "console=ttyS0 panic=-1 no_timer_check",
        "root": "/inst/i-0a1b2c3d/root.qcow2", "root_volume": None, "seed": "/inst/i-0a1b2c3d/seed.iso",
        "console_log": "/inst/i-0a1b2c3d/console.log",
        "nics": [{"bridge": "eubr-100", "mac": "d0:0d:0a:4d:00:0a", "port": "ei0a1b2c3dn0"}],
        "images": {"image": "emi-00000001", "kernel": "eki-00000001", "ramdisk": "eri-00000001"},
        "seed_digest": "0123456789abcdef",
    }
    base.update(changes)
    return base


PROFILES = {
    "linux-direct-boot": spec(),
    "linux-disk-boot": spec(kernel=None, ramdisk=None, kernel_args=None, images={"image": "emi-00000001"}),
    "windows": spec(os_profile="windows", kernel=None, ramdisk=None, kernel_args=None, vcpus=2, memory_mb=4096,
                    images={"image": "emi-00000002"}),
    "kvm-two-nics": spec(virt_type="kvm", nics=[
        {"bridge": "eubr-100", "mac": "d0:0d:0a:4d:00:0a", "port": "ei0a1b2c3dn0"},
        {"bridge": "eubr-101", "mac": "d0:0d:0a:4d:01:0a", "port": "ei0a1b2c3dn1"}]),
    "boot-from-iscsi-volume": spec(root="iscsi://10.20.0.2:3260/iqn.2010-05.cloud.euca:vol-0000000b/1",
                                   root_volume="vol-0000000b", images={"kernel": "eki-00000001", "ramdisk": "eri-00000001"}),
    "boot-from-local-volume": spec(root="/dev/vg0/vol-0000000c", root_volume="vol-0000000c", kernel=None, ramdisk=None,
                                   kernel_args=None, images={}),
}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_render_then_parse_gives_the_spec_back(name):
    assert domain.parse(domain.render(PROFILES[name])) == PROFILES[name]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_rendered_domain_passes_virt_xml_validate(name, tmp_path):
    path = tmp_path / ("%s.xml" % name)
    path.write_text(domain.render(PROFILES[name]))
    run = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_windows_profile_has_local_time_and_hyperv_enlightenments():
    xml = domain.render(PROFILES["windows"])
    assert "<clock offset=\"localtime\"><timer name=\"hypervclock\" present=\"yes\" /></clock>" in xml
    for feature in ("<relaxed state=\"on\" />", "<vapic state=\"on\" />", "<spinlocks state=\"on\" retries=\"8191\" />"):
        assert feature in xml
    assert "hyperv" not in domain.render(PROFILES["linux-disk-boot"])


def test_devices_that_are_not_ours_do_not_count():
    xml = domain.render(spec())
    volume = ("<disk type='network' device='disk'><driver name='qemu' type='raw'/>"
              "<source protocol='iscsi' name='iqn.2026-11.cloud.euca:vol-1/1'><host name='10.0.0.2' port='3260'/></source>"
              "<target dev='vdc' bus='virtio'/><alias name='ua-vol-0000000a'/></disk>")
    with_volume = xml.replace("<memballoon", volume + "<memballoon")
    assert domain.differences(domain.parse(with_volume), spec()) == []


def test_libvirt_units_and_case_are_normalised():
    xml = domain.render(spec()).replace('<memory unit="MiB">128</memory>', '<memory unit="KiB">131072</memory>')
    xml = xml.replace("d0:0d:0a:4d:00:0a", "D0:0D:0A:4D:00:0A")
    assert domain.differences(domain.parse(xml), spec()) == []
    assert domain.differences(domain.parse(xml), spec(memory_mb=256)) == ["memory_mb"]


@pytest.mark.parametrize("mac,message", [("d0:0d:0a:4d:00", "is not a MAC"), ("zz:0d:0a:4d:00:0a", "is not a MAC"),
                                         ("01:00:5e:00:00:01", "multicast")])
def test_bad_macs_are_refused(mac, message):
    with pytest.raises(InvalidInput, match=message):
        domain.check_mac(mac)


def test_port_names_fit_and_avoid_libvirt_prefixes():
    name = domain.port_name("i-0a1b2c3d", 7)
    assert len(name) <= 15 and not name.startswith(("vnet", "vif")) and name != domain.port_name("i-0a1b2c3d", 6)


def test_a_redefinition_keeps_the_uuid_and_foreign_disks():
    volume = ("<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/vol/vol-0000000a'/>"
              "<target dev='vdc' bus='virtio'/><alias name='ua-vol-0000000a'/></disk>")
    current = domain.render(spec()).replace("<memballoon", volume + "<memballoon")
    xml = domain.render(spec(memory_mb=256), uuid="6f1c0a52-3a43-4b8e-a1b9-0d2cfe7d1a10", current=current)
    assert "<uuid>6f1c0a52-3a43-4b8e-a1b9-0d2cfe7d1a10</uuid>" in xml and "/vol/vol-0000000a" in xml
    assert xml.count("ua-euca-root") == 1 and domain.parse(xml)["memory_mb"] == 256
