"""Unit tests for the nvidia_container_runtime module glue, with the stand-in nvidia-ctk of fakes/nvidia_ctk.py.

The stand-in refuses flags the real nvidia-ctk (v1.17 to v1.20) does not accept and does what the real
tool does to the files (adds runtimes.nvidia to daemon.json, sets mode in config.toml), so the module's
read-decide-run-read-back flow runs without a GPU, on command lines the real tool would take.
"""

from __future__ import annotations

import functools
import json
import subprocess

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils import nvidia_toolkit
from ansible_collections.raibid.dgx_spark.plugins.modules import nvidia_container_runtime
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.fakes import stand_in

DGX_DAEMON = {"default-runtime": "nvidia", "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}}


@pytest.fixture
def run(run_module):
    return functools.partial(run_module, nvidia_container_runtime)


@pytest.fixture
def ctk(tmp_path):
    """The stand-in nvidia-ctk and its call log."""
    log = tmp_path / "ctk.log"
    return stand_in.install(tmp_path / "nvidia-ctk", "nvidia_ctk", log=str(log)), log


@pytest.fixture
def files(tmp_path):
    daemon = tmp_path / "daemon.json"
    toml = tmp_path / "config.toml"
    toml.write_text('[nvidia-container-runtime]\nlog-level = "info"\nmode = "auto"\n')
    return daemon, toml


def test_registers_runtime_when_missing_and_reads_it_back(run, ctk, files):
    daemon, _toml = files
    daemon.write_text('{"live-restore": true}')
    script, log = ctk
    code, result = run({"runtime": True, "daemon_json": str(daemon), "nvidia_ctk_path": str(script)})
    assert code == 0, result
    assert result["changed"] is True and result["daemon_json_changed"] is True
    assert result["actions"] == ["nvidia-ctk runtime configure: daemon.json has no runtimes.nvidia.path"]
    # Read back from the file nvidia-ctk wrote, not assumed.
    assert result["runtime_configured"] is True
    assert result["default_runtime"] == ""
    assert stand_in.calls(log) == [["runtime", "configure", "--runtime=docker", f"--config={daemon}"]]


def test_fails_when_the_runtime_does_not_read_back(run, tmp_path, files):
    daemon, _toml = files
    daemon.write_text('{"live-restore": true}')
    script = stand_in.install(tmp_path / "nvidia-ctk", "nvidia_ctk", writes_nothing=True)
    code, result = run({"runtime": True, "daemon_json": str(daemon), "nvidia_ctk_path": str(script)})
    assert code == 1 and result["daemon_json_changed"] is True
    assert (
        result["msg"]
        == f"after nvidia-ctk runtime configure, {daemon} still fails: daemon.json has no runtimes.nvidia.path"
    )


def test_runtime_present_runs_nothing(run, ctk, files):
    daemon, _toml = files
    daemon.write_text(json.dumps(DGX_DAEMON))
    script, log = ctk
    code, result = run({"runtime": True, "daemon_json": str(daemon), "nvidia_ctk_path": str(script)})
    assert code == 0
    assert result["changed"] is False
    assert result["default_runtime"] == "nvidia"
    assert stand_in.calls(log) == []


def test_set_as_default_when_asked(run, ctk, files):
    daemon, _toml = files
    daemon.write_text(json.dumps({"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}))
    script, log = ctk
    code, result = run(
        {"runtime": True, "set_as_default": True, "daemon_json": str(daemon), "nvidia_ctk_path": str(script)}
    )
    assert code == 0, result
    assert result["default_runtime"] == "nvidia"
    assert stand_in.calls(log)[0][-1] == "--set-as-default"


def test_check_mode_runs_no_writing_command(run, ctk, files):
    daemon, toml = files
    script, log = ctk
    args = {"runtime": True, "mode": "legacy", "daemon_json": str(daemon), "config_toml": str(toml)}
    code, result = run({**args, "nvidia_ctk_path": str(script), "_ansible_check_mode": True})
    assert code == 0
    assert result["changed"] is True
    assert len(result["actions"]) == 2
    assert stand_in.calls(log) == []
    assert not daemon.exists()
    assert 'mode = "auto"' in toml.read_text()


def test_sets_mode_and_reads_it_back(run, ctk, files):
    _daemon, toml = files
    script, log = ctk
    code, result = run({"mode": "legacy", "config_toml": str(toml), "nvidia_ctk_path": str(script)})
    assert code == 0, result
    assert result["previous_mode"] == "auto" and result["mode"] == "legacy"
    assert result["daemon_json_changed"] is False
    assert stand_in.calls(log) == [
        ["config", "--in-place", f"--config-file={toml}", "--set", "nvidia-container-runtime.mode=legacy"]
    ]
    code, result = run({"mode": "legacy", "config_toml": str(toml), "nvidia_ctk_path": str(script)})
    assert result["changed"] is False
    assert len(stand_in.calls(log)) == 1


def test_fails_when_mode_does_not_read_back(run, tmp_path, files):
    _daemon, toml = files
    script = stand_in.install(tmp_path / "nvidia-ctk", "nvidia_ctk", writes_nothing=True)
    code, result = run({"mode": "cdi", "config_toml": str(toml), "nvidia_ctk_path": str(script)})
    assert code == 1
    assert "reads back auto" in result["msg"]


def test_missing_nvidia_ctk_names_the_option(run, tmp_path):
    code, result = run({"mode": "legacy", "nvidia_ctk_path": str(tmp_path / "none")})
    assert code == 1
    assert result["msg"].startswith("nvidia_ctk_path:")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["runtime", "configure", "--runtime=docker", "--config-file=/tmp/d.json"], "unknown flag: --config-file"),
        (["runtime", "configure", "--runtime=docker", "--config"], "flag needs an argument: --config"),
        (["runtime", "configure", "--runtime=podman", "--config=/tmp/d.json"], "unrecognized runtime 'podman'"),
        (["runtime", "configure", "--config=/tmp/d.json", "--set-as-default=yes"], "invalid boolean value"),
        # From v1.18.0 only: a supported v1.17 toolkit refuses it.
        (["runtime", "configure", "--config=/tmp/d.json", "--drop-in-config=/tmp/x"], "unknown flag: --drop-in-config"),
        (["config", "--in-place", "--config=/tmp/c.toml", "--set"], "flag needs an argument: --set"),
        (["config", "--in-place", "--config-file=/tmp/c.toml", "--mode=cdi"], "unknown flag: --mode"),
        (["config", "--in-place", "--config-file=/tmp/c.toml", "--set", "nvidia-container-runtime.mode"], "key=value"),
        (["config", "--in-place", "-o", "/tmp/o.toml", "--config-file=/tmp/c.toml"], "both --in-place and --output"),
        (["config", "--in-place", "--config-file=/tmp/c.toml", "legacy"], "takes no arguments"),
        (["--config=/tmp/c.toml", "config", "--in-place"], "flag provided but not defined: --config"),
    ],
)
def test_stand_in_refuses_what_the_real_nvidia_ctk_refuses(ctk, argv, message):
    script, _log = ctk
    proc = subprocess.run([str(script), *argv], capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and message in proc.stderr, (proc.returncode, proc.stderr)


def test_a_wrong_flag_in_our_command_line_fails_the_module(run, ctk, files, monkeypatch):
    """The check reaches the module: a command line the real tool refuses fails the task, naming the flag."""
    daemon, _toml = files
    script, _log = ctk

    def wrong_flag(nvidia_ctk, daemon_json, set_as_default):
        argv = nvidia_toolkit.configure_runtime_argv(nvidia_ctk, daemon_json, set_as_default)
        return [arg.replace("--config=", "--config-file=") for arg in argv]

    monkeypatch.setattr(nvidia_container_runtime, "configure_runtime_argv", wrong_flag)
    code, result = run({"runtime": True, "daemon_json": str(daemon), "nvidia_ctk_path": str(script)})
    assert code == 1 and "(rc 1)" in result["msg"] and "unknown flag: --config-file" in result["msg"]
    assert not daemon.exists()
