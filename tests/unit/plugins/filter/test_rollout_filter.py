"""Unit tests for plugins/filter/rollout.py (thin wrappers over module_utils/rollout.py)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.raibid.dgx_spark.plugins.filter.rollout import FilterModule

CI = {"app.kubernetes.io/part-of": "raibid-ci"}


def pod(name, labels):
    return {"metadata": {"name": name, "namespace": "raibid-ci", "labels": labels}, "status": {"phase": "Running"}}


def test_filters_are_registered_and_wrap_errors():
    filters = FilterModule().filters()
    assert filters["ci_pods_running"]([pod("a", labels=CI)], CI) == ["raibid-ci/a"]
    records = {"n": {"node": "n", "status": "skipped", "reason": "x"}}
    assert filters["rollout_lines"](["n", "m"], records) == ["n: skipped: x", "m: not reached"]
    with pytest.raises(AnsibleFilterError, match="ci_pods_running"):
        filters["ci_pods_running"]("pods", CI)
    with pytest.raises(AnsibleFilterError, match="rollout_lines"):
        filters["rollout_lines"](["n"], {"n": {}})
    with pytest.raises(AnsibleFilterError, match="rollout_lines: expected the run's hosts as a list"):
        filters["rollout_lines"]("n", {})
