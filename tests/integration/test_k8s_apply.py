"""The keda and agent_jobs roles against a real kube-apiserver (1.20.2, built from Debian's source
package and started by the k8s_testbed fixture).

What this exercises: the variants of an apply -- check mode on a fresh cluster, a changed setting,
certificate renewal, the API server's own validation (a bad ScaledJob is rejected and its message
reaches the Ansible output), namespace removal with state: absent (the controller-manager's namespace
controller really deletes the contents), secrets kept out of the output, the release-manifest path.
The plain apply as site.yml runs it -- converge, a second run and --check --diff with 0 changed, the
objects read back from the server -- is the Molecule scenarios' (molecule/keda, molecule/agent_jobs).

What it does not: the test bed is a control plane only -- no kubelet, scheduler, container runtime
or storage provisioner, and no KEDA operator (no images can be pulled here). So KEDA is installed
as CRDs only with keda_wait_for_operator: false, the ScaledJob is stored and validated but never
scales, no Job or Pod ever runs (DinD, probes and the socket mount are not exercised), and the PVC
stays Pending. The upstream ScaledJob CRD is rejected by a 1.20 API server, so the reduced CRD in
tests/testbed/k8s/crds/ stands in for it here; test_k8s_manifests.py validates the same rendered
objects strictly against the full v2.20.2 CRD schema.
"""

from __future__ import annotations

import base64
import datetime
import functools
import http.server
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import role_play, run_playbook
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from k8s_testbed import keda_vars as bed_keda_vars
from k8s_testbed import record_timing
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

SECRETS = {"agent_jobs_gitea_token": "gitea-tok-apply-1", "agent_jobs_redis_password": "redis-pw-apply-2"}
# What agent_applied applies, once; the tests only read it there. A test that changes what it applies
# (a setting, the certificates, state: absent) does so in a namespace of its own (own_namespace), so
# that no test depends on which ran before it.
NAMESPACE = "raibid-ci-test"
KEDA_CRDS = ("scaledjobs.keda.sh", "triggerauthentications.keda.sh")
# Resolved before the test bed starts: a missing CRD fails the module without starting one.
pytestmark = pytest.mark.usefixtures("keda_crds")


def timed(play: Path, extra: dict, check: bool = False, *args: str):
    t0 = time.monotonic()
    run = run_playbook(play, extra, check, *args)
    return run, time.monotonic() - t0


@pytest.fixture(scope="module")
def api(k8s_testbed):
    return k8s_config.new_client_from_config(config_file=str(k8s_testbed.kubeconfig))


@pytest.fixture(scope="module")
def keda_vars(k8s_testbed, keda_crds):
    # No operator can run on a control-plane-only test bed: install the CRDs, do not wait for it.
    return bed_keda_vars(str(k8s_testbed.kubeconfig), keda_crds["triggerauthentications"])


