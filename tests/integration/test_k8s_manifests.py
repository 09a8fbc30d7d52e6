"""The agent_jobs role's rendered manifests (the very objects it applies) are valid Kubernetes and
valid KEDA v2.20.2, strictly, in every docker access mode.

Renders with agent_jobs_render_only (no cluster contacted), then validates every object: core kinds
with kubernetes-validate against Kubernetes 1.30 and the newest schemas it ships, the ScaledJob's job
template as a batch/v1 Job the same way, and ScaledJob/TriggerAuthentication against the KEDA v2.20.2
CRD schemas with unknown fields refused.
"""

from __future__ import annotations

import copy
import stat
from pathlib import Path

import pytest
import yaml
from conftest import run_playbook
from k8s_schemas import crd_errors, job_from_scaledjob, kubernetes_errors, load_crd_schema
from k8s_testbed import keda_crd_path

SECRETS = {"agent_jobs_gitea_token": "gitea-tok-123", "agent_jobs_redis_password": "redis-pw-456"}
DIGEST = "sha256:" + "ab" * 32

MODES = {
    "dind-native": {"agent_jobs_kubernetes_version": "1.30"},
    "dind-legacy": {"agent_jobs_kubernetes_version": "1.20"},
    "socket": {
        "agent_jobs_docker_access": "socket",
        "agent_jobs_allow_docker_socket": True,
        "agent_jobs_docker_gid": 999,
        "agent_jobs_kubernetes_version": "1.31",
    },
    "none-digest": {
        "agent_jobs_docker_access": "none",
        "agent_jobs_image_digest": DIGEST,
        "agent_jobs_cargo_cache_storage_class": "local-path",
        "agent_jobs_kubernetes_version": "1.33",
    },
}


def render(tmp_path: Path, extra: dict) -> tuple[list[dict], Path]:
    out = tmp_path / "rendered"
    play = tmp_path / "render.yml"
    play.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.include_role:\n        name: raibid.dgx_spark.agent_jobs\n"
    )
    run = run_playbook(
        play, {**SECRETS, "agent_jobs_render_only": True, "agent_jobs_render_dir": str(out), **extra}, False
    )
    assert run.rc == 0, run.output
    for secret in SECRETS.values():
        assert secret not in run.output
    files = sorted(out.glob("*.yaml"))
    assert files, run.output
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    return [yaml.safe_load(f.read_text()) for f in files], out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return {mode: render(tmp_path_factory.mktemp(mode), extra)[0] for mode, extra in MODES.items()}


