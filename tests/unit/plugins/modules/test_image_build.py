"""Unit tests for the image_build module glue, with a stand-in docker CLI script."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.raibid.dgx_spark.plugins.module_utils.image_build import IMAGETOOLS_FORMAT
from ansible_collections.raibid.dgx_spark.plugins.modules import image_build

sys.path.insert(0, os.path.dirname(__file__))
import docker_cli_flags

# Flags of the real commands, as a fallback where the host's docker has no buildx plugin: buildx
# docs/reference/buildx_build.md and buildx_imagetools_inspect.md (v0.2x), `docker push --help` and
# `docker image inspect --help` of Docker 28. True: the flag takes a value.
DOCUMENTED_FLAGS = {
    "buildx build": {
        **dict.fromkeys(
            "--add-host --allow --annotation --attest --build-arg --build-context --builder --cache-from "
            "--cache-to --call --cgroup-parent -f --file --iidfile --label --metadata-file --network "
            "--no-cache-filter -o --output --platform --progress --provenance --root --sbom --secret "
            "--server-config --shm-size --ssh -t --tag --target --ulimit".split(),
            True,
        ),
        **dict.fromkeys("--check -D --debug --detach --load --no-cache --pull --push -q --quiet".split(), False),
    },
    "buildx imagetools inspect": {"--builder": True, "--format": True, "--raw": False, "-D": False, "--debug": False},
    "buildx inspect": {"--bootstrap": False, "--builder": True, "--timeout": True, "-D": False, "--debug": False},
    "image inspect": {"-f": True, "--format": True, "--platform": True},
    "push": {
        "-a": False,
        "--all-tags": False,
        "--disable-content-trust": False,
        "-q": False,
        "--quiet": False,
        "--platform": True,
    },
}


def real_flags(command: str) -> dict:
    return docker_cli_flags.real_flags(command, DOCUMENTED_FLAGS)


# Stand-in docker CLI. It refuses flags the real command does not have (as docker does, rc 125), and keeps
# a tiny engine and registry in $STATE: local.json (tag -> inputs label), registry.json (tag -> label).
# $STATE/push_fails makes pushes fail (a build with --push then still loads, like buildx's exporters).
FAKE_DOCKER = """#!{python}
import json, os, sys, hashlib
state = os.environ["STATE"]
args = sys.argv[1:]
with open(os.path.join(state, "calls"), "a") as fh:
    fh.write(" ".join(args) + "\\n")
flags = json.load(open(os.path.join(state, "flags.json")))
cmd = next((c for c in sorted(flags, key=len, reverse=True) if args[: len(c.split())] == c.split()), None)
if cmd is None:
    sys.exit("fake docker: unexpected command " + " ".join(args))
opts, positional, rest = {{}}, [], args[len(cmd.split()) :]
while rest:
    arg = rest.pop(0)
    if arg.startswith("-") and arg != "-":
        name, eq, value = arg.partition("=")
        if name not in flags[cmd]:
            sys.stderr.write("unknown flag: " + name + "\\n"); sys.exit(125)
        if flags[cmd][name] and not eq:
            value = rest.pop(0)
        opts.setdefault(name, []).append(value)
    else:
        positional.append(arg)

def load(name):
    path = os.path.join(state, name)
    return json.load(open(path)) if os.path.exists(path) else {{}}

def save(name, data):
    json.dump(data, open(os.path.join(state, name), "w"))

def image_id(label):
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()

local, registry = load("local.json"), load("registry.json")
push_fails = os.path.exists(os.path.join(state, "push_fails"))
if cmd == "buildx inspect":
    print("Name:   default"); print("Driver: " + os.environ.get("DRIVER", "docker-container")); sys.exit(0)
if cmd == "image inspect":
    tag = positional[0]
    if tag not in local:
        sys.stderr.write("Error response from daemon: No such image: " + tag + "\\n"); sys.exit(1)
    print(image_id(local[tag]) + " " + local[tag]); sys.exit(0)
if cmd == "buildx imagetools inspect":
    assert opts["--format"] == [open(os.path.join(state, "format")).read()], opts
    tag = positional[0]
    if tag not in registry:
        sys.stderr.write("ERROR: " + tag + ": not found\\n"); sys.exit(1)
    platforms = load("platforms.json") or []
    labels = {{"org.raibid.inputs-hash": registry[tag]}}
    config = {{"architecture": "arm64", "os": "linux", "config": {{"Labels": labels}}}}
    image = {{p: config for p in platforms}} if len(platforms) > 1 else config
    print(json.dumps({{"manifest": {{"digest": "sha256:" + "b" * 64}}, "image": image}})); sys.exit(0)