def remove_keda_crds(api, timeout: float = 60) -> None:
    """Delete the KEDA CRDs if present and wait until they are gone: with K8S_TESTBED_NODE=1 this
    module shares the node bed, where test_e2e_ci_job.py may have installed them already."""
    crds = k8s_client.ApiextensionsV1Api(api)
    for name in KEDA_CRDS:
        try:
            crds.delete_custom_resource_definition(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
    deadline = time.monotonic() + timeout
    for name in KEDA_CRDS:
        while True:
            try:
                crds.read_custom_resource_definition(name)
            except ApiException as exc:
                if exc.status == 404:
                    break
                raise
            if time.monotonic() > deadline:
                pytest.fail(f"CRD {name} still present {timeout:.0f} s after its deletion", pytrace=False)
            time.sleep(0.5)


@pytest.fixture(scope="module")
def keda_installed(tmp_path_factory, keda_vars, api):
    """The keda role applied once (its idempotence, check mode and the CRDs it leaves on the server are
    the keda Molecule scenario's checks: molecule/keda)."""
    remove_keda_crds(api)
    play = role_play(tmp_path_factory.mktemp("keda"), "keda")
    first, first_s = timed(play, keda_vars)
    record_timing(kind="keda-crds", apply_s=round(first_s, 1))
    assert first.rc == 0, first.output
    return first


@pytest.fixture(scope="module")
def agent_vars(k8s_testbed, tmp_path_factory):
    return {
        **SECRETS,
        "agent_jobs_kubeconfig": str(k8s_testbed.kubeconfig),
        "agent_jobs_namespace": NAMESPACE,
        "agent_jobs_render_dir": str(tmp_path_factory.mktemp("agent-render") / "out"),
    }


@pytest.fixture(scope="module")
def agent_applied(tmp_path_factory, keda_installed, agent_vars):
    play = role_play(tmp_path_factory.mktemp("agent"), "agent_jobs")
    fresh_check = run_playbook(
        play, {k: v for k, v in agent_vars.items() if k != "agent_jobs_render_dir"}, True, "--diff"
    )
    fresh_namespace_after_check = namespace_exists(api_for(agent_vars))
    # Applied once: a second run and a --check --diff run with 0 changed, and the objects read back,
    # are the agent_jobs Molecule scenario's checks (molecule/agent_jobs).
    first, first_s = timed(play, agent_vars)
    record_timing(kind="agent_jobs", apply_s=round(first_s, 1))
    return {
        "play": play,
        "first": first,
        "fresh_check": fresh_check,
        "fresh_namespace_after_check": fresh_namespace_after_check,
    }


def api_for(agent_vars: dict):
    return k8s_config.new_client_from_config(config_file=agent_vars["agent_jobs_kubeconfig"])


def own_namespace(agent_applied: dict, agent_vars: dict, namespace: str) -> dict:
    """The module's agent_jobs settings aimed at `namespace` (no render dir), applied there once:
    for a test that changes what it applies, away from what the other tests read in NAMESPACE."""
    extra = {k: v for k, v in agent_vars.items() if k != "agent_jobs_render_dir"}
    extra["agent_jobs_namespace"] = namespace
    applied = run_playbook(agent_applied["play"], extra, False)
    assert applied.rc == 0, applied.output
    return extra


def namespace_exists(api) -> bool:
    try:
        k8s_client.CoreV1Api(api).read_namespace(NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_check_mode_on_a_fresh_cluster_predicts_and_changes_nothing(agent_applied):
    run = agent_applied["fresh_check"]
    assert run.rc == 0, run.output
    assert run.changed > 0, run.output
    assert f"Namespace {NAMESPACE} does not exist yet: would create" in run.output
    assert agent_applied["fresh_namespace_after_check"] is False


def test_keda_says_it_did_not_wait_for_an_operator(keda_installed):
    # Said plainly: the operator was not waited for, because none can run here (keda_wait_for_operator
    # false). The CRDs themselves: molecule/keda.
    out = keda_installed.output
    assert "Wait for the KEDA operator to be Available" in out
    assert "skipping" in out.split("Wait for the KEDA operator to be Available", 1)[1].split("TASK", 1)[0]


# The shape of KEDA's release manifest (keda-2.20.2.yaml): a namespace and the operator Deployment
# with ghcr.io images and KEDA's own resources, which the role must replace.
RELEASE_SAMPLE = """
apiVersion: v1
kind: Namespace
metadata:
  name: keda
  # As in the release. (A label-less object created by server-side apply gets a
  # "before-first-apply" managedFields entry on its second apply on 1.20: one spurious change.)
  labels: {app.kubernetes.io/name: keda, app.kubernetes.io/part-of: keda-operator}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: keda-operator
  namespace: keda
  labels: {app: keda-operator}
spec:
  replicas: 1
  selector:
    matchLabels: {app: keda-operator}
  template:
    metadata:
      labels: {app: keda-operator}
    spec:
      containers:
        - name: keda-operator
          image: ghcr.io/kedacore/keda:2.20.2
          args: [--leader-elect, --zap-log-level=info]
          resources:
            requests: {cpu: 100m, memory: 100Mi}
            limits: {cpu: "1", memory: 1000Mi}
"""


def test_keda_release_manifest_from_a_url_uses_the_registry_cache(keda_installed, keda_vars, api, tmp_path):
    """The manifest path end to end: fetched over HTTP (a mirror), ghcr.io rewritten to the node's
    registry cache, the role's resources on every container, applied server-side. The Deployment is
    stored, never run (no kubelet), so the operator is not waited for."""
    (tmp_path / "keda-2.20.2.yaml").write_text(RELEASE_SAMPLE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/keda-2.20.2.yaml"
        extra = {
            **keda_vars,
            "keda_manifest_sources": [*keda_vars["keda_manifest_sources"], url],
            "keda_resources": {
                "requests": {"cpu": "50m", "memory": "64Mi"},
                "limits": {"cpu": "500m", "memory": "512Mi"},
            },
        }
        play = role_play(tmp_path, "keda")
        first = run_playbook(play, extra, False)
        again = run_playbook(play, extra, False)
    finally:
        server.shutdown()
    assert first.rc == 0, first.output
    assert again.rc == 0 and again.changed == 0, again.output
    deployment = k8s_client.AppsV1Api(api).read_namespaced_deployment("keda-operator", "keda")
    (container,) = deployment.spec.template.spec.containers
    assert container.image == "127.0.0.1:5002/kedacore/keda:2.20.2"
    assert container.resources.limits == {"cpu": "500m", "memory": "512Mi"}
    assert container.args == ["--leader-elect", "--zap-log-level=info"]
    k8s_client.CoreV1Api(api).delete_namespace("keda")


def test_agent_jobs_output_never_holds_its_secrets(agent_applied):
    assert agent_applied["first"].rc == 0, agent_applied["first"].output
    assert agent_applied["first"].changed > 0
    for run in (agent_applied["first"], agent_applied["fresh_check"]):
        for secret in SECRETS.values():
            assert secret not in run.output
            assert base64.b64encode(secret.encode()).decode() not in run.output


def test_server_stores_what_was_rendered(agent_applied, agent_vars, api):
    rendered = {
        (o["kind"], o["metadata"]["name"]): o
        for o in (
            yaml.safe_load(p.read_text()) for p in sorted(Path(agent_vars["agent_jobs_render_dir"]).glob("*.yaml"))
        )
    }
    core = k8s_client.CoreV1Api(api)
    custom = k8s_client.CustomObjectsApi(api)

    ns = core.read_namespace(NAMESPACE)
    assert ns.metadata.labels["pod-security.kubernetes.io/enforce"] == "privileged"  # dind (default)
    assert core.read_namespaced_service_account("raibid-agent", NAMESPACE).automount_service_account_token is False
    secret = core.read_namespaced_secret("raibid-agent-secrets", NAMESPACE)
    assert base64.b64decode(secret.data["redis-password"]).decode() == SECRETS["agent_jobs_redis_password"]
    assert base64.b64decode(secret.data["gitea-token"]).decode() == SECRETS["agent_jobs_gitea_token"]
    certs = core.read_namespaced_secret("raibid-agent-dind-certs", NAMESPACE)
    assert base64.b64decode(certs.data["ca.pem"]).startswith(b"-----BEGIN CERTIFICATE-----")
    pvc = core.read_namespaced_persistent_volume_claim("raibid-agent-cargo-cache", NAMESPACE)
    assert pvc.status.phase == "Pending"  # no provisioner on the test bed

    stored = custom.get_namespaced_custom_object("keda.sh", "v1alpha1", NAMESPACE, "scaledjobs", "raibid-agent")
    assert stored["spec"] == rendered[("ScaledJob", "raibid-agent")]["spec"]
    auth = custom.get_namespaced_custom_object(
        "keda.sh", "v1alpha1", NAMESPACE, "triggerauthentications", "raibid-agent-redis"
    )
    assert auth["spec"] == rendered[("TriggerAuthentication", "raibid-agent-redis")]["spec"]
    # Kubernetes 1.20 has no native sidecars: the role picked the documented fallback.
    pod = stored["spec"]["jobTargetRef"]["template"]["spec"]
    assert "initContainers" not in pod and [c["name"] for c in pod["containers"]] == ["agent", "dind"]


def test_a_changed_spec_is_applied(agent_applied, agent_vars, api):
    namespace = "raibid-ci-test-changed"
    extra = own_namespace(agent_applied, agent_vars, namespace)
    run = run_playbook(agent_applied["play"], {**extra, "agent_jobs_max_replicas": 6}, False)
    assert run.rc == 0, run.output
    assert run.changed == 1, run.output
    stored = k8s_client.CustomObjectsApi(api).get_namespaced_custom_object(
        "keda.sh", "v1alpha1", namespace, "scaledjobs", "raibid-agent"
    )
    assert stored["spec"]["maxReplicaCount"] == 6
    k8s_client.CoreV1Api(api).delete_namespace(namespace)


def test_server_rejects_a_bad_scaledjob_with_its_message(agent_applied, k8s_testbed, tmp_path):
    play = tmp_path / "bad.yml"
    play.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Apply a ScaledJob the server must refuse",
                            "kubernetes.core.k8s": {
                                "kubeconfig": str(k8s_testbed.kubeconfig),
                                "apply": True,
                                "server_side_apply": {"field_manager": "raibid-test"},
                                "definition": {
                                    "apiVersion": "keda.sh/v1alpha1",
                                    "kind": "ScaledJob",
                                    "metadata": {"name": "bad", "namespace": NAMESPACE},
                                    "spec": {
                                        "jobTargetRef": {"template": {"spec": {"containers": []}}},
                                        # "default" is documented but not in the v2.20 enum.
                                        "rollout": {"strategy": "default"},
                                        "maxReplicaCount": 0,
                                        "triggers": [{"type": "redis-streams", "metadata": {"lagCount": "1"}}],
                                    },
                                },
                            },
                        }
                    ],
                }
            ]
        )
    )
    run = run_playbook(play, None, False)
    assert run.rc != 0
    assert "Unprocessable Entity" in run.output or "422" in run.output, run.output
    assert 'spec.rollout.strategy: Unsupported value: \\"default\\"' in run.output, run.output
    assert "spec.maxReplicaCount" in run.output and "should be greater than or equal to 1" in run.output


