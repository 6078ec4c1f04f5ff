"""Offline stand-in for ansible-test's get-pip bootstrap script.

ansible-test (sanity, --venv) creates empty virtual environments and bootstraps pip into
them by downloading https://ci-files.testing.ansible.com/ansible-test/get-pip-<ver>.py,
unless a copy sits at ~/.ansible/test/cache/get_pip_<ver>.py. That host cannot be reached
from our build machines, so scripts/ansible-test-prepare puts this file at that path.

It does what get-pip does with the arguments ansible-test passes (e.g.
``--disable-pip-version-check pip==24.2 --no-setuptools --no-wheel``): seed pip from the
interpreter's own ensurepip (Debian: python3-venv), then ``pip install`` the requested
packages from the package index, so the pinned pip version still comes from PyPI.
"""

import subprocess
import sys


def main():
    args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"],
                          stdout=subprocess.DEVNULL)
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet",
                           "--upgrade", "--force-reinstall"] + args)
    # ensurepip also seeds setuptools on Python < 3.12; get-pip --no-setuptools would not
    if "--no-setuptools" in sys.argv[1:]:
        subprocess.call([sys.executable, "-m", "pip", "uninstall", "--quiet", "--yes",
                         "setuptools"], stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
