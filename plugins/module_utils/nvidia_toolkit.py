# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""NVIDIA Container Toolkit: pure functions deciding what ``nvidia-ctk`` must change.

Reads the runtime's mode from ``/etc/nvidia-container-runtime/config.toml`` text and the ``nvidia``
runtime entry from daemon.json data; builds the ``nvidia-ctk`` command lines. Nothing here runs
anything.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional

MODES = ("auto", "legacy", "cdi", "csv")
# The toolkit's built-in default when config.toml does not set the mode.
DEFAULT_MODE = "auto"
RUNTIME_NAME = "nvidia"

_SECTION = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*(?:#.*)?$")
_MODE = re.compile(r"""^\s*mode\s*=\s*(?:"([^"]*)"|'([^']*)')\s*(?:#.*)?$""")


def parse_runtime_mode(toml_text: Optional[str]) -> Optional[str]:
    """The ``mode`` of the ``[nvidia-container-runtime]`` table, or None when it is not set.

    Only that table's own ``mode`` counts (``[nvidia-container-runtime.modes.cdi]`` and other
    tables have unrelated keys); commented-out lines are ignored.
    """
    if not toml_text:
        return None
    section = None
    found = None
    for line in toml_text.splitlines():
        header = _SECTION.match(line)
        if header:
            section = header.group(1).strip().strip('"')
            continue
        if section == "nvidia-container-runtime":
            match = _MODE.match(line)
            if match:
                found = match.group(1) if match.group(1) is not None else match.group(2)
    return found


def effective_mode(toml_text: Optional[str]) -> str:
    return parse_runtime_mode(toml_text) or DEFAULT_MODE


def runtime_configured(daemon: Dict[str, Any]) -> bool:
    """deepops' probe: daemon.json has ``runtimes.nvidia`` with a ``path``."""
    runtimes = daemon.get("runtimes")
    if not isinstance(runtimes, dict):
        return False
    entry = runtimes.get(RUNTIME_NAME)
    return isinstance(entry, dict) and bool(entry.get("path"))


def runtime_needs_configure(daemon: Dict[str, Any], set_as_default: bool) -> List[str]:
    """Reasons ``nvidia-ctk runtime configure`` must run (empty: nothing to do).

    ``set_as_default`` false never asks to remove an existing ``default-runtime: nvidia``: DGX OS
    ships it that way and it is not ours to undo.
    """
    reasons = []
    if not runtime_configured(daemon):
        reasons.append("daemon.json has no runtimes.nvidia.path")
    if set_as_default and daemon.get("default-runtime") != RUNTIME_NAME:
        reasons.append(f"default-runtime is {daemon.get('default-runtime', 'unset')!r}, not 'nvidia'")
    return reasons


def configure_runtime_argv(nvidia_ctk: str, daemon_json: str, set_as_default: bool) -> List[str]:
    argv = [nvidia_ctk, "runtime", "configure", "--runtime=docker", f"--config={daemon_json}"]
    if set_as_default:
        argv.append("--set-as-default")
    return argv


def set_mode_argv(nvidia_ctk: str, config_toml: str, mode: str) -> List[str]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    return [
        nvidia_ctk,
        "config",
        "--in-place",
        f"--config-file={config_toml}",
        "--set",
        f"nvidia-container-runtime.mode={mode}",
    ]