if cmd == "push":
    tag = positional[0]
    if tag not in local:
        sys.stderr.write("An image does not exist locally with the tag: " + tag + "\\n"); sys.exit(1)
    if push_fails:
        sys.stderr.write("dial tcp 127.0.0.1:5000: connect: connection refused\\n"); sys.exit(1)
    registry[tag] = local[tag]; save("registry.json", registry)
    print("The push refers to repository [" + tag.rsplit(":", 1)[0] + "]")
    print(tag.rsplit(":", 1)[1] + ": digest: sha256:" + "c" * 64 + " size: 528"); sys.exit(0)
# buildx build
assert len(positional) == 1, positional
secrets = []
for spec in opts.get("--secret", []):
    fields = dict(f.split("=", 1) for f in spec.split(","))
    assert set(fields) in ({{"id", "src"}}, {{"id", "env"}}), spec
    if "src" in fields:
        mode = os.stat(fields["src"]).st_mode & 0o777
        secrets.append({{"id": fields["id"], "mode": oct(mode), "content": open(fields["src"]).read()}})
    else:
        secrets.append({{"id": fields["id"], "content": os.environ[fields["env"]]}})
save("secrets.json", secrets)
label = next(l.split("=", 1)[1] for l in opts["--label"] if l.startswith("org.raibid.inputs-hash="))
sys.stderr.write("#1 [1/2] FROM x\\n#1 CACHED\\n\\n#2 [2/2] RUN true\\n#2 CACHED\\n")
for s in secrets:
    sys.stderr.write("#2 0.1 leaked " + s["content"] + "\\n")
if os.path.exists(os.path.join(state, "build_fails")):
    sys.stderr.write("#2 ERROR: process did not complete successfully\\n"); sys.exit(1)
if "--load" in opts or os.environ.get("DRIVER") == "docker":
    for tag in opts["--tag"]:
        local[tag] = label
    save("local.json", local)
with open(opts["--metadata-file"][0], "w") as fh:
    json.dump({{"containerimage.digest": "sha256:manifest", "containerimage.config.digest": image_id(label)}}, fh)
if "--push" in opts:
    if push_fails:
        sys.stderr.write("ERROR: failed to push: connection refused\\n"); sys.exit(1)
    for tag in opts["--tag"]:
        registry[tag] = label
    save("registry.json", registry)
