"""Real Pods on the node test bed (k8s_node_testbed: kube-scheduler, a separate containerd, a CNI
bridge and a kubelet v1.20.2 next to the control plane; see docs/testbed.md).

What this exercises: a Job from a pod template runs to `succeeded: 1` and its log comes back
through the API server (apiserver -> kubelet); a Pod on the bridge network reaches TCP services on
the host, at the node IP, bound to 0.0.0.0 and to the node IP itself (how Pods reach Redis or a
git server in the lab); a privileged container gets the privileges (API server with
--allow-privileged); the node carries the labels it was started with; an image made here is
imported with import_image and runs. Images are local only (no registry can be reached):
`imagePullPolicy: Never`.
"""

from __future__ import annotations

import http.server
import secrets
import threading
import time
from typing import ClassVar

import pytest
from k8s_testbed import record_timing
from kubernetes import client as k8s_client
from kubernetes.client.rest import ApiException
from support import busybox_image

NAMESPACE = "raibid-pods-test"
POD_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def api(k8s_node_testbed):
    return k8s_node_testbed.api_client()


@pytest.fixture(scope="module")
def core(api):
    return k8s_client.CoreV1Api(api)


@pytest.fixture(scope="module")
def namespace(core):
    core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=NAMESPACE)))
    # The namespace controller creates the default ServiceAccount a moment later; pods need it.
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_service_account("default", NAMESPACE)
            break
        except ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    yield NAMESPACE
    core.delete_namespace(NAMESPACE, grace_period_seconds=0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            core.read_namespace(NAMESPACE)
        except ApiException as exc:
            if exc.status == 404:
                break
        time.sleep(0.5)


def describe(core, namespace: str, name: str) -> str:
    """Pod status and events, for assertion messages."""
    try:
        pod = core.read_namespaced_pod(name, namespace)
        status = pod.status
        lines = [f"phase={status.phase} reason={status.reason} message={status.message}"]
        for cs in status.container_statuses or []:
            lines.append(f"  container {cs.name}: {cs.state}")
    except ApiException as exc:
        lines = [f"pod {name}: {exc.status} {exc.reason}"]
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    lines += [f"  event {e.reason}: {e.message}" for e in events.items]
    return "\n".join(lines)


def busybox_pod(name: str, image: str, script: str, privileged: bool = False) -> k8s_client.V1Pod:
    return k8s_client.V1Pod(
        metadata=k8s_client.V1ObjectMeta(name=name),
        spec=k8s_client.V1PodSpec(
            restart_policy="Never",
            termination_grace_period_seconds=1,
            containers=[
                k8s_client.V1Container(
                    name="main",
                    image=image,
                    image_pull_policy="Never",
                    command=["sh", "-c", script],
                    security_context=k8s_client.V1SecurityContext(privileged=True) if privileged else None,
                )
            ],
        ),
    )


def run_pod(core, namespace: str, pod: k8s_client.V1Pod, timeout: float = POD_TIMEOUT_S) -> tuple[str, str, float]:
    """Create the pod, wait (bounded) until it ends; return (phase, log, seconds)."""
    name = pod.metadata.name
    t0 = time.monotonic()
    core.create_namespaced_pod(namespace, pod)
    phase = "Pending"
    while time.monotonic() - t0 < timeout:
        phase = core.read_namespaced_pod(name, namespace).status.phase
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"pod {name} still {phase} after {timeout}s:\n{describe(core, namespace, name)}")
    seconds = time.monotonic() - t0
    log = core.read_namespaced_pod_log(name, namespace)
    return phase, log, seconds


def test_node_is_ready_with_the_given_labels(k8s_node_testbed, core):
    node = core.read_node(k8s_node_testbed.node_name)
    ready = {c.type: c.status for c in node.status.conditions}["Ready"]
    assert ready == "True"
    assert k8s_node_testbed.node_labels, "the fixture starts the node with labels"
    for key, value in k8s_node_testbed.node_labels.items():
        assert node.metadata.labels.get(key) == value, node.metadata.labels
    assert node.metadata.labels["kubernetes.io/arch"] in ("amd64", "arm64")
    addresses = {a.type: a.address for a in node.status.addresses}
    assert addresses["InternalIP"] == k8s_node_testbed.node_ip


