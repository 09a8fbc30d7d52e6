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
    with pytest.raises(AnsibleFilterError, match="ci_pods_running"):
        filters["ci_pods_running"]("pods", CI)
    assert "rollout_lines" not in filters
    with pytest.raises(AnsibleFilterError, match="rollout_summary: unknown status"):
        filters["rollout_summary"](["n"], {"n": {"node": "n", "status": "odd"}})


def test_rollout_summary_is_registered_and_wraps_errors():
    summary = FilterModule().filters()["rollout_summary"]
    result = summary(["n", "m"], {"n": {"node": "n", "status": "skipped", "reason": "x"}})
    assert (result["complete"], result["skipped"], result["not_reached"]) == (False, ["n"], ["m"])
    assert result["lines"] == [
        "Rollout stopped: 0 updated, 1 skipped, 0 failed, 1 not reached.",
        "n: skipped: x",
        "m: not reached",
    ]
    with pytest.raises(AnsibleFilterError, match="rollout_summary: expected the run's hosts as a list"):
        summary("n", {})
    with pytest.raises(AnsibleFilterError, match="rollout_summary: unknown status 'done' in the record of n"):
        summary(["n"], {"n": {"node": "n", "status": "done"}})
