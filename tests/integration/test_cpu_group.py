"""compute/cpu_group.py on this host's real cpu cgroup controller: a process is put in a group with all
its threads, found by its QEMU-style command line, and the group goes only once it is empty.
(The sandbox's guests in their group: tests/integration/test_demo_playbook.py.)"""

import os
import secrets
import subprocess
import sys

import pytest

from ansible_collections.euca.cloud.plugins.module_utils.compute import cpu_group
from ansible_collections.euca.cloud.plugins.module_utils.errors import InvalidInput
from harness import netns

pytestmark = pytest.mark.skipif(cpu_group.hierarchy() is None or os.geteuid() != 0,
                                reason="needs root and a cpu cgroup controller mounted under /sys/fs/cgroup")

# a thread besides the main one, and the command line libvirt gives QEMU (-name guest=<name>,... -uuid <uuid>)
FAKE_QEMU = "import threading, time; threading.Thread(target=time.sleep, args=(600,), daemon=True).start(); time.sleep(600)"


def cgroup_of(pid):
    for line in open("/proc/%d/cgroup" % pid):
        _n, controllers, where = line.rstrip("\n").split(":", 2)
        if "cpu" in controllers.split(",") or (controllers == "" and cpu_group.hierarchy() == "/sys/fs/cgroup"):
            return where
    return None


@pytest.fixture
def group():
    name = "euca-guests-%s%s-unit-%s" % (netns.PREFIX, netns.RUN_TAG, secrets.token_hex(2))
    yield name
    path = os.path.join(cpu_group.hierarchy(), name)
    if os.path.isdir(path):
        os.rmdir(path)


def test_a_process_and_its_threads_go_in_the_group_and_the_group_goes_once_empty(group, tmp_path):
    uuid = "0a1b2c3d-0000-4000-8000-%012x" % secrets.randbits(48)
    # argv[0] named like QEMU, so that it is found the way a guest's process is
    exe = tmp_path / "qemu-system-x86_64"
    exe.symlink_to(sys.executable)
    proc = subprocess.Popen([str(exe), "-c", FAKE_QEMU, "-name", "guest=i-0a1b2c3d,debug-threads=on", "-uuid", uuid])
    try:
        found = None
        for _ in range(100):
            found = cpu_group.qemu_pid("i-0a1b2c3d", uuid)
            if found and len(os.listdir("/proc/%d/task" % proc.pid)) == 2:
                break
            subprocess.run(["sleep", "0.1"])
        assert found == proc.pid
        assert cpu_group.qemu_pid("i-0a1b2c3d", "another-uuid") is None
        assert cpu_group.place(group, proc.pid) is True
        assert cpu_group.place(group, proc.pid) is False  # already there: no change
        assert cgroup_of(proc.pid) == "/" + group
        for tid in os.listdir("/proc/%d/task" % proc.pid):  # every thread, not only the main one
            assert open("/proc/%d/task/%s/cgroup" % (proc.pid, tid)).read() == open("/proc/%d/cgroup" % proc.pid).read()
        with pytest.raises(InvalidInput, match="still holds processes %d" % proc.pid):
            cpu_group.remove(group)
    finally:
        proc.kill()
        proc.wait()
    assert cpu_group.remove(group) is True
    assert not os.path.exists(os.path.join(cpu_group.hierarchy(), group))
    assert cpu_group.remove(group) is False


@pytest.mark.parametrize("bad", ["", "/euca-guests", "../cpu", "a/../../b", "euca guests", "a/b/c/d/e", "x" * 64])
def test_a_group_outside_the_hierarchy_or_oddly_named_is_refused(bad):
    with pytest.raises(InvalidInput, match="relative cgroup path"):
        cpu_group.path(bad)
