"""Unit tests for the node_health module glue: arguments, validation before any probe, the result's shape,
with the stand-ins of fakes/ (an Engine API on a unix socket, registries, docker buildx, nvidia-smi, kubectl)
and certificates made by the host's openssl."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest

from ansible_collections.raibid.dgx_spark.plugins.modules import node_health
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.fakes import (
    certs,
    docker_api,
    docker_buildx,
    kubectl,
    stand_in,
)

GB10 = "0, NVIDIA GB10, GPU-5d3f0c1e-1111-2222-3333-444455556666, 580.95.05\n"
AGENT = "127.0.0.1:5000/raibid-ci-agent:1.4.0"
AGENT_IMAGE = {"Id": "sha256:" + "a" * 64, "RepoDigests": ["127.0.0.1:5000/raibid-ci-agent@sha256:" + "b" * 64]}


@pytest.fixture
def run(run_module):
    return functools.partial(run_module, node_health)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Tuple[Dict[str, Any], Dict[str, Any]]]:
    """``(args, handles)``: module arguments for a healthy node made of stand-ins, and the stand-ins."""
    sock = str(tmp_path / "docker.sock")
    engine = docker_api.EngineAPI(sock, images={AGENT: AGENT_IMAGE})
    local, proxy = docker_api.Registry(200), docker_api.Registry(401)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    logs = {name: tmp_path / f"{name}.log" for name in ("docker", "nvidia-smi", "kubectl")}
    docker = stand_in.install(
        bin_dir / "docker",
        "docker_buildx",
        log=str(logs["docker"]),
        env_log=str(tmp_path / "docker-host.log"),
        flags=docker_buildx.real_flags(),
        builders={"raibid": {"driver": "docker-container", "nodes": [{"name": "raibid0", "status": "running"}]}},
    )
    smi = stand_in.install(bin_dir / "nvidia-smi", "nvidia_smi", log=str(logs["nvidia-smi"]), output=GB10)
    kubeconfig = tmp_path / "k3s.yaml"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    kube = stand_in.install(
        bin_dir / "kubectl", "kubectl", log=str(logs["kubectl"]), nodes={"spark-1": kubectl.node("spark-1")}
    )
    cert, _key = certs.self_signed(tmp_path, "registry-tls", days=365)
    args = {
        "docker_host": "unix://" + sock,
        "docker_cli": str(docker),
        "nvidia_smi_path": str(smi),
        "kubectl_path": str(kube),
        "openssl_path": certs.openssl(),
        "registries": [{"name": "local", "url": local.url}, {"name": "docker.io", "url": proxy.url + "/"}],
        "buildkit_builder": "raibid",
        "cache_export": "registry",
        "disk_paths": [str(tmp_path / "docker"), str(tmp_path)],
        "disk_warn_free_percent": 0,
        "disk_fail_free_percent": 0,
        "memory_warn_available_mb": 0,
        "memory_fail_available_mb": 0,
        "certificates": [{"name": "registry-tls", "path": str(cert)}],
        "agent_image": AGENT,
        "kubernetes_node": "spark-1",
        "kubeconfig": str(kubeconfig),
        "expect_gpu": True,
    }
    handles = {"engine": engine, "registries": [local, proxy], "logs": logs, "tmp": tmp_path}
    yield args, handles
    for service in (engine, local, proxy):
        service.close()


def statuses(result: Dict[str, Any]) -> Dict[str, str]:
    return {check["name"]: check["status"] for check in result["checks"]}


def test_a_healthy_node_reports_every_check_ok_in_order_unchanged_in_check_mode(run, node):
    args, handles = node
    code, result = run({**args, "_ansible_check_mode": True})
    assert code == 0, result.get("msg")
    tmp = handles["tmp"]
    assert [c["name"] for c in result["checks"]] == [
        "engine",
        "registry:local",
        "registry:docker.io",
        "builder",
        f"disk:{tmp}/docker",
        f"disk:{tmp}",
        "memory",
        "gpu",
        "cert:registry-tls",
        "agent_image",
        "kubernetes_node",
    ]
    assert set(statuses(result).values()) == {"ok"}, json.dumps(result["checks"], indent=1)
    assert result["changed"] is False and result["healthy"] is True
    assert result["summary"] == {"ok": 11, "warn": 0, "fail": 0}
    assert result["failed_checks"] == [] and result["warning_checks"] == []
    assert result["msg"].startswith("healthy (11 ok, 0 warn, 0 fail in ")
    assert isinstance(result["elapsed_ms"], int) and all(isinstance(c["elapsed_ms"], int) for c in result["checks"])
    by_name = {c["name"]: c for c in result["checks"]}
    assert by_name["engine"]["value"]["image_store"] == "containerd"
    assert by_name["engine"]["value"]["storage_driver"] == "overlayfs"
    assert by_name["builder"]["value"]["cache_export"] == "registry"
    assert by_name["disk:" + str(tmp) + "/docker"]["value"]["measured_at"] == str(tmp)
    assert by_name["cert:registry-tls"]["value"]["days_left"] in (364, 365)
    assert by_name["agent_image"]["value"]["id"] == AGENT_IMAGE["Id"]
    assert by_name["gpu"]["value"]["devices"][0]["name"] == "NVIDIA GB10"
    # What each tool and service was asked, checked against its real flags by the stand-ins.
    engine = handles["engine"]
    assert engine.violations == [] and set(engine.requests) == {
        ("GET", "/info"),
        ("GET", "/version"),
        ("GET", f"/images/{AGENT}/json"),
    }
    assert [r.requests for r in handles["registries"]] == [[("GET", "/v2/")], [("GET", "/v2/")]]
    logs = handles["logs"]
    assert stand_in.calls(logs["docker"]) == [["buildx", "inspect", "raibid"]]
    assert (tmp / "docker-host.log").read_text() == args["docker_host"] + "\n"
    assert stand_in.calls(logs["nvidia-smi"]) == [
        ["--query-gpu=index,name,uuid,driver_version", "--format=csv,noheader"]
    ]
    assert stand_in.calls(logs["kubectl"]) == [
        ["get", "node", "spark-1", "--output=json", "--request-timeout=2s", f"--kubeconfig={args['kubeconfig']}"]
    ]


def test_failing_checks_never_fail_the_task(run, node, tmp_path):
    args, handles = node
    handles["engine"].info = dict(handles["engine"].info, LiveRestoreEnabled=False)
    handles["registries"][1].close()
    code, result = run(
        {
            **args,
            "agent_image": "127.0.0.1:5000/raibid-ci-agent:0.9",
            "kubernetes_node": "spark-2",
            "buildkit_builder": "gone",
            "memory_fail_available_mb": 10**9,
            "memory_warn_available_mb": 10**9,
            "disk_warn_free_percent": 100,
        }
    )
    assert code == 0 and result.get("failed") is not True
    assert statuses(result) == {
        "engine": "warn",
        "registry:local": "ok",
        "registry:docker.io": "fail",
        "builder": "fail",
        f"disk:{tmp_path}/docker": "warn",
        f"disk:{tmp_path}": "warn",
        "memory": "fail",
        "gpu": "ok",
        "cert:registry-tls": "ok",
        "agent_image": "fail",
        "kubernetes_node": "fail",
    }
    assert result["healthy"] is False
    assert result["failed_checks"] == ["registry:docker.io", "builder", "memory", "agent_image", "kubernetes_node"]
    assert result["summary"] == {"ok": 3, "warn": 3, "fail": 5}
    assert result["msg"].startswith(
        "unhealthy: registry:docker.io, builder, memory, agent_image, kubernetes_node failed (3 ok, 3 warn, 5 fail in "
    )
    messages = {c["name"]: c["message"] for c in result["checks"]}
    assert "below memory_fail_available_mb (1000000000 MiB)" in messages["memory"]
    assert "expect_live_restore" in messages["engine"]
    assert (
        messages["kubernetes_node"]
        == 'kubernetes_node spark-2: Error from server (NotFound): nodes "spark-2" not found'
    )


def test_an_engine_that_does_not_answer_fails_its_checks_only(run, node, tmp_path):
    args, _handles = node
    code, result = run({**args, "docker_host": f"unix://{tmp_path}/none.sock"})
    assert code == 0
    checks = {c["name"]: c for c in result["checks"]}
    assert checks["engine"]["status"] == "fail"
    assert checks["engine"]["message"].startswith(
        f"docker_host unix://{tmp_path}/none.sock: the engine does not answer: "
    )
    assert checks["agent_image"]["status"] == "fail" and result["failed_checks"] == ["engine", "agent_image"]


def test_a_gpu_node_whose_engine_lacks_the_nvidia_runtime_fails_the_engine(run, node):
    args, handles = node
    handles["engine"].info = dict(handles["engine"].info, Runtimes={"runc": {"path": "runc"}})
    code, result = run(args)
    engine = result["checks"][0]
    assert code == 0 and engine["status"] == "fail"
    assert engine["message"] == "nvidia-smi lists 1 GPU(s) but the engine has no nvidia runtime (runtimes: runc)"


def test_no_nvidia_smi_is_no_gpu_unless_a_gpu_is_expected(run, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    sock = str(tmp_path / "docker.sock")
    base = {"docker_host": "unix://" + sock, "disk_paths": [str(tmp_path)]}
    base.update(dict.fromkeys(["disk_warn_free_percent", "disk_fail_free_percent"], 0))
    base.update(dict.fromkeys(["memory_warn_available_mb", "memory_fail_available_mb"], 0))
    with docker_api.EngineAPI(sock, info=dict(docker_api.INFO_DGX, Runtimes={"runc": {}})):
        code, result = run(base)
        assert code == 0 and result["healthy"] is True, result["msg"]
        gpu = result["checks"][-1]
        assert (gpu["name"], gpu["status"], gpu["value"]) == ("gpu", "ok", None)
        code, result = run({**base, "expect_gpu": True})
    assert code == 0 and result["failed_checks"] == ["gpu"] and "expect_gpu is true" in result["checks"][-1]["message"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"registries": [{"name": "local", "url": "127.0.0.1:5000"}]},
            "registries[0].url: '127.0.0.1:5000' needs the scheme http:// or https://, e.g. https://127.0.0.1:5000",
        ),
        (
            {"disk_warn_free_percent": 5, "disk_fail_free_percent": 10},
            "disk_warn_free_percent (5.0) must be at least disk_fail_free_percent (10.0)",
        ),
        ({"cert_fail_days": -1}, "cert_fail_days: -1 must not be negative"),
        ({"timeout": 0}, "timeout: 0.0 must be a positive number of seconds"),
        ({"docker_host": "tcp://10.0.0.2:2376"}, "docker_host: 'tcp://10.0.0.2:2376' must be a unix socket URL"),
    ],
)
def test_bad_input_fails_before_any_probe(run, node, override, message):
    args, handles = node
    code, result = run({**args, **override})
    assert code == 1 and result["failed"] is True
    assert message in result["msg"] and result["problems"]
    assert handles["engine"].requests == [] and [r.requests for r in handles["registries"]] == [[], []]
    assert not handles["logs"]["kubectl"].exists() and not handles["logs"]["nvidia-smi"].exists()


def test_a_program_path_that_is_not_executable_is_bad_input(run, node, tmp_path):
    args, handles = node
    plain = tmp_path / "kubectl.txt"
    plain.write_text("#!/bin/sh\n")
    code, result = run({**args, "kubectl_path": str(plain)})
    assert code == 1 and result["msg"] == f"kubectl_path: {plain} is not an executable file"
    assert handles["engine"].requests == []


def test_a_registry_entry_without_url_is_refused_by_the_argument_spec(run, node):
    args, _handles = node
    code, result = run({**args, "registries": [{"name": "local"}]})
    assert code == 1 and "url" in result["msg"] and "registries" in result["msg"]


def test_a_cordoned_node_warns(run, node):
    args, _handles = node
    kube = stand_in.install(
        Path(args["kubectl_path"]), "kubectl", nodes={"spark-1": kubectl.node("spark-1", unschedulable=True)}
    )
    code, result = run({**args, "kubectl_path": str(kube)})
    assert code == 0 and result["healthy"] is True and result["warning_checks"] == ["kubernetes_node"]
