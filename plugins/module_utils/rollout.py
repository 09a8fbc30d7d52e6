# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""Decisions of playbooks/rollout.yml, as pure functions over what the cluster and the records say.

* Which pods on a cordoned node are CI jobs still running: the rollout waits for them and never
  evicts one (an eviction kills the job's build). A CI pod carries every label of the rollout's
  selector (the agent_jobs role's Jobs do) or is owned by a Job; it is running while its phase is
  Pending, Running or Unknown and it is not being deleted.
* One summary line per node of the run, in inventory order, from the nodes' records.
* The rollout's summary: which nodes of the run were updated, skipped, failed or not reached, whether the
  rollout is complete (every node of the run updated or skipped), and the lines it prints.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

# Phases in which a pod's containers may still run (Unknown: its node stopped reporting).
RUNNING_PHASES = frozenset({"Pending", "Running", "Unknown"})


class RolloutError(ValueError):
    """Input that is not what the rollout reads."""


def is_ci_pod(pod: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """True for a pod with every one of ``labels`` or owned by a Job."""
    metadata = pod.get("metadata") or {}
    have = metadata.get("labels") or {}
    if labels and all(have.get(key) == str(value) for key, value in labels.items()):
        return True
    return any((ref or {}).get("kind") == "Job" for ref in metadata.get("ownerReferences") or [])


def is_running(pod: Mapping[str, Any]) -> bool:
    """True while the pod's containers may still run."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return (pod.get("status") or {}).get("phase", "Pending") in RUNNING_PHASES


def ci_pods_running(pods: Any, labels: Any) -> List[str]:
    """``namespace/name`` of every CI pod in ``pods`` (Kubernetes Pod objects) still running, sorted."""
    if not isinstance(pods, list):
        raise RolloutError(f"expected a list of Pod objects, got {type(pods).__name__}")
    if not isinstance(labels, Mapping):
        raise RolloutError(f"expected the CI pod labels as a mapping, got {type(labels).__name__}")
    names = []
    for pod in pods:
        if not isinstance(pod, Mapping):
            raise RolloutError(f"expected a Pod object, got {type(pod).__name__}")
        if is_ci_pod(pod, labels) and is_running(pod):
            metadata = pod.get("metadata") or {}
            names.append(f"{metadata.get('namespace', 'default')}/{metadata.get('name', '?')}")
    return sorted(names)


def rollout_line(record: Mapping[str, Any]) -> str:
    """One line for a node's record (tasks/record.yml): what happened to it and how long it took."""
    if not isinstance(record, Mapping) or "node" not in record or "status" not in record:
        raise RolloutError("expected a node record with node and status")
    status = record["status"]
    seconds = record.get("seconds")
    took = f"{float(seconds):.0f} s" if seconds not in (None, "") else "?"
    line: Dict[str, str] = {
        "updated": f"{record['node']}: updated in {took} (at {record.get('finished_at', '?')})",
        "skipped": f"{record['node']}: skipped: {record.get('reason', '')}",
        "failed": f"{record['node']}: FAILED after {took}: {record.get('reason', '')}",
    }
    if status not in line:
        raise RolloutError(f"unknown status {status!r} in the record of {record['node']}")
    failing = record.get("failing_checks") or []
    return line[status] + (f" [failing checks: {', '.join(failing)}]" if failing and status != "updated" else "")


def rollout_lines(hosts: Any, records: Any) -> List[str]:
    """One line per host of the run, in the given order: its record's line, or ``not reached``."""
    if not isinstance(hosts, Sequence) or isinstance(hosts, str):
        raise RolloutError(f"expected the run's hosts as a list, got {type(hosts).__name__}")
    if not isinstance(records, Mapping):
        raise RolloutError(f"expected the records by node as a mapping, got {type(records).__name__}")
    return [rollout_line(records[host]) if host in records else f"{host}: not reached" for host in hosts]


def rollout_summary(hosts: Any, records: Any) -> Dict[str, Any]:
    """The summary of a run over ``hosts`` (in order) from the records by node (tasks/record.yml).

    ``updated``, ``skipped``, ``failed`` and ``not_reached`` name the hosts of the run, in order; a record of a
    node outside the run (another ``--limit``) counts in none of them but stays in ``nodes``. The rollout is
    ``complete`` when no host of the run failed and every one was reached. ``lines`` is what the summary
    prints: a headline with the counts, then one line per host (:func:`rollout_lines`).
    """
    # First: it checks the input and the status of every record of the run, which the counting below indexes by.
    lines = rollout_lines(hosts, records)
    by_status: Dict[str, List[str]] = {"updated": [], "skipped": [], "failed": []}
    not_reached: List[str] = []
    for host in hosts:
        if host in records:
            by_status[records[host]["status"]].append(host)
        else:
            not_reached.append(host)
    complete = not by_status["failed"] and not not_reached
    headline = (
        f"Rollout {'complete' if complete else 'stopped'}: {len(by_status['updated'])} updated,"
        f" {len(by_status['skipped'])} skipped, {len(by_status['failed'])} failed, {len(not_reached)} not reached."
    )
    return {
        "complete": complete,
        **by_status,
        "not_reached": not_reached,
        "hosts": list(hosts),
        "nodes": dict(records),
        "lines": [headline, *lines],
    }
