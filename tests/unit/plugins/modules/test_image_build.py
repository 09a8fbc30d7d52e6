"""Unit tests for the image_build module glue, with the stand-in docker CLI of fakes/docker_build.py
(it refuses flags the real docker and buildx do not have)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils.image_build import IMAGETOOLS_FORMAT
from ansible_collections.raibid.dgx_spark.plugins.modules import image_build
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.fakes import docker_build, stand_in
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.modules.module_runner import shown


@pytest.fixture
def setup(tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM x\nRUN true\n")
    state = tmp_path / "state"
    state.mkdir()
    (state / "flags.json").write_text(json.dumps(docker_build.real_flags()))
    (state / "format").write_text(IMAGETOOLS_FORMAT)
    docker = stand_in.install(tmp_path / "docker", "docker_build", dir=str(state))
    return ctx, state, docker


def calls(state, command):
    return [line for line in (state / "calls").read_text().splitlines() if line.startswith(command)]


@pytest.fixture
def run(run_module):
    """(exit code, result) or, with raw, also the result as JSON text without Ansible's own echo of the
    arguments ("invocation", shown at -vvv; no_log options are masked there by Ansible)."""

    def run_build(args, raw=False):
        code, result = run_module(image_build, args)
        return (code, result, shown(result)) if raw else (code, result)

    return run_build


def test_builds_then_is_idempotent(run, setup):
    ctx, state, docker = setup
    args = {"path": str(ctx), "tags": ["t:1"], "docker_cli": str(docker), "cache_from": ["type=registry,ref=r/c:t"]}
    code, first = run(args)
    assert code == 0, first
    assert first["changed"] is True and first["built"] is True
    assert (first["layer_steps"], first["cached_steps"]) == (1, 1)
    assert first["digest"] == "sha256:manifest" and first["image_id"].startswith("sha256:")
    assert first["action"] == "built" and first["registry_checked"] is False
    code, second = run(args)
    assert code == 0 and second["changed"] is False and second["built"] is False
    assert second["inputs_hash"] == first["inputs_hash"]
    assert sum("buildx build" in line for line in (state / "calls").read_text().splitlines()) == 1


def test_check_mode_does_not_build(run, setup):
    ctx, state, docker = setup
    code, result = run({"path": str(ctx), "tags": ["t:1"], "docker_cli": str(docker), "_ansible_check_mode": True})
    assert code == 0 and result["changed"] is True and result["built"] is False
    assert "buildx build" not in (state / "calls").read_text()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"cache_to": ["127.0.0.1:5000/cache:t"]}, "cache_to:"),
        ({"dockerfile": "Missing.Dockerfile"}, "dockerfile:"),
        ({"load": False}, "load and push are both false"),
        ({"tags": []}, "tags:"),
    ],
)
def test_refuses_bad_options(run, setup, extra, needle):
    ctx, _state, docker = setup
    code, result = run({"path": str(ctx), "tags": ["t:1"], "docker_cli": str(docker), **extra})
    assert code == 1 and result["failed"] and needle in result["msg"], result["msg"]


def test_refuses_missing_context(run, setup, tmp_path):
    _ctx, _state, docker = setup
    code, result = run({"path": str(tmp_path / "nope"), "tags": ["t:1"], "docker_cli": str(docker)})
    assert code == 1 and "path:" in result["msg"]


def test_docker_driver_builds_without_load(run, setup, monkeypatch):
    ctx, _state, docker = setup
    monkeypatch.setenv("DRIVER", "docker")
    code, result = run({"path": str(ctx), "tags": ["t:1"], "docker_cli": str(docker), "push": True})
    assert code == 0 and result["builder_driver"] == "docker"
    assert "--load" not in result["command"] and "--push" in result["command"]


def test_other_drivers_load_and_push(run, setup):
    ctx, _state, docker = setup
    code, result = run({"path": str(ctx), "tags": ["t:1"], "docker_cli": str(docker), "push": True})
    assert code == 0 and result["builder_driver"] == "docker-container"
    assert "--load" in result["command"] and "--push" in result["command"]


def push_args(ctx, docker, **extra):
    return {
        "path": str(ctx),
        "tags": ["127.0.0.1:5000/a:1", "127.0.0.1:5000/a:latest"],
        "docker_cli": str(docker),
        "push": True,
        **extra,
    }


def test_push_that_failed_is_retried_without_rebuilding(run, setup):
    ctx, state, docker = setup
    (state / "push_fails").touch()
    code, failed = run(push_args(ctx, docker))
    assert code == 1 and "docker buildx build failed" in failed["msg"]
    assert json.loads((state / "local.json").read_text()), "the build itself reached the engine"
    (state / "push_fails").unlink()

    code, retried = run(push_args(ctx, docker))
    assert code == 0, retried
    assert (retried["action"], retried["changed"], retried["built"]) == ("pushed", True, False)
    assert retried["registry_checked"] is True
    assert [r["present"] for r in retried["registry_tags"]] == [False, False]
    assert retried["pushed_tags"] == ["127.0.0.1:5000/a:1", "127.0.0.1:5000/a:latest"]
    assert retried["digest"] == "sha256:" + "c" * 64
    assert len(calls(state, "buildx build")) == 1 and len(calls(state, "push ")) == 2

    code, settled = run(push_args(ctx, docker))
    assert code == 0 and (settled["action"], settled["changed"]) == ("none", False)
    assert [r["current"] for r in settled["registry_tags"]] == [True, True]
    assert len(calls(state, "buildx build")) == 1 and len(calls(state, "push ")) == 2


def test_registry_with_an_older_build_of_one_tag_gets_that_tag_pushed(run, setup):
    ctx, state, docker = setup
    code, first = run(push_args(ctx, docker))
    assert code == 0 and first["action"] == "built" and first["pushed_tags"] == push_args(ctx, docker)["tags"]
    registry = json.loads((state / "registry.json").read_text())
    registry["127.0.0.1:5000/a:latest"] = "sha256:older"
    (state / "registry.json").write_text(json.dumps(registry))
    code, result = run(push_args(ctx, docker))
    assert code == 0 and result["action"] == "pushed" and result["pushed_tags"] == ["127.0.0.1:5000/a:latest"]
    assert result["registry_tags"][1]["inputs_hash"] == "sha256:older"


def test_multi_platform_result_is_rebuilt_with_push(run, setup):
    ctx, state, docker = setup
    args = push_args(ctx, docker, platform=["linux/amd64", "linux/arm64"])
    (state / "push_fails").touch()
    assert run(args)[0] == 1
    (state / "push_fails").unlink()
    code, result = run(args)
    assert code == 0 and (result["action"], result["built"]) == ("built", True)
    assert "--push" in result["command"] and len(calls(state, "push ")) == 0
    (state / "platforms.json").write_text(json.dumps(args["platform"]))
    code, result = run(args)
    assert code == 0 and result["action"] == "none"


def test_load_false_trusts_the_registry_alone(run, setup):
    ctx, state, docker = setup
    args = push_args(ctx, docker, load=False)
    code, first = run(args)
    assert code == 0 and first["action"] == "built" and "--load" not in first["command"]
    code, second = run(args)
    assert code == 0 and second["action"] == "none" and second["registry_checked"]
    assert len(calls(state, "buildx build")) == 1


def test_check_mode_reports_a_pending_push_without_pushing(run, setup):
    ctx, state, docker = setup
    (state / "push_fails").touch()
    run(push_args(ctx, docker))
    (state / "push_fails").unlink()
    code, result = run(push_args(ctx, docker, _ansible_check_mode=True))
    assert code == 0 and (result["changed"], result["action"]) == (True, "pushed")
    assert result["msg"].startswith("would push") and calls(state, "push ") == []


def test_push_if_verified_defers_a_new_image_and_pushes_a_verified_one_in_the_same_call(run, setup):
    ctx, state, docker = setup
    # Nothing verified yet: the build loads the image, pushes nothing and says the push was deferred.
    code, built = run(push_args(ctx, docker, push_if_verified=""))
    assert code == 0 and (built["action"], built["built"], built["push_deferred"]) == ("built", True, True)
    assert "--push" not in built["command"] and built["pushed_tags"] == [] and not built["registry_checked"]
    assert not (state / "registry.json").exists() or json.loads((state / "registry.json").read_text()) == {}
    digest = built["inputs_hash"]

    # Other inputs verified: still deferred, and nothing rebuilt (the local image is current).
    code, other = run(push_args(ctx, docker, push_if_verified="sha256:" + "0" * 64))
    assert code == 0 and (other["action"], other["push_deferred"]) == ("none", True)
    assert calls(state, "push ") == [] and len(calls(state, "buildx build")) == 1

    # The caller verified these inputs: the same call reads the registry and pushes the local image.
    code, pushed = run(push_args(ctx, docker, push_if_verified=digest))
    assert code == 0 and (pushed["action"], pushed["push_deferred"], pushed["changed"]) == ("pushed", False, True)
    assert pushed["registry_checked"] and pushed["pushed_tags"] == push_args(ctx, docker)["tags"]
    assert len(calls(state, "buildx build")) == 1 and len(calls(state, "push ")) == 2

    # A no-op run: one call, the registry read, nothing pushed.
    code, settled = run(push_args(ctx, docker, push_if_verified=digest))
    assert code == 0 and (settled["action"], settled["push_deferred"], settled["changed"]) == ("none", False, False)
    assert [r["current"] for r in settled["registry_tags"]] == [True, True]


def test_push_if_verified_never_pushes_what_the_call_builds(run, setup):
    ctx, state, docker = setup
    code, first = run(push_args(ctx, docker, push_if_verified=""))
    digest = first["inputs_hash"]
    # rebuild=always builds a new image even for the verified inputs: loaded, not pushed.
    code, rebuilt = run(push_args(ctx, docker, push_if_verified=digest, rebuild="always"))
    assert code == 0 and (rebuilt["action"], rebuilt["push_deferred"]) == ("built", True)
    assert "--push" not in rebuilt["command"] and calls(state, "push ") == []
    # The second call of the pattern (no push_if_verified) pushes it.
    code, pushed = run(push_args(ctx, docker))
    assert code == 0 and pushed["action"] == "pushed" and not pushed["push_deferred"]


def test_registry_still_down_fails_the_push_by_name(run, setup):
    ctx, state, docker = setup
    (state / "push_fails").touch()
    run(push_args(ctx, docker))
    code, result = run(push_args(ctx, docker))
    assert code == 1 and result["msg"].startswith("docker push 127.0.0.1:5000/a:1 failed")
    assert "connection refused" in result["msg"] and result["pushed_tags"] == []


def test_secrets_reach_buildx_and_nothing_else(run, setup, tmp_path, monkeypatch):
    ctx, state, docker = setup
    ca = tmp_path / "ca.pem"
    ca.write_text("CA-BUNDLE-CONTENT\n")
    monkeypatch.setenv("NPM_TOKEN", "npm-token-value")
    args = {
        "path": str(ctx),
        "tags": ["t:1"],
        "docker_cli": str(docker),
        "build_args": {"API_KEY": "build-arg-value", "V": "1"},
        "secrets": [
            {"id": "ca", "src": str(ca)},
            {"id": "npm", "env": "NPM_TOKEN"},
            {"id": "pw", "value": "hunter2-value"},
        ],
    }
    code, result, raw = run(args, raw=True)
    assert code == 0, result
    seen = {s["id"]: s for s in json.loads((state / "secrets.json").read_text())}
    assert seen["ca"]["content"] == "CA-BUNDLE-CONTENT\n" and seen["npm"]["content"] == "npm-token-value"
    assert seen["pw"] == {"id": "pw", "mode": "0o600", "content": "hunter2-value"}
    secret_argv = [result["command"][i + 1] for i, a in enumerate(result["command"]) if a == "--secret"]
    assert secret_argv[0] == f"id=ca,src={ca}" and secret_argv[1] == "id=npm,env=NPM_TOKEN"
    value_file = secret_argv[2].split("src=", 1)[1]
    assert secret_argv[2].startswith("id=pw,src=") and not os.path.exists(value_file), "temp file removed"
    assert "API_KEY=***" in result["command"] and "V=***" in result["command"]
    for value in ("CA-BUNDLE-CONTENT", "npm-token-value", "hunter2-value", "build-arg-value"):
        assert value not in raw, value


def test_failure_message_hides_build_args_and_secrets(run, setup, monkeypatch):
    ctx, state, docker = setup
    (state / "build_fails").touch()
    monkeypatch.setenv("NPM_TOKEN", "npm-token-value")
    args = {
        "path": str(ctx),
        "tags": ["t:build-arg-value"],
        "docker_cli": str(docker),
        "build_args": {"API_KEY": "build-arg-value"},
        "secrets": [{"id": "npm", "env": "NPM_TOKEN"}],
    }
    code, result, raw = run(args, raw=True)
    assert code == 1 and result["msg"].startswith("docker buildx build failed")
    assert "build-arg-value" not in result["msg"] and "npm-token-value" not in raw
    assert any("leaked" in line for line in result["log_tail"])


def test_secret_hash_ignores_content_unless_asked(run, setup, tmp_path):
    ctx, _state, docker = setup
    ca = tmp_path / "ca.pem"

    def inputs(rebuild_on_change):
        args = {
            "path": str(ctx),
            "tags": ["t:1"],
            "docker_cli": str(docker),
            "_ansible_check_mode": True,
            "secrets": [{"id": "ca", "src": str(ca), "rebuild_on_change": rebuild_on_change}],
        }
        return run(args)[1]["inputs_hash"]

    ca.write_text("one")
    plain, opted = inputs(False), inputs(True)
    ca.write_text("two")
    assert inputs(False) == plain and inputs(True) != opted


@pytest.mark.parametrize(
    ("secret", "needle"),
    [
        ({"id": "a", "src": "/nonexistent/ca.pem"}, "secrets[0].src (a): /nonexistent/ca.pem is not a file"),
        ({"id": "a", "env": "RAIBID_SURELY_UNSET"}, "RAIBID_SURELY_UNSET is not set"),
        ({"id": "a b", "value": "hunter2-value"}, "secrets[0].id: 'a b'"),
        ({"id": "a", "env": "X", "value": "hunter2-value"}, "mutually exclusive"),
        ({"id": "a"}, "one of the following is required"),
    ],
)
def test_refuses_bad_secrets(run, setup, secret, needle):
    ctx, state, docker = setup
    code, result, raw = run(
        {"path": str(ctx), "tags": ["t:1"], "docker_cli": str(docker), "secrets": [secret]}, raw=True
    )
    assert code == 1 and needle in result["msg"], result["msg"]
    assert "hunter2-value" not in raw and not (state / "calls").exists()


def test_fake_docker_refuses_flags_the_real_one_lacks(setup):
    ctx, _state, docker = setup
    for argv, message in (
        (["buildx", "build", "--secrets", "id=a", str(ctx)], "unknown flag: --secrets"),
        (["push", "--insecure", "r:1"], "unknown flag: --insecure"),
        (["buildx", "build", str(ctx), "--tag"], "flag needs an argument: --tag"),
        (["buildx", "build", "--push=maybe", str(ctx)], "invalid boolean value"),
    ):
        proc = subprocess.run([str(docker), *argv], capture_output=True, text=True, check=False)
        assert proc.returncode == 125 and message in proc.stderr, argv


def test_unhashed_build_args_reach_the_build_but_not_the_hash(run, setup):
    ctx, state, docker = setup
    base = {"path": str(ctx), "tags": ["t:1"], "docker_cli": str(docker), "build_args": {"VERSION": "1"}}
    code, first = run({**base, "unhashed_build_args": {"CREATED": "2026-12-01T00:00:00Z"}})
    assert code == 0 and first["built"], first
    build = calls(state, "buildx build")[-1]
    assert "CREATED=***" in " ".join(first["command"]) and "CREATED=2026-12-01T00:00:00Z" in build
    code, second = run({**base, "unhashed_build_args": {"CREATED": "2026-12-02T00:00:00Z"}})
    assert code == 0 and not second["built"] and second["inputs_hash"] == first["inputs_hash"]
    code, third = run({**base, "build_args": {"VERSION": "2"}})
    assert code == 0 and third["built"] and third["inputs_hash"] != first["inputs_hash"]


def test_refuses_a_build_arg_in_both_options(run, setup):
    ctx, _state, docker = setup
    args = {"path": str(ctx), "tags": ["t:1"], "docker_cli": str(docker), "build_args": {"A": "1"}}
    code, result = run({**args, "unhashed_build_args": {"A": "2"}})
    assert code == 1 and "unhashed_build_args: A also in build_args" in result["msg"]


def test_inputs_hash_placeholder_names_the_content(run, setup):
    ctx, state, docker = setup
    args = {"path": str(ctx), "tags": ["t:1", "t:inputs-{inputs_hash}"], "docker_cli": str(docker)}
    code, result = run(args)
    assert code == 0 and result["built"], result
    short = result["inputs_hash"].split(":")[1][:16]
    assert f"--tag t:inputs-{short}" in calls(state, "buildx build")[-1]
    assert "{inputs_hash}" not in " ".join(result["command"])


def test_build_args_can_stay_visible(run, setup):
    ctx, _state, docker = setup
    args = {"path": str(ctx), "tags": ["t:1"], "docker_cli": str(docker), "build_args": {"TOOL_VERSION": "0.9.101"}}
    code, result = run({**args, "redact_build_args": False})
    assert code == 0 and "TOOL_VERSION=0.9.101" in result["command"], result["command"]
    code, result = run({**args, "rebuild": "always"})
    assert code == 0 and "TOOL_VERSION=***" in result["command"]
