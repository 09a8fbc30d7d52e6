"""Unit tests for plugins/module_utils/node_health.py: the judgments as pure functions, the probes against
the stand-ins of fakes/ (an Engine API on a unix socket, registries over HTTP and TLS, nvidia-smi, kubectl,
docker buildx) and certificates the host's openssl makes."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
from typing import Dict, List, Tuple

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils import node_health as nh
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.fakes import (
    certs,
    docker_api,
    docker_buildx,
    kubectl,
    nvidia_smi,
    stand_in,
)
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.fakes.docker_api import INFO_DGX, VERSION_DGX

GB10 = "0, NVIDIA GB10, GPU-5d3f0c1e-1111-2222-3333-444455556666, 580.95.05\n"
# `GET /info` of Debian 12's docker.io 20.10 (the classic image store; DriverStatus null), trimmed.
INFO_CLASSIC = {
    "Driver": "overlay2",
    "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
    "LiveRestoreEnabled": False,
    "Runtimes": {"io.containerd.runc.v2": {"path": "runc"}, "runc": {"path": "runc"}},
    "DefaultRuntime": "runc",
    "ServerVersion": "20.10.24+dfsg1",
    "DockerRootDir": "/var/lib/docker",
}
MEMINFO = "MemTotal:       127535132 kB\nMemFree:         1000000 kB\nMemAvailable:   100000000 kB\n"


def subprocess_runner(argv: List[str], env: Dict[str, str]) -> Tuple[int, str, str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env={"LC_ALL": "C", **env})
    return proc.returncode, proc.stdout, proc.stderr


def io(meminfo: str = MEMINFO) -> nh.NodeIO:
    return nh.NodeIO(run=subprocess_runner, read_meminfo=lambda: meminfo)


# --- thresholds ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [(50, "ok"), (15, "ok"), (14.9, "warn"), (5, "warn"), (4.99, "fail"), (0, "fail")]
)
def test_below_classifies_against_warn_then_fail(value, expected):
    assert nh.below(value, 15, 5) == expected


def test_worst_orders_ok_warn_fail():
    assert nh.worst("ok", "warn") == "warn" and nh.worst("fail", "ok", "warn") == "fail" and nh.worst("ok") == "ok"


# --- argument validation --------------------------------------------------------------------------------


def test_defaults_and_a_full_valid_set_have_no_problems():
    assert nh.problems({}) == []
    assert (
        nh.problems(
            {
                "registries": [
                    {"name": "local", "url": "https://127.0.0.1:5000", "ca_path": "/etc/ca.pem"},
                    {"name": "docker.io", "url": "http://[::1]:5001/"},
                ],
                "certificates": [{"name": "tls", "path": "/etc/tls.crt"}],
                "disk_warn_free_percent": 15,
                "disk_fail_free_percent": 15,
                "kubernetes_node": "spark-1",
                "kubeconfig": "/etc/rancher/k3s/k3s.yaml",
                "disk_paths": ["/var/lib/docker"],
            }
        )
        == []
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"registries": [{"name": "local", "url": "127.0.0.1:5000"}]},
            "registries[0].url: '127.0.0.1:5000' needs the scheme http:// or https://, e.g. https://127.0.0.1:5000",
        ),
        ({"registries": [{"name": "l", "url": "ftp://h:1"}]}, "registries[0].url: 'ftp://h:1' needs the scheme"),
        ({"registries": [{"name": "l", "url": "http://h:99999"}]}, "registries[0].url: 'http://h:99999' is not a URL"),
        ({"registries": [{"name": "l", "url": "https://h:5000/v2/"}]}, "must be the registry's root"),
        (
            {"registries": [{"name": "l", "url": "http://h:1"}, {"name": "l", "url": "http://h:2"}]},
            "registries[1].name: 'l' is also registries[0].name; names must be unique",
        ),
        (
            {"registries": [{"name": "l", "url": "http://h:1", "ca_path": "/ca.pem"}]},
            "registries[0].ca_path is set but url 'http://h:1' is not https://",
        ),
        (
            {"disk_warn_free_percent": 5, "disk_fail_free_percent": 10},
            "disk_warn_free_percent (5) must be at least disk_fail_free_percent (10)",
        ),
        ({"disk_warn_free_percent": 150}, "disk_warn_free_percent: 150 must be at most 100"),
        ({"memory_fail_available_mb": -1}, "memory_fail_available_mb: -1 must not be negative"),
        ({"cert_warn_days": 3, "cert_fail_days": 7}, "cert_warn_days (3) must be at least cert_fail_days (7)"),
        ({"timeout": 0}, "timeout: 0 must be a positive number of seconds"),
        ({"command_timeout": -5}, "command_timeout: -5 must be a positive number of seconds"),
        ({"docker_host": "tcp://10.0.0.2:2376"}, "docker_host: 'tcp://10.0.0.2:2376' must be a unix socket URL"),
        ({"disk_paths": ["var/lib/docker"]}, "disk_paths: 'var/lib/docker' must be an absolute path"),
        ({"disk_paths": ["/a", "/a"]}, "disk_paths: /a listed more than once"),
        (
            {"certificates": [{"name": "c", "path": "/a"}, {"name": "c", "path": "/b"}]},
            "certificates[1].name: 'c' is also certificates[0].name",
        ),
        ({"kubeconfig": "/k.yaml"}, "kubeconfig is set but kubernetes_node is not"),
    ],
)
def test_problems_name_the_option_the_rule_and_the_value(params, message):
    found = nh.problems(params)
    assert len(found) == 1 and message in found[0], found


# --- engine -----------------------------------------------------------------------------------------------


def test_engine_check_on_dgx_os_reads_the_containerd_store_and_the_runtimes():
    check = nh.engine_check(INFO_DGX, VERSION_DGX, expect_live_restore=True, gpu_count=1)
    assert (check.name, check.status, check.message) == ("engine", "ok", "")
    assert check.value == {
        "version": "29.0.1",
        "api_version": "1.52",
        "storage_driver": "overlayfs",
        "image_store": "containerd",
        "live_restore": True,
        "runtimes": ["io.containerd.runc.v2", "nvidia", "runc"],
        "default_runtime": "runc",
        "docker_root_dir": "/var/lib/docker",
    }


def test_engine_check_classic_store_without_live_restore_warns_naming_the_option():
    check = nh.engine_check(INFO_CLASSIC, {"Version": "20.10.24+dfsg1", "ApiVersion": "1.41"}, True, gpu_count=None)
    assert check.status == "warn" and "expect_live_restore" in check.message
    assert check.value["image_store"] == "classic" and check.value["storage_driver"] == "overlay2"
    assert nh.engine_check(INFO_CLASSIC, {}, expect_live_restore=False).status == "ok"


def test_engine_check_fails_when_a_gpu_is_present_and_the_nvidia_runtime_is_not():
    check = nh.engine_check(INFO_CLASSIC, {}, expect_live_restore=True, gpu_count=1)
    assert check.status == "fail"
    assert check.message.startswith("nvidia-smi lists 1 GPU(s) but the engine has no nvidia runtime (runtimes: ")
    assert "expect_live_restore" in check.message
    # No GPU, or nvidia-smi could not tell: the runtime is not required.
    assert nh.engine_check(INFO_CLASSIC, {}, False, gpu_count=0).status == "ok"
    assert nh.engine_check(INFO_CLASSIC, {}, False, gpu_count=None).status == "ok"


def test_image_store_reads_driver_status_pairs():
    assert nh.image_store({"DriverStatus": None}) == "classic"
    assert nh.image_store({"DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]}) == "containerd"


def test_probe_engine_against_the_engine_api_stand_in(tmp_path):
    sock = str(tmp_path / "docker.sock")
    with docker_api.EngineAPI(sock) as engine:
        info, version, error = nh.probe_engine(nh.Settings(docker_host="unix://" + sock))
    assert (info, version, error) == (INFO_DGX, VERSION_DGX, "")
    assert engine.requests == [("GET", "/info"), ("GET", "/version")] and engine.violations == []


def test_probe_engine_no_socket_and_a_hanging_engine_fail_within_the_timeout(tmp_path):
    missing = nh.probe_engine(nh.Settings(docker_host=f"unix://{tmp_path}/none.sock"))
    assert missing[:2] == (None, None) and "No such file or directory" in missing[2]
    sock = str(tmp_path / "docker.sock")
    with docker_api.EngineAPI(sock, delay=3) as engine:
        started = time.monotonic()
        info, _version, error = nh.probe_engine(nh.Settings(docker_host="unix://" + sock, timeout=0.3))
        elapsed = time.monotonic() - started
        engine.delay = 0
    assert info is None and "timed out" in error and elapsed < 1.5


def test_image_check_maps_the_engine_answer(tmp_path):
    sock = str(tmp_path / "docker.sock")
    image = {"Id": "sha256:" + "a" * 64, "RepoDigests": ["reg/agent@sha256:" + "b" * 64], "Architecture": "arm64"}
    settings = nh.Settings(docker_host="unix://" + sock)
    with docker_api.EngineAPI(sock, images={"127.0.0.1:5000/raibid-ci-agent:1.4.0": image}) as engine:
        found = nh.probe_image(settings, "127.0.0.1:5000/raibid-ci-agent:1.4.0")
        absent = nh.probe_image(settings, "127.0.0.1:5000/raibid-ci-agent:9")
    assert found.status == "ok" and found.value["id"] == image["Id"]
    assert found.value["repo_digests"] == image["RepoDigests"]
    assert absent.status == "fail"
    assert absent.message == "agent_image 127.0.0.1:5000/raibid-ci-agent:9 is not in the engine's image store"
    assert engine.violations == []
    assert nh.image_check("x", 500, {"message": "boom"}).message == "agent_image x: GET /images answered 500: boom"


# --- registries -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "expected"), [(200, "ok"), (401, "ok"), (404, "fail"), (503, "fail")])
def test_registry_status_mapping(status, expected):
    check = nh.registry_check("local", "http://127.0.0.1:5000", status)
    assert (check.name, check.status, check.value["status"]) == ("registry:local", expected, status)
    if expected == "fail":
        assert check.message == f"GET http://127.0.0.1:5000/v2/ answered {status} (expected 200 or 401)"


def test_registry_without_answer_fails_with_url_and_error():
    check = nh.registry_check("docker.io", "http://127.0.0.1:5001/", None, "[Errno 111] Connection refused")
    assert check.status == "fail" and check.message == "GET http://127.0.0.1:5001/v2/: [Errno 111] Connection refused"


def test_probe_registry_http_and_refused():
    with docker_api.Registry(401) as registry:
        assert nh.probe_registry(registry.url, None, 2) == (401, "")
        url = registry.url
    assert registry.requests == [("GET", "/v2/")] and registry.violations == []
    status, error = nh.probe_registry(url, None, 2)
    assert status is None and "Connection refused" in error


def test_probe_registry_tls_verifies_with_ca_path(tmp_path):
    ca, cert, key = certs.server_for_localhost(tmp_path)
    with docker_api.Registry(200, certfile=str(cert), keyfile=str(key)) as registry:
        assert nh.probe_registry(registry.url, str(ca), 2) == (200, "")
        status, error = nh.probe_registry(registry.url, None, 2)
        missing_ca = nh.probe_registry(registry.url, str(tmp_path / "none.pem"), 2)
    assert status is None and "CERTIFICATE_VERIFY_FAILED" in error
    assert missing_ca[0] is None and missing_ca[1].startswith(f"ca_path {tmp_path}/none.pem: ")


def test_probe_registry_gives_up_within_the_timeout():
    # A listening socket that never answers: connect succeeds, the GET waits out the budget.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        started = time.monotonic()
        status, error = nh.probe_registry(f"http://127.0.0.1:{server.getsockname()[1]}", None, 0.3)
        assert status is None and "timed out" in error and time.monotonic() - started < 1.5
    finally:
        server.close()


# --- builder ---------------------------------------------------------------------------------------------


def buildx(tmp_path, **builders):
    log = tmp_path / "docker.log"
    docker = stand_in.install(
        tmp_path / "docker", "docker_buildx", log=str(log), flags=docker_buildx.real_flags(), builders=builders
    )
    return docker, log


def test_builder_check_from_the_stand_in_buildx(tmp_path):
    docker, log = buildx(
        tmp_path,
        raibid={"driver": "docker-container", "nodes": [{"name": "raibid0", "status": "running"}]},
        broken={"driver": "remote", "nodes": [{"name": "broken0", "error": "connection refused"}]},
    )
    settings = nh.Settings(docker_cli=str(docker), buildkit_builder="raibid", cache_export="registry")
    check = nh._builder(settings, io())
    assert check.status == "ok" and check.message == ""
    assert check.value == {
        "name": "raibid",
        "driver": "docker-container",
        "status": "running",
        "cache_export": "registry",
    }
    settings.buildkit_builder = "broken"
    check = nh._builder(settings, io())
    assert check.status == "warn" and check.message == "buildkit_builder broken: connection refused"
    settings.buildkit_builder = "missing"
    check = nh._builder(settings, io())
    assert check.status == "fail"
    assert check.message == 'buildkit_builder missing: docker buildx inspect failed: ERROR: no builder "missing" found'
    assert stand_in.calls(log) == [["buildx", "inspect", n] for n in ("raibid", "broken", "missing")]


def test_builder_check_without_driver_fails():
    check = nh.builder_check("b", None, 0, "Name: b\n", "")
    assert check.status == "fail" and "reported no driver" in check.message


def test_stand_in_buildx_refuses_an_unknown_flag(tmp_path):
    docker, _log = buildx(tmp_path, default={"driver": "docker", "nodes": []})
    argv = [str(docker), "buildx", "inspect", "--bogus"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 125 and "unknown flag: --bogus" in proc.stderr


# --- disk, memory ------------------------------------------------------------------------------------------


def test_disk_check_thresholds_name_the_option():
    gib = 1024**3
    ok = nh.disk_check("/var/lib/docker", "/var/lib/docker", 50 * gib, 100 * gib, warn=15, fail=5)
    assert ok.status == "ok" and ok.value["free_percent"] == 50.0 and ok.value["free_gb"] == 50.0
    warn = nh.disk_check("/var/lib/docker", "/var/lib", 10 * gib, 100 * gib, warn=15, fail=5)
    assert warn.status == "warn"
    assert warn.message == "10% free (10 GiB) at /var/lib, below disk_warn_free_percent (15%)"
    fail = nh.disk_check("/var/lib/docker", "/var/lib", 4 * gib, 100 * gib, warn=15, fail=5)
    assert fail.status == "fail" and "disk_fail_free_percent (5%)" in fail.message


def test_disk_probe_measures_a_missing_path_at_its_parent(tmp_path):
    check = nh._disk(nh.Settings(disk_warn_free_percent=0, disk_fail_free_percent=0), io(), str(tmp_path / "x" / "y"))
    assert check.name == f"disk:{tmp_path}/x/y" and check.status == "ok"
    assert check.value["measured_at"] == str(tmp_path) and 0 < check.value["free_percent"] <= 100


def test_memory_check():
    assert nh.parse_mem_available_mb(MEMINFO) == 97656
    check = nh.memory_check(MEMINFO, 4096, 1024)
    assert check.status == "ok" and check.value == {"available_mb": 97656, "total_mb": 124546}
    low = nh.memory_check("MemTotal: 8000000 kB\nMemAvailable: 2048000 kB\n", 4096, 1024)
    assert low.status == "warn" and low.message == "2000 MiB available, below memory_warn_available_mb (4096 MiB)"
    assert nh.memory_check("MemTotal: 8000000 kB\nMemAvailable: 512000 kB\n", 4096, 1024).status == "fail"
    assert nh.memory_check("MemTotal: 8000000 kB\n", 4096, 1024).message == "no MemAvailable line in /proc/meminfo"


# --- GPU ----------------------------------------------------------------------------------------------------


def test_gpu_argv_is_accepted_by_nvidia_smi_and_asks_no_memory_field():
    fields = nvidia_smi.check_argv(nh.nvidia_smi_argv("nvidia-smi")[1:])
    assert fields == ["index", "name", "uuid", "driver_version"]
    assert not any(f.startswith("memory") for f in fields)


def test_gpu_check_cases():
    absent = nh.gpu_check(None, 0, "", "", expect_gpu=False)
    assert (absent.status, absent.value, absent.message) == ("ok", None, "no GPU: nvidia-smi not found")
    assert nh.gpu_check(None, 0, "", "", expect_gpu=True).status == "fail"
    gb10 = nh.gpu_check("/usr/bin/nvidia-smi", 0, GB10, "", expect_gpu=True)
    assert gb10.status == "ok" and gb10.value["count"] == 1 and gb10.value["devices"][0]["name"] == "NVIDIA GB10"
    none = nh.gpu_check("/usr/bin/nvidia-smi", 6, "No devices were found\n", "", expect_gpu=False)
    assert none.status == "ok" and none.value == {"count": 0, "devices": []}
    assert nh.gpu_check("/usr/bin/nvidia-smi", 6, "No devices were found\n", "", expect_gpu=True).status == "fail"
    broken = nh.gpu_check("/usr/bin/nvidia-smi", 9, "NVIDIA-SMI has failed because it couldn't communicate", "", False)
    assert broken.status == "fail" and broken.message.startswith("/usr/bin/nvidia-smi exited 9: NVIDIA-SMI has failed")


def test_gpu_probe_through_the_stand_in(tmp_path):
    log = tmp_path / "smi.log"
    smi = stand_in.install(tmp_path / "nvidia-smi", "nvidia_smi", log=str(log), output=GB10)
    check = nh._gpu(nh.Settings(nvidia_smi=str(smi)), io())
    assert check.status == "ok" and check.value["count"] == 1
    assert stand_in.calls(log) == [["--query-gpu=index,name,uuid,driver_version", "--format=csv,noheader"]]


# --- certificates -------------------------------------------------------------------------------------------


def test_parse_enddate_of_a_real_certificate(tmp_path):
    cert, _key = certs.self_signed(tmp_path, "tls", days=45)
    rc, out, err = subprocess_runner(nh.openssl_enddate_argv(certs.openssl(), str(cert)), {})
    assert rc == 0 and out.startswith("notAfter="), err
    not_after = nh.parse_enddate(out)
    assert not_after is not None and abs(not_after - (time.time() + 45 * 86400)) < 120
    assert nh.parse_enddate("notBefore=Jun  1 12:00:00 2026 GMT\n") is None
    assert nh.parse_enddate("notAfter=garbage\n") is None


# A `days`-day certificate read a minute later has days-1 whole days left: 31 -> 30 (not below 30), 8 -> 7.
@pytest.mark.parametrize(
    ("days", "status"), [(90, "ok"), (31, "ok"), (30, "warn"), (8, "warn"), (7, "fail"), (3, "fail")]
)
def test_cert_days_thresholds_with_real_certificates(tmp_path, days, status):
    cert, _key = certs.self_signed(tmp_path, "tls", days=days)
    settings = nh.Settings(openssl=certs.openssl(), cert_warn_days=30, cert_fail_days=7)
    later = nh.NodeIO(run=subprocess_runner, read_meminfo=lambda: "", now=lambda: time.time() + 60)
    check = nh._cert(settings, later, {"name": "tls", "path": str(cert)})
    assert check.name == "cert:tls" and check.status == status, check.message
    assert check.value["days_left"] == days - 1 and check.value["path"] == str(cert)
    if check.status == "warn":
        assert f"expires in {days - 1} days" in check.message and "below cert_warn_days (30)" in check.message
    if check.status == "fail":
        assert "below cert_fail_days (7)" in check.message


def test_expired_and_unreadable_certificates_fail(tmp_path):
    cert, _key = certs.self_signed(tmp_path, "old", days=1)
    settings = nh.Settings(openssl=certs.openssl())
    two_days_on = nh.NodeIO(run=subprocess_runner, read_meminfo=lambda: "", now=lambda: time.time() + 2 * 86400)
    expired = nh._cert(settings, two_days_on, {"name": "old", "path": str(cert)})
    assert expired.status == "fail" and expired.message.startswith(f"{cert} expired on ")
    missing = nh._cert(settings, io(), {"name": "gone", "path": str(tmp_path / "gone.crt")})
    assert missing.status == "fail" and missing.message.startswith(f"{tmp_path}/gone.crt: openssl exited 1: ")
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate\n")
    assert nh._cert(settings, io(), {"name": "g", "path": str(garbage)}).status == "fail"
    no_openssl = nh._cert(nh.Settings(openssl=None), io(), {"name": "c", "path": str(cert)})
    assert no_openssl.status == "fail" and "set openssl_path" in no_openssl.message


# --- Kubernetes node ----------------------------------------------------------------------------------------


def test_kubectl_argv_is_accepted_by_the_stand_in(tmp_path):
    kubeconfig = tmp_path / "k3s.yaml"
    kubeconfig.write_text("apiVersion: v1\n")
    argv = nh.kubectl_argv("kubectl", "spark-1", str(kubeconfig), 2.0)
    assert argv[1:] == ["get", "node", "spark-1", "--output=json", "--request-timeout=2s", f"--kubeconfig={kubeconfig}"]
    assert kubectl.check_argv(argv[1:])["name"] == "spark-1"


@pytest.mark.parametrize(
    ("node", "status", "message"),
    [
        (kubectl.node("spark-1"), "ok", ""),
        (
            kubectl.node("spark-1", unschedulable=True),
            "warn",
            "kubernetes_node spark-1 is cordoned (spec.unschedulable)",
        ),
        (
            kubectl.node("spark-1", ready="False", reason="KubeletNotReady"),
            "fail",
            "kubernetes_node spark-1 is not Ready (Ready=False): KubeletNotReady kubelet is posting ready status",
        ),
        (
            kubectl.node("spark-1", ready="Unknown", unschedulable=True, reason="NodeStatusUnknown"),
            "fail",
            "kubernetes_node spark-1 is not Ready (Ready=Unknown): NodeStatusUnknown kubelet is posting ready status",
        ),
    ],
)
def test_kubernetes_node_check_from_kubectl_json(node, status, message):
    check = nh.kubernetes_node_check("spark-1", 0, json.dumps(node), "")
    assert (check.status, check.message) == (status, message)
    assert check.value["kubelet_version"] == "v1.32.4+k3s1"


def test_kubernetes_node_not_found_or_garbled_fails():
    gone = nh.kubernetes_node_check("spark-9", 1, "", 'Error from server (NotFound): nodes "spark-9" not found\n')
    assert gone.status == "fail"
    assert gone.message == 'kubernetes_node spark-9: Error from server (NotFound): nodes "spark-9" not found'
    assert (
        nh.kubernetes_node_check("x", 0, "<html>", "").message == "kubernetes_node x: kubectl printed no JSON: <html>"
    )
    no_ready = nh.kubernetes_node_check("x", 0, json.dumps({"status": {"conditions": []}}), "")
    assert no_ready.status == "fail" and "Ready=None" in no_ready.message


def test_stand_in_kubectl_refuses_what_kubectl_refuses(tmp_path):
    fake = stand_in.install(tmp_path / "kubectl", "kubectl", nodes={})
    for argv, rc, message in [
        (["get", "node", "x", "-o", "json", "--bogus"], 1, "error: unknown flag: --bogus"),
        (["get", "node", "x", "-o", "json", "--request-timeout=abc"], 1, "Invalid timeout value"),
        (["get", "node", "x", "-o", "json", "--kubeconfig=/nonexistent"], 1, "stat /nonexistent: no such file"),
        (["get", "node", "x", "-o", "json"], 1, 'Error from server (NotFound): nodes "x" not found'),
        (["get", "pods", "-o", "json"], 2, "only `get node NAME` is simulated"),
    ]:
        proc = subprocess.run([str(fake), *argv], capture_output=True, text=True, check=False)
        assert proc.returncode == rc and message in proc.stderr, (argv, proc.stderr)


# --- running them all ------------------------------------------------------------------------------------


def test_run_checks_runs_concurrently_in_report_order_and_a_crashing_probe_fails_only_its_check():
    def slow(name):
        def probe():
            time.sleep(0.3)
            return nh.Check(name, "ok")

        return probe

    def crash():
        raise RuntimeError("boom")

    started = time.monotonic()
    checks = nh.run_checks([("a", slow("a")), ("b", slow("b")), ("c", crash), ("d", slow("d"))])
    assert time.monotonic() - started < 0.8
    assert [c.name for c in checks] == ["a", "b", "c", "d"]
    assert checks[2].status == "fail" and checks[2].message == "probe error: RuntimeError: boom"
    assert all(c.elapsed_ms >= 250 for c in checks if c.name != "c")


def test_summarize():
    result = nh.summarize([nh.Check("a", "ok"), nh.Check("b", "warn"), nh.Check("c", "fail")], 12)
    assert result["summary"] == {"ok": 1, "warn": 1, "fail": 1}
    assert (result["failed_checks"], result["warning_checks"], result["healthy"]) == (["c"], ["b"], False)
    assert result["msg"] == "unhealthy: c failed (1 ok, 1 warn, 1 fail in 12 ms); warnings: b"
    assert nh.summarize([nh.Check("a", "ok")], 3)["msg"] == "healthy (1 ok, 0 warn, 0 fail in 3 ms)"


def test_node_health_applies_the_gpu_rule_to_the_engine(tmp_path):
    sock = str(tmp_path / "docker.sock")
    smi = stand_in.install(tmp_path / "nvidia-smi", "nvidia_smi", output=GB10)
    settings = nh.Settings(docker_host="unix://" + sock, nvidia_smi=str(smi), disk_paths=[str(tmp_path)])
    settings.disk_warn_free_percent = settings.disk_fail_free_percent = 0
    with docker_api.EngineAPI(sock, info=INFO_CLASSIC):
        result = nh.node_health(settings, io())
    assert [c["name"] for c in result["checks"]] == ["engine", f"disk:{tmp_path}", "memory", "gpu"]
    engine = result["checks"][0]
    assert engine["status"] == "fail" and "no nvidia runtime" in engine["message"] and engine["elapsed_ms"] >= 0
    assert result["failed_checks"] == ["engine"] and result["healthy"] is False


def test_ssl_cert_time_format_is_what_openssl_prints():
    """parse_enddate leans on ssl.cert_time_to_seconds taking openssl's C-locale notAfter."""
    assert ssl.cert_time_to_seconds("Jan  5 09:34:43 2018 GMT") == 1515144883
