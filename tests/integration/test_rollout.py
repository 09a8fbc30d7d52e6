"""playbooks/rollout.yml against real parts. Three inventory hosts stand for DGX Spark nodes: this
machine's Docker engine over the local connection, with the node roles skipped by tag (nothing is
applied to this machine; what is tested is the rollout around them). Their health checks probe a real
docker-registry (a node made unhealthy points at a port where nothing answers), and the Kubernetes test
bed's API server holds a Node object for each. The test bed has no kubelet here: a CI pod is bound to its
node and its phase is set through the status subresource, as a kubelet would report it.

The Node check of node_health is off (health_kubernetes_node ""): a Node without a kubelet is never
Ready. Cordon, drain and uncordon are asserted on the Node objects instead; the check itself is tested
against the node test bed's kubelet-backed Node in test_healthcheck_report.py.
"""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from conftest import ROOT, VENV_BIN
from k8s_testbed import free_port, running_ci_pod, set_pod_phase
from kubernetes import client
from support import CommandTimeout, ansible_env, play_recap, run_bounded

PLAYBOOK = ROOT / "playbooks" / "rollout.yml"
NODES = ["spark-a", "spark-b", "spark-c"]
# The node roles (playbooks/tasks/node_roles.yml), skipped: this machine is not a node to converge.
ROLE_TAGS = "preflight,container_runtime,registry_cache,buildkit,agent_image"


@pytest.fixture
def fleet(k8s_testbed, registry_server, tmp_path):
    """Node objects for the three hosts (names unique to the test) and a function that runs the rollout."""
    api = client.CoreV1Api(k8s_testbed.api_client())
    prefix = f"rollout-{uuid.uuid4().hex[:6]}"
    names = {host: f"{prefix}-{host}" for host in NODES}
    for name in names.values():
        api.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=name)))
    namespace = prefix
    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))

    def rollout(broken=(), extra=None, timeout=300, log=None):
        """Run playbooks/rollout.yml; `log`: a file ansible also writes its output to while it runs."""
        dead = f"http://127.0.0.1:{free_port()}"
        hosts = {
            host: {
                "ansible_connection": "local",
                "ansible_python_interpreter": str(VENV_BIN / "python"),
                "dgx_spark_kubernetes_node": names[host],
                "health_registry_endpoints": {
                    "local": "127.0.0.1:5000",
                    "local_url": dead if host in broken else registry_server.url,
                    "mirror_urls": {},
                },
            }
            for host in NODES
        }
        inventory = {
            "dgx_spark": {"hosts": hosts},
            "k8s_control": {
                "hosts": {
                    "k8s-api": {
                        "ansible_connection": "local",
                        "ansible_python_interpreter": str(VENV_BIN / "python"),
                        "dgx_spark_kubeconfig": str(k8s_testbed.kubeconfig),
                    }
                }
            },
        }
        (tmp_path / "inventory.json").write_text(json.dumps(inventory))
        settings = {
            "ansible_become": False,  # root already; the play's become would need sudo here
            "rollout_state_dir": str(tmp_path / "state"),
            "rollout_ci_pod_poll": 1,
            "health_report_dir": str(tmp_path / "health"),
            "health_agent_image": "",
            "health_buildkit_builder": "",
            "health_kubernetes_node": "",
            "health_expect_live_restore": False,
            "health_disk_paths": ["/"],
            "health_disk_warn_free_percent": 1,
            "health_disk_fail_free_percent": 0,
            "health_memory_warn_available_mb": 64,
            "health_memory_fail_available_mb": 32,
            **(extra or {}),
        }
        cmd = [
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            str(tmp_path / "inventory.json"),
            str(PLAYBOOK),
            "--skip-tags",
            ROLE_TAGS,
            "-e",
            json.dumps(settings),
        ]
        env = ansible_env()
        if log is not None:
            env["ANSIBLE_LOG_PATH"] = str(log)
        try:
            proc = run_bounded(cmd, timeout, "ansible-playbook playbooks/rollout.yml", cwd=ROOT, env=env)
        except CommandTimeout as exc:
            pytest.fail(str(exc), pytrace=False)
        return proc.returncode, proc.stdout + proc.stderr

    def cordoned(host):
        return bool(api.read_node(names[host]).spec.unschedulable)

    def record(host):
        path = tmp_path / "state" / "nodes" / f"{host}.json"
        return json.loads(path.read_text()) if path.exists() else None

    yield rollout, cordoned, record, api, namespace, names, tmp_path / "state"

    for name in names.values():
        api.delete_node(name)
    api.delete_namespace(namespace)


