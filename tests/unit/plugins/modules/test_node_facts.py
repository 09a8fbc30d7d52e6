"""Unit tests for the node_facts module glue (argument handling, result shape)."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.raibid.dgx_spark.plugins.modules import node_facts


def run_module(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        node_facts.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_reports_facts_unchanged_in_check_mode(capsys, tmp_path):
    code, result = run_module(capsys, {"disk_path": str(tmp_path / "missing" / "docker"), "_ansible_check_mode": True})
    assert code == 0
    assert result["changed"] is False
    node = result["ansible_facts"]["dgx_spark_node"]
    assert node["architecture"] in ("x86_64", "aarch64")
    assert node["disk"]["measured_at"] == str(tmp_path)
    assert set(node) >= {"os", "gpu", "memory_mb", "is_dgx_spark", "is_dgx_os", "packages"}


def test_rejects_non_executable_nvidia_smi(capsys, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o644)
    code, result = run_module(capsys, {"nvidia_smi_path": str(fake)})
    assert code == 1
    assert result["failed"] is True
    assert "nvidia_smi_path" in result["msg"]


def test_uses_given_nvidia_smi(capsys, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho '0, NVIDIA GB10, GPU-abc, 580.95.05'\n")
    fake.chmod(0o755)
    code, result = run_module(capsys, {"nvidia_smi_path": str(fake)})
    assert code == 0
    gpu = result["ansible_facts"]["dgx_spark_node"]["gpu"]
    assert gpu["present"] is True
    assert gpu["devices"][0]["name"] == "NVIDIA GB10"
