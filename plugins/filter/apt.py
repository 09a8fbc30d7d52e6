# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""Filters behind the collection's one apt pattern (roles/dgx_spark/tasks/apt.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.raibid.dgx_spark.plugins.module_utils.apt_plan import (
    AptPlanError,
    package_names,
    plan,
    plan_from_installed,
)


def apt_plan(policy_text, wanted):
    """What to install from ``apt-cache policy`` output and whether to refresh the lists first."""
    try:
        return plan(list(wanted), str(policy_text))
    except AptPlanError as exc:
        raise AnsibleFilterError(f"apt_plan: {exc}") from exc


def apt_plan_installed(installed, wanted):
    """The plan when every wanted package is installed already (dpkg's view), else None."""
    try:
        return plan_from_installed(list(wanted), installed)
    except AptPlanError as exc:
        raise AnsibleFilterError(f"apt_plan_installed: {exc}") from exc


def apt_package_names(wanted):
    """Package names without version pins, for ``apt-cache policy``."""
    try:
        return package_names(list(wanted))
    except AptPlanError as exc:
        raise AnsibleFilterError(f"apt_package_names: {exc}") from exc


class FilterModule:
    """The apt plan filters."""

    def filters(self):
        return {"apt_plan": apt_plan, "apt_plan_installed": apt_plan_installed, "apt_package_names": apt_package_names}
