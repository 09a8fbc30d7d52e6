"""Unit tests for the job_queue module glue: option checks fail before any connection is made,
failures name the option, and check mode sends no command that writes. Redis is the stand-in of
fakes/redis_server.py (replies scripted, commands checked); the happy path runs on a real
redis-server in tests/integration/test_smoke_redis.py."""

from __future__ import annotations

import functools
import json
import socket

import pytest
import yaml

from ansible_collections.raibid.dgx_spark.plugins.modules import job_queue
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.fakes.redis_server import (
    Error,
    FakeRedis,
    group_entry,
)

BASE = {"host": "127.0.0.1", "stream": "raibid:jobs", "group": "raibid-workers"}
JOB = {"repo": "raibid/smoke", "id": "j1", "started_at": "2026-11-29T05:00:00Z"}


@pytest.fixture
def run(run_module):
    return functools.partial(run_module, job_queue)


@pytest.fixture
def server():
    with FakeRedis() as fake:
        yield fake


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
def test_bad_options_are_named(run, override, option, text):
    code, result = run({**BASE, **override})
    assert code == 1
    assert result["failed"] is True
    assert result["option"] == option
    assert result["msg"].startswith(option + ":")
    assert text in result["msg"]


def free_closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_redis_names_host_and_port(run):
    port = free_closed_port()
    code, result = run({**BASE, "port": port, "connect_timeout": 2})
    assert code == 1
    assert result["option"] == "host"
    assert f"cannot reach Redis at 127.0.0.1:{port}" in result["msg"]


def test_password_is_not_logged(run):
    code, result = run({**BASE, "port": free_closed_port(), "password": "s3cret-pw", "connect_timeout": 2})
    assert code == 1
    assert "s3cret-pw" not in json.dumps(result)


def test_argument_spec_matches_documentation():
    doc = yaml.safe_load(job_queue.DOCUMENTATION)
    assert set(doc["options"]) == set(job_queue.ARGUMENT_SPEC)
    for name, spec in job_queue.ARGUMENT_SPEC.items():
        assert doc["options"][name]["type"] == spec["type"], name
        assert doc["options"][name].get("default") == spec.get("default"), name


def test_check_mode_sends_no_command_that_writes(run, server):
    server.answer("EXISTS", 0)
    code, result = run({**BASE, "port": server.port, "job": JOB, "_ansible_check_mode": True})
    assert code == 0, result
    assert result["changed"] is True and result["group_created"] is True and result["entry_id"] is None
    assert result["job"]["id"] == "j1" and result["stream_exists"] is False
    assert [c[0] for c in server.sent()] == ["EXISTS", "EXISTS"]


def test_job_is_added_with_a_server_given_id(run, server):
    server.answer("EXISTS", 1)
    server.answer("XINFO GROUPS", [group_entry("raibid-workers")])
    server.reply("XADD", "1764392400000-0")
    server.answer("XLEN", 1)
    code, result = run({**BASE, "port": server.port, "job": JOB})
    assert code == 0, result
    assert result["changed"] is True and result["group_created"] is False
    assert result["entry_id"] == "1764392400000-0"
    (xadd,) = [c for c in server.sent() if c[0] == "XADD"]
    assert xadd[:4] == ["XADD", "raibid:jobs", "*", "job"] and json.loads(xadd[4]) == result["job"]


def test_existing_group_and_no_job_is_no_change(run, server):
    server.answer("EXISTS", 1)
    server.answer("XINFO GROUPS", [group_entry("raibid-workers", consumers=1)])
    server.answer("XLEN", 0)
    code, result = run({**BASE, "port": server.port})
    assert code == 0 and result["changed"] is False
    assert not [c for c in server.sent() if c[0] in ("XGROUP", "XADD")]


def test_a_refused_command_names_the_stream(run, server):
    server.reply("EXISTS", 1)
    server.reply("XINFO GROUPS", Error("WRONGTYPE Operation against a key holding the wrong kind of value"))
    code, result = run({**BASE, "port": server.port})
    assert code == 1 and result["option"] == "stream"
    assert result["msg"] == (
        f"stream: Redis at 127.0.0.1:{server.port} rejected a command on 'raibid:jobs': "
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    )


def test_redis_6_is_refused_naming_the_server(run, server):
    server.answer("EXISTS", 1)
    server.reply("XINFO GROUPS", [{"name": "raibid-workers", "consumers": 0, "pending": 0, "last-delivered-id": "0-0"}])
    code, result = run({**BASE, "port": server.port})
    assert code == 1 and result["option"] == "server"
    assert "Redis 7.0 or later" in result["msg"] and f"(Redis at 127.0.0.1:{server.port})" in result["msg"]
