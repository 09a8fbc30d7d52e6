"""The agent_jobs role's rendered manifests (the very objects it applies) are valid Kubernetes and
valid KEDA v2.20.2, strictly, in every docker access mode.

Renders with agent_jobs_render_only (no cluster contacted), then validates every object: core kinds
with kubernetes-validate against Kubernetes 1.30 and the newest schemas it ships, the ScaledJob's job
template as a batch/v1 Job the same way, and ScaledJob/TriggerAuthentication against the KEDA v2.20.2
CRD schemas with unknown fields refused.
"""

from __future__ import annotations

import base64
import copy
import json
import stat
from pathlib import Path

import pytest
import yaml
from conftest import run_playbook
from k8s_schemas import crd_errors, job_from_scaledjob, kubernetes_errors, load_crd_schema

SECRETS = {"agent_jobs_gitea_token": "gitea-tok-123", "agent_jobs_redis_password": "redis-pw-456"}
DIGEST = "sha256:" + "ab" * 32

REGISTRY_CA = "-----BEGIN CERTIFICATE-----\nMIIBregistryCA\n-----END CERTIFICATE-----"
EXTRA_ENV = {"RUSTFLAGS": "-C target-cpu=native", "CARGO_BUILD_JOBS": 8, "CI_VERBOSE": True, "RECLAIM_IDLE_MS": 5000}

