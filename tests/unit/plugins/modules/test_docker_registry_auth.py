"""Unit tests for the docker_registry_auth module glue (arguments, check and diff mode, result shape, file
modes) over a temporary home; the owner is the user running the tests."""

from __future__ import annotations

import base64
import functools
import grp
import json
import os
import pwd
import stat
from pathlib import Path
from typing import Any, Dict

import pytest

from ansible_collections.raibid.dgx_spark.plugins.modules import docker_registry_auth
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.modules.module_runner import shown

REGISTRY = "[fd00::2]:5000"
PASSWORD = "pa55:w0rd-secret"
AUTH = base64.b64encode(f"ci:{PASSWORD}".encode()).decode()


@pytest.fixture
def run(run_module):
    return functools.partial(run_module, docker_registry_auth)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "ci" / ".docker" / "config.json"


def args(path: Path, **extra: Any) -> Dict[str, Any]:
    return {"path": str(path), "registry": REGISTRY, "username": "ci", "password": PASSWORD, **extra}


def no_secret(result: Dict[str, Any]) -> None:
    text = shown(result)
    assert PASSWORD not in text and AUTH not in text


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_creates_file_and_directories_private_then_no_op(run, path: Path):
    code, result = run(args(path))
    assert code == 0, result
    assert result["changed"] is True and result["created"] is True
    assert result["path"] == str(path) and result["registry"] == REGISTRY and result["username"] == "ci"
    assert result["msg"] == f"{path}: created with the credentials for {REGISTRY} (user ci)"
    assert json.loads(path.read_text()) == {"auths": {REGISTRY: {"auth": AUTH}}}
    assert mode(path) == 0o600 and mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700
    no_secret(result)

    mtime = path.stat().st_mtime_ns
    code, result = run(args(path))
    assert code == 0
    assert result["changed"] is False and result["created"] is False
    assert result["msg"] == f"{path}: already holds the credentials for {REGISTRY} (user ci)"
    assert path.stat().st_mtime_ns == mtime


def test_merge_keeps_operator_keys_and_existing_mode_is_tightened(run, path: Path):
    path.parent.mkdir(parents=True)
    operator = {"auths": {"ghcr.io": {"auth": "b2N0bzp4"}}, "credHelpers": {"ecr.aws": "ecr-login"}, "x": [1]}
    path.write_text(json.dumps(operator))
    path.chmod(0o644)
    code, result = run(args(path))
    assert code == 0, result
    assert result["changed"] is True and result["created"] is False
    assert result["msg"] == f"{path}: added the credentials for {REGISTRY} (user ci); set mode 0600"
    assert json.loads(path.read_text()) == {**operator, "auths": {**operator["auths"], REGISTRY: {"auth": AUTH}}}
    assert mode(path) == 0o600

    path.chmod(0o644)
    code, result = run(args(path))
    assert result["changed"] is True and mode(path) == 0o600
    assert result["msg"] == f"{path}: already holds the credentials for {REGISTRY} (user ci); set mode 0600"


def test_check_mode_writes_nothing(run, path: Path):
    code, result = run(args(path, _ansible_check_mode=True))
    assert code == 0
    assert result["changed"] is True and result["created"] is True
    assert result["msg"].startswith(f"{path}: would create it with the credentials")
    assert not path.parent.parent.exists()

    path.parent.mkdir(parents=True)
    path.write_text('{"auths": {}}')
    before = path.read_text()
    code, result = run(args(path, _ansible_check_mode=True))
    assert code == 0 and result["changed"] is True and result["created"] is False
    assert path.read_text() == before and os.listdir(path.parent) == ["config.json"]


