# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""Filters behind playbooks/rollout.yml (roles/rollout)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.raibid.dgx_spark.plugins.module_utils.rollout import (
    RolloutError,
)
from ansible_collections.raibid.dgx_spark.plugins.module_utils.rollout import (
    ci_pods_running as _ci_pods_running,
)
from ansible_collections.raibid.dgx_spark.plugins.module_utils.rollout import (
    rollout_summary as _rollout_summary,
)


def ci_pods_running(pods, labels):
    """namespace/name of the CI pods in ``pods`` that still run."""
    try:
        return _ci_pods_running(pods, labels)
    except RolloutError as exc:
        raise AnsibleFilterError(f"ci_pods_running: {exc}") from exc


def rollout_summary(hosts, records):
    """The rollout's summary over the hosts of the run, from the nodes' rollout records."""
    try:
        return _rollout_summary(hosts, records)
    except RolloutError as exc:
        raise AnsibleFilterError(f"rollout_summary: {exc}") from exc


class FilterModule:
    """The rollout filters."""

    def filters(self):
        return {
            "ci_pods_running": ci_pods_running,
            "rollout_summary": rollout_summary,
        }