"""


@pytest.fixture
def setup(tmp_path, monkeypatch):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM x\nRUN true\n")
    state = tmp_path / "state"
    state.mkdir()
    (state / "flags.json").write_text(json.dumps({c: real_flags(c) for c in DOCUMENTED_FLAGS}))
    (state / "format").write_text(IMAGETOOLS_FORMAT)
    docker = tmp_path / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable))
    docker.chmod(0o755)
    monkeypatch.setenv("STATE", str(state))
    return ctx, state, docker


def calls(state, command):
    return [line for line in (state / "calls").read_text().splitlines() if line.startswith(command)]


def run(capsys, args, raw=False):
    """(exit code, result) or, with raw, also the result as JSON text without Ansible's own echo of the
    arguments ("invocation", shown at -vvv; no_log options are masked there by Ansible)."""
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        image_build.main()
    result = json.loads(capsys.readouterr().out)
    if not raw:
        return exc.value.code, result
    return exc.value.code, result, json.dumps({k: v for k, v in result.items() if k != "invocation"})


def test_builds_then_is_idempotent(capsys, setup):
    ctx, state, docker = setup
    args = {"path": str(ctx), "tags": ["t:1"], "docker_cli": str(docker), "cache_from": ["type=registry,ref=r/c:t"]}
    code, first = run(capsys, args)
    assert code == 0, first
    assert first["changed"] is True and first["built"] is True
    assert (first["layer_steps"], first["cached_steps"]) == (1, 1)
    assert first["digest"] == "sha256:manifest" and first["image_id"].startswith("sha256:")
    assert first["action"] == "built" and first["registry_checked"] is False
    code, second = run(capsys, args)
    assert code == 0 and second["changed"] is False and second["built"] is False
    assert second["inputs_hash"] == first["inputs_hash"]
    assert sum("buildx build" in line for line in (state / "calls").read_text().splitlines()) == 1


def test_check_mode_does_not_build(capsys, setup):
    ctx, state, docker = setup
    code, result = run(
        capsys, {"path": str(ctx), "tags": ["t:1"], "docker_cli": str(docker), "_ansible_check_mode": True}
    )
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
def test_refuses_bad_options(capsys, setup, extra, needle):
    ctx, _state, docker = setup
    code, result = run(capsys, {"path": str(ctx), "tags": ["t:1"], "docker_cli": str(docker), **extra})
    assert code == 1 and result["failed"] and needle in result["msg"], result["msg"]


def test_refuses_missing_context(capsys, setup, tmp_path):
    _ctx, _state, docker = setup
    code, result = run(capsys, {"path": str(tmp_path / "nope"), "tags": ["t:1"], "docker_cli": str(docker)})
    assert code == 1 and "path:" in result["msg"]


def test_docker_driver_builds_without_load(capsys, setup, monkeypatch):
    ctx, _state, docker = setup
    monkeypatch.setenv("DRIVER", "docker")
    code, result = run(capsys, {"path": str(ctx), "tags": ["t:1"], "docker_cli": str(docker), "push": True})
    assert code == 0 and result["builder_driver"] == "docker"
    assert "--load" not in result["command"] and "--push" in result["command"]


def test_other_drivers_load_and_push(capsys, setup):
    ctx, _state, docker = setup
    code, result = run(capsys, {"path": str(ctx), "tags": ["t:1"], "docker_cli": str(docker), "push": True})
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


def test_push_that_failed_is_retried_without_rebuilding(capsys, setup):
    ctx, state, docker = setup
    (state / "push_fails").touch()
    code, failed = run(capsys, push_args(ctx, docker))
    assert code == 1 and "docker buildx build failed" in failed["msg"]
    assert json.loads((state / "local.json").read_text()), "the build itself reached the engine"
    (state / "push_fails").unlink()

    code, retried = run(capsys, push_args(ctx, docker))
    assert code == 0, retried
    assert (retried["action"], retried["changed"], retried["built"]) == ("pushed", True, False)
    assert retried["registry_checked"] is True
    assert [r["present"] for r in retried["registry_tags"]] == [False, False]
    assert retried["pushed_tags"] == ["127.0.0.1:5000/a:1", "127.0.0.1:5000/a:latest"]
    assert retried["digest"] == "sha256:" + "c" * 64
    assert len(calls(state, "buildx build")) == 1 and len(calls(state, "push ")) == 2

    code, settled = run(capsys, push_args(ctx, docker))
    assert code == 0 and (settled["action"], settled["changed"]) == ("none", False)
    assert [r["current"] for r in settled["registry_tags"]] == [True, True]
    assert len(calls(state, "buildx build")) == 1 and len(calls(state, "push ")) == 2


def test_registry_with_an_older_build_of_one_tag_gets_that_tag_pushed(capsys, setup):
    ctx, state, docker = setup
    code, first = run(capsys, push_args(ctx, docker))
    assert code == 0 and first["action"] == "built" and first["pushed_tags"] == push_args(ctx, docker)["tags"]
    registry = json.loads((state / "registry.json").read_text())
    registry["127.0.0.1:5000/a:latest"] = "sha256:older"
    (state / "registry.json").write_text(json.dumps(registry))
    code, result = run(capsys, push_args(ctx, docker))
    assert code == 0 and result["action"] == "pushed" and result["pushed_tags"] == ["127.0.0.1:5000/a:latest"]
    assert result["registry_tags"][1]["inputs_hash"] == "sha256:older"


def test_multi_platform_result_is_rebuilt_with_push(capsys, setup):
    ctx, state, docker = setup
    args = push_args(ctx, docker, platform=["linux/amd64", "linux/arm64"])
    (state / "push_fails").touch()
    assert run(capsys, args)[0] == 1
    (state / "push_fails").unlink()
    code, result = run(capsys, args)
    assert code == 0 and (result["action"], result["built"]) == ("built", True)
    assert "--push" in result["command"] and len(calls(state, "push ")) == 0
    (state / "platforms.json").write_text(json.dumps(args["platform"]))
    code, result = run(capsys, args)
    assert code == 0 and result["action"] == "none"


def test_load_false_trusts_the_registry_alone(capsys, setup):
    ctx, state, docker = setup
    args = push_args(ctx, docker, load=False)
    code, first = run(capsys, args)
    assert code == 0 and first["action"] == "built" and "--load" not in first["command"]
    code, second = run(capsys, args)
    assert code == 0 and second["action"] == "none" and second["registry_checked"]
    assert len(calls(state, "buildx build")) == 1


def test_check_mode_reports_a_pending_push_without_pushing(capsys, setup):
    ctx, state, docker = setup
    (state / "push_fails").touch()
    run(capsys, push_args(ctx, docker))
    (state / "push_fails").unlink()
    code, result = run(capsys, push_args(ctx, docker, _ansible_check_mode=True))
    assert code == 0 and (result["changed"], result["action"]) == (True, "pushed")
    assert result["msg"].startswith("would push") and calls(state, "push ") == []


def test_registry_still_down_fails_the_push_by_name(capsys, setup):
    ctx, state, docker = setup
    (state / "push_fails").touch()
    run(capsys, push_args(ctx, docker))
    code, result = run(capsys, push_args(ctx, docker))
    assert code == 1 and result["msg"].startswith("docker push 127.0.0.1:5000/a:1 failed")
    assert "connection refused" in result["msg"] and result["pushed_tags"] == []


def test_secrets_reach_buildx_and_nothing_else(capsys, setup, tmp_path, monkeypatch):
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
    code, result, raw = run(capsys, args, raw=True)
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


def test_failure_message_hides_build_args_and_secrets(capsys, setup, monkeypatch):
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
    code, result, raw = run(capsys, args, raw=True)
    assert code == 1 and result["msg"].startswith("docker buildx build failed")
    assert "build-arg-value" not in result["msg"] and "npm-token-value" not in raw
    assert any("leaked" in line for line in result["log_tail"])


def test_secret_hash_ignores_content_unless_asked(capsys, setup, tmp_path):
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
        return run(capsys, args)[1]["inputs_hash"]

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
def test_refuses_bad_secrets(capsys, setup, secret, needle):
    ctx, state, docker = setup
    code, result, raw = run(
        capsys, {"path": str(ctx), "tags": ["t:1"], "docker_cli": str(docker), "secrets": [secret]}, raw=True
    )
    assert code == 1 and needle in result["msg"], result["msg"]
    assert "hunter2-value" not in raw and not (state / "calls").exists()


def test_fake_docker_refuses_flags_the_real_one_lacks(setup):
    ctx, state, docker = setup
    env = {**os.environ, "STATE": str(state)}
    for argv in (["buildx", "build", "--secrets", "id=a", str(ctx)], ["push", "--insecure", "r:1"]):
        proc = subprocess.run([str(docker), *argv], capture_output=True, text=True, env=env, check=False)
        assert proc.returncode == 125 and "unknown flag" in proc.stderr, argv


def test_unhashed_build_args_reach_the_build_but_not_the_hash(capsys, setup):
    ctx, state, docker = setup
    base = {"path": str(ctx), "tags": ["t:1"], "docker_cli": str(docker), "build_args": {"VERSION": "1"}}
    code, first = run(capsys, {**base, "unhashed_build_args": {"CREATED": "2026-12-01T00:00:00Z"}})
    assert code == 0 and first["built"], first
    build = calls(state, "buildx build")[-1]
    assert "CREATED=***" in " ".join(first["command"]) and "CREATED=2026-12-01T00:00:00Z" in build
    code, second = run(capsys, {**base, "unhashed_build_args": {"CREATED": "2026-12-02T00:00:00Z"}})
    assert code == 0 and not second["built"] and second["inputs_hash"] == first["inputs_hash"]
    code, third = run(capsys, {**base, "build_args": {"VERSION": "2"}})
    assert code == 0 and third["built"] and third["inputs_hash"] != first["inputs_hash"]


def test_refuses_a_build_arg_in_both_options(capsys, setup):
    ctx, _state, docker = setup
    args = {"path": str(ctx), "tags": ["t:1"], "docker_cli": str(docker), "build_args": {"A": "1"}}
    code, result = run(capsys, {**args, "unhashed_build_args": {"A": "2"}})
    assert code == 1 and "unhashed_build_args: A also in build_args" in result["msg"]


def test_inputs_hash_placeholder_names_the_content(capsys, setup):
    ctx, state, docker = setup
    args = {"path": str(ctx), "tags": ["t:1", "t:inputs-{inputs_hash}"], "docker_cli": str(docker)}
    code, result = run(capsys, args)
    assert code == 0 and result["built"], result
    short = result["inputs_hash"].split(":")[1][:16]
    assert f"--tag t:inputs-{short}" in calls(state, "buildx build")[-1]
    assert "{inputs_hash}" not in " ".join(result["command"])


def test_build_args_can_stay_visible(capsys, setup):
    ctx, _state, docker = setup
    args = {"path": str(ctx), "tags": ["t:1"], "docker_cli": str(docker), "build_args": {"TOOL_VERSION": "0.9.101"}}
    code, result = run(capsys, {**args, "redact_build_args": False})
    assert code == 0 and "TOOL_VERSION=0.9.101" in result["command"], result["command"]
    code, result = run(capsys, {**args, "rebuild": "always"})
    assert code == 0 and "TOOL_VERSION=***" in result["command"]
