"""Unit tests for the node_facts module glue (argument handling, result shape), with the stand-in
nvidia-smi of fakes/nvidia_smi.py (it refuses a query the real one would refuse)."""

from __future__ import annotations

import functools
import subprocess

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils import node_facts as nf
from ansible_collections.raibid.dgx_spark.plugins.modules import node_facts
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.fakes import stand_in

GB10 = "0, NVIDIA GB10, GPU-abc, 580.95.05\n"


@pytest.fixture
def run(run_module):
    return functools.partial(run_module, node_facts)


def test_reports_facts_unchanged_in_check_mode(run, tmp_path):
    code, result = run({"disk_path": str(tmp_path / "missing" / "docker"), "_ansible_check_mode": True})
    assert code == 0
    assert result["changed"] is False
    node = result["ansible_facts"]["dgx_spark_node"]
    assert node["architecture"] in ("x86_64", "aarch64")
    assert node["disk"]["measured_at"] == str(tmp_path)
    assert set(node) >= {"os", "gpu", "memory_mb", "is_dgx_spark", "is_dgx_os", "packages"}


def test_rejects_non_executable_nvidia_smi(run, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o644)
    code, result = run({"nvidia_smi_path": str(fake)})
    assert code == 1
    assert result["failed"] is True
    assert "nvidia_smi_path" in result["msg"]


def test_uses_given_nvidia_smi(run, tmp_path):
    log = tmp_path / "smi.log"
    fake = stand_in.install(tmp_path / "nvidia-smi", "nvidia_smi", log=str(log), output=GB10)
    code, result = run({"nvidia_smi_path": str(fake)})
    assert code == 0
    gpu = result["ansible_facts"]["dgx_spark_node"]["gpu"]
    assert gpu["present"] is True and gpu["probe"] == "ok"
    assert gpu["devices"][0]["name"] == "NVIDIA GB10"
    assert stand_in.calls(log) == [["--query-gpu=index,name,uuid,driver_version", "--format=csv,noheader"]]


def test_a_query_nvidia_smi_refuses_is_reported_not_a_gpu(run, tmp_path, monkeypatch):
    """The check reaches the module: a field nvidia-smi does not know leaves the GPU absent, with its message."""
    monkeypatch.setattr(nf, "NVIDIA_SMI_FIELDS", ("index", "name", "gpu_memory"))
    fake = stand_in.install(tmp_path / "nvidia-smi", "nvidia_smi", output=GB10)
    code, result = run({"nvidia_smi_path": str(fake)})
    gpu = result["ansible_facts"]["dgx_spark_node"]["gpu"]
    assert code == 0 and gpu["present"] is False
    assert (
        gpu["probe"] == 'nvidia-smi exited 2: nvidia-smi (stand-in): Field "gpu_memory" is not a valid field to query.'
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--query-gpu=index,name"], "--format is required"),
        (["--query-gpu=index", "--format=json"], "csv is mandatory"),
        (["--query-gpu=index,memory", "--format=csv"], 'Field "memory" is not a valid field'),
        (["--query-gpus=index", "--format=csv"], "unknown flag: --query-gpus"),
        (["--query-gpu", "--format=csv"], "flag needs an argument: --query-gpu"),
        (["-L"], "unknown flag: -L"),
    ],
)
def test_stand_in_refuses_what_the_real_nvidia_smi_refuses(tmp_path, argv, message):
    fake = stand_in.install(tmp_path / "nvidia-smi", "nvidia_smi", output=GB10)
    proc = subprocess.run([str(fake), *argv], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and message in proc.stderr and proc.stdout == "", proc.stderr