def test_diff_shows_registries_and_users_never_secrets(run, path: Path):
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"auths": {REGISTRY: {"auth": base64.b64encode(b"ci:old-secret").decode()}}}))
    path.chmod(0o600)
    code, result = run(args(path, _ansible_diff=True, _ansible_check_mode=True))
    assert code == 0
    diff = result["diff"]
    assert json.loads(diff["before"]) == {"auths": {REGISTRY: {"username": "ci"}}}
    assert json.loads(diff["after"]) == {"auths": {REGISTRY: {"username": "ci", "credentials": "replaced"}}}
    assert result["msg"] == f"{path}: would replace the credentials for {REGISTRY} (user ci)"
    no_secret(result)
    assert "old-secret" not in shown(result) and "b2xk" not in shown(result)

    code, result = run(args(path, _ansible_diff=True))
    assert code == 0 and result["changed"] is True
    no_secret(result)
    code, result = run(args(path, _ansible_diff=True))
    assert result["changed"] is False and result["diff"]["before"] == result["diff"]["after"]


def test_absent_removes_only_that_entry(run, path: Path):
    run(args(path))
    data = json.loads(path.read_text())
    data["auths"]["ghcr.io"] = {"auth": "b2N0bzp4"}
    path.write_text(json.dumps(data))
    code, result = run({"path": str(path), "registry": REGISTRY, "state": "absent"})
    assert code == 0, result
    assert result["changed"] is True and result["username"] == "ci"
    assert json.loads(path.read_text()) == {"auths": {"ghcr.io": {"auth": "b2N0bzp4"}}}
    code, result = run({"path": str(path), "registry": REGISTRY, "state": "absent"})
    assert result["changed"] is False

    missing = path.parent / "none.json"
    code, result = run({"path": str(missing), "registry": REGISTRY, "state": "absent"})
    assert code == 0 and result["changed"] is False and not missing.exists()


def test_credential_helper_refused_without_touching_the_file(run, path: Path):
    path.parent.mkdir(parents=True)
    path.write_text('{"credsStore": "desktop"}')
    code, result = run(args(path))
    assert code == 1 and result["failed"] is True and result["changed"] is False
    assert result["msg"].startswith(f"path: {path} sets credsStore to 'desktop'")
    assert "ignores auths" in result["msg"]
    assert path.read_text() == '{"credsStore": "desktop"}'
    no_secret(result)


def test_bad_json_refused_without_touching_the_file(run, path: Path):
    path.parent.mkdir(parents=True)
    path.write_text("{broken")
    code, result = run(args(path))
    assert code == 1 and result["msg"].startswith(f"path: {path} is not valid JSON")
    assert path.read_text() == "{broken"


@pytest.mark.parametrize(
    ("extra", "start"),
    [
        ({"registry": "https://127.0.0.1:5000"}, "registry: expected host:port"),
        ({"registry": "fd00::2:5000"}, "registry: expected host:port"),
        ({"username": "c:i"}, "username: 'c:i' contains a colon"),
        ({"owner": "no-such-user-here"}, "owner: no user named 'no-such-user-here'"),
        ({"group": "no-such-group-here"}, "group: no group named 'no-such-group-here'"),
    ],
)
def test_refusals_name_the_option(run, path: Path, extra: Dict[str, Any], start: str):
    code, result = run({**args(path), **extra})
    assert code == 1 and result["msg"].startswith(start), result["msg"]
    assert not path.parent.parent.exists()
    no_secret(result)


def test_present_needs_username_and_password(run, path: Path):
    code, result = run({"path": str(path), "registry": REGISTRY, "username": "ci"})
    assert code == 1 and "password" in result["msg"] and "state is present" in result["msg"]


def test_password_is_masked_in_the_invocation(run, path: Path):
    code, result = run(args(path))
    assert code == 0 and PASSWORD not in json.dumps(result)


def test_owner_and_group_by_name(run, path: Path):
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    code, result = run(args(path, owner=user, group=group))
    assert code == 0, result
    assert (path.stat().st_uid, path.stat().st_gid) == (os.getuid(), os.getgid())
    assert (path.parent.stat().st_uid, path.parent.stat().st_gid) == (os.getuid(), os.getgid())
    code, result = run(args(path, owner=str(os.getuid()), group=str(os.getgid())))
    assert code == 0 and result["changed"] is False
