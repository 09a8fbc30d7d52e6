"""One polling cycle of KEDA's ScaledJob executor, for a test bed where the KEDA operator cannot run.

The Jobs are created from the stored ScaledJob exactly as KEDA v2.20.2 creates them; the code
follows these files of kedacore/keda at tag v2.20.2 (read, not copied):

- pkg/scalers/redis_streams_scaler.go: lag mode (``lagCount`` set): Redis >= 7 required; no stream
  -> 0; the group's ``lag`` from XINFO GROUPS; no group yet -> XLEN. Active when the value exceeds
  ``activationLagCount``; the target average value is ``lagCount``.
- pkg/scaling/scaledjob/metrics.go: CalculateQueueLengthAndMaxValue and IsScaledJobActive
  (one trigger: queueLength = value, maxValue = min(value / target, maxReplicaCount), both ceiled).
- pkg/scaling/executor/scale_jobs.go: RequestJobScale -> getScalingDecision (minReplicaCount, the
  default/accurate/eager strategies), getRunningJobCount / getPendingJobCount (Jobs labelled
  ``scaledjob.keda.sh/name``, unfinished; pending = no Pod Running or Succeeded), createJobs and
  generateJobs (generateName ``<scaledjob>-``, KEDA's labels over the ScaledJob's, the generation
  annotation, the template label, restartPolicy OnFailure when unset, the ScaledJob as controller
  owner).

Not emulated: the custom strategy, multiple triggers, pendingPodConditions, the history clean-up
(the Jobs' own ttlSecondsAfterFinished still applies) and the status conditions KEDA writes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import redis
from kubernetes import client as k8s_client

KEDA_VERSION = "2.20.2"


@dataclass
class PollResult:
    lag: int
    active: bool
    running: int
    pending: int
    created: list[str] = field(default_factory=list)


def redis_streams_lag(conn: redis.Redis, stream: str, group: str) -> int:
    """The redis-streams scaler's metric in lag mode."""
    major = int(str(conn.info("server")["redis_version"]).split(".")[0])
    if major < 7:
        raise RuntimeError("redis version 7+ required for lag")
    try:
        groups = conn.xinfo_groups(stream)
    except redis.ResponseError as exc:
        if "no such key" in str(exc).lower():
            return 0
        raise
    for entry in groups:
        name = entry["name"].decode() if isinstance(entry["name"], bytes) else entry["name"]
        if name == group:
            return int(entry["lag"] or 0)
    return int(conn.xlen(stream))


def _job_finished(job: k8s_client.V1Job) -> bool:
    return any(c.type in ("Complete", "Failed") and c.status == "True" for c in (job.status.conditions or []))


def _any_pod_running_or_completed(core: k8s_client.CoreV1Api, job: k8s_client.V1Job) -> bool:
    pods = core.list_namespaced_pod(job.metadata.namespace, label_selector=f"job-name={job.metadata.name}")
    return any(p.status.phase in ("Succeeded", "Running") for p in pods.items)


def generate_job(scaled_job: dict) -> dict:
    """The Job KEDA creates for one replica (generateJobs)."""
    meta = scaled_job["metadata"]
    name = meta["name"]
    spec = copy.deepcopy(scaled_job["spec"]["jobTargetRef"])
    template_meta = spec["template"].setdefault("metadata", {})
    template_meta["generateName"] = name + "-"
    template_meta.setdefault("labels", {})["scaledjob.keda.sh/name"] = name

    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/version": KEDA_VERSION,
        "app.kubernetes.io/part-of": name,
        "app.kubernetes.io/managed-by": "keda-operator",
        "scaledjob.keda.sh/name": name,
    }
    annotations_in = meta.get("annotations") or {}
    excluded = set(annotations_in.get("scaledjob.keda.sh/job-excluded-labels", "").split(","))
    labels.update({k: v for k, v in (meta.get("labels") or {}).items() if k not in excluded})
    annotations = {"scaledjob.keda.sh/generation": str(meta.get("generation", 0)), **annotations_in}

    if not spec["template"].get("spec", {}).get("restartPolicy"):
        spec["template"]["spec"]["restartPolicy"] = "OnFailure"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "generateName": name + "-",
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": scaled_job["apiVersion"],
                    "kind": "ScaledJob",
                    "name": name,
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }


def effective_max_scale(
    strategy: str, max_scale: int, running: int, pending: int, max_replicas: int, *, scale_to: int
) -> tuple[int, int]:
    """GetEffectiveMaxScale of the default, accurate and eager strategies: (maxScale, scaleTo)."""
    if strategy == "accurate":
        if max_scale + running - pending > max_replicas:
            return max_replicas - running, scale_to
        return max_scale - pending, scale_to
    if strategy == "eager":
        return min(max_replicas - running - pending, max_scale), max_replicas
    if strategy == "custom":
        raise ValueError("the custom scaling strategy is not emulated")
    return max_scale - running, scale_to


def poll_once(api_client: k8s_client.ApiClient, conn: redis.Redis, namespace: str, name: str) -> PollResult:
    """One pollingInterval of the ScaledJob controller; returns what it saw and the Jobs it created."""
    custom = k8s_client.CustomObjectsApi(api_client)
    batch = k8s_client.BatchV1Api(api_client)
    core = k8s_client.CoreV1Api(api_client)
    scaled_job = custom.get_namespaced_custom_object("keda.sh", "v1alpha1", namespace, "scaledjobs", name)
    spec = scaled_job["spec"]
    (trigger,) = spec["triggers"]
    if trigger["type"] != "redis-streams" or "lagCount" not in trigger["metadata"]:
        raise ValueError(f"only a redis-streams trigger in lag mode is emulated, got {trigger}")
    md = trigger["metadata"]
    max_replicas = int(spec.get("maxReplicaCount", 100))
    min_replicas = int(spec.get("minReplicaCount", 0))

    lag = redis_streams_lag(conn, md["stream"], md["consumerGroup"])
    target = float(md["lagCount"])
    active = lag > int(md.get("activationLagCount", "0")) or min_replicas > 0
    queue_length = math.ceil(lag)
    max_value = math.ceil(min(lag / target, max_replicas)) if target else 0

    jobs = batch.list_namespaced_job(namespace, label_selector=f"scaledjob.keda.sh/name={name}").items
    unfinished = [j for j in jobs if not _job_finished(j)]
    running = len(unfinished)
    pending = sum(1 for j in unfinished if not _any_pod_running_or_completed(core, j))

    if running < min_replicas:
        scale_to = max_scale = min_replicas - running
    else:
        strategy = (spec.get("scalingStrategy") or {}).get("strategy", "default")
        max_scale, scale_to = effective_max_scale(
            strategy, max_value, running - min_replicas, pending, max_replicas, scale_to=queue_length
        )
    max_scale = max(max_scale, 0)

    result = PollResult(lag=lag, active=active, running=running, pending=pending)
    if active and max_scale > 0:
        for _ in range(min(scale_to, max_scale)):
            created = batch.create_namespaced_job(namespace, generate_job(scaled_job))
            result.created.append(created.metadata.name)
    return result
