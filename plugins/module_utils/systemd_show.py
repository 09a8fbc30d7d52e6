# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""``systemctl show`` output, read: one probe tells which of several units a run still has to start or enable.

``systemctl show --property=Id,ActiveState,UnitFileState UNIT...`` prints one block of ``Key=value`` lines
per unit, blocks separated by an empty line, properties in systemd's own order (not the order asked for).
A unit systemd does not know still gets a block (``ActiveState=inactive``, ``UnitFileState=`` empty).
"""

from __future__ import annotations

from typing import Dict


class SystemdShowError(ValueError):
    """Output that is not what ``systemctl show`` prints."""


def parse_show(text: str) -> Dict[str, Dict[str, str]]:
    """``{Id: {property: value}}`` for each block of ``systemctl show`` output; every block must name its ``Id``."""
    if not isinstance(text, str):
        raise SystemdShowError(f"expected systemctl show output as text, got {type(text).__name__}")
    units: Dict[str, Dict[str, str]] = {}
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = [line for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        properties: Dict[str, str] = {}
        for line in lines:
            key, sep, value = line.partition("=")
            if not sep or not key:
                raise SystemdShowError(f"expected Key=value lines, got {line!r}")
            properties[key] = value
        if "Id" not in properties:
            raise SystemdShowError(f"a block without Id= (ask for --property=Id): {lines[0]!r}")
        units[properties["Id"]] = properties
    return units