def test_job_runs_to_success(k8s_node_testbed, api, core, namespace):
    batch = k8s_client.BatchV1Api(api)
    template = busybox_pod("unused", k8s_node_testbed.busybox_image, "echo hello-from-job; id -u")
    job = k8s_client.V1Job(
        metadata=k8s_client.V1ObjectMeta(name="hello"),
        spec=k8s_client.V1JobSpec(
            backoff_limit=0,
            template=k8s_client.V1PodTemplateSpec(spec=template.spec),
        ),
    )
    t0 = time.monotonic()
    batch.create_namespaced_job(namespace, job)
    status = None
    while time.monotonic() - t0 < POD_TIMEOUT_S:
        status = batch.read_namespaced_job_status("hello", namespace).status
        if status.succeeded or status.failed:
            break
        time.sleep(0.2)
    seconds = time.monotonic() - t0
    pods = core.list_namespaced_pod(namespace, label_selector="job-name=hello").items
    details = "\n".join(describe(core, namespace, p.metadata.name) for p in pods)
    assert status is not None and status.succeeded == 1, f"job status {status}:\n{details}"
    record_timing(kind="k8s-job", create_to_succeeded_s=round(seconds, 2))
    print(f"[k8s-pods] Job create -> succeeded: {seconds:.2f}s")
    # The log comes through the API server from the kubelet (its client certificate, webhook authz).
    log = core.read_namespaced_pod_log(pods[0].metadata.name, namespace)
    assert log.splitlines() == ["hello-from-job", "0"]


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    token: ClassVar[str] = ""
    clients: ClassVar[list] = []

    def do_GET(self):
        body = self.token.encode()
        self.clients.append(self.client_address[0])
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(address: str, token: str):
    handler = type("Handler", (_TokenHandler,), {"token": token, "clients": []})
    server = http.server.ThreadingHTTPServer((address, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler


def test_pod_reaches_tcp_services_on_the_host(k8s_node_testbed, core, namespace):
    node_ip = k8s_node_testbed.node_ip
    any_token, node_token = secrets.token_hex(8), secrets.token_hex(8)
    # Like Redis or a git http server in the lab: one on every address, one on the node IP only.
    any_server, any_handler = serve("0.0.0.0", any_token)
    node_server, node_handler = serve(node_ip, node_token)
    try:
        # busybox nc, not wget: the static busybox's wget segfaults in a bare image (static glibc).
        request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n'"
        script = (
            f"{request} | nc -w 10 {node_ip} {any_server.server_address[1]} && echo && "
            f"{request} | nc -w 10 {node_ip} {node_server.server_address[1]} && echo"
        )
        phase, log, _ = run_pod(core, namespace, busybox_pod("reach-host", k8s_node_testbed.busybox_image, script))
    finally:
        any_server.shutdown()
        node_server.shutdown()
    assert phase == "Succeeded", f"{log}\n{describe(core, namespace, 'reach-host')}"
    lines = [line.strip() for line in log.splitlines()]
    assert any_token in lines and node_token in lines, log
    # The connections came from the pod's address on the bridge (no NAT towards the host).
    pod_ip = core.read_namespaced_pod("reach-host", namespace).status.pod_ip
    assert pod_ip.startswith("10.244.77."), pod_ip
    assert any_handler.clients == [pod_ip] and node_handler.clients == [pod_ip]


def test_privileged_container_runs(k8s_node_testbed, core, namespace):
    # CAP_SYS_ADMIN (bit 21) is in a privileged container's effective set, and mount works.
    script = (
        "grep CapEff /proc/self/status; mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && echo mounted; ls /dev | wc -l"
    )
    phase, log, _ = run_pod(
        core, namespace, busybox_pod("privileged", k8s_node_testbed.busybox_image, script, privileged=True)
    )
    assert phase == "Succeeded", f"{log}\n{describe(core, namespace, 'privileged')}"
    lines = log.split("\n")
    cap_eff = int(lines[0].split()[1], 16)
    assert cap_eff & (1 << 21), log
    assert lines[1] == "mounted", log
    # The host's devices are visible to a privileged container (a plain one sees a handful).
    assert int(lines[2]) > 20, log

    # The same without privileged: no CAP_SYS_ADMIN, mount refused.
    phase, log, _ = run_pod(core, namespace, busybox_pod("unprivileged", k8s_node_testbed.busybox_image, script))
    cap_eff = int(log.split("\n")[0].split()[1], 16)
    assert not cap_eff & (1 << 21), log
    assert "mounted" not in log


def test_an_image_made_here_is_imported_and_runs(k8s_node_testbed, core, namespace, tmp_path):
    token = secrets.token_hex(8)
    tar = tmp_path / "image.tar"
    image = f"raibid-testbed.local/imported:{token}"
    try:
        busybox_image(tar, image, tmp_path, files={"message": token + "\n"}, cmd=["cat", "/message"])
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
    assert k8s_node_testbed.import_image(tar) == [image]
    pod = k8s_client.V1Pod(
        metadata=k8s_client.V1ObjectMeta(name="imported"),
        spec=k8s_client.V1PodSpec(
            restart_policy="Never",
            containers=[k8s_client.V1Container(name="main", image=image, image_pull_policy="Never")],
        ),
    )
    phase, log, _ = run_pod(core, namespace, pod)
    assert phase == "Succeeded", f"{log}\n{describe(core, namespace, 'imported')}"
    assert log.strip() == token
