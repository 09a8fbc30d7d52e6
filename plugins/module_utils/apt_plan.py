# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""The collection's one apt pattern, as a pure decision over ``apt-cache policy`` output.

Every role installs packages the same way (roles/dgx_spark/tasks/apt.yml):

* everything wanted is installed: no apt call at all, no refresh (an air-gapped node converges);
* something is missing and every missing package has an install candidate in the current lists:
  install without refreshing;
* a missing package has no candidate (unknown to the lists, empty lists, or a pinned version the
  lists do not carry): refresh the lists, then install.

The last rule is what ``cache_valid_time`` gets wrong: a freshly built image or a cleaned cache has
empty lists with a recent modification time, which ``cache_valid_time`` trusts.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional

_HEADER = re.compile(r"^(\S+?):$")
_FIELD = re.compile(r"^\s+(Installed|Candidate):\s*(\S+)\s*$")
# Version table rows: "  *** 26.1.5+dfsg1-9 500" or "     26.1.5+dfsg1-9 500".
_VERSION_ROW = re.compile(r"^\s+(?:\*\*\*\s+)?(\S+)\s+-?\d+\s*$")
_NONE = "(none)"


class AptPlanError(ValueError):
    """A wanted package name that apt cannot take."""


def split_pin(spec: str) -> tuple:
    """``docker-ce=5:28.5.1-1`` -> ``("docker-ce", "5:28.5.1-1")``; no pin -> ``(name, None)``."""
    if not isinstance(spec, str) or not spec.strip():
        raise AptPlanError(f"not a package name: {spec!r}")
    name, sep, version = spec.strip().partition("=")
    if not re.match(r"^[a-z0-9][a-z0-9+.\-]*(:[a-z0-9]+)?$", name) or (sep and not version):
        raise AptPlanError(f"not an apt package name (optionally name=version): {spec!r}")
    return name, (version if sep else None)


def parse_policy(text: str) -> Dict[str, Dict[str, object]]:
    """Parse ``LC_ALL=C apt-cache policy PKG...`` into {name: {installed, candidate, versions}}.

    Packages apt does not know at all are absent from the output (apt prints a notice on stderr).
    ``installed``/``candidate`` are None for ``(none)``.
    """
    packages: Dict[str, Dict[str, object]] = {}
    current: Optional[Dict[str, object]] = None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            current = {"installed": None, "candidate": None, "versions": []}
            packages[header.group(1)] = current
            continue
        if current is None:
            continue
        field = _FIELD.match(line)
        if field:
            value = None if field.group(2) == _NONE else field.group(2)
            current[field.group(1).lower()] = value
            continue
        row = _VERSION_ROW.match(line)
        if row:
            versions = current["versions"]
            if isinstance(versions, list):
                versions.append(row.group(1))
    return packages


def plan(wanted: List[str], policy_text: str) -> Dict[str, object]:
    """Decide what to install and whether the lists need a refresh first.

    Returns ``{"install": [...], "refresh": bool, "no_candidate": [...], "present": [...]}``, where
    ``install`` keeps the caller's spelling (with pins) of every wanted package not yet installed.
    """
    known = parse_policy(policy_text)
    install: List[str] = []
    present: List[str] = []
    no_candidate: List[str] = []
    for spec in wanted:
        name, pin = split_pin(spec)
        info = known.get(name)
        installed = info["installed"] if info else None
        if installed is not None and (pin is None or installed == pin):
            present.append(spec)
            continue
        install.append(spec)
        if info is None:
            no_candidate.append(spec)
        elif pin is None and info["candidate"] is None:
            no_candidate.append(spec)
        elif pin is not None and pin not in (info["versions"] or []):
            no_candidate.append(spec)
    return {
        "install": install,
        "present": present,
        "no_candidate": no_candidate,
        "refresh": bool(no_candidate),
    }


def package_names(wanted: List[str]) -> List[str]:
    """The names to ask ``apt-cache policy`` about (pins stripped, order kept, no duplicates)."""
    names: List[str] = []
    for spec in wanted:
        name = split_pin(spec)[0]
        if name not in names:
            names.append(name)
    return names


def plan_from_installed(wanted: List[str], installed: Dict[str, str]) -> Optional[Dict[str, object]]:
    """The plan when dpkg's view (``{name: version}`` of the installed packages) already holds every wanted
    package at its pinned version: nothing to install, no apt call. ``None`` when something is missing, so
    that ``apt-cache policy`` decides (candidates, refresh) as in :func:`plan`.
    """
    if not isinstance(installed, dict):
        raise AptPlanError(
            f"expected the installed packages as a mapping of name to version, got {type(installed).__name__}"
        )
    for spec in wanted:
        name, pin = split_pin(spec)
        version = installed.get(name)
        if version is None or (pin is not None and version != pin):
            return None
    return {"install": [], "present": list(wanted), "no_candidate": [], "refresh": False}
