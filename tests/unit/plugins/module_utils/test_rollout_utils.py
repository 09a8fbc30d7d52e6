"""Unit tests for plugins/module_utils/rollout.py: which pods on a cordoned node the rollout waits for, and
the summary lines (its filters: tests/unit/plugins/filter/test_rollout_filter.py)."""

from __future__ import annotations

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils import rollout as r

CI = {"app.kubernetes.io/part-of": "raibid-ci"}


def pod(name, phase="Running", labels=None, owner=None, *, deleting=False, namespace="raibid-ci"):
    metadata = {"name": name, "namespace": namespace, "labels": labels or {}}
    if owner:
        metadata["ownerReferences"] = [{"kind": owner, "name": "x", "controller": True}]
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-03T10:00:00Z"
    return {"metadata": metadata, "status": {"phase": phase}}


@pytest.mark.parametrize(
    "p, waited_for",
    [
        (pod("job", labels=CI), True),  # the agent_jobs role's labels
        (pod("job", labels={**CI, "extra": "1"}), True),
        (pod("other-job", owner="Job"), True),  # any Job's pod is a running job too
        (pod("pending", phase="Pending", labels=CI), True),  # about to start on this node
        (pod("lost", phase="Unknown", labels=CI), True),  # its node stopped reporting: may still run
        (pod("done", phase="Succeeded", labels=CI), False),
        (pod("failed", phase="Failed", owner="Job"), False),
        (pod("leaving", labels=CI, deleting=True), False),  # already terminating
        (pod("web", labels={"app.kubernetes.io/part-of": "web"}, owner="ReplicaSet"), False),
        (pod("daemon", owner="DaemonSet"), False),
        (pod("bare"), False),
    ],
)
def test_which_pods_are_running_ci_jobs(p, waited_for):
    assert (r.ci_pods_running([p], CI) == [f"raibid-ci/{p['metadata']['name']}"]) is waited_for


def test_every_label_must_match_and_values_compare_as_strings():
    labels = {"app.kubernetes.io/part-of": "raibid-ci", "tier": 1}
    assert r.ci_pods_running([pod("a", labels={"app.kubernetes.io/part-of": "raibid-ci"})], labels) == []
    assert r.ci_pods_running([pod("a", labels={"app.kubernetes.io/part-of": "raibid-ci", "tier": "1"})], labels) == [
        "raibid-ci/a"
    ]
    # No labels given: only Job ownership makes a CI pod (never "every pod").
    assert r.ci_pods_running([pod("a", labels=CI), pod("b", owner="Job")], {}) == ["raibid-ci/b"]


def test_sorted_with_namespaces_and_a_pod_without_status_is_pending():
    pods = [pod("b", labels=CI), pod("a", labels=CI, namespace="other"), {"metadata": {"name": "c", "labels": CI}}]
    assert r.ci_pods_running(pods, CI) == ["default/c", "other/a", "raibid-ci/b"]


@pytest.mark.parametrize("pods, labels", [({"items": []}, CI), ([pod("a")], ["x"]), (["a"], CI)])
def test_bad_input_is_named(pods, labels):
    with pytest.raises(r.RolloutError, match="expected"):
        r.ci_pods_running(pods, labels)


def test_summary_lines():
    updated = {"node": "n1", "status": "updated", "seconds": 41.6, "finished_at": "2026-12-03T10:00:00Z"}
    assert r.rollout_line(updated) == "n1: updated in 42 s (at 2026-12-03T10:00:00Z)"
    failed = {
        "node": "n2",
        "status": "failed",
        "seconds": "12.0",
        "reason": "Stop the rollout at a node that is unhealthy after its update: ...",
        "failing_checks": ["engine", "registry:local"],
    }
    assert r.rollout_line(failed) == (
        "n2: FAILED after 12 s: Stop the rollout at a node that is unhealthy after its update: ..."
        " [failing checks: engine, registry:local]"
    )
    skipped = {"node": "n3", "status": "skipped", "reason": "unhealthy before the update: engine", "seconds": 3}
    assert r.rollout_line(skipped) == "n3: skipped: unhealthy before the update: engine"
    with pytest.raises(r.RolloutError, match="unknown status 'done' in the record of n4"):
        r.rollout_line({"node": "n4", "status": "done"})
    with pytest.raises(r.RolloutError, match="node record"):
        r.rollout_line({"status": "updated"})
