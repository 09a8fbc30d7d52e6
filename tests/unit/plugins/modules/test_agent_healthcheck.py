"""Unit tests for the agent_healthcheck module glue, with the stand-in docker CLI and agent image of
agent_image_state.py (shared with test_agent_image_verify)."""

from __future__ import annotations

import functools
import json

import pytest

from ansible_collections.raibid.dgx_spark.plugins.modules import agent_healthcheck
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.modules.agent_image_state import (
    HEALTH_OK,
    IMAGE,
    calls,
    make_state,
    set_health,
)
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.modules.module_runner import shown

HEALTH_FAIL = {
    "status": "fail",
    "duration_ms": 77,
    "checks": [
        {"name": "cargo-nextest", "status": "ok", "value": "cargo-nextest 0.9.100", "message": ""},
        {"name": "cargo-audit", "status": "fail", "value": "", "message": "not on PATH"},
        {"name": "disk", "status": "warn", "value": "3 GiB", "message": "low on space"},
    ],
}
HEALTH_WARN = dict(HEALTH_OK, status="warn", checks=[{"name": "disk", "status": "warn", "value": "", "message": "low"}])


@pytest.fixture
def setup(tmp_path):
    return make_state(tmp_path)


@pytest.fixture
def run(run_module):
    return functools.partial(run_module, agent_healthcheck)


def test_image_mode_passes(run, setup):
    state, docker = setup
    code, result = run({"image": IMAGE, "docker_cli": str(docker)})
    assert code == 0, result["msg"]
    assert (result["status"], result["failing"], result["warning_checks"], result["duration_ms"]) == ("ok", [], [], 412)
    assert result["changed"] is False and result["mode"] == "image" and result["source"] == "json"
    assert result["elapsed_s"] >= 0 and "raw" not in result
    (argv,) = calls(state)
    assert argv[:5] == ["run", "--rm", "--pull", "never", "--network"] and argv[5] == "none"
    assert argv[-4:] == [IMAGE, "raibid-agent", "health", "--json"] and "--entrypoint" not in argv


def test_failing_health_fails_the_task_listing_the_checks(run, setup):
    state, docker = setup
    set_health(state, json.dumps(HEALTH_FAIL) + "\n", 1)
    code, result = run({"image": IMAGE, "docker_cli": str(docker)})
    assert code == 1 and result["status"] == "fail"
    assert result["failing"] == ["cargo-audit"] and result["warning_checks"] == ["disk"] and result["duration_ms"] == 77
    assert "cargo-audit: not on PATH" in result["msg"] and "disk: low on space" in result["msg"]


def test_exit_code_zero_does_not_hide_a_failing_check(run, setup):
    state, docker = setup
    set_health(state, json.dumps(HEALTH_FAIL) + "\n", 0)
    code, result = run({"image": IMAGE, "docker_cli": str(docker)})
    assert code == 1 and result["failing"] == ["cargo-audit"]


@pytest.mark.parametrize(
    ("fail_on", "health", "code"), [("fail", HEALTH_WARN, 0), ("warn", HEALTH_WARN, 1), ("never", HEALTH_FAIL, 0)]
)
def test_fail_on(run, setup, fail_on, health, code):
    state, docker = setup
    set_health(state, json.dumps(health) + "\n", 1 if health["status"] == "fail" else 0)
    got, result = run({"image": IMAGE, "docker_cli": str(docker), "fail_on": fail_on})
    assert got == code and result["status"] == health["status"]


def test_unparseable_output_is_a_failure_with_the_raw_output(run, setup):
    state, docker = setup
    set_health(state, "✓ cargo-nextest: 0.9.100\n✗ cargo-audit: missing\nHealth check FAILED (1 failed)\n", 1)
    code, result = run({"image": IMAGE, "docker_cli": str(docker)})
    assert code == 1 and result["source"] == "text" and result["failing"] == ["cargo-audit"]
    assert "printed no JSON" in result["parse_error"] and "Health check FAILED" in result["raw"]


def test_container_mode_uses_docker_exec_and_passes_env_values_outside_argv(run, setup):
    state, docker = setup
    args = {
        "container": "agent-1",
        "docker_cli": str(docker),
        "env": {"RAIBID_TOKEN": "s3cret-value", "LEVEL": "debug"},
    }
    code, result = run(args)
    assert code == 0 and result["mode"] == "container"
    (argv,) = calls(state)
    assert argv == ["exec", "--env", "LEVEL", "--env", "RAIBID_TOKEN", "agent-1", "raibid-agent", "health", "--json"]
    seen = json.loads((state / "env.json").read_text())
    assert seen["RAIBID_TOKEN"] == "s3cret-value" and seen["LEVEL"] == "debug"
    assert "s3cret-value" not in shown(result) and "debug" not in shown(result)


def test_missing_container_is_reported(run, setup):
    _state, docker = setup
    code, result = run({"container": "gone", "docker_cli": str(docker), "fail_on": "never"})
    assert code == 0 and result["status"] == "fail" and result["exit_code"] == 1
    assert "No such container: gone" in result["raw"] and result["parse_error"]


def test_timeout_removes_the_container(run, setup):
    state, docker = setup
    (state / "hang").touch()
    code, result = run({"image": IMAGE, "docker_cli": str(docker), "timeout": 1})
    assert code == 1 and result["parse_error"].startswith("timed out after 1 s")
    name = calls(state)[0][calls(state)[0].index("--name") + 1]
    assert calls(state)[-1] == ["rm", "--force", name]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ({}, "one of the following is required: image, container"),
        ({"image": IMAGE, "container": "c"}, "mutually exclusive"),
        ({"container": "c", "network": "host"}, "mutually exclusive"),
        ({"image": IMAGE, "env": {"NOT A NAME": "x"}}, "env: 'NOT A NAME' is not an environment variable name"),
    ],
)
def test_bad_options(run, setup, args, needle):
    _state, docker = setup
    code, result = run({"docker_cli": str(docker), **args})
    assert code == 1 and needle in result["msg"], result["msg"]
