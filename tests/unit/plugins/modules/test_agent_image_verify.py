"""Unit tests for the agent_image_verify module glue, with the stand-in docker CLI of fakes/agent_docker.py
(it refuses flags docker does not have and runs the probe script locally against the stand-in tools of
fakes/agent_tools.py, which refuse arguments the real tools refuse)."""

from __future__ import annotations

import functools
import json
import os
import subprocess

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils.agent_image import ALWAYS_TOOLS, CARGO_CHECKS
from ansible_collections.raibid.dgx_spark.plugins.modules import agent_image_verify
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.modules.agent_image_state import (
    IMAGE,
    calls,
    image_config,
    make_state,
    set_health,
)


@pytest.fixture
def setup(tmp_path):
    return make_state(tmp_path)


@pytest.fixture
def run(run_module):
    return functools.partial(run_module, agent_image_verify)


def verify_args(state, docker, **extra):
    return {
        "image": IMAGE,
        "docker_cli": str(docker),
        "architecture": "arm64",
        "expected_uid": os.getuid(),
        "writable_dirs": [str(state / "workspace"), str(state / "cargo-home")],
        "tools": [
            {"name": "cargo-nextest", "version": "0.9.100"},
            {"name": "cargo-audit", "version": "0.21.2"},
            {"name": "cargo-deny", "version": "0.18.3"},
        ],
        **extra,
    }


def test_all_checks_pass_with_one_inspect_and_two_runs(run, setup):
    state, docker = setup
    code, result = run(verify_args(state, docker))
    assert code == 0, result["msg"]
    names = [c["name"] for c in result["checks"]]
    tools = [f"tool:{n}" for n in [*ALWAYS_TOOLS, "cargo-nextest", "cargo-audit", "cargo-deny"]]
    assert [n for n in names if n.startswith("tool:")] == tools
    assert names[:2] == ["architecture", "size"] and names[-4:] == ["health", *CARGO_CHECKS]
    assert (result["failed"], result["passed"], result["failed_checks"]) == (0, len(names), [])
    assert result["changed"] is False and result["architecture"] == "arm64" and result["size_mb"] == 1200.0
    assert result["image_id"] == "sha256:" + "a" * 64 and result["health"]["status"] == "ok"
    assert result["health"]["duration_ms"] == 412 and result["msg"].startswith(
        f"{IMAGE}: all {len(names)} checks passed"
    )
    made = calls(state)
    assert [c[:2] for c in made] == [["image", "inspect"], ["run", "--rm"], ["run", "--rm"]]
    for argv in made[1:]:
        assert argv[argv.index("--network") + 1] == "none" and argv[argv.index(IMAGE) + 1 :][:2] == ["/bin/sh", "-c"]


def test_check_mode_still_verifies(run, setup):
    state, docker = setup
    code, result = run(verify_args(state, docker, _ansible_check_mode=True, cargo_checks=False))
    assert code == 0 and result["changed"] is False
    assert [c[:2] for c in calls(state)] == [["image", "inspect"], ["run", "--rm"]]
    assert not any(c["name"].startswith("cargo-") for c in result["checks"])


def test_one_missing_tool_fails_by_name_and_the_others_are_still_reported(run, setup):
    state, docker = setup
    (state / "bin" / "cargo-audit").unlink()
    code, result = run(verify_args(state, docker))
    assert code == 1 and result["failed_checks"] == ["tool:cargo-audit"]
    assert (
        "1 of" in result["msg"]
        and "tool:cargo-audit: cargo-audit: `cargo audit --version` failed (rc=101)" in result["msg"]
    )
    statuses = {c["name"]: c["status"] for c in result["checks"]}
    assert statuses["tool:cargo-deny"] == statuses["tool:cargo-nextest"] == statuses["cargo-nextest-run"] == "ok"


def test_every_failure_is_listed(run, setup):
    state, docker = setup
    (state / "images.json").write_text(json.dumps({IMAGE: image_config(**{"raibid.agent.arch": "amd64"})}))
    (state / "bin" / "rustfmt").unlink()
    set_health(state, "not json at all\n", 0)
    code, result = run(
        verify_args(state, docker, size_budget_mb=1000, tools=[{"name": "cargo-deny", "version": "0.19.0"}])
    )
    assert code == 1
    assert result["failed_checks"] == ["size", "label:raibid.agent.arch", "tool:rustfmt", "tool:cargo-deny", "health"]
    for name in result["failed_checks"]:
        assert f"{name}: " in result["msg"]
    assert "cargo-deny: expected 0.19.0, found 0.18.3" in result["msg"]
    assert result["health"]["parse_error"] and result["health"]["status"] == "fail"


def test_missing_image_fails_before_any_run(run, setup):
    state, docker = setup
    code, result = run(verify_args(state, docker, image="nope:1"))
    assert code == 1 and result["msg"].startswith("image: nope:1 is not in the node's image store")
    assert [c[:2] for c in calls(state)] == [["image", "inspect"]]


def test_bad_options_are_refused(run, setup):
    state, docker = setup
    code, result = run(verify_args(state, docker, writable_dirs=["tmp"], timeout=0))
    assert code == 1 and "writable_dirs: 'tmp'" in result["msg"] and "timeout: 0" in result["msg"]
    assert not (state / "calls").exists()


def test_docker_host_reaches_docker(run, setup, tmp_path):
    state, docker = setup
    wrapper = tmp_path / "docker-host-check"
    wrapper.write_text(f'#!/bin/sh\necho "$DOCKER_HOST" >> "{state}/hosts"\nexec {docker} "$@"\n')
    wrapper.chmod(0o755)
    code, _result = run(verify_args(state, wrapper, docker_host="unix:///run/other.sock", cargo_checks=False))
    assert code == 0 and set((state / "hosts").read_text().split()) == {"unix:///run/other.sock"}


def test_fake_docker_refuses_flags_the_real_one_lacks(setup):
    state, docker = setup
    for argv, message in (
        (["run", "--rmi", IMAGE, "true"], "unknown flag: --rmi"),
        (["exec", "--network", "none", "agent-1", "true"], "unknown flag: --network"),
        (["image", "inspect", "--size", IMAGE], "unknown flag: --size"),
        (["run", "--rm", "--pull"], "flag needs an argument: --pull"),
    ):
        proc = subprocess.run([str(docker), *argv], capture_output=True, text=True, check=False)
        assert proc.returncode == 125 and message in proc.stderr, argv
    # Refused before anything ran.
    assert not (state / "env.json").exists()


def test_a_tool_command_the_tool_refuses_fails_its_check(run, setup):
    """The stand-in tools' check reaches the module: a version command with a flag the tool lacks fails."""
    state, docker = setup
    tools = [{"name": "cargo-deny", "version": "0.18.3", "command": "cargo deny --versions"}]
    code, result = run(verify_args(state, docker, tools=tools, cargo_checks=False))
    assert code == 1 and result["failed_checks"] == ["tool:cargo-deny"]
    assert "unknown flag: --versions" in result["msg"]
