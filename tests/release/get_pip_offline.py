"""Offline stand-in for the get-pip script that ansible-test downloads into fresh virtual environments.

ansible-test bootstraps pip in each sanity/units virtual environment by downloading a get-pip script
from its own CI file host, which the build machines cannot reach ("Download failed"). It looks for a
cached copy first (~/.ansible/test/cache/get_pip_<version>.py); tests/release/ansible_test.sh puts
this file there. Like get-pip, it installs the requested packages (``pip==<version>``) with any pip
options passed on the command line, but it starts from Python's bundled pip (ensurepip) and takes
the requested versions from the package index that pip is configured for.
"""

from __future__ import annotations

import subprocess
import sys


def main(argv: list[str]) -> int:
    no_setuptools = "--no-setuptools" in argv
    args = [a for a in argv if a not in ("--no-setuptools", "--no-wheel")]
    # In a child process: ensurepip.bootstrap() empties PIP_* and points PIP_CONFIG_FILE at /dev/null
    # in its own process, which would drop the index and CA settings the install below needs.
    rc = subprocess.call([sys.executable, "-m", "ensurepip"])
    if rc == 0:
        rc = subprocess.call([sys.executable, "-m", "pip", "install", *args])
    if rc == 0 and no_setuptools:
        # ensurepip on Python < 3.12 also installs setuptools, which get-pip --no-setuptools would not.
        rc = subprocess.call([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "setuptools"])
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