MODES = {
    # Registries on loopback (the default): DinD gets no mirrors.
    "dind-native": {"agent_jobs_kubernetes_version": "1.30"},
    # Registries on a wildcard bind, reached by Pods at an IPv6 node address.
    "dind-legacy": {
        "agent_jobs_kubernetes_version": "1.20",
        "dgx_spark_registry_bind_address": "::",
        "agent_jobs_registry_address": "fd00:4::2",
        "agent_jobs_registry_ca": REGISTRY_CA,
    },
    # Registries bound to a LAN address (TLS and htpasswd, as registry_cache requires off loopback).
    "dind-registry": {
        "agent_jobs_kubernetes_version": "1.31",
        "dgx_spark_registry_bind_address": "10.0.4.2",
        "agent_jobs_registry_ca": REGISTRY_CA,
        "dgx_spark_registry_auth_users": [{"name": "ci", "password": "registry-pw-789"}],
        "agent_jobs_extra_env": EXTRA_ENV,
    },
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


def render(tmp_path: Path, extra: dict) -> tuple[list[dict], Path, str]:
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
    for secret in [*SECRETS.values(), "registry-pw-789"]:
        assert secret not in run.output
    files = sorted(out.glob("*.yaml"))
    assert files, run.output
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    return [yaml.safe_load(f.read_text()) for f in files], out, run.output


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    return {mode: render(tmp_path_factory.mktemp(mode), extra) for mode, extra in MODES.items()}


@pytest.fixture(scope="module")
def rendered(renders):
    return {mode: objects for mode, (objects, _out, _output) in renders.items()}


@pytest.fixture(scope="module")
def keda_schemas(keda_crds):
    return {
        "ScaledJob": load_crd_schema(keda_crds["scaledjobs"]),
        "TriggerAuthentication": load_crd_schema(keda_crds["triggerauthentications"]),
    }


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def containers(scaledjob: dict) -> list[dict]:
    spec = scaledjob["spec"]["jobTargetRef"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def pod_spec(objects: list[dict]) -> dict:
    return by_kind(objects, "ScaledJob")[0]["spec"]["jobTargetRef"]["template"]["spec"]


def container(objects: list[dict], name: str) -> dict:
    return next(c for c in containers(by_kind(objects, "ScaledJob")[0]) if c["name"] == name)


def secret(objects: list[dict], suffix: str) -> dict | None:
    return next((o for o in by_kind(objects, "Secret") if o["metadata"]["name"].endswith(suffix)), None)


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
    # A killed agent container never writes `done`: its heartbeat stops and dind stops on that.
    assert "/run/raibid-signal/alive" in spec["containers"][0]["args"][2]
    assert "/run/raibid-signal/alive" in spec["containers"][1]["command"][2]
    # SIGTERM (Pod deletion) reaches the agent through its wrapper, which tini does not signal past.
    assert "trap 'kill -TERM $child" in spec["containers"][0]["args"][2]


@pytest.mark.parametrize("mode", MODES)
def test_agent_id_is_the_pod_name(rendered, mode):
    env = {e["name"]: e for e in container(rendered[mode], "agent")["env"]}
    assert env["AGENT_ID"] == {"name": "AGENT_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


@pytest.mark.parametrize("mode", MODES)
def test_agent_waits_for_the_docker_of_its_job(rendered, mode):
    """With Docker for the job the daemon is required and waited for before a job is taken."""
    env = {e["name"]: e.get("value") for e in container(rendered[mode], "agent")["env"]}
    if "DOCKER_HOST" in env:
        assert env["HEALTH_DOCKER"] == "require"
        assert env["DOCKER_WAIT_SECS"] == "120"
    else:
        assert "HEALTH_DOCKER" not in env and "DOCKER_WAIT_SECS" not in env


@pytest.mark.parametrize("mode", MODES)
def test_agent_has_no_probe(rendered, mode):
    """The agent checks its own health before it reads the queue: a probe could kill it mid-job."""
    agent = container(rendered[mode], "agent")
    assert not {"startupProbe", "livenessProbe", "readinessProbe"} & set(agent)


def test_extra_env_reaches_the_agent_as_strings(rendered):
    env = container(rendered["dind-registry"], "agent")["env"]
    names = [e["name"] for e in env]
    assert {e["name"]: e.get("value") for e in env if e["name"] in EXTRA_ENV} == {
        "RUSTFLAGS": "-C target-cpu=native",
        "CARGO_BUILD_JOBS": "8",
        "CI_VERBOSE": "true",
        "RECLAIM_IDLE_MS": "5000",
    }
    # After the role's own, each name once.
    assert names.index("RUSTFLAGS") > names.index("REDIS_HOST") and len(names) == len(set(names))
    assert not any(n in EXTRA_ENV for n in (e["name"] for e in container(rendered["dind-native"], "agent")["env"]))


@pytest.mark.parametrize("mode", ["dind-native", "dind-legacy", "dind-registry"])
def test_dind_takes_the_pod_network_mtu(rendered, mode):
    dind = container(rendered[mode], "dind")
    assert dind["command"][:2] == ["sh", "-c"]
    script = dind["command"][2]
    assert "cat /sys/class/net/eth0/mtu" in script and '"--mtu=$mtu"' in script
    assert "com.docker.network.driver.mtu=$mtu" in script
    # The script hands its arguments (the dockerd flags) on to the image's entrypoint.
    assert 'dockerd-entrypoint.sh "$@"' in script and dind["args"][0] == "dockerd"


def test_dind_uses_the_node_registries_through_a_pod_address(rendered):
    objects = rendered["dind-registry"]
    dind = container(objects, "dind")
    assert "--registry-mirror=https://10.0.4.2:5001" in dind["args"]
    hosts = ["10.0.4.2:5000", "10.0.4.2:5001", "10.0.4.2:5002"]
    ca = secret(objects, "-registry-ca")
    assert base64.b64decode(ca["data"]["ca.crt"]).decode() == REGISTRY_CA + "\n"
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    assert volumes["registry-ca"]["secret"]["secretName"] == ca["metadata"]["name"]
    assert volumes["registry-ca"]["secret"]["items"] == [{"key": "ca.crt", "path": f"{h}/ca.crt"} for h in hosts]
    assert {"name": "registry-ca", "mountPath": "/etc/docker/certs.d", "readOnly": True} in dind["volumeMounts"]
    auth = secret(objects, "-registry-auth")
    assert auth["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(auth["data"][".dockerconfigjson"]))
    assert set(config["auths"]) == set(hosts)
    assert {base64.b64decode(a["auth"]).decode() for a in config["auths"].values()} == {"ci:registry-pw-789"}
    agent = container(objects, "agent")
    env = {e["name"]: e.get("value") for e in agent["env"]}
    assert env["DOCKER_CONFIG"] == "/run/raibid-docker-config"
    mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
    assert mounts["/run/raibid-docker-config"]["name"] == "docker-config"
    assert mounts["/run/raibid-docker-config/config.json"] == {
        "name": "registry-auth",
        "mountPath": "/run/raibid-docker-config/config.json",
        "subPath": "config.json",
        "readOnly": True,
    }
    assert volumes["registry-auth"]["secret"]["items"] == [{"key": ".dockerconfigjson", "path": "config.json"}]


def test_registry_ipv6_address_in_brackets_and_never_a_wildcard(rendered):
    objects = rendered["dind-legacy"]
    dind = container(objects, "dind")
    assert "--registry-mirror=https://[fd00:4::2]:5001" in dind["args"]
    items = next(v for v in pod_spec(objects)["volumes"] if v["name"] == "registry-ca")["secret"]["items"]
    assert [i["path"] for i in items] == [
        "[fd00:4::2]:5000/ca.crt",
        "[fd00:4::2]:5001/ca.crt",
        "[fd00:4::2]:5002/ca.crt",
    ]
    # No registry user in this inventory: no credentials Secret, no DOCKER_CONFIG.
    assert secret(objects, "-registry-auth") is None
    assert "DOCKER_CONFIG" not in {e["name"] for e in container(objects, "agent")["env"]}
    # What a Pod dials for a registry is never the node's loopback nor a wildcard.
    for mode_objects in rendered.values():
        if not any(c["name"] == "dind" for c in containers(by_kind(mode_objects, "ScaledJob")[0])):
            continue
        mirrors = [a.split("=", 1)[1] for a in container(mode_objects, "dind")["args"] if a.startswith("--registry-")]
        paths = [
            i["path"]
            for v in pod_spec(mode_objects)["volumes"]
            if v["name"] == "registry-ca"
            for i in v["secret"]["items"]
        ]
        for where in mirrors + paths:
            assert not any(bad in where for bad in ("127.0.0.1", "0.0.0.0", "[::]", "localhost")), where


def test_registries_on_loopback_give_dind_no_mirrors_and_say_so(renders):
    objects, _out, output = renders["dind-native"]
    assert not any(a.startswith("--registry-mirror") for a in container(objects, "dind")["args"])
    assert secret(objects, "-registry-ca") is None and secret(objects, "-registry-auth") is None
    assert "registry-ca" not in {v["name"] for v in pod_spec(objects)["volumes"]}
    lines = [line for line in output.splitlines() if "agent_jobs_registry_address is empty" in line]
    assert len(lines) == 1 and "127.0.0.1 (dgx_spark_registry_bind_address)" in lines[0]
    assert "agent_jobs_registry_address is empty" not in renders["dind-registry"][2]


@pytest.mark.parametrize("mode", MODES)
def test_a_namespace_the_role_creates_is_marked(rendered, mode):
    """Rendered for a fresh cluster: the role creates the namespace and marks it, so that
    state=absent may delete it (and only it: a namespace that existed before is never marked)."""
    ns = by_kind(rendered[mode], "Namespace")[0]
    assert ns["metadata"]["annotations"] == {"raibid.dgx-spark/created-by": "agent_jobs"}
    # Every other object carries the labels state=absent finds KEDA's Jobs by.
    for obj in rendered[mode]:
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "raibid.dgx_spark"
    template = by_kind(rendered[mode], "ScaledJob")[0]["spec"]["jobTargetRef"]["template"]
    assert template["metadata"]["labels"]["app.kubernetes.io/name"] == "raibid-agent"


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
