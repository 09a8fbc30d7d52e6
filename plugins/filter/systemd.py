# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""Filters over systemd's own output (module_utils/systemd_show.py)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.raibid.dgx_spark.plugins.module_utils.systemd_show import SystemdShowError, parse_show


def systemctl_show(text):
    """``{Id: {property: value}}`` from ``systemctl show --property=Id,...`` output."""
    try:
        return parse_show(text)
    except SystemdShowError as exc:
        raise AnsibleFilterError(f"systemctl_show: {exc}") from exc


class FilterModule:
    """The systemd filters."""

    def filters(self):
        return {"systemctl_show": systemctl_show}
