"""Unit tests for plugins/module_utils/docker_client_config.py: one registry's credentials merged into a Docker
CLI client config file, and the refusals (credential helpers, bad JSON, bad registry forms)."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils import docker_client_config as dcc
from ansible_collections.raibid.dgx_spark.plugins.module_utils.docker_client_config import DockerClientConfigError

PATH = "/root/.docker/config.json"
REGISTRY = "127.0.0.1:5000"
PASSWORD = "s3cr:et-pa55"
AUTH = base64.b64encode(f"ci:{PASSWORD}".encode()).decode()
OPERATOR = {
    "auths": {"ghcr.io": {"auth": base64.b64encode(b"octo:ghp_token").decode()}},
    "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
    "psFormat": "table {{.ID}}",
}


def text(config: Dict[str, Any]) -> str:
    return json.dumps(config)


def present(
    file_text: Optional[str], registry: str = REGISTRY, username: str = "ci", password: str = PASSWORD
) -> dcc.Plan:
    return dcc.plan(PATH, file_text, registry, "present", username=username, password=password)


def secret_free(*values: Any) -> None:
    blob = json.dumps(values, default=repr)
    assert PASSWORD not in blob and AUTH not in blob and "ghp_token" not in blob


def test_encode_auth_is_what_docker_login_writes() -> None:
    assert dcc.encode_auth("ci", PASSWORD) == AUTH
    assert base64.b64decode(dcc.encode_auth("ci", "pässwort")).decode() == "ci:pässwort"


def test_merge_keeps_other_keys_and_entries() -> None:
    result = present(text(OPERATOR))
    assert result.write and not result.created and not result.replaced
    assert result.config == {**OPERATOR, "auths": {**OPERATOR["auths"], REGISTRY: {"auth": AUTH}}}
    assert result.before == {"ghcr.io": {"username": "octo"}}
    assert result.after == {"ghcr.io": {"username": "octo"}, REGISTRY: {"username": "ci"}}
    secret_free(result.before, result.after, dcc.summary(result, False))


def test_same_credentials_are_not_rewritten() -> None:
    first = present(text(OPERATOR))
    assert first.config is not None
    again = present(dcc.render(first.config))
    assert not again.write and again.config is None
    assert dcc.summary(again, False) == f"{PATH}: already holds the credentials for {REGISTRY} (user ci)"


def test_other_password_or_extra_fields_replace_the_entry_and_diff_shows_no_secret() -> None:
    old = {"auths": {REGISTRY: {"auth": dcc.encode_auth("ci", "old"), "identitytoken": "tok"}}}
    result = present(text(old))
    assert result.write and result.replaced
    assert result.config == {"auths": {REGISTRY: {"auth": AUTH}}}
    assert result.after == {REGISTRY: {"username": "ci", "credentials": "replaced"}}
    assert dcc.summary(result, True) == f"{PATH}: would replace the credentials for {REGISTRY} (user ci)"
    secret_free(result.after, dcc.render_view(result.after))

    other_user = present(text({"auths": {REGISTRY: {"auth": dcc.encode_auth("bob", "x")}}}))
    assert dcc.summary(other_user, False) == f"{PATH}: replaced the credentials for {REGISTRY} (user bob -> ci)"
    assert other_user.after == {REGISTRY: {"username": "ci"}}


@pytest.mark.parametrize("file_text", [None, "", " \n"])
def test_missing_or_empty_file(file_text: Optional[str]) -> None:
    result = present(file_text)
    assert result.config == {"auths": {REGISTRY: {"auth": AUTH}}}
    assert result.created is (file_text is None)
    assert result.before == {}


def test_null_auths_is_an_empty_one() -> None:
    assert present(text({"auths": None})).config == {"auths": {REGISTRY: {"auth": AUTH}}}


def test_absent_removes_only_that_entry() -> None:
    config = {**OPERATOR, "auths": {**OPERATOR["auths"], REGISTRY: {"auth": AUTH}}}
    result = dcc.plan(PATH, text(config), REGISTRY, "absent")
    assert result.config == OPERATOR and result.username == "ci"
    assert dcc.summary(result, False) == f"{PATH}: removed the credentials for {REGISTRY}"

    nothing = dcc.plan(PATH, text(OPERATOR), REGISTRY, "absent")
    assert not nothing.write and nothing.username is None
    missing = dcc.plan(PATH, None, REGISTRY, "absent")
    assert not missing.write and not missing.created
    assert "does not exist" in dcc.summary(missing, False)


def test_absent_ignores_credential_helpers() -> None:
    config = {"credsStore": "pass", "auths": {REGISTRY: {"auth": AUTH}}}
    assert dcc.plan(PATH, text(config), REGISTRY, "absent").config == {"credsStore": "pass", "auths": {}}


@pytest.mark.parametrize(
    ("config", "key", "helper"),
    [
        ({"credHelpers": {REGISTRY: "ecr-login"}}, 'credHelpers["127.0.0.1:5000"]', "ecr-login"),
        ({"credsStore": "desktop"}, "credsStore", "desktop"),
        ({"credsStore": "pass", "credHelpers": {"ghcr.io": "gh"}}, "credsStore", "pass"),
        ({"credHelpers": {REGISTRY: "keychain"}, "credsStore": "pass"}, 'credHelpers["127.0.0.1:5000"]', "keychain"),
        # Go's encoding/json matches keys case-insensitively.
        ({"CredsStore": "secretservice"}, "CredsStore", "secretservice"),
    ],
)
def test_credential_helpers_refused(config: Dict[str, Any], key: str, helper: str) -> None:
    assert dcc.helper_in_the_way(config, REGISTRY) == (key, helper)
    with pytest.raises(DockerClientConfigError) as exc:
        present(text({**config, "auths": {REGISTRY: {"auth": AUTH}}}))
    message = str(exc.value)
    assert message.startswith(f"path: {PATH} sets {key} to {helper!r}")
    assert "ignores auths" in message and f"docker-credential-{helper}" in message
    assert "Nothing was changed" in message and "remove" in message
    secret_free(message)


@pytest.mark.parametrize(
    "config",
    [
        {"credsStore": ""},
        {"credHelpers": {"ghcr.io": "gh"}},
        # An empty helper for the registry means auths, even with a credsStore (getConfiguredCredentialStore).
        {"credsStore": "pass", "credHelpers": {REGISTRY: ""}},
    ],
)
def test_helpers_that_leave_auths_in_charge(config: Dict[str, Any]) -> None:
    assert dcc.helper_in_the_way(config, REGISTRY) is None
    assert present(text(config)).write


@pytest.mark.parametrize(
    ("file_text", "expected"),
    [
        ("{not json", "is not valid JSON"),
        ("[]", "holds a JSON list, not an object"),
        ('"x"', "holds a JSON str, not an object"),
        ('{"a": NaN}', "is not valid JSON"),
        ('{"auths": []}', "auths in"),
        ('{"credHelpers": {"x": 1}}', "credHelpers in"),
        ('{"credsStore": 1}', "credsStore in"),
    ],
)
def test_bad_files_refused(file_text: str, expected: str) -> None:
    with pytest.raises(DockerClientConfigError) as exc:
        present(file_text)
    assert str(exc.value).startswith("path: ") and PATH in str(exc.value) and expected in str(exc.value)


def test_case_variant_of_auths_does_not_override_ours() -> None:
    config = {"auths": {}, "Auths": {REGISTRY: {"auth": dcc.encode_auth("old", "x")}, "b:1": {}}}
    result = present(text(config))
    assert result.config == {"auths": {REGISTRY: {"auth": AUTH}}, "Auths": {"b:1": {}}}
    assert result.previous_username == "old"


@pytest.mark.parametrize(
    "registry",
    ["127.0.0.1:5000", "registry.lan:5000", "localhost:5000", "[fd00::2]:5000", "[::1]:443", "My-Reg.lan:65535"],
)
def test_registry_forms_accepted(registry: str) -> None:
    assert dcc.registry_problem(registry) is None


@pytest.mark.parametrize(
    ("registry", "why"),
    [
        ("https://127.0.0.1:5000", "has a scheme"),
        ("127.0.0.1:5000/v2/", "has a path"),
        ("127.0.0.1:5000/team/image", "has a path"),
        ("fd00::2:5000", "IPv6 address without brackets"),
        ("[fd00::zz]:5000", "not an IPv6 address"),
        ("[fe80::1%eth0]:5000", "not an IPv6 address"),
        ("[1.2.3.4]:5000", "not an IPv6 address"),
        ("[fd00::2]", "is not of that form"),
        ("registry.lan", "is not of that form"),
        ("registry.lan:0", "not 1-65535"),
        ("registry.lan:65536", "not 1-65535"),
        ("registry.lan:05000", "not 1-65535"),
        ("-bad.lan:5000", "is not of that form"),
        ("reg lan:5000", "is not of that form"),
        ("", "is empty"),
    ],
)
def test_registry_forms_refused(registry: str, why: str) -> None:
    problem = dcc.registry_problem(registry)
    assert problem is not None and problem.startswith("registry: expected host:port") and why in problem
    with pytest.raises(DockerClientConfigError, match=r"^registry: "):
        present("{}", registry=registry)


@pytest.mark.parametrize(
    ("username", "password", "option"),
    [("a:b", "pw", "username: 'a:b' contains a colon"), ("", "pw", "username: "), ("ci", "", "password: ")],
)
def test_credentials_refused(username: str, password: str, option: str) -> None:
    with pytest.raises(DockerClientConfigError) as exc:
        present("{}", username=username, password=password)
    assert str(exc.value).startswith(option)


def test_password_never_in_refusals() -> None:
    with pytest.raises(DockerClientConfigError) as exc:
        present("{}", username="a:b", password=PASSWORD)
    secret_free(str(exc.value))


def test_entry_username() -> None:
    assert dcc.entry_username({"auth": AUTH}) == "ci"
    assert dcc.entry_username({"username": "bob", "password": "x"}) == "bob"
    assert dcc.entry_username({"auth": "!!!"}) is None
    assert dcc.entry_username({"auth": base64.b64encode(b"nocolon").decode()}) is None
    assert dcc.entry_username("x") is None


def test_render_view_has_no_secret() -> None:
    config = {**OPERATOR, "auths": {**OPERATOR["auths"], REGISTRY: {"auth": AUTH}}}
    view = dcc.render_view(dcc.auths_view(config))
    assert json.loads(view) == {"auths": {"ghcr.io": {"username": "octo"}, REGISTRY: {"username": "ci"}}}
    secret_free(view)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_config_atomic_private_keeps_owner(tmp_path: Path) -> None:
    target = tmp_path / "home" / ".docker" / "config.json"
    created = dcc.make_dirs(str(target.parent))
    assert created == [str(tmp_path / "home"), str(tmp_path / "home" / ".docker")]
    assert mode(target.parent) == 0o700 and mode(tmp_path / "home") == 0o700
    dcc.write_config(str(target), '{"auths": {}}\n')
    assert mode(target) == 0o600 and target.read_text() == '{"auths": {}}\n'
    target.chmod(0o644)
    assert dcc.attribute_fixes(str(target), os.getuid(), os.getgid()) == ["mode 0600"]
    dcc.write_config(str(target), "{}\n")
    assert mode(target) == 0o600 and target.stat().st_uid == os.getuid()
    assert sorted(os.listdir(target.parent)) == ["config.json"]  # no temp file left behind
    target.chmod(0o640)
    dcc.fix_attributes(str(target), None, None)
    assert mode(target) == 0o600 and dcc.attribute_fixes(str(target), None, None) == []


def test_symlink_target_is_written(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("{}")
    link = tmp_path / "config.json"
    link.symlink_to(real)
    assert dcc.target_path(str(link)) == str(real)
    dcc.write_config(dcc.target_path(str(link)), "{}\n")
    assert link.is_symlink() and real.read_text() == "{}\n"