def test_a_fault_stops_the_rollout_at_its_node_and_the_rerun_continues_there(fleet):
    rollout, cordoned, record, _api, _ns, _names, state = fleet
    rc, out = rollout(broken={"spark-b"})
    assert rc != 0, out
    assert "spark-b is unhealthy before its update" in out and "registry:local" in out, out
    assert "rollout_unhealthy_before=stop" in out
    assert "Rollout stopped: 1 updated, 0 skipped, 1 failed, 1 not reached." in out, out
    assert "spark-c: not reached" in out
    # spark-a went through (cordoned, then back); spark-b stopped before its cordon; spark-c untouched.
    assert record("spark-a")["status"] == "updated" and not cordoned("spark-a")
    assert record("spark-b")["status"] == "failed" and record("spark-b")["failing_checks"] == ["registry:local"]
    assert not cordoned("spark-b")
    assert record("spark-c") is None and not cordoned("spark-c")
    assert "spark-c" not in play_recap(out), out

    rc, out = rollout()  # repaired
    assert rc == 0, out
    assert "spark-a: updated earlier in this rollout (at" in out, out
    assert "Rollout complete: 3 updated, 0 skipped, 0 failed, 0 not reached." in out, out
    assert not any(cordoned(host) for host in NODES)
    summary = json.loads((state / "summary.json").read_text())
    assert summary["complete"] is True and summary["updated"] == NODES
    assert not (state / "nodes").exists()  # the next rollout starts afresh

    rc, out = rollout()
    assert rc == 0 and "updated earlier in this rollout (at" not in out, out


def test_an_unhealthy_node_after_its_update_stays_cordoned_and_stops_its_batch(fleet):
    rollout, cordoned, record, _api, _ns, _names, _state = fleet
    # Two nodes per batch: spark-b fails beside spark-a, so 1 of 2 failed; max_fail_percentage 0 stops
    # the rollout before spark-c's batch.
    rc, out = rollout(broken={"spark-b"}, extra={"rollout_unhealthy_before": "update", "dgx_spark_serial": 2})
    assert rc != 0, out
    assert "spark-b is unhealthy after its update" in out and "with the node cordoned" in out, out
    assert cordoned("spark-b") and record("spark-b")["status"] == "failed"
    assert record("spark-a")["status"] == "updated" and not cordoned("spark-a")
    assert record("spark-c") is None and not cordoned("spark-c")
    assert "spark-c: not reached" in out

    rc, out = rollout(broken={"spark-b"}, extra={"rollout_unhealthy_before": "skip"})
    assert rc == 0, out
    assert "spark-b skipped (rollout_unhealthy_before=skip)" in out, out
    assert "Rollout complete: 2 updated, 1 skipped, 0 failed, 0 not reached." in out, out
    # Skipped: left as it was, still cordoned from the failed update.
    assert cordoned("spark-b") and not cordoned("spark-c")


def test_a_running_ci_pod_holds_the_rollout_and_is_never_evicted(fleet):
    rollout, cordoned, record, api, namespace, names, state = fleet
    running_ci_pod(api, namespace, names["spark-a"])

    rc, out = rollout(extra={"rollout_ci_pod_timeout": 3})
    assert rc != 0, out
    assert (
        f"1 CI pod(s) still running on the Kubernetes node {names['spark-a']} after rollout_ci_pod_timeout=3s:"
        f" {namespace}/ci-job. None was evicted" in out
    ), out
    pod = api.read_namespaced_pod("ci-job", namespace)
    assert pod.metadata.deletion_timestamp is None and pod.status.phase == "Running"
    assert cordoned("spark-a") and record("spark-b") is None and not cordoned("spark-b")

    # The job ends while the rollout waits: the rollout goes on, drains, updates every node. It ends once
    # the rollout's log shows the wait retried, not after a fixed delay: on a loaded machine the rollout
    # reached the wait after the 20 s this used to allow (seen), and the pod had ended before it looked.
    waiting = "FAILED - RETRYING: [spark-a -> k8s-api]: Wait for the CI pods on the node to finish"
    log, done = state.parent / "rollout-waits.log", threading.Event()

    def finish_once_waited() -> None:
        while not done.wait(0.5):
            if log.exists() and waiting in log.read_text(encoding="utf-8", errors="replace"):
                set_pod_phase(api, namespace, "ci-job", "Succeeded")
                return

    finisher = threading.Thread(target=finish_once_waited, daemon=True)
    finisher.start()
    try:
        rc, out = rollout(extra={"rollout_ci_pod_timeout": 120}, log=log)
    finally:
        done.set()
        finisher.join(30)
    assert rc == 0, out
    assert waiting in out, out
    assert "Rollout complete: 3 updated" in out, out
    assert not any(cordoned(host) for host in NODES)


def test_bad_settings_are_named_before_anything_changes(fleet):
    rollout, cordoned, _record, _api, _ns, _names, _state = fleet
    bad = {"rollout_ci_pod_poll": 0, "rollout_state_dir": "relative/dir", "rollout_k8s_host": "nowhere"}
    rc, out = rollout(extra=bad)
    assert rc != 0, out
    assert "rollout_ci_pod_poll must be above 0 seconds, got 0" in out, out
    assert 'rollout_state_dir must be an absolute path on the controller, got "relative/dir"' in out
    assert "rollout_k8s_host (default: the first k8s_control host) must be a host of the inventory" in out
    assert 'got "nowhere"' in out
    assert not any(cordoned(host) for host in NODES)
    assert "Health before the update" not in out and "TASK [raibid.dgx_spark.health" not in out
