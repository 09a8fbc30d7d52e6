"""Unit tests for plugins/module_utils/rollout.py: which pods on a cordoned node the rollout waits for, and
the summary and its lines (its filters: tests/unit/plugins/filter/test_rollout_filter.py)."""

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


def record(node, status, **extra):
    return {"node": node, "status": status, **extra}


def test_summary_of_a_complete_run_names_each_node_once_in_run_order():
    hosts = ["n3", "n1", "n2"]
    records = {
        "n1": record("n1", "updated", seconds=10, finished_at="t1"),
        "n2": record("n2", "skipped", reason="unhealthy before the update: engine"),
        "n3": record("n3", "updated", seconds=20, finished_at="t3"),
    }
    summary = r.rollout_summary(hosts, records)
    assert summary == {
        "complete": True,
        "updated": ["n3", "n1"],
        "skipped": ["n2"],
        "failed": [],
        "not_reached": [],
        "hosts": hosts,
        "nodes": records,
        "lines": [
            "Rollout complete: 2 updated, 1 skipped, 0 failed, 0 not reached.",
            "n3: updated in 20 s (at t3)",
            "n1: updated in 10 s (at t1)",
            "n2: skipped: unhealthy before the update: engine",
        ],
    }


@pytest.mark.parametrize(
    "records, failed, not_reached",
    [
        ({"n1": record("n1", "updated", seconds=1), "n2": record("n2", "failed", reason="gate")}, ["n2"], []),
        ({"n1": record("n1", "updated", seconds=1)}, [], ["n2"]),  # stopped before n2
        ({}, [], ["n1", "n2"]),  # no record yet
    ],
)
def test_a_failed_or_unreached_node_stops_the_rollout(records, failed, not_reached):
    summary = r.rollout_summary(["n1", "n2"], records)
    assert summary["complete"] is False
    assert (summary["failed"], summary["not_reached"]) == (failed, not_reached)
    assert summary["lines"][0].startswith("Rollout stopped: ")
    assert summary["lines"][0].endswith(f"{len(failed)} failed, {len(not_reached)} not reached.")
    assert len(summary["lines"]) == 3


def test_records_of_nodes_outside_the_run_are_kept_but_not_counted():
    # A run with --limit n1 after one that failed on n2: n2's record does not stop this run.
    records = {"n1": record("n1", "updated", seconds=5, finished_at="t"), "n2": record("n2", "failed", reason="x")}
    summary = r.rollout_summary(["n1"], records)
    assert summary["complete"] is True
    assert (summary["updated"], summary["failed"], summary["not_reached"]) == (["n1"], [], [])
    assert summary["nodes"] == records
    assert summary["lines"] == [
        "Rollout complete: 1 updated, 0 skipped, 0 failed, 0 not reached.",
        "n1: updated in 5 s (at t)",
    ]


def test_an_empty_run_is_complete():
    assert r.rollout_summary([], {})["lines"] == ["Rollout complete: 0 updated, 0 skipped, 0 failed, 0 not reached."]


@pytest.mark.parametrize(
    "hosts, records, message",
    [
        ("n1", {}, "expected the run's hosts as a list"),
        (["n1"], [], "expected the records by node as a mapping"),
        (["n1"], {"n1": record("n1", "done")}, "unknown status 'done' in the record of n1"),
        (["n1"], {"n1": {"status": "updated"}}, "node record"),
    ],
)
def test_summary_of_bad_input_is_named(hosts, records, message):
    with pytest.raises(r.RolloutError, match=message):
        r.rollout_summary(hosts, records)
