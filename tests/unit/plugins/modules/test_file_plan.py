"""Unit tests for the file_plan module glue (arguments, check mode, validation before any read, result shape)
over a temporary tree."""

from __future__ import annotations

import functools
import hashlib
import os
import pwd
from typing import Any

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils import file_plan as fp
from ansible_collections.raibid.dgx_spark.plugins.modules import file_plan

CONTENT = b"[agent]\ntoken = s3cret\n"
SHA1 = hashlib.sha1(CONTENT).hexdigest()
ME = pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture
def run(run_module):
    return functools.partial(run_module, file_plan)


@pytest.fixture
def tree(tmp_path):
    """A configuration directory (0755) with one file as the controller would write it (0640)."""
    directory = tmp_path / "raibid"
    directory.mkdir()
    directory.chmod(0o755)
    conf = directory / "agent.toml"
    conf.write_bytes(CONTENT)
    conf.chmod(0o640)
    return directory


def entries(tree) -> list:
    return [
        {"path": str(tree), "state": "directory", "owner": ME, "mode": "0755"},
        {"path": str(tree / "agent.toml"), "checksum": SHA1, "owner": ME, "mode": "0640"},
        {"path": str(tree / "registries.yaml"), "checksum": SHA1, "mode": "0640"},
    ]


@pytest.mark.parametrize("check_mode", [False, True])
def test_reports_what_differs_never_changed(run, tree, check_mode):
    code, result = run({"files": entries(tree), "_ansible_check_mode": check_mode})
    assert code == 0, result
    assert {key: value for key, value in result.items() if key != "invocation"} == {
        "changed": False,
        "differ": [str(tree / "registries.yaml")],
        "files": [
            {"path": str(tree), "exists": True, "differs": False, "reasons": []},
            {"path": str(tree / "agent.toml"), "exists": True, "differs": False, "reasons": []},
            {"path": str(tree / "registries.yaml"), "exists": False, "differs": True, "reasons": ["missing"]},
        ],
        "unlisted": [],
        "checked": 3,
    }
    assert sorted(p.name for p in tree.iterdir()) == ["agent.toml"]


def test_content_mode_and_kind_differ(run, tree):
    (tree / "agent.toml").write_bytes(b"[agent]\ntoken = other\n")
    (tree / "agent.toml").chmod(0o644)
    (tree / "registries.yaml").mkdir()
    code, result = run({"files": entries(tree)})
    assert code == 0 and result["changed"] is False
    assert result["differ"] == [str(tree / "agent.toml"), str(tree / "registries.yaml")]
    assert [f["reasons"] for f in result["files"]] == [[], ["content", "mode 0644 -> 0640"], ["not a regular file"]]
    # only the sha1 crosses the connection, never the content
    assert "s3cret" not in str(result) and "other" not in str(result)


def test_state_defaults_to_file(run, tree):
    code, result = run({"files": [{"path": str(tree), "checksum": SHA1}]})
    assert code == 0
    assert result["files"][0]["reasons"] == ["not a regular file"]
    assert result["invocation"]["module_args"]["files"][0]["state"] == "file"


def test_empty_list_checks_nothing(run):
    code, result = run({"files": []})
    assert code == 0
    assert (result["changed"], result["differ"], result["files"], result["checked"]) == (False, [], [], 0)


def test_every_bad_entry_in_one_failure_before_anything_is_read(run, tree, monkeypatch):
    def no_read(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("read before validation")

    monkeypatch.setattr(fp.os, "lstat", no_read)
    code, result = run(
        {
            "files": [
                {"path": str(tree), "state": "directory"},
                {"path": "raibid/agent.toml", "checksum": SHA1},
                {"path": str(tree / "a"), "checksum": SHA1.upper(), "mode": "0x644"},
                {"path": str(tree / "b"), "unlisted": "*"},
                {"path": f"{tree}/", "state": "directory", "checksum": SHA1},
            ]
        }
    )
    assert code == 1 and result["failed"] is True
    assert [p.split(":")[0] for p in result["problems"]] == [
        "files[1].path",
        "files[2].checksum",
        "files[2].mode",
        "files[3].unlisted",
        "files[4].path",
        "files[4].checksum",
    ]
    assert result["msg"] == "; ".join(result["problems"]) + ". Nothing was read."
    assert "expected one starting with /" in result["problems"][0]
    assert f"files[4].path: {tree}/ is already files[0].path" in result["msg"]


def test_argument_spec_refuses_unknown_state_and_keys(run, tree):
    code, result = run({"files": [{"path": str(tree), "state": "link"}]})
    assert code == 1 and "state" in result["msg"] and "file, directory" in result["msg"]
    code, result = run({"files": [{"path": str(tree / "x"), "checksum": SHA1, "content": "s3cret"}]})
    assert code == 1 and "content" in result["msg"]
    code, result = run({"files": [{"checksum": SHA1}]})
    assert code == 1 and "path" in result["msg"]
    code, result = run({})
    assert code == 1 and "files" in result["msg"]


def test_unquoted_octal_mode_is_the_bits_as_for_the_template_task(run, tree):
    # YAML reads an unquoted 0640 as the number 416, which the file and template modules take as the bits.
    code, result = run({"files": [{"path": str(tree / "agent.toml"), "checksum": SHA1, "mode": 0o640}]})
    assert code == 0 and result["differ"] == []
    code, result = run({"files": [{"path": str(tree / "agent.toml"), "checksum": SHA1, "mode": 0o600}]})
    assert code == 0 and result["files"][0]["reasons"] == ["mode 0640 -> 0600"]
    code, result = run({"files": [{"path": str(tree / "agent.toml"), "checksum": SHA1, "mode": "u=rw,g=r"}]})
    assert code == 1 and result["problems"] == [
        'files[0].mode: \'u=rw,g=r\' is not an octal mode (expected a quoted string such as "0644" or "644")'
    ]