def test_keda_view_not_checkable_without_an_operator_is_said(agent_applied):
    """No operator on the test bed writes the ScaledJob's status: verify says so in one line."""
    lines = [
        line
        for line in agent_applied["first"].output.splitlines()
        if "cannot be checked" in line and not line.startswith("TASK")
    ]
    assert len(lines) == 1, agent_applied["first"].output
    assert f"KEDA's view of ScaledJob {NAMESPACE}/raibid-agent cannot be checked" in lines[0]
    assert "no status.conditions" in lines[0] and "KEDA operator" in lines[0]


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def test_dind_certificates_renewed_before_they_expire(agent_applied, agent_vars, api):
    """A server certificate that expires within agent_jobs_dind_cert_renew_days is reissued (the CA
    and the client certificate kept); a fresh set is kept (0 changed)."""
    core = k8s_client.CoreV1Api(api)
    name = "raibid-agent-dind-certs"
    namespace = "raibid-ci-test-renew"
    extra = own_namespace(agent_applied, agent_vars, namespace)
    stored = {k: base64.b64decode(v).decode() for k, v in core.read_namespaced_secret(name, namespace).data.items()}
    ca_cert = _cert(stored["ca.pem"])
    ca_key = serialization.load_pem_private_key(stored["ca-key.pem"].encode(), None)
    server_key = serialization.load_pem_private_key(stored["server-key.pem"].encode(), None)
    old = _cert(stored["server-cert.pem"])
    now = datetime.datetime.now(datetime.timezone.utc)
    # The same subject, key and issuer, expiring in 10 days (< the default 30).
    expiring = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=10))
    )
    for ext in old.extensions:
        expiring = expiring.add_extension(ext.value, ext.critical)
    expiring_pem = expiring.sign(ca_key, hashes.SHA384()).public_bytes(serialization.Encoding.PEM).decode()
    core.patch_namespaced_secret(
        name, namespace, {"data": {"server-cert.pem": base64.b64encode(expiring_pem.encode()).decode()}}
    )

    renewed = run_playbook(agent_applied["play"], extra, False)
    assert renewed.rc == 0, renewed.output
    assert renewed.changed == 1, renewed.output  # the Secret
    assert "Reissuing the DinD server certificate: expires" in renewed.output, renewed.output
    after = {k: base64.b64decode(v).decode() for k, v in core.read_namespaced_secret(name, namespace).data.items()}
    new = _cert(after["server-cert.pem"])
    assert new.not_valid_after_utc > now + datetime.timedelta(days=300)
    assert new.public_key().public_numbers() == server_key.public_key().public_numbers()
    # Issued by the kept CA; the client certificate and every key kept.
    ca_cert.public_key().verify(new.signature, new.tbs_certificate_bytes, ec.ECDSA(new.signature_hash_algorithm))
    for key in ("ca.pem", "ca-key.pem", "server-key.pem", "client-cert.pem", "client-key.pem"):
        assert after[key] == stored[key], key
    for secret in SECRETS.values():
        assert secret not in renewed.output

    kept = run_playbook(agent_applied["play"], extra, False)
    assert kept.rc == 0 and kept.changed == 0, kept.output
    assert "Reissuing the DinD" not in kept.output
    core.delete_namespace(namespace)


