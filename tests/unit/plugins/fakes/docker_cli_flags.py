"""The real docker CLI's flags, for the stand-in docker CLIs (one parser for all)."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Mapping

_HELP_FLAG = re.compile(r"^\s+(?:(-\w), )?(--[\w-]+)(?: (\w+))?(?:\s|$)")


def real_flags(command: str, documented: Mapping[str, dict]) -> dict:
    """Flags of ``docker <command>`` (flag -> takes a value) from its ``--help`` on this host, or
    ``documented[command]`` where the host cannot say (no docker, or no such command)."""
    docker = shutil.which("docker")
    if docker:
        proc = subprocess.run([docker, *command.split(), "--help"], capture_output=True, text=True, check=False)
        flags = {}
        for line in proc.stdout.splitlines():
            match = _HELP_FLAG.match(line)
            if match:
                takes_value = bool(match.group(3))
                flags[match.group(2)] = takes_value
                if match.group(1):
                    flags[match.group(1)] = takes_value
        # Without the buildx plugin, `docker buildx ... --help` prints docker's own usage (rc 0).
        usage = re.search(r"Usage:\s+docker " + re.escape(command) + r"\b", proc.stdout)
        if proc.returncode == 0 and usage and flags:
            return flags
    return documented[command]
