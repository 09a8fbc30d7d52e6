"""Unit tests for the job_queue module glue: option checks fail before any connection is made,
and connection failures name the option (the happy path runs on a real redis-server in
tests/integration/test_smoke_redis.py)."""

from __future__ import annotations

import json
import socket

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.raibid.dgx_spark.plugins.modules import job_queue


def run_module(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        job_queue.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


BASE = {"host": "127.0.0.1", "stream": "raibid:jobs", "group": "raibid-workers"}


@pytest.mark.parametrize(
    ("override", "option", "text"),
    [
        ({"host": ""}, "host", "empty string"),
        ({"host": "127.0.0.1:6379"}, "host", "give host and port separately"),
        ({"port": 0}, "port", "1 to 65535"),
        ({"stream": ""}, "stream", "must not be empty"),
        ({"group": "  "}, "group", "must not be empty"),
        ({"job": {"repo": "not-owner-name"}}, "job.repo", "owner/name"),
    ],
)
def test_bad_options_are_named(capsys, override, option, text):
    code, result = run_module(capsys, {**BASE, **override})
    assert code == 1
    assert result["failed"] is True
    assert result["option"] == option
    assert result["msg"].startswith(option + ":")
    assert text in result["msg"]


def free_closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_redis_names_host_and_port(capsys):
    port = free_closed_port()
    code, result = run_module(capsys, {**BASE, "port": port, "connect_timeout": 2})
    assert code == 1
    assert result["option"] == "host"
    assert f"cannot reach Redis at 127.0.0.1:{port}" in result["msg"]


def test_password_is_not_logged(capsys):
    code, result = run_module(
        capsys, {**BASE, "port": free_closed_port(), "password": "s3cret-pw", "connect_timeout": 2}
    )
    assert code == 1
    assert "s3cret-pw" not in json.dumps(result)


def test_argument_spec_matches_documentation():
    doc = yaml.safe_load(job_queue.DOCUMENTATION)
    assert set(doc["options"]) == set(job_queue.ARGUMENT_SPEC)
    for name, spec in job_queue.ARGUMENT_SPEC.items():
        assert doc["options"][name]["type"] == spec["type"], name
        assert doc["options"][name].get("default") == spec.get("default"), name