@pytest.fixture(scope="module")
def keda_schemas():
    return {
        "ScaledJob": load_crd_schema(keda_crd_path("scaledjobs")),
        "TriggerAuthentication": load_crd_schema(keda_crd_path("triggerauthentications")),
    }


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def containers(scaledjob: dict) -> list[dict]:
    spec = scaledjob["spec"]["jobTargetRef"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


@pytest.mark.parametrize("mode", MODES)
def test_core_objects_validate_against_kubernetes_schemas(rendered, mode):
    objects = rendered[mode]
    errors = []
    for obj in objects:
        if obj["apiVersion"].startswith("keda.sh/"):
            errors += kubernetes_errors(job_from_scaledjob(obj)) if obj["kind"] == "ScaledJob" else []
        else:
            errors += kubernetes_errors(obj)
    assert not errors, "\n".join(errors)
    assert {o["kind"] for o in objects} >= {
        "Namespace",
        "ServiceAccount",
        "Secret",
        "PersistentVolumeClaim",
        "TriggerAuthentication",
        "ScaledJob",
    }


@pytest.mark.parametrize("mode", MODES)
def test_keda_objects_validate_strictly_against_v2_20_2_crds(rendered, keda_schemas, mode):
    errors = []
    for obj in rendered[mode]:
        if obj["kind"] in keda_schemas:
            errors += [f"{obj['kind']}: {e}" for e in crd_errors(obj, keda_schemas[obj["kind"]])]
    assert not errors, "\n".join(errors)


def test_strict_crd_validation_catches_unknown_and_mistyped_fields(rendered, keda_schemas):
    scaledjob = by_kind(rendered["dind-native"], "ScaledJob")[0]
    schema = keda_schemas["ScaledJob"]
    unknown = copy.deepcopy(scaledjob)
    unknown["spec"]["jobTargetRef"]["template"]["spec"]["containers"][0]["memoryLimit"] = "8Gi"
    assert any("memoryLimit" in e for e in crd_errors(unknown, schema))
    number = copy.deepcopy(scaledjob)
    number["spec"]["triggers"][0]["metadata"]["lagCount"] = 1
    assert any("lagCount" in e and "string" in e for e in crd_errors(number, schema))
    enum = copy.deepcopy(scaledjob)
    enum["spec"]["rollout"]["strategy"] = "default"
    assert any("rollout/strategy" in e for e in crd_errors(enum, schema))


def test_kubernetes_validation_catches_unknown_fields(rendered):
    scaledjob = by_kind(rendered["dind-native"], "ScaledJob")[0]
    bad = copy.deepcopy(scaledjob)
    bad["spec"]["jobTargetRef"]["template"]["spec"]["containers"][0]["resources"]["limit"] = {"memory": "1Gi"}
    assert any("limit" in e for e in kubernetes_errors(job_from_scaledjob(bad)))


@pytest.mark.parametrize("mode", MODES)
def test_every_container_has_a_memory_limit(rendered, mode):
    for container in containers(by_kind(rendered[mode], "ScaledJob")[0]):
        assert container["resources"]["limits"]["memory"], container["name"]


@pytest.mark.parametrize("mode", MODES)
def test_agent_env_is_what_the_agent_reads(rendered, mode):
    scaledjob = by_kind(rendered[mode], "ScaledJob")[0]
    agent = next(c for c in scaledjob["spec"]["jobTargetRef"]["template"]["spec"]["containers"] if c["name"] == "agent")
    env = {e["name"]: e for e in agent["env"]}
    assert env["REDIS_HOST"]["value"] == "redis.raibid-ci.svc.cluster.local"
    assert env["REDIS_PORT"]["value"] == "6379"
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "redis-password"
    assert env["QUEUE_STREAM"]["value"] == "raibid:jobs"
    assert env["CONSUMER_GROUP"]["value"] == "raibid-workers"
    assert env["WORKSPACE_DIR"]["value"] == "/workspace"
    assert "GITEA_HOST" in env
    assert not {"REDIS_URL", "REDIS_ADDRESS", "REDIS_STREAM"} & set(env)
    trigger = scaledjob["spec"]["triggers"][0]
    assert trigger["type"] == "redis-streams"
    # One address for the agent and the trigger.
    assert trigger["metadata"]["address"] == f"{env['REDIS_HOST']['value']}:{env['REDIS_PORT']['value']}"
    assert trigger["metadata"]["stream"] == env["QUEUE_STREAM"]["value"]
    assert trigger["metadata"]["consumerGroup"] == env["CONSUMER_GROUP"]["value"]
    assert trigger["metadata"]["lagCount"] == "1" and trigger["metadata"]["activationLagCount"] == "0"
    assert all(isinstance(v, str) for v in trigger["metadata"].values())
    assert scaledjob["spec"]["scalingStrategy"]["strategy"] in ("accurate", "eager")
    # The cache never hides $CARGO_HOME (config.toml): only registry/ and git/ are mounted.
    mounts = {m["mountPath"] for m in agent["volumeMounts"]}
    assert {"/home/agent/.cargo/registry", "/home/agent/.cargo/git", "/workspace"} <= mounts
    assert "/home/agent/.cargo" not in mounts


def test_dind_native_sidecar_with_tls(rendered):
    objects = rendered["dind-native"]
    spec = by_kind(objects, "ScaledJob")[0]["spec"]["jobTargetRef"]["template"]["spec"]
    (dind,) = spec["initContainers"]
    assert dind["restartPolicy"] == "Always"
    assert "--tlsverify" in dind["args"] and "--host=tcp://0.0.0.0:2376" in dind["args"]
    assert {"mountPath": "/var/lib/docker", "name": "dind-storage"} in dind["volumeMounts"]
    assert next(v for v in spec["volumes"] if v["name"] == "dind-storage")["emptyDir"]
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["DOCKER_HOST"] == "tcp://localhost:2376" and env["DOCKER_TLS_VERIFY"] == "1"
    assert env["DOCKER_CERT_PATH"] == "/certs/client"
    certs = next(o for o in by_kind(objects, "Secret") if o["metadata"]["name"].endswith("dind-certs"))
    assert set(certs["data"]) == {
        "ca.pem",
        "ca-key.pem",
        "server-cert.pem",
        "server-key.pem",
        "client-cert.pem",
        "client-key.pem",
    }
    labels = by_kind(objects, "Namespace")[0]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def test_dind_legacy_sidecar_below_1_29(rendered):
    spec = by_kind(rendered["dind-legacy"], "ScaledJob")[0]["spec"]["jobTargetRef"]["template"]["spec"]
    assert "initContainers" not in spec
    assert [c["name"] for c in spec["containers"]] == ["agent", "dind"]
    assert "/run/raibid-signal/done" in spec["containers"][0]["args"][2]
    assert "/run/raibid-signal/done" in spec["containers"][1]["command"][2]


def test_socket_mode_mounts_the_socket_with_the_docker_gid(rendered):
    objects = rendered["socket"]
    spec = by_kind(objects, "ScaledJob")[0]["spec"]["jobTargetRef"]["template"]["spec"]
    assert spec["securityContext"]["supplementalGroups"] == [999]
    sock = next(v for v in spec["volumes"] if v["name"] == "docker-socket")
    assert sock["hostPath"] == {"path": "/var/run/docker.sock", "type": "Socket"}
    assert not any(o["metadata"]["name"].endswith("dind-certs") for o in by_kind(objects, "Secret"))
    assert by_kind(objects, "Namespace")[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_none_mode_is_restricted_and_pinned_by_digest(rendered):
    objects = rendered["none-digest"]
    assert by_kind(objects, "Namespace")[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    spec = by_kind(objects, "ScaledJob")[0]["spec"]["jobTargetRef"]["template"]["spec"]
    (agent,) = spec["containers"]
    assert agent["image"] == f"127.0.0.1:5000/raibid-ci-agent@{DIGEST}"
    assert agent["imagePullPolicy"] == "IfNotPresent"
    assert not any("DOCKER" in e["name"] for e in agent["env"])
    assert by_kind(objects, "PersistentVolumeClaim")[0]["spec"]["storageClassName"] == "local-path"
    sa = by_kind(objects, "ServiceAccount")[0]
    assert sa["automountServiceAccountToken"] is False and spec["automountServiceAccountToken"] is False
