"""Unit tests for the image_build module glue, with a stand-in docker CLI script."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.raibid.dgx_spark.plugins.modules import image_build

FAKE_DOCKER = """#!/bin/sh
# Stand-in docker CLI: records its argv; "image inspect" answers from $STATE/label.
echo "$@" >> "$STATE/calls"
if [ "$1 $2" = "buildx inspect" ]; then
  printf 'Name:   default\nDriver: %s\n' "${DRIVER:-docker-container}"; exit 0
fi
if [ "$1" = image ]; then
  [ -f "$STATE/label" ] || exit 1
  echo "sha256:img $(cat "$STATE/label")"; exit 0
fi
# buildx build: print plain progress on stderr, write metadata, remember the label.
for a in "$@"; do
  case "$prev" in
    --metadata-file) meta="$a";;
    --label) case "$a" in org.raibid.inputs-hash=*) echo "${a#*=}" > "$STATE/label";; esac;;
  esac
  prev="$a"
done
echo '{"containerimage.digest": "sha256:manifest"}' > "$meta"
printf '#1 [1/2] FROM x\\n#1 CACHED\\n\\n#2 [2/2] RUN true\\n#2 CACHED\\n' >&2
"""


@pytest.fixture
def setup(tmp_path, monkeypatch):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM x\nRUN true\n")
    state = tmp_path / "state"
    state.mkdir()
    docker = tmp_path / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    monkeypatch.setenv("STATE", str(state))
    return ctx, state, docker


def run(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        image_build.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_builds_then_is_idempotent(capsys, setup):
    ctx, state, docker = setup
    args = {"path": str(ctx), "tags": ["t:1"], "docker_cli": str(docker), "cache_from": ["type=registry,ref=r/c:t"]}
    code, first = run(capsys, args)
    assert code == 0, first
    assert first["changed"] is True and first["built"] is True
    assert (first["layer_steps"], first["cached_steps"]) == (1, 1)
    assert first["digest"] == "sha256:manifest" and first["image_id"] == "sha256:img"
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
