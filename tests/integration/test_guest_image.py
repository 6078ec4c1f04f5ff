"""roles/test_image: the guest image is built from Debian packages, cached, and boots for real.

The boot test runs QEMU directly (TCG) with user-mode networking: the guest's HTTP port is
forwarded to a loopback port, so no namespace is needed and no traffic leaves loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from harness import guest_image as guest_image_lib

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def mtimes(directory: Path) -> dict:
    return dict((p.name, p.stat().st_mtime_ns) for p in directory.iterdir())


def recap(run) -> tuple:
    assert run.rc == 0, run.stdout[-3000:]
    return run.stats["changed"].get("localhost", 0), run.stats


def test_cached_build_is_reused_and_an_input_change_rebuilds(guest_image, tmp_path):
    cached = Path(guest_image["dir"])
    before = mtimes(cached)
    changed, _ = recap(guest_image_lib.build_guest_image())
    assert changed == 0 and mtimes(cached) == before, "a build with the same inputs touched the image"

    # A copy of the image with another root size asked for: rebuilt, then cached again.
    copy = tmp_path / "image"
    shutil.copytree(cached, copy)
    changed, _ = recap(guest_image_lib.build_guest_image(copy, {"test_image_root_size_mb": 32}))
    assert changed >= 1 and (copy / "root.img").stat().st_size == 32 << 20
    rebuilt = mtimes(copy)
    changed, _ = recap(guest_image_lib.build_guest_image(copy, {"test_image_root_size_mb": 32}))
    assert changed == 0 and mtimes(copy) == rebuilt

    # A damaged image (a file missing) is rebuilt even though the manifest matches.
    (copy / "initramfs.img").unlink()
    changed, _ = recap(guest_image_lib.build_guest_image(copy, {"test_image_root_size_mb": 32}))
    assert changed >= 1 and (copy / "initramfs.img").stat().st_size > 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(port: int, path: str) -> str:
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as response:
        return response.read().decode()


def test_guest_boots_reads_its_seed_and_serves_its_instance_id(guest_image, tmp_path):
    (tmp_path / "meta-data").write_text("instance-id: i-0c0ffee0\nlocal-hostname: web-7\n")
    (tmp_path / "user-data").write_text("#!/bin/sh\necho user-data-ran-$(hostname)\n")
    seed = tmp_path / "seed.iso"
    subprocess.run(["genisoimage", "-quiet", "-output", str(seed), "-volid", "cidata", "-joliet", "-rock",
                    str(tmp_path / "meta-data"), str(tmp_path / "user-data")], check=True)
    port = free_port()
    console = tmp_path / "console.log"
    qemu = subprocess.Popen([
        "qemu-system-x86_64", "-accel", "tcg", "-m", "128", "-nodefaults", "-display", "none",
        "-kernel", guest_image["kernel"]["path"], "-initrd", guest_image["ramdisk"]["path"],
        "-append", "console=ttyS0 quiet panic=-1 no_timer_check",
        "-drive", "file=%s,if=virtio,format=raw,readonly=on" % guest_image["root"]["path"],
        "-drive", "file=%s,if=virtio,format=raw,readonly=on" % seed,
        "-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:%d-:80" % port, "-device", "virtio-net-pci,netdev=n0",
        "-serial", "file:%s" % console,
    ], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while "EUCA-READY" not in (console.read_text(errors="replace") if console.exists() else ""):
            assert qemu.poll() is None, qemu.stderr.read().decode()
            assert time.monotonic() < deadline, console.read_text(errors="replace")[-3000:]
            time.sleep(0.2)
        log = console.read_text(errors="replace")
        assert "EUCA-READY instance-id=i-0c0ffee0" in log
        assert "EUCA-LEASE 10.0.2.15" in log  # QEMU's user-mode DHCP server answered udhcpc
        assert "EUCA-USERDATA user-data-ran-web-7" in log or _wait_for(console, "EUCA-USERDATA user-data-ran-web-7")
        assert http(port, "/") == "i-0c0ffee0\n"
        info = http(port, "/cgi-bin/info")
        assert "hostname: web-7" in info and "ip: 10.0.2.15" in info
        devices = dict((line.split()[0], line.split()[1:]) for line in http(port, "/cgi-bin/blockdevs").splitlines())
        assert devices["vda"] == [str(guest_image["root"]["size_bytes"]), "-"] and "vdb" in devices
    finally:
        qemu.send_signal(signal.SIGTERM)
        try:
            qemu.wait(10)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait()


def _wait_for(path: Path, text: str, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return True
        time.sleep(0.2)
    return False
