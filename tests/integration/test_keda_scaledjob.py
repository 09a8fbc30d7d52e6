"""The KEDA emulation of keda_scaledjob.py against KEDA v2.20.2's own expectations (the cases of
pkg/scaling/executor/scale_jobs_test.go) and the shape of the Job it creates."""

from __future__ import annotations

import pytest
from keda_scaledjob import KEDA_VERSION, effective_max_scale, generate_job


@pytest.mark.parametrize(
    ("strategy", "args", "expected_max"),
    [
        # TestDefaultScalingStrategy
        ("default", (3, 2, 0, 5), 1),
        ("default", (2, 0, 0, 5), 2),
        # TestAccurateScalingStrategy
        ("accurate", (3, 2, 0, 5), 3),
        ("accurate", (5, 2, 0, 5), 3),
        ("accurate", (3, 4, 2, 10), 1),
        ("accurate", (5, 4, 2, 5), 1),
        ("accurate", (3, 3, 3, 5), 0),
        ("accurate", (15, 15, 15, 20), 0),
        ("accurate", (10, 10, 10, 15), 0),
        ("accurate", (20, 15, 10, 20), 5),
        # TestEagerScalingStrategy
        ("eager", (4, 3, 0, 10), 4),
        ("eager", (4, 0, 3, 10), 4),
        ("eager", (4, 7, 0, 10), 3),
        ("eager", (4, 1, 6, 10), 3),
    ],
)
def test_strategies_match_keda(strategy, args, expected_max):
    max_scale, scale_to = effective_max_scale(strategy, *args, scale_to=1)
    assert max_scale == expected_max
    assert scale_to == (args[3] if strategy == "eager" else 1)


def test_custom_strategy_is_refused():
    with pytest.raises(ValueError, match="custom"):
        effective_max_scale("custom", 1, 0, 0, 1, scale_to=1)


def scaled_job(**meta) -> dict:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledJob",
        "metadata": {"name": "agent", "namespace": "ci", "uid": "u-1", "generation": 3, **meta},
        "spec": {
            "jobTargetRef": {
                "backoffLimit": 0,
                "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c"}]}},
            }
        },
    }


def test_generated_job_follows_generate_jobs():
    sj = scaled_job(
        labels={"team": "x", "drop-me": "y", "app.kubernetes.io/name": "mine"},
        annotations={"scaledjob.keda.sh/job-excluded-labels": "drop-me", "note": "n"},
    )
    job = generate_job(sj)
    meta = job["metadata"]
    assert meta["generateName"] == "agent-"
    assert meta["namespace"] == "ci"
    # KEDA's labels first, the ScaledJob's own override them, excluded ones dropped.
    assert meta["labels"] == {
        "app.kubernetes.io/name": "mine",
        "app.kubernetes.io/version": KEDA_VERSION,
        "app.kubernetes.io/part-of": "agent",
        "app.kubernetes.io/managed-by": "keda-operator",
        "scaledjob.keda.sh/name": "agent",
        "team": "x",
    }
    assert meta["annotations"]["scaledjob.keda.sh/generation"] == "3"
    assert meta["annotations"]["note"] == "n"
    (owner,) = meta["ownerReferences"]
    assert owner == {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledJob",
        "name": "agent",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    template = job["spec"]["template"]
    assert template["metadata"]["labels"] == {"app": "a", "scaledjob.keda.sh/name": "agent"}
    # restartPolicy unset -> OnFailure (a Job rejects the client default Always).
    assert template["spec"]["restartPolicy"] == "OnFailure"
    assert job["spec"]["backoffLimit"] == 0
    # The stored ScaledJob is not modified.
    assert "restartPolicy" not in sj["spec"]["jobTargetRef"]["template"]["spec"]


def test_restart_policy_never_is_kept():
    sj = scaled_job()
    sj["spec"]["jobTargetRef"]["template"]["spec"]["restartPolicy"] = "Never"
    assert generate_job(sj)["spec"]["template"]["spec"]["restartPolicy"] == "Never"