def test_an_expiring_ca_reissues_every_certificate(agent_applied, agent_vars, api):
    core = k8s_client.CoreV1Api(api)
    name = "raibid-agent-dind-certs"
    namespace = "raibid-ci-test-ca"
    extra = own_namespace(agent_applied, agent_vars, namespace)
    stored = {k: base64.b64decode(v).decode() for k, v in core.read_namespaced_secret(name, namespace).data.items()}
    # The stored CA (valid 5 x 365 days) expires within a renewal window of 1900 days.
    renewed = run_playbook(
        agent_applied["play"],
        {**extra, "agent_jobs_dind_cert_days": 2000, "agent_jobs_dind_cert_renew_days": 1900},
        False,
    )
    assert renewed.rc == 0, renewed.output
    assert "Reissuing the DinD ca certificate: expires" in renewed.output, renewed.output
    assert "server certificate: the CA is reissued" in renewed.output
    after = {k: base64.b64decode(v).decode() for k, v in core.read_namespaced_secret(name, namespace).data.items()}
    for key in ("ca.pem", "server-cert.pem", "client-cert.pem"):
        assert after[key] != stored[key], key
    ca_cert = _cert(after["ca.pem"])
    for key in ("server-cert.pem", "client-cert.pem"):
        leaf = _cert(after[key])
        ca_cert.public_key().verify(leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm))
    # Back to the defaults: the new set is valid far beyond 30 days, so nothing changes but the
    # leaves' lifetime, which is kept (timestamps are not compared).
    again = run_playbook(agent_applied["play"], extra, False)
    assert again.rc == 0 and again.changed == 0, again.output
    core.delete_namespace(namespace)


def _make_labelled_job(api, namespace: str, name: str) -> None:
    """A Job as KEDA makes it from the ScaledJob (its labels); the test bed has no KEDA operator."""
    batch = k8s_client.BatchV1Api(api)
    batch.create_namespaced_job(
        namespace,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "labels": {
                    "app.kubernetes.io/name": "raibid-agent",
                    "app.kubernetes.io/part-of": "raibid-ci",
                    "app.kubernetes.io/managed-by": "raibid.dgx_spark",
                    "scaledjob.keda.sh/name": "raibid-agent",
                },
            },
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "agent", "image": "127.0.0.1:5000/raibid-ci-agent:latest"}],
                    }
                },
            },
        },
    )


def _gone(read) -> bool:
    try:
        obj = read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    # Deleted but held by a finalizer (pvc-protection) counts as gone from the role's side.
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata.to_dict()
    return meta.get("deletion_timestamp", meta.get("deletionTimestamp")) is not None


def test_state_absent_keeps_a_namespace_the_role_did_not_create(agent_applied, keda_installed, agent_vars, api):
    """The namespace existed before (Redis lives there): the role never marks it, and absent removes
    the role's objects (and a Job KEDA made) but keeps the namespace and what else it holds."""
    shared = "raibid-shared-test"
    core = k8s_client.CoreV1Api(api)
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": shared}})
    core.create_namespaced_config_map(shared, {"metadata": {"name": "redis-config"}, "data": {"maxmemory": "1gb"}})
    extra = {k: v for k, v in agent_vars.items() if k != "agent_jobs_render_dir"}
    extra["agent_jobs_namespace"] = shared
    present = run_playbook(agent_applied["play"], extra, False)
    assert present.rc == 0, present.output
    again = run_playbook(agent_applied["play"], extra, False)
    assert again.rc == 0 and again.changed == 0, again.output
    annotations = core.read_namespace(shared).metadata.annotations or {}
    assert "raibid.dgx-spark/created-by" not in annotations
    _make_labelled_job(api, shared, "raibid-agent-abc12")

    absent_vars = {k: v for k, v in extra.items() if k not in SECRETS}
    absent_vars["agent_jobs_state"] = "absent"
    check = run_playbook(agent_applied["play"], absent_vars, True)
    assert check.rc == 0 and check.changed > 0, check.output
    assert core.read_namespaced_secret("raibid-agent-secrets", shared)  # check mode removed nothing
    removed = run_playbook(agent_applied["play"], absent_vars, False)
    assert removed.rc == 0, removed.output
    assert f"Namespace {shared} stays" in removed.output
    custom = k8s_client.CustomObjectsApi(api)
    batch = k8s_client.BatchV1Api(api)
    for read in (
        lambda: custom.get_namespaced_custom_object("keda.sh", "v1alpha1", shared, "scaledjobs", "raibid-agent"),
        lambda: custom.get_namespaced_custom_object(
            "keda.sh", "v1alpha1", shared, "triggerauthentications", "raibid-agent-redis"
        ),
        lambda: core.read_namespaced_secret("raibid-agent-secrets", shared),
        lambda: core.read_namespaced_secret("raibid-agent-dind-certs", shared),
        lambda: core.read_namespaced_service_account("raibid-agent", shared),
        lambda: core.read_namespaced_persistent_volume_claim("raibid-agent-cargo-cache", shared),
        lambda: batch.read_namespaced_job("raibid-agent-abc12", shared),
    ):
        assert _gone(read)
    assert core.read_namespace(shared).status.phase == "Active"
    assert core.read_namespaced_config_map("redis-config", shared).data == {"maxmemory": "1gb"}
    again = run_playbook(agent_applied["play"], absent_vars, False)
    assert again.rc == 0 and again.changed == 0, again.output
    core.delete_namespace(shared)


def test_state_absent_removes_the_namespace_the_role_created(agent_applied, agent_vars, api):
    namespace = "raibid-ci-test-removed"
    extra = own_namespace(agent_applied, agent_vars, namespace)
    annotations = k8s_client.CoreV1Api(api).read_namespace(namespace).metadata.annotations or {}
    assert annotations.get("raibid.dgx-spark/created-by") == "agent_jobs", annotations
    # No secrets needed to remove.
    extra.pop("agent_jobs_gitea_token")
    extra.pop("agent_jobs_redis_password")
    _make_labelled_job(api, namespace, "raibid-agent-xyz34")
    removed = run_playbook(agent_applied["play"], {**extra, "agent_jobs_state": "absent"}, False)
    assert removed.rc == 0, removed.output
    assert removed.changed > 0
    assert f"Namespace {namespace} stays" not in removed.output
    with pytest.raises(ApiException) as exc:
        k8s_client.CoreV1Api(api).read_namespace(namespace)
    assert exc.value.status == 404
    again = run_playbook(agent_applied["play"], {**extra, "agent_jobs_state": "absent"}, False)
    assert again.rc == 0 and again.changed == 0, again.output
